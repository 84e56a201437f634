"""
An established association as its DIMSE service user sees it (PS3.7
sections 7 and 9).

L{Association} sits between the transport adapter
(L{dicomd.net.protocol.AssociationProtocol}) and the services.  It turns
P-DATA indications into DIMSE messages with the pure
L{dicomd.dimse.pdv.MessageAssembler}, hands requests to the L{IService}
registered for their command field, streams data sets into the consumers
those services return, and matches responses to the requests this side
sent.  The same object serves both roles: an acceptor receives requests,
a requestor sends them, and C-GET makes a requestor receive C-STORE
sub-operations on the association it opened.

At the debug level (L{dicomd.net.debug}) every message sent and received
is logged with its command set in words (L{Message.describe}).
"""

from typing import Callable, Dict, List, Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from dicomd.dimse import status as _status
from dicomd.dimse.commands import OPERATION_NAMES, CCancelRQ, CEchoRQ, Message, encodeCommand, responseTo
from dicomd.dimse.consumers import BufferedDataSet, DiscardedDataSet
from dicomd.dimse.pdv import CommandReceived, DIMSEProtocolError, MessageAssembler, maximumFragmentLength
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
from dicomd.errors import AssociationAborted, AssociationError, DIMSETimeout, NoPresentationContext
from dicomd.net import debug
from dicomd.net.sending import MessageSender
from dicomd.ul.negotiation import NegotiatedContext

_BUFFER_TYPES = (bytes, bytearray, memoryview)

#: How each final status category is counted (L{Association.counters}).
_OUTCOMES = {category: category.name.lower() for category in _status.Category}


class _Outstanding:
    """
    A request this side sent, waiting for its final response.
    """

    __slots__ = ("deferred", "onPending", "timer")

    def __init__(self, deferred, onPending, timer):
        self.deferred = deferred
        self.onPending = onPending
        self.timer = timer


