"""
DICOM TLS (PS3.15 Annex B, the Secure Transport Connection profiles) on
Twisted's SSL machinery.

L{TLSSettings} carries what DCMTK's TLS options describe (our key and
certificate, the certificates we trust, how strictly the peer is checked,
revocation lists, the profile) and builds a
L{twisted.internet.ssl.CertificateOptions} from them.  DICOM TLS verifies
the peer's certificate chain, not its host name, so the options verify
against the trusted certificates only.
"""

import getpass
import os
from dataclasses import dataclass, field
from typing import List, Optional

from OpenSSL import crypto
from twisted.internet import ssl

#: Cipher suites of the BCP 195 profiles (PS3.15 B.9, RFC 9325), TLS 1.2;
#: TLS 1.3 suites are always enabled by OpenSSL.
BCP195_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)

#: How a peer's certificate is checked, as DCMTK's C{-rc}, C{-vc}, C{-ic}.
VERIFY_REQUIRE = "require"
VERIFY_OPTIONAL = "optional"
VERIFY_NONE = "none"


class TLSConfigurationError(ValueError):
    """
    A key, certificate or revocation list cannot be used; the message names
    the file.
    """


@dataclass
class TLSSettings:
    """
    One side's TLS configuration.

    @ivar privateKey: path of our private key, or C{None} (anonymous client).
    @ivar certificate: path of our certificate.
    @ivar trusted: paths of trusted CA certificate files.
    @ivar trustedDirectories: directories of trusted certificates.
    @ivar verify: L{VERIFY_REQUIRE}, L{VERIFY_OPTIONAL} or L{VERIFY_NONE}.
    @ivar password: the private key's password; C{None} asks on the
        terminal when the key is encrypted, C{""} is the empty password.
    @ivar der: keys and certificates are DER, not PEM.
    """

    privateKey: Optional[str] = None
    certificate: Optional[str] = None
    trusted: List[str] = field(default_factory=list)
    trustedDirectories: List[str] = field(default_factory=list)
    verify: str = VERIFY_REQUIRE
    password: Optional[str] = None
    der: bool = False

    def _fileType(self):
        return crypto.FILETYPE_ASN1 if self.der else crypto.FILETYPE_PEM

    def _read(self, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise TLSConfigurationError("cannot read %s: %s" % (path, e.strerror))

    def loadPrivateKey(self) -> crypto.PKey:
        data = self._read(self.privateKey)

        def passphrase(maxLength, verify, extra=None):
            if self.password is not None:
                return self.password.encode("utf-8")
            return getpass.getpass("Enter pass phrase for %s: " % (self.privateKey,)).encode("utf-8")

        try:
            return crypto.load_privatekey(self._fileType(), data, passphrase)
        except crypto.Error as e:
            raise TLSConfigurationError("cannot load private key %s: %s" % (self.privateKey, e))

    def _loadCertificate(self, path: str) -> crypto.X509:
        try:
            return crypto.load_certificate(self._fileType(), self._read(path))
        except crypto.Error as e:
            raise TLSConfigurationError("cannot load certificate %s: %s" % (path, e))

    def trustedCertificates(self) -> List[crypto.X509]:
        paths = list(self.trusted)
        for directory in self.trustedDirectories:
            paths.extend(
                os.path.join(directory, name)
                for name in sorted(os.listdir(directory))
                if name.endswith((".pem", ".crt", ".cer", ".der"))
            )
        return [self._loadCertificate(path) for path in paths]

    def certificateOptions(self, isServer: bool) -> ssl.CertificateOptions:
        """
        The L{ssl.CertificateOptions} for these settings.

        @raise TLSConfigurationError: a file is missing or unusable.
        """
        key = cert = None
        if self.privateKey is not None:
            key = self.loadPrivateKey()
            cert = self._loadCertificate(self.certificate)
            if cert.get_pubkey().to_cryptography_key().public_numbers() != key.to_cryptography_key().public_key().public_numbers():
                raise TLSConfigurationError("%s does not belong to the key %s" % (self.certificate, self.privateKey))
        elif isServer:
            raise TLSConfigurationError("a TLS server needs a private key and a certificate")
        verify = self.verify != VERIFY_NONE
        trusted = self.trustedCertificates() if verify else []
        if verify and not trusted:
            raise TLSConfigurationError("peer verification needs trusted certificates (+cf or +cd)")
        return ssl.CertificateOptions(
            privateKey=key,
            certificate=cert,
            verify=verify,
            caCerts=trusted or None,
            requireCertificate=self.verify == VERIFY_REQUIRE,
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(BCP195_CIPHERS),
        )

