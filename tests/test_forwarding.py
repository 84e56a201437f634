"""
Process-level tests of forwarding (L{dicomd.forwarding}): the real
C{twistd -n dicomd} receives from DCMTK's storescu and forwards to DCMTK's
storescp (and to a pynetdicom SCP that refuses, and to Orthanc), through
its durable queue.
"""

import glob
import json
import os
import re
import sqlite3
import textwrap
import urllib.request

import pydicom
from pydicom.uid import generate_uid
from twisted.internet import defer, threads
from twisted.trial import unittest

from dicomd.archive.routing import AT_END_OF_STUDY, Route
from dicomd.forwarding import Router
from tests.dicomfiles import MR_IMAGE_STORAGE, makeDataset, writeFile
from tests.support import (
    daemonListening,
    LOCALHOST,
    dcmtk,
    dcmtkEnvironment,
    deferLater,
    dicomdArgv,
    freePort,
    makeDirectory,
    pythonEnvironment,
    runCommand,
    spawn,
    startDCMTKServer,
    startPeer,
    startPythonScript,
    twistdArgv,
    waitForPort,
    waitUntil,
)


def storescu(port, paths, *options, calling="MODALITY"):
    return runCommand(
        [dcmtk("storescu"), "-aet", calling, "-aec", "DICOMD"] + list(options) + [LOCALHOST, str(port)] + list(paths),
        env=dcmtkEnvironment(),
        timeout=120,
    )


def startDaemon(testCase, *options, cwd=None):
    """
    C{twistd -n dicomd} in a working directory of its own
    (C{.workingDirectory}), whose C{dicomd-data} is its data directory
    (C{.dataDirectory}).
    """
    cwd = cwd or makeDirectory(testCase)
    d = startPeer(
        testCase, lambda port: twistdArgv(port, *options), env=pythonEnvironment(), cwd=cwd, name="twistd dicomd", ready=daemonListening
    )

    def started(child):
        child.workingDirectory = cwd
        child.dataDirectory = os.path.join(cwd, "dicomd-data")
        return child

    return d.addCallback(started)


@defer.inlineCallbacks
def queueEntries(daemon):
    """
    The lines of C{dicomd queue list} for a daemon's data directory, the
    header left out.
    """
    result = yield runCommand(dicomdArgv("queue", "list", "-o", daemon.dataDirectory), env=pythonEnvironment())
    if result.exitCode != 0:
        raise AssertionError(result.describe())
    return result.stdout.strip().splitlines()[1:]


def indexDatabase(daemon):
    return os.path.join(daemon.dataDirectory, ".dicomd-index.sqlite")


def queuedCount(daemon):
    """
    How many entries the daemon's queue holds, read from its database.
    """
    db = sqlite3.connect(indexDatabase(daemon), timeout=30)
    try:
        return db.execute("SELECT COUNT(*) FROM forward").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def waitForQueued(daemon, count):
    """
    Wait until the daemon's queue holds C{count} entries: it writes them
    with the index rows, moments after its responses
    (L{dicomd.archive.writer}).
    """
    return waitUntil(lambda: queuedCount(daemon) == count, timeout=30, message="%d entries queued, not %d" % (queuedCount(daemon), count))


@defer.inlineCallbacks
def retryAll(daemon):
    """
    C{dicomd queue retry --all} on a daemon's data directory.
    """
    result = yield runCommand(dicomdArgv("queue", "retry", "--all", "-o", daemon.dataDirectory), env=pythonEnvironment())
    if result.exitCode != 0:
        raise AssertionError(result.describe())


def makeFiles(testCase, count, study=None, **kwargs):
    """
    C{count} small CT files of one study (a new one unless given).
    """
    directory = makeDirectory(testCase)
    study = study or generate_uid()
    paths = []
    for number in range(count):
        path = os.path.join(directory, "%04d.dcm" % number)
        writeFile(path, makeDataset(rows=16, columns=16, studyInstanceUID=study, **kwargs))
        paths.append(path)
    return paths


def arrived(directory):
    return sorted(path for path in glob.glob(os.path.join(directory, "*")) if os.path.isfile(path))


def storedIn(directory):
    """
    The files a C{twistd dicomd} destination stored under C{directory},
    without its own (index, journals).
    """
    found = []
    for parent, directories, names in os.walk(directory):
        directories[:] = [name for name in directories if not name.startswith(".")]
        found.extend(os.path.join(parent, name) for name in names if not name.startswith("."))
    return sorted(found)


