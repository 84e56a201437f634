"""
Tests for L{dicomd.storage.recode}: storescp's output options that
re-encode a stored file (C{-F}, C{+t?}, C{+g?}, C{+e}/C{-e}, C{+p}, C{-u},
C{+uc}, C{+cl}).

Every result is read back with pydicom and with DCMTK's C{dcmdump}; where
DCMTK's C{dcmconv} has the same option, its output for the same input is the
reference, and the data sets must dump alike.
"""

import os
import re
import shutil
import stat
import struct
import subprocess

from pydicom import config, dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)
from twisted.internet import defer
from twisted.trial import unittest

from dicomd.storage.recode import (
    GROUP_LENGTH_CREATE,
    GROUP_LENGTH_REMOVE,
    RecodeOptions,
    checkOptions,
    convertDataSet,
    recoder,
)
from tests.dicomfiles import SECONDARY_CAPTURE_STORAGE, makeDataset, writeFile
from tests.support import (
    dcmtk,
    dcmtkEnvironment,
    dicomdArgv,
    makeDirectory,
    pythonEnvironment,
    runCommand,
    startPeer,
)

#: dcmdump's names of the transfer syntaxes, on its "# Used TransferSyntax"
#: line.
USED = {
    ImplicitVRLittleEndian: "Little Endian Implicit",
    ExplicitVRLittleEndian: "Little Endian Explicit",
    ExplicitVRBigEndian: "Big Endian Explicit",
    DeflatedExplicitVRLittleEndian: "Deflated Explicit VR Little Endian",
}

#: storescp's transfer syntax options.
SYNTAX_OPTIONS = {
    ImplicitVRLittleEndian: "+ti",
    ExplicitVRLittleEndian: "+te",
    ExplicitVRBigEndian: "+tb",
    DeflatedExplicitVRLittleEndian: "+td",
}

_GROUP_LENGTH = re.compile(r"^\s*\(([0-9a-f]{4}),0000\) UL (\d+)", re.MULTILINE)
_ITEM_LENGTH = re.compile(r"\(fffe,e000\) na \(Item with explicit length #=\d+\)\s+#\s*(\d+),")


# -- making files --------------------------------------------------------------------


def unknown(tag, value):
    """
    An element of VR UN with raw C{value}, built so that pydicom's global
    C{replace_un_with_known_vr} does not turn it into its dictionary VR.
    """
    element = DataElement(tag, "OB", value)
    element.VR = "UN"
    return element


def richDataset():
    """
    A 4x4 16-bit image with nested sequences, an empty item, binary VRs of
    every word size, post-1993 VRs, a UN element of a known tag, and private
    elements with and without a known creator.
    """
    dataset = makeDataset(rows=4, columns=4)
    code = Dataset()
    code.CodeValue = "121"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "odd"
    reference = Dataset()
    reference.ReferencedSOPClassUID = SECONDARY_CAPTURE_STORAGE
    reference.ReferencedSOPInstanceUID = "1.2.3"
    code.ReferencedSOPSequence = Sequence([reference])
    dataset.ProcedureCodeSequence = Sequence([code, Dataset()])
    dataset[0x00181000] = unknown(0x00181000, b"SERIAL12")
    dataset.add_new(0x00204000, "UT", "comment")
    dataset.add_new(0x00280106, "US", 3)
    dataset.add_new(0x00209165, "AT", [0x00100010, 0x00200013])
    dataset.add_new(0x00189219, "FD", [1.5, -2.25])
    dataset.add_new(0x00186050, "SL", [-5, 7])
    dataset.add_new(0x00181310, "US", [1, 2, 3, 4])
    dataset.add_new(0x00281050, "DS", ["40", "400"])
    dataset.add_new(0x00660016, "OF", struct.pack("<2f", 1.0, 2.0))
    dataset.add_new(0x00720075, "OD", struct.pack("<d", 1.0))
    dataset.add_new(0x00660040, "OL", struct.pack("<2L", 1, 2))
    dataset.add_new(0x00080120, "UR", "http://x/")
    dataset.add_new(0x00080119, "UC", "long code")
    dataset.add_new(0x00091010, "LO", "priv")
    dataset.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
    dataset.add_new(0x00291008, "CS", "IMAGE NUM 4")
    dataset.add_new(0x00291010, "OB", b"\x01\x02\x03\x04")
    return dataset


def minimalDataset():
    """
    A data set with only SOP Class, SOP Instance and Patient's Name, that
    raw elements can be appended to.
    """
    dataset = Dataset()
    dataset.SOPClassUID = SECONDARY_CAPTURE_STORAGE
    dataset.SOPInstanceUID = generate_uid()
    dataset.PatientName = "A^B"
    return dataset


def implicitElement(tag, value):
    """
    An element encoded in implicit VR little endian.
    """
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value


def undefinedLengthUN():
    """
    (0040,0275) Request Attributes Sequence sent as UN with undefined length
    (CP-246: its items are in implicit VR little endian), in explicit VR
    little endian.
    """
    item = implicitElement(0x00400007, b"DESCRIPTION ") + implicitElement(0x00401001, b"RP1 ")
    return (
        struct.pack("<HH2sHL", 0x0040, 0x0275, b"UN", 0, 0xFFFFFFFF)
        + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + item
        + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    )


def definedLengthSequenceUN():
    """
    (0040,0260) Performed Protocol Code Sequence sent as UN with a defined
    length: one item with a Code Value, in implicit VR little endian.
    """
    code = implicitElement(0x00080100, b"CODE")
    body = struct.pack("<HHL", 0xFFFE, 0xE000, len(code)) + code
    return struct.pack("<HH2sHL", 0x0040, 0x0260, b"UN", 0, len(body)) + body


