"""
Benchmark: sending the benchmark corpus with C{dicomd storescu} and with
DCMTK's C{storescu}, to the same DCMTK C{storescp}, in one run.

The corpus is L{bench.corpus}'s (2,000 images of 256x256x16 bit, 500 of
512x512x16 bit, 2 multi-frame objects of 256 MB); it is made first if
missing.  One C{/usr/bin/storescp --ignore} receives everything: it reads
and decodes every PDU and answers every C-STORE, but writes nothing, so
neither the disk nor the page cache of what was written decides the
result, and both clients face exactly the same receiver.  Every DCMTK
program runs with C{TCP_NODELAY=1} (without it DCMTK leaves Nagle's
algorithm on and each C-STORE waits for a delayed ACK); dicomd sets
C{TCP_NODELAY} itself.

Each corpus is sent as a directory (C{+sd DIR}) by one process of each
client, one association each, alternating, C{--repeats} times; the best
figure of each counts.  Two figures per run:

  - end to end: the client process's wall-clock time, from start to exit,
    start-up and reading the files' headers included;
  - on the wire: the association's time as the receiver saw it, from
    "Association Received" to "Association Release" in storescp's log
    (microsecond timestamps through a log4cplus configuration).

Also shown: the client's CPU time (user + system) and peak RSS (the
largest of the runs), from GNU time.  dicomd runs from this checkout (or
C{--dicomd CHECKOUT}, to compare versions) with this interpreter, with its
byte code cached (C{PYTHONPYCACHEPREFIX}) as an installed dicomd's would
be; a first, unmeasured run warms that cache.

Run from the checkout:

    python bench/send.py [--corpus DIR] [--repeats 3] [--only ct256 ...]

This is not a test: it asserts nothing but that every file arrived.
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bench.common import DCMTK, HOST, BenchmarkError, ServerProcess, dcmtkEnvironment, freePort, pythonEnvironment  # noqa: E402
from bench.corpus import CORPORA, ensureCorpus  # noqa: E402

TIME = "/usr/bin/time"

#: A log4cplus configuration for storescp: INFO and above on standard
#: error, each line with a microsecond timestamp.
LOGGER_CONFIGURATION = """\
log4cplus.rootLogger = INFO, console
log4cplus.appender.console = log4cplus::ConsoleAppender
log4cplus.appender.console.logToStdErr = true
log4cplus.appender.console.layout = log4cplus::PatternLayout
log4cplus.appender.console.layout.ConversionPattern = %D{%Y-%m-%d %H:%M:%S.%Q} %p: %m%n
"""

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3})\.(\d{3}) \w+: (.*)$")


class Storescp(ServerProcess):
    """
    DCMTK's storescp C{--ignore}, logging with timestamps into a file.
    """

    def __init__(self, directory: str):
        port = freePort()
        configuration = os.path.join(directory, "logger.cfg")
        with open(configuration, "w") as f:
            f.write(LOGGER_CONFIGURATION)
        super().__init__(
            "storescp",
            [DCMTK + "/storescp", "--ignore", "-lc", configuration, str(port)],
            dcmtkEnvironment(),
            directory,
            port,
            os.path.join(directory, "storescp.log"),
            startTimeout=20.0,
            stderrOnly=True,
        )

    def logSize(self) -> int:
        return os.path.getsize(self.logPath)

    def associationsSince(self, offset: int, timeout: float = 10.0) -> list:
        """
        The associations logged after byte C{offset} of the log, once the
        last one is released: C{(seconds, stores)} for each, from
        "Association Received" to "Association Release".
        """
        deadline = time.monotonic() + timeout
        while True:
            with open(self.logPath, "rb") as f:
                f.seek(offset)
                lines = f.read().decode("utf-8", "replace").splitlines()
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
            if associations and start is None:
                return associations
            if time.monotonic() > deadline:
                raise BenchmarkError("storescp logged no released association:\n" + "\n".join(lines[-20:]))
            time.sleep(0.02)


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
    def best(cls, runs):
        """
        The best of several runs, figure by figure (the largest RSS).
        """
        return cls(
            min(run.wall for run in runs),
            min(run.wire for run in runs),
            min(run.cpu for run in runs),
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

    def send(self, storescp: Storescp, directory: str, expected: int, statsPath: str) -> Run:
        offset = storescp.logSize()
        argv = self.argv + ["+sd", HOST, str(storescp.port), directory]
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
        associations = storescp.associationsSince(offset)
        stores = sum(count for _, count in associations)
        if stores != expected:
            raise BenchmarkError("%s: storescp received %d C-STOREs, not %d" % (self.name, stores, expected))
        return Run(wall, sum(seconds for seconds, _ in associations), float(user) + float(system), int(maxRSS) * 1024)


def clients(checkout: str, workDirectory: str):
    """
    DCMTK's storescu and C{dicomd storescu} from C{checkout}, both run in
    C{workDirectory} (C{python -m} would import dicomd from the current
    directory first).
    """
    cacheDirectory = os.path.join(workDirectory, "pycache")
    dicomdEnv = pythonEnvironment(checkout)
    dicomdEnv["PYTHONPYCACHEPREFIX"] = cacheDirectory
    dicomdEnv.pop("PYTHONDONTWRITEBYTECODE", None)
    return [
        Client("DCMTK storescu", [DCMTK + "/storescu"], dcmtkEnvironment(), workDirectory),
        Client("dicomd storescu", [sys.executable, "-m", "dicomd", "storescu"], dicomdEnv, workDirectory),
    ]


def directorySize(paths) -> int:
    return sum(os.path.getsize(path) for path in paths)


def dcmtkVersion() -> str:
    result = subprocess.run([DCMTK + "/storescu", "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        if "dcmtk" in line:
            return line.strip().strip("$").strip()
    return "DCMTK (unknown version)"


def printTable(results, repeats: int) -> None:
    import twisted

    print()
    print("dicomd storescu vs DCMTK storescu -> DCMTK storescp --ignore on %s, best of %d runs" % (HOST, repeats))
    print("  %s; Python %s, Twisted %s, %s, %d CPUs" % (dcmtkVersion(), platform.python_version(), twisted.__version__, platform.machine(), os.cpu_count()))
    print()
    header = "%-11s %-16s %8s %9s %8s | %8s %9s %8s | %6s %8s" % (
        "corpus", "client", "wall s", "images/s", "MB/s", "wire s", "images/s", "MB/s", "CPU s", "peak RSS"
    )
    print("%-28s %-28s | %-28s |" % ("", "end to end (process)", "on the wire (association)"))
    print(header)
    print("-" * len(header))
    for corpus, size, runs in results:
        for name, run in runs:
            print(
                "%-11s %-16s %8.3f %9.1f %8.1f | %8.3f %9.1f %8.1f | %6.2f %6.0f MB"
                % (
                    corpus.name,
                    name,
                    run.wall,
                    corpus.count / run.wall,
                    size / 1e6 / run.wall,
                    run.wire,
                    corpus.count / run.wire,
                    size / 1e6 / run.wire,
                    run.cpu,
                    run.maxRSS / 1e6,
                )
            )
        (_, dcmtk), (_, dicomd) = runs
        print(
            "%-11s %-16s %8s %9s %8.2f | %8s %9s %8.2f |"
            % (corpus.name, "ratio dicomd/DCMTK", "", "", dcmtk.wall / dicomd.wall, "", "", dcmtk.wire / dicomd.wire)
        )
        print()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--corpus",
        default=os.path.join(tempfile.gettempdir(), "dicomd-bench-corpus"),
        help="where the corpus is (made if missing; default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per client and corpus; the best counts (default: 3)")
    parser.add_argument("--only", nargs="+", choices=[corpus.name for corpus in CORPORA], help="corpora to send (default: all)")
    parser.add_argument(
        "--dicomd",
        default=REPO_ROOT,
        help="the dicomd checkout to run, for before/after comparisons (default: this one, %(default)s)",
    )
    options = parser.parse_args(argv)
    options.corpus = os.path.abspath(options.corpus)
    for tool in ("storescp", "storescu"):
        if not os.access(os.path.join(DCMTK, tool), os.X_OK):
            sys.stderr.write("DCMTK's %s is missing from %s: apt-get install dcmtk\n" % (tool, DCMTK))
            return 2
    if not os.access(TIME, os.X_OK):
        sys.stderr.write("GNU time is missing from %s: apt-get install time\n" % (TIME,))
        return 2
    corpora = [corpus for corpus in ensureCorpus(options.corpus, log=sys.stderr.write) if not options.only or corpus.name in options.only]
    workDirectory = tempfile.mkdtemp(prefix="dicomd-bench-send-")
    storescp = Storescp(workDirectory)
    try:
        senders = clients(os.path.abspath(options.dicomd), workDirectory)
        statsPath = os.path.join(workDirectory, "time")
        senders[1].send(storescp, corpora[0].directory(options.corpus), corpora[0].count, statsPath)
        results = []
        for corpus in corpora:
            runs = {client.name: [] for client in senders}
            for attempt in range(options.repeats):
                for client in senders:
                    sys.stderr.write("%s: %s, run %d...\n" % (corpus.name, client.name, attempt + 1))
                    runs[client.name].append(client.send(storescp, corpus.directory(options.corpus), corpus.count, statsPath))
            size = directorySize(corpus.paths(options.corpus))
            results.append((corpus, size, [(client.name, Run.best(runs[client.name])) for client in senders]))
        printTable(results, options.repeats)
    except BenchmarkError as e:
        sys.stderr.write("benchmark failed: %s\n" % (e,))
        return 1
    finally:
        storescp.stop()
        shutil.rmtree(workDirectory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
