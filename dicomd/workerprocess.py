"""
A worker process of C{twistd dicomd --workers N} or C{dicomd storescp
--fork} (see L{dicomd.workers}), as its coordinator starts it:

    python -m dicomd.workerprocess twistd|storescp ARGUMENTS...

It builds the configuration from the front door's own arguments (the
configuration file, the command line's overrides), adopts the listening
sockets and the AMP connection its coordinator passed as inherited
descriptors, and serves associations until SIGTERM (the daemon's ordered
stop: stop listening, let associations finish for the grace period) or
until its coordinator is gone (then it aborts its associations at once).
Its log goes to standard error, one event a line behind its level's name,
for the coordinator to relay.
"""

import socket
import sys

from twisted.internet import defer, task
from twisted.logger import FilteringLogObserver, LogLevelFilterPredicate, formatEvent, globalLogBeginner

from dicomd import observers
from dicomd.cli import logs
from dicomd.daemon import DicomdService
from dicomd.startup import StartupError
from dicomd.workers import COORDINATOR_FD, CoordinatorLink, OneConnection, ReportBacklog


def frontDoorConfig(frontDoor: str, arguments):
    """
    The configuration and overrides the front door builds from its
    arguments; the log level it chooses is set too (L{observers.level}).

    @return: C{(DaemonConfig, overrides)}.
    """
    if frontDoor == "twistd":
        from dicomd.tap import DaemonOptions

        options = DaemonOptions()
        options.parseOptions(arguments)
        return options["base"], options.overrides
    from dicomd.cli.storescp import COMMAND_LINE, daemonConfig, validate

    values = COMMAND_LINE.parse(arguments)
    validate(values)
    observers.level = logs.levelFromOptions(values)
    return daemonConfig(values), lambda config: config


def _startLogging() -> None:
    def write(event):
        text = formatEvent(event).replace("\n", "\n  ")
        sys.stderr.write("%s %s\n" % (event["log_level"].name, text))
        sys.stderr.flush()

    predicate = LogLevelFilterPredicate(defaultLogLevel=observers.level)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(write, [predicate])], redirectStandardIO=False)


@defer.inlineCallbacks
def run(reactor, config, overrides):
    link = CoordinatorLink(reactor)
    reactor.adoptStreamConnection(COORDINATOR_FD, socket.AF_UNIX, OneConnection(link))
    daemon = link.daemon = DicomdService(config, overrides=overrides, coordinator=link, reactor=reactor)
    link.transport.registerProducer(ReportBacklog(daemon.factory), True)
    try:
        daemon.privilegedStartService()
        daemon.startService()
    except StartupError as e:
        daemon.log.critical("{error}", error=str(e))
        return 1
    stopped = []

    def stop():
        stopped.append(True)
        return daemon.stopService()

    reactor.addSystemEventTrigger("before", "shutdown", stop)
    yield link.whenLost()
    if stopped:
        # The reactor closes every connection once the daemon has stopped.
        return 0
    # The coordinator is gone: what is stored now could not be recorded.
    daemon.log.error("The coordinator is gone: aborting {count} connections", count=len(daemon.factory.connections))
    for proto in list(daemon.factory.connections):
        proto.transport.abortConnection()
    return 1


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    config, overrides = frontDoorConfig(argv[0], argv[1:])
    _startLogging()
    task.react(lambda reactor: run(reactor, config, overrides).addCallback(_exit))


def _exit(status: int) -> None:
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
