"""
Tests for L{dicomd.net}: the Twisted adapters around the pure Upper Layer,
driven without sockets or sleeping.

Acceptors run on L{StringTransport}s where a test plays the peer byte by
byte; requestor and acceptor pairs talk through L{twisted.test.iosim}; all
timers run on a L{MemoryReactorClock} that the tests advance.
"""

import socket
import struct

from twisted.internet import tcp
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.internet.interfaces import IWriteDescriptor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.policies import WrappingFactory
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.test.iosim import ConnectionCompleter, FakeTransport, makeFakeClient, makeFakeServer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from dicomd import observers
from dicomd.dimse.commands import CEchoRQ, CStoreRQ, Message, encodeCommand
from dicomd.dimse.pdv import fragment
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
from dicomd.errors import ACSETimeout, AssociationAborted, AssociationError, AssociationRejected, DIMSETimeout
from dicomd.interfaces import IDataSetConsumer, IDataSetSource, IService
from dicomd.net.acceptor import AcceptorFactory, AcceptorProtocol, ApplicationEntity
from dicomd.net import protocol as protocolModule
from dicomd.net.sockets import sendNow, writeDescriptor
from dicomd.net.requestor import RequestorProtocol, connect
from dicomd.ul.fsm import State
from dicomd.ul.negotiation import IMPLICIT_VR_LITTLE_ENDIAN, UNCOMPRESSED, AcceptorPolicy, proposePresentationContexts
from dicomd.ul.pdu import AAbort, AAssociateAC, AAssociateRJ, AAssociateRQ, AReleaseRP, AReleaseRQ, PDataTF, UserInformation, decodePDU
from tests.support import verificationEntity

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

#: The A-ASSOCIATE-RJ for one association too many: transient (2),
#: service provider, presentation related (3), local limit exceeded (2).
TOO_MANY = AAssociateRJ(2, 3, 2).encode()

#: Where the in-memory acceptor listens.
PORT = 11112

PEER = IPv4Address("TCP", "127.0.0.1", 50123)


def associateRequestBytes(contexts=((VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN]),), maximumLength=16384):
    """
    An encoded A-ASSOCIATE-RQ from C{TESTSCU} to C{DICOMD}.
    """
    return AAssociateRQ(
        "DICOMD",
        "TESTSCU",
        proposePresentationContexts(contexts),
        UserInformation(maximumLength=maximumLength, implementationClassUID="1.2.826.0.1.3680043.9.7433.1"),
    ).encode()


def splitPDUs(data: bytes) -> list:
    """
    Decode a byte stream of whole PDUs.
    """
    pdus = []
    pos = 0
    while pos < len(data):
        pduType = data[pos]
        length = int.from_bytes(data[pos + 2 : pos + 6], "big")
        pdus.append(decodePDU(pduType, memoryview(data[pos + 6 : pos + 6 + length])))
        pos += 6 + length
    return pdus


@implementer(IDataSetConsumer)
class RecordingConsumer:
    """
    A data set consumer that remembers what happened to it.
    """

    def __init__(self):
        self.received = bytearray()
        self.finished = False
        self.abandoned = []

    def write(self, fragment):
        self.received += fragment

    def finish(self):
        self.finished = True

    def abandon(self, reason):
        self.abandoned.append(reason)


@implementer(IService)
class SilentService:
    """
    A service that takes requests and never answers them; requests with a
    data set stream it into a L{RecordingConsumer}.
    """

    def __init__(self):
        self.requests = []
        self.consumers = []

    def messageReceived(self, association, context, message):
        self.requests.append(message)
        if message.hasDataSet:
            consumer = RecordingConsumer()
            self.consumers.append(consumer)
            return consumer
        return None


class NoDelayRecordingTransport(StringTransport):
    """
    A L{StringTransport} that records C{setTcpNoDelay} calls, as a TCP
    transport would receive them.
    """

    def __init__(self, *args, **kwargs):
        StringTransport.__init__(self, *args, **kwargs)
        self.noDelayCalls = []

    def setTcpNoDelay(self, enabled):
        self.noDelayCalls.append(enabled)

    def getTcpNoDelay(self):
        return bool(self.noDelayCalls and self.noDelayCalls[-1])


class SilentPeer(Protocol):
    """
    A server that reads everything and never answers.
    """

    def __init__(self):
        self.received = bytearray()
        self.lost = False

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost = True


class CongestedTransport(FakeTransport):
    """
    An iosim transport whose peer stops reading after C{window} bytes: like
    a TCP transport whose send buffer is full, every write beyond the
    window pauses the registered streaming producer, and nothing resumes
    it.
    """

    def __init__(self, protocol, isServer, window):
        FakeTransport.__init__(self, protocol, isServer)
        self.window = window
        self.written = 0

    def write(self, data):
        FakeTransport.write(self, data)
        self.written += len(data)
        if self.written > self.window and self.producer is not None and self.streamingProducer:
            self.producer.pauseProducing()


class ThrottledTransport(CongestedTransport):
    """
    A L{CongestedTransport} whose peer reads another window's worth when
    told to (L{drain}): a slow link.
    """

    def drain(self):
        self.written = 0
        if self.producer is not None:
            self.producer.resumeProducing()


@implementer(IDataSetSource)
class BytesSource:
    """
    A data set source over bytes that remembers whether it was closed.
    """

    def __init__(self, data: bytes):
        self._data = memoryview(data)
        self.length = len(data)
        self.closed = 0

    def read(self, size):
        start = len(self._data) - self.length
        self.length -= size
        return self._data[start : start + size]

    def close(self):
        self.closed += 1


class Network:
    """
    An in-memory network: an L{AcceptorFactory} listening on a
    L{MemoryReactorClock}, and requestors connecting to it with
    L{dicomd.net.requestor.connect}, each connection pumped by iosim.

    @ivar clock: the reactor of both sides.
    @ivar factory: the acceptor's factory.
    """

    def __init__(self, entity=None, **factoryKwargs):
        self.clock = MemoryReactorClock()
        self.factory = AcceptorFactory(entity or verificationEntity(), reactor=self.clock, **factoryKwargs)

    def connect(
        self,
        contexts=((VERIFICATION_SOP_CLASS, UNCOMPRESSED),),
        clientTransportFactory=makeFakeClient,
        **connectKwargs,
    ):
        """
        Request an association and let the bytes flow until nothing moves.

        @param clientTransportFactory: makes the requestor's transport from
            its protocol.
        @return: C{(Deferred of connect(), IOPump)}; the pump's C{server}
            is the L{AcceptorProtocol}.
        """
        requested = connect(
            TCP4ClientEndpoint(self.clock, "127.0.0.1", PORT),
            calledAETitle="DICOMD",
            callingAETitle="TESTSCU",
            presentationContexts=list(contexts),
            reactor=self.clock,
            **connectKwargs,
        )
        host, port, clientFactory, _, _ = self.clock.tcpClients[-1]
        client = clientFactory.buildProtocol(IPv4Address("TCP", host, port))
        server = self.factory.buildProtocol(PEER)
        pump = iosim.connect(
            server,
            makeFakeServer(server),
            client,
            clientTransportFactory(client),
            clock=self.clock,
        )
        pump.flush()
        return requested, pump


