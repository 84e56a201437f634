"""
The forwarding queue: which stored instances are still to be sent to which
destination, kept in the index database beside the instances themselves.

An instance is queued by the transaction that indexes it (L{enqueue},
called by L{dicomd.archive.index.SQLiteArchiveIndex.addInstance}), before
its C-STORE-RSP is sent: once a sender is told its object is stored, the
queue holds it too, whatever crash follows.  An entry leaves the queue when
its destination has stored the instance (delivery is at least once: a crash
between the destination's response and L{ForwardQueue.delivered} sends it
again), and stays, failed, when the destination refused it for good or
retrying lasted too long, until an operator retries or forgets it.

An entry is in one of three states:

  - L{HELD}: its route forwards whole studies, and the study has not ended
    (L{ForwardQueue.release} queues it when it does);
  - L{QUEUED}: to be sent at C{nextTry} or later;
  - L{FAILED}: not to be sent again; C{lastError} says why.

Entries of one destination are sent in the order they were queued, study
by study (L{ForwardQueue.claim}): an entry waits while an earlier entry of
its study for the same destination waits for a retry or is being sent.

Several daemons ("nodes") may share the queue in one PostgreSQL index
(C{docs/scale-out.md}): an entry is sent by the node that claimed it.  A
claim writes the node's name and a lease (C{claimedBy}, C{leaseUntil})
on each entry it takes, in a writer's transaction, so that no other node
takes them while the lease runs; the claiming node renews its leases
while it sends (L{ForwardQueue.renew}) and clears each claim as it
records the entry's outcome.  The entries of a node that died are taken
by another once their lease has run out.  An entry that is not claimed
has C{leaseUntil} 0.

An operator's L{ForwardQueue.retry} also leaves the names of the
destinations concerned in a second table, C{forwardRetry}, which a running
daemon looks at every second or so (L{ForwardQueue.takeRetried}): it
sends them at once, and forgets the destinations' failures in a row.

Each entry refers to its instance's row, and goes with it: an instance
that is forgotten (its association ended before the response, or
C{dicomd reindex} found its file gone) is not forwarded.  Quotas leave
queued instances alone (L{dicomd.archive.area.IndexedArea}).

No Twisted here: L{dicomd.forwarding} runs these blocking methods in
worker threads.
"""

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from dicomd.archive import sql

#: Entry states.
HELD = "held"
QUEUED = "queued"
FAILED = "failed"

#: The queue's table.  Outside the versioned schema of the index (as its
#: C{run} table is), so that an index made before forwarding gains it
#: without a migration.
SCHEMA = """
CREATE TABLE IF NOT EXISTS forward (
    id INTEGER PRIMARY KEY,
    instance INTEGER NOT NULL REFERENCES instance (id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    callingAETitle TEXT NOT NULL,
    StudyInstanceUID TEXT NOT NULL,
    state TEXT NOT NULL,
    queued REAL NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    nextTry REAL NOT NULL,
    lastError TEXT NOT NULL DEFAULT '',
    claimedBy TEXT NOT NULL DEFAULT '',
    leaseUntil REAL NOT NULL DEFAULT 0,
    UNIQUE (instance, destination)
);
CREATE INDEX IF NOT EXISTS forwardDue ON forward (destination, state, id);
CREATE INDEX IF NOT EXISTS forwardStudy ON forward (destination, StudyInstanceUID, id);
CREATE INDEX IF NOT EXISTS forwardInstance ON forward (instance);
"""

#: The destinations whose entries an operator retried, for a running
#: daemon to send at once (L{ForwardQueue.takeRetried}).
RETRY_SCHEMA = """
CREATE TABLE IF NOT EXISTS forwardRetry (destination TEXT PRIMARY KEY);
"""


#: The columns a claim writes (version 3 of PostgreSQL's schema), and
#: their definitions, for a table made before them.
CLAIM_COLUMNS = (("claimedBy", "TEXT NOT NULL DEFAULT ''"), ("leaseUntil", "REAL NOT NULL DEFAULT 0"))

