"""
The daemon's configuration file: TOML, read with the standard library's
C{tomllib}.

The file describes what C{twistd dicomd} runs: listening endpoints, local
AE titles (each with its storage area, naming and sorting, accepted SOP
classes and transfer syntaxes, access rules, quota and query/retrieve
offer, and actions), known peers for C-MOVE, the status page and the
limits.  L{readConfig} turns it into a L{DaemonConfig}; any mistake raises
L{ConfigError} naming the file, the line and the key.  C{etc/dicomd.toml}
documents every key.
"""

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dicomd.archive.dcmqrcfg import Quota
from dicomd.archive.matching import PATIENT_ROOT, PATIENT_STUDY_ONLY, STUDY_ROOT
from dicomd.storage import naming
from dicomd.storage.receiver import SORT_PATIENT_NAME, SORT_STUDY_UID, SORT_TIMESTAMP, StorageOptions
from dicomd.tls import TLSSettings
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
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb|tb)?\s*$", re.IGNORECASE)
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
    @ivar shutdownGrace: seconds running associations get to finish when
        the daemon stops, before they are aborted.
    """

    maxAssociations: int = 64
    maxAssociationsPerHost: int = 16
    maxPDU: int = 131072
    acseTimeout: float = 30.0
    dimseTimeout: Optional[float] = None
    idleTimeout: Optional[float] = 60.0
    shutdownGrace: float = 30.0


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

    @property
    def readable(self) -> bool:
        return "R" in self.access and self.queryRetrieve

    @property
    def writable(self) -> bool:
        return "W" in self.access


@dataclass(frozen=True)
class PeerConfig:
    """
    A remote AE that C-MOVE can send to.
    """

    title: str
    host: str
    port: int
    tls: Optional[TLSSettings] = None


@dataclass
class DaemonConfig:
    """
    Everything C{twistd dicomd} runs.

    @ivar path: the file it was read from, or C{None} for the defaults.
    @ivar database: the index database file, or C{None} for the first
        AE's directory's C{.dicomd-index.sqlite}.
    @ivar status: an endpoint string for the status page, or C{None}.
    @ivar answerAnyCalledAETitle: associations calling an AE title that no
        entity has go to the first one (as storescp answers any called AE
        title); C{False} rejects them (as dcmqrscp does).
    """

    listen: Tuple[str, ...] = DEFAULT_LISTEN
    entities: List[EntityConfig] = field(default_factory=lambda: [EntityConfig()])
    peers: List[PeerConfig] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    database: Optional[str] = None
    status: Optional[str] = None
    answerAnyCalledAETitle: bool = True
    path: Optional[str] = None


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
        match = re.search(r"line (\d+)", str(e))
        raise ConfigError(path, int(match.group(1)) if match else None, "", "not valid TOML: %s" % (e,))
    return _Reader(path, text).daemon(document)


class _Reader:
    """
    Checks a parsed document key by key, so each error can name its line.
    """

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = text.splitlines()
        self.base = os.path.dirname(os.path.abspath(path))

    # -- locating keys ---------------------------------------------------------

    def _line(self, key: str) -> Optional[int]:
        """
        The line where a dotted key (C{ae[1].quota.max-studies}) is set:
        the line of the key itself, or else of the nearest enclosing key or
        table header (an inline table, a list entry).
        """
        wanted = [_part(part) for part in key.split(".")]
        current: List[Tuple[str, Optional[int]]] = []
        arrays: Dict[Tuple[str, ...], int] = {}
        nearest = None
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            header = re.match(r"^(\[\[?)\s*([^\]]+?)\s*\]", stripped)
            if header:
                names = [name.strip().strip("\"'") for name in header.group(2).split(".")]
                if header.group(1) == "[[":
                    arrays[tuple(names)] = arrays.get(tuple(names), -1) + 1
                current = [(name, arrays.get(tuple(names[: i + 1]))) for i, name in enumerate(names)]
                found = current
            else:
                assignment = re.match(r"^([^=#\[]+?)\s*=", stripped)
                if assignment is None:
                    continue
                found = current + [(name.strip().strip("\"'"), None) for name in assignment.group(1).split(".")]
            if _matches(found, wanted):
                if len(found) == len(wanted):
                    return number
                if len(found) > len(current) or not nearest:
                    nearest = number
        return nearest

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, self._line(key), key, message)

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
            raise self.error(self._key(key, name), "expected %s, not %r" % (_KIND_NAMES.get(kind, kind.__name__), value))
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
        return os.path.normpath(os.path.join(self.base, os.path.expanduser(value)))

    def _aeTitle(self, key: str, value: str) -> str:
        if not 0 < len(value) <= 16 or not value.isascii() or "\\" in value or not value.isprintable():
            raise self.error(key, "%r is not an AE title (1 to 16 printable ASCII characters, no backslash)" % (value,))
        return value

    # -- sections ---------------------------------------------------------------

    def daemon(self, document: Dict) -> DaemonConfig:
        self._check(document, "", ["listen", "status", "database", "answer-any-called-ae", "limits", "ae", "peer"])
        listen = self._get(document, "", "listen", list, list(DEFAULT_LISTEN))
        for position, endpoint in enumerate(listen):
            if not isinstance(endpoint, str) or not endpoint:
                raise self.error("listen", "entry %d is not an endpoint string" % (position + 1,))
        if not listen:
            raise self.error("listen", "no endpoint to listen on")
        status = self._get(document, "", "status", str, None)
        database = self._get(document, "", "database", str, None)
        limits = self.limits(self._get(document, "", "limits", dict, {}))
        entityTables = self._get(document, "", "ae", list, None)
        if entityTables is None:
            entities = [EntityConfig(storage=replace(EntityConfig().storage, outputDirectory=self._path(DEFAULT_DIRECTORY)))]
        else:
            entities = [self.entity(table, "ae[%d]" % position) for position, table in enumerate(entityTables)]
        if not entities:
            raise self.error("ae", "no AE title configured")
        titles = [entity.title for entity in entities]
        for title in titles:
            if titles.count(title) > 1:
                raise self.error("ae[%d].title" % titles.index(title, titles.index(title) + 1), "AE title %r configured twice" % (title,))
        peers = [self.peer(table, "peer[%d]" % position) for position, table in enumerate(self._get(document, "", "peer", list, []))]
        return DaemonConfig(
            listen=tuple(listen),
            entities=entities,
            peers=peers,
            limits=limits,
            database=self._path(database) if database else None,
            status=status,
            answerAnyCalledAETitle=self._get(document, "", "answer-any-called-ae", bool, True),
            path=self.path,
        )

    def limits(self, table: Dict) -> Limits:
        key = "limits"
        defaults = Limits()
        self._check(
            table,
            key,
            [
                "max-associations",
                "max-associations-per-host",
                "max-pdu",
                "acse-timeout",
                "dimse-timeout",
                "idle-timeout",
                "shutdown-grace",
            ],
        )
        maxPDU = self._get(table, key, "max-pdu", int, defaults.maxPDU)
        if maxPDU != 0 and not 4096 <= maxPDU <= 131072:
            raise self.error("limits.max-pdu", "must be 0 (no limit) or 4096..131072, not %d" % (maxPDU,))
        return Limits(
            maxAssociations=self._positive(table, key, "max-associations", int, defaults.maxAssociations),
            maxAssociationsPerHost=self._positive(table, key, "max-associations-per-host", int, defaults.maxAssociationsPerHost),
            maxPDU=maxPDU,
            acseTimeout=self._positive(table, key, "acse-timeout", float, defaults.acseTimeout),
            dimseTimeout=self._positive(table, key, "dimse-timeout", float, defaults.dimseTimeout, zeroMeans=None),
            idleTimeout=self._positive(table, key, "idle-timeout", float, defaults.idleTimeout, zeroMeans=None),
            shutdownGrace=self._get(table, key, "shutdown-grace", float, defaults.shutdownGrace),
        )

    def entity(self, table: Dict, key: str) -> EntityConfig:
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
            ],
        )
        if "title" not in table:
            raise self.error(key, "an [[ae]] needs a title")
        title = self._aeTitle(self._key(key, "title"), self._get(table, key, "title", str, None))
        directory = self._path(self._get(table, key, "directory", str, DEFAULT_DIRECTORY))
        access = self._get(table, key, "access", str, "RW").upper()
        if access not in ("R", "W", "RW", "WR"):
            raise self.error(self._key(key, "access"), "expected R, W or RW, not %r" % (access,))
        syntaxes = self._transferSyntaxes(table, key)
        profile = None
        if "profile" in table:
            if "transfer-syntaxes" in table or table.get("promiscuous"):
                raise self.error(self._key(key, "profile"), "a profile replaces transfer-syntaxes and promiscuous")
            profile = self._profile(self._get(table, key, "profile", dict, None), self._key(key, "profile"))
        models = self._get(table, key, "models", list, ["patient-root", "study-root"])
        for name in models:
            if name not in MODELS:
                raise self.error(self._key(key, "models"), "unknown model %r (known: %s)" % (name, ", ".join(MODELS)))
        callingAETitles = self._get(table, key, "calling-ae-titles", list, None)
        if callingAETitles is not None:
            callingAETitles = tuple(self._aeTitle(self._key(key, "calling-ae-titles"), str(t)) for t in callingAETitles)
        hosts = self._get(table, key, "hosts", list, None)
        if hosts is not None:
            hosts = tuple(self._host(self._key(key, "hosts"), value) for value in hosts)
        quota = None
        if "quota" in table:
            quota = self._quota(self._get(table, key, "quota", dict, None), self._key(key, "quota"))
        storage = self._storage(
            self._get(table, key, "storage", dict, {}),
            self._get(table, key, "actions", dict, {}),
            key,
            directory,
        )
        return EntityConfig(
            title=title,
            storage=storage,
            transferSyntaxes=syntaxes,
            profile=profile,
            promiscuous=self._get(table, key, "promiscuous", bool, False),
            access="RW" if access == "WR" else access,
            queryRetrieve=self._get(table, key, "query-retrieve", bool, True),
            get=self._get(table, key, "get", bool, True),
            models=tuple(MODELS[name] for name in models),
            callingAETitles=callingAETitles,
            hosts=hosts,
            quota=quota,
        )

    def _transferSyntaxes(self, table, key) -> Tuple[str, ...]:
        value = table.get("transfer-syntaxes", "+x=")
        name = self._key(key, "transfer-syntaxes")
        if isinstance(value, str):
            if value not in ACCEPTOR_PREFERENCES:
                raise self.error(name, "expected one of storescp's %s or a list of UIDs, not %r" % (", ".join(ACCEPTOR_PREFERENCES), value))
            return ACCEPTOR_PREFERENCES[value]
        if not isinstance(value, list) or not value or not all(isinstance(uid, str) and re.match(r"^[0-9.]+$", uid) for uid in value):
            raise self.error(name, "expected a non-empty list of transfer syntax UIDs")
        return tuple(value)

    def _profile(self, table, key) -> Tuple[str, str]:
        self._check(table, key, ["file", "name"])
        if "file" not in table or "name" not in table:
            raise self.error(key, "a profile needs a file and a name")
        return (self._path(self._get(table, key, "file", str, None)), self._get(table, key, "name", str, None))

    def _host(self, key, value):
        if not isinstance(value, str):
            raise self.error(key, "expected host names or networks, not %r" % (value,))
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError:
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

    def _storage(self, table, actions, key, directory) -> StorageOptions:
        storageKey = self._key(key, "storage")
        actionsKey = self._key(key, "actions")
        self._check(table, storageKey, ["sort", "sort-prefix", "file-names", "extension", "fsync", "ignore"])
        self._check(
            actions,
            actionsKey,
            ["on-reception", "on-end-of-study", "end-of-study-timeout", "rename-on-end-of-study", "synchronous"],
        )
        sortMode = self._choice(table, storageKey, "sort", SORTS, SORT_STUDY_UID)
        rename = self._get(actions, actionsKey, "rename-on-end-of-study", bool, False)
        if rename and sortMode is None:
            raise self.error(self._key(actionsKey, "rename-on-end-of-study"), "needs the files sorted into study directories")
        return StorageOptions(
            outputDirectory=directory,
            ignore=self._get(table, storageKey, "ignore", bool, False),
            fileNames=self._choice(table, storageKey, "file-names", FILE_NAMES, naming.FileNameScheme.INSTANCE_UID),
            extension=self._get(table, storageKey, "extension", str, ""),
            sortMode=sortMode,
            sortPrefix=self._get(table, storageKey, "sort-prefix", str, ""),
            execOnReception=self._get(actions, actionsKey, "on-reception", str, None),
            execOnEndOfStudy=self._get(actions, actionsKey, "on-end-of-study", str, None),
            renameOnEndOfStudy=rename,
            endOfStudyTimeout=self._positive(actions, actionsKey, "end-of-study-timeout", float, None),
            execSync=self._get(actions, actionsKey, "synchronous", bool, False),
            sync=self._get(table, storageKey, "fsync", bool, False),
        )

    def peer(self, table: Dict, key: str) -> PeerConfig:
        self._check(table, key, ["title", "host", "port", "tls"])
        for required in ("title", "host", "port"):
            if required not in table:
                raise self.error(key, "a [[peer]] needs %s" % (required,))
        port = self._get(table, key, "port", int, None)
        if not 0 < port < 65536:
            raise self.error(self._key(key, "port"), "not a port number: %d" % (port,))
        tls = None
        if "tls" in table:
            tls = self._tls(self._get(table, key, "tls", dict, None), self._key(key, "tls"))
        return PeerConfig(
            self._aeTitle(self._key(key, "title"), self._get(table, key, "title", str, None)),
            self._get(table, key, "host", str, None),
            port,
            tls,
        )

    def _tls(self, table, key) -> TLSSettings:
        self._check(table, key, ["private-key", "certificate", "ca", "verify", "password"])
        trusted = self._get(table, key, "ca", list, [])
        verify = self._choice(table, key, "verify", {"require": "require", "optional": "optional", "none": "none"}, "require")
        privateKey = self._get(table, key, "private-key", str, None)
        certificate = self._get(table, key, "certificate", str, None)
        if (privateKey is None) != (certificate is None):
            raise self.error(key, "private-key and certificate go together")
        return TLSSettings(
            privateKey=self._path(privateKey) if privateKey else None,
            certificate=self._path(certificate) if certificate else None,
            trusted=[self._path(path) for path in trusted],
            verify=verify,
            password=self._get(table, key, "password", str, None),
        )


def _part(text: str) -> Tuple[str, Optional[int]]:
    match = re.match(r"^(.*)\[(\d+)\]$", text)
    return (match.group(1), int(match.group(2))) if match else (text, None)


def _matches(found, wanted) -> bool:
    """
    Whether the key path C{found} is C{wanted} or encloses it; a wanted
    part without an index matches any entry of a list of tables.
    """
    if len(found) > len(wanted):
        return False
    for (name, index), (wantedName, wantedIndex) in zip(found, wanted):
        if name != wantedName or (wantedIndex is not None and index != wantedIndex):
            return False
    return True


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list", dict: "a table"}
