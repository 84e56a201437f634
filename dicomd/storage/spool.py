"""
Streaming a received data set to disk without holding it in memory.

L{SpoolFile} takes fragments on the reactor thread and writes them to a file
in a worker thread, in order, one write job at a time.  Fragments wait in
memory only until the next job takes them; when more than C{highWater}
bytes are waiting (the disk is slower than the network) it asks its owner to
stop reading from the transport, and asks it to resume once the backlog is
below C{lowWater}.  Memory per file is therefore bounded whatever the size of
the object.  Nothing here knows about DICOM.

L{InlineWrites} lets the last job of a small file run on the reactor
thread instead: handing a job to a worker thread and back costs more than
writing 132 KB into the page cache, and the sender waits for the response
all that time.  A write that turns out slow (a disk throttling its dirty
pages, a network file system) sends every file back through the threads
for a while.

L{SpareFiles} keeps a few unnamed files (Linux's C{O_TMPFILE}) open in a
directory, created ahead of need by a worker thread, or by the reactor
thread itself on a file system in memory, where that is cheaper than the
hand-off: on some file systems creating a file (allocating its inode)
costs far more than writing a small object, and a spool file that starts
from a spare leaves that cost out of the time between the last fragment
and the response.  An unnamed file gets its name only when it is
complete (C{linkat} through C{/proc/self/fd}), so nothing is left behind
by an abort or a crash.  On a file system in memory its owner also has the
next spare's pages allocated once it has answered an object
(L{SpareFiles.reserve}): tmpfs allocates and zeroes each page on the
first write into it, a third of the time of writing a small object, and
the sender is reading the response and sending its next object meanwhile.
"""

import errno
import mmap
import os
import threading
import time
from collections import deque
from typing import Callable, List, Optional, Tuple

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool

from dicomd.storage import FILE_MODE

#: Start a write job once this much is waiting.
FLUSH_SIZE = 1 << 20

#: Ask for reading to stop above this backlog, and to resume below lowWater.
HIGH_WATER = 8 << 20
LOW_WATER = 2 << 20

_IOV_MAX = 1024

#: The size of a page of memory, which L{SpareFiles.reserve} allocates in.
_PAGE = mmap.PAGESIZE

#: Files up to this size may be finished on the reactor thread: those that
#: never started a write job, all of whose bytes are waiting in memory.
#: (At 512 KiB, a 512x512 16-bit image, 525 KB with its attributes, went
#: through a worker thread, and received 20% slower.)
INLINE_LIMIT = FLUSH_SIZE

#: Files that took longer than this to finish on the reactor thread...
INLINE_SLOW = 0.005

#: ... this many of them within INLINE_WINDOW seconds ...
INLINE_STRIKES = 3
INLINE_WINDOW = 1.0

#: ... send the files that follow through worker threads for this long.
INLINE_BACKOFF = 10.0


def _writeAll(fd: int, chunks: List) -> int:
    """
    Write every chunk, handling short writes.

    @return: how many bytes were written.
    """
    total = 0
    for start in range(0, len(chunks), _IOV_MAX):
        batch = [memoryview(chunk) for chunk in chunks[start:start + _IOV_MAX]]
        while batch:
            written = os.writev(fd, batch)
            total += written
            while batch and written >= len(batch[0]):
                written -= len(batch[0])
                batch.pop(0)
            if batch and written:
                batch[0] = batch[0][written:]
    return total


def _linkUnnamed(fd: int, path: str) -> None:
    """
    Give the unnamed file open on C{fd} the name C{path}:
    C{linkat(AT_FDCWD, "/proc/self/fd/FD", AT_FDCWD, path, AT_SYMLINK_FOLLOW)},
    which needs no privilege (C{AT_EMPTY_PATH} would).  Python calls plain
    C{link()}, which does not follow the magic link, unless a directory
    descriptor is given; the source path being absolute, the kernel ignores
    the one passed here.
    """
    os.link("/proc/self/fd/%d" % (fd,), path, src_dir_fd=fd, follow_symlinks=True)


