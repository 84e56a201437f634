"""
Association negotiation (PS3.8 section 7.1.1 and PS3.7 Annex D.3).

Pure functions for both sides of A-ASSOCIATE: the acceptor checks a request
and answers each proposed presentation context and role selection; the
requestor builds its proposal and reads the answer.  Both end with the same
L{NegotiatedContext} map, which is all the layers above need to know.

The acceptor's transfer syntax choice follows DCMTK: the first syntax of the
acceptor's preference list that the requestor proposed wins, and the lists
selected by storescp's C{+x=}, C{+xe}, C{+xb}, C{+xi}, C{+xa}... options are
in L{ACCEPTOR_PREFERENCES}.

It is also the one home of the transfer syntax UIDs (PS3.5 Annex A) that
presentation contexts negotiate, and of the A-ASSOCIATE-RJ answers an
acceptor gives for reasons of its own (L{TOO_MANY_ASSOCIATIONS},
L{CALLED_AE_TITLE_NOT_RECOGNIZED}, L{CALLING_AE_TITLE_NOT_RECOGNIZED};
PS3.8 7.1.1.9).
"""

from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from dicomd.ul.pdu import (
    DICOM_APPLICATION_CONTEXT,
    PC_ABSTRACT_SYNTAX_NOT_SUPPORTED,
    PC_ACCEPTANCE,
    PC_TRANSFER_SYNTAXES_NOT_SUPPORTED,
    REJECT_REASON_APPLICATION_CONTEXT_NOT_SUPPORTED,
    REJECT_REASON_CALLED_AE_NOT_RECOGNIZED,
    REJECT_REASON_CALLING_AE_NOT_RECOGNIZED,
    REJECT_REASON_LOCAL_LIMIT_EXCEEDED,
    REJECT_REASON_NO_REASON,
    REJECT_RESULT_PERMANENT,
    REJECT_RESULT_TRANSIENT,
    REJECT_SOURCE_SERVICE_PROVIDER_PRESENTATION,
    REJECT_SOURCE_SERVICE_USER,
    AAssociateRJ,
    AAssociateRQ,
    PresentationContextAC,
    PresentationContextRQ,
    SCPSCURoleSelection,
)

# -- transfer syntaxes (PS3.5 Annex A, PS3.6 Annex A) ------------------------

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
MPEG2_MAIN_PROFILE_MAIN_LEVEL = "1.2.840.10008.1.2.4.100"
MPEG2_MAIN_PROFILE_MAIN_LEVEL_FRAGMENTABLE = "1.2.840.10008.1.2.4.100.1"
MPEG2_MAIN_PROFILE_HIGH_LEVEL = "1.2.840.10008.1.2.4.101"
MPEG2_MAIN_PROFILE_HIGH_LEVEL_FRAGMENTABLE = "1.2.840.10008.1.2.4.101.1"
MPEG4_HIGH_PROFILE_41 = "1.2.840.10008.1.2.4.102"
MPEG4_HIGH_PROFILE_41_FRAGMENTABLE = "1.2.840.10008.1.2.4.102.1"
MPEG4_BD_HIGH_PROFILE_41 = "1.2.840.10008.1.2.4.103"
MPEG4_BD_HIGH_PROFILE_41_FRAGMENTABLE = "1.2.840.10008.1.2.4.103.1"
MPEG4_HIGH_PROFILE_42_2D = "1.2.840.10008.1.2.4.104"
MPEG4_HIGH_PROFILE_42_2D_FRAGMENTABLE = "1.2.840.10008.1.2.4.104.1"
MPEG4_HIGH_PROFILE_42_3D = "1.2.840.10008.1.2.4.105"
MPEG4_HIGH_PROFILE_42_3D_FRAGMENTABLE = "1.2.840.10008.1.2.4.105.1"
MPEG4_STEREO_HIGH_PROFILE_42 = "1.2.840.10008.1.2.4.106"
MPEG4_STEREO_HIGH_PROFILE_42_FRAGMENTABLE = "1.2.840.10008.1.2.4.106.1"
HEVC_MAIN_PROFILE_51 = "1.2.840.10008.1.2.4.107"
HEVC_MAIN_10_PROFILE_51 = "1.2.840.10008.1.2.4.108"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

