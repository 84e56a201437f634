"""
Several C{twistd dicomd} nodes sharing one index in PostgreSQL (issue 16,
docs/scale-out.md), with DCMTK's tools as their peers: what one node
stores, every node finds and retrieves.  The nodes share one storage
directory, at the same path, as nodes on several machines share one
mounted file system.
"""

import os
import re
import shutil

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid
from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from tests import postgres
from tests.support import (
    LOCALHOST,
    dcmtk,
    dcmtkEnvironment,
    freePort,
    makeDirectory,
    runCommand,
    startDaemon,
    startDCMTKServer,
    waitUntil,
)
from tests.test_daemon import SHUT_DOWN, STORED, dicomFiles, instanceUIDs, storescu, writeImages
from tests.test_forwarding import arrived, deliveredTo, makeFiles, startStorescp, storedIn, storescpOn, writeConfig


def arrivedUIDs(directory) -> set:
    """
    The SOP Instance UIDs of the files a DCMTK storescp destination holds,
    but for those it is still writing (it writes them in place): the next
    look reads them.
    """
    uids = set()
    for path in arrived(directory):
        try:
            uids.add(str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID))
        except (InvalidDicomError, EOFError, OSError, AttributeError):
            continue
    return uids


def indexedUIDs(url):
    """
    The SOP Instance UIDs the shared index has rows for.
    """
    return sorted(row[0] for row in query(url, "SELECT SOPInstanceUID FROM instance"))


def query(url, statement):
    """
    The rows of a statement on the shared index.
    """
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute(statement).fetchall()


def forwardingConfig(testCase, port):
    """
    A configuration forwarding everything the AE DICOMD receives to the
    peer PACS on C{port}, with a short lease on claimed entries.
    """
    return writeConfig(
        testCase,
        """
        [forwarding]
        lease = 3
        retry-first = 1
        retry-max = 2

        [[ae]]
        title = "DICOMD"
        [[ae.forward]]
        to = "PACS"

        [[peer]]
        title = "PACS"
        host = "127.0.0.1"
        port = %d
        """
        % (port,),
    )


def studyForwardingConfig(testCase, port):
    """
    A configuration forwarding each study the AE DICOMD receives to the
    peer PACS on C{port} once it ends: when its sender moves on to
    another study (there is no end-of-study timeout).

    Its lease is long: nothing here waits for a node to be found dead, and
    with a lease of a few seconds a live node whose reactor a busy machine
    held back that long would be taken for dead by the other (its held
    entries released, its claims taken), which the test would count as a
    fault of the code.
    """
    return writeConfig(
        testCase,
        """
        [forwarding]
        lease = 120

        [[ae]]
        title = "DICOMD"
        [[ae.forward]]
        to = "PACS"
        when = "end-of-study"

        [[peer]]
        title = "PACS"
        host = "127.0.0.1"
        port = %d
        """
        % (port,),
    )


def heldCount(url):
    return query(url, "SELECT COUNT(*) FROM forward WHERE state = 'held'")[0][0]


def storeResponses(output):
    """
    What storescu -v says of each file it sent, from its output.

    @return: C{(path, status)} for each file, the status as storescu names
        it (C{"Success"}, C{"Refused: OutOfResources"}...), or C{None} for
        a file it had no response to.
    """
    sent = re.findall(r"^I: Sending file: (.*)$|^I: Received Store Response \(([^)]*)\)", output, re.MULTILINE)
    answered = []
    for path, status in sent:
        if path:
            answered.append([path, None])
        elif answered and answered[-1][1] is None:
            answered[-1][1] = status
    return [tuple(each) for each in answered]


def acknowledged(output):
    """
    The files storescu -v says were stored, from its output.
    """
    return [path for path, status in storeResponses(output) if status == "Success"]


def evictedStudies(node):
    """
    The studies a node's log says its quota deleted, in order.
    """
    return re.findall(r"Quota of \S+: deleted study (\S+), the least recently updated", node.output)


