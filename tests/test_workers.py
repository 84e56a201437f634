"""
Worker processes (issue 14, L{dicomd.workers}): C{twistd dicomd --workers 2}
and C{dicomd storescp --fork} with real peers, DCMTK's C{storescu},
C{findscu} and C{movescu}.

  - a worker killed (SIGKILL) in the middle of a transfer: every instance
    acknowledged is on disk and indexed without a restart, and another
    worker takes its place;
  - SIGHUP while senders store: nothing is refused or lost, and the
    status page's counters sum both workers';
  - end of study with a study's associations spread over both workers:
    its command runs once;
  - C-FIND and C-MOVE answered by workers from the coordinator's index.
"""

import collections
import json
import os
import pickle
import re
import signal
import socket

import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from twisted.internet import defer, protocol, reactor
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted.test.proto_helpers import StringTransport

from dicomd.archive.dcmqrcfg import Quota
from dicomd.dimse.status import OUT_OF_RESOURCES
from dicomd.storage.part10 import HeadScan, scanHead, walkHead
from dicomd.storage.receiver import SORT_STUDY_UID, StorageOptions
from dicomd.storage.scp import ReceivedInstance, StoreRefused
from dicomd.workers import (
    HEAD_LIMIT,
    AdoptedPort,
    AssociationClosed,
    CoordinatorLink,
    IndexState,
    Pickled,
    Reported,
    ReportBacklog,
    WorkerConnection,
    WorkerPool,
    answeredByCoordinator,
    attributeSummary,
    instanceFields,
    receivedInstance,
)
from tests.storagearea import finalFiles, indexedInstances, waitForIndexed
from tests.support import (
    LOCALHOST,
    dcmtk,
    dcmtkEnvironment,
    deferLater,
    freePort,
    makeDirectory,
    runCommand,
    spawn,
    startDaemon,
    startDCMTKServer,
    waitUntil,
)
from tests.test_archive_index import EXPLICIT, header
from tests.test_daemon import httpGet, parsePrometheus
from tests.test_faults import SUCCESS_LINE, DaemonTestCase, acknowledgedFiles, daemonOptions, storescuArgv, writeStudy
from tests.test_storescp import startStorescp


@defer.inlineCallbacks
def startWithWorkers(testCase, data: str, *options: str):
    """
    Start C{twistd dicomd --workers 2}, and wait until both workers serve.

    @return: a L{Deferred} firing with its L{tests.support.ChildProcess}.
    """
    daemon = yield startDaemon(testCase, *daemonOptions(data, "--workers", "2", *options))
    yield waitUntil(lambda: len(servingWorkers(daemon)) == 2, timeout=30, message="two workers serving")
    return daemon


@defer.inlineCallbacks
def waitUntilDeferred(condition, attempts: int = 200):
    """
    Ask C{condition} (returning a L{Deferred} of a boolean) until it says
    yes: the coordinator counts a worker's association a moment after
    the worker logs its end.
    """
    for _ in range(attempts):
        done = yield condition()
        if done:
            return
        from twisted.internet import reactor

        yield deferLater(reactor, 0.05)
    raise AssertionError("the condition never held")


def servingWorkers(daemon) -> set:
    return set(re.findall(r"worker (\d+): AcceptorFactory starting on", daemon.output))


def workerPids(daemon) -> dict:
    """
    Worker number -> the pid of its latest process, from the daemon's log.
    """
    return {int(number): int(pid) for number, pid in re.findall(r"Worker (\d+) started \(pid (\d+)\)", daemon.output)}


def workersOfAssociations(daemon) -> list:
    return [int(number) for number in re.findall(r"worker (\d+): Association \S+ -> \S+ from \S+ accepted", daemon.output)]


