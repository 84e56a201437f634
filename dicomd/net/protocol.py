"""
The Twisted transport adapter for the DICOM Upper Layer (PS3.8 section 9).

L{AssociationProtocol} hands received bytes to the pure
L{dicomd.ul.provider.ULProvider}, then pulls the outputs of one PDU at a
time and applies them: it writes PDUs, runs the ARTIM timer on the injected
reactor, closes the connection, and passes P-DATA, release and abort
indications to the L{dicomd.net.association.Association}.  What is specific
to accepting or requesting an association lives in the two subclasses in
L{dicomd.net.acceptor} and L{dicomd.net.requestor}; the tuning of the TCP
connection under it, in L{dicomd.net.sockets}.

It also owns two timers the Upper Layer does not define: an idle timeout
that aborts an association on which nothing has arrived for a while and
nobody is waiting on this side (a peer that stopped mid-PDU, or that holds an
association open and silent), and the DIMSE timeout on the rest of a message
that has begun arriving (a peer that stopped halfway through a data set).

At the debug level (L{dicomd.net.debug}) it logs every PDU it receives and
sends, described by a L{dicomd.ul.trace.PDUTrace}.

On a TLS connection (PS3.15 Annex B) the peer is named with its
certificate's subject in every log line (L{peerCertificateSubject}).
"""

from typing import Optional

from OpenSSL import SSL
from twisted.internet import protocol, tcp
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.logger import Logger

from dicomd.errors import AssociationAborted
from dicomd.net import debug
from dicomd.net.sockets import directConnection, quickAckSocket, renewQuickAck, sendNow, setNoDelay, setReadSize, writeDescriptor, writeNow
from dicomd.tls.certificates import certificateSubject
from dicomd.ul import provider as _ul
from dicomd.ul.fsm import State
from dicomd.ul.pdu import ABORT_REASON_NOT_SPECIFIED, ABORT_SOURCE_SERVICE_USER, AAbort
from dicomd.ul.trace import PDUTrace


def describeAbort(source: Optional[int], reason: int) -> str:
    """
    An A-ABORT's source and reason in words (L{AAbort.describe}), or that
    the connection closed without one (C{source} is C{None}).
    """
    if source is None:
        return "connection closed without A-ABORT"
    return AAbort(source, reason).describe()


def peerCertificate(transport):
    """
    The peer's certificate on a TLS transport (a pyOpenSSL C{X509}), or
    C{None} when the peer sent none or the transport is not TLS.
    """
    getter = getattr(transport, "getPeerCertificate", None)
    if getter is None:
        return None
    try:
        return getter()
    except Exception:
        return None


def isTLS(transport) -> bool:
    """
    Whether C{transport} is a TLS connection (Twisted's TLS transports, and
    wrappers of them, have C{getPeerCertificate}).
    """
    try:
        return callable(getattr(transport, "getPeerCertificate", None))
    except Exception:
        return False


def peerCertificateSubject(transport) -> Optional[str]:
    """
    What the log says about a TLS peer: its certificate's subject (RFC
    4514, C{"CN=modality,O=Hospital"}) or C{"no certificate"}; C{None} when
    the transport is not TLS.
    """
    if not isTLS(transport):
        return None
    certificate = peerCertificate(transport)
    if certificate is None:
        return "no certificate"
    try:
        return certificateSubject(certificate)
    except Exception:
        return "unreadable certificate"


def tlsOptionsOf(transport):
    """
    The L{dicomd.tls.context.DICOMTLSOptions} of the C{dicomtls:} endpoint a
    transport came from, or C{None}: the TLS layer's factory carries them
    (L{dicomd.endpoints.DICOMTLSFactory}), under any protocol wrappers.
    """
    for _ in range(4):
        if transport is None:
            return None
        options = getattr(getattr(transport, "factory", None), "tlsOptions", None)
        if options is not None:
            return options
        transport = getattr(transport, "transport", None)
    return None


def describeTLSError(error) -> str:
    """
    An OpenSSL error in words: the reasons OpenSSL queued, such as
    C{"certificate verify failed"} or C{"peer did not return a
    certificate"}.
    """
    reasons = []
    for entry in error.args[0] if error.args and isinstance(error.args[0], list) else ():
        if isinstance(entry, tuple) and entry and entry[-1]:
            reasons.append(str(entry[-1]))
    return "; ".join(reasons) or str(error) or error.__class__.__name__


