"""
Option groups the front doors share: DCMTK's TLS options, the transfer
syntax option families, and turning them into endpoints and settings.
"""

from typing import Dict, List, Tuple

from twisted.internet import endpoints

from dicomd.cli.options import Option, UsageError, string
from dicomd.tls import VERIFY_NONE, VERIFY_OPTIONAL, VERIFY_REQUIRE, TLSSettings
from dicomd.ul.negotiation import ACCEPTOR_PREFERENCES

#: The two-letter suffixes of DCMTK's transfer syntax options with their
#: long names (minus the C{--prefer-}/C{--propose-} stem) and meanings.
TRANSFER_SYNTAX_OPTIONS: List[Tuple[str, str, str]] = [
    ("=", "uncompr", "explicit VR local byte order"),
    ("e", "little", "explicit VR little endian"),
    ("b", "big", "explicit VR big endian"),
    ("s", "lossless", "default JPEG lossless"),
    ("y", "jpeg8", "default JPEG lossy for 8 bit data"),
    ("x", "jpeg12", "default JPEG lossy for 12 bit data"),
    ("v", "j2k-lossless", "JPEG 2000 lossless"),
    ("w", "j2k-lossy", "JPEG 2000 lossy"),
    ("t", "jls-lossless", "JPEG-LS lossless"),
    ("u", "jls-lossy", "JPEG-LS lossy"),
    ("m", "mpeg2", "MPEG2 Main Profile @ Main Level"),
    ("h", "mpeg2-high", "MPEG2 Main Profile @ High Level"),
    ("n", "mpeg4", "MPEG4 AVC/H.264 High Profile / Level 4.1"),
    ("l", "mpeg4-bd", "MPEG4 AVC/H.264 BD-compatible HP / Level 4.1"),
    ("2", "mpeg4-2-2d", "MPEG4 AVC/H.264 HP / Level 4.2 for 2D videos"),
    ("3", "mpeg4-2-3d", "MPEG4 AVC/H.264 HP / Level 4.2 for 3D videos"),
    ("o", "mpeg4-2-st", "MPEG4 AVC/H.264 Stereo HP / Level 4.2"),
    ("4", "hevc", "HEVC H.265 Main Profile / Level 5.1"),
    ("5", "hevc10", "HEVC H.265 Main 10 Profile / Level 5.1"),
    ("r", "rle", "RLE lossless"),
    ("d", "deflated", "deflated explicit VR little endian"),
]


def preferredSyntaxOptions(prefix: str, stem: str, dest: str, verb: str) -> List[Option]:
    """
    C{+x=}, C{+xe}... (acceptor, C{prefix="+"}) or C{-x=}, C{-xe}...
    (requestor, C{prefix="-"}); each sets C{dest} to its key in
    L{ACCEPTOR_PREFERENCES}, such as C{"+xe"}.
    """
    return [
        Option((prefix + "x" + suffix, "--%s-%s" % (stem, name)), dest, "%s %s TS" % (verb, meaning), const="+x" + suffix)
        for suffix, name, meaning in TRANSFER_SYNTAX_OPTIONS
    ]


def preferredTransferSyntax(key: str) -> str:
    """
    The transfer syntax an option such as C{"+xe"} or C{"+xi"} puts first.
    """
    return ACCEPTOR_PREFERENCES[key][0]


def tlsOptions(server: bool) -> Tuple[str, List[Option]]:
    """
    DCMTK's "transport layer security (TLS) options" group.
    """
    options = [
        Option(("-tls", "--disable-tls"), "tls", "use normal TCP/IP connection (default)", const=None),
        Option(
            ("+tls", "--enable-tls"),
            "tls",
            "use authenticated secure TLS connection",
            (("p]rivate key file", string), ("c]ertificate file", string)),
        ),
        Option(("+ps", "--std-passwd"), "password", "prompt user to type password on stdin (default)", const=None),
        Option(("+pw", "--use-passwd"), "password", "use specified password", (("p]assword", string),)),
        Option(("-pw", "--null-passwd"), "password", "use empty string as password", const=""),
        Option(("-pem", "--pem-keys"), "der", "read keys and certificates as PEM file (default)", const=False),
        Option(("-der", "--der-keys"), "der", "read keys and certificates as DER file", const=True),
        Option(("+cf", "--add-cert-file"), "certFiles", "add certificate file to list of certificates", (("f]ilename", string),), append=True),
        Option(("+cd", "--add-cert-dir"), "certDirs", "add certificates in d to list of certificates", (("d]irectory", string),), append=True),
        Option(("-rc", "--require-peer-cert"), "verify", "verify peer certificate, fail if absent (default)", const=VERIFY_REQUIRE),
        Option(("-vc", "--verify-peer-cert"), "verify", "verify peer certificate if present", const=VERIFY_OPTIONAL),
        Option(("-ic", "--ignore-peer-cert"), "verify", "don't verify peer certificate", const=VERIFY_NONE),
    ]
    if not server:
        options.insert(2, Option(("+tla", "--anonymous-tls"), "tls", "use secure TLS connection without certificate", const=(None, None)))
    return ("transport layer security (TLS) options", options)


def tlsSettings(values: Dict) -> TLSSettings:
    """
    The L{TLSSettings} for parsed TLS options; C{values["tls"]} is set.
    """
    key, certificate = values["tls"]
    return TLSSettings(
        privateKey=key,
        certificate=certificate,
        trusted=values.get("certFiles") or [],
        trustedDirectories=values.get("certDirs") or [],
        verify=values.get("verify") or VERIFY_REQUIRE,
        password=values.get("password"),
        der=bool(values.get("der")),
    )


def clientEndpoint(reactor, values: Dict, host: str, port: int):
    """
    A client endpoint to C{host:port}: TCP, wrapped in TLS when C{+tls} or
    C{+tla} was given.

    @raise UsageError: the TLS files cannot be used.
    """
    endpoint = endpoints.HostnameEndpoint(reactor, host, port, timeout=values.get("timeout") or 30)
    if not values.get("tls"):
        return endpoint
    try:
        options = tlsSettings(values).certificateOptions(isServer=False)
    except ValueError as e:
        raise UsageError(str(e))
    return endpoints.wrapClientTLS(options, endpoint)
