"""
The archive's index: which instances each storage area holds, where their
files are, and the attributes C-FIND matches on (the job of dcmqrscp's
C{index.dat}, C{dcmqrdb/libsrc/dcmqrdbi.cc}).

This module, L{dicomd.archive.sql}, which compiles the conditions of a
query into SQL, and L{dicomd.archive.queue}, the forwarding queue kept in
the same database, are all of the project that speaks SQL.  Services use the
L{IArchiveIndex} interface, blocking, from a thread, or through
L{dicomd.archive.asyncindex.AsyncArchiveIndex}, whose methods return
Deferreds.  L{SQLArchiveIndex} holds the statements every SQL database
runs alike; L{SQLiteArchiveIndex} is the embedded default, and
L{dicomd.archive.postgresql.PostgreSQLArchiveIndex} the one several
daemons share (L{dicomd.archive.databases} chooses by the configured
name).  Rebuilding an area's rows from its files is
L{dicomd.archive.reindexing}'s job.

The schema (L{SCHEMA}) keeps one table per Query/Retrieve level, each row
belonging to one storage area, named by its directory (L{areaKey}), so
that every AE title over one directory sees the same rows, as every AE of
dcmqrscp over one directory shares its C{index.dat}: C{patient} (unique by PatientID), C{study}, C{series} and C{instance}
(unique by their UIDs), children referring to their parent.  Columns are
named by the keywords of L{dicomd.archive.matching.KEYS}; DA and TM keys
have a second column, C{<keyword>Sortable}, holding the
L{sortable<dicomd.archive.matching.sortableValue>} form that range
matching compares.  An instance row also keeps its SOP Class UID, the
Specific Character Set and transfer syntax it was stored with, its file's
path relative to its storage area and size, when it was received and from
which AE title; a study row keeps when it was last updated, which orders
quota eviction.

Adding an instance again (same SOP Instance UID in the same area) replaces
its row.  Patient, study and series attributes are taken from each
instance added; an empty value does not erase a known one.  An instance
whose study or series now belongs elsewhere moves its parent there, and a
patient, study or series left without children is removed.
"""

import contextlib
import enum
import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import List, NamedTuple, Sequence, Tuple

from zope.interface import Interface, implementer

from dicomd.archive import queue, sql
from dicomd.archive.matching import (
    Level,
    checkFindIdentifier,
    checkRetrieveIdentifier,
    parseIdentifier,
    uniqueKey,
)
from dicomd.storage import FILE_MODE


@dataclass(frozen=True)
class StoredFile:
    """
    What the index needs to know about an instance's file that its header
    does not say.

    @ivar path: the file's path relative to its storage area.
    @ivar size: its size in bytes.
    @ivar transferSyntaxUID: the transfer syntax it is stored in.
    @ivar received: when it was received, in seconds since the epoch.
    @ivar callingAETitle: the AE title that sent it, or C{""}.
    """

    path: str
    size: int
    transferSyntaxUID: str
    received: float
    callingAETitle: str = ""


@dataclass(frozen=True)
class StoredInstance:
    """
    An indexed instance, as retrieval and quotas need it.

    @ivar sopClassUID: its SOP Class UID.
    @ivar sopInstanceUID: its SOP Instance UID.
    @ivar transferSyntaxUID: the transfer syntax of its file.
    @ivar path: its file, relative to its storage area.
    @ivar size: the file's size in bytes.
    @ivar received: when it was received, in seconds since the epoch.
    """

    sopClassUID: str
    sopInstanceUID: str
    transferSyntaxUID: str
    path: str
    size: int
    received: float


@dataclass(frozen=True)
class StudySummary:
    """
    How much of a storage area one study uses.

    @ivar studyInstanceUID: the study.
    @ivar lastUpdated: when an instance of it was last received, in seconds
        since the epoch.
    @ivar instances: how many instances it has.
    @ivar size: the size of their files, in bytes.
    """

    studyInstanceUID: str
    lastUpdated: float
    instances: int
    size: int


class IndexDatabaseError(Exception):
    """
    The database of an index other than SQLite failed: it cannot be
    reached, or refused a statement, or its schema is not one this version
    knows.  Such indexes raise it in place of their driver's errors.
    """


#: What a failing index raises, whichever its database: a C-STORE is then
#: refused with 0xA700, a C-FIND with 0xC001, and the daemon stops at start.
DATABASE_ERRORS = (sqlite3.Error, IndexDatabaseError)


class IndexBusy(sqlite3.OperationalError):
    """
    A transaction begun without waiting (L{SQLiteArchiveIndex.withoutWaiting})
    found another writer of this process at work.
    """


#: The pages of write-ahead log after which SQLite copies the log into
#: the database at a commit (its default).
WAL_AUTOCHECKPOINT = 1000


#: How the previous run of a daemon on an index ended (L{IArchiveIndex.beginRun}).
RUN_ENDED = "ended"
RUN_CRASHED = "crashed"
#: Another daemon sharing the index recovered the run, which had not ended
#: (L{dicomd.archive.postgresql.PostgreSQLArchiveIndex.takeOverRun}).
RUN_TAKEN_OVER = "taken over"


class StudyEnd(enum.Enum):
    """
    What L{PostgreSQLArchiveIndex.claimStudyEnd
    <dicomd.archive.postgresql.PostgreSQLArchiveIndex.claimStudyEnd>}
    found, when it is not a time to wait for.
    """

    #: This daemon ends the study: the claim is recorded.
    CLAIMED = "claimed"
    #: Another daemon ended it after its last object.
    ENDED_ELSEWHERE = "ended elsewhere"


