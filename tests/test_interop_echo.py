"""
Verification (C-ECHO) with real peers, as processes on 127.0.0.1.

DCMTK's C{echoscu} and pynetdicom talk to the real C{twistd -n dicomd} and
to dicomd's acceptor in the test's reactor; C{python -m dicomd echoscu}
talks to DCMTK's C{storescp} and to a pynetdicom SCP; and hostile bytes
must not take the daemon down.  The harness is L{tests.support}.
"""

import re

from twisted.internet import defer
from twisted.trial import unittest

from tests.support import (
    abortOf,
    dcmtk,
    dcmtkEnvironment,
    dicomdArgv,
    exchangeBytes,
    listenInProcess,
    pythonEnvironment,
    runCommand,
    runPythonScript,
    startDaemon,
    startDCMTKServer,
    startPythonScript,
    waitUntil,
)

#: pynetdicom as Verification SCU: C{script PORT [CALLED]}.  Prints what
#: was negotiated and the C-ECHO status; exits 0 only on success.
PYNETDICOM_ECHO_SCU = """
import sys
from pynetdicom import AE
from pynetdicom.sop_class import Verification

port = int(sys.argv[1])
called = sys.argv[2] if len(sys.argv) > 2 else "DICOMD"
ae = AE(ae_title="PYNETDICOM")
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
ae.add_requested_context(Verification)
assoc = ae.associate("127.0.0.1", port, ae_title=called)
if not assoc.is_established:
    print("association failed: rejected=%s aborted=%s" % (assoc.is_rejected, assoc.is_aborted))
    sys.exit(2)
context = assoc.accepted_contexts[0]
print("accepted %s %s" % (context.abstract_syntax, context.transfer_syntax[0]))
print("implementation %s" % (assoc.acceptor.implementation_version_name,))
status = assoc.send_c_echo()
if not status:
    print("no C-ECHO response")
    sys.exit(3)
print("status 0x%04X" % (status.Status,))
assoc.release()
print("released %s" % (assoc.is_released,))
sys.exit(0 if status.Status == 0 and assoc.is_released else 4)
"""

#: pynetdicom as Verification SCP: C{script PORT}.  Prints one line per
#: C-ECHO it answers.
PYNETDICOM_ECHO_SCP = """
import sys
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

def onEcho(event):
    print("C-ECHO from %s message %d" % (event.assoc.requestor.ae_title, event.request.MessageID), flush=True)
    return 0x0000

ae = AE(ae_title="PYNETSCP")
ae.add_supported_context(Verification, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"])
ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True, evt_handlers=[(evt.EVT_C_ECHO, onEcho)])
"""

#: The start of an A-ASSOCIATE-RQ from ECHOSCU to ANY-SCP: a header
#: announcing 205 bytes, then 20 bytes of the body.
TRUNCATED_ASSOCIATE_RQ = (
    b"\x01\x00\x00\x00\x00\xcd"
    b"\x00\x01\x00\x00"
    b"ANY-SCP         "
)


def acceptedTransferSyntax(output: str) -> str:
    """
    The transfer syntax name that DCMTK's C{echoscu -d} shows as accepted
    in the A-ASSOCIATE-AC, such as C{"LittleEndianExplicit"}.
    """
    section = output[output.index("BEGIN A-ASSOCIATE-AC") : output.index("END A-ASSOCIATE-AC")]
    return re.search(r"Accepted Transfer Syntax: =(\S+)", section).group(1)


