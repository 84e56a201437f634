"""
The archive in the service tree, and the application entities that serve
it: storage into an indexed area, and query/retrieve (PS3.4 Annex C) from
it, as dcmqrscp offers per AE title.

L{Archive} owns the index database: it opens it when the daemon starts
(after twistd has dropped privileges) and closes it last.  Storage areas
are named in it by their directory, so AEs over one directory share its
contents.
L{queryRetrieveEntity} assembles one AE: its presentation contexts and the
services for C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET.

L{ArchiveEntity} applies dcmqrscp's association rules on top of
presentation context negotiation (DCMTK C{dcmqrdb/libsrc/dcmqrsrv.cc},
C{negotiateAssociation} and C{waitForAssociation}):

  - a peer that the AE's peer list does not name (AE title and host) is
    rejected before negotiation: permanent, service user, "called AE title
    not recognized", the reason dcmqrscp gives for an unknown calling AE,
    host or called AE alike;
  - an association that negotiates DCMTK's private shutdown SOP class
    (C{--allow-shutdown}) is rejected (permanent, service user, no reason)
    and the server stops;
  - accepted contexts are then refused (result 1, user rejection) where
    the AE's rules say so: storage contexts of a read-only AE (C{R}),
    except those where the requestor takes only the SCP role, which carry
    the sub-operations of a C-GET; query/retrieve contexts of a write-only
    AE (C{W}; dcmqrscp 3.6.7 does not enforce this); a C-MOVE context
    without an accepted C-FIND context of its model (C{--require-find};
    dcmqrscp checks C-MOVE only, not C-GET, whatever its manual says);
    storage contexts while another association of the same AE holds some
    (C{--no-parallel-store}).

L{PeerHosts} decides which configured host name a peer's address is, for
the peer lists and C{--move-host}; L{moveRestriction} is C{--move-aetitle},
C{--move-host} and C{--move-vendor}; L{configuredPeers} and
L{destinationTable} resolve C-MOVE destinations.
"""

import os
import socket
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

from twisted.application import service
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from dicomd.archive.area import adoptTitleArea
from dicomd.archive.charsets import ConvertingIndex, ResponseCharacterSet
from dicomd.archive.dcmqrcfg import ANY
from dicomd.archive.index import RUN_CRASHED, AsyncArchiveIndex, SQLiteArchiveIndex
from dicomd.archive.matching import MODELS
from dicomd.dimse.commands import CEchoRQ, CFindRQ, CGetRQ, CMoveRQ, CStoreRQ
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
from dicomd.endpoints import clientEndpoint
from dicomd.net.acceptor import ApplicationEntity
from dicomd.net.requestor import connect
from dicomd.services.find import FindSCP
from dicomd.services.retrieve import Destination, GetSCP, MoveSCP
from dicomd.services.verification import VerificationSCP
from dicomd.storage.sopclasses import STORAGE_SOP_CLASSES
from dicomd.ul.negotiation import (
    CALLED_AE_TITLE_NOT_RECOGNIZED,
    MAXIMUM_PRESENTATION_CONTEXTS,
    UNCOMPRESSED,
    AcceptorPolicy,
)
from dicomd.ul.pdu import (
    PC_USER_REJECTION,
    REJECT_REASON_NO_REASON,
    REJECT_RESULT_PERMANENT,
    REJECT_SOURCE_SERVICE_USER,
    AAssociateRJ,
    PresentationContextAC,
)

#: The index database's file name inside the default data directory; the
#: leading dot keeps it out of reindexing and file listings.
INDEX_FILE = ".dicomd-index.sqlite"

#: DCMTK's private SOP class whose negotiation stops dcmqrscp
#: (C{--allow-shutdown}); C{UID_PrivateShutdownSOPClass} in DCMTK.
PRIVATE_SHUTDOWN_SOP_CLASS = "1.2.276.0.7230010.3.4.1915765545.18030.917282194.0"

#: What dcmqrscp answers the association that shuts it down.
SHUTDOWN_REJECTION = AAssociateRJ(REJECT_RESULT_PERMANENT, REJECT_SOURCE_SERVICE_USER, REJECT_REASON_NO_REASON)

_log = Logger(namespace="dicomd.archive")