#: The uncompressed syntaxes every DICOM implementation can convert between,
#: explicit little endian first (the local byte order of every platform we
#: run on).
UNCOMPRESSED = (EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)

#: Every syntax storescp's C{+xa} accepts, in its order of preference.
ALL_SUPPORTED = (
    JPEG_2000,
    JPEG_2000_LOSSLESS,
    JPEG_EXTENDED,
    JPEG_BASELINE,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_NEAR_LOSSLESS,
    JPEG_LS_LOSSLESS,
    RLE_LOSSLESS,
    MPEG2_MAIN_PROFILE_MAIN_LEVEL,
    MPEG2_MAIN_PROFILE_MAIN_LEVEL_FRAGMENTABLE,
    MPEG2_MAIN_PROFILE_HIGH_LEVEL,
    MPEG2_MAIN_PROFILE_HIGH_LEVEL_FRAGMENTABLE,
    MPEG4_HIGH_PROFILE_41,
    MPEG4_HIGH_PROFILE_41_FRAGMENTABLE,
    MPEG4_BD_HIGH_PROFILE_41,
    MPEG4_BD_HIGH_PROFILE_41_FRAGMENTABLE,
    MPEG4_HIGH_PROFILE_42_2D,
    MPEG4_HIGH_PROFILE_42_2D_FRAGMENTABLE,
    MPEG4_HIGH_PROFILE_42_3D,
    MPEG4_HIGH_PROFILE_42_3D_FRAGMENTABLE,
    MPEG4_STEREO_HIGH_PROFILE_42,
    MPEG4_STEREO_HIGH_PROFILE_42_FRAGMENTABLE,
    HEVC_MAIN_PROFILE_51,
    HEVC_MAIN_10_PROFILE_51,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
) + UNCOMPRESSED


def _preferring(transferSyntax: str) -> Tuple[str, ...]:
    return (transferSyntax,) + UNCOMPRESSED


#: The acceptor's transfer syntaxes, in preference order, for each of
#: storescp's "preferred network transfer syntaxes" options.
ACCEPTOR_PREFERENCES: Dict[str, Tuple[str, ...]] = {
    "+x=": UNCOMPRESSED,
    "+xe": UNCOMPRESSED,
    "+xb": (EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN),
    "+xs": _preferring(JPEG_LOSSLESS_SV1),
    "+xy": _preferring(JPEG_BASELINE),
    "+xx": _preferring(JPEG_EXTENDED),
    "+xv": _preferring(JPEG_2000_LOSSLESS),
    "+xw": _preferring(JPEG_2000),
    "+xt": _preferring(JPEG_LS_LOSSLESS),
    "+xu": _preferring(JPEG_LS_NEAR_LOSSLESS),
    "+xm": _preferring(MPEG2_MAIN_PROFILE_MAIN_LEVEL),
    "+xh": _preferring(MPEG2_MAIN_PROFILE_HIGH_LEVEL),
    "+xn": _preferring(MPEG4_HIGH_PROFILE_41),
    "+xl": _preferring(MPEG4_BD_HIGH_PROFILE_41),
    "+x2": _preferring(MPEG4_HIGH_PROFILE_42_2D),
    "+x3": _preferring(MPEG4_HIGH_PROFILE_42_3D),
    "+xo": _preferring(MPEG4_STEREO_HIGH_PROFILE_42),
    "+x4": _preferring(HEVC_MAIN_PROFILE_51),
    "+x5": _preferring(HEVC_MAIN_10_PROFILE_51),
    "+xr": _preferring(RLE_LOSSLESS),
    "+xd": _preferring(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN),
    "+xi": (IMPLICIT_VR_LITTLE_ENDIAN,),
    "+xa": ALL_SUPPORTED,
}