class InlineWrites:
    """
    Decides whether a file is finished (written, closed, named) on the
    reactor thread rather than in a worker thread.

    A file qualifies when it is small (nothing of it was written yet, so
    all of it is waiting in memory) and files were not slow to finish
    inline lately: C{strikes} files in a row that took C{slow} seconds or
    more, within C{window} seconds, send the files of the next C{backoff}
    seconds through the worker threads, so that a stalling disk holds up
    one association's response, not the whole reactor.  A disk that
    stalls stalls every file.  Slow files between quick ones do not
    count: the reactor thread also waits now and then for the
    interpreter lock, for memory, or for a core the machine's other
    processes hold, whatever the disk (with 32 senders on two cores,
    several times a second, for 5 to 30 ms; and the worker threads cost
    those very cores more per file).

    The index writer paces the batches it writes on the reactor thread
    with one too (L{dicomd.archive.writer.IndexWriter.inline}), each
    batch taken as a file with nothing written yet (C{admits(0)}).

    @ivar limit: the largest file, in bytes, finished inline.
    """

    def __init__(
        self,
        limit: int = INLINE_LIMIT,
        slow: float = INLINE_SLOW,
        strikes: int = INLINE_STRIKES,
        window: float = INLINE_WINDOW,
        backoff: float = INLINE_BACKOFF,
        clock=time.monotonic,
    ):
        self.limit = limit
        self._slow = slow
        self._window = window
        self._backoff = backoff
        self._clock = clock
        self._threadedUntil = 0.0
        self._slowAt = deque(maxlen=strikes)

    def admits(self, size: int) -> bool:
        """
        Whether a file of C{size} bytes, all waiting, is finished inline.
        """
        return size <= self.limit and self._clock() >= self._threadedUntil

    def took(self, seconds: float) -> None:
        """
        Finishing a file inline took C{seconds}.
        """
        if seconds < self._slow:
            if self._slowAt:
                self._slowAt.clear()
            return
        now = self._clock()
        self._slowAt.append(now)
        if len(self._slowAt) == self._slowAt.maxlen and now - self._slowAt[0] <= self._window:
            self._threadedUntil = now + self._backoff
            self._slowAt.clear()


#: File systems whose files live in memory.
_MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})


