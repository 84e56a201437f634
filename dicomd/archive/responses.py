"""
C-FIND response identifiers (PS3.4 C.4.1.1.3.2): their values encoded in
the response's character set, and the identifiers encoded for the wire
without pydicom's writer.

Responses
=========

A response holds every return key, the Query/Retrieve Level and, when
needed, the Specific Character Set (L{responseIdentifier}, which
L{dicomd.archive.matching.Query.response} calls).  dcmqrscp also adds
Retrieve AE Title (0008,0054), the called AE title: that is for the C-FIND
SCP to add.  Responses are built of raw elements, their values already
encoded, and L{encodeResponse} writes them with L{dicomd.codec.elements}:
a C-FIND with many matches spends its time on them, and this is several
times faster than pydicom's writer.

Character sets
==============

A response is encoded in the character set of its request when that can
represent every value of the response; otherwise it is sent in UTF-8
(C{ISO_IR 192}).  A request without Specific Character Set gets responses
without it when they are plain ASCII.  (dcmqrscp converts to the request's
character set too, and keeps the stored one when that fails.)
"""

from typing import Iterable, Optional, Sequence, Tuple

from pydicom.charset import convert_encodings, encode_string
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import PersonName

from dicomd.archive.charsets import ASCII_TERMS, CHARACTER_SET_VRS, pythonEncodings
from dicomd.codec.elements import EXPLICIT_LITTLE, IMPLICIT_LITTLE
from dicomd.codec.vr import LONG_LENGTH_VRS, pad

_SPECIFIC_CHARACTER_SET = 0x00080005
_RETRIEVE_AE_TITLE = 0x00080054

#: pydicom's tags for the tags of responses, made once each.
_TAGS = {}


def _tag(tag: int) -> BaseTag:
    try:
        return _TAGS[tag]
    except KeyError:
        return _TAGS.setdefault(tag, Tag(tag))


def responseIdentifier(values: Sequence[Tuple[int, str, str]], requested: Tuple[str, ...]) -> Dataset:
    """
    Build the identifier of one C-FIND response.

    Its elements are pydicom C{RawDataElement}s holding the values already
    encoded (in the response's character set, padded to even length):
    pydicom decodes them only if someone reads them, and L{encodeResponse}
    writes them as they are.

    @param values: the tag, VR and text of each element.
    @param requested: the terms of the request's Specific Character Set.
    @return: a pydicom C{Dataset} with those elements and the Specific
        Character Set that L{responseCharacterSet} chooses.
    """
    characterSet = responseCharacterSet(requested, [text for _, vr, text in values if vr in CHARACTER_SET_VRS])
    encodings = pythonEncodings(characterSet)
    elements = {_tag(tag): _rawElement(tag, vr, _encodeValue(vr, text, encodings)) for tag, vr, text in values}
    if characterSet:
        elements[_tag(_SPECIFIC_CHARACTER_SET)] = _rawElement(
            _SPECIFIC_CHARACTER_SET, "CS", pad("\\".join(characterSet).encode("ascii"), "CS")
        )
    return Dataset(elements)


def addRetrieveAETitle(identifier: Dataset, title: str) -> None:
    """
    Put the Retrieve AE Title (0008,0054) in a response identifier, as a
    raw element that L{encodeResponse} writes as it is: setting it the
    pydicom way costs as much as building the rest of the identifier.
    """
    if title.isascii():
        identifier[_tag(_RETRIEVE_AE_TITLE)] = _rawElement(_RETRIEVE_AE_TITLE, "AE", pad(title.encode("ascii"), "AE"))
    else:
        identifier.RetrieveAETitle = title


def _encodeValue(vr: str, text: str, encodings) -> bytes:
    """
    Encode the text of one response value in the response's character set.
    """
    if text.isascii():
        return pad(text.encode("ascii"), vr)
    if vr not in CHARACTER_SET_VRS:
        # Only the character set VRs may hold more than ASCII; a stored
        # value that does anyway goes out as UTF-8 bytes.
        return pad(text.encode("utf-8"), vr)
    if len(encodings) == 1:
        return pad(text.encode(encodings[0]), vr)
    # Code extensions (ISO 2022): pydicom switches with escape sequences,
    # component group by component group for person names.
    if vr == "PN":
        return pad(PersonName(text).encode(encodings), vr)
    return pad(encode_string(text, encodings), vr)


def _rawElement(tag: int, vr: str, value: bytes) -> RawDataElement:
    """
    A raw element of explicit VR little endian, whose value (but not its
    header) is also that of implicit VR little endian.
    """
    return RawDataElement(_tag(tag), vr, len(value), value, 0, False, True, True, False)


def encodeResponse(dataset: Dataset, implicit: bool) -> Optional[bytes]:
    """
    Encode a data set of simple elements in explicit or implicit VR little
    endian, without pydicom's writer: the C-FIND responses of
    L{responseIdentifier} (raw elements) and plain ASCII text elements
    added to them (Retrieve AE Title).

    @param implicit: implicit VR little endian rather than explicit.
    @return: the encoded bytes, or C{None} when the data set holds an
        element this does not handle (a decoded value that is not ASCII
        text, a sequence, a number...); then encode it with pydicom.
    """
    encoding = IMPLICIT_LITTLE if implicit else EXPLICIT_LITTLE
    parts = []
    for tag in sorted(dataset.keys(), key=int):
        element = dataset.get_item(tag)
        vr = element.VR
        if element.is_raw:
            if element.is_little_endian is False or (element.is_implicit_VR and not implicit):
                return None
            value = element.value
            if value is None:
                value = b""
            elif not isinstance(value, bytes) or len(value) % 2:
                return None
        else:
            text = element.value
            if text is None:
                text = ""
            elif isinstance(text, PersonName):
                text = str(text)
            if not isinstance(text, str) or not text.isascii() or vr in LONG_LENGTH_VRS:
                return None
            value = pad(text.encode("ascii"), vr)
        if not implicit and not (vr and len(vr) == 2):
            return None
        try:
            parts.append(encoding.header(tag, vr, len(value)))
        except ValueError:
            return None
        parts.append(value)
    return b"".join(parts)


def _encodes(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeError:
        return False
    return True


def _encodable(text: str, encodings) -> bool:
    """
    Whether one of the encodings, or code extensions switching between
    them, can represent the text.
    """
    return any(_encodes(text, encoding) for encoding in encodings) or all(
        any(_encodes(character, encoding) for encoding in encodings) for character in text
    )


def responseCharacterSet(requested: Tuple[str, ...], texts: Iterable[str]) -> Tuple[str, ...]:
    """
    Choose the Specific Character Set of a response (see the module
    docstring).

    @param requested: the terms of the request's Specific Character Set,
        empty when it had none.
    @param texts: the response's values affected by the character set.
    @return: the terms to send, or C{()} to send no Specific Character Set.
    """
    texts = [text for text in texts if text]
    if all(term in ASCII_TERMS for term in requested):
        if all(text.isascii() for text in texts):
            return requested
        return ("ISO_IR 192",)
    encodings = convert_encodings(list(requested))
    if all(_encodable(text, encodings) for text in texts):
        return requested
    return ("ISO_IR 192",)
