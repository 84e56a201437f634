"""
Hostile peers (issue 7, part 4): the real C{twistd -n dicomd}, attacked
through real sockets by peers that break the rules on purpose, and what it
does about each.

  - a connection that never sends an A-ASSOCIATE-RQ, or only half of one,
    is closed by the ARTIM timer without a PDU (PS3.8 Sta2 + Evt18: AA-2);
  - a peer that stops in the middle of a PDU inside an association gets an
    A-ABORT from the idle timeout and is disconnected;
  - a thousand idle connections: the oldest that sent no A-ASSOCIATE-RQ are
    closed beyond the pending-connection limit, so C-ECHO gets through
    while the rest sit open; associations beyond C{--max-associations} are
    rejected (transient, local limit exceeded);
  - a PDU announcing 4 GB is answered with an A-ABORT (service provider,
    invalid PDU parameter value) without reading or allocating it, also
    with C{--max-pdu 0};
  - command sets with absurd lengths: a wrong Command Group Length value is
    ignored, as L{dicomd.dimse.commands} documents; elements running past
    the end, and oversized command sets, abort the association;
  - a C-STORE data set whose undefined-length sequence never ends is
    refused with 0xC000 (cannot understand) or, while its items keep
    coming and then stop, aborted by the idle timeout; nothing is stored
    either way;
  - a C-STORE data set that stops halfway is aborted by the DIMSE timeout
    (C{--dimse-timeout}, storescp's C{-td}), long before the idle timeout,
    and nothing of it is stored;
  - SOP Instance UIDs, Patient's Names and Study Instance UIDs built to
    escape the output directory are stored under sanitised names inside
    it, with C{--sort-on-patientname} (storescp's C{-sp}),
    C{--sort-on-study-uid} (C{-su}) and C{--flat};
  - calling and called AE titles with shell metacharacters reach
    C{--exec-on-reception} and C{--exec-on-eostudy} commands as single
    arguments, never as code.
  - a peer that pipelines requests and never reads the responses is no
    longer read once its responses fill the write buffer, so the daemon's
    memory stays flat and others are still served.

The same faults are proven without a network in L{tests.test_net_protocol}
(timers), L{tests.test_fuzz} (codecs), L{tests.test_storage_naming} and
L{tests.test_actions}; here the daemon process proves them end to end and
then still answers DCMTK's C{echoscu}.  Nothing sleeps: every wait polls.
"""

import functools
import os
import re
import resource
import shlex
import socket
import struct
import time
import warnings
import zlib

import pydicom
from pydicom.uid import ExplicitVRLittleEndian
from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.python import log
from twisted.trial import unittest

from dicomd.dimse import status as _status
from dicomd.dimse.commands import CEchoRQ, CFindRQ, CStoreRQ, decodeCommand, encodeCommand
from dicomd.dimse.pdv import COMMAND, LAST, fragment
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
from dicomd.net.requestor import connect
from dicomd.ul.negotiation import proposePresentationContexts
from dicomd.ul.pdu import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_RELEASE_RP,
    ABORT_REASON_INVALID_PDU_PARAMETER_VALUE,
    ABORT_REASON_NOT_SPECIFIED,
    ABORT_SOURCE_SERVICE_PROVIDER,
    ABORT_SOURCE_SERVICE_USER,
    P_DATA_TF,
    REJECT_REASON_LOCAL_LIMIT_EXCEEDED,
    REJECT_RESULT_TRANSIENT,
    REJECT_SOURCE_SERVICE_PROVIDER_PRESENTATION,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRQ,
    PDataTF,
    UserInformation,
)
from tests.dicomfiles import CT_IMAGE_STORAGE, encodedDataSet, makeDataset
from tests.storagearea import finalFiles, indexedInstances, openDataFiles, temporaryFiles, waitForIndexed
from tests.support import (
    daemonListening,
    LOCALHOST,
    dcmtk,
    dcmtkEnvironment,
    deferLater,
    dicomdArgv,
    makeDirectory,
    pythonEnvironment,
    runCommand,
    startDaemon,
    startPeer,
    twistdArgv,
    waitUntil,
)

#: What the requestors here propose: Verification and CT Image Storage.
CONTEXTS = ((VERIFICATION_SOP_CLASS, [ExplicitVRLittleEndian]), (CT_IMAGE_STORAGE, [ExplicitVRLittleEndian]))


# -- a peer that speaks raw bytes ---------------------------------------------------


class RawPeer(protocol.Protocol):
    """
    A client that writes what the test says and records what it gets.

    @ivar received: every byte the daemon sent.
    @ivar open: whether the connection is still open.
    @ivar weClosed: whether this side closed it.
    @ivar madeAt: C{time.monotonic()} when it opened.
    @ivar lastDataAt: C{time.monotonic()} when bytes last arrived.
    @ivar lostAt: C{time.monotonic()} when it closed.
    @ivar reason: the L{Failure} it closed with.
    """

    def __init__(self):
        self.received = bytearray()
        self.open = False
        self.weClosed = False
        self.madeAt = self.lastDataAt = self.lostAt = None
        self.reason = None
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.open = True
        self.madeAt = time.monotonic()

    def dataReceived(self, data):
        self.received += data
        self.lastDataAt = time.monotonic()

    def connectionLost(self, reason):
        self.open = False
        self.lostAt = time.monotonic()
        self.reason = reason
        self.lost.callback(self)

    @property
    def closedByDaemon(self) -> bool:
        return not self.open and not self.weClosed

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self) -> defer.Deferred:
        if self.open:
            self.weClosed = True
            self.transport.abortConnection()
        return self.lost

    def pdus(self) -> list:
        """
        The whole PDUs received so far, as C{(type, body)}.
        """
        found = []
        pos = 0
        data = bytes(self.received)
        while len(data) - pos >= 6:
            pduType, _, length = struct.unpack_from(">BBL", data, pos)
            if len(data) - pos - 6 < length:
                break
            found.append((pduType, data[pos + 6 : pos + 6 + length]))
            pos += 6 + length
        return found


@defer.inlineCallbacks
def openRaw(testCase, port: int):
    """
    A L{RawPeer} connected to C{127.0.0.1:port}; the test's cleanup
    closes it.
    """
    from twisted.internet import reactor

    peer = yield TCP4ClientEndpoint(reactor, LOCALHOST, port, timeout=30).connect(protocol.Factory.forProtocol(RawPeer))
    testCase.addCleanup(peer.close)
    return peer


def associateRequest(calling: str = "HOSTILE", contexts=CONTEXTS, maximumLength: int = 16384) -> bytes:
    return AAssociateRQ(
        "DICOMD",
        calling,
        proposePresentationContexts(contexts),
        UserInformation(maximumLength=maximumLength, implementationClassUID="1.2.826.0.1.3680043.9.7433.99"),
    ).encode()


def waitForPDUs(peer: RawPeer, count: int, timeout: float = 15.0) -> defer.Deferred:
    """
    Wait until C{count} whole PDUs have arrived or the connection closed.
    """
    return waitUntil(lambda: len(peer.pdus()) >= count or not peer.open, timeout=timeout, message="%d PDUs" % (count,))


@defer.inlineCallbacks
def associateRaw(testCase, port: int, calling: str = "HOSTILE"):
    """
    A L{RawPeer} with an established association.

    @return: C{(peer, {abstract syntax: accepted context ID})}.
    """
    peer = yield openRaw(testCase, port)
    peer.send(associateRequest(calling))
    yield waitForPDUs(peer, 1)
    [(pduType, body)] = peer.pdus()
    testCase.assertEqual(pduType, A_ASSOCIATE_AC, "association not accepted: %r" % (body,))
    accept = AAssociateAC.decode(body)
    proposed = {2 * index + 1: abstract for index, (abstract, _) in enumerate(CONTEXTS)}
    contexts = {proposed[c.contextID]: c.contextID for c in accept.presentationContexts if c.accepted}
    return peer, contexts


