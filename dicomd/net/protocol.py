"""
The Twisted transport adapter for the DICOM Upper Layer (PS3.8 section 9).

L{AssociationProtocol} feeds received bytes to the pure
L{dicomd.ul.provider.ULProvider} and applies what comes back: it writes
PDUs, runs the ARTIM timer on the injected reactor, closes the connection,
and passes P-DATA, release and abort indications to the
L{dicomd.net.association.Association}.  What is specific to accepting or
requesting an association lives in the two subclasses in
L{dicomd.net.acceptor} and L{dicomd.net.requestor}.

It also owns the one timer the Upper Layer does not define: an idle timeout
that aborts an association on which nothing has arrived for a while and
nobody is waiting on this side (a peer that stopped mid-PDU, or that holds an
association open and silent).
"""

from typing import Optional

from twisted.internet import protocol
from twisted.logger import Logger

from dicomd.net.association import AssociationAborted
from dicomd.ul import provider as _ul
from dicomd.ul.fsm import State
from dicomd.ul.pdu import ABORT_REASON_NOT_SPECIFIED, ABORT_SOURCE_SERVICE_USER

_ABORT_SOURCES = {0: "service user", 2: "service provider"}
_ABORT_REASONS = {
    0: "reason not specified",
    1: "unrecognized PDU",
    2: "unexpected PDU",
    4: "unrecognized PDU parameter",
    5: "unexpected PDU parameter",
    6: "invalid PDU parameter value",
}


def describeAbort(source: Optional[int], reason: int) -> str:
    """
    An A-ABORT's source and reason in words.
    """
    if source is None:
        return "connection closed without A-ABORT"
    if source == ABORT_SOURCE_SERVICE_USER:
        return "A-ABORT from the service user"
    return "A-ABORT from the %s (%s)" % (
        _ABORT_SOURCES.get(source, "source %d" % source),
        _ABORT_REASONS.get(reason, "reason %d" % reason),
    )


def setNoDelay(transport) -> None:
    """
    Turn off Nagle's algorithm: DICOM's request/response rhythm otherwise
    waits on delayed acknowledgements for every small response.  TLS
    transports pass the call through to their TCP transport.
    """
    setter = getattr(transport, "setTcpNoDelay", None)
    if setter is not None:
        setter(True)


