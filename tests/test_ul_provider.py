"""
Tests for L{dicomd.ul.provider}: the Upper Layer protocol machine of PS3.8
section 9.2 and the framing of the received byte stream.

L{StateTableTests} holds one generated test per cell of PS3.8 Table 9-10
and per association side that can reach the cell's state: the provider is
brought into the state by real event sequences, the event is raised, and
the outputs and the next state are compared with what the action
definitions of PS3.8 9.2 (Tables 9-6 to 9-9) prescribe.  The expected
actions come from L{tests.test_ul_fsm.STANDARD_TABLE}, not from the
provider's own table.

L{PullTests} checks that received bytes raise their events one PDU at a
time, as the caller asks for them.
"""

import mmap

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dicomd.ul import provider as provider_module
from dicomd.ul.fsm import Event, State
from dicomd.ul.pdu import (
    AAssociateRJ,
    AAssociateRQ,
    PDataTF,
    PresentationContextRQ,
    PresentationDataValue,
    UserInformation,
    encodePDataTF,
)
from dicomd.ul.provider import (
    MAXIMUM_ASSOCIATE_PDU_LENGTH,
    MAXIMUM_UNLIMITED_PDU_LENGTH,
    RECEIVE_BUFFER_SIZE,
    AbortIndication,
    BufferPool,
    AssociateAccepted,
    AssociateIndication,
    AssociateRejected,
    CloseTransport,
    EventNotAllowed,
    OpenTransport,
    PDataIndication,
    ProviderAbortIndication,
    ReleaseConfirmation,
    ReleaseIndication,
    SendPDU,
    StartARTIM,
    StopARTIM,
    ULProvider,
)
from tests.test_ul_fsm import standardAction
from tests.test_ul_pdu import (
    ASSOCIATE_AC,
    ASSOCIATE_AC_BYTES,
    ASSOCIATE_RJ_BYTES,
    ASSOCIATE_RQ,
    ASSOCIATE_RQ_BYTES,
    P_DATA_TF_BYTES,
    RELEASE_RP_BYTES,
    RELEASE_RQ_BYTES,
)

REQUESTOR = "Requestor"
ACCEPTOR = "Acceptor"

ASSOCIATE_RJ = AAssociateRJ(1, 1, 7)
P_DATA_TF = PDataTF([PresentationDataValue(1, 0x03, b"ABCD"), PresentationDataValue(1, 0x02, b"xyz")])

#: A-ABORT from the peer's service user.
USER_ABORT_BYTES = bytes.fromhex("07 00 00000004 00 00 00 00")

#: An A-RELEASE-RQ whose PDU-length is 2 instead of 4: an invalid PDU
#: (Evt19), reported with reason 6, invalid-PDU-parameter value.
INVALID_PDU_BYTES = bytes.fromhex("05 00 00000002 0000")
INVALID_PDU_REASON = 6

#: A PDU of type 08H, which PS3.8 does not define: unrecognized (reason 1).
UNKNOWN_PDU_BYTES = bytes.fromhex("08 00 00000004 00000000")


def receive(provider: ULProvider, data) -> list:
    """
    Hand C{data} to C{provider} and pull the outputs of every PDU it
    completes, one PDU after the other, without answering between them.
    """
    provider.dataReceived(data)
    outputs = []
    more = provider.nextOutputs()
    while more is not None:
        outputs += more
        more = provider.nextOutputs()
    return outputs


def abortBytes(source: int, reason: int) -> bytes:
    """
    An A-ABORT PDU (PS3.8 Table 9-26), field by field.
    """
    return bytes((0x07, 0x00, 0, 0, 0, 4, 0x00, 0x00, source, reason))


def rejectBytes(result: int, source: int, reason: int) -> bytes:
    """
    An A-ASSOCIATE-RJ PDU (PS3.8 Table 9-21), field by field.
    """
    return bytes((0x03, 0x00, 0, 0, 0, 4, 0x00, result, source, reason))


class _AnyDescription:
    """
    Equal to any non-empty string: the free-text description of a
    L{ProviderAbortIndication}.
    """

    def __eq__(self, other):
        return isinstance(other, str) and bool(other)

    def __repr__(self) -> str:
        return "<any description>"


ANY_DESCRIPTION = _AnyDescription()


# -- bringing a provider into each state by real event sequences ------------

#: The states each side of an association can be in.
REACHABLE = {
    REQUESTOR: [
        State.Sta1,
        State.Sta4,
        State.Sta5,
        State.Sta6,
        State.Sta7,
        State.Sta8,
        State.Sta9,
        State.Sta11,
        State.Sta13,
    ],
    ACCEPTOR: [
        State.Sta1,
        State.Sta2,
        State.Sta3,
        State.Sta6,
        State.Sta7,
        State.Sta8,
        State.Sta10,
        State.Sta12,
        State.Sta13,
    ],
}


def _step(provider: ULProvider, event, expected: State) -> ULProvider:
    """
    Raise C{event} on C{provider} and check that it reached C{expected}.
    """
    event(provider)
    if provider.state is not expected:
        raise AssertionError("expected %s, reached %s" % (expected, provider.state))
    return provider


def providerIn(state: State, side: str, **kwargs) -> ULProvider:
    """
    A provider on C{side} brought into C{state} through the events that
    lead there.
    """
    if side == REQUESTOR:
        return _requestorIn(state, **kwargs)
    return _acceptorIn(state, **kwargs)


def _requestorIn(state: State, **kwargs) -> ULProvider:
    """
    A requestor brought into C{state}: A-ASSOCIATE request, transport
    connected, A-ASSOCIATE-AC, then on to release, collision or abort.
    """
    provider = ULProvider(isRequestor=True, **kwargs)
    path = [
        (State.Sta4, lambda p: p.requestAssociation(ASSOCIATE_RQ)),
        (State.Sta5, lambda p: p.transportConnected()),
        (State.Sta6, lambda p: receive(p, ASSOCIATE_AC_BYTES)),
    ]
    if state is State.Sta8:
        path.append((State.Sta8, lambda p: receive(p, RELEASE_RQ_BYTES)))
    elif state is State.Sta13:
        path.append((State.Sta13, lambda p: p.abort()))
    else:
        path += [
            (State.Sta7, lambda p: p.requestRelease()),
            (State.Sta9, lambda p: receive(p, RELEASE_RQ_BYTES)),
            (State.Sta11, lambda p: p.respondRelease()),
        ]
    for reached, event in path:
        if provider.state is state:
            break
        _step(provider, event, reached)
    if provider.state is not state:
        raise AssertionError("no path to %s for the requestor" % (state,))
    return provider


