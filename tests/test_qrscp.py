"""
Tests for C{dicomd qrscp}: dcmqrscp's command line and C{dcmqrscp.cfg}
(several AE titles on one port, access, quotas, peers, move restrictions,
shutdown...), with the real front door (C{python -m dicomd qrscp -c CONFIG
PORT}) and DCMTK's C{echoscu}, C{storescu}, C{findscu}, C{movescu} and
C{getscu} or a pynetdicom script as peers; and unit tests of the service
objects it assembles (L{dicomd.qrentity}, L{dicomd.peers},
L{dicomd.archive.charsets}).

The behaviours checked against DCMTK's own dcmqrscp 3.6.7 are noted in
each test; where dicomd differs on purpose, the test says so.
"""

import ipaddress
import os
import re
import shutil
import sys
import tempfile

from pydicom import dcmread
from pydicom.dataset import Dataset
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim
from twisted.trial import unittest

from dicomd.archive.charsets import ResponseCharacterSet, characterSetTerms
from dicomd.archive.dcmqrcfg import parseConfig
from dicomd.archive.matching import PATIENT_ROOT, STUDY_ROOT
from dicomd.archive.service import INDEX_FILE
from dicomd.peers import (
    MOVE_DIMSE_TIMEOUT,
    Peer,
    PeerHosts,
    configuredPeers,
    destinationTable,
    hostRule,
    moveRestriction,
    peerRule,
    proposing,
)
from dicomd.qrentity import PRIVATE_SHUTDOWN_SOP_CLASS, ArchiveEntity, QueryRetrieveOptions, queryRetrievePolicy
from dicomd.cli import qrscp
from dicomd.cli.options import CannotStart, UsageError
from dicomd.daemon import DicomdService
from dicomd.dimse.commands import CStoreRQ
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
from dicomd.errors import ACSETimeout, DIMSETimeout
from dicomd.net.acceptor import AcceptorFactory, ApplicationEntity
from dicomd.services.retrieve import Destination
from dicomd.ul.negotiation import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    JPEG_BASELINE,
    UNCOMPRESSED,
    AcceptorPolicy,
    NegotiatedContext,
)
from dicomd.ul.pdu import AAbort, AAssociateRQ, PresentationContextRQ, SCPSCURoleSelection, UserInformation
from tests.certificates import writeTestPKI
from tests.dicomfiles import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, makeDataset, writeFile
from tests.test_net_protocol import PEER, SilentPeer, SilentService, splitPDUs
from tests.test_queryretrieve import parseRetrieve
from tests.support import (
    frontDoorListening,
    LOCALHOST,
    REPO_ROOT,
    dcmtk,
    dcmtkEnvironment,
    dicomdArgv,
    freePort,
    makeDirectory,
    pythonEnvironment,
    runCommand,
    runPythonScript,
    spawn,
    startDCMTKServer,
    startPeer,
)

CALLING = "FINDSCU"
DEBIAN_EXAMPLE = "/etc/dcmtk/dcmqrscp.cfg"
EXAMPLE = os.path.join(str(REPO_ROOT), "etc", "dcmqrscp.cfg")
FIND_STUDY_ROOT, MOVE_STUDY_ROOT, GET_STUDY_ROOT = STUDY_ROOT.sopClassUIDs

# -- configurations and peers -------------------------------------------------------


def writeConfig(testCase, aeTable, hostTable=(), vendorTable=(), settings="", sharing=()):
    """
    Write a C{dcmqrscp.cfg} into a new temporary directory, with a storage
    area directory there for each AE.

    @param aeTable: C{(AETitle, access, quota, peers)} lines.
    @param hostTable: lines of the HostTable.
    @param vendorTable: lines of the VendorTable.
    @param sharing: C{(AETitle, other AETitle)} pairs: the first AE's
        storage area is the (earlier) other's directory.
    @return: C{(path of the file, AE title -> storage area)}.
    """
    directory = makeDirectory(testCase)
    areas = {}
    sharing = dict(sharing)
    lines = ["MaxPDUSize = 16384", "MaxAssociations = 16", settings, "HostTable BEGIN", *hostTable, "HostTable END"]
    lines += ["VendorTable BEGIN", *vendorTable, "VendorTable END", "AETable BEGIN"]
    for title, access, quota, peers in aeTable:
        if title in sharing:
            areas[title] = areas[sharing[title]]
        else:
            areas[title] = os.path.join(directory, title)
            os.mkdir(areas[title])
        lines.append("%s %s %s %s %s" % (title, areas[title], access, quota, peers))
    lines.append("AETable END")
    path = os.path.join(directory, "dcmqrscp.cfg")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path, areas


def startQrscp(testCase, config, *options):
    """
    Start C{python -m dicomd qrscp -v OPTIONS -c CONFIG PORT}.

    @return: a L{Deferred} firing with its L{ChildProcess} once it listens.
    """
    return startPeer(
        testCase,
        lambda port: dicomdArgv("qrscp", "-v", *options, "-c", config, str(port)),
        env=pythonEnvironment(),
        name="dicomd qrscp",
        ready=frontDoorListening,
    )


def studyFiles(testCase, count, patientID="PID1", **attributes):
    """
    Write one CT image of each of C{count} new studies.

    @return: the files' paths, and the studies' UIDs, in the same order.
    """
    directory = makeDirectory(testCase)
    paths, studies = [], []
    for number in range(count):
        dataset = makeDataset(rows=8, columns=8, patientID=patientID, **attributes)
        paths.append(writeFile(os.path.join(directory, "study%d.dcm" % (number,)), dataset))
        studies.append(str(dataset.StudyInstanceUID))
    return paths, studies


def run(tool, *arguments, cwd=None):
    """
    Run one of DCMTK's tools to its end.
    """
    return runCommand([dcmtk(tool)] + list(arguments), env=dcmtkEnvironment(), cwd=cwd)


def echo(port, called, calling=CALLING):
    return run("echoscu", "-aet", calling, "-aec", called, "127.0.0.1", str(port))


def store(port, called, *paths, calling=CALLING):
    return run("storescu", "-aet", calling, "-aec", called, "127.0.0.1", str(port), *paths)


@defer.inlineCallbacks
def findStudies(testCase, port, called, model="-S", level="STUDY"):
    """
    C{findscu} for every study (or patient) of an AE, the responses
    extracted to files.

    @return: C{(ProcessResult, list of response data sets)}.
    """
    directory = makeDirectory(testCase)
    result = yield run(
        "findscu", "-v", model, "-X", "-od", directory, "-aet", CALLING, "-aec", called,
        "-k", "QueryRetrieveLevel=%s" % (level,), "-k", "StudyInstanceUID", "-k", "PatientID", "-k", "PatientName",
        "127.0.0.1", str(port),
    )
    responses = [dcmread(os.path.join(directory, name)) for name in sorted(os.listdir(directory))]
    return result, responses


def storedFiles(directory):
    """
    The files of a storage area, relative to it, without dicomd's own.
    """
    found = []
    for parent, directories, files in os.walk(directory):
        directories[:] = [d for d in directories if not d.startswith(".")]
        found.extend(os.path.relpath(os.path.join(parent, name), directory) for name in files if not name.startswith("."))
    return sorted(found)


REJECTED = "Called AE Title Not Recognized"
NO_CONTEXTS = "No Acceptable Presentation Contexts"

#: A pynetdicom requestor: proposes the abstract syntaxes given after the
#: port and called AE title, and prints what became of the association and
#: of each context.
PROPOSING_SCRIPT = """
import sys
from pynetdicom import AE
ae = AE(ae_title="FINDSCU")
for uid in sys.argv[3:]:
    ae.add_requested_context(uid)
association = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title=sys.argv[2])
if association.is_rejected:
    primitive = association.acceptor.primitive
    print("rejected", primitive.result, primitive.result_source, primitive.diagnostic)
elif association.is_established:
    for context in association.accepted_contexts:
        print("accepted", context.abstract_syntax)
    for context in association.rejected_contexts:
        print("refused", context.abstract_syntax, context.result)
    association.release()
else:
    print("aborted")
"""

#: A pynetdicom requestor that holds an association with a CT Image
#: Storage context open until it is killed.
HOLDING_SCRIPT = """
import sys, time
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
ae = AE(ae_title="FINDSCU")
ae.add_requested_context(CTImageStorage)
association = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title=sys.argv[2])
print("established" if association.is_established else "not established", flush=True)
while True:
    time.sleep(60)
"""


def propose(testCase, port, called, *abstractSyntaxes):
    return runPythonScript(testCase, PROPOSING_SCRIPT, str(port), called, *abstractSyntaxes)


# -- interoperability ----------------------------------------------------------------------


