"""
Query/retrieve with real peers (issue 5): DCMTK's C{findscu}, C{movescu}
and C{getscu}, and pynetdicom's SCU, against dicomd's C-FIND, C-MOVE and
C-GET SCPs, with DCMTK's C{storescp} as the move destination.

The archive is made once per trial worker: DICOM files written with
pydicom (four patients named in ASCII, ISO_IR 100 Latin-1 and ISO_IR 192
UTF-8, five studies on different dates and times, six series, eight
instances of three SOP classes) are sent with DCMTK's C{storescu} to the
real C{twistd -n dicomd}, which stores and indexes them.  Each test then
serves that index with dicomd's acceptor in the test's reactor, as an AE
offering every information model (the daemon offers Patient Root and
Study Root only), except L{DaemonTests}, which runs the real daemon on a
copy of it.

Matching follows dcmqrscp (see L{dicomd.archive.matching}): these tests
check what a real SCU sees of it, one matching type at a time, with the
values dcmqrscp would return, and note where dicomd differs from it.
"""

import glob
import json
import os
import re
import shutil
import sqlite3
import struct
from dataclasses import dataclass
from typing import Dict, List, Optional

from pydicom import dcmread
from twisted.internet import defer
from twisted.trial import unittest

from tests.dicomfiles import (
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    SECONDARY_CAPTURE_STORAGE,
    makeDataset,
    writeFile,
)
from tests.support import (
    dcmtk,
    dcmtkEnvironment,
    listenInProcess,
    makeDirectory,
    runCommand,
    runPythonScript,
    startDaemon,
    spawn,
    startDCMTKServer,
    startPythonScript,
    waitUntil,
)

TITLE = "DICOMD"
DESTINATION = "STORESCP"
ROOT = "1.2.826.0.1.3680043.9.7433.3"
MOVE_STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

# -- the archive ------------------------------------------------------------------

#: Patients: PatientID -> (Specific Character Set, attributes).
PATIENTS = {
    "P001": (None, dict(PatientName="Doe^John", PatientBirthDate="19700101", PatientSex="M")),
    "P002": ("ISO_IR 100", dict(PatientName="Müller^Jürgen", PatientBirthDate="19651224", PatientSex="M")),
    "P003": ("ISO_IR 192", dict(PatientName="Wang^XiaoDong=王^小東", PatientBirthDate="19800229", PatientSex="F")),
    "P004": (None, dict(PatientName="Doe^Jane", PatientBirthDate="", PatientSex="F")),
}

#: Studies: number -> (PatientID, attributes).  Study 5 has no referring
#: physician: that key comes back empty.
STUDIES = {
    1: ("P001", dict(StudyDate="20240102", StudyTime="101500", AccessionNumber="ACC1",
                     StudyDescription="CT CHEST", ReferringPhysicianName="Ref^Alice", StudyID="11")),
    2: ("P001", dict(StudyDate="20230615", StudyTime="143000.25", AccessionNumber="ACC2",
                     StudyDescription="MR BRAIN", ReferringPhysicianName="Ref^Bob", StudyID="12")),
    3: ("P002", dict(StudyDate="20220301", StudyTime="083000", AccessionNumber="ACC3",
                     StudyDescription="CT ABDOMEN", ReferringPhysicianName="Ref^Alice", StudyID="21")),
    4: ("P003", dict(StudyDate="20240110", StudyTime="235959", AccessionNumber="ACC4",
                     StudyDescription="CT HEAD", ReferringPhysicianName="Ref^Carol", StudyID="31")),
    5: ("P004", dict(StudyDate="19991231", StudyTime="000000", AccessionNumber="ACC5",
                     StudyDescription="SCREEN CAPTURE", StudyID="41")),
}

#: Series: (study, series) -> (Modality, SOP Class UID, number of images).
SERIES = {
    (1, 1): ("CT", CT_IMAGE_STORAGE, 2),
    (1, 2): ("CT", CT_IMAGE_STORAGE, 1),
    (2, 1): ("MR", MR_IMAGE_STORAGE, 1),
    (3, 1): ("CT", CT_IMAGE_STORAGE, 2),
    (4, 1): ("CT", CT_IMAGE_STORAGE, 1),
    (5, 1): ("OT", SECONDARY_CAPTURE_STORAGE, 1),
}


def studyUID(study: int) -> str:
    return "%s.%d" % (ROOT, study)


def seriesUID(study: int, series: int) -> str:
    return "%s.%d.%d" % (ROOT, study, series)


def instanceUID(study: int, series: int, number: int) -> str:
    return "%s.%d.%d.%d" % (ROOT, study, series, number)


def instanceUIDs(patient: Optional[str] = None, study: Optional[int] = None, series: Optional[int] = None) -> List[str]:
    """
    The SOP Instance UIDs of the archive under a patient, study or series,
    in the order they were stored.
    """
    uids = []
    for (s, r), (_, _, count) in SERIES.items():
        if patient is not None and STUDIES[s][0] != patient:
            continue
        if (study is not None and s != study) or (series is not None and r != series):
            continue
        uids.extend(instanceUID(s, r, n) for n in range(1, count + 1))
    return uids


def archiveDatasets():
    """
    The data sets of the archive, by SOP Instance UID.
    """
    datasets = {}
    for (s, r), (modality, sopClass, count) in SERIES.items():
        patientID, studyAttributes = STUDIES[s]
        characterSet, patientAttributes = PATIENTS[patientID]
        for n in range(1, count + 1):
            dataset = makeDataset(
                rows=8,
                columns=8,
                sopClassUID=sopClass,
                patientID=patientID,
                patientName=patientAttributes["PatientName"],
                studyInstanceUID=studyUID(s),
                seriesInstanceUID=seriesUID(s, r),
                sopInstanceUID=instanceUID(s, r, n),
                modality=modality,
                characterSet=characterSet,
            )
            for keyword, value in list(patientAttributes.items()) + list(studyAttributes.items()):
                setattr(dataset, keyword, value)
            dataset.SeriesNumber = r
            dataset.InstanceNumber = n
            datasets[dataset.SOPInstanceUID] = dataset
    return datasets


@dataclass(frozen=True)
class StoredArchive:
    """
    The archive as C{twistd dicomd} stored it.

    @ivar sources: the paths of the files sent, by SOP Instance UID.
    @ivar data: the daemon's data directory (its storage area and index).
    """

    sources: Dict[str, str]
    data: str

    @property
    def index(self) -> str:
        from dicomd.archive.service import INDEX_FILE

        return os.path.join(self.data, INDEX_FILE)


_ARCHIVE: Dict[str, StoredArchive] = {}


@defer.inlineCallbacks
def storedArchive(testCase):
    """
    The archive of this trial worker, made by the first test that asks:
    written with pydicom, sent with DCMTK's storescu to C{twistd dicomd}.

    @return: a L{Deferred} firing with the L{StoredArchive}.
    """
    if "archive" in _ARCHIVE:
        return _ARCHIVE["archive"]
    root = os.path.abspath(testCase.mktemp())
    sourceDirectory, data = os.path.join(root, "sources"), os.path.join(root, "data")
    os.makedirs(sourceDirectory)
    sources = {}
    for number, (uid, dataset) in enumerate(archiveDatasets().items(), 1):
        sources[uid] = writeFile(os.path.join(sourceDirectory, "%02d.dcm" % (number,)), dataset)
    daemon = yield startDaemon(testCase, "--output-directory", data)
    result = yield runCommand(
        [dcmtk("storescu"), "-aec", TITLE, "127.0.0.1", str(daemon.port)] + list(sources.values()),
        env=dcmtkEnvironment(),
    )
    testCase.assertEqual(result.exitCode, 0, result.describe() + daemon.describe())
    yield daemon.stop()
    _ARCHIVE["archive"] = StoredArchive(sources, data)
    return _ARCHIVE["archive"]


def serveArchive(
    testCase,
    archive: Optional[StoredArchive],
    *,
    peers=(),
    models=None,
    get=True,
    index=None,
    data=None,
    transferSyntaxes=None,
    propose=None,
):
    """
    Serve an index with dicomd's acceptor in the test's reactor: one AE,
    C{DICOMD}, as L{dicomd.qrentity.queryRetrieveEntity} builds it.

    @param archive: the L{StoredArchive} whose index and files to serve,
        or C{None} with C{index} and C{data}.

    @param peers: the C-MOVE destinations, L{dicomd.peers.Peer}s.
    @param models: the information models offered (all three by default).
    @param transferSyntaxes: the syntaxes accepted, in preference order
        (C{+x=}'s by default).
    @param propose: what C-MOVE sub-associations propose (see
        L{dicomd.peers.proposing}), or C{None} for the default.
    @return: the port it listens on.
    """
    from dicomd.archive.matching import MODELS
    from dicomd.archive.index import areaKey
    from dicomd.archive.service import Archive
    from dicomd.peers import destinationTable
    from dicomd.qrentity import QueryRetrieveOptions, queryRetrieveEntity
    from dicomd.ul.negotiation import UNCOMPRESSED

    served = Archive(index or archive.index)
    served.startService()
    testCase.addCleanup(served.stopService)
    entity = queryRetrieveEntity(
        TITLE,
        served,
        areaKey(data or archive.data),
        data or archive.data,
        QueryRetrieveOptions(
            models=tuple(models or MODELS),
            get=get,
            destinations=destinationTable(list(peers), TITLE, propose=propose),
            transferSyntaxes=transferSyntaxes or UNCOMPRESSED,
        ),
    )
    port, _ = listenInProcess(testCase, entity)
    return port


def latin1Argument(text: str) -> str:
    """
    A command-line argument whose bytes are C{text} in Latin-1 (Python
    passes lone surrogates through as the bytes they escape).
    """
    return text.encode("latin-1").decode("utf-8", "surrogateescape")


# -- DCMTK's SCUs ---------------------------------------------------------------------

MODEL_FLAGS = {"P": "-P", "S": "-S", "O": "-O"}


@dataclass
class FindResult:
    """
    What findscu saw: the final status as it names it, and the responses
    (extracted with C{-X}), in order.
    """

    status: Optional[str]
    responses: list
    output: str

    def values(self, keyword: str) -> List[str]:
        return [str(response[keyword].value or "") if keyword in response else None for response in self.responses]


@defer.inlineCallbacks
def findscu(testCase, port: int, model: str, *keys: str, extra=(), extract=True):
    """
    Run DCMTK's findscu (C{-P}, C{-S} or C{-O}) with C{-k} keys.

    findscu exits 0 whether the C-FIND succeeded or not (and 2 when it
    could not even ask): the final status is read from its output.

    @param extract: have findscu write the responses (C{-X}) and read them;
        otherwise L{FindResult.responses} has one C{None} per pending
        response findscu logged.
    """
    directory = makeDirectory(testCase)
    argv = [dcmtk("findscu"), MODEL_FLAGS[model], "-v", "-od", directory, "-aec", TITLE] + (["-X"] if extract else [])
    argv += list(extra)
    for key in keys:
        argv += ["-k", key]
    argv += ["127.0.0.1", str(port)]
    result = yield runCommand(argv, env=dcmtkEnvironment(), cwd=directory)
    match = re.search(r"Received Final Find Response \(([^)]*)\)", result.output)
    if extract:
        responses = [dcmread(path) for path in sorted(glob.glob(os.path.join(directory, "rsp*.dcm")))]
    else:
        responses = [None] * len(re.findall(r"^I: Find Response: \d+ \(Pending\)", result.output, re.MULTILINE))
    return FindResult(match.group(1) if match else None, responses, result.output)


