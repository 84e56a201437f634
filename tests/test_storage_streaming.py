"""
The streaming guarantees of the storage SCP (issue 3): a received data set
goes to disk as it arrives, so memory stays flat whatever the object's
size; a slow disk slows the peer down instead of filling memory; an abort
or a failed write leaves nothing behind; and the association and the
daemon survive a full disk.

The interoperability tests run the real C{dicomd storescp} as a child
process and DCMTK's C{storescu} (or dicomd's own requestor) as the sender;
the unit tests drive the acceptor on a L{StringTransport} with a thread pool
the test controls, so that a "slow disk" is a write job the test has not
run yet.
"""

import errno
import hashlib
import mmap
import os
import shutil
import signal
import struct
import subprocess
import tempfile

from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from dicomd.dimse import status as _status
from dicomd.dimse.commands import CEchoRQ, CStoreRQ, decodeCommand, encodeCommand
from dicomd.dimse.pdv import fragment, maximumFragmentLength
from dicomd.net.acceptor import AcceptorFactory, ApplicationEntity
from dicomd.net.requestor import connect
from dicomd.services.verification import VerificationSCP
from dicomd.storage import spool as _spool
from dicomd.storage.receiver import StorageOptions, buildReceiver, storagePolicy
from dicomd.storage.scp import TEMPORARY_NAME, StoreRefused
from dicomd.ul.fsm import State
from dicomd.ul.negotiation import UNCOMPRESSED, proposePresentationContexts
from dicomd.ul.pdu import AAssociateRQ, UserInformation
from tests.dicomfiles import CT_IMAGE_STORAGE, MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE, encodedDataSet, makeDataset, writeFile
from tests.storagearea import openDataFiles, temporaryFiles
from tests.support import (
    LOCALHOST,
    callWithCallback,
    dcmtk,
    dcmtkEnvironment,
    dicomdArgv,
    listenInProcess,
    makeDirectory,
    pythonEnvironment,
    runCommand,
    spawn,
    startPeer,
    waitUntil,
)
from tests.test_ul_provider import receive

MB = 1 << 20

#: The most a receiver's peak RSS may grow while it stores one big object.
RSS_GROWTH_LIMIT = 64 * MB

#: The peer of the unit tests' acceptor.
PEER = IPv4Address("TCP", "127.0.0.1", 50123)


# -- files ---------------------------------------------------------------------------


def writeLargeFile(path: str, frames: int, rows: int = 512, columns: int = 512) -> str:
    """
    Write a multi-frame 16-bit object of C{frames} frames without holding
    its pixel data in memory: pydicom writes everything before the pixel
    data, the pixel data element is appended in 1 MiB pieces.

    @return: its SOP Instance UID.
    """
    dataset = makeDataset(
        rows=rows, columns=columns, frames=frames, sopClassUID=MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE, modality="OT", pixelData=b""
    )
    del dataset.PixelData
    writeFile(path, dataset)
    size = rows * columns * 2 * frames
    block = os.urandom(MB)
    with open(path, "ab") as f:
        f.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, size))
        left = size
        while left:
            piece = block[: min(left, MB)]
            f.write(piece)
            left -= len(piece)
    return str(dataset.SOPInstanceUID)


def dataSetOffset(path: str) -> int:
    """
    Where the data set of a Part-10 file starts: after the preamble,
    C{DICM} and the File Meta Information group, whose length is its first
    element's value.
    """
    with open(path, "rb") as f:
        head = f.read(144)
    if head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00":
        raise ValueError("%s is not a Part-10 file with a group length" % (path,))
    return 144 + struct.unpack_from("<L", head, 140)[0]


