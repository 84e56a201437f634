"""
The SQL of the archive's index: the table of each Query/Retrieve level,
the key columns an instance's header fills, and the compiler of the
matching conditions of L{dicomd.archive.matching} into C{WHERE} clauses
(what dcmqrscp's C{dcmqrdbi.cc} does by walking C{index.dat} record by
record), in the dialect of SQLite or PostgreSQL.  The indexes of
L{dicomd.archive.index} build their statements from these; the schema
itself is L{dicomd.archive.index.SCHEMA}.
"""

from dicomd.archive.matching import (
    Level,
    Range,
    SingleValue,
    UIDList,
    Unmatchable,
    Wildcard,
    attributeText,
    elementText,
    keysOfLevel,
    sortableValue,
    uniqueKey,
)
from dicomd.dataset import storedElements

_SPECIFIC_CHARACTER_SET = 0x00080005

#: The table of each level, and the column that refers to its parent.
TABLES = {
    Level.PATIENT: ("patient", None),
    Level.STUDY: ("study", "patient"),
    Level.SERIES: ("series", "study"),
    Level.IMAGE: ("instance", "series"),
}


def columns(level, header):
    """
    The key columns of one level for an instance's header.

    @return: a list of (column, value, text) triples; C{text} is the value
        of the attribute the column comes from, which decides whether a
        later instance overwrites it.
    """
    result = []
    for key in keysOfLevel(level):
        text = attributeText(header, key)
        result.append((key.keyword, text, text))
        if key.ordered:
            result.append((key.keyword + "Sortable", sortableValue(key, text), text))
    return result


def sourceValues(level, header):
    """
    What the key columns of one level are computed from, for an instance's
    header: each key element's VR and value as the header holds them (raw
    or decoded), and its character set.  Two headers with the same source
    values give the same L{columns}, which are dearer to compute: an index
    writing the rows of a study's instances compares these first.
    """
    return tuple(None if element is None else (element.VR, element.value) for element in storedElements(header, _SOURCE_TAGS[level]))


#: The elements L{sourceValues} reads for each level: its keys' and the
#: character set.
_SOURCE_TAGS = {level: tuple(key.tag for key in keysOfLevel(level)) + (_SPECIFIC_CHARACTER_SET,) for level in Level}

#: The levels above an instance's.
_PARENT_LEVELS = (Level.PATIENT, Level.STUDY, Level.SERIES)


class HeaderKeys:
    """
    What an instance's header gives the index, read at once: each level's
    unique key, the source values of its patient, study and series
    (L{sourceValues}), its own key columns and its character set.

    The storage SCP has them read once it has answered the object, while
    its sender waits (L{dicomd.archive.writer.IndexWriter.prepare}): the
    index writer's thread then only writes them, instead of reading them
    while it holds the interpreter lock that the reactor needs for the
    next object.  The columns of a patient, study or series are read when
    its row is written, once per batch (L{columns}).

    @ivar header: the header, a pydicom L{Dataset}.
    @ivar uids: each level's unique key, by level.
    @ivar sources: the L{sourceValues} of the patient, study and series,
        by level.
    @ivar imageColumns: the instance's key columns, C{(column, value)}.
    @ivar characterSet: the text of its Specific Character Set.
    """

    __slots__ = ("header", "uids", "sources", "imageColumns", "characterSet")

    def __init__(self, header):
        self.header = header
        self.uids = {level: attributeText(header, uniqueKey(level)) for level in Level}
        self.sources = {level: sourceValues(level, header) for level in _PARENT_LEVELS}
        self.imageColumns = [(name, value) for name, value, _ in columns(Level.IMAGE, header)]
        self.characterSet = elementText(header.get(_SPECIFIC_CHARACTER_SET))

    @classmethod
    def of(cls, header) -> "HeaderKeys":
        """
        The keys of C{header}: itself when it is read already.
        """
        return header if type(header) is cls else cls(header)


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
