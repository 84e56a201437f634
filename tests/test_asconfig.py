"""
Tests for L{dicomd.asconfig}: DCMTK's association negotiation profile files.
"""

import sys

from pydicom.uid import UID_dictionary
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from dicomd.asconfig import (
    DCMTK_UID_NAMES,
    AsConfigError,
    acceptorPolicy,
    mangleProfileName,
    parseProfiles,
    readProfiles,
    resolveUID,
)
from dicomd.ul.negotiation import acceptPresentationContexts
from dicomd.ul.pdu import (
    PC_ABSTRACT_SYNTAX_NOT_SUPPORTED,
    PC_ACCEPTANCE,
    PC_TRANSFER_SYNTAXES_NOT_SUPPORTED,
    AAssociateRQ,
    PresentationContextRQ,
    SCPSCURoleSelection,
    SOPClassExtendedNegotiation,
)

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_IMAGE_RETIRED = "1.2.840.10008.5.1.4.1.1.6"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"

#: This checkout's example, and DCMTK's as Debian's dcmtk package installs
#: it (tests/run.sh installs dcmtk).
CHECKOUT = FilePath(__file__).parent().parent()
OUR_EXAMPLE = CHECKOUT.descendant(["etc", "storescp-asconfig.cfg"])
DCMTK_EXAMPLE = FilePath("/etc/dcmtk/storescp.cfg")

#: A small valid file; tests format extra presentation contexts, role
#: selection and extended negotiation sections and profile settings into it.
TEMPLATE = """\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = LittleEndianImplicit

[JPEG]
TransferSyntax1 = JPEGBaseline
TransferSyntax2 = LittleEndianExplicit

[[PresentationContexts]]
[SCP]
PresentationContext1 = VerificationSOPClass\\Uncompressed
PresentationContext2 = CTImageStorage\\JPEG
PresentationContext3 = MRImageStorage\\Uncompressed
%(contexts)s
%(more)s
[[Profiles]]
[Default]
PresentationContexts = SCP
%(profile)s
"""


def profileFile(contexts: str = "", more: str = "", profile: str = "") -> str:
    """
    L{TEMPLATE} with extra lines in its three places.
    """
    return TEMPLATE % {"contexts": contexts, "more": more, "profile": profile}


def littleEndianOnly() -> None:
    """
    Skip a test that assumes C{LocalEndianExplicit} is little endian.
    """
    if sys.byteorder != "little":
        raise SkipTest("this machine is big endian")


