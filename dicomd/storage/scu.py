"""
The Storage service class, SCU role (PS3.4 Annex B): C-STORE from files.

L{readFileMeta} reads just a file's File Meta Information (PS3.10 7.1),
which names its SOP class, instance and transfer syntax and where its data
set starts; L{readDataSetFile} does the same for a file holding a bare data
set.  L{store} sends one file or data set on an association: when the peer
accepted the file's own transfer syntax, the data set is streamed from disk
as the transport drains (L{FileDataSet}); when it accepted only another
uncompressed syntax (little or big endian, implicit or explicit VR,
deflated), the data set is converted by L{dicomd.storage.recode} in a
worker thread first.  L{proposePresentationContexts} builds the
presentation contexts for a set of files the way DCMTK's storescu does, and
L{splitProposals} cuts them into groups that fit one association each.

pydicom is imported only to read a bare data set file, to encode a
pydicom data set or to convert one: sending Part-10 files as they are
never needs it.
"""

import os
import warnings
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from dicomd.codec.elements import EXPLICIT_LITTLE, ElementScanner, Truncated
from dicomd.dimse.commands import PRIORITY_MEDIUM, CStoreRQ
from dicomd.errors import NoPresentationContext
from dicomd.interfaces import IDataSetSource
from dicomd.ul.negotiation import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    UNCOMPRESSED,
)

#: The syntaxes a data set converts between, cheapest target first: the
#: little endian ones only re-encode headers, big endian also swaps every
#: binary value, and deflating compresses the whole data set.
CONVERTIBLE = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
)

#: zlib's level for deflated explicit VR little endian, as DCMTK's C{+cl}.
DEFAULT_COMPRESSION_LEVEL = 6

#: The first tag after the File Meta Information group (0002).
_AFTER_FILE_META = 0x00030000

#: The UIDs read from the File Meta Information, by element number: Media
#: Storage SOP Class and Instance UID, Transfer Syntax UID.
_FILE_META_UIDS = (0x0002, 0x0003, 0x0010)

log = Logger()


class NotDICOM(ValueError):
    """
    A file is not a DICOM file we can send: no Part-10 preamble, a broken
    File Meta Information, or no SOP class or instance UID.
    """


class NoPreamble(NotDICOM):
    """
    A file has no DICOM file preamble and "DICM" prefix: it may still be a
    bare data set (L{readDataSetFile}).
    """


class StoreFailed(Exception):
    """
    A file could not be sent at all (no presentation context, no
    conversion possible, unreadable file).
    """


@dataclass(frozen=True)
class DicomFile:
    """
    A file to send, as its File Meta Information (or its data set)
    describes it.

    @ivar dataSetOffset: where the data set starts in the file.
    @ivar size: the file's size.
    """

    path: str
    sopClassUID: str
    sopInstanceUID: str
    transferSyntaxUID: str
    dataSetOffset: int
    size: int


def _uid(value: bytes) -> str:
    # Trailing NUL or space padding is dropped: the command carries the
    # UID without it (DCMTK's --uid-padding, always on here).
    return value.decode("ascii", "replace").rstrip("\x00 ")


def readFileMeta(path: str) -> DicomFile:
    """
    Read a Part-10 file's preamble and File Meta Information group.

    @raise NoPreamble: no "DICM" prefix after the preamble.
    @raise NotDICOM: the meta information is cut short, or lacks the SOP
        class, instance or transfer syntax.
    @raise OSError: the file cannot be read.
    """
    with open(path, "rb", buffering=0) as f:
        return _MetaReader(path, f).read()


