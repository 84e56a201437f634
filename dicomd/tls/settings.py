"""
One side's DICOM TLS configuration, as DCMTK's TLS options describe it.

L{TLSSettings} carries our key and certificate, the certificates we trust,
how strictly the peer is checked, revocation lists, the security profile
and cipher suites, DH parameters and the server name indication.  It reads
and checks the files they name, and builds the L{DICOMTLSOptions} a
connection or a listening port uses.
"""

import getpass
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from dicomd.tls import TLSConfigurationError
from dicomd.tls.context import CRL_CHECKS, CRL_LEAF, DICOMTLSOptions
from dicomd.tls.profiles import CIPHER_SUITES, DEFAULT_PROFILE, PROFILES, TLSProfile, availableSuites, suiteName

log = Logger(namespace="dicomd.tls")

#: How a peer's certificate is checked, as DCMTK's C{-rc}, C{-vc}, C{-ic}.
VERIFY_REQUIRE = "require"
VERIFY_OPTIONAL = "optional"
VERIFY_NONE = "none"
VERIFY_MODES = (VERIFY_REQUIRE, VERIFY_OPTIONAL, VERIFY_NONE)

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
        allowed to use it (see
        L{dicomd.tls.certificates.certificateBindingAllows}).
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


def _isServerName(name: str) -> bool:
    """
    Whether C{name} is a DNS host name (what SNI carries).
    """
    labels = name.rstrip(".").split(".")
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in labels)
