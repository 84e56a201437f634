"""
What a storage area holds, seen from outside the daemon that writes it:
files under final names, temporary files in C{.incoming}, the index's
rows, and the data files a process holds open.  The fault, hostile-peer,
streaming and daemon tests assert on these.
"""

import os
import sqlite3

#: The daemon's index, in its data directory.
INDEX = ".dicomd-index.sqlite"

#: The daemon's own files in a storage area (the index, the study
#: journal) start with this.
OWN_FILES = ".dicomd-"


def finalFiles(data: str) -> list:
    """
    Every file under a final name in a storage area: all but the ones in
    C{.incoming} and the daemon's own (index, study journal).
    """
    found = []
    for root, directories, files in os.walk(data):
        directories[:] = [d for d in directories if d != ".incoming"]
        for name in files:
            if root == data and name.startswith(OWN_FILES):
                continue
            found.append(os.path.join(root, name))
    return sorted(found)


def incomingFiles(data: str) -> list:
    """
    The named temporary files in a storage area's C{.incoming} directory.
    """
    incoming = os.path.join(data, ".incoming")
    return sorted(os.listdir(incoming)) if os.path.isdir(incoming) else []


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


def openDataFiles(pid: int) -> list:
    """
    The regular files with data that a process holds open, by descriptor,
    but the daemon's own: a spool file of an abandoned object would be one
    (spare files, made ahead of need, are empty).
    """
    found = []
    directory = "/proc/%d/fd" % (pid,)
    for name in os.listdir(directory):
        try:
            info = os.stat(os.path.join(directory, name))
            target = os.readlink(os.path.join(directory, name))
        except OSError:
            continue
        if (info.st_mode & 0o170000) == 0o100000 and info.st_size > 0 and OWN_FILES not in os.path.basename(target):
            found.append(target)
    return found
