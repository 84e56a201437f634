"""
Reading a data set for re-encoding: its elements parsed into L{Element}s,
with their values as bytes in little endian order, from a Part-10 file
(L{readPart10}) or a bare data set (L{DataSetReader}) in any uncompressed
transfer syntax or around encapsulated pixel data.

Element headers are read with L{dicomd.codec.elements}; what a header does
not say comes from pydicom's data dictionaries (public and private): the
VR of an element read in implicit VR, or received as UN when C{+uc} asks
for its real one.  pydicom's own reader is not used: its reader and
DataElement turn UN into the dictionary VR according to process-wide
settings (C{config.replace_un_with_known_vr},
C{settings.infer_sq_for_un_vr}), which C{-uc} and C{+uc} must not depend
on nor change from worker threads.  Values are kept as bytes, so nothing
is decoded and re-formatted: text, numbers and private data come out as
they went in.
"""

import struct
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from pydicom.datadict import dictionary_VR, private_dictionary_VR
from pydicom.uid import UID

from dicomd.codec.elements import (
    EXPLICIT_LITTLE,
    IMPLICIT_LITTLE,
    ITEM,
    ITEM_DELIMITATION,
    SEQUENCE_DELIMITATION,
    UNCOMPRESSED_ENCODINGS,
    UNDEFINED_LENGTH,
    ElementScanner,
    Encoding,
    swapBytes,
)
from dicomd.codec.vr import VRS, WORD_SIZES

PIXEL_DATA = 0x7FE00010
TRANSFER_SYNTAX_UID = 0x00020010
PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
_BITS_ALLOCATED = 0x00280100
_PIXEL_REPRESENTATION = 0x00280103
_WAVEFORM_BITS_ALLOCATED = 0x003A021A
_WAVEFORM_TAGS = frozenset([0x54001010, 0x5400100A, 0x003A0220, 0x003A0221])

#: The values an ambiguous dictionary VR depends on, remembered per item.
_CONTEXT_TAGS = frozenset([_BITS_ALLOCATED, _PIXEL_REPRESENTATION, _WAVEFORM_BITS_ALLOCATED])