class DCMTKEchoscuTests(unittest.TestCase):
    """
    DCMTK's echoscu against the real C{twistd -n dicomd}.
    """

    timeout = 60

    @defer.inlineCallbacks
    def echo(self, daemon, *options):
        """
        Run DCMTK's echoscu with C{options} against C{daemon} and check it
        succeeded.

        @return: its output.
        """
        result = yield runCommand(
            [dcmtk("echoscu")] + list(options) + ["127.0.0.1", str(daemon.port)],
            env=dcmtkEnvironment(),
        )
        self.assertEqual(result.exitCode, 0, result.describe() + daemon.describe())
        self.assertIn("Received Echo Response (Success)", result.output, result.describe())
        return result.output

    @defer.inlineCallbacks
    def test_echo(self):
        """
        A plain C-ECHO succeeds and the daemon logs the association as
        released by the peer after one successful C-ECHO.
        """
        daemon = yield startDaemon(self)
        yield self.echo(daemon, "-v")
        yield daemon.waitForOutput(
            r"Association ECHOSCU -> ANY-SCP from 127\.0\.0\.1:\d+ released by the peer after [\d.]+ s: C-ECHO 1 success"
        )

    @defer.inlineCallbacks
    def test_repeat(self):
        """
        Twenty C-ECHOs on one association all succeed, with the calling
        and called AE titles echoscu chose.
        """
        daemon = yield startDaemon(self)
        output = yield self.echo(daemon, "-v", "--repeat", "20", "-aet", "MODALITY1", "-aec", "ARCHIVE")
        self.assertEqual(output.count("Received Echo Response (Success)"), 20)
        yield daemon.waitForOutput(r"Association MODALITY1 -> ARCHIVE from .* released by the peer .*C-ECHO 20 success")

    @defer.inlineCallbacks
    def test_smallestPDU(self):
        """
        With echoscu's smallest receive PDU (-pdu 4096) the association
        carries that maximum and the C-ECHO succeeds.
        """
        daemon = yield startDaemon(self)
        output = yield self.echo(daemon, "-d", "-pdu", "4096")
        self.assertRegex(output, r"Our Max PDU Receive Size:\s+4096")
        self.assertRegex(output, r"Their Max PDU Receive Size:\s+131072")

    @defer.inlineCallbacks
    def test_largestPDU(self):
        """
        With echoscu's largest receive PDU (-pdu 131072) the C-ECHO
        succeeds.
        """
        daemon = yield startDaemon(self)
        output = yield self.echo(daemon, "-d", "-pdu", "131072")
        self.assertRegex(output, r"Our Max PDU Receive Size:\s+131072")
        self.assertRegex(output, r"Their Max PDU Receive Size:\s+131072")

    @defer.inlineCallbacks
    def test_daemonMaximumPDU(self):
        """
        C{--max-pdu 4096} is what the daemon advertises in its
        A-ASSOCIATE-AC, and echoscu sends within it.
        """
        daemon = yield startDaemon(self, "--max-pdu", "4096")
        output = yield self.echo(daemon, "-d")
        self.assertRegex(output, r"Their Max PDU Receive Size:\s+4096")
        self.assertRegex(output, r"Association Accepted \(Max Send PDV: 40\d\d\)")

    @defer.inlineCallbacks
    def test_defaultTransferSyntax(self):
        """
        Offered implicit VR LE, explicit VR LE and explicit VR BE
        (C{-pts 3}), the daemon by default accepts explicit VR little
        endian, as storescp does.
        """
        daemon = yield startDaemon(self)
        output = yield self.echo(daemon, "-d", "-pts", "3")
        self.assertIn("=BigEndianExplicit", output)
        self.assertEqual(acceptedTransferSyntax(output), "LittleEndianExplicit")

    @defer.inlineCallbacks
    def test_implicitOnly(self):
        """
        With C{--implicit} the daemon accepts implicit VR little endian
        although explicit syntaxes were offered too.
        """
        daemon = yield startDaemon(self, "--implicit")
        output = yield self.echo(daemon, "-d", "-pts", "3")
        self.assertEqual(acceptedTransferSyntax(output), "LittleEndianImplicit")

    @defer.inlineCallbacks
    def test_preferLittle(self):
        """
        With C{--prefer-little} the daemon accepts explicit VR little
        endian out of the three offered.
        """
        daemon = yield startDaemon(self, "--prefer-little")
        output = yield self.echo(daemon, "-d", "-pts", "3")
        self.assertEqual(acceptedTransferSyntax(output), "LittleEndianExplicit")

    @defer.inlineCallbacks
    def test_preferBig(self):
        """
        With C{--prefer-big} the daemon accepts explicit VR big endian
        out of the three offered: the preference flags really choose.
        """
        daemon = yield startDaemon(self, "--prefer-big")
        output = yield self.echo(daemon, "-d", "-pts", "3")
        self.assertEqual(acceptedTransferSyntax(output), "BigEndianExplicit")

    @defer.inlineCallbacks
    def test_inProcessAcceptor(self):
        """
        DCMTK's echoscu succeeds three times against dicomd's acceptor
        listening in the test's own reactor, which stops counting the
        association once it is released.
        """
        port, factory = listenInProcess(self)
        result = yield runCommand(
            [dcmtk("echoscu"), "-v", "--repeat", "3", "127.0.0.1", str(port)],
            env=dcmtkEnvironment(),
        )
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(result.output.count("Received Echo Response (Success)"), 3, result.describe())
        yield waitUntil(lambda: not factory.associations, message="the released association is still counted")


