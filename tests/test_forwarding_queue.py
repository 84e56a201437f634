"""
Unit tests for L{dicomd.forwarding.DestinationQueue}'s timing, on a
L{twisted.internet.task.Clock}, and for L{dicomd.forwarding.Forwarding}
without its database.
"""

import contextlib

from twisted.internet import defer, task
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from dicomd.archive.index import IndexDatabaseError
from dicomd.archive.queue import Claim, QueueEntry
from dicomd.forwarding import BATCH, DestinationQueue, Forwarding, ForwardingSettings
from tests.test_archive_index import ImmediateReactor, ImmediateThreadPool


class _Forwarding:
    """
    What a L{DestinationQueue} asks of its L{dicomd.forwarding.Forwarding}
    before it claims anything.
    """

    running = True
    settings = ForwardingSettings()

    def __init__(self, reactor):
        self.reactor = reactor


class DestinationQueueTests(SynchronousTestCase):
    def test_wokenDuringTheWaitWakesAfterIt(self):
        """
        A wake-up while the destination waits out a failure (a timer set
        for an entry due sooner, a new instance) starts nothing, and leaves
        a wake-up for the end of the wait: the destination is tried then,
        whatever timer was set before.
        """
        clock = task.Clock()
        queue = DestinationQueue(_Forwarding(clock), "PACS")
        started = []
        queue._work = lambda: started.append(clock.seconds()) or defer.Deferred()
        queue._retryAt = 10.0
        queue._wakeAt(4.0)
        clock.advance(4)
        self.assertEqual(started, [])
        clock.advance(5)
        self.assertEqual(started, [])
        clock.advance(1)
        self.assertEqual(started, [10.0])

    def test_wokenWhileAWorkerEnds(self):
        """
        A wake-up after a worker's last claim, while it still releases its
        association, starts nothing then (a worker is at work), and a
        worker when that one ends: the instances it was for are not left
        waiting for the next.
        """
        clock = task.Clock()
        queue = DestinationQueue(_Forwarding(clock), "PACS")
        workers = []

        def work():
            # Its claim found nothing more, and no wake-up came meanwhile.
            queue._woken = False
            workers.append(defer.Deferred())
            return workers[-1]

        queue._work = work
        queue.wake()
        queue.wake()
        self.assertEqual(len(workers), 1)
        workers[0].callback(None)
        self.assertEqual(len(workers), 2)
        workers[1].callback(None)
        self.assertEqual(len(workers), 2)


def _entries(count: int, study: str):
    """
    C{count} queued entries of one study, from one calling AE title.
    """
    return [
        QueueEntry(number, "PACS", "CT01", "queued", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.%d" % (number,), "1.2.840.10008.1.2.1", study, "/data", "%d.dcm" % (number,), 0.0, 0, 0.0, "")
        for number in range(count)
    ]


class CrowdedTests(SynchronousTestCase):
    """
    Another association starts for a full claim, unless the last one
    started so found nothing of its own, and nothing changed since.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.queue = DestinationQueue(_Forwarding(self.clock), "PACS")
        self.claims = []

        def settle(*args):
            # The extra association's claim: what is due is all in the
            # study on its way.
            self.claims.append(self.clock.seconds())
            return defer.succeed([])

        self.queue._settle = settle
        # One association at work on study S.
        self.queue._workers.add(defer.Deferred())
        self.full = Claim(_entries(BATCH, "S"), None, 2000, 0.0)

    def fullClaim(self) -> None:
        self.queue._take(self.full)
        self.clock.advance(0)

    def test_oneFruitlessClaim(self):
        """
        The second full claim of the same study starts no association:
        the first one started found nothing.
        """
        self.fullClaim()
        self.assertEqual(len(self.claims), 1)
        self.fullClaim()
        self.fullClaim()
        self.assertEqual(len(self.claims), 1)

    def test_wokenAgainByANewEntry(self):
        """
        A wake-up (new entries, a retry, a timer) lets the next full claim
        start an association again.
        """
        self.fullClaim()
        self.queue.wake()
        self.assertEqual(len(self.claims), 2)
        self.fullClaim()
        self.assertEqual(len(self.claims), 2)

    def test_associationThatFindsEntries(self):
        """
        An association started for a full claim that finds entries of its
        own leaves the next full claim free to start another.
        """
        found = iter([_entries(3, "T"), []])
        self.queue._settle = lambda *args: defer.succeed(next(found, []))
        self.queue._send = lambda association, entries, outcome: defer.succeed(association)
        self.queue._connect = lambda entries: defer.succeed(None)
        self.queue._busy.clear()
        self.fullClaim()
        self.assertFalse(self.queue._crowded)


class _LostIndex:
    """
    An index whose database server is gone.
    """

    @contextlib.contextmanager
    def connection(self):
        raise IndexDatabaseError("connection refused")
        yield

    transaction = connection


class _Reactor(task.Clock, ImmediateReactor):
    """
    A clock that delivers results from the thread pool at once.
    """


class ForwardingWithoutItsDatabaseTests(SynchronousTestCase):
    def setUp(self):
        self.events = []
        self.forwarding = Forwarding(_LostIndex(), [], reactor=_Reactor(), threadpool=ImmediateThreadPool())
        self.forwarding.log = Logger(observer=self.events.append)

    def assertLogged(self, line):
        self.assertEqual([formatEvent(event) for event in self.events], [line])
        self.assertNotIn("log_failure", self.events[0])

    def test_look(self):
        """
        A look at the queue while the database is gone logs one line naming
        the error, without a traceback: the next look tries again.
        """
        self.forwarding.look()
        self.assertLogged("Forwarding: cannot look at the queue: connection refused")

    def test_renewClaims(self):
        """
        So does the renewal of this node's claims.
        """
        self.forwarding.renewClaims()
        self.assertLogged("Forwarding: cannot renew the claims of this node: connection refused")
