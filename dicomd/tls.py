"""
DICOM TLS (PS3.15 Annex B, the Secure Transport Connection profiles) on
Twisted's SSL machinery.

L{TLSSettings} carries what DCMTK's TLS options describe (our key and
certificate, the certificates we trust, how strictly the peer is checked,
revocation lists, the security profile and cipher suites, DH parameters,
the server name indication) and builds a L{DICOMTLSOptions}, a
L{twisted.internet.ssl.CertificateOptions} that also applies what
C{CertificateOptions} cannot express: the profile's exact cipher suites
and OpenSSL security level, CRL checking, SNI, and the host name check.
DICOM TLS itself authenticates certificates, not names (PS3.15 B.1), and
DCMTK's tools verify the peer's chain only; a client whose settings ask
for it (L{TLSSettings.verifyHostName}, what the daemon's C-MOVE peers do by
default) also checks that the server's certificate names the host it
connects to, as RFC 6125 says, with C{service_identity}.

The security profiles (L{PROFILES}) are DCMTK's, with the cipher suites of
DCMTK's C{tlsciphr.cc} and RFC 9325 (BCP 195); see C{docs/tls.md}.

L{certificateBindingAllows} is the pure half of binding calling AE titles
to certificates; L{dicomd.net.protocol} applies it.
"""

import getpass
import ipaddress
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet import ssl
from twisted.logger import Logger
from twisted.python.filepath import FilePath

log = Logger(namespace="dicomd.tls")

#: How a peer's certificate is checked, as DCMTK's C{-rc}, C{-vc}, C{-ic}.
VERIFY_REQUIRE = "require"
VERIFY_OPTIONAL = "optional"
VERIFY_NONE = "none"
VERIFY_MODES = (VERIFY_REQUIRE, VERIFY_OPTIONAL, VERIFY_NONE)

#: How revocation lists are checked, as DCMTK's C{+crv} and C{+cra}: the
#: peer's own certificate only, or every certificate of its chain.
CRL_LEAF = "leaf"
CRL_CHAIN = "chain"
CRL_CHECKS = (CRL_LEAF, CRL_CHAIN)

#: TLS 1.2 (and older) cipher suites by their IANA names, as DCMTK's C{+cs}
#: takes them, with OpenSSL's names.  DCMTK's list (C{tlsciphr.cc}), less
#: the static ECDH suites that OpenSSL no longer has.
CIPHER_SUITES: Dict[str, str] = {
    "TLS_RSA_WITH_NULL_SHA": "NULL-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA": "CAMELLIA128-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA": "CAMELLIA256-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA256": "AES256-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_DHE_DSS_WITH_AES_128_CBC_SHA": "DHE-DSS-AES128-SHA",
    "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA": "DHE-DSS-CAMELLIA128-SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA": "DHE-RSA-AES128-SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA": "DHE-RSA-CAMELLIA128-SHA",
    "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256": "DHE-DSS-AES128-SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256": "DHE-RSA-AES128-SHA256",
    "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256": "DHE-DSS-AES128-GCM-SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256": "DHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CCM": "ECDHE-ECDSA-AES128-CCM",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8": "ECDHE-ECDSA-AES128-CCM8",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_DHE_DSS_WITH_AES_256_CBC_SHA": "DHE-DSS-AES256-SHA",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA": "DHE-RSA-AES256-SHA",
    "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA": "DHE-DSS-CAMELLIA256-SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA": "DHE-RSA-CAMELLIA256-SHA",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "DHE-RSA-CHACHA20-POLY1305",
    "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256": "DHE-DSS-AES256-SHA256",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256": "DHE-RSA-AES256-SHA256",
    "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384": "DHE-DSS-AES256-GCM-SHA384",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384": "DHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384": "ECDHE-ECDSA-AES256-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384": "ECDHE-RSA-AES256-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CCM": "ECDHE-ECDSA-AES256-CCM",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8": "ECDHE-ECDSA-AES256-CCM8",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
}

_OPENSSL_TO_IANA = {openssl: iana for iana, openssl in CIPHER_SUITES.items()}


