"""
Tests for L{dicomd.storage.sopclasses}: storescp's default storage SOP
classes and DCMTK's modality prefixes, against UIDs and codes read from
DCMTK 3.6.8's C{dcuid.cc}.
"""

from pydicom.uid import UID_dictionary
from twisted.trial.unittest import SynchronousTestCase

from dicomd.storage.sopclasses import (
    MODALITY_PREFIXES,
    STORAGE_SOP_CLASSES,
    UNKNOWN_MODALITY,
    modalityPrefix,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
MULTIFRAME_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
VERIFICATION = "1.2.840.10008.1.1"
HANGING_PROTOCOL = "1.2.840.10008.5.1.4.38.1"
COLOR_PALETTE = "1.2.840.10008.5.1.4.39.1"


class StorageSOPClassesTests(SynchronousTestCase):
    """
    Tests for L{STORAGE_SOP_CLASSES}.
    """

    def test_count(self) -> None:
        """
        DCMTK 3.6.8's C{dcmAllStorageSOPClassUIDs} has 192 classes, each once.
        """
        self.assertEqual(len(STORAGE_SOP_CLASSES), 192)
        self.assertEqual(len(set(STORAGE_SOP_CLASSES)), 192)

    def test_dcmtkOrder(self) -> None:
        """
        The list keeps DCMTK's order: current classes alphabetically first, DICONDE's last.
        """
        self.assertEqual(STORAGE_SOP_CLASSES[0], "1.2.840.10008.5.1.4.1.1.88.71")
        self.assertEqual(STORAGE_SOP_CLASSES[0].name, "Acquisition Context SR Storage")
        self.assertEqual(STORAGE_SOP_CLASSES[-1], "1.2.840.10008.5.1.4.1.1.601.2")
        self.assertEqual(STORAGE_SOP_CLASSES[-1].name, "Eddy Current Multi-frame Image Storage")

    def test_registeredSOPClasses(self) -> None:
        """
        Every entry is a SOP class in pydicom's registry, so it has a name.
        """
        for uid in STORAGE_SOP_CLASSES:
            self.assertEqual(UID_dictionary[uid][1], "SOP Class", uid)
            self.assertEqual(uid.name, UID_dictionary[uid][0])

    def test_commonClasses(self) -> None:
        """
        The everyday image and document classes are accepted.
        """
        for uid in (
            CT_IMAGE,
            MR_IMAGE,
            MULTIFRAME_GRAYSCALE_WORD_SC,
            COMPREHENSIVE_SR,
            "1.2.840.10008.5.1.4.1.1.104.1",
        ):
            self.assertIn(uid, STORAGE_SOP_CLASSES)

    def test_newIn368(self) -> None:
        """
        Classes new in DCMTK 3.6.8 (photoacoustic, enhanced RT images, 32-bit ECG...) are there.
        """
        for uid in (
            "1.2.840.10008.5.1.4.1.1.6.3",
            "1.2.840.10008.5.1.4.1.1.481.23",
            "1.2.840.10008.5.1.4.1.1.481.24",
            "1.2.840.10008.5.1.4.1.1.9.1.4",
            "1.2.840.10008.5.1.4.1.1.11.12",
        ):
            self.assertIn(uid, STORAGE_SOP_CLASSES)

    def test_retiredDraftDICOSAndDICONDE(self) -> None:
        """
        Retired, draft, DICOS and DICONDE classes are accepted too.
        """
        for uid in (
            "1.2.840.10008.5.1.1.30",
            "1.2.840.10008.5.1.4.1.1.6",
            "1.2.840.10008.5.1.4.1.1.88.1",
            "1.2.840.10008.5.1.4.34.1",
            "1.2.840.10008.5.1.4.1.1.501.1",
            "1.2.840.10008.5.1.4.1.1.601.1",
        ):
            self.assertIn(uid, STORAGE_SOP_CLASSES)

    def test_notStorage(self) -> None:
        """
        Verification and the non-patient classes (hanging protocols, color palettes) are not listed.
        """
        for uid in (VERIFICATION, HANGING_PROTOCOL, COLOR_PALETTE):
            self.assertNotIn(uid, STORAGE_SOP_CLASSES)


class ModalityPrefixTests(SynchronousTestCase):
    """
    Tests for L{modalityPrefix} and L{MODALITY_PREFIXES}.
    """

    def test_tableSize(self) -> None:
        """
        DCMTK 3.6.8's C{modalities} table has 201 codes of 2 to 4 characters.
        """
        self.assertEqual(len(MODALITY_PREFIXES), 201)
        self.assertEqual({len(code) for code in MODALITY_PREFIXES.values()}, {2, 3, 4})

    def test_everyStorageClass(self) -> None:
        """
        Every class storescp accepts by default has a prefix.
        """
        self.assertEqual([uid for uid in STORAGE_SOP_CLASSES if uid not in MODALITY_PREFIXES], [])

    def test_knownClasses(self) -> None:
        """
        Known classes give DCMTK's codes.
        """
        expected = {
            CT_IMAGE: "CT",
            MR_IMAGE: "MR",
            MULTIFRAME_GRAYSCALE_WORD_SC: "SCw",
            COMPREHENSIVE_SR: "SRc",
            "1.2.840.10008.5.1.4.1.1.7": "SC",
            "1.2.840.10008.5.1.4.1.1.1.2": "DXm",
            "1.2.840.10008.5.1.4.1.1.88.76": "SRde",
            "1.2.840.10008.5.1.4.1.1.200.2": "PPcp",
            "1.2.840.10008.5.1.4.1.1.88.1": "SR_t",
            "1.2.840.10008.5.1.4.1.1.5": "NMr",
            "1.2.840.10008.5.1.4.1.1.481.13": "Rca",
            "1.2.840.10008.5.1.4.1.1.501.6": "QR",
            "1.2.840.10008.5.1.4.1.1.601.2": "ECm",
            HANGING_PROTOCOL: "HP",
            COLOR_PALETTE: "CP",
        }
        self.assertEqual({uid: modalityPrefix(uid) for uid in expected}, expected)

    def test_sharedCode(self) -> None:
        """
        Implantation Plan SR and Performed Imaging Agent Administration SR share C{SRi}, as in DCMTK.
        """
        self.assertEqual(modalityPrefix("1.2.840.10008.5.1.4.1.1.88.70"), "SRi")
        self.assertEqual(modalityPrefix("1.2.840.10008.5.1.4.1.1.88.75"), "SRi")

    def test_unknown(self) -> None:
        """
        A class DCMTK does not know is C{UNKNOWN}, storescp's default for file names.
        """
        self.assertEqual(UNKNOWN_MODALITY, "UNKNOWN")
        self.assertEqual(modalityPrefix("1.2.3.4.5"), "UNKNOWN")
        self.assertEqual(modalityPrefix(VERIFICATION), "UNKNOWN")

    def test_default(self) -> None:
        """
        Another default can be given, as storescp's log line gives C{OT}.
        """
        self.assertEqual(modalityPrefix("1.2.3.4.5", "OT"), "OT")
        self.assertEqual(modalityPrefix(CT_IMAGE, "OT"), "CT")
