"""
Tests for L{dicomd.actions}: storescp's C{--exec-on-reception} and
C{--exec-on-eostudy} commands, with their placeholders, run without letting
network values reach the shell's text.

L{shellCommand} is checked as text; L{CommandAction} runs real commands
with C{/bin/sh} on the test's reactor and hostile values.
"""

import os

from twisted.internet import defer, error
from twisted.python.failure import Failure
from twisted.trial import unittest

from dicomd.actions import PLACEHOLDERS, CommandAction, shellCommand

#: Values a peer controls, each an attempt at running a command: the
#: calling AE titles of the brief, quotes that could close our quoting,
#: and an attempt to expand a variable.
HOSTILE_VALUES = [
    "A$(touch x)",
    "A;touch x",
    "A`touch x`",
    "A'; touch x; '",
    'A"; touch x; "',
    "A\\\"$(touch x)",
    "$HOME",
    "a b  c",
]


class ShellCommandTests(unittest.SynchronousTestCase):
    """
    L{shellCommand} turns placeholders into quoted references to the
    child's environment.
    """

    def test_bare(self):
        """A bare placeholder becomes a double-quoted variable reference."""
        self.assertEqual(shellCommand("echo #a"), 'echo "${DICOMD_CALLING_AE}"')

    def test_everyPlaceholder(self):
        """Each of DCMTK's five placeholders maps to its own variable."""
        self.assertEqual(
            shellCommand("#p #f #a #c #r"),
            '"${DICOMD_PATH}" "${DICOMD_FILE}" "${DICOMD_CALLING_AE}" "${DICOMD_CALLED_AE}" "${DICOMD_PEER}"',
        )
        self.assertEqual(
            PLACEHOLDERS,
            {"p": "DICOMD_PATH", "f": "DICOMD_FILE", "a": "DICOMD_CALLING_AE", "c": "DICOMD_CALLED_AE", "r": "DICOMD_PEER"},
        )

    def test_insideDoubleQuotes(self):
        """Inside double quotes the reference needs no further quotes."""
        self.assertEqual(shellCommand('echo "#p/#f"'), 'echo "${DICOMD_PATH}/${DICOMD_FILE}"')

    def test_insideSingleQuotes(self):
        """Inside single quotes the quote is closed around a quoted reference and reopened."""
        self.assertEqual(shellCommand("echo '#a'"), "echo ''\"${DICOMD_CALLING_AE}\"''")

    def test_partOfAWord(self):
        """A placeholder inside a word stays part of that word."""
        self.assertEqual(shellCommand("cp x #p/#f.bak"), 'cp x "${DICOMD_PATH}"/"${DICOMD_FILE}".bak')

    def test_notPlaceholders(self):
        """Other letters after #, and an escaped \\#a, stay as written."""
        self.assertEqual(shellCommand("echo #x ## \\#a"), "echo #x ## \\#a")

    def test_trailingHash(self):
        """A # at the end of the command stays."""
        self.assertEqual(shellCommand("echo #"), "echo #")


