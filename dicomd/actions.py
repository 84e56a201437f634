"""
Commands run on storage events, as storescp's C{--exec-on-reception} and
C{--exec-on-eostudy} do, without letting network data run as code.

A command line may use the shell (pipes, redirections, C{&&}) as DCMTK users
expect, with DCMTK's placeholders: C{#p} (directory), C{#f} (file name),
C{#a} (calling AE title), C{#c} (called AE title), C{#r} (the peer's
address).  Their values come from the network, so they are never pasted
into the command text: the values travel in environment variables of the
child (C{DICOMD_PATH}, C{DICOMD_FILE}, C{DICOMD_CALLING_AE},
C{DICOMD_CALLED_AE}, C{DICOMD_PEER}), and each placeholder becomes a
reference to its variable, quoted so that C{/bin/sh} expands it as data,
never as code, into exactly one word or part of one.

That holds for the shell that runs the command, and no further: text that
the command hands on to another interpreter is code there.
L{shellCommand} therefore refuses, with a message showing the safe form,
the placeholders it cannot make safe:

  - any placeholder inside single quotes: the shell passes single-quoted
    text on as written, and such text is typically a program for someone
    else (C{sh -c '...'}, C{su -c '...'}, C{awk '...'}).  Outside a nested
    command line the safe form moves the placeholder out of the quotes;
  - any placeholder, quoted or not, in a command line that a nested shell
    reads: the argument of C{-c} of a shell, C{su} or C{runuser} (also
    behind C{sudo}, C{env} and the like), the words after C{eval}, and
    the words after C{ssh}, also within C{$(...)} and C{`...`}.  There the
    safe form refers to the variable in the nested command line instead
    (C{sh -c 'echo "$DICOMD_CALLING_AE"'}), which the nested shell
    inherits and expands as data.  Passing the value as an argument of
    the nested shell (C{sh -c 'echo "$1"' _ #a}) stays allowed.

Interpreters other than shells (C{awk}, C{perl -e}, C{python -c}) are not
recognised: a program given as an argument should read the variables from
its environment rather than have a placeholder pasted into its text.
"""

import os
import re
from typing import Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

from twisted.internet import defer, protocol
from twisted.logger import Logger

#: Placeholder letter -> environment variable.
PLACEHOLDERS = {
    "p": "DICOMD_PATH",
    "f": "DICOMD_FILE",
    "a": "DICOMD_CALLING_AE",
    "c": "DICOMD_CALLED_AE",
    "r": "DICOMD_PEER",
}

#: Programs whose C{-c} option takes a command line that a shell runs (by
#: base name): shells, and C{su} and C{runuser}, which hand it to one.
SHELLS = frozenset(["sh", "bash", "dash", "ksh", "zsh", "ash", "mksh", "busybox", "su", "runuser"])

#: A shell's option whose argument is the command line to run: C{-c}
#: alone or among other one-letter options (C{-lc}), or su's long forms.
_COMMAND_OPTION = re.compile(r"-[A-Za-z]*c[A-Za-z]*|--(session-)?command")

#: su's long forms with the command line in the same word.
_COMMAND_ASSIGNMENT = ("--command=", "--session-command=")


class UnsafeCommand(ValueError):
    """
    A command template with a placeholder that no quoting can keep from
    running as code; the message says which, why, and shows the safe form.
    """


class _Placeholder(NamedTuple):
    """
    A placeholder in a template.

    @ivar start: the index of its C{#}.
    @ivar letter: C{p}, C{f}, C{a}, C{c} or C{r}.
    @ivar quote: the quotes it stands in: C{None}, C{"'"} or C{'"'}.
    """

    start: int
    letter: str
    quote: Optional[str]


