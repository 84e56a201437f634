"""
Streaming a received data set to disk without holding it in memory.

L{SpoolFile} takes fragments on the reactor thread and writes them to a file
in a worker thread, in order, one write job at a time.  Fragments wait in
memory only until the next job takes them; when more than C{highWater}
bytes are waiting (the disk is slower than the network) it asks its owner to
stop reading from the transport, and asks it to resume once the backlog is
below C{lowWater}.  Memory per file is therefore bounded whatever the size of
the object.  Nothing here knows about DICOM.
"""

import os
from typing import Callable, List, Optional

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool

#: Start a write job once this much is waiting.
FLUSH_SIZE = 1 << 20

#: Ask for reading to stop above this backlog, and to resume below lowWater.
HIGH_WATER = 8 << 20
LOW_WATER = 2 << 20

_IOV_MAX = 1024


def _writeAll(fd: int, chunks: List) -> None:
    """
    Write every chunk, handling short writes.
    """
    for start in range(0, len(chunks), _IOV_MAX):
        batch = [memoryview(chunk) for chunk in chunks[start:start + _IOV_MAX]]
        while batch:
            written = os.writev(fd, batch)
            while batch and written >= len(batch[0]):
                written -= len(batch[0])
                batch.pop(0)
            if batch and written:
                batch[0] = batch[0][written:]


class SpoolFile:
    """
    A file being written from a stream of fragments.

    @ivar path: the file's path; it is created exclusively by the first job.
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
    ):
        """
        @param header: bytes written before the first fragment.
        @param pause: called when reading from the network should stop.
        @param resume: called when it may start again.
        @param sync: C{fsync} the file before L{close} reports success.
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
        self._fd: Optional[int] = None
        self._job: Optional[defer.Deferred] = None
        self._paused = False
        self._error: Optional[BaseException] = None
        self._closing: Optional[defer.Deferred] = None
        self._then: Optional[Callable[[], object]] = None

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
        self._closing = defer.Deferred()
        self._then = then
        if self._job is None:
            self._startJob(final=True)
        return self._closing

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
        job = self._job = self._inThread(self._writeInThread, chunks, final)
        job.addCallbacks(self._jobDone, self._jobFailed, callbackArgs=(final,))

    def _writeInThread(self, chunks: List, final: bool):
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _writeAll(self._fd, chunks)
            if final and self._sync:
                os.fsync(self._fd)
        except BaseException:
            self._closeInThread()
            raise
        if final:
            self._closeInThread()
            if self._then is not None:
                return self._then()
        return None

    def _closeInThread(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _removeInThread(self) -> None:
        self._closeInThread()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

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
