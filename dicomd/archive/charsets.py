"""
Character sets of C-FIND responses (PS3.5 6.1, Specific Character Set;
PS3.3 C.12.1.1.2 for its defined terms), as dcmqrscp handles them.

The tables both the matching rules (L{dicomd.archive.matching}, which
picks the character set a response is encoded in) and the conversions here
use: the value representations Specific Character Set affects, the terms
that name ASCII, and the Python codecs of a set of terms.

L{ResponseCharacterSet} then converts the responses the index makes as
dcmqrscp's character set options (C{+A7}, C{--convert-to-xxx}, C{-Cr},
C{-Ct}, C{-Cd}) and the C{SpecificCharacterSet} line of C{dcmqrscp.cfg}
ask; L{ConvertingIndex} is an index whose C-FIND responses come out
converted so.  Pure: no Twisted, no SQL.
"""

import unicodedata
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from pydicom.charset import convert_encodings
from pydicom.dataset import Dataset


#: The value representations whose values Specific Character Set affects.
CHARACTER_SET_VRS = frozenset(["LO", "LT", "PN", "SH", "ST", "UC", "UT"])

#: The Specific Character Set terms that name ASCII, the default repertoire.
ASCII_TERMS = frozenset(["", "ISO_IR 6", "ISO 2022 IR 6"])


def characterSetTerms(value) -> Tuple[str, ...]:
    """
    The defined terms of a Specific Character Set value (a string with
    terms separated by backslashes, a list, or C{None}), without those
    that only name ASCII; C{()} means ASCII.
    """
    if value is None:
        return ()
    terms = value.split("\\") if isinstance(value, str) else list(value)
    terms = tuple((term or "").strip() for term in terms)
    return () if all(term in ASCII_TERMS for term in terms) else terms


def pythonEncodings(terms: Sequence[str]) -> List[str]:
    """
    The Python codecs of Specific Character Set terms; C{()} is ASCII.
    """
    return ["ascii"] if not terms else convert_encodings(list(terms))


def _representable(character: str, encodings: Sequence[str]) -> bool:
    for encoding in encodings:
        try:
            character.encode(encoding)
        except UnicodeError:
            continue
        return True
    return False


@dataclass(frozen=True)
class ResponseCharacterSet:
    """
    How C-FIND responses are converted, as dcmqrscp's character set
    options and the C{SpecificCharacterSet} line of its configuration
    describe it (DCMTK C{dcmqrdbi.cc}, C{nextFindResponse}).

    A response goes in the request's character set, or with C{override} in
    C{characterSet}; when that cannot represent its values, in the other of
    the two if C{fallback}; when neither can, it is left as the index made
    it (in the request's character set if possible, else UTF-8).

    @ivar characterSet: the defined terms of C{--convert-to-xxx}; C{()}
        for ASCII (C{+A7}, the default).
    @ivar override: C{-Cr}: convert to C{characterSet} first.
    @ivar fallback: try the other character set when the first fails.
    @ivar transliterate: C{-Ct}: replace a character the target cannot
        represent by its base letter (C{é} becomes C{e}), or C{?}.
    @ivar discard: C{-Cd}: drop the characters the target cannot
        represent.
    """

    characterSet: Tuple[str, ...] = ()
    override: bool = False
    fallback: bool = True
    transliterate: bool = False
    discard: bool = False

    def convert(self, response: Dataset, requested: Tuple[str, ...]) -> Dataset:
        """
        Convert one response in place.

        @param requested: the request's L{characterSetTerms}.
        @return: C{response}.
        """
        first, second = (self.characterSet, requested) if self.override else (requested, self.characterSet)
        targets = [first] + ([second] if self.fallback and second != first else [])
        elements = [element for element in response if element.VR in CHARACTER_SET_VRS and element.value]
        for target in targets:
            converted = self._values(elements, pythonEncodings(target))
            if converted is None:
                continue
            for element, value in zip(elements, converted):
                if value != str(element.value):
                    element.value = value
            if target:
                response.SpecificCharacterSet = target[0] if len(target) == 1 else list(target)
            elif "SpecificCharacterSet" in response:
                del response.SpecificCharacterSet
            break
        return response

    def _values(self, elements, encodings: Sequence[str]) -> Optional[List[str]]:
        values = []
        for element in elements:
            text = self._text(str(element.value), encodings)
            if text is None:
                return None
            values.append(text)
        return values

    def _text(self, text: str, encodings: Sequence[str]) -> Optional[str]:
        pieces = []
        for character in text:
            if _representable(character, encodings):
                pieces.append(character)
                continue
            if self.transliterate:
                base = "".join(
                    c for c in unicodedata.normalize("NFKD", character) if not unicodedata.combining(c) and _representable(c, encodings)
                )
                if base or not self.discard:
                    pieces.append(base or "?")
                    continue
            if not self.discard:
                return None
        return "".join(pieces)


class _ConvertedResponses:
    """
    The L{dicomd.archive.asyncindex.PendingResponses} of a C-FIND, converted by
    a L{ResponseCharacterSet} as they are read: pydicom C{Dataset}s rather
    than the index's L{dicomd.archive.responses.ResponseIdentifier}s.
    """

    def __init__(self, responses, conversion: ResponseCharacterSet, requested: Tuple[str, ...]):
        self._responses = responses
        self._conversion = conversion
        self._requested = requested

    def next(self, count: int = 100):
        return self._responses.next(count).addCallback(
            lambda batch: [self._conversion.convert(response.dataset(), self._requested) for response in batch]
        )

    def close(self):
        return self._responses.close()


class ConvertingIndex:
    """
    An L{dicomd.archive.asyncindex.AsyncArchiveIndex} whose C-FIND responses
    are converted by a L{ResponseCharacterSet}; its other methods are the
    index's own.
    """

    def __init__(self, index, conversion: ResponseCharacterSet):
        self._index = index
        self._conversion = conversion

    def __getattr__(self, name):
        return getattr(self._index, name)

    def find(self, area, model, identifier, checkIdentifier=False):
        requested = characterSetTerms(identifier.get("SpecificCharacterSet"))
        found = self._index.find(area, model, identifier, checkIdentifier)
        return found.addCallback(lambda responses: _ConvertedResponses(responses, self._conversion, requested))

