"""
Re-encoding data sets in another uncompressed transfer syntax: stored
files, for storescp's output options that change the bytes of a received
object (C{-F}, C{+t?}, C{+g?}, C{+e}/C{-e}, C{+p}, C{-u}, C{+uc}, C{+cl}),
and the data sets the storage SCU sends in a syntax other than the one
they are stored in (L{convertDataSet}).

dicomd stores data sets bit for bit as received (storescp's C{+B}); only when
one of these options asks for it is a complete file parsed and written
again, in a worker thread, before it is moved to its final name.  This
module owns the policy: the options, which transfer syntax a data set may
be written in, deflating, and replacing the file.  The reading is
L{dicomd.storage.datasetreader}'s and the writing
L{dicomd.storage.datasetwriter}'s.
"""

import contextlib
import os
import stat
import tempfile
import zlib
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from pydicom.uid import UID

from dicomd.codec.elements import EXPLICIT_LITTLE, UNCOMPRESSED_ENCODINGS
from dicomd.storage.datasetreader import MAGIC, TRANSFER_SYNTAX_UID, DataSetReader, Element, ItemContext, Part10, inflate, readPart10
from dicomd.storage.datasetwriter import DataSetWriter

GROUP_LENGTH_RECALCULATE = "+g="
GROUP_LENGTH_CREATE = "+g"
GROUP_LENGTH_REMOVE = "-g"


@dataclass(frozen=True)
class RecodeOptions:
    """
    How to rewrite a stored file.

    @ivar writeDataSetOnly: C{-F}: no preamble or File Meta Information.
    @ivar transferSyntax: C{+te}, C{+tb}, C{+ti}, C{+td}: the syntax to
        write, or C{None} for the received one (C{+t=}).
    @ivar groupLength: C{+g=}, C{+g} or C{-g}.
    @ivar undefinedLengths: C{-e}: sequences and items with undefined length.
    @ivar padding: C{+p f i}: align the file on f bytes and items on i
        bytes, or C{None} (C{-p}).
    @ivar newVRs: C{+u} (default); C{-u} writes UN/UT and the other post-1993
        VRs as OB.
    @ivar convertUN: C{+uc}: give elements received as UN their VR from the
        dictionary.
    @ivar compressionLevel: C{+cl}: zlib level for deflated syntaxes.
    """

    writeDataSetOnly: bool = False
    transferSyntax: Optional[str] = None
    groupLength: str = GROUP_LENGTH_RECALCULATE
    undefinedLengths: bool = False
    padding: Optional[Tuple[int, int]] = None
    newVRs: bool = True
    convertUN: bool = False
    compressionLevel: int = 6

    @property
    def isIdentity(self) -> bool:
        """
        Whether these options leave a received file as it is.
        """
        return self == RecodeOptions(compressionLevel=self.compressionLevel)

    def writesGroupLength(self, present: bool, hasElements: bool) -> bool:
        """
        Whether to write a group length element for a group: with C{+g=}
        where one was present, with C{+g} for every group that has elements
        (not for the Data Set Trailing Padding, which DCMTK adds after the
        group lengths), never with C{-g}.

        @param present: the group had a group length when it was read.
        @param hasElements: the group has elements other than its length.
        """
        if self.groupLength == GROUP_LENGTH_RECALCULATE:
            return present
        if self.groupLength == GROUP_LENGTH_CREATE:
            return hasElements
        return False


def recoder(options: RecodeOptions) -> Callable[[str], None]:
    """
    The function that rewrites a complete Part-10 file in place as
    storescp's output options C{options} ask.

    @return: C{recode(path)}, safe to call from several threads at once;
        it raises L{ValueError} when the file cannot be written as asked
        (a compressed data set and another transfer syntax, a malformed
        data set), and leaves the file as it was on any error.
    @raise ValueError: C{options} are impossible (odd padding).
    """
    checkOptions(options)

    def recode(path: str) -> None:
        recodeFile(path, options)

    return recode


def checkOptions(options: RecodeOptions) -> None:
    """
    Refuse options that could not write any file: padding on an odd number
    of bytes (DCMTK accepts it on the command line, then fails every write
    with C{EC_IllegalCall}) and a compression level outside 0 to 9.

    @raise ValueError: the options cannot be applied; the message names
        the option.
    """
    if options.padding is not None:
        for length in options.padding:
            if length % 2:
                raise ValueError("+p: padding lengths must be even, not %d" % (length,))
    if not 0 <= options.compressionLevel <= 9:
        raise ValueError("+cl: compression level must be 0 to 9, not %d" % (options.compressionLevel,))


def recodeFile(path: str, options: RecodeOptions) -> None:
    """
    Rewrite the Part-10 file at C{path} as C{options} ask: read it, encode
    it anew in a temporary file beside it, and move that over it.

    @raise ValueError: the file cannot be written as asked; it is left as
        it was.
    """
    with open(path, "rb") as f:
        data = f.read()
    stored = readPart10(data, options.convertUN)
    target = _targetSyntax(stored.transferSyntax, options.transferSyntax)
    chunks = _encodePart10(stored, target, options)
    _replaceFile(path, chunks)


