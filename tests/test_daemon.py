"""
The daemon as an integration engineer meets it (issue 6): the real
C{twistd -n dicomd} process, configured with a TOML file, driven by DCMTK's
tools and by signals.

  - C{etc/dicomd.toml} starts as it is; a two-AE configuration stores
    into one directory per called AE title and rejects unknown ones; a
    mistake stops the start with its file, line and key; command-line
    options override the first AE (even when given their default value);
  - SIGHUP puts a new file in force without dropping a transfer that is
    running, keeps open studies open when an AE's storage did not change,
    and refuses an invalid file with a line naming its file, line and key;
  - SIGTERM stops listening, lets a running transfer finish within the
    grace period (or aborts it after the grace period, leaving no file),
    then exits;
  - the status page (JSON and Prometheus text), the per-host association
    limit, JSON and quiet text logs, C-MOVE to a [[peer]] over TLS, port
    104 with C{twistd --uid/--gid}, and the systemd unit in C{etc/}.

Transfers that must be "in progress" while a signal arrives are driven by
dicomd's own requestor, which sends the C-STORE command and half of the
data set and holds the rest until the test releases it (L{HeldStore}):
DCMTK's storescu cannot be paused mid-object.  Everything else is a real
DCMTK peer.  twistd re-raises SIGTERM after a clean shutdown, so a clean
stop shows as "killed by signal 15": cleanliness is judged by twistd's
C{Server Shut Down.} line and by the files.  The harness is
L{tests.support}; nothing sleeps, every wait polls.
"""

import json
import os
import random
import re
import shlex
import shutil
import socket
import stat
import sys
from dataclasses import replace

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from twisted.internet import defer, error
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial import unittest

from dicomd.config import readConfig
from dicomd.dimse.commands import CStoreRQ
from dicomd.dimse.pdv import fragment
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
from dicomd.errors import AssociationError
from dicomd.net.requestor import connect
from dicomd.storage.scp import TEMPORARY_NAME
from dicomd.storage.studies import StudyJournal
from tests.certificates import writeTestPKI
from tests.dicomfiles import CT_IMAGE_STORAGE, encodedDataSet, makeDataset, writeFile
from tests.storagearea import INDEX, indexedInstances, temporaryFiles, waitForIndexed
from tests.support import (
    LOCALHOST,
    REPO_ROOT,
    TWISTD,
    dcmtk,
    dcmtkEnvironment,
    freePort,
    makeDirectory,
    pythonEnvironment,
    runCommand,
    spawn,
    startDCMTKServer,
    startPeer,
    waitForPort,
    waitUntil,
)

#: The example configuration and the systemd unit.
EXAMPLE = os.path.join(str(REPO_ROOT), "etc", "dicomd.toml")
UNIT = os.path.join(str(REPO_ROOT), "etc", "dicomd.service")

#: What DCMTK's storescu -v prints for each object stored.
STORED = "Received Store Response (Success)"

#: twistd's last line after an orderly stop.
SHUT_DOWN = "Server Shut Down."

#: Rows and columns of the image a L{HeldStore} sends.
SIZE = 1024

#: The uid and gid the privilege test drops to (nobody, nogroup).
NOBODY = 65534

#: The keys an [[ae]] table knows, as the unknown key message lists them.
ENTITY_KEYS = [
    "title", "directory", "access", "transfer-syntaxes", "profile", "promiscuous", "query-retrieve",
    "get", "models", "calling-ae-titles", "hosts", "quota", "storage", "actions", "forward",
]


# -- files -----------------------------------------------------------------------------


def dicomFiles(directory: str) -> list:
    """
    The DICOM Part 10 files under C{directory}, except the named temporary
    ones in its root, sorted.
    """
    found = []
    for root, directories, names in os.walk(directory):
        for name in names:
            if root == directory and TEMPORARY_NAME.match(name):
                continue
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    if f.read(132)[128:] == b"DICM":
                        found.append(path)
            except OSError:
                pass
    return sorted(found)


def spooling(pid: int, directory: str) -> list:
    """
    The files with data that process C{pid} holds open in the root of the
    storage area C{directory}, but the index: objects being received.
    (They are usually unnamed, C{O_TMPFILE}, so they are found through
    C{/proc/PID/fd}, not by listing the directory.)
    """
    found = []
    descriptors = "/proc/%d/fd" % (pid,)
    for name in os.listdir(descriptors):
        path = os.path.join(descriptors, name)
        try:
            target = os.readlink(path)
            info = os.stat(path)
        except OSError:
            continue
        inRoot = os.path.dirname(target) == directory and not os.path.basename(target).startswith(INDEX)
        if inRoot and (info.st_mode & 0o170000) == 0o100000 and info.st_size > 0:
            found.append(target)
    return found


def instanceUIDs(paths) -> list:
    return sorted(str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in paths)


def writeImages(testCase, count: int = 1, study: str = None, **attributes) -> list:
    """
    C{count} small CT images of one study, as files: C{[(path, SOP
    Instance UID)]}.
    """
    directory = makeDirectory(testCase)
    study = study or generate_uid()
    written = []
    for number in range(count):
        dataset = makeDataset(rows=32, columns=32, studyInstanceUID=study, **attributes)
        dataset.InstanceNumber = number + 1
        path = writeFile(os.path.join(directory, "%03d.dcm" % (number,)), dataset)
        written.append((path, str(dataset.SOPInstanceUID)))
    return written


# -- the daemon and its peers ----------------------------------------------------------


def startConfigured(testCase, writeConfig, *options, twistdOptions=(), cwd=None, env=None):
    """
    Start C{twistd -n dicomd --config FILE} on a free port of 127.0.0.1.

    @param writeConfig: called with the port; writes the configuration
        file (listening on that port) and returns its path.
    @param options: further options of the dicomd plugin.
    @param twistdOptions: options of twistd itself (C{--logger=...}).
    @return: a L{Deferred} firing with the running L{ChildProcess}.
    """

    def argv(port):
        return TWISTD + list(twistdOptions) + ["-n", "--pidfile=", "dicomd", "--config", writeConfig(port)] + list(options)

    return startPeer(
        testCase,
        argv,
        env=env or pythonEnvironment(),
        cwd=cwd or makeDirectory(testCase),
        name="twistd dicomd",
        startTimeout=30,
    )


def configWriter(directory: str, text: str, name: str = "dicomd.toml"):
    """
    A C{writeConfig} for L{startConfigured}: C{text} with C{%(port)d}
    replaced, written as C{directory/name}.
    """

    def write(port):
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(text % {"port": port})
        return path

    return write


def echoscu(port: int, called: str = "DICOMD", *options: str, calling: str = "ECHOSCU", timeout: float = 30.0, host: str = LOCALHOST):
    return runCommand(
        [dcmtk("echoscu"), "-v", "-aet", calling, "-aec", called] + list(options) + [host, str(port)],
        env=dcmtkEnvironment(),
        timeout=timeout,
    )


def storescu(port: int, called: str, paths, *options: str, calling: str = "STORESCU", host: str = LOCALHOST):
    return runCommand(
        [dcmtk("storescu"), "-v", "-aet", calling, "-aec", called] + list(options) + [host, str(port)] + list(paths),
        env=dcmtkEnvironment(),
    )


@defer.inlineCallbacks
def associate(port: int, called: str, calling: str, contexts):
    """
    An association from dicomd's own requestor to C{127.0.0.1:port}.
    """
    from twisted.internet import reactor

    association = yield connect(
        TCP4ClientEndpoint(reactor, LOCALHOST, port),
        calledAETitle=called,
        callingAETitle=calling,
        presentationContexts=contexts,
        maximumLength=16384,
        reactor=reactor,
    )
    return association


