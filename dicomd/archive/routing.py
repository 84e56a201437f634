"""
Forwarding routes: which received instances an AE passes on, and to whom
(the configuration's C{[[ae.forward]]}).

A L{Route} names its destination, when it forwards (on reception, or the
whole study once it ends) and what it takes: L{RouteMatch} holds the
conditions, all of which must hold.  Conditions on attributes use the
matching of C-FIND (PS3.4 C.2.2.2: single value, wildcard, range, list of
UIDs) through L{dicomd.archive.matching.conditionFor}, evaluated here on
the received attributes rather than compiled into SQL.
"""

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from dicomd.archive.matching import (
    KEYS,
    Level,
    QueryKey,
    SingleValue,
    UIDList,
    Unmatchable,
    Wildcard,
    asciiText,
    attributeText,
    conditionFor,
    sortableValue,
)
from dicomd.archive.queue import Forwarding

#: When a route forwards.
ON_RECEPTION = "reception"
AT_END_OF_STUDY = "end-of-study"


class NotMatchable(ValueError):
    """
    A route's condition names no attribute that can be matched.
    """


def attributeCondition(keyword: str, value: str):
    """
    The condition a route puts on an attribute, from a DICOM match value.

    @param keyword: the attribute's keyword in the data dictionary
        (C{StationName}).
    @param value: its match value (C{"CT*"}, C{"20240101-20241231"}).
    @return: a condition of L{dicomd.archive.matching}, or C{None} when the
        value matches anything.
    @raise NotMatchable: no such keyword, or an attribute whose value is
        not text (a sequence, binary data).
    """
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise NotMatchable("%r is not a keyword of the DICOM data dictionary" % (keyword,))
    vr = dictionary_VR(tag)
    if vr in ("SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN") or "or" in vr:
        raise NotMatchable("%s (VR %s) cannot be matched" % (keyword, vr))
    # The level is the query's notion; routes match a single data set.
    return conditionFor(QueryKey(keyword, tag, vr, Level.IMAGE), value)


def _wildcard(pattern: str) -> "re.Pattern":
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)


def holds(condition, text: str) -> bool:
    """
    Whether an attribute's value (as L{dicomd.archive.matching.attributeText}
    gives it) satisfies a condition, as the index's matching would decide:
    a multi-valued attribute does when one of its values does.
    """
    values = text.split("\\") if text else [""]
    if isinstance(condition, Wildcard):
        pattern = _wildcard(condition.pattern)
        return any(pattern.fullmatch(value) for value in values)
    if isinstance(condition, UIDList):
        return any(value in condition.uids for value in values)
    if isinstance(condition, Unmatchable):
        return False
    if condition.key.ordered:
        sortable = [sortableValue(condition.key, value) for value in values]
        if isinstance(condition, SingleValue):
            return condition.value in sortable
        return any(
            value
            and (condition.low is None or value >= condition.low)
            and (condition.high is None or value <= condition.high)
            for value in sortable
        )
    if isinstance(condition, SingleValue):
        return condition.value in values
    raise TypeError("not a condition: %r" % (condition,))


#: The attribute a route's C{modality} reads: the index's key.
MODALITY = next(key for key in KEYS if key.keyword == "Modality")


def receivedText(received, key: QueryKey) -> str:
    """
    The L{attributeText} of C{key} in a received instance
    (L{dicomd.storage.scp.ReceivedInstance}): read in the bytes its data
    set arrived in (its C{scan}) where the value is ASCII, as the index
    reads its keys, rather than from its C{attributes}, which the first
    read makes into pydicom's data set (about 25 microseconds for every
    instance a route looked at).
    """
    scan = received.scan
    if scan is not None:
        found = scan.rawValues((key.tag,)).get(key.tag)
        if found is None:
            return ""
        text = asciiText(found[0], found[1], key.vr)
        if text is not None:
            return text
    return attributeText(received.attributes, key)


@dataclass(frozen=True)
class RouteMatch:
    """
    What a route takes; every condition given must hold, and a match with
    none takes everything.

    @ivar modalities: Modality values, one of which the instance has.
    @ivar callingAETitles: the AE titles that may have sent it.
    @ivar sopClasses: SOP Class UIDs, one of which it is.
    @ivar conditions: conditions on other attributes
        (L{attributeCondition}).
    """

    modalities: Optional[Tuple[str, ...]] = None
    callingAETitles: Optional[Tuple[str, ...]] = None
    sopClasses: Optional[Tuple[str, ...]] = None
    conditions: Tuple = ()

    def takes(self, received) -> bool:
        """
        Whether a L{dicomd.storage.scp.ReceivedInstance} satisfies it.
        """
        if self.callingAETitles is not None and received.callingAETitle.strip() not in self.callingAETitles:
            return False
        if self.sopClasses is not None and received.sopClassUID not in self.sopClasses:
            return False
        if self.modalities is not None and receivedText(received, MODALITY) not in self.modalities:
            return False
        for condition in self.conditions:
            if not holds(condition, receivedText(received, condition.key)):
                return False
        return True

    def describe(self) -> str:
        """
        The match in words, for the log.
        """
        parts = []
        if self.modalities is not None:
            parts.append("modality %s" % ("/".join(self.modalities),))
        if self.callingAETitles is not None:
            parts.append("from %s" % ("/".join(self.callingAETitles),))
        if self.sopClasses is not None:
            parts.append("SOP class %s" % ("/".join(self.sopClasses),))
        parts.extend("%s condition" % (keyword_for_tag(c.key.tag),) for c in self.conditions)
        return ", ".join(parts) or "everything"


@dataclass(frozen=True)
class Route:
    """
    One C{[[ae.forward]]}: instances an AE received that C{match} takes go
    to the peer C{to}, on reception or once their study ends.
    """

    to: str
    when: str = ON_RECEPTION
    match: RouteMatch = field(default_factory=RouteMatch)


def forwardingsFor(routes: Sequence[Route], received, callingAETitle: str) -> Tuple[Forwarding, ...]:
    """
    Where a received instance goes by its AE's routes: each destination
    once, the first route that takes it for a destination deciding when.

    @param callingAETitle: the AE title that calls the destinations: the
        AE whose routes these are.
    """
    chosen = {}
    for route in routes:
        if route.to not in chosen and route.match.takes(received):
            chosen[route.to] = Forwarding(route.to, callingAETitle, held=route.when == AT_END_OF_STUDY)
    return tuple(chosen.values())
