"""
The daemon's configuration file: TOML, read with the standard library's
C{tomllib}.

The file describes what C{twistd dicomd} runs: listening endpoints, local
AE titles (each with its storage area, naming and sorting, accepted SOP
classes and transfer syntaxes, access rules, quota and query/retrieve
offer, actions and forwarding routes), known peers for C-MOVE and
forwarding, how forwarding retries, the status page and the limits.  L{readConfig} turns it into a L{DaemonConfig}; any mistake raises
L{ConfigError} naming the file, the line and the key.  C{etc/dicomd.toml}
documents every key.
"""

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from dicomd.actions import UnsafeCommand, shellCommand
from dicomd.archive.databases import DatabaseUnusable, checkURL, isURL
from dicomd.archive.dcmqrcfg import Quota
from dicomd.archive.matching import PATIENT_ROOT, PATIENT_STUDY_ONLY, STUDY_ROOT
from dicomd.archive.queue import RetryPolicy
from dicomd.archive.routing import AT_END_OF_STUDY, ON_RECEPTION, NotMatchable, Route, RouteMatch, attributeCondition
from dicomd.forwarding import ForwardingSettings
from dicomd.storage import DIRECTORY_MODE, FILE_MODE, naming
from dicomd.storage.receiver import SORT_PATIENT_NAME, SORT_STUDY_UID, SORT_TIMESTAMP, StorageOptions
from dicomd.asconfig import AsConfigError, acceptorPolicy, readProfiles
from dicomd.tls import TLSConfigurationError
from dicomd.tls.context import CRL_CHECKS
from dicomd.tls.profiles import DEFAULT_PROFILE, PROFILES
from dicomd.tls.settings import VERIFY_MODES, VERIFY_REQUIRE, TLSSettings
from dicomd.tomllines import KeyLines
from dicomd.ul.negotiation import ACCEPTOR_PREFERENCES

DEFAULT_TITLE = "DICOMD"
DEFAULT_DIRECTORY = "dicomd-data"
DEFAULT_LISTEN = ("tcp:11112",)

MODELS = {"patient-root": PATIENT_ROOT, "study-root": STUDY_ROOT, "patient-study-only": PATIENT_STUDY_ONLY}
SORTS = {"study-uid": SORT_STUDY_UID, "timestamp": SORT_TIMESTAMP, "patient-name": SORT_PATIENT_NAME, "none": None}
FILE_NAMES = {
    "uid": naming.FileNameScheme.INSTANCE_UID,
    "unique": naming.FileNameScheme.UNIQUE,
    "time": naming.FileNameScheme.TIME,
}
#: [ae.storage] keep: whether files are deleted once forwarded (router mode).
KEEPS = {"always": False, "until-forwarded": True}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb|tb)?\s*$", re.IGNORECASE)
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
_MODE = re.compile(r"^0?[0-7]{3}$")
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
#: TLSSettings fields -> the keys of a peer's tls table.
_TLS_KEYS = {"privateKey": "private-key", "certificate": "certificate", "trusted": "ca", "crls": "crl", "crlCheck": "crl-check", "sni": "server-name", "profile": "profile"}
_UNITS = {None: 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}


class ConfigError(ValueError):
    """
    A configuration file that cannot be used.

    @ivar path: the file.
    @ivar line: the line of the offending key (1-based), or C{None}.
    @ivar key: the dotted key, such as C{ae[2].quota.max-studies}.
    """

    def __init__(self, path: str, line: Optional[int], key: str, message: str):
        where = "%s, line %d" % (path, line) if line else path
        super().__init__("%s: %s: %s" % (where, key, message) if key else "%s: %s" % (where, message))
        self.path = path
        self.line = line
        self.key = key


@dataclass
class Limits:
    """
    Limits that keep the daemon safe whatever its peers do.

    @ivar maxAssociations: simultaneous associations, all peers together.
    @ivar maxAssociationsPerHost: simultaneous associations from one host.
    @ivar maxPendingConnections: connections that have not sent their
        A-ASSOCIATE-RQ yet; beyond it the oldest is closed, so that idle
        connections cannot keep associations out.
    @ivar shutdownGrace: seconds running associations get to finish when
        the daemon stops, before they are aborted.
    @ivar maxAsyncOps: the most requests a peer may send before their
        responses, when it proposes an Asynchronous Operations Window
        (PS3.7 D.3.3.3); 1 grants none.
    @ivar moveAsyncOps: the C-STOREs a C-MOVE sub-association proposes to
        have outstanding at once, an Asynchronous Operations Window the
        destination may grant in part; 1 proposes none.
    @ivar connectTimeout: seconds a C-MOVE sub-association waits for its
        TCP connection (dcmqrscp's C{--timeout}), or C{None} for Twisted's
        default.
    """

    maxAssociations: int = 128
    maxAssociationsPerHost: int = 64
    maxPendingConnections: int = 256
    maxPDU: int = 131072
    maxAsyncOps: int = 16
    moveAsyncOps: int = 1
    acseTimeout: float = 30.0
    dimseTimeout: Optional[float] = None
    idleTimeout: Optional[float] = 60.0
    shutdownGrace: float = 30.0
    connectTimeout: Optional[float] = None