def startStorescp(testCase, directory=None):
    """
    A DCMTK storescp storing into a fresh directory (C{.directory}).
    """
    directory = directory or makeDirectory(testCase)
    d = startDCMTKServer(testCase, "storescp", "-od", directory)

    def started(child):
        child.directory = directory
        return child

    return d.addCallback(started)


def storescpOn(testCase, port, directory):
    """
    A DCMTK storescp on a given port (one dicomd was told of while it was
    down).
    """
    child = spawn(testCase, [dcmtk("storescp"), "-od", directory, str(port)], env=dcmtkEnvironment(), name="storescp")
    child.directory = directory
    return waitForPort(port, process=child).addCallback(lambda _: child)


def writeConfig(testCase, text):
    directory = makeDirectory(testCase)
    path = os.path.join(directory, "dicomd.toml")
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


def sameDataSets(testCase, sent, received):
    """
    Each file sent arrived with the same data set.
    """
    byUID = {}
    for path in received:
        dataset = pydicom.dcmread(path)
        byUID[str(dataset.SOPInstanceUID)] = dataset
    testCase.assertEqual(len(byUID), len(sent))
    for path in sent:
        original = pydicom.dcmread(path)
        copy = byUID[str(original.SOPInstanceUID)]
        testCase.assertEqual(copy.file_meta.TransferSyntaxUID, original.file_meta.TransferSyntaxUID)
        testCase.assertEqual(copy, original)


def deliveredTo(daemon, title=None):
    """
    How many instances C{daemon}'s log says it delivered to C{title} (to
    any destination: C{None}): it logs a batch once the destination
    answered each of its C-STOREs.
    """
    destination = r"\S+" if title is None else re.escape(title)
    return sum(int(count) for count in re.findall(r"Forwarded (\d+) instances to %s in " % (destination,), daemon.output))


def whenArrived(daemon, title, directory, count, timeout=60):
    """
    Wait until the C{count} instances C{daemon} forwards to C{title} are
    whole in C{directory}, where a DCMTK storescp writes them: it creates
    each file before it writes it, and answers once it has written it.
    """
    return waitUntil(lambda: deliveredTo(daemon, title) >= count and len(arrived(directory)) == count, timeout=timeout, message=daemon.output)


def forwardedLines(daemon):
    """
    The log lines of the batches a daemon delivered.
    """
    return [line for line in daemon.output.splitlines() if "Forwarded" in line]


class RouterTests(unittest.SynchronousTestCase):
    """
    L{Router.holdsStudies}: whether the end of a study must release held
    queue entries.
    """

    def test_receptionRoutesHoldNothing(self):
        """
        Routes that forward on reception hold no entry for a study's end.
        """
        router = Router(None, {"DICOMD": (Route("PACS"),), "OTHER": ()})
        self.assertFalse(router.holdsStudies)

    def test_endOfStudyRouteHolds(self):
        """
        A route forwarding at the end of a study holds entries.
        """
        router = Router(None, {"DICOMD": (Route("PACS"), Route("AI", when=AT_END_OF_STUDY))})
        self.assertTrue(router.holdsStudies)

    def test_heldAfterReload(self):
        """
        Once a route held entries, routes set by a reload without one still
        hold: the entries it held wait for their study's end.
        """
        router = Router(None)
        self.assertFalse(router.holdsStudies)
        router.routes = {"DICOMD": (Route("AI", when=AT_END_OF_STUDY),)}
        router.routes = {"DICOMD": (Route("PACS"),)}
        self.assertTrue(router.holdsStudies)


