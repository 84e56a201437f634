"""
Tests for L{dicomd.archive.queue}, the forwarding queue in the index
database, and L{dicomd.archive.routing}, the routes that fill it.
"""

import contextlib
import os

from pydicom.dataset import Dataset
from twisted.trial import unittest

from dicomd.archive.area import IndexedArea
from dicomd.archive.dcmqrcfg import Quota
from dicomd.archive.index import StoredFile
from dicomd.archive.queue import FAILED, QUEUED, Forwarding, ForwardQueue, RetryPolicy
from dicomd.archive.routing import AT_END_OF_STUDY, Route, RouteMatch, attributeCondition, forwardingsFor
from dicomd.storage.part10 import walkHead
from dicomd.storage.scp import ReceivedInstance
from tests.dicomfiles import encodedDataSet
from tests.test_archive_index import PostgreSQLEngine, SQLiteEngine

AREA = "/data/area"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT = "1.2.840.10008.1.2.1"


def header(study, number, modality="CT", sopClass=CT, **more):
    ds = Dataset()
    ds.PatientID = "P1"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = study + ".1"
    ds.SOPInstanceUID = "%s.1.%d" % (study, number)
    ds.SOPClassUID = sopClass
    ds.Modality = modality
    for keyword, value in more.items():
        setattr(ds, keyword, value)
    return ds


def received(dataset, callingAETitle="CT01", calledAETitle="DICOMD"):
    return ReceivedInstance(
        str(dataset.SOPClassUID), str(dataset.SOPInstanceUID), EXPLICIT, callingAETitle, calledAETitle, "127.0.0.1", 0.0,
        attributes=dataset,
    )


def scannedInstance(dataset, callingAETitle="CT01"):
    """
    An instance as the storage SCP leaves it: its data set's bytes
    scanned (L{walkHead}), its pydicom data set made only when read.
    """
    scan = walkHead(encodedDataSet(dataset), EXPLICIT, complete=True)
    return ReceivedInstance(str(dataset.SOPClassUID), str(dataset.SOPInstanceUID), EXPLICIT, callingAETitle, "DICOMD", "127.0.0.1", 0.0, scan=scan)


