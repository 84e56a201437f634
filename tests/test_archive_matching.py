"""
Tests for L{dicomd.archive.matching} and L{dicomd.archive.responses}:
conditions, hierarchy and responses,
without a database.
"""

import logging
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from twisted.trial.unittest import SynchronousTestCase

from dicomd.archive.matching import (
    KEYS,
    PATIENT_ROOT,
    PATIENT_STUDY_ONLY,
    STUDY_ROOT,
    IdentifierError,
    Level,
    QueryError,
    Range,
    SingleValue,
    UIDList,
    Unmatchable,
    Wildcard,
    attributeText,
    checkFindIdentifier,
    checkRetrieveIdentifier,
    conditionFor,
    elementText,
    keysOfLevel,
    modelForSOPClass,
    parseIdentifier,
    sortableValue,
    uniqueKey,
)
from dicomd.archive.responses import addRetrieveAETitle, encodeResponse, responseCharacterSet
from dicomd.dimse.status import (
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    UNABLE_TO_PROCESS,
)

KEY = {key.keyword: key for key in KEYS}


def identifier(level, **keys):
    """
    A request identifier at a level with the given keys (C{""} for a
    return key).  (Query values such as C{2020-} are not valid values for
    pydicom.)
    """
    dataset = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if level is not None:
            dataset.QueryRetrieveLevel = level
        for keyword, value in keys.items():
            setattr(dataset, keyword, value)
    return dataset


class ModelTests(SynchronousTestCase):
    """
    Tests for the information models.
    """

    def test_modelForSOPClass(self):
        """
        The FIND, MOVE and GET SOP classes of each model map to it.
        """
        self.assertIs(modelForSOPClass("1.2.840.10008.5.1.4.1.2.1.1"), PATIENT_ROOT)
        self.assertIs(modelForSOPClass("1.2.840.10008.5.1.4.1.2.2.2"), STUDY_ROOT)
        self.assertIs(
            modelForSOPClass("1.2.840.10008.5.1.4.1.2.3.3"), PATIENT_STUDY_ONLY
        )

    def test_otherSOPClass(self):
        """
        Any other SOP class has no model.
        """
        self.assertIsNone(modelForSOPClass("1.2.840.10008.1.1"))

    def test_levels(self):
        """
        Each model has the levels of PS3.4 C.6, top first.
        """
        self.assertEqual(PATIENT_ROOT.levels, tuple(Level))
        self.assertEqual(STUDY_ROOT.levels, (Level.STUDY, Level.SERIES, Level.IMAGE))
        self.assertEqual(PATIENT_STUDY_ONLY.levels, (Level.PATIENT, Level.STUDY))


class KeyTests(SynchronousTestCase):
    """
    Tests for the table of query keys.
    """

    def test_dcmqrscpKeys(self):
        """
        The keys are those of dcmqrscp's manual, plus SOP Class UID.
        """
        self.assertEqual(
            [key.keyword for key in keysOfLevel(Level.SERIES)],
            ["Modality", "SeriesInstanceUID", "SeriesNumber"],
        )
        self.assertEqual(
            [key.keyword for key in keysOfLevel(Level.IMAGE)],
            ["SOPInstanceUID", "SOPClassUID", "InstanceNumber"],
        )
        self.assertEqual(len(keysOfLevel(Level.PATIENT)), 10)
        self.assertEqual(len(keysOfLevel(Level.STUDY)), 15)

    def test_uniqueKeys(self):
        """
        Each level has its unique key.
        """
        self.assertEqual(
            [uniqueKey(level).keyword for level in Level],
            ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"],
        )

    def test_vrFromDictionary(self):
        """
        A key's VR is the data dictionary's.
        """
        self.assertEqual(KEY["PatientName"].vr, "PN")
        self.assertEqual(KEY["StudyID"].vr, "SH")
        self.assertEqual(KEY["PatientAge"].vr, "AS")
        self.assertEqual(KEY["OtherStudyNumbers"].vr, "IS")

    def test_ordered(self):
        """
        DA and TM keys, and only they, are ordered.
        """
        self.assertEqual(
            sorted(key.keyword for key in KEYS if key.ordered),
            ["PatientBirthDate", "PatientBirthTime", "StudyDate", "StudyTime"],
        )


