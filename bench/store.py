"""
Benchmark: C-STORE from DCMTK's storescu to dicomd, DCMTK and pynetdicom.

Sends the same corpus (L{bench.corpus}: 2,000 images of 256x256x16 bit,
500 of 512x512x16 bit, 2 multi-frame objects of 256 MB) with DCMTK's
C{/usr/bin/storescu}, one association per corpus, to three receivers in the
same run:

  - C{dicomd storescp} from this checkout, with its defaults;
  - DCMTK's C{/usr/bin/storescp} with its defaults ("default mode": not
    bit-preserving, so it builds each data set in memory, then writes it);
  - pynetdicom's storescp (C{python -m pynetdicom storescp}), which decodes
    each data set with pydicom and saves it.

Every receiver writes to a fresh output directory on the same file system
(C{--output}), and none of them fsyncs (not the default of any of them).
Each measurement starts a fresh receiver, so that its peak RSS (C{VmHWM}
from C{/proc/PID/status}) belongs to that corpus alone; the time is the
wall-clock time of the storescu process, from its start to its exit, which
includes its own reading of the files (the same for every receiver).  After
each run the stored files are counted: a run that stored fewer objects
than it sent fails the benchmark.

DCMTK's programs run with C{TCP_NODELAY=1} in their environment: without it
DCMTK leaves Nagle's algorithm on.  A last table sends part of the small
image corpus with storescu I{as shipped} (no C{TCP_NODELAY}): a receiver
that acknowledges promptly stays fast, one that relies on delayed ACKs
falls to about 20 images/s.

Run from the checkout:

    python bench/store.py [--corpus DIR] [--output DIR] [--repeats 3]
                          [--corpora ct256,ct512,multiframe]
                          [--servers dicomd,dcmtk,pynetdicom]
                          [--nagle-count 200] [--dicomd-option=-pdu ...]

The corpus is made (once, with L{bench.corpus.ensureCorpus}) in C{--corpus}
if it is not complete there.  This is not a test: it asserts nothing but
that every object sent was stored.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench.common import DCMTK, HOST, BenchmarkError, ServerProcess, cpuSeconds, dcmtkEnvironment, freePort, procStatus, pythonEnvironment  # noqa: E402
from bench.corpus import CORPORA, ensureCorpus  # noqa: E402

MB = 1e6


def countStored(directory: str) -> int:
    """
    The files under C{directory}, leaving out hidden ones (a temporary
    file of dicomd's, where O_TMPFILE is missing, is hidden).
    """
    count = 0
    for root, dirs, files in os.walk(directory):
        count += sum(1 for name in files if not name.startswith("."))
    return count


@dataclass
class Receiver:
    """
    How to start one of the receivers.

    @ivar key: its name on the command line (C{--servers}).
    @ivar name: its name in the tables.
    """

    key: str
    name: str
    argv: object
    env: dict

    def start(self, output: str, logPath: str) -> ServerProcess:
        port = freePort()
        return ServerProcess(self.name, self.argv(output, port), self.env, output, port, logPath)


def receivers(options) -> List[Receiver]:
    python = sys.executable
    dicomdOptions = list(options.dicomdOptions)
    every = [
        Receiver(
            "dicomd",
            "dicomd storescp",
            lambda output, port: [python, "-m", "dicomd", "storescp"] + dicomdOptions + ["-od", output, str(port)],
            pythonEnvironment(),
        ),
        Receiver(
            "dcmtk",
            "DCMTK storescp",
            lambda output, port: [DCMTK + "/storescp", "-od", output, str(port)],
            dcmtkEnvironment(),
        ),
        Receiver(
            "pynetdicom",
            "pynetdicom storescp",
            lambda output, port: [python, "-m", "pynetdicom", "storescp", "-od", output, str(port)],
            pythonEnvironment(),
        ),
    ]
    if options.otherDicomd:
        # Another checkout of dicomd (the code before a change, say), run
        # the same way, for before/after figures from one run.
        other = os.path.abspath(options.otherDicomd)
        every.append(
            Receiver(
                "other",
                "dicomd (%s)" % (os.path.basename(other.rstrip(os.sep)) or other,),
                lambda output, port: [python, "-m", "dicomd", "storescp", "-od", output, str(port)],
                pythonEnvironment(other),
            )
        )
        options.servers.append("other")
    return [r for r in every if r.key in options.servers]


@dataclass
class Run:
    """
    One storescu run against one fresh receiver.
    """

    seconds: float
    objects: int
    bytes: int
    startRSS: int
    peakRSS: int
    cpu: float

    @property
    def perSecond(self) -> float:
        return self.objects / self.seconds

    @property
    def megabytesPerSecond(self) -> float:
        return self.bytes / MB / self.seconds


def storeOnce(receiver: Receiver, paths: List[str], work: str, nodelay: bool, timeout: float) -> Run:
    """
    Start C{receiver}, send C{paths} with storescu on one association, stop
    the receiver, and check that every object was stored.
    """
    output = tempfile.mkdtemp(prefix=receiver.key + "-", dir=work)
    running = receiver.start(output, os.path.join(work, receiver.key + ".log"))
    try:
        pid = running.process.pid
        # Start every run with no dirty pages left from the one before, so
        # that one receiver's writeback does not slow the next one down.
        os.sync()
        time.sleep(0.2)
        startRSS = procStatus(pid)["VmRSS"]
        startCPU = cpuSeconds(pid)
        argv = [DCMTK + "/storescu", "-aec", "STORESCP", HOST, str(running.port)] + paths
        begin = time.perf_counter()
        result = subprocess.run(
            argv, env=dcmtkEnvironment(nodelay), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
        )
        seconds = time.perf_counter() - begin
        status = procStatus(pid)
        cpu = cpuSeconds(pid) - startCPU
        if result.returncode != 0:
            raise BenchmarkError(
                "storescu to %s failed (%d):\n%s\n--- receiver log ---\n%s"
                % (receiver.name, result.returncode, result.stdout.decode("utf-8", "replace")[-4000:], running.logText())
            )
    finally:
        running.stop()
    stored = countStored(output)
    shutil.rmtree(output, ignore_errors=True)
    if stored != len(paths):
        raise BenchmarkError(
            "%s stored %d of %d objects:\n%s" % (receiver.name, stored, len(paths), running.logText())
        )
    return Run(seconds, len(paths), sum(os.path.getsize(p) for p in paths), startRSS, status["VmHWM"], cpu)


@dataclass
class Result:
    """
    The best of several runs (by time), and the highest peak RSS of them.
    """

    runs: List[Run] = field(default_factory=list)

    @property
    def best(self) -> Run:
        return min(self.runs, key=lambda run: run.seconds)

    @property
    def median(self) -> float:
        """
        The median rate, in objects per second.
        """
        rates = sorted(run.perSecond for run in self.runs)
        middle = len(rates) // 2
        return rates[middle] if len(rates) % 2 else (rates[middle - 1] + rates[middle]) / 2

    @property
    def peakRSS(self) -> int:
        return max(run.peakRSS for run in self.runs)

    @property
    def growth(self) -> int:
        return max(run.peakRSS - run.startRSS for run in self.runs)


def measure(receivers, paths, work, nodelay, repeats, timeout, label) -> Dict[str, Result]:
    """
    Run every receiver C{repeats[receiver.key]} times, taking turns, so
    that a machine (or a disk) that is slower for a while slows all of
    them alike.
    """
    results = {receiver.name: Result() for receiver in receivers}
    for attempt in range(max(repeats.values())):
        for receiver in receivers:
            if attempt >= repeats[receiver.key]:
                continue
            sys.stderr.write("%s -> %s, run %d of %d... " % (label, receiver.name, attempt + 1, repeats[receiver.key]))
            sys.stderr.flush()
            run = storeOnce(receiver, paths, work, nodelay, timeout)
            sys.stderr.write("%.2f s, %.0f objects/s, peak RSS %.0f MB\n" % (run.seconds, run.perSecond, run.peakRSS / MB))
            results[receiver.name].runs.append(run)
    return results


def dcmtkVersion() -> str:
    result = subprocess.run([DCMTK + "/storescu", "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        if "dcmtk" in line.lower():
            return line.strip().strip("$").strip()
    return "DCMTK (unknown version)"


def printTable(title: str, rows, names: List[str]) -> None:
    """
    C{rows}: (label, {receiver name: Result}).
    """
    print()
    print(title)
    header = "%-34s %-20s %10s %9s %9s %9s %10s %7s %9s" % (
        "corpus", "receiver", "objects/s", "(median)", "MB/s", "peak RSS", "RSS growth", "CPU s", "dicomd/x"
    )
    print(header)
    print("-" * len(header))
    for label, results in rows:
        dicomd = results.get("dicomd storescp")
        for name in names:
            result = results.get(name)
            if result is None:
                continue
            best = result.best
            ratio = ""
            if dicomd is not None and name != "dicomd storescp":
                ratio = "%.2fx" % (dicomd.best.perSecond / best.perSecond,)
            print(
                "%-34s %-20s %10.1f %9.1f %9.1f %8.0fM %9.0fM %7.1f %9s"
                % (label, name, best.perSecond, result.median, best.megabytesPerSecond, result.peakRSS / MB, result.growth / MB, best.cpu, ratio)
            )
            label = ""
    print()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--corpus",
        default=os.environ.get("DICOMD_BENCH_CORPUS") or os.path.join(tempfile.gettempdir(), "dicomd-bench-corpus"),
        help="where the corpus is (made there if missing; default: $DICOMD_BENCH_CORPUS or TMPDIR/dicomd-bench-corpus)",
    )
    parser.add_argument("--output", default=None, help="where the receivers write (default: a new temporary directory)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per receiver and corpus; the fastest counts (default: 3)")
    parser.add_argument("--pynetdicom-repeats", dest="pynetdicomRepeats", type=int, default=1, help="runs for pynetdicom (default: 1)")
    parser.add_argument("--corpora", default=",".join(c.name for c in CORPORA), help="which corpora (default: all)")
    parser.add_argument("--servers", default="dicomd,dcmtk,pynetdicom", help="which receivers (default: all three)")
    parser.add_argument(
        "--nagle-count", dest="nagleCount", type=int, default=200,
        help="images of ct256 sent by storescu without TCP_NODELAY (0: skip; default: 200)",
    )
    parser.add_argument(
        "--dicomd-option", dest="dicomdOptions", action="append", default=[],
        help="an extra option for dicomd storescp (repeatable; write --dicomd-option=-pdu --dicomd-option=16384)",
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a storescu run is killed")
    parser.add_argument(
        "--other-dicomd", dest="otherDicomd", default=None,
        help="also run dicomd storescp from this other checkout (e.g. the previous commit, for before/after figures)",
    )
    options = parser.parse_args(argv)
    options.servers = options.servers.split(",")
    for tool in ("storescp", "storescu"):
        if not os.access(os.path.join(DCMTK, tool), os.X_OK):
            sys.stderr.write("DCMTK's %s is missing from %s: apt-get install dcmtk\n" % (tool, DCMTK))
            return 2
    wanted = options.corpora.split(",")
    corpora = [c for c in ensureCorpus(options.corpus, log=lambda line: sys.stderr.write(line + "\n")) if c.name in wanted]
    work = tempfile.mkdtemp(prefix="dicomd-bench-store-", dir=options.output)
    chosen = receivers(options)
    names = [r.name for r in chosen]
    try:
        rows = []
        for corpus in corpora:
            paths = corpus.paths(options.corpus)
            size = sum(os.path.getsize(p) for p in paths)
            label = "%s: %d x %.0f KB" % (corpus.name, corpus.count, size / corpus.count / 1e3)
            repeats = {r.key: options.pynetdicomRepeats if r.key == "pynetdicom" else options.repeats for r in chosen}
            results = measure(chosen, paths, work, True, repeats, options.timeout, corpus.name)
            rows.append((label, results))
        nagleRows = []
        if options.nagleCount:
            ct256 = [c for c in CORPORA if c.name == "ct256"][0]
            paths = ct256.paths(options.corpus)[: options.nagleCount]
            shipped = [r for r in chosen if r.key != "pynetdicom"]
            results = measure(shipped, paths, work, False, {r.key: 1 for r in shipped}, options.timeout, "ct256 without TCP_NODELAY")
            nagleRows.append(("ct256 first %d, storescu as shipped" % len(paths), results))
    except BenchmarkError as e:
        sys.stderr.write("benchmark failed: %s\n" % (e,))
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    import twisted

    print()
    print("C-STORE from DCMTK storescu (one association per corpus) on %s" % (HOST,))
    print(
        "  %s; dicomd from %s; Python %s, Twisted %s, %s, %d CPUs; no fsync"
        % (dcmtkVersion(), REPO_ROOT, platform.python_version(), twisted.__version__, platform.machine(), os.cpu_count())
    )
    print("  dicomd options: %s" % (" ".join(options.dicomdOptions) or "(defaults)",))
    printTable(
        "storescu with TCP_NODELAY=1, best of %d runs taking turns (pynetdicom: %d); dicomd/x = ratio of the best objects/s"
        % (options.repeats, options.pynetdicomRepeats),
        rows,
        names,
    )
    if nagleRows:
        printTable("storescu as shipped (no TCP_NODELAY: Nagle's algorithm on), one run", nagleRows, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
