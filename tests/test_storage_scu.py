"""
Unit tests for the storage SCU: reading files to send
(L{dicomd.storage.scu}), proposing and choosing presentation contexts,
converting data sets, the batch job (L{dicomd.storage.sender}), streaming
with back-pressure (L{dicomd.net.sending}) and the C{dicomd storescu}
command line (L{dicomd.cli.storescu}).
"""

import os
import struct
import traceback
import zlib
from array import array

from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.encaps import encapsulate
from pydicom.filereader import read_dataset
from pydicom.uid import ImplicitVRLittleEndian, JPEGBaseline8Bit
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from dicomd.cli import logs, storescu
from dicomd.cli.options import UsageError
from dicomd.dimse.commands import CEchoRSP, CStoreRQ, CStoreRSP, encodeCommand
from dicomd.dimse.pdv import DataSetFragment, MessageAssembler
from dicomd.errors import AssociationAborted, AssociationRejected, NoPresentationContext
from dicomd.interfaces import IDataSetSource
from dicomd.net.association import Association
from dicomd.net.sending import READ_SIZE, MessageSender
from dicomd.storage import scu, sender
from dicomd.storage.sender import FailedStore, SendReport, sendFiles
from dicomd.ul.negotiation import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    JPEG_2000_LOSSLESS,
    JPEG_BASELINE,
    JPEG_LOSSLESS_SV1,
    MPEG2_MAIN_PROFILE_MAIN_LEVEL,
    RLE_LOSSLESS,
    NegotiatedContext,
)
from dicomd.ul.pdu import P_DATA_TF, AAssociateRJ, AAssociateRQ, UserIdentityRQ, UserInformation, decodePDU
from tests.dicomfiles import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, makeDataset, writeFile
from tests.support import dcmtk, dcmtkEnvironment, runCommand


def makeFile(testCase, transferSyntax=EXPLICIT_VR_LITTLE_ENDIAN, **kwargs) -> str:
    """
    Write a small image as a Part-10 file in the test's directory.
    """
    path = testCase.mktemp() + ".dcm"
    writeFile(path, makeDataset(rows=16, columns=16, **kwargs), transferSyntax)
    return path


def makeJPEGFile(path: str, sopClassUID=CT_IMAGE_STORAGE) -> str:
    """
    Write an 8-bit image in JPEG baseline: its pixel data is one
    encapsulated fake frame (nobody decodes it).
    """
    dataset = makeDataset(rows=8, columns=8, sopClassUID=sopClassUID)
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
    dataset.PixelData = encapsulate([b"\xff\xd8\xff\xe0fake JPEG frame\xff\xd9"])
    dataset["PixelData"].VR = "OB"
    return writeFile(path, dataset, JPEGBaseline8Bit)


def dataSetBytes(path: str) -> bytes:
    """
    The data set part of a Part-10 file, after its File Meta Information.
    """
    dicomFile = scu.readFileMeta(path)
    with open(path, "rb") as f:
        f.seek(dicomFile.dataSetOffset)
        return f.read()


def metaElement(group, element, vr, value: bytes) -> bytes:
    """
    One explicit VR little endian element of the File Meta Information.
    """
    if vr in (b"OB", b"UN"):
        return struct.pack("<HH2sHL", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def dicomFile(sopClass=CT_IMAGE_STORAGE, syntax=EXPLICIT_VR_LITTLE_ENDIAN, name="a.dcm", size=1000):
    """
    A L{scu.DicomFile} for tests that never open it.
    """
    return scu.DicomFile(name, sopClass, "1.2.3." + str(abs(hash(name)) % 1000), syntax, 132, size)


class ReadFileMetaTests(unittest.SynchronousTestCase):
    """
    L{scu.readFileMeta} reads a Part-10 file's File Meta Information only.
    """

    def test_good(self):
        """
        A file written by pydicom gives its SOP class, instance, transfer
        syntax, size and the offset where its data set starts.
        """
        dataset = makeDataset(rows=16, columns=16, sopClassUID=MR_IMAGE_STORAGE)
        path = self.mktemp()
        writeFile(path, dataset, ImplicitVRLittleEndian)
        result = scu.readFileMeta(path)
        self.assertEqual(result.path, path)
        self.assertEqual(result.sopClassUID, MR_IMAGE_STORAGE)
        self.assertEqual(result.sopInstanceUID, dataset.SOPInstanceUID)
        self.assertEqual(result.transferSyntaxUID, IMPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(result.size, os.path.getsize(path))
        with open(path, "rb") as f:
            f.seek(result.dataSetOffset)
            fp = DicomBytesIO(f.read())
        fp.is_little_endian, fp.is_implicit_VR = True, True
        self.assertEqual(read_dataset(fp, True, True).SOPInstanceUID, dataset.SOPInstanceUID)

    def test_noPreamble(self):
        """
        A file without the 128-byte preamble and "DICM" raises
        L{scu.NoPreamble}, a kind of L{scu.NotDICOM}.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\x08\x00\x16\x00UI\x04\x001.2\x00" + b"\x00" * 200)
        error = self.assertRaises(scu.NoPreamble, scu.readFileMeta, path)
        self.assertIsInstance(error, scu.NotDICOM)
        self.assertIn(path, str(error))

    def test_shortFile(self):
        """
        A file shorter than a preamble is not DICOM.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"DICM")
        self.assertRaises(scu.NoPreamble, scu.readFileMeta, path)

    def test_truncatedMeta(self):
        """
        A File Meta Information cut inside an element's value or inside a
        long element header raises L{scu.NotDICOM}, not a struct error.
        """
        good = open(makeFile(self), "rb").read()
        for cut in (132 + 30, 132 + 9, 132 + 14):
            path = self.mktemp()
            with open(path, "wb") as f:
                f.write(good[:cut])
            error = self.assertRaises(scu.NotDICOM, scu.readFileMeta, path)
            self.assertIn("ends inside its File Meta Information", str(error))

    def test_hugeLength(self):
        """
        A meta element announcing more bytes than the file holds is refused
        without reading them.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\x00" * 128 + b"DICM" + struct.pack("<HH2sHL", 2, 1, b"OB", 0, 0xFFFFFFF0) + b"\x00" * 10)
        self.assertRaises(scu.NotDICOM, scu.readFileMeta, path)

    def test_missingUIDs(self):
        """
        Meta information without the media storage SOP instance and the
        transfer syntax names what is missing.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\x00" * 128 + b"DICM" + metaElement(2, 2, b"UI", CT_IMAGE_STORAGE.encode() + b"\x00"))
            f.write(struct.pack("<HH2sH", 8, 0x16, b"UI", 4) + b"1.2\x00")
        error = self.assertRaises(scu.NotDICOM, scu.readFileMeta, path)
        self.assertIn("without SOP instance and transfer syntax UID", str(error))

    def test_paddedUIDs(self):
        """
        Space and NUL padding of the meta information's UIDs is dropped.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\x00" * 128 + b"DICM")
            f.write(metaElement(2, 2, b"UI", b"1.2.3 "))
            f.write(metaElement(2, 3, b"UI", b"1.2.34\x00\x00"))
            f.write(metaElement(2, 0x10, b"UI", b"1.2.840.10008.1.2\x00"))
            f.write(struct.pack("<HH2sH", 8, 0x16, b"UI", 6) + b"1.2.3 ")
        result = scu.readFileMeta(path)
        self.assertEqual(
            (result.sopClassUID, result.sopInstanceUID, result.transferSyntaxUID),
            ("1.2.3", "1.2.34", IMPLICIT_VR_LITTLE_ENDIAN),
        )
        self.assertEqual(result.dataSetOffset, os.path.getsize(path) - 14)

    def test_longMeta(self):
        """
        A File Meta Information longer than the first read (a 10 kB private
        element, and UIDs after it) is read whole.
        """
        path = self.mktemp()
        meta = (
            metaElement(2, 2, b"UI", b"1.2.3\x00")
            + metaElement(2, 0x10, b"UI", b"1.2.840.10008.1.2\x00")
            + metaElement(2, 0x102, b"OB", b"x" * 10000)
            + metaElement(2, 0x103, b"UI", b"1.2.5\x00")
        )
        with open(path, "wb") as f:
            f.write(b"\x00" * 128 + b"DICM" + metaElement(2, 3, b"UI", b"1.2.4\x00") + meta)
            f.write(struct.pack("<HH2sH", 8, 0x16, b"UI", 6) + b"1.2.3\x00")
        result = scu.readFileMeta(path)
        self.assertEqual((result.sopClassUID, result.sopInstanceUID), ("1.2.3", "1.2.4"))
        self.assertEqual(result.dataSetOffset, os.path.getsize(path) - 14)

    def test_emptyDataSet(self):
        """
        A file that ends after its meta information has an empty data set.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\x00" * 128 + b"DICM")
            f.write(metaElement(2, 2, b"UI", b"1.2.3\x00"))
            f.write(metaElement(2, 3, b"UI", b"1.2.4\x00"))
            f.write(metaElement(2, 0x10, b"UI", b"1.2.840.10008.1.2\x00"))
        result = scu.readFileMeta(path)
        self.assertEqual(result.dataSetOffset, result.size)


class ReadDataSetFileTests(unittest.SynchronousTestCase):
    """
    L{scu.readDataSetFile} and L{scu.readDicomFile}: files holding a bare
    data set, as DCMTK's C{-f} and C{+f} read them.
    """

    def writeDataSet(self, implicit: bool) -> str:
        dataset = makeDataset(rows=8, columns=8)
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, implicit
        from pydicom.filewriter import write_dataset

        write_dataset(fp, dataset)
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(fp.getvalue())
        self.sopInstanceUID = dataset.SOPInstanceUID
        return path

    def test_implicit(self):
        """
        An implicit VR data set is recognised as such, starts at offset 0,
        and names its SOP class and instance.
        """
        path = self.writeDataSet(True)
        result = scu.readDataSetFile(path)
        self.assertEqual(result, scu.DicomFile(path, CT_IMAGE_STORAGE, self.sopInstanceUID, IMPLICIT_VR_LITTLE_ENDIAN, 0, os.path.getsize(path)))

    def test_explicit(self):
        """
        An explicit VR little endian data set is recognised as such.
        """
        result = scu.readDataSetFile(self.writeDataSet(False))
        self.assertEqual(result.transferSyntaxUID, EXPLICIT_VR_LITTLE_ENDIAN)

    def test_notDICOM(self):
        """
        Text is not a data set: L{scu.NotDICOM}.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("this is not DICOM\n" * 50)
        self.assertRaises(scu.NotDICOM, scu.readDataSetFile, path)

    def test_modes(self):
        """
        By default a file without preamble is read as a data set; with
        L{scu.READ_FILE_ONLY} it is refused; L{scu.READ_DATA_SET} refuses
        a Part-10 file, as DCMTK's C{-f} does.
        """
        bare = self.writeDataSet(True)
        self.assertEqual(scu.readDicomFile(bare).dataSetOffset, 0)
        self.assertRaises(scu.NoPreamble, scu.readDicomFile, bare, scu.READ_FILE_ONLY)
        self.assertEqual(scu.readDicomFile(bare, scu.READ_DATA_SET).transferSyntaxUID, IMPLICIT_VR_LITTLE_ENDIAN)
        part10 = makeFile(self)
        offset = scu.readFileMeta(part10).dataSetOffset
        self.assertEqual(scu.readDicomFile(part10).dataSetOffset, offset)
        self.assertEqual(scu.readDicomFile(part10, scu.READ_FILE_ONLY).dataSetOffset, offset)
        error = self.assertRaises(scu.NotDICOM, scu.readDicomFile, part10, scu.READ_DATA_SET)
        self.assertIn("not a bare data set", str(error))


class FileDataSetTests(unittest.SynchronousTestCase):
    """
    L{scu.FileDataSet} reads a file's data set in order.
    """

    def test_readsDataSet(self):
        """
        It provides L{IDataSetSource}; reading it in pieces gives exactly
        the data set after the meta information, and C{length} counts down
        to 0.
        """
        path = makeFile(self)
        source = scu.FileDataSet(scu.readFileMeta(path))
        self.addCleanup(source.close)
        self.assertTrue(verifyObject(IDataSetSource, source))
        expected = dataSetBytes(path)
        self.assertEqual(source.length, len(expected))
        pieces = []
        while source.length:
            pieces.append(source.read(min(1000, source.length)))
        self.assertEqual(b"".join(pieces), expected)

    def test_shrunk(self):
        """
        A file that became shorter than when it was opened raises
        L{OSError} instead of sending less than announced.
        """
        path = makeFile(self)
        source = scu.FileDataSet(scu.readFileMeta(path))
        self.addCleanup(source.close)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 10)
        error = self.assertRaises(OSError, source.read, source.length)
        self.assertIn("shorter than when it was opened", str(error))

    def test_close(self):
        """
        C{close} closes the file.
        """
        source = scu.FileDataSet(scu.readFileMeta(makeFile(self)))
        source.close()
        self.assertRaises(ValueError, source.read, 1)

    def test_readAhead(self):
        """
        What C{readAhead} read is the first C{read} of that size, even once
        the file has changed on disk: it is in memory.
        """
        path = makeFile(self)
        expected = dataSetBytes(path)
        source = scu.FileDataSet(scu.readFileMeta(path))
        self.addCleanup(source.close)
        source.readAhead(100)
        with open(path, "r+b") as f:
            f.seek(scu.readFileMeta(path).dataSetOffset)
            f.write(b"\xff" * 100)
        self.assertEqual(source.read(100), expected[:100])
        self.assertEqual(source.length, len(expected) - 100)

    def test_readAheadOtherSizes(self):
        """
        Reads of other sizes than was read ahead still give the data set
        in order: a smaller one part of it, a larger one it and more.
        """
        path = makeFile(self)
        expected = dataSetBytes(path)
        for sizes in ([10, 90, len(expected) - 100], [150, len(expected) - 150]):
            source = scu.FileDataSet(scu.readFileMeta(path))
            self.addCleanup(source.close)
            source.readAhead(100)
            self.assertEqual(b"".join(source.read(size) for size in sizes), expected)
            self.assertEqual(source.length, 0)

    def test_readAheadCapped(self):
        """
        Reading ahead more than the data set reads the data set.
        """
        path = makeFile(self)
        expected = dataSetBytes(path)
        source = scu.FileDataSet(scu.readFileMeta(path))
        self.addCleanup(source.close)
        source.readAhead(len(expected) + 1000)
        self.assertEqual(source.read(source.length), expected)


class OpenFileTests(unittest.SynchronousTestCase):
    """
    L{scu.openFile} reads a file's meta information and the start of its
    data set in one read, and gives the data set as L{scu.FileDataSet}
    does.
    """

    def test_sameAsReadFileMeta(self):
        """
        The file is described as L{scu.readFileMeta} describes it, and its
        data set read in pieces of any size is the data set, whatever was
        read ahead: less than the meta information, part of the data set,
        all of it.
        """
        path = makeFile(self)
        expected = dataSetBytes(path)
        for readSize in (0, 100, len(expected) // 2, len(expected) + 5000):
            for sizes in ([len(expected)], [10, 90, len(expected) - 100], [len(expected) // 2 + 1, len(expected) - len(expected) // 2 - 1]):
                source = scu.openFile(path, readSize)
                self.addCleanup(source.close)
                self.assertEqual(source.dicomFile, scu.readFileMeta(path))
                self.assertEqual(source.length, len(expected))
                self.assertEqual(b"".join(bytes(source.read(size)) for size in sizes), expected, (readSize, sizes))
                self.assertEqual(source.length, 0)

    def test_oneRead(self):
        """
        A file smaller than the read size is read whole by the first read:
        changing it afterwards changes nothing sent.
        """
        path = makeFile(self)
        expected = dataSetBytes(path)
        source = scu.openFile(path, 1 << 20)
        self.addCleanup(source.close)
        with open(path, "r+b") as f:
            f.seek(source.dicomFile.dataSetOffset)
            f.write(b"\xff" * len(expected))
        self.assertEqual(bytes(source.read(source.length)), expected)

    def test_notDICOM(self):
        """
        A file without the preamble raises L{scu.NoPreamble}, as
        L{scu.readFileMeta} does.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"not DICOM" * 100)
        self.assertRaises(scu.NoPreamble, scu.openFile, path, 65536)


