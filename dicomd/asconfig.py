"""
DCMTK's association negotiation profiles (C{asconfig.txt}): the files
storescp and storescu read with C{-xf FILE PROFILE}.

A profile file is an INI-like tree (DCMTK's C{OFConfigFile}) of
supersections C{[[TransferSyntaxes]]}, C{[[PresentationContexts]]},
C{[[Profiles]]} and, optionally, C{[[SCPSCURoleSelection]]} and
C{[[ExtendedNegotiation]]}, each holding named C{[Section]}s of numbered
keys (C{TransferSyntax1}, C{PresentationContext1}...).  L{parseProfiles}
reads one into L{Profile}s, the way C{DcmAssociationConfigurationFile} does:

  - Keys and section names are case insensitive, and lose every character
    but letters, digits, C{-} and C{_}; the names a value refers to (a
    transfer syntax list, a presentation context list...) are compared
    uppercased without their white space, like storescp's profile name
    (L{mangleProfileName}).
  - A line starting with white space continues the value above it; a line
    whose first other character is C{#} is a comment (DCMTK: a C{#} in the
    first column).
  - UIDs are written as numbers or as DCMTK's symbolic names
    (C{dcmFindUIDFromName}): L{resolveUID} looks them up in pydicom's
    registry under DCMTK's name (L{DCMTK_UID_NAMES}) or pydicom's keyword.
  - A presentation context list for an association requestor (C{requestor})
    may not hold more than 128 contexts.

Stricter than DCMTK, so that a mistake is reported instead of ignored: a
setting outside a section, a section outside a supersection, a name
defined twice, a malformed line, an unexpected key, and a gap in the
numbering (DCMTK silently stops reading a list at the first missing
number) are errors.  Kinder than DCMTK: white space around a value, or
around either part of C{UID\\list}, is ignored (DCMTK keeps it and then
fails to find the name).  Every error is an L{AsConfigError} naming the
file, line, section and key.

On the acceptor side (L{acceptorPolicy}) DCMTK answers each proposed context
from the first entry of the profile's list for its abstract syntax, but
storescp refuses at start-up a profile whose list names an abstract syntax
twice ("not valid for SCP use"); so do we.  A role selection of C{SCP} or
C{BOTH} lets the requestor take the SCP role for that class; what
L{AcceptorPolicy} cannot express of DCMTK's role table (an SCP-only entry
refusing a default-role proposal, an C{SCP} entry withdrawing the SCU role) is
not enforced.  Extended negotiation items stay on the L{Profile}: DCMTK
answers with those whose abstract syntax was accepted.
"""

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple, Union

from pydicom.uid import UID_dictionary

from dicomd.ul.negotiation import MAXIMUM_PRESENTATION_CONTEXTS, AcceptorPolicy
from dicomd.ul.pdu import SCPSCURoleSelection, SOPClassExtendedNegotiation


class AsConfigError(ValueError):
    """
    A profile file DCMTK would refuse, or that we refuse; the message says
    where.

    @ivar fileName: the file.
    @ivar section: the section's name as written, or C{None}.
    @ivar key: the key as written, or C{None}.
    @ivar line: the line number, or C{None}.
    """

    def __init__(
        self,
        message: str,
        fileName: str,
        section: Optional[str] = None,
        key: Optional[str] = None,
        line: Optional[int] = None,
    ) -> None:
        self.fileName = fileName
        self.section = section
        self.key = key
        self.line = line
        where = [fileName]
        if line is not None:
            where.append("line %d" % (line,))
        if section is not None:
            where.append("[%s]" % (section,))
        if key is not None:
            where.append(key)
        super().__init__("%s: %s" % (", ".join(where), message))


# -- UID names ----------------------------------------------------------------

