"""
Console logging for the front doors, in DCMTK's style.

DCMTK's tools print C{I: ...}, C{W: ...}, C{E: ...} lines on standard error
and choose the level with C{-q}, C{-v}, C{-d} and C{-ll}; this observer does
the same for events from L{twisted.logger}.
"""

import sys

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
)

from dicomd import observers

_PREFIXES = {
    LogLevel.debug: "D",
    LogLevel.info: "I",
    LogLevel.warn: "W",
    LogLevel.error: "E",
    LogLevel.critical: "F",
}

#: Values of DCMTK's C{--log-level}.
LEVELS = {
    "fatal": LogLevel.critical,
    "error": LogLevel.error,
    "warn": LogLevel.warn,
    "info": LogLevel.info,
    "debug": LogLevel.debug,
    "trace": LogLevel.debug,
}


def levelFromOptions(values) -> LogLevel:
    """
    The log level chosen by C{-q}, C{-v}, C{-d} or C{-ll}; the default is
    warnings, as in DCMTK.
    """
    if values.get("logLevel"):
        return LEVELS[values["logLevel"]]
    if values.get("debug"):
        return LogLevel.debug
    if values.get("verbose"):
        return LogLevel.info
    if values.get("quiet"):
        return LogLevel.critical
    return LogLevel.warn


def shows(values, level: LogLevel) -> bool:
    """
    Whether events at C{level} are shown with the options in C{values}:
    a command skips building one event per file or message that nobody
    would see.
    """
    order = list(LogLevel.iterconstants())
    return order.index(level) >= order.index(levelFromOptions(values))


def dcmtkObserver(stream):
    """
    An observer writing C{X: message} lines, with tracebacks for failures.
    """

    def observe(event):
        prefix = _PREFIXES.get(event.get("log_level"), "I")
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        for line in text.splitlines() or [""]:
            stream.write("%s: %s\n" % (prefix, line))
        stream.flush()

    return observe


def startLogging(level: LogLevel, stream=None) -> None:
    """
    Send log events at C{level} and above to C{stream} (standard error),
    and make C{level} the one L{dicomd.observers} reports, which decides
    whether debug messages are built at all.
    """
    observers.level = level
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    observer = FilteringLogObserver(dcmtkObserver(stream or sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)