@dataclass
class EntityConfig:
    """
    One local AE title.

    @ivar transferSyntaxes: accepted syntaxes in preference order.
    @ivar profile: C{(file, profile name)} of a DCMTK association
        negotiation profile used instead, or C{None}.
    @ivar callingAETitles: the AE titles allowed to call, or C{None}.
    @ivar hosts: the networks allowed to call, or C{None}.
    @ivar access: C{"R"}, C{"W"} or C{"RW"} as in dcmqrscp.cfg.
    @ivar models: the query/retrieve models offered; none for a storage
        SCP alone (storescp), whose profile, if any, is all it accepts.
    @ivar requireImplementationClassUID: reject associations whose
        request has none (DCMTK's C{--reject}).
    @ivar refuseAll: reject every association (DCMTK's C{--refuse}).
    @ivar logPresentationContexts: log each proposed presentation context
        and its result (storescp's C{--verbose-pc}).
    @ivar peerRule: C{(callingAETitle, peerAddress) -> bool}, the peers
        that may call it as a dcmqrscp.cfg peer list says; C{None} leaves
        it to C{callingAETitles} and C{hosts}.
    @ivar moveAllowed: C{(association, destination) -> refusal or None},
        dcmqrscp's restrictions on C-MOVE destinations, or C{None}.
    @ivar checkFind: refuse C-FIND identifiers that break the rules
        (dcmqrscp's C{--check-find}).
    @ivar checkMove: the same for C-MOVE and C-GET (C{--check-move}).
    @ivar requireFind: refuse C-MOVE contexts without a C-FIND context of
        their model (C{--require-find}).
    @ivar parallelStore: accept storage contexts while another association
        of this AE holds some (C{--no-parallel-store} turns it off).
    @ivar characterSets: how C-FIND responses are converted (a
        L{dicomd.archive.charsets.ResponseCharacterSet}), or C{None}.
    @ivar allowShutdown: an association negotiating DCMTK's private
        shutdown SOP class stops the server (C{--allow-shutdown}).
    @ivar routes: the L{Route}s that forward what it receives.
    """

    title: str = DEFAULT_TITLE
    storage: StorageOptions = field(default_factory=lambda: StorageOptions(outputDirectory=DEFAULT_DIRECTORY, sortMode=SORT_STUDY_UID))
    transferSyntaxes: Tuple[str, ...] = ACCEPTOR_PREFERENCES["+x="]
    profile: Optional[Tuple[str, str]] = None
    promiscuous: bool = False
    access: str = "RW"
    queryRetrieve: bool = True
    get: bool = True
    models: Tuple = (PATIENT_ROOT, STUDY_ROOT)
    callingAETitles: Optional[Tuple[str, ...]] = None
    hosts: Optional[Tuple[Any, ...]] = None
    quota: Optional[Quota] = None
    requireImplementationClassUID: bool = False
    refuseAll: bool = False
    logPresentationContexts: bool = False
    peerRule: Optional[Callable[[str, Any], bool]] = None
    moveAllowed: Optional[Callable[[Any, Any], Optional[str]]] = None
    checkFind: bool = False
    checkMove: bool = False
    requireFind: bool = False
    parallelStore: bool = True
    characterSets: Any = None
    allowShutdown: bool = False
    routes: Tuple[Route, ...] = ()

    @property
    def readable(self) -> bool:
        return "R" in self.access and self.queryRetrieve

    @property
    def writable(self) -> bool:
        return "W" in self.access


@dataclass(frozen=True)
class PeerConfig:
    """
    A remote AE that C-MOVE and forwarding send to.
    """

    title: str
    host: str
    port: int
    tls: Optional[TLSSettings] = None


@dataclass(frozen=True)
class PortConfig:
    """
    A TCP port to listen on, as the front doors' port parameter and TLS
    options give it: an endpoint string cannot carry every TLS option of
    DCMTK's (a password typed in, certificate directories).

    @ivar tls: the TLS context factory of C{+tls} (see
        L{TLSSettings.certificateOptions}), or C{None} for plain TCP.
    """

    port: int
    tls: Any = None

    def __str__(self) -> str:
        return "port %d" % (self.port,)


