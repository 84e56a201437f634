"""
The daemon's service tree, built from a L{dicomd.config.DaemonConfig}.

    DicomdService
      |-- Archive                  the index database (none for storescp)
      |-- StorageService per area  storage and actions of a directory writable AEs store into
      |-- EntityService per AE     the AE itself
      |-- Forwarding               the forwarding queue's destinations (with the index)
      |-- TakeOver                 the heartbeat, and the runs of dead nodes (PostgreSQL)
      |-- listening services       one per endpoint string or port, one factory
      `-- status page              optional

Every server front door runs it: C{twistd dicomd} (L{dicomd.tap}), and
C{dicomd storescp} and C{dicomd qrscp} (L{dicomd.cli.run}), each
translating its options into the one L{DaemonConfig}.

Stopping is ordered, which C{MultiService} alone does not do: listening
stops first, running associations get the grace period to finish and are
aborted after it, then each AE ends its open studies (running their
actions), and the index closes last.  L{DicomdService.reload} (SIGHUP
under twistd) reads the configuration file again: new, changed and
removed AEs and peers take effect for new associations, running ones
finish as they started, and open studies of an AE whose storage settings
did not change go on; a file that does not read leaves everything as it
was and says why in the log.

AEs over one directory share its contents, as in dcmqrscp: the index
names areas by directory, and the AEs that store into one directory store
through one L{StorageService}, under one quota (the strictest of theirs).
"""

import os
import socket
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Tuple

from twisted.application import internet, service, strports
from twisted.internet import defer, error
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web import server

from dicomd.archive.area import IndexedArea, sharedQuotas
from dicomd.archive.writer import IndexWriter
from dicomd.archive.databases import isURL
from dicomd.archive.index import DATABASE_ERRORS, SQLiteArchiveIndex, areaKey
from dicomd.archive.service import INDEX_FILE, Archive
from dicomd.archive.studyends import SharedStudyEnds
from dicomd.archive.takeover import TakeOver
from dicomd.peers import Peer, destinationTable, hostRule
from dicomd.qrentity import QueryRetrieveOptions, queryRetrieveEntity
from dicomd.asconfig import acceptorPolicy, readProfiles
from dicomd.config import ConfigError, DaemonConfig, EntityConfig, PortConfig, readConfig
from dicomd.forwarding import Forwarding, Router
from dicomd.net.acceptor import AcceptorFactory
from dicomd.startup import StartupError, writableDatabase, writableDirectory
from dicomd.status import Statistics, StatusResource
from dicomd.storage.receiver import AreaService, buildReceiver
from dicomd.storage.spool import InlineWrites
from dicomd.storage.state import defaultStateDirectory
from dicomd.ul.pdu import CONTEXT_RESULT_TITLES
from dicomd.workers import COORDINATOR_FD, AdoptedPort, CoordinatorLink, SharedPort, WorkerPool, answeredByCoordinator, sharable


#: Seconds a stopping daemon waits for an index that cannot record what
#: was stored; the next start indexes those files.
WRITER_GRACE = 30.0


def _unresolvedHost(name: str, why: Exception) -> None:
    DicomdService.log.warn("Cannot resolve allowed host {name}: {why}", name=name, why=str(why))