class ResolveUIDTests(SynchronousTestCase):
    """
    Tests for L{resolveUID}.
    """

    def test_numeric(self) -> None:
        """
        A numeric UID is itself, even one no registry knows.
        """
        self.assertEqual(resolveUID("1.2.840.10008.1.2.1"), EXPLICIT_LE)
        self.assertEqual(resolveUID("1.2.3.4.5"), "1.2.3.4.5")

    def test_dcmtkTransferSyntaxNames(self) -> None:
        """
        DCMTK's transfer syntax names resolve to their UIDs.
        """
        self.assertEqual(resolveUID("LittleEndianImplicit"), IMPLICIT_LE)
        self.assertEqual(resolveUID("LittleEndianExplicit"), EXPLICIT_LE)
        self.assertEqual(resolveUID("BigEndianExplicit"), EXPLICIT_BE)
        self.assertEqual(resolveUID("DeflatedLittleEndianExplicit"), DEFLATED)
        self.assertEqual(resolveUID("JPEGBaseline"), JPEG_BASELINE)
        self.assertEqual(resolveUID("JPEGLossless:Non-hierarchical-1stOrderPrediction"), JPEG_LOSSLESS_SV1)
        self.assertEqual(resolveUID("MPEG4HighProfile/Level4.2For2DVideo"), "1.2.840.10008.1.2.4.104")

    def test_dcmtkSOPClassNames(self) -> None:
        """
        DCMTK's SOP class names resolve, also where pydicom's keyword differs.
        """
        self.assertEqual(resolveUID("VerificationSOPClass"), VERIFICATION)
        self.assertEqual(resolveUID("CTImageStorage"), CT_IMAGE)
        self.assertEqual(resolveUID("UltrasoundImageStorage"), US_IMAGE)
        self.assertEqual(resolveUID("RETIRED_UltrasoundImageStorage"), US_IMAGE_RETIRED)
        self.assertEqual(resolveUID("GETPatientRootQueryRetrieveInformationModel"), PATIENT_ROOT_GET)
        self.assertEqual(resolveUID("ImplantationPlanSRDocumentStorage"), "1.2.840.10008.5.1.4.1.1.88.70")

    def test_endianNames(self) -> None:
        """
        C{LocalEndianExplicit} and C{OppositeEndianExplicit} follow this machine's byte order.
        """
        littleEndianOnly()
        self.assertEqual(resolveUID("LocalEndianExplicit"), EXPLICIT_LE)
        self.assertEqual(resolveUID("OppositeEndianExplicit"), EXPLICIT_BE)

    def test_pydicomKeywords(self) -> None:
        """
        pydicom's keywords are understood too.
        """
        self.assertEqual(resolveUID("ExplicitVRLittleEndian"), EXPLICIT_LE)
        self.assertEqual(resolveUID("Verification"), VERIFICATION)

    def test_equalsPrefix(self) -> None:
        """
        A leading C{=} before a name is skipped, as in DCMTK.
        """
        self.assertEqual(resolveUID("=CTImageStorage"), CT_IMAGE)

    def test_invalid(self) -> None:
        """
        Unknown names, empty values and UIDs with other characters are refused.
        """
        for text in ("NoSuchStorage", "", "1.2.x", "1.2.3 ", "=1.2.3", "ctimagestorage"):
            self.assertRaises(ValueError, resolveUID, text)

    def test_aliasTable(self) -> None:
        """
        Every DCMTK name maps to a pydicom keyword for a transfer syntax or a class.
        """
        keywords = {entry[4]: entry[1] for entry in UID_dictionary.values()}
        kinds = {"Transfer Syntax", "SOP Class", "Meta SOP Class", "Service Class"}
        self.assertEqual(
            {
                name: keywords.get(keyword)
                for name, keyword in DCMTK_UID_NAMES.items()
                if keywords.get(keyword) not in kinds
            },
            {},
        )
        self.assertEqual(len(DCMTK_UID_NAMES), 181)


class MangleProfileNameTests(SynchronousTestCase):
    """
    Tests for L{mangleProfileName}.
    """

    def test_mangle(self) -> None:
        """
        White space goes and ASCII letters are uppercased, as storescp does.
        """
        self.assertEqual(mangleProfileName(" All\tDICOM "), "ALLDICOM")
        self.assertEqual(mangleProfileName("my-profile_2"), "MY-PROFILE_2")


