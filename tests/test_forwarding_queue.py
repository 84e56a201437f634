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
from dicomd.forwarding import DestinationQueue, Forwarding, ForwardingSettings
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
