"""
Tests for L{dicomd.archive.index}, L{dicomd.archive.sql},
L{dicomd.archive.reindexing} and L{dicomd.archive.asyncindex}: C-FIND
matching at every level of every model, retrieval, updates, quotas and
reindexing, on a small archive of patients named in ASCII, Latin-1 and
UTF-8.
"""

import contextlib
import os
import sqlite3
import threading
import time
import warnings

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from dicomd.archive.asyncindex import AsyncArchiveIndex, PendingResponses
from dicomd.archive.index import (
    DATABASE_ERRORS,
    ROWS_MOVED,
    SCHEMA_VERSION,
    IArchiveIndex,
    IndexDatabaseError,
    ReindexReport,
    SQLiteArchiveIndex,
    StoredFile,
    StoredInstance,
    StudySummary,
    _ROWS_PER_INSERT,
    areaKey,
)
from dicomd.archive.reindexing import reindex
from dicomd.archive.matching import (
    KEYS,
    PATIENT_ROOT,
    PATIENT_STUDY_ONLY,
    STUDY_ROOT,
    IdentifierError,
    Level,
    QueryError,
)
from dicomd.dimse.status import UNABLE_TO_PROCESS
from tests import postgres
from tests.support import callWithCallback

AREA = "ARCHIVE"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT = "1.2.840.10008.1.2.1"


def undecoded(dataset):
    """
    C{dataset} encoded in implicit VR little endian and read again without
    decoding its elements, as a storage SCP's header is.
    """
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, True
    write_dataset(out, dataset)
    return read_dataset(DicomBytesIO(out.getvalue()), True, True)


