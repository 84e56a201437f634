"""
The C{dicomd} command: DCMTK-compatible front doors, and the examples.

    dicomd echoscu [options] peer port
    dicomd storescu [options] peer port dcmfile-in...
    dicomd storescp [options] [port]
    dicomd qrscp [options] [port]
    dicomd reindex [options] directory
    dicomd queue list|retry ID|retry --all|forget ID [--config FILE | -o DIR]
    dicomd example-config [name]
    dicomd --version

The daemon (any number of AEs, a configuration file, reload, a status
page) is C{twistd dicomd}.
"""

import gc
import sys

from twisted.internet import defer, task

from dicomd.cli import logs
from dicomd.cli.options import CannotStart, UsageError, versions

#: Subcommand name -> (module with C{COMMAND_LINE} and C{run(reactor,
#: values)}, what it does).
COMMANDS = {
    "echoscu": ("dicomd.cli.echoscu", "verify a peer with C-ECHO (DCMTK's echoscu)"),
    "storescu": ("dicomd.cli.storescu", "send DICOM files (DCMTK's storescu)"),
    "storescp": ("dicomd.cli.storescp", "receive and store DICOM objects (DCMTK's storescp)"),
    "qrscp": ("dicomd.cli.qrscp", "image archive: storage, query and retrieve (DCMTK's dcmqrscp and its dcmqrscp.cfg)"),
    "reindex": ("dicomd.cli.reindex", "rebuild the index of a storage area from its files"),
    "queue": ("dicomd.cli.queue", "list, retry or forget the entries of the forwarding queue"),
    "example-config": ("dicomd.cli.examples", "print an example configuration file"),
}


def _usage() -> str:
    return (
        "usage: dicomd COMMAND [options] ...\n"
        "       dicomd --version\n"
        "\n"
        "commands:\n"
        + "".join("  %-16s%s\n" % (name, description) for name, (_, description) in COMMANDS.items())
        + "\n"
        "Each command's options: dicomd COMMAND --help.\n"
        "The daemon (several AEs, a configuration file, reload, a status page)\n"
        "runs under twistd: twistd -n dicomd --help.\n"
    )


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        sys.exit(0 if argv else 1)
    if argv[0] == "--version":
        sys.stdout.write(versions("dicomd"))
        sys.exit(0)
    name = argv[0]
    if name not in COMMANDS:
        sys.stderr.write("dicomd: unknown command %r\nTry 'dicomd --help' for the list of commands.\n" % (name,))
        sys.exit(1)
    module = __import__(COMMANDS[name][0], fromlist=["run"])
    commandLine = module.COMMAND_LINE
    if not argv[1:] and commandLine.helpWithoutArguments:
        # DCMTK's tools with required parameters print their help when
        # run without arguments, and exit 0.
        sys.stdout.write(commandLine.help())
        sys.exit(0)
    try:
        values = commandLine.parse(argv[1:])
        # What a worker process is built from (dicomd.workerprocess).
        values["arguments"] = argv[1:]
        if not (values.get("help") or values.get("version")):
            getattr(module, "validate", lambda values: None)(values)
    except UsageError as e:
        sys.stderr.write("%s: %s\n" % (commandLine.program, e))
        sys.stderr.write("Try '%s --help' for more information.\n" % (commandLine.program,))
        sys.exit(1)
    except CannotStart as e:
        sys.stderr.write("%s: %s\n" % (commandLine.program, e))
        sys.exit(e.status)
    if values.get("help"):
        sys.stdout.write(commandLine.help())
        sys.exit(0)
    if values.get("version"):
        sys.stdout.write(versions(commandLine.program))
        sys.exit(0)
    logs.startLogging(logs.levelFromOptions(values))
    try:
        task.react(whenRunning(module.run, values))
    finally:
        # At exit the interpreter's garbage collections walk every object
        # of the 400-odd modules imported: 80 to 120 ms, a fifth of a short
        # storescu run.  The command is over (its files closed, the reactor
        # stopped), so the objects alive now are frozen out of those
        # collections: what reference counting frees is still freed as the
        # modules are torn down; what only cycles hold goes with the process.
        gc.freeze()


def whenRunning(run, values):
    """
    The C{main} for C{task.react} that calls a command's C{run} once the
    reactor runs.

    C{task.react} calls its C{main} before it runs the reactor, and only
    running it installs the handlers of SIGTERM and SIGINT: a server that
    says it listens from C{main} would, until then, die of a SIGTERM
    without its ordered stop.
    """

    def main(reactor):
        done = defer.Deferred()
        reactor.callWhenRunning(lambda: defer.maybeDeferred(run, reactor, values).addCallback(_exit).chainDeferred(done))
        return done

    return main


def _exit(status: int) -> None:
    # task.react exits 0 for any result; a SystemExit failure carries ours.
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
