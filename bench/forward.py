"""
Benchmark: forwarding, from a modality through dicomd to a destination.

DCMTK's C{/usr/bin/storescu} sends the C{ct256} corpus (L{bench.corpus}:
2,000 CT images of 256x256x16 bit, 132 KB each), on one association, and
DCMTK's C{/usr/bin/storescp} receives it, in three runs:

  - I{direct}: storescu sends straight to storescp;
  - I{forwarded}: storescu sends to C{twistd -n dicomd --forward
    DEST@...}, which stores each image, queues it, and forwards it to
    storescp while the next ones arrive;
  - I{backlog}: dicomd receives the whole corpus while storescp is down
    (everything waits in its queue), then storescp starts and the backlog
    drains.

Each figure is objects per second from the first send (for the backlog:
from the moment storescp listens) to the last file at the destination, so
that the forwarded run pays for its queue and its second hop.  Beside it, the
streaming rate: objects per second from the first file at the
destination to the last, by their modification times, which leaves out
how long the stream took to begin.  The target
is forwarded >= 0.8 x direct, and a backlog that drains at least as fast as
forwarding on reception.  The backlog run's dicomd retries every 0.02 s
(C{retry-max = 0.02}), which the backlog figure includes.

Beside each run, the CPU each process spent per object in its time
(storescu's, dicomd's with its worker processes, storescp's; the kernel's
share, its system time, in brackets), and after the medians what those
add up to: the most objects per second the machine's cores could carry
at that CPU with every core busy.  Where that bound is below a target,
no overlap of the three reaches it; where a run stays far below its
bound, something waits (one process's thread the others wait for).

The machine is shared and noisy, so the three are run in turn C{--runs}
times (direct, forwarded, backlog, direct, ...), and the table gives each
run, then the median of each, with the direct rate beside the ratios.
Each run starts on a disk with nothing left to write back (C{sync}), and
its files are deleted once it is measured: on a disk, the write-back of
one run's 260 MB would otherwise slow the next.  C{--output /dev/shm}
keeps every file in memory.

C{--baseline CHECKOUT} runs the forwarded and backlog runs with that
checkout's dicomd too, each beside the same run of this one, before it
in odd turns and after it in even ones (I{forwarded-base},
I{backlog-base}): the code before a change, measured beside it.
C{--workers N} adds the forwarded and backlog runs with C{twistd dicomd
--workers N}
(I{forwarded-workers}, I{backlog-workers}): N processes receive, and the
coordinator forwards; each run starts once every worker serves.
C{--async-ops N} has this checkout's dicomd propose an asynchronous
operations window of N to the destination (C{[forwarding]
async-ops}); DCMTK's storescp grants none.  C{--granting N} adds two
backlog runs drained into C{dicomd storescp}, which grants a window of up
to 16: I{backlog>dicomd} proposing none, I{backlog>dicomd-w} proposing N.

Run from the checkout:

    python bench/forward.py [--corpus DIR] [--output DIR] [--count 2000] [--runs 5] [--baseline CHECKOUT] [--workers N] [--async-ops N] [--granting N]

The corpus is made once in C{--corpus} if it is not complete there.  This
is not a test: it asserts nothing but that every object arrived.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, NamedTuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench.common import DCMTK, HOST, BenchmarkError, ServerProcess, dcmtkEnvironment, freePort, processorModel, pythonEnvironment, treeCPUSeconds, WORKERS_READY  # noqa: E402
from bench.corpus import CORPORA  # noqa: E402

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def storescp(work: str, name: str, port: int) -> ServerProcess:
    directory = os.path.join(work, name)
    os.makedirs(directory)
    server = ServerProcess(
        name, [os.path.join(DCMTK, "storescp"), "-od", directory, str(port)], dcmtkEnvironment(), work, port, directory + ".log"
    )
    server.directory = directory
    return server


def dicomdStorescp(work: str, name: str, port: int) -> ServerProcess:
    """
    C{dicomd storescp} of this checkout, which grants an asynchronous
    operations window of up to 16, as a destination.
    """
    directory = os.path.join(work, name)
    os.makedirs(directory)
    argv = [sys.executable, "-m", "dicomd", "storescp", "--max-async-ops", "16", "-od", directory, str(port)]
    server = ServerProcess(name, argv, pythonEnvironment(), work, port, directory + ".log")
    server.directory = directory
    return server


def dicomd(
    work: str, port: int, destinationPort: int, retryMax: float, checkout: str = REPO_ROOT, asyncOps: int = 1, workers: int = 1
) -> ServerProcess:
    """
    C{twistd -n dicomd} of C{checkout} forwarding everything to the
    destination on C{destinationPort}, its data and log under C{work}:
    receiving in C{workers} worker processes when more than 1.
    """
    directory = os.path.join(work, "dicomd")
    os.makedirs(directory)
    config = os.path.join(directory, "dicomd.toml")
    with open(config, "w") as f:
        f.write(
            '[forwarding]\nretry-first = %s\nretry-max = %s\n%s\n[[ae]]\ntitle = "DICOMD"\n[[ae.forward]]\nto = "DEST"\n\n'
            '[[peer]]\ntitle = "DEST"\nhost = "%s"\nport = %d\n'
            % (min(1, retryMax), retryMax, "async-ops = %d\n" % (asyncOps,) if asyncOps != 1 else "", HOST, destinationPort)
        )
    argv = TWISTD + ["-n", "--pidfile=", "dicomd", "--config", config, "--listen", "tcp:%d:interface=%s" % (port, HOST)]
    # Quiet, but where worker processes must say that they serve: the
    # coordinator's port accepts connections before they do.
    argv += ["--workers", str(workers)] if workers > 1 else ["-q"]
    server = ServerProcess("dicomd", argv, pythonEnvironment(checkout), directory, port, os.path.join(work, "dicomd.log"), startTimeout=60)
    if workers > 1:
        server.waitForLog(WORKERS_READY, workers, timeout=60)
    return server


class Measure(NamedTuple):
    """
    One measure: its seconds, its streaming rate (L{streamingRate}), and
    the CPU seconds each process spent in its time (C{storescu}, when it
    sent then, C{dicomd}, C{storescp}), the system's share (the kernel's work in
    their system calls) in C{system}.
    """

    seconds: float
    streaming: float
    cpu: Dict[str, float]
    system: Dict[str, float]


class CPUClock:
    """
    The CPU seconds of the measure's processes from its start: storescu,
    a child this script waits for, by its resource usage; the servers by
    C{/proc} (dicomd with its worker processes).
    """

    def __init__(self, **servers: ServerProcess):
        self._servers = servers
        self._started = {name: self._times(server) for name, server in servers.items()}

    @staticmethod
    def _times(server: ServerProcess):
        return treeCPUSeconds(server.process.pid), treeCPUSeconds(server.process.pid, system=True)

    def measure(self, seconds: float, streaming: float, sent=None) -> Measure:
        """
        @param sent: what L{send} returned, when storescu sent in the
            measure's time.
        """
        cpu, system = ({}, {}) if sent is None else ({"storescu": sent[0]}, {"storescu": sent[1]})
        for name, server in self._servers.items():
            total, kernel = self._times(server)
            cpu[name] = total - self._started[name][0]
            system[name] = kernel - self._started[name][1]
        return Measure(seconds, streaming, cpu, system)


def send(port: int, paths, timeout: float):
    """
    Send C{paths} with DCMTK's storescu to the port; return its CPU
    seconds, and their system share.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [os.path.join(DCMTK, "storescu"), "-aec", "DICOMD", HOST, str(port)] + list(paths),
        env=dcmtkEnvironment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise BenchmarkError("storescu failed:\n%s" % (result.stdout.decode("utf-8", "replace")[-4000:],))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, after.ru_stime - before.ru_stime