class AccessTests(unittest.TestCase):
    """
    Who may associate with which AE title, as the AETable's peers say;
    each rejection is what dcmqrscp 3.6.7 sends: permanent, service user,
    called AE title not recognized.
    """

    @defer.inlineCallbacks
    def test_peers(self):
        """
        An unknown called AE title, a calling AE title not among the AE's
        peers and a known calling AE title on another host are rejected;
        the peer itself, and anyone calling an AE open to C{ANY}, are
        accepted.
        """
        config, _ = writeConfig(
            self,
            [
                ("OPEN", "RW", "(10, 10mb)", "ANY"),
                ("LOCAL", "RW", "(10, 10mb)", "findscu"),
                ("REMOTE", "RW", "(10, 10mb)", "remote"),
            ],
            hostTable=["findscu = (FINDSCU, localhost, 4000)", "remote = (FINDSCU, elsewhere.invalid, 4000)"],
        )
        server = yield startQrscp(self, config)
        for called, calling, accepted in [
            ("OPEN", "ANYONE", True),
            ("NOBODY", CALLING, False),
            ("LOCAL", CALLING, True),
            ("LOCAL", "INTRUDER", False),
            ("REMOTE", CALLING, False),
        ]:
            result = yield echo(server.port, called, calling)
            self.assertEqual(result.exitCode == 0, accepted, "%s -> %s: %s" % (calling, called, result.describe()))
            if not accepted:
                self.assertIn(REJECTED, result.output)
                self.assertIn("Rejected Permanent, Source: Service User", result.output)
        self.assertIn("Peer 127.0.0.1:INTRUDER is not permitted to access LOCAL", server.output)

    @defer.inlineCallbacks
    def test_readAndWriteAccess(self):
        """
        A read-only AE refuses storage (as dcmqrscp, with user rejection)
        but serves C-FIND and C-GET; a write-only AE takes storage but
        refuses C-FIND (dcmqrscp 3.6.7 does not: dicomd follows the
        access column).
        """
        config, areas = writeConfig(
            self,
            [("READONLY", "R", "(10, 10mb)", "ANY"), ("WRITEONLY", "W", "(10, 10mb)", "ANY")],
        )
        (path,), (study,) = studyFiles(self, 1)
        shutil.copy(path, areas["READONLY"])
        reindexed = yield runCommand(
            dicomdArgv("reindex", "-c", config, areas["READONLY"]), env=pythonEnvironment()
        )
        self.assertEqual(reindexed.exitCode, 0, reindexed.describe())
        server = yield startQrscp(self, config)
        refused = yield store(server.port, "READONLY", path)
        self.assertNotEqual(refused.exitCode, 0)
        self.assertIn(NO_CONTEXTS, refused.output)
        found, responses = yield findStudies(self, server.port, "READONLY")
        self.assertEqual([r.StudyInstanceUID for r in responses], [study], found.describe())
        received = makeDirectory(self)
        got = yield run(
            "getscu", "-S", "-aet", CALLING, "-aec", "READONLY", "-od", received,
            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study, "127.0.0.1", str(server.port),
        )
        self.assertEqual(len(os.listdir(received)), 1, got.describe())
        stored = yield store(server.port, "WRITEONLY", path)
        self.assertEqual(stored.exitCode, 0, stored.describe())
        self.assertEqual(len(storedFiles(areas["WRITEONLY"])), 1)
        found, responses = yield findStudies(self, server.port, "WRITEONLY")
        self.assertIn(NO_CONTEXTS, found.output)
        self.assertEqual(responses, [])

    @defer.inlineCallbacks
    def test_twoAreasOnOnePort(self):
        """
        Two AE titles on one port keep separate storage areas: what one
        stores, only it finds, and its files are in its area only.
        """
        config, areas = writeConfig(self, [("FIRST", "RW", "(10, 10mb)", "ANY"), ("SECOND", "RW", "(10, 10mb)", "ANY")])
        paths, studies = studyFiles(self, 2)
        server = yield startQrscp(self, config)
        for called, path in zip(["FIRST", "SECOND"], paths):
            result = yield store(server.port, called, path)
            self.assertEqual(result.exitCode, 0, result.describe())
        for called, study in zip(["FIRST", "SECOND"], studies):
            found, responses = yield findStudies(self, server.port, called)
            self.assertEqual([r.StudyInstanceUID for r in responses], [study], found.describe())
            self.assertEqual([r.RetrieveAETitle for r in responses], [called])
            self.assertEqual(len(storedFiles(areas[called])), 1)
        self.assertTrue(os.path.exists(os.path.join(areas["FIRST"], INDEX_FILE)))
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(config), INDEX_FILE)))


class SharedAreaTests(unittest.TestCase):
    """
    AEs whose storage area is one directory share its contents and its
    quota, as dcmqrscp's share the directory's C{index.dat}.
    """

    @defer.inlineCallbacks
    def test_readOnlyAEServesWhatAnotherStored(self):
        """
        What storescu stores into ARCHIVE, a read-only AE over the same
        directory finds (findscu), moves to a HostTable destination
        (movescu to DCMTK's storescp) and gets (getscu).
        """
        destination = makeDirectory(self)
        storescp = yield startDCMTKServer(self, "storescp", "-aet", "STORESCP", "-od", destination)
        config, areas = writeConfig(
            self,
            [("ARCHIVE", "RW", "(10, 10mb)", "ANY"), ("READONLY", "R", "(10, 10mb)", "ANY")],
            hostTable=["destination = (STORESCP, localhost, %d)" % (storescp.port,)],
            sharing=[("READONLY", "ARCHIVE")],
        )
        paths, studies = studyFiles(self, 2)
        server = yield startQrscp(self, config)
        stored = yield store(server.port, "ARCHIVE", *paths)
        self.assertEqual(stored.exitCode, 0, stored.describe())

        found, responses = yield findStudies(self, server.port, "READONLY")
        self.assertEqual(sorted(r.StudyInstanceUID for r in responses), sorted(studies), found.describe() + server.describe())
        self.assertEqual({r.RetrieveAETitle for r in responses}, {"READONLY"})

        moved = yield run(
            "movescu", "-v", "-S", "-aet", CALLING, "-aem", "STORESCP", "-aec", "READONLY",
            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + studies[0], "127.0.0.1", str(server.port),
        )
        self.assertIn("Received Final Move Response (Success)", moved.output, moved.describe() + server.describe())
        self.assertEqual([dcmread(os.path.join(destination, name)).StudyInstanceUID for name in os.listdir(destination)], [studies[0]])

        received = makeDirectory(self)
        got = yield run(
            "getscu", "-S", "-aet", CALLING, "-aec", "READONLY", "-od", received,
            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + studies[1], "127.0.0.1", str(server.port),
        )
        self.assertEqual(got.exitCode, 0, got.describe() + server.describe())
        self.assertEqual([dcmread(os.path.join(received, name)).StudyInstanceUID for name in os.listdir(received)], [studies[1]])

    @defer.inlineCallbacks
    def test_quotaCountsEveryAE(self):
        """
        Two writable AEs over one directory store under one quota, the
        stricter of theirs (with a warning at start): with room for two
        studies, a third stored through either evicts the least recently
        updated, whichever AE stored it.
        """
        config, areas = writeConfig(
            self, [("FIRST", "RW", "(2, 10mb)", "ANY"), ("SECOND", "RW", "(5, 10mb)", "ANY")], sharing=[("SECOND", "FIRST")]
        )
        paths, studies = studyFiles(self, 3)
        server = yield startQrscp(self, config)
        yield server.waitForOutput(re.escape("AE titles FIRST, SECOND store into %s with different quotas" % (os.path.realpath(areas["FIRST"]),)), timeout=30)
        for called, path in zip(["FIRST", "SECOND", "SECOND"], paths):
            result = yield store(server.port, called, path)
            self.assertEqual(result.exitCode, 0, result.describe())
        for called in ("FIRST", "SECOND"):
            found, responses = yield findStudies(self, server.port, called)
            self.assertEqual(sorted(r.StudyInstanceUID for r in responses), sorted(studies[1:]), found.describe() + server.describe())
        files = storedFiles(areas["FIRST"])
        self.assertEqual(len(files), 2)
        self.assertFalse([name for name in files if studies[0] in name], files)

    @defer.inlineCallbacks
    def test_indexByAETitleTakenOver(self):
        """
        An index written before areas were named by directory holds its
        rows under the AE title: at start they become the directory's,
        once, and the read-only AE over that directory finds the study.
        """
        config, areas = writeConfig(
            self, [("ARCHIVE", "RW", "(10, 10mb)", "ANY"), ("READONLY", "R", "(10, 10mb)", "ANY")], sharing=[("READONLY", "ARCHIVE")]
        )
        (path,), (study,) = studyFiles(self, 1)
        writeTitleIndex(os.path.join(areas["ARCHIVE"], INDEX_FILE), "ARCHIVE", areas["ARCHIVE"], path)
        server = yield startQrscp(self, config)
        # Logged at start, but read from the server's pipe later.
        yield server.waitForOutput("Index: the rows of AE title ARCHIVE are now those of its storage area", timeout=30)
        found, responses = yield findStudies(self, server.port, "READONLY")
        self.assertEqual([r.StudyInstanceUID for r in responses], [study], found.describe() + server.describe())


