"""
Faults (issue 7, part 2): the real C{twistd -n dicomd} killed, reset,
starved and stopped in the middle of its work, and what it guarantees
afterwards.

  - SIGKILL during a stream of C-STOREs: after a restart on the same data
    directory every instance that got a success response is there,
    complete and indexed, and no partial file has a final name;
  - a TCP reset in the middle of a data set leaves no file, no index row
    and no temporary file, and the next association is served;
  - a C-MOVE destination that refuses, disappears or stops answering
    gives the counters and final status of PS3.4 C.4.2.1.2;
  - a peer that trickles a data set does not delay other associations;
  - end-of-study work pending at shutdown: fired once at a clean stop,
    and after SIGKILL fired at the next start from the study journal
    (L{dicomd.storage.studies.StudyJournal}).

Disk-full and peer-abort faults are proven in
L{tests.test_storage_streaming}; ARTIM, idle and DIMSE timeouts on a
simulated network in L{tests.test_net_protocol}.  The harness is
L{tests.support}; nothing here sleeps: every wait polls with the reactor.
"""

import os
import random
import re
import socket
import sqlite3
import struct
import time

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial import unittest
from zope.interface import implementer

from dicomd.dimse import status as _status
from dicomd.dimse.commands import CStoreRQ, encodeCommand, responseTo
from dicomd.dimse.pdv import fragment
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
from dicomd.interfaces import IDataSetConsumer
from dicomd.net.acceptor import ApplicationEntity
from dicomd.net.requestor import connect
from dicomd.storage.studies import StudyJournal
from dicomd.ul.negotiation import UNCOMPRESSED, AcceptorPolicy
from tests.dicomfiles import CT_IMAGE_STORAGE, encodedDataSet, makeDataset, writeFile
from tests.storagearea import INDEX, finalFiles, indexedInstances, openDataFiles, temporaryFiles, waitForIndexed
from tests.support import (
    LOCALHOST,
    dcmtk,
    dcmtkEnvironment,
    deferLater,
    listenInProcess,
    makeDirectory,
    runCommand,
    spawn,
    startDaemon,
    startDCMTKServer,
    waitUntil,
)
from tests.test_queryretrieve import parseRetrieve
from tests.test_storage_streaming import bytesWritten, dataSetDigest

#: Rows x columns of the small test images (16-bit).
ROWS = COLUMNS = 64

SUCCESS_LINE = "Received Store Response (Success)"


# -- the data directory ------------------------------------------------------------


def writeStudy(directory: str, count: int, study=None, **attributes) -> list:
    """
    Write C{count} small CT images of one study.

    @return: C{[(path, SOP Instance UID)]} in order.
    """
    study = study or generate_uid()
    series = generate_uid()
    written = []
    for number in range(count):
        dataset = makeDataset(rows=ROWS, columns=COLUMNS, studyInstanceUID=study, seriesInstanceUID=series, **attributes)
        dataset.InstanceNumber = number + 1
        path = writeFile(os.path.join(directory, "%04d.dcm" % (number,)), dataset)
        written.append((path, str(dataset.SOPInstanceUID)))
    return written


def acknowledgedFiles(storescuOutput: str) -> list:
    """
    The files that DCMTK's C{storescu -v} got a success response for: each
    "Sending file:" line starts a file, each success response ends it.
    """
    acknowledged = []
    current = None
    for line in storescuOutput.splitlines():
        match = re.search(r"Sending file: (.*)$", line)
        if match:
            current = match.group(1).strip()
        elif SUCCESS_LINE in line and current is not None:
            acknowledged.append(current)
            current = None
    return acknowledged


def storescuArgv(port: int, paths, *options: str) -> list:
    return [dcmtk("storescu"), "-v", *options, LOCALHOST, str(port)] + list(paths)


def daemonOptions(data: str, *options: str) -> list:
    return ["--output-directory", data, "--max-associations-per-host", "64", *options]


