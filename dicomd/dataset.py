"""
Data sets in a transfer syntax (PS3.5 sections 7 and 10, and Annex A),
encoded and decoded with pydicom.

Small data sets travel whole: C-FIND identifiers and responses, C-MOVE and
C-GET identifiers, converted C-STORE data sets.  Large ones are streamed
without decoding (see L{dicomd.storage}).
"""

import re
import zlib
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from dicomd.ul.negotiation import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN


#: The most a deflated data set that travels whole (a query or retrieve
#: identifier) may inflate to.  Identifiers are a few kilobytes; without a
#: cap, a megabyte of zeros inflates to a gigabyte and parsing it holds
#: the reactor for minutes.
MAXIMUM_INFLATED_SIZE = 4 << 20


#: A UID (PS3.5 9.1): at most 64 characters, components of digits
#: separated by dots.  Leading zeros, which the standard forbids but some
#: modalities write, are let through: they are harmless in a file name.
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*\Z")


def isValidUID(value: str) -> bool:
    """
    Whether C{value} (padding removed) is a UID: the UIDs that name stored
    files and folders and reach commands must be, so that no network value
    brings a shell metacharacter or a path separator with it.
    """
    return len(value) <= 64 and _UID.match(value) is not None


#: The state of a new pydicom L{Dataset}, which L{newDataset} copies.
_NEW_DATASET_STATE = dict(vars(Dataset()))

#: The parts of that state that each data set must have its own of.
_OWN_STATE = ("_private_blocks", "_pixel_array_opts", "_pixel_id")


def newDataset(elements=None, implicit=None, little=None, encoding=None) -> Dataset:
    """
    A pydicom L{Dataset} of C{elements} (a dict of tags to elements, taken
    as it is), read in that encoding (as C{set_original_encoding} records
    it), made without calling C{Dataset.__init__}.

    A storage SCP makes one for every object it receives, and
    C{__init__} sets a dozen attributes, each through
    C{Dataset.__setattr__}, which first tells a keyword from an attribute:
    this copies the state a new data set has instead, with new containers
    where each must have its own.  A test holds the two the same.
    """
    dataset = Dataset.__new__(Dataset)
    state = vars(dataset)
    state.update(_NEW_DATASET_STATE)
    for name in _OWN_STATE:
        state[name] = _NEW_DATASET_STATE[name].copy()
    state["_dict"] = {} if elements is None else elements
    state["_read_implicit"] = implicit
    state["_read_little"] = little
    if encoding is not None:
        state["_read_charset"] = encoding
    return dataset


#: pydicom's tag objects of the tags met so far, by number: most objects
#: received carry the same few dozen, and making a L{BaseTag} costs more
#: than finding one.  L{dicomd.storage.part10.scanHead} keys the data sets
#: it makes with them, so that L{storedElement} finds an element by the
#: very key object, without C{BaseTag.__eq__}, a Python method.
TAG_OBJECTS = {}

#: How many tags L{TAG_OBJECTS} keeps: what peers send cannot grow it
#: further.
MAXIMUM_TAG_OBJECTS = 4096


def tagObject(number: int) -> BaseTag:
    """
    A new tag object for C{number}, kept in L{TAG_OBJECTS} while there is
    room.
    """
    tag = BaseTag(number)
    if len(TAG_OBJECTS) < MAXIMUM_TAG_OBJECTS:
        TAG_OBJECTS[number] = tag
    return tag


def storedElement(dataset: Dataset, tag: int):
    """
    The element of C{dataset} under C{tag} as it is stored there: raw
    (undecoded) or decoded, or C{None}.

    C{Dataset.get_item} does the same after converting the tag, which
    costs more than the look-up; the storage SCP and the index read some
    thirty elements of every object received, while they hold the
    interpreter lock.  Only for data sets read whole: a data set whose
    values pydicom left in the file (C{defer_size}) must go through
    C{get_item}.
    """
    return dataset._dict.get(TAG_OBJECTS.get(tag, tag))


def storedElements(dataset: Dataset, tags) -> list:
    """
    The element of C{dataset} under each of C{tags}, as L{storedElement}
    finds it, in one call: the index writer reads some thirty of every
    instance.
    """
    get = dataset._dict.get
    objects = TAG_OBJECTS
    return [get(objects.get(tag, tag)) for tag in tags]


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

    @raise ValueError: the bytes are not a data set in that syntax, or
        they are deflated and inflate to more than L{MAXIMUM_INFLATED_SIZE}.
    """
    syntax = UID(transferSyntaxUID)
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        data = inflate(data, MAXIMUM_INFLATED_SIZE)
    try:
        return read_dataset(BytesIO(data), syntax.is_implicit_VR, syntax.is_little_endian)
    except Exception as e:
        raise ValueError("cannot decode the data set: %s" % (e,))


def inflate(data: bytes, limit: int) -> bytes:
    """
    Inflate a deflated data set (PS3.5 A.5: raw deflate, no zlib header),
    stopping as soon as the output passes C{limit} bytes, so that the work
    and memory it costs are bounded by C{limit} whatever the input.

    @raise ValueError: the data is not deflated, or it inflates to more
        than C{limit} bytes.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(data, limit + 1)
    except zlib.error as e:
        raise ValueError("cannot inflate the deflated data set: %s" % (e,))
    if len(inflated) > limit:
        raise ValueError("the deflated data set inflates to more than %d bytes" % (limit,))
    return inflated


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
