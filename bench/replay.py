"""
Benchmark: CPU per received object of C{dicomd storescp}'s code, without
a network or a peer.

The acceptor of a storage SCP (L{dicomd.storage.receiver.buildReceiver},
as C{dicomd storescp} builds it) runs on one end of a loopback TCP
connection, as a Twisted TCP transport, with worker jobs run at once, and
is fed the byte stream of a whole association: the A-ASSOCIATE-RQ, then
each file of a corpus as a C-STORE-RQ and its data set in P-DATA-TF PDUs
of 128 KiB.  The script writes C{--read} bytes at a time to the other end
and has the transport read each (its C{doRead}, as the reactor would), then
takes the responses off the connection.  The files are written for real,
so C{--output /dev/shm} leaves the disk out.

What it measures is the process CPU time per object of everything from
the reads to the responses, the socket calls included: no other process,
no reactor, no scheduling.  That makes it steady where the end-to-end
benchmarks (L{bench.store}, L{bench.floor}) vary with the machine by ten
per cent from one run to the next, and fit for comparing a change with the
code before it: C{--baseline CHECKOUT} runs that checkout's code in the
same turns.  C{--profile} prints a cProfile of one run instead (which
about doubles the time, evenly enough to rank the parts).

C{--index} stores as the daemon does: into an SQLite index, through the
daemon's L{IndexWriter<dicomd.archive.writer.IndexWriter>}, whose jobs run
on the same thread after every C{INDEX_BATCH} objects' reads.  The daemon
runs them in a worker thread, which holds the interpreter lock in turn
with the reactor; here they are counted without that lock's hand-offs.

    python bench/replay.py [--corpus DIR] [--corpora ct256] [--output DIR] [--runs 5] [--read 65536] [--baseline CHECKOUT] [--profile] [--index]

This is not a test: it asserts nothing but that every object was stored
(and, with C{--index}, indexed).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: With C{--index}, how many objects the writer's jobs each write: about
#: what the daemon's writer gathers in its window at 3,000 objects/s.
INDEX_BATCH = 30


def _replay(checkout: str, paths, output: str, readSize: int, profile: bool, indexed: bool = False) -> float:
    """
    In a process whose C{sys.path} starts at C{checkout}: receive C{paths}
    once, in C{output}, and return the CPU seconds per object.

    @param indexed: record them as the daemon does, in an SQLite index
        written by an L{IndexWriter}, whose jobs run on this thread after
        every C{INDEX_BATCH} objects' bytes.
    """
    import socket

    from twisted.internet import tcp
    from twisted.internet.address import IPv4Address
    from twisted.internet.protocol import Protocol
    from twisted.internet.testing import MemoryReactorClock
    from twisted.python.failure import Failure

    from dicomd.dimse.commands import CStoreRQ, encodeCommand
    from dicomd.dimse.pdv import fragment, maximumFragmentLength
    from dicomd.net.acceptor import AcceptorFactory, ApplicationEntity
    from dicomd.storage.receiver import StorageOptions, buildReceiver, storagePolicy
    from dicomd.storage.scu import readFileMeta
    from dicomd.ul.negotiation import proposePresentationContexts
    from dicomd.ul.pdu import AAssociateRQ, UserInformation

    maximumLength = 131072
    peer = IPv4Address("TCP", "127.0.0.1", 104)

    class Reactor(MemoryReactorClock):
        def callFromThread(self, f, *args, **kwargs):
            f(*args, **kwargs)

    class AtOnce:
        def callInThreadWithCallback(self, onResult, function, *args, **kwargs):
            try:
                result = function(*args, **kwargs)
            except BaseException:
                onResult(False, Failure())
            else:
                onResult(True, result)

        def callInThread(self, function, *args, **kwargs):
            self.callInThreadWithCallback(lambda ok, result: None, function, *args, **kwargs)

    class Connection(tcp.Connection):
        def getPeer(self):
            return peer

        def getHost(self):
            return peer

    length = maximumFragmentLength(maximumLength)
    messages = []
    for messageID, path in enumerate(paths, 1):
        dicomFile = readFileMeta(path)
        with open(path, "rb") as f:
            f.seek(dicomFile.dataSetOffset)
            dataSet = f.read()
        request = CStoreRQ(messageID=messageID, affectedSOPClassUID=dicomFile.sopClassUID, affectedSOPInstanceUID=dicomFile.sopInstanceUID)
        messages.extend(fragment(1, True, encodeCommand(request), length))
        messages.extend(fragment(1, False, dataSet, length, True))
    stream = b"".join(bytes(piece) for piece in messages)
    reads = [stream[offset : offset + readSize] for offset in range(0, len(stream), readSize)]
    del messages, stream

    reactor = Reactor()
    writerJobs = []
    writer = None
    store = output
    if indexed:
        from dicomd.archive.area import IndexedArea
        from dicomd.archive.index import SQLiteArchiveIndex
        from dicomd.archive.writer import IndexWriter

        store = os.path.join(output, "store")
        area = IndexedArea(SQLiteArchiveIndex(os.path.join(output, "index.sqlite")), "STORESCP", store)
        writer = IndexWriter(area, writerJobs.append, window=0)
    receiver = buildReceiver(StorageOptions(outputDirectory=store), index=writer, reactor=reactor, threadpool=AtOnce())
    receiver.area.prepare()
    syntax = dicomFile.transferSyntaxUID
    entity = ApplicationEntity("STORESCP", storagePolicy([syntax]), {CStoreRQ.commandField: receiver.scp}, maximumLength=maximumLength)
    protocol = AcceptorFactory(entity, reactor=reactor).buildProtocol(peer)
    listener = socket.create_server(("127.0.0.1", 0))
    ours = socket.create_connection(listener.getsockname())
    ours.setblocking(False)
    sender, _ = listener.accept()
    listener.close()
    sender.setblocking(False)
    transport = Connection(ours, Protocol(), reactor)
    transport.connected = True
    transport.protocol = protocol
    protocol.makeConnection(transport)

    def feed(data):
        """
        Send C{data} to the acceptor, have it read and answer, and take
        its answers off the connection.
        """
        sender.sendall(data)
        transport.doRead()
        while reactor.getWriters():
            transport.doWrite()
        while True:
            try:
                if not sender.recv(1 << 20):
                    return
            except BlockingIOError:
                return

    feed(
        AAssociateRQ(
            "STORESCP",
            "REPLAY",
            proposePresentationContexts([(dicomFile.sopClassUID, [syntax])]),
            UserInformation(maximumLength=maximumLength, implementationClassUID="1.2.3.4"),
        ).encode()
    )
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
    # The reads that carry about INDEX_BATCH objects, between the writer's
    # jobs: the batches the daemon's writer gathers at these rates.
    readsPerBatch = max(1, len(reads) * INDEX_BATCH // len(paths))
    started = time.process_time()
    for count, data in enumerate(reads, 1):
        feed(data)
        if writerJobs and count % readsPerBatch == 0:
            writerJobs.pop(0)()
    while writerJobs:
        writerJobs.pop(0)()
    seconds = time.process_time() - started
    if profile:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(60)
    stored = sum(len(files) for _, _, files in os.walk(store))
    if indexed:
        with area.index.connection() as db:
            (rows,) = db.execute("SELECT count(*) FROM instance").fetchone()
        if rows != len(paths):
            raise SystemExit("indexed %d of %d objects" % (rows, len(paths)))
    if stored != len(paths):
        raise SystemExit("stored %d of %d objects" % (stored, len(paths)))
    return seconds / len(paths)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "dicomd-bench-corpus"))
    parser.add_argument("--corpora", default="ct256")
    parser.add_argument("--output", default=None, help="where the objects are stored (default: a temporary directory)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--read", type=int, default=65536, help="bytes per read (default: 65536)")
    parser.add_argument("--baseline", default=None, help="also run this checkout's code, in the same turns")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run of this checkout instead")
    parser.add_argument(
        "--index", action="store_true", help="index what is stored as the daemon does (SQLite, an IndexWriter run on this thread)"
    )
    parser.add_argument("--child", nargs=3, metavar=("CHECKOUT", "CORPUS", "OUTPUT"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        checkout, corpusDirectory, output = options.child
        sys.path.insert(0, checkout)
        paths = sorted(os.path.join(corpusDirectory, name) for name in os.listdir(corpusDirectory))
        print(_replay(checkout, paths, output, options.read, options.profile, options.index))
        return 0
    sys.path.insert(0, REPO_ROOT)
    from bench.common import checkoutsInTurn, runInTurns
    from bench.corpus import CORPORA

    if options.output is not None:
        os.makedirs(options.output, exist_ok=True)
    checkouts = checkoutsInTurn(options.baseline, options.profile)
    runs = 1 if options.profile else options.runs
    childOptions = ["--read", str(options.read)] + (["--profile"] if options.profile else []) + (["--index"] if options.index else [])
    for name in options.corpora.split(","):
        corpus = next(c for c in CORPORA if c.name == name)
        corpus.make(options.corpus)
        results = runInTurns(__file__, checkouts, runs, childOptions, corpus.directory(options.corpus), options.output)
        for checkout, values in results.items():
            print(
                "%-8s %-8s %7.1f us of CPU per object, median of %d (%s)"
                % (name, checkout, statistics.median(values), len(values), " ".join("%.1f" % v for v in values))
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
