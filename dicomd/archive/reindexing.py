"""
Reindexing: rebuilding the index rows of a storage area from the DICOM
files under its directory, reading headers only (what dcmqrscp leaves to
deleting C{index.dat} and storing again).  L{reindex} backs
C{dicomd reindex DIR}; L{indexMissing} catches the index up with files
stored by a run that did not end cleanly, queueing them for forwarding
as their reception would have.
"""

import contextlib
import os
from itertools import islice

from pydicom import dcmread

from dicomd.archive.index import ReindexReport, StoredFile


def _readStoredFile(directory, relativePath):
    """
    Read the header of a file of a storage area.

    @return: (header, L{StoredFile}), or C{None} if it is not DICOM.
    """
    fullPath = os.path.join(directory, relativePath)
    try:
        dataset = dcmread(fullPath, stop_before_pixels=True)
    except Exception:
        # Whatever pydicom fails on (not DICOM, truncated, unreadable) is
        # reported as skipped rather than ending the whole reindexing.
        return None
    meta = dataset.file_meta
    if not dataset.get("SOPInstanceUID"):
        if not meta.get("MediaStorageSOPInstanceUID"):
            return None
        dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if not dataset.get("SOPClassUID") and meta.get("MediaStorageSOPClassUID"):
        dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    status = os.stat(fullPath)
    return dataset, StoredFile(
        path=relativePath,
        size=status.st_size,
        transferSyntaxUID=str(meta.get("TransferSyntaxUID", "")),
        received=status.st_mtime,
        callingAETitle=str(meta.get("SourceApplicationEntityTitle", "")).strip(),
    )


def _filesUnder(directory):
    """
    The files of a storage area, relative to it, in a stable order; names
    beginning with a dot (files being written) are left out.
    """
    for parent, directories, files in os.walk(directory):
        directories[:] = sorted(d for d in directories if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield os.path.relpath(os.path.join(parent, name), directory)


def _modifiedBefore(path, when):
    try:
        return os.stat(path).st_mtime < when
    except FileNotFoundError:
        return False


def _indexFiles(index, area, directory, names, batchSize, route=None):
    """
    Index the files C{names} (relative to C{directory}), C{batchSize} per
    transaction, each queued for the forwardings C{route(header, stored)}
    returns, if given.

    @return: C{(indexed, skipped, replaced)}: the relative paths indexed,
        those that are not DICOM, and the paths of files whose instance
        the index had under another path (as
        L{IArchiveIndex.addInstance<dicomd.archive.index.IArchiveIndex.addInstance>}
        returns them).
    """
    indexed, skipped, replaced = [], [], []
    names = iter(names)
    while True:
        chunk = list(islice(names, batchSize))
        if not chunk:
            return indexed, skipped, replaced
        batch = []
        for relativePath in chunk:
            item = _readStoredFile(directory, relativePath)
            if item is None:
                skipped.append(relativePath)
            else:
                batch.append(item if route is None else item + (route(*item),))
                indexed.append(relativePath)
        if batch:
            replaced.extend(path for path in index.addInstances(area, batch) if path)


def reindex(index, area, directory, batchSize=500):
    """
    Rebuild the rows of a storage area from its files: index every DICOM
    file under C{directory} (reading headers only), and drop the rows whose
    file was not found.  Files are never deleted.  This backs
    C{dicomd reindex DIR}.

    @param index: an L{IArchiveIndex<dicomd.archive.index.IArchiveIndex>}
        provider.
    @param area: the storage area's L{areaKey<dicomd.archive.index.areaKey>}.
    @param directory: the storage area's directory.
    @param batchSize: how many files to index per transaction.
    @return: a L{ReindexReport<dicomd.archive.index.ReindexReport>}.
    """
    indexed, skipped, _ = _indexFiles(index, area, directory, _filesUnder(directory), batchSize)
    found = set(indexed)
    removed = 0
    for sopInstanceUID, path in index.storedPaths(area).items():
        if path not in found:
            index.removeInstance(area, sopInstanceUID)
            removed += 1
    return ReindexReport(len(indexed), removed, tuple(skipped))


def indexMissing(index, area, directory, batchSize=500, route=None, before=None):
    """
    Index the files of a storage area that the index lacks, after a run
    that did not end cleanly (see
    L{IArchiveIndex.beginRun<dicomd.archive.index.IArchiveIndex.beginRun>}):
    a file that has its final name is complete, and may have been
    acknowledged.  Rows are not removed.  A file whose instance the index had under another
    name replaces it, as when it was received (the other file is deleted):
    it was moved into place after the indexed one.

    @param route: C{route(header, stored)} returns the
        L{dicomd.archive.queue.Forwarding}s to queue a file for, in the
        transaction that indexes it: an acknowledged instance whose row the
        crash lost lost its queue entries with it.
    @param before: index only the files last modified before this time
        (seconds since the epoch), or every file when C{None}: the files a
        dead daemon left, not those a live one is about to index.

    @return: a L{ReindexReport<dicomd.archive.index.ReindexReport>}
        (C{removed} counts the replaced files).
    """
    known = set(index.storedPaths(area).values())
    missing = (name for name in _filesUnder(directory) if name not in known)
    if before is not None:
        missing = (name for name in missing if _modifiedBefore(os.path.join(directory, name), before))
    indexed, skipped, replaced = _indexFiles(index, area, directory, missing, batchSize, route)
    for relativePath in replaced:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, relativePath))
    return ReindexReport(len(indexed), len(replaced), tuple(skipped))