class ForwardingTests(unittest.TestCase):
    """
    C{twistd dicomd} forwarding to DCMTK's storescp.
    """

    timeout = 240

    def config(self, destinations, *, routes="", extra="", storage="", retryFirst=1, retryMax=2, asyncOps=1):
        peers = "".join(
            '[[peer]]\ntitle = "%s"\nhost = "127.0.0.1"\nport = %d\n\n' % (title, port) for title, port in destinations.items()
        )
        return writeConfig(
            self,
            """
            [forwarding]
            retry-first = %s
            retry-max = %s
            async-ops = %d

            [[ae]]
            title = "DICOMD"
            %s
            [ae.actions]
            end-of-study-timeout = 1
            %s
            %s
            %s
            """
            % (retryFirst, retryMax, asyncOps, storage, routes, extra, peers),
        )

    @defer.inlineCallbacks
    def test_forwardOnReception(self):
        """
        C{--forward} sends everything received on, bit for bit the same
        data sets, in their transfer syntax, and the queue is empty after.
        """
        destination = yield startStorescp(self)
        daemon = yield startDaemon(self, "--forward", "PACS@127.0.0.1:%d" % (destination.port,))
        sent = makeFiles(self, 5)
        result = yield storescu(daemon.port, sent)
        self.assertEqual(result.exitCode, 0, result.describe())
        yield whenArrived(daemon, "PACS", destination.directory, 5, timeout=60)
        sameDataSets(self, sent, arrived(destination.directory))
        entries = yield queueEntries(daemon)
        self.assertEqual(entries, [])

    @defer.inlineCallbacks
    def test_asynchronousOperationsGranted(self):
        """
        C{async-ops} proposes an asynchronous operations window; a
        destination that grants part of it (C{twistd dicomd}, up to its
        C{max-async-ops}) gets that many C-STOREs at once, and every file
        arrives the same.
        """
        destination = yield startDaemon(self, "--max-async-ops", "4")
        config = self.config({"PACS": destination.port}, routes='[[ae.forward]]\nto = "PACS"\n', asyncOps=8)
        daemon = yield startDaemon(self, "--config", config)
        sent = makeFiles(self, 30)
        result = yield storescu(daemon.port, sent)
        self.assertEqual(result.exitCode, 0, result.describe())
        yield waitUntil(lambda: len(storedIn(destination.dataDirectory)) == 30, timeout=60, message=daemon.output)
        sameDataSets(self, sent, storedIn(destination.dataDirectory))
        yield daemon.waitForOutput(re.escape("Forwarding to PACS: asynchronous operations window of 4 C-STOREs"), timeout=30)

    @defer.inlineCallbacks
    def test_convertedInOrderUnderAWindow(self):
        """
        Under a window, instances the destination takes only converted (it
        accepts implicit VR little endian alone) still leave in queue
        order: a converted one goes alone, once a worker thread has
        converted it.
        """
        destination = yield startDaemon(self, "--max-async-ops", "4", "--implicit", "-d")
        config = self.config({"PACS": destination.port}, routes='[[ae.forward]]\nto = "PACS"\n', asyncOps=8)
        daemon = yield startDaemon(self, "--config", config)
        sent = makeFiles(self, 12)
        result = yield storescu(daemon.port, sent)
        self.assertEqual(result.exitCode, 0, result.describe())
        yield waitUntil(lambda: len(storedIn(destination.dataDirectory)) == 12, timeout=60, message=daemon.output)
        uids = [str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in sent]
        received = {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in storedIn(destination.dataDirectory)}
        self.assertEqual(received, set(uids))
        yield daemon.waitForOutput(re.escape("Forwarding to PACS: asynchronous operations window of 4 C-STOREs"), timeout=30)
        # The destination logs each C-STORE-RQ as it arrives (-d), before
        # its response: the first mention of each instance.
        arrivals = [destination.output.index(uid) for uid in uids]
        self.assertEqual(arrivals, sorted(arrivals), destination.output)

    @defer.inlineCallbacks
    def test_asynchronousOperationsNotGranted(self):
        """
        A destination that grants no window (DCMTK's storescp leaves the
        item out of its answer) gets one C-STORE at a time, and everything.
        """
        destination = yield startStorescp(self)
        config = self.config({"PACS": destination.port}, routes='[[ae.forward]]\nto = "PACS"\n', asyncOps=8)
        daemon = yield startDaemon(self, "--config", config)
        sent = makeFiles(self, 10)
        result = yield storescu(daemon.port, sent)
        self.assertEqual(result.exitCode, 0, result.describe())
        yield whenArrived(daemon, "PACS", destination.directory, 10, timeout=60)
        sameDataSets(self, sent, arrived(destination.directory))
        yield daemon.waitForOutput(re.escape("Forwarding to PACS: asynchronous operations window not granted, one C-STORE at a time"), timeout=30)

    @defer.inlineCallbacks
    def test_destinationDownThenUp(self):
        """
        A destination that is down gets everything once it is up again: the
        entries wait and are retried.
        """
        port = freePort()
        daemon = yield startDaemon(self, "--config", self.config({"PACS": port}, routes='[[ae.forward]]\nto = "PACS"\n'))
        sent = makeFiles(self, 20)
        result = yield storescu(daemon.port, sent)
        self.assertEqual(result.exitCode, 0, result.describe())
        yield daemon.waitForOutput(r"Forwarding to PACS: .*trying again in", timeout=60)
        yield waitForQueued(daemon, 20)
        entries = yield queueEntries(daemon)
        self.assertEqual(len(entries), 20, entries)
        destination = yield storescpOn(self, port, makeDirectory(self))
        yield whenArrived(daemon, "PACS", destination.directory, 20, timeout=60)
        sameDataSets(self, sent, arrived(destination.directory))

    @defer.inlineCallbacks
    def test_twoCallingTitlesInOneClaim(self):
        """
        The entries that two of our AEs queued for one destination, due
        together, all arrive: an association calls with one AE title, and
        the other's entries are not held back by the claim that found
        them with the first's.
        """
        port = freePort()
        route = '[[ae.forward]]\nto = "PACS"\n'
        config = self.config({"PACS": port}, routes=route, extra='[[ae]]\ntitle = "SECOND"\n[ae.actions]\nend-of-study-timeout = 1\n' + route, retryMax=1)
        daemon = yield startDaemon(self, "--config", config)
        first, second = makeFiles(self, 2), makeFiles(self, 2)
        result = yield storescu(daemon.port, first)
        self.assertEqual(result.exitCode, 0, result.describe())
        result = yield runCommand(
            [dcmtk("storescu"), "-aet", "MODALITY", "-aec", "SECOND", LOCALHOST, str(daemon.port)] + second,
            env=dcmtkEnvironment(),
            timeout=120,
        )
        self.assertEqual(result.exitCode, 0, result.describe())
        yield waitForQueued(daemon, 4)
        destination = yield storescpOn(self, port, makeDirectory(self))
        yield whenArrived(daemon, "PACS", destination.directory, 4, timeout=30)
        sameDataSets(self, first + second, arrived(destination.directory))

    @defer.inlineCallbacks
    def test_killedWithEntriesQueued(self):
        """
        SIGKILL with 500 entries queued loses none: after a restart they
        are all delivered.
        """
        port = freePort()
        config = self.config({"PACS": port}, routes='[[ae.forward]]\nto = "PACS"\n', retryFirst=60, retryMax=60)
        daemon = yield startDaemon(self, "--config", config)
        sent = makeFiles(self, 500)
        result = yield storescu(daemon.port, sent)
        self.assertEqual(result.exitCode, 0, result.describe())
        yield waitForQueued(daemon, 500)
        entries = yield queueEntries(daemon)
        self.assertEqual(len(entries), 500)
        daemon.signalProcess("KILL")
        yield daemon.whenEnded()
        destination = yield storescpOn(self, port, makeDirectory(self))
        again = spawn(self, daemon.argv, env=pythonEnvironment(), cwd=daemon.workingDirectory, name="twistd dicomd again")
        yield whenArrived(again, "PACS", destination.directory, 500, timeout=120)
        sameDataSets(self, sent, arrived(destination.directory))

    @defer.inlineCallbacks
    def test_killedRightAfterTheLastResponse(self):
        """
        SIGKILL right after the last C-STORE-RSP, before any of the
        instances' rows and queue entries are written (another connection
        holds the database's write lock meanwhile), loses none: the restart
        indexes the files and queues them, and they are all delivered.
        """
        port = freePort()
        config = self.config({"PACS": port}, routes='[[ae.forward]]\nto = "PACS"\n', retryFirst=60, retryMax=60)
        daemon = yield startDaemon(self, "--config", config)
        # The daemon listens before its services start, and the forwarding
        # service's start writes to the index on the reactor thread: an
        # answered C-ECHO says it is over, so the lock below cannot hold
        # the reactor (and storescu's association) for the busy timeout.
        echo = yield runCommand([dcmtk("echoscu"), "-aec", "DICOMD", LOCALHOST, str(daemon.port)], env=dcmtkEnvironment())
        self.assertEqual(echo.exitCode, 0, echo.describe())
        lock = sqlite3.connect(indexDatabase(daemon), isolation_level=None)
        self.addCleanup(lock.close)
        lock.execute("BEGIN IMMEDIATE")
        sent = makeFiles(self, 100)
        result = yield storescu(daemon.port, sent)
        self.assertEqual(result.exitCode, 0, result.describe())
        daemon.signalProcess("KILL")
        yield daemon.whenEnded()
        lock.execute("ROLLBACK")
        self.assertEqual(queuedCount(daemon), 0)
        destination = yield storescpOn(self, port, makeDirectory(self))
        again = spawn(self, daemon.argv, env=pythonEnvironment(), cwd=daemon.workingDirectory, name="twistd dicomd again")
        yield whenArrived(again, "PACS", destination.directory, 100, timeout=120)
        sameDataSets(self, sent, arrived(destination.directory))
        self.assertIn("100 files indexed that the index lacked", again.output)
        self.assertIn("100 forwarding entries queued", again.output)

    @defer.inlineCallbacks
    def test_permanentRejection(self):
        """
        A destination that answers 0xA900 fails the entry at once, without
        retries, and C{dicomd queue list} shows it with the reason.
        """
        refusing = yield startPythonScript(self, REFUSING_SCP, name="refusing SCP")
        daemon = yield startDaemon(self, "--config", self.config({"PACS": refusing.port}, routes='[[ae.forward]]\nto = "PACS"\n'))
        sent = makeFiles(self, 1)
        result = yield storescu(daemon.port, sent)
        self.assertEqual(result.exitCode, 0, result.describe())
        yield daemon.waitForOutput(r"Forwarding .* to PACS failed for good: 0xA900", timeout=60)
        entries = yield queueEntries(daemon)
        (entry,) = entries
        self.assertIn("failed", entry)
        self.assertIn("0xA900", entry)
        self.assertNotIn("trying again", daemon.output)

    @defer.inlineCallbacks
    def test_permanentRejectionThenRetry(self):
        """
        A destination that rejects the association for good (DCMTK's
        C{storescp --refuse}: A-ASSOCIATE-RJ "rejected-permanent") fails
        the entries at once, with the reason and no retry; once it takes
        associations, C{dicomd queue retry --all} sends them from the
        running daemon at once.
        """
        refusing = yield startDCMTKServer(self, "storescp", "--refuse")
        config = self.config({"PACS": refusing.port}, routes='[[ae.forward]]\nto = "PACS"\n', retryFirst=300, retryMax=600)
        daemon = yield startDaemon(self, "--config", config)
        sent = makeFiles(self, 3)
        result = yield storescu(daemon.port, sent)
        self.assertEqual(result.exitCode, 0, result.describe())
        yield waitUntil(lambda: len(re.findall(r"to PACS failed for good: association rejected \(permanent", daemon.output)) == 3, timeout=60, message=daemon.output)
        entries = yield queueEntries(daemon)
        self.assertEqual(len(entries), 3)
        self.assertTrue(all(" failed " in entry for entry in entries), entries)
        self.assertNotIn("trying again", daemon.output)
        refusing.signalProcess("TERM")
        yield refusing.whenEnded()
        destination = yield storescpOn(self, refusing.port, makeDirectory(self))
        yield retryAll(daemon)
        yield whenArrived(daemon, "PACS", destination.directory, 3, timeout=60)
        sameDataSets(self, sent, arrived(destination.directory))

    @defer.inlineCallbacks
    def test_transientRejection(self):
        """
        An A-ASSOCIATE-RJ "rejected-transient" fails the try, not the
        entries: they wait and are tried again.
        """
        rejecting = yield startPythonScript(self, TRANSIENT_REJECTING_SCP, name="rejecting SCP")
        daemon = yield startDaemon(self, "--config", self.config({"PACS": rejecting.port}, routes='[[ae.forward]]\nto = "PACS"\n'))
        result = yield storescu(daemon.port, makeFiles(self, 2))
        self.assertEqual(result.exitCode, 0, result.describe())
        yield daemon.waitForOutput(r"Forwarding to PACS: association rejected \(transient.*; trying again in 1 s", timeout=60)
        yield daemon.waitForOutput(r"Forwarding to PACS: association rejected \(transient.*; trying again in 2 s", timeout=60)
        yield waitForQueued(daemon, 2)
        entries = yield queueEntries(daemon)
        self.assertTrue(all(" queued " in entry for entry in entries), entries)
        self.assertNotIn("failed for good", daemon.output)

    @defer.inlineCallbacks
    def test_retryEndsTheWait(self):
        """
        C{dicomd queue retry --all} on a running daemon sends the entries
        of a destination that came back at once, not at its next try.
        """
        port = freePort()
        config = self.config({"PACS": port}, routes='[[ae.forward]]\nto = "PACS"\n', retryFirst=600, retryMax=600)
        daemon = yield startDaemon(self, "--config", config)
        sent = makeFiles(self, 5)
        result = yield storescu(daemon.port, sent)
        self.assertEqual(result.exitCode, 0, result.describe())
        yield daemon.waitForOutput(r"Forwarding to PACS: .*trying again in 600 s", timeout=60)
        destination = yield storescpOn(self, port, makeDirectory(self))
        yield waitForQueued(daemon, 5)
        yield retryAll(daemon)
        yield whenArrived(daemon, "PACS", destination.directory, 5, timeout=60)
        sameDataSets(self, sent, arrived(destination.directory))

    @defer.inlineCallbacks
    def test_matchModalityAndCallingAETitle(self):
        """
        A route with C{match} takes only what it names: here MR to one
        destination, and what CT01 sends to another.
        """
        mr = yield startStorescp(self)
        fromCT01 = yield startStorescp(self)
        routes = (
            '[[ae.forward]]\nto = "MRVIEW"\nmatch = { modality = ["MR"] }\n'
            '[[ae.forward]]\nto = "CTARCH"\nmatch = { calling-ae-titles = ["CT01"] }\n'
        )
        daemon = yield startDaemon(self, "--config", self.config({"MRVIEW": mr.port, "CTARCH": fromCT01.port}, routes=routes))
        ct = makeFiles(self, 2)
        mrFiles = makeFiles(self, 3, modality="MR", sopClassUID=MR_IMAGE_STORAGE)
        yield storescu(daemon.port, ct, calling="CT01")
        yield storescu(daemon.port, mrFiles, calling="MR01")
        yield whenArrived(daemon, "MRVIEW", mr.directory, 3)
        yield whenArrived(daemon, "CTARCH", fromCT01.directory, 2)
        sameDataSets(self, mrFiles, arrived(mr.directory))
        sameDataSets(self, ct, arrived(fromCT01.directory))
        entries = yield queueEntries(daemon)
        self.assertEqual(entries, [])

    @defer.inlineCallbacks
    def test_endOfStudy(self):
        """
        An end-of-study route sends the study once, after it ended.
        """
        destination = yield startStorescp(self)
        daemon = yield startDaemon(
            self, "--config", self.config({"PACS": destination.port}, routes='[[ae.forward]]\nto = "PACS"\nwhen = "end-of-study"\n')
        )
        sent = makeFiles(self, 4)
        yield storescu(daemon.port, sent)
        yield whenArrived(daemon, "PACS", destination.directory, 4, timeout=60)
        yield daemon.waitForOutput(r"Forwarded 4 instances to PACS", timeout=30)
        sameDataSets(self, sent, arrived(destination.directory))
        output = daemon.output
        self.assertLess(output.index("End of study"), output.index("Forwarded 4 instances"))
        self.assertEqual(len(forwardedLines(daemon)), 1)

    @defer.inlineCallbacks
    def test_routerMode(self):
        """
        With C{keep = "until-forwarded"}, the store is empty once
        everything is delivered.
        """
        destination = yield startStorescp(self)
        config = self.config(
            {"PACS": destination.port}, routes='[[ae.forward]]\nto = "PACS"\n', storage='[ae.storage]\nkeep = "until-forwarded"\n'
        )
        daemon = yield startDaemon(self, "--config", config)
        sent = makeFiles(self, 10)
        yield storescu(daemon.port, sent)
        yield whenArrived(daemon, "PACS", destination.directory, 10, timeout=60)
        data = daemon.dataDirectory

        def stored():
            return [os.path.join(d, f) for d, _, files in os.walk(data) for f in files if not f.startswith(".dicomd-index")]

        yield waitUntil(lambda: stored() == [], timeout=30, message=repr(stored()))
        entries = yield queueEntries(daemon)
        self.assertEqual(entries, [])

    @defer.inlineCallbacks
    def test_oneDestinationDown(self):
        """
        A destination that is down does not delay another; C{/metrics}
        shows the queue of each.
        """
        up = yield startStorescp(self)
        statusPort = freePort()
        routes = '[[ae.forward]]\nto = "DOWN"\n[[ae.forward]]\nto = "UP"\n'
        config = self.config({"DOWN": freePort(), "UP": up.port}, routes=routes, retryFirst=30, retryMax=60)
        daemon = yield startDaemon(self, "--config", config, "--status", "tcp:%d:interface=127.0.0.1" % (statusPort,))
        sent = makeFiles(self, 20)
        yield storescu(daemon.port, sent)
        yield whenArrived(daemon, "UP", up.directory, 20, timeout=60)
        entries = yield queueEntries(daemon)
        self.assertEqual(len(entries), 20)
        self.assertTrue(all(" DOWN " in entry for entry in entries))
        yield daemon.waitForOutput(r"Forwarding to DOWN: .*trying again in", timeout=60)

        def metrics():
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % (statusPort,), timeout=10) as response:
                return response.read().decode("utf-8")

        from twisted.internet import reactor

        # The depth of a destination waiting out a failure is taken at the
        # daemon's next look at the queue, every two seconds.
        deadline = reactor.seconds() + 30
        text = yield threads.deferToThread(metrics)
        while 'dicomd_forward_queue_depth{destination="DOWN"} 20' not in text and reactor.seconds() < deadline:
            yield deferLater(reactor, 0.5)
            text = yield threads.deferToThread(metrics)
        self.assertIn('dicomd_forward_queue_depth{destination="DOWN"} 20', text)
        self.assertIn('dicomd_forward_delivered_total{destination="UP"} 20', text)
        self.assertIn('dicomd_forward_failed_total{destination="DOWN"} 0', text)
        self.assertRegex(text, r'dicomd_forward_oldest_age_seconds\{destination="DOWN"\} [0-9.]+')