def dataSetDigest(path: str) -> str:
    """
    The SHA-256 of a Part-10 file's data set (everything after its File
    Meta Information): what was sent and what was stored must agree on it,
    whoever built the meta information.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(dataSetOffset(path))
        for block in iter(lambda: f.read(MB), b""):
            digest.update(block)
    return digest.hexdigest()


def storedFiles(directory: str) -> list:
    """
    The files stored under an output directory, but the named temporary
    files in its root.
    """
    found = []
    for root, dirs, files in os.walk(directory):
        found.extend(os.path.join(root, name) for name in files if not (root == directory and TEMPORARY_NAME.match(name)))
    return sorted(found)


# -- the receiving process --------------------------------------------------------------


def procStatus(pid: int) -> dict:
    """
    C{VmRSS} and C{VmHWM} (peak RSS) of a process, in bytes.
    """
    values = {}
    with open("/proc/%d/status" % (pid,)) as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    return values


def bytesWritten(pid: int) -> int:
    """
    The bytes a process has passed to write system calls so far (C{wchar}
    of C{/proc/PID/io}): it grows as the receiver spools a data set.
    """
    with open("/proc/%d/io" % (pid,)) as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise AssertionError("no wchar in /proc/%d/io" % (pid,))


def startStorescp(testCase, outputDirectory: str, *options: str) -> defer.Deferred:
    """
    Start C{dicomd storescp -v} storing into C{outputDirectory} on a free
    port of 127.0.0.1.
    """
    return startPeer(
        testCase,
        lambda port: dicomdArgv("storescp", "-v", *options, "-od", outputDirectory, str(port)),
        env=pythonEnvironment(),
        name="dicomd storescp",
    )


def storescuArgv(port: int, paths, *options: str) -> list:
    return [dcmtk("storescu"), *options, "-aec", "STORESCP", LOCALHOST, str(port)] + list(paths)


class StreamingInteropTestCase(TestCase):
    """
    Helpers for tests against a C{dicomd storescp} process.
    """

    timeout = 120

    def assertNothingLeft(self, outputDirectory: str, daemon) -> None:
        """
        Nothing is stored, no named temporary file is left, and the daemon
        holds no file with data open.
        """
        self.assertEqual(storedFiles(outputDirectory), [])
        self.assertEqual(temporaryFiles(outputDirectory), [])
        self.assertEqual(openDataFiles(daemon.transport.pid), [])

    @defer.inlineCallbacks
    def assertEchoes(self, daemon):
        """
        The daemon still answers C-ECHO.
        """
        result = yield runCommand([dcmtk("echoscu"), LOCALHOST, str(daemon.port)], env=dcmtkEnvironment())
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertTrue(daemon.running, daemon.describe())


class LargeObjectTests(StreamingInteropTestCase):
    """
    A big object streams to disk: the receiver's memory does not grow with
    its size.
    """

    @defer.inlineCallbacks
    def test_multiFrame200MBWithFlatMemory(self):
        """
        A 200 MB multi-frame object from DCMTK storescu is stored bit for bit while dicomd's peak RSS grows by less than 64 MB.
        """
        sources = makeDirectory(self)
        source = os.path.join(sources, "big.dcm")
        uid = writeLargeFile(source, frames=400)
        self.assertGreaterEqual(os.path.getsize(source), 200 * 1000 * 1000)
        output = makeDirectory(self)
        daemon = yield startStorescp(self, output)
        pid = daemon.transport.pid
        startRSS = procStatus(pid)["VmRSS"]

        result = yield runCommand(storescuArgv(daemon.port, [source]), env=dcmtkEnvironment(), timeout=90)
        self.assertEqual(result.exitCode, 0, result.describe() + daemon.describe())

        peak = procStatus(pid)["VmHWM"]
        growth = peak - startRSS
        self.assertLess(
            growth,
            RSS_GROWTH_LIMIT,
            "peak RSS %.1f MB, %.1f MB after start-up: grew %.1f MB" % (peak / MB, startRSS / MB, growth / MB),
        )
        stored = storedFiles(output)
        self.assertEqual([os.path.basename(path) for path in stored], ["SCw." + uid])
        self.assertEqual(dataSetDigest(stored[0]), dataSetDigest(source))
        self.assertEqual(temporaryFiles(output), [])


class AbortTests(StreamingInteropTestCase):
    """
    A peer that goes away in the middle of an object leaves nothing behind,
    and the daemon carries on.
    """

    @defer.inlineCallbacks
    def whenSpooling(self, daemon, atLeast: int = 4 * MB):
        """
        Wait until the daemon has written C{atLeast} bytes more than now:
        it is in the middle of spooling a data set.
        """
        pid = daemon.transport.pid
        start = bytesWritten(pid)
        yield waitUntil(lambda: bytesWritten(pid) - start >= atLeast, timeout=30, interval=0.002, message="spooling")

    @defer.inlineCallbacks
    def test_storescuKilledMidObject(self):
        """
        DCMTK storescu killed (SIGKILL) while a 200 MB object streams leaves no file in the output directory, under a final or a temporary name.
        """
        sources = makeDirectory(self)
        source = os.path.join(sources, "big.dcm")
        writeLargeFile(source, frames=400)
        output = makeDirectory(self)
        daemon = yield startStorescp(self, output)
        sender = spawn(self, storescuArgv(daemon.port, [source]), env=dcmtkEnvironment(), name="storescu")
        yield self.whenSpooling(daemon)
        # Freeze the receiver so that the sender cannot finish, kill the
        # sender, then let the receiver find the connection gone.
        os.kill(daemon.transport.pid, signal.SIGSTOP)
        try:
            sender.signalProcess("KILL")
            yield sender.whenEnded()
        finally:
            os.kill(daemon.transport.pid, signal.SIGCONT)
        yield daemon.waitForOutput(r"abandoned", timeout=30)
        yield waitUntil(lambda: not openDataFiles(daemon.transport.pid), timeout=10, message="spool file closed")
        self.assertNothingLeft(output, daemon)
        yield self.assertEchoes(daemon)

    @defer.inlineCallbacks
    def test_requestorAbortsMidObject(self):
        """
        A requestor that sends half of a data set and then A-ABORT leaves no file, and the daemon stores the next object.
        """
        output = makeDirectory(self)
        daemon = yield startStorescp(self, output)
        from twisted.internet import reactor

        association = yield connect(
            TCP4ClientEndpoint(reactor, LOCALHOST, daemon.port),
            calledAETitle="STORESCP",
            callingAETitle="HALFWAY",
            presentationContexts=[(CT_IMAGE_STORAGE, [ExplicitVRLittleEndian])],
            maximumLength=131072,
            reactor=reactor,
        )
        context = association.contextFor(CT_IMAGE_STORAGE)
        request = CStoreRQ(messageID=1, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID=generate_uid())
        half = os.urandom(16 * MB)
        pieces = fragment(context.contextID, True, encodeCommand(request), association.fragmentLength)
        pieces += fragment(context.contextID, False, half, association.fragmentLength, isLast=False)
        association.protocol.sendPData(pieces)
        yield self.whenSpooling(daemon)
        yield association.abort()
        yield daemon.waitForOutput(r"abandoned", timeout=30)
        yield waitUntil(lambda: not openDataFiles(daemon.transport.pid), timeout=10, message="spool file closed")
        self.assertNothingLeft(output, daemon)

        sources = makeDirectory(self)
        path = writeFile(os.path.join(sources, "next.dcm"), makeDataset())
        result = yield runCommand(storescuArgv(daemon.port, [path]), env=dcmtkEnvironment())
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(len(storedFiles(output)), 1)


class ConcurrentSendersTests(StreamingInteropTestCase):
    """
    Associations store concurrently on one reactor.
    """

    @defer.inlineCallbacks
    def test_tenSendersOfTwentyObjects(self):
        """
        Ten DCMTK storescu processes sending 20 objects each at once all succeed, and each of the 200 files holds the data set sent.
        """
        sources = makeDirectory(self)
        batches = []
        digests = {}
        for sender in range(10):
            batch = []
            for index in range(20):
                dataset = makeDataset(rows=128, columns=128, patientID="P%d" % (sender,))
                path = writeFile(os.path.join(sources, "%02d-%02d.dcm" % (sender, index)), dataset)
                digests["CT." + str(dataset.SOPInstanceUID)] = dataSetDigest(path)
                batch.append(path)
            batches.append(batch)
        output = makeDirectory(self)
        daemon = yield startStorescp(self, output)

        results = yield defer.gatherResults(
            [runCommand(storescuArgv(daemon.port, batch), env=dcmtkEnvironment(), timeout=90) for batch in batches]
        )
        for result in results:
            self.assertEqual(result.exitCode, 0, result.describe())
        stored = storedFiles(output)
        self.assertEqual(len(stored), 200)
        self.assertEqual({os.path.basename(path): dataSetDigest(path) for path in stored}, digests)
        self.assertEqual(temporaryFiles(output), [])


class InMemoryStorageTests(StreamingInteropTestCase):
    """
    Storing into a file system in memory, where each answered object has
    the next spare's pages allocated for one of its size.
    """

    @defer.inlineCallbacks
    def test_objectsOfChangingSizes(self):
        """
        Objects larger and smaller than the one before them, from DCMTK's storescu on one association into tmpfs, are each stored whole and nothing more: none keeps the zeros of pages allocated for a larger one.
        """
        if not (os.path.isdir("/dev/shm") and _spool.inMemoryFileSystem("/dev/shm")):
            raise SkipTest("no tmpfs at /dev/shm")
        output = tempfile.mkdtemp(prefix="dicomd-test-", dir="/dev/shm")
        self.addCleanup(shutil.rmtree, output, True)
        sources = makeDirectory(self)
        paths, digests = [], {}
        for index, size in enumerate([256, 512, 64, 64, 512, 128, 256, 32]):
            dataset = makeDataset(rows=size, columns=size)
            path = writeFile(os.path.join(sources, "%02d.dcm" % (index,)), dataset)
            digests["CT." + str(dataset.SOPInstanceUID)] = dataSetDigest(path)
            paths.append(path)
        daemon = yield startStorescp(self, output)
        result = yield runCommand(storescuArgv(daemon.port, paths), env=dcmtkEnvironment(), timeout=90)
        self.assertEqual(result.exitCode, 0, result.describe())
        stored = storedFiles(output)
        self.assertEqual({os.path.basename(path): dataSetDigest(path) for path in stored}, digests)
        self.assertEqual(temporaryFiles(output), [])
        self.assertEqual(openDataFiles(daemon.transport.pid), [])


# -- unit tests: the acceptor on a StringTransport -------------------------------------


class _Reactor(MemoryReactorClock):
    """
    A memory reactor whose C{callFromThread} runs the call at once: worker
    jobs report back synchronously.
    """

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class _HeldThreadPool:
    """
    A thread pool whose jobs wait until the test runs them: a disk as slow
    as the test wants.

    @ivar held: the jobs not run yet, oldest first.
    @ivar immediate: run jobs at once instead of holding them.
    """

    def __init__(self, immediate: bool = False):
        self.held = []
        self.immediate = immediate

    def callInThreadWithCallback(self, onResult, function, *args, **kwargs):
        def job():
            callWithCallback(onResult, function, *args, **kwargs)

        if self.immediate:
            job()
        else:
            self.held.append(job)

    def callInThread(self, function, *args, **kwargs):
        self.callInThreadWithCallback(lambda ok, result: None, function, *args, **kwargs)

    def runOne(self) -> None:
        self.held.pop(0)()

    def runAll(self) -> None:
        while self.held:
            self.runOne()


def _pdus(data: bytes) -> list:
    """
    The C{(type, body)} of each whole PDU in C{data}.
    """
    found = []
    pos = 0
    while pos + 6 <= len(data):
        pduType = data[pos]
        length = struct.unpack_from(">L", data, pos + 2)[0]
        found.append((pduType, data[pos + 6 : pos + 6 + length]))
        pos += 6 + length
    return found


def _responses(data: bytes) -> list:
    """
    The DIMSE commands in the P-DATA-TF PDUs of C{data} (one PDV each, as
    dicomd sends them).
    """
    commands = []
    for pduType, body in _pdus(data):
        if pduType == 0x04 and body[5] & 0x01:
            commands.append(decodeCommand(body[6:]))
    return commands


class AcceptorHarness:
    """
    A storage acceptor on a L{StringTransport}, with its thread pool in the
    test's hands, and a peer that speaks through L{send}.
    """

    maximumLength = 131072

    def __init__(self, testCase, pool: _HeldThreadPool, window=None, index=None):
        """
        @param window: the Asynchronous Operations Window the peer
            proposes and is granted, or C{None} for none.
        @param index: the storage area's index, or C{None}.
        """
        self.testCase = testCase
        self.reactor = _Reactor()
        self.pool = pool
        self.output = makeDirectory(testCase)
        receiver = buildReceiver(StorageOptions(outputDirectory=self.output), index=index, reactor=self.reactor, threadpool=pool)
        receiver.area.prepare()
        self.scp = receiver.scp
        entity = ApplicationEntity(
            "STORESCP",
            storagePolicy([ExplicitVRLittleEndian]),
            {CEchoRQ.commandField: VerificationSCP(), CStoreRQ.commandField: receiver.scp},
            maximumLength=self.maximumLength,
            maximumAsynchronousOperations=window or 1,
        )
        self.factory = AcceptorFactory(entity, reactor=self.reactor)
        self.protocol = self.factory.buildProtocol(PEER)
        self.transport = StringTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)
        request = AAssociateRQ(
            "STORESCP",
            "SLOWDISK",
            proposePresentationContexts([(CT_IMAGE_STORAGE, [ExplicitVRLittleEndian])]),
            UserInformation(
                maximumLength=self.maximumLength,
                implementationClassUID="1.2.3.4",
                asynchronousOperationsWindow=(window, 1) if window else None,
            ),
        ).encode()
        self.protocol.dataReceived(request)
        testCase.assertEqual(_pdus(self.transport.value())[0][0], 0x02, "A-ASSOCIATE-AC expected")
        self.transport.clear()
        self.fragmentLength = maximumFragmentLength(self.maximumLength)
        self._messageID = 0

    def command(self, sopInstanceUID: str) -> None:
        """
        Send the C-STORE-RQ of an object.
        """
        self._messageID += 1
        request = CStoreRQ(
            messageID=self._messageID, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID=sopInstanceUID
        )
        self.send(fragment(1, True, encodeCommand(request), self.fragmentLength))

    def data(self, data: bytes, isLast: bool) -> None:
        """
        Send a piece of the data set, as PDUs of our maximum length.
        """
        self.send(fragment(1, False, data, self.fragmentLength, isLast))

    def send(self, pieces) -> None:
        self.protocol.dataReceived(b"".join(bytes(piece) for piece in pieces))

    def responses(self) -> list:
        return _responses(self.transport.value())

    def storeWhole(self, dataset) -> bytes:
        """
        Send a whole C-STORE of C{dataset}; return its encoded data set.
        """
        encoded = encodedDataSet(dataset)
        self.command(str(dataset.SOPInstanceUID))
        self.data(encoded, True)
        return encoded


class SpareReservationTests(SynchronousTestCase):
    """
    The storage SCP has the next spare's pages allocated once it has
    answered (L{dicomd.storage.spool.SpareFiles.reserve}) only for a peer
    that waits for each response.
    """

    def reservations(self, window) -> list:
        reserved = []
        self.patch(_spool.SpareFiles, "reserve", lambda spares, size: reserved.append(size))
        harness = AcceptorHarness(self, _HeldThreadPool(immediate=True), window=window)
        self.assertEqual(harness.protocol.association.peerOperationsWindow, window or 1)
        encoded = harness.storeWhole(makeDataset())
        [response] = harness.responses()
        self.assertEqual(response.status, _status.SUCCESS)
        [path] = storedFiles(harness.output)
        return reserved, os.path.getsize(path), len(encoded)

    def test_withoutAWindow(self):
        """
        A peer without a window, which waits for each response, has the next spare allocated for an object the size of the file just stored.
        """
        reserved, fileSize, _ = self.reservations(None)
        self.assertEqual(reserved, [fileSize])

    def test_withAWindow(self):
        """
        A peer granted a window sends its next requests without waiting, and keeps the SCP busy: nothing is allocated ahead.
        """
        reserved, _, _ = self.reservations(8)
        self.assertEqual(reserved, [])


class _RecordingIndex:
    """
    An index that records later (as L{dicomd.archive.writer.IndexWriter}
    does) and keeps what it was given.
    """

    returnsAtOnce = True

    def __init__(self):
        self.added = []

    def add(self, received):
        self.added.append(received)


class FileSizeTests(SynchronousTestCase):
    """
    The storage SCP tells its index the size of the file it wrote
    (L{ReceivedInstance.fileSize}), so that the index need not ask the
    file system; not when it re-encoded the file.
    """

    def stored(self, dataset, recode=None):
        harness = AcceptorHarness(self, _HeldThreadPool(immediate=True))
        index = harness.scp.area.index = _RecordingIndex()
        harness.scp.area.recode = recode
        harness.storeWhole(dataset)
        [response] = harness.responses()
        self.assertEqual(response.status, _status.SUCCESS)
        [received] = index.added
        return received

    def test_written(self):
        """
        A file written on the reactor thread and one written in worker threads (larger than the reactor thread takes) both have the size they were written with.
        """
        for dataset in (makeDataset(), makeDataset(rows=1024, columns=1024)):
            received = self.stored(dataset)
            self.assertEqual(received.fileSize, os.path.getsize(received.path))

    def test_reencoded(self):
        """
        A file the area re-encodes has no size known from writing it.
        """

        def recode(path):
            with open(path, "ab") as f:
                f.write(b"\0" * 10)

        received = self.stored(makeDataset(), recode)
        self.assertIsNone(received.fileSize)


class _PreparingIndex:
    """
    An index that records later and reads ahead what it will record
    (C{prepare}), as L{dicomd.archive.writer.IndexWriter} does, and
    remembers what it was asked, and whether a response was sent by then.
    """

    returnsAtOnce = True

    def __init__(self, transport):
        self.transport = transport
        self.calls = []

    def add(self, received):
        self.calls.append(("add", received, bool(self.transport.value())))

    def prepare(self, received):
        self.calls.append(("prepare", received, bool(self.transport.value())))


class PreparedAfterTheResponseTests(SynchronousTestCase):
    """
    An index that reads ahead what it will record of an object is asked
    to once the object is answered, where the peer waits for each
    response, rather than leave that to the index writer's thread.
    """

    def calls(self, window, others=0) -> list:
        """
        @param others: how many more associations are open on the
            acceptor meanwhile.
        """
        harness = AcceptorHarness(self, _HeldThreadPool(immediate=True), window=window)
        harness.factory.associations.update(object() for _ in range(others))
        index = harness.scp.area.index = _PreparingIndex(harness.transport)
        dataset = makeDataset()
        harness.storeWhole(dataset)
        [response] = harness.responses()
        self.assertEqual(response.status, _status.SUCCESS)
        return [(name, str(received.sopInstanceUID), answered) for name, received, answered in index.calls], str(dataset.SOPInstanceUID)

    def test_preparedOnceAnswered(self):
        """
        Without a window, the object is added before the response and prepared after it.
        """
        calls, uid = self.calls(None)
        self.assertEqual(calls, [("add", uid, False), ("prepare", uid, True)])

    def test_leftWithAWindow(self):
        """
        A peer with a window keeps the SCP busy: what the index records is left for its writer to read.
        """
        calls, uid = self.calls(8)
        self.assertEqual(calls, [("add", uid, False)])

    def test_leftWithOtherAssociations(self):
        """
        Other associations open beside this one keep the reactor busy: what the index records is left for its writer to read, which runs beside the reactor's system calls.
        """
        calls, uid = self.calls(None, others=1)
        self.assertEqual(calls, [("add", uid, False)])


class SlowDiskTests(SynchronousTestCase):
    """
    When the disk is slower than the network, the transport stops being
    read until the write jobs catch up, so memory stays bounded.
    """

    def test_slowDiskPausesAndResumesTheTransport(self):
        """
        With write jobs held back, the transport is paused once 8 MiB wait; running them resumes it, and the object is then stored whole.
        """
        pool = _HeldThreadPool()
        harness = AcceptorHarness(self, pool)
        dataset = makeDataset(rows=1024, columns=1024, frames=8)  # 16 MiB of pixels
        encoded = encodedDataSet(dataset)
        harness.command(str(dataset.SOPInstanceUID))
        spool = None
        sent = 0
        step = harness.fragmentLength
        while harness.transport.producerState == "producing":
            harness.data(encoded[sent : sent + step], False)
            sent += step
            consumer = harness.protocol.association._consumer
            spool = consumer._spool
            self.assertLessEqual(spool._waitingSize, _spool.HIGH_WATER + step)
            self.assertLess(sent, len(encoded) - step, "never paused")
        self.assertEqual(harness.transport.producerState, "paused")
        self.assertGreaterEqual(sent, _spool.HIGH_WATER)
        self.assertEqual(harness.responses(), [])

        # The disk catches up: the jobs run, and reading resumes.
        pool.runAll()
        self.assertEqual(harness.transport.producerState, "producing")
        harness.data(encoded[sent:], True)
        pool.runAll()
        self.assertEqual(harness.transport.producerState, "producing")
        [response] = harness.responses()
        self.assertEqual(response.status, _status.SUCCESS)
        [stored] = storedFiles(harness.output)
        with open(stored, "rb") as f:
            f.seek(dataSetOffset(stored))
            self.assertEqual(f.read(), encoded)

    def test_pausedOnceForSeveralReasons(self):
        """
        A transport paused by the spool stays paused until the spool's backlog and every other pauser have let go.
        """
        pool = _HeldThreadPool()
        harness = AcceptorHarness(self, pool)
        association = harness.protocol.association
        association.pauseReceiving()
        self.assertEqual(harness.transport.producerState, "paused")
        dataset = makeDataset(rows=1024, columns=1024, frames=6)  # 12 MiB
        encoded = encodedDataSet(dataset)
        harness.command(str(dataset.SOPInstanceUID))
        harness.data(encoded[: 9 * MB], False)
        pool.runAll()
        self.assertEqual(harness.transport.producerState, "paused")
        association.resumeReceiving()
        self.assertEqual(harness.transport.producerState, "producing")


class WriteFailureTests(SynchronousTestCase):
    """
    A write that fails (a full disk) answers 0xA700 ("out of resources"),
    leaves no file, and the association goes on.
    """

    def test_noSpaceAnswersOutOfResourcesAndTheAssociationGoesOn(self):
        """
        ENOSPC from the spool's writes answers 0xA700 and leaves no file; the next C-STORE on the same association succeeds once space is back.
        """
        harness = AcceptorHarness(self, _HeldThreadPool(immediate=True))

        def noSpace(fd, chunks):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.patch(_spool, "_writeAll", noSpace)
        harness.storeWhole(makeDataset(rows=512, columns=512, frames=4))
        [refused] = harness.responses()
        self.assertEqual(refused.status, _status.OUT_OF_RESOURCES)
        self.assertEqual(storedFiles(harness.output), [])
        self.assertEqual(temporaryFiles(harness.output), [])
        self.assertIs(harness.protocol.provider.state, State.Sta6)

        harness.transport.clear()
        self.patch(_spool, "_writeAll", _originalWriteAll)
        dataset = makeDataset()
        encoded = harness.storeWhole(dataset)
        [stored] = harness.responses()
        self.assertEqual(stored.status, _status.SUCCESS)
        [path] = storedFiles(harness.output)
        self.assertEqual(os.path.basename(path), "CT." + str(dataset.SOPInstanceUID))
        with open(path, "rb") as f:
            f.seek(dataSetOffset(path))
            self.assertEqual(f.read(), encoded)

    def test_failureAfterSomeWritesRemovesThePartialFile(self):
        """
        A disk that fills up after the first megabytes of an object: 0xA700, and the partial file is gone.
        """
        harness = AcceptorHarness(self, _HeldThreadPool(immediate=True))
        original = _spool._writeAll
        written = []

        def fillsUp(fd, chunks):
            if written:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written.append(True)
            return original(fd, chunks)

        self.patch(_spool, "_writeAll", fillsUp)
        harness.storeWhole(makeDataset(rows=1024, columns=1024, frames=3))
        [refused] = harness.responses()
        self.assertEqual(refused.status, _status.OUT_OF_RESOURCES)
        self.assertEqual(written, [True])
        self.assertEqual(storedFiles(harness.output), [])
        self.assertEqual(temporaryFiles(harness.output), [])


class ObserverRefusalTests(SynchronousTestCase):
    """
    An observer whose L{Deferred} fails with L{StoreRefused} (a worker's
    coordinator that cannot record the object) answers with the refusal's
    status, not with 0xC000.
    """

    def test_refusalOfAnObserverWhoseResponseWaits(self):
        """
        0xA700 from an observer's L{Deferred} is answered as 0xA700, with
        its comment, with one observer waiting and with two.
        """
        for others in ([], [lambda received: defer.succeed(None)]):
            harness = AcceptorHarness(self, _HeldThreadPool(immediate=True))
            refusal = defer.Deferred()
            harness.scp.observers.extend([lambda received: refusal] + others)
            harness.storeWhole(makeDataset())
            refusal.errback(StoreRefused(_status.OUT_OF_RESOURCES, "the index cannot record it"))
            [refused] = harness.responses()
            self.assertEqual(refused.status, _status.OUT_OF_RESOURCES)
            self.assertEqual(refused.errorComment, "the index cannot record it")


class MalformedDataSetTests(SynchronousTestCase):
    """
    A data set that cannot be parsed is refused with 0xC000 ("cannot
    understand"), not 0xA700 ("out of resources", which invites the peer to
    send the same object again), and leaves no file.
    """

    def unterminatedSequence(self):
        """
        A data set without pixel data ending inside a sequence of undefined
        length (no Sequence Delimitation Item), and its SOP Instance UID.
        """
        dataset = makeDataset(rows=8, columns=8)
        del dataset.PixelData
        inner = struct.pack("<HH2sH", 0x0008, 0x1150, b"UI", 6) + b"1.2.3\x00"
        items = (struct.pack("<HHL", 0xFFFE, 0xE000, len(inner)) + inner) * 3
        sequence = struct.pack("<HH2sHL", 0x5200, 0x9230, b"SQ", 0, 0xFFFFFFFF) + items
        return str(dataset.SOPInstanceUID), encodedDataSet(dataset) + sequence

    def test_unterminatedSequenceCannotBeUnderstood(self):
        """
        A sequence of undefined length that ends with the data set (pydicom's C{OSError} without an errno): 0xC000, no file, and the association goes on.
        """
        harness = AcceptorHarness(self, _HeldThreadPool(immediate=True))
        uid, encoded = self.unterminatedSequence()
        harness.command(uid)
        harness.data(encoded, True)
        [refused] = harness.responses()
        self.assertEqual(refused.status, _status.CANNOT_UNDERSTAND)
        self.assertEqual(storedFiles(harness.output), [])
        self.assertEqual(temporaryFiles(harness.output), [])
        self.assertIs(harness.protocol.provider.state, State.Sta6)

    def test_readErrorIsOutOfResources(self):
        """
        An C{OSError} with an errno while the file is read back (EIO) is the disk's fault: still 0xA700.
        """
        from dicomd.storage import scp as _scp

        def failing(path):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        self.patch(_scp, "readFileHead", failing)
        harness = AcceptorHarness(self, _HeldThreadPool(immediate=True))
        uid, encoded = self.unterminatedSequence()
        harness.command(uid)
        harness.data(encoded, True)
        [refused] = harness.responses()
        self.assertEqual(refused.status, _status.OUT_OF_RESOURCES)
        self.assertEqual(storedFiles(harness.output), [])
        self.assertEqual(temporaryFiles(harness.output), [])


_originalWriteAll = _spool._writeAll


def _writesCappedAt(limit: int):
    """
    A stand-in for the spool's writer on a file system of C{limit} bytes
    holding one file: a write that would take a file past C{limit} fails
    with ENOSPC.
    """

    def write(fd, chunks):
        if os.fstat(fd).st_size + sum(len(chunk) for chunk in chunks) > limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return _originalWriteAll(fd, chunks)

    return write


class FullFileSystemTests(StreamingInteropTestCase):
    """
    A real full file system: C{dicomd storescp} storing into a 4 MiB tmpfs.

    Mounting needs root, as the suite has in CI.  Where mounting is not
    permitted the same exchange runs against a receiver in the test's own
    process whose writes fail past 4 MiB, so the test still proves the
    behaviour, with an injected fault instead of a real one.
    """

    @defer.inlineCallbacks
    def mountSmallFileSystem(self):
        """
        Mount a 4 MiB tmpfs on a new directory, unmounted again by the
        test's cleanup.

        @return: a L{Deferred} firing with the directory, or C{None} when
            mounting is not permitted here.
        """
        directory = makeDirectory(self)
        result = yield runCommand(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", directory], env=dict(os.environ))
        if result.exitCode != 0:
            return None

        def unmount():
            subprocess.run(["umount", "-l", directory], check=False)

        self.addCleanup(unmount)
        return directory

    def receiveInProcess(self, output: str) -> int:
        """
        Listen in the test's reactor with a storage SCP whose file system
        holds 4 MiB per file.

        @return: the port.
        """
        self.patch(_spool, "_writeAll", _writesCappedAt(4 * MB))
        receiver = buildReceiver(StorageOptions(outputDirectory=output))
        receiver.area.prepare()
        entity = ApplicationEntity(
            "STORESCP",
            storagePolicy(UNCOMPRESSED),
            {CEchoRQ.commandField: VerificationSCP(), CStoreRQ.commandField: receiver.scp},
            maximumLength=131072,
        )
        port, _ = listenInProcess(self, entity)
        return port

    @defer.inlineCallbacks
    def test_fullDiskAnswersOutOfResourcesAndTheDaemonGoesOn(self):
        """
        On a 4 MiB file system an 8 MiB object is refused with 0xA700 and leaves nothing; the next object on the same association is stored.
        """
        sources = makeDirectory(self)
        big = writeFile(os.path.join(sources, "1-big.dcm"), makeDataset(rows=1024, columns=1024, frames=4))
        smallDataset = makeDataset()
        small = writeFile(os.path.join(sources, "2-small.dcm"), smallDataset)
        output = yield self.mountSmallFileSystem()
        daemon = None
        if output is not None:
            daemon = yield startStorescp(self, output)
            port = daemon.port
        else:
            output = makeDirectory(self)
            port = self.receiveInProcess(output)

        result = yield runCommand(storescuArgv(port, [big, small], "-nh", "-v"), env=dcmtkEnvironment(), timeout=60)
        # DCMTK's words for 0xA700, then success, on one association.
        responses = [line for line in result.output.splitlines() if "Received Store Response" in line]
        self.assertEqual(len(responses), 2, result.describe())
        self.assertIn("Refused: OutOfResources", responses[0])
        self.assertIn("(Success)", responses[1])
        self.assertEqual(result.output.count("Requesting Association"), 1, result.describe())
        stored = storedFiles(output)
        self.assertEqual([os.path.basename(path) for path in stored], ["CT." + str(smallDataset.SOPInstanceUID)])
        self.assertEqual(dataSetDigest(stored[0]), dataSetDigest(small))
        self.assertEqual(temporaryFiles(output), [])
        if daemon is not None:
            yield daemon.waitForOutput(r"0xA700", timeout=10)
            self.assertEqual(openDataFiles(daemon.transport.pid), [])
            yield self.assertEchoes(daemon)
        else:
            echo = yield runCommand([dcmtk("echoscu"), LOCALHOST, str(port)], env=dcmtkEnvironment())
            self.assertEqual(echo.exitCode, 0, echo.describe())


# -- the pieces of the receive path -------------------------------------------------------


def _encodedVariants():
    """
    One data set with nested sequences, a private element and Latin-1
    text, encoded in implicit and explicit VR little endian with sequences
    and items of defined and of undefined length: C{(transfer syntax,
    encoded bytes)} pairs.
    """
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    dataset = makeDataset(rows=16, columns=16, characterSet="ISO_IR 100", patientName="M\u00fcller^J\u00fcrgen")
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    code = Dataset()
    code.CodeValue = "121311"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Localizer"
    item.PurposeOfReferenceCodeSequence = Sequence([code])
    dataset.ReferencedImageSequence = Sequence([item, item])
    dataset[0x00091010] = pydicom.DataElement(0x00091010, "LO", "private")
    variants = []
    for transferSyntax in ("1.2.840.10008.1.2", ExplicitVRLittleEndian):
        for undefined in (True, False):
            sequence = dataset.ReferencedImageSequence
            sequence.is_undefined_length = undefined
            for each in sequence:
                each.is_undefined_length_sequence_item = undefined
                each.PurposeOfReferenceCodeSequence.is_undefined_length = undefined
            from pydicom.filebase import DicomBytesIO
            from pydicom.filewriter import write_dataset

            fp = DicomBytesIO()
            fp.is_little_endian = True
            fp.is_implicit_VR = transferSyntax == "1.2.840.10008.1.2"
            write_dataset(fp, dataset)
            variants.append((transferSyntax, fp.getvalue()))
    return variants


class HeadScanTests(SynchronousTestCase):
    """
    L{scanHead} reads the attributes before the pixel data as pydicom
    does, from the first bytes of a data set.
    """

    def assertSameAttributes(self, scanned, read) -> None:
        self.assertEqual([(e.tag, e.VR, e.value) for e in scanned], [(e.tag, e.VR, e.value) for e in read])

    def test_sameAsPydicom(self):
        """
        Implicit and explicit VR, sequences of defined and undefined length: the attributes are pydicom's, values included.
        """
        from dicomd.storage.part10 import readHead, scanHead

        for transferSyntax, encoded in _encodedVariants():
            scanned = scanHead(encoded, transferSyntax, True)
            self.assertIsNotNone(scanned)
            self.assertSameAttributes(scanned, readHead(encoded, transferSyntax, True))
            self.assertEqual(str(scanned.PatientName), "M\u00fcller^J\u00fcrgen")
            self.assertEqual(scanned.ReferencedImageSequence[1].PurposeOfReferenceCodeSequence[0].CodeMeaning, "Localizer")
            self.assertNotIn(0x7FE00010, scanned)

    def test_encodingAsPydicomRecordsIt(self):
        """
        The scanned data set has the state pydicom gives a data set read in
        that encoding: the same attributes, with the same values, as one made
        by C{Dataset()} and C{set_original_encoding}, the character set of
        the data set's own (0008,0005) included.
        """
        from pydicom.charset import convert_encodings
        from pydicom.dataset import Dataset

        from dicomd.storage.part10 import scanHead

        for transferSyntax, encoded in _encodedVariants():
            scanned = scanHead(encoded, transferSyntax, True)
            expected = Dataset(dict(scanned._dict))
            expected.set_original_encoding(transferSyntax == "1.2.840.10008.1.2", True, convert_encodings(expected.SpecificCharacterSet))
            self.assertEqual(vars(scanned), vars(expected))
            self.assertEqual(scanned.original_character_set, ["latin_1"])

    def test_newDataset(self):
        """
        L{newDataset} makes what C{Dataset()} makes, with the elements and
        encoding given, and containers of its own.
        """
        from pydicom.dataset import Dataset

        from dicomd.dataset import newDataset

        self.assertEqual(vars(newDataset()), vars(Dataset()))
        elements = {}
        made = newDataset(elements, False, True, "iso8859")
        expected = Dataset(elements)
        expected.set_original_encoding(False, True, "iso8859")
        self.assertEqual(vars(made), vars(expected))
        self.assertIs(made._dict, elements)
        other = newDataset()
        for name in ("_dict", "_private_blocks", "_pixel_array_opts", "_pixel_id"):
            self.assertIsNot(vars(made)[name], vars(other)[name], name)
        made.PatientID = "42"
        self.assertNotIn("PatientID", other)

    def test_elementsAsPydicomMakesThem(self):
        """
        The scanned elements are pydicom's C{RawDataElement}s under its
        C{BaseTag}s, made once per tag number and shared, up to a bound
        that what peers send cannot pass.
        """
        from pydicom.dataelem import RawDataElement
        from pydicom.tag import BaseTag

        from dicomd import dataset
        from dicomd.storage import part10

        transferSyntax, encoded = _encodedVariants()[1]
        first = part10.scanHead(encoded, transferSyntax, True)
        second = part10.scanHead(encoded, transferSyntax, True)
        for tag, element in first._dict.items():
            self.assertIs(type(tag), BaseTag)
            # The very objects storedElement looks up by.
            self.assertIs(dataset.TAG_OBJECTS[tag], tag)
            if tag != 0x00080005:
                # (The character set is decoded, to read the rest with.)
                self.assertIs(type(element), RawDataElement)
                self.assertIs(element.tag, tag)
        self.assertEqual([id(tag) for tag in first._dict], [id(tag) for tag in second._dict])
        for number in range(0x00990010, 0x00990010 + 2 * dataset.MAXIMUM_TAG_OBJECTS):
            self.assertEqual(dataset.tagObject(number), number)
        self.assertLessEqual(len(dataset.TAG_OBJECTS), dataset.MAXIMUM_TAG_OBJECTS)

    def test_storedElement(self):
        """
        L{storedElement} finds what C{Dataset.get_item} finds, raw or
        decoded, and C{None} for an absent tag.
        """
        from dicomd.dataset import storedElement, storedElements
        from dicomd.storage.part10 import scanHead

        transferSyntax, encoded = _encodedVariants()[1]
        scanned = scanHead(encoded, transferSyntax, True)
        for tag in (0x00080018, 0x00100010, 0x00091010, 0x00880140):
            self.assertIs(storedElement(scanned, tag), scanned.get_item(tag))
        str(scanned.PatientName)
        self.assertIs(storedElement(scanned, 0x00100010), scanned.get_item(0x00100010))
        self.assertIsNone(storedElement(scanned, 0x00880140))
        tags = (0x00080018, 0x00100010, 0x00880140, 0x00091010)
        self.assertEqual(storedElements(scanned, tags), [storedElement(scanned, tag) for tag in tags])

    def test_headEndingInPixelData(self):
        """
        A head that ends inside the pixel data is enough.
        """
        from dicomd.storage.part10 import scanHead

        for transferSyntax, encoded in _encodedVariants():
            pixelData = encoded.index(b"\xe0\x7f\x10\x00")
            scanned = scanHead(encoded[: pixelData + 20], transferSyntax, False)
            self.assertEqual(str(scanned.SOPInstanceUID), str(scanHead(encoded, transferSyntax, True).SOPInstanceUID))

    def test_headEndingBeforePixelData(self):
        """
        A head that ends inside an element before the pixel data is not enough (None: read the file), unless it is the whole data set.
        """
        from dicomd.storage.part10 import scanHead

        for transferSyntax, encoded in _encodedVariants():
            sequence = encoded.index(b"\x08\x00\x40\x11")  # ReferencedImageSequence
            self.assertIsNone(scanHead(encoded[: sequence + 30], transferSyntax, False))
            self.assertIsNone(scanHead(encoded[: sequence + 30], transferSyntax, True))
            withoutPixels = encoded[: encoded.index(b"\xe0\x7f\x10\x00")]
            self.assertIsNone(scanHead(withoutPixels, transferSyntax, False))
            self.assertIsNotNone(scanHead(withoutPixels, transferSyntax, True))

    def test_otherEncodingsReadByPydicom(self):
        """
        Big endian is read by pydicom; a deflated data set is left to the file (None).
        """
        from dicomd.storage.part10 import readHead, scanHead

        dataset = makeDataset(rows=8, columns=8)
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_dataset

        fp = DicomBytesIO()
        fp.is_little_endian = False
        fp.is_implicit_VR = False
        write_dataset(fp, dataset)
        bigEndian = fp.getvalue()
        self.assertSameAttributes(
            scanHead(bigEndian, "1.2.840.10008.1.2.2", True), readHead(bigEndian, "1.2.840.10008.1.2.2", True)
        )
        self.assertIsNone(scanHead(b"\x78\x9c", "1.2.840.10008.1.2.1.99", True))

    def test_deflatedHead(self):
        """
        readDeflatedHead reads a deflated data set's attributes as scanHead reads the inflated ones, however the compressed bytes are cut, inflating no more than it needs: a data set whose pixel data inflates to 256 MiB is read from its first kilobytes.
        """
        import zlib

        from dicomd.storage.part10 import readDeflatedHead, scanHead

        transferSyntax, encoded = _encodedVariants()[2]
        self.assertEqual(transferSyntax, ExplicitVRLittleEndian)
        pixelData = encoded.index(b"\xe0\x7f\x10\x00")
        header = encoded[:pixelData] + struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 256 << 20)
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(header)
        zeros = bytes(1 << 20)
        data += b"".join(compressor.compress(zeros) for _ in range(256)) + compressor.flush()
        expected = scanHead(encoded, transferSyntax, True)
        consumed = []

        def pieces(size):
            for offset in range(0, len(data), size):
                consumed.append(size)
                yield data[offset : offset + size]

        for size in (1, 7, 4096, len(data)):
            del consumed[:]
            self.assertSameAttributes(readDeflatedHead(pieces(size)), expected)
            self.assertLessEqual(sum(consumed), max(size, 64 << 10))

    def test_deflatedHeadBounded(self):
        """
        readDeflatedHead inflates at most MAXIMUM_INFLATED_HEAD bytes: the attributes before an element that runs past it are returned (those after it are not read), and a stream that is not deflate gives no attributes.
        """
        import zlib

        from dicomd.storage.part10 import MAXIMUM_INFLATED_HEAD, readDeflatedHead

        first = struct.pack("<HH2sH", 0x0008, 0x0016, b"UI", 4) + b"1.2\0"
        big = struct.pack("<HH2sHL", 0x0009, 0x1000, b"OB", 0, 1 << 30)
        after = struct.pack("<HH2sH", 0x0020, 0x000D, b"UI", 4) + b"1.3\0"
        compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
        inflated = []

        def pieces():
            yield compressor.compress(first + big)
            for _ in range(1024):
                inflated.append(1 << 20)
                yield compressor.compress(bytes(1 << 20))
            yield compressor.compress(after) + compressor.flush()

        attributes = readDeflatedHead(pieces())
        self.assertEqual(sorted(attributes.keys()), [0x00080016])
        self.assertLessEqual(sum(inflated), MAXIMUM_INFLATED_HEAD + (2 << 20))
        self.assertEqual(list(readDeflatedHead(iter([b"\xff" * 100]))), [])

    def test_inflateLimit(self):
        """
        inflate gives up with ValueError as soon as the output passes its limit, and on data that is not deflated.
        """
        import zlib

        from dicomd.dataset import inflate

        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(bytes(64 << 20)) + compressor.flush()
        self.assertEqual(inflate(data, 64 << 20), bytes(64 << 20))
        with self.assertRaises(ValueError) as raised:
            inflate(data, 1 << 20)
        self.assertIn("more than 1048576 bytes", str(raised.exception))
        self.assertRaises(ValueError, inflate, b"\xff" * 10, 100)

    def test_isValidUID(self):
        """
        A UID is digits and dots, at most 64 characters, with no empty component (PS3.5 9.1); leading zeros are tolerated.
        """
        from dicomd.dataset import isValidUID

        for good in ("1", "1.2.840.10008.5.1.4.1.1.2", "1.2.03", "1." + "2" * 62):
            self.assertTrue(isValidUID(good), good)
        for bad in ("", "1.", ".1", "1..2", "1.2;$(touch PWN3)", "../../x", "1.2 ", "1/2", "1.2\n", "1." + "2" * 63, "\u0661.2"):
            self.assertFalse(isValidUID(bad), bad)

    def test_uidValue(self):
        """
        uidValue reads a UI element without its padding, raw or decoded, and gives "" for a missing one.
        """
        from dicomd.storage.part10 import scanHead, uidValue

        transferSyntax, encoded = _encodedVariants()[1]
        scanned = scanHead(encoded, transferSyntax, True)
        uid = uidValue(scanned, "SOPInstanceUID", 0x00080018)
        # Looking at the element decodes it; uidValue reads it either way.
        self.assertEqual(uid, str(scanned.SOPInstanceUID))
        self.assertEqual(uidValue(scanned, "SOPInstanceUID", 0x00080018), uid)
        self.assertEqual(uidValue(scanned, "StorageMediaFileSetUID", 0x00880140), "")


class LazyAttributesTests(SynchronousTestCase):
    """
    L{walkHead} finds the attributes before the pixel data and leaves
    making them for later: a L{ReceivedInstance} makes them from its scan
    the first time they are read.
    """

    def received(self, **kwargs):
        from dicomd.storage.scp import ReceivedInstance

        return ReceivedInstance("1.2.3", "1.2.3.4", "1.2.840.10008.1.2", "CALLING", "CALLED", "127.0.0.1", 0.0, **kwargs)

    def test_walkThenDataset(self):
        """
        A walk made into a data set gives scanHead's attributes; uids reads UI values without padding, in one pass, and leaves out what the data set lacks.
        """
        from dicomd.storage.part10 import HeadScan, scanHead, walkHead

        for transferSyntax, encoded in _encodedVariants():
            scan = walkHead(encoded, transferSyntax, True)
            self.assertIsInstance(scan, HeadScan)
            expected = scanHead(encoded, transferSyntax, True)
            made = scan.dataset()
            self.assertEqual([(e.tag, e.VR, e.value) for e in made], [(e.tag, e.VR, e.value) for e in expected])
            uids = scan.uids(frozenset([0x00080018, 0x0020000D, 0x00880140]))
            self.assertEqual(uids, {0x00080018: str(expected.SOPInstanceUID), 0x0020000D: str(expected.StudyInstanceUID)})
            self.assertIsNone(walkHead(encoded[:200], transferSyntax, False))

    def test_pixelDataNotKept(self):
        """
        A scan keeps the attributes' bytes, not the pixel data the head held after them.
        """
        from dicomd.storage.part10 import walkHead

        transferSyntax, encoded = _encodedVariants()[1]
        head = encoded + bytes(65536)
        scan = walkHead(head, transferSyntax, True)
        self.assertLess(len(scan.data), len(encoded))
        self.assertEqual(scan.data, head[: len(scan.data)])
        self.assertEqual(str(scan.dataset().PatientName), str(walkHead(encoded, transferSyntax, True).dataset().PatientName))

    def test_noViewKept(self):
        """
        A head given as a view (of a receiving buffer, say) is read where it is, and the scan keeps bytes of its own, not the view.
        """
        from dicomd.storage.part10 import walkHead

        transferSyntax, encoded = _encodedVariants()[1]
        buffer = bytearray(encoded)
        scan = walkHead(memoryview(buffer), transferSyntax, True)
        self.assertIs(type(scan.data), bytes)
        buffer[:] = bytes(len(buffer))
        self.assertEqual(str(scan.dataset().PatientName), str(walkHead(encoded, transferSyntax, True).dataset().PatientName))

    def test_madeFromTheScanOnce(self):
        """
        The attributes are made from the scan when first read, once: the scan is dropped, and the same data set comes back every time.  The Study Instance UID is read from the scan without making them.
        """
        from dicomd.storage.part10 import walkHead

        transferSyntax, encoded = _encodedVariants()[1]
        scan = walkHead(encoded, transferSyntax, True)
        received = self.received(scan=scan)
        self.assertEqual(received.studyInstanceUID, scan.uids(frozenset([0x0020000D]))[0x0020000D])
        self.assertIs(received.scan, scan)
        attributes = received.attributes
        self.assertIsNone(received.scan)
        self.assertIs(received.attributes, attributes)
        self.assertEqual(str(attributes.StudyInstanceUID), received.studyInstanceUID)

    def test_madeOnceAcrossThreads(self):
        """
        Threads that read the attributes at once all get the one data set made.
        """
        import threading

        from dicomd.storage.part10 import walkHead

        transferSyntax, encoded = _encodedVariants()[1]
        received = self.received(scan=walkHead(encoded, transferSyntax, True))
        seen = []
        start = threading.Barrier(4)

        def read():
            start.wait()
            seen.append(received.attributes)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(len({id(each) for each in seen}), 1)

    def test_defaultAndSet(self):
        """
        Without a scan each instance has an empty data set of its own; attributes set are the ones read back.
        """
        from dicomd.dataset import newDataset

        first, second = self.received(), self.received()
        self.assertEqual(len(first.attributes), 0)
        self.assertIsNot(first.attributes, second.attributes)
        attributes = newDataset()
        attributes.PatientID = "P1"
        third = self.received(attributes=attributes)
        self.assertIs(third.attributes, attributes)
        self.assertEqual(third, self.received(attributes=attributes))


class SpoolFileTests(SynchronousTestCase):
    """
    L{SpoolFile} and L{SpareFiles}: a spool that starts from an unnamed
    spare gets a name only when complete, and leaves nothing when
    discarded.
    """

    def setUp(self):
        self.directory = makeDirectory(self)
        self.reactor = _Reactor()
        self.pool = _HeldThreadPool(immediate=True)
        self.spares = _spool.SpareFiles(self.directory, self.pool)
        self.addCleanup(self.spares.close)

    def spool(self, spare=None, reserved=0) -> "_spool.SpoolFile":
        return _spool.SpoolFile(
            os.path.join(self.directory, "object.part"),
            b"HEAD",
            reactor=self.reactor,
            threadpool=self.pool,
            pause=lambda: None,
            resume=lambda: None,
            spare=spare,
            reserved=reserved,
        )

    def take(self) -> int:
        fd, _ = self.spares.take()
        if fd is None:
            fd, _ = self.spares.take()
        self.assertIsNotNone(fd, "no O_TMPFILE spare on this system")
        return fd

    def test_spareLinkedStraightToItsFinalName(self):
        """
        A spool started from a spare is linked to its final name when complete, and never had a temporary one.
        """
        self.assertEqual(os.listdir(self.directory), [])
        spool = self.spool(self.take())
        spool.write(b"data" * 1000)
        final = os.path.join(self.directory, "final")
        namesWhenComplete = []

        def settle():
            namesWhenComplete.append(sorted(os.listdir(self.directory)))
            spool.moveInThread(final)

        self.successResultOf(spool.close(settle))
        self.assertEqual(namesWhenComplete, [[]])
        self.assertEqual(sorted(os.listdir(self.directory)), ["final"])
        with open(final, "rb") as f:
            self.assertEqual(f.read(), b"HEAD" + b"data" * 1000)

    def test_existingFileReplaced(self):
        """
        A file already under the final name is replaced atomically, through the temporary name.
        """
        final = os.path.join(self.directory, "final")
        with open(final, "wb") as f:
            f.write(b"old")
        spool = self.spool(self.take())
        spool.write(b"new")
        self.successResultOf(spool.close(lambda: spool.moveInThread(final)))
        self.assertEqual(sorted(os.listdir(self.directory)), ["final"])
        with open(final, "rb") as f:
            self.assertEqual(f.read(), b"HEADnew")

    def test_discardedSpareLeavesNothing(self):
        """
        A spool started from a spare and discarded leaves no file and closes its descriptor.
        """
        fd = self.take()
        spool = self.spool(fd)
        spool.write(b"x" * (2 * MB))
        self.successResultOf(spool.discard())
        self.assertEqual(os.listdir(self.directory), [])
        self.assertRaises(OSError, os.fstat, fd)

    def test_withoutSpareFileCreatedByName(self):
        """
        Without a spare the spool creates its temporary file, which a failed close leaves for the caller to remove.
        """
        spool = self.spool()
        spool.write(b"abc")
        self.successResultOf(spool.close(lambda: None))
        with open(os.path.join(self.directory, "object.part"), "rb") as f:
            self.assertEqual(f.read(), b"HEADabc")
        self.successResultOf(spool.discard())
        self.assertEqual(os.listdir(self.directory), [])

    def test_discardRemovesNameBeforeClosing(self):
        """
        A discarded spool's name is gone before its descriptor is closed:
        once the daemon no longer holds the file open, it is no longer
        there.
        """
        spool = self.spool()
        spool.write(b"x" * (2 * MB))
        path = os.path.join(self.directory, "object.part")
        existsAtClose = []
        close = _spool.SpoolFile._closeInThread

        def recordingClose(spoolFile):
            if spoolFile._fd is not None:
                existsAtClose.append(os.path.exists(path))
            close(spoolFile)

        self.patch(_spool.SpoolFile, "_closeInThread", recordingClose)
        self.assertTrue(os.path.exists(path))
        self.successResultOf(spool.discard())
        self.assertEqual(existsAtClose, [False])
        self.assertEqual(os.listdir(self.directory), [])

    def test_sparesRefilledWhenHalfAreTaken(self):
        """
        Taking spares leaves the pool alone while half or more are left;
        the take that leaves fewer has one worker-thread job fill it again.
        """
        pool = _HeldThreadPool()
        spares = _spool.SpareFiles(self.directory, pool, size=4, inline=False)
        self.addCleanup(spares.close)
        self.assertEqual(spares.take(), (None, 0))
        self.assertEqual(len(pool.held), 1)
        pool.runAll()
        taken = [spares.take()[0], spares.take()[0]]
        self.assertEqual(pool.held, [])
        taken.append(spares.take()[0])
        self.assertEqual(len(pool.held), 1)
        pool.runAll()
        self.assertEqual(len(spares._spares), 4)
        self.assertNotIn(None, taken)
        for fd in taken:
            os.close(fd)


    def test_sparesMadeInlineWhenAsked(self):
        """
        Spares made inline (as on a file system in memory) are created by
        the take that leaves fewer than half, with no worker-thread job.
        """
        pool = _HeldThreadPool()
        spares = _spool.SpareFiles(self.directory, pool, size=4, inline=True)
        self.addCleanup(spares.close)
        self.assertEqual(spares.take(), (None, 0))
        self.assertEqual(pool.held, [])
        self.assertEqual(len(spares._spares), 4)
        taken = [spares.take()[0] for _ in range(3)]
        self.assertNotIn(None, taken)
        self.assertEqual(pool.held, [])
        self.assertEqual(len(spares._spares), 4)
        for fd in taken:
            os.close(fd)

    def test_sparesInlineOnlyInMemory(self):
        """
        By default spares are made inline on a file system in memory only.
        """
        self.patch(_spool, "inMemoryFileSystem", lambda path: path == "/in/memory")
        self.assertTrue(_spool.SpareFiles("/in/memory", self.pool).inline)
        self.assertFalse(_spool.SpareFiles("/on/disk", self.pool).inline)

    def reservingSpares(self, **keywords):
        spares = _spool.SpareFiles(self.directory, self.pool, size=4, inline=True, **keywords)
        self.addCleanup(spares.close)
        spares.refill()
        self.assertTrue(spares.supported, "no O_TMPFILE spare on this system")
        return spares

    def test_reserveAllocatesTheNextSpare(self):
        """
        reserve allocates the whole pages of an object of the given size in the next spare without any, which take then hands out with that size; the spare after it has none.
        """
        spares = self.reservingSpares()
        page = mmap.PAGESIZE
        spares.reserve(3 * page + 100)
        spares.reserve(page - 1)
        fd, reserved = spares.take()
        self.assertEqual(reserved, 3 * page)
        self.assertEqual(os.fstat(fd).st_size, 3 * page)
        self.assertGreaterEqual(os.fstat(fd).st_blocks * 512, 3 * page)
        os.close(fd)
        fd, reserved = spares.take()
        self.assertEqual((reserved, os.fstat(fd).st_size), (0, 0))
        os.close(fd)

    def test_reserveOnlyInMemoryAndForSmallObjects(self):
        """
        reserve allocates nothing where spares are not made inline (on disk), nor for an object larger than its limit.
        """
        spares = self.reservingSpares(reserveLimit=8 * mmap.PAGESIZE)
        spares.reserve(9 * mmap.PAGESIZE)
        onDisk = _spool.SpareFiles(self.directory, self.pool, size=4, inline=False)
        self.addCleanup(onDisk.close)
        onDisk.refill()
        onDisk.reserve(mmap.PAGESIZE)
        for pool in spares, onDisk:
            fd, reserved = pool.take()
            self.assertEqual((reserved, os.fstat(fd).st_size), (0, 0))
            os.close(fd)

    def storedThroughReservedSpare(self, reserve: int, data: bytes) -> bytes:
        """
        Write C{data} through a spool started from a spare reserved for
        C{reserve} bytes, move it to its final name, and read it back.
        """
        spares = self.reservingSpares()
        spares.reserve(reserve)
        fd, reserved = spares.take()
        spool = self.spool(fd, reserved)
        spool.write(data)
        final = os.path.join(self.directory, "final")
        self.successResultOf(spool.close(lambda: spool.moveInThread(final)))
        with open(final, "rb") as f:
            return f.read()

    def test_spareLeftOutWhenItCannotBeAllocated(self):
        """
        A spare whose pages cannot be allocated (a full file system) leaves the pool, so that no spare of unknown size is handed out.
        """
        spares = self.reservingSpares()
        count = len(spares._spares)

        def full(fd, offset, length):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.patch(_spool.os, "posix_fallocate", full)
        spares.reserve(mmap.PAGESIZE)
        self.assertEqual(len(spares._spares), count - 1)
        fd, reserved = spares.take()
        self.assertEqual((reserved, os.fstat(fd).st_size), (0, 0))
        os.close(fd)

    def test_smallerFileCutBack(self):
        """
        A file written into a spare allocated for a larger one is cut back to what was written: its bytes and nothing after them.
        """
        self.assertEqual(self.storedThroughReservedSpare(8 * mmap.PAGESIZE, b"data" * 1000), b"HEAD" + b"data" * 1000)

    def test_largerFileWrittenWhole(self):
        """
        A file larger than what its spare has allocated is written whole.
        """
        self.assertEqual(self.storedThroughReservedSpare(mmap.PAGESIZE, b"data" * 3000), b"HEAD" + b"data" * 3000)


class InMemoryFileSystemTests(SynchronousTestCase):
    """
    L{_spool.inMemoryFileSystem} reads a directory's file system type from
    the mount table of its device.
    """

    def mountInfo(self, fileSystem: str, device=None) -> str:
        if device is None:
            device = os.stat(".").st_dev
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("22 1 0:99 / /elsewhere rw,relatime shared:1 - ext4 /dev/vdb rw\n")
            f.write(
                "23 1 %d:%d / /here rw,nosuid,nodev shared:2 - %s none rw\n"
                % (os.major(device), os.minor(device), fileSystem)
            )
        return path

    def test_tmpfs(self):
        self.assertTrue(_spool.inMemoryFileSystem(".", self.mountInfo("tmpfs")))

    def test_ramfs(self):
        self.assertTrue(_spool.inMemoryFileSystem(".", self.mountInfo("ramfs")))

    def test_disk(self):
        self.assertFalse(_spool.inMemoryFileSystem(".", self.mountInfo("ext4")))

    def test_deviceNotListed(self):
        """
        Only the mount of the directory's own device counts.
        """
        other = os.makedev(254, 254)
        self.assertFalse(_spool.inMemoryFileSystem(".", self.mountInfo("tmpfs", other)))

    def test_noMountTable(self):
        """
        Where there is no mount table (not Linux), nothing is in memory.
        """
        self.assertFalse(_spool.inMemoryFileSystem(".", os.path.join(self.mktemp(), "mountinfo")))

    def test_noDirectory(self):
        self.assertFalse(_spool.inMemoryFileSystem(self.mktemp()))


class InlineWritesTests(SynchronousTestCase):
    """
    L{InlineWrites}: small files are finished on the reactor thread, until
    several of them are slow to finish.
    """

    def test_smallFilesOnly(self):
        """
        A file up to the limit is admitted, a bigger one is not.
        """
        inline = _spool.InlineWrites(limit=1000)
        self.assertTrue(inline.admits(1000))
        self.assertFalse(inline.admits(1001))

    def test_defaultLimit(self):
        """
        By default a file is finished inline up to the size at which it
        would have started a write job of its own: a 512x512 16-bit image
        with its attributes (525 KB) is, a 1 MiB fragment more is not.
        """
        inline = _spool.InlineWrites()
        self.assertTrue(inline.admits(525 * 1000))
        self.assertTrue(inline.admits(_spool.FLUSH_SIZE))
        self.assertFalse(inline.admits(_spool.FLUSH_SIZE + 1))

    def test_slowFilesSendFilesToThreadsForAWhile(self):
        """
        After C{strikes} files took C{slow} seconds or more within
        C{window} seconds, none is admitted for C{backoff} seconds; quick
        ones change nothing.
        """
        clock = Clock()
        inline = _spool.InlineWrites(slow=0.005, strikes=3, window=1.0, backoff=10, clock=clock.seconds)
        inline.took(0.004)
        inline.took(0.005)
        inline.took(0.005)
        self.assertTrue(inline.admits(10))
        clock.advance(1.0)
        inline.took(0.006)
        self.assertFalse(inline.admits(10))
        clock.advance(9.9)
        self.assertFalse(inline.admits(10))
        clock.advance(0.1)
        self.assertTrue(inline.admits(10))

    def test_slowFilesBetweenQuickOnesChangeNothing(self):
        """
        Slow files with quick ones between them, as a busy machine's
        other processes make them by holding the cores, do not send files
        to the threads, however close together: only C{strikes} slow
        files in a row do, as a disk that stalls makes them.
        """
        clock = Clock()
        inline = _spool.InlineWrites(slow=0.005, strikes=3, window=1.0, backoff=10, clock=clock.seconds)
        for _ in range(10):
            inline.took(0.02)
            inline.took(0.02)
            inline.took(0.0001)
            clock.advance(0.01)
            self.assertTrue(inline.admits(10))
        inline.took(0.02)
        inline.took(0.02)
        inline.took(0.02)
        self.assertFalse(inline.admits(10))

    def test_slowFilesFarApartChangeNothing(self):
        """
        Slow files further apart than C{window} seconds, as the reactor
        thread's occasional wait for the interpreter lock makes them, do
        not send files to the threads.
        """
        clock = Clock()
        inline = _spool.InlineWrites(slow=0.005, strikes=3, window=1.0, backoff=10, clock=clock.seconds)
        for _ in range(10):
            inline.took(0.017)
            self.assertTrue(inline.admits(10))
            clock.advance(0.6)


class InlineSpoolTests(SynchronousTestCase):
    """
    A L{SpoolFile} with L{InlineWrites} finishes a small file without a
    worker thread; its thread pool here runs nothing unless told to.
    """

    def setUp(self):
        self.directory = makeDirectory(self)
        self.reactor = _Reactor()
        self.pool = _HeldThreadPool()

    def spool(self, inline) -> "_spool.SpoolFile":
        return _spool.SpoolFile(
            os.path.join(self.directory, "object.part"),
            b"HEAD",
            reactor=self.reactor,
            threadpool=self.pool,
            pause=lambda: None,
            resume=lambda: None,
            inline=inline,
        )

    def test_smallFileFinishedAtOnce(self):
        """
        A small file is written, named and settled before L{SpoolFile.close} returns, without a worker thread.
        """
        spool = self.spool(_spool.InlineWrites(limit=1000))
        spool.write(b"data" * 10)
        closed = spool.close(lambda: sorted(os.listdir(self.directory)))
        self.assertEqual(self.successResultOf(closed), ["object.part"])
        with open(os.path.join(self.directory, "object.part"), "rb") as f:
            self.assertEqual(f.read(), b"HEAD" + b"data" * 10)
        self.assertEqual(self.pool.held, [])

    def test_largeFileInAThread(self):
        """
        A file above the limit waits for its worker-thread job.
        """
        spool = self.spool(_spool.InlineWrites(limit=10))
        spool.write(b"data" * 10)
        closed = spool.close(lambda: "settled")
        self.assertNoResult(closed)
        self.pool.runAll()
        self.assertEqual(self.successResultOf(closed), "settled")

    def test_failureReported(self):
        """
        A file that cannot be written inline fails the close, as a job would.
        """
        spool = self.spool(_spool.InlineWrites())
        spool.path = os.path.join(self.directory, "missing", "object.part")
        spool.write(b"data")
        self.failureResultOf(spool.close(lambda: None), FileNotFoundError)

    def test_closeHere(self):
        """
        closesHere says whether a file may be finished on this thread, and closeHere finishes it there without a Deferred, returning what then returns.
        """
        spool = self.spool(_spool.InlineWrites(limit=1000))
        spool.write(b"data" * 10)
        self.assertTrue(spool.closesHere())
        self.assertEqual(spool.closeHere(lambda: sorted(os.listdir(self.directory))), ["object.part"])
        with open(os.path.join(self.directory, "object.part"), "rb") as f:
            self.assertEqual(f.read(), b"HEAD" + b"data" * 10)
        self.assertEqual(self.pool.held, [])
        large = self.spool(_spool.InlineWrites(limit=10))
        large.write(b"data" * 10)
        self.assertFalse(large.closesHere())
        self.assertFalse(self.spool(None).closesHere())

    def test_thenLetGo(self):
        """
        Once the last job has run C{then}, the spool holds it no more, nor what it holds (a view of a receiving buffer would keep that buffer from being used again).
        """
        import weakref

        class Then:
            def __call__(self):
                return "settled"

        for inline in (_spool.InlineWrites(), None):
            spool = self.spool(inline)
            spool.write(b"data")
            then = Then()
            gone = weakref.ref(then)
            closed = spool.close(then)
            del then
            self.pool.runAll()
            self.assertEqual(self.successResultOf(closed), "settled")
            self.assertIsNone(gone())
            os.unlink(spool.path)

    def test_closeHereRaises(self):
        """
        closeHere raises the error that stopped the file, which then takes no more fragments and fails a later close with it, and keeps no descriptor open.
        """
        spool = self.spool(_spool.InlineWrites())
        spool.path = os.path.join(self.directory, "missing", "object.part")
        spool.write(b"data")
        self.assertRaises(FileNotFoundError, spool.closeHere, lambda: None)
        self.assertIsInstance(spool.error, FileNotFoundError)
        self.assertIsNone(spool._fd)
        self.assertIsNone(spool._then)
        self.failureResultOf(spool.close(), FileNotFoundError)

        failing = self.spool(_spool.InlineWrites())
        failing.write(b"data")

        def refuse():
            raise ValueError("not this one")

        self.assertRaises(ValueError, failing.closeHere, refuse)
        self.assertIsNone(failing._fd)

    def test_storedAndAnsweredWithoutAThread(self):
        """
        Through the acceptor, with no index, a small object is stored and its C-STORE-RSP sent while every worker-thread job is still held.
        """
        harness = AcceptorHarness(self, self.pool)
        self.pool.held.clear()
        dataset = makeDataset(rows=64, columns=64)
        encoded = harness.storeWhole(dataset)
        [response] = harness.responses()
        self.assertEqual(response.status, _status.SUCCESS)
        [stored] = storedFiles(harness.output)
        with open(stored, "rb") as f:
            f.seek(dataSetOffset(stored))
            self.assertEqual(f.read(), encoded)


class ReceiveBufferTests(SynchronousTestCase):
    """
    The Upper Layer's framing and the transport adapter on the receive
    path.
    """

    def test_pduAcrossChunksKeptAsReceivedUntilComplete(self):
        """
        The chunks of a PDU that spans several reads are kept as they came (not copied) until its last byte, then joined once.
        """
        from dicomd.ul.provider import PDataIndication, ULProvider

        provider = ULProvider(isRequestor=False, maximumLength=131072)
        provider.state = State.Sta6
        data = os.urandom(100000)
        stream = b"".join(bytes(piece) for piece in fragment(1, False, data, maximumFragmentLength(131072)))
        chunks = [stream[i : i + 10000] for i in range(0, len(stream), 10000)]
        for index, chunk in enumerate(chunks[:-1]):
            self.assertEqual(receive(provider, chunk), [])
            if index:
                self.assertIs(provider._buffer[-1], chunk)
        [indication] = receive(provider, chunks[-1])
        self.assertIsInstance(indication, PDataIndication)
        self.assertEqual(bytes(indication.pdu.values[0].data), data)
        self.assertEqual(provider._buffer, [])

    def test_readSizeAndQuickAck(self):
        """
        A TCP transport reads 256 KiB at a time, and every read renews TCP_QUICKACK on its socket (where the system has it).
        """
        import socket

        from dicomd.net.sockets import READ_SIZE

        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(tcp.close)

        class TCPTransport(StringTransport):
            bufferSize = 65536

            def getHandle(self):
                return tcp

        reactor = _Reactor()
        factory = AcceptorFactory(ApplicationEntity("STORESCP", storagePolicy([ExplicitVRLittleEndian]), {}), reactor=reactor)
        protocol = factory.buildProtocol(PEER)
        transport = TCPTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        self.assertEqual(transport.bufferSize, READ_SIZE)
        self.assertEqual(READ_SIZE, 256 << 10)
        if getattr(socket, "TCP_QUICKACK", None) is None:
            self.assertIsNone(protocol._quickAckSocket)
            return
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
        protocol.dataReceived(b"\x07\x00")
        self.assertEqual(tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK), 1)
