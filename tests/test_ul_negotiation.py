"""
Tests for L{dicomd.ul.negotiation}: association negotiation (PS3.8 7.1.1,
PS3.7 Annex D.3) on the acceptor side (checking a request, answering each
presentation context and role selection the way DCMTK's storescp does) and
on the requestor side (numbering proposals, reading the answers).
"""

from twisted.trial.unittest import SynchronousTestCase

from dicomd.ul import negotiation
from dicomd.ul.negotiation import (
    ACCEPTOR_PREFERENCES,
    ALL_SUPPORTED,
    MAXIMUM_PRESENTATION_CONTEXTS,
    TOO_MANY_ASSOCIATIONS,
    AcceptorPolicy,
    NegotiatedContext,
    acceptedPresentationContexts,
    acceptPresentationContexts,
    answerAsynchronousOperationsWindow,
    checkAssociationRequest,
    invocationWindow,
    proposePresentationContexts,
)
from dicomd.ul.pdu import (
    AAssociateRJ,
    AAssociateRQ,
    PresentationContextAC,
    PresentationContextRQ,
    SCPSCURoleSelection,
    UserInformation,
)

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PRIVATE_CLASS = "1.2.3.4.5.6.7"

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
RLE = "1.2.840.10008.1.2.5"

#: The transfer syntax each storescp preference option puts first, from
#: DCMTK's storescp documentation.
FIRST_CHOICE = {
    "+x=": EXPLICIT_LE,
    "+xe": EXPLICIT_LE,
    "+xb": EXPLICIT_BE,
    "+xs": JPEG_LOSSLESS_SV1,
    "+xy": JPEG_BASELINE,
    "+xx": JPEG_EXTENDED,
    "+xv": JPEG_2000_LOSSLESS,
    "+xw": JPEG_2000,
    "+xt": JPEG_LS_LOSSLESS,
    "+xu": JPEG_LS_NEAR_LOSSLESS,
    "+xm": "1.2.840.10008.1.2.4.100",
    "+xh": "1.2.840.10008.1.2.4.101",
    "+xn": "1.2.840.10008.1.2.4.102",
    "+xl": "1.2.840.10008.1.2.4.103",
    "+x2": "1.2.840.10008.1.2.4.104",
    "+x3": "1.2.840.10008.1.2.4.105",
    "+xo": "1.2.840.10008.1.2.4.106",
    "+x4": "1.2.840.10008.1.2.4.107",
    "+x5": "1.2.840.10008.1.2.4.108",
    "+xr": RLE,
    "+xd": DEFLATED,
    "+xi": IMPLICIT_LE,
    "+xa": JPEG_2000,
}


def request(contexts, roles=(), calledAETitle="ANY-SCP", callingAETitle="ECHOSCU", **userInformation):
    """
    An A-ASSOCIATE-RQ proposing C{contexts}, a list of
    C{(contextID, abstractSyntax, transferSyntaxes)}.
    """
    return AAssociateRQ(
        calledAETitle,
        callingAETitle,
        [PresentationContextRQ(contextID, abstract, list(syntaxes)) for contextID, abstract, syntaxes in contexts],
        UserInformation(maximumLength=16384, roleSelections=list(roles), **userInformation),
    )


