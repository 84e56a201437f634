"""
Benchmark: sending the benchmark corpus with C{dicomd storescu} and with
DCMTK's C{storescu}, in one run, to the same receivers.

The corpus is L{bench.corpus}'s (2,000 images of 256x256x16 bit, 500 of
512x512x16 bit, 2 multi-frame objects of 256 MB); it is made first if
missing.  Every DCMTK program runs with C{TCP_NODELAY=1} (without it DCMTK
leaves Nagle's algorithm on and each C-STORE waits for a delayed ACK);
dicomd sets C{TCP_NODELAY} itself.

Two comparisons, each corpus sent as a directory (C{+sd DIR}) by one
process per run, one association each, the clients taking turns,
C{--repeats} times (5 by default), the one that goes first changing from
turn to turn, and each run starting on a disk with nothing left to write
back (C{sync}); the median of each figure counts:

  1. both clients to the same DCMTK C{storescp}, in three modes:
     C{--ignore} (it reads and decodes every PDU and answers every
     C-STORE, but writes nothing), writing the files to disk (a directory
     under C{--work}), and writing them to tmpfs (C{/dev/shm});
  2. with an asynchronous operations window: C{dicomd storescu
     --async-ops 8} to C{dicomd storescp} against DCMTK C{storescu} to
     DCMTK C{storescp}, each pair in the same three modes.  No DCMTK tool
     negotiates a window; this is what a dicomd pair gains from one.

Two times per run:

  - end to end: the client process's wall-clock time, from start to exit,
    start-up and reading the files' headers included;
  - on the wire: the association's time as the receiver saw it, from the
    A-ASSOCIATE-RQ's arrival to the release: DCMTK storescp's
    "Association Received" and "Association Release" lines (microsecond
    timestamps through a log4cplus configuration), dicomd storescp's
    "Association ... accepted" and "... released" events (their
    C{log_time}, written by an observer of this benchmark's launcher).

Each table gives DCMTK's absolute rate beside each ratio (above 1: dicomd
is faster).  Also shown: the client's CPU time (user + system) and peak
RSS, from GNU time.  dicomd runs from this checkout (or C{--dicomd
CHECKOUT}, to compare versions) with this interpreter, with its byte code
cached (C{PYTHONPYCACHEPREFIX}) as an installed dicomd's would be; a
first, unmeasured run warms that cache.

Run from the checkout:

    python bench/send.py [--corpus DIR] [--work DIR] [--repeats 5]
                         [--only ct256 ...] [--modes ignore disk tmpfs]
                         [--skip-async]

This is not a test: it asserts nothing but that every file arrived.
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bench.common import DCMTK, HOST, BenchmarkError, ServerProcess, dcmtkEnvironment, freePort, inTurn, processorModel, pythonEnvironment  # noqa: E402
from bench.corpus import CORPORA, ensureCorpus  # noqa: E402

TIME = "/usr/bin/time"

#: A log4cplus configuration for DCMTK's programs: INFO and above on
#: standard error, each line with a microsecond timestamp.
LOGGER_CONFIGURATION = """\
log4cplus.rootLogger = INFO, console
log4cplus.appender.console = log4cplus::ConsoleAppender
log4cplus.appender.console.logToStdErr = true
log4cplus.appender.console.layout = log4cplus::PatternLayout
log4cplus.appender.console.layout.ConversionPattern = %D{%Y-%m-%d %H:%M:%S.%Q} %p: %m%n
"""

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3})\.(\d{3}) \w+: (.*)$")

#: How C{dicomd storescp} runs here: as C{python -m dicomd storescp}, with
#: one more observer that writes each association's "accepted" and
#: "released" events, with their time, to the file named first.
DICOMD_RECEIVER = """\
import sys
from twisted.logger import formatEvent, globalLogPublisher
from dicomd.__main__ import main

log = open(sys.argv[1], "a", buffering=1)

def stamp(event):
    if event.get("log_format", "").startswith("Association {calling}"):
        log.write("%.6f %s\\n" % (event["log_time"], formatEvent(event).replace("\\n", " ")))