@dataclass
class DaemonConfig:
    """
    Everything C{twistd dicomd} runs.

    @ivar path: the file it was read from (absolute, so that a reload
        finds it whatever the working directory), or C{None} for the
        defaults.
    @ivar database: the index database: an SQLite file, a
        C{postgresql://} URL (several daemons may share it), or C{None}
        for the first AE's directory's C{.dicomd-index.sqlite}.
    @ivar status: an endpoint string for the status page, or C{None}.
    @ivar answerAnyCalledAETitle: associations calling an AE title that no
        entity has go to the first one (as storescp answers any called AE
        title); C{False} rejects them (as dcmqrscp does).
    @ivar fileMode: the permissions of the index database (less the
        umask); every AE's L{StorageOptions} has it too.
    @ivar directoryMode: the permissions of the database's directory when
        the daemon makes it; every AE's L{StorageOptions} has it too.
    @ivar stateDirectory: where the study journals are kept, or C{None}
        for L{dicomd.storage.state.defaultStateDirectory}'s choice.
    @ivar listen: endpoint strings, or L{PortConfig}s.
    @ivar index: keep an index database; without one (storescp) the AEs
        store files and answer no queries.
    @ivar moveProposal: the presentation contexts of C-MOVE
        sub-associations from those carrying the instances as stored (see
        L{dicomd.peers.proposing}), or C{None} for the default.
    @ivar forwarding: how forwarding retries and how many associations it
        opens (C{[forwarding]}).
    @ivar node: the name of this daemon among those sharing an index in
        PostgreSQL (forwarding claims, runs and C{/metrics} are its), or
        C{None} for the host's name.
    """

    listen: Tuple[Union[str, PortConfig], ...] = DEFAULT_LISTEN
    entities: List[EntityConfig] = field(default_factory=lambda: [EntityConfig()])
    peers: List[PeerConfig] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    database: Optional[str] = None
    status: Optional[str] = None
    answerAnyCalledAETitle: bool = True
    fileMode: int = FILE_MODE
    directoryMode: int = DIRECTORY_MODE
    stateDirectory: Optional[str] = None
    forwarding: ForwardingSettings = field(default_factory=ForwardingSettings)
    path: Optional[str] = None
    index: bool = True
    moveProposal: Optional[Callable[[list], list]] = None
    node: Optional[str] = None


def nodeNameProblem(name: str) -> Optional[str]:
    """
    What is wrong with a node's name (C{node}, C{--node}), or C{None}: it
    names the daemon in the shared index and in C{/metrics}, so it is one
    short line of printable text.
    """
    if not name.strip() or len(name) > 64 or not name.isprintable():
        return "expected a name of 1 to 64 printable characters, not %r" % (name,)
    return None