class ARTIMTests(SynchronousTestCase):
    """
    The ARTIM timer of an acceptor waiting for an A-ASSOCIATE-RQ.
    """

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.factory = AcceptorFactory(verificationEntity(), reactor=self.clock, artimTimeout=30, idleTimeout=60)
        self.protocol = self.factory.buildProtocol(PEER)
        self.transport = StringTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)

    def test_expiryClosesSilentConnection(self):
        """
        A connection that sends nothing is closed, without a PDU, when the
        ARTIM timeout expires, and no timer outlives it.
        """
        self.clock.advance(29.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.transport.value(), b"")
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertIs(self.protocol.provider.state, State.Sta1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_truncatedRequestStillExpires(self):
        """
        Half an A-ASSOCIATE-RQ does not stop ARTIM: the connection is
        closed when it expires.
        """
        request = associateRequestBytes()
        self.protocol.dataReceived(request[: len(request) // 2])
        self.clock.advance(30)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.transport.value(), b"")

    def test_requestStopsARTIM(self):
        """
        A complete A-ASSOCIATE-RQ stops ARTIM: the association is accepted
        and still open after the ARTIM timeout.
        """
        self.protocol.dataReceived(associateRequestBytes())
        [accept] = splitPDUs(self.transport.value())
        self.assertIsInstance(accept, AAssociateAC)
        self.clock.advance(31)
        self.assertFalse(self.transport.disconnecting)
        self.assertIs(self.protocol.provider.state, State.Sta6)


class OnePDUAtATimeTests(SynchronousTestCase):
    """
    The protocol applies the outputs of each received PDU, answers
    included, before the provider reads the next one from the same chunk.
    """

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.factory = AcceptorFactory(verificationEntity(), reactor=self.clock)
        self.protocol = self.factory.buildProtocol(PEER)
        self.transport = StringTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)

    def test_wholeAssociationInOneRead(self):
        """
        An A-ASSOCIATE-RQ, a C-ECHO-RQ and an A-RELEASE-RQ read at once are
        answered as if each came alone: the association is accepted before
        the C-ECHO-RQ is read, and the echo answered before the release.
        """
        self.protocol.dataReceived(associateRequestBytes() + echoRequests(1, 1) + AReleaseRQ().encode())
        accept, response, release = splitPDUs(self.transport.value())
        self.assertIsInstance(accept, AAssociateAC)
        self.assertIsInstance(response, PDataTF)
        self.assertIsInstance(release, AReleaseRP)
        self.assertEqual(self.protocol.outcome, "released by the peer")
        self.assertIs(self.protocol.provider.state, State.Sta13)

    def test_pDUsAfterAbortNotRead(self):
        """
        PDUs that follow the peer's A-ABORT in the same read meet a closed
        connection: nothing more is written.
        """
        self.protocol.dataReceived(associateRequestBytes())
        self.transport.clear()
        self.protocol.dataReceived(AAbort(0, 0).encode() + echoRequests(1, 1) + AReleaseRQ().encode())
        self.assertEqual(self.transport.value(), b"")
        self.assertTrue(self.transport.disconnecting)
        self.assertIs(self.protocol.provider.state, State.Sta1)


class AssociationTests(SynchronousTestCase):
    """
    A requestor made by L{connect} and an acceptor made by
    L{AcceptorFactory}, connected in memory.
    """

    def test_echoAndRelease(self):
        """
        The association is established, C-ECHO answers success, and
        release closes the connection on both sides with no timer left.
        """
        network = Network()
        requested, pump = network.connect()
        association = self.successResultOf(requested)
        self.assertEqual(association.calledAETitle, "DICOMD")
        self.assertEqual(len(network.factory.associations), 1)
        echoed = association.echo()
        pump.flush()
        self.assertEqual(self.successResultOf(echoed), 0x0000)
        released = association.release()
        pump.flush()
        self.assertIsNone(self.successResultOf(released))
        server = pump.server
        self.assertEqual(association.protocol.outcome, "released")
        self.assertEqual(server.outcome, "released by the peer")
        self.assertEqual(server.association.counters, {"C-ECHO": {"success": 1}})
        self.assertIs(server.provider.state, State.Sta1)
        self.assertIs(association.protocol.provider.state, State.Sta1)
        self.assertEqual(network.factory.associations, set())
        self.assertEqual(network.clock.getDelayedCalls(), [])

    def test_releaseCollision(self):
        """
        When both sides request release at once (PS3.8 AR-8 to AR-10), the
        association is released cleanly on both sides: no A-ABORT, both
        connections closed, both state machines back in Sta1.
        """
        network = Network()
        requested, pump = network.connect()
        association = self.successResultOf(requested)
        server = pump.server
        clientClosed = association.release()
        serverClosed = server.association.release()
        pump.flush()
        self.assertIsNone(self.successResultOf(clientClosed))
        self.assertIsNone(self.successResultOf(serverClosed))
        self.assertIs(association.protocol.provider.state, State.Sta1)
        self.assertIs(server.provider.state, State.Sta1)
        self.assertFalse(association.protocol.outcome.startswith("aborted"), association.protocol.outcome)
        self.assertFalse(server.outcome.startswith("aborted"), server.outcome)
        self.assertEqual(network.clock.getDelayedCalls(), [])

    def test_responseAfterOurReleaseRequest(self):
        """
        A response that arrives after this side sent A-RELEASE-RQ (P-DATA
        in Sta7, PS3.8 AR-6) still completes its request, and the
        association is then released.
        """
        network = Network()
        requested, pump = network.connect()
        association = self.successResultOf(requested)
        echoed = association.echo()
        released = association.release()
        pump.flush()
        self.assertEqual(self.successResultOf(echoed), 0x0000)
        self.successResultOf(released)
        self.assertEqual(association.protocol.outcome, "released")

    def test_releaseTwice(self):
        """
        Asking to release an association twice sends one A-RELEASE-RQ;
        both calls' L{Deferred}s fire once the connection has closed.
        """
        network = Network()
        requested, pump = network.connect()
        association = self.successResultOf(requested)
        first = association.release()
        second = association.release()
        pump.flush()
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(second))
        self.assertEqual(association.protocol.outcome, "released")

    def test_requestWhileReleasing(self):
        """
        A request made after release() fails its L{Deferred} with an
        L{AssociationError} instead of raising, and the release completes.
        """
        network = Network()
        requested, pump = network.connect()
        association = self.successResultOf(requested)
        released = association.release()
        echoed = association.echo()
        self.failureResultOf(echoed, AssociationError)
        pump.flush()
        self.successResultOf(released)
        self.assertEqual(association.protocol.outcome, "released")

    def test_associationLimit(self):
        """
        With C{maximumAssociations=1}, a second association is rejected as
        transient, service provider (presentation), local limit exceeded
        while the first is open; once the first is released, a new one is
        accepted.
        """
        network = Network(maximumAssociations=1)
        firstRequested, firstPump = network.connect()
        first = self.successResultOf(firstRequested)

        secondRequested, secondPump = network.connect()
        rejection = self.failureResultOf(secondRequested, AssociationRejected).value
        self.assertEqual((rejection.reject.result, rejection.reject.source, rejection.reject.reason), (2, 3, 2))
        self.assertTrue(secondPump.clientIO.disconnected)
        self.assertEqual(secondPump.server.outcome, "rejected")

        released = first.release()
        firstPump.flush()
        self.successResultOf(released)
        thirdRequested, thirdPump = network.connect()
        third = self.successResultOf(thirdRequested)
        echoed = third.echo()
        thirdPump.flush()
        self.assertEqual(self.successResultOf(echoed), 0x0000)

    def test_associationLimitOnTheWire(self):
        """
        The rejection for one association too many is the A-ASSOCIATE-RJ
        PDU C{03 00 00000004 00 02 03 02}.
        """
        network = Network(maximumAssociations=1)
        requested, pump = network.connect()
        self.successResultOf(requested)
        second = network.factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        second.makeConnection(transport)
        second.dataReceived(associateRequestBytes())
        self.assertEqual(transport.value(), TOO_MANY)


