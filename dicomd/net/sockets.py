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
L{sendNow}, which skips the transport's buffer altogether, is for plain
stream sockets only (TCP, and the Unix sockets of worker processes): a
TLS transport must encrypt first.
"""

import socket
from typing import Optional, Sequence, Union

from twisted.internet import tcp
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


def directConnection(transport):
    """
    The transport itself when it is a TCP connection of the reactor, whose
    socket L{sendNow} may write to; else C{None}.

    Only the connection itself qualifies: a wrapper (Twisted's TLS
    protocol is one) claims the interfaces of the connection under it and
    passes its attributes through, socket included, but what goes through
    it must not reach the socket unchanged.
    """
    return transport if isinstance(transport, tcp.Connection) else None


#: The most pieces L{sendNow} hands to one C{sendmsg} (Linux's IOV_MAX).
_IOV_MAX = 1024


def sendNow(descriptor, data: Union[bytes, Sequence]) -> bool:
    """
    Write C{data} (bytes, or a list of bytes and memoryview pieces) to the
    socket of a plain TCP (or Unix stream) transport whose write buffer is
    empty, in one system call; the part the kernel does not take goes to
    the transport's buffer, as from C{transport.write}.

    A transport's write copies the pieces into one string, registers the
    socket for writability, and unregisters it once the reactor wrote it:
    a copy of every data set and two C{epoll_ctl} calls for every request
    and response.  When nothing is waiting in its buffer, writing directly
    keeps the order of the bytes and needs none of that.

    @return: whether C{data} was taken (sent, or the rest buffered); when
        not, the caller writes it to the transport as usual.  Not taken
        while the transport holds unsent bytes, is closing or speaks TLS,
        or when the pieces are more than one call takes.
    """
    if not descriptor.connected or descriptor.disconnecting or descriptor.TLS:
        # A TCP transport that started TLS encrypts what it writes.
        return False
    if descriptor._tempDataBuffer or len(descriptor.dataBuffer) > descriptor.offset:
        return False
    single = type(data) is not list
    if not single and len(data) > _IOV_MAX:
        return False
    try:
        sent = descriptor.socket.send(data) if single else descriptor.socket.sendmsg(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # The connection failed: the transport finds out when it writes,
        # and closes it the usual way.
        return False
    if single:
        if sent < len(data):
            descriptor.write(data[sent:])
        return True
    if sent == sum(map(len, data)):
        return True
    for index, piece in enumerate(data):
        size = len(piece)
        if sent < size:
            rest = [memoryview(piece)[sent:]]
            rest.extend(data[index + 1 :])
            descriptor.write(b"".join(rest))
            return True
        sent -= size
    return True
