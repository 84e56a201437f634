"""
Re-encoding data sets in another uncompressed transfer syntax: stored
files, for storescp's output options that change the bytes of a received
object (C{-F}, C{+t?}, C{+g?}, C{+e}/C{-e}, C{+p}, C{-u}, C{+uc}, C{+cl}),
and the data sets the storage SCU sends in a syntax other than the one
they are stored in (L{convertDataSet}).

dicomd stores data sets bit for bit as received (storescp's C{+B}); only when
one of these options asks for it is a complete file parsed and written
again, in a worker thread, before it is moved to its final name.  The
parsing and writing are our own, with pydicom's dictionaries: pydicom's
writer recomputes no group lengths above group 6, does not swap OW/OF/OD
words between byte orders, and converts UN through process-wide settings
that worker threads must not share.
"""

import contextlib
import os
import stat
import struct
import tempfile
import zlib
from array import array
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from pydicom.datadict import dictionary_VR, private_dictionary_VR
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

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


# -- the encoding rules of PS3.5 we need ---------------------------------------

#: VRs whose explicit VR header has two reserved bytes and a 32-bit length
#: (PS3.5 7.1.2).
LONG_LENGTH_VRS = frozenset("OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())

#: VRs whose explicit VR header has a 16-bit length.
SHORT_LENGTH_VRS = frozenset("AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())

#: The size of the words whose bytes change order between little and big
#: endian (PS3.5 7.3); AT is a pair of 16-bit words.  VRs not listed are
#: byte streams (text, OB, UN).
WORD_SIZES = {
    "AT": 2, "OW": 2, "SS": 2, "US": 2,
    "FL": 4, "OF": 4, "OL": 4, "SL": 4, "UL": 4,
    "FD": 8, "OD": 8, "OV": 8, "SV": 8, "UV": 8,
}  # fmt: skip

#: The VRs that C{-u} writes as OB, as DCMTK's C{dcmDisableGenerationOfNewVRs()}
#: does (C{DcmVR::getValidEVR()}).
POST_1993_VRS = frozenset("OD OF OL OV SV UC UN UR UT UV".split())

#: Text VRs, padded to even length with a space; every other VR is padded
#: with a NUL byte.
_SPACE_PADDED_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UR UT".split())

_ITEM = 0xFFFEE000
_ITEM_DELIMITATION = 0xFFFEE00D
_SEQUENCE_DELIMITATION = 0xFFFEE0DD
_DATA_SET_TRAILING_PADDING = 0xFFFCFFFC
_PIXEL_DATA = 0x7FE00010
_TRANSFER_SYNTAX_UID = 0x00020010
_BITS_ALLOCATED = 0x00280100
_PIXEL_REPRESENTATION = 0x00280103
_WAVEFORM_BITS_ALLOCATED = 0x003A021A
_WAVEFORM_TAGS = frozenset([0x54001010, 0x5400100A, 0x003A0220, 0x003A0221])
_UNDEFINED_LENGTH = 0xFFFFFFFF
_PREAMBLE_LENGTH = 128
_MAGIC = b"DICM"

#: The values an ambiguous dictionary VR depends on, remembered per item.
_CONTEXT_TAGS = frozenset([_BITS_ALLOCATED, _PIXEL_REPRESENTATION, _WAVEFORM_BITS_ALLOCATED])


@dataclass(frozen=True)
class Encoding:
    """
    How a transfer syntax encodes a data set.

    @ivar implicit: implicit VR.
    @ivar littleEndian: little endian byte order.
    @ivar deflated: the data set is deflated (RFC 1951, no zlib header).
    """

    implicit: bool
    littleEndian: bool
    deflated: bool = False


#: The transfer syntaxes whose data sets can be written in one another.
UNCOMPRESSED = {
    ImplicitVRLittleEndian: Encoding(implicit=True, littleEndian=True),
    ExplicitVRLittleEndian: Encoding(implicit=False, littleEndian=True),
    ExplicitVRBigEndian: Encoding(implicit=False, littleEndian=False),
    DeflatedExplicitVRLittleEndian: Encoding(implicit=False, littleEndian=True, deflated=True),
}

#: Encapsulated (compressed) syntaxes: explicit VR little endian around
#: the fragments.
_ENCAPSULATED = Encoding(implicit=False, littleEndian=True)


# -- the callable -----------------------------------------------------------------


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
    stored = _readPart10(data, options.convertUN)
    target = _targetSyntax(stored.transferSyntax, options.transferSyntax)
    chunks = _encodePart10(stored, target, options)
    _replaceFile(path, chunks)


def convertDataSet(data, sourceSyntax: str, targetSyntax: str, compressionLevel: int = 6) -> bytes:
    """
    A data set without File Meta Information, encoded in C{sourceSyntax},
    encoded again in C{targetSyntax}: what a storage SCU sends when the
    peer accepted neither the syntax an object is stored in nor another
    that object could go in as it is.

    Any of the L{UNCOMPRESSED} syntaxes converts to any other: between
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
        if syntax not in UNCOMPRESSED:
            raise ValueError("cannot convert a data set in %s: not an uncompressed transfer syntax" % (_describeSyntax(syntax),))
    source, target = UNCOMPRESSED[sourceSyntax], UNCOMPRESSED[targetSyntax]
    view = memoryview(data)
    if source.deflated:
        view = memoryview(_inflate(view))
    elements, _ = _DataSetReader(view, source, False).readElements(0, len(view), _ItemContext())
    pieces = _DataSetWriter(target, RecodeOptions()).encodeContent(elements).pieces
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
    if received not in UNCOMPRESSED or requested not in UNCOMPRESSED:
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


# -- the parsed form ------------------------------------------------------------------
#
# The data set is parsed and encoded here, on pydicom's data dictionaries
# (public and private) and transfer syntax table, rather than with pydicom's
# reader and writer, because storescp's options need what those do not do:
# pydicom 3 never writes group lengths of groups above 6, does not byte-swap
# OW/OF/OL/OD/OV values between little and big endian, and its reader and
# DataElement turn UN into the dictionary VR according to process-wide
# settings (config.replace_un_with_known_vr, settings.infer_sq_for_un_vr),
# which C{-uc} and C{+uc} must not depend on nor change from worker threads.
# Values are kept as bytes in little endian order, so nothing is decoded and
# re-formatted: text, numbers and private data come out as they went in.


class _Element:
    """
    One data element of a parsed data set, with its value in little endian
    byte order whatever the syntax it was read from.

    @ivar tag: the tag, C{group << 16 | element}.
    @ivar vr: its VR (for elements read in implicit VR: from the dictionary,
        C{"UN"} when unknown).
    @ivar value: the value bytes; for a sequence (VR SQ), a list of items,
        each a list of L{_Element}; for encapsulated pixel data, the list of
        fragments (the Basic Offset Table first).
    @ivar encapsulated: whether C{value} is a list of fragments.
    """

    __slots__ = ("tag", "vr", "value", "encapsulated")

    def __init__(self, tag: int, vr: str, value, encapsulated: bool = False):
        self.tag = tag
        self.vr = vr
        self.value = value
        self.encapsulated = encapsulated

    def __repr__(self) -> str:
        return "<Element (%04X,%04X) %s>" % (self.tag >> 16, self.tag & 0xFFFF, self.vr)


@dataclass
class _Part10:
    """
    A parsed Part-10 file.

    @ivar preamble: its 128-byte preamble.
    @ivar meta: the File Meta Information elements.
    @ivar transferSyntax: the data set's transfer syntax UID.
    @ivar dataSet: the data set's elements.
    """

    preamble: bytes
    meta: List[_Element]
    transferSyntax: str
    dataSet: List[_Element]


class _ItemContext:
    """
    What reading one data set or item remembers of it: the private creators
    of its blocks and the few values ambiguous dictionary VRs depend on.

    @ivar parent: the context of the data set around this item, or C{None}.
    """

    def __init__(self, parent: Optional["_ItemContext"] = None):
        self.parent = parent
        self._creators: Dict[Tuple[int, int], str] = {}
        self._numbers: Dict[int, int] = {}

    def note(self, element: _Element) -> None:
        """
        Remember C{element} if it is a private creator or a value that
        ambiguous VRs depend on.
        """
        group, number = element.tag >> 16, element.tag & 0xFFFF
        if group & 1 and 0x0010 <= number <= 0x00FF and not isinstance(element.value, list):
            creator = bytes(element.value).decode("latin-1").strip(" \0")
            self._creators[(group, number)] = creator
        elif element.tag in _CONTEXT_TAGS and len(element.value) >= 2:
            self._numbers[element.tag] = struct.unpack_from("<H", element.value)[0]

    def creator(self, tag: int) -> Optional[str]:
        """
        The private creator of the block of private tag C{tag}, if this item
        reserved it.
        """
        return self._creators.get((tag >> 16, (tag & 0xFFFF) >> 8))

    def number(self, tag: int) -> Optional[int]:
        """
        The value of C{tag} (a US) in this item or the nearest data set
        around it that has one.
        """
        context = self
        while context is not None:
            if tag in context._numbers:
                return context._numbers[tag]
            context = context.parent
        return None


def _dictionaryVR(tag: int, context: _ItemContext) -> Optional[str]:
    """
    The VR of C{tag} for a data set read in implicit VR (or for C{+uc}):
    UL for group lengths, LO for private creators, the private dictionary
    for private elements whose creator is known, the public dictionary
    otherwise, with ambiguous VRs resolved.

    @return: the VR, or C{None} when no dictionary knows the tag.
    """
    group, number = tag >> 16, tag & 0xFFFF
    if number == 0:
        return "UL"
    try:
        if group & 1:
            if 0x0010 <= number <= 0x00FF:
                return "LO"
            creator = context.creator(tag)
            if creator is None:
                return None
            vr = private_dictionary_VR(tag, creator)
        else:
            vr = dictionary_VR(tag)
    except KeyError:
        return None
    return _resolveVR(tag, vr, context)


def _resolveVR(tag: int, vr: str, context: _ItemContext) -> Optional[str]:
    """
    One VR for a dictionary entry that allows several, following DCMTK's
    C{DcmItem::checkAndUpdateVR()} and C{DcmVR::getValidEVR()}:

      - US or SS: SS when Pixel Representation (of this item or the nearest
        data set around it) is 1, else US;
      - OB or OW: for Pixel Data, OB when Bits Allocated is at most 8, else
        OW (DCMTK always says OW); for Overlay Data, OW; for waveform data,
        OB when Waveform Bits Allocated is 8, else OW; otherwise OB;
      - US or OW, US or SS or OW: OW.

    @return: the VR, or C{None} for entries without a VR (items).
    """
    vr = vr.replace("_", " or ")
    if " or " not in vr:
        return None if vr == "NONE" else vr
    choices = vr.split(" or ")
    if "OW" in choices and "OB" not in choices:
        return "OW"
    if "SS" in choices:
        return "SS" if context.number(_PIXEL_REPRESENTATION) == 1 else "US"
    if tag == _PIXEL_DATA:
        bitsAllocated = context.number(_BITS_ALLOCATED)
        return "OB" if bitsAllocated is not None and bitsAllocated <= 8 else "OW"
    if tag & 0xFF00FFFF == 0x60003000:
        return "OW"
    if tag in _WAVEFORM_TAGS:
        return "OB" if context.number(_WAVEFORM_BITS_ALLOCATED) == 8 else "OW"
    return "OB"


def _swapBytes(value, wordSize: int) -> bytes:
    """
    C{value} with the bytes of each C{wordSize}-byte word reversed (little
    to big endian or back).  Trailing bytes that make no whole word are
    left as they are.
    """
    if wordSize == 1 or len(value) < wordSize:
        return value
    whole = len(value) - len(value) % wordSize
    words = array({2: "H", 4: "I", 8: "Q"}[wordSize])
    words.frombytes(value[:whole])
    words.byteswap()
    return words.tobytes() + bytes(value[whole:])


# -- reading ----------------------------------------------------------------------------


def _readPart10(data: bytes, convertUN: bool) -> _Part10:
    """
    Parse a Part-10 file: preamble, File Meta Information (explicit VR
    little endian) and the data set in its transfer syntax (inflated
    first if deflated).

    @param convertUN: C{+uc}: give elements read as UN their dictionary VR.
    @raise ValueError: not a Part-10 file, an unknown transfer syntax, or a
        malformed data set.
    """
    view = memoryview(data)
    if len(data) < _PREAMBLE_LENGTH + 4 or bytes(view[_PREAMBLE_LENGTH : _PREAMBLE_LENGTH + 4]) != _MAGIC:
        raise ValueError("not a DICOM Part-10 file: no DICM prefix")
    metaReader = _DataSetReader(view, UNCOMPRESSED[ExplicitVRLittleEndian], False)
    meta, offset = metaReader.readElements(_PREAMBLE_LENGTH + 4, len(view), _ItemContext(), group=0x0002)
    syntax = _metaValue(meta, _TRANSFER_SYNTAX_UID)
    if syntax is None:
        raise ValueError("the File Meta Information has no Transfer Syntax UID")
    encoding = _sourceEncoding(syntax)
    body = view[offset:]
    if encoding.deflated:
        body = memoryview(_inflate(body))
    reader = _DataSetReader(body, encoding, convertUN)
    dataSet, _ = reader.readElements(0, len(body), _ItemContext())
    return _Part10(bytes(view[:_PREAMBLE_LENGTH]), meta, syntax, dataSet)


def _metaValue(meta: List[_Element], tag: int) -> Optional[str]:
    """
    The value of a UI or text element of the File Meta Information, without
    padding, or C{None} if absent.
    """
    for element in meta:
        if element.tag == tag:
            return bytes(element.value).decode("ascii", "replace").strip(" \0")
    return None


def _sourceEncoding(uid: str) -> Encoding:
    """
    How a data set in transfer syntax C{uid} is encoded.

    @raise ValueError: C{uid} is no transfer syntax pydicom knows.
    """
    if uid in UNCOMPRESSED:
        return UNCOMPRESSED[uid]
    syntax = UID(uid)
    if syntax.is_transfer_syntax and not syntax.is_implicit_VR and syntax.is_little_endian:
        return _ENCAPSULATED
    raise ValueError("cannot re-encode a data set in unknown transfer syntax %s" % (uid,))


def _inflate(data) -> bytes:
    """
    Inflate a deflated data set (raw _deflate, PS3.5 A.5).

    @raise ValueError: the data is not deflated.
    """
    try:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        return inflater.decompress(data) + inflater.flush()
    except zlib.error as e:
        raise ValueError("cannot _inflate the deflated data set: %s" % (e,))


class _DataSetReader:
    """
    Reads the elements of a data set, its sequences and encapsulated pixel
    data from bytes in one encoding, keeping values as bytes.

    @ivar data: what is read.
    @ivar encoding: the L{Encoding} of C{data}.
    @ivar convertUN: C{+uc}.
    """

    def __init__(self, data: memoryview, encoding: Encoding, convertUN: bool):
        self.data = data
        self.encoding = encoding
        self.convertUN = convertUN
        order = "<" if encoding.littleEndian else ">"
        self._tag = struct.Struct(order + "HH")
        self._tagAndLength = struct.Struct(order + "HHL")
        self._explicitHeader = struct.Struct(order + "HH2sH")
        self._length = struct.Struct(order + "L")

    def readElements(
        self, offset: int, end: int, context: _ItemContext, group: Optional[int] = None, delimited: bool = False
    ):
        """
        Read elements from C{offset} up to C{end}, or up to an Item
        Delimitation Item (which is consumed).

        @param group: stop before the first element of another group (for the
            File Meta Information).
        @param delimited: an item of undefined length: its Item Delimitation
            Item must come before C{end}.
        @return: C{(elements sorted by tag, offset after them)}.
        """
        elements = []
        while True:
            if offset >= end:
                if delimited:
                    raise ValueError("item of undefined length without Item Delimitation Item")
                break
            tag = self._peekTag(offset, end)
            if tag == _ITEM_DELIMITATION:
                offset += 8
                break
            if group is not None and tag >> 16 != group:
                break
            element, offset = self.readElement(offset, end, context)
            context.note(element)
            elements.append(element)
        elements.sort(key=lambda element: element.tag)
        return elements, offset

    def readElement(self, offset: int, end: int, context: _ItemContext):
        """
        Read one element at C{offset}.

        @return: C{(_Element, offset after it)}.
        """
        tag, vr, length, offset = self._readHeader(offset, end)
        if vr is None:
            vr = _dictionaryVR(tag, context) or "UN"
        if length == _UNDEFINED_LENGTH:
            return self._readUndefinedLength(tag, vr, offset, end, context)
        valueEnd = self._checkedEnd(tag, offset, length, end)
        value = self.data[offset:valueEnd]
        if vr == "SQ":
            items, _ = self.readItems(offset, valueEnd, context)
            return _Element(tag, "SQ", items), valueEnd
        if vr == "UN" and self.convertUN:
            return _convertUN(_Element(tag, vr, value), context), valueEnd
        if not self.encoding.littleEndian:
            value = _swapBytes(value, WORD_SIZES.get(vr, 1))
        return _Element(tag, vr, value), valueEnd

    def readItems(self, offset: int, end: int, context: _ItemContext, delimited: bool = False):
        """
        Read the items of a sequence from C{offset} up to C{end}, or up to a
        Sequence Delimitation Item (which is consumed).

        @param delimited: a sequence of undefined length: its Sequence
            Delimitation Item must come before C{end}.
        @return: C{(list of items, offset after them)}.
        """
        items = []
        while True:
            if offset >= end:
                if delimited:
                    raise ValueError("sequence of undefined length without Sequence Delimitation Item")
                break
            tag, length, offset = self._readItemHeader(offset, end)
            if tag == _SEQUENCE_DELIMITATION:
                break
            if tag != _ITEM:
                raise ValueError("(%04X,%04X) found where a sequence item was expected" % (tag >> 16, tag & 0xFFFF))
            undefined = length == _UNDEFINED_LENGTH
            itemEnd = end if undefined else self._checkedEnd(tag, offset, length, end)
            elements, after = self.readElements(offset, itemEnd, _ItemContext(context), delimited=undefined)
            items.append(elements)
            offset = after if undefined else itemEnd
        return items, offset

    def readFragments(self, offset: int, end: int):
        """
        Read the items of encapsulated pixel data up to its Sequence
        Delimitation Item.

        @return: C{(list of fragments, offset after the delimiter)}.
        """
        fragments = []
        while True:
            tag, length, offset = self._readItemHeader(offset, end)
            if tag == _SEQUENCE_DELIMITATION:
                return fragments, offset
            if tag != _ITEM or length == _UNDEFINED_LENGTH:
                raise ValueError("malformed encapsulated pixel data")
            fragmentEnd = self._checkedEnd(tag, offset, length, end)
            fragments.append(self.data[offset:fragmentEnd])
            offset = fragmentEnd

    def _readUndefinedLength(self, tag: int, vr: str, offset: int, end: int, context: _ItemContext):
        """
        Read the value of an element of undefined length: a sequence,
        encapsulated pixel data, or a sequence sent as UN (read in implicit
        VR little endian, PS3.5 6.2.2, and kept as SQ as DCMTK does).
        """
        if vr in ("OB", "OW") or (vr == "UN" and tag == _PIXEL_DATA and not self.encoding.implicit):
            fragments, offset = self.readFragments(offset, end)
            return _Element(tag, vr, fragments, encapsulated=True), offset
        if vr == "UN" and not self.encoding.implicit:
            reader = _DataSetReader(self.data, UNCOMPRESSED[ImplicitVRLittleEndian], self.convertUN)
            items, offset = reader.readItems(offset, end, context, delimited=True)
            return _Element(tag, "SQ", items), offset
        if vr == "SQ" or self.encoding.implicit:
            items, offset = self.readItems(offset, end, context, delimited=True)
            return _Element(tag, "SQ", items), offset
        raise ValueError("(%04X,%04X) %s has undefined length" % (tag >> 16, tag & 0xFFFF, vr))

    def _peekTag(self, offset: int, end: int) -> int:
        if offset + 4 > end:
            raise ValueError("data set truncated at offset %d" % (offset,))
        group, number = self._tag.unpack_from(self.data, offset)
        return group << 16 | number

    def _readHeader(self, offset: int, end: int):
        """
        Read an element's tag, VR (C{None} in implicit VR) and length.

        @return: C{(tag, vr, length, offset of the value)}.
        """
        if offset + 8 > end:
            raise ValueError("data set truncated at offset %d" % (offset,))
        if self.encoding.implicit:
            group, number, length = self._tagAndLength.unpack_from(self.data, offset)
            return group << 16 | number, None, length, offset + 8
        group, number, rawVR, length = self._explicitHeader.unpack_from(self.data, offset)
        vr = rawVR.decode("latin-1")
        if vr in LONG_LENGTH_VRS:
            if offset + 12 > end:
                raise ValueError("data set truncated at offset %d" % (offset,))
            return group << 16 | number, vr, self._length.unpack_from(self.data, offset + 8)[0], offset + 12
        if vr in SHORT_LENGTH_VRS:
            return group << 16 | number, vr, length, offset + 8
        raise ValueError("(%04X,%04X) has an invalid VR %r" % (group, number, rawVR))

    def _readItemHeader(self, offset: int, end: int):
        """
        Read an item's or delimiter's tag and 32-bit length.

        @return: C{(tag, length, offset after the header)}.
        """
        if offset + 8 > end:
            raise ValueError("sequence truncated at offset %d" % (offset,))
        group, number, length = self._tagAndLength.unpack_from(self.data, offset)
        return group << 16 | number, length, offset + 8

    def _checkedEnd(self, tag: int, offset: int, length: int, end: int) -> int:
        if offset + length > end:
            raise ValueError("(%04X,%04X) runs past the end of its data set" % (tag >> 16, tag & 0xFFFF))
        return offset + length


def _convertUN(element: _Element, context: _ItemContext) -> _Element:
    """
    C{+uc}: an element read as UN (with a defined length), with the VR its
    dictionary gives it, as DCMTK's C{dcmEnableUnknownVRConversion} does.
    UN values are in implicit VR little endian (what DCMTK reads them as),
    so a sequence is parsed in that syntax.

    @return: the element with its dictionary VR, or C{element} unchanged
        when no dictionary knows the tag, or the value does not fit the
        VR (a sequence that does not parse, a length that is no multiple of
        the VR's word size).
    """
    vr = _dictionaryVR(element.tag, context)
    if vr is None or vr == "UN":
        return element
    if vr == "SQ":
        value = element.value
        reader = _DataSetReader(value, UNCOMPRESSED[ImplicitVRLittleEndian], True)
        try:
            items, _ = reader.readItems(0, len(value), context)
        except (ValueError, struct.error):
            return element
        return _Element(element.tag, "SQ", items)
    if len(element.value) % WORD_SIZES.get(vr, 1):
        return element
    return _Element(element.tag, vr, element.value)


# -- writing ----------------------------------------------------------------------------


class _Chunks:
    """
    Encoded bytes as a list of pieces (slices of the file read are not
    copied) and their total length.
    """

    def __init__(self):
        self.pieces: List[bytes] = []
        self.length = 0

    def add(self, piece) -> None:
        """
        Append bytes.
        """
        self.pieces.append(piece)
        self.length += len(piece)

    def extend(self, other: "_Chunks") -> None:
        """
        Append other chunks.
        """
        self.pieces.extend(other.pieces)
        self.length += other.length


class _DataSetWriter:
    """
    Encodes parsed elements in one encoding with storescp's output options:
    group lengths (C{+g=}, C{+g}, C{-g}), sequence and item lengths
    (C{+e}, C{-e}), item padding and data set trailing padding (C{+p}),
    and post-1993 VRs (C{-u}).

    @ivar encoding: the L{Encoding} written (deflation is left to the
        caller).
    @ivar options: the L{RecodeOptions}.
    """

    def __init__(self, encoding: Encoding, options: RecodeOptions):
        self.encoding = encoding
        self.options = options
        order = "<" if encoding.littleEndian else ">"
        self._tagAndLength = struct.Struct(order + "HHL")
        self._explicitShort = struct.Struct(order + "HH2sH")
        self._explicitLong = struct.Struct(order + "HH2sHL")
        self._uint32 = struct.Struct(order + "L")

    def encodeDataSet(self, elements: List[_Element], instanceLength: int) -> _Chunks:
        """
        Encode a data set, with Data Set Trailing Padding when C{+p f}
        asks for it.

        @param instanceLength: the bytes of the file before the data set
            (preamble, prefix and File Meta Information; 0 with C{-F}).
        """
        chunks = self.encodeContent(elements)
        if self.options.padding is not None:
            chunks.extend(self.padding(instanceLength + chunks.length, self.options.padding[0]))
        return chunks

    def encodeContent(self, elements: List[_Element]) -> _Chunks:
        """
        Encode the elements of a data set or item, without its padding:
        existing group lengths and Data Set Trailing Padding are dropped, and
        group lengths written again where C{+g=} or C{+g} asks.
        """
        groups: Dict[int, _Chunks] = {}
        hadGroupLength = set()
        for element in elements:
            group = element.tag >> 16
            encoded = groups.setdefault(group, _Chunks())
            if element.tag & 0xFFFF == 0:
                hadGroupLength.add(group)
            elif element.tag != _DATA_SET_TRAILING_PADDING:
                encoded.extend(self.encodeElement(element))
        chunks = _Chunks()
        for group, encoded in groups.items():
            if self.wantsGroupLength(group, group in hadGroupLength, encoded):
                chunks.add(self.groupLength(group, encoded.length))
            chunks.extend(encoded)
        return chunks

    def wantsGroupLength(self, group: int, present: bool, encoded: _Chunks) -> bool:
        """
        Whether to write a group length element for C{group}: with C{+g=}
        where one was present, with C{+g} for every group that has elements
        (not for the Data Set Trailing Padding, which DCMTK adds after the
        group lengths), never with C{-g}.
        """
        mode = self.options.groupLength
        if mode == GROUP_LENGTH_RECALCULATE:
            return present
        if mode == GROUP_LENGTH_CREATE:
            return encoded.length > 0
        return False

    def groupLength(self, group: int, length: int) -> bytes:
        """
        A group length element (gggg,0000) UL of value C{length}.
        """
        return self.header(group << 16, "UL", 4) + self._uint32.pack(length)

    def padding(self, length: int, multiple: int) -> _Chunks:
        """
        The Data Set Trailing Padding (FFFC,FFFC) OB that makes C{length}
        bytes a multiple of C{multiple} bytes, as DCMTK's
        C{DcmItem::computeGroupLengthAndPadding()} computes it: nothing if
        C{length} already is one (or C{multiple} is 0); otherwise the element
        fills the gap, one more C{multiple} when the gap is shorter than
        its header.
        """
        chunks = _Chunks()
        if not multiple or not length % multiple:
            return chunks
        size = multiple - length % multiple
        headerLength = len(self.header(_DATA_SET_TRAILING_PADDING, "OB", 0))
        while size < headerLength:
            size += multiple
        chunks.add(self.header(_DATA_SET_TRAILING_PADDING, "OB", size - headerLength))
        chunks.add(bytes(size - headerLength))
        return chunks

    def encodeElement(self, element: _Element) -> _Chunks:
        """
        Encode one element: a sequence, encapsulated pixel data or a value.
        """
        if element.vr == "SQ":
            return self.encodeSequence(element)
        if element.encapsulated:
            return self.encodeFragments(element)
        return self.encodeValue(element)

    def encodeValue(self, element: _Element) -> _Chunks:
        """
        Encode an element with a value: padded to even length, written under
        the VR C{-u} and the 16-bit length limit allow, and in big endian
        unless that VR is OB or UN (whose content DCMTK always writes in
        little endian).
        """
        value = element.value
        if len(value) % 2:
            value = bytes(value) + (b" " if element.vr in _SPACE_PADDED_VRS else b"\0")
        vr = self.writtenVR(element.vr, len(value))
        if not self.encoding.littleEndian and vr not in ("OB", "UN"):
            value = _swapBytes(value, WORD_SIZES.get(element.vr, 1))
        chunks = _Chunks()
        chunks.add(self.header(element.tag, vr, len(value)))
        chunks.add(value)
        return chunks

    def writtenVR(self, vr: str, length: int) -> str:
        """
        The VR written in explicit VR for an element of VR C{vr} and value
        length C{length}: OB for post-1993 VRs with C{-u}; UN (OB with
        C{-u}) when the value is too long for a 16-bit length field, as
        DCMTK's C{DcmObject::writeTagAndLength()} does.
        """
        if not self.options.newVRs and vr in POST_1993_VRS:
            return "OB"
        if vr not in LONG_LENGTH_VRS and length > 0xFFFF:
            return "UN" if self.options.newVRs else "OB"
        return vr

    def encodeSequence(self, element: _Element) -> _Chunks:
        """
        Encode a sequence and its items, with explicit lengths (C{+e}) or
        undefined lengths and delimiters (C{-e}); each item padded when
        C{+p f i} asks.
        """
        body = _Chunks()
        for item in element.value:
            body.extend(self.encodeItem(item))
        chunks = _Chunks()
        if self.options.undefinedLengths:
            chunks.add(self.header(element.tag, "SQ", _UNDEFINED_LENGTH))
            chunks.extend(body)
            chunks.add(self._tagAndLength.pack(0xFFFE, 0xE0DD, 0))
        else:
            chunks.add(self.header(element.tag, "SQ", body.length))
            chunks.extend(body)
        return chunks

    def encodeItem(self, elements: List[_Element]) -> _Chunks:
        """
        Encode one sequence item, padded to a multiple of C{+p}'s item
        padding.
        """
        content = self.encodeContent(elements)
        if self.options.padding is not None:
            content.extend(self.padding(content.length, self.options.padding[1]))
        chunks = _Chunks()
        if self.options.undefinedLengths:
            chunks.add(self._tagAndLength.pack(0xFFFE, 0xE000, _UNDEFINED_LENGTH))
            chunks.extend(content)
            chunks.add(self._tagAndLength.pack(0xFFFE, 0xE00D, 0))
        else:
            chunks.add(self._tagAndLength.pack(0xFFFE, 0xE000, content.length))
            chunks.extend(content)
        return chunks

    def encodeFragments(self, element: _Element) -> _Chunks:
        """
        Encode encapsulated pixel data: always undefined length, one item
        per fragment, and a Sequence Delimitation Item.
        """
        chunks = _Chunks()
        chunks.add(self.header(element.tag, element.vr, _UNDEFINED_LENGTH))
        for fragment in element.value:
            chunks.add(self._tagAndLength.pack(0xFFFE, 0xE000, len(fragment)))
            chunks.add(fragment)
        chunks.add(self._tagAndLength.pack(0xFFFE, 0xE0DD, 0))
        return chunks

    def header(self, tag: int, vr: str, length: int) -> bytes:
        """
        An element's tag, VR (in explicit VR) and length.
        """
        group, number = tag >> 16, tag & 0xFFFF
        if self.encoding.implicit:
            return self._tagAndLength.pack(group, number, length)
        if vr in LONG_LENGTH_VRS:
            return self._explicitLong.pack(group, number, vr.encode("ascii"), 0, length)
        return self._explicitShort.pack(group, number, vr.encode("ascii"), length)


def _encodePart10(stored: _Part10, syntax: str, options: RecodeOptions) -> List[bytes]:
    """
    Encode a parsed file in transfer syntax C{syntax}: preamble, prefix and
    File Meta Information (unless C{-F}), then the data set, deflated at
    C{+cl}'s level for the deflated syntax.

    @return: the file's bytes, in pieces.
    """
    encoding = UNCOMPRESSED.get(syntax, _ENCAPSULATED)
    head = b"" if options.writeDataSetOnly else stored.preamble + _MAGIC + _encodeFileMeta(stored.meta, syntax, options)
    dataSet = _DataSetWriter(encoding, options).encodeDataSet(stored.dataSet, len(head))
    pieces = dataSet.pieces
    if encoding.deflated:
        pieces = _deflate(pieces, options.compressionLevel)
    return [head] + pieces


def _encodeFileMeta(meta: List[_Element], syntax: str, options: RecodeOptions) -> bytes:
    """
    Encode the File Meta Information (explicit VR little endian) with
    C{syntax} as its Transfer Syntax UID and its group length recomputed;
    its other elements are kept.
    """
    uid = syntax.encode("ascii")
    elements = [element for element in meta if element.tag != _TRANSFER_SYNTAX_UID]
    elements.append(_Element(_TRANSFER_SYNTAX_UID, "UI", uid))
    elements.sort(key=lambda element: element.tag)
    metaOptions = RecodeOptions(groupLength=GROUP_LENGTH_CREATE, newVRs=options.newVRs)
    chunks = _DataSetWriter(UNCOMPRESSED[ExplicitVRLittleEndian], metaOptions).encodeContent(elements)
    return b"".join(chunks.pieces)


def _deflate(pieces: List[bytes], level: int) -> List[bytes]:
    """
    Deflate a data set (raw _deflate, PS3.5 A.5) at zlib level C{level}.
    """
    deflater = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    compressed = [deflater.compress(piece) for piece in pieces]
    compressed.append(deflater.flush())
    return compressed
