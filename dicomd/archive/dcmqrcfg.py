"""
A reader for DCMTK's C{dcmqrscp.cfg}, as C{dcmqrdb/libsrc/dcmqrcnf.cc}
reads it (grammar: DCMTK's C{dcmqrcnf.txt}).

The file is read line by line.  A line is a mnemonic followed by values;
values are separated by white space, C{=} and C{,}.  A value that starts
with one of the quote characters C{"}, C{'}, C{(} or C{)} runs up to the
next one of those four characters, whichever it is, so C{(ACME, acme,
104)} is the single value C{ACME, acme, 104}, and C{"Acme CT"} is
C{Acme CT}.  A peer is a value with a comma in it, read again as
C{AETitle, HostName, Port}; any other value in a peer list is a symbolic
name of the HostTable, which must be defined on an earlier line.

Where DCMTK's reader is lax we are stricter, and say what is wrong with
the file name and line number: a number that does not parse, an access
other than C{R}, C{RW}, C{WR} and C{W}, a peer that is not a triple, a
quota that is not C{(maxStudies, size)} with a size such as C{1024mb}
(units C{b}, C{kb}, C{mb}, C{gb}, powers of 1024, any case).  Where it is
fragile we are lenient: a comment may be indented, blank lines may appear
inside tables, an entry may be indented, and a mnemonic may be followed
directly by C{=}.  A symbolic name or AE title defined twice keeps its
first definition, as in DCMTK.  Quotas are kept as configured; dcmqrscp
additionally caps them at 500 studies and 1 GiB per study, limits of its
index file that ours does not have.
"""

import re
from dataclasses import dataclass, field

_GAPS = " \t\r\n\f\v=,"
_QUOTES = "\"'()"
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

#: Mnemonics dcmqrscp accepts and ignores (from older versions, or for the
#: ctndisp display program).
_IGNORED = frozenset(
    [
        "ApplicationTitle",
        "ApplicationContext",
        "ImplementationClass",
        "ImplementationVersion",
        "NetworkType",
        "Display",
        "DisplayPort",
    ]
)

_TABLES = ("HostTable", "VendorTable", "AETable")

#: The access rights dcmqrscp knows, and whether they allow storing.
_ACCESS = {"R": False, "RW": True, "WR": True, "W": True}


class ConfigError(Exception):
    """
    A configuration file that cannot be used.

    @ivar filename: the file.
    @ivar lineNumber: the line, counting from 1, or C{None} for the file as
        a whole.
    @ivar message: what is wrong.
    """

    def __init__(self, filename, lineNumber, message):
        self.filename = filename
        self.lineNumber = lineNumber
        self.message = message
        where = filename if lineNumber is None else f"{filename}, line {lineNumber}"
        Exception.__init__(self, f"{where}: {message}")


class _Any:
    def __repr__(self):
        return "ANY"


#: The peers of an AE title that any peer may call (C{ANY}).
ANY = _Any()


@dataclass(frozen=True)
class Peer:
    """
    A remote application entity.

    @ivar aeTitle: its AE title.
    @ivar hostName: the host it runs on.
    @ivar port: the TCP port it listens on.
    """

    aeTitle: str
    hostName: str
    port: int


@dataclass(frozen=True)
class Quota:
    """
    The limits of a storage area.

    @ivar maxStudies: how many studies it keeps.
    @ivar maxBytesPerStudy: how many bytes one study may use.
    """

    maxStudies: int
    maxBytesPerStudy: int


@dataclass(frozen=True)
class StorageAE:
    """
    A line of the AETable: one of our AE titles and its storage area.

    @ivar aeTitle: the AE title.
    @ivar storageArea: the directory of its storage area.
    @ivar access: C{"R"}, C{"RW"}, C{"WR"} or C{"W"}.
    @ivar quota: its L{Quota}.
    @ivar peers: the tuple of L{Peer}s that may call it, or L{ANY}.
    """

    aeTitle: str
    storageArea: str
    access: str
    quota: Quota
    peers: object

    @property
    def writable(self):
        """
        Whether peers may store into it (dcmqrscp refuses storage
        presentation contexts otherwise).
        """
        return _ACCESS[self.access]


