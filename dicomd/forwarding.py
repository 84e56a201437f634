"""
Forwarding: sending what the AEs received on to other AEs, from the
durable queue of L{dicomd.archive.queue} (the storage SCU role, PS3.4
Annex B, on the daemon's own initiative).

L{Router} decides, as each instance is indexed, where it goes (the AE's
routes, L{dicomd.archive.routing}); the index queues it in the same
transaction.  L{Forwarding} is the service that empties the queue: one
L{DestinationQueue} per configured peer, each sending with at most
C{associations-per-peer} associations at once, many instances per
association, in queue order study by study, through the storage SCU's
L{StorePipeline<dicomd.storage.sender.StorePipeline>}: the next file read
ahead, and as many C-STOREs outstanding as the destination grants
(C{async-ops}).

An instance is offered in the transfer syntax it is stored in, and in the
uncompressed ones it can be converted to (L{dicomd.peers.proposing}, as a
C-MOVE sub-association does).  What a retry cannot fix fails the entry at
once, with the reason: a failure status other than those of
L{isTransient}, a SOP class or transfer syntax the destination refused,
an association rejected for good (A-ASSOCIATE-RJ with the result
"rejected-permanent", PS3.8 9.3.4).  What may pass fails the try: the
destination cannot be reached (refused connection, an A-ASSOCIATE-RJ
"rejected-transient", abort, timeout) or answered "out of resources".
An unreachable destination waits before the next try, twice as long each
time (L{dicomd.archive.queue.RetryPolicy}), and a refused instance waits
by its own tries; an operator's C{dicomd queue retry} ends the wait
(L{Forwarding.look}).

In router mode (C{keep = "until-forwarded"}) an instance's file and index
row are deleted once no entry holds it any more.

Daemons sharing one index (C{docs/scale-out.md}) share its queue: each
claims entries under its node name with a lease, which it renews while it
sends (L{Forwarding.renewClaims}), so that an entry is sent by one node,
and the entries of a node that died are sent by another once their lease
has run out.
"""

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from dicomd.archive.index import DATABASE_ERRORS
from dicomd.archive.queue import Forwarding as QueuedForwarding
from dicomd.archive.queue import LEASE, ForwardQueue, QueueEntry, RetryPolicy
from dicomd.archive.routing import AT_END_OF_STUDY, Route, forwardingsFor
from dicomd.dimse import status as _status
from dicomd.errors import AssociationError, AssociationRejected
from dicomd.peers import Peer, destinationTable
from dicomd.services.retrieve import storedContexts
from dicomd.storage.scu import FileDataSet, NotDICOM, StoreFailed, chooseContext, openFile
from dicomd.storage.sender import StorePipeline, isStored
from dicomd.ul.pdu import REJECT_RESULT_PERMANENT

#: How many entries one claim takes: one association carries them in turn,
#: then the next claim's.
BATCH = 256

#: Seconds between two looks at the queue (L{Forwarding.look}): for the
#: destinations an operator retried, and the depth of each for /metrics.
LOOK_INTERVAL = 2.0


def isTransient(status: int) -> bool:
    """
    Whether a failure status of a C-STORE-RSP may pass if the instance is
    sent again later: out of resources (0xA7xx, PS3.4 B.2.3) and resource
    limitation (0x0213).  Every other failure (0xA9xx, 0xC000 and the
    general statuses) says the instance itself is refused.
    """
    return status & 0xFF00 == 0xA700 or status == 0x0213


def _fileFor(entry: QueueEntry, readSize: int):
    """
    The file of a queued instance, opened and read ahead
    (L{FileDataSet}), or the exception that says why it cannot be sent.
    """
    try:
        return openFile(os.path.join(entry.area, entry.path), readSize)
    except (NotDICOM, OSError) as e:
        return e


