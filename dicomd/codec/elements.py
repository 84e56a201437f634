"""
Data elements (PS3.5 section 7): their headers in implicit VR little
endian, explicit VR little endian and explicit VR big endian, whole
elements, and a scanner that walks the elements of a buffer.

An L{Encoding} writes and reads one element header at a time
(L{Encoding.header}, L{Encoding.readHeader}); L{ElementScanner} walks the
elements of a data set or item, finding the end of sequences and
encapsulated values of undefined length without parsing what they hold.
Values stay bytes: what they mean is the caller's business.  When the
bytes end inside an element, L{Truncated} says how many bytes it needs,
so a caller reading a file or a stream knows how much more to read.
"""

import struct
from array import array
from typing import Iterator, Optional, Tuple

from dicomd.codec.vr import LONG_LENGTH_VRS, VRS, pad
from dicomd.ul.negotiation import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)

#: The length of a sequence, item or encapsulated value whose end is
#: marked by a delimiter instead (PS3.5 7.1.1).
UNDEFINED_LENGTH = 0xFFFFFFFF

#: The tags of items and delimiters (PS3.5 7.5), in group FFFE, which have
#: no VR in any encoding.
ITEM = 0xFFFEE000
ITEM_DELIMITATION = 0xFFFEE00D
SEQUENCE_DELIMITATION = 0xFFFEE0DD
_DELIMITER_GROUP = 0xFFFE

#: The 2-byte VR fields of explicit VR, as the names the rest of dicomd
#: uses (interned, so comparing them is cheap).
_VR_NAMES = {vr.encode("ascii"): vr for vr in VRS}
_LONG_VR_BYTES = frozenset(vr.encode("ascii") for vr in LONG_LENGTH_VRS)


class Truncated(ValueError):
    """
    The bytes end inside an element.

    @ivar needed: how long the buffer must be, from its start, for the
        element to be read further: at least the end of its header or of
        its value.
    """

    def __init__(self, needed: int):
        ValueError.__init__(self, "data ends inside an element: %d bytes needed" % (needed,))
        self.needed = needed


class Malformed(ValueError):
    """
    Bytes that are no encoding of data elements: a tag where an item should
    be, an item that is not where it should be.
    """


