"""
C{dicomd storescp} with real senders: DCMTK's C{storescu} and pynetdicom
scripts, run as processes against C{python -m dicomd storescp} (and, for
one test, C{twistd -n dicomd}), one option group of storescp's manual at a
time: what is accepted, where and under which names objects are stored,
sorting, refusing, sanitising names built from network data, statuses,
events and commands, the test options, and the front door itself.

Every check looks at what a user would see: the sender's exit status and
output, the files in the output directory, and the lines the configured
commands write.  The harness is L{tests.support}.
"""

import os
import re
import socket
import stat
import struct
import subprocess
from datetime import datetime
from types import SimpleNamespace

import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from twisted.internet import defer
from twisted.trial import unittest

from dicomd.cli import storescp
from dicomd.cli.options import UsageError
from dicomd.dimse.commands import CEchoRQ, CStoreRQ
from dicomd.net.acceptor import ApplicationEntity
from dicomd.services.verification import VerificationSCP
from dicomd.storage import naming
from dicomd.storage.receiver import StorageOptions, buildReceiver, storagePolicy
from dicomd.storage.scp import hostTag
from dicomd.ul.negotiation import ACCEPTOR_PREFERENCES
from dicomd.ul.pdu import AAssociateRQ, PresentationContextRQ, UserInformation
from tests.dicomfiles import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, makeDataset, writeFile
from tests.support import (
    frontDoorListening,
    LOCALHOST,
    REPO_ROOT,
    dcmtk,
    deadPID,
    dcmtkEnvironment,
    dicomdArgv,
    exchangeBytes,
    freePort,
    listenInProcess,
    makeDirectory,
    pythonEnvironment,
    runCommand,
    runPythonScript,
    spawn,
    startDaemon,
    startPeer,
    twistdArgv,
    waitUntil,
)

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
EXPLICIT_BIG = "1.2.840.10008.1.2.2"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
PRIVATE_SOP_CLASS = "1.3.6.1.4.1.55555.1.2.3"

ASCONFIG = str(REPO_ROOT / "etc" / "storescp-asconfig.cfg")

#: pynetdicom as Storage SCU: C{script PORT CALLING FILE...}.  Proposes
#: each file's SOP class with its own transfer syntax and sends the data set
#: from the file as it is, with the command's UIDs from the file meta
#: information (so a test can make them differ from the data set's).
#: Prints C{NAME 0xSTATUS}, or C{NAME no-context}, per file.
PYNETDICOM_STORE_SCU = """
import os, sys, warnings
warnings.simplefilter("ignore")
from pydicom import dcmread
from pynetdicom import AE, _config
_config.STORE_SEND_CHUNKED_DATASET = True
port, calling, paths = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
ae = AE(ae_title=calling)
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
proposed = set()
for path in paths:
    meta = dcmread(path, stop_before_pixels=True).file_meta
    key = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
    if key not in proposed:
        proposed.add(key)
        ae.add_requested_context(key[0], [key[1]])
assoc = ae.associate("127.0.0.1", port, ae_title="STORESCP")
if not assoc.is_established:
    print("association failed", flush=True)
    sys.exit(2)
for path in paths:
    name = os.path.basename(path)
    try:
        status = assoc.send_c_store(path)
    except ValueError:
        print("%s no-context" % name, flush=True)
        continue
    print("%s 0x%04X" % (name, status.Status) if status else "%s no-response" % name, flush=True)
assoc.release()
"""

#: pynetdicom as Storage SCU offering one presentation context with the
#: three uncompressed transfer syntaxes: C{script PORT FILE}.  Prints the
#: accepted transfer syntax, then the status, or C{no-conversion} when
#: pynetdicom cannot convert the data set to the accepted syntax.
PYNETDICOM_OFFER_UNCOMPRESSED = """
import sys, warnings
warnings.simplefilter("ignore")
from pydicom import dcmread
from pynetdicom import AE
port, path = int(sys.argv[1]), sys.argv[2]
dataset = dcmread(path)
ae = AE(ae_title="PYNETDICOM")
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
ae.add_requested_context(dataset.SOPClassUID, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"])
assoc = ae.associate("127.0.0.1", port, ae_title="STORESCP")
if not assoc.is_established:
    print("association failed", flush=True)
    sys.exit(2)
print("accepted", assoc.accepted_contexts[0].transfer_syntax[0], flush=True)
try:
    status = assoc.send_c_store(dataset)
except ValueError:
    print("no-conversion", flush=True)
else:
    print("0x%04X" % status.Status if status else "no-response", flush=True)
assoc.release()
"""

#: pynetdicom as Query SCU: C{script PORT}.  Prints the status of each
#: C-FIND response.
PYNETDICOM_FIND_SCU = """
import sys
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND
ae = AE(ae_title="FINDSCU")
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
ae.add_requested_context(FIND)
assoc = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title="STORESCP")
if not assoc.is_established:
    print("association failed", flush=True)
    sys.exit(2)
query = Dataset()
query.QueryRetrieveLevel = "STUDY"
query.StudyInstanceUID = ""
for status, identifier in assoc.send_c_find(query, FIND):
    print("0x%04X" % status.Status if status else "no-response", flush=True)
assoc.release()
"""


#: pynetdicom as a requestor proposing an asynchronous operations window:
#: C{script PORT INVOKED}.  Prints the window the acceptor answered, and
#: the status of a C-ECHO.
PYNETDICOM_ASYNC_OPS_SCU = """
import sys
from pynetdicom import AE
from pynetdicom.pdu_primitives import AsynchronousOperationsWindowNegotiation
ae = AE(ae_title="PYNETSCU")
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
ae.add_requested_context("1.2.840.10008.1.1")
window = AsynchronousOperationsWindowNegotiation()
window.maximum_number_operations_invoked = int(sys.argv[2])
window.maximum_number_operations_performed = 1
assoc = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title="STORESCP", ext_neg=[window])
if not assoc.is_established:
    print("association failed", flush=True)
    sys.exit(2)
print("window %d %d" % assoc.acceptor.asynchronous_operations, flush=True)
status = assoc.send_c_echo()
print("0x%04X" % status.Status if status else "no-response", flush=True)
assoc.release()
"""


# -- helpers ------------------------------------------------------------------


@defer.inlineCallbacks
def startStorescp(testCase, *options, output=None, cwd=None, verbose=True):
    """
    Start C{python -m dicomd storescp [-v] -od OUTPUT OPTIONS PORT} on a
    free port, in C{cwd} (a fresh directory by default).

    @return: a L{Deferred} firing with its L{tests.support.ChildProcess},
        with C{outputDirectory} and C{cwd} set.
    """
    output = output or makeDirectory(testCase)
    cwd = cwd or makeDirectory(testCase)
    flags = ["-v"] if verbose else []
    child = yield startPeer(
        testCase,
        lambda port: dicomdArgv("storescp", *flags, "-od", output, *options, str(port)),
        env=pythonEnvironment(),
        cwd=cwd,
        name="dicomd storescp",
        ready=frontDoorListening if verbose and "--inetd" not in options and "-id" not in options else None,
    )
    child.outputDirectory = output
    child.cwd = cwd
    return child


def storescu(server, paths, *options, timeout=30):
    """
    Send files with DCMTK's storescu (verbose) to C{server}.
    """
    return runCommand(
        [dcmtk("storescu"), "-v"] + list(options) + [LOCALHOST, str(server.port)] + list(paths),
        env=dcmtkEnvironment(),
        timeout=timeout,
    )


def echoscu(server, timeout=30):
    """
    One C-ECHO with DCMTK's echoscu to C{server}.
    """
    return runCommand([dcmtk("echoscu"), "-v", LOCALHOST, str(server.port)], env=dcmtkEnvironment(), timeout=timeout)


@defer.inlineCallbacks
def pynetdicomStore(testCase, server, paths, calling="PYNETDICOM"):
    """
    Send files with L{PYNETDICOM_STORE_SCU}.

    @return: a L{Deferred} firing with C{(result, {file name: status})},
        the status a string such as C{"0x0000"} or C{"no-context"}.
    """
    result = yield runPythonScript(testCase, PYNETDICOM_STORE_SCU, str(server.port), calling, *paths)
    statuses = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            statuses[parts[0]] = parts[1]
    return result, statuses


def storedFiles(directory):
    """
    Every file under C{directory}, as sorted relative paths; leftover
    temporary files show up as C{.dicomd-PID-N.part}.
    """
    found = []
    for root, _, files in os.walk(directory):
        for name in files:
            found.append(os.path.relpath(os.path.join(root, name), directory))
    return sorted(found)


