"""
Assembling the receiving side of storage from storescp's options
(PS3.4 Annex B, SCP role, as DCMTK's storescp 3.6.8 configures it).

L{StorageOptions} is what every front door produces: C{dicomd storescp}'s
command line, C{twistd dicomd}'s flags and the configuration file all
translate into it.  L{buildReceiver} turns it into the service objects: a
L{StorageArea} named by a L{StudyLayout}, the L{StorageSCP}, and the
L{dicomd.actions.Actions} service that runs commands and tracks the end of
studies.
"""

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Dict, List, Optional

from pydicom.uid import generate_uid
from twisted.application import service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from dicomd.actions import CommandAction
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS
from dicomd.storage import DIRECTORY_MODE, FILE_MODE, naming
from dicomd.storage.scp import ReceivedInstance, StorageArea, StorageSCP
from dicomd.storage.sopclasses import STORAGE_SOP_CLASSES
from dicomd.storage.state import defaultStateDirectory
from dicomd.storage.studies import StudyEpisode, StudyJournal, StudyTracker
from dicomd.ul.negotiation import AcceptorPolicy

SORT_TIMESTAMP = "-ss"
SORT_STUDY_UID = "-su"
SORT_PATIENT_NAME = "-sp"


@dataclass
class StorageOptions:
    """
    The storage options of storescp's manual, by meaning.

    @ivar sortMode: L{SORT_TIMESTAMP}, L{SORT_STUDY_UID},
        L{SORT_PATIENT_NAME} or C{None}.
    @ivar endOfStudyTimeout: seconds, or C{None} for storescp's rule alone.
    @ivar sync: C{fsync} each file and its directory before answering.
    @ivar recode: a callable C{recode(path)} that rewrites a stored file in
        place (the re-encoding output options), or C{None} to keep files bit
        for bit as received.
    @ivar fileMode: the permissions of the files stored, less the umask.
    @ivar directoryMode: the permissions of the directories made, less the
        umask.
    @ivar stateDirectory: where the study journal is kept, or C{None} for
        L{defaultStateDirectory}'s choice, made when the journal is opened.
    @ivar forwardsStudies: a forwarding route waits for the end of each
        study, so studies are tracked.
    @ivar keepUntilForwarded: router mode: a file (and its index row) is
        deleted once every route has forwarded it.
    """

    outputDirectory: str = "."
    ignore: bool = False
    fileNames: naming.FileNameScheme = naming.FileNameScheme.INSTANCE_UID
    extension: str = ""
    sortMode: Optional[str] = None
    sortPrefix: str = ""
    execOnReception: Optional[str] = None
    execOnEndOfStudy: Optional[str] = None
    renameOnEndOfStudy: bool = False
    endOfStudyTimeout: Optional[float] = None
    execSync: bool = False
    sleepAfter: float = 0
    sleepDuring: float = 0
    abortAfter: bool = False
    abortDuring: bool = False
    sync: bool = False
    recode: Optional[Callable[[str], None]] = None
    fileMode: int = FILE_MODE
    directoryMode: int = DIRECTORY_MODE
    stateDirectory: Optional[str] = None
    forwardsStudies: bool = False
    keepUntilForwarded: bool = False

    @property
    def tracksStudies(self) -> bool:
        return bool(self.execOnEndOfStudy or self.renameOnEndOfStudy or self.sortMode or self.endOfStudyTimeout or self.forwardsStudies)


