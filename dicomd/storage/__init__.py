"""
Storage service class (PS3.4 Annex B): the SOP classes a storage SCP
accepts and how received instances are named on disk, the way DCMTK's
storescp does both, so that sites moving from storescp find their files
where they were.
"""
