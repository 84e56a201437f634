"""
C-FIND response identifiers (PS3.4 C.4.1.1.3.2): their values encoded in
the response's character set, and the identifiers encoded for the wire
without pydicom's writer.

Responses
=========

A response holds every return key, the Query/Retrieve Level and, when
needed, the Specific Character Set.  dcmqrscp also adds Retrieve AE Title
(0008,0054), the called AE title: that is for the C-FIND SCP to add, as it
encodes the response.

A C-FIND with many matches spends its time on the responses, so they are
not pydicom data sets.  A L{ResponseLayout}, made once per query, holds
the elements every response carries, in tag order, with the fixed part of
each element header encoded; a L{ResponseIdentifier} holds one match's
values, already encoded, and writes itself in the little endian
uncompressed syntaxes with a join.  Other transfer syntaxes, and the
conversions of L{dicomd.archive.charsets}, take its pydicom C{Dataset} of
raw elements (L{ResponseIdentifier.dataset}), which L{encodeResponse}
writes without pydicom's writer when it can.

Character sets
==============

A response is encoded in the character set of its request when that can
represent every value of the response; otherwise it is sent in UTF-8
(C{ISO_IR 192}).  A request without Specific Character Set gets responses
without it when they are plain ASCII.  (dcmqrscp converts to the request's
character set too, and keeps the stored one when that fails.)
"""

import bisect
import struct
from typing import Iterable, List, Optional, Sequence, Tuple

from pydicom.charset import convert_encodings, encode_string
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import PersonName

from dicomd.archive.charsets import ASCII_TERMS, CHARACTER_SET_VRS, pythonEncodings
from dicomd.codec.elements import EXPLICIT_LITTLE, IMPLICIT_LITTLE
from dicomd.dataset import TAG_OBJECTS, tagObject
from dicomd.codec.vr import LONG_LENGTH_VRS, SPACE_PADDED_VRS, pad

_SPECIFIC_CHARACTER_SET = 0x00080005
_RETRIEVE_AE_TITLE = 0x00080054

def _tag(tag: int) -> BaseTag:
    """
    pydicom's tag object for a tag of responses, made once
    (L{TAG_OBJECTS}).
    """
    found = TAG_OBJECTS.get(tag)
    return tagObject(tag) if found is None else found


#: Every printable ASCII character: a character set that can encode them
#: can encode any ASCII value.
_PRINTABLE_ASCII = "".join(chr(code) for code in range(0x20, 0x7F))


class ResponseLayout:
    """
    The elements of every response to one C-FIND, in tag order: the return
    keys and the Query/Retrieve Level.  Made once per query, so that each
    match costs a lookup, an encode and a join per element.

    @ivar tags: the elements' tags, ascending.
    @ivar vrs: their VRs.
    @ivar sources: for each element, the keyword its value is read by from
        an index row, and the value of an element that is the same in
        every response (whose keyword is C{None}).
    @ivar requested: the terms of the request's Specific Character Set.
    @ivar headers: for implicit (C{True}) and explicit VR little endian,
        each element's header as its fixed prefix and the packing of its
        value length.
    @ivar retrieveAt: where Retrieve AE Title goes among the elements.
    """

    def __init__(self, elements: Sequence[Tuple[int, str, Optional[str], str]], requested: Tuple[str, ...]):
        """
        @param elements: the tag, VR, source keyword (or C{None}) and
            constant text of each element, in any order.
        @param requested: see L{requested}.
        """
        elements = sorted(elements)
        self.tags = tuple(tag for tag, _, _, _ in elements)
        self.vrs = tuple(vr for _, vr, _, _ in elements)
        self.sources = tuple((source, constant) for _, _, source, constant in elements)
        self.requested = requested
        self._padding = tuple(b" " if vr in SPACE_PADDED_VRS else b"\x00" for vr in self.vrs)
        self.headers = {
            implicit: tuple(_headerParts(encoding, tag, vr) for tag, vr in zip(self.tags, self.vrs))
            for implicit, encoding in ((True, IMPLICIT_LITTLE), (False, EXPLICIT_LITTLE))
        }
        # The character set of a response whose values are all ASCII (most
        # of them): the request's, unless it cannot encode ASCII.
        self._asciiCharacterSet = responseCharacterSet(requested, [_PRINTABLE_ASCII])
        self.retrieveAt = bisect.bisect(self.tags, _RETRIEVE_AE_TITLE)

    def response(self, row) -> "ResponseIdentifier":
        """
        The response identifier of one match.

        @param row: the text of each element's source, by keyword.
        """
        texts = [row[source] if source is not None else constant for source, constant in self.sources]
        if "".join(texts).isascii():
            values = []
            for text, padding in zip(texts, self._padding):
                value = text.encode("ascii")
                values.append(value + padding if len(value) % 2 else value)
            return ResponseIdentifier(self, values, self._asciiCharacterSet)
        characterSet = responseCharacterSet(self.requested, [text for vr, text in zip(self.vrs, texts) if vr in CHARACTER_SET_VRS])
        encodings = pythonEncodings(characterSet)
        return ResponseIdentifier(self, [_encodeValue(vr, text, encodings) for vr, text in zip(self.vrs, texts)], characterSet)