def roundTrip(dataset):
    """
    Encode a dataset in its own Specific Character Set and decode it again,
    as a received header or request identifier is.  The pre-1993 date and
    time forms of the archive are valid for DCMTK, not for pydicom, which
    warns about them.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        decoded = undecoded(dataset)
        decoded.decode()
    return decoded


#: The patients of the archive: (character set, attributes).
PATIENTS = {
    "P1": (None, dict(PatientName="Doe^John", PatientBirthDate="19700101",
                      PatientSex="M", IssuerOfPatientID="HOSP")),
    "P2": ("ISO_IR 100", dict(PatientName="Müller^Jürgen",
                              PatientBirthDate="19651224", PatientSex="M")),
    "P3": ("ISO_IR 192", dict(PatientName="Wang^Xiaodong=王^小东",
                              PatientBirthDate="19800229", PatientSex="F")),
    "P4": (None, dict(PatientName="Doe^Jane", PatientSex="F")),
    "P%_5": (None, dict(PatientName="O'Brien_[x]%^Pat", PatientSex="O",
                        PatientBirthDate="2001.02.03")),
    "P6": ("ISO_IR 192", dict(PatientName="Jürgensen^Åsa",
                              PatientBirthDate="19900101", PatientSex="F")),
}

#: The studies: UID -> (patient, attributes).
STUDIES = {
    "1.1": ("P1", dict(StudyDate="20200115", StudyTime="101500",
                       AccessionNumber="ACC1", StudyDescription="CT Chest",
                       ReferringPhysicianName="Ref^Doc", StudyID="1",
                       PatientAge="050Y", PatientWeight="80.5")),
    "1.2": ("P1", dict(StudyDate="20210610", StudyTime="083000.5",
                       AccessionNumber="ACC2", StudyDescription="MR Head",
                       StudyID="2")),
    "2.1": ("P2", dict(StudyDate="20201231", StudyTime="2359",
                       AccessionNumber="ACC3", StudyDescription="Röntgen Thorax")),
    "3.1": ("P3", dict(StudyDate="2019.03.01", StudyTime="12:00",
                       AccessionNumber="ACC4", StudyDescription="US Abdomen")),
    "4.1": ("P4", dict(StudyDate="20220101", AccessionNumber="",
                       StudyDescription="CT Knee")),
    "5.1": ("P%_5", dict(StudyDate="20230101", StudyTime="0700",
                         AccessionNumber="A%_[1]", StudyDescription="OT")),
    "6.1": ("P6", dict(StudyDate="20240229", StudyTime="1600",
                       AccessionNumber="ACC6", StudyDescription="MR Knee")),
}

#: The series: UID -> (study, modality, series number, instance count).
SERIES = {
    "1.1.1": ("1.1", "CT", "1", 2),
    "1.1.2": ("1.1", "SR", "2", 1),
    "1.2.1": ("1.2", "MR", "1", 2),
    "2.1.1": ("2.1", "CR", "1", 1),
    "3.1.1": ("3.1", "US", "1", 1),
    "4.1.1": ("4.1", "CT", "3", 1),
    "5.1.1": ("5.1", "OT", "1", 1),
    "6.1.1": ("6.1", "MR", "7", 1),
}


def header(seriesUID, number, **overrides):
    """
    The header of the instance C{number} of a series of the archive.
    """
    studyUID, modality, seriesNumber, _ = SERIES[seriesUID]
    patientID, studyAttributes = STUDIES[studyUID]
    characterSet, patientAttributes = PATIENTS[patientID]
    dataset = Dataset()
    if characterSet:
        dataset.SpecificCharacterSet = characterSet
    dataset.PatientID = patientID
    dataset.StudyInstanceUID = studyUID
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dataset.update(patientAttributes)
        dataset.update(studyAttributes)
    dataset.SeriesInstanceUID = seriesUID
    dataset.Modality = modality
    dataset.SeriesNumber = seriesNumber
    dataset.SOPInstanceUID = f"{seriesUID}.{number}"
    dataset.SOPClassUID = MR if modality == "MR" else CT
    dataset.InstanceNumber = str(number)
    dataset.update(overrides)
    return roundTrip(dataset)


def stored(sopInstanceUID, received, size=1000, path=None):
    return StoredFile(
        path=path or f"{sopInstanceUID}.dcm",
        size=size,
        transferSyntaxUID=EXPLICIT,
        received=received,
        callingAETitle="MODALITY",
    )


def archiveItems():
    """
    Every instance of the archive with its file, received one second apart
    in the order of L{SERIES}.
    """
    items = []
    for seriesUID, (_, _, _, count) in SERIES.items():
        for number in range(1, count + 1):
            dataset = header(seriesUID, number)
            items.append(
                (dataset, stored(dataset.SOPInstanceUID, 1000.0 + len(items)))
            )
    return items


def identifier(level, characterSet=None, **keys):
    """
    A request identifier, encoded in its character set and decoded again.
    (Query values such as C{-} or C{?R} are not valid values for pydicom.)
    """
    dataset = Dataset()
    if characterSet:
        dataset.SpecificCharacterSet = characterSet
    dataset.QueryRetrieveLevel = level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for keyword, value in keys.items():
            setattr(dataset, keyword, value)
    return roundTrip(dataset)


class _Recording:
    """
    A connection that records the statements it executes.
    """

    def __init__(self, db, statements):
        self._db = db
        self._statements = statements

    def execute(self, statement, parameters=()):
        self._statements.append(statement)
        return self._db.execute(statement, parameters)

    def __getattr__(self, name):
        return getattr(self._db, name)


def _table(statement):
    """
    The table a statement of the index is about: the word after
    C{INTO}, C{FROM} or C{UPDATE}.
    """
    words = statement.replace("(", " ").split()
    for index, word in enumerate(words[:-1]):
        if word in ("INTO", "FROM", "UPDATE"):
            return words[index + 1]
    return ""


class SQLiteEngine:
    """
    Run a test case's index in SQLite.
    """

    def makeIndex(self):
        return SQLiteArchiveIndex(self.mktemp())


class PostgreSQLEngine:
    """
    Run a test case's index in PostgreSQL, in a database of its own on the
    throw-away server of L{tests.postgres}.
    """

    def makeIndex(self):
        from dicomd.archive.postgresql import PostgreSQLArchiveIndex

        return PostgreSQLArchiveIndex(postgres.database(self), node="test")


class ArchiveMixin(SQLiteEngine):
    """
    An index holding the archive.
    """

    def setUp(self):
        self.index = self.makeIndex()
        self.addCleanup(self.index.close)
        self.index.addInstances(AREA, archiveItems())

    def find(self, model, level, characterSet=None, **keys):
        """
        The responses to a C-FIND, as pydicom data sets.
        """
        return [
            response.dataset()
            for response in self.index.find(AREA, model, identifier(level, characterSet, **keys))
        ]

    def matches(self, model, level, keyword, **keys):
        """
        The values of C{keyword} in the responses to a query that returns it.
        """
        keys.setdefault(keyword, "")
        return [str(response[keyword].value) for response in self.find(model, level, **keys)]


class SchemaTests(SynchronousTestCase):
    """
    Tests for the SQLite schema.
    """

    def setUp(self):
        self.path = self.mktemp()
        self.index = SQLiteArchiveIndex(self.path)
        self.index.open()
        self.addCleanup(self.index.close)

    def columns(self, table):
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}

    def test_provides(self):
        """
        L{SQLiteArchiveIndex} provides L{IArchiveIndex}.
        """
        self.assertTrue(verifyObject(IArchiveIndex, self.index))

    def test_everyKeyHasAColumn(self):
        """
        Each query key has a column in the table of its level, and a
        sortable column when it is a date or time.
        """
        tables = {Level.PATIENT: "patient", Level.STUDY: "study",
                  Level.SERIES: "series", Level.IMAGE: "instance"}
        for key in KEYS:
            columns = self.columns(tables[key.level])
            self.assertIn(key.keyword, columns)
            if key.ordered:
                self.assertIn(key.keyword + "Sortable", columns)

    def test_instanceFacts(self):
        """
        An instance row keeps its file's facts.
        """
        self.assertTrue(
            {"SpecificCharacterSet", "TransferSyntaxUID", "path", "size",
             "received", "callingAETitle", "area"} <= self.columns("instance")
        )

    def test_walMode(self):
        """
        The database is in WAL mode.
        """
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")

    def test_version(self):
        """
        The schema version is recorded, and reopening keeps the data.
        """
        self.index.addInstance(AREA, header("1.1.1", 1), stored("1.1.1.1", 1.0))
        self.index.close()
        reopened = SQLiteArchiveIndex(self.path)
        self.addCleanup(reopened.close)
        self.assertEqual(reopened.studyCount(AREA), 1)
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)

    def test_unknownVersion(self):
        """
        A database of another schema version is refused.
        """
        self.index.close()
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA user_version = 99")
        db.close()
        self.assertRaises(sqlite3.DatabaseError, SQLiteArchiveIndex(self.path).open)

    def test_openedLazily(self):
        """
        Constructing the index touches no file; L{SQLiteArchiveIndex.open}
        or the first use creates it.
        """
        path = self.mktemp()
        index = SQLiteArchiveIndex(path)
        self.assertFalse(os.path.exists(path))
        self.assertEqual(index.studyCount(AREA), 0)
        self.assertTrue(os.path.exists(path))

    def test_foreignKeys(self):
        """
        Foreign keys are enforced: an instance needs its series.
        """
        with self.index.connection() as db:
            self.assertRaises(
                sqlite3.IntegrityError,
                db.execute,
                "INSERT INTO instance (series, area, SOPInstanceUID, path, size,"
                " received) VALUES (42, 'A', '1', 'f', 1, 0)",
            )

    def test_closed(self):
        """
        A closed index refuses calls.
        """
        self.index.close()
        self.assertRaises(sqlite3.ProgrammingError, self.index.studyCount, AREA)


class PoolLogTests(SynchronousTestCase):
    """
    Tests for L{dicomd.archive.postgresql.PoolLog}.
    """

    def test_oneLineInTheDaemonLog(self):
        """
        A warning of psycopg_pool, libpq's message over several lines, is
        one line of the daemon's log, and no longer goes to Python's
        default handler (standard error under twistd).
        """
        import logging

        from twisted.logger import formatEvent, globalLogPublisher

        from dicomd.archive.postgresql import PoolLog

        pool = logging.getLogger("psycopg.pool")
        handlers, propagate = list(pool.handlers), pool.propagate
        self.addCleanup(setattr, pool, "handlers", handlers)
        self.addCleanup(setattr, pool, "propagate", propagate)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        PoolLog.install()
        PoolLog.install()
        pool.warning(
            "error connecting in %r: connection failed: No such file or directory\n\tIs the server running locally?",
            "dicomd-index",
        )
        pool.info("not worth a line")
        logged = [formatEvent(event) for event in events if event.get("log_namespace") == "dicomd.archive.postgresql.PoolLog"]
        self.assertEqual(
            logged,
            [
                "PostgreSQL connection pool: error connecting in 'dicomd-index': connection failed:"
                " No such file or directory Is the server running locally?"
            ],
        )
        self.assertFalse(pool.propagate)


class PostgreSQLSchemaTests(SynchronousTestCase):
    """
    Tests for the PostgreSQL index's schema and connection.
    """

    def setUp(self):
        from dicomd.archive import postgresql

        self.postgresql = postgresql
        self.url = postgres.database(self)

    def open(self, url=None):
        index = self.postgresql.PostgreSQLArchiveIndex(url or self.url, node="test")
        self.addCleanup(index.close)
        index.open()
        return index

    def version(self):
        import psycopg

        with psycopg.connect(self.url) as connection:
            return connection.execute("SELECT version FROM schema_version").fetchall()

    def test_created(self):
        """
        Opening an empty database creates the schema at the current
        version; opening it again (another node) keeps it.
        """
        verifyObject(IArchiveIndex, self.open())
        self.open()
        self.assertEqual(self.version(), [(self.postgresql.SCHEMA_VERSION,)])

    @staticmethod
    def downgradeToVersion3(connection):
        """
        Make the schema of today the one of version 3: runs recorded in the
        C{run} table (versions 1 to 3), not in C{node}, and studies without
        the node of their newest object.
        """
        connection.execute("DROP TABLE node")
        connection.execute("ALTER TABLE study DROP COLUMN lastNode")
        connection.execute("CREATE TABLE run (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        connection.execute("UPDATE schema_version SET version = 3")

    def test_migratedFromVersion1(self):
        """
        A schema of version 1 gains the table of the destinations retried
        (C{forwardRetry}), and the later versions' changes.
        """
        import psycopg

        from dicomd.archive.queue import ForwardQueue

        self.open().close()
        with psycopg.connect(self.url) as connection:
            self.downgradeToVersion3(connection)
            connection.execute("DROP TABLE forwardRetry")
            connection.execute("UPDATE schema_version SET version = 1")
        index = self.open()
        self.assertEqual(self.version(), [(self.postgresql.SCHEMA_VERSION,)])
        self.assertEqual(ForwardQueue(index).takeRetried(), [])

    def test_migratedFromVersion2(self):
        """
        A schema of version 2 gains the forwarding queue's claims and the
        studies' ends.
        """
        import psycopg

        self.open().close()
        with psycopg.connect(self.url) as connection:
            self.downgradeToVersion3(connection)
            connection.execute("ALTER TABLE forward DROP COLUMN claimedBy, DROP COLUMN leaseUntil")
            connection.execute("ALTER TABLE study DROP COLUMN endedAt, DROP COLUMN endedBy")
            connection.execute("UPDATE schema_version SET version = 2")
        with self.open().connection() as db:
            db.execute("SELECT claimedBy, leaseUntil FROM forward")
            db.execute("SELECT endedAt, endedBy FROM study")
        self.assertEqual(self.version(), [(self.postgresql.SCHEMA_VERSION,)])

    def test_migratedFromVersion3(self):
        """
        A schema of version 3 gains the C{node} table, holding the runs its
        C{run} table recorded (a node whose run ended finds it ended, one
        whose run did not finds it crashed), and the node of each study's
        newest object.
        """
        import psycopg

        from dicomd.archive.index import RUN_CRASHED, RUN_ENDED

        self.open().close()
        with psycopg.connect(self.url) as connection:
            self.downgradeToVersion3(connection)
            connection.execute("INSERT INTO run VALUES ('ended:one', 'yes'), ('ended:two', 'no')")
        with self.open().connection() as db:
            db.execute("SELECT lastNode FROM study")
        self.assertEqual(self.version(), [(self.postgresql.SCHEMA_VERSION,)])
        for node, previous in (("one", RUN_ENDED), ("two", RUN_CRASHED)):
            index = self.postgresql.PostgreSQLArchiveIndex(self.url, node=node)
            self.addCleanup(index.close)
            self.assertEqual(index.beginRun(), previous)

    def test_migratedFromVersion4(self):
        """
        A schema of version 4 gains the indexes a claim finds the order of
        each study with.
        """
        import psycopg

        self.open().close()
        with psycopg.connect(self.url) as connection:
            connection.execute("DROP INDEX forwardStudyNextTry")
            connection.execute("DROP INDEX forwardStudyLease")
            connection.execute("UPDATE schema_version SET version = 4")
        self.open().close()
        self.assertEqual(self.version(), [(self.postgresql.SCHEMA_VERSION,)])
        with psycopg.connect(self.url) as connection:
            names = {row[0] for row in connection.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'forward'")}
        self.assertLessEqual({"forwardstudynexttry", "forwardstudylease"}, names)

    def test_newerRefused(self):
        """
        A schema newer than this version knows is refused with one line
        naming the database and both versions.
        """
        import psycopg

        self.open().close()
        with psycopg.connect(self.url) as connection:
            connection.execute("UPDATE schema_version SET version = 99")
        index = self.postgresql.PostgreSQLArchiveIndex(self.url)
        error = self.assertRaises(IndexDatabaseError, index.open)
        self.assertEqual(
            str(error),
            "the index's schema is version 99, newer than this dicomd knows (%d): upgrade dicomd"
            % (self.postgresql.SCHEMA_VERSION,),
        )

    def test_unreachable(self):
        """
        A server that cannot be reached fails opening with one line saying
        why, and the index names its URL with the password hidden.
        """
        url = "postgresql://dicomd:secret@127.0.0.1:1/archive"
        index = self.postgresql.PostgreSQLArchiveIndex(url)
        error = self.assertRaises(IndexDatabaseError, index.open)
        self.assertIn("127.0.0.1", str(error))
        self.assertNotIn("\n", str(error))
        self.assertEqual(index.path, "postgresql://dicomd:***@127.0.0.1:1/archive")

    def test_studyEndsOnce(self):
        """
        A study ends on the first node to find it quiet for the timeout
        since its last object on any node; the others find it ended, until
        an object arrives after the end.
        """
        from dicomd.archive.index import StudyEnd

        one, two = self.open(), self.postgresql.PostgreSQLArchiveIndex(self.url, node="two")
        self.addCleanup(two.close)
        study = "1.1"
        one.addInstances(AREA, [(header("1.1.1", 1), stored("a", 100.0))])
        self.assertEqual(one.claimStudyEnd(AREA, study, 105.0, 10.0), 110.0)
        self.assertIs(two.claimStudyEnd(AREA, study, 110.0, 10.0), StudyEnd.CLAIMED)
        self.assertIs(one.claimStudyEnd(AREA, study, 111.0, 10.0), StudyEnd.ENDED_ELSEWHERE)
        two.addInstances(AREA, [(header("1.1.1", 2), stored("b", 120.0))])
        self.assertIs(one.claimStudyEnd(AREA, study, 130.0, None), StudyEnd.CLAIMED)
        self.assertIs(two.claimStudyEnd(AREA, study, 131.0, 10.0), StudyEnd.ENDED_ELSEWHERE)
        self.assertIs(two.claimStudyEnd(AREA, "9.9.9", 131.0, 10.0), StudyEnd.CLAIMED)

    def test_quotaTurns(self):
        """
        Nodes take turns on an area with a quota: the second to ask waits
        until the first is done with it; a turn on another area does not.
        """
        one, two = self.open(), self.postgresql.PostgreSQLArchiveIndex(self.url, node="two")
        self.addCleanup(two.close)
        entered = threading.Event()
        enteredOther = threading.Event()

        def takeTurn(area, event):
            with two.quotaTurn(area):
                event.set()

        other = threading.Thread(target=takeTurn, args=("OTHER", enteredOther))
        waiter = threading.Thread(target=takeTurn, args=(AREA, entered))
        with one.quotaTurn(AREA):
            other.start()
            self.addCleanup(other.join)
            # A turn on another area does not wait: a regression fails here
            # instead of hanging the test.
            self.assertTrue(enteredOther.wait(30))
            other.join()
            waiter.start()
            self.addCleanup(waiter.join)
            self.waitForLockWaiter()
            self.assertFalse(entered.is_set())
        self.assertTrue(entered.wait(30))

    def waitForLockWaiter(self, timeout=30.0):
        """
        Wait until a session of the test's database waits for an advisory
        lock.
        """
        import psycopg

        deadline = time.monotonic() + timeout
        with psycopg.connect(self.url, autocommit=True) as connection:
            while not connection.execute(
                "SELECT COUNT(*) FROM pg_locks JOIN pg_database ON pg_database.oid = pg_locks.database"
                " WHERE locktype = 'advisory' AND NOT granted AND datname = current_database()"
            ).fetchone()[0]:
                self.assertLess(time.monotonic(), deadline, "no session waits for an advisory lock")
                time.sleep(0.01)

    def test_nodesKeepTheirOwnRuns(self):
        """
        Each node sharing the database learns how its own previous run
        ended, whatever the others did.
        """
        from dicomd.archive.index import RUN_CRASHED, RUN_ENDED

        first = self.postgresql.PostgreSQLArchiveIndex(self.url, node="one")
        second = self.postgresql.PostgreSQLArchiveIndex(self.url, node="two")
        for index in (first, second):
            self.addCleanup(index.close)
            self.assertIsNone(index.beginRun())
        first.endRun()
        self.assertEqual(first.beginRun(), RUN_ENDED)
        self.assertEqual(second.beginRun(), RUN_CRASHED)

    def nodes(self, *names):
        """
        Indexes of nodes named C{names}, each with a run begun and a
        heartbeat at 100 s.
        """
        indexes = []
        for name in names:
            index = self.postgresql.PostgreSQLArchiveIndex(self.url, node=name)
            self.addCleanup(index.close)
            index.beginRun()
            index.beat(100.0)
            indexes.append(index)
        return indexes

    def test_deadRunTakenOverOnce(self):
        """
        The run of a node whose heartbeat is older than the lease is
        claimed by one node alone; the dead node, starting again, finds it
        taken over once it is recovered, and has nothing to recover.
        """
        from dicomd.archive.index import RUN_TAKEN_OVER

        one, two, three = self.nodes("one", "two", "three")
        for index in (two, three):
            index.beat(108.0)
        self.assertIsNone(two.takeOverRun(109.0, 10.0))
        self.assertEqual(tuple(two.takeOverRun(111.0, 10.0)), ("one", 100.0))
        self.assertIsNone(three.takeOverRun(111.0, 10.0))
        two.endTakeOver("one")
        for index in (two, three):
            index.beat(200.0)
        self.assertIsNone(three.takeOverRun(200.0, 10.0))
        self.assertEqual(one.beginRun(), RUN_TAKEN_OVER)
        self.assertFalse(one.claimRecovery(AREA, "/data"))

    def test_ownRunNotTakenOver(self):
        """
        A node never claims its own run, nor one that ended cleanly.
        """
        one, two = self.nodes("one", "two")
        two.endRun()
        self.assertIsNone(one.takeOverRun(1000.0, 10.0))

    def test_takeOverOfDeadRecovererClaimedAgain(self):
        """
        A run claimed by a node that died before recovering it is claimed
        by another once the claimer's heartbeat is older than the lease
        too; while the claimer beats, it is not.
        """
        one, two, three = self.nodes("one", "two", "three")
        two.beat(111.0)
        self.assertEqual(two.takeOverRun(111.0, 10.0)[0], "one")
        three.beat(115.0)
        self.assertIsNone(three.takeOverRun(115.0, 10.0))
        three.beat(130.0)
        self.assertEqual(tuple(three.takeOverRun(130.0, 10.0)), ("one", 100.0))

    def test_deadNodeBackFirst(self):
        """
        A dead node that starts again while its run is being taken over
        recovers it itself, and the take-over's end leaves its new run
        running.
        """
        from dicomd.archive.index import RUN_CRASHED

        one, two = self.nodes("one", "two")
        two.beat(111.0)
        self.assertEqual(two.takeOverRun(111.0, 10.0)[0], "one")
        self.assertEqual(one.beginRun(), RUN_CRASHED)
        self.assertTrue(one.claimRecovery(AREA, "/data"))
        two.endTakeOver("one")
        one.beat(200.0)
        self.assertEqual(tuple(two.takeOverRun(211.0, 10.0)), ("one", 200.0))

    def test_takeOversOfARestartedNodeGivenUp(self):
        """
        A node that starts again gives up the runs it had claimed and not
        recovered, for another node to claim at once.
        """
        one, two, three = self.nodes("one", "two", "three")
        two.beat(111.0)
        self.assertEqual(two.takeOverRun(111.0, 10.0)[0], "one")
        two.beginRun()
        three.beat(111.0)
        self.assertEqual(three.takeOverRun(111.0, 10.0)[0], "one")


class PatientRootPatientLevelTests(ArchiveMixin, SynchronousTestCase):
    """
    C-FIND at the PATIENT level of the Patient Root model.
    """

    def names(self, **keys):
        return self.matches(PATIENT_ROOT, "PATIENT", "PatientName", **keys)

    def test_universal(self):
        """
        An empty key matches every patient, once each, in the order they
        were indexed.
        """
        self.assertEqual(
            self.matches(PATIENT_ROOT, "PATIENT", "PatientID"),
            ["P1", "P2", "P3", "P4", "P%_5", "P6"],
        )

    def test_singleValueID(self):
        """
        A patient ID matches exactly.
        """
        self.assertEqual(self.names(PatientID="P2"), ["Müller^Jürgen"])
        self.assertEqual(self.names(PatientID="P"), [])

    def test_singleValueName(self):
        """
        A person name matches as a whole, case-sensitively.
        """
        self.assertEqual(self.names(PatientName="Doe^John"), ["Doe^John"])
        self.assertEqual(self.names(PatientName="DOE^JOHN"), [])
        self.assertEqual(self.names(PatientName="Doe"), [])

    def test_wildcardAsterisk(self):
        """
        C{*} matches any sequence of characters, across components.
        """
        self.assertEqual(self.names(PatientName="Doe*"), ["Doe^John", "Doe^Jane"])
        self.assertEqual(self.names(PatientName="*J*hn"), ["Doe^John"])
        self.assertEqual(self.names(PatientName="*=王*"), ["Wang^Xiaodong=王^小东"])

    def test_wildcardQuestionMark(self):
        """
        C{?} matches exactly one character, a non-ASCII one included.
        """
        self.assertEqual(self.names(PatientName="Doe^Ja?e"), ["Doe^Jane"])
        self.assertEqual(self.names(PatientName="M?ller*"), ["Müller^Jürgen"])
        self.assertEqual(self.names(PatientName="Doe^J?"), [])

    def test_wildcardCaseSensitive(self):
        """
        Wildcard matching is case-sensitive for names too.
        """
        self.assertEqual(self.names(PatientName="doe*"), [])

    def test_birthDateRange(self):
        """
        Closed and open-ended date ranges; the pre-1993 form is a date.
        """
        self.assertEqual(
            self.names(PatientBirthDate="19650101-19751231"),
            ["Doe^John", "Müller^Jürgen"],
        )
        self.assertEqual(
            self.names(PatientBirthDate="19850101-"),
            ["O'Brien_[x]%^Pat", "Jürgensen^Åsa"],
        )
        self.assertEqual(self.names(PatientBirthDate="-19651224"), ["Müller^Jürgen"])
        self.assertEqual(self.names(PatientBirthDate="20010203"), ["O'Brien_[x]%^Pat"])

    def test_rangeSkipsEmptyDates(self):
        """
        A range never matches a patient without birth date.
        """
        self.assertNotIn("Doe^Jane", self.names(PatientBirthDate="-"))
        self.assertEqual(len(self.names(PatientBirthDate="-")), 5)

    def test_code(self):
        """
        A code string matches exactly.
        """
        self.assertEqual(self.names(PatientSex="F"), [
            "Wang^Xiaodong=王^小东", "Doe^Jane", "Jürgensen^Åsa"])

    def test_severalKeys(self):
        """
        Every key must match.
        """
        self.assertEqual(self.names(PatientName="Doe*", PatientSex="M"), ["Doe^John"])

    def test_latin1QueryLatin1Stored(self):
        """
        A Latin-1 query matches a name stored from Latin-1.
        """
        self.assertEqual(
            self.names(characterSet="ISO_IR 100", PatientName="Müller*"),
            ["Müller^Jürgen"],
        )

    def test_utf8QueryLatin1Stored(self):
        """
        A UTF-8 query matches a name stored from Latin-1.
        """
        self.assertEqual(
            self.names(characterSet="ISO_IR 192", PatientName="Müller^Jürgen"),
            ["Müller^Jürgen"],
        )

    def test_latin1QueryUTF8Stored(self):
        """
        A Latin-1 query matches a name stored from UTF-8.
        """
        self.assertEqual(
            self.names(characterSet="ISO_IR 100", PatientName="Jürgensen^Åsa"),
            ["Jürgensen^Åsa"],
        )

    def test_asciiQueryAnyStored(self):
        """
        An ASCII query with wildcards matches names stored in any
        character set.
        """
        self.assertEqual(
            self.names(PatientName="*^J*"), ["Doe^John", "Müller^Jürgen", "Doe^Jane"]
        )


class PatientRootStudyLevelTests(ArchiveMixin, SynchronousTestCase):
    """
    C-FIND at the STUDY level of the Patient Root model.
    """

    def studies(self, **keys):
        keys.setdefault("PatientID", "")
        return self.matches(PATIENT_ROOT, "STUDY", "StudyInstanceUID", **keys)

    def test_patientIDRequired(self):
        """
        Without the patient's ID the query cannot be processed.
        """
        error = self.assertRaises(
            QueryError, self.find, PATIENT_ROOT, "STUDY", StudyInstanceUID=""
        )
        self.assertEqual(error.status, UNABLE_TO_PROCESS)

    def test_emptyPatientID(self):
        """
        An empty patient ID matches the studies of every patient.
        """
        self.assertEqual(self.studies(), list(STUDIES))

    def test_patientID(self):
        """
        The patient ID selects the patient's studies.
        """
        self.assertEqual(self.studies(PatientID="P1"), ["1.1", "1.2"])

    def test_patientIDWildcard(self):
        """
        The unique key above the level is matched with its VR's matching.
        """
        self.assertEqual(self.studies(PatientID="P?"), [
            "1.1", "1.2", "2.1", "3.1", "4.1", "6.1"])

    def test_patientKeysNotMatched(self):
        """
        Patient keys other than the ID are not matched at the STUDY level.
        """
        self.assertEqual(self.studies(PatientID="P1", PatientName="Nobody"), ["1.1", "1.2"])

    def test_studyDateSingle(self):
        """
        A single date, in either form.
        """
        self.assertEqual(self.studies(StudyDate="20201231"), ["2.1"])
        self.assertEqual(self.studies(StudyDate="2019.03.01"), ["3.1"])

    def test_studyDateClosedRange(self):
        """
        A closed date range includes both ends.
        """
        self.assertEqual(self.studies(StudyDate="20200115-20201231"), ["1.1", "2.1"])

    def test_studyDateOpenRanges(self):
        """
        Open-ended date ranges.
        """
        self.assertEqual(self.studies(StudyDate="20220101-"), ["4.1", "5.1", "6.1"])
        self.assertEqual(self.studies(StudyDate="-20200115"), ["1.1", "3.1"])

    def test_studyDateInvalid(self):
        """
        A query date that does not parse matches nothing.
        """
        self.assertEqual(self.studies(StudyDate="2020"), [])

    def test_studyTimeRange(self):
        """
        Time ranges compare parsed times, whatever their precision or form.
        """
        self.assertEqual(self.studies(StudyTime="0800-1200"), ["1.1", "1.2", "3.1"])
        self.assertEqual(self.studies(StudyTime="083000.5"), ["1.2"])
        self.assertEqual(self.studies(StudyTime="2300-"), ["2.1"])
        self.assertEqual(self.studies(StudyTime="-0700"), ["5.1"])

    def test_studyTimeRangeEndsAtTheInstant(self):
        """
        The end of a time range is the instant it names.
        """
        self.assertEqual(self.studies(StudyTime="-0830"), ["5.1"])

    def test_studyTimeAbsent(self):
        """
        A study without time matches a time range of nothing.
        """
        self.assertNotIn("4.1", self.studies(StudyTime="-"))

    def test_accessionNumber(self):
        """
        An accession number matches exactly.
        """
        self.assertEqual(self.studies(AccessionNumber="ACC3"), ["2.1"])

    def test_studyUIDList(self):
        """
        A list of UIDs matches any of them.
        """
        self.assertEqual(
            self.studies(StudyInstanceUID=["1.2", "3.1", "9.9"]), ["1.2", "3.1"]
        )

    def test_studyUIDSingle(self):
        """
        A single UID matches exactly.
        """
        self.assertEqual(self.studies(StudyInstanceUID="1.1"), ["1.1"])

    def test_descriptionWildcard(self):
        """
        Wildcards on a long string, with a non-ASCII value.
        """
        self.assertEqual(self.studies(StudyDescription="*Knee"), ["4.1", "6.1"])
        self.assertEqual(self.studies(StudyDescription="R?ntgen*"), ["2.1"])

    def test_numbersMatchLiterally(self):
        """
        Decimal strings and ages match as text.
        """
        self.assertEqual(self.studies(PatientWeight="80.5"), ["1.1"])
        self.assertEqual(self.studies(PatientWeight="80.50"), [])
        self.assertEqual(self.studies(PatientAge="050Y"), ["1.1"])

    def test_referringPhysician(self):
        """
        Study-level person names match.
        """
        self.assertEqual(self.studies(ReferringPhysicianName="Ref*"), ["1.1"])


class PatientRootSeriesLevelTests(ArchiveMixin, SynchronousTestCase):
    """
    C-FIND at the SERIES level of the Patient Root model.
    """

    def series(self, **keys):
        keys.setdefault("PatientID", "")
        keys.setdefault("StudyInstanceUID", "")
        return self.matches(PATIENT_ROOT, "SERIES", "SeriesInstanceUID", **keys)

    def test_studyUIDRequired(self):
        """
        Without the study's UID the query cannot be processed.
        """
        self.assertRaises(
            QueryError, self.find, PATIENT_ROOT, "SERIES", PatientID="P1", Modality=""
        )

    def test_ofStudy(self):
        """
        The series of one study.
        """
        self.assertEqual(
            self.series(PatientID="P1", StudyInstanceUID="1.1"), ["1.1.1", "1.1.2"]
        )

    def test_ofStudies(self):
        """
        A list of study UIDs above the query level is matched.
        """
        self.assertEqual(
            self.series(StudyInstanceUID=["1.2", "2.1"]), ["1.2.1", "2.1.1"]
        )

    def test_mismatchedPatient(self):
        """
        A study UID of another patient matches nothing.
        """
        self.assertEqual(self.series(PatientID="P2", StudyInstanceUID="1.1"), [])

    def test_modality(self):
        """
        Modality matches exactly, or with wildcards.
        """
        self.assertEqual(self.series(Modality="CT"), ["1.1.1", "4.1.1"])
        self.assertEqual(self.series(Modality="?R"), ["1.1.2", "1.2.1", "2.1.1", "6.1.1"])

    def test_seriesNumber(self):
        """
        Series Number matches as text.
        """
        self.assertEqual(self.series(SeriesNumber="7"), ["6.1.1"])

    def test_seriesUIDList(self):
        """
        A list of series UIDs.
        """
        self.assertEqual(
            self.series(SeriesInstanceUID="3.1.1\\5.1.1"), ["3.1.1", "5.1.1"]
        )


class PatientRootImageLevelTests(ArchiveMixin, SynchronousTestCase):
    """
    C-FIND at the IMAGE level of the Patient Root model.
    """

    def images(self, **keys):
        for keyword in ["PatientID", "StudyInstanceUID", "SeriesInstanceUID"]:
            keys.setdefault(keyword, "")
        return self.matches(PATIENT_ROOT, "IMAGE", "SOPInstanceUID", **keys)

    def test_seriesUIDRequired(self):
        """
        Without the series' UID the query cannot be processed.
        """
        self.assertRaises(
            QueryError, self.find, PATIENT_ROOT, "IMAGE",
            PatientID="", StudyInstanceUID="", SOPInstanceUID="",
        )

    def test_ofSeries(self):
        """
        The instances of one series.
        """
        self.assertEqual(
            self.images(PatientID="P1", StudyInstanceUID="1.2", SeriesInstanceUID="1.2.1"),
            ["1.2.1.1", "1.2.1.2"],
        )

    def test_instanceNumber(self):
        """
        Instance Number matches as text.
        """
        self.assertEqual(self.images(InstanceNumber="2"), ["1.1.1.2", "1.2.1.2"])

    def test_sopInstanceUIDList(self):
        """
        A list of SOP Instance UIDs.
        """
        self.assertEqual(
            self.images(SOPInstanceUID=["1.1.1.2", "6.1.1.1"]), ["1.1.1.2", "6.1.1.1"]
        )

    def test_sopClassUID(self):
        """
        SOP Class UID is matched and returned.
        """
        self.assertEqual(self.images(SOPClassUID=MR), ["1.2.1.1", "1.2.1.2", "6.1.1.1"])
        responses = self.find(
            PATIENT_ROOT, "IMAGE", PatientID="P1", StudyInstanceUID="1.1",
            SeriesInstanceUID="1.1.1", SOPInstanceUID="1.1.1.1", SOPClassUID="",
        )
        self.assertEqual([r.SOPClassUID for r in responses], [CT])


class StudyRootTests(ArchiveMixin, SynchronousTestCase):
    """
    C-FIND in the Study Root model.
    """

    def test_noPatientLevel(self):
        """
        The PATIENT level cannot be processed.
        """
        error = self.assertRaises(
            QueryError, self.find, STUDY_ROOT, "PATIENT", PatientID=""
        )
        self.assertEqual(error.status, UNABLE_TO_PROCESS)

    def test_studyLevelAll(self):
        """
        A study query needs no patient ID.
        """
        self.assertEqual(
            self.matches(STUDY_ROOT, "STUDY", "StudyInstanceUID"), list(STUDIES)
        )

    def test_studyLevelPatientName(self):
        """
        Patient keys are matched at the STUDY level.
        """
        self.assertEqual(
            self.matches(STUDY_ROOT, "STUDY", "StudyInstanceUID", PatientName="Doe*"),
            ["1.1", "1.2", "4.1"],
        )

    def test_studyLevelPatientBirthDate(self):
        """
        Patient dates are range-matched at the STUDY level.
        """
        self.assertEqual(
            self.matches(STUDY_ROOT, "STUDY", "StudyInstanceUID",
                         PatientBirthDate="-19691231"),
            ["2.1"],
        )

    def test_studyLevelCombined(self):
        """
        Patient and study keys together.
        """
        self.assertEqual(
            self.matches(STUDY_ROOT, "STUDY", "StudyInstanceUID",
                         PatientID="P1", StudyDate="2021"),
            [],
        )
        self.assertEqual(
            self.matches(STUDY_ROOT, "STUDY", "StudyInstanceUID",
                         PatientID="P1", StudyDate="20210101-"),
            ["1.2"],
        )

    def test_seriesLevel(self):
        """
        A series query needs the study UID only; patient keys are returned,
        not matched.
        """
        responses = self.find(
            STUDY_ROOT, "SERIES", StudyInstanceUID="2.1", SeriesInstanceUID="",
            PatientName="Nobody",
        )
        self.assertEqual([r.SeriesInstanceUID for r in responses], ["2.1.1"])
        self.assertEqual(responses[0].PatientName, "Müller^Jürgen")

    def test_seriesLevelModality(self):
        """
        Series keys are matched across studies.
        """
        self.assertEqual(
            self.matches(STUDY_ROOT, "SERIES", "SeriesInstanceUID",
                         StudyInstanceUID="", Modality="MR"),
            ["1.2.1", "6.1.1"],
        )

    def test_imageLevel(self):
        """
        An image query needs the study and series UIDs.
        """
        self.assertEqual(
            self.matches(STUDY_ROOT, "IMAGE", "SOPInstanceUID",
                         StudyInstanceUID="1.1", SeriesInstanceUID="1.1.1",
                         InstanceNumber="1"),
            ["1.1.1.1"],
        )
        self.assertRaises(
            QueryError, self.find, STUDY_ROOT, "IMAGE", SeriesInstanceUID="1.1.1",
            SOPInstanceUID="",
        )


class PatientStudyOnlyTests(ArchiveMixin, SynchronousTestCase):
    """
    C-FIND in the Patient/Study Only model.
    """

    def test_patientLevel(self):
        """
        Patient queries match as in the Patient Root model.
        """
        self.assertEqual(
            self.matches(PATIENT_STUDY_ONLY, "PATIENT", "PatientID", PatientName="*s*"),
            ["P6"],
        )

    def test_studyLevel(self):
        """
        Study queries need the patient ID.
        """
        self.assertEqual(
            self.matches(PATIENT_STUDY_ONLY, "STUDY", "StudyDate",
                         PatientID="P1", StudyDate="2020*"),
            [],
        )
        self.assertEqual(
            self.matches(PATIENT_STUDY_ONLY, "STUDY", "StudyDate",
                         PatientID="P1", StudyDate="20200101-20201231"),
            ["20200115"],
        )

    def test_noSeriesLevel(self):
        """
        The SERIES level cannot be processed.
        """
        self.assertRaises(
            QueryError, self.find, PATIENT_STUDY_ONLY, "SERIES",
            PatientID="P1", StudyInstanceUID="1.1", SeriesInstanceUID="",
        )


class ReturnKeyTests(ArchiveMixin, SynchronousTestCase):
    """
    What C-FIND responses carry.
    """

    def study(self, studyUID, **keys):
        (response,) = self.find(
            STUDY_ROOT, "STUDY", StudyInstanceUID=studyUID, **keys
        )
        return response

    def test_storedValues(self):
        """
        Keys requested but not matched come back with their stored values,
        the patient's and the study's.
        """
        response = self.study(
            "1.1", PatientName="", PatientBirthDate="", IssuerOfPatientID="",
            StudyDate="", StudyTime="", AccessionNumber="", StudyID="",
        )
        self.assertEqual(response.PatientName, "Doe^John")
        self.assertEqual(response.PatientBirthDate, "19700101")
        self.assertEqual(response.IssuerOfPatientID, "HOSP")
        self.assertEqual(response.StudyDate, "20200115")
        self.assertEqual(response.StudyTime, "101500")
        self.assertEqual(response.AccessionNumber, "ACC1")
        self.assertEqual(response.StudyID, "1")

    def test_originalDateForm(self):
        """
        Dates and times come back as they were stored.
        """
        response = self.study("3.1", StudyDate="", StudyTime="")
        self.assertEqual(response.StudyDate, "2019.03.01")
        self.assertEqual(response.StudyTime, "12:00")

    def test_nothingStored(self):
        """
        A key without stored value comes back empty.
        """
        response = self.study("4.1", PatientBirthDate="", StudyTime="")
        self.assertIn("PatientBirthDate", response)
        self.assertFalse(response.PatientBirthDate)
        self.assertFalse(response.StudyTime)

    def test_keyBelowLevel(self):
        """
        A key below the query level comes back empty.
        """
        response = self.study("1.1", Modality="", SOPInstanceUID="")
        self.assertIn("Modality", response)
        self.assertFalse(response.Modality)
        self.assertFalse(response.SOPInstanceUID)

    def test_unsupportedKeysDropped(self):
        """
        Keys the archive does not support are left out.
        """
        response = self.study("1.1", ModalitiesInStudy="", NumberOfStudyRelatedInstances="")
        self.assertNotIn("ModalitiesInStudy", response)
        self.assertNotIn("NumberOfStudyRelatedInstances", response)

    def test_level(self):
        """
        Each response carries the Query/Retrieve Level.
        """
        self.assertEqual(self.study("1.1").QueryRetrieveLevel, "STUDY")

    def test_asciiResponse(self):
        """
        An ASCII request with ASCII results gets no Specific Character Set.
        """
        self.assertNotIn("SpecificCharacterSet", self.study("1.1", PatientName=""))

    def test_asciiRequestUTF8Response(self):
        """
        An ASCII request whose results are not ASCII gets them in UTF-8.
        """
        response = self.study("2.1", PatientName="")
        self.assertEqual(response.SpecificCharacterSet, "ISO_IR 192")
        self.assertEqual(roundTrip(response).PatientName, "Müller^Jürgen")

    def test_latin1Response(self):
        """
        A Latin-1 request gets Latin-1 when it can hold the values, even
        those stored from UTF-8.
        """
        (response,) = self.find(
            STUDY_ROOT, "STUDY", "ISO_IR 100", StudyInstanceUID="6.1", PatientName=""
        )
        self.assertEqual(response.SpecificCharacterSet, "ISO_IR 100")
        self.assertEqual(roundTrip(response).PatientName, "Jürgensen^Åsa")

    def test_latin1RequestUTF8Response(self):
        """
        A Latin-1 request gets UTF-8 when Latin-1 cannot hold a value.
        """
        (response,) = self.find(
            STUDY_ROOT, "STUDY", "ISO_IR 100", StudyInstanceUID="3.1", PatientName=""
        )
        self.assertEqual(response.SpecificCharacterSet, "ISO_IR 192")
        self.assertEqual(roundTrip(response).PatientName, "Wang^Xiaodong=王^小东")


class EscapingTests(ArchiveMixin, SynchronousTestCase):
    """
    Characters special to SQL, LIKE and GLOB are ordinary in DICOM matching.
    """

    def test_literalMetacharacters(self):
        """
        C{%}, C{_}, C{[} and C{]} match themselves.
        """
        self.assertEqual(
            self.matches(STUDY_ROOT, "STUDY", "PatientName",
                         PatientName="O'Brien_[x]%^Pat"),
            ["O'Brien_[x]%^Pat"],
        )
        self.assertEqual(
            self.matches(STUDY_ROOT, "STUDY", "StudyInstanceUID",
                         AccessionNumber="A%_[1]*"),
            ["5.1"],
        )

    def test_noLikeWildcards(self):
        """
        C{%} and C{_} are not wildcards.
        """
        self.assertEqual(
            self.matches(PATIENT_ROOT, "PATIENT", "PatientID", PatientName="Doe_John"), []
        )
        self.assertEqual(
            self.matches(PATIENT_ROOT, "PATIENT", "PatientID", PatientName="%"), []
        )
        self.assertEqual(
            self.matches(PATIENT_ROOT, "PATIENT", "PatientID", PatientID="P%_5"), ["P%_5"]
        )

    def test_noGlobClasses(self):
        """
        C{[...]} is not a character class.
        """
        self.assertEqual(
            self.matches(PATIENT_ROOT, "PATIENT", "PatientID", PatientName="[D]oe*"), []
        )
        self.assertEqual(
            self.matches(PATIENT_ROOT, "PATIENT", "PatientID", PatientName="*[x]*"),
            ["P%_5"],
        )

    def test_quotes(self):
        """
        Quotes in a value are data, not SQL.
        """
        self.assertEqual(
            self.matches(PATIENT_ROOT, "PATIENT", "PatientID",
                         PatientName="x' OR '1'='1"),
            [],
        )


class CheckedQueryTests(ArchiveMixin, SynchronousTestCase):
    """
    C-FIND and retrieval with identifier checking (C{--check-find},
    C{--check-move}).
    """

    def test_findChecked(self):
        """
        A non-hierarchical C-FIND identifier is rejected when checked,
        answered otherwise.
        """
        request = identifier("STUDY", StudyInstanceUID="", Modality="")
        self.assertRaises(
            IdentifierError,
            self.index.find, AREA, STUDY_ROOT, request, checkIdentifier=True,
        )
        self.assertEqual(len(list(self.index.find(AREA, STUDY_ROOT, request))), 7)

    def test_retrieveChecked(self):
        """
        A non-hierarchical retrieval identifier is rejected when checked,
        answered otherwise.
        """
        request = identifier("STUDY", StudyInstanceUID="1.1", PatientID="P1")
        self.assertRaises(
            IdentifierError,
            self.index.instancesFor, AREA, STUDY_ROOT, request, checkIdentifier=True,
        )
        self.assertEqual(len(self.index.instancesFor(AREA, STUDY_ROOT, request)), 3)


class RetrieveTests(ArchiveMixin, SynchronousTestCase):
    """
    Tests for L{SQLiteArchiveIndex.instancesFor}: what a C-MOVE or C-GET
    sends.
    """

    def uids(self, model, level, **keys):
        return [
            instance.sopInstanceUID
            for instance in self.index.instancesFor(
                AREA, model, identifier(level, **keys)
            )
        ]

    def test_patient(self):
        """
        A patient retrieval sends all the patient's instances.
        """
        self.assertEqual(
            self.uids(PATIENT_ROOT, "PATIENT", PatientID="P1"),
            ["1.1.1.1", "1.1.1.2", "1.1.2.1", "1.2.1.1", "1.2.1.2"],
        )

    def test_studies(self):
        """
        A list of studies.
        """
        self.assertEqual(
            self.uids(STUDY_ROOT, "STUDY", StudyInstanceUID="1.2\\2.1"),
            ["1.2.1.1", "1.2.1.2", "2.1.1.1"],
        )

    def test_series(self):
        """
        One series.
        """
        self.assertEqual(
            self.uids(PATIENT_ROOT, "SERIES", PatientID="P1",
                      StudyInstanceUID="1.1", SeriesInstanceUID="1.1.2"),
            ["1.1.2.1"],
        )

    def test_image(self):
        """
        One instance, with what sending it needs.
        """
        (instance,) = self.index.instancesFor(
            AREA, STUDY_ROOT,
            identifier("IMAGE", StudyInstanceUID="1.2", SeriesInstanceUID="1.2.1",
                       SOPInstanceUID="1.2.1.2"),
        )
        self.assertEqual(
            instance,
            StoredInstance(MR, "1.2.1.2", EXPLICIT, "1.2.1.2.dcm", 1000, 1004.0),
        )

    def test_nothing(self):
        """
        An unknown UID designates nothing.
        """
        self.assertEqual(self.uids(STUDY_ROOT, "STUDY", StudyInstanceUID="9.9"), [])

    def test_otherArea(self):
        """
        Another storage area's instances are not this area's.
        """
        self.assertEqual(
            self.index.instancesFor(
                "OTHER", STUDY_ROOT, identifier("STUDY", StudyInstanceUID="1.1")
            ),
            [],
        )


class UpdateTests(ArchiveMixin, SynchronousTestCase):
    """
    Adding instances again, and removing them.
    """

    def counts(self):
        with self.index.connection() as db:
            return [
                db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ["patient", "study", "series", "instance"]
            ]

    def test_archiveCounts(self):
        """
        The archive has 6 patients, 7 studies, 8 series and 10 instances.
        """
        self.assertEqual(self.counts(), [6, 7, 8, 10])

    def test_sameFileAgain(self):
        """
        Adding an instance again with the same file changes nothing and
        replaces no file.
        """
        self.assertIsNone(
            self.index.addInstance(AREA, header("1.1.1", 1), stored("1.1.1.1", 2000.0))
        )
        self.assertEqual(self.counts(), [6, 7, 8, 10])

    def test_newFile(self):
        """
        Adding an instance again with another file replaces its row and
        returns the old file.
        """
        replaced = self.index.addInstance(
            AREA, header("1.1.1", 1), stored("1.1.1.1", 2000.0, 7, path="new.dcm")
        )
        self.assertEqual(replaced, "1.1.1.1.dcm")
        self.assertEqual(self.counts(), [6, 7, 8, 10])
        self.assertIn("new.dcm", self.index.storedPaths(AREA).values())
        self.assertEqual(self.index.studyUsage(AREA, "1.1").size, 2007)

    def test_addInstancesReplaced(self):
        """
        L{SQLiteArchiveIndex.addInstances} lists the replaced files.
        """
        replaced = self.index.addInstances(AREA, [
            (header("1.1.1", 1), stored("1.1.1.1", 2000.0, path="a.dcm")),
            (header("1.1.1", 3), stored("1.1.1.3", 2000.0)),
        ])
        self.assertEqual(replaced, ["1.1.1.1.dcm"])

    def test_attributesUpdated(self):
        """
        A later instance updates the attributes of its patient and study.
        """
        self.index.addInstance(
            AREA, header("1.1.1", 3, PatientName="Doe^Johnny", StudyDescription="CT"),
            stored("1.1.1.3", 2000.0),
        )
        self.assertEqual(
            self.matches(STUDY_ROOT, "STUDY", "PatientName", StudyInstanceUID="1.1"),
            ["Doe^Johnny"],
        )
        self.assertEqual(
            self.matches(STUDY_ROOT, "STUDY", "StudyDescription", StudyInstanceUID="1.1"),
            ["CT"],
        )

    def test_emptyDoesNotErase(self):
        """
        An empty value in a later instance keeps the known one.
        """
        self.index.addInstance(
            AREA, header("1.1.1", 3, PatientBirthDate="", StudyDate=""),
            stored("1.1.1.3", 2000.0),
        )
        self.assertEqual(
            self.matches(STUDY_ROOT, "STUDY", "StudyInstanceUID",
                         PatientBirthDate="19700101", StudyDate="20200115"),
            ["1.1"],
        )

    def test_studyMovesToOtherPatient(self):
        """
        A study whose instances now name another patient moves to it; the
        patient left without studies is removed.
        """
        self.index.addInstance(
            AREA, header("4.1.1", 1, PatientID="P1", PatientName="Doe^John"),
            stored("4.1.1.1", 2000.0),
        )
        self.assertEqual(self.counts(), [5, 7, 8, 10])
        self.assertEqual(
            self.matches(PATIENT_ROOT, "STUDY", "StudyInstanceUID", PatientID="P1"),
            ["1.1", "1.2", "4.1"],
        )

    def test_instanceMovesToOtherSeries(self):
        """
        An instance whose header names another series moves to it; the
        series, study and patient left empty are removed.
        """
        self.index.addInstance(
            AREA, header("1.1.1", 3, SOPInstanceUID="2.1.1.1"), stored("2.1.1.1", 2000.0)
        )
        self.assertEqual(self.counts(), [5, 6, 7, 10])

    def test_batchWritesRepeatedRowsOnce(self):
        """
        In one batch, the patient, study and series its instances repeat are
        written again only when an instance changes them: a value the first
        instance lacked is recorded.
        """
        self.index.addInstances(
            AREA,
            [
                (header("4.1.1", 2), stored("4.1.1.2", 2000.0)),
                (header("4.1.1", 3, AccessionNumber="ACC41"), stored("4.1.1.3", 2001.0)),
                (header("4.1.1", 4), stored("4.1.1.4", 2002.0)),
            ],
        )
        self.assertEqual(self.counts(), [6, 7, 8, 13])
        self.assertEqual(self.matches(STUDY_ROOT, "STUDY", "AccessionNumber", StudyInstanceUID="4.1"), ["ACC41"])

    def test_batchSameBytesInAnotherCharacterSet(self):
        """
        In one batch, an instance whose undecoded patient name has the
        bytes of the one before, in another character set, changes the
        patient's name: the batch tells rows apart by values and character
        set, not by bytes alone.
        """
        first = header("4.1.1", 2, SpecificCharacterSet="ISO_IR 100", PatientName="M\u00c3\u00bcller")
        second = header("4.1.1", 3, SpecificCharacterSet="ISO_IR 192", PatientName="M\u00fcller")
        self.assertEqual(undecoded(first).get_item(0x00100010).value, undecoded(second).get_item(0x00100010).value)
        self.index.addInstances(
            AREA,
            [(undecoded(first), stored("4.1.1.2", 2000.0)), (undecoded(second), stored("4.1.1.3", 2001.0))],
        )
        with self.index.connection() as db:
            names = [row[0] for row in db.execute("SELECT PatientName FROM patient WHERE PatientID = 'P4'")]
        self.assertEqual(names, ["M\u00fcller"])

    def test_batchStudyUpdatedWithItsNewest(self):
        """
        A batch records for each study the newest receipt time of its
        instances, whatever their order in the batch; an older one never
        moves a study's time back.
        """
        self.index.addInstances(
            AREA,
            [
                (header("4.1.1", 2), stored("4.1.1.2", 2005.0)),
                (header("4.1.1", 3), stored("4.1.1.3", 2010.0)),
                (header("4.1.1", 4), stored("4.1.1.4", 2003.0)),
                (header("6.1.1", 2), stored("6.1.1.2", 900.0)),
            ],
        )
        self.assertEqual(self.index.studyUsage(AREA, "4.1").lastUpdated, 2010.0)
        self.assertEqual(self.index.studyUsage(AREA, "6.1").lastUpdated, 1009.0)

    def test_batchStudiesUpdatedInOneStatement(self):
        """
        A batch of instances of several studies, as many senders give the
        index writer, records each study's newest receipt time in one
        statement, not one per study; a study whose time is newer already
        keeps it.
        """
        statements = self.statements()
        self.index.addInstances(
            AREA,
            [
                (header("4.1.1", 2), stored("4.1.1.2", 2005.0)),
                (header("5.1.1", 2), stored("5.1.1.2", 2006.0)),
                (header("6.1.1", 2), stored("6.1.1.2", 900.0)),
                (header("4.1.1", 3), stored("4.1.1.3", 2004.0)),
            ],
        )
        touches = [
            statement
            for statement in statements
            if statement.startswith("UPDATE") and _table(statement) == "study" and "SET lastUpdated" in statement
        ]
        self.assertEqual(len(touches), 1)
        updated = {uid: self.index.studyUsage(AREA, uid).lastUpdated for uid in ("4.1", "5.1", "6.1")}
        self.assertEqual(updated, {"4.1": 2005.0, "5.1": 2006.0, "6.1": 1009.0})

    def test_batchRowPrunedThenNeededAgain(self):
        """
        When an instance of a batch leaves a series, study and patient
        empty, and they are pruned, a later instance of the same batch that
        belongs to them makes them again.
        """
        self.index.addInstances(
            AREA,
            [
                (header("2.1.1", 1), stored("2.1.1.1", 2000.0)),
                (header("1.1.1", 3, SOPInstanceUID="2.1.1.1"), stored("2.1.1.1", 2001.0)),
                (header("2.1.1", 2), stored("2.1.1.2", 2002.0)),
            ],
        )
        self.assertEqual(self.counts(), [6, 7, 8, 11])
        self.assertEqual(
            self.matches(STUDY_ROOT, "IMAGE", "SOPInstanceUID", StudyInstanceUID="2.1", SeriesInstanceUID="2.1.1"),
            ["2.1.1.2"],
        )

    def test_batchInstancesSwapSeries(self):
        """
        When two instances received again in one batch swap series, the
        first leaves its former series empty, which is pruned; the second,
        which moves into it, makes it again.
        """
        self.index.addInstances(
            AREA,
            [
                (header("3.1.1", 9, SOPInstanceUID="2.1.1.1"), stored("2.1.1.1", 2000.0)),
                (header("2.1.1", 9, SOPInstanceUID="3.1.1.1"), stored("3.1.1.1", 2001.0)),
            ],
        )
        self.assertEqual(
            self.matches(STUDY_ROOT, "IMAGE", "SOPInstanceUID", StudyInstanceUID="3.1", SeriesInstanceUID="3.1.1"),
            ["2.1.1.1"],
        )
        self.assertEqual(
            self.matches(STUDY_ROOT, "IMAGE", "SOPInstanceUID", StudyInstanceUID="2.1", SeriesInstanceUID="2.1.1"),
            ["3.1.1.1"],
        )

    def test_batchNewAndKnownInstances(self):
        """
        A batch of new instances, one already indexed and one twice: the
        new ones get rows, the known one and the second of the pair
        replace theirs, and the files they replaced are returned in order.
        """
        replaced = self.index.addInstances(
            AREA,
            [
                (header("4.1.1", 2), stored("4.1.1.2", 2000.0, path="first.dcm")),
                (header("1.1.1", 1), stored("1.1.1.1", 2001.0, path="again.dcm")),
                (header("4.1.1", 3), stored("4.1.1.3", 2002.0)),
                (header("4.1.1", 2), stored("4.1.1.2", 2003.0, path="second.dcm")),
            ],
        )
        self.assertEqual(replaced, ["1.1.1.1.dcm", "first.dcm"])
        self.assertEqual(self.counts(), [6, 7, 8, 12])
        paths = self.index.storedPaths(AREA)
        self.assertEqual(paths["4.1.1.2"], "second.dcm")
        self.assertEqual(paths["1.1.1.1"], "again.dcm")

    def test_batchLargerThanOneStatement(self):
        """
        A batch of more new instances than one statement inserts
        (C{_ROWS_PER_INSERT}) indexes them all.
        """
        count = _ROWS_PER_INSERT + 3
        self.index.addInstances(
            AREA, [(header("4.1.1", n), stored(f"4.1.1.{n}", 2000.0 + n)) for n in range(2, 2 + count)]
        )
        self.assertEqual(self.counts(), [6, 7, 8, 10 + count])

    def statements(self):
        """
        Record the SQL each transaction of the index runs.

        @return: the list the statements are appended to.
        """
        statements = []
        transaction = self.index.transaction

        @contextlib.contextmanager
        def recording():
            with transaction() as db:
                yield _Recording(db, statements)

        self.patch(self.index, "transaction", recording)
        return statements

    def test_rowsRememberedBetweenBatches(self):
        """
        Where the index remembers rows between batches (SQLite), a batch
        whose instances' patient, study and series the batch before wrote
        with the same values writes none of them again: only the
        instances, and the study's receipt time.  Where it does not, it
        reads each again.
        """
        self.index.addInstances(AREA, [(header("4.1.1", 2), stored("4.1.1.2", 2000.0))])
        statements = self.statements()
        self.index.addInstances(AREA, [(header("4.1.1", 3), stored("4.1.1.3", 2001.0))])
        touched = sorted({statement.split()[0] + " " + _table(statement) for statement in statements})
        if self.index.remembersRows:
            self.assertEqual(touched, ["INSERT instance", "UPDATE study"])
        else:
            self.assertIn("SELECT series", touched)
        self.assertEqual(self.counts(), [6, 7, 8, 12])

    def test_rememberedRowDeletedElsewhere(self):
        """
        A series the index remembers, deleted by another connection (a
        C{dicomd reindex}, say), is written again by the next batch of its
        instances.
        """
        self.index.addInstances(AREA, [(header("4.1.1", 2), stored("4.1.1.2", 2000.0))])
        with self.index.transaction() as db:
            db.execute("DELETE FROM series WHERE SeriesInstanceUID = '4.1.1'")
        self.index.addInstances(AREA, [(header("4.1.1", 3), stored("4.1.1.3", 2001.0))])
        self.assertEqual(
            self.matches(STUDY_ROOT, "IMAGE", "SOPInstanceUID", StudyInstanceUID="4.1", SeriesInstanceUID="4.1.1"),
            ["4.1.1.3"],
        )

    def test_rememberedRowPrunedByRemoval(self):
        """
        A removal that empties a series, study and patient the index
        remembers makes the next batch of the series write them again.
        """
        self.index.addInstances(AREA, [(header("6.1.1", 2), stored("6.1.1.2", 2000.0))])
        self.index.removeInstance(AREA, "6.1.1.1")
        self.index.removeInstance(AREA, "6.1.1.2")
        self.index.addInstances(AREA, [(header("6.1.1", 3), stored("6.1.1.3", 2001.0))])
        self.assertEqual(
            self.matches(STUDY_ROOT, "IMAGE", "SOPInstanceUID", StudyInstanceUID="6.1", SeriesInstanceUID="6.1.1"),
            ["6.1.1.3"],
        )

    def test_removeInstance(self):
        """
        Removing an instance returns its file and keeps its non-empty
        series.
        """
        self.assertEqual(self.index.removeInstance(AREA, "1.1.1.2"), "1.1.1.2.dcm")
        self.assertEqual(self.counts(), [6, 7, 8, 9])

    def test_removeLastInstance(self):
        """
        Removing the last instance of a patient removes its series, study
        and patient.
        """
        self.index.removeInstance(AREA, "2.1.1.1")
        self.assertEqual(self.counts(), [5, 6, 7, 9])

    def test_removeUnknownInstance(self):
        """
        Removing an instance that is not indexed returns C{None}.
        """
        self.assertIsNone(self.index.removeInstance(AREA, "9.9"))
        self.assertIsNone(self.index.removeInstance("OTHER", "1.1.1.1"))

    def test_removeStudy(self):
        """
        Removing a study returns its files, in the order they were indexed,
        and keeps the patient's other study.
        """
        self.assertEqual(
            self.index.removeStudy(AREA, "1.1"),
            ["1.1.1.1.dcm", "1.1.1.2.dcm", "1.1.2.1.dcm"],
        )
        self.assertEqual(self.counts(), [6, 6, 6, 7])

    def test_removeLastStudy(self):
        """
        Removing a patient's last study removes the patient.
        """
        self.index.removeStudy(AREA, "1.1")
        self.index.removeStudy(AREA, "1.2")
        self.assertEqual(self.counts(), [5, 5, 5, 5])

    def test_removeUnknownStudy(self):
        """
        Removing a study that is not indexed returns no files.
        """
        self.assertEqual(self.index.removeStudy(AREA, "9.9"), [])

    def test_areasApart(self):
        """
        The same instance in two areas is two rows; each area sees its own.
        """
        self.index.addInstance("OTHER", header("1.1.1", 1), stored("1.1.1.1", 1.0))
        self.assertEqual(self.index.studyCount("OTHER"), 1)
        self.assertEqual(self.index.studyCount(AREA), 7)
        self.index.removeStudy("OTHER", "1.1")
        self.assertEqual(self.counts(), [6, 7, 8, 10])

    def test_noSOPInstanceUID(self):
        """
        An instance without SOP Instance UID is refused, and the
        transaction rolled back.
        """
        dataset = header("1.1.1", 1, PatientID="P9")
        del dataset.SOPInstanceUID
        self.assertRaises(
            ValueError, self.index.addInstance, AREA, dataset, stored("x", 1.0)
        )
        self.assertEqual(self.counts(), [6, 7, 8, 10])


class QuotaTests(ArchiveMixin, SynchronousTestCase):
    """
    The helpers of dcmqrscp's quotas: study count, size per study, least
    recently updated study first.
    """

    def test_studyCount(self):
        """
        The number of studies of an area.
        """
        self.assertEqual(self.index.studyCount(AREA), 7)
        self.assertEqual(self.index.studyCount("OTHER"), 0)

    def test_studyUsage(self):
        """
        Instances and bytes of one study, and when it was last updated.
        """
        self.assertEqual(
            self.index.studyUsage(AREA, "1.1"), StudySummary("1.1", 1002.0, 3, 3000)
        )
        self.assertIsNone(self.index.studyUsage(AREA, "9.9"))

    def test_lastUpdatedOrder(self):
        """
        Studies are listed least recently updated first.
        """
        self.assertEqual(
            [s.studyInstanceUID for s in self.index.studiesByLastUpdate(AREA)],
            ["1.1", "1.2", "2.1", "3.1", "4.1", "5.1", "6.1"],
        )

    def test_updateMovesStudyBack(self):
        """
        Receiving an instance makes its study the most recently updated.
        """
        self.index.addInstance(AREA, header("1.1.2", 2), stored("1.1.2.2", 5000.0, 10))
        summaries = self.index.studiesByLastUpdate(AREA)
        self.assertEqual(summaries[-1], StudySummary("1.1", 5000.0, 4, 3010))
        self.assertEqual(summaries[0].studyInstanceUID, "1.2")

    def test_olderReceptionKeepsLastUpdate(self):
        """
        An instance received with an older time does not make its study
        older.
        """
        self.index.addInstance(AREA, header("6.1.1", 2), stored("6.1.1.2", 1.0))
        self.assertEqual(self.index.studyUsage(AREA, "6.1").lastUpdated, 1009.0)

    def test_limit(self):
        """
        The list can stop at the oldest studies.
        """
        self.assertEqual(
            [s.studyInstanceUID for s in self.index.studiesByLastUpdate(AREA, limit=2)],
            ["1.1", "1.2"],
        )

    def test_instancesOfStudy(self):
        """
        A study's instances, oldest reception first, for trimming a study to
        its byte quota.
        """
        self.index.addInstance(AREA, header("1.1.1", 1), stored("1.1.1.1", 3000.0))
        self.assertEqual(
            [i.sopInstanceUID for i in self.index.instancesOfStudy(AREA, "1.1")],
            ["1.1.1.2", "1.1.2.1", "1.1.1.1"],
        )


def writeFile(path, dataset, sourceAETitle=None):
    """
    Write a dataset as a DICOM file, with its file meta information.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = EXPLICIT
    if sourceAETitle:
        meta.SourceApplicationEntityTitle = sourceAETitle
    dataset.file_meta = meta
    os.makedirs(os.path.dirname(path), exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)


