"""
Tests for C{dicomd reindex}: rebuilding the archive index of a storage
area from its files (issue 5.1), in process and as the real command.
"""

import io
import os
import sys

from twisted.internet import defer, reactor
from twisted.trial import unittest

from dicomd.archive.index import SQLiteArchiveIndex, areaKey
from dicomd.archive.service import INDEX_FILE
from dicomd.cli import reindex
from dicomd.cli.options import UsageError
from tests.dicomfiles import makeDataset, writeFile
from tests import postgres
from tests.support import dicomdArgv, makeDirectory, pythonEnvironment, runCommand


def storageArea(testCase, count=2):
    """
    A directory with C{count} DICOM files (the last in a study directory)
    and one file that is not DICOM.

    @return: the directory, and the files' paths relative to it.
    """
    directory = makeDirectory(testCase)
    os.mkdir(os.path.join(directory, "study"))
    relative = []
    for number in range(count):
        name = "CT%d.dcm" % (number,) if number < count - 1 else os.path.join("study", "CT%d.dcm" % (number,))
        writeFile(os.path.join(directory, name), makeDataset(rows=4, columns=4, patientID="P%d" % (number,)))
        relative.append(name)
    with open(os.path.join(directory, "notes.txt"), "w") as f:
        f.write("not DICOM\n")
    return directory, relative


def storedPaths(database, area):
    index = SQLiteArchiveIndex(database)
    try:
        return sorted(index.storedPaths(area).values())
    finally:
        index.close()


class ReindexTests(unittest.TestCase):
    """
    L{reindex.validate} and L{reindex.run} in process.
    """

    def setUp(self):
        self.output = io.StringIO()
        self.patch(sys, "stdout", self.output)

    @defer.inlineCallbacks
    def reindexed(self, *arguments):
        values = reindex.COMMAND_LINE.parse(list(arguments))
        reindex.validate(values)
        status = yield reindex.run(reactor, values)
        self.assertEqual(status, 0)
        return values

    @defer.inlineCallbacks
    def test_indexesFiles(self):
        """
        Every DICOM file is indexed for the area named by the directory in
        the directory's own database (twistd dicomd's layout); a file that
        is not DICOM is skipped and counted.
        """
        directory, relative = storageArea(self)
        yield self.reindexed(directory)
        database = os.path.join(directory, INDEX_FILE)
        self.assertEqual(storedPaths(database, areaKey(directory)), sorted(relative))
        self.assertEqual(
            self.output.getvalue(),
            "%s: 2 files indexed in %s; 0 rows of missing files removed; 1 files skipped (not DICOM)\n"
            % (directory, database),
        )

    @defer.inlineCallbacks
    def test_removesRowsOfMissingFiles(self):
        """
        Reindexing after a file was deleted drops its row, and keeps the
        others.
        """
        directory, relative = storageArea(self)
        database = os.path.join(makeDirectory(self), "index.sqlite")
        yield self.reindexed("--database", database, "-aet", "AREA", directory)
        os.unlink(os.path.join(directory, relative[0]))
        yield self.reindexed("--database", database, "-aet", "AREA", "-v", directory)
        self.assertEqual(storedPaths(database, areaKey(directory)), relative[1:])
        last = self.output.getvalue().splitlines()[-2:]
        self.assertIn("1 files indexed in", last[0])
        self.assertIn("1 rows of missing files removed", last[0])
        self.assertEqual(last[1], "skipped notes.txt")

    @defer.inlineCallbacks
    def test_fromQrscpConfig(self):
        """
        With C{-c}, the database is the one C{dicomd qrscp -c} keeps in the
        first AE's storage area, and the AE titles whose former rows are
        taken over those whose storage area the directory is.
        """
        directory, relative = storageArea(self)
        config = os.path.join(makeDirectory(self), "dcmqrscp.cfg")
        with open(config, "w") as f:
            f.write(
                "AETable BEGIN\nFIRST %s RW (5, 5mb) ANY\nAREA %s RW (5, 5mb) ANY\nREADER %s R (5, 5mb) ANY\nAETable END\n"
                % (os.path.dirname(directory), directory, directory)
            )
        values = yield self.reindexed("-c", config, directory + os.sep)
        self.assertEqual(values["titles"], ["AREA", "READER"])
        self.assertEqual(values["database"], os.path.join(os.path.dirname(directory), INDEX_FILE))
        self.assertEqual(storedPaths(values["database"], areaKey(directory)), sorted(relative))

    @defer.inlineCallbacks
    def test_takesOverTitleRows(self):
        """
        The rows an index written before areas were named by directory
        keeps under the AE title given (C{-aet}) become the directory's:
        none is left under the title.
        """
        directory, relative = storageArea(self)
        database = os.path.join(makeDirectory(self), "index.sqlite")
        yield self.reindexed("--database", database, "-aet", "AREA", directory)
        index = SQLiteArchiveIndex(database)
        self.addCleanup(index.close)
        index.adoptArea(areaKey(directory), "AREA")
        self.assertEqual(storedPaths(database, "AREA"), sorted(relative))
        yield self.reindexed("--database", database, "-aet", "AREA", directory)
        self.assertEqual(storedPaths(database, "AREA"), [])
        self.assertEqual(storedPaths(database, areaKey(directory)), sorted(relative))

    def test_emptyAETable(self):
        """
        With C{-c} naming a file whose AETable is empty, there is no index
        to default to: C{-db} must name it.
        """
        directory, _ = storageArea(self)
        config = os.path.join(makeDirectory(self), "dcmqrscp.cfg")
        with open(config, "w") as f:
            f.write("AETable BEGIN\nAETable END\n")
        values = reindex.COMMAND_LINE.parse(["-c", config, "-aet", "AREA", directory])
        error = self.assertRaises(UsageError, reindex.validate, values)
        self.assertEqual(str(error), "%s has an empty AETable, so no index: name it with -db" % (config,))

    def test_directoryNotInConfig(self):
        """
        With C{-c}, a directory that is no AE's storage area is an error.
        """
        directory, _ = storageArea(self)
        config = os.path.join(makeDirectory(self), "dcmqrscp.cfg")
        with open(config, "w") as f:
            f.write("AETable BEGIN\nOTHER /nonexistent RW (5, 5mb) ANY\nAETable END\n")
        values = reindex.COMMAND_LINE.parse(["-c", config, directory])
        error = self.assertRaises(UsageError, reindex.validate, values)
        self.assertEqual(str(error), "no AE title of %s has the storage area %s" % (config, directory))

    def test_notADirectory(self):
        """
        A directory that does not exist is an error.
        """
        values = reindex.COMMAND_LINE.parse([os.path.join(self.mktemp(), "missing")])
        error = self.assertRaises(UsageError, reindex.validate, values)
        self.assertIn("is not a directory", str(error))