def convertDataSet(data, sourceSyntax: str, targetSyntax: str, compressionLevel: int = 6) -> bytes:
    """
    A data set without File Meta Information, encoded in C{sourceSyntax},
    encoded again in C{targetSyntax}: what a storage SCU sends when the
    peer accepted neither the syntax an object is stored in nor another
    that object could go in as it is.

    Any of the L{UNCOMPRESSED_ENCODINGS} syntaxes converts to any other: between
    little and big endian every value is swapped by the size of its VR's
    words (L{WORD_SIZES}: OW pixel data, US, SS, UL, SL, FL, FD, AT, OF,
    OD, OL, OV, SV, UV), in sequence items at any depth too; text, OB and
    UN bytes stay as they are.  Group lengths present are recomputed and
    sequences and items get explicit lengths, as DCMTK writes them by
    default.

    @param data: the encoded data set (bytes or a memoryview); deflated
        for the deflated syntax.
    @param compressionLevel: zlib's level when C{targetSyntax} is deflated.
    @raise ValueError: a syntax is not uncompressed, or the data set is
        malformed.
    """
    for syntax in (sourceSyntax, targetSyntax):
        if syntax not in UNCOMPRESSED_ENCODINGS:
            raise ValueError("cannot convert a data set in %s: not an uncompressed transfer syntax" % (_describeSyntax(syntax),))
    source, target = UNCOMPRESSED_ENCODINGS[sourceSyntax], UNCOMPRESSED_ENCODINGS[targetSyntax]
    view = memoryview(data)
    if source.deflated:
        view = memoryview(inflate(view))
    elements, _ = DataSetReader(view, source, False).readElements(0, len(view), ItemContext())
    pieces = DataSetWriter(target, RecodeOptions()).encodeContent(elements).pieces
    if target.deflated:
        pieces = _deflate(pieces, compressionLevel)
    return b"".join(pieces)


def _targetSyntax(received: str, requested: Optional[str]) -> str:
    """
    The transfer syntax to write a data set received in C{received} with.

    @param requested: the syntax C{+t?} asks for, or C{None} for C{+t=}.
    @raise ValueError: C{requested} differs from C{received} and one of them
        is not an uncompressed syntax: storescp refuses C{+t?} "with
        compressed transmission", and we do not decompress.
    """
    if requested is None or requested == received:
        return received
    if received not in UNCOMPRESSED_ENCODINGS or requested not in UNCOMPRESSED_ENCODINGS:
        raise ValueError(
            "cannot convert a data set from %s to %s: only uncompressed transfer syntaxes "
            "(implicit/explicit VR little endian, explicit VR big endian, deflated) can be "
            "converted, storescp refuses +t? with compressed transmission"
            % (_describeSyntax(received), _describeSyntax(requested))
        )
    return requested


def _describeSyntax(uid: str) -> str:
    """
    A transfer syntax's name and UID, for messages.
    """
    name = UID(uid).name
    return uid if name == uid else "%s (%s)" % (name, uid)


def _replaceFile(path: str, chunks: List[bytes]) -> None:
    """
    Write C{chunks} to a temporary file beside C{path}, with C{path}'s
    permissions, and move it over C{path}.

    On any error the temporary file is removed and the error raised;
    C{path} is then untouched.
    """
    directory, name = os.path.split(path)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    descriptor, temporary = tempfile.mkstemp(prefix="." + name + ".", suffix=".recode", dir=directory or ".")
    try:
        with os.fdopen(descriptor, "wb") as f:
            os.fchmod(f.fileno(), mode)
            for chunk in chunks:
                f.write(chunk)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _encodePart10(stored: Part10, syntax: str, options: RecodeOptions) -> List[bytes]:
    """
    Encode a parsed file in transfer syntax C{syntax}: preamble, prefix and
    File Meta Information (unless C{-F}), then the data set, deflated at
    C{+cl}'s level for the deflated syntax.

    @return: the file's bytes, in pieces.
    """
    # Encapsulated syntaxes: explicit VR little endian around the fragments.
    encoding = UNCOMPRESSED_ENCODINGS.get(syntax, EXPLICIT_LITTLE)
    head = b"" if options.writeDataSetOnly else stored.preamble + MAGIC + _encodeFileMeta(stored.meta, syntax, options)
    dataSet = DataSetWriter(encoding, options).encodeDataSet(stored.dataSet, len(head))
    pieces = dataSet.pieces
    if encoding.deflated:
        pieces = _deflate(pieces, options.compressionLevel)
    return [head] + pieces


def _encodeFileMeta(meta: List[Element], syntax: str, options: RecodeOptions) -> bytes:
    """
    Encode the File Meta Information (explicit VR little endian) with
    C{syntax} as its Transfer Syntax UID and its group length recomputed;
    its other elements are kept.
    """
    uid = syntax.encode("ascii")
    elements = [element for element in meta if element.tag != TRANSFER_SYNTAX_UID]
    elements.append(Element(TRANSFER_SYNTAX_UID, "UI", uid))
    elements.sort(key=lambda element: element.tag)
    metaOptions = RecodeOptions(groupLength=GROUP_LENGTH_CREATE, newVRs=options.newVRs)
    chunks = DataSetWriter(EXPLICIT_LITTLE, metaOptions).encodeContent(elements)
    return b"".join(chunks.pieces)


def _deflate(pieces: List[bytes], level: int) -> List[bytes]:
    """
    Deflate a data set (raw deflate, PS3.5 A.5) at zlib level C{level}.
    """
    deflater = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    compressed = [deflater.compress(piece) for piece in pieces]
    compressed.append(deflater.flush())
    return compressed