class CommandActionTests(unittest.TestCase):
    """
    L{CommandAction} runs real commands through C{/bin/sh}.
    """

    timeout = 30

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.cwd = os.getcwd()
        # The commands run in the test's working directory; keep them in
        # our own so that a stray "x" would be found.
        os.chdir(self.directory)
        self.addCleanup(os.chdir, self.cwd)

    def lines(self, name):
        with open(os.path.join(self.directory, name), encoding="utf-8") as f:
            return f.read().split("\n")[:-1]

    @defer.inlineCallbacks
    def test_hostileValuesArriveLiterally(self):
        """Values like A$(touch x) and A;touch x arrive literally in every quoting context and run nothing."""
        action = CommandAction("printf '%s\\n' #a \"#a\" '#a' x#a >> out.txt", synchronous=True)
        for value in HOSTILE_VALUES:
            status = yield action.run({"a": value})
            self.assertEqual(status, 0)
        expected = []
        for value in HOSTILE_VALUES:
            expected.extend([value, value, value, "x" + value])
        self.assertEqual(self.lines("out.txt"), expected)
        self.assertEqual(sorted(os.listdir(self.directory)), ["out.txt"])

    @defer.inlineCallbacks
    def test_everyPlaceholderValue(self):
        """#p #f #a #c #r expand to their values, which are also in the environment."""
        action = CommandAction(
            'printf "%s|%s|%s|%s|%s\\n" #p #f #a #c #r > out.txt; '
            'printf "%s|%s|%s|%s|%s\\n" "$DICOMD_PATH" "$DICOMD_FILE" "$DICOMD_CALLING_AE" "$DICOMD_CALLED_AE" "$DICOMD_PEER" >> out.txt',
            synchronous=True,
        )
        yield action.run({"p": "/data/study 1", "f": "CT.1.2.3", "a": "MODALITY", "c": "ARCHIVE", "r": "10.0.0.7"})
        self.assertEqual(self.lines("out.txt"), ["/data/study 1|CT.1.2.3|MODALITY|ARCHIVE|10.0.0.7"] * 2)

    @defer.inlineCallbacks
    def test_missingValuesAreEmpty(self):
        """A placeholder without a value expands to the empty string."""
        action = CommandAction('printf "[%s][%s]\\n" #f #a > out.txt', synchronous=True)
        yield action.run({"a": "X", "f": None})
        self.assertEqual(self.lines("out.txt"), ["[][X]"])

    def test_backgroundReturnsNothing(self):
        """A background command returns None and whenIdle fires once it has exited."""
        action = CommandAction("echo done > out.txt")
        self.assertIsNone(action.run({}))

        def check(_):
            self.assertEqual(self.lines("out.txt"), ["done"])

        return action.whenIdle().addCallback(check)

    @defer.inlineCallbacks
    def test_exitStatus(self):
        """A synchronous command's Deferred fires with its exit status, also a failing one."""
        action = CommandAction("exit 3", synchronous=True)
        status = yield action.run({})
        self.assertEqual(status, 3)

    def test_whenIdleWithNothingRunning(self):
        """whenIdle fires at once when no command runs."""
        action = CommandAction("true")
        self.successResultOf(action.whenIdle())


class _RecordingReactor:
    """
    A reactor whose C{spawnProcess} fails, or records its calls.
    """

    def __init__(self, fail=False):
        self.fail = fail
        self.spawned = []

    def spawnProcess(self, processProtocol, executable, args, env=None, **kwargs):
        if self.fail:
            raise OSError("no more processes")
        self.spawned.append((processProtocol, executable, args, env))


class CommandActionEnvironmentTests(unittest.SynchronousTestCase):
    """
    What L{CommandAction} hands to C{spawnProcess}.
    """

    def test_shellAndEnvironment(self):
        """The command runs as /bin/sh -c with the rewritten text; values travel in the environment only."""
        reactor = _RecordingReactor()
        action = CommandAction("echo #a", reactor=reactor)
        action.run({"a": "A;touch x"})
        [(protocol, executable, args, env)] = reactor.spawned
        self.assertEqual(executable, "/bin/sh")
        self.assertEqual(args, ["/bin/sh", "-c", 'echo "${DICOMD_CALLING_AE}"'])
        self.assertEqual(env["DICOMD_CALLING_AE"], "A;touch x")
        self.assertEqual(env["DICOMD_PATH"], "")
        self.assertNotIn("touch", " ".join(args))

    def test_nulDropped(self):
        """A NUL, which no environment string can hold, is dropped."""
        reactor = _RecordingReactor()
        CommandAction("echo #a", reactor=reactor).run({"a": "AB\0C"})
        self.assertEqual(reactor.spawned[0][3]["DICOMD_CALLING_AE"], "ABC")

    def test_spawnFailureLogged(self):
        """A command that cannot start is logged and nothing waits for it."""
        action = CommandAction("true", synchronous=True, reactor=_RecordingReactor(fail=True))
        self.assertIsNone(action.run({}))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.successResultOf(action.whenIdle())

    def test_whenIdleWaits(self):
        """whenIdle fires only once every running command has ended."""
        reactor = _RecordingReactor()
        action = CommandAction("true", reactor=reactor)
        action.run({})
        action.run({})
        idle = action.whenIdle()
        self.assertNoResult(idle)
        reactor.spawned[0][0].processEnded(Failure(error.ProcessDone(0)))
        self.assertNoResult(idle)
        reactor.spawned[1][0].processEnded(Failure(error.ProcessTerminated(1)))
        self.successResultOf(idle)
