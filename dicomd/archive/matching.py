"""
C-FIND matching (PS3.4 C.2.2.2) and the hierarchical rules of the
Query/Retrieve information models (PS3.4 C.3, C.4.1.3), as DCMTK's
C{dcmqrscp} applies them (C{dcmqrdb/libsrc/dcmqrdbi.cc},
C{dcmdata/libsrc/dcmatch.cc}, DCMTK 3.6.8).

This module is pure: it turns a request identifier into a L{Query} made of
back-end neutral conditions (L{SingleValue}, L{Wildcard}, L{Range},
L{UIDList}, L{Unmatchable}), which L{dicomd.archive.sql} compiles into
SQL, and turns stored values back into response identifiers
(L{dicomd.archive.responses} encodes them).  It holds no SQL.

Query keys
==========

The keys are dcmqrscp's (its manual, "Query Keys"), each at its level, plus
SOP Class UID at the IMAGE level, which dcmqrscp stores but does not answer.
Keys of the request that are not in L{KEYS} (sequences included) are
ignored: they take no part in matching and are left out of the responses,
as dcmqrscp does.  Sequence matching (PS3.4 C.2.2.2.6) is not supported.

Matching, by value representation
=================================

Values are compared after removing leading and trailing spaces from the
query value and from the stored value (dcmqrscp trims both).

  - AE, CS, LO, LT, PN, SH, ST, UC, UR, UT: a value with C{*} or C{?} is
    wildcard matching (C{*} any sequence, possibly empty; C{?} exactly one
    character); without them, single value matching.  Matching is
    case-sensitive for every one of these, PN included.
  - DA, TM: single value or range matching (C{A-B}, C{A-}, C{-B}) on the
    parsed date or time, so C{20200101} equals the pre-1993 form
    C{2020.01.01} and C{1200} equals C{120000.000}.  A bound that does not
    parse matches nothing; a stored value that does not parse is never
    matched by a non-empty query.  The end of a time range is the instant
    it names: C{-1300} does not match C{130030} (dcmqrscp compares parsed
    times the same way).  StudyDate and StudyTime are matched
    independently: dcmqrscp does not do the combined date-time matching of
    PS3.4 C.2.2.2.5 (which an SCU may only rely on after extended
    negotiation), and none of its keys has the VR DT.
  - UI: list of UID matching (C{uid1\\uid2...}); a single UID is single
    value matching.  No wildcards.
  - AS, DS, IS: single value matching of the text (C{01} does not equal
    C{1}), as dcmqrscp does.
  - An empty value is universal matching, and so is a value made only of
    C{*} for the wildcard VRs.
  - Multi-valued attributes are matched as their whole text, values joined
    by C{\\}, as dcmqrscp matches them.

Person names are matched "as DCMTK does it": the complete PN value, all
component groups and C{^} separators included, compared character for
character and case-sensitively, with C{*} and C{?} free to span
components.  There is no component-wise, case-insensitive or phonetic
matching: C{Doe^John} matches C{Doe^John} and C{Doe*}, not C{DOE^JOHN},
C{Doe} or C{Doe^John^^^}.  DCMTK compares UTF-8 bytes, so its C{?} matches
one byte of a multi-byte character; here C{?} matches one character.

Hierarchy
=========

Without identifier checking, L{parseIdentifier} follows dcmqrscp's
hierarchical search:

  - the Query/Retrieve Level must be present (else failure
    L{IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS}) and be one of the model's
    levels (else L{UNABLE_TO_PROCESS}; dcmqrscp happens to answer SERIES
    queries in the Patient/Study Only model, we do not);
  - for every level of the model above the query level, the unique key of
    that level must be in the identifier (else L{UNABLE_TO_PROCESS}: "no
    unique key at level", which dcmqrscp reports as soon as its index holds
    one record); it is matched with the matching of its VR, so an empty
    value matches everything and a list of UIDs matches any of them; the
    other keys of those levels are not matched, only returned;
  - at the query level every key of that level is matched, and in the
    Study Root model at the STUDY level the patient keys too;
  - keys below the query level are ignored.  dcmqrscp returns them with
    the values of whichever instance matched first; we return them empty.

C-MOVE and C-GET identifiers are read the same way, as dcmqrscp reads
them.  L{checkFindIdentifier} and L{checkRetrieveIdentifier} apply the
strict rules of dcmqrscp's C{--check-find} and C{--check-move} before that.
Where dcmqrscp answers "unable to process" with status C000, the
L{QueryError}s here carry L{UNABLE_TO_PROCESS} (C001), in the same range.

Character sets
==============

Stored values are decoded to Unicode when they are indexed, and request
values are decoded by pydicom with the request's Specific Character Set, so
a query in ASCII, ISO_IR 100 or ISO_IR 192 matches values stored in any of
them.  A request without Specific Character Set (or declaring only ASCII)
whose values hold bytes above 0x7F is read as UTF-8 when those bytes are
valid UTF-8, else as Latin-1: dcmqrscp compares such bytes as they are with
the UTF-8 form of the stored values, so undeclared UTF-8 (findscu typed in
a UTF-8 terminal) matches there, and must here too.  Responses are built
and encoded by L{dicomd.archive.responses}.
"""