class TransferSyntaxChoiceTests(SynchronousTestCase):
    """
    The acceptor answers each presentation context as DCMTK does: the
    first syntax of the acceptor's own preference list that the requestor
    proposed.
    """

    def test_acceptorPreferenceWins(self):
        """
        When the requestor prefers implicit VR and the acceptor explicit VR
        little endian, explicit VR little endian is chosen.
        """
        policy = AcceptorPolicy({VERIFICATION: ACCEPTOR_PREFERENCES["+x="]})
        answers, roles, accepted = acceptPresentationContexts(
            request([(1, VERIFICATION, [IMPLICIT_LE, EXPLICIT_BE, EXPLICIT_LE])]), policy
        )
        self.assertEqual(answers, [PresentationContextAC(1, 0, EXPLICIT_LE)])
        self.assertEqual(roles, [])
        self.assertEqual(accepted, {1: NegotiatedContext(1, VERIFICATION, EXPLICIT_LE)})

    def test_fallsBackDownThePreferenceList(self):
        """
        Without the acceptor's first choice, its second is taken, and so
        on.
        """
        policy = AcceptorPolicy({VERIFICATION: (EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE)})
        for proposed, chosen in (
            ([IMPLICIT_LE, EXPLICIT_BE], EXPLICIT_BE),
            ([IMPLICIT_LE], IMPLICIT_LE),
            ([JPEG_BASELINE, IMPLICIT_LE, EXPLICIT_LE], EXPLICIT_LE),
        ):
            answers, _, _ = acceptPresentationContexts(request([(1, VERIFICATION, proposed)]), policy)
            self.assertEqual(answers, [PresentationContextAC(1, 0, chosen)])

    def test_firstChoiceOfEachOption(self):
        """
        For every storescp preference option, offered every syntax, the
        acceptor chooses the one the option prefers.
        """
        self.assertEqual(set(ACCEPTOR_PREFERENCES), set(FIRST_CHOICE))
        for option, expected in FIRST_CHOICE.items():
            policy = AcceptorPolicy({CT_IMAGE_STORAGE: ACCEPTOR_PREFERENCES[option]})
            answers, _, _ = acceptPresentationContexts(
                request([(1, CT_IMAGE_STORAGE, list(reversed(ALL_SUPPORTED)))]), policy
            )
            self.assertEqual(answers, [PresentationContextAC(1, 0, expected)], option)

    def test_eachOptionFollowsItsWholeList(self):
        """
        For every option, taking away the chosen syntax from the proposal
        makes the acceptor choose the next one of its list, until none is
        left and the context is refused with result 4.
        """
        for option, preferences in ACCEPTOR_PREFERENCES.items():
            policy = AcceptorPolicy({CT_IMAGE_STORAGE: preferences})
            proposed = list(ALL_SUPPORTED)
            for expected in preferences:
                answers, _, accepted = acceptPresentationContexts(request([(7, CT_IMAGE_STORAGE, proposed)]), policy)
                self.assertEqual(answers, [PresentationContextAC(7, 0, expected)], option)
                self.assertEqual(accepted[7].transferSyntax, expected)
                proposed.remove(expected)
            answers, _, accepted = acceptPresentationContexts(request([(7, CT_IMAGE_STORAGE, proposed)]), policy)
            self.assertEqual(answers, [PresentationContextAC(7, 4)], option)
            self.assertEqual(accepted, {})

    def test_uncompressedOptions(self):
        """
        The uncompressed options list the three uncompressed syntaxes in
        the order storescp uses; C{+xi} accepts implicit VR only.
        """
        self.assertEqual(ACCEPTOR_PREFERENCES["+x="], (EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE))
        self.assertEqual(ACCEPTOR_PREFERENCES["+xe"], (EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE))
        self.assertEqual(ACCEPTOR_PREFERENCES["+xb"], (EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE))
        self.assertEqual(ACCEPTOR_PREFERENCES["+xi"], (IMPLICIT_LE,))

    def test_compressedOptionsFallBackToUncompressed(self):
        """
        Each option preferring one compressed syntax also takes the three
        uncompressed ones after it.
        """
        for option in ("+xs", "+xy", "+xx", "+xv", "+xw", "+xt", "+xu", "+xr", "+xd", "+xm", "+x4"):
            self.assertEqual(
                ACCEPTOR_PREFERENCES[option], (FIRST_CHOICE[option], EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE), option
            )

    def test_acceptAllEndsUncompressed(self):
        """
        C{+xa} accepts every syntax listed, compressed ones first and the
        uncompressed ones last.
        """
        self.assertEqual(ACCEPTOR_PREFERENCES["+xa"][-3:], (EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE))
        self.assertEqual(len(set(ALL_SUPPORTED)), len(ALL_SUPPORTED))
        for syntax in (JPEG_2000, JPEG_BASELINE, RLE, DEFLATED, "1.2.840.10008.1.2.4.108"):
            self.assertIn(syntax, ACCEPTOR_PREFERENCES["+xa"])

    def test_implicitOnlyRefusesExplicit(self):
        """
        With C{+xi}, a context proposing only explicit VR is refused with
        result 4 (transfer-syntaxes-not-supported).
        """
        policy = AcceptorPolicy({VERIFICATION: ACCEPTOR_PREFERENCES["+xi"]})
        answers, _, accepted = acceptPresentationContexts(
            request([(1, VERIFICATION, [EXPLICIT_LE, EXPLICIT_BE])]), policy
        )
        self.assertEqual(answers, [PresentationContextAC(1, 4)])
        self.assertEqual(accepted, {})

    def test_abstractSyntaxNotSupported(self):
        """
        A context whose abstract syntax the policy does not know is refused
        with result 3 (abstract-syntax-not-supported).
        """
        policy = AcceptorPolicy({VERIFICATION: (IMPLICIT_LE,)})
        answers, roles, accepted = acceptPresentationContexts(request([(3, CT_IMAGE_STORAGE, [IMPLICIT_LE])]), policy)
        self.assertEqual(answers, [PresentationContextAC(3, 3)])
        self.assertEqual(answers[0].transferSyntax, "")
        self.assertEqual(roles, [])
        self.assertEqual(accepted, {})

    def test_promiscuousDefault(self):
        """
        With default transfer syntaxes (storescp's C{--promiscuous}), any
        abstract syntax is accepted, while those in the map keep their own
        lists.
        """
        policy = AcceptorPolicy({VERIFICATION: (IMPLICIT_LE,)}, defaultTransferSyntaxes=(EXPLICIT_LE, IMPLICIT_LE))
        answers, _, accepted = acceptPresentationContexts(
            request(
                [
                    (1, PRIVATE_CLASS, [IMPLICIT_LE, EXPLICIT_LE]),
                    (3, VERIFICATION, [EXPLICIT_LE, IMPLICIT_LE]),
                    (5, MR_IMAGE_STORAGE, [JPEG_BASELINE]),
                ]
            ),
            policy,
        )
        self.assertEqual(
            answers,
            [
                PresentationContextAC(1, 0, EXPLICIT_LE),
                PresentationContextAC(3, 0, IMPLICIT_LE),
                PresentationContextAC(5, 4),
            ],
        )
        self.assertEqual(sorted(accepted), [1, 3])

    def test_preferencesFor(self):
        """
        L{AcceptorPolicy.preferencesFor} gives the map's list, the default
        list, or C{None}.
        """
        strict = AcceptorPolicy({VERIFICATION: (IMPLICIT_LE,)})
        self.assertEqual(strict.preferencesFor(VERIFICATION), (IMPLICIT_LE,))
        self.assertIsNone(strict.preferencesFor(CT_IMAGE_STORAGE))
        promiscuous = AcceptorPolicy({}, defaultTransferSyntaxes=(EXPLICIT_LE,))
        self.assertEqual(promiscuous.preferencesFor(CT_IMAGE_STORAGE), (EXPLICIT_LE,))

    def test_answersEveryContextInOrder(self):
        """
        Every proposed context gets an answer, in the proposal's order,
        including several contexts for the same abstract syntax.
        """
        policy = AcceptorPolicy(
            {CT_IMAGE_STORAGE: (JPEG_BASELINE, EXPLICIT_LE, IMPLICIT_LE), VERIFICATION: (IMPLICIT_LE,)}
        )
        answers, _, accepted = acceptPresentationContexts(
            request(
                [
                    (1, CT_IMAGE_STORAGE, [JPEG_BASELINE]),
                    (3, CT_IMAGE_STORAGE, [IMPLICIT_LE]),
                    (5, MR_IMAGE_STORAGE, [IMPLICIT_LE]),
                    (7, VERIFICATION, [EXPLICIT_LE]),
                    (9, VERIFICATION, [IMPLICIT_LE]),
                ]
            ),
            policy,
        )
        self.assertEqual(
            answers,
            [
                PresentationContextAC(1, 0, JPEG_BASELINE),
                PresentationContextAC(3, 0, IMPLICIT_LE),
                PresentationContextAC(5, 3),
                PresentationContextAC(7, 4),
                PresentationContextAC(9, 0, IMPLICIT_LE),
            ],
        )
        self.assertEqual(
            accepted,
            {
                1: NegotiatedContext(1, CT_IMAGE_STORAGE, JPEG_BASELINE),
                3: NegotiatedContext(3, CT_IMAGE_STORAGE, IMPLICIT_LE),
                9: NegotiatedContext(9, VERIFICATION, IMPLICIT_LE),
            },
        )