@dataclass(frozen=True, slots=True)
class NegotiatedContext:
    """
    An accepted presentation context, as both sides see it after
    negotiation.

    @ivar scuRole: C{True} when the requestor may invoke operations on this
        context (the default).
    @ivar scpRole: C{True} when the requestor may perform them, which the
        acceptor granted through SCP/SCU role selection (C-GET).
    """

    contextID: int
    abstractSyntax: str
    transferSyntax: str
    scuRole: bool = True
    scpRole: bool = False


@dataclass(frozen=True)
class AcceptorPolicy:
    """
    What an acceptor supports.

    @ivar transferSyntaxes: abstract syntax UID -> the transfer syntaxes
        accepted for it, in preference order.
    @ivar defaultTransferSyntaxes: those accepted for any abstract syntax
        not in the map (storescp's C{--promiscuous}), or C{None} to refuse
        unknown abstract syntaxes.
    @ivar scpRoleSOPClasses: the abstract syntaxes for which a requestor
        may take the SCP role (storage classes, for C-GET).
    """

    transferSyntaxes: Mapping[str, Sequence[str]]
    defaultTransferSyntaxes: Optional[Sequence[str]] = None
    scpRoleSOPClasses: frozenset = frozenset()

    def preferencesFor(self, abstractSyntax: str) -> Optional[Sequence[str]]:
        return self.transferSyntaxes.get(abstractSyntax, self.defaultTransferSyntaxes)


def checkAssociationRequest(
    request: AAssociateRQ,
    calledAETitles: Optional[Iterable[str]] = None,
    callingAETitles: Optional[Iterable[str]] = None,
    requireImplementationClassUID: bool = False,
) -> Optional[AAssociateRJ]:
    """
    Decide whether an acceptor's service user refuses an association
    request outright, before looking at its presentation contexts.

    @param calledAETitles: the AE titles we answer to, or C{None} to answer
        to any (as storescp does).
    @param callingAETitles: the AE titles allowed to call, or C{None} for any.
    @param requireImplementationClassUID: refuse requests without one
        (storescp's C{--reject}).
    @return: the rejection to send, or C{None} when the request may proceed.
    """
    if request.applicationContextName != DICOM_APPLICATION_CONTEXT:
        return AAssociateRJ(
            REJECT_RESULT_PERMANENT, REJECT_SOURCE_SERVICE_USER, REJECT_REASON_APPLICATION_CONTEXT_NOT_SUPPORTED
        )
    if calledAETitles is not None and request.calledAETitle not in set(calledAETitles):
        return AAssociateRJ(REJECT_RESULT_PERMANENT, REJECT_SOURCE_SERVICE_USER, REJECT_REASON_CALLED_AE_NOT_RECOGNIZED)
    if callingAETitles is not None and request.callingAETitle not in set(callingAETitles):
        return AAssociateRJ(REJECT_RESULT_PERMANENT, REJECT_SOURCE_SERVICE_USER, REJECT_REASON_CALLING_AE_NOT_RECOGNIZED)
    if requireImplementationClassUID and not request.userInformation.implementationClassUID:
        return AAssociateRJ(REJECT_RESULT_PERMANENT, REJECT_SOURCE_SERVICE_USER, REJECT_REASON_NO_REASON)
    return None


#: The rejection for one association too many (transient, local limit).
TOO_MANY_ASSOCIATIONS = AAssociateRJ(
    REJECT_RESULT_TRANSIENT, REJECT_SOURCE_SERVICE_PROVIDER_PRESENTATION, REJECT_REASON_LOCAL_LIMIT_EXCEEDED
)