class HeldStore:
    """
    A C-STORE that is in progress until the test says otherwise: the
    command and the first 1.5 MiB of a 2 MiB image (1024 x 1024, 16 bits)
    have been sent, the rest waits for L{finish}.  (The receiver spools
    in 1 MiB writes, so what was sent shows in its spool file.)

    @ivar association: the L{dicomd.net.association.Association}.
    @ivar response: a L{Deferred} firing with C{(C-STORE-RSP, None)}.
    @ivar uid: the SOP Instance UID being stored.
    """

    def __init__(self, association, dataset):
        self.association = association
        self.dataset = dataset
        self.uid = str(dataset.SOPInstanceUID)
        self.study = str(dataset.StudyInstanceUID)
        self._encoded = encodedDataSet(dataset)
        self._context = association.contextFor(CT_IMAGE_STORAGE)
        request = CStoreRQ(affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID=self.uid)
        # The command announces a data set; none is given here, so only
        # the command goes out and the data set follows by hand.
        self.response = association.request(self._context.contextID, request, None)
        self._sent = (len(self._encoded) * 3 // 4) & ~1
        self._send(self._encoded[: self._sent], isLast=False)

    @classmethod
    @defer.inlineCallbacks
    def begin(cls, port: int, called: str, calling: str = "HELD"):
        association = yield associate(port, called, calling, [(CT_IMAGE_STORAGE, [ExplicitVRLittleEndian])])
        return cls(association, makeDataset(rows=SIZE, columns=SIZE))

    def _send(self, data, isLast: bool) -> None:
        self.association.protocol.sendPData(fragment(self._context.contextID, False, data, self.association.fragmentLength, isLast))

    @defer.inlineCallbacks
    def finish(self):
        """
        Send the rest of the data set, wait for the response, release.

        @return: a L{Deferred} firing with the response's status.
        """
        self._send(self._encoded[self._sent :], isLast=True)
        response, _ = yield self.response
        yield self.association.release()
        return response.status


@defer.inlineCallbacks
def portRefuses(port: int) -> bool:
    """
    Whether a TCP connection to C{127.0.0.1:port} is refused.
    """
    from twisted.internet import protocol, reactor

    try:
        connected = yield TCP4ClientEndpoint(reactor, LOCALHOST, port, timeout=5).connect(protocol.Factory.forProtocol(protocol.Protocol))
    except error.ConnectError:
        return True
    connected.transport.abortConnection()
    return False


@defer.inlineCallbacks
def httpGet(url: str):
    """
    C{GET url} with L{twisted.web.client.Agent}.

    @return: a L{Deferred} firing with C{(code, content type, body)}.
    """
    from twisted.internet import reactor
    from twisted.web.client import Agent, HTTPConnectionPool, readBody

    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    response = yield agent.request(b"GET", url.encode("ascii"))
    body = yield readBody(response)
    [contentType] = response.headers.getRawHeaders(b"content-type")
    return response.code, contentType.decode("ascii"), body


def twoEntityConfig(directory: str, *, extra: str = "", entities=("ALPHA", "BETA")) -> str:
    """
    A configuration with one [[ae]] per title, each storing into
    C{directory/<title in lower case>}, one index database, calls to other
    titles rejected; C{%(port)d} is the port.
    """
    text = (
        'listen = ["tcp:%%(port)d:interface=127.0.0.1"]\n'
        "answer-any-called-ae = false\n"
        'database = "%s"\n' % (os.path.join(directory, "index.sqlite"),)
    )
    text += extra
    for title in entities:
        text += '\n[[ae]]\ntitle = "%s"\ndirectory = "%s"\n' % (title, os.path.join(directory, title.lower()))
    return text


class DaemonTestCase(unittest.TestCase):
    """
    Assertions shared by the tests of the daemon process.
    """

    timeout = 90

    @defer.inlineCallbacks
    def assertStores(self, port: int, called: str, directory: str, count: int = 1, daemon=None, host: str = LOCALHOST):
        """
        DCMTK's storescu stores C{count} new images through AE C{called}
        at C{host:port}, and they are in C{directory}, under their study's
        directory.

        @return: the SOP Instance UIDs stored.
        """
        images = writeImages(self, count)
        before = set(dicomFiles(directory))
        result = yield storescu(port, called, [path for path, _ in images], host=host)
        context = result.describe() + (daemon.describe() if daemon is not None else "")
        self.assertEqual(result.exitCode, 0, context)
        self.assertEqual(result.output.count(STORED), count, context)
        new = [path for path in dicomFiles(directory) if path not in before]
        uids = sorted(uid for _, uid in images)
        self.assertEqual(instanceUIDs(new), uids, context)
        study = str(pydicom.dcmread(images[0][0], stop_before_pixels=True).StudyInstanceUID)
        for path in new:
            self.assertEqual(os.path.dirname(path), os.path.join(directory, study))
        return uids

    def assertCleanStop(self, daemon) -> None:
        """
        The daemon stopped in order after SIGTERM: twistd's last line,
        and SIGTERM re-raised (how twistd ends after a signal).
        """
        self.assertIn(SHUT_DOWN, daemon.output, daemon.describe())
        self.assertNotIn("Traceback", daemon.output, daemon.describe())
        self.assertEqual(daemon.signal, 15, daemon.describe())


# -- configuration files ---------------------------------------------------------------


class ConfigurationFileTests(DaemonTestCase):
    """
    C{twistd -n dicomd --config FILE} with the example file and with a
    two-AE file.
    """

    @defer.inlineCallbacks
    def test_exampleStartsAsItIs(self):
        """
        A copy of etc/dicomd.toml, unchanged but for the port given with
        --listen, starts: echoscu succeeds, and storescu stores into
        dicomd-data/ in the working directory (where data paths are
        relative to, so that trying the example does not write beside it,
        into etc/), indexed there; the log says where.
        """
        home = makeDirectory(self)
        work = makeDirectory(self)
        config = shutil.copy(EXAMPLE, os.path.join(home, "dicomd.toml"))
        daemon = yield startPeer(
            self,
            lambda port: TWISTD
            + ["-n", "--pidfile=", "dicomd", "--config", config, "--listen", "tcp:%d:interface=%s" % (port, LOCALHOST)],
            env=pythonEnvironment(),
            cwd=work,
            name="twistd dicomd",
            startTimeout=30,
        )
        data = os.path.join(work, "dicomd-data")
        yield daemon.waitForOutput(r"AE DICOMD stores under %s$" % (re.escape(data),))
        yield daemon.waitForOutput(r"Index database: %s$" % (re.escape(os.path.join(data, ".dicomd-index.sqlite")),))
        echo = yield echoscu(daemon.port, "DICOMD")
        self.assertEqual(echo.exitCode, 0, echo.describe() + daemon.describe())
        self.assertIn("Received Echo Response (Success)", echo.output)
        uids = yield self.assertStores(daemon.port, "DICOMD", data, daemon=daemon)
        indexed = yield waitForIndexed(data, uids)
        self.assertEqual(sorted(indexed), uids)
        self.assertEqual(os.listdir(home), ["dicomd.toml"])
        yield daemon.waitForOutput(r"ECHOSCU -> DICOMD from 127\.0\.0\.1:\d+ released by the peer .*: C-ECHO 1 success")
        # Another called AE title goes to the first AE, or is rejected, as
        # the example's answer-any-called-ae says.
        other = yield echoscu(daemon.port, "WHATEVER")
        if readConfig(config).answerAnyCalledAETitle:
            self.assertEqual(other.exitCode, 0, other.describe())
        else:
            self.assertIn("Called AE Title Not Recognized", other.output, other.describe())

    @defer.inlineCallbacks
    def test_twoEntities(self):
        """
        With two [[ae]] tables, storescu calling each AE title stores into
        that AE's directory; calling a third title is rejected ("Called AE
        Title Not Recognized") when answer-any-called-ae = false.
        """
        home = makeDirectory(self)
        daemon = yield startConfigured(self, configWriter(home, twoEntityConfig(home)))
        alpha, beta = os.path.join(home, "alpha"), os.path.join(home, "beta")
        alphaUIDs = yield self.assertStores(daemon.port, "ALPHA", alpha, daemon=daemon)
        betaUIDs = yield self.assertStores(daemon.port, "BETA", beta, count=2, daemon=daemon)
        self.assertEqual(instanceUIDs(dicomFiles(alpha)), alphaUIDs)
        self.assertEqual(instanceUIDs(dicomFiles(beta)), betaUIDs)
        indexed = yield waitForIndexed(home, alphaUIDs + betaUIDs, os.path.join(home, "index.sqlite"))
        self.assertEqual(sorted(indexed), sorted(alphaUIDs + betaUIDs))

        [(path, _)] = writeImages(self)
        unknown = yield storescu(daemon.port, "GAMMA", [path])
        self.assertNotEqual(unknown.exitCode, 0, unknown.describe())
        self.assertRegex(unknown.output, r"Association Rejected")
        self.assertRegex(unknown.output, r"Rejected Permanent")
        self.assertRegex(unknown.output, r"Called AE Title Not Recognized")
        yield daemon.waitForOutput(r"STORESCU -> GAMMA from 127\.0\.0\.1:\d+ rejected: .*called AE title not recognized")
        self.assertEqual(len(dicomFiles(home)), 3)
        self.assertFalse(os.path.exists(os.path.join(home, "gamma")))


    @defer.inlineCallbacks
    def test_entitiesShareADirectory(self):
        """
        Two [[ae]] over one directory share its contents and its quota:
        what storescu stores through ARCHIVE, the read-only READONLY finds
        (findscu), moves (movescu to DCMTK's storescp) and gets (getscu);
        ARCHIVE's quota of one study holds for what both store, and
        STORER, writing into the same directory, stores through the same
        area (the stricter quota of the two, with a warning).
        """
        destination = makeDirectory(self)
        storescp = yield startDCMTKServer(self, "storescp", "-aet", "STORESCP", "-od", destination)
        home = makeDirectory(self)
        shared = os.path.join(home, "shared")
        text = twoEntityConfig(home, entities=()) + (
            '\n[[ae]]\ntitle = "ARCHIVE"\ndirectory = "%(shared)s"\nquota = { max-studies = 1, max-bytes-per-study = "10mb" }\n'
            '\n[[ae]]\ntitle = "READONLY"\ndirectory = "%(shared)s"\naccess = "R"\n'
            '\n[[ae]]\ntitle = "STORER"\ndirectory = "%(shared)s/"\naccess = "W"\n'
            '\n[[peer]]\ntitle = "STORESCP"\nhost = "127.0.0.1"\nport = %(storescp)d\n'
        ) % {"shared": shared, "storescp": storescp.port, "port": "%(port)d"}
        daemon = yield startConfigured(self, configWriter(home, text))
        yield daemon.waitForOutput(re.escape("AE titles ARCHIVE, STORER store into %s with different quotas" % (os.path.realpath(shared),)), timeout=30)
        images = writeImages(self, 1)
        study = str(pydicom.dcmread(images[0][0], stop_before_pixels=True).StudyInstanceUID)
        stored = yield storescu(daemon.port, "ARCHIVE", [path for path, _ in images])
        self.assertEqual(stored.output.count(STORED), 1, stored.describe())

        directory = makeDirectory(self)
        found = yield runCommand(
            [dcmtk("findscu"), "-S", "-X", "-od", directory, "-aec", "READONLY", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"]
            + [LOCALHOST, str(daemon.port)],
            env=dcmtkEnvironment(),
        )
        responses = [pydicom.dcmread(os.path.join(directory, name)) for name in os.listdir(directory)]
        self.assertEqual([r.StudyInstanceUID for r in responses], [study], found.describe() + daemon.describe())

        moved = yield runCommand(
            [dcmtk("movescu"), "-v", "-S", "-aet", "MOVESCU", "-aec", "READONLY", "-aem", "STORESCP"]
            + ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study, LOCALHOST, str(daemon.port)],
            env=dcmtkEnvironment(),
        )
        self.assertIn("Received Final Move Response (Success)", moved.output, moved.describe() + daemon.describe())
        self.assertEqual(instanceUIDs(dicomFiles(destination)), sorted(uid for _, uid in images))

        received = makeDirectory(self)
        got = yield runCommand(
            [dcmtk("getscu"), "-S", "-aet", "GETSCU", "-aec", "READONLY", "-od", received]
            + ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study, LOCALHOST, str(daemon.port)],
            env=dcmtkEnvironment(),
        )
        self.assertEqual(got.exitCode, 0, got.describe() + daemon.describe())
        self.assertEqual(instanceUIDs(dicomFiles(received)), sorted(uid for _, uid in images))

        later = writeImages(self, 1)
        stored = yield storescu(daemon.port, "STORER", [path for path, _ in later])
        self.assertEqual(stored.output.count(STORED), 1, stored.describe())
        indexed = yield waitForIndexed(home, [uid for _, uid in later], os.path.join(home, "index.sqlite"))
        self.assertEqual(sorted(indexed), [uid for _, uid in later])
        self.assertEqual(instanceUIDs(dicomFiles(shared)), [uid for _, uid in later])

    @defer.inlineCallbacks
    def test_invalidFileStopsStartUp(self):
        """
        A mistake in the file stops twistd before it listens, exit status
        1, with one line on standard error naming the file, the line and
        the key, and nothing else: not twistd's usage text.
        """
        home = makeDirectory(self)
        path = configWriter(home, twoEntityConfig(home) + 'sort = "study-uid"\n')(freePort())
        result = yield runCommand(
            TWISTD + ["-n", "--pidfile=", "dicomd", "--config", path], env=pythonEnvironment(), cwd=home, timeout=60
        )
        self.assertEqual(result.exitCode, 1, result.describe())
        line = len(open(path).read().splitlines())
        self.assertEqual(
            result.stderr.splitlines(),
            ["twistd dicomd: %s, line %d: ae[1].sort: unknown key (known: %s)" % (path, line, ", ".join(ENTITY_KEYS))],
            result.describe(),
        )
        self.assertEqual(result.stdout, "", result.describe())

    @defer.inlineCallbacks
    def test_commandLineOverridesFirstEntity(self):
        """
        --output-directory and --aetitle on the command line change the
        first [[ae]] of the file (and only it), also after a reload.
        """
        home = makeDirectory(self)
        elsewhere = os.path.join(makeDirectory(self), "elsewhere")
        daemon = yield startConfigured(
            self, configWriter(home, twoEntityConfig(home)), "--output-directory", elsewhere, "--aetitle", "FIRST"
        )
        yield self.assertStores(daemon.port, "FIRST", elsewhere, daemon=daemon)
        yield self.assertStores(daemon.port, "BETA", os.path.join(home, "beta"), daemon=daemon)
        [(path, _)] = writeImages(self)
        alpha = yield storescu(daemon.port, "ALPHA", [path])
        self.assertIn("Called AE Title Not Recognized", alpha.output, alpha.describe())
        daemon.signalProcess("HUP")
        yield daemon.waitForOutput(r"SIGHUP: reloaded", timeout=20)
        self.assertIn("AE titles in force: FIRST, BETA (2 kept, 0 added, 0 changed, 0 removed)", daemon.output)
        yield self.assertStores(daemon.port, "FIRST", elsewhere, daemon=daemon)
        self.assertEqual(dicomFiles(os.path.join(home, "alpha")), [])


