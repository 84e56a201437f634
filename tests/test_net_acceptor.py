"""
Tests for L{dicomd.net.acceptor}: several AEs on one listening port chosen
by called AE title, the hooks an L{ApplicationEntity} has around
negotiation, and the factory's count of open connections.

Each test plays the requestor byte by byte on a L{StringTransport}; timers
run on a L{MemoryReactorClock}.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from dicomd.dimse.commands import CStoreRQ
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
from dicomd.net.acceptor import AcceptorFactory, ApplicationEntity
from dicomd.ul.negotiation import (
    CALLED_AE_TITLE_NOT_RECOGNIZED,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    AcceptorPolicy,
    proposePresentationContexts,
)
from dicomd.ul.pdu import AAssociateAC, AAssociateRJ, AAssociateRQ, AReleaseRQ, UserInformation, decodePDU
from tests.support import verificationEntity

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

PEER = IPv4Address("TCP", "127.0.0.1", 50123)


def requestBytes(calledAETitle, contexts=((VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN]),)):
    """
    An encoded A-ASSOCIATE-RQ from C{TESTSCU} to C{calledAETitle}.
    """
    return AAssociateRQ(
        calledAETitle,
        "TESTSCU",
        proposePresentationContexts(contexts),
        UserInformation(maximumLength=16384, implementationClassUID="1.2.826.0.1.3680043.9.7433.1"),
    ).encode()


def answerTo(factory, data):
    """
    Connect to C{factory}, send C{data}, and decode the one PDU answered.

    @return: C{(pdu, protocol, transport)}.
    """
    protocol = factory.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    protocol.dataReceived(data)
    answer = transport.value()
    length = int.from_bytes(answer[2:6], "big")
    return decodePDU(answer[0], memoryview(answer[6 : 6 + length])), protocol, transport


def storageEntity(title):
    """
    An AE accepting CT Image Storage only, in explicit VR little endian,
    with a C-STORE service that is never called.
    """
    return ApplicationEntity(title, AcceptorPolicy({CT_IMAGE_STORAGE: (EXPLICIT_VR_LITTLE_ENDIAN,)}), {CStoreRQ.commandField: object()})


class EntitiesByCalledAETitleTests(SynchronousTestCase):
    """
    An L{AcceptorFactory} with C{entities}: each association goes to the
    AE of its called AE title.
    """

    def setUp(self):
        self.echo = verificationEntity("ECHO")
        self.store = storageEntity("STORE")
        self.factory = AcceptorFactory(entities={"ECHO": self.echo, "STORE": self.store}, reactor=MemoryReactorClock())

    def test_negotiatedByCalledAE(self):
        """
        The called AE's policy answers the presentation contexts, and its
        services serve the association.
        """
        contexts = ((VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN]), (CT_IMAGE_STORAGE, [EXPLICIT_VR_LITTLE_ENDIAN]))
        accept, protocol, _ = answerTo(self.factory, requestBytes("STORE", contexts))
        self.assertIsInstance(accept, AAssociateAC)
        self.assertEqual([context.accepted for context in accept.presentationContexts], [False, True])
        self.assertIs(protocol.association.services, self.store.services)
        accept, protocol, _ = answerTo(self.factory, requestBytes("ECHO", contexts))
        self.assertEqual([context.accepted for context in accept.presentationContexts], [True, False])
        self.assertIs(protocol.association.services, self.echo.services)

    def test_unknownCalledAETitle(self):
        """
        An association calling an AE title none of the AEs has is rejected:
        permanent, service user, called AE title not recognized.
        """
        reject, protocol, _ = answerTo(self.factory, requestBytes("NOBODY"))
        self.assertEqual(reject, AAssociateRJ(1, 1, 7))
        self.assertEqual(reject, CALLED_AE_TITLE_NOT_RECOGNIZED)
        self.assertIsNone(protocol.association)
        self.assertEqual(self.factory.associations, set())

    def test_entityFor(self):
        """
        L{AcceptorFactory.entityFor} finds an AE by its exact title.
        """
        self.assertIs(self.factory.entityFor("STORE"), self.store)
        self.assertIsNone(self.factory.entityFor("store"))

    def test_receiveLimitOfLargestEntity(self):
        """
        Before the called AE title is known, a connection receives PDUs as
        long as the largest limit of the AEs; one without limit (0) lifts
        it; with no AE at all, the default of 16384 holds.
        """
        self.echo.maximumLength = 4096
        self.store.maximumLength = 65536
        self.assertEqual(self.factory.buildProtocol(PEER).provider.maximumLength, 65536)
        self.store.maximumLength = 0
        self.assertEqual(self.factory.buildProtocol(PEER).provider.maximumLength, 0)
        empty = AcceptorFactory(entities={}, reactor=MemoryReactorClock())
        self.assertEqual(empty.buildProtocol(PEER).provider.maximumLength, 16384)


class SingleEntityTests(SynchronousTestCase):
    """
    An L{AcceptorFactory} with one C{entity}, as C{storescp} uses it.
    """

    def test_anyCalledAETitle(self):
        """
        The one AE answers whatever AE title is called, unless it names
        the titles it answers to.
        """
        factory = AcceptorFactory(verificationEntity("DICOMD"), reactor=MemoryReactorClock())
        accept, _, _ = answerTo(factory, requestBytes("ANYTHING"))
        self.assertIsInstance(accept, AAssociateAC)
        factory = AcceptorFactory(verificationEntity("DICOMD", calledAETitles=["DICOMD"]), reactor=MemoryReactorClock())
        reject, _, _ = answerTo(factory, requestBytes("ANYTHING"))
        self.assertEqual(reject, CALLED_AE_TITLE_NOT_RECOGNIZED)

    def test_entityOrEntities(self):
        """
        A factory takes exactly one of C{entity} and C{entities}.
        """
        entity = verificationEntity()
        self.assertRaises(TypeError, AcceptorFactory, reactor=MemoryReactorClock())
        self.assertRaises(TypeError, AcceptorFactory, entity, entities={"DICOMD": entity}, reactor=MemoryReactorClock())


class RecordingEntity(ApplicationEntity):
    """
    A Verification AE that records its hooks' calls and rejects the peers
    listed in C{refused}.
    """

    def __init__(self, title, refused=()):
        ApplicationEntity.__init__(self, title, AcceptorPolicy({VERIFICATION_SOP_CLASS: (IMPLICIT_VR_LITTLE_ENDIAN,)}), {})
        self.refused = refused
        self.admitted = []
        self.negotiated = []
        self.established = []

    def admit(self, request, peerAddress):
        self.admitted.append((request.callingAETitle, peerAddress))
        if request.callingAETitle in self.refused:
            return AAssociateRJ(1, 1, 3)
        return None

    def negotiate(self, request):
        self.negotiated.append(request.callingAETitle)
        return ApplicationEntity.negotiate(self, request)

    def associationEstablished(self, association):
        self.established.append(association)


class EntityHookTests(SynchronousTestCase):
    """
    L{ApplicationEntity.admit} and L{ApplicationEntity.associationEstablished}
    around negotiation.
    """

    def test_defaults(self):
        """
        An L{ApplicationEntity} admits every peer, and ignores established
        associations.
        """
        entity = verificationEntity()
        self.assertIsNone(entity.admit(AAssociateRQ("DICOMD", "TESTSCU", []), PEER))
        self.assertIsNone(entity.associationEstablished(object()))

    def test_admitRejects(self):
        """
        A rejection from C{admit}, which sees the peer's address, is sent
        without negotiating.
        """
        entity = RecordingEntity("DICOMD", refused=("TESTSCU",))
        factory = AcceptorFactory(entities={"DICOMD": entity}, reactor=MemoryReactorClock())
        reject, protocol, _ = answerTo(factory, requestBytes("DICOMD"))
        self.assertEqual(reject, AAssociateRJ(1, 1, 3))
        self.assertEqual(entity.admitted, [("TESTSCU", PEER)])
        self.assertEqual(entity.negotiated, [])
        self.assertEqual(protocol.outcome, "rejected")

    def test_admitBeforeAssociationLimit(self):
        """
        A peer that C{admit} refuses gets that rejection even when the
        association limit is reached.
        """
        entity = RecordingEntity("DICOMD", refused=("TESTSCU",))
        factory = AcceptorFactory(entity, reactor=MemoryReactorClock(), maximumAssociations=0)
        reject, _, _ = answerTo(factory, requestBytes("DICOMD"))
        self.assertEqual(reject, AAssociateRJ(1, 1, 3))

    def test_established(self):
        """
        C{associationEstablished} is called with each accepted association,
        once the A-ASSOCIATE-AC is on its way.
        """
        entity = RecordingEntity("DICOMD")
        factory = AcceptorFactory(entity, reactor=MemoryReactorClock())
        accept, protocol, transport = answerTo(factory, requestBytes("DICOMD"))
        self.assertIsInstance(accept, AAssociateAC)
        self.assertEqual(entity.negotiated, ["TESTSCU"])
        self.assertEqual(entity.established, [protocol.association])

    def test_observers(self):
        """
        Negotiation observers see each request with its answer, association
        observers each accepted association after C{associationEstablished}.
        """
        entity = RecordingEntity("DICOMD")
        seen = []
        entity.addNegotiationObserver(lambda request, answer: seen.append((request.callingAETitle, type(answer))))
        entity.addAssociationObserver(lambda association: seen.append((association, list(entity.established))))
        factory = AcceptorFactory(entity, reactor=MemoryReactorClock())
        _, protocol, _ = answerTo(factory, requestBytes("DICOMD"))
        self.assertEqual(seen, [("TESTSCU", AAssociateAC), (protocol.association, [protocol.association])])


class ConnectionTrackingTests(SynchronousTestCase):
    """
    L{AcceptorFactory.connections} and L{AcceptorFactory.whenIdle}.
    """

    def setUp(self):
        self.factory = AcceptorFactory(verificationEntity(), reactor=MemoryReactorClock())

    def test_idleAtOnce(self):
        """
        With no connection open, C{whenIdle} has fired already.
        """
        self.assertIsNone(self.successResultOf(self.factory.whenIdle()))

    def test_idleWhenLastConnectionCloses(self):
        """
        C{whenIdle} fires when the last open connection closes, whether its
        association was accepted or rejected.
        """
        _, accepted, _ = answerTo(self.factory, requestBytes("DICOMD"))
        _, rejected, _ = answerTo(self.factory, requestBytes("DICOMD", contexts=()))
        self.assertEqual(self.factory.connections, {accepted, rejected})
        idle = self.factory.whenIdle()
        accepted.dataReceived(AReleaseRQ().encode())
        accepted.connectionLost(Failure(ConnectionDone()))
        self.assertNoResult(idle)
        self.assertEqual(self.factory.connections, {rejected})
        rejected.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(self.successResultOf(idle))
        self.assertEqual(self.factory.connections, set())
        self.assertEqual(self.factory.associations, set())


class PendingConnectionTests(SynchronousTestCase):
    """
    Connections that have not sent their A-ASSOCIATE-RQ: beyond
    C{maximumPendingConnections} the oldest is closed, and a flood of them
    is logged as a count per second, not a line each.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.factory = AcceptorFactory(verificationEntity(), reactor=self.reactor, maximumPendingConnections=2)
        self.events = []
        self.factory.log = Logger(observer=self.events.append)

    def connect(self):
        proto = self.factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1234))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 1234))
        proto.makeConnection(transport)
        return transport

    def warnings(self):
        return [formatEvent(event) for event in self.events if event["log_level"] == LogLevel.warn]

    def test_oldestClosed(self):
        """The third silent connection closes the first."""
        first, second, third = self.connect(), self.connect(), self.connect()
        self.assertEqual([first.disconnecting, second.disconnecting, third.disconnecting], [True, False, False])

    def test_floodCounted(self):
        """A flood logs its first closed connection at once, then the others as one count per interval."""
        transports = [self.connect() for _ in range(12)]
        self.assertEqual(sum(transport.disconnecting for transport in transports), 10)
        [first] = self.warnings()
        self.assertIn("10.0.0.1", first)
        self.reactor.advance(self.factory.EVICTION_REPORT_INTERVAL)
        self.assertEqual(len(self.warnings()), 2)
        self.assertIn("Closed 9 more connections", self.warnings()[1])
        self.reactor.advance(self.factory.EVICTION_REPORT_INTERVAL)
        self.assertEqual(len(self.warnings()), 2)
        self.assertEqual([call for call in self.reactor.getDelayedCalls() if call.func == self.factory._reportEvictions], [])
        self.connect()
        self.assertEqual(len(self.warnings()), 3)
