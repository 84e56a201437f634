"""
The C{twistd dicomd} plugin: command-line options and the service tree.

C{twistd -n dicomd} with no options listens on C{tcp:11112} as AE C{DICOMD},
answers C-ECHO, stores what it receives under C{dicomd-data/} (one
directory per study, indexed in an SQLite database there) and answers
C-FIND and C-GET on it in the Patient Root and Study Root models, and
C-MOVE to the peers given with C{--peer}; C{--forward} passes on
everything it receives.

C{--config FILE} reads a configuration file (L{dicomd.config}) describing
any number of AEs, peers and limits; the command-line options given
override it for its first AE (the default AE) and add to it, also when
the file is reloaded with SIGHUP.  Listening addresses are Twisted endpoint
strings, repeatable with C{--listen}.  Storage options have storescp's
long names and meanings.
"""

import os
import signal
import sys
from dataclasses import replace

from twisted.application import service
from twisted.logger import Logger
from twisted.python import usage

from dicomd import observers
from dicomd.actions import UnsafeCommand, shellCommand
from dicomd.archive.databases import DatabaseUnusable, checkURL, isURL
from dicomd.archive.routing import Route
from dicomd.cli.common import TRANSFER_SYNTAX_OPTIONS
from dicomd.cli.logs import LEVELS
from dicomd.cli.options import UsageError, versions
from dicomd.cli.translate import idleTimeout, preferredSyntaxes, recoder
from dicomd.config import DEFAULT_DIRECTORY, ConfigError, DaemonConfig, PeerConfig, checkEndpoint, nodeNameProblem, readConfig
from dicomd.daemon import DicomdService
from dicomd.startup import StartupError
from dicomd.storage import naming, recode
from dicomd.storage.receiver import SORT_PATIENT_NAME, SORT_STUDY_UID, SORT_TIMESTAMP
from dicomd.workers import WorkerPool

#: storescp's long options for the preferred network transfer syntaxes, and
#: the key each stands for in L{ACCEPTOR_PREFERENCES}.
TRANSFER_SYNTAX_FLAGS = [
    ("prefer-" + name, "+x" + suffix, "Prefer %s." % (meaning,)) for suffix, name, meaning in TRANSFER_SYNTAX_OPTIONS
] + [
    ("implicit", "+xi", "Accept implicit VR little endian only."),
    ("accept-all", "+xa", "Accept all supported transfer syntaxes."),
]

#: Storage flags: (name, help).
STORAGE_FLAGS = [
    ("promiscuous", "Accept unknown SOP classes."),
    ("ignore", "Receive and answer, but store nothing."),
    ("sort-on-patientname", "Sort studies into directories named by Patient's Name and a timestamp."),
    ("flat", "Do not sort: store every file in the output directory."),
    ("unique-filenames", "Generate unique file names (+uf)."),
    ("timenames", "Generate file names from the creation time (-tn)."),
    ("rename-on-eostudy", "At the end of a study, rename its files to a counter (-rns)."),
    ("exec-sync", "Wait for the reception command before answering (-xs)."),
    ("fsync", "fsync each file and its directory before answering."),
    ("disable-get", "Do not offer C-GET."),
]