def abortsIn(pdus) -> list:
    """
    The C{(source, reason)} of each A-ABORT among C{pdus}.
    """
    return [(body[2], body[3]) for pduType, body in pdus if pduType == A_ABORT]


def commandsIn(pdus) -> list:
    """
    The command sets carried by the P-DATA-TF PDUs among C{pdus}, decoded.
    """
    commands, pieces = [], []
    for pduType, body in pdus:
        if pduType != P_DATA_TF:
            continue
        for pdv in PDataTF.decode(body).values:
            if pdv.isCommand:
                pieces.append(bytes(pdv.data))
                if pdv.isLast:
                    commands.append(decodeCommand(b"".join(pieces)))
                    pieces = []
    return commands


def pData(contextID: int, control: int, data: bytes) -> bytes:
    """
    One P-DATA-TF PDU with one PDV.
    """
    return b"".join(bytes(piece) for piece in fragment(contextID, bool(control & COMMAND), data, len(data) or 1, bool(control & LAST)))


# -- the daemon and its data ---------------------------------------------------------


@defer.inlineCallbacks
def assertEchoes(testCase, daemon):
    """
    DCMTK's C{echoscu} gets a C-ECHO through to the daemon.
    """
    result = yield runCommand([dcmtk("echoscu"), LOCALHOST, str(daemon.port)], env=dcmtkEnvironment(), timeout=60)
    testCase.assertEqual(result.exitCode, 0, result.describe() + daemon.describe())
    testCase.assertTrue(daemon.running, daemon.describe())


def residentMemory(pid: int) -> int:
    """
    A process's resident set size in bytes.
    """
    with open("/proc/%d/status" % (pid,)) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %d" % (pid,))


def allFiles(directory: str) -> list:
    """
    Every file (and symbolic link) under C{directory}, as real paths.
    """
    found = []
    for root, directories, files in os.walk(directory):
        found.extend(os.path.join(root, name) for name in files)
        found.extend(os.path.join(root, name) for name in directories if os.path.islink(os.path.join(root, name)))
    return sorted(found)


@defer.inlineCallbacks
def requestAssociation(port: int, calling: str = "HOSTILE", called: str = "DICOMD"):
    """
    An association from dicomd's own requestor.
    """
    from twisted.internet import reactor

    association = yield connect(
        TCP4ClientEndpoint(reactor, LOCALHOST, port),
        calledAETitle=called,
        callingAETitle=calling,
        presentationContexts=list(CONTEXTS),
        maximumLength=16384,
        reactor=reactor,
    )
    return association


def store(association, sopInstanceUID: str, encoded: bytes) -> defer.Deferred:
    """
    Send a C-STORE-RQ and its data set; fires with the response status.
    """
    context = association.contextFor(CT_IMAGE_STORAGE)
    request = CStoreRQ(affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID=sopInstanceUID)
    return association.request(context.contextID, request, encoded).addCallback(lambda result: result[0].status)