class AbortTests(SynchronousTestCase):
    """
    A-ABORT in the middle of a message: a C-STORE whose command has been
    sent and whose data set is half sent, because the acceptor stopped
    reading.
    """

    def setUp(self):
        self.store = SilentService()
        entity = ApplicationEntity(
            "DICOMD",
            AcceptorPolicy({CT_IMAGE_STORAGE: UNCOMPRESSED}),
            {CStoreRQ.commandField: self.store},
        )
        self.network = Network(entity)
        requested, self.pump = self.network.connect(
            contexts=[(CT_IMAGE_STORAGE, [IMPLICIT_VR_LITTLE_ENDIAN])],
            clientTransportFactory=lambda protocol: CongestedTransport(protocol, False, window=100000),
        )
        self.association = self.successResultOf(requested)
        self.server = self.pump.server
        context = self.association.contextFor(CT_IMAGE_STORAGE)
        self.source = BytesSource(b"\x08\x00" * 1000000)
        self.stored = self.association.request(
            context.contextID,
            CStoreRQ(affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID="1.2.826.0.1.3680043.9.7433.2"),
            self.source,
        )
        self.pump.flush()
        [self.consumer] = self.store.consumers
        self.assertGreater(len(self.consumer.received), 0)
        self.assertLess(len(self.consumer.received), 2000000)
        self.assertGreater(self.source.length, 0)
        self.assertEqual((self.consumer.abandoned, self.consumer.finished, self.source.closed), ([], False, 0))

    def assertEndedEverywhere(self):
        """
        Both connections closed, both state machines idle, the source
        closed once, no timer left.
        """
        self.assertTrue(self.pump.clientIO.disconnected)
        self.assertTrue(self.pump.serverIO.disconnected)
        self.assertIs(self.association.protocol.provider.state, State.Sta1)
        self.assertIs(self.server.provider.state, State.Sta1)
        self.assertEqual(self.source.closed, 1)
        self.assertIsNone(self.pump.clientIO.producer)
        self.assertEqual(self.network.clock.getDelayedCalls(), [])

    def test_requestorAborts(self):
        """
        An A-ABORT from the requestor mid data set makes the acceptor
        abandon the consumer it was feeding; the requestor's outstanding
        request fails with L{AssociationAborted}; both connections close.
        """
        closed = self.association.abort()
        self.pump.flush()
        self.failureResultOf(self.stored, AssociationAborted)
        self.assertIsNone(self.successResultOf(closed))
        self.assertEqual(len(self.consumer.abandoned), 1)
        self.assertFalse(self.consumer.finished)
        self.assertTrue(self.server.outcome.startswith("aborted"), self.server.outcome)
        self.assertEndedEverywhere()

    def test_acceptorAborts(self):
        """
        An A-ABORT arriving at the requestor while its request is
        outstanding and its data set half sent fails that request with
        L{AssociationAborted} and stops the stream; the acceptor's consumer
        is abandoned.
        """
        closed = self.association.whenClosed()
        self.server.association.abort()
        self.pump.flush()
        failure = self.failureResultOf(self.stored, AssociationAborted)
        self.assertIn("A-ABORT", str(failure.value))
        self.assertIsNone(self.successResultOf(closed))
        self.assertEqual(len(self.consumer.abandoned), 1)
        self.assertTrue(self.association.protocol.outcome.startswith("aborted"))
        self.assertEndedEverywhere()

    def test_abortPDUFromThePeer(self):
        """
        An A-ABORT PDU that the peer writes between two data set fragments
        abandons the consumer, and the acceptor closes the connection.
        """
        self.pump.clientIO.write(AAbort(0, 0).encode())
        self.pump.flush()
        self.assertEqual(len(self.consumer.abandoned), 1)
        self.assertTrue(self.server.outcome.startswith("aborted"), self.server.outcome)
        self.failureResultOf(self.stored, AssociationAborted)
        self.assertEndedEverywhere()