class AssociationProtocol(protocol.Protocol):
    """
    One transport connection carrying one association.

    @ivar provider: the L{dicomd.ul.provider.ULProvider} for this side.
    @ivar association: the L{dicomd.net.association.Association} once
        established, else C{None}.
    @ivar outcome: how the association ended, for the log; the first
        ending reported wins.
    @ivar debugging: whether the PDUs of this connection are logged
        (L{dicomd.net.debug.enabled} when it was built).
    @ivar direction: C{"from"} the peer (an acceptor) or C{"to"} it (a
        requestor), for the log.

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
    direction = "from"
    _quickAckSocket = None
    _writeDescriptor = None
    _directConnection = None
    _unflushed = False
    _readingPaused = False

    def __init__(self, provider, *, reactor=None, artimTimeout: float = 30.0, idleTimeout: Optional[float] = None):
        if reactor is None:
            from twisted.internet import reactor
        self.provider = provider
        self.reactor = reactor
        self.artimTimeout = artimTimeout
        self.idleTimeout = idleTimeout
        self.peerAddress = None
        self._tlsPeer = None
        self._artim = None
        self._idle = None
        self._messageTimer = None
        self._lastActivity = 0.0
        self.debugging = debug.enabled()
        self._trace = None
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
            _ul.PDataIndication: self._pDataIndication,
            _ul.ReleaseIndication: self._releaseIndication,
            _ul.ReleaseConfirmation: self._releaseConfirmation,
            _ul.AbortIndication: self._abortIndication,
            _ul.ProviderAbortIndication: self._abortIndication,
            _ul.EventNotAllowed: self._eventNotAllowed,
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
        if self._trace is not None:
            self._logPDUs("to", self._trace.sent(data))
        if self._directConnection is not None and sendNow(self._directConnection, data):
            return
        # Pieces are headers and memoryview slices of a data set; one join
        # copies them once, the copy Twisted's write buffer would make.
        transport.write(b"".join(data) if type(data) is list else data)
        self._unflushed = True

    def flush(self) -> None:
        """
        Hand what was written to the kernel now rather than on the
        reactor's next iteration (L{dicomd.net.sockets.writeNow}), if
        anything was.

        Requests and responses are written while their trigger is handled,
        so the protocol flushes after each chunk read, and a storage SCU
        before it reads its next file ahead.  Call it only where the
        reactor itself could write: not from inside a producer's
        C{resumeProducing}.
        """
        if not self._unflushed:
            return
        self._unflushed = False
        if self._writeDescriptor is not None:
            writeNow(self._writeDescriptor)

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
        """
        Close the transport connection: in order, after what is written,
        the first time; at once the second time (the ARTIM timer or the
        idle timeout expiring after an earlier close), when the peer has
        not read what waits for it, so that a peer which never reads cannot
        hold the connection open.

        The association's sender stops being the transport's producer
        first: a TLS transport does not shut down while a producer is
        registered, nor a TCP one while its producer is paused.
        """
        if self.association is not None:
            self.association.stopSending()
        transport = self.transport
        if transport is None:
            return
        if transport.disconnecting:
            transport.abortConnection()
        else:
            transport.loseConnection()

    # -- transport events --------------------------------------------------

    def connectionMade(self) -> None:
        setNoDelay(self.transport)
        setReadSize(self.transport)
        self._quickAckSocket = quickAckSocket(self.transport)
        self._writeDescriptor = writeDescriptor(self.transport)
        self._directConnection = directConnection(self.transport)
        if self._directConnection is not None:
            # The reactor asks the transport to read; this one reads into
            # the provider's receiving buffer (see _readDirectly).
            self._directConnection.doRead = self._readDirectly
        self.peerAddress = self.transport.getPeer()
        if self.debugging:
            self._trace = PDUTrace(debug.uidName)
        self._startedAt = self._lastActivity = self.reactor.seconds()
        if self.idleTimeout:
            self._idle = self.reactor.callLater(self.idleTimeout, self._idleCheck)
        self._apply(self.transportOpened())

    def dataReceived(self, data: bytes) -> None:
        """
        Hand the bytes to the provider, then apply the outputs of each PDU
        they complete, in turn: the provider cuts the next PDU only once
        the previous one's outputs were applied, and the indications among
        them answered, so every PDU meets the state its predecessors left.
        Then flush what the PDUs made us write.

        A pause (L{pauseReading}) stops the reads from the transport, not
        the handling of the PDUs one read brought: what waits in memory is
        bounded by one read, and no PDU waits for a resume to be handled.
        """
        self._arrived(data)
        self.provider.dataReceived(data)
        self._handlePDUs()

    def _readDirectly(self):
        """
        The reactor's read of a plain TCP connection (L{directConnection}),
        in place of C{tcp.Connection.doRead}: the bytes go from the socket
        straight into the provider's receiving buffer
        (L{ULProvider.receiveBuffer<dicomd.ul.provider.ULProvider.receiveBuffer>}),
        which PDUs are cut from without copying, where a read into a new
        string would have the provider join every PDU that spans two reads,
        a 128 KiB P-DATA-TF mostly.  Then as L{dataReceived}.

        @return: what C{doRead} returns: C{None}, or why the connection
            ended.
        """
        transport = self.transport
        if transport.TLS:
            # A connection that started TLS reads through its TLS layer.
            return tcp.Connection.doRead(transport)
        provider = self.provider
        buffer = provider.receiveBuffer()
        try:
            count = transport.socket.recv_into(buffer)
        except BlockingIOError:
            return None
        except OSError:
            return CONNECTION_LOST
        if not count:
            return CONNECTION_DONE
        data = buffer[:count].tobytes() if self._trace is not None else None
        del buffer
        provider.received(count)
        self._arrived(data)
        self._handlePDUs()
        return None

    def _arrived(self, data) -> None:
        """
        Note that bytes arrived: the association is active, a TLS handshake
        is over, the peer's next segment is acknowledged at once; at the
        debug level, log the PDUs in C{data}.
        """
        self._lastActivity = self.reactor.seconds()
        if self._tlsPeer is None:
            # Application data means the TLS handshake is over.
            self._tlsPeer = peerCertificateSubject(self.transport) or ""
        if self._quickAckSocket is not None and not renewQuickAck(self._quickAckSocket):
            self._quickAckSocket = None
        if self._trace is not None:
            self._logPDUs("from", self._trace.received(data))

    def _handlePDUs(self) -> None:
        """
        Apply the outputs of each PDU received whole, in turn (see
        L{dataReceived}), then flush what they made us write.
        """
        provider = self.provider
        outputs = provider.nextOutputs()
        while outputs is not None:
            self._apply(outputs)
            outputs = provider.nextOutputs()
        self.flush()

    def connectionLost(self, reason) -> None:
        if self.association is None and self.outcome is None and reason.check(SSL.Error):
            self.log.info(
                "TLS connection with {peer} failed: {why}",
                peer=self._peerText(),
                why=describeTLSError(reason.value),
            )
        if self._directConnection is not None:
            # Let the connection go: its read method holds this protocol.
            self._directConnection.__dict__.pop("doRead", None)
        self._stopARTIM()
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        self._stopMessageTimer()
        self._apply(self.provider.connectionLost())
        association = self.association
        if association is not None:
            association.ended(AssociationAborted("connection closed"))
            association.connectionClosed()
        self.associationEnded()

    def associationEnded(self) -> None:
        """
        Log the association's outcome once its connection has closed; or,
        for a connection aborted before it had one (a malformed or
        oversized A-ASSOCIATE-RQ), why.
        """
        association = self.association
        if association is None:
            outcome = self.outcome
            if outcome is None and self.provider.errorDescription:
                outcome = "aborted: " + self.provider.errorDescription
            if outcome is not None and outcome.startswith("aborted"):
                self.log.info(
                    "Connection {direction} {peer} {outcome} before an association was established",
                    direction=self.direction,
                    peer=self._peerText(),
                    outcome=outcome,
                )
            return
        counts = "; ".join(
            "%s %s" % (operation, ", ".join("%d %s" % (n, outcome) for outcome, n in sorted(outcomes.items())))
            for operation, outcomes in sorted(association.counters.items())
        )
        self.log.info(
            "Association {calling} -> {called} {direction} {peer} {outcome} after {seconds:.1f} s{counts}",
            calling=association.callingAETitle,
            called=association.calledAETitle,
            direction=self.direction,
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
        self._abortAndClose("aborted: idle timeout")

    def _pDataIndication(self, output) -> None:
        """
        P-DATA indication: hand the PDU to the association, then see to
        the DIMSE timeout on the message it belongs to.
        """
        association = self.association
        association.pDataReceived(output.pdu)
        if association.dimseTimeout:
            self._awaitRestOfMessage()

    def _awaitRestOfMessage(self) -> None:
        """
        Bound the wait for the next P-DATA-TF of a message the peer has
        begun sending by the DIMSE timeout: start the timer when a message
        begins, push it back with each fragment, stop it when the message
        is complete.  One timer per association, reset rather than
        replaced: a fragment costs no more than that.  While reading is
        paused the timer does not run.
        """
        association = self.association
        timer = self._messageTimer
        if association.isReceivingMessage and not self._readingPaused:
            if timer is None:
                self._messageTimer = self.reactor.callLater(association.dimseTimeout, self._messageStalled)
            else:
                timer.reset(association.dimseTimeout)
        elif timer is not None:
            timer.cancel()
            self._messageTimer = None

    def _stopMessageTimer(self) -> None:
        if self._messageTimer is not None:
            self._messageTimer.cancel()
            self._messageTimer = None

    def _messageStalled(self) -> None:
        """
        The DIMSE timeout passed without a fragment of the message being
        received: abort the association, which abandons the message (a
        data set half received is not stored), and close the connection.
        """
        self._messageTimer = None
        if not self.association.isReceivingMessage:
            # The association ended under the timer.
            return
        self.log.warn(
            "No P-DATA-TF from {peer} for {timeout} s (the DIMSE timeout) in the middle of a DIMSE message; aborting",
            peer=self._peerText(),
            timeout=self.association.dimseTimeout,
        )
        self._abortAndClose("aborted: DIMSE timeout")

    def _abortAndClose(self, outcome: str) -> None:
        """
        Abort the association and close the connection at once, for a
        timeout: a peer that stopped sending is not trusted to close it,
        nor left to the ARTIM timer.
        """
        self.settle(outcome)
        self.abort()
        self._closeTransport()

    def _logPDUs(self, direction: str, descriptions) -> None:
        for description in descriptions:
            self.log.debug("PDU {direction} {peer}: {pdu}", direction=direction, peer=self._peerText(), pdu=description)

    def _peerText(self) -> str:
        address = self.peerAddress
        host = getattr(address, "host", None)
        text = str(address) if host is None else "%s:%s" % (host, address.port)
        if self._tlsPeer:
            text += " (TLS: %s)" % (self._tlsPeer,)
        return text

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

    def _eventNotAllowed(self, output) -> None:
        """
        An event the state table does not allow in the current state:
        the provider did nothing.  At the end of an association that is
        normal (the connection closing after this side closed it, an abort
        after the peer's), so it is only logged, at the debug level.
        """
        if self.debugging:
            self.log.debug(
                "Upper Layer with {peer}: no action for {event} ({description}) in {state}",
                peer=self._peerText(),
                event=output.event.name,
                description=output.event.value,
                state=output.state.name,
            )

    # -- requests from the association --------------------------------------------

    def sendPData(self, pieces) -> None:
        """
        P-DATA request: send whole P-DATA-TF PDUs.
        """
        self._apply(self.provider.sendData(pieces))

    def pauseReading(self) -> None:
        """
        Stop reading from the transport.  The DIMSE timeout on the message
        being received stops too: the peer cannot send while we do not
        read.
        """
        self._readingPaused = True
        self._stopMessageTimer()
        if self.transport is not None:
            self.transport.pauseProducing()

    def resumeReading(self) -> None:
        """
        Start reading from the transport again, unless it is closing, and
        give the peer the whole DIMSE timeout again for the rest of a
        message.
        """
        self._readingPaused = False
        transport = self.transport
        if transport is not None and getattr(transport, "connected", True) and not getattr(transport, "disconnecting", False):
            transport.resumeProducing()
            association = self.association
            if association is not None and association.dimseTimeout:
                self._awaitRestOfMessage()

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