@dataclass(frozen=True)
class CharacterSetOptions:
    """
    The C{SpecificCharacterSet} line: how responses are converted.

    @ivar characterSet: the character set named, or C{""}.
    @ivar override: convert to it whatever the request used.
    @ivar fallback: convert to it when conversion to the request's fails.
    @ivar abort: stop at an unconvertible character.
    @ivar discard: drop unconvertible characters.
    @ivar transliterate: approximate unconvertible characters.
    """

    characterSet: str = ""
    override: bool = False
    fallback: bool = False
    abort: bool = False
    discard: bool = False
    transliterate: bool = False


@dataclass(frozen=True)
class QueryRetrieveConfig:
    """
    The contents of a C{dcmqrscp.cfg}, with DCMTK's defaults for what it
    does not say.

    @ivar networkTCPPort: C{NetworkTCPPort}.
    @ivar maxPDUSize: C{MaxPDUSize}.
    @ivar maxAssociations: C{MaxAssociations}.
    @ivar userName: C{UserName}, or C{""}.
    @ivar groupName: C{GroupName}, or C{""}.
    @ivar characterSetOptions: the L{CharacterSetOptions}, or C{None} when
        the file has no C{SpecificCharacterSet} line.
    @ivar hostTable: symbolic name to the tuple of L{Peer}s it stands for.
    @ivar vendorTable: vendor name to the tuple of its L{Peer}s.
    @ivar aeTable: AE title to its L{StorageAE}.
    """

    networkTCPPort: int = 104
    maxPDUSize: int = 16384
    maxAssociations: int = 16
    userName: str = ""
    groupName: str = ""
    characterSetOptions: object = None
    hostTable: dict = field(default_factory=dict)
    vendorTable: dict = field(default_factory=dict)
    aeTable: dict = field(default_factory=dict)

    def peersFor(self, aeTitle):
        """
        @param aeTitle: one of our AE titles.
        @return: the tuple of L{Peer}s allowed to call it, or L{ANY}.
        @raise KeyError: if the AETable has no such AE title.
        """
        return self.aeTable[aeTitle].peers

    def isPeerAllowed(self, calledAETitle, callingAETitle, hostName):
        """
        Whether a peer may associate with one of our AE titles: the called
        AE title is in the AETable, and its peers are C{ANY} or include the
        calling AE title on that host (host names compared ignoring case).
        """
        entry = self.aeTable.get(calledAETitle)
        if entry is None:
            return False
        if entry.peers is ANY:
            return True
        return any(
            peer.aeTitle == callingAETitle
            and peer.hostName.lower() == hostName.lower()
            for peer in entry.peers
        )

    def hostForAE(self, aeTitle):
        """
        Where a move destination listens: the first peer with that AE title
        among the peers of the AETable, then of the HostTable.

        @return: (host name, port), or C{None} if the AE title is unknown.
        """
        peerLists = [
            entry.peers for entry in self.aeTable.values() if entry.peers is not ANY
        ]
        peerLists.extend(self.hostTable.values())
        for peers in peerLists:
            for peer in peers:
                if peer.aeTitle == aeTitle:
                    return peer.hostName, peer.port
        return None

    def vendorForAE(self, aeTitle):
        """
        @return: the name of the first vendor with a peer of that AE title,
            or C{None}.
        """
        for vendor, peers in self.vendorTable.items():
            if any(peer.aeTitle == aeTitle for peer in peers):
                return vendor
        return None

    def vendorForHost(self, hostName):
        """
        @return: the name of the first vendor with a peer on that host
            (compared ignoring case), or C{None}.
        """
        for vendor, peers in self.vendorTable.items():
            if any(peer.hostName.lower() == hostName.lower() for peer in peers):
                return vendor
        return None

    def sameVendor(self, aeTitle, otherAETitle):
        """
        Whether one vendor lists peers with both AE titles (what dcmqrscp's
        C{--move-vendor} requires of a move destination).
        """
        return any(
            {aeTitle, otherAETitle} <= {peer.aeTitle for peer in peers}
            for peers in self.vendorTable.values()
        )


