"""
The Storage service class, SCU role (PS3.4 Annex B): C-STORE from files.

L{readFileMeta} reads just a file's File Meta Information (PS3.10 7.1), which
names its SOP class, instance and transfer syntax and where its data set
starts.  L{store} sends one file or data set on an association: when the
peer accepted the file's own transfer syntax, the data set is streamed from
disk as the transport drains (L{FileDataSet}); when it accepted only another
little-endian uncompressed syntax, the data set is converted with pydicom in
a worker thread first.  L{proposePresentationContexts} builds the
presentation contexts for a set of files the way DCMTK's storescu does.
"""

import os
import struct
import zlib
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from dicomd.dimse.commands import PRIORITY_MEDIUM, CStoreRQ
from dicomd.net.association import NoPresentationContext
from dicomd.net.sending import IDataSetSource
from dicomd.ul.negotiation import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    UNCOMPRESSED,
)

#: The syntaxes we convert between with pydicom.  Big endian is left out:
#: pydicom does not swap the bytes of 16-bit pixel data.
CONVERTIBLE = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


class NotDICOM(ValueError):
    """
    A file is not a DICOM Part-10 file.
    """


class StoreFailed(Exception):
    """
    A file could not be sent at all (no presentation context, no
    conversion possible, unreadable file).
    """


@dataclass(frozen=True)
class DicomFile:
    """
    A Part-10 file, as its File Meta Information describes it.

    @ivar dataSetOffset: where the data set starts in the file.
    """

    path: str
    sopClassUID: str
    sopInstanceUID: str
    transferSyntaxUID: str
    dataSetOffset: int
    size: int


