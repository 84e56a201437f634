"""
DIMSE messages in presentation data values (PS3.7 section 9.3 and PS3.8
Annex E).

L{fragment} cuts a command set or a piece of a data set into P-DATA-TF
PDUs no larger than the peer accepts, without copying the data: the result
is a list of byte strings and memoryview slices for C{writeSequence}.
L{encodeMessage} does so for a whole message held in memory, in a single
PDU when it fits one.

L{MessageAssembler} does the reverse for one association: it joins command
fragments into a decoded command set and passes data set fragments on as
they arrive, so a data set never has to sit whole in memory.
"""

import struct
from dataclasses import dataclass
from typing import List, Union

from dicomd.dimse.commands import DIMSEDecodeError, Message, decodeCommand
from dicomd.ul.pdu import P_DATA_TF, PDataTF, encodePDataTF

#: Message Control Header bits (PS3.8 E.2).
COMMAND = 0x01
LAST = 0x02

#: The PDV data size we use when the peer sets no limit (maximum length 0).
UNLIMITED_FRAGMENT_LENGTH = (1 << 20) - 6

#: The largest command set we reassemble; real ones are a few hundred bytes.
MAXIMUM_COMMAND_LENGTH = 1 << 16


def maximumFragmentLength(peerMaximumLength: int) -> int:
    """
    The most data one PDV may carry when the peer's maximum length (the
    P-DATA-TF variable field, PS3.8 D.1) is C{peerMaximumLength}: the PDV
    item header takes 6 bytes of it.
    """
    if not peerMaximumLength:
        return UNLIMITED_FRAGMENT_LENGTH
    return max(peerMaximumLength - 6, 1)


def fragment(contextID: int, isCommand: bool, data, fragmentLength: int, isLast: bool = True) -> list:
    """
    Encode C{data} as single-PDV P-DATA-TF PDUs.

    @param fragmentLength: the most data bytes per PDV (see
        L{maximumFragmentLength}).
    @param isLast: whether the end of C{data} is the end of the command or
        data set; a data set streamed in pieces passes C{False} for all but
        the final piece.
    @return: the PDUs as alternating headers and data slices, ready for
        C{transport.writeSequence}.
    """
    view = memoryview(data)
    total = len(view)
    control = COMMAND if isCommand else 0
    pieces = []
    if total == 0:
        return [encodePDataTF(contextID, control | (LAST if isLast else 0), 0)] if isLast else []
    if total <= fragmentLength:
        return [encodePDataTF(contextID, control | (LAST if isLast else 0), total), data]
    # Every PDU but the last carries a full fragment: they share a header.
    full = encodePDataTF(contextID, control, fragmentLength)
    append = pieces.append
    pos = 0
    lastStart = total - fragmentLength
    while pos < lastStart:
        append(full)
        pos += fragmentLength
        append(view[pos - fragmentLength : pos])
    append(encodePDataTF(contextID, control | (LAST if isLast else 0), total - pos))
    append(view[pos:])
    return pieces


_PDU_HEADER = struct.Struct(">BBL")
_PDV_HEADER = struct.Struct(">LBB")


def encodeMessage(contextID: int, command: bytes, dataSet, fragmentLength: int) -> list:
    """
    Encode a whole message, its command set and the data set it carries (or
    C{None}), as P-DATA-TF PDUs.

    When both fit in one PDU of the peer's maximum length, they go in one,
    a PDV for each (PS3.8 9.3.5 allows several): a peer that does not read
    a response's data set, as DCMTK's C{getscu} skips the Failed SOP
    Instance UID List of a final C-GET-RSP, then never finds it in the
    place of the PDU it waits for next (an A-RELEASE-RP, say).  Otherwise
    each is cut as L{fragment} cuts it.

    @param fragmentLength: the most data bytes per PDV (see
        L{maximumFragmentLength}).
    @return: the PDUs as headers and data slices, ready for
        C{transport.writeSequence}.
    """
    if dataSet is None:
        return fragment(contextID, True, command, fragmentLength)
    # The second PDV's item header takes 6 bytes of the one PDU.
    if len(command) + len(dataSet) + 6 > fragmentLength:
        return fragment(contextID, True, command, fragmentLength) + fragment(contextID, False, dataSet, fragmentLength)
    return [
        _PDU_HEADER.pack(P_DATA_TF, 0, len(command) + len(dataSet) + 12)
        + _PDV_HEADER.pack(len(command) + 2, contextID, COMMAND | LAST),
        command,
        _PDV_HEADER.pack(len(dataSet) + 2, contextID, LAST),
        dataSet,
    ]