def _acceptorIn(state: State, **kwargs) -> ULProvider:
    """
    An acceptor brought into C{state}: transport accepted, A-ASSOCIATE-RQ,
    then rejected, or accepted and on to release or collision.
    """
    provider = ULProvider(isRequestor=False, **kwargs)
    path = [
        (State.Sta2, lambda p: p.transportAccepted()),
        (State.Sta3, lambda p: receive(p, ASSOCIATE_RQ_BYTES)),
    ]
    if state is State.Sta13:
        path.append((State.Sta13, lambda p: p.rejectAssociation(ASSOCIATE_RJ)))
    else:
        path.append((State.Sta6, lambda p: p.acceptAssociation(ASSOCIATE_AC)))
        if state is State.Sta8:
            path.append((State.Sta8, lambda p: receive(p, RELEASE_RQ_BYTES)))
        else:
            path += [
                (State.Sta7, lambda p: p.requestRelease()),
                (State.Sta10, lambda p: receive(p, RELEASE_RQ_BYTES)),
                (State.Sta12, lambda p: receive(p, RELEASE_RP_BYTES)),
            ]
    for reached, event in path:
        if provider.state is state:
            break
        _step(provider, event, reached)
    if provider.state is not state:
        raise AssertionError("no path to %s for the acceptor" % (state,))
    return provider


# -- raising each event -------------------------------------------------------

#: How to raise each event of Table 9-10 on a provider.
RAISE = {
    Event.Evt1: lambda p: p.requestAssociation(ASSOCIATE_RQ),
    Event.Evt2: lambda p: p.transportConnected(),
    Event.Evt3: lambda p: receive(p, ASSOCIATE_AC_BYTES),
    Event.Evt4: lambda p: receive(p, ASSOCIATE_RJ_BYTES),
    Event.Evt5: lambda p: p.transportAccepted(),
    Event.Evt6: lambda p: receive(p, ASSOCIATE_RQ_BYTES),
    Event.Evt7: lambda p: p.acceptAssociation(ASSOCIATE_AC),
    Event.Evt8: lambda p: p.rejectAssociation(ASSOCIATE_RJ),
    Event.Evt9: lambda p: p.sendData(P_DATA_TF_BYTES),
    Event.Evt10: lambda p: receive(p, P_DATA_TF_BYTES),
    Event.Evt11: lambda p: p.requestRelease(),
    Event.Evt12: lambda p: receive(p, RELEASE_RQ_BYTES),
    Event.Evt13: lambda p: receive(p, RELEASE_RP_BYTES),
    Event.Evt14: lambda p: p.respondRelease(),
    Event.Evt15: lambda p: p.abort(),
    Event.Evt16: lambda p: receive(p, USER_ABORT_BYTES),
    Event.Evt17: lambda p: p.connectionLost(),
    Event.Evt18: lambda p: p.artimExpired(),
    Event.Evt19: lambda p: receive(p, INVALID_PDU_BYTES),
}


def _unexpectedReason(event: Event) -> int:
    """
    The A-ABORT reason the provider gives for a PDU it did not expect:
    the decoder's reason for an invalid PDU, unexpected-PDU (2) otherwise.
    """
    return INVALID_PDU_REASON if event is Event.Evt19 else 2


def expectedOutcome(action: str, event: Event, side: str):
    """
    The outputs and next state of C{action}, as PS3.8 Tables 9-6 to 9-9
    define it, when C{event} triggered it.

    @return: C{(outputs, nextState)}.
    """
    if action == "AE-1":
        # Issue TRANSPORT CONNECT request primitive to local transport service.
        return [OpenTransport()], State.Sta4
    if action == "AE-2":
        # Send A-ASSOCIATE-RQ-PDU.
        return [SendPDU(ASSOCIATE_RQ_BYTES)], State.Sta5
    if action == "AE-3":
        # Issue A-ASSOCIATE confirmation (accept) primitive.
        return [AssociateAccepted(ASSOCIATE_AC)], State.Sta6
    if action == "AE-4":
        # Issue A-ASSOCIATE confirmation (reject) primitive and close
        # transport connection.
        return [AssociateRejected(ASSOCIATE_RJ), CloseTransport()], State.Sta1
    if action == "AE-5":
        # Issue Transport connection response primitive; start ARTIM timer.
        return [StartARTIM()], State.Sta2
    if action == "AE-6":
        # Stop ARTIM timer and, the A-ASSOCIATE-RQ being acceptable by the
        # service-provider, issue A-ASSOCIATE indication primitive.
        return [StopARTIM(), AssociateIndication(ASSOCIATE_RQ)], State.Sta3
    if action == "AE-7":
        # Send A-ASSOCIATE-AC PDU.
        return [SendPDU(ASSOCIATE_AC_BYTES)], State.Sta6
    if action == "AE-8":
        # Send A-ASSOCIATE-RJ PDU and start ARTIM timer.
        return [SendPDU(ASSOCIATE_RJ_BYTES), StartARTIM()], State.Sta13
    if action == "DT-1":
        # Send P-DATA-TF PDU.
        return [SendPDU(P_DATA_TF_BYTES)], State.Sta6
    if action == "DT-2":
        # Send P-DATA indication primitive.
        return [PDataIndication(P_DATA_TF)], State.Sta6
    if action == "AR-1":
        # Send A-RELEASE-RQ PDU.
        return [SendPDU(RELEASE_RQ_BYTES)], State.Sta7
    if action == "AR-2":
        # Issue A-RELEASE indication primitive.
        return [ReleaseIndication(collision=False)], State.Sta8
    if action == "AR-3":
        # Issue A-RELEASE confirmation primitive, and close transport
        # connection.
        return [ReleaseConfirmation(), CloseTransport()], State.Sta1
    if action == "AR-4":
        # Issue A-RELEASE-RP PDU and start ARTIM timer.
        return [SendPDU(RELEASE_RP_BYTES), StartARTIM()], State.Sta13
    if action == "AR-5":
        # Stop ARTIM timer.
        return [StopARTIM()], State.Sta1
    if action == "AR-6":
        # Issue P-DATA indication.
        return [PDataIndication(P_DATA_TF)], State.Sta7
    if action == "AR-7":
        # Issue P-DATA-TF PDU.
        return [SendPDU(P_DATA_TF_BYTES)], State.Sta8
    if action == "AR-8":
        # Issue A-RELEASE indication (release collision); Sta9 on the
        # association-requestor, Sta10 on the acceptor.
        return [ReleaseIndication(collision=True)], State.Sta9 if side == REQUESTOR else State.Sta10
    if action == "AR-9":
        # Send A-RELEASE-RP PDU.
        return [SendPDU(RELEASE_RP_BYTES)], State.Sta11
    if action == "AR-10":
        # Issue A-RELEASE confirmation primitive.
        return [ReleaseConfirmation()], State.Sta12
    if action == "AA-1":
        # Send A-ABORT PDU (service-user source) and start (or restart)
        # ARTIM timer.  That is what the local user's A-ABORT request sends.
        # For a PDU other than A-ASSOCIATE-RQ opening the connection (Sta2)
        # dicomd departs from the letter of AA-1, deliberately: no user is
        # involved yet, so it sends a service-provider abort whose reason
        # names the fault (unexpected PDU, or the decoder's reason).
        if event is Event.Evt15:
            return [SendPDU(abortBytes(0, 0)), StartARTIM()], State.Sta13
        return [SendPDU(abortBytes(2, _unexpectedReason(event))), StartARTIM()], State.Sta13
    if action == "AA-2":
        # Stop ARTIM timer if running. Close transport connection.
        return [StopARTIM(), CloseTransport()], State.Sta1
    if action == "AA-3":
        # The peer's service user aborted: issue A-ABORT indication and
        # close transport connection.
        return [AbortIndication(0, 0), CloseTransport()], State.Sta1
    if action == "AA-4":
        # Issue A-P-ABORT indication primitive.
        return [ProviderAbortIndication(None, 0, ANY_DESCRIPTION)], State.Sta1
    if action == "AA-5":
        # Stop ARTIM timer.
        return [StopARTIM()], State.Sta1
    if action == "AA-6":
        # Ignore PDU.
        return [], State.Sta13
    if action == "AA-7":
        # Send A-ABORT PDU.
        return [SendPDU(abortBytes(2, _unexpectedReason(event)))], State.Sta13
    if action == "AA-8":
        # Send A-ABORT PDU (service-provider source), issue an A-P-ABORT
        # indication, and start ARTIM timer.
        reason = _unexpectedReason(event)
        return [
            SendPDU(abortBytes(2, reason)),
            ProviderAbortIndication(2, reason, ANY_DESCRIPTION),
            StartARTIM(),
        ], State.Sta13
    raise AssertionError("unknown action %r" % (action,))


