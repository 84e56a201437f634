"""
Benchmark: query/retrieve, dicomd against DCMTK's dcmqrscp.

Two measurements, each against both servers in the same run:

  1. Study-level C-FIND (Study Root) by PatientID, by a PatientName
     wildcard and by a StudyDate range, as median and 99th percentile
     latency, in C{--rounds} rounds (5 by default) that each measure
     every server in turn; the table gives the median and 99th
     percentile of all rounds, and the range of the rounds' medians:

       - with DCMTK's C{/usr/bin/findscu}, one process (and association)
         per query, timed from process start to exit: what a script sees,
         dominated by the process and association start;
       - on one association, timed from sending the C-FIND-RQ to receiving
         the final response: with dicomd's own requestor API
         (L{dicomd.net.requestor.connect}) and with pynetdicom's SCU.

     The servers are C{twistd dicomd} on an index of 100,000 instances
     (1,000 patients, 5,000 studies of 2 series of 10 instances), the same
     daemon on an index of 4,000 instances (the first 100 of those
     patients, their 500 studies of 2 series of 4 instances), and
     dcmqrscp on those same 4,000 instances, the largest index it
     accepts: its C{index.dat} holds at most 500 studies per storage area
     (C{DB_UpperMaxStudies}; a 501st evicts the oldest, deleting its
     files), and it is meant to stay under 32 MiB (C{DB_lseek} logs a "DB
     ALERT" error for every access beyond that), which at 8,032 bytes per
     instance record is 4,172 instances.  dcmqrscp's index is loaded with
     C{dcmqridx}, whose duplicate check rereads the whole index for each
     file (its load time grows with the square of the instances).
     dicomd's rows are generated straight into
     L{dicomd.archive.index.SQLiteArchiveIndex.addInstances} from pydicom
     header data sets: its files need not exist for C-FIND.  dcmqrscp
     gets tiny header-only files of the same data sets.

  2. Retrieval of one study of 500 CT images of 512 x 512 x 16 bit (the
     same 500 files for both servers), in images per second, timed from
     the DCMTK client's start to its exit, the two servers taking turns
     (the one that goes first changing from turn to turn, each run
     starting on a disk with nothing left to write back),
     C{--move-repeats} runs each (5 by default; the median counts):

       - C-MOVE with C{/usr/bin/movescu} to DCMTK's C{/usr/bin/storescp},
         started fresh for each run;
       - C-GET with C{/usr/bin/getscu}, which receives the sub-operations
         on its own association;

     each with the receiver writing the files to disk (under C{--work}),
     writing them to tmpfs (C{/dev/shm}), and with C{--ignore} (it
     receives and answers, writes nothing), which shows more of the
     sender's own speed.

DCMTK's programs run with C{TCP_NODELAY=1}.  The prepared indexes and
files are kept in C{--work} and reused by later runs (delete the
directory to start over).  Run from the checkout:

    python bench/query.py [--work DIR] [--rounds 5] [--repeats 10]
                          [--association-repeats 40] [--move-repeats 5]
                          [--skip-dcmqrscp] [--skip-find] [--skip-move]
                          [--postgresql postgresql://...]

With C{--postgresql URL} the large index is also generated in that
PostgreSQL database (emptied first) and served by a daemon started with
C{--database URL}, measured beside the SQLite one.

This is not a test: it asserts only that every query returned the same
number of matches each time and every C-MOVE delivered every image.
"""

import argparse
import collections
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench.common import DCMTK, HOST, ServerProcess, dcmtkEnvironment, freePort, inTurn, processorModel, pythonEnvironment  # noqa: E402

DICOMD_TITLE = "DICOMD"
DESTINATION_TITLE = "STORESCP"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
UID_ROOT = "1.2.826.0.1.3680043.9.7433.1"

#: Two-syllable surnames, one per block of ten consecutive patients, all of
#: the same length so that no surname is the prefix of another.
_SYLLABLES = ["Ba", "Ke", "Lo", "Mi", "Nu", "Ra", "Si", "To", "Va", "Ze"]
SURNAMES = [a + b.lower() + "nen" for a in _SYLLABLES for b in _SYLLABLES]
GIVEN_NAMES = ["Anna", "Bert", "Carla", "Dirk", "Eva", "Frank", "Gina", "Hugo", "Ines", "Jan"]
DESCRIPTIONS = ["CT CHEST", "CT ABDOMEN", "MR BRAIN", "MR KNEE", "CT HEAD", "XR THORAX"]
FIRST_DAY = 735599  # date(2015, 1, 1).toordinal()
DAYS = 3653  # 2015-01-01 .. 2024-12-31


