"""
The Storage service class, SCP role (PS3.4 Annex B): C-STORE.

Each C-STORE-RQ gets an L{IncomingInstance}, which streams the data set as it
arrives into a temporary file in the storage area's root, behind a File
Meta Information group built from the command.  Where the system allows it
the temporary file is an unnamed one made ahead of need
(L{dicomd.storage.spool.SpareFiles}): creating a file is the slowest step
of storing a small object on some file systems, and an unnamed file is
invisible to whatever lists the directory and leaves nothing behind if we
crash.  Where it does not, or when a file must be read by name before it is
complete, the temporary file has a hidden name of its own
(L{TEMPORARY_NAME}), which only a crash can leave behind, and which
L{StorageArea.prepare} removes at the next start.

When the last fragment is in, one worker-thread job (for a small object
with nothing slow to do, a call on the reactor thread, which answers in the
same call) writes what is still waiting, finds the attributes in the data
set's first bytes (or the file, when they are not enough), checks that the
data set is the instance the command announced, chooses the final name,
moves the file into place atomically (an unnamed file is linked there
directly) and records it in the index.  Only then is the C-STORE-RSP sent,
so a success response always means the file is complete under its final
name.  Anything that fails before that removes the temporary file: an
aborted association, a full disk (answered with 0xA700), a data set that
does not match its command (0xA900).  The attributes are made into
pydicom's elements only when something reads them.
"""

import itertools
import os
import re
import socket
import threading
import zlib
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from pydicom.dataset import Dataset
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dicomd.dataset import isValidUID, newDataset
from dicomd.dimse import status as _status
from dicomd.dimse.commands import responseTo
from dicomd.dimse.consumers import DiscardedDataSet
from dicomd.interfaces import IDataSetConsumer, IService
from dicomd.storage import DIRECTORY_MODE, FILE_MODE
from dicomd.storage.part10 import HeadScan, encodeFileMeta, readDeflatedHead, readFileHead, uidValue, walkHead
from dicomd.storage.spool import InlineWrites, SpareFiles, SpoolFile
from dicomd.ul.negotiation import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN

#: How much of a data set's beginning is kept in memory to read its
#: attributes without going back to the file.
HEAD_LIMIT = 64 << 10

#: The names of named temporary files, C{.dicomd-HOST-PID-N.part}, in the
#: root of a storage area: nothing else there is ever removed at start-up,
#: and no received object may be named so.  C{HOST} (L{hostTag}) and
#: C{PID} say whose file it is: several processes may store into one area
#: (worker processes, the nodes of a cluster on shared storage), and each
#: removes only the files of dead processes of its own host.  The form
#: without C{HOST-} is that of earlier versions, taken for this host's.
TEMPORARY_NAME = re.compile(r"\.dicomd-(?:(?P<host>[0-9a-f]{8})-)?(?P<pid>[0-9]+)-[0-9]+\.part\Z")


def hostTag() -> str:
    """
    This host's part of L{TEMPORARY_NAME}: eight hexadecimal digits of its
    name's CRC-32, enough to tell the nodes that share a storage area.
    """
    return "%08x" % (zlib.crc32(socket.gethostname().encode("utf-8")),)


def _processAlive(pid: int) -> bool:
    """
    Whether a process of this host has that PID (one of another user's
    included).
    """
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        # No such process; or a number no PID can be.
        return False
    except PermissionError:
        # Another user's process: alive.
        return True
    return True


def abandonedTemporary(name: str, host: str) -> bool:
    """
    Whether C{name} is a named temporary file (L{TEMPORARY_NAME}) whose
    process is gone: one of this host (C{host}, L{hostTag}), whose PID is
    ours (a process before us had it) or no live process's.  Another
    host's files are its own to remove; a live process's are in use.
    """
    match = TEMPORARY_NAME.match(name)
    if match is None or match["host"] not in (None, host):
        return False
    pid = int(match["pid"])
    return pid == os.getpid() or not _processAlive(pid)