class StateTableTests(SynchronousTestCase):
    """
    Every cell of PS3.8 Table 9-10, driven through L{ULProvider}.  The
    C{test_evtNInStaM...} methods are generated below, one per cell and
    side.
    """

    def assertCell(self, event: Event, state: State, side: str) -> None:
        """
        Raise C{event} on a provider in C{state} and check the outcome
        against the standard's action for that cell.
        """
        provider = providerIn(state, side)
        action = standardAction(event, state)
        if action is not None:
            outputs = RAISE[event](provider)
            expectedOutputs, expectedState = expectedOutcome(action, event, side)
            self.assertEqual(outputs, expectedOutputs)
            self.assertIs(provider.state, expectedState)
        else:
            # An empty cell: the provider does nothing and says so, whether
            # the local user asked for something this state does not allow,
            # bytes arrived with no connection, or the event came late.
            self.assertEqual(RAISE[event](provider), [EventNotAllowed(event, state)])
            self.assertIs(provider.state, state)

    def test_everyCellGenerated(self):
        """
        There is a generated test for every (event, state) cell, for each
        side that can be in that state.
        """
        names = {name for name in dir(self) if name.startswith("test_evt")}
        expected = {
            _cellTestName(event, state, side)
            for event in Event
            for state in State
            for side in (REQUESTOR, ACCEPTOR)
            if state in REACHABLE[side]
        }
        self.assertEqual(names, expected)
        self.assertEqual({state for side in REACHABLE for state in REACHABLE[side]}, set(State))
        self.assertEqual(len(names), 19 * (9 + 9))


def _cellTestName(event: Event, state: State, side: str) -> str:
    """
    The name of the generated test for one cell and side.
    """
    return "test_%sIn%sAs%s" % (event.name.lower(), state.name, side)


def _makeCellTest(event: Event, state: State, side: str):
    """
    A test method checking one cell of Table 9-10 on one side.
    """
    def test(self):
        self.assertCell(event, state, side)

    action = standardAction(event, state)
    if action is None:
        test.__doc__ = "%s (%s) in %s on the %s side has no action." % (
            event.name,
            event.value,
            state.name,
            side.lower(),
        )
    else:
        test.__doc__ = "%s (%s) in %s on the %s side runs %s." % (
            event.name,
            event.value,
            state.name,
            side.lower(),
            action,
        )
    test.__name__ = _cellTestName(event, state, side)
    return test


for _event in Event:
    for _state in State:
        for _side in (REQUESTOR, ACCEPTOR):
            if _state in REACHABLE[_side]:
                setattr(StateTableTests, _cellTestName(_event, _state, _side), _makeCellTest(_event, _state, _side))
del _event, _state, _side


class Pair:
    """
    A requestor and an acceptor whose sent PDUs are delivered to each
    other only when a test says so.
    """

    def __init__(self):
        self.requestor = ULProvider(isRequestor=True)
        self.acceptor = ULProvider(isRequestor=False)

    @staticmethod
    def sent(outputs) -> bytes:
        """
        The bytes of the L{SendPDU} outputs in C{outputs}.
        """
        return b"".join(output.data for output in outputs if isinstance(output, SendPDU))