class RoleSelectionTests(SynchronousTestCase):
    """
    SCP/SCU role selection (PS3.7 D.3.3.4) on the acceptor side: the SCP
    role goes to the requestor only for the SOP classes the policy names.
    """

    policy = AcceptorPolicy(
        {CT_IMAGE_STORAGE: (IMPLICIT_LE,), MR_IMAGE_STORAGE: (IMPLICIT_LE,), STUDY_ROOT_GET: (IMPLICIT_LE,)},
        scpRoleSOPClasses=frozenset([CT_IMAGE_STORAGE]),
    )

    def test_defaultRoles(self):
        """
        Without a role selection item, the requestor is SCU only and no
        role item is answered.
        """
        _, roles, accepted = acceptPresentationContexts(request([(1, CT_IMAGE_STORAGE, [IMPLICIT_LE])]), self.policy)
        self.assertEqual(roles, [])
        self.assertEqual((accepted[1].scuRole, accepted[1].scpRole), (True, False))

    def test_scpRoleGranted(self):
        """
        The SCP role asked for a class of C{scpRoleSOPClasses} is granted,
        and answered with a role selection item.
        """
        _, roles, accepted = acceptPresentationContexts(
            request([(1, CT_IMAGE_STORAGE, [IMPLICIT_LE])], [SCPSCURoleSelection(CT_IMAGE_STORAGE, False, True)]),
            self.policy,
        )
        self.assertEqual(roles, [SCPSCURoleSelection(CT_IMAGE_STORAGE, False, True)])
        self.assertEqual(accepted[1], NegotiatedContext(1, CT_IMAGE_STORAGE, IMPLICIT_LE, False, True))

    def test_bothRolesGranted(self):
        """
        Asking for both roles on an allowed class grants both.
        """
        _, roles, accepted = acceptPresentationContexts(
            request([(1, CT_IMAGE_STORAGE, [IMPLICIT_LE])], [SCPSCURoleSelection(CT_IMAGE_STORAGE, True, True)]),
            self.policy,
        )
        self.assertEqual(roles, [SCPSCURoleSelection(CT_IMAGE_STORAGE, True, True)])
        self.assertEqual((accepted[1].scuRole, accepted[1].scpRole), (True, True))

    def test_scpRoleRefusedOutsidePolicy(self):
        """
        The SCP role asked for a class not in C{scpRoleSOPClasses} is
        refused: the answer carries SCP role 0.
        """
        _, roles, accepted = acceptPresentationContexts(
            request([(1, MR_IMAGE_STORAGE, [IMPLICIT_LE])], [SCPSCURoleSelection(MR_IMAGE_STORAGE, True, True)]),
            self.policy,
        )
        self.assertEqual(roles, [SCPSCURoleSelection(MR_IMAGE_STORAGE, True, False)])
        self.assertEqual((accepted[1].scuRole, accepted[1].scpRole), (True, False))

    def test_roleForRefusedContextNotAnswered(self):
        """
        A role selection for a class whose context was refused, or that no
        context proposes, gets no answer.
        """
        _, roles, accepted = acceptPresentationContexts(
            request(
                [(1, CT_IMAGE_STORAGE, [EXPLICIT_LE])],
                [SCPSCURoleSelection(CT_IMAGE_STORAGE, False, True), SCPSCURoleSelection(VERIFICATION, True, True)],
            ),
            self.policy,
        )
        self.assertEqual(roles, [])
        self.assertEqual(accepted, {})

    def test_oneAnswerPerClass(self):
        """
        Two contexts for the same class give one role selection answer and
        the role on both contexts.
        """
        _, roles, accepted = acceptPresentationContexts(
            request(
                [(1, CT_IMAGE_STORAGE, [IMPLICIT_LE]), (3, CT_IMAGE_STORAGE, [IMPLICIT_LE])],
                [SCPSCURoleSelection(CT_IMAGE_STORAGE, False, True)],
            ),
            self.policy,
        )
        self.assertEqual(roles, [SCPSCURoleSelection(CT_IMAGE_STORAGE, False, True)])
        self.assertEqual([accepted[1].scpRole, accepted[3].scpRole], [True, True])