class _MetaReader:
    """
    Parses one file's File Meta Information from its first bytes, read in
    one system call for the usual file, more only when the group is longer.

    @ivar position: where the next element of the group starts, and at
        the end where the data set starts.
    """

    chunk = 4096

    def __init__(self, path: str, f, first: int = chunk):
        """
        @param first: how many bytes the first read asks for.
        """
        self.path = path
        self.file = f
        self.size = os.fstat(f.fileno()).st_size
        self.head = f.read(first)

    def _have(self, end: int) -> bool:
        """
        Read until the first C{end} bytes are in, or the file ends.
        """
        while len(self.head) < end:
            more = self.file.read(max(self.chunk, end - len(self.head)))
            if not more:
                return False
            self.head += more
        return True

    def _truncated(self) -> NotDICOM:
        return NotDICOM("%s ends inside its File Meta Information" % (self.path,))

    def read(self) -> DicomFile:
        head = self.head
        if len(head) < 132 or head[128:132] != b"DICM":
            raise NoPreamble("%s has no DICOM file preamble" % (self.path,))
        values: Dict[int, str] = {}
        self.position = 132
        while True:
            try:
                ended = self._scan(values)
            except Truncated as e:
                needed = e.needed
            else:
                if ended or self.position == self.size:
                    break
                needed = self.position + 8
            if not self._have(needed):
                raise self._truncated()
        missing = [
            name
            for element, name in ((0x0002, "SOP class"), (0x0003, "SOP instance"), (0x0010, "transfer syntax"))
            if not values.get(element)
        ]
        if missing:
            raise NotDICOM("%s: File Meta Information without %s UID" % (self.path, " and ".join(missing)))
        return DicomFile(self.path, values[0x0002], values[0x0003], values[0x0010], self.position, self.size)

    def _scan(self, values: Dict[int, str]) -> bool:
        """
        Read the File Meta Information elements that the bytes read so far
        hold, from L{position} on, into C{values} (the UIDs, by element
        number), moving L{position} past each.

        @return: whether the group ended.
        @raise Truncated: the bytes read so far end inside an element.
        """
        scanner = ElementScanner(self.head, EXPLICIT_LITTLE, self.position, stopBefore=_AFTER_FILE_META)
        for tag, _, _, valueOffset, end in scanner:
            if tag >> 16 != 0x0002:
                return True
            if tag & 0xFFFF in _FILE_META_UIDS:
                values[tag & 0xFFFF] = _uid(self.head[valueOffset:end])
            self.position = end
        return scanner.reached


def openFile(path: str, readSize: int) -> "FileDataSet":
    """
    Open a Part-10 file to send it: read its File Meta Information, as
    L{readFileMeta} does, and the first C{readSize} bytes of its data set
    ahead (L{FileDataSet.readAhead}), in one system call where they fit.
    An instance the daemon sends (forwarding) is so opened once, rather
    than once for its meta information and again for its data set.

    @raise NoPreamble: no "DICM" prefix after the preamble.
    @raise NotDICOM: the meta information is cut short, or lacks the SOP
        class, instance or transfer syntax.
    @raise OSError: the file cannot be read.
    """
    f = open(path, "rb", buffering=0)
    try:
        reader = _MetaReader(path, f, _MetaReader.chunk + readSize)
        dicomFile = reader.read()
    except BaseException:
        f.close()
        raise
    return FileDataSet(dicomFile, f, memoryview(reader.head)[dicomFile.dataSetOffset :])


def readDataSetFile(path: str) -> DicomFile:
    """
    Read a file that holds a bare data set (DCMTK's C{--read-dataset}):
    its SOP class and instance come from the data set, its transfer syntax
    is what pydicom detects (implicit or explicit VR, little or big
    endian).

    @raise NotDICOM: it is a Part-10 file, or pydicom finds no data set
        with a SOP class and instance UID in it.
    @raise OSError: the file cannot be read.
    """
    from pydicom import dcmread

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(132)[128:] == b"DICM":
            raise NotDICOM("%s is a DICOM file with File Meta Information, not a bare data set" % (path,))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = dcmread(path, force=True, stop_before_pixels=True, defer_size=1024)
            sopClassUID = str(dataset.get("SOPClassUID", "") or "").rstrip("\x00 ")
            sopInstanceUID = str(dataset.get("SOPInstanceUID", "") or "").rstrip("\x00 ")
            implicit, little = dataset.original_encoding
    except OSError:
        raise
    except Exception as e:
        raise NotDICOM("%s is not a DICOM data set: %s" % (path, e))
    if not sopClassUID or not sopInstanceUID:
        raise NotDICOM("%s is not a DICOM file or data set: no SOP class or instance UID" % (path,))
    if implicit:
        syntax = IMPLICIT_VR_LITTLE_ENDIAN
    else:
        syntax = EXPLICIT_VR_LITTLE_ENDIAN if little else EXPLICIT_VR_BIG_ENDIAN
    return DicomFile(path, sopClassUID, sopInstanceUID, syntax, 0, size)