@dataclass(frozen=True)
class TLSProfile:
    """
    A DICOM TLS security profile: which TLS versions and TLS 1.2 cipher
    suites it negotiates.  TLS 1.3, where allowed, uses OpenSSL's TLS 1.3
    suites (all of them AEAD with forward secrecy), as DCMTK does.

    @ivar name: the name in C{profile=} (C{"bcp195-nd"}).
    @ivar options: DCMTK's spellings (C{"+py", "--profile-bcp195-nd"}).
    @ivar title: DCMTK's description.
    @ivar suites: the required TLS 1.2 suites (IANA names), strongest
        first: a server prefers them in this order, as DCMTK's does.
    @ivar optionalSuites: suites added when this OpenSSL has them (the
        3DES suite of the BCP 195 and AES profiles).
    @ivar minimumVersion: the lowest TLS version (L{ssl.TLSVersion}).
    @ivar tls13: whether TLS 1.3 is allowed.
    @ivar securityLevel: the OpenSSL security level this profile needs,
        or C{None} for OpenSSL's default.  TLS 1.0 and 1.1, and cipher
        suites without encryption, are refused by OpenSSL 3 and later at
        any level above 0.
    @ivar extraSuites: whether C{+cs}/C{ciphers=} may add suites.
    @ivar minimumDHBits: DH parameters smaller than this are refused.
    """

    name: str
    options: Tuple[str, str]
    title: str
    suites: Tuple[str, ...]
    minimumVersion: object = ssl.TLSVersion.TLSv1_2
    tls13: bool = True
    securityLevel: Optional[int] = None
    extraSuites: bool = True
    optionalSuites: Tuple[str, ...] = ()
    minimumDHBits: int = 1024

    @property
    def opensslSuites(self) -> List[str]:
        """
        The OpenSSL names of the suites this OpenSSL can negotiate,
        required ones first.
        """
        available = availableSuites()
        names = [CIPHER_SUITES[suite] for suite in self.suites]
        names += [CIPHER_SUITES[suite] for suite in self.optionalSuites if CIPHER_SUITES[suite] in available]
        return names

    def unavailable(self) -> List[str]:
        """
        The required suites this OpenSSL does not have (IANA names).
        """
        available = availableSuites()
        return [suite for suite in self.suites if CIPHER_SUITES[suite] not in available]


_ND_SUITES = (
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
)

#: The profiles by name, in the order of DCMTK's options.
PROFILES: Dict[str, TLSProfile] = {
    profile.name: profile
    for profile in [
        TLSProfile(
            "bcp195-nd",
            ("+py", "--profile-bcp195-nd"),
            "Non-downgrading BCP 195 TLS Profile (default)",
            _ND_SUITES,
        ),
        TLSProfile(
            "bcp195",
            ("+px", "--profile-bcp195"),
            "BCP 195 TLS Profile",
            _ND_SUITES + ("TLS_RSA_WITH_AES_128_CBC_SHA",),
            minimumVersion=ssl.TLSVersion.TLSv1_0,
            securityLevel=0,
            optionalSuites=("TLS_RSA_WITH_3DES_EDE_CBC_SHA",),
        ),
        TLSProfile(
            "bcp195-ex",
            ("+pz", "--profile-bcp195-ex"),
            "Extended BCP 195 TLS Profile",
            (
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
            ),
            tls13=False,
            extraSuites=False,
            minimumDHBits=2048,
        ),
        TLSProfile(
            "bcp195-rfc8996",
            ("+pg", "--profile-8996"),
            "BCP 195 RFC 8996 TLS Profile (DCMTK 3.6.8's default)",
            (
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            ),
        ),
        TLSProfile(
            "basic",
            ("+pb", "--profile-basic"),
            "Basic TLS Secure Transport Connection Profile (retired)",
            ("TLS_RSA_WITH_3DES_EDE_CBC_SHA",),
            minimumVersion=ssl.TLSVersion.TLSv1_0,
            tls13=False,
            securityLevel=0,
        ),
        TLSProfile(
            "aes",
            ("+pa", "--profile-aes"),
            "AES TLS Secure Transport Connection Profile (retired)",
            ("TLS_RSA_WITH_AES_128_CBC_SHA",),
            minimumVersion=ssl.TLSVersion.TLSv1_0,
            tls13=False,
            securityLevel=0,
            optionalSuites=("TLS_RSA_WITH_3DES_EDE_CBC_SHA",),
        ),
        TLSProfile(
            "null",
            ("+pn", "--profile-null"),
            "Authenticated unencrypted communication (retired, was used in IHE ATNA)",
            ("TLS_RSA_WITH_NULL_SHA",),
            minimumVersion=ssl.TLSVersion.TLSv1_0,
            tls13=False,
            securityLevel=0,
        ),
    ]
}

DEFAULT_PROFILE = "bcp195-nd"

#: The default profile's TLS 1.2 suites as an OpenSSL cipher string.
BCP195_CIPHERS = ":".join(CIPHER_SUITES[suite] for suite in PROFILES[DEFAULT_PROFILE].suites)


