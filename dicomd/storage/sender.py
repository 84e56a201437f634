"""
Sending many files: the storage SCU's batch job (PS3.4 Annex B, SCU role).

L{sendFiles} proposes presentation contexts for the files (or takes a fixed
list, such as an association negotiation profile's), splits them into
groups that fit the 128 contexts of one association, and sends each group's
files over one or several associations at once.  Each association carries
as many C-STOREs at a time as its peer allows: one, or the Asynchronous
Operations Window it granted (PS3.7 D.3.3.3), so that the next request
leaves before the previous response arrives; and its next file is read
ahead while the peer stores the one before.  L{StorePipeline} does this for
one association, for the C-STORE sub-operations of C-MOVE and C-GET too.  It reports every file's outcome
as it happens and a L{SendReport} at the end.  A failed file stops the
job unless told to go on, as in DCMTK's storescu; when going on, an
association that ends under a file is replaced by a new one for the next.
"""

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

from twisted.internet import defer
from twisted.logger import Logger

from dicomd.dimse import status as _status
from dicomd.errors import AssociationError
from dicomd.storage.scu import (
    DEFAULT_COMPRESSION_LEVEL,
    DicomFile,
    FileDataSet,
    StoreFailed,
    chooseContext,
    proposePresentationContexts,
    splitProposals,
    store,
)
from dicomd.ul.negotiation import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN

log = Logger()


@dataclass(frozen=True)
class FailedStore:
    """
    A C-STORE that failed.

    @ivar reason: why, in words.
    @ivar status: the status the peer answered, or C{None} when the failure
        was not the peer's answer (nothing sendable, association ended).
    """

    path: str
    reason: str
    status: Optional[int] = None


