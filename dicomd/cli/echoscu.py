"""
C{dicomd echoscu}: a Verification SCU (PS3.4 Annex A) with DCMTK echoscu's
command line.
"""

from twisted.internet import defer, endpoints
from twisted.logger import Logger

from dicomd.cli.options import CommandLine, Option, Parameter, aeTitle, generalOptions, integer
from dicomd.dimse.status import SUCCESS, describe
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
from dicomd.errors import AssociationAborted, AssociationError, AssociationRejected
from dicomd.net.requestor import connect
from dicomd.ul.negotiation import UNCOMPRESSED

log = Logger(namespace="echoscu")

EXIT_CANNOT_CONNECT = 60
EXIT_ASSOCIATION_REJECTED = 61
EXIT_ECHO_FAILED = 62
EXIT_ASSOCIATION_ABORTED = 70

COMMAND_LINE = CommandLine(
    "dicomd echoscu",
    "DICOM verification (C-ECHO) SCU",
    [
        Parameter("peer", "hostname of DICOM peer"),
        Parameter("port", "tcp/ip port number of peer", integer(1, 65535)),
    ],
    [
        generalOptions(),
        (
            "network options",
            [
                Option(("-aet", "--aetitle"), "aetitle", "set my calling AE title (default: ECHOSCU)", (("a]etitle", aeTitle),)),
                Option(("-aec", "--call"), "call", "set called AE title of peer (default: ANY-SCP)", (("a]etitle", aeTitle),)),
                Option(("-to", "--timeout"), "timeout", "timeout for connection requests", (("s]econds", integer(1)),)),
                Option(("-ta", "--acse-timeout"), "acseTimeout", "timeout for ACSE messages (default: 30)", (("s]econds", integer(1)),)),
                Option(("-td", "--dimse-timeout"), "dimseTimeout", "timeout for DIMSE messages", (("s]econds", integer(1)),)),
                Option(("-pdu", "--max-pdu"), "maxPDU", "set max receive pdu to n bytes (default: 16384)", (("n]umber of bytes", integer(4096, 131072)),)),
                Option(("--repeat",), "repeat", "repeat n times", (("n]umber", integer(1)),)),
                Option(("--abort",), "abort", "abort association instead of releasing it"),
            ],
        ),
    ],
    defaults={"aetitle": "ECHOSCU", "call": "ANY-SCP", "acseTimeout": 30, "maxPDU": 16384, "repeat": 1},
    helpWithoutArguments=True,
)


@defer.inlineCallbacks
def run(reactor, values):
    """
    Associate, send C{--repeat} C-ECHO requests, release or abort.

    @return: a L{Deferred} firing with the exit status.
    """
    endpoint = endpoints.HostnameEndpoint(reactor, values["peer"], values["port"], timeout=values.get("timeout") or 30)
    log.info("Requesting Association")
    try:
        association = yield connect(
            endpoint,
            calledAETitle=values["call"],
            callingAETitle=values["aetitle"],
            presentationContexts=[(VERIFICATION_SOP_CLASS, UNCOMPRESSED)],
            maximumLength=values["maxPDU"],
            acseTimeout=values["acseTimeout"],
            dimseTimeout=values.get("dimseTimeout"),
            reactor=reactor,
        )
    except AssociationRejected as e:
        log.error("Association Rejected: {why}", why=str(e))
        return EXIT_ASSOCIATION_REJECTED
    except AssociationError as e:
        log.error("Association Request Failed: {why}", why=str(e))
        return EXIT_ASSOCIATION_ABORTED
    except Exception as e:
        log.error("Association Request Failed: {why}", why=str(e))
        return EXIT_CANNOT_CONNECT
    log.info("Association Accepted (Max Send PDV: {pdv})", pdv=association.fragmentLength)
    result = 0
    for _ in range(values["repeat"]):
        try:
            status = yield association.echo()
        except AssociationAborted as e:
            log.error("Echo Failed: {why}", why=str(e))
            return EXIT_ASSOCIATION_ABORTED
        log.info("Received Echo Response ({status})", status=describe(status))
        if status != SUCCESS:
            result = EXIT_ECHO_FAILED
    if values.get("abort"):
        log.info("Aborting Association")
        yield association.abort()
    else:
        log.info("Releasing Association")
        yield association.release()
    return result
