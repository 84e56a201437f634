"""
The C{dicomtls:} server endpoint (DICOM TLS, PS3.15 Annex B) and TLS client
endpoints for requestors.

Twisted's C{ssl:} endpoint string cannot ask for, verify or require client
certificates, choose a DICOM TLS profile, check revocation lists or expect
a server name; DICOM's mutual TLS needs all of them.  L{DICOMTLSServerParser}
is registered as a Twisted endpoint-string parser plugin by
C{twisted/plugins/dicomd_endpoints.py}, so C{twistd dicomd --listen} and
L{twisted.internet.endpoints.serverFromString} understand::

    dicomtls:PORT:privateKey=KEY.pem:certKey=CERT.pem:caCerts=CA.pem:verify=require

with the options of L{DICOMTLSServerParser.parseStreamServer}; the TLS
configuration itself is L{dicomd.tls.settings.TLSSettings}'s.  C{docs/tls.md}
describes every option.
"""

import os
from typing import Dict, List

from twisted.internet import endpoints
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IStreamServerEndpoint, IStreamServerEndpointStringParser
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from dicomd.tls import TLSConfigurationError
from dicomd.tls.certificates import readCertificateBindings
from dicomd.tls.context import CRL_CHECKS
from dicomd.tls.profiles import DEFAULT_PROFILE, PROFILES
from dicomd.tls.settings import VERIFY_MODES, VERIFY_NONE, VERIFY_OPTIONAL, VERIFY_REQUIRE, TLSSettings

log = Logger()

#: The prefix of our endpoint strings.
PREFIX = "dicomtls"

#: What a C{verify=} other than C{require} lets in, for the start-up
#: warning.
_UNAUTHENTICATED = {
    VERIFY_NONE: "clients are not authenticated: no certificate is asked for, anyone who reaches the port may associate",
    VERIFY_OPTIONAL: "clients are not authenticated unless they present a certificate: one without any may associate",
}

#: L{TLSSettings} field -> the C{dicomtls:} option that sets it, for
#: messages.
_OPTION_OF_SETTING = {
    "privateKey": "privateKey",
    "certificate": "certKey",
    "trusted": "caCerts",
    "trustedDirectories": "caCerts",
    "verify": "verify",
    "password": "password",
    "profile": "profile",
    "ciphers": "ciphers",
    "dhParameters": "dhParameters",
    "crls": "crl",
    "crlCheck": "crlCheck",
    "sni": "sni",
    "sniRequired": "sniRequired",
    "certificateBindings": "aeCertificates",
}

_YES = ("yes", "true", "1", "on")
_NO = ("no", "false", "0", "off")


class DICOMTLSFactory(TLSMemoryBIOFactory):
    """
    The TLS wrapper of a C{dicomtls:} endpoint's factory.

    @ivar tlsOptions: the L{dicomd.tls.context.DICOMTLSOptions}, for the protocol
        to find its AE title bindings (L{dicomd.net.protocol.tlsOptionsOf}).
    """

    def __init__(self, tlsOptions, wrappedFactory, clock=None):
        TLSMemoryBIOFactory.__init__(self, tlsOptions, False, wrappedFactory, clock)
        self.tlsOptions = tlsOptions


@implementer(IStreamServerEndpoint)
class DICOMTLSServerEndpoint:
    """
    A TCP server endpoint that wraps every connection in DICOM TLS.

    @ivar settings: the L{TLSSettings} it was built from.
    @ivar tlsOptions: the L{dicomd.tls.context.DICOMTLSOptions} it uses.
    """

    def __init__(self, reactor, port: int, settings: TLSSettings, *, backlog: int = 50, interface: str = ""):
        self.settings = settings
        self.tlsOptions = settings.certificateOptions(isServer=True)
        self.port = port
        self.interface = interface
        if ":" in interface:
            self._tcp = endpoints.TCP6ServerEndpoint(reactor, port, backlog, interface)
        else:
            self._tcp = endpoints.TCP4ServerEndpoint(reactor, port, backlog, interface)

    def listen(self, protocolFactory):
        """
        Listen; see L{IStreamServerEndpoint.listen}.  With C{verify=none}
        or C{verify=optional} a warning says, once listening, that clients
        are not authenticated.
        """
        listening = self._tcp.listen(DICOMTLSFactory(self.tlsOptions, protocolFactory))
        if self.settings.verify in _UNAUTHENTICATED:
            listening.addCallback(self._warnUnauthenticated)
        return listening

    def _warnUnauthenticated(self, port):
        address = port.getHost()
        log.warn(
            "{prefix}: endpoint on {host}:{port} has verify={verify}: {meaning}",
            prefix=PREFIX,
            host=address.host,
            port=address.port,
            verify=self.settings.verify,
            meaning=_UNAUTHENTICATED[self.settings.verify],
        )
        return port


def _flag(name: str, value: str) -> bool:
    if value.lower() in _YES:
        return True
    if value.lower() in _NO:
        return False
    raise ValueError("%s: %s=%s: expected yes or no" % (PREFIX, name, value))


def _list(value: str) -> List[str]:
    return [part for part in (piece.strip() for piece in value.split(",")) if part]


