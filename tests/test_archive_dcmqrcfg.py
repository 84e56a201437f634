"""
Tests for L{dicomd.archive.dcmqrcfg}, the reader of DCMTK's dcmqrscp.cfg.
"""

import os
import re

from twisted.trial.unittest import SynchronousTestCase

from dicomd.archive.dcmqrcfg import (
    ANY,
    CharacterSetOptions,
    ConfigError,
    Peer,
    Quota,
    StorageAE,
    parseConfig,
    readConfig,
)

#: The example configuration of the specification, beside the checkout.
#: DCMTK's example configuration, as Debian's dcmtk package installs it
#: (tests/run.sh installs dcmtk); it is the example of the specification.
SPEC = "/etc/dcmtk/dcmqrscp.cfg"

#: A configuration using every part of the grammar.
FULL = """\
#
# Global Configuration Parameters
#
NetworkTCPPort  = 11112
MaxPDUSize      = 65536
MaxAssociations = 20
SpecificCharacterSet = "ISO_IR 192", override, discard, transliterate
UserName      = "dicom user"
GroupName     = dicom
NetworkType   = tcp

HostTable BEGIN
acme1           = (ACME1, acmehost1, 5678)
acme2           = (ACME2, acmehost2, 5678)
acmeCTcompany   = acme1, acme2
united1         = (UNITED1, unitedhost1, 104)
united2         = (UNITED2, unitedhost2, 104)
unitedMRcompany = united1, united2
everybody       = acmeCTcompany, unitedMRcompany, (LONE, lonehost, 11113)
acme1           = (OTHER, otherhost, 1)
HostTable END

VendorTable BEGIN
"Acme CT Company"   = acmeCTcompany
'United MR Company' = unitedMRcompany
VendorTable END

AETable BEGIN
ACME_STORE   /var/lib/dcmtk/db/ACME_STORE   RW (9, 1024mb)   acmeCTcompany
UNITED_STORE /var/lib/dcmtk/db/UNITED_STORE W  (9, 2GB)      united1, (GUEST, guesthost, 4242)
READWRITE    "/var/lib/dcmtk/db/READ WRITE" RW (10, 512kb)   ANY
READ         /var/lib/dcmtk/db/READ         R  (200, 100000b) ANY
AETable END
"""


class ExampleTests(SynchronousTestCase):
    """
    The example configurations shipped with DCMTK read without error.
    """

    def setUp(self):
        self.assertTrue(os.path.exists(SPEC), "%s is missing: install Debian's dcmtk" % (SPEC,))

    def test_specExample(self):
        """
        The example of the specification reads, with its global values.
        """
        config = readConfig(SPEC)
        self.assertEqual(
            (config.networkTCPPort, config.maxPDUSize, config.maxAssociations),
            (104, 16384, 16),
        )
        self.assertEqual((config.userName, config.groupName), ("dcmtk", "dcmtk"))
        self.assertEqual(config.aeTable, {})

    def test_examplesUncommented(self):
        """
        The example with its sample entries uncommented reads too.
        """
        with open(SPEC) as f:
            text = re.sub(r'^#(?=[A-Za-z"])', "", f.read(), flags=re.MULTILINE)
        config = parseConfig(text)
        self.assertEqual(
            sorted(config.aeTable), ["ACME_STORE", "READ", "READWRITE", "UNITED_STORE"]
        )
        self.assertEqual(sorted(config.vendorTable), ["Acme CT Company", "United MR Company"])


class DebianExampleTests(SynchronousTestCase):
    """
    The configuration Debian's dcmtk package installs reads without error.
    """

    def test_debianExample(self):
        """
        Debian's /etc/dcmtk/dcmqrscp.cfg reads.
        """
        self.assertTrue(os.path.exists(SPEC), "%s is missing: install Debian's dcmtk" % (SPEC,))
        config = readConfig(SPEC)
        self.assertEqual(config.maxPDUSize, 16384)
        self.assertEqual(config.userName, "dcmtk")


