"""
Running the daemon's service for a server front door (C{dicomd
storescp}, C{dicomd qrscp}) as twistd runs it for C{twistd dicomd}.

A front door translates its options into a L{dicomd.config.DaemonConfig}
and builds the L{dicomd.daemon.DicomdService}; L{serve} then runs it
through the one lifecycle: listen, drop privileges, start, and stop in
the daemon's order (stop listening, let running associations finish for
the grace period, end the open studies, close the index) when the
process is told to stop, when the connection inetd passed has closed, or
when an association asks the server to shut down.
"""

import os
import socket
import stat
from dataclasses import dataclass
from typing import Callable, Optional

from twisted.internet import defer

from dicomd.startup import StartupError


@dataclass(frozen=True)
class Identity:
    """
    The user and group a front door becomes once it listens, as twistd's
    C{--uid} and C{--gid} (dcmqrscp's C{UserName} and C{GroupName}).

    @ivar uid: the user id, or C{None} to stay.
    @ivar gid: the group id, or C{None} to stay.
    @ivar name: who that is, for the log (C{"user dcmtk, group dcmtk"}).
    @ivar source: where it was configured, for the log.
    """

    uid: Optional[int]
    gid: Optional[int]
    name: str
    source: str


@defer.inlineCallbacks
def serve(
    reactor,
    daemon,
    log,
    *,
    failure: int,
    identity: Optional[Identity] = None,
    inetd: Optional[int] = None,
    tls=None,
    started: Optional[Callable[[], None]] = None,
):
    """
    Run C{daemon} until the process is stopped, inetd's connection has
    closed, or an association asked it to shut down.

    @param daemon: the L{dicomd.daemon.DicomdService}.
    @param log: the front door's logger, whose namespace names it.
    @param failure: the exit status when the service cannot start.
    @param identity: the L{Identity} to become once listening, or
        C{None} to stay; a failure to start after that names it.
    @param inetd: the file descriptor of the connection inetd passed (see
        L{takeInetdConnection}), served instead of listening; or C{None}.
    @param tls: with C{inetd}, the TLS context factory to serve it with.
    @param started: called once the service runs (for the front door's
        "listening" line).
    @return: a L{Deferred} firing with the exit status.
    """
    running = ""
    try:
        daemon.privilegedStartService()
        if identity is not None:
            dropPrivileges(identity)
            log.info("Running as {who} ({source})", who=identity.name, source=identity.source)
            running = " (running as %s)" % (identity.name,)
        daemon.startService()
    except StartupError as e:
        log.critical("{error}{running}", error=str(e), running=running)
        yield _stopStarted(daemon)
        return failure
    stopping = reactor.addSystemEventTrigger("before", "shutdown", daemon.stopService)
    if started is not None:
        started()
    status = 0
    try:
        if inetd is not None:
            yield serveConnection(reactor, daemon.factory, inetd, tls)
        else:
            yield daemon.whenShutdownRequested()
    except OSError as e:
        log.critical("--inetd: {why}", why=str(e))
        status = failure
    reactor.removeSystemEventTrigger(stopping)
    yield daemon.stopService()
    if inetd is None:
        log.info("Shut down by the private shutdown SOP class")
    return status


def _stopStarted(daemon) -> defer.Deferred:
    """
    Stop what of a service that failed to start did start (the listening
    ports, an index), last first.
    """
    started = [child for child in daemon if child.running]
    return defer.DeferredList([defer.maybeDeferred(child.stopService) for child in reversed(started)])


def dropPrivileges(identity: Identity) -> None:
    """
    Become the group, then the user, of C{identity}.
    """
    if identity.gid is not None:
        os.setgroups([])
        os.setgid(identity.gid)
    if identity.uid is not None:
        os.setuid(identity.uid)


def takeInetdConnection() -> int:
    """
    Take the connection inetd passed on standard input, as storescp does:
    keep a duplicate of it, and put C{/dev/null} in place of standard input
    and of standard output and error where they are that socket too, so
    that nothing written there can reach the peer.  (Standard error that is
    a pipe or a file, as under a service manager or a test, stays for the
    log.)  Call it before anything is logged.

    @return: the duplicate's file descriptor.
    """
    fd = os.dup(0)
    nullInput = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nullInput, 0)
    os.close(nullInput)
    nullOutput = os.open(os.devnull, os.O_WRONLY)
    for stream in (1, 2):
        try:
            isSocket = stat.S_ISSOCK(os.fstat(stream).st_mode)
        except OSError:
            isSocket = False
        if isSocket:
            os.dup2(nullOutput, stream)
    os.close(nullOutput)
    return fd


def serveConnection(reactor, factory, fd: int, tls=None) -> defer.Deferred:
    """
    Serve one connected socket, such as the one inetd passed, with an
    L{dicomd.net.acceptor.AcceptorFactory}.

    @param fd: the connection's file descriptor; it is closed (the reactor
        keeps its own duplicate).
    @param tls: the TLS context factory to serve it with, or C{None}.
    @return: a L{Deferred} that fires once the connection has closed.
    @raise OSError: C{fd} is not a connected socket the reactor can use;
        the message says so.
    """
    try:
        try:
            probe = socket.socket(fileno=fd)
        except OSError as e:
            raise OSError("standard input is not a connected socket: %s" % (e,))
        family = probe.family
        probe.detach()
        served = factory
        if tls is not None:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            served = TLSMemoryBIOFactory(tls, False, factory)
        try:
            reactor.adoptStreamConnection(fd, family, served)
        except OSError as e:
            raise OSError("cannot use standard input: %s" % (e,))
    finally:
        os.close(fd)
    # Adopting the connection made its protocol: the factory is idle once
    # that one connection has closed.
    return factory.whenIdle()
