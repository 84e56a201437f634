"""
Ending a study once among the daemons sharing an index in PostgreSQL
(C{docs/scale-out.md}): L{SharedStudyEnds} is the
L{agreement<dicomd.storage.studies.StudyTracker.agreement>} of a storage
area's study tracker, asking the index whether a study whose end is due
here ends here, later, or ended on another daemon.
"""

from twisted.internet.threads import deferToThreadPool

from dicomd.archive.index import StudyEnd
from dicomd.storage.studies import ENDED_ELSEWHERE


class SharedStudyEnds:
    """
    Agrees on the ends of one storage area's studies through
    L{PostgreSQLArchiveIndex.claimStudyEnd
    <dicomd.archive.postgresql.PostgreSQLArchiveIndex.claimStudyEnd>}.

    @ivar timeout: the end-of-study timeout of the area, or C{None}.
    """

    def __init__(self, index, area: str, timeout, *, reactor, threadpool):
        """
        @param index: the L{PostgreSQLArchiveIndex
            <dicomd.archive.postgresql.PostgreSQLArchiveIndex>}.
        @param area: the area's L{areaKey<dicomd.archive.index.areaKey>}.
        """
        self._index = index
        self._area = area
        self.timeout = timeout
        self._reactor = reactor
        self._threadpool = threadpool

    def __call__(self, episode, now: float):
        """
        @return: a L{Deferred} firing with C{None} when the study ends here,
            the seconds to wait before asking again, or L{ENDED_ELSEWHERE}.
        """
        claiming = deferToThreadPool(
            self._reactor, self._threadpool, self._index.claimStudyEnd, self._area, episode.studyInstanceUID, now, self.timeout
        )
        return claiming.addCallback(self._verdict)

    def _verdict(self, claim):
        if claim is StudyEnd.CLAIMED:
            return None
        if claim is StudyEnd.ENDED_ELSEWHERE:
            return ENDED_ELSEWHERE
        return max(0.0, claim - self._reactor.seconds())