def inMemoryFileSystem(path: str, mountInfo: str = "/proc/self/mountinfo") -> bool:
    """
    Whether C{path} is on a file system in memory (tmpfs, ramfs): the
    mount of its device, in Linux's C{mountinfo}, says.  C{False} where
    that cannot be told.
    """
    try:
        device = os.stat(path).st_dev
        with open(mountInfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    wanted = "%d:%d" % (os.major(device), os.minor(device))
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[2] == wanted and " - " in line:
            return line.split(" - ", 1)[1].split()[0] in _MEMORY_FILE_SYSTEMS
    return False


class SpareFiles:
    """
    Unnamed files kept open in one directory for L{SpoolFile}s to start
    from.

    L{take} is called on the reactor thread and never blocks: it returns a
    spare, or C{None} when there is none (the spool file then creates its
    file itself).  When fewer than half of C{size} are left, it has a
    worker thread L{refill} the pool: one thread job for several files,
    rather than one per file (a thread job costs the reactor about as much
    as writing a small file on it).
    Where unnamed files are not supported (not Linux, or a file system
    without C{O_TMPFILE}) the first attempt finds out and the pool stays
    empty.

    @ivar directory: where the files are created (they can only be linked
        into the same file system).
    @ivar size: how many spares to keep.
    @ivar mode: the files' permissions (less the umask), which they keep
        when they are linked.
    @ivar reserveLimit: the largest object whose size L{reserve} allocates
        ahead, so that spares never hold more than C{size} times this.
    """

    _FLAGS = getattr(os, "O_TMPFILE", 0) | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)

    def __init__(
        self,
        directory: str,
        threadpool,
        size: int = 8,
        mode: int = FILE_MODE,
        inline: Optional[bool] = None,
        reserveLimit: int = INLINE_LIMIT,
    ):
        """
        @param inline: whether L{take} creates spares itself, on its own
            thread, rather than in a worker thread: by default, when the
            directory is on a file system in memory
            (L{inMemoryFileSystem}), where creating a file never waits for
            a disk or a journal and takes a few microseconds, less than
            handing the job to a worker thread and taking the interpreter
            lock back from it.
        """
        self.directory = directory
        self.size = size
        self.mode = mode
        self.inline = inMemoryFileSystem(directory) if inline is None else inline
        self._threadpool = threadpool
        self.reserveLimit = reserveLimit
        self._spares = deque()
        # Spare -> the bytes allocated in it (L{reserve}), for those that
        # have any.
        self._reserved = {}
        self._lock = threading.Lock()
        self._filling = 0
        self.supported = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")

    def take(self) -> Tuple[Optional[int], int]:
        """
        A spare file descriptor, which the caller now owns, or C{None}; and
        how many bytes of it are allocated already (L{reserve}): its size
        until it is written, which a smaller file must be cut back to.
        """
        if not self.supported:
            return None, 0
        try:
            spare = self._spares.popleft()
        except IndexError:
            spare = None
        if len(self._spares) < self.size // 2:
            with self._lock:
                idle = not self._filling
            if idle and self.inline:
                self.refill()
            elif idle:
                self._threadpool.callInThread(self.refill)
        return spare, self._reserved.pop(spare, 0)

    def reserve(self, size: int) -> None:
        """
        On a file system in memory, allocate the pages of an object of
        C{size} bytes in the next spare that has none: an owner calls it
        once it has answered an object, expecting the next to be alike,
        while the sender reads the response and sends that next one.  The
        whole pages only, so that an object of the same size or larger
        needs nothing cut back.  Elsewhere, or for an object larger than
        L{reserveLimit}, nothing.  Spares made inline are made here too,
        when any are missing.
        """
        if not (self.inline and self.supported):
            return
        # Spares made now are not made at the next take, on its object's way.
        self.refill()
        size &= ~(_PAGE - 1)
        if not 0 < size <= self.reserveLimit:
            return
        for spare in self._spares:
            if spare not in self._reserved:
                try:
                    os.posix_fallocate(spare, 0, size)
                except OSError:
                    # A full file system, which the next write will report.
                    # The spare may have grown: it is left out.
                    self._spares.remove(spare)
                    os.close(spare)
                    return
                self._reserved[spare] = size
                return

    def refill(self) -> None:
        """
        In a worker thread (or inline): create spares until there are
        C{size}.
        """
        with self._lock:
            if self._filling >= 1 or len(self._spares) >= self.size:
                return
            self._filling += 1
        try:
            while self.supported and len(self._spares) < self.size:
                try:
                    fd = os.open(self.directory, self._FLAGS, self.mode)
                except OSError as e:
                    if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                        # This kernel or file system has no O_TMPFILE.
                        self.supported = False
                    # Otherwise (a full disk, a missing directory) try
                    # again next time.
                    return
                if not self.supported:
                    os.close(fd)
                    return
                self._spares.append(fd)
        finally:
            with self._lock:
                self._filling -= 1

    def close(self) -> None:
        """
        Close the spares (they vanish: they have no name).
        """
        self.supported = False
        self._reserved.clear()
        while self._spares:
            try:
                os.close(self._spares.popleft())
            except (IndexError, OSError):
                pass


