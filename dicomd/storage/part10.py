"""
DICOM files (PS3.10 section 7): the file meta information we write in
front of a received data set, and reading back the attributes we need from
a data set's first bytes.

Received data sets are stored bit for bit as they arrived; only the
preamble and the File Meta Information group are ours, built from the
C-STORE command and the accepted transfer syntax (as DCMTK's storescp does).
"""

import struct
from io import BytesIO
from typing import Optional

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from dicomd import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

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
    body = b"".join(
        [
            struct.pack("<HH2sHL", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
            _element(0x00020002, b"UI", sopClassUID.encode("ascii"), b"\x00"),
            _element(0x00020003, b"UI", sopInstanceUID.encode("ascii"), b"\x00"),
            _element(0x00020010, b"UI", transferSyntaxUID.encode("ascii"), b"\x00"),
            _element(0x00020012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii"), b"\x00"),
            _element(0x00020013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii"), b" "),
            _element(0x00020016, b"AE", sourceAETitle.encode("ascii", "replace"), b" "),
        ]
    )
    return PREAMBLE + struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, len(body)) + body


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


def readFileHead(path: str) -> Dataset:
    """
    Read the attributes before the pixel data from a stored file.

    @raise Exception: pydicom's error when the file is not DICOM.
    """
    return dcmread(path, stop_before_pixels=True)