def _headerParts(encoding, tag: int, vr: str):
    """
    An element header as a fixed prefix and the packing of its length.
    """
    header = encoding.header(tag, vr, 0)
    if len(header) == 8 and not encoding.implicit and vr not in LONG_LENGTH_VRS:
        return header[:6], _SHORT_LENGTH.pack
    return header[:-4], _LONG_LENGTH.pack


_SHORT_LENGTH = struct.Struct("<H")
_LONG_LENGTH = struct.Struct("<L")


class ResponseIdentifier:
    """
    The identifier of one C-FIND response: the values of its
    L{ResponseLayout}'s elements, encoded in its character set and padded
    to even length.

    @ivar characterSet: the terms of its Specific Character Set, which
        L{responseCharacterSet} chose; C{()} for none.
    """

    __slots__ = ("layout", "values", "characterSet")

    def __init__(self, layout: ResponseLayout, values: List[bytes], characterSet: Tuple[str, ...]):
        self.layout = layout
        self.values = values
        self.characterSet = characterSet

    def encode(self, implicit: bool, retrieveAETitle: str) -> bytes:
        """
        Encode the identifier in implicit or explicit VR little endian, with
        its Specific Character Set and the Retrieve AE Title (0008,0054).

        @param retrieveAETitle: an ASCII AE title (the default repertoire);
            for any other, use L{dataset}.
        """
        encoding = IMPLICIT_LITTLE if implicit else EXPLICIT_LITTLE
        parts = []
        append = parts.append
        if self.characterSet:
            # (0008,0005) comes before every key a query can return.
            value = _characterSetValue(self.characterSet)
            append(encoding.header(_SPECIFIC_CHARACTER_SET, "CS", len(value)))
            append(value)
        retrieveAt = self.layout.retrieveAt
        values = self.values
        for (prefix, length), value in zip(self.layout.headers[implicit][:retrieveAt], values):
            append(prefix)
            append(length(len(value)))
            append(value)
        title = pad(retrieveAETitle.encode("ascii"), "AE")
        append(encoding.header(_RETRIEVE_AE_TITLE, "AE", len(title)))
        append(title)
        for (prefix, length), value in zip(self.layout.headers[implicit][retrieveAt:], values[retrieveAt:]):
            append(prefix)
            append(length(len(value)))
            append(value)
        return b"".join(parts)

    def dataset(self) -> Dataset:
        """
        The identifier as a pydicom C{Dataset} of raw elements, which
        pydicom decodes only if someone reads them: for the transfer
        syntaxes L{encode} does not write, and for character set
        conversions.  It has no Retrieve AE Title (L{addRetrieveAETitle}).
        """
        elements = {_tag(tag): _rawElement(tag, vr, value) for tag, vr, value in zip(self.layout.tags, self.layout.vrs, self.values)}
        if self.characterSet:
            elements[_tag(_SPECIFIC_CHARACTER_SET)] = _rawElement(_SPECIFIC_CHARACTER_SET, "CS", _characterSetValue(self.characterSet))
        return Dataset(elements)


def _characterSetValue(terms: Tuple[str, ...]) -> bytes:
    return pad("\\".join(terms).encode("ascii"), "CS")


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
