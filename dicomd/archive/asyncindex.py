"""
The archive's index for the reactor thread: L{AsyncArchiveIndex} runs the
blocking methods of an L{IArchiveIndex<dicomd.archive.index.IArchiveIndex>}
provider in thread pools and returns Deferreds, and L{PendingResponses}
reads a C-FIND's matches batch by batch.  Kept apart so that
L{dicomd.archive.index} imports no Twisted.
"""

from itertools import islice

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool

from dicomd.archive.reindexing import reindex


#: The longest a query waits for the rows of what was acknowledged before
#: it (L{AsyncArchiveIndex.writesInto}): they take about ten milliseconds,
#: and an index that cannot record must not hold the query longer.
WRITTEN_WAIT = 5.0


class PendingResponses:
    """
    The responses of a C-FIND, read from the index in a thread pool batch
    by batch, so that the SCP sends each batch as pending responses while
    the next one is read.

    Call L{next} again only after its previous Deferred has fired, and
    L{close} when abandoning the responses (C-CANCEL, association lost)
    before L{next} has returned an empty list.
    """

    def __init__(self, call, responses):
        """
        @param call: runs a function in the thread pool, returning a
            Deferred (L{AsyncArchiveIndex}'s).
        @param responses: the iterator of
            L{IArchiveIndex.find<dicomd.archive.index.IArchiveIndex.find>}.
        """
        self._call = call
        self._responses = responses

    def next(self, count=100):
        """
        Read the next responses.

        @param count: how many at most.
        @return: a Deferred firing with a list of response identifiers,
            empty when there are no more.
        """
        return self._call(lambda: list(islice(self._responses, count)))

    def close(self):
        """
        Stop reading and release the database.

        @return: a Deferred firing with C{None} when done.
        """
        return self._call(self._responses.close)


class AsyncArchiveIndex:
    """
    An L{IArchiveIndex<dicomd.archive.index.IArchiveIndex>} for the reactor
    thread: each method runs the blocking method of the same name in a
    thread pool and returns a Deferred of its result.
    """

    def __init__(self, index, reactor=None, threadpool=None, queryThreadpool=None):
        """
        @param index: the L{IArchiveIndex<dicomd.archive.index.IArchiveIndex>}
            provider to run.
        @param reactor: the reactor the results are delivered through; the
            global one by default.
        @param threadpool: the thread pool to run in (anything with
            C{callInThreadWithCallback}); the reactor's by default.
        @param queryThreadpool: the thread pool C-FIND and the instance
            lists of C-MOVE and C-GET run in, or C{None} for
            C{threadpool}: with a pool of their own, queries do not wait
            behind the storage work (writes, fsync, index rows) of many
            senders.
        """
        if reactor is None:
            from twisted.internet import reactor
        if threadpool is None:
            threadpool = reactor.getThreadPool()
        self._index = index
        self._reactor = reactor
        self._threadpool = threadpool
        self._queryThreadpool = queryThreadpool if queryThreadpool is not None else threadpool
        self._writers = {}

    def writesInto(self, area, writer) -> None:
        """
        Have the queries of C{area} wait for C{writer}'s rows first
        (L{IndexWriter.whenWritten<dicomd.archive.writer.IndexWriter.whenWritten>}):
        an object acknowledged before a C-FIND, C-MOVE or C-GET arrives is
        found by it, as dcmqrscp finds what it indexed before answering.
        """
        self._writers[area] = writer

    def stopsWriting(self, area, writer) -> None:
        """
        C{writer} no longer writes into C{area} (unless another took its
        place since, as when a reload replaces an AE's storage).
        """
        if self._writers.get(area) is writer:
            del self._writers[area]

    def _written(self, area):
        writer = self._writers.get(area)
        if writer is None:
            return defer.succeed(None)
        return writer.whenWritten(self._reactor, WRITTEN_WAIT)

    def _call(self, function, *args, **kwargs):
        return deferToThreadPool(
            self._reactor, self._threadpool, function, *args, **kwargs
        )

    def _query(self, function, *args, **kwargs):
        return deferToThreadPool(
            self._reactor, self._queryThreadpool, function, *args, **kwargs
        )

    def addInstance(self, area, header, stored):
        return self._call(self._index.addInstance, area, header, stored)

    def addInstances(self, area, items):
        return self._call(self._index.addInstances, area, list(items))

    def removeInstance(self, area, sopInstanceUID):
        return self._call(self._index.removeInstance, area, sopInstanceUID)

    def movePath(self, area, oldPath, newPath):
        return self._call(self._index.movePath, area, oldPath, newPath)

    def removeStudy(self, area, studyInstanceUID):
        return self._call(self._index.removeStudy, area, studyInstanceUID)

    def studyCount(self, area):
        return self._call(self._index.studyCount, area)

    def studyUsage(self, area, studyInstanceUID):
        return self._call(self._index.studyUsage, area, studyInstanceUID)

    def studiesByLastUpdate(self, area, limit=None, evictable=False):
        return self._call(self._index.studiesByLastUpdate, area, limit, evictable)

    def instancesOfStudy(self, area, studyInstanceUID, evictable=False):
        return self._call(self._index.instancesOfStudy, area, studyInstanceUID, evictable)

    def removeUnqueued(self, area, sopInstanceUIDs):
        return self._call(self._index.removeUnqueued, area, list(sopInstanceUIDs))

    def storedPaths(self, area):
        return self._call(self._index.storedPaths, area)

    def find(self, area, model, identifier, checkIdentifier=False):
        """
        Answer a C-FIND.

        @return: a Deferred firing with the L{PendingResponses}, or failing
            with L{dicomd.archive.matching.QueryError}.
        """
        d = self._written(area)
        d.addCallback(lambda _: self._query(self._index.find, area, model, identifier, checkIdentifier))
        d.addCallback(lambda responses: PendingResponses(self._query, responses))
        return d

    def instancesFor(self, area, model, identifier, checkIdentifier=False):
        d = self._written(area)
        d.addCallback(lambda _: self._query(self._index.instancesFor, area, model, identifier, checkIdentifier))
        return d

    def reindex(self, area, directory):
        """
        Run L{dicomd.archive.reindexing.reindex} on the index.

        @return: a Deferred firing with the
            L{ReindexReport<dicomd.archive.index.ReindexReport>}.
        """
        return self._call(reindex, self._index, area, directory)

    def close(self):
        return self._call(self._index.close)
