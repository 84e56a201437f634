"""
C{dicomd storescp}: the Storage SCP (PS3.4 Annex B) with DCMTK storescp
3.6.8's command line, running the same service objects as C{twistd dicomd}.

Differences from DCMTK's storescp, all documented in docs/storage.md: every
association runs concurrently on one reactor, and C{--fork} runs one
reactor per CPU in worker processes (L{dicomd.workers}) rather than a
process per association; data sets are stored
bit for bit by default (storescp's C{+B}), and sorting works with it; a data
set that does not match its C-STORE-RQ is answered 0xA900 and not kept.

Every option of the 3.6.8 manual is known here: those dicomd cannot honour
(TCP wrappers, oflog configuration files, TLS random seed files...)
are declared with L{_unsupported} and refused by L{validate} with a message
naming the option and saying why.
"""

from twisted.internet import defer
from twisted.logger import Logger

from dicomd.actions import UnsafeCommand, shellCommand
from dicomd.asconfig import AsConfigError, acceptorPolicy, readProfiles
from dicomd.cli.common import (
    CommandFileCommandLine,
    UnsupportedOptions,
    forkedWorkers,
    frontDoorGeneralOptions,
    preferredSyntaxOptions,
    serverPreamble,
    tlsOptionGroup,
    tlsSettings,
    tlsUsageError,
)
from dicomd.cli.options import CannotStart, Option, Parameter, UsageError, aeTitle, integer, string
from dicomd.cli.run import serve, takeInetdConnection
from dicomd.cli.translate import idleTimeout, preferredSyntaxes, recodeOptions, recoder, storageOptions
from dicomd.config import DaemonConfig, EntityConfig, Limits, PortConfig
from dicomd.daemon import DicomdService
from dicomd.startup import outputDirectoryProblem
from dicomd.storage import naming
from dicomd.storage.receiver import SORT_PATIENT_NAME, SORT_STUDY_UID, SORT_TIMESTAMP
from dicomd.storage.recode import GROUP_LENGTH_CREATE, GROUP_LENGTH_RECALCULATE, GROUP_LENGTH_REMOVE
from dicomd.ul.negotiation import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)
from dicomd.workers import WorkerPool

log = Logger(namespace="storescp")

#: storescp's exit status for every failure: usage errors, an unusable
#: output directory, a port it cannot listen on.
EXIT_FAILURE = 1

_SECONDS = (("s]econds", integer(0)),)


def _sortedBy(mode: str):
    """
    The converter of C{-ss} and C{-su}'s prefix: it records which of the two
    set it, as C{(mode, prefix)}.
    """

    def convert(prefix: str):
        return (mode, prefix)

    convert.kind = "string"
    return convert


UNSUPPORTED = UnsupportedOptions()