class ProposePresentationContextsTests(unittest.SynchronousTestCase):
    """
    L{scu.proposePresentationContexts} as DCMTK's storescu C{-R} with its
    C{-x} options and C{+C}, and L{scu.splitProposals}.
    """

    def test_default(self):
        """
        By default each SOP class gets explicit VR little endian, then the
        other uncompressed syntaxes as a fallback, once however many files.
        """
        files = [dicomFile(name="a"), dicomFile(name="b", syntax=IMPLICIT_VR_LITTLE_ENDIAN), dicomFile(MR_IMAGE_STORAGE, name="c")]
        self.assertEqual(
            scu.proposePresentationContexts(files),
            [
                (CT_IMAGE_STORAGE, [EXPLICIT_VR_LITTLE_ENDIAN]),
                (CT_IMAGE_STORAGE, [EXPLICIT_VR_BIG_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]),
                (MR_IMAGE_STORAGE, [EXPLICIT_VR_LITTLE_ENDIAN]),
                (MR_IMAGE_STORAGE, [EXPLICIT_VR_BIG_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]),
            ],
        )

    def test_preferBig(self):
        """
        C{-xb}: explicit big endian first, the little endian ones after.
        """
        self.assertEqual(
            scu.proposePresentationContexts([dicomFile()], preferred=EXPLICIT_VR_BIG_ENDIAN),
            [(CT_IMAGE_STORAGE, [EXPLICIT_VR_BIG_ENDIAN]), (CT_IMAGE_STORAGE, [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN])],
        )

    def test_implicitOnly(self):
        """
        C{-xi}: implicit VR little endian alone, no fallback context.
        """
        self.assertEqual(
            scu.proposePresentationContexts([dicomFile()], preferred=IMPLICIT_VR_LITTLE_ENDIAN),
            [(CT_IMAGE_STORAGE, [IMPLICIT_VR_LITTLE_ENDIAN])],
        )

    def test_compressedPreferred(self):
        """
        C{-xs}, C{-xv}, C{-xr}, C{-xd}...: the compressed (or deflated)
        syntax, then all three uncompressed ones.
        """
        for preferred in (JPEG_LOSSLESS_SV1, JPEG_2000_LOSSLESS, RLE_LOSSLESS, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN):
            self.assertEqual(
                scu.proposePresentationContexts([dicomFile()], preferred=preferred),
                [
                    (CT_IMAGE_STORAGE, [preferred]),
                    (CT_IMAGE_STORAGE, [EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]),
                ],
            )

    def test_video(self):
        """
        C{-xm} and the other video options: the video syntax alone.
        """
        self.assertEqual(
            scu.proposePresentationContexts([dicomFile()], preferred=MPEG2_MAIN_PROFILE_MAIN_LEVEL),
            [(CT_IMAGE_STORAGE, [MPEG2_MAIN_PROFILE_MAIN_LEVEL])],
        )

    def test_combine(self):
        """
        C{+C}: one context per SOP class with the preferred syntax first.
        """
        self.assertEqual(
            scu.proposePresentationContexts([dicomFile()], preferred=EXPLICIT_VR_BIG_ENDIAN, combine=True),
            [(CT_IMAGE_STORAGE, [EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN])],
        )

    def test_compressedFiles(self):
        """
        A compressed syntax found in the files gets a context of its own
        for that class, once, after the class's uncompressed ones; not
        when it is the preferred syntax already.
        """
        files = [dicomFile(syntax=JPEG_BASELINE, name="a"), dicomFile(syntax=JPEG_BASELINE, name="b"), dicomFile(name="c")]
        self.assertEqual(
            scu.proposePresentationContexts(files, combine=True),
            [(CT_IMAGE_STORAGE, list(scu.UNCOMPRESSED)), (CT_IMAGE_STORAGE, [JPEG_BASELINE])],
        )
        self.assertEqual(
            scu.proposePresentationContexts(files, preferred=JPEG_BASELINE),
            [(CT_IMAGE_STORAGE, [JPEG_BASELINE]), (CT_IMAGE_STORAGE, list(scu.UNCOMPRESSED))],
        )

    def test_split(self):
        """
        70 SOP classes with two contexts each do not fit the 128 of one
        association: the first group takes 64 classes whole, the second
        the other 6; no class is cut in two.
        """
        files = [dicomFile(sopClass="1.2.3.%d" % n, name=str(n)) for n in range(70)]
        groups = scu.splitProposals(scu.proposePresentationContexts(files))
        self.assertEqual([len(group) for group in groups], [128, 12])
        self.assertEqual(groups[1][0], ("1.2.3.64", [EXPLICIT_VR_LITTLE_ENDIAN]))
        for group in groups:
            classes = [uid for uid, _ in group]
            self.assertEqual(classes, sorted(classes, key=classes.index))
            self.assertTrue(all(classes.count(uid) == 2 for uid in classes))

    def test_splitKeepsClassesTogether(self):
        """
        With a limit of 5, classes of 2 and 3 contexts fill a group to
        exactly 5 and the next class starts a new group.
        """
        proposals = [("a", ["1"]), ("a", ["2"]), ("b", ["1"]), ("b", ["2"]), ("b", ["3"]), ("c", ["1"])]
        self.assertEqual(scu.splitProposals(proposals, limit=5), [proposals[:5], proposals[5:]])

    def test_splitNothing(self):
        """
        No proposals make no group.
        """
        self.assertEqual(scu.splitProposals([]), [])