def readLines(path):
    """
    The lines of a text file a command appends to; none when it does not
    exist yet.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def dataSetBytes(path):
    """
    The bytes of a Part-10 file after its File Meta Information.
    """
    with open(path, "rb") as f:
        data = f.read()
    assert data[128:132] == b"DICM", path
    (groupLength,) = struct.unpack("<I", data[140:144])
    return data[144 + groupLength :]


def writeObject(directory, name, transferSyntax=ExplicitVRLittleEndian, **attributes):
    """
    Write a small test object (see L{makeDataset}) as C{directory/name}.

    @return: C{(path, dataset)}.
    """
    dataset = makeDataset(rows=16, columns=16, **attributes)
    path = writeFile(os.path.join(directory, name), dataset, transferSyntax)
    return path, dataset


def writeJPEGObject(directory, name, sopClassUID=CT_IMAGE_STORAGE):
    """
    A CT object in JPEG baseline: encapsulated pixel data that no one
    decodes on the way (the network only carries it).
    """
    dataset = makeDataset(rows=8, columns=8, sopClassUID=sopClassUID, pixelData=encapsulate([b"\xff\xd8\xff\xd9" * 8]))
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True
    return writeFile(os.path.join(directory, name), dataset, JPEGBaseline8Bit), dataset


def storedTransferSyntax(path):
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def associateRQBytes(implementationClassUID):
    """
    An A-ASSOCIATE-RQ for Verification, with or without an implementation
    class UID.
    """
    return AAssociateRQ(
        "STORESCP",
        "RAWSCU",
        [PresentationContextRQ(1, "1.2.840.10008.1.1", [IMPLICIT])],
        UserInformation(maximumLength=16384, implementationClassUID=implementationClassUID),
    ).encode()


class _Mixin:
    """
    Assertions the tests share.
    """

    timeout = 60

    def assertSent(self, result, count=1):
        """
        DCMTK's storescu ended well after C{count} successful C-STOREs.
        """
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(result.output.count("Received Store Response (Success)"), count, result.describe())

    def assertFailed(self, result):
        """
        A DCMTK tool ended with an error.
        """
        self.assertNotEqual(result.exitCode, 0, result.describe())


# -- what is accepted ---------------------------------------------------------


class AcceptanceTests(_Mixin, unittest.TestCase):
    """
    Which objects, SOP classes and transfer syntaxes storescp accepts.
    """

    @defer.inlineCallbacks
    def test_storageAndVerification(self):
        """storescu's C-STOREs and echoscu's C-ECHO succeed; files are <MOD>.<UID> with the data set kept bit for bit."""
        files = makeDirectory(self)
        ct, ctData = writeObject(files, "ct.dcm")
        mr, mrData = writeObject(files, "mr.dcm", sopClassUID=MR_IMAGE_STORAGE, modality="MR")
        server = yield startStorescp(self)
        result = yield storescu(server, [ct, mr], "-aet", "MODALITY")
        self.assertSent(result, 2)
        echo = yield echoscu(server)
        self.assertEqual(echo.exitCode, 0, echo.describe())
        self.assertIn("Received Echo Response (Success)", echo.output)
        out = server.outputDirectory
        self.assertEqual(
            storedFiles(out), sorted(["CT." + ctData.SOPInstanceUID, "MR." + mrData.SOPInstanceUID])
        )
        stored = os.path.join(out, "CT." + ctData.SOPInstanceUID)
        self.assertEqual(dataSetBytes(stored), dataSetBytes(ct))
        meta = pydicom.dcmread(stored).file_meta
        self.assertEqual(meta.SourceApplicationEntityTitle.strip(), "MODALITY")
        self.assertEqual(meta.MediaStorageSOPInstanceUID, ctData.SOPInstanceUID)
        self.assertEqual(str(meta.TransferSyntaxUID), EXPLICIT_LITTLE)

    @defer.inlineCallbacks
    def test_promiscuous(self):
        """A private SOP class is refused by default and stored as UNKNOWN.<UID> with --promiscuous."""
        files = makeDirectory(self)
        private, data = writeObject(files, "private.dcm", sopClassUID=PRIVATE_SOP_CLASS)
        plain, promiscuous = yield defer.gatherResults([startStorescp(self), startStorescp(self, "--promiscuous")])
        result, _ = yield pynetdicomStore(self, plain, [private])
        self.assertIn("association failed", result.stdout, result.describe())
        self.assertEqual(storedFiles(plain.outputDirectory), [])
        result, statuses = yield pynetdicomStore(self, promiscuous, [private])
        self.assertEqual(statuses, {"private.dcm": "0x0000"}, result.describe())
        self.assertEqual(storedFiles(promiscuous.outputDirectory), ["UNKNOWN." + data.SOPInstanceUID])

    @defer.inlineCallbacks
    def test_transferSyntaxPreferences(self):
        """+x=, +xe, +xb and +xi choose the accepted syntax, and objects are stored in the syntax they arrived in."""
        files = makeDirectory(self)
        path, data = writeObject(files, "ct.dcm")
        bigEndian, bigData = writeObject(files, "be.dcm", transferSyntax=EXPLICIT_BIG)
        servers = yield defer.gatherResults(
            [startStorescp(self), startStorescp(self, "+xe"), startStorescp(self, "+xb"), startStorescp(self, "+xi")]
        )
        accepted = [EXPLICIT_LITTLE, EXPLICIT_LITTLE, EXPLICIT_BIG, IMPLICIT]
        for server, syntax in zip(servers, accepted):
            result = yield runPythonScript(self, PYNETDICOM_OFFER_UNCOMPRESSED, str(server.port), path)
            lines = result.stdout.splitlines()
            self.assertEqual(lines[0], "accepted " + syntax, result.describe() + server.describe())
            if syntax == EXPLICIT_BIG:
                # pynetdicom cannot write big endian: send such a file.
                self.assertEqual(lines[1:], ["no-conversion"], result.describe())
                result, statuses = yield pynetdicomStore(self, server, [bigEndian])
                self.assertEqual(statuses, {"be.dcm": "0x0000"}, result.describe())
                stored = os.path.join(server.outputDirectory, "CT." + bigData.SOPInstanceUID)
                self.assertEqual(dataSetBytes(stored), dataSetBytes(bigEndian))
            else:
                self.assertEqual(lines[1:], ["0x0000"], result.describe())
                stored = os.path.join(server.outputDirectory, "CT." + data.SOPInstanceUID)
            self.assertEqual(storedTransferSyntax(stored), syntax)

    @defer.inlineCallbacks
    def test_acceptAll(self):
        """A JPEG baseline object is refused by default and accepted and stored as received with +xa."""
        files = makeDirectory(self)
        path, data = writeJPEGObject(files, "jpeg.dcm")
        plain, acceptAll = yield defer.gatherResults([startStorescp(self), startStorescp(self, "--accept-all")])
        result, _ = yield pynetdicomStore(self, plain, [path])
        self.assertIn("association failed", result.stdout, result.describe())
        result, statuses = yield pynetdicomStore(self, acceptAll, [path])
        self.assertEqual(statuses, {"jpeg.dcm": "0x0000"}, result.describe())
        stored = os.path.join(acceptAll.outputDirectory, "CT." + data.SOPInstanceUID)
        self.assertEqual(storedTransferSyntax(stored), JPEGBaseline8Bit)
        self.assertEqual(dataSetBytes(stored), dataSetBytes(path))

    @defer.inlineCallbacks
    def test_configFileProfiles(self):
        """-xf etc/storescp-asconfig.cfg PROFILE accepts exactly the profile's presentation contexts."""
        files = makeDirectory(self)
        jpeg, jpegData = writeJPEGObject(files, "jpeg.dcm")
        ct, ctData = writeObject(files, "ct.dcm")
        dx, _ = writeObject(files, "dx.dcm", sopClassUID=DX_FOR_PRESENTATION, modality="DX")
        default, uncompressed = yield defer.gatherResults(
            [startStorescp(self, "-xf", ASCONFIG, "Default"), startStorescp(self, "-xf", ASCONFIG, "uncom pressed")]
        )
        result, statuses = yield pynetdicomStore(self, default, [jpeg])
        self.assertEqual(statuses, {"jpeg.dcm": "0x0000"}, result.describe())
        self.assertEqual(storedFiles(default.outputDirectory), ["CT." + jpegData.SOPInstanceUID])
        result, statuses = yield pynetdicomStore(self, uncompressed, [jpeg, ct, dx])
        self.assertEqual(
            statuses, {"jpeg.dcm": "no-context", "ct.dcm": "0x0000", "dx.dcm": "no-context"}, result.describe()
        )
        self.assertEqual(storedFiles(uncompressed.outputDirectory), ["CT." + ctData.SOPInstanceUID])

    @defer.inlineCallbacks
    def test_verbosePresentationContexts(self):
        """+v logs each proposed presentation context with its result."""
        files = makeDirectory(self)
        path, _ = writeObject(files, "ct.dcm")
        server = yield startStorescp(self, "+v", verbose=False)
        result, statuses = yield pynetdicomStore(self, server, [path])
        self.assertEqual(statuses, {"ct.dcm": "0x0000"}, result.describe())
        yield server.waitForOutput(r"Context ID:\s+1 \(Accepted\)")
        self.assertIn("Abstract Syntax: =CTImageStorage", server.output)
        self.assertIn("Accepted Transfer Syntax: =ExplicitVRLittleEndian", server.output)


# -- output --------------------------------------------------------------------


class OutputTests(_Mixin, unittest.TestCase):
    """
    Output options: C{--ignore}, and that the re-encoding options reach the
    receiver (their details are tested in C{tests.test_storage_recode}).
    """

    @defer.inlineCallbacks
    def test_ignore(self):
        """--ignore answers success and writes nothing at all."""
        files = makeDirectory(self)
        paths = [writeObject(files, "%d.dcm" % i)[0] for i in range(3)]
        server = yield startStorescp(self, "--ignore")
        result = yield storescu(server, paths)
        self.assertSent(result, 3)
        self.assertEqual(os.listdir(server.outputDirectory), [])

    @defer.inlineCallbacks
    def test_recodingOptionsWired(self):
        """-F stores a bare data set and +xi +te stores explicit VR what arrived implicit VR."""
        files = makeDirectory(self)
        path, data = writeObject(files, "ct.dcm")
        dataSetOnly, explicit = yield defer.gatherResults(
            [startStorescp(self, "-F"), startStorescp(self, "+xi", "+te")]
        )
        for server in (dataSetOnly, explicit):
            result = yield storescu(server, [path])
            self.assertSent(result)
        stored = os.path.join(dataSetOnly.outputDirectory, "CT." + data.SOPInstanceUID)
        with open(stored, "rb") as f:
            head = f.read(132)
        self.assertNotEqual(head[128:132], b"DICM")
        self.assertEqual(pydicom.dcmread(stored, force=True).SOPInstanceUID, data.SOPInstanceUID)
        stored = os.path.join(explicit.outputDirectory, "CT." + data.SOPInstanceUID)
        self.assertEqual(storedTransferSyntax(stored), EXPLICIT_LITTLE)


# -- naming and sorting ---------------------------------------------------------


    @defer.inlineCallbacks
    def test_permissions(self):
        """Under umask 022 the stored file is 0640 and its study directory (-su) is 0750."""
        files = makeDirectory(self)
        path, data = writeObject(files, "ct.dcm")
        self.addCleanup(os.umask, os.umask(0o022))
        server = yield startStorescp(self, "-su", "STUDY")
        result = yield storescu(server, [path])
        self.assertSent(result)
        study = os.path.join(server.outputDirectory, "STUDY_%s" % (data.StudyInstanceUID,))
        expected = {
            os.path.join(study, "CT.%s" % (data.SOPInstanceUID,)): "0640",
            study: "0750",
        }
        self.assertEqual({path: "%04o" % (stat.S_IMODE(os.stat(path).st_mode),) for path in expected}, expected)


