"""
Commands run on storage events, as storescp's C{--exec-on-reception} and
C{--exec-on-eostudy} do, without letting network data reach the shell.

A command line may use the shell (pipes, redirections, C{&&}) as DCMTK users
expect, with DCMTK's placeholders: C{#p} (directory), C{#f} (file name),
C{#a} (calling AE title), C{#c} (called AE title), C{#r} (the peer's
address).  Their values come from the network, so they are never pasted
into the command text: each placeholder becomes a reference to an
environment variable of the child (C{DICOMD_PATH}, C{DICOMD_FILE},
C{DICOMD_CALLING_AE}, C{DICOMD_CALLED_AE}, C{DICOMD_PEER}), quoted to suit
the shell quoting context it appears in.  The shell expands a variable's
value as data, never as code, whatever it contains.
"""

import os
from typing import Dict, Optional, Set

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


def shellCommand(template: str) -> str:
    """
    Rewrite a command template so that each placeholder expands to its
    environment variable as exactly one word (or part of one), in whatever
    quoting context it stands: bare, inside double quotes or inside single
    quotes.
    """
    out = []
    state = None  # None, "'" or '"'
    i = 0
    while i < len(template):
        char = template[i]
        if char == "#" and i + 1 < len(template) and template[i + 1] in PLACEHOLDERS:
            name = PLACEHOLDERS[template[i + 1]]
            if state == '"':
                out.append("${%s}" % name)
            elif state == "'":
                out.append("'\"${%s}\"'" % name)
            else:
                out.append('"${%s}"' % name)
            i += 2
            continue
        out.append(char)
        if char == "\\" and state != "'" and i + 1 < len(template):
            out.append(template[i + 1])
            i += 2
            continue
        if state is None and char in "'\"":
            state = char
        elif state == char:
            state = None
        i += 1
    return "".join(out)


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
