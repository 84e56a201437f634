"""
End of study: deciding when all objects of a study have arrived, as
storescp's C{--eostudy-timeout}, C{--exec-on-eostudy} and
C{--rename-on-eostudy} need.

storescp decides with one rule: a study ends when the next object received
belongs to another study, or when nothing arrives for the timeout.  With one
sender at a time that works; with several senders at once their objects
interleave and the rule ends studies that are still arriving.  The
L{StudyTracker} keeps the rule per sender instead: a sender (a calling AE
title at a host, so consecutive associations of one modality continue a
study) that moves on to another study leaves the study it was sending, and a
study ends when every sender has left it, or when none of its objects has
arrived for the timeout.  Each study episode ends exactly once.  Every open
study has one L{IDelayedCall} on the injected clock, reset by each of its
objects, so tests advance time instead of waiting.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set, Tuple

from twisted.internet import defer
from twisted.logger import Logger

Sender = Tuple[str, str]


@dataclass
class StudyEpisode:
    """
    The objects of one study received since it last began.

    @ivar files: the stored files' paths, in order of arrival.
    @ivar lastObject: the last L{dicomd.storage.scp.ReceivedInstance}, whose
        AE titles and address the end-of-study command gets.
    """

    studyInstanceUID: str
    startedAt: float
    files: List[str] = field(default_factory=list)
    senders: Set[Sender] = field(default_factory=set)
    lastObject: object = None
    timer: object = None


class StudyTracker:
    """
    Tracks open studies and ends each once.

    @ivar timeout: seconds without an object after which a study ends, or
        C{None} to end studies only when their senders move on (and at
        shutdown).
    @ivar onStudyEnded: called with each ended L{StudyEpisode}; may return a
        L{Deferred}.
    """

    log = Logger()

    def __init__(self, onStudyEnded: Callable[[StudyEpisode], Optional[defer.Deferred]], *, timeout=None, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.onStudyEnded = onStudyEnded
        self.timeout = timeout
        self._reactor = reactor
        self.open: Dict[str, StudyEpisode] = {}
        self._currentStudy: Dict[Sender, str] = {}
        self._running: Set[defer.Deferred] = set()

    def instanceStored(self, received) -> None:
        """
        An object was stored: continue or begin its study's episode, and end
        the study its sender was sending before, if the sender was the last
        one on it.
        """
        studyUID = str(received.attributes.get("StudyInstanceUID", "") or "")
        if not studyUID:
            return
        sender = (received.callingAETitle, received.peerHost)
        previous = self._currentStudy.get(sender)
        if previous is not None and previous != studyUID:
            episode = self.open.get(previous)
            if episode is not None:
                episode.senders.discard(sender)
                if not episode.senders:
                    self._end(episode, "its senders moved on to other studies")
        self._currentStudy[sender] = studyUID
        episode = self.open.get(studyUID)
        if episode is None:
            episode = self.open[studyUID] = StudyEpisode(studyUID, received.receivedAt)
        episode.senders.add(sender)
        episode.lastObject = received
        if received.path is not None:
            episode.files.append(received.path)
        if self.timeout:
            if episode.timer is None:
                episode.timer = self._reactor.callLater(self.timeout, self._timedOut, studyUID)
            else:
                episode.timer.reset(self.timeout)

    def _timedOut(self, studyUID: str) -> None:
        episode = self.open.get(studyUID)
        if episode is not None:
            episode.timer = None
            self._end(episode, "no object for %s s" % (self.timeout,))

    def _end(self, episode: StudyEpisode, why: str) -> None:
        del self.open[episode.studyInstanceUID]
        if episode.timer is not None:
            episode.timer.cancel()
            episode.timer = None
        for sender in episode.senders:
            if self._currentStudy.get(sender) == episode.studyInstanceUID:
                del self._currentStudy[sender]
        self.log.info(
            "End of study {uid} ({count} objects): {why}",
            uid=episode.studyInstanceUID,
            count=len(episode.files),
            why=why,
        )
        result = defer.maybeDeferred(self.onStudyEnded, episode)
        result.addErrback(lambda f: self.log.failure("End-of-study actions for {uid} failed", f, uid=episode.studyInstanceUID))
        if not result.called:
            self._running.add(result)
            result.addBoth(lambda _: self._running.discard(result))

    def endAll(self) -> defer.Deferred:
        """
        End every open study now (at shutdown), and wait for all
        end-of-study actions, these and those already running.
        """
        for episode in list(self.open.values()):
            self._end(episode, "dicomd is stopping")
        return defer.DeferredList(list(self._running))