class NamingTests(_Mixin, unittest.TestCase):
    """
    File names: C{-uf} (default), C{+uf}, C{-tn}, C{-fe}.
    """

    @defer.inlineCallbacks
    def test_schemes(self):
        """-fe appends to default names, +uf gives <MOD>.X.<new UID>, -tn gives YYYYMMDDHHMMSSmmm.<MOD>."""
        files = makeDirectory(self)
        ct, ctData = writeObject(files, "ct.dcm")
        mr, _ = writeObject(files, "mr.dcm", sopClassUID=MR_IMAGE_STORAGE, modality="MR")
        extension, unique, timeNames = yield defer.gatherResults(
            [
                startStorescp(self, "-fe", ".dcm"),
                startStorescp(self, "+uf", "-fe", ".x"),
                startStorescp(self, "-tn"),
            ]
        )
        for server in (extension, unique, timeNames):
            result = yield storescu(server, [ct, mr])
            self.assertSent(result, 2)
        self.assertEqual(storedFiles(extension.outputDirectory)[0], "CT." + ctData.SOPInstanceUID + ".dcm")
        self.assertEqual(len(storedFiles(extension.outputDirectory)), 2)
        names = storedFiles(unique.outputDirectory)
        self.assertEqual(len(names), 2)
        self.assertRegex(names[0], r"^CT\.X\.[0-9.]+\.x$")
        self.assertRegex(names[1], r"^MR\.X\.[0-9.]+\.x$")
        self.assertNotIn(ctData.SOPInstanceUID, names[0])
        names = storedFiles(timeNames.outputDirectory)
        self.assertEqual(len(names), 2)
        today = datetime.now().strftime("%Y%m%d")
        for name in names:
            self.assertRegex(name, r"^%s\d{9}(_\d{4})?\.(CT|MR)$" % (today,))

    @defer.inlineCallbacks
    def test_timeNameSerials(self):
        """Files written in the same millisecond get -tn's serials: none, then _0000, _0001."""
        # The receiver runs in the test's reactor with a stopped wall clock,
        # so that every file is written "in the same millisecond"; the
        # sender is DCMTK's storescu.
        files = makeDirectory(self)
        paths = [writeObject(files, "%d.dcm" % i)[0] for i in range(3)]
        out = makeDirectory(self)
        when = datetime(2024, 1, 2, 10, 15, 0, 123456)
        receiver = buildReceiver(
            StorageOptions(outputDirectory=out, fileNames=naming.FileNameScheme.TIME), wallClock=lambda: when
        )
        receiver.area.prepare()
        entity = ApplicationEntity(
            "STORESCP",
            storagePolicy(ACCEPTOR_PREFERENCES["+x="]),
            {CEchoRQ.commandField: VerificationSCP(), CStoreRQ.commandField: receiver.scp},
        )
        port, _ = listenInProcess(self, entity)
        result = yield storescu(SimpleNamespace(port=port), paths)
        self.assertSent(result, 3)
        self.assertEqual(
            storedFiles(out),
            ["20240102101500123.CT", "20240102101500123_0000.CT", "20240102101500123_0001.CT"],
        )


class SortingTests(_Mixin, unittest.TestCase):
    """
    Sorting into study directories: C{-ss}, C{-su}, C{-sp}.
    """

    @defer.inlineCallbacks
    def test_sortConcStudies(self):
        """-ss PREFIX puts each study in PREFIX_YYYYMMDD_HHMMSSmmm."""
        files = makeDirectory(self)
        studyA, studyB = generate_uid(), generate_uid()
        paths = [
            writeObject(files, "a1.dcm", studyInstanceUID=studyA)[0],
            writeObject(files, "a2.dcm", studyInstanceUID=studyA)[0],
            writeObject(files, "b1.dcm", studyInstanceUID=studyB)[0],
        ]
        server = yield startStorescp(self, "-ss", "PRE")
        result = yield storescu(server, paths)
        self.assertSent(result, 3)
        directories = sorted(os.listdir(server.outputDirectory))
        self.assertEqual(len(directories), 2)
        byStudy = {}
        for directory in directories:
            self.assertRegex(directory, r"^PRE_\d{8}_\d{9}$")
            names = os.listdir(os.path.join(server.outputDirectory, directory))
            studies = {pydicom.dcmread(os.path.join(server.outputDirectory, directory, name)).StudyInstanceUID for name in names}
            self.assertEqual(len(studies), 1)
            byStudy[studies.pop()] = len(names)
        self.assertEqual(byStudy, {studyA: 2, studyB: 1})

    @defer.inlineCallbacks
    def test_sortOnStudyUID(self):
        """-su PREFIX puts each study in PREFIX_<StudyInstanceUID>."""
        files = makeDirectory(self)
        path, data = writeObject(files, "ct.dcm")
        server = yield startStorescp(self, "-su", "STUDY")
        result = yield storescu(server, [path])
        self.assertSent(result)
        self.assertEqual(
            storedFiles(server.outputDirectory),
            ["STUDY_%s/CT.%s" % (data.StudyInstanceUID, data.SOPInstanceUID)],
        )

    @defer.inlineCallbacks
    def test_sortOnPatientName(self):
        """-sp makes Latin-1 Müller^Jürgen Mueller_Juergen_<time>, and an empty name ANONYMOUS_<time>."""
        files = makeDirectory(self)
        latin, _ = writeObject(files, "latin.dcm", patientName="Müller^Jürgen", characterSet="ISO_IR 100")
        anonymous, _ = writeObject(files, "anonymous.dcm", patientName="")
        server = yield startStorescp(self, "-sp")
        result = yield storescu(server, [latin, anonymous])
        self.assertSent(result, 2)
        directories = sorted(name for name in os.listdir(server.outputDirectory) if not name.startswith("."))
        self.assertEqual(len(directories), 2)
        self.assertRegex(directories[0], r"^ANONYMOUS_\d{8}_\d{9}$")
        self.assertRegex(directories[1], r"^Mueller_Juergen_\d{8}_\d{9}$")


class SanitisingTests(_Mixin, unittest.TestCase):
    """
    Names built from network data never leave the output directory.
    """

    @defer.inlineCallbacks
    def test_hostileInstanceUID(self):
        """pynetdicom sending a SOP Instance UID of ../../x, or 1.2;$(touch PWN3), is refused with 0xC000 (a UID is digits and dots): nothing is stored, inside -od or out of it."""
        base = makeDirectory(self)
        out = os.path.join(base, "a", "b", "out")
        os.makedirs(out)
        files = makeDirectory(self)
        climbing, _ = writeObject(files, "climbing.dcm", sopInstanceUID="../../x")
        shell, _ = writeObject(files, "shell.dcm", sopInstanceUID="1.2;$(touch PWN3)")
        server = yield startStorescp(self, output=out)
        result, statuses = yield pynetdicomStore(self, server, [climbing, shell])
        self.assertEqual(statuses, {"climbing.dcm": "0xC000", "shell.dcm": "0xC000"}, result.describe() + server.describe())
        self.assertEqual(storedFiles(base), [])

    @defer.inlineCallbacks
    def test_hostileStudyDirectories(self):
        """Patient names .. and ../.. with -sp stay inside -od; a Study Instance UID of .. with -su '' is refused with 0xC000."""
        base = makeDirectory(self)
        files = makeDirectory(self)
        dots, _ = writeObject(files, "dots.dcm", patientName="..")
        up, _ = writeObject(files, "up.dcm", patientName="../..")
        study, _ = writeObject(files, "study.dcm", studyInstanceUID="..")
        byName = os.path.join(base, "x", "name")
        byStudy = os.path.join(base, "y", "study")
        os.makedirs(byName)
        os.makedirs(byStudy)
        sortedByName, sortedByStudy = yield defer.gatherResults(
            [startStorescp(self, "-sp", output=byName), startStorescp(self, "-su", "", output=byStudy)]
        )
        result, statuses = yield pynetdicomStore(self, sortedByName, [dots, up])
        self.assertEqual(statuses, {"dots.dcm": "0x0000", "up.dcm": "0x0000"}, result.describe())
        result, statuses = yield pynetdicomStore(self, sortedByStudy, [study])
        self.assertEqual(statuses, {"study.dcm": "0xC000"}, result.describe())
        names = storedFiles(byName)
        self.assertEqual(len(names), 2)
        for name in names:
            self.assertRegex(name, r"^_+_\d{8}_\d{9}/CT\.[0-9.]+$")
        self.assertEqual(storedFiles(byStudy), [])
        self.assertEqual(sorted(storedFiles(base)), sorted(["x/name/" + name for name in names]))


    @defer.inlineCallbacks
    def test_symbolicLinkOutOfTheArea(self):
        """
        A symbolic link planted where -su puts the study leads out of -od: DCMTK's storescu's C-STORE fails (0xA700),
        the log names the link and where it leads, and nothing is written there or kept in -od.
        """
        files = makeDirectory(self)
        path, data = writeObject(files, "ct.dcm")
        outside = makeDirectory(self)
        output = makeDirectory(self)
        link = os.path.join(output, "STUDY_%s" % (data.StudyInstanceUID,))
        os.symlink(outside, link)
        server = yield startStorescp(self, "-su", "STUDY", output=output)
        result = yield storescu(server, [path])
        self.assertIn("Received Store Response (Refused: OutOfResources)", result.output, result.describe())
        self.assertNotIn("(Success)", result.output, result.describe())
        yield server.waitForOutput(
            r"C-STORE of %s from STORESCU failed \(0xA700 .*\): %s leads out of the storage area, to %s$"
            % (re.escape(data.SOPInstanceUID), re.escape(link), re.escape(outside))
        )
        self.assertEqual(os.listdir(outside), [])
        self.assertEqual(storedFiles(output), [])


# -- nothing but the received objects in -od -----------------------------------------