# -- the data -------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """
    The generated archive: C{patients} patients of C{studies} studies of
    C{series} series of C{instances} instances.  Patient C{i} is the same
    in every shape (its values depend only on C{i}), so a smaller shape is
    a subset of a larger one.
    """

    patients: int
    studies: int = 5
    series: int = 2
    instances: int = 10

    @property
    def total(self) -> int:
        return self.patients * self.studies * self.series * self.instances

    @property
    def studyCount(self) -> int:
        return self.patients * self.studies

    @property
    def key(self) -> str:
        return "%dx%dx%dx%d" % (self.patients, self.studies, self.series, self.instances)


def patientHeaders(i: int, shape: Shape):
    """
    The header data sets of patient C{i}'s instances.
    """
    from pydicom.dataset import Dataset

    rng = random.Random("patient-%d" % i)
    patientID = "PAT%05d" % i
    name = "%s^%s" % (SURNAMES[(i // 10) % len(SURNAMES)], GIVEN_NAMES[i % len(GIVEN_NAMES)])
    birth = "19%02d%02d%02d" % (rng.randrange(30, 100), rng.randrange(1, 13), rng.randrange(1, 29))
    sex = rng.choice("MF")
    for s in range(shape.studies):
        from datetime import date

        studyDate = date.fromordinal(FIRST_DAY + rng.randrange(DAYS)).strftime("%Y%m%d")
        studyTime = "%02d%02d%02d" % (rng.randrange(24), rng.randrange(60), rng.randrange(60))
        description = rng.choice(DESCRIPTIONS)
        studyUID = "%s.%d.%d" % (UID_ROOT, i, s + 1)
        for r in range(shape.series):
            seriesUID = "%s.%d" % (studyUID, r + 1)
            modality = description[:2]
            for n in range(shape.instances):
                ds = Dataset()
                ds.SpecificCharacterSet = "ISO_IR 100"
                ds.SOPClassUID = CT_IMAGE_STORAGE
                ds.SOPInstanceUID = "%s.%d" % (seriesUID, n + 1)
                ds.StudyDate = studyDate
                ds.StudyTime = studyTime
                ds.AccessionNumber = "A%07d" % (i * 10 + s)
                ds.Modality = modality
                ds.ReferringPhysicianName = "Referrer^%s" % GIVEN_NAMES[(i + s) % len(GIVEN_NAMES)]
                ds.StudyDescription = description
                ds.PatientName = name
                ds.PatientID = patientID
                ds.PatientBirthDate = birth
                ds.PatientSex = sex
                ds.StudyInstanceUID = studyUID
                ds.SeriesInstanceUID = seriesUID
                ds.StudyID = str(s + 1)
                ds.SeriesNumber = r + 1
                ds.InstanceNumber = n + 1
                yield ds


@dataclass(frozen=True)
class Query:
    """
    One study-level C-FIND: its name in the tables and its matching keys.
    """

    name: str
    keys: Dict[str, str]


#: The return keys of every query, as a study browser asks for them.
RETURN_KEYS = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
    "StudyInstanceUID",
]

QUERIES = [
    Query("PatientID", {"PatientID": "PAT00042"}),
    Query("PatientName wildcard", {"PatientName": SURNAMES[4] + "*"}),
    Query("StudyDate range", {"StudyDate": "20200101-20200331"}),
]


def identifierKeys(query: Query) -> List[str]:
    """
    The C{-k} arguments of findscu for a query.
    """
    keys = ["QueryRetrieveLevel=STUDY"]
    for keyword in RETURN_KEYS:
        value = query.keys.get(keyword)
        keys.append(keyword if value is None else "%s=%s" % (keyword, value))
    return keys


# -- preparing the servers' data ------------------------------------------------


def log(message: str) -> None:
    print(message, flush=True)


def _marker(directory: str) -> Optional[str]:
    try:
        with open(os.path.join(directory, ".prepared")) as f:
            return f.read().strip()
    except OSError:
        return None


def _mark(directory: str, value: str) -> None:
    with open(os.path.join(directory, ".prepared"), "w") as f:
        f.write(value + "\n")


def prepareDicomdIndex(directory: str, shape: Shape, database: Optional[str] = None) -> None:
    """
    A dicomd data directory whose index holds C{shape}, in the area of
    the default AE title; the files do not exist.

    @param database: a C{postgresql://} URL to keep the index in (its
        tables are emptied first), or C{None} for SQLite in the directory.
    """
    from dicomd.archive.databases import displayName, openIndex
    from dicomd.archive.index import StoredFile
    from dicomd.archive.service import INDEX_FILE

    key = shape.key if database is None else "%s %s" % (shape.key, database)
    if _marker(directory) == key:
        return
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    log("dicomd: generating an index of %d instances in %s" % (shape.total, displayName(database or directory)))
    started = time.monotonic()
    index = openIndex(database or os.path.join(directory, INDEX_FILE))
    index.open()
    if database is not None:
        with index.transaction() as db:
            db.execute("TRUNCATE patient, study, series, instance, forward, run")
    try:
        for i in range(shape.patients):
            items = [
                (header, StoredFile("absent/%s" % header.SOPInstanceUID, 1024, EXPLICIT_VR_LITTLE_ENDIAN, 1.6e9 + i))
                for header in patientHeaders(i, shape)
            ]
            index.addInstances(DICOMD_TITLE, items)
            if (i + 1) % 100 == 0:
                log("  %d patients, %.0f s" % (i + 1, time.monotonic() - started))
    finally:
        index.close()
    _mark(directory, key)


def writeHeaderFile(path: str, dataset) -> None:
    from pydicom.dataset import FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    dataset.file_meta = meta
    dataset.save_as(path, enforce_file_format=True)


def runDcmqridx(area: str, paths: Sequence[str], chunk: int = 500) -> None:
    for start in range(0, len(paths), chunk):
        subprocess.run([os.path.join(DCMTK, "dcmqridx"), area] + list(paths[start : start + chunk]), check=True)


def prepareDcmqrscpIndex(directory: str, shape: Shape) -> None:
    """
    A dcmqrscp storage area (C{directory}/area with its C{index.dat}) of
    C{shape}, from header-only files in C{directory}/files.
    """
    if _marker(directory) == shape.key:
        return
    shutil.rmtree(directory, ignore_errors=True)
    files = os.path.join(directory, "files")
    area = os.path.join(directory, "area")
    os.makedirs(files)
    os.makedirs(area)
    log("dcmqrscp: writing %d header-only files in %s" % (shape.total, files))
    paths = []
    for i in range(shape.patients):
        for header in patientHeaders(i, shape):
            path = os.path.join(files, header.SOPInstanceUID + ".dcm")
            writeHeaderFile(path, header)
            paths.append(path)
    log("dcmqrscp: indexing them with dcmqridx (each file rereads the index)")
    started = time.monotonic()
    for start in range(0, len(paths), 1000):
        runDcmqridx(area, paths[start : start + 1000])
        log("  %d files, %.0f s" % (start + 1000, time.monotonic() - started))
    _mark(directory, shape.key)


def moveStudyPaths(directory: str, count: int) -> List[str]:
    return [os.path.join(directory, "%05d.dcm" % (n,)) for n in range(1, count + 1)]


def prepareMoveStudy(work: str, count: int) -> str:
    """
    The C-MOVE study: C{count} CT images of 512 x 512 x 16 bit, one study,
    one series, in C{work}/move-dicomd/study (dicomd's data directory for
    the C-MOVE runs, with the files indexed) and indexed for dcmqrscp in
    C{work}/move-dcmqrscp.

    @return: the Study Instance UID.
    """
    from pydicom import dcmread

    from dicomd.archive.index import SQLiteArchiveIndex, StoredFile
    from dicomd.archive.service import INDEX_FILE
    from tests.dicomfiles import makeDataset, writeFile

    dicomdData = os.path.join(work, "move-dicomd")
    dcmqrscpArea = os.path.join(work, "move-dcmqrscp")
    studyDirectory = os.path.join(dicomdData, "study")
    studyUID = UID_ROOT + ".9999.1"
    key = "%d-%s" % (count, studyUID)
    if _marker(dicomdData) == key and _marker(dcmqrscpArea) == key:
        return studyUID
    for directory in (dicomdData, dcmqrscpArea):
        shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(studyDirectory)
    os.makedirs(dcmqrscpArea)
    log("writing the C-MOVE study: %d images of 512x512x16 bit" % (count,))
    paths = moveStudyPaths(studyDirectory, count)
    for n, path in enumerate(paths, 1):
        dataset = makeDataset(
            rows=512,
            columns=512,
            patientName="Move^Bench",
            patientID="PAT-MOVE",
            studyInstanceUID=studyUID,
            seriesInstanceUID=studyUID + ".1",
            sopInstanceUID="%s.1.%d" % (studyUID, n),
        )
        dataset.InstanceNumber = n
        writeFile(path, dataset)
    index = SQLiteArchiveIndex(os.path.join(dicomdData, INDEX_FILE))
    index.open()
    try:
        items = []
        for path in paths:
            header = dcmread(path, stop_before_pixels=True)
            items.append(
                (
                    header,
                    StoredFile(os.path.relpath(path, dicomdData), os.path.getsize(path), EXPLICIT_VR_LITTLE_ENDIAN, time.time()),
                )
            )
        index.addInstances(DICOMD_TITLE, items)
    finally:
        index.close()
    log("dcmqrscp: indexing the C-MOVE study with dcmqridx")
    runDcmqridx(dcmqrscpArea, paths)
    _mark(dicomdData, key)
    _mark(dcmqrscpArea, key)
    return studyUID


# -- servers ------------------------------------------------------------------------


class Server(ServerProcess):
    """
    A running server: its name in the tables, AE title and port; its log
    is appended to.
    """

    def __init__(self, name: str, title: str, argv: List[str], port: int, env: dict, cwd: str, logPath: str):
        self.title = title
        super().__init__(name, argv, env, cwd, port, logPath, append=True)


def startDicomd(name: str, work: str, dataDirectory: str, destinationPort: Optional[int] = None, database: Optional[str] = None) -> Server:
    port = freePort()
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "dicomd"]
    argv += ["--listen", "tcp:%d:interface=%s" % (port, HOST), "--output-directory", dataDirectory]
    if database is not None:
        argv += ["--database", database]
    if destinationPort is not None:
        argv += ["--peer", "%s:%s:%d" % (DESTINATION_TITLE, HOST, destinationPort)]
    logPath = os.path.join(work, "logs", name.replace(" ", "-") + ".log")
    return Server(name, DICOMD_TITLE, argv, port, pythonEnvironment(), work, logPath)


def startDcmqrscp(name: str, work: str, areas: Dict[str, str], destinationPort: Optional[int] = None) -> Server:
    """
    dcmqrscp (forking, its default) with one read-only AE per storage area.
    """
    port = freePort()
    config = os.path.join(work, "dcmqrscp-%d.cfg" % (port,))
    hosts = ""
    if destinationPort is not None:
        hosts = "destination = (%s, %s, %d)\n" % (DESTINATION_TITLE, HOST, destinationPort)
    aes = "".join("%s %s R (500, 1024mb) ANY\n" % (title, area) for title, area in areas.items())
    with open(config, "w") as f:
        f.write(
            "NetworkTCPPort = %d\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
            "HostTable BEGIN\n%sHostTable END\nVendorTable BEGIN\nVendorTable END\n"
            "AETable BEGIN\n%sAETable END\n" % (port, hosts, aes)
        )
    argv = [os.path.join(DCMTK, "dcmqrscp"), "-c", config]
    logPath = os.path.join(work, "logs", name.replace(" ", "-") + ".log")
    server = Server(name, list(areas)[0], argv, port, dcmtkEnvironment(), work, logPath)
    return server


# -- measuring C-FIND -----------------------------------------------------------------


@dataclass
class Latencies:
    """
    Latencies of one query against one server with one client, in seconds.
    """

    matches: int
    seconds: List[float]
    stalls: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p99(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def findscuOnce(server: Server, query: Query) -> (float, int):
    # -v logs each response's arrival and the final status; -sr leaves out
    # the response data sets, whose printing would be findscu's own cost.
    argv = [os.path.join(DCMTK, "findscu"), "-S", "-v", "-sr", "-aec", server.title, HOST, str(server.port)]
    for key in identifierKeys(query):
        argv += ["-k", key]
    started = time.perf_counter()
    result = subprocess.run(argv, env=dcmtkEnvironment(), capture_output=True, text=True, errors="replace")
    elapsed = time.perf_counter() - started
    output = result.stdout + result.stderr
    if "Received Final Find Response (Success)" not in output:
        raise RuntimeError("findscu against %s failed:\n%s" % (server.name, output[-2000:]))
    return elapsed, output.count("(Pending)")


def measureFindscu(server: Server, query: Query, repeats: int) -> Latencies:
    findscuOnce(server, query)  # warm the caches
    seconds, counts = [], set()
    for _ in range(repeats):
        elapsed, matches = findscuOnce(server, query)
        seconds.append(elapsed)
        counts.add(matches)
    if len(counts) != 1:
        raise RuntimeError("%s returned %s matches for %s" % (server.name, sorted(counts), query.name))
    return Latencies(counts.pop(), seconds)


def measureOneAssociation(client: str, server: Server, queries: Sequence[Query], repeats: int) -> Dict[str, Latencies]:
    """
    Run the queries on one association with a client of this script
    (C{_requestor} or C{_pynetdicom}) in a child process.
    """
    request = {
        "port": server.port,
        "title": server.title,
        "repeats": repeats,
        "queries": [{"name": q.name, "keys": identifierKeys(q)} for q in queries],
    }
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), client],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=pythonEnvironment(),
        cwd=REPO_ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError("%s client against %s failed:\n%s%s" % (client, server.name, result.stdout, result.stderr[-3000:]))
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    latencies = {}
    for name, entry in answer.items():
        counts = collections.Counter(entry["matches"])
        matches, _ = counts.most_common(1)[0]
        short = sum(n for count, n in counts.items() if count < matches)
        # pynetdicom 3.0 now and then drops a pending response ("Received
        # unexpected C-FIND service message"); dicomd's own requestor, on
        # the same server, never misses one.
        droppedOne = client == "_pynetdicom" and set(counts) <= {matches, matches - 1}
        if len(counts) != 1 and not droppedOne:
            raise RuntimeError("%s returned %s matches for %s" % (server.name, sorted(counts), name))
        latencies[name] = Latencies(matches, entry["seconds"], entry.get("stalls", 0) + short)
    return latencies


def _identifier(keys: Sequence[str]):
    from pydicom.dataset import Dataset

    identifier = Dataset()
    for key in keys:
        keyword, _, value = key.partition("=")
        setattr(identifier, keyword, value)
    return identifier


def requestorClient() -> int:
    """
    C{python bench/query.py _requestor}: read a request from standard
    input, run each query C{repeats} times on one association opened with
    dicomd's requestor API, print the latencies as JSON.
    """
    from twisted.internet import defer, task
    from twisted.internet.endpoints import TCP4ClientEndpoint

    from dicomd.dataset import encodeDataSet
    from dicomd.dimse.commands import CFindRQ
    from dicomd.net.requestor import connect

    request = json.load(sys.stdin)

    @defer.inlineCallbacks
    def run(reactor):
        association = yield connect(
            TCP4ClientEndpoint(reactor, HOST, request["port"]),
            calledAETitle=request["title"],
            callingAETitle="BENCH",
            presentationContexts=[(STUDY_ROOT_FIND, [EXPLICIT_VR_LITTLE_ENDIAN])],
            reactor=reactor,
        )
        context = association.contextFor(STUDY_ROOT_FIND)
        answer = {}
        for query in request["queries"]:
            identifier = encodeDataSet(_identifier(query["keys"]), EXPLICIT_VR_LITTLE_ENDIAN)
            entry = answer[query["name"]] = {"matches": [], "seconds": []}
            for attempt in range(request["repeats"] + 1):
                pending = []
                started = time.perf_counter()
                final, _ = yield association.request(
                    context.contextID,
                    CFindRQ(affectedSOPClassUID=STUDY_ROOT_FIND),
                    identifier,
                    onPending=lambda message, data: pending.append(data),
                )
                elapsed = time.perf_counter() - started
                if final.status != 0:
                    raise RuntimeError("C-FIND status 0x%04X" % (final.status,))
                if attempt:  # the first one warms the caches
                    entry["matches"].append(len(pending))
                    entry["seconds"].append(elapsed)
        yield association.release()
        print(json.dumps(answer))

    task.react(run)
    return 0


def pynetdicomClient() -> int:
    """
    C{python bench/query.py _pynetdicom}: as L{requestorClient}, with
    pynetdicom's SCU.

    pynetdicom 3.0 now and then loses a C-FIND response when C-FINDs
    follow each other quickly (against dcmqrscp as well as dicomd): it
    waits until its DIMSE timeout and aborts.  Such a query is not timed;
    it is counted in C{stalls} and the remaining ones go on a new
    association.
    """
    from pynetdicom import AE

    request = json.load(sys.stdin)
    ae = AE(ae_title="BENCH")
    ae.dimse_timeout = 2
    ae.add_requested_context(STUDY_ROOT_FIND, [EXPLICIT_VR_LITTLE_ENDIAN])

    def associate():
        association = ae.associate(HOST, request["port"], ae_title=request["title"])
        if not association.is_established:
            raise RuntimeError("association not established")
        # pynetdicom leaves Nagle's algorithm on: its C-FIND-RQ (command,
        # then identifier) would wait for a delayed ACK, ~40 ms a query.
        association.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return association

    association = associate()
    answer = {}
    try:
        for query in request["queries"]:
            identifier = _identifier(query["keys"])
            entry = answer[query["name"]] = {"matches": [], "seconds": [], "stalls": 0}
            for attempt in range(request["repeats"] + 1):
                matches, lost = 0, False
                started = time.perf_counter()
                for status, _ in association.send_c_find(identifier, STUDY_ROOT_FIND):
                    if "Status" not in status:
                        lost = True
                    elif status.Status in (0xFF00, 0xFF01):
                        matches += 1
                    elif status.Status != 0:
                        raise RuntimeError("C-FIND status 0x%04X" % (status.Status,))
                elapsed = time.perf_counter() - started
                if lost:
                    entry["stalls"] += 1
                    association.abort()
                    association = associate()
                elif attempt:
                    entry["matches"].append(matches)
                    entry["seconds"].append(elapsed)
    finally:
        association.release()
    print(json.dumps(answer))
    return 0


# -- measuring C-MOVE ---------------------------------------------------------------


#: Where a retrieval's receiver puts what it receives.
RETRIEVE_MODES = ("disk", "tmpfs", "ignore")


def receiverDirectory(work: str, mode: str) -> Optional[str]:
    """
    A fresh directory for a receiver in C{mode}, or C{None} for
    C{ignore}.
    """
    if mode == "ignore":
        return None
    return tempfile.mkdtemp(prefix="received-", dir=work if mode == "disk" else "/dev/shm")


def checkRetrieved(operation: str, server: "Server", output: str, destination: Optional[str], count: int, success: str) -> None:
    received = len(os.listdir(destination)) if destination is not None else 0
    if destination is not None:
        shutil.rmtree(destination, ignore_errors=True)
    if success not in output or received != (0 if destination is None else count):
        raise RuntimeError("%s from %s: %d of %d images arrived:\n%s" % (operation, server.name, received, count, output[-2000:]))


def moveOnce(work: str, server: Server, destinationPort: int, studyUID: str, count: int, mode: str) -> float:
    """
    C-MOVE the study from C{server} to a fresh storescp in C{mode}; check
    that every image arrived.

    @return: the seconds movescu took.
    """
    destination = receiverDirectory(work, mode)
    logPath = os.path.join(work, "logs", "storescp.log")
    storescp = Server(
        "storescp",
        DESTINATION_TITLE,
        [os.path.join(DCMTK, "storescp"), "-aet", DESTINATION_TITLE]
        + (["--ignore"] if destination is None else ["-od", destination])
        + [str(destinationPort)],
        destinationPort,
        dcmtkEnvironment(),
        work,
        logPath,
    )
    try:
        argv = [os.path.join(DCMTK, "movescu"), "-S", "-v", "-aec", server.title, "-aem", DESTINATION_TITLE]
        argv += ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + studyUID, HOST, str(server.port)]
        started = time.perf_counter()
        result = subprocess.run(argv, env=dcmtkEnvironment(), capture_output=True, text=True, errors="replace")
        elapsed = time.perf_counter() - started
    finally:
        storescp.stop()
    checkRetrieved("C-MOVE", server, result.stdout + result.stderr, destination, count, "Received Final Move Response (Success)")
    return elapsed


def getOnce(work: str, server: Server, studyUID: str, count: int, mode: str) -> float:
    """
    C-GET the study from C{server} with getscu in C{mode}; check that
    every image arrived.

    @return: the seconds getscu took.
    """
    destination = receiverDirectory(work, mode)
    argv = [os.path.join(DCMTK, "getscu"), "-S", "-v", "-aec", server.title]
    argv += ["--ignore"] if destination is None else ["-od", destination]
    argv += ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + studyUID, HOST, str(server.port)]
    started = time.perf_counter()
    result = subprocess.run(argv, env=dcmtkEnvironment(), capture_output=True, text=True, errors="replace")
    elapsed = time.perf_counter() - started
    checkRetrieved("C-GET", server, result.stdout + result.stderr, destination, count, "Received C-GET Response (Success)")
    return elapsed


def printRetrieveTable(results: Dict[tuple, List[float]], count: int, repeats: int) -> None:
    """
    @param results: C{(operation, mode, server name)} -> the seconds of
        each run.
    """
    print()
    print("Retrieval of a study of %d CT images of 512x512x16 bit, median of %d runs, servers taking turns" % (count, repeats))
    print("%-7s %-8s| %-22s | %-22s | %6s" % ("", "receiver", "dcmqrscp", "dicomd", "ratio"))
    for operation in ("C-MOVE", "C-GET"):
        for mode in RETRIEVE_MODES:
            dicomd = results.get((operation, mode, "dicomd"))
            if dicomd is None:
                continue
            dicomdSeconds = statistics.median(dicomd)
            row = "%-7s %-8s|" % (operation, mode)
            dcmqrscp = results.get((operation, mode, "dcmqrscp"))
            if dcmqrscp is not None:
                dcmqrscpSeconds = statistics.median(dcmqrscp)
                row += " %6.3f s %6.0f img/s |" % (dcmqrscpSeconds, count / dcmqrscpSeconds)
            else:
                row += " %-22s |" % ("",)
            row += " %6.3f s %6.0f img/s |" % (dicomdSeconds, count / dicomdSeconds)
            if dcmqrscp is not None:
                row += " %5.2fx" % (dcmqrscpSeconds / dicomdSeconds,)
            print(row)
    print("(C-MOVE to DCMTK storescp, C-GET by DCMTK getscu; receiver: writing to disk, to tmpfs, or --ignore;"
          " ratio above 1: dicomd is faster)")


# -- the report -----------------------------------------------------------------------


def milliseconds(seconds: float) -> str:
    return "%.1f" % (seconds * 1000,)


def printFindTable(title: str, rows: List[tuple]) -> None:
    """
    @param rows: (server, query, client, [L{Latencies} of each round]).
    """
    print()
    print(title)
    print("%-14s %-22s %-28s %7s %10s %10s %18s" % ("server", "query", "client", "matches", "median ms", "p99 ms", "round medians ms"))
    stalls = 0
    for server, query, client, rounds in rows:
        latencies = Latencies(rounds[0].matches, [s for each in rounds for s in each.seconds], sum(each.stalls for each in rounds))
        medians = sorted(each.median for each in rounds)
        print(
            "%-14s %-22s %-28s %7d %10s %10s %18s"
            % (
                server,
                query,
                client,
                latencies.matches,
                milliseconds(latencies.median),
                milliseconds(latencies.p99),
                "%s-%s" % (milliseconds(medians[0]).strip(), milliseconds(medians[-1]).strip()),
            )
        )
        stalls += latencies.stalls
    if stalls:
        print(
            "(pynetdicom lost responses in %d queries: a final response (the query was not timed and the rest went on"
            " a new association) or one pending response (timed all the same))" % (stalls,)
        )


def measureFind(work: str, options, large: "Shape", small: "Shape") -> None:
    """
    The C-FIND measurements, printed as a table: C{options.rounds} rounds,
    each measuring every server in turn, so that what else the machine
    does falls on all of them alike.
    """
    servers = []
    try:
        servers.append(startDicomd("dicomd %d" % (large.total,), work, os.path.join(work, "dicomd-large")))
        if options.postgresql:
            servers.append(
                startDicomd(
                    "dicomd %d PostgreSQL" % (large.total,), work, os.path.join(work, "dicomd-large-postgresql"), database=options.postgresql
                )
            )
        servers.append(startDicomd("dicomd %d" % (small.total,), work, os.path.join(work, "dicomd-small")))
        if not options.skip_dcmqrscp:
            servers.append(
                startDcmqrscp(
                    "dcmqrscp %d" % (small.total,), work, {"QRFIND": os.path.join(work, "dcmqrscp-small", "area")}
                )
            )
        clients = [("_requestor", "dicomd requestor (1 assoc)")]
        if not options.skip_pynetdicom:
            clients.append(("_pynetdicom", "pynetdicom (1 assoc)"))
        rows = {}
        for round in range(options.rounds):
            for server in servers:
                for query in QUERIES:
                    latencies = measureFindscu(server, query, options.repeats)
                    rows.setdefault((server.name, query.name, "findscu (process)"), []).append(latencies)
                for client, label in clients:
                    latencies = measureOneAssociation(client, server, QUERIES, options.association_repeats)
                    for query in QUERIES:
                        rows.setdefault((server.name, query.name, label), []).append(latencies[query.name])
                log("round %d: measured %s" % (round + 1, server.name))
    finally:
        for server in servers:
            server.stop()
    printFindTable(
        "Study-level C-FIND, Study Root: %d rounds of %d findscu processes and %d queries on one association"
        % (options.rounds, options.repeats, options.association_repeats),
        [key + (rounds,) for key, rounds in rows.items()],
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_requestor"]:
        return requestorClient()
    if argv[:1] == ["_pynetdicom"]:
        return pynetdicomClient()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "dicomd-bench-query"))
    parser.add_argument("--rounds", type=int, default=5, help="C-FIND rounds, each measuring every server in turn")
    parser.add_argument("--repeats", type=int, default=10, help="findscu runs per (server, query) in each round")
    parser.add_argument("--association-repeats", type=int, default=40, help="queries per (server, query) on one association in each round")
    parser.add_argument("--move-repeats", type=int, default=5, help="runs per (server, retrieval, receiver mode); the median counts")
    parser.add_argument("--move-images", type=int, default=500)
    parser.add_argument("--patients", type=int, default=1000, help="patients of the large dicomd index")
    parser.add_argument("--small-patients", type=int, default=100, help="patients of the index dcmqrscp gets (5 studies each)")
    parser.add_argument("--small-instances", type=int, default=4, help="instances per series in the index dcmqrscp gets")
    parser.add_argument("--skip-dcmqrscp", action="store_true")
    parser.add_argument("--skip-find", action="store_true", help="measure only the retrievals")
    parser.add_argument("--skip-move", action="store_true", help="leave out the retrievals (C-MOVE and C-GET)")
    parser.add_argument("--skip-pynetdicom", action="store_true")
    parser.add_argument("--postgresql", metavar="URL", help="also serve the large index from this PostgreSQL database (emptied first)")
    options = parser.parse_args(argv)

    work = os.path.abspath(options.work)
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    large, small = Shape(options.patients), Shape(options.small_patients, instances=options.small_instances)
    if small.studyCount > 500:
        parser.error("dcmqrscp holds at most 500 studies per storage area: --small-patients 100 at most")
    if not options.skip_find:
        prepareDicomdIndex(os.path.join(work, "dicomd-large"), large)
        prepareDicomdIndex(os.path.join(work, "dicomd-small"), small)
        if options.postgresql:
            prepareDicomdIndex(os.path.join(work, "dicomd-large-postgresql"), large, options.postgresql)
        if not options.skip_dcmqrscp:
            prepareDcmqrscpIndex(os.path.join(work, "dcmqrscp-small"), small)
    studyUID = None
    if not options.skip_move:
        studyUID = prepareMoveStudy(work, options.move_images)

    print()
    print("query/retrieve benchmark, %s, Python %s, %s, %d CPUs (%s), load average %.1f"
          % (platform.node(), platform.python_version(), platform.platform(), os.cpu_count(), processorModel(), os.getloadavg()[0]))
    if not options.skip_find:
        print("large index: %d instances (%d patients, %d studies); small index: %d instances (%d patients, %d studies)"
              % (large.total, large.patients, large.studyCount, small.total, small.patients, small.studyCount))
        measureFind(work, options, large, small)

    if not options.skip_move:
        destinationPort = freePort()
        moveServers = []
        results = {}
        try:
            moveServers.append(startDicomd("dicomd", work, os.path.join(work, "move-dicomd"), destinationPort))
            if not options.skip_dcmqrscp:
                moveServers.append(startDcmqrscp("dcmqrscp", work, {"QRMOVE": os.path.join(work, "move-dcmqrscp")}, destinationPort))
            for server in moveServers:
                moveOnce(work, server, destinationPort, studyUID, options.move_images, "ignore")  # warm the page cache
            for mode in RETRIEVE_MODES:
                for attempt in range(options.move_repeats):
                    for server in inTurn(moveServers, attempt):
                        log("C-MOVE and C-GET from %s, receiver %s, run %d" % (server.name, mode, attempt + 1))
                        os.sync()
                        seconds = moveOnce(work, server, destinationPort, studyUID, options.move_images, mode)
                        results.setdefault(("C-MOVE", mode, server.name), []).append(seconds)
                        os.sync()
                        seconds = getOnce(work, server, studyUID, options.move_images, mode)
                        results.setdefault(("C-GET", mode, server.name), []).append(seconds)
        finally:
            for server in moveServers:
                server.stop()
        printRetrieveTable(results, options.move_images, options.move_repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