#: What L{IArchiveIndex.adoptArea} did with the rows of the former name.
ROWS_MOVED = "moved"
ROWS_DROPPED = "dropped"


def areaKey(directory):
    """
    The name of a storage area in the index: the real, absolute path of
    its directory, the same whichever AE title, relative path or symbolic
    link leads to it.
    """
    return os.path.realpath(directory)


@dataclass(frozen=True)
class ReindexReport:
    """
    What L{dicomd.archive.reindexing.reindex} did.

    @ivar indexed: how many files it indexed.
    @ivar removed: how many rows it dropped because their file is gone.
    @ivar skipped: the paths (relative to the storage area) of the files it
        could not read as DICOM.
    """

    indexed: int
    removed: int
    skipped: tuple


class IArchiveIndex(Interface):
    """
    The index of the instances kept in storage areas.  Every method blocks;
    call them from a thread (see L{dicomd.archive.asyncindex.AsyncArchiveIndex}).  C{area} is a
    storage area's L{areaKey}.
    """

    def addInstance(area, header, stored, forwardings=()):
        """
        Index an instance, replacing the row of an instance with the same
        SOP Instance UID in that area.

        @param header: a pydicom C{Dataset} with (at least) the attributes
            of L{dicomd.archive.matching.KEYS} and Specific Character Set.
        @param stored: the L{StoredFile}.
        @param forwardings: the L{dicomd.archive.queue.Forwarding}s to
            queue it for, in the same transaction.
        @return: the path of the file the instance had before when it was
            indexed already with another file, which the caller deletes;
            otherwise C{None}.
        """

    def addInstances(area, items):
        """
        Index many instances in one transaction.

        @param items: an iterable of (header, L{StoredFile}) pairs, or of
            (header, L{StoredFile}, forwardings) triples that also queue
            each instance, as L{addInstance} does; a header is a pydicom
            data set, a L{dicomd.storage.part10.HeadScan}, or keys read
            already (L{dicomd.archive.sql.HeaderKeys}).
        @return: the list of replaced paths, as L{addInstance} returns them.
        """

    def removeInstance(area, sopInstanceUID):
        """
        Forget an instance (and its series, study and patient when it was
        their last).

        @return: the path of its file, or C{None} if it was not indexed.
        """

    def movePath(area, oldPath, newPath):
        """
        Record that an indexed file was renamed (C{--rename-on-eostudy}).

        @param oldPath: its old path, relative to the storage area.
        @param newPath: its new path, relative to the storage area.
        @return: whether a row had C{oldPath}.
        """

    def removeStudy(area, studyInstanceUID):
        """
        Forget a study with its series and instances (and its patient when
        it was the last study).

        @return: the paths of its files, for the caller to delete.
        """

    def quotaTurn(area):
        """
        A context manager within which the caller alone, of the daemons
        sharing the index, adds to C{area} and deletes what its quota no
        longer allows.  Two that counted the area's studies at once would
        each delete an "oldest" study, one too many, or both the same one;
        and a study chosen as the oldest could be updated by another
        before it is deleted.
        """

    def studyCount(area):
        """
        @return: how many studies the area holds.
        """

    def studyUsage(area, studyInstanceUID):
        """
        @return: the L{StudySummary} of a study, or C{None} if the area has
            no such study.
        """

    def studiesByLastUpdate(area, limit=None, evictable=False):
        """
        @param limit: how many studies to list at most, or C{None}.
        @param evictable: leave out the studies the forwarding queue still
            holds an instance of.
        @return: the L{StudySummary} of the area's studies, least recently
            updated first (the order of quota eviction).
        """

    def instancesOfStudy(area, studyInstanceUID, evictable=False):
        """
        @param evictable: leave out the instances the forwarding queue
            holds.
        @return: the L{StoredInstance}s of a study, oldest reception first.
        """

    def removeUnqueued(area, sopInstanceUIDs):
        """
        Forget those of the instances that the forwarding queue does not
        hold (router mode, once they are forwarded), in one transaction.

        @return: the paths of their files, for the caller to delete.
        """

    def storedPaths(area):
        """
        @return: a C{dict} of every indexed file of the area: SOP Instance
            UID to path.
        """

    def find(area, model, identifier, checkIdentifier=False):
        """
        Answer a C-FIND.

        @param model: the L{dicomd.archive.matching.InformationModel}.
        @param identifier: the request identifier, a pydicom C{Dataset}.
        @param checkIdentifier: apply the strict rules of
            L{dicomd.archive.matching.checkFindIdentifier} first.
        @return: an iterator of response identifiers, one per match, in the
            order the entities were first indexed; it reads the database as
            it goes, so it must be exhausted or closed, and it may not be
            advanced by two threads at once.
        @raise dicomd.archive.matching.QueryError: at once, when the
            identifier cannot be matched.
        """

    def instancesFor(area, model, identifier, checkIdentifier=False):
        """
        The instances a C-MOVE or C-GET identifier designates.

        @param checkIdentifier: apply the strict rules of
            L{dicomd.archive.matching.checkRetrieveIdentifier} first.
        @return: a list of L{StoredInstance}s.
        @raise dicomd.archive.matching.QueryError: when the identifier
            cannot be matched.
        """

    def beginRun():
        """
        Record that a daemon has started using the index (and is its only
        writer), and learn how the run before ended.  Unless it ended with
        L{endRun}, files may lie under final names without a row (a file is
        moved into place before it is indexed): L{claimRecovery} tells each
        storage area whether to look for them.

        @return: L{RUN_ENDED} when the previous run ended cleanly,
            L{RUN_CRASHED} when it did not, L{RUN_TAKEN_OVER} when it did
            not and another daemon sharing the index recovered it, C{None}
            when the index has no record of a run (new, or made by a
            version without them).
        """

    def endRun():
        """
        Record that the daemon using the index stopped cleanly: every file
        it moved into place is indexed.
        """

    def claimRecovery(area, directory):
        """
        @return: C{True} the first time it is asked for C{area} and
            C{directory} in a run that began after one that did not end
            cleanly (so that the area, prepared again on a reload, is
            searched once); C{False} otherwise.
        """

    def adoptArea(former, area):
        """
        Rename C{former} to C{area}, in one transaction, when C{area} has no
        rows: an index written before areas were named by their directory
        named them by AE title.  When C{area} has rows already (another AE
        title over the same directory was adopted first), the rows of
        C{former} are dropped instead: they describe files of the same
        directory, which L{dicomd.archive.reindexing.indexMissing} indexes
        again.

        @return: L{ROWS_MOVED}, L{ROWS_DROPPED}, or C{None} when C{former}
            has no rows.
        """

    def close():
        """
        Release the database.
        """