class ElementTextTests(SynchronousTestCase):
    """
    Tests for L{elementText}.
    """

    def test_absent(self):
        """
        An absent element has empty text.
        """
        self.assertEqual(elementText(None), "")

    def test_empty(self):
        """
        An element without value has empty text.
        """
        self.assertEqual(elementText(DataElement(0x00100010, "PN", None)), "")

    def test_trimmed(self):
        """
        Leading and trailing spaces are removed.
        """
        self.assertEqual(
            elementText(DataElement(0x00100020, "LO", "  P 1  ")), "P 1"
        )

    def test_multiValued(self):
        """
        Values are joined by a backslash.
        """
        element = DataElement(0x0020000D, "UI", ["1.2", "1.3"])
        self.assertEqual(elementText(element), "1.2\\1.3")

    def test_personName(self):
        """
        A person name is its whole text, component groups included.
        """
        element = DataElement(0x00100010, "PN", "Wang^Xiaodong=王^小东")
        self.assertEqual(elementText(element), "Wang^Xiaodong=王^小东")


#: ASCII values weighted towards the characters that delimit and pad:
#: backslash, space, NUL, the PN group and component delimiters and the
#: characters of numbers.
_asciiValues = st.lists(
    st.one_of(
        st.sampled_from(list(" \\\x00=^.+-eE09aZ")),
        st.characters(min_codepoint=0, max_codepoint=0x7F, blacklist_characters="\x1b"),
    ),
    max_size=16,
).map(lambda chars: "".join(chars).encode("ascii"))


def _undecoded(key, value, explicit):
    """
    A data set holding one undecoded element, as
    L{dicomd.storage.part10.scanHead} builds them.
    """
    if len(value) % 2:
        value += b" "
    vr = key.vr if explicit else None
    element = RawDataElement(key.tag, vr, len(value), value, 0, not explicit, True)
    dataset = Dataset({key.tag: element})
    dataset.set_original_encoding(not explicit, True, "iso8859")
    return dataset


def _quietly(read, *arguments):
    """
    Call C{read} without the warnings and log lines pydicom gives for
    invalid values.
    """
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read(*arguments)
    finally:
        logging.disable(logging.NOTSET)


def _pydicomText(dataset, key):
    return elementText(dataset.get(key.tag))


class AttributeTextTests(SynchronousTestCase):
    """
    Tests for L{attributeText}, which reads ASCII values without pydicom.
    """

    @settings(
        max_examples=3000,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.sampled_from(KEYS), _asciiValues, st.booleans())
    def test_asPydicomReadsIt(self, key, value, explicit):
        """
        The text of every key, for any ASCII value in either VR encoding, is
        the text of the element pydicom decodes.
        """
        fast = _quietly(attributeText, _undecoded(key, value, explicit), key)
        slow = _quietly(_pydicomText, _undecoded(key, value, explicit), key)
        self.assertEqual(fast, slow, (key.keyword, value))

    def test_absent(self):
        """
        An absent key has empty text.
        """
        self.assertEqual(attributeText(Dataset(), KEY["PatientID"]), "")

    def test_characterSet(self):
        """
        A value beyond ASCII is decoded in the data set's character set.
        """
        key = KEY["PatientName"]
        dataset = Dataset({key.tag: RawDataElement(key.tag, "PN", 6, "Müller".encode("latin-1"), 0, False, True)})
        dataset.set_original_encoding(False, True, "latin_1")
        self.assertEqual(attributeText(dataset, key), "Müller")

    def test_numbers(self):
        """
        Numbers pydicom keeps as written are read as written; longer ones,
        which pydicom reshapes, are read its way.
        """
        values = [b"007", b"+1", b"-0", b" 12 ", b"1.", b".5", b"1e5", b"1E+05", b"-.5e-3", b"1.50", b"1\x00"]
        values += [b"9" * n for n in range(1, 20)] + [b"1." + b"3" * n for n in range(1, 20)]
        for keyword in ("SeriesNumber", "PatientSize"):
            key = KEY[keyword]
            for value in values:
                fast = _quietly(attributeText, _undecoded(key, value, True), key)
                slow = _quietly(_pydicomText, _undecoded(key, value, True), key)
                self.assertEqual(fast, slow, (keyword, value))

    def test_unreadable(self):
        """
        A value pydicom cannot read is taken as written, rather than
        failing the whole instance.
        """
        key = KEY["InstanceNumber"]
        self.assertEqual(_quietly(attributeText, _undecoded(key, b"1.5e1111", True), key), "1.5e1111")

    def test_decodedElement(self):
        """
        An element pydicom has already decoded (or one set by hand) is read
        as L{elementText} reads it.
        """
        dataset = Dataset()
        dataset.PatientID = "  P 1 "
        self.assertEqual(attributeText(dataset, KEY["PatientID"]), "P 1")