def describeRefusal(association, entry: QueueEntry) -> str:
    """
    Why an instance cannot be sent on an association: its SOP class was
    refused, or none of the syntaxes accepted for it is its own or one it
    converts to; naming the syntaxes on both sides.
    """
    accepted = [c.transferSyntax for c in association.contexts.values() if c.abstractSyntax == entry.sopClassUID]
    if not accepted:
        return "%s refused SOP class %s" % (association.peerAETitle, entry.sopClassUID)
    return "stored in transfer syntax %s, which cannot be converted to the %s that %s accepts for SOP class %s" % (
        entry.transferSyntaxUID,
        ", ".join(sorted(set(accepted))),
        association.peerAETitle,
        entry.sopClassUID,
    )


class Router:
    """
    Where the instances an area stores are forwarded: the routes of each AE
    title, replaced as a whole when the configuration is reloaded.  The
    L{dicomd.archive.area.IndexedArea}s ask it in worker threads, or on
    the reactor thread where the index writer writes there.

    @ivar defaultTitle: the AE whose routes apply to instances sent to an
        AE title no AE has (C{answer-any-called-ae}), or C{None}.
    @ivar holdsStudies: whether any route has forwarded at the end of a
        study (L{AT_END_OF_STUDY}) since this router was made, and so
        held queue entries that the end of their study must release; a
        route removed by a reload leaves its entries held until then.
    """

    def __init__(self, forwarding: "Forwarding", routes: Optional[Dict[str, Sequence[Route]]] = None, defaultTitle: Optional[str] = None):
        self._forwarding = forwarding
        self.holdsStudies = False
        self.routes = dict(routes or {})
        self.defaultTitle = defaultTitle

    @property
    def routes(self) -> Dict[str, Sequence[Route]]:
        """
        Each AE title -> its L{Route}s (perhaps none).
        """
        return self._routes

    @routes.setter
    def routes(self, routes: Dict[str, Sequence[Route]]) -> None:
        self._routes = routes
        if any(route.when == AT_END_OF_STUDY for each in routes.values() for route in each):
            self.holdsStudies = True

    def forwardingsFor(self, received) -> Tuple[QueuedForwarding, ...]:
        routes = self.routes
        title = received.calledAETitle.strip()
        if title not in routes:
            title = self.defaultTitle
        return forwardingsFor(routes.get(title, ()), received, title)

    @property
    def forwardsAnything(self) -> bool:
        """
        Whether any AE has a route.
        """
        return any(self.routes.values())

    def queued(self, forwardings: Iterable[QueuedForwarding]) -> None:
        destinations = {forwarding.destination for forwarding in forwardings if not forwarding.held}
        if destinations:
            self._forwarding.reactor.callFromThread(self._forwarding.wake, destinations)


@dataclass
class _Outcome:
    """
    What one association did with a claim's entries.

    @ivar unreachable: why the association could not be established, or
        ended under an entry; the entries not marked are left to
        L{ForwardQueue.postponeDestination}.
    """

    delivered: List[int] = field(default_factory=list)
    failed: List[Tuple[int, str]] = field(default_factory=list)
    postponed: List[Tuple[int, str]] = field(default_factory=list)
    unreachable: Optional[str] = None


