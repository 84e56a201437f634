"""
C{dicomd storescu} against real peers, as processes on 127.0.0.1.

C{python -m dicomd storescu} sends to DCMTK's C{storescp} (plain, converting
for a receiver that takes implicit VR only, with small PDUs, directory
trees, refused compressed objects, TLS, negotiation profiles...), to a
pynetdicom storage SCP (refusing or granting an asynchronous operations
window) and to Orthanc; the data sets that arrive are compared with what
was sent, byte for byte or, when converted, element by element.  Memory is
measured too: a 1 GB file goes with bounded memory, and a slow receiver
slows the client's reading instead of filling its memory.  The harness is
L{tests.support}.
"""

import datetime
import os
import re
import struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom import dcmread
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.protocols.policies import WrappingFactory
from twisted.trial import unittest
from twisted.trial.unittest import FailTest

from dicomd.storage.scu import readFileMeta
from tests.dicomfiles import (
    MR_IMAGE_STORAGE,
    MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE,
    makeDataset,
    writeFile,
)
from tests.support import (
    LOCALHOST,
    deferLater,
    dicomdArgv,
    freePort,
    makeDirectory,
    pythonEnvironment,
    runCommand,
    runPythonScript,
    spawn,
    startDCMTKServer,
    startPythonScript,
)
from tests.test_forwarding import ORTHANC, startOrthanc, waitForOrthanc
from tests.test_storage_scu import dataSetBytes, makeJPEGFile

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"

#: The peak RSS growth a transfer of any size may cost the client.
MEMORY_BOUND = 64 << 20

#: pynetdicom as storage SCP: C{script PORT DIRECTORY STATUS [WINDOW]}.
#: Writes each received data set, as the bytes that arrived, to
#: C{DIRECTORY/UID.raw} and its transfer syntax to C{UID.ts}; answers every
#: C-STORE with C{STATUS} (hexadecimal); prints a line per C-STORE, per
#: user identity request and per proposed asynchronous operations window,
#: which it refuses (pynetdicom's answer) or, given C{WINDOW}, grants up
#: to that.
PYNETDICOM_STORAGE_SCP = """
import os, sys, threading
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

port, directory, status = int(sys.argv[1]), sys.argv[2], int(sys.argv[3], 16)
lock = threading.Lock()

def say(text):
    with lock:
        print(text, flush=True)

def onStore(event):
    request = event.request
    name = os.path.join(directory, request.AffectedSOPInstanceUID)
    with open(name + ".raw", "wb") as f:
        f.write(request.DataSet.getvalue())
    with open(name + ".ts", "w") as f:
        f.write(str(event.context.transfer_syntax))
    say("C-STORE %s from %s on association %d" % (request.AffectedSOPInstanceUID, event.assoc.requestor.ae_title, id(event.assoc)))
    return status

def onUserIdentity(event):
    secondary = event.secondary_field.decode() if event.secondary_field else ""
    say("user identity type %d: %s %s" % (event.user_id_type, event.primary_field.decode(), secondary))
    return True, b"welcome"

def onAsyncOps(event):
    say("asynchronous operations window proposed: %d invoked, %d performed" % (event.nr_invoked, event.nr_performed))
    return event.nr_invoked, event.nr_performed

ae = AE(ae_title="PYNETSCP")
ae.maximum_associations = 10
for sopClass in (CTImageStorage, MRImageStorage):
    ae.add_supported_context(sopClass, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"])
handlers = [(evt.EVT_C_STORE, onStore), (evt.EVT_USER_ID, onUserIdentity), (evt.EVT_ASYNC_OPS, onAsyncOps)]
if len(sys.argv) > 4:
    # pynetdicom answers every proposed window with 1 (none); granting
    # one, as ASYNC_GRANTED asks, takes replacing its answer.  Its DIMSE
    # provider queues the requests that arrive early and serves them in
    # order, which is all a window needs of the peer.
    from pynetdicom import acse
    from pynetdicom.pdu_primitives import AsynchronousOperationsWindowNegotiation
    granted = int(sys.argv[4])
    answer = acse.ACSE._check_async_ops

    def grant(self):
        item = answer(self)
        item.maximum_number_operations_invoked = min(granted, self.requestor.asynchronous_operations[0] or granted)
        return item

    acse.ACSE._check_async_ops = grant
ae.start_server(("127.0.0.1", port), block=True, evt_handlers=handlers)
"""


def makeFiles(directory: str, count: int, prefix: str = "image", **kwargs) -> list:
    """
    Write C{count} small images into C{directory}.

    @return: their paths.
    """
    return [
        writeFile(os.path.join(directory, "%s%d.dcm" % (prefix, index)), makeDataset(rows=32, columns=32, **kwargs))
        for index in range(count)
    ]