class _Word:
    """
    A word of a template as the shell splits it.

    @ivar text: its text without the quotes, placeholders as written.
    @ivar placeholders: the L{_Placeholder}s in it.
    @ivar outer: for a word inside a command substitution, the word that
        substitution is part of.
    """

    def __init__(self, outer: Optional["_Word"]):
        self.text = ""
        self.placeholders: List[_Placeholder] = []
        self.outer = outer

    @property
    def literal(self) -> Optional[str]:
        """
        The word's text, or C{None} when a placeholder is part of it.
        """
        return None if self.placeholders else self.text

    def lineage(self) -> Iterable["_Word"]:
        """
        This word and the words its command substitutions are part of.
        """
        word = self
        while word is not None:
            yield word
            word = word.outer


class _Context(NamedTuple):
    """
    What the reader was in when a command substitution began, restored at
    its end.
    """

    closer: str
    quote: Optional[str]
    parentheses: int
    command: List[_Word]
    word: _Word


class _Reader:
    """
    Splits a template into simple commands and words as C{/bin/sh} reads
    it, as far as placeholders need: quotes, backslashes, blanks,
    operators, and the command substitutions C{$(...)} and C{`...`}, whose
    commands are read in their own quoting context.

    @ivar commands: the simple commands, each a list of L{_Word}s; a
        command substitution's commands follow the command they are part
        of.
    """

    def __init__(self, template: str):
        self._command: List[_Word] = []
        self.commands = [self._command]
        self._word: Optional[_Word] = None
        self._quote: Optional[str] = None
        self._parentheses = 0
        self._enclosing: List[_Context] = []
        self._outer: Optional[_Word] = None
        self._read(template)

    def _read(self, template: str) -> None:
        i = 0
        while i < len(template):
            char = template[i]
            if char == "#" and template[i + 1 : i + 2] in PLACEHOLDERS:
                word = self._currentWord()
                word.placeholders.append(_Placeholder(i, template[i + 1], self._quote))
                word.text += template[i : i + 2]
                i += 1
            elif self._quote == "'":
                if char == "'":
                    self._quote = None
                else:
                    self._currentWord().text += char
            elif char == "\\" and i + 1 < len(template):
                i += 1
                self._currentWord().text += template[i]
            elif template.startswith("$(", i):
                i += 1
                self._enter(")")
            elif char == "`":
                if self._enclosing and self._enclosing[-1].closer == "`":
                    self._leave()
                else:
                    self._enter("`")
            elif self._quote == '"':
                if char == '"':
                    self._quote = None
                else:
                    self._currentWord().text += char
            else:
                self._readUnquoted(char)
            i += 1

    def _readUnquoted(self, char: str) -> None:
        if char in "'\"":
            self._quote = char
            self._currentWord()
        elif char in " \t<>":
            self._word = None
        elif char == "(":
            self._parentheses += 1
            self._newCommand()
        elif char == ")" and not self._parentheses and self._enclosing and self._enclosing[-1].closer == ")":
            self._leave()
        elif char in ");&|\n":
            if char == ")" and self._parentheses:
                self._parentheses -= 1
            self._newCommand()
        else:
            self._currentWord().text += char

    def _currentWord(self) -> _Word:
        if self._word is None:
            self._word = _Word(self._outer)
            self._command.append(self._word)
        return self._word

    def _newCommand(self) -> None:
        self._command = []
        self.commands.append(self._command)
        self._word = None

    def _enter(self, closer: str) -> None:
        word = self._currentWord()
        self._enclosing.append(_Context(closer, self._quote, self._parentheses, self._command, word))
        self._quote, self._parentheses, self._outer = None, 0, word
        self._newCommand()

    def _leave(self) -> None:
        context = self._enclosing.pop()
        self._quote, self._parentheses = context.quote, context.parentheses
        self._command, self._word = context.command, context.word
        self._outer = context.word.outer


#: Where a refused placeholder stands, and what would run it, for messages.
_QUOTINGS = {"'": " inside single quotes", '"': " inside double quotes", None: ""}
_RUNNERS = {"shell": "in a nested shell", "eval": "in eval", "ssh": "on the remote host"}