import enum
import re
from dataclasses import dataclass
from functools import cached_property

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue

from dicomd.archive.charsets import ASCII_TERMS
from dicomd.archive.responses import ResponseLayout
from dicomd.dataset import storedElement
from dicomd.dimse import uids as _uids
from dicomd.dimse.status import (
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    UNABLE_TO_PROCESS,
)


class Level(enum.IntEnum):
    """
    A Query/Retrieve level, ordered from the top of the hierarchy down.
    """

    PATIENT = 0
    STUDY = 1
    SERIES = 2
    IMAGE = 3


@dataclass(frozen=True)
class InformationModel:
    """
    A Query/Retrieve information model (PS3.4 C.6).

    @ivar name: its name in the standard.
    @ivar levels: its levels, top first.
    @ivar sopClassUIDs: the UIDs of its FIND, MOVE and GET SOP classes.
    """

    name: str
    levels: tuple
    sopClassUIDs: tuple


PATIENT_ROOT = InformationModel(
    "Patient Root",
    (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE),
    (
        _uids.PATIENT_ROOT_FIND,
        _uids.PATIENT_ROOT_MOVE,
        _uids.PATIENT_ROOT_GET,
    ),
)

STUDY_ROOT = InformationModel(
    "Study Root",
    (Level.STUDY, Level.SERIES, Level.IMAGE),
    (
        _uids.STUDY_ROOT_FIND,
        _uids.STUDY_ROOT_MOVE,
        _uids.STUDY_ROOT_GET,
    ),
)

PATIENT_STUDY_ONLY = InformationModel(
    "Patient/Study Only",
    (Level.PATIENT, Level.STUDY),
    (
        _uids.PATIENT_STUDY_ONLY_FIND,
        _uids.PATIENT_STUDY_ONLY_MOVE,
        _uids.PATIENT_STUDY_ONLY_GET,
    ),
)

MODELS = (PATIENT_ROOT, STUDY_ROOT, PATIENT_STUDY_ONLY)


def modelForSOPClass(sopClassUID):
    """
    The information model of a FIND, MOVE or GET SOP class.

    @param sopClassUID: the affected SOP class of a C-FIND, C-MOVE or C-GET.
    @return: an L{InformationModel}, or C{None} for any other SOP class.
    """
    for model in MODELS:
        if sopClassUID in model.sopClassUIDs:
            return model
    return None


#: Value representations that allow wildcard matching (PS3.4 C.2.2.2.4),
#: the list of DCMTK's DcmAttributeMatching.
WILDCARD_VRS = frozenset(
    ["AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"]
)


