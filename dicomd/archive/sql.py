"""
The SQL of the archive's index: the table of each Query/Retrieve level,
the key columns an instance's header fills, and the compiler of the
matching conditions of L{dicomd.archive.matching} into C{WHERE} clauses
(what dcmqrscp's C{dcmqrdbi.cc} does by walking C{index.dat} record by
record), in the dialect of SQLite or PostgreSQL.  The indexes of
L{dicomd.archive.index} build their statements from these; the schema
itself is L{dicomd.archive.index.SCHEMA}.
"""

from operator import itemgetter

from pydicom.dataset import Dataset

from dicomd.archive.matching import (
    Level,
    Range,
    SingleValue,
    UIDList,
    Unmatchable,
    Wildcard,
    asciiText,
    attributeText,
    decodedText,
    elementText,
    keysOfLevel,
    sortableValue,
    uniqueKey,
)
from dicomd.storage.part10 import HeadScan

_SPECIFIC_CHARACTER_SET = 0x00080005

#: The table of each level, and the column that refers to its parent.
TABLES = {
    Level.PATIENT: ("patient", None),
    Level.STUDY: ("study", "patient"),
    Level.SERIES: ("series", "study"),
    Level.IMAGE: ("instance", "series"),
}


def columns(level, texts):
    """
    The key columns of one level for an instance's header.

    @param texts: the text of each key of the level (as
        L{attributeText} reads it), by tag, as L{HeaderKeys.texts}.
    @return: a list of (column, value, text) triples; C{text} is the value
        of the attribute the column comes from, which decides whether a
        later instance overwrites it.
    """
    result = []
    for key in keysOfLevel(level):
        text = texts[key.tag]
        result.append((key.keyword, text, text))
        if key.ordered:
            result.append((key.keyword + "Sortable", sortableValue(key, text), text))
    return result


#: The levels above an instance's.
_PARENT_LEVELS = (Level.PATIENT, Level.STUDY, Level.SERIES)

#: Every key, and the tags of the keys of each level.
_KEYS = tuple(key for level in Level for key in keysOfLevel(level))
_KEYS_BY_TAG = {key.tag: key for key in _KEYS}
_KEY_TAGS = frozenset(_KEYS_BY_TAG)
_NO_TEXTS = dict.fromkeys(_KEY_TAGS, "")
#: The texts of the keys of each level above an instance's, from
#: L{HeaderKeys.texts}.
_PARENT_TEXTS = tuple((level, itemgetter(*[key.tag for key in keysOfLevel(level)])) for level in _PARENT_LEVELS)
_UNIQUE_TAGS = tuple((level, uniqueKey(level).tag) for level in Level)

#: What L{HeaderKeys.fromScan} reads: the keys and the character set.
_SCANNED_TAGS = _KEY_TAGS | {_SPECIFIC_CHARACTER_SET}


class HeaderKeys:
    """
    What an instance's header gives the index, read at once: the text of
    each of its keys, each level's unique key among them, and its
    character set.

    The storage SCP has them read once it has answered the object, while
    its sender waits (L{dicomd.archive.writer.IndexWriter.prepare}): the
    index writer's thread then only writes them, instead of reading them
    while it holds the interpreter lock that the reactor needs for the
    next object.  Most are read straight from the bytes the data set
    arrived in (L{fromScan}), without pydicom's elements.

    @ivar texts: the text of each key (L{attributeText}), by tag, C{""}
        for those the header lacks.
    @ivar uids: each level's unique key, by level.
    @ivar sources: the texts of the keys of the patient, study and series,
        by level: two instances with the same give their parent the same
        L{columns}, which the index then need not write again.
    @ivar imageColumns: the instance's key columns, C{(column, value)}.
    @ivar characterSet: the text of its Specific Character Set.
    """

    __slots__ = ("texts", "uids", "sources", "imageColumns", "characterSet")

    def __init__(self, texts: dict, characterSet: str):
        self.texts = texts
        self.uids = {level: texts[tag] for level, tag in _UNIQUE_TAGS}
        self.sources = {level: textsOf(texts) for level, textsOf in _PARENT_TEXTS}
        self.imageColumns = [(name, value) for name, value, _ in columns(Level.IMAGE, texts)]
        self.characterSet = characterSet

    @classmethod
    def fromDataset(cls, header: Dataset) -> "HeaderKeys":
        """
        The keys of a pydicom data set.
        """
        texts = {key.tag: attributeText(header, key) for key in _KEYS}
        return cls(texts, elementText(header.get(_SPECIFIC_CHARACTER_SET)))

    @classmethod
    def fromScan(cls, scan: HeadScan) -> "HeaderKeys":
        """
        The keys of a data set's head as found in its bytes: the ASCII
        values (nearly all) read there as L{asciiText} reads them, the
        others decoded by pydicom from the data set the scan makes, once.
        Both give what L{fromDataset} gives for that data set.
        """
        raw = scan.rawValues(_SCANNED_TAGS)
        characterSet = raw.pop(_SPECIFIC_CHARACTER_SET, None)
        texts = _NO_TEXTS.copy()
        dataset = None
        for tag, (foundVR, value) in raw.items():
            key = _KEYS_BY_TAG[tag]
            text = asciiText(foundVR, value, key.vr)
            if text is None:
                if dataset is None:
                    dataset = scan.dataset()
                text = decodedText(dataset, key)
            texts[tag] = text
        if characterSet is None:
            return cls(texts, "")
        value = characterSet[1]
        if value.isascii() and b"\\" not in value:
            return cls(texts, value.decode("ascii").strip(" \x00"))
        if dataset is None:
            dataset = scan.dataset()
        return cls(texts, elementText(dataset.get(_SPECIFIC_CHARACTER_SET)))

    @classmethod
    def of(cls, header) -> "HeaderKeys":
        """
        The keys of C{header}: a pydicom data set, a L{HeadScan}, or keys
        read already (returned as they are).
        """
        kind = type(header)
        if kind is cls:
            return header
        if kind is HeadScan:
            return cls.fromScan(header)
        return cls.fromDataset(header)

    def columns(self, level) -> list:
        """
        The L{columns} of one level.
        """
        return columns(level, self.texts)


