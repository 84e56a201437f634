"""
DICOM TLS: L{dicomd.tls} settings and profiles, the C{dicomtls:} endpoint
string (L{dicomd.endpoints}), certificate subjects in the association log,
AE title to certificate bindings, and interoperability with DCMTK's tools
over TLS.

Every certificate is made by the test itself (L{tests.certificates}).
"""

import os
import re

from OpenSSL import SSL
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.logger import formatEvent, globalLogPublisher
from twisted.plugin import getPlugins
from twisted.protocols.policies import WrappingFactory
from twisted.trial import unittest

from dicomd.peers import Peer, destinationTable
from dicomd.config import readConfig
from dicomd.endpoints import DICOMTLSServerEndpoint, DICOMTLSServerParser, clientEndpoint
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
from dicomd.errors import AssociationAborted, AssociationRejected
from dicomd.net.acceptor import AcceptorFactory
from dicomd.net.protocol import describeTLSError, peerCertificateSubject
from dicomd.net.requestor import connect
from dicomd.tls import TLSConfigurationError
from dicomd.tls.certificates import certificateBindingAllows, certificateMatches, readCertificateBindings
from dicomd.tls.context import CRL_CHAIN, CRL_LEAF
from dicomd.tls.profiles import BCP195_CIPHERS, PROFILES, availableSuites, describeCipherSuites
from dicomd.tls.settings import VERIFY_NONE, VERIFY_OPTIONAL, TLSSettings
from dicomd.ul.negotiation import IMPLICIT_VR_LITTLE_ENDIAN
from tests.certificates import writeCRL, writeDHParameters, writeTestPKI
from tests.dicomfiles import makeDataset, writeFile
from tests.support import (
    LOCALHOST,
    TWISTD,
    dcmtk,
    dcmtkEnvironment,
    dicomdArgv,
    makeDirectory,
    pythonEnvironment,
    runCommand,
    startDCMTKServer,
    startPeer,
    verificationEntity,
    waitUntil,
)

_PKI = {}


def testPKI(testCase):
    """
    The test PKI, written once per process into a directory that outlives
    single tests.
    """
    if "pki" not in _PKI:
        directory = os.path.abspath(os.path.join(testCase.mktemp() + "-pki"))
        _PKI["pki"] = writeTestPKI(directory)
    return _PKI["pki"]


def serverSettings(pki, **kwargs) -> TLSSettings:
    """
    The test server's L{TLSSettings}, trusting the test CA.
    """
    kwargs.setdefault("trusted", [pki.caCertificate])
    return TLSSettings(pki.serverKey, pki.serverCertificate, **kwargs)


def clientSettings(pki, key=None, certificate=None, **kwargs) -> TLSSettings:
    """
    A client's L{TLSSettings}: the test client certificate unless others
    are given, trusting the test CA.
    """
    kwargs.setdefault("trusted", [pki.caCertificate])
    if key is None and certificate is None:
        key, certificate = pki.clientKey, pki.clientCertificate
    return TLSSettings(key, certificate, **kwargs)


def contextOptions(context: SSL.Context) -> int:
    """
    The option bits set on an OpenSSL context.
    """
    return context.set_options(0)


class LogCapture:
    """
    The text of every log event emitted while it is installed.
    """

    def __init__(self, testCase):
        self.lines = []
        globalLogPublisher.addObserver(self)
        testCase.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event):
        text = formatEvent(event)
        if text:
            self.lines.append(text)

    def matching(self, pattern):
        return [line for line in self.lines if re.search(pattern, line)]


# -- settings -----------------------------------------------------------------