class SortableValueTests(SynchronousTestCase):
    """
    Tests for L{sortableValue}, DCMTK's parsing of DA and TM.
    """

    def date(self, text):
        return sortableValue(KEY["StudyDate"], text)

    def time(self, text):
        return sortableValue(KEY["StudyTime"], text)

    def test_date(self):
        """
        A date is C{YYYYMMDD}.
        """
        self.assertEqual(self.date("20200131"), "20200131")

    def test_oldDate(self):
        """
        The pre-1993 form C{YYYY.MM.DD} is a date too.
        """
        self.assertEqual(self.date("2020.01.31"), "20200131")

    def test_invalidDates(self):
        """
        Other forms, months beyond 12 and days beyond 31 are not dates.
        """
        for text in ["2020013", "2020-01-31", "20201301", "20200132", "2020010a", ""]:
            self.assertEqual(self.date(text), "", text)

    def test_times(self):
        """
        C{HH}, C{HHMM}, C{HHMMSS} and C{HHMMSS.F...} are times, padded to
        microseconds.
        """
        self.assertEqual(self.time("12"), "120000.000000")
        self.assertEqual(self.time("1230"), "123000.000000")
        self.assertEqual(self.time("123045"), "123045.000000")
        self.assertEqual(self.time("123045.5"), "123045.500000")
        self.assertEqual(self.time("123045.1234567"), "123045.123456")

    def test_oldTimes(self):
        """
        The pre-1993 forms with colons are times too.
        """
        self.assertEqual(self.time("12:30"), "123000.000000")
        self.assertEqual(self.time("12:30:45"), "123045.000000")
        self.assertEqual(self.time("12:30:45.25"), "123045.250000")

    def test_leapSecond(self):
        """
        Second 60 is allowed, as DCMTK allows it.
        """
        self.assertEqual(self.time("235960"), "235960.000000")

    def test_invalidTimes(self):
        """
        Odd lengths, out of range fields and dangling separators are not
        times.
        """
        for text in ["1", "123", "2400", "1260", "120061", "120000.", "12:3", "12:30:"]:
            self.assertEqual(self.time(text), "", text)