class ReindexTests(SQLiteEngine, SynchronousTestCase):
    """
    Tests for L{reindex}.
    """

    def setUp(self):
        self.directory = self.mktemp()
        self.index = self.makeIndex()
        self.addCleanup(self.index.close)
        for seriesUID in ["1.1.1", "2.1.1"]:
            for number in (1, 2):
                dataset = header(seriesUID, number)
                writeFile(
                    os.path.join(self.directory, seriesUID[0], f"{number}.{seriesUID}.dcm"),
                    dataset,
                    sourceAETitle="MODALITY",
                )
        with open(os.path.join(self.directory, "README"), "w") as f:
            f.write("not DICOM\n")
        writeFile(os.path.join(self.directory, ".partial"), header("3.1.1", 1))

    def test_indexes(self):
        """
        Every DICOM file is indexed with its facts; other files are skipped,
        dot-files are not even read.
        """
        report = reindex(self.index, AREA, self.directory)
        self.assertEqual(report, ReindexReport(4, 0, ("README",)))
        self.assertEqual(
            self.index.storedPaths(AREA),
            {
                "1.1.1.1": os.path.join("1", "1.1.1.1.dcm"),
                "1.1.1.2": os.path.join("1", "2.1.1.1.dcm"),
                "2.1.1.1": os.path.join("2", "1.2.1.1.dcm"),
                "2.1.1.2": os.path.join("2", "2.2.1.1.dcm"),
            },
        )
        (instance, _) = self.index.instancesOfStudy(AREA, "2.1")
        fullPath = os.path.join(self.directory, instance.path)
        self.assertEqual(instance.size, os.path.getsize(fullPath))
        self.assertEqual(instance.received, os.path.getmtime(fullPath))
        self.assertEqual(instance.transferSyntaxUID, EXPLICIT)
        with self.index.connection() as db:
            (ae,) = db.execute("SELECT DISTINCT callingAETitle FROM instance").fetchone()
        self.assertEqual(ae, "MODALITY")

    def test_queryable(self):
        """
        Reindexed headers are matched like received ones, decoded with their
        character set.
        """
        reindex(self.index, AREA, self.directory)
        responses = self.index.find(
            AREA, STUDY_ROOT, identifier("STUDY", PatientName="Müller*", StudyDate="")
        )
        self.assertEqual([r.dataset().StudyDate for r in responses], ["20201231"])

    def test_dropsGoneFiles(self):
        """
        Rows whose file is gone are dropped, with their empty parents.
        """
        reindex(self.index, AREA, self.directory)
        os.remove(os.path.join(self.directory, "2", "1.2.1.1.dcm"))
        os.remove(os.path.join(self.directory, "2", "2.2.1.1.dcm"))
        report = reindex(self.index, AREA, self.directory)
        self.assertEqual(report, ReindexReport(2, 2, ("README",)))
        self.assertEqual(self.index.studyCount(AREA), 1)

    def test_idempotent(self):
        """
        Reindexing twice gives the same rows.
        """
        reindex(self.index, AREA, self.directory)
        before = self.index.storedPaths(AREA)
        reindex(self.index, AREA, self.directory, batchSize=1)
        self.assertEqual(self.index.storedPaths(AREA), before)

    def test_uidsFromFileMeta(self):
        """
        A data set without SOP Instance and Class UIDs takes those of its
        file meta information.
        """
        dataset = header("3.1.1", 1)
        writeFile(os.path.join(self.directory, "3", "bare.dcm"), dataset)
        del dataset.SOPInstanceUID, dataset.SOPClassUID
        dataset.save_as(
            os.path.join(self.directory, "3", "bare.dcm"), enforce_file_format=True
        )
        reindex(self.index, AREA, self.directory)
        (instance,) = self.index.instancesOfStudy(AREA, "3.1")
        self.assertEqual((instance.sopInstanceUID, instance.sopClassUID), ("3.1.1.1", CT))

    def test_otherAreaUntouched(self):
        """
        Reindexing an area leaves the others alone.
        """
        self.index.addInstance("OTHER", header("4.1.1", 1), stored("4.1.1.1", 1.0))
        reindex(self.index, AREA, self.directory)
        self.assertEqual(self.index.studyCount("OTHER"), 1)