class OutputDirectoryContentsTests(_Mixin, unittest.TestCase):
    """
    C{dicomd storescp -od DIR} leaves in DIR the received objects and the
    study folders, nothing else, hidden entries included: temporary files
    are unnamed (or removed at the next start), and the end-of-study
    journal is in the state directory (docs/storage.md).
    """

    @defer.inlineCallbacks
    def test_onlyReceivedObjects(self):
        """
        Flat, with -xcr and -xcs: while running, while the end-of-study command runs and after a stop, -od holds
        the received files alone; the state directory is left empty.
        """
        files = makeDirectory(self)
        sources = [writeObject(files, "ct%d.dcm" % (i,))[0] for i in range(3)]
        state = os.path.join(makeDirectory(self), "state")
        log = os.path.join(makeDirectory(self), "events.log")
        server = yield startStorescp(
            self, "--state-directory", state, "-xcr", "echo #f >> %s" % (log,), "-xcs", "ls -A #p > %s.eos" % (log,)
        )
        result = yield storescu(server, sources)
        self.assertSent(result, 3)
        # -xcr's commands run beside the responses, not before them.
        yield waitUntil(lambda: len(readLines(log)) >= 3, timeout=30, message="the -xcr commands of 3 objects")
        expected = sorted(readLines(log))
        self.assertEqual(len(expected), 3)
        self.assertEqual(sorted(os.listdir(server.outputDirectory)), expected)
        yield server.stop()
        self.assertEqual(server.exitCode, 0, server.describe())
        self.assertEqual(sorted(readLines(log + ".eos")), expected)
        self.assertEqual(sorted(os.listdir(server.outputDirectory)), expected)
        self.assertEqual(os.listdir(state), [])

    @defer.inlineCallbacks
    def test_killedRunLeavesNothingButObjects(self):
        """
        Sorted (-su) with -xcs, killed with SIGKILL after DCMTK's storescu stored a study: -od holds the study
        folder and its files alone, the journal is in the state directory (0700, the journal 0600), and the next
        start runs the end-of-study command from it, once, and still leaves -od as it was.
        """
        self.addCleanup(os.umask, os.umask(0o022))
        files = makeDirectory(self)
        study = generate_uid()
        sources = [writeObject(files, "ct%d.dcm" % (i,), studyInstanceUID=study)[0] for i in range(2)]
        state = os.path.join(makeDirectory(self), "state")
        log = os.path.join(makeDirectory(self), "eostudy.log")
        options = ("--state-directory", state, "-su", "", "-tos", "3600", "-xcs", "echo #p >> %s" % (log,))
        server = yield startStorescp(self, *options)
        result = yield storescu(server, sources)
        self.assertSent(result, 2)
        output = server.outputDirectory
        server.signalProcess("KILL")
        yield server.whenEnded()
        self.assertEqual(readLines(log), [])
        self.assertEqual(os.listdir(output), [study])
        self.assertEqual(len(os.listdir(os.path.join(output, study))), 2)
        [journal] = os.listdir(state)
        self.assertRegex(journal, r"^eostudy-[0-9a-f]{32}\.journal$")
        self.assertEqual(stat.S_IMODE(os.stat(state).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(state, journal)).st_mode), 0o600)

        restarted = yield startStorescp(self, *options, output=output)
        yield waitUntil(lambda: readLines(log), timeout=15, message=restarted.describe())
        self.assertEqual(readLines(log), [os.path.join(output, study)])
        self.assertEqual(os.listdir(output), [study])
        yield restarted.stop()
        self.assertEqual(restarted.exitCode, 0, restarted.describe())
        self.assertEqual(readLines(log), [os.path.join(output, study)])
        self.assertEqual(os.listdir(state), [])

    @defer.inlineCallbacks
    def test_startRemovesTemporaryFilesOnly(self):
        """
        The start removes the named temporary files a crash left in -od (where O_TMPFILE is missing), nothing else:
        not a symbolic link of that name, nor the file where it leads, nor names that merely look alike, nor those of
        a process still running (another storescp storing into the same directory).
        """
        outside = makeDirectory(self)
        precious = os.path.join(outside, "precious")
        output = makeDirectory(self)
        dead = deadPID()
        kept = ["CT.1.2.3", ".dicomd-1-x.part", "notes.part", ".dicomd-%d-3.part" % (os.getpid(),)]
        for path in [precious, os.path.join(output, ".dicomd-%s-%d-1.part" % (hostTag(), dead))] + [os.path.join(output, name) for name in kept]:
            with open(path, "w") as f:
                f.write("keep me")
        os.symlink(precious, os.path.join(output, ".dicomd-%d-2.part" % (dead,)))
        yield startStorescp(self, output=output)
        self.assertEqual(sorted(os.listdir(output)), sorted(kept + [".dicomd-%d-2.part" % (dead,)]))
        self.assertEqual(os.listdir(outside), ["precious"])

    @defer.inlineCallbacks
    def test_stateDirectoryCannotBeMade(self):
        """A --state-directory that cannot be made stops storescp with -xcs before it listens, with one line naming it."""
        blocker = os.path.join(makeDirectory(self), "file")
        with open(blocker, "w"):
            pass
        state = os.path.join(blocker, "state")
        output = makeDirectory(self)
        argv = dicomdArgv("storescp", "-od", output, "--state-directory", state, "-xcs", "true", str(freePort()))
        result = yield runCommand(argv, env=pythonEnvironment())
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn("cannot keep the study journal: cannot create the state directory %s: Not a directory" % (state,), result.output)
        self.assertEqual(os.listdir(output), [])


# -- statuses, refusing --------------------------------------------------------------


class StatusTests(_Mixin, unittest.TestCase):
    """
    What storescp answers to objects and requests it cannot take.
    """

    @defer.inlineCallbacks
    def test_dataSetDoesNotMatchCommand(self):
        """A data set whose SOP Instance or Class UID differs from the command's gets 0xA900 and leaves no file."""
        files = makeDirectory(self)
        good, goodData = writeObject(files, "good.dcm")
        instance, _ = writeObject(files, "instance.dcm")
        sopClass, _ = writeObject(files, "class.dcm")
        fromFile = pydicom.dcmread(instance)
        fromFile.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        fromFile.save_as(instance)
        fromFile = pydicom.dcmread(sopClass)
        fromFile.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        fromFile.save_as(sopClass)
        server = yield startStorescp(self)
        result, statuses = yield pynetdicomStore(self, server, [instance, sopClass, good])
        self.assertEqual(
            statuses, {"instance.dcm": "0xA900", "class.dcm": "0xA900", "good.dcm": "0x0000"}, result.describe()
        )
        self.assertEqual(storedFiles(server.outputDirectory), ["CT." + goodData.SOPInstanceUID])

    @defer.inlineCallbacks
    def test_cannotUnderstand(self):
        """A sorted object without Study UID gets 0xC000 and no file; a C-FIND gets 0x0211."""
        files = makeDirectory(self)
        path, dataset = writeObject(files, "nostudy.dcm")
        del dataset.StudyInstanceUID
        writeFile(path, dataset)
        server = yield startStorescp(self, "-ss", "S", "--promiscuous")
        result, statuses = yield pynetdicomStore(self, server, [path])
        self.assertEqual(statuses, {"nostudy.dcm": "0xC000"}, result.describe())
        self.assertEqual(storedFiles(server.outputDirectory), [])
        result = yield runPythonScript(self, PYNETDICOM_FIND_SCU, str(server.port))
        self.assertEqual(result.stdout.split(), ["0x0211"], result.describe())

    @defer.inlineCallbacks
    def test_refuse(self):
        """--refuse rejects every association and nothing is stored."""
        files = makeDirectory(self)
        path, _ = writeObject(files, "ct.dcm")
        server = yield startStorescp(self, "--refuse")
        result = yield storescu(server, [path])
        self.assertFailed(result)
        self.assertIn("Association Rejected", result.output)
        self.assertEqual(storedFiles(server.outputDirectory), [])

    @defer.inlineCallbacks
    def test_reject(self):
        """--reject rejects an A-ASSOCIATE-RQ without implementation class UID and accepts storescu's."""
        files = makeDirectory(self)
        path, _ = writeObject(files, "ct.dcm")
        server = yield startStorescp(self, "--reject")
        without = yield exchangeBytes(server.port, associateRQBytes(None), expect=10)
        self.assertEqual(without.received[:1], b"\x03", without)
        withUID = yield exchangeBytes(server.port, associateRQBytes("1.2.3.4"), expect=6)
        self.assertEqual(withUID.received[:1], b"\x02", withUID)
        result = yield storescu(server, [path])
        self.assertSent(result)


# -- events ----------------------------------------------------------------------


