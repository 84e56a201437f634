"""
Tuning the TCP connection under an association for latency.

DICOM is request and response: a C-STORE-RQ waits for its C-STORE-RSP
before the next one goes, so every delay between the two is paid once per
object.  Three delays sit under a Twisted transport, and each helper here
removes one: Nagle's algorithm holding back our small responses
(L{setNoDelay}), delayed acknowledgements holding back the peer's last
segment (L{quickAckSocket}, L{renewQuickAck}), and the reactor writing only
on its next iteration (L{writeDescriptor}, L{writeNow}).  L{setReadSize}
makes the reads large enough for a whole PDU of the usual sizes.

Each works on a TLS transport too, through the TCP transport under it, and
does nothing where the transport or the system lacks what it needs.
"""

import socket
from typing import Optional

from twisted.internet.interfaces import IWriteDescriptor

#: How much a TCP transport reads at a time (Twisted's default is 64 KiB):
#: two of the largest PDUs DCMTK sends, so that a 128 KiB P-DATA-TF mostly
#: arrives in one read, whole, and is handed on without copying.  It is
#: also the size above which Twisted pauses a producer writing to the
#: transport.
READ_SIZE = 256 << 10

#: Linux's TCP_QUICKACK (absent elsewhere).
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def setNoDelay(transport) -> None:
    """
    Turn off Nagle's algorithm: DICOM's request/response rhythm otherwise
    waits on delayed acknowledgements for every small response.  TLS
    transports pass the call through to their TCP transport.
    """
    setter = getattr(transport, "setTcpNoDelay", None)
    if setter is not None:
        setter(True)


def setReadSize(transport) -> None:
    """
    Have a TCP transport read L{READ_SIZE} bytes at a time.
    """
    if hasattr(transport, "bufferSize"):
        transport.bufferSize = READ_SIZE


def tcpSocket(transport) -> Optional[socket.socket]:
    """
    The TCP socket under a transport (a TLS transport's too), or C{None}.
    """
    for _ in range(3):
        if transport is None:
            return None
        handle = getattr(transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):
            return handle
        transport = getattr(transport, "transport", None)
    return None


def quickAckSocket(transport) -> Optional[socket.socket]:
    """
    The socket on which to renew TCP_QUICKACK after each read
    (L{renewQuickAck}), or C{None} where the system has no TCP_QUICKACK or
    the transport no socket.
    """
    if _TCP_QUICKACK is None:
        return None
    return tcpSocket(transport)


def renewQuickAck(tcp: socket.socket) -> bool:
    """
    Acknowledge what arrives next at once instead of delaying the ACK.

    A sender that leaves Nagle's algorithm on (DCMTK without
    C{TCP_NODELAY=1}) holds back the last small segment of a data set until
    everything before it is acknowledged: with delayed ACKs every C-STORE
    would wait some 40 ms for that ACK.  Linux leaves quick-ACK mode by
    itself, so this is renewed after each read.

    @return: whether it worked; when it does not, there is no point in
        trying again on this socket.
    """
    try:
        tcp.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
    except OSError:
        return False
    return True


def writeDescriptor(transport):
    """
    The reactor's write descriptor under a transport (a TLS transport's TCP
    connection, to which it writes what it encrypts at once), or C{None}.
    """
    for _ in range(3):
        if transport is None:
            return None
        if IWriteDescriptor.providedBy(transport):
            return transport
        transport = getattr(transport, "transport", None)
    return None


def writeNow(descriptor) -> None:
    """
    Hand what was written to C{descriptor} to the kernel now rather than on
    the reactor's next iteration.

    A transport writes when the reactor next finds its socket writable:
    one more poll, two changes of the poll set and a reactor iteration
    between a request and the response it triggers, or between a
    C-STORE-RSP and the next C-STORE-RQ.  Call it only where the reactor
    itself could write: not from inside a producer's C{resumeProducing}.

    Not while closing: the write that empties the buffer then closes the
    connection, which only the reactor may do.  A write that fails is left
    to the reactor, which tries again as the socket is still registered
    for writing, and closes the connection.
    """
    if descriptor.connected and not descriptor.disconnecting:
        descriptor.doWrite()
