"""
The DICOM Upper Layer service provider (PS3.8 section 9), without I/O.

L{ULProvider} owns one association's side of the protocol: it frames the
incoming byte stream into PDUs, raises the event of PS3.8 Table 9-10 for
each one, runs the action the table names and reports what the caller must
do as a list of outputs: bytes to send, the ARTIM timer to start or stop, the
transport to open or close, and indications and confirmations for the local
user.  An event whose cell of the table is empty is reported too, as
L{EventNotAllowed}.  It never touches a socket, a clock or the reactor, so
every cell of the state table can be driven by a test.

Received bytes are pulled, as in h11: L{ULProvider.dataReceived} only
buffers them, and each call of L{ULProvider.nextOutputs} cuts one PDU and
returns its outputs.  The caller applies them (answering an indication, say)
before it asks for the next PDU, so every PDU meets the state the previous
one, and the answers to it, left.

Framing hands on PDUs that arrive whole as slices of the received chunk,
joins those that span chunks once, when complete (each byte is copied at
most once), and refuses a PDU whose header announces more than this side
accepts before a byte of its body is buffered.  A caller that can read
into memory it is given (C{recv_into}) asks for L{ULProvider.receiveBuffer}
instead: the bytes then land where the PDUs are cut from, and none is
copied at all.
"""

import mmap
import struct
import sys
from dataclasses import dataclass
from typing import List, Optional, Union

from dicomd.ul import pdu as _pdu
from dicomd.ul.fsm import PDU_EVENTS, TRANSITIONS, Event, State
from dicomd.ul.pdu import (
    ABORT_REASON_INVALID_PDU_PARAMETER_VALUE,
    ABORT_REASON_NOT_SPECIFIED,
    ABORT_REASON_UNEXPECTED_PDU,
    ABORT_REASON_UNRECOGNIZED_PDU,
    ABORT_SOURCE_SERVICE_PROVIDER,
    ABORT_SOURCE_SERVICE_USER,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PDUDecodeError,
)

# -- outputs -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendPDU:
    """
    Write these bytes (one or more whole PDUs) to the transport.
    """

    data: Union[bytes, list]


@dataclass(frozen=True, slots=True)
class StartARTIM:
    """
    Start, or restart, the association request/reject/release timer.
    """


@dataclass(frozen=True, slots=True)
class StopARTIM:
    """
    Stop the ARTIM timer if it runs.
    """


@dataclass(frozen=True, slots=True)
class OpenTransport:
    """
    TRANSPORT CONNECT request: open the connection to the peer (AE-1).
    """


@dataclass(frozen=True, slots=True)
class CloseTransport:
    """
    Close the transport connection.
    """


@dataclass(frozen=True, slots=True)
class AssociateIndication:
    """
    A-ASSOCIATE indication: a peer asks for an association; answer it with
    L{ULProvider.acceptAssociation} or L{ULProvider.rejectAssociation}.
    """

    request: AAssociateRQ


@dataclass(frozen=True, slots=True)
class AssociateAccepted:
    """
    A-ASSOCIATE confirmation (accept).
    """

    accept: AAssociateAC


@dataclass(frozen=True, slots=True)
class AssociateRejected:
    """
    A-ASSOCIATE confirmation (reject).
    """

    reject: AAssociateRJ


@dataclass(frozen=True, slots=True)
class PDataIndication:
    """
    P-DATA indication: the presentation data values of one P-DATA-TF PDU.
    """

    pdu: PDataTF


@dataclass(frozen=True, slots=True)
class ReleaseIndication:
    """
    A-RELEASE indication: the peer asks to release; answer with
    L{ULProvider.respondRelease}.

    @ivar collision: C{True} when both sides asked at once (AR-8).
    """

    collision: bool = False


@dataclass(frozen=True, slots=True)
class ReleaseConfirmation:
    """
    A-RELEASE confirmation: the peer answered our release request.
    """


@dataclass(frozen=True, slots=True)
class AbortIndication:
    """
    A-ABORT indication: the peer's service user aborted the association.
    """

    source: int
    reason: int