class FakeAssociation:
    """
    An association with fixed accepted contexts, answering each C-STORE
    from a list of statuses (or exceptions), and recording what was sent.
    """

    def __init__(self, contexts, statuses=(), asynchronous=False, clock=None):
        self.contexts = {context.contextID: context for context in contexts}
        self.statuses = list(statuses)
        self.asynchronous = asynchronous
        self.clock = clock
        self.requests = []
        self.released = False
        self.aborted = False
        self.flushes = 0

    #: As an association's: a data set's first piece, read ahead.
    readSize = 1 << 16

    #: As an association's: C-STOREs outstanding at once.
    operationsWindow = 1

    def flush(self):
        self.flushes += 1

    def contextFor(self, abstractSyntax, transferSyntax=None):
        for context in self.contexts.values():
            if context.abstractSyntax == abstractSyntax and transferSyntax in (None, context.transferSyntax):
                return context
        raise NoPresentationContext(abstractSyntax)

    def request(self, contextID, message, dataSet=None):
        if not isinstance(dataSet, (bytes, type(None))):
            data = dataSet.read(dataSet.length)
            dataSet.close()
        else:
            data = dataSet
        self.requests.append((contextID, message, data))
        status = self.statuses.pop(0) if self.statuses else 0
        if isinstance(status, Exception):
            answer = defer.fail(status)
        else:
            answer = defer.succeed((CStoreRSP(messageIDBeingRespondedTo=1, status=status), None))
        if self.clock is not None:
            return task.deferLater(self.clock, 1, lambda: answer)
        if not self.asynchronous:
            return answer
        from twisted.internet import reactor

        return task.deferLater(reactor, 0, lambda: answer)

    def release(self):
        self.released = True
        return defer.succeed(None)

    def abort(self):
        self.aborted = True
        return defer.succeed(None)


def accepting(*pairs):
    """
    Negotiated contexts 1, 3, 5... for C{(abstractSyntax, transferSyntax)}
    pairs.
    """
    return [NegotiatedContext(2 * index + 1, uid, syntax) for index, (uid, syntax) in enumerate(pairs)]


