"""
Throwaway X.509 certificates for the TLS tests, made with C{cryptography}.

Nothing here is fetched or checked in: each test process makes its own
certificate authorities, leaf certificates and revocation lists, and
writes them as PEM (or DER) files into a test's temporary directory for
dicomd and DCMTK's tools to read.

    pki = writeTestPKI(directory)
    pki.serverKey, pki.serverCertificate   # issued by pki.caCertificate
    pki.clientKey, pki.clientCertificate   # issued by the same CA
    pki.otherClientKey, ...                # issued by another CA
    pki.revokedKey, ...                    # issued by the CA, then revoked
    pki.crl                                # the CA's CRL revoking it

Keys are RSA 2048 (what DCMTK's BCP 195 profiles need for TLS 1.2) and
certificates are signed with SHA-256.  Key generation is the slow part,
so the keys of one process are made once and reused.
"""

import datetime
import ipaddress
import os
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_KEYS: Dict[str, object] = {}


def _key(label: str, kind: str = "rsa"):
    """
    The private key called C{label} in this process, made on first use.
    """
    cacheKey = "%s/%s" % (kind, label)
    if cacheKey not in _KEYS:
        if kind == "ec":
            _KEYS[cacheKey] = ec.generate_private_key(ec.SECP256R1())
        else:
            _KEYS[cacheKey] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[cacheKey]


def _name(commonName: str, organization: str = "dicomd tests") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, commonName),
        ]
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass
class Identity:
    """
    A private key and its certificate.
    """

    key: object
    certificate: x509.Certificate

    @property
    def subject(self) -> str:
        """
        The certificate's subject, as RFC 4514 text (C{"CN=...,O=..."}).
        """
        return self.certificate.subject.rfc4514_string()

    @property
    def fingerprint(self) -> str:
        """
        The certificate's SHA-256 fingerprint in hex, lower case.
        """
        return self.certificate.fingerprint(hashes.SHA256()).hex()

    def keyBytes(self, password: Optional[str] = None, der: bool = False) -> bytes:
        """
        The private key as PKCS#8, PEM or DER, encrypted with C{password}
        when one is given.
        """
        encryption = (
            serialization.BestAvailableEncryption(password.encode("utf-8"))
            if password
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.DER if der else serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            encryption,
        )

    def certificateBytes(self, der: bool = False) -> bytes:
        """
        The certificate, PEM or DER.
        """
        return self.certificate.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM)

    def write(self, directory: str, stem: str, password: Optional[str] = None, der: bool = False):
        """
        Write C{stem.key} and C{stem.pem} (or C{stem.der}) into C{directory}.

        @return: C{(key path, certificate path)}.
        """
        keyPath = os.path.join(directory, stem + ".key")
        certificatePath = os.path.join(directory, stem + (".der" if der else ".pem"))
        _writeFile(keyPath, self.keyBytes(password, der))
        _writeFile(certificatePath, self.certificateBytes(der))
        return keyPath, certificatePath


class CertificateAuthority(Identity):
    """
    A self-signed certificate authority that issues leaf certificates and
    revocation lists.
    """

    def __init__(self, commonName: str = "dicomd test CA", keyLabel: Optional[str] = None):
        key = _key(keyLabel or commonName)
        name = _name(commonName)
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        Identity.__init__(self, key, certificate)

    def issue(
        self,
        commonName: str,
        *,
        serverNames: Sequence[str] = ("localhost", "127.0.0.1"),
        keyLabel: Optional[str] = None,
        keyKind: str = "rsa",
        expired: bool = False,
    ) -> Identity:
        """
        A leaf certificate for C{commonName}, good for TLS servers and
        clients alike.

        @param serverNames: DNS names and IP addresses for its subject
            alternative names.
        @param keyLabel: which of this process's keys to use (default: one
            per common name).
        @param keyKind: C{"rsa"} (2048 bits) or C{"ec"} (P-256).
        @param expired: make it expired yesterday.
        """
        key = _key(keyLabel or commonName, keyKind)
        now = _now()
        if expired:
            notBefore, notAfter = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
        else:
            notBefore, notAfter = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
        alternatives = []
        for serverName in serverNames:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(serverName)))
            except ValueError:
                alternatives.append(x509.DNSName(serverName))
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(commonName))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(notBefore)
            .not_valid_after(notAfter)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if alternatives:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        return Identity(key, builder.sign(self.key, hashes.SHA256()))

    def revocationList(self, revoked: Iterable[Identity] = ()) -> x509.CertificateRevocationList:
        """
        A CRL signed by this authority that revokes C{revoked}.
        """
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - datetime.timedelta(hours=1))
            .next_update(now + datetime.timedelta(days=7))
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .add_extension(x509.CRLNumber(1), critical=False)
        )
        for identity in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(identity.certificate.serial_number)
                .revocation_date(now - datetime.timedelta(minutes=30))
                .build()
            )
        return builder.sign(self.key, hashes.SHA256())


def _writeFile(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def writeCRL(path: str, crl: x509.CertificateRevocationList, der: bool = False) -> str:
    """
    Write a CRL as PEM (or DER); return C{path}.
    """
    _writeFile(path, crl.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM))
    return path