class ParseProfilesTests(SynchronousTestCase):
    """
    Tests for L{parseProfiles} on valid files.
    """

    def test_minimal(self) -> None:
        """
        A profile lists its presentation contexts in order with resolved transfer syntaxes.
        """
        profile = parseProfiles(profileFile()).profile("Default")
        self.assertEqual(profile.name, "DEFAULT")
        self.assertEqual(
            profile.presentationContexts,
            (
                (VERIFICATION, (EXPLICIT_LE, IMPLICIT_LE)),
                (CT_IMAGE, (JPEG_BASELINE, EXPLICIT_LE)),
                (MR_IMAGE, (EXPLICIT_LE, IMPLICIT_LE)),
            ),
        )
        self.assertEqual(profile.roleSelections, ())
        self.assertEqual(profile.extendedNegotiations, ())

    def test_profileNameMangled(self) -> None:
        """
        Profiles are found by name whatever its case and spacing.
        """
        profiles = parseProfiles(profileFile())
        self.assertIs(profiles.profile(" de fault "), profiles.profile("DEFAULT"))

    def test_caseInsensitiveNames(self) -> None:
        """
        Supersections, sections, keys and references ignore case and white space.
        """
        text = (
            "[[ Transfer Syntaxes ]]\n[my list]\ntransfersyntax1 = LittleEndianImplicit\n"
            "[[presentationcontexts]]\n[Ctx]\nPRESENTATIONCONTEXT1 = CTImageStorage\\ My List\n"
            "[[PROFILES]]\n[p]\npresentationcontexts = ctx\n"
        )
        self.assertEqual(parseProfiles(text).profile("P").presentationContexts, ((CT_IMAGE, (IMPLICIT_LE,)),))

    def test_numberOrder(self) -> None:
        """
        Lists follow their key numbers, not the order of the lines.
        """
        text = profileFile(contexts="").replace(
            "TransferSyntax1 = LittleEndianExplicit\nTransferSyntax2 = LittleEndianImplicit",
            "TransferSyntax2 = LittleEndianImplicit\nTransferSyntax1 = LittleEndianExplicit",
        )
        self.assertEqual(
            parseProfiles(text).profile("default").presentationContexts[0], (VERIFICATION, (EXPLICIT_LE, IMPLICIT_LE))
        )

    def test_commentsAndContinuation(self) -> None:
        """
        Comment lines are skipped and an indented line continues the value above it.
        """
        text = profileFile(contexts="PresentationContext4 = UltrasoundImageStorage\\\n# a comment\n    JPEG")
        self.assertEqual(
            parseProfiles(text).profile("default").presentationContexts[3], (US_IMAGE, (JPEG_BASELINE, EXPLICIT_LE))
        )

    def test_lineEndings(self) -> None:
        """
        CRLF and CR line endings read like LF.
        """
        expected = parseProfiles(profileFile()).profile("default")
        for newline in ("\r\n", "\r"):
            self.assertEqual(parseProfiles(profileFile().replace("\n", newline)).profile("default"), expected)

    def test_whitespaceAroundParts(self) -> None:
        """
        White space around a UID or list name is ignored.
        """
        text = profileFile(contexts="PresentationContext4 =  UltrasoundImageStorage \\ JPEG  ")
        self.assertEqual(parseProfiles(text).profile("default").presentationContexts[3][0], US_IMAGE)

    def test_numericUIDs(self) -> None:
        """
        Numeric UIDs may stand for any transfer syntax or SOP class.
        """
        text = profileFile(contexts="PresentationContext4 = 1.2.3.4.5\\JPEG")
        self.assertEqual(
            parseProfiles(text).profile("default").presentationContexts[3], ("1.2.3.4.5", (JPEG_BASELINE, EXPLICIT_LE))
        )

    def test_roleSelection(self) -> None:
        """
        Role selection items give the requestor's roles for SCU, SCP and BOTH.
        """
        text = profileFile(
            more="[[SCPSCURoleSelection]]\n[Roles]\nRole1 = CTImageStorage\\SCP\nRole2 = MRImageStorage\\both\n"
            "Role3 = VerificationSOPClass\\SCU\n",
            profile="SCPSCURoleSelection = Roles",
        )
        self.assertEqual(
            parseProfiles(text).profile("default").roleSelections,
            (
                SCPSCURoleSelection(CT_IMAGE, False, True),
                SCPSCURoleSelection(MR_IMAGE, True, True),
                SCPSCURoleSelection(VERIFICATION, True, False),
            ),
        )

    def test_extendedNegotiation(self) -> None:
        """
        Extended negotiation data is read from hexadecimal pairs.
        """
        text = profileFile(
            more="[[ExtendedNegotiation]]\n[Ext]\nExtendedNegotiation1 = CTImageStorage\\020003000000\n",
            profile="ExtendedNegotiation = Ext",
        )
        self.assertEqual(
            parseProfiles(text).profile("default").extendedNegotiations,
            (SOPClassExtendedNegotiation(CT_IMAGE, b"\x02\x00\x03\x00\x00\x00"),),
        )

    def test_requestorLimit(self) -> None:
        """
        A requestor's list may hold 128 contexts.
        """
        contexts = "\n".join("PresentationContext%d = 1.2.3.%d\\Uncompressed" % (n, n) for n in range(4, 129))
        profile = parseProfiles(profileFile(contexts=contexts), requestor=True).profile("default")
        self.assertEqual(len(profile.presentationContexts), 128)

    def test_acceptorUnlimited(self) -> None:
        """
        An acceptor's list may hold more than 128 contexts, as in DCMTK.
        """
        contexts = "\n".join("PresentationContext%d = 1.2.3.%d\\Uncompressed" % (n, n) for n in range(4, 201))
        self.assertEqual(
            len(parseProfiles(profileFile(contexts=contexts)).profile("default").presentationContexts), 200
        )