#: How L{readDicomFile} reads its input, as DCMTK's C{+f}, C{+fo}, C{-f}.
READ_FILE_OR_DATA_SET = "file or data set"
READ_FILE_ONLY = "file only"
READ_DATA_SET = "data set"


def readDicomFile(path: str, mode: str = READ_FILE_OR_DATA_SET) -> DicomFile:
    """
    Read a file to send: a Part-10 file, a bare data set, or (the default)
    a Part-10 file or else a bare data set.

    @raise NotDICOM: it is not what C{mode} accepts.
    @raise OSError: it cannot be read.
    """
    if mode == READ_DATA_SET:
        return readDataSetFile(path)
    try:
        return readFileMeta(path)
    except NoPreamble:
        if mode == READ_FILE_ONLY:
            raise
    return readDataSetFile(path)


@implementer(IDataSetSource)
class FileDataSet:
    """
    The data set of a file, read from disk in order.

    A storage SCU reads the next file's first piece ahead (L{readAhead})
    while the peer is still storing the one before: when the response
    comes, the next request goes out without waiting for the disk.

    @ivar dicomFile: the L{DicomFile} read.
    """

    def __init__(self, dicomFile: DicomFile, file=None, ahead=b""):
        """
        @param file: the file, already open and read up to the end of
            C{ahead}; by default it is opened here, at the data set.
        @param ahead: the first bytes of the data set, read already.
        """
        self.dicomFile = dicomFile
        if file is None:
            file = open(dicomFile.path, "rb", buffering=0)
            file.seek(dicomFile.dataSetOffset)
        self._file = file
        self.length = dicomFile.size - dicomFile.dataSetOffset
        self._ahead = ahead

    def readAhead(self, size: int) -> None:
        """
        Read the first C{size} bytes now (at most the data set); the first
        L{read} of that size returns them.  Called before any L{read}.

        @raise OSError: the file cannot be read.
        """
        self._ahead = self._readExactly(min(size, self.length))

    def read(self, size: int) -> bytes:
        ahead = self._ahead
        if ahead:
            self._ahead = b""
            if len(ahead) > size:
                ahead, self._ahead = ahead[:size], ahead[size:]
            data = ahead if len(ahead) == size else b"".join((ahead, self._readExactly(size - len(ahead))))
        else:
            data = self._readExactly(size)
        self.length -= size
        return data

    def _readExactly(self, size: int) -> bytes:
        data = self._file.read(size)
        if len(data) < size:
            data += self._readRest(size - len(data))
        return data

    def _readRest(self, size: int) -> bytes:
        # An unbuffered read may return less than asked; only end of file
        # ends the loop.
        parts = []
        while size:
            data = self._file.read(size)
            if not data:
                raise OSError("%s is shorter than when it was opened" % (self._file.name,))
            parts.append(data)
            size -= len(data)
        return b"".join(parts)

    def close(self) -> None:
        self._ahead = b""
        self._file.close()


