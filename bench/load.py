"""
Benchmark: many concurrent DCMTK senders and a stream of C-FINDs against
one receiver; dicomd, DCMTK and pynetdicom in the same run.

The load (issue 7, "Load"): C{--senders} (50) DCMTK C{/usr/bin/storescu}
processes started at once, each sending its own C{--images} (200) small
CT images (C{--size} 64: 64 x 64 x 16 bit, about 9 KB a file) on one
association, while a study-level C-FIND with DCMTK's C{/usr/bin/findscu}
(Study Root, no matching keys: every study) is started every
C{--find-interval} seconds (0.1) until the last sender has finished (at
most C{--find-limit}, 16, at a time: a query due while 16 still run is not
started, and counted as skipped).  The
images are made once (in C{--corpus}, kept for later runs), with distinct
SOP Instance UIDs; sender I{i} sends the images of one series of study
I{i} mod C{--studies} (5), so several associations write into the same
study at the same time.

The receivers, one after the other, each fresh on a new output directory:

  - C{dicomd}: C{twistd -n dicomd} from this checkout with its defaults
    (stores into an indexed area, query/retrieve on), except the
    association limits: C{--max-associations 128
    --max-associations-per-host 128}, since every sender comes from
    127.0.0.1 and the default of 64 associations per host is fewer than
    50 senders and up to 16 findscu at once (change with
    C{--dicomd-option}).  Both the stores and the C-FINDs go to this one
    daemon.
  - C{dcmtk}: DCMTK's C{storescp --fork} (one child process per
    association) takes the stores.  storescp has no C-FIND, so the
    C-FINDs go to a separate DCMTK C{dcmqrscp} (forking too) whose index
    holds one instance of each of the same studies (made with
    C{dcmqridx} before the run): it answers the same query with the same
    number of studies, on the same loaded machine, but it does not see
    the stores.  Its memory is reported apart from storescp's.
  - C{pynetdicom}: a small pynetdicom 3 AE (written by this script, one
    thread per association) that writes each received data set to disk
    as it came (C{event.encoded_dataset()}) and answers the C-FINDs from
    an in-memory table of the studies it has received (no real matching:
    every study matches the universal query).

DCMTK's programs run with C{TCP_NODELAY=1}, as in the other benchmarks.
Every storescu calls as C{STORESCU} (its default) unless
C{--distinct-calling-titles} gives each its own (C{MOD001}...), as 50
modalities would have: dicomd's end-of-study tracker tells senders apart
by calling AE title and host, so with one title its 50 associations look
like one sender switching between the studies, and it ends (and logs) a
study episode at nearly every switch.

What is measured:

  - throughput: images acknowledged, divided by the wall-clock time from
    starting the first sender to the exit of the last one;
  - C-STORE latency as the sender sees it: every storescu runs with a
    C{--log-config} whose layout stamps each log line with microseconds;
    a store's latency is the time from its "Sending Store Request" line
    to its "Received Store Response" line (p50 and p99 over all stores);
  - C-FIND latency: from each findscu's own log (its "Sending Find
    Request" to its "Received Final Find Response" line: the query on an
    open association) and, separately, the findscu process from start to
    exit (association set-up and release included);
  - peak memory of the store receiver: its process tree (the receiver
    and all its descendants: storescp's forked children) is sampled from
    C{/proc} every C{--sample-interval} seconds (0.1); the peak of the
    summed VmRSS is reported (or the main process's own VmHWM, its exact
    peak, if that is higher: for dicomd and pynetdicom, one process, it
    is), with the peak summed PSS (shared pages divided among the
    processes sharing them, the fairer sum for forked children);
  - failed stores: images a sender did not get a success (or warning)
    response for, whatever the reason (refused association, failure
    status, abort, storescu error);
  - lost instances: acknowledged images that are missing afterwards.
    Checked after the last sender ended, with the receiver still
    running: the files (by name, C{CT.<SOP Instance UID>}), each parsed
    with pydicom (the right SOP Instance UID and a complete pixel data
    element), and for dicomd the rows of C{instance} in its
    C{.dicomd-index.sqlite}.

The targets of the issue, checked for dicomd: zero failed stores, zero
lost instances (files and index rows), peak RSS under 300 MB.  The exit
status is 1 when dicomd misses one.  The machine's load average is
printed with each run: other work on the machine changes the figures.

Run from the checkout:

    PYTHONPATH=. python3 bench/load.py [--senders 50] [--images 200]
        [--find-interval 0.1] [--studies 5] [--size 64]
        [--find-limit 16] [--servers dicomd,dcmtk,pynetdicom] [--rounds 1]
        [--distinct-calling-titles] [--corpus DIR] [--work DIR] [--keep]
        [--no-verify] [--dicomd-option=--fsync ...]

C{--keep} leaves the receivers' output, their logs and every storescu
log under C{--work}.
"""

