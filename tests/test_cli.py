"""
The C{dicomd} command and C{twistd dicomd} as a user first meets them:
C{--help} and C{--version} of each, and the example configurations an
installed package prints (C{dicomd example-config}).

Every test runs the real program as a process (L{tests.support}).
"""

import os

import pydicom
from twisted import version as twistedVersion
from twisted.internet import defer
from twisted.internet.testing import MemoryReactor
from twisted.trial import unittest

from dicomd import __version__
from dicomd.__main__ import whenRunning
from tests.support import REPO_ROOT, TWISTD, dicomdArgv, makeDirectory, pythonEnvironment, runCommand, startPeer

#: The front doors, as C{dicomd --help} lists them.
FRONT_DOORS = ["echoscu", "storescu", "storescp", "qrscp", "reindex", "example-config"]

#: The examples C{dicomd example-config} prints, with their files in etc/.
EXAMPLES = ["dicomd.toml", "dcmqrscp.cfg", "storescp-asconfig.cfg", "dicomd.service"]


def dicomd(testCase, *arguments):
    return runCommand(dicomdArgv(*arguments), env=pythonEnvironment(), cwd=makeDirectory(testCase))


def twistd(testCase, *arguments):
    return runCommand(TWISTD + list(arguments), env=pythonEnvironment(), cwd=makeDirectory(testCase), timeout=60)


class VersionTests(unittest.TestCase):
    """
    C{--version} says dicomd's version and what it runs on, wherever it
    is asked.
    """

    def assertVersions(self, result, program: str) -> None:
        self.assertEqual(result.exitCode, 0, result.describe())
        lines = result.stdout.splitlines()
        self.assertEqual(lines[:3], ["%s %s" % (program, __version__), "pydicom %s" % (pydicom.__version__,), "Twisted %s" % (twistedVersion.short(),)])
        self.assertRegex(lines[3], r"^Python 3\.\d+")

    @defer.inlineCallbacks
    def test_dicomd(self):
        """
        C{dicomd --version} prints dicomd's, pydicom's, Twisted's and
        Python's versions (it used to be "unknown command").
        """
        result = yield dicomd(self, "--version")
        self.assertVersions(result, "dicomd")

    @defer.inlineCallbacks
    def test_twistd(self):
        """
        C{twistd dicomd --version} prints the same, not only Twisted's.
        """
        result = yield twistd(self, "dicomd", "--version")
        self.assertVersions(result, "twistd dicomd")

    @defer.inlineCallbacks
    def test_frontDoors(self):
        """
        Each front door takes C{--version}, as DCMTK's tools do.
        """
        for name in FRONT_DOORS:
            result = yield dicomd(self, name, "--version")
            self.assertVersions(result, "dicomd " + name)


class HelpTests(unittest.TestCase):
    """
    C{--help} names each program as it is typed, and C{dicomd --help}
    lists what each command does and where the daemon is.
    """

    @defer.inlineCallbacks
    def test_dicomd(self):
        """
        C{dicomd --help} describes every command, and points to C{dicomd
        COMMAND --help} and to C{twistd dicomd}.
        """
        result = yield dicomd(self, "--help")
        self.assertEqual(result.exitCode, 0, result.describe())
        for name in FRONT_DOORS:
            self.assertRegex(result.stdout, r"(?m)^  %s +\S.*$" % (name,))
        self.assertIn("storescp        receive and store DICOM objects (DCMTK's storescp)", result.stdout)
        self.assertIn("dicomd COMMAND --help", result.stdout)
        self.assertIn("twistd -n dicomd --help", result.stdout)

    @defer.inlineCallbacks
    def test_unknownCommand(self):
        """
        An unknown command is one line and where the list is, not the
        whole usage.
        """
        result = yield dicomd(self, "storscp")
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertEqual(result.stderr.splitlines(), ["dicomd: unknown command 'storscp'", "Try 'dicomd --help' for the list of commands."])

    @defer.inlineCallbacks
    def test_frontDoorUsageNamesDicomd(self):
        """
        Each front door's help and usage errors name it as typed, C{dicomd
        storescp}, not C{storescp} (which is DCMTK's).
        """
        for name in FRONT_DOORS:
            result = yield dicomd(self, name, "--help")
            self.assertEqual(result.exitCode, 0, result.describe())
            self.assertRegex(result.stdout, r"(?m)^usage: dicomd %s \[options\]" % (name,))
            result = yield dicomd(self, name, "--no-such-option")
            self.assertEqual(result.exitCode, 1, result.describe())
            self.assertEqual(
                result.stderr.splitlines(),
                ["dicomd %s: unknown option --no-such-option" % (name,), "Try 'dicomd %s --help' for more information." % (name,)],
            )

    @defer.inlineCallbacks
    def test_helpWithoutArguments(self):
        """
        As DCMTK's storescp, storescu and echoscu, the front doors print
        their help and exit 0 when run without arguments.
        """
        for name in ("echoscu", "storescu", "storescp"):
            result = yield dicomd(self, name)
            self.assertEqual(result.exitCode, 0, result.describe())
            self.assertIn("usage: dicomd %s [options]" % (name,), result.stdout)

    @defer.inlineCallbacks
    def test_twistdHelpPointsToExamples(self):
        """
        C{twistd dicomd --help} points to C{dicomd example-config}, which
        works from an installed package, not to C{etc/dicomd.toml}, which
        is not in one.
        """
        result = yield twistd(self, "dicomd", "--help")
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertIn("dicomd example-config dicomd.toml", " ".join(result.stdout.split()))
        self.assertNotIn("etc/dicomd.toml", result.stdout)