def hostileDataSet(sopInstanceUID: str, studyInstanceUID: str, **attributes) -> bytes:
    """
    A small CT image with these UIDs (and attributes), encoded; pydicom's
    warnings that they are not UIDs are the point, and silenced.
    """
    dataset = makeDataset(rows=8, columns=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dataset.SOPInstanceUID = sopInstanceUID
        dataset.StudyInstanceUID = studyInstanceUID
        for keyword, value in attributes.items():
            setattr(dataset, keyword, value)
        return encodedDataSet(dataset)


class HostileTestCase(unittest.TestCase):
    timeout = 120

    def assertNothingStored(self, data: str, daemon) -> None:
        """
        No file under a final name, no index row, nothing named in
        C{.incoming}, no file with data held open by the daemon.
        """
        self.assertEqual(finalFiles(data), [])
        self.assertEqual(indexedInstances(data), {})
        self.assertEqual(temporaryFiles(data), [])
        self.assertEqual(openDataFiles(daemon.transport.pid), [])


# -- 1, 2: silence -----------------------------------------------------------------------


class SilentPeerTests(HostileTestCase):
    """
    Connections that say nothing, or stop in the middle of a PDU.
    """

    @defer.inlineCallbacks
    def test_noAssociateRequestClosedByARTIM(self):
        """A connection that sends nothing, and one that sends half an A-ASSOCIATE-RQ, are closed by the ARTIM timer (1 s) without a PDU (Sta2 + Evt18: AA-2); echoscu is then served."""
        daemon = yield startDaemon(self, "--acse-timeout", "1", "--idle-timeout", "60")
        silent = yield openRaw(self, daemon.port)
        half = yield openRaw(self, daemon.port)
        request = associateRequest()
        half.send(request[: len(request) // 2])
        yield waitUntil(lambda: not silent.open and not half.open, timeout=20, message="ARTIM closes both")
        for peer in (silent, half):
            self.assertTrue(peer.closedByDaemon)
            self.assertEqual(bytes(peer.received), b"", "AA-2 closes without a PDU")
            self.assertTrue(peer.reason.check(error.ConnectionDone), peer.reason)
            # The ARTIM timer (1 s), not the idle timeout (60 s).
            self.assertGreaterEqual(peer.lostAt - peer.madeAt, 0.5)
            self.assertLess(peer.lostAt - peer.madeAt, 15)
        yield daemon.waitForOutput(r"ARTIM timer expired after 1(\.0)? s in Sta2(.|\n)*ARTIM timer expired after 1(\.0)? s in Sta2")
        yield assertEchoes(self, daemon)

    @defer.inlineCallbacks
    def test_halfPDUAbortedByIdleTimeout(self):
        """Inside an association, a peer that sends half a PDU header, or a P-DATA-TF header and half its body, and stops: after the idle timeout (1 s) the daemon sends A-ABORT (service user, PS3.8 AA-1 for a local A-ABORT request) and closes; echoscu is then served."""
        daemon = yield startDaemon(self, "--acse-timeout", "30", "--idle-timeout", "1")
        halfHeader, contexts = yield associateRaw(self, daemon.port, "HALFHEAD")
        halfBody, _ = yield associateRaw(self, daemon.port, "HALFBODY")
        echo = pData(contexts[VERIFICATION_SOP_CLASS], COMMAND | LAST, encodeCommand(CEchoRQ(messageID=1)))
        halfHeader.send(echo[:3])
        halfBody.send(echo[: len(echo) // 2])
        sent = time.monotonic()
        yield waitUntil(lambda: not halfHeader.open and not halfBody.open, timeout=20, message="idle timeout")
        for peer in (halfHeader, halfBody):
            pdus = peer.pdus()
            self.assertEqual([pduType for pduType, _ in pdus], [A_ASSOCIATE_AC, A_ABORT])
            self.assertEqual(abortsIn(pdus), [(ABORT_SOURCE_SERVICE_USER, ABORT_REASON_NOT_SPECIFIED)])
            self.assertTrue(peer.closedByDaemon)
            # The idle timeout (1 s), not the ARTIM timer (30 s).
            self.assertGreaterEqual(peer.lostAt - sent, 0.8)
            self.assertLess(peer.lostAt - sent, 15)
        # The daemon logs each association's end as its connection goes:
        # the peers may see both closes before the second line is out.
        yield waitUntil(lambda: daemon.output.count("aborted: idle timeout") == 2, timeout=10, message=daemon.output)
        yield assertEchoes(self, daemon)


# -- 3: a thousand idle connections --------------------------------------------------------


class ConnectionFloodTests(HostileTestCase):
    """
    A thousand connections opened and left idle.

    L{dicomd.net.acceptor.AcceptorFactory} keeps at most
    C{--max-pending-connections} (here 200; 256 by default) connections
    that have not sent an A-ASSOCIATE-RQ: one more closes the oldest of
    them.
    """

    CONNECTIONS = 1000
    PENDING = 200
    BATCH = 50
    LIMIT = 50

    def raiseDescriptorLimit(self, needed: int) -> None:
        """
        Raise our soft RLIMIT_NOFILE to the hard limit if it is below
        C{needed}; the daemon, our child, inherits it (it holds fewer: it
        closes what is beyond its pending limit as soon as it accepts it).
        """
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft >= needed:
            return
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise unittest.SkipTest("RLIMIT_NOFILE hard limit %d < %d" % (hard, needed))
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))

    @defer.inlineCallbacks
    def test_thousandIdleConnections(self):
        """Of 1000 idle connections the daemon closes the 800 oldest (pending limit 200) and echoscu gets through at once, closing one more; of 60 A-ASSOCIATE-RQs on the survivors 50 are accepted and 10 rejected (transient, local limit exceeded), as is echoscu; after 10 releases echoscu is served."""
        self.raiseDescriptorLimit(self.CONNECTIONS + 200)
        daemon = yield startDaemon(
            self,
            "--max-associations",
            str(self.LIMIT),
            "--max-associations-per-host",
            str(self.LIMIT),
            "--acse-timeout",
            "120",
            "--idle-timeout",
            "120",
            "--max-pending-connections",
            str(self.PENDING),
        )
        started = time.monotonic()
        peers = []
        for first in range(0, self.CONNECTIONS, self.BATCH):
            # In batches, so that the listen backlog never overflows and
            # the daemon accepts them in the order they were opened.
            batch = yield defer.gatherResults([openRaw(self, daemon.port) for _ in range(self.BATCH)])
            peers.extend(batch)
        evicted = self.CONNECTIONS - self.PENDING

        def closed():
            return [index for index, peer in enumerate(peers) if not peer.open]

        yield waitUntil(lambda: len(closed()) >= evicted, timeout=30, interval=0.05, message="eviction")
        self.assertEqual(len(closed()), evicted)
        # The oldest went: every connection of the first batches is closed,
        # every one of the last batches open (order within one batch is the
        # kernel's).
        cut = evicted - evicted % self.BATCH
        self.assertTrue(all(not peer.open for peer in peers[:cut]))
        self.assertTrue(all(peer.open for peer in peers[cut + self.BATCH :]))
        self.assertTrue(all(peer.closedByDaemon and peer.received == b"" for peer in peers[:cut]))

        # While 200 silent connections sit open, a real peer gets through.
        yield assertEchoes(self, daemon)
        yield waitUntil(lambda: len(closed()) == evicted + 1, timeout=10, message="echoscu's connection evicts one more")

        # Associations beyond the limit are rejected.
        requesting = peers[-60:]
        for peer in requesting:
            peer.send(associateRequest("FLOOD"))
        yield waitUntil(lambda: all(len(peer.pdus()) >= 1 or not peer.open for peer in requesting), timeout=30, message="answers")
        answers = [peer.pdus()[0][0] if peer.pdus() else None for peer in requesting]
        self.assertEqual(answers.count(A_ASSOCIATE_AC), self.LIMIT, answers)
        self.assertEqual(answers.count(A_ASSOCIATE_RJ), 60 - self.LIMIT, answers)
        for peer in requesting:
            pduType, body = peer.pdus()[0]
            if pduType == A_ASSOCIATE_RJ:
                rejection = AAssociateRJ.decode(body)
                self.assertEqual(
                    (rejection.result, rejection.source, rejection.reason),
                    (REJECT_RESULT_TRANSIENT, REJECT_SOURCE_SERVICE_PROVIDER_PRESENTATION, REJECT_REASON_LOCAL_LIMIT_EXCEEDED),
                )
        result = yield runCommand([dcmtk("echoscu"), LOCALHOST, str(daemon.port)], env=dcmtkEnvironment(), timeout=60)
        self.assertNotEqual(result.exitCode, 0, result.describe())
        self.assertIn("Rejected", result.output)

        # Released associations make room again.
        accepted = [peer for peer in requesting if peer.pdus()[0][0] == A_ASSOCIATE_AC]
        for peer in accepted[:10]:
            peer.send(AReleaseRQ().encode())
        yield waitUntil(lambda: all(len(peer.pdus()) >= 2 for peer in accepted[:10]), timeout=20, message="A-RELEASE-RP")
        self.assertEqual({peer.pdus()[1][0] for peer in accepted[:10]}, {A_RELEASE_RP})
        for peer in accepted[:10]:
            yield peer.close()
        yield waitUntil(lambda: daemon.output.count("released by the peer") >= 10, timeout=20, message=daemon.output[-2000:])
        yield assertEchoes(self, daemon)
        self.assertLess(time.monotonic() - started, 60)


# -- 4: 4 GB ----------------------------------------------------------------------------


class HugePDUTests(HostileTestCase):
    """
    PDU headers announcing 4 GB.
    """

    ARTIM = 1.0

    @defer.inlineCallbacks
    def assertAbortedOnHeader(self, *options: str):
        """
        An A-ASSOCIATE-RQ and, inside an association, a P-DATA-TF, each
        announcing 0xFFFFFFFF bytes, get an A-ABORT (service provider,
        invalid PDU parameter value) as soon as their header is in; the
        daemon allocates nothing for them, closes each connection when
        the ARTIM timer expires in Sta13 (AA-2) and serves echoscu.
        """
        daemon = yield startDaemon(self, "--acse-timeout", str(self.ARTIM), "--idle-timeout", "60", *options)
        before = residentMemory(daemon.transport.pid)
        first = yield openRaw(self, daemon.port)
        first.send(struct.pack(">BBL", 0x01, 0, 0xFFFFFFFF) + b"\x00\x01" + bytes(1000))
        inside, contexts = yield associateRaw(self, daemon.port)
        inside.send(struct.pack(">BBLLBB", P_DATA_TF, 0, 0xFFFFFFFF, 0xFFFFFFFB, contexts[VERIFICATION_SOP_CLASS], 3) + bytes(60000))
        yield waitUntil(lambda: not first.open and not inside.open, timeout=20, message="closed")
        expected = [(ABORT_SOURCE_SERVICE_PROVIDER, ABORT_REASON_INVALID_PDU_PARAMETER_VALUE)]
        self.assertEqual(first.pdus(), [(A_ABORT, bytes(2) + bytes(expected[0]))])
        self.assertEqual([pduType for pduType, _ in inside.pdus()], [A_ASSOCIATE_AC, A_ABORT])
        self.assertEqual(abortsIn(inside.pdus()), expected)
        for name, peer in (("first", first), ("inside", inside)):
            self.assertTrue(peer.closedByDaemon, name)
            # Open until the ARTIM timer, started with the A-ABORT (the last
            # bytes received), expires.
            self.assertGreaterEqual(peer.lostAt - peer.lastDataAt, self.ARTIM * 0.5, name)
            self.assertLess(peer.lostAt - peer.lastDataAt, self.ARTIM + 10, name)
        # Both aborts are logged with their reason, the connection that
        # never had an association too.
        # The connections close before the daemon's log lines reach us:
        # wait for each line.
        insideAborted = re.compile(r"HOSTILE -> DICOMD .* aborted: PDU type 0x04 announces 4294967295 bytes")
        yield waitUntil(lambda: insideAborted.search(daemon.output), timeout=10, message=daemon.output)
        yield waitUntil(lambda: "before an association was established" in daemon.output, timeout=10, message=daemon.output)
        self.assertRegex(daemon.output, r"Connection from 127\.0\.0\.1:\d+ aborted: PDU type 0x01 announces 4294967295 bytes")
        artim = "ARTIM timer expired after %s s in Sta13" % (self.ARTIM,)
        yield waitUntil(lambda: daemon.output.count(artim) >= 2, timeout=10, message=daemon.output)
        self.assertEqual(daemon.output.count(artim), 2, daemon.output)
        self.assertLess(residentMemory(daemon.transport.pid) - before, 64 << 20)
        yield assertEchoes(self, daemon)

    def test_fourGigabytePDU(self):
        """With the default --max-pdu (131072): a 4 GB A-ASSOCIATE-RQ and P-DATA-TF are aborted on their header (service provider, invalid PDU parameter value), closed at the ARTIM timeout; the daemon serves echoscu."""
        return self.assertAbortedOnHeader()

    def test_fourGigabytePDUWithoutLimit(self):
        """With --max-pdu 0 (no limit advertised) the daemon still caps what it buffers (64 MiB): the same 4 GB PDUs are aborted on their header."""
        return self.assertAbortedOnHeader("--max-pdu", "0")


# -- 5: absurd command sets ---------------------------------------------------------------


class AbsurdCommandTests(HostileTestCase):
    """
    Command sets whose lengths lie, inside a valid association.
    """

    @defer.inlineCallbacks
    def test_absurdLengths(self):
        """A Command Group Length value of 0xFFFFFFFF is ignored (the C-ECHO is answered with success, as dicomd.dimse.commands documents); a group length element, or a UID element, whose length runs past the end, a command set cut inside an element header, and 80,000 bytes of command fragments (more than the 64 KiB reassembled) each abort the association (A-ABORT, service user); echoscu is then served."""
        daemon = yield startDaemon(self, "--acse-timeout", "1", "--idle-timeout", "60")
        command = encodeCommand(CEchoRQ(messageID=7))
        self.assertEqual(struct.unpack_from("<HHL", command, 0), (0, 0, 4))

        wrongValue = command[:8] + b"\xff\xff\xff\xff" + command[12:]
        groupLengthPastEnd = command[:4] + b"\xff\xff\xff\xff" + command[8:]
        # Without its group length (optional on receipt), the Affected SOP
        # Class UID (0000,0002) first, its 18 bytes claimed as 0x7FFFFFF0.
        uidPastEnd = command[12:].replace(b"\x00\x00\x02\x00\x12\x00\x00\x00", b"\x00\x00\x02\x00\xf0\xff\xff\x7f")
        self.assertNotEqual(uidPastEnd, command[12:])
        cutInHeader = command + b"\x00\x00\x10"

        peers = {}
        for name, data in [("WRONGVALUE", wrongValue), ("GLPASTEND", groupLengthPastEnd), ("UIDPASTEND", uidPastEnd), ("CUTHEADER", cutInHeader)]:
            peer, contexts = yield associateRaw(self, daemon.port, name)
            peer.send(pData(contexts[VERIFICATION_SOP_CLASS], COMMAND | LAST, data))
            peers[name] = peer
        huge, contexts = yield associateRaw(self, daemon.port, "HUGECOMMAND")
        for _ in range(5):
            huge.send(pData(contexts[VERIFICATION_SOP_CLASS], COMMAND, bytes(16000)))
        peers["HUGECOMMAND"] = huge

        answered = peers.pop("WRONGVALUE")
        yield waitForPDUs(answered, 2)
        [response] = commandsIn(answered.pdus())
        self.assertEqual((response.messageIDBeingRespondedTo, response.status), (7, _status.SUCCESS))
        self.assertTrue(answered.open)

        yield waitUntil(lambda: not any(peer.open for peer in peers.values()), timeout=20, message="aborted")
        for name, peer in peers.items():
            pdus = peer.pdus()
            self.assertEqual([pduType for pduType, _ in pdus], [A_ASSOCIATE_AC, A_ABORT], name)
            self.assertEqual(abortsIn(pdus), [(ABORT_SOURCE_SERVICE_USER, ABORT_REASON_NOT_SPECIFIED)], name)
            self.assertTrue(peer.closedByDaemon, name)
            self.assertRegex(daemon.output, r"DIMSE protocol error from %s: " % (name,))
        yield assertEchoes(self, daemon)


# -- 6: a sequence that never ends -----------------------------------------------------------


def item(content: bytes) -> bytes:
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(content)) + content


#: One element of a sequence item: Referenced SOP Class UID.
ITEM_CONTENT = struct.pack("<HH2sH", 0x0008, 0x1150, b"UI", 6) + b"1.2.3\x00"

#: (5200,9230) Per-frame Functional Groups Sequence, of undefined length.
UNDEFINED_SEQUENCE = struct.pack("<HH2sHL", 0x5200, 0x9230, b"SQ", 0, 0xFFFFFFFF)


class EndlessSequenceTests(HostileTestCase):
    """
    A C-STORE data set with an undefined-length sequence that never ends.
    """

    def head(self, study=None):
        dataset = makeDataset(rows=8, columns=8, studyInstanceUID=study)
        del dataset.PixelData
        return str(dataset.SOPInstanceUID), encodedDataSet(dataset)

    @defer.inlineCallbacks
    def test_lastFragmentWithoutDelimiter(self):
        """The last fragment arrives inside the sequence (after items, inside an undefined-length item, right after the sequence header): each C-STORE is refused with 0xC000 (cannot understand, not out of resources: a retry cannot help), nothing is stored or left in .incoming; the association and the daemon go on serving."""
        data = os.path.join(makeDirectory(self), "data")
        daemon = yield startDaemon(self, "--output-directory", data)
        association = yield requestAssociation(daemon.port, "ENDLESS")
        tails = [
            UNDEFINED_SEQUENCE + item(ITEM_CONTENT) * 3,
            UNDEFINED_SEQUENCE + item(ITEM_CONTENT) + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + ITEM_CONTENT,
            UNDEFINED_SEQUENCE,
        ]
        for tail in tails:
            uid, head = self.head()
            status = yield store(association, uid, head + tail)
            self.assertEqual(status, _status.CANNOT_UNDERSTAND, daemon.output)
        # The daemon logs each refusal as it answers: the lines reach us a
        # moment after the responses.
        yield waitUntil(
            lambda: daemon.output.count("from ENDLESS failed (0xC000") >= len(tails), timeout=15, message=daemon.output
        )
        self.assertEqual(daemon.output.count("from ENDLESS failed (0xC000"), len(tails), daemon.output)
        self.assertNotIn("0xA700", daemon.output)
        # The association still serves: a proper object is stored.
        uid, head = self.head()
        status = yield store(association, uid, head)
        self.assertEqual(status, _status.SUCCESS)
        yield association.release()
        indexed = yield waitForIndexed(data, [uid])
        self.assertEqual(list(indexed), [uid])
        self.assertEqual(len(finalFiles(data)), 1)
        self.assertEqual(temporaryFiles(data), [])
        yield waitUntil(lambda: not openDataFiles(daemon.transport.pid), timeout=10, message="spool files closed")
        yield assertEchoes(self, daemon)

    @defer.inlineCallbacks
    def test_itemsKeepComing(self):
        """Items of a never-ending sequence stream in (8 MB) and then stop: the daemon's memory does not grow with them, the idle timeout (1 s) aborts the association, nothing is stored and the spool file is gone; the daemon serves echoscu."""
        data = os.path.join(makeDirectory(self), "data")
        daemon = yield startDaemon(self, "--output-directory", data, "--idle-timeout", "1")
        pid = daemon.transport.pid
        association = yield requestAssociation(daemon.port, "ENDLESS")
        context = association.contextFor(CT_IMAGE_STORAGE)
        uid, head = self.head()
        closed = association.whenClosed()
        request = CStoreRQ(messageID=1, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID=uid)
        association.protocol.sendPData(fragment(context.contextID, True, encodeCommand(request), association.fragmentLength))
        association.protocol.sendPData(fragment(context.contextID, False, head + UNDEFINED_SEQUENCE, association.fragmentLength, isLast=False))
        before = residentMemory(pid)
        written = _spooled(pid)
        chunk = item(ITEM_CONTENT) * (65536 // len(item(ITEM_CONTENT)))
        sent = 0
        while sent < 8 << 20:
            association.protocol.sendPData(fragment(context.contextID, False, chunk, association.fragmentLength, isLast=False))
            sent += len(chunk)
            # Send on as the daemon spools, a megabyte ahead at most.
            yield waitUntil(lambda: _spooled(pid) - written >= sent - (2 << 20), timeout=30, interval=0.002, message="spooling")
        # The spool writes in 1 MiB jobs: the last one may wait.
        yield waitUntil(lambda: _spooled(pid) - written >= sent - (1 << 20), timeout=30, interval=0.002, message="spooling")
        grown = residentMemory(pid) - before
        yield closed
        yield daemon.waitForOutput(r"Nothing received from .* aborting", timeout=15)
        yield daemon.waitForOutput(r"C-STORE of %s from ENDLESS abandoned" % (uid,), timeout=15)
        yield waitUntil(lambda: not openDataFiles(pid), timeout=10, message="spool file closed")
        self.assertNothingStored(data, daemon)
        self.assertLess(grown, 32 << 20, "resident memory grew by %d bytes for %d bytes of items" % (grown, sent))
        yield assertEchoes(self, daemon)


class StalledDataSetTests(HostileTestCase):
    """
    A sender that stops in the middle of a C-STORE data set and holds the
    association open: the DIMSE timeout (2 s here) aborts it, well before
    the idle timeout (60 s), the object is abandoned and one line says why.
    """

    TIMEOUT_LINE = r"No P-DATA-TF from 127\.0\.0\.1:\d+ for 2(\.0)? s \(the DIMSE timeout\) in the middle of a DIMSE message; aborting"

    @defer.inlineCallbacks
    def stallMidDataSet(self, server):
        """
        Associate, send a C-STORE-RQ and half its data set, then nothing,
        and wait (30 s at most) for the server to abort and hang up.

        @return: the SOP Instance UID sent.
        """
        from twisted.internet import reactor

        peer, contexts = yield associateRaw(self, server.port, "STALLER")
        context = contexts[CT_IMAGE_STORAGE]
        dataset = makeDataset(rows=128, columns=128)
        uid = str(dataset.SOPInstanceUID)
        encoded = encodedDataSet(dataset)
        request = CStoreRQ(messageID=1, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID=uid)
        peer.send(pData(context, COMMAND | LAST, encodeCommand(request)) + pData(context, 0, encoded[: len(encoded) // 2]))
        sent = time.monotonic()
        yield peer.lost.addTimeout(30, reactor)
        pdus = peer.pdus()
        self.assertEqual([pduType for pduType, _ in pdus], [A_ASSOCIATE_AC, A_ABORT], server.describe())
        self.assertEqual(abortsIn(pdus), [(ABORT_SOURCE_SERVICE_USER, ABORT_REASON_NOT_SPECIFIED)])
        self.assertTrue(peer.closedByDaemon)
        # The DIMSE timeout (2 s), not the idle timeout (60 s) nor ARTIM (30 s).
        self.assertGreaterEqual(peer.lostAt - sent, 1.5)
        self.assertLess(peer.lostAt - sent, 15)
        return uid

    @defer.inlineCallbacks
    def assertAbandoned(self, server, data: str, uid: str):
        """
        The server logged the timeout and abandoned the object: nothing
        stored, nothing left in .incoming or open; it then serves echoscu.
        """
        yield server.waitForOutput(self.TIMEOUT_LINE)
        yield server.waitForOutput(r"C-STORE of %s from STALLER abandoned" % (uid.replace(".", r"\."),))
        yield waitUntil(lambda: not openDataFiles(server.transport.pid), timeout=10, message="spool file closed")
        self.assertNothingStored(data, server)
        self.assertEqual(len(re.findall(self.TIMEOUT_LINE, server.output)), 1, server.output)
        yield assertEchoes(self, server)

    @defer.inlineCallbacks
    def test_storescp(self):
        """dicomd storescp -td 2 aborts a C-STORE whose data set stops halfway after 2 s, not the 60 s of -ts; it stores nothing, logs one warning naming the peer and the timeout, and serves on."""
        data = makeDirectory(self)
        server = yield startPeer(
            self,
            lambda port: dicomdArgv("storescp", "-v", "-td", "2", "-ts", "60", "-od", data, str(port)),
            env=pythonEnvironment(),
            name="dicomd storescp",
        )
        uid = yield self.stallMidDataSet(server)
        yield self.assertAbandoned(server, data, uid)
        self.assertRegex(server.output, "W: " + self.TIMEOUT_LINE)

    @defer.inlineCallbacks
    def test_daemon(self):
        """twistd dicomd --dimse-timeout 2 aborts a C-STORE whose data set stops halfway after 2 s, not the 60 s of --idle-timeout; it stores nothing, logs why, and serves on."""
        data = os.path.join(makeDirectory(self), "data")
        daemon = yield startDaemon(self, "--output-directory", data, "--dimse-timeout", "2", "--idle-timeout", "60")
        uid = yield self.stallMidDataSet(daemon)
        yield self.assertAbandoned(daemon, data, uid)
        yield daemon.waitForOutput(r"Association STALLER -> DICOMD from 127\.0\.0\.1:\d+ aborted: DIMSE timeout after")


def _spooled(pid: int) -> int:
    with open("/proc/%d/io" % (pid,)) as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


# -- 7: names that climb out of the output directory ---------------------------------------

#: (SOP Instance UID, Patient's Name, Study Instance UID) built to escape
#: through their UIDs: each is refused with 0xC000, since a UID is digits
#: and dots (PS3.5 9.1).
UID_ESCAPES = [
    ("../../x", "Doe^John", "1.2.3"),
    ("..", "Doe^John", "1.2.3"),
    ("1.2.3.4.1", "Doe^John", "../.."),
    ("1.2.3.4.2", "Doe^John", "/.."),
]

#: The same, escaping through the Patient's Name (which names study
#: directories with --sort-on-patientname): stored under sanitised names.
NAME_ESCAPES = [
    ("1.2.3.4.3", "..", "1.2.3"),
    ("1.2.3.4.4", "../..", "1.2.3"),
    ("1.2.3.4.5", "../../../../../tmp", "1.2.3"),
]

#: A SOP Instance UID too long for a UID (at most 64 characters) and for
#: a file name (255 bytes).
LONG_UID = "1." + "9" * 300

#: The SOP Instance UID of an object whose Patient's Name is too long for
#: a directory name (it is cut).
LONG_NAMES_UID = "1.2.3.4.5.6.7.8.9.255"

#: The same objects, and two with names too long for the file system.
HOSTILE_NAMES = UID_ESCAPES + NAME_ESCAPES + [
    (LONG_UID, "Doe^John", "1.2.3"),
    ("1.2.3.4.6", "Doe^John", "1.2." + "3" * 300),
    (LONG_NAMES_UID, "Doe^" + "J" * 300, "1.2.3"),
]


class PathEscapeTests(HostileTestCase):
    """
    UIDs and names that would name a path outside the output directory, or
    a file name longer than the file system takes.
    """

    @defer.inlineCallbacks
    def assertContained(self, *sorting: str):
        """
        Store L{HOSTILE_NAMES} with a daemon sorting as C{sorting} says;
        check that every file written is inside its output directory, that
        each object stored is indexed and complete under a name made only
        of safe components, and that each one refused is not.

        @return: SOP Instance UID -> the response's status.
        """
        base = makeDirectory(self)
        data = self.data = os.path.join(base, "one", "two", "three", "data")
        daemon = yield startDaemon(self, "--output-directory", data, *sorting)
        association = yield requestAssociation(daemon.port, "ESCAPER")
        statuses = {}
        for sopInstanceUID, patientName, studyUID in HOSTILE_NAMES:
            encoded = hostileDataSet(sopInstanceUID, studyUID, PatientName=patientName)
            statuses[sopInstanceUID] = yield store(association, sopInstanceUID, encoded)
        yield association.release()

        inside = os.path.realpath(data) + os.sep
        everything = allFiles(base)
        self.assertTrue(everything)
        for path in everything:
            self.assertFalse(os.path.islink(path), path)
            self.assertTrue(os.path.realpath(path).startswith(inside), "%s is outside %s" % (path, data))
        indexed = yield waitForIndexed(data, [uid for uid, statusValue in statuses.items() if statusValue == _status.SUCCESS])
        for uid, statusValue in statuses.items():
            if statusValue == _status.SUCCESS:
                path = indexed[uid]
                self.assertTrue(os.path.realpath(path).startswith(inside), path)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    self.assertEqual(str(pydicom.dcmread(path).SOPInstanceUID), uid)
                for component in os.path.relpath(path, data).split(os.sep):
                    self.assertNotIn(component, ("", ".", ".."))
            else:
                self.assertEqual(_status.category(statusValue).name, "FAILURE", hex(statusValue))
                self.assertNotIn(uid, indexed)
        self.assertEqual(len(finalFiles(data)), list(statuses.values()).count(_status.SUCCESS))
        self.assertEqual(temporaryFiles(data), [])
        yield assertEchoes(self, daemon)
        return statuses

    def assertStatuses(self, statuses: dict) -> None:
        """
        The objects with a UID that is not one (one that climbs, one too
        long) were refused with 0xC000 (cannot understand: not 0xA700, out
        of resources, which invites a retry); those with a climbing or
        overlong Patient's Name were stored.
        """
        expected = {uid: _status.CANNOT_UNDERSTAND for uid, _, _ in UID_ESCAPES}
        expected.update({uid: _status.SUCCESS for uid, _, _ in NAME_ESCAPES})
        expected[LONG_UID] = _status.CANNOT_UNDERSTAND
        expected["1.2.3.4.6"] = _status.CANNOT_UNDERSTAND
        expected[LONG_NAMES_UID] = _status.SUCCESS
        self.assertEqual({uid: hex(value) for uid, value in statuses.items()}, {uid: hex(value) for uid, value in expected.items()})

    @defer.inlineCallbacks
    def test_sortOnPatientName(self):
        """With --sort-on-patientname (-sp): Patient's Names .., ../.. and ../../../../../tmp are stored inside the output directory under sanitised names; SOP and Study Instance UIDs that climb or run past 64 characters are refused with 0xC000; a 304-character Patient's Name is cut to a directory name; nothing is written outside."""
        statuses = yield self.assertContained("--sort-on-patientname")
        self.assertStatuses(statuses)

    @defer.inlineCallbacks
    def test_sortOnStudyUID(self):
        """With --sort-on-study-uid and an empty prefix (-su '', also the daemon's default layout): Study Instance UIDs ../.., /.. and one of 304 characters, and SOP Instance UIDs that climb or run past 64 characters, are refused with 0xC000; nothing is written outside."""
        statuses = yield self.assertContained("--sort-on-study-uid", "")
        self.assertStatuses(statuses)

    @defer.inlineCallbacks
    def test_flat(self):
        """With --flat: SOP Instance UIDs ../../x, .. and one of 302 characters are refused with 0xC000, and so are climbing Study Instance UIDs, although they name nothing there; the others are stored directly in the output directory."""
        statuses = yield self.assertContained("--flat")
        self.assertStatuses(statuses)
        self.assertEqual(
            sorted(os.path.basename(path) for path in finalFiles(self.data)),
            ["CT.1.2.3.4.3", "CT.1.2.3.4.4", "CT.1.2.3.4.5", "CT.1.2.3.4.5.6.7.8.9.255"],
        )

    @defer.inlineCallbacks
    def test_uidsWithShellMetacharacters(self):
        """A SOP Instance UID 1.2;$(touch PWN3) and a Study Instance UID with backticks are refused with 0xC000 (they were stored, and reached #f and #p, before UIDs were checked); no command runs and nothing is stored."""
        work = makeDirectory(self)
        data = os.path.join(work, "data")
        ran = os.path.join(work, "ran.log")
        daemon = yield startPeer(
            self,
            lambda port: twistdArgv(port, "--output-directory", data, "--exec-on-reception", "echo #f >> %s" % (shlex.quote(ran),)),
            env=pythonEnvironment(),
            cwd=work,
            name="twistd dicomd",
            ready=daemonListening,
        )
        association = yield requestAssociation(daemon.port, "METACHARS")
        statuses = []
        for uid, study in [("1.2;$(touch PWN3)", "1.2.3"), ("1.2.3.4.7", "1.2.`touch PWN4`")]:
            statuses.append((yield store(association, uid, hostileDataSet(uid, study))))
        yield association.release()
        self.assertEqual(statuses, [_status.CANNOT_UNDERSTAND] * 2)
        yield daemon.waitForOutput(r"Study Instance UID '1\.2\.`touch PWN4`' is not a valid UID", timeout=15)
        self.assertEqual(finalFiles(data), [])
        self.assertEqual(indexedInstances(data), {})
        self.assertFalse(os.path.exists(ran))
        self.assertEqual([path for path in allFiles(work) if os.path.basename(path).startswith("PWN")], [])
        yield assertEchoes(self, daemon)


# -- 8: shell metacharacters in AE titles -------------------------------------------------

#: Calling AE titles (at most 16 characters) that would run C{touch} if
#: pasted into a shell line, and the marker file each would create.
HOSTILE_TITLES = [
    ("A;touch M1", "M1"),
    ("$(touch M2)", "M2"),
    ("`touch M3`", "M3"),
    ("x';touch M4;'", "M4"),
    ('x";touch M5;"', "M5"),
    ("A|touch M6&&", "M6"),
]


class ShellMetacharacterTests(HostileTestCase):
    """
    Values from the network with shell metacharacters reach commands run
    on reception and at the end of a study.
    """

    @defer.inlineCallbacks
    def test_aeTitlesStayData(self):
        """Calling and called AE titles with ;, $(), backticks, quotes and | reach --exec-on-reception and --exec-on-eostudy each as one whole argument (#a bare, #a in double quotes and $DICOMD_CALLING_AE; #c, #f, #p bare); no marker file is ever created."""
        work = makeDirectory(self)
        data = os.path.join(work, "data")
        received = os.path.join(work, "received.log")
        ended = os.path.join(work, "eostudy.log")
        template = "printf '%s<%%s>\\n' #a \"#a\" \"$DICOMD_CALLING_AE\" #c %s >> {}"
        daemon = yield startPeer(
            self,
            lambda port: twistdArgv(
                port,
                "--output-directory",
                data,
                "--exec-on-reception",
                template.format(shlex.quote(received)) % ("rx", "#f"),
                "--exec-on-eostudy",
                template.format(shlex.quote(ended)) % ("eos", "#p"),
                "--eostudy-timeout",
                "0.5",
            ),
            env=pythonEnvironment(),
            cwd=work,
            name="twistd dicomd",
            ready=daemonListening,
        )
        expectedReceived, expectedEnded = [], []
        for index, (title, marker) in enumerate(HOSTILE_TITLES):
            # The daemon answers to any called AE title, as storescp does:
            # #c comes from the network too.
            called = HOSTILE_TITLES[index - 1][0]
            # UIDs are digits and dots (PS3.5 9.1): hostile ones are refused
            # (test_uidsWithShellMetacharacters), so only AE titles remain.
            uid = "1.2.%d" % (index,)
            study = "1.3.%d" % (index,)
            encoded = hostileDataSet(uid, study)
            association = yield requestAssociation(daemon.port, title, called)
            status = yield store(association, uid, encoded)
            self.assertEqual(status, _status.SUCCESS)
            yield association.release()
            ae = ["<%s>" % (title,)] * 3 + ["<%s>" % (called,)]
            expectedReceived.append(sorted(ae + ["<CT.%s>" % (uid,)]))
            expectedEnded.append(sorted(ae + ["<%s>" % (os.path.join(data, study),)]))

        def lines(path, prefix):
            try:
                with open(path) as f:
                    text = f.read().splitlines()
            except FileNotFoundError:
                return []
            self.assertTrue(all(line.startswith(prefix) for line in text), text)
            return [line[len(prefix) :] for line in text]

        count = 5 * len(HOSTILE_TITLES)
        yield waitUntil(lambda: len(lines(received, "rx")) >= count and len(lines(ended, "eos")) >= count, timeout=30, message=daemon.output[-3000:])
        for path, prefix, expected in [(received, "rx", expectedReceived), (ended, "eos", expectedEnded)]:
            got = lines(path, prefix)
            self.assertEqual(len(got), count, got)
            # Each command ran with exactly five arguments after the format
            # (each run's output is one write): the calling AE title three
            # times, whole, the called one, and the file or directory.
            runs = sorted(sorted(got[i : i + 5]) for i in range(0, count, 5))
            self.assertEqual(runs, sorted(expected), got)
        markers = {marker for _, marker in HOSTILE_TITLES}
        markers |= {marker + "f" for marker in markers} | {marker + "s" for marker in markers}
        self.assertEqual([path for path in allFiles(work) if os.path.basename(path) in markers], [])
        for marker in markers:
            self.assertFalse(os.path.exists(os.path.join(work, marker)))
        yield assertEchoes(self, daemon)


# -- 9: responses never read --------------------------------------------------------------


class UnreadResponsesTests(HostileTestCase):
    """
    A peer that pipelines C-ECHO-RQs as fast as it can and never reads a
    response.

    The daemon writes responses until its write buffer for the connection
    is full, then stops reading from that peer until the buffer drains
    (L{dicomd.net.sending.MessageSender} is the connection's push producer
    and pauses its association's reading), so the peer's sending stalls
    and the daemon's memory stays flat however much the peer has to send;
    other peers are served meanwhile.  Without that back-pressure the
    daemon would read on and keep every unread response in memory.
    """

    #: The most the peer tries to send, and for how long.
    BUDGET = 200 << 20
    SECONDS = 12.0
    #: No byte accepted for this long: the daemon stopped reading.
    STALL = 3.0
    #: The daemon's resident memory may grow by less than this.
    GROWTH = 64 << 20

    @defer.inlineCallbacks
    def test_pipelinedEchoesNeverRead(self):
        """A peer with a 4 KiB receive buffer pipelines C-ECHO-RQ P-DATA-TF PDUs without reading: within 12 s its sending stalls (the daemon stopped reading it), the daemon's resident memory grows by less than 64 MB, echoscu is served meanwhile, and the connection's end is logged once the peer closes it."""
        from twisted.internet import reactor

        daemon = yield startDaemon(self, "--idle-timeout", "60")
        pid = daemon.transport.pid
        peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(peer.close)
        # Before connecting, so that the advertised window stays small.
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.settimeout(10)
        peer.connect((LOCALHOST, daemon.port))
        peer.sendall(associateRequest("PIPELINE"))
        answer = b""
        while len(answer) < 6 or len(answer) < 6 + struct.unpack_from(">L", answer, 2)[0]:
            chunk = peer.recv(65536)
            self.assertTrue(chunk, "connection closed before A-ASSOCIATE-AC")
            answer += chunk
        self.assertEqual(answer[0], A_ASSOCIATE_AC)
        accept = AAssociateAC.decode(answer[6 : 6 + struct.unpack_from(">L", answer, 2)[0]])
        # Verification was proposed first, as context 1.
        self.assertIn(1, [c.contextID for c in accept.presentationContexts if c.accepted])
        contextID = 1
        # 4096 requests with distinct message IDs, sent over and over; each
        # is answered at once, so its ID is free again by the next round.
        block = memoryview(
            b"".join(pData(contextID, COMMAND | LAST, encodeCommand(CEchoRQ(messageID=i))) for i in range(1, 4097))
        )

        before = peak = residentMemory(pid)
        peer.setblocking(False)
        sent = offset = 0
        started = progressAt = time.monotonic()
        stalled = False
        while sent < self.BUDGET and time.monotonic() - started < self.SECONDS:
            try:
                count = peer.send(block[offset:])
            except BlockingIOError:
                count = 0
            now = time.monotonic()
            if count:
                sent += count
                offset = (offset + count) % len(block)
                progressAt = now
            elif now - progressAt >= self.STALL:
                stalled = True
                break
            peak = max(peak, residentMemory(pid))
            # Let the reactor read the daemon's log meanwhile.
            yield deferLater(reactor, 0 if count else 0.01)
        elapsed = time.monotonic() - started
        peak = max(peak, residentMemory(pid))
        measured = "sent %.1f MB in %.1f s; daemon RSS %.1f MB -> peak %.1f MB (+%.1f MB)" % (
            sent / 1e6,
            elapsed,
            before / 1e6,
            peak / 1e6,
            (peak - before) / 1e6,
        )
        log.msg("UnreadResponsesTests: " + measured)
        self.assertTrue(daemon.running, daemon.describe())
        self.assertLess(peak - before, self.GROWTH, measured)
        self.assertTrue(stalled, "the daemon kept reading: " + measured)

        # Another peer is served while this one sits blocked.
        yield assertEchoes(self, daemon)
        self.assertLess(residentMemory(pid) - before, self.GROWTH, measured)

        # Closing with unread data resets the connection; the daemon ends
        # the association instead of holding on to it.
        peer.close()
        yield daemon.waitForOutput(r"Association PIPELINE -> DICOMD from \S+ aborted", timeout=20)


# -- 10: deflate bombs ---------------------------------------------------------------------

DEFLATED = "1.2.840.10008.1.2.1.99"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"

#: What a bomb inflates to, and what the daemon's memory may grow by
#: while it handles one.
BOMB_SIZE = 1 << 30
BOMB_GROWTH = 64 << 20


def explicitElement(tag: int, vr: bytes, value: bytes) -> bytes:
    """
    One element in explicit VR little endian, padded to an even length.
    """
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
        return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def deflateBomb(head: bytes, tag: int, tail: bytes = b"") -> bytes:
    """
    A deflated data set: C{head}'s elements, then an OB element C{tag} of
    L{BOMB_SIZE} zero bytes (about a megabyte once deflated), then
    C{tail}'s elements.  Each part is deflated on its own, ending on a
    full flush, so the zeros are deflated once for every bomb.
    """
    header = struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, b"OB", 0, BOMB_SIZE)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = compressor.compress(head + header) + compressor.flush(zlib.Z_FULL_FLUSH)
    return start + _deflatedZeros() + deflated(tail)


@functools.lru_cache(maxsize=1)
def _deflatedZeros() -> bytes:
    """
    L{BOMB_SIZE} zero bytes deflated into non-final blocks, to go between
    other deflated parts.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    pieces = [compressor.compress(zeros) for _ in range(BOMB_SIZE >> 20)]
    pieces.append(compressor.flush(zlib.Z_FULL_FLUSH))
    return b"".join(pieces)


def peakMemory(pid: int) -> int:
    """
    The most resident memory a process has had, in bytes (VmHWM).
    """
    with open("/proc/%d/status" % (pid,)) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM for %d" % (pid,))


class DeflateBombTests(HostileTestCase):
    """
    Deflated data sets of a megabyte that inflate to a gigabyte, sent to a
    daemon that accepts deflated explicit VR little endian (C{--accept-all},
    as the docs' complete example does), as a C-STORE data set and as a
    C-FIND identifier.  The daemon inflates only as far as it needs, so its
    memory stays flat and it goes on serving others meanwhile.
    """

    @defer.inlineCallbacks
    def startBombed(self):
        from twisted.internet import reactor

        self.data = os.path.join(makeDirectory(self), "data")
        daemon = yield startDaemon(self, "--output-directory", self.data, "--accept-all")
        association = yield connect(
            TCP4ClientEndpoint(reactor, LOCALHOST, daemon.port),
            calledAETitle="DICOMD",
            callingAETitle="BOMBER",
            presentationContexts=[(CT_IMAGE_STORAGE, [DEFLATED]), (STUDY_ROOT_FIND, [DEFLATED])],
            reactor=reactor,
        )
        self.addCleanup(lambda: association.abort() if not association.ended else None)
        echoer = yield requestAssociation(daemon.port, "ECHOER")
        self.addCleanup(lambda: echoer.abort() if not echoer.ended else None)
        return daemon, association, echoer

    @defer.inlineCallbacks
    def assertServedMeanwhile(self, daemon, echoer, bombed: defer.Deferred):
        """
        While C{bombed} (a request carrying a bomb) is handled, C-ECHO is
        answered within a second, and once it is answered the daemon's
        memory has grown by less than L{BOMB_GROWTH} at its peak.

        @return: the bombed request's final response.
        """
        from twisted.internet import reactor

        before = residentMemory(daemon.transport.pid)
        while not bombed.called:
            started = reactor.seconds()
            yield echoer.echo()
            self.assertLess(reactor.seconds() - started, 1.0, "C-ECHO took more than a second during the bomb")
        result = yield bombed
        grown = peakMemory(daemon.transport.pid) - before
        self.assertLess(grown, BOMB_GROWTH, "resident memory grew by %d bytes" % (grown,))
        yield assertEchoes(self, daemon)
        return result

    @defer.inlineCallbacks
    def test_storeBomb(self):
        """A 1 MB deflated CT image whose pixel data inflates to 1 GiB is stored as received (0x0000), three times over, with the daemon's peak memory growing by less than 64 MB and C-ECHO answered within a second throughout; the stored file is the deflated bytes as sent."""
        daemon, association, echoer = yield self.startBombed()
        context = association.contextFor(CT_IMAGE_STORAGE, DEFLATED)
        for number in range(3):
            uid = "1.2.826.0.1.3680043.9.7433.3.%d" % (number,)
            head = b"".join(
                [
                    explicitElement(0x00080016, b"UI", CT_IMAGE_STORAGE.encode()),
                    explicitElement(0x00080018, b"UI", uid.encode()),
                    explicitElement(0x00100010, b"PN", b"Bomb^Deflate"),
                    explicitElement(0x0020000D, b"UI", b"1.2.826.0.1.3680043.9.7433.3"),
                    explicitElement(0x0020000E, b"UI", b"1.2.826.0.1.3680043.9.7433.3.100"),
                ]
            )
            bomb = deflateBomb(head, 0x7FE00010)
            request = CStoreRQ(affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID=uid)
            response, _ = yield self.assertServedMeanwhile(daemon, echoer, association.request(context.contextID, request, bomb))
            self.assertEqual(response.status, _status.SUCCESS, daemon.describe())
            stored = (yield waitForIndexed(self.data, [uid]))[uid]
            with open(stored, "rb") as f:
                self.assertTrue(f.read().endswith(bomb), stored)

    @defer.inlineCallbacks
    def test_storeBombBeforeItsUIDs(self):
        """A 1 MB deflated data set whose first element inflates to 1 GiB, before its SOP Class and Instance UIDs, is refused with 0xC000 (its UIDs cannot be read within the few megabytes the daemon inflates), nothing is stored, and the daemon's peak memory grows by less than 64 MB."""
        daemon, association, echoer = yield self.startBombed()
        context = association.contextFor(CT_IMAGE_STORAGE, DEFLATED)
        uid = "1.2.826.0.1.3680043.9.7433.4"
        tail = explicitElement(0x00080016, b"UI", CT_IMAGE_STORAGE.encode()) + explicitElement(0x00080018, b"UI", uid.encode())
        bomb = deflateBomb(b"", 0x00080001, tail)
        request = CStoreRQ(affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID=uid)
        response, _ = yield self.assertServedMeanwhile(daemon, echoer, association.request(context.contextID, request, bomb))
        self.assertEqual(response.status, _status.CANNOT_UNDERSTAND, daemon.describe())
        self.assertEqual(finalFiles(self.data), [])
        self.assertEqual(temporaryFiles(self.data), [])

    @defer.inlineCallbacks
    def test_findIdentifierBomb(self):
        """A 1 MB deflated C-FIND identifier that inflates to 1 GiB is refused with 0xA900 (it inflates to more than an identifier may), at once, with the daemon's peak memory growing by less than 64 MB and C-ECHO answered within a second; a C-FIND with a sane deflated identifier on the same association then succeeds."""
        daemon, association, echoer = yield self.startBombed()
        context = association.contextFor(STUDY_ROOT_FIND, DEFLATED)
        head = explicitElement(0x00080052, b"CS", b"STUDY") + explicitElement(0x0020000D, b"UI", b"")
        bomb = deflateBomb(head, 0x00291000)
        request = CFindRQ(affectedSOPClassUID=STUDY_ROOT_FIND)
        response, _ = yield self.assertServedMeanwhile(daemon, echoer, association.request(context.contextID, request, bomb))
        self.assertEqual(response.status, _status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, daemon.describe())
        response, _ = yield association.request(context.contextID, CFindRQ(affectedSOPClassUID=STUDY_ROOT_FIND), deflated(head))
        self.assertEqual(response.status, _status.SUCCESS, daemon.describe())