#: The SQLite schema, version 1 (C{PRAGMA user_version}).
SCHEMA = """
CREATE TABLE IF NOT EXISTS patient (
    id INTEGER PRIMARY KEY,
    area TEXT NOT NULL,
    PatientID TEXT NOT NULL,
    PatientName TEXT NOT NULL DEFAULT '',
    IssuerOfPatientID TEXT NOT NULL DEFAULT '',
    PatientBirthDate TEXT NOT NULL DEFAULT '',
    PatientBirthDateSortable TEXT NOT NULL DEFAULT '',
    PatientBirthTime TEXT NOT NULL DEFAULT '',
    PatientBirthTimeSortable TEXT NOT NULL DEFAULT '',
    PatientSex TEXT NOT NULL DEFAULT '',
    OtherPatientIDs TEXT NOT NULL DEFAULT '',
    OtherPatientNames TEXT NOT NULL DEFAULT '',
    EthnicGroup TEXT NOT NULL DEFAULT '',
    PatientComments TEXT NOT NULL DEFAULT '',
    UNIQUE (area, PatientID)
);
CREATE INDEX IF NOT EXISTS patientName ON patient (area, PatientName);
CREATE INDEX IF NOT EXISTS patientBirthDate
    ON patient (area, PatientBirthDateSortable);

CREATE TABLE IF NOT EXISTS study (
    id INTEGER PRIMARY KEY,
    patient INTEGER NOT NULL REFERENCES patient (id) ON DELETE CASCADE,
    area TEXT NOT NULL,
    StudyInstanceUID TEXT NOT NULL,
    StudyDate TEXT NOT NULL DEFAULT '',
    StudyDateSortable TEXT NOT NULL DEFAULT '',
    StudyTime TEXT NOT NULL DEFAULT '',
    StudyTimeSortable TEXT NOT NULL DEFAULT '',
    AccessionNumber TEXT NOT NULL DEFAULT '',
    ReferringPhysicianName TEXT NOT NULL DEFAULT '',
    StudyDescription TEXT NOT NULL DEFAULT '',
    NameOfPhysiciansReadingStudy TEXT NOT NULL DEFAULT '',
    AdmittingDiagnosesDescription TEXT NOT NULL DEFAULT '',
    PatientAge TEXT NOT NULL DEFAULT '',
    PatientSize TEXT NOT NULL DEFAULT '',
    PatientWeight TEXT NOT NULL DEFAULT '',
    Occupation TEXT NOT NULL DEFAULT '',
    AdditionalPatientHistory TEXT NOT NULL DEFAULT '',
    StudyID TEXT NOT NULL DEFAULT '',
    OtherStudyNumbers TEXT NOT NULL DEFAULT '',
    lastUpdated REAL NOT NULL,
    UNIQUE (area, StudyInstanceUID)
);
CREATE INDEX IF NOT EXISTS studyPatient ON study (patient);
CREATE INDEX IF NOT EXISTS studyDate ON study (area, StudyDateSortable);
CREATE INDEX IF NOT EXISTS studyAccessionNumber
    ON study (area, AccessionNumber);
CREATE INDEX IF NOT EXISTS studyLastUpdated ON study (area, lastUpdated);

CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    study INTEGER NOT NULL REFERENCES study (id) ON DELETE CASCADE,
    area TEXT NOT NULL,
    SeriesInstanceUID TEXT NOT NULL,
    Modality TEXT NOT NULL DEFAULT '',
    SeriesNumber TEXT NOT NULL DEFAULT '',
    UNIQUE (area, SeriesInstanceUID)
);
CREATE INDEX IF NOT EXISTS seriesStudy ON series (study);

CREATE TABLE IF NOT EXISTS instance (
    id INTEGER PRIMARY KEY,
    series INTEGER NOT NULL REFERENCES series (id) ON DELETE CASCADE,
    area TEXT NOT NULL,
    SOPInstanceUID TEXT NOT NULL,
    SOPClassUID TEXT NOT NULL DEFAULT '',
    InstanceNumber TEXT NOT NULL DEFAULT '',
    SpecificCharacterSet TEXT NOT NULL DEFAULT '',
    TransferSyntaxUID TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    received REAL NOT NULL,
    callingAETitle TEXT NOT NULL DEFAULT '',
    UNIQUE (area, SOPInstanceUID)
);
CREATE INDEX IF NOT EXISTS instanceSeries ON instance (series);
"""