class DicomdEchoscuTests(unittest.TestCase):
    """
    C{python -m dicomd echoscu} against DCMTK's storescp.
    """

    timeout = 60

    def echoscu(self, port, *options, timeout=30):
        """
        Run our echoscu with C{options} against C{127.0.0.1:port}.
        """
        return runCommand(
            dicomdArgv("echoscu", *options, "127.0.0.1", str(port)),
            env=pythonEnvironment(),
            timeout=timeout,
        )

    @defer.inlineCallbacks
    def test_echo(self):
        """
        Three C-ECHOs succeed; storescp sees our calling and called AE
        titles and three echo requests; the association is released, and
        our log says it went to storescp.
        """
        storescp = yield startDCMTKServer(self, "storescp", "-d")
        result = yield self.echoscu(storescp.port, "-v", "-aet", "OURSCU", "-aec", "STORESCP", "--repeat", "3")
        self.assertEqual(result.exitCode, 0, result.describe() + storescp.describe())
        self.assertEqual(result.stderr.count("Received Echo Response (0x0000 Success)"), 3, result.describe())
        self.assertIn("Releasing Association", result.stderr)
        # The association went to the peer: not "from" it, as an
        # acceptor's line says.
        self.assertIn("I: Association OURSCU -> STORESCP to 127.0.0.1:%d released after " % (storescp.port,), result.stderr)
        yield storescp.waitForOutput(r"Association Release")
        self.assertRegex(storescp.output, r"Calling Application Name:\s+OURSCU")
        self.assertRegex(storescp.output, r"Called Application Name:\s+STORESCP")
        self.assertEqual(storescp.output.count("Received Echo Request"), 3, storescp.describe())

    @defer.inlineCallbacks
    def test_abort(self):
        """
        With C{--abort} the C-ECHO succeeds and storescp sees the
        association aborted instead of released.
        """
        storescp = yield startDCMTKServer(self, "storescp", "-v")
        result = yield self.echoscu(storescp.port, "-v", "--abort")
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertIn("Aborting Association", result.stderr)
        yield storescp.waitForOutput(r"Association Aborted")
        self.assertNotIn("Association Release", storescp.output)

    @defer.inlineCallbacks
    def test_rejected(self):
        """
        A storescp that refuses every association makes our echoscu exit
        with status 61 and say why.
        """
        storescp = yield startDCMTKServer(self, "storescp", "--refuse")
        result = yield self.echoscu(storescp.port)
        self.assertEqual(result.exitCode, 61, result.describe())
        self.assertIn("Association Rejected", result.stderr)