class ExampleConfigTests(unittest.TestCase):
    """
    C{dicomd example-config} prints the examples of C{etc/}, from the
    package: what the docs tell a user to start from.
    """

    @defer.inlineCallbacks
    def test_printsEachExample(self):
        """
        Each example prints as the file in etc/ is; without a name, the
        daemon's configuration.
        """
        for name in EXAMPLES:
            result = yield dicomd(self, "example-config", name)
            self.assertEqual(result.exitCode, 0, result.describe())
            with open(os.path.join(str(REPO_ROOT), "etc", name), encoding="utf-8") as f:
                self.assertEqual(result.stdout, f.read())
        default = yield dicomd(self, "example-config")
        self.assertTrue(default.stdout.startswith("# dicomd configuration: twistd -n dicomd --config dicomd.toml\n"), default.describe())

    @defer.inlineCallbacks
    def test_unknownExample(self):
        """
        An unknown name is a usage error listing the examples.
        """
        result = yield dicomd(self, "example-config", "dicomd.conf")
        self.assertEqual(result.exitCode, 1, result.describe())
        self.assertIn("'dicomd.conf' is not an example (choose one of %s)" % (", ".join(EXAMPLES),), result.stderr)

    @defer.inlineCallbacks
    def test_printedConfigurationStartsTheDaemon(self):
        """
        What C{dicomd example-config} prints, saved where a user keeps it,
        starts C{twistd dicomd}, which stores under the working directory
        and says so.
        """
        home = makeDirectory(self)
        result = yield dicomd(self, "example-config", "dicomd.toml")
        config = os.path.join(home, "dicomd.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(result.stdout)
        work = makeDirectory(self)
        daemon = yield startPeer(
            self,
            lambda port: TWISTD + ["-n", "--pidfile=", "dicomd", "--config", config, "--listen", "tcp:%d:interface=127.0.0.1" % (port,)],
            env=pythonEnvironment(),
            cwd=work,
            name="twistd dicomd",
            startTimeout=30,
        )
        yield daemon.waitForOutput(r"AE DICOMD stores under %s$" % (os.path.join(work, "dicomd-data").replace(".", r"\."),))
        self.assertEqual(os.listdir(home), ["dicomd.toml"])


class WhenRunningTests(unittest.SynchronousTestCase):
    """
    Tests for L{dicomd.__main__.whenRunning}, how a front door is started.
    """

    def test_runsOnceTheReactorRuns(self):
        """
        A command's C{run} is called once the reactor runs, when its signal
        handlers are in place, not when C{task.react} calls C{main}; its
        exit status ends the command.
        """
        calls = []

        def run(reactor, values):
            calls.append((reactor.running, values))
            return defer.succeed(3)

        reactor = MemoryReactor()
        done = whenRunning(run, {"port": 104})(reactor)
        self.assertEqual(calls, [])
        reactor.run()
        self.assertEqual(calls, [(True, {"port": 104})])
        self.assertEqual(self.failureResultOf(done, SystemExit).value.code, 3)

    def test_synchronousError(self):
        """
        An exception C{run} raises fails the command instead of escaping
        into the reactor.
        """

        def run(reactor, values):
            raise RuntimeError("no")

        reactor = MemoryReactor()
        done = whenRunning(run, {})(reactor)
        reactor.run()
        self.failureResultOf(done, RuntimeError)
