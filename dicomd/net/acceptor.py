"""
Accepting associations (PS3.8 section 7.1, acceptor side).

An L{ApplicationEntity} describes a local AE: its title, what it accepts
and which services carry its operations.  L{AcceptorFactory} is the Twisted
factory for any listening endpoint: it builds an L{AcceptorProtocol} per
connection, enforces the limit on simultaneous associations and hands each
A-ASSOCIATE indication to an AE to negotiate: to its one AE, or, when it
serves several AE titles on one port (as dcmqrscp does), to the AE named
by the called AE title, rejecting an unknown one.

L{AcceptorProtocol.associateIndication} decides admission: on a
C{dicomtls:} endpoint that binds calling AE titles to certificates, the
peer's certificate must match the binding of the title it calls with
(L{dicomd.tls.certificates.certificateBindingAllows}); then the called AE
title must name an AE, the AE must admit the peer, and one more association
must fit the limits.
"""

from collections import OrderedDict
from typing import Callable, Mapping, Optional

from twisted.internet import defer, protocol
from twisted.logger import Logger

from dicomd import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomd.errors import describeRejection
from dicomd.net.association import Association
from dicomd.net.protocol import AssociationProtocol, peerCertificate, tlsOptionsOf
from dicomd.tls.certificates import certificateBindingAllows
from dicomd.ul.negotiation import (
    CALLED_AE_TITLE_NOT_RECOGNIZED,
    CALLING_AE_TITLE_NOT_RECOGNIZED,
    TOO_MANY_ASSOCIATIONS,
    AcceptorPolicy,
    acceptPresentationContexts,
    answerAsynchronousOperationsWindow,
    checkAssociationRequest,
    invocationWindow,
)
from dicomd.ul.pdu import (
    REJECT_REASON_NO_REASON,
    REJECT_RESULT_PERMANENT,
    REJECT_SOURCE_SERVICE_USER,
    AAssociateAC,
    AAssociateRJ,
    UserInformation,
)
from dicomd.ul.provider import ULProvider


