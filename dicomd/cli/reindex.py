"""
C{dicomd reindex}: bring the archive index back in line with the files of
one storage area (the job DCMTK's C{dcmqridx} does for C{index.dat}).

Every DICOM file under the directory is indexed again from its header,
and the rows whose file is gone are dropped; files are never deleted or
moved.  The area is named in the index by its directory
(L{dicomd.archive.index.areaKey}), whichever AE titles serve it, and the
index is found where the daemon keeps it:

  - for C{twistd dicomd}, C{.dicomd-index.sqlite} in its data directory
    (the default here);
  - for C{dicomd qrscp -c FILE}, in the storage area of the file's first
    AE: with C{-c FILE}, the database is taken from it.

An index written before areas were named by directory kept them under AE
titles; the rows of the AE titles given (C{-aet}, by default C{DICOMD},
the daemon's; with C{-c}, every AE whose storage area the directory is)
are brought under the directory first (L{adoptTitleArea}), so that none
is left behind.

It may run while the daemon runs: SQLite serialises the writers, and so
does PostgreSQL's index (C{--database postgresql://...}), which any node
sharing it may rebuild.
"""

import os
import sys

from twisted.internet import defer, threads

from dicomd.archive.dcmqrcfg import ConfigError, readConfig
from dicomd.archive.area import adoptTitleArea
from dicomd.archive.databases import DatabaseUnusable, checkURL, displayName, isURL, openIndex
from dicomd.archive.index import DATABASE_ERRORS, areaKey
from dicomd.archive.reindexing import reindex
from dicomd.archive.service import INDEX_FILE
from dicomd.cli.options import CommandLine, Option, Parameter, UsageError, aeTitle, generalOptions, string
from dicomd.cli.qrscp import defaultDatabase

DEFAULT_AE_TITLE = "DICOMD"

COMMAND_LINE = CommandLine(
    "dicomd reindex",
    "rebuild the archive index of a storage area from its files",
    [Parameter("directory", "the storage area's directory")],
    [
        generalOptions(),
        (
            "index options",
            [
                Option(
                    ("-db", "--database"),
                    "database",
                    "the index database (default: %s in the directory, or in the first storage area of -c)" % (INDEX_FILE,),
                    (("f]ilename", string),),
                ),
                Option(
                    ("-aet", "--aetitle"),
                    "aetitle",
                    "take over the rows an older index kept under this AE title (default: %s, or the AEs of -c whose storage area the directory is)"
                    % (DEFAULT_AE_TITLE,),
                    (("a]etitle", aeTitle),),
                ),
                Option(("-c", "--config"), "configFile", "take the database and AE titles from this dcmqrscp.cfg, as dicomd qrscp does", (("f]ilename", string),)),
            ],
        ),
    ],
)


def validate(values) -> None:
    """
    Check the directory and choose the database and the AE titles whose
    former rows to take over (C{values["titles"]}).
    """
    directory = values["directory"]
    if not os.path.isdir(directory):
        raise UsageError("%s is not a directory" % (directory,))
    if values.get("database") and isURL(values["database"]):
        try:
            checkURL(values["database"])
        except DatabaseUnusable as e:
            raise UsageError("--database: %s" % (e,))
    configFile = values.get("configFile")
    if configFile is None:
        values["database"] = values.get("database") or os.path.join(directory, INDEX_FILE)
        values["titles"] = [values.get("aetitle") or DEFAULT_AE_TITLE]
        return
    try:
        config = readConfig(configFile)
    except ConfigError as e:
        raise UsageError("bad config file: %s" % (e,))
    values["database"] = values.get("database") or defaultDatabase(config)
    if values["database"] is None:
        raise UsageError("%s has an empty AETable, so no index: name it with -db" % (configFile,))
    owners = [title for title, entry in config.aeTable.items() if areaKey(entry.storageArea) == areaKey(directory)]
    if not owners:
        raise UsageError("no AE title of %s has the storage area %s" % (configFile, directory))
    values["titles"] = [values["aetitle"]] if values.get("aetitle") else owners


def _reindex(values):
    index = openIndex(values["database"])
    directory = values["directory"]
    try:
        for title in values["titles"]:
            adoptTitleArea(index, title, directory)
        return reindex(index, areaKey(directory), directory)
    finally:
        index.close()


@defer.inlineCallbacks
def run(reactor, values):
    """
    Reindex the area, in a thread, and print what was done.

    @return: a L{Deferred} firing with the exit status: 0, or 1 when the
        index cannot be opened or written.
    """
    try:
        report = yield threads.deferToThreadPool(reactor, reactor.getThreadPool(), _reindex, values)
    except DATABASE_ERRORS as e:
        sys.stderr.write("dicomd reindex: cannot use the index database %s: %s\n" % (displayName(values["database"]), e))
        return 1
    sys.stdout.write(
        "%s: %d files indexed in %s; %d rows of missing files removed; %d files skipped (not DICOM)\n"
        % (values["directory"], report.indexed, displayName(values["database"]), report.removed, len(report.skipped))
    )
    if values.get("verbose") or values.get("debug"):
        for path in report.skipped:
            sys.stdout.write("skipped %s\n" % (path,))
    sys.stdout.flush()
    return 0