@dataclass(frozen=True)
class QueryKey:
    """
    An attribute that can be matched and returned.

    @ivar keyword: its keyword in the data dictionary, also the name of
        its column in the index.
    @ivar tag: its tag.
    @ivar vr: its value representation.
    @ivar level: the level it belongs to.
    @ivar unique: whether it is the unique key of its level.
    """

    keyword: str
    tag: int
    vr: str
    level: Level
    unique: bool = False

    @property
    def ordered(self):
        """
        Whether the key is matched on its parsed date or time, which the
        index keeps beside the text (see L{sortableValue}).
        """
        return self.vr in ("DA", "TM")


def _key(keyword, level, unique=False):
    tag = tag_for_keyword(keyword)
    return QueryKey(keyword, tag, dictionary_VR(tag), level, unique)


#: dcmqrscp's query keys (its TbFindAttr table), plus SOP Class UID.
KEYS = (
    _key("PatientName", Level.PATIENT),
    _key("PatientID", Level.PATIENT, unique=True),
    _key("IssuerOfPatientID", Level.PATIENT),
    _key("PatientBirthDate", Level.PATIENT),
    _key("PatientBirthTime", Level.PATIENT),
    _key("PatientSex", Level.PATIENT),
    _key("OtherPatientIDs", Level.PATIENT),
    _key("OtherPatientNames", Level.PATIENT),
    _key("EthnicGroup", Level.PATIENT),
    _key("PatientComments", Level.PATIENT),
    _key("StudyDate", Level.STUDY),
    _key("StudyTime", Level.STUDY),
    _key("AccessionNumber", Level.STUDY),
    _key("ReferringPhysicianName", Level.STUDY),
    _key("StudyDescription", Level.STUDY),
    _key("NameOfPhysiciansReadingStudy", Level.STUDY),
    _key("AdmittingDiagnosesDescription", Level.STUDY),
    _key("PatientAge", Level.STUDY),
    _key("PatientSize", Level.STUDY),
    _key("PatientWeight", Level.STUDY),
    _key("Occupation", Level.STUDY),
    _key("AdditionalPatientHistory", Level.STUDY),
    _key("StudyInstanceUID", Level.STUDY, unique=True),
    _key("StudyID", Level.STUDY),
    _key("OtherStudyNumbers", Level.STUDY),
    _key("Modality", Level.SERIES),
    _key("SeriesInstanceUID", Level.SERIES, unique=True),
    _key("SeriesNumber", Level.SERIES),
    _key("SOPInstanceUID", Level.IMAGE, unique=True),
    _key("SOPClassUID", Level.IMAGE),
    _key("InstanceNumber", Level.IMAGE),
)

_KEYS_BY_TAG = {key.tag: key for key in KEYS}
_UNIQUE_KEYS = {key.level: key for key in KEYS if key.unique}

_QUERY_RETRIEVE_LEVEL = 0x00080052
_SPECIFIC_CHARACTER_SET = 0x00080005


_KEYS_OF_LEVEL = {level: tuple(key for key in KEYS if key.level is level) for level in Level}


def keysOfLevel(level):
    """
    @param level: a L{Level}.
    @return: the L{QueryKey}s of that level, in L{KEYS} order.
    """
    return _KEYS_OF_LEVEL[level]


def uniqueKey(level):
    """
    @param level: a L{Level}.
    @return: the L{QueryKey} that identifies an entity of that level.
    """
    return _UNIQUE_KEYS[level]


def elementText(element):
    """
    The text of a data element as matching sees it.

    @param element: a pydicom C{DataElement}, or C{None}.
    @return: its values as Unicode, joined by C{\\}, without leading or
        trailing spaces (or NULs); C{""} for an absent or empty element.
    """
    if element is None or element.value is None:
        return ""
    value = element.value
    if isinstance(value, (list, tuple, MultiValue)):
        text = "\\".join("" if item is None else str(item) for item in value)
    else:
        text = str(value)
    return text.strip(" \x00")


