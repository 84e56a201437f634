"""
DICOM files (PS3.10 section 7): the file meta information we write in
front of a received data set, and reading back the attributes we need from
a data set's first bytes.

Received data sets are stored bit for bit as they arrived; only the
preamble and the File Meta Information group are ours, built from the
C-STORE command and the accepted transfer syntax (as DCMTK's storescp does).

The attributes before the pixel data are read by L{scanHead} with the
element scanner of L{dicomd.codec.elements}, for the little endian
encodings: it walks the element headers, skips sequences to their
delimiters, and returns a pydicom L{Dataset} of undecoded elements, which
pydicom decodes only when one is looked at.  That is several times faster
than pydicom's own reader, and every storage SCP pays it once per object.
L{walkHead} only finds the elements (a L{HeadScan}), so that the storage
SCP checks an object from a few of them and leaves making the rest for
whatever asks for them.  Big endian data sets, and anything the scanner
does not understand, are read by pydicom (L{readHead}).  A deflated data
set is inflated only as far as its attributes go, and never past
L{MAXIMUM_INFLATED_HEAD} (L{readDeflatedHead}): a megabyte of deflated
zeros inflates to a gigabyte.
"""

import functools
import struct
import zlib
from io import BytesIO
from typing import Iterator, Optional

from pydicom import dcmread
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from dicomd import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomd.codec.elements import EXPLICIT_LITTLE, IMPLICIT_LITTLE, UNDEFINED_LENGTH, ElementScanner, Malformed, Truncated
from dicomd.dataset import TAG_OBJECTS, newDataset, quietPydicom, storedElement, tagObject
from dicomd.ul.negotiation import EXPLICIT_VR_LITTLE_ENDIAN

PREAMBLE = bytes(128) + b"DICM"

_PIXEL_DATA = 0x7FE00010
_UL = struct.Struct("<L")


def encodeFileMeta(sopClassUID: str, sopInstanceUID: str, transferSyntaxUID: str, sourceAETitle: str) -> bytes:
    """
    The preamble, "DICM" and File Meta Information group of a Part-10 file.

    @param sourceAETitle: the AE title that sent the data set (0002,0016).
    """
    before, after = _fileMetaAround(sopClassUID, transferSyntaxUID, sourceAETitle)
    instance = EXPLICIT_LITTLE.element(0x00020003, "UI", sopInstanceUID.encode("ascii"))
    length = len(before) + len(instance) + len(after)
    return b"".join((PREAMBLE, EXPLICIT_LITTLE.element(0x00020000, "UL", _UL.pack(length)), before, instance, after))


