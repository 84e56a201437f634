"""
Benchmark: C-STORE from DCMTK's storescu to dicomd, DCMTK, Orthanc and
pynetdicom.

Sends the same corpus (L{bench.corpus}: 2,000 images of 256x256x16 bit,
500 of 512x512x16 bit, 2 multi-frame objects of 256 MB) with DCMTK's
C{/usr/bin/storescu}, one association per corpus, to these receivers in
the same run (C{--servers}):

  - C{dicomd}: C{dicomd storescp} from this checkout, with its defaults;
  - C{daemon}: C{twistd -n dicomd} from this checkout, which also
    indexes every object (SQLite) and tracks the end of each study;
    C{daemon-workers}: the same with C{--workers} one per CPU (worker
    processes serving the associations, L{dicomd.workers});
    C{dicomd-fork}: C{dicomd storescp --fork}, likewise;
  - C{dcmtk}: DCMTK's C{/usr/bin/storescp} with its defaults ("default
    mode": not bit-preserving, so it builds each data set in memory,
    then writes it); C{dcmtk-bp}: the same with C{+B} (bit preserving,
    which streams to the file); C{dcmtk-fork}: the same with C{--fork}
    (a process per association);
  - C{orthanc}: Orthanc (Debian's C{/usr/sbin/Orthanc}), run with a
    throw-away configuration: its storage in the output directory, its
    SQLite index in the scratch directory;
  - C{pynetdicom}: pynetdicom's storescp (C{python -m pynetdicom
    storescp}), which decodes each data set with pydicom and saves it.

With C{--senders 8,32}, a second table sends with that many storescu
processes at once, each its own study of 100 images of 256x256
(L{bench.corpus.SENDERS}), timed from the start of the first to the exit
of the last, with C{storescp --fork} as DCMTK's reference.

Every table is run once per output directory (C{--outputs}, default
C{/var/tmp} and C{/dev/shm}): on disk, then on tmpfs, where the disk is
out of the way and the receiver's own overhead shows.  Receivers take
turns, run by run, each turn starting one receiver further down the
list, so that a machine or disk that is slower for a while slows all of
them alike and none always follows the same one; the tables give the
median of the runs (C{--repeats}, default 5), DCMTK's absolute rate
beside each ratio.
None of them fsyncs (not the default of any of them).

C{--nice N} runs every receiver, DCMTK's and Orthanc's alike, under
C{nice -n N} (below 0 as root only), as a gateway whose senders share its
machine might run its receiving service: the one reactor thread that
serves every association competes for the CPU with each local storescu
as an equal, where C{storescp --fork} has a process per association.

Each measurement starts a fresh receiver, so that its peak RSS (C{VmHWM}
from C{/proc/PID/status}, the parent's alone for C{--fork}) belongs to
that run alone; the time is the wall-clock time of storescu, from its
start to its exit, which includes its own reading of the files (the same
for every receiver).  The CPU column is the receiver's CPU time during
the run, that of its worker or forked processes included.  After each
run the stored files are counted: a run that stored fewer objects than
it sent fails the benchmark.

DCMTK's programs run with C{TCP_NODELAY=1} in their environment: without it
DCMTK leaves Nagle's algorithm on.  A last table sends part of the small
image corpus with storescu I{as shipped} (no C{TCP_NODELAY}): a receiver
that acknowledges promptly stays fast, one that relies on delayed ACKs
falls to about 20 images/s.

Run from the checkout:

    python bench/store.py [--corpus DIR] [--outputs /var/tmp,/dev/shm]
                          [--repeats 5] [--corpora ct256,ct512,multiframe]
                          [--servers dicomd,daemon,dcmtk,dcmtk-bp,orthanc]
                          [--senders 8,32] [--nagle-count 200]
                          [--other-dicomd CHECKOUT] [--dicomd-option=-pdu ...]
                          [--nice N]

The corpus is made (once, with L{bench.corpus.ensureCorpus}) in C{--corpus}
if it is not complete there.  This is not a test: it asserts nothing but
that every object sent was stored.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench.common import DCMTK, HOST, BenchmarkError, ServerProcess, dcmtkEnvironment, freePort, inTurn, processorModel, procStatus, pythonEnvironment, treeCPUSeconds, WORKERS_READY  # noqa: E402
from bench.corpus import CORPORA, ensureCorpus, ensureSendersCorpus  # noqa: E402

MB = 1e6
ORTHANC = "/usr/sbin/Orthanc"

#: The names of the receivers in the tables, by their key.
NAMES = {
    "dicomd": "dicomd storescp",
    "daemon": "twistd dicomd",
    "daemon-workers": "twistd dicomd --workers %d" % (os.cpu_count() or 1,),
    "dicomd-fork": "dicomd storescp --fork",
    "dcmtk": "DCMTK storescp",
    "dcmtk-bp": "storescp +B",
    "dcmtk-fork": "storescp --fork",
    "orthanc": "Orthanc",
    "pynetdicom": "pynetdicom storescp",
}


#: What the log of dicomd with worker processes shows once they all serve.
WORKERS_SERVING = (WORKERS_READY, os.cpu_count() or 1)


def countStored(directory: str) -> int:
    """
    The files under C{directory}, leaving out hidden ones (a temporary
    file of dicomd's where O_TMPFILE is missing, and the daemon's index,
    are hidden).
    """
    count = 0
    for root, dirs, files in os.walk(directory):
        count += sum(1 for name in files if not name.startswith("."))
    return count


def fileSystemOf(path: str) -> str:
    """
    The type of the file system C{path} is on (C{ext4}, C{tmpfs}...),
    from the longest mount point of C{/proc/mounts} above it.
    """
    path = os.path.realpath(path)
    best, kind = "", "?"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[1]
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, kind = point, fields[2]
    return kind


@dataclass
class Receiver:
    """
    How to start one of the receivers.

    @ivar key: its name on the command line (C{--servers}).
    @ivar name: its name in the tables.
    @ivar argv: C{(output, port, scratch) -> argv}: store into C{output},
        listen on C{port}, keep anything else in C{scratch}.
    @ivar ready: how many lines its log has once it serves, beyond
        accepting connections (worker processes adopt the port the
        coordinator listens on): C{(pattern, count)}, or C{None}.
    """

    key: str
    name: str
    argv: Callable
    env: dict
    ready: Optional[tuple] = None

    def start(self, output: str, scratch: str, logPath: str) -> ServerProcess:
        port = freePort()
        running = ServerProcess(self.name, self.argv(output, port, scratch), self.env, scratch, port, logPath)
        if self.ready is not None:
            running.waitForLog(*self.ready)
        return running


def orthancArgv(output: str, port: int, scratch: str) -> List[str]:
    """
    Orthanc with a throw-away configuration: DICOM on C{port} of
    127.0.0.1 only, HTTP on another free port, files in C{output}, its
    SQLite index in C{scratch}, any calling and called AE title.
    """
    config = {
        "Name": "bench",
        "StorageDirectory": output,
        "IndexDirectory": os.path.join(scratch, "orthanc-index"),
        "DicomAet": "STORESCP",
        "DicomPort": port,
        "DicomCheckCalledAet": False,
        "HttpPort": freePort(),
        "RemoteAccessAllowed": False,
        "Plugins": [],
        "StorageCompression": False,
    }
    path = os.path.join(scratch, "orthanc.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return [ORTHANC, path]


def receivers(options) -> List[Receiver]:
    python = sys.executable
    twistd = os.path.join(os.path.dirname(python), "twistd")
    dicomdOptions = list(options.dicomdOptions)
    storescp = DCMTK + "/storescp"
    every = [
        Receiver(
            "dicomd",
            NAMES["dicomd"],
            lambda output, port, scratch: [python, "-m", "dicomd", "storescp"] + dicomdOptions + ["-od", output, str(port)],
            pythonEnvironment(),
        ),
        Receiver(
            "daemon",
            NAMES["daemon"],
            lambda output, port, scratch: [
                twistd, "-n", "--pidfile=", "dicomd", "-o", output, "--listen", "tcp:%d:interface=%s" % (port, HOST),
                "--state-directory", os.path.join(scratch, "state"),
            ],
            pythonEnvironment(),
        ),
        Receiver(
            "daemon-workers",
            NAMES["daemon-workers"],
            lambda output, port, scratch: [
                twistd, "-n", "--pidfile=", "dicomd", "-o", output, "--listen", "tcp:%d:interface=%s" % (port, HOST),
                "--state-directory", os.path.join(scratch, "state"), "--workers", str(os.cpu_count() or 1),
            ],
            pythonEnvironment(),
            WORKERS_SERVING,
        ),
        Receiver(
            "dicomd-fork",
            NAMES["dicomd-fork"],
            lambda output, port, scratch: [python, "-m", "dicomd", "storescp", "-v", "--fork"] + dicomdOptions + ["-od", output, str(port)],
            pythonEnvironment(),
            WORKERS_SERVING,
        ),
        Receiver("dcmtk", NAMES["dcmtk"], lambda output, port, scratch: [storescp, "-od", output, str(port)], dcmtkEnvironment()),
        Receiver("dcmtk-bp", NAMES["dcmtk-bp"], lambda output, port, scratch: [storescp, "+B", "-od", output, str(port)], dcmtkEnvironment()),
        Receiver(
            "dcmtk-fork", NAMES["dcmtk-fork"], lambda output, port, scratch: [storescp, "--fork", "-od", output, str(port)], dcmtkEnvironment()
        ),
        # Orthanc is built on DCMTK, which reads TCP_NODELAY too.
        Receiver("orthanc", NAMES["orthanc"], orthancArgv, dcmtkEnvironment()),
        Receiver(
            "pynetdicom",
            NAMES["pynetdicom"],
            lambda output, port, scratch: [python, "-m", "pynetdicom", "storescp", "-od", output, str(port)],
            pythonEnvironment(),
        ),
    ]
    if options.otherDicomd:
        # Another checkout of dicomd (the code before a change, say), run
        # the same way, for before/after figures from one run: its
        # storescp as "other", its daemon as "other-daemon".
        other = os.path.abspath(options.otherDicomd)
        label = os.path.basename(other.rstrip(os.sep)) or other
        every.append(
            Receiver(
                "other",
                "storescp (%s)" % (label,),
                lambda output, port, scratch: [python, "-m", "dicomd", "storescp", "-od", output, str(port)],
                pythonEnvironment(other),
            )
        )
        every.append(
            Receiver(
                "other-daemon",
                "daemon (%s)" % (label,),
                lambda output, port, scratch: [
                    twistd, "-n", "--pidfile=", "dicomd", "-o", output, "--listen", "tcp:%d:interface=%s" % (port, HOST),
                    "--state-directory", os.path.join(scratch, "state"),
                ],
                pythonEnvironment(other),
            )
        )
        if not any(key.startswith("other") for key in options.servers):
            options.servers.append("other")
    if options.nice:
        every = [replace(r, argv=niced(r.argv, options.nice)) for r in every]
    return [r for r in every if r.key in options.servers]


def niced(argv: Callable, niceness: int) -> Callable:
    """
    A L{Receiver}'s C{argv} run under C{nice -n niceness}: nice becomes
    the receiver (it executes it in its own process), so that the PID
    whose RSS and CPU are measured is still the receiver's.
    """
    return lambda output, port, scratch: ["nice", "-n", str(niceness)] + argv(output, port, scratch)


@dataclass
class Run:
    """
    One run (of one or several storescu) against one fresh receiver.
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