SCHEMA_VERSION = 1

#: The condition on an C{instance} row that no forwarding entry holds it.
_UNQUEUED = " AND NOT EXISTS (SELECT 1 FROM forward WHERE forward.instance = instance.id)"


#: The most instances one C{INSERT} statement writes (a power of two):
#: each has about 20 columns, and SQLite allows 32,766 parameters in a
#: statement, PostgreSQL 65,535.
_ROWS_PER_INSERT = 512


class _InstanceRow(NamedTuple):
    """
    An instance of a batch being indexed: its SOP Instance UID, its
    L{sql.HeaderKeys}, its L{StoredFile}, the forwardings it is queued
    for, and its row's C{(column, value)} pairs.
    """

    uid: str
    keys: sql.HeaderKeys
    stored: StoredFile
    forwardings: Sequence
    columns: List[Tuple[str, object]]


class _Batch:
    """
    What one transaction adding instances wrote, so that the patient,
    study and series rows its instances repeat, and their studies' receipt
    times, are written once.

    @ivar rows: the row of each patient, study and series written, by
        area, level and unique key: its C{id}, and the texts of its keys
        (L{sql.HeaderKeys.sources}) and parent it was written with.  The index
        may keep it from one batch to the next (L{SQLArchiveIndex.remembersRows}).
    @ivar newest: the newest receipt time of each study's instances, by
        the study's C{id}; written when the batch ends.
    """

    def __init__(self, rows):
        self.rows = rows
        self.newest = {}

    def received(self, study: int, at: float) -> None:
        if at > self.newest.get(study, at - 1.0):
            self.newest[study] = at


#: The most patient, study and series rows an index remembers between
#: batches (L{SQLArchiveIndex.remembersRows}); it forgets them all beyond.
_ROWS_REMEMBERED = 10000