# fmt: off
#: DCMTK 3.6.8's symbolic names (C{uidNameMap} in C{dcmdata/libsrc/dcuid.cc})
#: of transfer syntaxes and SOP, meta SOP and service classes that differ from
#: pydicom's keyword for the same UID, mapped to that keyword.  Every other
#: DCMTK name of these kinds is pydicom's keyword already.  Not here: the
#: private GE transfer syntax C{PrivateGELittleEndianImplicitWithBigEndianPixelData}
#: (pydicom does not know it; write its UID), and the names of frames of
#: reference, LDAP objects, coding schemes and well-known instances, which no
#: profile can use.
DCMTK_UID_NAMES: Dict[str, str] = {
    # Transfer Syntax
    "LittleEndianImplicit":                                      "ImplicitVRLittleEndian",
    "LittleEndianExplicit":                                      "ExplicitVRLittleEndian",
    "BigEndianExplicit":                                         "ExplicitVRBigEndian",
    "JPEGBaseline":                                              "JPEGBaseline8Bit",
    "JPEGExtended:Process2+4":                                   "JPEGExtended12Bit",
    "JPEGExtended:Process3+5":                                   "JPEGExtended35",
    "JPEGSpectralSelection:Non-hierarchical:Process6+8":         "JPEGSpectralSelectionNonHierarchical68",
    "JPEGSpectralSelection:Non-hierarchical:Process7+9":         "JPEGSpectralSelectionNonHierarchical79",
    "JPEGFullProgression:Non-hierarchical:Process10+12":         "JPEGFullProgressionNonHierarchical1012",
    "JPEGFullProgression:Non-hierarchical:Process11+13":         "JPEGFullProgressionNonHierarchical1113",
    "JPEGLossless:Non-hierarchical:Process14":                   "JPEGLossless",
    "JPEGLossless:Non-hierarchical:Process15":                   "JPEGLosslessNonHierarchical15",
    "JPEGExtended:Hierarchical:Process16+18":                    "JPEGExtendedHierarchical1618",
    "JPEGExtended:Hierarchical:Process17+19":                    "JPEGExtendedHierarchical1719",
    "JPEGSpectralSelection:Hierarchical:Process20+22":           "JPEGSpectralSelectionHierarchical2022",
    "JPEGSpectralSelection:Hierarchical:Process21+23":           "JPEGSpectralSelectionHierarchical2123",
    "JPEGFullProgression:Hierarchical:Process24+26":             "JPEGFullProgressionHierarchical2426",
    "JPEGFullProgression:Hierarchical:Process25+27":             "JPEGFullProgressionHierarchical2527",
    "JPEGLossless:Hierarchical:Process28":                       "JPEGLosslessHierarchical28",
    "JPEGLossless:Hierarchical:Process29":                       "JPEGLosslessHierarchical29",
    "JPEGLossless:Non-hierarchical-1stOrderPrediction":          "JPEGLosslessSV1",
    "JPEGLSLossy":                                               "JPEGLSNearLossless",
    "DeflatedLittleEndianExplicit":                              "DeflatedExplicitVRLittleEndian",
    "JPEG2000LosslessOnly":                                      "JPEG2000Lossless",
    "JPEG2000MulticomponentLosslessOnly":                        "JPEG2000MCLossless",
    "JPEG2000Multicomponent":                                    "JPEG2000MC",
    "MPEG2MainProfile@MainLevel":                                "MPEG2MPML",
    "FragmentableMPEG2MainProfile/MainLevel":                    "MPEG2MPMLF",
    "MPEG2MainProfile@HighLevel":                                "MPEG2MPHL",
    "FragmentableMPEG2MainProfile/HighLevel":                    "MPEG2MPHLF",
    "MPEG4HighProfile/Level4.1":                                 "MPEG4HP41",
    "FragmentableMPEG4HighProfile/Level4.1":                     "MPEG4HP41F",
    "MPEG4BDcompatibleHighProfile/Level4.1":                     "MPEG4HP41BD",
    "FragmentableMPEG4BDcompatibleHighProfile/Level4.1":         "MPEG4HP41BDF",
    "MPEG4HighProfile/Level4.2For2DVideo":                       "MPEG4HP422D",
    "FragmentableMPEG4HighProfile/Level4.2For2DVideo":           "MPEG4HP422DF",
    "MPEG4HighProfile/Level4.2For3DVideo":                       "MPEG4HP423D",
    "FragmentableMPEG4HighProfile/Level4.2For3DVideo":           "MPEG4HP423DF",
    "MPEG4StereoHighProfile/Level4.2":                           "MPEG4HP42STEREO",
    "FragmentableMPEG4StereoHighProfile/Level4.2":               "MPEG4HP42STEREOF",
    "HEVCMainProfile/Level5.1":                                  "HEVCMP51",
    "HEVCMain10Profile/Level5.1":                                "HEVCM10P51",
    "SMPTEST2110-20:UncompressedProgressiveActiveVideo":         "SMPTEST211020UncompressedProgressiveActiveVideo",
    "SMPTEST2110-20:UncompressedInterlacedActiveVideo":          "SMPTEST211020UncompressedInterlacedActiveVideo",
    "SMPTEST2110-30:PCMDigitalAudio":                            "SMPTEST211030PCMDigitalAudio",
    "RETIRED_RFC2557MIMEEncapsulation":                          "RFC2557MIMEEncapsulation",
    "RETIRED_XMLEncoding":                                       "XMLEncoding",
    # Storage (DICOM)
    "General32BitECGWaveformStorage":                            "General32bitECGWaveformStorage",
    # DCMTK's earlier name of Implantation Plan SR Storage
    "ImplantationPlanSRDocumentStorage":                         "ImplantationPlanSRStorage",
    "MultiframeGrayscaleByteSecondaryCaptureImageStorage":       "MultiFrameGrayscaleByteSecondaryCaptureImageStorage",
    "MultiframeGrayscaleWordSecondaryCaptureImageStorage":       "MultiFrameGrayscaleWordSecondaryCaptureImageStorage",
    "MultiframeSingleBitSecondaryCaptureImageStorage":           "MultiFrameSingleBitSecondaryCaptureImageStorage",
    "MultiframeTrueColorSecondaryCaptureImageStorage":           "MultiFrameTrueColorSecondaryCaptureImageStorage",
    "UltrasoundMultiframeImageStorage":                          "UltrasoundMultiFrameImageStorage",
    # Storage (retired)
    "RETIRED_HardcopyColorImageStorage":                         "HardcopyColorImageStorage",
    "RETIRED_HardcopyGrayscaleImageStorage":                     "HardcopyGrayscaleImageStorage",
    "RETIRED_NuclearMedicineImageStorage":                       "NuclearMedicineImageStorageRetired",
    "RETIRED_StandaloneCurveStorage":                            "StandaloneCurveStorage",
    "RETIRED_StandaloneModalityLUTStorage":                      "StandaloneModalityLUTStorage",
    "RETIRED_StandaloneOverlayStorage":                          "StandaloneOverlayStorage",
    "RETIRED_StandalonePETCurveStorage":                         "StandalonePETCurveStorage",
    "RETIRED_StandaloneVOILUTStorage":                           "StandaloneVOILUTStorage",
    "RETIRED_StoredPrintStorage":                                "StoredPrintStorage",
    "RETIRED_UltrasoundImageStorage":                            "UltrasoundImageStorageRetired",
    "RETIRED_UltrasoundMultiframeImageStorage":                  "UltrasoundMultiFrameImageStorageRetired",
    "RETIRED_VLImageStorage":                                    "VLImageStorageTrial",
    "RETIRED_VLMultiframeImageStorage":                          "VLMultiFrameImageStorageTrial",
    "RETIRED_XRayAngiographicBiPlaneImageStorage":               "XRayAngiographicBiPlaneImageStorage",
    # Storage (DICOS)
    "DICOS_CTImageStorage":                                      "DICOSCTImageStorage",
    "DICOS_DigitalXRayImageStorageForPresentation":              "DICOSDigitalXRayImageStorageForPresentation",
    "DICOS_DigitalXRayImageStorageForProcessing":                "DICOSDigitalXRayImageStorageForProcessing",
    "DICOS_ThreatDetectionReportStorage":                        "DICOSThreatDetectionReportStorage",
    "DICOS_2DAITStorage":                                        "DICOS2DAITStorage",
    "DICOS_3DAITStorage":                                        "DICOS3DAITStorage",
    "DICOS_QuadrupoleResonanceStorage":                          "DICOSQuadrupoleResonanceStorage",
    # Storage (DICONDE)
    "DICONDE_EddyCurrentImageStorage":                           "EddyCurrentImageStorage",
    "DICONDE_EddyCurrentMultiframeImageStorage":                 "EddyCurrentMultiFrameImageStorage",
    # Query/Retrieve
    "FINDPatientRootQueryRetrieveInformationModel":              "PatientRootQueryRetrieveInformationModelFind",
    "FINDStudyRootQueryRetrieveInformationModel":                "StudyRootQueryRetrieveInformationModelFind",
    "GETPatientRootQueryRetrieveInformationModel":               "PatientRootQueryRetrieveInformationModelGet",
    "GETStudyRootQueryRetrieveInformationModel":                 "StudyRootQueryRetrieveInformationModelGet",
    "MOVEPatientRootQueryRetrieveInformationModel":              "PatientRootQueryRetrieveInformationModelMove",
    "MOVEStudyRootQueryRetrieveInformationModel":                "StudyRootQueryRetrieveInformationModelMove",
    "RETIRED_FINDPatientStudyOnlyQueryRetrieveInformationModel": "PatientStudyOnlyQueryRetrieveInformationModelFind",
    "GETCompositeInstanceRetrieveWithoutBulkData":               "CompositeInstanceRetrieveWithoutBulkDataGet",
    "GETCompositeInstanceRootRetrieve":                          "CompositeInstanceRootRetrieveGet",
    "RETIRED_GETPatientStudyOnlyQueryRetrieveInformationModel":  "PatientStudyOnlyQueryRetrieveInformationModelGet",
    "MOVECompositeInstanceRootRetrieve":                         "CompositeInstanceRootRetrieveMove",
    "RETIRED_MOVEPatientStudyOnlyQueryRetrieveInformationModel": "PatientStudyOnlyQueryRetrieveInformationModelMove",
    # Modality Worklist
    "FINDModalityWorklistInformationModel":                      "ModalityWorklistInformationModelFind",
    # General Purpose Worklist (retired)
    "RETIRED_FINDGeneralPurposeWorklistInformationModel":        "GeneralPurposeWorklistInformationModelFind",
    "RETIRED_GeneralPurposePerformedProcedureStepSOPClass":      "GeneralPurposePerformedProcedureStep",
    "RETIRED_GeneralPurposeScheduledProcedureStepSOPClass":      "GeneralPurposeScheduledProcedureStep",
    "RETIRED_GeneralPurposeWorklistManagementMetaSOPClass":      "GeneralPurposeWorklistManagementMeta",
    # MPPS
    "ModalityPerformedProcedureStepNotificationSOPClass":        "ModalityPerformedProcedureStepNotification",
    "ModalityPerformedProcedureStepRetrieveSOPClass":            "ModalityPerformedProcedureStepRetrieve",
    "ModalityPerformedProcedureStepSOPClass":                    "ModalityPerformedProcedureStep",
    # Unified Worklist and Procedure Step
    "UnifiedWorklistAndProcedureStepServiceClass":               "UnifiedWorklistAndProcedureStep",
    "UnifiedProcedureStepPushSOPClass":                          "UnifiedProcedureStepPush",
    "UnifiedProcedureStepWatchSOPClass":                         "UnifiedProcedureStepWatch",
    "UnifiedProcedureStepPullSOPClass":                          "UnifiedProcedureStepPull",
    "UnifiedProcedureStepEventSOPClass":                         "UnifiedProcedureStepEvent",
    "UnifiedProcedureStepQuerySOPClass":                         "UnifiedProcedureStepQuery",
    # Storage Commitment
    "RETIRED_StorageCommitmentPullModelSOPClass":                "StorageCommitmentPullModel",
    "StorageCommitmentPushModelSOPClass":                        "StorageCommitmentPushModel",
    # Hanging Protocol Storage and Query/Retrieve
    "FINDHangingProtocolInformationModel":                       "HangingProtocolInformationModelFind",
    "MOVEHangingProtocolInformationModel":                       "HangingProtocolInformationModelMove",
    "GETHangingProtocolInformationModel":                        "HangingProtocolInformationModelGet",
    # Color Palette Storage and Query/Retrieve
    "FINDColorPaletteInformationModel":                          "ColorPaletteQueryRetrieveInformationModelFind",
    "MOVEColorPaletteInformationModel":                          "ColorPaletteQueryRetrieveInformationModelMove",
    "GETColorPaletteInformationModel":                           "ColorPaletteQueryRetrieveInformationModelGet",
    # Implant Template Storage and Query/Retrieve
    "FINDGenericImplantTemplateInformationModel":                "GenericImplantTemplateInformationModelFind",
    "MOVEGenericImplantTemplateInformationModel":                "GenericImplantTemplateInformationModelMove",
    "GETGenericImplantTemplateInformationModel":                 "GenericImplantTemplateInformationModelGet",
    "FINDImplantAssemblyTemplateInformationModel":               "ImplantAssemblyTemplateInformationModelFind",
    "MOVEImplantAssemblyTemplateInformationModel":               "ImplantAssemblyTemplateInformationModelMove",
    "GETImplantAssemblyTemplateInformationModel":                "ImplantAssemblyTemplateInformationModelGet",
    "FINDImplantTemplateGroupInformationModel":                  "ImplantTemplateGroupInformationModelFind",
    "MOVEImplantTemplateGroupInformationModel":                  "ImplantTemplateGroupInformationModelMove",
    "GETImplantTemplateGroupInformationModel":                   "ImplantTemplateGroupInformationModelGet",
    # Defined Procedure Protocol Query/Retrieve
    "FINDDefinedProcedureProtocolInformationModel":              "DefinedProcedureProtocolInformationModelFind",
    "MOVEDefinedProcedureProtocolInformationModel":              "DefinedProcedureProtocolInformationModelMove",
    "GETDefinedProcedureProtocolInformationModel":               "DefinedProcedureProtocolInformationModelGet",
    # Protocol Approval Query/Retrieve
    "FINDProtocolApprovalInformationModel":                      "ProtocolApprovalInformationModelFind",
    "MOVEProtocolApprovalInformationModel":                      "ProtocolApprovalInformationModelMove",
    "GETProtocolApprovalInformationModel":                       "ProtocolApprovalInformationModelGet",
    # Inventory Storage, Query/Retrieve, and related Services
    "FINDInventory":                                             "InventoryFind",
    "MOVEInventory":                                             "InventoryMove",
    "GETInventory":                                              "InventoryGet",
    # Print
    "BasicAnnotationBoxSOPClass":                                "BasicAnnotationBox",
    "BasicColorImageBoxSOPClass":                                "BasicColorImageBox",
    "BasicColorPrintManagementMetaSOPClass":                     "BasicColorPrintManagementMeta",
    "BasicFilmBoxSOPClass":                                      "BasicFilmBox",
    "BasicFilmSessionSOPClass":                                  "BasicFilmSession",
    "BasicGrayscaleImageBoxSOPClass":                            "BasicGrayscaleImageBox",
    "BasicGrayscalePrintManagementMetaSOPClass":                 "BasicGrayscalePrintManagementMeta",
    "PresentationLUTSOPClass":                                   "PresentationLUT",
    "PrintJobSOPClass":                                          "PrintJob",
    "PrinterConfigurationRetrievalSOPClass":                     "PrinterConfigurationRetrieval",
    "PrinterSOPClass":                                           "Printer",
    "RETIRED_BasicPrintImageOverlayBoxSOPClass":                 "BasicPrintImageOverlayBox",
    "RETIRED_ImageOverlayBoxSOPClass":                           "ImageOverlayBox",
    "RETIRED_PrintQueueManagementSOPClass":                      "PrintQueueManagement",
    "RETIRED_PullPrintRequestSOPClass":                          "PullPrintRequest",
    "RETIRED_PullStoredPrintManagementMetaSOPClass":             "PullStoredPrintManagementMeta",
    "RETIRED_ReferencedColorPrintManagementMetaSOPClass":        "ReferencedColorPrintManagementMeta",
    "RETIRED_ReferencedGrayscalePrintManagementMetaSOPClass":    "ReferencedGrayscalePrintManagementMeta",
    "RETIRED_ReferencedImageBoxSOPClass":                        "ReferencedImageBox",
    "VOILUTBoxSOPClass":                                         "VOILUTBox",
    # Detached Management (retired)
    "RETIRED_DetachedInterpretationManagementSOPClass":          "DetachedInterpretationManagement",
    "RETIRED_DetachedPatientManagementMetaSOPClass":             "DetachedPatientManagementMeta",
    "RETIRED_DetachedPatientManagementSOPClass":                 "DetachedPatientManagement",
    "RETIRED_DetachedResultsManagementMetaSOPClass":             "DetachedResultsManagementMeta",
    "RETIRED_DetachedResultsManagementSOPClass":                 "DetachedResultsManagement",
    "RETIRED_DetachedStudyManagementMetaSOPClass":               "DetachedStudyManagementMeta",
    "RETIRED_DetachedStudyManagementSOPClass":                   "DetachedStudyManagement",
    "RETIRED_DetachedVisitManagementSOPClass":                   "DetachedVisitManagement",
    # Procedure Log
    "ProceduralEventLoggingSOPClass":                            "ProceduralEventLogging",
    # Substance Administration
    "SubstanceAdministrationLoggingSOPClass":                    "SubstanceAdministrationLogging",
    "ProductCharacteristicsQuerySOPClass":                       "ProductCharacteristicsQuery",
    "SubstanceApprovalQuerySOPClass":                            "SubstanceApprovalQuery",
    # Media Creation
    "MediaCreationManagementSOPClass":                           "MediaCreationManagement",
    # SOP Class Relationship Negotiation
    "StorageServiceClass":                                       "Storage",
    # Instance Availability Notification
    "InstanceAvailabilityNotificationSOPClass":                  "InstanceAvailabilityNotification",
    # Communication of Display Parameters
    "DisplaySystemSOPClass":                                     "DisplaySystem",
    # Other
    "RETIRED_BasicStudyContentNotificationSOPClass":             "BasicStudyContentNotification",
    "RETIRED_StudyComponentManagementSOPClass":                  "StudyComponentManagement",
    "VerificationSOPClass":                                      "Verification",
    # Draft Supplements
    "DRAFT_RTBeamsDeliveryInstructionStorage":                   "RTBeamsDeliveryInstructionStorageTrial",
    "DRAFT_RTConventionalMachineVerification":                   "RTConventionalMachineVerificationTrial",
    "DRAFT_RTIonMachineVerification":                            "RTIonMachineVerificationTrial",
    "DRAFT_SRAudioStorage":                                      "AudioSRStorageTrial",
    "DRAFT_SRComprehensiveStorage":                              "ComprehensiveSRStorageTrial",
    "DRAFT_SRDetailStorage":                                     "DetailSRStorageTrial",
    "DRAFT_SRTextStorage":                                       "TextSRStorageTrial",
    "DRAFT_WaveformStorage":                                     "WaveformStorageTrial",
    "DRAFT_UnifiedWorklistAndProcedureStepServiceClass":         "UnifiedWorklistAndProcedureStepTrial",
    "DRAFT_UnifiedProcedureStepPushSOPClass":                    "UnifiedProcedureStepPushTrial",
    "DRAFT_UnifiedProcedureStepWatchSOPClass":                   "UnifiedProcedureStepWatchTrial",
    "DRAFT_UnifiedProcedureStepPullSOPClass":                    "UnifiedProcedureStepPullTrial",
    "DRAFT_UnifiedProcedureStepEventSOPClass":                   "UnifiedProcedureStepEventTrial",
}
# fmt: on

