"""
A debug trace of the PDUs on one connection (PS3.8 9.3), without I/O.

L{PDUTrace} reads the bytes a connection receives and the bytes it sends,
frames them into PDUs and describes each one with its C{describe()} method
(L{dicomd.ul.pdu}): its type and length, every parameter of an
A-ASSOCIATE-RQ or -AC, the result, source and reason of an A-ASSOCIATE-RJ
or A-ABORT, the presentation data values of a P-DATA-TF.  That is what
DCMTK's tools print at their debug level, and what tells why an
association failed.

The trace reads beside the L{dicomd.ul.provider.ULProvider}, which frames
the received stream for real, and only where the debug log is shown;
nothing here runs otherwise.  Of a P-DATA-TF only the headers of its
presentation data values are read and their data is skipped as it
passes, so tracing a large data set copies none of it; association PDUs,
which are small, are gathered and decoded.  Like the provider, the trace
of a stream stops at the first PDU it cannot frame or decode.
"""

import struct
from typing import List

from dicomd.ul.pdu import (
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RQ,
    P_DATA_TF,
    PDU_TYPE_NAMES,
    PDUDecodeError,
    UIDNamer,
    decodePDU,
    describePDV,
)
from dicomd.ul.provider import MAXIMUM_ASSOCIATE_PDU_LENGTH

_HEADER = struct.Struct(">BBL")
_PDV_HEADER = struct.Struct(">LBB")


class _Stream:
    """
    Where one direction of the connection stands: the field being
    gathered, or the PDV data being skipped.

    @ivar then: the method of L{PDUTrace} that takes the gathered field.
    @ivar wanted: the field's length.
    @ivar skipping: bytes of PDV data still to pass over.
    @ivar left: bytes of the current P-DATA-TF not yet read.
    @ivar pdvs: the current P-DATA-TF's PDVs so far, as C{(context ID,
        message control header, data length)}.
    @ivar stopped: the stream could not be framed or decoded; nothing more
        of it is traced.
    """

    def __init__(self, then):
        self.buffer = bytearray()
        self.then = then
        self.wanted = _HEADER.size
        self.skipping = 0
        self.pduType = 0
        self.length = 0
        self.left = 0
        self.pdvs = []
        self.stopped = False

    def expect(self, then, wanted: int) -> None:
        self.then = then
        self.wanted = wanted


class PDUTrace:
    """
    Describes the PDUs of one connection, both ways.

    Each description is the PDU's C{describe()} with its PDU length (the
    header's length field, PS3.8 9.3.1) after its name, for example
    C{"A-RELEASE-RQ (PDU length 4)"}.  An A-ASSOCIATE-AC is described
    with the abstract syntaxes of the A-ASSOCIATE-RQ it answers, which
    the trace saw earlier in the other direction.
    """

    def __init__(self, uidName: UIDNamer = str):
        """
        @param uidName: how UIDs are written (L{dicomd.ul.pdu.UIDNamer}).
        """
        self.uidName = uidName
        self._request = None
        self._received = _Stream(self._headerRead)
        self._sent = _Stream(self._headerRead)

    def received(self, data) -> List[str]:
        """
        Read bytes received from the peer.

        @return: the descriptions of the PDUs they complete.
        """
        return self._read(self._received, (data,))

    def sent(self, data) -> List[str]:
        """
        Read bytes sent to the peer.

        @param data: bytes, or a list of bytes and memoryviews, as a
            L{dicomd.ul.provider.SendPDU} holds them.
        @return: the descriptions of the PDUs they complete.
        """
        return self._read(self._sent, data if type(data) is list else (data,))

    def _read(self, stream: _Stream, pieces) -> List[str]:
        lines: List[str] = []
        for piece in pieces:
            view = memoryview(piece)
            position, end = 0, len(view)
            while not stream.stopped:
                if stream.skipping:
                    passed = min(stream.skipping, end - position)
                    position += passed
                    stream.skipping -= passed
                    if stream.skipping:
                        break
                    self._pdvRead(stream, lines)
                    continue
                taken = min(stream.wanted - len(stream.buffer), end - position)
                stream.buffer += view[position : position + taken]
                position += taken
                if len(stream.buffer) < stream.wanted:
                    break
                field, stream.buffer = bytes(stream.buffer), bytearray()
                stream.then(stream, field, lines)
        return lines

    def _headerRead(self, stream: _Stream, header: bytes, lines: List[str]) -> None:
        pduType, _, length = _HEADER.unpack(header)
        stream.pduType, stream.length = pduType, length
        if pduType not in PDU_TYPE_NAMES:
            self._stop(stream, lines, "unrecognized PDU type 0x%02X (PDU length %d)" % (pduType, length))
        elif pduType == P_DATA_TF:
            stream.left = length
            stream.pdvs = []
            self._pdvRead(stream, lines)
        elif length > MAXIMUM_ASSOCIATE_PDU_LENGTH:
            self._stop(stream, lines, "%s, more than the %d bytes read" % (self._named(stream), MAXIMUM_ASSOCIATE_PDU_LENGTH))
        else:
            stream.expect(self._bodyRead, length)

    def _pdvRead(self, stream: _Stream, lines: List[str]) -> None:
        """
        A P-DATA-TF's header, or one of its PDVs, has been read: expect
        the next PDV, or the next PDU when the P-DATA-TF is complete.
        """
        if stream.left == 0 and stream.pdvs:
            pdvs = "; ".join(describePDV(*pdv) for pdv in stream.pdvs)
            lines.append("%s: %s" % (self._named(stream), pdvs))
            stream.expect(self._headerRead, _HEADER.size)
        elif stream.left < _PDV_HEADER.size:
            self._stop(stream, lines, "%s: ends inside a PDV item header" % (self._named(stream),))
        else:
            stream.expect(self._pdvHeaderRead, _PDV_HEADER.size)

    def _pdvHeaderRead(self, stream: _Stream, header: bytes, lines: List[str]) -> None:
        itemLength, contextID, messageControlHeader = _PDV_HEADER.unpack(header)
        stream.left -= _PDV_HEADER.size
        dataLength = itemLength - 2
        if dataLength < 0 or dataLength > stream.left:
            self._stop(stream, lines, "%s: PDV item length %d does not fit the PDU" % (self._named(stream), itemLength))
            return
        stream.pdvs.append((contextID, messageControlHeader, dataLength))
        stream.left -= dataLength
        stream.skipping = dataLength
        if not dataLength:
            self._pdvRead(stream, lines)

    def _bodyRead(self, stream: _Stream, body: bytes, lines: List[str]) -> None:
        try:
            pdu = decodePDU(stream.pduType, memoryview(body))
        except PDUDecodeError as e:
            self._stop(stream, lines, "%s: undecodable: %s" % (self._named(stream), e))
            return
        if stream.pduType == A_ASSOCIATE_RQ:
            self._request = pdu
        if stream.pduType == A_ASSOCIATE_AC:
            text = pdu.describe(self.uidName, self._request)
        else:
            text = pdu.describe(self.uidName)
        name = PDU_TYPE_NAMES[stream.pduType]
        # The description starts with the PDU's name; the length goes after it.
        lines.append(self._named(stream) + text[len(name) :])
        stream.expect(self._headerRead, _HEADER.size)

    @staticmethod
    def _named(stream: _Stream) -> str:
        return "%s (PDU length %d)" % (PDU_TYPE_NAMES[stream.pduType], stream.length)

    @staticmethod
    def _stop(stream: _Stream, lines: List[str], description: str) -> None:
        lines.append(description + "; not traced further")
        stream.stopped = True