class ParseProfilesErrorTests(SynchronousTestCase):
    """
    Tests for L{parseProfiles} on invalid files: each error names the place.
    """

    def assertError(
        self, text: str, fragment: str, section=None, key=None, line=None, requestor=False
    ) -> AsConfigError:
        """
        Parsing C{text} fails with a message holding C{fragment}, at the given place.
        """
        error = self.assertRaises(AsConfigError, parseProfiles, text, "test.cfg", requestor)
        self.assertIn(fragment, str(error))
        self.assertTrue(str(error).startswith("test.cfg"), str(error))
        self.assertEqual((error.fileName, error.section, error.key, error.line), ("test.cfg", section, key, line))
        return error

    def test_unknownUIDName(self) -> None:
        """
        An unknown SOP class name is reported with its file, line, section and key.
        """
        error = self.assertError(
            profileFile(contexts="PresentationContext4 = NoSuchStorage\\JPEG"),
            "NoSuchStorage",
            section="SCP",
            key="PresentationContext4",
            line=15,
        )
        self.assertEqual(str(error).split(": ")[0], "test.cfg, line 15, [SCP], PresentationContext4")

    def test_unknownTransferSyntaxName(self) -> None:
        """
        An unknown transfer syntax name is an error.
        """
        text = profileFile().replace("TransferSyntax1 = JPEGBaseline", "TransferSyntax1 = JPEGBase")
        self.assertError(text, "JPEGBase", section="JPEG", key="TransferSyntax1", line=7)

    def test_missingSupersection(self) -> None:
        """
        The three mandatory supersections must be there.
        """
        self.assertError(profileFile().replace("[[Profiles]]", "[[Profile]]"), "cannot find section [[Profiles]]")

    def test_gap(self) -> None:
        """
        A gap in the numbering is an error, not the end of the list.
        """
        self.assertError(
            profileFile(contexts="PresentationContext5 = CTImageStorage\\JPEG"),
            "PresentationContext4 is missing",
            section="SCP",
            line=11,
        )

    def test_leadingZero(self) -> None:
        """
        Key numbers have no leading zeros.
        """
        self.assertError(
            profileFile(contexts="PresentationContext04 = CTImageStorage\\JPEG"),
            "unexpected key",
            section="SCP",
            key="PresentationContext04",
            line=15,
        )

    def test_duplicateKey(self) -> None:
        """
        A key given twice in a section is an error.
        """
        self.assertError(
            profileFile(contexts="PresentationContext3 = CTImageStorage\\JPEG"),
            "key defined twice",
            section="SCP",
            key="PresentationContext3",
            line=15,
        )

    def test_duplicateSection(self) -> None:
        """
        A section given twice in a supersection is an error.
        """
        self.assertError(
            profileFile(more="[[PresentationContexts]]\n"), "defined twice", section="[PresentationContexts]", line=16
        )
        self.assertError(profileFile(contexts="[scp]"), "defined twice", section="scp", line=15)

    def test_undefinedTransferSyntaxList(self) -> None:
        """
        A context naming an undefined transfer syntax list is an error.
        """
        self.assertError(
            profileFile(contexts="PresentationContext4 = CTImageStorage\\Lossy"),
            "transfer syntax list undefined or empty: Lossy",
            section="SCP",
            key="PresentationContext4",
            line=15,
        )

    def test_missingBackslash(self) -> None:
        """
        A context without C{\\} between its parts is an error.
        """
        self.assertError(
            profileFile(contexts="PresentationContext4 = CTImageStorage"),
            "missing '\\'",
            section="SCP",
            key="PresentationContext4",
            line=15,
        )

    def test_settingOutsideSection(self) -> None:
        """
        A setting before any section is an error.
        """
        self.assertError("Key = Value\n" + profileFile(), "setting outside any [section]", line=1)

    def test_sectionOutsideSupersection(self) -> None:
        """
        A section before any supersection is an error.
        """
        self.assertError("[Lost]\n" + profileFile(), "section outside any [[supersection]]", section="Lost", line=1)

    def test_malformedLines(self) -> None:
        """
        Unbalanced headings and lines without C{=} are errors.
        """
        self.assertError("[[Profiles]\n", "malformed heading", line=1)
        self.assertError("[[[Profiles]]]\n", "malformed heading", line=1)
        self.assertError(profileFile(contexts="PresentationContext4"), "expected 'Key = Value'", section="SCP", line=15)

    def test_requestorLimit(self) -> None:
        """
        A requestor's list of 129 contexts is refused at its 129th key.
        """
        contexts = "\n".join("PresentationContext%d = 1.2.3.%d\\Uncompressed" % (n, n) for n in range(4, 130))
        self.assertError(
            profileFile(contexts=contexts),
            "too long (> 128 entries)",
            section="SCP",
            key="PresentationContext129",
            line=140,
            requestor=True,
        )

    def test_unknownRole(self) -> None:
        """
        Roles other than SCU, SCP and BOTH are errors.
        """
        text = profileFile(more="[[SCPSCURoleSelection]]\n[Roles]\nRole1 = CTImageStorage\\Provider\n")
        self.assertError(text, "unknown role", section="Roles", key="Role1", line=18)

    def test_duplicateRole(self) -> None:
        """
        A SOP class given two roles in one list is an error.
        """
        text = profileFile(
            more="[[SCPSCURoleSelection]]\n[Roles]\nRole1 = CTImageStorage\\SCP\n"
            "Role2 = 1.2.840.10008.5.1.4.1.1.2\\SCU\n"
        )
        self.assertError(text, "role selection defined twice", section="Roles", key="Role2", line=19)

    def test_roleOutsideContexts(self) -> None:
        """
        A profile's role selection may only name its presentation contexts' SOP classes.
        """
        text = profileFile(
            more="[[SCPSCURoleSelection]]\n[Roles]\nRole1 = UltrasoundImageStorage\\SCP\n",
            profile="SCPSCURoleSelection = Roles",
        )
        self.assertError(
            text, "abstract syntax %s is not in the presentation context list" % (US_IMAGE,), section="Default", line=21
        )

    def test_badExtendedNegotiation(self) -> None:
        """
        Extended negotiation data must be whole hexadecimal pairs, at most 1024 bytes.
        """
        for data in ("02000", "0x02", "", "00" * 1025):
            text = profileFile(
                more="[[ExtendedNegotiation]]\n[Ext]\nExtendedNegotiation1 = CTImageStorage\\%s\n" % (data,)
            )
            self.assertError(text, "extended negotiation data", section="Ext", key="ExtendedNegotiation1", line=18)

    def test_profileWithoutContexts(self) -> None:
        """
        A profile must name a presentation context list.
        """
        self.assertError(
            profileFile(profile="[Other]\nSCPSCURoleSelection = Roles"),
            "no PresentationContexts entry",
            section="Other",
            line=20,
        )

    def test_profileUnknownKey(self) -> None:
        """
        A profile setting other than the three known ones is an error.
        """
        self.assertError(profileFile(profile="Roles = x"), "unexpected key", section="Default", key="Roles", line=20)

    def test_undefinedList(self) -> None:
        """
        A profile naming an undefined list is an error.
        """
        self.assertError(
            profileFile(profile="ExtendedNegotiation = Nothing"),
            "extended negotiation list undefined or empty: Nothing",
            section="Default",
            key="ExtendedNegotiation",
            line=20,
        )

    def test_unknownProfile(self) -> None:
        """
        Asking for a profile the file does not define names the mangled name.
        """
        profiles = parseProfiles(profileFile(), "test.cfg")
        error = self.assertRaises(AsConfigError, profiles.profile, "no such")
        self.assertEqual(str(error), "test.cfg: unknown configuration profile name: NOSUCH")