#: The indexes a claim finds, for each entry it might take, whether an
#: earlier entry of its study waits for a retry or is claimed: they reach
#: those few entries directly, where the study's index would walk every
#: earlier entry of the study, each claim's worth for every entry claimed.
ORDER_INDEXES = """
CREATE INDEX IF NOT EXISTS forwardStudyNextTry ON forward (destination, StudyInstanceUID, nextTry);
CREATE INDEX IF NOT EXISTS forwardStudyLease ON forward (destination, StudyInstanceUID, leaseUntil);
"""

#: How long a claim holds its entries unless renewed, in seconds.
LEASE = 60.0


def createTables(db) -> None:
    """
    Create the queue's tables and indexes in an open SQLite index
    database, unless they exist, and add the claim's columns (and the
    indexes over them) to a table made without them.
    """
    db.executescript(SCHEMA + RETRY_SCHEMA)
    present = {row[1] for row in db.execute("PRAGMA table_info(forward)")}
    for name, definition in CLAIM_COLUMNS:
        if name not in present:
            db.execute(f"ALTER TABLE forward ADD COLUMN {name} {definition}")
    db.executescript(ORDER_INDEXES)


@dataclass(frozen=True)
class Forwarding:
    """
    Where a received instance is to go, as its routes decide.

    @ivar destination: the AE title of the destination (a configured peer).
    @ivar callingAETitle: our AE title to call it with: the AE that
        received the instance.
    @ivar held: hold the entry until its study ends (a route with
        C{when = "end-of-study"}).
    """

    destination: str
    callingAETitle: str
    held: bool = False


def enqueue(db, instance: int, studyInstanceUID: str, forwardings: Iterable[Forwarding], now: float) -> None:
    """
    Queue an instance for its destinations, inside the caller's
    transaction.  An instance queued for a destination already is queued
    again, at the end: it was received again, perhaps changed, and the
    entry may be on its way with the former file.

    @param instance: the C{id} of the instance's row.
    """
    for forwarding in forwardings:
        db.execute("DELETE FROM forward WHERE instance = ? AND destination = ?", (instance, forwarding.destination))
        db.execute(
            "INSERT INTO forward"
            " (instance, destination, callingAETitle, StudyInstanceUID, state, queued, nextTry)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                instance,
                forwarding.destination,
                forwarding.callingAETitle,
                studyInstanceUID,
                HELD if forwarding.held else QUEUED,
                now,
                now,
            ),
        )


@dataclass(frozen=True)
class RetryPolicy:
    """
    How transient failures are retried (the configuration's
    C{[forwarding]} table).

    @ivar first: seconds before the first retry; each further one waits
        twice as long as the one before.
    @ivar maximum: the longest wait between tries, in seconds.
    @ivar giveUpAfter: seconds after it was queued when an entry that still
        fails is failed for good.
    """

    first: float = 10.0
    maximum: float = 3600.0
    giveUpAfter: float = 604800.0

    def delay(self, tries: int) -> float:
        """
        The wait after the C{tries}-th failed try (1 for the first).
        """
        if tries < 1:
            return 0.0
        # 2 ** 64 seconds is beyond any maximum: no need to go further.
        return min(self.maximum, self.first * 2.0 ** min(tries - 1, 64))


@dataclass(frozen=True)
class QueueEntry:
    """
    One instance to send to one destination.

    @ivar area: the storage area of the instance (its L{areaKey
        <dicomd.archive.index.areaKey>}, the area's directory), in which
        C{path} is relative.
    @ivar queued: when it was queued, in seconds since the epoch.
    @ivar tries: how many tries failed.
    @ivar nextTry: when it is sent next, in seconds since the epoch.
    @ivar lastError: why the last try failed, or C{""}.
    """

    id: int
    destination: str
    callingAETitle: str
    state: str
    sopClassUID: str
    sopInstanceUID: str
    transferSyntaxUID: str
    studyInstanceUID: str
    area: str
    path: str
    queued: float
    tries: int
    nextTry: float
    lastError: str


