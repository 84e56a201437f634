"""
The archive in the service tree, and the application entities that serve
it: storage into an indexed area, and query/retrieve (PS3.4 Annex C) from
it, as dcmqrscp offers per AE title.

L{Archive} owns the index database: it opens it when the daemon starts
(after twistd has dropped privileges) and closes it last.
L{queryRetrieveEntity} assembles one AE: its presentation contexts and the
services for C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET.
"""

import os
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from twisted.application import service
from twisted.internet import endpoints

from dicomd.archive.index import AsyncArchiveIndex, SQLiteArchiveIndex
from dicomd.archive.matching import MODELS
from dicomd.dimse.commands import CEchoRQ, CFindRQ, CGetRQ, CMoveRQ, CStoreRQ
from dicomd.net.acceptor import ApplicationEntity
from dicomd.net.association import VERIFICATION_SOP_CLASS
from dicomd.services.find import FindSCP
from dicomd.net.requestor import connect
from dicomd.services.retrieve import Destination, GetSCP, MoveSCP
from dicomd.services.verification import VerificationSCP
from dicomd.storage.sopclasses import STORAGE_SOP_CLASSES
from dicomd.ul.negotiation import UNCOMPRESSED, AcceptorPolicy

#: The index database's file name inside the default data directory; the
#: leading dot keeps it out of reindexing and file listings.
INDEX_FILE = ".dicomd-index.sqlite"


class Archive(service.Service):
    """
    The archive index: an L{SQLiteArchiveIndex} for worker threads and an
    L{AsyncArchiveIndex} over it for the reactor thread.
    """

    def __init__(self, path: str, *, reactor=None, threadpool=None):
        self.path = path
        self.index = SQLiteArchiveIndex(path)
        self.asyncIndex = AsyncArchiveIndex(self.index, reactor=reactor, threadpool=threadpool)

    def startService(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self.index.open()
        service.Service.startService(self)

    def stopService(self) -> None:
        service.Service.stopService(self)
        self.index.close()


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
    @ivar destinations: for C-MOVE, AE title -> L{Destination} or C{None}.
    @ivar moveAllowed: for C-MOVE, (association, destination) -> refusal
        reason or C{None}.
    @ivar transferSyntaxes: the syntaxes accepted, in preference order.
    @ivar promiscuous: also accept storage of unknown SOP classes.
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


def queryRetrievePolicy(options: QueryRetrieveOptions) -> AcceptorPolicy:
    """
    The presentation contexts an archive AE accepts: Verification; storage
    when writable; the FIND, MOVE (and GET) classes of its models when
    readable, with the SCP role for storage granted to C-GET requestors.
    """
    syntaxes = tuple(options.transferSyntaxes)
    accepted = {VERIFICATION_SOP_CLASS: syntaxes}
    if options.writable:
        accepted.update((uid, syntaxes) for uid in STORAGE_SOP_CLASSES)
    scpRoles = frozenset()
    if options.readable:
        for model in options.models:
            find, move, get = model.sopClassUIDs
            accepted[find] = syntaxes
            accepted[move] = syntaxes
            if options.get:
                accepted[get] = syntaxes
        if options.get:
            scpRoles = frozenset(STORAGE_SOP_CLASSES)
    promiscuous = syntaxes if options.writable and options.promiscuous else None
    return AcceptorPolicy(accepted, defaultTransferSyntaxes=promiscuous, scpRoleSOPClasses=scpRoles)


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


def destinationTable(peers: Sequence[Peer], callingAETitle: str, *, reactor=None) -> Callable[[str], Optional[Destination]]:
    """
    The C-MOVE destinations: an AE title's L{Destination}, which opens an
    association from C{callingAETitle} to it, or C{None}.
    """
    if reactor is None:
        from twisted.internet import reactor
    byTitle = {peer.aeTitle: peer for peer in peers}

    def destination(aeTitle: str) -> Optional[Destination]:
        peer = byTitle.get(aeTitle)
        if peer is None:
            return None

        def connectTo(proposals):
            endpoint = endpoints.HostnameEndpoint(reactor, peer.host, peer.port)
            if peer.tls is not None:
                endpoint = endpoints.wrapClientTLS(peer.tls.certificateOptions(isServer=False), endpoint)
            return connect(
                endpoint,
                calledAETitle=peer.aeTitle,
                callingAETitle=callingAETitle,
                presentationContexts=proposals,
                reactor=reactor,
            )

        return Destination(peer.aeTitle, peer.host, connectTo)

    return destination


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
    reactor=None,
) -> ApplicationEntity:
    """
    One AE of the archive.

    @param area: the storage area's name in the index.
    @param directory: the storage area's directory.
    @param storage: the L{dicomd.storage.scp.StorageSCP} storing into the
        area, when it is writable.
    """
    services = {CEchoRQ.commandField: VerificationSCP()}
    if options.writable and storage is not None:
        services[CStoreRQ.commandField] = storage
    if options.readable:
        index = archive.asyncIndex
        services[CFindRQ.commandField] = FindSCP(index, area, models=options.models, checkIdentifier=options.checkFind)
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
    return ApplicationEntity(
        title,
        queryRetrievePolicy(options),
        services,
        callingAETitles=callingAETitles,
        maximumLength=maximumLength,
    )