class SQLArchiveIndex:
    """
    The statements of the index that every SQL database runs alike; a
    subclass connects them to one database engine.

    A subclass provides C{connection()} and C{transaction()}, context
    managers giving an object with the C{execute} and C{executemany} of a
    DB-API connection, C{?} placeholders, and rows readable by position and
    by column name; C{dialect}, the L{dicomd.archive.sql} dialect its
    C{WHERE} clauses are compiled in; C{open} and C{close}.

    @ivar runName: the row of the C{run} table recording whether the
        daemon using the index ended cleanly.
    """

    runName = "ended"

    #: Whether the rows of patients, studies and series written by one
    #: batch are remembered for the next (L{_Batch.rows}): a series
    #: received over many batches, or the studies of many senders at
    #: once, then cost no statement per batch while their values stay
    #: the same.  Only where this process alone changes those rows; a
    #: row deleted behind its back fails the batch on its foreign key,
    #: which forgets them all (L{_addBatch}), and the writer writes the
    #: batch again.
    remembersRows = False

    def __init__(self):
        self._recovering = None
        self._recoveringLock = threading.Lock()
        self._rows = {}

    def _createRunTable(self, db):
        # Outside the versioned schema, so that an index made before it
        # gains it without a migration.
        db.execute("CREATE TABLE IF NOT EXISTS run (name TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def beginRun(self):
        with self.transaction() as db:
            self._createRunTable(db)
            row = db.execute("SELECT value FROM run WHERE name = ?", (self.runName,)).fetchone()
            self._recordRun(db, "no")
        previous = None if row is None else RUN_ENDED if row[0] == "yes" else RUN_CRASHED
        self._recovering = None if previous is RUN_ENDED else set()
        return previous

    def endRun(self):
        with self.transaction() as db:
            self._createRunTable(db)
            self._recordRun(db, "yes")

    def _recordRun(self, db, ended):
        db.execute(
            "INSERT INTO run (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (self.runName, ended),
        )

    def claimRecovery(self, area, directory):
        with self._recoveringLock:
            if self._recovering is None or (area, directory) in self._recovering:
                return False
            self._recovering.add((area, directory))
            return True

    def adoptArea(self, former, area):
        with self.transaction() as db:
            self._rows = {}
            if not db.execute("SELECT 1 FROM patient WHERE area = ? LIMIT 1", (former,)).fetchone():
                return None
            if db.execute("SELECT 1 FROM patient WHERE area = ? LIMIT 1", (area,)).fetchone():
                db.execute("DELETE FROM patient WHERE area = ?", (former,))
                return ROWS_DROPPED
            for table in ("patient", "study", "series", "instance"):
                db.execute(f"UPDATE {table} SET area = ? WHERE area = ?", (area, former))
            return ROWS_MOVED

    def addInstance(self, area, header, stored, forwardings=()):
        (replaced,) = self._addBatch(area, [(header, stored, forwardings)])
        return replaced

    def addInstances(self, area, items):
        return [path for path in self._addBatch(area, items) if path is not None]

    def _addBatch(self, area, items):
        """
        Index instances, with their forwarding queue entries, in one
        transaction: the rows of their patients, studies and series, then
        the new instances' rows in one statement (L{_insertInstances}),
        then the rows of those received again, which replace theirs.

        @return: the path of the file each replaced, or C{None}.
        """
        if not self.remembersRows or len(self._rows) > _ROWS_REMEMBERED:
            self._rows = {}
        remembered = bool(self._rows)
        try:
            return self._addRows(area, items)
        except sqlite3.IntegrityError:
            # Another process deleted a row remembered: write them again.
            self._rows = {}
            if not remembered:
                raise
            return self._addRows(area, items)
        except BaseException:
            # Rows remembered may have been rolled back.
            self._rows = {}
            raise

    def _addRows(self, area, items):
        with self.transaction() as db:
            batch = _Batch(self._rows)
            rows = [self._instanceRow(db, area, *item, batch=batch) for item in items]
            inserted = self._insertInstances(db, rows)
            replaced, pruned = [], False
            for row in rows:
                instance = inserted.pop(row.uid, None)
                old = None
                if instance is None:
                    if pruned:
                        # The series this one moves into may be gone.
                        batch.rows.clear()
                        row = self._instanceRow(db, area, row.keys, row.stored, row.forwardings, batch=batch)
                    instance, old, emptied = self._replace(db, area, row)
                    pruned = pruned or emptied
                if row.forwardings:
                    queue.enqueue(db, instance, row.keys.uids[Level.STUDY], row.forwardings, row.stored.received)
                replaced.append(old)
            self._touchStudies(db, batch.newest)
        return replaced

    def _instanceRow(self, db, area, header, stored, forwardings=(), *, batch):
        """
        Write the rows of an instance's patient, study and series, in the
        caller's transaction, and make its own row's columns.

        @param batch: the L{_Batch} of the transaction.
        @rtype: L{_InstanceRow}
        """
        keys = sql.HeaderKeys.of(header)
        uid = keys.uids[Level.IMAGE]
        if not uid:
            raise ValueError("an instance without SOP Instance UID")
        patient, _ = self._upsert(db, area, Level.PATIENT, keys, None, batch)
        study, oldPatient = self._upsert(db, area, Level.STUDY, keys, patient, batch)
        batch.received(study, stored.received)
        series, oldStudy = self._upsert(db, area, Level.SERIES, keys, study, batch)
        if self._pruneStudy(db, oldStudy) | self._prunePatient(db, oldPatient):
            # It may have deleted a row written for an instance before.
            batch.rows.clear()
        columns = list(keys.imageColumns)
        columns += [
            ("series", series),
            ("area", area),
            ("SpecificCharacterSet", keys.characterSet),
            ("TransferSyntaxUID", stored.transferSyntaxUID),
            ("path", stored.path),
            ("size", stored.size),
            ("received", stored.received),
            ("callingAETitle", stored.callingAETitle),
        ]
        return _InstanceRow(uid, keys, stored, forwardings, columns)

    def _insertInstances(self, db, rows):
        """
        Insert the rows of the instances that have none, in one statement:
        one call into the database for the batch instead of one per
        instance, each of which hands the interpreter lock to the reactor
        and back.  An instance that has a row, or that comes twice in
        C{rows}, is left to L{_replace}.

        @return: the C{id} of each row inserted, by SOP Instance UID.
        """
        first, seen = [], set()
        for row in rows:
            if row.uid not in seen:
                seen.add(row.uid)
                first.append(row.columns)
        names = ", ".join(name for name, _ in first[0])
        marks = "(" + ", ".join("?" * len(first[0])) + ")"
        inserted, start = {}, 0
        while start < len(first):
            # A power of two rows at a time, so that the database keeps
            # few statements prepared (one per size) instead of one for
            # every size of batch.
            size = min(_ROWS_PER_INSERT, 1 << ((len(first) - start).bit_length() - 1))
            chunk = first[start : start + size]
            start += size
            cursor = db.execute(
                f"INSERT INTO instance ({names}) VALUES {', '.join([marks] * len(chunk))}"
                " ON CONFLICT (area, SOPInstanceUID) DO NOTHING RETURNING id, SOPInstanceUID",
                [value for columns in chunk for _, value in columns],
            )
            inserted.update((uid, identifier) for identifier, uid in cursor.fetchall())
        return inserted

    def _replace(self, db, area, row):
        """
        Replace the row of an instance received again, in the caller's
        transaction, and delete its former series if that is left empty.

        @param row: its L{_InstanceRow}.
        @return: the C{id} of its row, the path of the file it replaced or
            C{None}, and whether its former series was deleted.
        """
        old = db.execute(
            "SELECT id, series, path FROM instance WHERE area = ? AND SOPInstanceUID = ?",
            (area, row.uid),
        ).fetchone()
        assignments = ", ".join(f"{name} = ?" for name, _ in row.columns)
        db.execute(
            f"UPDATE instance SET {assignments} WHERE id = ?",
            [value for _, value in row.columns] + [old["id"]],
        )
        emptied = self._pruneSeries(db, old["series"])
        return old["id"], (old["path"] if old["path"] != row.stored.path else None), emptied

    def _touchStudies(self, db, newest):
        """
        Record when the newest object of each study of a batch arrived, in
        the caller's transaction: a study's C{lastUpdated} is its newest
        object's, with the L{_touchColumns}.  One statement for the batch
        rather than one per study: a batch from many senders holds many
        studies, and each statement is a round trip to PostgreSQL's server,
        or a call into SQLite that hands the interpreter lock to the
        reactor and back.

        @param newest: the newest receipt time by study C{id}
            (L{_Batch.newest}).
        """
        extra = self._touchColumns()
        assignments = "".join(f", {name} = ?" for name, _ in extra)
        pairs = list(newest.items())
        for start in range(0, len(pairs), _ROWS_PER_INSERT):
            chunk = pairs[start : start + _ROWS_PER_INSERT]
            # Made a power of two long with its last pair again (a row
            # joined twice takes the same values either way), so that the
            # database keeps few statements prepared (one per size)
            # instead of one for every number of studies.
            chunk += chunk[-1:] * ((1 << (len(chunk) - 1).bit_length()) - len(chunk))
            db.execute(
                f"UPDATE study SET lastUpdated = newest.column2{assignments}"
                f" FROM (VALUES {', '.join(['(?, ?)'] * len(chunk))}) AS newest"
                " WHERE study.id = newest.column1 AND study.lastUpdated < newest.column2",
                [value for _, value in extra] + [value for pair in chunk for value in pair],
            )

    def _touchColumns(self):
        """
        What else a study's row records of its newest object
        (L{_touchStudies}): C{(column, value)} pairs; none here.
        """
        return ()

    def _insert(self, db, table, columns):
        """
        Insert a row.

        @return: the new row's C{id}.
        """
        names = ", ".join(name for name, _ in columns)
        marks = ", ".join("?" * len(columns))
        row = db.execute(
            f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING id",
            [value for _, value in columns],
        ).fetchone()
        return row[0]

    def _upsert(self, db, area, level, keys, parent, batch):
        """
        Insert or update the row of a patient, study or series, unless this
        transaction (or one before it the index remembers, L{remembersRows})
        wrote it already with the same values and parent.

        @param keys: the instance's L{sql.HeaderKeys}.
        @param parent: the id of the parent row, or C{None} for a patient.
        @param batch: the L{_Batch} of the transaction.
        @return: the row's id, and the id of its former parent if it had
            another one (else C{None}).
        """
        uid = keys.uids[level]
        state = (keys.sources[level], parent)
        known = batch.rows.get((area, level, uid))
        if known is not None and known[1] == state:
            return known[0], None
        identifier, former = self._write(db, area, level, uid, keys.columns(level), parent)
        batch.rows[(area, level, uid)] = (identifier, state)
        return identifier, former

    def _write(self, db, area, level, uid, columns, parent):
        """
        Insert or update the row of a patient, study or series (see
        L{_upsert}).
        """
        table, parentColumn = sql.TABLES[level]
        unique = uniqueKey(level)
        selected = "id" if parentColumn is None else f"id, {parentColumn}"
        row = db.execute(
            f"SELECT {selected} FROM {table} WHERE area = ? AND {unique.keyword} = ?",
            (area, uid),
        ).fetchone()
        if row is None:
            values = [(name, value) for name, value, _ in columns]
            values.append(("area", area))
            if parentColumn is not None:
                values.append((parentColumn, parent))
            if level is Level.STUDY:
                values.append(("lastUpdated", 0.0))
            return self._insert(db, table, values), None
        # An empty value never erases a known one.
        assignments = [
            f"{name} = CASE WHEN ? = '' THEN {name} ELSE ? END"
            for name, _, _ in columns
        ]
        parameters = [p for _, value, text in columns for p in (text, value)]
        if parentColumn is not None:
            assignments.append(f"{parentColumn} = ?")
            parameters.append(parent)
        db.execute(
            f"UPDATE {table} SET {', '.join(assignments)} WHERE id = ?",
            parameters + [row["id"]],
        )
        if parentColumn is not None and row[parentColumn] != parent:
            return row["id"], row[parentColumn]
        return row["id"], None

    # Each _prune... deletes a row left without children, and its parent
    # if that is left without children in turn; each returns whether it
    # deleted anything.

    def _pruneSeries(self, db, series):
        if series is None or db.execute(
            "SELECT 1 FROM instance WHERE series = ? LIMIT 1", (series,)
        ).fetchone():
            return False
        row = db.execute("SELECT study FROM series WHERE id = ?", (series,)).fetchone()
        if row is None:
            return False
        db.execute("DELETE FROM series WHERE id = ?", (series,))
        self._pruneStudy(db, row["study"])
        return True

    def _pruneStudy(self, db, study):
        if study is None or db.execute(
            "SELECT 1 FROM series WHERE study = ? LIMIT 1", (study,)
        ).fetchone():
            return False
        row = db.execute("SELECT patient FROM study WHERE id = ?", (study,)).fetchone()
        if row is None:
            return False
        db.execute("DELETE FROM study WHERE id = ?", (study,))
        self._prunePatient(db, row["patient"])
        return True

    def _prunePatient(self, db, patient):
        if patient is None or db.execute(
            "SELECT 1 FROM study WHERE patient = ? LIMIT 1", (patient,)
        ).fetchone():
            return False
        db.execute("DELETE FROM patient WHERE id = ?", (patient,))
        return True

    def removeInstance(self, area, sopInstanceUID):
        with self.transaction() as db:
            return self._remove(db, area, sopInstanceUID)

    def _remove(self, db, area, sopInstanceUID, condition=""):
        # It may delete a row the batches remember (its pruning).
        self._rows = {}
        row = db.execute(
            "SELECT id, series, path FROM instance"
            f" WHERE area = ? AND SOPInstanceUID = ?{condition}",
            (area, sopInstanceUID),
        ).fetchone()
        if row is None:
            return None
        db.execute("DELETE FROM instance WHERE id = ?", (row["id"],))
        self._pruneSeries(db, row["series"])
        return row["path"]

    def removeUnqueued(self, area, sopInstanceUIDs):
        with self.transaction() as db:
            paths = [self._remove(db, area, uid, _UNQUEUED) for uid in sopInstanceUIDs]
        return [path for path in paths if path is not None]

    def movePath(self, area, oldPath, newPath):
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE instance SET path = ? WHERE area = ? AND path = ?",
                (newPath, area, oldPath),
            )
            return cursor.rowcount > 0

    def removeStudy(self, area, studyInstanceUID):
        with self.transaction() as db:
            # Inside the transaction, which batches take their turn with.
            self._rows = {}
            study = db.execute(
                "SELECT id, patient FROM study WHERE area = ? AND StudyInstanceUID = ?",
                (area, studyInstanceUID),
            ).fetchone()
            if study is None:
                return []
            paths = [
                row["path"]
                for row in db.execute(
                    "SELECT instance.path FROM instance"
                    " JOIN series ON instance.series = series.id"
                    " WHERE series.study = ? ORDER BY instance.id",
                    (study["id"],),
                )
            ]
            db.execute("DELETE FROM study WHERE id = ?", (study["id"],))
            self._prunePatient(db, study["patient"])
            return paths

    def studyCount(self, area):
        with self.connection() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM study WHERE area = ?", (area,)
            ).fetchone()
            return count

    @staticmethod
    def _summaries(db, studies, parameters):
        """
        The L{StudySummary} of each study a query selects.

        @param studies: a query selecting the C{id}, C{StudyInstanceUID}
            and C{lastUpdated} of studies.
        """
        rows = db.execute(
            "SELECT study.StudyInstanceUID, study.lastUpdated,"
            " COUNT(instance.id), CAST(COALESCE(SUM(instance.size), 0) AS BIGINT)"
            f" FROM ({studies}) AS study"
            " JOIN series ON series.study = study.id"
            " JOIN instance ON instance.series = series.id"
            " GROUP BY study.id, study.StudyInstanceUID, study.lastUpdated"
            " ORDER BY study.lastUpdated, study.id",
            parameters,
        )
        return [StudySummary(*row) for row in rows]

    def studyUsage(self, area, studyInstanceUID):
        with self.connection() as db:
            summaries = self._summaries(
                db,
                "SELECT id, StudyInstanceUID, lastUpdated FROM study"
                " WHERE area = ? AND StudyInstanceUID = ?",
                (area, studyInstanceUID),
            )
        return summaries[0] if summaries else None

    def studiesByLastUpdate(self, area, limit=None, evictable=False):
        unqueued = (
            " AND NOT EXISTS (SELECT 1 FROM series JOIN instance ON instance.series = series.id"
            " JOIN forward ON forward.instance = instance.id WHERE series.study = study.id)"
            if evictable
            else ""
        )
        bounded = "" if limit is None else f" LIMIT {int(limit)}"
        with self.connection() as db:
            return self._summaries(
                db,
                "SELECT id, StudyInstanceUID, lastUpdated FROM study"
                f" WHERE area = ?{unqueued} ORDER BY lastUpdated, id{bounded}",
                (area,),
            )

    def instancesOfStudy(self, area, studyInstanceUID, evictable=False):
        with self.connection() as db:
            rows = db.execute(
                f"SELECT {sql.INSTANCE_COLUMNS} FROM {sql.fromClause(Level.IMAGE)}"
                " WHERE study.area = ? AND study.StudyInstanceUID = ?"
                f"{_UNQUEUED if evictable else ''}"
                " ORDER BY instance.received, instance.id",
                (area, studyInstanceUID),
            ).fetchall()
        return [StoredInstance(*row) for row in rows]

    def storedPaths(self, area):
        with self.connection() as db:
            return dict(
                db.execute(
                    "SELECT SOPInstanceUID, path FROM instance WHERE area = ?", (area,)
                ).fetchall()
            )

    def find(self, area, model, identifier, checkIdentifier=False):
        if checkIdentifier:
            checkFindIdentifier(model, identifier)
        query = parseIdentifier(model, identifier)
        table = sql.TABLES[query.level][0]
        selected = [f"{table}.id"] + [
            f'{sql.TABLES[key.level][0]}.{key.keyword} AS "{key.keyword}"'
            for key in query.storedKeys
        ]
        where, parameters = sql.whereClause(area, query.level, query.conditions, self.dialect)
        statement = (
            f"SELECT {', '.join(selected)} FROM {sql.fromClause(query.level)}"
            f" WHERE {where} ORDER BY {table}.id"
        )
        return self._responses(statement, parameters, query.response)

    def _responses(self, statement, parameters, response):
        with self.connection() as db:
            cursor = db.execute(statement, parameters)
            try:
                for row in cursor:
                    yield response(row)
            finally:
                cursor.close()

    def instancesFor(self, area, model, identifier, checkIdentifier=False):
        if checkIdentifier:
            checkRetrieveIdentifier(model, identifier)
        query = parseIdentifier(model, identifier)
        where, parameters = sql.whereClause(area, Level.IMAGE, query.conditions, self.dialect)
        with self.connection() as db:
            rows = db.execute(
                f"SELECT {sql.INSTANCE_COLUMNS} FROM {sql.fromClause(Level.IMAGE)}"
                f" WHERE {where} ORDER BY instance.id",
                parameters,
            ).fetchall()
        return [StoredInstance(*row) for row in rows]