def storeOnce(receiver: Receiver, batches: Sequence[List[str]], work: str, output: str, nodelay: bool, timeout: float) -> Run:
    """
    Start C{receiver} with a fresh directory under C{output}, send each
    batch of C{batches} with its own storescu (on one association), all
    at once, stop the receiver, and check that every object was stored.
    """
    into = tempfile.mkdtemp(prefix=receiver.key + "-", dir=output)
    scratch = tempfile.mkdtemp(prefix=receiver.key + "-", dir=work)
    running = receiver.start(into, scratch, os.path.join(work, receiver.key + ".log"))
    paths = [path for batch in batches for path in batch]
    try:
        pid = running.process.pid
        # Start every run with no dirty pages left from the one before, so
        # that one receiver's writeback does not slow the next one down.
        os.sync()
        time.sleep(0.2)
        startRSS = procStatus(pid)["VmRSS"]
        startCPU = treeCPUSeconds(pid)
        begin = time.perf_counter()
        senders = [
            subprocess.Popen(
                [DCMTK + "/storescu", "-aec", "STORESCP", HOST, str(running.port)] + batch,
                env=dcmtkEnvironment(nodelay),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for batch in batches
        ]
        outputs = [sender.communicate(timeout=timeout)[0] for sender in senders]
        seconds = time.perf_counter() - begin
        status = procStatus(pid)
        cpu = treeCPUSeconds(pid) - startCPU
        for sender, out in zip(senders, outputs):
            if sender.returncode != 0:
                raise BenchmarkError(
                    "storescu to %s failed (%d):\n%s\n--- receiver log ---\n%s"
                    % (receiver.name, sender.returncode, out.decode("utf-8", "replace")[-4000:], running.logText())
                )
    finally:
        running.stop()
    stored = countStored(into)
    shutil.rmtree(into, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    if stored != len(paths):
        raise BenchmarkError("%s stored %d of %d objects:\n%s" % (receiver.name, stored, len(paths), running.logText()))
    return Run(seconds, len(paths), sum(os.path.getsize(p) for p in paths), startRSS, status["VmHWM"], cpu)


@dataclass
class Result:
    """
    The runs of one receiver on one corpus: their median, and the highest
    peak RSS of them.
    """

    runs: List[Run] = field(default_factory=list)

    @property
    def median(self) -> float:
        """
        The median rate, in objects per second.
        """
        return statistics.median(run.perSecond for run in self.runs)

    @property
    def medianMegabytes(self) -> float:
        return statistics.median(run.megabytesPerSecond for run in self.runs)

    @property
    def medianCPU(self) -> float:
        return statistics.median(run.cpu for run in self.runs)

    @property
    def spread(self) -> str:
        """
        The slowest and fastest rates, to show how much runs varied.
        """
        rates = [run.perSecond for run in self.runs]
        return "%.0f-%.0f" % (min(rates), max(rates))

    @property
    def peakRSS(self) -> int:
        return max(run.peakRSS for run in self.runs)

    @property
    def growth(self) -> int:
        return max(run.peakRSS - run.startRSS for run in self.runs)


def measure(receivers, batches, work, output, nodelay, repeats, timeout, label) -> Dict[str, Result]:
    """
    Run every receiver C{repeats[receiver.key]} times, taking turns, so
    that a machine (or a disk) that is slower for a while slows all of
    them alike; each turn starts one receiver further down the list, so
    that none always follows the same one (on a disk, the deletion of the
    files the one before stored).
    """
    results = {receiver.name: Result() for receiver in receivers}
    for attempt in range(max(repeats.values())):
        for receiver in inTurn(receivers, attempt):
            if attempt >= repeats[receiver.key]:
                continue
            sys.stderr.write("%s -> %s, run %d of %d... " % (label, receiver.name, attempt + 1, repeats[receiver.key]))
            sys.stderr.flush()
            run = storeOnce(receiver, batches, work, output, nodelay, timeout)
            sys.stderr.write("%.2f s, %.0f objects/s, peak RSS %.0f MB\n" % (run.seconds, run.perSecond, run.peakRSS / MB))
            results[receiver.name].runs.append(run)
    return results


def dcmtkVersion() -> str:
    result = subprocess.run([DCMTK + "/storescu", "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        if "dcmtk" in line.lower():
            return line.strip().strip("$").strip()
    return "DCMTK (unknown version)"


def ratio(result: Result, reference: Optional[Result]) -> str:
    if reference is None:
        return ""
    return "%.2fx" % (result.median / reference.median,)


def printTable(title: str, rows, names: List[str], references: Sequence[str]) -> None:
    """
    C{rows}: (label, {receiver name: Result}); each receiver's median
    rate is divided by that of each receiver of C{references} present.
    """
    print()
    print(title)
    shown = [name for name in references if any(name in results for _, results in rows)]
    header = "%-30s %-20s %10s %11s %8s %9s %10s %7s" % (
        "corpus", "receiver", "objects/s", "(min-max)", "MB/s", "peak RSS", "RSS growth", "CPU s"
    ) + "".join(" %15s" % ("/ " + name,) for name in shown)
    print(header)
    print("-" * len(header))
    for label, results in rows:
        for name in names:
            result = results.get(name)
            if result is None:
                continue
            print(
                "%-30s %-20s %10.1f %11s %8.1f %8.0fM %9.0fM %7.1f"
                % (label, name, result.median, result.spread, result.medianMegabytes, result.peakRSS / MB, result.growth / MB, result.medianCPU)
                + "".join(" %15s" % ("" if name == reference else ratio(result, results.get(reference)),) for reference in shown)
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
    parser.add_argument(
        "--outputs", default="/var/tmp,/dev/shm",
        help="directories the receivers write under, one set of tables each (default: /var/tmp,/dev/shm: disk, then tmpfs)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per receiver and corpus; the median counts (default: 5)")
    parser.add_argument("--pynetdicom-repeats", dest="pynetdicomRepeats", type=int, default=1, help="runs for pynetdicom (default: 1)")
    parser.add_argument("--corpora", default=",".join(c.name for c in CORPORA), help="which corpora (default: all; none: skip)")
    parser.add_argument("--servers", default="dicomd,daemon,dcmtk,dcmtk-bp", help="which receivers, of %s (default: %%(default)s)" % (", ".join(NAMES),))
    parser.add_argument("--senders", default="", help="numbers of concurrent storescu, e.g. 8,32 (default: none)")
    parser.add_argument(
        "--senders-servers", dest="sendersServers", default="dicomd,daemon,dcmtk-fork,orthanc",
        help="receivers of the many-senders table (default: %(default)s)",
    )
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
        "--nice", type=int, default=0,
        help="run every receiver under nice -n N (below 0: root only; default: 0, as started)",
    )
    parser.add_argument(
        "--other-dicomd", dest="otherDicomd", default=None,
        help="also run dicomd from this other checkout (e.g. the previous commit, for before/after figures): "
        "its storescp as receiver 'other' (the default), its daemon as 'other-daemon'",
    )
    options = parser.parse_args(argv)
    options.servers = [s for s in options.servers.split(",") if s]
    if options.nice < 0 and os.geteuid() != 0:
        # nice would only warn, and run the receivers as they are.
        parser.error("--nice: a value below 0 needs root, not uid %d" % (os.geteuid(),))
    try:
        senders = [int(n) for n in options.senders.split(",") if n]
    except ValueError:
        parser.error("--senders: numbers of storescu separated by commas, such as 8,32, not %r" % (options.senders,))
    if any(count < 1 for count in senders):
        parser.error("--senders: each number is at least 1 (leave the option out for no many-senders table)")
    sendersServers = [s for s in options.sendersServers.split(",") if s]
    for key in options.servers + (sendersServers if senders else []):
        if key not in NAMES and not (options.otherDicomd and key in ("other", "other-daemon")):
            parser.error("unknown receiver %r: choose from %s" % (key, ", ".join(NAMES)))
    for tool in ("storescp", "storescu"):
        if not os.access(os.path.join(DCMTK, tool), os.X_OK):
            sys.stderr.write("DCMTK's %s is missing from %s: apt-get install dcmtk\n" % (tool, DCMTK))
            return 2
    if "orthanc" in options.servers + (sendersServers if senders else []) and not os.access(ORTHANC, os.X_OK):
        sys.stderr.write("Orthanc is missing from %s: apt-get install orthanc\n" % (ORTHANC,))
        return 2
    if senders and max(senders) * 100 > 3200:
        parser.error("--senders: at most 32 (the senders corpus holds 32 studies of 100 images)")
    wanted = options.corpora.split(",")
    log = lambda line: sys.stderr.write(line + "\n")  # noqa: E731
    corpora = [c for c in ensureCorpus(options.corpus, log=log) if c.name in wanted]
    sendersCorpus = ensureSendersCorpus(options.corpus, log=log) if senders else None
    work = tempfile.mkdtemp(prefix="dicomd-bench-store-")
    chosen = receivers(options)
    names = [r.name for r in chosen]
    options.servers = sendersServers
    many = receivers(options) if senders else []
    outputs = []
    try:
        for root in options.outputs.split(","):
            output = tempfile.mkdtemp(prefix="dicomd-bench-store-", dir=root)
            outputs.append(output)
            where = "%s (%s)" % (root, fileSystemOf(output))
            rows = []
            for corpus in corpora:
                paths = corpus.paths(options.corpus)
                size = sum(os.path.getsize(p) for p in paths)
                label = "%s: %d x %.0f KB" % (corpus.name, corpus.count, size / corpus.count / 1e3)
                repeats = {r.key: options.pynetdicomRepeats if r.key == "pynetdicom" else options.repeats for r in chosen}
                rows.append((label, measure(chosen, [paths], work, output, True, repeats, options.timeout, corpus.name + " in " + where)))
            manyRows = []
            for count in senders:
                paths = sendersCorpus.paths(options.corpus)
                batches = [paths[100 * n : 100 * n + 100] for n in range(count)]
                label = "%d senders x 100 x 132 KB" % (count,)
                repeats = {r.key: options.repeats for r in many}
                manyRows.append((label, measure(many, batches, work, output, True, repeats, options.timeout, label + " in " + where)))
            nagleRows = []
            if options.nagleCount and root == options.outputs.split(",")[0]:
                ct256 = [c for c in CORPORA if c.name == "ct256"][0]
                paths = ct256.paths(options.corpus)[: options.nagleCount]
                shipped = [r for r in chosen if r.key != "pynetdicom"]
                results = measure(shipped, [paths], work, output, False, {r.key: 1 for r in shipped}, options.timeout, "ct256 without TCP_NODELAY")
                nagleRows.append(("ct256 first %d, as shipped" % len(paths), results))
            report(options, where, rows, names, manyRows, [r.name for r in many], nagleRows)
    except BenchmarkError as e:
        sys.stderr.write("benchmark failed: %s\n" % (e,))
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for output in outputs:
            shutil.rmtree(output, ignore_errors=True)
    return 0


def report(options, where: str, rows, names, manyRows, manyNames, nagleRows) -> None:
    """
    Print the tables of one output directory.
    """
    import twisted

    print()
    print("C-STORE from DCMTK storescu on %s, receivers writing under %s" % (HOST, where))
    print(
        "  %s; dicomd from %s; Python %s, Twisted %s, %s, %d CPUs (%s); no fsync"
        % (dcmtkVersion(), REPO_ROOT, platform.python_version(), twisted.__version__, platform.machine(), os.cpu_count(), processorModel())
    )
    print("  dicomd options: %s" % (" ".join(options.dicomdOptions) or "(defaults)",))
    if options.nice:
        print("  every receiver under nice -n %d" % (options.nice,))
    if rows:
        printTable(
            "One association per corpus, storescu with TCP_NODELAY=1: median of %d runs taking turns (pynetdicom: %d)"
            % (options.repeats, options.pynetdicomRepeats),
            rows,
            names,
            (NAMES["dcmtk"], NAMES["dcmtk-bp"]),
        )
    if manyRows:
        printTable(
            "Concurrent storescu, one association each, from the first start to the last exit: median of %d runs" % (options.repeats,),
            manyRows,
            manyNames,
            (NAMES["dcmtk-fork"], NAMES["orthanc"]),
        )
    if nagleRows:
        printTable("storescu as shipped (no TCP_NODELAY: Nagle's algorithm on), one run", nagleRows, names, (NAMES["dcmtk"],))


if __name__ == "__main__":
    sys.exit(main())