class WorkerTests(DaemonTestCase):
    """
    C{twistd dicomd --workers 2}.
    """

    @defer.inlineCallbacks
    def test_killedWorkerLosesNothingAcknowledged(self):
        """A worker killed with SIGKILL while storescu streams to it: every acknowledged instance is complete and indexed, without a restart; another worker takes its place and the daemon serves on."""
        sources = writeStudy(makeDirectory(self), 300)
        uids = dict(sources)
        data = os.path.join(makeDirectory(self), "data")
        daemon = yield startWithWorkers(self, data)
        sender = spawn(self, storescuArgv(daemon.port, [path for path, _ in sources]), env=dcmtkEnvironment(), name="storescu")
        yield waitUntil(lambda: sender.output.count(SUCCESS_LINE) >= 100 or not sender.running, timeout=60, interval=0.002)
        [serving] = workersOfAssociations(daemon)
        os.kill(workerPids(daemon)[serving], signal.SIGKILL)
        yield sender.whenEnded()

        acknowledged = acknowledgedFiles(sender.output)
        self.assertGreaterEqual(len(acknowledged), 100, sender.describe())
        self.assertLess(len(acknowledged), len(sources), "storescu finished before the kill:\n" + sender.describe())
        yield daemon.waitForOutput(r"Worker %d ended" % (serving,), timeout=30)
        yield waitUntil(lambda: len(re.findall(r"Worker %d started" % (serving,), daemon.output)) == 2, timeout=30, message="a new worker")
        indexed = yield waitForIndexed(data, [uids[source] for source in acknowledged])
        for source in acknowledged:
            self.assertComplete(indexed[uids[source]], uids[source], source)
        self.assertLessEqual(len(finalFiles(data)) - len(acknowledged), 1, "more than one stored object was not acknowledged")
        yield self.assertServes(daemon, data, len(indexedInstances(data)) + 1)

    @defer.inlineCallbacks
    def test_reloadUnderLoad(self):
        """SIGHUP while four storescu store: each worker reloads, and every object is acknowledged and indexed; the JSON status and /metrics count the associations and C-STOREs of both workers."""
        data = os.path.join(makeDirectory(self), "data")
        config = os.path.join(makeDirectory(self), "dicomd.toml")
        with open(config, "w") as f:
            f.write("")
        statusPort = freePort()
        daemon = yield startWithWorkers(self, data, "--config", config, "--status", "tcp:%d:interface=127.0.0.1" % (statusPort,))
        studies = [writeStudy(makeDirectory(self), 60) for _ in range(4)]
        senders = [
            spawn(self, storescuArgv(daemon.port, [path for path, _ in study]), env=dcmtkEnvironment(), name="storescu") for study in studies
        ]
        yield waitUntil(lambda: sum(s.output.count(SUCCESS_LINE) for s in senders) >= 20, timeout=60, interval=0.002)
        daemon.signalProcess("HUP")
        yield defer.gatherResults([sender.whenEnded() for sender in senders])
        for sender in senders:
            self.assertEqual(sender.output.count(SUCCESS_LINE), 60, sender.describe() + daemon.describe())
        yield waitUntil(lambda: len(re.findall(r"worker \d+: SIGHUP: reloaded", daemon.output)) == 2, timeout=30, message="workers reloaded")
        self.assertIn("SIGHUP: reloaded", daemon.output)
        indexed = yield waitForIndexed(data, [uid for study in studies for _, uid in study])
        self.assertEqual(len(indexed), 240)

        base = "http://127.0.0.1:%d" % (statusPort,)
        yield waitUntil(lambda: daemon.output.count(" released by the peer ") == 4, timeout=20, message="four releases")

        @defer.inlineCallbacks
        def counted():
            _, _, body = yield httpGet(base + "/")
            return json.loads(body)["associations"].get("DICOMD", {}).get("released") == 4

        yield waitUntilDeferred(counted)
        _, _, body = yield httpGet(base + "/")
        page = json.loads(body)
        self.assertEqual(page["operations"]["DICOMD"], {"C-STORE": {"success": 240}})
        self.assertEqual(page["openAssociations"], {"DICOMD": 0})
        _, _, body = yield httpGet(base + "/metrics")
        metrics = parsePrometheus(body.decode("utf-8"))
        self.assertEqual(metrics[("dicomd_operations_total", (("ae", "DICOMD"), ("operation", "C-STORE"), ("outcome", "success")))], 240)
        self.assertEqual(metrics[("dicomd_associations_total", (("ae", "DICOMD"), ("event", "accepted")))], 4)

    @defer.inlineCallbacks
    def test_endOfStudyAcrossWorkers(self):
        """A study sent on associations that both workers serve ends once: its command runs once, at the stop."""
        data = os.path.join(makeDirectory(self), "data")
        log = os.path.join(makeDirectory(self), "eostudy.log")
        options = ("--exec-on-eostudy", "echo #p >> " + log, "--eostudy-timeout", "3600", "--state-directory", makeDirectory(self))
        daemon = yield startWithWorkers(self, data, *options)
        study = pydicom.uid.generate_uid()
        sent = []
        while len(set(workersOfAssociations(daemon))) < 2:
            self.assertLess(len(sent), 40, "the associations all went to one worker:\n" + daemon.describe())
            images = writeStudy(makeDirectory(self), 2, study=study)
            senders = [spawn(self, storescuArgv(daemon.port, [path]), env=dcmtkEnvironment(), name="storescu") for path, _ in images]
            yield defer.gatherResults([sender.whenEnded() for sender in senders])
            for sender in senders:
                self.assertEqual(sender.output.count(SUCCESS_LINE), 1, sender.describe())
            sent += [uid for _, uid in images]
            yield waitUntil(lambda: len(workersOfAssociations(daemon)) == len(sent), timeout=30, message="association log lines")
        yield waitForIndexed(data, sent)
        daemon.signalProcess("TERM")
        yield daemon.whenEnded()
        with open(log) as f:
            self.assertEqual(f.read().splitlines(), [os.path.join(data, study)], daemon.describe())

    @defer.inlineCallbacks
    def test_findAndMove(self):
        """What storescu stored through one worker, findscu finds and movescu moves to DCMTK's storescp through the workers."""
        destination = makeDirectory(self)
        storescp = yield startDCMTKServer(self, "storescp", "-aet", "STORESCP", "-od", destination)
        data = os.path.join(makeDirectory(self), "data")
        daemon = yield startWithWorkers(self, data, "--peer", "STORESCP:%s:%d" % (LOCALHOST, storescp.port))
        images = writeStudy(makeDirectory(self), 5)
        study = str(pydicom.dcmread(images[0][0], stop_before_pixels=True).StudyInstanceUID)
        stored = yield runCommand(storescuArgv(daemon.port, [path for path, _ in images]), env=dcmtkEnvironment())
        self.assertEqual(stored.output.count(SUCCESS_LINE), 5, stored.describe())
        yield waitForIndexed(data, [uid for _, uid in images])

        responses = makeDirectory(self)
        found = yield runCommand(
            [dcmtk("findscu"), "-S", "-X", "-od", responses, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", LOCALHOST, str(daemon.port)],
            env=dcmtkEnvironment(),
        )
        matches = [pydicom.dcmread(os.path.join(responses, name)) for name in os.listdir(responses)]
        self.assertEqual([m.StudyInstanceUID for m in matches], [study], found.describe() + daemon.describe())
        moved = yield runCommand(
            [dcmtk("movescu"), "-v", "-S", "-aem", "STORESCP", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study]
            + [LOCALHOST, str(daemon.port)],
            env=dcmtkEnvironment(),
        )
        self.assertIn("Received Final Move Response (Success)", moved.output, moved.describe() + daemon.describe())
        received = sorted(name for _, _, names in os.walk(destination) for name in names)
        self.assertEqual(received, sorted("CT." + uid for _, uid in images))

    @defer.inlineCallbacks
    def test_coordinatorBehindHoldsSendersBack(self):
        """The coordinator stopped (SIGSTOP) while storescu streams to a worker: once the reports it has not read fill the link, the worker stops reading its association, and storescu waits instead of the reports piling up in the worker; once the coordinator runs again every object is acknowledged and indexed, and the worker's log says it waited."""
        with open("/proc/sys/net/core/wmem_default") as f:
            socketBuffer = int(f.read())
        # More objects than their reports (a kilobyte or two each) fill
        # the socket's buffer and the transport's.
        sources = writeStudy(makeDirectory(self), 600 + socketBuffer // 500)
        data = os.path.join(makeDirectory(self), "data")
        daemon = yield startWithWorkers(self, data)
        daemon.signalProcess(signal.SIGSTOP)
        self.addCleanup(lambda: daemon.running and daemon.signalProcess(signal.SIGCONT))
        sender = spawn(self, storescuArgv(daemon.port, [path for path, _ in sources]), env=dcmtkEnvironment(), name="storescu")
        counts = []

        def stalled():
            counts.append(sender.output.count(SUCCESS_LINE))
            return not sender.running or (counts[-1] > 0 and len(counts) > 20 and counts[-20] == counts[-1])

        yield waitUntil(stalled, timeout=60, interval=0.05, message="storescu stalled or done")
        self.assertTrue(sender.running, "storescu sent everything while the coordinator was stopped:\n" + sender.describe())
        self.assertLess(counts[-1], len(sources))
        daemon.signalProcess(signal.SIGCONT)
        yield sender.whenEnded()
        self.assertEqual(sender.output.count(SUCCESS_LINE), len(sources), sender.describe())
        yield waitForIndexed(data, [uid for _, uid in sources])
        yield daemon.waitForOutput(r"worker \d+: The coordinator has not read this worker's reports: \d+ associations wait", timeout=30)
        yield daemon.waitForOutput(r"worker \d+: The coordinator has read this worker's reports: \d+ associations go on", timeout=30)

    @defer.inlineCallbacks
    def test_reportsLostWithTheCoordinatorIndexedAtTheNextStart(self):
        """The coordinator stopped (SIGSTOP) while storescu stores 50 objects through a worker, which answers without waiting for it, then killed (SIGKILL) with their reports unread: the next start indexes every acknowledged object, as after any crash."""
        sources = writeStudy(makeDirectory(self), 50)
        data = os.path.join(makeDirectory(self), "data")
        daemon = yield startWithWorkers(self, data)
        pids = list(workerPids(daemon).values())
        daemon.signalProcess(signal.SIGSTOP)
        stored = yield runCommand(storescuArgv(daemon.port, [path for path, _ in sources]), env=dcmtkEnvironment())
        self.assertEqual(stored.output.count(SUCCESS_LINE), 50, stored.describe())
        self.assertEqual(indexedInstances(data), {})
        daemon.signalProcess("KILL")
        daemon.signalProcess(signal.SIGCONT)
        yield daemon.whenEnded()
        yield waitUntil(lambda: not any(os.path.exists("/proc/%d" % (pid,)) for pid in pids), timeout=30, message="workers exited")
        restarted = yield startWithWorkers(self, data)
        indexed = yield waitForIndexed(data, [uid for _, uid in sources])
        for source, uid in sources:
            self.assertComplete(indexed[uid], uid, source)
        self.assertIn("50 files indexed that the index lacked", restarted.output)

    @defer.inlineCallbacks
    def test_coordinatorKilled(self):
        """The coordinator killed with SIGKILL: its workers notice and exit, leaving no process serving the port."""
        daemon = yield startWithWorkers(self, os.path.join(makeDirectory(self), "data"))
        pids = list(workerPids(daemon).values())
        daemon.signalProcess("KILL")
        yield daemon.whenEnded()
        yield waitUntil(lambda: not any(os.path.exists("/proc/%d" % (pid,)) for pid in pids), timeout=30, message="workers exited")


class ForkTests(DaemonTestCase):
    """
    C{dicomd storescp --fork}.
    """

    @defer.inlineCallbacks
    def test_storesThroughWorkers(self):
        """Objects from four storescu at once are stored whole by the workers, under storescp's names."""
        storescp = yield startStorescp(self, "--fork")
        yield waitUntil(lambda: len(servingWorkers(storescp)) == (os.cpu_count() or 1), timeout=30, message="workers serving")
        studies = [writeStudy(makeDirectory(self), 10) for _ in range(4)]
        senders = [
            spawn(self, storescuArgv(storescp.port, [path for path, _ in study]), env=dcmtkEnvironment(), name="storescu") for study in studies
        ]
        yield defer.gatherResults([sender.whenEnded() for sender in senders])
        for sender in senders:
            self.assertEqual(sender.output.count(SUCCESS_LINE), 10, sender.describe() + storescp.describe())
        stored = {name: os.path.join(storescp.outputDirectory, name) for name in os.listdir(storescp.outputDirectory)}
        for study in studies:
            for source, uid in study:
                self.assertComplete(stored["CT." + uid], uid, source)


class PickledTests(SynchronousTestCase):
    """
    Tests for L{Pickled}, how a worker sends a stored object's fields.
    """

    def test_storedInstance(self):
        """
        A stored object's fields, its attributes read by pydicom and left
        undecoded alike, come back equal.
        """
        dataset = header("1.1.1", 7)
        dataset.PatientName = "Doe^J"
        dataset.ImagePositionPatient = [0, 0.5, -1]
        encoded = DicomBytesIO()
        encoded.is_little_endian, encoded.is_implicit_VR = True, False
        write_dataset(encoded, dataset)
        scanned = scanHead(encoded.getvalue(), EXPLICIT, complete=True)
        self.assertEqual(scanned.PatientName, "Doe^J")
        fields = {"sopInstanceUID": "1.2.3.7", "size": 10, "receivedAt": 1.5, "attributes": attributeSummary(scanned)}
        argument = Pickled()
        decoded = argument.fromString(argument.toString(fields))
        self.assertEqual(decoded["attributes"], fields["attributes"])
        self.assertEqual(decoded["size"], 10)

    def test_otherClassesRefused(self):
        """
        A pickle that names anything but plain values and pydicom's data
        set classes is refused: a worker subverted by what it parsed
        cannot make the coordinator call a function.
        """
        argument = Pickled()
        self.assertRaises(pickle.UnpicklingError, argument.fromString, pickle.dumps(os.getcwd))
        self.assertRaises(pickle.UnpicklingError, argument.fromString, pickle.dumps(collections.OrderedDict()))


def _encoded(dataset) -> bytes:
    encoded = DicomBytesIO()
    encoded.is_little_endian, encoded.is_implicit_VR = True, False
    write_dataset(encoded, dataset)
    return encoded.getvalue()


def _received(path="/data/CT.1", **fields) -> ReceivedInstance:
    return ReceivedInstance("1.2.840.10008.5.1.4.1.1.2", "1.1.1.7", EXPLICIT, "MODALITY", "DICOMD", "127.0.0.1", 1.5, size=10, path=path, **fields)


class InstanceFieldsTests(SynchronousTestCase):
    """
    Tests for L{instanceFields} and L{receivedInstance}: a stored object's
    fields, from a worker to its coordinator.
    """

    def test_headSentAsFound(self):
        """
        Attributes a worker has not made into pydicom's elements go as the bytes they were found in, and the coordinator finds the same attributes there.
        """
        dataset = header("1.1.1", 7, PatientName="Doe^J")
        scan = walkHead(_encoded(dataset), EXPLICIT, complete=True)
        fields = instanceFields(_received(scan=scan))
        self.assertEqual(fields["head"], scan.data)
        self.assertNotIn("attributes", fields)
        argument = Pickled()
        received = receivedInstance(argument.fromString(argument.toString(fields)), association=None)
        self.assertIsInstance(received.scan, HeadScan)
        self.assertEqual(received.attributes, dataset)
        self.assertEqual(received.studyInstanceUID, dataset.StudyInstanceUID)
        self.assertEqual((received.sopInstanceUID, received.path, received.size), ("1.1.1.7", "/data/CT.1", 10))

    def test_summaryOtherwise(self):
        """
        Attributes made already, and attributes too long for one AMP value, go as an attributeSummary.
        """
        dataset = header("1.1.1", 7, StudyDescription="x" * 64, ImageComments="y" * 10240)
        received = _received(attributes=dataset)
        self.assertEqual(instanceFields(received)["attributes"], attributeSummary(dataset))
        encoded = _encoded(header("1.1.1", 7, ImageComments=("y" * 10240 + "\\") * 6))
        self.assertGreater(len(encoded), HEAD_LIMIT)
        fields = instanceFields(_received(scan=walkHead(encoded, EXPLICIT, complete=True)))
        self.assertNotIn("head", fields)
        self.assertEqual(fields["attributes"].SOPInstanceUID, "1.1.1.7")
        self.assertLess(len(Pickled().toString(fields)), 65536)


class RemoteIndexTests(SynchronousTestCase):
    """
    A worker refuses what its coordinator's index writer would refuse.
    """

    def setUp(self):
        self.link = CoordinatorLink(reactor=None)
        self.path = os.path.join(makeDirectory(self), "CT.1")
        with open(self.path, "wb") as f:
            f.write(b"\0" * 100)

    def test_refusedWhileTheIndexCannotRecord(self):
        """
        Between the coordinator's IndexState saying its index cannot record and the one saying it records again, objects stored into that area (and no other) are refused with 0xA700, naming the error.
        """
        index = self.link.indexFor("/data")
        other = self.link.indexFor("/other")
        received = _received(path=self.path)
        index.add(received)
        self.link.indexState(area="/data", failure="database or disk is full")
        refusal = self.assertRaises(StoreRefused, index.add, received)
        self.assertEqual(refusal.status, OUT_OF_RESOURCES)
        self.assertIn("database or disk is full", str(refusal))
        other.add(received)
        self.link.indexState(area="/data", failure="")
        index.add(received)

    def test_objectLargerThanTheStudyQuota(self):
        """
        An object larger than the area's study quota is refused with 0xA700.
        """
        received = _received(path=self.path)
        self.link.indexFor("/data", Quota(maxStudies=10, maxBytesPerStudy=100)).add(received)
        index = self.link.indexFor("/data", Quota(maxStudies=10, maxBytesPerStudy=99))
        self.assertEqual(self.assertRaises(StoreRefused, index.add, received).status, OUT_OF_RESOURCES)


class StoredInTests(SynchronousTestCase):
    """
    Tests for L{CoordinatorLink.storedIn}: how a worker reports what it
    stored.
    """

    def setUp(self):
        self.clock = Clock()
        self.link = CoordinatorLink(reactor=self.clock)
        self.transport = StringTransport()
        self.writes = []
        write = self.transport.write
        self.transport.write = lambda data: (self.writes.append(data), write(data))
        self.link.makeConnection(self.transport)
        dataset = header("1.1.1", 7)
        self.received = _received(scan=walkHead(_encoded(dataset), EXPLICIT, complete=True))

    def test_reportedAtTheEndOfTheTurn(self):
        """
        By default the object is reported (Reported, no answer asked) with
        the others of the reactor's turn, in one write once the turn's
        events are handled; each response waits for that write only.
        """
        report = self.link.storedIn("/data")
        first = report(self.received)
        second = report(_received(path="/data/CT.2", scan=self.received.scan))
        self.assertEqual(self.writes, [])
        self.assertNoResult(first)
        self.clock.advance(0)
        [sent] = self.writes
        self.assertEqual(sent.count(b"Reported"), 2)
        self.assertNotIn(b"_ask", sent)
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(second))

    def test_reportsGoBeforeWhatFollowsThem(self):
        """
        A command sent during the turn (an association closed) goes after
        the reports waiting, in the order things happened.
        """
        waiting = self.link.storedIn("/data")(self.received)
        self.link.callRemote(AssociationClosed, association=1)
        [sent] = self.writes
        self.assertLess(sent.index(b"Reported"), sent.index(b"AssociationClosed"))
        self.assertNoResult(waiting)
        self.clock.advance(0)
        self.assertEqual(len(self.writes), 1)
        self.assertIsNone(self.successResultOf(waiting))

    def test_coordinatorGoneBeforeTheReport(self):
        """
        When the coordinator is gone before the turn's reports are
        written, the responses waiting for them fail (the worker aborts
        its associations): nothing is acknowledged that it was not told.
        """
        waiting = self.link.storedIn("/data")(self.received)
        self.link.connectionLost(Failure(ConnectionDone()))
        self.clock.advance(0)
        self.assertEqual(self.writes, [])
        self.failureResultOf(waiting, ConnectionLost)

    def test_answeredWhenTheResponseMustWait(self):
        """
        Where the response must wait for the coordinator (--exec-sync, a journal with --fsync), the worker asks (Stored) and the response waits for the answer; a refusal removes the file.
        """
        path = os.path.join(makeDirectory(self), "CT.1")
        with open(path, "wb") as f:
            f.write(b"x")
        self.received.path = path
        waiting = self.link.storedIn("/data", answered=True)(self.received)
        sent = self.transport.value()
        self.assertIn(b"Stored", sent)
        self.assertIn(b"_ask", sent)
        self.assertFalse(waiting.called)
        [asked] = amp.parseString(sent)
        answer = amp.AmpBox(_answer=asked[b"_ask"], status=b"%d" % (OUT_OF_RESOURCES,), comment=b"full")
        self.link.dataReceived(answer.serialize())
        self.assertEqual(self.failureResultOf(waiting, StoreRefused).value.status, OUT_OF_RESOURCES)
        self.assertFalse(os.path.exists(path))


class _Pool:
    """
    What a L{WorkerConnection} takes objects into: records each.
    """

    def __init__(self):
        self.taken = []

    def take(self, area, received):
        self.taken.append((area, received))


class _ReportingWorker:
    """
    A L{dicomd.workers.Worker}'s associations, by serial; one closed is
    recorded.
    """

    def __init__(self):
        self.closed = []

    def association(self, serial):
        return "association %d" % (serial,)

    def closeAssociation(self, serial):
        self.closed.append(serial)


class ReportedTests(SynchronousTestCase):
    """
    Tests for L{Reported}'s way from a worker (L{CoordinatorLink.storedIn})
    to its coordinator (L{WorkerConnection}), made and taken without
    AMP's general command machinery.
    """

    def setUp(self):
        self.link = CoordinatorLink(reactor=Clock())
        self.sent = StringTransport()
        self.link.makeConnection(self.sent)
        self.pool, self.worker = _Pool(), _ReportingWorker()
        self.connection = WorkerConnection(self.pool, self.worker)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)
        self.received = _received(scan=walkHead(_encoded(header("1.1.1", 7, PatientName="Doe^J")), EXPLICIT, complete=True))

    def test_boxAsAMPReadsIt(self):
        """
        The box a worker makes reads, by the command's own argument
        definitions, as what C{callRemote} would have sent.
        """
        fields = instanceFields(self.received)
        arguments = Reported.parseArguments(Reported.box("/data/\u00e9".encode("utf-8"), 3, fields), None)
        self.assertEqual(arguments, {"area": "/data/\u00e9", "association": 3, "instance": fields})

    def test_taken(self):
        """
        Each object a worker reports is taken into the coordinator's pool
        as the worker stored it, on the worker's association, in order;
        the commands around the reports are dispatched as before.
        """
        report = self.link.storedIn("/data")
        second = _received(path="/data/CT.2", scan=self.received.scan)
        report(self.received)
        report(second)
        self.link.callRemote(AssociationClosed, association=1)
        self.connection.dataReceived(self.sent.value())
        self.assertEqual([area for area, _ in self.pool.taken], ["/data", "/data"])
        taken = [received for _, received in self.pool.taken]
        self.assertEqual(taken, [self.received, second])
        self.assertEqual({received.association for received in taken}, {"association 1"})
        self.assertEqual(taken[0].attributes.PatientName, "Doe^J")
        self.assertEqual(self.worker.closed, [1])
        self.assertFalse(self.transport.disconnecting)

    def test_malformed(self):
        """
        A report the coordinator cannot read (here, a pickle naming a
        function: a worker subverted by what it parsed) is logged and its
        connection dropped, as AMP does with what a responder raises;
        nothing is taken.
        """
        box = Reported.box(b"/data", 1, {})
        box[b"instance"] = pickle.dumps(os.getcwd)
        self.connection.dataReceived(box.serialize())
        self.assertEqual(self.pool.taken, [])
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(pickle.UnpicklingError)), 1)


