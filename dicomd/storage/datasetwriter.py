"""
Writing a parsed data set (L{dicomd.storage.datasetreader.Element}s) in one
encoding, with storescp's output options: group lengths (C{+g=}, C{+g},
C{-g}), sequence and item lengths (C{+e}, C{-e}), item padding and data
set trailing padding (C{+p}), and post-1993 VRs (C{-u}).

Headers are written with L{dicomd.codec.elements}.  pydicom's writer is not
used: it writes no group lengths above group 6, and does not swap OW, OF,
OL, OD or OV words between little and big endian.
"""

import struct
from typing import Dict, List

from dicomd.codec.elements import ITEM, ITEM_DELIMITATION, SEQUENCE_DELIMITATION, UNDEFINED_LENGTH, Encoding, swapBytes
from dicomd.codec.vr import LONG_LENGTH_VRS, POST_1993_VRS, WORD_SIZES, pad
from dicomd.storage.datasetreader import Element

#: (FFFC,FFFC), the Data Set Trailing Padding of PS3.10 7.2.
DATA_SET_TRAILING_PADDING = 0xFFFCFFFC


class Chunks:
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

    def extend(self, other: "Chunks") -> None:
        """
        Append other chunks.
        """
        self.pieces.extend(other.pieces)
        self.length += other.length


class DataSetWriter:
    """
    Encodes parsed elements in one encoding with storescp's output options:
    group lengths (C{+g=}, C{+g}, C{-g}), sequence and item lengths
    (C{+e}, C{-e}), item padding and data set trailing padding (C{+p}),
    and post-1993 VRs (C{-u}).

    @ivar encoding: the L{Encoding} written (deflation is left to the
        caller).
    @ivar options: the L{dicomd.storage.recode.RecodeOptions} to write
        with; they say which group lengths are written.
    """

    def __init__(self, encoding: Encoding, options):
        self.encoding = encoding
        self.options = options
        self._uint32 = struct.Struct(("<" if encoding.littleEndian else ">") + "L")

    def encodeDataSet(self, elements: List[Element], instanceLength: int) -> Chunks:
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

    def encodeContent(self, elements: List[Element]) -> Chunks:
        """
        Encode the elements of a data set or item, without its padding:
        existing group lengths and Data Set Trailing Padding are dropped, and
        group lengths written again where C{+g=} or C{+g} asks.
        """
        groups: Dict[int, Chunks] = {}
        hadGroupLength = set()
        for element in elements:
            group = element.tag >> 16
            encoded = groups.setdefault(group, Chunks())
            if element.tag & 0xFFFF == 0:
                hadGroupLength.add(group)
            elif element.tag != DATA_SET_TRAILING_PADDING:
                encoded.extend(self.encodeElement(element))
        chunks = Chunks()
        for group, encoded in groups.items():
            if self.options.writesGroupLength(group in hadGroupLength, encoded.length > 0):
                chunks.add(self.groupLength(group, encoded.length))
            chunks.extend(encoded)
        return chunks

    def groupLength(self, group: int, length: int) -> bytes:
        """
        A group length element (gggg,0000) UL of value C{length}.
        """
        return self.encoding.header(group << 16, "UL", 4) + self._uint32.pack(length)

    def padding(self, length: int, multiple: int) -> Chunks:
        """
        The Data Set Trailing Padding (FFFC,FFFC) OB that makes C{length}
        bytes a multiple of C{multiple} bytes, as DCMTK's
        C{DcmItem::computeGroupLengthAndPadding()} computes it: nothing if
        C{length} already is one (or C{multiple} is 0); otherwise the element
        fills the gap, one more C{multiple} when the gap is shorter than
        its header.
        """
        chunks = Chunks()
        if not multiple or not length % multiple:
            return chunks
        size = multiple - length % multiple
        headerLength = len(self.encoding.header(DATA_SET_TRAILING_PADDING, "OB", 0))
        while size < headerLength:
            size += multiple
        chunks.add(self.encoding.header(DATA_SET_TRAILING_PADDING, "OB", size - headerLength))
        chunks.add(bytes(size - headerLength))
        return chunks

    def encodeElement(self, element: Element) -> Chunks:
        """
        Encode one element: a sequence, encapsulated pixel data or a value.
        """
        if element.vr == "SQ":
            return self.encodeSequence(element)
        if element.encapsulated:
            return self.encodeFragments(element)
        return self.encodeValue(element)

    def encodeValue(self, element: Element) -> Chunks:
        """
        Encode an element with a value: padded to even length, written under
        the VR C{-u} and the 16-bit length limit allow, and in big endian
        unless that VR is OB or UN (whose content DCMTK always writes in
        little endian).
        """
        value = element.value
        if len(value) % 2:
            value = pad(bytes(value), element.vr)
        vr = self.writtenVR(element.vr, len(value))
        if not self.encoding.littleEndian and vr not in ("OB", "UN"):
            value = swapBytes(value, WORD_SIZES.get(element.vr, 1))
        chunks = Chunks()
        chunks.add(self.encoding.header(element.tag, vr, len(value)))
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

    def encodeSequence(self, element: Element) -> Chunks:
        """
        Encode a sequence and its items, with explicit lengths (C{+e}) or
        undefined lengths and delimiters (C{-e}); each item padded when
        C{+p f i} asks.
        """
        body = Chunks()
        for item in element.value:
            body.extend(self.encodeItem(item))
        chunks = Chunks()
        if self.options.undefinedLengths:
            chunks.add(self.encoding.header(element.tag, "SQ", UNDEFINED_LENGTH))
            chunks.extend(body)
            chunks.add(self.encoding.itemHeader(SEQUENCE_DELIMITATION, 0))
        else:
            chunks.add(self.encoding.header(element.tag, "SQ", body.length))
            chunks.extend(body)
        return chunks

    def encodeItem(self, elements: List[Element]) -> Chunks:
        """
        Encode one sequence item, padded to a multiple of C{+p}'s item
        padding.
        """
        content = self.encodeContent(elements)
        if self.options.padding is not None:
            content.extend(self.padding(content.length, self.options.padding[1]))
        chunks = Chunks()
        if self.options.undefinedLengths:
            chunks.add(self.encoding.itemHeader(ITEM, UNDEFINED_LENGTH))
            chunks.extend(content)
            chunks.add(self.encoding.itemHeader(ITEM_DELIMITATION, 0))
        else:
            chunks.add(self.encoding.itemHeader(ITEM, content.length))
            chunks.extend(content)
        return chunks

    def encodeFragments(self, element: Element) -> Chunks:
        """
        Encode encapsulated pixel data: always undefined length, one item
        per fragment, and a Sequence Delimitation Item.
        """
        chunks = Chunks()
        chunks.add(self.encoding.header(element.tag, element.vr, UNDEFINED_LENGTH))
        for fragment in element.value:
            chunks.add(self.encoding.itemHeader(ITEM, len(fragment)))
            chunks.add(fragment)
        chunks.add(self.encoding.itemHeader(SEQUENCE_DELIMITATION, 0))
        return chunks
