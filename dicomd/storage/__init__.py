"""
Storage service class (PS3.4 Annex B): the SOP classes a storage SCP
accepts and how received instances are named on disk, the way DCMTK's
storescp does both, so that sites moving from storescp find their files
where they were.
"""

#: The permissions of the files dicomd creates where it stores: received
#: objects, the index and the study journal hold patient data, so the
#: owner reads and writes them, its group reads them, others nothing.  The
#: umask applies on top (it can only take permissions away).
FILE_MODE = 0o640

#: The permissions of the directories dicomd creates there: storage areas
#: and study directories, whose names may be patients' names.
DIRECTORY_MODE = 0o750
