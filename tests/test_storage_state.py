"""
Keeping dicomd's own files out of the directories it stores into: the
state directory's default (L{dicomd.storage.state}) and a storage area's
temporary files (L{dicomd.storage.scp.StorageArea}).
"""

import os

from twisted.trial import unittest

from dicomd.storage.scp import TEMPORARY_NAME, StorageArea, hostTag
from dicomd.storage.state import defaultStateDirectory, makeStateDirectory
from tests.support import deadPID


def noHome(uid):
    return None


class DefaultStateDirectoryTests(unittest.SynchronousTestCase):
    """
    L{defaultStateDirectory} chooses as systemd and the XDG Base Directory
    Specification have it, for root and for other users.
    """

    def test_systemd(self):
        """$STATE_DIRECTORY (systemd's StateDirectory=) comes first, for root too; of a list, the first."""
        self.assertEqual(defaultStateDirectory({"STATE_DIRECTORY": "/var/lib/dicomd-a:/var/lib/b"}, 0), "/var/lib/dicomd-a")
        self.assertEqual(defaultStateDirectory({"STATE_DIRECTORY": "/srv/s", "HOME": "/home/u"}, 1000), "/srv/s")

    def test_root(self):
        """Root's is /var/lib/dicomd, whatever its HOME or XDG_STATE_HOME."""
        self.assertEqual(defaultStateDirectory({"HOME": "/root", "XDG_STATE_HOME": "/root/.state"}, 0), "/var/lib/dicomd")

    def test_xdgStateHome(self):
        """Another user's is $XDG_STATE_HOME/dicomd."""
        self.assertEqual(defaultStateDirectory({"XDG_STATE_HOME": "/home/u/st", "HOME": "/home/u"}, 1000), "/home/u/st/dicomd")

    def test_home(self):
        """Without XDG_STATE_HOME, $HOME/.local/state/dicomd."""
        self.assertEqual(defaultStateDirectory({"HOME": "/home/u"}, 1000), "/home/u/.local/state/dicomd")

    def test_relativeValuesIgnored(self):
        """Relative values are ignored, as the XDG specification says."""
        environ = {"STATE_DIRECTORY": "s", "XDG_STATE_HOME": "x", "HOME": "/home/u"}
        self.assertEqual(defaultStateDirectory(environ, 1000), "/home/u/.local/state/dicomd")

    def test_homeUnset(self):
        """Without HOME, the home directory of the password database."""
        self.assertEqual(defaultStateDirectory({}, 1000, homeOf={1000: "/home/u"}.get), "/home/u/.local/state/dicomd")

    def test_noHomeAtAll(self):
        """A user without HOME and without a home directory has no default: the error says to give --state-directory."""
        error = self.assertRaises(ValueError, defaultStateDirectory, {}, 1000, noHome)
        self.assertEqual(str(error), "no state directory: user 1000 has no home directory; give --state-directory")

    def test_makeStateDirectory(self):
        """It is made with its parents, 0700; an existing one is kept as it is."""
        self.addCleanup(os.umask, os.umask(0o022))
        path = os.path.join(os.path.abspath(self.mktemp()), "state", "dicomd")
        self.assertEqual(makeStateDirectory(path), os.path.realpath(path))
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o700)
        os.chmod(path, 0o750)
        makeStateDirectory(path)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o750)


class TemporaryFileTests(unittest.SynchronousTestCase):
    """
    A storage area's named temporary files are hidden in its root, under
    L{TEMPORARY_NAME}, and only they are removed at start-up.
    """

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        self.area = StorageArea(self.directory, naming=None)

    def test_temporaryPath(self):
        """Temporary paths are fresh hidden names in the area's root, of the pattern prepare() removes."""
        first, second = self.area.temporaryPath(), self.area.temporaryPath()
        self.assertNotEqual(first, second)
        for path in first, second:
            self.assertEqual(os.path.dirname(path), self.directory)
            self.assertRegex(os.path.basename(path), r"^\.dicomd-%s-%d-\d+\.part$" % (hostTag(), os.getpid()))
            self.assertTrue(TEMPORARY_NAME.match(os.path.basename(path)))

    def test_prepareRemovesOnlyTemporaryFiles(self):
        """
        prepare() makes no directory in the area and removes the files of the temporary pattern in its root, nothing
        else: not similar names, not a symbolic link of the pattern (nor where it leads), not a study directory's file.
        """
        outside = os.path.abspath(self.mktemp())
        os.makedirs(outside)
        precious = os.path.join(outside, "precious")
        os.makedirs(os.path.join(self.directory, "STUDY"))
        dead = deadPID()
        kept = [".dicomd-index.sqlite", ".dicomd-1-x.part", "dicomd-1-2.part", ".dicomd-1-2.part.dcm", "1-2.part", "STUDY", ".dicomd-9-9.part"]
        removed = [".dicomd-%d-3.part" % (dead,), ".dicomd-%s-%d-4.part" % (hostTag(), dead), ".dicomd-%s-%d-5.part" % (hostTag(), os.getpid())]
        for name in [precious, "STUDY/.dicomd-1-1.part"] + removed + kept[:-2]:
            with open(os.path.join(self.directory, name), "w") as f:
                f.write("x")
        os.symlink(precious, os.path.join(self.directory, ".dicomd-9-9.part"))
        self.area.prepare()
        self.assertEqual(sorted(os.listdir(self.directory)), sorted(kept))
        self.assertEqual(os.listdir(os.path.join(self.directory, "STUDY")), [".dicomd-1-1.part"])
        self.assertEqual(os.listdir(outside), ["precious"])

    def test_prepareLeavesLiveProcessesFiles(self):
        """
        prepare() leaves the temporary files of a live process of this host
        (another worker or node storing into the same area, in the old
        form too) and those of another host, and removes those of a dead
        process of this host (and of a number no PID can be).
        """
        live, dead = os.getppid(), deadPID()
        kept = [".dicomd-%s-%d-1.part" % (hostTag(), live), ".dicomd-%d-2.part" % (live,), ".dicomd-%08x-%d-3.part" % ((int(hostTag(), 16) + 1) % (1 << 32), dead)]
        os.makedirs(self.directory)
        for name in kept + [".dicomd-%s-%d-4.part" % (hostTag(), dead), ".dicomd-%s-%d-5.part" % (hostTag(), 1 << 70)]:
            with open(os.path.join(self.directory, name), "w") as f:
                f.write("x")
        self.area.prepare()
        self.assertEqual(sorted(os.listdir(self.directory)), sorted(kept))

    def test_resolveRefusesTemporaryNames(self):
        """No received object is placed under a name prepare() would take for a temporary file, nor under a directory so named."""
        for relative in (".dicomd-1-2.part", "./.dicomd-1-2.part", ".dicomd-1-2.part/CT.1", ".dicomd-0123abcd-1-2.part"):
            self.assertRaises(ValueError, self.area.resolve, relative)
        self.assertEqual(self.area.resolve("S/.dicomd-1-2.part"), os.path.join(self.directory, "S", ".dicomd-1-2.part"))
