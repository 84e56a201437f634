"""
The state directory: where dicomd keeps what it needs across runs and
that is nobody else's business, such as the study journals
(L{dicomd.storage.studies.StudyJournal}), so that the directories it
stores into hold nothing but the received objects.

C{--state-directory} (C{dicomd storescp}, C{twistd dicomd}) or the
configuration file's C{state-directory} names it; otherwise
L{defaultStateDirectory} chooses it, as systemd and the XDG Base Directory
Specification have services and users expect.
"""

import os
import pwd
from typing import Callable, Mapping, Optional

#: The state directory of a daemon run by root.
SYSTEM_STATE_DIRECTORY = "/var/lib/dicomd"

#: The permissions of the state directory and of the files in it: they
#: name patients' studies and files, and are dicomd's alone.
STATE_DIRECTORY_MODE = 0o700
STATE_FILE_MODE = 0o600


def _homeOf(uid: int) -> Optional[str]:
    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return None


def defaultStateDirectory(
    environ: Optional[Mapping[str, str]] = None,
    uid: Optional[int] = None,
    homeOf: Callable[[int], Optional[str]] = _homeOf,
) -> str:
    """
    The state directory when none is configured, the first of:

      1. C{$STATE_DIRECTORY}, which systemd sets for a unit with
         C{StateDirectory=} (the first, when it lists several);
      2. C{/var/lib/dicomd} for root;
      3. C{$XDG_STATE_HOME/dicomd};
      4. C{$HOME/.local/state/dicomd};
      5. C{.local/state/dicomd} in the user's home directory from the
         password database, when C{HOME} is unset.

    Relative values are ignored, as the XDG specification says.  C{twistd}
    builds the daemon before it drops privileges (C{--uid}), so a daemon
    started by root chooses C{/var/lib/dicomd}: make it the daemon user's.

    @param environ: the environment (C{os.environ} by default).
    @param uid: the effective user id (C{os.geteuid()} by default).
    @param homeOf: the home directory of a user id in the password
        database, or C{None}.
    @raise ValueError: none of these applies (a user without C{HOME} and
        without a home directory).
    """
    environ = os.environ if environ is None else environ
    uid = os.geteuid() if uid is None else uid

    def absolute(name: str) -> Optional[str]:
        value = environ.get(name, "").split(":")[0]
        return value if os.path.isabs(value) else None

    systemd = absolute("STATE_DIRECTORY")
    if systemd:
        return systemd
    if uid == 0:
        return SYSTEM_STATE_DIRECTORY
    xdg = absolute("XDG_STATE_HOME")
    if xdg:
        return os.path.join(xdg, "dicomd")
    home = absolute("HOME") or homeOf(uid)
    if not home or not os.path.isabs(home):
        raise ValueError("no state directory: user %d has no home directory; give --state-directory" % (uid,))
    return os.path.join(home, ".local", "state", "dicomd")


def makeStateDirectory(path: str) -> str:
    """
    Make the state directory C{path} (and its parents) if it is missing,
    with L{STATE_DIRECTORY_MODE}.

    @return: its real path.
    @raise OSError: it cannot be made, or is not a directory; the message
        names it.
    """
    try:
        os.makedirs(path, STATE_DIRECTORY_MODE, exist_ok=True)
    except OSError as e:
        raise OSError("cannot create the state directory %s: %s" % (path, e.strerror or e)) from e
    return os.path.realpath(path)