#: A storage SCP that refuses every object with 0xA900 (data set does not
#: match SOP class): a failure a retry cannot fix.
REFUSING_SCP = """
import sys
from pynetdicom import AE, evt, AllStoragePresentationContexts

ae = AE(ae_title="PACS")
ae.supported_contexts = AllStoragePresentationContexts
ae.start_server(("127.0.0.1", int(sys.argv[1])), evt_handlers=[(evt.EVT_C_STORE, lambda event: 0xA900)])
"""


#: An SCP that answers every A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ
#: "rejected-transient" (result 2), source service provider (presentation
#: related function, 3), reason local limit exceeded (2): PS3.8 9.3.4.
TRANSIENT_REJECTING_SCP = """
import socket, struct, sys

server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    connection, _ = server.accept()
    with connection:
        header = connection.recv(6, socket.MSG_WAITALL)
        if len(header) == 6:
            (length,) = struct.unpack(">I", header[2:])
            connection.recv(length, socket.MSG_WAITALL)
            connection.sendall(bytes((0x03, 0, 0, 0, 0, 4, 0, 2, 3, 2)))
            connection.recv(1)
"""

ORTHANC = "/usr/sbin/Orthanc"


def orthancArgv(directory, port, httpPort):
    """
    The command line of Orthanc with a throw-away configuration: its
    storage and index in C{directory}, DICOM on C{port} and HTTP on
    C{httpPort} of 127.0.0.1, no plugins, no authentication.
    """
    configuration = {
        "Name": "dicomd-test",
        "StorageDirectory": os.path.join(directory, "storage"),
        "IndexDirectory": os.path.join(directory, "index"),
        "HttpPort": httpPort,
        "DicomPort": port,
        "DicomAet": "ORTHANC",
        "DicomCheckCalledAet": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
    }
    path = os.path.join(directory, "orthanc-%d.json" % (port,))
    with open(path, "w") as f:
        json.dump(configuration, f)
    return [ORTHANC, path]