class StudyLayout:
    """
    Where a received instance goes: its file name (L{naming.FileNamer}) in
    its study's directory (C{-ss}, C{-su}, C{-sp}) or the area's root.

    Called from worker threads under the area's lock.  A study keeps its
    directory until L{studyEnded} (from the reactor) says its episode is
    over; its next instance then starts a new directory, as storescp starts
    one when a study comes back after another.
    """

    def __init__(self, fileNamer: naming.FileNamer, sortMode: Optional[str] = None, sortPrefix: str = ""):
        self.fileNamer = fileNamer
        self.sortMode = sortMode
        self.sortPrefix = sortPrefix
        self._directories: Dict[str, str] = {}

    def place(self, received: ReceivedInstance) -> str:
        name = self.fileNamer.fileName(received.sopClassUID, received.sopInstanceUID)
        if self.sortMode is None:
            return name
        studyUID = received.studyInstanceUID
        if not studyUID:
            raise ValueError("no Study Instance UID to sort by")
        directory = self._directories.get(studyUID)
        if directory is None:
            directory = self._directories[studyUID] = self._directoryFor(studyUID, received)
            self.fileNamer.newStudy()
        return os.path.join(directory, name)

    def _directoryFor(self, studyUID: str, received: ReceivedInstance) -> str:
        arrival = datetime.fromtimestamp(received.receivedAt)
        if self.sortMode == SORT_STUDY_UID:
            return naming.studyDirectoryName(self.sortPrefix, studyUID)
        if self.sortMode == SORT_TIMESTAMP:
            return naming.timestampDirectoryName(self.sortPrefix, arrival)
        element = received.attributes.get_item("PatientName") if "PatientName" in received.attributes else None
        raw = element.value if element is not None else None
        if isinstance(raw, str):
            raw = raw.encode("latin-1", "replace")
        return naming.patientDirectoryName(raw, arrival)

    def studyEnded(self, studyInstanceUID: str) -> None:
        self._directories.pop(studyInstanceUID, None)

    def shareStudies(self, other: "StudyLayout") -> None:
        """
        Keep the studies' directories in one table with C{other} (the
        layout of the AE a reload replaced), so that a study open across
        the reload stays in its directory.
        """
        self._directories = other._directories


class AreaService(service.Service):
    """
    Prepares a L{StorageArea} when the daemon starts (after twistd has
    dropped privileges, so the directories belong to the daemon's user).
    """

    def __init__(self, area: StorageArea):
        self.area = area

    def startService(self) -> None:
        self.area.prepare()
        service.Service.startService(self)