class TimeoutTests(SynchronousTestCase):
    """
    The idle, ACSE and DIMSE timeouts.
    """

    def test_idleTimeoutAbortsMidPDU(self):
        """
        An association whose peer stops in the middle of a P-DATA-TF PDU
        is aborted with an A-ABORT and closed once the idle timeout has
        passed since the last byte.
        """
        clock = MemoryReactorClock()
        factory = AcceptorFactory(verificationEntity(), reactor=clock, idleTimeout=10)
        protocol = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        protocol.dataReceived(associateRequestBytes())
        transport.clear()
        clock.advance(8)
        # A P-DATA-TF announcing 100 bytes, of which 4 arrive.
        protocol.dataReceived(b"\x04\x00\x00\x00\x00\x64\x00\x00\x00\x60")
        clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        clock.advance(0.1)
        [abort] = splitPDUs(transport.value())
        self.assertIsInstance(abort, AAbort)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(protocol.outcome.startswith("aborted: idle timeout"), protocol.outcome)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_idleTimeoutSparesWaitingRequest(self):
        """
        The idle timeout does not abort an association on which the peer
        waits for our response (the service is working on it).
        """
        silent = SilentService()
        entity = ApplicationEntity("DICOMD", AcceptorPolicy({VERIFICATION_SOP_CLASS: UNCOMPRESSED}), {CEchoRQ.commandField: silent})
        network = Network(entity, idleTimeout=10)
        requested, pump = network.connect()
        association = self.successResultOf(requested)
        echoed = association.echo()
        pump.flush()
        self.assertEqual(len(silent.requests), 1)
        network.clock.advance(25)
        pump.flush()
        self.assertNoResult(echoed)
        self.assertFalse(pump.serverIO.disconnecting)

    def test_acseTimeout(self):
        """
        connect() fails with L{ACSETimeout} when the peer never answers the
        A-ASSOCIATE-RQ, sends an A-ABORT and closes the connection.
        """
        clock = MemoryReactorClock()
        peers = []

        def buildPeer():
            peer = SilentPeer()
            peers.append(peer)
            return peer

        TCP4ServerEndpoint(clock, PORT).listen(Factory.forProtocol(buildPeer))
        requested = connect(
            TCP4ClientEndpoint(clock, "127.0.0.1", PORT),
            presentationContexts=[(VERIFICATION_SOP_CLASS, UNCOMPRESSED)],
            reactor=clock,
            acseTimeout=15,
        )
        pump = ConnectionCompleter(clock).succeedOnce()
        pump.flush()
        [peer] = peers
        self.assertEqual(peer.received[:1], b"\x01")
        clock.advance(14.9)
        pump.flush()
        self.assertNoResult(requested)
        clock.advance(0.1)
        pump.flush()
        self.failureResultOf(requested, ACSETimeout)
        [request, abort] = splitPDUs(bytes(peer.received))
        self.assertIsInstance(request, AAssociateRQ)
        self.assertIsInstance(abort, AAbort)
        self.assertTrue(peer.lost)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_dimseTimeout(self):
        """
        A request with no response fails with L{DIMSETimeout} after the
        DIMSE timeout, and the association is aborted on both sides.
        """
        silent = SilentService()
        entity = ApplicationEntity("DICOMD", AcceptorPolicy({VERIFICATION_SOP_CLASS: UNCOMPRESSED}), {CEchoRQ.commandField: silent})
        network = Network(entity, idleTimeout=None)
        requested, pump = network.connect(dimseTimeout=5)
        association = self.successResultOf(requested)
        echoed = association.echo()
        pump.flush()
        network.clock.advance(4.9)
        pump.flush()
        self.assertNoResult(echoed)
        network.clock.advance(0.1)
        pump.flush()
        self.failureResultOf(echoed, DIMSETimeout)
        self.assertTrue(pump.server.outcome.startswith("aborted"), pump.server.outcome)
        self.assertTrue(pump.clientIO.disconnected)
        self.assertEqual(network.clock.getDelayedCalls(), [])

    def test_dimseTimeoutSparesSlowDataSet(self):
        """
        The DIMSE timer starts again whenever the peer reads a window of a
        data set still being sent: a large data set on a slow link outlasts
        the timeout, a peer that stops reading it does not.
        """
        store = SilentService()
        entity = ApplicationEntity("DICOMD", AcceptorPolicy({CT_IMAGE_STORAGE: UNCOMPRESSED}), {CStoreRQ.commandField: store})
        network = Network(entity, idleTimeout=None)
        transports = []

        def throttled(protocol):
            transports.append(ThrottledTransport(protocol, False, window=100000))
            return transports[-1]

        requested, pump = network.connect(
            contexts=[(CT_IMAGE_STORAGE, [IMPLICIT_VR_LITTLE_ENDIAN])], clientTransportFactory=throttled, dimseTimeout=5
        )
        association = self.successResultOf(requested)
        [link] = transports
        source = BytesSource(b"\x08\x00" * 1000000)
        stored = association.request(
            association.contextFor(CT_IMAGE_STORAGE).contextID,
            CStoreRQ(affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID="1.2.826.0.1.3680043.9.7433.2"),
            source,
        )
        pump.flush()
        for _ in range(5):
            network.clock.advance(4)
            link.drain()
            pump.flush()
        self.assertNoResult(stored)
        self.assertGreater(source.length, 0)
        network.clock.advance(5)
        pump.flush()
        self.failureResultOf(stored, DIMSETimeout)
        self.assertTrue(pump.server.outcome.startswith("aborted"), pump.server.outcome)


