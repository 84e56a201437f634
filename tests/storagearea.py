"""
What a storage area holds, seen from outside the daemon that writes it:
files under final names, named temporary files in its root, the index's
rows, and the data files a process holds open.  The fault, hostile-peer,
streaming and daemon tests assert on these.
"""

import os
import sqlite3

from dicomd.storage.scp import TEMPORARY_NAME

#: The daemon's index, in its data directory.
INDEX = ".dicomd-index.sqlite"

#: The daemon's own files in a storage area (the index, and the named
#: temporary files) start with this.
OWN_FILES = ".dicomd-"


def finalFiles(data: str) -> list:
    """
    Every file under a final name in a storage area: all but the daemon's
    own in its root (the index, named temporary files).
    """
    found = []
    for root, directories, files in os.walk(data):
        for name in files:
            if root == data and name.startswith(OWN_FILES):
                continue
            found.append(os.path.join(root, name))
    return sorted(found)


def temporaryFiles(data: str) -> list:
    """
    The named temporary files (L{TEMPORARY_NAME}) in a storage area's root.
    """
    return sorted(name for name in os.listdir(data) if TEMPORARY_NAME.match(name)) if os.path.isdir(data) else []


def indexedInstances(data: str, database: str = None) -> dict:
    """
    SOP Instance UID -> absolute path of its file, as the index says
    (read-only: the daemon may be running).

    @param database: the index file, when it is not C{data}'s L{INDEX}.
    """
    path = database or os.path.join(data, INDEX)
    if not os.path.exists(path):
        return {}
    db = sqlite3.connect("file:%s?mode=ro" % (path,), uri=True, timeout=10)
    try:
        return {uid: os.path.join(data, relative) for uid, relative in db.execute("SELECT SOPInstanceUID, path FROM instance")}
    finally:
        db.close()


def waitForIndexed(data: str, uids, database: str = None, timeout: float = 30.0):
    """
    Wait until the index has a row for each of C{uids}: the daemon writes
    rows moments after its responses, in batches
    (L{dicomd.archive.writer}).

    @return: a L{Deferred} firing with L{indexedInstances} once it does.
    """
    from tests.support import waitUntil

    wanted = set(uids)
    waiting = waitUntil(
        lambda: wanted <= set(indexedInstances(data, database)),
        timeout=timeout,
        message="the index never had rows for all of %d instances" % (len(wanted),),
    )
    return waiting.addCallback(lambda _: indexedInstances(data, database))


def _zeros(path: str) -> bool:
    """
    Whether the file at C{path} begins with nothing but zeros where a
    Part 10 file has its preamble and C{DICM}.
    """
    try:
        with open(path, "rb") as f:
            return not f.read(132).strip(b"\0")
    except OSError:
        return False


def openDataFiles(pid: int) -> list:
    """
    The regular files with data that a process holds open, by descriptor,
    but the daemon's own (the index and the study journals): a spool file
    of an abandoned object would be one, named or not (spare files, made
    ahead of need, are empty, or hold the zeros of the pages allocated for
    the next object: a spool file starts with a File Meta Information
    preamble and C{DICM}).
    """
    found = []
    directory = "/proc/%d/fd" % (pid,)
    for fd in os.listdir(directory):
        path = os.path.join(directory, fd)
        try:
            info = os.stat(path)
            target = os.readlink(path)
        except OSError:
            continue
        name = os.path.basename(target)
        own = name.startswith(INDEX) or name.endswith(".journal")
        if (info.st_mode & 0o170000) == 0o100000 and info.st_size > 0 and not own and not _zeros(path):
            found.append(target)
    return found