class TLSSettingsTests(unittest.SynchronousTestCase):
    """
    L{TLSSettings} turns DCMTK's TLS options into OpenSSL contexts.
    """

    def setUp(self):
        self.pki = testPKI(self)

    def test_defaultProfile(self):
        """
        The default profile is the non-downgrading BCP 195 one: DCMTK's four suites, strongest first, TLS 1.2 and 1.3.
        """
        settings = serverSettings(self.pki)
        self.assertEqual(settings.profile, "bcp195-nd")
        self.assertEqual(
            settings.cipherString(),
            "ECDHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256",
        )
        self.assertEqual(settings.cipherString(), BCP195_CIPHERS)
        options = contextOptions(settings.certificateOptions(isServer=True).getContext())
        self.assertTrue(options & SSL.OP_NO_TLSv1)
        self.assertTrue(options & SSL.OP_NO_TLSv1_1)
        self.assertFalse(options & SSL.OP_NO_TLSv1_3)

    def test_extendedProfile(self):
        """
        The extended BCP 195 profile adds the ECDSA suites and turns TLS 1.3 off.
        """
        settings = serverSettings(self.pki, profile="bcp195-ex")
        self.assertIn("ECDHE-ECDSA-AES128-GCM-SHA256", settings.cipherString().split(":"))
        options = contextOptions(settings.certificateOptions(isServer=True).getContext())
        self.assertTrue(options & SSL.OP_NO_TLSv1_3)
        self.assertTrue(options & SSL.OP_NO_TLSv1_1)

    def test_downgradingProfile(self):
        """
        The BCP 195 profile also offers TLS_RSA_WITH_AES_128_CBC_SHA and TLS 1.0, at OpenSSL security level 0.
        """
        settings = serverSettings(self.pki, profile="bcp195")
        text = settings.cipherString()
        self.assertTrue(text.startswith("@SECLEVEL=0:"), text)
        self.assertIn("AES128-SHA", text.split(":"))
        options = contextOptions(settings.certificateOptions(isServer=True).getContext())
        self.assertFalse(options & SSL.OP_NO_TLSv1)
        self.assertFalse(options & SSL.OP_NO_TLSv1_3)

    def test_nullProfile(self):
        """
        The retired null profile offers only TLS_RSA_WITH_NULL_SHA, TLS 1.2 at most, at security level 0.
        """
        settings = serverSettings(self.pki, profile="null")
        self.assertEqual(settings.cipherString(), "@SECLEVEL=0:NULL-SHA")
        options = contextOptions(settings.certificateOptions(isServer=True).getContext())
        self.assertTrue(options & SSL.OP_NO_TLSv1_3)

    def test_basicProfile(self):
        """
        The retired basic profile needs 3DES: it works where OpenSSL has it and is refused, saying so, where not.
        """
        settings = serverSettings(self.pki, profile="basic")
        if "DES-CBC3-SHA" in availableSuites():
            self.assertEqual(settings.cipherString(), "@SECLEVEL=0:DES-CBC3-SHA")
        else:
            error = self.assertRaises(TLSConfigurationError, settings.certificateOptions, isServer=True)
            self.assertIn("TLS_RSA_WITH_3DES_EDE_CBC_SHA", str(error))
            self.assertEqual(error.setting, "profile")

    def test_unknownProfile(self):
        """
        An unknown profile name is refused with the list of known ones.
        """
        error = self.assertRaises(TLSConfigurationError, serverSettings(self.pki, profile="fast").certificateOptions, True)
        self.assertIn("bcp195-nd", str(error))

    def test_extraCipherSuites(self):
        """
        Extra suites by IANA name (DCMTK's +cs) or OpenSSL name follow the profile's.
        """
        settings = serverSettings(self.pki, ciphers=["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "AES256-GCM-SHA384"])
        self.assertEqual(settings.cipherString().split(":")[-2:], ["ECDHE-RSA-AES128-SHA256", "AES256-GCM-SHA384"])

    def test_extraSuitesForbidden(self):
        """
        The extended profile allows no extra suites, as in DCMTK.
        """
        settings = serverSettings(self.pki, profile="bcp195-ex", ciphers=["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"])
        error = self.assertRaises(TLSConfigurationError, settings.cipherString)
        self.assertEqual(error.setting, "ciphers")

    def test_nullSuiteRefused(self):
        """
        An unencrypted suite cannot be added to an encrypting profile.
        """
        settings = serverSettings(self.pki, ciphers=["TLS_RSA_WITH_NULL_SHA"])
        self.assertIn("does not encrypt", str(self.assertRaises(TLSConfigurationError, settings.cipherString)))

    def test_unusableCipherString(self):
        """
        A cipher string OpenSSL matches nothing with is refused.
        """
        settings = serverSettings(self.pki, profile="null", ciphers=["NO-SUCH-CIPHER"])
        self.assertRaises(TLSConfigurationError, settings.cipherString)

    def test_keyMismatch(self):
        """
        A certificate that does not belong to the key is refused, naming both files.
        """
        settings = TLSSettings(self.pki.clientKey, self.pki.serverCertificate, trusted=[self.pki.caCertificate])
        error = self.assertRaises(TLSConfigurationError, settings.certificateOptions, isServer=True)
        self.assertIn(self.pki.serverCertificate, str(error))
        self.assertIn(self.pki.clientKey, str(error))

    def test_missingTrusted(self):
        """
        Verification without trusted certificates is refused; without verification none are needed.
        """
        self.assertRaises(TLSConfigurationError, serverSettings(self.pki, trusted=[]).certificateOptions, True)
        options = serverSettings(self.pki, trusted=[], verify=VERIFY_NONE).certificateOptions(True)
        self.assertFalse(options.verify)

    def test_verifyModes(self):
        """
        require asks for and requires a certificate; optional asks; none does not ask.
        """
        require = serverSettings(self.pki).certificateOptions(True).getContext()
        optional = serverSettings(self.pki, verify=VERIFY_OPTIONAL).certificateOptions(True).getContext()
        none = serverSettings(self.pki, verify=VERIFY_NONE).certificateOptions(True).getContext()
        both = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        self.assertEqual(require.get_verify_mode() & both, both)
        self.assertEqual(optional.get_verify_mode() & both, SSL.VERIFY_PEER)
        self.assertEqual(none.get_verify_mode(), SSL.VERIFY_NONE)

    def test_caBundle(self):
        """
        Every certificate of a CA file is trusted, and a directory's too, each once.
        """
        directory = makeDirectory(self)
        bundle = os.path.join(directory, "bundle.pem")
        with open(bundle, "wb") as f:
            f.write(self.pki.ca.certificateBytes() + self.pki.otherCA.certificateBytes())
        other = makeDirectory(self)
        with open(os.path.join(other, "other.crt"), "wb") as f:
            f.write(self.pki.otherCA.certificateBytes())
        settings = serverSettings(self.pki, trusted=[bundle], trustedDirectories=[other])
        subjects = sorted(c.get_subject().CN for c in settings.trustedCertificates())
        self.assertEqual(subjects, ["dicomd test CA", "other test CA"])

    def test_crlImpliesLeafCheck(self):
        """
        A revocation list without a check mode checks the leaf (DCMTK's +crl implies +crv).
        """
        self.assertEqual(serverSettings(self.pki, crls=[self.pki.crl]).effectiveCRLCheck(), CRL_LEAF)
        self.assertEqual(serverSettings(self.pki, crls=[self.pki.crl], crlCheck=CRL_CHAIN).effectiveCRLCheck(), CRL_CHAIN)
        self.assertIsNone(serverSettings(self.pki).effectiveCRLCheck())

    def test_crlCheckNeedsList(self):
        """
        CRL checking without any revocation list is refused.
        """
        error = self.assertRaises(TLSConfigurationError, serverSettings(self.pki, crlCheck=CRL_LEAF).certificateOptions, True)
        self.assertEqual(error.setting, "crls")

    def test_crlInDirectory(self):
        """
        A *.crl file in a trusted directory is a revocation list.
        """
        directory = makeDirectory(self)
        with open(os.path.join(directory, "ca.pem"), "wb") as f:
            f.write(self.pki.ca.certificateBytes())
        writeCRL(os.path.join(directory, "ca.crl"), self.pki.ca.revocationList([self.pki.revoked]), der=True)
        settings = serverSettings(self.pki, trusted=[], trustedDirectories=[directory], crlCheck=CRL_LEAF)
        [crl] = settings.revocationLists()
        self.assertEqual([entry.serial_number for entry in crl], [self.pki.revoked.certificate.serial_number])
        self.assertIsNotNone(settings.certificateOptions(True).getContext())

    def test_unreadableCRL(self):
        """
        A revocation list that is not one is refused, naming the file.
        """
        settings = serverSettings(self.pki, crls=[self.pki.caCertificate])
        error = self.assertRaises(TLSConfigurationError, settings.certificateOptions, True)
        self.assertIn(self.pki.caCertificate, str(error))
        self.assertEqual(error.setting, "crls")

    def test_dhParameters(self):
        """
        DH parameters are checked and loaded; the extended profile refuses fewer than 2048 bits.
        """
        directory = makeDirectory(self)
        good = writeDHParameters(os.path.join(directory, "dh2048.pem"))
        small = writeDHParameters(os.path.join(directory, "dh1024.pem"), bits=1024)
        self.assertIsNotNone(serverSettings(self.pki, dhParameters=good, profile="bcp195-ex").certificateOptions(True).getContext())
        error = self.assertRaises(
            TLSConfigurationError, serverSettings(self.pki, dhParameters=small, profile="bcp195-ex").certificateOptions, True
        )
        self.assertIn("2048", str(error))
        error = self.assertRaises(
            TLSConfigurationError, serverSettings(self.pki, dhParameters=self.pki.caCertificate).certificateOptions, True
        )
        self.assertEqual(error.setting, "dhParameters")

    def test_derFiles(self):
        """
        DER keys, certificates and CA certificates load with der=True (DCMTK's -der).
        """
        directory = makeDirectory(self)
        key, certificate = self.pki.server.write(directory, "server", der=True)
        ca = os.path.join(directory, "ca.der")
        with open(ca, "wb") as f:
            f.write(self.pki.ca.certificateBytes(der=True))
        options = TLSSettings(key, certificate, trusted=[ca], der=True).certificateOptions(True)
        self.assertEqual(options.certificate.get_subject().CN, "dicomd server")

    def test_encryptedKey(self):
        """
        An encrypted key needs its password (DCMTK's +pw); a wrong one is refused.
        """
        directory = makeDirectory(self)
        key, certificate = self.pki.server.write(directory, "server", password="secret")
        self.assertIsNotNone(TLSSettings(key, certificate, verify=VERIFY_NONE, password="secret").certificateOptions(True))
        error = self.assertRaises(
            TLSConfigurationError, TLSSettings(key, certificate, verify=VERIFY_NONE, password="wrong").certificateOptions, True
        )
        self.assertEqual(error.setting, "privateKey")

    def test_sniSettings(self):
        """
        sniRequired needs sni, and sni must be a host name.
        """
        self.assertEqual(
            self.assertRaises(TLSConfigurationError, serverSettings(self.pki, sniRequired=True).certificateOptions, True).setting,
            "sniRequired",
        )
        self.assertEqual(
            self.assertRaises(TLSConfigurationError, serverSettings(self.pki, sni="not a name").certificateOptions, True).setting,
            "sni",
        )

    def test_hostNameCheck(self):
        """
        A client checks the server's host name only when asked to, only for
        the host it is given, and only with a verified chain.
        """
        checked = clientSettings(self.pki, verifyHostName=True)
        self.assertEqual(checked.certificateOptions(isServer=False, hostName="127.0.0.1").hostName, "127.0.0.1")
        self.assertIsNone(checked.certificateOptions(isServer=False).hostName)
        self.assertIsNone(clientSettings(self.pki).certificateOptions(isServer=False, hostName="127.0.0.1").hostName)
        unverified = clientSettings(self.pki, verify=VERIFY_NONE, verifyHostName=True)
        self.assertIsNone(unverified.certificateOptions(isServer=False, hostName="127.0.0.1").hostName)
        error = self.assertRaises(TLSConfigurationError, checked.certificateOptions, False, "not_a host")
        self.assertEqual(error.setting, "verifyHostName")
        self.assertIn("'not_a host'", str(error))

    def test_anonymousClient(self):
        """
        A client needs no key (DCMTK's +tla); a server does.
        """
        options = TLSSettings(trusted=[self.pki.caCertificate]).certificateOptions(isServer=False)
        self.assertIsNone(options.certificate)
        self.assertRaises(TLSConfigurationError, TLSSettings(trusted=[self.pki.caCertificate]).certificateOptions, True)

    def test_describeCipherSuites(self):
        """
        The +cc listing names the IANA suites and every profile.
        """
        text = describeCipherSuites()
        self.assertIn("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", text)
        for name, profile in PROFILES.items():
            self.assertIn(name, text)
            self.assertIn(profile.options[0], text)


# -- AE titles bound to certificates -----------------------------------------------


class CertificateBindingTests(unittest.SynchronousTestCase):
    """
    Calling AE titles bound to certificates (L{certificateBindingAllows}).
    """

    def setUp(self):
        self.pki = testPKI(self)

    def test_matchFingerprint(self):
        """
        sha256:HEX matches the certificate's SHA-256 fingerprint, with or without colons.
        """
        fingerprint = self.pki.client.fingerprint
        self.assertTrue(certificateMatches("sha256:" + fingerprint, self.pki.client.certificate))
        withColons = ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
        self.assertTrue(certificateMatches("SHA256:" + withColons, self.pki.client.certificate))
        self.assertFalse(certificateMatches("sha256:" + fingerprint, self.pki.server.certificate))

    def test_matchCommonName(self):
        """
        CN=name and a bare name match the subject's common name.
        """
        self.assertTrue(certificateMatches("CN=dicomd client", self.pki.client.certificate))
        self.assertTrue(certificateMatches("dicomd client", self.pki.client.certificate))
        self.assertFalse(certificateMatches("CN=dicomd", self.pki.client.certificate))

    def test_unboundTitle(self):
        """
        An AE title without a binding may be used with any certificate or none.
        """
        bindings = {"MODALITY": ["CN=dicomd client"]}
        self.assertTrue(certificateBindingAllows(bindings, "OTHER", self.pki.server.certificate))
        self.assertTrue(certificateBindingAllows(bindings, "OTHER", None))

    def test_boundTitle(self):
        """
        A bound AE title needs one of its certificates.
        """
        bindings = {"MODALITY": ["CN=dicomd client", "sha256:" + self.pki.revoked.fingerprint]}
        self.assertTrue(certificateBindingAllows(bindings, "MODALITY", self.pki.client.certificate))
        self.assertTrue(certificateBindingAllows(bindings, "MODALITY ", self.pki.revoked.certificate))
        self.assertFalse(certificateBindingAllows(bindings, "MODALITY", self.pki.otherClient.certificate))
        self.assertFalse(certificateBindingAllows(bindings, "MODALITY", None))

    def test_readBindings(self):
        """
        The binding file has an AE title and a certificate per line; comments and quotes work; mistakes name the line.
        """
        path = os.path.join(makeDirectory(self), "bindings")
        with open(path, "w") as f:
            f.write('# modality\nMODALITY  "CN=dicomd client"\nMODALITY sha256:00ff\n"MY AE" CN=x  # note\n\n')
        self.assertEqual(
            readCertificateBindings(path),
            {"MODALITY": ["CN=dicomd client", "sha256:00ff"], "MY AE": ["CN=x"]},
        )
        with open(path, "w") as f:
            f.write("MODALITY\n")
        self.assertIn("line 1", str(self.assertRaises(TLSConfigurationError, readCertificateBindings, path)))


# -- the endpoint string ---------------------------------------------------------------


class EndpointStringTests(unittest.SynchronousTestCase):
    """
    C{dicomtls:} endpoint strings.
    """

    def setUp(self):
        self.pki = testPKI(self)
        from twisted.internet import reactor

        self.reactor = reactor

    def parse(self, options: str):
        base = "dicomtls:104:privateKey=%s:certKey=%s" % (self.pki.serverKey, self.pki.serverCertificate)
        return serverFromString(self.reactor, base + (":" + options if options else ""))

    def test_plugin(self):
        """
        The parser is found as a Twisted plugin, by its prefix.
        """
        prefixes = [parser.prefix for parser in getPlugins(IStreamServerEndpointStringParser)]
        self.assertIn("dicomtls", prefixes)

    def test_everyOption(self):
        """
        Every option reaches the settings.
        """
        directory = makeDirectory(self)
        dh = writeDHParameters(os.path.join(directory, "dh.pem"))
        cas = makeDirectory(self)
        with open(os.path.join(cas, "other.pem"), "wb") as f:
            f.write(self.pki.otherCA.certificateBytes())
        bindings = os.path.join(directory, "bindings")
        with open(bindings, "w") as f:
            f.write("MODALITY CN=dicomd\\ client\n")
        endpoint = self.parse(
            "caCerts=%s,%s:verify=optional:profile=bcp195-rfc8996:ciphers=ECDHE-RSA-AES128-SHA256:"
            "dhParameters=%s:crl=%s:crlCheck=chain:sni=dicomd.example:sniRequired=yes:aeCertificates=%s:"
            "interface=127.0.0.1:backlog=7"
            % (self.pki.caCertificate, cas, dh, self.pki.crl, bindings)
        )
        self.assertIsInstance(endpoint, DICOMTLSServerEndpoint)
        settings = endpoint.settings
        self.assertEqual(settings.trusted, [self.pki.caCertificate])
        self.assertEqual(settings.trustedDirectories, [cas])
        self.assertEqual(settings.verify, VERIFY_OPTIONAL)
        self.assertEqual(settings.profile, "bcp195-rfc8996")
        self.assertEqual(settings.ciphers, ["ECDHE-RSA-AES128-SHA256"])
        self.assertEqual(settings.dhParameters, dh)
        self.assertEqual(settings.crls, [self.pki.crl])
        self.assertEqual(settings.crlCheck, CRL_CHAIN)
        self.assertEqual((settings.sni, settings.sniRequired), ("dicomd.example", True))
        self.assertEqual(settings.certificateBindings, {"MODALITY": ["CN=dicomd client"]})
        self.assertEqual((endpoint.port, endpoint.interface), (104, "127.0.0.1"))
        self.assertEqual(endpoint.tlsOptions.crlCheck, CRL_CHAIN)
        self.assertEqual(endpoint.tlsOptions.serverName, "dicomd.example")

    def test_defaults(self):
        """
        Without options: verification required, the default profile, certKey the privateKey file.
        """
        combined = os.path.join(makeDirectory(self), "server.pem")
        with open(combined, "wb") as f:
            f.write(self.pki.server.keyBytes() + self.pki.server.certificateBytes())
        endpoint = serverFromString(self.reactor, "dicomtls:2762:privateKey=%s:caCerts=%s" % (combined, self.pki.caCertificate))
        self.assertEqual(endpoint.settings.certificate, combined)
        self.assertEqual(endpoint.settings.verify, "require")
        self.assertEqual(endpoint.settings.profile, "bcp195-nd")
        self.assertTrue(endpoint.tlsOptions.requireCertificate)

    def assertRefused(self, options: str, *fragments: str):
        error = self.assertRaises(ValueError, self.parse, options)
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        return error

    def test_missingFile(self):
        """
        A file that does not exist is named with its option.
        """
        self.assertRefused("caCerts=/no/such/ca.pem", "caCerts=/no/such/ca.pem", "No such file")
        self.assertRefused("caCerts=%s:crl=/no/such.crl" % (self.pki.caCertificate,), "crl=/no/such.crl")
        self.assertRefused("caCerts=%s:dhParameters=/no/dh.pem" % (self.pki.caCertificate,), "dhParameters=")

    def test_badValues(self):
        """
        Bad values are refused naming the option.
        """
        ca = "caCerts=" + self.pki.caCertificate
        self.assertRefused(ca + ":verify=maybe", "verify=maybe")
        self.assertRefused(ca + ":profile=fast", "profile=fast")
        self.assertRefused(ca + ":crlCheck=all", "crlCheck=all")
        self.assertRefused(ca + ":der=perhaps", "der=perhaps")
        self.assertRefused(ca + ":sni=bad\\:name", "sni=")
        self.assertRefused(ca + ":colour=blue", "unknown option colour=")

    def test_unavailableProfile(self):
        """
        profile=basic is refused, naming the option and 3DES, where OpenSSL lacks 3DES, and accepted where it has it.
        """
        ca = "caCerts=" + self.pki.caCertificate
        if "DES-CBC3-SHA" in availableSuites():
            self.assertEqual(self.parse(ca + ":profile=basic").settings.profile, "basic")
        else:
            self.assertRefused(ca + ":profile=basic", "profile=basic", "3DES")

    def test_noVerificationWithoutCA(self):
        """
        verify=require without caCerts is refused; verify=none needs none.
        """
        self.assertRefused("", "caCerts=", "trusted certificates")
        self.assertEqual(self.parse("verify=none").settings.verify, VERIFY_NONE)

    def test_portRequired(self):
        """
        The port is required and must be a number.
        """
        parser = DICOMTLSServerParser()
        self.assertRaises(ValueError, parser.parseStreamServer, self.reactor, privateKey=self.pki.serverKey)
        self.assertIn("'http'", str(self.assertRaises(ValueError, parser.parseStreamServer, self.reactor, "http")))
        self.assertRaises(ValueError, parser.parseStreamServer, self.reactor, "104")

    def test_ipv6Interface(self):
        """
        An IPv6 interface listens with TCP over IPv6.
        """
        endpoint = self.parse("verify=none:interface=\\:\\:1")
        self.assertEqual(endpoint.interface, "::1")
        self.assertEqual(type(endpoint._tcp).__name__, "TCP6ServerEndpoint")


# -- in the test's reactor ----------------------------------------------------------------


@defer.inlineCallbacks
def listenTLS(testCase, options: str, entity=None):
    """
    Listen with dicomd's acceptor (C-ECHO) on C{dicomtls:0:...} on
    127.0.0.1, built from the endpoint string; the cleanup closes it.

    @return: a L{Deferred} firing with C{(port number, AcceptorFactory)}.
    """
    from twisted.internet import reactor

    factory = AcceptorFactory(entity or verificationEntity(), reactor=reactor)
    wrapper = WrappingFactory(factory)
    endpoint = serverFromString(reactor, "dicomtls:0:interface=%s:%s" % (LOCALHOST, options))
    listening = yield endpoint.listen(wrapper)

    @defer.inlineCallbacks
    def close():
        yield listening.stopListening()
        for connection in list(wrapper.protocols):
            connection.transport.abortConnection()
        yield waitUntil(lambda: not wrapper.protocols, timeout=5)

    testCase.addCleanup(close)
    return listening.getHost().port, factory


def serverOptions(pki, extra: str = "") -> str:
    """
    The C{dicomtls:} options of the test server, trusting the test CA.
    """
    text = "privateKey=%s:certKey=%s:caCerts=%s" % (pki.serverKey, pki.serverCertificate, pki.caCertificate)
    return text + (":" + extra if extra else "")


@defer.inlineCallbacks
def echoOverTLS(port: int, settings: TLSSettings, callingAETitle: str = "ECHOSCU"):
    """
    Associate with our requestor over TLS, C-ECHO and release.

    @return: a L{Deferred} firing with the C-ECHO status.
    """
    from twisted.internet import reactor

    association = yield connect(
        clientEndpoint(reactor, LOCALHOST, port, settings, timeout=5),
        calledAETitle="DICOMD",
        callingAETitle=callingAETitle,
        presentationContexts=[(VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN])],
        acseTimeout=10,
        reactor=reactor,
    )
    status = yield association.echo()
    yield association.release()
    return status


class InProcessTLSTests(unittest.TestCase):
    """
    dicomd's acceptor on a C{dicomtls:} endpoint and dicomd's requestor over
    TLS, in the test's reactor.
    """

    timeout = 30

    def setUp(self):
        self.pki = testPKI(self)
        self.log = LogCapture(self)

    @defer.inlineCallbacks
    def test_echoLogsSubject(self):
        """
        Mutual TLS works, and the association's log lines name the client certificate's subject.
        """
        port, factory = yield listenTLS(self, serverOptions(self.pki))
        status = yield echoOverTLS(port, clientSettings(self.pki))
        self.assertEqual(status, 0)
        yield waitUntil(lambda: self.log.matching(r"ECHOSCU -> DICOMD .* released"), timeout=5)
        accepted = self.log.matching(r"Association ECHOSCU -> DICOMD from .* accepted")
        self.assertEqual(len(accepted), 1, self.log.lines)
        self.assertIn("(TLS: CN=dicomd client,O=dicomd tests)", accepted[0])
        self.assertIn("(TLS: CN=dicomd client,O=dicomd tests)", self.log.matching(r"ECHOSCU -> DICOMD .* released")[0])

    @defer.inlineCallbacks
    def test_optionalWithoutCertificate(self):
        """
        With verify=optional a client without a certificate is accepted and logged as such.
        """
        port, factory = yield listenTLS(self, serverOptions(self.pki, "verify=optional"))
        status = yield echoOverTLS(port, TLSSettings(trusted=[self.pki.caCertificate]))
        self.assertEqual(status, 0)
        yield waitUntil(lambda: self.log.matching(r"accepted"), timeout=5)
        self.assertIn("(TLS: no certificate)", self.log.matching(r"accepted")[0])

    @defer.inlineCallbacks
    def assertRefused(self, serverExtra: str, settings: TLSSettings, logged: str):
        port, factory = yield listenTLS(self, serverOptions(self.pki, serverExtra))
        yield self.assertFailure(echoOverTLS(port, settings), AssociationAborted)
        yield waitUntil(lambda: self.log.matching(logged), timeout=5, message=logged + "\n" + "\n".join(self.log.lines))
        self.assertEqual(self.log.matching("accepted"), [])

    def test_requireRefusesAnonymous(self):
        """
        With verify=require a client without a certificate fails the handshake, and the server says why.
        """
        return self.assertRefused("", TLSSettings(trusted=[self.pki.caCertificate]), r"TLS connection with .* failed: .*certificate")

    def test_requireRefusesOtherCA(self):
        """
        A client certificate from another CA fails the handshake.
        """
        settings = clientSettings(self.pki, self.pki.otherClientKey, self.pki.otherClientCertificate)
        return self.assertRefused("", settings, r"TLS connection with .* failed: certificate verify failed")

    def test_revokedRefused(self):
        """
        A revoked client certificate fails the handshake when the server has the CRL.
        """
        settings = clientSettings(self.pki, self.pki.revokedKey, self.pki.revokedCertificate)
        return self.assertRefused("crl=" + self.pki.crl, settings, r"TLS connection with .* failed: certificate verify failed")

    @defer.inlineCallbacks
    def test_notRevokedAccepted(self):
        """
        A certificate the CRL does not list is accepted, with leaf and with chain checking.
        """
        for check in ("leaf", "chain"):
            port, factory = yield listenTLS(self, serverOptions(self.pki, "crl=%s:crlCheck=%s" % (self.pki.crl, check)))
            status = yield echoOverTLS(port, clientSettings(self.pki))
            self.assertEqual(status, 0)

    @defer.inlineCallbacks
    def test_revokedWithoutCRL(self):
        """
        Without a CRL the revoked certificate still passes: revocation is only known from CRLs.
        """
        port, factory = yield listenTLS(self, serverOptions(self.pki))
        status = yield echoOverTLS(port, clientSettings(self.pki, self.pki.revokedKey, self.pki.revokedCertificate))
        self.assertEqual(status, 0)

    def test_clientRefusesUnknownServer(self):
        """
        Our client refuses a server whose certificate its CAs did not issue.
        """
        settings = clientSettings(self.pki, trusted=[self.pki.otherCACertificate])
        return self.assertRefused("", settings, r"TLS connection with .* failed")

    @defer.inlineCallbacks
    def test_sniMatch(self):
        """
        A client asking for the expected server name (any case) or for none is accepted.
        """
        port, factory = yield listenTLS(self, serverOptions(self.pki, "sni=dicomd.example"))
        self.assertEqual((yield echoOverTLS(port, clientSettings(self.pki, sni="DICOMD.example"))), 0)
        self.assertEqual((yield echoOverTLS(port, clientSettings(self.pki))), 0)

    def test_sniMismatch(self):
        """
        A client asking for another server name fails the handshake, and the server logs both names.
        """
        return self.assertRefused(
            "sni=dicomd.example",
            clientSettings(self.pki, sni="pacs.example"),
            r"client asked for server name 'pacs.example', this server is dicomd.example",
        )

    def test_sniRequired(self):
        """
        With sniRequired=yes a client that sends no server name fails the handshake.
        """
        return self.assertRefused("sni=dicomd.example:sniRequired=yes", clientSettings(self.pki), r"none \(no SNI\)")

    @defer.inlineCallbacks
    def test_profiles(self):
        """
        Our client and server agree on each profile this OpenSSL offers, and the null profile does not encrypt.
        """
        for name, profile in PROFILES.items():
            if profile.unavailable():
                continue
            port, factory = yield listenTLS(self, serverOptions(self.pki, "profile=" + name))
            status = yield echoOverTLS(port, clientSettings(self.pki, profile=name))
            self.assertEqual(status, 0, name)

    @defer.inlineCallbacks
    def test_profileMismatch(self):
        """
        A null-profile client cannot talk to a BCP 195 server.
        """
        port, factory = yield listenTLS(self, serverOptions(self.pki))
        yield self.assertFailure(echoOverTLS(port, clientSettings(self.pki, profile="null")), AssociationAborted)

    @defer.inlineCallbacks
    def test_dhParameters(self):
        """
        A client offering only a DHE suite gets through to a server given DH parameters (dhParameters=).
        """
        directory = makeDirectory(self)
        dh = writeDHParameters(os.path.join(directory, "dh.pem"))
        options = clientSettings(self.pki, profile="bcp195-ex").certificateOptions(isServer=False)
        options.getContext().set_cipher_list(b"DHE-RSA-AES128-GCM-SHA256")
        port, factory = yield listenTLS(self, serverOptions(self.pki, "profile=bcp195-ex:dhParameters=" + dh))
        self.assertEqual((yield echoOverTLS(port, options)), 0)

    @defer.inlineCallbacks
    def test_aeBoundToCertificate(self):
        """
        A calling AE title bound to another certificate is rejected (calling AE title not recognized); others pass.
        """
        bindings = os.path.join(makeDirectory(self), "bindings")
        with open(bindings, "w") as f:
            f.write('MODALITY "CN=dicomd client"\nARCHIVE sha256:%s\n' % (self.pki.revoked.fingerprint,))
        port, factory = yield listenTLS(self, serverOptions(self.pki, "aeCertificates=" + bindings))
        self.assertEqual((yield echoOverTLS(port, clientSettings(self.pki), "MODALITY")), 0)
        self.assertEqual((yield echoOverTLS(port, clientSettings(self.pki), "ANYONE")), 0)
        failure = yield self.assertFailure(echoOverTLS(port, clientSettings(self.pki), "ARCHIVE"), AssociationRejected)
        self.assertEqual(failure.reject.reason, 3)
        self.assertEqual(failure.reject.source, 1)
        rejected = self.log.matching(r"ARCHIVE -> DICOMD .* rejected: calling AE title not recognized")
        self.assertEqual(len(rejected), 1, self.log.lines)
        self.assertIn("(TLS: CN=dicomd client,O=dicomd tests)", rejected[0])

    @defer.inlineCallbacks
    def test_unauthenticatedClientsWarned(self):
        """
        Listening with verify=none or verify=optional logs one warning naming the endpoint and that clients are not
        authenticated; verify=require logs none.
        """
        for verify in ("none", "optional"):
            port, factory = yield listenTLS(self, serverOptions(self.pki, "verify=" + verify))
            warnings = self.log.matching(r"^dicomtls: endpoint on 127\.0\.0\.1:%d has verify=%s: clients are not authenticated" % (port, verify))
            self.assertEqual(len(warnings), 1, self.log.lines)
        port, factory = yield listenTLS(self, serverOptions(self.pki))
        self.assertEqual(self.log.matching(r"127\.0\.0\.1:%d" % (port,)), [])
        self.assertEqual(len(self.log.matching("not authenticated")), 2, self.log.lines)

    def test_subjectOfPlainTransport(self):
        """
        A transport that is not TLS has no certificate subject.
        """
        from twisted.internet.testing import StringTransport

        self.assertIsNone(peerCertificateSubject(StringTransport()))

    def test_describeTLSError(self):
        """
        OpenSSL errors are described by their reasons.
        """
        error = SSL.Error([("SSL routines", "", "certificate verify failed"), ("SSL routines", "", "x")])
        self.assertEqual(describeTLSError(error), "certificate verify failed; x")
        self.assertEqual(describeTLSError(SSL.Error()), "Error")


class HostNameTests(unittest.TestCase):
    """
    The C-MOVE peers of the configuration file are reached as
    L{dicomd.peers.destinationTable} reaches them: the server's
    certificate must name the peer's host unless its tls table says
    C{verify-host-name = false}.
    """

    timeout = 30

    def setUp(self):
        self.pki = testPKI(self)
        self.log = LogCapture(self)
        self.directory = makeDirectory(self)
        # A certificate of the test CA for another host only.
        self.elsewhereKey, self.elsewhereCertificate = self.pki.ca.issue(
            "pacs server", serverNames=("pacs.example.org",)
        ).write(self.directory, "pacs")

    def destinations(self, *peers):
        """
        The C-MOVE destinations of a configuration file with these peers
        on 127.0.0.1: C{(title, port, trusted CA, further tls keys)}.
        """
        from twisted.internet import reactor

        text = ""
        for title, port, ca, extra in peers:
            text += '[[peer]]\ntitle = "%s"\nhost = "127.0.0.1"\nport = %d\n' % (title, port)
            text += 'tls = { certificate = "%s", private-key = "%s", ca = "%s"%s }\n' % (
                self.pki.clientCertificate,
                self.pki.clientKey,
                ca,
                extra,
            )
        path = os.path.join(self.directory, "dicomd.toml")
        with open(path, "w") as f:
            f.write(text)
        peers = [Peer(peer.title, peer.host, peer.port, peer.tls) for peer in readConfig(path).peers]
        return destinationTable(peers, "DICOMD", reactor=reactor)

    @defer.inlineCallbacks
    def echo(self, destination):
        association = yield destination.connect([(VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN])])
        status = yield association.echo()
        yield association.release()
        return status

    @defer.inlineCallbacks
    def test_otherHostRefused(self):
        """
        A peer whose certificate names another host fails the handshake, and the log says why: the names it has,
        not the host dicomd connected to.
        """
        port, factory = yield listenTLS(
            self, "privateKey=%s:certKey=%s:caCerts=%s" % (self.elsewhereKey, self.elsewhereCertificate, self.pki.caCertificate)
        )
        destination = self.destinations(("PACS", port, self.pki.caCertificate, ""))("PACS")
        yield self.assertFailure(self.echo(destination), AssociationAborted)
        self.assertEqual(
            self.log.matching("refused"),
            [
                "TLS connection to 127.0.0.1 refused: the server's certificate (CN=pacs server,O=dicomd tests)"
                " is for pacs.example.org, not 127.0.0.1"
            ],
        )
        yield waitUntil(lambda: self.log.matching(r"TLS connection with .* failed"), timeout=5, message="\n".join(self.log.lines))
        self.assertEqual(self.log.matching("accepted"), [])

    @defer.inlineCallbacks
    def test_rightHost(self):
        """
        A peer whose certificate names the host (here its address, 127.0.0.1) is reached.
        """
        port, factory = yield listenTLS(self, serverOptions(self.pki))
        destination = self.destinations(("PACS", port, self.pki.caCertificate, ""))("PACS")
        self.assertEqual((yield self.echo(destination)), 0)
        self.assertEqual(self.log.matching("refused"), [])

    @defer.inlineCallbacks
    def test_checkOff(self):
        """
        With verify-host-name = false the certificate of another host is accepted (its chain is still verified).
        """
        port, factory = yield listenTLS(
            self, "privateKey=%s:certKey=%s:caCerts=%s" % (self.elsewhereKey, self.elsewhereCertificate, self.pki.caCertificate)
        )
        destinations = self.destinations(
            ("PACS", port, self.pki.caCertificate, ", verify-host-name = false"),
            ("OTHERCA", port, self.pki.otherCACertificate, ", verify-host-name = false"),
        )
        self.assertEqual((yield self.echo(destinations("PACS"))), 0)
        self.assertEqual(self.log.matching("refused"), [])
        yield self.assertFailure(self.echo(destinations("OTHERCA")), AssociationAborted)