class MessageTimeoutTests(SynchronousTestCase):
    """
    The DIMSE timeout on a message the peer has begun sending: its next
    P-DATA-TF must arrive within it, or the association is aborted.
    """

    TIMEOUT = 3

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.store = SilentService()
        entity = ApplicationEntity("DICOMD", AcceptorPolicy({CT_IMAGE_STORAGE: UNCOMPRESSED}), {CStoreRQ.commandField: self.store})
        factory = AcceptorFactory(entity, reactor=self.clock, idleTimeout=60, dimseTimeout=self.TIMEOUT)
        self.protocol = factory.buildProtocol(PEER)
        self.transport = StringTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(associateRequestBytes(contexts=((CT_IMAGE_STORAGE, [IMPLICIT_VR_LITTLE_ENDIAN]),)))
        self.transport.clear()
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def send(self, isCommand: bool, data: bytes, isLast: bool = True) -> None:
        """
        One P-DATA-TF from the peer on the CT context (ID 1).
        """
        self.protocol.dataReceived(b"".join(bytes(piece) for piece in fragment(1, isCommand, data, len(data) or 1, isLast)))

    def sendCommand(self) -> None:
        request = CStoreRQ(messageID=1, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID="1.2.826.0.1.3680043.9.7433.3")
        self.send(True, encodeCommand(request))

    def assertOpen(self) -> None:
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)

    def assertAbortedByTimeout(self) -> None:
        """
        An A-ABORT was sent, the connection is closing, the outcome and
        one warning say why, and no timer outlives the connection.
        """
        [abort] = splitPDUs(self.transport.value())
        self.assertEqual(abort, AAbort(0, 0))
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.protocol.outcome, "aborted: DIMSE timeout")
        [warning] = [formatEvent(event) for event in self.events if event["log_level"] is LogLevel.warn]
        self.assertEqual(
            warning,
            "No P-DATA-TF from 127.0.0.1:50123 for 3 s (the DIMSE timeout) in the middle of a DIMSE message; aborting",
        )
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stalledDataSet(self):
        """
        A data set that stops halfway is abandoned (nothing is stored) and
        the association aborted once the DIMSE timeout has passed since
        its last fragment; each fragment gives it the whole timeout again.
        """
        self.sendCommand()
        self.send(False, b"\x08\x00" * 100, isLast=False)
        self.clock.advance(2)
        self.send(False, b"\x08\x00" * 100, isLast=False)
        self.clock.advance(2.5)
        self.assertOpen()
        [consumer] = self.store.consumers
        self.assertEqual(consumer.abandoned, [])
        self.clock.advance(0.5)
        self.assertEqual(len(consumer.abandoned), 1)
        self.assertFalse(consumer.finished)
        self.assertAbortedByTimeout()

    def test_dataSetAnnouncedNotSent(self):
        """
        A command set that announces a data set starts the timeout: the
        data set's first fragment must come within it.
        """
        self.sendCommand()
        self.clock.advance(2.9)
        self.assertOpen()
        self.clock.advance(0.1)
        self.assertAbortedByTimeout()

    def test_stalledCommandSet(self):
        """
        A command set that stops after its first fragment is aborted too.
        """
        command = encodeCommand(CStoreRQ(messageID=1, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID="1.2.3"))
        self.send(True, command[:20], isLast=False)
        self.clock.advance(2.9)
        self.assertOpen()
        self.clock.advance(0.1)
        self.assertAbortedByTimeout()

    def test_completeMessageStopsTimer(self):
        """
        Once the data set's last fragment has arrived the timer is gone:
        the service may take as long as it likes to answer, and the next
        message has the idle timeout to begin.
        """
        self.sendCommand()
        self.send(False, b"\x08\x00" * 100)
        [consumer] = self.store.consumers
        self.assertTrue(consumer.finished)
        [idle] = self.clock.getDelayedCalls()
        self.assertEqual(idle.getTime(), 60)
        self.clock.advance(30)
        self.assertOpen()

    def test_notWhilePaused(self):
        """
        While this side does not read (a slow disk) the peer cannot send,
        and the timeout does not run; reading again gives the peer the
        whole timeout.
        """
        self.sendCommand()
        self.send(False, b"\x08\x00" * 100, isLast=False)
        association = self.protocol.association
        association.pauseReceiving()
        self.clock.advance(20)
        self.assertOpen()
        association.resumeReceiving()
        self.clock.advance(2.9)
        self.assertOpen()
        self.clock.advance(0.1)
        self.assertAbortedByTimeout()

    def test_noTimerWithoutTimeout(self):
        """
        Without a DIMSE timeout no timer runs for a message: a stalled one
        is left to the idle timeout.
        """
        self.protocol.association.dimseTimeout = None
        self.sendCommand()
        self.send(False, b"\x08\x00" * 100, isLast=False)
        [idle] = self.clock.getDelayedCalls()
        self.assertEqual(idle.getTime(), 60)


class DebugLogTests(SynchronousTestCase):
    """
    At the debug level each PDU and each DIMSE message is logged, on both
    sides; below it nothing of that is built.
    """

    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def echo(self):
        """
        Associate, C-ECHO and release in memory.
        """
        network = Network()
        requested, pump = network.connect()
        association = self.successResultOf(requested)
        echoed = association.echo()
        pump.flush()
        self.assertEqual(self.successResultOf(echoed), 0x0000)
        association.release()
        pump.flush()

    def debugLines(self):
        return [formatEvent(event) for event in self.events if event["log_level"] is LogLevel.debug]

    def tracedPDUs(self, protocolClass):
        """
        The C{(direction, description)} of each PDU a side logged.
        """
        namespace = "%s.%s" % (protocolClass.__module__, protocolClass.__name__)
        return [(event["direction"], event["pdu"]) for event in self.events if event["log_namespace"] == namespace and "pdu" in event]

    def test_debug(self):
        """
        The acceptor logs the A-ASSOCIATE-RQ as received, the A-ASSOCIATE-AC
        sent, every P-DATA-TF, the release, and both DIMSE messages with
        their command fields; the requestor the same from its side.
        """
        self.patch(observers, "level", LogLevel.debug)
        self.echo()
        pdus = self.tracedPDUs(AcceptorProtocol)
        self.assertEqual(
            [(direction, description.split("\n")[0]) for direction, description in pdus],
            [
                ("from", "A-ASSOCIATE-RQ (PDU length 264)"),
                ("to", "A-ASSOCIATE-AC (PDU length 199)"),
                ("from", "P-DATA-TF (PDU length 74): command fragment (last), context 1, 68 bytes"),
                ("to", "P-DATA-TF (PDU length 84): command fragment (last), context 1, 78 bytes"),
                ("from", "A-RELEASE-RQ (PDU length 4)"),
                ("to", "A-RELEASE-RP (PDU length 4)"),
            ],
        )
        request, accept = pdus[0][1], pdus[1][1]
        self.assertIn("\n  Calling AE title: TESTSCU\n  Called AE title: DICOMD\n", request)
        self.assertIn(
            "\n  Presentation context 1\n    Abstract syntax: 1.2.840.10008.1.1 (Verification SOP Class)\n"
            "    Transfer syntax: 1.2.840.10008.1.2.1 (Explicit VR Little Endian)\n",
            request,
        )
        self.assertIn("\n    Implementation version name: DICOMD_", request)
        self.assertIn(
            "\n  Presentation context 1: acceptance\n    Abstract syntax: 1.2.840.10008.1.1 (Verification SOP Class)\n"
            "    Transfer syntax: 1.2.840.10008.1.2.1 (Explicit VR Little Endian)\n",
            accept,
        )
        lines = self.debugLines()
        self.assertIn(
            "DIMSE from TESTSCU on presentation context 1: C-ECHO-RQ\n"
            "  Affected SOP Class UID: 1.2.840.10008.1.1 (Verification SOP Class)\n"
            "  Message ID: 1\n"
            "  Data Set: none",
            lines,
        )
        self.assertIn(
            "DIMSE to TESTSCU on presentation context 1: C-ECHO-RSP\n"
            "  Affected SOP Class UID: 1.2.840.10008.1.1 (Verification SOP Class)\n"
            "  Message ID Being Responded To: 1\n"
            "  Status: 0x0000 Success\n"
            "  Data Set: none",
            lines,
        )
        # The requestor's side: the same PDUs the other way round.
        self.assertEqual(
            [(direction, description.split("\n")[0]) for direction, description in self.tracedPDUs(RequestorProtocol)],
            [({"from": "to", "to": "from"}[direction], description.split("\n")[0]) for direction, description in pdus],
        )
        self.assertEqual(len([line for line in lines if line.startswith("DIMSE to DICOMD on presentation context 1: C-ECHO-RQ\n")]), 1)
        self.assertEqual(len([line for line in lines if line.startswith("DIMSE from DICOMD on presentation context 1: C-ECHO-RSP\n")]), 1)

    def test_eventNotAllowed(self):
        """
        An event the state table has no action for is logged at the debug
        level: the requestor's connection closing after its A-RELEASE-RP
        closed it (Evt17 in Sta1).
        """
        self.patch(observers, "level", LogLevel.debug)
        self.echo()
        notAllowed = [line for line in self.debugLines() if "no action for" in line]
        self.assertEqual(len(notAllowed), 1, notAllowed)
        self.assertTrue(
            notAllowed[0].endswith(
                ": no action for Evt17 (Transport connection closed indication (local transport service)) in Sta1"
            ),
            notAllowed[0],
        )

    def test_belowDebug(self):
        """
        At the info level no debug event is emitted and no description is
        built: neither a PDU trace nor a command set's description.
        """

        def unwanted(*args, **kwargs):
            self.fail("a debug description was built below the debug level")

        self.patch(observers, "level", LogLevel.info)
        self.patch(protocolModule, "PDUTrace", unwanted)
        self.patch(Message, "describe", unwanted)
        self.echo()
        self.assertEqual(self.debugLines(), [])