class AcceptorPolicyTests(SynchronousTestCase):
    """
    Tests for L{acceptorPolicy}.
    """

    def test_policy(self) -> None:
        """
        Each abstract syntax maps to its transfer syntaxes in preference order; nothing else is accepted.
        """
        policy = acceptorPolicy(parseProfiles(profileFile()).profile("default"))
        self.assertEqual(
            policy.transferSyntaxes,
            {
                VERIFICATION: [EXPLICIT_LE, IMPLICIT_LE],
                CT_IMAGE: [JPEG_BASELINE, EXPLICIT_LE],
                MR_IMAGE: [EXPLICIT_LE, IMPLICIT_LE],
            },
        )
        self.assertIsNone(policy.defaultTransferSyntaxes)
        self.assertEqual(policy.scpRoleSOPClasses, frozenset())

    def test_scpRoles(self) -> None:
        """
        Classes with role SCP or BOTH may be taken in the SCP role by the requestor; SCU ones may not.
        """
        text = profileFile(
            more="[[SCPSCURoleSelection]]\n[Roles]\nRole1 = CTImageStorage\\SCP\nRole2 = MRImageStorage\\BOTH\n"
            "Role3 = VerificationSOPClass\\SCU\n",
            profile="SCPSCURoleSelection = Roles",
        )
        self.assertEqual(
            acceptorPolicy(parseProfiles(text).profile("default")).scpRoleSOPClasses, frozenset({CT_IMAGE, MR_IMAGE})
        )

    def test_duplicateAbstractSyntax(self) -> None:
        """
        A profile naming an abstract syntax twice is refused for SCP use, as storescp refuses it.
        """
        profile = parseProfiles(
            profileFile(contexts="PresentationContext4 = CTImageStorage\\Uncompressed"), "test.cfg"
        ).profile("default")
        error = self.assertRaises(AsConfigError, acceptorPolicy, profile)
        self.assertEqual(
            str(error),
            "test.cfg, [DEFAULT]: profile is not valid for SCP use, duplicate abstract syntaxes: %s" % (CT_IMAGE,),
        )

    def test_negotiation(self) -> None:
        """
        The policy answers an association request with the profile's preferred syntaxes.
        """
        littleEndianOnly()
        policy = acceptorPolicy(parseProfiles(profileFile()).profile("default"))
        request = AAssociateRQ(
            "STORESCP",
            "STORESCU",
            [
                PresentationContextRQ(1, CT_IMAGE, [IMPLICIT_LE, EXPLICIT_LE, JPEG_BASELINE]),
                PresentationContextRQ(3, MR_IMAGE, [JPEG_BASELINE]),
                PresentationContextRQ(5, US_IMAGE, [IMPLICIT_LE]),
                PresentationContextRQ(7, VERIFICATION, [IMPLICIT_LE]),
            ],
        )
        answers, _, accepted = acceptPresentationContexts(request, policy)
        self.assertEqual(
            [(answer.contextID, answer.result, answer.transferSyntax) for answer in answers],
            [
                (1, PC_ACCEPTANCE, JPEG_BASELINE),
                (3, PC_TRANSFER_SYNTAXES_NOT_SUPPORTED, ""),
                (5, PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),
                (7, PC_ACCEPTANCE, IMPLICIT_LE),
            ],
        )
        self.assertEqual(sorted(accepted), [1, 7])