# -- DCMTK's options in the front doors ----------------------------------------------------


class CommandLineTests(unittest.SynchronousTestCase):
    """
    DCMTK's TLS options (L{dicomd.cli.common.tlsOptions}) reach
    L{TLSSettings}.
    """

    def setUp(self):
        self.pki = testPKI(self)

    def settings(self, commandLine, *argv):
        from dicomd.cli.common import tlsSettings

        return tlsSettings(commandLine.parse(list(argv)))

    def test_serverOptions(self):
        """
        storescp's +crl, +cra, +pz, +cs, +dp, --expect-sni and -vc set the server settings.
        """
        from dicomd.cli import storescp

        settings = self.settings(
            storescp.COMMAND_LINE,
            "+tls", "k.pem", "c.pem", "+cf", "ca.pem", "+cd", "certs", "+crl", "a.crl", "+crl", "b.crl", "+cra",
            "+pz", "+cs", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "+dp", "dh.pem", "--expect-sni", "pacs.example",
            "-vc", "+pw", "secret", "-der", "104",
        )
        self.assertEqual((settings.privateKey, settings.certificate), ("k.pem", "c.pem"))
        self.assertEqual((settings.trusted, settings.trustedDirectories), (["ca.pem"], ["certs"]))
        self.assertEqual((settings.crls, settings.crlCheck), (["a.crl", "b.crl"], CRL_CHAIN))
        self.assertEqual(settings.profile, "bcp195-ex")
        self.assertEqual(settings.ciphers, ["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"])
        self.assertEqual(settings.dhParameters, "dh.pem")
        self.assertEqual(settings.sni, "pacs.example")
        self.assertEqual((settings.verify, settings.password, settings.der), (VERIFY_OPTIONAL, "secret", True))

    def test_profileOptions(self):
        """
        Each of DCMTK's profile options selects its profile; +crv checks the leaf.
        """
        from dicomd.cli import storescp

        for name, profile in PROFILES.items():
            for spelling in profile.options:
                settings = self.settings(storescp.COMMAND_LINE, "+tls", "k", "c", spelling, "104")
                self.assertEqual(settings.profile, name, spelling)
        self.assertEqual(self.settings(storescp.COMMAND_LINE, "+tls", "k", "c", "+crv", "104").crlCheck, CRL_LEAF)
        self.assertEqual(self.settings(storescp.COMMAND_LINE, "+tls", "k", "c", "104").profile, "bcp195-nd")

    def test_clientOptions(self):
        """
        storescu has +tla and --request-sni, and, as DCMTK's, neither -vc nor +dp.
        """
        from dicomd.cli import storescu
        from dicomd.cli.options import UsageError

        settings = self.settings(storescu.COMMAND_LINE, "+tla", "+cf", "ca.pem", "--request-sni", "pacs.example", "+pn", "h", "1", "f")
        self.assertEqual((settings.privateKey, settings.sni, settings.profile), (None, "pacs.example", "null"))
        self.assertRaises(UsageError, storescu.COMMAND_LINE.parse, ["-vc", "h", "1", "f"])
        self.assertRaises(UsageError, storescu.COMMAND_LINE.parse, ["+dp", "dh.pem", "h", "1", "f"])

    def test_errorsNameTheOption(self):
        """
        A TLS setting that cannot be used is reported with the DCMTK option that set it.
        """
        from dicomd.cli import storescp
        from dicomd.cli.options import UsageError

        values = storescp.COMMAND_LINE.parse(
            ["+tls", self.pki.serverKey, self.pki.serverCertificate, "+cf", self.pki.caCertificate, "+crl", "/no/such.crl", "104"]
        )
        values["outputDirectory"] = makeDirectory(self)
        error = self.assertRaises(UsageError, storescp.validate, values)
        self.assertIn("+crl (--add-crl-file)", str(error))
        self.assertIn("/no/such.crl", str(error))

    def test_listCiphers(self):
        """
        +cc lists the supported suites and the profiles.
        """
        import io

        from dicomd.cli.common import listCiphers

        stream = io.StringIO()
        self.assertEqual(listCiphers(stream), 0)
        self.assertIn("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", stream.getvalue())
        self.assertIn("bcp195-nd", stream.getvalue())