class _Line:
    """
    The values of one line, read one at a time as DCMTK's C{parsevalues}
    reads them.
    """

    def __init__(self, text):
        self._text = text
        self._position = 0

    def next(self):
        """
        @return: the next value, or C{None} at the end of the line.
        @raise ValueError: for a quote that is not closed.
        """
        text, position = self._text, self._position
        if position >= len(text):
            return None
        if text[position] in _QUOTES:
            end = position + 1
            while end < len(text) and text[end] not in _QUOTES:
                end += 1
            if end == len(text):
                raise ValueError(f"no closing quote in {text[position:]!r}")
            value, end = text[position + 1 : end], end + 1
        else:
            end = position
            while end < len(text) and text[end] not in _GAPS:
                end += 1
            value = text[position:end]
        while end < len(text) and text[end] in _GAPS:
            end += 1
        self._position = end
        return value

    def rest(self):
        """
        @return: the remaining values.
        """
        values = []
        value = self.next()
        while value is not None:
            values.append(value)
            value = self.next()
        return values


def _integer(text, what):
    if text is None or not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f"{what}: expected an integer, not {text!r}")
    return int(text)


def _peer(text):
    fields = _Line(text).rest()
    if len(fields) != 3:
        raise ValueError(f"peer ({text}) is not (AETitle, HostName, Port)")
    aeTitle, hostName, port = fields
    return Peer(aeTitle, hostName, _integer(port, f"port of peer ({text})"))


def _bytes(text):
    match = re.fullmatch(r"(\d+)([kmg]?)b", text, re.IGNORECASE)
    if match is None:
        raise ValueError(
            f"quota size {text!r} is not a number with a unit b, kb, mb or gb"
        )
    number, unit = match.groups()
    return int(number) * _UNITS[unit.lower()]


def _quota(text):
    if text is None:
        raise ValueError("missing quota (maxStudies, maxBytesPerStudy)")
    fields = _Line(text.strip()).rest()
    if len(fields) != 2:
        raise ValueError(f"quota ({text}) is not (maxStudies, maxBytesPerStudy)")
    quota = Quota(_integer(fields[0], "maxStudies"), _bytes(fields[1]))
    if quota.maxStudies <= 0 or quota.maxBytesPerStudy <= 0:
        raise ValueError(f"quota ({text}) must be positive")
    return quota


def _characterSetOptions(values):
    flags = {}
    characterSet = ""
    for value in values:
        if value in ("override", "fallback", "abort", "discard", "transliterate"):
            flags[value] = True
        else:
            characterSet = value
    return CharacterSetOptions(characterSet, **flags)


