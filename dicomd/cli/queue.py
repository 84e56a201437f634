"""
C{dicomd queue}: look at and act on the forwarding queue of C{twistd
dicomd} (L{dicomd.archive.queue}).

  - C{dicomd queue list} prints each entry: its id, state, destination,
    SOP Instance UID, tries, next try and last error;
  - C{dicomd queue retry ID} (or C{--all}) sends failed or waiting entries
    again now, their tries and give-up time counted afresh;
  - C{dicomd queue forget ID} drops an entry: its instance will not go to
    that destination.

The queue lives in the index database, found as the daemon finds it:
C{--config FILE}'s C{database}, or its first AE's directory; C{-o DIR}'s
C{.dicomd-index.sqlite}; or C{-db FILE}.  It may run while the daemon
runs: SQLite serialises the writers, and a running daemon sends retried
entries within seconds, at its next look at the queue
(L{dicomd.forwarding.Forwarding.look}), even to a destination that was
waiting out its failures.
"""

import os
import sys
import time

from twisted.internet import defer, threads

from dicomd.archive.databases import DatabaseUnusable, checkURL, displayName, isURL, openIndex
from dicomd.archive.index import DATABASE_ERRORS
from dicomd.archive.queue import ForwardQueue
from dicomd.archive.service import INDEX_FILE
from dicomd.cli.options import CommandLine, Option, Parameter, UsageError, generalOptions, integer, string
from dicomd.config import DEFAULT_DIRECTORY, ConfigError, readConfig

ACTIONS = ("list", "retry", "forget")

COMMAND_LINE = CommandLine(
    "dicomd queue",
    "list, retry or forget the entries of the forwarding queue",
    [
        Parameter("action", "list, retry or forget"),
        Parameter("id", "the entry to retry or forget (as list shows it)", integer(1), required=False),
    ],
    [
        generalOptions(),
        (
            "queue options",
            [
                Option(("-c", "--config"), "configFile", "find the database as twistd dicomd --config FILE does", (("f]ilename", string),)),
                Option(("-o", "--output-directory"), "outputDirectory", "find the database in this data directory (twistd dicomd -o)", (("d]irectory", string),)),
                Option(("-db", "--database"), "database", "the index database itself", (("f]ilename", string),)),
                Option(("-a", "--all"), "all", "retry every failed or waiting entry"),
            ],
        ),
    ],
)


def validate(values) -> None:
    """
    Check the action and its entry, and find the database.
    """
    action = values["action"]
    if action not in ACTIONS:
        raise UsageError("unknown action %r (known: %s)" % (action, ", ".join(ACTIONS)))
    if action == "list" and (values.get("id") is not None or values.get("all")):
        raise UsageError("list takes neither an id nor --all")
    if action == "forget" and values.get("id") is None:
        raise UsageError("forget needs the id of an entry")
    if action == "retry" and (values.get("id") is None) == (not values.get("all")):
        raise UsageError("retry needs the id of an entry, or --all")
    given = [name for name in ("configFile", "outputDirectory", "database") if values.get(name)]
    if len(given) > 1:
        raise UsageError("choose one of --config, --output-directory and --database")
    if values.get("configFile"):
        try:
            config = readConfig(values["configFile"])
        except ConfigError as e:
            raise UsageError(str(e))
        values["database"] = config.database or os.path.join(config.entities[0].storage.outputDirectory, INDEX_FILE)
    elif not values.get("database"):
        values["database"] = os.path.join(values.get("outputDirectory") or DEFAULT_DIRECTORY, INDEX_FILE)
    if isURL(values["database"]):
        try:
            checkURL(values["database"])
        except DatabaseUnusable as e:
            raise UsageError("--database: %s" % (e,))
    elif not os.path.isfile(values["database"]):
        raise UsageError("no index database at %s" % (values["database"],))


def _when(seconds: float, now: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    return "now" if seconds <= now else stamp


def listing(entries, now: float) -> str:
    """
    The entries as C{dicomd queue list} prints them: a header, then one
    line each.
    """
    lines = ["%-6s %-7s %-16s %-64s %5s %-19s %s" % ("ID", "STATE", "DESTINATION", "SOP INSTANCE UID", "TRIES", "NEXT TRY", "LAST ERROR")]
    for entry in entries:
        nextTry = _when(entry.nextTry, now) if entry.state == "queued" else "-"
        lines.append(
            "%-6d %-7s %-16s %-64s %5d %-19s %s"
            % (entry.id, entry.state, entry.destination, entry.sopInstanceUID, entry.tries, nextTry, entry.lastError or "-")
        )
    return "\n".join(lines) + "\n"


def _act(values) -> (str, int):
    index = openIndex(values["database"])
    queue = ForwardQueue(index)
    now = time.time()
    try:
        action = values["action"]
        if action == "list":
            return listing(queue.entries(), now), 0
        if action == "retry":
            count = queue.retry(now, None if values.get("all") else values["id"])
            if not count:
                return "no entry %d\n" % (values["id"],), 1
            return "%d entries queued again\n" % (count,), 0
        if queue.forget(values["id"]):
            return "entry %d forgotten\n" % (values["id"],), 0
        return "no entry %d\n" % (values["id"],), 1
    finally:
        index.close()


@defer.inlineCallbacks
def run(reactor, values):
    """
    Do the action in a thread and print its outcome.

    @return: a L{Deferred} firing with the exit status: 0, or 1 when the
        entry named does not exist.
    """
    try:
        text, status = yield threads.deferToThreadPool(reactor, reactor.getThreadPool(), _act, values)
    except DATABASE_ERRORS as e:
        text, status = "dicomd queue: cannot use the index database %s: %s\n" % (displayName(values["database"]), e), 1
    (sys.stdout if status == 0 else sys.stderr).write(text)
    sys.stdout.flush()
    return status