import abc
import argparse
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, List, Optional, Set

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench.common import DCMTK, HOST, ServerProcess, cpuSeconds, dcmtkEnvironment, freePort, procStatus, pythonEnvironment  # noqa: E402

MB = 1e6
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: The root of the UIDs of the load corpus (the query benchmark uses .1).
UID_ROOT = "1.2.826.0.1.3680043.9.7433.3"
DICOMD_TITLE = "DICOMD"
DCMQRSCP_TITLE = "DCMQR"
PYNETDICOM_TITLE = "PYNETDICOM"
INDEX_FILE = ".dicomd-index.sqlite"

#: oflog (log4cplus) configuration for storescu and findscu: INFO lines on
#: standard output, stamped to the microsecond (C{%Q}: "123.456" ms).
LOG_CONFIG = """\
log4cplus.rootLogger = INFO, out
log4cplus.appender.out = log4cplus::ConsoleAppender
log4cplus.appender.out.layout = log4cplus::PatternLayout
log4cplus.appender.out.layout.ConversionPattern = %D{%Y-%m-%d %H:%M:%S.%Q} %P: %m%n
log4cplus.logger.dcmtk.apps.storescu.progress = WARN
log4cplus.logger.dcmtk.apps.findscu.progress = WARN
log4cplus.logger.dcmtk.dcmnet.responses = INFO
"""

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d+)\.(\d+) (\w): (.*)$")