#: The rejection of an association whose called AE title no AE of a
#: listening port answers to, or whose peer may not use that AE
#: (permanent, service user).
CALLED_AE_TITLE_NOT_RECOGNIZED = AAssociateRJ(
    REJECT_RESULT_PERMANENT, REJECT_SOURCE_SERVICE_USER, REJECT_REASON_CALLED_AE_NOT_RECOGNIZED
)

#: The rejection of an association whose calling AE title is bound to
#: another certificate (permanent, service user, calling AE title not
#: recognized).
CALLING_AE_TITLE_NOT_RECOGNIZED = AAssociateRJ(
    REJECT_RESULT_PERMANENT, REJECT_SOURCE_SERVICE_USER, REJECT_REASON_CALLING_AE_NOT_RECOGNIZED
)


#: The longest UID (PS3.5 9.1).
MAXIMUM_UID_LENGTH = 64


def acceptPresentationContexts(
    request: AAssociateRQ, policy: AcceptorPolicy
) -> Tuple[List[PresentationContextAC], List[SCPSCURoleSelection], Dict[int, NegotiatedContext]]:
    """
    Answer every proposed presentation context and role selection.

    The answer always fits an A-ASSOCIATE-AC: each context ID is answered
    once (so at most 256 role selections are granted) and an abstract
    syntax longer than a UID is refused, so the granted role selections,
    which echo abstract syntaxes, fit the user information item whatever
    the request held.

    @return: the presentation context items and role selection items for
        the A-ASSOCIATE-AC, and the accepted contexts by ID.
    """
    proposedRoles = {role.sopClassUID: role for role in request.userInformation.roleSelections}
    answers = []
    accepted = {}
    grantedRoles = {}
    answered = set()
    for context in request.presentationContexts:
        if context.contextID in answered:
            # A context ID proposed twice is answered once, for its first
            # proposal: the peer could not tell two answers apart.
            continue
        answered.add(context.contextID)
        if len(context.abstractSyntax) > MAXIMUM_UID_LENGTH:
            # Not a UID (PS3.5 9.1), whatever the policy: nor is it echoed
            # in a role selection, whose item it could overflow.
            answers.append(PresentationContextAC(context.contextID, PC_ABSTRACT_SYNTAX_NOT_SUPPORTED))
            continue
        preferences = policy.preferencesFor(context.abstractSyntax)
        if preferences is None:
            answers.append(PresentationContextAC(context.contextID, PC_ABSTRACT_SYNTAX_NOT_SUPPORTED))
            continue
        scuRole, scpRole = True, False
        proposed = proposedRoles.get(context.abstractSyntax)
        if proposed is not None:
            scuRole = proposed.scuRole
            scpRole = proposed.scpRole and context.abstractSyntax in policy.scpRoleSOPClasses
        if scpRole and not scuRole:
            preferences = sendingPreferences(preferences)
        chosen = next((ts for ts in preferences if ts in context.transferSyntaxes), None)
        if chosen is None:
            answers.append(PresentationContextAC(context.contextID, PC_TRANSFER_SYNTAXES_NOT_SUPPORTED))
            continue
        answers.append(PresentationContextAC(context.contextID, PC_ACCEPTANCE, chosen))
        if proposed is not None:
            grantedRoles[context.abstractSyntax] = SCPSCURoleSelection(context.abstractSyntax, scuRole, scpRole)
        accepted[context.contextID] = NegotiatedContext(
            context.contextID, context.abstractSyntax, chosen, scuRole, scpRole
        )
    return answers, list(grantedRoles.values()), accepted


def sendingPreferences(preferences: Sequence[str]) -> Sequence[str]:
    """
    The acceptor's transfer syntaxes, in the order it takes them for a
    context on which it only sends: one whose requestor took the SCP role
    and not the SCU role, which carries the C-STORE sub-operations of a
    C-GET.

    They are the configured C{preferences}, which say what the acceptor
    likes to receive, except that deflated explicit VR little endian comes
    after the uncompressed syntaxes.  An object goes in the syntax it is
    stored in when its context has that one, and is converted otherwise:
    on a deflated context every object stored uncompressed would be
    compressed anew, while on an uncompressed one those go as they are and
    only the objects stored deflated are converted, which takes no more
    than inflating them.
    """
    if DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN not in preferences:
        return preferences
    others = [syntax for syntax in preferences if syntax != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN]
    last = max((others.index(syntax) for syntax in UNCOMPRESSED if syntax in others), default=-1)
    return tuple(others[: last + 1]) + (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,) + tuple(others[last + 1 :])