class ConditionTests(SynchronousTestCase):
    """
    Tests for L{conditionFor}: which matching a query value asks for.
    """

    def test_universal(self):
        """
        An empty value is universal matching.
        """
        for key in KEYS:
            self.assertIsNone(conditionFor(key, ""), key.keyword)

    def test_onlyAsterisks(self):
        """
        A value of asterisks is universal matching for wildcard VRs.
        """
        self.assertIsNone(conditionFor(KEY["PatientName"], "**"))

    def test_wildcard(self):
        """
        C{*} or C{?} in a value of a wildcard VR is wildcard matching.
        """
        key = KEY["PatientName"]
        self.assertEqual(conditionFor(key, "Doe*"), Wildcard(key, "Doe*"))
        self.assertEqual(conditionFor(key, "D?e^John"), Wildcard(key, "D?e^John"))

    def test_singleValue(self):
        """
        Without wildcards, a value is single value matching.
        """
        key = KEY["AccessionNumber"]
        self.assertEqual(conditionFor(key, "ACC1"), SingleValue(key, "ACC1"))

    def test_noWildcardsForNumbers(self):
        """
        IS, DS and AS values match literally, asterisks included.
        """
        for keyword in ["SeriesNumber", "PatientWeight", "PatientAge"]:
            key = KEY[keyword]
            self.assertEqual(conditionFor(key, "1*"), SingleValue(key, "1*"))

    def test_uidList(self):
        """
        Backslash-separated UIDs are list of UID matching.
        """
        key = KEY["StudyInstanceUID"]
        self.assertEqual(
            conditionFor(key, "1.2\\1.3"), UIDList(key, ("1.2", "1.3"))
        )

    def test_singleUID(self):
        """
        A single UID is single value matching, an asterisk included.
        """
        key = KEY["SOPInstanceUID"]
        self.assertEqual(conditionFor(key, "1.2.*"), SingleValue(key, "1.2.*"))

    def test_dateSingleValue(self):
        """
        A single date matches on its sortable form.
        """
        key = KEY["StudyDate"]
        self.assertEqual(
            conditionFor(key, "2020.01.31"), SingleValue(key, "20200131")
        )

    def test_dateRanges(self):
        """
        Closed and open-ended date ranges.
        """
        key = KEY["StudyDate"]
        self.assertEqual(
            conditionFor(key, "20200101-20201231"),
            Range(key, "20200101", "20201231"),
        )
        self.assertEqual(conditionFor(key, "20200101-"), Range(key, "20200101", None))
        self.assertEqual(conditionFor(key, "-20201231"), Range(key, None, "20201231"))
        self.assertEqual(conditionFor(key, "-"), Range(key, None, None))

    def test_timeRange(self):
        """
        A time range compares parsed times.
        """
        key = KEY["StudyTime"]
        self.assertEqual(
            conditionFor(key, "0800-1230"),
            Range(key, "080000.000000", "123000.000000"),
        )

    def test_invalidDate(self):
        """
        A query date that does not parse matches nothing.
        """
        key = KEY["StudyDate"]
        self.assertEqual(conditionFor(key, "2020"), Unmatchable(key))
        self.assertEqual(conditionFor(key, "2020-20201231"), Unmatchable(key))