class PostgreSQLReindexTests(unittest.TestCase):
    """
    C{dicomd reindex --database postgresql://...}: the index of a daemon
    sharing a PostgreSQL database, rebuilt from the files.
    """

    def setUp(self):
        ReindexTests.setUp(self)
        self.url = postgres.database(self)

    reindexed = ReindexTests.reindexed

    @defer.inlineCallbacks
    def test_indexesFiles(self):
        """
        The files are indexed in the PostgreSQL database, which the report
        names.
        """
        from dicomd.archive.postgresql import PostgreSQLArchiveIndex

        directory, relative = storageArea(self)
        yield self.reindexed("--database", self.url, directory)
        index = PostgreSQLArchiveIndex(self.url)
        self.addCleanup(index.close)
        self.assertEqual(sorted(index.storedPaths(areaKey(directory)).values()), sorted(relative))
        self.assertIn("2 files indexed in %s;" % (self.url,), self.output.getvalue())

    @defer.inlineCallbacks
    def test_unreachable(self):
        """
        A server that cannot be reached fails the command with one line
        naming the URL, its password hidden, and status 1.
        """
        errors = io.StringIO()
        self.patch(sys, "stderr", errors)
        directory, _ = storageArea(self)
        values = reindex.COMMAND_LINE.parse(["--database", "postgresql://dicomd:secret@127.0.0.1:1/archive", directory])
        reindex.validate(values)
        status = yield reindex.run(reactor, values)
        self.assertEqual(status, 1)
        self.assertTrue(errors.getvalue().startswith("dicomd reindex: cannot use the index database postgresql://dicomd:***@127.0.0.1:1/archive: "))
        self.assertEqual(errors.getvalue().count("\n"), 1)
        self.assertNotIn("secret", errors.getvalue())

    def test_badURL(self):
        """
        A URL libpq cannot read is a usage error naming the option.
        """
        directory, _ = storageArea(self)
        values = reindex.COMMAND_LINE.parse(["--database", "postgresql://h/db?nosuchoption=1", directory])
        error = self.assertRaises(UsageError, reindex.validate, values)
        self.assertTrue(str(error).startswith("--database: postgresql://h/db?nosuchoption=1: not a PostgreSQL URL"), str(error))


class ReindexCommandTests(unittest.TestCase):
    """
    C{python -m dicomd reindex} as a process.
    """

    @defer.inlineCallbacks
    def test_command(self):
        """
        The command indexes the directory, says so, and exits 0.
        """
        directory, relative = storageArea(self, count=1)
        result = yield runCommand(dicomdArgv("reindex", directory), env=pythonEnvironment())
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertIn("1 files indexed in", result.stdout)
        self.assertEqual(storedPaths(os.path.join(directory, INDEX_FILE), areaKey(directory)), relative)