class Encoding:
    """
    How a transfer syntax encodes data elements (PS3.5 section 7 and
    Annex A): implicit or explicit VR, byte order, and whether the data
    set is deflated.

    @ivar implicit: implicit VR.
    @ivar littleEndian: little endian byte order.
    @ivar deflated: the data set is deflated (PS3.5 A.5; RFC 1951, no zlib
        header); its elements are those of explicit VR little endian.
    """

    __slots__ = ("implicit", "littleEndian", "deflated", "_tag", "_tagAndLength", "_short", "_long", "_length")

    def __init__(self, implicit: bool, littleEndian: bool, deflated: bool = False):
        self.implicit = implicit
        self.littleEndian = littleEndian
        self.deflated = deflated
        order = "<" if littleEndian else ">"
        self._tag = struct.Struct(order + "HH")
        self._tagAndLength = struct.Struct(order + "HHL")
        self._short = struct.Struct(order + "HH2sH")
        self._long = struct.Struct(order + "HH2s2xL")
        self._length = struct.Struct(order + "L")

    def __eq__(self, other) -> bool:
        if not isinstance(other, Encoding):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "Encoding(implicit=%r, littleEndian=%r, deflated=%r)" % self._key()

    def _key(self) -> Tuple[bool, bool, bool]:
        return (self.implicit, self.littleEndian, self.deflated)

    def header(self, tag: int, vr: str, length: int) -> bytes:
        """
        An element's header: its tag, its VR (in explicit VR) and its value
        length, 32 bits for the VRs of L{LONG_LENGTH_VRS} and in implicit
        VR, 16 bits otherwise.

        @raise ValueError: C{length} does not fit a 16-bit length.
        """
        group, number = tag >> 16, tag & 0xFFFF
        if self.implicit:
            return self._tagAndLength.pack(group, number, length)
        if vr in LONG_LENGTH_VRS:
            return self._long.pack(group, number, vr.encode("ascii"), length)
        if length > 0xFFFF:
            raise ValueError("(%04X,%04X) %s value of %d bytes: too long for its VR" % (group, number, vr, length))
        return self._short.pack(group, number, vr.encode("ascii"), length)

    def itemHeader(self, tag: int, length: int) -> bytes:
        """
        The header of an item or delimiter (PS3.5 7.5): its tag and a 32-bit
        length, without VR in every encoding.
        """
        return self._tagAndLength.pack(tag >> 16, tag & 0xFFFF, length)

    def element(self, tag: int, vr: str, value: bytes) -> bytes:
        """
        A whole element: its header and its value, padded to even length.

        @param value: the value in this encoding's byte order.
        """
        value = pad(value, vr)
        return self.header(tag, vr, len(value)) + value

    def readTag(self, data, offset: int) -> int:
        """
        The tag at C{offset}.

        @raise Truncated: C{data} ends before it.
        """
        if offset + 4 > len(data):
            raise Truncated(offset + 4)
        group, number = self._tag.unpack_from(data, offset)
        return group << 16 | number

    def readHeader(self, data, offset: int, end: int) -> Tuple[int, Optional[str], int, int]:
        """
        Read the element header at C{offset}.  Items and delimiters have no
        VR; in explicit VR a VR that is not in PS3.5 is returned as it is,
        with a 16-bit length.

        @param end: where the data set or item ends in C{data}.
        @return: C{(tag, vr, length, offset of the value)}, C{vr} being
            C{None} in implicit VR and for items and delimiters.
        @raise Truncated: the header runs past C{end}.
        """
        if offset + 8 > end:
            raise Truncated(offset + 8)
        if self.implicit:
            group, number, length = self._tagAndLength.unpack_from(data, offset)
            return group << 16 | number, None, length, offset + 8
        group, number, rawVR, length = self._short.unpack_from(data, offset)
        if group == _DELIMITER_GROUP:
            return group << 16 | number, None, self._length.unpack_from(data, offset + 4)[0], offset + 8
        vr = _VR_NAMES.get(rawVR) or rawVR.decode("latin-1")
        if rawVR in _LONG_VR_BYTES:
            if offset + 12 > end:
                raise Truncated(offset + 12)
            return group << 16 | number, vr, self._length.unpack_from(data, offset + 8)[0], offset + 12
        return group << 16 | number, vr, length, offset + 8

    def readItemHeader(self, data, offset: int, end: int) -> Tuple[int, int, int]:
        """
        Read the header of an item or delimiter at C{offset}.

        @return: C{(tag, length, offset after the header)}.
        @raise Truncated: the header runs past C{end}.
        """
        if offset + 8 > end:
            raise Truncated(offset + 8)
        group, number, length = self._tagAndLength.unpack_from(data, offset)
        return group << 16 | number, length, offset + 8

    def skipItems(self, data, offset: int, end: int, vr: Optional[str] = None) -> int:
        """
        Find the end of a value of undefined length that starts at
        C{offset}: the items of a sequence, or the fragments of
        encapsulated pixel data, up to their Sequence Delimitation Item.
        Items of undefined length are walked element by element, in this
        encoding, or in implicit VR little endian for a value of VR UN
        (PS3.5 6.2.2).

        @return: the offset of the Sequence Delimitation Item.
        @raise Truncated: C{end} comes first.
        @raise Malformed: something else than an item comes first.
        """
        if vr == "UN" and not self.implicit:
            return IMPLICIT_LITTLE.skipItems(data, offset, end)
        while True:
            tag, length, offset = self.readItemHeader(data, offset, end)
            if tag == SEQUENCE_DELIMITATION:
                return offset - 8
            if tag != ITEM:
                raise Malformed("(%04X,%04X) where a sequence item should be" % (tag >> 16, tag & 0xFFFF))
            if length == UNDEFINED_LENGTH:
                offset = self._skipItemContent(data, offset, end)
            else:
                offset += length
                if offset > end:
                    raise Truncated(offset)

    def _skipItemContent(self, data, offset: int, end: int) -> int:
        """
        Walk the elements of an item of undefined length.

        @return: the offset after its Item Delimitation Item.
        """
        while True:
            tag, vr, length, offset = self.readHeader(data, offset, end)
            if tag == ITEM_DELIMITATION:
                return offset
            if length == UNDEFINED_LENGTH:
                offset = self.skipItems(data, offset, end, vr) + 8
            else:
                offset += length
                if offset > end:
                    raise Truncated(offset)


#: The encodings of the uncompressed transfer syntaxes (PS3.5 A.1, A.2,
#: A.3, A.5).  The encapsulated ones encode their elements as explicit
#: VR little endian does.
IMPLICIT_LITTLE = Encoding(implicit=True, littleEndian=True)
EXPLICIT_LITTLE = Encoding(implicit=False, littleEndian=True)
EXPLICIT_BIG = Encoding(implicit=False, littleEndian=False)
DEFLATED_EXPLICIT_LITTLE = Encoding(implicit=False, littleEndian=True, deflated=True)

