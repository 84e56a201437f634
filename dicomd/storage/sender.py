"""
Sending many files: the storage SCU's batch job (PS3.4 Annex B, SCU role).

L{sendFiles} proposes presentation contexts for the files, splits them into
groups that fit the 128 contexts of one association, and sends each group's
files over one or several associations at once, each association carrying
one C-STORE at a time.  It reports every file's outcome as it happens and a
L{SendReport} at the end; a failed file stops the job unless told to go on,
as in DCMTK's storescu.
"""

import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

from twisted.internet import defer
from twisted.logger import Logger

from dicomd.dimse import status as _status
from dicomd.net.association import AssociationError
from dicomd.storage.scu import DicomFile, StoreFailed, proposePresentationContexts, splitProposals, store


@dataclass
class SendReport:
    """
    What a batch achieved.

    @ivar failures: C{(path, reason)} for each file that was not stored.
    """

    sent: int = 0
    warnings: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failures: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def megabytesPerSecond(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return "%d sent (%d with warnings), %d failed, %d bytes in %.2f s (%.1f MB/s)" % (
            self.sent,
            self.warnings,
            self.failed,
            self.bytes,
            self.seconds,
            self.megabytesPerSecond,
        )


class _Halted(Exception):
    """
    Another file failed and the job stops.
    """


log = Logger()


def sendFiles(
    connectAssociation: Callable[[Sequence[Tuple[str, List[str]]]], defer.Deferred],
    files: Sequence[DicomFile],
    *,
    preferred: Optional[str] = None,
    combine: bool = False,
    associations: int = 1,
    repeat: int = 1,
    halt: bool = True,
    abort: bool = False,
    onResult: Optional[Callable[[DicomFile, Optional[object], Optional[str]], None]] = None,
    reactor=None,
) -> defer.Deferred:
    """
    Send C{files}.

    @param connectAssociation: called with the proposed contexts, returns a
        L{Deferred} firing with an established association.
    @param associations: how many associations may carry files at once.
    @param repeat: send each file this many times (storescu's C{--repeat}).
    @param halt: stop at the first failed file (storescu's default).
    @param abort: end associations with A-ABORT instead of A-RELEASE.
    @param onResult: called for each attempt as C{onResult(file, result,
        reason)}: the L{dicomd.storage.scu.StoreResult} (with C{reason}
        C{None}), or C{None} and the reason it failed.
    @return: a L{Deferred} firing with the L{SendReport}.
    """
    if reactor is None:
        from twisted.internet import reactor
    report = SendReport()
    started = reactor.seconds()
    halted = []

    def record(dicomFile, result, reason):
        if reason is None and _status.category(result.status) in (_status.Category.SUCCESS, _status.Category.WARNING):
            report.sent += 1
            report.bytes += result.size
            if _status.category(result.status) is _status.Category.WARNING:
                report.warnings += 1
        else:
            report.failed += 1
            why = reason or _status.describe(result.status)
            report.failures.append((dicomFile.path, why))
            if halt:
                halted.append(dicomFile)
        if onResult is not None:
            onResult(dicomFile, result, reason)

    @defer.inlineCallbacks
    def worker(proposals, queue):
        association = None
        try:
            while queue and not halted:
                if association is None:
                    association = yield connectAssociation(proposals)
                dicomFile = queue.pop(0)
                for _ in range(repeat):
                    if halted:
                        break
                    try:
                        result = yield store(association, dicomFile, reactor=reactor)
                    except StoreFailed as e:
                        record(dicomFile, None, str(e))
                    except AssociationError as e:
                        record(dicomFile, None, str(e))
                        raise
                    else:
                        record(dicomFile, result, None)
        except Exception as e:
            # A refused connection, a rejection or an abort: what is left in
            # this worker's queue cannot be sent.
            for dicomFile in queue:
                record(dicomFile, None, "not sent: %s" % (e,))
            del queue[:]
            raise
        finally:
            if association is not None:
                yield association.abort() if abort else association.release()

    @defer.inlineCallbacks
    def run():
        proposals = proposePresentationContexts(files, preferred=preferred, combine=combine)
        for group in splitProposals(proposals):
            classes = {abstractSyntax for abstractSyntax, _ in group}
            queue = [dicomFile for dicomFile in files if dicomFile.sopClassUID in classes]
            workers = [worker(group, queue) for _ in range(max(1, min(associations, len(queue))))]
            results = yield defer.DeferredList(workers, consumeErrors=True)
            for ok, failure in results:
                if not ok:
                    log.error("Association failed: {why}", why=str(failure.value))
            if halted:
                break
        report.seconds = reactor.seconds() - started
        return report

    return run()