#: pydicom keyword -> UID.
_UID_BY_KEYWORD: Dict[str, str] = {entry[4]: uid for uid, entry in UID_dictionary.items() if entry[4]}

#: DCMTK's names for the explicit VR transfer syntaxes in this machine's byte
#: order and in the other one (C{DcmUIDHandler}).
_ENDIAN_NAMES = {
    "LocalEndianExplicit": "ExplicitVRLittleEndian" if sys.byteorder == "little" else "ExplicitVRBigEndian",
    "OppositeEndianExplicit": "ExplicitVRBigEndian" if sys.byteorder == "little" else "ExplicitVRLittleEndian",
}


def resolveUID(text: str) -> str:
    """
    A UID as DCMTK's C{DcmUIDHandler} reads it: a value starting with a digit
    is a UID; anything else (after an optional C{=}) is a DCMTK name
    (L{DCMTK_UID_NAMES}, C{LocalEndianExplicit}, C{OppositeEndianExplicit})
    or a pydicom keyword.

    @raise ValueError: an unknown name, or a UID with characters other than
        digits and dots.
    """
    if text and not "0" <= text[0] <= "9":
        uid = _uidFromName(text[1:] if text.startswith("=") else text)
        if uid is not None:
            return uid
    if not text or text.strip("0123456789.") != "":
        raise ValueError("neither a UID nor a known UID name: %r" % (text,))
    return text