class AnsweredByCoordinatorTests(SynchronousTestCase):
    """
    Tests for L{answeredByCoordinator}: where a worker's response waits
    for its coordinator.
    """

    def test_waits(self):
        """
        A synchronous reception command, end-of-study work, and a study journal kept with --fsync hold the response for the coordinator.
        """
        for options in (
            StorageOptions(execOnReception="true", execSync=True),
            StorageOptions(execOnEndOfStudy="true"),
            StorageOptions(renameOnEndOfStudy=True, sortMode=SORT_STUDY_UID),
            StorageOptions(sync=True, sortMode=SORT_STUDY_UID),
        ):
            self.assertTrue(answeredByCoordinator(options), options)

    def test_doesNotWait(self):
        """
        An index, study directories, a reception command run beside the response, or --fsync without a study journal do not.
        """
        for options in (
            StorageOptions(),
            StorageOptions(sortMode=SORT_STUDY_UID),
            StorageOptions(execOnReception="true"),
            StorageOptions(sync=True),
        ):
            self.assertFalse(answeredByCoordinator(options), options)


class ReportBacklogTests(SynchronousTestCase):
    """
    Tests for L{ReportBacklog}.
    """

    def test_pausesAndResumesEachAssociation(self):
        """
        Paused, every open association stops reading (connections still negotiating are left alone); resumed, each reads again, once.
        """

        class Association:
            def __init__(self):
                self.pauses = 0

            def pauseReceiving(self):
                self.pauses += 1

            def resumeReceiving(self):
                self.pauses -= 1

        class Protocol:
            def __init__(self, association):
                self.association = association

        class Factory:
            connections = {Protocol(Association()), Protocol(Association()), Protocol(None)}

        backlog = ReportBacklog(Factory())
        associations = [proto.association for proto in Factory.connections if proto.association is not None]
        backlog.pauseProducing()
        self.assertEqual([a.pauses for a in associations], [1, 1])
        backlog.resumeProducing()
        backlog.stopProducing()
        self.assertEqual([a.pauses for a in associations], [0, 0])