#: PS3.8 9.3.2.2: presentation context IDs are odd integers from 1 to 255.
MAXIMUM_PRESENTATION_CONTEXTS = 128


def proposePresentationContexts(proposals: Iterable[Tuple[str, Sequence[str]]]) -> List[PresentationContextRQ]:
    """
    Number proposals of C{(abstractSyntax, transferSyntaxes)} as
    presentation contexts 1, 3, 5...

    @raise ValueError: more than the 128 contexts one association can carry.
    """
    contexts = [
        PresentationContextRQ(2 * index + 1, abstractSyntax, list(transferSyntaxes))
        for index, (abstractSyntax, transferSyntaxes) in enumerate(proposals)
    ]
    if len(contexts) > MAXIMUM_PRESENTATION_CONTEXTS:
        raise ValueError("%d presentation contexts proposed, at most 128 fit" % (len(contexts),))
    return contexts


def acceptedPresentationContexts(
    proposed: Sequence[PresentationContextRQ],
    answers: Sequence[PresentationContextAC],
    roleSelections: Sequence[SCPSCURoleSelection] = (),
) -> Dict[int, NegotiatedContext]:
    """
    Read an A-ASSOCIATE-AC's answers, on the requestor side.

    An answer for a context we did not propose, or one naming a transfer
    syntax we did not offer, is ignored: that context cannot be used.
    """
    byID = {context.contextID: context for context in proposed}
    roles = {role.sopClassUID: role for role in roleSelections}
    accepted = {}
    for answer in answers:
        context = byID.get(answer.contextID)
        if context is None or not answer.accepted or answer.transferSyntax not in context.transferSyntaxes:
            continue
        role = roles.get(context.abstractSyntax)
        scuRole, scpRole = (role.scuRole, role.scpRole) if role is not None else (True, False)
        accepted[answer.contextID] = NegotiatedContext(
            answer.contextID, context.abstractSyntax, answer.transferSyntax, scuRole, scpRole
        )
    return accepted


def answerAsynchronousOperationsWindow(
    proposed: Optional[Tuple[int, int]], limit: int
) -> Optional[Tuple[int, int]]:
    """
    The acceptor's Asynchronous Operations Window sub-item (PS3.7 D.3.3.3)
    for the one the requestor C{proposed}, or C{None} when it proposed
    none (the answer is then omitted).

    The first value is how many operations the requestor may invoke
    without waiting for their responses: what it proposed, cut to
    C{limit}, with 0 (unlimited) cut to C{limit} too.  The second is how
    many this side invokes at once on the requestor, the C-STORE
    sub-operations of a C-GET: one, which the standard lets any AE ask.

    @param limit: the most outstanding operations this side performs; 1
        grants no window.
    """
    if proposed is None:
        return None
    invoked = proposed[0]
    return (limit if invoked == 0 else min(invoked, limit), 1)


def invocationWindow(proposed: Optional[Tuple[int, int]], answered: Optional[Tuple[int, int]]) -> Optional[int]:
    """
    How many operations the requestor may have outstanding once the
    acceptor answered its Asynchronous Operations Window sub-item (PS3.7
    D.3.3.3): the first value of the A-ASSOCIATE-AC's, never more than the
    requestor proposed; 1 when either side left the sub-item out, C{None}
    for no limit (0 on both sides).
    """
    if proposed is None or answered is None:
        return 1
    limits = [value for value in (proposed[0], answered[0]) if value]
    return min(limits) if limits else None
