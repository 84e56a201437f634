"""
Benchmark: ingest into 1, 2 and 3 dicomd nodes sharing one PostgreSQL
index (issue 16, C{docs/scale-out.md}), against DCMTK's C{storescp
--fork} in the same run.

Thirty-two DCMTK C{storescu} processes send at once, each its own study
of 100 images of 256x256x16 bit (L{bench.corpus.SENDERS}, 3,200 images),
spread over the nodes in turn (sender I to node I mod N).  The nodes are
C{twistd -n dicomd} from this checkout, each with C{--database URL} and
its own C{--node}, storing into one directory (as nodes on several
machines share one file system).  Each run starts fresh nodes on a fresh
database and directory, and is timed from the start of the first
storescu to the exit of the last (every object acknowledged); the time
until the shared index has a row for every object is reported beside
it.  Receivers take turns, run by run; the table gives the median of the
runs (C{--repeats}, default 5) with DCMTK's absolute rate beside each
ratio, and the machine's cores and load, which bound what more nodes on
one machine can gain.

Without C{--postgresql URL} a throw-away server is started as the tests
start theirs (L{tests.postgres}: Debian's C{initdb} and C{pg_ctl}, its
durability off), and the URL's databases are made there.  With a URL,
that database is emptied before each run.  Run from the checkout:

    python bench/cluster.py [--corpus DIR] [--output /dev/shm]
                            [--repeats 5] [--nodes 1,2,3]
                            [--postgresql postgresql://...]

This is not a test: it asserts nothing but that every object sent was
stored and indexed.
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench.common import DCMTK, HOST, BenchmarkError, ServerProcess, dcmtkEnvironment, freePort, pythonEnvironment  # noqa: E402
from bench.corpus import ensureSendersCorpus  # noqa: E402
from bench.store import countStored  # noqa: E402

#: Senders at once, and the images each sends.
SENDERS = 32
PER_SENDER = 100


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Databases:
    """
    A fresh, empty database for each run: on a throw-away server, or the
    one database a URL names, emptied.
    """

    def __init__(self, url=None):
        self._url = url
        self._server = None
        if url is None:
            from tests.postgres import PostgreSQLServer

            self._server = PostgreSQLServer()
            self._server.start()

    def fresh(self) -> str:
        if self._server is not None:
            return self._server.url(self._server.createDatabase())
        import psycopg

        with psycopg.connect(self._url, autocommit=True) as connection:
            connection.execute("DROP SCHEMA public CASCADE")
            connection.execute("CREATE SCHEMA public")
        return self._url

    def close(self) -> None:
        if self._server is not None:
            self._server.destroy()


def indexedCount(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute("SELECT COUNT(*) FROM instance").fetchone()[0]


def startNodes(count: int, url: str, output: str, work: str) -> List[ServerProcess]:
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    nodes = []
    for number in range(1, count + 1):
        port = freePort()
        argv = [
            twistd, "-n", "--pidfile=", "dicomd", "-o", output, "--listen", "tcp:%d:interface=%s" % (port, HOST),
            "--database", url, "--node", "node%d" % (number,), "--state-directory", os.path.join(work, "state%d" % (number,)),
        ]
        nodes.append(ServerProcess("node%d" % (number,), argv, pythonEnvironment(), work, port, os.path.join(work, "node%d.log" % (number,))))
    return nodes


def send(ports: Sequence[int], batches: Sequence[List[str]], timeout: float) -> float:
    """
    Send each batch with its own storescu, to the ports in turn, all at
    once.

    @return: the seconds from the first start to the last exit.
    """
    begin = time.perf_counter()
    senders = [
        subprocess.Popen(
            [DCMTK + "/storescu", "-aec", "DICOMD", HOST, str(ports[number % len(ports)])] + batch,
            env=dcmtkEnvironment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for number, batch in enumerate(batches)
    ]
    outputs = [sender.communicate(timeout=timeout)[0] for sender in senders]
    seconds = time.perf_counter() - begin
    for sender, output in zip(senders, outputs):
        if sender.returncode != 0:
            raise BenchmarkError("storescu failed (%d):\n%s" % (sender.returncode, output.decode("utf-8", "replace")[-4000:]))
    return seconds


def clusterRun(count: int, databases: Databases, batches, output: str, work: str, timeout: float):
    """
    One run into C{count} fresh nodes: the seconds until every object is
    acknowledged, and until every object is indexed.
    """
    url = databases.fresh()
    into = tempfile.mkdtemp(prefix="cluster-", dir=output)
    scratch = tempfile.mkdtemp(prefix="cluster-", dir=work)
    total = sum(len(batch) for batch in batches)
    nodes = startNodes(count, url, into, scratch)
    try:
        os.sync()
        begin = time.perf_counter()
        acknowledged = send([node.port for node in nodes], batches, timeout)
        while indexedCount(url) < total:
            if time.perf_counter() - begin > timeout:
                raise BenchmarkError("%d nodes indexed %d of %d objects" % (count, indexedCount(url), total))
            time.sleep(0.05)
        indexed = time.perf_counter() - begin
    finally:
        for node in nodes:
            node.stop()
    stored = countStored(into)
    shutil.rmtree(into, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    if stored != total:
        raise BenchmarkError("%d nodes stored %d of %d objects" % (count, stored, total))
    return acknowledged, indexed


def dcmtkRun(batches, output: str, work: str, timeout: float):
    into = tempfile.mkdtemp(prefix="dcmtk-", dir=output)
    port = freePort()
    server = ServerProcess("storescp --fork", [DCMTK + "/storescp", "--fork", "-od", into, str(port)], dcmtkEnvironment(), work, port,
                           os.path.join(work, "storescp.log"))
    try:
        os.sync()
        seconds = send([port], batches, timeout)
    finally:
        server.stop()
    stored = countStored(into)
    shutil.rmtree(into, ignore_errors=True)
    total = sum(len(batch) for batch in batches)
    if stored != total:
        raise BenchmarkError("storescp --fork stored %d of %d objects" % (stored, total))
    return seconds, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "benchcorpus"))
    parser.add_argument("--output", default="/dev/shm", help="where the received files go")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "dicomd-bench-cluster"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nodes", default="1,2,3", help="the node counts to measure")
    parser.add_argument("--postgresql", metavar="URL", help="a database to empty and use (default: a throw-away server)")
    parser.add_argument("--timeout", type=float, default=600.0)
    options = parser.parse_args(argv)
    counts = [int(count) for count in options.nodes.split(",")]
    work = os.path.abspath(options.work)
    os.makedirs(work, exist_ok=True)
    corpus = ensureSendersCorpus(options.corpus, log)
    paths = sorted(os.path.join(corpus.directory(options.corpus), name) for name in os.listdir(corpus.directory(options.corpus)))
    batches = [paths[start:start + PER_SENDER] for start in range(0, SENDERS * PER_SENDER, PER_SENDER)]
    total = sum(len(batch) for batch in batches)

    runners: List[tuple] = [("storescp --fork", lambda: dcmtkRun(batches, options.output, work, options.timeout))]
    databases = Databases(options.postgresql)
    results = {}
    loads = []
    try:
        for count in counts:
            runners.append(
                ("dicomd x%d" % (count,), (lambda count: lambda: clusterRun(count, databases, batches, options.output, work, options.timeout))(count))
            )
        for repeat in range(options.repeats):
            for name, run in runners:
                loads.append(os.getloadavg()[0])
                acknowledged, indexed = run()
                results.setdefault(name, []).append((acknowledged, indexed))
                log("run %d, %s: %.2f s acknowledged, %.2f s indexed" % (repeat + 1, name, acknowledged, indexed))
    finally:
        databases.close()

    print()
    print("ingest benchmark, %s, Python %s, %s, %d cores, load average %.1f..%.1f during the runs"
          % (platform.node(), platform.python_version(), platform.platform(), os.cpu_count(), min(loads), max(loads)))
    print("%d storescu at once, %d images of 256x256x16 bit each, into %s; median of %d runs"
          % (len(batches), PER_SENDER, options.output, options.repeats))
    reference = total / statistics.median(seconds for seconds, _ in results["storescp --fork"])
    print("%-18s %14s %14s %12s" % ("receiver", "acked img/s", "indexed img/s", "vs DCMTK"))
    for name, _ in runners:
        acknowledged = total / statistics.median(seconds for seconds, _ in results[name])
        indexed = total / statistics.median(seconds for _, seconds in results[name])
        print("%-18s %14.1f %14.1f %11.2fx" % (name, acknowledged, indexed, acknowledged / reference))
    print("(DCMTK storescp --fork: %.1f images/s)" % (reference,))
    return 0


if __name__ == "__main__":
    sys.exit(main())