class ImmediateReactor:
    """
    Delivers results from the thread pool at once.
    """

    def callFromThread(self, function, *args, **kwargs):
        function(*args, **kwargs)


class ImmediateThreadPool:
    """
    Runs each call at once, in the calling thread.
    """

    def callInThreadWithCallback(self, onResult, function, *args, **kwargs):
        callWithCallback(onResult, function, *args, **kwargs)


class AdoptAreaTests(SQLiteEngine, SynchronousTestCase):
    """
    Tests for L{IArchiveIndex.adoptArea} and
    L{dicomd.archive.area.adoptTitleArea}: an index that named areas by AE
    title, as dicomd did before, brought under the areas' directories.
    """

    setUp = ReindexTests.setUp

    def paths(self, area):
        return sorted(self.index.storedPaths(area))

    def test_titleRowsMoved(self):
        """
        The rows of the first AE title over a directory become the
        directory's; asked again, nothing is left to adopt.
        """
        from dicomd.archive.area import adoptTitleArea

        reindex(self.index, AREA, self.directory)
        adoptTitleArea(self.index, AREA, self.directory)
        self.assertEqual(self.paths(AREA), [])
        self.assertEqual(self.paths(areaKey(self.directory)), ["1.1.1.1", "1.1.1.2", "2.1.1.1", "2.1.1.2"])
        self.assertIsNone(self.index.adoptArea(AREA, areaKey(self.directory)))

    def test_secondTitleRowsDroppedAndFilesIndexed(self):
        """
        The rows of a second AE title over the same directory are dropped,
        and the files that only they described are indexed for the
        directory: nothing is lost, nothing is left under a title.
        """
        from dicomd.archive.area import adoptTitleArea

        reindex(self.index, "FIRST", self.directory)
        reindex(self.index, "SECOND", self.directory)
        for uid in ("2.1.1.1", "2.1.1.2"):
            self.index.removeInstance("FIRST", uid)
        for uid in ("1.1.1.1", "1.1.1.2"):
            self.index.removeInstance("SECOND", uid)
        self.assertEqual(self.index.adoptArea("FIRST", areaKey(self.directory)), ROWS_MOVED)
        self.assertEqual(self.paths(areaKey(self.directory)), ["1.1.1.1", "1.1.1.2"])
        adoptTitleArea(self.index, "SECOND", self.directory)
        self.assertEqual(self.paths("SECOND"), [])
        self.assertEqual(self.paths(areaKey(self.directory)), ["1.1.1.1", "1.1.1.2", "2.1.1.1", "2.1.1.2"])
        self.assertEqual(self.index.studyCount(areaKey(self.directory)), 2)

    def test_areaKeyIsTheRealPath(self):
        """
        A relative path, a trailing slash and a symbolic link name one
        area.
        """
        link = os.path.abspath(self.mktemp())
        os.symlink(os.path.abspath(self.directory), link)
        self.assertEqual(
            {areaKey(self.directory), areaKey(os.path.abspath(self.directory) + os.sep), areaKey(link)},
            {os.path.realpath(self.directory)},
        )