@dataclass
class SendReport:
    """
    What a batch achieved.

    @ivar sent: C-STOREs answered with success or a warning.
    @ivar warnings: those of C{sent} answered with a warning.
    @ivar failed: C-STOREs that failed: refused by the peer, not sendable
        (no presentation context, no conversion), or cut off by the end of
        their association.
    @ivar unsent: files never tried: the job halted first, or no
        association could be established for them.
    @ivar bytes: data set bytes of the files sent.
    @ivar failures: a L{FailedStore} for each failed C-STORE, in order.
    @ivar associationErrors: why associations could not be established or
        ended under a C-STORE, in order.
    """

    sent: int = 0
    warnings: int = 0
    failed: int = 0
    unsent: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failures: List[FailedStore] = field(default_factory=list)
    associationErrors: List[Exception] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        """
        Whether every file was sent and stored.
        """
        return not (self.failed or self.unsent or self.associationErrors)

    @property
    def megabytesPerSecond(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return "%d sent (%d with warnings), %d failed%s, %d bytes in %.2f s (%.1f MB/s)" % (
            self.sent,
            self.warnings,
            self.failed,
            ", %d not sent" % (self.unsent,) if self.unsent else "",
            self.bytes,
            self.seconds,
            self.megabytesPerSecond,
        )


def isStored(result) -> bool:
    """
    Whether a C-STORE's L{dicomd.storage.scu.StoreResult} means the peer
    stored the object: success or warning.  Any other status, including
    one no standard defines, is a failure.
    """
    return _status.category(result.status) in (_status.Category.SUCCESS, _status.Category.WARNING)


class _ReadAhead:
    """
    The next file of one association, opened and its first piece read
    while the peer is still storing the file before: when the response
    comes, the next request goes out without waiting for the disk.  (A
    storage SCP takes about as long to store a small object as we take to
    read and send it; reading ahead keeps both sides busy instead of each
    waiting for the other.)
    """

    def __init__(self):
        self._dicomFile = None
        self._dataSet = None

    def prepare(self, association, dicomFile: DicomFile, preferDeflated: bool) -> None:
        """
        Hand the request just sent to the kernel, then read C{dicomFile}
        ahead if it goes as it is; one that is converted, or cannot be
        opened, is left to L{store}, which reports why.
        """
        self.discard()
        association.flush()
        try:
            context = chooseContext(association, dicomFile.sopClassUID, dicomFile.transferSyntaxUID, preferDeflated)
        except StoreFailed:
            return
        if context.transferSyntax != dicomFile.transferSyntaxUID:
            return
        try:
            dataSet = FileDataSet(dicomFile)
        except OSError:
            return
        try:
            dataSet.readAhead(association.readSize)
        except OSError:
            dataSet.close()
            return
        self._dicomFile, self._dataSet = dicomFile, dataSet

    def take(self, dicomFile: DicomFile):
        """
        What to give L{store} for C{dicomFile}: its L{FileDataSet} if it
        was read ahead, else the file itself.
        """
        if self._dicomFile is dicomFile:
            dataSet, self._dicomFile, self._dataSet = self._dataSet, None, None
            return dataSet
        self.discard()
        return dicomFile

    def discard(self) -> None:
        """
        Close a file read ahead and not sent (another association took it,
        or the job ends).
        """
        if self._dataSet is not None:
            self._dataSet.close()
        self._dicomFile = self._dataSet = None


class StorePipeline:
    """
    The C-STOREs of one association, answered in the order sent: as many
    outstanding at once as the association allows (its
    C{operationsWindow}: one, or the Asynchronous Operations Window its
    peer granted), and the next file read ahead while the peer stores the
    one before.  L{sendFiles} and the C-STORE sub-operations of C-MOVE and
    C-GET (L{dicomd.services.retrieve}) send through it.
    """

    def __init__(self, association, *, reactor=None, **storeOptions):
        """
        @param storeOptions: the keyword arguments of every L{store}
            (C{preferDeflated}, C{moveOriginatorAETitle}...).
        """
        self.association = association
        self._reactor = reactor
        self._storeOptions = storeOptions
        self._preferDeflated = storeOptions.get("preferDeflated", False)
        self._ahead = _ReadAhead()
        self._outstanding = deque()

    @property
    def hasRoom(self) -> bool:
        """
        Whether another C-STORE may go before the oldest is answered.
        """
        window = self.association.operationsWindow
        return window is None or len(self._outstanding) < window

    @property
    def outstanding(self) -> int:
        """
        How many C-STOREs were sent and not yet taken by L{next}.
        """
        return len(self._outstanding)

    def store(self, dicomFile: DicomFile, upcoming: Optional[DicomFile] = None) -> None:
        """
        Send C{dicomFile} (from what was read ahead, if it was), then read
        C{upcoming} ahead while the peer stores it.
        """
        stored = store(self.association, self._ahead.take(dicomFile), reactor=self._reactor, **self._storeOptions)
        self._outstanding.append((dicomFile, stored))
        if upcoming is not None and not stored.called:
            self._ahead.prepare(self.association, upcoming, self._preferDeflated)

    def next(self) -> Tuple[DicomFile, defer.Deferred]:
        """
        The oldest C-STORE outstanding: its file, and the L{Deferred} of
        L{store}'s outcome.
        """
        return self._outstanding.popleft()

    def close(self) -> None:
        """
        Close the file read ahead, if any: no more C-STOREs go on this
        association.
        """
        self._ahead.discard()


def sendFiles(
    connectAssociation: Callable[[Sequence[Tuple[str, List[str]]]], defer.Deferred],
    files: Sequence[DicomFile],
    *,
    proposals: Optional[Sequence[Tuple[str, Sequence[str]]]] = None,
    preferred: Optional[str] = None,
    combine: bool = False,
    associations: int = 1,
    repeat: int = 1,
    halt: bool = True,
    abort: bool = False,
    compressionLevel: int = DEFAULT_COMPRESSION_LEVEL,
    onResult: Optional[Callable[[DicomFile, Optional[object], Optional[str]], None]] = None,
    reactor=None,
) -> defer.Deferred:
    """
    Send C{files}.

    @param connectAssociation: called with the proposed contexts, returns a
        L{Deferred} firing with an established association.
    @param proposals: the presentation contexts to propose, all on each
        association (at most 128); by default they are built from the
        files with L{proposePresentationContexts} and split as needed.
    @param preferred: the preferred transfer syntax of the built proposals
        (storescu's C{-x...} options); deflated explicit VR little endian
        also makes uncompressed files go deflated when the peer accepts it.
    @param combine: one context per SOP class with all the syntaxes
        (storescu's C{+C}).
    @param associations: how many associations may carry files at once.
    @param repeat: send each file this many times (storescu's C{--repeat}).
    @param halt: stop at the first failed file (storescu's default).
    @param abort: end associations with A-ABORT instead of A-RELEASE.
    @param compressionLevel: zlib's level for deflated data sets.
    @param onResult: called for each C-STORE tried as C{onResult(file,
        result, reason)}: the L{dicomd.storage.scu.StoreResult} (with
        C{reason} C{None}), or C{None} and the reason it failed.
    @return: a L{Deferred} firing with the L{SendReport}; it does not fail.
    """
    if reactor is None:
        from twisted.internet import reactor
    report = SendReport()
    started = reactor.seconds()
    halted = []
    preferDeflated = preferred == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN

    def record(dicomFile, result, reason):
        if reason is None and isStored(result):
            report.sent += 1
            report.bytes += result.size
            if _status.category(result.status) is _status.Category.WARNING:
                report.warnings += 1
        else:
            report.failed += 1
            if reason is None:
                report.failures.append(FailedStore(dicomFile.path, _status.describe(result.status), result.status))
            else:
                report.failures.append(FailedStore(dicomFile.path, reason))
            if halt:
                halted.append(dicomFile)
        if onResult is not None:
            onResult(dicomFile, result, reason)

    @defer.inlineCallbacks
    def worker(group, queue):
        pipeline = None
        # Whether the pipeline's association ended under a C-STORE: the
        # others outstanding on it fail with it, and are counted as they
        # do, before the next file gets a new association.
        lost = False
        # The sends of the file being repeated that are still to go.
        repeats = deque()
        try:
            while True:
                if pipeline is None or (lost and not pipeline.outstanding):
                    pipeline = None
                    if halted or not (queue or repeats):
                        return
                    try:
                        association = yield connectAssociation(group)
                    except Exception as e:
                        # Refused, rejected, timed out: nothing left in
                        # this group can go.
                        report.associationErrors.append(e)
                        report.unsent += len(queue)
                        queue.clear()
                        return
                    pipeline = StorePipeline(
                        association, preferDeflated=preferDeflated, compressionLevel=compressionLevel, reactor=reactor
                    )
                    lost = False
                    # Other associations may have taken the last files,
                    # or the job halted, while this one was being set up.
                    continue
                while not (lost or halted) and (repeats or queue) and pipeline.hasRoom:
                    if not repeats:
                        repeats.extend([queue.popleft()] * repeat)
                    dicomFile = repeats.popleft()
                    pipeline.store(dicomFile, repeats[0] if repeats else (queue[0] if queue else None))
                if not pipeline.outstanding:
                    return
                dicomFile, stored = pipeline.next()
                try:
                    result = yield stored
                except StoreFailed as e:
                    record(dicomFile, None, str(e))
                except AssociationError as e:
                    if not lost:
                        # That association is over; the next file gets a
                        # new one, unless the job halts.
                        report.associationErrors.append(e)
                        lost = True
                        pipeline.close()
                        repeats.clear()
                    record(dicomFile, None, str(e))
                else:
                    record(dicomFile, result, None)
        finally:
            if pipeline is not None:
                pipeline.close()
                if not lost:
                    yield pipeline.association.abort() if abort else pipeline.association.release()

    @defer.inlineCallbacks
    def run():
        if proposals is None:
            groups = []
            for group in splitProposals(proposePresentationContexts(files, preferred=preferred, combine=combine)):
                classes = {abstractSyntax for abstractSyntax, _ in group}
                groups.append((group, [dicomFile for dicomFile in files if dicomFile.sopClassUID in classes]))
        else:
            groups = [(list(proposals), list(files))]
        for group, groupFiles in groups:
            queue = deque(groupFiles)
            if not halted:
                workers = [worker(group, queue) for _ in range(max(1, min(associations, len(queue))))]
                results = yield defer.DeferredList(workers, consumeErrors=True)
                for ok, failure in results:
                    if not ok:
                        log.failure("Sending files failed", failure)
            report.unsent += len(queue)
        report.seconds = reactor.seconds() - started
        return report

    return run()