@dataclass(frozen=True)
class Claim:
    """
    What L{ForwardQueue.claim} found.

    @ivar entries: the entries to send now, in order.
    @ivar nextTry: when the earliest queued entry that is not due yet, or
        that a lease holds, becomes due, or C{None}; always C{None} for a
        full claim (as many candidates as asked for), whose taker claims
        again once its entries are sent.
    @ivar depth: how many entries of the destination are queued or held,
        or C{None} when not counted (a full claim).
    @ivar oldest: when the oldest of them was queued, or C{None}.
    """

    entries: List[QueueEntry]
    nextTry: Optional[float]
    depth: Optional[int]
    oldest: Optional[float]


_ENTRY_COLUMNS = (
    "forward.id, forward.destination, forward.callingAETitle, forward.state,"
    " instance.SOPClassUID, instance.SOPInstanceUID, instance.TransferSyntaxUID,"
    " forward.StudyInstanceUID, instance.area, instance.path, forward.queued,"
    " forward.tries, forward.nextTry, forward.lastError"
)


#: The assignments that clear an entry's claim.
_UNCLAIMED = "claimedBy = '', leaseUntil = 0"

#: The condition that an entry is claimed by the node given as its
#: parameter, or by none.
_OURS = "claimedBy IN ('', ?)"

#: The condition that an entry is claimed by the node given as its
#: parameter (whose name may be C{""}, as an unclaimed entry's is).
_CLAIMED = "claimedBy = ? AND leaseUntil > 0"


#: The held entries of a study (its UID, then its area, the parameters).
_HELD = " FROM forward WHERE state = ? AND StudyInstanceUID = ? AND instance IN (SELECT id FROM instance WHERE area = ?)"


def _marks(values: Sequence) -> str:
    return ", ".join("?" * len(values))


def _oneCallingTitle(entries: List[QueueEntry]) -> List[QueueEntry]:
    """
    What one association takes of the entries due, in queue order: those
    of the first's calling AE title (an association calls with one), and
    of each study only those before its first entry that calls with
    another, so that every study keeps its order.  The rest stays
    unclaimed, for the next claim.
    """
    taken, skipped = [], set()
    for entry in entries:
        if taken and entry.callingAETitle != taken[0].callingAETitle:
            skipped.add(entry.studyInstanceUID)
        elif entry.studyInstanceUID not in skipped:
            taken.append(entry)
    return taken