class ChooseContextTests(unittest.SynchronousTestCase):
    """
    L{scu.chooseContext}: the file's own syntax, else one we convert to.
    """

    def test_exact(self):
        """
        A context with the file's syntax wins over convertible ones.
        """
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, IMPLICIT_VR_LITTLE_ENDIAN), (CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        self.assertEqual(scu.chooseContext(association, CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN).contextID, 3)

    def test_convert(self):
        """
        An explicit VR file goes on an implicit VR context when that is all
        there is, and the other way round.
        """
        implicit = FakeAssociation(accepting((CT_IMAGE_STORAGE, IMPLICIT_VR_LITTLE_ENDIAN)))
        self.assertEqual(scu.chooseContext(implicit, CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN).transferSyntax, IMPLICIT_VR_LITTLE_ENDIAN)
        explicit = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        self.assertEqual(scu.chooseContext(explicit, CT_IMAGE_STORAGE, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN).transferSyntax, EXPLICIT_VR_LITTLE_ENDIAN)

    def test_preferDeflated(self):
        """
        With C{preferDeflated}, an uncompressed file goes on a deflated
        context even when its own syntax was accepted too.
        """
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN), (CT_IMAGE_STORAGE, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)))
        self.assertEqual(scu.chooseContext(association, CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN).contextID, 1)
        self.assertEqual(scu.chooseContext(association, CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN, preferDeflated=True).contextID, 3)

    def test_compressedWithoutContext(self):
        """
        A JPEG file with only uncompressed contexts accepted cannot go:
        L{scu.StoreFailed} naming the class and syntax.
        """
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        error = self.assertRaises(scu.StoreFailed, scu.chooseContext, association, CT_IMAGE_STORAGE, JPEG_BASELINE)
        self.assertIn(JPEG_BASELINE, str(error))
        self.assertIn(CT_IMAGE_STORAGE, str(error))

    def test_bigEndian(self):
        """
        A big endian file goes converted on a little endian context, and a
        little endian one on a big endian context when that is all there
        is.
        """
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        self.assertEqual(scu.chooseContext(association, CT_IMAGE_STORAGE, EXPLICIT_VR_BIG_ENDIAN).transferSyntax, EXPLICIT_VR_LITTLE_ENDIAN)
        bigOnly = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_BIG_ENDIAN)))
        self.assertEqual(scu.chooseContext(bigOnly, CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN).transferSyntax, EXPLICIT_VR_BIG_ENDIAN)

    def test_cheapestConversion(self):
        """
        Without a context in the file's syntax, the cheapest conversion
        wins: explicit VR little endian, then implicit VR, then big endian
        (every value swapped), deflated last (the whole data set
        compressed).
        """
        order = [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN]
        for source in order:
            offered = [syntax for syntax in order if syntax != source]
            chosen = []
            while offered:
                association = FakeAssociation(accepting(*[(CT_IMAGE_STORAGE, syntax) for syntax in reversed(offered)]))
                chosen.append(scu.chooseContext(association, CT_IMAGE_STORAGE, source).transferSyntax)
                offered.remove(chosen[-1])
            self.assertEqual(chosen, [syntax for syntax in order if syntax != source], source)

    def test_otherClass(self):
        """
        A context for another SOP class does not do.
        """
        association = FakeAssociation(accepting((MR_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        self.assertRaises(scu.StoreFailed, scu.chooseContext, association, CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)


class EncodeDataSetTests(unittest.SynchronousTestCase):
    """
    L{scu.encodeDataSet}: conversions between the little endian
    uncompressed syntaxes round-trip through pydicom.
    """

    def roundTrip(self, syntax, data):
        if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)
        fp = DicomBytesIO(data)
        fp.is_little_endian = syntax != EXPLICIT_VR_BIG_ENDIAN
        fp.is_implicit_VR = syntax == IMPLICIT_VR_LITTLE_ENDIAN
        return read_dataset(fp, fp.is_implicit_VR, fp.is_little_endian)

    def test_roundTrip(self):
        """
        A data set read from an explicit VR file, encoded in each
        convertible syntax and read back, has the same elements, values and
        pixel data (its 16-bit words swapped in big endian).
        """
        original = dcmread(makeFile(self, characterSet="ISO_IR 100", patientName="Müller^Jürgen"))
        for syntax in scu.CONVERTIBLE:
            decoded = self.roundTrip(syntax, scu.encodeDataSet(original, syntax))
            self.assertEqual([element.tag for element in decoded], [element.tag for element in original])
            for element in original:
                if element.keyword != "PixelData":
                    self.assertEqual(decoded[element.tag].value, element.value, (syntax, element))
            words = array("H", original.PixelData)
            if syntax == EXPLICIT_VR_BIG_ENDIAN:
                words.byteswap()
            self.assertEqual(decoded.PixelData, words.tobytes(), syntax)

    def test_implicitHasNoVRs(self):
        """
        The implicit VR encoding really is implicit: the first element's
        bytes 4-5 are part of a 4-byte length, not a VR.
        """
        original = dcmread(makeFile(self))
        implicit = scu.encodeDataSet(original, IMPLICIT_VR_LITTLE_ENDIAN)
        explicit = scu.encodeDataSet(original, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(explicit[4:6], b"UI")
        self.assertNotEqual(implicit[4:6], b"UI")
        self.assertEqual(explicit, dataSetBytes(original.filename))

    def test_deflatedEvenLength(self):
        """
        A deflated stream of odd length gets one NUL byte, so that its last
        PDV fragment has an even length, and still inflates to the data
        set; one of even length stays as it is.
        """
        parities = set()
        for n in range(16):
            dataset = makeDataset(rows=8, columns=8, patientID="P" * (n + 1), pixelData=bytes(128))
            plain = scu.encodeDataSet(dataset, EXPLICIT_VR_LITTLE_ENDIAN)
            raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            rawLength = len(raw.compress(plain) + raw.flush())
            parities.add(rawLength % 2)
            data = scu.encodeDataSet(dataset, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
            self.assertEqual(len(data), rawLength + rawLength % 2)
            self.assertEqual(zlib.decompressobj(-zlib.MAX_WBITS).decompress(data), plain)
        self.assertEqual(parities, {0, 1}, "the padding was not exercised both ways")

    def test_compressionLevel(self):
        """
        The compression level changes the deflated bytes, not the data.
        """
        original = dcmread(makeFile(self))
        fast = scu.encodeDataSet(original, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, 1)
        stored = scu.encodeDataSet(original, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, 0)
        self.assertGreater(len(stored), len(fast))
        self.assertEqual(zlib.decompress(fast, -zlib.MAX_WBITS), zlib.decompress(stored, -zlib.MAX_WBITS))


class StoreTests(unittest.TestCase):
    """
    L{scu.store} on a fake association: the request, the payload, the
    result.
    """

    @defer.inlineCallbacks
    def test_streamsFile(self):
        """
        A file whose syntax was accepted goes as it is, streamed: the
        command names its class and instance, the data set is the file's.
        """
        path = makeFile(self)
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)), [0xB000])
        result = yield scu.store(association, path)
        contextID, message, data = association.requests[0]
        meta = scu.readFileMeta(path)
        self.assertEqual(contextID, 1)
        self.assertIsInstance(message, CStoreRQ)
        self.assertEqual((message.affectedSOPClassUID, message.affectedSOPInstanceUID), (CT_IMAGE_STORAGE, meta.sopInstanceUID))
        self.assertEqual(data, dataSetBytes(path))
        self.assertEqual(result, scu.StoreResult(meta.sopInstanceUID, 0xB000, None, EXPLICIT_VR_LITTLE_ENDIAN, len(data)))

    @defer.inlineCallbacks
    def test_converts(self):
        """
        A file that can go only converted is re-encoded in a thread, and
        the result says which syntax it went in.
        """
        path = makeFile(self)
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, IMPLICIT_VR_LITTLE_ENDIAN)))
        result = yield scu.store(association, scu.readFileMeta(path))
        data = association.requests[0][2]
        self.assertEqual(data, scu.encodeDataSet(dcmread(path), IMPLICIT_VR_LITTLE_ENDIAN))
        self.assertEqual((result.transferSyntaxUID, result.size), (IMPLICIT_VR_LITTLE_ENDIAN, len(data)))

    @defer.inlineCallbacks
    def test_convertsBigEndian(self):
        """
        A big endian file (as DCMTK's dcmconv writes it) goes on a little
        endian context as the data set of the little endian file it was
        made from: every value, pixel data included, in little endian.
        """
        path = makeFile(self)
        big = self.mktemp() + ".dcm"
        result = yield runCommand([dcmtk("dcmconv"), "+tb", path, big], env=dcmtkEnvironment())
        self.assertEqual(result.exitCode, 0, result.describe())
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        stored = yield scu.store(association, big)
        self.assertEqual(association.requests[0][2], dataSetBytes(path))
        self.assertEqual(stored.transferSyntaxUID, EXPLICIT_VR_LITTLE_ENDIAN)

    @defer.inlineCallbacks
    def test_fileDataSet(self):
        """
        A L{scu.FileDataSet} already opened (and read ahead) is sent as
        it is.
        """
        path = makeFile(self)
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        opened = scu.FileDataSet(scu.readFileMeta(path))
        opened.readAhead(64)
        result = yield scu.store(association, opened)
        self.assertEqual(association.requests[0][2], dataSetBytes(path))
        self.assertEqual(result.sopInstanceUID, scu.readFileMeta(path).sopInstanceUID)

    @defer.inlineCallbacks
    def test_fileDataSetConverted(self):
        """
        A L{scu.FileDataSet} of a file that must be converted is closed,
        and the file converted from its path.
        """
        path = makeFile(self)
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, IMPLICIT_VR_LITTLE_ENDIAN)))
        opened = scu.FileDataSet(scu.readFileMeta(path))
        result = yield scu.store(association, opened)
        self.assertRaises(ValueError, opened.read, 1)
        self.assertEqual(association.requests[0][2], scu.encodeDataSet(dcmread(path), IMPLICIT_VR_LITTLE_ENDIAN))
        self.assertEqual(result.transferSyntaxUID, IMPLICIT_VR_LITTLE_ENDIAN)

    def test_fileDataSetNoContext(self):
        """
        A L{scu.FileDataSet} that no context fits is closed when the store
        fails.
        """
        path = makeJPEGFile(self.mktemp())
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        opened = scu.FileDataSet(scu.readFileMeta(path))
        self.failureResultOf(scu.store(association, opened), scu.StoreFailed)
        self.assertRaises(ValueError, opened.read, 1)

    @defer.inlineCallbacks
    def test_dataset(self):
        """
        A pydicom data set is encoded in an accepted syntax.
        """
        dataset = makeDataset(rows=4, columns=4)
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        result = yield scu.store(association, dataset)
        self.assertEqual(association.requests[0][2], scu.encodeDataSet(dataset, EXPLICIT_VR_LITTLE_ENDIAN))
        self.assertEqual(result.sopInstanceUID, dataset.SOPInstanceUID)

    def test_noContext(self):
        """
        A JPEG file without a context fails with L{scu.StoreFailed} and
        sends nothing.
        """
        path = makeJPEGFile(self.mktemp())
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        self.failureResultOf(scu.store(association, path), scu.StoreFailed)
        self.assertEqual(association.requests, [])

    def test_notDICOM(self):
        """
        A path that is not a Part-10 file fails with L{scu.StoreFailed}.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("hello")
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        failure = self.failureResultOf(scu.store(association, path), scu.StoreFailed)
        self.assertIn("no DICOM file preamble", str(failure.value))

    @defer.inlineCallbacks
    def test_conversionFails(self):
        """
        A file pydicom cannot parse (deflated, but not a zlib stream) fails
        with L{scu.StoreFailed} naming the target syntax.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\x00" * 128 + b"DICM")
            f.write(metaElement(2, 2, b"UI", CT_IMAGE_STORAGE.encode() + b"\x00"))
            f.write(metaElement(2, 3, b"UI", b"1.2.4\x00"))
            f.write(metaElement(2, 0x10, b"UI", DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN.encode()))
            f.write(b"this is not a zlib stream")
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, IMPLICIT_VR_LITTLE_ENDIAN)))
        with self.assertRaises(scu.StoreFailed) as caught:
            yield scu.store(association, path)
        self.assertIn("cannot convert to " + IMPLICIT_VR_LITTLE_ENDIAN, str(caught.exception))


class FakeAssociationFactory:
    """
    C{connectAssociation} for L{sendFiles}: hands out L{FakeAssociation}s
    sharing one list of statuses, or fails as told.
    """

    def __init__(self, contexts, statuses=(), failures=(), asynchronous=False, clock=None, delays=()):
        self.contexts = contexts
        self.asynchronous = asynchronous
        self.clock = clock
        self.delays = list(delays)
        self.statuses = list(statuses)
        self.failures = list(failures)
        self.proposals = []
        self.associations = []

    def __call__(self, proposals):
        self.proposals.append(list(proposals))
        if self.failures:
            return defer.fail(self.failures.pop(0))
        association = FakeAssociation(self.contexts, asynchronous=self.asynchronous, clock=self.clock)
        association.statuses = self.statuses
        self.associations.append(association)
        delay = self.delays.pop(0) if self.delays else 0
        if delay:
            return task.deferLater(self.clock, delay, lambda: association)
        return defer.succeed(association)