def _commandLineArgument(words: List[_Word]) -> Optional[_Word]:
    """
    The word that a shell, C{su} or C{runuser} given C{words} as arguments
    runs as a command line (C{-c LINE}, C{-lc LINE}, C{--command=LINE}),
    or C{None}.
    """
    for index, word in enumerate(words):
        if word.text.startswith(_COMMAND_ASSIGNMENT):
            return word
        if word.literal is not None and _COMMAND_OPTION.fullmatch(word.literal):
            # Other options may follow -c; the first word that is not one
            # is the command line.
            for line in words[index + 1 :]:
                if line.literal is None or not line.literal.startswith(("-", "+")):
                    return line
            return None
    return None


def _nestedCommandLines(commands: List[List[_Word]]) -> Dict[_Word, str]:
    """
    The words of a template that a nested shell reads as a command line,
    each with what runs it: C{"shell"} for the argument of a shell's (or
    C{su}'s, C{runuser}'s) C{-c}, wherever the shell stands in its command
    (so also after C{sudo} or C{env}); C{"eval"} and C{"ssh"} for every
    word after those.
    """
    nested: Dict[_Word, str] = {}
    for words in commands:
        for index, word in enumerate(words):
            name = os.path.basename(word.literal or "")
            if name in ("eval", "ssh"):
                nested.update((later, name) for later in words[index + 1 :])
                break
            if name in SHELLS:
                line = _commandLineArgument(words[index + 1 :])
                if line is not None:
                    nested[line] = "shell"
                break
    return nested


def _substitute(template: str, replacements: Dict[int, str]) -> str:
    """
    C{template} with the placeholder starting at each index of
    C{replacements} replaced.
    """
    pieces, end = [], 0
    for start in sorted(replacements):
        pieces += [template[end:start], replacements[start]]
        end = start + 2
    pieces.append(template[end:])
    return "".join(pieces)


def _safeReference(placeholder: _Placeholder, runner: Optional[str]) -> str:
    """
    What a refused placeholder becomes in the safe form of its template:
    for a nested command line, a reference to its variable that the
    command's own shell passes on as written and the nested shell expands
    as data; for other single-quoted text, the placeholder itself outside
    the quotes.
    """
    variable = PLACEHOLDERS[placeholder.letter]
    if runner is None:
        return "'#%s'" % (placeholder.letter,)
    if placeholder.quote == "'":
        return '"$%s"' % (variable,)
    if placeholder.quote == '"':
        return "\\$%s" % (variable,)
    return "'\"$%s\"'" % (variable,)


def _refusal(template: str, unsafe: List[Tuple[_Placeholder, Optional[str]]]) -> str:
    """
    The message refusing C{template}: what its first unsafe placeholder
    would do, and the template with every unsafe placeholder made safe.
    """
    safe = _substitute(template, {placeholder.start: _safeReference(placeholder, runner) for placeholder, runner in unsafe})
    placeholder, runner = unsafe[0]
    variable = PLACEHOLDERS[placeholder.letter]
    if runner is None:
        return (
            "placeholder #%s inside single quotes would be pasted into text the command may run as code (awk, perl, a shell); "
            "write it outside the quotes if that text is data, or read $%s from the environment if it is code: %s"
        ) % (placeholder.letter, variable, safe)
    passing = " (ssh passes it with -o SendEnv=%s to a server that accepts it)" % (variable,) if runner == "ssh" else ""
    return "placeholder #%s%s would let the network value run as code %s; write %s there instead%s: %s" % (
        placeholder.letter,
        _QUOTINGS[placeholder.quote],
        _RUNNERS[runner],
        _safeReference(placeholder, runner),
        passing,
        safe,
    )