def writeLargeFile(path: str, pixelBytes: int) -> str:
    """
    Write a multi-frame image whose pixel data is C{pixelBytes} of zeros,
    as a hole in a sparse file: a gigabyte takes no time and no disk.
    """
    frameBytes = 512 * 512 * 2
    frames = pixelBytes // frameBytes
    dataset = makeDataset(rows=512, columns=512, frames=frames, sopClassUID=MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE, pixelData=b"")
    del dataset.PixelData
    writeFile(path, dataset)
    with open(path, "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, frames * frameBytes))
        f.truncate(f.tell() + frames * frameBytes)
    return path


def receivedFiles(directory: str) -> dict:
    """
    The Part-10 files a receiver wrote into C{directory}, by SOP instance
    UID.
    """
    files = {}
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            files[readFileMeta(path).sopInstanceUID] = path
    return files


def storescu(*arguments, timeout=60, env=None):
    """
    Run C{python -m dicomd storescu} to its end.
    """
    return runCommand(dicomdArgv("storescu", *arguments), env=env or pythonEnvironment(), timeout=timeout)


def startStorescp(testCase, *options):
    """
    Start DCMTK's storescp storing into a fresh directory.

    @return: a L{Deferred} firing with C{(process, directory)}.
    """
    directory = makeDirectory(testCase)
    return startDCMTKServer(testCase, "storescp", "-od", directory, *options).addCallback(lambda process: (process, directory))


def makeCertificates(directory: str, prefix: str = "") -> dict:
    """
    A throwaway CA and a server and a client key and certificate signed by
    it, as PEM files in C{directory}.

    @return: C{{"ca": path, "server.key": path, "server.pem": path, ...}}.
    """
    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, publicKey, issuer, signingKey, isCA):
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(publicKey)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=isCA, path_length=None), critical=True)
            .sign(signingKey, hashes.SHA256())
        )

    def write(name, data):
        path = os.path.join(directory, prefix + name)
        with open(path, "wb") as f:
            f.write(data)
        paths[name] = path

    paths = {}
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = prefix + "test CA"
    write("ca.pem", certificate(caName, caKey.public_key(), caName, caKey, True).public_bytes(serialization.Encoding.PEM))
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        write(
            role + ".key",
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()),
        )
        write(role + ".pem", certificate(role, key.public_key(), caName, caKey, False).public_bytes(serialization.Encoding.PEM))
    return paths


#: C{dicomd} run in-process (C{script COMMAND ARGS...}), saying how it exited
#: and how many objects it froze for the exit.
FROZEN_AT_EXIT = """
import gc, sys
from dicomd.__main__ import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    print("exit status %s, %d objects frozen" % (e.code, gc.get_freeze_count()))
"""


class ComparingTestCase(unittest.TestCase):
    """
    Assertions comparing what was sent with what arrived.
    """

    timeout = 120

    def assertSentUnchanged(self, sent, directory):
        """
        Every file in C{sent} arrived in C{directory} with the very same
        data set bytes, and nothing else arrived.
        """
        received = receivedFiles(directory)
        self.assertEqual(sorted(received), sorted(readFileMeta(path).sopInstanceUID for path in sent))
        for path in sent:
            self.assertEqual(dataSetBytes(received[readFileMeta(path).sopInstanceUID]), dataSetBytes(path), path)

    def assertSameDataSet(self, received, sent):
        """
        Two pydicom data sets have the same elements with the same values,
        pixel data included, whatever their encodings.
        """
        self.assertEqual([element.tag for element in received], [element.tag for element in sent])
        for element in sent:
            self.assertEqual(received[element.tag].value, element.value, element)
        self.assertEqual(received.PixelData, sent.PixelData)

    def assertSucceeded(self, result, *peers):
        self.assertEqual(result.exitCode, 0, result.describe() + "".join(peer.describe() for peer in peers))