def encodeDataSet(dataset, transferSyntaxUID: str, compressionLevel: int = DEFAULT_COMPRESSION_LEVEL) -> bytes:
    """
    Encode a pydicom data set (without its File Meta Information) in one
    of the L{CONVERTIBLE} transfer syntaxes: pydicom writes it in explicit
    VR little endian, and L{convertDataSet} converts that to any other
    syntax (pydicom would not swap OW values for big endian).

    @param compressionLevel: zlib's level (0 to 9) for deflated explicit VR
        little endian.
    """
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, dataset)
    return _recode(fp.getvalue(), EXPLICIT_VR_LITTLE_ENDIAN, transferSyntaxUID, compressionLevel)


def _recode(data, sourceSyntax: str, targetSyntax: str, compressionLevel: int) -> bytes:
    """
    C{data} converted from C{sourceSyntax} to C{targetSyntax}, padded to an
    even length: PDV fragments must have one (DCMTK refuses odd ones), and
    a deflated stream may end on an odd byte (inflating stops at the end of
    the stream, before the padding).
    """
    if sourceSyntax != targetSyntax:
        # Imported here: the converter reads data sets with pydicom's
        # dictionaries, which a storage SCU sending files as they are
        # never needs and should not spend its start-up loading.
        from dicomd.storage.recode import convertDataSet

        data = convertDataSet(data, sourceSyntax, targetSyntax, compressionLevel)
    if len(data) % 2:
        data += b"\x00"
    return data


def _convert(dicomFile: Optional[DicomFile], dataset, transferSyntaxUID: str, compressionLevel: int) -> bytes:
    """
    The data set of C{dicomFile}, or the pydicom C{dataset}, encoded in
    C{transferSyntaxUID}; run in a worker thread.
    """
    if dicomFile is None:
        return encodeDataSet(dataset, transferSyntaxUID, compressionLevel)
    with open(dicomFile.path, "rb") as f:
        f.seek(dicomFile.dataSetOffset)
        data = f.read()
    return _recode(data, dicomFile.transferSyntaxUID, transferSyntaxUID, compressionLevel)


@dataclass(frozen=True)
class StoreResult:
    """
    The outcome of one C-STORE: the response's status and error comment,
    the transfer syntax the data set went in and its size.
    """

    sopInstanceUID: str
    status: int
    errorComment: Optional[str] = None
    transferSyntaxUID: str = ""
    size: int = 0


