"""
What a server must be able to write, checked before it serves.

A storage directory or an index database that cannot be written used to
show at the first write, as a traceback from deep inside (SQLite's
"unable to open database file" does not even name the file).  These
checks run at start-up instead, and say in one line which path and why:

    cannot write /srv/dicom/afile/sub (the storage directory of AE DICOMD): /srv/dicom/afile is not a directory

They try what the server is about to do (create the directory, create a
file in it, open the database for writing) rather than reason about
permission bits, since only that answer holds for root, read-only mounts,
access control lists and paths through a regular file alike.  So they
must run as the user that will serve: after twistd's C{--uid}, after
dcmqrscp.cfg's C{UserName}.
"""

import errno
import os
import tempfile
from typing import Optional, Tuple

from dicomd.storage import DIRECTORY_MODE


class StartupError(Exception):
    """
    A server cannot start; the message, one line, says what to fix.
    """


class CannotWrite(StartupError):
    """
    A path a server must write cannot be written; the message names it,
    what it is for and why.

    @ivar path: the path.
    @ivar reason: why, such as C{"Read-only file system"}.
    """

    def __init__(self, path: str, what: str, reason: str):
        super().__init__("cannot write %s (%s): %s" % (path, what, reason))
        self.path = path
        self.reason = reason


def writableDirectory(path: str, what: str, mode: int = DIRECTORY_MODE) -> None:
    """
    Create the directory C{path} (and its parents) unless it exists, and
    check that a file can be created in it.

    @param what: what the directory is for, for the message ("the storage
        directory of AE DICOMD").
    @param mode: the mode of the directories created (less the umask).
    @raise CannotWrite: it cannot be created, or is not writable.
    """
    problem = _directoryProblem(path, mode)
    if problem is not None:
        raise CannotWrite(path, what, _describe(path, *problem))


def writableDatabase(path: str, what: str = "the index database", mode: int = DIRECTORY_MODE) -> None:
    """
    Check that the SQLite database C{path} can be opened for writing, or
    created: its directory is created unless it exists (with C{mode}, less
    the umask), and must be writable too (SQLite keeps its journal beside
    the database).

    @raise CannotWrite: it cannot.
    """
    directory = os.path.dirname(os.path.abspath(path))
    problem = _directoryProblem(directory, mode)
    if problem is not None:
        culprit, reason = problem
        raise CannotWrite(path, what, _describe(None, culprit, reason))
    if not os.path.lexists(path):
        return
    if not os.path.isfile(path):
        raise CannotWrite(path, what, "it is not a regular file")
    try:
        os.close(os.open(path, os.O_RDWR))
    except OSError as e:
        raise CannotWrite(path, what, e.strerror or str(e))


def outputDirectoryProblem(path: str, *, write: bool = True) -> Optional[str]:
    """
    Why an existing directory named on a command line (storescp's C{-od},
    a storage area of dcmqrscp.cfg) cannot be used, or C{None} when it
    can.  Unlike L{writableDirectory}, nothing is created: DCMTK's tools
    want these directories to exist.

    @param write: whether files will be written into it (not with
        C{--ignore}).
    @return: C{"does not exist"}, C{"is not a directory"}, C{"is not
        writeable (REASON)"}, or C{None}.
    """
    if not os.path.lexists(path):
        return "does not exist"
    if not os.path.isdir(path):
        return "is not a directory"
    if write:
        try:
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as e:
            return "is not writeable (%s)" % (e.strerror or e,)
    return None


#: The reason L{_directoryProblem} gives for a path that is not a directory.
_NOT_A_DIRECTORY = "not a directory"


def _directoryProblem(path: str, mode: int) -> Optional[Tuple[str, str]]:
    """
    Create the directory C{path} (with C{mode}) unless it exists, and a
    file in it.

    @return: C{None} when both work, else C{(culprit, reason)}: the path
        at fault (C{path} or one of its ancestors, such as a regular file
        where a directory should be) and why (an C{strerror}, or
        L{_NOT_A_DIRECTORY}).
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        return path, _NOT_A_DIRECTORY
    try:
        os.makedirs(path, mode, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            ancestor = os.path.dirname(os.path.abspath(path))
            while not os.path.isdir(ancestor):
                if os.path.lexists(ancestor):
                    return ancestor, _NOT_A_DIRECTORY
                ancestor = os.path.dirname(ancestor)
        culprit = e.filename if isinstance(e.filename, str) and not os.path.exists(path) else path
        return culprit, e.strerror or str(e)
    return None


def _describe(path: Optional[str], culprit: str, reason: str) -> str:
    """
    A L{_directoryProblem} in words, for a message about C{path}: the
    reason alone when C{path} is the culprit, else naming the culprit.
    """
    if culprit == path:
        return "it is not a directory" if reason == _NOT_A_DIRECTORY else reason
    if reason == _NOT_A_DIRECTORY:
        return "%s is not a directory" % (culprit,)
    return "%s: %s" % (culprit, reason)
