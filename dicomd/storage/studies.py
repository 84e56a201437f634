"""
End of study: deciding when all objects of a study have arrived, as
storescp's C{--eostudy-timeout}, C{--exec-on-eostudy} and
C{--rename-on-eostudy} need.

storescp decides with one rule: a study ends when the next object received
belongs to another study, or when nothing arrives for the timeout.  With one
sender at a time that works; with several senders at once their objects
interleave and the rule ends studies that are still arriving.  The
L{StudyTracker} keeps the rule per sender instead.  A sender is an
association; when it closes, the study it was on waits for the next
association from the same calling AE title at the same host (its
I{origin}), so that consecutive associations of one modality continue a
study, as storescp's rule has them do.  A sender that moves on to another
study leaves the study it was sending, and a study ends when every sender
has left it, or when none of its objects has arrived for the timeout.
Several associations of one origin at once (a PACS sending studies in
parallel under one AE title) are several senders: they do not end each
other's studies.  Each study episode ends exactly once.  Every open study
has one L{IDelayedCall} on the injected clock, reset by each of its
objects, so tests advance time instead of waiting.

Daemons sharing one index may each receive part of a study.  An
L{agreement<StudyTracker.agreement>} among them then has the last word on
a study whose end is due here (its timeout ran out, or its senders moved
on): it ends here, or later, once the study has had no object for the
timeout on any daemon, or not at all, because another daemon ended it.

The L{StudyJournal} keeps open studies across a crash: storescp forgets
the end-of-study work of a study that was still open when it was killed;
dicomd runs it at its next start.  It lives in the state directory
(L{dicomd.storage.state}), not in the storage area it is about.
"""

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set, Tuple

from twisted.internet import defer
from twisted.logger import Logger

from dicomd.storage.scp import ReceivedInstance
from dicomd.storage.state import STATE_FILE_MODE, makeStateDirectory

#: A calling AE title at a host.
Origin = Tuple[str, str]
#: An association, or the L{Origin} standing for the ones that closed
#: (and for objects that came on no association).
Sender = object

#: What an agreement says of a study another daemon ended
#: (L{StudyTracker.agreement}).
ENDED_ELSEWHERE = "ended elsewhere"


@dataclass
class StudyEpisode:
    """
    The objects of one study received since it last began.

    @ivar files: the stored files' paths, in order of arrival, each once:
        an object sent again is stored again under the same name.
    @ivar objects: the objects received, those sent again included.
    @ivar lastObject: the last L{dicomd.storage.scp.ReceivedInstance}, whose
        AE titles and address the end-of-study command gets.
    @ivar key: names the episode in the L{StudyJournal}.
    """

    studyInstanceUID: str
    startedAt: float
    files: List[str] = field(default_factory=list)
    objects: int = 0
    senders: Set[Sender] = field(default_factory=set)
    lastObject: object = None
    timer: object = None
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    _paths: Set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def add(self, path: Optional[str]) -> None:
        """
        Count an object of the study, and add its file unless the episode
        has it already.

        @param path: where it was stored, or C{None} (not stored).
        """
        self.objects += 1
        if path is not None and path not in self._paths:
            self._paths.add(path)
            self.files.append(path)