#: The pynetdicom receiver: storage of every storage SOP class (to disk,
#: as received) and Study Root C-FIND from an in-memory study table.
PYNETDICOM_SCP = r'''
import os, sys, threading
from pydicom.dataset import Dataset
from pynetdicom import AE, evt, AllStoragePresentationContexts
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

port, output = int(sys.argv[1]), sys.argv[2]
studies = {}
lock = threading.Lock()
STUDY_KEYS = ("PatientName", "PatientID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyInstanceUID")

def store(event):
    dataset = event.dataset
    path = os.path.join(output, "%s.%s" % (dataset.get("Modality", "XX"), event.request.AffectedSOPInstanceUID))
    with open(path, "wb") as f:
        f.write(event.encoded_dataset())
    with lock:
        if dataset.StudyInstanceUID not in studies:
            studies[dataset.StudyInstanceUID] = {k: dataset.get(k, "") for k in STUDY_KEYS}
    return 0x0000

def find(event):
    identifier = event.identifier
    with lock:
        rows = list(studies.values())
    for row in rows:
        if event.is_cancelled:
            yield (0xFE00, None)
            return
        response = Dataset()
        response.QueryRetrieveLevel = "STUDY"
        for element in identifier:
            if element.keyword and element.keyword != "QueryRetrieveLevel":
                setattr(response, element.keyword, row.get(element.keyword, ""))
        yield (0xFF00, response)

ae = AE(ae_title="PYNETDICOM")
ae.maximum_associations = 256
ae.maximum_pdu_size = 131072
ae.supported_contexts = AllStoragePresentationContexts
ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
ae.start_server(("127.0.0.1", port), block=True, evt_handlers=[(evt.EVT_C_STORE, store), (evt.EVT_C_FIND, find)])
'''


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def percentile(values: List[float], fraction: float) -> float:
    """
    The nearest-rank percentile of C{values} (C{nan} when empty).
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = int(-(-fraction * len(ordered) // 1))
    return ordered[min(len(ordered), max(1, rank)) - 1]


# -- the corpus ---------------------------------------------------------------------


def instanceUID(sender: int, image: int) -> str:
    return "%s.%d.%d" % (UID_ROOT, sender + 1, image + 1)


def studyUID(study: int) -> str:
    return "%s.0.%d" % (UID_ROOT, study + 1)


def corpusDirectory(root: str, options) -> str:
    return os.path.join(root, "load-%dx%d-%ds-%dpx" % (options.senders, options.images, options.studies, options.size))


def senderPaths(directory: str, sender: int, images: int) -> List[str]:
    return [os.path.join(directory, "s%03d" % (sender + 1,), "%05d.dcm" % (image + 1,)) for image in range(images)]


def ensureCorpus(options) -> str:
    """
    Make the images (once): sender I{s}'s image I{i} has SOP Instance UID
    C{UID_ROOT.s.i}; sender I{s} sends series C{UID_ROOT.0.k.s} of study
    C{UID_ROOT.0.k}, I{k} = I{s} mod C{--studies}, of patient I{k}.
    """
    from tests.dicomfiles import makeDataset, writeFile

    directory = corpusDirectory(options.corpus, options)
    marker = os.path.join(directory, ".complete")
    if os.path.exists(marker):
        return directory
    log("making %d x %d images of %dx%d in %s" % (options.senders, options.images, options.size, options.size, directory))
    started = time.monotonic()
    for sender in range(options.senders):
        study = sender % options.studies
        os.makedirs(os.path.join(directory, "s%03d" % (sender + 1,)), exist_ok=True)
        dataset = makeDataset(
            rows=options.size,
            columns=options.size,
            patientName="Load^Patient%d" % (study + 1,),
            patientID="LOAD%03d" % (study + 1,),
            studyInstanceUID=studyUID(study),
            seriesInstanceUID="%s.%d" % (studyUID(study), sender + 1),
        )
        dataset.AccessionNumber = "LOADACC%03d" % (study + 1,)
        dataset.StudyID = str(study + 1)
        dataset.SeriesNumber = sender + 1
        for image, path in enumerate(senderPaths(directory, sender, options.images)):
            dataset.SOPInstanceUID = instanceUID(sender, image)
            dataset.InstanceNumber = image + 1
            writeFile(path + ".part", dataset)
            os.rename(path + ".part", path)
    with open(marker, "w") as f:
        f.write("%d\n" % (options.senders * options.images,))
    log("  %.0f s" % (time.monotonic() - started,))
    return directory


# -- process trees and memory ---------------------------------------------------------


def processTree(roots: List[int]) -> List[int]:
    """
    C{roots} and all their live descendants.
    """
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % (name,)) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    tree, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def memoryOf(pid: int) -> Dict[str, int]:
    """
    VmRSS and VmHWM (from C{status}) and Pss (from C{smaps_rollup}) of a
    process, in bytes; missing values are 0 (the process ended).
    """
    values = {"VmRSS": 0, "VmHWM": 0, "Pss": 0}
    try:
        values.update(procStatus(pid))
        with open("/proc/%d/smaps_rollup" % (pid,)) as f:
            for line in f:
                if line.startswith("Pss:"):
                    values["Pss"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return values


class MemorySampler(threading.Thread):
    """
    Samples the summed memory of process trees until stopped.
    """

    def __init__(self, roots: List[int], interval: float):
        threading.Thread.__init__(self, daemon=True)
        self.roots = roots
        self.interval = interval
        self.peakRSS = 0
        self.peakPSS = 0
        self.peakProcesses = 0
        self.peakLoad = 0.0
        self.samples = 0
        self._halt = threading.Event()

    def sample(self) -> None:
        tree = processTree(self.roots)
        memory = [memoryOf(pid) for pid in tree]
        self.peakRSS = max(self.peakRSS, sum(m["VmRSS"] for m in memory))
        self.peakPSS = max(self.peakPSS, sum(m["Pss"] for m in memory))
        self.peakProcesses = max(self.peakProcesses, len(tree))
        self.peakLoad = max(self.peakLoad, os.getloadavg()[0])
        self.samples += 1

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


# -- receivers ------------------------------------------------------------------------


def startServer(name: str, argv: List[str], port: int, env: dict, cwd: str, logPath: str) -> ServerProcess:
    """
    A receiver's server process; stopping it waits up to a minute, for a
    receiver still busy with the load.
    """
    return ServerProcess(name, argv, env, cwd, port, logPath, stopTimeout=60.0)


@dataclass
class Running:
    """
    A receiver ready for the load: where senders and C-FINDs go.
    """

    storeServer: ServerProcess
    storeTitle: str
    findServer: ServerProcess
    findTitle: str
    output: str
    others: List[ServerProcess] = field(default_factory=list)

    def stop(self) -> None:
        for server in [self.storeServer] + self.others:
            server.stop()


class Receiver(abc.ABC):
    key = ""
    name = ""

    @abc.abstractmethod
    def start(self, work: str, corpus: str, options) -> Running:
        """
        Start the receiver's servers in C{work}, the store receiver writing
        into a new directory there, ready for the senders of C{corpus}.
        """

    def indexedUIDs(self, running: Running) -> Optional[Set[str]]:
        """
        The SOP Instance UIDs in the receiver's index, or C{None} if it has
        none.
        """
        return None


class Dicomd(Receiver):
    key = "dicomd"
    name = "dicomd"

    def start(self, work, corpus, options):
        output = os.path.join(work, "dicomd-data")
        os.makedirs(output)
        port = freePort()
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "dicomd"]
        argv += ["--listen", "tcp:%d:interface=%s" % (port, HOST), "--output-directory", output]
        argv += ["--max-associations", "128", "--max-associations-per-host", "128"] + list(options.dicomdOptions)
        server = startServer("twistd dicomd", argv, port, pythonEnvironment(), work, os.path.join(work, "dicomd.log"))
        return Running(server, DICOMD_TITLE, server, DICOMD_TITLE, output)

    def indexedUIDs(self, running):
        path = os.path.join(running.output, INDEX_FILE)
        connection = sqlite3.connect("file:%s?mode=ro" % (path,), uri=True, timeout=30)
        try:
            return set(row[0] for row in connection.execute("SELECT SOPInstanceUID FROM instance"))
        finally:
            connection.close()


class DcmtkStorescp(Receiver):
    key = "dcmtk"
    name = "DCMTK storescp --fork"

    def start(self, work, corpus, options):
        output = os.path.join(work, "storescp-out")
        os.makedirs(output)
        # The query side: dcmqrscp on an index of one instance per study.
        area = os.path.join(work, "dcmqrscp-area")
        os.makedirs(area)
        firsts = [senderPaths(corpus, study, 1)[0] for study in range(min(options.studies, options.senders))]
        subprocess.run([os.path.join(DCMTK, "dcmqridx"), area] + firsts, check=True, env=dcmtkEnvironment())
        findPort = freePort()
        config = os.path.join(work, "dcmqrscp.cfg")
        with open(config, "w") as f:
            f.write(
                "NetworkTCPPort = %d\nMaxPDUSize = 16384\nMaxAssociations = 128\n"
                "HostTable BEGIN\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
                "AETable BEGIN\n%s %s R (200, 1024mb) ANY\nAETable END\n" % (findPort, DCMQRSCP_TITLE, area)
            )
        finder = startServer(
            "dcmqrscp",
            [os.path.join(DCMTK, "dcmqrscp"), "-c", config, str(findPort)],
            findPort,
            dcmtkEnvironment(),
            work,
            os.path.join(work, "dcmqrscp.log"),
        )
        port = freePort()
        try:
            server = startServer(
                "storescp --fork",
                [os.path.join(DCMTK, "storescp"), "--fork", "-od", output, str(port)],
                port,
                dcmtkEnvironment(),
                work,
                os.path.join(work, "storescp.log"),
            )
        except BaseException:
            finder.stop()
            raise
        return Running(server, "STORESCP", finder, DCMQRSCP_TITLE, output, others=[finder])


class Pynetdicom(Receiver):
    key = "pynetdicom"
    name = "pynetdicom AE"

    def start(self, work, corpus, options):
        output = os.path.join(work, "pynetdicom-out")
        os.makedirs(output)
        script = os.path.join(work, "pynetdicom_scp.py")
        with open(script, "w") as f:
            f.write(PYNETDICOM_SCP)
        port = freePort()
        server = startServer(
            "pynetdicom", [sys.executable, script, str(port), output], port, pythonEnvironment(), work,
            os.path.join(work, "pynetdicom.log"),
        )
        return Running(server, PYNETDICOM_TITLE, server, PYNETDICOM_TITLE, output)


RECEIVERS = {r.key: r for r in (Dicomd(), DcmtkStorescp(), Pynetdicom())}


# -- DCMTK logs ------------------------------------------------------------------------


def parseLog(text: str):
    """
    The lines of a storescu or findscu log written with L{LOG_CONFIG}, as
    C{(seconds since the epoch, level letter, message)}; lines without a
    time stamp (continuations) are left out.
    """
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
        yield stamp + int(match.group(2)) / 1e3 + int(match.group(3)) / 1e6, match.group(4), match.group(5)


@dataclass
class SenderResult:
    sender: int
    exitCode: int
    seconds: float
    latencies: List[float]
    acknowledged: Set[str]
    failures: List[str]


def parseSender(sender: int, exitCode: int, seconds: float, text: str) -> SenderResult:
    """
    Pair each "Sending Store Request" with the "Received Store Response"
    after it; a success or warning response acknowledges the file named by
    the "Sending file" line before.
    """
    latencies, acknowledged, failures = [], set(), []
    current = sentAt = None
    for stamp, level, message in parseLog(text):
        if message.startswith("Sending file: "):
            current, sentAt = message[len("Sending file: "):], None
        elif message.startswith("Sending Store Request"):
            sentAt = stamp
        elif message.startswith("Received Store Response"):
            if sentAt is not None:
                latencies.append(stamp - sentAt)
            status = message[len("Received Store Response"):].strip()
            if current is not None and (status.startswith("(Success") or status.startswith("(Warning")):
                acknowledged.add(current)
            else:
                failures.append("%s: %s" % (current, message))
            current = sentAt = None
        elif level in ("E", "F"):
            failures.append(message)
    return SenderResult(sender, exitCode, seconds, latencies, acknowledged, failures)


# -- C-FIND stream ----------------------------------------------------------------------


@dataclass
class FindResult:
    seconds: float
    queryLatency: Optional[float]
    matches: int
    ok: bool
    output: str


class FindStream(threading.Thread):
    """
    Starts a findscu every C{interval} seconds (each in its own thread, so
    a slow one does not delay the next), at most C{limit} at a time (a
    query due while C{limit} run is skipped and counted).
    """

    def __init__(self, port: int, title: str, interval: float, limit: int, logConfig: str):
        threading.Thread.__init__(self, daemon=True)
        # -sr: the responses' data sets are not printed (findscu's own cost).
        self.argv = [os.path.join(DCMTK, "findscu"), "-S", "-sr", "--log-config", logConfig, "-aec", title]
        for key in ("QueryRetrieveLevel=STUDY", "PatientName", "PatientID", "StudyDate", "StudyTime",
                    "AccessionNumber", "StudyID", "StudyInstanceUID"):
            self.argv += ["-k", key]
        self.argv += [HOST, str(port)]
        self.interval = interval
        self.limit = threading.Semaphore(limit)
        self.results: List[FindResult] = []
        self.skipped = 0
        self.workers: List[threading.Thread] = []
        self._halt = threading.Event()

    def one(self) -> None:
        try:
            started = time.perf_counter()
            result = subprocess.run(self.argv, env=dcmtkEnvironment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            seconds = time.perf_counter() - started
            text = result.stdout.decode("utf-8", "replace")
            sentAt = latency = None
            matches = 0
            ok = False
            for stamp, _, message in parseLog(text):
                if message.startswith("Sending Find Request"):
                    sentAt = stamp
                elif "Find Response" in message and "(Pending" in message:
                    matches += 1
                elif message.startswith("Received Final Find Response"):
                    if sentAt is not None:
                        latency = stamp - sentAt
                    ok = "(Success)" in message
            self.results.append(FindResult(seconds, latency, matches, ok and result.returncode == 0, text))
        finally:
            self.limit.release()

    def run(self) -> None:
        due = time.monotonic()
        while not self._halt.is_set():
            if self.limit.acquire(blocking=False):
                worker = threading.Thread(target=self.one, daemon=True)
                worker.start()
                self.workers.append(worker)
            else:
                self.skipped += 1
            due += self.interval
            self._halt.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()
        self.join()
        for worker in self.workers:
            worker.join()


# -- one run ------------------------------------------------------------------------------


@dataclass
class Run:
    receiver: str
    seconds: float
    sent: int
    acknowledged: int
    storeLatencies: List[float]
    failedStores: int
    senderErrors: List[str]
    missingFiles: int
    badFiles: int
    missingRows: Optional[int]
    finds: List[FindResult]
    findsSkipped: int
    peakRSS: int
    peakPSS: int
    mainHWM: int
    peakProcesses: int
    cpu: float
    findServerRSS: Optional[int]
    loadBefore: float
    peakLoad: float
    round: int = 1

    @property
    def throughput(self) -> float:
        return self.acknowledged / self.seconds

    @property
    def findLatencies(self) -> List[float]:
        return [f.queryLatency for f in self.finds if f.ok and f.queryLatency is not None]

    @property
    def findProcessSeconds(self) -> List[float]:
        return [f.seconds for f in self.finds if f.ok]

    @property
    def failedFinds(self) -> int:
        return sum(1 for f in self.finds if not f.ok)


def storedFiles(output: str) -> Dict[str, str]:
    """
    The files under C{output} named C{<modality>.<SOP Instance UID>}, by
    UID; hidden files (the index, a temporary file) are left out.
    """
    found = {}
    for root, dirs, files in os.walk(output):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or "." not in name:
                continue
            found[name.split(".", 1)[1]] = os.path.join(root, name)
    return found


def checkFile(path: str, uid: str, pixelBytes: int) -> bool:
    """
    Whether C{path} parses, has C{uid} as its SOP Instance UID and all of
    its pixel data.
    """
    import pydicom

    try:
        dataset = pydicom.dcmread(path)
        return dataset.SOPInstanceUID == uid and len(dataset.PixelData) == pixelBytes
    except Exception:
        return False


def runLoad(receiver: Receiver, corpus: str, work: str, logConfig: str, options) -> Run:
    directory = tempfile.mkdtemp(prefix=receiver.key + "-", dir=work)
    running = receiver.start(directory, corpus, options)
    try:
        os.sync()
        time.sleep(0.5)
        loadBefore = os.getloadavg()[0]
        sampler = MemorySampler([running.storeServer.process.pid], options.sampleInterval)
        findSampler = None
        if running.findServer is not running.storeServer:
            findSampler = MemorySampler([running.findServer.process.pid], options.sampleInterval)
            findSampler.start()
        cpuBefore = cpuSeconds(running.storeServer.process.pid, children=True)
        sampler.start()
        finds = FindStream(running.findServer.port, running.findTitle, options.findInterval, options.findLimit, logConfig)
        finds.start()
        logs = os.path.join(directory, "senders")
        os.makedirs(logs)
        senders = []
        started = time.perf_counter()
        for sender in range(options.senders):
            argv = [os.path.join(DCMTK, "storescu"), "--log-config", logConfig, "-aec", running.storeTitle]
            if options.distinctTitles:
                argv += ["-aet", "MOD%03d" % (sender + 1,)]
            argv += [HOST, str(running.storeServer.port)] + senderPaths(corpus, sender, options.images)
            out = open(os.path.join(logs, "s%03d.log" % (sender + 1,)), "wb")
            senders.append((sender, subprocess.Popen(argv, env=dcmtkEnvironment(), stdout=out, stderr=subprocess.STDOUT), out, time.perf_counter()))
        # Poll them all, so that each one's exit time is right.
        exits: Dict[int, float] = {}
        deadline = started + options.timeout
        while len(exits) < len(senders):
            now = time.perf_counter()
            for sender, process, out, begun in senders:
                if sender not in exits and (process.poll() is not None or now > deadline):
                    if process.returncode is None:
                        process.kill()
                        process.wait()
                    exits[sender] = time.perf_counter()
            time.sleep(0.005)
        seconds = max(exits.values()) - started
        results = []
        for sender, process, out, begun in senders:
            out.close()
            with open(out.name, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            results.append(parseSender(sender, process.returncode, exits[sender] - begun, text))
        finds.stop()
        sampler.stop()
        cpu = cpuSeconds(running.storeServer.process.pid, children=True) - cpuBefore
        mainHWM = memoryOf(running.storeServer.process.pid)["VmHWM"]
        findServerRSS = None
        if findSampler is not None:
            findSampler.stop()
            findServerRSS = findSampler.peakRSS

        # What was acknowledged must be there, now, with the receiver up.
        acknowledged: Dict[str, str] = {}
        for result in results:
            for path in result.acknowledged:
                sender = int(os.path.basename(os.path.dirname(path))[1:]) - 1
                image = int(os.path.basename(path).split(".")[0]) - 1
                acknowledged[instanceUID(sender, image)] = path
        stored = storedFiles(running.output)
        missing = [uid for uid in acknowledged if uid not in stored]
        bad = 0
        if not options.noVerify:
            pixelBytes = options.size * options.size * 2
            bad = sum(1 for uid in acknowledged if uid in stored and not checkFile(stored[uid], uid, pixelBytes))
        indexed = receiver.indexedUIDs(running)
        missingRows = None if indexed is None else sum(1 for uid in acknowledged if uid not in indexed)
    finally:
        running.stop()
    sent = options.senders * options.images
    errors = []
    for result in results:
        if result.exitCode != 0 or result.failures or len(result.acknowledged) != options.images:
            errors.append(
                "sender %d: exit %s, %d of %d acknowledged%s"
                % (result.sender + 1, result.exitCode, len(result.acknowledged), options.images,
                   ("; " + "; ".join(result.failures[:3])) if result.failures else "")
            )
    run = Run(
        receiver.name,
        seconds,
        sent,
        len(acknowledged),
        [latency for result in results for latency in result.latencies],
        sent - len(acknowledged),
        errors,
        len(missing),
        bad,
        missingRows,
        finds.results,
        finds.skipped,
        max(sampler.peakRSS, mainHWM),
        sampler.peakPSS,
        mainHWM,
        sampler.peakProcesses,
        cpu,
        findServerRSS,
        loadBefore,
        sampler.peakLoad,
    )
    if not options.keep:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        log("  kept %s" % (directory,))
    return run


# -- report ---------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return "%.1f" % (seconds * 1e3,) if seconds == seconds else "-"


def describe(run: Run) -> str:
    return (
        "%.1f s, %.0f images/s, %d failed, %d missing files, %d bad files, %s missing rows, "
        "store p50/p99 %s/%s ms, find p99 %s ms (%d ok, %d failed, %d skipped; studies per answer %s), "
        "peak RSS %.0f MB, load %.1f -> %.1f"
        % (run.seconds, run.throughput, run.failedStores, run.missingFiles, run.badFiles,
           "-" if run.missingRows is None else run.missingRows,
           ms(percentile(run.storeLatencies, 0.5)), ms(percentile(run.storeLatencies, 0.99)),
           ms(percentile(run.findLatencies, 0.99)), len(run.finds) - run.failedFinds, run.failedFinds,
           run.findsSkipped, sorted(set(f.matches for f in run.finds if f.ok)), run.peakRSS / MB, run.loadBefore, run.peakLoad)
    )


def printReport(runs: List[Run], options) -> None:
    print()
    print(
        "Load: %d storescu x %d images of %dx%dx16 bit (%d studies), findscu every %.0f ms; %d CPUs"
        % (options.senders, options.images, options.size, options.size, options.studies, options.findInterval * 1e3, os.cpu_count())
    )
    header = "%-25s %7s %8s %6s %6s %7s %7s %7s %7s %7s %6s %7s %7s %6s %6s %6s %9s" % (
        "receiver", "wall s", "images/s", "failed", "lost", "lost", "bad", "store", "store", "find", "find",
        "findscu", "finds", "RSS", "PSS", "CPU s", "load",
    )
    header2 = "%-25s %7s %8s %6s %6s %7s %7s %7s %7s %7s %6s %7s %7s %6s %6s %6s %9s" % (
        "", "", "", "stores", "files", "rows", "files", "p50 ms", "p99 ms", "p50 ms", "p99 ms",
        "p99 ms", "ok/err", "MB", "MB", "", "start/max",
    )
    print(header)
    print(header2)
    print("-" * len(header))
    for run in runs:
        print(
            "%-25s %7.1f %8.1f %6d %6d %7s %7d %7s %7s %7s %6s %7s %7s %6.0f %6.0f %6.1f %9s"
            % (
                run.receiver if options.rounds == 1 else "%s #%d" % (run.receiver, run.round), run.seconds, run.throughput, run.failedStores, run.missingFiles,
                "-" if run.missingRows is None else str(run.missingRows), run.badFiles,
                ms(percentile(run.storeLatencies, 0.5)), ms(percentile(run.storeLatencies, 0.99)),
                ms(percentile(run.findLatencies, 0.5)), ms(percentile(run.findLatencies, 0.99)),
                ms(percentile(run.findProcessSeconds, 0.99)),
                "%d/%d" % (len(run.finds) - run.failedFinds, run.failedFinds),
                run.peakRSS / MB, run.peakPSS / MB, run.cpu, "%.1f/%.1f" % (run.loadBefore, run.peakLoad),
            )
        )
    print()
    print("store p50/p99: C-STORE-RQ sent to response received, from storescu's own log (all stores of all senders);")
    print("find p50/p99: C-FIND-RQ sent to final response, from findscu's log; findscu p99: the findscu process, start to exit;")
    print("RSS/PSS: peak of the sum over the store receiver's process tree; CPU s: the store receiver's (and reaped children's) CPU time.")
    for run in runs:
        notes = []
        if run.receiver.startswith("DCMTK"):
            notes.append("C-FINDs answered by a separate dcmqrscp (peak RSS of its tree %.0f MB), not by storescp"
                         % ((run.findServerRSS or 0) / MB,))
        notes.append("main process VmHWM %.0f MB, up to %d processes" % (run.mainHWM / MB, run.peakProcesses))
        answers = sorted(set(f.matches for f in run.finds if f.ok))
        if answers:
            notes.append("C-FIND answers held %d to %d studies" % (answers[0], answers[-1]))
        if run.findsSkipped:
            notes.append("%d C-FINDs not started (%d already running)" % (run.findsSkipped, options.findLimit))
        label = run.receiver if options.rounds == 1 else "%s #%d" % (run.receiver, run.round)
        print("  %s: %s" % (label, "; ".join(notes)))
        for error in run.senderErrors[:10]:
            print("    %s" % (error,))
        if len(run.senderErrors) > 10:
            print("    ... and %d more senders with errors" % (len(run.senderErrors) - 10,))
        failed = [f for f in run.finds if not f.ok]
        if failed:
            print("    a failed findscu: %s" % (failed[0].output.strip().splitlines()[-1:] or ["(no output)"])[0])
    dicomd = [run for run in runs if run.receiver == "dicomd"]
    if dicomd and len(dicomd) < len(runs):
        print()
        print("Ratios, dicomd / other, same round (throughput: > 1 means dicomd is faster; latency and memory: < 1 means dicomd's is lower):")
        for run in runs:
            if run.receiver == "dicomd":
                continue
            best = [d for d in dicomd if d.round == run.round][0]

            def ratio(a, b):
                return "%.2fx" % (a / b,) if b and a == a and b == b else "-"

            print(
                "  round %d, vs %-22s throughput %s, store p50 %s, store p99 %s, find p99 %s, peak RSS %s, peak PSS %s"
                % (
                    run.round, run.receiver, ratio(best.throughput, run.throughput),
                    ratio(percentile(best.storeLatencies, 0.5), percentile(run.storeLatencies, 0.5)),
                    ratio(percentile(best.storeLatencies, 0.99), percentile(run.storeLatencies, 0.99)),
                    ratio(percentile(best.findLatencies, 0.99), percentile(run.findLatencies, 0.99)),
                    ratio(best.peakRSS, run.peakRSS),
                    ratio(best.peakPSS, run.peakPSS),
                )
            )


def checkTargets(runs: List[Run]) -> List[str]:
    """
    The issue's targets dicomd missed.
    """
    missed = []
    for run in runs:
        if run.receiver != "dicomd":
            continue
        if run.failedStores:
            missed.append("%d failed stores" % (run.failedStores,))
        if run.missingFiles or run.badFiles:
            missed.append("%d acknowledged instances missing, %d unreadable" % (run.missingFiles, run.badFiles))
        if run.missingRows:
            missed.append("%d acknowledged instances not in the index" % (run.missingRows,))
        if run.peakRSS >= 300 * 1024 * 1024:
            missed.append("peak RSS %.0f MB >= 300 MB" % (run.peakRSS / MB,))
    return missed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--senders", type=int, default=50, help="concurrent storescu processes (default: 50)")
    parser.add_argument("--images", type=int, default=200, help="images per sender (default: 200)")
    parser.add_argument("--studies", type=int, default=5, help="studies the senders share (default: 5)")
    parser.add_argument("--size", type=int, default=64, help="rows and columns of each image (default: 64)")
    parser.add_argument("--find-interval", dest="findInterval", type=float, default=0.1, help="seconds between C-FINDs (default: 0.1; 0: none)")
    parser.add_argument("--find-limit", dest="findLimit", type=int, default=16, help="at most this many findscu at a time (default: 16)")
    parser.add_argument(
        "--distinct-calling-titles", dest="distinctTitles", action="store_true",
        help="each storescu calls as MOD001, MOD002... (default: all call as storescu's STORESCU)",
    )
    parser.add_argument("--servers", default="dicomd,dcmtk,pynetdicom", help="which receivers, in order (default: all three)")
    parser.add_argument("--rounds", type=int, default=1, help="run the receivers this many times, taking turns (default: 1)")
    parser.add_argument(
        "--corpus",
        default=os.path.join(tempfile.gettempdir(), "dicomd-bench-corpus"),
        help="where the images are made and kept (default: TMPDIR/dicomd-bench-corpus)",
    )
    parser.add_argument("--work", default=None, help="where receivers write (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the receivers' output and logs")
    parser.add_argument("--no-verify", dest="noVerify", action="store_true", help="do not parse every stored file")
    parser.add_argument("--sample-interval", dest="sampleInterval", type=float, default=0.1, help="seconds between memory samples (default: 0.1)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before the senders are killed (default: 1800)")
    parser.add_argument(
        "--dicomd-option", dest="dicomdOptions", action="append", default=[],
        help="an extra option for twistd dicomd (repeatable: --dicomd-option=--fsync)",
    )
    options = parser.parse_args(argv)
    for tool in ("storescu", "findscu", "storescp", "dcmqrscp", "dcmqridx"):
        if not os.access(os.path.join(DCMTK, tool), os.X_OK):
            log("DCMTK's %s is missing from %s: apt-get install dcmtk" % (tool, DCMTK))
            return 2
    chosen = []
    for key in options.servers.split(","):
        if key not in RECEIVERS:
            parser.error("unknown receiver %r (choose from %s)" % (key, ", ".join(RECEIVERS)))
        chosen.append(RECEIVERS[key])
    if options.findInterval <= 0:
        options.findInterval = 1e9
    corpus = ensureCorpus(options)
    work = tempfile.mkdtemp(prefix="dicomd-bench-load-", dir=options.work)
    logConfig = os.path.join(work, "oflog.cfg")
    with open(logConfig, "w") as f:
        f.write(LOG_CONFIG)
    runs = []
    try:
        for round in range(options.rounds):
            for receiver in chosen:
                log("%s, round %d of %d..." % (receiver.name, round + 1, options.rounds))
                run = runLoad(receiver, corpus, work, logConfig, options)
                run.round = round + 1
                log("  " + describe(run))
                runs.append(run)
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    printReport(runs, options)
    missed = checkTargets(runs)
    print()
    if missed:
        print("dicomd MISSED the targets: " + "; ".join(missed))
        return 1
    if any(run.receiver == "dicomd" for run in runs):
        print("dicomd met the targets: no failed stores, no lost instances (files and index rows), peak RSS under 300 MB.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