def readFileMeta(path: str) -> DicomFile:
    """
    Read a file's preamble and File Meta Information group.

    @raise NotDICOM: no "DICM" prefix, or the meta information lacks the
        SOP class, instance or transfer syntax.
    @raise OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(132)
        if len(head) < 132 or head[128:] != b"DICM":
            raise NotDICOM("%s has no DICOM file preamble" % (path,))
        values: Dict[int, str] = {}
        while True:
            start = f.tell()
            header = f.read(8)
            if len(header) < 8:
                break
            group, element, vr = struct.unpack("<HH2s", header[:6])
            if group != 0x0002:
                break
            if vr in _LONG_VRS:
                length = struct.unpack("<L", f.read(4))[0]
            else:
                length = struct.unpack("<H", header[6:8])[0]
            value = f.read(length)
            if len(value) < length:
                raise NotDICOM("%s ends inside its File Meta Information" % (path,))
            if element in (0x0002, 0x0003, 0x0010):
                values[element] = value.decode("ascii", "replace").rstrip("\x00 ")
            start = f.tell()
    missing = [name for element, name in ((0x0002, "SOP class"), (0x0003, "SOP instance"), (0x0010, "transfer syntax")) if not values.get(element)]
    if missing:
        raise NotDICOM("%s: File Meta Information without %s UID" % (path, " and ".join(missing)))
    return DicomFile(path, values[0x0002], values[0x0003], values[0x0010], start, size)


@implementer(IDataSetSource)
class FileDataSet:
    """
    The data set of a Part-10 file, read from disk in order.
    """

    def __init__(self, dicomFile: DicomFile):
        self._file = open(dicomFile.path, "rb")
        self._file.seek(dicomFile.dataSetOffset)
        self.length = dicomFile.size - dicomFile.dataSetOffset

    def read(self, size: int) -> bytes:
        data = self._file.read(size)
        if len(data) < size:
            raise OSError("%s is shorter than when it was opened" % (self._file.name,))
        self.length -= len(data)
        return data

    def close(self) -> None:
        self._file.close()


def encodeDataSet(dataset: Dataset, transferSyntaxUID: str) -> bytes:
    """
    Encode a data set (without File Meta Information) in one of the
    L{CONVERTIBLE} transfer syntaxes.
    """
    syntax = UID(transferSyntaxUID)
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = syntax == IMPLICIT_VR_LITTLE_ENDIAN
    write_dataset(fp, dataset)
    data = fp.getvalue()
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
    return data


def _convert(path: Optional[str], dataset: Optional[Dataset], transferSyntaxUID: str) -> bytes:
    if dataset is None:
        dataset = dcmread(path)
    return encodeDataSet(dataset, transferSyntaxUID)


@dataclass(frozen=True)
class StoreResult:
    """
    The outcome of one C-STORE: the response's status and error comment.
    """

    sopInstanceUID: str
    status: int
    errorComment: Optional[str] = None
    transferSyntaxUID: str = ""
    size: int = 0


def chooseContext(association, sopClassUID: str, transferSyntaxUID: str):
    """
    The accepted context to send an object of C{transferSyntaxUID} on: one
    with that very syntax, else one with a syntax we can convert to.

    @raise StoreFailed: neither exists.
    """
    try:
        return association.contextFor(sopClassUID, transferSyntaxUID)
    except NoPresentationContext:
        pass
    if transferSyntaxUID in CONVERTIBLE:
        for candidate in CONVERTIBLE:
            try:
                return association.contextFor(sopClassUID, candidate)
            except NoPresentationContext:
                continue
    raise StoreFailed(
        "no presentation context for %s in %s, nor one it can be converted to" % (sopClassUID, transferSyntaxUID)
    )


def store(
    association,
    source,
    *,
    priority: int = PRIORITY_MEDIUM,
    moveOriginatorAETitle: Optional[str] = None,
    moveOriginatorMessageID: Optional[int] = None,
    reactor=None,
    threadpool=None,
) -> defer.Deferred:
    """
    C-STORE one object.

    @param source: a file path, a L{DicomFile}, or a pydicom L{Dataset}.
    @return: a L{Deferred} firing with a L{StoreResult}, or failing with
        L{StoreFailed} (nothing was sent) or an
        L{dicomd.net.association.AssociationError}.
    """
    if reactor is None:
        from twisted.internet import reactor
    try:
        if isinstance(source, Dataset):
            dataset, dicomFile = source, None
            sopClass, sopInstance = str(source.SOPClassUID), str(source.SOPInstanceUID)
            fileSyntax = IMPLICIT_VR_LITTLE_ENDIAN
        else:
            dicomFile = source if isinstance(source, DicomFile) else readFileMeta(source)
            dataset = None
            sopClass, sopInstance = dicomFile.sopClassUID, dicomFile.sopInstanceUID
            fileSyntax = dicomFile.transferSyntaxUID
        context = chooseContext(association, sopClass, fileSyntax)
    except (OSError, NotDICOM, StoreFailed, AttributeError) as e:
        return defer.fail(StoreFailed(str(e)))
    request = CStoreRQ(
        affectedSOPClassUID=sopClass,
        affectedSOPInstanceUID=sopInstance,
        priority=priority,
        moveOriginatorApplicationEntityTitle=moveOriginatorAETitle,
        moveOriginatorMessageID=moveOriginatorMessageID,
    )
    if dicomFile is not None and context.transferSyntax == fileSyntax:
        try:
            payload = FileDataSet(dicomFile)
        except OSError as e:
            return defer.fail(StoreFailed(str(e)))
        prepared = defer.succeed(payload)
    else:
        pool = threadpool if threadpool is not None else reactor.getThreadPool()
        prepared = deferToThreadPool(
            reactor, pool, _convert, dicomFile.path if dicomFile else None, dataset, context.transferSyntax
        )
        prepared.addErrback(lambda f: defer.fail(StoreFailed("cannot convert to %s: %s" % (context.transferSyntax, f.value))))

    def send(payload):
        size = payload.length if not isinstance(payload, bytes) else len(payload)
        sent = association.request(context.contextID, request, payload)
        return sent.addCallback(
            lambda result: StoreResult(
                sopInstance, result[0].status, result[0].errorComment, context.transferSyntax, size
            )
        )

    return prepared.addCallback(send)


def proposePresentationContexts(
    files: Iterable[DicomFile],
    preferred: Optional[str] = None,
    combine: bool = False,
) -> List[Tuple[str, List[str]]]:
    """
    Presentation contexts for sending C{files}, as DCMTK's storescu builds
    them: for each SOP class, one context with the preferred transfer syntax
    and one with the other uncompressed syntaxes as a fallback (one context
    with both when C{combine}); plus a context for each compressed syntax
    the files of that class are in, so they can go as they are.

    @param preferred: the preferred syntax (storescu's C{-x=}, C{-xe}...);
        explicit VR little endian by default.  Implicit VR little endian and
        the video syntaxes get no fallback, as in storescu.
    """
    preferred = preferred or EXPLICIT_VR_LITTLE_ENDIAN
    fallback = [] if preferred in _NO_FALLBACK else [ts for ts in UNCOMPRESSED if ts != preferred]
    syntaxesByClass: Dict[str, List[str]] = {}
    for dicomFile in files:
        syntaxes = syntaxesByClass.setdefault(dicomFile.sopClassUID, [])
        if dicomFile.transferSyntaxUID not in syntaxes:
            syntaxes.append(dicomFile.transferSyntaxUID)
    proposals = []
    for sopClass, syntaxes in syntaxesByClass.items():
        if combine:
            proposals.append((sopClass, [preferred] + fallback))
        else:
            proposals.append((sopClass, [preferred]))
            if fallback:
                proposals.append((sopClass, fallback))
        for syntax in syntaxes:
            if syntax not in UNCOMPRESSED and syntax != preferred:
                proposals.append((sopClass, [syntax]))
    return proposals


_NO_FALLBACK = {IMPLICIT_VR_LITTLE_ENDIAN} | {"1.2.840.10008.1.2.4.%d" % n for n in range(100, 109)}


def splitProposals(proposals: Sequence[Tuple[str, List[str]]], limit: int = 128) -> List[List[Tuple[str, List[str]]]]:
    """
    Cut proposals into groups of at most C{limit} contexts, keeping all the
    contexts of one SOP class in the same group, for one association each.
    """
    groups: List[List[Tuple[str, List[str]]]] = [[]]
    byClass: Dict[str, List[Tuple[str, List[str]]]] = {}
    for proposal in proposals:
        byClass.setdefault(proposal[0], []).append(proposal)
    for contexts in byClass.values():
        if len(groups[-1]) + len(contexts) > limit:
            groups.append([])
        groups[-1].extend(contexts)
    return [group for group in groups if group]