class AsyncArchiveIndexTests(SQLiteEngine, SynchronousTestCase):
    """
    Tests for L{AsyncArchiveIndex}.
    """

    def setUp(self):
        self.directory = self.mktemp()
        index = self.makeIndex()
        self.index = AsyncArchiveIndex(index, ImmediateReactor(), ImmediateThreadPool())
        self.addCleanup(index.close)
        self.successResultOf(self.index.addInstances(AREA, archiveItems()))

    def test_results(self):
        """
        Each method fires its Deferred with the blocking method's result.
        """
        self.assertEqual(self.successResultOf(self.index.studyCount(AREA)), 7)
        self.assertEqual(
            self.successResultOf(self.index.studyUsage(AREA, "2.1")),
            StudySummary("2.1", 1005.0, 1, 1000),
        )
        self.assertEqual(
            len(self.successResultOf(self.index.studiesByLastUpdate(AREA, 3))), 3
        )
        self.assertEqual(
            len(self.successResultOf(self.index.instancesOfStudy(AREA, "1.1"))), 3
        )
        self.assertEqual(len(self.successResultOf(self.index.storedPaths(AREA))), 10)
        self.assertEqual(
            len(self.successResultOf(self.index.instancesFor(
                AREA, STUDY_ROOT, identifier("STUDY", StudyInstanceUID="1.2")))),
            2,
        )

    def test_updates(self):
        """
        Adding and removing go through the thread pool too.
        """
        self.assertEqual(
            self.successResultOf(self.index.addInstance(
                AREA, header("1.1.1", 1), stored("1.1.1.1", 1.0, path="b.dcm"))),
            "1.1.1.1.dcm",
        )
        self.assertEqual(
            self.successResultOf(self.index.removeInstance(AREA, "1.1.1.1")), "b.dcm"
        )
        self.assertEqual(
            self.successResultOf(self.index.removeStudy(AREA, "2.1")), ["2.1.1.1.dcm"]
        )

    def test_queriesInTheirOwnPool(self):
        """
        With a query pool, C-FIND (its batches too) and the instance lists
        of retrievals run there; updates stay in the main pool.
        """
        class CountingPool(ImmediateThreadPool):
            calls = 0

            def callInThreadWithCallback(self, onResult, function, *args, **kwargs):
                self.calls += 1
                ImmediateThreadPool.callInThreadWithCallback(self, onResult, function, *args, **kwargs)

        main, queries = CountingPool(), CountingPool()
        index = AsyncArchiveIndex(self.index._index, ImmediateReactor(), main, queryThreadpool=queries)
        responses = self.successResultOf(index.find(AREA, STUDY_ROOT, identifier("STUDY", StudyInstanceUID="")))
        self.successResultOf(responses.next(3))
        self.successResultOf(index.instancesFor(AREA, STUDY_ROOT, identifier("STUDY", StudyInstanceUID="1.2")))
        self.assertEqual((main.calls, queries.calls), (0, 3))
        self.successResultOf(index.removeStudy(AREA, "2.1"))
        self.assertEqual((main.calls, queries.calls), (1, 3))

    def test_findInBatches(self):
        """
        C-FIND responses come in batches until an empty one.
        """
        responses = self.successResultOf(
            self.index.find(AREA, STUDY_ROOT, identifier("STUDY", StudyInstanceUID=""))
        )
        self.assertIsInstance(responses, PendingResponses)
        batches = [self.successResultOf(responses.next(3)) for _ in range(4)]
        self.assertEqual([len(batch) for batch in batches], [3, 3, 1, 0])
        self.assertEqual(batches[2][0].dataset().StudyInstanceUID, "6.1")

    def test_findClosed(self):
        """
        Closing the responses early releases the connection.
        """
        responses = self.successResultOf(
            self.index.find(AREA, STUDY_ROOT, identifier("STUDY", StudyInstanceUID=""))
        )
        self.successResultOf(responses.next(1))
        self.assertIsNone(self.successResultOf(responses.close()))
        self.assertEqual(self.successResultOf(responses.next(1)), [])

    def test_findError(self):
        """
        An identifier that cannot be matched fails the Deferred.
        """
        failure = self.failureResultOf(
            self.index.find(AREA, STUDY_ROOT, identifier("PATIENT")), QueryError
        )
        self.assertEqual(failure.value.status, UNABLE_TO_PROCESS)

    def test_reindex(self):
        """
        Reindexing runs in the thread pool.
        """
        writeFile(os.path.join(self.directory, "a.dcm"), header("1.1.1", 1))
        report = self.successResultOf(self.index.reindex("OTHER", self.directory))
        self.assertEqual(report, ReindexReport(1, 0, ()))

    def test_close(self):
        """
        Closing closes the index: using it fails as a broken database does.
        """
        self.successResultOf(self.index.close())
        self.failureResultOf(self.index.studyCount(AREA), *DATABASE_ERRORS)


