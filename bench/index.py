"""
Benchmark: CPU per instance of the index writer, without a network.

The daemon acknowledges an instance once its file has its final name, and
a writer thread adds the rows behind the response, in batches
(L{dicomd.archive.writer}); every microsecond of Python it spends there is
one the reactor may wait for, for the interpreter lock.  This script reads
the attributes of the C{ct256} corpus as the storage SCP reads them
(L{dicomd.storage.part10.scanHead}), then adds them to a new SQLite index
in batches of C{--batch} (as the writer's group commit does), and reports
the process CPU time per instance, median of C{--runs}.  C{--baseline
CHECKOUT} runs another checkout's code in the same turns; C{--profile}
prints a cProfile of one run.

    python bench/index.py [--corpus DIR] [--output /dev/shm] [--runs 5] [--batch 30] [--baseline CHECKOUT] [--profile]

This is not a test: it asserts nothing.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(corpusDirectory: str, output: str, batch: int, profile: bool) -> float:
    """
    In a process whose C{sys.path} starts at the checkout measured: index
    the corpus once, in C{output}, and return the CPU seconds per instance.
    """
    from dicomd.archive.index import SQLiteArchiveIndex, StoredFile
    from dicomd.storage.part10 import scanHead
    from dicomd.storage.scu import readFileMeta

    items = []
    for name in sorted(os.listdir(corpusDirectory)):
        path = os.path.join(corpusDirectory, name)
        dicomFile = readFileMeta(path)
        with open(path, "rb") as f:
            f.seek(dicomFile.dataSetOffset)
            head = f.read(64 << 10)
        stored = StoredFile(name, dicomFile.size, dicomFile.transferSyntaxUID, time.time(), "STORESCU")
        items.append((scanHead(head, dicomFile.transferSyntaxUID, dicomFile.size - dicomFile.dataSetOffset <= len(head)), stored, ()))
    index = SQLiteArchiveIndex(os.path.join(output, "index.sqlite"))
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.process_time()
    for start in range(0, len(items), batch):
        index.addInstances(output, items[start : start + batch])
    seconds = time.process_time() - started
    if profile:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(40)
    return seconds / len(items)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "dicomd-bench-corpus"))
    parser.add_argument("--output", default=None, help="where the index is made (default: a temporary directory)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=30, help="instances per transaction (default: 30)")
    parser.add_argument("--baseline", default=None, help="also run this checkout's code, in the same turns")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run of this checkout instead")
    parser.add_argument("--child", nargs=3, metavar=("CHECKOUT", "CORPUS", "OUTPUT"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.batch < 1:
        parser.error("--batch: at least 1, not %d" % (options.batch,))
    if options.child:
        checkout, corpusDirectory, output = options.child
        sys.path.insert(0, checkout)
        print(_run(corpusDirectory, output, options.batch, options.profile))
        return 0
    sys.path.insert(0, REPO_ROOT)
    from bench.common import checkoutsInTurn, runInTurns
    from bench.corpus import CORPORA

    corpus = next(c for c in CORPORA if c.name == "ct256")
    corpus.make(options.corpus)
    if options.output is not None:
        os.makedirs(options.output, exist_ok=True)
    checkouts = checkoutsInTurn(options.baseline, options.profile)
    runs = 1 if options.profile else options.runs
    childOptions = ["--batch", str(options.batch)] + (["--profile"] if options.profile else [])
    results = runInTurns(__file__, checkouts, runs, childOptions, corpus.directory(options.corpus), options.output)
    for name, values in results.items():
        print(
            "%-8s %6.1f us of CPU per instance, batches of %d, median of %d (%s)"
            % (name, statistics.median(values), options.batch, len(values), " ".join("%.1f" % v for v in values))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