@defer.inlineCallbacks
def requestAssociation(port: int, calling: str, contexts=((CT_IMAGE_STORAGE, [ExplicitVRLittleEndian]),), **kwargs):
    """
    An association from dicomd's own requestor to C{127.0.0.1:port}.
    """
    from twisted.internet import reactor

    association = yield connect(
        TCP4ClientEndpoint(reactor, LOCALHOST, port),
        calledAETitle="DICOMD",
        callingAETitle=calling,
        presentationContexts=list(contexts),
        maximumLength=131072,
        reactor=reactor,
        **kwargs,
    )
    return association


@defer.inlineCallbacks
def killWhileSending(testCase, daemon, sources, acknowledgements: int):
    """
    Start DCMTK's storescu sending C{sources} (C{[(path, uid)]}) to
    C{daemon}, and SIGKILL the daemon once C{acknowledgements} objects
    have been acknowledged (or storescu has ended).

    @return: a L{Deferred} firing with storescu's L{ChildProcess}, ended.
    """
    sender = spawn(testCase, storescuArgv(daemon.port, [path for path, _ in sources]), env=dcmtkEnvironment(), name="storescu")
    yield waitUntil(
        lambda: sender.output.count(SUCCESS_LINE) >= acknowledgements or not sender.running,
        timeout=60,
        interval=0.002,
        message="storescu's first acknowledgements",
    )
    daemon.signalProcess("KILL")
    yield daemon.whenEnded()
    yield sender.whenEnded()
    return sender


class DaemonTestCase(unittest.TestCase):
    """
    Assertions on a daemon's data directory.
    """

    timeout = 120

    def assertComplete(self, path: str, uid: str, source: str = None) -> None:
        """
        C{path} is a whole DICOM file of instance C{uid}: pydicom reads it,
        its pixel data has the length its rows and columns say, and (given
        the file that was sent) its data set is the one sent.
        """
        dataset = pydicom.dcmread(path)
        self.assertEqual(str(dataset.SOPInstanceUID), uid, path)
        self.assertEqual(len(dataset.PixelData), dataset.Rows * dataset.Columns * 2, path)
        if source is not None:
            self.assertEqual(dataSetDigest(path), dataSetDigest(source), path)

    def assertNothingStored(self, data: str, daemon) -> None:
        """
        No file under a final name, no index row, nothing in C{.incoming},
        and no file with data held open by the daemon.
        """
        self.assertEqual(finalFiles(data), [])
        self.assertEqual(indexedInstances(data), {})
        self.assertEqual(temporaryFiles(data), [])
        self.assertEqual(openDataFiles(daemon.transport.pid), [])

    @defer.inlineCallbacks
    def assertServes(self, daemon, data: str, expectedIndexed: int):
        """
        The daemon answers C-ECHO and stores (and indexes) one more object.
        """
        echo = yield runCommand([dcmtk("echoscu"), LOCALHOST, str(daemon.port)], env=dcmtkEnvironment())
        self.assertEqual(echo.exitCode, 0, echo.describe() + daemon.describe())
        [(path, uid)] = writeStudy(makeDirectory(self), 1)
        stored = yield runCommand(storescuArgv(daemon.port, [path]), env=dcmtkEnvironment())
        self.assertEqual(stored.output.count(SUCCESS_LINE), 1, stored.describe() + daemon.describe())
        indexed = yield waitForIndexed(data, [uid])
        self.assertEqual(len(indexed), expectedIndexed)
        self.assertComplete(indexed[uid], uid, path)


# -- SIGKILL -------------------------------------------------------------------------


