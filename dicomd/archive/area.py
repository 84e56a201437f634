"""
A storage area in the archive: the files of one directory, kept in step
with the index, within the area's quota (dcmqrscp.cfg's AETable: storage
area and C{(maxStudies, maxBytesPerStudy)}).

The index names an area by its directory (L{areaKey}): AE titles that
share a directory share its rows, as dcmqrscp's AEs share the directory's
C{index.dat}.  They share its quota too: L{sharedQuotas} gives each
directory one, and the AEs storing into it one L{IndexedArea}.
L{adoptTitleArea} brings the rows of an index that named areas by AE
title under the directory's name.

L{IndexedArea} is what L{dicomd.archive.writer.IndexWriter} calls, in a
worker thread, with the files received since it last wrote (and what
L{dicomd.storage.scp.StorageArea} calls at start-up, to index what a crash
left unindexed): it records the files, deletes the files they replaced,
and enforces the quota as dcmqrscp does, by deleting the least recently
updated studies (files and rows together) when there are too many, and the
oldest instances of a study that grew too large.  Daemons sharing one
index share the quota, and take turns to add to an area and enforce it.
With forwarding routes,
each instance is queued for its destinations in the transaction that
indexes it (L{dicomd.archive.queue}), a file found after a crash too, and
the quota never deletes an instance still queued.
"""

import contextlib
import os
import threading
from typing import Dict, Iterable, List, Optional, Tuple

from twisted.logger import Logger

from dicomd.archive.dcmqrcfg import Quota
from dicomd.archive.index import ROWS_DROPPED, ROWS_MOVED, ReindexReport, StoredFile, areaKey
from dicomd.archive.queue import Forwarding
from dicomd.archive.reindexing import indexMissing
from dicomd.dimse.status import OUT_OF_RESOURCES
from dicomd.storage.scp import ReceivedInstance, StoreRefused


_log = Logger(namespace="dicomd.archive")


def strictestQuota(quotas: Iterable[Optional[Quota]]) -> Optional[Quota]:
    """
    The quota that keeps within every one of C{quotas}: the fewest studies
    and the fewest bytes per study they allow; C{None} (no quota) when
    none of them is a quota.
    """
    quotas = [quota for quota in quotas if quota is not None]
    if not quotas:
        return None
    return Quota(min(q.maxStudies for q in quotas), min(q.maxBytesPerStudy for q in quotas))


def sharedQuotas(writers: Iterable[Tuple[str, str, Optional[Quota]]]) -> Dict[str, Optional[Quota]]:
    """
    One quota per storage area, whatever number of AE titles store into
    it: the strictest of theirs (L{strictestQuota}), with a warning when
    they differ.  Only the AEs that store count: a quota is enforced when
    an object is stored, so a read-only AE's has no effect (nor has it in
    dcmqrscp).

    @param writers: C{(AE title, directory, quota)} of each writable AE.
    @return: L{areaKey} -> quota.
    """
    byArea: Dict[str, List[Tuple[str, Optional[Quota]]]] = {}
    for title, directory, quota in writers:
        byArea.setdefault(areaKey(directory), []).append((title, quota))
    quotas = {}
    for key, given in byArea.items():
        quotas[key] = strictestQuota(quota for _, quota in given)
        if len({quota for _, quota in given}) > 1:
            _log.warn(
                "AE titles {titles} store into {directory} with different quotas: "
                "the strictest, {quota}, applies to all of them",
                titles=", ".join(title for title, _ in given),
                directory=key,
                quota=_describeQuota(quotas[key]),
            )
    return quotas


def _describeQuota(quota: Optional[Quota]) -> str:
    if quota is None:
        return "none"
    return "%d studies of %d bytes" % (quota.maxStudies, quota.maxBytesPerStudy)


def checkSize(quota: Optional[Quota], received: ReceivedInstance) -> None:
    """
    Refuse a stored object that alone is larger than the study quota.

    @raise StoreRefused: it is (0xA700, out of resources).
    """
    if quota is None:
        return
    size = os.path.getsize(received.path)
    if size > quota.maxBytesPerStudy:
        raise StoreRefused(OUT_OF_RESOURCES, "object of %d bytes exceeds the quota of %d bytes per study" % (size, quota.maxBytesPerStudy))