@dataclass(slots=True)
class CommandReceived:
    """
    A whole command set arrived on presentation context C{contextID}.  When
    C{message.hasDataSet} is true, L{DataSetFragment}s follow.
    """

    contextID: int
    message: Message


@dataclass(slots=True)
class DataSetFragment:
    """
    A piece of the data set of the last command received.

    @ivar data: a memoryview over the received PDU; it stays valid.
    @ivar isLast: this is the data set's final piece.
    """

    contextID: int
    data: Union[bytes, memoryview]
    isLast: bool


class DIMSEProtocolError(Exception):
    """
    PDVs arrived in an order PS3.7 9.3 does not allow, or a command set
    could not be decoded; the association cannot continue.
    """


class MessageAssembler:
    """
    Reassembles DIMSE messages from the PDVs of one association.

    Only one message is in transit from a peer at a time (PS3.7 9.3: a
    message's fragments are not interleaved with another's), so the state is
    the command being joined and the presentation context whose data set is
    being received.
    """

    def __init__(self, maximumCommandLength: int = MAXIMUM_COMMAND_LENGTH):
        self.maximumCommandLength = maximumCommandLength
        self._command: List[bytes] = []
        self._commandLength = 0
        self._commandContext = None
        self._dataSetContext = None

    @property
    def inDataSet(self) -> bool:
        """
        Whether a data set has begun and not yet ended.
        """
        return self._dataSetContext is not None

    @property
    def inMessage(self) -> bool:
        """
        Whether a message has begun and not yet ended: part of its command
        set has arrived, or a command set announcing a data set whose last
        fragment has not.
        """
        return self._dataSetContext is not None or self._commandContext is not None

    def receive(self, pdu: PDataTF) -> list:
        """
        Take one P-DATA-TF PDU and return the L{CommandReceived} and
        L{DataSetFragment} events it completes.

        @raise DIMSEProtocolError: the fragments break PS3.7 9.3.
        """
        events = []
        for pdv in pdu.values:
            control = pdv.messageControlHeader
            if control & COMMAND:
                received = self._commandFragment(pdv.contextID, pdv.data, control & LAST)
                if received is not None:
                    events.append(received)
            else:
                if self._dataSetContext is None:
                    raise DIMSEProtocolError(
                        "data set fragment on context %d without a command announcing one" % (pdv.contextID,)
                    )
                if pdv.contextID != self._dataSetContext:
                    raise DIMSEProtocolError(
                        "data set fragment on context %d during a message on context %d"
                        % (pdv.contextID, self._dataSetContext)
                    )
                isLast = bool(control & LAST)
                if isLast:
                    self._dataSetContext = None
                events.append(DataSetFragment(pdv.contextID, pdv.data, isLast))
        return events

    def _commandFragment(self, contextID: int, data, isLast: int):
        if self._dataSetContext is not None:
            raise DIMSEProtocolError("command fragment before the previous message's data set ended")
        if self._commandContext is not None and contextID != self._commandContext:
            raise DIMSEProtocolError(
                "command fragment on context %d while a command on context %d is incomplete"
                % (contextID, self._commandContext)
            )
        self._commandLength += len(data)
        if self._commandLength > self.maximumCommandLength:
            raise DIMSEProtocolError("command set longer than %d bytes" % (self.maximumCommandLength,))
        if not isLast:
            self._commandContext = contextID
            self._command.append(bytes(data))
            return None
        if self._command:
            self._command.append(bytes(data))
            data = b"".join(self._command)
        self._command = []
        self._commandLength = 0
        self._commandContext = None
        try:
            message = decodeCommand(data)
        except DIMSEDecodeError as e:
            raise DIMSEProtocolError("undecodable command set: %s" % (e,))
        if message.hasDataSet:
            self._dataSetContext = contextID
        return CommandReceived(contextID, message)