class ParseIdentifierTests(SynchronousTestCase):
    """
    Tests for L{parseIdentifier}: dcmqrscp's hierarchical search.
    """

    def assertQueryError(self, status, model, dataset):
        error = self.assertRaises(QueryError, parseIdentifier, model, dataset)
        self.assertEqual(error.status, status)
        return error

    def test_missingLevel(self):
        """
        An identifier without Query/Retrieve Level does not match the SOP
        class.
        """
        self.assertQueryError(
            IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
            STUDY_ROOT,
            identifier(None, StudyInstanceUID=""),
        )

    def test_illegalLevel(self):
        """
        An unknown level cannot be processed.
        """
        error = self.assertQueryError(
            UNABLE_TO_PROCESS, STUDY_ROOT, identifier("VOLUME")
        )
        self.assertIn("VOLUME", error.message)

    def test_lowerCaseLevel(self):
        """
        The level is read ignoring case, as dcmqrscp reads it.
        """
        query = parseIdentifier(STUDY_ROOT, identifier("study"))
        self.assertIs(query.level, Level.STUDY)

    def test_levelNotInModel(self):
        """
        A level the model does not have cannot be processed.
        """
        self.assertQueryError(UNABLE_TO_PROCESS, STUDY_ROOT, identifier("PATIENT"))
        self.assertQueryError(
            UNABLE_TO_PROCESS,
            PATIENT_STUDY_ONLY,
            identifier("SERIES", PatientID="P1", StudyInstanceUID="1.2"),
        )

    def test_missingUniqueKeyAbove(self):
        """
        Each level above the query level needs its unique key.
        """
        error = self.assertQueryError(
            UNABLE_TO_PROCESS, PATIENT_ROOT, identifier("STUDY", PatientName="Doe*")
        )
        self.assertIn("PatientID", error.message)

    def test_studyRootHasNoPatientLevel(self):
        """
        In the Study Root model, a series query needs the study's UID, not
        the patient's ID.
        """
        query = parseIdentifier(
            STUDY_ROOT, identifier("SERIES", StudyInstanceUID="1.2", Modality="CT")
        )
        self.assertEqual(
            set(query.conditions),
            {
                SingleValue(KEY["StudyInstanceUID"], "1.2"),
                SingleValue(KEY["Modality"], "CT"),
            },
        )

    def test_emptyUniqueKeyAbove(self):
        """
        An empty unique key above the query level is universal matching.
        """
        query = parseIdentifier(
            PATIENT_ROOT, identifier("STUDY", PatientID="", StudyDate="20200101")
        )
        self.assertEqual(query.conditions, (SingleValue(KEY["StudyDate"], "20200101"),))

    def test_otherKeysAboveNotMatched(self):
        """
        Keys above the query level other than unique keys are not matched.
        """
        query = parseIdentifier(
            PATIENT_ROOT,
            identifier("STUDY", PatientID="P1", PatientName="Nobody", StudyID=""),
        )
        self.assertEqual(query.conditions, (SingleValue(KEY["PatientID"], "P1"),))

    def test_studyRootPatientKeys(self):
        """
        In the Study Root model, patient keys are matched at the STUDY level.
        """
        query = parseIdentifier(STUDY_ROOT, identifier("STUDY", PatientName="Doe*"))
        self.assertEqual(query.conditions, (Wildcard(KEY["PatientName"], "Doe*"),))

    def test_studyRootPatientKeysBelow(self):
        """
        In the Study Root model, patient keys are not matched below the
        STUDY level.
        """
        query = parseIdentifier(
            STUDY_ROOT,
            identifier("SERIES", StudyInstanceUID="", PatientName="Doe*"),
        )
        self.assertEqual(query.conditions, ())

    def test_keysBelowIgnored(self):
        """
        Keys below the query level are not matched.
        """
        query = parseIdentifier(
            PATIENT_ROOT, identifier("PATIENT", PatientID="P1", Modality="CT")
        )
        self.assertEqual(query.conditions, (SingleValue(KEY["PatientID"], "P1"),))

    def test_unsupportedKeysIgnored(self):
        """
        Keys dcmqrscp does not support are neither matched nor returned.
        """
        query = parseIdentifier(
            STUDY_ROOT, identifier("STUDY", ModalitiesInStudy="CT", StudyDate="")
        )
        self.assertEqual(query.conditions, ())
        self.assertEqual(query.returnKeys, (KEY["StudyDate"],))

    def test_returnKeys(self):
        """
        The return keys are the supported keys of the request in tag order;
        the stored ones are those at or above the query level.
        """
        query = parseIdentifier(
            PATIENT_ROOT,
            identifier(
                "STUDY", StudyInstanceUID="", PatientID="", PatientName="", Modality=""
            ),
        )
        self.assertEqual(
            [key.keyword for key in query.returnKeys],
            ["Modality", "PatientName", "PatientID", "StudyInstanceUID"],
        )
        self.assertEqual(
            [key.keyword for key in query.storedKeys],
            ["PatientName", "PatientID", "StudyInstanceUID"],
        )

    def test_characterSet(self):
        """
        The request's Specific Character Set is kept.
        """
        query = parseIdentifier(
            STUDY_ROOT, identifier("STUDY", SpecificCharacterSet="ISO_IR 100")
        )
        self.assertEqual(query.characterSet, ("ISO_IR 100",))


