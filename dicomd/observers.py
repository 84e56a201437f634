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
    jsonFileLogObserver,
    textFileLogObserver,
)

#: The level set by the plugin's options; C{info} by default (DCMTK's
#: C{-v}: one line per association and per notable event).
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
    One JSON object per line on standard output (twisted.logger's format).
    """
    return _filtered(jsonFileLogObserver(sys.stdout))