class EventTests(_Mixin, unittest.TestCase):
    """
    C{--exec-on-reception}, C{--exec-on-eostudy}, C{--rename-on-eostudy},
    C{--eostudy-timeout} and C{--exec-sync}.
    """

    @defer.inlineCallbacks
    def test_execOnReceptionPlaceholders(self):
        """-xcr runs per object with #p, #f, #a, #c and #r as expected."""
        files = makeDirectory(self)
        ct, ctData = writeObject(files, "ct.dcm")
        mr, mrData = writeObject(files, "mr.dcm", sopClassUID=MR_IMAGE_STORAGE, modality="MR")
        log = os.path.join(makeDirectory(self), "reception.log")
        server = yield startStorescp(self, "-xcr", "printf '%%s|%%s|%%s|%%s|%%s\\n' #p #f #a #c #r >> %s" % (log,))
        result = yield storescu(server, [ct, mr], "-aet", "MODALITY", "-aec", "ARCHIVE")
        self.assertSent(result, 2)
        yield waitUntil(lambda: len(readLines(log)) >= 2, message=server.describe())
        out = server.outputDirectory
        self.assertEqual(
            sorted(readLines(log)),
            sorted(
                [
                    "%s|CT.%s|MODALITY|ARCHIVE|127.0.0.1" % (out, ctData.SOPInstanceUID),
                    "%s|MR.%s|MODALITY|ARCHIVE|127.0.0.1" % (out, mrData.SOPInstanceUID),
                ]
            ),
        )

    @defer.inlineCallbacks
    def test_endOfStudyTimeout(self):
        """-xcs runs once per study -tos seconds after its last object, with #p the study directory."""
        files = makeDirectory(self)
        studyA, studyB = generate_uid(), generate_uid()
        a = [writeObject(files, "a%d.dcm" % i, studyInstanceUID=studyA)[0] for i in range(2)]
        b = writeObject(files, "b.dcm", studyInstanceUID=studyB)[0]
        log = os.path.join(makeDirectory(self), "eostudy.log")
        server = yield startStorescp(
            self, "-ss", "S", "-tos", "1", "-xcs", "printf '%%s|%%s|%%s|%%s\\n' #p #a #c #r >> %s" % (log,)
        )
        result = yield storescu(server, a, "-aet", "SENDER", "-aec", "ARCHIVE")
        self.assertSent(result, 2)
        yield waitUntil(lambda: readLines(log), timeout=15, message=server.describe())
        [line] = readLines(log)
        directory, calling, called, peer = line.split("|")
        self.assertEqual((calling, called, peer), ("SENDER", "ARCHIVE", "127.0.0.1"))
        self.assertEqual(os.path.dirname(directory), server.outputDirectory)
        self.assertRegex(os.path.basename(directory), r"^S_\d{8}_\d{9}$")
        self.assertEqual(len(os.listdir(directory)), 2)
        result = yield storescu(server, [b], "-aet", "SENDER", "-aec", "ARCHIVE")
        self.assertSent(result)
        yield waitUntil(lambda: len(readLines(log)) >= 2, timeout=15, message=server.describe())
        lines = readLines(log)
        self.assertEqual(len(lines), 2)
        self.assertNotEqual(lines[1].split("|")[0], directory)

    @defer.inlineCallbacks
    def test_endOfStudyOnStudyChangeAndShutdown(self):
        """-xcs runs when the sender changes study, and for the open study at SIGTERM."""
        files = makeDirectory(self)
        studyA, studyB = generate_uid(), generate_uid()
        paths = [
            writeObject(files, "a1.dcm", studyInstanceUID=studyA)[0],
            writeObject(files, "a2.dcm", studyInstanceUID=studyA)[0],
            writeObject(files, "b1.dcm", studyInstanceUID=studyB)[0],
        ]
        log = os.path.join(makeDirectory(self), "eostudy.log")
        server = yield startStorescp(self, "-su", "", "-tos", "600", "-xcs", "echo #p >> %s" % (log,))
        result = yield storescu(server, paths)
        self.assertSent(result, 3)
        yield waitUntil(lambda: readLines(log), timeout=15, message=server.describe())
        self.assertEqual(readLines(log), [os.path.join(server.outputDirectory, studyA)])
        yield server.stop()
        self.assertEqual(server.exitCode, 0, server.describe())
        self.assertEqual(
            readLines(log), [os.path.join(server.outputDirectory, studyA), os.path.join(server.outputDirectory, studyB)]
        )

    @defer.inlineCallbacks
    def test_objectSentAgainCountedOnce(self):
        """
        A study whose object is sent twice ends with a line counting the
        objects received and the files they are, and -rns renames each
        file once.
        """
        files = makeDirectory(self)
        study = generate_uid()
        a = writeObject(files, "a.dcm", studyInstanceUID=study)[0]
        b = writeObject(files, "b.dcm", studyInstanceUID=study)[0]
        server = yield startStorescp(self, "-su", "", "-rns", "-tos", "600")
        result = yield storescu(server, [a, b, a])
        self.assertSent(result, 3)
        yield server.stop()
        self.assertIn("End of study %s (3 objects received, 2 files): " % (study,), server.output)
        self.assertEqual(sorted(os.listdir(os.path.join(server.outputDirectory, study))), ["CT000001", "CT000002"])
        self.assertNotIn("Traceback", server.output)

    @defer.inlineCallbacks
    def test_parallelAssociationsOfOneAETitle(self):
        """Two storescu under one AE title sending two studies at once, interleaved: -xcs runs once per study, not at each switch."""
        files = makeDirectory(self)
        studies = [generate_uid(), generate_uid()]
        batches = [
            [writeObject(files, "%d-%02d.dcm" % (n, i), studyInstanceUID=study)[0] for i in range(40)] for n, study in enumerate(studies)
        ]
        log = os.path.join(makeDirectory(self), "eostudy.log")
        server = yield startStorescp(self, "-su", "", "-tos", "600", "-xcs", "echo #p >> %s" % (log,))
        results = yield defer.gatherResults([storescu(server, batch, "-aet", "PACS", timeout=60) for batch in batches])
        for result in results:
            self.assertSent(result, 40)
        # The first association to close hands its study to the next one
        # of its AE title; the second closing on another study ends it.
        yield waitUntil(lambda: readLines(log), timeout=15, message=server.describe())
        yield server.stop()
        self.assertEqual(sorted(readLines(log)), sorted(os.path.join(server.outputDirectory, study) for study in studies))

    @defer.inlineCallbacks
    def test_renameOnEndOfStudy(self):
        """-rns renames a study's files to <2 chars><6 digits> in arrival order before -xcs runs."""
        files = makeDirectory(self)
        study = generate_uid()
        paths = [
            writeObject(files, "1.dcm", studyInstanceUID=study)[0],
            writeObject(files, "2.dcm", studyInstanceUID=study, sopClassUID=MR_IMAGE_STORAGE, modality="MR")[0],
            writeObject(files, "3.dcm", studyInstanceUID=study)[0],
        ]
        log = os.path.join(makeDirectory(self), "eostudy.log")
        server = yield startStorescp(self, "-ss", "S", "-rns", "-tos", "1", "-xcs", "ls #p >> %s" % (log,))
        result = yield storescu(server, paths)
        self.assertSent(result, 3)
        yield waitUntil(lambda: len(readLines(log)) >= 3, timeout=15, message=server.describe())
        self.assertEqual(readLines(log), ["CT000001", "CT000003", "MR000002"])
        [directory] = [name for name in os.listdir(server.outputDirectory) if not name.startswith(".")]
        stored = os.path.join(server.outputDirectory, directory)
        self.assertEqual(sorted(os.listdir(stored)), ["CT000001", "CT000003", "MR000002"])
        self.assertEqual(pydicom.dcmread(os.path.join(stored, "MR000002")).Modality, "MR")

    @defer.inlineCallbacks
    def test_execSyncHoldsOnlyItsAssociation(self):
        """-xs holds the C-STORE response until -xcr exits while another association's C-ECHO is answered."""
        files = makeDirectory(self)
        path, _ = writeObject(files, "ct.dcm")
        gates = makeDirectory(self)
        started, gate = os.path.join(gates, "started"), os.path.join(gates, "gate")
        server = yield startStorescp(
            self, "-xs", "-xcr", "touch %s; while [ ! -e %s ]; do sleep 0.02; done" % (started, gate)
        )
        sender = spawn(
            self,
            [dcmtk("storescu"), "-v", LOCALHOST, str(server.port), path],
            env=dcmtkEnvironment(),
            name="storescu",
        )
        yield waitUntil(lambda: os.path.exists(started), message=server.describe())
        echo = yield echoscu(server)
        self.assertEqual(echo.exitCode, 0, echo.describe())
        self.assertTrue(sender.running, sender.describe())
        self.assertNotIn("Received Store Response", sender.output)
        with open(gate, "w"):
            pass
        yield sender.whenEnded()
        self.assertSent(sender.result())


class SafetyTests(_Mixin, unittest.TestCase):
    """
    Calling AE titles that try to inject commands, and commands that would
    let them.
    """

    @defer.inlineCallbacks
    def test_injectionThroughAETitles(self):
        """Calling AE titles A$(touch x) and A;touch x reach -xcr and -xcs literally (#a bare, #a in double quotes, $DICOMD_CALLING_AE) and run nothing."""
        files = makeDirectory(self)
        first, _ = writeObject(files, "1.dcm")
        second, _ = writeObject(files, "2.dcm")
        logs = makeDirectory(self)
        reception, eostudy = os.path.join(logs, "reception.log"), os.path.join(logs, "eostudy.log")
        command = "echo #a \"#a\" \"$DICOMD_CALLING_AE\" >> %s"
        server = yield startStorescp(self, "-tos", "1", "-xcr", command % (reception,), "-xcs", command % (eostudy,))
        for title, path in (("A$(touch x)", first), ("A;touch x", second)):
            result = yield storescu(server, [path], "-aet", title)
            self.assertSent(result)
        yield waitUntil(
            lambda: len(readLines(reception)) >= 2 and len(readLines(eostudy)) >= 2, timeout=15, message=server.describe()
        )
        expected = ["A$(touch x) A$(touch x) A$(touch x)", "A;touch x A;touch x A;touch x"]
        self.assertEqual(sorted(readLines(reception)), expected)
        self.assertEqual(sorted(readLines(eostudy)), expected)
        for directory in (server.cwd, server.outputDirectory, logs, files, os.getcwd()):
            self.assertNotIn("x", os.listdir(directory))

    @defer.inlineCallbacks
    def test_nestedCommandLinesRefused(self):
        """-xcr and -xcs with a placeholder that a nested shell would run (sh -c, su -c, ssh) stop storescp before it listens, with one line naming the option and showing the safe form."""
        output = makeDirectory(self)
        for option, template, message in [
            (
                "-xcr",
                "sh -c 'echo nested #a'",
                "--exec-on-reception: placeholder #a inside single quotes would let the network value run as code in a nested shell; "
                "write \"$DICOMD_CALLING_AE\" there instead: sh -c 'echo nested \"$DICOMD_CALLING_AE\"'",
            ),
            (
                "-xcs",
                'su - dicom -c "archive #p"',
                "--exec-on-eostudy: placeholder #p inside double quotes would let the network value run as code in a nested shell; "
                'write \\$DICOMD_PATH there instead: su - dicom -c "archive \\$DICOMD_PATH"',
            ),
            (
                "-xcr",
                "ssh archive 'echo #a >> received.log'",
                "--exec-on-reception: placeholder #a inside single quotes would let the network value run as code on the remote host; "
                "write \"$DICOMD_CALLING_AE\" there instead (ssh passes it with -o SendEnv=DICOMD_CALLING_AE to a server that accepts it): "
                "ssh archive 'echo \"$DICOMD_CALLING_AE\" >> received.log'",
            ),
        ]:
            result = yield runCommand(
                dicomdArgv("storescp", "-od", output, option, template, str(freePort())),
                env=pythonEnvironment(),
                cwd=makeDirectory(self),
            )
            self.assertEqual(result.exitCode, 1, result.describe())
            self.assertEqual(result.stderr.splitlines()[0], "dicomd storescp: " + message, result.describe())
            self.assertNotIn("Traceback", result.output)

    @defer.inlineCallbacks
    def test_nestedCommandLineSafeForm(self):
        """The safe forms, "$DICOMD_CALLING_AE" inside sh -c's command line and #a as its argument, get DCMTK storescu's calling AE title $(touch PWN) as text and run nothing."""
        files = makeDirectory(self)
        path, _ = writeObject(files, "ct.dcm")
        logs = makeDirectory(self)
        log = os.path.join(logs, "nested.log")
        server = yield startStorescp(self, "-xcr", "sh -c 'echo nested \"$DICOMD_CALLING_AE\" \"$1\"' _ #a >> %s" % (log,))
        result = yield storescu(server, [path], "-aet", "$(touch PWN)")
        self.assertSent(result)
        yield waitUntil(lambda: readLines(log), message=server.describe())
        self.assertEqual(readLines(log), ["nested $(touch PWN) $(touch PWN)"])
        for directory in (server.cwd, server.outputDirectory, logs, files, os.getcwd()):
            self.assertNotIn("PWN", os.listdir(directory))


# -- the test options -------------------------------------------------------------