class CheckFindIdentifierTests(SynchronousTestCase):
    """
    Tests for L{checkFindIdentifier}, dcmqrscp's C{--check-find}.
    """

    def assertRejected(self, model, dataset, fragment):
        error = self.assertRaises(
            IdentifierError, checkFindIdentifier, model, dataset
        )
        self.assertEqual(error.status, IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS)
        self.assertIn(fragment, error.message)

    def test_valid(self):
        """
        A hierarchical identifier passes.
        """
        checkFindIdentifier(
            PATIENT_ROOT,
            identifier("SERIES", PatientID="P1", StudyInstanceUID="1.2", Modality=""),
        )
        checkFindIdentifier(
            STUDY_ROOT, identifier("STUDY", PatientName="D*", StudyInstanceUID="")
        )

    def test_levelNotInModel(self):
        """
        A level the model does not have is rejected.
        """
        self.assertRejected(STUDY_ROOT, identifier("PATIENT", PatientID=""), "PATIENT")

    def test_nonUniqueKeyAbove(self):
        """
        Above the query level only unique keys are allowed.
        """
        self.assertRejected(
            PATIENT_ROOT,
            identifier("STUDY", PatientID="P1", PatientName="", StudyDate=""),
            "non-unique key PatientName",
        )

    def test_emptyUniqueKeyAbove(self):
        """
        A unique key above the query level must have a value.
        """
        self.assertRejected(
            PATIENT_ROOT, identifier("STUDY", PatientID="", StudyDate=""), "empty"
        )

    def test_missingUniqueKeyAbove(self):
        """
        A unique key above the query level must be present.
        """
        self.assertRejected(
            STUDY_ROOT, identifier("IMAGE", StudyInstanceUID="1.2", SOPInstanceUID=""),
            "SeriesInstanceUID",
        )

    def test_noKeyAtLevel(self):
        """
        At least one key of the query level is required.
        """
        self.assertRejected(
            PATIENT_ROOT, identifier("STUDY", PatientID="P1"), "no key of the query level"
        )

    def test_onlyPatientKeysInStudyRoot(self):
        """
        In the Study Root model, patient keys do not count as keys of the
        STUDY level.
        """
        self.assertRejected(
            STUDY_ROOT, identifier("STUDY", PatientName="D*"), "no key of the query level"
        )

    def test_keyBelowLevel(self):
        """
        Keys below the query level are rejected.
        """
        self.assertRejected(
            STUDY_ROOT,
            identifier("STUDY", StudyInstanceUID="", Modality=""),
            "below the query level",
        )

    def test_studyRootPatientKeyBelowStudy(self):
        """
        In the Study Root model, patient keys are only allowed in STUDY
        queries.
        """
        self.assertRejected(
            STUDY_ROOT,
            identifier("SERIES", StudyInstanceUID="1.2", PatientName="", Modality=""),
            "patient key",
        )

    def test_patientStudyOnlyHasNoSeries(self):
        """
        Series keys are rejected in the Patient/Study Only model.
        """
        self.assertRejected(
            PATIENT_STUDY_ONLY,
            identifier("STUDY", PatientID="P1", StudyDate="", SeriesNumber=""),
            "SeriesNumber",
        )


class CheckRetrieveIdentifierTests(SynchronousTestCase):
    """
    Tests for L{checkRetrieveIdentifier}, dcmqrscp's C{--check-move}.
    """

    def test_valid(self):
        """
        Unique keys down to the retrieve level pass.
        """
        checkRetrieveIdentifier(
            PATIENT_ROOT, identifier("STUDY", PatientID="P1", StudyInstanceUID="1.2")
        )
        checkRetrieveIdentifier(
            STUDY_ROOT, identifier("STUDY", StudyInstanceUID="1.2\\1.3")
        )

    def test_nonUniqueKeyAtLevel(self):
        """
        The retrieve level too allows only its unique key.
        """
        self.assertRaises(
            IdentifierError,
            checkRetrieveIdentifier,
            STUDY_ROOT,
            identifier("STUDY", StudyInstanceUID="1.2", StudyDate="20200101"),
        )

    def test_missingUniqueKeyAtLevel(self):
        """
        The unique key of the retrieve level is required.
        """
        self.assertRaises(
            IdentifierError,
            checkRetrieveIdentifier,
            PATIENT_ROOT,
            identifier("SERIES", PatientID="P1", StudyInstanceUID="1.2"),
        )

    def test_studyRootPatientKey(self):
        """
        The Study Root model allows no patient key in a retrieval.
        """
        self.assertRaises(
            IdentifierError,
            checkRetrieveIdentifier,
            STUDY_ROOT,
            identifier("STUDY", StudyInstanceUID="1.2", PatientID="P1"),
        )


