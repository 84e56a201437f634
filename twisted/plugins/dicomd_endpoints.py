"""
Registers the C{dicomtls:} server endpoint string (DICOM TLS with client
certificates, profiles, CRLs and SNI); see L{dicomd.endpoints}.
"""

from dicomd.endpoints import DICOMTLSServerParser

dicomtls = DICOMTLSServerParser()