class StoreRefused(Exception):
    """
    A received object cannot be accepted; C{status} says why.
    """

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _MadeWhenAsked:
    """
    L{ReceivedInstance.attributes}: set as any attribute, or made from the
    instance's L{HeadScan} the first time it is read (once, whichever
    thread asks first).  Checking an object needs a few of its elements
    (L{HeadScan.uids}); making pydicom's elements of all of them takes
    longer than the rest of that check, and many configurations never look
    at them.
    """

    def __get__(self, received, owner=None):
        if received is None:
            # The field's default, as dataclasses ask for it.
            return None
        attributes = received._attributes
        if attributes is None:
            attributes = _makeAttributes(received)
        return attributes

    def __set__(self, received, attributes: Optional[Dataset]) -> None:
        received._attributes = attributes


_making = threading.Lock()


def _makeAttributes(received) -> Dataset:
    """
    Make a L{ReceivedInstance}'s attributes from its scan (or none), once,
    whichever thread asks first.
    """
    with _making:
        attributes = received._attributes
        if attributes is None:
            scan = received.scan
            attributes = scan.dataset() if scan is not None else newDataset()
            received._attributes = attributes
            received.scan = None
    return attributes


@dataclass
class ReceivedInstance:
    """
    What the storage SCP knows about one object once it is stored.

    @ivar path: the file's final absolute path, or C{None} when the SCP
        stores nothing (C{--ignore}).
    @ivar fileSize: the size of that file, when the SCP knows it from
        writing it (and did not re-encode it), else C{None}: the index
        then asks the file system.
    @ivar attributes: the data set's attributes before the pixel data
        (none by default), made from C{scan} when first read.
    @ivar scan: the attributes as found in the data set's first bytes and
        not yet made into C{attributes}, or C{None}.
    @ivar association: the association it arrived on, or C{None}; the
        end-of-study tracker tells senders apart by it.
    @ivar prepared: what its index read of it ahead, once it was
        answered (the index's C{prepare}), or C{None}.
    """

    sopClassUID: str
    sopInstanceUID: str
    transferSyntaxUID: str
    callingAETitle: str
    calledAETitle: str
    peerHost: str
    receivedAt: float
    size: int = 0
    attributes: Dataset = _MadeWhenAsked()
    path: Optional[str] = None
    fileSize: Optional[int] = None
    association: object = field(default=None, compare=False, repr=False)
    scan: Optional[HeadScan] = field(default=None, compare=False, repr=False)
    prepared: object = field(default=None, compare=False, repr=False)

    @property
    def head(self):
        """
        Its attributes as they are: the L{HeadScan} of its data set's first
        bytes while nothing has made pydicom's elements of them, else
        L{attributes}.  The index reads its keys from either.
        """
        scan = self.scan
        return scan if scan is not None else self.attributes

    @property
    def studyInstanceUID(self) -> str:
        """
        The Study Instance UID of its attributes, C{""} when it has none,
        read without pydicom's conversion of the element.
        """
        scan = self.scan
        if scan is not None:
            return scan.uids(_STUDY_INSTANCE_UID).get(0x0020000D, "")
        return uidValue(self.attributes, "StudyInstanceUID", 0x0020000D)


_STUDY_INSTANCE_UID = frozenset([0x0020000D])