# -- DCMTK ------------------------------------------------------------------------------


def dcmtkTLS(pki, key=None, certificate=None, *options):
    """
    DCMTK's C{+tls KEY CERT +cf ca.pem} (the test client by default).
    """
    return ["+tls", key or pki.clientKey, certificate or pki.clientCertificate, "+cf", pki.caCertificate] + list(options)


class DCMTKEchoTests(unittest.TestCase):
    """
    DCMTK's echoscu over TLS against dicomd's acceptor on a C{dicomtls:}
    endpoint.
    """

    timeout = 60

    def setUp(self):
        self.pki = testPKI(self)
        self.log = LogCapture(self)

    def echoscu(self, port, *options):
        return runCommand([dcmtk("echoscu"), "-aet", "DCMECHO"] + list(options) + [LOCALHOST, str(port)], env=dcmtkEnvironment())

    @defer.inlineCallbacks
    def test_echo(self):
        """
        echoscu +tls with the client certificate succeeds, and dicomd logs its subject.
        """
        port, factory = yield listenTLS(self, serverOptions(self.pki))
        result = yield self.echoscu(port, *dcmtkTLS(self.pki))
        self.assertEqual(result.exitCode, 0, result.describe())
        yield waitUntil(lambda: self.log.matching("DCMECHO -> .* released"), timeout=5)
        self.assertIn("(TLS: CN=dicomd client,O=dicomd tests)", self.log.matching("DCMECHO -> .* accepted")[0])

    @defer.inlineCallbacks
    def test_anonymousRefused(self):
        """
        echoscu +tla (no certificate) is refused with verify=require and accepted with verify=optional.
        """
        port, factory = yield listenTLS(self, serverOptions(self.pki))
        result = yield self.echoscu(port, "+tla", "+cf", self.pki.caCertificate)
        self.assertNotEqual(result.exitCode, 0, result.describe())
        self.assertEqual(self.log.matching("accepted"), [])
        port, factory = yield listenTLS(self, serverOptions(self.pki, "verify=optional"))
        result = yield self.echoscu(port, "+tla", "+cf", self.pki.caCertificate)
        self.assertEqual(result.exitCode, 0, result.describe())

    @defer.inlineCallbacks
    def test_otherCARefused(self):
        """
        echoscu with a certificate from another CA is refused.
        """
        port, factory = yield listenTLS(self, serverOptions(self.pki))
        result = yield self.echoscu(port, *dcmtkTLS(self.pki, self.pki.otherClientKey, self.pki.otherClientCertificate))
        self.assertNotEqual(result.exitCode, 0, result.describe())
        yield waitUntil(lambda: self.log.matching("TLS connection with .* failed"), timeout=5)
        self.assertEqual(self.log.matching("accepted"), [])

    @defer.inlineCallbacks
    def test_serverNotTrusted(self):
        """
        echoscu refuses dicomd when it does not trust dicomd's CA.
        """
        port, factory = yield listenTLS(self, serverOptions(self.pki))
        result = yield self.echoscu(
            port, "+tls", self.pki.clientKey, self.pki.clientCertificate, "+cf", self.pki.otherCACertificate
        )
        self.assertNotEqual(result.exitCode, 0, result.describe())

    @defer.inlineCallbacks
    def test_revokedRefused(self):
        """
        echoscu with the revoked certificate is refused when dicomd has the CRL, for leaf and chain checks.
        """
        for check in ("leaf", "chain"):
            port, factory = yield listenTLS(self, serverOptions(self.pki, "crl=%s:crlCheck=%s" % (self.pki.crl, check)))
            result = yield self.echoscu(port, *dcmtkTLS(self.pki, self.pki.revokedKey, self.pki.revokedCertificate))
            self.assertNotEqual(result.exitCode, 0, result.describe())
            result = yield self.echoscu(port, *dcmtkTLS(self.pki))
            self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(len(self.log.matching("DCMECHO -> .* accepted")), 2)

    @defer.inlineCallbacks
    def test_profiles(self):
        """
        echoscu's +px, +pz, +pa and +pn reach dicomd with the matching profile; +pn does not reach a BCP 195 server.
        """
        for option, name in (("+px", "bcp195"), ("+pz", "bcp195-ex"), ("+pa", "aes"), ("+pn", "null")):
            port, factory = yield listenTLS(self, serverOptions(self.pki, "profile=" + name))
            result = yield self.echoscu(port, *dcmtkTLS(self.pki, None, None, option))
            self.assertEqual(result.exitCode, 0, "%s\n%s" % (option, result.describe()))
        port, factory = yield listenTLS(self, serverOptions(self.pki))
        result = yield self.echoscu(port, *dcmtkTLS(self.pki, None, None, "+pn"))
        self.assertNotEqual(result.exitCode, 0, result.describe())


