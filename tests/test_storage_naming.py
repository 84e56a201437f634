"""
Tests for L{dicomd.storage.naming}: storescp 3.6.8's file and directory
names, and that nothing received over the network can name a path outside
the output directory.
"""

import os
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dicomd.storage.naming import (
    ANONYMOUS,
    FileNamer,
    FileNameScheme,
    TimeNames,
    defaultFileName,
    directoryTimeStamp,
    fileTimeStamp,
    joinUnder,
    patientDirectoryName,
    renamedFileName,
    renamedFileNames,
    safeComponent,
    studyDirectoryName,
    timestampDirectoryName,
    transliteratePatientName,
    uniqueFileName,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
MULTIFRAME_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
DRAFT_SR_TEXT = "1.2.840.10008.5.1.4.1.1.88.1"
PRIVATE_CLASS = "1.3.6.1.4.1.9590.100.1.1.111"

#: 2024-01-02 03:04:05.678999, the milliseconds truncated to 678.
WHEN = datetime(2024, 1, 2, 3, 4, 5, 678999)
SAME_MILLISECOND = datetime(2024, 1, 2, 3, 4, 5, 678000)
NEXT_MILLISECOND = datetime(2024, 1, 2, 3, 4, 5, 679000)


class SafeComponentTests(SynchronousTestCase):
    """
    Tests for L{safeComponent}.
    """

    def test_wellFormedUnchanged(self) -> None:
        """
        Names DCMTK writes unchanged (UIDs, modality codes, time names) come back unchanged.
        """
        for name in ("CT.1.2.840.113619.2.55.3.604688119", "SR_t.1.2", "20240102030405678_0001.MR", "a..b", "x."):
            self.assertEqual(safeComponent(name), name)

    def test_separators(self) -> None:
        """
        Both path separators become C{_}.
        """
        self.assertEqual(safeComponent("../../etc/passwd"), ".._.._etc_passwd")
        self.assertEqual(safeComponent("..\\..\\boot.ini"), ".._.._boot.ini")
        self.assertEqual(safeComponent("/"), "_")

    def test_controlCharacters(self) -> None:
        """
        NUL, newline, escape and DEL become C{_}.
        """
        self.assertEqual(safeComponent("1.2\x003"), "1.2_3")
        self.assertEqual(safeComponent("a\nb\x1bc\x7fd"), "a_b_c_d")

    @given(st.text(max_size=60).filter(lambda name: name.strip(".")))
    def test_eachUnsafeCharacterReplaced(self, name):
        """
        Each path separator and control character, and nothing else,
        becomes C{_}, whatever else the name holds.
        """
        unsafe = set("/\\\x7f") | {chr(code) for code in range(0x20)}
        self.assertEqual(safeComponent(name), "".join("_" if character in unsafe else character for character in name))

    def test_dotsAndEmpty(self) -> None:
        """
        C{.}, C{..}, other all-dot names and the empty name become underscores.
        """
        self.assertEqual(safeComponent("."), "_")
        self.assertEqual(safeComponent(".."), "__")
        self.assertEqual(safeComponent("..."), "___")
        self.assertEqual(safeComponent(""), "_")

    def test_tooLong(self) -> None:
        """
        A name longer than a file name may be (255 bytes: a UID of 300 characters, a Patient's Name of 200 non-ASCII ones) is refused with C{ValueError} rather than cut; 255 bytes pass.
        """
        self.assertEqual(safeComponent("1." + "9" * 253), "1." + "9" * 253)
        self.assertRaises(ValueError, safeComponent, "1." + "9" * 254)
        self.assertRaises(ValueError, safeComponent, "CT.1." + "9" * 300)
        self.assertRaises(ValueError, safeComponent, "\u00e9" * 128)
        self.assertRaises(ValueError, defaultFileName, "1.2.840.10008.5.1.4.1.1.2", "1." + "9" * 300)


class JoinUnderTests(SynchronousTestCase):
    """
    Tests for L{joinUnder}.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()

    def test_inside(self) -> None:
        """
        Safe components are joined under the directory.
        """
        self.assertEqual(
            joinUnder(self.directory, "STUDY_1.2.3", "CT.1.2.3.4"),
            os.path.join(self.directory, "STUDY_1.2.3", "CT.1.2.3.4"),
        )

    def test_parent(self) -> None:
        """
        C{..} is refused.
        """
        self.assertRaises(ValueError, joinUnder, self.directory, "..")
        self.assertRaises(ValueError, joinUnder, self.directory, "STUDY", "..", "..")

    def test_current(self) -> None:
        """
        C{.}, the empty name and no name at all, which name the directory itself, are refused.
        """
        self.assertRaises(ValueError, joinUnder, self.directory, ".")
        self.assertRaises(ValueError, joinUnder, self.directory, "")
        self.assertRaises(ValueError, joinUnder, self.directory)

    def test_separators(self) -> None:
        """
        A component holding a separator, or an absolute path, is refused.
        """
        self.assertRaises(ValueError, joinUnder, self.directory, "a/b")
        self.assertRaises(ValueError, joinUnder, self.directory, "a\\b")
        self.assertRaises(ValueError, joinUnder, self.directory, "/etc")

    def test_hostileNamesSanitised(self) -> None:
        """
        Every name built from hostile network values joins to a path directly inside the directory.
        """
        root = os.path.abspath(self.directory)
        for name in (
            defaultFileName(CT_IMAGE, "../../x"),
            defaultFileName(CT_IMAGE, ".."),
            defaultFileName(PRIVATE_CLASS, "/etc/passwd"),
            studyDirectoryName("", ".."),
            studyDirectoryName("", "."),
            studyDirectoryName("", ""),
            studyDirectoryName("", "../../x"),
            patientDirectoryName(b"..", WHEN),
            patientDirectoryName(b"../..\\x\x00", WHEN),
            uniqueFileName(CT_IMAGE, "../.."),
        ):
            path = os.path.abspath(joinUnder(self.directory, name))
            self.assertEqual(os.path.dirname(path), root, name)


class TimeStampTests(SynchronousTestCase):
    """
    Tests for L{fileTimeStamp} and L{directoryTimeStamp}.
    """

    def test_file(self) -> None:
        """
        C{YYYYMMDDHHMMSSmmm}, milliseconds truncated.
        """
        self.assertEqual(fileTimeStamp(WHEN), "20240102030405678")

    def test_directory(self) -> None:
        """
        C{YYYYMMDD_HHMMSSmmm}.
        """
        self.assertEqual(directoryTimeStamp(WHEN), "20240102_030405678")

    def test_padding(self) -> None:
        """
        Every field is zero padded, the year to four digits.
        """
        self.assertEqual(fileTimeStamp(datetime(999, 1, 1, 0, 0, 0, 5000)), "09990101000000005")


class DefaultFileNameTests(SynchronousTestCase):
    """
    Tests for L{defaultFileName}.
    """

    def test_knownClasses(self) -> None:
        """
        C{<MOD>.<SOPInstanceUID>}.
        """
        self.assertEqual(defaultFileName(CT_IMAGE, "1.2.3.4"), "CT.1.2.3.4")
        self.assertEqual(defaultFileName(MR_IMAGE, "1.2.3.4"), "MR.1.2.3.4")
        self.assertEqual(defaultFileName(MULTIFRAME_GRAYSCALE_WORD_SC, "1.2.3.4"), "SCw.1.2.3.4")
        self.assertEqual(defaultFileName(COMPREHENSIVE_SR, "1.2.3.4"), "SRc.1.2.3.4")

    def test_unknownClass(self) -> None:
        """
        A private class is C{UNKNOWN}.
        """
        self.assertEqual(defaultFileName(PRIVATE_CLASS, "1.2.3.4"), "UNKNOWN.1.2.3.4")

    def test_extension(self) -> None:
        """
        C{-fe}'s extension is appended as given, without a dot of its own.
        """
        self.assertEqual(defaultFileName(CT_IMAGE, "1.2.3.4", ".dcm"), "CT.1.2.3.4.dcm")
        self.assertEqual(defaultFileName(CT_IMAGE, "1.2.3.4", "dcm"), "CT.1.2.3.4dcm")

    def test_slashInUID(self) -> None:
        """
        Like DCMTK, C{/} in the instance UID becomes C{_}.
        """
        self.assertEqual(defaultFileName(CT_IMAGE, "../../x"), "CT..._.._x")

    def test_backslashAndNulInUID(self) -> None:
        """
        Unlike DCMTK, C{\\} and NUL in the instance UID become C{_} too.
        """
        self.assertEqual(defaultFileName(CT_IMAGE, "..\\x\x00y"), "CT..._x_y")


class UniqueFileNameTests(SynchronousTestCase):
    """
    Tests for L{uniqueFileName}.
    """

    def test_name(self) -> None:
        """
        C{<MOD>.X.<new UID><EXT>}.
        """
        self.assertEqual(uniqueFileName(CT_IMAGE, "2.25.1234"), "CT.X.2.25.1234")
        self.assertEqual(uniqueFileName(PRIVATE_CLASS, "2.25.1234", ".dcm"), "UNKNOWN.X.2.25.1234.dcm")


class TimeNamesTests(SynchronousTestCase):
    """
    Tests for L{TimeNames}.
    """

    def test_first(self) -> None:
        """
        C{YYYYMMDDHHMMSSmmm.<MOD>}, without a serial.
        """
        self.assertEqual(TimeNames().nextName(WHEN, MR_IMAGE), "20240102030405678.MR")

    def test_repeats(self) -> None:
        """
        Repeats in one millisecond get C{_0000}, C{_0001}...; the next millisecond drops the serial.
        """
        names = TimeNames()
        self.assertEqual(
            [
                names.nextName(WHEN, MR_IMAGE),
                names.nextName(SAME_MILLISECOND, MR_IMAGE),
                names.nextName(WHEN, MR_IMAGE),
                names.nextName(NEXT_MILLISECOND, MR_IMAGE),
                names.nextName(NEXT_MILLISECOND, MR_IMAGE),
            ],
            [
                "20240102030405678.MR",
                "20240102030405678_0000.MR",
                "20240102030405678_0001.MR",
                "20240102030405679.MR",
                "20240102030405679_0000.MR",
            ],
        )

    def test_otherModality(self) -> None:
        """
        Another modality code in the same millisecond is another name, so it gets no serial.
        """
        names = TimeNames()
        names.nextName(WHEN, MR_IMAGE)
        self.assertEqual(names.nextName(WHEN, CT_IMAGE), "20240102030405678.CT")

    def test_extension(self) -> None:
        """
        The extension follows the modality code.
        """
        names = TimeNames()
        self.assertEqual(names.nextName(WHEN, CT_IMAGE, ".dcm"), "20240102030405678.CT.dcm")
        self.assertEqual(names.nextName(WHEN, CT_IMAGE, ".dcm"), "20240102030405678_0000.CT.dcm")

    def test_newStudy(self) -> None:
        """
        After a new study directory the serial restarts: the same millisecond gives the plain name.
        """
        names = TimeNames()
        names.nextName(WHEN, MR_IMAGE)
        names.nextName(WHEN, MR_IMAGE)
        names.newStudy()
        self.assertEqual(names.nextName(WHEN, MR_IMAGE), "20240102030405678.MR")
        self.assertEqual(names.nextName(WHEN, MR_IMAGE), "20240102030405678_0000.MR")

    def test_manySerials(self) -> None:
        """
        The serial keeps counting past four digits.
        """
        names = TimeNames()
        for _ in range(10001):
            names.nextName(WHEN, CT_IMAGE)
        self.assertEqual(names.nextName(WHEN, CT_IMAGE), "20240102030405678_10000.CT")


class FileNamerTests(SynchronousTestCase):
    """
    Tests for L{FileNamer}.
    """

    def test_default(self) -> None:
        """
        By default names come from the instance UID.
        """
        self.assertEqual(FileNamer().fileName(CT_IMAGE, "1.2.3"), "CT.1.2.3")

    def test_extension(self) -> None:
        """
        The extension applies to every scheme.
        """
        self.assertEqual(FileNamer(extension=".dcm").fileName(CT_IMAGE, "1.2.3"), "CT.1.2.3.dcm")

    def test_unique(self) -> None:
        """
        C{+uf} asks the UID generator for each name.
        """
        uids = iter(["2.25.1", "2.25.2"])
        namer = FileNamer(FileNameScheme.UNIQUE, uidGenerator=lambda: next(uids))
        self.assertEqual(
            [namer.fileName(CT_IMAGE, "1.2.3"), namer.fileName(CT_IMAGE, "1.2.3")], ["CT.X.2.25.1", "CT.X.2.25.2"]
        )

    def test_time(self) -> None:
        """
        C{-tn} asks the clock and numbers repeats.
        """
        namer = FileNamer(FileNameScheme.TIME, clock=lambda: WHEN)
        self.assertEqual(
            [namer.fileName(CT_IMAGE, "1.2.3"), namer.fileName(CT_IMAGE, "1.2.4")],
            ["20240102030405678.CT", "20240102030405678_0000.CT"],
        )

    def test_timeNewStudy(self) -> None:
        """
        L{FileNamer.newStudy} restarts the serial.
        """
        namer = FileNamer(FileNameScheme.TIME, clock=lambda: WHEN)
        namer.fileName(CT_IMAGE, "1.2.3")
        namer.fileName(CT_IMAGE, "1.2.3")
        namer.newStudy()
        self.assertEqual(namer.fileName(CT_IMAGE, "1.2.3"), "20240102030405678.CT")

    def test_missingSources(self) -> None:
        """
        Time names need a clock and unique names a UID generator.
        """
        self.assertRaises(ValueError, FileNamer, FileNameScheme.TIME)
        self.assertRaises(ValueError, FileNamer, FileNameScheme.UNIQUE)


class StudyDirectoryNameTests(SynchronousTestCase):
    """
    Tests for L{timestampDirectoryName} (C{-ss}) and L{studyDirectoryName}
    (C{-su}).
    """

    def test_timestamp(self) -> None:
        """
        C{PREFIX_YYYYMMDD_HHMMSSmmm}.
        """
        self.assertEqual(timestampDirectoryName("STUDY", WHEN), "STUDY_20240102_030405678")

    def test_timestampNoPrefix(self) -> None:
        """
        With an empty prefix the first C{_} is omitted.
        """
        self.assertEqual(timestampDirectoryName("", WHEN), "20240102_030405678")

    def test_studyUID(self) -> None:
        """
        C{PREFIX_<StudyInstanceUID>}, or the UID alone.
        """
        self.assertEqual(studyDirectoryName("STUDY", "1.2.3.4"), "STUDY_1.2.3.4")
        self.assertEqual(studyDirectoryName("", "1.2.3.4"), "1.2.3.4")

    def test_hostileStudyUID(self) -> None:
        """
        A Study Instance UID of C{..}, C{.} or a path stays one component, even without a prefix.
        """
        self.assertEqual(studyDirectoryName("", ".."), "__")
        self.assertEqual(studyDirectoryName("", "."), "_")
        self.assertEqual(studyDirectoryName("", "../../etc"), ".._.._etc")
        self.assertEqual(studyDirectoryName("S", "a\\b"), "S_a_b")

    def test_prefixSeparator(self) -> None:
        """
        A separator in the prefix does not make a nested directory.
        """
        self.assertEqual(timestampDirectoryName("a/b", WHEN), "a_b_20240102_030405678")


class PatientDirectoryNameTests(SynchronousTestCase):
    """
    Tests for L{patientDirectoryName} (C{-sp}) and
    L{transliteratePatientName}.
    """

    def test_latin1(self) -> None:
        """
        C{Müller^Jürgen} becomes C{Mueller_Juergen}, then the arrival time.
        """
        self.assertEqual(
            patientDirectoryName("Müller^Jürgen".encode("latin-1"), WHEN), "Mueller_Juergen_20240102_030405678"
        )

    def test_ascii(self) -> None:
        """
        Letters and digits stay; every other ASCII byte becomes C{_}.
        """
        self.assertEqual(
            patientDirectoryName(b"O'Brien-Smith^Ann 2=X", WHEN), "O_Brien_Smith_Ann_2_X_20240102_030405678"
        )

    def test_anonymous(self) -> None:
        """
        An absent, empty or all-padding name is C{ANONYMOUS}.
        """
        self.assertEqual(ANONYMOUS, "ANONYMOUS")
        for value in (None, b"", b"    "):
            self.assertEqual(patientDirectoryName(value, WHEN), "ANONYMOUS_20240102_030405678")

    def test_firstValueOnly(self) -> None:
        """
        Only the first value of a multi-valued name counts.
        """
        self.assertEqual(patientDirectoryName(b"DOE^JOHN\\SMITH^JANE", WHEN), "DOE_JOHN_20240102_030405678")

    def test_padding(self) -> None:
        """
        Trailing spaces are padding; leading ones are not.
        """
        self.assertEqual(patientDirectoryName(b"DOE^JOHN  ", WHEN), "DOE_JOHN_20240102_030405678")
        self.assertEqual(patientDirectoryName(b" DOE", WHEN), "_DOE_20240102_030405678")

    def test_hostile(self) -> None:
        """
        Dots, C{/} and NUL become C{_} and C{\\} ends the first value, so C{..} cannot escape.
        """
        self.assertEqual(patientDirectoryName(b"..", WHEN), "___20240102_030405678")
        self.assertEqual(patientDirectoryName(b".", WHEN), "__20240102_030405678")
        self.assertEqual(patientDirectoryName(b"../x\x00", WHEN), "___x__20240102_030405678")
        self.assertEqual(patientDirectoryName(b"../x\\y", WHEN), "___x_20240102_030405678")

    def test_uppercaseLetters(self) -> None:
        """
        DCMTK's table for C{À} to C{ß}: umlauts get an C{e}; C{×} and C{Þ} become C{_}.
        """
        self.assertEqual(transliteratePatientName(bytes(range(0xC0, 0xE0))), "AAAAAeAACEEEEIIIIDNOOOOOe_OUUUUeY_ss")

    def test_lowercaseLetters(self) -> None:
        """
        DCMTK's table for C{à} to C{ÿ}.
        """
        self.assertEqual(transliteratePatientName(bytes(range(0xE0, 0x100))), "aaaaaeaaceeeeiiiidnoooooe_ouuuuey_y")

    def test_otherBytes(self) -> None:
        """
        Latin-1 symbols become C{_}, and a UTF-8 name is read byte by byte as Latin-1, as in DCMTK.
        """
        self.assertEqual(transliteratePatientName(bytes(range(0x80, 0xC0))), "_" * 64)
        self.assertEqual(transliteratePatientName("Jürgen".encode("utf-8")), "JA_rgen")


class RenameOnEndOfStudyTests(SynchronousTestCase):
    """
    Tests for L{renamedFileName} and L{renamedFileNames}
    (C{--rename-on-eostudy}).
    """

    def test_defaultNames(self) -> None:
        """
        The first two characters of the name and a six digit counter from 1.
        """
        self.assertEqual(
            renamedFileNames(["CT.1.2.3", "SRc.1.2.4", "UNKNOWN.1.2.5", "SCw.1.2.6"]),
            [
                ("CT.1.2.3", "CT000001"),
                ("SRc.1.2.4", "SR000002"),
                ("UNKNOWN.1.2.5", "UN000003"),
                ("SCw.1.2.6", "SC000004"),
            ],
        )

    def test_noExtension(self) -> None:
        """
        C{-fe}'s extension is not kept.
        """
        self.assertEqual(renamedFileName("CT.1.2.3.dcm", 1), "CT000001")

    def test_timeNames(self) -> None:
        """
        With C{-tn} the code follows the time stamp and serial.
        """
        self.assertEqual(
            renamedFileNames(["20240102030405678.MR", "20240102030405678_0000.CT.dcm"], timeNames=True),
            [("20240102030405678.MR", "MR000001"), ("20240102030405678_0000.CT.dcm", "CT000002")],
        )

    def test_timeNamesUnderscoreCode(self) -> None:
        """
        A draft class's code holding C{_} still gives its first two characters.
        """
        names = TimeNames()
        self.assertEqual(renamedFileName(names.nextName(WHEN, DRAFT_SR_TEXT), 7, timeNames=True), "SR000007")

    def test_bigCounter(self) -> None:
        """
        Past 999999 the counter simply grows, as C{%06d} does.
        """
        self.assertEqual(renamedFileName("CT.1.2", 1234567), "CT1234567")
