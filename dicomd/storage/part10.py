"""
DICOM files (PS3.10 section 7): the file meta information we write in
front of a received data set, and reading back the attributes we need from
a data set's first bytes.

Received data sets are stored bit for bit as they arrived; only the
preamble and the File Meta Information group are ours, built from the
C-STORE command and the accepted transfer syntax (as DCMTK's storescp does).

The attributes before the pixel data are read by L{scanHead}, a small
element scanner for the little endian encodings (PS3.5 section 7): it
walks the element headers, skips sequences to their delimiters, and
returns a pydicom L{Dataset} of undecoded elements, which pydicom decodes
only when one is looked at.  That is several times faster than pydicom's
own reader, and every storage SCP pays it once per object.  Big endian data
sets, and anything the scanner does not understand, are read by pydicom
(L{readHead}).  A deflated data set is inflated only as far as its
attributes go, and never past L{MAXIMUM_INFLATED_HEAD} (L{readDeflatedHead}):
a megabyte of deflated zeros inflates to a gigabyte.
"""

import functools
import struct
import zlib
from io import BytesIO
from typing import Iterator, Optional

from pydicom import dcmread
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from dicomd import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomd.dataset import quietPydicom
from dicomd.ul.negotiation import EXPLICIT_VR_LITTLE_ENDIAN

PREAMBLE = bytes(128) + b"DICM"

_PIXEL_DATA = 0x7FE00010


def _element(tag: int, vr: bytes, value: bytes, padding: bytes) -> bytes:
    if len(value) % 2:
        value += padding
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def encodeFileMeta(sopClassUID: str, sopInstanceUID: str, transferSyntaxUID: str, sourceAETitle: str) -> bytes:
    """
    The preamble, "DICM" and File Meta Information group of a Part-10 file.

    @param sourceAETitle: the AE title that sent the data set (0002,0016).
    """
    before, after = _fileMetaAround(sopClassUID, transferSyntaxUID, sourceAETitle)
    instance = _element(0x00020003, b"UI", sopInstanceUID.encode("ascii"), b"\x00")
    length = len(before) + len(instance) + len(after)
    return b"".join((PREAMBLE, struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, length), before, instance, after))