COMMAND_LINE = CommandFileCommandLine(
    "dicomd storescp",
    "DICOM storage (C-STORE) SCP",
    [Parameter("port", "tcp/ip port number to listen on", integer(1, 65535), required=False)],
    [
        frontDoorGeneralOptions(
            UNSUPPORTED,
            [Option(("+v", "--verbose-pc"), "verbosePC", "show presentation contexts in verbose mode (implies -v)")],
            logConfigAdvice=", or run twistd dicomd for log files and syslog",
        ),
        (
            "multi-process options",
            [
                Option(("--single-process",), "fork", "single process mode (default)", const=False),
                Option(("--fork",), "fork", "fork child process for each association (associations are concurrent anyway)"),
            ],
        ),
        (
            "network options",
            [
                Option(("-xf", "--config-file"), "configFile", "use profile p from config file f", (("f]ilename", string), ("p]rofile", string))),
            ]
            + preferredSyntaxOptions("+", "prefer", "preferred", "prefer")
            + [
                Option(("+xi", "--implicit"), "preferred", "accept implicit VR little endian TS only", const="+xi"),
                Option(("+xa", "--accept-all"), "preferred", "accept all supported transfer syntaxes", const="+xa"),
                Option(("-ac", "--access-full"), "accessControl", "accept connections from any host (default)", const=False),
                UNSUPPORTED.option(
                    ("+ac", "--access-control"),
                    "enforce host access control rules",
                    "TCP wrapper (hosts.allow/hosts.deny) access control is not available; "
                    "use a firewall, or dicomd's calling AE and host rules (dcmqrscp.cfg)",
                ),
                Option(("-id", "--inetd"), "inetd", "run from inetd super server (not with --fork)"),
                Option(("-ts", "--socket-timeout"), "socketTimeout", "timeout for network socket (0 for none, default: 60)", _SECONDS),
                Option(("-ta", "--acse-timeout"), "acseTimeout", "timeout for ACSE messages (default: 30)", (("s]econds", integer(1)),)),
                Option(("-td", "--dimse-timeout"), "dimseTimeout", "timeout for DIMSE messages (default: unlimited)", (("s]econds", integer(1)),)),
                Option(("-aet", "--aetitle"), "aetitle", "set my AE title (default: STORESCP)", (("a]etitle", aeTitle),)),
                Option(("-pdu", "--max-pdu"), "maxPDU", "set max receive pdu to n bytes (default: 131072; DCMTK: 16384)", (("n]umber of bytes", integer(4096, 131072)),)),
                Option(
                    ("--max-async-ops",),
                    "maxAsyncOps",
                    "grant an asynchronous operations window of up to n requests (dicomd only, default: 16; 1: none)",
                    (("n]umber", integer(1, 65535)),),
                ),
                Option(("-dhl", "--disable-host-lookup"), "disableHostLookup", "disable hostname lookup (dicomd never looks names up)"),
                Option(("--refuse",), "refuse", "refuse association"),
                Option(("--reject",), "reject", "reject association if no implementation class UID"),
                Option(("--ignore",), "ignore", "ignore store data, receive but do not store"),
                Option(("--sleep-after",), "sleepAfter", "sleep s seconds after store (default: 0)", _SECONDS),
                Option(("--sleep-during",), "sleepDuring", "sleep s seconds during store (default: 0)", _SECONDS),
                Option(("--abort-after",), "abortAfter", "abort association after receipt of C-STORE-RQ (but before sending response)"),
                Option(("--abort-during",), "abortDuring", "abort association during receipt of C-STORE-RQ"),
                Option(("-pm", "--promiscuous"), "promiscuous", "promiscuous mode, accept unknown SOP classes"),
                Option(("-up", "--uid-padding"), "uidPadding", "silently correct space-padded UIDs (always done)"),
            ],
        ),
        tlsOptionGroup(UNSUPPORTED, server=True),
        (
            "output options",
            [
                Option(("-od", "--output-directory"), "outputDirectory", 'write received objects to existing directory d (default: ".")', (("d]irectory", string),)),
                Option(
                    ("--state-directory",),
                    "stateDirectory",
                    "keep the end-of-study journal in directory d (dicomd; default: /var/lib/dicomd for root, else ~/.local/state/dicomd)",
                    (("d]irectory", string),),
                ),
                Option(("-B", "--normal"), "bitPreserving", "allow implicit format conversions", const=False),
                Option(("+B", "--bit-preserving"), "bitPreserving", "write data exactly as read (dicomd's default)"),
                Option(("+F", "--write-file"), "writeDataSetOnly", "write file format (default)", const=False),
                Option(("-F", "--write-dataset"), "writeDataSetOnly", "write data set without file meta information"),
                Option(("+t=", "--write-xfer-same"), "writeTransferSyntax", "write with same TS as input (default)", const=None),
                Option(("+te", "--write-xfer-little"), "writeTransferSyntax", "write with explicit VR little endian TS", const=EXPLICIT_VR_LITTLE_ENDIAN),
                Option(("+tb", "--write-xfer-big"), "writeTransferSyntax", "write with explicit VR big endian TS", const=EXPLICIT_VR_BIG_ENDIAN),
                Option(("+ti", "--write-xfer-implicit"), "writeTransferSyntax", "write with implicit VR little endian TS", const=IMPLICIT_VR_LITTLE_ENDIAN),
                Option(("+td", "--write-xfer-deflated"), "writeTransferSyntax", "write with deflated explicit VR little endian TS", const=DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN),
                Option(("+u", "--enable-new-vr"), "newVRs", "enable support for new VRs (UN/UT) (default)", const=True),
                Option(("-u", "--disable-new-vr"), "newVRs", "disable support for new VRs, convert to OB", const=False),
                Option(("+g=", "--group-length-recalc"), "groupLength", "recalculate group lengths if present (default)", const=GROUP_LENGTH_RECALCULATE),
                Option(("+g", "--group-length-create"), "groupLength", "always write with group length elements", const=GROUP_LENGTH_CREATE),
                Option(("-g", "--group-length-remove"), "groupLength", "always write without group length elements", const=GROUP_LENGTH_REMOVE),
                Option(("+e", "--length-explicit"), "undefinedLengths", "write with explicit lengths (default)", const=False),
                Option(("-e", "--length-undefined"), "undefinedLengths", "write with undefined lengths", const=True),
                Option(("-p", "--padding-off"), "padding", "no padding (default)", const=None),
                Option(("+p", "--padding-create"), "padding", "align file on multiple of f bytes and items on multiple of i bytes", (("f]ile-pad", integer(0)), ("i]tem-pad", integer(0)))),
                Option(("-uc", "--retain-un"), "convertUN", "retain elements as UN (default)", const=False),
                Option(("+uc", "--convert-un"), "convertUN", "convert to real VR if known"),
                Option(("+cl", "--compression-level"), "compressionLevel", "0=uncompressed, 1=fastest, 9=best compression (default: 6)", (("l]evel", integer(0, 9)),)),
                Option(("-ss", "--sort-conc-studies"), "sort", "sort studies using prefix p and a timestamp", (("p]refix", _sortedBy(SORT_TIMESTAMP)),)),
                Option(("-su", "--sort-on-study-uid"), "sort", "sort studies using prefix p and the Study Instance UID", (("p]refix", _sortedBy(SORT_STUDY_UID)),)),
                Option(("-sp", "--sort-on-patientname"), "sort", "sort studies using the Patient's Name and a timestamp", const=(SORT_PATIENT_NAME, "")),
                Option(("-uf", "--default-filenames"), "fileNames", "generate filename from instance UID (default)", const=naming.FileNameScheme.INSTANCE_UID),
                Option(("+uf", "--unique-filenames"), "fileNames", "generate unique filenames", const=naming.FileNameScheme.UNIQUE),
                Option(("-tn", "--timenames"), "fileNames", "generate filename from creation time", const=naming.FileNameScheme.TIME),
                Option(("-fe", "--filename-extension"), "extension", "append e to all filenames", (("e]xtension", string),)),
                Option(("--fsync",), "sync", "fsync each file and its directory before answering (dicomd only)"),
            ],
        ),
        (
            "event options",
            [
                Option(("-xcr", "--exec-on-reception"), "execOnReception", "execute command c after having received and processed one C-STORE-RQ message", (("c]ommand", string),)),
                Option(("-xcs", "--exec-on-eostudy"), "execOnEndOfStudy", "execute command c after having received and processed all C-STORE-RQ messages that belong to one study", (("c]ommand", string),)),
                Option(("-rns", "--rename-on-eostudy"), "renameOnEndOfStudy", "having received and processed all C-STORE-RQ messages that belong to one study, rename output files according to a certain pattern"),
                Option(("-tos", "--eostudy-timeout"), "endOfStudyTimeout", "specifies a timeout of t seconds for end-of-study", (("t]imeout", integer(0)),)),
                Option(("-xs", "--exec-sync"), "execSync", "execute command synchronously (the response waits, other associations do not)"),
            ],
        ),
    ],
    defaults={"aetitle": "STORESCP", "maxPDU": 131072, "maxAsyncOps": 16, "acseTimeout": 30, "socketTimeout": 60, "outputDirectory": ".", "compressionLevel": 6},
    helpWithoutArguments=True,
)