class KilledDaemonTests(DaemonTestCase):
    """
    The daemon killed with SIGKILL while DCMTK's storescu streams objects
    to it, then started again on the same data directory.
    """

    COUNT = 300
    KILL_AFTER = 100

    @defer.inlineCallbacks
    def test_acknowledgedInstancesSurviveSIGKILL(self):
        """Every instance acknowledged before SIGKILL is, after a restart, complete under its final name and indexed; no file under a final name is partial."""
        sources = writeStudy(makeDirectory(self), self.COUNT)
        uids = dict(sources)
        data = os.path.join(makeDirectory(self), "data")
        daemon = yield startDaemon(self, *daemonOptions(data))
        sender = yield killWhileSending(self, daemon, sources, self.KILL_AFTER)
        self.assertEqual(daemon.signal, 9, daemon.describe())

        acknowledged = acknowledgedFiles(sender.output)
        self.assertGreaterEqual(len(acknowledged), self.KILL_AFTER, sender.describe())
        self.assertLess(len(acknowledged), self.COUNT, "storescu finished before the kill:\n" + sender.describe())
        self.assertNotEqual(sender.exitCode, 0, sender.describe())

        restarted = yield startDaemon(self, *daemonOptions(data))
        # Its port accepts connections before it has started; once it
        # answers, it has indexed what the kill left unindexed.
        echo = yield runCommand([dcmtk("echoscu"), LOCALHOST, str(restarted.port)], env=dcmtkEnvironment())
        self.assertEqual(echo.exitCode, 0, echo.describe() + restarted.describe())
        # Whatever was being received at the kill is gone from .incoming.
        self.assertEqual(temporaryFiles(data), [])
        indexed = indexedInstances(data)
        onDisk = {os.path.basename(path): path for path in finalFiles(data)}
        for source in acknowledged:
            uid = uids[source]
            self.assertIn(uid, indexed, "acknowledged but not indexed")
            self.assertEqual(os.path.basename(indexed[uid]), "CT." + uid)
            self.assertIn("CT." + uid, onDisk, "acknowledged but not on disk")
            self.assertComplete(indexed[uid], uid, source)
        # Every file under a final name is complete, acknowledged or not
        # (the last one may have been stored but not answered), and every
        # index row names a file that is there.
        for path in onDisk.values():
            name = os.path.basename(path)
            self.assertTrue(name.startswith("CT."), path)
            self.assertComplete(path, name[3:])
        for uid, path in indexed.items():
            self.assertTrue(os.path.exists(path), "index row without its file: %s" % (path,))
        self.assertLessEqual(len(onDisk) - len(acknowledged), 1, "more than one stored object was not acknowledged")
        yield self.assertServes(restarted, data, len(indexed) + 1)


