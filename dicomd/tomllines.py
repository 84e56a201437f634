"""
Where each key of a TOML document is set: a line-locating lexer for one-line
error messages that name the file and the line.

C{tomllib} gives values without positions.  L{KeyLines} finds the
statements of the text again (table headers and key assignments, but not
comments nor the continuation lines of multi-line strings and arrays), so
that a mistake found in a value can be reported at the line of its key, and
a line C{tomllib} refuses can be reported with the key it sets.
"""

import re
from typing import Dict, List, Optional, Sequence, Tuple


class KeyLines:
    """
    The statements of a TOML text, by line.

    @ivar lines: the text's lines.
    """

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def statements(self):
        """
        The key paths the document sets, in order, as C{(line number,
        path, isHeader)}; a path is a list of C{(name, index)} with the
        index of the entry for arrays of tables (C{[[ae]]}).  Comments and
        the continuation lines of multi-line strings and arrays are
        skipped, so a value that looks like a key is not taken for one.
        """
        current: List[Tuple[str, Optional[int]]] = []
        arrays: Dict[Tuple[str, ...], int] = {}
        for number, statement in _statementLines(self.lines):
            header = re.match(r"^(\[\[?)\s*([^\]]+?)\s*\]", statement)
            if header:
                names = _dotted(header.group(2))
                if header.group(1) == "[[":
                    arrays[tuple(names)] = arrays.get(tuple(names), -1) + 1
                current = [(name, arrays.get(tuple(names[: i + 1]))) for i, name in enumerate(names)]
                yield number, current, True
                continue
            assignment = re.match(r"^((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=", statement)
            if assignment:
                yield number, current + [(name, None) for name in _dotted(assignment.group(1))], False

    def lineOf(self, key: str) -> Optional[int]:
        """
        The line where a dotted key (C{ae[1].quota.max-studies}) is set:
        the line of the key itself, or else of the nearest enclosing key or
        table header (an inline table, a list entry).
        """
        wanted = [_part(part) for part in key.split(".")]
        nearest = None
        depth = 0
        for number, found, isHeader in self.statements():
            if _matches(found, wanted):
                if len(found) == len(wanted):
                    return number
                if len(found) > depth:
                    nearest, depth = number, len(found)
        return nearest

    def keyAt(self, line: int) -> str:
        """
        The dotted key set on a line (or the table its header opens), or
        C{""}; for messages about lines that are not valid TOML.
        """
        result = ""
        for number, found, isHeader in self.statements():
            if number > line:
                break
            if number == line or isHeader:
                result = ".".join(name if index is None else "%s[%d]" % (name, index) for name, index in found)
            if number == line:
                return result
        return ""


def _part(text: str) -> Tuple[str, Optional[int]]:
    """
    One part of a dotted key as C{(name, index)}: C{"ae[1]"} is
    C{("ae", 1)}, C{"quota"} is C{("quota", None)}.
    """
    match = re.match(r"^(.*)\[(\d+)\]$", text)
    return (match.group(1), int(match.group(2))) if match else (text, None)


def _matches(found, wanted) -> bool:
    """
    Whether the key path C{found} is C{wanted} or encloses it.  A wanted
    part without an index matches any entry of a list of tables, and a
    found part without one (C{ae = [{...}, {...}]}, an inline array)
    matches any wanted entry.
    """
    if len(found) > len(wanted):
        return False
    for (name, index), (wantedName, wantedIndex) in zip(found, wanted):
        if name != wantedName or (wantedIndex is not None and index is not None and index != wantedIndex):
            return False
    return True


def _dotted(text: str) -> List[str]:
    """
    The parts of a dotted TOML key (C{ae.storage}, C{"a.b".c}), unquoted.
    """
    return [
        part[1:-1] if part[:1] in "\"'" else part.strip()
        for part in re.findall(r"\"[^\"]*\"|'[^']*'|[^.\s]+", text)
    ]


def _statementLines(lines: Sequence[str]):
    """
    The lines of a TOML document that begin a statement (a table header or
    a key), as C{(line number, stripped text)}: not comments, blank lines,
    nor the continuation lines of multi-line strings and arrays.
    """
    depth = 0
    inString = None
    for number, line in enumerate(lines, 1):
        position = 0
        if inString is None and depth == 0:
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            yield number, stripped
            if stripped.startswith("["):
                # A table header: its brackets open no value.
                continue
        while position < len(line):
            if inString is not None:
                if inString in ('"', '"""'):
                    if line[position] == "\\":
                        position += 2
                        continue
                if line.startswith(inString, position):
                    position += len(inString)
                    inString = None
                else:
                    position += 1
                continue
            character = line[position]
            if character == "#":
                break
            quote = next((q for q in ('"""', "'''", '"', "'") if line.startswith(q, position)), None)
            if quote is not None:
                inString = quote
                position += len(quote)
                continue
            if character in "[{":
                depth += 1
            elif character in "]}" and depth:
                depth -= 1
            position += 1
        if inString in ('"', "'"):
            # A one-line string does not go on to the next line (the line
            # is invalid TOML, which tomllib reports).
            inString = None
