"""
Benchmark: the floor of a storage SCP in CPython, beside DCMTK's storescp
and C{dicomd storescp}.

How little can CPython spend per received object?  C{--serve} runs a
storage SCP that does nothing but the work no storage SCP can skip, in the
tightest loop this file can write: one blocking socket, one association at
a time, every P-DATA-TF read with C{recv_into} into one buffer and parsed
there, and for each object:

  - the C-STORE-RQ's command set decoded (L{dicomd.dimse.commands});
  - a file written with one C{writev} (the File Meta Information and the
    data set's fragments, never joined), closed and renamed to its final
    name (the Affected SOP Instance UID, checked to be a UID);
  - the C-STORE-RSP encoded and sent.

It does not scan the data set (so it never checks that it holds the UIDs
the command names), keeps no index, and handles no other message: it is a
measuring stick, not a server.  What C{dicomd storescp} spends beyond it is
the cost of its design (Twisted's reactor, the Upper Layer state machine,
DIMSE, the spool); what the floor itself loses to DCMTK's C{storescp} no
Python design can win back.

DCMTK's C{storescu +sd} sends the C{ct256} and C{ct512} corpora
(L{bench.corpus}) on one association to each receiver in turn, C{--runs}
times; the table gives the median objects per second and CPU seconds of
each receiver, and the ratios to DCMTK's storescp from the same turns.

    python bench/floor.py [--corpus DIR] [--output DIR] [--runs 5] [--corpora ct256,ct512]

C{--output /dev/shm} keeps the received files in memory.  This is not a
test: it asserts nothing but that every object arrived.
"""

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench.common import DCMTK, HOST, BenchmarkError, ServerProcess, cpuSeconds, dcmtkEnvironment, freePort, pythonEnvironment  # noqa: E402
from bench.corpus import CORPORA  # noqa: E402
from dicomd.dataset import isValidUID  # noqa: E402
from dicomd.dimse.commands import CStoreRSP, decodeCommand, encodeCommand  # noqa: E402
from dicomd.storage.part10 import encodeFileMeta  # noqa: E402
from dicomd.ul import pdu  # noqa: E402

#: What the floor advertises as its maximum P-DATA-TF length, as C{dicomd
#: storescp} does by default.
MAXIMUM_LENGTH = 131072

#: The receive buffer: the largest object the floor takes on one
#: association (with its PDU headers).
BUFFER_SIZE = 8 << 20

_PDU_HEADER = struct.Struct(">BxL")
_PDV_HEADER = struct.Struct(">LBB")


def _recvExactly(connection: socket.socket, size: int) -> bytes:
    parts = []
    while size:
        data = connection.recv(size)
        if not data:
            raise EOFError("the peer closed the connection")
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def _pdu(pduType: int, body: bytes) -> bytes:
    return _PDU_HEADER.pack(pduType, len(body)) + body


class FloorAssociation:
    """
    One association of the floor SCP: accept every presentation context
    with its first transfer syntax, then store every C-STORE's data set.
    """

    def __init__(self, connection: socket.socket, directory: str):
        self.connection = connection
        self.directory = directory
        self.syntaxes = {}
        self.callingAETitle = ""

    def run(self) -> None:
        pduType, length = _PDU_HEADER.unpack(_recvExactly(self.connection, 6))
        request = pdu.decodePDU(pduType, memoryview(_recvExactly(self.connection, length)))
        self.callingAETitle = request.callingAETitle
        accepted = []
        for context in request.presentationContexts:
            self.syntaxes[context.contextID] = context.transferSyntaxes[0]
            accepted.append(pdu.PresentationContextAC(context.contextID, pdu.PC_ACCEPTANCE, context.transferSyntaxes[0]))
        answer = pdu.AAssociateAC(
            request.calledAETitle,
            request.callingAETitle,
            accepted,
            pdu.UserInformation(maximumLength=MAXIMUM_LENGTH, implementationClassUID="1.2.826.0.1.3680043.9.7433.9.9"),
        )
        self.connection.sendall(answer.encode())
        self._receive()

    def _receive(self) -> None:
        connection, buffer = self.connection, bytearray(BUFFER_SIZE)
        view = memoryview(buffer)
        filled = parsed = 0
        command, fragments = [], []
        while True:
            if filled == BUFFER_SIZE:
                raise BenchmarkError("an object larger than the floor's %d-byte buffer" % (BUFFER_SIZE,))
            received = connection.recv_into(view[filled:])
            if not received:
                return
            filled += received
            while filled - parsed >= 6:
                pduType, length = _PDU_HEADER.unpack_from(buffer, parsed)
                end = parsed + 6 + length
                if end > filled:
                    break
                if pduType != pdu.P_DATA_TF:
                    if pduType == pdu.A_RELEASE_RQ:
                        connection.sendall(_pdu(pdu.A_RELEASE_RP, bytes(4)))
                    return
                offset = parsed + 6
                while offset < end:
                    pdvLength, contextID, control = _PDV_HEADER.unpack_from(buffer, offset)
                    value = view[offset + 6 : offset + 4 + pdvLength]
                    offset += 4 + pdvLength
                    if control & 1:
                        command.append(bytes(value))
                    else:
                        fragments.append(value)
                        if control & 2:
                            self._store(contextID, decodeCommand(b"".join(command)), fragments)
                            command, fragments = [], []
                parsed = end
            if parsed == filled and not fragments:
                filled = parsed = 0

    def _store(self, contextID: int, request, fragments) -> None:
        uid = request.affectedSOPInstanceUID
        if not isValidUID(uid):
            raise BenchmarkError("not a UID: %r" % (uid,))
        meta = encodeFileMeta(request.affectedSOPClassUID, uid, self.syntaxes[contextID], self.callingAETitle)
        final = os.path.join(self.directory, uid)
        partial = final + ".part"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.writev(fd, [meta] + fragments)
        finally:
            os.close(fd)
        os.rename(partial, final)
        response = CStoreRSP(
            messageIDBeingRespondedTo=request.messageID,
            status=0,
            affectedSOPClassUID=request.affectedSOPClassUID,
            affectedSOPInstanceUID=uid,
        )
        encoded = encodeCommand(response)
        self.connection.sendall(
            _PDU_HEADER.pack(pdu.P_DATA_TF, len(encoded) + 6) + _PDV_HEADER.pack(len(encoded) + 2, contextID, 3) + encoded
        )