def streamingRate(directory: str) -> float:
    """
    Objects per second at the destination from its first file to its last,
    by the files' modification times: the rate of the stream itself,
    without what it took to begin (storescu starting, or dicomd finding the
    destination back).
    """
    times = sorted(os.stat(os.path.join(directory, name)).st_mtime_ns for name in os.listdir(directory))
    return (len(times) - 1) / max(times[-1] - times[0], 1) * 1e9


def waitForFiles(directory: str, count: int, timeout: float) -> float:
    """
    Wait until C{directory} holds C{count} files; return when it did.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(os.listdir(directory)) >= count:
            return time.monotonic()
        time.sleep(0.01)
    raise BenchmarkError("%s holds %d of %d files after %s s" % (directory, len(os.listdir(directory)), count, timeout))


def direct(work, paths, timeout):
    destination = storescp(work, "direct", freePort())
    try:
        clock = CPUClock(storescp=destination)
        started = time.monotonic()
        sent = send(destination.port, paths, timeout)
        seconds = waitForFiles(destination.directory, len(paths), timeout) - started
        return clock.measure(seconds, streamingRate(destination.directory), sent)
    finally:
        destination.stop()


def forwarded(work, paths, timeout, **dicomdOptions):
    destination = storescp(work, "forwarded", freePort())
    daemon = dicomd(os.path.join(work, "forwarding"), freePort(), destination.port, retryMax=1, **dicomdOptions)
    try:
        clock = CPUClock(dicomd=daemon, storescp=destination)
        started = time.monotonic()
        sent = send(daemon.port, paths, timeout)
        seconds = waitForFiles(destination.directory, len(paths), timeout) - started
        return clock.measure(seconds, streamingRate(destination.directory), sent)
    finally:
        daemon.stop()
        destination.stop()


#: The backlog run's dicomd tries the destination that often: the drain
#: starts at most that long after the destination listens.  (At 0.1 s,
#: that random wait, 0 to 100 ms in a drain of 0.36 s on tmpfs, moved the
#: backlog figure by up to a quarter from one run to the next.)
BACKLOG_RETRY = 0.02


def backlog(work, paths, timeout, receiver=storescp, **dicomdOptions):
    port = freePort()
    daemon = dicomd(os.path.join(work, "backlog"), freePort(), port, retryMax=BACKLOG_RETRY, **dicomdOptions)
    try:
        send(daemon.port, paths, timeout)
        destination = receiver(work, "drained", port)
        try:
            clock = CPUClock(dicomd=daemon, storescp=destination)
            started = time.monotonic()
            seconds = waitForFiles(destination.directory, len(paths), timeout) - started
            return clock.measure(seconds, streamingRate(destination.directory))
        finally:
            destination.stop()
    finally:
        daemon.stop()




def turnOrder(names, run: int):
    """
    The measures of turn C{run} (from 1): in the order given in odd turns;
    in even ones each baseline measure (C{NAME-base}) after the measure of
    this checkout it is compared with, so that neither always runs first
    on a disk the other has just written to.
    """
    order = list(names)
    if run % 2 == 0:
        for index, name in enumerate(order):
            partner = name[: -len("-base")] if name.endswith("-base") else None
            if partner in order and order.index(partner) == index + 1:
                order[index], order[index + 1] = partner, name
    return order


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "dicomd-bench-corpus"))
    parser.add_argument("--output", default=None, help="where the runs store (default: a temporary directory)")
    parser.add_argument("--count", type=int, default=2000, help="send the first COUNT images of the corpus")
    parser.add_argument("--runs", type=int, default=5, help="run them all in turn RUNS times")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--baseline", default=None, help="also run the forwarded and backlog runs with this checkout's dicomd")
    parser.add_argument("--async-ops", type=int, default=1, help="the asynchronous operations window dicomd proposes (default 1: none)")
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N", help="also run the forwarded and backlog runs with N worker processes receiving"
    )
    parser.add_argument(
        "--granting", type=int, default=None, metavar="N", help="also drain the backlog into dicomd storescp, which grants a window, proposing 1 and N"
    )
    options = parser.parse_args(argv)
    corpus = next(c for c in CORPORA if c.name == "ct256")
    written = corpus.make(options.corpus)
    if written:
        print("ct256: wrote %d files in %s" % (written, corpus.directory(options.corpus)))
    paths = corpus.paths(options.corpus)[: options.count]
    asyncOps = {"asyncOps": options.async_ops}
    measures = {
        "direct": lambda work: direct(work, paths, options.timeout),
        "forwarded": lambda work: forwarded(work, paths, options.timeout, **asyncOps),
        "backlog": lambda work: backlog(work, paths, options.timeout, **asyncOps),
    }
    if options.baseline is not None:
        baseline = {"checkout": os.path.abspath(options.baseline)}
        measures["forwarded-base"] = lambda work: forwarded(work, paths, options.timeout, **baseline)
        measures["backlog-base"] = lambda work: backlog(work, paths, options.timeout, **baseline)
    if options.workers is not None:
        workers = dict(asyncOps, workers=options.workers)
        measures["forwarded-workers"] = lambda work: forwarded(work, paths, options.timeout, **workers)
        measures["backlog-workers"] = lambda work: backlog(work, paths, options.timeout, **workers)
    if options.granting is not None:
        measures["backlog>dicomd"] = lambda work: backlog(work, paths, options.timeout, receiver=dicomdStorescp)
        measures["backlog>dicomd-w"] = lambda work: backlog(work, paths, options.timeout, receiver=dicomdStorescp, asyncOps=options.granting)
    # Each run of the baseline beside the same run of this checkout: just
    # before it in odd turns, just after it in even ones.
    names = [
        name
        for name in (
            "direct",
            "forwarded-base",
            "forwarded",
            "forwarded-workers",
            "backlog-base",
            "backlog",
            "backlog-workers",
            "backlog>dicomd",
            "backlog>dicomd-w",
        )
        if name in measures
    ]
    print(
        "%d images of %s (ct256), storescu -> [dicomd ->] storescp, in %s; %d CPUs (%s)"
        % (len(paths), corpus.description, options.output or tempfile.gettempdir(), os.cpu_count() or 1, processorModel())
    )
    print(
        "%-4s %-16s %10s %10s %8s %11s %8s   %s"
        % ("run", "", "seconds", "objects/s", "x direct", "streaming/s", "x direct", "CPU us/object: storescu, dicomd, storescp (system in brackets)")
    )
    rates = {name: [] for name in names}
    streaming = {name: [] for name in names}
    cpu = {name: [] for name in names}
    if options.output is not None:
        os.makedirs(options.output, exist_ok=True)
    for run in range(1, options.runs + 1):
        work = tempfile.mkdtemp(prefix="dicomd-bench-forward-", dir=options.output)
        try:
            measured = {}
            for name in turnOrder(names, run):
                os.makedirs(os.path.join(work, name))
                # The disk starts each measure with nothing of the one
                # before left to write back, and holds nothing of it.
                os.sync()
                measured[name] = measures[name](os.path.join(work, name))
                shutil.rmtree(os.path.join(work, name), ignore_errors=True)
        except BenchmarkError as e:
            print("benchmark failed: %s" % (e,), file=sys.stderr)
            return 1
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for name in names:
            measure = measured[name]
            rates[name].append(len(paths) / measure.seconds)
            streaming[name].append(measure.streaming)
            cpu[name].append(measure)
            print(
                "%-4d %-16s %10.2f %10.1f %8.2f %11.1f %8.2f   %s"
                % (
                    run,
                    name,
                    measure.seconds,
                    rates[name][-1],
                    rates[name][-1] / rates["direct"][-1],
                    streaming[name][-1],
                    streaming[name][-1] / streaming["direct"][-1],
                    cpuPerObject([measure], len(paths)),
                )
            )
    print("median of %d runs (direct %.0f objects/s, streaming %.0f):" % (options.runs, statistics.median(rates["direct"]), statistics.median(streaming["direct"])))
    for name in names:
        ratios = [rate / direct for rate, direct in zip(rates[name], rates["direct"])]
        streamingRatios = [rate / direct for rate, direct in zip(streaming[name], streaming["direct"])]
        print(
            "     %-16s %10.1f objects/s, %.2f x direct; streaming %.1f objects/s, %.2f x direct (medians of the runs' ratios)"
            % (name, statistics.median(rates[name]), statistics.median(ratios), statistics.median(streaming[name]), statistics.median(streamingRatios))
        )
    cores = os.cpu_count() or 1
    print("CPU per object, medians of the runs, and the most objects/s %d cores could carry at that CPU, all busy:" % (cores,))
    for name in names:
        perObject = statistics.median(sum(m.cpu.values()) for m in cpu[name]) / len(paths)
        print(
            "     %-16s %s; all %.0f us: at most %.0f objects/s, %.2f x direct"
            % (name, cpuPerObject(cpu[name], len(paths)), perObject * 1e6, cores / perObject, cores / perObject / statistics.median(rates["direct"]))
        )
    return 0


def cpuPerObject(measures, count: int) -> str:
    """
    The median CPU per object of each process over C{measures}, in
    microseconds, with its system share in brackets.
    """
    parts = []
    for name in ("storescu", "dicomd", "storescp"):
        if name in measures[0].cpu:
            total = statistics.median(m.cpu[name] for m in measures) / count * 1e6
            system = statistics.median(m.system[name] for m in measures) / count * 1e6
            parts.append("%s %.0f (%.0f)" % (name, total, system))
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
