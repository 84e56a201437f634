"""
Tests for L{dicomd.actions}: storescp's C{--exec-on-reception} and
C{--exec-on-eostudy} commands, with their placeholders, run without letting
network values run as code.

L{shellCommand} is checked as text: the rewriting of the placeholders it
allows, and the refusal, with the safe form, of those it cannot make safe
(inside single quotes, in a command line a nested shell reads).
L{CommandAction} runs real commands with C{/bin/sh} on the test's reactor
and hostile values, also the safe forms the refusals show.
"""

import os

from twisted.internet import defer, error
from twisted.python.failure import Failure
from twisted.trial import unittest

from dicomd.actions import PLACEHOLDERS, CommandAction, UnsafeCommand, shellCommand

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


def refusal(template: str) -> str:
    """
    The message with which L{shellCommand} refuses C{template}.
    """
    try:
        shellCommand(template)
    except UnsafeCommand as e:
        return str(e)
    raise AssertionError("%r was not refused" % (template,))


def safeForm(template: str) -> str:
    """
    The safe form of a refused template, as its refusal shows it.
    """
    return refusal(template).split(" there instead: ", 1)[1]


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

    def test_partOfAWord(self):
        """A placeholder inside a word stays part of that word."""
        self.assertEqual(shellCommand("cp x #p/#f.bak"), 'cp x "${DICOMD_PATH}"/"${DICOMD_FILE}".bak')

    def test_notPlaceholders(self):
        """Other letters after #, and an escaped \\#a, stay as written."""
        self.assertEqual(shellCommand("echo #x ## \\#a"), "echo #x ## \\#a")

    def test_trailingHash(self):
        """A # at the end of the command stays."""
        self.assertEqual(shellCommand("echo #"), "echo #")

    def test_commandSubstitution(self):
        """Inside $(...) and `...`, also within double quotes, a placeholder is quoted as its own context needs."""
        self.assertEqual(shellCommand('echo "$(basename #p)"'), 'echo "$(basename "${DICOMD_PATH}")"')
        self.assertEqual(shellCommand('echo "`basename #p`" $(echo "#f")'), 'echo "`basename "${DICOMD_PATH}"`" $(echo "${DICOMD_FILE}")')

    def test_ordinaryCommandsAllowed(self):
        """Commands that run no nested command line keep their placeholders, -c of other programs included."""
        for template, command in [
            ('echo "Received #f from #a" >> log', 'echo "Received ${DICOMD_FILE} from ${DICOMD_CALLING_AE}" >> log'),
            ('gzip -c "#p/#f" > /tmp/x.gz', 'gzip -c "${DICOMD_PATH}/${DICOMD_FILE}" > /tmp/x.gz'),
            ("(cd #p && ls) > list", '(cd "${DICOMD_PATH}" && ls) > list'),
            ("logger -t dicomd stored #f from #a", 'logger -t dicomd stored "${DICOMD_FILE}" from "${DICOMD_CALLING_AE}"'),
        ]:
            self.assertEqual(shellCommand(template), command)

    def test_argumentsOfNestedCommandsAllowed(self):
        """A placeholder may be an argument of a nested shell's script, or go to ssh on standard input: it is data there."""
        for template, command in [
            ("sh -c 'process \"$1\"' _ #f", "sh -c 'process \"$1\"' _ \"${DICOMD_FILE}\""),
            ('bash -c \'cp "$1" "$2"\' copy "#p/#f" /backup', 'bash -c \'cp "$1" "$2"\' copy "${DICOMD_PATH}/${DICOMD_FILE}" /backup'),
            ("find #p -exec sh -c 'x \"$1\"' _ {} \\;", "find \"${DICOMD_PATH}\" -exec sh -c 'x \"$1\"' _ {} \\;"),
            ("printf '%s\\n' #a | ssh host 'read -r v'", "printf '%s\\n' \"${DICOMD_CALLING_AE}\" | ssh host 'read -r v'"),
        ]:
            self.assertEqual(shellCommand(template), command)