class TestingOptionsTests(_Mixin, unittest.TestCase):
    """
    C{--sleep-after}, C{--sleep-during}, C{--abort-after},
    C{--abort-during}: they affect only their association.
    """

    @defer.inlineCallbacks
    def test_sleepDuringAndAfter(self):
        """While one association sleeps during and after its C-STORE, another's C-ECHO is answered."""
        files = makeDirectory(self)
        path, data = writeObject(files, "ct.dcm")
        server = yield startStorescp(self, "--sleep-during", "3", "--sleep-after", "3")
        sender = spawn(
            self, [dcmtk("storescu"), "-v", LOCALHOST, str(server.port), path], env=dcmtkEnvironment(), name="storescu"
        )
        yield server.waitForOutput(r"Sleeping 3 s during C-STORE")
        echo = yield echoscu(server)
        self.assertEqual(echo.exitCode, 0, echo.describe())
        self.assertTrue(sender.running, sender.describe())
        self.assertNotIn("Received Store Response", sender.output)
        yield server.waitForOutput(r"Sleeping 3 s after C-STORE")
        echo = yield echoscu(server)
        self.assertEqual(echo.exitCode, 0, echo.describe())
        self.assertTrue(sender.running, sender.describe())
        yield sender.whenEnded()
        self.assertSent(sender.result())
        self.assertEqual(storedFiles(server.outputDirectory), ["CT." + data.SOPInstanceUID])

    @defer.inlineCallbacks
    def test_abortAfter(self):
        """--abort-after aborts, leaves no file, runs no -xcr command, and other associations are served."""
        files = makeDirectory(self)
        path, _ = writeObject(files, "ct.dcm")
        log = os.path.join(makeDirectory(self), "reception.log")
        server = yield startStorescp(self, "--abort-after", "-xcr", "echo #f >> %s" % (log,))
        result = yield storescu(server, [path])
        self.assertFailed(result)
        self.assertIn("Peer aborted Association", result.output)
        echo = yield echoscu(server)
        self.assertEqual(echo.exitCode, 0, echo.describe())
        yield waitUntil(lambda: storedFiles(server.outputDirectory) == [], message=server.describe())
        self.assertEqual(readLines(log), [])

    @defer.inlineCallbacks
    def test_abortDuring(self):
        """--abort-during aborts mid data set, leaves no file, and other associations are served."""
        files = makeDirectory(self)
        big = writeFile(os.path.join(files, "big.dcm"), makeDataset(rows=256, columns=256))
        server = yield startStorescp(self, "--abort-during")
        result = yield storescu(server, [big])
        self.assertFailed(result)
        echo = yield echoscu(server)
        self.assertEqual(echo.exitCode, 0, echo.describe())
        yield waitUntil(lambda: storedFiles(server.outputDirectory) == [], message=server.describe())


# -- the front door -----------------------------------------------------------------


class InetdTests(_Mixin, unittest.TestCase):
    """
    C{--inetd}: the one connection inherited on standard input.
    """

    @defer.inlineCallbacks
    def serveInetd(self, streamsAreTheSocket):
        """
        Accept DCMTK's storescu's connection here and hand it to
        C{dicomd storescp --inetd} as standard input (and, like inetd, as
        standard output and error when C{streamsAreTheSocket}).
        """
        files = makeDirectory(self)
        path, data = writeObject(files, "ct.dcm")
        out = makeDirectory(self)
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind((LOCALHOST, 0))
        listener.listen(1)
        listener.setblocking(False)

        sending = storescu(SimpleNamespace(port=listener.getsockname()[1]), [path])
        yield waitUntil(lambda: _readable(listener), message="storescu did not connect")
        connection, _ = listener.accept()
        connection.setblocking(True)
        if streamsAreTheSocket:
            streams = dict(stdout=connection, stderr=connection)
        else:
            streams = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        process = subprocess.Popen(
            dicomdArgv("storescp", "-v", "--inetd", "-od", out),
            stdin=connection,
            env=pythonEnvironment(),
            cwd=makeDirectory(self),
            **streams,
        )
        connection.close()
        self.addCleanup(_kill, process)
        result = yield sending
        yield waitUntil(lambda: process.poll() is not None, message="dicomd storescp --inetd did not exit")
        output = process.stdout.read().decode() if process.stdout else ""
        if process.stdout:
            process.stdout.close()
        self.assertSent(result)
        self.assertEqual(process.returncode, 0, output)
        self.assertEqual(storedFiles(out), ["CT." + data.SOPInstanceUID])
        return output

    @defer.inlineCallbacks
    def test_inetd(self):
        """--inetd stores the object from the inherited connection, logs to stderr and exits afterwards."""
        output = yield self.serveInetd(streamsAreTheSocket=False)
        self.assertIn("released by the peer", output)

    def test_inetdStreamsAreTheSocket(self):
        """--inetd with stdout and stderr on the connection, as inetd passes them, keeps the log out of it."""
        return self.serveInetd(streamsAreTheSocket=True)


def _readable(sock):
    import select

    return bool(select.select([sock], [], [], 0)[0])


def _kill(process):
    if process.poll() is None:
        process.kill()
        process.wait()


