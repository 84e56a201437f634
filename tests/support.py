"""
The harness of dicomd's interoperability tests: real peers as processes on
127.0.0.1.

A feature is done when a real peer uses it, so these tests run DCMTK's
tools, pynetdicom scripts and the real C{twistd -n dicomd} as child
processes of the trial reactor.  This module gives them one way to:

  - find DCMTK's programs (L{dcmtk}).  They are always run by absolute path
    from C{/usr/bin}: pynetdicom installs console scripts with the same
    names (C{storescp}, C{echoscu}...) that come first on C{PATH}.  A
    missing DCMTK I{fails} the test with a message saying what to install;
    it is never a skip, since CI installs DCMTK;
  - build children's environments: L{pythonEnvironment} puts this checkout
    first on C{PYTHONPATH}, L{dcmtkEnvironment} sets C{TCP_NODELAY=1}
    (without it DCMTK leaves Nagle's algorithm on and every exchange waits
    for a delayed ACK);
  - start a long-running peer on a free port and wait until that port
    accepts connections (L{startPeer}, and for the usual peers
    L{startDaemon}, L{startDCMTKServer}, L{startPythonScript}); the
    test's cleanup stops it, however the test ends;
  - run a short command and get C{(stdout, stderr, exitCode)} with a
    timeout (L{runCommand}), and wait for a peer's log line
    (L{ChildProcess.waitForOutput}) or any condition (L{waitUntil});
  - listen with dicomd's own L{AcceptorFactory} inside the test's reactor
    (L{listenInProcess}), for tests where a real client talks to our
    server and spawning C{twistd} would only cost time;
  - write raw bytes to a server and read its answer (L{exchangeBytes}),
    for hostile input.

Every function that waits takes a timeout, and every process and port a
test opens is closed by that test's cleanups, so the suite runs under
C{trial --jobs=N} without leaking.

Typical use::

    class EchoTests(unittest.TestCase):
        @defer.inlineCallbacks
        def test_echo(self):
            daemon = yield startDaemon(self, "--max-pdu", "4096")
            result = yield runCommand(
                [dcmtk("echoscu"), "-v", "127.0.0.1", str(daemon.port)],
                env=dcmtkEnvironment(),
            )
            self.assertEqual(result.exitCode, 0, result.describe())
"""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from twisted.internet import defer, error, protocol, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest

#: The root of this checkout: children import dicomd from here.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Where Debian's C{dcmtk} package installs its programs.
DCMTK_DIRECTORY = "/usr/bin"

#: The loopback address every peer listens on.
LOCALHOST = "127.0.0.1"

#: Run twistd with the same interpreter as the tests, whatever C{twistd}
#: happens to be first on C{PATH}.
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]

#: The A-ABORT PDU (PS3.8 9.3.8) up to its source and reason bytes.
A_ABORT_PREFIX = b"\x07\x00\x00\x00\x00\x04\x00\x00"


def _reactor(reactor):
    if reactor is None:
        from twisted.internet import reactor
    return reactor


# -- programs and environments ------------------------------------------------


def dcmtk(tool: str) -> str:
    """
    The absolute path of one of DCMTK's programs.

    @param tool: its name, such as C{"storescp"} or C{"echoscu"}.
    @raise FailTest: DCMTK is not installed; the message says how to
        install it.  (Not L{unittest.SkipTest}: the interoperability tests
        are the proof that dicomd works, so they must not vanish.)
    """
    path = os.path.join(DCMTK_DIRECTORY, tool)
    if not os.access(path, os.X_OK):
        raise FailTest(
            "DCMTK's %s is not installed at %s: install Debian's dcmtk package "
            "(apt-get install dcmtk).  pynetdicom's console script of the same "
            "name does not count." % (tool, path)
        )
    return path


def pythonEnvironment(extra: Optional[Mapping[str, str]] = None) -> dict:
    """
    The environment for a Python child (twistd, C{python -m dicomd}, a
    pynetdicom script): ours, with this checkout first on C{PYTHONPATH}.

    @param extra: variables to add or override.
    """
    env = dict(os.environ)
    paths = [str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra or {})
    return env