class UnindexedFilesTests(DaemonTestCase):
    """
    A file under its final name is complete and may have been
    acknowledged, but the daemon moves it into place before it indexes it:
    a crash in between leaves it without a row.  After a run that did not
    end cleanly, the next start indexes every such file (issue 17, item 5).
    """

    RECOVERY = r"Recovery of DICOMD \(.*\): (\d+) files indexed that the index lacked"

    def assertFilesAreRows(self, data: str) -> None:
        """
        The files under final names are exactly the files the index names.
        """
        self.assertEqual(sorted(finalFiles(data)), sorted(indexedInstances(data).values()))

    @defer.inlineCallbacks
    def test_killedBetweenFileAndRow(self):
        """Files under final names whose rows a SIGKILL left out (the rows are deleted to stand for it) are indexed at the next start, which logs it; C-FIND through DCMTK's findscu finds them; after a clean stop, the next start searches nothing."""
        data = os.path.join(makeDirectory(self), "data")
        sources = writeStudy(makeDirectory(self), 3)
        daemon = yield startDaemon(self, *daemonOptions(data))
        stored = yield runCommand(storescuArgv(daemon.port, [path for path, _ in sources]), env=dcmtkEnvironment())
        self.assertEqual(stored.output.count(SUCCESS_LINE), 3, stored.describe())
        # The rows are written moments after the responses; the test takes
        # some away itself.
        yield waitForIndexed(data, [uid for _, uid in sources])
        daemon.signalProcess("KILL")
        yield daemon.whenEnded()
        lost = [uid for _, uid in sources[1:]]
        db = sqlite3.connect(os.path.join(data, INDEX))
        with db:
            db.executemany("DELETE FROM instance WHERE SOPInstanceUID = ?", [(uid,) for uid in lost])
        db.close()
        self.assertEqual(len(indexedInstances(data)), 1)

        restarted = yield startDaemon(self, *daemonOptions(data))
        # Logged before the daemon listens, but read from its pipe later.
        recovered = yield restarted.waitForOutput(self.RECOVERY, timeout=30)
        self.assertEqual(recovered.group(1), "2", restarted.describe())
        self.assertFilesAreRows(data)
        for path, uid in sources:
            self.assertComplete(indexedInstances(data)[uid], uid, path)
        first = pydicom.dcmread(sources[0][0])
        keys = ["QueryRetrieveLevel=IMAGE", "StudyInstanceUID=%s" % first.StudyInstanceUID, "SeriesInstanceUID=%s" % first.SeriesInstanceUID, "SOPInstanceUID"]
        found = yield runCommand(
            [dcmtk("findscu"), "-v", "-S"] + [argument for key in keys for argument in ("-k", key)] + [LOCALHOST, str(restarted.port)],
            env=dcmtkEnvironment(),
        )
        for uid in lost:
            self.assertIn(uid, found.output, found.describe())
        yield restarted.stop()
        self.assertNotIn("Traceback", restarted.stdout + restarted.stderr, restarted.describe())

        again = yield startDaemon(self, *daemonOptions(data))
        yield runCommand([dcmtk("echoscu"), LOCALHOST, str(again.port)], env=dcmtkEnvironment())
        # Logged after everything the start logs.
        yield again.waitForOutput("Association ECHOSCU -> ", timeout=30)
        self.assertNotIn("Recovery of", again.output)
        self.assertNotIn("was not closed cleanly", again.output)

    @defer.inlineCallbacks
    def test_killedAtRandomMoments(self):
        """Three times, DCMTK's storescu streams 150 objects and the daemon is killed after a random number of acknowledgements; after each restart the files under final names are exactly the index's rows, and every acknowledged instance is among them."""
        data = os.path.join(makeDirectory(self), "data")
        chance = random.Random()
        seed = chance.randrange(1 << 30)
        chance.seed(seed)
        for round in range(3):
            sources = writeStudy(makeDirectory(self), 150)
            uids = dict(sources)
            daemon = yield startDaemon(self, *daemonOptions(data))
            killAfter = chance.randrange(1, 140)
            sender = yield killWhileSending(self, daemon, sources, killAfter)
            restarted = yield startDaemon(self, *daemonOptions(data))
            # The port accepts once listening, before the start (and its
            # recovery) is over; an answered C-ECHO comes after it.
            yield runCommand([dcmtk("echoscu"), LOCALHOST, str(restarted.port)], env=dcmtkEnvironment())
            context = "round %d, killed after %d acknowledgements (seed %d)" % (round, killAfter, seed)
            self.assertEqual(sorted(finalFiles(data)), sorted(indexedInstances(data).values()), context)
            indexed = indexedInstances(data)
            for source in acknowledgedFiles(sender.output):
                self.assertIn(uids[source], indexed, context)
            yield restarted.stop()


# -- TCP reset ---------------------------------------------------------------------


