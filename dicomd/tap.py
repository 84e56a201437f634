"""
The C{twistd dicomd} plugin: command-line options and the service tree.

C{twistd -n dicomd} with no options listens on C{tcp:11112} as AE C{DICOMD}.
Listening addresses are Twisted endpoint strings, repeatable with
C{--listen}.
"""

from twisted.application import service, strports
from twisted.python import usage

from dicomd.dimse.commands import CEchoRQ
from dicomd.net.acceptor import AcceptorFactory, ApplicationEntity
from dicomd.services.verification import VerificationSCP
from dicomd.net.association import VERIFICATION_SOP_CLASS
from dicomd.ul.negotiation import ACCEPTOR_PREFERENCES, AcceptorPolicy

DEFAULT_LISTEN = "tcp:11112"

#: storescp's long options for the preferred network transfer syntaxes, and
#: the short form each stands for in L{ACCEPTOR_PREFERENCES}.
TRANSFER_SYNTAX_FLAGS = [
    ("prefer-uncompr", "+x=", "Prefer explicit VR local byte order (default)."),
    ("prefer-little", "+xe", "Prefer explicit VR little endian."),
    ("prefer-big", "+xb", "Prefer explicit VR big endian."),
    ("prefer-lossless", "+xs", "Prefer default JPEG lossless."),
    ("prefer-jpeg8", "+xy", "Prefer default JPEG lossy for 8 bit data."),
    ("prefer-jpeg12", "+xx", "Prefer default JPEG lossy for 12 bit data."),
    ("prefer-j2k-lossless", "+xv", "Prefer JPEG 2000 lossless."),
    ("prefer-j2k-lossy", "+xw", "Prefer JPEG 2000 lossy."),
    ("prefer-jls-lossless", "+xt", "Prefer JPEG-LS lossless."),
    ("prefer-jls-lossy", "+xu", "Prefer JPEG-LS lossy."),
    ("prefer-mpeg2", "+xm", "Prefer MPEG2 Main Profile @ Main Level."),
    ("prefer-mpeg2-high", "+xh", "Prefer MPEG2 Main Profile @ High Level."),
    ("prefer-mpeg4", "+xn", "Prefer MPEG4 AVC/H.264 High Profile / Level 4.1."),
    ("prefer-mpeg4-bd", "+xl", "Prefer MPEG4 AVC/H.264 BD-compatible High Profile / Level 4.1."),
    ("prefer-mpeg4-2-2d", "+x2", "Prefer MPEG4 AVC/H.264 High Profile / Level 4.2 for 2D video."),
    ("prefer-mpeg4-2-3d", "+x3", "Prefer MPEG4 AVC/H.264 High Profile / Level 4.2 for 3D video."),
    ("prefer-mpeg4-2-st", "+xo", "Prefer MPEG4 AVC/H.264 Stereo High Profile / Level 4.2."),
    ("prefer-hevc", "+x4", "Prefer HEVC H.265 Main Profile / Level 5.1."),
    ("prefer-hevc10", "+x5", "Prefer HEVC H.265 Main 10 Profile / Level 5.1."),
    ("prefer-rle", "+xr", "Prefer RLE lossless."),
    ("prefer-deflated", "+xd", "Prefer deflated explicit VR little endian."),
    ("implicit", "+xi", "Accept implicit VR little endian only."),
    ("accept-all", "+xa", "Accept all supported transfer syntaxes."),
]


def _positive(name, convert=int):
    def check(value):
        try:
            number = convert(value)
        except ValueError:
            raise usage.UsageError("--%s takes a number, not %r" % (name, value))
        if number <= 0:
            raise usage.UsageError("--%s must be greater than 0, not %r" % (name, value))
        return number

    return check


class Options(usage.Options):
    """
    Options of C{twistd dicomd}.
    """

    synopsis = "[options]"
    longdesc = (
        "A DICOM network daemon.  Without options it listens on tcp:11112 as AE "
        "title DICOMD and answers C-ECHO."
    )

    optParameters = [
        ["aetitle", "a", "DICOMD", "Our AE title."],
        ["max-pdu", None, 16384, "Maximum P-DATA-TF length we receive (4096..131072, or 0 for no limit).", int],
        ["max-associations", None, 64, "Simultaneous associations before new ones are rejected.", _positive("max-associations")],
        ["acse-timeout", None, 30.0, "Seconds to wait for association messages (ARTIM).", _positive("acse-timeout", float)],
        ["dimse-timeout", None, None, "Seconds to wait for a DIMSE response (default: unlimited).", _positive("dimse-timeout", float)],
        ["idle-timeout", None, 60.0, "Seconds of silence before an idle association is aborted (0: never).", float],
    ]

    optFlags = [[name, None, help] for name, _, help in TRANSFER_SYNTAX_FLAGS]

    def __init__(self):
        usage.Options.__init__(self)
        self["listen"] = []

    def opt_listen(self, endpoint):
        """
        Listen on this Twisted server endpoint string (repeatable; default
        tcp:11112).
        """
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self):
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        title = self["aetitle"]
        if not 0 < len(title) <= 16 or not title.isascii() or "\\" in title:
            raise usage.UsageError("--aetitle must be 1 to 16 ASCII characters without backslash, not %r" % (title,))
        maxPDU = self["max-pdu"]
        if maxPDU != 0 and not 4096 <= maxPDU <= 131072:
            raise usage.UsageError("--max-pdu must be 0 or between 4096 and 131072, not %d" % (maxPDU,))
        if self["idle-timeout"] < 0:
            raise usage.UsageError("--idle-timeout must not be negative")
        chosen = [name for name, _, _ in TRANSFER_SYNTAX_FLAGS if self[name]]
        if len(chosen) > 1:
            raise usage.UsageError("choose one transfer syntax preference, not --%s" % (" and --".join(chosen),))
        self["transfer-syntaxes"] = ACCEPTOR_PREFERENCES[
            dict((name, short) for name, short, _ in TRANSFER_SYNTAX_FLAGS)[chosen[0]] if chosen else "+x="
        ]


def makeService(options) -> service.MultiService:
    """
    Build the service tree: one listening service per C{--listen}.
    """
    entity = ApplicationEntity(
        options["aetitle"],
        AcceptorPolicy({VERIFICATION_SOP_CLASS: options["transfer-syntaxes"]}),
        {CEchoRQ.commandField: VerificationSCP()},
        maximumLength=options["max-pdu"],
    )
    factory = AcceptorFactory(
        entity,
        maximumAssociations=options["max-associations"],
        artimTimeout=options["acse-timeout"],
        idleTimeout=options["idle-timeout"] or None,
        dimseTimeout=options["dimse-timeout"],
    )
    top = service.MultiService()
    for description in options["listen"]:
        strports.service(description, factory).setServiceParent(top)
    return top
