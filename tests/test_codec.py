"""
Tests for L{dicomd.codec}: element headers and whole elements in the three
uncompressed encodings, checked against pydicom's reader, and the element
scanner on every cut of a buffer and on undefined lengths.
"""

from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from twisted.trial.unittest import SynchronousTestCase

from dicomd.codec.elements import (
    EXPLICIT_BIG,
    EXPLICIT_LITTLE,
    IMPLICIT_LITTLE,
    ITEM,
    ITEM_DELIMITATION,
    SEQUENCE_DELIMITATION,
    UNCOMPRESSED_ENCODINGS,
    UNDEFINED_LENGTH,
    ElementScanner,
    Encoding,
    Malformed,
    Truncated,
    swapBytes,
)
from dicomd.codec.vr import LONG_LENGTH_VRS, SHORT_LENGTH_VRS, VRS, pad

ENCODINGS = (IMPLICIT_LITTLE, EXPLICIT_LITTLE, EXPLICIT_BIG)


def pydicomEncoded(dataset, encoding):
    """
    C{dataset} as pydicom writes it in C{encoding}.
    """
    fp = DicomBytesIO()
    fp.is_little_endian = encoding.littleEndian
    fp.is_implicit_VR = encoding.implicit
    write_dataset(fp, dataset)
    return fp.getvalue()


def sample():
    """
    A data set with short and long VRs, an odd-length text value and a
    sequence of two items.
    """
    dataset = Dataset()
    dataset.PatientName = "Doe^Jo"
    dataset.PatientID = "ID1"
    dataset.Rows = 2
    dataset.StudyInstanceUID = "1.2.3"
    first, second = Dataset(), Dataset()
    first.CodeValue = "T1"
    second.CodeValue = "T22"
    dataset.ReferencedStudySequence = Sequence([first, second])
    dataset.PixelData = b"\x01\x02\x03\x04"
    dataset["PixelData"].VR = "OW"
    return dataset


def undefinedLengthSequence(encoding, unknown=False):
    """
    An element (0008,1110) whose sequence and items have undefined length,
    in C{encoding} (as UN in explicit VR, read as implicit VR little
    endian, when C{unknown}), followed by (0010,0010).

    @return: the bytes, and where the Sequence Delimitation Item starts.
    """
    inner = IMPLICIT_LITTLE if unknown else encoding
    item = inner.element(0x00080100, "SH", b"T1") + inner.itemHeader(ITEM_DELIMITATION, 0)
    body = inner.itemHeader(ITEM, UNDEFINED_LENGTH) + item + inner.itemHeader(ITEM, 4) + b"abcd"
    sequence = encoding.header(0x00081110, "UN" if unknown else "SQ", UNDEFINED_LENGTH) + body
    delimiter = len(sequence)
    sequence += inner.itemHeader(SEQUENCE_DELIMITATION, 0)
    return sequence + encoding.element(0x00100010, "PN", b"Doe"), delimiter


class VRTests(SynchronousTestCase):
    """
    The VR tables of PS3.5.
    """

    def test_lengths(self):
        """
        Every VR has either a 16-bit or a 32-bit length in explicit VR.
        """
        self.assertEqual(len(VRS), 34)
        self.assertEqual(LONG_LENGTH_VRS | SHORT_LENGTH_VRS, VRS)
        self.assertFalse(LONG_LENGTH_VRS & SHORT_LENGTH_VRS)

    def test_pad(self):
        """
        Text is padded with a space, UIDs and binary values with NUL, and
        even lengths are left alone.
        """
        self.assertEqual(pad(b"ABC", "LO"), b"ABC ")
        self.assertEqual(pad(b"1.2", "UI"), b"1.2\x00")
        self.assertEqual(pad(b"\x01", "OB"), b"\x01\x00")
        self.assertEqual(pad(b"AB", "LO"), b"AB")