class AdoptedPortTests(TestCase):
    """
    Tests for L{AdoptedPort}, on the reactor with a real listening socket.
    """

    def test_acceptsOneConnectionEachTimeReadable(self):
        """
        A worker's port takes one waiting connection each time its socket
        is readable, however many wait: of the workers a burst of
        connections wakes, each takes some, not the first all of them.
        """
        listening = socket.socket()
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        # As the coordinator's port leaves it.
        listening.setblocking(False)
        accepted = []

        class Accepted(protocol.Protocol):
            def connectionMade(self):
                accepted.append(self)

        adopted = AdoptedPort(os.dup(listening.fileno()), "tcp:0", protocol.Factory.forProtocol(Accepted), reactor)
        adopted.privilegedStartService()
        port = adopted.port
        # The test reads it, not the reactor.
        port.stopReading()
        self.addCleanup(port.stopListening)
        clients = [socket.create_connection(listening.getsockname(), timeout=5) for _ in range(3)]
        for client in clients:
            self.addCleanup(client.close)
        self.addCleanup(lambda: [each.transport.abortConnection() for each in accepted])
        port.doRead()
        self.assertEqual(len(accepted), 1)
        port.doRead()
        port.doRead()
        self.assertEqual(len(accepted), 3)


class _Connection:
    def __init__(self):
        self.transport = StringTransport()
        self.told = []

    def callRemote(self, command, **arguments):
        self.told.append((command, arguments))