def readConfig(path: str) -> DaemonConfig:
    """
    Read and check a configuration file.

    @raise ConfigError: it cannot be read, is not TOML, or a key is wrong.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(path, None, "", "cannot read: %s" % (e.strerror,))
    text = raw.decode("utf-8", "replace")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        match = re.search(r"\(at line (\d+), column \d+\)", message)
        if match:
            line = int(match.group(1))
        elif "end of document" in message:
            line = max(1, len(text.splitlines()))
        else:
            line = None
        reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
        key = KeyLines(text).keyAt(line) if line else ""
        raise ConfigError(path, line, key, "not valid TOML: %s" % (reason,))
    return _Reader(path, text).daemon(document)


def checkEndpoint(description: str, reactor=None) -> None:
    """
    Check that a Twisted server endpoint string parses (without listening):
    a known prefix with valid arguments, and for C{dicomtls:} usable keys
    and certificates.

    @raise ValueError: it does not; the message says why.
    """
    from twisted.internet import endpoints

    if reactor is None:
        from twisted.internet import reactor
    if not isinstance(description, str) or not description.strip():
        raise ValueError("an endpoint string such as tcp:11112 is needed")
    try:
        endpoints.serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError("%r is not a usable endpoint: %s" % (description, e))


class _Reader:
    """
    Checks a parsed document key by key, so each error can name its line
    (which L{KeyLines} finds).
    """

    def __init__(self, path: str, text: str):
        self.path = path
        self.keyLines = KeyLines(text)
        self.base = os.path.dirname(os.path.abspath(path))

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, self.keyLines.lineOf(key), key, message)

    # -- typed reads ---------------------------------------------------------------

    def _check(self, table: Dict, key: str, allowed: Sequence[str]) -> None:
        for name in table:
            if name not in allowed:
                raise self.error("%s.%s" % (key, name) if key else name, "unknown key (known: %s)" % ", ".join(allowed))

    def _get(self, table, key, name, kind, default):
        if name not in table:
            return default
        value = table[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            expected = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
            raise self.error(self._key(key, name), "expected %s, not %r" % (expected, value))
        return value

    @staticmethod
    def _key(prefix: str, name: str) -> str:
        return "%s.%s" % (prefix, name) if prefix else name

    def _choice(self, table, key, name, choices: Dict, default):
        if name not in table:
            return default
        value = self._get(table, key, name, str, None)
        if value not in choices:
            raise self.error(self._key(key, name), "expected one of %s, not %r" % (", ".join(sorted(choices)), value))
        return choices[value]

    def _positive(self, table, key, name, kind, default, zeroMeans=...):
        value = self._get(table, key, name, kind, default)
        if value is default:
            return value
        if value == 0 and zeroMeans is not ...:
            return zeroMeans
        if value <= 0:
            raise self.error(self._key(key, name), "must be greater than 0, not %r" % (value,))
        return value

    def _path(self, value: str) -> str:
        """
        A file dicomd reads (a profile, a TLS key or certificate): relative
        to the configuration file's directory, where such files live.
        """
        return os.path.normpath(os.path.join(self.base, os.path.expanduser(value)))

    @staticmethod
    def _dataPath(value: str) -> str:
        """
        A place dicomd writes (a storage directory, the index database):
        relative to the working directory, as C{--output-directory} is and
        as C{dicomd-data} is without a file, so that a configuration file
        never writes beside itself (into C{/etc}, or a source tree).
        """
        return os.path.abspath(os.path.expanduser(value))

    def _aeTitle(self, key: str, value) -> str:
        """
        An AE title: 1 to 16 printable ASCII characters without backslash,
        not all spaces.  Leading and trailing spaces are not significant
        (PS3.5's AE value representation), so they are dropped.
        """
        if not isinstance(value, str):
            raise self.error(key, "expected an AE title (a string), not %r" % (value,))
        if not 0 < len(value) <= 16 or not value.strip() or not value.isascii() or "\\" in value or not value.isprintable():
            raise self.error(key, "%r is not an AE title (1 to 16 printable ASCII characters, no backslash, not all spaces)" % (value,))
        return value.strip()

    # -- sections ---------------------------------------------------------------

    def daemon(self, document: Dict) -> DaemonConfig:
        self._check(
            document,
            "",
            ["listen", "status", "database", "node", "state-directory", "file-mode", "directory-mode", "answer-any-called-ae", "limits", "ae", "peer", "forwarding"],
        )
        listen = self._get(document, "", "listen", list, list(DEFAULT_LISTEN))
        if not listen:
            raise self.error("listen", "no endpoint to listen on")
        for position, endpoint in enumerate(listen):
            if not isinstance(endpoint, str):
                raise self.error("listen", "entry %d is not an endpoint string: %r" % (position + 1, endpoint))
            self._endpoint("listen", endpoint)
        status = self._get(document, "", "status", str, None)
        if status is not None:
            self._endpoint("status", status)
        database = self._get(document, "", "database", str, None)
        if database is not None and not database.strip():
            raise self.error("database", "expected a file name or a postgresql:// URL")
        if database is not None and isURL(database):
            try:
                checkURL(database)
            except DatabaseUnusable as e:
                raise self.error("database", str(e))
        node = self._get(document, "", "node", str, None)
        if node is not None:
            problem = nodeNameProblem(node)
            if problem:
                raise self.error("node", problem)
        stateDirectory = self._get(document, "", "state-directory", str, None)
        if stateDirectory is not None and not stateDirectory.strip():
            raise self.error("state-directory", "expected a directory name")
        fileMode = self._mode(document, "file-mode", FILE_MODE, 0o600, "read and write its files")
        directoryMode = self._mode(document, "directory-mode", DIRECTORY_MODE, 0o700, "list, enter and write its directories")
        limits = self.limits(self._get(document, "", "limits", dict, {}))
        if isinstance(document.get("ae"), dict):
            raise self.error("ae", "write [[ae]] (a list of tables, one per AE title), not [ae]")
        entityTables = self._get(document, "", "ae", list, None)
        if entityTables is None:
            storage = replace(
                EntityConfig().storage, outputDirectory=self._dataPath(DEFAULT_DIRECTORY), fileMode=fileMode, directoryMode=directoryMode
            )
            entities = [EntityConfig(storage=storage)]
        else:
            entities = []
            for position, table in enumerate(entityTables):
                key = "ae[%d]" % position
                if not isinstance(table, dict):
                    raise self.error(key, "expected a table, not %r" % (table,))
                entities.append(self.entity(table, key, fileMode, directoryMode))
        if not entities:
            raise self.error("ae", "no AE title configured")
        self._unique("ae", [entity.title for entity in entities], "AE title")
        if isinstance(document.get("peer"), dict):
            raise self.error("peer", "write [[peer]] (a list of tables, one per peer), not [peer]")
        peers = []
        for position, table in enumerate(self._get(document, "", "peer", list, [])):
            key = "peer[%d]" % position
            if not isinstance(table, dict):
                raise self.error(key, "expected a table, not %r" % (table,))
            peers.append(self.peer(table, key))
        self._unique("peer", [peer.title for peer in peers], "peer AE title")
        titles = {peer.title for peer in peers}
        for position, entity in enumerate(entities):
            for number, route in enumerate(entity.routes):
                if route.to not in titles:
                    raise self.error(
                        "ae[%d].forward[%d].to" % (position, number),
                        "no [[peer]] has the AE title %r%s" % (route.to, " (peers: %s)" % ", ".join(sorted(titles)) if titles else ""),
                    )
        return DaemonConfig(
            listen=tuple(listen),
            entities=entities,
            peers=peers,
            limits=limits,
            database=database if database and isURL(database) else self._dataPath(database) if database else None,
            stateDirectory=self._dataPath(stateDirectory) if stateDirectory else None,
            status=status,
            answerAnyCalledAETitle=self._get(document, "", "answer-any-called-ae", bool, True),
            fileMode=fileMode,
            directoryMode=directoryMode,
            forwarding=self.forwarding(self._get(document, "", "forwarding", dict, {})),
            path=os.path.abspath(self.path),
            node=node,
        )

    def _unique(self, section: str, titles: List[str], what: str) -> None:
        seen = set()
        for position, title in enumerate(titles):
            if title in seen:
                raise self.error("%s[%d].title" % (section, position), "%s %r configured twice" % (what, title))
            seen.add(title)

    def _endpoint(self, key: str, description: str) -> None:
        try:
            checkEndpoint(description)
        except ValueError as e:
            raise self.error(key, str(e))

    def limits(self, table: Dict) -> Limits:
        key = "limits"
        defaults = Limits()
        self._check(
            table,
            key,
            [
                "max-associations",
                "max-associations-per-host",
                "max-pending-connections",
                "max-pdu",
                "max-async-ops",
                "move-async-ops",
                "acse-timeout",
                "dimse-timeout",
                "idle-timeout",
                "shutdown-grace",
            ],
        )
        maxPDU = self._get(table, key, "max-pdu", int, defaults.maxPDU)
        if maxPDU != 0 and not 4096 <= maxPDU <= 131072:
            raise self.error("limits.max-pdu", "must be 0 (no limit) or 4096..131072, not %d" % (maxPDU,))
        maxAsyncOps = self._get(table, key, "max-async-ops", int, defaults.maxAsyncOps)
        if not 1 <= maxAsyncOps <= 0xFFFF:
            raise self.error("limits.max-async-ops", "must be 1 (no window) to 65535, not %d" % (maxAsyncOps,))
        moveAsyncOps = self._get(table, key, "move-async-ops", int, defaults.moveAsyncOps)
        if not 1 <= moveAsyncOps <= 0xFFFF:
            raise self.error("limits.move-async-ops", "must be 1 (no window) to 65535, not %d" % (moveAsyncOps,))
        return Limits(
            maxAssociations=self._positive(table, key, "max-associations", int, defaults.maxAssociations),
            maxAssociationsPerHost=self._positive(table, key, "max-associations-per-host", int, defaults.maxAssociationsPerHost),
            maxPendingConnections=self._positive(table, key, "max-pending-connections", int, defaults.maxPendingConnections),
            maxPDU=maxPDU,
            maxAsyncOps=maxAsyncOps,
            moveAsyncOps=moveAsyncOps,
            acseTimeout=self._positive(table, key, "acse-timeout", float, defaults.acseTimeout),
            dimseTimeout=self._positive(table, key, "dimse-timeout", float, defaults.dimseTimeout, zeroMeans=None),
            idleTimeout=self._positive(table, key, "idle-timeout", float, defaults.idleTimeout, zeroMeans=None),
            shutdownGrace=self._notNegative(table, key, "shutdown-grace", defaults.shutdownGrace),
        )

    def forwarding(self, table: Dict) -> ForwardingSettings:
        key = "forwarding"
        self._check(table, key, ["retry-first", "retry-max", "give-up-after", "associations-per-peer", "lease", "async-ops"])
        defaults = RetryPolicy()
        policy = RetryPolicy(
            first=self._positive(table, key, "retry-first", float, defaults.first),
            maximum=self._positive(table, key, "retry-max", float, defaults.maximum),
            giveUpAfter=self._positive(table, key, "give-up-after", float, defaults.giveUpAfter),
        )
        if policy.maximum < policy.first:
            raise self.error("forwarding.retry-max", "must not be less than retry-first (%g)" % (policy.first,))
        asyncOps = self._get(table, key, "async-ops", int, ForwardingSettings.asynchronousOperations)
        if not 1 <= asyncOps <= 0xFFFF:
            raise self.error("forwarding.async-ops", "must be 1 (no window) to 65535, not %d" % (asyncOps,))
        return ForwardingSettings(
            policy=policy,
            associationsPerPeer=self._positive(table, key, "associations-per-peer", int, ForwardingSettings.associationsPerPeer),
            lease=self._positive(table, key, "lease", float, ForwardingSettings.lease),
            asynchronousOperations=asyncOps,
        )

    def routes(self, tables, key) -> Tuple[Route, ...]:
        if isinstance(tables, dict):
            raise self.error(key, "write [[ae.forward]] (a list of tables, one per route), not [ae.forward]")
        if not isinstance(tables, list):
            raise self.error(key, "expected a list of tables, not %r" % (tables,))
        routes = []
        for position, table in enumerate(tables):
            routeKey = "%s[%d]" % (key, position)
            if not isinstance(table, dict):
                raise self.error(routeKey, "expected a table, not %r" % (table,))
            self._check(table, routeKey, ["to", "when", "match"])
            if "to" not in table:
                raise self.error(routeKey, "a route needs to (a [[peer]] title)")
            routes.append(
                Route(
                    to=self._aeTitle(self._key(routeKey, "to"), table["to"]),
                    when=self._choice(table, routeKey, "when", {ON_RECEPTION: ON_RECEPTION, AT_END_OF_STUDY: AT_END_OF_STUDY}, ON_RECEPTION),
                    match=self._routeMatch(self._get(table, routeKey, "match", dict, {}), self._key(routeKey, "match")),
                )
            )
        return tuple(routes)

    def _routeMatch(self, table, key) -> RouteMatch:
        def strings(name):
            if name not in table:
                return None
            value = table[name]
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
                raise self.error(self._key(key, name), "expected a string or a non-empty list of strings, not %r" % (value,))
            return tuple(v.strip() for v in values)

        callingAETitles = strings("calling-ae-titles")
        if callingAETitles is not None:
            callingAETitles = tuple(self._aeTitle(self._key(key, "calling-ae-titles"), title) for title in callingAETitles)
        sopClasses = strings("sop-classes")
        for uid in sopClasses or ():
            if not _UID.match(uid) or len(uid) > 64:
                raise self.error(self._key(key, "sop-classes"), "%r is not a SOP Class UID" % (uid,))
        conditions = []
        for name, value in table.items():
            if name in ("modality", "calling-ae-titles", "sop-classes"):
                continue
            if not isinstance(value, str):
                raise self.error(self._key(key, name), "expected a DICOM match value (a string such as \"CT*\"), not %r" % (value,))
            try:
                condition = attributeCondition(name, value)
            except NotMatchable as e:
                raise self.error(self._key(key, name), "%s (known: modality, calling-ae-titles, sop-classes, or a keyword such as StationName)" % (e,))
            if condition is not None:
                conditions.append(condition)
        return RouteMatch(modalities=strings("modality"), callingAETitles=callingAETitles, sopClasses=sopClasses, conditions=tuple(conditions))

    def _mode(self, table, name: str, default: int, needed: int, needs: str) -> int:
        """
        Permission bits, written as octal digits in a string (C{"0640"}:
        a TOML integer would be decimal), that keep the owner's C{needed}
        ones: dicomd must go on using what it creates.
        """
        if name not in table:
            return default
        value = table[name]
        if not isinstance(value, str) or not _MODE.match(value):
            raise self.error(name, 'expected permission bits as a string of octal digits, such as "%04o", not %r' % (default, value))
        mode = int(value, 8)
        if mode & needed != needed:
            raise self.error(name, "%r does not let dicomd %s (that needs %04o)" % (value, needs, needed))
        return mode

    def _notNegative(self, table, key, name, default) -> float:
        value = self._get(table, key, name, float, default)
        if value < 0:
            raise self.error(self._key(key, name), "must not be negative, not %r" % (value,))
        return value

    def entity(self, table: Dict, key: str, fileMode: int, directoryMode: int) -> EntityConfig:
        self._check(
            table,
            key,
            [
                "title",
                "directory",
                "access",
                "transfer-syntaxes",
                "profile",
                "promiscuous",
                "query-retrieve",
                "get",
                "models",
                "calling-ae-titles",
                "hosts",
                "quota",
                "storage",
                "actions",
                "forward",
            ],
        )
        if "title" not in table:
            raise self.error(key, "an [[ae]] needs a title")
        title = self._aeTitle(self._key(key, "title"), self._get(table, key, "title", str, None))
        directory = self._dataPath(self._get(table, key, "directory", str, DEFAULT_DIRECTORY))
        access = self._get(table, key, "access", str, "RW").upper()
        if access not in ("R", "W", "RW", "WR"):
            raise self.error(self._key(key, "access"), "expected R, W or RW, not %r" % (access,))
        syntaxes = self._transferSyntaxes(table, key)
        promiscuous = self._get(table, key, "promiscuous", bool, False)
        profile = None
        if "profile" in table:
            if "transfer-syntaxes" in table or promiscuous:
                raise self.error(self._key(key, "profile"), "a profile replaces transfer-syntaxes and promiscuous: give one or the other")
            profile = self._profile(self._get(table, key, "profile", dict, None), self._key(key, "profile"))
        models = self._get(table, key, "models", list, ["patient-root", "study-root"])
        if not models:
            raise self.error(self._key(key, "models"), "name at least one model (or set query-retrieve = false)")
        for name in models:
            if name not in MODELS:
                raise self.error(self._key(key, "models"), "unknown model %r (known: %s)" % (name, ", ".join(MODELS)))
        callingAETitles = self._get(table, key, "calling-ae-titles", list, None)
        if callingAETitles is not None:
            if not callingAETitles:
                raise self.error(self._key(key, "calling-ae-titles"), "an empty list lets nobody in; omit the key to let anyone in")
            callingAETitles = tuple(self._aeTitle(self._key(key, "calling-ae-titles"), title) for title in callingAETitles)
        hosts = self._get(table, key, "hosts", list, None)
        if hosts is not None:
            if not hosts:
                raise self.error(self._key(key, "hosts"), "an empty list lets nobody in; omit the key to let anyone in")
            hosts = tuple(self._host(self._key(key, "hosts"), value) for value in hosts)
        quota = None
        if "quota" in table:
            quota = self._quota(self._get(table, key, "quota", dict, None), self._key(key, "quota"))
        routes = self.routes(table.get("forward", []), self._key(key, "forward"))
        storage = self._storage(
            self._get(table, key, "storage", dict, {}),
            self._get(table, key, "actions", dict, {}),
            key,
            directory,
            fileMode,
            directoryMode,
        )
        storage = replace(storage, forwardsStudies=any(route.when == AT_END_OF_STUDY for route in routes))
        if storage.keepUntilForwarded and not routes:
            raise self.error(self._key(key, "storage.keep"), '"until-forwarded" needs at least one [[ae.forward]] route')
        return EntityConfig(
            title=title,
            storage=storage,
            transferSyntaxes=syntaxes,
            profile=profile,
            promiscuous=promiscuous,
            access="RW" if access == "WR" else access,
            queryRetrieve=self._get(table, key, "query-retrieve", bool, True),
            get=self._get(table, key, "get", bool, True),
            models=tuple(MODELS[name] for name in models),
            callingAETitles=callingAETitles,
            hosts=hosts,
            quota=quota,
            routes=routes,
        )

    def _transferSyntaxes(self, table, key) -> Tuple[str, ...]:
        value = table.get("transfer-syntaxes", "+x=")
        name = self._key(key, "transfer-syntaxes")
        if isinstance(value, str):
            if value not in ACCEPTOR_PREFERENCES:
                raise self.error(name, "expected one of storescp's %s or a list of UIDs, not %r" % (", ".join(ACCEPTOR_PREFERENCES), value))
            return ACCEPTOR_PREFERENCES[value]
        if not isinstance(value, list) or not value:
            raise self.error(name, "expected storescp's option (\"+x=\"...) or a non-empty list of transfer syntax UIDs, not %r" % (value,))
        for uid in value:
            if not isinstance(uid, str) or not _UID.match(uid) or len(uid) > 64:
                raise self.error(name, "%r is not a transfer syntax UID" % (uid,))
        if len(set(value)) != len(value):
            raise self.error(name, "a transfer syntax is listed twice")
        return tuple(value)

    def _profile(self, table, key) -> Tuple[str, str]:
        self._check(table, key, ["file", "name"])
        if "file" not in table or "name" not in table:
            raise self.error(key, "a profile needs a file and a name")
        path = self._path(self._get(table, key, "file", str, None))
        name = self._get(table, key, "name", str, None)
        try:
            acceptorPolicy(readProfiles(path).profile(name))
        except (AsConfigError, OSError) as e:
            raise self.error(key, "cannot use profile %r of %s: %s" % (name, path, getattr(e, "strerror", None) or e))
        return (path, name)

    def _host(self, key, value):
        if not isinstance(value, str):
            raise self.error(key, "expected host names or networks, not %r" % (value,))
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError:
            pass
        if not _HOST_NAME.match(value) or len(value) > 253:
            raise self.error(key, "%r is neither a host name nor an address or network (10.0.0.0/8, fd00::/8)" % (value,))
        return value

    def _quota(self, table, key) -> Quota:
        self._check(table, key, ["max-studies", "max-bytes-per-study"])
        if "max-studies" not in table or "max-bytes-per-study" not in table:
            raise self.error(key, "a quota needs max-studies and max-bytes-per-study")
        maxStudies = self._positive(table, key, "max-studies", int, None)
        size = table["max-bytes-per-study"]
        sizeKey = self._key(key, "max-bytes-per-study")
        if isinstance(size, int) and not isinstance(size, bool):
            maxBytes = size
        else:
            match = _SIZE.match(size) if isinstance(size, str) else None
            if match is None:
                raise self.error(sizeKey, "expected a size such as 4096, \"512mb\" or \"2gb\", not %r" % (size,))
            maxBytes = int(match.group(1)) * _UNITS[(match.group(2) or "").lower() or None]
        if maxBytes <= 0:
            raise self.error(sizeKey, "must be greater than 0")
        return Quota(maxStudies, maxBytes)

    def _storage(self, table, actions, key, directory, fileMode: int, directoryMode: int) -> StorageOptions:
        storageKey = self._key(key, "storage")
        actionsKey = self._key(key, "actions")
        self._check(table, storageKey, ["sort", "sort-prefix", "file-names", "extension", "fsync", "ignore", "keep"])
        self._check(
            actions,
            actionsKey,
            ["on-reception", "on-end-of-study", "end-of-study-timeout", "rename-on-end-of-study", "synchronous"],
        )
        sortMode = self._choice(table, storageKey, "sort", SORTS, SORT_STUDY_UID)
        rename = self._get(actions, actionsKey, "rename-on-end-of-study", bool, False)
        if rename and sortMode is None:
            raise self.error(self._key(actionsKey, "rename-on-end-of-study"), "needs the files sorted into study directories (sort is \"none\")")
        return StorageOptions(
            outputDirectory=directory,
            ignore=self._get(table, storageKey, "ignore", bool, False),
            fileNames=self._choice(table, storageKey, "file-names", FILE_NAMES, naming.FileNameScheme.INSTANCE_UID),
            extension=self._namePart(table, storageKey, "extension"),
            sortMode=sortMode,
            sortPrefix=self._namePart(table, storageKey, "sort-prefix"),
            execOnReception=self._command(actions, actionsKey, "on-reception"),
            execOnEndOfStudy=self._command(actions, actionsKey, "on-end-of-study"),
            renameOnEndOfStudy=rename,
            endOfStudyTimeout=self._positive(actions, actionsKey, "end-of-study-timeout", float, None),
            execSync=self._get(actions, actionsKey, "synchronous", bool, False),
            sync=self._get(table, storageKey, "fsync", bool, False),
            fileMode=fileMode,
            directoryMode=directoryMode,
            keepUntilForwarded=self._choice(table, storageKey, "keep", KEEPS, False),
        )

    def _namePart(self, table, key, name) -> str:
        """
        A piece of a file or directory name: no path separator, no NUL.
        """
        value = self._get(table, key, name, str, "")
        if "/" in value or "\x00" in value or value in (".", ".."):
            raise self.error(self._key(key, name), "%r cannot be part of a file name" % (value,))
        return value

    def _command(self, table, key, name) -> Optional[str]:
        """
        A command template: not empty, and with no placeholder where its
        value could run as code (L{shellCommand}).
        """
        value = self._get(table, key, name, str, None)
        if value is None:
            return None
        if not value.strip():
            raise self.error(self._key(key, name), "an empty command; omit the key to run none")
        try:
            shellCommand(value)
        except UnsafeCommand as e:
            raise self.error(self._key(key, name), str(e))
        return value

    def peer(self, table: Dict, key: str) -> PeerConfig:
        self._check(table, key, ["title", "host", "port", "tls"])
        for required in ("title", "host", "port"):
            if required not in table:
                raise self.error(key, "a [[peer]] needs %s" % (required,))
        title = self._aeTitle(self._key(key, "title"), table["title"])
        host = self._get(table, key, "host", str, None)
        if not host.strip() or (not _HOST_NAME.match(host) and not _isAddress(host)):
            raise self.error(self._key(key, "host"), "%r is neither a host name nor an address" % (host,))
        port = self._get(table, key, "port", int, None)
        if not 0 < port < 65536:
            raise self.error(self._key(key, "port"), "not a port number: %d (1 to 65535)" % (port,))
        tls = None
        if "tls" in table:
            tls = self._tls(self._get(table, key, "tls", dict, None), self._key(key, "tls"))
        return PeerConfig(title, host, port, tls)

    def _paths(self, table, key, name) -> List[str]:
        value = self._get(table, key, name, (list, str), [])
        paths = [value] if isinstance(value, str) else value
        for path in paths:
            if not isinstance(path, str) or not path:
                raise self.error(self._key(key, name), "expected a file name or a list of them, not %r" % (path,))
        return [self._path(path) for path in paths]

    def _tls(self, table, key) -> TLSSettings:
        """
        The TLS settings of a peer, checked now: the files are read and
        the key must belong to the certificate, so that a mistake stops the
        start (or the reload) rather than the first C-MOVE.
        """
        self._check(
            table,
            key,
            ["private-key", "certificate", "ca", "verify", "verify-host-name", "password", "profile", "crl", "crl-check", "server-name"],
        )
        verify = self._choice(table, key, "verify", {mode: mode for mode in VERIFY_MODES}, VERIFY_REQUIRE)
        privateKey = self._get(table, key, "private-key", str, None)
        certificate = self._get(table, key, "certificate", str, None)
        if (privateKey is None) != (certificate is None):
            given, missing = ("private-key", "certificate") if certificate is None else ("certificate", "private-key")
            raise self.error(self._key(key, given), "private-key and certificate go together: %s without %s" % (given, missing))
        settings = TLSSettings(
            privateKey=self._path(privateKey) if privateKey else None,
            certificate=self._path(certificate) if certificate else None,
            trusted=self._paths(table, key, "ca"),
            verify=verify,
            # No password: the key must not be encrypted (a daemon has no
            # terminal to ask on); the empty one fails to decrypt it.
            password=self._get(table, key, "password", str, ""),
            profile=self._choice(table, key, "profile", {name: name for name in PROFILES}, DEFAULT_PROFILE),
            crls=self._paths(table, key, "crl"),
            crlCheck=self._choice(table, key, "crl-check", {check: check for check in CRL_CHECKS}, None),
            sni=self._get(table, key, "server-name", str, None),
            # A peer is reached by the host given here, so its
            # certificate must name that host unless the table says not.
            verifyHostName=self._get(table, key, "verify-host-name", bool, True),
        )
        try:
            settings.certificateOptions(isServer=False)
        except TLSConfigurationError as e:
            raise self.error(self._key(key, _TLS_KEYS.get(e.setting, "")) if e.setting in _TLS_KEYS else key, str(e))
        return settings


def _isAddress(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list", dict: "a table"}