class QueueTests(SQLiteEngine, unittest.TestCase):
    """
    Tests for L{ForwardQueue} over a real database.
    """

    def setUp(self):
        self.index = self.makeIndex()
        self.addCleanup(self.index.close)
        # Claims without a lease, unless a test gives one: what a claim
        # takes is claimable again at once, as if its outcome were recorded.
        self.queue = ForwardQueue(self.index, node="one", lease=0)
        self.policy = RetryPolicy(first=10, maximum=60, giveUpAfter=1000)

    def add(self, study, number, *forwardings, received=100.0):
        ds = header(study, number)
        self.index.addInstance(AREA, ds, StoredFile("%s-%d.dcm" % (study, number), 10, EXPLICIT, received), forwardings)
        return str(ds.SOPInstanceUID)

    def test_queuedWithTheInstance(self):
        """
        C{addInstance} queues the instance for each forwarding in its own
        transaction; an instance added without forwardings is not queued.
        """
        uid = self.add("1.2.3", 1, Forwarding("PACS", "DICOMD"), Forwarding("AI", "DICOMD"))
        self.add("1.2.3", 2)
        claim = self.queue.claim("PACS", 100.0, 10)
        self.assertEqual([entry.sopInstanceUID for entry in claim.entries], [uid])
        entry = claim.entries[0]
        self.assertEqual((entry.area, entry.path, entry.transferSyntaxUID, entry.callingAETitle), (AREA, "1.2.3-1.dcm", EXPLICIT, "DICOMD"))
        self.assertEqual((claim.depth, claim.oldest), (1, 100.0))
        self.assertEqual(len(self.queue.claim("AI", 100.0, 10).entries), 1)

    def test_orderPerStudy(self):
        """
        Entries come in the order they were queued, and none goes before
        an earlier entry of its study that waits for a retry or is busy.
        """
        pacs = Forwarding("PACS", "DICOMD")
        for number in range(3):
            self.add("1.1", number, pacs)
            self.add("2.2", number, pacs)
        first = self.queue.claim("PACS", 100.0, 10).entries
        self.assertEqual([e.sopInstanceUID for e in first], ["1.1.1.0", "2.2.1.0", "1.1.1.1", "2.2.1.1", "1.1.1.2", "2.2.1.2"])
        self.queue.postponed([(first[0].id, "0xA700")], 100.0, self.policy)
        self.assertEqual({e.studyInstanceUID for e in self.queue.claim("PACS", 100.0, 10).entries}, {"2.2"})
        self.assertEqual(self.queue.claim("PACS", 100.0, 10, busyStudies=["2.2"]).entries, [])
        claim = self.queue.claim("PACS", 100.0, 10, busyStudies=["2.2"])
        self.assertEqual(claim.nextTry, 110.0)
        self.assertEqual(len(self.queue.claim("PACS", 110.0, 10).entries), 6)

    def test_oneCallingTitlePerClaim(self):
        """
        A claim takes the entries of the first's calling AE title, and of
        a study none after its first entry of another title: an
        association calls with one.  What it leaves is not leased, so the
        next claim takes it (until it is recorded, nothing behind a claimed
        entry of its study is).
        """
        queue = ForwardQueue(self.index, node="one")
        self.add("1.1", 0, Forwarding("PACS", "DICOMD"))
        self.add("2.2", 0, Forwarding("PACS", "SECOND"))
        self.add("1.1", 1, Forwarding("PACS", "SECOND"))
        self.add("1.1", 2, Forwarding("PACS", "DICOMD"))
        self.add("3.3", 0, Forwarding("PACS", "DICOMD"))
        first = queue.claim("PACS", 100.0, 10).entries
        self.assertEqual([e.sopInstanceUID for e in first], ["1.1.1.0", "3.3.1.0"])
        second = queue.claim("PACS", 100.0, 10).entries
        self.assertEqual([(e.sopInstanceUID, e.callingAETitle) for e in second], [("2.2.1.0", "SECOND")])
        queue.delivered([e.id for e in first + second])
        self.assertEqual([e.sopInstanceUID for e in queue.claim("PACS", 100.0, 10).entries], ["1.1.1.1"])

    def test_fullClaimCountsNothing(self):
        """
        A full claim (as many entries as asked for) leaves the depth of the
        queue and the next wake-up uncounted: its taker claims again once
        they are sent, and counting would read every queued entry each
        time.  A claim that is not full counts both.
        """
        pacs = Forwarding("PACS", "DICOMD")
        for number in range(3):
            self.add("1.1", number, pacs)
        queue = ForwardQueue(self.index, node="one")
        full = queue.claim("PACS", 100.0, 2)
        self.assertEqual((len(full.entries), full.depth, full.oldest, full.nextTry), (2, None, None, None))
        rest = queue.claim("PACS", 100.0, 2)
        self.assertEqual((len(rest.entries), rest.depth, rest.oldest, rest.nextTry), (0, 3, 100.0, 100.0 + queue.lease))

    def test_backoff(self):
        """
        Each failed try of an entry doubles its wait, up to the maximum;
        once it has waited longer than the give-up time it fails for good.
        """
        self.assertEqual([self.policy.delay(t) for t in range(1, 6)], [10, 20, 40, 60, 60])
        self.add("1.1", 1, Forwarding("PACS", "DICOMD"))
        (entry,) = self.queue.claim("PACS", 100.0, 10).entries
        self.assertEqual(self.queue.postponed([(entry.id, "busy")], 100.0, self.policy), [])
        self.assertEqual(self.queue.postponed([(entry.id, "busy")], 110.0, self.policy), [])
        (waiting,) = self.queue.entries()
        self.assertEqual((waiting.tries, waiting.nextTry, waiting.lastError), (2, 130.0, "busy"))
        self.assertEqual(self.queue.postponed([(entry.id, "busy")], 1100.0, self.policy), [entry.id])
        (failed,) = self.queue.entries()
        self.assertEqual(failed.state, FAILED)
        self.assertIn("gave up after 3 tries", failed.lastError)

    def test_unreachableDestination(self):
        """
        L{ForwardQueue.postponeDestination} postpones every due entry of the
        destination by the destination's delay, and fails those too old.
        """
        self.add("1.1", 1, Forwarding("PACS", "DICOMD"), received=0.0)
        self.add("1.1", 2, Forwarding("PACS", "DICOMD"), Forwarding("AI", "DICOMD"), received=500.0)
        given = self.queue.postponeDestination("PACS", "connection refused", 1000.0, self.policy, 40.0)
        self.assertEqual(len(given), 1)
        states = {(e.destination, e.sopInstanceUID): (e.state, e.tries, e.nextTry) for e in self.queue.entries()}
        self.assertEqual(states[("PACS", "1.1.1.1")][0], FAILED)
        self.assertEqual(states[("PACS", "1.1.1.2")], (QUEUED, 1, 1040.0))
        self.assertEqual(states[("AI", "1.1.1.2")], (QUEUED, 0, 500.0))

    def test_failedAndRetried(self):
        """
        A failed entry is kept with its reason and never claimed, until
        retried; a forgotten entry is gone.
        """
        self.add("1.1", 1, Forwarding("PACS", "DICOMD"))
        self.add("1.1", 2, Forwarding("PACS", "DICOMD"))
        first, second = self.queue.claim("PACS", 100.0, 10).entries
        self.queue.failed([(first.id, "0xA900 Failure")])
        self.assertEqual([e.id for e in self.queue.claim("PACS", 100.0, 10).entries], [second.id])
        self.assertEqual(self.queue.entries()[0].lastError, "0xA900 Failure")
        self.assertEqual(self.queue.retry(200.0, first.id), 1)
        self.assertEqual(len(self.queue.claim("PACS", 200.0, 10).entries), 2)
        self.assertTrue(self.queue.forget(first.id))
        self.assertFalse(self.queue.forget(first.id))
        self.assertEqual([e.id for e in self.queue.entries()], [second.id])

    def test_retriedDestinationsTakenOnce(self):
        """
        C{retry} leaves the destinations of the entries it queued again for
        C{takeRetried}, which hands each over once.
        """
        self.add("1.1", 1, Forwarding("PACS", "DICOMD"), Forwarding("AI", "DICOMD"))
        self.assertEqual(self.queue.takeRetried(), [])
        (pacs,) = self.queue.claim("PACS", 100.0, 10).entries
        self.queue.failed([(pacs.id, "0xA900 Failure")])
        self.queue.retry(200.0, pacs.id)
        self.assertEqual(self.queue.takeRetried(), ["PACS"])
        self.assertEqual(self.queue.takeRetried(), [])
        self.queue.retry(300.0)
        self.assertEqual(sorted(self.queue.takeRetried()), ["AI", "PACS"])

    def test_depths(self):
        """
        C{depths} counts each destination's queued and held entries, with
        the time the oldest was queued; failed ones are not counted.
        """
        self.add("1.1", 1, Forwarding("PACS", "DICOMD"), Forwarding("AI", "DICOMD", held=True), received=100.0)
        self.add("1.1", 2, Forwarding("PACS", "DICOMD"), received=150.0)
        (first, _) = self.queue.claim("PACS", 200.0, 10).entries
        self.queue.failed([(first.id, "0xA900 Failure")])
        self.assertEqual(self.queue.depths(), {"PACS": (1, 150.0), "AI": (1, 100.0)})

    def test_deliveredAndRouterMode(self):
        """
        Delivered entries leave the queue; the instances no entry holds any
        more are named, and L{removeUnqueued} forgets only those.
        """
        one = self.add("1.1", 1, Forwarding("PACS", "DICOMD"), Forwarding("AI", "DICOMD"))
        two = self.add("1.1", 2, Forwarding("PACS", "DICOMD"))
        pacs = self.queue.claim("PACS", 100.0, 10).entries
        self.assertEqual(self.queue.delivered([e.id for e in pacs]), [(AREA, two)])
        self.assertEqual(self.index.removeUnqueued(AREA, [one, two]), ["1.1-2.dcm"])
        self.assertEqual(sorted(self.index.storedPaths(AREA)), [one])

    def test_heldUntilTheStudyEnds(self):
        """
        A held entry is not claimed until its study is released; releasing
        those of studies no node follows (at start-up, here all of them)
        queues every held entry.
        """
        self.add("1.1", 1, Forwarding("PACS", "DICOMD", held=True))
        self.add("2.2", 1, Forwarding("PACS", "DICOMD", held=True))
        claim = self.queue.claim("PACS", 100.0, 10)
        self.assertEqual((claim.entries, claim.depth), ([], 2))
        self.assertEqual(self.queue.release(AREA, "1.1", 150.0), ["PACS"])
        self.assertEqual([e.studyInstanceUID for e in self.queue.claim("PACS", 150.0, 10).entries], ["1.1"])
        self.assertEqual(self.queue.release("/elsewhere", "2.2", 150.0), [])
        self.assertEqual(self.queue.releaseUnfollowed(160.0, {}), 1)
        self.assertEqual(len(self.queue.claim("PACS", 160.0, 10).entries), 2)
        self.assertEqual({e.state for e in self.queue.entries()}, {QUEUED})

    def nodes(self, lease=30.0):
        """
        The queue as two nodes sharing the index see it.
        """
        return ForwardQueue(self.index, node="one", lease=lease), ForwardQueue(self.index, node="two", lease=lease)

    def test_claimHoldsEntriesForItsLease(self):
        """
        What one node claimed, another does not take, nor the entries of
        the same study behind it, until the lease runs out; then it takes
        them over, and the first node's late outcome is ignored.
        """
        pacs = Forwarding("PACS", "DICOMD")
        for number in range(3):
            self.add("1.1", number, pacs)
        self.add("2.2", 0, pacs)
        one, two = self.nodes()
        self.assertEqual([e.sopInstanceUID for e in one.claim("PACS", 100.0, 2).entries], ["1.1.1.0", "1.1.1.1"])
        self.assertEqual([e.sopInstanceUID for e in two.claim("PACS", 110.0, 10).entries], ["2.2.1.0"])
        claim = two.claim("PACS", 129.0, 10)
        self.assertEqual((claim.entries, claim.nextTry), ([], 130.0))
        taken = two.claim("PACS", 130.0, 10).entries
        self.assertEqual([e.sopInstanceUID for e in taken], ["1.1.1.0", "1.1.1.1", "1.1.1.2"])
        one.postponed([(taken[0].id, "0xA700")], 131.0, self.policy)
        one.failed([(taken[1].id, "0xA900")])
        self.assertEqual({(e.state, e.tries) for e in self.queue.entries()}, {(QUEUED, 0)})
        self.assertEqual(two.claim("PACS", 139.0, 10).entries, [])

    def test_renewedWhileSending(self):
        """
        A node renews the leases of the entries it claimed while it sends
        them: another node does not take them until the renewed lease
        runs out.  Entries no node claimed are not renewed, even by a node
        without a name.
        """
        self.add("1.1", 1, Forwarding("PACS", "DICOMD"))
        one, two = self.nodes()
        self.assertEqual(ForwardQueue(self.index, lease=30.0).renew(100.0), 0)
        self.assertEqual(len(one.claim("PACS", 100.0, 10).entries), 1)
        self.assertEqual(one.renew(125.0), 1)
        self.assertEqual(two.claim("PACS", 150.0, 10).entries, [])
        self.assertEqual(len(two.claim("PACS", 155.0, 10).entries), 1)
        self.assertEqual(one.renew(156.0), 0)

    def test_outcomeEndsTheClaim(self):
        """
        An entry whose outcome is recorded is no longer claimed: a
        postponed entry is due for any node at its next try.
        """
        self.add("1.1", 1, Forwarding("PACS", "DICOMD"))
        one, two = self.nodes()
        (entry,) = one.claim("PACS", 100.0, 10).entries
        one.postponed([(entry.id, "0xA700")], 100.0, self.policy)
        self.assertEqual(len(two.claim("PACS", 110.0, 10).entries), 1)

    def test_releasedClaims(self):
        """
        A node that stops (or starts after it was killed) releases its
        claims: another node takes their entries at once.
        """
        self.add("1.1", 1, Forwarding("PACS", "DICOMD"))
        one, two = self.nodes()
        self.assertEqual(len(one.claim("PACS", 100.0, 10).entries), 1)
        self.assertEqual(two.releaseClaims(), 0)
        self.assertEqual(one.releaseClaims(), 1)
        self.assertEqual(len(two.claim("PACS", 100.0, 10).entries), 1)

    def test_concurrentClaimsTakeEachEntryOnce(self):
        """
        Nodes claiming at once, each in its own threads, never take the
        same entry.
        """
        from concurrent.futures import ThreadPoolExecutor

        pacs = Forwarding("PACS", "DICOMD")
        for study in range(200):
            self.add("%d.%d" % (study, study), 1, pacs)
        queues = self.nodes() * 2

        def drain(queue):
            taken = []
            while True:
                entries = queue.claim("PACS", 100.0, 7).entries
                if not entries:
                    return taken
                taken += [entry.id for entry in entries]

        with ThreadPoolExecutor(len(queues)) as pool:
            claims = list(pool.map(drain, queues))
        everything = [entry for taken in claims for entry in taken]
        self.assertEqual(len(everything), 200)
        self.assertEqual(len(set(everything)), 200)

    def test_quotaKeepsQueued(self):
        """
        The quota deletes no study the queue still holds an instance of.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        area = IndexedArea(self.index, "DICOMD", directory, Quota(1, 1 << 30))

        class Router:
            def __init__(self):
                self.told = []

            def forwardingsFor(self, received):
                return (Forwarding("PACS", "DICOMD"),) if received.attributes.StudyInstanceUID == "1.1" else ()

            def queued(self, forwardings):
                self.told.append(forwardings)

        area.router = Router()
        for study in ("1.1", "2.2", "3.3"):
            ds = header(study, 1)
            instance = received(ds)
            instance.path = os.path.join(directory, study + ".dcm")
            with open(instance.path, "wb") as f:
                f.write(b"x" * 10)
            area.addMany([instance])
        studies = [s.studyInstanceUID for s in self.index.studiesByLastUpdate(area.key)]
        self.assertEqual(studies, ["1.1", "3.3"])
        self.assertEqual(len(area.router.told), 1)

    def recoveryArea(self, numbers):
        """
        An area whose files C{numbers} are stored, the first of them
        indexed, routed to PACS from GATEWAY.

        @return: the L{IndexedArea}, and the forwardings its router was
            told were queued.
        """
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        for number in numbers:
            ds = header("1.1", number)
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.SourceApplicationEntityTitle = "CT01"
            ds.save_as(os.path.join(directory, "%d.dcm" % (number,)), enforce_file_format=True)
        self.index.addInstance(directory, header("1.1", numbers[0]), StoredFile("%d.dcm" % (numbers[0],), 10, EXPLICIT, 0.0))
        told = []

        class Router:
            def forwardingsFor(self, received):
                routes = {"GATEWAY": (Route("PACS"),)}
                return forwardingsFor(routes.get(received.calledAETitle, ()), received, received.calledAETitle)

            def queued(self, forwardings):
                told.append(list(forwardings))

        return IndexedArea(self.index, "GATEWAY, OTHER", directory, router=Router(), recoveryTitle="GATEWAY"), told

    def test_recoveryQueues(self):
        """
        After a crash, a file the index lacks is indexed and queued as the
        routes of the area's recovery AE title say, in one transaction with
        its row; a file indexed already is not queued again.
        """
        area, told = self.recoveryArea([1, 2])
        self.index.beginRun()
        area.recover()
        (entry,) = self.queue.entries()
        self.assertEqual((entry.destination, entry.callingAETitle, entry.path), ("PACS", "GATEWAY", "2.dcm"))
        self.assertEqual(told, [[Forwarding("PACS", "GATEWAY")]])

    def test_caughtUpBefore(self):
        """
        Catching up with the files a dead node left indexes and queues the
        files the index lacks that were last modified before the time
        given, and leaves the newer ones to the live node indexing them.
        """
        area, told = self.recoveryArea([1, 2, 3])
        os.utime(os.path.join(area.directory, "2.dcm"), (1000.0, 1000.0))
        os.utime(os.path.join(area.directory, "3.dcm"), (3000.0, 3000.0))
        report, queued = area.catchUp(before=2000.0)
        self.assertEqual((report.indexed, queued), (1, 1))
        self.assertEqual([entry.path for entry in self.queue.entries()], ["2.dcm"])
        self.assertEqual(sorted(self.index.storedPaths(area.key).values()), ["1.dcm", "2.dcm"])


class QueuePostgreSQLTests(PostgreSQLEngine, QueueTests):
    """
    The queue in an index on PostgreSQL.
    """

    def test_heldWhileAnotherNodeMayEndTheStudy(self):
        """
        Released at start-up are the held entries of the studies whose end
        no live node will bring: quiet for the end-of-study timeout, last
        received by a node that is dead, or by this one (whose tracker is
        gone) unless it follows them again, or in an area where no study
        ends.  A study last received less than the timeout ago by another
        node alive, or by one in an area without a timeout, keeps them.
        """
        from dicomd.archive.postgresql import PostgreSQLArchiveIndex

        nodes = {"test": self.index}
        for name in ("two", "dead"):
            nodes[name] = PostgreSQLArchiveIndex(self.index.url, node=name)
            self.addCleanup(nodes[name].close)
        for index in nodes.values():
            index.beginRun()
            index.beat(100.0)
        nodes["dead"].beat(60.0)
        held = Forwarding("PACS", "DICOMD", held=True)
        for study, node, area, received in (
            ("1.1", "two", AREA, 95.0),
            ("2.2", "two", AREA, 89.0),
            ("3.3", "dead", AREA, 95.0),
            ("4.4", "test", AREA, 95.0),
            ("5.5", "test", AREA, 95.0),
            ("6.6", "two", "/data/untimed", 10.0),
            ("7.7", "two", "/data/unknown", 95.0),
        ):
            nodes[node].addInstance(area, header(study, 1), StoredFile(study + ".dcm", 10, EXPLICIT, received), [held])
        queue = ForwardQueue(self.index, node="test", lease=30.0)
        released = queue.releaseUnfollowed(100.0, {AREA: 10.0, "/data/untimed": None}, following=[(AREA, "5.5")])
        self.assertEqual(released, 4)
        self.assertEqual(
            sorted(entry.studyInstanceUID for entry in queue.entries() if entry.state == QUEUED), ["2.2", "3.3", "4.4", "7.7"]
        )


class ClaimColumnsTests(unittest.TestCase):
    """
    A queue made before claims gains their columns when its index opens
    (PostgreSQL's schema migration is L{tests.test_archive_index}'s).
    """

    def test_sqlite(self):
        """
        SQLite's queue, outside the index's versioned schema, gains the
        columns in place, and the indexes over them.
        """
        import sqlite3

        from dicomd.archive.index import SQLiteArchiveIndex

        path = self.mktemp()
        SQLiteArchiveIndex(path).open()
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("DROP INDEX forwardStudyLease")
            db.execute("DROP INDEX forwardStudyNextTry")
            db.execute("ALTER TABLE forward DROP COLUMN claimedBy")
            db.execute("ALTER TABLE forward DROP COLUMN leaseUntil")
            db.commit()
        index = SQLiteArchiveIndex(path)
        self.addCleanup(index.close)
        with index.connection() as db:
            db.execute("SELECT claimedBy, leaseUntil FROM forward")
            indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'forward'")}
        self.assertLessEqual({"forwardStudyLease", "forwardStudyNextTry"}, indexes)


class RoutingTests(unittest.TestCase):
    """
    Tests for L{dicomd.archive.routing}.
    """

    def test_matchEverything(self):
        self.assertTrue(RouteMatch().takes(received(header("1.1", 1))))

    def test_modalityAndCallingAETitle(self):
        match = RouteMatch(modalities=("CT", "MR"), callingAETitles=("CT01",))
        self.assertTrue(match.takes(received(header("1.1", 1, modality="MR"))))
        self.assertFalse(match.takes(received(header("1.1", 1, modality="US"))))
        self.assertFalse(match.takes(received(header("1.1", 1), callingAETitle="OTHER")))

    def test_sopClasses(self):
        match = RouteMatch(sopClasses=(MR,))
        self.assertFalse(match.takes(received(header("1.1", 1))))
        self.assertTrue(match.takes(received(header("1.1", 1, sopClass=MR))))

    def test_dicomMatchValues(self):
        """
        Other attributes are matched with C-FIND's matching: wildcards,
        ranges of dates, single values.
        """
        station = RouteMatch(conditions=(attributeCondition("StationName", "CT*"),))
        self.assertTrue(station.takes(received(header("1.1", 1, StationName="CT_ROOM_1"))))
        self.assertFalse(station.takes(received(header("1.1", 1, StationName="MR1"))))
        self.assertFalse(station.takes(received(header("1.1", 1))))
        dates = RouteMatch(conditions=(attributeCondition("StudyDate", "20240101-20241231"),))
        self.assertTrue(dates.takes(received(header("1.1", 1, StudyDate="20240615"))))
        self.assertFalse(dates.takes(received(header("1.1", 1, StudyDate="20230615"))))
        self.assertIsNone(attributeCondition("StationName", "*"))

    def test_readInTheScan(self):
        """
        An instance as the storage SCP leaves it (its data set's bytes
        scanned, no pydicom data set made) is matched as the same instance
        with its data set, without making that data set.
        """
        matches = [
            RouteMatch(),
            RouteMatch(modalities=("MR",)),
            RouteMatch(modalities=("CT",)),
            RouteMatch(conditions=(attributeCondition("StationName", "CT*"),)),
            RouteMatch(conditions=(attributeCondition("StudyDate", "20240101-20241231"),)),
            RouteMatch(conditions=(attributeCondition("PatientName", "Doe^*"),)),
        ]
        for dataset in (
            header("1.1", 1, StationName="CT_ROOM_1", StudyDate="20240615", PatientName="Doe^J"),
            header("1.1", 2, modality="MR", StationName="MR1", StudyDate="20230615"),
        ):
            for match in matches:
                scanned = scannedInstance(dataset)
                self.assertEqual(match.takes(scanned), match.takes(received(dataset)), (match, dataset.SOPInstanceUID))
                self.assertIsNotNone(scanned.scan, "the data set was made")

    def test_nonASCIIFromTheDataSet(self):
        """
        A value the scan cannot read as ASCII is read from the data set,
        in the instance's character set.
        """
        dataset = header("1.1", 1, SpecificCharacterSet="ISO_IR 100", InstitutionName="H\u00f4pital Nord")
        match = RouteMatch(conditions=(attributeCondition("InstitutionName", "H\u00f4pital*"),))
        self.assertTrue(match.takes(scannedInstance(dataset)))
        self.assertFalse(RouteMatch(conditions=(attributeCondition("InstitutionName", "Hopital*"),)).takes(scannedInstance(dataset)))

    def test_forwardingsFor(self):
        """
        Each destination is chosen once, by the first route that takes the
        instance; an end-of-study route holds it.
        """
        routes = [
            Route("PACS", match=RouteMatch(modalities=("MR",))),
            Route("PACS", when=AT_END_OF_STUDY),
            Route("AI"),
        ]
        self.assertEqual(
            forwardingsFor(routes, received(header("1.1", 1)), "DICOMD"),
            (Forwarding("PACS", "DICOMD", held=True), Forwarding("AI", "DICOMD")),
        )