@implementer(IArchiveIndex)
class SQLiteArchiveIndex(SQLArchiveIndex):
    """
    The index in an SQLite database file, in WAL mode so that queries run
    while instances are added.

    Each call takes a connection from a pool, so the index may be used from
    any number of threads.  Writers of this process take turns on a lock
    before they begin: SQLite's own busy handler makes a waiting writer
    sleep in growing steps, so with ten storage threads contending one
    could wait seconds after the database was free (the store p99 of
    bench/load.py); the lock hands over at once.  Writers of other
    processes (C{dicomd reindex}) are still serialised by SQLite, a writer
    waiting up to C{timeout} seconds for another.

    @ivar path: the database file.
    @ivar mode: the permissions (less the umask) the database file is
        created with, if L{open} creates it; SQLite gives its C{-wal},
        C{-shm} and C{-journal} files the database file's.  It holds
        patients' names: by default others cannot read it.
    """

    dialect = sql.SQLITE
    remembersRows = True

    def __init__(self, path, timeout=30.0, mode=FILE_MODE):
        """
        Describe the database; it is opened (and created with its schema
        if needed) by L{open} or on first use.

        @param path: the database file.
        @param timeout: how long a writer waits for another, in seconds.
        @param mode: see L{mode}; it may be changed until L{open}.
        """
        SQLArchiveIndex.__init__(self)
        self.path = path
        self.mode = mode
        self._timeout = timeout
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        # Whether each thread is inside withoutWaiting.
        self._notWaiting = threading.local()
        self._idle = []
        self._closed = False
        self._opened = False

    def _connect(self):
        db = sqlite3.connect(
            self.path,
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def open(self):
        """
        Create the database and its schema if needed.  The first use opens
        it anyway; a daemon calls this when it starts, after dropping
        privileges, so that the file belongs to its user and a broken
        index stops it at once.
        """
        with self._lock:
            if self._opened:
                return
            self._create()
            db = self._connect()
            try:
                db.execute("PRAGMA journal_mode = WAL")
                self._createSchema(db)
                queue.createTables(db)
            finally:
                db.close()
            self._opened = True

    def _create(self):
        """
        Create the database file, empty, with L{mode}, unless it exists:
        SQLite would create it with its own permissions (0644).
        """
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self.mode))

    @contextlib.contextmanager
    def connection(self):
        """
        A connection of the pool, for reading (or for statements that are
        each a transaction of their own): L{dicomd.archive.queue} reads the
        forwarding queue through it.
        """
        if not self._opened:
            self.open()
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the index is closed")
            db = self._idle.pop() if self._idle else None
        if db is None:
            db = self._connect()
        try:
            yield db
        finally:
            with self._lock:
                if self._closed:
                    db.close()
                else:
                    self._idle.append(db)

    @contextlib.contextmanager
    def transaction(self):
        """
        A connection inside one C{BEGIN IMMEDIATE} transaction, committed
        when the block ends and rolled back when it raises; writers of this
        process take turns.  Inside L{withoutWaiting}, it does not wait for
        another writer, nor check the write-ahead log into the database.
        """
        if getattr(self._notWaiting, "active", False):
            if not self._writing.acquire(blocking=False):
                raise IndexBusy("another writer of this process holds the index")
            try:
                with self.connection() as db:
                    db.execute("PRAGMA busy_timeout = 0")
                    db.execute("PRAGMA wal_autocheckpoint = 0")
                    try:
                        with self._inTransaction(db):
                            yield db
                    finally:
                        db.execute("PRAGMA busy_timeout = %d" % (self._timeout * 1000,))
                        db.execute("PRAGMA wal_autocheckpoint = %d" % (WAL_AUTOCHECKPOINT,))
            finally:
                self._writing.release()
            return
        with self._writing, self.connection() as db, self._inTransaction(db):
            yield db

    @staticmethod
    @contextlib.contextmanager
    def _inTransaction(db):
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextlib.contextmanager
    def withoutWaiting(self):
        """
        The transactions this thread begins in the block fail at once with
        L{IndexBusy} (or C{sqlite3.OperationalError}, "database is
        locked") where they would wait for another writer, and leave the
        write-ahead log to grow rather than copy it into the database (an
        C{fsync} or two) when they commit: for a writer on the reactor
        thread (L{dicomd.archive.writer.IndexWriter}), which must never
        stop for the database, and leaves those steps to L{checkpoint} in
        a worker thread.
        """
        self._notWaiting.active = True
        try:
            yield
        finally:
            self._notWaiting.active = False

    def checkpoint(self):
        """
        Copy the write-ahead log into the database as far as readers
        allow, without waiting for them (SQLite's C{PASSIVE} checkpoint),
        as SQLite does by itself after a commit that makes the log longer
        than L{WAL_AUTOCHECKPOINT} pages.  In a worker thread.
        """
        with self.connection() as db:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def quotaTurn(self, area):
        """
        Nothing to take: one daemon writes to an SQLite index, and its
        L{IndexedArea<dicomd.archive.area.IndexedArea>} adds and enforces
        the quota in turns already.
        """
        return contextlib.nullcontext()

    def _createSchema(self, db):
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return
        if version != 0:
            raise sqlite3.DatabaseError(
                f"{self.path}: index schema version {version}, "
                f"expected {SCHEMA_VERSION}"
            )
        db.executescript(
            f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        )

    def close(self):
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for db in idle:
            db.close()