class ResetTests(DaemonTestCase):
    """
    A connection reset (RST, not FIN) in the middle of a C-STORE.
    """

    @defer.inlineCallbacks
    def test_resetMidDataSet(self):
        """A TCP reset after half of a data set leaves no file, no index row, no temporary file, and the daemon serves the next association."""
        data = os.path.join(makeDirectory(self), "data")
        daemon = yield startDaemon(self, *daemonOptions(data))
        association = yield requestAssociation(daemon.port, "RESETTER")
        context = association.contextFor(CT_IMAGE_STORAGE)
        dataset = makeDataset(rows=1024, columns=1024, frames=4)
        encoded = encodedDataSet(dataset)
        request = CStoreRQ(messageID=1, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID=str(dataset.SOPInstanceUID))
        pieces = fragment(context.contextID, True, encodeCommand(request), association.fragmentLength)
        pieces += fragment(context.contextID, False, encoded[: len(encoded) // 2], association.fragmentLength, isLast=False)
        pid = daemon.transport.pid
        before = bytesWritten(pid)
        association.protocol.sendPData(pieces)
        yield waitUntil(lambda: bytesWritten(pid) - before >= 2 << 20, timeout=30, interval=0.002, message="spooling")

        transport = association.protocol.transport
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        closed = association.whenClosed()
        transport.abortConnection()
        yield closed
        yield daemon.waitForOutput(r"RESETTER.*(abandoned|reset|lost)", timeout=15)
        yield waitUntil(lambda: not openDataFiles(pid), timeout=10, message="spool file closed")
        self.assertNothingStored(data, daemon)
        self.assertTrue(daemon.running, daemon.describe())
        yield self.assertServes(daemon, data, 1)


# -- C-MOVE destinations that fail ----------------------------------------------------


@implementer(IDataSetConsumer)
class _Swallow:
    """
    Reads a data set and answers nothing.
    """

    def write(self, fragment):
        pass

    def finish(self):
        pass

    def abandon(self, reason):
        pass


@implementer(IDataSetConsumer)
class _AnswerWhenRead:
    def __init__(self, association, context, message):
        self._association, self._context, self._message = association, context, message

    def write(self, fragment):
        pass

    def finish(self):
        response = responseTo(self._message, _status.SUCCESS, affectedSOPInstanceUID=self._message.affectedSOPInstanceUID)
        self._association.send(self._context.contextID, response)

    def abandon(self, reason):
        pass


class StallingStorageSCP:
    """
    A storage SCP that answers its first C{answered} C-STOREs and then
    reads the next ones without ever answering.

    @ivar received: the SOP Instance UIDs of the C-STORE requests, in order.
    """

    def __init__(self, answered: int):
        self.answered = answered
        self.received = []

    def messageReceived(self, association, context, message):
        self.received.append(message.affectedSOPInstanceUID)
        if len(self.received) <= self.answered:
            return _AnswerWhenRead(association, context, message)
        return _Swallow()


class MoveFailureTests(DaemonTestCase):
    """
    C-MOVE to destinations that fail in three ways (dcmqrscp's counters and
    statuses, PS3.4 C.4.2.1.2 and C.4.2.3.1): all sub-operations failed is
    0xA702, some is 0xB000; either way the final response lists the failed
    instances.
    """

    COUNT = 5

    @defer.inlineCallbacks
    def startArchive(self, destination: str, port: int, *options: str):
        """
        A daemon knowing C{destination} at C{port}, holding one study of
        C{COUNT} instances.

        @return: C{(daemon, study UID, [SOP Instance UIDs in order])}.
        """
        data = os.path.join(makeDirectory(self), "data")
        daemon = yield startDaemon(self, *daemonOptions(data, "--peer", "%s:%s:%d" % (destination, LOCALHOST, port), *options))
        study = generate_uid()
        sources = writeStudy(makeDirectory(self), self.COUNT, study=study)
        stored = yield runCommand(storescuArgv(daemon.port, [path for path, _ in sources]), env=dcmtkEnvironment())
        self.assertEqual(stored.output.count(SUCCESS_LINE), self.COUNT, stored.describe())
        return daemon, study, [uid for _, uid in sources]

    def movescuArgv(self, daemon, destination: str, study: str) -> list:
        return [
            dcmtk("movescu"),
            "-S",
            "-d",
            "-aec",
            "DICOMD",
            "-aem",
            destination,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "StudyInstanceUID=" + study,
            LOCALHOST,
            str(daemon.port),
        ]

    @defer.inlineCallbacks
    def test_destinationRefuses(self):
        """A destination that rejects the association (storescp --refuse): 0xA702, every instance failed and listed."""
        refuser = yield startDCMTKServer(self, "storescp", "--refuse", "-aet", "REFUSER", "-od", makeDirectory(self))
        daemon, study, uids = yield self.startArchive("REFUSER", refuser.port)
        result = yield runCommand(self.movescuArgv(daemon, "REFUSER", study), env=dcmtkEnvironment(), cwd=makeDirectory(self))
        moved = parseRetrieve(result.output, "C-MOVE")
        self.assertEqual(moved.status, _status.OUT_OF_RESOURCES_SUB_OPERATIONS, result.describe())
        self.assertEqual(moved.counts, {"remaining": None, "completed": 0, "failed": self.COUNT, "warning": 0}, result.output)
        self.assertEqual(sorted(moved.failed), sorted(uids))
        self.assertIn("rejected", daemon.output)

    @defer.inlineCallbacks
    def test_destinationKilledMidMove(self):
        """A destination killed after two sub-operations: 0xB000, two completed, the other three failed and listed."""
        received = makeDirectory(self)
        vanisher = yield startDCMTKServer(self, "storescp", "--sleep-after", "3", "-aet", "VANISHER", "-od", received)
        daemon, study, uids = yield self.startArchive("VANISHER", vanisher.port)
        mover = spawn(self, self.movescuArgv(daemon, "VANISHER", study), env=dcmtkEnvironment(), name="movescu")
        # storescp sleeps 3 s after answering each C-STORE: kill it in the
        # sleep after the second.
        yield mover.waitForOutput(r"^D: Completed Suboperations\s*: 2$", timeout=30)
        vanisher.signalProcess("KILL")
        yield mover.whenEnded()
        moved = parseRetrieve(mover.output, "C-MOVE")
        self.assertEqual(moved.status, _status.SUB_OPERATIONS_COMPLETE_WITH_FAILURES, mover.describe() + daemon.describe())
        self.assertEqual(moved.counts, {"remaining": None, "completed": 2, "failed": 3, "warning": 0}, mover.output)
        self.assertEqual(moved.failed, uids[2:])
        arrived = sorted(str(pydicom.dcmread(os.path.join(received, name)).SOPInstanceUID) for name in os.listdir(received))
        self.assertEqual(arrived, sorted(uids[:2]))
        self.assertTrue(daemon.running, daemon.describe())

    @defer.inlineCallbacks
    def test_destinationStopsAnswering(self):
        """A destination that stops answering after two sub-operations: the daemon's DIMSE timeout ends the move with 0xB000, three failed and listed."""
        stalling = StallingStorageSCP(answered=2)
        entity = ApplicationEntity(
            "STALLER",
            AcceptorPolicy({CT_IMAGE_STORAGE: UNCOMPRESSED, VERIFICATION_SOP_CLASS: UNCOMPRESSED}),
            {CStoreRQ.commandField: stalling},
        )
        port, _ = listenInProcess(self, entity, idleTimeout=None)
        daemon, study, uids = yield self.startArchive("STALLER", port, "--dimse-timeout", "2")
        started = time.monotonic()
        result = yield runCommand(self.movescuArgv(daemon, "STALLER", study), env=dcmtkEnvironment(), cwd=makeDirectory(self), timeout=60)
        elapsed = time.monotonic() - started
        moved = parseRetrieve(result.output, "C-MOVE")
        self.assertEqual(moved.status, _status.SUB_OPERATIONS_COMPLETE_WITH_FAILURES, result.describe() + daemon.describe())
        self.assertEqual(moved.counts, {"remaining": None, "completed": 2, "failed": 3, "warning": 0}, result.output)
        self.assertEqual(moved.failed, uids[2:])
        self.assertEqual(stalling.received, uids[:3])
        # The DIMSE timeout (2 s), not the ARTIM timer (30 s) or forever.
        self.assertLess(elapsed, 15, result.describe())
        self.assertIn("DIMSE timeout", daemon.output)


# -- a slow peer ------------------------------------------------------------------------


class SlowPeerTests(DaemonTestCase):
    """
    A peer that sends a data set a few bytes at a time holds only its own
    association.
    """

    ROUND_TRIP_LIMIT = 1.0

    @defer.inlineCallbacks
    def test_tricklingSenderDelaysNobody(self):
        """While one peer trickles a data set, C-ECHO and small C-STORE round trips on another association stay fast; the trickled object is then stored."""
        from twisted.internet import reactor

        data = os.path.join(makeDirectory(self), "data")
        daemon = yield startDaemon(self, *daemonOptions(data))
        slow = yield requestAssociation(daemon.port, "TRICKLER")
        context = slow.contextFor(CT_IMAGE_STORAGE)
        big = makeDataset(rows=256, columns=256)
        encoded = encodedDataSet(big)
        request = CStoreRQ(affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID=str(big.SOPInstanceUID))
        request.messageID = 1
        responded = defer.Deferred()
        slow._outstanding[1] = _outstanding(responded)
        slow.protocol.sendPData(fragment(context.contextID, True, encodeCommand(request), slow.fragmentLength))

        measuring = [True]
        sent = [0]

        @defer.inlineCallbacks
        def trickle():
            # 512 bytes every 20 ms while the other association is measured,
            # then the rest at once.
            while measuring[0] and sent[0] < len(encoded) - 512:
                piece = encoded[sent[0] : sent[0] + 512]
                slow.protocol.sendPData(fragment(context.contextID, False, piece, slow.fragmentLength, isLast=False))
                sent[0] += len(piece)
                yield deferLater(reactor, 0.02)

        trickling = trickle()
        yield deferLater(reactor, 0.2)

        fast = yield requestAssociation(
            daemon.port, "FAST", contexts=[(CT_IMAGE_STORAGE, [ExplicitVRLittleEndian]), (VERIFICATION_SOP_CLASS, [ExplicitVRLittleEndian])]
        )
        fastContext = fast.contextFor(CT_IMAGE_STORAGE)
        roundTrips = []
        for _ in range(20):
            started = time.monotonic()
            status = yield fast.echo()
            roundTrips.append(("C-ECHO", time.monotonic() - started))
            self.assertEqual(status, _status.SUCCESS)
        for _ in range(10):
            small = makeDataset(rows=ROWS, columns=COLUMNS)
            started = time.monotonic()
            response, _ = yield fast.request(
                fastContext.contextID,
                CStoreRQ(affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID=str(small.SOPInstanceUID)),
                encodedDataSet(small),
            )
            roundTrips.append(("C-STORE", time.monotonic() - started))
            self.assertEqual(response.status, _status.SUCCESS)
        yield fast.release()
        trickled = sent[0]
        measuring[0] = False
        yield trickling

        self.assertGreater(trickled, 0)
        self.assertLess(trickled, len(encoded) - 512, "the slow data set was complete before the measurement ended")
        slowest = max(roundTrips, key=lambda entry: entry[1])
        self.assertLess(slowest[1], self.ROUND_TRIP_LIMIT, "slowest round trip %s %.3f s: %r" % (slowest[0], slowest[1], roundTrips))

        slow.protocol.sendPData(fragment(context.contextID, False, encoded[trickled:], slow.fragmentLength))
        response, _ = yield responded
        self.assertEqual(response.status, _status.SUCCESS)
        yield slow.release()
        indexed = yield waitForIndexed(data, [str(big.SOPInstanceUID)])
        self.assertEqual(len(indexed), 11)
        self.assertComplete(indexed[str(big.SOPInstanceUID)], str(big.SOPInstanceUID))


def _outstanding(deferred):
    """
    Register a hand-sent request's response with the association, as
    L{dicomd.net.association.Association.request} does.
    """
    from dicomd.net.association import _Outstanding

    return _Outstanding(deferred, None, None)


# -- end of study at shutdown ----------------------------------------------------------


class EndOfStudyAtStopTests(DaemonTestCase):
    """
    An end-of-study timer pending when the daemon stops (see
    docs/storage.md and L{dicomd.storage.studies.StudyJournal}).
    """

    @defer.inlineCallbacks
    def storeStudy(self, daemon, count: int = 2):
        sources = writeStudy(makeDirectory(self), count)
        result = yield runCommand(storescuArgv(daemon.port, [path for path, _ in sources]), env=dcmtkEnvironment())
        self.assertEqual(result.output.count(SUCCESS_LINE), count, result.describe())
        return sources

    def options(self, data: str, log: str, state: str) -> list:
        return daemonOptions(data, "--exec-on-eostudy", "echo #p >> %s" % (log,), "--eostudy-timeout", "3600", "--state-directory", state)

    @defer.inlineCallbacks
    def test_cleanStopFiresOnce(self):
        """SIGTERM runs the pending end-of-study command once; the next start and stop do not run it again."""
        data = os.path.join(makeDirectory(self), "data")
        log = os.path.join(makeDirectory(self), "eostudy.log")
        state = os.path.join(makeDirectory(self), "state")
        daemon = yield startDaemon(self, *self.options(data, log, state))
        sources = yield self.storeStudy(daemon)
        self.assertEqual(readLines(log), [])
        yield daemon.stop()
        self.assertStoppedCleanly(daemon)
        study = str(pydicom.dcmread(sources[0][0]).StudyInstanceUID)
        self.assertEqual(readLines(log), [os.path.join(data, study)])

        restarted = yield startDaemon(self, *self.options(data, log, state))
        yield self.assertServesEcho(restarted)
        yield restarted.stop()
        self.assertStoppedCleanly(restarted)
        self.assertEqual(readLines(log), [os.path.join(data, study)])
        self.assertEqual(os.listdir(state), [])
        self.assertEqual([name for name in os.listdir(data) if not name.startswith(INDEX)], [study])

    @defer.inlineCallbacks
    def test_killedFiresAtNextStart(self):
        """
        After SIGKILL the pending end-of-study command is not lost: the journal, in the state directory and not in
        the storage area, has the next start run it, once.
        """
        data = os.path.join(makeDirectory(self), "data")
        log = os.path.join(makeDirectory(self), "eostudy.log")
        state = os.path.join(makeDirectory(self), "state")
        daemon = yield startDaemon(self, *self.options(data, log, state))
        sources = yield self.storeStudy(daemon)
        daemon.signalProcess("KILL")
        yield daemon.whenEnded()
        self.assertEqual(readLines(log), [])
        study = str(pydicom.dcmread(sources[0][0]).StudyInstanceUID)
        self.assertEqual(os.listdir(state), [StudyJournal.fileName(os.path.realpath(data))])
        self.assertEqual([name for name in os.listdir(data) if not name.startswith(INDEX)], [study])

        restarted = yield startDaemon(self, *self.options(data, log, state))
        yield waitUntil(lambda: readLines(log), timeout=15, message=restarted.describe())
        self.assertEqual(readLines(log), [os.path.join(data, study)])
        self.assertIn(study, restarted.output)
        yield restarted.stop()
        self.assertStoppedCleanly(restarted)
        self.assertEqual(readLines(log), [os.path.join(data, study)])

    def assertStoppedCleanly(self, daemon) -> None:
        """
        The daemon shut down at its SIGTERM: twistd stops the reactor, then
        re-raises the signal it got so that its parent sees why it ended.
        """
        self.assertIn(daemon.signal, (None, 15), daemon.describe())
        self.assertIn("Server Shut Down.", daemon.stdout, daemon.describe())
        self.assertNotIn("Traceback", daemon.stdout + daemon.stderr, daemon.describe())

    @defer.inlineCallbacks
    def assertServesEcho(self, daemon):
        echo = yield runCommand([dcmtk("echoscu"), LOCALHOST, str(daemon.port)], env=dcmtkEnvironment())
        self.assertEqual(echo.exitCode, 0, echo.describe() + daemon.describe())


def readLines(path: str) -> list:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []
