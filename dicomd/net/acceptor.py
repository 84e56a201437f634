"""
Accepting associations (PS3.8 section 7.1, acceptor side).

An L{ApplicationEntity} describes a local AE: its title, what it accepts
and which services carry its operations.  L{AcceptorFactory} is the Twisted
factory for any listening endpoint: it builds an L{AcceptorProtocol} per
connection, enforces the limit on simultaneous associations and hands each
A-ASSOCIATE indication to the AE to negotiate.
"""

from typing import Mapping, Optional

from twisted.internet import protocol
from twisted.logger import Logger

from dicomd import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomd.net.association import Association, describeRejection
from dicomd.net.protocol import AssociationProtocol
from dicomd.ul.negotiation import (
    TOO_MANY_ASSOCIATIONS,
    AcceptorPolicy,
    acceptPresentationContexts,
    checkAssociationRequest,
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
    ):
        self.title = title
        self.policy = policy or AcceptorPolicy({})
        self.services = dict(services or {})
        self.calledAETitles = calledAETitles
        self.callingAETitles = callingAETitles
        self.requireImplementationClassUID = requireImplementationClassUID
        self.refuseAll = refuseAll
        self.maximumLength = maximumLength

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
            ),
        )
        return accept, contexts


class AcceptorProtocol(AssociationProtocol):
    """
    The acceptor's side of one connection.
    """

    def transportOpened(self) -> list:
        return self.provider.transportAccepted()

    def associateIndication(self, request) -> None:
        factory = self.factory
        entity = factory.entity
        if len(factory.associations) >= factory.maximumAssociations:
            answer, contexts = TOO_MANY_ASSOCIATIONS, None
        else:
            answer, contexts = entity.negotiate(request)
        if contexts is None:
            self.settle("rejected")
            self.log.info(
                "Association {calling} -> {called} from {peer} rejected: {why}",
                calling=request.callingAETitle,
                called=request.calledAETitle,
                peer=self._peerText(),
                why=describeRejection(answer),
            )
            self._apply(self.provider.rejectAssociation(answer))
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
        )
        factory.associations.add(self)
        self.log.info(
            "Association {calling} -> {called} from {peer} accepted: {accepted} of {proposed} presentation contexts",
            calling=request.callingAETitle,
            called=request.calledAETitle,
            peer=self._peerText(),
            accepted=len(contexts),
            proposed=len(request.presentationContexts),
        )
        self._apply(self.provider.acceptAssociation(answer))

    def connectionLost(self, reason) -> None:
        AssociationProtocol.connectionLost(self, reason)
        self.factory.associations.discard(self)


class AcceptorFactory(protocol.Factory):
    """
    Builds an L{AcceptorProtocol} for each connection to a listening
    endpoint.

    @ivar associations: the protocols whose associations are established
        and not yet closed.
    @ivar maximumAssociations: more simultaneous associations than this are
        rejected (transient, local limit exceeded).
    """

    log = Logger()
    noisy = False

    def __init__(
        self,
        entity: ApplicationEntity,
        *,
        reactor=None,
        maximumAssociations: int = 64,
        artimTimeout: float = 30.0,
        idleTimeout: Optional[float] = 60.0,
        dimseTimeout: Optional[float] = None,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.entity = entity
        self.reactor = reactor
        self.maximumAssociations = maximumAssociations
        self.artimTimeout = artimTimeout
        self.idleTimeout = idleTimeout
        self.dimseTimeout = dimseTimeout
        self.associations = set()

    def buildProtocol(self, addr) -> AcceptorProtocol:
        proto = AcceptorProtocol(
            ULProvider(isRequestor=False, maximumLength=self.entity.maximumLength),
            reactor=self.reactor,
            artimTimeout=self.artimTimeout,
            idleTimeout=self.idleTimeout,
        )
        proto.factory = self
        return proto