def writeTitleIndex(database, title, directory, source):
    """
    Put a copy of the file C{source} into C{directory} and index it as
    dicomd did before areas were named by directory: under the AE title.
    """
    from dicomd.archive.index import SQLiteArchiveIndex, StoredFile

    name = os.path.basename(source)
    shutil.copy(source, os.path.join(directory, name))
    header = dcmread(source, stop_before_pixels=True)
    index = SQLiteArchiveIndex(database)
    try:
        index.addInstance(title, header, StoredFile(name, os.path.getsize(source), str(header.file_meta.TransferSyntaxUID), 0.0))
    finally:
        index.close()


class QuotaTests(unittest.TestCase):
    """
    The quota of an AE: C{(maxStudies, maxBytesPerStudy)}.
    """

    @defer.inlineCallbacks
    def test_leastRecentlyUpdatedStudyEvicted(self):
        """
        With room for two studies, storing a third deletes the least
        recently updated one: its files and its index rows (C-FIND no
        longer finds it).  (Also: C{-s} is accepted and says that
        associations are concurrent.)
        """
        config, areas = writeConfig(self, [("ARCHIVE", "RW", "(2, 10mb)", "ANY")])
        paths, studies = studyFiles(self, 3)
        server = yield startQrscp(self, config, "-s")
        self.assertIn("associations are concurrent", server.output)
        for path in paths[:2]:
            result = yield store(server.port, "ARCHIVE", path)
            self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(len(storedFiles(areas["ARCHIVE"])), 2)
        result = yield store(server.port, "ARCHIVE", paths[2])
        self.assertEqual(result.exitCode, 0, result.describe())
        found, responses = yield findStudies(self, server.port, "ARCHIVE")
        self.assertEqual(sorted(r.StudyInstanceUID for r in responses), sorted(studies[1:]), found.describe())
        files = storedFiles(areas["ARCHIVE"])
        self.assertEqual(len(files), 2)
        self.assertFalse([name for name in files if studies[0] in name], files)


class ModelAndGetTests(unittest.TestCase):
    """
    C{-QP}, C{-QS}, C{-QO} and C{--disable-get}.
    """

    def setUp(self):
        self.config, self.areas = writeConfig(self, [("ARCHIVE", "RW", "(10, 10mb)", "ANY")])

    @defer.inlineCallbacks
    def test_noStudyRootNoPatientStudy(self):
        """
        With C{-QS -QO}, C{findscu -S} and C{-O} find no presentation
        context; C{-P} works.
        """
        server = yield startQrscp(self, self.config, "-QS", "-QO")
        for model in ("-S", "-O"):
            found, _ = yield findStudies(self, server.port, "ARCHIVE", model=model)
            self.assertIn(NO_CONTEXTS, found.output, model)
        found, _ = yield findStudies(self, server.port, "ARCHIVE", model="-P", level="PATIENT")
        self.assertEqual(found.exitCode, 0, found.describe())
        self.assertIn("Received Final Find Response (Success)", found.output)

    @defer.inlineCallbacks
    def test_noPatientRoot(self):
        """
        With C{-QP}, C{findscu -P} finds no presentation context;
        C{-S} works.
        """
        server = yield startQrscp(self, self.config, "-QP")
        found, _ = yield findStudies(self, server.port, "ARCHIVE", model="-P", level="PATIENT")
        self.assertIn(NO_CONTEXTS, found.output)
        found, _ = yield findStudies(self, server.port, "ARCHIVE")
        self.assertIn("Received Final Find Response (Success)", found.output)

    @defer.inlineCallbacks
    def test_disableGet(self):
        """
        With C{--disable-get}, C{getscu} finds no C-GET context (as with
        dcmqrscp: "No adequate Presentation Contexts for sending C-GET").
        """
        (path,), (study,) = studyFiles(self, 1)
        server = yield startQrscp(self, self.config, "--disable-get")
        stored = yield store(server.port, "ARCHIVE", path)
        self.assertEqual(stored.exitCode, 0, stored.describe())
        received = makeDirectory(self)
        got = yield run(
            "getscu", "-S", "-aet", CALLING, "-aec", "ARCHIVE", "-od", received,
            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study, "127.0.0.1", str(server.port),
        )
        self.assertNotEqual(got.exitCode, 0)
        self.assertIn("No adequate Presentation Contexts for sending C-GET", got.output)
        self.assertEqual(os.listdir(received), [])