class SendingPreferencesTests(SynchronousTestCase):
    """
    On a context whose requestor takes only the SCP role (the acceptor
    sends C-GET sub-operations on it), deflated explicit VR little endian
    ranks after the uncompressed syntaxes, whatever C{+x?} says: objects
    stored uncompressed then go as they are instead of compressed anew.
    """

    everything = (EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE, DEFLATED, JPEG_BASELINE)

    def accepted(self, key, roles):
        policy = AcceptorPolicy({CT_IMAGE_STORAGE: ACCEPTOR_PREFERENCES[key]}, scpRoleSOPClasses=frozenset([CT_IMAGE_STORAGE]))
        _, _, accepted = acceptPresentationContexts(
            request([(1, CT_IMAGE_STORAGE, list(self.everything))], [SCPSCURoleSelection(CT_IMAGE_STORAGE, *roles)]),
            policy,
        )
        return accepted[1].transferSyntax

    def test_sendOnly(self):
        """
        With C{+xa} and C{+xd}, which put deflate first, a send-only context
        takes explicit VR little endian; compressed syntaxes keep their
        rank before it.
        """
        self.assertEqual(self.accepted("+xd", (False, True)), EXPLICIT_LE)
        self.assertEqual(self.accepted("+xa", (False, True)), JPEG_BASELINE)
        self.assertEqual(
            negotiation.sendingPreferences(ACCEPTOR_PREFERENCES["+xa"]),
            tuple(ts for ts in ALL_SUPPORTED if ts != DEFLATED) + (DEFLATED,),
        )

    def test_deflateOnly(self):
        """
        Deflate is still taken when it is all the requestor proposes.
        """
        policy = AcceptorPolicy({CT_IMAGE_STORAGE: ACCEPTOR_PREFERENCES["+xd"]}, scpRoleSOPClasses=frozenset([CT_IMAGE_STORAGE]))
        _, _, accepted = acceptPresentationContexts(
            request([(1, CT_IMAGE_STORAGE, [DEFLATED])], [SCPSCURoleSelection(CT_IMAGE_STORAGE, False, True)]), policy
        )
        self.assertEqual(accepted[1].transferSyntax, DEFLATED)

    def test_receivingUnchanged(self):
        """
        Contexts on which the requestor may send, with the SCU role alone or
        both roles, keep the configured preferences.
        """
        self.assertEqual(self.accepted("+xd", (True, False)), DEFLATED)
        self.assertEqual(self.accepted("+xd", (True, True)), DEFLATED)