class ThreadTests(SQLiteEngine, SynchronousTestCase):
    """
    The index used from several threads at once, as Twisted's thread pool
    uses it.
    """

    def test_concurrentWritersAndReaders(self):
        """
        Threads adding instances while others query lose nothing.
        """
        index = self.makeIndex()
        self.addCleanup(index.close)
        errors = []

        def write(worker):
            try:
                for number in range(1, 21):
                    index.addInstance(
                        AREA,
                        header("1.1.1", number, SOPInstanceUID=f"9.{worker}.{number}",
                               SeriesInstanceUID=f"9.{worker}",
                               StudyInstanceUID=f"9.{worker}.0"),
                        stored(f"9.{worker}.{number}", float(number)),
                    )
            except Exception as e:
                errors.append(e)

        def read():
            try:
                for _ in range(20):
                    list(index.find(AREA, STUDY_ROOT,
                                    identifier("STUDY", StudyInstanceUID="")))
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        threads += [threading.Thread(target=read) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(index.storedPaths(AREA)), 80)
        self.assertEqual(index.studyCount(AREA), 4)


# The same tests on PostgreSQL: every behaviour of the index is the same
# whichever database keeps it.


class PatientRootPatientLevelPostgreSQLTests(PostgreSQLEngine, PatientRootPatientLevelTests):
    pass