def _valuesStripped(text):
    if "\\" not in text:
        return text.rstrip("\x00 ")
    return "\\".join(value.rstrip("\x00 ") for value in text.split("\\"))


def _uids(text):
    if "\\" not in text:
        return text.rstrip(" \x00").strip()
    return "\\".join(value.strip() for value in text.rstrip(" \x00").split("\\"))


def _whole(text):
    return text


def _simpleName(text):
    # A component group delimiter makes pydicom drop empty groups.
    return None if "=" in text else text


#: Numbers that pydicom keeps as they are written: an IS of at most ten
#: digits, and a DS of at most sixteen characters (longer ones it reshapes).
_INTEGER = re.compile(r" *[+\-]?[0-9]{1,10}[ \x00]*\Z")
_DECIMAL = re.compile(r" *(?=[^ \x00]{1,16}[ \x00]*\Z)[+\-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+\-]?[0-9]+)?[ \x00]*\Z")


def _simpleInteger(text):
    return text if _INTEGER.match(text) else None


def _simpleDecimal(text):
    return text if _DECIMAL.match(text) else None


#: How pydicom reads an ASCII value of each VR of L{KEYS}, as a function of
#: its text; C{None} sends the value pydicom's way.  The result is then
#: trimmed as L{elementText} trims.  C{tests/test_archive_matching.py}
#: holds the two ways equal.
_ASCII_TEXT = {
    "LO": _valuesStripped,
    "SH": _valuesStripped,
    "UI": _uids,
    "AS": _whole,
    "CS": _whole,
    "DA": _whole,
    "LT": _whole,
    "TM": _whole,
    "PN": _simpleName,
    "IS": _simpleInteger,
    "DS": _simpleDecimal,
}


def asciiText(foundVR, value, vr):
    """
    The L{elementText} of an undecoded element, read without building
    pydicom's value: most values are ASCII, which every character set
    decodes alike, and the index reads some thirty per instance.

    @param foundVR: the element's VR as written (C{None} in implicit VR).
    @param value: its value's bytes.
    @param vr: the VR of its L{QueryKey}.
    @return: the text, or C{None} when pydicom must decode the value.
    """
    if foundVR is not None and foundVR != vr:
        return None
    rule = _ASCII_TEXT.get(vr)
    if rule is None or value is None or not value.isascii() or b"\x1b" in value:
        return None
    text = rule(value.decode("ascii"))
    return None if text is None else text.strip(" \x00")


def attributeText(dataset, key):
    """
    @param dataset: a pydicom C{Dataset}.
    @param key: a L{QueryKey}.
    @return: the L{elementText} of that key in the dataset.
    """
    element = storedElement(dataset, key.tag)
    if element is None:
        return ""
    if type(element) is RawDataElement:
        text = asciiText(element.VR, element.value, key.vr)
        if text is not None:
            return text
        return decodedText(dataset, key)
    return elementText(element)


def decodedText(dataset, key):
    """
    The L{elementText} of the element of C{key} in C{dataset} as pydicom
    decodes it: for values that L{asciiText} leaves to pydicom.
    """
    try:
        return elementText(dataset.get(key.tag))
    except (ValueError, OverflowError):
        # pydicom cannot read it (an IS of "1e999"): its text as written.
        element = storedElement(dataset, key.tag)
        return bytes(element.value or b"").decode("ascii", "replace").strip(" \x00")


def _digits(text):
    return text.isascii() and text.isdigit()


def _sortableDate(text):
    if len(text) == 8 and _digits(text):
        year, month, day = text[:4], text[4:6], text[6:]
    elif (
        len(text) == 10
        and text[4] == "."
        and text[7] == "."
        and _digits(text[:4] + text[5:7] + text[8:])
    ):
        year, month, day = text[:4], text[5:7], text[8:]
    else:
        return ""
    if 1 <= int(month) <= 12 and 1 <= int(day) <= 31:
        return year + month + day
    return ""