class Actions(service.Service):
    """
    The storage events' consumer: commands on reception and at the end of a
    study, renaming at the end of a study, and the study tracker.

    Pending end-of-study work is not lost at a clean stop: stopping the
    service ends every open study, runs its actions, and waits for them.
    Nor is it lost when the daemon is killed: with end-of-study work to do
    (C{--exec-on-eostudy}, C{--rename-on-eostudy}) and a storage area,
    open studies are kept in a L{StudyJournal} in the state directory, and
    starting the service ends the studies a killed run left open.

    @ivar tracker: the L{StudyTracker}, or C{None} when nothing needs it.
    @ivar journal: the L{StudyJournal}, or C{None}.
    @ivar studyObservers: called with each ended L{StudyEpisode}, with the
        end-of-study work (forwarding whole studies); each may return a
        L{Deferred}, which the work waits for.
    """

    log = Logger()

    def __init__(self, options: StorageOptions, area: Optional[StorageArea], layout: Optional[StudyLayout], *, reactor, threadpool):
        self.options = options
        self.area = area
        self.layout = layout
        self._reactor = reactor
        self._threadpool = threadpool
        self.onReception = (
            CommandAction(options.execOnReception, synchronous=options.execSync, reactor=reactor)
            if options.execOnReception
            else None
        )
        self.onEndOfStudy = (
            CommandAction(options.execOnEndOfStudy, synchronous=options.execSync, reactor=reactor)
            if options.execOnEndOfStudy
            else None
        )
        self.tracker = (
            StudyTracker(self._studyEnded, timeout=options.endOfStudyTimeout, reactor=reactor)
            if options.tracksStudies
            else None
        )
        if self.tracker is not None:
            self.tracker.onStudyEndedElsewhere = self._studyEndedElsewhere
        self._journaled = area is not None and bool(options.execOnEndOfStudy or options.renameOnEndOfStudy)
        self.journal: Optional[StudyJournal] = None
        self.studyObservers: List[Callable[[StudyEpisode], Optional[defer.Deferred]]] = []
        self._successor: Optional["Actions"] = None

    def takeOver(self, previous: "Actions") -> None:
        """
        A reload built this in place of C{previous}, whose associations
        may still be storing: when both track studies the same way in the
        same storage area, the studies open there continue here, and what
        C{previous}'s associations store is tracked here too, so that a
        reload neither ends a study early nor ends it twice.  (Their
        reception commands stay C{previous}'s.)  Call before starting.
        """
        if self.tracker is None or previous.tracker is None or self.area is None or previous.area is None:
            return
        if self._journaled != previous._journaled:
            return
        if os.path.realpath(self.area.directory) != os.path.realpath(previous.area.directory):
            return
        previous.tracker.handOver(self.tracker)
        if (self.layout.sortMode, self.layout.sortPrefix) == (previous.layout.sortMode, previous.layout.sortPrefix):
            self.layout.shareStudies(previous.layout)
        previous._successor = self

    def startService(self) -> None:
        """
        Open the study journal, and end the studies a killed run left
        open in it (their files are there: each was journaled before it
        was acknowledged).

        @raise OSError: the state directory cannot be made, or the
            journal cannot be read or written; the message names it.
        @raise ValueError: no state directory is configured and there is
            no default (L{defaultStateDirectory}).
        """
        if self._journaled:
            stateDirectory = self.options.stateDirectory or defaultStateDirectory()
            self.journal = StudyJournal.forDirectory(self.area.directory, stateDirectory)
        service.Service.startService(self)
        if self.journal is None:
            return
        for episode in self.journal.recover():
            self.tracker.end(episode, "it was open when dicomd last stopped without ending it")

    def instanceStored(self, received: ReceivedInstance) -> Optional[defer.Deferred]:
        """
        The L{StorageSCP} observer: track the study, run the reception
        command (holding the response back with C{--exec-sync}).
        """
        waits = [(self._successor or self).track(received)]
        if self.onReception is not None:
            directory, fileName = os.path.split(received.path) if received.path else ("", "")
            waits.append(self.onReception.run(_placeholders(received, directory, fileName)))
        waits = [wait for wait in waits if wait is not None]
        return defer.gatherResults(waits, consumeErrors=True) if waits else None

    def track(self, received: ReceivedInstance) -> Optional[defer.Deferred]:
        """
        Follow a stored object's study, in the journal too.

        @return: with C{--fsync}, a L{Deferred} that fires once the journal
            is on disk (the response waits for it); else C{None}.
        """
        if self.tracker is None:
            return None
        self.tracker.instanceStored(received)
        if self.journal is None or received.path is None:
            return None
        episode = self.tracker.open.get(received.studyInstanceUID)
        if episode is None:
            return None
        self.journal.stored(episode, received)
        return self._inThread(self.journal.syncInThread) if self.options.sync else None

    def _studyEnded(self, episode: StudyEpisode) -> defer.Deferred:
        """
        Do an episode's end-of-study work, then, once its command has
        exited, strike it from the journal: work a crash cut short is done
        again at the next start (at least once, never lost).
        """
        work = defer.maybeDeferred(self._endOfStudyWork, episode)
        journal = self.journal
        if journal is None:
            return work

        def done(result):
            journal.ended(episode)
            return result

        return work.addBoth(done)

    def _studyEndedElsewhere(self, episode: StudyEpisode) -> None:
        """
        Another daemon sharing the index ended the episode's study and did
        its end-of-study work: strike it from the journal.
        """
        if self.journal is not None:
            self.journal.ended(episode)

    def _endOfStudyWork(self, episode: StudyEpisode) -> defer.Deferred:
        observed = [defer.maybeDeferred(observer, episode) for observer in self.studyObservers]
        work = self._studyCommands(episode)
        return defer.gatherResults(observed + [defer.maybeDeferred(lambda: work)], consumeErrors=True) if observed else work

    def _studyCommands(self, episode: StudyEpisode) -> defer.Deferred:
        if self.layout is not None:
            self.layout.studyEnded(episode.studyInstanceUID)
        renaming = defer.succeed(None)
        if self.options.renameOnEndOfStudy and episode.files:
            renaming = self._inThread(self._rename, list(episode.files))
        if self.onEndOfStudy is None:
            return renaming
        directory = os.path.dirname(episode.files[0]) if episode.files else (self.area.directory if self.area else "")
        values = _placeholders(episode.lastObject, directory, None)
        return renaming.addCallback(lambda _: self.onEndOfStudy.run(values, untilExit=self._journaled))

    def _inThread(self, function, *args) -> defer.Deferred:
        return deferToThreadPool(self._reactor, self._threadpool, function, *args)

    def _rename(self, paths: List[str]) -> None:
        """
        C{--rename-on-eostudy}, in a worker thread: number the study's files
        in arrival order, and tell the index their new names.

        A file that is gone (removed since it was stored) is skipped; a new
        name already taken in the directory (by an earlier episode of the
        same study under C{-su}, or by a file put there by hand) is not
        overwritten: the counter moves on to a free number.
        """
        timeNames = self.options.fileNames is naming.FileNameScheme.TIME
        number = 0
        for path in paths:
            if not os.path.exists(path):
                self.log.warn("Cannot rename {path} at the end of its study: it is gone", path=path)
                continue
            directory = os.path.dirname(path)
            while True:
                number += 1
                target = os.path.join(directory, naming.renamedFileName(os.path.basename(path), number, timeNames))
                if target == path or not os.path.lexists(target):
                    break
            if target == path:
                continue
            os.rename(path, target)
            if self.area is not None and self.area.index is not None:
                self.area.index.moved(path, target)

    def stopService(self) -> defer.Deferred:
        """
        End every open study now, run its end-of-study actions, and wait
        for them and for every command still running.
        """
        service.Service.stopService(self)
        ending = self.tracker.endAll() if self.tracker is not None else defer.succeed(None)

        def commandsDone(_):
            return defer.DeferredList(
                [action.whenIdle() for action in (self.onReception, self.onEndOfStudy) if action is not None]
            )

        ending.addCallback(commandsDone)
        if self.journal is not None:
            journal, self.journal = self.journal, None
            ending.addCallback(lambda result: journal.release() or result)
        return ending