def _uidFromName(name: str) -> Optional[str]:
    """
    The UID of a DCMTK name or pydicom keyword, or C{None}.
    """
    keyword = _ENDIAN_NAMES.get(name) or DCMTK_UID_NAMES.get(name, name)
    return _UID_BY_KEYWORD.get(keyword)


# -- the file's tree (DCMTK's OFConfigFile) -----------------------------------

#: C's C{isspace} in the "C" locale.
_WHITESPACE = " \t\n\v\f\r"

_HEADER = re.compile(r"(\[+)([^\[\]]*)(\]+)")


def _mangleKeyword(text: str) -> str:
    """
    A key or section name as C{OFConfigFile} stores it: uppercased, with
    every character but letters, digits, C{-} and C{_} dropped.
    """
    return re.sub(r"[^A-Z0-9_-]", "", _asciiUpper(text))


def mangleProfileName(name: str) -> str:
    """
    A profile name as storescp looks it up, and the names a value refers
    to as DCMTK compares them: uppercased, white space removed.
    """
    return _asciiUpper("".join(character for character in name if character not in _WHITESPACE))


_UPPERCASE = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _asciiUpper(text: str) -> str:
    """
    C{text} with ASCII letters uppercased, as C's C{toupper} does.
    """
    return text.translate(_UPPERCASE)