class AssociationProtocol(protocol.Protocol):
    """
    One transport connection carrying one association.

    @ivar provider: the L{dicomd.ul.provider.ULProvider} for this side.
    @ivar association: the L{dicomd.net.association.Association} once
        established, else C{None}.
    @ivar outcome: how the association ended, for the log; the first
        ending reported wins.

    Subclasses provide C{transportOpened()}, which raises the Upper Layer
    event for a new connection (Evt5 for an acceptor, Evt2 for a
    requestor), and the handlers of the indications only their side gets:
    C{associateIndication(request)} for an acceptor,
    C{associateAccepted(accept)} and C{associateRejected(reject)} for a
    requestor.
    """

    log = Logger()
    association = None
    outcome = None

    def __init__(self, provider, *, reactor=None, artimTimeout: float = 30.0, idleTimeout: Optional[float] = None):
        if reactor is None:
            from twisted.internet import reactor
        self.provider = provider
        self.reactor = reactor
        self.artimTimeout = artimTimeout
        self.idleTimeout = idleTimeout
        self.peerAddress = None
        self._artim = None
        self._idle = None
        self._lastActivity = 0.0
        self._startedAt = 0.0
        self._handlers = {
            _ul.SendPDU: self._sendPDU,
            _ul.StartARTIM: self._startARTIM,
            _ul.StopARTIM: self._stopARTIM,
            _ul.OpenTransport: _ignore,
            _ul.CloseTransport: self._closeTransport,
            _ul.AssociateIndication: lambda output: self.associateIndication(output.request),
            _ul.AssociateAccepted: lambda output: self.associateAccepted(output.accept),
            _ul.AssociateRejected: lambda output: self.associateRejected(output.reject),
            _ul.PDataIndication: lambda output: self.association.pDataReceived(output.pdu),
            _ul.ReleaseIndication: self._releaseIndication,
            _ul.ReleaseConfirmation: self._releaseConfirmation,
            _ul.AbortIndication: self._abortIndication,
            _ul.ProviderAbortIndication: self._abortIndication,
        }

    # -- applying the Upper Layer's outputs --------------------------------------

    def _apply(self, outputs) -> None:
        handlers = self._handlers
        for output in outputs:
            handlers[type(output)](output)

    def _sendPDU(self, output) -> None:
        transport = self.transport
        if transport is None:
            return
        data = output.data
        # Pieces are headers and memoryview slices of a data set; one join
        # copies them once, the copy Twisted's write buffer would make.
        transport.write(b"".join(data) if type(data) is list else data)

    def _startARTIM(self, output=None) -> None:
        self._stopARTIM()
        self._artim = self.reactor.callLater(self.artimTimeout, self._artimExpired)

    def _stopARTIM(self, output=None) -> None:
        if self._artim is not None:
            if self._artim.active():
                self._artim.cancel()
            self._artim = None

    def _artimExpired(self) -> None:
        self._artim = None
        self.log.info(
            "ARTIM timer expired after {timeout} s in {state} with {peer}; closing",
            timeout=self.artimTimeout,
            state=self.provider.state.name,
            peer=self._peerText(),
        )
        self._apply(self.provider.artimExpired())

    def _closeTransport(self, output=None) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    # -- transport events --------------------------------------------------

    def connectionMade(self) -> None:
        setNoDelay(self.transport)
        self.peerAddress = self.transport.getPeer()
        self._startedAt = self._lastActivity = self.reactor.seconds()
        if self.idleTimeout:
            self._idle = self.reactor.callLater(self.idleTimeout, self._idleCheck)
        self._apply(self.transportOpened())

    def dataReceived(self, data: bytes) -> None:
        self._lastActivity = self.reactor.seconds()
        self._apply(self.provider.dataReceived(data))

    def connectionLost(self, reason) -> None:
        self._stopARTIM()
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        self._apply(self.provider.connectionLost())
        association = self.association
        if association is not None:
            association.ended(AssociationAborted("connection closed"))
            association.connectionClosed()
        self.associationEnded()

    def associationEnded(self) -> None:
        """
        Log the association's outcome once its connection has closed.
        """
        association = self.association
        if association is None:
            return
        counts = "; ".join(
            "%s %s" % (operation, ", ".join("%d %s" % (n, outcome) for outcome, n in sorted(outcomes.items())))
            for operation, outcomes in sorted(association.counters.items())
        )
        self.log.info(
            "Association {calling} -> {called} from {peer} {outcome} after {seconds:.1f} s{counts}",
            calling=association.callingAETitle,
            called=association.calledAETitle,
            peer=self._peerText(),
            outcome=self.outcome or "closed",
            seconds=self.reactor.seconds() - self._startedAt,
            counts=(": " + counts) if counts else "",
        )

    def _idleCheck(self) -> None:
        self._idle = None
        now = self.reactor.seconds()
        idleFor = now - self._lastActivity
        if idleFor < self.idleTimeout or (self.association is not None and self.association.isBusy):
            waitFrom = self._lastActivity if idleFor < self.idleTimeout else now
            self._idle = self.reactor.callLater(waitFrom + self.idleTimeout - now, self._idleCheck)
            return
        self.log.info(
            "Nothing received from {peer} for {timeout} s in {state}; aborting",
            peer=self._peerText(),
            timeout=self.idleTimeout,
            state=self.provider.state.name,
        )
        self.settle("aborted: idle timeout")
        self.abort()
        self._closeTransport()

    def _peerText(self) -> str:
        address = self.peerAddress
        host = getattr(address, "host", None)
        if host is None:
            return str(address)
        return "%s:%s" % (host, address.port)

    def settle(self, outcome: str) -> None:
        """
        Record how the association ended, unless that is already known.
        """
        if self.outcome is None:
            self.outcome = outcome

    # -- indications ------------------------------------------------------------

    def _releaseIndication(self, output) -> None:
        self.settle("released by the peer")
        if self.association is not None:
            self.association.ended(None)
        if output.collision and self.provider.state is State.Sta10:
            # Release collision, acceptor side: the peer confirms our
            # A-RELEASE-RQ first (AR-10), then we answer its own (AR-4).
            return
        self._apply(self.provider.respondRelease())

    def _releaseConfirmation(self, output) -> None:
        self.settle("released")
        if self.association is not None:
            self.association.ended(None)
        if self.provider.state is State.Sta12:
            # Release collision, acceptor side: now answer the peer's
            # A-RELEASE-RQ (AR-4).
            self._apply(self.provider.respondRelease())

    def _abortIndication(self, output) -> None:
        description = getattr(output, "description", None) or describeAbort(output.source, output.reason)
        self.settle("aborted: " + description)
        if self.association is not None:
            self.association.ended(AssociationAborted(description))

    # -- requests from the association --------------------------------------------

    def sendPData(self, pieces) -> None:
        """
        P-DATA request: send whole P-DATA-TF PDUs.
        """
        self._apply(self.provider.sendData(pieces))

    def pauseReading(self) -> None:
        """
        Stop reading from the transport.
        """
        if self.transport is not None:
            self.transport.pauseProducing()

    def resumeReading(self) -> None:
        """
        Start reading from the transport again.
        """
        if self.transport is not None and self.transport.connected:
            self.transport.resumeProducing()

    def requestRelease(self) -> None:
        """
        A-RELEASE request.
        """
        self._apply(self.provider.requestRelease())

    def abort(self, source: int = ABORT_SOURCE_SERVICE_USER, reason: int = ABORT_REASON_NOT_SPECIFIED) -> None:
        """
        A-ABORT request.  The association ends at once; the connection
        closes when the peer closes it or the ARTIM timer expires.
        """
        self.settle("aborted by this side")
        self._apply(self.provider.abort(source, reason))
        if self.association is not None:
            self.association.ended(AssociationAborted("aborted by this side"))


def _ignore(output) -> None:
    pass