def _timeFields(text):
    """
    Split a TM value the way DCMTK's DcmTime parses it: C{HH[MM[SS[.F]]]},
    or the old C{HH:MM[:SS[.F]]}.

    @return: (hours, minutes, seconds, fraction digits), or C{None}.
    """
    if len(text) < 2 or not _digits(text[:2]):
        return None
    if len(text) in (2, 4, 6) and _digits(text):
        return text[:2], text[2:4] or "00", text[4:6] or "00", ""
    if len(text) >= 8 and text[6] == "." and _digits(text[:6] + text[7:]):
        return text[:2], text[2:4], text[4:6], text[7:]
    if len(text) >= 5 and text[2] == ":" and _digits(text[3:5]):
        if len(text) == 5:
            return text[:2], text[3:5], "00", ""
        if text[5:6] == ":" and _digits(text[6:8]) and len(text) >= 8:
            if len(text) == 8:
                return text[:2], text[3:5], text[6:8], ""
            if text[8] == "." and len(text) > 9 and _digits(text[9:]):
                return text[:2], text[3:5], text[6:8], text[9:]
    return None


def _sortableTime(text):
    fields = _timeFields(text)
    if fields is None:
        return ""
    hours, minutes, seconds, fraction = fields
    fraction = (fraction + "000000")[:6]
    if int(hours) > 23 or int(minutes) > 59:
        return ""
    if int(seconds) > 60 or (int(seconds) == 60 and int(fraction)):
        return ""
    return f"{hours}{minutes}{seconds}.{fraction}"


def sortableValue(key, text):
    """
    The form of a DA or TM value that compares as its date or time does.

    @param key: an L{ordered<QueryKey.ordered>} L{QueryKey}.
    @param text: the value's text.
    @return: C{YYYYMMDD} for a date, C{HHMMSS.FFFFFF} for a time, or C{""}
        when the text is not a valid date or time.
    """
    if key.vr == "DA":
        return _sortableDate(text)
    return _sortableTime(text)


@dataclass(frozen=True)
class SingleValue:
    """
    The stored value must equal C{value}; for an L{ordered<QueryKey.ordered>}
    key, C{value} is the L{sortableValue} and so is what it is compared to.
    """

    key: QueryKey
    value: str


@dataclass(frozen=True)
class Wildcard:
    """
    The stored value must match C{pattern}, in which C{*} stands for any
    sequence of characters and C{?} for exactly one; every other character
    stands for itself.
    """

    key: QueryKey
    pattern: str


@dataclass(frozen=True)
class Range:
    """
    The L{sortableValue} of the stored value must be valid and lie between
    C{low} and C{high} inclusive; C{None} leaves that end open.
    """

    key: QueryKey
    low: str | None
    high: str | None


@dataclass(frozen=True)
class UIDList:
    """
    The stored value must be one of C{uids}.
    """

    key: QueryKey
    uids: tuple


@dataclass(frozen=True)
class Unmatchable:
    """
    No stored value matches (the query value is not a valid date or time).
    """

    key: QueryKey


def conditionFor(key, text):
    """
    The condition a query value puts on an attribute.

    @param key: a L{QueryKey}.
    @param text: the query value, as L{elementText} gives it.
    @return: a condition, or C{None} for universal matching.
    """
    if not text:
        return None
    if key.vr in WILDCARD_VRS:
        if not text.strip("*"):
            return None
        if "*" in text or "?" in text:
            return Wildcard(key, text)
        return SingleValue(key, text)
    if key.ordered:
        return _orderedCondition(key, text)
    if key.vr == "UI" and "\\" in text:
        return UIDList(key, tuple(text.split("\\")))
    return SingleValue(key, text)


def _orderedCondition(key, text):
    if "-" not in text:
        value = sortableValue(key, text)
        return SingleValue(key, value) if value else Unmatchable(key)
    first, second = text.split("-", 1)
    low = sortableValue(key, first) if first else None
    high = sortableValue(key, second) if second else None
    if low == "" or high == "":
        return Unmatchable(key)
    return Range(key, low, high)