class AssociationLifecycleTests(SynchronousTestCase):
    """
    Two providers talk to each other through whole lifecycles, each PDU
    one side sends delivered to the other.
    """

    def establish(self) -> Pair:
        """
        Establish an association between a fresh pair.
        """
        pair = Pair()
        self.assertEqual(pair.requestor.requestAssociation(ASSOCIATE_RQ), [OpenTransport()])
        self.assertEqual(pair.acceptor.transportAccepted(), [StartARTIM()])
        request = Pair.sent(pair.requestor.transportConnected())
        self.assertEqual(request, ASSOCIATE_RQ_BYTES)
        self.assertEqual(receive(pair.acceptor, request), [StopARTIM(), AssociateIndication(ASSOCIATE_RQ)])
        accept = Pair.sent(pair.acceptor.acceptAssociation(ASSOCIATE_AC))
        self.assertEqual(receive(pair.requestor, accept), [AssociateAccepted(ASSOCIATE_AC)])
        self.assertIs(pair.requestor.state, State.Sta6)
        self.assertIs(pair.acceptor.state, State.Sta6)
        return pair

    def test_dataBothWays(self):
        """
        P-DATA-TF PDUs sent by either side arrive as P-DATA indications.
        """
        pair = self.establish()
        sent = Pair.sent(pair.requestor.sendData(P_DATA_TF_BYTES))
        self.assertEqual(receive(pair.acceptor, sent), [PDataIndication(P_DATA_TF)])
        sent = Pair.sent(pair.acceptor.sendData(P_DATA_TF_BYTES))
        self.assertEqual(receive(pair.requestor, sent), [PDataIndication(P_DATA_TF)])

    def test_sendDataSequence(self):
        """
        DT-1 passes a list of byte strings (for C{writeSequence}) through
        unchanged.
        """
        pair = self.establish()
        header = encodePDataTF(1, 0x03, 4)
        payload = memoryview(b"ABCD")
        self.assertEqual(pair.requestor.sendData([header, payload]), [SendPDU([header, payload])])

    def test_normalRelease(self):
        """
        The requestor releases: AR-1, AR-2, AR-4, AR-3, then AR-5 when the
        acceptor sees the connection close.
        """
        pair = self.establish()
        request = Pair.sent(pair.requestor.requestRelease())
        self.assertEqual(receive(pair.acceptor, request), [ReleaseIndication()])
        self.assertIs(pair.acceptor.state, State.Sta8)
        outputs = pair.acceptor.respondRelease()
        self.assertEqual(outputs, [SendPDU(RELEASE_RP_BYTES), StartARTIM()])
        self.assertEqual(receive(pair.requestor, Pair.sent(outputs)), [ReleaseConfirmation(), CloseTransport()])
        self.assertIs(pair.requestor.state, State.Sta1)
        self.assertEqual(pair.acceptor.connectionLost(), [StopARTIM()])
        self.assertIs(pair.acceptor.state, State.Sta1)

    def test_dataWhileAwaitingReleaseResponse(self):
        """
        After a release request, the side that asked still receives data
        (AR-6) and the other side may still send it (AR-7).
        """
        pair = self.establish()
        request = Pair.sent(pair.requestor.requestRelease())
        receive(pair.acceptor, request)
        sent = Pair.sent(pair.acceptor.sendData(P_DATA_TF_BYTES))
        self.assertIs(pair.acceptor.state, State.Sta8)
        self.assertEqual(receive(pair.requestor, sent), [PDataIndication(P_DATA_TF)])
        self.assertIs(pair.requestor.state, State.Sta7)

    def test_releaseCollision(self):
        """
        Both sides ask to release at once: the requestor goes
        Sta7 -> Sta9 -> Sta11 -> Sta1, the acceptor Sta7 -> Sta10 -> Sta12
        -> Sta13 -> Sta1 (AR-8, AR-9, AR-10, AR-4, AR-3, AR-5).
        """
        pair = self.establish()
        requestorRQ = pair.requestor.requestRelease()
        acceptorRQ = pair.acceptor.requestRelease()
        self.assertEqual(requestorRQ, [SendPDU(RELEASE_RQ_BYTES)])
        self.assertEqual(acceptorRQ, [SendPDU(RELEASE_RQ_BYTES)])
        self.assertIs(pair.requestor.state, State.Sta7)
        self.assertIs(pair.acceptor.state, State.Sta7)

        # Each receives the other's A-RELEASE-RQ: AR-8.
        self.assertEqual(receive(pair.requestor, Pair.sent(acceptorRQ)), [ReleaseIndication(collision=True)])
        self.assertIs(pair.requestor.state, State.Sta9)
        self.assertEqual(receive(pair.acceptor, Pair.sent(requestorRQ)), [ReleaseIndication(collision=True)])
        self.assertIs(pair.acceptor.state, State.Sta10)

        # The requestor's user answers first: AR-9.
        requestorRP = pair.requestor.respondRelease()
        self.assertEqual(requestorRP, [SendPDU(RELEASE_RP_BYTES)])
        self.assertIs(pair.requestor.state, State.Sta11)

        # The acceptor reads that answer: AR-10.
        self.assertEqual(receive(pair.acceptor, Pair.sent(requestorRP)), [ReleaseConfirmation()])
        self.assertIs(pair.acceptor.state, State.Sta12)

        # Then the acceptor's user answers: AR-4.
        acceptorRP = pair.acceptor.respondRelease()
        self.assertEqual(acceptorRP, [SendPDU(RELEASE_RP_BYTES), StartARTIM()])
        self.assertIs(pair.acceptor.state, State.Sta13)

        # The requestor reads it and closes: AR-3.
        self.assertEqual(receive(pair.requestor, Pair.sent(acceptorRP)), [ReleaseConfirmation(), CloseTransport()])
        self.assertIs(pair.requestor.state, State.Sta1)

        # The acceptor sees the close: AR-5.
        self.assertEqual(pair.acceptor.connectionLost(), [StopARTIM()])
        self.assertIs(pair.acceptor.state, State.Sta1)

    def test_rejection(self):
        """
        The acceptor rejects (AE-8), the requestor is told and closes
        (AE-4), and the acceptor's ARTIM timer expiring would close too.
        """
        pair = Pair()
        pair.requestor.requestAssociation(ASSOCIATE_RQ)
        pair.acceptor.transportAccepted()
        receive(pair.acceptor, Pair.sent(pair.requestor.transportConnected()))
        reject = pair.acceptor.rejectAssociation(ASSOCIATE_RJ)
        self.assertEqual(reject, [SendPDU(ASSOCIATE_RJ_BYTES), StartARTIM()])
        self.assertEqual(
            receive(pair.requestor, Pair.sent(reject)), [AssociateRejected(ASSOCIATE_RJ), CloseTransport()]
        )
        self.assertIs(pair.requestor.state, State.Sta1)
        self.assertEqual(pair.acceptor.artimExpired(), [StopARTIM(), CloseTransport()])
        self.assertIs(pair.acceptor.state, State.Sta1)

    def test_userAbort(self):
        """
        A user abort with a source and reason reaches the peer as an
        A-ABORT indication carrying them (AA-1, AA-3).
        """
        pair = self.establish()
        outputs = pair.requestor.abort(source=0, reason=0)
        self.assertEqual(outputs, [SendPDU(abortBytes(0, 0)), StartARTIM()])
        self.assertEqual(receive(pair.acceptor, Pair.sent(outputs)), [AbortIndication(0, 0), CloseTransport()])
        self.assertEqual(pair.requestor.connectionLost(), [StopARTIM()])

    def test_abortSourceAndReasonPassedThrough(self):
        """
        The source and reason given to L{ULProvider.abort} are those of the
        A-ABORT PDU sent.
        """
        provider = providerIn(State.Sta6, ACCEPTOR)
        self.assertEqual(provider.abort(source=2, reason=5), [SendPDU(abortBytes(2, 5)), StartARTIM()])

    def test_providerAbortReceived(self):
        """
        An A-ABORT from the peer's service provider raises an A-P-ABORT
        indication with its reason (AA-3, otherwise branch).
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        self.assertEqual(
            receive(provider, abortBytes(2, 6)),
            [ProviderAbortIndication(2, 6, ANY_DESCRIPTION), CloseTransport()],
        )
        self.assertIs(provider.state, State.Sta1)

    def test_protocolVersionNotSupported(self):
        """
        An A-ASSOCIATE-RQ without bit 0 of its protocol version set is
        rejected by the service provider (AE-6, otherwise branch): result
        permanent, source 2, reason 2 (protocol-version-not-supported).
        """
        provider = providerIn(State.Sta2, ACCEPTOR)
        request = AAssociateRQ(
            "ANY-SCP",
            "ECHOSCU",
            [PresentationContextRQ(1, "1.2.840.10008.1.1", ["1.2.840.10008.1.2"])],
            UserInformation(maximumLength=16384),
            protocolVersion=2,
        )
        self.assertEqual(
            receive(provider, request.encode()),
            [StopARTIM(), SendPDU(rejectBytes(1, 2, 2)), StartARTIM()],
        )
        self.assertIs(provider.state, State.Sta13)

    def test_artimExpiresWhileAwaitingRequest(self):
        """
        A peer that connects and sends nothing is disconnected when ARTIM
        expires (AE-5, then AA-2).
        """
        provider = ULProvider(isRequestor=False)
        self.assertEqual(provider.transportAccepted(), [StartARTIM()])
        self.assertEqual(provider.artimExpired(), [StopARTIM(), CloseTransport()])
        self.assertIs(provider.state, State.Sta1)

    def test_lateArtimIgnored(self):
        """
        An ARTIM expiry reported after the state moved on does nothing but
        say that Evt18 is not allowed there.
        """
        provider = providerIn(State.Sta3, ACCEPTOR)
        self.assertEqual(provider.artimExpired(), [EventNotAllowed(Event.Evt18, State.Sta3)])
        self.assertIs(provider.state, State.Sta3)


class FramingTests(SynchronousTestCase):
    """
    L{ULProvider.nextOutputs} cuts the byte stream into PDUs however it
    arrives, without copying whole PDUs and without buffering more than
    this side accepts.
    """

    def test_associateRQSplitAtEveryByte(self):
        """
        An A-ASSOCIATE-RQ split in two at any byte raises one A-ASSOCIATE
        indication, after its last byte.
        """
        for split in range(1, len(ASSOCIATE_RQ_BYTES)):
            provider = providerIn(State.Sta2, ACCEPTOR)
            self.assertEqual(receive(provider, ASSOCIATE_RQ_BYTES[:split]), [])
            self.assertEqual(
                receive(provider, ASSOCIATE_RQ_BYTES[split:]), [StopARTIM(), AssociateIndication(ASSOCIATE_RQ)]
            )

    def test_pDataTFSplitAtEveryByte(self):
        """
        A P-DATA-TF split in two at any byte is delivered once, whole.
        """
        for split in range(1, len(P_DATA_TF_BYTES)):
            provider = providerIn(State.Sta6, REQUESTOR)
            self.assertEqual(receive(provider, P_DATA_TF_BYTES[:split]), [])
            self.assertEqual(receive(provider, P_DATA_TF_BYTES[split:]), [PDataIndication(P_DATA_TF)])

    def test_everyPDUByteByByte(self):
        """
        Each PDU type fed one byte at a time gives the same outputs as fed
        whole.
        """
        cases = [
            (State.Sta2, ACCEPTOR, ASSOCIATE_RQ_BYTES),
            (State.Sta5, REQUESTOR, ASSOCIATE_AC_BYTES),
            (State.Sta5, REQUESTOR, ASSOCIATE_RJ_BYTES),
            (State.Sta6, REQUESTOR, P_DATA_TF_BYTES),
            (State.Sta6, ACCEPTOR, RELEASE_RQ_BYTES),
            (State.Sta7, REQUESTOR, RELEASE_RP_BYTES),
            (State.Sta6, ACCEPTOR, USER_ABORT_BYTES),
        ]
        for state, side, data in cases:
            whole = receive(providerIn(state, side), data)
            provider = providerIn(state, side)
            outputs = []
            for index in range(len(data)):
                outputs += receive(provider, data[index : index + 1])
            self.assertEqual(outputs, whole)
            self.assertNotEqual(outputs, [])

    @settings(database=None, deadline=None, max_examples=300)
    @given(st.lists(st.integers(min_value=0, max_value=len(P_DATA_TF_BYTES) * 3 + len(RELEASE_RQ_BYTES))))
    def test_anyChunking(self, cuts):
        """
        A stream of several PDUs cut into chunks anywhere gives the same
        outputs as the stream in one piece.
        """
        assertCutAnywhere(self, cuts, receive)

    def test_severalPDUsInOneChunk(self):
        """
        Several PDUs in one chunk raise one event each, in order.
        """
        provider = providerIn(State.Sta6, ACCEPTOR)
        outputs = receive(provider, P_DATA_TF_BYTES + P_DATA_TF_BYTES + RELEASE_RQ_BYTES)
        self.assertEqual(outputs, [PDataIndication(P_DATA_TF), PDataIndication(P_DATA_TF), ReleaseIndication()])
        self.assertIs(provider.state, State.Sta8)

    def test_severalPDUsWithPartialTail(self):
        """
        A chunk holding whole PDUs and the start of another delivers the
        whole ones and keeps the rest for the next chunk.
        """
        provider = providerIn(State.Sta6, ACCEPTOR)
        stream = P_DATA_TF_BYTES * 3
        first = receive(provider, stream[:40])
        self.assertEqual(first, [PDataIndication(P_DATA_TF)] * (40 // len(P_DATA_TF_BYTES)))
        second = receive(provider, stream[40:])
        self.assertEqual(len(first) + len(second), 3)
        self.assertEqual(second, [PDataIndication(P_DATA_TF)] * len(second))

    def test_wholePDUNotCopied(self):
        """
        When a P-DATA-TF arrives whole in one chunk, its PDV data are
        memoryview slices of the very bytes passed in.
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        chunk = P_DATA_TF_BYTES + P_DATA_TF_BYTES
        outputs = receive(provider, chunk)
        self.assertEqual(len(outputs), 2)
        for output in outputs:
            for pdv in output.pdu.values:
                self.assertIsInstance(pdv.data, memoryview)
                self.assertIs(pdv.data.obj, chunk)

    def test_bufferedPDUDataStaysValid(self):
        """
        PDV data of a PDU assembled from several chunks keep their value
        after more bytes are received into the provider's buffer.
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        receive(provider, P_DATA_TF_BYTES[:7])
        outputs = receive(provider, P_DATA_TF_BYTES[7:] + P_DATA_TF_BYTES[:9])
        self.assertEqual(outputs, [PDataIndication(P_DATA_TF)])
        receive(provider, P_DATA_TF_BYTES[9:] + b"\x04\x00\x00\x00")
        self.assertEqual([bytes(pdv.data) for pdv in outputs[0].pdu.values], [b"ABCD", b"xyz"])

    def test_bytearrayAndMemoryviewInput(self):
        """
        Chunks may be bytearrays or memoryviews as well as bytes.
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        self.assertEqual(receive(provider, bytearray(P_DATA_TF_BYTES)), [PDataIndication(P_DATA_TF)])
        self.assertEqual(receive(provider, memoryview(P_DATA_TF_BYTES)), [PDataIndication(P_DATA_TF)])

    def assertRefused(self, provider: ULProvider, outputs: list, reason: int) -> None:
        """
        C{outputs} are AA-8's for an invalid PDU with C{reason}, the
        provider holds no received bytes and reads nothing more.
        """
        self.assertEqual(
            outputs,
            [SendPDU(abortBytes(2, reason)), ProviderAbortIndication(2, reason, ANY_DESCRIPTION), StartARTIM()],
        )
        self.assertIs(provider.state, State.Sta13)
        self.assertEqual(len(provider._buffer), 0)
        self.assertEqual(receive(provider, RELEASE_RQ_BYTES + b"\x00" * 1000), [])
        self.assertEqual(len(provider._buffer), 0)

    def test_oversizedPDataTFRefusedAtHeader(self):
        """
        A P-DATA-TF announcing one byte more than our maximum length is
        refused as soon as its 6-byte header is seen, with A-ABORT source
        2 reason 6, nothing of it buffered.
        """
        provider = providerIn(State.Sta6, REQUESTOR, maximumLength=16384)
        header = encodePDataTF(1, 0x02, 16384 - 6 + 1)[:6]
        self.assertEqual(header, bytes.fromhex("04 00 00004001"))
        self.assertRefused(provider, receive(provider, header), 6)

    def test_fourGigabytePDataTFRefused(self):
        """
        A P-DATA-TF announcing 0xFFFFFFFF bytes is refused at its header,
        even when this side set no limit (maximum length 0).
        """
        for maximumLength in (16384, 0):
            provider = providerIn(State.Sta6, REQUESTOR, maximumLength=maximumLength)
            self.assertRefused(provider, receive(provider, bytes.fromhex("04 00 FFFFFFFF 0000")), 6)

    def test_oversizedHeaderSplit(self):
        """
        An oversized P-DATA-TF header split over two chunks is refused when
        its sixth byte arrives.
        """
        provider = providerIn(State.Sta6, ACCEPTOR, maximumLength=4096)
        self.assertEqual(receive(provider, bytes.fromhex("04 00 00")), [])
        self.assertRefused(provider, receive(provider, bytes.fromhex("00 10 01")), 6)

    def test_oversizedAfterValidPDU(self):
        """
        A valid PDU before an oversized one in the same chunk is delivered;
        then the oversized one is refused.
        """
        provider = providerIn(State.Sta6, REQUESTOR, maximumLength=4096)
        outputs = receive(provider, P_DATA_TF_BYTES + bytes.fromhex("04 00 00001001"))
        self.assertEqual(outputs[0], PDataIndication(P_DATA_TF))
        self.assertRefused(provider, outputs[1:], 6)

    def test_maximumLengthAccepted(self):
        """
        A P-DATA-TF exactly as long as our maximum length is accepted.
        """
        provider = providerIn(State.Sta6, REQUESTOR, maximumLength=4096)
        data = b"\x55" * (4096 - 6)
        outputs = receive(provider, encodePDataTF(1, 0x02, len(data)) + data)
        self.assertEqual(outputs, [PDataIndication(PDataTF([PresentationDataValue(1, 0x02, data)]))])

    def test_unlimitedMaximumLength(self):
        """
        With maximum length 0 (no limit), P-DATA-TFs larger than the usual
        limits are read, up to L{MAXIMUM_UNLIMITED_PDU_LENGTH}.
        """
        provider = providerIn(State.Sta6, REQUESTOR, maximumLength=0)
        data = b"\x01" * 100000
        outputs = receive(provider, encodePDataTF(1, 0x02, len(data)) + data)
        self.assertEqual(len(outputs), 1)
        self.assertEqual(bytes(outputs[0].pdu.values[0].data), data)
        header = (MAXIMUM_UNLIMITED_PDU_LENGTH + 1).to_bytes(4, "big")
        self.assertRefused(provider, receive(provider, b"\x04\x00" + header), 6)

    def test_oversizedAssociateRQRefused(self):
        """
        An A-ASSOCIATE-RQ longer than L{MAXIMUM_ASSOCIATE_PDU_LENGTH} is
        refused at its header (AA-1 in Sta2, service-provider source,
        reason 6).
        """
        provider = providerIn(State.Sta2, ACCEPTOR)
        header = b"\x01\x00" + (MAXIMUM_ASSOCIATE_PDU_LENGTH + 1).to_bytes(4, "big")
        self.assertEqual(receive(provider, header), [SendPDU(abortBytes(2, 6)), StartARTIM()])
        self.assertIs(provider.state, State.Sta13)
        self.assertEqual(len(provider._buffer), 0)

    def test_oversizedFixedLengthPDURefused(self):
        """
        An A-RELEASE-RQ announcing a huge body is refused at its header.
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        self.assertRefused(provider, receive(provider, bytes.fromhex("05 00 40000000")), 6)

    def test_unknownPDUType(self):
        """
        A PDU of an unknown type is refused with reason 1 (unrecognized
        PDU).
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        self.assertRefused(provider, receive(provider, UNKNOWN_PDU_BYTES), 1)

    def test_unknownPDUTypeWithHugeLength(self):
        """
        An unknown PDU type is refused with reason 1 at its header,
        whatever length it announces.
        """
        for length in (0x41, 0x7FFFFFFF, 0xFFFFFFFF):
            provider = providerIn(State.Sta6, ACCEPTOR)
            self.assertRefused(provider, receive(provider, b"\x09\x00" + length.to_bytes(4, "big")), 1)

    def test_garbageOpeningConnection(self):
        """
        Something that is not DICOM (an HTTP request) opening a connection
        gets an A-ABORT naming an unrecognized PDU (AA-1 in Sta2), and the
        rest of it is ignored.
        """
        provider = providerIn(State.Sta2, ACCEPTOR)
        outputs = receive(provider, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        self.assertEqual(outputs, [SendPDU(abortBytes(2, 1)), StartARTIM()])
        self.assertIs(provider.state, State.Sta13)
        self.assertEqual(receive(provider, ASSOCIATE_RQ_BYTES), [])
        self.assertEqual(provider.artimExpired(), [StopARTIM(), CloseTransport()])

    def test_garbageDuringAssociation(self):
        """
        Random bytes on an established association abort it.
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        self.assertRefused(provider, receive(provider, b"\xde\xad\xbe\xef" * 8), 1)

    def test_invalidPDUReason(self):
        """
        A PDU of a known type that fails to decode is refused with the
        decoder's reason.
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        self.assertRefused(provider, receive(provider, INVALID_PDU_BYTES), INVALID_PDU_REASON)

    def test_invalidPDataTFDuringDataTransfer(self):
        """
        A P-DATA-TF in Sta6 whose PDV does not fit it is refused as any invalid PDU is (reason 6), naming the fault.
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        self.assertRefused(provider, receive(provider, bytes.fromhex("04 00 00000008 00000009 01 03 6162")), INVALID_PDU_REASON)
        self.assertIn("PDV item length 9", provider.errorDescription)

    def test_bytesAfterInvalidPDUDiscarded(self):
        """
        Bytes following an invalid PDU, in the same chunk or later, are
        discarded: a valid A-RELEASE-RQ after it raises nothing.
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        outputs = receive(provider, INVALID_PDU_BYTES + RELEASE_RQ_BYTES + P_DATA_TF_BYTES)
        self.assertRefused(provider, outputs, INVALID_PDU_REASON)

    def test_bytesAfterInvalidBufferedPDUDiscarded(self):
        """
        An invalid PDU completed from buffered bytes discards what follows
        it and empties the buffer.
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        self.assertEqual(receive(provider, INVALID_PDU_BYTES[:3]), [])
        outputs = receive(provider, INVALID_PDU_BYTES[3:] + RELEASE_RQ_BYTES[:5])
        self.assertRefused(provider, outputs, INVALID_PDU_REASON)

    def test_dataWithoutConnection(self):
        """
        A PDU delivered to an idle provider is not allowed: Sta1 has no
        cell for its event.
        """
        provider = ULProvider(isRequestor=False)
        self.assertEqual(receive(provider, RELEASE_RQ_BYTES), [EventNotAllowed(Event.Evt12, State.Sta1)])
        self.assertIs(provider.state, State.Sta1)


def readInto(provider: ULProvider, data) -> list:
    """
    Hand C{data} to C{provider} as reads into its receiving buffer
    (L{ULProvider.receiveBuffer}), each as large as the room it gives or
    the rest, and pull the outputs of every PDU after each read, without
    answering between them.
    """
    outputs = []
    data = memoryview(data)
    while data:
        buffer = provider.receiveBuffer()
        count = min(len(buffer), len(data))
        buffer[:count] = data[:count]
        del buffer
        provider.received(count)
        data = data[count:]
        more = provider.nextOutputs()
        while more is not None:
            outputs += more
            more = provider.nextOutputs()
    return outputs


def assertCutAnywhere(case, cuts, feed) -> None:
    """
    Three P-DATA-TF PDUs and an A-RELEASE-RQ, cut at C{cuts} and handed to
    an acceptor in Sta6 piece by piece with C{feed} (L{receive} or
    L{readInto}), raise the events of the stream handed over whole.
    """
    stream = P_DATA_TF_BYTES * 3 + RELEASE_RQ_BYTES
    bounds = [0] + sorted(cuts) + [len(stream)]
    provider = providerIn(State.Sta6, ACCEPTOR)
    outputs = []
    for start, end in zip(bounds, bounds[1:]):
        outputs += feed(provider, stream[start:end])
    case.assertEqual(outputs, [PDataIndication(P_DATA_TF)] * 3 + [ReleaseIndication()])
    case.assertIs(provider.state, State.Sta8)


def pDataTFBytes(size: int, fill: int) -> bytes:
    """
    A P-DATA-TF of one PDV of C{size} bytes of C{fill}, the last fragment
    of a data set.
    """
    return PDataTF([PresentationDataValue(1, 0x02, bytes([fill]) * size)]).encode()


def unlimited() -> ULProvider:
    """
    A requestor's provider in Sta6 that accepts P-DATA-TF PDUs of any
    length.
    """
    provider = providerIn(State.Sta6, REQUESTOR)
    provider.maximumLength = 0
    return provider


class ReceiveBufferTests(SynchronousTestCase):
    """
    Bytes read into the provider's receiving buffer are framed as bytes
    handed to L{ULProvider.dataReceived} are, without copying, and nothing
    a PDU handed on still shows is ever overwritten.
    """

    @settings(database=None, deadline=None, max_examples=300)
    @given(st.lists(st.integers(min_value=0, max_value=len(P_DATA_TF_BYTES) * 3 + len(RELEASE_RQ_BYTES))))
    def test_anyChunking(self, cuts):
        """
        A stream of several PDUs read in pieces cut anywhere gives the
        same outputs as the stream handed over in one piece.
        """
        assertCutAnywhere(self, cuts, readInto)

    def test_pduAcrossReadsNotCopied(self):
        """
        The PDV data of a P-DATA-TF that came in several reads are a view
        of the receiving buffer the reads went into.
        """
        provider = unlimited()
        data = pDataTFBytes(100_000, 7)
        outputs = readInto(provider, data[:30_000]) + readInto(provider, data[30_000:])
        [indication] = outputs
        [pdv] = indication.pdu.values
        self.assertIsInstance(pdv.data, memoryview)
        self.assertIs(pdv.data.obj, provider._store)
        self.assertEqual(bytes(pdv.data), bytes([7]) * 100_000)

    def test_bufferUsedAgainOnceLetGo(self):
        """
        Once nothing shows the PDUs handed on, the next reads go into the
        same buffer again, from its start: thousands of PDUs take no new
        memory.
        """
        provider = unlimited()
        readInto(provider, P_DATA_TF_BYTES)
        first = id(provider._store)
        for fill in range(256):
            [indication] = readInto(provider, pDataTFBytes(20_000, fill))
            self.assertEqual(bytes(indication.pdu.values[0].data[:3]), bytes([fill]) * 3)
            del indication
        self.assertEqual(id(provider._store), first)
        self.assertLessEqual(provider._end, 20_000 + 12)

    def test_heldDataNeverOverwritten(self):
        """
        PDV data still held (as the spool holds a data set's fragments
        until it writes them) keep their bytes however much is read after
        them: the reads go to a new buffer instead.
        """
        provider = unlimited()
        held = []
        for fill in range(40):
            [indication] = readInto(provider, pDataTFBytes(100_000, fill))
            held.append(indication.pdu.values[0].data)
            del indication
        for fill, data in enumerate(held):
            self.assertEqual(bytes(data), bytes([fill]) * 100_000)
        self.assertGreater(len({id(data.obj) for data in held}), 1)

    def test_heldBuffersUsedAgainOnceWritten(self):
        """
        A large data set whose fragments are held for a while (as the
        spool holds them until a worker thread has written them) is read
        into a few buffers in turn, not into new memory for every
        megabyte, and every fragment keeps its bytes while held.
        """
        made = []
        self.patch(provider_module, "_newBuffer", lambda size: made.append(size) or mmap.mmap(-1, size))
        provider = unlimited()
        provider.buffers = BufferPool()
        held = []
        for fill in range(200):
            [indication] = readInto(provider, pDataTFBytes(100_000, fill % 256))
            held.append((fill % 256, indication.pdu.values[0].data))
            del indication
            if len(held) == 12:
                for value, data in held:
                    self.assertEqual(bytes(data[:1]) + bytes(data[-1:]), bytes([value]) * 2)
                held = []
        self.assertLessEqual(len(made), 3)

    def test_bufferGoesBackWhenTheConnectionCloses(self):
        """
        When the transport closes, the provider's receiving buffer goes back
        to its pool, for the next association.
        """
        provider = unlimited()
        provider.buffers = pool = BufferPool()
        readInto(provider, P_DATA_TF_BYTES)
        provider._store[-1] = 7
        provider.connectionLost()
        self.assertIsNone(provider._store)
        self.assertEqual(pool.take(10)[-1], 7)

    def test_pduLargerThanTheBuffer(self):
        """
        Without a maximum length, a P-DATA-TF larger than the receiving
        buffer gets a buffer of its size, and arrives whole.
        """
        provider = unlimited()
        data = pDataTFBytes(3 * RECEIVE_BUFFER_SIZE, 9)
        [indication] = readInto(provider, data[:1000]) + readInto(provider, data[1000:])
        self.assertEqual(bytes(indication.pdu.values[0].data), bytes([9]) * 3 * RECEIVE_BUFFER_SIZE)

    def test_dataReceivedAfterReads(self):
        """
        Bytes handed to L{ULProvider.dataReceived} after reads into the
        buffer join them in order, and what was handed over before the
        first read is kept.
        """
        stream = P_DATA_TF_BYTES * 3
        provider = providerIn(State.Sta6, ACCEPTOR)
        outputs = receive(provider, stream[:5])
        outputs += readInto(provider, stream[5:20])
        outputs += receive(provider, stream[20:30])
        outputs += readInto(provider, stream[30:])
        self.assertEqual(outputs, [PDataIndication(P_DATA_TF)] * 3)

    def test_bytesAfterInvalidPDUDiscarded(self):
        """
        After a PDU that cannot be framed, the buffer is let go, reads go to
        scratch memory, and nothing more is framed: a valid A-RELEASE-RQ
        after it raises nothing.
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        outputs = readInto(provider, INVALID_PDU_BYTES + RELEASE_RQ_BYTES + P_DATA_TF_BYTES)
        self.assertEqual(
            outputs,
            [SendPDU(abortBytes(2, INVALID_PDU_REASON)), ProviderAbortIndication(2, INVALID_PDU_REASON, ANY_DESCRIPTION), StartARTIM()],
        )
        self.assertIs(provider.state, State.Sta13)
        self.assertIsNone(provider._store)
        self.assertEqual(readInto(provider, RELEASE_RQ_BYTES + P_DATA_TF_BYTES * 2), [])
        self.assertIsNone(provider._store)


class BufferPoolTests(SynchronousTestCase):
    """
    L{BufferPool} gives a receiving buffer out again only once nothing
    else refers to it, and keeps a bounded number of buffers of one size.
    Buffers are told apart by a mark in their last byte (a reference kept
    to compare identities would keep them in use).
    """

    def retiredWithMark(self, pool: BufferPool, mark: int, size: int = 10) -> None:
        buffer = pool.take(size)
        buffer[-1] = mark
        pool.retire(buffer)

    def test_heldBufferNotGivenOut(self):
        """
        A buffer let go while a view of it is held is not given out; once
        the view is gone, it is.
        """
        pool = BufferPool()
        buffer = pool.take(100)
        self.assertEqual(len(buffer), RECEIVE_BUFFER_SIZE)
        buffer[-1] = 7
        view = memoryview(buffer)[10:20]
        pool.retire(buffer)
        del buffer
        self.assertEqual(pool.take(100)[-1], 0)
        del view
        self.assertEqual(pool.take(100)[-1], 7)

    def test_referencedBufferNotGivenOut(self):
        """
        A buffer still referenced directly is not free either.
        """
        pool = BufferPool()
        buffer = pool.take(100)
        buffer[-1] = 7
        pool.retire(buffer)
        self.assertEqual(pool.take(100)[-1], 0)

    def test_onlyOneSizeKept(self):
        """
        A larger buffer, made for one large PDU, is not kept; a request
        larger than the kept size gets a new buffer of that size.
        """
        pool = BufferPool()
        self.retiredWithMark(pool, 7, 3 * RECEIVE_BUFFER_SIZE)
        self.assertEqual(len(pool.take(3 * RECEIVE_BUFFER_SIZE)), 3 * RECEIVE_BUFFER_SIZE)
        self.assertEqual(pool.take(10)[-1], 0)
        self.retiredWithMark(pool, 8)
        self.assertEqual(len(pool.take(RECEIVE_BUFFER_SIZE + 1)), RECEIVE_BUFFER_SIZE + 1)
        self.assertEqual(pool.take(10)[-1], 8)

    def test_keepsAtMostKeep(self):
        """
        Beyond C{keep} buffers, the oldest goes.
        """
        pool = BufferPool(keep=2)
        buffers = [pool.take(10) for _ in range(3)]
        for mark, buffer in enumerate(buffers, 1):
            buffer[-1] = mark
            pool.retire(buffer)
        del buffers, buffer
        self.assertEqual([pool.take(10)[-1] for _ in range(3)], [2, 3, 0])


class PullTests(SynchronousTestCase):
    """
    L{ULProvider.dataReceived} only buffers; each L{ULProvider.nextOutputs}
    raises the event of one PDU, so that the caller applies (and answers)
    one PDU's outputs before the next PDU meets the state.
    """

    def test_onePDUAtATime(self):
        """
        Bytes holding three PDUs change nothing until asked for; then each
        call hands out one PDU's outputs, and C{None} once no whole PDU is
        left.
        """
        provider = providerIn(State.Sta6, ACCEPTOR)
        self.assertIsNone(provider.dataReceived(P_DATA_TF_BYTES * 2 + RELEASE_RQ_BYTES + P_DATA_TF_BYTES[:7]))
        self.assertIs(provider.state, State.Sta6)
        self.assertEqual(provider.nextOutputs(), [PDataIndication(P_DATA_TF)])
        self.assertEqual(provider.nextOutputs(), [PDataIndication(P_DATA_TF)])
        self.assertIs(provider.state, State.Sta6)
        self.assertEqual(provider.nextOutputs(), [ReleaseIndication()])
        self.assertIs(provider.state, State.Sta8)
        self.assertIsNone(provider.nextOutputs())
        self.assertIsNone(provider.nextOutputs())

    def test_answeredBeforeTheNextPDU(self):
        """
        An A-ASSOCIATE-RQ and a P-DATA-TF in one chunk: the association
        accepted after the first PDU's indication, the P-DATA-TF is data
        of the established association (DT-2), as it is when the two PDUs
        come in two chunks.
        """
        provider = providerIn(State.Sta2, ACCEPTOR)
        provider.dataReceived(ASSOCIATE_RQ_BYTES + P_DATA_TF_BYTES)
        self.assertEqual(provider.nextOutputs(), [StopARTIM(), AssociateIndication(ASSOCIATE_RQ)])
        self.assertEqual(provider.acceptAssociation(ASSOCIATE_AC), [SendPDU(ASSOCIATE_AC_BYTES)])
        self.assertEqual(provider.nextOutputs(), [PDataIndication(P_DATA_TF)])
        self.assertIs(provider.state, State.Sta6)

    def test_unansweredIndication(self):
        """
        Without an answer to the A-ASSOCIATE indication, the P-DATA-TF that
        follows it is unexpected in Sta3 (AA-8).
        """
        provider = providerIn(State.Sta2, ACCEPTOR)
        provider.dataReceived(ASSOCIATE_RQ_BYTES + P_DATA_TF_BYTES)
        provider.nextOutputs()
        self.assertEqual(
            provider.nextOutputs(),
            [SendPDU(abortBytes(2, 2)), ProviderAbortIndication(2, 2, ANY_DESCRIPTION), StartARTIM()],
        )
        self.assertIs(provider.state, State.Sta13)
        self.assertEqual(provider.acceptAssociation(ASSOCIATE_AC), [EventNotAllowed(Event.Evt7, State.Sta13)])

    def test_moreBytesBeforeThePDUsAreAskedFor(self):
        """
        Bytes received before the PDUs already buffered were asked for
        follow them, in order.
        """
        provider = providerIn(State.Sta6, REQUESTOR)
        provider.dataReceived(P_DATA_TF_BYTES + P_DATA_TF_BYTES[:9])
        self.assertEqual(
            receive(provider, P_DATA_TF_BYTES[9:] + RELEASE_RQ_BYTES),
            [PDataIndication(P_DATA_TF)] * 2 + [ReleaseIndication()],
        )

    def test_pDUsAfterClose(self):
        """
        PDUs after the one that closed the connection (here an A-RELEASE-RP
        ending the release, AR-3) meet Sta1, where no PDU is allowed.
        """
        provider = providerIn(State.Sta7, ACCEPTOR)
        provider.dataReceived(RELEASE_RP_BYTES + RELEASE_RQ_BYTES)
        self.assertEqual(provider.nextOutputs(), [ReleaseConfirmation(), CloseTransport()])
        self.assertEqual(provider.nextOutputs(), [EventNotAllowed(Event.Evt12, State.Sta1)])
        self.assertIsNone(provider.nextOutputs())
        self.assertIs(provider.state, State.Sta1)