class MoveTests(unittest.TestCase):
    """
    C-MOVE destinations from the configuration, and C{--move-aetitle}.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.destination = makeDirectory(self)
        self.storescp = yield startDCMTKServer(self, "storescp", "-od", self.destination)
        self.config, _ = writeConfig(
            self,
            [("ARCHIVE", "RW", "(10, 10mb)", "ANY")],
            hostTable=["destination = (STORESCP, localhost, %d)" % (self.storescp.port,)],
        )
        (self.path,), (self.study,) = studyFiles(self, 1)

    def move(self, port, destination, calling=CALLING):
        return run(
            "movescu", "-v", "-S", "-aet", calling, "-aem", destination, "-aec", "ARCHIVE",
            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + self.study, "127.0.0.1", str(port),
        )

    @defer.inlineCallbacks
    def test_destinations(self):
        """
        A destination of the HostTable receives the study; an unknown one
        is refused with 0xA801.
        """
        server = yield startQrscp(self, self.config)
        stored = yield store(server.port, "ARCHIVE", self.path)
        self.assertEqual(stored.exitCode, 0, stored.describe())
        moved = yield self.move(server.port, "STORESCP")
        self.assertIn("Received Final Move Response (Success)", moved.output, moved.describe())
        self.assertEqual(len(os.listdir(self.destination)), 1)
        unknown = yield self.move(server.port, "NOWHERE")
        self.assertIn("Refused: MoveDestinationUnknown", unknown.output, unknown.describe())

    @defer.inlineCallbacks
    def test_moveAETitle(self):
        """
        With C{--move-aetitle}, a move to another AE title than the
        requestor's is refused with 0xA801, as dcmqrscp does; a move to
        the requestor's own AE title goes.
        """
        server = yield startQrscp(self, self.config, "--move-aetitle")
        stored = yield store(server.port, "ARCHIVE", self.path)
        self.assertEqual(stored.exitCode, 0, stored.describe())
        refused = yield self.move(server.port, "STORESCP")
        self.assertIn("Refused: MoveDestinationUnknown", refused.output, refused.describe())
        self.assertEqual(os.listdir(self.destination), [])
        self.assertIn("move destination STORESCP is not the requesting AE title FINDSCU", server.output)
        moved = yield self.move(server.port, "STORESCP", calling="STORESCP")
        self.assertIn("Received Final Move Response (Success)", moved.output, moved.describe())
        self.assertEqual(len(os.listdir(self.destination)), 1)

    @defer.inlineCallbacks
    def test_unknownDestinationRefusedBeforeQuery(self):
        """
        An unknown destination is refused with 0xA801 before the query,
        whatever matches and whatever the AE's access: from a read-only AE
        whose area holds nothing, and from a read-write AE asked for a
        study it does not hold.  A known destination with nothing to send
        still succeeds.  (dcmqrscp 3.6.7 answers 0x0000 to the first two:
        it looks the destination up only once something matched.)
        """
        config, _ = writeConfig(
            self,
            [("ARCHIVE", "RW", "(10, 10mb)", "ANY"), ("PUBLIC", "R", "(10, 10mb)", "ANY")],
            hostTable=["destination = (STORESCP, localhost, %d)" % (self.storescp.port,)],
        )
        server = yield startQrscp(self, config)
        for called, destination, status in [("PUBLIC", "NOWHERE", 0xA801), ("ARCHIVE", "NOWHERE", 0xA801), ("ARCHIVE", "STORESCP", 0x0000)]:
            result = yield run(
                "movescu", "-d", "-S", "-aet", CALLING, "-aem", destination, "-aec", called,
                "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + self.study, "127.0.0.1", str(server.port),
            )
            moved = parseRetrieve(result.output, "C-MOVE")
            self.assertEqual(moved.status, status, "%s to %s: %s" % (called, destination, result.describe() + server.describe()))
        self.assertEqual(server.output.count("C-MOVE from FINDSCU refused: move destination NOWHERE unknown"), 2, server.describe())
        self.assertEqual(os.listdir(self.destination), [])


class NegotiationRuleTests(unittest.TestCase):
    """
    C{--require-find}, C{--no-parallel-store} and C{--allow-shutdown},
    with pynetdicom requestors proposing exactly what each needs.
    """

    def setUp(self):
        self.config, self.areas = writeConfig(self, [("ARCHIVE", "RW", "(10, 10mb)", "ANY"), ("OTHER", "RW", "(10, 10mb)", "ANY")])

    @defer.inlineCallbacks
    def test_requireFind(self):
        """
        With C{--require-find}, a C-MOVE context proposed without its
        C-FIND context is refused (user rejection, as dcmqrscp); with it,
        both are accepted.
        """
        server = yield startQrscp(self, self.config, "--require-find")
        alone = yield propose(self, server.port, "ARCHIVE", VERIFICATION_SOP_CLASS, MOVE_STUDY_ROOT)
        self.assertIn("refused %s 1" % (MOVE_STUDY_ROOT,), alone.stdout, alone.describe())
        both = yield propose(self, server.port, "ARCHIVE", MOVE_STUDY_ROOT, FIND_STUDY_ROOT)
        self.assertIn("accepted %s" % (MOVE_STUDY_ROOT,), both.stdout, both.describe())
        self.assertIn("accepted %s" % (FIND_STUDY_ROOT,), both.stdout, both.describe())

    @defer.inlineCallbacks
    def test_noParallelStore(self):
        """
        With C{--no-parallel-store}, while one association holds storage
        contexts with an AE, another gets none from it; another AE still
        takes storage.
        """
        server = yield startQrscp(self, self.config, "--no-parallel-store")
        holder = yield startHolder(self, server.port, "ARCHIVE")
        (path,), _ = studyFiles(self, 1)
        refused = yield store(server.port, "ARCHIVE", path)
        self.assertIn(NO_CONTEXTS, refused.output, refused.describe())
        stored = yield store(server.port, "OTHER", path)
        self.assertEqual(stored.exitCode, 0, stored.describe())
        yield holder.stop()

    @defer.inlineCallbacks
    def test_allowShutdown(self):
        """
        With C{--allow-shutdown}, DCMTK's C{termscu} (which negotiates the
        private shutdown SOP class) is rejected (permanent, service user,
        no reason) and the server exits with status 0.
        """
        server = yield startQrscp(self, self.config, "--allow-shutdown")
        result = yield runCommand([dcmtk("termscu"), "-d", "-aec", "ARCHIVE", LOCALHOST, str(server.port)], env=dcmtkEnvironment())
        self.assertRegex(result.output, r"Result: +Rejected Permanent, Source: +Service User", result.describe() + server.describe())
        self.assertRegex(result.output, r"Reason: +No Reason", result.describe())
        yield server.whenEnded()
        self.assertEqual(server.exitCode, 0, server.describe())

    @defer.inlineCallbacks
    def test_noShutdownWithoutOption(self):
        """
        Without C{--allow-shutdown}, the private shutdown SOP class is not
        supported (result 3) and the server keeps running.
        """
        server = yield startQrscp(self, self.config)
        result = yield propose(self, server.port, "ARCHIVE", PRIVATE_SHUTDOWN_SOP_CLASS, VERIFICATION_SOP_CLASS)
        self.assertIn("refused %s 3" % (PRIVATE_SHUTDOWN_SOP_CLASS,), result.stdout, result.describe())
        self.assertTrue(server.running)


@defer.inlineCallbacks
def startHolder(testCase, port, called):
    """
    Start L{HOLDING_SCRIPT} (the test's cleanup kills it) and wait until
    its association is established.

    @return: a L{Deferred} firing with its L{ChildProcess}.
    """
    directory = makeDirectory(testCase)
    script = os.path.join(directory, "holder.py")
    with open(script, "w") as f:
        f.write(HOLDING_SCRIPT)
    holder = spawn(testCase, [sys.executable, script, str(port), called], env=pythonEnvironment(), cwd=directory)
    yield holder.waitForOutput("^established", timeout=20)
    return holder


class CharacterSetTests(unittest.TestCase):
    """
    The character set options of C-FIND responses.
    """

    @defer.inlineCallbacks
    def test_transliterate(self):
        """
        With C{-Ct}, a Latin-1 name asked for in ASCII comes back
        transliterated, without Specific Character Set.  (DCMTK 3.6.7 as
        Debian builds it cannot: "Conversion flags not supported".)
        """
        config, _ = writeConfig(self, [("ARCHIVE", "RW", "(10, 10mb)", "ANY")])
        (path,), _ = studyFiles(self, 1, patientName="Müller^Jürgen", characterSet="ISO_IR 100")
        server = yield startQrscp(self, config, "-Ct")
        stored = yield store(server.port, "ARCHIVE", path)
        self.assertEqual(stored.exitCode, 0, stored.describe())
        found, [response] = yield findStudies(self, server.port, "ARCHIVE")
        self.assertEqual(str(response.PatientName), "Muller^Jurgen")
        self.assertNotIn("SpecificCharacterSet", response)


#: A pynetdicom requestor that asks for a C-MOVE over TLS and prints the
#: final status.
TLS_MOVE_SCRIPT = """
import ssl, sys
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE
port, called, destination, study, key, certificate, authority = sys.argv[1:8]
context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=authority)
context.check_hostname = False
context.load_cert_chain(certificate, key)
ae = AE(ae_title="FINDSCU")
ae.add_requested_context(MOVE)
association = ae.associate("127.0.0.1", int(port), ae_title=called, tls_args=(context, None))
identifier = Dataset()
identifier.QueryRetrieveLevel = "STUDY"
identifier.StudyInstanceUID = study
for status, _ in association.send_c_move(identifier, destination, MOVE):
    pass