class QueryError(Exception):
    """
    An identifier that cannot be matched.

    @ivar status: the DIMSE failure status to answer with.
    @ivar message: what is wrong, for the log and the Error Comment.
    """

    def __init__(self, status, message):
        Exception.__init__(self, message)
        self.status = status
        self.message = message


class IdentifierError(QueryError):
    """
    An identifier that breaks the strict hierarchical rules.
    """

    def __init__(self, message):
        QueryError.__init__(self, IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, message)


@dataclass(frozen=True)
class Query:
    """
    A parsed request identifier.

    @ivar model: its L{InformationModel}.
    @ivar level: its Query/Retrieve L{Level}.
    @ivar conditions: what a match must satisfy, all of it.
    @ivar returnKeys: the supported keys of the request, in tag order; a
        C-FIND response carries each of them.
    @ivar characterSet: the terms of the request's Specific Character Set.
    """

    model: InformationModel
    level: Level
    conditions: tuple
    returnKeys: tuple
    characterSet: tuple

    @property
    def storedKeys(self):
        """
        The return keys whose values come from the index: those of the
        query level and above.
        """
        return tuple(key for key in self.returnKeys if key.level <= self.level)

    @cached_property
    def layout(self):
        """
        The L{ResponseLayout} of this query's C-FIND responses: every return
        key (keys below the query level empty) and the Query/Retrieve
        Level.
        """
        elements = [
            (key.tag, key.vr, key.keyword if key.level <= self.level else None, "")
            for key in self.returnKeys
        ]
        elements.append((_QUERY_RETRIEVE_LEVEL, "CS", None, self.level.name))
        return ResponseLayout(elements, self.characterSet)

    def response(self, values):
        """
        Build the identifier of one C-FIND response.

        @param values: the text of each of L{storedKeys}, by keyword.
        @return: a L{dicomd.archive.responses.ResponseIdentifier} with every
            return key, the Query/Retrieve Level, and the Specific
            Character Set that
            L{dicomd.archive.responses.responseCharacterSet} chooses.
        """
        return self.layout.response(values)


def _queryLevel(identifier):
    text = elementText(identifier.get(_QUERY_RETRIEVE_LEVEL))
    if not text:
        raise QueryError(
            IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "missing Query/Retrieve Level"
        )
    try:
        return Level[text.upper()]
    except KeyError:
        raise QueryError(
            UNABLE_TO_PROCESS, f"illegal Query/Retrieve Level {text!r}"
        ) from None


def _undeclared(text):
    """
    A value of a request that declares no character set beyond ASCII, as
    pydicom decoded it (bytes above 0x7F as Latin-1): read again as UTF-8
    when its bytes are valid UTF-8.
    """
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text


def _requestKeys(identifier):
    """
    The supported keys of an identifier with their text, in tag order.
    """
    keys = [
        (_KEYS_BY_TAG[tag], elementText(identifier[tag]))
        for tag in sorted(identifier.keys())
        if tag in _KEYS_BY_TAG
    ]
    if all(term in ASCII_TERMS for term in _characterSet(identifier)):
        keys = [(key, _undeclared(text)) for key, text in keys]
    return keys


def _characterSet(identifier):
    """
    The terms of an identifier's Specific Character Set as it wrote them.
    Unlike L{dicomd.archive.charsets.characterSetTerms}, terms that only
    name ASCII are kept: a response to a request that declared them
    declares them again
    (L{dicomd.archive.responses.responseCharacterSet}).
    """
    element = identifier.get(_SPECIFIC_CHARACTER_SET)
    if element is None or not element.value:
        return ()
    value = element.value
    terms = [value] if isinstance(value, str) else list(value)
    return tuple((term or "").strip() for term in terms)