class StartUpErrorTests(DaemonTestCase):
    """
    What cannot work stops C{twistd dicomd} at start-up with exit status 1
    and one line naming the path or endpoint and the reason: no traceback,
    no usage text.

    Unwritable places are paths through a regular file, which nobody can
    create, root included (file permissions do not stop root).
    """

    def twistd(self, *options, cwd=None):
        return runCommand(TWISTD + ["-n", "--pidfile=", "dicomd"] + list(options), env=pythonEnvironment(), cwd=cwd, timeout=60)

    def regularFile(self) -> str:
        path = os.path.join(makeDirectory(self), "afile")
        with open(path, "w") as f:
            f.write("not a directory\n")
        return path

    def assertOneLine(self, result, line: str) -> None:
        """
        The process ended with status 1 and printed C{line}, and no
        traceback.
        """
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn(line, result.output, result.describe())
        self.assertEqual(result.output.count(line), 1, result.describe())
        self.assertNotIn("Traceback", result.output, result.describe())

    @defer.inlineCallbacks
    def test_outputDirectoryUnderARegularFile(self):
        """
        --output-directory FILE/sub: the line names the directory, the AE,
        and the regular file in the way.
        """
        blocker = self.regularFile()
        directory = os.path.join(blocker, "sub")
        result = yield self.twistd("--listen", "tcp:0:interface=127.0.0.1", "--output-directory", directory)
        self.assertOneLine(result, "cannot write %s (the storage directory of AE DICOMD): %s is not a directory" % (directory, blocker))

    @defer.inlineCallbacks
    def test_outputDirectoryIsARegularFile(self):
        """
        --output-directory naming a regular file: it is not a directory.
        """
        blocker = self.regularFile()
        result = yield self.twistd("--listen", "tcp:0:interface=127.0.0.1", "--output-directory", blocker)
        self.assertOneLine(result, "cannot write %s (the storage directory of AE DICOMD): it is not a directory" % (blocker,))

    @defer.inlineCallbacks
    def test_sharedDirectoryWithTwoLayouts(self):
        """
        Two AEs storing into one directory with different storage settings
        (one sorted by study, one flat) stop the start with one line naming
        both and the directory.
        """
        home = makeDirectory(self)
        shared = os.path.join(home, "shared")
        text = twoEntityConfig(home, entities=()) + (
            '\n[[ae]]\ntitle = "SORTED"\ndirectory = "%(shared)s"\n'
            '\n[[ae]]\ntitle = "FLAT"\ndirectory = "%(shared)s"\n[ae.storage]\nsort = "none"\n'
        ) % {"shared": shared}
        result = yield self.twistd("--config", configWriter(home, text)(0))
        self.assertOneLine(result, "AE titles SORTED and FLAT store into %s with different storage settings" % (os.path.realpath(shared),))

    @defer.inlineCallbacks
    def test_storageDirectoryOfSecondEntity(self):
        """
        Every AE's directory is checked, not only the first one's.
        """
        home = makeDirectory(self)
        blocker = self.regularFile()
        text = twoEntityConfig(home) + '\n[[ae]]\ntitle = "GAMMA"\ndirectory = "%s"\n' % (os.path.join(blocker, "gamma"),)
        path = configWriter(home, text)(0)
        result = yield self.twistd("--config", path)
        self.assertOneLine(
            result, "cannot write %s (the storage directory of AE GAMMA): %s is not a directory" % (os.path.join(blocker, "gamma"), blocker)
        )

    @defer.inlineCallbacks
    def test_databaseUnderARegularFile(self):
        """
        A database path through a regular file: the line names the
        database, not SQLite's "unable to open database file".
        """
        home = makeDirectory(self)
        blocker = self.regularFile()
        database = os.path.join(blocker, "index.sqlite")
        path = configWriter(home, 'listen = ["tcp:0:interface=127.0.0.1"]\ndatabase = "%s"\n' % (database,))(0)
        result = yield self.twistd("--config", path, "--output-directory", os.path.join(home, "data"))
        self.assertOneLine(result, "cannot write %s (the index database): %s is not a directory" % (database, blocker))
        self.assertNotIn("unable to open database file", result.output)

    @defer.inlineCallbacks
    def test_databaseNotSQLite(self):
        """
        A database that is some other file: the line names it.
        """
        home = makeDirectory(self)
        database = self.regularFile()
        path = configWriter(home, 'listen = ["tcp:0:interface=127.0.0.1"]\ndatabase = "%s"\n' % (database,))(0)
        result = yield self.twistd("--config", path, "--output-directory", os.path.join(home, "data"))
        self.assertOneLine(result, "cannot open %s (the index database): file is not a database" % (database,))

    @defer.inlineCallbacks
    def test_portInUse(self):
        """
        An endpoint whose port is taken: the line names the endpoint
        string and the reason, not twistd's CannotListenError traceback.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind((LOCALHOST, 0))
        taken.listen()
        endpoint = "tcp:%d:interface=%s" % (taken.getsockname()[1], LOCALHOST)
        result = yield self.twistd("--listen", endpoint, "--output-directory", makeDirectory(self))
        self.assertOneLine(result, "cannot listen on %s: Address already in use" % (endpoint,))
        self.assertNotIn("CannotListenError", result.output)

    @defer.inlineCallbacks
    def test_badOptionWithoutUsageText(self):
        """
        A wrong option is its message and where to find help, on standard
        error, exit status 1: not twistd's usage text of every option.
        """
        result = yield self.twistd("--max-pdu", "5")
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertEqual(
            result.stderr.splitlines(),
            ["twistd dicomd: --max-pdu must be 0 or between 4096 and 131072, not 5", "Try 'twistd dicomd --help' for usage."],
            result.describe(),
        )
        self.assertEqual(result.stdout, "", result.describe())


class CommandLineTests(unittest.SynchronousTestCase):
    """
    The plugin's options override the configuration file when given,
    whatever their value.
    """

    def test_defaultValuesOverride(self):
        """
        --shutdown-grace 30, --aetitle DICOMD and --max-associations-per-host
        16 are the built-in defaults, and given on the command line they
        still override the file's other values; options not given leave
        the file's.
        """
        from dicomd.tap import Options

        home = makeDirectory(self)
        path = configWriter(
            home,
            '[limits]\nshutdown-grace = 5\nmax-associations-per-host = 2\nidle-timeout = 7\n[[ae]]\ntitle = "ALPHA"\ndirectory = "a"\n',
        )(0)
        options = Options()
        options.parseOptions(["--config", path, "--shutdown-grace", "30", "--aetitle", "DICOMD", "--max-associations-per-host=16"])
        config = options.overrides(options["base"])
        self.assertEqual(config.limits.shutdownGrace, 30)
        self.assertEqual(config.limits.maxAssociationsPerHost, 16)
        self.assertEqual(config.entities[0].title, "DICOMD")
        self.assertEqual(config.limits.idleTimeout, 7)
        self.assertEqual(config.entities[0].storage.outputDirectory, os.path.abspath("a"))


# -- SIGHUP ------------------------------------------------------------------------------


class ReloadSettingsTests(unittest.TestCase):
    """
    Which AEs a reload rebuilds, seen on a L{DicomdService} that is built
    but not started.
    """

    def test_moveTimeoutsRebuildTheAE(self):
        """
        An AE whose own settings did not change is rebuilt when the ACSE or
        DIMSE timeout, the window C-MOVE proposes or the peers changed (its
        C-MOVE sub-associations are built from them), and kept when nothing
        did.
        """
        from twisted.internet import reactor

        from dicomd.config import PeerConfig, readConfig
        from dicomd.daemon import DicomdService

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "dicomd.toml")
        with open(path, "w") as f:
            f.write(twoEntityConfig(directory, entities=("ALPHA",)) % {"port": 0})
        config = readConfig(path)
        daemon = DicomdService(config, reactor=reactor)
        kept = daemon.entityServices["ALPHA"]
        daemon._setEntities(replace(config))
        self.assertIs(daemon.entityServices["ALPHA"], kept)
        for changed in [
            replace(config, limits=replace(config.limits, dimseTimeout=5.0)),
            replace(config, limits=replace(config.limits, acseTimeout=5.0)),
            replace(config, limits=replace(config.limits, moveAsyncOps=8)),
            replace(config, peers=(PeerConfig("PACS", "127.0.0.1", 104),)),
        ]:
            daemon._setEntities(changed)
            self.assertIsNot(daemon.entityServices["ALPHA"], kept, changed)
            kept = daemon.entityServices["ALPHA"]
            daemon.config = changed


class ReloadTests(DaemonTestCase):
    """
    SIGHUP reads the configuration file again.
    """

    @defer.inlineCallbacks
    def test_newEntityWithoutDroppingTransfer(self):
        """
        A transfer to ALPHA is half sent; BETA is added to the file and
        SIGHUP sent: BETA answers storescu at once, and then the held
        transfer completes and its file is stored under ALPHA.
        """
        home = makeDirectory(self)
        daemon = yield startConfigured(self, configWriter(home, twoEntityConfig(home, entities=("ALPHA",))))
        alpha, beta = os.path.join(home, "alpha"), os.path.join(home, "beta")
        [(path, _)] = writeImages(self)
        before = yield storescu(daemon.port, "BETA", [path])
        self.assertIn("Called AE Title Not Recognized", before.output, before.describe())

        held = yield HeldStore.begin(daemon.port, "ALPHA")
        yield waitUntil(lambda: spooling(daemon.transport.pid, alpha), timeout=20, message="the held object is being received\n" + daemon.describe())
        with open(os.path.join(home, "dicomd.toml"), "w") as f:
            f.write(twoEntityConfig(home) % {"port": daemon.port})
        daemon.signalProcess("HUP")
        yield daemon.waitForOutput(r"SIGHUP: reloaded .*dicomd\.toml", timeout=20)
        self.assertIn("AE titles in force: ALPHA, BETA (1 kept, 1 added, 0 changed, 0 removed)", daemon.output)

        yield self.assertStores(daemon.port, "BETA", beta, daemon=daemon)
        self.assertTrue(held.association.protocol.transport.connected, "the held association was dropped")
        self.assertEqual(len(spooling(daemon.transport.pid, alpha)), 1)
        status = yield held.finish()
        self.assertEqual(status, 0x0000)
        [stored] = dicomFiles(alpha)
        self.assertEqual(stored, os.path.join(alpha, held.study, "CT." + held.uid))
        self.assertEqual(len(pydicom.dcmread(stored).PixelData), SIZE * SIZE * 2)
        yield daemon.waitForOutput(r"HELD -> ALPHA from .* released by the peer .*: C-STORE 1 success")
        yield self.assertStores(daemon.port, "ALPHA", alpha, daemon=daemon)

    @defer.inlineCallbacks
    def test_changedEntityFinishesWithFormerSettings(self):
        """
        A reload that moves ALPHA to another directory: the transfer
        running since before the reload ends in the former directory, the
        next one goes to the new directory.
        """
        home = makeDirectory(self)
        path = os.path.join(home, "dicomd.toml")
        daemon = yield startConfigured(self, configWriter(home, twoEntityConfig(home, entities=("ALPHA",))))
        alpha = os.path.join(home, "alpha")
        held = yield HeldStore.begin(daemon.port, "ALPHA")
        yield waitUntil(lambda: spooling(daemon.transport.pid, alpha), timeout=20, message=daemon.describe())
        with open(path, "w") as f:
            f.write((twoEntityConfig(home, entities=("ALPHA",)) % {"port": daemon.port}).replace("/alpha", "/alpha2"))
        daemon.signalProcess("HUP")
        yield daemon.waitForOutput(r"SIGHUP: reloaded", timeout=20)
        self.assertIn("AE titles in force: ALPHA (0 kept, 0 added, 1 changed, 0 removed)", daemon.output)
        yield self.assertStores(daemon.port, "ALPHA", os.path.join(home, "alpha2"), daemon=daemon)
        status = yield held.finish()
        self.assertEqual(status, 0x0000)
        self.assertEqual(dicomFiles(alpha), [os.path.join(alpha, held.study, "CT." + held.uid)])

    def test_openStudyOutlivesReload(self):
        """
        A reload that rebuilds ALPHA (a [[peer]] is added, which every AE
        uses for C-MOVE) without touching its storage: the study open
        since before the reload does not end then; its end-of-study
        command runs once, at the stop, after a second object of it was
        stored through the new AE.
        """
        return self.assertOpenStudyOutlives('[[peer]]\ntitle = "SOMEWHERE"\nhost = "127.0.0.1"\nport = 1\n')

    def test_openStudyOutlivesStorageChange(self):
        """
        A reload that changes how ALPHA stores (fsync) but not where: the
        study open since before the reload goes on in the new AE, and
        its end-of-study command runs once, at the stop.
        """
        return self.assertOpenStudyOutlives("[ae.storage]\nfsync = true\n")

    @defer.inlineCallbacks
    def assertOpenStudyOutlives(self, addition: str):
        """
        Store one object of a study into ALPHA, whose end-of-study command
        logs its directory, reload with C{addition} at the end of the
        file, store a second object of the study: the study ends once, at
        the stop, with both objects.
        """
        home = makeDirectory(self)
        log = os.path.join(home, "eostudy.log")
        actions = '[ae.actions]\non-end-of-study = "echo #p >> %s"\nend-of-study-timeout = 3600\n' % (log,)
        text = twoEntityConfig(home, entities=("ALPHA",)) + actions
        daemon = yield startConfigured(self, configWriter(home, text))
        alpha = os.path.join(home, "alpha")
        study = generate_uid()
        [(first, _)] = writeImages(self, study=study)
        stored = yield storescu(daemon.port, "ALPHA", [first])
        self.assertEqual(stored.output.count(STORED), 1, stored.describe())
        with open(os.path.join(home, "dicomd.toml"), "w") as f:
            f.write(text % {"port": daemon.port} + addition)
        daemon.signalProcess("HUP")
        yield daemon.waitForOutput(r"SIGHUP: reloaded", timeout=20)
        self.assertIn("AE titles in force: ALPHA (0 kept, 0 added, 1 changed, 0 removed)", daemon.output)
        [(second, _)] = writeImages(self, study=study)
        stored = yield storescu(daemon.port, "ALPHA", [second])
        self.assertEqual(stored.output.count(STORED), 1, stored.describe())
        yield waitUntil(lambda: daemon.output.count(" released by the peer ") == 2, timeout=20, message="second store logged")
        self.assertNotIn("End of study", daemon.output)
        self.assertFalse(os.path.exists(log), "the reload ended the open study")
        yield daemon.stop(timeout=30)
        self.assertCleanStop(daemon)
        with open(log) as f:
            self.assertEqual(f.read().splitlines(), [os.path.join(alpha, study)])
        self.assertEqual(len(dicomFiles(os.path.join(alpha, study))), 2)

    @defer.inlineCallbacks
    def test_invalidFileRefused(self):
        """
        SIGHUP with an invalid file is refused with a log line naming the
        file, the line and the key; the AEs in force keep serving.
        """
        home = makeDirectory(self)
        path = os.path.join(home, "dicomd.toml")
        daemon = yield startConfigured(self, configWriter(home, twoEntityConfig(home)))
        yield self.assertStores(daemon.port, "ALPHA", os.path.join(home, "alpha"), daemon=daemon)
        text = twoEntityConfig(home, entities=("ALPHA", "BETA", "GAMMA")) % {"port": daemon.port}
        text += "quota = { max-studies = 0, max-bytes-per-study = 1 }\n"
        with open(path, "w") as f:
            f.write(text)
        line = len(text.splitlines())
        daemon.signalProcess("HUP")
        match = yield daemon.waitForOutput(r".*SIGHUP: not reloading.*", timeout=20)
        self.assertIn("%s, line %d: ae[2].quota.max-studies: must be greater than 0" % (path, line), match.group(0))
        self.assertNotIn("SIGHUP: reloaded", daemon.output)
        yield self.assertStores(daemon.port, "ALPHA", os.path.join(home, "alpha"), daemon=daemon)
        yield self.assertStores(daemon.port, "BETA", os.path.join(home, "beta"), daemon=daemon)
        [(image, _)] = writeImages(self)
        gamma = yield storescu(daemon.port, "GAMMA", [image])
        self.assertIn("Called AE Title Not Recognized", gamma.output, gamma.describe())

        # Not TOML at all: the line of the mistake is named too.
        with open(path, "w") as f:
            f.write('listen = ["tcp:1"]\n[[ae]\n')
        daemon.signalProcess("HUP")
        yield daemon.waitForOutput(r"SIGHUP: not reloading.*%s, line 2: .*not valid TOML" % (re.escape(path),), timeout=20)
        yield self.assertStores(daemon.port, "BETA", os.path.join(home, "beta"), daemon=daemon)

    @defer.inlineCallbacks
    def test_unwritableDirectoryRefused(self):
        """
        SIGHUP with a file whose new AE's directory cannot be written is
        refused with a line naming the directory and why; the AEs in force
        keep serving.
        """
        home = makeDirectory(self)
        path = os.path.join(home, "dicomd.toml")
        daemon = yield startConfigured(self, configWriter(home, twoEntityConfig(home)))
        blocker = os.path.join(home, "afile")
        with open(blocker, "w") as f:
            f.write("not a directory\n")
        directory = os.path.join(blocker, "gamma")
        text = twoEntityConfig(home) % {"port": daemon.port}
        text += '\n[[ae]]\ntitle = "GAMMA"\ndirectory = "%s"\n' % (directory,)
        with open(path, "w") as f:
            f.write(text)
        # The port accepts before the services have started and installed
        # the SIGHUP handler; an answered C-ECHO says they have.
        echo = yield echoscu(daemon.port, "ALPHA")
        self.assertEqual(echo.exitCode, 0, echo.describe())
        daemon.signalProcess("HUP")
        yield daemon.waitForOutput(
            r"SIGHUP: not reloading %s: cannot write %s \(the storage directory of AE GAMMA\): %s is not a directory$"
            % (re.escape(path), re.escape(directory), re.escape(blocker)),
            timeout=20,
        )
        self.assertNotIn("SIGHUP: reloaded", daemon.output)
        yield self.assertStores(daemon.port, "BETA", os.path.join(home, "beta"), daemon=daemon)


# -- SIGTERM -------------------------------------------------------------------------------


class StopTests(DaemonTestCase):
    """
    SIGTERM with an association running.
    """

    @defer.inlineCallbacks
    def test_runningTransferFinishes(self):
        """
        After SIGTERM the port refuses connections, the held transfer
        completes within the grace period and is stored, and then the
        process ends in order.
        """
        data = os.path.join(makeDirectory(self), "data")
        daemon = yield startPeer(
            self,
            lambda port: TWISTD
            + ["-n", "--pidfile=", "dicomd", "--listen", "tcp:%d:interface=%s" % (port, LOCALHOST), "-o", data, "--shutdown-grace", "30"],
            env=pythonEnvironment(),
            cwd=makeDirectory(self),
            name="twistd dicomd",
            startTimeout=30,
        )
        held = yield HeldStore.begin(daemon.port, "DICOMD")
        yield waitUntil(lambda: spooling(daemon.transport.pid, data), timeout=20, message=daemon.describe())
        # Without --config, SIGHUP has nothing to read and changes nothing.
        daemon.signalProcess("HUP")
        yield daemon.waitForOutput(r"SIGHUP: no configuration file to reload", timeout=20)
        daemon.signalProcess("TERM")
        yield daemon.waitForOutput(r"Stopping: waiting up to 30(\.0)? s for 1 connections to finish", timeout=20)
        refused = yield portRefuses(daemon.port)
        self.assertTrue(refused, "still listening after SIGTERM")
        daemon.signalProcess("HUP")
        yield daemon.waitForOutput(r"SIGHUP: not reloading, dicomd is stopping", timeout=20)
        self.assertTrue(daemon.running)
        status = yield held.finish()
        self.assertEqual(status, 0x0000)
        yield daemon.whenEnded()
        self.assertCleanStop(daemon)
        self.assertNotIn("aborting", daemon.output)
        [stored] = dicomFiles(data)
        self.assertEqual(stored, os.path.join(data, held.study, "CT." + held.uid))
        self.assertEqual(len(pydicom.dcmread(stored).PixelData), SIZE * SIZE * 2)
        self.assertEqual(sorted(indexedInstances(data)), [held.uid])
        self.assertEqual(temporaryFiles(data), [])

    @defer.inlineCallbacks
    def test_stopBeforeTheReactorRuns(self):
        """
        A SIGTERM that arrives after the services have started but before
        the reactor runs (as twistd does them, in that order) still stops
        dicomd in order: its end-of-study command runs for the study a
        killed run left open.
        """
        data = os.path.join(makeDirectory(self), "data")
        log = os.path.join(makeDirectory(self), "eostudy.log")
        state = makeDirectory(self)
        options = ["--listen", "tcp:0:interface=127.0.0.1", "-o", data, "--exec-on-eostudy", "echo #p >> " + log, "--eostudy-timeout", "3600"]
        options += ["--state-directory", state]
        # What a killed run leaves: a stored object and its journal line.
        [(source, uid)] = writeImages(self)
        study = str(pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID)
        os.makedirs(os.path.join(data, study))
        stored = shutil.copy(source, os.path.join(data, study, "CT." + uid))
        with open(os.path.join(state, StudyJournal.fileName(os.path.realpath(data))), "w") as f:
            f.write(json.dumps({"episode": "1", "study": study, "file": stored, "calling": "A", "called": "B", "peer": "127.0.0.1", "at": 0}) + "\n")
        script = (
            "import os, signal, sys\n"
            "from twisted.internet import reactor\n"
            "from dicomd.tap import Options, makeService\n"
            "options = Options()\n"
            "options.parseOptions(sys.argv[1:])\n"
            "daemon = makeService(options)\n"
            "daemon.privilegedStartService()\n"
            "daemon.startService()\n"
            "reactor.addSystemEventTrigger('before', 'shutdown', daemon.stopService)\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "print('alive after SIGTERM', flush=True)\n"
            "reactor.run()\n"
            "print('stopped in order', flush=True)\n"
        )
        result = yield runCommand([sys.executable, "-c", script] + options, env=pythonEnvironment(), timeout=60)
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(result.stdout.splitlines()[-2:], ["alive after SIGTERM", "stopped in order"], result.describe())
        with open(log) as f:
            self.assertEqual(f.read().splitlines(), [os.path.join(data, study)])

    @defer.inlineCallbacks
    def test_graceExpires(self):
        """
        A transfer still running when the grace period ends is aborted:
        no file is left, and the process ends in order.
        """
        data = os.path.join(makeDirectory(self), "data")
        home = makeDirectory(self)
        daemon = yield startConfigured(
            self,
            configWriter(home, 'listen = ["tcp:%%(port)d:interface=127.0.0.1"]\n[limits]\nshutdown-grace = 1\n[[ae]]\ntitle = "DICOMD"\ndirectory = "%s"\n' % (data,)),
        )
        held = yield HeldStore.begin(daemon.port, "DICOMD")
        yield waitUntil(lambda: spooling(daemon.transport.pid, data), timeout=20, message=daemon.describe())
        daemon.signalProcess("TERM")
        yield daemon.whenEnded()
        self.assertRegex(daemon.output, r"Stopping: aborting 1 connections still open after 1(\.0)? s")
        self.assertCleanStop(daemon)
        yield self.assertFailure(held.response, AssociationError)
        self.assertEqual(dicomFiles(data), [])
        self.assertEqual(temporaryFiles(data), [])
        self.assertEqual(sorted(indexedInstances(data)), [])


# -- status page ---------------------------------------------------------------------------


class StatusPageTests(DaemonTestCase):
    """
    C{--status tcp:PORT:interface=127.0.0.1}: JSON at C{/}, Prometheus
    text at C{/metrics}.
    """

    @defer.inlineCallbacks
    def test_jsonAndMetrics(self):
        """
        The JSON page shows the node, uptime, the open associations per AE
        (one while a transfer is held) and, after storescu, the per-AE
        counters; /metrics shows the same in Prometheus text; other paths
        are 404.
        """
        home = makeDirectory(self)
        statusPort = freePort()
        daemon = yield startConfigured(
            self, configWriter(home, twoEntityConfig(home)), "--status", "tcp:%d:interface=127.0.0.1" % (statusPort,), "--node", "node-7"
        )
        yield waitForPort(statusPort, process=daemon, timeout=20)
        base = "http://127.0.0.1:%d" % (statusPort,)
        code, contentType, body = yield httpGet(base + "/")
        self.assertEqual((code, contentType), (200, "application/json"))
        page = json.loads(body)
        self.assertEqual(page["openAssociations"], {"ALPHA": 0, "BETA": 0})
        self.assertEqual(page["pendingStudies"], {"ALPHA": 0, "BETA": 0})
        self.assertGreaterEqual(page["uptime"], 0)
        self.assertEqual(page["node"], "node-7")

        held = yield HeldStore.begin(daemon.port, "BETA")
        code, _, body = yield httpGet(base + "/")
        self.assertEqual(json.loads(body)["openAssociations"], {"ALPHA": 0, "BETA": 1})
        status = yield held.finish()
        self.assertEqual(status, 0)
        yield self.assertStores(daemon.port, "ALPHA", os.path.join(home, "alpha"), count=2, daemon=daemon)
        [(path, _)] = writeImages(self)
        yield storescu(daemon.port, "NOBODY", [path])
        yield waitUntil(lambda: daemon.output.count(" released by the peer ") >= 2, timeout=20, message=daemon.describe())

        code, _, body = yield httpGet(base + "/")
        page = json.loads(body)
        self.assertGreater(page["uptime"], 0)
        self.assertEqual(page["openAssociations"], {"ALPHA": 0, "BETA": 0})
        self.assertEqual(page["associations"]["ALPHA"], {"accepted": 1, "released": 1})
        self.assertEqual(page["associations"]["BETA"], {"accepted": 1, "released": 1})
        self.assertEqual(page["associations"]["(other)"], {"rejected": 1})
        self.assertEqual(page["operations"]["ALPHA"], {"C-STORE": {"success": 2}})
        self.assertEqual(page["operations"]["BETA"], {"C-STORE": {"success": 1}})
        # One study each, waiting for its end (no end-of-study timeout).
        self.assertEqual(page["pendingStudies"], {"ALPHA": 1, "BETA": 1})

        code, contentType, body = yield httpGet(base + "/metrics")
        self.assertEqual((code, contentType), (200, "text/plain; version=0.0.4; charset=utf-8"))
        metrics = parsePrometheus(body.decode("utf-8"))
        self.assertGreater(metrics[("dicomd_uptime_seconds", ())], 0)
        self.assertEqual(metrics[("dicomd_node_info", (("node", "node-7"),))], 1)
        self.assertEqual(metrics[("dicomd_open_associations", (("ae", "ALPHA"),))], 0)
        self.assertEqual(metrics[("dicomd_associations_total", (("ae", "BETA"), ("event", "accepted")))], 1)
        self.assertEqual(metrics[("dicomd_associations_total", (("ae", "(other)"), ("event", "rejected")))], 1)
        self.assertEqual(metrics[("dicomd_operations_total", (("ae", "ALPHA"), ("operation", "C-STORE"), ("outcome", "success")))], 2)
        self.assertEqual(metrics[("dicomd_pending_studies", (("ae", "BETA"),))], 1)

        code, _, _ = yield httpGet(base + "/nothing")
        self.assertEqual(code, 404)


def parsePrometheus(text: str) -> dict:
    """
    The samples of a Prometheus text exposition: C{(name, ((label,
    value), ...)) -> float}.  Every line must be a comment (C{# HELP},
    C{# TYPE}) or a sample, and every sample's family must have had its
    C{# TYPE}.
    """
    samples = {}
    typed = set()
    for line in text.splitlines():
        if not line:
            continue
        comment = re.match(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$", line)
        if comment:
            if comment.group(1) == "TYPE":
                assert comment.group(3) in ("counter", "gauge"), line
                typed.add(comment.group(2))
            continue
        sample = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$', line)
        assert sample, "not a Prometheus sample: %r" % (line,)
        assert sample.group(1) in typed, "no # TYPE before %r" % (line,)
        labels = tuple(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', sample.group(2) or ""))
        samples[(sample.group(1), labels)] = float(sample.group(3))
    return samples


# -- limits ------------------------------------------------------------------------------------


class LimitTests(DaemonTestCase):
    """
    [limits] max-associations-per-host.
    """

    @defer.inlineCallbacks
    def test_perHostLimit(self):
        """
        With max-associations-per-host = 2 and two associations open, a
        third from the same host gets A-ASSOCIATE-RJ transient (local
        limit exceeded); the two keep working, and once one is released a
        new one is accepted.
        """
        home = makeDirectory(self)
        daemon = yield startConfigured(
            self, configWriter(home, twoEntityConfig(home, extra="[limits]\nmax-associations-per-host = 2\n"))
        )
        verification = [(VERIFICATION_SOP_CLASS, [ExplicitVRLittleEndian])]
        first = yield associate(daemon.port, "ALPHA", "FIRST", verification)
        second = yield associate(daemon.port, "BETA", "SECOND", verification)
        third = yield echoscu(daemon.port, "ALPHA", calling="THIRD")
        self.assertNotEqual(third.exitCode, 0, third.describe())
        self.assertIn("Association Rejected", third.output, third.describe())
        self.assertIn("Rejected Transient", third.output, third.describe())
        self.assertIn("Local Limit Exceeded", third.output, third.describe())
        yield daemon.waitForOutput(r"THIRD -> ALPHA from 127\.0\.0\.1:\d+ rejected: .*local limit exceeded")
        for association in (first, second):
            status = yield association.echo()
            self.assertEqual(status, 0x0000)
        yield first.release()
        yield waitUntil(lambda: re.search(r"FIRST -> ALPHA from .* released by the peer", daemon.output), timeout=20, message="FIRST released")
        fourth = yield echoscu(daemon.port, "ALPHA", calling="FOURTH")
        self.assertEqual(fourth.exitCode, 0, fourth.describe() + daemon.describe())
        yield second.release()


# -- logging ------------------------------------------------------------------------------------


class LogTests(DaemonTestCase):
    """
    C{twistd --logger=dicomd.observers.json} and C{.text}.
    """

    @defer.inlineCallbacks
    def test_quietLogsErrorsOnly(self):
        """
        With the text observer and -q (DCMTK's quiet), an association
        leaves no line but a refused reload does.
        """
        home = makeDirectory(self)
        daemon = yield startConfigured(
            self, configWriter(home, twoEntityConfig(home)), "-q", twistdOptions=["--logger=dicomd.observers.text"]
        )
        echo = yield echoscu(daemon.port, "ALPHA", calling="QUIETECHO")
        self.assertEqual(echo.exitCode, 0, echo.describe())
        with open(os.path.join(home, "dicomd.toml"), "a") as f:
            f.write("bogus = 1\n")
        daemon.signalProcess("HUP")
        yield daemon.waitForOutput(r"\[dicomd\.daemon\.DicomdService#error\] SIGHUP: not reloading, .*bogus: unknown key", timeout=20)
        self.assertNotIn("QUIETECHO", daemon.output)
        self.assertNotIn("#info]", daemon.output)

    @defer.inlineCallbacks
    def test_oneObjectPerLine(self):
        """
        Every line on standard output is one JSON object; the association
        lines carry calling, called and peer as fields and the formatted
        message as log_text.
        """
        home = makeDirectory(self)
        daemon = yield startConfigured(
            self, configWriter(home, twoEntityConfig(home)), twistdOptions=["--logger=dicomd.observers.json"]
        )
        echo = yield echoscu(daemon.port, "BETA", calling="JSONECHO")
        self.assertEqual(echo.exitCode, 0, echo.describe())
        yield daemon.waitForOutput(r'Association JSONECHO -> BETA from [^"]* released by the peer')
        events = []
        complete = daemon.stdout.rpartition("\n")[0]
        for line in complete.splitlines():
            if line.strip():
                event = json.loads(line)
                self.assertIsInstance(event, dict, line)
                self.assertIn("log_level", event)
                self.assertIn("log_text", event)
                events.append(event)
        associations = [event for event in events if event.get("calling") == "JSONECHO"]
        self.assertEqual(len(associations), 2, daemon.stdout)
        accepted, ended = associations
        for event in associations:
            self.assertEqual(event["called"], "BETA")
            self.assertRegex(event["peer"], r"^127\.0\.0\.1:\d+$")
            self.assertEqual(event["log_namespace"], "dicomd.net.acceptor.AcceptorProtocol")
            self.assertEqual(event["log_level"]["name"], "info")
        self.assertRegex(accepted["log_text"], r"^Association JSONECHO -> BETA from 127\.0\.0\.1:\d+ accepted: 1 of 1 presentation contexts$")
        self.assertRegex(ended["log_text"], r"released by the peer after .* s: C-ECHO 1 success$")
        self.assertIn("C-ECHO 1 success", ended["counts"])
        self.assertTrue(any("AE titles in force: ALPHA, BETA" in event["log_text"] for event in events))


# -- C-MOVE over TLS -----------------------------------------------------------------------------


class MoveOverTLSTests(DaemonTestCase):
    """
    A [[peer]] reached over TLS as a C-MOVE destination.
    """

    @defer.inlineCallbacks
    def test_moveToTLSPeer(self):
        """
        A study stored into dicomd is moved, at movescu's request, to DCMTK's
        storescp +tls (which requires our client certificate): the files
        arrive there.
        """
        pki = writeTestPKI(makeDirectory(self))
        destination = makeDirectory(self)
        storescp = yield startDCMTKServer(
            self,
            "storescp",
            "-aet",
            "TLSDEST",
            "-od",
            destination,
            "+tls",
            pki.serverKey,
            pki.serverCertificate,
            "+cf",
            pki.caCertificate,
        )
        home = makeDirectory(self)
        peer = (
            '\n[[peer]]\ntitle = "TLSDEST"\nhost = "127.0.0.1"\nport = %d\n'
            'tls = { certificate = "%s", private-key = "%s", ca = ["%s"] }\n'
            % (storescp.port, pki.clientCertificate, pki.clientKey, pki.caCertificate)
        )
        daemon = yield startConfigured(self, configWriter(home, twoEntityConfig(home, entities=("ARCHIVE",)) + peer))
        images = writeImages(self, 2)
        study = str(pydicom.dcmread(images[0][0], stop_before_pixels=True).StudyInstanceUID)
        stored = yield storescu(daemon.port, "ARCHIVE", [path for path, _ in images])
        self.assertEqual(stored.output.count(STORED), 2, stored.describe())
        moved = yield runCommand(
            [dcmtk("movescu"), "-v", "-S", "-aet", "MOVESCU", "-aec", "ARCHIVE", "-aem", "TLSDEST"]
            + ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study, LOCALHOST, str(daemon.port)],
            env=dcmtkEnvironment(),
        )
        self.assertEqual(moved.exitCode, 0, moved.describe() + daemon.describe())
        self.assertIn("Received Final Move Response (Success)", moved.output, moved.describe() + daemon.describe())
        yield waitUntil(lambda: len(dicomFiles(destination)) == 2, timeout=20, message=storescp.describe())
        self.assertEqual(instanceUIDs(dicomFiles(destination)), sorted(uid for _, uid in images))


class MoveAsynchronousOperationsTests(DaemonTestCase):
    """
    C{[limits] move-async-ops}: the asynchronous operations window a C-MOVE
    sub-association proposes.
    """

    @defer.inlineCallbacks
    def test_windowGranted(self):
        """
        A destination that grants part of the window (C{twistd dicomd} up
        to its C{max-async-ops}) gets the moved study whole; the
        A-ASSOCIATE-AC (logged with C{-d}) carries the window granted.
        The C-MOVE follows the last response at once: the archive's query
        waits for the rows of what it acknowledged before it.
        """
        destinationHome = makeDirectory(self)
        destination = yield startConfigured(
            self, configWriter(destinationHome, twoEntityConfig(destinationHome, extra="[limits]\nmax-async-ops = 4\n", entities=("DEST",)))
        )
        home = makeDirectory(self)
        config = twoEntityConfig(home, extra="[limits]\nmove-async-ops = 8\n", entities=("ARCHIVE",))
        config += '\n[[peer]]\ntitle = "DEST"\nhost = "127.0.0.1"\nport = %d\n' % (destination.port,)
        daemon = yield startConfigured(self, configWriter(home, config), "-d")
        images = writeImages(self, 12)
        study = str(pydicom.dcmread(images[0][0], stop_before_pixels=True).StudyInstanceUID)
        stored = yield storescu(daemon.port, "ARCHIVE", [path for path, _ in images])
        self.assertEqual(stored.output.count(STORED), 12, stored.describe())
        moved = yield runCommand(
            [dcmtk("movescu"), "-S", "-aet", "MOVESCU", "-aec", "ARCHIVE", "-aem", "DEST"]
            + ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study, LOCALHOST, str(daemon.port)],
            env=dcmtkEnvironment(),
        )
        self.assertEqual(moved.exitCode, 0, moved.describe() + daemon.describe())
        received = os.path.join(destinationHome, "dest")
        yield waitUntil(lambda: len(dicomFiles(received)) == 12, timeout=30, message=destination.describe())
        self.assertEqual(instanceUIDs(dicomFiles(received)), sorted(uid for _, uid in images))
        yield daemon.waitForOutput(r"A-ASSOCIATE-AC(.|\n)*Asynchronous operations window: 4 invoked, 1 performed", timeout=30)


# -- permissions -------------------------------------------------------------------------------


def modes(paths) -> dict:
    """
    Each path's permission bits, in octal, for readable assertions.
    """
    return {path: "%04o" % (stat.S_IMODE(os.stat(path).st_mode),) for path in paths}


class PermissionTests(DaemonTestCase):
    """
    What dicomd creates holds patient data: under the usual umask 022 the
    files are 0640 and the directories 0750, not 0644 and 0755; the
    configuration file's file-mode and directory-mode change that.
    """

    @defer.inlineCallbacks
    def storeOne(self, daemon, called: str, data: str):
        """
        Store one image with DCMTK's storescu through C{called}.

        @return: the stored file.
        """
        yield self.assertStores(daemon.port, called, data, daemon=daemon)
        [stored] = dicomFiles(data)
        return stored

    @defer.inlineCallbacks
    def test_defaultModes(self):
        """
        twistd --umask 022 -n dicomd: the stored file is 0640; its study directory and the storage area 0750; the
        index database and its -wal and -shm files 0640.
        """
        home = makeDirectory(self)
        data = os.path.join(home, "data")
        daemon = yield startPeer(
            self,
            lambda port: TWISTD
            + ["--umask", "022", "-n", "--pidfile=", "dicomd", "-o", data, "--listen", "tcp:%d:interface=%s" % (port, LOCALHOST)],
            env=pythonEnvironment(),
            cwd=home,
            name="twistd dicomd",
            startTimeout=30,
        )
        stored = yield self.storeOne(daemon, "DICOMD", data)
        index = os.path.join(data, INDEX)
        expected = {stored: "0640", index: "0640", index + "-wal": "0640", index + "-shm": "0640"}
        expected.update({os.path.dirname(stored): "0750", data: "0750"})
        self.assertEqual(modes(expected), expected, daemon.describe())

    @defer.inlineCallbacks
    def test_configuredModes(self):
        """
        file-mode = "0600" and directory-mode = "0700" apply to the stored file, its study directory, the storage
        area, the index and the index's directory; the state-directory and its study journal are 0700 and 0600
        whatever the modes.
        """
        home = makeDirectory(self)
        data = os.path.join(home, "archive")
        database = os.path.join(home, "db", "index.sqlite")
        state = os.path.join(home, "state")
        text = (
            'listen = ["tcp:%%(port)d:interface=127.0.0.1"]\n'
            'database = "%s"\n'
            'state-directory = "%s"\n'
            'file-mode = "0600"\n'
            'directory-mode = "0700"\n'
            '[[ae]]\ntitle = "ARCHIVE"\ndirectory = "%s"\n'
            '[ae.actions]\non-end-of-study = "true"\n' % (database, state, data)
        )
        daemon = yield startConfigured(self, configWriter(home, text), twistdOptions=["--umask", "022"])
        stored = yield self.storeOne(daemon, "ARCHIVE", data)
        journal = os.path.join(state, StudyJournal.fileName(os.path.realpath(data)))
        expected = {stored: "0600", journal: "0600", database: "0600", database + "-wal": "0600"}
        expected.update({os.path.dirname(stored): "0700", data: "0700", os.path.dirname(database): "0700", state: "0700"})
        self.assertEqual(modes(expected), expected, daemon.describe())


# -- port 104 ----------------------------------------------------------------------------------


class PrivilegedPortTests(DaemonTestCase):
    """
    Binding port 104 as root, then running as another user with
    C{twistd --uid/--gid}.
    """

    @defer.inlineCallbacks
    def test_port104DropsPrivileges(self):
        """
        Started by root with --uid/--gid 65534, twistd dicomd listens on
        port 104 of a loopback address, then runs as uid and gid 65534 (all
        of real, effective, saved and file-system ids); echoscu and
        storescu on port 104 succeed and the stored file belongs to 65534.
        The address is one of 127.0.0.0/8 chosen at random, so that another
        run of the suite on the machine does not hold the same port.
        """
        if os.geteuid() != 0:
            raise unittest.SkipTest("binding port 104 and dropping privileges needs root (CI runs the suite as root)")
        host = "127.%d.%d.%d" % (random.randrange(1, 255), random.randrange(0, 256), random.randrange(1, 255))
        yield waitUntil(lambda: portIsFree(104, host), timeout=20, message="port 104 of %s is in use by another process" % (host,))
        home = makeDirectory(self)
        data = os.path.join(home, "data")
        os.makedirs(data)
        os.chown(data, NOBODY, NOBODY)
        letThrough(data)
        daemon = spawn(
            self,
            TWISTD
            + ["--uid", str(NOBODY), "--gid", str(NOBODY), "-n", "--pidfile=", "dicomd"]
            + ["--listen", "tcp:104:interface=%s" % (host,), "-o", data],
            env=pythonEnvironment(),
            cwd=home,
            name="twistd dicomd",
        )
        yield waitForPort(104, host=host, process=daemon, timeout=30)
        echo = yield echoscu(104, "DICOMD", host=host)
        self.assertEqual(echo.exitCode, 0, echo.describe() + daemon.describe())
        ids = processIDs(daemon.transport.pid)
        self.assertEqual(ids, {"Uid": [NOBODY] * 4, "Gid": [NOBODY] * 4}, daemon.describe())
        uids = yield self.assertStores(104, "DICOMD", data, daemon=daemon, host=host)
        [stored] = dicomFiles(data)
        self.assertEqual((os.stat(stored).st_uid, os.stat(stored).st_gid), (NOBODY, NOBODY))
        indexed = yield waitForIndexed(data, uids)
        self.assertEqual(sorted(indexed), uids)
        yield daemon.stop()
        self.assertCleanStop(daemon)


def letThrough(path: str) -> None:
    """
    Let every user reach C{path}: add search permission for others to the
    directories above it that lack it (trial's temporary directories are
    made by C{mkdtemp}, mode 0700).
    """
    directory = os.path.dirname(os.path.abspath(path))
    while directory != os.path.dirname(directory):
        mode = os.stat(directory).st_mode
        if not mode & 0o001:
            os.chmod(directory, (mode & 0o7777) | 0o005)
        directory = os.path.dirname(directory)


def portIsFree(port: int, host: str = LOCALHOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def processIDs(pid: int) -> dict:
    """
    The C{Uid} and C{Gid} lines of C{/proc/PID/status}: real, effective,
    saved and file-system ids.
    """
    ids = {}
    with open("/proc/%d/status" % (pid,)) as f:
        for line in f:
            name, _, values = line.partition(":")
            if name in ("Uid", "Gid"):
                ids[name] = [int(value) for value in values.split()]
    return ids


# -- systemd -----------------------------------------------------------------------------------


def readUnit(path: str) -> dict:
    """
    A systemd unit file: section -> key -> list of values (a key may be
    given more than once), with continuation lines joined.
    """
    sections = {}
    current = None
    pending = ""
    with open(path) as f:
        for raw in f:
            line = pending + raw.rstrip("\n")
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            stripped = line.strip()
            if not stripped or stripped[0] in "#;":
                continue
            header = re.match(r"^\[(.+)\]$", stripped)
            if header:
                current = sections.setdefault(header.group(1), {})
                continue
            key, equals, value = stripped.partition("=")
            assert equals and current is not None, "not a unit file line: %r" % (raw,)
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


class SystemdUnitTests(unittest.TestCase):
    """
    C{etc/dicomd.service}.
    """

    def setUp(self):
        self.unit = readUnit(UNIT)
        self.service = {key: values[-1] for key, values in self.unit["Service"].items()}

    def execStart(self) -> list:
        """
        The ExecStart command line, split as systemd splits it.
        """
        return shlex.split(self.service["ExecStart"])

    def test_settings(self):
        """
        Type=simple, reload by SIGHUP to the main process, stop by SIGTERM
        with more time than the grace period, restart on failure, port 104
        without root, and a read-only system but for the data directory.
        """
        service = self.service
        self.assertEqual(service["Type"], "simple")
        self.assertEqual(service["ExecReload"], "/bin/kill -HUP $MAINPID")
        self.assertEqual(service["KillSignal"], "SIGTERM")
        self.assertEqual(service["Restart"], "on-failure")
        self.assertEqual(service["ProtectSystem"], "strict")
        self.assertIn("CAP_NET_BIND_SERVICE", service["AmbientCapabilities"].split())
        self.assertTrue(service.get("User"), "the daemon does not run as root")
        self.assertEqual(self.unit["Install"]["WantedBy"], ["multi-user.target"])

    def test_execStartParses(self):
        """
        ExecStart is twistd -n --pidfile= ... dicomd --config
        /etc/dicomd/dicomd.toml ...: with the config path pointed at
        etc/dicomd.toml, the whole line parses with twistd's options and
        the dicomd plugin's; every directory the daemon writes is in
        ReadWritePaths, and TimeoutStopSec exceeds the shutdown grace.
        """
        from twisted.scripts._twistd_unix import ServerOptions

        argv = self.execStart()
        self.assertTrue(os.path.isabs(argv[0]) and os.path.basename(argv[0]) == "twistd", argv)
        config = argv.index("--config")
        self.assertEqual(argv[config + 1], "/etc/dicomd/dicomd.toml")
        argv[config + 1] = EXAMPLE
        options = ServerOptions()
        options.parseOptions(argv[1:])
        self.assertEqual(options.subCommand, "dicomd")
        self.assertTrue(options["nodaemon"])
        self.assertEqual(options["pidfile"], "")
        plugin = options.subOptions
        daemon = plugin.overrides(plugin["base"])

        writable = self.unit["Service"]["ReadWritePaths"]
        writable = [path for line in writable for path in line.split()]
        written = [entity.storage.outputDirectory for entity in daemon.entities]
        if daemon.database:
            written.append(os.path.dirname(daemon.database))
        for path in written:
            self.assertTrue(
                any(path == allowed or path.startswith(allowed.rstrip("/") + "/") for allowed in writable),
                "%s is not in ReadWritePaths=%s" % (path, " ".join(writable)),
            )
        grace = daemon.limits.shutdownGrace
        self.assertEqual(grace, readConfig(EXAMPLE).limits.shutdownGrace)
        self.assertGreater(seconds(self.service["TimeoutStopSec"]), grace)

    @defer.inlineCallbacks
    def test_systemdAnalyzeVerify(self):
        """
        systemd-analyze verify finds nothing wrong (with ExecStart's twistd
        pointed at one that exists here).
        """
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise unittest.SkipTest("systemd-analyze is not installed")
        directory = makeDirectory(self)
        twistd = os.path.join(directory, "twistd")
        with open(twistd, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(twistd, 0o755)
        with open(UNIT) as f:
            text = f.read()
        executable = self.execStart()[0]
        copy = os.path.join(directory, "dicomd.service")
        with open(copy, "w") as f:
            f.write(text.replace("ExecStart=" + executable, "ExecStart=" + twistd))
        result = yield runCommand([analyze, "verify", copy], env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"), timeout=60)
        complaints = [line for line in result.output.splitlines() if "dicomd.service" in line]
        self.assertEqual((result.exitCode, complaints), (0, []), result.describe())


def seconds(value: str) -> float:
    """
    A systemd time span (C{90}, C{90s}, C{2min}, C{1min 30s}) in seconds.
    """
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total