@dataclass(frozen=True, slots=True)
class ProviderAbortIndication:
    """
    A-P-ABORT indication: the association ended abnormally because of the
    service provider (a protocol error, the peer's provider, or the
    transport connection closing).

    @ivar source: who aborted, as an A-ABORT source value; C{None} when
        the transport connection closed without an A-ABORT.
    @ivar reason: the A-ABORT reason sent or received.
    @ivar description: what happened, for the log.
    """

    source: Optional[int]
    reason: int
    description: str


@dataclass(frozen=True, slots=True)
class EventNotAllowed:
    """
    An event whose cell of PS3.8 Table 9-10 is empty in the current state:
    the provider did nothing.

    Some are the normal end of an association: the transport connection
    closing in Sta1, after this side closed it; an abort, or an answer to
    an indication, after a PDU of the peer ended the association; PDUs
    that follow the one after which this side closed the connection.
    Others are a local user asking for what the state does not allow, such
    as sending data before the association is established.

    @ivar event: the L{Event} raised.
    @ivar state: the L{State} it was raised in, which it left unchanged.
    """

    event: Event
    state: State


_START_ARTIM = StartARTIM()
_STOP_ARTIM = StopARTIM()
_CLOSE = CloseTransport()

_HEADER = struct.Struct(">BBL")

#: The largest A-ASSOCIATE-RQ or -AC we read.  128 presentation contexts
#: with many transfer syntaxes and a user identity fit easily.
MAXIMUM_ASSOCIATE_PDU_LENGTH = 1 << 20

#: The largest P-DATA-TF we read when we advertised no limit (0).
MAXIMUM_UNLIMITED_PDU_LENGTH = 1 << 26

#: No received bytes.
_NOTHING = memoryview(b"")

#: The size of a receiving buffer (L{ULProvider.receiveBuffer}): a data set
#: up to the size the storage SCP finishes on the reactor thread (1 MiB),
#: with its PDUs' headers, fits in one, which is then used again from its
#: start for the next.  A larger PDU gets a buffer of its size.
RECEIVE_BUFFER_SIZE = (1 << 20) + (64 << 10)

#: The least room L{ULProvider.receiveBuffer} gives a read.
MINIMUM_READ = 64 << 10


class BufferPool:
    """
    Receiving buffers (L{ULProvider.receiveBuffer}) that providers let go,
    some while views of them were still held, given out again once free.

    A data set too large to wait in memory is written while it arrives:
    its fragments, views of the receiving buffer, wait for a worker
    thread's write, so a full buffer is seldom free, and the provider goes
    on in another one.  A new buffer is fresh anonymous memory, and the
    first touch of each of its pages costs a page fault and the zeroing of
    the page: as much again as the read into it (2 x 256 MB received:
    139,000 page faults and 500 ms of CPU, against 6,000 and 245 ms with
    buffers used again).  Once its fragments are written, a buffer is
    free again: CPython's reference count says no view of it is left.

    Used on the reactor thread only.  Only buffers of
    L{RECEIVE_BUFFER_SIZE} are kept, so the pool holds
    C{keep * RECEIVE_BUFFER_SIZE} bytes at most.

    @ivar keep: how many buffers are kept at most; the oldest goes first.
    """

    def __init__(self, keep: int = 16):
        self.keep = keep
        self._buffers: List[mmap.mmap] = []

    def retire(self, buffer: mmap.mmap) -> None:
        """
        Take back a buffer, which may still be in use.
        """
        if len(buffer) != RECEIVE_BUFFER_SIZE:
            return
        buffers = self._buffers
        buffers.append(buffer)
        if len(buffers) > self.keep:
            del buffers[0]

    def take(self, size: int) -> mmap.mmap:
        """
        A free buffer of at least C{size} bytes, kept or new.
        """
        buffers = self._buffers
        if size <= RECEIVE_BUFFER_SIZE:
            for i in range(len(buffers)):
                # The list's reference, and getrefcount's argument: no
                # view (each holds one reference, through its managed
                # buffer).
                if sys.getrefcount(buffers[i]) == 2:
                    return buffers.pop(i)
        return _newBuffer(max(size, RECEIVE_BUFFER_SIZE))


def _newBuffer(size: int) -> mmap.mmap:
    """
    A receiving buffer of C{size} bytes: anonymous memory, which takes
    room only as reads reach into it, so an association receiving small
    objects, which reads into the start of its buffer again and again,
    holds a few pages of it, not all of it.
    """
    return mmap.mmap(-1, size)