@dataclass
class RetrieveResult:
    """
    The final C-MOVE-RSP or C-GET-RSP as DCMTK's C{-d} output shows it.
    """

    status: Optional[int]
    counts: Dict[str, Optional[int]]
    failed: List[str]
    pending: int
    output: str
    exitCode: Optional[int] = None

    @property
    def releasedCleanly(self) -> bool:
        """
        Whether the SCU released its association without error: it logged
        no "Association Release Failed", as DCMTK's do when a PDU other
        than the A-RELEASE-RP comes ("DUL P-Data PDU arrived").
        """
        return "Releasing Association" in self.output and "Release Failed" not in self.output and "P-Data PDU arrived" not in self.output


_COUNT = re.compile(r"^D: (Remaining|Completed|Failed|Warning) Suboperations\s*: (\S+)", re.MULTILINE)


def parseRetrieve(output: str, operation: str, exitCode: Optional[int] = None) -> RetrieveResult:
    """
    Read the last C-MOVE-RSP or C-GET-RSP of DCMTK's debug output.
    """
    blocks = output.split("Message Type                  : %s RSP" % (operation,))
    final = blocks[-1] if len(blocks) > 1 else ""
    status = re.search(r"DIMSE Status\s*: 0x([0-9a-fA-F]{4})", final)
    counts = {name.lower(): (None if value == "none" else int(value)) for name, value in _COUNT.findall(final)}
    failed = re.search(r"\(0008,0058\) UI \[([^\]]*)\]", final)
    statuses = [re.search(r"DIMSE Status\s*: 0x([0-9a-fA-F]{4})", block) for block in blocks[1:]]
    pending = sum(1 for found in statuses if found and found.group(1).lower() == "ff00")
    return RetrieveResult(
        int(status.group(1), 16) if status else None,
        counts,
        failed.group(1).split("\\") if failed else [],
        pending,
        output,
        exitCode,
    )


@defer.inlineCallbacks
def movescu(testCase, port: int, model: str, destination: str, *keys: str, extra=()):
    """
    Run DCMTK's movescu (C{-d}, to see every response) with C{-k} keys.

    @return: the L{RetrieveResult}.
    """
    argv = [dcmtk("movescu"), MODEL_FLAGS[model], "-d", "-aec", TITLE, "-aem", destination]
    argv += list(extra)
    for key in keys:
        argv += ["-k", key]
    argv += ["127.0.0.1", str(port)]
    result = yield runCommand(argv, env=dcmtkEnvironment(), cwd=makeDirectory(testCase))
    # movescu exits with a status of its own when the C-MOVE failed.
    return parseRetrieve(result.output, "C-MOVE", result.exitCode)


@defer.inlineCallbacks
def getscu(testCase, port: int, model: str, *keys: str, extra=()):
    """
    Run DCMTK's getscu; it stores what it receives in a fresh directory.

    @return: the L{RetrieveResult} and that directory.
    """
    directory = makeDirectory(testCase)
    argv = [dcmtk("getscu"), MODEL_FLAGS[model], "-d", "-aec", TITLE, "-od", directory]
    argv += list(extra)
    for key in keys:
        argv += ["-k", key]
    argv += ["127.0.0.1", str(port)]
    result = yield runCommand(argv, env=dcmtkEnvironment(), cwd=directory)
    return parseRetrieve(result.output, "C-GET", result.exitCode), directory


