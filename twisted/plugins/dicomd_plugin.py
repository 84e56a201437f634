"""
Registers C{twistd dicomd}.
"""

from twisted.application.service import ServiceMaker

dicomd = ServiceMaker(
    "dicomd",
    "dicomd.tap",
    "DICOM network daemon: storage, query/retrieve and verification",
    "dicomd",
)