globalLogPublisher.addObserver(stamp)
main(sys.argv[2:])
"""

#: The receivers' modes: what storescp is told to do with what it receives.
MODES = ("ignore", "disk", "tmpfs")

#: The asynchronous operations window of the second comparison.
WINDOW = 8


class Receiver(ServerProcess):
    """
    A storage SCP for the benchmark, in one of the L{MODES}: C{ignore}, or
    writing into a fresh directory on disk or on tmpfs, emptied between
    runs.
    """

    def __init__(self, name, argv, env, work, port, logPath, mode):
        self.mode = mode
        self.output = None
        if mode == "disk":
            self.output = tempfile.mkdtemp(prefix="received-", dir=work)
        elif mode == "tmpfs":
            self.output = tempfile.mkdtemp(prefix="dicomd-bench-received-", dir="/dev/shm")
        where = ["--ignore"] if self.output is None else ["-od", self.output]
        super().__init__(name, argv + where + [str(port)], env, work, port, logPath, startTimeout=20.0, stderrOnly=True)

    def logSize(self) -> int:
        return os.path.getsize(self.logPath)

    def clear(self) -> None:
        """
        Delete what was received (between runs, outside their times).
        """
        if self.output is not None:
            for name in os.listdir(self.output):
                path = os.path.join(self.output, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)

    def stop(self) -> None:
        super().stop()
        if self.output is not None:
            shutil.rmtree(self.output, ignore_errors=True)

    def associationsSince(self, offset: int, timeout: float = 10.0) -> list:
        """
        The associations logged after byte C{offset} of the log, once the
        last one is released: C{(seconds, stores)} for each.
        """
        deadline = time.monotonic() + timeout
        while True:
            with open(self.logPath, "rb") as f:
                f.seek(offset)
                lines = f.read().decode("utf-8", "replace").splitlines()
            associations, ended = self.parse(lines)
            if associations and ended:
                return associations
            if time.monotonic() > deadline:
                raise BenchmarkError("%s logged no released association:\n%s" % (self.name, "\n".join(lines[-20:])))
            time.sleep(0.02)


class DCMTKStorescp(Receiver):
    """
    DCMTK's storescp, logging with timestamps.
    """

    def __init__(self, work: str, mode: str):
        port = freePort()
        configuration = os.path.join(work, "logger.cfg")
        with open(configuration, "w") as f:
            f.write(LOGGER_CONFIGURATION)
        logPath = os.path.join(work, "storescp-%d.log" % (port,))
        super().__init__("DCMTK storescp", [DCMTK + "/storescp", "-lc", configuration], dcmtkEnvironment(), work, port, logPath, mode)

    @staticmethod
    def parse(lines):
        associations, start, stores = [], None, 0
        for line in lines:
            match = _LOG_LINE.match(line)
            if match is None:
                continue
            moment = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            moment += int(match.group(2)) / 1e3 + int(match.group(3)) / 1e6
            message = match.group(4)
            if message.startswith("Association Received"):
                start, stores = moment, 0
            elif message.startswith("Received Store Request"):
                stores += 1
            elif message.startswith("Association Release") and start is not None:
                associations.append((moment - start, stores))
                start = None
        return associations, start is None


_DICOMD_EVENT = re.compile(r"^(\d+\.\d+) Association .* (accepted|released|aborted)")
_DICOMD_STORES = re.compile(r"C-STORE (\d+) success")


class DicomdStorescp(Receiver):
    """
    C{dicomd storescp}, granting a window of up to 16, its associations'
    times written by L{DICOMD_RECEIVER}'s observer.
    """

    def __init__(self, work: str, mode: str, checkout: str, env: dict):
        port = freePort()
        launcher = os.path.join(work, "dicomd-receiver.py")
        with open(launcher, "w") as f:
            f.write(DICOMD_RECEIVER)
        logPath = os.path.join(work, "dicomd-storescp-%d.log" % (port,))
        argv = [sys.executable, launcher, logPath, "storescp", "--max-async-ops", "16"]
        super().__init__("dicomd storescp", argv, env, work, port, logPath, mode)

    @staticmethod
    def parse(lines):
        associations, start = [], None
        for line in lines:
            match = _DICOMD_EVENT.match(line)
            if match is None:
                continue
            if match.group(2) == "accepted":
                start = float(match.group(1))
            elif start is not None:
                stores = _DICOMD_STORES.search(line)
                associations.append((float(match.group(1)) - start, int(stores.group(1)) if stores else 0))
                start = None
        return associations, start is None


class Run:
    """
    One client process sending one corpus: its wall-clock time, the
    receiver's association time, its CPU time and peak RSS.
    """

    def __init__(self, wall, wire, cpu, maxRSS):
        self.wall = wall
        self.wire = wire
        self.cpu = cpu
        self.maxRSS = maxRSS

    @classmethod
    def median(cls, runs):
        """
        The median of several runs, figure by figure (the largest RSS).
        """
        return cls(
            statistics.median(run.wall for run in runs),
            statistics.median(run.wire for run in runs),
            statistics.median(run.cpu for run in runs),
            max(run.maxRSS for run in runs),
        )


class Client:
    """
    A storage SCU command line and its environment.
    """

    def __init__(self, name: str, argv, env, cwd: str):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd

    def send(self, receiver: Receiver, directory: str, expected: int, statsPath: str) -> Run:
        offset = receiver.logSize()
        argv = self.argv + ["+sd", HOST, str(receiver.port), directory]
        # GNU time measures the client alone: its own wait4() sees a child
        # forked from a small process, not from this one.
        started = time.perf_counter()
        result = subprocess.run(
            [TIME, "-f", "%U %S %M", "-o", statsPath] + argv,
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise BenchmarkError(
                "%s exited with %d:\n%s" % (" ".join(argv), result.returncode, result.stdout.decode("utf-8", "replace")[-3000:])
            )
        with open(statsPath) as f:
            user, system, maxRSS = f.read().split()[-3:]
        associations = receiver.associationsSince(offset)
        stores = sum(count for _, count in associations)
        if stores != expected:
            raise BenchmarkError("%s -> %s: %d C-STOREs received, not %d" % (self.name, receiver.name, stores, expected))
        receiver.clear()
        return Run(wall, sum(seconds for seconds, _ in associations), float(user) + float(system), int(maxRSS) * 1024)


def dicomdEnvironment(checkout: str, workDirectory: str) -> dict:
    """
    The environment dicomd runs in: C{checkout} first on the path, byte
    code cached as an installed dicomd's would be.
    """
    env = pythonEnvironment(checkout)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(workDirectory, "pycache")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def directorySize(paths) -> int:
    return sum(os.path.getsize(path) for path in paths)


def dcmtkVersion() -> str:
    result = subprocess.run([DCMTK + "/storescu", "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        if "dcmtk" in line:
            return line.strip().strip("$").strip()
    return "DCMTK (unknown version)"


def printTable(title: str, results, repeats: int) -> None:
    """
    @param results: C{(corpus, size, mode, dcmtk, dicomd)}, the last two
        each C{(label, Run)}: the median runs.
    """
    print()
    print("%s, median of %d runs, taking turns" % (title, repeats))
    header = "%-10s %-6s | %-33s | %-33s | %6s %6s | %7s %7s | %5s %5s | %4s %4s" % (
        "corpus", "mode", "DCMTK on the wire", "dicomd on the wire", "ratio", "e2e", "DCMTK", "dicomd", "CPU", "s", "RSS", "MB",
    )
    print(header)
    print("-" * len(header))
    for corpus, size, mode, (_, dcmtk), (_, dicomd) in results:
        print(
            "%-10s %-6s | %6.3f s %8.0f img/s %5.0f MB/s | %6.3f s %8.0f img/s %5.0f MB/s | %5.2fx %5.2fx | %6.3fs %6.3fs | %5.2f %5.2f | %4.0f %4.0f"
            % (
                corpus.name,
                mode,
                dcmtk.wire,
                corpus.count / dcmtk.wire,
                size / 1e6 / dcmtk.wire,
                dicomd.wire,
                corpus.count / dicomd.wire,
                size / 1e6 / dicomd.wire,
                dcmtk.wire / dicomd.wire,
                dcmtk.wall / dicomd.wall,
                dcmtk.wall,
                dicomd.wall,
                dcmtk.cpu,
                dicomd.cpu,
                dcmtk.maxRSS / 1e6,
                dicomd.maxRSS / 1e6,
            )
        )
    print("(ratio: DCMTK's wire time / dicomd's, above 1 dicomd is faster; e2e: the same for the process's wall time,"
          " whose times follow; CPU s and peak RSS MB of the clients, DCMTK first)")


def compare(pairs, corpora, modes, options, statsPath):
    """
    Send every corpus in every mode with both C{(client, receiver
    factory)} pairs, taking turns (L{inTurn}), C{options.repeats} times.

    @return: the rows of L{printTable}.
    """
    results = []
    for mode in modes:
        receivers = [makeReceiver(mode) for _, makeReceiver in pairs]
        try:
            for corpus in corpora:
                size = directorySize(corpus.paths(options.corpus))
                runs = [[], []]
                for attempt in range(options.repeats):
                    for index in inTurn(range(len(pairs)), attempt):
                        (client, _), receiver = pairs[index], receivers[index]
                        sys.stderr.write("%s, %s: %s -> %s, run %d...\n" % (corpus.name, mode, client.name, receiver.name, attempt + 1))
                        # The receiver writing to disk would otherwise
                        # write back the run before while this one goes.
                        os.sync()
                        runs[index].append(client.send(receiver, corpus.directory(options.corpus), corpus.count, statsPath))
                results.append(
                    (corpus, size, mode) + tuple((client.name, Run.median(clientRuns)) for (client, _), clientRuns in zip(pairs, runs))
                )
        finally:
            for receiver in receivers:
                receiver.stop()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--corpus",
        default=os.path.join(tempfile.gettempdir(), "dicomd-bench-corpus"),
        help="where the corpus is (made if missing; default: %(default)s)",
    )
    parser.add_argument("--work", default=tempfile.gettempdir(), help="where the disk receivers write (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per client, corpus and mode; the median counts (default: 5)")
    parser.add_argument("--only", nargs="+", choices=[corpus.name for corpus in CORPORA], help="corpora to send (default: all)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="receiver modes (default: all)")
    parser.add_argument("--skip-async", action="store_true", help="leave out the comparison with a window")
    parser.add_argument(
        "--dicomd",
        default=REPO_ROOT,
        help="the dicomd checkout to run, for before/after comparisons (default: this one, %(default)s)",
    )
    options = parser.parse_args(argv)
    options.corpus = os.path.abspath(options.corpus)
    if options.repeats < 1:
        parser.error("--repeats must be at least 1")
    for tool in ("storescp", "storescu"):
        if not os.access(os.path.join(DCMTK, tool), os.X_OK):
            sys.stderr.write("DCMTK's %s is missing from %s: apt-get install dcmtk\n" % (tool, DCMTK))
            return 2
    if not os.access(TIME, os.X_OK):
        sys.stderr.write("GNU time is missing from %s: apt-get install time\n" % (TIME,))
        return 2
    corpora = [corpus for corpus in ensureCorpus(options.corpus, log=sys.stderr.write) if not options.only or corpus.name in options.only]
    workDirectory = tempfile.mkdtemp(prefix="dicomd-bench-send-", dir=os.path.abspath(options.work))
    checkout = os.path.abspath(options.dicomd)
    env = dicomdEnvironment(checkout, workDirectory)
    dcmtk = Client("DCMTK storescu", [DCMTK + "/storescu"], dcmtkEnvironment(), workDirectory)
    dicomd = Client("dicomd storescu", [sys.executable, "-m", "dicomd", "storescu"], env, workDirectory)
    windowed = Client("dicomd storescu --async-ops %d" % (WINDOW,), dicomd.argv + ["--async-ops", str(WINDOW)], env, workDirectory)
    statsPath = os.path.join(workDirectory, "time")
    try:
        warm = DCMTKStorescp(workDirectory, "ignore")
        try:
            dicomd.send(warm, corpora[0].directory(options.corpus), corpora[0].count, statsPath)
        finally:
            warm.stop()
        same = compare(
            [(dcmtk, lambda mode: DCMTKStorescp(workDirectory, mode)), (dicomd, lambda mode: DCMTKStorescp(workDirectory, mode))],
            corpora,
            options.modes,
            options,
            statsPath,
        )
        pipelined = []
        if not options.skip_async:
            pipelined = compare(
                [
                    (dcmtk, lambda mode: DCMTKStorescp(workDirectory, mode)),
                    (windowed, lambda mode: DicomdStorescp(workDirectory, mode, checkout, env)),
                ],
                corpora,
                options.modes,
                options,
                statsPath,
            )
    except BenchmarkError as e:
        sys.stderr.write("benchmark failed: %s\n" % (e,))
        return 1
    finally:
        shutil.rmtree(workDirectory, ignore_errors=True)
    import twisted

    print()
    print(
        "%s; %s, Python %s, Twisted %s, %s, %d CPUs (%s), load average %.1f"
        % (
            dcmtkVersion(),
            platform.node(),
            platform.python_version(),
            twisted.__version__,
            platform.machine(),
            os.cpu_count(),
            processorModel(),
            os.getloadavg()[0],
        )
    )
    printTable("1. dicomd storescu vs DCMTK storescu, both -> DCMTK storescp", same, options.repeats)
    if pipelined:
        printTable(
            "2. dicomd storescu --async-ops %d -> dicomd storescp vs DCMTK storescu -> DCMTK storescp" % (WINDOW,),
            pipelined,
            options.repeats,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