def _levelInModel(model, level):
    if level not in model.levels:
        raise QueryError(
            UNABLE_TO_PROCESS,
            f"level {level.name} is not part of the {model.name} model",
        )


def parseIdentifier(model, identifier):
    """
    Read a C-FIND, C-MOVE or C-GET identifier the way dcmqrscp's
    hierarchical search reads it (see the module docstring).

    @param model: an L{InformationModel}.
    @param identifier: the request identifier, a pydicom C{Dataset}.
    @return: a L{Query}.
    @raise QueryError: when the identifier cannot be matched.
    """
    level = _queryLevel(identifier)
    _levelInModel(model, level)
    requested = _requestKeys(identifier)
    texts = {key: text for key, text in requested}
    conditions = []
    for above in model.levels[: model.levels.index(level)]:
        unique = uniqueKey(above)
        if unique not in texts:
            raise QueryError(
                UNABLE_TO_PROCESS,
                f"no unique key ({unique.keyword}) at level {above.name}",
            )
        conditions.append(conditionFor(unique, texts[unique]))
    patientKeysMatch = model is STUDY_ROOT and level is Level.STUDY
    for key, text in requested:
        if key.level is level or (patientKeysMatch and key.level is Level.PATIENT):
            conditions.append(conditionFor(key, text))
    return Query(
        model,
        level,
        tuple(condition for condition in conditions if condition is not None),
        tuple(key for key, _ in requested),
        _characterSet(identifier),
    )


def _checkIdentifier(model, identifier, retrieve):
    level = _queryLevel(identifier)
    try:
        _levelInModel(model, level)
    except QueryError as e:
        raise IdentifierError(e.message) from None
    requested = _requestKeys(identifier)
    for current in Level:
        present = [(key, text) for key, text in requested if key.level is current]
        if current is Level.PATIENT and model is STUDY_ROOT:
            if present and (retrieve or level is not Level.STUDY):
                raise IdentifierError(
                    f"patient key {present[0][0].keyword} in a Study Root "
                    f"{'retrieval' if retrieve else 'query'} at level {level.name}"
                )
        elif current < level or (retrieve and current is level):
            _checkOnlyUniqueKey(current, present)
        elif current is level:
            if not present:
                raise IdentifierError(f"no key of the query level {level.name}")
        elif present:
            raise IdentifierError(
                f"key {present[0][0].keyword} below the query level {level.name}"
            )


def _checkOnlyUniqueKey(level, present):
    for key, text in present:
        if not key.unique:
            raise IdentifierError(
                f"non-unique key {key.keyword} at level {level.name}"
            )
        if not text:
            raise IdentifierError(
                f"empty unique key {key.keyword} at level {level.name}"
            )
    if not present:
        raise IdentifierError(
            f"no unique key ({uniqueKey(level).keyword}) at level {level.name}"
        )


def checkFindIdentifier(model, identifier):
    """
    Apply the strict rules of dcmqrscp's C{--check-find} to a C-FIND
    identifier: a level of the model; for each level above it exactly its
    unique key, with a value; at least one key of the query level; no key
    below it; in the Study Root model, patient keys only in STUDY queries.

    @param model: an L{InformationModel}.
    @param identifier: a pydicom C{Dataset}.
    @raise QueryError: L{IdentifierError} when a rule is broken, or the
        failures of L{parseIdentifier} for the Query/Retrieve Level.
    """
    _checkIdentifier(model, identifier, retrieve=False)


def checkRetrieveIdentifier(model, identifier):
    """
    Apply the strict rules of dcmqrscp's C{--check-move} to a C-MOVE or
    C-GET identifier: as L{checkFindIdentifier}, except that the query
    level too holds its unique key and nothing else, and the Study Root
    model allows no patient key at all.

    @param model: an L{InformationModel}.
    @param identifier: a pydicom C{Dataset}.
    @raise QueryError: as L{checkFindIdentifier}.
    """
    _checkIdentifier(model, identifier, retrieve=True)