class _Reader:
    """
    Reads the lines of one file into the parts of a L{QueryRetrieveConfig}.
    """

    def __init__(self, filename):
        self.filename = filename
        self.settings = {}
        self.hostTable = {}
        self.vendorTable = {}
        self.aeTable = {}
        self._table = None
        self._tableLine = None

    def read(self, lines):
        for lineNumber, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                self._readLine(text, lineNumber)
            except ValueError as e:
                raise ConfigError(self.filename, lineNumber, str(e)) from None
        if self._table is not None:
            raise ConfigError(
                self.filename,
                self._tableLine,
                f'no "{self._table} END" for this "{self._table} BEGIN"',
            )
        return QueryRetrieveConfig(
            hostTable=self.hostTable,
            vendorTable=self.vendorTable,
            aeTable=self.aeTable,
            **self.settings,
        )

    def _readLine(self, text, lineNumber):
        mnemonic = re.match(r"[^\s=]*", text).group()
        line = _Line(text[len(mnemonic) :].lstrip(_GAPS))
        if mnemonic in _TABLES:
            self._tableStatus(mnemonic, line.next(), lineNumber)
        elif self._table == "HostTable":
            self._symbolicName(self.hostTable, _Line(text))
        elif self._table == "VendorTable":
            self._symbolicName(self.vendorTable, _Line(text))
        elif self._table == "AETable":
            self._storageAE(_Line(text))
        else:
            self._setting(mnemonic, line)

    def _tableStatus(self, table, status, lineNumber):
        if self._table is None and status == "BEGIN":
            self._table, self._tableLine = table, lineNumber
        elif self._table == table and status == "END":
            self._table = None
        elif self._table is not None:
            raise ValueError(
                f'"{table} {status}" inside the {self._table} of line '
                f"{self._tableLine}, which has no END"
            )
        elif status == "END":
            raise ValueError(f'"{table} END" without "{table} BEGIN"')
        else:
            raise ValueError(f"unknown {table} status {status!r}")

    def _setting(self, mnemonic, line):
        if mnemonic in _IGNORED:
            return
        if mnemonic in ("NetworkTCPPort", "MaxPDUSize", "MaxAssociations"):
            name = mnemonic[0].lower() + mnemonic[1:]
            self.settings[name] = _integer(line.next(), mnemonic)
        elif mnemonic in ("UserName", "GroupName"):
            value = line.next()
            if value is None:
                raise ValueError(f"{mnemonic}: missing value")
            self.settings[mnemonic[0].lower() + mnemonic[1:]] = value
        elif mnemonic == "SpecificCharacterSet":
            self.settings["characterSetOptions"] = _characterSetOptions(line.rest())
        else:
            raise ValueError(f"unknown mnemonic {mnemonic!r}")

    def _peers(self, values):
        """
        Resolve a list of peers and symbolic names.
        """
        peers = []
        for value in values:
            if "," in value:
                peers.append(_peer(value))
            elif value in self.hostTable:
                peers.extend(self.hostTable[value])
            else:
                raise ValueError(f"symbolic name {value!r} not defined")
        if not peers:
            raise ValueError("no peers")
        return tuple(peers)

    def _symbolicName(self, table, line):
        name = line.next()
        peers = self._peers(line.rest())
        table.setdefault(name, peers)

    def _storageAE(self, line):
        aeTitle, storageArea, access = line.next(), line.next(), line.next()
        if access is None:
            raise ValueError(
                "expected AETitle StorageArea Access (maxStudies, maxBytesPerStudy) Peers"
            )
        if access not in _ACCESS:
            raise ValueError(f"access {access!r} of {aeTitle} is not R, RW or W")
        quota = _quota(line.next())
        peers = line.rest()
        if not peers:
            raise ValueError(f"no peers for {aeTitle} (a peer list or ANY)")
        entry = StorageAE(
            aeTitle,
            storageArea,
            access,
            quota,
            ANY if peers[0] == "ANY" else self._peers(peers),
        )
        self.aeTable.setdefault(aeTitle, entry)


def parseConfig(text, filename="<string>"):
    """
    Read the text of a C{dcmqrscp.cfg}.

    @param text: the file's contents.
    @param filename: the name errors give.
    @return: a L{QueryRetrieveConfig}.
    @raise ConfigError: when the text is not a valid configuration.
    """
    return _Reader(filename).read(text.splitlines())


def readConfig(path):
    """
    Read a C{dcmqrscp.cfg} file.

    @param path: the file.
    @return: a L{QueryRetrieveConfig}.
    @raise ConfigError: when the file cannot be read or is not valid.
    """
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, None, e.strerror or str(e)) from None
    return parseConfig(text, path)
