"""
Tests for L{dicomd.archive.writer}: the storage area's index written in
batches behind the C-STORE-RSP.
"""

import os
import sqlite3
import threading
import time

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dicomd.archive.area import IndexedArea
from dicomd.archive.dcmqrcfg import Quota
from dicomd.archive import writer as writerModule
from dicomd.archive.index import WAL_AUTOCHECKPOINT, IndexBusy, SQLiteArchiveIndex, areaKey
from dicomd.archive.matching import Level
from dicomd.archive.queue import Forwarding, ForwardQueue
from dicomd.archive.sql import HeaderKeys
from dicomd.archive.writer import IndexWriter
from dicomd.dimse.status import OUT_OF_RESOURCES
from dicomd.storage.scp import ReceivedInstance, StoreRefused
from dicomd.storage.spool import InlineWrites
from tests.test_archive_index import AREA, EXPLICIT, header


class _Jobs:
    """
    A thread pool's C{callInThread} whose jobs wait until the test runs them.
    """

    def __init__(self):
        self.held = []

    def __call__(self, job):
        self.held.append(job)

    def run(self):
        while self.held:
            self.held.pop(0)()


class _Router:
    """
    A router that sends everything to PACS and remembers what it was told
    was queued.
    """

    def __init__(self):
        self.told = []

    def forwardingsFor(self, received):
        return (Forwarding("PACS", "DICOMD"),)

    def queued(self, forwardings):
        self.told.append(list(forwardings))


class _IndexedAreaCase(SynchronousTestCase):
    """
    A storage area's directory with its SQLite index, and a thread pool
    whose jobs wait for the test.
    """

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.index = SQLiteArchiveIndex(os.path.join(self.directory, "index.sqlite"))
        self.addCleanup(self.index.close)
        self.jobs = _Jobs()