class UnreadTransport(StringTransport):
    """
    A L{StringTransport} whose peer reads nothing until L{drain}: like
    Twisted's TCP transport it pauses its streaming producer once more than
    C{bufferSize} bytes wait (the protocol sets that size), and resumes it
    when they have all been written.  Its own C{producerState} says whether
    the protocol reads from it.

    @ivar producerAtClose: the producer registered when C{loseConnection}
        was called.
    """

    bufferSize = 65536

    def __init__(self, *args, **kwargs):
        StringTransport.__init__(self, *args, **kwargs)
        self.waiting = 0
        self.producerPaused = False
        self.producerAtClose = "never closed"

    def write(self, data):
        StringTransport.write(self, data)
        self.waiting += len(data)
        if self.producer is not None and self.streaming and self.waiting > self.bufferSize and not self.producerPaused:
            self.producerPaused = True
            self.producer.pauseProducing()

    def drain(self):
        """
        The peer read everything that waits.
        """
        self.waiting = 0
        if self.producer is not None and self.producerPaused:
            self.producerPaused = False
            self.producer.resumeProducing()

    def loseConnection(self):
        if not self.disconnecting:
            self.producerAtClose = self.producer
        StringTransport.loseConnection(self)


def echoRequests(first: int, count: int, contextID: int = 1) -> bytes:
    """
    C{count} C-ECHO-RQs in P-DATA-TF PDUs, message IDs from C{first}.
    """
    return b"".join(
        bytes(piece)
        for n in range(first, first + count)
        for piece in fragment(contextID, True, encodeCommand(CEchoRQ(messageID=n)), 16384)
    )


class WriteBackPressureTests(SynchronousTestCase):
    """
    A peer that pipelines requests and does not read the responses: the
    association's L{dicomd.net.sending.MessageSender} is the transport's
    push producer from the start, and a full write buffer stops the
    reading of requests until it drains, so the responses kept in memory
    are bounded by what one read brings.
    """

    #: More C-ECHO-RSPs (about 90 bytes each) than the protocol's 256 KiB
    #: write buffer holds.
    REQUESTS = 4000

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.factory = AcceptorFactory(verificationEntity(), reactor=self.clock, artimTimeout=30, idleTimeout=60)
        self.protocol = self.factory.buildProtocol(PEER)
        self.transport = UnreadTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(associateRequestBytes())
        [accept] = splitPDUs(self.transport.value())
        self.assertIsInstance(accept, AAssociateAC)
        self.transport.clear()
        self.transport.drain()
        self.sender = self.protocol.association._sender

    def responses(self) -> list:
        return [pdu for pdu in splitPDUs(self.transport.value()) if isinstance(pdu, PDataTF)]

    def assertReading(self, reading: bool) -> None:
        self.assertEqual(self.transport.producerState, "producing" if reading else "paused")

    def test_registeredForTheAssociation(self):
        """
        The sender is the transport's streaming producer as soon as the
        association is established, before any data set.
        """
        self.assertIs(self.transport.producer, self.sender)
        self.assertTrue(self.transport.streaming)
        self.assertReading(True)

    def test_pipelinedEchoesPauseReading(self):
        """
        C-ECHO-RQs whose responses fill the write buffer pause the sender
        and the reading of the peer; every request already read is still
        answered, in order; once the buffer drains, reading resumes.
        """
        self.protocol.dataReceived(echoRequests(1, self.REQUESTS))
        self.assertTrue(self.transport.producerPaused)
        self.assertTrue(self.sender.blocked)
        self.assertReading(False)
        responses = self.responses()
        self.assertEqual(len(responses), self.REQUESTS)
        self.assertGreater(self.transport.waiting, self.transport.bufferSize)
        self.transport.drain()
        self.assertFalse(self.sender.blocked)
        self.assertReading(True)
        self.assertIs(self.transport.producer, self.sender)

    def test_storagePauseIndependent(self):
        """
        A consumer's read pause and the sender's are counted apart:
        reading resumes only when both are over, in either order.
        """
        association = self.protocol.association
        association.pauseReceiving()
        self.protocol.dataReceived(echoRequests(1, self.REQUESTS))
        self.assertReading(False)
        self.transport.drain()
        self.assertReading(False)
        association.resumeReceiving()
        self.assertReading(True)
        self.protocol.dataReceived(echoRequests(1, self.REQUESTS))
        association.pauseReceiving()
        association.resumeReceiving()
        self.assertReading(False)
        self.transport.drain()
        self.assertReading(True)

    def test_releaseWhileBlocked(self):
        """
        An A-RELEASE-RQ read with the pipelined requests is answered after
        all their responses; the sender is no longer the producer, so the
        connection can close.
        """
        self.protocol.dataReceived(echoRequests(1, self.REQUESTS) + AReleaseRQ().encode())
        pdus = splitPDUs(self.transport.value())
        self.assertEqual(len(pdus), self.REQUESTS + 1)
        self.assertIsInstance(pdus[-1], AReleaseRP)
        self.assertIsNone(self.transport.producer)
        self.assertIs(self.protocol.provider.state, State.Sta13)
        # Reading again, to see the peer close the connection.
        self.assertReading(True)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_idleTimeoutWhileBlocked(self):
        """
        A peer that never reads is aborted by the idle timeout; the sender
        is unregistered before the transport is asked to close, and when
        the peer still has not read what waits when the ARTIM timer
        expires, the connection is closed at once.
        """
        self.protocol.dataReceived(echoRequests(1, self.REQUESTS))
        self.assertReading(False)
        self.clock.advance(60)
        self.assertTrue(self.protocol.outcome.startswith("aborted: idle timeout"), self.protocol.outcome)
        self.assertIsInstance(splitPDUs(self.transport.value())[-1], AAbort)
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producerAtClose)
        self.assertIsNone(self.transport.producer)
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(30)
        self.assertTrue(self.transport.disconnected)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connectionLostWhileBlocked(self):
        """
        A connection lost while the sender is blocked lets the sender go
        (Twisted calls C{stopProducing} too; the second call changes
        nothing).
        """
        self.protocol.dataReceived(echoRequests(1, self.REQUESTS))
        self.assertTrue(self.sender.blocked)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertFalse(self.sender.blocked)
        self.assertIsNone(self.transport.producer)
        self.sender.stopProducing()
        self.assertEqual(self.clock.getDelayedCalls(), [])