# -- running and reading -----------------------------------------------------------------


def recodeCopy(testCase, source, options, name="recoded.dcm"):
    """
    Copy C{source} into a fresh directory and recode the copy.

    @return: the copy's path.
    """
    path = os.path.join(makeDirectory(testCase), name)
    shutil.copy(source, path)
    recoder(options)(path)
    return path


def dcmdump(path, *options):
    """
    DCMTK's dump of a file, with long values in full.
    """
    result = subprocess.run([dcmtk("dcmdump"), "+L", "-q", *options, path], capture_output=True, text=True)
    if result.returncode:
        raise AssertionError("dcmdump %s failed: %s%s" % (path, result.stdout, result.stderr))
    return result.stdout


def dataSetDump(path, *options):
    """
    DCMTK's dump of a file's data set, from its "# Used TransferSyntax" line
    on.
    """
    dump = dcmdump(path, *options)
    return dump[dump.index("# Dicom-Data-Set") :]


def dcmconv(testCase, source, *options):
    """
    Convert C{source} with DCMTK's C{dcmconv} and C{options}.

    @return: the converted file's path.
    """
    target = os.path.join(makeDirectory(testCase), "dcmconv.dcm")
    subprocess.run([dcmtk("dcmconv"), *options, source, target], check=True, capture_output=True)
    return target


def usedSyntax(path, *options):
    """
    The transfer syntax dcmdump read a file's data set in.
    """
    return re.findall(r"# Used TransferSyntax: (.*)", dcmdump(path, *options))[-1].strip()


def groupLengths(dump):
    """
    The group length elements of a dump, as C{[(group, value)]} in order.
    """
    return [(group, int(value)) for group, value in _GROUP_LENGTH.findall(dump)]


def writeSource(testCase, dataset=None, syntax=ExplicitVRLittleEndian, append=b"", name="source.dcm"):
    """
    Write a Part-10 file (the rich data set by default) in a fresh
    directory, with raw encoded elements appended.

    @return: its path.
    """
    path = os.path.join(makeDirectory(testCase), name)
    writeFile(path, dataset if dataset is not None else richDataset(), syntax)
    if append:
        with open(path, "ab") as f:
            f.write(append)
    return path


def withWrongGroupLengths(testCase, source):
    """
    A copy of C{source} written with a group length for every group (C{+g}),
    whose (7FE0,0000) then says 0x12345678.
    """
    path = recodeCopy(testCase, source, RecodeOptions(groupLength=GROUP_LENGTH_CREATE), "lengths.dcm")
    with open(path, "rb") as f:
        data = f.read()
    marker = b"\xe0\x7f\x00\x00UL\x04\x00"
    position = data.index(marker) + len(marker)
    with open(path, "wb") as f:
        f.write(data[:position] + struct.pack("<L", 0x12345678) + data[position + 4 :])
    return path


class DCMTKComparison:
    """
    Assertions that compare our output with DCMTK's C{dcmconv} for the same
    input and options.
    """

    def assertLikeDCMTK(self, source, options, *dcmconvOptions):
        """
        Recode C{source} with C{options} and convert it with C{dcmconv
        dcmconvOptions}: the data sets must dump alike.

        @return: the path of our file.
        """
        ours = recodeCopy(self, source, options)
        theirs = dcmconv(self, source, *dcmconvOptions)
        self.assertEqual(dataSetDump(ours), dataSetDump(theirs))
        return ours


# -- transfer syntaxes ---------------------------------------------------------------------