def _uidName(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return uid if name == uid else "=" + name.replace(" ", "")


def describePresentationContexts(request, answer) -> str:
    """
    The proposed presentation contexts of an A-ASSOCIATE-RQ and their
    results in C{answer}, as DCMTK's tools print them with C{+v}
    (storescp's C{--verbose-pc}, L{EntityConfig.logPresentationContexts}).
    """
    results = {context.contextID: context for context in getattr(answer, "presentationContexts", None) or ()}
    lines = ["Presentation Contexts:"]
    for proposed in request.presentationContexts:
        result = results.get(proposed.contextID)
        outcome = "Rejected (association)" if result is None else CONTEXT_RESULT_TITLES.get(result.result, "Result %d" % result.result)
        lines.append("  Context ID:        %d (%s)" % (proposed.contextID, outcome))
        lines.append("    Abstract Syntax: %s" % (_uidName(proposed.abstractSyntax),))
        lines.append("    Proposed Transfer Syntax(es):")
        lines.extend("      %s" % (_uidName(uid),) for uid in proposed.transferSyntaxes)
        if result is not None and result.accepted:
            lines.append("    Accepted Transfer Syntax: %s" % (_uidName(result.transferSyntax),))
    return "\n".join(lines)


def storageKey(config: EntityConfig, quota):
    """
    What a L{StorageService} is built from: an AE's storage settings, its
    directory by L{areaKey}, and that directory's quota (L{sharedQuotas}).
    AEs, or the AEs of two configurations, with equal keys share one.
    """
    directory = areaKey(config.storage.outputDirectory)
    return (replace(config.storage, outputDirectory=directory), quota)


def _moveSettings(config: DaemonConfig):
    """
    What an AE's C-MOVE destinations are built from besides the AE itself
    (L{DicomdService._destinations}): an AE is rebuilt on reload when they
    change, so that its new sub-associations use them.
    """
    limits = config.limits
    return config.peers, limits.acseTimeout, limits.dimseTimeout, limits.connectTimeout, limits.moveAsyncOps, config.moveProposal


class StorageService(service.MultiService):
    """
    The receiving side of the writable AEs of one directory: its storage
    area and its actions (with the end-of-study tracker and journal) as
    child services, and the receiver built on them.

    It is a service of its own, beside the L{EntityService} that uses it,
    so that a reload that changes an AE but not how it stores (its access
    rules, transfer syntaxes, the peers...) hands the running receiver to
    the new AE: open studies go on, their end-of-study work runs once,
    when they end.  When the storage settings did change, the new one
    takes the open studies over (L{takeOver}) instead of the former
    ending them when it is retired.

    @ivar key: the L{storageKey} it was built from.
    @ivar area: its directory's L{areaKey}.
    @ivar receiver: the L{dicomd.storage.receiver.Receiver}.
    """

    def __init__(
        self,
        config: EntityConfig,
        archive: Optional[Archive],
        *,
        titles: str,
        stateDirectory: str,
        quota=None,
        forwarding=None,
        router=None,
        coordinator=None,
        workers=None,
        reactor=None,
    ):
        """
        @param config: the first of the AEs storing through it.
        @param archive: the index it records into, or C{None} for none.
        @param titles: the AE titles storing through it, for log lines.
        @param stateDirectory: where its study journal is kept.
        @param quota: the directory's quota, or C{None}.
        @param forwarding: the L{Forwarding} told when a study ends, or
            C{None}.
        @param router: the L{Router} that queues what it stores, or C{None}.
        @param coordinator: in a worker process, the
            L{dicomd.workers.CoordinatorLink} that what it stores is
            reported to: the coordinator's own L{StorageService} of the area
            indexes it, tracks its study and runs its actions.
        @param workers: in a coordinator, its L{dicomd.workers.WorkerPool},
            told when the index cannot record what workers store here.
        """
        service.MultiService.__init__(self)
        self.key = storageKey(config, quota)
        self.area = areaKey(config.storage.outputDirectory)
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.writer = None
        storage = replace(config.storage, stateDirectory=stateDirectory)
        if coordinator is not None:
            # The coordinator prepares the area and acts on what is stored:
            # what it neither indexes nor tracks nor runs a command for
            # (storescp --fork's defaults) it need not hear of.
            told = archive is not None or storage.tracksStudies or bool(storage.execOnReception)
            self.receiver = buildReceiver(
                storage,
                index=coordinator.indexFor(self.area, quota) if archive is not None else None,
                observers=[coordinator.storedIn(self.area, answeredByCoordinator(storage))] if told else [],
                reactor=reactor,
            )
            return
        if archive is not None:
            indexed = IndexedArea(archive.index, titles, config.storage.outputDirectory, quota, router=router, recoveryTitle=config.title)
            # A local SQLite index is written on the reactor thread where
            # it can be; a server's (PostgreSQL) in a thread, always.
            inline = InlineWrites() if isinstance(archive.index, SQLiteArchiveIndex) else None
            self.writer = IndexWriter(indexed, reactor.getThreadPool().callInThread, reactor=reactor, inline=inline)
            self._archive = archive
            if workers is not None:
                # Workers acknowledge before the writer hears of an object:
                # they refuse new ones while it cannot record.
                self.writer.watchFailure(lambda failure: reactor.callFromThread(workers.indexFailing, self.area, failure))
        self.receiver = buildReceiver(storage, index=self.writer, reactor=reactor)
        if forwarding is not None:
            # On an index several nodes share, the study's end may be this
            # node's to bring for entries another node's routes hold.
            holds = (lambda: True) if isURL(archive.database) else (lambda: router.holdsStudies)
            self.receiver.actions.studyObservers.append(lambda episode: self._studyEnded(forwarding, holds, episode.studyInstanceUID))
        tracker = self.receiver.actions.tracker
        if archive is not None and isURL(archive.database) and tracker is not None:
            tracker.agreement = SharedStudyEnds(
                archive.index, self.area, tracker.timeout, reactor=reactor, threadpool=reactor.getThreadPool()
            )
        if self.receiver.area is not None:
            AreaService(self.receiver.area).setServiceParent(self)
        self.receiver.actions.setServiceParent(self)

    def _studyEnded(self, forwarding, holds: Callable[[], bool], studyInstanceUID: str) -> None:
        """
        Release the study's held queue entries once the index writer has
        written those of its last instances, where entries may be held
        (C{holds()}): a route forwards whole studies, or did since the
        daemon started (L{Router.holdsStudies}), or other nodes share the
        index.  Elsewhere nothing is held, and the writer's batches go on
        undivided (a transaction less per study).
        """
        if not holds():
            return
        self.writer.afterWritten(lambda: self._reactor.callFromThread(forwarding.studyEnded, self.area, studyInstanceUID))

    def startService(self) -> None:
        """
        Prepare the storage area, then start the actions (which open the
        study journal and end the studies a killed run left open).

        @raise StartupError: the area or the journal cannot be used; the
            message says which and why.
        """
        service.Service.startService(self)
        for child in self:
            try:
                child.startService()
            except (OSError, ValueError) as e:
                if child is self.receiver.actions:
                    raise StartupError("cannot keep the study journal: %s" % (e,))
                raise StartupError("cannot use the output directory: %s" % (e,))
        if self.writer is not None:
            # Queries of the area find what was acknowledged before them.
            self._archive.asyncIndex.writesInto(self.area, self.writer)

    def stopService(self) -> defer.Deferred:
        """
        Stop the actions (ending open studies), then wait for the index
        writer to write what it holds, before the index closes.
        """
        stopped = defer.maybeDeferred(service.MultiService.stopService, self)
        if self.writer is not None:
            writer = self.writer
            self._archive.asyncIndex.stopsWriting(self.area, writer)
            stopped.addCallback(lambda _: deferToThreadPool(self._reactor, self._reactor.getThreadPool(), writer.close, WRITER_GRACE))
        return stopped

    def takeOver(self, previous: "StorageService") -> None:
        """
        Continue the studies open in C{previous}, the storage of the AE
        that a reload replaces with settings that changed, when both store
        into the same area (see L{dicomd.storage.receiver.Actions.takeOver},
        which decides); call before starting.
        """
        self.receiver.actions.takeOver(previous.receiver.actions)


class EntityService(service.MultiService):
    """
    One configured AE: the L{dicomd.qrentity.ArchiveEntity} that
    answers its associations, storing through a L{StorageService} when it
    is writable.

    @ivar storage: that L{StorageService}, or C{None}.
    """

    log = Logger()

    def __init__(
        self,
        config: EntityConfig,
        archive: Optional[Archive],
        destinations,
        limits,
        *,
        storage: Optional[StorageService] = None,
        shutdown: Optional[Callable[[], None]] = None,
        reactor=None,
    ):
        """
        @param shutdown: what an association negotiating the private
            shutdown SOP class calls, when the AE allows it.
        """
        service.MultiService.__init__(self)
        self.config = config
        directory = config.storage.outputDirectory
        if config.writable and storage is None:
            raise ValueError("a writable AE needs its StorageService")
        self.storage = storage if config.writable else None
        receiver = self.storage.receiver if self.storage is not None else None
        self.actions = receiver.actions if receiver is not None else None
        profile = None
        if config.profile is not None:
            path, name = config.profile
            profile = acceptorPolicy(readProfiles(path).profile(name))
        options = QueryRetrieveOptions(
            models=config.models,
            readable=config.readable,
            writable=config.writable,
            get=config.get,
            checkFind=config.checkFind,
            checkMove=config.checkMove,
            destinations=destinations,
            moveAllowed=config.moveAllowed,
            transferSyntaxes=config.transferSyntaxes,
            promiscuous=config.promiscuous,
            storagePolicy=profile,
            requireFind=config.requireFind,
            parallelStore=config.parallelStore,
            characterSets=config.characterSets,
        )
        peers = config.peerRule if config.peerRule is not None else hostRule(config.hosts, failed=_unresolvedHost)
        self.entity = queryRetrieveEntity(
            config.title,
            archive,
            areaKey(directory),
            directory,
            options,
            storage=receiver.scp if receiver is not None else None,
            maximumLength=limits.maxPDU,
            maximumAsynchronousOperations=limits.maxAsyncOps,
            callingAETitles=config.callingAETitles,
            peers=peers,
            shutdown=shutdown if config.allowShutdown else None,
            requireImplementationClassUID=config.requireImplementationClassUID,
            refuseAll=config.refuseAll,
            reactor=reactor,
        )
        if config.logPresentationContexts:
            self.entity.addNegotiationObserver(self._logPresentationContexts)
        # Follow the associations this AE accepts, so that a reload that
        # replaces or removes it stops its storage area and actions only
        # once they have ended.
        self.associations = set()
        self.entity.addAssociationObserver(self._associationEstablished)

    def _associationEstablished(self, association) -> None:
        self.associations.add(association)
        association.whenClosed().addBoth(lambda _: self.associations.discard(association))

    def _logPresentationContexts(self, request, answer) -> None:
        self.log.info("{text}", text=describePresentationContexts(request, answer))

    def whenUnused(self) -> defer.Deferred:
        """
        A L{Deferred} that fires once no association this AE accepted is
        open any more (at once if none is).
        """
        return defer.DeferredList([association.whenClosed() for association in list(self.associations)]).addCallback(lambda _: None)

    @property
    def pendingStudies(self) -> int:
        if self.actions is None or self.actions.tracker is None:
            return 0
        return len(self.actions.tracker.open)


class DicomdService(service.MultiService):
    """
    The whole daemon.

    @ivar config: the L{DaemonConfig} in force.
    @ivar overrides: applied to every configuration read, including on
        reload: the command line's settings for the default AE.
    @ivar factory: the one L{AcceptorFactory} every endpoint listens with.
    @ivar stateDirectory: where the study journals are kept: chosen once,
        when the daemon is built (before twistd drops privileges, so that
        a daemon started by root keeps them in C{/var/lib/dicomd}), and
        kept until it stops.
    @ivar workers: the coordinator's L{dicomd.workers.WorkerPool}, or
        C{None} when this process serves associations itself.
    @ivar coordinator: a worker's L{dicomd.workers.CoordinatorLink}, or
        C{None} when this process is not a worker.
    """

    log = Logger()

    def __init__(
        self,
        config: DaemonConfig,
        *,
        overrides: Callable[[DaemonConfig], DaemonConfig] = lambda c: c,
        workers: Optional[WorkerPool] = None,
        coordinator: Optional[CoordinatorLink] = None,
        reactor=None,
    ):
        """
        @param workers: serve associations in these worker processes
            (this process becomes their coordinator).
        @param coordinator: this process is a worker of that coordinator.
        """
        service.MultiService.__init__(self)
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.overrides = overrides
        self.config = config = overrides(config)
        self.statistics = Statistics()
        self.workers = workers
        self.coordinator = coordinator
        if workers is not None:
            for where in config.listen:
                if not sharable(where):
                    raise StartupError("cannot share %s with worker processes: they take tcp: and tcp6: endpoints" % (where,))
        self._shutdownWaiters: List[defer.Deferred] = []
        self.stateDirectory = config.stateDirectory or defaultStateDirectory()
        self.archive = None
        self.forwarding = None
        self.router = None
        #: The name of this daemon among those sharing the index.
        self.node = config.node or socket.gethostname()
        if config.index:
            database = config.database or "%s/%s" % (config.entities[0].storage.outputDirectory, INDEX_FILE)
            areas = [(entity.title, entity.storage.outputDirectory) for entity in config.entities]
            self.archive = Archive(database, areas=areas, node=self.node, reactor=reactor, reader=coordinator is not None)
            self.archive.index.mode = config.fileMode
            self.archive.setServiceParent(self)
        if config.index and coordinator is None:
            self.forwarding = Forwarding(
                self.archive.index, self._peers(config), node=self.node, reactor=reactor, **self._forwardingSettings(config)
            )
            self.router = Router(self.forwarding)
            self._setRoutes(config)
        self.entityServices: Dict[str, EntityService] = {}
        limits = config.limits
        self.factory = AcceptorFactory(
            entities={},
            reactor=reactor,
            maximumAssociations=limits.maxAssociations,
            maximumAssociationsPerHost=limits.maxAssociationsPerHost,
            maximumPendingConnections=limits.maxPendingConnections,
            statistics=self.statistics if coordinator is None else coordinator.statistics(),
            artimTimeout=limits.acseTimeout,
            idleTimeout=limits.idleTimeout,
            dimseTimeout=limits.dimseTimeout,
        )
        self._setEntities(config)
        if self.forwarding is not None:
            # Started after the storage areas: what they index at start
            # (files a killed run left) is queued, held for its study's
            # end, before the held entries no node follows are released.
            self.forwarding.setServiceParent(self)
        self.takeOver = None
        if self.forwarding is not None and isURL(self.archive.database):
            self.takeOver = TakeOver(
                self.archive.index,
                self._indexedAreas,
                config.forwarding.lease,
                recovered=lambda: self.forwarding.releaseUnfollowed(self._followedStudies()),
                reactor=reactor,
                threadpool=reactor.getThreadPool(),
            )
            self.takeOver.setServiceParent(self)
        self.listening = [self._listeningService(where, number) for number, where in enumerate(config.listen)]
        #: Each listening service (the status page's too) -> its endpoint string.
        self._endpoints = dict(zip(self.listening, config.listen))
        for listener in self.listening:
            listener.setServiceParent(self)
        if workers is not None:
            workers.daemon = self
            workers.ports = self.listening
            workers.setServiceParent(self)
        if config.status and coordinator is None:
            page = StatusResource(
                self.statistics,
                [self.factory if workers is None else workers],
                self.pendingStudies,
                reactor,
                titles=lambda: list(self.entityServices),
                forwarding=(lambda: self.forwarding.destinations.values()) if self.forwarding is not None else None,
                node=self.node,
            )
            statusPage = strports.service(config.status, server.Site(page))
            self._endpoints[statusPage] = config.status
            statusPage.setServiceParent(self)

    def _listeningService(self, where, number: int) -> service.Service:
        """
        The service listening on an endpoint string, or on a
        L{PortConfig}'s port (with TLS when it has a context factory):
        in a coordinator, one that binds for its workers; in a worker, the
        socket its coordinator passed for the C{number}th endpoint.
        """
        if self.workers is not None:
            return SharedPort(where, self.factory, self.reactor)
        if self.coordinator is not None:
            return AdoptedPort(COORDINATOR_FD + 1 + number, where, self.factory, self.reactor)
        if not isinstance(where, PortConfig):
            return strports.service(where, self.factory)
        if where.tls is None:
            return internet.TCPServer(where.port, self.factory, reactor=self.reactor)
        return internet.SSLServer(where.port, self.factory, where.tls, reactor=self.reactor)

    @staticmethod
    def _peers(config: DaemonConfig) -> List[Peer]:
        return [Peer(peer.title, peer.host, peer.port, peer.tls) for peer in config.peers]

    @staticmethod
    def _forwardingSettings(config: DaemonConfig) -> dict:
        """
        What L{Forwarding} is configured with besides the peers.
        """
        return dict(
            settings=config.forwarding,
            routerAreas=[areaKey(e.storage.outputDirectory) for e in config.entities if e.writable and e.storage.keepUntilForwarded],
            studyTimeouts={
                areaKey(e.storage.outputDirectory): e.storage.endOfStudyTimeout for e in config.entities if e.writable and e.storage.tracksStudies
            },
            acseTimeout=config.limits.acseTimeout,
            dimseTimeout=config.limits.dimseTimeout,
        )

    def _setRoutes(self, config: DaemonConfig) -> None:
        self.router.routes = {entity.title: entity.routes for entity in config.entities}
        self.router.defaultTitle = config.entities[0].title if config.answerAnyCalledAETitle else None

    def _destinations(self, config: DaemonConfig, callingAETitle: str):
        peers = self._peers(config)
        return destinationTable(
            peers,
            callingAETitle,
            reactor=self.reactor,
            propose=config.moveProposal,
            timeout=config.limits.connectTimeout,
            acseTimeout=config.limits.acseTimeout,
            dimseTimeout=config.limits.dimseTimeout,
            asynchronousOperations=config.limits.moveAsyncOps,
        )

    def _setEntities(self, config: DaemonConfig) -> None:
        """
        Build and start the services of every AE the configuration names
        that is not running with the same settings already, then put the
        AEs in force for new associations.  An AE replaced or removed
        stops once its running associations have ended (they finish with
        the settings they started with).  The L{StorageService} of a
        directory whose storage settings did not change (L{_storages})
        stays in force, with its open studies, for the AEs storing there.

        @raise Exception: an AE could not be built or started; the AEs in
            force are left as they were.
        """
        storages, freshStorage, successions = self._storages(config)
        entities: Dict[str, EntityService] = {}
        fresh = []
        for entityConfig in config.entities:
            current = self.entityServices.get(entityConfig.title)
            storage = storages.get(areaKey(entityConfig.storage.outputDirectory)) if entityConfig.writable else None
            if (
                current is not None
                and current.config == entityConfig
                and _moveSettings(config) == _moveSettings(self.config)
                and current.storage is storage
            ):
                entities[entityConfig.title] = current
                continue
            entities[entityConfig.title] = EntityService(
                entityConfig,
                self.archive,
                self._destinations(config, entityConfig.title),
                config.limits,
                storage=storage,
                shutdown=self.requestShutdown,
                reactor=self.reactor,
            )
            fresh.append(entities[entityConfig.title])
        # Once everything is built (which is where a mistake usually shows):
        # a storage that did not start after this would leave the studies
        # it took over to the journal, that is to the next start.
        for storage, previous in successions:
            storage.takeOver(previous)
        started = []
        try:
            for child in freshStorage + fresh:
                started.append(child)
                child.setServiceParent(self)
        except BaseException:
            for child in started:
                if child.parent is not None:
                    child.disownServiceParent()
            raise
        retired = [entityService for title, entityService in self.entityServices.items() if entities.get(title) is not entityService]
        kept = len(entities) - len(fresh)
        changed = len([e for e in fresh if e.config.title in self.entityServices])
        self.entityServices = entities
        self.statistics.titles = set(entities)
        self.factory.entities = {title: entityService.entity for title, entityService in entities.items()}
        first = entities[config.entities[0].title].entity if config.entities else None
        self.factory.defaultEntity = first if config.answerAnyCalledAETitle else None
        self.log.info(
            "AE titles in force: {titles} ({kept} kept, {added} added, {changed} changed, {removed} removed)",
            titles=", ".join(entities),
            kept=kept,
            added=len(fresh) - changed,
            changed=changed,
            removed=len([e for e in retired if e.config.title not in entities]),
        )
        for entityService in retired:
            self._retire(entityService)

    def _storages(self, config: DaemonConfig):
        """
        The L{StorageService} of each directory the configuration's
        writable AEs store into: the one in force when its L{storageKey}
        is unchanged, else a new one, which takes over the studies open in
        the one in force for that directory.

        @return: C{(storages, fresh, successions)}: L{areaKey} ->
            L{StorageService}; those to start; C{(new, former)} pairs.
        @raise StartupError: two AEs store into one directory with
            different storage settings: they would name, sort and act on one
            area's files in two ways.
        """
        writers = [entity for entity in config.entities if entity.writable]
        quotas = sharedQuotas((entity.title, entity.storage.outputDirectory, entity.quota) for entity in writers)
        current = {storage.area: storage for storage in self.storagesInForce()}
        storages: Dict[str, StorageService] = {}
        firstOf: Dict[str, EntityConfig] = {}
        fresh, successions = [], []
        for entity in writers:
            area = areaKey(entity.storage.outputDirectory)
            key = storageKey(entity, quotas[area])
            if area in firstOf:
                if storages[area].key != key:
                    raise StartupError(
                        "AE titles %s and %s store into %s with different storage settings" % (firstOf[area].title, entity.title, area)
                    )
                continue
            firstOf[area] = entity
            former = current.get(area)
            if former is not None and former.key == key:
                storages[area] = former
                continue
            titles = ", ".join(writer.title for writer in writers if areaKey(writer.storage.outputDirectory) == area)
            storages[area] = StorageService(
                entity,
                self.archive,
                titles=titles,
                stateDirectory=self.stateDirectory,
                quota=quotas[area],
                forwarding=self.forwarding,
                router=self.router,
                coordinator=self.coordinator,
                workers=self.workers,
                reactor=self.reactor,
            )
            fresh.append(storages[area])
            if former is not None:
                successions.append((storages[area], former))
        return storages, fresh, successions

    def _indexedAreas(self) -> List[IndexedArea]:
        """
        The L{IndexedArea} of each directory the AEs in force store into.
        """
        return list({storage.area: storage.writer.area for storage in self.storagesInForce() if storage.writer is not None}.values())

    def _followedStudies(self) -> List[Tuple[str, str]]:
        """
        C{(area, StudyInstanceUID)} of each study open in the trackers of
        the AEs in force.
        """
        return [
            (storage.area, study)
            for storage in self.storagesInForce()
            if storage.receiver.actions.tracker is not None
            for study in storage.receiver.actions.tracker.open
        ]

    def storagesInForce(self) -> List[StorageService]:
        """
        The L{StorageService}s of the AEs in force.
        """
        return [entityService.storage for entityService in self.entityServices.values() if entityService.storage is not None]

    def _retire(self, entityService: EntityService) -> None:
        """
        Stop an AE that is no longer in force once its associations have
        ended, and its L{StorageService} too unless an AE in force took
        it over.
        """
        title = entityService.config.title
        if entityService.associations:
            self.log.info(
                "AE {title}: {count} associations started before the reload finish with its former settings",
                title=title,
                count=len(entityService.associations),
            )

        def stop(_):
            stopping = []
            if entityService.parent is not None:
                stopping.append(defer.maybeDeferred(entityService.disownServiceParent))
            storage = entityService.storage
            if (
                storage is not None
                and storage.parent is not None
                and all(other.storage is not storage for other in self.entityServices.values())
            ):
                stopping.append(defer.maybeDeferred(storage.disownServiceParent))
            return defer.gatherResults(stopping, consumeErrors=True)

        entityService.whenUnused().addCallback(stop).addErrback(
            lambda failure: self.log.failure("Stopping the former AE {title}", failure, title=title)
        )

    def requestShutdown(self) -> None:
        """
        An association asked the server to stop (DCMTK's private shutdown
        SOP class, C{--allow-shutdown}): tell those waiting in
        L{whenShutdownRequested}, which stop it.
        """
        waiters, self._shutdownWaiters = self._shutdownWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def whenShutdownRequested(self) -> defer.Deferred:
        """
        A L{Deferred} that fires when an association asks the server to
        stop (L{requestShutdown}).
        """
        waiter = defer.Deferred()
        self._shutdownWaiters.append(waiter)
        return waiter

    def pendingStudies(self) -> Dict[str, int]:
        return {title: entityService.pendingStudies for title, entityService in self.entityServices.items()}

    def reload(self) -> bool:
        """
        Read the configuration file again and put it in force for new
        associations.

        Not while stopping: the listening ports are closed and the
        services stopping, so a new AE could not be started.

        @return: whether the new file was taken.
        """
        if not self.running:
            self.log.warn("SIGHUP: not reloading, dicomd is stopping")
            return False
        path = self.config.path
        if path is None:
            self.log.warn("SIGHUP: no configuration file to reload (dicomd runs on its defaults)")
            return False
        try:
            config = self.overrides(readConfig(path))
        except ConfigError as e:
            self.log.error("SIGHUP: not reloading, the configuration is invalid: {error}", error=str(e))
            return False
        try:
            self._checkRestartOnly(config)
            self._checkWritable(config)
            self._setEntities(config)
        except Exception as e:
            self.log.error("SIGHUP: not reloading {path}: {error}", path=path, error=str(e))
            return False
        limits = config.limits
        factory = self.factory
        factory.maximumAssociations = limits.maxAssociations
        factory.maximumAssociationsPerHost = limits.maxAssociationsPerHost
        factory.maximumPendingConnections = limits.maxPendingConnections
        factory.artimTimeout = limits.acseTimeout
        factory.idleTimeout = limits.idleTimeout
        factory.dimseTimeout = limits.dimseTimeout
        if self.forwarding is not None:
            self._setRoutes(config)
            self.forwarding.configure(self._peers(config), **self._forwardingSettings(config))
        if self.takeOver is not None:
            self.takeOver.lease = config.forwarding.lease
        self.config = config
        self.log.info("SIGHUP: reloaded {path}", path=path)
        if self.workers is not None:
            self.workers.reload()
        return True

    def _checkWritable(self, config: DaemonConfig) -> None:
        """
        Check that every storing AE's directory can be written, creating
        those that do not exist yet.  (The index database is checked once,
        at start: opening and closing it while SQLite has it open would
        drop SQLite's locks, which POSIX ties to the process and the file.)

        @raise dicomd.startup.CannotWrite: one cannot; the message names it.
        """
        for entity in config.entities:
            if entity.writable and not entity.storage.ignore:
                writableDirectory(
                    entity.storage.outputDirectory, "the storage directory of AE %s" % (entity.title,), mode=entity.storage.directoryMode
                )

    def _checkRestartOnly(self, config: DaemonConfig) -> None:
        old = self.config
        for name, key in (("listen", "listen"), ("status", "status"), ("database", "database"), ("node", "node"), ("stateDirectory", "state-directory")):
            if getattr(config, name) != getattr(old, name):
                self.log.warn("SIGHUP: {name} changed in {path}; that takes a restart", name=key, path=config.path)
        if config.limits.maxPDU != old.limits.maxPDU:
            self.log.warn("SIGHUP: max-pdu changed; new AEs use it, a restart applies it everywhere")

    def privilegedStartService(self) -> None:
        """
        Listen on every endpoint: twistd does this before it drops
        privileges (C{--uid}), so that port 104 can be opened.

        @raise StartupError: an endpoint cannot listen (the port is in use,
            or privileged); the message names it.
        """
        service.Service.privilegedStartService(self)
        for child in self:
            try:
                child.privilegedStartService()
            except error.CannotListenError as e:
                why = getattr(e.socketError, "strerror", None) or str(e.socketError)
                raise StartupError("cannot listen on %s: %s" % (self._endpoints[child], why))

    def startService(self) -> None:
        """
        Check what must be written (L{_checkWritable}, and the index
        database), log where each AE stores and where the index is, and
        start the services.  (Signals are the front door's: see
        L{dicomd.tap.TwistdService} and L{dicomd.cli.run}.)

        The check runs here, not when the service is built, because twistd
        starts services as the user they serve as (after C{--uid}).

        The storage directories and the index's directory (by default the
        first AE's storage area) are made first, with the configured mode:
        the archive would make the index's with the umask's alone.

        @raise StartupError: a storage directory or the index cannot be
            written, or the index is not an SQLite database, or its
            PostgreSQL server cannot be reached or has a newer schema.
        """
        self._checkWritable(self.config)
        if self.archive is not None and not isURL(self.archive.database):
            writableDatabase(self.archive.database, mode=self.config.directoryMode)
        for entity in self.config.entities:
            if entity.writable and not entity.storage.ignore:
                self.log.info("AE {title} stores under {directory}", title=entity.title, directory=os.path.abspath(entity.storage.outputDirectory))
        if self.archive is not None:
            path = self.archive.path if isURL(self.archive.database) else os.path.abspath(self.archive.database)
            self.log.info("Index database: {path}", path=path)
        try:
            service.MultiService.startService(self)
        except DATABASE_ERRORS as e:
            raise StartupError("cannot open %s (the index database): %s" % (self.archive.path, e))

    @defer.inlineCallbacks
    def stopService(self):
        """
        Stop listening, let running associations finish for the grace
        period (then abort them), end the AEs (their open studies and
        actions), close the index.
        """
        service.Service.stopService(self)
        yield defer.gatherResults([defer.maybeDeferred(listener.stopService) for listener in self.listening])
        if self.workers is not None:
            yield self.workers.stopService()
        yield self._drain(self.config.limits.shutdownGrace)
        others = [child for child in self if child not in self.listening and child is not self.archive and child.running]
        yield defer.gatherResults([defer.maybeDeferred(child.stopService) for child in others])
        if self.archive is not None:
            yield defer.maybeDeferred(self.archive.stopService)

    def _drain(self, grace: float) -> defer.Deferred:
        factory = self.factory
        idle = factory.whenIdle()
        if idle.called:
            return idle
        self.log.info(
            "Stopping: waiting up to {grace} s for {count} connections to finish", grace=grace, count=len(factory.connections)
        )

        def abortTheRest():
            self.log.warn("Stopping: aborting {count} connections still open after {grace} s", count=len(factory.connections), grace=grace)
            for proto in list(factory.connections):
                proto.abort()
                proto.transport.abortConnection()

        timer = self.reactor.callLater(grace, abortTheRest)
        return idle.addBoth(lambda result: timer.cancel() if timer.active() else None)