@implementer(IWriteDescriptor)
class DescriptorTransport(StringTransport):
    """
    A L{StringTransport} that is also the reactor's write descriptor, as
    Twisted's TCP transports are: C{doWrite} records how much had been
    written when it was called.
    """

    connected = True

    def __init__(self, *args, **kwargs):
        StringTransport.__init__(self, *args, **kwargs)
        self.flushedAt = []

    def doWrite(self):
        self.flushedAt.append(len(self.value()))

    def fileno(self):
        return -1

    def connectionLost(self, reason):
        pass


class FlushTests(SynchronousTestCase):
    """
    What the protocol writes while handling a chunk it read is handed to
    the kernel before it returns, not on the reactor's next iteration.
    """

    def setUp(self):
        factory = AcceptorFactory(verificationEntity(), reactor=MemoryReactorClock())
        self.protocol = factory.buildProtocol(PEER)
        self.transport = DescriptorTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)

    def test_flushedOncePerRead(self):
        """
        The A-ASSOCIATE-AC, and then the answers to three C-ECHO-RQs read in
        one chunk, are each flushed once, whole.
        """
        self.protocol.dataReceived(associateRequestBytes())
        self.assertEqual(self.transport.flushedAt, [len(self.transport.value())])
        self.protocol.dataReceived(echoRequests(1, 3))
        self.assertEqual(len(splitPDUs(self.transport.value())), 4)
        self.assertEqual(self.transport.flushedAt[1:], [len(self.transport.value())])

    def test_nothingWrittenNothingFlushed(self):
        """
        A read that makes no answer (part of a PDU) flushes nothing.
        """
        self.protocol.dataReceived(associateRequestBytes()[:10])
        self.assertEqual(self.transport.flushedAt, [])

    def test_notWhileClosing(self):
        """
        Once the transport is closing, what is written is left to the
        reactor, whose write that empties the buffer also closes it.
        """
        self.transport.loseConnection()
        self.protocol.dataReceived(associateRequestBytes())
        self.assertTrue(splitPDUs(self.transport.value()))
        self.assertEqual(self.transport.flushedAt, [])

    def test_writeDescriptor(self):
        """
        L{writeDescriptor} finds the descriptor itself, or under a TLS
        transport, and C{None} for a transport that is not one.
        """
        descriptor = DescriptorTransport()
        wrapper = StringTransport()
        wrapper.transport = descriptor
        self.assertIs(writeDescriptor(descriptor), descriptor)
        self.assertIs(writeDescriptor(wrapper), descriptor)
        self.assertIsNone(writeDescriptor(StringTransport()))


class _Connection(tcp.Connection):
    """
    A Twisted TCP connection made from a connected socket, as the reactor
    makes one.
    """

    def getPeer(self):
        return PEER