@defer.inlineCallbacks
def startOrthanc(testCase, port=None):
    """
    Orthanc, as Debian packages it (L{orthancArgv}), on a free DICOM port
    or C{port}.

    @return: a L{Deferred} firing with its L{ChildProcess} once its REST
        API answers; C{.port} is its DICOM port, C{.httpPort} its HTTP one.
    """
    directory = makeDirectory(testCase)
    httpPort = freePort()
    if port is None:
        orthanc = yield startPeer(testCase, lambda port: orthancArgv(directory, port, httpPort), env=dcmtkEnvironment(), cwd=directory, name="Orthanc", startTimeout=60)
    else:
        orthanc = spawn(testCase, orthancArgv(directory, port, httpPort), env=dcmtkEnvironment(), cwd=directory, name="Orthanc")
        orthanc.port = port
    orthanc.httpPort = httpPort
    yield waitForPort(httpPort, process=orthanc, timeout=60)
    return orthanc


@defer.inlineCallbacks
def waitForOrthanc(orthanc, sent, timeout=60.0):
    """
    Wait until Orthanc holds exactly the instances of the files C{sent},
    asking its REST API (in a thread: urllib blocks) twice a second.
    """
    from twisted.internet import reactor

    wanted = sorted(str(pydicom.dcmread(path).SOPInstanceUID) for path in sent)

    def held():
        with urllib.request.urlopen("http://127.0.0.1:%d/instances?expand" % (orthanc.httpPort,), timeout=10) as response:
            return sorted(instance["MainDicomTags"]["SOPInstanceUID"] for instance in json.load(response))

    deadline = reactor.seconds() + timeout
    while True:
        found = yield threads.deferToThread(held)
        if found == wanted:
            return
        if reactor.seconds() > deadline:
            raise AssertionError("Orthanc holds %d of %d instances after %s s" % (len(found), len(wanted), timeout))
        yield deferLater(reactor, 0.5)


