"""
The OpenSSL context of a DICOM TLS connection.

L{DICOMTLSOptions} is a L{twisted.internet.ssl.CertificateOptions} that
also applies what C{CertificateOptions} cannot express: the profile's exact
cipher suites and OpenSSL security level, CRL checking, SNI, and the host
name check.  DICOM TLS itself authenticates certificates, not names (PS3.15
B.1), and DCMTK's tools verify the peer's chain only; a client whose
settings ask for it (C{TLSSettings.verifyHostName}, what the daemon's
C-MOVE peers do by default) also checks that the server's certificate names
the host it connects to, as RFC 6125 says, with C{service_identity}.
"""

import ipaddress
from functools import lru_cache
from typing import Mapping, Optional, Sequence

from cryptography import x509
from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet import ssl
from twisted.logger import Logger

from dicomd.tls import TLSConfigurationError
from dicomd.tls.certificates import certificateHostNames, certificateSubject

log = Logger(namespace="dicomd.tls")

#: How revocation lists are checked, as DCMTK's C{+crv} and C{+cra}: the
#: peer's own certificate only, or every certificate of its chain.
CRL_LEAF = "leaf"
CRL_CHAIN = "chain"
CRL_CHECKS = (CRL_LEAF, CRL_CHAIN)


def _isAddress(text: str) -> bool:
    """
    Whether C{text} is an IPv4 or IPv6 address (not a host name).
    """
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class DICOMTLSOptions(ssl.CertificateOptions):
    """
    L{ssl.CertificateOptions} plus what DICOM TLS needs and
    C{CertificateOptions} cannot express: an exact cipher string with its
    OpenSSL security level, revocation lists, and SNI (a server's expected
    name, a client's requested one).

    @ivar certificateBindings: calling AE title -> allowed certificates,
        read by L{dicomd.net.acceptor} through the connection's app data.
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