@functools.lru_cache(maxsize=256)
def _fileMetaAround(sopClassUID: str, transferSyntaxUID: str, sourceAETitle: str):
    """
    The File Meta Information elements before and after the Media Storage
    SOP Instance UID, which are the same for every object of one class and
    transfer syntax from one AE.
    """
    before = struct.pack("<HH2sHL", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01" + _element(
        0x00020002, b"UI", sopClassUID.encode("ascii"), b"\x00"
    )
    after = b"".join(
        [
            _element(0x00020010, b"UI", transferSyntaxUID.encode("ascii"), b"\x00"),
            _element(0x00020012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii"), b"\x00"),
            _element(0x00020013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii"), b" "),
            _element(0x00020016, b"AE", sourceAETitle.encode("ascii", "replace"), b" "),
        ]
    )
    return before, after


class _StopAt:
    """
    A C{stop_when} for pydicom that stops at the pixel data and remembers
    that it got that far.
    """

    def __init__(self):
        self.reached = False

    def __call__(self, tag, vr, length) -> bool:
        if tag >= _PIXEL_DATA:
            self.reached = True
            return True
        return False


def readHead(head: bytes, transferSyntaxUID: str, complete: bool) -> Optional[Dataset]:
    """
    Read the attributes before the pixel data from the first bytes of an
    encoded data set.

    @param head: the data set's first bytes.
    @param complete: whether C{head} is the whole data set.
    @return: the attributes, or C{None} when C{head} ends before the pixel
        data (or the data set is deflated), so the file must be read instead.
    """
    syntax = UID(transferSyntaxUID)
    if syntax.is_deflated or not syntax.is_transfer_syntax:
        return None
    stop = _StopAt()
    try:
        dataset = read_dataset(BytesIO(head), syntax.is_implicit_VR, syntax.is_little_endian, stop_when=stop)
    except Exception:
        return None
    if not (stop.reached or complete):
        return None
    return dataset


#: Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5
#: Table 7.1-1); every other VR has a 2-byte length.
_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"))
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_DELIMITATION = 0xFFFEE00D
_SEQUENCE_DELIMITATION = 0xFFFEE0DD
_SPECIFIC_CHARACTER_SET = 0x00080005

_TAG = struct.Struct("<HH")
_UL = struct.Struct("<L")
_US = struct.Struct("<H")
_IMPLICIT_HEADER = struct.Struct("<HHL")
_EXPLICIT_HEADER = struct.Struct("<HH2sH")

#: The VRs of PS3.5 Table 6.2-1, as bytes -> as pydicom names them.
_VR_NAMES = {
    vr.encode("ascii"): vr
    for vr in (
        "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV"
    ).split()
}


class _Truncated(Exception):
    """
    The bytes end inside an element.
    """


class _NotUnderstood(Exception):
    """
    An encoding the scanner leaves to pydicom.
    """


def _skipSequence(data, pos: int, end: int, implicit: bool) -> int:
    """
    Skip the items of a sequence of undefined length that starts at C{pos}.

    @return: the position of its Sequence Delimitation Item.
    """
    while True:
        if pos + 8 > end:
            raise _Truncated()
        group, element, length = _IMPLICIT_HEADER.unpack_from(data, pos)
        tag = (group << 16) | element
        if tag == _SEQUENCE_DELIMITATION:
            return pos
        if tag != _ITEM:
            raise _NotUnderstood("tag (%04X,%04X) in a sequence" % (group, element))
        pos += 8
        if length == _UNDEFINED_LENGTH:
            pos = _skipItem(data, pos, end, implicit)
        else:
            pos += length
            if pos > end:
                raise _Truncated()


def _skipItem(data, pos: int, end: int, implicit: bool) -> int:
    """
    Skip the elements of an item of undefined length.

    @return: the position after its Item Delimitation Item.
    """
    while True:
        if pos + 8 > end:
            raise _Truncated()
        group, element = _TAG.unpack_from(data, pos)
        tag = (group << 16) | element
        if tag == _ITEM_DELIMITATION:
            return pos + 8
        pos, _, length, valuePosition = _elementHeader(data, pos, end, implicit, group)
        if length == _UNDEFINED_LENGTH:
            pos = _skipSequence(data, valuePosition, end, implicit) + 8
        else:
            pos = valuePosition + length
            if pos > end:
                raise _Truncated()


def _elementHeader(data, pos: int, end: int, implicit: bool, group: int):
    """
    The element header at C{pos}: C{(pos, vr, length, valuePosition)},
    C{vr} being C{None} in implicit VR.
    """
    if implicit or group == 0xFFFE:
        length = _UL.unpack_from(data, pos + 4)[0]
        if length == _UNDEFINED_LENGTH and not implicit and group != 0xFFFE:
            raise _NotUnderstood("undefined length")
        return pos, None, length, pos + 8
    vr = bytes(data[pos + 4 : pos + 6])
    if vr in _LONG_VRS:
        if pos + 12 > end:
            raise _Truncated()
        length = _UL.unpack_from(data, pos + 8)[0]
        if length == _UNDEFINED_LENGTH and vr != b"SQ":
            # An undefined length UN (a sequence in implicit VR) or
            # encapsulated data before the pixel data: pydicom knows these.
            raise _NotUnderstood("undefined length %s" % (vr,))
        return pos, vr, length, pos + 12
    return pos, vr, _US.unpack_from(data, pos + 6)[0], pos + 8


_SCANNABLE = {}


def _scannable(transferSyntaxUID: str) -> Optional[bool]:
    """
    Whether data sets in this transfer syntax are in implicit VR (C{True})
    or explicit VR (C{False}) little endian, not deflated; C{None} for
    the others.
    """
    try:
        return _SCANNABLE[transferSyntaxUID]
    except KeyError:
        pass
    syntax = UID(transferSyntaxUID)
    if syntax.is_transfer_syntax and syntax.is_little_endian and not syntax.is_deflated:
        implicit = bool(syntax.is_implicit_VR)
    else:
        implicit = None
    if len(_SCANNABLE) < 1024:
        _SCANNABLE[transferSyntaxUID] = implicit
    return implicit


def scanHead(head, transferSyntaxUID: str, complete: bool, partial: bool = False) -> Optional[Dataset]:
    """
    Read the attributes before the pixel data from the first bytes of a
    data set encoded in little endian, without decoding them.

    @param head: the data set's first bytes.
    @param complete: whether C{head} is the whole data set.
    @param partial: when C{head} ends before the pixel data, return the
        elements it holds whole instead of C{None}.
    @return: a L{Dataset} of undecoded elements (pydicom decodes each when
        it is first used), or C{None} when C{head} ends before the pixel
        data (so the file must be read instead) or is encoded in a way left
        to L{readHead}.
    """
    implicit = _scannable(transferSyntaxUID)
    if implicit is None:
        return readHead(head, transferSyntaxUID, complete)
    data = head if type(head) is bytes else bytes(head)
    end = len(data)
    pos = 0
    elements = {}
    unpackTag = _TAG.unpack_from
    unpackHeader = _EXPLICIT_HEADER.unpack_from
    unpackLength = _UL.unpack_from
    vrNames = _VR_NAMES
    longVRs = _LONG_VRS
    make = RawDataElement._make
    try:
        while pos < end:
            if pos + 8 > end:
                raise _Truncated()
            if implicit:
                group, element = unpackTag(data, pos)
                vr = None
                length = unpackLength(data, pos + 4)[0]
                valuePosition = pos + 8
            else:
                group, element, vrBytes, length = unpackHeader(data, pos)
                if vrBytes in longVRs or group == 0xFFFE:
                    _, vrBytes, length, valuePosition = _elementHeader(data, pos, end, False, group)
                    vr = None if vrBytes is None else vrNames[vrBytes]
                else:
                    vr = vrNames.get(vrBytes) or vrBytes.decode("ascii", "replace")
                    valuePosition = pos + 8
            tag = (group << 16) | element
            if tag >= _PIXEL_DATA:
                break
            if length == _UNDEFINED_LENGTH:
                delimiter = _skipSequence(data, valuePosition, end, implicit)
                value = data[valuePosition:delimiter]
                pos = delimiter + 8
            else:
                pos = valuePosition + length
                if pos > end:
                    raise _Truncated()
                value = data[valuePosition:pos]
            tag = BaseTag(tag)
            elements[tag] = make((tag, vr, len(value), value, valuePosition, implicit, True, True, False))
        else:
            if not (complete or partial):
                return None
    except _Truncated:
        if not partial:
            return None
    except (_NotUnderstood, struct.error):
        return readHead(head, transferSyntaxUID, complete)
    dataset = Dataset(elements)
    encoding = default_encoding
    if _SPECIFIC_CHARACTER_SET in elements:
        try:
            encoding = convert_encodings(dataset.SpecificCharacterSet)
        except Exception:
            encoding = default_encoding
    dataset.set_original_encoding(implicit, True, encoding)
    return dataset


#: The most of a deflated data set that L{readDeflatedHead} inflates: the
#: attributes before the pixel data take a few kilobytes, and a few
#: megabytes in enhanced multi-frame objects.
MAXIMUM_INFLATED_HEAD = 4 << 20


def readDeflatedHead(compressed: Iterator[bytes]) -> Optional[Dataset]:
    """
    Read the attributes before the pixel data of a deflated data set
    (PS3.5 A.5), inflating it only as far as they go: first 64 KiB, then
    four times more each time the scanner finds them cut short, up to
    L{MAXIMUM_INFLATED_HEAD}.  Attributes that begin beyond that are left
    out, so the memory and time this takes are bounded whatever the data
    set inflates to.

    @param compressed: the deflated data set, in pieces of any size; it is
        read no further than needed.
    @return: the attributes (as L{scanHead} returns them; none when the
        stream is broken from the start), or C{None} when they cannot be
        read (a data set the scanner does not understand).
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = bytearray()
    pending = b""
    ended = False
    target = 64 << 10
    while True:
        while len(inflated) < target and not (inflater.eof or ended):
            if not pending:
                pending = next(compressed, None)
                if pending is None:
                    ended = True
                    break
            try:
                inflated += inflater.decompress(pending, target - len(inflated))
            except zlib.error:
                # A broken stream: what came before the break is all there is.
                ended = True
                break
            pending = inflater.unconsumed_tail
        complete = inflater.eof or ended
        limited = not complete and target >= MAXIMUM_INFLATED_HEAD
        attributes = scanHead(bytes(inflated), EXPLICIT_VR_LITTLE_ENDIAN, complete, partial=limited)
        if attributes is not None or complete or limited:
            return attributes
        target = min(target * 4, MAXIMUM_INFLATED_HEAD)


def uidValue(dataset: Dataset, keyword: str, tag: int) -> str:
    """
    The value of a UI element of C{dataset}, padding removed, read without
    decoding the element when it is still raw; C{""} when absent.
    """
    element = dataset.get_item(tag)
    if element is None:
        return ""
    if isinstance(element, RawDataElement):
        value = element.value or b""
        return value.decode("ascii", "replace").rstrip("\x00 ")
    return str(dataset.get(keyword, "") or "").rstrip("\x00 ")


def readFileHead(path: str) -> Dataset:
    """
    Read the attributes before the pixel data from a stored file.

    @raise Exception: pydicom's error when the file is not DICOM.
    """
    return dcmread(path, stop_before_pixels=True)


quietPydicom()