class StorageArea:
    """
    A directory that received objects are stored under, and how they are
    named and indexed there.

    @ivar directory: the area's root, absolute.
    @ivar naming: an object whose C{place(received)} returns the path of the
        object relative to C{directory}; it is called from worker threads,
        under a lock.
    @ivar index: an object whose C{add(received)} records a stored object
        (and deletes a file it replaced), called from worker threads or
        the reactor thread, and whose C{recover()} indexes, at start-up, the
        files a crash left under final names without a record.  C{None}
        for no index.  One whose C{returnsAtOnce} is true records later
        and never waits (L{dicomd.archive.writer.IndexWriter}); one with a
        C{prepare(received)} reads there, on the reactor thread, what it
        will record of an object once the object is answered and its
        sender waits.
    @ivar sync: C{fsync} files and directories before answering.
    @ivar recode: C{recode(path)} rewrites a complete temporary file in
        place before it is moved (the re-encoding output options), or
        C{None} to store files bit for bit as received.
    @ivar fileMode: the permissions of stored files, given when they are
        created (as temporary files, which are then named or renamed);
        less the umask.
    @ivar directoryMode: the permissions of the directories the area
        creates (its root, study directories); less the umask.
    """

    def __init__(
        self,
        directory: str,
        naming,
        index=None,
        sync: bool = False,
        recode=None,
        fileMode: int = FILE_MODE,
        directoryMode: int = DIRECTORY_MODE,
    ):
        self.directory = os.path.abspath(directory)
        self.naming = naming
        self.index = index
        self.sync = sync
        self.recode = recode
        self.fileMode = fileMode
        self.directoryMode = directoryMode
        # Where the area really is: its root may be a symbolic link, the
        # directories under it may not lead out of it.
        self._realDirectory = os.path.realpath(self.directory)
        self._lock = threading.Lock()
        self._host = hostTag()
        self._counter = 0
        # Directories known to exist inside the area, so that storing into
        # one costs no system call beyond the rename; one that disappears
        # is made (and checked) again.
        self._directories = set()

    def prepare(self) -> None:
        """
        Create the area and remove the named temporary files a crash left
        in its root (L{TEMPORARY_NAME}, and nothing else): none of them was
        ever acknowledged.  Those of processes still running (another
        worker, another node) are theirs, in use (L{abandonedTemporary}).
        A file a crash left under its final name is complete, and goes
        into the index.
        """
        os.makedirs(self.directory, self.directoryMode, exist_ok=True)
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if abandonedTemporary(entry.name, self._host) and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
        if self.index is not None:
            self.index.recover()

    def temporaryPath(self) -> str:
        """
        A fresh hidden name (L{TEMPORARY_NAME}) in the area's root: on the
        file system of the final location, so that the final rename is
        atomic, and known to L{prepare}, which removes it after a crash.
        """
        self._counter += 1
        return os.path.join(self.directory, ".dicomd-%s-%d-%d.part" % (self._host, os.getpid(), self._counter))

    def settle(self, temporary, received: ReceivedInstance) -> None:
        """
        Move a complete temporary file to its final place and index it
        (in a worker thread).  On failure nothing is left under a final
        name.

        @param temporary: the temporary file's path, or the
            L{dicomd.storage.spool.SpoolFile} being finished (whose file
            may not have a name yet).
        """
        if isinstance(temporary, str):
            temporaryPath, move = temporary, None
        else:
            temporaryPath, move = temporary.path, temporary.moveInThread
        if self.recode is not None:
            if move is not None:
                temporary.nameInThread()
            self.recode(temporaryPath)
        elif move is not None:
            received.fileSize = temporary.written
        with self._lock:
            relative = self.naming.place(received)
            final = self.resolve(relative)
            directory = os.path.dirname(final)
            self._enter(directory)
        if move is None:
            move = lambda final: os.replace(temporaryPath, final)  # noqa: E731
        try:
            move(final)
        except FileNotFoundError:
            if os.path.isdir(directory):
                raise
            # The directory was removed since we made it.
            with self._lock:
                self._directories.discard(directory)
                self._enter(directory)
            move(final)
        received.path = final
        if self.sync:
            _syncDirectory(os.path.dirname(final))
        if self.index is not None:
            try:
                self.index.add(received)
            except BaseException:
                os.unlink(final)
                raise

    def _enter(self, directory: str) -> None:
        """
        Make C{directory} ready for files, under the lock: the first time,
        make it (with L{directoryMode}) and check that it really is inside
        the area, then remember it, so that the objects that follow cost
        no system call for it.

        @raise StoreRefused: it leads out of the area through a symbolic
            link (0xA700, out of resources: nothing can be stored there).
        """
        if directory in self._directories:
            return
        os.makedirs(directory, self.directoryMode, exist_ok=True)
        real = os.path.realpath(directory)
        if os.path.commonpath([real, self._realDirectory]) != self._realDirectory:
            raise StoreRefused(_status.OUT_OF_RESOURCES, "%s leads out of the storage area, to %s" % (directory, real))
        self._directories.add(directory)

    def resolve(self, relative: str) -> str:
        """
        The absolute path of C{relative} inside the area.

        @raise ValueError: it would be outside the area (defence in depth:
            names are sanitised before they get here).
        """
        # Both paths are absolute and normalised, so "inside" is a prefix
        # ending at a separator.
        final = os.path.normpath(os.path.join(self.directory, relative))
        root = self.directory.rstrip(os.sep) + os.sep
        if not final.startswith(root) or final == self.directory:
            raise ValueError("%r is not a path inside %s" % (relative, self.directory))
        if TEMPORARY_NAME.match(final[len(root):].split(os.sep, 1)[0]):
            raise ValueError("%r would be taken for a temporary file" % (relative,))
        return final