class FrontDoorTests(_Mixin, unittest.TestCase):
    """
    The command line itself.
    """

    def storescp(self, *arguments):
        return runCommand(dicomdArgv("storescp", *arguments), env=pythonEnvironment(), cwd=makeDirectory(self))

    @defer.inlineCallbacks
    def test_help(self):
        """-h prints the options grouped as DCMTK's storescp does and exits 0."""
        result = yield self.storescp("-h")
        self.assertEqual(result.exitCode, 0, result.describe())
        groups = [
            "general options:",
            "multi-process options:",
            "network options:",
            "transport layer security (TLS) options:",
            "output options:",
            "event options:",
        ]
        positions = [result.stdout.index(group) for group in groups]
        self.assertEqual(positions, sorted(positions))
        for text in ("-xcr", "--exec-on-reception", "--sort-on-patientname", "+xa", "--accept-all", "usage: dicomd storescp [options] [port]"):
            self.assertIn(text, result.stdout)

    @defer.inlineCallbacks
    def test_badOption(self):
        """An unknown option exits non-zero with a message naming it."""
        result = yield self.storescp("--bogus", "104")
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn("unknown option --bogus", result.stderr)

    @defer.inlineCallbacks
    def test_badValues(self):
        """A bad or missing value exits non-zero with a message naming the option."""
        for arguments, named in [
            (("-pdu", "100", "104"), "--max-pdu"),
            (("-tos", "soon", "-ss", "S", "104"), "--eostudy-timeout"),
            (("104", "-aet"), "-aet"),
            (("-aet", "A" * 17, "104"), "--aetitle"),
            (("-od", "/nonexistent/directory", "104"), "--output-directory"),
            (("-xf", ASCONFIG, "NoSuchProfile", "104"), "--config-file"),
            (("notaport",), "port"),
        ]:
            result = yield self.storescp(*arguments)
            self.assertEqual(result.exitCode, 1, result.describe())
            self.assertIn(named, result.stderr, result.describe())

    @defer.inlineCallbacks
    def test_portInUse(self):
        """A port already in use ends storescp with DCMTK's exit status, 1, and a line saying why."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = yield self.storescp(str(port))
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertRegex(result.stderr, r"F: cannot listen on port %d: .*Address already in use" % (port,))
        self.assertNotIn("Traceback", result.output)

    @defer.inlineCallbacks
    def test_outputDirectoryProblems(self):
        """-od naming a regular file says it is not a directory; one that is missing, that it does not exist; no help hint follows."""
        directory = makeDirectory(self)
        regular = os.path.join(directory, "afile")
        with open(regular, "w") as f:
            f.write("not a directory\n")
        for path, problem in [(regular, "is not a directory"), (os.path.join(directory, "missing"), "does not exist")]:
            result = yield self.storescp("-od", path, "104")
            self.assertEqual(result.exitCode, 1, result.describe())
            self.assertEqual(
                result.stderr.splitlines(),
                ["dicomd storescp: -od (--output-directory) %s: specified output directory %s" % (path, problem)],
                result.describe(),
            )

    @defer.inlineCallbacks
    def test_accessControlRejected(self):
        """+ac is refused with a message saying TCP wrappers are not supported."""
        result = yield self.storescp("+ac", "104")
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn("+ac (--access-control) is not supported: TCP wrapper", result.stderr)

    @defer.inlineCallbacks
    def test_forkAndSingleProcess(self):
        """--fork serves with a worker process per CPU, and --single-process is accepted with an explaining log line."""
        forked, single = yield defer.gatherResults(
            [startStorescp(self, "--fork"), startStorescp(self, "--single-process")]
        )
        yield forked.waitForOutput(r"--fork: \d+ worker processes serve associations")
        yield single.waitForOutput(r"--single-process: dicomd always runs in one process")
        echo = yield echoscu(forked)
        self.assertEqual(echo.exitCode, 0, echo.describe())
        yield forked.waitForOutput(r"worker \d+: Association \S+ -> \S+ from \S+ accepted")

    @defer.inlineCallbacks
    def test_commandFileAndArguments(self):
        """@file is expanded with quoted words kept whole, and --arguments prints the result."""
        directory = makeDirectory(self)
        commands = os.path.join(directory, "options.txt")
        with open(commands, "w") as f:
            f.write('+cc\n  -aet   "MY AE"\n')
        result = yield self.storescp("--arguments", "@" + commands)
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertIn("expanded command line to 4 arguments:\n--arguments +cc -aet MY AE\n", result.stdout)
        self.assertIn("Supported TLS ciphersuites are:", result.stdout)


#: Every option of storescp 3.6.8's manual (../shared/spec/storescp-3.6.8.txt),
#: as (short, long) spellings (C{None} where it has none), with arguments to
#: try it with.
MANUAL_OPTIONS = [
    ("-h", "--help", ()),
    (None, "--version", ()),
    (None, "--arguments", ()),
    ("-q", "--quiet", ()),
    ("-v", "--verbose", ()),
    ("-d", "--debug", ()),
    ("-ll", "--log-level", ("info",)),
    ("-lc", "--log-config", ("logger.cfg",)),
    ("+v", "--verbose-pc", ()),
    (None, "--single-process", ()),
    (None, "--fork", ()),
    ("-xf", "--config-file", (ASCONFIG, "Default")),
    ("+x=", "--prefer-uncompr", ()),
    ("+xe", "--prefer-little", ()),
    ("+xb", "--prefer-big", ()),
    ("+xs", "--prefer-lossless", ()),
    ("+xy", "--prefer-jpeg8", ()),
    ("+xx", "--prefer-jpeg12", ()),
    ("+xv", "--prefer-j2k-lossless", ()),
    ("+xw", "--prefer-j2k-lossy", ()),
    ("+xt", "--prefer-jls-lossless", ()),
    ("+xu", "--prefer-jls-lossy", ()),
    ("+xm", "--prefer-mpeg2", ()),
    ("+xh", "--prefer-mpeg2-high", ()),
    ("+xn", "--prefer-mpeg4", ()),
    ("+xl", "--prefer-mpeg4-bd", ()),
    ("+x2", "--prefer-mpeg4-2-2d", ()),
    ("+x3", "--prefer-mpeg4-2-3d", ()),
    ("+xo", "--prefer-mpeg4-2-st", ()),
    ("+x4", "--prefer-hevc", ()),
    ("+x5", "--prefer-hevc10", ()),
    ("+xr", "--prefer-rle", ()),
    ("+xd", "--prefer-deflated", ()),
    ("+xi", "--implicit", ()),
    ("+xa", "--accept-all", ()),
    ("-ac", "--access-full", ()),
    ("+ac", "--access-control", ()),
    ("-id", "--inetd", ()),
    ("-ts", "--socket-timeout", ("30",)),
    ("-ta", "--acse-timeout", ("30",)),
    ("-td", "--dimse-timeout", ("30",)),
    ("-aet", "--aetitle", ("ARCHIVE",)),
    ("-pdu", "--max-pdu", ("32768",)),
    ("-dhl", "--disable-host-lookup", ()),
    (None, "--refuse", ()),
    (None, "--reject", ()),
    (None, "--ignore", ()),
    (None, "--sleep-after", ("1",)),
    (None, "--sleep-during", ("1",)),
    (None, "--abort-after", ()),
    (None, "--abort-during", ()),
    ("-pm", "--promiscuous", ()),
    ("-up", "--uid-padding", ()),
    ("-tls", "--disable-tls", ()),
    ("+tls", "--enable-tls", ("key.pem", "cert.pem")),
    ("+ps", "--std-passwd", ()),
    ("+pw", "--use-passwd", ("secret",)),
    ("-pw", "--null-passwd", ()),
    ("-pem", "--pem-keys", ()),
    ("-der", "--der-keys", ()),
    ("+cf", "--add-cert-file", ("ca.pem",)),
    ("+cd", "--add-cert-dir", ("certs",)),
    ("+crl", "--add-crl-file", ("crl.pem",)),
    ("+crv", "--enable-crl-vfy", ()),
    ("+cra", "--enable-crl-all", ()),
    ("+py", "--profile-bcp195-nd", ()),
    ("+px", "--profile-bcp195", ()),
    ("+pz", "--profile-bcp195-ex", ()),
    ("+pb", "--profile-basic", ()),
    ("+pa", "--profile-aes", ()),
    ("+pn", "--profile-null", ()),
    ("+cc", "--list-ciphers", ()),
    ("+cs", "--cipher", ("ECDHE-RSA-AES128-GCM-SHA256",)),
    ("+dp", "--dhparam", ("dh.pem",)),
    ("+rs", "--seed", ("seed",)),
    ("+ws", "--write-seed", ()),
    ("+wf", "--write-seed-file", ("seed",)),
    ("-rc", "--require-peer-cert", ()),
    ("-vc", "--verify-peer-cert", ()),
    ("-ic", "--ignore-peer-cert", ()),
    ("-od", "--output-directory", (".",)),
    ("-B", "--normal", ()),
    ("+B", "--bit-preserving", ()),
    ("+F", "--write-file", ()),
    ("-F", "--write-dataset", ()),
    ("+t=", "--write-xfer-same", ()),
    ("+te", "--write-xfer-little", ()),
    ("+tb", "--write-xfer-big", ()),
    ("+ti", "--write-xfer-implicit", ()),
    ("+td", "--write-xfer-deflated", ()),
    ("+u", "--enable-new-vr", ()),
    ("-u", "--disable-new-vr", ()),
    ("+g=", "--group-length-recalc", ()),
    ("+g", "--group-length-create", ()),
    ("-g", "--group-length-remove", ()),
    ("+e", "--length-explicit", ()),
    ("-e", "--length-undefined", ()),
    ("-p", "--padding-off", ()),
    ("+p", "--padding-create", ("8", "4")),
    ("-uc", "--retain-un", ()),
    ("+uc", "--convert-un", ()),
    ("+cl", "--compression-level", ("9",)),
    ("-ss", "--sort-conc-studies", ("PRE",)),
    ("-su", "--sort-on-study-uid", ("PRE",)),
    ("-sp", "--sort-on-patientname", ()),
    ("-uf", "--default-filenames", ()),
    ("+uf", "--unique-filenames", ()),
    ("-tn", "--timenames", ()),
    ("-fe", "--filename-extension", (".dcm",)),
    ("-xcr", "--exec-on-reception", ("true",)),
    ("-xcs", "--exec-on-eostudy", ("true",)),
    ("-rns", "--rename-on-eostudy", ()),
    ("-tos", "--eostudy-timeout", ("5",)),
    ("-xs", "--exec-sync", ()),
]


class DebugLevelTests(_Mixin, unittest.TestCase):
    """
    What C{-d} shows beyond C{-v}: the association negotiation as it went
    over the wire, each PDU, and each DIMSE message with its command
    fields; never the data set.
    """

    #: What a debug log holds for one C-STORE from DCMTK's storescu and one
    #: C-ECHO from its echoscu (C{D:} lines, as DCMTK writes them).
    STORE_DEBUG = [
        r"D: PDU from 127\.0\.0\.1:\d+: A-ASSOCIATE-RQ \(PDU length \d+\)\nD:   Calling AE title: MODALITY\nD:   Called AE title: ANY-SCP\n"
        r"D:   Protocol version: 1\nD:   Application context name: 1\.2\.840\.10008\.3\.1\.1\.1 \(DICOM Application Context Name\)\n",
        r"\nD:   Presentation context \d+\nD:     Abstract syntax: 1\.2\.840\.10008\.5\.1\.4\.1\.1\.2 \(CT Image Storage\)\n"
        r"D:     Transfer syntax: 1\.2\.840\.10008\.1\.2\.1 \(Explicit VR Little Endian\)\n",
        r"\nD:   User information:\nD:     Maximum length: 16384\nD:     Implementation class UID: 1\.2\.276\.0\.7230010\.3\.[0-9.]+\n"
        r"D:     Implementation version name: OFFIS_DCMTK_\d+\n",
        r"\nD: PDU to 127\.0\.0\.1:\d+: A-ASSOCIATE-AC \(PDU length \d+\)\n",
        r"\nD:   Presentation context \d+: acceptance\nD:     Abstract syntax: 1\.2\.840\.10008\.5\.1\.4\.1\.1\.2 \(CT Image Storage\)\n"
        r"D:     Transfer syntax: 1\.2\.840\.10008\.1\.2\.1 \(Explicit VR Little Endian\)\n",
        r"\nD: PDU from 127\.0\.0\.1:\d+: P-DATA-TF \(PDU length \d+\): command fragment \(last\), context \d+, \d+ bytes\n",
        r"\nD: DIMSE from MODALITY on presentation context \d+: C-STORE-RQ\n"
        r"D:   Affected SOP Class UID: 1\.2\.840\.10008\.5\.1\.4\.1\.1\.2 \(CT Image Storage\)\nD:   Message ID: 1\nD:   Priority: medium\n"
        r"D:   Affected SOP Instance UID: {uid}\nD:   Data Set: present\n",
        r"\nD: PDU from 127\.0\.0\.1:\d+: P-DATA-TF \(PDU length \d+\): data set fragment \(last\), context \d+, \d+ bytes\n",
        r"\nD: DIMSE to MODALITY on presentation context \d+: C-STORE-RSP\n"
        r"D:   Affected SOP Class UID: 1\.2\.840\.10008\.5\.1\.4\.1\.1\.2 \(CT Image Storage\)\nD:   Message ID Being Responded To: 1\n"
        r"D:   Status: 0x0000 Success\nD:   Affected SOP Instance UID: {uid}\nD:   Data Set: none\n",
        r"\nD: PDU from 127\.0\.0\.1:\d+: A-RELEASE-RQ \(PDU length 4\)\nD: PDU to 127\.0\.0\.1:\d+: A-RELEASE-RP \(PDU length 4\)\n",
        r"\nD: DIMSE from ECHOSCU on presentation context 1: C-ECHO-RQ\n"
        r"D:   Affected SOP Class UID: 1\.2\.840\.10008\.1\.1 \(Verification SOP Class\)\nD:   Message ID: 1\nD:   Data Set: none\n",
        r"\nD: DIMSE to ECHOSCU on presentation context 1: C-ECHO-RSP\n"
        r"D:   Affected SOP Class UID: 1\.2\.840\.10008\.1\.1 \(Verification SOP Class\)\nD:   Message ID Being Responded To: 1\n"
        r"D:   Status: 0x0000 Success\nD:   Data Set: none\n",
    ]

    @defer.inlineCallbacks
    def storeAndEcho(self, server, path):
        """
        One C-STORE with DCMTK's storescu, one C-ECHO with its echoscu, and
        wait for the server to log the end of both associations.
        """
        result = yield storescu(server, [path], "-aet", "MODALITY")
        self.assertSent(result)
        result = yield echoscu(server)
        self.assertEqual(result.exitCode, 0, result.describe())
        yield server.waitForOutput(r"Association ECHOSCU -> \S+ from \S+ released")

    @defer.inlineCallbacks
    def test_debugAndVerbose(self):
        """storescp -d logs the A-ASSOCIATE-RQ as received, the A-ASSOCIATE-AC sent, each PDU and each DIMSE message's command fields, which -v does not show; neither shows the data set."""
        path, dataset = writeObject(makeDirectory(self), "ct.dcm", patientName="Secret^Patient")
        debug = yield startStorescp(self, "-d", verbose=False)
        verbose = yield startStorescp(self)
        for server in (debug, verbose):
            yield self.storeAndEcho(server, path)
        uid = str(dataset.SOPInstanceUID).replace(".", r"\.")
        for pattern in self.STORE_DEBUG:
            self.assertRegex(debug.output, pattern.replace("{uid}", uid))
        self.assertNotIn("D: ", verbose.output)
        for text in ("A-ASSOCIATE-RQ", "Calling AE title", "C-STORE-RQ", "Message ID", "P-DATA-TF"):
            self.assertNotIn(text, verbose.output)
        for server in (debug, verbose):
            self.assertIn("I: Association MODALITY -> ANY-SCP from 127.0.0.1:", server.output)
            self.assertNotIn("Secret^Patient", server.output)

    @defer.inlineCallbacks
    def test_twistdDebug(self):
        """twistd dicomd -d logs the negotiation and the DIMSE messages; without it (info, the default) none of that is logged, even by twistd's unfiltered default logger."""
        path, dataset = writeObject(makeDirectory(self), "ct.dcm")
        debug = yield startDaemon(self, "-d", "--output-directory", makeDirectory(self))
        plain = yield startDaemon(self, "--output-directory", makeDirectory(self))
        for server in (debug, plain):
            yield self.storeAndEcho(server, path)
        self.assertRegex(debug.output, r"\[dicomd\.net\.acceptor\.AcceptorProtocol#debug\] PDU from 127\.0\.0\.1:\d+: A-ASSOCIATE-RQ \(PDU length \d+\)\n\t  Calling AE title: MODALITY\n")
        self.assertRegex(
            debug.output,
            r"\[dicomd\.net\.association\.Association#debug\] DIMSE from MODALITY on presentation context \d+: C-STORE-RQ\n"
            r"\t  Affected SOP Class UID: 1\.2\.840\.10008\.5\.1\.4\.1\.1\.2 \(CT Image Storage\)\n\t  Message ID: 1\n",
        )
        self.assertIn("DIMSE to ECHOSCU on presentation context 1: C-ECHO-RSP\n\t  Affected SOP Class UID", debug.output)
        self.assertNotIn("#debug]", plain.output)
        self.assertIn("Association ECHOSCU -> ANY-SCP from 127.0.0.1:", plain.output)