class DCMTKStorescpTests(ComparingTestCase):
    """
    C{dicomd storescu} sends to DCMTK's storescp.
    """

    @defer.inlineCallbacks
    def test_plain(self):
        """
        CT and MR images arrive with the same data set bytes, and the run
        ends with a summary.
        """
        storescp, received = yield startStorescp(self, "-v")
        sent = makeFiles(makeDirectory(self), 3) + makeFiles(makeDirectory(self), 2, sopClassUID=MR_IMAGE_STORAGE, modality="MR")
        result = yield storescu("-v", LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        self.assertIn("5 sent (0 with warnings), 0 failed", result.stderr)
        self.assertEqual(len(re.findall(r"I: Sent .*: 0x0000 Success", result.stderr)), 5, result.describe())
        yield storescp.waitForOutput("Association Release")
        self.assertSentUnchanged(sent, received)

    @defer.inlineCallbacks
    def test_asynchronousOperationsIgnored(self):
        """
        storescp leaves a proposed asynchronous operations window out of
        its answer: the files go one at a time, and all arrive.
        """
        storescp, received = yield startStorescp(self)
        sent = makeFiles(makeDirectory(self), 4)
        result = yield storescu("-v", "--async-ops", "8", LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        self.assertIn("Asynchronous operations window: none granted, one C-STORE at a time", result.stderr)
        self.assertSentUnchanged(sent, received)

    @defer.inlineCallbacks
    def test_exitFreezesObjects(self):
        """
        Once the files are sent, the command freezes the objects alive out
        of the interpreter's garbage collections at exit (a fifth of a
        short run's time otherwise).
        """
        storescp, received = yield startStorescp(self, "-v")
        sent = makeFiles(makeDirectory(self), 2)
        result = yield runPythonScript(self, FROZEN_AT_EXIT, "storescu", LOCALHOST, str(storescp.port), *sent)
        self.assertEqual(result.exitCode, 0, result.describe())
        match = re.search(r"exit status (\d+), (\d+) objects frozen", result.stdout)
        self.assertIsNotNone(match, result.describe())
        self.assertEqual(match.group(1), "0")
        self.assertGreater(int(match.group(2)), 10000)
        yield storescp.waitForOutput("Association Release")
        self.assertSentUnchanged(sent, received)

    @defer.inlineCallbacks
    def test_implicitOnly(self):
        """
        A storescp that accepts implicit VR little endian only (C{+xi})
        gets explicit VR files converted: it stores implicit VR files whose
        elements and pixel data are the sent ones.
        """
        storescp, received = yield startStorescp(self, "+xi")
        sent = makeFiles(makeDirectory(self), 2, characterSet="ISO_IR 100", patientName="Müller^Jürgen")
        result = yield storescu("-v", LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        self.assertIn("Converting " + sent[0], result.stderr)
        files = receivedFiles(received)
        self.assertEqual(len(files), 2)
        for path in sent:
            original = dcmread(path)
            stored = dcmread(files[original.SOPInstanceUID])
            self.assertEqual(stored.file_meta.TransferSyntaxUID, IMPLICIT_VR_LITTLE_ENDIAN)
            self.assertSameDataSet(stored, original)

    @defer.inlineCallbacks
    def test_smallPDU(self):
        """
        With storescp's C{-pdu 4096} the client sends PDVs of 4090 bytes
        and a 128 KiB image arrives intact.
        """
        storescp, received = yield startStorescp(self, "-pdu", "4096")
        directory = makeDirectory(self)
        sent = [writeFile(os.path.join(directory, "big.dcm"), makeDataset(rows=256, columns=256))]
        result = yield storescu("-v", LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        self.assertIn("Association Accepted (Max Send PDV: 4090)", result.stderr)
        self.assertSentUnchanged(sent, received)

    @defer.inlineCallbacks
    def test_maxSendPDU(self):
        """
        C{--max-send-pdu 8192} limits what we send although storescp
        accepts 16384.
        """
        storescp, received = yield startStorescp(self)
        sent = makeFiles(makeDirectory(self), 1)
        result = yield storescu("-v", "--max-send-pdu", "8192", LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        self.assertIn("Association Accepted (Max Send PDV: 8186)", result.stderr)
        self.assertSentUnchanged(sent, received)

    def makeTree(self):
        """
        A tree: C{top/a.dcm}, C{top/notes.txt}, C{top/sub/b.dcm},
        C{top/sub/deeper/c.dcm}, C{top/sub/other.img} (an image too).
        """
        top = makeDirectory(self)
        os.makedirs(os.path.join(top, "sub", "deeper"))
        paths = {}
        for name in ("a.dcm", "sub/b.dcm", "sub/deeper/c.dcm", "sub/other.img"):
            paths[name] = writeFile(os.path.join(top, name), makeDataset(rows=16, columns=16))
        with open(os.path.join(top, "notes.txt"), "w") as f:
            f.write("not DICOM\n")
        return top, paths

    @defer.inlineCallbacks
    def test_scanRecursive(self):
        """
        C{+sd +r +sp *.dcm} sends the C{.dcm} files of the whole tree and
        nothing else.
        """
        storescp, received = yield startStorescp(self)
        top, paths = self.makeTree()
        result = yield storescu("+sd", "+r", "+sp", "*.dcm", LOCALHOST, str(storescp.port), top)
        self.assertSucceeded(result, storescp)
        self.assertNotIn("notes.txt", result.stderr)
        self.assertSentUnchanged([paths["a.dcm"], paths["sub/b.dcm"], paths["sub/deeper/c.dcm"]], received)

    @defer.inlineCallbacks
    def test_scanTopOnly(self):
        """
        C{+sd} without C{+r} sends the top directory's files only, and
        skips its text file with a warning.
        """
        storescp, received = yield startStorescp(self)
        top, paths = self.makeTree()
        result = yield storescu("+sd", LOCALHOST, str(storescp.port), top)
        self.assertSucceeded(result, storescp)
        self.assertRegex(result.stderr, r"W: .*notes\.txt is not a DICOM file or data set.*ignoring file")
        self.assertSentUnchanged([paths["a.dcm"]], received)

    @defer.inlineCallbacks
    def test_directoryWithoutScan(self):
        """
        A directory without C{+sd} is ignored with storescu's warning; with
        nothing else to send the exit status is 21.
        """
        storescp, received = yield startStorescp(self)
        top, _ = self.makeTree()
        result = yield storescu(LOCALHOST, str(storescp.port), top)
        self.assertEqual(result.exitCode, 21, result.describe())
        self.assertIn("ignoring directory because option --scan-directories is not set: " + top, result.stderr)
        self.assertIn("no input files to be sent", result.stderr)

    @defer.inlineCallbacks
    def test_compressedRefusedNoHalt(self):
        """
        storescp refuses JPEG baseline by default: with C{-nh} that file is
        reported as failed by name, the others go through, and the exit
        status is non-zero.
        """
        storescp, received = yield startStorescp(self)
        directory = makeDirectory(self)
        jpeg = makeJPEGFile(os.path.join(directory, "compressed.dcm"))
        plain = makeFiles(directory, 2)
        result = yield storescu("-nh", LOCALHOST, str(storescp.port), plain[0], jpeg, plain[1])
        self.assertEqual(result.exitCode, 10, result.describe())
        self.assertRegex(result.stderr, r"E: Store Failed, file: %s: no presentation context" % re.escape(jpeg))
        self.assertIn("2 sent (0 with warnings), 1 failed", result.stderr)
        self.assertSentUnchanged(plain, received)

    @defer.inlineCallbacks
    def test_compressedHalts(self):
        """
        Without C{-nh} the refused JPEG file stops the job, as in DCMTK:
        the files after it are not sent.
        """
        storescp, received = yield startStorescp(self)
        directory = makeDirectory(self)
        plain = makeFiles(directory, 2)
        jpeg = makeJPEGFile(os.path.join(directory, "compressed.dcm"))
        result = yield storescu(LOCALHOST, str(storescp.port), plain[0], jpeg, plain[1])
        self.assertEqual(result.exitCode, 10, result.describe())
        self.assertIn("1 sent (0 with warnings), 1 failed, 1 not sent", result.stderr)
        self.assertSentUnchanged(plain[:1], received)

    @defer.inlineCallbacks
    def test_rejected(self):
        """
        A storescp that refuses every association: a clear error and exit
        status 1, nothing sent.
        """
        storescp, received = yield startStorescp(self, "--refuse")
        result = yield storescu(LOCALHOST, str(storescp.port), *makeFiles(makeDirectory(self), 2))
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertRegex(result.stderr, r"F: Association Rejected: association rejected \(permanent, source: service user")
        self.assertIn("0 sent (0 with warnings), 0 failed, 2 not sent", result.stderr)
        self.assertEqual(receivedFiles(received), {})

    @defer.inlineCallbacks
    def test_nobodyListening(self):
        """
        Nothing listening on the port: a clear error and exit status 1.
        """
        result = yield storescu(LOCALHOST, str(freePort()), *makeFiles(makeDirectory(self), 1))
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertRegex(result.stderr, r"F: Association Request Failed: .*[Cc]onnection refused")

    @defer.inlineCallbacks
    def test_aeTitles(self):
        """
        C{-aet} and C{-aec} reach storescp, which writes our calling AE
        title into the stored file's meta information.
        """
        storescp, received = yield startStorescp(self, "-d")
        sent = makeFiles(makeDirectory(self), 1)
        result = yield storescu("-aet", "OURSCU", "-aec", "ARCHIVE", LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        yield storescp.waitForOutput("Association Release")
        self.assertRegex(storescp.output, r"Calling Application Name:\s+OURSCU")
        self.assertRegex(storescp.output, r"Called Application Name:\s+ARCHIVE")
        [path] = receivedFiles(received).values()
        self.assertEqual(dcmread(path).file_meta.SourceApplicationEntityTitle.strip(), "OURSCU")

    @defer.inlineCallbacks
    def test_repeat(self):
        """
        C{--repeat 3} sends the file three times on one association.
        """
        storescp, received = yield startStorescp(self, "-v")
        sent = makeFiles(makeDirectory(self), 1)
        result = yield storescu("--repeat", "3", "-v", LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        self.assertIn("3 sent (0 with warnings), 0 failed", result.stderr)
        yield storescp.waitForOutput("Association Release")
        self.assertEqual(storescp.output.count("Received Store Request"), 3, storescp.describe())
        self.assertEqual(storescp.output.count("Association Acknowledged"), 1, storescp.describe())
        self.assertSentUnchanged(sent, received)

    @defer.inlineCallbacks
    def test_abort(self):
        """
        C{--abort} ends the association with A-ABORT after the files went.
        """
        storescp, received = yield startStorescp(self, "-v")
        sent = makeFiles(makeDirectory(self), 2)
        result = yield storescu("--abort", LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        yield storescp.waitForOutput("Association Aborted")
        self.assertNotIn("Association Release", storescp.output)
        self.assertSentUnchanged(sent, received)

    @defer.inlineCallbacks
    def test_bareDataSet(self):
        """
        A file holding a data set without meta information is sent (C{+f},
        the default, and C{-f}) with the transfer syntax pydicom detects.
        """
        storescp, received = yield startStorescp(self)
        path = makeFiles(makeDirectory(self), 1)[0]
        bare = path + ".raw"
        with open(bare, "wb") as f:
            f.write(dataSetBytes(path))
        result = yield storescu("-f", LOCALHOST, str(storescp.port), bare)
        self.assertSucceeded(result, storescp)
        [stored] = receivedFiles(received).values()
        self.assertEqual(dataSetBytes(stored), dataSetBytes(path))
        result = yield storescu("+fo", LOCALHOST, str(storescp.port), bare)
        self.assertEqual(result.exitCode, 21, result.describe())
        self.assertIn("has no DICOM file preamble, ignoring file", result.stderr)

    @defer.inlineCallbacks
    def test_configFile(self):
        """
        C{-xf} proposes the profile's contexts (CT in implicit VR only), so
        the files go converted; storescp sees that one context.
        """
        storescp, received = yield startStorescp(self, "-d")
        directory = makeDirectory(self)
        profile = os.path.join(directory, "storescu.cfg")
        with open(profile, "w") as f:
            f.write(
                "[[TransferSyntaxes]]\n[Implicit]\nTransferSyntax1 = LittleEndianImplicit\n"
                "[[PresentationContexts]]\n[CT]\nPresentationContext1 = CTImageStorage\\Implicit\n"
                "[[Profiles]]\n[Just CT]\nPresentationContexts = CT\n"
            )
        sent = makeFiles(directory, 1)
        result = yield storescu("-xf", profile, "Just CT", LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        yield storescp.waitForOutput("Association Release")
        self.assertRegex(storescp.output, r"Context ID:\s+1 \(Proposed\)\s+D:\s+Abstract Syntax:\s+=CTImageStorage")
        self.assertNotRegex(storescp.output, r"Context ID:\s+3 \(Proposed\)")
        [stored] = receivedFiles(received).values()
        self.assertEqual(dcmread(stored).file_meta.TransferSyntaxUID, IMPLICIT_VR_LITTLE_ENDIAN)
        self.assertSameDataSet(dcmread(stored), dcmread(sent[0]))

    @defer.inlineCallbacks
    def test_deflated(self):
        """
        C{-xd +cl 9} against a storescp preferring deflated (C{+xd}): the
        data set goes deflated and storescp stores it so.
        """
        storescp, received = yield startStorescp(self, "+xd")
        sent = makeFiles(makeDirectory(self), 1)
        result = yield storescu("-xd", "+cl", "9", "-v", LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        self.assertIn("to " + DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, result.stderr)
        [stored] = receivedFiles(received).values()
        self.assertEqual(dcmread(stored).file_meta.TransferSyntaxUID, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertSameDataSet(dcmread(stored), dcmread(sent[0]))

    @defer.inlineCallbacks
    def test_manySOPClasses(self):
        """
        Files of 70 SOP classes need 140 presentation contexts: they go
        over two associations, one after the other, to a promiscuous
        storescp.
        """
        storescp, received = yield startStorescp(self, "-pm", "-v")
        directory = makeDirectory(self)
        sent = [
            writeFile(os.path.join(directory, "%d.dcm" % n), makeDataset(rows=4, columns=4, sopClassUID="1.2.826.0.1.3680043.9.7433.%d" % n))
            for n in range(70)
        ]
        result = yield storescu(LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        yield storescp.waitForOutput("(?s)Association Release.*Association Release")
        self.assertEqual(storescp.output.count("Association Acknowledged"), 2, storescp.describe())
        self.assertSentUnchanged(sent, received)

    @defer.inlineCallbacks
    def test_peerAborts(self):
        """
        A storescp that aborts every association after the C-STORE-RQ: the
        file fails naming the abort, and with C{-nh} the next file goes on
        a new association (and fails the same way).
        """
        storescp, received = yield startStorescp(self, "--abort-after", "-v")
        sent = makeFiles(makeDirectory(self), 2)
        result = yield storescu("-nh", LOCALHOST, str(storescp.port), *sent)
        self.assertEqual(result.exitCode, 10, result.describe())
        for path in sent:
            self.assertRegex(result.stderr, r"E: Store Failed, file: %s: .*A-ABORT" % (re.escape(path),))
        self.assertIn("0 sent (0 with warnings), 2 failed", result.stderr)
        yield storescp.waitForOutput("(?s)Association Acknowledged.*Association Acknowledged")

    @defer.inlineCallbacks
    def test_dimseTimeout(self):
        """
        A storescp that takes 10 s over a C-STORE, with C{-td 1}: the
        association is aborted after a second and the file reported as
        failed for want of a response.
        """
        storescp, received = yield startStorescp(self, "--sleep-during", "10")
        result = yield storescu("-td", "1", LOCALHOST, str(storescp.port), *makeFiles(makeDirectory(self), 1), timeout=8)
        self.assertEqual(result.exitCode, 10, result.describe())
        self.assertIn("no response within 1 s", result.stderr)

    @defer.inlineCallbacks
    def test_acseTimeout(self):
        """
        A peer that accepts the connection but never answers the
        A-ASSOCIATE-RQ, with C{-ta 1}: a clear error after a second.
        """
        from twisted.internet import reactor

        silent = WrappingFactory(protocol.Factory.forProtocol(protocol.Protocol))
        listening = reactor.listenTCP(0, silent, interface=LOCALHOST)
        self.addCleanup(listening.stopListening)
        result = yield storescu("-ta", "1", LOCALHOST, str(listening.getHost().port), *makeFiles(makeDirectory(self), 1), timeout=8)
        for connection in list(silent.protocols):
            connection.transport.abortConnection()
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn("F: Association Request Failed: no A-ASSOCIATE response within 1 s", result.stderr)

    @defer.inlineCallbacks
    def test_rename(self):
        """
        C{+rn} appends C{.done} to the file sent and C{.bad} to the one
        refused, after all their C{--repeat} sends.
        """
        storescp, received = yield startStorescp(self)
        directory = makeDirectory(self)
        [good] = makeFiles(directory, 1)
        jpeg = makeJPEGFile(os.path.join(directory, "compressed.dcm"))
        result = yield storescu("+rn", "-nh", "--repeat", "2", LOCALHOST, str(storescp.port), good, jpeg)
        self.assertEqual(result.exitCode, 10, result.describe())
        self.assertEqual(sorted(os.listdir(directory)), sorted([os.path.basename(good) + ".done", "compressed.dcm.bad"]))
        self.assertIn("2 sent (0 with warnings), 2 failed", result.stderr)

    @defer.inlineCallbacks
    def test_listCiphersAndArguments(self):
        """
        C{+cc} lists the TLS cipher suites without needing a peer;
        C{--arguments} prints the arguments, command files expanded.
        """
        commands = os.path.join(makeDirectory(self), "options.txt")
        with open(commands, "w") as f:
            f.write("-aet MODALITY\n")
        result = yield storescu("+cc", "--arguments", "@" + commands)
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertIn("expanded command line to 4 arguments:\n+cc --arguments -aet MODALITY\n", result.stdout)
        self.assertIn("Supported TLS ciphersuites are:", result.stdout)
        self.assertIn("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", result.stdout)


class TLSTests(ComparingTestCase):
    """
    C{+tls} against DCMTK's storescp C{+tls}, with throwaway certificates.
    """

    @defer.inlineCallbacks
    def startTLSStorescp(self):
        directory = makeDirectory(self)
        self.certificates = makeCertificates(directory)
        tls = self.certificates
        result = yield startStorescp(self, "+tls", tls["server.key"], tls["server.pem"], "-pw", "+cf", tls["ca.pem"], "-v")
        return result

    @defer.inlineCallbacks
    def test_verified(self):
        """
        Both sides present certificates of the same CA and verify each
        other's (C{+cf}); the file arrives unchanged.
        """
        storescp, received = yield self.startTLSStorescp()
        tls = self.certificates
        sent = makeFiles(makeDirectory(self), 2)
        result = yield storescu("+tls", tls["client.key"], tls["client.pem"], "+cf", tls["ca.pem"], LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        self.assertSentUnchanged(sent, received)

    @defer.inlineCallbacks
    def test_ignorePeerCertificate(self):
        """
        With C{-ic} the client trusts no CA and checks nothing; storescp
        still verifies the client's certificate, and the file arrives.
        """
        storescp, received = yield self.startTLSStorescp()
        tls = self.certificates
        sent = makeFiles(makeDirectory(self), 1)
        result = yield storescu("+tls", tls["client.key"], tls["client.pem"], "-ic", LOCALHOST, str(storescp.port), *sent)
        self.assertSucceeded(result, storescp)
        self.assertSentUnchanged(sent, received)

    @defer.inlineCallbacks
    def test_untrustedServer(self):
        """
        A server certificate from a CA we do not trust fails the handshake
        with an error saying so; nothing is sent.
        """
        storescp, received = yield self.startTLSStorescp()
        other = makeCertificates(makeDirectory(self), "other-")
        tls = self.certificates
        sent = makeFiles(makeDirectory(self), 1)
        result = yield storescu("+tls", tls["client.key"], tls["client.pem"], "+cf", other["ca.pem"], LOCALHOST, str(storescp.port), *sent)
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn("certificate verify failed", result.stderr)
        self.assertEqual(receivedFiles(received), {})

    @defer.inlineCallbacks
    def test_plainToTLS(self):
        """
        A plain TCP client gets a clear error from a TLS storescp.
        """
        storescp, received = yield self.startTLSStorescp()
        result = yield storescu(LOCALHOST, str(storescp.port), *makeFiles(makeDirectory(self), 1))
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn("F: Association Request Failed:", result.stderr)


class PynetdicomTests(ComparingTestCase):
    """
    C{dicomd storescu} sends to pynetdicom's storage SCP.
    """

    @defer.inlineCallbacks
    def startSCP(self, status="0000", *window):
        self.received = makeDirectory(self)
        scp = yield startPythonScript(self, PYNETDICOM_STORAGE_SCP, self.received, status, *window, name="pynetdicom SCP")
        return scp

    def assertArrivedUnchanged(self, sent):
        for path in sent:
            uid = readFileMeta(path).sopInstanceUID
            with open(os.path.join(self.received, uid + ".raw"), "rb") as f:
                self.assertEqual(f.read(), dataSetBytes(path), path)

    @defer.inlineCallbacks
    def test_store(self):
        """
        CT and MR images arrive as the very bytes of their data sets, in
        explicit VR little endian, from our calling AE title.
        """
        scp = yield self.startSCP()
        sent = makeFiles(makeDirectory(self), 2) + makeFiles(makeDirectory(self), 1, sopClassUID=MR_IMAGE_STORAGE)
        result = yield storescu("-aet", "OURSCU", LOCALHOST, str(scp.port), *sent)
        self.assertSucceeded(result, scp)
        self.assertArrivedUnchanged(sent)
        for path in sent:
            with open(os.path.join(self.received, readFileMeta(path).sopInstanceUID + ".ts")) as f:
                self.assertEqual(f.read(), EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(scp.output.count("from OURSCU"), 3, scp.describe())

    @defer.inlineCallbacks
    def test_failureStatus(self):
        """
        A peer refusing every C-STORE with 0xA700: the file is reported
        with that status and the exit status is its high byte, 0xA7.
        """
        scp = yield self.startSCP("A700")
        sent = makeFiles(makeDirectory(self), 2)
        result = yield storescu(LOCALHOST, str(scp.port), *sent)
        self.assertEqual(result.exitCode, 0xA7, result.describe())
        self.assertIn("Store Failed, file: %s: 0xA700 Failure: refused, out of resources" % (sent[0],), result.stderr)
        self.assertIn("0 sent (0 with warnings), 1 failed, 1 not sent", result.stderr)

    @defer.inlineCallbacks
    def test_warningStatus(self):
        """
        A warning status (0xB007) counts as sent with a warning: exit 0.
        """
        scp = yield self.startSCP("B007")
        result = yield storescu(LOCALHOST, str(scp.port), *makeFiles(makeDirectory(self), 2))
        self.assertSucceeded(result, scp)

    @defer.inlineCallbacks
    def test_severalAssociations(self):
        """
        C{--associations 2} spreads six files over two associations that
        run at once.
        """
        scp = yield self.startSCP()
        sent = makeFiles(makeDirectory(self), 6)
        result = yield storescu("--associations", "2", LOCALHOST, str(scp.port), *sent)
        self.assertSucceeded(result, scp)
        self.assertArrivedUnchanged(sent)
        self.assertEqual(len(set(re.findall(r"on association (\d+)", scp.output))), 2, scp.describe())

    @defer.inlineCallbacks
    def test_asynchronousOperationsGranted(self):
        """
        C{--async-ops 8} proposes a window of 8; a peer granting 4 gets
        up to 4 C-STOREs at once, and every file arrives unchanged.
        """
        scp = yield self.startSCP("0000", "4")
        sent = makeFiles(makeDirectory(self), 12)
        result = yield storescu("-v", "--async-ops", "8", LOCALHOST, str(scp.port), *sent)
        self.assertSucceeded(result, scp)
        self.assertIn("window proposed: 8 invoked, 1 performed", scp.output)
        self.assertIn("Asynchronous operations window: 4 C-STOREs", result.stderr)
        self.assertIn("12 sent (0 with warnings), 0 failed", result.stderr)
        self.assertArrivedUnchanged(sent)

    @defer.inlineCallbacks
    def test_asynchronousOperationsRefused(self):
        """
        A peer that answers the proposed window with 1 (pynetdicom's
        answer) gets one C-STORE at a time, and every file.
        """
        scp = yield self.startSCP()
        sent = makeFiles(makeDirectory(self), 4)
        result = yield storescu("-v", "--async-ops", "8", LOCALHOST, str(scp.port), *sent)
        self.assertSucceeded(result, scp)
        self.assertIn("window proposed: 8 invoked, 1 performed", scp.output)
        self.assertIn("Asynchronous operations window: none granted, one C-STORE at a time", result.stderr)
        self.assertArrivedUnchanged(sent)

    @defer.inlineCallbacks
    def test_userIdentity(self):
        """
        C{-usr}/C{-pwd} reach the peer; C{-kt} with C{-rsp} gets the
        peer's positive response and goes on.
        """
        scp = yield self.startSCP()
        result = yield storescu("-usr", "alice", "-pwd", "secret", LOCALHOST, str(scp.port), *makeFiles(makeDirectory(self), 1))
        self.assertSucceeded(result, scp)
        yield scp.waitForOutput("user identity type 2: alice secret")
        ticket = os.path.join(makeDirectory(self), "ticket")
        with open(ticket, "wb") as f:
            f.write(b"kerberos-ticket")
        result = yield storescu("-kt", ticket, "-rsp", LOCALHOST, str(scp.port), *makeFiles(makeDirectory(self), 1))
        self.assertSucceeded(result, scp)
        yield scp.waitForOutput("user identity type 3: kerberos-ticket")

    @defer.inlineCallbacks
    def test_positiveResponseMissing(self):
        """
        C{-usr -rsp} against a peer that answers user and password
        identities without a response (pynetdicom): the association is
        abandoned with DCMTK's error.
        """
        scp = yield self.startSCP()
        result = yield storescu("-usr", "alice", "-rsp", LOCALHOST, str(scp.port), *makeFiles(makeDirectory(self), 1))
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn("User Identity Negotiation failed: positive response requested but none received", result.stderr)


class OrthancTests(ComparingTestCase):
    """
    C{dicomd storescu} sends to Orthanc.
    """

    timeout = 240

    def setUp(self):
        if not os.access(ORTHANC, os.X_OK):
            raise unittest.SkipTest("Orthanc is not installed")

    @defer.inlineCallbacks
    def test_asynchronousOperationsIgnored(self):
        """
        Orthanc leaves a proposed asynchronous operations window out of
        its answer: the files go one at a time, and Orthanc holds them
        all.
        """
        orthanc = yield startOrthanc(self)
        sent = makeFiles(makeDirectory(self), 5)
        result = yield storescu("-v", "-aec", "ORTHANC", "--async-ops", "8", LOCALHOST, str(orthanc.port), *sent)
        self.assertSucceeded(result, orthanc)
        self.assertIn("Asynchronous operations window: none granted, one C-STORE at a time", result.stderr)
        yield waitForOrthanc(orthanc, sent)


class _Relay(protocol.Protocol):
    """
    The client-facing side of L{SlowRelay}: reads from the client at most
    C{rate} bytes per second and passes everything on to the receiver.
    """

    def __init__(self, relay):
        self.relay = relay
        self.back = None
        self.pending = []

    def connectionMade(self):
        self.relay.connections.append(self)
        endpoint = TCP4ClientEndpoint(self.relay.reactor, LOCALHOST, self.relay.port)
        endpoint.connect(protocol.Factory.forProtocol(lambda: _RelayBack(self))).addErrback(lambda _: self.transport.abortConnection())

    def dataReceived(self, data):
        self.relay.forwarded += len(data)
        if self.back is None:
            self.pending.append(data)
        else:
            self.back.transport.write(data)
        self.transport.pauseProducing()
        self.relay.reactor.callLater(len(data) / self.relay.rate, self._resume)

    def _resume(self):
        if self.transport.connected:
            self.transport.resumeProducing()

    def connectionLost(self, reason):
        if self.back is not None:
            self.back.transport.loseConnection()


class _RelayBack(protocol.Protocol):
    def __init__(self, front):
        self.front = front

    def connectionMade(self):
        self.front.back = self
        for data in self.front.pending:
            self.transport.write(data)
        self.front.pending = []

    def dataReceived(self, data):
        self.front.transport.write(data)

    def connectionLost(self, reason):
        self.front.transport.loseConnection()


class SlowRelay(protocol.Factory):
    """
    A TCP relay in the test's reactor that makes a fast receiver slow: it
    reads from its clients at C{rate} bytes per second.

    @ivar forwarded: bytes read from clients so far.
    """

    def __init__(self, reactor, port: int, rate: float):
        self.reactor = reactor
        self.port = port
        self.rate = rate
        self.forwarded = 0
        self.connections = []

    def buildProtocol(self, addr):
        return _Relay(self)


def processStatus(pid: int) -> dict:
    """
    A process's memory (bytes) and I/O counters from C{/proc}: C{VmRSS},
    C{VmHWM}, C{rchar}...; some or all are missing once it has ended.
    """
    values = {}
    try:
        with open("/proc/%d/status" % (pid,)) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":")
                    values[name] = int(value.split()[0]) * 1024
        with open("/proc/%d/io" % (pid,)) as f:
            for line in f:
                name, value = line.split(":")
                values[name] = int(value)
    except (OSError, ValueError):
        return {}
    return values


class MemoryTests(ComparingTestCase):
    """
    Big data sets go with bounded memory.
    """

    @defer.inlineCallbacks
    def peakRSS(self, port, path):
        """
        Send C{path} with C{dicomd storescu} under C{/usr/bin/time} and
        return its peak RSS in bytes.
        """
        if not os.access("/usr/bin/time", os.X_OK):
            raise FailTest("GNU time is missing at /usr/bin/time: apt-get install time")
        report = os.path.join(makeDirectory(self), "rss")
        result = yield runCommand(
            ["/usr/bin/time", "-f", "%M", "-o", report] + dicomdArgv("storescu", LOCALHOST, str(port), path),
            env=pythonEnvironment(),
            timeout=60,
        )
        self.assertEqual(result.exitCode, 0, result.describe())
        with open(report) as f:
            return int(f.read().split()[-1]) * 1024

    @defer.inlineCallbacks
    def test_oneGigabyte(self):
        """
        A 1 GiB data set is sent to storescp C{--ignore} with the client's
        peak RSS less than 64 MB above that of sending a 2 KB file.
        """
        storescp, _ = yield startStorescp(self, "--ignore", "-v")
        directory = makeDirectory(self)
        big = writeLargeFile(os.path.join(directory, "big.dcm"), 1 << 30)
        small = makeFiles(directory, 1)[0]
        baseline = yield self.peakRSS(storescp.port, small)
        peak = yield self.peakRSS(storescp.port, big)
        self.assertLess(peak - baseline, MEMORY_BOUND, "peak RSS %d bytes, baseline %d bytes" % (peak, baseline))
        yield storescp.waitForOutput("(?s)Received Store Request.*Received Store Request")

    @defer.inlineCallbacks
    def test_slowReceiver(self):
        """
        A receiver reading at most 40 MB/s (storescp behind a slow relay)
        slows the client's reading of a 192 MiB file: what the client has
        read never runs more than 64 MB ahead of what the receiver took,
        and its RSS stays within 64 MB of where it started.
        """
        from twisted.internet import reactor

        storescp, _ = yield startStorescp(self, "--ignore")
        rate = 40e6
        size = 192 << 20
        relay = SlowRelay(reactor, storescp.port, rate)
        listening = reactor.listenTCP(0, relay, interface=LOCALHOST)
        self.addCleanup(listening.stopListening)
        big = writeLargeFile(os.path.join(makeDirectory(self), "big.dcm"), size)
        client = spawn(self, dicomdArgv("storescu", LOCALHOST, str(listening.getHost().port), big), env=pythonEnvironment())
        pid = client.transport.pid
        samples = []
        while client.running:
            if relay.forwarded:
                status = processStatus(pid)
                if "VmHWM" in status and "rchar" in status:
                    samples.append((relay.forwarded, status))
            yield deferLater(reactor, 0.05)
        self.assertEqual(client.exitCode, 0, client.describe())
        self.assertGreater(len(samples), 20, "too few samples: %r" % (samples,))
        startForwarded, start = samples[0]
        for forwarded, status in samples:
            readAhead = (status["rchar"] - start["rchar"]) - (forwarded - startForwarded)
            self.assertLess(readAhead, MEMORY_BOUND, "read %d bytes ahead of the receiver" % (readAhead,))
            self.assertLess(status["VmHWM"] - start["VmRSS"], MEMORY_BOUND, "RSS grew from %d to %d" % (start["VmRSS"], status["VmHWM"]))
        # The client has exited, so the whole file went through the relay;
        # the last sample may be older than the last bytes.
        self.assertGreater(relay.forwarded, size, "the relay saw only %d bytes" % (relay.forwarded,))

    @defer.inlineCallbacks
    def test_slowReceiverGetsEveryByte(self):
        """
        A data set of several megabytes that never repeats itself, sent to
        storescp through a relay reading 20 MB/s, arrives as its very
        bytes: what the socket does not take at once waits in the
        transport, a copy of it, and goes in order.
        """
        from twisted.internet import reactor

        storescp, received = yield startStorescp(self)
        relay = SlowRelay(reactor, storescp.port, 20e6)
        listening = reactor.listenTCP(0, relay, interface=LOCALHOST)
        self.addCleanup(listening.stopListening)
        size = 8 << 20
        path = writeLargeFile(os.path.join(makeDirectory(self), "random.dcm"), size)
        with open(path, "r+b") as f:
            f.seek(-size, os.SEEK_END)
            f.write(os.urandom(size))
        result = yield runCommand(dicomdArgv("storescu", LOCALHOST, str(listening.getHost().port), path), env=pythonEnvironment())
        # storescp answers once the file is written.
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertSentUnchanged([path], received)