#: The receiving buffers the providers of this process let go.
BUFFERS = BufferPool()


class ULProvider:
    """
    One side of one association, as the DICOM UL protocol machine.

    Every public method but L{dataReceived} is an event of PS3.8 Table
    9-10 and returns the list of outputs that event produced, in the order
    they must be applied.  Received bytes raise their events one PDU at a
    time, as L{nextOutputs} is called.

    @ivar state: the current L{State}.
    @ivar isRequestor: C{True} on the side that sent the A-ASSOCIATE-RQ;
        it decides the release collision states (AR-8).
    @ivar maximumLength: the largest P-DATA-TF variable field this side
        accepts, as advertised in its user information; 0 for no limit.
    @ivar errorDescription: what was wrong with the invalid PDU that ended
        the stream (Evt19), for the log; C{""} if none was.  Before an
        association (AA-1 in Sta2) no indication carries it.
    @ivar buffers: where receiving buffers come from and go back to: the
        process's L{BUFFERS}.
    """

    buffers = BUFFERS

    def __init__(self, isRequestor: bool, maximumLength: int = 16384):
        self.state = State.Sta1
        self.isRequestor = isRequestor
        self.maximumLength = maximumLength
        # The received chunk PDUs are cut from and where the next one
        # starts in it; C{None} once the stream cannot be framed (Evt19).
        self._view = _NOTHING
        self._pos = 0
        # The received bytes of an incomplete PDU, as the chunks (or the
        # tail of a chunk) they came in, and how many bytes the first PDU
        # in them needs to be complete (6 while its header is incomplete).
        self._buffer: List = []
        self._bufferedLength = 0
        self._needed = 6
        # With a receiving buffer (L{receiveBuffer}): the buffer, a view of
        # all of it, and how much of it holds received bytes; C{_view} is
        # then that much of it, and C{_pos} where the next PDU starts.
        self._store: Optional[mmap.mmap] = None
        self._storeView = _NOTHING
        self._end = 0
        # Parameters of the event being handled, read by the actions.
        self._outputs: List = []
        self._pdu = None
        self._abortSource = ABORT_SOURCE_SERVICE_USER
        self._abortReason = ABORT_REASON_NOT_SPECIFIED
        self.errorDescription = ""

    # -- events from the local user ------------------------------------------

    def requestAssociation(self, request: AAssociateRQ) -> list:
        """
        Evt1: A-ASSOCIATE request from the local user.
        """
        self._pdu = request
        return self._handle(Event.Evt1)

    def transportConnected(self) -> list:
        """
        Evt2: the transport connection we asked for is open.
        """
        return self._handle(Event.Evt2)

    def transportAccepted(self) -> list:
        """
        Evt5: a peer opened a transport connection to us.
        """
        return self._handle(Event.Evt5)

    def acceptAssociation(self, accept: AAssociateAC) -> list:
        """
        Evt7: the local user accepts the association.
        """
        self._pdu = accept
        return self._handle(Event.Evt7)

    def rejectAssociation(self, reject: AAssociateRJ) -> list:
        """
        Evt8: the local user rejects the association.
        """
        self._pdu = reject
        return self._handle(Event.Evt8)

    def sendData(self, data: Union[bytes, list]) -> list:
        """
        Evt9: P-DATA request.

        @param data: one or more whole, encoded P-DATA-TF PDUs.
        """
        if self.state is State.Sta6:
            # DT-1, as the table would run it: the event of nearly every
            # message sent, without the round trip through the table.
            return [SendPDU(data)]
        self._pdu = data
        return self._handle(Event.Evt9)

    def requestRelease(self) -> list:
        """
        Evt11: A-RELEASE request from the local user.
        """
        return self._handle(Event.Evt11)

    def respondRelease(self) -> list:
        """
        Evt14: A-RELEASE response from the local user.
        """
        return self._handle(Event.Evt14)

    def abort(self, source: int = ABORT_SOURCE_SERVICE_USER, reason: int = ABORT_REASON_NOT_SPECIFIED) -> list:
        """
        Evt15: A-ABORT request from the local user.

        In a state without an association to abort (Sta1, Sta2, Sta13) it
        is not allowed (L{EventNotAllowed}): a caller tearing down need not
        know the state.
        """
        self._abortSource = source
        self._abortReason = reason
        return self._handle(Event.Evt15)

    # -- events from the transport -------------------------------------------

    def connectionLost(self) -> list:
        """
        Evt17: the transport connection closed.  Its receiving buffer goes
        back to L{buffers}, for the next association.
        """
        outputs = self._handle(Event.Evt17)
        if self._store is not None:
            store, self._store = self._store, None
            self._storeView = self._view = _NOTHING
            self._pos = self._end = 0
            self.buffers.retire(store)
        return outputs

    def artimExpired(self) -> list:
        """
        Evt18: the ARTIM timer expired.
        """
        return self._handle(Event.Evt18)

    def dataReceived(self, data) -> None:
        """
        Buffer received bytes, for L{nextOutputs} to cut into PDUs.

        A PDU that arrives whole in one chunk is decoded from memoryview
        slices of that chunk, without copying.  The start of a PDU that
        does not is kept as it came (a slice of its chunk) with the chunks
        that follow, and they are joined once, when the last byte the PDU
        needs has arrived: every byte is copied at most once, however the
        stream is cut, as long as each chunk's PDUs are asked for before
        the next chunk arrives.  Once the stream could not be framed
        (Evt19), what follows is not read.
        """
        view = self._view
        if view is None:
            return
        if self._store is not None:
            self._copyIn(memoryview(data))
            return
        if type(data) is not bytes:
            # Slices of what we are given outlive this call: a mutable
            # buffer the caller may reuse is copied first.
            data = bytes(data)
        pending = self._buffer
        if pending:
            pending.append(data)
            self._bufferedLength += len(data)
            if self._bufferedLength < self._needed:
                return
            data = b"".join(pending)
            self._buffer = []
            self._bufferedLength = 0
        elif self._pos < len(view):
            # PDUs of the previous chunk were not asked for yet.
            data = view[self._pos :].tobytes() + data
        self._view = memoryview(data)
        self._pos = 0

    def nextOutputs(self) -> Optional[list]:
        """
        Cut the next PDU from the received bytes and raise its event: the
        event of its type, or Evt19 for one that cannot be framed or
        decoded.

        @return: the outputs of that one event, in order (an empty list for
            a PDU the state table ignores, AA-6), or C{None} when no whole
            PDU is buffered.
        """
        view = self._view
        if view is None:
            return None
        pos = self._pos
        end = len(view)
        if end - pos < 6:
            if self._store is not None:
                # The bytes stay in the receiving buffer until the rest comes.
                self._needed = 6
                return None
            if pos < end:
                self._awaitRest(view, pos, 6)
            elif end:
                # Every PDU of the chunk was handed on: let it go.
                self._view = _NOTHING
                self._pos = 0
            return None
        pduType, _, length = _HEADER.unpack_from(view, pos)
        if pduType not in PDU_EVENTS:
            # Whatever its length, an unknown type cannot be framed.
            return self._invalid("unrecognized PDU type 0x%02X" % (pduType,), ABORT_REASON_UNRECOGNIZED_PDU)
        limit = self._limit(pduType)
        if length > limit:
            return self._invalid(
                "PDU type 0x%02X announces %d bytes, more than the %d accepted" % (pduType, length, limit),
                ABORT_REASON_INVALID_PDU_PARAMETER_VALUE,
            )
        start = pos + 6
        stop = start + length
        if stop > end:
            if self._store is not None:
                self._needed = 6 + length
            else:
                self._awaitRest(view, pos, 6 + length)
            return None
        self._pos = stop
        if pduType == _pdu.P_DATA_TF and self.state is State.Sta6:
            # Evt10 in Sta6, DT-2, as the table would run it: the event of
            # nearly every PDU, without the round trip through the table.
            try:
                pdu = _pdu.PDataTF.decode(view[start:stop])
            except PDUDecodeError as e:
                return self._invalid(str(e), e.reason)
            return [PDataIndication(pdu)]
        return self._received(pduType, view[start:stop])

    def _awaitRest(self, view, pos: int, needed: int) -> None:
        """
        Keep the start of a PDU, from C{pos} in C{view}, until the
        C{needed} bytes it takes have arrived.
        """
        self._buffer = [view[pos:]]
        self._bufferedLength = len(view) - pos
        self._needed = needed
        self._view = _NOTHING
        self._pos = 0

    def receiveBuffer(self) -> memoryview:
        """
        Where the next bytes read from the transport may go: a writable view
        of the free end of this side's receiving buffer, for a read into it
        (C{socket.recv_into}), then L{received}.  PDUs are cut from that
        buffer as views of it, as from a received chunk, so no byte read is
        copied to reassemble a PDU that spans reads.

        The buffer holds L{RECEIVE_BUFFER_SIZE} bytes, or the PDU being
        received when that is larger, and the view leaves at least
        L{MINIMUM_READ} bytes of room, or the rest of that PDU.  When it
        fills up, its unframed bytes move to its start if nothing else holds
        a view of it any more, else to a new buffer: a PDU handed on, and
        what was cut from it, stay as they are for as long as they are used
        (the spool holding a data set's fragments until it writes them,
        say).  Nothing is overwritten that another reference can still see:
        CPython's count of the buffer's references says when it is free.

        Once the stream could not be framed, the bytes go to scratch memory
        and are forgotten.
        """
        if self._view is None:
            return memoryview(bytearray(MINIMUM_READ))
        if self._store is None:
            self._startStore()
        pos, end = self._pos, self._end
        unframed = end - pos
        room = max(MINIMUM_READ, self._needed - unframed)
        if len(self._store) - end < room:
            self._moveUnframed(pos, end, max(RECEIVE_BUFFER_SIZE, unframed + room))
        elif pos == end and pos and self._storeIsFree():
            # Everything handed on is let go: read from the start again.
            self._storeView = memoryview(self._store)
            self._view = self._storeView[:0]
            self._pos = self._end = 0
        return self._storeView[self._end :]

    def received(self, count: int) -> None:
        """
        C{count} bytes were read into the view L{receiveBuffer} gave, at
        its start; L{nextOutputs} cuts PDUs from them.
        """
        if self._view is None:
            return
        self._end += count
        self._view = self._storeView[: self._end]

    def _startStore(self) -> None:
        """
        Switch to a receiving buffer, with what L{dataReceived} buffered so
        far in it.
        """
        pending = [self._view[self._pos :]] + self._buffer
        self._store = self.buffers.take(sum(map(len, pending)))
        self._storeView = memoryview(self._store)
        self._pos = self._end = 0
        self._buffer, self._bufferedLength = [], 0
        for piece in pending:
            self._storeView[self._end : self._end + len(piece)] = piece
            self._end += len(piece)
        self._view = self._storeView[: self._end]

    def _storeIsFree(self) -> bool:
        """
        Whether nothing but this provider refers to the receiving buffer:
        no view of it is held anywhere (each keeps a reference to it) but
        C{_storeView} and C{_view}, which are let go to find out, and made
        again when it is not free.
        """
        self._storeView = self._view = _NOTHING
        # This provider's attribute, and getrefcount's argument.
        if sys.getrefcount(self._store) == 2:
            return True
        self._storeView = memoryview(self._store)
        self._view = self._storeView[: self._end]
        return False

    def _moveUnframed(self, pos: int, end: int, size: int) -> None:
        """
        Move the bytes from C{pos} to C{end} of the receiving buffer to its
        start, or to the start of a new buffer of C{size} bytes when another
        reference can still see it or it is too small.
        """
        unframed = self._storeView[pos:end].tobytes() if end > pos else b""
        if not (size <= len(self._store) and self._storeIsFree()):
            self.buffers.retire(self._store)
            self._store = self.buffers.take(size)
        self._storeView = memoryview(self._store)
        self._storeView[: len(unframed)] = unframed
        self._pos, self._end = 0, len(unframed)
        self._view = self._storeView[: self._end]

    def _copyIn(self, data: memoryview) -> None:
        """
        Copy bytes handed to L{dataReceived} into the receiving buffer.
        """
        while data:
            target = self.receiveBuffer()
            count = min(len(target), len(data))
            target[:count] = data[:count]
            del target
            self.received(count)
            data = data[count:]

    def _limit(self, pduType: int) -> int:
        if pduType == _pdu.P_DATA_TF:
            return self.maximumLength or MAXIMUM_UNLIMITED_PDU_LENGTH
        if pduType in (_pdu.A_ASSOCIATE_RQ, _pdu.A_ASSOCIATE_AC):
            return MAXIMUM_ASSOCIATE_PDU_LENGTH
        # Fixed-size PDUs: a few bytes more than needed lets a wrong length
        # reach the decoder, which names the fault.
        return 64

    def _received(self, pduType: int, body) -> list:
        try:
            decoded = _pdu.decodePDU(pduType, body)
        except PDUDecodeError as e:
            return self._invalid(str(e), e.reason)
        self._pdu = decoded
        return self._handle(PDU_EVENTS[pduType])

    def _invalid(self, description: str, reason: int) -> list:
        """
        Evt19: an unrecognized or invalid PDU.  Nothing after it can be
        framed, so the provider reads no more of the stream.
        """
        self._view = None
        self._buffer = []
        self._bufferedLength = 0
        self._store, self._storeView = None, _NOTHING
        self._abortReason = reason
        self.errorDescription = description
        return self._handle(Event.Evt19)

    # -- the machine ----------------------------------------------------------

    def _handle(self, event: Event) -> list:
        """
        Run the action of C{event}'s cell for the current state.
        """
        state = self.state
        action = TRANSITIONS[event].get(state)
        if action is None:
            self._pdu = None
            return [EventNotAllowed(event, state)]
        self._outputs = outputs = []
        self._event = event
        self.state = _ACTIONS[action](self)
        # Neither the PDU nor its indication stays here: their views of
        # the receiving buffer would keep it from being used again.
        self._pdu = self._outputs = None
        return outputs

    def _send(self, pdu) -> None:
        self._outputs.append(SendPDU(pdu.encode()))

    # Association establishment (PS3.8 Table 9-6)

    def _ae1(self) -> State:
        self._request = self._pdu
        self._outputs.append(OpenTransport())
        return State.Sta4

    def _ae2(self) -> State:
        self._send(self._request)
        return State.Sta5

    def _ae3(self) -> State:
        self._outputs.append(AssociateAccepted(self._pdu))
        return State.Sta6

    def _ae4(self) -> State:
        self._outputs.append(AssociateRejected(self._pdu))
        self._outputs.append(_CLOSE)
        return State.Sta1

    def _ae5(self) -> State:
        self._outputs.append(_START_ARTIM)
        return State.Sta2

    def _ae6(self) -> State:
        self._outputs.append(_STOP_ARTIM)
        request = self._pdu
        if not request.protocolVersion & 0x0001:
            # Only the service provider (ACSE) can judge this one.
            self._send(
                AAssociateRJ(
                    _pdu.REJECT_RESULT_PERMANENT,
                    _pdu.REJECT_SOURCE_SERVICE_PROVIDER_ACSE,
                    _pdu.REJECT_REASON_PROTOCOL_VERSION_NOT_SUPPORTED,
                )
            )
            self._outputs.append(_START_ARTIM)
            return State.Sta13
        self._outputs.append(AssociateIndication(request))
        return State.Sta3

    def _ae7(self) -> State:
        self._send(self._pdu)
        return State.Sta6

    def _ae8(self) -> State:
        self._send(self._pdu)
        self._outputs.append(_START_ARTIM)
        return State.Sta13

    # Data transfer (PS3.8 Table 9-7)

    def _dt1(self) -> State:
        self._outputs.append(SendPDU(self._pdu))
        return State.Sta6

    def _dt2(self) -> State:
        self._outputs.append(PDataIndication(self._pdu))
        return State.Sta6

    # Association release (PS3.8 Table 9-8)

    def _ar1(self) -> State:
        self._send(AReleaseRQ())
        return State.Sta7

    def _ar2(self) -> State:
        self._outputs.append(ReleaseIndication())
        return State.Sta8

    def _ar3(self) -> State:
        self._outputs.append(ReleaseConfirmation())
        self._outputs.append(_CLOSE)
        return State.Sta1

    def _ar4(self) -> State:
        self._send(AReleaseRP())
        self._outputs.append(_START_ARTIM)
        return State.Sta13

    def _ar5(self) -> State:
        self._outputs.append(_STOP_ARTIM)
        return State.Sta1

    def _ar6(self) -> State:
        self._outputs.append(PDataIndication(self._pdu))
        return State.Sta7

    def _ar7(self) -> State:
        self._outputs.append(SendPDU(self._pdu))
        return State.Sta8

    def _ar8(self) -> State:
        self._outputs.append(ReleaseIndication(collision=True))
        return State.Sta9 if self.isRequestor else State.Sta10

    def _ar9(self) -> State:
        self._send(AReleaseRP())
        return State.Sta11

    def _ar10(self) -> State:
        self._outputs.append(ReleaseConfirmation())
        return State.Sta12

    # Association abort (PS3.8 Table 9-9)

    def _aa1(self) -> State:
        if self._event is Event.Evt15:
            self._send(AAbort(self._abortSource, self._abortReason))
        else:
            # A PDU other than A-ASSOCIATE-RQ opened the connection (Sta2):
            # the provider, not a user, refuses it.
            reason = self._abortReason if self._event is Event.Evt19 else ABORT_REASON_UNEXPECTED_PDU
            self._send(AAbort(ABORT_SOURCE_SERVICE_PROVIDER, reason))
        self._outputs.append(_START_ARTIM)
        return State.Sta13

    def _aa2(self) -> State:
        self._outputs.append(_STOP_ARTIM)
        self._outputs.append(_CLOSE)
        return State.Sta1

    def _aa3(self) -> State:
        received = self._pdu
        if received.source == ABORT_SOURCE_SERVICE_USER:
            self._outputs.append(AbortIndication(received.source, received.reason))
        else:
            self._outputs.append(
                ProviderAbortIndication(received.source, received.reason, "A-ABORT received from the peer's provider")
            )
        self._outputs.append(_CLOSE)
        return State.Sta1

    def _aa4(self) -> State:
        self._outputs.append(
            ProviderAbortIndication(None, ABORT_REASON_NOT_SPECIFIED, "transport connection closed by the peer")
        )
        return State.Sta1

    def _aa5(self) -> State:
        self._outputs.append(_STOP_ARTIM)
        return State.Sta1

    def _aa6(self) -> State:
        return State.Sta13

    def _aa7(self) -> State:
        reason = self._abortReason if self._event is Event.Evt19 else ABORT_REASON_UNEXPECTED_PDU
        self._send(AAbort(ABORT_SOURCE_SERVICE_PROVIDER, reason))
        return State.Sta13

    def _aa8(self) -> State:
        if self._event is Event.Evt19:
            reason, description = self._abortReason, self.errorDescription
        else:
            reason = ABORT_REASON_UNEXPECTED_PDU
            description = "unexpected %s in %s" % (self._event.value, self.state.name)
        self._send(AAbort(ABORT_SOURCE_SERVICE_PROVIDER, reason))
        self._outputs.append(ProviderAbortIndication(ABORT_SOURCE_SERVICE_PROVIDER, reason, description))
        self._outputs.append(_START_ARTIM)
        return State.Sta13