def _placeholders(received: Optional[ReceivedInstance], directory: str, fileName: Optional[str]) -> Dict[str, str]:
    values = {"p": directory, "f": fileName or ""}
    if received is not None:
        values.update(a=received.callingAETitle, c=received.calledAETitle, r=received.peerHost)
    return values


@dataclass
class Receiver:
    """
    The receiving side, assembled: add C{actions} to the service tree and
    register C{scp} for C-STORE.
    """

    scp: StorageSCP
    area: Optional[StorageArea]
    actions: Actions


def storagePolicy(transferSyntaxes, promiscuous: bool = False) -> AcceptorPolicy:
    """
    What storescp accepts without a profile: Verification and every
    storage SOP class, with C{transferSyntaxes} (in preference order); with
    C{promiscuous}, any other abstract syntax too.
    """
    accepted = {uid: tuple(transferSyntaxes) for uid in STORAGE_SOP_CLASSES}
    accepted[VERIFICATION_SOP_CLASS] = tuple(transferSyntaxes)
    return AcceptorPolicy(accepted, defaultTransferSyntaxes=tuple(transferSyntaxes) if promiscuous else None)


def buildReceiver(
    options: StorageOptions, *, reactor=None, threadpool=None, index=None, observers=None, wallClock=datetime.now
) -> Receiver:
    """
    The storage service objects for C{options}.

    @param index: what records stored objects, such as an
        L{dicomd.archive.area.IndexedArea}; see L{StorageArea}.
    @param observers: what is told of each stored object before its
        response (see L{StorageSCP}); by default the L{Actions}.
    @param wallClock: returns the local time that C{-tn} file names are
        made from (tests give a fixed one).
    """
    if reactor is None:
        from twisted.internet import reactor
    threadpool = threadpool if threadpool is not None else reactor.getThreadPool()
    area = layout = None
    if not options.ignore:
        fileNamer = naming.FileNamer(options.fileNames, options.extension, clock=wallClock, uidGenerator=lambda: str(generate_uid()))
        layout = StudyLayout(fileNamer, options.sortMode, options.sortPrefix)
        area = StorageArea(
            options.outputDirectory,
            layout,
            index=index,
            sync=options.sync,
            recode=options.recode,
            fileMode=options.fileMode,
            directoryMode=options.directoryMode,
        )
    actions = Actions(options, area, layout, reactor=reactor, threadpool=threadpool)
    scp = StorageSCP(
        area,
        reactor=reactor,
        threadpool=threadpool,
        observers=observers if observers is not None else [actions.instanceStored],
        abortDuring=options.abortDuring,
        abortAfter=options.abortAfter,
        sleepAfter=options.sleepAfter,
        sleepDuring=options.sleepDuring,
    )
    return Receiver(scp, area, actions)