class ForwardQueue:
    """
    The queue's operations on an L{SQLiteArchiveIndex
    <dicomd.archive.index.SQLiteArchiveIndex>}'s database, each blocking,
    each one transaction.

    @ivar node: the name this daemon claims entries under.
    @ivar lease: how long a claim holds its entries unless renewed, in
        seconds.
    """

    def __init__(self, index, node: str = "", lease: float = LEASE):
        self._index = index
        self.node = node
        self.lease = lease

    def claim(self, destination: str, now: float, limit: int, busyStudies: Iterable[str] = ()) -> Claim:
        """
        Claim the next entries to send to C{destination}: queued, due, not
        claimed by a lease that runs, in the order they were queued, and
        none behind an earlier entry of its study that waits for a retry,
        is claimed, or, being in C{busyStudies}, is on its way; all to be
        sent with one calling AE title, that of the first
        (L{_oneCallingTitle}).  The caller
        marks each entry L{delivered}, L{failed} or L{postponed}, and
        L{renew}s the claim while it sends; one it drops (a crash) is sent
        again, by any node, once the lease has run out.

        @param limit: how many entries at most.
        @param busyStudies: the studies being sent to C{destination} now.
        """
        busy = list(busyStudies)
        excluded = " AND forward.StudyInstanceUID NOT IN (%s)" % (_marks(busy),) if busy else ""
        with self._index.transaction() as db:
            rows = db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM forward JOIN instance ON forward.instance = instance.id"
                " WHERE forward.destination = ? AND forward.state = ? AND forward.nextTry <= ? AND forward.leaseUntil <= ?"
                f"{excluded}"
                " AND NOT EXISTS (SELECT 1 FROM forward AS earlier"
                "   WHERE earlier.destination = forward.destination"
                "   AND earlier.StudyInstanceUID = forward.StudyInstanceUID"
                "   AND earlier.nextTry > ? AND earlier.id < forward.id AND earlier.state = ?)"
                " AND NOT EXISTS (SELECT 1 FROM forward AS earlier"
                "   WHERE earlier.destination = forward.destination"
                "   AND earlier.StudyInstanceUID = forward.StudyInstanceUID"
                "   AND earlier.leaseUntil > ? AND earlier.id < forward.id AND earlier.state = ?)"
                " ORDER BY forward.id LIMIT ?",
                [destination, QUEUED, now, now] + busy + [now, QUEUED, now, QUEUED, limit],
            ).fetchall()
            entries = _oneCallingTitle([QueueEntry(*row) for row in rows])
            if entries:
                ids = [entry.id for entry in entries]
                db.execute(
                    f"UPDATE forward SET claimedBy = ?, leaseUntil = ? WHERE id IN ({_marks(ids)})",
                    [self.node, now + self.lease] + ids,
                )
            if len(rows) == limit:
                # Another claim follows a full one as soon as its entries
                # are sent: when the rest is due, and how deep the queue
                # is, are left to that one (and to the look at the queue
                # every few seconds), since both count every queued entry
                # of the destination, a backlog's worth for each claim.
                return Claim(entries, None, None, None)
            (nextTry,) = db.execute(
                "SELECT MIN(CASE WHEN leaseUntil > nextTry THEN leaseUntil ELSE nextTry END) FROM forward"
                " WHERE destination = ? AND state = ? AND (nextTry > ? OR leaseUntil > ?)",
                (destination, QUEUED, now, now),
            ).fetchone()
            depth, oldest = db.execute(
                "SELECT COUNT(*), MIN(queued) FROM forward WHERE destination = ? AND state IN (?, ?)",
                (destination, QUEUED, HELD),
            ).fetchone()
        return Claim(entries, nextTry, depth, oldest)

    def renew(self, now: float) -> int:
        """
        Renew the lease of every entry this node has claimed and not
        recorded yet, for L{lease} seconds from C{now}: it is still
        sending them.

        @return: how many.
        """
        with self._index.transaction() as db:
            return db.execute(
                f"UPDATE forward SET leaseUntil = ? WHERE {_CLAIMED}", (now + self.lease, self.node)
            ).rowcount

    def releaseClaims(self) -> int:
        """
        Clear this node's claims (when it stops, and when it starts after a
        run that was killed): their entries are not being sent, and any
        node may take them at once.

        @return: how many.
        """
        with self._index.transaction() as db:
            return db.execute(f"UPDATE forward SET {_UNCLAIMED} WHERE {_CLAIMED}", (self.node,)).rowcount

    def delivered(self, ids: Sequence[int]) -> List[Tuple[str, str]]:
        """
        Strike entries their destination stored.

        @return: C{(area, SOP Instance UID)} of the instances that no entry
            holds any more (router mode forgets them,
            L{dicomd.archive.index.SQLiteArchiveIndex.removeUnqueued}).
        """
        if not ids:
            return []
        ids = list(ids)
        with self._index.transaction() as db:
            instances = [
                row[0] for row in db.execute(f"SELECT DISTINCT instance FROM forward WHERE id IN ({_marks(ids)})", ids)
            ]
            db.execute(f"DELETE FROM forward WHERE id IN ({_marks(ids)})", ids)
            if not instances:
                return []
            return [
                (row[0], row[1])
                for row in db.execute(
                    f"SELECT area, SOPInstanceUID FROM instance WHERE id IN ({_marks(instances)})"
                    " AND NOT EXISTS (SELECT 1 FROM forward WHERE forward.instance = instance.id)",
                    instances,
                )
            ]

    def failed(self, failures: Sequence[Tuple[int, str]]) -> None:
        """
        Fail entries for good: C{(id, reason)} pairs.  An entry another
        node took over (this node's lease ran out) is left to it.
        """
        with self._index.transaction() as db:
            db.executemany(
                f"UPDATE forward SET state = ?, tries = tries + 1, lastError = ?, {_UNCLAIMED} WHERE id = ? AND {_OURS}",
                [(FAILED, reason, entry, self.node) for entry, reason in failures],
            )

    def postponed(self, retries: Sequence[Tuple[int, str]], now: float, policy: RetryPolicy) -> List[int]:
        """
        Count a failed try of entries that may succeed later: C{(id,
        reason)} pairs.  Each is retried after L{RetryPolicy.delay} of its
        tries, or failed for good when it was queued longer ago than
        C{policy.giveUpAfter}.  An entry another node took over is left
        to it.

        @return: the ids of the entries failed for good.
        """
        given = []
        with self._index.transaction() as db:
            for entry, reason in retries:
                row = db.execute(f"SELECT tries, queued FROM forward WHERE id = ? AND {_OURS}", (entry, self.node)).fetchone()
                if row is None:
                    continue
                tries, queued = row[0] + 1, row[1]
                if now - queued >= policy.giveUpAfter:
                    db.execute(
                        f"UPDATE forward SET state = ?, tries = ?, lastError = ?, {_UNCLAIMED} WHERE id = ?",
                        (FAILED, tries, "gave up after %d tries in %d s: %s" % (tries, now - queued, reason), entry),
                    )
                    given.append(entry)
                else:
                    db.execute(
                        f"UPDATE forward SET tries = ?, nextTry = ?, lastError = ?, {_UNCLAIMED} WHERE id = ?",
                        (tries, now + policy.delay(tries), reason, entry),
                    )
        return given

    def postponeDestination(self, destination: str, reason: str, now: float, policy: RetryPolicy, delay: float) -> List[int]:
        """
        Count a failed try of every due entry of C{destination}: it could
        not be reached.  They wait C{delay} (the destination's own back-off,
        which grows with its failures in a row, whatever the age of each
        entry), or fail for good when queued longer ago than
        C{policy.giveUpAfter}: those this node claimed, and those no lease
        holds.

        @return: the ids of the entries failed for good.
        """
        due = f" WHERE destination = ? AND state = ? AND nextTry <= ? AND ({_OURS} OR leaseUntil <= ?)"
        with self._index.transaction() as db:
            given = [
                row[0]
                for row in db.execute(
                    f"SELECT id FROM forward{due} AND queued <= ?",
                    (destination, QUEUED, now, self.node, now, now - policy.giveUpAfter),
                )
            ]
            if given:
                db.execute(
                    f"UPDATE forward SET state = ?, tries = tries + 1, lastError = ?, {_UNCLAIMED} WHERE id IN ({_marks(given)})",
                    [FAILED, "gave up after %d s: %s" % (policy.giveUpAfter, reason)] + given,
                )
            db.execute(
                f"UPDATE forward SET tries = tries + 1, nextTry = ?, lastError = ?, {_UNCLAIMED}{due}",
                (now + delay, reason, destination, QUEUED, now, self.node, now),
            )
        return given

    def release(self, area: str, studyInstanceUID: str, now: float) -> List[str]:
        """
        Queue the held entries of a study that ended.

        @return: the destinations that have entries to send now.
        """
        with self._index.transaction() as db:
            destinations = [row[0] for row in db.execute(f"SELECT DISTINCT destination{_HELD}", (HELD, studyInstanceUID, area))]
            self._release(db, area, studyInstanceUID, now)
        return destinations

    @staticmethod
    def _release(db, area: str, studyInstanceUID: str, now: float) -> int:
        """
        Queue the held entries of a study, in the caller's transaction.

        @return: how many.
        """
        return db.execute(
            f"UPDATE forward SET state = ?, nextTry = ? WHERE id IN (SELECT id{_HELD})", (QUEUED, now, HELD, studyInstanceUID, area)
        ).rowcount

    def releaseUnfollowed(self, now: float, timeouts: Dict[str, Optional[float]], following: Iterable[Tuple[str, str]] = ()) -> int:
        """
        Queue the entries held for studies whose end no live node will
        bring: at start-up, when the tracker that followed this node's
        studies is gone, and when another node's run is taken over.

        A study keeps its held entries while its end may still come: this
        node's tracker follows it (C{following}), or its newest object
        arrived on another node that is alive (its heartbeat younger than
        the L{lease}, L{dicomd.archive.postgresql}) less than its area's
        end-of-study timeout ago.  On an index one node uses (SQLite), no
        other node follows a study: every held entry is queued.

        @param timeouts: each storage area's
            L{areaKey<dicomd.archive.index.areaKey>} -> its end-of-study
            timeout in seconds, or C{None} when its studies end as their
            senders move on; in an area not named, no study ends.
        @param following: C{(area, StudyInstanceUID)} of the studies this
            node's trackers follow.
        @return: how many entries were queued.
        """
        following = set(following)
        with self._index.transaction() as db:
            if self._index.dialect is not sql.POSTGRESQL:
                return db.execute("UPDATE forward SET state = ?, nextTry = ? WHERE state = ?", (QUEUED, now, HELD)).rowcount
            studies = db.execute(
                "SELECT DISTINCT instance.area, forward.StudyInstanceUID, study.lastUpdated, study.lastNode, node.name"
                " FROM forward JOIN instance ON forward.instance = instance.id"
                " JOIN series ON instance.series = series.id JOIN study ON series.study = study.id"
                " LEFT JOIN node ON node.name = study.lastNode AND node.ended = 0 AND node.heartbeat >= ?"
                " WHERE forward.state = ?",
                (now - self.lease, HELD),
            ).fetchall()
            released = 0
            for area, study, lastUpdated, lastNode, alive in studies:
                if (area, study) in following:
                    continue
                timeout = timeouts.get(area, 0.0)
                endsElsewhere = lastNode != self.node and alive is not None
                if endsElsewhere and (timeout is None or lastUpdated + timeout > now):
                    continue
                released += self._release(db, area, study, now)
            return released

    def entries(self, destination: Optional[str] = None) -> List[QueueEntry]:
        """
        Every entry (of one destination), in the order they were queued.
        """
        where, parameters = ("WHERE forward.destination = ?", [destination]) if destination is not None else ("", [])
        with self._index.connection() as db:
            rows = db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM forward JOIN instance ON forward.instance = instance.id {where} ORDER BY forward.id",
                parameters,
            ).fetchall()
        return [QueueEntry(*row) for row in rows]

    def retry(self, now: float, entry: Optional[int] = None) -> int:
        """
        Send failed or waiting entries now: one, or all (C{entry} C{None}).
        Tries start again from none, and the give-up time from now; their
        destinations are left for L{takeRetried}.

        @return: how many entries were queued again.
        """
        where, parameters = ("id = ?", [entry]) if entry is not None else ("state != ?", [HELD])
        with self._index.transaction() as db:
            db.execute(
                f"INSERT INTO forwardRetry (destination) SELECT DISTINCT destination FROM forward WHERE {where}"
                " ON CONFLICT DO NOTHING",
                parameters,
            )
            cursor = db.execute(
                f"UPDATE forward SET state = ?, tries = 0, nextTry = ?, queued = ?, lastError = '' WHERE {where}",
                [QUEUED, now, now] + parameters,
            )
            return cursor.rowcount

    def takeRetried(self) -> List[str]:
        """
        The destinations that L{retry} queued entries for since the last
        call (none, almost always: a read, and no write).
        """
        with self._index.connection() as db:
            if db.execute("SELECT 1 FROM forwardRetry LIMIT 1").fetchone() is None:
                return []
        with self._index.transaction() as db:
            destinations = [row[0] for row in db.execute("SELECT destination FROM forwardRetry")]
            db.execute("DELETE FROM forwardRetry")
        return destinations

    def depths(self) -> Dict[str, Tuple[int, float]]:
        """
        Each destination with entries queued or held -> how many, and when
        the oldest of them was queued.
        """
        with self._index.connection() as db:
            rows = db.execute(
                "SELECT destination, COUNT(*), MIN(queued) FROM forward WHERE state IN (?, ?) GROUP BY destination",
                (QUEUED, HELD),
            ).fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}

    def forget(self, entry: int) -> bool:
        """
        Drop an entry: its instance will not go to its destination.

        @return: whether there was such an entry.
        """
        with self._index.transaction() as db:
            return db.execute("DELETE FROM forward WHERE id = ?", (entry,)).rowcount > 0