class RefusalTests(unittest.SynchronousTestCase):
    """
    L{shellCommand} refuses the placeholders no quoting can keep from
    running as code, in one line that shows the safe form.
    """

    def assertRefused(self, template, message):
        self.assertEqual(refusal(template), message)

    def test_nestedShellSingleQuotes(self):
        """A single-quoted placeholder in sh -c's command line is refused; the safe form refers to the variable there."""
        self.assertRefused(
            "sh -c 'echo nested #a'",
            "placeholder #a inside single quotes would let the network value run as code in a nested shell; "
            "write \"$DICOMD_CALLING_AE\" there instead: sh -c 'echo nested \"$DICOMD_CALLING_AE\"'",
        )

    def test_nestedShells(self):
        """bash -c, bash -lc, su -c, su - user -c, runuser, sudo sh -c, env ... sh -c, busybox sh -c, su --command= are nested shells."""
        for template, safe in [
            ("bash -c 'echo #a'", "bash -c 'echo \"$DICOMD_CALLING_AE\"'"),
            ("bash -lc 'echo #a'", "bash -lc 'echo \"$DICOMD_CALLING_AE\"'"),
            ("su -c 'echo #a' nobody", "su -c 'echo \"$DICOMD_CALLING_AE\"' nobody"),
            ("su - nobody -c 'echo #a'", "su - nobody -c 'echo \"$DICOMD_CALLING_AE\"'"),
            ("runuser -u nobody -- sh -c 'echo #a'", "runuser -u nobody -- sh -c 'echo \"$DICOMD_CALLING_AE\"'"),
            ("sudo -u nobody /bin/sh -c 'echo #a'", "sudo -u nobody /bin/sh -c 'echo \"$DICOMD_CALLING_AE\"'"),
            ("env LANG=C sh -e -c 'echo #a'", "env LANG=C sh -e -c 'echo \"$DICOMD_CALLING_AE\"'"),
            ("busybox sh -c 'echo #a'", "busybox sh -c 'echo \"$DICOMD_CALLING_AE\"'"),
            ("su --command='echo #a' nobody", "su --command='echo \"$DICOMD_CALLING_AE\"' nobody"),
            ("sh 2>/dev/null -c 'echo #a'", "sh 2>/dev/null -c 'echo \"$DICOMD_CALLING_AE\"'"),
        ]:
            self.assertEqual(safeForm(template), safe)

    def test_nestedShellDoubleQuotes(self):
        """A double-quoted placeholder in a nested command line is refused too; the safe form escapes the reference."""
        self.assertRefused(
            'su - nobody -c "echo #a"',
            "placeholder #a inside double quotes would let the network value run as code in a nested shell; "
            'write \\$DICOMD_CALLING_AE there instead: su - nobody -c "echo \\$DICOMD_CALLING_AE"',
        )
        self.assertEqual(safeForm('sudo sh -c "echo #a"'), 'sudo sh -c "echo \\$DICOMD_CALLING_AE"')

    def test_nestedShellUnquoted(self):
        """A bare placeholder that is part of a nested command line is refused; the safe form passes a quoted reference on."""
        self.assertRefused(
            "sh -c 'echo '#a",
            "placeholder #a would let the network value run as code in a nested shell; "
            "write '\"$DICOMD_CALLING_AE\"' there instead: sh -c 'echo ''\"$DICOMD_CALLING_AE\"'",
        )
        self.assertEqual(safeForm("sh -c #a"), "sh -c '\"$DICOMD_CALLING_AE\"'")

    def test_eval(self):
        """Every word after eval is a command line, whatever its quotes."""
        self.assertEqual(safeForm("eval echo #a"), "eval echo '\"$DICOMD_CALLING_AE\"'")
        self.assertEqual(safeForm('eval "echo #a"'), 'eval "echo \\$DICOMD_CALLING_AE"')
        self.assertEqual(safeForm("eval 'echo #a'"), "eval 'echo \"$DICOMD_CALLING_AE\"'")
        self.assertIn("run as code in eval", refusal("eval echo #a"))

    def test_ssh(self):
        """Every word after ssh reaches the remote shell as a command line; the message says how ssh passes the variable."""
        self.assertRefused(
            "ssh archive 'echo #a >> received.log'",
            "placeholder #a inside single quotes would let the network value run as code on the remote host; "
            "write \"$DICOMD_CALLING_AE\" there instead (ssh passes it with -o SendEnv=DICOMD_CALLING_AE to a server "
            "that accepts it): ssh archive 'echo \"$DICOMD_CALLING_AE\" >> received.log'",
        )
        self.assertIn(": ssh archive cat '\"$DICOMD_FILE\"'", refusal("ssh archive cat #f"))
        self.assertIn(': ssh -p 22 archive "echo \\$DICOMD_CALLING_AE"', refusal('ssh -p 22 archive "echo #a"'))

    def test_commandSubstitutions(self):
        """A nested shell inside $(...) or `...`, or a substitution inside a nested command line, is seen."""
        self.assertEqual(safeForm("x=`sh -c 'echo #a'`"), "x=`sh -c 'echo \"$DICOMD_CALLING_AE\"'`")
        self.assertEqual(safeForm('echo "$(sh -c \'echo #a\')"'), 'echo "$(sh -c \'echo "$DICOMD_CALLING_AE"\')"')
        self.assertEqual(safeForm('sh -c "echo $(date) #a"'), 'sh -c "echo $(date) \\$DICOMD_CALLING_AE"')
        self.assertIn("placeholder #a would let", refusal('sh -c "$(printf %s #a)"'))

    def test_singleQuotesElsewhere(self):
        """Any single-quoted placeholder is refused: the text may be code for another program; the safe form moves it out."""
        self.assertRefused(
            "echo 'from #a'",
            "placeholder #a inside single quotes would be pasted into text the command may run as code (awk, perl, a shell); "
            "write it outside the quotes if that text is data, or read $DICOMD_CALLING_AE from the environment if it is code: "
            "echo 'from '#a''",
        )
        self.assertEqual(shellCommand("echo 'from '#a''"), "echo 'from '\"${DICOMD_CALLING_AE}\"''")

    def test_firstNamedEveryOneMadeSafe(self):
        """The message names the first unsafe placeholder; the safe form fixes each, and leaves the safe ones."""
        message = refusal("echo \"#a\" && sh -c 'cp #p/#f /backup' && eval \"echo #c\"")
        self.assertTrue(message.startswith("placeholder #p inside single quotes "), message)
        self.assertTrue(
            message.endswith(
                ": echo \"#a\" && sh -c 'cp \"$DICOMD_PATH\"/\"$DICOMD_FILE\" /backup' && eval \"echo \\$DICOMD_CALLED_AE\""
            ),
            message,
        )

    def test_escapedPlaceholderIsText(self):
        """An escaped \\#a is text, not a placeholder, also in a nested command line."""
        self.assertEqual(shellCommand("sh -c \"echo \\#a\""), "sh -c \"echo \\#a\"")

    def test_commandActionRefuses(self):
        """A CommandAction is never built from an unsafe template."""
        self.assertRaises(UnsafeCommand, CommandAction, "sh -c 'echo nested #a'")


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
        """Values like A$(touch x) and A;touch x arrive literally, bare, in double quotes and in a word, and run nothing."""
        action = CommandAction("printf '%s\\n' #a \"#a\" x#a >> out.txt", synchronous=True)
        for value in HOSTILE_VALUES:
            status = yield action.run({"a": value})
            self.assertEqual(status, 0)
        expected = []
        for value in HOSTILE_VALUES:
            expected.extend([value, value, "x" + value])
        self.assertEqual(self.lines("out.txt"), expected)
        self.assertEqual(sorted(os.listdir(self.directory)), ["out.txt"])

    @defer.inlineCallbacks
    def test_safeFormsOfNestedCommands(self):
        """The safe forms the refusals show for sh -c and eval run, and hostile values reach them literally, running nothing."""
        templates = [
            "sh -c 'printf \"%s\\n\" #a' >> out.txt",
            "sh -c 'printf \"%s\\n\" '#a >> out.txt",
            'sh -c "printf \'%s\\n\' \\"#a\\"" >> out.txt',
            "eval printf \"'%s\\n'\" #a >> out.txt",
            'eval "printf \'%s\\n\' \\"#a\\"" >> out.txt',
        ]
        for template in templates:
            action = CommandAction(safeForm(template), synchronous=True)
            for value in HOSTILE_VALUES:
                status = yield action.run({"a": value})
                self.assertEqual(status, 0)
        self.assertEqual(self.lines("out.txt"), HOSTILE_VALUES * len(templates))
        self.assertEqual(sorted(os.listdir(self.directory)), ["out.txt"])

    @defer.inlineCallbacks
    def test_argumentOfNestedShell(self):
        """sh -c 'script "$1"' _ #a hands the value to the nested shell as an argument: data."""
        action = CommandAction("sh -c 'printf \"%s\\n\" \"$1\"' _ #a >> out.txt", synchronous=True)
        for value in HOSTILE_VALUES:
            status = yield action.run({"a": value})
            self.assertEqual(status, 0)
        self.assertEqual(self.lines("out.txt"), HOSTILE_VALUES)
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