@lru_cache(maxsize=1)
def availableSuites() -> frozenset:
    """
    The OpenSSL names of every TLS 1.2 (and older) cipher suite the
    OpenSSL library under pyOpenSSL can negotiate at security level 0.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_cipher_list(b"ALL:eNULL:@SECLEVEL=0")
    return frozenset(SSL.Connection(context, None).get_cipher_list())


def suiteName(name: str) -> str:
    """
    The OpenSSL name of a cipher suite given by its IANA name (DCMTK's
    C{+cs}) or already by its OpenSSL name.

    @raise TLSConfigurationError: an unknown name.
    """
    if name in CIPHER_SUITES:
        return CIPHER_SUITES[name]
    if name in availableSuites():
        return name
    raise TLSConfigurationError("unknown cipher suite %s (see --list-ciphers)" % (name,), "ciphers")


def describeCipherSuites() -> str:
    """
    What C{+cc} prints: the suites this OpenSSL supports by IANA name,
    and each profile's.
    """
    available = availableSuites()
    lines = ["Supported TLS ciphersuites are:"]
    lines += ["    %s" % (iana,) for iana, openssl in CIPHER_SUITES.items() if openssl in available]
    lines.append("TLS 1.3 ciphersuites are OpenSSL's own (TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256,")
    lines.append("TLS_AES_128_GCM_SHA256) wherever a profile allows TLS 1.3.")
    lines.append("")
    lines.append("Security profiles (profile= in dicomtls: endpoints):")
    for profile in PROFILES.values():
        missing = profile.unavailable()
        versions = "TLS %s to %s" % (
            _VERSION_TEXT[profile.minimumVersion],
            "1.3" if profile.tls13 else "1.2",
        )
        lines.append("  %-15s %-22s %s; %s" % (profile.name, ", ".join(profile.options), profile.title, versions))
        if missing:
            lines.append("      not available: this OpenSSL lacks %s" % (", ".join(missing),))
        else:
            lines += ["      %s" % (_OPENSSL_TO_IANA.get(name, name),) for name in profile.opensslSuites]
    return "\n".join(lines) + "\n"


_VERSION_TEXT = {
    ssl.TLSVersion.TLSv1_0: "1.0",
    ssl.TLSVersion.TLSv1_1: "1.1",
    ssl.TLSVersion.TLSv1_2: "1.2",
    ssl.TLSVersion.TLSv1_3: "1.3",
}


class TLSConfigurationError(ValueError):
    """
    A key, certificate, revocation list or setting cannot be used; the
    message names the file or value.

    @ivar setting: the L{TLSSettings} field at fault (C{"crls"},
        C{"privateKey"}...), so that front doors can name their own option.
    """

    def __init__(self, message: str, setting: Optional[str] = None):
        ValueError.__init__(self, message)
        self.setting = setting


#: File names in a C{+cd} directory that hold certificates; C{*.crl} and
#: OpenSSL's hashed C{HASH.rN} names hold revocation lists.
_CERTIFICATE_NAME = re.compile(r"(\.(pem|crt|cer|der)|^[0-9a-f]{8}\.\d+)$")
_CRL_NAME = re.compile(r"(\.crl|^[0-9a-f]{8}\.r\d+)$")


@dataclass
class TLSSettings:
    """
    One side's TLS configuration.

    @ivar privateKey: path of our private key, or C{None} (anonymous client).
    @ivar certificate: path of our certificate (further certificates in a
        PEM file are sent as its chain).
    @ivar trusted: paths of trusted CA certificate files (all certificates
        in each).
    @ivar trustedDirectories: directories of trusted certificates
        (C{*.pem}, C{*.crt}, C{*.cer}, C{*.der}, OpenSSL's C{HASH.N}); their
        C{*.crl} files are revocation lists.
    @ivar verify: L{VERIFY_REQUIRE}, L{VERIFY_OPTIONAL} or L{VERIFY_NONE}.
    @ivar password: the private key's password; C{None} asks on the
        terminal when the key is encrypted, C{""} is the empty password.
    @ivar der: keys and certificates are DER, not PEM.
    @ivar profile: the name of a L{TLSProfile} in L{PROFILES}.
    @ivar ciphers: further TLS 1.2 cipher suites (IANA or OpenSSL names)
        or OpenSSL cipher strings, after the profile's.
    @ivar dhParameters: path of PEM DH parameters, which enable the DHE
        suites (without, only ECDHE suites and TLS 1.3 are negotiated).
    @ivar crls: paths of certificate revocation lists (PEM or DER).
    @ivar crlCheck: L{CRL_LEAF}, L{CRL_CHAIN} or C{None}; revocation lists
        imply L{CRL_LEAF}.
    @ivar sni: a server: the name clients must ask for with SNI (a client
        asking for another name fails the handshake); a client: the name
        to ask for.
    @ivar sniRequired: a server also refuses clients that send no SNI.
    @ivar verifyHostName: a client also checks that the server's
        certificate names the host it connects to (given to
        L{certificateOptions}); only with a verified chain, since a name
        in a certificate nobody vouches for proves nothing.  DCMTK's tools
        do not check names, so this is off unless asked for.
    @ivar certificateBindings: calling AE title -> the certificates
        allowed to use it (see L{certificateBindingAllows}).
    """

    privateKey: Optional[str] = None
    certificate: Optional[str] = None
    trusted: List[str] = field(default_factory=list)
    trustedDirectories: List[str] = field(default_factory=list)
    verify: str = VERIFY_REQUIRE
    password: Optional[str] = None
    der: bool = False
    profile: str = DEFAULT_PROFILE
    ciphers: List[str] = field(default_factory=list)
    dhParameters: Optional[str] = None
    crls: List[str] = field(default_factory=list)
    crlCheck: Optional[str] = None
    sni: Optional[str] = None
    sniRequired: bool = False
    verifyHostName: bool = False
    certificateBindings: Dict[str, List[str]] = field(default_factory=dict)

    def _fileType(self):
        return crypto.FILETYPE_ASN1 if self.der else crypto.FILETYPE_PEM

    def _read(self, path: str, setting: Optional[str] = None) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise TLSConfigurationError("cannot read %s: %s" % (path, e.strerror), setting)

    def loadPrivateKey(self) -> crypto.PKey:
        """
        Our private key, PEM or DER, decrypted with L{password} (or one
        typed on the terminal when L{password} is C{None}).
        """
        data = self._read(self.privateKey, "privateKey")
        load = serialization.load_der_private_key if self.der else serialization.load_pem_private_key
        try:
            try:
                key = load(data, password=None)
            except TypeError:
                # Encrypted: DCMTK's +pw / -pw, or +ps (the default) asks.
                password = self.password
                if password is None:
                    password = getpass.getpass("Enter pass phrase for %s: " % (self.privateKey,))
                key = load(data, password=password.encode("utf-8"))
        except (ValueError, TypeError) as e:
            raise TLSConfigurationError("cannot load private key %s: %s" % (self.privateKey, e), "privateKey")
        except Exception as e:
            # cryptography raises UnsupportedAlgorithm for some key types.
            raise TLSConfigurationError("cannot load private key %s: %s" % (self.privateKey, e), "privateKey")
        return crypto.PKey.from_cryptography_key(key)

    def _loadCertificates(self, path: str, setting: str) -> List[crypto.X509]:
        """
        Every certificate in a file: one for DER, one or more for PEM.
        """
        data = self._read(path, setting)
        try:
            if self.der or b"-----BEGIN" not in data:
                certificates = [x509.load_der_x509_certificate(data)]
            else:
                certificates = x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise TLSConfigurationError("cannot load certificate %s: %s" % (path, e), setting)
        return [crypto.X509.from_cryptography(certificate) for certificate in certificates]

    def _loadCertificate(self, path: str) -> crypto.X509:
        return self._loadCertificates(path, "certificate")[0]

    def _directoryFiles(self, pattern) -> List[str]:
        paths = []
        for directory in self.trustedDirectories:
            try:
                names = sorted(os.listdir(directory))
            except OSError as e:
                raise TLSConfigurationError("cannot read directory %s: %s" % (directory, e.strerror), "trustedDirectories")
            paths.extend(os.path.join(directory, name) for name in names if pattern.search(name))
        return paths

    def trustedCertificates(self) -> List[crypto.X509]:
        """
        The trusted CA certificates, each once.
        """
        certificates = []
        seen = set()
        sources = [(path, "trusted") for path in self.trusted]
        sources += [(path, "trustedDirectories") for path in self._directoryFiles(_CERTIFICATE_NAME)]
        for path, setting in sources:
            for certificate in self._loadCertificates(path, setting):
                digest = certificate.digest("sha256")
                if digest not in seen:
                    seen.add(digest)
                    certificates.append(certificate)
        return certificates

    def revocationLists(self) -> List[x509.CertificateRevocationList]:
        """
        The revocation lists of L{crls} and of the trusted directories.
        """
        lists = []
        sources = [(path, "crls") for path in self.crls]
        sources += [(path, "trustedDirectories") for path in self._directoryFiles(_CRL_NAME)]
        for path, setting in sources:
            data = self._read(path, setting)
            try:
                if b"-----BEGIN" in data:
                    lists.append(x509.load_pem_x509_crl(data))
                else:
                    lists.append(x509.load_der_x509_crl(data))
            except ValueError as e:
                raise TLSConfigurationError("cannot load certificate revocation list %s: %s" % (path, e), setting)
        return lists

    def effectiveCRLCheck(self) -> Optional[str]:
        """
        L{crlCheck}, or L{CRL_LEAF} when revocation lists were given
        without it (DCMTK's C{+crl} implies C{+crv}).
        """
        if self.crlCheck is not None:
            return self.crlCheck
        return CRL_LEAF if self.crls else None

    def profileDefinition(self) -> TLSProfile:
        """
        The L{TLSProfile} named by L{profile}.

        @raise TLSConfigurationError: no such profile, or this OpenSSL
            cannot negotiate its required suites.
        """
        profile = PROFILES.get(self.profile)
        if profile is None:
            raise TLSConfigurationError(
                "unknown TLS profile %r (one of %s)" % (self.profile, ", ".join(PROFILES)), "profile"
            )
        missing = profile.unavailable()
        if missing:
            raise TLSConfigurationError(
                "the %s profile needs %s, which the OpenSSL library dicomd runs on (%s) does not provide"
                % (profile.name, ", ".join(missing), SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode("ascii", "replace")),
                "profile",
            )
        return profile

    def cipherString(self) -> str:
        """
        The OpenSSL cipher string for the TLS 1.2 (and older) suites: the
        profile's, then L{ciphers}, with the security level the profile
        needs.

        @raise TLSConfigurationError: bad profile or cipher names, or extra
            suites the profile forbids.
        """
        profile = self.profileDefinition()
        names = list(profile.opensslSuites)
        extras = [part for entry in self.ciphers for part in re.split(r"[:,\s]+", entry) if part]
        if extras and not profile.extraSuites:
            raise TLSConfigurationError("the %s profile allows no further cipher suites" % (profile.name,), "ciphers")
        for extra in extras:
            if extra in CIPHER_SUITES or extra in availableSuites():
                name = suiteName(extra)
                if "NULL" in name and profile.name != "null":
                    raise TLSConfigurationError(
                        "cipher suite %s does not encrypt; only the null profile allows that" % (extra,), "ciphers"
                    )
            else:
                # An OpenSSL cipher string such as "ECDHE+AESGCM": it must
                # match something by itself.
                name = extra
                try:
                    SSL.Context(SSL.TLS_METHOD).set_cipher_list(("@SECLEVEL=0:" + extra).encode("ascii"))
                except (SSL.Error, UnicodeEncodeError):
                    raise TLSConfigurationError("OpenSSL knows no cipher suite %s (see --list-ciphers)" % (extra,), "ciphers")
            if name not in names:
                names.append(name)
        text = ":".join(names)
        if profile.securityLevel is not None:
            text = "@SECLEVEL=%d:%s" % (profile.securityLevel, text)
        try:
            context = SSL.Context(SSL.TLS_METHOD)
            context.set_cipher_list(text.encode("ascii"))
        except (SSL.Error, UnicodeEncodeError):
            raise TLSConfigurationError("OpenSSL accepts none of the cipher suites %s" % (text,), "ciphers")
        return text

    def checkDHParameters(self, profile: TLSProfile) -> None:
        """
        @raise TLSConfigurationError: L{dhParameters} cannot be read, holds
            no PEM DH parameters, or is smaller than the profile allows.
        """
        data = self._read(self.dhParameters, "dhParameters")
        bits = _dhPrimeBits(data)
        if bits is None:
            raise TLSConfigurationError("%s holds no PEM DH parameters" % (self.dhParameters,), "dhParameters")
        if bits < profile.minimumDHBits:
            raise TLSConfigurationError(
                "DH parameters %s have %d bits; the %s profile needs at least %d"
                % (self.dhParameters, bits, profile.name, profile.minimumDHBits),
                "dhParameters",
            )
        if bits < 2048:
            log.warn(
                "DH parameters {path} have {bits} bits; RFC 9325 recommends at least 2048",
                path=self.dhParameters,
                bits=bits,
            )

    def certificateOptions(self, isServer: bool, hostName: Optional[str] = None) -> "DICOMTLSOptions":
        """
        The L{ssl.CertificateOptions} for these settings.

        @param hostName: a client: the host name or address it connects
            to, which the server's certificate must name when
            L{verifyHostName} is set and the chain is verified.
        @raise TLSConfigurationError: a file is missing or unusable, or a
            setting is invalid.
        """
        if self.verify not in VERIFY_MODES:
            raise TLSConfigurationError(
                "unknown verification mode %r (one of %s)" % (self.verify, ", ".join(VERIFY_MODES)), "verify"
            )
        if self.crlCheck not in (None,) + CRL_CHECKS:
            raise TLSConfigurationError(
                "unknown CRL check %r (one of %s)" % (self.crlCheck, ", ".join(CRL_CHECKS)), "crlCheck"
            )
        profile = self.profileDefinition()
        cipherString = self.cipherString()
        key = cert = None
        chain = []
        if self.privateKey is not None:
            if self.certificate is None:
                raise TLSConfigurationError("a private key needs its certificate", "certificate")
            key = self.loadPrivateKey()
            certificates = self._loadCertificates(self.certificate, "certificate")
            cert, chain = certificates[0], certificates[1:]
            if cert.get_pubkey().to_cryptography_key().public_numbers() != key.to_cryptography_key().public_key().public_numbers():
                raise TLSConfigurationError(
                    "%s does not belong to the key %s" % (self.certificate, self.privateKey), "certificate"
                )
        elif isServer:
            raise TLSConfigurationError("a TLS server needs a private key and a certificate", "privateKey")
        verify = self.verify != VERIFY_NONE
        trusted = self.trustedCertificates() if verify else []
        if verify and not trusted:
            raise TLSConfigurationError("peer verification needs trusted certificates (+cf or +cd)", "trusted")
        crlCheck = self.effectiveCRLCheck() if verify else None
        crls = self.revocationLists() if crlCheck else []
        if crlCheck and not crls:
            raise TLSConfigurationError(
                "CRL checking needs a revocation list (+crl, crl=, or a *.crl file in a +cd directory)", "crls"
            )
        dhParameters = None
        if self.dhParameters is not None:
            self.checkDHParameters(profile)
            dhParameters = ssl.DiffieHellmanParameters.fromFile(FilePath(self.dhParameters))
        if self.sniRequired and not self.sni:
            raise TLSConfigurationError("sniRequired needs sni, the name clients must ask for", "sniRequired")
        if self.sni and not _isServerName(self.sni):
            raise TLSConfigurationError("%r is not a host name" % (self.sni,), "sni")
        versions = {"lowerMaximumSecurityTo": None if profile.tls13 else ssl.TLSVersion.TLSv1_2}
        if profile.minimumVersion < ssl.TLSVersion.TLSv1_2:
            versions["insecurelyLowerMinimumTo"] = profile.minimumVersion
        else:
            versions["raiseMinimumTo"] = profile.minimumVersion
        options = DICOMTLSOptions(
            privateKey=key,
            certificate=cert,
            extraCertChain=chain or None,
            verify=verify,
            caCerts=trusted or None,
            requireCertificate=self.verify == VERIFY_REQUIRE,
            dhParameters=dhParameters,
            # Replaced by cipherString in getContext (CertificateOptions
            # cannot select NULL suites or set the security level).
            acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString("ALL"),
            isServer=isServer,
            cipherString=cipherString,
            revocationLists=crls,
            crlCheck=crlCheck,
            serverName=self.sni,
            serverNameRequired=self.sniRequired,
            certificateBindings=self.certificateBindings,
            hostName=hostName if verify and self.verifyHostName and not isServer else None,
            **versions,
        )
        try:
            # Build the OpenSSL context now, so that a file OpenSSL refuses
            # (DH parameters, say) is reported before anything listens.
            options.getContext()
        except SSL.Error as e:
            raise TLSConfigurationError("OpenSSL refuses these settings: %s" % (e,), "dhParameters" if dhParameters else None)
        return options


_DH_PEM = re.compile(rb"-----BEGIN (?:X9\.42 )?DH PARAMETERS-----(.*?)-----END (?:X9\.42 )?DH PARAMETERS-----", re.DOTALL)


def _dhPrimeBits(pem: bytes) -> Optional[int]:
    """
    The size in bits of the prime of PEM DH parameters (PKCS #3 or X9.42:
    a DER SEQUENCE whose first INTEGER is the prime), or C{None} when
    C{pem} holds none.
    """
    import base64
    import binascii

    match = _DH_PEM.search(pem)
    if match is None:
        return None
    try:
        der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        return None

    def header(offset):
        # (tag, content offset, content length) of the DER item at offset.
        tag, first = der[offset], der[offset + 1]
        offset += 2
        if first < 0x80:
            return tag, offset, first
        count = first & 0x7F
        return tag, offset + count, int.from_bytes(der[offset : offset + count], "big")

    try:
        tag, offset, _ = header(0)
        if tag != 0x30:
            return None
        tag, offset, length = header(offset)
        if tag != 0x02:
            return None
        return int.from_bytes(der[offset : offset + length], "big").bit_length()
    except IndexError:
        return None


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _isAddress(text: str) -> bool:
    """
    Whether C{text} is an IPv4 or IPv6 address (not a host name).
    """
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _isServerName(name: str) -> bool:
    """
    Whether C{name} is a DNS host name (what SNI carries).
    """
    labels = name.rstrip(".").split(".")
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in labels)


class DICOMTLSOptions(ssl.CertificateOptions):
    """
    L{ssl.CertificateOptions} plus what DICOM TLS needs and
    C{CertificateOptions} cannot express: an exact cipher string with its
    OpenSSL security level, revocation lists, and SNI (a server's expected
    name, a client's requested one).

    @ivar certificateBindings: calling AE title -> allowed certificates,
        read by L{dicomd.net.protocol} through the connection's app data.
    @ivar hostName: a client: the host it connects to, which the server's
        certificate must name in its subject alternative names (RFC 6125),
        or C{None} to check no name.
    """

    def __init__(
        self,
        *,
        isServer: bool,
        cipherString: str,
        revocationLists: Sequence[x509.CertificateRevocationList] = (),
        crlCheck: Optional[str] = None,
        serverName: Optional[str] = None,
        serverNameRequired: bool = False,
        certificateBindings: Optional[Mapping[str, Sequence[str]]] = None,
        hostName: Optional[str] = None,
        **kwargs,
    ):
        ssl.CertificateOptions.__init__(self, **kwargs)
        self.isServer = isServer
        self.cipherString = cipherString
        self.revocationLists = list(revocationLists)
        self.crlCheck = crlCheck
        self.serverName = serverName
        self.serverNameRequired = serverNameRequired
        self.certificateBindings = dict(certificateBindings or {})
        self.hostName = hostName
        self._serviceID = None
        if hostName is not None:
            try:
                self._serviceID = IPAddress_ID(hostName) if _isAddress(hostName) else DNS_ID(hostName)
            except ValueError:
                raise TLSConfigurationError(
                    "cannot check the host name %r: it is neither a host name nor an address" % (hostName,), "verifyHostName"
                )
        self._configured = None

    def getContext(self) -> SSL.Context:
        context = ssl.CertificateOptions.getContext(self)
        if self._configured is not context:
            self._configure(context)
            self._configured = context
        return context

    def _configure(self, context: SSL.Context) -> None:
        context.set_cipher_list(self.cipherString.encode("ascii"))
        if self.crlCheck:
            store = context.get_cert_store()
            for crl in self.revocationLists:
                store.add_crl(crl)
            flags = crypto.X509StoreFlags.CRL_CHECK
            if self.crlCheck == CRL_CHAIN:
                flags |= crypto.X509StoreFlags.CRL_CHECK_ALL
            store.set_flags(flags)
        if self.isServer and self.serverName:
            context.set_tlsext_servername_callback(self._checkServerName)

    def _checkServerName(self, connection: SSL.Connection) -> None:
        """
        The SNI callback: a client that asks for another name (or none,
        when a name is required) gets a context without a certificate, so
        that its handshake fails.
        """
        requested = connection.get_servername()
        if requested is None and not self.serverNameRequired:
            return
        if requested is not None and requested.decode("ascii", "replace").rstrip(".").lower() == self.serverName.rstrip(".").lower():
            return
        protocol = connection.get_app_data()
        peer = getattr(getattr(protocol, "transport", None), "getPeer", lambda: None)()
        log.warn(
            "TLS handshake from {peer} refused: the client asked for server name {requested}, this server is {expected}",
            peer="%s:%s" % (peer.host, peer.port) if hasattr(peer, "host") else str(peer),
            requested=repr(requested.decode("ascii", "replace")) if requested is not None else "none (no SNI)",
            expected=self.serverName,
        )
        connection.set_context(_refusingContext())

    def _connection(self, protocol) -> SSL.Connection:
        connection = SSL.Connection(self.getContext(), None)
        connection.set_app_data(protocol)
        return connection

    def serverConnectionForTLS(self, protocol) -> SSL.Connection:
        return self._connection(protocol)

    def clientConnectionForTLS(self, protocol) -> SSL.Connection:
        connection = self._connection(protocol)
        if self.serverName and not self.isServer:
            connection.set_tlsext_host_name(self.serverName.encode("ascii"))
        if self._serviceID is not None:
            connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._checkHostName)
        return connection

    def _checkHostName(self, connection: SSL.Connection, certificate: crypto.X509, error: int, depth: int, ok: int) -> bool:
        """
        The client's verify callback when L{hostName} is checked: OpenSSL's
        verdict on the chain, and for the server's own certificate (depth
        0) whether it names L{hostName}.  A certificate that does not is
        logged, with the names it has, and fails the handshake.
        """
        if depth != 0 or not ok:
            return bool(ok)
        try:
            verify_service_identity(extract_patterns(certificate), [self._serviceID], [])
        except (VerificationError, CertificateError):
            names = certificateHostNames(certificate)
            log.warn(
                "TLS connection to {host} refused: the server's certificate ({subject}) is for {names}, not {host}",
                host=self.hostName,
                subject=certificateSubject(certificate),
                names=", ".join(names) if names else "no host (it has no subject alternative name)",
            )
            return False
        return True


@lru_cache(maxsize=1)
def _refusingContext() -> SSL.Context:
    """
    A server context without a certificate: no handshake succeeds with it.
    """
    return SSL.Context(SSL.TLS_METHOD)


# -- the peer's certificate ---------------------------------------------------------


def certificateSubject(certificate) -> str:
    """
    A certificate's subject as RFC 4514 text (C{"CN=client,O=Hospital"}).

    @param certificate: a pyOpenSSL C{X509} or a C{cryptography}
        certificate.
    """
    if hasattr(certificate, "to_cryptography"):
        certificate = certificate.to_cryptography()
    return certificate.subject.rfc4514_string()


def certificateHostNames(certificate) -> List[str]:
    """
    The DNS names and IP addresses in a certificate's subject alternative
    names: the hosts it is good for (RFC 6125 ignores the common name).
    """
    if hasattr(certificate, "to_cryptography"):
        certificate = certificate.to_cryptography()
    try:
        alternatives = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    addresses = [str(address) for address in alternatives.get_values_for_type(x509.IPAddress)]
    return alternatives.get_values_for_type(x509.DNSName) + addresses


def certificateFingerprint(certificate) -> str:
    """
    A certificate's SHA-256 fingerprint: 64 lower-case hex digits.
    """
    if hasattr(certificate, "to_cryptography"):
        certificate = certificate.to_cryptography()
    return certificate.fingerprint(hashes.SHA256()).hex()


def _commonNames(certificate) -> List[str]:
    if hasattr(certificate, "to_cryptography"):
        certificate = certificate.to_cryptography()
    return [
        attribute.value
        for attribute in certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        if isinstance(attribute.value, str)
    ]


def certificateMatches(expected: str, certificate) -> bool:
    """
    Whether a certificate is the one C{expected} describes:
    C{"sha256:HEX"} (its SHA-256 fingerprint; colons and case ignored),
    C{"CN=name"} or a bare C{"name"} (a common name of its subject).
    """
    expected = expected.strip()
    if expected.lower().startswith("sha256:"):
        digits = re.sub(r"[^0-9a-f]", "", expected[7:].lower())
        return digits == certificateFingerprint(certificate)
    if expected[:3].upper() == "CN=":
        expected = expected[3:]
    return expected in _commonNames(certificate)


def certificateBindingAllows(bindings: Mapping[str, Sequence[str]], callingAETitle: str, certificate) -> bool:
    """
    Whether a calling AE title may be used with this peer certificate.

    An AE title that is not in C{bindings} is not bound: any certificate
    (or none) may use it.  A bound AE title needs a certificate matching
    one of its entries (L{certificateMatches}).

    @param certificate: the peer's certificate, or C{None}.
    """
    allowed = bindings.get(callingAETitle.strip())
    if allowed is None:
        return True
    if certificate is None:
        return False
    return any(certificateMatches(entry, certificate) for entry in allowed)


def readCertificateBindings(path: str) -> Dict[str, List[str]]:
    """
    Read an AE title to certificate binding file: one binding per line,
    C{AETITLE  sha256:HEX} or C{AETITLE  CN=name} (AE title and
    certificate separated by white space; an AE title with spaces in
    double quotes); an AE title may have several lines; C{#} starts a
    comment.

    @raise TLSConfigurationError: the file cannot be read or a line is
        malformed (the message names the line).
    """
    import shlex

    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as e:
        raise TLSConfigurationError("cannot read %s: %s" % (path, e.strerror), "certificateBindings")
    bindings: Dict[str, List[str]] = {}
    for number, line in enumerate(lines, 1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:
            raise TLSConfigurationError("%s line %d: %s" % (path, number, e), "certificateBindings")
        if not words:
            continue
        if len(words) != 2 or not 0 < len(words[0]) <= 16:
            raise TLSConfigurationError(
                "%s line %d: expected an AE title and sha256:FINGERPRINT or CN=name" % (path, number),
                "certificateBindings",
            )
        bindings.setdefault(words[0], []).append(words[1])
    return bindings