class StudyTracker:
    """
    Tracks open studies and ends each once.

    @ivar timeout: seconds without an object after which a study ends, or
        C{None} to end studies only when their senders move on (and at
        shutdown).
    @ivar onStudyEnded: called with each ended L{StudyEpisode}; may return a
        L{Deferred}.
    @ivar agreement: C{None} when this tracker alone decides; or, among
        daemons sharing an index, called with an episode whose end is due
        and the time, returning a L{Deferred} that fires with C{None} to
        end it here, a number of seconds to wait before asking again, or
        L{ENDED_ELSEWHERE}.
    @ivar onStudyEndedElsewhere: called with each episode that another
        daemon ended (its end-of-study work is not done here).
    """

    log = Logger()

    def __init__(self, onStudyEnded: Callable[[StudyEpisode], Optional[defer.Deferred]], *, timeout=None, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.onStudyEnded = onStudyEnded
        self.agreement: Optional[Callable[[StudyEpisode, float], defer.Deferred]] = None
        self.onStudyEndedElsewhere: Callable[[StudyEpisode], None] = lambda episode: None
        self.timeout = timeout
        self._reactor = reactor
        self.open: Dict[str, StudyEpisode] = {}
        self._currentStudy: Dict[Sender, str] = {}
        # Origin -> the study its last closed association was on.
        self._parked: Dict[Origin, str] = {}
        self._running: Set[defer.Deferred] = set()

    def instanceStored(self, received) -> None:
        """
        An object was stored: continue or begin its study's episode, and end
        the study its sender was sending before, if the sender was the last
        one on it.
        """
        studyUID = received.studyInstanceUID
        if not studyUID:
            return
        origin = (received.callingAETitle, received.peerHost)
        sender = received.association if received.association is not None else origin
        if sender is not origin and sender not in self._currentStudy:
            self._followed(received.association, origin)
            parked = self._parked.pop(origin, None)
            if parked == studyUID:
                # This association takes over from the last one of its
                # origin that closed, on the same study.
                self.open[parked].senders.discard(origin)
            elif parked is not None:
                self._leave(origin, parked)
        previous = self._currentStudy.get(sender)
        if previous is not None and previous != studyUID:
            self._leave(sender, previous)
        self._currentStudy[sender] = studyUID
        episode = self.open.get(studyUID)
        if episode is None:
            episode = self.open[studyUID] = StudyEpisode(studyUID, received.receivedAt)
        episode.senders.add(sender)
        episode.lastObject = received
        episode.add(received.path)
        if self.timeout:
            if episode.timer is None:
                episode.timer = self._reactor.callLater(self.timeout, self._timedOut, studyUID)
            else:
                episode.timer.reset(self.timeout)

    def _followed(self, association, origin: Origin) -> None:
        """
        Start following an association: when it closes, its origin stands
        in for it on the study it was on.
        """
        whenClosed = getattr(association, "whenClosed", None)
        if whenClosed is not None:
            whenClosed().addCallback(lambda _: self._associationClosed(association, origin))

    def _associationClosed(self, association, origin: Origin) -> None:
        studyUID = self._currentStudy.pop(association, None)
        episode = self.open.get(studyUID) if studyUID is not None else None
        if episode is None:
            return
        episode.senders.discard(association)
        parked = self._parked.get(origin)
        if parked is not None and parked != studyUID:
            self._leave(origin, parked)
        self._parked[origin] = studyUID
        episode.senders.add(origin)

    def _leave(self, sender: Sender, studyUID: str) -> None:
        """
        A sender left a study: end it if it was the last sender on it.
        """
        episode = self.open.get(studyUID)
        if episode is not None:
            episode.senders.discard(sender)
            if not episode.senders:
                self._due(episode, "its senders moved on to other studies")

    def handOver(self, successor: "StudyTracker") -> None:
        """
        Move every open episode, and the study each sender is on, to
        C{successor} (the tracker of the AE a reload built in place of
        this one's), so that each ends once, there, after its timeout.
        """
        for episode in self.open.values():
            if episode.timer is not None:
                episode.timer.cancel()
                episode.timer = None
            successor.open[episode.studyInstanceUID] = episode
            if successor.timeout:
                episode.timer = successor._reactor.callLater(successor.timeout, successor._timedOut, episode.studyInstanceUID)
        successor._currentStudy.update(self._currentStudy)
        successor._parked.update(self._parked)
        self.open.clear()
        self._currentStudy.clear()
        self._parked.clear()

    def _timedOut(self, studyUID: str) -> None:
        episode = self.open.get(studyUID)
        if episode is not None:
            episode.timer = None
            self._due(episode, "no object for %s s" % (self.timeout,))

    def _due(self, episode: StudyEpisode, why: str) -> None:
        """
        An open episode's end is due here: end it, unless the
        L{agreement} says to wait or that another daemon ended it.  An
        object that arrives while it is asked makes the answer moot: the
        episode goes on.
        """
        if self.agreement is None:
            self.end(episode, why)
            return
        objects = episode.objects

        def answered(verdict):
            if self.open.get(episode.studyInstanceUID) is not episode or episode.objects != objects:
                return
            if verdict is None:
                self.end(episode, why)
            elif verdict == ENDED_ELSEWHERE:
                self._forget(episode)
                self.log.info("Study {uid} ended on another node", uid=episode.studyInstanceUID)
                self.onStudyEndedElsewhere(episode)
            elif episode.timer is None:
                episode.timer = self._reactor.callLater(verdict, self._timedOut, episode.studyInstanceUID)

        def failed(failure):
            self.log.warn(
                "Cannot agree on the end of study {uid} with the other nodes ({error}); it ends here",
                uid=episode.studyInstanceUID,
                error=failure.getErrorMessage(),
            )
            answered(None)

        self.agreement(episode, self._reactor.seconds()).addCallbacks(answered, failed)

    def end(self, episode: StudyEpisode, why: str) -> None:
        """
        End an episode now: an open one, or one recovered from a
        L{StudyJournal}, which is not open here.
        """
        self._forget(episode)
        files = len(episode.files)
        self.log.info(
            "End of study {uid} ({count} objects{received}): {why}",
            uid=episode.studyInstanceUID,
            count=episode.objects,
            received="" if files == episode.objects else " received, %d files" % (files,),
            why=why,
        )
        result = defer.maybeDeferred(self.onStudyEnded, episode)
        result.addErrback(lambda f: self.log.failure("End-of-study actions for {uid} failed", f, uid=episode.studyInstanceUID))
        if not result.called:
            self._running.add(result)
            result.addBoth(lambda _: self._running.discard(result))

    def _forget(self, episode: StudyEpisode) -> None:
        """
        Stop following an episode: it is no longer open, and no sender is
        on it.
        """
        if self.open.get(episode.studyInstanceUID) is episode:
            del self.open[episode.studyInstanceUID]
        if episode.timer is not None:
            episode.timer.cancel()
            episode.timer = None
        for sender in episode.senders:
            if self._currentStudy.get(sender) == episode.studyInstanceUID:
                del self._currentStudy[sender]
            if self._parked.get(sender) == episode.studyInstanceUID:
                del self._parked[sender]

    def endAll(self) -> defer.Deferred:
        """
        End every open study now (at shutdown), and wait for all
        end-of-study actions, these and those already running.
        """
        for episode in list(self.open.values()):
            self.end(episode, "dicomd is stopping")
        return defer.DeferredList(list(self._running))


class StudyJournal:
    """
    The study episodes whose end-of-study work is still to do, in a file
    of the state directory, so that a daemon killed (SIGKILL, power cut)
    runs that work at its next start instead of forgetting it.  Each
    storage area has its own file there (L{fileName}), so that processes
    storing into different directories keep apart.

    The file has one JSON object per line: C{{"episode", "study", "file",
    "calling", "called", "peer", "at"}} for each object stored in a
    tracked study, written before the object's C-STORE-RSP is sent, and
    C{{"ended": episode}} once an episode's end-of-study work is done.  It
    is emptied whenever no episode is pending, and removed when its last
    user stops, so it stays small.

    One process keeps one journal per directory (L{forDirectory}): the AEs
    sharing a storage area, and the AE that a reload builds while the one
    it replaces finishes its associations, write to the same one, and only
    the first to start reads what a previous run left.

    @ivar path: the journal file.
    @ivar directory: the storage area; a recovered file outside it is
        dropped.
    @ivar pending: the keys of the episodes not ended yet.
    """

    log = Logger()

    _open: Dict[str, "StudyJournal"] = {}

    def __init__(self, directory: str, stateDirectory: str):
        """
        @param stateDirectory: where the journal is kept; it is made
            (L{makeStateDirectory}) if missing.
        @raise OSError: it cannot be made.
        """
        self.directory = os.path.realpath(directory)
        self.path = os.path.join(makeStateDirectory(stateDirectory), self.fileName(self.directory))
        self.pending: Set[str] = set()
        self._file = None
        self._users = 0
        self._recovered = False

    @staticmethod
    def fileName(directory: str) -> str:
        """
        The name of the journal of the storage area whose real path is
        C{directory}: C{eostudy-HASH.journal}, HASH a digest of that path,
        which stays short whatever the path and is the same however the
        area is reached (relative paths, symbolic links).
        """
        digest = hashlib.sha256(os.fsencode(directory)).hexdigest()[:32]
        return "eostudy-%s.journal" % (digest,)

    @classmethod
    def forDirectory(cls, directory: str, stateDirectory: str) -> "StudyJournal":
        """
        The journal of a storage area, shared by its users in this process
        (the first one's C{stateDirectory} counts); each user calls
        L{release} when it stops.

        @raise OSError: the state directory cannot be made.
        """
        key = os.path.realpath(directory)
        journal = cls._open.get(key)
        if journal is None:
            journal = cls._open[key] = cls(key, stateDirectory)
        journal._users += 1
        return journal

    def recover(self) -> List[StudyEpisode]:
        """
        Read the journal a previous run left, and start a new one that
        holds just the episodes it left open; the second call in a
        process, and later ones, find nothing.

        @return: those episodes, in the order they began, with their files
            and their last object's AE titles and address.
        """
        if self._recovered:
            return []
        self._recovered = True
        episodes: Dict[str, StudyEpisode] = {}
        lines: Dict[str, List[str]] = {}
        try:
            with open(self.path, encoding="utf-8") as journal:
                for number, line in enumerate(journal, 1):
                    entry = self._parse(line, number)
                    if entry is None:
                        continue
                    if "ended" in entry:
                        episodes.pop(entry["ended"], None)
                        lines.pop(entry["ended"], None)
                        continue
                    episode = episodes.get(entry["episode"])
                    if episode is None:
                        episode = episodes[entry["episode"]] = StudyEpisode(entry["study"], entry["at"], key=entry["episode"])
                    episode.add(entry["file"])
                    episode.lastObject = ReceivedInstance(
                        sopClassUID="",
                        sopInstanceUID="",
                        transferSyntaxUID="",
                        callingAETitle=entry["calling"],
                        calledAETitle=entry["called"],
                        peerHost=entry["peer"],
                        receivedAt=entry["at"],
                        path=entry["file"],
                    )
                    lines.setdefault(entry["episode"], []).append(line if line.endswith("\n") else line + "\n")
        except FileNotFoundError:
            pass
        temporary = self.path + ".new"
        with open(temporary, "w", encoding="utf-8", opener=self._opener) as journal:
            journal.writelines(line for episodeLines in lines.values() for line in episodeLines)
        os.replace(temporary, self.path)
        self.pending.update(episodes)
        return list(episodes.values())

    def _parse(self, line: str, number: int) -> Optional[dict]:
        """
        One journal line, checked; C{None} (with a warning) for a line a
        crash cut short or anything else unusable.
        """
        try:
            entry = json.loads(line)
            if isinstance(entry, dict) and set(entry) == {"ended"} and isinstance(entry["ended"], str):
                return entry
            texts = ("episode", "study", "file", "calling", "called", "peer")
            if not isinstance(entry, dict) or not all(isinstance(entry.get(name), str) for name in texts):
                raise ValueError("not a journal entry")
            if not isinstance(entry.get("at"), (int, float)):
                raise ValueError("no arrival time")
        except ValueError as e:
            self.log.warn("Ignoring line {number} of {path}: {why}", number=number, path=self.path, why=e)
            return None
        if os.path.commonpath([self.directory, os.path.realpath(entry["file"])]) != self.directory:
            self.log.warn("Ignoring line {number} of {path}: {file} is outside the storage area", number=number, path=self.path, file=entry["file"])
            return None
        return entry

    def stored(self, episode: StudyEpisode, received: ReceivedInstance) -> None:
        """
        Record an object stored in an open episode.
        """
        self.pending.add(episode.key)
        self._write(
            {
                "episode": episode.key,
                "study": episode.studyInstanceUID,
                "file": received.path,
                "calling": received.callingAETitle,
                "called": received.calledAETitle,
                "peer": received.peerHost,
                "at": received.receivedAt,
            }
        )

    def ended(self, episode: StudyEpisode) -> None:
        """
        An episode's end-of-study work is done; when it was the last
        pending one, the journal is emptied.
        """
        self.pending.discard(episode.key)
        if self.pending:
            self._write({"ended": episode.key})
        else:
            self._writable().truncate(0)

    def release(self) -> None:
        """
        A user stops.  When it was the last, and nothing is pending (a
        clean stop), the journal is removed.
        """
        self._users -= 1
        if self._users > 0:
            return
        del self._open[self.directory]
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self.pending:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def _writable(self):
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8", opener=self._opener)
        return self._file

    @staticmethod
    def _opener(path: str, flags: int) -> int:
        return os.open(path, flags, STATE_FILE_MODE)

    def _write(self, entry: dict) -> None:
        journal = self._writable()
        journal.write(json.dumps(entry, separators=(",", ":")) + "\n")
        journal.flush()

    def syncInThread(self) -> None:
        """
        C{fsync} what was written (with storescp's C{--fsync}, so that the
        journal survives a power cut as the stored files do); in a worker
        thread, since it may take milliseconds that the other associations
        must not wait for.
        """
        os.fsync(self._writable().fileno())