class DCMTKStorageTests(unittest.TestCase):
    """
    Storage over TLS between DCMTK and the real dicomd processes.
    """

    timeout = 90

    def setUp(self):
        self.pki = testPKI(self)
        self.directory = makeDirectory(self)
        self.file = os.path.join(self.directory, "ct.dcm")
        self.dataset = makeDataset(rows=32, columns=32)
        writeFile(self.file, self.dataset)

    def startDaemon(self, extra: str = ""):
        """
        C{twistd -n dicomd --listen dicomtls:PORT:...} storing into a
        temporary directory.
        """
        data = makeDirectory(self)
        options = serverOptions(self.pki, extra)
        return startPeer(
            self,
            lambda port: TWISTD
            + ["-n", "--pidfile=", "dicomd", "-o", data, "--listen", "dicomtls:%d:interface=%s:%s" % (port, LOCALHOST, options)],
            env=pythonEnvironment(),
            cwd=makeDirectory(self),
            name="twistd dicomd",
        ).addCallback(lambda daemon: (daemon, data))

    def storedFiles(self, directory):
        return [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names if not name.startswith(".")]

    @defer.inlineCallbacks
    def test_storescuIntoDaemon(self):
        """
        DCMTK's storescu +tls stores into twistd dicomd on a dicomtls: endpoint; the log names the certificate.
        """
        (daemon, data) = yield self.startDaemon()
        result = yield runCommand(
            [dcmtk("storescu"), "-aet", "DCMSTORE", "-aec", "DICOMD"] + dcmtkTLS(self.pki) + [LOCALHOST, str(daemon.port), self.file],
            env=dcmtkEnvironment(),
        )
        self.assertEqual(result.exitCode, 0, result.describe() + daemon.describe())
        yield daemon.waitForOutput(r"DCMSTORE -> DICOMD from .*\(TLS: CN=dicomd client,O=dicomd tests\) (released|closed)")
        self.assertIn("(TLS: CN=dicomd client,O=dicomd tests)", (yield daemon.waitForOutput(r".*DCMSTORE -> DICOMD .* accepted.*")).group(0))
        import pydicom

        stored = [path for path in self.storedFiles(data) if _isDicom(path)]
        self.assertEqual([pydicom.dcmread(path).SOPInstanceUID for path in stored], [self.dataset.SOPInstanceUID])

    @defer.inlineCallbacks
    def test_storescuRefusedByDaemon(self):
        """
        The daemon refuses storescu with another CA's certificate, with none, and with a revoked one (crl=).
        """
        (daemon, data) = yield self.startDaemon("crl=" + self.pki.crl)
        for tls in (
            dcmtkTLS(self.pki, self.pki.otherClientKey, self.pki.otherClientCertificate),
            ["+tla", "+cf", self.pki.caCertificate],
            dcmtkTLS(self.pki, self.pki.revokedKey, self.pki.revokedCertificate),
        ):
            result = yield runCommand(
                [dcmtk("storescu"), "-aec", "DICOMD"] + tls + [LOCALHOST, str(daemon.port), self.file], env=dcmtkEnvironment()
            )
            self.assertNotEqual(result.exitCode, 0, result.describe())
        yield waitUntil(
            lambda: len(re.findall(r"TLS connection with .* failed: .*certificate", daemon.output)) == 3,
            timeout=10,
            message=daemon.describe(),
        )
        self.assertNotIn(" accepted", daemon.output)
        self.assertEqual([path for path in self.storedFiles(data) if _isDicom(path)], [])

    @defer.inlineCallbacks
    def test_storescpFrontDoorWithCRL(self):
        """
        python -m dicomd storescp +tls ... +crl refuses DCMTK's storescu with the revoked certificate and stores with the good one.
        """
        output = makeDirectory(self)
        server = yield startPeer(
            self,
            lambda port: dicomdArgv(
                "storescp", "-od", output, "+tls", self.pki.serverKey, self.pki.serverCertificate,
                "+cf", self.pki.caCertificate, "+crl", self.pki.crl, str(port),
            ),
            env=pythonEnvironment(),
            name="dicomd storescp",
        )
        revoked = yield runCommand(
            [dcmtk("storescu")] + dcmtkTLS(self.pki, self.pki.revokedKey, self.pki.revokedCertificate)
            + [LOCALHOST, str(server.port), self.file],
            env=dcmtkEnvironment(),
        )
        self.assertNotEqual(revoked.exitCode, 0, revoked.describe())
        good = yield runCommand(
            [dcmtk("storescu")] + dcmtkTLS(self.pki) + [LOCALHOST, str(server.port), self.file], env=dcmtkEnvironment()
        )
        self.assertEqual(good.exitCode, 0, good.describe() + server.describe())
        yield waitUntil(lambda: any(_isDicom(path) for path in self.storedFiles(output)), timeout=10, message=server.describe())
        self.assertEqual(len([path for path in self.storedFiles(output) if _isDicom(path)]), 1)

    @defer.inlineCallbacks
    def test_dicomdStorescuIntoDCMTK(self):
        """
        python -m dicomd storescu +tls ... +cf ca.pem stores into DCMTK's storescp +tls.
        """
        output = makeDirectory(self)
        server = yield startDCMTKServer(
            self,
            "storescp",
            "-aet",
            "STORESCP",
            "-od",
            output,
            "+tls",
            self.pki.serverKey,
            self.pki.serverCertificate,
            "+cf",
            self.pki.caCertificate,
        )
        result = yield runCommand(
            dicomdArgv("storescu", "-aec", "STORESCP") + dcmtkTLS(self.pki) + [LOCALHOST, str(server.port), self.file],
            env=pythonEnvironment(),
        )
        self.assertEqual(result.exitCode, 0, result.describe() + server.describe())
        yield waitUntil(lambda: any(_isDicom(path) for path in self.storedFiles(output)), timeout=10, message=server.describe())
        import pydicom

        [stored] = [path for path in self.storedFiles(output) if _isDicom(path)]
        self.assertEqual(pydicom.dcmread(stored).SOPInstanceUID, self.dataset.SOPInstanceUID)

    @defer.inlineCallbacks
    def test_dicomdStorescuRefusedByDCMTK(self):
        """
        DCMTK's storescp +tls refuses dicomd storescu with a certificate from another CA.
        """
        output = makeDirectory(self)
        server = yield startDCMTKServer(
            self, "storescp", "-od", output, "+tls", self.pki.serverKey, self.pki.serverCertificate, "+cf", self.pki.caCertificate
        )
        result = yield runCommand(
            dicomdArgv("storescu")
            + dcmtkTLS(self.pki, self.pki.otherClientKey, self.pki.otherClientCertificate)
            + [LOCALHOST, str(server.port), self.file],
            env=pythonEnvironment(),
        )
        self.assertNotEqual(result.exitCode, 0, result.describe())
        self.assertEqual([path for path in self.storedFiles(output) if _isDicom(path)], [])


def _isDicom(path: str) -> bool:
    """
    Whether a file is DICOM Part 10 (C{DICM} at offset 128).
    """
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False