class SendFilesTests(unittest.TestCase):
    """
    L{sendFiles} counts, halts, goes on, repeats and reconnects.
    """

    def setUp(self):
        self.files = [scu.readFileMeta(makeFile(self)) for _ in range(4)]
        self.results = []

    def send(self, factory, **kwargs):
        return sendFiles(factory, self.files, onResult=lambda *args: self.results.append(args), **kwargs)

    @defer.inlineCallbacks
    def test_allSent(self):
        """
        Four files on one association, proposed from the files, released
        at the end; the report counts them and their bytes.
        """
        factory = FakeAssociationFactory(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        report = yield self.send(factory)
        self.assertEqual((report.sent, report.failed, report.unsent, report.warnings), (4, 0, 0, 0))
        self.assertEqual(report.bytes, sum(f.size - f.dataSetOffset for f in self.files))
        self.assertTrue(report.succeeded)
        self.assertEqual(factory.proposals, [scu.proposePresentationContexts(self.files)])
        self.assertEqual(len(factory.associations), 1)
        self.assertTrue(factory.associations[0].released)
        self.assertEqual([args[0] for args in self.results], self.files)

    @defer.inlineCallbacks
    def test_halt(self):
        """
        By default the first refused file stops the job: the others are
        not sent, the refusal's status is kept.
        """
        factory = FakeAssociationFactory(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)), [0, 0xA700, 0])
        report = yield self.send(factory)
        self.assertEqual((report.sent, report.failed, report.unsent), (1, 1, 2))
        self.assertEqual(report.failures, [FailedStore(self.files[1].path, "0xA700 Failure: refused, out of resources", 0xA700)])
        self.assertFalse(report.succeeded)
        self.assertEqual(storescu.exitStatus(report), 0xA7)
        self.assertTrue(factory.associations[0].released)

    @defer.inlineCallbacks
    def test_noHalt(self):
        """
        With C{halt=False} every file is tried; a warning counts as sent
        with a warning, an unknown status as a failure.
        """
        factory = FakeAssociationFactory(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)), [0xC000, 0xB007, 0x1234, 0])
        report = yield self.send(factory, halt=False)
        self.assertEqual((report.sent, report.warnings, report.failed, report.unsent), (2, 1, 2, 0))
        self.assertEqual([f.status for f in report.failures], [0xC000, 0x1234])
        self.assertEqual(storescu.exitStatus(report), 0x12)

    @defer.inlineCallbacks
    def test_unsendable(self):
        """
        A file no accepted context fits fails without a status, and the
        next one still goes with C{halt=False}; the exit status is 10.
        """
        self.files[0] = scu.readFileMeta(makeJPEGFile(self.mktemp()))
        factory = FakeAssociationFactory(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        report = yield self.send(factory, halt=False)
        self.assertEqual((report.sent, report.failed), (3, 1))
        self.assertIsNone(report.failures[0].status)
        self.assertIn("no presentation context", report.failures[0].reason)
        self.assertEqual(storescu.exitStatus(report), storescu.EXIT_NETWORK_ERROR)
        self.assertEqual(len(factory.associations[0].requests), 3)

    @defer.inlineCallbacks
    def test_repeat(self):
        """
        C{repeat=3} sends each file three times on the same association.
        """
        factory = FakeAssociationFactory(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        report = yield self.send(factory, repeat=3)
        self.assertEqual(report.sent, 12)
        instances = [message.affectedSOPInstanceUID for _, message, _ in factory.associations[0].requests]
        self.assertEqual(instances, [f.sopInstanceUID for f in self.files for _ in range(3)])

    @defer.inlineCallbacks
    def test_abort(self):
        """
        C{abort=True} ends the association with A-ABORT.
        """
        factory = FakeAssociationFactory(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        yield self.send(factory, abort=True)
        self.assertEqual((factory.associations[0].aborted, factory.associations[0].released), (True, False))

    @defer.inlineCallbacks
    def test_rejected(self):
        """
        A rejected association sends nothing: every file is unsent, the
        rejection is reported, and the exit status is 1.
        """
        rejection = AssociationRejected(AAssociateRJ(1, 1, 1))
        factory = FakeAssociationFactory([], failures=[rejection])
        report = yield self.send(factory)
        self.assertEqual((report.sent, report.failed, report.unsent), (0, 0, 4))
        self.assertEqual(report.associationErrors, [rejection])
        self.assertEqual(self.results, [])
        self.assertEqual(storescu.exitStatus(report), storescu.EXIT_FATAL)

    @defer.inlineCallbacks
    def test_associationLostHalts(self):
        """
        An association that ends under a C-STORE fails that file and, by
        default, stops the job.
        """
        factory = FakeAssociationFactory(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)), [0, AssociationAborted("gone")])
        report = yield self.send(factory)
        self.assertEqual((report.sent, report.failed, report.unsent), (1, 1, 2))
        self.assertEqual(report.failures[0].reason, "gone")
        self.assertEqual(len(factory.associations), 1)

    @defer.inlineCallbacks
    def test_associationLostNoHalt(self):
        """
        With C{halt=False} the next file goes on a new association.
        """
        factory = FakeAssociationFactory(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)), [0, AssociationAborted("gone"), 0, 0])
        report = yield self.send(factory, halt=False)
        self.assertEqual((report.sent, report.failed, report.unsent), (3, 1, 0))
        self.assertEqual(len(factory.associations), 2)
        self.assertFalse(factory.associations[0].released)
        self.assertTrue(factory.associations[1].released)

    @defer.inlineCallbacks
    def test_severalAssociations(self):
        """
        C{associations=2} opens two associations that share the files,
        each carrying one C-STORE at a time.
        """
        factory = FakeAssociationFactory(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)), asynchronous=True)
        report = yield self.send(factory, associations=2)
        self.assertEqual(report.sent, 4)
        self.assertEqual([len(a.requests) for a in factory.associations], [2, 2])

    def test_lateAssociation(self):
        """
        An association established after the others took every file
        sends nothing and is released; the job ends normally.
        """
        clock = task.Clock()
        factory = FakeAssociationFactory(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)), clock=clock, delays=[0, 10])
        done = sendFiles(factory, self.files[:2], associations=2, reactor=clock)
        clock.advance(1)
        clock.advance(1)
        self.assertNoResult(done)
        clock.advance(10)
        report = self.successResultOf(done)
        self.assertEqual((report.sent, report.failed, report.unsent), (2, 0, 0))
        self.assertEqual([len(a.requests) for a in factory.associations], [2, 0])
        self.assertTrue(all(a.released for a in factory.associations))
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_fixedProposals(self):
        """
        Given proposals (a profile's) are proposed as they are, and a file
        of a class outside them fails rather than vanishing.
        """
        self.files.append(scu.readFileMeta(makeFile(self, sopClassUID=MR_IMAGE_STORAGE)))
        proposals = [(CT_IMAGE_STORAGE, [IMPLICIT_VR_LITTLE_ENDIAN])]
        factory = FakeAssociationFactory(accepting((CT_IMAGE_STORAGE, IMPLICIT_VR_LITTLE_ENDIAN)))
        report = yield self.send(factory, proposals=proposals, halt=False)
        self.assertEqual(factory.proposals, [proposals])
        self.assertEqual((report.sent, report.failed), (4, 1))
        self.assertIn(MR_IMAGE_STORAGE, report.failures[0].reason)

    @defer.inlineCallbacks
    def test_groups(self):
        """
        Files of 70 SOP classes go over two associations one after the
        other, each proposing its group's classes.
        """
        self.files = [scu.readFileMeta(makeFile(self, sopClassUID="1.2.826.0.1.3680043.9.%d" % n)) for n in range(70)]
        contexts = accepting(*[(f.sopClassUID, EXPLICIT_VR_LITTLE_ENDIAN) for f in self.files])
        factory = FakeAssociationFactory(contexts)
        report = yield self.send(factory)
        self.assertEqual(report.sent, 70)
        self.assertEqual([len(p) for p in factory.proposals], [128, 12])
        self.assertEqual([len(a.requests) for a in factory.associations], [64, 6])

    @defer.inlineCallbacks
    def test_deflated(self):
        """
        Preferring deflated explicit VR little endian sends uncompressed
        files deflated when the peer accepted that.
        """
        factory = FakeAssociationFactory(
            accepting((CT_IMAGE_STORAGE, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN), (CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN))
        )
        report = yield self.send(factory, preferred=DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, compressionLevel=9)
        self.assertEqual(report.sent, 4)
        contextID, _, data = factory.associations[0].requests[0]
        self.assertEqual(contextID, 1)
        self.assertEqual(zlib.decompress(data, -zlib.MAX_WBITS), dataSetBytes(self.files[0].path))

    def test_summary(self):
        """
        The summary line counts everything and the rate.
        """
        report = SendReport(sent=3, warnings=1, failed=1, unsent=2, bytes=2000000, seconds=2.0)
        self.assertEqual(report.summary(), "3 sent (1 with warnings), 1 failed, 2 not sent, 2000000 bytes in 2.00 s (1.0 MB/s)")


class ReadAheadTests(unittest.TestCase):
    """
    L{sendFiles} reads each association's next file ahead, after handing
    the request before it to the kernel, while the peer stores that one.
    """

    def setUp(self):
        self.events = []
        self.opened = []
        test = self

        class RecordingFileDataSet(scu.FileDataSet):
            def __init__(self, dicomFile):
                scu.FileDataSet.__init__(self, dicomFile)
                test.opened.append(self)

            def readAhead(self, size):
                test.events.append(("read ahead", self.dicomFile.path))
                scu.FileDataSet.readAhead(self, size)

        self.patch(sender, "FileDataSet", RecordingFileDataSet)
        self.clock = task.Clock()
        self.paths = [makeFile(self) for _ in range(3)]
        self.files = [scu.readFileMeta(path) for path in self.paths]

    def factory(self, *pairs, statuses=()):
        """
        Associations accepting C{pairs}, answering each C-STORE a second
        later on C{self.clock}, and recording flushes in C{self.events}.
        """
        factory = FakeAssociationFactory(accepting(*pairs), statuses, clock=self.clock)
        events = self.events

        class Recording(FakeAssociation):
            def flush(self):
                events.append(("flush",))

            def request(self, contextID, message, dataSet=None):
                events.append(("request", message.affectedSOPInstanceUID))
                return FakeAssociation.request(self, contextID, message, dataSet)

        def connect(proposals):
            association = Recording(factory.contexts, clock=self.clock)
            association.statuses = factory.statuses
            factory.associations.append(association)
            return defer.succeed(association)

        connect.associations = factory.associations
        return connect

    def sendAll(self, connect, files=None, **kwargs):
        done = sendFiles(connect, self.files if files is None else files, reactor=self.clock, **kwargs)
        while not done.called:
            self.clock.advance(1)
        return self.successResultOf(done)

    def assertAllClosed(self):
        self.assertTrue(self.opened)
        self.assertTrue(all(dataSet._file.closed for dataSet in self.opened))

    def test_nextFileReadWhilePeerStores(self):
        """
        Right after each request, the association is flushed and the next
        file read ahead: before the response to the request comes.
        """
        connect = self.factory((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN))
        report = self.sendAll(connect)
        self.assertEqual(report.sent, 3)
        uids = [f.sopInstanceUID for f in self.files]
        self.assertEqual(
            self.events,
            [
                ("request", uids[0]),
                ("flush",),
                ("read ahead", self.paths[1]),
                ("request", uids[1]),
                ("flush",),
                ("read ahead", self.paths[2]),
                ("request", uids[2]),
            ],
        )
        self.assertAllClosed()

    def test_sentFromMemory(self):
        """
        The file read ahead is sent from what was read: overwritten on disk
        after that, its data set still goes as it was.
        """
        expected = dataSetBytes(self.paths[1])
        connect = self.factory((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN))
        done = sendFiles(connect, self.files[:2], reactor=self.clock)
        self.assertEqual(self.events[-1], ("read ahead", self.paths[1]))
        with open(self.paths[1], "r+b") as f:
            f.seek(self.files[1].dataSetOffset)
            f.write(b"\xff" * len(expected))
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(done).sent, 2)
        self.assertEqual(connect.associations[0].requests[1][2], expected)

    def test_repeatReadsSameFileAhead(self):
        """
        With C{repeat}, the next send of the same file is read ahead too.
        """
        connect = self.factory((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN))
        report = self.sendAll(connect, self.files[:1], repeat=3)
        self.assertEqual(report.sent, 3)
        self.assertEqual([event for event in self.events if event[0] == "read ahead"], [("read ahead", self.paths[0])] * 2)
        self.assertAllClosed()

    def test_convertedNotReadAhead(self):
        """
        A file that can go only converted is not read ahead: L{store}
        re-encodes it from its path.
        """
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, IMPLICIT_VR_LITTLE_ENDIAN)))
        ahead = sender._ReadAhead()
        ahead.prepare(association, self.files[0], False)
        self.assertEqual((self.events, self.opened), ([], []))
        self.assertIs(ahead.take(self.files[0]), self.files[0])

    def test_unreadableLeftToStore(self):
        """
        A file that cannot be opened any more is not read ahead; L{store}
        then reports why it cannot be sent.
        """
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        os.remove(self.paths[0])
        ahead = sender._ReadAhead()
        ahead.prepare(association, self.files[0], False)
        self.assertIs(ahead.take(self.files[0]), self.files[0])
        self.assertIn(self.paths[0], str(self.failureResultOf(scu.store(association, self.files[0]), scu.StoreFailed).value))

    def test_otherFileDiscards(self):
        """
        A file read ahead but taken by another association is closed when
        this one goes on with another file.
        """
        association = FakeAssociation(accepting((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)))
        ahead = sender._ReadAhead()
        ahead.prepare(association, self.files[0], False)
        self.assertIs(ahead.take(self.files[1]), self.files[1])
        self.assertAllClosed()

    def test_haltClosesReadAhead(self):
        """
        A job that halts at a refused file closes the next file, read ahead
        and never sent.
        """
        connect = self.factory((CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN), statuses=[0xA700])
        report = self.sendAll(connect)
        self.assertEqual((report.failed, report.unsent), (1, 2))
        self.assertEqual(len(connect.associations[0].requests), 1)
        self.assertEqual([dataSet.dicomFile for dataSet in self.opened], [self.files[1]])
        self.assertAllClosed()