print("status 0x%04X" % status.Status)
association.release()
"""


class TLSTests(unittest.TestCase):
    """
    C{+tls}, which dcmqrscp does not have: the listening port and the
    C-MOVE sub-associations use TLS.
    """

    @defer.inlineCallbacks
    def test_storeAndMove(self):
        """
        DCMTK's storescu stores over TLS, and a C-MOVE asked for over TLS
        reaches a DCMTK storescp that requires TLS.
        """
        pki = writeTestPKI(makeDirectory(self))
        serverTLS = ["+tls", pki.serverKey, pki.serverCertificate, "+cf", pki.caCertificate]
        destination = makeDirectory(self)
        storescp = yield startDCMTKServer(self, "storescp", *serverTLS, "-od", destination)
        config, _ = writeConfig(
            self,
            [("ARCHIVE", "RW", "(10, 10mb)", "ANY")],
            hostTable=["destination = (STORESCP, localhost, %d)" % (storescp.port,)],
        )
        (path,), (study,) = studyFiles(self, 1)
        server = yield startQrscp(self, config, *serverTLS)
        stored = yield run(
            "storescu", "+tls", pki.clientKey, pki.clientCertificate, "+cf", pki.caCertificate,
            "-aet", CALLING, "-aec", "ARCHIVE", "127.0.0.1", str(server.port), path,
        )
        self.assertEqual(stored.exitCode, 0, stored.describe())
        plain = yield store(server.port, "ARCHIVE", path)
        self.assertNotEqual(plain.exitCode, 0)
        moved = yield runPythonScript(
            self, TLS_MOVE_SCRIPT, str(server.port), "ARCHIVE", "STORESCP", study,
            pki.clientKey, pki.clientCertificate, pki.caCertificate,
        )
        self.assertEqual(moved.stdout.strip(), "status 0x0000", moved.describe())
        self.assertEqual(len(os.listdir(destination)), 1)


class ExampleConfigTests(unittest.TestCase):
    """
    The example configurations: ours (C{etc/dcmqrscp.cfg}) and DCMTK's
    (Debian's C{/etc/dcmtk/dcmqrscp.cfg}).
    """

    @defer.inlineCallbacks
    def test_dcmtkReadsOurExample(self):
        """
        DCMTK's dcmqrscp reads C{etc/dcmqrscp.cfg} without a configuration
        error, and listens.
        """
        server = yield startDCMTKServer(self, "dcmqrscp", "-d", "-c", EXAMPLE)
        self.assertNotIn("CONFIG Error", server.output)
        self.assertNotIn("bad config file", server.output)

    @defer.inlineCallbacks
    def test_qrscpServesOurExample(self):
        """
        C{dicomd qrscp} serves C{etc/dcmqrscp.cfg}, its storage areas moved
        to a temporary directory: C{WORKSTATION} (localhost) may call
        C{ARCHIVE}, and anyone C{PUBLIC}.
        """
        directory = makeDirectory(self)
        with open(EXAMPLE) as f:
            text = f.read().replace("/var/lib/dicomd/archive", directory)
        for title in ("ARCHIVE", "PUBLIC", "INBOX"):
            os.mkdir(os.path.join(directory, title))
        config = os.path.join(directory, "dcmqrscp.cfg")
        with open(config, "w") as f:
            f.write(text)
        server = yield startQrscp(self, config)
        accepted = yield echo(server.port, "ARCHIVE", "WORKSTATION")
        self.assertEqual(accepted.exitCode, 0, accepted.describe())
        public = yield echo(server.port, "PUBLIC", "ANYONE")
        self.assertEqual(public.exitCode, 0, public.describe())
        rejected = yield echo(server.port, "ARCHIVE", "ANYONE")
        self.assertIn(REJECTED, rejected.output)

    def test_exampleEntities(self):
        """
        The AEs of C{etc/dcmqrscp.cfg}: access, peers and destinations.
        """
        values = qrscp.COMMAND_LINE.parse(["-c", EXAMPLE])
        config = parseConfig(open(EXAMPLE).read(), EXAMPLE)
        values.update(config=config, receiveLimit=config.maxPDUSize, listenPort=104, database=self.mktemp())
        daemon = DicomdService(qrscp.daemonConfig(values, PeerHosts({"localhost": ["127.0.0.1"]})))
        entities = {title: entityService.entity for title, entityService in daemon.entityServices.items()}
        self.assertEqual(sorted(entities), ["ARCHIVE", "INBOX", "PUBLIC"])
        storages = {id(entityService.storage) for entityService in daemon.entityServices.values() if entityService.storage is not None}
        self.assertEqual(len(storages), 2)
        self.assertEqual(
            [(entities[t].options.readable, entities[t].options.writable) for t in ("ARCHIVE", "PUBLIC", "INBOX")],
            [(True, True), (True, False), (False, True)],
        )
        workstation = IPv4Address("TCP", "127.0.0.1", 5000)
        self.assertTrue(entities["ARCHIVE"].peers("WORKSTATION", workstation))
        self.assertFalse(entities["ARCHIVE"].peers("VIEWER1", workstation))
        self.assertIsNone(entities["PUBLIC"].peers)
        self.assertEqual(entities["ARCHIVE"].options.destinations("VIEWER2").host, "viewer2.example.org")

    def test_debianExample(self):
        """
        DCMTK's example, as Debian installs it, is accepted as it is: port
        104, no AE title (its AETable is all comments).
        """
        if not os.path.exists(DEBIAN_EXAMPLE):
            self.fail("%s is missing: install Debian's dcmtk package" % (DEBIAN_EXAMPLE,))
        values = qrscp.COMMAND_LINE.parse(["-c", DEBIAN_EXAMPLE, "--database", self.mktemp()])
        qrscp.validate(values)
        self.assertEqual(values["listenPort"], 104)
        self.assertEqual(values["receiveLimit"], 16384)
        self.assertEqual(values["config"].maxAssociations, 16)
        daemon = DicomdService(qrscp.daemonConfig(values, PeerHosts()))
        self.assertEqual(daemon.entityServices, {})


class StartupTests(unittest.TestCase):
    """
    How C{dicomd qrscp} fails to start.
    """

    @defer.inlineCallbacks
    def test_databaseCannotBeOpened(self):
        """
        An index database that cannot be created stops the server with
        dcmqrscp's exit status for fatal errors, 10, naming the file and
        why.
        """
        config, _ = writeConfig(self, [("ARCHIVE", "RW", "(10, 10mb)", "ANY")])
        blocker = os.path.join(makeDirectory(self), "file")
        open(blocker, "w").close()
        database = os.path.join(blocker, "index.sqlite")
        port = str(freePort())
        result = yield runCommand(dicomdArgv("qrscp", "--database", database, "-c", config, port), env=pythonEnvironment())
        self.assertEqual(result.exitCode, 10, result.describe())
        self.assertIn("F: cannot write %s (the index database): %s is not a directory\n" % (database, blocker), result.stderr)
        self.assertNotIn("Traceback", result.output)

    @defer.inlineCallbacks
    def test_debianDefaultConfiguration(self):
        """
        Without C{-c}, C{dicomd qrscp} reads Debian's
        C{/etc/dcmtk/dcmqrscp.cfg}, as dcmqrscp does, and says so; its
        AETable is empty, which it says too, and then it serves as
        dcmqrscp does: every association is rejected.  There is no index
        to open (none was created in C{/etc/dcmtk}).  As root, it names the
        user of the file's C{UserName} it became.
        """
        if not os.path.exists(DEBIAN_EXAMPLE):
            self.fail("%s is missing: install Debian's dcmtk package" % (DEBIAN_EXAMPLE,))
        server = yield startPeer(
            self, lambda port: dicomdArgv("qrscp", "-v", str(port)), env=pythonEnvironment(), name="dicomd qrscp"
        )
        # Logged at start, but read from the server's pipe later.
        yield server.waitForOutput("^" + re.escape("I: Configuration file: %s (dcmqrscp's default configuration file)" % (DEBIAN_EXAMPLE,)) + "$", timeout=30)
        yield server.waitForOutput(re.escape("W: The AETable of %s (dcmqrscp's default configuration file) is empty" % (DEBIAN_EXAMPLE,)), timeout=30)
        if os.geteuid() == 0:
            yield server.waitForOutput(
                "^" + re.escape("I: Running as user dcmtk, group dcmtk (UserName and GroupName of %s)" % (DEBIAN_EXAMPLE,)) + "$", timeout=30
            )
        rejected = yield echo(server.port, "ANY-SCP")
        self.assertIn("Called AE Title Not Recognized", rejected.output, rejected.describe() + server.describe())
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(DEBIAN_EXAMPLE), INDEX_FILE)))

    @defer.inlineCallbacks
    def test_indexErrorNamesTheUser(self):
        """
        Started as root with a C{UserName}, an index that user cannot write
        stops the server with a line naming the index, why, and the user.
        """
        if os.geteuid() != 0:
            raise unittest.SkipTest("becoming the UserName of the configuration needs root (CI runs the suite as root)")
        # An index directory nobody may enter but not write: root's, 0755,
        # on a path whose every directory nobody may search (trial's
        # temporary directories are 0700); a storage area nobody may write
        # (the storage areas are checked first, as twistd dicomd does).
        base = tempfile.mkdtemp(prefix="dicomd-qrscp-")
        self.addCleanup(shutil.rmtree, base)
        os.chmod(base, 0o755)
        area = os.path.join(base, "ARCHIVE")
        os.mkdir(area)
        os.chmod(area, 0o777)
        index = os.path.join(base, "index")
        os.mkdir(index, 0o755)
        database = os.path.join(index, INDEX_FILE)
        config = os.path.join(base, "dcmqrscp.cfg")
        with open(config, "w") as f:
            f.write("UserName = nobody\nGroupName = nogroup\nAETable BEGIN\nARCHIVE %s RW (10, 10mb) ANY\nAETable END\n" % (area,))
        result = yield runCommand(dicomdArgv("qrscp", "-c", config, "--database", database, str(freePort())), env=pythonEnvironment())
        self.assertEqual(result.exitCode, 10, result.describe())
        self.assertIn(
            "F: cannot write %s (the index database): %s: Permission denied (running as user nobody, group nogroup)\n" % (database, index),
            result.stderr,
        )


class CommandLineTests(unittest.TestCase):
    """
    What C{dicomd qrscp} refuses before listening.
    """

    def validated(self, *arguments):
        values = qrscp.COMMAND_LINE.parse(list(arguments))
        qrscp.validate(values)
        return values

    def test_missingStorageArea(self):
        """
        A storage area that does not exist is an error naming it (dcmqrscp
        would start and abort every association to that AE).
        """
        config, areas = writeConfig(self, [("ARCHIVE", "RW", "(10, 10mb)", "ANY")])
        os.rmdir(areas["ARCHIVE"])
        error = self.assertRaises(CannotStart, self.validated, "-c", config)
        self.assertIn("storage area %s of ARCHIVE does not exist" % (areas["ARCHIVE"],), str(error))
        self.assertEqual(error.status, 10)

    def test_storageAreaIsARegularFile(self):
        """
        A storage area that is a regular file is not a directory.
        """
        config, areas = writeConfig(self, [("ARCHIVE", "RW", "(10, 10mb)", "ANY")])
        os.rmdir(areas["ARCHIVE"])
        open(areas["ARCHIVE"], "w").close()
        error = self.assertRaises(CannotStart, self.validated, "-c", config)
        self.assertEqual(str(error), "%s: storage area %s of ARCHIVE is not a directory" % (config, areas["ARCHIVE"]))

    def test_configErrorNamesLine(self):
        """
        A configuration error names the file and line.
        """
        config, _ = writeConfig(self, [("ARCHIVE", "RX", "(10, 10mb)", "ANY")])
        error = self.assertRaises(CannotStart, self.validated, "-c", config)
        self.assertIn("%s, line 9: access 'RX'" % (config,), str(error))
        self.assertEqual(error.status, 10)

    @defer.inlineCallbacks
    def test_dcmtkExitStatuses(self):
        """
        As dcmqrscp: an unreadable or invalid configuration file ends with
        status 10 and its message alone; an unknown option with status 1.
        """
        directory = makeDirectory(self)
        bad = os.path.join(directory, "bad.cfg")
        with open(bad, "w") as f:
            f.write("NetworkTCPPort = 11112\nBogus line here\n")
        for arguments, status, message in [
            (("-c", os.path.join(directory, "missing.cfg")), 10, "dicomd qrscp: bad config file: %s: No such file or directory" % (os.path.join(directory, "missing.cfg"),)),
            (("-c", bad), 10, "dicomd qrscp: bad config file: %s, line 2: unknown mnemonic 'Bogus'" % (bad,)),
        ]:
            result = yield runCommand(dicomdArgv("qrscp", *arguments), env=pythonEnvironment())
            self.assertEqual((result.exitCode, result.stderr.splitlines()), (status, [message]), result.describe())
        result = yield runCommand(dicomdArgv("qrscp", "--bogus"), env=pythonEnvironment())
        self.assertEqual(result.exitCode, 1, result.describe())

    def test_unsupported(self):
        """
        Options dicomd does not honour are refused by name.
        """
        config, _ = writeConfig(self, [("ARCHIVE", "RW", "(10, 10mb)", "ANY")])
        for option in ("+ac", "-F"):
            error = self.assertRaises(UsageError, self.validated, option, "-c", config)
            self.assertIn("%s (" % (option,), str(error))
            self.assertIn("is not supported", str(error))

    def test_allModelsOff(self):
        """
        Turning every model off is an error, as in dcmqrscp.
        """
        error = self.assertRaises(UsageError, self.validated, "-QP", "-QS", "-QO")
        self.assertEqual(str(error), "cannot disable all Q/R models")

    def test_portAndPDU(self):
        """
        The port and PDU size come from the configuration unless the
        command line names them; the database defaults to the first AE's
        storage area.
        """
        config, areas = writeConfig(
            self, [("ARCHIVE", "RW", "(10, 10mb)", "ANY"), ("PUBLIC", "R", "(10, 10mb)", "ANY")], settings="NetworkTCPPort = 5678"
        )
        values = self.validated("-c", config)
        self.assertEqual((values["listenPort"], values["receiveLimit"]), (5678, 16384))
        self.assertEqual(values["database"], os.path.join(areas["ARCHIVE"], INDEX_FILE))
        values = self.validated("-c", config, "-pdu", "32768", "--database", "index.db", "4321")
        self.assertEqual((values["listenPort"], values["receiveLimit"], values["database"]), (4321, 32768, "index.db"))

    def test_associationProfiles(self):
        """
        C{-xf FILE IN OUT} takes the storage contexts accepted from profile
        IN and those proposed to move destinations from profile OUT; it
        does not combine with transfer syntax options, and an unknown
        profile is an error naming the file.
        """
        config, _ = writeConfig(self, [("ARCHIVE", "RW", "(10, 10mb)", "ANY")])
        profiles = os.path.join(str(REPO_ROOT), "etc", "storescp-asconfig.cfg")
        values = self.validated("-c", config, "-xf", profiles, "Default", "Uncompressed")
        daemon = DicomdService(qrscp.daemonConfig(values, PeerHosts()))
        self.assertIn(CT_IMAGE_STORAGE, daemon.entityServices["ARCHIVE"].entity.policy.transferSyntaxes)
        self.assertEqual(values["outgoingProfile"].name, "UNCOMPRESSED")
        error = self.assertRaises(UsageError, self.validated, "-c", config, "-xf", profiles, "Default", "Default", "+xe")
        self.assertEqual(str(error), "--assoc-config-file cannot be combined with transfer syntax options")
        error = self.assertRaises(UsageError, self.validated, "-c", config, "-xf", profiles, "Nothing", "Default")
        self.assertIn("--assoc-config-file %s: " % (profiles,), str(error))

    def test_characterSetOptions(self):
        """
        The character set options start from the configuration's
        C{SpecificCharacterSet} line (or dcmqrscp's default: the request's
        character set, falling back to ASCII); the default changes nothing.
        """
        config, _ = writeConfig(self, [("ARCHIVE", "RW", "(10, 10mb)", "ANY")])
        self.assertIsNone(self.validated("-c", config)["characterSets"])
        self.assertEqual(
            self.validated("-c", config, "-Cr", "+U8", "-Cd")["characterSets"],
            ResponseCharacterSet(characterSet=("ISO_IR 192",), override=True, discard=True),
        )
        configured, _ = writeConfig(
            self, [("ARCHIVE", "RW", "(10, 10mb)", "ANY")], settings='SpecificCharacterSet = "ISO_IR 100", override'
        )
        self.assertEqual(
            self.validated("-c", configured, "+Cr")["characterSets"],
            ResponseCharacterSet(characterSet=("ISO_IR 100",), override=False, fallback=False),
        )
        error = self.assertRaises(UsageError, self.validated, "-c", config, "+C", "KLINGON")
        self.assertIn("'KLINGON' is not a DICOM defined term", str(error))


# -- the service objects --------------------------------------------------------------------


def requestFor(*contexts, roles=()):
    """
    An A-ASSOCIATE-RQ proposing C{(abstractSyntax, transferSyntaxes)}
    contexts, with role selections.
    """
    return AAssociateRQ(
        "ARCHIVE",
        CALLING,
        [PresentationContextRQ(2 * i + 1, uid, list(syntaxes)) for i, (uid, syntaxes) in enumerate(contexts)],
        UserInformation(maximumLength=16384, roleSelections=list(roles)),
    )


def archiveEntity(shutdown=None, **options):
    options = QueryRetrieveOptions(**options)
    return ArchiveEntity("ARCHIVE", queryRetrievePolicy(options, shutdown=shutdown is not None), {}, options=options, shutdown=shutdown)


def results(answer):
    return [context.result for context in answer.presentationContexts]


class ArchiveEntityTests(unittest.SynchronousTestCase):
    """
    L{ArchiveEntity}: dcmqrscp's rules on negotiated presentation contexts.
    """

    STORE = (CT_IMAGE_STORAGE, [EXPLICIT_VR_LITTLE_ENDIAN])
    FIND = (FIND_STUDY_ROOT, [EXPLICIT_VR_LITTLE_ENDIAN])
    MOVE = (MOVE_STUDY_ROOT, [EXPLICIT_VR_LITTLE_ENDIAN])
    GET = (GET_STUDY_ROOT, [EXPLICIT_VR_LITTLE_ENDIAN])

    def test_readOnly(self):
        """
        A read-only AE refuses storage contexts (user rejection), except
        one where the requestor takes the SCP role only (C-GET).
        """
        entity = archiveEntity(writable=False)
        answer, contexts = entity.negotiate(requestFor(self.STORE, self.FIND))
        self.assertEqual(results(answer), [1, 0])
        self.assertEqual([c.abstractSyntax for c in contexts.values()], [FIND_STUDY_ROOT])
        getRole = SCPSCURoleSelection(CT_IMAGE_STORAGE, False, True)
        answer, contexts = entity.negotiate(requestFor(self.GET, self.STORE, roles=[getRole]))
        self.assertEqual(results(answer), [0, 0])
        self.assertTrue(contexts[3].scpRole)

    def test_writeOnly(self):
        """
        A write-only AE refuses FIND, MOVE and GET contexts.
        """
        answer, contexts = archiveEntity(readable=False).negotiate(requestFor(self.STORE, self.FIND, self.MOVE, self.GET))
        self.assertEqual(results(answer), [0, 1, 1, 1])
        self.assertEqual(list(contexts), [1])

    def test_requireFind(self):
        """
        With C{requireFind}, MOVE without FIND of its model is refused;
        GET is not checked (dcmqrscp checks MOVE only).
        """
        entity = archiveEntity(requireFind=True)
        answer, _ = entity.negotiate(requestFor(self.MOVE, self.GET))
        self.assertEqual(results(answer), [1, 0])
        patientFind = (PATIENT_ROOT.sopClassUIDs[0], [EXPLICIT_VR_LITTLE_ENDIAN])
        answer, _ = entity.negotiate(requestFor(self.MOVE, patientFind))
        self.assertEqual(results(answer), [1, 0])
        answer, _ = entity.negotiate(requestFor(self.MOVE, self.FIND))
        self.assertEqual(results(answer), [0, 0])

    def test_noParallelStore(self):
        """
        Without C{parallelStore}, storage contexts are refused while an
        established association of the AE holds some, and accepted again
        once it has closed.
        """
        entity = archiveEntity(parallelStore=False)
        closed = defer.Deferred()

        class Holding:
            contexts = {1: NegotiatedContext(1, CT_IMAGE_STORAGE, EXPLICIT_VR_LITTLE_ENDIAN)}

            def whenClosed(self):
                return closed

        entity.associationEstablished(Holding())
        answer, _ = entity.negotiate(requestFor(self.STORE, self.FIND))
        self.assertEqual(results(answer), [1, 0])
        closed.callback(None)
        answer, _ = entity.negotiate(requestFor(self.STORE))
        self.assertEqual(results(answer), [0])

    def test_shutdown(self):
        """
        Negotiating the private shutdown SOP class rejects the association
        (permanent, service user, no reason) and calls C{shutdown}; without
        C{shutdown} the class is not supported.
        """
        calls = []
        proposal = (PRIVATE_SHUTDOWN_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN])
        answer, contexts = archiveEntity(shutdown=lambda: calls.append(True)).negotiate(requestFor(proposal))
        self.assertIsNone(contexts)
        self.assertEqual((answer.result, answer.source, answer.reason), (1, 1, 1))
        self.assertEqual(calls, [True])
        answer, contexts = archiveEntity().negotiate(requestFor(proposal, self.FIND))
        self.assertEqual(results(answer), [3, 0])

    def test_profilePolicy(self):
        """
        With an association negotiation profile (C{-xf}), the storage
        contexts are the profile's, with its roles for C-GET, and the
        query/retrieve contexts are still accepted.
        """
        profile = AcceptorPolicy({CT_IMAGE_STORAGE: (IMPLICIT_VR_LITTLE_ENDIAN,)}, scpRoleSOPClasses=frozenset([CT_IMAGE_STORAGE]))
        policy = queryRetrievePolicy(QueryRetrieveOptions(storagePolicy=profile, promiscuous=True))
        self.assertEqual(policy.preferencesFor(CT_IMAGE_STORAGE), (IMPLICIT_VR_LITTLE_ENDIAN,))
        self.assertIsNone(policy.preferencesFor("1.2.840.10008.5.1.4.1.1.4"))
        self.assertEqual(policy.preferencesFor(FIND_STUDY_ROOT), UNCOMPRESSED)
        self.assertEqual(policy.scpRoleSOPClasses, frozenset([CT_IMAGE_STORAGE]))

    def test_refuseComesFirst(self):
        """
        With C{refuseAll} (C{--refuse}), every peer is rejected with no
        reason, even one the peer rule would reject otherwise, as dcmqrscp
        does.
        """
        entity = archiveEntity()
        entity.refuseAll = True
        entity.peers = lambda calling, address: False
        self.assertIsNone(entity.admit(requestFor(), IPv4Address("TCP", "10.0.0.1", 1)))
        answer, contexts = entity.negotiate(requestFor(self.FIND))
        self.assertEqual((answer.result, answer.source, answer.reason, contexts), (1, 1, 1, None))

    def test_admit(self):
        """
        A peer the AE's rule refuses is rejected: permanent, service user,
        called AE title not recognized; without a rule anyone is admitted.
        """
        entity = archiveEntity()
        self.assertIsNone(entity.admit(requestFor(), IPv4Address("TCP", "10.0.0.1", 1)))
        entity.peers = lambda calling, address: address.host == "127.0.0.1"
        reject = entity.admit(requestFor(), IPv4Address("TCP", "10.0.0.1", 1))
        self.assertEqual((reject.result, reject.source, reject.reason), (1, 1, 7))
        self.assertIsNone(entity.admit(requestFor(), IPv4Address("TCP", "127.0.0.1", 1)))


CONFIG = """
HostTable BEGIN
scanner = (SCANNER, scanner.example.org, 104)
viewer = (VIEWER, 10.0.0.7, 11112)
local = (LOCAL, localhost, 11113)
HostTable END
VendorTable BEGIN
"Acme" = scanner, viewer
VendorTable END
AETable BEGIN
ARCHIVE /data/ARCHIVE RW (10, 10mb) scanner, (VIEWER, viewer.example.org, 4006)
PUBLIC /data/PUBLIC R (10, 10mb) ANY
AETable END
"""


class PeerTests(unittest.SynchronousTestCase):
    """
    L{PeerHosts}, L{peerRule}, L{hostRule}, L{configuredPeers} and
    L{moveRestriction}.
    """

    def setUp(self):
        self.config = parseConfig(CONFIG)
        self.hosts = PeerHosts({"scanner.example.org": ["10.0.0.5"], "Localhost": ["127.0.0.1", "::1"]})

    def test_hostMatching(self):
        """
        A host name matches its addresses, ignoring the name's case, and
        an address written as the name.
        """
        self.assertTrue(self.hosts.matches("localhost", "127.0.0.1"))
        self.assertTrue(self.hosts.matches("SCANNER.example.org", "10.0.0.5"))
        self.assertTrue(self.hosts.matches("10.0.0.7", "10.0.0.7"))
        self.assertFalse(self.hosts.matches("scanner.example.org", "10.0.0.7"))

    def test_resolve(self):
        """
        L{PeerHosts.resolve} looks each name up once, and reports those
        that do not resolve.
        """

        def lookup(name, port):
            if name == "nowhere":
                raise OSError("Name or service not known")
            return [(2, 1, 6, "", ("192.0.2.1", 0)), (2, 2, 17, "", ("192.0.2.1", 0))]

        hosts, unresolved = PeerHosts.resolve(["a", "nowhere", "a"], lookup)
        self.assertTrue(hosts.matches("a", "192.0.2.1"))
        self.assertEqual(unresolved, ("nowhere",))

    def test_hostRule(self):
        """
        L{hostRule}, C{twistd dicomd}'s C{hosts}: a peer on one of the
        networks or at an address of one of the names may call, whatever
        its AE title; a name that does not resolve is reported and lets
        nobody in; no C{hosts}, no rule.
        """

        def lookup(name, port):
            if name == "nowhere":
                raise OSError("Name or service not known")
            return [(2, 1, 6, "", ("192.0.2.1", 0))]

        failures = []
        allowed = hostRule(
            ("scanner.example.org", ipaddress.ip_network("10.0.0.0/8"), "nowhere"),
            lookup,
            failed=lambda name, why: failures.append((name, str(why))),
        )
        self.assertEqual(failures, [("nowhere", "Name or service not known")])
        self.assertTrue(allowed("ANY", IPv4Address("TCP", "192.0.2.1", 104)))
        self.assertTrue(allowed("OTHER", IPv4Address("TCP", "10.1.2.3", 104)))
        self.assertFalse(allowed("ANY", IPv4Address("TCP", "192.0.2.2", 104)))
        self.assertIsNone(hostRule(None))

    def test_peerRule(self):
        """
        An AE's peers are its AETable peers (AE title and host); C{ANY}
        gives no rule.
        """
        allowed = peerRule(self.config, self.hosts, "ARCHIVE")
        self.assertTrue(allowed("SCANNER", IPv4Address("TCP", "10.0.0.5", 1)))
        self.assertFalse(allowed("SCANNER", IPv4Address("TCP", "10.0.0.6", 1)))
        self.assertFalse(allowed("OTHER", IPv4Address("TCP", "10.0.0.5", 1)))
        self.assertIsNone(peerRule(self.config, self.hosts, "PUBLIC"))

    def test_destinationsAsDCMTKFindsThem(self):
        """
        A destination is looked up in the AETable's peers first, then in
        the HostTable, as dcmqrscp's C{peerForAETitle}.
        """
        peers = {peer.aeTitle: (peer.host, peer.port) for peer in configuredPeers(self.config)}
        self.assertEqual(peers["VIEWER"], ("viewer.example.org", 4006))
        self.assertEqual(peers["LOCAL"], ("localhost", 11113))
        self.assertEqual(peers["SCANNER"], ("scanner.example.org", 104))

    def association(self, calling, host):
        class Requesting:
            callingAETitle = calling
            peerAddress = IPv4Address("TCP", host, 1)

        return Requesting()

    def test_moveRestrictions(self):
        """
        C{--move-aetitle}, C{--move-host} and C{--move-vendor} give reasons
        to refuse; no restriction gives no hook.
        """
        self.assertIsNone(moveRestriction(self.config, self.hosts))
        local = Destination("LOCAL", "localhost", None)
        sameAE = moveRestriction(self.config, self.hosts, sameAETitle=True)
        self.assertIsNone(sameAE(self.association("LOCAL", "10.0.0.9"), local))
        self.assertIn("not the requesting AE title", sameAE(self.association("SCANNER", "10.0.0.9"), local))
        sameHost = moveRestriction(self.config, self.hosts, sameHost=True)
        self.assertIsNone(sameHost(self.association("SCANNER", "127.0.0.1"), local))
        self.assertIn("not on the requesting host 10.0.0.5", sameHost(self.association("SCANNER", "10.0.0.5"), local))
        sameVendor = moveRestriction(self.config, self.hosts, sameVendor=True)
        viewer = Destination("VIEWER", "10.0.0.7", None)
        self.assertIsNone(sameVendor(self.association("SCANNER", "10.0.0.5"), viewer))
        self.assertIn("not of the vendor", sameVendor(self.association("LOCAL", "127.0.0.1"), viewer))

    def test_proposing(self):
        """
        A C-MOVE sub-association proposes each syntax the instances are
        stored in on a context of its own, so that the destination can take
        them as they are, and per SOP class the chosen syntaxes to convert
        to; a stored context that would repeat that one is left out.
        """
        rewrite = proposing((IMPLICIT_VR_LITTLE_ENDIAN,))
        stored = [(CT_IMAGE_STORAGE, [EXPLICIT_VR_LITTLE_ENDIAN]), (MR_IMAGE_STORAGE, [IMPLICIT_VR_LITTLE_ENDIAN]), (CT_IMAGE_STORAGE, [JPEG_BASELINE])]
        self.assertEqual(
            rewrite(stored),
            [
                (CT_IMAGE_STORAGE, [EXPLICIT_VR_LITTLE_ENDIAN]),
                (CT_IMAGE_STORAGE, [JPEG_BASELINE]),
                (CT_IMAGE_STORAGE, [IMPLICIT_VR_LITTLE_ENDIAN]),
                (MR_IMAGE_STORAGE, [IMPLICIT_VR_LITTLE_ENDIAN]),
            ],
        )

    def test_proposingTooMany(self):
        """
        When the stored contexts would make more than 128, those whose
        syntax the conversion context lists are left out: their instances
        go in whichever of those syntaxes the destination takes.
        """
        classes = ["1.2.3.%d" % (n,) for n in range(65)]
        stored = [(uid, [EXPLICIT_VR_LITTLE_ENDIAN]) for uid in classes] + [(classes[0], [JPEG_BASELINE])]
        proposed = proposing(UNCOMPRESSED)(stored)
        self.assertEqual(proposed[:2], [(classes[0], [JPEG_BASELINE]), (classes[0], list(UNCOMPRESSED))])
        self.assertEqual(proposed[2:], [(uid, list(UNCOMPRESSED)) for uid in classes[1:]])
        self.assertEqual(len(proposing(UNCOMPRESSED)(stored[:64])), 128)


class ResponseCharacterSetTests(unittest.SynchronousTestCase):
    """
    L{ResponseCharacterSet}: dcmqrscp's conversion of C-FIND responses.
    """

    def response(self, name="Müller^Jürgen", characterSet="ISO_IR 192"):
        response = Dataset()
        response.SpecificCharacterSet = characterSet
        response.PatientName = name
        response.PatientID = "P1"
        return response

    def test_requestCharacterSet(self):
        """
        By default a response goes in the request's character set when it
        can, and stays as it is when it cannot (ASCII fallback fails).
        """
        converted = ResponseCharacterSet().convert(self.response(), ("ISO_IR 100",))
        self.assertEqual((converted.SpecificCharacterSet, str(converted.PatientName)), ("ISO_IR 100", "Müller^Jürgen"))
        unchanged = ResponseCharacterSet().convert(self.response(), ())
        self.assertEqual(unchanged.SpecificCharacterSet, "ISO_IR 192")

    def test_fallback(self):
        """
        When the request's character set cannot represent a value, the
        configured one is tried (C{+L1}).
        """
        converted = ResponseCharacterSet(characterSet=("ISO_IR 100",)).convert(self.response(), ())
        self.assertEqual(converted.SpecificCharacterSet, "ISO_IR 100")
        kept = ResponseCharacterSet(characterSet=("ISO_IR 100",), fallback=False).convert(self.response(), ())
        self.assertEqual(kept.SpecificCharacterSet, "ISO_IR 192")

    def test_override(self):
        """
        C{-Cr} puts the configured character set first; to ASCII, the
        Specific Character Set goes.
        """
        converted = ResponseCharacterSet(override=True).convert(self.response(name="Doe^John"), ("ISO_IR 100",))
        self.assertNotIn("SpecificCharacterSet", converted)
        self.assertEqual(str(converted.PatientName), "Doe^John")

    def test_transliterateAndDiscard(self):
        """
        C{-Ct} approximates, C{-Cd} drops what the target cannot represent;
        C{-Ct} gives C{?} for what has no approximation.
        """
        transliterated = ResponseCharacterSet(transliterate=True).convert(self.response(), ())
        self.assertEqual(str(transliterated.PatientName), "Muller^Jurgen")
        discarded = ResponseCharacterSet(discard=True).convert(self.response(), ())
        self.assertEqual(str(discarded.PatientName), "Mller^Jrgen")
        question = ResponseCharacterSet(transliterate=True).convert(self.response(name="Wang^小東"), ())
        self.assertEqual(str(question.PatientName), "Wang^??")

    def test_terms(self):
        """
        L{characterSetTerms} reads Specific Character Set values; ASCII's
        terms are no terms.
        """
        self.assertEqual(characterSetTerms(None), ())
        self.assertEqual(characterSetTerms("ISO_IR 6"), ())
        self.assertEqual(characterSetTerms("\\ISO 2022 IR 87"), ("", "ISO 2022 IR 87"))
        self.assertEqual(characterSetTerms(["ISO_IR 192"]), ("ISO_IR 192",))


class DestinationTimeoutTests(unittest.SynchronousTestCase):
    """
    The timeouts of the associations L{destinationTable} opens to C-MOVE
    destinations, on a simulated clock and network: none waits for ever,
    whatever is configured.
    """

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.stalling = SilentService()
        entity = ApplicationEntity("STALLER", AcceptorPolicy({CT_IMAGE_STORAGE: UNCOMPRESSED}), {CStoreRQ.commandField: self.stalling})
        self.destination = AcceptorFactory(entity, reactor=self.clock, idleTimeout=None)

    def connect(self, serverFactory, **timeouts):
        """
        Open a sub-association to C{STALLER} as a C-MOVE does, served by
        C{serverFactory}.

        @return: C{(Deferred of the association, the server's protocol,
            IOPump)}.
        """
        destinations = destinationTable([Peer("STALLER", "127.0.0.1", 104)], "ARCHIVE", reactor=self.clock, **timeouts)
        connected = destinations("STALLER").connect([(CT_IMAGE_STORAGE, [EXPLICIT_VR_LITTLE_ENDIAN])])
        host, port, clientFactory, _, _ = self.clock.tcpClients[-1]
        client = clientFactory.buildProtocol(IPv4Address("TCP", host, port))
        server = serverFactory.buildProtocol(PEER)
        pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client), clock=self.clock)
        pump.flush()
        return connected, server, pump

    def assertStoreTimesOut(self, after, **timeouts):
        """
        A C-STORE the destination never answers fails with
        L{DIMSETimeout} C{after} seconds, and the destination sees the
        association aborted.
        """
        connected, server, pump = self.connect(self.destination, **timeouts)
        association = self.successResultOf(connected)
        self.stalling.requests.clear()
        stored = association.request(
            association.contextFor(CT_IMAGE_STORAGE).contextID,
            CStoreRQ(affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID="1.2.826.0.1.3680043.9.7433.5"),
            b"\x08\x00\x16\x00\x00\x00\x00\x00",
        )
        pump.flush()
        self.assertEqual(len(self.stalling.requests), 1)
        self.clock.advance(after - 0.1)
        pump.flush()
        self.assertNoResult(stored)
        self.clock.advance(0.1)
        pump.flush()
        self.failureResultOf(stored, DIMSETimeout)
        self.assertTrue(server.outcome.startswith("aborted"), server.outcome)

    def test_defaultDIMSETimeout(self):
        """
        With no DIMSE timeout configured (C{None}, or C{0} as
        C{dimse-timeout = 0} gives), a C-STORE-RSP is awaited
        L{MOVE_DIMSE_TIMEOUT} seconds, then the association is aborted.
        """
        self.assertEqual(MOVE_DIMSE_TIMEOUT, 60)
        self.assertStoreTimesOut(MOVE_DIMSE_TIMEOUT)
        self.assertStoreTimesOut(MOVE_DIMSE_TIMEOUT, dimseTimeout=0)

    def test_configuredDIMSETimeout(self):
        """
        A configured DIMSE timeout is used as it is.
        """
        self.assertStoreTimesOut(5, dimseTimeout=5)

    def test_acseTimeout(self):
        """
        A destination that accepts the connection but never answers the
        A-ASSOCIATE-RQ fails the connection after the ACSE timeout (30 s
        unless configured), with an A-ABORT.
        """
        peers = []

        def silent():
            peers.append(SilentPeer())
            return peers[-1]

        connected, peer, pump = self.connect(Factory.forProtocol(silent))
        self.clock.advance(29.9)
        pump.flush()
        self.assertNoResult(connected)
        self.clock.advance(0.1)
        pump.flush()
        self.failureResultOf(connected, ACSETimeout)
        [request, abort] = splitPDUs(bytes(peer.received))
        self.assertIsInstance(request, AAssociateRQ)
        self.assertIsInstance(abort, AAbort)