class CheckAssociationRequestTests(SynchronousTestCase):
    """
    L{checkAssociationRequest} refuses a request before its contexts are
    looked at, with the A-ASSOCIATE-RJ of PS3.8 Table 9-21.
    """

    def test_acceptable(self):
        """
        A request with DICOM's application context passes every check it is
        given.
        """
        self.assertIsNone(checkAssociationRequest(request([])))
        self.assertIsNone(
            checkAssociationRequest(
                request([], implementationClassUID="1.2.3"),
                calledAETitles=["ANY-SCP"],
                callingAETitles=["ECHOSCU", "OTHER"],
                requireImplementationClassUID=True,
            )
        )

    def test_applicationContextNotSupported(self):
        """
        Another application context name: permanent, service user, reason 2.
        """
        rq = request([])
        rq.applicationContextName = "1.2.3.4"
        self.assertEqual(checkAssociationRequest(rq), AAssociateRJ(1, 1, 2))

    def test_calledAENotRecognized(self):
        """
        A called AE title we do not answer to: permanent, service user,
        reason 7.
        """
        self.assertEqual(
            checkAssociationRequest(request([], calledAETitle="SOMEONE"), calledAETitles=["ANY-SCP"]),
            AAssociateRJ(1, 1, 7),
        )

    def test_callingAENotRecognized(self):
        """
        A calling AE title not allowed to call: permanent, service user,
        reason 3.
        """
        self.assertEqual(
            checkAssociationRequest(request([], callingAETitle="STRANGER"), callingAETitles=["ECHOSCU"]),
            AAssociateRJ(1, 1, 3),
        )

    def test_implementationClassUIDRequired(self):
        """
        Without an implementation class UID when one is required (storescp
        C{--reject}): permanent, service user, reason 1 (no reason given).
        """
        self.assertEqual(
            checkAssociationRequest(request([]), requireImplementationClassUID=True), AAssociateRJ(1, 1, 1)
        )
        self.assertIsNone(checkAssociationRequest(request([])))

    def test_applicationContextCheckedFirst(self):
        """
        A request wrong in every way is refused for its application context.
        """
        rq = request([], calledAETitle="X", callingAETitle="Y")
        rq.applicationContextName = "1.2.3.4"
        self.assertEqual(
            checkAssociationRequest(rq, ["A"], ["B"], requireImplementationClassUID=True), AAssociateRJ(1, 1, 2)
        )

    def test_tooManyAssociations(self):
        """
        The rejection for one association too many is transient, from the
        presentation-related service provider, local limit exceeded.
        """
        self.assertEqual(TOO_MANY_ASSOCIATIONS, AAssociateRJ(2, 3, 2))


