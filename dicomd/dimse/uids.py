"""
The SOP class UIDs the DIMSE services of dicomd name (PS3.4, registered in
PS3.6 Annex A).

This is their one home: the Verification SOP class (PS3.4 Annex A), which
every AE accepts and C-ECHO carries, and the FIND, MOVE and GET SOP classes
of the Query/Retrieve information models (PS3.4 C.6).  Other UIDs live
where the part of the standard that defines them is implemented: transfer
syntaxes, which presentation contexts negotiate, in
L{dicomd.ul.negotiation} (PS3.5 Annex A); the application context name in
L{dicomd.ul.pdu} (PS3.7 Annex A.2.1); the storage SOP classes, a DCMTK
table drawn from pydicom's registry, in L{dicomd.storage.sopclasses}.
"""

#: Verification SOP Class (PS3.4 A.4).
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

#: Patient Root Query/Retrieve Information Model - FIND, MOVE, GET (PS3.4 C.6.1.3).
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"

#: Study Root Query/Retrieve Information Model - FIND, MOVE, GET (PS3.4 C.6.2.3).
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"

#: Patient/Study Only Query/Retrieve Information Model - FIND, MOVE, GET
#: (PS3.4 C.6.3.3, retired).
PATIENT_STUDY_ONLY_FIND = "1.2.840.10008.5.1.4.1.2.3.1"
PATIENT_STUDY_ONLY_MOVE = "1.2.840.10008.5.1.4.1.2.3.2"
PATIENT_STUDY_ONLY_GET = "1.2.840.10008.5.1.4.1.2.3.3"
