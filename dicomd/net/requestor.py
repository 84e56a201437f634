"""
Requesting associations (PS3.8 section 7.1, requestor side).

L{connect} takes any Twisted client endpoint (C{tcp:}, C{tls:}...) and the
association parameters, raises A-ASSOCIATE request (Evt1) on a fresh
L{ULProvider}, opens the transport the provider asks for and returns a
L{Deferred} that fires with the established
L{dicomd.net.association.Association}.  The ACSE timeout bounds the wait
for the peer's A-ASSOCIATE-AC or -RJ.
"""

from typing import Iterable, Mapping, Optional, Sequence, Tuple

from twisted.internet import defer, error, protocol
from twisted.python.failure import Failure

from dicomd import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomd.errors import ACSETimeout, AssociationAborted, AssociationRejected
from dicomd.net.association import Association
from dicomd.net.protocol import AssociationProtocol
from dicomd.ul.negotiation import acceptedPresentationContexts, invocationWindow, proposePresentationContexts
from dicomd.ul.pdu import AAssociateRQ, SCPSCURoleSelection, SOPClassExtendedNegotiation, UserInformation
from dicomd.ul.provider import ULProvider


class RequestorProtocol(AssociationProtocol):
    """
    The requestor's side of one connection.

    @ivar established: fires with the L{Association} once accepted, or
        fails with L{AssociationRejected} or L{AssociationAborted}.
    @ivar accept: the peer's L{dicomd.ul.pdu.AAssociateAC} once accepted
        (its user identity response, say).
    """

    accept = None
    direction = "to"

    def __init__(self, provider, request, *, services, dimseTimeout, acseTimeout, maximumSendLength=None, **kwargs):
        AssociationProtocol.__init__(self, provider, **kwargs)
        self.request = request
        self.maximumSendLength = maximumSendLength
        self.services = services
        self.dimseTimeout = dimseTimeout
        self.acseTimeout = acseTimeout
        self.established = defer.Deferred()
        self._acseTimer = None

    def transportOpened(self) -> list:
        if self.acseTimeout:
            self._acseTimer = self.reactor.callLater(self.acseTimeout, self._acseExpired)
        return self.provider.transportConnected()

    def _acseExpired(self) -> None:
        self._acseTimer = None
        self.settle("aborted: no answer within the ACSE timeout")
        self._fail(ACSETimeout("no A-ASSOCIATE response within %s s" % (self.acseTimeout,)))
        self.abort()
        self._closeTransport()

    def _stopACSETimer(self) -> None:
        if self._acseTimer is not None and self._acseTimer.active():
            self._acseTimer.cancel()
        self._acseTimer = None

    def _fail(self, error) -> None:
        if not self.established.called:
            self.established.errback(Failure(error))

    def associateAccepted(self, accept) -> None:
        self._stopACSETimer()
        self.accept = accept
        contexts = acceptedPresentationContexts(
            self.request.presentationContexts,
            accept.presentationContexts,
            accept.userInformation.roleSelections,
        )
        self.association = Association(
            self,
            isRequestor=True,
            associateRequest=self.request,
            contexts=contexts,
            peerMaximumLength=_limited(accept.userInformation.maximumLength or 0, self.maximumSendLength),
            services=self.services,
            reactor=self.reactor,
            dimseTimeout=self.dimseTimeout,
            peerAddress=self.peerAddress,
            operationsWindow=invocationWindow(
                self.request.userInformation.asynchronousOperationsWindow,
                accept.userInformation.asynchronousOperationsWindow,
            ),
        )
        self.established.callback(self.association)

    def associateRejected(self, reject) -> None:
        self._stopACSETimer()
        self.settle("rejected")
        self._fail(AssociationRejected(reject))

    def _abortIndication(self, output) -> None:
        AssociationProtocol._abortIndication(self, output)
        self._stopACSETimer()
        self._fail(AssociationAborted(self.outcome))

    def connectionLost(self, reason) -> None:
        self._stopACSETimer()
        if not reason.check(error.ConnectionDone):
            # A TLS handshake that failed, a reset: say so, rather than
            # only that the connection closed.
            self._fail(AssociationAborted("connection lost before the association was established: %s" % (reason.getErrorMessage(),)))
        AssociationProtocol.connectionLost(self, reason)
        self._fail(AssociationAborted("connection closed before the association was established"))