class Association:
    """
    The DIMSE service user of one established association.

    @ivar callingAETitle: the requestor's AE title.
    @ivar calledAETitle: the AE title the requestor called.
    @ivar isRequestor: C{True} on the side that opened the association.
    @ivar associateRequest: the L{dicomd.ul.pdu.AAssociateRQ} that opened it.
    @ivar contexts: the accepted presentation contexts, by ID.
    @ivar peerAddress: the peer's L{twisted.internet.interfaces.IAddress}.
    @ivar counters: per DIMSE operation name, a count of the requests this
        side answered, by status category, for the association's log line.
    @ivar dimseTimeout: how long a response to our request may take, and
        the next fragment of a message the peer has begun sending (its
        protocol's timer); C{None} for no limit.
    @ivar operationsWindow: how many requests this side may have
        outstanding at once: 1, unless the acceptor granted the requestor
        an Asynchronous Operations Window (PS3.7 D.3.3.3); C{None} for no
        limit.
    @ivar peerOperationsWindow: how many requests the peer may have
        outstanding at once: 1, unless this side, the acceptor, granted it
        a window.
    @ivar openAlongside: for an acceptor's association, the set of the
        associations open on the same acceptor factory, this one included
        (their protocols); C{None} for a requestor's.
    @ivar debugging: whether each DIMSE message is logged
        (L{dicomd.net.debug.enabled} when the association was established).
    """

    log = Logger()

    def __init__(
        self,
        protocol,
        *,
        isRequestor: bool,
        associateRequest,
        contexts: Dict[int, NegotiatedContext],
        peerMaximumLength: int,
        services=None,
        reactor=None,
        dimseTimeout: Optional[float] = None,
        peerAddress=None,
        operationsWindow: Optional[int] = 1,
        peerOperationsWindow: Optional[int] = 1,
        openAlongside=None,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.protocol = protocol
        self.isRequestor = isRequestor
        self.associateRequest = associateRequest
        self.callingAETitle = associateRequest.callingAETitle
        self.calledAETitle = associateRequest.calledAETitle
        self.contexts = contexts
        self.services = services or {}
        self.peerAddress = peerAddress
        self.dimseTimeout = dimseTimeout
        self.operationsWindow = operationsWindow
        self.peerOperationsWindow = peerOperationsWindow
        self.openAlongside = openAlongside
        self.debugging = debug.enabled()
        self.counters: Dict[str, Dict[str, int]] = {}
        self._reactor = reactor
        self._pauses = 0
        # A full write buffer is one more counted read pause: a peer that
        # does not read our responses cannot have us read (and answer) more
        # of its requests meanwhile.
        self._sender = MessageSender(
            protocol,
            maximumFragmentLength(peerMaximumLength),
            whenBlocked=self.pauseReceiving,
            whenUnblocked=self._sendingUnblocked,
            whenDrained=self._restartDIMSETimers,
        )
        self._writableWaiters: List[defer.Deferred] = []
        self._assembler = MessageAssembler()
        self._consumer = None
        self._outstanding: Dict[int, _Outstanding] = {}
        self._serving: Dict[int, Optional[Callable[[], None]]] = {}
        self._nextMessageID = 1
        self._ended = False
        self._releasing = False
        self._closedWaiters = []

    @property
    def hasEnded(self) -> bool:
        """
        Whether the association is over: released or aborted, by either
        side, or its connection lost.  Its connection may not have closed
        yet (L{whenClosed}), but nothing more is exchanged on it.
        """
        return self._ended

    @property
    def peerAETitle(self) -> str:
        """
        The peer's AE title: the called one on the requestor's side, the
        calling one on the acceptor's.
        """
        return self.calledAETitle if self.isRequestor else self.callingAETitle

    # -- presentation contexts -----------------------------------------------

    def contextFor(self, abstractSyntax: str, transferSyntax: Optional[str] = None) -> NegotiatedContext:
        """
        An accepted presentation context for C{abstractSyntax} (and, if
        given, C{transferSyntax}) on which this side may invoke operations:
        the requestor where it kept the SCU role, the acceptor where the
        requestor took the SCP role (C-STORE sub-operations of C-GET,
        PS3.7 D.3.3.4).

        @raise NoPresentationContext: none was accepted.
        """
        for context in self.contexts.values():
            if context.abstractSyntax != abstractSyntax:
                continue
            if transferSyntax is not None and context.transferSyntax != transferSyntax:
                continue
            if not (context.scuRole if self.isRequestor else context.scpRole):
                continue
            return context
        raise NoPresentationContext(
            "no accepted presentation context for %s%s"
            % (abstractSyntax, "" if transferSyntax is None else " with transfer syntax " + transferSyntax)
        )

    # -- sending ----------------------------------------------------------------

    @property
    def fragmentLength(self) -> int:
        """
        The most data one PDV may carry to this peer.
        """
        return self._sender.fragmentLength

    @property
    def readSize(self) -> int:
        """
        How much of a streamed data set is read per step: a source that has
        its first C{readSize} bytes ready (read ahead) is sent without
        waiting for the disk.
        """
        return self._sender.readSize

    def flush(self) -> None:
        """
        Hand what was sent to the kernel now instead of on the reactor's
        next iteration (L{dicomd.net.protocol.AssociationProtocol.flush}).
        """
        self.protocol.flush()

    def send(self, contextID: int, message: Message, dataSet=None, command: Optional[bytes] = None) -> None:
        """
        Send a message, with its data set when it has one.  Messages go out
        whole and in order: one sent while a data set streams waits.

        @param dataSet: the encoded data set in the context's transfer
            syntax: bytes, a memoryview, or an
            L{dicomd.interfaces.IDataSetSource} streamed as the transport
            drains.
        @param command: C{message} already encoded (L{encodeCommand}), for a
            message sent many times over, as a C-FIND's pending responses.
        """
        if self._ended or self._releasing:
            # After our A-RELEASE-RQ no P-DATA may follow (Evt9 has no cell
            # in Sta7): the message is dropped.
            if dataSet is not None and not isinstance(dataSet, _BUFFER_TYPES):
                dataSet.close()
            return
        if self.debugging:
            self._logMessage("to", contextID, message)
        if message.isResponse:
            self._responseSent(message)
        self._sender.send(contextID, command or encodeCommand(message), dataSet, self._sendFailed)

    def _logMessage(self, direction: str, contextID: int, message: Message) -> None:
        self.log.debug(
            "DIMSE {direction} {peer} on presentation context {contextID}: {command}",
            direction=direction,
            peer=self.calledAETitle if self.isRequestor else self.callingAETitle,
            contextID=contextID,
            command=message.describe(debug.uidName),
        )

    def _sendFailed(self, error) -> None:
        if error is not None and not self._ended:
            self.log.warn("Could not send a data set to {peer}: {error}", peer=self.calledAETitle, error=str(error))

    def _responseSent(self, response: Message) -> None:
        category = _status.category(response.status)
        if category is _status.Category.PENDING:
            return
        if self._serving.pop(response.messageIDBeingRespondedTo, None) is not None:
            operation = OPERATION_NAMES.get(response.commandField & 0x7FFF)
            if operation is None:
                operation = "0x%04X" % response.commandField
            counts = self.counters.setdefault(operation, {})
            outcome = _OUTCOMES[category]
            counts[outcome] = counts.get(outcome, 0) + 1

    def request(self, contextID: int, message: Message, dataSet=None, onPending=None) -> defer.Deferred:
        """
        Send a request and wait for its final response.

        The message ID is assigned here.  With a DIMSE timeout, the peer
        may keep the request waiting that long, no more: the timer starts
        with the request, and again with each pending response and each
        time the peer has read what filled the write buffer (a large data
        set on a slow link is not timed out); when it expires the
        association is aborted.

        @param onPending: called as C{onPending(response, dataSet)} for each
            pending response; the data set is bytes or C{None}.
        @return: a L{Deferred} firing with C{(response, dataSet)} for the
            final response, or failing with an L{AssociationError}
            (L{DIMSETimeout} when the DIMSE timeout expired).
        """
        if self._ended or self._releasing:
            if dataSet is not None and not isinstance(dataSet, _BUFFER_TYPES):
                dataSet.close()
            return defer.fail(
                AssociationAborted("the association is being released" if self._releasing else "the association has ended")
            )
        messageID = self._allocateMessageID()
        message.messageID = messageID
        deferred = defer.Deferred()
        self._outstanding[messageID] = _Outstanding(deferred, onPending, self._startDIMSETimer(messageID))
        self.send(contextID, message, dataSet)
        return deferred

    def cancel(self, contextID: int, messageID: int) -> None:
        """
        Send C-CANCEL-RQ for one of our outstanding requests.
        """
        self.send(contextID, CCancelRQ(messageIDBeingRespondedTo=messageID))

    def echo(self) -> defer.Deferred:
        """
        C-ECHO (PS3.4 Annex A).

        @return: a L{Deferred} firing with the response status.
        """
        context = self.contextFor(VERIFICATION_SOP_CLASS)
        return self.request(context.contextID, CEchoRQ()).addCallback(lambda result: result[0].status)

    def release(self) -> defer.Deferred:
        """
        A-RELEASE: end the association in order.

        @return: a L{Deferred} that fires when the connection has closed.
        """
        closed = self.whenClosed()
        if not self._ended and not self._releasing:
            # No more requests from this side (Evt9 has no cell in Sta7);
            # responses to ours may still arrive (AR-6).
            self._releasing = True
            self.protocol.requestRelease()
        return closed

    def abort(self) -> defer.Deferred:
        """
        A-ABORT from this service user.

        @return: a L{Deferred} that fires when the connection has closed.
        """
        closed = self.whenClosed()
        self.protocol.abort()
        return closed

    def whenClosed(self) -> defer.Deferred:
        """
        A L{Deferred} that fires with C{None} once the transport connection
        of this association has closed.
        """
        if self._closedWaiters is None:
            return defer.succeed(None)
        deferred = defer.Deferred()
        self._closedWaiters.append(deferred)
        return deferred

    def _allocateMessageID(self) -> int:
        messageID = self._nextMessageID
        self._nextMessageID = messageID % 0xFFFF + 1
        return messageID

    def _restartDIMSETimers(self) -> None:
        """
        The peer has read what we sent: it is alive, and a request whose
        data set is still going out is making progress.  The DIMSE timeout
        bounds how long the peer keeps us waiting, not how long a large
        data set takes on a slow link, so the timers of our outstanding
        requests start again.
        """
        for outstanding in self._outstanding.values():
            if outstanding.timer is not None:
                outstanding.timer.reset(self.dimseTimeout)

    def _startDIMSETimer(self, messageID: int):
        if not self.dimseTimeout:
            return None
        return self._reactor.callLater(self.dimseTimeout, self._dimseTimedOut, messageID)

    def _dimseTimedOut(self, messageID: int) -> None:
        outstanding = self._outstanding.pop(messageID, None)
        if outstanding is None:
            return
        self.log.warn(
            "No response from {peer} to message {messageID} within the DIMSE timeout of {timeout} s; aborting",
            peer=self.peerAETitle,
            messageID=messageID,
            timeout=self.dimseTimeout,
        )
        outstanding.deferred.errback(DIMSETimeout("no response within %s s" % (self.dimseTimeout,)))
        self.protocol.abort()

    # -- receiving --------------------------------------------------------------

    def whenWritable(self) -> defer.Deferred:
        """
        A L{Deferred} that fires once the peer reads what this side sends:
        at once, unless it has left the transport's write buffer full.  A
        service that sends many messages of its own accord (C-FIND's
        pending responses) waits on it between batches, so that a peer
        which never reads cannot make it queue responses without bound.
        It fires too when the association ends.
        """
        if self._ended or not self._sender.blocked:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._writableWaiters.append(waiter)
        return waiter

    def _sendingUnblocked(self) -> None:
        self.resumeReceiving()
        self._wakeWriters()

    def _wakeWriters(self) -> None:
        waiters, self._writableWaiters = self._writableWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def pauseReceiving(self) -> None:
        """
        Stop reading from the transport until every caller of this method
        has called L{resumeReceiving}: a consumer that cannot keep up (a
        slow disk) slows the peer down instead of filling memory, and so
        does a peer that does not read what this side sends (the
        L{MessageSender} pauses while the transport's write buffer is
        full).
        """
        self._pauses += 1
        if self._pauses == 1:
            self.protocol.pauseReading()

    def resumeReceiving(self) -> None:
        """
        Undo one L{pauseReceiving}.
        """
        self._pauses -= 1
        if self._pauses == 0:
            self.protocol.resumeReading()

    @property
    def waitsAlone(self) -> bool:
        """
        Whether, between the peer's requests, nothing else asks for this
        process's time: the peer waits for each response (no window) and
        no other association is open beside this one.  Work done then,
        after a response, is off everyone's way.
        """
        alongside = self.openAlongside
        return self.peerOperationsWindow == 1 and (alongside is None or len(alongside) <= 1)

    @property
    def isBusy(self) -> bool:
        """
        Whether the peer is waiting on this side (a request being served
        once its data set is in) or this side on the peer's response, which
        the DIMSE timeout governs: the idle timeout does not apply then.
        """
        return bool(self._outstanding) or (bool(self._serving) and not self._assembler.inDataSet)

    @property
    def isReceivingMessage(self) -> bool:
        """
        Whether the peer has begun sending a message (its command set or
        data set) that is not complete, on an association that has not
        ended: the DIMSE timeout then bounds the wait for its next
        fragment.
        """
        return not self._ended and self._assembler.inMessage

    def pDataReceived(self, pdu) -> None:
        """
        P-DATA indication from the Upper Layer.

        Once the association has ended P-DATA is ignored.
        """
        if self._ended:
            return
        try:
            for event in self._assembler.receive(pdu):
                if type(event) is CommandReceived:
                    self._commandReceived(event.contextID, event.message)
                else:
                    consumer = self._consumer
                    if consumer is None:
                        raise DIMSEProtocolError("a data set nobody expects")
                    consumer.write(event.data)
                    if event.isLast:
                        self._consumer = None
                        consumer.finish()
        except DIMSEProtocolError as e:
            self.log.warn("DIMSE protocol error from {peer}: {error}; aborting", peer=self.callingAETitle, error=str(e))
            self.protocol.abort()
        except Exception:
            self.log.failure("Error handling a message from {peer}; aborting", peer=self.callingAETitle)
            self.protocol.abort()

    def _commandReceived(self, contextID: int, message: Message) -> None:
        if self.debugging:
            self._logMessage("from", contextID, message)
        context = self.contexts.get(contextID)
        if context is None:
            raise DIMSEProtocolError("message on presentation context %d, which was not accepted" % (contextID,))
        if message.isResponse:
            self._responseReceived(message)
            return
        if type(message) is CCancelRQ:
            canceller = self._serving.get(message.messageIDBeingRespondedTo)
            if canceller is not None:
                canceller()
            if message.hasDataSet:
                # C-CANCEL-RQ carries none (PS3.7 9.3.2.3); one sent anyway
                # is read and dropped.
                self._consumer = DiscardedDataSet(_noCancel)
            return
        messageID = getattr(message, "messageID", None)
        if messageID is None or messageID in self._serving:
            raise DIMSEProtocolError("request without a fresh message ID")
        self._serving[messageID] = _noCancel
        service = self.services.get(message.commandField)
        consumer = None
        if service is None:
            refusal = responseTo(message, _status.UNRECOGNIZED_OPERATION)
            self.log.info(
                "Refusing {operation} from {peer}: no service for it on this AE",
                operation=OPERATION_NAMES.get(message.commandField, "command 0x%04X" % message.commandField),
                peer=self.callingAETitle,
            )
            if not message.hasDataSet:
                self.send(contextID, refusal)
            else:
                consumer = DiscardedDataSet(lambda: self.send(contextID, refusal))
        else:
            consumer = service.messageReceived(self, context, message)
        if message.hasDataSet:
            # A service that expects no data set (C-ECHO) returns no
            # consumer, whatever the peer's CommandDataSetType says: a data
            # set it sends anyway is read and dropped.
            self._consumer = consumer if consumer is not None else DiscardedDataSet(_noCancel)

    def onCancel(self, messageID: int, canceller: Callable[[], None]) -> None:
        """
        Have C-CANCEL-RQ for the peer's request C{messageID} call
        C{canceller}, until its final response is sent.  The canceller is
        also called when the association ends first.
        """
        if messageID in self._serving:
            self._serving[messageID] = canceller

    def _responseReceived(self, message: Message) -> None:
        outstanding = self._outstanding.get(message.messageIDBeingRespondedTo)
        if outstanding is None:
            raise DIMSEProtocolError("response to message %s, which is not outstanding" % message.messageIDBeingRespondedTo)
        if message.hasDataSet:
            self._consumer = BufferedDataSet(lambda data: self._deliverResponse(outstanding, message, data))
        else:
            self._deliverResponse(outstanding, message, None)

    def _deliverResponse(self, outstanding: _Outstanding, message: Message, dataSet) -> None:
        if _status.category(message.status) is _status.Category.PENDING:
            if outstanding.timer is not None:
                outstanding.timer.reset(self.dimseTimeout)
            if outstanding.onPending is not None:
                outstanding.onPending(message, dataSet)
            return
        del self._outstanding[message.messageIDBeingRespondedTo]
        if outstanding.timer is not None:
            outstanding.timer.cancel()
        outstanding.deferred.callback((message, dataSet))

    # -- the end ------------------------------------------------------------

    def ended(self, reason: Optional[AssociationError]) -> None:
        """
        The association is over: released (C{reason} is C{None}) or aborted.
        Abandon the data set being received, fail our outstanding requests
        and stop the work still running for the peer's.
        """
        if self._ended:
            return
        self._ended = True
        # Unregisters the sender from the transport and undoes its read
        # pause, if any: the transport is about to close, and must.
        self._sender.stopProducing()
        self._wakeWriters()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.abandon(str(reason or "association released during a data set"))
        outstanding, self._outstanding = self._outstanding, {}
        for entry in outstanding.values():
            if entry.timer is not None:
                entry.timer.cancel()
            entry.deferred.errback(Failure(reason or AssociationAborted("association released before the response")))
        serving, self._serving = self._serving, {}
        for canceller in serving.values():
            canceller()

    def stopSending(self) -> None:
        """
        The transport connection is about to be closed: stop being its
        producer, so that closing it is not held up (a TLS transport does
        not shut down while a producer is registered, a TCP one not while
        its producer is paused), and drop whatever waits to be sent.
        """
        self._sender.stopProducing()

    def connectionClosed(self) -> None:
        """
        The transport connection is closed.
        """
        waiters, self._closedWaiters = self._closedWaiters, None
        for deferred in waiters or ():
            deferred.callback(None)


def _noCancel() -> None:
    pass
