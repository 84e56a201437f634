"""
Log observers for C{twistd --logger}: text or JSON lines, at the level the
C{dicomd} plugin's C{-q}, C{-v}, C{-d} or C{--log-level} chose (as DCMTK's
tools choose theirs).

    twistd --logger=dicomd.observers.text -n dicomd --verbose
    twistd --logger=dicomd.observers.json -n dicomd --debug

twistd starts logging after it has parsed the plugin's options, so the
level is known when it calls these factories.  (C{twist} has its own
C{--log-level} and C{--log-format} options and needs none of this.)
"""

import sys

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    jsonFileLogObserver,
    textFileLogObserver,
)

#: The level set by the plugin's options; C{info} by default (DCMTK's
#: C{-v}: one line per association and per notable event).  The front
#: doors set it too (L{dicomd.cli.logs.startLogging}): code that would build
#: costly debug messages asks it first (L{dicomd.net.debug.enabled}).
level = LogLevel.info


def _filtered(observer):
    return FilteringLogObserver(observer, [LogLevelFilterPredicate(defaultLogLevel=level)])


def text():
    """
    Text lines on standard output.
    """
    return _filtered(textFileLogObserver(sys.stdout))


def json():
    """
    One JSON object per line on standard output: the event as
    C{twisted.logger} serializes it (C{log_level}, C{log_namespace},
    C{log_time}, C{log_format} and the event's own fields, such as
    C{calling}, C{called} and C{peer} of an association line), plus
    C{log_text}, the formatted message.  Lines are plain JSON, without
    the RFC 7464 record separator that C{twist --log-format=json} writes,
    so that C{jq} and log shippers read them as they are;
    L{twisted.logger.eventsFromJSONLogFile} reads both.
    """
    return _filtered(_withText(jsonFileLogObserver(sys.stdout, recordSeparator="")))


def _withText(observer):
    """
    An observer that adds C{log_text} (the formatted message) to each
    event before handing a copy to C{observer}.
    """

    def observe(event):
        observer(dict(event, log_text=formatEvent(event)))

    return observe