class Archive(service.Service):
    """
    The archive index: an L{SQLiteArchiveIndex} for worker threads and an
    L{AsyncArchiveIndex} over it for the reactor thread.

    Queries run in a small thread pool of their own (L{QUERY_THREADS}
    threads), so that a C-FIND is answered in milliseconds even while many
    senders keep the reactor's pool busy with storage work.

    @ivar areas: C{(AE title, directory)} of each AE configured at start,
        in configuration order: on opening, the rows an index written
        before areas were named by directory keeps under each AE title
        become its directory's (L{adoptTitleArea}).
    """

    #: Threads of the query pool: SQLite in WAL mode reads concurrently.
    QUERY_THREADS = 2

    def __init__(self, path: str, *, areas: Sequence[Tuple[str, str]] = (), reactor=None, threadpool=None):
        """
        @param threadpool: the pool everything runs in, queries too (tests
            give one that runs at once); by default the reactor's, and a
            query pool of the archive's own.
        """
        self.path = path
        self.areas = areas
        self.index = SQLiteArchiveIndex(path)
        self._queryPool = None if threadpool is not None else ThreadPool(0, self.QUERY_THREADS, "dicomd-queries")
        self.asyncIndex = AsyncArchiveIndex(self.index, reactor=reactor, threadpool=threadpool, queryThreadpool=self._queryPool)

    def startService(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self.index.open()
        if self.index.beginRun() is RUN_CRASHED:
            _log.warn(
                "The index {path} was not closed cleanly (the daemon was killed or crashed): "
                "each storage area is searched for files that were stored but not indexed",
                path=self.path,
            )
        for title, directory in self.areas:
            adoptTitleArea(self.index, title, directory)
        if self._queryPool is not None:
            self._queryPool.start()
        service.Service.startService(self)

    def stopService(self) -> None:
        """
        Close the index, recording a clean end; call it once nothing writes
        to the index any more.
        """
        service.Service.stopService(self)
        if self._queryPool is not None:
            self._queryPool.stop()
        self.index.endRun()
        self.index.close()


# -- peers, their hosts, and move destinations --------------------------------------


class PeerHosts:
    """
    Which configured host name a peer's address stands for.

    dcmqrscp compares the host name of a peer (looked up from its address,
    unless C{--disable-host-lookup}) with the host names of its
    configuration.  We do the reverse, which needs no PTR records: the
    configuration's host names are resolved once, and a peer is on a host
    when its address is one of that name's addresses, or is the name
    itself written as an address.
    """

    def __init__(self, addresses: Optional[Mapping[str, Iterable[str]]] = None):
        """
        @param addresses: host name -> its addresses; names are compared
            ignoring case.
        """
        self._addresses: Dict[str, FrozenSet[str]] = {
            name.lower(): frozenset(found) for name, found in (addresses or {}).items()
        }

    @classmethod
    def resolve(cls, names: Iterable[str], lookup=socket.getaddrinfo) -> Tuple["PeerHosts", Tuple[str, ...]]:
        """
        Look the host names up (blocking: call it from a thread).  A name
        that does not resolve keeps no address, and matches only itself
        written as an address.

        @param lookup: C{getaddrinfo}'s signature.
        @return: the L{PeerHosts}, and the names that did not resolve.
        """
        addresses, unresolved = {}, []
        for name in sorted(set(names)):
            try:
                addresses[name] = {info[4][0] for info in lookup(name, None)}
            except (OSError, UnicodeError):
                unresolved.append(name)
        return cls(addresses), tuple(unresolved)

    def matches(self, hostName: str, address: str) -> bool:
        """
        Whether the peer at C{address} is on C{hostName}.
        """
        return hostName.lower() == address.lower() or address in self._addresses.get(hostName.lower(), ())


def hostNames(config) -> List[str]:
    """
    Every host name a L{dicomd.archive.dcmqrcfg.QueryRetrieveConfig} names.
    """
    peerLists = list(config.hostTable.values()) + list(config.vendorTable.values())
    peerLists.extend(entry.peers for entry in config.aeTable.values() if entry.peers is not ANY)
    return sorted({peer.hostName for peers in peerLists for peer in peers})


def _host(address) -> str:
    return str(getattr(address, "host", address))


def peerRule(config, hosts: PeerHosts, aeTitle: str) -> Optional[Callable[[str, object], bool]]:
    """
    The peers that may call one of our AE titles, as its AETable line
    says: C{None} for C{ANY}, else a predicate on (calling AE title, peer
    address).
    """
    peers = config.aeTable[aeTitle].peers
    if peers is ANY:
        return None

    def allowed(callingAETitle: str, address) -> bool:
        host = _host(address)
        return any(peer.aeTitle == callingAETitle and hosts.matches(peer.hostName, host) for peer in peers)

    return allowed


def moveRestriction(config, hosts: PeerHosts, *, sameAETitle: bool = False, sameHost: bool = False, sameVendor: bool = False):
    """
    dcmqrscp's restrictions on C-MOVE destinations (DCMTK C{dcmqrcbm.cc},
    C{mapMoveDestination}), as the C{allowed} hook of L{MoveSCP}: a
    refused destination is answered 0xA801, like an unknown one.

    @param sameAETitle: C{--move-aetitle}: only to the requesting AE title.
    @param sameHost: C{--move-host}: only to the requesting host.
    @param sameVendor: C{--move-vendor}: only to an AE title of the
        requestor's vendor (the VendorTable).
    @return: the hook, or C{None} when nothing is restricted.
    """
    if not (sameAETitle or sameHost or sameVendor):
        return None

    def refusal(association, destination: Destination) -> Optional[str]:
        calling = association.callingAETitle
        if sameAETitle and destination.aeTitle != calling:
            return "move destination %s is not the requesting AE title %s" % (destination.aeTitle, calling)
        requestingHost = _host(association.peerAddress)
        if sameHost and not hosts.matches(destination.host, requestingHost):
            return "move destination %s is on %s, not on the requesting host %s" % (
                destination.aeTitle,
                destination.host,
                requestingHost,
            )
        if sameVendor and not config.sameVendor(calling, destination.aeTitle):
            return "move destination %s is not of the vendor of %s" % (destination.aeTitle, calling)
        return None

    def allowed(association, destination: Destination) -> Optional[str]:
        why = refusal(association, destination)
        if why is not None:
            _log.info("C-MOVE from {calling} refused: {why}", calling=association.callingAETitle, why=why)
        return why

    return allowed


@dataclass(frozen=True)
class Peer:
    """
    A known remote AE: where C-MOVE sends to it.

    @ivar tls: the L{dicomd.tls.TLSSettings} to reach it with, or C{None}
        for plain TCP.
    """

    aeTitle: str
    host: str
    port: int
    tls: object = None


def configuredPeers(config, tls=None) -> List[Peer]:
    """
    The move destinations of a configuration: each AE title of its peers
    where dcmqrscp finds it (C{peerForAETitle}), in the AETable's peer
    lists first, then in the HostTable.

    @param tls: the L{dicomd.tls.TLSSettings} to reach them with, or
        C{None}.
    """
    peerLists = [entry.peers for entry in config.aeTable.values() if entry.peers is not ANY]
    peerLists.extend(config.hostTable.values())
    found: Dict[str, Peer] = {}
    for peers in peerLists:
        for peer in peers:
            found.setdefault(peer.aeTitle, Peer(peer.aeTitle, peer.hostName, peer.port, tls))
    return list(found.values())


def proposing(transferSyntaxes: Sequence[str]) -> Callable[[list], list]:
    """
    The presentation contexts of a C-MOVE sub-association, from those that
    carry its instances as they are stored (one per SOP class and transfer
    syntax, L{dicomd.services.retrieve.storedContexts}): each of those,
    so that the destination can take an instance in the syntax it is
    stored in, and for each SOP class a context with C{transferSyntaxes}
    (dcmqrscp's C{-x=}, C{-xe}, C{-xi}, C{-xd}...) for the instances it
    takes only converted.

    When that makes more contexts than one association carries, the stored
    syntaxes that C{transferSyntaxes} list lose their own contexts: their
    instances still go, in the syntax the destination chose there.
    """
    converted = list(transferSyntaxes)

    def propose(stored):
        contexts = _storedAndConverted(stored, converted, keepListed=True)
        if len(contexts) > MAXIMUM_PRESENTATION_CONTEXTS:
            contexts = _storedAndConverted(stored, converted, keepListed=False)
        return contexts

    return propose


def _storedAndConverted(stored, converted: List[str], keepListed: bool) -> list:
    """
    For each SOP class of the C{stored} contexts, in order: a context for
    each syntax its instances are stored in, then one with the C{converted}
    syntaxes.  A stored syntax among C{converted} gets its own context only
    if C{keepListed}, and none that would repeat the converted one.
    """
    byClass: Dict[str, List[str]] = {}
    for abstractSyntax, syntaxes in stored:
        byClass.setdefault(abstractSyntax, []).extend(syntaxes)
    contexts = []
    for abstractSyntax, storedSyntaxes in byClass.items():
        for syntax in storedSyntaxes:
            if [syntax] != converted and (keepListed or syntax not in converted):
                contexts.append((abstractSyntax, [syntax]))
        contexts.append((abstractSyntax, converted))
    return contexts


#: Seconds a C-MOVE sub-association waits for each C-STORE-RSP when no
#: DIMSE timeout is configured (C{dimse-timeout = 0}, no C{-td}): a
#: destination that stops answering fails the rest of the move after this,
#: instead of holding it, and the association of its requestor, for good.
MOVE_DIMSE_TIMEOUT = 60.0


def destinationTable(
    peers: Sequence[Peer],
    callingAETitle: str,
    *,
    reactor=None,
    propose: Optional[Callable[[list], list]] = None,
    timeout: Optional[float] = None,
    acseTimeout: Optional[float] = 30.0,
    dimseTimeout: Optional[float] = None,
) -> Callable[[str], Optional[Destination]]:
    """
    The C-MOVE destinations: an AE title's L{Destination}, which opens an
    association from C{callingAETitle} to it, or C{None}.  When C{peers}
    names an AE title twice, the last one counts.

    @param propose: turns the contexts that carry the instances as they
        are stored into those proposed to a destination (see
        L{proposing}); by default, the stored ones and, for each SOP class,
        one with the uncompressed syntaxes to convert to.
    @param timeout: seconds to wait for the TCP connection (dcmqrscp's
        C{--timeout}); Twisted's default when C{None}.
    @param acseTimeout: seconds to wait for the destination's A-ASSOCIATE
        answer.
    @param dimseTimeout: seconds to wait for each C-STORE-RSP; C{None} or
        C{0} (none configured) for L{MOVE_DIMSE_TIMEOUT}: a sub-association
        never waits for ever.
    """
    if reactor is None:
        from twisted.internet import reactor
    if propose is None:
        propose = proposing(UNCOMPRESSED)
    byTitle = {peer.aeTitle: peer for peer in peers}

    def destination(aeTitle: str) -> Optional[Destination]:
        peer = byTitle.get(aeTitle)
        if peer is None:
            return None

        def connectTo(stored):
            endpoint = clientEndpoint(reactor, peer.host, peer.port, peer.tls, **({"timeout": timeout} if timeout else {}))
            return connect(
                endpoint,
                calledAETitle=peer.aeTitle,
                callingAETitle=callingAETitle,
                presentationContexts=propose(stored),
                reactor=reactor,
                acseTimeout=acseTimeout,
                dimseTimeout=dimseTimeout or MOVE_DIMSE_TIMEOUT,
            )

        return Destination(peer.aeTitle, peer.host, connectTo)

    return destination


# -- what one AE offers ------------------------------------------------------------------


@dataclass
class QueryRetrieveOptions:
    """
    What one AE of the archive offers, as dcmqrscp's options and
    configuration describe it.

    @ivar models: the information models offered (C{-QP}, C{-QS}, C{-QO}
        remove some).
    @ivar readable: answer C-FIND, C-MOVE and C-GET (access C{R}).
    @ivar writable: accept storage (access C{W}).
    @ivar get: offer C-GET (C{--disable-get} turns it off).
    @ivar checkFind: refuse C-FIND identifiers that break the rules
        (C{--check-find}).
    @ivar checkMove: the same for C-MOVE and C-GET (C{--check-move}).
    @ivar destinations: for C-MOVE, AE title -> L{Destination} or C{None}.
    @ivar moveAllowed: for C-MOVE, (association, destination) -> refusal
        reason or C{None}.
    @ivar transferSyntaxes: the syntaxes accepted, in preference order.
    @ivar promiscuous: also accept storage of unknown SOP classes.
    @ivar storagePolicy: the storage contexts accepted, from an
        association negotiation profile (C{-xf}), or C{None} for every
        storage SOP class with C{transferSyntaxes}.
    @ivar requireFind: refuse a C-MOVE context without a C-FIND context of
        its model (C{--require-find}).
    @ivar parallelStore: accept storage contexts while another association
        of this AE holds some (C{--no-parallel-store} turns it off).
    @ivar characterSets: how C-FIND responses are converted, or C{None}
        to leave them as the index makes them.
    """

    models: Sequence = MODELS
    readable: bool = True
    writable: bool = True
    get: bool = True
    checkFind: bool = False
    checkMove: bool = False
    destinations: Callable = field(default=lambda aeTitle: None)
    moveAllowed: Optional[Callable] = None
    transferSyntaxes: Sequence[str] = UNCOMPRESSED
    promiscuous: bool = False
    storagePolicy: Optional[AcceptorPolicy] = None
    requireFind: bool = False
    parallelStore: bool = True
    characterSets: Optional[ResponseCharacterSet] = None


def queryRetrievePolicy(options: QueryRetrieveOptions, *, shutdown: bool = False) -> AcceptorPolicy:
    """
    The presentation contexts an archive AE accepts, before its access
    rules (L{ArchiveEntity}): Verification, storage, and the FIND, MOVE
    (and GET) classes of its models, with the SCP role for storage granted
    to C-GET requestors; with C{shutdown}, DCMTK's private shutdown class.
    """
    syntaxes = tuple(options.transferSyntaxes)
    profile = options.storagePolicy
    if profile is not None:
        accepted = {uid: tuple(preferences) for uid, preferences in profile.transferSyntaxes.items()}
    else:
        accepted = {uid: syntaxes for uid in STORAGE_SOP_CLASSES}
    accepted[VERIFICATION_SOP_CLASS] = syntaxes
    for model in options.models:
        find, move, get = model.sopClassUIDs
        accepted[find] = syntaxes
        accepted[move] = syntaxes
        if options.get:
            accepted[get] = syntaxes
    if shutdown:
        accepted[PRIVATE_SHUTDOWN_SOP_CLASS] = syntaxes
    scpRoles = frozenset()
    if options.get:
        scpRoles = profile.scpRoleSOPClasses if profile is not None else frozenset(STORAGE_SOP_CLASSES)
    promiscuous = syntaxes if options.writable and options.promiscuous and profile is None else None
    return AcceptorPolicy(accepted, defaultTransferSyntaxes=promiscuous, scpRoleSOPClasses=scpRoles)


_QUERY_RETRIEVE_SOP_CLASSES = frozenset(uid for model in MODELS for uid in model.sopClassUIDs)
_NOT_STORAGE = _QUERY_RETRIEVE_SOP_CLASSES | {VERIFICATION_SOP_CLASS, PRIVATE_SHUTDOWN_SOP_CLASS}


def _isGetStorage(context) -> bool:
    """
    A storage context on which the requestor only takes the SCP role: the
    C-STORE sub-operations of a C-GET come back on it.
    """
    return context.scpRole and not context.scuRole


class ArchiveEntity(ApplicationEntity):
    """
    An AE of the archive: an L{ApplicationEntity} with dcmqrscp's
    association rules (see the module docstring).

    @ivar options: the L{QueryRetrieveOptions} whose access rules apply.
    @ivar peers: C{(callingAETitle, peerAddress) -> bool} for the peers
        allowed to associate, or C{None} for any.
    @ivar shutdown: called when an association negotiates the private
        shutdown SOP class, or C{None} when that class is not accepted.
    @ivar storing: the established associations holding storage contexts
        (for C{--no-parallel-store}).
    """

    log = Logger()

    def __init__(self, title, policy, services, *, options: QueryRetrieveOptions, peers=None, shutdown=None, **kwargs):
        ApplicationEntity.__init__(self, title, policy, services, **kwargs)
        self.options = options
        self.peers = peers
        self.shutdown = shutdown
        self.storing = set()

    def admit(self, request, peerAddress) -> Optional[AAssociateRJ]:
        # dcmqrscp's --refuse comes first: negotiate() rejects everyone.
        if self.refuseAll or self.peers is None or self.peers(request.callingAETitle, peerAddress):
            return None
        self.log.info(
            "Peer {host}:{calling} is not permitted to access {called} (see the configuration file)",
            host=_host(peerAddress),
            calling=request.callingAETitle,
            called=request.calledAETitle,
        )
        return CALLED_AE_TITLE_NOT_RECOGNIZED

    def negotiate(self, request):
        answer, contexts = ApplicationEntity.negotiate(self, request)
        if contexts is None:
            return answer, contexts
        if self.shutdown is not None and any(c.abstractSyntax == PRIVATE_SHUTDOWN_SOP_CLASS for c in contexts.values()):
            self.log.info("Shutting down: {calling} negotiated the private shutdown SOP class", calling=request.callingAETitle)
            self.shutdown()
            return SHUTDOWN_REJECTION, None
        refused = self.refusedContexts(contexts)
        if not refused:
            return answer, contexts
        answer = replace(
            answer,
            presentationContexts=[
                PresentationContextAC(item.contextID, PC_USER_REJECTION) if item.contextID in refused else item
                for item in answer.presentationContexts
            ],
        )
        return answer, {contextID: context for contextID, context in contexts.items() if contextID not in refused}

    def refusedContexts(self, contexts) -> FrozenSet[int]:
        """
        The IDs of the accepted contexts this AE's rules refuse.

        @param contexts: context ID -> L{NegotiatedContext}, as accepted.
        """
        options = self.options
        accepted = {context.abstractSyntax for context in contexts.values()}
        refuseStorage = not options.writable or (not options.parallelStore and bool(self.storing))
        refused = set()
        for contextID, context in contexts.items():
            syntax = context.abstractSyntax
            if syntax not in _NOT_STORAGE:
                if refuseStorage and not _isGetStorage(context):
                    refused.add(contextID)
            elif syntax in _QUERY_RETRIEVE_SOP_CLASSES and not options.readable:
                refused.add(contextID)
            elif options.requireFind and any(
                syntax == model.sopClassUIDs[1] and model.sopClassUIDs[0] not in accepted for model in options.models
            ):
                refused.add(contextID)
        return frozenset(refused)

    def associationEstablished(self, association) -> None:
        if any(context.abstractSyntax not in _NOT_STORAGE and context.scuRole for context in association.contexts.values()):
            self.storing.add(association)
            association.whenClosed().addBoth(lambda _: self.storing.discard(association))


def queryRetrieveEntity(
    title: str,
    archive: Archive,
    area: str,
    directory: str,
    options: QueryRetrieveOptions,
    *,
    storage=None,
    maximumLength: int = 16384,
    callingAETitles=None,
    peers=None,
    shutdown=None,
    requireImplementationClassUID: bool = False,
    refuseAll: bool = False,
    reactor=None,
) -> ArchiveEntity:
    """
    One AE of the archive.

    @param area: the storage area's name in the index, the
        L{areaKey<dicomd.archive.index.areaKey>} of C{directory}.
    @param directory: the storage area's directory.
    @param storage: the L{dicomd.storage.scp.StorageSCP} storing into the
        area, when it is writable (shared by the AEs storing into it).
    @param peers: see L{ArchiveEntity.peers}.
    @param shutdown: see L{ArchiveEntity.shutdown}.
    """
    services = {CEchoRQ.commandField: VerificationSCP()}
    if options.writable and storage is not None:
        services[CStoreRQ.commandField] = storage
    if options.readable:
        index = archive.asyncIndex
        findIndex = index if options.characterSets is None else ConvertingIndex(index, options.characterSets)
        services[CFindRQ.commandField] = FindSCP(findIndex, area, models=options.models, checkIdentifier=options.checkFind)
        services[CMoveRQ.commandField] = MoveSCP(
            index,
            area,
            directory,
            models=options.models,
            checkIdentifier=options.checkMove,
            destinations=options.destinations,
            allowed=options.moveAllowed,
            reactor=reactor,
        )
        if options.get:
            services[CGetRQ.commandField] = GetSCP(
                index, area, directory, models=options.models, checkIdentifier=options.checkMove, reactor=reactor
            )
    return ArchiveEntity(
        title,
        queryRetrievePolicy(options, shutdown=shutdown is not None),
        services,
        options=options,
        peers=peers,
        shutdown=shutdown,
        callingAETitles=callingAETitles,
        requireImplementationClassUID=requireImplementationClassUID,
        refuseAll=refuseAll,
        maximumLength=maximumLength,
    )
