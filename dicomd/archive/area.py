"""
A storage area in the archive: the files of one AE title's directory, kept
in step with the index, within the area's quota (dcmqrscp.cfg's AETable:
storage area and C{(maxStudies, maxBytesPerStudy)}).

L{IndexedArea} is what L{dicomd.storage.scp.StorageArea} calls, in a worker
thread, once a received file is in its final place (and at start-up, to
index what a crash left unindexed): it records the file,
deletes the file it replaced, and enforces the quota as dcmqrscp does, by
deleting the least recently updated studies (files and rows together) when
there are too many, and the oldest instances of a study that grew too
large.
"""

import os
import sqlite3
import threading
from typing import List, Optional

from twisted.logger import Logger

from dicomd.archive.dcmqrcfg import Quota
from dicomd.archive.index import StoredFile, indexMissing
from dicomd.dimse.status import OUT_OF_RESOURCES
from dicomd.storage.scp import ReceivedInstance, StoreRefused


class IndexedArea:
    """
    One storage area's files and index rows, kept together.

    @ivar name: the area's name in the index (its AE title).
    @ivar directory: the area's directory, absolute.
    @ivar quota: the area's L{Quota}, or C{None}.
    """

    log = Logger()

    def __init__(self, index, name: str, directory: str, quota: Optional[Quota] = None):
        """
        @param index: an L{dicomd.archive.index.IArchiveIndex} (blocking).
        """
        self.index = index
        self.name = name
        self.directory = os.path.abspath(directory)
        self.quota = quota
        self._quotaLock = threading.Lock()

    def _relative(self, path: str) -> str:
        return os.path.relpath(path, self.directory)

    def _absolute(self, relative: str) -> str:
        return os.path.join(self.directory, relative)

    def add(self, received: ReceivedInstance) -> Optional[str]:
        """
        Index a stored file and enforce the quota.

        @return: the absolute path of a file the new one replaced (same SOP
            Instance UID, another name), for the caller to delete.
        @raise StoreRefused: the object alone is larger than the study
            quota (its row is removed again), or the index cannot record it
            (a locked, full or broken database: out of resources, so that
            the sender tries again later); the caller removes the file.
        """
        stored = StoredFile(
            self._relative(received.path),
            os.path.getsize(received.path),
            received.transferSyntaxUID,
            received.receivedAt,
            received.callingAETitle,
        )
        try:
            replaced = self.index.addInstance(self.name, received.attributes, stored)
        except sqlite3.Error as e:
            raise StoreRefused(OUT_OF_RESOURCES, "the index cannot record it: %s" % (e,))
        if self.quota is not None:
            with self._quotaLock:
                self._enforce(received, stored.size)
        return self._absolute(replaced) if replaced else None

    def recover(self) -> None:
        """
        After a run that did not end cleanly, index the files of the area
        that the index lacks (blocking; at start-up, before associations are
        served): a crash between moving a file into place and indexing it
        leaves a complete file, perhaps acknowledged, that C-FIND, C-MOVE
        and C-GET would otherwise never see.  Done once per run.
        """
        if not self.index.claimRecovery(self.name, self.directory):
            return
        report = indexMissing(self.index, self.name, self.directory)
        if not (report.indexed or report.removed or report.skipped):
            return
        self.log.info(
            "Recovery of {area} ({directory}): {indexed} files indexed that the index lacked, "
            "{replaced} older files of the same instances deleted, {skipped} files that are not DICOM left alone",
            area=self.name,
            directory=self.directory,
            indexed=report.indexed,
            replaced=report.removed,
            skipped=len(report.skipped),
        )

    def remove(self, received: ReceivedInstance) -> None:
        """
        Forget a stored object (its file is removed by the caller).
        """
        self.index.removeInstance(self.name, received.sopInstanceUID)

    def moved(self, oldPath: str, newPath: str) -> None:
        """
        A stored file was renamed.
        """
        self.index.movePath(self.name, self._relative(oldPath), self._relative(newPath))

    def _enforce(self, received: ReceivedInstance, size: int) -> None:
        studyUID = str(received.attributes.get("StudyInstanceUID", ""))
        maxBytes = self.quota.maxBytesPerStudy
        if size > maxBytes:
            self.index.removeInstance(self.name, received.sopInstanceUID)
            raise StoreRefused(
                OUT_OF_RESOURCES, "object of %d bytes exceeds the quota of %d bytes per study" % (size, maxBytes)
            )
        while self.index.studyCount(self.name) > self.quota.maxStudies:
            oldest = self.index.studiesByLastUpdate(self.name, limit=1)[0]
            if oldest.studyInstanceUID == studyUID:
                break
            self._delete(self.index.removeStudy(self.name, oldest.studyInstanceUID))
            self.log.info(
                "Quota of {area}: deleted study {uid}, the least recently updated of more than {count}",
                area=self.name,
                uid=oldest.studyInstanceUID,
                count=self.quota.maxStudies,
            )
        usage = self.index.studyUsage(self.name, studyUID)
        if usage is None or usage.size <= maxBytes:
            return
        excess = usage.size - maxBytes
        for instance in self.index.instancesOfStudy(self.name, studyUID):
            if excess <= 0:
                break
            if instance.sopInstanceUID == received.sopInstanceUID:
                continue
            self.index.removeInstance(self.name, instance.sopInstanceUID)
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