def storedFiles(url):
    """
    The files the shared index names, by their absolute paths.
    """
    return sorted(os.path.join(area, path) for area, path in query(url, "SELECT area, path FROM instance"))


class Silent(protocol.Protocol):
    """
    A peer that accepts the connection and never answers: an association
    to it waits for its A-ASSOCIATE-AC.
    """


@defer.inlineCallbacks
def findStudies(testCase, port):
    """
    DCMTK's findscu at the STUDY level of the Study Root model, for every
    study.

    @return: a L{Deferred} firing with the final status as findscu names
        it (C{"Success"}, C{"Failed: UnableToProcess"}...), the Study
        Instance UIDs found, and findscu's output.
    """
    responses = makeDirectory(testCase)
    found = yield runCommand(
        [dcmtk("findscu"), "-S", "-v", "-X", "-od", responses, "-aec", "DICOMD"]
        + ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", LOCALHOST, str(port)],
        env=dcmtkEnvironment(),
    )
    match = re.search(r"Received Final Find Response \(([^)]*)\)", found.output)
    uids = sorted(str(pydicom.dcmread(os.path.join(responses, name)).StudyInstanceUID) for name in os.listdir(responses))
    return (match.group(1) if match else None), uids, found.describe()


@defer.inlineCallbacks
def findInstances(testCase, port, studies):
    """
    DCMTK's findscu at the IMAGE level of the Study Root model, once for
    each of C{studies}.

    @return: a L{Deferred} firing with the SOP Instance UIDs found, sorted.
    """
    found = []
    for study in studies:
        responses = makeDirectory(testCase)
        yield runCommand(
            [dcmtk("findscu"), "-S", "-X", "-od", responses, "-aec", "DICOMD", "-k", "QueryRetrieveLevel=IMAGE"]
            + ["-k", "StudyInstanceUID=" + study, "-k", "SeriesInstanceUID", "-k", "SOPInstanceUID", LOCALHOST, str(port)],
            env=dcmtkEnvironment(),
        )
        found += instanceUIDs(os.path.join(responses, name) for name in os.listdir(responses))
    return sorted(found)


def studyOf(path):
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