class ExampleFileTests(SynchronousTestCase):
    """
    Tests reading DCMTK's example C{storescp.cfg} and our C{etc/storescp-asconfig.cfg}.
    """

    def dcmtkProfiles(self):
        """
        DCMTK's example, read for an acceptor.
        """
        self.assertTrue(DCMTK_EXAMPLE.exists(), "%s is missing: install Debian's dcmtk" % (DCMTK_EXAMPLE.path,))
        return readProfiles(DCMTK_EXAMPLE.path)

    def test_dcmtkProfiles(self) -> None:
        """
        DCMTK's example parses into its two profiles of 128 contexts each.
        """
        profiles = self.dcmtkProfiles()
        self.assertEqual(sorted(profiles.profiles), ["ALLDICOM", "DEFAULT"])
        self.assertEqual(len(profiles.profile("Default").presentationContexts), 128)
        self.assertEqual(len(profiles.profile("AllDICOM").presentationContexts), 128)

    def test_dcmtkDefault(self) -> None:
        """
        DCMTK's Default profile starts with Verification uncompressed and CT images in any syntax.
        """
        littleEndianOnly()
        contexts = self.dcmtkProfiles().profile("Default").presentationContexts
        self.assertEqual(contexts[0], (VERIFICATION, (EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE)))
        self.assertEqual(contexts[4][0], CT_IMAGE)
        self.assertEqual(len(contexts[4][1]), 21)
        self.assertEqual(
            contexts[4][1][:4], (JPEG_2000, "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.51", JPEG_BASELINE)
        )
        self.assertEqual(contexts[4][1][-4:], (DEFLATED, EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE))
        self.assertEqual(
            contexts[127], ("1.2.840.10008.5.1.4.1.1.9.1", (DEFLATED, EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE))
        )

    def test_dcmtkAcceptorPolicy(self) -> None:
        """
        Both of DCMTK's profiles are valid SCP profiles.
        """
        profiles = self.dcmtkProfiles()
        policy = acceptorPolicy(profiles.profile("AllDICOM"))
        self.assertEqual(len(policy.transferSyntaxes), 128)
        self.assertIn("1.2.840.10008.5.1.4.1.1.88.70", acceptorPolicy(profiles.profile("Default")).transferSyntaxes)

    def test_dcmtkRequestor(self) -> None:
        """
        DCMTK's example is within the requestor's 128 context limit.
        """
        self.dcmtkProfiles()
        self.assertEqual(len(readProfiles(DCMTK_EXAMPLE.path, requestor=True).profiles), 2)

    def test_ourExample(self) -> None:
        """
        Our example parses into two valid SCP profiles.
        """
        profiles = readProfiles(OUR_EXAMPLE.path)
        self.assertEqual(sorted(profiles.profiles), ["DEFAULT", "UNCOMPRESSED"])
        self.assertEqual(len(acceptorPolicy(profiles.profile("Default")).transferSyntaxes), 24)
        uncompressed = profiles.profile("Uncompressed")
        self.assertEqual([context[0] for context in uncompressed.presentationContexts][:2], [VERIFICATION, CT_IMAGE])
        self.assertEqual(
            uncompressed.extendedNegotiations,
            (
                SOPClassExtendedNegotiation(CT_IMAGE, b"\x02\x00\x03\x00\x00\x00"),
                SOPClassExtendedNegotiation(MR_IMAGE, b"\x02\x00\x03\x00\x00\x00"),
            ),
        )