def serve(port: int, directory: str) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, port))
    listener.listen(8)
    while True:
        connection, _ = listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            FloorAssociation(connection, directory).run()
        except (OSError, EOFError, pdu.PDUDecodeError) as e:
            print("association ended: %s" % (e,), file=sys.stderr)
        finally:
            connection.close()


RECEIVERS = {
    "dcmtk": lambda output, port: ([os.path.join(DCMTK, "storescp"), "-od", output, str(port)], dcmtkEnvironment()),
    "dicomd": lambda output, port: ([sys.executable, "-m", "dicomd", "storescp", "-od", output, str(port)], pythonEnvironment()),
    "floor": lambda output, port: ([sys.executable, os.path.abspath(__file__), "--serve", str(port), output], pythonEnvironment()),
}


def receive(name: str, work: str, paths) -> tuple:
    """
    Start receiver C{name}, send it C{paths} on one association, and
    return the objects per second and the receiver's CPU seconds.
    """
    output = os.path.join(work, name)
    os.makedirs(output)
    port = freePort()
    argv, env = RECEIVERS[name](output, port)
    server = ServerProcess(name, argv, env, work, port, output + ".log")
    try:
        before = cpuSeconds(server.process.pid)
        started = time.monotonic()
        result = subprocess.run(
            [os.path.join(DCMTK, "storescu"), HOST, str(port)] + list(paths),
            env=dcmtkEnvironment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        seconds = time.monotonic() - started
        cpu = cpuSeconds(server.process.pid) - before
        if result.returncode != 0:
            raise BenchmarkError("storescu to %s failed:\n%s" % (name, result.stdout.decode("utf-8", "replace")[-2000:]))
        stored = [entry for entry in os.listdir(output) if not entry.endswith(".part")]
        if len(stored) != len(paths):
            raise BenchmarkError("%s stored %d of %d objects" % (name, len(stored), len(paths)))
        return len(paths) / seconds, cpu
    finally:
        server.stop()
        shutil.rmtree(output, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DIRECTORY"), help="run the floor SCP (what the benchmark starts)")
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "dicomd-bench-corpus"))
    parser.add_argument("--corpora", default="ct256,ct512")
    parser.add_argument("--output", default=None, help="where the receivers store (default: a temporary directory)")
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args(argv)
    if options.serve:
        serve(int(options.serve[0]), options.serve[1])
        return 0
    if options.output is not None:
        os.makedirs(options.output, exist_ok=True)
    names = ("dcmtk", "dicomd", "floor")
    print("one association, storescu +sd, received in %s; median of %d turns" % (options.output or tempfile.gettempdir(), options.runs))
    print("%-8s %-8s %12s %10s %12s %10s" % ("corpus", "receiver", "objects/s", "x storescp", "CPU s", "CPU ms/obj"))
    for corpusName in options.corpora.split(","):
        corpus = next(c for c in CORPORA if c.name == corpusName)
        corpus.make(options.corpus)
        paths = corpus.paths(options.corpus)
        results = {name: [] for name in names}
        for _ in range(options.runs):
            work = tempfile.mkdtemp(prefix="dicomd-bench-floor-", dir=options.output)
            try:
                for name in names:
                    results[name].append(receive(name, work, paths))
            except BenchmarkError as e:
                print("benchmark failed: %s" % (e,), file=sys.stderr)
                return 1
            finally:
                shutil.rmtree(work, ignore_errors=True)
        for name in names:
            ratios = [rate / dcmtk[0] for (rate, _), dcmtk in zip(results[name], results["dcmtk"])]
            rate = statistics.median(r for r, _ in results[name])
            cpu = statistics.median(c for _, c in results[name])
            print("%-8s %-8s %12.0f %10.2f %12.2f %10.3f" % (corpusName, name, rate, statistics.median(ratios), cpu, cpu * 1000 / len(paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
