"""
Data sets in a transfer syntax (PS3.5 sections 7 and 10, and Annex A),
encoded and decoded with pydicom.

Small data sets travel whole: C-FIND identifiers and responses, C-MOVE and
C-GET identifiers, converted C-STORE data sets.  Large ones are streamed
without decoding (see L{dicomd.storage}).
"""

import zlib
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"


def quietPydicom() -> None:
    """
    Turn off pydicom's warnings about values that do not follow their VR
    (a range like C{20200101-} in a query, say): dicomd checks what it
    needs of received data itself and answers with DIMSE statuses, so they
    would only fill the log.  The modules that decode network data with
    pydicom call this when they are imported; it changes pydicom's
    process-wide settings, and only a process that loads pydicom pays for
    the import.
    """
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE


def decodeDataSet(data: bytes, transferSyntaxUID: str) -> Dataset:
    """
    Decode an encoded data set.

    @raise ValueError: the bytes are not a data set in that syntax.
    """
    syntax = UID(transferSyntaxUID)
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    try:
        return read_dataset(BytesIO(data), syntax.is_implicit_VR, syntax.is_little_endian)
    except Exception as e:
        raise ValueError("cannot decode the data set: %s" % (e,))


def encodeDataSet(dataset: Dataset, transferSyntaxUID: str, compressionLevel: int = 6) -> bytes:
    """
    Encode a data set (without File Meta Information) in an uncompressed
    or deflated transfer syntax.
    """
    syntax = UID(transferSyntaxUID)
    fp = DicomBytesIO()
    fp.is_little_endian = syntax.is_little_endian
    fp.is_implicit_VR = syntax.is_implicit_VR
    write_dataset(fp, dataset)
    data = fp.getvalue()
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        compressor = zlib.compressobj(compressionLevel, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
    return data


quietPydicom()