def settingsFromOptions(options: Dict[str, str]) -> TLSSettings:
    """
    The L{TLSSettings} that C{dicomtls:} keyword options describe
    (everything but the port, C{interface} and C{backlog}).

    @raise ValueError: an unknown option or a bad value; the message names
        the option.
    """
    options = dict(options)
    settings = TLSSettings()
    known = {
        "privateKey",
        "certKey",
        "caCerts",
        "verify",
        "password",
        "der",
        "profile",
        "ciphers",
        "dhParameters",
        "crl",
        "crlCheck",
        "sni",
        "sniRequired",
        "aeCertificates",
    }
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            "%s: unknown option %s= (known: %s)" % (PREFIX, unknown[0], ", ".join(sorted(known)))
        )
    if "privateKey" not in options:
        raise ValueError("%s: privateKey= is required (the server's private key file)" % (PREFIX,))
    settings.privateKey = options["privateKey"]
    settings.certificate = options.get("certKey") or options["privateKey"]
    for path in _list(options.get("caCerts", "")):
        if os.path.isdir(path):
            settings.trustedDirectories.append(path)
        else:
            settings.trusted.append(path)
    settings.verify = options.get("verify", VERIFY_REQUIRE)
    if settings.verify not in VERIFY_MODES:
        raise ValueError("%s: verify=%s: expected one of %s" % (PREFIX, settings.verify, ", ".join(VERIFY_MODES)))
    if "password" in options:
        settings.password = options["password"]
    if "der" in options:
        settings.der = _flag("der", options["der"])
    settings.profile = options.get("profile", DEFAULT_PROFILE)
    if settings.profile not in PROFILES:
        raise ValueError("%s: profile=%s: expected one of %s" % (PREFIX, settings.profile, ", ".join(PROFILES)))
    if options.get("ciphers"):
        settings.ciphers = [options["ciphers"]]
    settings.dhParameters = options.get("dhParameters") or None
    settings.crls = _list(options.get("crl", ""))
    if "crlCheck" in options:
        if options["crlCheck"] not in CRL_CHECKS:
            raise ValueError("%s: crlCheck=%s: expected one of %s" % (PREFIX, options["crlCheck"], ", ".join(CRL_CHECKS)))
        settings.crlCheck = options["crlCheck"]
    settings.sni = options.get("sni") or None
    if "sniRequired" in options:
        settings.sniRequired = _flag("sniRequired", options["sniRequired"])
    if options.get("aeCertificates"):
        settings.certificateBindings = _named(lambda: readCertificateBindings(options["aeCertificates"]), options)
    return settings


def _named(build, options: Dict[str, str]):
    """
    Call C{build}; turn a L{TLSConfigurationError} into a L{ValueError}
    naming the option at fault.
    """
    try:
        return build()
    except TLSConfigurationError as e:
        option = _OPTION_OF_SETTING.get(e.setting)
        if option is None:
            raise ValueError("%s: %s" % (PREFIX, e))
        value = options.get(option)
        shown = "%s=%s" % (option, value) if value is not None and option != "password" else option + "="
        raise ValueError("%s: %s: %s" % (PREFIX, shown, e))


@implementer(IPlugin, IStreamServerEndpointStringParser)
class DICOMTLSServerParser:
    """
    The C{dicomtls:} endpoint-string parser.
    """

    prefix = PREFIX

    def parseStreamServer(self, reactor, port=None, *, interface: str = "", backlog: str = "50", **options):
        """
        Build a L{DICOMTLSServerEndpoint} from
        C{dicomtls:PORT:option=value:...}.

        @param port: the TCP port (also accepted as C{port=}).
        @param interface: the address to listen on (default: all IPv4).
        @param backlog: the listen queue length.
        @param options: C{privateKey} (required), C{certKey} (default: the
            C{privateKey} file), C{caCerts} (comma-separated files or
            directories), C{verify} (C{require}, C{optional}, C{none}),
            C{password}, C{der}, C{profile}, C{ciphers}, C{dhParameters},
            C{crl} (comma-separated), C{crlCheck} (C{leaf}, C{chain}),
            C{sni}, C{sniRequired}, C{aeCertificates}.
        @raise ValueError: a missing or bad option, or a file that cannot
            be used; the message names the option.
        """
        if port is None:
            port = options.pop("port", None)
        if port is None:
            raise ValueError("%s: the port is required (dicomtls:PORT:...)" % (PREFIX,))
        try:
            portNumber = int(port)
            if not 0 <= portNumber <= 65535:
                raise ValueError()
        except ValueError:
            raise ValueError("%s: %r is not a port number" % (PREFIX, port))
        try:
            backlogNumber = int(backlog)
        except ValueError:
            raise ValueError("%s: backlog=%s is not a number" % (PREFIX, backlog))
        settings = settingsFromOptions(options)
        return _named(
            lambda: DICOMTLSServerEndpoint(reactor, portNumber, settings, backlog=backlogNumber, interface=interface),
            options,
        )


def _tcpEndpoint(reactor, host: str, port: int, timeout: float):
    """
    A TCP client endpoint to C{host:port}: to an IP address at once; to a
    name through its addresses in turn (C{HostnameEndpoint}, which, even
    with one address, reports a refused connection only when its next
    attempt would start, 0.3 s later: what a forwarding retry waits on).
    """
    if isIPAddress(host):
        return endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return endpoints.TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)


def clientEndpoint(reactor, host: str, port: int, tls=None, *, timeout: float = 30):
    """
    A client endpoint to C{host:port}: TCP, wrapped in DICOM TLS when
    C{tls} is given.  The certificate chain is verified against the
    trusted certificates; the server's certificate must also name C{host}
    when the settings say so (L{TLSSettings.verifyHostName}), since DICOM
    TLS itself authenticates certificates, not names.

    @param tls: a L{TLSSettings}, the L{dicomd.tls.context.DICOMTLSOptions} (or any
        Twisted TLS client options) built from one, or C{None} for plain
        TCP.  Options built already check the name they were built for,
        if any.
    @raise TLSConfigurationError: the TLS settings cannot be used.
    """
    endpoint = _tcpEndpoint(reactor, host, port, timeout)
    if tls is None:
        return endpoint
    if isinstance(tls, TLSSettings):
        tls = tls.certificateOptions(isServer=False, hostName=host)
    return endpoints.wrapClientTLS(tls, endpoint)