@dataclass
class TestPKI:
    """
    The files L{writeTestPKI} wrote, and the identities behind them.

    @ivar caCertificate: the CA that issued the server, client and revoked
        certificates.
    @ivar otherCACertificate: a second CA, which issued C{otherClient*}.
    @ivar crl: the CA's CRL, revoking C{revoked*}.
    @ivar emptyCRL: a CRL of the CA that revokes nothing.
    """

    __test__ = False

    directory: str
    ca: CertificateAuthority
    otherCA: CertificateAuthority
    server: Identity
    client: Identity
    otherClient: Identity
    revoked: Identity
    caCertificate: str
    otherCACertificate: str
    serverKey: str
    serverCertificate: str
    clientKey: str
    clientCertificate: str
    otherClientKey: str
    otherClientCertificate: str
    revokedKey: str
    revokedCertificate: str
    crl: str
    emptyCRL: str


def writeTestPKI(directory: str) -> TestPKI:
    """
    Make a CA with a server (C{CN=dicomd server}, for C{localhost} and
    C{127.0.0.1}), a client (C{CN=dicomd client}) and a revoked client
    (C{CN=revoked client}), a second CA with its own client (C{CN=other
    client}), and the first CA's CRLs; write them all as PEM files into
    C{directory}.
    """
    os.makedirs(directory, exist_ok=True)
    ca = CertificateAuthority("dicomd test CA")
    otherCA = CertificateAuthority("other test CA")
    server = ca.issue("dicomd server")
    client = ca.issue("dicomd client", serverNames=())
    revoked = ca.issue("revoked client", serverNames=())
    otherClient = otherCA.issue("other client", serverNames=())
    join = lambda name: os.path.join(directory, name)  # noqa: E731
    _writeFile(join("ca.pem"), ca.certificateBytes())
    _writeFile(join("otherca.pem"), otherCA.certificateBytes())
    serverKey, serverCertificate = server.write(directory, "server")
    clientKey, clientCertificate = client.write(directory, "client")
    revokedKey, revokedCertificate = revoked.write(directory, "revoked")
    otherClientKey, otherClientCertificate = otherClient.write(directory, "otherclient")
    return TestPKI(
        directory=directory,
        ca=ca,
        otherCA=otherCA,
        server=server,
        client=client,
        otherClient=otherClient,
        revoked=revoked,
        caCertificate=join("ca.pem"),
        otherCACertificate=join("otherca.pem"),
        serverKey=serverKey,
        serverCertificate=serverCertificate,
        clientKey=clientKey,
        clientCertificate=clientCertificate,
        otherClientKey=otherClientKey,
        otherClientCertificate=otherClientCertificate,
        revokedKey=revokedKey,
        revokedCertificate=revokedCertificate,
        crl=writeCRL(join("ca-crl.pem"), ca.revocationList([revoked])),
        emptyCRL=writeCRL(join("ca-crl-empty.pem"), ca.revocationList()),
    )


def writeDHParameters(path: str, bits: int = 2048) -> str:
    """
    Write PEM (PKCS #3) DH parameters, generator 2: RFC 7919's
    C{ffdhe2048} group (C{bits=2048}) or RFC 2409's 1024-bit Oakley group
    2 (C{bits=1024}); return C{path}.
    """
    import base64

    prime = {2048: FFDHE2048_PRIME, 1024: OAKLEY_GROUP2_PRIME}[bits]

    def integer(value: int) -> bytes:
        body = value.to_bytes(value.bit_length() // 8 + 1, "big")
        return b"\x02" + _length(len(body)) + body

    body = integer(prime) + integer(2)
    der = b"\x30" + _length(len(body)) + body
    text = base64.encodebytes(der).replace(b"\n", b"")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    _writeFile(path, b"-----BEGIN DH PARAMETERS-----\n" + b"\n".join(lines) + b"\n-----END DH PARAMETERS-----\n")
    return path


def _length(length: int) -> bytes:
    """
    A DER length.
    """
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


#: RFC 2409 section 6.2, the 1024-bit MODP group's prime.
OAKLEY_GROUP2_PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381"
    "FFFFFFFFFFFFFFFF",
    16,
)


#: RFC 7919 Appendix A.1, the ffdhe2048 group's prime.
FFDHE2048_PRIME = int(
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1"
    "D8B9C583CE2D3695A9E13641146433FBCC939DCE249B3EF9"
    "7D2FE363630C75D8F681B202AEC4617AD3DF1ED5D5FD6561"
    "2433F51F5F066ED0856365553DED1AF3B557135E7F57C935"
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE735"
    "30ACCA4F483A797ABC0AB182B324FB61D108A94BB2C8E3FB"
    "B96ADAB760D7F4681D4F42A3DE394DF4AE56EDE76372BB19"
    "0B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61"
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD73"
    "3BB5FCBC2EC22005C58EF1837D1683B2C6F34A26C1B2EFFA"
    "886B423861285C97FFFFFFFFFFFFFFFF",
    16,
)