class DestinationQueue:
    """
    The queue of one destination: claims its entries, sends them, and
    records what became of them.

    A worker holds one association and sends batch after batch on it:
    what became of a batch is recorded, and the next batch claimed, in one
    job of a worker thread (L{_settle}).  A wake-up while a worker is at
    work makes it claim once more before it ends, rather than start
    another; another association starts when a claim was full (more is
    due than one batch), up to C{associations-per-peer}, unless the last
    one started so claimed nothing (what is due belongs to the studies on
    their way, which keep their order on one association each) and
    nothing has changed since: a new entry, a worker ending, a retry.

    @ivar depth: queued and held entries at the last claim that counted
        them, or the last look at the queue (L{Forwarding.look}).
    @ivar oldest: when the oldest of them was queued, or C{None}.
    @ivar delivered: instances delivered since the daemon started.
    @ivar failed: entries failed for good since the daemon started.
    """

    log = Logger()

    def __init__(self, forwarding: "Forwarding", title: str):
        self.forwarding = forwarding
        self.title = title
        self.depth = 0
        self.oldest: Optional[float] = None
        self.delivered = 0
        self.failed = 0
        self._workers: Set[defer.Deferred] = set()
        self._associations: Set[object] = set()
        self._busy: Set[str] = set()
        self._claiming = defer.DeferredLock()
        self._woken = False
        self._full = False
        self._crowded = False
        self._failures = 0
        self._retryAt = 0.0
        self._timer = None

    def wake(self) -> None:
        """
        Send what is due, unless the destination is waiting out a failure:
        on one more association if none is at work, or if the last claim
        was full and fewer than allowed are.
        """
        self._crowded = False
        self._wake()

    def _wake(self) -> None:
        forwarding = self.forwarding
        if not forwarding.running:
            return
        if forwarding.reactor.seconds() < self._retryAt:
            # Woken early (by a new instance, or the timer of an entry due
            # sooner): make sure something wakes it when the wait is over.
            self._wakeAt(self._retryAt)
            return
        self._woken = True
        if self._workers and not self._full:
            return
        if len(self._workers) >= forwarding.settings.associationsPerPeer:
            return
        worker = self._work()
        if not worker.called:
            self._workers.add(worker)
            worker.addBoth(self._ended, worker)

    def _ended(self, result, worker: defer.Deferred):
        """
        A worker ended.  A wake-up after its last claim (while it released
        its association, say) started nothing, since it was still at
        work: send now what that wake-up was for.
        """
        self._workers.discard(worker)
        if self._woken:
            self.wake()
        return result

    def retryNow(self) -> None:
        """
        An operator queued entries again (C{dicomd queue retry}): forget
        the destination's failures in a row, and send now.
        """
        self._failures = 0
        self._retryAt = 0.0
        self.wake()

    def _wakeAt(self, when: float) -> None:
        reactor = self.forwarding.reactor
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= when:
                return
            self._timer.cancel()
        self._timer = reactor.callLater(max(0.0, when - reactor.seconds()), self.wake)

    def stop(self) -> defer.Deferred:
        """
        Stop sending: abort the associations at work (their entries stay
        queued) and wait for the workers to record what was sent.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        for association in list(self._associations):
            association.abort()
        return defer.DeferredList(list(self._workers))

    @defer.inlineCallbacks
    def _settle(self, sent: Sequence[QueueEntry] = (), outcome: Optional[_Outcome] = None, started: float = 0.0):
        """
        Record what became of the entries C{sent} on an association, and
        claim the next ones to send on it, in one job of a worker thread,
        under the lock, so that two associations never take the same
        entries.

        @param outcome: what became of C{sent}, or C{None} when nothing was
            sent yet.
        @return: a L{Deferred} firing with the entries to send next, none
            when the association is to end.
        """
        forwarding = self.forwarding
        own = {entry.studyInstanceUID for entry in sent}
        yield self._claiming.acquire()
        try:
            while True:
                self._woken = False
                now = forwarding.reactor.seconds()
                delay = forwarding.settings.policy.delay(self._failures + 1)
                claiming = forwarding.running and (outcome is None or outcome.unreachable is None)
                given, claim = yield forwarding.inThread(
                    self._recordAndClaim, outcome, now, delay, list(self._busy - own) if claiming else None
                )
                if outcome is not None:
                    # Only once recorded: until then the entries are still
                    # queued, and another association would send them again.
                    self._busy -= own
                    self._recorded(sent, outcome, given, now, started, delay)
                    sent, outcome, own = (), None, set()
                if claim is None:
                    return []
                entries = self._take(claim)
                if entries or not self._woken:
                    return entries
        finally:
            self._claiming.release()

    def _recordAndClaim(self, outcome: Optional[_Outcome], now: float, delay: float, busy: Optional[List[str]]):
        """
        In a worker thread: L{Forwarding.record} an outcome, then claim the
        next entries unless C{busy} (the studies other associations are
        sending) is C{None}.

        @return: the ids of the entries failed for good because they
            waited too long, and the L{Claim} or C{None}.
        """
        forwarding = self.forwarding
        given = forwarding.record(self.title, outcome, now, delay) if outcome is not None else []
        claim = forwarding.queue.claim(self.title, now, BATCH, busy) if busy is not None else None
        return given, claim

    def _take(self, claim) -> List[QueueEntry]:
        """
        The entries of a claim, to send on one association (they share a
        calling AE title).
        """
        if claim.depth is not None:
            self.depth, self.oldest = claim.depth, claim.oldest
        self._full = len(claim.entries) >= BATCH
        if claim.nextTry is not None:
            self._wakeAt(claim.nextTry)
        entries = claim.entries
        self._busy.update(entry.studyInstanceUID for entry in entries)
        if self._full:
            self.forwarding.reactor.callLater(0, self._wakeForMore)
        return entries

    def _wakeForMore(self) -> None:
        """
        A claim was full: start another association, unless the last one
        started found nothing its own.
        """
        if not self._crowded:
            self._wake()

    @defer.inlineCallbacks
    def _work(self):
        association, proposed = None, set()
        entries = yield self._settle()
        if not entries and self._busy:
            # Whatever is due waits behind the studies the others send.
            self._crowded = True
        try:
            while entries:
                outcome = _Outcome()
                started = self.forwarding.reactor.seconds()
                needed = {(e.sopClassUID, e.transferSyntaxUID) for e in entries}
                if association is not None and (association.callingAETitle != entries[0].callingAETitle or not needed <= proposed):
                    self._associations.discard(association)
                    yield association.release()
                    association = None
                if association is None:
                    try:
                        association = yield self._connect(entries)
                    except AssociationRejected as e:
                        if e.reject.result == REJECT_RESULT_PERMANENT:
                            outcome.failed.extend((entry.id, str(e)) for entry in entries)
                        else:
                            outcome.unreachable = str(e)
                    except Exception as e:
                        outcome.unreachable = str(e) or e.__class__.__name__
                    else:
                        proposed = needed
                if association is not None:
                    association = yield self._send(association, entries, outcome)
                entries = yield self._settle(entries, outcome, started)
        finally:
            if association is not None:
                self._associations.discard(association)
                if not association.hasEnded:
                    yield association.release()

    @defer.inlineCallbacks
    def _connect(self, entries: List[QueueEntry]):
        destination = self.forwarding.destination(self.title, entries[0].callingAETitle)
        association = yield destination.connect(storedContexts(entries))
        self._associations.add(association)
        if self.forwarding.settings.asynchronousOperations != 1:
            window = association.operationsWindow
            self.log.info(
                "Forwarding to {destination}: asynchronous operations window {window}",
                destination=self.title,
                window="without limit" if window is None else "of %d C-STOREs" % (window,) if window > 1 else "not granted, one C-STORE at a time",
            )
        return association

    @defer.inlineCallbacks
    def _send(self, association, entries: List[QueueEntry], outcome: _Outcome):
        """
        Send C{entries} through a L{StorePipeline} on C{association}:
        each file opened and read ahead (L{openFile}: one system call for
        its meta information and its first piece) while the destination
        stores the one before,
        and as many C-STOREs outstanding as the destination granted, in
        queue order.  Each entry's outcome is recorded as its response
        comes; when the association ends, the entries under way and those
        not sent are left unmarked, for the destination's back-off.

        @return: a L{Deferred} firing with the association, or C{None} when
            it ended.
        """
        pipeline = StorePipeline(association, reactor=self.forwarding.reactor)
        waiting, sent = deque(entries), deque()
        readSize = association.readSize
        upcoming = _fileFor(waiting[0], readSize) if waiting else None
        try:
            while True:
                while waiting and pipeline.hasRoom and self.forwarding.running:
                    entry, dicomFile = waiting[0], upcoming
                    try:
                        context = chooseContext(association, entry.sopClassUID, entry.transferSyntaxUID)
                    except StoreFailed:
                        context = None
                    converted = context is not None and context.transferSyntax != entry.transferSyntaxUID
                    if sent and (converted or sent[-1][1]):
                        # A converted instance leaves once a worker thread
                        # has converted it: it goes alone, so that neither
                        # it nor the next overtakes the other.
                        break
                    waiting.popleft()
                    if isinstance(dicomFile, Exception):
                        outcome.failed.append((entry.id, "cannot read %s: %s" % (entry.path, dicomFile)))
                    elif context is None:
                        dicomFile.close()
                        outcome.failed.append((entry.id, describeRefusal(association, entry)))
                    else:
                        pipeline.store(dicomFile)
                        sent.append((entry, converted))
                        # The request goes to the kernel before the next
                        # file is read, while the destination stores it.
                        association.flush()
                    upcoming = _fileFor(waiting[0], readSize) if waiting else None
                if not sent:
                    return association
                entry, _ = sent.popleft()
                _, stored = pipeline.next()
                try:
                    result = yield stored
                except StoreFailed as e:
                    outcome.failed.append((entry.id, str(e)))
                except AssociationError as e:
                    outcome.unreachable = str(e)
                    self._associations.discard(association)
                    # The C-STOREs still outstanding fail with the
                    # association, and wait with the rest.
                    while pipeline.outstanding:
                        pipeline.next()[1].addErrback(lambda failure: None)
                    return None
                else:
                    if isStored(result):
                        outcome.delivered.append(entry.id)
                    else:
                        reason = _status.describe(result.status) + (": " + result.errorComment if result.errorComment else "")
                        (outcome.postponed if isTransient(result.status) else outcome.failed).append((entry.id, reason))
        finally:
            pipeline.close()
            if isinstance(upcoming, FileDataSet):
                upcoming.close()

    def _recorded(self, entries: Sequence[QueueEntry], outcome: _Outcome, given: List[int], now: float, started: float, delay: float) -> None:
        """
        Count and log what became of a batch once it is recorded; an
        unreachable destination waits C{delay} before its next try.
        """
        forwarding = self.forwarding
        byID = {entry.id: entry for entry in entries}
        if outcome.delivered:
            self._failures = 0
            self.delivered += len(outcome.delivered)
            self.log.info(
                "Forwarded {count} instances to {destination} in {seconds:.2f} s",
                count=len(outcome.delivered),
                destination=self.title,
                seconds=now - started,
            )
        for entry, reason in outcome.failed:
            self.failed += 1
            self.log.error(
                "Forwarding {uid} to {destination} failed for good: {reason}",
                uid=byID[entry].sopInstanceUID,
                destination=self.title,
                reason=reason,
            )
        for entry, reason in outcome.postponed:
            self.log.warn(
                "Forwarding {uid} to {destination} failed, it is retried later: {reason}",
                uid=byID[entry].sopInstanceUID,
                destination=self.title,
                reason=reason,
            )
        self.failed += len(given)
        if outcome.unreachable is not None and forwarding.running:
            self._failures += 1
            self._retryAt = now + delay
            self._wakeAt(self._retryAt)
            self.log.warn(
                "Forwarding to {destination}: {reason}; trying again in {delay:.0f} s",
                destination=self.title,
                reason=outcome.unreachable,
                delay=delay,
            )
        for entry in given:
            self.log.error("Forwarding to {destination}: gave up on entry {entry}", destination=self.title, entry=entry)


@dataclass(frozen=True)
class ForwardingSettings:
    """
    The configuration's C{[forwarding]} table.

    @ivar associationsPerPeer: associations to one destination at once.
    @ivar lease: how long a node's claim on entries holds if the node
        stops renewing it (it died), in seconds: then another node sends
        them.
    @ivar asynchronousOperations: C-STOREs each association proposes to
        have outstanding at once (an Asynchronous Operations Window, PS3.7
        D.3.3.3), 1 for none; the destination may grant fewer.
    """

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    associationsPerPeer: int = 2
    lease: float = LEASE
    asynchronousOperations: int = 1


class Forwarding(service.Service):
    """
    Empties the forwarding queue: a L{DestinationQueue} for each peer.

    @ivar queue: the L{ForwardQueue}, claiming entries under this node's
        name.
    @ivar routerAreas: the L{areaKey<dicomd.archive.index.areaKey>}s of
        the areas in router mode.
    @ivar studyTimeouts: the end-of-study timeout of each area whose
        studies end, C{None} for those that end as their senders move on
        (L{ForwardQueue.releaseUnfollowed}).
    """

    log = Logger()

    def __init__(
        self,
        index,
        peers: Sequence[Peer],
        *,
        settings: ForwardingSettings = ForwardingSettings(),
        routerAreas: Iterable[str] = (),
        studyTimeouts: Optional[Dict[str, Optional[float]]] = None,
        acseTimeout: Optional[float] = 30.0,
        dimseTimeout: Optional[float] = None,
        node: str = "",
        reactor=None,
        threadpool=None,
    ):
        """
        @param index: the L{SQLiteArchiveIndex
            <dicomd.archive.index.SQLiteArchiveIndex>} holding the queue.
        @param node: the name of this daemon among those sharing the index.
        """
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.index = index
        self.queue = ForwardQueue(index, node)
        self._renewing = task.LoopingCall(self.renewClaims)
        self._renewing.clock = reactor
        self.destinations: Dict[str, DestinationQueue] = {}
        self._threadpool = threadpool if threadpool is not None else reactor.getThreadPool()
        self.configure(
            peers, settings=settings, routerAreas=routerAreas, studyTimeouts=studyTimeouts or {}, acseTimeout=acseTimeout, dimseTimeout=dimseTimeout
        )

    def configure(
        self,
        peers: Sequence[Peer],
        *,
        settings: ForwardingSettings,
        routerAreas: Iterable[str],
        studyTimeouts: Dict[str, Optional[float]],
        acseTimeout,
        dimseTimeout,
    ) -> None:
        """
        Put peers and settings in force (at start, and on reload): a new
        peer gets its queue, one no longer configured keeps its entries
        until it is configured again or they are forgotten.
        """
        self.settings = settings
        self.queue.lease = settings.lease
        self._renewing.interval = settings.lease / 3
        self.routerAreas = frozenset(routerAreas)
        self.studyTimeouts = dict(studyTimeouts)
        self._peers = list(peers)
        self._timeouts = (acseTimeout, dimseTimeout)
        self._tables: Dict[str, object] = {}
        for peer in self._peers:
            if peer.aeTitle not in self.destinations:
                self.destinations[peer.aeTitle] = DestinationQueue(self, peer.aeTitle)
        if self.running:
            self.wake()

    def destination(self, title: str, callingAETitle: str):
        """
        The L{dicomd.services.retrieve.Destination} that connects to peer
        C{title} as C{callingAETitle}.
        """
        table = self._tables.get(callingAETitle)
        if table is None:
            acseTimeout, dimseTimeout = self._timeouts
            table = destinationTable(
                self._peers,
                callingAETitle,
                reactor=self.reactor,
                acseTimeout=acseTimeout,
                dimseTimeout=dimseTimeout,
                asynchronousOperations=self.settings.asynchronousOperations,
            )
            self._tables[callingAETitle] = table
        return table(title)

    def inThread(self, function, *args) -> defer.Deferred:
        return deferToThreadPool(self.reactor, self._threadpool, function, *args)

    def wake(self, titles: Optional[Iterable[str]] = None) -> None:
        """
        Entries were queued for C{titles} (every destination if C{None}).
        """
        known = {peer.aeTitle for peer in self._peers}
        for title in self.destinations if titles is None else titles:
            if title in known:
                self.destinations[title].wake()

    def studyEnded(self, area: str, studyInstanceUID: str) -> defer.Deferred:
        """
        Queue the entries held for a study that ended, and send them.
        """
        released = self.inThread(self.queue.release, area, studyInstanceUID, self.reactor.seconds())
        return released.addCallback(lambda titles: self.wake(titles) if titles else None)

    def record(self, destination: str, outcome: _Outcome, now: float, delay: float) -> List[int]:
        """
        Write what became of a claim's entries (blocking), and in router
        mode forget the instances no entry holds any more, files too.

        @param delay: how long the destination waits when it could not be
            reached.

        @return: the ids of entries failed for good because they waited
            too long.
        """
        queue, policy = self.queue, self.settings.policy
        forgettable = queue.delivered(outcome.delivered)
        if outcome.failed:
            queue.failed(outcome.failed)
        given = queue.postponed(outcome.postponed, now, policy) if outcome.postponed else []
        if outcome.unreachable is not None and self.running:
            given += queue.postponeDestination(destination, outcome.unreachable, now, policy, delay)
        byArea: Dict[str, List[str]] = {}
        for area, uid in forgettable:
            if area in self.routerAreas:
                byArea.setdefault(area, []).append(uid)
        for area, uids in byArea.items():
            for path in self.index.removeUnqueued(area, uids):
                try:
                    os.unlink(os.path.join(area, path))
                except FileNotFoundError:
                    pass
        return given

    def renewClaims(self) -> defer.Deferred:
        """
        Renew the leases of the entries this node is sending (every third
        of a lease), so that no other node takes them while it is alive.
        """
        renewed = self.inThread(self.queue.renew, self.reactor.seconds())
        return renewed.addErrback(self._indexFailed, "renew the claims of this node")

    def look(self) -> defer.Deferred:
        """
        Look at the queue (every L{LOOK_INTERVAL} seconds): send at once
        what C{dicomd queue retry} queued again, however long its
        destination was to wait, and take each destination's depth, which
        otherwise changes only when it claims (not while it waits out a
        failure).
        """

        def looked(result):
            retried, depths = result
            for title, destination in self.destinations.items():
                destination.depth, destination.oldest = depths.get(title, (0, None))
            known = {peer.aeTitle for peer in self._peers}
            for title in retried:
                if title in known:
                    self.destinations[title].retryNow()

        looking = self.inThread(lambda: (self.queue.takeRetried(), self.queue.depths()))
        return looking.addCallbacks(looked, self._indexFailed, errbackArgs=("look at the queue",))

    def releaseUnfollowed(self, following: Iterable[Tuple[str, str]]) -> defer.Deferred:
        """
        Queue and send the entries held for studies whose end no live node
        will bring (L{ForwardQueue.releaseUnfollowed}), once another node's
        run is taken over.

        @param following: C{(area, StudyInstanceUID)} of the studies this
            node's trackers follow.
        """
        releasing = self.inThread(self.queue.releaseUnfollowed, self.reactor.seconds(), self.studyTimeouts, list(following))
        return releasing.addCallback(self._released)

    def _released(self, count: int) -> None:
        if count:
            self.log.info("Forwarding: {count} entries held for studies no node follows any more are queued", count=count)
            self.wake()

    def startService(self) -> None:
        """
        Queue what a killed run held for studies that never ended, unless
        another node may still end them (the tracker that followed them
        here is gone: L{ForwardQueue.releaseUnfollowed}), release what it
        claimed, send what is due, and L{look} at the queue from now on.
        """
        self._released(self.queue.releaseUnfollowed(self.reactor.seconds(), self.studyTimeouts))
        self.queue.releaseClaims()
        service.Service.startService(self)
        self.wake()
        self._looking = task.LoopingCall(self.look)
        self._looking.clock = self.reactor
        self._looking.start(LOOK_INTERVAL, now=False)
        self._renewing.start(self._renewing.interval, now=False)

    @defer.inlineCallbacks
    def stopService(self):
        """
        Stop sending, and release what this node claimed and did not send,
        for the other nodes to send at once.
        """
        service.Service.stopService(self)
        self._looking.stop()
        self._renewing.stop()
        yield defer.DeferredList([destination.stop() for destination in self.destinations.values()])
        yield self.inThread(self.queue.releaseClaims).addErrback(self._indexFailed, "release the claims of this node")

    def _indexFailed(self, failure, doing: str) -> None:
        """
        Log, in one line, that the index failed what the service was
        C{doing} (the database is gone: the next look, renewal or start
        tries again); anything else with its traceback.
        """
        if failure.check(*DATABASE_ERRORS):
            self.log.error("Forwarding: cannot {doing}: {error}", doing=doing, error=failure.getErrorMessage())
        else:
            self.log.failure("Forwarding: cannot {doing}", failure, doing=doing)