class EncodingTests(SynchronousTestCase):
    """
    Element headers and elements in each encoding.
    """

    def test_headers(self):
        """
        Headers are laid out as PS3.5 7.1.1 and 7.1.2 say.
        """
        self.assertEqual(IMPLICIT_LITTLE.header(0x00100010, "PN", 4), b"\x10\x00\x10\x00\x04\x00\x00\x00")
        self.assertEqual(EXPLICIT_LITTLE.header(0x00100010, "PN", 4), b"\x10\x00\x10\x00PN\x04\x00")
        self.assertEqual(EXPLICIT_LITTLE.header(0x7FE00010, "OW", 4), b"\xe0\x7f\x10\x00OW\x00\x00\x04\x00\x00\x00")
        self.assertEqual(EXPLICIT_BIG.header(0x00100010, "PN", 4), b"\x00\x10\x00\x10PN\x00\x04")
        self.assertEqual(EXPLICIT_BIG.itemHeader(ITEM, 8), b"\xff\xfe\xe0\x00\x00\x00\x00\x08")

    def test_shortLengthOverflow(self):
        """
        A value too long for a 16-bit length is refused with L{ValueError}.
        """
        self.assertRaises(ValueError, EXPLICIT_LITTLE.header, 0x00100010, "PN", 0x10000)
        self.assertEqual(len(IMPLICIT_LITTLE.header(0x00100010, "PN", 0x10000)), 8)

    def test_roundTrip(self):
        """
        Each header read back gives its tag, VR, length and value offset, in
        each encoding, for short and long VRs.
        """
        for encoding in ENCODINGS:
            for tag, vr, length in ((0x00100010, "PN", 6), (0x7FE00010, "OW", 70000), (0x00091001, "UN", 2)):
                data = b"xx" + encoding.header(tag, vr, length)
                expected = (tag, None if encoding.implicit else vr, length, len(data))
                self.assertEqual(encoding.readHeader(data, 2, len(data)), expected, (encoding, vr))
                self.assertEqual(encoding.readTag(data, 2), tag)

    def test_itemsHaveNoVR(self):
        """
        In explicit VR, items and delimiters are read without a VR.
        """
        for encoding in ENCODINGS:
            data = encoding.itemHeader(ITEM, UNDEFINED_LENGTH)
            self.assertEqual(encoding.readHeader(data, 0, 8), (ITEM, None, UNDEFINED_LENGTH, 8))
            self.assertEqual(encoding.readItemHeader(data, 0, 8), (ITEM, UNDEFINED_LENGTH, 8))

    def test_unknownVR(self):
        """
        A VR that is not in PS3.5 comes back as it is, with a 16-bit length.
        """
        data = b"\x10\x00\x10\x00ZZ\x02\x00ab"
        self.assertEqual(EXPLICIT_LITTLE.readHeader(data, 0, len(data)), (0x00100010, "ZZ", 2, 8))

    def test_truncatedHeader(self):
        """
        A header cut short raises L{Truncated} naming the bytes it needs.
        """
        data = EXPLICIT_LITTLE.header(0x7FE00010, "OB", 10)
        for cut in range(len(data)):
            needed = self.assertRaises(Truncated, EXPLICIT_LITTLE.readHeader, data[:cut], 0, cut).needed
            self.assertEqual(needed, 8 if cut < 8 else 12)
        self.assertRaises(Truncated, EXPLICIT_LITTLE.readTag, b"\x10\x00", 0)

    def test_elementsAsPydicomReadsThem(self):
        """
        Elements written by L{Encoding.element} are read by pydicom with
        their values, padded as PS3.5 says.
        """
        for encoding in ENCODINGS:
            data = encoding.element(0x00100010, "PN", b"Doe^J") + encoding.element(0x0020000D, "UI", b"1.2.3")
            dataset = read_dataset(BytesIO(data), encoding.implicit, encoding.littleEndian)
            self.assertEqual(str(dataset.PatientName), "Doe^J")
            self.assertEqual(dataset.StudyInstanceUID, "1.2.3")
            self.assertEqual(len(data) % 2, 0)

    def test_equality(self):
        """
        Encodings are values: equal when they encode alike.
        """
        self.assertEqual(Encoding(True, True), IMPLICIT_LITTLE)
        self.assertNotEqual(EXPLICIT_LITTLE, UNCOMPRESSED_ENCODINGS["1.2.840.10008.1.2.1.99"])
        self.assertEqual(len({Encoding(False, False), EXPLICIT_BIG}), 1)

    def test_swapBytes(self):
        """
        Words are reversed by their size; trailing bytes stay.
        """
        self.assertEqual(swapBytes(b"\x01\x02\x03\x04\x05", 2), b"\x02\x01\x04\x03\x05")
        self.assertEqual(swapBytes(b"\x01\x02\x03\x04", 4), b"\x04\x03\x02\x01")
        self.assertEqual(swapBytes(b"abc", 1), b"abc")