def shellCommand(template: str) -> str:
    """
    Rewrite a command template for C{/bin/sh -c}: each placeholder becomes
    a reference to its environment variable, C{"${DICOMD_CALLING_AE}"}
    where it stands bare and C{${DICOMD_CALLING_AE}} inside double quotes,
    so that it expands as data to exactly one word or part of one.

    @raise UnsafeCommand: a placeholder stands where no quoting keeps its
        value from running as code: inside single quotes, or in a command
        line that a nested shell reads (see the module docstring).
    """
    commands = _Reader(template).commands
    nested = _nestedCommandLines(commands)
    placeholders = []
    for words in commands:
        for word in words:
            runner = next((nested[outer] for outer in word.lineage() if outer in nested), None)
            placeholders.extend((placeholder, runner) for placeholder in word.placeholders)
    placeholders.sort(key=lambda item: item[0].start)
    unsafe = [(placeholder, runner) for placeholder, runner in placeholders if runner is not None or placeholder.quote == "'"]
    if unsafe:
        raise UnsafeCommand(_refusal(template, unsafe))
    return _substitute(
        template,
        {
            placeholder.start: ('"${%s}"' if placeholder.quote is None else "${%s}") % (PLACEHOLDERS[placeholder.letter],)
            for placeholder, _ in placeholders
        },
    )


class _Collector(protocol.ProcessProtocol):
    def __init__(self, done: defer.Deferred):
        self.done = done
        self.output = []

    def outReceived(self, data: bytes) -> None:
        self.output.append(data)

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        self.done.callback((reason.value.exitCode, b"".join(self.output)))


class CommandAction:
    """
    A configured command, run with C{/bin/sh -c} through
    C{reactor.spawnProcess}.

    Building one refuses an unsafe template with L{UnsafeCommand}; the
    front doors check their commands with L{shellCommand} first, so that
    the refusal names the option or key.

    @ivar template: the command as the user wrote it.
    @ivar synchronous: whether the caller should wait for it
        (storescp's C{--exec-sync}); see L{run}.
    """

    log = Logger()

    def __init__(self, template: str, *, synchronous: bool = False, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.template = template
        self.command = shellCommand(template)
        self.synchronous = synchronous
        self._reactor = reactor
        self._running: Set[defer.Deferred] = set()

    def run(self, values: Dict[str, Optional[str]], *, untilExit: bool = False) -> Optional[defer.Deferred]:
        """
        Start the command.

        @param values: placeholder letter -> value; missing ones expand to
            the empty string.
        @param untilExit: return the L{Deferred} of the command's exit even
            when it runs in the background, for a caller that records when
            the work is done (the L{dicomd.storage.studies.StudyJournal}).
        @return: when synchronous or C{untilExit}, a L{Deferred} that fires
            when the command has exited; otherwise C{None} (it runs in the
            background and its outcome is only logged).
        """
        environment = dict(os.environ)
        for letter, variable in PLACEHOLDERS.items():
            # An environment string cannot hold NUL; nothing else is changed.
            environment[variable] = (values.get(letter) or "").replace("\0", "")
        done = defer.Deferred()
        done.addCallback(self._ended)
        try:
            self._reactor.spawnProcess(_Collector(done), "/bin/sh", ["/bin/sh", "-c", self.command], env=environment)
        except Exception:
            self.log.failure("Could not start {command!r}", command=self.template)
            return None
        self._running.add(done)
        done.addBoth(self._forget, done)
        return done if self.synchronous or untilExit else None

    def _forget(self, result, done: defer.Deferred):
        self._running.discard(done)
        return result

    def whenIdle(self) -> defer.Deferred:
        """
        A L{Deferred} firing once every command started so far has exited
        (at shutdown, so that no command is left unreaped).
        """
        running = [defer.Deferred() for _ in self._running]
        for waiter, done in zip(running, list(self._running)):
            done.addBoth(lambda result, waiter=waiter: (waiter.callback(None), result)[1])
        return defer.DeferredList(running)

    def _ended(self, result) -> int:
        exitCode, output = result
        text = output.decode("utf-8", "replace").strip()
        if exitCode:
            self.log.warn(
                "Command {command!r} exited with status {status}{output}",
                command=self.template,
                status=exitCode,
                output=(": " + text) if text else "",
            )
        else:
            self.log.info("Command {command!r} done{output}", command=self.template, output=(": " + text) if text else "")
        return exitCode