_ACTIONS = {
    "AE-1": ULProvider._ae1,
    "AE-2": ULProvider._ae2,
    "AE-3": ULProvider._ae3,
    "AE-4": ULProvider._ae4,
    "AE-5": ULProvider._ae5,
    "AE-6": ULProvider._ae6,
    "AE-7": ULProvider._ae7,
    "AE-8": ULProvider._ae8,
    "DT-1": ULProvider._dt1,
    "DT-2": ULProvider._dt2,
    "AR-1": ULProvider._ar1,
    "AR-2": ULProvider._ar2,
    "AR-3": ULProvider._ar3,
    "AR-4": ULProvider._ar4,
    "AR-5": ULProvider._ar5,
    "AR-6": ULProvider._ar6,
    "AR-7": ULProvider._ar7,
    "AR-8": ULProvider._ar8,
    "AR-9": ULProvider._ar9,
    "AR-10": ULProvider._ar10,
    "AA-1": ULProvider._aa1,
    "AA-2": ULProvider._aa2,
    "AA-3": ULProvider._aa3,
    "AA-4": ULProvider._aa4,
    "AA-5": ULProvider._aa5,
    "AA-6": ULProvider._aa6,
    "AA-7": ULProvider._aa7,
    "AA-8": ULProvider._aa8,
}