def adoptTitleArea(index, title: str, directory: str) -> None:
    """
    Bring the rows an index kept under an AE title (before areas were
    named by their directory) under the name of that AE's directory, once,
    when a server starts (blocking).  The first AE title over a directory
    hands its rows over; the rows of any other are dropped, and the files
    only they described are indexed again from the directory.

    @param index: an L{dicomd.archive.index.IArchiveIndex} (blocking).
    """
    key = areaKey(directory)
    outcome = index.adoptArea(title, key)
    if outcome == ROWS_MOVED:
        _log.info("Index: the rows of AE title {title} are now those of its storage area {directory}", title=title, directory=key)
    elif outcome == ROWS_DROPPED:
        report = indexMissing(index, key, directory)
        _log.info(
            "Index: the rows of AE title {title} are dropped, another AE title's describe its storage area {directory}; "
            "{indexed} files only they described indexed again",
            title=title,
            directory=key,
            indexed=report.indexed,
        )


class IndexedArea:
    """
    One storage area's files and index rows, kept together.

    Every AE title storing into a directory stores through the same
    L{IndexedArea}, so that its quota is enforced under one lock; the
    daemons sharing a PostgreSQL index take turns on the index's lock for
    the area too (L{IArchiveIndex.quotaTurn
    <dicomd.archive.index.IArchiveIndex.quotaTurn>}).

    @ivar name: the AE titles storing into it, for log lines.
    @ivar key: the area's name in the index (L{areaKey}).
    @ivar directory: the area's directory, absolute.
    @ivar quota: the area's L{Quota}, or C{None}.
    @ivar router: decides where received instances are forwarded, or
        C{None}: its C{forwardingsFor(received)} returns the
        L{dicomd.archive.queue.Forwarding}s of an instance (called in a
        worker thread), and its C{queued(forwardings)} is told once they
        are in the queue.
    @ivar recoveryTitle: the AE title whose routes queue a file found
        after a crash (L{recover}); the file does not say which AE title
        it was sent to.
    """

    log = Logger()

    def __init__(self, index, name: str, directory: str, quota: Optional[Quota] = None, router=None, recoveryTitle: str = ""):
        """
        @param index: an L{dicomd.archive.index.IArchiveIndex} (blocking).
        """
        self.index = index
        self.name = name
        self.key = areaKey(directory)
        self.directory = os.path.abspath(directory)
        self.quota = quota
        self.router = router
        self.recoveryTitle = recoveryTitle
        self._quotaLock = threading.Lock()

    def _relative(self, path: str) -> str:
        root = self.directory.rstrip(os.sep) + os.sep
        tail = path[len(root) - 1 :]
        if path.startswith(root) and os.sep + "." not in tail and os.sep + os.sep not in tail and tail[-1] != os.sep:
            # A stored file's path, as the storage area made it: the part
            # after the root, without the cost of os.path.relpath, which
            # the index writer paid for every instance.
            return path[len(root) :]
        return os.path.relpath(path, self.directory)

    def _absolute(self, relative: str) -> str:
        return os.path.join(self.directory, relative)

    def _storedFile(self, received: ReceivedInstance) -> StoredFile:
        return StoredFile(
            self._relative(received.path),
            received.fileSize if received.fileSize is not None else os.path.getsize(received.path),
            received.transferSyntaxUID,
            received.receivedAt,
            received.callingAETitle,
        )

    def checkSize(self, received: ReceivedInstance) -> None:
        """
        Refuse an object that alone is larger than the study quota
        (L{checkSize}).
        """
        checkSize(self.quota, received)

    def addMany(self, received: List[ReceivedInstance]) -> None:
        """
        Index stored files, with their forwarding queue entries, in one
        transaction (a group commit, see L{dicomd.archive.writer}), enforce
        the quota, and delete the files they replaced.  Their sizes were
        checked (L{checkSize}) before they were acknowledged.

        @raise DATABASE_ERRORS: the index cannot record them; nothing was.
        """
        router = self.router
        items = [
            (
                each.head if each.prepared is None else each.prepared,
                self._storedFile(each),
                router.forwardingsFor(each) if router is not None else (),
            )
            for each in received
        ]
        with self._quotaTurn():
            replaced = self.index.addInstances(self.key, items)
            self._queued([forwarding for _, _, forwardings in items for forwarding in forwardings])
            self._enforce(received)
        self._delete(replaced)

    @contextlib.contextmanager
    def _quotaTurn(self):
        """
        With a quota, take this area's turn, among the writers of this
        process and of the other daemons sharing the index, to add to it
        and enforce the quota: no other adds to the area or deletes for
        its quota between this one's count and its deletions.
        """
        if self.quota is None:
            yield
            return
        with self._quotaLock, self.index.quotaTurn(self.key):
            yield

    def _queued(self, forwardings: List[Forwarding]) -> None:
        if forwardings:
            self.router.queued(forwardings)

    def _recoveredForwardings(self, header, stored: StoredFile) -> Tuple[Forwarding, ...]:
        """
        The forwardings of a file found after a crash: those the routes of
        L{recoveryTitle} give it.
        """
        received = ReceivedInstance(
            str(header.get("SOPClassUID", "")),
            str(header.get("SOPInstanceUID", "")),
            stored.transferSyntaxUID,
            stored.callingAETitle,
            self.recoveryTitle,
            "",
            stored.received,
            stored.size,
            attributes=header,
        )
        return self.router.forwardingsFor(received)

    def recover(self) -> None:
        """
        After a run that did not end cleanly, index the files of the area
        that the index lacks (blocking; at start-up, before associations are
        served): a crash between moving a file into place and indexing it
        leaves a complete file, perhaps acknowledged, that C-FIND, C-MOVE
        and C-GET would otherwise never see, nor forwarding send: each is
        queued as its routes say, with its row.  Done once per run.
        """
        if not self.index.claimRecovery(self.key, self.directory):
            return
        report, queued = self.catchUp()
        if not (report.indexed or report.removed or report.skipped):
            return
        self.log.info(
            "Recovery of {area} ({directory}): {indexed} files indexed that the index lacked, "
            "{replaced} older files of the same instances deleted, {skipped} files that are not DICOM left alone, "
            "{queued} forwarding entries queued",
            area=self.name,
            directory=self.directory,
            indexed=report.indexed,
            queued=queued,
            replaced=report.removed,
            skipped=len(report.skipped),
        )

    def catchUp(self, before: Optional[float] = None) -> Tuple[ReindexReport, int]:
        """
        Index the files of the area that the index lacks, each queued as
        its routes say (blocking): what L{recover} does, and what a daemon
        taking over the run of a dead one does for the files it left
        (L{dicomd.archive.takeover}).

        @param before: only the files last modified before this time, as
            L{dicomd.archive.reindexing.indexMissing} says.
        @return: what was indexed, and how many forwarding entries queued.
        """
        queued: List[Forwarding] = []

        def route(header, stored):
            forwardings = self._recoveredForwardings(header, stored)
            queued.extend(forwardings)
            return forwardings

        report = indexMissing(self.index, self.key, self.directory, route=route if self.router is not None else None, before=before)
        self._queued(queued)
        return report, len(queued)

    def remove(self, received: ReceivedInstance) -> None:
        """
        Forget a stored object (its file is removed by the caller).
        """
        self.index.removeInstance(self.key, received.sopInstanceUID)

    def moved(self, oldPath: str, newPath: str) -> None:
        """
        A stored file was renamed.
        """
        self.index.movePath(self.key, self._relative(oldPath), self._relative(newPath))

    def _enforce(self, received: List[ReceivedInstance]) -> None:
        """
        Bring the area back within its quota after C{received} were indexed.
        """
        if self.quota is None:
            return
        for each in received:
            self._evict(each)

    def _evict(self, received: ReceivedInstance) -> None:
        studyUID = received.studyInstanceUID
        maxBytes = self.quota.maxBytesPerStudy
        while self.index.studyCount(self.key) > self.quota.maxStudies:
            evictable = self.index.studiesByLastUpdate(self.key, limit=1, evictable=True)
            if not evictable or evictable[0].studyInstanceUID == studyUID:
                break
            oldest = evictable[0]
            self._delete(self.index.removeStudy(self.key, oldest.studyInstanceUID))
            self.log.info(
                "Quota of {area}: deleted study {uid}, the least recently updated of more than {count}",
                area=self.name,
                uid=oldest.studyInstanceUID,
                count=self.quota.maxStudies,
            )
        usage = self.index.studyUsage(self.key, studyUID)
        if usage is None or usage.size <= maxBytes:
            return
        excess = usage.size - maxBytes
        for instance in self.index.instancesOfStudy(self.key, studyUID, evictable=True):
            if excess <= 0:
                break
            if instance.sopInstanceUID == received.sopInstanceUID:
                continue
            self.index.removeInstance(self.key, instance.sopInstanceUID)
            self._delete([instance.path])
            excess -= instance.size
            self.log.info(
                "Quota of {area}: deleted {uid}, the oldest instance of study {study} over {bytes} bytes",
                area=self.name,
                uid=instance.sopInstanceUID,
                study=studyUID,
                bytes=maxBytes,
            )

    def _delete(self, relativePaths: List[str]) -> None:
        for relative in relativePaths:
            try:
                os.unlink(self._absolute(relative))
            except FileNotFoundError:
                pass