class OperationsWindowTests(unittest.TestCase):
    """
    On an association whose peer granted an Asynchronous Operations
    Window, L{sendFiles} has that many C-STOREs outstanding at once.
    """

    setUp = ReadAheadTests.setUp
    factory = ReadAheadTests.factory
    assertAllClosed = ReadAheadTests.assertAllClosed

    def windowed(self, window, *pairs, statuses=()):
        connect = self.factory(*pairs, statuses=statuses)

        def windowedConnect(proposals):
            association = self.successResultOf(connect(proposals))
            association.operationsWindow = window
            return defer.succeed(association)

        windowedConnect.associations = connect.associations
        return windowedConnect

    def requestsBeforeFirstResponse(self, connect, files=None, **kwargs):
        done = sendFiles(connect, self.files if files is None else files, reactor=self.clock, **kwargs)
        requests = [event for event in self.events if event[0] == "request"]
        while not done.called:
            self.clock.advance(1)
        return requests, self.successResultOf(done)

    def test_windowFilled(self):
        """
        With a window of 2, the second request leaves before the first
        response; the third waits for it.  Every file is sent.
        """
        connect = self.windowed(2, (CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN))
        requests, report = self.requestsBeforeFirstResponse(connect)
        uids = [f.sopInstanceUID for f in self.files]
        self.assertEqual(requests, [("request", uids[0]), ("request", uids[1])])
        self.assertEqual((report.sent, report.failed), (3, 0))
        self.assertEqual([message.affectedSOPInstanceUID for _, message, _ in connect.associations[0].requests], uids)
        self.assertAllClosed()

    def test_unlimited(self):
        """
        A window without limit (C{None}) sends every file at once.
        """
        connect = self.windowed(None, (CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN))
        requests, report = self.requestsBeforeFirstResponse(connect)
        self.assertEqual(len(requests), 3)
        self.assertEqual(report.sent, 3)

    def test_repeatWithinWindow(self):
        """
        The repeated sends of one file fill the window as other files do.
        """
        connect = self.windowed(4, (CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN))
        requests, report = self.requestsBeforeFirstResponse(connect, self.files[:2], repeat=3)
        uids = [f.sopInstanceUID for f in self.files]
        self.assertEqual(requests, [("request", uids[0])] * 3 + [("request", uids[1])])
        self.assertEqual(report.sent, 6)

    def test_haltAnswersOutstanding(self):
        """
        A refused file halts the job: nothing more is sent, but the
        C-STOREs already outstanding are still counted as answered.
        """
        connect = self.windowed(2, (CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN), statuses=[0xA700, 0])
        requests, report = self.requestsBeforeFirstResponse(connect)
        self.assertEqual(len(requests), 2)
        self.assertEqual((report.sent, report.failed, report.unsent), (1, 1, 1))
        self.assertTrue(connect.associations[0].released)
        self.assertAllClosed()

    def test_associationLostFailsOutstanding(self):
        """
        An association that ends fails every C-STORE outstanding on it,
        and is counted once among the association errors.
        """
        lost = AssociationAborted("gone")
        connect = self.windowed(3, (CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN), statuses=[lost, lost, lost])
        requests, report = self.requestsBeforeFirstResponse(connect)
        self.assertEqual((report.sent, report.failed, report.unsent), (0, 3, 0))
        self.assertEqual(report.associationErrors, [lost])


@implementer(IDataSetSource)
class MemorySource:
    """
    An L{IDataSetSource} over bytes that records its reads and its closing.
    """

    def __init__(self, data: bytes, failAfter=None):
        self.data = data
        self.position = 0
        self.length = len(data)
        self.reads = 0
        self.closed = False
        self.failAfter = failAfter

    def read(self, size):
        if self.failAfter is not None and self.reads >= self.failAfter:
            raise OSError("disk on fire")
        self.reads += 1
        chunk = self.data[self.position : self.position + size]
        self.position += size
        self.length -= size
        return chunk

    def close(self):
        self.closed = True


class ThrottledTransport(StringTransport):
    """
    A transport whose peer reads only when told: like Twisted's own
    transports it pauses its streaming producer once more than C{limit}
    bytes wait, and resumes it when L{drain} empties the buffer.
    """

    def __init__(self, limit=64 << 10):
        StringTransport.__init__(self)
        self.limit = limit
        self.waiting = 0
        self.pauses = 0

    def write(self, data):
        StringTransport.write(self, data)
        self.waiting += len(data)
        if self.producer is not None and self.streaming and self.waiting > self.limit:
            self.pauses += 1
            self.producer.pauseProducing()

    def drain(self):
        """
        The peer read everything that waits.
        """
        self.waiting = 0
        if self.producer is not None:
            self.producer.resumeProducing()


class FakeProtocol:
    """
    What L{MessageSender} and L{Association} need of an association's
    protocol; it counts how often reading was paused and resumed.
    """

    def __init__(self, transport):
        self.transport = transport
        self.aborted = False
        self.readingPaused = 0
        self.readingResumed = 0

    def sendPData(self, pieces):
        self.transport.write(b"".join(pieces))

    def abort(self):
        self.aborted = True

    def pauseReading(self):
        self.readingPaused += 1

    def resumeReading(self):
        self.readingResumed += 1

    @property
    def reading(self) -> bool:
        return self.readingPaused == self.readingResumed


def messagesIn(stream: bytes):
    """
    Reassemble the DIMSE messages of a byte stream of P-DATA-TF PDUs, as a
    peer would (L{MessageAssembler} refuses interleaved fragments).

    @return: C{[(contextID, command, dataSetBytes)]}.
    """
    assembler = MessageAssembler()
    messages = []
    position = 0
    while position < len(stream):
        pduType, length = stream[position], struct.unpack(">L", stream[position + 2 : position + 6])[0]
        assert pduType == P_DATA_TF
        pdu = decodePDU(pduType, memoryview(stream)[position + 6 : position + 6 + length])
        position += 6 + length
        for event in assembler.receive(pdu):
            if isinstance(event, DataSetFragment):
                messages[-1][2].append(bytes(event.data))
            else:
                messages.append((event.contextID, event.message, []))
    return [(contextID, message, b"".join(parts)) for contextID, message, parts in messages]