class SharedIndexTests(unittest.TestCase):
    """
    Two daemons on one PostgreSQL database and one storage directory.
    """

    timeout = 120

    @defer.inlineCallbacks
    def startNodes(self, count, *options):
        self.url = postgres.database(self)
        self.storage = makeDirectory(self)
        nodes = []
        for number in range(1, count + 1):
            node = yield startDaemon(self, "--database", self.url, "--node", "node%d" % (number,), "-o", self.storage, *options)
            nodes.append(node)
        return nodes

    @defer.inlineCallbacks
    def test_threeNodes(self):
        """
        Thirty storescu spread over three nodes: each node finds every
        instance by C-FIND, and their forwarding sends each instance once,
        by one node.
        """
        destination = yield startStorescp(self)
        nodes = yield self.startNodes(3, "--config", forwardingConfig(self, destination.port))
        images = [image for _ in range(3) for image in writeImages(self, 10)]
        sent = yield defer.gatherResults(
            [storescu(nodes[number % 3].port, "DICOMD", [path]) for number, (path, _) in enumerate(images)]
        )
        for result in sent:
            self.assertIn(STORED, result.output, result.describe())
        uids = sorted(uid for _, uid in images)
        yield waitUntil(lambda: sum(map(deliveredTo, nodes)) >= 30, timeout=60, interval=0.1)
        self.assertEqual(sum(map(deliveredTo, nodes)), 30, [node.describe() for node in nodes])
        self.assertEqual(instanceUIDs(arrived(destination.directory)), uids)
        studies = sorted({studyOf(path) for path, _ in images})
        for node in nodes:
            found = yield findInstances(self, node.port, studies)
            self.assertEqual(found, uids, node.describe())

    @defer.inlineCallbacks
    def test_killedNodesEntriesTakenOver(self):
        """
        A node SIGKILLed while a sender streams to it and while it holds
        claimed forwarding entries loses nothing it acknowledged: another
        node indexes what it had not, and delivers every acknowledged
        instance, those the dead node claimed once the lease has run out.
        """
        port = freePort()
        silent = reactor.listenTCP(port, protocol.Factory.forProtocol(Silent), interface=LOCALHOST)
        self.addCleanup(lambda: silent.stopListening() if silent.connected else None)
        config = forwardingConfig(self, port)
        (first,) = yield self.startNodes(1, "--config", config)
        files = makeFiles(self, 200)
        sending = storescu(first.port, "DICOMD", files)
        yield waitUntil(lambda: query(self.url, "SELECT COUNT(*) FROM forward WHERE claimedBy = 'node1'")[0][0] > 0, timeout=30, interval=0.05)
        first.signalProcess("KILL")
        yield first.whenEnded()
        result = yield sending
        stored = acknowledged(result.output)
        self.assertTrue(stored, result.describe())
        yield silent.stopListening()
        destination = yield storescpOn(self, port, makeDirectory(self))
        second = yield startDaemon(self, "--database", self.url, "--node", "node2", "-o", self.storage, "--config", config)
        uids = instanceUIDs(stored)
        # The index lags the responses: what node 1 acknowledged and did
        # not index yet, a node starting after an unclean run (or for the
        # first time, as node 2 here) finds in the storage area.
        yield waitUntil(lambda: set(uids) <= set(indexedUIDs(self.url)), timeout=60, interval=0.1)

        yield waitUntil(lambda: deliveredTo(second) >= len(uids), timeout=60, interval=0.1)
        self.assertTrue(set(uids) <= set(instanceUIDs(arrived(destination.directory))))

    @defer.inlineCallbacks
    def test_deadNodesLastObjectsTakenOver(self):
        """
        A node SIGKILLed while a sender streams to it, and never started
        again: once its heartbeat is older than the lease, the other node
        takes its run over, and finds by C-FIND and forwards every instance
        it acknowledged, those it had not indexed too.
        """
        destination = yield startStorescp(self)
        first, second = yield self.startNodes(2, "--config", forwardingConfig(self, destination.port))
        files = makeFiles(self, 200)
        sending = storescu(first.port, "DICOMD", files)
        yield waitUntil(lambda: indexedUIDs(self.url), timeout=30, interval=0.05)
        # The index lags the C-STORE-RSP by a few milliseconds, which a
        # kill may or may not fall into: a file moved into place and not
        # indexed yet, as the kill would leave it, makes sure it does.
        (unindexed,) = makeFiles(self, 1)
        shutil.copy(unindexed, os.path.join(self.storage, "unindexed.dcm"))
        first.signalProcess("KILL")
        yield first.whenEnded()
        result = yield sending
        stored = acknowledged(result.output)
        self.assertTrue(stored, result.describe())
        stored.append(unindexed)

        match = yield second.waitForOutput(r"Took over the run of node node1, .*: (\d+) files it had stored and not indexed", timeout=60)
        self.assertGreaterEqual(int(match.group(1)), 1, second.describe())
        found = yield findInstances(self, second.port, sorted({studyOf(path) for path in stored}))
        # And perhaps one more: stored, and not acknowledged before the kill.
        self.assertLessEqual(set(instanceUIDs(stored)), set(found), second.describe())
        yield waitUntil(lambda: set(instanceUIDs(stored)) <= arrivedUIDs(destination.directory), timeout=60, interval=0.1)

    @defer.inlineCallbacks
    def test_heldEntriesLeftToTheNodeFollowingTheStudy(self):
        """
        A node starting again while a study is open on another node leaves
        the entries held for that study to its end there: the study is
        forwarded whole once it ends.  A node killed with a study open on
        it alone, and started again, forwards that study itself.
        """
        destination = yield startStorescp(self)
        config = studyForwardingConfig(self, destination.port)
        first, second = yield self.startNodes(2, "--config", config)
        opened = makeFiles(self, 3)
        stored = yield storescu(first.port, "DICOMD", opened)
        self.assertEqual(stored.output.count(STORED), 3, stored.describe())
        yield waitUntil(lambda: heldCount(self.url) == 3, timeout=30, interval=0.05, message=first.describe())

        second.signalProcess("TERM")
        yield second.whenEnded()
        second = yield startDaemon(self, "--database", self.url, "--node", "node2", "-o", self.storage, "--config", config)
        # Entries held at start are released before the node listens.
        self.assertEqual(heldCount(self.url), 3, second.describe())

        (following,) = makeFiles(self, 1)
        stored = yield storescu(first.port, "DICOMD", [following])
        self.assertIn(STORED, stored.output, stored.describe())
        yield waitUntil(lambda: len(arrived(destination.directory)) == 3, timeout=60, interval=0.1, message=first.describe())
        yield waitUntil(lambda: deliveredTo(first) + deliveredTo(second) >= 3, timeout=30, interval=0.1)
        self.assertEqual(deliveredTo(first) + deliveredTo(second), 3, first.describe() + second.describe())
        self.assertEqual(instanceUIDs(arrived(destination.directory)), instanceUIDs(opened))

        yield waitUntil(lambda: heldCount(self.url) == 1, timeout=30, interval=0.05, message=first.describe())
        first.signalProcess("KILL")
        yield first.whenEnded()
        again = yield startDaemon(self, "--database", self.url, "--node", "node1", "-o", self.storage, "--config", config)
        yield waitUntil(lambda: len(arrivedUIDs(destination.directory)) == 4, timeout=60, interval=0.1, message=again.describe())
        self.assertEqual(instanceUIDs(arrived(destination.directory)), instanceUIDs(opened + [following]))

    @defer.inlineCallbacks
    def test_storedThroughOneFoundAndMovedThroughAnother(self):
        """
        A study stored through node 1 is found by C-FIND on node 2 and moved
        by node 2 to DCMTK's storescp, from the file node 1 wrote.
        """
        destination = makeDirectory(self)
        storescp = yield startDCMTKServer(self, "storescp", "-aet", "STORESCP", "-od", destination)
        first, second = yield self.startNodes(2, "--peer", "STORESCP:%s:%d" % (LOCALHOST, storescp.port))
        images = writeImages(self, 3)
        uids = sorted(uid for _, uid in images)
        study = str(pydicom.dcmread(images[0][0], stop_before_pixels=True).StudyInstanceUID)
        stored = yield storescu(first.port, "DICOMD", [path for path, _ in images])
        self.assertEqual(stored.output.count(STORED), 3, stored.describe())
        yield waitUntil(lambda: indexedUIDs(self.url) == uids, timeout=30, interval=0.1, message="node 1 indexes what it stored")

        responses = makeDirectory(self)
        found = yield runCommand(
            [dcmtk("findscu"), "-S", "-X", "-od", responses, "-aec", "DICOMD", "-k", "QueryRetrieveLevel=IMAGE"]
            + ["-k", "StudyInstanceUID=" + study, "-k", "SeriesInstanceUID", "-k", "SOPInstanceUID", LOCALHOST, str(second.port)],
            env=dcmtkEnvironment(),
        )
        self.assertEqual(found.exitCode, 0, found.describe() + second.describe())
        self.assertEqual(instanceUIDs(os.path.join(responses, name) for name in os.listdir(responses)), uids)

        moved = yield runCommand(
            [dcmtk("movescu"), "-v", "-S", "-aet", "MOVESCU", "-aec", "DICOMD", "-aem", "STORESCP"]
            + ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study, LOCALHOST, str(second.port)],
            env=dcmtkEnvironment(),
        )
        self.assertIn("Received Final Move Response (Success)", moved.output, moved.describe() + second.describe())
        self.assertEqual(instanceUIDs(dicomFiles(destination)), uids)

    @defer.inlineCallbacks
    def test_studySpreadOverTwoNodesEndsOnce(self):
        """
        A study sent half through node 1 and half through node 2 ends once:
        on one node, and the other finds it ended there.
        """
        first, second = yield self.startNodes(2, "--eostudy-timeout", "2")
        images = writeImages(self, 4)
        study = str(pydicom.dcmread(images[0][0], stop_before_pixels=True).StudyInstanceUID)
        for node, half in ((first, images[:2]), (second, images[2:])):
            stored = yield storescu(node.port, "DICOMD", [path for path, _ in half])
            self.assertEqual(stored.output.count(STORED), 2, stored.describe())
        ended, elsewhere = "End of study %s " % (study,), "Study %s ended on another node" % (study,)

        def settled():
            outputs = (first.output, second.output)
            return sorted((output.count(ended), output.count(elsewhere)) for output in outputs) == [(0, 1), (1, 0)]

        yield waitUntil(settled, timeout=30, interval=0.1, message=first.describe() + second.describe())

    @defer.inlineCallbacks
    def test_databaseLostAndBack(self):
        """
        A node whose database stops refuses C-STORE with 0xA700 and fails
        C-FIND with 0xC001 "unable to process"; once the database is back,
        without a restart, it records what it had acknowledged, and stores
        and finds again.
        """
        (node,) = yield self.startNodes(1)
        server = postgres.server()
        (first, _), (second, _), (third, _) = [writeImages(self)[0] for _ in range(3)]
        studies = sorted(str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID) for path in (first, second, third))
        stored = yield storescu(node.port, "DICOMD", [first])
        self.assertIn(STORED, stored.output, stored.describe())
        yield waitUntil(lambda: len(indexedUIDs(self.url)) == 1, timeout=30, interval=0.1, message=node.describe())

        # A fast stop: the test server runs without durability, which an
        # immediate stop (a crash) would show by losing the last commits.
        server.stop("fast")
        self.addCleanup(lambda: server.start() if not server.running() else None)
        # Acknowledged as it reaches the disk: the index writer then finds
        # the database gone, and keeps it until the database is back.
        stored = yield storescu(node.port, "DICOMD", [second])
        self.assertIn(STORED, stored.output, stored.describe())
        yield node.waitForOutput(r"refusing new objects with 0xA700", timeout=30)
        refused = yield storescu(node.port, "DICOMD", [third])
        self.assertIn("Received Store Response (Refused: OutOfResources)", refused.output, refused.describe())
        status, found, output = yield findStudies(self, node.port)
        self.assertEqual((status, found), ("Failed: UnableToProcess", []), output)

        server.start()
        yield node.waitForOutput(r"The index records what DICOMD stores again", timeout=90)
        self.assertEqual(len(indexedUIDs(self.url)), 2)
        stored = yield storescu(node.port, "DICOMD", [third])
        self.assertIn(STORED, stored.output, stored.describe())
        yield waitUntil(lambda: len(indexedUIDs(self.url)) == 3, timeout=30, interval=0.1, message=node.describe())
        status, found, output = yield findStudies(self, node.port)
        self.assertEqual((status, found), ("Success", studies), output)

    @defer.inlineCallbacks
    def test_databaseRestartedUnderLoad(self):
        """
        The database stopped and started again while thirty storescu send
        through three nodes: nothing acknowledged is lost, every object
        not acknowledged was refused with 0xA700 or lost with its
        association, and every node, without a restart, records again,
        finds everything acknowledged and stores again.
        """
        nodes = yield self.startNodes(3)
        server = postgres.server()
        studies = [generate_uid() for _ in range(3)]
        # Each study arrives through every node.
        senders = [(nodes[number % 3], makeFiles(self, 30, study=studies[number // 3 % 3])) for number in range(30)]
        sending = [storescu(node.port, "DICOMD", paths) for node, paths in senders]
        yield waitUntil(lambda: indexedUIDs(self.url), timeout=30, interval=0.05)
        self.assertFalse(all(each.called for each in sending), "the senders ended before the database stopped")

        server.stop("fast")
        self.addCleanup(lambda: server.start() if not server.running() else None)
        # Whatever the thirty send still, each node is sent one object now:
        # its writer has work while the database is away.
        sending += [storescu(node.port, "DICOMD", makeFiles(self, 1, study=studies[0])) for node in nodes]
        yield defer.gatherResults([node.waitForOutput(r"refusing new objects with 0xA700", timeout=30) for node in nodes])
        server.start()
        yield defer.gatherResults([node.waitForOutput(r"The index records what DICOMD stores again", timeout=60) for node in nodes])

        results = yield defer.gatherResults(sending)
        stored, unanswered = [], []
        for result in results:
            for path, status in storeResponses(result.output):
                if status == "Success":
                    stored.append(path)
                elif status is None:
                    # The association was lost: storescu says so.
                    self.assertNotEqual(result.exitCode, 0, result.describe())
                    unanswered.append(path)
                else:
                    self.assertEqual(status, "Refused: OutOfResources", result.describe())
        uids = instanceUIDs(stored)
        yield waitUntil(lambda: set(uids) <= set(indexedUIDs(self.url)), timeout=30, interval=0.1)
        # Beyond what was acknowledged, only what had no response may be
        # indexed; each row has its file, and each file its row.
        indexed = indexedUIDs(self.url)
        self.assertLessEqual(set(indexed) - set(uids), set(instanceUIDs(unanswered)))
        self.assertEqual(instanceUIDs(storedIn(self.storage)), indexed)
        for node in nodes:
            found = yield findInstances(self, node.port, studies)
            self.assertEqual(found, indexed, node.describe())
            again = yield storescu(node.port, "DICOMD", makeFiles(self, 1))
            self.assertIn(STORED, again.output, again.describe())
            self.assertNotIn("Traceback", node.output, node.describe())

    @defer.inlineCallbacks
    def test_quotaAcrossNodes(self):
        """
        Three nodes keep one quota of three studies in their shared area
        while twelve studies, then three more, arrive at once through all
        of them: the archive ends with the three most recently updated,
        rows and files alike, and each other study is deleted once, by one
        node.
        """
        config = writeConfig(
            self,
            """
            [[ae]]
            title = "DICOMD"
            quota = { max-studies = 3, max-bytes-per-study = "1gb" }
            """,
        )
        nodes = yield self.startNodes(3, "--config", config)
        # The older studies are of one instance each: none is deleted
        # while more of it arrives, and made again by them.
        older, recent = [makeFiles(self, 1) for _ in range(12)], [makeFiles(self, 4) for _ in range(3)]
        for wave in (older, recent):
            sent = yield defer.gatherResults([storescu(nodes[number % 3].port, "DICOMD", paths) for number, paths in enumerate(wave)])
            for result, paths in zip(sent, wave):
                self.assertEqual(result.output.count(STORED), len(paths), result.describe())
        studyOf = lambda paths: str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
        olderStudies, recentStudies = [sorted(map(studyOf, wave)) for wave in (older, recent)]
        recentUIDs = instanceUIDs(path for paths in recent for path in paths)

        def evicted():
            return [study for node in nodes for study in evictedStudies(node)]

        # Every recent instance indexed (or its study deleted, wrongly),
        # then the nodes stopped: their writers have written all they had.
        yield waitUntil(
            lambda: set(recentUIDs) <= set(indexedUIDs(self.url)) or set(recentStudies) & set(evicted()),
            timeout=30, interval=0.1,
        )
        yield defer.gatherResults([node.stop(timeout=30) for node in nodes])
        for node in nodes:
            self.assertIn(SHUT_DOWN, node.output, node.describe())
            self.assertNotIn("Traceback", node.output, node.describe())
        self.assertEqual(sorted(row[0] for row in query(self.url, "SELECT StudyInstanceUID FROM study")), recentStudies)
        self.assertEqual(indexedUIDs(self.url), recentUIDs)
        self.assertEqual(storedFiles(self.url), [os.path.realpath(path) for path in storedIn(self.storage)])
        self.assertEqual(sorted(evicted()), olderStudies, [node.output for node in nodes])