class ApplicationEntity:
    """
    A local application entity: what it accepts and what serves it.

    @ivar title: our AE title.
    @ivar policy: the L{AcceptorPolicy} for presentation contexts.
    @ivar services: command field -> L{dicomd.interfaces.IService}.
    @ivar calledAETitles: the called AE titles accepted, or C{None} for any
        (storescp's behaviour).
    @ivar callingAETitles: the calling AE titles accepted, or C{None}.
    @ivar requireImplementationClassUID: reject requests without one.
    @ivar refuseAll: reject every association (storescp's C{--refuse}).
    @ivar maximumLength: the maximum P-DATA-TF length we advertise.
    @ivar maximumAsynchronousOperations: the most C-STOREs, C-FINDs...
        a requestor may send before their responses, when it proposes an
        Asynchronous Operations Window (PS3.7 D.3.3.3); 1 grants none.

    Subclasses change what it decides (L{admit}, L{negotiate}) and follow
    its associations (L{associationEstablished}); anything else follows
    them as an observer (L{addNegotiationObserver},
    L{addAssociationObserver}), so that nobody replaces methods on a live
    AE.
    """

    def __init__(
        self,
        title: str = "DICOMD",
        policy: Optional[AcceptorPolicy] = None,
        services: Optional[Mapping[int, object]] = None,
        *,
        calledAETitles=None,
        callingAETitles=None,
        requireImplementationClassUID: bool = False,
        refuseAll: bool = False,
        maximumLength: int = 16384,
        maximumAsynchronousOperations: int = 1,
    ):
        self.title = title
        self.policy = policy or AcceptorPolicy({})
        self.services = dict(services or {})
        self.calledAETitles = calledAETitles
        self.callingAETitles = callingAETitles
        self.requireImplementationClassUID = requireImplementationClassUID
        self.refuseAll = refuseAll
        self.maximumLength = maximumLength
        self.maximumAsynchronousOperations = maximumAsynchronousOperations
        self._negotiationObservers = []
        self._associationObservers = []

    def addNegotiationObserver(self, observer: Callable[[object, object], None]) -> None:
        """
        Call C{observer(request, answer)} with each A-ASSOCIATE-RQ this AE
        negotiates and its answer, an L{AAssociateAC} or L{AAssociateRJ}
        (storescp's C{--verbose-pc} logs them).
        """
        self._negotiationObservers.append(observer)

    def addAssociationObserver(self, observer: Callable[[Association], None]) -> None:
        """
        Call C{observer(association)} with each L{Association} this AE
        accepts, once established, after L{associationEstablished} (the
        daemon follows an AE's associations to retire it once they have
        ended).
        """
        self._associationObservers.append(observer)

    def admit(self, request, peerAddress) -> Optional[AAssociateRJ]:
        """
        Decide whether the peer at C{peerAddress} may associate at all,
        before negotiation.  Every peer may; subclasses with access rules
        (dcmqrscp's peers of an AE title) override this.

        @param request: the L{AAssociateRQ}.
        @param peerAddress: the connection's peer, an
            L{twisted.internet.interfaces.IAddress}.
        @return: the rejection to send, or C{None}.
        """
        return None

    def associationEstablished(self, association) -> None:
        """
        Called with each L{Association} this AE accepted, once it is
        established; subclasses that follow their associations override
        this.
        """

    def answerRequest(self, request):
        """
        Answer an A-ASSOCIATE-RQ as L{negotiate} does, and tell the
        negotiation observers.
        """
        answer, contexts = self.negotiate(request)
        for observer in list(self._negotiationObservers):
            observer(request, answer)
        return answer, contexts

    def announceAssociation(self, association) -> None:
        """
        An association this AE accepted is established: tell
        L{associationEstablished}, then the association observers.
        """
        self.associationEstablished(association)
        for observer in list(self._associationObservers):
            observer(association)

    def negotiate(self, request):
        """
        Answer an A-ASSOCIATE-RQ.

        @return: C{(AAssociateRJ, None)} to reject, or C{(AAssociateAC,
            contexts)} with the accepted contexts by ID.
        """
        if self.refuseAll:
            return AAssociateRJ(REJECT_RESULT_PERMANENT, REJECT_SOURCE_SERVICE_USER, REJECT_REASON_NO_REASON), None
        rejection = checkAssociationRequest(
            request,
            calledAETitles=self.calledAETitles,
            callingAETitles=self.callingAETitles,
            requireImplementationClassUID=self.requireImplementationClassUID,
        )
        if rejection is not None:
            return rejection, None
        answers, roles, contexts = acceptPresentationContexts(request, self.policy)
        accept = AAssociateAC(
            request.calledAETitle,
            request.callingAETitle,
            answers,
            UserInformation(
                maximumLength=self.maximumLength,
                implementationClassUID=IMPLEMENTATION_CLASS_UID,
                implementationVersionName=IMPLEMENTATION_VERSION_NAME,
                roleSelections=roles,
                asynchronousOperationsWindow=answerAsynchronousOperationsWindow(
                    request.userInformation.asynchronousOperationsWindow, self.maximumAsynchronousOperations
                ),
            ),
        )
        return accept, contexts


class AcceptorProtocol(AssociationProtocol):
    """
    The acceptor's side of one connection.
    """

    def transportOpened(self) -> list:
        return self.provider.transportAccepted()

    def connectionMade(self) -> None:
        self.factory.connectionOpened(self)
        AssociationProtocol.connectionMade(self)

    def certificateBindings(self):
        """
        Calling AE title -> allowed certificates for this connection: those
        of the C{dicomtls:} endpoint it came in on, or C{None}.
        """
        options = tlsOptionsOf(self.transport)
        return getattr(options, "certificateBindings", None) or None

    def associateIndication(self, request) -> None:
        """
        Admit the association, have its AE negotiate it, and accept or
        reject it.
        """
        factory = self.factory
        factory.requestReceived(self)
        entity = factory.entityFor(request.calledAETitle)
        bindings = self.certificateBindings()
        if bindings and not certificateBindingAllows(bindings, request.callingAETitle, peerCertificate(self.transport)):
            self._reject(
                request,
                entity,
                CALLING_AE_TITLE_NOT_RECOGNIZED,
                "calling AE title not recognized (bound to another certificate)",
            )
            return
        contexts = None
        if entity is None:
            answer = CALLED_AE_TITLE_NOT_RECOGNIZED
        else:
            answer = entity.admit(request, self.peerAddress)
            if answer is None and not factory.hasRoomFor(self.peerAddress):
                answer = TOO_MANY_ASSOCIATIONS
            if answer is None:
                answer, contexts = entity.answerRequest(request)
        if contexts is None:
            self._reject(request, entity, answer, describeRejection(answer))
            return
        self.association = Association(
            self,
            isRequestor=False,
            associateRequest=request,
            contexts=contexts,
            peerMaximumLength=request.userInformation.maximumLength or 0,
            services=entity.services,
            reactor=self.reactor,
            dimseTimeout=factory.dimseTimeout,
            peerAddress=self.peerAddress,
            peerOperationsWindow=invocationWindow(
                request.userInformation.asynchronousOperationsWindow,
                answer.userInformation.asynchronousOperationsWindow,
            ),
            openAlongside=factory.associations,
        )
        factory.associations.add(self)
        self.entityTitle = entity.title
        factory.statistics.accepted(entity.title)
        self.log.info(
            "Association {calling} -> {called} from {peer} accepted: {accepted} of {proposed} presentation contexts",
            calling=request.callingAETitle,
            called=request.calledAETitle,
            peer=self._peerText(),
            accepted=len(contexts),
            proposed=len(request.presentationContexts),
        )
        self._apply(self.provider.acceptAssociation(answer))
        entity.announceAssociation(self.association)

    def _reject(self, request, entity: Optional[ApplicationEntity], reject: AAssociateRJ, why: str) -> None:
        """
        Reject the association, saying C{why} in the log.
        """
        self.settle("rejected")
        self.factory.statistics.rejected(entity.title if entity is not None else request.calledAETitle)
        self.log.info(
            "Association {calling} -> {called} from {peer} rejected: {why}",
            calling=request.callingAETitle,
            called=request.calledAETitle,
            peer=self._peerText(),
            why=why,
        )
        self._apply(self.provider.rejectAssociation(reject))

    def connectionLost(self, reason) -> None:
        AssociationProtocol.connectionLost(self, reason)
        factory = self.factory
        if self in factory.associations:
            factory.associations.discard(self)
            factory.statistics.ended(self.entityTitle, self.association, self.outcome)
        factory.connectionClosed(self)


