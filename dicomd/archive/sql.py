"""
The SQL of the archive's index: the table of each Query/Retrieve level,
the key columns an instance's header fills, and the compiler of the
matching conditions of L{dicomd.archive.matching} into C{WHERE} clauses
(what dcmqrscp's C{dcmqrdbi.cc} does by walking C{index.dat} record by
record).  L{dicomd.archive.index.SQLiteArchiveIndex} builds its statements
from these; the schema itself is L{dicomd.archive.index.SCHEMA}.
"""

from dicomd.archive.matching import (
    Level,
    Range,
    SingleValue,
    UIDList,
    Unmatchable,
    Wildcard,
    attributeText,
    keysOfLevel,
    sortableValue,
)

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


def _singleValue(condition):
    return f"{_column(condition.key)} = ?", [condition.value]


def _wildcard(condition):
    # In a GLOB pattern "*" and "?" are what they are in DICOM, and "[" opens
    # a character class: "[[]" is a literal "[".
    return f"{_column(condition.key)} GLOB ?", [
        condition.pattern.replace("[", "[[]")
    ]


def _range(condition):
    column = _column(condition.key)
    terms, parameters = [f"{column} != ''"], []
    if condition.low is not None:
        terms.append(f"{column} >= ?")
        parameters.append(condition.low)
    if condition.high is not None:
        terms.append(f"{column} <= ?")
        parameters.append(condition.high)
    return " AND ".join(terms), parameters


def _uidList(condition):
    marks = ", ".join("?" * len(condition.uids))
    return f"{_column(condition.key)} IN ({marks})", list(condition.uids)


def _unmatchable(condition):
    return "0", []


_COMPILERS = {
    SingleValue: _singleValue,
    Wildcard: _wildcard,
    Range: _range,
    UIDList: _uidList,
    Unmatchable: _unmatchable,
}


def whereClause(area, level, conditions):
    """
    Compile the conditions of a query on the tables of a level and above.

    The storage area is required of the tables the conditions are on (of
    the level's table when there are none), where it leads the indexes
    that serve those conditions; the rows joined to them belong to the
    same area.  Requiring it of every table would tempt SQLite into
    scanning a whole area by its (area, UID) index.

    @return: the SQL after C{WHERE}, and its parameters.
    """
    tables = {TABLES[condition.key.level][0] for condition in conditions}
    terms = [f"{table}.area = ?" for table in sorted(tables or {TABLES[level][0]})]
    parameters = [area] * len(terms)
    for condition in conditions:
        term, values = _COMPILERS[type(condition)](condition)
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