class MessageSenderTests(unittest.SynchronousTestCase):
    """
    L{MessageSender} streams data sets as the transport drains and keeps
    messages whole and in order.
    """

    fragmentLength = 16372

    def setUp(self):
        self.transport = ThrottledTransport()
        self.protocol = FakeProtocol(self.transport)
        self.blocks = []
        self.sender = MessageSender(
            self.protocol,
            self.fragmentLength,
            whenBlocked=lambda: self.blocks.append("blocked"),
            whenUnblocked=lambda: self.blocks.append("unblocked"),
        )
        self.sent = []
        self.chunk = self.fragmentLength * (READ_SIZE // self.fragmentLength)

    def command(self, n):
        return encodeCommand(CStoreRQ(messageID=n, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID="1.2.%d" % n))

    def response(self, n):
        return encodeCommand(CStoreRSP(messageIDBeingRespondedTo=n, status=0, affectedSOPClassUID=CT_IMAGE_STORAGE))

    def test_pausedWhenBufferFull(self):
        """
        A data set of ten chunks is read one chunk at a time: after each
        write the full buffer pauses the sender, and only draining the
        transport makes it read the next chunk.
        """
        data = os.urandom(self.chunk * 10)
        source = MemorySource(data)
        self.sender.send(1, self.command(1), source, self.sent.append)
        self.assertIs(self.transport.producer, self.sender)
        self.assertTrue(self.transport.streaming)
        for expected in range(1, 11):
            self.assertEqual(source.reads, expected)
            self.assertLess(self.transport.waiting, self.chunk + self.chunk // 10)
            self.transport.drain()
        self.assertEqual(self.sent, [None])
        self.assertTrue(source.closed)
        # Still the transport's producer, for the rest of the association,
        # and no longer blocked once the last chunk drained.
        self.assertIs(self.transport.producer, self.sender)
        self.assertFalse(self.sender.blocked)
        # The stream kept the sender blocked from its first chunk to the
        # last drain, without unblocking in between.
        self.assertEqual(self.blocks, ["blocked", "unblocked"])
        [(contextID, message, received)] = messagesIn(self.transport.value())
        self.assertEqual((contextID, message.messageID), (1, 1))
        self.assertEqual(received, data)

    def test_queuedBehindStream(self):
        """
        Messages sent while a data set streams wait for its last fragment
        and go out whole after it, in order, whatever their kind.
        """
        first = os.urandom(self.chunk * 3 + 5)
        second = b"small data set"
        third = os.urandom(self.chunk * 2)
        self.sender.send(1, self.command(1), MemorySource(first), self.sent.append)
        self.sender.send(3, self.command(2), second, self.sent.append)
        self.sender.send(5, self.command(3), MemorySource(third), self.sent.append)
        self.sender.send(3, self.command(4), None, self.sent.append)
        while len(self.sent) < 4:
            self.assertLessEqual(len(self.sent), 2)
            self.transport.drain()
        self.assertEqual(self.sent, [None] * 4)
        messages = messagesIn(self.transport.value())
        self.assertEqual([(c, m.messageID) for c, m, _ in messages], [(1, 1), (3, 2), (5, 3), (3, 4)])
        self.assertEqual([d for _, _, d in messages], [first, second, third, b""])

    def test_nothingBeforePreviousEnds(self):
        """
        While the first data set is half sent, nothing of the second
        message is on the wire.
        """
        self.sender.send(1, self.command(1), MemorySource(os.urandom(self.chunk * 4)))
        self.sender.send(1, self.command(2), b"x" * 10)
        self.transport.drain()
        self.assertNotIn(self.command(2), self.transport.value())

    def test_largeBytesStreamed(self):
        """
        A data set given as bytes longer than a chunk is streamed with
        back-pressure too, not written at once.
        """
        data = os.urandom(self.chunk * 3)
        self.sender.send(1, self.command(1), data, self.sent.append)
        self.assertLess(len(self.transport.value()), self.chunk * 2)
        self.assertEqual(self.sent, [])
        while not self.sent:
            self.transport.drain()
        self.assertEqual(self.sent, [None])
        self.assertEqual(messagesIn(self.transport.value())[0][2], data)

    def test_resumedFromInsideAWrite(self):
        """
        A transport that drains at once, resuming the sender from inside
        the write that paused it (as a flushed transport does), gets the
        whole data set in order without the stack growing per piece.
        """
        depths = []
        transport = self.transport
        write = transport.write

        def writeAndDrain(data):
            depths.append(len(traceback.extract_stack()))
            write(data)
            transport.drain()

        transport.write = writeAndDrain
        data = os.urandom(self.chunk * 50)
        self.sender.send(1, self.command(1), MemorySource(data), self.sent.append)
        self.assertEqual(self.sent, [None])
        self.assertEqual(messagesIn(transport.value())[0][2], data)
        self.assertEqual(len(depths), 50)
        self.assertEqual(max(depths), min(depths))

    def test_smallBytesAtOnce(self):
        """
        A small data set goes with its command in one write.
        """
        self.sender.send(1, self.command(1), b"abcd", self.sent.append)
        self.assertEqual(self.sent, [None])
        self.assertEqual(messagesIn(self.transport.value())[0][2], b"abcd")
        self.assertEqual(self.blocks, [])

    def test_registeredOnce(self):
        """
        The sender registers with the transport as a streaming producer
        when it is made, for the whole association, and stays registered
        across data sets; without a transport it registers nowhere.
        """
        self.assertIs(self.transport.producer, self.sender)
        self.assertTrue(self.transport.streaming)
        for n in range(3):
            self.sender.send(1, self.command(n), MemorySource(os.urandom(self.chunk + 10)), self.sent.append)
            while len(self.sent) < n + 1:
                self.transport.drain()
            self.assertIs(self.transport.producer, self.sender)
        self.assertEqual(self.sent, [None] * 3)
        sender = MessageSender(FakeProtocol(None), self.fragmentLength)
        sender.stopProducing()

    def test_smallMessagesBlock(self):
        """
        Small messages that fill the transport's buffer (the peer reads
        none of them) block the sender: it asks once to stop reading, and
        asks once to read again when the buffer drains.  Messages sent
        while blocked are still written whole and in order: no more can
        come than answers to the requests already read.
        """
        count = 2 * self.transport.limit // len(self.response(1))
        for n in range(1, count + 1):
            self.sender.send(1, self.response(n), None, self.sent.append)
            self.assertEqual(self.sender.blocked, self.transport.waiting > self.transport.limit)
        self.assertEqual(self.sent, [None] * count)
        self.assertTrue(self.sender.blocked)
        self.assertGreater(self.transport.pauses, 1)
        self.assertEqual(self.blocks, ["blocked"])
        self.transport.drain()
        self.assertFalse(self.sender.blocked)
        self.assertEqual(self.blocks, ["blocked", "unblocked"])
        messages = messagesIn(self.transport.value())
        self.assertEqual([m.messageIDBeingRespondedTo for _, m, _ in messages], list(range(1, count + 1)))

    def test_associationStopsReading(self):
        """
        An L{Association} whose peer reads none of its C-ECHO-RSPs stops
        reading the peer once the transport's buffer is full, and reads
        again once it drains; the sender's pause is counted apart from a
        consumer's (a slow disk), so reading resumes only when both are
        over.
        """
        transport = ThrottledTransport(limit=4096)
        protocol = FakeProtocol(transport)
        request = AAssociateRQ("DICOMD", "PEER", [], UserInformation(maximumLength=16384))
        association = Association(
            protocol,
            isRequestor=False,
            associateRequest=request,
            contexts={},
            peerMaximumLength=16384,
            reactor=task.Clock(),
        )
        self.assertIsNot(transport.producer, None)
        for n in range(1, 101):
            association.send(1, CEchoRSP(messageIDBeingRespondedTo=n, status=0))
        self.assertEqual((protocol.readingPaused, protocol.readingResumed), (1, 0))
        association.pauseReceiving()
        transport.drain()
        self.assertEqual((protocol.readingPaused, protocol.readingResumed), (1, 0))
        association.resumeReceiving()
        self.assertEqual((protocol.readingPaused, protocol.readingResumed), (1, 1))
        self.assertEqual(len(messagesIn(transport.value())), 100)

        # Blocked again when the association ends: the transport is let go
        # and reading is no longer held up by the sender.
        for n in range(1, 101):
            association.send(1, CEchoRSP(messageIDBeingRespondedTo=n, status=0))
        self.assertFalse(protocol.reading)
        association.ended(None)
        self.assertIsNone(transport.producer)
        self.assertTrue(protocol.reading)

    def test_whenWritable(self):
        """
        L{Association.whenWritable} fires at once while the peer reads,
        and otherwise when the transport drains or the association ends:
        what C-FIND waits on between batches of pending responses.
        """
        transport = ThrottledTransport(limit=4096)
        protocol = FakeProtocol(transport)
        request = AAssociateRQ("DICOMD", "PEER", [], UserInformation(maximumLength=16384))
        association = Association(
            protocol, isRequestor=False, associateRequest=request, contexts={}, peerMaximumLength=16384, reactor=task.Clock()
        )
        self.successResultOf(association.whenWritable())
        for n in range(1, 101):
            association.send(1, CEchoRSP(messageIDBeingRespondedTo=n, status=0))
        drained = association.whenWritable()
        self.assertNoResult(drained)
        transport.drain()
        self.successResultOf(drained)
        for n in range(1, 101):
            association.send(1, CEchoRSP(messageIDBeingRespondedTo=n, status=0))
        ending = association.whenWritable()
        self.assertNoResult(ending)
        association.ended(None)
        self.successResultOf(ending)
        self.successResultOf(association.whenWritable())

    def test_streamWaitsWhileBlocked(self):
        """
        A data set sent while the buffer is full waits, command and all,
        until the transport drains; a small message after it waits for it.
        """
        while not self.sender.blocked:
            self.sender.send(1, self.command(1), b"x" * 1000)
        before = len(self.transport.value())
        data = os.urandom(self.chunk + 10)
        self.sender.send(1, self.command(2), MemorySource(data), self.sent.append)
        self.sender.send(1, self.response(3), None, self.sent.append)
        self.assertEqual(len(self.transport.value()), before)
        self.assertEqual(self.sent, [])
        while len(self.sent) < 2:
            self.transport.drain()
        messages = messagesIn(self.transport.value())
        self.assertEqual((messages[-2][1].messageID, messages[-1][1].messageIDBeingRespondedTo), (2, 3))
        self.assertEqual(messages[-2][2], data)

    def test_emptySource(self):
        """
        An empty data set still ends with a last fragment.
        """
        self.sender.send(1, self.command(1), MemorySource(b""), self.sent.append)
        self.assertEqual(self.sent, [None])
        self.assertEqual(messagesIn(self.transport.value())[0][2], b"")

    def test_fragmentSize(self):
        """
        Every PDV carries at most the fragment length, and whole ones but
        the last.
        """
        self.sender.send(1, self.command(1), MemorySource(os.urandom(self.chunk + 100)))
        self.transport.drain()
        stream = self.transport.value()
        lengths = []
        position = 0
        while position < len(stream):
            length = struct.unpack(">L", stream[position + 2 : position + 6])[0]
            lengths.append(length - 6)
            position += 6 + length
        dataLengths = lengths[1:]
        self.assertEqual(set(dataLengths[:-1]), {self.fragmentLength})
        self.assertEqual(dataLengths[-1], 100)

    def test_evenFragments(self):
        """
        An odd fragment length (a peer's odd maximum length) is rounded down
        to an even one: PDVs of odd length are refused by DCMTK.
        """
        transport = ThrottledTransport()
        sender = MessageSender(FakeProtocol(transport), 4091)
        self.assertEqual(sender.fragmentLength, 4090)
        sender.send(1, self.command(1), MemorySource(os.urandom(10000)))
        lengths = []
        stream = transport.value()
        position = 0
        while position < len(stream):
            length = struct.unpack(">L", stream[position + 2 : position + 6])[0]
            lengths.append(length - 6)
            position += 6 + length
        self.assertEqual(lengths[1:], [4090, 4090, 1820])

    def test_stopProducing(self):
        """
        When the connection goes, the stream and the queued messages are
        dropped: their sources are closed and told why.
        """
        streaming = MemorySource(os.urandom(self.chunk * 4))
        queued = MemorySource(b"q" * 10)
        self.sender.send(1, self.command(1), streaming, self.sent.append)
        self.sender.send(1, self.command(2), queued, self.sent.append)
        self.assertTrue(self.sender.blocked)
        self.sender.stopProducing()
        self.assertTrue(streaming.closed)
        self.assertTrue(queued.closed)
        self.assertEqual([type(error) for error in self.sent], [ConnectionError, ConnectionError])
        later = MemorySource(b"")
        self.sender.send(1, self.command(3), later)
        self.assertTrue(later.closed)
        # Unregistered, so that the transport can close, and the read
        # pause undone; the transport's late calls change nothing.
        self.assertIsNone(self.transport.producer)
        self.assertFalse(self.sender.blocked)
        self.assertEqual(self.blocks, ["blocked", "unblocked"])
        self.sender.pauseProducing()
        self.sender.resumeProducing()
        self.sender.stopProducing()
        self.assertEqual(self.blocks, ["blocked", "unblocked"])

    def test_readError(self):
        """
        A source that cannot be read aborts the association and reports
        the error.
        """
        source = MemorySource(os.urandom(self.chunk * 4), failAfter=2)
        self.sender.send(1, self.command(1), source, self.sent.append)
        self.transport.drain()
        self.transport.drain()
        self.assertTrue(self.protocol.aborted)
        self.assertTrue(source.closed)
        self.assertIsInstance(self.sent[0], OSError)


class CommandLineTests(unittest.SynchronousTestCase):
    """
    C{dicomd storescu}'s options: the ones DCMTK documents either work or
    are refused with a usage error naming them.
    """

    def parse(self, *argv):
        values = storescu.COMMAND_LINE.parse(list(argv))
        storescu.validate(values)
        return values

    def assertRefused(self, *argv, naming):
        error = self.assertRaises(UsageError, self.parse, *argv)
        self.assertIn(naming, str(error))
        return error

    def test_defaults(self):
        """
        DCMTK's defaults: STORESCU calling ANY-SCP, 16384-byte PDUs, file
        format or data set, halting on errors.
        """
        values = self.parse("host", "104", "a.dcm", "b.dcm")
        self.assertEqual((values["peer"], values["port"], values["dcmfile-in"]), ("host", 104, ["a.dcm", "b.dcm"]))
        self.assertEqual((values["aetitle"], values["call"], values["maxPDU"]), ("STORESCU", "ANY-SCP", 16384))
        self.assertEqual(values["readMode"], scu.READ_FILE_OR_DATA_SET)
        self.assertFalse(values.get("noHalt"))

    def test_shownLevels(self):
        """
        L{logs.shows} says which events the logging options let through:
        per-file progress (info) only with C{-v} or C{-d}.
        """
        default, verbose, debug, quiet = (self.parse(*flags, "host", "104", "a.dcm") for flags in ([], ["-v"], ["-d"], ["-q"]))
        self.assertEqual([logs.shows(values, LogLevel.info) for values in (default, verbose, debug, quiet)], [False, True, True, False])
        self.assertEqual([logs.shows(values, LogLevel.warn) for values in (default, verbose, debug, quiet)], [True, True, True, False])
        self.assertTrue(logs.shows(quiet, LogLevel.critical))

    def test_unsupported(self):
        """
        Each DCMTK option dicomd does not honour is refused by name, with
        its argument parsed.
        """
        for argv, name in [
            (["+II"], "+II (--invent-instance)"),
            (["+IR", "10"], "+IR (--invent-series)"),
            (["+IS", "5"], "+IS (--invent-study)"),
            (["+IP", "5"], "+IP (--invent-patient)"),
            (["-u"], "-u (--disable-new-vr)"),
            (["-lc", "log.cfg"], "-lc (--log-config)"),
            # The other TLS options (CRLs, profiles, +cs) map onto
            # dicomd.tls; tests/test_tls.py covers them.
            (["+rs", "seed"], "+rs (--seed)"),
            (["+ws"], "+ws (--write-seed)"),
            (["+wf", "seed"], "+wf (--write-seed-file)"),
        ]:
            error = self.assertRefused(*(argv + ["host", "104", "a.dcm"]), naming=name)
            self.assertIn("is not supported", str(error))

    def test_accepted(self):
        """
        The options that work parse and validate.
        """
        values = self.parse(
            "-aet", "ME", "-aec", "YOU", "+C", "-xb", "-R", "+u", "-up", "-to", "5", "-ts", "0", "-ta", "7", "-td", "9",
            "-pdu", "4096", "--max-send-pdu", "8192", "--repeat", "2", "--abort", "-nh", "+sd", "+r", "+sp", "*.dcm",
            "+rn", "-f", "+py", "--associations", "3", "host", "104", "dir",
        )
        self.assertEqual((values["aetitle"], values["call"], values["proposed"], values["repeat"]), ("ME", "YOU", "+xb", 2))
        self.assertEqual((values["maxPDU"], values["maxSendPDU"], values["associations"]), (4096, 8192, 3))
        self.assertEqual(values["readMode"], scu.READ_DATA_SET)

    def test_missingParameters(self):
        """
        Peer, port and at least one file are required (but not for +cc).
        """
        self.assertRefused("host", naming="missing parameter port")
        self.assertRefused("host", "104", naming="missing parameter dcmfile-in")
        self.assertTrue(self.parse("+cc")["listCiphers"])

    def test_dependencies(self):
        """
        Options that only make sense with another are refused without it,
        naming both.
        """
        self.assertRefused("+sp", "*.dcm", "h", "1", "f", naming="+sp (--scan-pattern) is only allowed with +sd")
        self.assertRefused("+r", "h", "1", "f", naming="+r (--recurse) is only allowed with +sd")
        self.assertRefused("-pwd", "secret", "h", "1", "f", naming="-pwd (--password)")
        self.assertRefused("-rsp", "h", "1", "f", naming="-rsp (--pos-response)")
        self.assertRefused("+cl", "9", "h", "1", "f", naming="+cl (--compression-level)")
        self.assertRefused("+cl", "10", "-xd", "h", "1", "f", naming="--compression-level")
        self.assertEqual(self.parse("+cl", "9", "-xd", "h", "1", "f")["compressionLevel"], 9)

    def test_configFile(self):
        """
        C{-xf} reads the profile at once, refuses an unknown one, and does
        not combine with proposal options.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                "[[TransferSyntaxes]]\n[Implicit]\nTransferSyntax1 = LittleEndianImplicit\n"
                "[[PresentationContexts]]\n[CT]\nPresentationContext1 = CTImageStorage\\Implicit\n"
                "[[Profiles]]\n[Only CT]\nPresentationContexts = CT\n"
            )
        values = self.parse("-xf", path, "only ct", "h", "1", "f")
        self.assertEqual(values["profile"].presentationContexts, ((CT_IMAGE_STORAGE, (IMPLICIT_VR_LITTLE_ENDIAN,)),))
        self.assertRefused("-xf", path, "other", "h", "1", "f", naming="unknown configuration profile name: OTHER")
        self.assertRefused("-xf", path, "only ct", "-xi", "h", "1", "f", naming="cannot be combined with a --propose")
        self.assertRefused("-xf", path, "only ct", "+C", "h", "1", "f", naming="+C (--combine)")
        self.assertRefused("-xf", path + ".missing", "x", "h", "1", "f", naming="-xf (--config-file): cannot read")

    def test_userIdentity(self):
        """
        C{-usr}/C{-pwd} make a user and passcode identity; C{-kt},
        C{--saml} and C{--jwt} read their file; C{-rsp} asks for a
        response.
        """
        self.assertEqual(self.parse("-usr", "bob", "h", "1", "f")["userIdentity"], UserIdentityRQ(1, False, b"bob"))
        self.assertEqual(
            self.parse("-usr", "bob", "-pwd", "pw", "-rsp", "h", "1", "f")["userIdentity"], UserIdentityRQ(2, True, b"bob", b"pw")
        )
        self.assertEqual(self.parse("-usr", "bob", "-epw", "h", "1", "f")["userIdentity"], UserIdentityRQ(2, False, b"bob", b""))
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"token")
        for option, identityType in (("-kt", 3), ("--saml", 4), ("--jwt", 5)):
            self.assertEqual(self.parse(option, path, "h", "1", "f")["userIdentity"], UserIdentityRQ(identityType, False, b"token"))
        self.assertRefused("--jwt", path + ".missing", "h", "1", "f", naming="cannot read the Kerberos, SAML or JWT file")

    def test_tlsFiles(self):
        """
        Unusable TLS files are a usage error at once.
        """
        self.assertRefused("+tls", "missing.key", "missing.pem", "h", "1", "f", naming="+tls (--enable-tls): cannot read missing.key")

    def test_commandFile(self):
        """
        C{@file} arguments are replaced by the file's words, quotes
        keeping spaces.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('-aet "MY AE" --repeat 3\n')
        values = self.parse("@" + path, "h", "1", "f")
        self.assertEqual((values["aetitle"], values["repeat"]), ("MY AE", 3))
        self.assertEqual(values["expandedArguments"], ["-aet", "MY AE", "--repeat", "3", "h", "1", "f"])