def roundTrip(dataset):
    """
    Encode a dataset with its own character set and decode it again.
    """
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, True
    write_dataset(out, dataset)
    return read_dataset(DicomBytesIO(out.getvalue()), True, True)


class ResponseTests(SynchronousTestCase):
    """
    Tests for L{Query.response}, L{ResponseIdentifier} and
    L{responseCharacterSet}.
    """

    def query(self, **keys):
        return parseIdentifier(STUDY_ROOT, identifier("STUDY", **keys))

    def test_values(self):
        """
        Each return key gets its stored value, the level is set.
        """
        response = self.query(PatientName="", StudyDate="").response(
            {"PatientName": "Doe^John", "StudyDate": "20200101"}
        ).dataset()
        self.assertEqual(response.PatientName, "Doe^John")
        self.assertEqual(response.StudyDate, "20200101")
        self.assertEqual(response.QueryRetrieveLevel, "STUDY")

    def test_emptyValue(self):
        """
        A key without stored value comes back empty.
        """
        response = self.query(PatientBirthDate="").response({"PatientBirthDate": ""}).dataset()
        self.assertIn("PatientBirthDate", response)
        self.assertFalse(response.PatientBirthDate)

    def test_keyBelowLevel(self):
        """
        A key below the query level comes back empty.
        """
        response = self.query(SeriesInstanceUID="").response({}).dataset()
        self.assertIn("SeriesInstanceUID", response)
        self.assertFalse(response.SeriesInstanceUID)

    def test_asciiWithoutCharacterSet(self):
        """
        An ASCII request with ASCII values gets no Specific Character Set.
        """
        response = self.query(PatientName="").response({"PatientName": "Doe^John"}).dataset()
        self.assertNotIn("SpecificCharacterSet", response)

    def test_asciiRequestLatinValues(self):
        """
        An ASCII request whose values need more gets UTF-8.
        """
        response = self.query(PatientName="").response({"PatientName": "Müller"}).dataset()
        self.assertEqual(response.SpecificCharacterSet, "ISO_IR 192")
        self.assertEqual(roundTrip(response).PatientName, "Müller")

    def test_requestCharacterSetKept(self):
        """
        The request's character set is used when it can encode every value.
        """
        query = self.query(SpecificCharacterSet="ISO_IR 100", PatientName="")
        response = query.response({"PatientName": "Müller^Jürgen"}).dataset()
        self.assertEqual(response.SpecificCharacterSet, "ISO_IR 100")
        self.assertEqual(roundTrip(response).PatientName, "Müller^Jürgen")

    def test_fallbackToUTF8(self):
        """
        When the request's character set cannot encode a value, UTF-8 is
        used.
        """
        query = self.query(SpecificCharacterSet="ISO_IR 100", PatientName="")
        response = query.response({"PatientName": "Wang^Xiaodong=王^小东"}).dataset()
        self.assertEqual(response.SpecificCharacterSet, "ISO_IR 192")
        self.assertEqual(roundTrip(response).PatientName, "Wang^Xiaodong=王^小东")

    def test_codeExtensions(self):
        """
        A character set with code extensions keeps values that need
        switching between its parts.
        """
        self.assertEqual(
            responseCharacterSet(("", "ISO 2022 IR 87"), ["Yamada^Tarou=山田^太郎"]),
            ("", "ISO 2022 IR 87"),
        )

    def test_isoIR6(self):
        """
        C{ISO_IR 6} is ASCII: accented letters need UTF-8.
        """
        self.assertEqual(responseCharacterSet(("ISO_IR 6",), ["abc"]), ("ISO_IR 6",))
        self.assertEqual(responseCharacterSet(("ISO_IR 6",), ["é"]), ("ISO_IR 192",))

    def test_encodeResponse(self):
        """
        L{encodeResponse} writes a response as pydicom writes it, in
        implicit and explicit VR little endian, plain ASCII elements added
        to it included; an element it does not handle gives C{None}.
        """
        query = self.query(SpecificCharacterSet="ISO_IR 100", PatientName="", StudyInstanceUID="")

        def response():
            response = query.response({"PatientName": "Müller^Jürgen", "StudyInstanceUID": "1.2.3"}).dataset()
            response.RetrieveAETitle = "QRSCP"
            return response

        for implicit in (True, False):
            out = DicomBytesIO()
            out.is_little_endian, out.is_implicit_VR = True, implicit
            write_dataset(out, response())
            self.assertEqual(encodeResponse(response(), implicit), out.getvalue())
        response = response()
        response.Rows = 1
        self.assertIsNone(encodeResponse(response, False))

    def test_addRetrieveAETitle(self):
        """
        L{addRetrieveAETitle} adds the title as setting it with pydicom
        does: read back, and encoded by L{encodeResponse} or by pydicom.
        """
        query = self.query(PatientName="", StudyInstanceUID="")
        byPydicom = query.response({"PatientName": "Doe", "StudyInstanceUID": "1.2.3"}).dataset()
        byPydicom.RetrieveAETitle = "QRSCP"
        added = query.response({"PatientName": "Doe", "StudyInstanceUID": "1.2.3"}).dataset()
        addRetrieveAETitle(added, "QRSCP")
        for implicit in (True, False):
            out = DicomBytesIO()
            out.is_little_endian, out.is_implicit_VR = True, implicit
            write_dataset(out, byPydicom)
            self.assertEqual(encodeResponse(added, implicit), out.getvalue())
        self.assertEqual(added.RetrieveAETitle, "QRSCP")

    def test_encodeIsPydicom(self):
        """
        L{ResponseIdentifier.encode} writes, in implicit and explicit VR
        little endian, what pydicom's writer writes for its C{dataset} with
        the Retrieve AE Title: ASCII values, values of odd length, empty
        ones, keys below the level, the request's character set and the
        UTF-8 fallback.
        """
        cases = [
            ({}, {"PatientName": "Doe^John", "StudyDate": "20200101", "StudyInstanceUID": "1.2.3"}),
            ({}, {"PatientName": "Odd", "StudyDate": "", "StudyInstanceUID": "1.2"}),
            ({}, {"PatientName": "Müller", "StudyDate": "20200101", "StudyInstanceUID": "1.2.3"}),
            ({"SpecificCharacterSet": "ISO_IR 100"}, {"PatientName": "Müller^Jürgen", "StudyDate": "", "StudyInstanceUID": "1.2.33"}),
            ({"SpecificCharacterSet": "ISO_IR 100"}, {"PatientName": "Doe", "StudyDate": "2020", "StudyInstanceUID": "1.2.33"}),
            ({"SpecificCharacterSet": "ISO_IR 100"}, {"PatientName": "Wang^Xiaodong=王^小东", "StudyDate": "", "StudyInstanceUID": "1"}),
        ]
        for keys, values in cases:
            query = self.query(PatientName="", StudyDate="", StudyInstanceUID="", SeriesInstanceUID="", **keys)
            response = query.response(values)
            for implicit in (True, False):
                expected = response.dataset()
                expected.RetrieveAETitle = "QRSCP"
                out = DicomBytesIO()
                out.is_little_endian, out.is_implicit_VR = True, implicit
                write_dataset(out, expected)
                self.assertEqual(response.encode(implicit, "QRSCP"), out.getvalue(), (keys, values, implicit))

    def test_asciiValuesKeepCharacterSet(self):
        """
        A response of ASCII values declares the request's character set,
        whatever it is, as L{responseCharacterSet} chooses for them.
        """
        for terms in ((), ("ISO_IR 6",), ("ISO_IR 100",), ("", "ISO 2022 IR 87"), ("GB18030",)):
            query = self.query(SpecificCharacterSet="\\".join(terms), PatientName="") if terms else self.query(PatientName="")
            response = query.response({"PatientName": "Doe^John"})
            self.assertEqual(response.characterSet, responseCharacterSet(query.characterSet, ["Doe^John"]), terms)