class ElementScannerTests(SynchronousTestCase):
    """
    L{ElementScanner} walks the elements pydicom writes, in every encoding.
    """

    def scan(self, data, encoding, **kwargs):
        return list(ElementScanner(data, encoding, **kwargs))

    def test_pydicomDataSets(self):
        """
        The scanner finds each top-level element of a data set pydicom
        wrote, with its value, stepping over the sequence.
        """
        dataset = sample()
        for encoding in ENCODINGS:
            data = pydicomEncoded(dataset, encoding)
            elements = self.scan(data, encoding)
            self.assertEqual([tag for tag, *_ in elements], sorted(int(tag) for tag in dataset.keys()))
            tag, vr, length, valueOffset, nextOffset = elements[1]
            self.assertEqual(bytes(data[valueOffset:nextOffset]), b"Doe^Jo")
            self.assertEqual(vr, None if encoding.implicit else "PN")
            self.assertEqual(elements[-1][-1], len(data))

    def test_everyCut(self):
        """
        Cut at every byte offset, the buffer gives the elements before the
        cut, then L{Truncated} needing more than the cut, unless the cut
        falls between elements.
        """
        for encoding in ENCODINGS:
            data = pydicomEncoded(sample(), encoding)
            whole = self.scan(data, encoding)
            boundaries = {0} | {element[-1] for element in whole}
            for cut in range(len(data)):
                seen = []
                try:
                    for element in ElementScanner(data[:cut], encoding):
                        seen.append(element)
                except Truncated as e:
                    self.assertNotIn(cut, boundaries)
                    self.assertGreater(e.needed, cut)
                    self.assertLessEqual(e.needed, len(data))
                else:
                    self.assertIn(cut, boundaries)
                self.assertEqual(seen, whole[: len(seen)])
                self.assertTrue(all(element[-1] <= cut for element in seen))

    def test_undefinedLengths(self):
        """
        A sequence and items of undefined length are stepped over to the
        Sequence Delimitation Item, in every encoding, and so is a UN
        sequence of undefined length in explicit VR, whose items are in
        implicit VR little endian (PS3.5 6.2.2).
        """
        cases = [(encoding, False) for encoding in ENCODINGS] + [(EXPLICIT_LITTLE, True), (EXPLICIT_BIG, True)]
        for encoding, unknown in cases:
            data, delimiter = undefinedLengthSequence(encoding, unknown)
            (sequence, name) = self.scan(data, encoding)
            tag, vr, length, valueOffset, nextOffset = sequence
            self.assertEqual((tag, length, nextOffset), (0x00081110, UNDEFINED_LENGTH, delimiter + 8))
            self.assertEqual(name[0], 0x00100010)
            self.assertEqual(bytes(data[name[3] : name[4]]), b"Doe ")

    def test_undefinedLengthEveryCut(self):
        """
        Cut anywhere inside an undefined length sequence, the scanner raises
        L{Truncated}.
        """
        data, delimiter = undefinedLengthSequence(EXPLICIT_LITTLE)
        for cut in range(1, delimiter + 8):
            self.assertRaises(Truncated, self.scan, data[:cut], EXPLICIT_LITTLE)

    def test_notAnItem(self):
        """
        A value of undefined length that holds no items is L{Malformed}.
        """
        data = EXPLICIT_LITTLE.header(0x00081110, "SQ", UNDEFINED_LENGTH) + EXPLICIT_LITTLE.element(0x00100010, "PN", b"Do")
        self.assertRaises(Malformed, self.scan, data, EXPLICIT_LITTLE)

    def test_stopBefore(self):
        """
        The walk stops at the first element at or after C{stopBefore}, not
        reading its value, and says so.
        """
        data = pydicomEncoded(sample(), EXPLICIT_LITTLE)
        cut = data[: data.index(b"\xe0\x7f\x10\x00OW") + 14]
        scanner = ElementScanner(cut, EXPLICIT_LITTLE, stopBefore=0x7FE00010)
        self.assertEqual([element[0] for element in scanner][-1], 0x00280010)
        self.assertTrue(scanner.reached)
        scanner = ElementScanner(data, EXPLICIT_LITTLE, stopBefore=0x7FE00011)
        list(scanner)
        self.assertFalse(scanner.reached)

    def test_offsetAndEnd(self):
        """
        The walk can start and end inside a buffer: an item's content.
        """
        element = EXPLICIT_LITTLE.element(0x00080100, "SH", b"T1")
        data = b"junk" + element + b"more"
        self.assertEqual(
            self.scan(data, EXPLICIT_LITTLE, offset=4, end=4 + len(element)),
            [(0x00080100, "SH", 2, 12, 14)],
        )
