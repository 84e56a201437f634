"""
Taking over the run of a dead daemon among those sharing an index in
PostgreSQL (C{docs/scale-out.md}).

The index writer records rows a few milliseconds after the C-STORE-RSP
(L{dicomd.archive.writer}): a daemon killed in between leaves acknowledged
files on the shared file system that the index lacks.  A daemon that
starts again indexes them itself (L{IndexedArea.recover
<dicomd.archive.area.IndexedArea.recover>}); one that never comes back
leaves them to L{TakeOver}: each daemon renews a heartbeat in the index,
and the first to find another's run neither ended nor beating for a lease
claims it and indexes those files, queueing them for forwarding.
"""

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from dicomd.archive.index import DATABASE_ERRORS


class TakeOver(service.Service):
    """
    Beats this daemon's heartbeat in the index every third of a lease, and
    takes over the run of a daemon whose heartbeat is older than the lease
    (L{PostgreSQLArchiveIndex.takeOverRun
    <dicomd.archive.postgresql.PostgreSQLArchiveIndex.takeOverRun>}): its
    storage areas (which are this daemon's too) are searched for the files
    it stored and did not index, in the thread pool.

    A run claimed and not recovered (the database went away meanwhile) is
    recovered again at the next beat; the heartbeat goes on while a
    recovery runs, however long it takes.

    @ivar lease: seconds without a heartbeat after which a daemon is dead:
        the forwarding queue's lease (C{[forwarding] lease}), since a
        daemon that stopped beating stopped renewing its claims too.
    """

    log = Logger()

    def __init__(self, index, areas, lease: float, *, recovered=lambda: None, reactor, threadpool):
        """
        @param index: the L{PostgreSQLArchiveIndex
            <dicomd.archive.postgresql.PostgreSQLArchiveIndex>}.
        @param areas: returns the L{IndexedArea
            <dicomd.archive.area.IndexedArea>}s in force, with their
            routes.
        @param recovered: called once a run is recovered: the studies the
            dead daemon was receiving will not end there
            (L{dicomd.forwarding.Forwarding.releaseUnfollowed}).
        """
        self._index = index
        self._areas = areas
        self._whenRecovered = recovered
        self._reactor = reactor
        self._threadpool = threadpool
        self._beating = task.LoopingCall(self.beat)
        self._beating.clock = reactor
        self._claimed = None
        self._recovering = None
        self._beatsEnded = None
        self.lease = lease

    @property
    def lease(self) -> float:
        return self._lease

    @lease.setter
    def lease(self, lease: float) -> None:
        self._lease = lease
        self._beating.interval = lease / 3

    def startService(self) -> None:
        service.Service.startService(self)
        self._beatsEnded = self._beating.start(self._beating.interval)

    def stopService(self):
        """
        Stop beating, and wait for the beat and the recovery under way: the
        index records a clean end after this service stops, which a late
        heartbeat would undo.
        """
        service.Service.stopService(self)
        self._beating.stop()
        waits = [self._beatsEnded] + ([self._recovering] if self._recovering is not None else [])
        return defer.gatherResults(waits).addCallback(lambda _: None)

    def beat(self):
        """
        Renew the heartbeat and, unless a recovery is under way, claim a
        dead daemon's run and recover it.
        """
        beating = self._inThread(self._beatAndClaim, self._reactor.seconds(), self._recovering is None and self._claimed is None)
        return beating.addCallbacks(self._beaten, self._failed, errbackArgs=("renew the heartbeat of this node",))

    def _beatAndClaim(self, now: float, claiming: bool):
        self._index.beat(now)
        return self._index.takeOverRun(now, self.lease) if claiming else None

    def _beaten(self, claimed) -> None:
        if claimed is not None:
            self._claimed = tuple(claimed)
        if self._claimed is None or self._recovering is not None or not self.running:
            return
        node, heartbeat = self._claimed
        # The dead daemon stored nothing after it died, at most a beat
        # (a third of a lease) after its last heartbeat: leave alone what
        # the living may not have indexed yet, the files newer than that
        # with some slack.
        before = heartbeat + self.lease / 2
        self._recovering = self._inThread(self._recover, node, list(self._areas()), before)
        self._recovering.addCallbacks(self._recovered, self._failed, callbackArgs=(node, heartbeat), errbackArgs=("take over the run of " + node,))
        self._recovering.addBoth(self._settled)

    def _recover(self, node: str, areas, before: float):
        """
        In a worker thread: index what C{node} left in each area, and
        record its run recovered.

        @return: files indexed, and forwarding entries queued.
        """
        indexed = queued = 0
        for area in areas:
            report, entries = area.catchUp(before)
            indexed += report.indexed
            queued += entries
        self._index.endTakeOver(node)
        return indexed, queued

    def _recovered(self, counts, node: str, heartbeat: float) -> defer.Deferred:
        indexed, queued = counts
        self._claimed = None
        self.log.info(
            "Took over the run of node {node}, silent for {silence:.0f} s: "
            "{indexed} files it had stored and not indexed are indexed, {queued} forwarding entries queued",
            node=node,
            silence=self._reactor.seconds() - heartbeat,
            indexed=indexed,
            queued=queued,
        )
        releasing = defer.maybeDeferred(self._whenRecovered)
        return releasing.addErrback(self._failed, "queue the entries held for the studies of " + node)

    def _settled(self, _) -> None:
        self._recovering = None

    def _failed(self, failure, what: str) -> None:
        """
        Log, in one line, that the index could not do C{what} (the
        database is gone: the next beat tries again); anything else with
        its traceback.
        """
        if failure.check(*DATABASE_ERRORS):
            self.log.error("Cannot {what}: {error}", what=what, error=failure.getErrorMessage())
        else:
            self.log.failure("Cannot {what}", failure, what=what)

    def _inThread(self, function, *args):
        return deferToThreadPool(self._reactor, self._threadpool, function, *args)
