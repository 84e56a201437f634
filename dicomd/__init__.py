"""
dicomd: a DICOM network daemon on Twisted.

Storage, query/retrieve and verification services on one reactor, with
DCMTK-compatible front doors (C{dicomd storescp}, C{dicomd storescu},
C{dicomd qrscp}) and a C{twistd dicomd} plugin.
"""

__version__ = "0.1.0"

#: Our Implementation Class UID (PS3.7 D.3.3.2), under the UUID-derived
#: root 2.25 of PS3.5 B.2.
IMPLEMENTATION_CLASS_UID = "2.25.35357045051586428076269356577191777566"

#: Our Implementation Version Name (at most 16 characters).
IMPLEMENTATION_VERSION_NAME = "DICOMD_" + __version__