class GrammarTests(SynchronousTestCase):
    """
    How each part of the file is read.
    """

    def setUp(self):
        self.config = parseConfig(FULL, "full.cfg")

    def test_globals(self):
        """
        Global parameters, with a quoted value and an ignored old mnemonic.
        """
        self.assertEqual(self.config.networkTCPPort, 11112)
        self.assertEqual(self.config.maxPDUSize, 65536)
        self.assertEqual(self.config.maxAssociations, 20)
        self.assertEqual(self.config.userName, "dicom user")
        self.assertEqual(self.config.groupName, "dicom")

    def test_defaults(self):
        """
        What the file does not say has DCMTK's defaults.
        """
        config = parseConfig("")
        self.assertEqual(
            (config.networkTCPPort, config.maxPDUSize, config.maxAssociations,
             config.userName, config.characterSetOptions),
            (104, 16384, 16, "", None),
        )

    def test_characterSetOptions(self):
        """
        The character set and its flags.
        """
        self.assertEqual(
            self.config.characterSetOptions,
            CharacterSetOptions("ISO_IR 192", override=True, discard=True,
                                transliterate=True),
        )

    def test_hostTable(self):
        """
        Peers, symbolic names standing for others, and mixtures.
        """
        acme = (Peer("ACME1", "acmehost1", 5678), Peer("ACME2", "acmehost2", 5678))
        self.assertEqual(self.config.hostTable["acmeCTcompany"], acme)
        self.assertEqual(len(self.config.hostTable["everybody"]), 5)
        self.assertEqual(
            self.config.hostTable["everybody"][-1], Peer("LONE", "lonehost", 11113)
        )

    def test_firstDefinitionKept(self):
        """
        A symbolic name defined twice keeps its first definition.
        """
        self.assertEqual(
            self.config.hostTable["acme1"], (Peer("ACME1", "acmehost1", 5678),)
        )

    def test_vendorTable(self):
        """
        Vendor names in either quote.
        """
        self.assertEqual(
            sorted(self.config.vendorTable), ["Acme CT Company", "United MR Company"]
        )

    def test_aeTable(self):
        """
        AE titles with their storage area, access, quota and peers.
        """
        self.assertEqual(
            self.config.aeTable["UNITED_STORE"],
            StorageAE(
                "UNITED_STORE",
                "/var/lib/dcmtk/db/UNITED_STORE",
                "W",
                Quota(9, 2 * 1024**3),
                (Peer("UNITED1", "unitedhost1", 104), Peer("GUEST", "guesthost", 4242)),
            ),
        )
        self.assertEqual(
            self.config.aeTable["READWRITE"].storageArea, "/var/lib/dcmtk/db/READ WRITE"
        )
        self.assertIs(self.config.aeTable["READ"].peers, ANY)

    def test_quotaUnits(self):
        """
        Sizes in b, kb, mb and gb, in powers of 1024.
        """
        self.assertEqual(
            [self.config.aeTable[ae].quota.maxBytesPerStudy
             for ae in ["READ", "READWRITE", "ACME_STORE", "UNITED_STORE"]],
            [100000, 512 * 1024, 1024**3, 2 * 1024**3],
        )

    def test_writable(self):
        """
        RW and W storage areas are writable, R ones are not.
        """
        self.assertEqual(
            {ae: entry.writable for ae, entry in self.config.aeTable.items()},
            {"ACME_STORE": True, "UNITED_STORE": True, "READWRITE": True, "READ": False},
        )

    def test_lenientLayout(self):
        """
        Indented comments and entries, blank lines in tables and a mnemonic
        glued to its value are accepted.
        """
        config = parseConfig(
            "   # indented comment\n"
            "NetworkTCPPort=2000\n"
            "HostTable BEGIN\n"
            "\n"
            "   a = (A, h, 1)\n"
            "HostTable END\n"
        )
        self.assertEqual(config.networkTCPPort, 2000)
        self.assertEqual(config.hostTable, {"a": (Peer("A", "h", 1),)})


class LookupTests(SynchronousTestCase):
    """
    The lookups the services use.
    """

    def setUp(self):
        self.config = parseConfig(FULL, "full.cfg")

    def test_peersFor(self):
        """
        The peers of an AE title, or ANY.
        """
        self.assertEqual(
            [peer.aeTitle for peer in self.config.peersFor("ACME_STORE")],
            ["ACME1", "ACME2"],
        )
        self.assertIs(self.config.peersFor("READ"), ANY)
        self.assertRaises(KeyError, self.config.peersFor, "NOPE")

    def test_hostForAE(self):
        """
        A move destination is found in the AETable, then the HostTable.
        """
        self.assertEqual(self.config.hostForAE("GUEST"), ("guesthost", 4242))
        self.assertEqual(self.config.hostForAE("LONE"), ("lonehost", 11113))
        self.assertEqual(self.config.hostForAE("ACME2"), ("acmehost2", 5678))
        self.assertIsNone(self.config.hostForAE("NOPE"))

    def test_vendors(self):
        """
        The vendor of an AE title or a host, and whether two AE titles share
        one.
        """
        self.assertEqual(self.config.vendorForAE("UNITED2"), "United MR Company")
        self.assertIsNone(self.config.vendorForAE("LONE"))
        self.assertEqual(self.config.vendorForHost("ACMEHOST1"), "Acme CT Company")
        self.assertIsNone(self.config.vendorForHost("lonehost"))
        self.assertTrue(self.config.sameVendor("ACME1", "ACME2"))
        self.assertFalse(self.config.sameVendor("ACME1", "UNITED1"))

    def test_peerAllowed(self):
        """
        A listed peer may call, from its host (any case); others may not.
        """
        self.assertTrue(self.config.isPeerAllowed("ACME_STORE", "ACME1", "AcmeHost1"))
        self.assertFalse(self.config.isPeerAllowed("ACME_STORE", "ACME1", "acmehost2"))
        self.assertFalse(self.config.isPeerAllowed("ACME_STORE", "acme1", "acmehost1"))
        self.assertFalse(self.config.isPeerAllowed("ACME_STORE", "UNITED1", "unitedhost1"))

    def test_anyPeerAllowed(self):
        """
        ANY lets every peer call.
        """
        self.assertTrue(self.config.isPeerAllowed("READ", "WHOEVER", "anywhere"))

    def test_unknownCalledAE(self):
        """
        No peer may call an AE title the AETable does not have.
        """
        self.assertFalse(self.config.isPeerAllowed("NOPE", "ACME1", "acmehost1"))