class RequestorTests(SynchronousTestCase):
    """
    The requestor numbers its proposals and reads the acceptor's answers.
    """

    def test_numbering(self):
        """
        Proposals become presentation contexts 1, 3, 5... in order.
        """
        contexts = proposePresentationContexts(
            [(VERIFICATION, (IMPLICIT_LE,)), (CT_IMAGE_STORAGE, (EXPLICIT_LE, IMPLICIT_LE)), (MR_IMAGE_STORAGE, [RLE])]
        )
        self.assertEqual(
            contexts,
            [
                PresentationContextRQ(1, VERIFICATION, [IMPLICIT_LE]),
                PresentationContextRQ(3, CT_IMAGE_STORAGE, [EXPLICIT_LE, IMPLICIT_LE]),
                PresentationContextRQ(5, MR_IMAGE_STORAGE, [RLE]),
            ],
        )

    def test_nothingToPropose(self):
        """
        No proposals give no contexts.
        """
        self.assertEqual(proposePresentationContexts([]), [])

    def test_maximumContexts(self):
        """
        128 proposals fit, numbered up to 255; the 129th is refused.
        """
        self.assertEqual(MAXIMUM_PRESENTATION_CONTEXTS, 128)
        contexts = proposePresentationContexts([(VERIFICATION, [IMPLICIT_LE])] * 128)
        self.assertEqual([c.contextID for c in contexts], list(range(1, 256, 2)))
        self.assertRaises(ValueError, proposePresentationContexts, [(VERIFICATION, [IMPLICIT_LE])] * 129)

    def test_proposalsFromGenerator(self):
        """
        Proposals may come from any iterable, and transfer syntaxes from
        any sequence.
        """
        contexts = proposePresentationContexts((uid, (IMPLICIT_LE,)) for uid in (VERIFICATION, CT_IMAGE_STORAGE))
        self.assertEqual([c.transferSyntaxes for c in contexts], [[IMPLICIT_LE], [IMPLICIT_LE]])

    def test_acceptedAnswers(self):
        """
        Accepted answers become negotiated contexts with the default roles.
        """
        proposed = proposePresentationContexts(
            [(VERIFICATION, [IMPLICIT_LE]), (CT_IMAGE_STORAGE, [EXPLICIT_LE, IMPLICIT_LE])]
        )
        accepted = acceptedPresentationContexts(
            proposed, [PresentationContextAC(1, 0, IMPLICIT_LE), PresentationContextAC(3, 0, EXPLICIT_LE)]
        )
        self.assertEqual(
            accepted,
            {
                1: NegotiatedContext(1, VERIFICATION, IMPLICIT_LE, True, False),
                3: NegotiatedContext(3, CT_IMAGE_STORAGE, EXPLICIT_LE, True, False),
            },
        )

    def test_refusedAnswersLeftOut(self):
        """
        Contexts refused with any result are not usable.
        """
        proposed = proposePresentationContexts([(VERIFICATION, [IMPLICIT_LE])] * 5)
        answers = [PresentationContextAC(2 * n + 1, n) for n in range(1, 5)]
        answers.insert(0, PresentationContextAC(1, 0, IMPLICIT_LE))
        self.assertEqual(list(acceptedPresentationContexts(proposed, answers)), [1])

    def test_unproposedContextIgnored(self):
        """
        An answer for a context ID we did not propose is ignored.
        """
        proposed = proposePresentationContexts([(VERIFICATION, [IMPLICIT_LE])])
        accepted = acceptedPresentationContexts(
            proposed, [PresentationContextAC(1, 0, IMPLICIT_LE), PresentationContextAC(3, 0, IMPLICIT_LE)]
        )
        self.assertEqual(list(accepted), [1])

    def test_unofferedTransferSyntaxIgnored(self):
        """
        An acceptance naming a transfer syntax we did not offer for that
        context is ignored: the context cannot be used.
        """
        proposed = proposePresentationContexts([(VERIFICATION, [IMPLICIT_LE]), (CT_IMAGE_STORAGE, [EXPLICIT_LE])])
        accepted = acceptedPresentationContexts(
            proposed, [PresentationContextAC(1, 0, EXPLICIT_LE), PresentationContextAC(3, 0, EXPLICIT_LE)]
        )
        self.assertEqual(list(accepted), [3])

    def test_roleSelectionAnswer(self):
        """
        The acceptor's role selection answer sets the roles of the contexts
        of that class.
        """
        proposed = proposePresentationContexts([(CT_IMAGE_STORAGE, [IMPLICIT_LE]), (STUDY_ROOT_GET, [IMPLICIT_LE])])
        accepted = acceptedPresentationContexts(
            proposed,
            [PresentationContextAC(1, 0, IMPLICIT_LE), PresentationContextAC(3, 0, IMPLICIT_LE)],
            [SCPSCURoleSelection(CT_IMAGE_STORAGE, False, True)],
        )
        self.assertEqual(accepted[1], NegotiatedContext(1, CT_IMAGE_STORAGE, IMPLICIT_LE, False, True))
        self.assertEqual(accepted[3], NegotiatedContext(3, STUDY_ROOT_GET, IMPLICIT_LE, True, False))


