"""
Tests for L{dicomd.archive.takeover}: the heartbeat of a node sharing an
index in PostgreSQL, and its take-over of a dead node's run, on a fake
index and a thread pool the test runs by hand (the index's own statements
are L{tests.test_archive_index}'s, the whole in daemons
L{tests.test_scaleout}'s).
"""

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from dicomd.archive.index import IndexDatabaseError, ReindexReport
from dicomd.archive.takeover import TakeOver
from tests.support import callWithCallback

LEASE = 60.0


class ThreadlessClock(Clock):
    """
    A clock whose thread-pool results arrive at once.
    """

    def callFromThread(self, function, *args, **kwargs):
        function(*args, **kwargs)


class ManualThreadPool:
    """
    Holds each call until the test runs it (L{runAll}).
    """

    def __init__(self):
        self.calls = []

    def callInThreadWithCallback(self, onResult, function, *args, **kwargs):
        self.calls.append((onResult, function, args, kwargs))

    def runAll(self):
        calls, self.calls = self.calls, []
        for onResult, function, args, kwargs in calls:
            callWithCallback(onResult, function, *args, **kwargs)


class FakeIndex:
    """
    The run statements of L{PostgreSQLArchiveIndex
    <dicomd.archive.postgresql.PostgreSQLArchiveIndex>}: beats recorded,
    the runs to claim given by the test.
    """

    def __init__(self, *dead):
        self.beats = []
        self.claims = []
        self.dead = list(dead)
        self.ended = []

    def beat(self, now):
        self.beats.append(now)

    def takeOverRun(self, now, lease):
        self.claims.append((now, lease))
        return self.dead.pop(0) if self.dead else None

    def endTakeOver(self, node):
        self.ended.append(node)


class FakeArea:
    """
    An L{IndexedArea<dicomd.archive.area.IndexedArea>} that found
    C{indexed} files, or fails as C{failures} say.
    """

    def __init__(self, indexed, failures=0):
        self.indexed = indexed
        self.failures = failures
        self.caughtUp = []

    def catchUp(self, before):
        self.caughtUp.append(before)
        if self.failures:
            self.failures -= 1
            raise IndexDatabaseError("server closed the connection")
        return ReindexReport(self.indexed, 0, ()), self.indexed


class TakeOverTests(SynchronousTestCase):
    def setUp(self):
        self.clock = ThreadlessClock()
        self.clock.advance(1000.0)
        self.pool = ManualThreadPool()

    def start(self, index, *areas):
        self.released = []
        takeOver = TakeOver(
            index, lambda: list(areas), LEASE, recovered=lambda: self.released.append(True), reactor=self.clock, threadpool=self.pool
        )
        takeOver.startService()
        return takeOver

    def test_beatsEveryThirdOfALease(self):
        """
        The heartbeat is renewed at start, then every third of the lease.
        """
        index = FakeIndex()
        self.start(index)
        self.pool.runAll()
        self.clock.advance(LEASE / 3)
        self.pool.runAll()
        self.assertEqual(index.beats, [1000.0, 1020.0])
        self.assertEqual(index.claims, [(1000.0, LEASE), (1020.0, LEASE)])

    def test_deadRunRecovered(self):
        """
        A run claimed is recovered in every area, from the files older than
        the dead node's last heartbeat and half a lease, recorded recovered,
        and logged in one line; then the entries held for the studies no
        node follows any more are released.
        """
        index, areas = FakeIndex(("one", 900.0)), (FakeArea(3), FakeArea(2))
        self.start(index, *areas)
        with capturedLogs() as events:
            self.pool.runAll()
            self.pool.runAll()
        self.assertEqual([area.caughtUp for area in areas], [[930.0], [930.0]])
        self.assertEqual((index.ended, self.released), (["one"], [True]))
        self.assertEqual(
            [formatEvent(event) for event in events],
            ["Took over the run of node one, silent for 100 s: 5 files it had stored and not indexed are indexed, 5 forwarding entries queued"],
        )

    def test_beatsWhileRecovering(self):
        """
        The heartbeat goes on while a recovery runs, and no other run is
        claimed until it is over.
        """
        index = FakeIndex(("one", 900.0), ("two", 900.0))
        self.start(index, FakeArea(1))
        self.pool.runAll()
        self.clock.advance(LEASE / 3)
        recovery, beat = self.pool.calls
        self.pool.calls = [beat]
        self.pool.runAll()
        self.assertEqual((index.beats, len(index.claims)), ([1000.0, 1020.0], 1))
        self.pool.calls = [recovery]
        self.pool.runAll()
        self.clock.advance(LEASE / 3)
        self.pool.runAll()
        self.assertEqual(len(index.claims), 2)

    def test_failedRecoveryTriedAgain(self):
        """
        A recovery the index fails is logged in one line, and tried again at
        the next beat without claiming the run again.
        """
        index, area = FakeIndex(("one", 900.0)), FakeArea(1, failures=1)
        self.start(index, area)
        with capturedLogs() as events:
            self.pool.runAll()
            self.pool.runAll()
        self.assertEqual([formatEvent(event) for event in events], ["Cannot take over the run of one: server closed the connection"])
        self.clock.advance(LEASE / 3)
        self.pool.runAll()
        self.pool.runAll()
        self.assertEqual((len(area.caughtUp), len(index.claims), index.ended, self.released), (2, 1, ["one"], [True]))

    def test_stopWaitsForTheRecovery(self):
        """
        Stopping waits for the recovery under way, and beats no more.
        """
        index = FakeIndex(("one", 900.0))
        takeOver = self.start(index, FakeArea(1))
        self.pool.runAll()
        stopped = takeOver.stopService()
        self.assertNoResult(stopped)
        self.pool.runAll()
        self.successResultOf(stopped)
        self.clock.advance(LEASE)
        self.assertEqual((self.pool.calls, index.beats), ([], [1000.0]))

    def test_leaseChanged(self):
        """
        A new lease (a reload) sets the interval of the next beats.
        """
        index = FakeIndex()
        takeOver = self.start(index)
        self.pool.runAll()
        takeOver.lease = 30.0
        self.clock.advance(LEASE / 3)
        self.pool.runAll()
        self.clock.advance(10.0)
        self.pool.runAll()
        self.assertEqual(index.beats, [1000.0, 1020.0, 1030.0])