class TransferSyntaxTests(DCMTKComparison, unittest.SynchronousTestCase):
    """
    C{+t=}, C{+te}, C{+tb}, C{+ti}, C{+td} and C{+cl}.
    """

    def test_implicit(self):
        """+ti writes implicit VR little endian and says so in the File Meta Information."""
        path = recodeCopy(self, writeSource(self), RecodeOptions(transferSyntax=ImplicitVRLittleEndian))
        self.assertEqual(usedSyntax(path), "Little Endian Implicit")
        self.assertIn("(0002,0010) UI =LittleEndianImplicit", dcmdump(path))
        dataset = dcmread(path)
        self.assertEqual(dataset.file_meta.TransferSyntaxUID, ImplicitVRLittleEndian)
        self.assertEqual(dataset.PatientName, "Doe^John")
        self.assertEqual(dataset.ProcedureCodeSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID, "1.2.3")

    def test_bigEndianPixelData(self):
        """+tb swaps 16-bit Pixel Data, so pydicom reads the same pixels."""
        source = writeSource(self)
        path = recodeCopy(self, source, RecodeOptions(transferSyntax=ExplicitVRBigEndian))
        self.assertEqual(usedSyntax(path), "Big Endian Explicit")
        original, recoded = dcmread(source), dcmread(path)
        self.assertEqual(recoded.file_meta.TransferSyntaxUID, ExplicitVRBigEndian)
        self.assertEqual(recoded.pixel_array.tolist(), original.pixel_array.tolist())

    def test_bigEndianValues(self):
        """+tb writes every binary VR in big endian: dcmdump shows the same values as for the source."""
        source = writeSource(self)
        path = recodeCopy(self, source, RecodeOptions(transferSyntax=ExplicitVRBigEndian))
        before = dataSetDump(source).splitlines()[2:]
        after = dataSetDump(path).splitlines()[2:]
        self.assertEqual(after, before)
        recoded = dcmread(path)
        self.assertEqual(recoded.DimensionIndexPointer, [0x00100010, 0x00200013])
        self.assertEqual(recoded.NumberOfTableBreakPoints, [-5, 7])
        self.assertEqual(recoded.TagAngleSecondAxis, [1.5, -2.25])
        self.assertEqual(recoded[0x00660016].value, struct.pack(">2f", 1.0, 2.0))

    def test_bigEndianRoundTrip(self):
        """Little to big to little endian gives back the same file, pixel data included."""
        source = writeSource(self)
        path = recodeCopy(self, source, RecodeOptions(transferSyntax=ExplicitVRBigEndian))
        recoder(RecodeOptions(transferSyntax=ExplicitVRLittleEndian))(path)
        self.assertEqual(dcmread(path).PixelData, dcmread(source).PixelData)
        with open(source, "rb") as f, open(path, "rb") as g:
            self.assertEqual(g.read(), f.read())

    def test_bigEndianToImplicit(self):
        """A big endian file written as implicit VR keeps its pixels."""
        source = writeSource(self, syntax=ExplicitVRBigEndian)
        path = recodeCopy(self, source, RecodeOptions(transferSyntax=ImplicitVRLittleEndian))
        self.assertEqual(usedSyntax(path), "Little Endian Implicit")
        self.assertEqual(dcmread(path).pixel_array.tolist(), dcmread(source).pixel_array.tolist())

    def test_deflated(self):
        """+td writes the deflated syntax, which dcmdump and pydicom inflate."""
        source = writeSource(self)
        path = recodeCopy(self, source, RecodeOptions(transferSyntax=DeflatedExplicitVRLittleEndian))
        self.assertEqual(usedSyntax(path), "Deflated Explicit VR Little Endian")
        recoded = dcmread(path)
        self.assertEqual(recoded.file_meta.TransferSyntaxUID, DeflatedExplicitVRLittleEndian)
        self.assertEqual(recoded.PixelData, dcmread(source).PixelData)

    def test_deflatedInput(self):
        """A deflated file can be written in explicit VR little endian."""
        source = writeSource(self)
        deflated = recodeCopy(self, source, RecodeOptions(transferSyntax=DeflatedExplicitVRLittleEndian))
        path = recodeCopy(self, deflated, RecodeOptions(transferSyntax=ExplicitVRLittleEndian))
        with open(source, "rb") as f, open(path, "rb") as g:
            self.assertEqual(g.read(), f.read())

    def test_compressionLevel(self):
        """+cl sets the zlib level: 0 stores, 9 compresses."""
        dataset = makeDataset(rows=64, columns=64, pixelData=bytes(64 * 64 * 2))
        source = writeSource(self, dataset)
        sizes = {}
        for level in (0, 9):
            options = RecodeOptions(transferSyntax=DeflatedExplicitVRLittleEndian, compressionLevel=level)
            path = recodeCopy(self, source, options)
            self.assertEqual(dcmread(path).PixelData, dataset.PixelData)
            sizes[level] = os.path.getsize(path)
        self.assertGreater(sizes[0], os.path.getsize(source))
        self.assertLess(sizes[9], os.path.getsize(source) // 4)

    def test_sameSyntax(self):
        """+t= keeps the received syntax while another option re-encodes."""
        source = writeSource(self, syntax=ExplicitVRBigEndian)
        path = recodeCopy(self, source, RecodeOptions(groupLength=GROUP_LENGTH_CREATE))
        self.assertEqual(usedSyntax(path), "Big Endian Explicit")
        self.assertEqual(dcmread(path).pixel_array.tolist(), dcmread(source).pixel_array.tolist())

    def test_asDCMTK(self):
        """Each syntax option writes the data set as dcmconv does."""
        source = writeSource(self)
        for syntax, option in SYNTAX_OPTIONS.items():
            self.assertLikeDCMTK(source, RecodeOptions(transferSyntax=syntax), option)

    def test_implicitSourceAsDCMTK(self):
        """From implicit VR, VRs come from the dictionaries as DCMTK finds them, private ones included."""
        dataset = richDataset()
        dataset.PixelRepresentation = 1
        dataset.add_new(0x00280106, "SS", -3)
        dataset.add_new(0x60003000, "OW", bytes(range(8)))
        dataset.add_new(0x60000010, "US", 2)
        source = writeSource(self, dataset, ImplicitVRLittleEndian)
        for syntax in (ExplicitVRLittleEndian, ExplicitVRBigEndian):
            path = self.assertLikeDCMTK(source, RecodeOptions(transferSyntax=syntax), SYNTAX_OPTIONS[syntax])
            dump = dcmdump(path)
            self.assertIn("(0028,0106) SS -3", dump)
            self.assertIn("(0029,1008) CS [IMAGE NUM 4]", dump)
            self.assertIn("(6000,3000) OW 0100\\0302\\0504\\0706", dump)

    def test_eightBitPixelData(self):
        """8-bit Pixel Data read in implicit VR is written as OB, its bytes unchanged in big endian."""
        dataset = makeDataset(rows=4, columns=4)
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
        dataset.PixelData = bytes(range(16))
        source = writeSource(self, dataset, ImplicitVRLittleEndian)
        path = recodeCopy(self, source, RecodeOptions(transferSyntax=ExplicitVRBigEndian))
        self.assertIn("(7fe0,0010) OB 00\\01\\02\\03\\04\\05\\06\\07\\08\\09\\0a\\0b\\0c\\0d\\0e\\0f", dcmdump(path))
        self.assertEqual(dcmread(path).PixelData, bytes(range(16)))

    def test_encapsulatedRefused(self):
        """A JPEG file cannot be converted: ValueError naming both syntaxes, the file untouched, nothing left behind."""
        dataset = makeDataset(rows=4, columns=4, pixelData=encapsulate([b"\xff\xd8\xff\xe0fake\xff\xd9"]))
        dataset["PixelData"].VR = "OB"
        source = writeSource(self, dataset, JPEGBaseline8Bit)
        with open(source, "rb") as f:
            before = f.read()
        recode = recoder(RecodeOptions(transferSyntax=ExplicitVRLittleEndian))
        error = self.assertRaises(ValueError, recode, source)
        self.assertIn(JPEGBaseline8Bit, str(error))
        self.assertIn(ExplicitVRLittleEndian, str(error))
        self.assertIn("compressed", str(error))
        with open(source, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(os.listdir(os.path.dirname(source)), ["source.dcm"])

    def test_encapsulatedKept(self):
        """With +t= a JPEG file keeps its syntax and fragments while other options apply."""
        fragment = b"\xff\xd8\xff\xe0fake\xff\xd9"
        dataset = makeDataset(rows=4, columns=4, pixelData=encapsulate([fragment]))
        dataset["PixelData"].VR = "OB"
        source = writeSource(self, dataset, JPEGBaseline8Bit)
        path = recodeCopy(self, source, RecodeOptions(groupLength=GROUP_LENGTH_CREATE, undefinedLengths=True))
        dump = dcmdump(path)
        self.assertIn("(7fe0,0010) OB (PixelSequence #=2)", dump)
        self.assertIn("(7fe0,0000) UL", dump)
        self.assertEqual(dcmread(path).PixelData, dataset.PixelData)


# -- group lengths ---------------------------------------------------------------------------


class GroupLengthTests(DCMTKComparison, unittest.SynchronousTestCase):
    """
    C{+g=}, C{+g} and C{-g}.
    """

    def test_recalculate(self):
        """+g= (the default) rewrites the group lengths present with their values in the new syntax."""
        source = withWrongGroupLengths(self, writeSource(self))
        self.assertIn(("7fe0", 0x12345678), groupLengths(dataSetDump(source)))
        path = self.assertLikeDCMTK(source, RecodeOptions(transferSyntax=ImplicitVRLittleEndian), "+ti")
        lengths = dict(groupLengths(dataSetDump(path)))
        self.assertEqual(lengths["7fe0"], 8 + 32)

    def test_recalculateOnlyPresent(self):
        """+g= adds no group length where there was none."""
        path = recodeCopy(self, writeSource(self), RecodeOptions(transferSyntax=ImplicitVRLittleEndian))
        self.assertEqual(groupLengths(dataSetDump(path)), [])

    def test_create(self):
        """+g writes a correct group length for every group, in items too."""
        source = writeSource(self)
        path = self.assertLikeDCMTK(source, RecodeOptions(groupLength=GROUP_LENGTH_CREATE), "+g")
        dump = dataSetDump(path)
        lengths = groupLengths(dump)
        self.assertEqual(
            [group for group, _ in lengths],
            ["0008", "0008", "0008", "0009", "0010", "0018", "0020", "0028", "0029", "0066", "0072", "7fe0"],
        )
        self.assertIn(("7fe0", 12 + 32), lengths)
        self.assertIn(("0072", 12 + 8), lengths)

    def test_createImplicit(self):
        """+g with +ti computes lengths for implicit VR headers."""
        source = writeSource(self)
        options = RecodeOptions(transferSyntax=ImplicitVRLittleEndian, groupLength=GROUP_LENGTH_CREATE)
        path = self.assertLikeDCMTK(source, options, "+ti", "+g")
        self.assertIn(("7fe0", 8 + 32), groupLengths(dataSetDump(path)))

    def test_remove(self):
        """-g removes every group length of the data set, and keeps the File Meta Information's."""
        source = withWrongGroupLengths(self, writeSource(self))
        path = self.assertLikeDCMTK(source, RecodeOptions(groupLength=GROUP_LENGTH_REMOVE), "-g")
        self.assertEqual(groupLengths(dataSetDump(path)), [])
        self.assertIn("(0002,0000) UL", dcmdump(path))
        self.assertEqual(dcmread(path).PatientName, "Doe^John")

    def test_metaGroupLength(self):
        """The File Meta Information's group length matches the Transfer Syntax UID written."""
        for syntax in SYNTAX_OPTIONS:
            path = recodeCopy(self, writeSource(self), RecodeOptions(transferSyntax=syntax))
            with open(path, "rb") as f:
                data = f.read()
            self.assertEqual(data[132:140], b"\x02\x00\x00\x00UL\x04\x00")
            (length,) = struct.unpack("<L", data[140:144])
            self.assertNotEqual(data[144 + length : 146 + length], b"\x02\x00")
            self.assertIn(syntax.encode("ascii"), data[144 : 144 + length])
            self.assertEqual(usedSyntax(path, "-ml"), USED[syntax])


# -- sequence and item lengths -------------------------------------------------------------


class LengthEncodingTests(DCMTKComparison, unittest.SynchronousTestCase):
    """
    C{+e} and C{-e}.
    """

    def test_undefined(self):
        """-e writes sequences and items with undefined length and delimiters."""
        path = self.assertLikeDCMTK(writeSource(self), RecodeOptions(undefinedLengths=True), "-e")
        dump = dcmdump(path)
        self.assertIn("(0008,1032) SQ (Sequence with undefined length #=2)", dump)
        self.assertIn("(0008,1199) SQ (Sequence with undefined length #=1)", dump)
        self.assertIn("(fffe,e000) na (Item with undefined length #=0)", dump)
        self.assertNotIn("explicit length", dump)
        dataset = dcmread(path)
        self.assertEqual(dataset.ProcedureCodeSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID, "1.2.3")

    def test_explicit(self):
        """+e (the default) writes explicit lengths for sequences received with undefined ones."""
        dataset = richDataset()
        dataset["ProcedureCodeSequence"].is_undefined_length = True
        for item in dataset.ProcedureCodeSequence:
            item.is_undefined_length_sequence_item = True
        source = writeSource(self, dataset)
        self.assertIn("Sequence with undefined length", dcmdump(source))
        path = self.assertLikeDCMTK(source, RecodeOptions(transferSyntax=ImplicitVRLittleEndian), "+ti")
        dump = dcmdump(path)
        self.assertIn("(0008,1032) SQ (Sequence with explicit length #=2)", dump)
        self.assertNotIn("undefined length", dump)


# -- padding ---------------------------------------------------------------------------------


class PaddingTests(unittest.SynchronousTestCase):
    """
    C{+p f i} and C{-p}.
    """

    def test_file(self):
        """+p aligns the file on f bytes with Data Set Trailing Padding at its end."""
        source = writeSource(self)
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian):
            path = recodeCopy(self, source, RecodeOptions(transferSyntax=syntax, padding=(256, 0)))
            self.assertEqual(os.path.getsize(path) % 256, 0)
            lines = dataSetDump(path).strip().splitlines()
            self.assertTrue(lines[-1].startswith("(fffc,fffc) OB 00\\00"), lines[-1])
            self.assertEqual(dcmread(path).pixel_array.tolist(), dcmread(source).pixel_array.tolist())

    def test_items(self):
        """+p aligns the content of every item, nested ones too, on i bytes."""
        source = writeSource(self)
        path = recodeCopy(self, source, RecodeOptions(padding=(0, 32)))
        dump = dcmdump(path)
        self.assertEqual([int(length) for length in _ITEM_LENGTH.findall(dump)], [160, 64, 0])
        self.assertEqual(dump.count("(fffc,fffc)"), 2)

    def test_asDCMTK(self):
        """Item padding and the data set before its trailing padding are what dcmconv writes."""
        source = writeSource(self)
        ours = recodeCopy(self, source, RecodeOptions(transferSyntax=ExplicitVRBigEndian, padding=(512, 16)))
        theirs = dcmconv(self, source, "+tb", "+p", "512", "16")
        self.assertEqual(os.path.getsize(ours) % 512, 0)
        self.assertEqual(os.path.getsize(theirs) % 512, 0)
        self.assertEqual(dataSetDump(ours).splitlines()[:-1], dataSetDump(theirs).splitlines()[:-1])

    def test_shortGap(self):
        """A gap smaller than the padding element's header takes one more multiple of f."""
        dataset = minimalDataset()
        source = writeSource(self, dataset)
        size = os.path.getsize(source)
        path = recodeCopy(self, source, RecodeOptions(padding=(size + 4, 0)))
        self.assertEqual(os.path.getsize(path), 2 * (size + 4))

    def test_aligned(self):
        """A file already aligned gets no padding."""
        source = writeSource(self)
        size = os.path.getsize(source)
        path = recodeCopy(self, source, RecodeOptions(padding=(size, 0)))
        self.assertNotIn("(fffc,fffc)", dcmdump(path))
        self.assertEqual(os.path.getsize(path), size)

    def test_removed(self):
        """Received Data Set Trailing Padding is removed when the file is re-encoded without +p, as DCMTK's -p does."""
        dataset = richDataset()
        dataset.add_new(0xFFFCFFFC, "OB", bytes(10))
        dataset.ProcedureCodeSequence[0].add_new(0xFFFCFFFC, "OB", bytes(4))
        source = writeSource(self, dataset)
        self.assertEqual(dcmdump(source).count("(fffc,fffc)"), 2)
        path = recodeCopy(self, source, RecodeOptions(transferSyntax=ImplicitVRLittleEndian))
        self.assertNotIn("(fffc,fffc)", dcmdump(path))

    def test_dataSetOnly(self):
        """With -F (which storescp does not combine with +p) the data set alone is aligned."""
        path = recodeCopy(self, writeSource(self), RecodeOptions(writeDataSetOnly=True, padding=(128, 0)))
        self.assertEqual(os.path.getsize(path) % 128, 0)

    def test_odd(self):
        """Odd padding lengths are refused when the recoder is made."""
        self.assertRaises(ValueError, recoder, RecodeOptions(padding=(255, 0)))
        self.assertRaises(ValueError, checkOptions, RecodeOptions(padding=(256, 7)))


# -- post-1993 VRs -----------------------------------------------------------------------------


class NewVRTests(DCMTKComparison, unittest.SynchronousTestCase):
    """
    C{+u} and C{-u}.
    """

    def test_disabled(self):
        """-u writes UN, UT, UR, UC, OF, OD and OL as OB, as dcmconv -u does."""
        path = self.assertLikeDCMTK(writeSource(self), RecodeOptions(newVRs=False), "-u")
        dump = dcmdump(path)
        for tag in ("0018,1000", "0020,4000", "0008,0120", "0008,0119", "0066,0016", "0072,0075", "0066,0040"):
            self.assertIn("(%s) OB" % (tag,), dump)
        self.assertIn("(0020,4000) OB 63\\6f\\6d\\6d\\65\\6e\\74\\20", dump)

    def test_disabledBigEndian(self):
        """With -u and +tb the values written as OB stay in little endian, as DCMTK writes them."""
        source = writeSource(self)
        options = RecodeOptions(transferSyntax=ExplicitVRBigEndian, newVRs=False)
        path = self.assertLikeDCMTK(source, options, "+tb", "-u")
        self.assertIn("(0066,0016) OB 00\\00\\80\\3f\\00\\00\\00\\40", dcmdump(path))
        self.assertIn("(7fe0,0010) OW", dcmdump(path))
        self.assertEqual(dcmread(path).pixel_array.tolist(), dcmread(source).pixel_array.tolist())

    def test_enabled(self):
        """+u (the default) keeps the post-1993 VRs."""
        path = recodeCopy(self, writeSource(self), RecodeOptions(transferSyntax=ExplicitVRBigEndian))
        dump = dcmdump(path)
        self.assertIn("(0020,4000) UT [comment]", dump)
        self.assertIn("(0066,0016) OF 1\\2", dump)

    def test_longValue(self):
        """A value too long for a 16-bit length is written as UN, or OB with -u, in little endian."""
        dataset = minimalDataset()
        dataset.add_new(0x00181310, "US", list(range(40000)))
        source = writeSource(self, dataset, ImplicitVRLittleEndian)
        for newVRs, vr in ((True, "UN"), (False, "OB")):
            options = RecodeOptions(transferSyntax=ExplicitVRBigEndian, newVRs=newVRs)
            args = ("+tb",) if newVRs else ("+tb", "-u")
            path = self.assertLikeDCMTK(source, options, *args)
            self.assertIn("(0018,1310) %s 00\\00\\01\\00\\02\\00" % (vr,), dcmdump(path))


# -- UN ------------------------------------------------------------------------------------------


class ConvertUNTests(DCMTKComparison, unittest.SynchronousTestCase):
    """
    C{-uc} and C{+uc}, whatever pydicom's global configuration says.
    """

    def test_retain(self):
        """-uc (the default) keeps UN even though pydicom converts UN by default."""
        self.assertTrue(config.replace_un_with_known_vr)
        path = recodeCopy(self, writeSource(self), RecodeOptions(transferSyntax=ExplicitVRBigEndian))
        self.assertIn("(0018,1000) UN 53\\45\\52\\49\\41\\4c\\31\\32", dcmdump(path))
        self.assertEqual(dcmread(path).get_item(0x00181000).VR, "UN")
        self.assertTrue(config.replace_un_with_known_vr)

    def test_convert(self):
        """+uc gives a UN element its dictionary VR even with pydicom's conversion off."""
        self.patch(config, "replace_un_with_known_vr", False)
        source = writeSource(self)
        options = RecodeOptions(transferSyntax=ExplicitVRBigEndian, convertUN=True)
        path = self.assertLikeDCMTK(source, options, "+uc", "+tb")
        self.assertIn("(0018,1000) LO [SERIAL12]", dcmdump(path))
        self.assertFalse(config.replace_un_with_known_vr)

    def test_convertSequence(self):
        """+uc parses a UN element of a sequence tag as an implicit VR sequence."""
        source = writeSource(self, minimalDataset(), append=definedLengthSequenceUN())
        self.assertIn("(0040,0260) UN", dcmdump(source))
        path = self.assertLikeDCMTK(source, RecodeOptions(convertUN=True), "+uc")
        dump = dcmdump(path)
        self.assertIn("(0040,0260) SQ (Sequence with explicit length #=1)", dump)
        self.assertIn("(0008,0100) SH [CODE]", dump)

    def test_unknownTag(self):
        """+uc leaves UN the elements no dictionary knows."""
        dataset = minimalDataset()
        dataset[0x00091010] = unknown(0x00091010, b"abcd")
        path = recodeCopy(self, writeSource(self, dataset), RecodeOptions(convertUN=True))
        self.assertIn("(0009,1010) UN 61\\62\\63\\64", dcmdump(path))

    def test_undefinedLength(self):
        """A UN element of undefined length is read as an implicit VR sequence and written as SQ, as DCMTK does."""
        source = writeSource(self, minimalDataset(), append=definedLengthSequenceUN() + undefinedLengthUN())
        for syntax in (ExplicitVRLittleEndian, ExplicitVRBigEndian):
            path = self.assertLikeDCMTK(source, RecodeOptions(transferSyntax=syntax), SYNTAX_OPTIONS[syntax])
            dump = dcmdump(path)
            self.assertIn("(0040,0275) SQ (Sequence with explicit length #=1)", dump)
            self.assertIn("(0040,0007) LO [DESCRIPTION]", dump)
            self.assertIn("(0040,0260) UN", dump)


# -- file format -------------------------------------------------------------------------------


class WriteDataSetOnlyTests(unittest.SynchronousTestCase):
    """
    C{-F}.
    """

    def test_noMeta(self):
        """-F writes the data set without preamble and File Meta Information."""
        source = writeSource(self)
        path = recodeCopy(self, source, RecodeOptions(writeDataSetOnly=True, transferSyntax=ImplicitVRLittleEndian))
        with open(path, "rb") as f:
            data = f.read()
        self.assertEqual(data[:4], b"\x08\x00\x16\x00")
        self.assertNotIn(b"DICM", data[:200])
        self.assertEqual(usedSyntax(path), "Little Endian Implicit")
        self.assertNotIn("(0002,", dcmdump(path))
        dataset = dcmread(path, force=True)
        self.assertEqual(dataset.PatientName, "Doe^John")
        self.assertEqual(dataset.PixelData, dcmread(source).PixelData)

    def test_sameSyntax(self):
        """-F alone writes the data set in the received syntax."""
        source = writeSource(self, syntax=ExplicitVRBigEndian)
        path = recodeCopy(self, source, RecodeOptions(writeDataSetOnly=True))
        self.assertEqual(usedSyntax(path, "-f", "-tb"), "Big Endian Explicit")
        with open(source, "rb") as f, open(path, "rb") as g:
            self.assertTrue(f.read().endswith(g.read()))


# -- converting data sets for the storage SCU ------------------------------------------------

#: One element per VR whose values change byte order, as
#: C{(tag, VR, struct format of one word, values)}.
SWAPPED_ELEMENTS = [
    (0x00041212, "US", "H", (0x0102, 0xFFFE)),
    (0x00081163, "FD", "d", (1.5, -2.25e-300)),
    (0x00089459, "FL", "f", (-0.5,)),
    (0x0008040C, "UV", "Q", (0x0102030405060708,)),
    (0x00140202, "AT", "H", (0x0010, 0x0020)),
    (0x00181638, "OF", "f", (1.0, 2.0, -3.0)),
    (0x00186020, "SL", "l", (-5, 0x01020304)),
    (0x00189219, "SS", "h", (-2, 0x0102)),
    (0x00281201, "OW", "H", (0x0102, 0x0304, 0xA0B0)),
    (0x003A032E, "OD", "d", (3.25,)),
    (0x00041200, "UL", "L", (0x01020304,)),
    (0x00660040, "OL", "L", (1, 0x0A0B0C0D)),
    (0x00720081, "OV", "Q", (0x0102030405060708, 1)),
    (0x00720082, "SV", "q", (-1, -0x0102030405060708)),
]

_LONG_HEADER_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def explicitElement(order, tag, vr, value):
    """
    An element in explicit VR, byte order C{order} (C{"<"} or C{">"}).
    """
    group, number = tag >> 16, tag & 0xFFFF
    if vr in _LONG_HEADER_VRS:
        return struct.pack(order + "HH2sHL", group, number, vr.encode(), 0, len(value)) + value
    return struct.pack(order + "HH2sH", group, number, vr.encode(), len(value)) + value


def numbers(order, word, values):
    """
    C{values} packed as words of struct format C{word} in byte order C{order}.
    """
    return struct.pack(order + word * len(values), *values)


def sequenceElement(order, tag, items, undefined=False):
    """
    A sequence of encoded items, with explicit lengths or, if C{undefined},
    undefined lengths and delimiters.
    """
    group, number = tag >> 16, tag & 0xFFFF
    if undefined:
        body = b"".join(
            struct.pack(order + "HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + item + struct.pack(order + "HHL", 0xFFFE, 0xE00D, 0)
            for item in items
        )
        return (
            struct.pack(order + "HH2sHL", group, number, b"SQ", 0, 0xFFFFFFFF)
            + body
            + struct.pack(order + "HHL", 0xFFFE, 0xE0DD, 0)
        )
    body = b"".join(struct.pack(order + "HHL", 0xFFFE, 0xE000, len(item)) + item for item in items)
    return struct.pack(order + "HH2sHL", group, number, b"SQ", 0, len(body)) + body


def nestedDataSet(order, undefined=False):
    """
    A data set in explicit VR byte order C{order}: text, OB and UN, a
    sequence (with undefined lengths if C{undefined}) whose items hold US,
    FD and a nested sequence with an AT and an OW, then 16-bit Pixel Data.
    """
    inner = explicitElement(order, 0x00209165, "AT", numbers(order, "H", (0x0028, 0x0010)))
    inner += explicitElement(order, 0x00281201, "OW", numbers(order, "H", (0x1234,)))
    first = explicitElement(order, 0x00081150, "UI", b"1.2.3.4\0")
    first += sequenceElement(order, 0x00081199, [inner], undefined)
    first += explicitElement(order, 0x00280010, "US", numbers(order, "H", (512,)))
    second = explicitElement(order, 0x00081163, "FD", numbers(order, "d", (0.1, 7.0)))
    second += explicitElement(order, 0x00189219, "SS", numbers(order, "h", (-300,)))
    return (
        explicitElement(order, 0x00080070, "LO", b"ACME")
        + explicitElement(order, 0x0008041B, "OB", b"\x01\x02\x03\x04")
        + sequenceElement(order, 0x00081115, [first, second, b""], undefined)
        + explicitElement(order, 0x00100010, "PN", b"Doe^John")
        + explicitElement(order, 0x0072006D, "UN", b"\x01\x02\x03\x04")
        + explicitElement(order, 0x7FE00010, "OW", numbers(order, "H", range(0x0100, 0x0110)))
    )


class ConvertDataSetTests(unittest.SynchronousTestCase):
    """
    L{convertDataSet}, which the storage SCU sends objects through when the
    peer did not accept their stored syntax: explicit VR big endian to
    little endian swaps the bytes of each value by its VR's word size, in
    sequences too, and leaves byte streams alone.
    """

    def test_eachVR(self):
        """
        US, SS, UL, SL, FL, FD, AT, OW, OF, OD, OL, OV, SV and UV values
        come out in little endian, word by word.
        """
        for tag, vr, word, values in SWAPPED_ELEMENTS:
            big = explicitElement(">", tag, vr, numbers(">", word, values))
            little = explicitElement("<", tag, vr, numbers("<", word, values))
            self.assertEqual(convertDataSet(big, ExplicitVRBigEndian, ExplicitVRLittleEndian), little, vr)
            self.assertEqual(convertDataSet(little, ExplicitVRLittleEndian, ExplicitVRBigEndian), big, vr)

    def test_byteStreams(self):
        """
        Text, OB and UN values keep their bytes: they have no byte order.
        """
        for tag, vr, value in [(0x00080070, "LO", b"ACME"), (0x0008041B, "OB", b"\x01\x02\x03\x04"), (0x0072006D, "UN", b"\x01\x02")]:
            big = explicitElement(">", tag, vr, value)
            self.assertEqual(convertDataSet(big, ExplicitVRBigEndian, ExplicitVRLittleEndian), explicitElement("<", tag, vr, value), vr)

    def test_sequences(self):
        """
        Values in items of sequences, nested ones too, are swapped like
        the others; sequences and items come out with explicit lengths
        whether they had them or not.
        """
        expected = nestedDataSet("<")
        for undefined in (False, True):
            big = nestedDataSet(">", undefined)
            self.assertEqual(convertDataSet(big, ExplicitVRBigEndian, ExplicitVRLittleEndian), expected)

    def test_otherSyntaxes(self):
        """
        Big endian converts to implicit VR and deflated little endian as
        well: those convert on to the same explicit VR little endian bytes,
        and back to the same big endian ones.
        """
        big = nestedDataSet(">")
        for syntax in (ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
            converted = convertDataSet(big, ExplicitVRBigEndian, syntax, compressionLevel=9)
            self.assertEqual(convertDataSet(converted, syntax, ExplicitVRLittleEndian), nestedDataSet("<"), syntax)
            self.assertEqual(convertDataSet(converted, syntax, ExplicitVRBigEndian), big, syntax)

    def test_compressedRefused(self):
        """
        Encapsulated syntaxes are not converted: L{ValueError} naming it.
        """
        error = self.assertRaises(ValueError, convertDataSet, b"", JPEGBaseline8Bit, ExplicitVRLittleEndian)
        self.assertIn(JPEGBaseline8Bit, str(error))
        self.assertRaises(ValueError, convertDataSet, b"", ExplicitVRBigEndian, JPEGBaseline8Bit)

    def test_truncated(self):
        """
        A data set cut short raises L{ValueError}.
        """
        big = nestedDataSet(">")
        self.assertRaises(ValueError, convertDataSet, big[:-7], ExplicitVRBigEndian, ExplicitVRLittleEndian)


# -- replacing the file ----------------------------------------------------------------------


class ReplaceFileTests(unittest.SynchronousTestCase):
    """
    The file is replaced atomically, keeps its permissions, and is left
    alone on errors.
    """

    def test_permissions(self):
        """The recoded file keeps the original's permissions."""
        source = writeSource(self)
        os.chmod(source, 0o640)
        recoder(RecodeOptions(transferSyntax=ImplicitVRLittleEndian))(source)
        self.assertEqual(stat.S_IMODE(os.stat(source).st_mode), 0o640)

    def test_truncated(self):
        """A truncated file raises ValueError and stays as it was, with nothing beside it."""
        source = writeSource(self)
        with open(source, "rb") as f:
            data = f.read()
        with open(source, "wb") as f:
            f.write(data[:-10])
        recode = recoder(RecodeOptions(transferSyntax=ImplicitVRLittleEndian))
        self.assertRaises(ValueError, recode, source)
        with open(source, "rb") as f:
            self.assertEqual(f.read(), data[:-10])
        self.assertEqual(os.listdir(os.path.dirname(source)), ["source.dcm"])

    def test_notPart10(self):
        """A file without the DICM prefix raises ValueError."""
        path = os.path.join(makeDirectory(self), "junk")
        with open(path, "wb") as f:
            f.write(b"not dicom" * 100)
        self.assertRaises(ValueError, recoder(RecodeOptions(groupLength=GROUP_LENGTH_CREATE)), path)

    def test_writeError(self):
        """An error while encoding keeps the original and leaves nothing beside it."""
        source = writeSource(self)
        with open(source, "rb") as f:
            data = f.read()

        def failing(chunks, level):
            raise OSError("disk full")

        from dicomd.storage import recode

        self.patch(recode, "_deflate", failing)
        options = RecodeOptions(transferSyntax=DeflatedExplicitVRLittleEndian)
        self.assertRaises(OSError, recoder(options), source)
        with open(source, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(os.listdir(os.path.dirname(source)), ["source.dcm"])

    def test_partialWrite(self):
        """A chunk that cannot be written leaves no temporary file."""
        from dicomd.storage import recode

        source = writeSource(self)
        with open(source, "rb") as f:
            data = f.read()
        self.assertRaises(TypeError, recode._replaceFile, source, [b"partial", object()])
        with open(source, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(os.listdir(os.path.dirname(source)), ["source.dcm"])


# -- end to end --------------------------------------------------------------------------------


class StorescpTests(unittest.TestCase):
    """
    C{dicomd storescp} with an output option, fed by DCMTK's C{storescu}.
    """

    @defer.inlineCallbacks
    def store(self, *options):
        """
        Start C{dicomd storescp -od DIR options PORT}, send the rich data set
        with C{storescu}.

        @return: a L{Deferred} firing with C{(source path, stored path)}.
        """
        output = makeDirectory(self)
        source = writeSource(self)
        peer = yield startPeer(
            self,
            lambda port: dicomdArgv("storescp", "-od", output, *options, str(port)),
            env=pythonEnvironment(),
            name="dicomd storescp",
        )
        result = yield runCommand([dcmtk("storescu"), "127.0.0.1", str(peer.port), source], env=dcmtkEnvironment())
        self.assertEqual(result.exitCode, 0, result.describe())
        stored = [name for name in os.listdir(output) if not name.startswith(".")]
        self.assertEqual(len(stored), 1, stored)
        return source, os.path.join(output, stored[0])

    @defer.inlineCallbacks
    def test_implicit(self):
        """+ti stores a file received in explicit VR little endian as implicit VR."""
        source, stored = yield self.store("+ti")
        self.assertEqual(usedSyntax(stored), "Little Endian Implicit")
        self.assertEqual(dcmread(stored).PixelData, dcmread(source).PixelData)

    @defer.inlineCallbacks
    def test_bigEndianGroupLengths(self):
        """+tb +g stores big endian with group lengths, pixels intact."""
        source, stored = yield self.store("+tb", "+g")
        self.assertEqual(usedSyntax(stored), "Big Endian Explicit")
        self.assertIn(("7fe0", 12 + 32), groupLengths(dataSetDump(stored)))
        self.assertEqual(dcmread(stored).pixel_array.tolist(), dcmread(source).pixel_array.tolist())