def fromClause(level):
    """
    The table of a level joined with those of every level above it.
    """
    clause = TABLES[level][0]
    for child in range(level, Level.PATIENT, -1):
        table, parentColumn = TABLES[Level(child)]
        parentTable = TABLES[Level(child - 1)][0]
        clause += f" JOIN {parentTable} ON {table}.{parentColumn} = {parentTable}.id"
    return clause


def _column(key):
    table = TABLES[key.level][0]
    suffix = "Sortable" if key.ordered else ""
    return f"{table}.{key.keyword}{suffix}"


def _singleValue(condition, dialect):
    return f"{_column(condition.key)} = ?", [condition.value]


class SQLiteDialect:
    """
    What SQLite says its own way: wildcard matching with C{GLOB}, which is
    case-sensitive as DICOM's is, where C{*} and C{?} are what they are in
    DICOM and C{[} opens a character class (C{[[]} is a literal C{[}).
    """

    name = "SQLite"

    def wildcard(self, column, pattern):
        return f"{column} GLOB ?", [pattern.replace("[", "[[]")]


class PostgreSQLDialect:
    """
    What PostgreSQL says its own way: wildcard matching with C{LIKE}
    (case-sensitive), where C{*} becomes C{%} and C{?} becomes C{_}, and
    C{%}, C{_} and the escape character itself are escaped.  The columns
    are in the C{"C"} collation, so a B-tree index serves a C{LIKE} of a
    fixed prefix.
    """

    name = "PostgreSQL"

    def wildcard(self, column, pattern):
        escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"{column} LIKE ? ESCAPE '\\'", [escaped.replace("*", "%").replace("?", "_")]


SQLITE = SQLiteDialect()
POSTGRESQL = PostgreSQLDialect()


def _wildcard(condition, dialect):
    return dialect.wildcard(_column(condition.key), condition.pattern)


def _range(condition, dialect):
    column = _column(condition.key)
    terms, parameters = [f"{column} != ''"], []
    if condition.low is not None:
        terms.append(f"{column} >= ?")
        parameters.append(condition.low)
    if condition.high is not None:
        terms.append(f"{column} <= ?")
        parameters.append(condition.high)
    return " AND ".join(terms), parameters


def _uidList(condition, dialect):
    marks = ", ".join("?" * len(condition.uids))
    return f"{_column(condition.key)} IN ({marks})", list(condition.uids)


def _unmatchable(condition, dialect):
    return "1 = 0", []


_COMPILERS = {
    SingleValue: _singleValue,
    Wildcard: _wildcard,
    Range: _range,
    UIDList: _uidList,
    Unmatchable: _unmatchable,
}


def whereClause(area, level, conditions, dialect=SQLITE):
    """
    Compile the conditions of a query on the tables of a level and above.

    The storage area is required of the tables the conditions are on (of
    the level's table when there are none), where it leads the indexes
    that serve those conditions; the rows joined to them belong to the
    same area.  Requiring it of every table would tempt SQLite into
    scanning a whole area by its (area, UID) index.

    @param dialect: L{SQLITE} or L{POSTGRESQL}.
    @return: the SQL after C{WHERE}, and its parameters.
    """
    tables = {TABLES[condition.key.level][0] for condition in conditions}
    terms = [f"{table}.area = ?" for table in sorted(tables or {TABLES[level][0]})]
    parameters = [area] * len(terms)
    for condition in conditions:
        term, values = _COMPILERS[type(condition)](condition, dialect)
        terms.append(term)
        parameters.extend(values)
    return " AND ".join(terms), parameters


#: The columns of an instance row a L{dicomd.archive.index.StoredInstance}
#: is made of, in the order of its fields.
INSTANCE_COLUMNS = (
    "instance.SOPClassUID, instance.SOPInstanceUID, "
    "instance.TransferSyntaxUID, instance.path, instance.size, "
    "instance.received"
)