def _limited(peerMaximumLength: int, ourLimit: Optional[int]) -> int:
    """
    The PDU length to send with: the peer's maximum (0 is none), cut to
    our own limit if we have one.
    """
    if not ourLimit:
        return peerMaximumLength
    return min(peerMaximumLength, ourLimit) if peerMaximumLength else ourLimit


class _RequestorFactory(protocol.Factory):
    noisy = False

    def __init__(self, build):
        self._build = build

    def buildProtocol(self, addr):
        return self._build()


def connect(
    endpoint,
    *,
    calledAETitle: str = "ANY-SCP",
    callingAETitle: str = "DICOMD",
    presentationContexts: Iterable[Tuple[str, Sequence[str]]],
    roleSelections: Iterable[SCPSCURoleSelection] = (),
    extendedNegotiations: Iterable[SOPClassExtendedNegotiation] = (),
    maximumLength: int = 16384,
    maximumSendLength: Optional[int] = None,
    services: Optional[Mapping[int, object]] = None,
    userIdentity=None,
    asynchronousOperations: int = 1,
    reactor=None,
    acseTimeout: Optional[float] = 30.0,
    dimseTimeout: Optional[float] = None,
    idleTimeout: Optional[float] = None,
    artimTimeout: float = 30.0,
) -> defer.Deferred:
    """
    Request an association.

    @param endpoint: an L{twisted.internet.interfaces.IStreamClientEndpoint}.
    @param presentationContexts: C{(abstractSyntax, transferSyntaxes)}
        pairs, numbered 1, 3, 5... in this order.
    @param services: command field -> L{dicomd.interfaces.IService} for
        requests the peer sends us (C-STORE sub-operations of C-GET).
    @param maximumSendLength: send PDUs no longer than this even when the
        peer accepts longer ones.
    @param extendedNegotiations: L{dicomd.ul.pdu.SOPClassExtendedNegotiation}
        items to propose (an association negotiation profile's).
    @param userIdentity: a L{dicomd.ul.pdu.UserIdentityRQ}, or C{None}.
    @param asynchronousOperations: how many requests we would have
        outstanding at once: above 1, an Asynchronous Operations Window
        (PS3.7 D.3.3.3) proposes it, and the association's
        C{operationsWindow} says what the acceptor granted.
    @return: a L{Deferred} firing with the L{Association}.
    """
    if reactor is None:
        from twisted.internet import reactor
    request = AAssociateRQ(
        calledAETitle,
        callingAETitle,
        proposePresentationContexts(presentationContexts),
        UserInformation(
            maximumLength=maximumLength,
            implementationClassUID=IMPLEMENTATION_CLASS_UID,
            implementationVersionName=IMPLEMENTATION_VERSION_NAME,
            roleSelections=list(roleSelections),
            extendedNegotiations=list(extendedNegotiations),
            userIdentityRQ=userIdentity,
            asynchronousOperationsWindow=(asynchronousOperations, 1) if asynchronousOperations != 1 else None,
        ),
    )
    provider = ULProvider(isRequestor=True, maximumLength=maximumLength)
    # Evt1 in Sta1 asks for the transport connection (AE-1), which is
    # what endpoint.connect() below opens.
    provider.requestAssociation(request)

    def build():
        return RequestorProtocol(
            provider,
            request,
            services=services or {},
            dimseTimeout=dimseTimeout,
            acseTimeout=acseTimeout,
            maximumSendLength=maximumSendLength,
            reactor=reactor,
            artimTimeout=artimTimeout,
            idleTimeout=idleTimeout,
        )

    connecting = endpoint.connect(_RequestorFactory(build))
    return connecting.addCallback(lambda proto: proto.established)