def chooseContext(association, sopClassUID: str, transferSyntaxUID: str, preferDeflated: bool = False):
    """
    The accepted context to send an object of C{transferSyntaxUID} on: one
    with that very syntax, so that it goes as it is stored; else, for an
    uncompressed object, the one whose syntax is the cheapest to convert it
    to (in the order of L{CONVERTIBLE}).

    @param preferDeflated: look for deflated explicit VR little endian
        first when the object is in a syntax we convert (DCMTK's C{-xd}).
    @raise StoreFailed: neither exists.
    """
    candidates = [transferSyntaxUID]
    if transferSyntaxUID in CONVERTIBLE:
        if preferDeflated:
            candidates.insert(0, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
        candidates.extend(CONVERTIBLE)
    for candidate in candidates:
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
    preferDeflated: bool = False,
    compressionLevel: int = DEFAULT_COMPRESSION_LEVEL,
    reactor=None,
    threadpool=None,
) -> defer.Deferred:
    """
    C-STORE one object.

    @param source: a file path (a Part-10 file), a L{DicomFile}, a
        L{FileDataSet} (opened and perhaps read ahead; closed here if the
        file has to be converted), or a pydicom C{Dataset}.
    @param preferDeflated: send objects in an uncompressed syntax deflated
        when the peer accepted that (DCMTK's C{-xd}).
    @param compressionLevel: zlib's level when deflating.
    @param threadpool: where conversions run; the reactor's by default.
    @return: a L{Deferred} firing with a L{StoreResult}, or failing with
        L{StoreFailed} (nothing was sent) or an
        L{dicomd.errors.AssociationError}.
    """
    opened = source if isinstance(source, FileDataSet) else None
    try:
        if opened is not None:
            source = opened.dicomFile
        elif isinstance(source, (str, os.PathLike)):
            source = readFileMeta(os.fspath(source))
        if isinstance(source, DicomFile):
            dataset, dicomFile = None, source
            sopClass, sopInstance = source.sopClassUID, source.sopInstanceUID
            sourceSyntax = source.transferSyntaxUID
        else:
            dataset, dicomFile = source, None
            sopClass, sopInstance = str(source.SOPClassUID), str(source.SOPInstanceUID)
            sourceSyntax = IMPLICIT_VR_LITTLE_ENDIAN
        context = chooseContext(association, sopClass, sourceSyntax, preferDeflated)
        if dicomFile is not None and context.transferSyntax == sourceSyntax:
            payload, opened = opened or FileDataSet(dicomFile), None
        else:
            payload = None
    except (OSError, NotDICOM, StoreFailed, AttributeError) as e:
        return defer.fail(StoreFailed(str(e)))
    finally:
        if opened is not None:
            opened.close()
    request = CStoreRQ(
        affectedSOPClassUID=sopClass,
        affectedSOPInstanceUID=sopInstance,
        priority=priority,
        moveOriginatorApplicationEntityTitle=moveOriginatorAETitle,
        moveOriginatorMessageID=moveOriginatorMessageID,
    )

    def send(payload):
        size = len(payload) if isinstance(payload, bytes) else payload.length
        sent = association.request(context.contextID, request, payload)
        return sent.addCallback(
            lambda result: StoreResult(sopInstance, result[0].status, result[0].errorComment, context.transferSyntax, size)
        )

    if payload is not None:
        try:
            return send(payload)
        except Exception:
            # A command that cannot be encoded (an over-long UID, say).
            payload.close()
            return defer.fail()
    if reactor is None:
        from twisted.internet import reactor
    if dicomFile is not None:
        log.info(
            "Converting {path} from {source} to {target}",
            path=dicomFile.path,
            source=sourceSyntax,
            target=context.transferSyntax,
        )
    pool = threadpool if threadpool is not None else reactor.getThreadPool()
    converted = deferToThreadPool(
        reactor,
        pool,
        _convert,
        dicomFile,
        dataset,
        context.transferSyntax,
        compressionLevel,
    )
    converted.addErrback(lambda f: defer.fail(StoreFailed("cannot convert to %s: %s" % (context.transferSyntax, f.value))))
    return converted.addCallback(send)


#: Preferred syntaxes proposed without a fallback context, as in DCMTK's
#: storescu: implicit VR little endian (every peer supports it) and the
#: video syntaxes (which cannot be converted to anything).
_NO_FALLBACK = {IMPLICIT_VR_LITTLE_ENDIAN} | {"1.2.840.10008.1.2.4.%d" % n for n in range(100, 109)}


def proposePresentationContexts(
    files: Iterable[DicomFile],
    preferred: Optional[str] = None,
    combine: bool = False,
) -> List[Tuple[str, List[str]]]:
    """
    Presentation contexts for sending C{files}, as DCMTK's storescu builds
    them with C{--required}: for each SOP class found in the files, one
    context with the preferred transfer syntax and one with the other
    uncompressed syntaxes as a fallback (one context with both when
    C{combine}); plus a context for each other compressed syntax the files
    of that class are in, so they can go as they are.

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


def splitProposals(
    proposals: Sequence[Tuple[str, List[str]]], limit: int = 128
) -> List[List[Tuple[str, List[str]]]]:
    """
    Cut proposals into groups of at most C{limit} contexts, keeping all the
    contexts of one SOP class in the same group, for one association each.
    """
    groups: List[List[Tuple[str, List[str]]]] = [[]]
    byClass: Dict[str, List[Tuple[str, List[str]]]] = {}
    for proposal in proposals:
        byClass.setdefault(proposal[0], []).append(proposal)
    for contexts in byClass.values():
        if groups[-1] and len(groups[-1]) + len(contexts) > limit:
            groups.append([])
        groups[-1].extend(contexts)
    return [group for group in groups if group]
