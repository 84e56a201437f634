"""
The C{dicomd} command: DCMTK-compatible front doors.

    dicomd echoscu [options] peer port
    dicomd storescu [options] peer port dcmfile-in...
    dicomd storescp [options] [port]
    dicomd qrscp [options] [port]
    dicomd reindex [options] directory
"""

import gc
import sys

from twisted.internet import task

from dicomd import __version__
from dicomd.cli import logs
from dicomd.cli.options import CannotStart, UsageError

#: Subcommand name -> module with C{COMMAND_LINE} and C{run(reactor, values)}.
COMMANDS = {
    "echoscu": "dicomd.cli.echoscu",
    "storescu": "dicomd.cli.storescu",
    "storescp": "dicomd.cli.storescp",
    "qrscp": "dicomd.cli.qrscp",
    "reindex": "dicomd.cli.reindex",
}


def _usage() -> str:
    return "usage: dicomd COMMAND [options] ...\n\ncommands:\n" + "".join(
        "  %s\n" % name for name in sorted(COMMANDS)
    )


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        sys.exit(0 if argv else 1)
    name = argv[0]
    if name not in COMMANDS:
        sys.stderr.write("dicomd: unknown command %r\n%s" % (name, _usage()))
        sys.exit(1)
    module = __import__(COMMANDS[name], fromlist=["run"])
    commandLine = module.COMMAND_LINE
    try:
        values = commandLine.parse(argv[1:])
        if not (values.get("help") or values.get("version")):
            getattr(module, "validate", lambda values: None)(values)
    except UsageError as e:
        sys.stderr.write("dicomd %s: %s\n" % (name, e))
        sys.stderr.write("Try 'dicomd %s --help' for more information.\n" % (name,))
        sys.exit(1)
    except CannotStart as e:
        sys.stderr.write("dicomd %s: %s\n" % (name, e))
        sys.exit(e.status)
    if values.get("help"):
        sys.stdout.write(commandLine.help())
        sys.exit(0)
    if values.get("version"):
        sys.stdout.write("dicomd %s %s\n" % (name, __version__))
        sys.exit(0)
    logs.startLogging(logs.levelFromOptions(values))
    try:
        task.react(lambda reactor: module.run(reactor, values).addCallback(_exit))
    finally:
        # At exit the interpreter's garbage collections walk every object
        # of the 400-odd modules imported: 80 to 120 ms, a fifth of a short
        # storescu run.  The command is over (its files closed, the reactor
        # stopped), so the objects alive now are frozen out of those
        # collections: what reference counting frees is still freed as the
        # modules are torn down; what only cycles hold goes with the process.
        gc.freeze()


def _exit(status: int) -> None:
    # task.react exits 0 for any result; a SystemExit failure carries ours.
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