class SendNowTests(SynchronousTestCase):
    """
    L{sendNow} writes PDUs straight to the socket of a real TCP transport
    (a Twisted C{tcp.Connection} on one end of a socket pair) while its
    buffer is empty, and leaves the rest to the transport, in order.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        ours = socket.create_connection(listener.getsockname())
        self.addCleanup(ours.close)
        self.peer, _ = listener.accept()
        self.addCleanup(self.peer.close)
        self.transport = _Connection(ours, Protocol(), self.reactor)
        self.transport.connected = True

    def received(self) -> bytes:
        """
        Everything the peer can read now.
        """
        self.peer.setblocking(False)
        chunks = []
        while True:
            try:
                chunk = self.peer.recv(1 << 20)
            except BlockingIOError:
                return b"".join(chunks)
            chunks.append(chunk)

    def test_piecesSentWithoutTheReactor(self):
        """
        Bytes and memoryview pieces go in one call, in order, and the
        transport never registers for writing.
        """
        data = bytes(range(256)) * 4
        self.assertTrue(sendNow(self.transport, [b"head", memoryview(data)[10:500], b"tail"]))
        self.assertTrue(sendNow(self.transport, b"single"))
        self.assertEqual(self.received(), b"head" + data[10:500] + b"tail" + b"single")
        self.assertEqual(self.reactor.getWriters(), [])

    def test_restBufferedInOrder(self):
        """
        What the kernel does not take waits in the transport's buffer, and
        while it does, L{sendNow} takes nothing: the caller writes to the
        transport, behind it.  The peer gets every byte in order.
        """
        self.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = bytes(range(251)) * 2000
        self.assertTrue(sendNow(self.transport, [b"<", memoryview(big), b">"]))
        self.assertEqual(self.reactor.getWriters(), [self.transport])
        self.assertFalse(sendNow(self.transport, b"later"))
        self.transport.write(b"later")
        got = []
        while self.reactor.getWriters():
            got.append(self.received())
            self.transport.doWrite()
        got.append(self.received())
        self.assertEqual(b"".join(got), b"<" + big + b">later")

    def test_notWhileClosing(self):
        """
        A closing transport takes writes itself: its last write closes it.
        """
        self.transport.disconnecting = True
        self.assertFalse(sendNow(self.transport, b"x"))
        self.assertEqual(self.received(), b"")

    def test_notOverTLS(self):
        """
        A TCP transport that started TLS must encrypt what it writes: it
        takes its writes itself.
        """
        self.transport.TLS = True
        self.assertFalse(sendNow(self.transport, [b"x"]))
        self.assertEqual(self.received(), b"")

    def test_failedSocketLeftToTheTransport(self):
        """
        A socket that fails the write (the peer is gone) is left to the
        transport, which finds the failure when it writes.
        """
        # Closed with a reset, which a loopback connection delivers at once.
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.peer.close()
        self.assertFalse(sendNow(self.transport, [b"x" * 100]))

    def test_protocolUsesItOnlyOnPlainTCP(self):
        """
        The protocol sends straight to the socket of a TCP connection, and
        not through a wrapping (TLS) transport or to a test double.
        """
        factory = AcceptorFactory(verificationEntity(), reactor=MemoryReactorClock())
        plain = factory.buildProtocol(PEER)
        plain.makeConnection(self.transport)
        self.assertIs(plain._directConnection, self.transport)
        # A wrapper, as Twisted's TLS protocol is one, passes the
        # connection's interfaces and attributes (its socket) through.
        wrapper = WrappingFactory(factory).buildProtocol(PEER)
        wrapper.makeConnection(self.transport)
        self.assertIsNone(wrapper.wrappedProtocol._directConnection)
        double = factory.buildProtocol(PEER)
        double.makeConnection(DescriptorTransport(peerAddress=PEER))
        self.assertIsNone(double._directConnection)


class ReadDirectlyTests(SynchronousTestCase):
    """
    On a plain TCP connection the protocol reads the socket itself, into
    its provider's receiving buffer, in place of the transport's C{doRead}.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        ours = socket.create_connection(listener.getsockname())
        ours.setblocking(False)
        self.addCleanup(ours.close)
        self.peer, _ = listener.accept()
        self.addCleanup(self.peer.close)
        self.transport = _Connection(ours, Protocol(), self.reactor)
        self.transport.connected = True
        self.protocol = AcceptorFactory(verificationEntity(), reactor=self.reactor).buildProtocol(PEER)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    def answer(self) -> list:
        """
        The PDUs the protocol sent to the peer, as (type, body) pairs,
        once the peer has them all.
        """
        self.peer.settimeout(5)
        data = b""
        while True:
            if len(data) >= 6 and len(data) >= 6 + struct.unpack_from(">L", data, 2)[0]:
                break
            data += self.peer.recv(1 << 16)
        pdus = []
        while data:
            length = struct.unpack_from(">L", data, 2)[0]
            pdus.append((data[0], data[6 : 6 + length]))
            data = data[6 + length :]
        return pdus

    def test_echoThroughTheProvidersBuffer(self):
        """
        An association request and a C-ECHO read by the protocol itself,
        the C-ECHO in pieces, are answered; the transport's reads are the
        protocol's.
        """
        self.assertEqual(self.transport.doRead, self.protocol._readDirectly)
        request = AAssociateRQ(
            "DICOMD", "ECHOSCU", proposePresentationContexts([(VERIFICATION_SOP_CLASS, UNCOMPRESSED)]), UserInformation(maximumLength=16384)
        )
        self.peer.sendall(request.encode())
        self.assertIsNone(self.transport.doRead())
        [(pduType, _)] = self.answer()
        self.assertEqual(pduType, 0x02)
        echo = b"".join(bytes(piece) for piece in fragment(1, True, encodeCommand(CEchoRQ(messageID=7, affectedSOPClassUID=VERIFICATION_SOP_CLASS)), 16372))
        for start in range(0, len(echo), 9):
            self.peer.sendall(echo[start : start + 9])
            self.assertIsNone(self.transport.doRead())
        [(pduType, body)] = self.answer()
        self.assertEqual(pduType, 0x04)
        response = decodePDU(pduType, body).values[0]
        self.assertEqual(bytes(response.data)[-2:], b"\x00\x00")

    def test_nothingWaiting(self):
        """
        A read with nothing to read ends nothing.
        """
        self.assertIsNone(self.transport.doRead())

    def test_endOfStream(self):
        """
        The peer closing the connection ends it as done.
        """
        self.peer.shutdown(socket.SHUT_WR)
        self.assertIs(self.transport.doRead(), CONNECTION_DONE)

    def test_reset(self):
        """
        The peer resetting the connection ends it as lost.
        """
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.peer.close()
        self.assertIs(self.transport.doRead(), CONNECTION_LOST)

    def test_tlsStartedReadsThroughTheTransport(self):
        """
        A connection that started TLS reads with the transport's own
        method, which hands the bytes to its TLS layer.
        """
        read = []
        self.transport.TLS = True
        self.transport.protocol = Protocol()
        self.transport.protocol.dataReceived = read.append
        self.peer.sendall(b"ciphertext")
        self.assertIsNone(self.transport.doRead())
        self.assertEqual(read, [b"ciphertext"])
        self.assertIsNone(self.protocol.provider._store)

    def test_letGoWhenTheConnectionEnds(self):
        """
        Once the connection is lost the transport reads with its own method
        again, and holds the protocol no more.
        """
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertNotIn("doRead", vars(self.transport))

    def test_notThroughAWrapper(self):
        """
        Under a wrapping transport (TLS is one) the connection keeps its own
        reads.
        """
        transport = _Connection(socket.socket(), Protocol(), self.reactor)
        transport.connected = True
        self.addCleanup(transport.socket.close)
        wrapper = WrappingFactory(AcceptorFactory(verificationEntity(), reactor=self.reactor)).buildProtocol(PEER)
        wrapper.makeConnection(transport)
        self.assertNotIn("doRead", vars(transport))


class NoDelayTests(SynchronousTestCase):
    """
    Both sides turn Nagle's algorithm off on their TCP transport.
    """

    def test_acceptor(self):
        """
        An acceptor's protocol calls C{setTcpNoDelay(True)} when connected.
        """
        factory = AcceptorFactory(verificationEntity(), reactor=MemoryReactorClock())
        protocol = factory.buildProtocol(PEER)
        transport = NoDelayRecordingTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        self.assertEqual(transport.noDelayCalls, [True])

    def test_requestor(self):
        """
        A requestor's protocol, built by L{connect}, calls
        C{setTcpNoDelay(True)} when connected.
        """
        clock = MemoryReactorClock()
        connect(
            TCP4ClientEndpoint(clock, "127.0.0.1", PORT),
            presentationContexts=[(VERIFICATION_SOP_CLASS, UNCOMPRESSED)],
            reactor=clock,
        )
        [(host, port, factory, timeout, bindAddress)] = clock.tcpClients
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = NoDelayRecordingTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        self.assertEqual(transport.noDelayCalls, [True])
        self.assertEqual(transport.value()[:1], b"\x01")

    def test_interfaces(self):
        """
        The test doubles provide the interfaces dicomd expects of services
        and consumers, so the other tests exercise the real contract.
        """
        self.assertTrue(verifyObject(IService, SilentService()))
        self.assertTrue(verifyObject(IDataSetSource, BytesSource(b"")))
        self.assertTrue(verifyObject(IDataSetConsumer, RecordingConsumer()))