#: storescp's re-encoding output options (see docs/storage.md): flag,
#: L{recode.RecodeOptions} field, value, help.  Without any of them files
#: are stored bit for bit as received.
RECODE_FLAGS = [
    ("write-dataset", "writeDataSetOnly", True, "Write the data set without file meta information (-F)."),
    ("write-xfer-little", "transferSyntax", "1.2.840.10008.1.2.1", "Write with explicit VR little endian (+te)."),
    ("write-xfer-big", "transferSyntax", "1.2.840.10008.1.2.2", "Write with explicit VR big endian (+tb)."),
    ("write-xfer-implicit", "transferSyntax", "1.2.840.10008.1.2", "Write with implicit VR little endian (+ti)."),
    ("write-xfer-deflated", "transferSyntax", "1.2.840.10008.1.2.1.99", "Write with deflated explicit VR little endian (+td)."),
    ("group-length-create", "groupLength", recode.GROUP_LENGTH_CREATE, "Always write group length elements (+g)."),
    ("group-length-remove", "groupLength", recode.GROUP_LENGTH_REMOVE, "Always write without group length elements (-g)."),
    ("length-undefined", "undefinedLengths", True, "Write sequences and items with undefined length (-e)."),
    ("disable-new-vr", "newVRs", False, "Write UN, UT and the other post-1993 VRs as OB (-u)."),
    ("convert-un", "convertUN", True, "Give elements received as UN their VR from the dictionary (+uc)."),
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


class ConfigFileError(usage.UsageError):
    """
    The configuration file of C{--config} cannot be used; the message
    names the file, the line and the key.
    """


class DaemonOptions(usage.Options):
    """
    Options of C{twistd dicomd}, parsed as L{usage.Options} does: a
    mistake raises L{usage.UsageError}.  twistd uses L{Options}.
    """

    synopsis = "[options]"
    longdesc = (
        "A DICOM network daemon.  Without options it listens on tcp:11112 as AE title DICOMD, "
        "answers C-ECHO and stores received objects under dicomd-data/, one directory per study."
    )

    optParameters = [
        ["config", "c", None, "Read this configuration file (TOML; 'dicomd example-config dicomd.toml' prints a commented one)."],
        ["status", None, None, "Serve the status page (JSON at /, Prometheus at /metrics) on this endpoint."],
        ["aetitle", "a", None, "Our AE title (default: DICOMD)."],
        ["max-pdu", None, None, "Maximum P-DATA-TF length we receive (4096..131072, or 0 for no limit; default 131072, the most DCMTK sends).", int],
        ["max-async-ops", None, None, "Requests a peer proposing an asynchronous operations window may send before their responses (1..65535; default 16).", int],
        ["max-associations", None, None, "Simultaneous associations before new ones are rejected (default: 128).", _positive("max-associations")],
        ["max-associations-per-host", None, None, "Simultaneous associations from one host (default: 64).", _positive("max-associations-per-host")],
        ["max-pending-connections", None, None, "Connections waiting for their A-ASSOCIATE-RQ before the oldest is closed (default: 256).", _positive("max-pending-connections")],
        ["shutdown-grace", None, None, "Seconds running associations get to finish when stopping (default: 30).", float],
        ["acse-timeout", None, None, "Seconds to wait for association messages (ARTIM; default: 30).", _positive("acse-timeout", float)],
        ["dimse-timeout", None, None, "Seconds to wait for a DIMSE response, or for the next fragment of a message being received (default: unlimited; 60 for responses on C-MOVE sub-associations).", _positive("dimse-timeout", float)],
        ["idle-timeout", None, None, "Seconds of silence before an idle association is aborted (0: never; default: 60).", float],
        ["output-directory", "o", None, "Store received objects under this directory (default: %s)." % (DEFAULT_DIRECTORY,)],
        ["database", None, None, "Keep the index in this SQLite file or PostgreSQL database (postgresql://...; default: .dicomd-index.sqlite in the first AE's storage directory)."],
        ["node", None, None, "Name this daemon among those sharing a PostgreSQL index (default: the host's name)."],
        ["state-directory", None, None, "Keep the end-of-study journals here (default: /var/lib/dicomd for root, else ~/.local/state/dicomd)."],
        ["sort-on-study-uid", None, None, "Sort studies into PREFIX_<StudyInstanceUID> directories (default: no prefix)."],
        ["sort-conc-studies", None, None, "Sort studies into PREFIX_<timestamp> directories."],
        ["filename-extension", None, None, "Append this to every file name."],
        ["exec-on-reception", None, None, "Run this command for each received object (#p #f #a #c #r)."],
        ["exec-on-eostudy", None, None, "Run this command at the end of each study (#p #a #c #r)."],
        ["eostudy-timeout", None, None, "Seconds without an object after which a study ends.", _positive("eostudy-timeout", float)],
        ["padding-create", None, None, "FILE,ITEM: align the file on FILE bytes and items on ITEM bytes (+p)."],
        ["compression-level", None, None, "zlib level 0..9 with --write-xfer-deflated (+cl; default: 6).", int],
        ["log-level", None, None, "fatal, error, warn, info (default) or debug, with --logger=dicomd.observers.text or .json."],
        ["workers", None, 1, "Serve associations in this many worker processes (1: in the daemon's own process).", _positive("workers")],
    ]

    optFlags = (
        [
            ["quiet", "q", "Log errors only (DCMTK's -q), with --logger=dicomd.observers.*."],
            ["verbose", "v", "Log processing details (DCMTK's -v; the default)."],
            ["debug", "d", "Log debug information (DCMTK's -d)."],
        ]
        + [[name, None, help] for name, _, help in TRANSFER_SYNTAX_FLAGS]
        + [[name, None, help] for name, help in STORAGE_FLAGS]
        + [[name, None, help] for name, _, _, help in RECODE_FLAGS]
    )

    def __init__(self):
        usage.Options.__init__(self)
        self["listen"] = []
        self["peers"] = []
        self["forward"] = []

    def opt_version(self):
        """
        Display the versions of dicomd, pydicom, Twisted and Python, and
        exit.
        """
        sys.stdout.write(versions("twistd dicomd"))
        sys.exit(0)

    def opt_listen(self, endpoint):
        """
        Listen on this Twisted server endpoint string (repeatable; default
        tcp:11112).
        """
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_peer(self, description):
        """
        A C-MOVE destination, AETITLE:HOST:PORT (repeatable).
        """
        try:
            aeTitle, host, port = description.rsplit(":", 2) if description.count(":") >= 2 else ("", "", "")
            self["peers"].append(PeerConfig(aeTitle, host, int(port)))
        except ValueError:
            raise usage.UsageError("--peer takes AETITLE:HOST:PORT, not %r" % (description,))

    def opt_forward(self, description):
        """
        Forward everything received to AETITLE@HOST:PORT, queued until
        delivered (repeatable).
        """
        title, _, address = description.partition("@")
        host, _, port = address.rpartition(":")
        if not (title and 0 < len(title) <= 16 and title.isascii() and "\\" not in title and host and port.isdigit() and 0 < int(port) < 65536):
            raise usage.UsageError("--forward takes AETITLE@HOST:PORT, not %r" % (description,))
        self["forward"].append(PeerConfig(title, host.strip("[]"), int(port)))

    def given(self, name: str) -> bool:
        """
        Whether an option was given on the command line.  Parameters have
        no default here (their help says what applies without them), so
        that one given with the embedded default's value still overrides
        the configuration file.
        """
        if name in {flag[0] for flag in self.optFlags}:
            return bool(self[name])
        return self[name] is not None and self[name] != []

    def postOptions(self):
        self._setLogLevel()
        title = self["aetitle"]
        if title is not None and (not 0 < len(title) <= 16 or not title.isascii() or "\\" in title):
            raise usage.UsageError("--aetitle must be 1 to 16 ASCII characters without backslash, not %r" % (title,))
        maxPDU = self["max-pdu"]
        if maxPDU is not None and maxPDU != 0 and not 4096 <= maxPDU <= 131072:
            raise usage.UsageError("--max-pdu must be 0 or between 4096 and 131072, not %d" % (maxPDU,))
        maxAsyncOps = self["max-async-ops"]
        if maxAsyncOps is not None and not 1 <= maxAsyncOps <= 0xFFFF:
            raise usage.UsageError("--max-async-ops must be between 1 and 65535, not %d" % (maxAsyncOps,))
        if self.given("idle-timeout") and self["idle-timeout"] < 0:
            raise usage.UsageError("--idle-timeout must not be negative")
        if self.given("shutdown-grace") and self["shutdown-grace"] < 0:
            raise usage.UsageError("--shutdown-grace must not be negative")
        for option, descriptions in [("listen", self["listen"]), ("status", [self["status"]] if self["status"] else [])]:
            for description in descriptions:
                try:
                    checkEndpoint(description)
                except ValueError as e:
                    raise usage.UsageError("--%s: %s" % (option, e))
        if self["database"] is not None:
            self._checkDatabase(self["database"])
        if self["node"] is not None and nodeNameProblem(self["node"]):
            raise usage.UsageError("--node: %s" % (nodeNameProblem(self["node"]),))
        chosen = [name for name, _, _ in TRANSFER_SYNTAX_FLAGS if self[name]]
        if len(chosen) > 1:
            raise usage.UsageError("choose one transfer syntax preference, not --%s" % (" and --".join(chosen),))
        key = dict((name, short) for name, short, _ in TRANSFER_SYNTAX_FLAGS)[chosen[0]] if chosen else None
        self["transfer-syntaxes"] = preferredSyntaxes(key)
        self["transfer-syntax-given"] = bool(chosen)
        self._checkStorage()
        self["recode"] = self._recoder()
        try:
            self["base"] = readConfig(self["config"]) if self["config"] else DaemonConfig()
        except ConfigError as e:
            raise ConfigFileError(str(e))

    @staticmethod
    def _checkDatabase(database: str) -> None:
        if not database.strip():
            raise usage.UsageError("--database: expected a file name or a postgresql:// URL")
        if isURL(database):
            try:
                checkURL(database)
            except DatabaseUnusable as e:
                raise usage.UsageError("--database: %s" % (e,))

    def _setLogLevel(self) -> None:
        if self["log-level"] is not None and self["log-level"] not in LEVELS:
            raise usage.UsageError("--log-level takes one of %s, not %r" % (", ".join(LEVELS), self["log-level"]))
        if self["log-level"]:
            observers.level = LEVELS[self["log-level"]]
        elif self["debug"]:
            observers.level = LEVELS["debug"]
        elif self["quiet"]:
            observers.level = LEVELS["error"]

    def _sortMode(self):
        """
        The sorting the command line asks for, as C{(mode, prefix)}, or
        C{None} when it says nothing about sorting.
        """
        sorts = [
            (flag, mode, prefix)
            for flag, mode, prefix in [
                ("sort-on-study-uid", SORT_STUDY_UID, self["sort-on-study-uid"]),
                ("sort-conc-studies", SORT_TIMESTAMP, self["sort-conc-studies"]),
                ("sort-on-patientname", SORT_PATIENT_NAME, "" if self["sort-on-patientname"] else None),
                ("flat", None, "" if self["flat"] else None),
            ]
            if prefix is not None
        ]
        if len(sorts) > 1:
            raise usage.UsageError("choose one of --%s" % (", --".join(flag for flag, _, _ in sorts),))
        return (sorts[0][1], sorts[0][2]) if sorts else None

    def _checkStorage(self) -> None:
        self._sortMode()
        if self["unique-filenames"] and self["timenames"]:
            raise usage.UsageError("choose one of --unique-filenames and --timenames")
        if self["rename-on-eostudy"] and self["flat"]:
            raise usage.UsageError("--rename-on-eostudy needs the files sorted into study directories, not --flat")
        for option in ("exec-on-reception", "exec-on-eostudy"):
            if self[option] is not None:
                try:
                    shellCommand(self[option])
                except UnsafeCommand as e:
                    raise usage.UsageError("--%s: %s" % (option, e))

    def overrides(self, config: DaemonConfig) -> DaemonConfig:
        """
        Apply the options given on the command line to a configuration:
        limits, endpoints and peers, and the settings of its first AE.
        """
        limits = config.limits
        for option, name in [
            ("max-pdu", "maxPDU"),
            ("max-async-ops", "maxAsyncOps"),
            ("max-associations", "maxAssociations"),
            ("max-associations-per-host", "maxAssociationsPerHost"),
            ("max-pending-connections", "maxPendingConnections"),
            ("acse-timeout", "acseTimeout"),
            ("dimse-timeout", "dimseTimeout"),
            ("idle-timeout", "idleTimeout"),
            ("shutdown-grace", "shutdownGrace"),
        ]:
            if self.given(option):
                value = self[option]
                limits = replace(limits, **{name: idleTimeout(value) if option == "idle-timeout" else value})
        changes = {"limits": limits, "peers": list(config.peers) + list(self["peers"]) + list(self["forward"])}
        if self["listen"]:
            changes["listen"] = tuple(self["listen"])
        if self.given("status"):
            changes["status"] = self["status"]
        if self.given("database"):
            database = self["database"]
            changes["database"] = database if isURL(database) else os.path.abspath(database)
        if self.given("node"):
            changes["node"] = self["node"]
        if self.given("state-directory"):
            changes["stateDirectory"] = os.path.abspath(self["state-directory"])
        entities = list(config.entities)
        entities[0] = self._overrideEntity(entities[0])
        changes["entities"] = entities
        return replace(config, **changes)

    def _overrideEntity(self, entity):
        storage = entity.storage
        changes = {}
        for option, name in [
            ("output-directory", "outputDirectory"),
            ("filename-extension", "extension"),
            ("exec-on-reception", "execOnReception"),
            ("exec-on-eostudy", "execOnEndOfStudy"),
            ("eostudy-timeout", "endOfStudyTimeout"),
        ]:
            if self.given(option):
                changes[name] = self[option]
        for option, name in [("ignore", "ignore"), ("rename-on-eostudy", "renameOnEndOfStudy"), ("exec-sync", "execSync"), ("fsync", "sync")]:
            if self[option]:
                changes[name] = True
        sort = self._sortMode()
        if sort is not None:
            changes["sortMode"], changes["sortPrefix"] = sort
        if self["unique-filenames"]:
            changes["fileNames"] = naming.FileNameScheme.UNIQUE
        elif self["timenames"]:
            changes["fileNames"] = naming.FileNameScheme.TIME
        if self["recode"] is not None:
            changes["recode"] = self["recode"]
        entityChanges = {"storage": replace(storage, **changes)}
        if self.given("aetitle"):
            entityChanges["title"] = self["aetitle"]
        if self["transfer-syntax-given"]:
            entityChanges["transferSyntaxes"] = self["transfer-syntaxes"]
        if self["promiscuous"]:
            entityChanges["promiscuous"] = True
        if self["disable-get"]:
            entityChanges["get"] = False
        if self["forward"]:
            entityChanges["routes"] = entity.routes + tuple(Route(peer.title) for peer in self["forward"])
        return replace(entity, **entityChanges)

    def _recoder(self):
        """
        The re-encoding the output options ask for, or C{None} to store
        files as received.
        """
        fields, setBy = {}, {}
        for flag, field, value, _ in RECODE_FLAGS:
            if self[flag]:
                if field in fields:
                    raise usage.UsageError("choose one of --%s and --%s" % (setBy[field], flag))
                fields[field], setBy[field] = value, flag
        if self["padding-create"] is not None:
            try:
                fields["padding"] = tuple(int(part) for part in self["padding-create"].split(","))
                if len(fields["padding"]) != 2:
                    raise ValueError()
            except ValueError:
                raise usage.UsageError("--padding-create takes FILE,ITEM (two numbers), not %r" % (self["padding-create"],))
        options = recode.RecodeOptions(compressionLevel=6 if self["compression-level"] is None else self["compression-level"], **fields)
        try:
            return recoder(options)
        except UsageError as e:
            raise usage.UsageError(str(e))


class Options(DaemonOptions):
    """
    Options of C{twistd dicomd} as twistd parses them (the plugin takes
    this module's C{Options}): a mistake ends the process with its message
    alone, exit status 1.

    twistd answers a L{usage.UsageError} with its whole usage text, the
    plugin's options included (over a hundred lines), before the message.
    A L{SystemExit} carrying the message is printed as it is, on standard
    error, before logging starts (as L{usage.Options.opt_help} ends the
    process from C{parseOptions} too).  A configuration file's mistake is
    one line (file, line, key); a command line's is followed by where to
    find the usage.
    """

    def parseOptions(self, options=None):
        #: What a worker process is built from (L{dicomd.workerprocess}).
        self.arguments = list(sys.argv[1:] if options is None else options)
        try:
            DaemonOptions.parseOptions(self, options)
        except ConfigFileError as e:
            raise SystemExit("twistd dicomd: %s" % (e,))
        except usage.UsageError as e:
            raise SystemExit("twistd dicomd: %s\nTry 'twistd dicomd --help' for usage." % (e,))


class TwistdService(service.MultiService):
    """
    What C{twistd dicomd} runs: the L{DicomdService}, ending the process
    with one log line when it cannot start.

    twistd answers any exception raised while services start with a
    traceback (some thirty lines for a port in use).  A L{StartupError}
    (a port in use, a directory that cannot be written) is the user's to
    fix, not a bug: its message is logged as one critical line, and the
    process exits with status 1.  (Run as a daemon, without C{-n}, twistd
    then says "An error has occurred" and points to its log file, where
    that line is.)

    It handles the signals of a twistd process: SIGHUP reloads the
    configuration, and SIGTERM stops the daemon in order even before the
    reactor runs.  twistd starts the services before it runs the reactor,
    and only C{reactor.run()} installs the SIGTERM handler: a SIGTERM in
    between (a stop right after a start, while the AEs recover their
    studies) would kill the process without the ordered stop.  The
    reactor's own handler, installed at start, asks for the same stop once
    the reactor runs.

    @ivar daemon: the L{DicomdService}.
    """

    log = Logger()

    def __init__(self, daemon: DicomdService):
        service.MultiService.__init__(self)
        self.daemon = daemon
        daemon.setServiceParent(self)

    def privilegedStartService(self) -> None:
        self._orExit(service.MultiService.privilegedStartService)

    def startService(self) -> None:
        # The handlers come first: starting the AEs may take a while
        # (recovering an index, ending the studies a killed run left open).
        reactor = self.daemon.reactor
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda number, frame: reactor.callFromThread(self.daemon.reload))
        sigTerm = getattr(reactor, "sigTerm", None)
        if sigTerm is not None and not getattr(reactor, "running", True):
            signal.signal(signal.SIGTERM, sigTerm)
        self._orExit(service.MultiService.startService)

    def _orExit(self, start) -> None:
        try:
            start(self)
        except StartupError as e:
            self.log.critical("{error}", error=str(e))
            raise SystemExit(1)


def makeService(options) -> TwistdService:
    """
    Build the daemon from the configuration file (or the embedded
    defaults) with the command line's overrides.
    """
    workers = None
    if options["workers"] > 1:
        workers = WorkerPool(options["workers"], ["twistd"] + options.arguments)
    try:
        daemon = DicomdService(options["base"], overrides=options.overrides, workers=workers)
    except StartupError as e:
        # Before twistd runs anything: one line, as for a configuration error.
        raise SystemExit("twistd dicomd: %s" % (e,))
    return TwistdService(daemon)