class Element:
    """
    One data element of a parsed data set, with its value in little endian
    byte order whatever the syntax it was read from.

    @ivar tag: the tag, C{group << 16 | element}.
    @ivar vr: its VR (for elements read in implicit VR: from the dictionary,
        C{"UN"} when unknown).
    @ivar value: the value bytes; for a sequence (VR SQ), a list of items,
        each a list of L{Element}; for encapsulated pixel data, the list of
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
class Part10:
    """
    A parsed Part-10 file.

    @ivar preamble: its 128-byte preamble.
    @ivar meta: the File Meta Information elements.
    @ivar transferSyntax: the data set's transfer syntax UID.
    @ivar dataSet: the data set's elements.
    """

    preamble: bytes
    meta: List[Element]
    transferSyntax: str
    dataSet: List[Element]


class ItemContext:
    """
    What reading one data set or item remembers of it: the private creators
    of its blocks and the few values ambiguous dictionary VRs depend on.

    @ivar parent: the context of the data set around this item, or C{None}.
    """

    def __init__(self, parent: Optional["ItemContext"] = None):
        self.parent = parent
        self._creators: Dict[Tuple[int, int], str] = {}
        self._numbers: Dict[int, int] = {}

    def note(self, element: Element) -> None:
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


def _dictionaryVR(tag: int, context: ItemContext) -> Optional[str]:
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


def _resolveVR(tag: int, vr: str, context: ItemContext) -> Optional[str]:
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
    if tag == PIXEL_DATA:
        bitsAllocated = context.number(_BITS_ALLOCATED)
        return "OB" if bitsAllocated is not None and bitsAllocated <= 8 else "OW"
    if tag & 0xFF00FFFF == 0x60003000:
        return "OW"
    if tag in _WAVEFORM_TAGS:
        return "OB" if context.number(_WAVEFORM_BITS_ALLOCATED) == 8 else "OW"
    return "OB"


def readPart10(data: bytes, convertUN: bool) -> Part10:
    """
    Parse a Part-10 file: preamble, File Meta Information (explicit VR
    little endian) and the data set in its transfer syntax (inflated
    first if deflated).

    @param convertUN: C{+uc}: give elements read as UN their dictionary VR.
    @raise ValueError: not a Part-10 file, an unknown transfer syntax, or a
        malformed data set.
    """
    view = memoryview(data)
    if len(data) < PREAMBLE_LENGTH + 4 or bytes(view[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4]) != MAGIC:
        raise ValueError("not a DICOM Part-10 file: no DICM prefix")
    metaReader = DataSetReader(view, EXPLICIT_LITTLE, False)
    meta, offset = metaReader.readElements(PREAMBLE_LENGTH + 4, len(view), ItemContext(), group=0x0002)
    syntax = _metaValue(meta, TRANSFER_SYNTAX_UID)
    if syntax is None:
        raise ValueError("the File Meta Information has no Transfer Syntax UID")
    encoding = _sourceEncoding(syntax)
    body = view[offset:]
    if encoding.deflated:
        body = memoryview(inflate(body))
    reader = DataSetReader(body, encoding, convertUN)
    dataSet, _ = reader.readElements(0, len(body), ItemContext())
    return Part10(bytes(view[:PREAMBLE_LENGTH]), meta, syntax, dataSet)


def _metaValue(meta: List[Element], tag: int) -> Optional[str]:
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
    if uid in UNCOMPRESSED_ENCODINGS:
        return UNCOMPRESSED_ENCODINGS[uid]
    syntax = UID(uid)
    if syntax.is_transfer_syntax and not syntax.is_implicit_VR and syntax.is_little_endian:
        # Encapsulated syntaxes: explicit VR little endian around the
        # fragments.
        return EXPLICIT_LITTLE
    raise ValueError("cannot re-encode a data set in unknown transfer syntax %s" % (uid,))


def inflate(data) -> bytes:
    """
    Inflate a deflated data set (raw deflate, PS3.5 A.5).

    @raise ValueError: the data is not deflated.
    """
    try:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        return inflater.decompress(data) + inflater.flush()
    except zlib.error as e:
        raise ValueError("cannot inflate the deflated data set: %s" % (e,))


class DataSetReader:
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

    def readElements(self, offset: int, end: int, context: ItemContext, group: Optional[int] = None, delimited: bool = False):
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
        stopBefore = (group + 1) << 16 if group is not None else 0x100000000
        scanner = ElementScanner(self.data, self.encoding, offset, end, stopBefore)
        for tag, vr, length, valueOffset, nextOffset in scanner:
            if tag == ITEM_DELIMITATION:
                offset = nextOffset
                break
            if group is not None and tag >> 16 != group:
                break
            element = self.readElement(tag, vr, length, valueOffset, nextOffset, context)
            context.note(element)
            elements.append(element)
            offset = nextOffset
        else:
            if delimited:
                raise ValueError("item of undefined length without Item Delimitation Item")
        elements.sort(key=lambda element: element.tag)
        return elements, offset

    def readElement(self, tag: int, vr: Optional[str], length: int, offset: int, end: int, context: ItemContext) -> Element:
        """
        Read one element whose value starts at C{offset} and which ends at
        C{end}, as L{ElementScanner} found it.
        """
        if vr is None:
            if not self.encoding.implicit:
                raise ValueError("(%04X,%04X) found where a data element was expected" % (tag >> 16, tag & 0xFFFF))
            vr = _dictionaryVR(tag, context) or "UN"
        elif vr not in VRS:
            raise ValueError("(%04X,%04X) has an invalid VR %r" % (tag >> 16, tag & 0xFFFF, vr))
        if length == UNDEFINED_LENGTH:
            return self._readUndefinedLength(tag, vr, offset, end - 8, context)
        value = self.data[offset:end]
        if vr == "SQ":
            return Element(tag, "SQ", self.readItems(offset, end, context))
        if vr == "UN" and self.convertUN:
            return _convertUN(Element(tag, vr, value), context)
        if not self.encoding.littleEndian:
            value = swapBytes(value, WORD_SIZES.get(vr, 1))
        return Element(tag, vr, value)

    def readItems(self, offset: int, end: int, context: ItemContext) -> List[List[Element]]:
        """
        Read the items of a sequence from C{offset} up to C{end} (its
        Sequence Delimitation Item, if it has one).
        """
        items = []
        while offset < end:
            tag, length, offset = self.encoding.readItemHeader(self.data, offset, end)
            if tag == SEQUENCE_DELIMITATION:
                break
            if tag != ITEM:
                raise ValueError("(%04X,%04X) found where a sequence item was expected" % (tag >> 16, tag & 0xFFFF))
            undefined = length == UNDEFINED_LENGTH
            itemEnd = end if undefined else self._checkedEnd(tag, offset, length, end)
            elements, after = self.readElements(offset, itemEnd, ItemContext(context), delimited=undefined)
            items.append(elements)
            offset = after if undefined else itemEnd
        return items

    def readFragments(self, offset: int, end: int) -> List[memoryview]:
        """
        Read the items of encapsulated pixel data from C{offset} up to its
        Sequence Delimitation Item at C{end}.
        """
        fragments = []
        while offset < end:
            tag, length, offset = self.encoding.readItemHeader(self.data, offset, end)
            if tag != ITEM or length == UNDEFINED_LENGTH:
                raise ValueError("malformed encapsulated pixel data")
            fragmentEnd = self._checkedEnd(tag, offset, length, end)
            fragments.append(self.data[offset:fragmentEnd])
            offset = fragmentEnd
        return fragments

    def _readUndefinedLength(self, tag: int, vr: str, offset: int, end: int, context: ItemContext) -> Element:
        """
        Read the value of an element of undefined length, from C{offset} to
        its Sequence Delimitation Item at C{end}: a sequence, encapsulated
        pixel data, or a sequence sent as UN (read in implicit VR little
        endian, PS3.5 6.2.2, and kept as SQ as DCMTK does).
        """
        if vr in ("OB", "OW") or (vr == "UN" and tag == PIXEL_DATA and not self.encoding.implicit):
            return Element(tag, vr, self.readFragments(offset, end), encapsulated=True)
        if vr == "UN" and not self.encoding.implicit:
            reader = DataSetReader(self.data, IMPLICIT_LITTLE, self.convertUN)
            return Element(tag, "SQ", reader.readItems(offset, end, context))
        if vr == "SQ" or self.encoding.implicit:
            return Element(tag, "SQ", self.readItems(offset, end, context))
        raise ValueError("(%04X,%04X) %s has undefined length" % (tag >> 16, tag & 0xFFFF, vr))

    def _checkedEnd(self, tag: int, offset: int, length: int, end: int) -> int:
        if offset + length > end:
            raise ValueError("(%04X,%04X) runs past the end of its data set" % (tag >> 16, tag & 0xFFFF))
        return offset + length


def _convertUN(element: Element, context: ItemContext) -> Element:
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
        reader = DataSetReader(value, IMPLICIT_LITTLE, True)
        try:
            items = reader.readItems(0, len(value), context)
        except (ValueError, struct.error):
            return element
        return Element(element.tag, "SQ", items)
    if len(element.value) % WORD_SIZES.get(vr, 1):
        return element
    return Element(element.tag, vr, element.value)