class OrthancForwardingTests(unittest.TestCase):
    """
    C{twistd dicomd} forwarding to Orthanc.
    """

    timeout = 240

    def setUp(self):
        if not os.access(ORTHANC, os.X_OK):
            raise unittest.SkipTest("Orthanc is not installed")

    @defer.inlineCallbacks
    def test_forwardToOrthanc(self):
        """
        What dicomd receives reaches Orthanc, and the queue empties.
        """
        orthanc = yield startOrthanc(self)
        daemon = yield startDaemon(self, "--forward", "ORTHANC@127.0.0.1:%d" % (orthanc.port,))
        sent = makeFiles(self, 10)
        result = yield storescu(daemon.port, sent)
        self.assertEqual(result.exitCode, 0, result.describe())
        yield waitForOrthanc(orthanc, sent)
        entries = yield queueEntries(daemon)
        self.assertEqual(entries, [])

    @defer.inlineCallbacks
    def test_orthancDownThenUp(self):
        """
        Orthanc started after dicomd received gets everything.
        """
        port = freePort()
        config = writeConfig(
            self,
            """
            [forwarding]
            retry-first = 1
            retry-max = 2

            [[ae]]
            title = "DICOMD"
            [[ae.forward]]
            to = "ORTHANC"

            [[peer]]
            title = "ORTHANC"
            host = "127.0.0.1"
            port = %d
            """
            % (port,),
        )
        daemon = yield startDaemon(self, "--config", config)
        sent = makeFiles(self, 5)
        yield storescu(daemon.port, sent)
        yield daemon.waitForOutput(r"Forwarding to ORTHANC: .*trying again in", timeout=60)
        orthanc = yield startOrthanc(self, port)
        yield waitForOrthanc(orthanc, sent)


class QueueCommandTests(unittest.TestCase):
    """
    C{dicomd queue}'s usage errors: one line, no traceback.
    """

    @defer.inlineCallbacks
    def assertUsageError(self, arguments, fragment):
        result = yield runCommand(dicomdArgv("queue", *arguments), env=pythonEnvironment(), cwd=makeDirectory(self))
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn(fragment, result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_unknownAction(self):
        return self.assertUsageError(["flush"], "unknown action 'flush' (known: list, retry, forget)")

    def test_retryNeedsAnEntry(self):
        return self.assertUsageError(["retry"], "retry needs the id of an entry, or --all")

    def test_noDatabase(self):
        return self.assertUsageError(["list"], "no index database at dicomd-data/.dicomd-index.sqlite")

    def test_badConfig(self):
        path = writeConfig(self, "[forwarding]\nretry-first = -1\n")
        return self.assertUsageError(["list", "--config", path], "forwarding.retry-first: must be greater than 0")