class _Worker:
    def __init__(self):
        self.connection = _Connection()


class IndexFailingTests(SynchronousTestCase):
    """
    Tests for L{WorkerPool.indexFailing}.
    """

    def test_everyWorkerTold(self):
        """
        Each worker is told when an area's index stops recording and when it records again.
        """
        pool = WorkerPool(2, [], reactor=object())
        pool.workers = [_Worker(), _Worker()]
        pool.indexFailing("/data", "disk I/O error")
        pool.indexFailing("/data", None)
        for worker in pool.workers:
            self.assertEqual(
                worker.connection.told,
                [(IndexState, {"area": "/data", "failure": "disk I/O error"}), (IndexState, {"area": "/data", "failure": ""})],
            )
        self.assertEqual(pool.indexFailures, {})

    def test_newWorkerTold(self):
        """
        A worker started (or started again) while an area's index cannot record is told so at once.
        """

        class Process:
            pid = 4321

        class Reactor:
            transports = []

            def spawnProcess(self, *arguments, **keywords):
                return Process()

            def adoptStreamConnection(self, fd, family, factory):
                transport = StringTransport()
                self.transports.append(transport)
                factory.buildProtocol(None).makeConnection(transport)

        reactor = Reactor()
        pool = WorkerPool(1, ["twistd"], reactor=reactor)
        pool.indexFailing("/data", "disk I/O error")
        pool._spawn(1)
        [transport] = reactor.transports
        self.assertIn(b"IndexState", transport.value())
        self.assertIn(b"disk I/O error", transport.value())
