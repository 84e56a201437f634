"""
The assembly of one query/retrieve AE of the archive, as dcmqrscp offers
one per AE title: Verification (PS3.4 Annex A), storage into an indexed
area (Annex B) and query/retrieve from it (Annex C), with dcmqrscp's
association rules.

L{queryRetrieveEntity} assembles one AE: its presentation contexts
(L{queryRetrievePolicy}) and the services for C-ECHO, C-STORE, C-FIND,
C-MOVE and C-GET, as L{QueryRetrieveOptions} describe them.

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

Above L{dicomd.services}, L{dicomd.net} and L{dicomd.archive}; its peers
and C-MOVE destinations are L{dicomd.peers}'.
"""

from dataclasses import dataclass, field, replace
from typing import Callable, FrozenSet, Optional, Sequence

from twisted.logger import Logger

from dicomd.archive.charsets import ConvertingIndex, ResponseCharacterSet
from dicomd.archive.matching import MODELS
from dicomd.archive.service import Archive
from dicomd.dimse.commands import CEchoRQ, CFindRQ, CGetRQ, CMoveRQ, CStoreRQ
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
from dicomd.net.acceptor import ApplicationEntity
from dicomd.peers import peerHost
from dicomd.services.find import FindSCP
from dicomd.services.retrieve import GetSCP, MoveSCP
from dicomd.services.verification import VerificationSCP
from dicomd.storage.sopclasses import STORAGE_SOP_CLASSES
from dicomd.ul.negotiation import CALLED_AE_TITLE_NOT_RECOGNIZED, UNCOMPRESSED, AcceptorPolicy
from dicomd.ul.pdu import (
    PC_USER_REJECTION,
    REJECT_REASON_NO_REASON,
    REJECT_RESULT_PERMANENT,
    REJECT_SOURCE_SERVICE_USER,
    AAssociateRJ,
    PresentationContextAC,
)

#: DCMTK's private SOP class whose negotiation stops dcmqrscp
#: (C{--allow-shutdown}); C{UID_PrivateShutdownSOPClass} in DCMTK.
PRIVATE_SHUTDOWN_SOP_CLASS = "1.2.276.0.7230010.3.4.1915765545.18030.917282194.0"

#: What dcmqrscp answers the association that shuts it down.
SHUTDOWN_REJECTION = AAssociateRJ(REJECT_RESULT_PERMANENT, REJECT_SOURCE_SERVICE_USER, REJECT_REASON_NO_REASON)


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
    An AE with no models and a profile is a storage SCP alone, as
    storescp's C{-xf}: its profile is all it accepts.
    """
    syntaxes = tuple(options.transferSyntaxes)
    profile = options.storagePolicy
    if profile is not None and not options.models and not shutdown:
        return profile
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
            host=peerHost(peerAddress),
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
            elif syntax in _QUERY_RETRIEVE_SOP_CLASSES and not options.readable and options.models:
                # A storage SCP alone (no models, storescp) takes them
                # only promiscuously, as any other class it does not know.
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
    maximumAsynchronousOperations: int = 1,
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
    @param maximumAsynchronousOperations: the Asynchronous Operations
        Window granted at most (L{ApplicationEntity}).
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
        maximumAsynchronousOperations=maximumAsynchronousOperations,
    )