class PynetdicomTests(unittest.TestCase):
    """
    pynetdicom, run as a separate process, in both roles.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_scuAgainstInProcessAcceptor(self):
        """
        pynetdicom's C-ECHO succeeds against dicomd's acceptor in the
        test's reactor; it negotiated explicit VR little endian and sees
        dicomd's implementation version name.
        """
        port, factory = listenInProcess(self)
        result = yield runPythonScript(self, PYNETDICOM_ECHO_SCU, str(port))
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertIn("accepted 1.2.840.10008.1.1 1.2.840.10008.1.2.1\n", result.stdout)
        self.assertIn("implementation DICOMD_", result.stdout)
        self.assertIn("status 0x0000\n", result.stdout)
        self.assertIn("released True\n", result.stdout)
        yield waitUntil(lambda: not factory.associations, message="the released association is still counted")

    @defer.inlineCallbacks
    def test_scuAgainstDaemon(self):
        """
        pynetdicom's C-ECHO succeeds against C{twistd -n dicomd}, which
        logs one successful C-ECHO from PYNETDICOM.
        """
        daemon = yield startDaemon(self)
        result = yield runPythonScript(self, PYNETDICOM_ECHO_SCU, str(daemon.port))
        self.assertEqual(result.exitCode, 0, result.describe() + daemon.describe())
        self.assertIn("status 0x0000\n", result.stdout)
        yield daemon.waitForOutput(r"Association PYNETDICOM -> DICOMD from .* released by the peer .*C-ECHO 1 success")

    @defer.inlineCallbacks
    def test_dicomdEchoscuAgainstSCP(self):
        """
        Our echoscu succeeds twice against a pynetdicom Verification SCP,
        which sees both requests from our calling AE title.
        """
        scp = yield startPythonScript(self, PYNETDICOM_ECHO_SCP, name="pynetdicom SCP")
        result = yield runCommand(
            dicomdArgv("echoscu", "-v", "-aet", "OURSCU", "--repeat", "2", "127.0.0.1", str(scp.port)),
            env=pythonEnvironment(),
        )
        self.assertEqual(result.exitCode, 0, result.describe() + scp.describe())
        self.assertEqual(result.stderr.count("Received Echo Response (0x0000 Success)"), 2, result.describe())
        yield scp.waitForOutput(r"C-ECHO from OURSCU message 2")
        self.assertIn("C-ECHO from OURSCU message 1", scp.output)


class HostileInputTests(unittest.TestCase):
    """
    Bytes that are not DICOM, or not finished, sent to C{twistd -n dicomd}:
    each gets an A-ABORT or a close, and the next echoscu still succeeds.
    """

    timeout = 60

    @defer.inlineCallbacks
    def assertStillServes(self, daemon):
        """
        DCMTK's echoscu still succeeds against C{daemon}.
        """
        result = yield runCommand(
            [dcmtk("echoscu"), "127.0.0.1", str(daemon.port)],
            env=dcmtkEnvironment(),
        )
        self.assertEqual(result.exitCode, 0, result.describe() + daemon.describe())
        self.assertTrue(daemon.running, daemon.describe())

    @defer.inlineCallbacks
    def test_garbage(self):
        """
        An HTTP request gets an A-ABORT from the service provider, reason
        "unrecognized PDU".
        """
        daemon = yield startDaemon(self)
        exchange = yield exchangeBytes(daemon.port, b"GET / HTTP/1.1\r\nHost: dicomd\r\n\r\n", expect=10)
        self.assertFalse(exchange.timedOut, exchange)
        self.assertEqual(len(exchange.received), 10, exchange)
        self.assertEqual(abortOf(exchange.received), (2, 1), exchange)
        yield self.assertStillServes(daemon)

    @defer.inlineCallbacks
    def test_truncatedRequestThenClose(self):
        """
        Part of an A-ASSOCIATE-RQ followed by a close gets nothing back,
        and leaves the daemon serving.
        """
        daemon = yield startDaemon(self)
        exchange = yield exchangeBytes(daemon.port, TRUNCATED_ASSOCIATE_RQ, closeAfterWriting=True)
        self.assertEqual(exchange.received, b"", exchange)
        self.assertFalse(exchange.timedOut, exchange)
        yield self.assertStillServes(daemon)

    @defer.inlineCallbacks
    def test_truncatedRequestTimesOut(self):
        """
        Part of an A-ASSOCIATE-RQ and then silence: the daemon closes the
        connection when ARTIM (C{--acse-timeout 1}) expires.
        """
        daemon = yield startDaemon(self, "--acse-timeout", "1")
        exchange = yield exchangeBytes(daemon.port, TRUNCATED_ASSOCIATE_RQ, timeout=15)
        self.assertFalse(exchange.timedOut, exchange)
        self.assertTrue(exchange.closedByPeer, exchange)
        self.assertEqual(exchange.received, b"", exchange)
        yield self.assertStillServes(daemon)

    @defer.inlineCallbacks
    def test_fourGigabyteLength(self):
        """
        An A-ASSOCIATE-RQ header announcing 0xFFFFFFFF bytes gets an
        A-ABORT from the service provider at once, reason "invalid PDU
        parameter value", before any of that length is read.
        """
        daemon = yield startDaemon(self)
        exchange = yield exchangeBytes(daemon.port, b"\x01\x00\xff\xff\xff\xff" + b"\x00" * 64, expect=10)
        self.assertFalse(exchange.timedOut, exchange)
        self.assertEqual(abortOf(exchange.received), (2, 6), exchange)
        yield self.assertStillServes(daemon)

    @defer.inlineCallbacks
    def test_dataBeforeAssociation(self):
        """
        A P-DATA-TF as the first PDU gets an A-ABORT from the service
        provider, reason "unexpected PDU".
        """
        daemon = yield startDaemon(self)
        pdata = b"\x04\x00\x00\x00\x00\x08" + b"\x00\x00\x00\x04\x01\x03\x00\x00"
        exchange = yield exchangeBytes(daemon.port, pdata, expect=10)
        self.assertFalse(exchange.timedOut, exchange)
        self.assertEqual(abortOf(exchange.received), (2, 2), exchange)
        yield self.assertStillServes(daemon)
