"""
Sending DIMSE messages one at a time (PS3.7 section 9.3 and PS3.8 Annex E):
the fragments of one message are never interleaved with another's.

L{MessageSender} writes a message's command and data set as P-DATA-TF PDUs.
A small data set given as bytes goes out at once with its command, in the
same PDU when both fit one (L{dicomd.dimse.pdv.encodeMessage}); a large
one, or one given as an L{IDataSetSource} (a file), is written piece by
piece as the transport drains.  Messages sent while a data set is
streaming wait their turn in a queue, and go out whole after it.

The sender is the connection's push producer for the whole association,
as C{twisted.web}'s C{HTTPChannel} is for an HTTP connection: when the
transport's write buffer fills, it pauses the data set being streamed and
also stops reading the peer (its C{whenBlocked} callable, the
association's counted read pause), so that a peer which sends requests
but never reads the responses (pipelined C-ECHO-RQs, say) cannot make
this side buffer responses without bound; both resume when the buffer
drains.  Small messages sent while blocked are still written: reading has
stopped, so only the requests already read can add to the buffer.
"""

from collections import deque
from typing import Optional

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from dicomd.dimse.pdv import encodeMessage, fragment
from dicomd.interfaces import IDataSetSource

#: How much of a streamed data set is read and written per step, rounded
#: down to whole PDVs (at least one): big enough that the per-step cost
#: (a read, a reactor iteration) is small beside the copying, small enough
#: that what waits in memory for a slow receiver stays small.
READ_SIZE = 256 << 10

#: The most a TCP transport hands the kernel per C{send()}: Twisted's
#: default (128 KiB) cuts each step in two or three system calls and
#: reactor iterations; this lets a step go in one when the socket buffer
#: has room.
SEND_LIMIT = 1 << 20

_BUFFER_TYPES = (bytes, bytearray, memoryview)


@implementer(IDataSetSource)
class _BufferSource:
    """
    An encoded data set already in memory (a converted one, say), read in
    slices without copying.
    """

    def __init__(self, data):
        self._view = memoryview(data)
        self._position = 0
        self.length = len(self._view)

    def read(self, size: int):
        chunk = self._view[self._position : self._position + size]
        self._position += len(chunk)
        self.length -= len(chunk)
        return chunk

    def close(self) -> None:
        self._view = None


class _Streaming:
    """
    The message whose data set is being written.

    @ivar head: the command's PDUs, written with the first piece of the
        data set.
    """

    __slots__ = ("contextID", "source", "whenSent", "head")

    def __init__(self, contextID, source, whenSent, head):
        self.contextID = contextID
        self.source = source
        self.whenSent = whenSent
        self.head = head


