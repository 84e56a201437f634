"""
The daemon's status page over C{twisted.web}: JSON at C{/} and the
Prometheus text exposition format (version 0.0.4) at C{/metrics}.

L{Statistics} counts, per called AE title, associations accepted, rejected
and how they ended, and the DIMSE operations answered by outcome; the
acceptor factory feeds it.  L{StatusResource} reads it together with what
is happening now: open associations and studies waiting for their end.
Both name the node (C{node}, the C{dicomd_node_info} metric), so that the
daemons sharing one index tell theirs apart.
"""

import json
from collections import defaultdict
from typing import Callable, Dict, Iterable, Optional, Set

from twisted.web import resource


class Statistics:
    """
    Counters per AE title of ours, since the daemon started.

    @ivar associations: AE title -> event (C{accepted}, C{rejected},
        C{released}, C{aborted}) -> count.
    @ivar operations: AE title -> operation (C{C-STORE}...) -> outcome
        (C{success}, C{warning}, C{failure}, C{cancel}) -> count.
    @ivar titles: our AE titles, or C{None}: rejections of associations
        calling any other title are counted under L{OTHER_TITLE}, so that
        peers calling made-up titles cannot grow the counters without
        bound.
    """

    #: Where rejections of calls to AE titles we do not have are counted.
    OTHER_TITLE = "(other)"

    def __init__(self):
        self.associations: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.operations: Dict[str, Dict[str, Dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
        self.titles: Optional[Set[str]] = None

    def accepted(self, calledAETitle: str) -> None:
        self.associations[calledAETitle]["accepted"] += 1

    def rejected(self, calledAETitle: str) -> None:
        if self.titles is not None and calledAETitle not in self.titles:
            calledAETitle = self.OTHER_TITLE
        self.associations[calledAETitle]["rejected"] += 1

    def ended(self, title: str, association, outcome) -> None:
        """
        An association accepted by AE C{title} is over; add its operations.
        """
        self.count(title, outcome, [(o, r, n) for o, outcomes in association.counters.items() for r, n in outcomes.items()])

    def count(self, title: str, outcome, counters) -> None:
        """
        Add an ended association's C{(operation, result, count)} counters
        (a worker process's, L{dicomd.workers}, or one of ours).
        """
        ending = "released" if outcome and outcome.startswith("released") else "aborted"
        self.associations[title][ending] += 1
        for operation, result, count in counters:
            self.operations[title][operation][result] += count


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class StatusResource(resource.Resource):
    """
    C{GET /} answers JSON, C{GET /metrics} Prometheus text.

    @ivar clock: the reactor, for uptime.
    @ivar factories: the acceptor factories whose open associations count.
    @ivar pendingStudies: returns AE title -> number of studies waiting for
        their end.
    @ivar titles: returns the AE titles in force, which are shown with 0
        open associations when they have none; or C{None}.
    @ivar forwarding: returns the forwarding destination queues (each with
        C{title}, C{depth}, C{oldest}, C{delivered} and C{failed}, as
        L{dicomd.forwarding.DestinationQueue} has them); or C{None}.
    @ivar node: the name of this daemon among those sharing an index.
    """

    isLeaf = True

    def __init__(
        self,
        statistics: Statistics,
        factories: Iterable,
        pendingStudies: Callable[[], Dict[str, int]],
        clock,
        titles: Optional[Callable[[], Iterable[str]]] = None,
        forwarding: Optional[Callable[[], Iterable]] = None,
        node: str = "",
    ):
        resource.Resource.__init__(self)
        self.statistics = statistics
        self.factories = list(factories)
        self.pendingStudies = pendingStudies
        self.clock = clock
        self.titles = titles
        self.forwarding = forwarding
        self.node = node
        self.startedAt = clock.seconds()

    def _openAssociations(self) -> Dict[str, int]:
        counts: Dict[str, int] = defaultdict(int)
        for title in self.titles() if self.titles is not None else ():
            counts[title] = 0
        for factory in self.factories:
            for proto in factory.associations:
                counts[proto.entityTitle] += 1
        return dict(counts)

    def snapshot(self) -> dict:
        """
        Everything the page shows, as plain data.
        """
        statistics = self.statistics
        now = self.clock.seconds()
        destinations = self.forwarding() if self.forwarding is not None else ()
        return {
            "forwarding": {
                queue.title: {
                    "depth": queue.depth,
                    "oldestAge": round(max(0.0, now - queue.oldest), 3) if queue.oldest is not None else 0,
                    "delivered": queue.delivered,
                    "failed": queue.failed,
                }
                for queue in destinations
            },
            "node": self.node,
            "uptime": round(self.clock.seconds() - self.startedAt, 3),
            "openAssociations": self._openAssociations(),
            "pendingStudies": self.pendingStudies(),
            "associations": {title: dict(events) for title, events in statistics.associations.items()},
            "operations": {
                title: {operation: dict(outcomes) for operation, outcomes in operations.items()}
                for title, operations in statistics.operations.items()
            },
        }

    def render_GET(self, request) -> bytes:
        if request.path == b"/metrics":
            request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
            return self.metrics().encode("utf-8")
        if request.path not in (b"/", b""):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self.snapshot(), indent=2, sort_keys=True).encode("utf-8") + b"\n"

    def metrics(self) -> str:
        """
        The snapshot in the Prometheus text exposition format.
        """
        data = self.snapshot()
        lines = [
            "# HELP dicomd_node_info The node this daemon is among those sharing an index.",
            "# TYPE dicomd_node_info gauge",
            'dicomd_node_info{node="%s"} 1' % (_label(data["node"]),),
            "# HELP dicomd_uptime_seconds Seconds since the daemon started.",
            "# TYPE dicomd_uptime_seconds gauge",
            "dicomd_uptime_seconds %s" % data["uptime"],
            "# HELP dicomd_open_associations Associations open now.",
            "# TYPE dicomd_open_associations gauge",
        ]
        lines += ['dicomd_open_associations{ae="%s"} %d' % (_label(t), n) for t, n in sorted(data["openAssociations"].items())]
        lines += [
            "# HELP dicomd_pending_studies Studies received and not yet ended.",
            "# TYPE dicomd_pending_studies gauge",
        ]
        lines += ['dicomd_pending_studies{ae="%s"} %d' % (_label(t), n) for t, n in sorted(data["pendingStudies"].items())]
        lines += [
            "# HELP dicomd_associations_total Associations by outcome.",
            "# TYPE dicomd_associations_total counter",
        ]
        for title, events in sorted(data["associations"].items()):
            lines += ['dicomd_associations_total{ae="%s",event="%s"} %d' % (_label(title), e, n) for e, n in sorted(events.items())]
        lines += [
            "# HELP dicomd_operations_total DIMSE operations answered, by outcome.",
            "# TYPE dicomd_operations_total counter",
        ]
        for title, operations in sorted(data["operations"].items()):
            for operation, outcomes in sorted(operations.items()):
                lines += [
                    'dicomd_operations_total{ae="%s",operation="%s",outcome="%s"} %d' % (_label(title), operation, o, n)
                    for o, n in sorted(outcomes.items())
                ]
        forwarding = sorted(data["forwarding"].items())
        for name, kind, meaning, field in [
            ("dicomd_forward_queue_depth", "gauge", "Instances queued (or held for their study's end) per destination.", "depth"),
            ("dicomd_forward_oldest_age_seconds", "gauge", "Age of the oldest queued instance per destination.", "oldestAge"),
            ("dicomd_forward_delivered_total", "counter", "Instances forwarded per destination since the start.", "delivered"),
            ("dicomd_forward_failed_total", "counter", "Forwarding entries failed for good per destination since the start.", "failed"),
        ]:
            lines += ["# HELP %s %s" % (name, meaning), "# TYPE %s %s" % (name, kind)]
            lines += ['%s{destination="%s"} %s' % (name, _label(title), values[field]) for title, values in forwarding]
        return "\n".join(lines) + "\n"