def validate(values) -> None:
    """
    Refuse what storescp refuses (with the same wording where it has one)
    and every option dicomd does not honour, naming it; check the files
    the options name (C{-od}, C{-xf}, the TLS key and certificates) and
    the commands (C{-xcr}, C{-xcs}: L{shellCommand}) so that a mistake is
    reported before anything listens.
    """
    UNSUPPORTED.check(values)
    if values.get("listCiphers"):
        return
    if values.get("port") is None and not values.get("inetd"):
        raise UsageError("missing parameter port")
    if values.get("inetd") and values.get("fork"):
        raise UsageError("--inetd and --fork are mutually exclusive")
    if values.get("verbosePC"):
        # DCMTK refuses +v without verbose mode; we turn verbose mode on.
        values["verbose"] = True
    if values.get("configFile") and (values.get("preferred") or values.get("promiscuous")):
        raise UsageError("--config-file cannot be combined with transfer syntax options or --promiscuous")
    if values.get("renameOnEndOfStudy") and not values.get("sort"):
        raise UsageError("--rename-on-eostudy requires one of --sort-conc-studies, --sort-on-study-uid, --sort-on-patientname")
    if values.get("endOfStudyTimeout") is not None and not (
        values.get("sort") or values.get("execOnEndOfStudy") or values.get("renameOnEndOfStudy")
    ):
        raise UsageError("--eostudy-timeout requires --sort-xxx, --exec-on-eostudy or --rename-on-eostudy")
    if values.get("ignore") and (values.get("sort") or values.get("renameOnEndOfStudy")):
        raise UsageError("--ignore cannot be combined with sorting or renaming")
    for key, option in (("execOnReception", "--exec-on-reception"), ("execOnEndOfStudy", "--exec-on-eostudy")):
        if values.get(key):
            try:
                shellCommand(values[key])
            except UnsafeCommand as e:
                raise UsageError("%s: %s" % (option, e))
    recoder(recodeOptions(values), bitPreserving=bool(values.get("bitPreserving")))
    directory = values["outputDirectory"]
    problem = outputDirectoryProblem(directory, write=not values.get("ignore"))
    if problem is not None:
        raise CannotStart("-od (--output-directory) %s: specified output directory %s" % (directory, problem), EXIT_FAILURE)
    _checkProfile(values)
    if values.get("tls"):
        try:
            values["tlsContext"] = tlsSettings(values).certificateOptions(isServer=True)
        except ValueError as e:
            raise tlsUsageError(e)


def _checkProfile(values) -> None:
    """
    Check that the profile of C{-xf}, which the AE accepts instead of
    Verification and every storage SOP class, reads as an SCP profile.

    @raise UsageError: it does not; the message names the file and why.
    """
    if values.get("configFile"):
        path, profile = values["configFile"]
        try:
            acceptorPolicy(readProfiles(path).profile(profile))
        except (AsConfigError, OSError, KeyError) as e:
            raise UsageError("--config-file %s %s: %s" % (path, profile, e))


def daemonConfig(values) -> DaemonConfig:
    """
    storescp's options in the daemon's terms: one AE that answers any
    called AE title and stores without an index, with storescp's limits
    and timeouts, listening on the port (or on nothing with C{--inetd}).

    @param values: the parsed command line, checked by L{validate}.
    """
    entity = EntityConfig(
        title=values["aetitle"],
        storage=storageOptions(values, values["outputDirectory"]),
        transferSyntaxes=preferredSyntaxes(values.get("preferred")),
        profile=values.get("configFile"),
        promiscuous=bool(values.get("promiscuous")),
        access="W",
        queryRetrieve=False,
        get=False,
        models=(),
        requireImplementationClassUID=bool(values.get("reject")),
        refuseAll=bool(values.get("refuse")),
        logPresentationContexts=bool(values.get("verbosePC")),
    )
    limits = Limits(
        maxAssociations=64,
        maxAssociationsPerHost=None,
        maxPDU=values["maxPDU"],
        maxAsyncOps=values["maxAsyncOps"],
        acseTimeout=values["acseTimeout"],
        idleTimeout=idleTimeout(values["socketTimeout"]),
        dimseTimeout=values.get("dimseTimeout"),
    )
    return DaemonConfig(
        listen=() if values.get("inetd") else (PortConfig(values["port"], values.get("tlsContext")),),
        entities=[entity],
        limits=limits,
        stateDirectory=values.get("stateDirectory"),
        index=False,
    )


def run(reactor, values):
    """
    Listen (or serve the connection on standard input with C{--inetd})
    until stopped, running the daemon's service.

    @param values: the parsed command line, checked by L{validate}.
    @return: a L{Deferred} firing with the exit status.
    """
    inetd = None
    if values.get("inetd"):
        # Before anything is logged: inetd hands the connection over as
        # standard input, output and error alike.
        inetd = takeInetdConnection()
    done = serverPreamble(values, log, forks=True)
    if done is not None:
        return defer.succeed(done)
    if values.get("inetd") and values.get("port") is not None:
        log.warn("Parameter port not required in inetd mode")

    def listening():
        if inetd is None:
            log.info("Listening on port {port} as {aet}", port=values["port"], aet=values["aetitle"])

    workers = WorkerPool(forkedWorkers(), ["storescp"] + values["arguments"], reactor=reactor) if values.get("fork") else None
    daemon = DicomdService(daemonConfig(values), workers=workers, reactor=reactor)
    return serve(reactor, daemon, log, failure=EXIT_FAILURE, inetd=inetd, tls=values.get("tlsContext"), started=listening)

