"""
Benchmark: Verification (C-ECHO) on dicomd and on DCMTK's storescp.

Starts DCMTK's C{/usr/bin/storescp} and the real C{twistd -n dicomd} on
free ports of 127.0.0.1, then measures against each server, in the same
run:

  - C-ECHO/s on one association: DCMTK's C{echoscu --repeat N}, and a
    client written with dicomd's requestor API (C{connect}, N x
    C{echo()}, C{release()});
  - associations/s, one C-ECHO each: the same dicomd client opening M
    associations one after the other from one process, so that process
    start-up does not drown what is measured; and, for comparison, M
    C{echoscu} processes run one after the other.

Every DCMTK program runs with C{TCP_NODELAY=1}: without it DCMTK leaves
Nagle's algorithm on and each exchange waits for a delayed ACK.  Each
measurement is repeated and the best run is reported, with the ratio
dicomd/DCMTK (above 1: dicomd is faster).

Run from the checkout:

    python bench/echo.py [--echoes 2000] [--associations 500]
                         [--process-associations 500] [--repeats 3]

This is not a test: it asserts nothing but that every exchange succeeded.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from twisted.internet import defer, task  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint  # noqa: E402

from bench.common import DCMTK, HOST, BenchmarkError, ServerProcess, dcmtkEnvironment, freePort, pythonEnvironment  # noqa: E402
from dicomd.net.association import VERIFICATION_SOP_CLASS  # noqa: E402
from dicomd.net.requestor import connect  # noqa: E402
from dicomd.ul.negotiation import UNCOMPRESSED  # noqa: E402


def startServer(name: str, argv, env, directory: str, port: int) -> ServerProcess:
    """
    A server process run in C{directory}, logging to C{NAME.log} there.
    """
    logPath = os.path.join(directory, name.replace(" ", "-") + ".log")
    return ServerProcess(name, argv, env, directory, port, logPath, startTimeout=20.0)


def startStorescp(directory: str) -> ServerProcess:
    """
    DCMTK's storescp with its defaults.
    """
    port = freePort()
    return startServer("DCMTK storescp", [DCMTK + "/storescp", str(port)], dcmtkEnvironment(), directory, port)


def startDicomd(directory: str) -> ServerProcess:
    """
    C{twistd -n dicomd} from this checkout, run by this interpreter.
    """
    port = freePort()
    argv = [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        "dicomd",
        "--listen",
        "tcp:%d:interface=%s" % (port, HOST),
    ]
    return startServer("dicomd", argv, pythonEnvironment(), directory, port)


# -- measurements: each returns operations per second -------------------------------


def runEchoscu(port: int, *options: str) -> None:
    """
    Run DCMTK's echoscu to its end; raise L{BenchmarkError} unless it
    succeeded.
    """
    result = subprocess.run(
        [DCMTK + "/echoscu"] + list(options) + [HOST, str(port)],
        env=dcmtkEnvironment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if result.returncode != 0:
        raise BenchmarkError("echoscu %s failed: %s" % (" ".join(options), result.stdout.decode("utf-8", "replace")))


def echoscuEchoes(reactor, port: int, count: int) -> defer.Deferred:
    """
    C-ECHO/s of C{echoscu --repeat count} (one association).
    """
    start = time.perf_counter()
    runEchoscu(port, "--repeat", str(count))
    return defer.succeed(count / (time.perf_counter() - start))


def echoscuAssociations(reactor, port: int, count: int) -> defer.Deferred:
    """
    Associations/s of C{count} echoscu processes run one after the other.
    """
    start = time.perf_counter()
    for _ in range(count):
        runEchoscu(port)
    return defer.succeed(count / (time.perf_counter() - start))


def _associate(reactor, port: int):
    return connect(
        TCP4ClientEndpoint(reactor, HOST, port),
        calledAETitle="ANY-SCP",
        callingAETitle="BENCH",
        presentationContexts=[(VERIFICATION_SOP_CLASS, UNCOMPRESSED)],
        reactor=reactor,
    )


@defer.inlineCallbacks
def dicomdClientEchoes(reactor, port: int, count: int):
    """
    C-ECHO/s of the dicomd requestor: one association, C{count} C-ECHOs
    one after the other.
    """
    start = time.perf_counter()
    association = yield _associate(reactor, port)
    for _ in range(count):
        status = yield association.echo()
        if status != 0:
            raise BenchmarkError("C-ECHO answered 0x%04X" % (status,))
    yield association.release()
    return count / (time.perf_counter() - start)


@defer.inlineCallbacks
def dicomdClientAssociations(reactor, port: int, count: int):
    """
    Associations/s of the dicomd requestor: C{count} times associate,
    C-ECHO, release, one after the other, from this one process.
    """
    start = time.perf_counter()
    for _ in range(count):
        association = yield _associate(reactor, port)
        status = yield association.echo()
        if status != 0:
            raise BenchmarkError("C-ECHO answered 0x%04X" % (status,))
        yield association.release()
    return count / (time.perf_counter() - start)


@defer.inlineCallbacks
def best(reactor, measure, port: int, count: int, repeats: int):
    """
    The best of C{repeats} runs of C{measure}.
    """
    rates = []
    for _ in range(repeats):
        rate = yield measure(reactor, port, count)
        rates.append(rate)
    return max(rates)


# -- the table ---------------------------------------------------------------------


def dcmtkVersion() -> str:
    result = subprocess.run([DCMTK + "/echoscu", "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        if "dcmtk" in line:
            return line.strip().strip("$").strip()
    return "DCMTK (unknown version)"


def printTable(rows, servers, repeats: int) -> None:
    import twisted

    print()
    print("dicomd vs DCMTK: Verification on %s, best of %d runs each" % (HOST, repeats))
    print(
        "  %s; dicomd from %s; Python %s, Twisted %s, %s"
        % (dcmtkVersion(), REPO_ROOT, platform.python_version(), twisted.__version__, platform.machine())
    )
    print()
    labelWidth = max(len(label) for label, _, _ in rows)
    header = "%-*s  %16s  %16s  %12s" % (labelWidth, "measurement", servers[0].name, servers[1].name, "dicomd/DCMTK")
    print(header)
    print("-" * len(header))
    for label, unit, rates in rows:
        dcmtkRate, dicomdRate = rates
        print(
            "%-*s  %16s  %16s  %12s"
            % (
                labelWidth,
                label,
                "%.0f %s" % (dcmtkRate, unit),
                "%.0f %s" % (dicomdRate, unit),
                "%.2f" % (dicomdRate / dcmtkRate,),
            )
        )
    print()


@defer.inlineCallbacks
def benchmark(reactor, servers, options):
    measurements = [
        ("C-ECHO, 1 association, echoscu --repeat %d" % options.echoes, "echo/s", echoscuEchoes, options.echoes),
        ("C-ECHO, 1 association, dicomd client, %d" % options.echoes, "echo/s", dicomdClientEchoes, options.echoes),
        (
            "associate+C-ECHO+release x %d, dicomd client (1 process)" % options.associations,
            "assoc/s",
            dicomdClientAssociations,
            options.associations,
        ),
        (
            "associate+C-ECHO+release x %d, echoscu process each" % options.processAssociations,
            "assoc/s",
            echoscuAssociations,
            options.processAssociations,
        ),
    ]
    rows = []
    for label, unit, measure, count in measurements:
        rates = []
        for server in servers:
            sys.stderr.write("%s against %s...\n" % (label, server.name))
            rate = yield best(reactor, measure, server.port, count, options.repeats)
            rates.append(rate)
        rows.append((label, unit, rates))
    printTable(rows, servers, options.repeats)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--echoes", type=int, default=2000, help="C-ECHOs on one association (default: 2000)")
    parser.add_argument(
        "--associations", type=int, default=500, help="associations opened by the dicomd client (default: 500)"
    )
    parser.add_argument(
        "--process-associations",
        dest="processAssociations",
        type=int,
        default=500,
        help="echoscu processes, one association each (default: 500)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the best counts (default: 3)")
    options = parser.parse_args(argv)
    for tool in ("storescp", "echoscu"):
        if not os.access(os.path.join(DCMTK, tool), os.X_OK):
            sys.stderr.write("DCMTK's %s is missing from %s: apt-get install dcmtk\n" % (tool, DCMTK))
            return 2
    directory = tempfile.mkdtemp(prefix="dicomd-bench-")
    servers = []
    try:
        servers.append(startStorescp(directory))
        servers.append(startDicomd(directory))
        task.react(lambda reactor: benchmark(reactor, servers, options))
    except SystemExit as e:
        return e.code or 0
    except BenchmarkError as e:
        sys.stderr.write("benchmark failed: %s\n" % (e,))
        return 1
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
