"""
Sending DIMSE messages one at a time (PS3.7 section 9.3 and PS3.8 Annex E):
the fragments of one message are never interleaved with another's.

L{MessageSender} writes a message's command and data set as P-DATA-TF PDUs.
A data set given as bytes goes out at once; one given as a
L{IDataSetSource} (a file) is read piece by piece as the transport drains:
the sender registers with the transport as a push producer, so a slow
receiver pauses the reading instead of filling memory.  Messages sent while
a data set is streaming wait their turn in a queue.
"""

from collections import deque
from typing import Optional

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from dicomd.dimse.pdv import fragment

#: How much of a streamed data set is read per step, at least.
READ_SIZE = 256 << 10


class IDataSetSource(Interface):
    """
    An encoded data set to be read in order, such as the part of a file
    after its File Meta Information.
    """

    length = Attribute("The number of bytes still to read.")

    def read(size):
        """
        Return the next C{size} bytes (fewer only at the end).

        @raise OSError: the source cannot be read; the message cannot be
            completed and the association is aborted.
        """

    def close():
        """
        Release the source; called once, whether or not it was read to the
        end.
        """


class _Streaming:
    __slots__ = ("contextID", "source", "whenSent")

    def __init__(self, contextID, source, whenSent):
        self.contextID = contextID
        self.source = source
        self.whenSent = whenSent


@implementer(IPushProducer)
class MessageSender:
    """
    The outgoing half of one association's DIMSE traffic.

    @ivar fragmentLength: the most data per PDV, from the peer's maximum
        length.
    """

    log = Logger()

    def __init__(self, protocol, fragmentLength: int):
        self._protocol = protocol
        self.fragmentLength = fragmentLength
        self._readSize = fragmentLength * max(1, READ_SIZE // fragmentLength)
        self._queue = deque()
        self._streaming: Optional[_Streaming] = None
        self._paused = False
        self._stopped = False

    def send(self, contextID: int, command: bytes, dataSet=None, whenSent=None) -> None:
        """
        Send an encoded command set and its data set, now or after the
        message being streamed.

        @param dataSet: C{None}, bytes, or an L{IDataSetSource}.
        @param whenSent: called with C{None} once the last byte is handed to
            the transport, or with the exception that stopped the message.
        """
        if self._stopped:
            if dataSet is not None and not isinstance(dataSet, (bytes, bytearray, memoryview)):
                dataSet.close()
            return
        if self._streaming is not None or self._queue:
            self._queue.append((contextID, command, dataSet, whenSent))
            return
        self._write(contextID, command, dataSet, whenSent)

    def _write(self, contextID, command, dataSet, whenSent) -> None:
        pieces = fragment(contextID, True, command, self.fragmentLength)
        if dataSet is None or isinstance(dataSet, (bytes, bytearray, memoryview)):
            if dataSet is not None:
                pieces += fragment(contextID, False, dataSet, self.fragmentLength)
            self._protocol.sendPData(pieces)
            if whenSent is not None:
                whenSent(None)
            return
        self._protocol.sendPData(pieces)
        self._streaming = _Streaming(contextID, dataSet, whenSent)
        self._protocol.transport.registerProducer(self, True)
        self._paused = False
        self._pump()

    def _pump(self) -> None:
        while self._streaming is not None and not self._paused:
            streaming = self._streaming
            source = streaming.source
            try:
                chunk = source.read(min(self._readSize, source.length))
            except OSError as e:
                self._finishStream(e)
                self._protocol.abort()
                return
            isLast = source.length == 0
            self._protocol.sendPData(fragment(streaming.contextID, False, chunk, self.fragmentLength, isLast))
            if isLast:
                self._finishStream(None)
                self._drainQueue()

    def _finishStream(self, error) -> None:
        streaming, self._streaming = self._streaming, None
        streaming.source.close()
        transport = self._protocol.transport
        if transport is not None:
            transport.unregisterProducer()
        if streaming.whenSent is not None:
            streaming.whenSent(error)

    def _drainQueue(self) -> None:
        while self._streaming is None and self._queue:
            self._write(*self._queue.popleft())

    # IPushProducer

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        """
        The connection is gone: drop the stream and everything queued.
        """
        self._stopped = True
        if self._streaming is not None:
            self._finishStream(ConnectionError("the connection closed while a data set was being sent"))
        queued, self._queue = self._queue, deque()
        for _, _, dataSet, whenSent in queued:
            if dataSet is not None and not isinstance(dataSet, (bytes, bytearray, memoryview)):
                dataSet.close()
            if whenSent is not None:
                whenSent(ConnectionError("the connection closed before the message was sent"))
