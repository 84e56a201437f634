"""
Group commit: what a storage area stores, written to the index in
batches, behind the C-STORE-RSP.

A received object is acknowledged once its file has its final name: that
is what the storage SCP promises (PS3.4 B.2.3).  Its index row is written
moments later, in one transaction with the rows of the objects that
arrived meanwhile: one commit for many objects instead of one each, and
no wait for the index while the sender waits for its response.  A crash
in between leaves files without rows; the next start indexes them
(L{IndexedArea.recover}) before it serves anyone, so C-FIND, C-MOVE and
C-GET find every acknowledged instance.  The rows lag the responses by
about ten milliseconds: the writer lets the objects of that long gather
in one transaction (L{WINDOW}).  A query of the area waits for the rows
of what was acknowledged before it (L{IndexWriter.whenWritten}), so
that it finds them, as dcmqrscp finds what it indexed before answering.

An instance's forwarding queue entries are written in the transaction of
its row (L{dicomd.archive.queue}), so they lag the response as the row
does, and the same recovery queues them: every acknowledged instance is
forwarded, whatever crash follows its response.

Operations on one area are applied in the order they were asked for: a
file renamed at the end of its study, or removed because its
association ended before the response, changes a row already written;
and what waits for the end of a study (L{IndexWriter.afterWritten}) finds
the study's rows and queue entries written.

While the index cannot record (locked, full, broken), the writer keeps
what it holds and tries again with growing pauses, and new objects are
refused with 0xA700 (out of resources), so that senders try again later.
Any other error is a fault of one operation, not of the index: the
additions of a batch that raised one are written again one by one, and
the one that still raises is logged, naming its file, and left out (the
file stays where it is), so that it cannot stall the area's index.

On a local SQLite index the writer writes on the reactor thread itself
where it can (L{IndexWriter.inline}): a worker thread's batch takes the
interpreter lock from the reactor at each of its system calls, and the
handing over of the lock, back and forth, cost more than the rows (with
32 senders, 81 µs of CPU per object in the thread against 18 more on the
reactor).  It never waits there for the database: where another writer
holds it, a statement fails, or batches were slow lately, the thread
writes them, as it always did; and the write-ahead log is copied into
the database (with its C{fsync}s) by a worker thread.

Worker processes (L{dicomd.workers}) acknowledge before the coordinator's
writer hears of an object: they refuse new objects while it reports
(L{IndexWriter.watchFailure}) that the index cannot record, and what they
acknowledged meanwhile it keeps as it keeps the rest (L{IndexWriter.take}).
"""

import threading
import time
from collections import deque
from typing import Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import threadable

from dicomd.archive.area import IndexedArea
from dicomd.archive.index import DATABASE_ERRORS
from dicomd.archive.sql import HeaderKeys
from dicomd.dimse.status import OUT_OF_RESOURCES
from dicomd.storage.scp import ReceivedInstance, StoreRefused
from dicomd.storage.spool import InlineWrites

#: The most rows one transaction writes.
BATCH = 500

#: Seconds the writer lets additions gather before it writes them: a
#: transaction costs about as much as the rows of a few objects, and
#: objects arrive every millisecond or two from a fast sender.
WINDOW = 0.01

#: Inline transactions (L{IndexWriter.inline}) between two copies of the
#: write-ahead log into the database by a worker thread.
CHECKPOINT_EVERY = 100

_ADD, _REMOVE, _MOVED, _CALL = "add", "remove", "moved", "call"


