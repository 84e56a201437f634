"""
The archive index as a service of the daemon's service tree: L{Archive}
opens the index database when the daemon starts (after twistd has dropped
privileges), brings areas an older index named by AE title under their
directory's name, and closes the index last, recording a clean end.

Storage areas are named in the index by their directory, so AEs over one
directory share its contents.  The AEs that serve the archive are
assembled above L{dicomd.services}, in L{dicomd.qrentity}.
"""

import os
from typing import Sequence, Tuple

from twisted.application import service
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from dicomd.archive.area import adoptTitleArea
from dicomd.archive.asyncindex import AsyncArchiveIndex
from dicomd.archive.databases import displayName, isURL, openIndex
from dicomd.archive.index import RUN_CRASHED, RUN_TAKEN_OVER

#: The index database's file name inside the default data directory; the
#: leading dot keeps it out of reindexing and file listings.
INDEX_FILE = ".dicomd-index.sqlite"

_log = Logger(namespace="dicomd.archive")


class Archive(service.Service):
    """
    The archive index: an L{IArchiveIndex<dicomd.archive.index.IArchiveIndex>}
    in SQLite or PostgreSQL for worker threads, and an L{AsyncArchiveIndex}
    over it for the reactor thread.

    @ivar database: the SQLite file or C{postgresql://} URL of the index.
    @ivar path: the database as messages name it (a URL's password
        hidden).

    Queries run in a small thread pool of their own (L{QUERY_THREADS}
    threads), so that a C-FIND is answered in milliseconds even while many
    senders keep the reactor's pool busy with storage work.

    @ivar areas: C{(AE title, directory)} of each AE configured at start,
        in configuration order: on opening, the rows an index written
        before areas were named by directory keeps under each AE title
        become its directory's (L{adoptTitleArea}).
    """

    #: Threads of the query pool: SQLite in WAL mode reads concurrently.
    QUERY_THREADS = 2

    def __init__(
        self, database: str, *, areas: Sequence[Tuple[str, str]] = (), node=None, reactor=None, threadpool=None, reader: bool = False
    ):
        """
        @param node: the name of this daemon among those sharing an index
            in PostgreSQL, or C{None} for the host's name.
        @param reader: open the index for queries alone, as a worker
            process does (L{dicomd.workers}): its coordinator writes it,
            records its runs and names its areas.
        @param threadpool: the pool everything runs in, queries too (tests
            give one that runs at once); by default the reactor's, and a
            query pool of the archive's own.
        """
        self.database = database
        self.path = displayName(database)
        self.areas = areas
        self.reader = reader
        self.index = openIndex(database, node)
        self._queryPool = None if threadpool is not None else ThreadPool(0, self.QUERY_THREADS, "dicomd-queries")
        self.asyncIndex = AsyncArchiveIndex(self.index, reactor=reactor, threadpool=threadpool, queryThreadpool=self._queryPool)

    def startService(self) -> None:
        if not isURL(self.database):
            os.makedirs(os.path.dirname(os.path.abspath(self.database)), exist_ok=True)
        self.index.open()
        if not self.reader:
            self._beginRun()
        if self._queryPool is not None:
            self._queryPool.start()
        service.Service.startService(self)

    def _beginRun(self) -> None:
        previous = self.index.beginRun()
        if previous is RUN_CRASHED:
            _log.warn(
                "The index {path} was not closed cleanly (the daemon was killed or crashed): "
                "each storage area is searched for files that were stored but not indexed",
                path=self.path,
            )
        elif previous is RUN_TAKEN_OVER:
            _log.info(
                "The previous run of this node on {path} did not end cleanly; another node has indexed what it left",
                path=self.path,
            )
        for title, directory in self.areas:
            adoptTitleArea(self.index, title, directory)

    def stopService(self) -> None:
        """
        Close the index, recording a clean end; call it once nothing writes
        to the index any more.
        """
        service.Service.stopService(self)
        if self._queryPool is not None:
            self._queryPool.stop()
        if not self.reader:
            self.index.endRun()
        self.index.close()