class SpoolFile:
    """
    A file being written from a stream of fragments.

    @ivar path: the file's temporary path.  It is created exclusively by
        the first job; a spool that starts from an unnamed spare file gets
        a name only once complete, in its last job (L{nameInThread}), or
        goes straight to its final name (L{moveInThread}).
    @ivar size: the number of bytes handed to L{write} so far.
    """

    def __init__(
        self,
        path: str,
        header: bytes,
        *,
        reactor,
        threadpool,
        pause: Callable[[], None],
        resume: Callable[[], None],
        sync: bool = False,
        highWater: int = HIGH_WATER,
        lowWater: int = LOW_WATER,
        flushSize: int = FLUSH_SIZE,
        spare: Optional[int] = None,
        reserved: int = 0,
        mode: int = FILE_MODE,
        inline: Optional[InlineWrites] = None,
    ):
        """
        @param header: bytes written before the first fragment.
        @param pause: called when reading from the network should stop.
        @param resume: called when it may start again.
        @param sync: C{fsync} the file before L{close} reports success.
        @param spare: an unnamed file (from L{SpareFiles.take}) to write
            into instead of creating C{path}; this spool owns it.
        @param reserved: the size of the spare until it is written (its
            pages allocated by L{SpareFiles.reserve}); a smaller file is
            cut back to what was written.
        @param mode: the permissions (less the umask) of the file, when
            this spool creates it; a spare has its own.
        @param inline: when it admits the file at L{close}, the last job
            runs on the calling (reactor) thread; C{None}: every job runs
            in a worker thread.
        """
        self.path = path
        self.size = 0
        self._reactor = reactor
        self._threadpool = threadpool
        self._pause = pause
        self._resume = resume
        self._sync = sync
        self._highWater = highWater
        self._lowWater = lowWater
        self._flushSize = flushSize
        self._waiting: List = [header] if header else []
        self._waitingSize = len(header)
        self._fd: Optional[int] = spare
        self._unnamed = spare is not None
        self._reserved = reserved
        self._written = 0
        self._mode = mode
        self._inline = inline
        self._moved = False
        self._job: Optional[defer.Deferred] = None
        self._paused = False
        self._error: Optional[BaseException] = None
        self._closing: Optional[defer.Deferred] = None
        self._then: Optional[Callable[[], object]] = None

    @property
    def written(self) -> int:
        """
        How many bytes the file holds: once the last job has run, its size.
        """
        return self._written

    @property
    def error(self) -> Optional[BaseException]:
        """
        The error that stopped writing, if any; later fragments are dropped.
        """
        return self._error

    def write(self, fragment) -> None:
        """
        Queue a fragment.  It must stay unchanged until written (received
        PDU data is immutable, so memoryviews of it qualify).
        """
        if self._error is not None:
            return
        self.size += len(fragment)
        self._waiting.append(fragment)
        self._waitingSize += len(fragment)
        if self._job is None and self._waitingSize >= self._flushSize:
            self._startJob(final=False)
        if not self._paused and self._waitingSize >= self._highWater:
            self._paused = True
            self._pause()

    def close(self, then: Optional[Callable[[], object]] = None) -> defer.Deferred:
        """
        Write what is waiting and close the file.

        @param then: run in the same worker-thread job once the file is
            closed, so that finishing an object costs one thread round trip.
        @return: a L{Deferred} firing with C{then}'s result once every byte
            is in the file (and synced, if asked), or failing with the first
            error; either way the file descriptor is closed and the file is
            left for the caller to rename or remove.
        """
        if self._error is not None:
            return defer.fail(self._error)
        if self.closesHere():
            try:
                return defer.succeed(self.closeHere(then))
            except BaseException:
                return defer.fail()
        self._closing = defer.Deferred()
        self._then = then
        if self._job is None:
            self._startJob(final=True)
        return self._closing

    def closesHere(self) -> bool:
        """
        Whether L{closeHere} may finish the file: nothing went wrong, no
        job is running, and the file's L{InlineWrites} admits what is
        waiting.
        """
        return self._error is None and self._job is None and self._inline is not None and self._inline.admits(self._waitingSize)

    def closeHere(self, then: Optional[Callable[[], object]] = None):
        """
        L{close}, on this thread and without a L{Deferred}, when
        L{closesHere} says so: an object finished on the reactor thread is
        answered in the same call.

        @return: C{then}'s result.
        @raise BaseException: the first error, as L{close}'s L{Deferred}
            would fail with it; the file descriptor is closed.
        """
        chunks, self._waiting = self._waiting, []
        self._waitingSize = 0
        self._then = then
        started = time.monotonic()
        try:
            return self._runJob(chunks, True)
        except BaseException as e:
            self._error = e
            self._then = None
            self._resumeIfPaused()
            raise
        finally:
            self._inline.took(time.monotonic() - started)

    def discard(self) -> defer.Deferred:
        """
        Abandon the file: stop writing, close it and delete it.

        @return: a L{Deferred} firing once it is gone.
        """
        self._error = self._error or _Discarded()
        self._waiting = []
        self._waitingSize = 0
        self._resumeIfPaused()
        job = self._job if self._job is not None else defer.succeed(None)
        job.addBoth(lambda _: self._inThread(self._removeInThread))
        return job

    # -- jobs --------------------------------------------------------------------

    def _inThread(self, function, *args) -> defer.Deferred:
        return deferToThreadPool(self._reactor, self._threadpool, function, *args)

    def _startJob(self, final: bool) -> None:
        chunks, self._waiting = self._waiting, []
        self._waitingSize = 0
        job = self._job = self._inThread(self._runJob, chunks, final)
        job.addCallbacks(self._jobDone, self._jobFailed, callbackArgs=(final,))

    def _runJob(self, chunks: List, final: bool):
        """
        One job, in a worker thread or, for the last job of an inline file,
        on the reactor thread: write C{chunks}; the last one also closes
        (or links) the file and runs C{then}.
        """
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self._mode)
        try:
            self._written += _writeAll(self._fd, chunks)
            if final and self._written < self._reserved:
                os.ftruncate(self._fd, self._written)
            if final and self._sync:
                os.fsync(self._fd)
        except BaseException:
            self._closeInThread()
            raise
        if final:
            # What C{then} holds (the data set's head, perhaps a view of a
            # receiving buffer) goes with it.
            then, self._then = self._then, None
            if self._unnamed and then is not None:
                # The file stays open and unnamed while C{then} runs, so
                # that L{moveInThread} can link it straight to its final
                # name; if C{then} does not, closing it makes it vanish.
                try:
                    return then()
                finally:
                    self._closeInThread()
            self.nameInThread()
            self._closeInThread()
            if then is not None:
                return then()
        return None

    def nameInThread(self) -> str:
        """
        In the last job: make sure the file exists under L{path} (an
        unnamed spare gets that name), and return it.
        """
        if self._unnamed:
            _linkUnnamed(self._fd, self.path)
            self._unnamed = False
        return self.path

    def moveInThread(self, final: str) -> None:
        """
        In the last job: give the complete file its final name,
        atomically replacing a file of that name.  An unnamed file is
        linked there directly when the name is free (one directory
        operation instead of a link and a rename).

        @raise OSError: it could not be moved; it keeps its temporary
            name, if it has one.
        """
        if self._unnamed:
            try:
                _linkUnnamed(self._fd, final)
            except FileExistsError:
                pass
            else:
                self._unnamed = False
                self._moved = True
                return
        os.replace(self.nameInThread(), final)
        self._moved = True

    def _closeInThread(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _removeInThread(self) -> None:
        # The name goes before the descriptor, so that a file no longer
        # open is already gone.  A file that never had a name goes when it
        # is closed; a moved one is not ours any more.
        if not (self._unnamed or self._moved):
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self._closeInThread()

    def _jobDone(self, result, final: bool) -> None:
        self._job = None
        if self._error is not None:
            return
        if final:
            self._closing.callback(result)
            return
        if self._closing is not None:
            self._startJob(final=True)
        elif self._waitingSize >= self._flushSize:
            self._startJob(final=False)
        if self._waitingSize < self._lowWater:
            self._resumeIfPaused()

    def _jobFailed(self, failure) -> None:
        self._job = None
        self._then = None
        if self._error is None:
            self._error = failure.value
        self._waiting = []
        self._waitingSize = 0
        self._resumeIfPaused()
        if self._closing is not None and not self._closing.called:
            self._closing.errback(failure)

    def _resumeIfPaused(self) -> None:
        if self._paused:
            self._paused = False
            self._resume()


class _Discarded(Exception):
    """
    The file was discarded before it was complete.
    """