@implementer(IPushProducer)
class MessageSender:
    """
    The outgoing half of one association's DIMSE traffic, and the
    transport's streaming producer from the association's start to its end
    (L{stopProducing}).

    While the transport's write buffer is full (between its
    C{pauseProducing} and C{resumeProducing}) a data set being streamed
    waits and the peer is not read; small messages are still written in
    order, since without reading they are bounded by the requests already
    read.

    @ivar fragmentLength: the most data per PDV: what the peer's maximum
        length allows, rounded down to an even number, since every fragment
        but a data set's last must be of even length (DCMTK refuses odd
        ones).
    @ivar readSize: how much of a streamed data set is read per step: whole
        PDVs, about L{READ_SIZE}.
    """

    def __init__(self, protocol, fragmentLength: int, whenBlocked=None, whenUnblocked=None, whenDrained=None):
        """
        @param protocol: the L{dicomd.net.protocol.AssociationProtocol};
            the sender registers with its transport, if it has one, as a
            streaming producer until L{stopProducing}.
        @param whenBlocked: called without arguments when the transport's
            write buffer fills (stop reading the peer), once per blocking.
        @param whenUnblocked: called without arguments when it has drained
            again, or when the sender stops while blocked: once for each
            call of C{whenBlocked}.
        @param whenDrained: called without arguments each time the
            transport's write buffer has drained (the peer is reading),
            even when the data set streaming on fills it again at once and
            the sender stays blocked.
        """
        self._protocol = protocol
        self.fragmentLength = max(2, fragmentLength - fragmentLength % 2)
        self.readSize = self.fragmentLength * max(1, READ_SIZE // self.fragmentLength)
        self._queue = deque()
        self._streaming: Optional[_Streaming] = None
        #: The transport asked us to pause (its write buffer is full).
        self._paused = False
        #: C{whenBlocked} was called and C{whenUnblocked} not yet.
        self._blocked = False
        self._stopped = False
        self._pumping = False
        self._whenBlocked = whenBlocked
        self._whenDrained = whenDrained
        self._whenUnblocked = whenUnblocked
        self._transport = None
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            if getattr(transport, "SEND_LIMIT", SEND_LIMIT) < SEND_LIMIT:
                transport.SEND_LIMIT = SEND_LIMIT
            # Once for the whole association (not per data set): small
            # responses fill the buffer as surely as data sets do, and one
            # registration costs nothing per message.
            self._transport = transport
            transport.registerProducer(self, True)

    @property
    def blocked(self) -> bool:
        """
        Whether the transport's write buffer is full: a data set being
        streamed waits, and the peer is not being read.
        """
        return self._blocked

    def send(self, contextID: int, command: bytes, dataSet=None, whenSent=None) -> None:
        """
        Send an encoded command set and its data set, now or after the
        message being streamed.

        @param dataSet: C{None}, bytes (or a memoryview), or an
            L{IDataSetSource}.
        @param whenSent: called with C{None} once the last byte is handed to
            the transport, or with the exception that stopped the message.
        """
        if self._stopped:
            _close(dataSet)
            return
        if self._streaming is not None or self._queue:
            self._queue.append((contextID, command, dataSet, whenSent))
            return
        self._write(contextID, command, dataSet, whenSent)

    def _write(self, contextID, command, dataSet, whenSent) -> None:
        if isinstance(dataSet, _BUFFER_TYPES) and len(dataSet) > self.readSize:
            dataSet = _BufferSource(dataSet)
        if dataSet is None or isinstance(dataSet, _BUFFER_TYPES):
            self._protocol.sendPData(encodeMessage(contextID, command, dataSet, self.fragmentLength))
            if whenSent is not None:
                whenSent(None)
            return
        pieces = fragment(contextID, True, command, self.fragmentLength)
        self._streaming = _Streaming(contextID, dataSet, whenSent, pieces)
        # While the transport is paused the stream starts on resumeProducing.
        self._pump()

    def _pump(self) -> None:
        # A transport that writes at once (flushed by a callback of the
        # piece being written) resumes us from inside this loop, as does a
        # stream started by a message queued behind the one that ends; the
        # loop running further up goes on with them, instead of the stack
        # growing by a level per piece.
        if self._pumping:
            return
        self._pumping = True
        try:
            self._pumpPieces()
        finally:
            self._pumping = False

    def _pumpPieces(self) -> None:
        while self._streaming is not None and not self._paused:
            streaming = self._streaming
            source = streaming.source
            try:
                chunk = source.read(min(self.readSize, source.length))
            except OSError as e:
                self._finishStream(e)
                self._protocol.abort()
                return
            isLast = source.length == 0
            pieces = fragment(streaming.contextID, False, chunk, self.fragmentLength, isLast)
            if streaming.head is not None:
                pieces[:0] = streaming.head
                streaming.head = None
            self._protocol.sendPData(pieces)
            if isLast and self._streaming is streaming:
                self._finishStream(None)
                self._drainQueue()

    def _finishStream(self, error) -> None:
        streaming, self._streaming = self._streaming, None
        streaming.source.close()
        if streaming.whenSent is not None:
            streaming.whenSent(error)

    def _drainQueue(self) -> None:
        while self._streaming is None and self._queue and not self._stopped:
            self._write(*self._queue.popleft())

    # IPushProducer

    def pauseProducing(self) -> None:
        """
        The transport's write buffer is full: pause the stream and stop
        reading the peer until L{resumeProducing}.
        """
        self._paused = True
        if not self._blocked and not self._stopped:
            self._blocked = True
            if self._whenBlocked is not None:
                self._whenBlocked()

    def resumeProducing(self) -> None:
        """
        The transport's write buffer has drained: go on with the stream,
        and read the peer again unless the stream filled the buffer anew.
        """
        self._paused = False
        if self._whenDrained is not None and not self._stopped:
            self._whenDrained()
        if self._streaming is not None:
            self._pump()
        if self._blocked and not self._paused:
            self._unblock()

    def _unblock(self) -> None:
        self._blocked = False
        if self._whenUnblocked is not None:
            self._whenUnblocked()

    def stopProducing(self) -> None:
        """
        The association or its connection is over: stop being the
        transport's producer, undo our read pause, and drop the stream and
        everything queued.

        Called by the association when it ends, by the protocol before it
        closes the transport (a TLS transport does not shut down while a
        producer is registered, a TCP one not while it is paused), and by
        Twisted when the connection is lost; calls after the first do
        nothing.
        """
        if self._stopped:
            return
        self._stopped = True
        transport, self._transport = self._transport, None
        # (Twisted's TCP transport calls this at connectionLost with us
        # still registered; a TLS transport keeps its producer elsewhere.)
        if transport is not None and getattr(transport, "producer", self) is not None:
            transport.unregisterProducer()
        if self._blocked:
            self._unblock()
        if self._streaming is not None:
            self._finishStream(ConnectionError("the connection closed while a data set was being sent"))
        queued, self._queue = self._queue, deque()
        for _, _, dataSet, whenSent in queued:
            _close(dataSet)
            if whenSent is not None:
                whenSent(ConnectionError("the connection closed before the message was sent"))


def _close(dataSet) -> None:
    if dataSet is not None and not isinstance(dataSet, _BUFFER_TYPES):
        dataSet.close()