class AcceptorFactory(protocol.Factory):
    """
    Builds an L{AcceptorProtocol} for each connection to a listening
    endpoint.

    @ivar entity: the one L{ApplicationEntity} answering every association,
        or C{None} when C{entities} is used.
    @ivar entities: called AE title -> L{ApplicationEntity}, or C{None}
        when C{entity} is used.
    @ivar connections: the protocols whose connections are open, whatever
        their association's state.
    @ivar associations: the protocols whose associations are established
        and not yet closed.
    @ivar maximumAssociations: more simultaneous associations than this are
        rejected (transient, local limit exceeded).
    @ivar maximumAssociationsPerHost: the same limit for the associations
        of one calling host.
    @ivar maximumPendingConnections: connections that have not yet sent an
        A-ASSOCIATE-RQ; one more closes the oldest of them, so that a flood
        of silent connections cannot keep real peers out (each would be
        closed by the ARTIM timer anyway).
    @ivar statistics: what the status page reports; see
        L{dicomd.status.Statistics}.
    """

    log = Logger()
    noisy = False

    #: Seconds between the log lines that count connections closed for
    #: waiting too long for their A-ASSOCIATE-RQ.
    EVICTION_REPORT_INTERVAL = 1.0

    def __init__(
        self,
        entity: Optional[ApplicationEntity] = None,
        *,
        entities: Optional[Mapping[str, ApplicationEntity]] = None,
        defaultEntity: Optional[ApplicationEntity] = None,
        reactor=None,
        maximumAssociations: int = 64,
        maximumAssociationsPerHost: Optional[int] = None,
        maximumPendingConnections: int = 256,
        statistics=None,
        artimTimeout: float = 30.0,
        idleTimeout: Optional[float] = 60.0,
        dimseTimeout: Optional[float] = None,
    ):
        """
        @param entity: the AE that answers every association, whatever its
            called AE title (the AE checks that itself: see
            L{ApplicationEntity.calledAETitles}).
        @param entities: instead of C{entity}, several AEs on this endpoint
            by AE title: each association goes to the AE of its called AE
            title, and one calling another AE title is rejected (permanent,
            service user, called AE title not recognized).
        @param defaultEntity: with C{entities}, the AE that answers calls to
            AE titles none of them has, instead of rejecting them (as
            storescp answers to any called AE title).
        @raise TypeError: not exactly one of C{entity} and C{entities}.
        """
        if (entity is None) == (entities is None):
            raise TypeError("AcceptorFactory takes an entity or a mapping of entities, not both or neither")
        if reactor is None:
            from twisted.internet import reactor
        self.entity = entity
        self.entities = dict(entities) if entities is not None else None
        self.defaultEntity = defaultEntity
        self.reactor = reactor
        self.maximumAssociations = maximumAssociations
        self.maximumAssociationsPerHost = maximumAssociationsPerHost
        self.maximumPendingConnections = maximumPendingConnections
        self.statistics = statistics if statistics is not None else _NoStatistics()
        self.artimTimeout = artimTimeout
        self.idleTimeout = idleTimeout
        self.dimseTimeout = dimseTimeout
        self.connections = set()
        self.associations = set()
        self._pending = OrderedDict()
        self._unreportedEvictions = 0
        self._evictionReport = None
        self._idleWaiters = []

    def entityFor(self, calledAETitle: str) -> Optional[ApplicationEntity]:
        """
        The AE that answers an association calling C{calledAETitle}, or
        C{None} if none does.
        """
        if self.entities is None:
            return self.entity
        return self.entities.get(calledAETitle, self.defaultEntity)

    def _receiveLimit(self) -> int:
        """
        The longest PDU any of our AEs receives (0 for no limit; 16384
        when there is no AE): the connection's AE is not known until its
        A-ASSOCIATE-RQ has arrived.
        """
        entities = [self.entity] if self.entities is None else list(self.entities.values())
        limits = [entity.maximumLength for entity in entities]
        return 0 if 0 in limits else max(limits, default=16384)

    def buildProtocol(self, addr) -> AcceptorProtocol:
        proto = AcceptorProtocol(
            ULProvider(isRequestor=False, maximumLength=self._receiveLimit()),
            reactor=self.reactor,
            artimTimeout=self.artimTimeout,
            idleTimeout=self.idleTimeout,
        )
        proto.factory = self
        return proto

    def connectionOpened(self, proto: AcceptorProtocol) -> None:
        """
        A connection was accepted: it waits for its A-ASSOCIATE-RQ, and the
        oldest waiting one goes if there are too many.
        """
        self.connections.add(proto)
        self._pending[proto] = None
        if len(self._pending) > self.maximumPendingConnections:
            oldest, _ = self._pending.popitem(last=False)
            oldest.transport.abortConnection()
            self._evicted(oldest)

    def _evicted(self, proto: AcceptorProtocol) -> None:
        """
        Log a connection closed for waiting too long: the first of a flood
        at once, the rest as one count per L{EVICTION_REPORT_INTERVAL}, so
        that a flood of idle connections cannot flood the log too.
        """
        if self._evictionReport is not None:
            self._unreportedEvictions += 1
            return
        self.log.warn(
            "Closing a connection from {peer} that sent no A-ASSOCIATE-RQ: "
            "more than {limit} connections are waiting for one",
            peer=proto._peerText(),
            limit=self.maximumPendingConnections,
        )
        self._evictionReport = self.reactor.callLater(self.EVICTION_REPORT_INTERVAL, self._reportEvictions)

    def _reportEvictions(self) -> None:
        self._evictionReport = None
        count, self._unreportedEvictions = self._unreportedEvictions, 0
        if count:
            self.log.warn(
                "Closed {count} more connections that sent no A-ASSOCIATE-RQ in {interval} s: "
                "more than {limit} connections were waiting for one",
                count=count,
                interval=self.EVICTION_REPORT_INTERVAL,
                limit=self.maximumPendingConnections,
            )
            self._evictionReport = self.reactor.callLater(self.EVICTION_REPORT_INTERVAL, self._reportEvictions)

    def requestReceived(self, proto: AcceptorProtocol) -> None:
        """
        A connection sent its A-ASSOCIATE-RQ: it no longer waits.
        """
        self._pending.pop(proto, None)

    def hasRoomFor(self, peerAddress) -> bool:
        """
        Whether one more association fits the limits, overall and for the
        peer's host.
        """
        if len(self.associations) >= self.maximumAssociations:
            return False
        if self.maximumAssociationsPerHost is None:
            return True
        host = getattr(peerAddress, "host", None)
        fromHost = sum(1 for proto in self.associations if getattr(proto.peerAddress, "host", None) == host)
        return fromHost < self.maximumAssociationsPerHost

    def connectionClosed(self, proto: AcceptorProtocol) -> None:
        """
        A connection of this factory has closed.
        """
        self._pending.pop(proto, None)
        self.connections.discard(proto)
        if not self.connections:
            waiters, self._idleWaiters = self._idleWaiters, []
            for waiter in waiters:
                waiter.callback(None)

    def whenIdle(self) -> defer.Deferred:
        """
        A L{Deferred} that fires with C{None} once no connection is open
        (at once if none is): after a listening port has stopped, the
        moment the last association, or a rejection on its way out, is
        over.
        """
        if not self.connections:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._idleWaiters.append(waiter)
        return waiter


class _NoStatistics:
    """
    The statistics of a factory nobody reports on.
    """

    def accepted(self, calledAETitle):
        pass

    def rejected(self, calledAETitle):
        pass

    def ended(self, entityTitle, association, outcome):
        pass