#: The uncompressed transfer syntaxes by UID, whose data sets can be
#: written in one another.
UNCOMPRESSED_ENCODINGS = {
    IMPLICIT_VR_LITTLE_ENDIAN: IMPLICIT_LITTLE,
    EXPLICIT_VR_LITTLE_ENDIAN: EXPLICIT_LITTLE,
    EXPLICIT_VR_BIG_ENDIAN: EXPLICIT_BIG,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: DEFLATED_EXPLICIT_LITTLE,
}


class ElementScanner:
    """
    Walks the elements of a data set or item, from C{offset} to C{end}.

    Each element comes as C{(tag, vr, length, valueOffset, nextOffset)}:
    its tag, its VR (C{None} in implicit VR and for items and delimiters),
    the length in its header, where its value starts and where the next
    element starts.  The value of an element of defined length ends at
    C{nextOffset}; that of an element of L{UNDEFINED_LENGTH} ends 8 bytes
    before, at its Sequence Delimitation Item.  Delimiters come like any
    element, and the walk goes on after them: stopping there is the
    caller's choice, as it is to go into a sequence's items.

    This is on the path of every stored object: the common case, an
    element of defined length, is read inline.

    @ivar reached: whether the walk stopped at an element whose tag is at
        least C{stopBefore} (whose header is read no further than its tag).
    @raise Truncated: (while iterating) an element runs past C{end}.
    @raise Malformed: (while iterating) a value of undefined length holds
        no items.
    """

    __slots__ = ("data", "encoding", "offset", "end", "stopBefore", "reached")

    def __init__(self, data, encoding: Encoding, offset: int = 0, end: Optional[int] = None, stopBefore: int = 0x100000000):
        """
        @param data: C{bytes} (or a C{memoryview} or C{bytearray}).
        @param end: where the data set or item ends; the end of C{data} by
            default.
        @param stopBefore: stop at the first element whose tag is at least
            this (Pixel Data, for the attributes before it).
        """
        self.data = data
        self.encoding = encoding
        self.offset = offset
        self.end = len(data) if end is None else end
        self.stopBefore = stopBefore
        self.reached = False

    def __iter__(self) -> Iterator[Tuple[int, Optional[str], int, int, int]]:
        data, encoding, offset, end, stopBefore = self.data, self.encoding, self.offset, self.end, self.stopBefore
        implicit = encoding.implicit
        unpackShort = encoding._short.unpack_from
        unpackImplicit = encoding._tagAndLength.unpack_from
        vrNames = _VR_NAMES
        longVRs = _LONG_VR_BYTES
        readHeader = encoding.readHeader
        # The delimiter group and UNDEFINED_LENGTH are spelled as literals
        # below: a global lookup per element costs more than the rest of it.
        while offset < end:
            if offset + 8 > end:
                raise Truncated(offset + 8)
            if implicit:
                group, number, length = unpackImplicit(data, offset)
                tag = group << 16 | number
                if tag >= stopBefore:
                    self.reached = True
                    return
                vr = None
                valueOffset = offset + 8
            else:
                group, number, rawVR, length = unpackShort(data, offset)
                tag = group << 16 | number
                if tag >= stopBefore:
                    self.reached = True
                    return
                if rawVR in longVRs or group == 0xFFFE:
                    _, vr, length, valueOffset = readHeader(data, offset, end)
                else:
                    vr = vrNames.get(rawVR) or rawVR.decode("latin-1")
                    valueOffset = offset + 8
            if length == 0xFFFFFFFF:
                offset = encoding.skipItems(data, valueOffset, end, vr) + 8
            else:
                offset = valueOffset + length
                if offset > end:
                    raise Truncated(offset)
            yield tag, vr, length, valueOffset, offset


def swapBytes(value, wordSize: int) -> bytes:
    """
    C{value} with the bytes of each C{wordSize}-byte word reversed: a value
    of a VR of L{dicomd.codec.vr.WORD_SIZES} from little to big endian or
    back (PS3.5 7.3).  Trailing bytes that make no whole word are left as
    they are.
    """
    if wordSize == 1 or len(value) < wordSize:
        return value
    whole = len(value) - len(value) % wordSize
    words = array({2: "H", 4: "I", 8: "Q"}[wordSize])
    words.frombytes(value[:whole])
    words.byteswap()
    return words.tobytes() + bytes(value[whole:])