class BothSidesTests(SynchronousTestCase):
    """
    A requestor's proposal answered by an acceptor ends with the same
    negotiated contexts on both sides.
    """

    def test_sameContextsBothSides(self):
        """
        The acceptor's accepted map equals what the requestor reads from
        the answers, roles included.
        """
        proposed = proposePresentationContexts(
            [
                (STUDY_ROOT_GET, [IMPLICIT_LE]),
                (CT_IMAGE_STORAGE, [JPEG_BASELINE, EXPLICIT_LE, IMPLICIT_LE]),
                (MR_IMAGE_STORAGE, [EXPLICIT_LE]),
                (PRIVATE_CLASS, [IMPLICIT_LE]),
            ]
        )
        roles = [SCPSCURoleSelection(CT_IMAGE_STORAGE, False, True), SCPSCURoleSelection(MR_IMAGE_STORAGE, False, True)]
        rq = AAssociateRQ("ANY-SCP", "GETSCU", proposed, UserInformation(maximumLength=0, roleSelections=roles))
        policy = AcceptorPolicy(
            {
                STUDY_ROOT_GET: ACCEPTOR_PREFERENCES["+x="],
                CT_IMAGE_STORAGE: ACCEPTOR_PREFERENCES["+xa"],
                MR_IMAGE_STORAGE: ACCEPTOR_PREFERENCES["+xa"],
            },
            scpRoleSOPClasses=frozenset([CT_IMAGE_STORAGE, MR_IMAGE_STORAGE]),
        )
        self.assertIsNone(checkAssociationRequest(rq))
        answers, grantedRoles, acceptorSide = acceptPresentationContexts(rq, policy)
        requestorSide = acceptedPresentationContexts(proposed, answers, grantedRoles)
        self.assertEqual(requestorSide, acceptorSide)
        self.assertEqual(
            acceptorSide,
            {
                1: NegotiatedContext(1, STUDY_ROOT_GET, IMPLICIT_LE, True, False),
                3: NegotiatedContext(3, CT_IMAGE_STORAGE, JPEG_BASELINE, False, True),
                5: NegotiatedContext(5, MR_IMAGE_STORAGE, EXPLICIT_LE, False, True),
            },
        )
        self.assertEqual(answers[3], PresentationContextAC(7, 3))

    def test_transferSyntaxConstants(self):
        """
        The module's transfer syntax constants are the UIDs of PS3.6.
        """
        self.assertEqual(negotiation.IMPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_LE)
        self.assertEqual(negotiation.EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_LE)
        self.assertEqual(negotiation.EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_BE)
        self.assertEqual(negotiation.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, DEFLATED)
        self.assertEqual(negotiation.JPEG_BASELINE, JPEG_BASELINE)
        self.assertEqual(negotiation.JPEG_LOSSLESS_SV1, JPEG_LOSSLESS_SV1)
        self.assertEqual(negotiation.JPEG_2000, JPEG_2000)
        self.assertEqual(negotiation.RLE_LOSSLESS, RLE)