class ErrorTests(SynchronousTestCase):
    """
    Errors name the file, the line and what is wrong.
    """

    def assertError(self, text, lineNumber, fragment):
        error = self.assertRaises(ConfigError, parseConfig, text, "bad.cfg")
        self.assertEqual((error.filename, error.lineNumber), ("bad.cfg", lineNumber))
        self.assertIn(fragment, error.message)
        self.assertTrue(str(error).startswith(f"bad.cfg, line {lineNumber}: "))

    def test_unknownMnemonic(self):
        """
        An unknown mnemonic.
        """
        self.assertError("# c\nNetworkPort = 104\n", 2, "unknown mnemonic 'NetworkPort'")

    def test_badNumber(self):
        """
        A number that is not one.
        """
        self.assertError("MaxPDUSize = big\n", 1, "MaxPDUSize")

    def test_undefinedSymbolicName(self):
        """
        A symbolic name must be defined on an earlier line.
        """
        self.assertError(
            "HostTable BEGIN\nall = a\na = (A, h, 1)\nHostTable END\n",
            2,
            "symbolic name 'a' not defined",
        )

    def test_missingEnd(self):
        """
        A table without END is reported at its BEGIN.
        """
        self.assertError("\nHostTable BEGIN\na = (A, h, 1)\n", 2, '"HostTable END"')

    def test_nestedTable(self):
        """
        A table beginning inside another.
        """
        self.assertError(
            "HostTable BEGIN\nAETable BEGIN\n", 2, "inside the HostTable"
        )

    def test_endWithoutBegin(self):
        """
        END without BEGIN.
        """
        self.assertError("AETable END\n", 1, "without")

    def test_unknownStatus(self):
        """
        A table status other than BEGIN or END.
        """
        self.assertError("VendorTable START\n", 1, "'START'")

    def test_peerNotTriple(self):
        """
        A peer needs AE title, host and port.
        """
        self.assertError(
            "HostTable BEGIN\na = (A, h)\nHostTable END\n", 2, "(AETitle, HostName, Port)"
        )

    def test_badPort(self):
        """
        A port that is not a number.
        """
        self.assertError("HostTable BEGIN\na = (A, h, x)\nHostTable END\n", 2, "port")

    def test_noPeers(self):
        """
        A symbolic name needs peers.
        """
        self.assertError("HostTable BEGIN\na =\nHostTable END\n", 2, "no peers")

    def test_unclosedQuote(self):
        """
        A quote that is not closed.
        """
        self.assertError('UserName = "dicom\n', 1, "no closing quote")

    def test_badAccess(self):
        """
        Access other than R, RW or W.
        """
        self.assertError(
            "AETable BEGIN\nA /x RX (1, 1mb) ANY\nAETable END\n", 2, "access 'RX'"
        )

    def test_quotaWithoutUnit(self):
        """
        A quota size needs a unit, as in DCMTK.
        """
        self.assertError(
            "AETable BEGIN\nA /x RW (1, 1024) ANY\nAETable END\n", 2, "'1024'"
        )

    def test_quotaNotPositive(self):
        """
        A quota of no studies is refused, as DCMTK refuses it.
        """
        self.assertError(
            "AETable BEGIN\nA /x RW (0, 1mb) ANY\nAETable END\n", 2, "positive"
        )

    def test_quotaMissing(self):
        """
        An AE title needs its quota and peers.
        """
        self.assertError("AETable BEGIN\nA /x RW\nAETable END\n", 2, "missing quota")
        self.assertError(
            "AETable BEGIN\nA /x RW (1, 1mb)\nAETable END\n", 2, "no peers for A"
        )

    def test_missingFile(self):
        """
        A file that cannot be opened is named.
        """
        path = self.mktemp()
        error = self.assertRaises(ConfigError, readConfig, path)
        self.assertEqual((error.filename, error.lineNumber), (path, None))
        self.assertIn(path, str(error))

    def test_fileErrorNamesFile(self):
        """
        Errors in a file name the file.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("Bogus 1\n")
        error = self.assertRaises(ConfigError, readConfig, path)
        self.assertEqual((error.filename, error.lineNumber), (path, 1))