class IndexWriterTests(_IndexedAreaCase):
    def setUp(self):
        _IndexedAreaCase.setUp(self)
        self.sleeps = []
        self.transactions = 0
        addInstances = self.index.addInstances

        def counting(area, items):
            self.transactions += 1
            return addInstances(area, items)

        self.patch(self.index, "addInstances", counting)

    def writer(self, quota=None, router=None, schedule=None, sleep=None, window=0) -> IndexWriter:
        area = IndexedArea(self.index, AREA, self.directory, quota, router=router)
        return IndexWriter(area, schedule or self.jobs, window=window, sleep=sleep or self.sleeps.append)

    def received(self, number, size=100) -> ReceivedInstance:
        dataset = header("1.1.1", number)
        path = os.path.join(self.directory, "CT.%d" % (number,))
        with open(path, "wb") as f:
            f.write(b"\0" * size)
        return ReceivedInstance(
            dataset.SOPClassUID, dataset.SOPInstanceUID, EXPLICIT, "MODALITY", "DICOMD", "127.0.0.1", 1000.0,
            attributes=dataset, path=path,
        )

    def rows(self):
        return self.index.storedPaths(areaKey(self.directory))

    def test_addReturnsAtOnceAndWritesInOneTransaction(self):
        """
        Objects added while the writer waits for its thread are written together, in one transaction, once it runs.
        """
        writer = self.writer()
        self.assertTrue(writer.returnsAtOnce)
        for number in range(1, 6):
            self.assertIsNone(writer.add(self.received(number)))
        self.assertEqual(self.rows(), {})
        self.assertEqual(len(self.jobs.held), 1)
        self.jobs.run()
        self.assertEqual(sorted(self.rows().values()), ["CT.%d" % (n,) for n in range(1, 6)])
        self.assertEqual(self.transactions, 1)
        self.assertTrue(writer.close(timeout=0))

    def test_whenWritten(self):
        """
        whenWritten fires at once when nothing waits; else once what was added before it is written, and not before.
        """
        from twisted.internet.task import Clock

        clock = Clock()
        clock.callFromThread = lambda f, *a: f(*a)
        writer = self.writer()
        self.assertIsNone(self.successResultOf(writer.whenWritten(clock, 5)))
        writer.add(self.received(1))
        written = writer.whenWritten(clock, 5)
        self.assertNoResult(written)
        self.jobs.run()
        self.assertIsNone(self.successResultOf(written))
        self.assertEqual(list(self.rows().values()), ["CT.1"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_whenWrittenBounded(self):
        """
        A writer that cannot write does not hold its waiters longer than their timeout.
        """
        from twisted.internet.task import Clock

        clock = Clock()
        clock.callFromThread = lambda f, *a: f(*a)
        writer = self.writer()
        writer.add(self.received(1))
        written = writer.whenWritten(clock, 5)
        clock.advance(4.9)
        self.assertNoResult(written)
        clock.advance(0.1)
        self.assertIsNone(self.successResultOf(written))
        # When the rows are written at last, nothing fires twice.
        self.jobs.run()
        self.assertEqual(list(self.rows().values()), ["CT.1"])

    def test_additionsGatherForTheWindow(self):
        """
        Before a transaction of additions the writer waits its window, so that the objects arriving meanwhile join it; other operations do not wait.
        """
        writer = self.writer(window=0.01, sleep=lambda seconds: (self.sleeps.append(seconds), writer.add(self.received(3))))
        writer.add(self.received(1))
        writer.add(self.received(2))
        self.jobs.run()
        self.assertEqual(sorted(self.rows().values()), ["CT.1", "CT.2", "CT.3"])
        self.assertEqual(self.transactions, 1)
        self.assertEqual(self.sleeps, [0.01])
        writer.moved(os.path.join(self.directory, "CT.1"), os.path.join(self.directory, "CT.1.renamed"))
        self.jobs.run()
        self.assertEqual(self.sleeps, [0.01])

    def test_operationsInOrder(self):
        """
        A removal or a rename asked after an addition changes the row the addition wrote.
        """
        writer = self.writer()
        first, second = self.received(1), self.received(2)
        writer.add(first)
        writer.add(second)
        writer.remove(first)
        writer.moved(second.path, second.path + ".renamed")
        self.jobs.run()
        self.assertEqual(self.rows(), {str(second.sopInstanceUID): "CT.2.renamed"})

    def failThreeTimes(self) -> None:
        """
        Have the index's next three transactions of additions fail as a
        full disk does.
        """
        failures = [sqlite3.OperationalError("database or disk is full")] * 3
        addInstances = self.index.addInstances

        def failing(area, items):
            if failures:
                raise failures.pop()
            return addInstances(area, items)

        self.patch(self.index, "addInstances", failing)

    def test_databaseErrorRefusesUntilItWritesAgain(self):
        """
        While the index cannot record, what waits is kept and tried again after growing pauses, and new objects are refused with 0xA700, naming the error; once it records again, what waited is written and new objects are taken.
        """
        refusals = []

        def sleep(seconds):
            self.sleeps.append(seconds)
            refusals.append(self.assertRaises(StoreRefused, writer.add, self.received(9)))

        self.failThreeTimes()
        writer = self.writer(sleep=sleep)
        writer.add(self.received(1))
        self.jobs.run()
        self.assertEqual(self.sleeps, [0.1, 0.2, 0.4])
        self.assertEqual([refusal.status for refusal in refusals], [OUT_OF_RESOURCES] * 3)
        self.assertIn("database or disk is full", str(refusals[0]))
        self.assertEqual(list(self.rows().values()), ["CT.1"])
        writer.add(self.received(2))
        self.jobs.run()
        self.assertEqual(sorted(self.rows().values()), ["CT.1", "CT.2"])

    def test_failureWatched(self):
        """
        Watchers hear once that the index stopped recording, with the error, however many tries fail, and once that it records again; what a worker acknowledged meanwhile (take) is kept, not refused, and written with the rest.
        """
        told = []

        def sleep(seconds):
            self.sleeps.append(seconds)
            self.assertRaises(StoreRefused, writer.add, self.received(10 + len(self.sleeps)))
            writer.take(self.received(20 + len(self.sleeps)))

        self.failThreeTimes()
        writer = self.writer(sleep=sleep)
        writer.watchFailure(told.append)
        writer.add(self.received(1))
        self.jobs.run()
        self.assertEqual(told, ["database or disk is full", None])
        self.assertEqual(sorted(self.rows().values()), ["CT.1", "CT.21", "CT.22", "CT.23"])

    def test_prepared(self):
        """
        prepare reads on the calling thread what an object's rows will hold; the rows written from it are those written from its attributes.
        """
        writer = self.writer()
        prepared = self.received(1)
        writer.prepare(prepared)
        self.assertIsInstance(prepared.prepared, HeaderKeys)
        self.assertEqual(prepared.prepared.uids[Level.IMAGE], str(prepared.sopInstanceUID))
        writer.add(prepared)
        self.jobs.run()
        fromPrepared = self.tableContents()
        writer.remove(prepared)
        writer.add(self.received(1))
        self.jobs.run()
        self.assertEqual(self.tableContents(), fromPrepared)
        self.assertEqual(list(self.rows().values()), ["CT.1"])

    def test_fileSize(self):
        """
        The size the storage SCP knows from writing a file is recorded as it is; without one, the file system is asked.
        """
        writer = self.writer()
        known, unknown = self.received(1, size=100), self.received(2, size=300)
        known.fileSize = 200
        writer.add(known)
        writer.add(unknown)
        self.jobs.run()
        [study] = self.index.studiesByLastUpdate(areaKey(self.directory))
        self.assertEqual(study.size, 500)

    def test_preparingLeavesFaultsToTheWriter(self):
        """
        An object whose keys cannot be read is left unprepared on the reactor thread: the writing thread meets the fault, logs it with the file and leaves the object out.
        """
        writer = self.writer()
        faulty = self.received(1)

        def unreadable(header):
            raise OverflowError("cannot convert float infinity to integer")

        self.patch(HeaderKeys, "of", unreadable)
        writer.prepare(faulty)
        self.assertIsNone(faulty.prepared)

    def tableContents(self) -> dict:
        """
        Every row of the patient, study, series and instance tables, but
        for their ids.
        """
        with sqlite3.connect(os.path.join(self.directory, "index.sqlite")) as db:
            db.row_factory = sqlite3.Row
            contents = {}
            for table in ("patient", "study", "series", "instance"):
                rows = db.execute(f"SELECT * FROM {table}").fetchall()
                contents[table] = sorted(
                    tuple((key, row[key]) for key in row.keys() if key not in ("id", "patient", "study", "series")) for row in rows
                )
        return contents

    def test_takeChecksNothing(self):
        """
        take records an object larger than the study quota, which add refuses: the worker that acknowledged it checked already.
        """
        writer = self.writer(quota=Quota(maxStudies=10, maxBytesPerStudy=1000))
        self.assertRaises(StoreRefused, writer.add, self.received(1, size=1001))
        writer.take(self.received(2, size=1001))
        self.jobs.run()
        self.assertEqual(list(self.rows().values()), ["CT.2"])

    def test_faultyInstanceLeftOut(self):
        """
        An error that is not the database's, raised by one object of a batch, leaves that object out of the index, logged with its file, and the others of the batch and those after it in: it does not stall the writer.
        """
        addInstances = self.index.addInstances

        def faulty(area, items):
            if any(item[1].path == "CT.3" for item in items):
                raise OverflowError("cannot convert float infinity to integer")
            return addInstances(area, items)

        self.patch(self.index, "addInstances", faulty)
        writer = self.writer()
        for number in range(1, 6):
            writer.add(self.received(number))
        self.jobs.run()
        self.assertEqual(sorted(self.rows().values()), ["CT.1", "CT.2", "CT.4", "CT.5"])
        [logged] = self.flushLoggedErrors(OverflowError)
        writer.add(self.received(6))
        self.jobs.run()
        # The four of the batch written one by one, then the next alone.
        self.assertEqual(self.transactions, 4 + 1)
        self.assertIn("CT.6", self.rows().values())
        self.assertEqual(self.sleeps, [])
        self.assertTrue(writer.close(timeout=0))

    def test_closeGivesUpOnABrokenIndex(self):
        """
        Stopping while the index cannot record gives up after the grace period and says so; nothing is written (the next start indexes the files).
        """

        def broken(area, items):
            raise sqlite3.OperationalError("disk I/O error")

        self.patch(self.index, "addInstances", broken)
        writer = self.writer(schedule=lambda job: threading.Thread(target=job).start(), sleep=lambda seconds: time.sleep(0.001))
        writer.add(self.received(1))
        self.assertFalse(writer.close(timeout=0.05))
        self.assertEqual(self.rows(), {})

    def test_objectLargerThanTheStudyQuotaRefusedAtOnce(self):
        """
        An object larger than the study quota is refused before it is acknowledged.
        """
        writer = self.writer(quota=Quota(maxStudies=10, maxBytesPerStudy=50))
        error = self.assertRaises(StoreRefused, writer.add, self.received(1, size=51))
        self.assertEqual(error.status, OUT_OF_RESOURCES)
        self.assertEqual(self.jobs.held, [])

    def test_forwardingAreaWritesQueueEntriesWithTheRows(self):
        """
        Where anything is forwarded, an object is recorded later too, its queue entries in the transaction of its row, and the router is told once they are written.
        """
        router = _Router()
        writer = self.writer(router=router)
        self.assertTrue(writer.returnsAtOnce)
        for number in (1, 2):
            self.assertIsNone(writer.add(self.received(number)))
        self.assertEqual(ForwardQueue(self.index).entries(), [])
        self.assertEqual(router.told, [])
        self.jobs.run()
        self.assertEqual(self.transactions, 1)
        entries = ForwardQueue(self.index).entries()
        self.assertEqual([(entry.destination, entry.path) for entry in entries], [("PACS", "CT.1"), ("PACS", "CT.2")])
        self.assertEqual(router.told, [[Forwarding("PACS", "DICOMD")] * 2])

    def test_afterWritten(self):
        """
        What waits for the writer runs once the operations asked before it are written, and before those asked after it.
        """
        writer = self.writer()
        seen = []
        writer.add(self.received(1))
        writer.afterWritten(lambda: seen.append(sorted(self.rows().values())))
        writer.add(self.received(2))
        self.jobs.run()
        self.assertEqual(seen, [["CT.1"]])
        self.assertEqual(sorted(self.rows().values()), ["CT.1", "CT.2"])


class InlineTests(_IndexedAreaCase):
    """
    Tests for an L{IndexWriter} that writes on the reactor thread
    (L{IndexWriter.inline}) where it can, and leaves the rest to its
    thread.
    """

    def setUp(self):
        _IndexedAreaCase.setUp(self)
        self.clock = Clock()
        self.checkpoints = 0
        checkpoint = self.index.checkpoint

        def counting():
            self.checkpoints += 1
            checkpoint()

        self.patch(self.index, "checkpoint", counting)

    def writer(self, inline=None, quota=None) -> IndexWriter:
        area = IndexedArea(self.index, AREA, self.directory, quota)
        return IndexWriter(
            area,
            self.jobs,
            window=0.01,
            sleep=lambda seconds: None,
            reactor=self.clock,
            inline=inline or InlineWrites(),
            onReactorThread=lambda: True,
        )

    received = IndexWriterTests.received

    def rows(self):
        return self.index.storedPaths(areaKey(self.directory))

    def test_writtenOnTheReactorThread(self):
        """
        Additions asked for on the reactor thread gather for the window and
        are written there, in one transaction, without a thread.
        """
        writer = self.writer()
        for number in range(1, 4):
            writer.add(self.received(number))
        self.assertEqual(self.rows(), {})
        self.clock.advance(0.01)
        self.assertEqual(sorted(self.rows().values()), ["CT.1", "CT.2", "CT.3"])
        self.clock.advance(0)
        self.assertEqual(self.jobs.held, [])
        self.assertTrue(writer.close(timeout=0))

    def test_anotherWriterLeavesTheBatchToTheThread(self):
        """
        While another writer of the process holds the index, the reactor
        does not wait for it: the thread writes the batch.
        """
        writer = self.writer()
        writer.add(self.received(1))
        with self.index._writing:
            self.clock.advance(0.01)
            self.assertEqual(self.rows(), {})
        self.assertEqual(len(self.jobs.held), 1)
        self.jobs.run()
        self.assertEqual(list(self.rows().values()), ["CT.1"])
        self.assertTrue(writer.close(timeout=0))

    def test_failureLeavesTheBatchToTheThread(self):
        """
        A batch that fails on the reactor thread is the thread's to write,
        with its tries again.
        """
        writer = self.writer()
        addInstances = self.index.addInstances
        failures = [sqlite3.OperationalError("disk I/O error")]

        def failingOnce(area, items):
            if failures:
                raise failures.pop()
            return addInstances(area, items)

        self.patch(self.index, "addInstances", failingOnce)
        writer.add(self.received(1))
        self.clock.advance(0.01)
        self.assertEqual(self.rows(), {})
        self.jobs.run()
        self.assertEqual(list(self.rows().values()), ["CT.1"])

    def test_slowBatchesGoToTheThread(self):
        """
        Once batches were slow on the reactor thread (L{InlineWrites}), the
        next ones go to the thread; so do those of an area with a quota.
        """
        writer = self.writer(inline=InlineWrites(slow=0.0, strikes=1, clock=lambda: 0.0))
        writer.add(self.received(1))
        self.clock.advance(0.01)
        self.assertEqual(len(self.rows()), 1)
        self.clock.advance(0)
        writer.add(self.received(2))
        self.assertEqual(len(self.jobs.held), 1)
        self.jobs.run()
        self.assertEqual(len(self.rows()), 2)

        quoted = self.writer(quota=Quota(maxStudies=10, maxBytesPerStudy=1 << 30))
        quoted.add(self.received(3))
        self.assertEqual(len(self.jobs.held), 1)

    def test_writeAheadLogCopiedInAThread(self):
        """
        The inline transactions leave the write-ahead log to grow; every
        L{CHECKPOINT_EVERY} of them, a thread copies it into the database.
        """
        self.patch(writerModule, "CHECKPOINT_EVERY", 2)
        writer = self.writer()
        for number in range(1, 4):
            writer.add(self.received(number))
            self.clock.advance(0.01)
            self.clock.advance(0)
        self.assertEqual(self.checkpoints, 0)
        self.assertEqual(len(self.jobs.held), 1)
        self.jobs.run()
        self.assertEqual(self.checkpoints, 1)
        self.assertEqual(len(self.rows()), 3)

    def test_withoutWaiting(self):
        """
        Inside L{SQLiteArchiveIndex.withoutWaiting} a transaction fails at
        once with L{IndexBusy} while another writer of the process holds
        the index; outside, and after, transactions wait as before, with
        SQLite's own waiting and log copying as they were.
        """
        with self.index.transaction() as db:
            db.execute("SELECT 1")
        with self.index.withoutWaiting():
            with self.index._writing:
                self.assertRaises(IndexBusy, self.index.transaction().__enter__)
            with self.index.transaction() as db:
                self.assertEqual(db.execute("PRAGMA wal_autocheckpoint").fetchone()[0], 0)
                self.assertEqual(db.execute("PRAGMA busy_timeout").fetchone()[0], 0)
        with self.index.transaction() as db:
            self.assertEqual(db.execute("PRAGMA wal_autocheckpoint").fetchone()[0], WAL_AUTOCHECKPOINT)
            self.assertEqual(db.execute("PRAGMA busy_timeout").fetchone()[0], 30000)


class RelativePathTests(SynchronousTestCase):
    """
    An indexed area records paths relative to its directory, as
    C{os.path.relpath} gives them, whatever their shape.
    """

    def test_asRelpath(self):
        """
        Paths inside the area, beside it, with dot components, doubled or trailing separators, or the root itself: each as relpath gives it.
        """
        for directory in ("/srv/area", "/srv/area/", "/"):
            area = IndexedArea(None, "AREA", directory)
            for path in (
                "/srv/area/CT.1.2.3",
                "/srv/area/study/CT.1",
                "/srv/area/.hidden/CT.1",
                "/srv/area/./CT.1",
                "/srv/area/../other/CT.1",
                "/srv/areas/CT.1",
                "/srv/area//CT.1",
                "/srv/area/study/",
                "/srv/area",
                "/",
            ):
                self.assertEqual(area._relative(path), os.path.relpath(path, os.path.abspath(directory)), (directory, path))


class ReadYourWritesTests(SynchronousTestCase):
    """
    The queries of an area a writer writes into wait for the rows of what
    was acknowledged before them.
    """

    def test_queriesWaitForTheWriter(self):
        """
        find and instancesFor run once the area's writer says its rows are written; other areas' queries, and queries once the writer stopped writing there, do not wait.
        """
        from twisted.internet import defer

        from dicomd.archive.asyncindex import WRITTEN_WAIT, AsyncArchiveIndex

        class Index:
            def __init__(self):
                self.calls = []

            def find(self, area, *args):
                self.calls.append(("find", area))
                return iter(())

            def instancesFor(self, area, *args):
                self.calls.append(("instancesFor", area))
                return []

        class Writer:
            def __init__(self):
                self.waits = []

            def whenWritten(self, reactor, timeout):
                self.waits.append(defer.Deferred())
                self.timeout = timeout
                return self.waits[-1]

        class AtOnce:
            def callInThreadWithCallback(self, onResult, function, *args, **kwargs):
                onResult(True, function(*args, **kwargs))

        class Reactor:
            def callFromThread(self, f, *args):
                f(*args)

        index, writer = Index(), Writer()
        asyncIndex = AsyncArchiveIndex(index, reactor=Reactor(), threadpool=AtOnce())
        asyncIndex.writesInto("area", writer)
        found = asyncIndex.find("area", "S", None)
        listed = asyncIndex.instancesFor("area", "S", None)
        self.assertEqual(index.calls, [])
        self.assertEqual(writer.timeout, WRITTEN_WAIT)
        for wait in writer.waits:
            wait.callback(None)
        self.successResultOf(found)
        self.assertEqual(self.successResultOf(listed), [])
        self.assertEqual(index.calls, [("find", "area"), ("instancesFor", "area")])
        self.successResultOf(asyncIndex.find("other", "S", None))
        asyncIndex.stopsWriting("area", object())
        self.assertNoResult(asyncIndex.instancesFor("area", "S", None))
        asyncIndex.stopsWriting("area", writer)
        self.assertEqual(self.successResultOf(asyncIndex.instancesFor("area", "S", None)), [])