class ManualOptionsTests(unittest.SynchronousTestCase):
    """
    Every option of storescp's manual is either understood or refused
    with a message naming it.
    """

    def test_everyOptionKnown(self):
        """Both spellings of every option of the manual are declared."""
        known = storescp.COMMAND_LINE._byName
        missing = [name for short, long, _ in MANUAL_OPTIONS for name in (short, long) if name and name not in known]
        self.assertEqual(missing, [])

    def test_everyOptionParsesOrIsRefusedByName(self):
        """Every option parses; the unsupported ones are refused by name with a reason."""
        refused = {}
        for short, long, arguments in MANUAL_OPTIONS:
            for name in (short, long):
                if name is None:
                    continue
                values = storescp.COMMAND_LINE.parse([name] + list(arguments) + ["104"])
                if values.get("help") or values.get("version"):
                    continue
                try:
                    storescp.validate(values)
                except UsageError as e:
                    refused[name] = str(e)
        # The TLS options (CRLs, profiles, cipher suites, DH parameters)
        # map onto dicomd.tls; only the seed files are refused.
        unsupported = {
            "-lc", "--log-config", "+ac", "--access-control", "+rs", "--seed", "+ws", "--write-seed", "+wf",
            "--write-seed-file",
        }
        for name in unsupported:
            self.assertIn(name, refused)
            self.assertRegex(refused[name], r"^\S+ \(--[a-z0-9-]+\) is not supported: \w")
        # The rest fail only for missing files or combinations, never as
        # unknown options.
        others = {name: message for name, message in refused.items() if name not in unsupported}
        for name, message in others.items():
            self.assertNotIn("unknown option", message)
        self.assertEqual(
            sorted(others),
            sorted(["-rns", "--rename-on-eostudy", "-tos", "--eostudy-timeout", "+tls", "--enable-tls"]),
            others,
        )


# -- twistd ------------------------------------------------------------------------------


class TwistdStorageTests(_Mixin, unittest.TestCase):
    """
    C{twistd dicomd} takes storescp's storage options for its default AE.
    """

    @defer.inlineCallbacks
    def test_sortingNamingAndReception(self):
        """twistd's --sort-conc-studies, --filename-extension and --exec-on-reception act as storescp's."""
        files = makeDirectory(self)
        path, data = writeObject(files, "ct.dcm")
        out = makeDirectory(self)
        log = os.path.join(makeDirectory(self), "reception.log")
        daemon = yield startDaemon(
            self,
            "--output-directory",
            out,
            "--sort-conc-studies",
            "PRE",
            "--filename-extension",
            ".dcm",
            "--exec-on-reception",
            "echo #p #f #a >> %s" % (log,),
        )
        result = yield storescu(daemon, [path], "-aet", "MODALITY")
        self.assertSent(result)
        yield waitUntil(lambda: readLines(log), message=daemon.describe())
        # The daemon's index lives beside the data, as dot files.
        stored = [name for name in storedFiles(out) if not name.startswith(".")]
        self.assertEqual(len(stored), 1, stored)
        [stored] = stored
        directory, name = os.path.split(stored)
        self.assertRegex(directory, r"^PRE_\d{8}_\d{9}$")
        self.assertEqual(name, "CT.%s.dcm" % (data.SOPInstanceUID,))
        self.assertEqual(readLines(log), ["%s %s MODALITY" % (os.path.join(out, directory), name)])


    @defer.inlineCallbacks
    def test_nestedCommandLineRefused(self):
        """twistd with --exec-on-eostudy running sudo sh -c '... #p ...' stops before it listens, naming the option and showing the safe form, without a traceback."""
        result = yield runCommand(
            twistdArgv(freePort(), "--output-directory", makeDirectory(self), "--exec-on-eostudy", "sudo sh -c 'tar -C #p -cf /backup/study.tar .'"),
            env=pythonEnvironment(),
            cwd=makeDirectory(self),
        )
        self.assertNotEqual(result.exitCode, 0, result.describe())
        self.assertIn(
            ": --exec-on-eostudy: placeholder #p inside single quotes would let the network value run as code in a nested shell; "
            "write \"$DICOMD_PATH\" there instead: sudo sh -c 'tar -C \"$DICOMD_PATH\" -cf /backup/study.tar .'\n",
            result.output,
            result.describe(),
        )
        self.assertNotIn("Traceback", result.output)
        self.assertNotIn("starting up", result.output)


class TwistdOptionsTests(unittest.SynchronousTestCase):
    """
    C{twistd dicomd}'s storage options become the same L{StorageOptions}
    as storescp's.
    """

    def parse(self, *arguments):
        from dicomd.tap import DaemonOptions

        options = DaemonOptions()
        options.parseOptions(list(arguments))
        return options.overrides(options["base"]).entities[0].storage

    def test_defaults(self):
        """twistd sorts by Study UID without prefix, names <MOD>.<UID> and stores as received by default."""
        storage = self.parse()
        self.assertEqual((storage.sortMode, storage.sortPrefix), ("-su", ""))
        self.assertIs(storage.fileNames, naming.FileNameScheme.INSTANCE_UID)
        self.assertIsNone(storage.recode)

    def test_storescpOptions(self):
        """twistd's sorting, naming and action options map to storescp's meanings."""
        storage = self.parse(
            "--sort-on-patientname", "--timenames", "--filename-extension", ".dcm", "--exec-on-reception", "a #f",
            "--exec-on-eostudy", "b #p", "--rename-on-eostudy", "--eostudy-timeout", "30", "--exec-sync", "--ignore",
        )
        self.assertEqual(storage.sortMode, "-sp")
        self.assertIs(storage.fileNames, naming.FileNameScheme.TIME)
        self.assertEqual(
            (storage.extension, storage.execOnReception, storage.execOnEndOfStudy, storage.endOfStudyTimeout),
            (".dcm", "a #f", "b #p", 30.0),
        )
        self.assertTrue(storage.renameOnEndOfStudy and storage.execSync and storage.ignore)
        self.assertEqual(self.parse("--sort-conc-studies", "P").sortMode, "-ss")
        self.assertIs(self.parse("--unique-filenames").fileNames, naming.FileNameScheme.UNIQUE)
        self.assertIsNone(self.parse("--flat").sortMode)

    def test_unsafeCommands(self):
        """--exec-on-reception and --exec-on-eostudy with a placeholder a nested shell would run are usage errors naming the option."""
        from twisted.python.usage import UsageError as TwistdUsageError

        for option, template in [("--exec-on-reception", 'bash -c "echo #a"'), ("--exec-on-eostudy", "eval echo #p")]:
            with self.assertRaises(TwistdUsageError) as caught:
                self.parse(option, template)
            self.assertTrue(str(caught.exception).startswith(option + ": placeholder "), str(caught.exception))
        self.assertEqual(self.parse("--exec-on-reception", "sh -c 'echo \"$1\"' _ #a").execOnReception, "sh -c 'echo \"$1\"' _ #a")

    def test_recodingOptions(self):
        """twistd's re-encoding options make a recoder; conflicting or impossible ones are usage errors."""
        from twisted.python.usage import UsageError as TwistdUsageError

        self.assertIsNotNone(self.parse("--write-dataset", "--write-xfer-implicit", "--padding-create", "8,4").recode)
        with self.assertRaises(TwistdUsageError) as caught:
            self.parse("--write-xfer-big", "--write-xfer-little")
        self.assertIn("choose one of --write-xfer-little and --write-xfer-big", str(caught.exception))
        with self.assertRaises(TwistdUsageError) as caught:
            self.parse("--padding-create", "3,4")
        self.assertIn("+p", str(caught.exception))
        with self.assertRaises(TwistdUsageError):
            self.parse("--sort-conc-studies", "P", "--flat")
        with self.assertRaises(TwistdUsageError):
            self.parse("--flat", "--rename-on-eostudy")


class AsynchronousOperationsTests(_Mixin, unittest.TestCase):
    """
    storescp grants a requestor's asynchronous operations window (PS3.7
    D.3.3.3) up to C{--max-async-ops} (16 by default), and stores what
    arrives under it.
    """

    @defer.inlineCallbacks
    def test_dicomdStorescuWindow(self):
        """
        C{dicomd storescu --async-ops 8} gets its window of 8, and every
        object is stored.
        """
        files = makeDirectory(self)
        paths = [writeObject(files, "%d.dcm" % (index,))[0] for index in range(20)]
        server = yield startStorescp(self)
        result = yield runCommand(
            dicomdArgv("storescu", "-v", "--async-ops", "8", LOCALHOST, str(server.port), *paths), env=pythonEnvironment(), timeout=60
        )
        self.assertEqual(result.exitCode, 0, result.describe() + server.describe())
        self.assertIn("Asynchronous operations window: 8 C-STOREs", result.output)
        self.assertEqual(len(storedFiles(server.outputDirectory)), 20)

    @defer.inlineCallbacks
    def test_pynetdicomUnlimitedCut(self):
        """
        pynetdicom proposing an unlimited window (0) gets the limit.
        """
        server = yield startStorescp(self, "--max-async-ops", "4")
        result = yield runPythonScript(self, PYNETDICOM_ASYNC_OPS_SCU, str(server.port), "0")
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(result.stdout.split(), ["window", "4", "1", "0x0000"])

    @defer.inlineCallbacks
    def test_limitOneGrantsNone(self):
        """
        C{--max-async-ops 1} answers a proposed window with 1: one
        operation at a time.
        """
        server = yield startStorescp(self, "--max-async-ops", "1")
        result = yield runPythonScript(self, PYNETDICOM_ASYNC_OPS_SCU, str(server.port), "8")
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(result.stdout.split(), ["window", "1", "1", "0x0000"])