def _syncDirectory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@implementer(IService)
class StorageSCP:
    """
    Answers C-STORE-RQ by storing the data set in a L{StorageArea}.

    @ivar area: where objects go, or C{None} to receive and answer without
        storing anything (storescp's C{--ignore}).
    @ivar observers: callables run with each L{ReceivedInstance} before the
        response is sent; one may return a L{Deferred} to hold the response
        back until it fires (C{--exec-sync}).
    @ivar abortDuring: abort the association after the first fragment of
        each data set (storescp's C{--abort-during}).
    @ivar abortAfter: store the object, then abort instead of answering, and
        remove the object again (C{--abort-after}).
    @ivar sleepAfter: seconds to stop reading after each response, as
        storescp sleeps after a store (C{--sleep-after}).
    @ivar sleepDuring: seconds to stop reading after each fragment
        (C{--sleep-during}).
    """

    log = Logger()

    def __init__(
        self,
        area: Optional[StorageArea],
        *,
        reactor=None,
        threadpool=None,
        observers: Optional[List[Callable]] = None,
        abortDuring: bool = False,
        abortAfter: bool = False,
        sleepAfter: float = 0,
        sleepDuring: float = 0,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.area = area
        self.reactor = reactor
        self.threadpool = threadpool if threadpool is not None else reactor.getThreadPool()
        self.observers = list(observers or [])
        self.abortDuring = abortDuring
        self.abortAfter = abortAfter
        self.sleepAfter = sleepAfter
        self.sleepDuring = sleepDuring
        self._spares = None
        self.inlineWrites = InlineWrites()

    def spareFile(self) -> Tuple[Optional[int], int]:
        """
        An unnamed file already created in the area's root, or C{None}
        (see L{SpareFiles}), which the caller owns; and how many bytes of
        it are allocated already.
        """
        if self._spares is None:
            self._spares = SpareFiles(self.area.directory, self.threadpool, mode=self.area.fileMode)
        return self._spares.take()

    def answered(self, received: ReceivedInstance, fileSize: int) -> None:
        """
        An object was stored in a file of C{fileSize} bytes and answered,
        and its sender waits for its next request's turn: do now what
        would otherwise be done while the next object is on its way to its
        response.  Have the next spare ready for one alike
        (L{SpareFiles.reserve}), and have the index read what it will
        record of the object: its writer's thread would read it holding
        the interpreter lock this thread needs for the next object.
        """
        if self._spares is not None:
            self._spares.reserve(fileSize)
        prepare = getattr(self.area.index, "prepare", None)
        if prepare is not None:
            prepare(received)

    def messageReceived(self, association, context, message):
        refusal = None
        if message.affectedSOPClassUID != context.abstractSyntax:
            refusal = StoreRefused(
                _status.SOP_CLASS_NOT_SUPPORTED,
                "C-STORE of %s on a context for %s" % (message.affectedSOPClassUID, context.abstractSyntax),
            )
        elif not isValidUID(message.affectedSOPInstanceUID):
            # It names the file: refused before anything is written.
            refusal = StoreRefused(
                _status.CANNOT_UNDERSTAND, "Affected SOP Instance UID %r is not a valid UID" % (message.affectedSOPInstanceUID,)
            )
        if refusal is not None:
            return DiscardedDataSet(lambda: _refuse(association, context, message, refusal))
        return IncomingInstance(self, association, context, message)

    def inThread(self, function, *args) -> defer.Deferred:
        return deferToThreadPool(self.reactor, self.threadpool, function, *args)


def _finishesQuickly(area: Optional[StorageArea]) -> bool:
    """
    Whether the objects stored in C{area} may be finished on the reactor
    thread (L{InlineWrites}): there is nothing to do after writing a file
    but give it its name, and hand it to an index that records it later
    (L{dicomd.archive.writer.IndexWriter}).  Re-encoding, C{fsync} or an
    index that writes at once each take longer than the hand-off to a
    worker thread they would save.
    """
    if area is None or area.recode is not None or area.sync:
        return False
    return area.index is None or getattr(area.index, "returnsAtOnce", False)


def _refuse(association, context, request, refusal: StoreRefused) -> None:
    """
    Answer a C-STORE that was refused at once (its data set is read and
    dropped first) with the refusal's status.
    """
    StorageSCP.log.warn("C-STORE refused: {why}", why=str(refusal))
    response = responseTo(
        request,
        refusal.status,
        affectedSOPInstanceUID=request.affectedSOPInstanceUID,
        errorComment=str(refusal)[:64],
    )
    association.send(context.contextID, response)


@implementer(IDataSetConsumer)
class IncomingInstance:
    """
    One C-STORE data set on its way to disk.
    """

    def __init__(self, scp: StorageSCP, association, context, request):
        self._scp = scp
        self._association = association
        self._context = context
        self._request = request
        self._head: List = []
        self._headSize = 0
        self._abandoned = False
        self._sleeping = False
        self._finishWhenAwake = False
        self.received = ReceivedInstance(
            sopClassUID=request.affectedSOPClassUID,
            sopInstanceUID=request.affectedSOPInstanceUID,
            transferSyntaxUID=context.transferSyntax,
            callingAETitle=association.callingAETitle,
            calledAETitle=association.calledAETitle,
            peerHost=getattr(association.peerAddress, "host", ""),
            receivedAt=scp.reactor.seconds(),
            association=association,
        )
        area = scp.area
        self._spool = None
        if area is not None:
            fileMeta = encodeFileMeta(
                request.affectedSOPClassUID,
                request.affectedSOPInstanceUID,
                context.transferSyntax,
                association.callingAETitle,
            )
            self._dataSetOffset = len(fileMeta)
            spare, reserved = scp.spareFile()
            self._spool = SpoolFile(
                area.temporaryPath(),
                fileMeta,
                reactor=scp.reactor,
                threadpool=scp.threadpool,
                pause=association.pauseReceiving,
                resume=association.resumeReceiving,
                sync=area.sync,
                spare=spare,
                reserved=reserved,
                mode=area.fileMode,
                inline=scp.inlineWrites if _finishesQuickly(area) and context.transferSyntax != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN else None,
            )

    def write(self, fragment):
        if self._abandoned:
            return
        self.received.size += len(fragment)
        if self._headSize < HEAD_LIMIT:
            # Keep no more than the head: a whole 128 KiB PDV need not be
            # copied to read the attributes from its first bytes.
            piece = fragment[: HEAD_LIMIT - self._headSize]
            self._head.append(piece)
            self._headSize += len(piece)
        if self._spool is not None:
            self._spool.write(fragment)
        scp = self._scp
        if scp.abortDuring:
            scp.log.info("Aborting during C-STORE (--abort-during)")
            self._association.abort()
        elif scp.sleepDuring and not self._sleeping:
            scp.log.info("Sleeping {seconds} s during C-STORE (--sleep-during)", seconds=scp.sleepDuring)
            self._sleeping = True
            self._association.pauseReceiving()
            scp.reactor.callLater(scp.sleepDuring, self._wakeUp)

    def _wakeUp(self):
        self._sleeping = False
        self._association.resumeReceiving()
        if self._finishWhenAwake:
            self._finishWhenAwake = False
            if not self._abandoned:
                self.finish()

    def finish(self):
        if self._sleeping:
            # --sleep-during: storescp sleeps in the middle of receiving,
            # so the last fragment is not handled before it wakes up.
            self._finishWhenAwake = True
            return
        spool = self._spool
        if spool is None:
            self._settled()
            return
        # A head in one piece is read where it was received: copying 64 KiB
        # to find a few hundred bytes of attributes costs more than reading
        # them.
        head = self._head[0] if len(self._head) == 1 else b"".join(self._head)
        complete = self._headSize == self.received.size
        self._head = []
        if spool.closesHere():
            # The common case, on the reactor thread, without a Deferred:
            # the response goes out in this call.
            try:
                spool.closeHere(lambda: self._settle(head, complete))
            except BaseException:
                self._failed(Failure())
            else:
                self._settled()
            return
        stored = spool.close(lambda: self._settle(head, complete))
        stored.addCallback(self._notify)
        stored.addCallbacks(self._stored, self._failed)

    def _settled(self) -> None:
        """
        The object is stored (or ignored) on this thread: tell the
        observers, then answer, once those that return a L{Deferred} are
        done.
        """
        try:
            waits = self._notify(None)
        except BaseException:
            self._failed(Failure())
            return
        if waits is None:
            self._stored(None)
        else:
            waits.addCallbacks(self._stored, self._failed)

    def _settle(self, head, complete: bool) -> None:
        """
        In a worker thread: check the object and move it into place.
        """
        spool = self._spool
        received = self.received
        try:
            if received.transferSyntaxUID == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
                attributes = self._readDeflated(head, complete)
            else:
                attributes = walkHead(head, received.transferSyntaxUID, complete)
                if attributes is None:
                    attributes = _readAttributes(spool.nameInThread())
            if type(attributes) is HeadScan:
                received.scan = attributes
            else:
                received.attributes = attributes
            _checkIdentity(_identityOf(attributes), self._request)
            self._scp.area.settle(spool, received)
        except BaseException:
            _removeQuietly(spool.path)
            raise

    def _readDeflated(self, head: bytes, complete: bool) -> Dataset:
        """
        In a worker thread: the attributes of a deflated data set, inflated
        from its first bytes and, when they are not enough, from the rest of
        the file (L{readDeflatedHead}: never more than a few megabytes,
        whatever the data set inflates to).

        @raise StoreRefused: they cannot be read (0xC000).
        """
        compressed = iter([head])
        if not complete:
            compressed = itertools.chain(compressed, _chunksOf(self._spool.nameInThread, self._dataSetOffset + len(head)))
        attributes = readDeflatedHead(compressed)
        if attributes is None:
            raise StoreRefused(_status.CANNOT_UNDERSTAND, "cannot read the attributes of the deflated data set")
        return attributes

    def _notify(self, _) -> defer.Deferred:
        if self._abandoned or self._scp.abortAfter:
            # With --abort-after the object is never acknowledged, so, as
            # in storescp, it raises no event (no command, no study).
            return None
        waits = [observer(self.received) for observer in self._scp.observers]
        waits = [w for w in waits if isinstance(w, defer.Deferred)]
        if not waits:
            return None
        if len(waits) == 1:
            return waits[0]
        # The first failure itself, not gatherResults' FirstError around
        # it: a refusal (StoreRefused) answers with its own status.
        return defer.gatherResults(waits, consumeErrors=True).addErrback(lambda failure: failure.value.subFailure)

    def _stored(self, _) -> None:
        if self._abandoned:
            self._unstore()
            return
        scp = self._scp
        if scp.abortAfter:
            scp.log.info("Aborting after C-STORE, before the response (--abort-after)")
            self._association.abort()
            self._unstore()
            return
        self._respond(_status.SUCCESS)
        if self._spool is not None and self._association.waitsAlone:
            # The peer now waits for its next request's turn, and nothing
            # else needs this thread meanwhile.  A peer with a window is
            # sending its next request already, and other associations
            # keep the reactor busy: what answered() does then would only
            # take the place of work in the index writer's thread, which
            # runs beside the reactor's system calls.
            scp.answered(self.received, self._dataSetOffset + self.received.size)

    def _unstore(self) -> None:
        """
        Remove an object stored for an association that ended before it
        could be acknowledged.
        """
        path = self.received.path
        if path is None:
            return
        area = self._scp.area
        index = area.index

        def remove():
            if index is not None:
                index.remove(self.received)
            _removeQuietly(path)

        self._scp.inThread(remove).addErrback(
            lambda f: self._scp.log.failure("Could not remove unacknowledged {path}", f, path=path)
        )

    def _failed(self, failure) -> None:
        removed = self._spool.discard() if self._spool is not None else defer.succeed(None)
        error = failure.value
        if isinstance(error, StoreRefused):
            statusValue = error.status
        elif isinstance(error, OSError):
            statusValue = _status.OUT_OF_RESOURCES
        else:
            statusValue = _status.CANNOT_UNDERSTAND
        self._scp.log.warn(
            "C-STORE of {uid} from {calling} failed ({status}): {error}",
            uid=self.received.sopInstanceUID,
            calling=self.received.callingAETitle,
            status=_status.describe(statusValue),
            error=str(error),
        )

        def respond(_):
            # Answer once the partial file is gone: after a full disk, the
            # peer's next object finds the space this one took free again.
            if not self._abandoned:
                self._respond(statusValue, str(error))

        removed.addBoth(respond)

    def _respond(self, statusValue: int, comment: Optional[str] = None) -> None:
        response = responseTo(
            self._request,
            statusValue,
            affectedSOPInstanceUID=self._request.affectedSOPInstanceUID,
            errorComment=comment[:64] if comment else None,
        )
        self._association.send(self._context.contextID, response)
        # A response that waited for a worker thread goes now, not on the
        # reactor's next iteration: the sender waits for it.
        self._association.flush()
        delay = self._scp.sleepAfter
        if delay:
            # storescp answers, then sleeps before it reads the next
            # message; only this association waits.
            self._scp.log.info("Sleeping {seconds} s after C-STORE (--sleep-after)", seconds=delay)
            self._association.pauseReceiving()
            self._scp.reactor.callLater(delay, self._association.resumeReceiving)

    def abandon(self, reason):
        self._abandoned = True
        self._head = []
        if self._spool is not None:
            self._spool.discard()
        self._scp.log.info(
            "C-STORE of {uid} from {calling} abandoned: {reason}",
            uid=self.received.sopInstanceUID,
            calling=self.received.callingAETitle,
            reason=reason,
        )


#: The UIDs of a data set that name its files and folders, and so must be
#: valid UIDs (besides the SOP Instance UID, which must be the command's).
_NAMING_UIDS = (("Study Instance UID", 0x0020000D), ("Series Instance UID", 0x0020000E))

#: The elements L{_checkIdentity} reads, by tag, with their keywords.
_IDENTITY = {0x00080016: "SOPClassUID", 0x00080018: "SOPInstanceUID", 0x0020000D: "StudyInstanceUID", 0x0020000E: "SeriesInstanceUID"}
_IDENTITY_TAGS = frozenset(_IDENTITY)


def _identityOf(attributes) -> dict:
    """
    The values of the elements L{_checkIdentity} reads, by tag, from a
    L{HeadScan} or a L{Dataset}; C{""} or absent when the data set has none.
    """
    if type(attributes) is HeadScan:
        return attributes.uids(_IDENTITY_TAGS)
    return {tag: uidValue(attributes, keyword, tag) for tag, keyword in _IDENTITY.items()}


def _checkIdentity(uids: dict, request) -> None:
    """
    Refuse a data set that is not the instance its command announced, with
    the status DCMTK's storescp answers (0xA900), and one whose Study or
    Series Instance UID is not a UID (0xC000): those name study folders and
    reach commands, so they must be digits and dots (PS3.5 9.1).

    @param uids: the data set's UIDs, by tag (L{_identityOf}).
    """
    sopClass = uids.get(0x00080016)
    sopInstance = uids.get(0x00080018)
    if not sopClass or not sopInstance:
        raise StoreRefused(_status.CANNOT_UNDERSTAND, "data set without SOP Class or SOP Instance UID")
    for name, tag in _NAMING_UIDS:
        value = uids.get(tag)
        if value and not isValidUID(value):
            raise StoreRefused(_status.CANNOT_UNDERSTAND, "%s %r is not a valid UID" % (name, value))
    if sopClass != request.affectedSOPClassUID:
        raise StoreRefused(
            _status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            "data set SOP Class UID %s differs from the command's %s" % (sopClass, request.affectedSOPClassUID),
        )
    if sopInstance != request.affectedSOPInstanceUID:
        raise StoreRefused(
            _status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            "data set SOP Instance UID %s differs from the command's %s" % (sopInstance, request.affectedSOPInstanceUID),
        )


def _readAttributes(path: str) -> Dataset:
    """
    Read the attributes of a complete temporary file that its first bytes
    were not enough for.

    @raise StoreRefused: the data set cannot be parsed (0xC000).  pydicom
        reports some malformed data sets, such as a sequence of undefined
        length that ends with the data set, as an C{OSError} without an
        C{errno}; only an C{OSError} with one is the disk's fault, answered
        with "out of resources" (0xA700), which invites a retry.
    """
    try:
        return readFileHead(path)
    except OSError as e:
        if e.errno is not None:
            raise
        raise StoreRefused(_status.CANNOT_UNDERSTAND, "data set cannot be parsed: %s" % (e,))


def _chunksOf(name: Callable[[], str], offset: int, size: int = 64 << 10):
    """
    The bytes of a file from C{offset} on, C{size} at a time; the file is
    named (C{name()} returns its path) and opened only when the first
    chunk is asked for.
    """
    with open(name(), "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read(size)
            if not chunk:
                return
            yield chunk


def _removeQuietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