class AsynchronousOperationsWindowTests(SynchronousTestCase):
    """
    The Asynchronous Operations Window (PS3.7 D.3.3.3): what the acceptor
    answers (L{answerAsynchronousOperationsWindow}) and what the requestor
    may then invoke (L{invocationWindow}).
    """

    def test_notProposedNotAnswered(self):
        """
        Without the sub-item in the request, the answer has none either.
        """
        self.assertIsNone(answerAsynchronousOperationsWindow(None, 16))

    def test_grantedUpToLimit(self):
        """
        The requestor's invocations are granted up to the limit; the
        acceptor invokes one at a time.
        """
        self.assertEqual(answerAsynchronousOperationsWindow((8, 1), 16), (8, 1))
        self.assertEqual(answerAsynchronousOperationsWindow((32, 4), 16), (16, 1))

    def test_unlimitedCut(self):
        """
        An unlimited proposal (0) is negotiated down to the limit.
        """
        self.assertEqual(answerAsynchronousOperationsWindow((0, 0), 16), (16, 1))

    def test_limitOneGrantsNone(self):
        """
        A limit of 1 answers 1: synchronous operations.
        """
        self.assertEqual(answerAsynchronousOperationsWindow((8, 1), 1), (1, 1))

    def test_absentMeansOne(self):
        """
        Either side leaving the sub-item out means one operation at a
        time.
        """
        self.assertEqual(invocationWindow(None, None), 1)
        self.assertEqual(invocationWindow((8, 1), None), 1)
        self.assertEqual(invocationWindow(None, (8, 1)), 1)

    def test_granted(self):
        """
        The acceptor's first value is the requestor's window, never more
        than it proposed.
        """
        self.assertEqual(invocationWindow((8, 1), (4, 1)), 4)
        self.assertEqual(invocationWindow((8, 1), (8, 1)), 8)
        self.assertEqual(invocationWindow((8, 1), (100, 1)), 8)
        self.assertEqual(invocationWindow((8, 1), (0, 1)), 8)
        self.assertEqual(invocationWindow((0, 1), (5, 1)), 5)

    def test_unlimited(self):
        """
        0 on both sides is no limit.
        """
        self.assertIsNone(invocationWindow((0, 0), (0, 0)))