@functools.lru_cache(maxsize=256)
def _fileMetaAround(sopClassUID: str, transferSyntaxUID: str, sourceAETitle: str):
    """
    The File Meta Information elements before and after the Media Storage
    SOP Instance UID, which are the same for every object of one class and
    transfer syntax from one AE.
    """
    element = EXPLICIT_LITTLE.element
    before = element(0x00020001, "OB", b"\x00\x01") + element(0x00020002, "UI", sopClassUID.encode("ascii"))
    after = b"".join(
        [
            element(0x00020010, "UI", transferSyntaxUID.encode("ascii")),
            element(0x00020012, "UI", IMPLEMENTATION_CLASS_UID.encode("ascii")),
            element(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME.encode("ascii")),
            element(0x00020016, "AE", sourceAETitle.encode("ascii", "replace")),
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


_SPECIFIC_CHARACTER_SET = 0x00080005


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
    scan = walkHead(head, transferSyntaxUID, complete, partial)
    if scan is None or isinstance(scan, Dataset):
        return scan
    return scan.dataset()


def walkHead(head, transferSyntaxUID: str, complete: bool, partial: bool = False):
    """
    Find the attributes before the pixel data in the first bytes of a data
    set, as L{scanHead} does, and leave making them into a L{Dataset} for
    later: a storage SCP checks a received object's identity from a few of
    them (L{HeadScan.uids}) before it answers, and the rest are made only
    for whatever asks for them.

    @return: a L{HeadScan}; for an encoding the scanner leaves to pydicom,
        the L{Dataset} L{readHead} reads; C{None} as L{scanHead}.
    """
    implicit = _scannable(transferSyntaxUID)
    if implicit is None:
        return readHead(head, transferSyntaxUID, complete)
    scanner = ElementScanner(head, IMPLICIT_LITTLE if implicit else EXPLICIT_LITTLE, stopBefore=_PIXEL_DATA)
    elements = []
    try:
        # Each element as the scanner finds it; those before a truncation
        # stay in the list.
        elements.extend(scanner)
        if not (scanner.reached or complete or partial):
            return None
    except Truncated:
        if not partial:
            return None
    except Malformed:
        return readHead(head, transferSyntaxUID, complete)
    for _, vr, length, _, _ in elements:
        if length == UNDEFINED_LENGTH and vr is not None and vr != "SQ":
            # An undefined length UN (a sequence in implicit VR) or
            # encapsulated data before the pixel data: pydicom knows these.
            return readHead(head, transferSyntaxUID, complete)
    data = head
    end = elements[-1][4] if elements else 0
    if type(data) is not bytes or len(data) - end > _KEPT_SLACK:
        # The scan may be kept a while (the last object of each open
        # study is): not with the pixel data that followed the attributes,
        # nor with a view that would keep a receiving buffer from being
        # used again.
        data = bytes(data[:end])
    return HeadScan(data, implicit, elements)


#: How many bytes after the attributes a L{HeadScan} may keep rather than
#: copy the attributes out of its head.
_KEPT_SLACK = 4096


class HeadScan:
    """
    The elements before the pixel data in a data set's first bytes, found
    (L{walkHead}) but not yet made into pydicom's elements.

    @ivar data: the bytes they are in.
    @ivar implicit: whether they are in implicit VR.
    @ivar elements: each as L{ElementScanner} finds it, C{(tag, VR, length,
        value offset, next offset)}, in the order of the data set; the
        value of one of undefined length (a sequence) ends 8 bytes before
        the next offset, at its delimiter.
    """

    __slots__ = ("data", "implicit", "elements")

    def __init__(self, data: bytes, implicit: bool, elements: list):
        self.data = data
        self.implicit = implicit
        self.elements = elements

    def uids(self, tags) -> dict:
        """
        The values of the UI elements C{tags} that the data set has, padding
        removed, by tag, read in one pass (as a L{Dataset} would hold them,
        the last of an element given twice).
        """
        data = self.data
        found = {}
        for number, _, length, start, end in self.elements:
            if number in tags:
                found[number] = data[start : end if length != UNDEFINED_LENGTH else end - 8].decode("ascii", "replace").rstrip("\x00 ")
        return found

    def rawValues(self, tags) -> dict:
        """
        The elements C{tags} that the data set has, by tag, each as C{(VR,
        value)} exactly as the undecoded element of L{dataset} would hold
        them (the VR as written, C{None} in implicit VR; the value's bytes),
        read in one pass without making the data set.
        """
        data = self.data
        undefined = UNDEFINED_LENGTH
        found = {}
        for number, vr, length, start, end in self.elements:
            if number in tags:
                found[number] = (vr, data[start : end if length != undefined else end - 8])
        return found

    def dataset(self) -> Dataset:
        """
        The elements as a L{Dataset} of undecoded elements (pydicom decodes
        each when it is first used), in the data set's character set.
        """
        data = self.data
        implicit = self.implicit
        elements = {}
        # The element tuples are made as RawDataElement._make makes them,
        # without its Python frame and length check: this runs for every
        # element of every object received.
        newTuple = tuple.__new__
        raw = RawDataElement
        tags = TAG_OBJECTS
        undefined = UNDEFINED_LENGTH
        for number, vr, length, start, end in self.elements:
            value = data[start : end if length != undefined else end - 8]
            tag = tags.get(number)
            if tag is None:
                tag = tagObject(number)
            elements[tag] = newTuple(raw, (tag, vr, len(value), value, start, implicit, True, True, False))
        encoding = default_encoding
        characterSet = elements.get(tags.get(_SPECIFIC_CHARACTER_SET, _SPECIFIC_CHARACTER_SET))
        if characterSet is not None:
            # Decoded in place, as Dataset.__getitem__ would decode it (in
            # the default encoding), without the attribute look-up around
            # it: most objects name their character set, and that look-up
            # cost more than the rest of the scan.
            try:
                decoded = convert_raw_data_element(characterSet, encoding=default_encoding)
                elements[characterSet.tag] = decoded
                encoding = convert_encodings(decoded.value)
            except Exception:
                encoding = default_encoding
        return newDataset(elements, implicit, True, encoding)


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
    element = storedElement(dataset, tag)
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