@dataclass
class _Entry:
    """
    One C{Key = Value} setting.
    """

    key: str
    value: str
    line: int


@dataclass
class _Section:
    """
    A C{[Section]} or C{[[Supersection]]}: its name as written, where it
    starts, and its settings or sections by mangled name.
    """

    title: str
    line: int
    children: dict = field(default_factory=dict)


# -- profiles -------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """
    One association negotiation profile.

    @ivar name: its (mangled) name.
    @ivar fileName: the file it comes from.
    @ivar presentationContexts: C{(abstractSyntax, transferSyntaxes)} in the
        order of the list: a requestor's proposals, an acceptor's
        preferences.
    @ivar roleSelections: SCP/SCU role selection items, C{SCU}, C{SCP} or
        C{BOTH} read as the roles of the association requestor.
    @ivar extendedNegotiations: SOP class extended negotiation items.
    """

    name: str
    fileName: str
    presentationContexts: Tuple[Tuple[str, Tuple[str, ...]], ...]
    roleSelections: Tuple[SCPSCURoleSelection, ...] = ()
    extendedNegotiations: Tuple[SOPClassExtendedNegotiation, ...] = ()


@dataclass(frozen=True)
class AssociationProfiles:
    """
    The profiles of one file, by mangled name.
    """

    fileName: str
    profiles: Mapping[str, Profile]

    def profile(self, name: str) -> Profile:
        """
        The profile storescp's C{-xf FILE NAME} selects.

        @raise AsConfigError: there is none by that name.
        """
        mangled = mangleProfileName(name)
        if mangled not in self.profiles:
            raise AsConfigError("unknown configuration profile name: %s" % (mangled,), self.fileName)
        return self.profiles[mangled]


def readProfiles(path: str, requestor: bool = False) -> AssociationProfiles:
    """
    Read a profile file; see L{parseProfiles}.
    """
    with open(path, "rb") as source:
        return parseProfiles(source.read().decode("latin-1"), path, requestor)


def parseProfiles(text: str, fileName: str = "<string>", requestor: bool = False) -> AssociationProfiles:
    """
    Parse the text of a profile file.

    @param fileName: the name errors give for it.
    @param requestor: read it for an association requestor (storescu), which
        cannot propose more than 128 presentation contexts.
    @raise AsConfigError: the text is not a valid profile file.
    """
    return _ProfileFile(fileName, requestor).parse(text)


def acceptorPolicy(profile: Profile) -> AcceptorPolicy:
    """
    The acceptor policy of an SCP profile: each abstract syntax with its
    transfer syntaxes in preference order; the requestor may take the SCP
    role for the classes whose role selection is C{SCP} or C{BOTH}.

    @raise AsConfigError: the profile names an abstract syntax more than
        once, which storescp refuses.
    """
    counts = Counter(abstractSyntax for abstractSyntax, _ in profile.presentationContexts)
    duplicates = sorted(abstractSyntax for abstractSyntax, count in counts.items() if count > 1)
    if duplicates:
        raise AsConfigError(
            "profile is not valid for SCP use, duplicate abstract syntaxes: %s" % (", ".join(duplicates),),
            profile.fileName,
            section=profile.name,
        )
    return AcceptorPolicy(
        transferSyntaxes={abstractSyntax: list(syntaxes) for abstractSyntax, syntaxes in profile.presentationContexts},
        defaultTransferSyntaxes=None,
        scpRoleSOPClasses=frozenset(role.sopClassUID for role in profile.roleSelections if role.scpRole),
    )


# -- reading a file ---------------------------------------------------------------

#: The roles a role selection item may give, as (SCU role, SCP role) of the
#: association requestor.
_ROLES = {"SCU": (True, False), "SCP": (False, True), "BOTH": (True, True)}

#: DCMTK's limit on one item's extended negotiation data, in bytes.
MAXIMUM_EXTENDED_NEGOTIATION = 1024

_HEX_PAIRS = re.compile(r"(?:[0-9A-Fa-f]{2})+")


class _ProfileFile:
    """
    Reads the text of one profile file.

    @ivar fileName: the name every error gives.
    @ivar requestor: see L{parseProfiles}.
    @ivar _transferSyntaxLists: mangled name -> transfer syntax UIDs, once
        read.
    """

    def __init__(self, fileName: str, requestor: bool) -> None:
        self.fileName = fileName
        self.requestor = requestor
        self._transferSyntaxLists: Dict[str, List[str]] = {}

    def parse(self, text: str) -> AssociationProfiles:
        """
        Read every list, then every profile.
        """
        tree = self._tree(text)
        self._transferSyntaxLists = self._lists(tree, "TransferSyntaxes", self._transferSyntaxList, required=True)
        contexts = self._lists(tree, "PresentationContexts", self._presentationContextList, required=True)
        roles = self._lists(tree, "SCPSCURoleSelection", self._roleSelectionList)
        extended = self._lists(tree, "ExtendedNegotiation", self._extendedNegotiationList)
        profiles = {
            name: self._profile(name, section, contexts, roles, extended)
            for name, section in self._supersection(tree, "Profiles", required=True).children.items()
        }
        return AssociationProfiles(self.fileName, profiles)

    def _error(
        self,
        message: str,
        section: Optional[_Section] = None,
        entry: Optional[_Entry] = None,
        line: Optional[int] = None,
    ) -> AsConfigError:
        """
        An error at C{entry} of C{section}, or at C{section}, or at C{line}.
        """
        if line is None:
            line = entry.line if entry is not None else section.line if section is not None else None
        return AsConfigError(
            message,
            self.fileName,
            section=section.title if section is not None else None,
            key=entry.key if entry is not None else None,
            line=line,
        )

    # -- the tree ---------------------------------------------------------------

    def _tree(self, text: str) -> _Section:
        """
        The file as supersections of sections of settings.
        """
        root = _Section("", 0)
        supersection: Optional[_Section] = None
        section: Optional[_Section] = None
        entry: Optional[_Entry] = None
        for number, line in enumerate(re.split(r"\r\n|\r|\n", text.replace("\0", " ")), 1):
            content = line.strip(_WHITESPACE)
            if not content or content.startswith("#"):
                continue
            if entry is not None and line[0] in _WHITESPACE:
                entry.value += "\n" + content
                continue
            entry = None
            if content.startswith("["):
                level, heading = self._heading(content, number)
                if level == 2:
                    supersection, section = self._adopt(root, heading), None
                elif supersection is None:
                    raise self._error("section outside any [[supersection]]", heading)
                else:
                    section = self._adopt(supersection, heading)
            elif section is None:
                raise self._error("setting outside any [section]", line=number)
            else:
                entry = self._adopt(section, self._setting(section, content, number))
        return root

    def _heading(self, content: str, number: int) -> Tuple[int, _Section]:
        """
        Read C{[Section]} or C{[[Supersection]]}: its level and the new,
        empty section.
        """
        match = _HEADER.fullmatch("".join(character for character in content if character not in _WHITESPACE))
        if match is None or len(match.group(1)) != len(match.group(3)) or len(match.group(1)) > 2:
            raise self._error("malformed heading %r" % (content,), line=number)
        level, name = len(match.group(1)), match.group(2)
        if not _mangleKeyword(name):
            raise self._error("heading without a name", line=number)
        return level, _Section("[%s]" % (name,) if level == 2 else name, number)

    def _setting(self, section: _Section, content: str, number: int) -> _Entry:
        """
        Read C{Key = Value}.
        """
        if "=" not in content:
            raise self._error("expected 'Key = Value', found %r" % (content,), section, line=number)
        key, value = content.split("=", 1)
        entry = _Entry(key.strip(_WHITESPACE), value.strip(_WHITESPACE), number)
        if not _mangleKeyword(entry.key):
            raise self._error("setting without a key", section, entry)
        return entry

    def _adopt(self, parent: _Section, child: Union[_Section, _Entry]) -> Union[_Section, _Entry]:
        """
        Add a section or setting to C{parent} under its mangled name.
        """
        if isinstance(child, _Entry):
            mangled = _mangleKeyword(child.key)
            if mangled in parent.children:
                raise self._error("key defined twice", parent, child)
        else:
            mangled = _mangleKeyword(child.title)
            if mangled in parent.children:
                raise self._error("defined twice", child)
        parent.children[mangled] = child
        return child

    def _supersection(self, tree: _Section, title: str, required: bool = False) -> _Section:
        """
        The supersection C{[[title]]}, empty when it is optional and absent.
        """
        supersection = tree.children.get(_mangleKeyword(title))
        if supersection is None:
            if required:
                raise self._error("cannot find section [[%s]]" % (title,))
            return _Section(title, 0)
        return supersection

    # -- lists --------------------------------------------------------------------

    def _lists(self, tree: _Section, title: str, readList, required: bool = False) -> Dict[str, list]:
        """
        Every non-empty list of supersection C{[[title]]}, by mangled name.
        """
        lists = {}
        for name, section in self._supersection(tree, title, required).children.items():
            items = readList(section)
            if items:
                lists[name] = items
        return lists

    def _entries(self, section: _Section, prefix: str) -> List[_Entry]:
        """
        The settings C{prefix1}, C{prefix2}... of a section, in that order.
        """
        pattern = re.compile(_mangleKeyword(prefix) + "([1-9][0-9]*)")
        byNumber = {}
        for name, entry in section.children.items():
            match = pattern.fullmatch(name)
            if match is None:
                raise self._error("unexpected key, expected %s1, %s2..." % (prefix, prefix), section, entry)
            byNumber[int(match.group(1))] = entry
        for number in range(1, len(byNumber) + 1):
            if number not in byNumber:
                raise self._error(
                    "%s%d is missing: keys are numbered 1, 2, 3... without gaps" % (prefix, number), section
                )
        return [byNumber[number] for number in sorted(byNumber)]

    def _uid(self, section: _Section, entry: _Entry, text: str) -> str:
        """
        L{resolveUID}, with errors naming the setting.
        """
        try:
            return resolveUID(text)
        except ValueError as error:
            raise self._error(str(error), section, entry)

    def _split(self, section: _Section, entry: _Entry) -> Tuple[str, str]:
        """
        Split C{UID\\rest} at its first backslash.
        """
        if "\\" not in entry.value:
            raise self._error("syntax error: missing '\\' in %r" % (entry.value,), section, entry)
        uid, rest = entry.value.split("\\", 1)
        return self._uid(section, entry, uid.strip(_WHITESPACE)), rest

    def _transferSyntaxList(self, section: _Section) -> List[str]:
        """
        A C{[[TransferSyntaxes]]} list: UIDs in preference order.
        """
        return [self._uid(section, entry, entry.value) for entry in self._entries(section, "TransferSyntax")]

    def _presentationContextList(self, section: _Section) -> List[Tuple[str, Tuple[str, ...]]]:
        """
        A C{[[PresentationContexts]]} list: C{(abstractSyntax,
        transferSyntaxes)} pairs.
        """
        entries = self._entries(section, "PresentationContext")
        if self.requestor and len(entries) > MAXIMUM_PRESENTATION_CONTEXTS:
            raise self._error(
                "presentation context list too long (> %d entries)" % (MAXIMUM_PRESENTATION_CONTEXTS,),
                section,
                entries[MAXIMUM_PRESENTATION_CONTEXTS],
            )
        return [self._presentationContext(section, entry) for entry in entries]

    def _presentationContext(self, section: _Section, entry: _Entry) -> Tuple[str, Tuple[str, ...]]:
        """
        C{AbstractSyntax\\TransferSyntaxList}.
        """
        abstractSyntax, listName = self._split(section, entry)
        transferSyntaxes = self._transferSyntaxLists.get(mangleProfileName(listName))
        if transferSyntaxes is None:
            raise self._error(
                "transfer syntax list undefined or empty: %s" % (listName.strip(_WHITESPACE),), section, entry
            )
        return abstractSyntax, tuple(transferSyntaxes)

    def _roleSelectionList(self, section: _Section) -> List[SCPSCURoleSelection]:
        """
        A C{[[SCPSCURoleSelection]]} list: C{SOPClass\\SCU}, C{\\SCP} or
        C{\\BOTH}, each class once.
        """
        roles: List[SCPSCURoleSelection] = []
        for entry in self._entries(section, "Role"):
            sopClassUID, role = self._split(section, entry)
            flags = _ROLES.get(_asciiUpper(role.strip(_WHITESPACE)))
            if flags is None:
                raise self._error("syntax error: unknown role %r, expected SCU, SCP or BOTH" % (role,), section, entry)
            if any(known.sopClassUID == sopClassUID for known in roles):
                raise self._error(
                    "role selection defined twice for abstract syntax UID: %s" % (sopClassUID,), section, entry
                )
            roles.append(SCPSCURoleSelection(sopClassUID, *flags))
        return roles

    def _extendedNegotiationList(self, section: _Section) -> List[SOPClassExtendedNegotiation]:
        """
        A C{[[ExtendedNegotiation]]} list: C{SOPClass\\hexadecimal data},
        each class once.
        """
        items: List[SOPClassExtendedNegotiation] = []
        for entry in self._entries(section, "ExtendedNegotiation"):
            sopClassUID, text = self._split(section, entry)
            data = self._hexadecimal(section, entry, text.strip(_WHITESPACE))
            if any(known.sopClassUID == sopClassUID for known in items):
                raise self._error(
                    "extended negotiation defined twice for abstract syntax UID: %s" % (sopClassUID,), section, entry
                )
            items.append(SOPClassExtendedNegotiation(sopClassUID, data))
        return items

    def _hexadecimal(self, section: _Section, entry: _Entry, text: str) -> bytes:
        """
        Extended negotiation data: one or more pairs of hexadecimal digits.
        """
        if _HEX_PAIRS.fullmatch(text) is None:
            raise self._error("parse error in extended negotiation data %r" % (text,), section, entry)
        data = bytes.fromhex(text)
        if len(data) > MAXIMUM_EXTENDED_NEGOTIATION:
            raise self._error(
                "extended negotiation data too long, cannot handle > %d bytes" % (MAXIMUM_EXTENDED_NEGOTIATION,),
                section,
                entry,
            )
        return data

    # -- profiles -----------------------------------------------------------------

    def _profile(self, name: str, section: _Section, contexts: dict, roles: dict, extended: dict) -> Profile:
        """
        A C{[[Profiles]]} section: its presentation context list and, if it
        names them, role selection and extended negotiation lists, which may
        only name abstract syntaxes of its contexts.
        """
        for key, entry in section.children.items():
            if key not in ("PRESENTATIONCONTEXTS", "SCPSCUROLESELECTION", "EXTENDEDNEGOTIATION"):
                raise self._error(
                    "unexpected key, expected PresentationContexts, SCPSCURoleSelection or ExtendedNegotiation",
                    section,
                    entry,
                )
        if "PRESENTATIONCONTEXTS" not in section.children:
            raise self._error("no PresentationContexts entry", section)
        presentationContexts = self._reference(section, "PRESENTATIONCONTEXTS", contexts, "presentation context list")
        abstractSyntaxes = {abstractSyntax for abstractSyntax, _ in presentationContexts}
        roleSelections = self._reference(section, "SCPSCUROLESELECTION", roles, "role selection list")
        extendedNegotiations = self._reference(section, "EXTENDEDNEGOTIATION", extended, "extended negotiation list")
        for item in roleSelections + extendedNegotiations:
            if item.sopClassUID not in abstractSyntaxes:
                raise self._error(
                    "abstract syntax %s is not in the presentation context list" % (item.sopClassUID,), section
                )
        return Profile(
            name, self.fileName, tuple(presentationContexts), tuple(roleSelections), tuple(extendedNegotiations)
        )

    def _reference(self, section: _Section, key: str, lists: dict, kind: str) -> list:
        """
        The list a profile's setting C{key} names, or C{[]} without one.
        """
        entry = section.children.get(key)
        if entry is None:
            return []
        found = lists.get(mangleProfileName(entry.value))
        if found is None:
            raise self._error("%s undefined or empty: %s" % (kind, entry.value), section, entry)
        return found