def dcmtkEnvironment(extra: Optional[Mapping[str, str]] = None) -> dict:
    """
    The environment for a DCMTK child: ours, with C{TCP_NODELAY=1}.

    @param extra: variables to add or override.
    """
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    env.update(extra or {})
    return env


def dicomdArgv(*arguments: str) -> List[str]:
    """
    The command line of a C{dicomd} front door (C{python -m dicomd echoscu
    ...}) run with the tests' interpreter; run it with
    L{pythonEnvironment}.
    """
    return [sys.executable, "-m", "dicomd"] + list(arguments)


def twistdArgv(port: int, *options: str, interface: str = LOCALHOST) -> List[str]:
    """
    The command line of C{twistd -n dicomd} listening on C{port}.

    @param options: further options of the dicomd plugin.
    """
    return TWISTD + [
        "-n",
        "--pidfile=",
        "dicomd",
        "--listen",
        "tcp:%d:interface=%s" % (port, interface),
    ] + list(options)


def freePort(host: str = LOCALHOST) -> int:
    """
    A TCP port on C{host} that nothing listens on at the moment.

    Another process may take it before our peer binds it;
    L{startPeer} retries with a new port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def makeDirectory(testCase) -> str:
    """
    A new empty directory under the test's temporary directory.
    """
    path = testCase.mktemp()
    os.makedirs(path)
    return os.path.abspath(path)


# -- processes --------------------------------------------------------------------


class ProcessResult(NamedTuple):
    """
    How a short command ended.

    @ivar stdout: its standard output, decoded (invalid bytes replaced).
    @ivar stderr: its standard error, decoded.
    @ivar exitCode: its exit status, or C{None} when a signal killed it.
    """

    stdout: str
    stderr: str
    exitCode: Optional[int]

    @property
    def output(self) -> str:
        """
        Standard output followed by standard error.
        """
        return self.stdout + self.stderr

    def describe(self) -> str:
        """
        The exit status and the whole output, for assertion messages.
        """
        return "exit status %s\n--- stdout ---\n%s--- stderr ---\n%s" % (self.exitCode, self.stdout, self.stderr)


class ChildProcess(protocol.ProcessProtocol):
    """
    A child process started by a test: collects its output and tells when
    it ends.

    @ivar name: what to call it in messages.
    @ivar argv: its command line.
    @ivar port: the port it listens on, for peers started by L{startPeer}.
    @ivar exitCode: its exit status once ended (C{None} if a signal killed
        it or it still runs).
    @ivar signal: the signal that killed it, if one did.
    @ivar stopping: C{True} once L{stop} has been asked for.
    """

    port = None

    def __init__(self, name: str, argv: Sequence[str], reactor=None):
        self.name = name
        self.argv = list(argv)
        self.exitCode = None
        self.signal = None
        self.stopping = False
        self._reactor = _reactor(reactor)
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._ended = False
        self._endWaiters: List[defer.Deferred] = []
        self._outputWaiters: List[Tuple[re.Pattern, defer.Deferred]] = []

    # ProcessProtocol

    def connectionMade(self) -> None:
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self._stdout += data
        self._checkOutputWaiters()

    def errReceived(self, data: bytes) -> None:
        self._stderr += data
        self._checkOutputWaiters()

    def processEnded(self, reason) -> None:
        self._ended = True
        self.exitCode = getattr(reason.value, "exitCode", None)
        self.signal = getattr(reason.value, "signal", None)
        waiters, self._outputWaiters = self._outputWaiters, []
        for pattern, deferred in waiters:
            deferred.errback(
                FailTest("%s ended before printing %r:\n%s" % (self.name, pattern.pattern, self.describe()))
            )
        endWaiters, self._endWaiters = self._endWaiters, []
        for deferred in endWaiters:
            deferred.callback(self)

    # what tests use

    @property
    def running(self) -> bool:
        """
        Whether the process has not ended yet.
        """
        return not self._ended

    @property
    def stdout(self) -> str:
        """
        Its standard output so far.
        """
        return self._stdout.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        """
        Its standard error so far.
        """
        return self._stderr.decode("utf-8", "replace")

    @property
    def output(self) -> str:
        """
        Standard output followed by standard error, so far.
        """
        return self.stdout + self.stderr

    def describe(self) -> str:
        """
        Its command line, state and output, for assertion messages.
        """
        if self.running:
            state = "running"
        elif self.signal is not None:
            state = "killed by signal %s" % (self.signal,)
        else:
            state = "exit status %s" % (self.exitCode,)
        return "%s (%s): %s\n--- stdout ---\n%s--- stderr ---\n%s" % (
            self.name,
            " ".join(self.argv),
            state,
            self.stdout,
            self.stderr,
        )

    def result(self) -> ProcessResult:
        """
        Its output and exit status as a L{ProcessResult}.
        """
        return ProcessResult(self.stdout, self.stderr, self.exitCode)

    def whenEnded(self) -> defer.Deferred:
        """
        A L{Deferred} firing with this object once the process has ended.
        """
        if self._ended:
            return defer.succeed(self)
        deferred = defer.Deferred()
        self._endWaiters.append(deferred)
        return deferred

    def waitForOutput(self, pattern: str, timeout: float = 10.0) -> defer.Deferred:
        """
        Wait until the output (standard output or error) matches a regular
        expression.

        Servers log after they have answered, so a client's exit does not
        mean the server's log line is written yet: wait for it with this.

        @param pattern: a regular expression, searched with L{re.search}
            (multi-line mode).
        @return: a L{Deferred} firing with the L{re.Match}, or failing with
            L{FailTest} after C{timeout} seconds or when the process ends
            without printing it.
        """
        compiled = re.compile(pattern, re.MULTILINE)
        match = compiled.search(self.output)
        if match is not None:
            return defer.succeed(match)
        if self._ended:
            return defer.fail(FailTest("%s ended without printing %r:\n%s" % (self.name, pattern, self.describe())))
        deferred = defer.Deferred()
        entry = (compiled, deferred)
        self._outputWaiters.append(entry)

        def expire():
            if entry in self._outputWaiters:
                self._outputWaiters.remove(entry)
                deferred.errback(
                    FailTest("%s did not print %r within %s s:\n%s" % (self.name, pattern, timeout, self.describe()))
                )

        timer = self._reactor.callLater(timeout, expire)

        def cancelTimer(result):
            if timer.active():
                timer.cancel()
            return result

        return deferred.addBoth(cancelTimer)

    def _checkOutputWaiters(self) -> None:
        if not self._outputWaiters:
            return
        text = self.output
        for entry in list(self._outputWaiters):
            pattern, deferred = entry
            match = pattern.search(text)
            if match is not None:
                self._outputWaiters.remove(entry)
                deferred.callback(match)

    def signalProcess(self, signal: str) -> None:
        """
        Send a signal (C{"TERM"}, C{"KILL"}, C{"INT"}), unless the process
        has already ended.
        """
        if self._ended:
            return
        try:
            self.transport.signalProcess(signal)
        except error.ProcessExitedAlready:
            pass

    def stop(self, timeout: float = 5.0) -> defer.Deferred:
        """
        End the process: C{SIGTERM}, then C{SIGKILL} if it still runs after
        C{timeout} seconds.

        @return: a L{Deferred} firing with this object once it has ended.
        """
        self.stopping = True
        if self._ended:
            return defer.succeed(self)
        ended = self.whenEnded()
        self.signalProcess("TERM")
        killer = self._reactor.callLater(timeout, self.signalProcess, "KILL")

        def cancelKiller(result):
            if killer.active():
                killer.cancel()
            return result

        return ended.addBoth(cancelKiller)


def spawn(
    testCase,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Optional[str] = None,
    name: Optional[str] = None,
    reactor=None,
) -> ChildProcess:
    """
    Start a child process that the test's cleanup stops.

    @param testCase: the running L{twisted.trial.unittest.TestCase}.
    @param argv: the command line; C{argv[0]} is the executable.
    @param env: the child's whole environment (see L{pythonEnvironment} and
        L{dcmtkEnvironment}).
    @param cwd: its working directory; a fresh temporary one by default.
    @return: the L{ChildProcess}.
    """
    reactor = _reactor(reactor)
    child = ChildProcess(name or os.path.basename(argv[0]), argv, reactor)
    reactor.spawnProcess(child, argv[0], list(argv), env=dict(env), path=cwd or makeDirectory(testCase))
    testCase.addCleanup(child.stop)
    return child


def runCommand(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Optional[str] = None,
    timeout: float = 30.0,
    reactor=None,
) -> defer.Deferred:
    """
    Run a short command to its end.

    @param env: the child's whole environment (see L{pythonEnvironment} and
        L{dcmtkEnvironment}).
    @param cwd: its working directory (default: ours).
    @param timeout: seconds after which the command is killed and the
        result fails.
    @return: a L{Deferred} firing with a L{ProcessResult}
        C{(stdout, stderr, exitCode)}, or failing with L{FailTest} (and
        the output so far) when the command had to be killed.
    """
    reactor = _reactor(reactor)
    child = ChildProcess(os.path.basename(argv[0]), argv, reactor)
    reactor.spawnProcess(child, argv[0], list(argv), env=dict(env), path=cwd)
    expired = []

    def kill():
        expired.append(True)
        child.signalProcess("KILL")

    killer = reactor.callLater(timeout, kill)

    def ended(child):
        if killer.active():
            killer.cancel()
        if expired:
            raise FailTest("%s did not finish within %s s; killed:\n%s" % (child.name, timeout, child.describe()))
        return child.result()

    return child.whenEnded().addCallback(ended)


# -- waiting for a port -----------------------------------------------------------


class _Probe(protocol.Protocol):
    """
    Connects, then hangs up at once; C{lost} fires when the connection is
    gone.
    """

    def __init__(self):
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.lost.callback(None)


class PeerExited(Exception):
    """
    The process we were waiting on ended before its port accepted
    connections.
    """


@defer.inlineCallbacks
def waitForPort(
    port: int,
    *,
    host: str = LOCALHOST,
    timeout: float = 15.0,
    process: Optional[ChildProcess] = None,
    interval: float = 0.05,
    reactor=None,
):
    """
    Wait until a TCP connection to C{host:port} succeeds, by connecting
    (and hanging up at once) every C{interval} seconds.

    @param process: the process that should open the port; if it ends
        first, stop waiting.
    @return: a L{Deferred} firing with C{None} once the port accepted a
        connection (and that probe connection is closed again), failing
        with L{PeerExited} if C{process} ended first, or with L{FailTest}
        after C{timeout} seconds.
    """
    reactor = _reactor(reactor)
    deadline = reactor.seconds() + timeout
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=max(1, int(timeout)))
    while True:
        if process is not None and not process.running:
            raise PeerExited("%s ended before listening on %s:%d" % (process.name, host, port))
        try:
            probe = yield endpoint.connect(protocol.Factory.forProtocol(_Probe))
        except error.ConnectError:
            pass
        else:
            yield probe.lost
            return
        if reactor.seconds() >= deadline:
            where = "\n" + process.describe() if process is not None else ""
            raise FailTest("nothing accepted connections on %s:%d within %s s%s" % (host, port, timeout, where))
        yield deferLater(reactor, interval)


def callWithCallback(onResult: Callable, function: Callable, *args, **kwargs) -> None:
    """
    Call C{function} now and hand its outcome to C{onResult} as a thread
    pool's C{callInThreadWithCallback} does: C{(True, result)}, or
    C{(False, failure)}.  For the test thread pools that run their jobs in
    the test's own thread.
    """
    try:
        result = function(*args, **kwargs)
    except BaseException:
        onResult(False, Failure())
    else:
        onResult(True, result)


def deferLater(reactor, seconds: float) -> defer.Deferred:
    """
    A L{Deferred} that fires with C{None} after C{seconds} on C{reactor}.
    """
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def waitUntil(condition: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.01, message: str = "", reactor=None):
    """
    Poll C{condition} every C{interval} seconds until it is true.

    For state that changes a moment after what the test awaited (a server
    notices a closed connection after its client process has exited).

    @return: a L{Deferred} firing with C{None}, or failing with
        L{FailTest} (and C{message}) after C{timeout} seconds.
    """
    reactor = _reactor(reactor)
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() >= deadline:
            raise FailTest("condition not met within %s s%s" % (timeout, (": " + message) if message else ""))
        yield deferLater(reactor, interval)


_ADDRESS_IN_USE = re.compile(r"address already in use|errno 98", re.IGNORECASE)


@defer.inlineCallbacks
def startPeer(
    testCase,
    makeArgv: Callable[[int], Sequence[str]],
    *,
    env: Mapping[str, str],
    cwd: Optional[str] = None,
    name: Optional[str] = None,
    host: str = LOCALHOST,
    startTimeout: float = 20.0,
    attempts: int = 3,
    ready: Optional[Callable] = None,
    reactor=None,
):
    """
    Start a long-running peer on a free port and wait until it accepts
    connections.

    The port is chosen here and passed to C{makeArgv}; if the peer exits
    because another process took the port meanwhile ("Address already in
    use"), it is started again on another port, up to C{attempts} times.
    The test's cleanup stops the peer.

    @param makeArgv: builds the command line for a port.
    @param env: the child's whole environment.
    @param cwd: its working directory; a fresh temporary one by default.
    @param ready: called with the child once its port accepts connections,
        returns a L{Deferred} that fires once the port is the child's own
        (a log line of its listening), not another process's that took
        the port between L{freePort} and the child's bind.
    @return: a L{Deferred} firing with the running L{ChildProcess}, whose
        C{port} is the port it listens on; failing with L{FailTest} (with
        the peer's output) if it never accepts connections.
    """
    reactor = _reactor(reactor)
    for attempt in range(attempts):
        port = freePort(host)
        argv = list(makeArgv(port))
        child = spawn(testCase, argv, env=env, cwd=cwd, name=name, reactor=reactor)
        child.port = port
        try:
            yield waitForPort(port, host=host, timeout=startTimeout, process=child, reactor=reactor)
            if ready is not None:
                yield ready(child)
        except (PeerExited, FailTest):
            if child.running:
                raise
            yield child.whenEnded()
            if attempt + 1 < attempts and _ADDRESS_IN_USE.search(child.output):
                continue
            raise FailTest("%s ended before listening on port %d:\n%s" % (child.name, port, child.describe()))
        return child


def startDaemon(testCase, *options: str, startTimeout: float = 20.0, reactor=None) -> defer.Deferred:
    """
    Start the real daemon, C{twistd -n dicomd}, on a free port of
    127.0.0.1, with this checkout first on C{PYTHONPATH} and a fresh
    temporary working directory.

    @param options: options of the dicomd plugin (C{"--implicit"},
        C{"--max-pdu", "4096"}...); C{--listen} is set here.
    @return: a L{Deferred} firing with its L{ChildProcess} once it accepts
        connections; its log is the process's standard output.
    """
    return startPeer(
        testCase,
        lambda port: twistdArgv(port, *options),
        env=pythonEnvironment(),
        cwd=makeDirectory(testCase),
        name="twistd dicomd",
        startTimeout=startTimeout,
        ready=lambda child: daemonListening(child, startTimeout),
        reactor=reactor,
    )


def frontDoorListening(child, timeout: float = 20.0) -> defer.Deferred:
    """
    Wait until C{dicomd storescp -v} or C{dicomd qrscp -v} says it
    listens on its port, which it does once its services have started
    (C{startPeer}'s C{ready}): its port accepts connections before that.
    """
    return child.waitForOutput(r"Listening on port %d\b" % (child.port,), timeout=timeout)


def daemonListening(child, timeout: float = 20.0) -> defer.Deferred:
    """
    Wait until a twistd dicomd C{child} logs that it listens on its port
    (C{startPeer}'s C{ready}).
    """
    return child.waitForOutput(r"AcceptorFactory starting on %d\b" % (child.port,), timeout=timeout)


def startDCMTKServer(testCase, tool: str, *options: str, cwd: Optional[str] = None, reactor=None) -> defer.Deferred:
    """
    Start one of DCMTK's servers (C{storescp}, C{dcmqrscp}...) from
    C{/usr/bin} with C{TCP_NODELAY=1}, the port as its last argument.

    @param options: its options, before the port.
    @param cwd: its working directory (where C{storescp} stores); a fresh
        temporary one by default.
    @return: a L{Deferred} firing with its L{ChildProcess} once it accepts
        connections.
    """
    path = dcmtk(tool)
    return startPeer(
        testCase,
        lambda port: [path] + list(options) + [str(port)],
        env=dcmtkEnvironment(),
        cwd=cwd,
        name=tool,
        reactor=reactor,
    )


def startPythonScript(testCase, source: str, *arguments: str, name: str = "python script", reactor=None) -> defer.Deferred:
    """
    Run a Python program (a pynetdicom SCP, say) as a long-running peer.

    The program is written to a temporary file and run with the tests'
    interpreter and L{pythonEnvironment}; its first argument is the port to
    listen on (on 127.0.0.1), followed by C{arguments}.

    @return: a L{Deferred} firing with its L{ChildProcess} once it accepts
        connections.
    """
    directory = makeDirectory(testCase)
    script = os.path.join(directory, "peer.py")
    with open(script, "w") as f:
        f.write(source)
    return startPeer(
        testCase,
        lambda port: [sys.executable, script, str(port)] + list(arguments),
        env=pythonEnvironment(),
        cwd=directory,
        name=name,
        reactor=reactor,
    )


def runPythonScript(testCase, source: str, *arguments: str, timeout: float = 30.0, reactor=None) -> defer.Deferred:
    """
    Run a short Python program (a pynetdicom SCU, say) to its end, with the
    tests' interpreter and L{pythonEnvironment}.

    @return: a L{Deferred} firing with its L{ProcessResult}.
    """
    directory = makeDirectory(testCase)
    script = os.path.join(directory, "client.py")
    with open(script, "w") as f:
        f.write(source)
    return runCommand(
        [sys.executable, script] + list(arguments),
        env=pythonEnvironment(),
        cwd=directory,
        timeout=timeout,
        reactor=reactor,
    )


# -- dicomd in the test's own reactor ---------------------------------------------


def verificationEntity(title: str = "DICOMD", transferSyntaxes: Optional[Sequence[str]] = None, **kwargs):
    """
    An L{ApplicationEntity} that answers C-ECHO, as C{twistd dicomd} does.

    @param transferSyntaxes: accepted for Verification, in preference
        order (default: the uncompressed ones, explicit little endian
        first).
    @param kwargs: further L{ApplicationEntity} arguments.
    """
    from dicomd.dimse.commands import CEchoRQ
    from dicomd.net.acceptor import ApplicationEntity
    from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
    from dicomd.services.verification import VerificationSCP
    from dicomd.ul.negotiation import UNCOMPRESSED, AcceptorPolicy

    return ApplicationEntity(
        title,
        AcceptorPolicy({VERIFICATION_SOP_CLASS: tuple(transferSyntaxes or UNCOMPRESSED)}),
        {CEchoRQ.commandField: VerificationSCP()},
        **kwargs,
    )


def listenInProcess(testCase, entity=None, *, reactor=None, **factoryKwargs) -> Tuple[int, object]:
    """
    Listen with dicomd's L{AcceptorFactory} on a free port of 127.0.0.1 in
    the test's reactor.

    The test's cleanup stops listening and drops the connections still
    open, and waits until they are gone, so the reactor is clean.

    @param entity: the L{ApplicationEntity}; L{verificationEntity()} by
        default.
    @param factoryKwargs: further L{AcceptorFactory} arguments
        (C{maximumAssociations}, C{idleTimeout}...).
    @return: C{(port number, AcceptorFactory)}.
    """
    from dicomd.net.acceptor import AcceptorFactory

    reactor = _reactor(reactor)
    factory = AcceptorFactory(entity if entity is not None else verificationEntity(), reactor=reactor, **factoryKwargs)
    wrapper = WrappingFactory(factory)
    listening = reactor.listenTCP(0, wrapper, interface=LOCALHOST)

    @defer.inlineCallbacks
    def close():
        yield listening.stopListening()
        for connection in list(wrapper.protocols):
            connection.transport.abortConnection()
        deadline = reactor.seconds() + 5
        while wrapper.protocols and reactor.seconds() < deadline:
            yield deferLater(reactor, 0.01)

    testCase.addCleanup(close)
    return listening.getHost().port, factory


# -- raw bytes ------------------------------------------------------------------------


class RawExchange(NamedTuple):
    """
    What a server answered to raw bytes.

    @ivar received: every byte it sent.
    @ivar closedByPeer: whether the server closed the connection (rather
        than we, after reading what we expected or at the timeout).
    @ivar timedOut: whether we gave up waiting.
    """

    received: bytes
    closedByPeer: bool
    timedOut: bool


class _RawClient(protocol.Protocol):
    def __init__(self, data: bytes, closeAfterWriting: bool, expect: Optional[int], timeout: float, reactor):
        self._data = data
        self._closeAfterWriting = closeAfterWriting
        self._expect = expect
        self._timeout = timeout
        self._reactor = reactor
        self._received = bytearray()
        self._weClosed = False
        self._timedOut = False
        self._timer = None
        self.done = defer.Deferred()

    def connectionMade(self):
        self._timer = self._reactor.callLater(self._timeout, self._expire)
        self.transport.write(self._data)
        if self._closeAfterWriting:
            self._close()

    def dataReceived(self, data):
        self._received += data
        if self._expect is not None and len(self._received) >= self._expect:
            self._close()

    def _expire(self):
        self._timer = None
        self._timedOut = True
        self._weClosed = True
        self.transport.abortConnection()

    def _close(self):
        if not self._weClosed:
            self._weClosed = True
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.done.callback(RawExchange(bytes(self._received), not self._weClosed, self._timedOut))


@defer.inlineCallbacks
def exchangeBytes(
    port: int,
    data: bytes,
    *,
    host: str = LOCALHOST,
    closeAfterWriting: bool = False,
    expect: Optional[int] = None,
    timeout: float = 10.0,
    reactor=None,
):
    """
    Connect, write C{data}, and read until the server closes, C{expect}
    bytes have arrived, or C{timeout} seconds have passed.

    @param closeAfterWriting: hang up right after writing.
    @param expect: close once this many bytes have been read (an A-ABORT
        is 10).
    @return: a L{Deferred} firing with a L{RawExchange}.
    """
    reactor = _reactor(reactor)
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=max(1, int(timeout)))
    client = yield endpoint.connect(
        protocol.Factory.forProtocol(lambda: _RawClient(data, closeAfterWriting, expect, timeout, reactor))
    )
    result = yield client.done
    return result


def abortOf(data: bytes) -> Optional[Tuple[int, int]]:
    """
    The C{(source, reason)} of an A-ABORT PDU at the start of C{data}, or
    C{None} when C{data} does not start with one.
    """
    if len(data) >= 10 and data[:8] == A_ABORT_PREFIX:
        return data[8], data[9]
    return None


def deadPID() -> int:
    """
    The PID of a process that has just ended (and that no other has had
    the time to take).
    """
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid
