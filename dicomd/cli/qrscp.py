"""
C{dicomd qrscp}: the image archive (storage and query/retrieve, PS3.4
Annexes B and C) with DCMTK dcmqrscp 3.6.7's command line and its
C{dcmqrscp.cfg}, running the same service objects as C{twistd dicomd}.

Every AE title of the configuration's AETable is served on the one
listening port, each with its storage area, access (C{R}, C{RW}, C{W}),
quota and peers; the association rules of dcmqrscp are
L{dicomd.qrentity.ArchiveEntity}'s.  Differences from dcmqrscp,
documented in docs/queryretrieve.md:

  - associations run concurrently on one reactor: C{--fork} and
    C{--single-process} change nothing;
  - one SQLite index serves every storage area, instead of an
    C{index.dat} in each: by default C{.dicomd-index.sqlite} in the first
    AE's storage area (as C{twistd dicomd} keeps it in its first AE's
    directory), or the file C{--database} names; with an empty AETable
    there is none.  As with dcmqrscp, AEs over one directory share its
    contents; AEs that store into it share one quota, the strictest of
    theirs;
  - a storage area that does not exist stops the start with an error
    (dcmqrscp starts, then aborts every association to that AE), and so
    does an index that cannot be written, with exit status 10 as for
    dcmqrscp's own fatal errors;
  - peers' hosts are matched by resolving the configuration's host names
    once at start (L{dicomd.peers.PeerHosts}); C{-dhl} compares
    addresses literally;
  - a write-only AE (C{W}) refuses query/retrieve contexts;
  - the C{--allow-shutdown} server stops listening at once and exits when
    its last association has ended (aborting those still running after
    the grace period, as any clean stop does);
  - TLS (C{+tls}...) is dicomd's: dcmqrscp has none.  It applies to the
    listening port and to the associations of C-MOVE sub-operations;
  - received objects are kept bit for bit (C{+B}) unless an output option
    asks for re-encoding; C{-F} is refused, since retrieval needs the File
    Meta Information.

Options dicomd cannot honour are declared through
L{dicomd.cli.common.UnsupportedOptions} and refused with a message naming
them.
"""

import grp
import os
import pwd
from dataclasses import replace
from typing import Optional

from pydicom.charset import python_encoding
from twisted.internet import defer, threads
from twisted.logger import Logger

from dicomd.archive.databases import DatabaseUnusable, checkURL, isURL
from dicomd.archive.charsets import ResponseCharacterSet, characterSetTerms
from dicomd.archive.dcmqrcfg import ConfigError, readConfig
from dicomd.archive.matching import PATIENT_ROOT, PATIENT_STUDY_ONLY, STUDY_ROOT
from dicomd.archive.service import INDEX_FILE
from dicomd.peers import PeerHosts, configuredPeers, hostNames, moveRestriction, peerRule, proposing
from dicomd.asconfig import AsConfigError, acceptorPolicy, readProfiles
from dicomd.cli.common import (
    CommandFileCommandLine,
    UnsupportedOptions,
    frontDoorGeneralOptions,
    preferredSyntaxOptions,
    serverPreamble,
    tlsOptionGroup,
    tlsSettings,
    tlsUsageError,
)
from dicomd.cli.options import CannotStart, Option, Parameter, UsageError, integer, string
from dicomd.cli.run import Identity, serve
from dicomd.cli.translate import preferredSyntaxes, recodeOptions, recoder, storageOptions
from dicomd.config import DaemonConfig, EntityConfig, Limits, PeerConfig, PortConfig
from dicomd.daemon import DicomdService
from dicomd.startup import outputDirectoryProblem
from dicomd.storage import recode
from dicomd.storage.receiver import SORT_STUDY_UID
from dicomd.ul.negotiation import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)

log = Logger(namespace="qrscp")

#: dcmqrscp's default configuration file, as Debian's dcmtk installs it.
DEFAULT_CONFIG = "/etc/dcmtk/dcmqrscp.cfg"

#: The exit status when the server cannot start (dcmqrscp's for fatal
#: errors): the configuration file cannot be used, its UserName does not
#: exist, the port or the index database cannot be opened.
EXIT_FATAL = 10

UNSUPPORTED = UnsupportedOptions()

_SECONDS = (("s]econds", integer(1)),)

#: Values of the C{moveRestriction} option block: the keyword arguments of
#: L{moveRestriction}.
_MOVE_RESTRICTIONS = {
    None: {},
    "aetitle": {"sameAETitle": True},
    "host": {"sameHost": True},
    "vendor": {"sameVendor": True},
}


def defaultDatabase(config) -> Optional[str]:
    """
    Where C{dicomd qrscp} keeps the index of a configuration without
    C{--database}: in the storage area of its first AE (as C{twistd
    dicomd} keeps it in its first AE's directory), or nowhere (C{None})
    when its AETable is empty.

    @param config: the L{dicomd.archive.dcmqrcfg.QueryRetrieveConfig}.
    """
    for entry in config.aeTable.values():
        return os.path.join(os.path.abspath(entry.storageArea), INDEX_FILE)
    return None






COMMAND_LINE = CommandFileCommandLine(
    "dicomd qrscp",
    "DICOM image archive (central test node)",
    [Parameter("port", "tcp/ip port number to listen on (default: in config file)", integer(1, 65535), required=False)],
    [
        frontDoorGeneralOptions(
            UNSUPPORTED,
            [Option(("-c", "--config"), "configFile", "use specific configuration file (default: %s)" % (DEFAULT_CONFIG,), (("f]ilename", string),))],
        ),
        (
            "multi-process options",
            [
                Option(("-s", "--single-process"), "fork", "single process mode (associations are concurrent anyway)", const=False),
                Option(("--fork",), "fork", "fork child process for each association (associations are concurrent anyway)"),
            ],
        ),
        (
            "database options",
            [
                Option(("--require-find",), "requireFind", "reject all MOVE presentation contexts for which no corresponding FIND context is proposed"),
                Option(("--no-parallel-store",), "noParallelStore", "reject multiple simultaneous STORE presentation contexts for one application entity title"),
                Option(("--disable-get",), "disableGet", "disable C-GET support"),
                Option(("--allow-shutdown",), "allowShutdown", "allow external shutdown via a private SOP class"),
                Option(("-XF", "--check-find"), "checkFind", "check C-FIND identifier validity"),
                Option(("--no-check-find",), "checkFind", "do not check C-FIND identifier validity (default)", const=False),
                Option(("-XM", "--check-move"), "checkMove", "check C-MOVE identifier validity"),
                Option(("--no-check-move",), "checkMove", "do not check C-MOVE identifier validity (default)", const=False),
                Option(("--move-unrestricted",), "moveRestriction", "do not restrict move destination (default)", const=None),
                Option(("-ZA", "--move-aetitle"), "moveRestriction", "restrict move destination to requesting AE title", const="aetitle"),
                Option(("-ZH", "--move-host"), "moveRestriction", "restrict move destination to requesting host", const="host"),
                Option(("-ZV", "--move-vendor"), "moveRestriction", "restrict move destination to requesting vendor", const="vendor"),
                Option(("-QP", "--no-patient-root"), "noPatientRoot", "do not support Patient Root Q/R models"),
                Option(("-QS", "--no-study-root"), "noStudyRoot", "do not support Study Root Q/R models"),
                Option(("-QO", "--no-patient-study"), "noPatientStudy", "do not support Patient/Study Only Q/R models"),
                Option(
                    ("--database",),
                    "database",
                    "keep the index of every storage area in SQLite database f, or the PostgreSQL database of a postgresql:// URL (dicomd; default: %s in the first AE's storage area)" % (INDEX_FILE,),
                    (("f]ilename", string),),
                ),
            ],
        ),
        (
            "network options",
            [
                Option(
                    ("-xf", "--assoc-config-file"),
                    "assocConfig",
                    "use profile i from f for incoming associations, profile o for outgoing associations",
                    (("f]ilename", string), ("i]n-profile", string), ("o]ut-profile", string)),
                ),
            ]
            + preferredSyntaxOptions("+", "prefer", "preferred", "prefer")
            + [Option(("+xi", "--implicit"), "preferred", "accept implicit VR little endian TS only", const="+xi")]
            + preferredSyntaxOptions("-", "propose", "proposed", "propose")
            + [
                Option(("-xi", "--propose-implicit"), "proposed", "propose implicit VR little endian TS only", const="+xi"),
                Option(("-ac", "--access-full"), "accessControl", "accept connections from any host (default)", const=False),
                UNSUPPORTED.option(
                    ("+ac", "--access-control"),
                    "enforce host access control rules",
                    "TCP wrapper (hosts.allow/hosts.deny) access control is not available; "
                    "use the peers of the AETable, or a firewall",
                ),
                Option(("-to", "--timeout"), "timeout", "timeout for connection requests (default: unlimited)", _SECONDS),
                Option(("-ta", "--acse-timeout"), "acseTimeout", "timeout for ACSE messages (default: 30)", _SECONDS),
                Option(("-td", "--dimse-timeout"), "dimseTimeout", "timeout for DIMSE messages (default: unlimited, 60 on C-MOVE sub-associations; idle associations end after 60)", _SECONDS),
                Option(("-pdu", "--max-pdu"), "maxPDU", "set max receive pdu to n bytes (default: use value from configuration file)", (("n]umber of bytes", integer(4096, 131072)),)),
                Option(("-dhl", "--disable-host-lookup"), "disableHostLookup", "disable hostname lookup: compare peer addresses with the config's host names as written"),
                Option(("--refuse",), "refuse", "refuse association"),
                Option(("--reject",), "reject", "reject association if no implementation class UID"),
                Option(("--ignore",), "ignore", "ignore store data, receive but do not store"),
                Option(("-up", "--uid-padding"), "uidPadding", "silently correct space-padded UIDs (always done)"),
            ],
        ),
        tlsOptionGroup(UNSUPPORTED, server=True),
        (
            "processing options (specific character set)",
            [
                Option(("+Cr", "--use-request-charset"), "charsetOverride", "try to convert all element values that are affected by Specific Character Set (0008,0005) to the one specified in the request data set, fall back to the one specified via --convert-to-xxx if that is not possible (default, unless overridden by config file)", const=False),
                Option(("-Cr", "--override-charset"), "charsetOverride", "convert affected element values to the character set specified via --convert-to-xxx, ignoring the one specified in the request", const=True),
                Option(("+A7", "--convert-to-ascii"), "charsetTarget", "convert affected element values to 7-bit ASCII (default, unless overridden by config file)", const=""),
                Option(("+U8", "--convert-to-utf8"), "charsetTarget", "convert affected element values to UTF-8", const="ISO_IR 192"),
                Option(("+L1", "--convert-to-latin1"), "charsetTarget", "convert affected element values to ISO 8859-1", const="ISO_IR 100"),
                Option(("+C", "--convert-to-charset"), "charsetTarget", "convert affected element values to the character set specified by the DICOM defined term c", (("c]harset", string),)),
                Option(("-Ct", "--transliterate"), "transliterate", "try to approximate characters that cannot be represented through similar looking characters"),
                Option(("-Cd", "--discard-illegal"), "discardIllegal", "discard characters that cannot be represented in destination character set"),
            ],
        ),
        (
            "output options",
            [
                Option(("-B", "--normal"), "bitPreserving", "allow implicit format conversions", const=False),
                Option(("+B", "--bit-preserving"), "bitPreserving", "write data exactly as read (dicomd's default)"),
                Option(("+F", "--write-file"), "writeFile", "write file format (default)"),
                UNSUPPORTED.option(
                    ("-F", "--write-dataset"),
                    "write data set without file meta information",
                    "the archive keeps Part 10 files: C-MOVE and C-GET read their File Meta Information",
                ),
                Option(("+t=", "--write-xfer-same"), "writeTransferSyntax", "write with same TS as input (default)", const=None),
                Option(("+te", "--write-xfer-little"), "writeTransferSyntax", "write with explicit VR little endian TS", const=EXPLICIT_VR_LITTLE_ENDIAN),
                Option(("+tb", "--write-xfer-big"), "writeTransferSyntax", "write with explicit VR big endian TS", const=EXPLICIT_VR_BIG_ENDIAN),
                Option(("+ti", "--write-xfer-implicit"), "writeTransferSyntax", "write with implicit VR little endian TS", const=IMPLICIT_VR_LITTLE_ENDIAN),
                Option(("+td", "--write-xfer-deflated"), "writeTransferSyntax", "write with deflated explicit VR little endian TS", const=DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN),
                Option(("+u", "--enable-new-vr"), "newVRs", "enable support for new VRs (UN/UT) (default)", const=True),
                Option(("-u", "--disable-new-vr"), "newVRs", "disable support for new VRs, convert to OB", const=False),
                Option(("+g=", "--group-length-recalc"), "groupLength", "recalculate group lengths if present (default)", const=recode.GROUP_LENGTH_RECALCULATE),
                Option(("+g", "--group-length-create"), "groupLength", "always write with group length elements", const=recode.GROUP_LENGTH_CREATE),
                Option(("-g", "--group-length-remove"), "groupLength", "always write without group length elements", const=recode.GROUP_LENGTH_REMOVE),
                Option(("+e", "--length-explicit"), "undefinedLengths", "write with explicit lengths (default)", const=False),
                Option(("-e", "--length-undefined"), "undefinedLengths", "write with undefined lengths", const=True),
                Option(("-p", "--padding-off"), "padding", "no padding (default)", const=None),
                Option(("+p", "--padding-create"), "padding", "align file on multiple of f bytes and items on multiple of i bytes", (("f]ile-pad", integer(0)), ("i]tem-pad", integer(0)))),
                Option(("+cl", "--compression-level"), "compressionLevel", "0=uncompressed, 1=fastest, 9=best compression (default: 6)", (("l]evel", integer(0, 9)),)),
            ],
        ),
    ],
    defaults={"configFile": DEFAULT_CONFIG, "acseTimeout": 30, "compressionLevel": 6},
)


def validate(values) -> None:
    """
    Refuse what dcmqrscp refuses and every option dicomd does not honour;
    read the configuration file, the association profiles, the TLS files,
    and check the storage areas, so that every mistake is reported before
    anything listens.  What the run needs is added to C{values}.
    """
    UNSUPPORTED.check(values)
    if values.get("listCiphers"):
        return
    if values.get("noPatientRoot") and values.get("noStudyRoot") and values.get("noPatientStudy"):
        raise UsageError("cannot disable all Q/R models")
    try:
        config = readConfig(values["configFile"])
    except ConfigError as e:
        raise CannotStart("bad config file: %s" % (e,), EXIT_FATAL)
    if not 4096 <= config.maxPDUSize <= 131072:
        raise CannotStart("bad config file: %s: invalid MaxPDUSize %d (4096..131072)" % (values["configFile"], config.maxPDUSize), EXIT_FATAL)
    values["config"] = config
    values["listenPort"] = values.get("port") or config.networkTCPPort or 104
    values["receiveLimit"] = values.get("maxPDU") or config.maxPDUSize
    values["database"] = values.get("database") or defaultDatabase(config)
    if values["database"] is not None and isURL(values["database"]):
        try:
            checkURL(values["database"])
        except DatabaseUnusable as e:
            raise UsageError("--database: %s" % (e,))
    _checkStorageAreas(config, values)
    if values.get("assocConfig"):
        _readProfiles(values)
    values["characterSets"] = _characterSets(config.characterSetOptions, values)
    recoder(recodeOptions(values), bitPreserving=bool(values.get("bitPreserving")))
    values["identity"] = _identity(config, values["configFile"])
    if values.get("tls"):
        try:
            settings = tlsSettings(values)
            values["tlsContext"] = settings.certificateOptions(isServer=True)
        except ValueError as e:
            raise tlsUsageError(e)
        values["tlsSettings"] = settings


def _checkStorageAreas(config, values) -> None:
    """
    Every storage area must be a directory, and a writable one where the
    AE stores (dcmqrset.txt: create them before starting dcmqrscp).
    """
    for entry in config.aeTable.values():
        area = entry.storageArea
        problem = outputDirectoryProblem(area, write=entry.writable and not values.get("ignore"))
        if problem == "does not exist":
            problem += " (create it first)"
        elif problem is not None and problem.startswith("is not writeable"):
            problem = "(access %s) %s" % (entry.access, problem)
        if problem is not None:
            raise CannotStart("%s: storage area %s of %s %s" % (values["configFile"], area, entry.aeTitle, problem), EXIT_FATAL)


def _readProfiles(values) -> None:
    """
    C{-xf FILE IN OUT}: the storage contexts accepted come from profile
    IN, the contexts proposed for C-MOVE sub-operations from profile OUT.
    """
    for conflicting in ("preferred", "proposed"):
        if values.get(conflicting):
            raise UsageError("--assoc-config-file cannot be combined with transfer syntax options")
    path, incoming, outgoing = values["assocConfig"]
    try:
        acceptorPolicy(readProfiles(path).profile(incoming))
        values["outgoingProfile"] = readProfiles(path, requestor=True).profile(outgoing)
    except (AsConfigError, OSError) as e:
        raise UsageError("--assoc-config-file %s: %s" % (path, e))


def _knownTerms(terms, where: str):
    unknown = [term for term in terms if term not in python_encoding]
    if unknown:
        raise UsageError("%s: %r is not a DICOM defined term for a character set" % (where, unknown[0]))
    return terms


def _characterSets(configured, values):
    """
    The L{ResponseCharacterSet} of the configuration's
    C{SpecificCharacterSet} line (dcmqrscp's default when there is none:
    the request's character set, falling back to ASCII) changed by the
    command line's character set options; C{None} when that changes
    nothing.
    """
    if configured is None:
        conversion = ResponseCharacterSet()
    else:
        conversion = ResponseCharacterSet(
            characterSet=characterSetTerms(_knownTerms(configured.characterSet.split("\\"), values["configFile"] + ": SpecificCharacterSet")),
            override=configured.override,
            fallback=configured.fallback,
            transliterate=configured.transliterate,
            discard=configured.discard,
        )
    if values.get("charsetOverride") is not None:
        conversion = replace(conversion, override=values["charsetOverride"])
    if values.get("charsetTarget") is not None:
        terms = _knownTerms(values["charsetTarget"].split("\\"), "+C (--convert-to-charset)")
        conversion = replace(conversion, characterSet=characterSetTerms(terms))
    if values.get("transliterate"):
        conversion = replace(conversion, transliterate=True)
    if values.get("discardIllegal"):
        conversion = replace(conversion, discard=True)
    return None if conversion == ResponseCharacterSet() else conversion


# -- running ------------------------------------------------------------------------


def _models(values):
    excluded = {
        PATIENT_ROOT: values.get("noPatientRoot"),
        STUDY_ROOT: values.get("noStudyRoot"),
        PATIENT_STUDY_ONLY: values.get("noPatientStudy"),
    }
    return tuple(model for model, off in excluded.items() if not off)


def _moveProposal(values):
    """
    The presentation contexts of C-MOVE sub-associations: profile OUT of
    C{-xf}, or the stored syntaxes and those of C{-x=}, C{-xe}...
    """
    profile = values.get("outgoingProfile")
    if profile is None:
        return proposing(preferredSyntaxes(values.get("proposed")))

    def propose(stored):
        return [(uid, list(syntaxes)) for uid, syntaxes in profile.presentationContexts]

    return propose


def daemonConfig(values, hosts: PeerHosts) -> DaemonConfig:
    """
    dcmqrscp's configuration file and options in the daemon's terms: an
    AE per line of the AETable, storing into and answering from its
    storage area with its access, quota and peers (AEs over one directory
    share it, under the strictest quota); the peers as C-MOVE
    destinations; one index for every area, none when the AETable is
    empty.

    @param values: the command line, checked by L{validate}.
    @param hosts: the L{PeerHosts} of the configuration's host names.
    """
    config = values["config"]
    assocConfig = values.get("assocConfig")
    # One StorageOptions (and one recoder) for every area: AEs over one
    # directory must store into it with equal settings.
    storage = replace(storageOptions(values, "."), sortMode=SORT_STUDY_UID)
    template = EntityConfig(
        transferSyntaxes=preferredSyntaxes(values.get("preferred")),
        profile=(assocConfig[0], assocConfig[1]) if assocConfig else None,
        get=not values.get("disableGet"),
        models=_models(values),
        requireImplementationClassUID=bool(values.get("reject")),
        refuseAll=bool(values.get("refuse")),
        moveAllowed=moveRestriction(config, hosts, **_MOVE_RESTRICTIONS[values.get("moveRestriction")]),
        checkFind=bool(values.get("checkFind")),
        checkMove=bool(values.get("checkMove")),
        requireFind=bool(values.get("requireFind")),
        parallelStore=not values.get("noParallelStore"),
        characterSets=values.get("characterSets"),
        allowShutdown=bool(values.get("allowShutdown")),
    )
    entities = [
        replace(
            template,
            title=title,
            access=entry.access,
            quota=entry.quota,
            storage=replace(storage, outputDirectory=entry.storageArea),
            peerRule=peerRule(config, hosts, title),
        )
        for title, entry in config.aeTable.items()
    ]
    peers = [PeerConfig(peer.aeTitle, peer.host, peer.port, peer.tls) for peer in configuredPeers(config, tls=values.get("tlsSettings"))]
    limits = Limits(
        maxAssociations=config.maxAssociations,
        maxAssociationsPerHost=None,
        maxPDU=values["receiveLimit"],
        acseTimeout=values["acseTimeout"],
        dimseTimeout=values.get("dimseTimeout"),
        idleTimeout=values.get("dimseTimeout") or 60,
        connectTimeout=values.get("timeout"),
    )
    return DaemonConfig(
        listen=(PortConfig(values["listenPort"], values.get("tlsContext")),),
        entities=entities,
        peers=peers,
        limits=limits,
        database=values["database"],
        index=values["database"] is not None,
        answerAnyCalledAETitle=False,
        moveProposal=_moveProposal(values),
    )


def _identity(config, path: str) -> Optional[Identity]:
    """
    The user and group to become once the port is open, as dcmqrscp
    does with the configuration's C{UserName} and C{GroupName}: only when
    running as root (another user cannot become someone else, and ignores
    them); C{None} when it stays who it is.

    @raise CannotStart: the user or group does not exist.
    """
    if os.geteuid() != 0 or not (config.userName or config.groupName):
        return None
    try:
        uid = pwd.getpwnam(config.userName).pw_uid if config.userName else None
    except KeyError:
        raise CannotStart("bad config file: bad user name %s" % (config.userName,), EXIT_FATAL)
    try:
        gid = grp.getgrnam(config.groupName).gr_gid if config.groupName else None
    except KeyError:
        raise CannotStart("bad config file: bad group name %s" % (config.groupName,), EXIT_FATAL)
    who = "user %s, group %s" % (config.userName or "root", config.groupName or "root")
    return Identity(uid, gid, who, "UserName and GroupName of %s" % (os.path.abspath(path),))


def run(reactor, values):
    """
    Listen until stopped, or until an association asks the server to
    stop with C{--allow-shutdown}, running the daemon's service.

    @param values: the parsed command line, checked by L{validate}.
    @return: a L{Deferred} firing with the exit status.
    """
    done = serverPreamble(values, log)
    if done is not None:
        return defer.succeed(done)
    return _serve(reactor, values)


@defer.inlineCallbacks
def _serve(reactor, values):
    config = values["config"]
    if values.get("disableHostLookup"):
        hosts = PeerHosts()
    else:
        hosts, unresolved = yield threads.deferToThreadPool(reactor, reactor.getThreadPool(), PeerHosts.resolve, hostNames(config))
        for name in unresolved:
            log.warn("Host name {name} of the configuration file does not resolve: only an address written that way matches it", name=name)
    configFile = os.path.abspath(values["configFile"])
    given = " (dcmqrscp's default configuration file)" if values["configFile"] == DEFAULT_CONFIG else ""
    log.info("Configuration file: {path}{given}", path=configFile, given=given)
    if not config.aeTable:
        log.warn(
            "The AETable of {path}{given} is empty: every association will be rejected "
            "(called AE title not recognized); list the AEs there, or name another file with -c",
            path=configFile,
            given=given,
        )
    identity = values["identity"]
    if identity is None and (config.userName or config.groupName):
        log.info("Not running as root: UserName and GroupName of the configuration file are ignored")

    def listening():
        log.info("Listening on port {port} as {titles}", port=values["listenPort"], titles=_describe(config) or "no AE title (the AETable is empty)")

    daemon = DicomdService(daemonConfig(values, hosts), reactor=reactor)
    status = yield serve(reactor, daemon, log, failure=EXIT_FATAL, identity=identity, started=listening)
    return status


def _describe(config) -> str:
    return ", ".join("%s (%s, %s)" % (title, entry.access, entry.storageArea) for title, entry in config.aeTable.items())
