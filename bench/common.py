"""
What the benchmarks share: where this checkout and DCMTK's programs are,
the error that stops a benchmark, free ports, the environments of the
programs they run, a process's CPU time and memory from C{/proc},
L{ServerProcess}, a server started for a benchmark with its log in a file,
L{runInTurns}, which measures several checkouts' code in turn, L{inTurn},
the order of the programs compared in each turn, and L{processorModel}
for the tables' headers.
"""

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DCMTK = "/usr/bin"
HOST = "127.0.0.1"


class BenchmarkError(Exception):
    """
    A server did not start, or a run failed: the numbers would lie.
    """


def inTurn(items: Sequence, attempt: int) -> list:
    """
    C{items} in the order of turn C{attempt} (from 0): each turn starts
    one further down the list, so that none always goes first, or always
    follows the same one (on a disk, the write-back or deletion of what the
    one before stored).
    """
    shift = attempt % len(items) if items else 0
    return list(items[shift:]) + list(items[:shift])


def processorModel() -> str:
    """
    The processor's model name as the system reports it (Linux's
    C{/proc/cpuinfo}), or the machine type elsewhere: the same script ran
    on one kind of virtual machine one day and on another the next, with
    DCMTK twice as fast, and a table must say which.
    """
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        models = []
    return models[0] if models else platform.machine()


def freePort() -> int:
    """
    A port of 127.0.0.1 that nothing listens on now.
    """
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def dcmtkEnvironment(nodelay: bool = True) -> dict:
    """
    Our environment for DCMTK programs: with C{TCP_NODELAY=1} (without it
    DCMTK leaves Nagle's algorithm on), or, unless C{nodelay}, without
    C{TCP_NODELAY} at all (DCMTK as shipped).
    """
    env = dict(os.environ)
    env.pop("TCP_NODELAY", None)
    if nodelay:
        env["TCP_NODELAY"] = "1"
    return env


def pythonEnvironment(checkout: str = REPO_ROOT) -> dict:
    """
    Our environment with C{checkout} (this one by default) first on
    C{PYTHONPATH}, for Python programs that import dicomd.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([checkout] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def procStatus(pid: int) -> Dict[str, int]:
    """
    The memory lines C{VmRSS} and C{VmHWM} of C{/proc/PID/status}, in
    bytes (those it has).
    """
    values = {}
    with open("/proc/%d/status" % (pid,)) as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    return values


def cpuSeconds(pid: int, children: bool = False, system: bool = False) -> float:
    """
    User plus system CPU time of a process (all its threads) so far, and
    with C{children} that of its children it has waited for; 0 if the
    process is gone.

    @param system: the system time only (the kernel's work in its system
        calls).
    """
    try:
        with open("/proc/%d/stat" % (pid,)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, then cutime, cstime (those of waited-for children).
    own, waited = ((12,), (14,)) if system else ((11, 12), (13, 14))
    return sum(int(fields[i]) for i in own + (waited if children else ())) / os.sysconf("SC_CLK_TCK")


def treeCPUSeconds(pid: int, system: bool = False) -> float:
    """
    L{cpuSeconds} of a process with its children, those it waited for and
    those still running (worker processes), and theirs.
    """
    total = cpuSeconds(pid, children=True, system=system)
    try:
        threads = os.listdir("/proc/%d/task" % (pid,))
    except OSError:
        return total
    for thread in threads:
        try:
            with open("/proc/%d/task/%s/children" % (pid, thread)) as f:
                children = [int(child) for child in f.read().split()]
        except OSError:
            continue
        total += sum(treeCPUSeconds(child, system) for child in children)
    return total


#: What each worker process of C{twistd dicomd --workers} and C{dicomd
#: storescp --fork} logs once it serves (L{ServerProcess.waitForLog}).
WORKERS_READY = r"worker \d+: AcceptorFactory starting on"


class ServerProcess:
    """
    A server process started for a benchmark, with its log in a file; the
    constructor returns once it listens on C{port} of L{HOST}.

    @ivar name: its name in the tables and messages.
    @ivar process: the L{subprocess.Popen}.
    @ivar port: where it listens.
    @ivar logPath: its log file.
    """

    def __init__(
        self,
        name: str,
        argv,
        env: dict,
        cwd: str,
        port: int,
        logPath: str,
        startTimeout: float = 30.0,
        stopTimeout: float = 10.0,
        append: bool = False,
        stderrOnly: bool = False,
    ):
        """
        Start the process; raise L{BenchmarkError}, with the end of its
        log, if it does not listen within C{startTimeout} seconds.

        @param stopTimeout: seconds L{stop} waits after terminating it
            before it kills it.
        @param append: append to the log file rather than truncate it.
        @param stderrOnly: log its standard error only, and discard its
            standard output.
        """
        self.name = name
        self.port = port
        self.logPath = logPath
        self.stopTimeout = stopTimeout
        self._log = open(logPath, "ab" if append else "wb")
        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL if stderrOnly else self._log,
            stderr=self._log if stderrOnly else subprocess.STDOUT,
        )
        self._waitForPort(startTimeout)

    def _waitForPort(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BenchmarkError("%s did not start:\n%s" % (self.name, self.logText()))

    def waitForLog(self, pattern: str, count: int, timeout: float = 30.0) -> None:
        """
        Wait until its log has C{count} lines matching the regular
        expression C{pattern}: worker processes serve once each has logged
        so, whereas the port the coordinator listens on accepts
        connections before.  Stop it and raise L{BenchmarkError} if it
        exits or does not log them within C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.logText(tail=1 << 20))) < count:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise BenchmarkError("%s did not start its workers:\n%s" % (self.name, self.logText()))
            time.sleep(0.05)

    def logText(self, tail: int = 4000) -> str:
        """
        The last C{tail} characters of its log.
        """
        with open(self.logPath, "rb") as f:
            return f.read().decode("utf-8", "replace")[-tail:]

    def stop(self) -> None:
        """
        Terminate it (kill it if it does not exit within C{stopTimeout}
        seconds), and close its log.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stopTimeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def checkoutsInTurn(baseline: Optional[str], profile: bool) -> Dict[str, str]:
    """
    The checkouts a per-object CPU benchmark runs, by name: this one, after
    C{baseline} when one is given; only this one when it profiles.
    """
    if baseline is None or profile:
        return {"this": REPO_ROOT}
    return {"baseline": os.path.abspath(baseline), "this": REPO_ROOT}


def runInTurns(script: str, checkouts: Dict[str, str], runs: int, options: List[str], corpusDirectory: str, output: Optional[str]) -> Dict[str, List[float]]:
    """
    Run C{script}'s measuring child (C{--child CHECKOUT CORPUS OUTPUT}) with
    each checkout's code in turn, C{runs} times, each in a new scratch
    directory under C{output}, and collect what each printed last: CPU
    seconds per object, returned in microseconds by checkout name.

    @param options: the child's other arguments.
    """
    results: Dict[str, List[float]] = {name: [] for name in checkouts}
    for _ in range(runs):
        for name, root in checkouts.items():
            scratch = tempfile.mkdtemp(prefix="dicomd-bench-", dir=output)
            try:
                argv = [sys.executable, os.path.abspath(script)] + options + ["--child", root, corpusDirectory, scratch]
                result = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True, env=dict(os.environ, PYTHONPATH=root))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            results[name].append(float(result.stdout.strip().splitlines()[-1]) * 1e6)
    return results