class PatientRootStudyLevelPostgreSQLTests(PostgreSQLEngine, PatientRootStudyLevelTests):
    pass


class PatientRootSeriesLevelPostgreSQLTests(PostgreSQLEngine, PatientRootSeriesLevelTests):
    pass


class PatientRootImageLevelPostgreSQLTests(PostgreSQLEngine, PatientRootImageLevelTests):
    pass


class StudyRootPostgreSQLTests(PostgreSQLEngine, StudyRootTests):
    pass


class PatientStudyOnlyPostgreSQLTests(PostgreSQLEngine, PatientStudyOnlyTests):
    pass


class ReturnKeyPostgreSQLTests(PostgreSQLEngine, ReturnKeyTests):
    pass


class EscapingPostgreSQLTests(PostgreSQLEngine, EscapingTests):
    pass


class CheckedQueryPostgreSQLTests(PostgreSQLEngine, CheckedQueryTests):
    pass


class RetrievePostgreSQLTests(PostgreSQLEngine, RetrieveTests):
    pass


class UpdatePostgreSQLTests(PostgreSQLEngine, UpdateTests):
    pass


class QuotaPostgreSQLTests(PostgreSQLEngine, QuotaTests):
    pass


class ReindexPostgreSQLTests(PostgreSQLEngine, ReindexTests):
    pass


class AdoptAreaPostgreSQLTests(PostgreSQLEngine, AdoptAreaTests):
    pass


class AsyncArchiveIndexPostgreSQLTests(PostgreSQLEngine, AsyncArchiveIndexTests):
    pass


class ThreadPostgreSQLTests(PostgreSQLEngine, ThreadTests):
    pass