def receivedFiles(directory: str) -> Dict[str, str]:
    """
    The DICOM files in a directory, by SOP Instance UID.
    """
    files = {}
    for path in glob.glob(os.path.join(directory, "*")):
        if os.path.isfile(path):
            files[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    return files


#: An association negotiation profile for DCMTK's storescp that accepts
#: CT Image Storage only: MR and secondary capture sub-operations fail.
CT_ONLY_PROFILE = r"""
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = OppositeEndianExplicit
TransferSyntax3 = LittleEndianImplicit

[[PresentationContexts]]
[CTOnly]
PresentationContext1 = VerificationSOPClass\Uncompressed
PresentationContext2 = CTImageStorage\Uncompressed

[[Profiles]]
[CTOnly]
PresentationContexts = CTOnly
"""


@defer.inlineCallbacks
def startDestination(testCase, *options: str):
    """
    Start DCMTK's storescp as the move destination C{STORESCP}.

    @return: its L{ChildProcess} and the directory it stores into.
    """
    directory = makeDirectory(testCase)
    storescp = yield startDCMTKServer(testCase, "storescp", "-aet", DESTINATION, "-od", directory, *options)
    return storescp, directory


def destinationPeer(storescp):
    from dicomd.peers import Peer

    return Peer(DESTINATION, "127.0.0.1", storescp.port)


class ArchiveTestCase(unittest.TestCase):
    """
    A test with the stored archive, served in the test's reactor.
    """

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.archive = yield storedArchive(self)

    def serve(self, **kwargs) -> int:
        return serveArchive(self, self.archive, **kwargs)

    def assertSameDataSets(self, received: Dict[str, str], uids: List[str]):
        """
        The files received are those of C{uids}, with the data sets sent.
        """
        self.assertEqual(sorted(received), sorted(uids))
        for uid in uids:
            sent = dcmread(self.archive.sources[uid])
            got = dcmread(received[uid])
            self.assertEqual(got.SOPInstanceUID, uid)
            sentElements = {element.tag: element.value for element in sent}
            gotElements = {element.tag: element.value for element in got}
            self.assertEqual(gotElements, sentElements, uid)


# -- C-FIND with findscu ----------------------------------------------------------------


class FindscuLevelTests(ArchiveTestCase):
    """
    DCMTK's findscu at every level of the three information models.
    """

    @defer.inlineCallbacks
    def test_patientRootPatientLevel(self):
        """
        A universal PATIENT query returns every patient once, with the
        stored patient attributes; Retrieve AE Title is the called AE.
        """
        port = self.serve()
        result = yield findscu(
            self, port, "P", "QueryRetrieveLevel=PATIENT", "PatientID", "PatientName", "PatientBirthDate", "PatientSex"
        )
        self.assertEqual(result.status, "Success", result.output)
        self.assertEqual(result.values("PatientID"), ["P001", "P002", "P003", "P004"])
        self.assertEqual(result.values("PatientName"), ["Doe^John", "Müller^Jürgen", "Wang^XiaoDong=王^小東", "Doe^Jane"])
        self.assertEqual(result.values("PatientBirthDate"), ["19700101", "19651224", "19800229", ""])
        self.assertEqual(result.values("PatientSex"), ["M", "M", "F", "F"])
        self.assertEqual(result.values("QueryRetrieveLevel"), ["PATIENT"] * 4)
        self.assertEqual(result.values("RetrieveAETitle"), [TITLE] * 4)

    @defer.inlineCallbacks
    def test_patientRootStudyLevel(self):
        """
        A STUDY query in the Patient Root model names its patient by
        PatientID and returns that patient's studies.
        """
        port = self.serve()
        result = yield findscu(
            self, port, "P", "QueryRetrieveLevel=STUDY", "PatientID=P001", "StudyInstanceUID", "StudyDate", "AccessionNumber"
        )
        self.assertEqual(result.status, "Success", result.output)
        self.assertEqual(result.values("StudyInstanceUID"), [studyUID(1), studyUID(2)])
        self.assertEqual(result.values("AccessionNumber"), ["ACC1", "ACC2"])
        self.assertEqual(result.values("PatientID"), ["P001", "P001"])

    @defer.inlineCallbacks
    def test_patientRootSeriesLevel(self):
        """
        A SERIES query names its patient and study; Modality and
        SeriesNumber come back.
        """
        port = self.serve()
        result = yield findscu(
            self,
            port,
            "P",
            "QueryRetrieveLevel=SERIES",
            "PatientID=P001",
            "StudyInstanceUID=" + studyUID(1),
            "SeriesInstanceUID",
            "Modality",
            "SeriesNumber",
        )
        self.assertEqual(result.status, "Success", result.output)
        self.assertEqual(result.values("SeriesInstanceUID"), [seriesUID(1, 1), seriesUID(1, 2)])
        self.assertEqual(result.values("Modality"), ["CT", "CT"])
        self.assertEqual(result.values("SeriesNumber"), ["1", "2"])

    @defer.inlineCallbacks
    def test_patientRootImageLevel(self):
        """
        An IMAGE query names patient, study and series; SOP Instance UID,
        SOP Class UID and Instance Number come back.
        """
        port = self.serve()
        result = yield findscu(
            self,
            port,
            "P",
            "QueryRetrieveLevel=IMAGE",
            "PatientID=P001",
            "StudyInstanceUID=" + studyUID(1),
            "SeriesInstanceUID=" + seriesUID(1, 1),
            "SOPInstanceUID",
            "SOPClassUID",
            "InstanceNumber",
        )
        self.assertEqual(result.status, "Success", result.output)
        self.assertEqual(result.values("SOPInstanceUID"), instanceUIDs(study=1, series=1))
        self.assertEqual(result.values("SOPClassUID"), [CT_IMAGE_STORAGE] * 2)
        self.assertEqual(result.values("InstanceNumber"), ["1", "2"])

    @defer.inlineCallbacks
    def test_studyRootStudyLevel(self):
        """
        In the Study Root model a STUDY query needs no patient key, and
        patient keys are matched too (a PatientName wildcard here).
        """
        port = self.serve()
        everything = yield findscu(self, port, "S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID")
        self.assertEqual(everything.status, "Success", everything.output)
        self.assertEqual(everything.values("StudyInstanceUID"), [studyUID(s) for s in range(1, 6)])
        self.assertEqual(everything.values("PatientID"), ["P001", "P001", "P002", "P003", "P004"])
        does = yield findscu(self, port, "S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName=Doe^*")
        self.assertEqual(does.values("StudyInstanceUID"), [studyUID(1), studyUID(2), studyUID(5)])

    @defer.inlineCallbacks
    def test_studyRootSeriesLevel(self):
        """
        A SERIES query in the Study Root model names its study only.
        """
        port = self.serve()
        result = yield findscu(
            self, port, "S", "QueryRetrieveLevel=SERIES", "StudyInstanceUID=" + studyUID(2), "SeriesInstanceUID", "Modality"
        )
        self.assertEqual(result.status, "Success", result.output)
        self.assertEqual(result.values("SeriesInstanceUID"), [seriesUID(2, 1)])
        self.assertEqual(result.values("Modality"), ["MR"])

    @defer.inlineCallbacks
    def test_studyRootImageLevel(self):
        """
        An IMAGE query in the Study Root model names study and series;
        keys of the levels above come back with their stored values.
        """
        port = self.serve()
        result = yield findscu(
            self,
            port,
            "S",
            "QueryRetrieveLevel=IMAGE",
            "StudyInstanceUID=" + studyUID(3),
            "SeriesInstanceUID=" + seriesUID(3, 1),
            "SOPInstanceUID",
            "StudyDate",
        )
        self.assertEqual(result.status, "Success", result.output)
        self.assertEqual(result.values("SOPInstanceUID"), instanceUIDs(study=3))
        self.assertEqual(result.values("StudyDate"), ["20220301", "20220301"])

    @defer.inlineCallbacks
    def test_patientStudyOnly(self):
        """
        The Patient/Study Only model answers PATIENT and STUDY queries, and
        refuses a SERIES query with 0xC001 "unable to process" (dcmqrscp
        happens to answer that one).
        """
        port = self.serve()
        patients = yield findscu(self, port, "O", "QueryRetrieveLevel=PATIENT", "PatientID=P00[23]", "PatientName")
        self.assertEqual(patients.status, "Success", patients.output)
        # "[" is no wildcard: nothing is called that.
        self.assertEqual(patients.responses, [])
        patients = yield findscu(self, port, "O", "QueryRetrieveLevel=PATIENT", "PatientID=P003", "PatientName")
        self.assertEqual(patients.values("PatientName"), ["Wang^XiaoDong=王^小東"])
        studies = yield findscu(self, port, "O", "QueryRetrieveLevel=STUDY", "PatientID=P002", "StudyInstanceUID")
        self.assertEqual(studies.status, "Success", studies.output)
        self.assertEqual(studies.values("StudyInstanceUID"), [studyUID(3)])
        series = yield findscu(
            self, port, "O", "QueryRetrieveLevel=SERIES", "PatientID=P002", "StudyInstanceUID=" + studyUID(3), "SeriesInstanceUID"
        )
        self.assertEqual(series.status, "Failed: UnableToProcess", series.output)
        self.assertEqual(series.responses, [])

    @defer.inlineCallbacks
    def test_identifierErrors(self):
        """
        A query without Query/Retrieve Level fails with 0xA900; an unknown
        level, or a STUDY query in the Patient Root model without PatientID,
        with 0xC001.
        """
        port = self.serve()
        noLevel = yield findscu(self, port, "P", "PatientID")
        self.assertEqual(noLevel.status, "Error: DataSetDoesNotMatchSOPClass", noLevel.output)
        badLevel = yield findscu(self, port, "P", "QueryRetrieveLevel=FRAME", "PatientID")
        self.assertEqual(badLevel.status, "Failed: UnableToProcess", badLevel.output)
        noPatient = yield findscu(self, port, "P", "QueryRetrieveLevel=STUDY", "StudyInstanceUID")
        self.assertEqual(noPatient.status, "Failed: UnableToProcess", noPatient.output)

    @defer.inlineCallbacks
    def test_modelNotOffered(self):
        """
        An AE that does not offer a model rejects its presentation context:
        findscu has nothing to send on.
        """
        from dicomd.archive.matching import PATIENT_ROOT, STUDY_ROOT

        port = self.serve(models=(PATIENT_ROOT, STUDY_ROOT))
        result = yield findscu(self, port, "O", "QueryRetrieveLevel=PATIENT", "PatientID")
        self.assertIsNone(result.status)
        self.assertIn("No Acceptable Presentation Contexts", result.output)


class FindscuMatchingTests(ArchiveTestCase):
    """
    Each matching type of PS3.4 C.2.2.2, as dcmqrscp does it, through
    findscu.
    """

    @defer.inlineCallbacks
    def studies(self, *keys, model="S"):
        """
        The StudyInstanceUIDs of a Study Root STUDY query, by study number.
        """
        port = getattr(self, "port", None) or self.serve()
        self.port = port
        result = yield findscu(self, port, model, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", *keys)
        self.assertEqual(result.status, "Success", result.output)
        numbers = [int(uid.rsplit(".", 1)[1]) for uid in result.values("StudyInstanceUID")]
        return numbers

    @defer.inlineCallbacks
    def test_singleValue(self):
        """
        Single value matching, text and date, is exact.
        """
        self.assertEqual((yield self.studies("AccessionNumber=ACC3")), [3])
        self.assertEqual((yield self.studies("StudyDate=20240110")), [4])
        self.assertEqual((yield self.studies("StudyDescription=CT")), [])
        self.assertEqual((yield self.studies("PatientID=P001")), [1, 2])
        self.assertEqual((yield self.studies("StudyID=31")), [4])

    @defer.inlineCallbacks
    def test_universal(self):
        """
        An empty value, or one of only "*", matches everything, empty
        stored values included.
        """
        self.assertEqual((yield self.studies("ReferringPhysicianName")), [1, 2, 3, 4, 5])
        self.assertEqual((yield self.studies("ReferringPhysicianName=*")), [1, 2, 3, 4, 5])
        self.assertEqual((yield self.studies("StudyDescription=**")), [1, 2, 3, 4, 5])

    @defer.inlineCallbacks
    def test_wildcards(self):
        """
        "*" stands for any sequence, "?" for exactly one character.
        """
        self.assertEqual((yield self.studies("StudyDescription=CT*")), [1, 3, 4])
        self.assertEqual((yield self.studies("StudyDescription=*EN*")), [3, 5])
        self.assertEqual((yield self.studies("AccessionNumber=ACC?")), [1, 2, 3, 4, 5])
        self.assertEqual((yield self.studies("AccessionNumber=AC?")), [])
        self.assertEqual((yield self.studies("PatientID=P00?", "ReferringPhysicianName=Ref^A*")), [1, 3])

    @defer.inlineCallbacks
    def test_dateRanges(self):
        """
        Closed and open-ended date ranges, bounds included.
        """
        self.assertEqual((yield self.studies("StudyDate=20230101-20231231")), [2])
        self.assertEqual((yield self.studies("StudyDate=20220301-20240102")), [1, 2, 3])
        self.assertEqual((yield self.studies("StudyDate=20240101-")), [1, 4])
        self.assertEqual((yield self.studies("StudyDate=-20221231")), [3, 5])
        self.assertEqual((yield self.studies("StudyDate=20250101-")), [])

    @defer.inlineCallbacks
    def test_invalidDates(self):
        """
        A value or bound that is no date matches nothing (dcmqrscp parses
        dates the same way); the pre-1993 form C{YYYY.MM.DD} is a date.
        """
        self.assertEqual((yield self.studies("StudyDate=2024")), [])
        self.assertEqual((yield self.studies("StudyDate=2024-")), [])
        self.assertEqual((yield self.studies("StudyDate=20241301")), [])
        self.assertEqual((yield self.studies("StudyDate=2022.03.01")), [3])

    @defer.inlineCallbacks
    def test_timeRanges(self):
        """
        Time ranges compare the parsed times: 143000.25 lies between 1400
        and 1500; the end of a range is the instant it names.
        """
        self.assertEqual((yield self.studies("StudyTime=080000-120000")), [1, 3])
        self.assertEqual((yield self.studies("StudyTime=1400-1500")), [2])
        self.assertEqual((yield self.studies("StudyTime=-083000")), [3, 5])
        self.assertEqual((yield self.studies("StudyTime=2359-")), [4])
        self.assertEqual((yield self.studies("StudyTime=143000.25")), [2])
        self.assertEqual((yield self.studies("StudyTime=-143000")), [1, 3, 5])

    @defer.inlineCallbacks
    def test_uidList(self):
        """
        A list of UIDs matches any of them.
        """
        self.assertEqual((yield self.studies("StudyInstanceUID=%s\\%s\\1.2.3" % (studyUID(4), studyUID(2)))), [2, 4])

    @defer.inlineCallbacks
    def test_uidListInRetrieveKeys(self):
        """
        A list of UIDs as the unique key of the level above: the series of
        two studies.
        """
        port = self.serve()
        result = yield findscu(
            self,
            port,
            "S",
            "QueryRetrieveLevel=SERIES",
            "StudyInstanceUID=%s\\%s" % (studyUID(1), studyUID(5)),
            "SeriesInstanceUID",
        )
        self.assertEqual(result.values("SeriesInstanceUID"), [seriesUID(1, 1), seriesUID(1, 2), seriesUID(5, 1)])

    @defer.inlineCallbacks
    def test_personNames(self):
        """
        Person names match as dcmqrscp matches them: the whole value,
        character for character, case-sensitively, wildcards spanning
        components; no component-wise or case-insensitive matching.
        """
        self.assertEqual((yield self.studies("PatientName=Doe^John")), [1, 2])
        self.assertEqual((yield self.studies("PatientName=Doe*")), [1, 2, 5])
        self.assertEqual((yield self.studies("PatientName=*^J*")), [1, 2, 3, 5])
        self.assertEqual((yield self.studies("PatientName=doe*")), [])
        self.assertEqual((yield self.studies("PatientName=DOE^JOHN")), [])
        self.assertEqual((yield self.studies("PatientName=Doe")), [])
        self.assertEqual((yield self.studies("PatientName=Doe^John^^^")), [])
        self.assertEqual((yield self.studies("PatientName=Wang^XiaoDong=*")), [4])
        self.assertEqual((yield self.studies("SpecificCharacterSet=ISO_IR 192", "PatientName=*=王^小東")), [4])
        # "?" is one character, not one byte of UTF-8 (dcmqrscp: one byte).
        self.assertEqual((yield self.studies("PatientName=*=?^??")), [4])

    @defer.inlineCallbacks
    def test_severalKeys(self):
        """
        Every condition must hold.
        """
        self.assertEqual((yield self.studies("PatientName=Doe*", "StudyDate=20230101-", "StudyTime=-120000")), [1])

    @defer.inlineCallbacks
    def test_returnKeys(self):
        """
        Requested keys that are not matched come back with the stored
        value, or empty when nothing is stored; keys dcmqrscp does not
        support (Modalities in Study) are left out, and keys below the
        query level come back empty.
        """
        port = self.serve()
        result = yield findscu(
            self,
            port,
            "S",
            "QueryRetrieveLevel=STUDY",
            "StudyInstanceUID=%s\\%s" % (studyUID(1), studyUID(5)),
            "StudyDescription",
            "ReferringPhysicianName",
            "PatientBirthDate",
            "IssuerOfPatientID",
            "ModalitiesInStudy",
            "SeriesInstanceUID",
        )
        self.assertEqual(result.status, "Success", result.output)
        self.assertEqual(result.values("StudyDescription"), ["CT CHEST", "SCREEN CAPTURE"])
        self.assertEqual(result.values("ReferringPhysicianName"), ["Ref^Alice", ""])
        self.assertEqual(result.values("PatientBirthDate"), ["19700101", ""])
        self.assertEqual(result.values("IssuerOfPatientID"), ["", ""])
        self.assertEqual(result.values("SeriesInstanceUID"), ["", ""])
        self.assertEqual(result.values("ModalitiesInStudy"), [None, None])


class FindscuCharacterSetTests(ArchiveTestCase):
    """
    Names stored in ASCII, ISO_IR 100 (Latin-1) and ISO_IR 192 (UTF-8),
    queried in each.
    """

    @defer.inlineCallbacks
    def patients(self, *keys):
        port = getattr(self, "port", None) or self.serve()
        self.port = port
        result = yield findscu(self, port, "P", "QueryRetrieveLevel=PATIENT", "PatientID", "PatientName", *keys)
        self.assertEqual(result.status, "Success", result.output)
        return result

    @defer.inlineCallbacks
    def test_latin1Query(self):
        """
        A Latin-1 query matches a name stored in Latin-1, and the response
        comes back in Latin-1.
        """
        result = yield self.patients("SpecificCharacterSet=ISO_IR 100", latin1Argument("PatientName=Müller*"))
        self.assertEqual(result.values("PatientID"), ["P002"])
        response = result.responses[0]
        self.assertEqual(response.SpecificCharacterSet, "ISO_IR 100")
        self.assertEqual(response.get_item(0x00100010).value.rstrip(b" "), "Müller^Jürgen".encode("latin-1"))
        self.assertEqual(str(response.PatientName), "Müller^Jürgen")

    @defer.inlineCallbacks
    def test_latin1QuestionMark(self):
        """
        "?" stands for one accented Latin-1 character.
        """
        result = yield self.patients("SpecificCharacterSet=ISO_IR 100", "PatientName=M?ller^J?rgen")
        self.assertEqual(result.values("PatientID"), ["P002"])

    @defer.inlineCallbacks
    def test_utf8QueryOfLatin1Name(self):
        """
        A UTF-8 query matches the name stored in Latin-1: values are
        compared as characters, not bytes; the response is in UTF-8.
        """
        result = yield self.patients("SpecificCharacterSet=ISO_IR 192", "PatientName=*ü*")
        self.assertEqual(result.values("PatientID"), ["P002"])
        response = result.responses[0]
        self.assertEqual(response.SpecificCharacterSet, "ISO_IR 192")
        self.assertEqual(response.get_item(0x00100010).value.rstrip(b" "), "Müller^Jürgen".encode("utf-8"))

    @defer.inlineCallbacks
    def test_utf8QueryOfUTF8Name(self):
        """
        Chinese ideographs stored in UTF-8, queried in UTF-8.
        """
        result = yield self.patients("SpecificCharacterSet=ISO_IR 192", "PatientName=*王*")
        self.assertEqual(result.values("PatientID"), ["P003"])
        self.assertEqual(result.values("PatientName"), ["Wang^XiaoDong=王^小東"])
        self.assertEqual(result.responses[0].SpecificCharacterSet, "ISO_IR 192")

    @defer.inlineCallbacks
    def test_latin1QueryOfUTF8Name(self):
        """
        A Latin-1 query whose response cannot be said in Latin-1 gets it
        in UTF-8, with its Specific Character Set saying so.
        """
        result = yield self.patients("SpecificCharacterSet=ISO_IR 100", "PatientName=Wang*")
        self.assertEqual(result.values("PatientID"), ["P003"])
        self.assertEqual(result.responses[0].SpecificCharacterSet, "ISO_IR 192")
        self.assertEqual(result.values("PatientName"), ["Wang^XiaoDong=王^小東"])

    @defer.inlineCallbacks
    def test_undeclaredNonASCII(self):
        """
        Bytes above 0x7F in a query without Specific Character Set are read
        as UTF-8 when they are valid UTF-8 (findscu typed in a UTF-8
        terminal: dcmqrscp matches those bytes against the UTF-8 form of
        the stored names), else as Latin-1.
        """
        utf8 = yield self.patients("PatientName=Müller*")
        self.assertEqual(utf8.values("PatientID"), ["P002"])
        ideographs = yield self.patients("PatientName=*=王^小東")
        self.assertEqual(ideographs.values("PatientID"), ["P003"])
        latin1 = yield self.patients(latin1Argument("PatientName=Müller*"))
        self.assertEqual(latin1.values("PatientID"), ["P002"])

    @defer.inlineCallbacks
    def test_asciiQuery(self):
        """
        A query without Specific Character Set gets plain ASCII responses
        without it, and the others in UTF-8.
        """
        result = yield self.patients()
        self.assertEqual(result.values("PatientID"), ["P001", "P002", "P003", "P004"])
        self.assertEqual(
            [response.get("SpecificCharacterSet") for response in result.responses], [None, "ISO_IR 192", "ISO_IR 192", None]
        )
        self.assertEqual(result.values("PatientName")[1], "Müller^Jürgen")


class FindFailureTests(ArchiveTestCase):
    """
    A C-FIND the index fails to answer (a broken database, an I/O error)
    ends with 0xC001 (unable to process), not silence.
    """

    @defer.inlineCallbacks
    def test_queryFails(self):
        """
        The query itself fails: the final response is 0xC001 with the
        error as its comment, and the error is logged in one line, without
        a traceback: a database that is down or broken is a fact of
        operation, not a bug.
        """
        from dicomd.archive.index import SQLiteArchiveIndex

        def broken(*args, **kwargs):
            raise sqlite3.DatabaseError("database disk image is malformed")

        self.patch(SQLiteArchiveIndex, "find", broken)
        port = self.serve()
        log = capturedLog(self)
        result = yield findscu(self, port, "S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID", extra=["-d"], extract=False)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertIn("DIMSE Status                  : 0xc001: Failed: Unable to process", result.output)
        self.assertIn("[database disk image is malformed]", result.output)
        [line] = [line for line in log if "the index cannot answer" in line]
        self.assertIn("database disk image is malformed", line)
        self.assertNotIn("Traceback", line)

    @defer.inlineCallbacks
    def test_readingMatchesFails(self):
        """
        Reading the matches fails: the final response is 0xC001 with the
        error as its comment.
        """
        from dicomd.archive.index import SQLiteArchiveIndex

        find = SQLiteArchiveIndex.find

        def failingAfterOne(*args, **kwargs):
            matches = iter(find(*args, **kwargs))
            yield next(matches)
            raise sqlite3.OperationalError("disk I/O error")

        self.patch(SQLiteArchiveIndex, "find", failingAfterOne)
        port = self.serve()
        result = yield findscu(self, port, "S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID", extra=["-d"], extract=False)
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
        self.assertIn("DIMSE Status                  : 0xc001: Failed: Unable to process", result.output)
        self.assertIn("[disk I/O error]", result.output)


#: How many patients the index of the C-CANCEL tests holds.
MANY_PATIENTS = 1500


def serveManyPatients(testCase) -> int:
    """
    Serve an index of L{MANY_PATIENTS} patients, each with one instance,
    written directly (C-FIND needs no files): enough pending responses
    for a C-CANCEL to arrive among them.

    @return: the port.
    """
    from pydicom.dataset import Dataset

    from dicomd.archive.index import SQLiteArchiveIndex, StoredFile, areaKey

    data = makeDirectory(testCase)
    indexPath = os.path.join(data, "index.sqlite")
    index = SQLiteArchiveIndex(indexPath)
    items = []
    for n in range(MANY_PATIENTS):
        header = Dataset()
        header.PatientID = "C%05d" % (n,)
        header.PatientName = "Cancel^%d" % (n,)
        header.StudyInstanceUID = "%s.9.%d" % (ROOT, n)
        header.SeriesInstanceUID = "%s.9.%d.1" % (ROOT, n)
        header.SOPInstanceUID = "%s.9.%d.1.1" % (ROOT, n)
        header.SOPClassUID = CT_IMAGE_STORAGE
        items.append((header, StoredFile("absent", 0, "1.2.840.10008.1.2.1", 0.0)))
    index.addInstances(areaKey(data), items)
    index.close()
    return serveArchive(testCase, None, index=indexPath, data=data)


def holdUntilCancelled(testCase) -> None:
    """
    Make each C-FIND of the test send one match, then wait for a C-CANCEL
    before it reads the next: a peer's C-CANCEL after the first match then
    finds the query running, however fast the rest would have gone out.
    """
    from dicomd.archive.asyncindex import PendingResponses
    from dicomd.services import find

    testCase.patch(find, "BATCH", 1)
    cancel, read = find.Cancellation.cancel, PendingResponses.next
    cancelled, waiting, started = [], [], []

    def cancelAndRelease(self):
        cancel(self)
        cancelled.append(self)
        while waiting:
            waiting.pop(0).callback(None)

    def readAfterCancel(self, count=100):
        if self not in started:
            started.append(self)
            return read(self, count)
        if cancelled:
            return read(self, count)
        released = defer.Deferred()
        waiting.append(released)
        return released.addCallback(lambda _: read(self, count))

    testCase.patch(find.Cancellation, "cancel", cancelAndRelease)
    testCase.patch(PendingResponses, "next", readAfterCancel)


class FindscuCancelTests(unittest.TestCase):
    """
    C-CANCEL during a C-FIND with many matches: findscu's C{--cancel}.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_cancel(self):
        """
        Without C-CANCEL every match arrives; after C-CANCEL following the
        first response, the pending responses stop and the final status is
        0xFE00.
        """
        port = serveManyPatients(self)
        everything = yield findscu(self, port, "P", "QueryRetrieveLevel=PATIENT", "PatientID", extract=False)
        self.assertEqual(everything.status, "Success", everything.output[-2000:])
        self.assertEqual(len(everything.responses), MANY_PATIENTS)
        holdUntilCancelled(self)
        cancelled = yield findscu(
            self, port, "P", "QueryRetrieveLevel=PATIENT", "PatientID", extra=["--cancel", "1"], extract=False
        )
        self.assertIn("Sending Cancel Request", cancelled.output)
        self.assertEqual(cancelled.status, "Cancel: MatchingTerminatedDueToCancelRequest", cancelled.output[-2000:])
        self.assertGreaterEqual(len(cancelled.responses), 1)
        self.assertLess(len(cancelled.responses), MANY_PATIENTS)


# -- C-MOVE with movescu ------------------------------------------------------------------


#: The image L{brokenArchive} breaks.
BROKEN = instanceUID(1, 1, 1)


def brokenArchive(testCase, archive: StoredArchive, broken: str):
    """
    A copy of the archive in which the file of instance C{broken} is no
    longer DICOM (overwritten since it was indexed), so that its
    sub-operation fails.

    @return: the paths of the copy's index and of its storage area.
    """
    from dicomd.archive.index import SQLiteArchiveIndex, areaKey
    from dicomd.archive.service import INDEX_FILE

    data = os.path.join(os.path.abspath(testCase.mktemp()), "data")
    shutil.copytree(archive.data, data)
    index = SQLiteArchiveIndex(os.path.join(data, INDEX_FILE))
    # The copy's rows are named by the original directory.
    index.adoptArea(areaKey(archive.data), areaKey(data))
    path = index.storedPaths(areaKey(data))[broken]
    index.close()
    with open(os.path.join(data, path), "wb") as f:
        f.write(b"no longer a DICOM file")
    return os.path.join(data, INDEX_FILE), data


class MovescuTests(ArchiveTestCase):
    """
    DCMTK's movescu asks dicomd to send to DCMTK's storescp.
    """

    @defer.inlineCallbacks
    def test_moveStudy(self):
        """
        Study Root, STUDY level: every image of the study arrives with the
        data set that was stored, after a pending response per
        sub-operation but the last.
        """
        storescp, directory = yield startDestination(self)
        port = self.serve(peers=[destinationPeer(storescp)])
        result = yield movescu(self, port, "S", DESTINATION, "QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + studyUID(1))
        self.assertEqual(result.status, 0x0000, result.output)
        self.assertEqual(result.counts, {"remaining": None, "completed": 3, "failed": 0, "warning": 0})
        self.assertEqual(result.pending, 2, result.output)
        self.assertEqual(result.exitCode, 0, result.output)
        self.assertTrue(result.releasedCleanly, result.output)
        self.assertSameDataSets(receivedFiles(directory), instanceUIDs(study=1))

    @defer.inlineCallbacks
    def test_moveEveryLevel(self):
        """
        Patient Root at the PATIENT, STUDY, SERIES and IMAGE levels (a list
        of SOP Instance UIDs), and Patient/Study Only at the STUDY level.
        """
        storescp, directory = yield startDestination(self)
        port = self.serve(peers=[destinationPeer(storescp)])
        moves = [
            ("P", ["QueryRetrieveLevel=PATIENT", "PatientID=P002"], instanceUIDs(patient="P002")),
            ("P", ["QueryRetrieveLevel=STUDY", "PatientID=P003", "StudyInstanceUID=" + studyUID(4)], instanceUIDs(study=4)),
            (
                "P",
                ["QueryRetrieveLevel=SERIES", "PatientID=P001", "StudyInstanceUID=" + studyUID(1), "SeriesInstanceUID=" + seriesUID(1, 2)],
                instanceUIDs(study=1, series=2),
            ),
            (
                "P",
                [
                    "QueryRetrieveLevel=IMAGE",
                    "PatientID=P001",
                    "StudyInstanceUID=" + studyUID(1),
                    "SeriesInstanceUID=" + seriesUID(1, 1),
                    "SOPInstanceUID=%s\\%s" % (instanceUID(1, 1, 2), instanceUID(1, 1, 1)),
                ],
                instanceUIDs(study=1, series=1),
            ),
            ("O", ["QueryRetrieveLevel=STUDY", "PatientID=P004", "StudyInstanceUID=" + studyUID(5)], instanceUIDs(study=5)),
        ]
        expected = []
        for model, keys, uids in moves:
            result = yield movescu(self, port, model, DESTINATION, *keys)
            self.assertEqual(result.status, 0x0000, result.output)
            self.assertEqual(result.counts["completed"], len(uids), result.output)
            expected.extend(uids)
            self.assertEqual(sorted(receivedFiles(directory)), sorted(expected))
        self.assertSameDataSets(receivedFiles(directory), expected)

    @defer.inlineCallbacks
    def test_nothingMatches(self):
        """
        A move that selects nothing succeeds with no sub-operation.
        """
        storescp, directory = yield startDestination(self)
        port = self.serve(peers=[destinationPeer(storescp)])
        result = yield movescu(self, port, "S", DESTINATION, "QueryRetrieveLevel=STUDY", "StudyInstanceUID=1.2.3.4.5")
        self.assertEqual(result.status, 0x0000, result.output)
        self.assertEqual(result.counts["completed"], 0)
        self.assertEqual(receivedFiles(directory), {})

    @defer.inlineCallbacks
    def test_unknownDestination(self):
        """
        A destination the configuration does not know is refused with
        0xA801, and nothing is sent.
        """
        port = self.serve()
        result = yield movescu(self, port, "S", "NOWHERE", "QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + studyUID(1))
        self.assertEqual(result.status, 0xA801, result.output)
        self.assertIn("Refused: MoveDestinationUnknown", result.output)

    @defer.inlineCallbacks
    def test_someSubOperationsFail(self):
        """
        A destination that accepts CT only: the CT images arrive, the MR
        image fails, and the final status is 0xB000 with the MR image in
        the Failed SOP Instance UID List.
        """
        profile = os.path.join(makeDirectory(self), "ct-only.cfg")
        with open(profile, "w") as f:
            f.write(CT_ONLY_PROFILE)
        storescp, directory = yield startDestination(self, "-xf", profile, "CTOnly")
        port = self.serve(peers=[destinationPeer(storescp)])
        result = yield movescu(self, port, "P", DESTINATION, "QueryRetrieveLevel=PATIENT", "PatientID=P001")
        self.assertEqual(result.status, 0xB000, result.output)
        self.assertEqual(result.counts, {"remaining": None, "completed": 3, "failed": 1, "warning": 0})
        self.assertEqual(result.failed, instanceUIDs(study=2))
        self.assertSameDataSets(receivedFiles(directory), instanceUIDs(study=1))

    @defer.inlineCallbacks
    def test_brokenFileFailsAlone(self):
        """
        An archived file that is no longer DICOM (overwritten since it was
        indexed) fails its sub-operation alone: the other images arrive and
        the final status is 0xB000 listing it.  (The move used to stop
        there, without a final response.)  movescu reads the list and
        releases cleanly.
        """
        index, data = brokenArchive(self, self.archive, BROKEN)
        storescp, directory = yield startDestination(self)
        port = serveArchive(self, None, peers=[destinationPeer(storescp)], index=index, data=data)
        result = yield movescu(self, port, "S", DESTINATION, "QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + studyUID(1))
        self.assertEqual(result.status, 0xB000, result.output)
        self.assertEqual(result.counts, {"remaining": None, "completed": 2, "failed": 1, "warning": 0})
        self.assertEqual(result.failed, [BROKEN])
        self.assertTrue(result.releasedCleanly, result.output)
        # movescu's EXITCODE_CMOVE_WARNING for 0xB000; 67 would mean the
        # release failed.
        self.assertEqual(result.exitCode, 68, result.output)
        self.assertSameDataSets(receivedFiles(directory), [uid for uid in instanceUIDs(study=1) if uid != BROKEN])

    @defer.inlineCallbacks
    def test_unexpectedErrorStillAnswered(self):
        """
        An unexpected error in the sub-operations is logged, and the move
        still ends with its final response: the instances not sent are
        listed as failed.
        """
        from dicomd.storage import sender

        store = sender.store
        calls = []

        def failingSecond(*args, **kwargs):
            calls.append(args)
            if len(calls) == 2:
                raise RuntimeError("a bug")
            return store(*args, **kwargs)

        self.patch(sender, "store", failingSecond)
        storescp, directory = yield startDestination(self)
        port = self.serve(peers=[destinationPeer(storescp)])
        result = yield movescu(self, port, "S", DESTINATION, "QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + studyUID(1))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(result.status, 0xB000, result.output)
        self.assertEqual(result.counts, {"remaining": None, "completed": 1, "failed": 2, "warning": 0})
        self.assertEqual(len(receivedFiles(directory)), 1)

    @defer.inlineCallbacks
    def test_indexFails(self):
        """
        An index that fails to list the instances to move: the final
        response is 0xC001 (unable to process) with the error, logged in
        one line, and nothing is sent.
        """
        from dicomd.archive.index import SQLiteArchiveIndex

        def broken(*args, **kwargs):
            raise sqlite3.DatabaseError("database disk image is malformed")

        self.patch(SQLiteArchiveIndex, "instancesFor", broken)
        storescp, directory = yield startDestination(self)
        port = self.serve(peers=[destinationPeer(storescp)])
        log = capturedLog(self)
        result = yield movescu(self, port, "S", DESTINATION, "QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + studyUID(1))
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertTrue([line for line in log if "the index cannot answer: database disk image is malformed" in line], log)
        self.assertEqual(result.status, 0xC001, result.output)
        self.assertIn("database disk image is malformed", result.output)
        self.assertEqual(receivedFiles(directory), {})

    @defer.inlineCallbacks
    def test_allSubOperationsFail(self):
        """
        When every sub-operation fails the final status is 0xA702, with
        every instance in the Failed SOP Instance UID List (as dcmqrscp).
        """
        profile = os.path.join(makeDirectory(self), "ct-only.cfg")
        with open(profile, "w") as f:
            f.write(CT_ONLY_PROFILE)
        storescp, directory = yield startDestination(self, "-xf", profile, "CTOnly")
        port = self.serve(peers=[destinationPeer(storescp)])
        result = yield movescu(self, port, "S", DESTINATION, "QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + studyUID(2))
        self.assertEqual(result.status, 0xA702, result.output)
        self.assertEqual(result.counts["failed"], 1)
        self.assertEqual(result.failed, instanceUIDs(study=2))
        self.assertEqual(receivedFiles(directory), {})

    @defer.inlineCallbacks
    def test_destinationDown(self):
        """
        A known destination that does not answer: every sub-operation
        fails, 0xA702 with every instance in the failed list.
        """
        from dicomd.peers import Peer
        from tests.support import freePort

        port = self.serve(peers=[Peer(DESTINATION, "127.0.0.1", freePort())])
        result = yield movescu(self, port, "P", DESTINATION, "QueryRetrieveLevel=PATIENT", "PatientID=P001")
        self.assertEqual(result.status, 0xA702, result.output)
        self.assertEqual(result.counts["failed"], 4, result.output)
        self.assertEqual(sorted(result.failed), sorted(instanceUIDs(patient="P001")))

    @defer.inlineCallbacks
    def test_cancel(self):
        """
        movescu's C-CANCEL after the first pending response stops the
        sub-operations before the last: the final status is 0xFE00 and
        fewer images arrive than were selected.  (The destination sleeps a
        second after each image, so the cancel comes between
        sub-operations.)
        """
        storescp, directory = yield startDestination(self, "--sleep-after", "1")
        port = self.serve(peers=[destinationPeer(storescp)])
        result = yield movescu(
            self, port, "P", DESTINATION, "QueryRetrieveLevel=PATIENT", "PatientID=P001", extra=["--cancel", "1"]
        )
        self.assertIn("Sending Cancel Request", result.output)
        self.assertEqual(result.status, 0xFE00, result.output)
        self.assertGreaterEqual(result.counts["completed"], 1)
        self.assertGreater(result.counts["remaining"], 0)
        received = receivedFiles(directory)
        self.assertEqual(len(received), result.counts["completed"])
        self.assertLess(len(received), len(instanceUIDs(patient="P001")))


# -- C-GET with getscu -----------------------------------------------------------------------


class GetscuTests(ArchiveTestCase):
    """
    DCMTK's getscu retrieves over its own association.
    """

    @defer.inlineCallbacks
    def test_getEveryModel(self):
        """
        Patient Root (PATIENT), Study Root (SERIES, IMAGE) and Patient/Study
        Only (STUDY): every image arrives with the data set stored.
        """
        port = self.serve()
        gets = [
            ("P", ["QueryRetrieveLevel=PATIENT", "PatientID=P001"], instanceUIDs(patient="P001")),
            ("S", ["QueryRetrieveLevel=SERIES", "StudyInstanceUID=" + studyUID(3), "SeriesInstanceUID=" + seriesUID(3, 1)], instanceUIDs(study=3)),
            (
                "S",
                [
                    "QueryRetrieveLevel=IMAGE",
                    "StudyInstanceUID=" + studyUID(1),
                    "SeriesInstanceUID=" + seriesUID(1, 1),
                    "SOPInstanceUID=" + instanceUID(1, 1, 2),
                ],
                [instanceUID(1, 1, 2)],
            ),
            ("O", ["QueryRetrieveLevel=STUDY", "PatientID=P003", "StudyInstanceUID=" + studyUID(4)], instanceUIDs(study=4)),
        ]
        for model, keys, uids in gets:
            result, directory = yield getscu(self, port, model, *keys)
            self.assertEqual(result.status, 0x0000, result.output)
            self.assertEqual(result.counts, {"remaining": None, "completed": len(uids), "failed": 0, "warning": 0})
            self.assertSameDataSets(receivedFiles(directory), uids)

    @defer.inlineCallbacks
    def test_failedInstanceReleasesCleanly(self):
        """
        A study with an instance whose sub-operation fails: the final
        C-GET-RSP (0xB000) carries the Failed SOP Instance UID List, which
        getscu does not read; it still releases its association cleanly
        and exits 0.  (It used to get the list's PDU instead of the
        A-RELEASE-RP: "Association Release Failed: 0006:0316 DUL P-Data PDU
        arrived", as it does from dcmqrscp.)
        """
        index, data = brokenArchive(self, self.archive, BROKEN)
        port = serveArchive(self, None, index=index, data=data)
        result, directory = yield getscu(self, port, "S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + studyUID(1))
        self.assertEqual(result.status, 0xB000, result.output)
        self.assertEqual(result.counts, {"remaining": None, "completed": 2, "failed": 1, "warning": 0})
        self.assertTrue(result.releasedCleanly, result.output)
        self.assertEqual(result.exitCode, 0, result.output)
        self.assertSameDataSets(receivedFiles(directory), [uid for uid in instanceUIDs(study=1) if uid != BROKEN])

    @defer.inlineCallbacks
    def test_getDisabled(self):
        """
        Without C-GET (C{--disable-get}) the GET contexts are rejected.
        """
        port = self.serve(get=False)
        result, directory = yield getscu(self, port, "P", "QueryRetrieveLevel=PATIENT", "PatientID=P001")
        self.assertIsNone(result.status)
        self.assertEqual(receivedFiles(directory), {})


# -- transfer syntaxes of retrieved objects -------------------------------------------------

EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

#: An association negotiation profile for DCMTK's storescp that takes CT
#: images in little endian only, explicit or implicit VR: what most peers
#: accept.
LITTLE_ENDIAN_PROFILE = r"""
[[TransferSyntaxes]]
[LittleEndian]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = LittleEndianImplicit

[[PresentationContexts]]
[LittleEndian]
PresentationContext1 = VerificationSOPClass\LittleEndian
PresentationContext2 = CTImageStorage\LittleEndian

[[Profiles]]
[LittleEndian]
PresentationContexts = LittleEndian
"""


def writeProfile(testCase, text: str) -> str:
    """
    Write an association negotiation profile file for DCMTK's C{-xf}.

    @return: its path.
    """
    path = os.path.join(makeDirectory(testCase), "profile.cfg")
    with open(path, "w") as f:
        f.write(text)
    return path


def storedFiles(archive: StoredArchive) -> Dict[str, str]:
    """
    The paths of the files an archive's index holds, by SOP Instance UID.
    """
    from dicomd.archive.index import SQLiteArchiveIndex, areaKey

    index = SQLiteArchiveIndex(archive.index)
    try:
        return {uid: os.path.join(archive.data, path) for uid, path in index.storedPaths(areaKey(archive.data)).items()}
    finally:
        index.close()


def encodedDataSet(path: str):
    """
    A Part-10 file's transfer syntax and the bytes of its data set.
    """
    from dicomd.storage.scu import readFileMeta

    meta = readFileMeta(path)
    with open(path, "rb") as f:
        f.seek(meta.dataSetOffset)
        return meta.transferSyntaxUID, f.read()


#: The struct format of one word of each VR that pydicom leaves as bytes.
_WORDS = {"OW": "u2", "OF": "f4", "OD": "f8", "OL": "u4", "OV": "u8"}


def decodedValues(dataset, byteOrder: str) -> dict:
    """
    The values of a pydicom data set by tag, read from a file in
    C{byteOrder} (C{"<"} or C{">"}): the words of binary values pydicom
    keeps as bytes decoded, sequences item by item, Pixel Data left out
    (compare C{pixel_array}).
    """
    import numpy

    values = {}
    for element in dataset:
        if element.keyword == "PixelData":
            continue
        if element.VR == "SQ":
            values[element.tag] = [decodedValues(item, byteOrder) for item in element.value]
        elif element.VR in _WORDS:
            values[element.tag] = numpy.frombuffer(element.value, byteOrder + _WORDS[element.VR]).tolist()
        else:
            values[element.tag] = element.value
    return values


def bigEndianDataset():
    """
    A CT image with binary values of every word size at the top level and in
    nested sequence items, to be stored in explicit VR big endian.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    dataset = makeDataset(
        rows=8,
        columns=8,
        patientID="PBIG",
        studyInstanceUID=studyUID(90),
        seriesInstanceUID=seriesUID(90, 1),
        sopInstanceUID=instanceUID(90, 1, 1),
    )
    dataset.add_new(0x00181310, "US", [1, 2, 0xFFFE, 4])
    dataset.add_new(0x00186020, "SL", [-5, 0x01020304])
    dataset.add_new(0x00189219, "SS", -300)
    dataset.add_new(0x00189459, "FL", -0.5)
    dataset.add_new(0x00081163, "FD", [1.5, -2.25])
    dataset.add_new(0x00209165, "AT", [0x00100010, 0x00200013])
    dataset.add_new(0x00660016, "OF", struct.pack("<3f", 1.0, -2.0, 3.5))
    dataset.add_new(0x00660040, "OL", struct.pack("<2L", 1, 0x0A0B0C0D))
    inner = Dataset()
    inner.add_new(0x00209165, "AT", 0x00280010)
    inner.add_new(0x00281201, "OW", struct.pack("<3H", 0x0102, 0x0304, 0xA0B0))
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = instanceUID(90, 1, 2)
    item.add_new(0x00081199, "SQ", Sequence([inner]))
    item.add_new(0x00280010, "US", 512)
    item.add_new(0x00189219, "SS", -2)
    dataset.ReferencedSeriesSequence = Sequence([item, Dataset()])
    return dataset


@defer.inlineCallbacks
def bigEndianArchive(testCase):
    """
    An archive holding one CT image that C{twistd dicomd} received in
    explicit VR big endian: written with pydicom, converted with DCMTK's
    C{dcmconv +tb}, sent with C{storescu -xb}.  Made once per trial
    worker.

    @return: a L{Deferred} firing with the L{StoredArchive}; its source is
        the big endian file.
    """
    if "big endian" in _ARCHIVE:
        return _ARCHIVE["big endian"]
    root = os.path.abspath(testCase.mktemp())
    os.makedirs(root)
    dataset = bigEndianDataset()
    little = writeFile(os.path.join(root, "little.dcm"), dataset)
    big = os.path.join(root, "big.dcm")
    converted = yield runCommand([dcmtk("dcmconv"), "+tb", little, big], env=dcmtkEnvironment())
    testCase.assertEqual(converted.exitCode, 0, converted.describe())
    data = os.path.join(root, "data")
    daemon = yield startDaemon(testCase, "--output-directory", data)
    sent = yield runCommand(
        [dcmtk("storescu"), "-xb", "-aec", TITLE, "127.0.0.1", str(daemon.port), big], env=dcmtkEnvironment()
    )
    testCase.assertEqual(sent.exitCode, 0, sent.describe() + daemon.describe())
    yield daemon.stop()
    archive = StoredArchive({dataset.SOPInstanceUID: big}, data)
    stored = storedFiles(archive)[dataset.SOPInstanceUID]
    testCase.assertEqual(encodedDataSet(stored)[0], EXPLICIT_VR_BIG_ENDIAN)
    _ARCHIVE["big endian"] = archive
    return archive


class BigEndianRetrieveTests(unittest.TestCase):
    """
    An image stored in explicit VR big endian is retrieved by peers that
    take little endian only: dicomd converts it, swapping every binary
    value by its VR's word size, and the peer gets the same pixels and
    attributes.  (It used to fail: "no presentation context for ... in
    1.2.840.10008.1.2.2, nor one it can be converted to".)
    """

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.archive = yield bigEndianArchive(self)
        [(self.uid, self.source)] = self.archive.sources.items()

    def assertSameImage(self, received: Dict[str, str]):
        """
        The one file received is the big endian image, in explicit VR
        little endian, with the original's pixels and attributes.
        """
        import numpy

        self.assertEqual(sorted(received), [self.uid])
        got, sent = dcmread(received[self.uid]), dcmread(self.source)
        self.assertEqual(got.file_meta.TransferSyntaxUID, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertTrue(numpy.array_equal(got.pixel_array, sent.pixel_array))
        self.assertEqual(decodedValues(got, "<"), decodedValues(sent, ">"))

    @defer.inlineCallbacks
    def test_move(self):
        """
        movescu moves it to a storescp that accepts little endian only.
        """
        storescp, directory = yield startDestination(self, "-xf", writeProfile(self, LITTLE_ENDIAN_PROFILE), "LittleEndian")
        port = serveArchive(self, self.archive, peers=[destinationPeer(storescp)])
        result = yield movescu(self, port, "S", DESTINATION, "QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + studyUID(90))
        self.assertEqual(result.status, 0x0000, result.output)
        self.assertEqual(result.counts["completed"], 1)
        self.assertSameImage(receivedFiles(directory))

    @defer.inlineCallbacks
    def test_get(self):
        """
        getscu gets it on the explicit VR little endian context dicomd
        accepted for CT images.
        """
        port = serveArchive(self, self.archive)
        result, directory = yield getscu(self, port, "S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + studyUID(90))
        self.assertEqual(result.status, 0x0000, result.output)
        self.assertSameImage(receivedFiles(directory))


class StoredSyntaxTests(ArchiveTestCase):
    """
    Retrieval sends an object in the transfer syntax it is stored in when
    the peer accepts that one, although dicomd's preferences (C{+xa},
    C{-xd}) put deflate first: the data set arrives as stored, byte for
    byte, instead of compressed anew.
    """

    def assertAsStored(self, received: Dict[str, str], uids: List[str]):
        """
        The files received are those of C{uids}, each with the syntax and
        data set bytes of the archive's file.
        """
        self.assertEqual(sorted(received), sorted(uids))
        stored = storedFiles(self.archive)
        for uid in uids:
            syntax, data = encodedDataSet(received[uid])
            self.assertEqual(syntax, EXPLICIT_VR_LITTLE_ENDIAN, uid)
            self.assertEqual((syntax, data), encodedDataSet(stored[uid]), uid)

    @defer.inlineCallbacks
    def test_move(self):
        """
        With C{-xd} the sub-association proposes deflate first for every
        class, and storescp C{+xa} takes deflate where it can; the stored
        syntax, proposed on a context of its own, is taken too, and used.
        """
        from dicomd.peers import proposing
        from dicomd.ul.negotiation import ACCEPTOR_PREFERENCES

        storescp, directory = yield startDestination(self, "+xa", "+B")
        port = self.serve(peers=[destinationPeer(storescp)], propose=proposing(ACCEPTOR_PREFERENCES["+xd"]))
        result = yield movescu(self, port, "P", DESTINATION, "QueryRetrieveLevel=PATIENT", "PatientID=P001")
        self.assertEqual(result.status, 0x0000, result.output)
        self.assertAsStored(receivedFiles(directory), instanceUIDs(patient="P001"))

    @defer.inlineCallbacks
    def test_get(self):
        """
        getscu C{+xd} proposes deflate first on its storage contexts, and
        dicomd accepts with C{+xa}; on those contexts, where it only sends,
        it takes explicit VR little endian, the syntax of the stored files.
        """
        from dicomd.ul.negotiation import ACCEPTOR_PREFERENCES

        port = self.serve(transferSyntaxes=ACCEPTOR_PREFERENCES["+xa"])
        result, directory = yield getscu(self, port, "P", "QueryRetrieveLevel=PATIENT", "PatientID=P001", extra=["+xd", "+B"])
        self.assertEqual(result.status, 0x0000, result.output)
        self.assertAsStored(receivedFiles(directory), instanceUIDs(patient="P001"))


# -- pynetdicom --------------------------------------------------------------------------

#: pynetdicom as Query/Retrieve SCU: C{script REQUEST}, REQUEST a JSON
#: object (see the functions below).  Prints one JSON line: the responses;
#: a move or get whose association does not end in a clean release (an
#: A-RELEASE-RP, not an abort) exits 3.
PYNETDICOM_SCU = r"""
import json
import os
import socket
import sys
import threading
import time

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt

MODELS = {
    "P": ("1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.1.2", "1.2.840.10008.5.1.4.1.2.1.3"),
    "S": ("1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.2.2", "1.2.840.10008.5.1.4.1.2.2.3"),
    "O": ("1.2.840.10008.5.1.4.1.2.3.1", "1.2.840.10008.5.1.4.1.2.3.2", "1.2.840.10008.5.1.4.1.2.3.3"),
}
request = json.loads(sys.argv[1])


def identifier(keys):
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def text(value):
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(item) for item in value]
    return str(value)


def failedList(identifier):
    value = identifier.FailedSOPInstanceUIDList
    return [str(uid) for uid in value] if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [str(value)]


def describeStatus(status):
    if "Status" not in status:
        return {"status": None}
    entry = {"status": int(status.Status)}
    for keyword in (
        "NumberOfRemainingSuboperations",
        "NumberOfCompletedSuboperations",
        "NumberOfFailedSuboperations",
        "NumberOfWarningSuboperations",
    ):
        if keyword in status:
            entry[keyword] = status.get(keyword)
    return entry


def associate(contexts, roles=(), handlers=()):
    ae = AE(ae_title="PYNETDICOM")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for context in contexts:
        ae.add_requested_context(*context)
    assoc = ae.associate("127.0.0.1", request["port"], ae_title="DICOMD", ext_neg=list(roles), evt_handlers=list(handlers))
    if not assoc.is_established:
        print(json.dumps({"error": "association not established"}))
        sys.exit(2)
    return assoc


def find():
    results = []
    for search in request["searches"]:
        model = MODELS[search["model"]][0]
        assoc = associate([(model,)])
        answers = []
        for query in search["queries"]:
            responses = []
            cancelAfter = query.get("cancelAfter")
            pending = 0
            for status, matched in assoc.send_c_find(identifier(query["keys"]), model):
                entry = describeStatus(status)
                if matched is not None:
                    entry["identifier"] = {element.keyword: text(element.value) for element in matched}
                    pending += 1
                    if cancelAfter is not None and pending == cancelAfter:
                        assoc.send_c_cancel(1, query_model=model)
                responses.append(entry)
            answers.append(responses)
        assoc.release()
        results.append(answers)
    return results


def move():
    model = MODELS[request["model"]][1]
    assoc = associate([(model,)])
    responses = []
    pending = 0
    for status, failed in assoc.send_c_move(identifier(request["keys"]), request["destination"], model):
        entry = describeStatus(status)
        if failed is not None and "FailedSOPInstanceUIDList" in failed:
            entry["failed"] = failedList(failed)
        responses.append(entry)
        if entry["status"] in (0xFF00, 0xFF01):
            pending += 1
            if pending == request.get("cancelAfter"):
                assoc.send_c_cancel(1, query_model=model)
    release(assoc)
    return responses


def get():
    model = MODELS[request["model"]][2]
    directory = request["directory"]
    storage = request["storage"]
    refuse = set(request.get("refuse", ()))

    def onStore(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        uid = str(ds.SOPInstanceUID)
        if uid in refuse:
            return 0xA700
        ds.save_as(os.path.join(directory, uid + ".dcm"), enforce_file_format=True)
        time.sleep(request.get("storeDelay", 0))
        return 0x0000

    contexts = [(model,)] + [(uid,) for uid in storage]
    roles = [build_role(uid, scp_role=True) for uid in storage]
    assoc = associate(contexts, roles, [(evt.EVT_C_STORE, onStore)])
    responses = []
    pending = 0
    for status, failed in assoc.send_c_get(identifier(request["keys"]), model):
        entry = describeStatus(status)
        if failed is not None and "FailedSOPInstanceUIDList" in failed:
            entry["failed"] = failedList(failed)
        responses.append(entry)
        if entry["status"] in (0xFF00, 0xFF01):
            pending += 1
            if pending == request.get("cancelAfter"):
                assoc.send_c_cancel(1, query_model=model)
    release(assoc)
    return responses


def release(assoc):
    assoc.release()
    if not assoc.is_released:
        print(json.dumps({"error": "the association was not released cleanly"}))
        sys.exit(3)


print(json.dumps({"find": find, "move": move, "get": get}[request["op"]]()))
"""


class PynetdicomTests(ArchiveTestCase):
    """
    pynetdicom's SCU, through its AE API, in a child process.
    """

    @defer.inlineCallbacks
    def pynetdicom(self, **request):
        result = yield runPythonScript(self, PYNETDICOM_SCU, json.dumps(request))
        self.assertEqual(result.exitCode, 0, result.describe())
        return json.loads(result.stdout.strip().splitlines()[-1])

    @defer.inlineCallbacks
    def test_find(self):
        """
        C-FIND in each model: matches as pending responses (0xFF00), then
        success; a Latin-1 query of a Latin-1 name.
        """
        port = self.serve()
        searches = [
            (
                "P",
                [
                    {"QueryRetrieveLevel": "PATIENT", "PatientID": "", "PatientName": "Doe*"},
                    {"QueryRetrieveLevel": "IMAGE", "PatientID": "P002", "StudyInstanceUID": studyUID(3),
                     "SeriesInstanceUID": seriesUID(3, 1), "SOPInstanceUID": "", "InstanceNumber": ""},
                ],
            ),
            (
                "S",
                [
                    {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "StudyDate": "20230101-", "PatientName": ""},
                    {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": studyUID(1), "SeriesInstanceUID": "", "Modality": "CT"},
                    {"QueryRetrieveLevel": "PATIENT", "PatientID": ""},
                ],
            ),
            (
                "O",
                [
                    {"QueryRetrieveLevel": "PATIENT", "SpecificCharacterSet": "ISO_IR 100", "PatientID": "", "PatientName": "M*"},
                    {"QueryRetrieveLevel": "STUDY", "PatientID": "P001", "StudyInstanceUID": "", "StudyTime": "-120000"},
                ],
            ),
        ]
        results = yield self.pynetdicom(
            op="find",
            port=port,
            searches=[{"model": model, "queries": [{"keys": q} for q in queries]} for model, queries in searches],
        )
        answers = dict(zip("PSO", results))

        def matches(responses, keyword):
            self.assertEqual(responses[-1], {"status": 0})
            self.assertTrue(all(r["status"] == 0xFF00 for r in responses[:-1]), responses)
            return [r["identifier"][keyword] for r in responses[:-1]]

        patients, images = answers["P"]
        self.assertEqual(matches(patients, "PatientID"), ["P001", "P004"])
        self.assertEqual(matches(images, "SOPInstanceUID"), instanceUIDs(study=3))
        self.assertEqual(matches(images, "InstanceNumber"), ["1", "2"])
        studies, series, patientLevel = answers["S"]
        self.assertEqual(matches(studies, "StudyInstanceUID"), [studyUID(1), studyUID(2), studyUID(4)])
        self.assertEqual(matches(studies, "PatientName"), ["Doe^John", "Doe^John", "Wang^XiaoDong=王^小東"])
        self.assertEqual(matches(series, "SeriesInstanceUID"), [seriesUID(1, 1), seriesUID(1, 2)])
        # PATIENT is no level of the Study Root model.
        self.assertEqual(patientLevel, [{"status": 0xC001}])
        patientsOnly, studiesOnly = answers["O"]
        self.assertEqual(matches(patientsOnly, "PatientName"), ["Müller^Jürgen"])
        self.assertEqual(patientsOnly[0]["identifier"]["SpecificCharacterSet"], "ISO_IR 100")
        self.assertEqual(matches(studiesOnly, "StudyInstanceUID"), [studyUID(1)])

    @defer.inlineCallbacks
    def test_findCancel(self):
        """
        pynetdicom's C-CANCEL after the first match of a C-FIND on a big
        index: 0xFE00, with fewer matches than there are.
        """
        port = serveManyPatients(self)
        holdUntilCancelled(self)
        ((responses,),) = yield self.pynetdicom(
            op="find",
            port=port,
            searches=[{"model": "P", "queries": [{"keys": {"QueryRetrieveLevel": "PATIENT", "PatientID": ""}, "cancelAfter": 1}]}],
        )
        self.assertEqual(responses[-1]["status"], 0xFE00)
        self.assertLess(len(responses) - 1, MANY_PATIENTS)

    @defer.inlineCallbacks
    def test_move(self):
        """
        C-MOVE to storescp: pending responses count down the remaining
        sub-operations, the final one has the totals.
        """
        storescp, directory = yield startDestination(self)
        port = self.serve(peers=[destinationPeer(storescp)])
        responses = yield self.pynetdicom(
            op="move",
            port=port,
            model="S",
            destination=DESTINATION,
            keys={"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": studyUID(1), "SeriesInstanceUID": "%s\\%s" % (seriesUID(1, 1), seriesUID(1, 2))},
        )
        self.assertEqual(
            [(r["status"], r.get("NumberOfRemainingSuboperations"), r.get("NumberOfCompletedSuboperations")) for r in responses],
            [(0xFF00, 2, 1), (0xFF00, 1, 2), (0x0000, None, 3)],
        )
        self.assertEqual(responses[-1]["NumberOfFailedSuboperations"], 0)
        self.assertSameDataSets(receivedFiles(directory), instanceUIDs(study=1))

    @defer.inlineCallbacks
    def test_moveSomeFail(self):
        """
        C-MOVE of everything to a CT-only storescp: 0xB000 and the failed
        UID list names the MR and secondary capture images.
        """
        profile = os.path.join(makeDirectory(self), "ct-only.cfg")
        with open(profile, "w") as f:
            f.write(CT_ONLY_PROFILE)
        storescp, directory = yield startDestination(self, "-xf", profile, "CTOnly")
        port = self.serve(peers=[destinationPeer(storescp)])
        responses = yield self.pynetdicom(
            op="move", port=port, model="S", destination=DESTINATION, keys={"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}
        )
        final = responses[-1]
        self.assertEqual(final["status"], 0xB000)
        self.assertEqual(sorted(final["failed"]), sorted(instanceUIDs(study=2) + instanceUIDs(study=5)))
        self.assertEqual((final["NumberOfCompletedSuboperations"], final["NumberOfFailedSuboperations"]), (6, 2))
        self.assertEqual(len(receivedFiles(directory)), 6)

    @defer.inlineCallbacks
    def test_getRefusedSOPClass(self):
        """
        A C-GET requestor that takes the storage SCP role for CT only: the
        CT images arrive, the MR one cannot be sent (no context), and the
        final status is 0xB000 with it in the failed list.
        """
        port = self.serve()
        directory = makeDirectory(self)
        responses = yield self.pynetdicom(
            op="get",
            port=port,
            model="P",
            directory=directory,
            storage=[CT_IMAGE_STORAGE],
            keys={"QueryRetrieveLevel": "PATIENT", "PatientID": "P001"},
        )
        final = responses[-1]
        self.assertEqual(final["status"], 0xB000, responses)
        self.assertEqual(final["failed"], instanceUIDs(study=2))
        self.assertEqual((final["NumberOfCompletedSuboperations"], final["NumberOfFailedSuboperations"]), (3, 1))
        self.assertSameDataSets(receivedFiles(directory), instanceUIDs(study=1))

    @defer.inlineCallbacks
    def test_getStoreFailure(self):
        """
        A C-GET requestor that answers one C-STORE with a failure status:
        that instance is in the failed list; when it is the only one, the
        status is 0xA702.
        """
        port = self.serve()
        directory = makeDirectory(self)
        responses = yield self.pynetdicom(
            op="get",
            port=port,
            model="S",
            directory=directory,
            storage=[CT_IMAGE_STORAGE],
            refuse=[instanceUID(3, 1, 1)],
            keys={"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": studyUID(3)},
        )
        self.assertEqual(responses[-1]["status"], 0xB000, responses)
        self.assertEqual(responses[-1]["failed"], [instanceUID(3, 1, 1)])
        self.assertEqual(sorted(receivedFiles(directory)), [instanceUID(3, 1, 2)])
        responses = yield self.pynetdicom(
            op="get",
            port=port,
            model="S",
            directory=makeDirectory(self),
            storage=[CT_IMAGE_STORAGE],
            refuse=[instanceUID(4, 1, 1)],
            keys={"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": studyUID(4)},
        )
        self.assertEqual(responses[-1]["status"], 0xA702, responses)
        self.assertEqual(responses[-1]["failed"], [instanceUID(4, 1, 1)])

    @defer.inlineCallbacks
    def test_getCancel(self):
        """
        C-CANCEL of a C-GET after its first pending response: the
        sub-operations stop (the requestor takes half a second per image),
        0xFE00 with images remaining.
        """
        port = self.serve()
        directory = makeDirectory(self)
        responses = yield self.pynetdicom(
            op="get",
            port=port,
            model="P",
            directory=directory,
            storage=[CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, SECONDARY_CAPTURE_STORAGE],
            storeDelay=0.5,
            cancelAfter=1,
            keys={"QueryRetrieveLevel": "PATIENT", "PatientID": ""},
        )
        final = responses[-1]
        self.assertEqual(final["status"], 0xFE00, responses)
        self.assertGreater(final["NumberOfRemainingSuboperations"], 0)
        self.assertEqual(len(receivedFiles(directory)), final["NumberOfCompletedSuboperations"])
        self.assertLess(final["NumberOfCompletedSuboperations"], len(archiveDatasets()))


# -- a destination that stalls ------------------------------------------------------------

#: pynetdicom as a move destination that answers the first C{ANSWERED}
#: C-STOREs (C{script PORT ANSWERED}) and never the next one: its handler
#: blocks on an event nobody sets.  It prints each C-STORE-RQ, the A-ABORT
#: or A-RELEASE-RQ it receives, and the closing of an association that
#: received a C-STORE (the harness's probe connection closes too).
STALLING_DESTINATION = r"""
import sys
import threading

from pynetdicom import AE, AllStoragePresentationContexts, evt

answered = int(sys.argv[2])
received = []
storing = set()
never = threading.Event()
printing = threading.Lock()


def say(line):
    # Handlers run in pynetdicom's association and DUL threads: one write
    # per line, or lines interleave.
    with printing:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def onStore(event):
    storing.add(event.assoc)
    received.append(event.request.AffectedSOPInstanceUID)
    say("C-STORE-RQ " + event.request.AffectedSOPInstanceUID)
    if len(received) > answered:
        never.wait()
    return 0x0000


def onPDU(event):
    name = type(event.pdu).__name__
    if name in ("A_ABORT_RQ", "A_RELEASE_RQ"):
        say("received " + name)


def onClosed(event):
    if event.assoc in storing:
        say("storing association closed")


ae = AE(ae_title="STALLER")
ae.supported_contexts = AllStoragePresentationContexts
ae.start_server(
    ("127.0.0.1", int(sys.argv[1])),
    evt_handlers=[(evt.EVT_C_STORE, onStore), (evt.EVT_PDU_RECV, onPDU), (evt.EVT_CONN_CLOSE, onClosed)],
)
"""


def startStallingDestination(testCase, answered: int):
    """
    Start L{STALLING_DESTINATION}, the move destination C{STALLER}.

    @return: a L{Deferred} firing with its L{ChildProcess}.
    """
    return startPythonScript(testCase, STALLING_DESTINATION, str(answered), name="pynetdicom stalling destination")


def capturedLog(testCase) -> List[str]:
    """
    The log lines of the test's own reactor from now on (the in-process
    archive's), formatted.
    """
    from twisted.logger import formatEvent, globalLogPublisher

    lines: List[str] = []

    def observe(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    testCase.addCleanup(globalLogPublisher.removeObserver, observe)
    return lines


class StalledDestinationTests(ArchiveTestCase):
    """
    A move destination that accepts the association and then never
    answers a C-STORE-RQ does not hold the C-MOVE, nor the requestor's
    association, for ever.
    """

    @defer.inlineCallbacks
    def test_defaultTimeoutEndsTheMove(self):
        """
        With no DIMSE timeout configured, the sub-association waits
        L{dicomd.peers.MOVE_DIMSE_TIMEOUT} for a C-STORE-RSP
        (shortened to 2 s here), then aborts: the requestor gets its final
        response, 0xB000 with the unanswered and the unsent instances
        failed and listed, and the destination receives an A-ABORT.
        """
        from dicomd import peers

        self.patch(peers, "MOVE_DIMSE_TIMEOUT", 2.0)
        log = capturedLog(self)
        staller = yield startStallingDestination(self, answered=1)
        port = self.serve(peers=[peers.Peer("STALLER", "127.0.0.1", staller.port)])
        result = yield movescu(self, port, "S", "STALLER", "QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + studyUID(1))
        uids = instanceUIDs(study=1)
        self.assertEqual(result.status, 0xB000, result.output + staller.describe())
        self.assertEqual(result.counts, {"remaining": None, "completed": 1, "failed": 2, "warning": 0}, result.output)
        self.assertEqual(result.failed, uids[1:])
        yield staller.waitForOutput(r"^received A_ABORT_RQ$")
        yield staller.waitForOutput(r"^storing association closed$")
        self.assertEqual(re.findall(r"^C-STORE-RQ (\S+)$", staller.stdout, re.MULTILINE), uids[:2])
        self.assertTrue(
            any(line.startswith("No response from STALLER to message 2 within the DIMSE timeout of 2.0 s") for line in log), log
        )

    @defer.inlineCallbacks
    def requestMove(self, port: int, destination: str, study: str):
        """
        Ask for a Study Root C-MOVE of C{study} with dicomd's own requestor,
        in the test's reactor, as C{MOVESCU}.

        @return: a L{Deferred} firing with the association and the
            L{Deferred} of the C-MOVE's final response.
        """
        from pydicom.dataset import Dataset
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ClientEndpoint

        from dicomd.dataset import encodeDataSet
        from dicomd.dimse.commands import CMoveRQ
        from dicomd.net.requestor import connect

        association = yield connect(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
            calledAETitle=TITLE,
            callingAETitle="MOVESCU",
            presentationContexts=[(MOVE_STUDY_ROOT, [EXPLICIT_VR_LITTLE_ENDIAN])],
            reactor=reactor,
        )
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = study
        context = association.contextFor(MOVE_STUDY_ROOT)
        moved = association.request(
            context.contextID,
            CMoveRQ(affectedSOPClassUID=MOVE_STUDY_ROOT, moveDestination=destination),
            encodeDataSet(identifier, context.transferSyntax),
        )
        return association, moved

    @defer.inlineCallbacks
    def assertMoveStopsWhenRequestorLeaves(self, startMove, leave):
        """
        Start a C-MOVE to a destination that never answers its first
        C-STORE-RQ, end the requestor's association once that request has
        arrived, and see the destination's sub-association aborted long
        before the DIMSE timeout could end it.

        @param startMove: called with the archive's port and the study to
            move; returns a L{Deferred} of the requestor.
        @param leave: called with the requestor: ends its association.
        """
        from dicomd import peers

        log = capturedLog(self)
        staller = yield startStallingDestination(self, answered=0)
        port = self.serve(peers=[peers.Peer("STALLER", "127.0.0.1", staller.port)])
        requestor = yield startMove(port, studyUID(1))
        yield staller.waitForOutput(r"^C-STORE-RQ ", timeout=30)
        yield leave(requestor)
        # A third of the DIMSE timeout the sub-association would otherwise
        # wait: generous, and still proof that it did not.
        deadline = peers.MOVE_DIMSE_TIMEOUT / 3
        yield staller.waitForOutput(r"^received A_ABORT_RQ$", timeout=deadline)
        yield staller.waitForOutput(r"^storing association closed$", timeout=deadline)
        self.assertEqual(len(re.findall(r"^C-STORE-RQ ", staller.stdout, re.MULTILINE)), 1, staller.describe())
        self.assertIn("C-MOVE from MOVESCU: its association ended; aborting the association to STALLER", log)
        # Logged once the destination's connection has closed on our side too.
        yield waitUntil(
            lambda: "C-MOVE from MOVESCU: 0 completed, 3 failed, 0 warnings, abandoned, its association ended" in log,
            timeout=deadline,
            message="\n".join(log),
        )

    def test_requestorAborts(self):
        """
        A requestor that sends A-ABORT during a C-MOVE: the sub-association
        is aborted at once.
        """

        def leave(requestor):
            from dicomd.errors import AssociationAborted

            association, moved = requestor
            association.abort()
            return self.assertFailure(moved, AssociationAborted)

        return self.assertMoveStopsWhenRequestorLeaves(lambda port, study: self.requestMove(port, "STALLER", study), leave)

    def test_requestorReleases(self):
        """
        A requestor that releases its association during a C-MOVE (without
        waiting for the final response): the sub-association is aborted at
        once, and the release completes.
        """

        @defer.inlineCallbacks
        def leave(requestor):
            from dicomd.errors import AssociationAborted

            association, moved = requestor
            yield association.release()
            yield self.assertFailure(moved, AssociationAborted)

        return self.assertMoveStopsWhenRequestorLeaves(lambda port, study: self.requestMove(port, "STALLER", study), leave)

    def test_requestorKilled(self):
        """
        DCMTK's movescu killed during a C-MOVE (its connection lost without
        A-ABORT): the sub-association is aborted at once.
        """

        def start(port, study):
            argv = [dcmtk("movescu"), "-S", "-aet", "MOVESCU", "-aec", TITLE, "-aem", "STALLER"]
            argv += ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study, "127.0.0.1", str(port)]
            return defer.succeed(spawn(self, argv, env=dcmtkEnvironment(), cwd=makeDirectory(self), name="movescu"))

        def leave(mover):
            mover.signalProcess("KILL")
            return mover.whenEnded()

        return self.assertMoveStopsWhenRequestorLeaves(start, leave)


# -- the real daemon ------------------------------------------------------------------------


class DaemonTests(ArchiveTestCase):
    """
    The real C{twistd -n dicomd} on a copy of the archive, as configured
    out of the box plus C{--peer}: C-FIND and C-GET in the Patient Root
    and Study Root models, C-MOVE to the peer.
    """

    @defer.inlineCallbacks
    def test_queryRetrieve(self):
        from dicomd.archive.index import SQLiteArchiveIndex, areaKey
        from dicomd.archive.service import INDEX_FILE

        data = os.path.join(makeDirectory(self), "data")
        shutil.copytree(self.archive.data, data)
        # The copy's rows are named by the original directory.
        index = SQLiteArchiveIndex(os.path.join(data, INDEX_FILE))
        index.adoptArea(areaKey(self.archive.data), areaKey(data))
        index.close()
        storescp, directory = yield startDestination(self)
        daemon = yield startDaemon(
            self, "--output-directory", data, "--peer", "%s:127.0.0.1:%d" % (DESTINATION, storescp.port)
        )
        patients = yield findscu(
            self, daemon.port, "P", "QueryRetrieveLevel=PATIENT", "SpecificCharacterSet=ISO_IR 192", "PatientID", "PatientName=*ü*"
        )
        self.assertEqual(patients.status, "Success", patients.output + daemon.describe())
        self.assertEqual(patients.values("PatientID"), ["P002"])
        studies = yield findscu(self, daemon.port, "S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "StudyDate=20240101-")
        self.assertEqual(studies.values("StudyInstanceUID"), [studyUID(1), studyUID(4)])
        # Patient/Study Only is not offered by the daemon's default AE.
        only = yield findscu(self, daemon.port, "O", "QueryRetrieveLevel=PATIENT", "PatientID")
        self.assertIn("No Acceptable Presentation Contexts", only.output)
        moved = yield movescu(self, daemon.port, "S", DESTINATION, "QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + studyUID(4))
        self.assertEqual(moved.status, 0x0000, moved.output + daemon.describe())
        self.assertSameDataSets(receivedFiles(directory), instanceUIDs(study=4))
        unknown = yield movescu(self, daemon.port, "S", "NOWHERE", "QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + studyUID(4))
        self.assertEqual(unknown.status, 0xA801, unknown.output)
        got, getDirectory = yield getscu(self, daemon.port, "P", "QueryRetrieveLevel=PATIENT", "PatientID=P002")
        self.assertEqual(got.status, 0x0000, got.output + daemon.describe())
        self.assertSameDataSets(receivedFiles(getDirectory), instanceUIDs(patient="P002"))