class IndexWriter:
    """
    The index of a L{dicomd.storage.scp.StorageArea} that records in
    batches (see the module docstring).  Its methods are called in worker
    threads or on the reactor thread, and never wait for the database.

    @ivar area: the L{IndexedArea} written to.
    @ivar returnsAtOnce: L{add} does not wait for the database, so the
        storage area may finish a small object on the reactor thread.
    """

    log = Logger()
    returnsAtOnce = True

    def __init__(
        self,
        area: IndexedArea,
        schedule: Callable[[Callable[[], None]], None],
        *,
        batch: int = BATCH,
        window: float = WINDOW,
        retryFirst: float = 0.1,
        retryMax: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        reactor=None,
        inline: Optional[InlineWrites] = None,
        onReactorThread: Callable[[], bool] = threadable.isInIOThread,
        clock: Callable[[], float] = time.monotonic,
    ):
        """
        @param schedule: runs a callable in a worker thread (a thread
            pool's C{callInThread}); the writer holds one thread while it
            has work.
        @param window: seconds to wait, before a transaction of
            additions, for more to join it (unless a full C{batch} waits).
        @param retryFirst: seconds before writing again after a database
            error; the pause doubles up to C{retryMax}.
        @param inline: where given, additions asked for on the reactor
            thread are written on it (by C{reactor}'s C{callLater}) while
            this admits it and nothing else waits; see L{inline}.  The
            area's index must have C{withoutWaiting} and C{checkpoint}
            (L{dicomd.archive.index.SQLiteArchiveIndex}).
        """
        self.area = area
        self._schedule = schedule
        self._batch = batch
        self._window = window
        self._retryFirst = retryFirst
        self._retryMax = retryMax
        self._sleep = sleep
        self._operations = deque()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._running = False
        self._stopping = False
        self._failure: Optional[str] = None
        # How many additions are still written one per transaction, to
        # find the one a batch failed on.
        self._isolating = 0
        self._failureWatchers = []
        self._reactor = reactor
        #: The L{InlineWrites} that admits batches on the reactor thread,
        #: or C{None}.
        self.inline = inline
        self._onReactorThread = onReactorThread
        self._clock = clock
        self._sinceCheckpoint = 0

    # -- what StorageArea calls ----------------------------------------------------

    def add(self, received: ReceivedInstance) -> None:
        """
        Record a stored file, with its forwarding queue entries, in the
        next batch (which deletes a file it replaced).

        @raise StoreRefused: the index cannot record (0xA700), or the
            object is larger than the study quota.
        """
        failure = self._failure
        if failure is not None:
            raise StoreRefused(OUT_OF_RESOURCES, "the index cannot record it: %s" % (failure,))
        self.area.checkSize(received)
        self._submit((_ADD, received))
        return None

    def prepare(self, received: ReceivedInstance) -> None:
        """
        On the reactor thread, once an object is answered: read what its
        row will hold (L{HeaderKeys}), so that the writing thread only
        writes it.
        """
        try:
            received.prepared = HeaderKeys.of(received.head)
        except Exception:
            # The writing thread reads it again, and leaves out, with a
            # log line naming its file, what it cannot record.
            received.prepared = None

    def take(self, received: ReceivedInstance) -> None:
        """
        Record a stored file that a worker process acknowledged already, as
        L{add} does, but never refuse it: the worker checked its size, and
        refused objects itself while this writer could not record.
        """
        self._submit((_ADD, received))

    def watchFailure(self, watcher: Callable[[Optional[str]], None]) -> None:
        """
        Call C{watcher} in the writing thread each time the index stops
        recording (with the error's text) and starts again (with C{None}).
        """
        self._failureWatchers.append(watcher)

    def _failing(self, failure: Optional[str]) -> None:
        """
        Record whether the index records (C{failure} C{None}) or not, and
        tell the watchers when that changes.
        """
        changed = (failure is None) != (self._failure is None)
        self._failure = failure
        if changed:
            for watcher in self._failureWatchers:
                watcher(failure)

    def remove(self, received: ReceivedInstance) -> None:
        """
        Forget a stored object, after any earlier operation.
        """
        self._submit((_REMOVE, received))

    def moved(self, oldPath: str, newPath: str) -> None:
        """
        Record that a stored file was renamed, after any earlier operation.
        """
        self._submit((_MOVED, oldPath, newPath))

    def afterWritten(self, function: Callable[[], None]) -> None:
        """
        Call C{function} in the writing thread once every operation asked
        for so far is written: the end of a study releases the queue
        entries held for it (L{dicomd.forwarding.Forwarding.studyEnded})
        only once they are written.  A writer that stops with changes it
        cannot write drops it with them (the next start queues what was
        held, and indexes the files).
        """
        self._submit((_CALL, function))

    def whenWritten(self, reactor, timeout: float) -> defer.Deferred:
        """
        On the reactor thread: a L{Deferred} that fires (with C{None}) once
        every operation asked for so far is written, or after C{timeout}
        seconds, whichever comes first: a query waits for the rows of the
        objects acknowledged before it, but not for an index that cannot
        record.  At once when nothing is waiting.
        """
        with self._lock:
            idle = not self._running and not self._operations
        if idle:
            return defer.succeed(None)
        written = defer.Deferred()

        def fire():
            if not written.called:
                timer.cancel()
                written.callback(None)

        def expire():
            if not written.called:
                written.callback(None)

        timer = reactor.callLater(timeout, expire)
        self.afterWritten(lambda: reactor.callFromThread(fire))
        return written

    def recover(self) -> None:
        self.area.recover()

    # -- the writing thread ------------------------------------------------------------

    def close(self, timeout: Optional[float] = None) -> bool:
        """
        Block until everything asked so far is written; while the index
        cannot record, give up after C{timeout} seconds (the next start
        indexes the files, L{IndexedArea.recover}).

        @return: whether everything was written.
        """
        with self._idle:
            if self._idle.wait_for(lambda: not self._running, timeout):
                return True
            self._stopping = True
            self._idle.wait_for(lambda: not self._running)
            return False

    def _submit(self, operation) -> None:
        with self._lock:
            self._operations.append(operation)
            if self._running:
                return
            self._running = True
        if operation[0] == _ADD and self._writesHere():
            self._reactor.callLater(self._window, self._drainHere)
        else:
            self._schedule(self._drain)

    def _writesHere(self) -> bool:
        """
        Whether the next batch is written on the reactor thread, this one.
        """
        return (
            self.inline is not None
            and self.area.quota is None
            and self._failure is None
            and self.inline.admits(0)
            and self._onReactorThread()
        )

    def _drainHere(self) -> None:
        """
        On the reactor thread: write the additions waiting, a batch (one
        transaction) at a time, without waiting for the database; leave to
        the thread (L{_drain}) what does not go so: an operation other than
        an addition, a database another writer holds, a batch that fails
        (the thread tries again, and finds the addition at fault).
        """
        with self._lock:
            taken = []
            for operation in self._operations:
                if operation[0] != _ADD or len(taken) == self._batch:
                    break
                taken.append(operation[1])
            if not self._operations:
                self._running = False
                self._idle.notify_all()
                return
        if not taken or self._isolating or not self._writesHere():
            self._schedule(self._drain)
            return
        started = self._clock()
        try:
            with self.area.index.withoutWaiting():
                self.area.addMany(taken)
        except Exception:
            self._schedule(self._drain)
            return
        self.inline.took(self._clock() - started)
        self._sinceCheckpoint += 1
        if self._sinceCheckpoint >= CHECKPOINT_EVERY:
            self._sinceCheckpoint = 0
            self._schedule(self._checkpoint)
        with self._lock:
            for _ in taken:
                self._operations.popleft()
            waiting = len(self._operations)
            if not waiting:
                self._running = False
                self._idle.notify_all()
                return
        # The next batch after the window (as the thread gathers one),
        # unless a whole batch waits already.
        self._reactor.callLater(0 if waiting >= self._batch else self._window, self._drainHere)

    def _checkpoint(self) -> None:
        """
        In a worker thread: copy the write-ahead log that the inline
        transactions left into the database.
        """
        try:
            self.area.index.checkpoint()
        except DATABASE_ERRORS as e:
            self.log.warn(
                "Copying the write-ahead log of the index of {area} into its database failed ({error}); the next copy tries again",
                area=self.area.name,
                error=str(e),
            )

    @staticmethod
    def _describe(operation) -> str:
        kind = operation[0]
        if kind == _ADD:
            return "the file %s" % (operation[1].path,)
        if kind == _REMOVE:
            return "the removal of %s" % (operation[1].path,)
        if kind == _MOVED:
            return "the move of %s" % (operation[1],)
        return "a call after the rows before it"

    def _drain(self) -> None:
        """
        In a worker thread: apply the operations waiting, oldest first, the
        consecutive additions as one transaction (gathered for
        C{window} seconds), until there are none.
        """
        pause = self._retryFirst
        while True:
            if self._window:
                with self._lock:
                    gather = 0 < len(self._operations) < self._batch and self._operations[0][0] == _ADD
                if gather:
                    self._sleep(self._window)
            with self._lock:
                if not self._operations:
                    self._running = False
                    self._idle.notify_all()
                    return
                first = self._operations[0]
                if first[0] == _ADD:
                    taken = []
                    limit = 1 if self._isolating else self._batch
                    for operation in self._operations:
                        if operation[0] != _ADD or len(taken) == limit:
                            break
                        taken.append(operation[1])
                    count = len(taken)
                else:
                    count = 1
            try:
                if first[0] == _ADD:
                    self.area.addMany(taken)
                elif first[0] == _CALL:
                    first[1]()
                elif first[0] == _REMOVE:
                    self.area.remove(first[1])
                else:
                    self.area.moved(first[1], first[2])
            except DATABASE_ERRORS as e:
                if self._stopping:
                    with self._lock:
                        self.log.error(
                            "Stopping with {count} changes to the index of {area} not written ({error}); "
                            "the next start indexes the files the index lacks",
                            count=len(self._operations),
                            area=self.area.name,
                            error=str(e),
                        )
                        self._operations.clear()
                        self._running = False
                        self._idle.notify_all()
                    return
                if self._failure is None:
                    self.log.error(
                        "The index cannot record what {area} stored ({count} waiting): {error}; "
                        "refusing new objects with 0xA700 and trying again",
                        area=self.area.name,
                        count=len(self._operations),
                        error=str(e),
                    )
                self._failing(str(e))
                self._sleep(pause)
                pause = min(pause * 2, self._retryMax)
                continue
            except Exception:
                if first[0] == _ADD and count > 1:
                    self._isolating = count
                    continue
                self.log.failure(
                    "Leaving {operation} out of the index of {area}",
                    operation=self._describe(first),
                    area=self.area.name,
                )
            if self._isolating and first[0] == _ADD:
                self._isolating -= 1
            if self._failure is not None:
                self.log.info("The index records what {area} stores again", area=self.area.name)
                self._failing(None)
                pause = self._retryFirst
            with self._lock:
                for _ in range(count):
                    self._operations.popleft()
