"""
Property-based tests (hypothesis) for the Upper Layer and DIMSE codecs and
for the protocol machinery that reads bytes from the network.

Four kinds of property:

  - round trips: generated PDUs of the seven types (with every item and
    user-information sub-item) and generated command sets of every DIMSE
    message class survive encode and decode; messages cut into PDVs of any
    length and fed in chunks split anywhere come back whole;
  - robustness of the pure layers: arbitrary bytes and mutated valid PDUs
    (bit flips, truncations, changed length fields, inserted and deleted
    bytes, chunks split anywhere) fed to L{ULProvider.dataReceived} in every
    state that has a transport connection, and pulled one PDU at a time,
    only ever produce the documented outputs: either normal continuation or
    an A-ABORT, the state always a L{State}, bytes after an invalid PDU not
    read, PDUs after a closing PDU not allowed, and the answers of a local
    user that answers each indication at once always allowed;
    L{decodePDU}, L{decodeCommand} and L{MessageAssembler} raise only
    their own errors;
  - negotiation: whatever an A-ASSOCIATE-RQ proposes, the acceptor's
    answer fits its items and encodes;
  - robustness of the Twisted adapter: the same bytes into a live
    L{AcceptorProtocol} over a L{StringTransport} never raise out of
    C{dataReceived}, log no unhandled error, only ever write whole valid
    PDUs, and end, once the clock runs, with the connection closed.

Every test is deterministic (C{derandomize=True}, no example database), and
the example counts keep the module to about twenty seconds of CPU.  The same
checks, driven by a coverage-guided fuzzer for as long as one likes, are in
C{tests/fuzz/run.py}, which imports the harness below.
"""

import dataclasses
import string
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from dicomd.dimse.commands import (
    _ELEMENTS,
    MESSAGE_CLASSES,
    CCancelRQ,
    CEchoRQ,
    CFindRQ,
    CGetRQ,
    CMoveRQ,
    CStoreRQ,
    DIMSEDecodeError,
    Message,
    UnrecognizedMessage,
    decodeCommand,
    encodeCommand,
)
from dicomd.dimse.pdv import (
    CommandReceived,
    DataSetFragment,
    DIMSEProtocolError,
    MessageAssembler,
    fragment,
)
from dicomd.ul import pdu as _pdu
from dicomd import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomd.ul.fsm import Event, State
from dicomd.ul.negotiation import UNCOMPRESSED, AcceptorPolicy, acceptPresentationContexts
from dicomd.ul.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PDUDecodeError,
    PresentationContextAC,
    PresentationContextRQ,
    PresentationDataValue,
    SCPSCURoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
    decodePDU,
)
from dicomd.ul.provider import (
    AbortIndication,
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
from tests.test_ul_provider import receive

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"

PEER = IPv4Address("TCP", "127.0.0.1", 50123)


def fuzzSettings(examples: int) -> settings:
    """
    Deterministic hypothesis settings: the same examples on every run, no
    example database, no deadline (a loaded CI machine is slow).
    """
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# -- strategies: values -----------------------------------------------------------

uint8 = st.integers(0, 0xFF)
uint16 = st.integers(0, 0xFFFF)
uint32 = st.integers(0, 0xFFFFFFFF)

#: UIDs: dotted decimal, as PS3.5 9.1 has them (the codec does not care
#: about the 64-character limit, so neither do we).
uids = st.lists(st.integers(0, 10**9), min_size=1, max_size=10).map(lambda parts: ".".join(map(str, parts)))

_AE_CHARACTERS = string.ascii_letters + string.digits + " _-.+*"
#: AE titles as the decoder gives them back: at most 16 characters,
#: without leading or trailing spaces.
aeTitles = st.text(alphabet=_AE_CHARACTERS, max_size=16).map(lambda text: text.strip(" "))
#: Short texts of the default character repertoire, without padding.
printable = st.text(alphabet=string.ascii_letters + string.digits + " .-_^=", max_size=64).map(
    lambda text: text.strip(" ")
)

# -- strategies: PDUs and items (PS3.8 9.3, PS3.7 D.3.3) ----------------------------

roleSelections = st.builds(SCPSCURoleSelection, uids, st.booleans(), st.booleans())
extendedNegotiations = st.builds(SOPClassExtendedNegotiation, uids, st.binary(max_size=48))
commonExtendedNegotiations = st.builds(
    SOPClassCommonExtendedNegotiation, uids, uids, st.lists(uids, max_size=4)
)
userIdentityRQs = st.builds(UserIdentityRQ, uint8, st.booleans(), st.binary(max_size=64), st.binary(max_size=64))
userIdentityACs = st.builds(UserIdentityAC, st.binary(max_size=64))

userInformations = st.builds(
    UserInformation,
    maximumLength=st.none() | uint32,
    implementationClassUID=st.none() | uids,
    implementationVersionName=st.none() | printable.map(lambda text: text[:16].strip(" ")),
    asynchronousOperationsWindow=st.none() | st.tuples(uint16, uint16),
    roleSelections=st.lists(roleSelections, max_size=4),
    extendedNegotiations=st.lists(extendedNegotiations, max_size=3),
    commonExtendedNegotiations=st.lists(commonExtendedNegotiations, max_size=3),
    userIdentityRQ=st.none() | userIdentityRQs,
    userIdentityAC=st.none() | userIdentityACs,
)

presentationContextRQs = st.builds(PresentationContextRQ, uint8, uids, st.lists(uids, min_size=1, max_size=4))
presentationContextACs = st.one_of(
    st.builds(PresentationContextAC, uint8, st.just(_pdu.PC_ACCEPTANCE), uids),
    st.builds(PresentationContextAC, uint8, st.integers(1, 0xFF), st.just("") | uids),
)

associateRQs = st.builds(
    AAssociateRQ,
    calledAETitle=aeTitles,
    callingAETitle=aeTitles,
    presentationContexts=st.lists(presentationContextRQs, max_size=6),
    userInformation=userInformations,
    applicationContextName=st.just(_pdu.DICOM_APPLICATION_CONTEXT) | uids,
    protocolVersion=uint16,
)
associateACs = st.builds(
    AAssociateAC,
    calledAETitle=aeTitles,
    callingAETitle=aeTitles,
    presentationContexts=st.lists(presentationContextACs, max_size=6),
    userInformation=userInformations,
    applicationContextName=st.just(_pdu.DICOM_APPLICATION_CONTEXT) | uids,
    protocolVersion=uint16,
)
associateRJs = st.builds(AAssociateRJ, uint8, uint8, uint8)
presentationDataValues = st.builds(PresentationDataValue, uint8, uint8, st.binary(max_size=300))
pDataTFs = st.builds(PDataTF, st.lists(presentationDataValues, min_size=1, max_size=5))
aborts = st.builds(AAbort, uint8, uint8)

#: A PDU of any of the seven types.
pdus = st.one_of(
    associateRQs,
    associateACs,
    associateRJs,
    pDataTFs,
    st.builds(AReleaseRQ),
    st.builds(AReleaseRP),
    aborts,
)

# -- strategies: DIMSE command sets (PS3.7 9.3, E.1) ---------------------------------

_VALUES_BY_VR = {
    "US": uint16,
    "UI": st.just("") | uids,
    "AE": aeTitles,
    "LO": printable,
    "AT": st.lists(uint32, max_size=4),
}


#: The requests whose Command Data Set Type shall not be 0101H (PS3.7
#: 9.3): they are refused without a data set.
DATA_SET_REQUIRED = (CStoreRQ, CFindRQ, CMoveRQ, CGetRQ)


def messagesOf(cls, anyDataSetType: bool = False) -> st.SearchStrategy:
    """
    Command sets of message class C{cls} with generated values for every
    element it carries; optional elements are sometimes left out.

    @param anyDataSetType: let requests that need a data set announce none
        (they do not decode: for what a peer may send, not round trips).
    """
    arguments = {}
    for f in dataclasses.fields(cls):
        if f.name == "hasDataSet":
            # The requests that need a data set always announce one.
            arguments[f.name] = st.just(True) if cls in DATA_SET_REQUIRED and not anyDataSetType else st.booleans()
        elif f.name == "commandField":
            # Any command field that is not one of the known messages.
            arguments[f.name] = uint16.filter(lambda value: value not in MESSAGE_CLASSES)
        else:
            values = _VALUES_BY_VR[_ELEMENTS[f.name][1]]
            arguments[f.name] = (st.none() | values) if f.default is None else values
    return st.builds(cls, **arguments)


#: The message classes of L{dicomd.dimse.commands}, known and unknown.
MESSAGE_TYPES = sorted(MESSAGE_CLASSES.values(), key=lambda cls: cls.commandField) + [UnrecognizedMessage]
messages = st.one_of([messagesOf(cls) for cls in MESSAGE_TYPES])
#: What a peer may send: also requests missing their data set.
sentMessages = st.one_of([messagesOf(cls, anyDataSetType=True) for cls in MESSAGE_TYPES])

# -- strategies: mutations ----------------------------------------------------------

#: One change to a byte string: C{(kind, position, argument)}; positions are
#: taken modulo the length at the time of the change.
mutations = st.one_of(
    st.tuples(st.just("flip"), uint32, st.integers(0, 7)),
    st.tuples(st.just("set"), uint32, uint8),
    st.tuples(st.just("truncate"), uint32, st.just(None)),
    st.tuples(st.just("insert"), uint32, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), uint32, st.integers(1, 16)),
    st.tuples(st.just("duplicate"), uint32, st.integers(1, 64)),
    # A 16- or 32-bit big-endian length somewhere, set to a nearby or an
    # absurd value.
    st.tuples(st.just("length16"), uint32, st.integers(-4, 4) | uint16),
    st.tuples(st.just("length32"), uint32, st.integers(-4, 4) | uint32),
)


def mutate(data: bytes, changes) -> bytes:
    """
    Apply C{changes} (from L{mutations}) to C{data}.
    """
    data = bytearray(data)
    for kind, position, argument in changes:
        if not data and kind != "insert":
            continue
        at = position % (len(data) + (1 if kind == "insert" else 0)) if data else 0
        if kind == "flip":
            data[at] ^= 1 << argument
        elif kind == "set":
            data[at] = argument
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = argument
        elif kind == "delete":
            del data[at : at + argument]
        elif kind == "duplicate":
            data[at:at] = data[at : at + argument]
        elif kind in ("length16", "length32"):
            size = 2 if kind == "length16" else 4
            if len(data) < size:
                continue
            at = position % (len(data) - size + 1)
            old = int.from_bytes(data[at : at + size], "big")
            new = (old + argument) if -4 <= argument <= 4 else argument
            data[at : at + size] = (new % (1 << (8 * size))).to_bytes(size, "big")
    return bytes(data)


def split(data: bytes, cuts) -> list:
    """
    Cut C{data} at the positions C{cuts} (taken modulo its length) into
    the chunks a transport might deliver.
    """
    if not data:
        return [data]
    points = sorted({cut % len(data) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


cuts = st.lists(uint32, max_size=8)

# -- checking what comes out ----------------------------------------------------------


def decodeStream(data, allowed=None) -> list:
    """
    Decode C{data} as a sequence of whole, valid PDUs.

    @param allowed: the PDU types that may appear, or C{None} for any.
    @raise AssertionError: the bytes are not such a sequence.
    """
    data = bytes(data)
    decoded = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 6:
            raise AssertionError("%d bytes after the last whole PDU" % (len(data) - pos,))
        pduType, _, length = struct.unpack_from(">BBL", data, pos)
        if allowed is not None and pduType not in allowed:
            raise AssertionError("PDU of type 0x%02X written" % (pduType,))
        body = data[pos + 6 : pos + 6 + length]
        if len(body) != length:
            raise AssertionError("PDU of type 0x%02X cut short" % (pduType,))
        try:
            decoded.append(decodePDU(pduType, memoryview(body)))
        except PDUDecodeError as e:
            raise AssertionError("invalid PDU of type 0x%02X written: %s" % (pduType, e))
        pos += 6 + length
    return decoded


def normalize(value):
    """
    A PDU with its PDV data as bytes, for comparison.
    """
    if isinstance(value, PDataTF):
        return PDataTF(
            [PresentationDataValue(v.contextID, v.messageControlHeader, bytes(v.data)) for v in value.values]
        )
    return value


def decodeWhole(encoded: bytes):
    """
    Decode one whole encoded PDU, checking its header.
    """
    pduType, _, length = struct.unpack_from(">BBL", encoded)
    if length != len(encoded) - 6:
        raise AssertionError("PDU length %d for a body of %d bytes" % (length, len(encoded) - 6))
    return normalize(decodePDU(pduType, memoryview(encoded[6:])))


#: The A-ABORT reasons of PS3.8 Table 9-26.
ABORT_REASONS = {
    _pdu.ABORT_REASON_NOT_SPECIFIED,
    _pdu.ABORT_REASON_UNRECOGNIZED_PDU,
    _pdu.ABORT_REASON_UNEXPECTED_PDU,
    _pdu.ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER,
    _pdu.ABORT_REASON_UNEXPECTED_PDU_PARAMETER,
    _pdu.ABORT_REASON_INVALID_PDU_PARAMETER_VALUE,
}


def checkDecodePDU(pduType: int, body: bytes) -> None:
    """
    L{decodePDU} either decodes C{body} into a PDU that encodes and decodes
    to itself, or raises L{PDUDecodeError} with an A-ABORT reason.
    """
    try:
        decoded = decodePDU(pduType, memoryview(body))
    except PDUDecodeError as e:
        assert e.reason in ABORT_REASONS, e.reason
        return
    assert decodeWhole(decoded.encode()) == normalize(decoded), decoded


def framed(data: bytes) -> list:
    """
    Cut a stream where its PDU headers say each PDU ends, as a peer that
    sends one PDU at a time and waits for the answer delivers it; what
    follows a header announcing more than there is comes as one chunk.
    """
    chunks = []
    pos = 0
    while pos < len(data):
        end = len(data)
        if len(data) - pos >= 6:
            end = min(end, pos + 6 + int.from_bytes(data[pos + 2 : pos + 6], "big"))
        chunks.append(data[pos:end])
        pos = end
    return chunks


# -- the Upper Layer provider in each state ---------------------------------------------

REQUESTOR = "requestor"
ACCEPTOR = "acceptor"

_RQ = AAssociateRQ(
    "DICOMD",
    "FUZZER",
    [PresentationContextRQ(1, VERIFICATION, [IMPLICIT_LE]), PresentationContextRQ(3, CT_IMAGE_STORAGE, [EXPLICIT_LE])],
    UserInformation(maximumLength=16384, implementationClassUID="1.2.3.4"),
)
_AC = AAssociateAC(
    "DICOMD",
    "FUZZER",
    [PresentationContextAC(1, 0, IMPLICIT_LE), PresentationContextAC(3, 0, EXPLICIT_LE)],
    UserInformation(maximumLength=16384, implementationClassUID="1.2.3.4"),
)
_RJ = AAssociateRJ(1, 1, 1)
_RELEASE_RQ = AReleaseRQ().encode()
_RELEASE_RP = AReleaseRP().encode()
#: A P-DATA-TF the local user sends in answer to data (a C-ECHO-RSP, say).
_ANSWER = PDataTF([PresentationDataValue(1, 3, b"\x00" * 8)]).encode()

#: How each state is reached, from the side that can be in it, by real
#: events: C{(side, steps)}, each step a method name and its argument.
PATHS = {
    State.Sta2: (ACCEPTOR, [("transportAccepted", None)]),
    State.Sta3: (ACCEPTOR, [("transportAccepted", None), ("receive", _RQ.encode())]),
    State.Sta5: (REQUESTOR, [("requestAssociation", _RQ), ("transportConnected", None)]),
    State.Sta6: (
        REQUESTOR,
        [("requestAssociation", _RQ), ("transportConnected", None), ("receive", _AC.encode())],
    ),
    State.Sta7: (
        ACCEPTOR,
        [
            ("transportAccepted", None),
            ("receive", _RQ.encode()),
            ("acceptAssociation", _AC),
            ("requestRelease", None),
        ],
    ),
    State.Sta8: (
        ACCEPTOR,
        [
            ("transportAccepted", None),
            ("receive", _RQ.encode()),
            ("acceptAssociation", _AC),
            ("receive", _RELEASE_RQ),
        ],
    ),
    State.Sta9: (
        REQUESTOR,
        [
            ("requestAssociation", _RQ),
            ("transportConnected", None),
            ("receive", _AC.encode()),
            ("requestRelease", None),
            ("receive", _RELEASE_RQ),
        ],
    ),
    State.Sta10: (
        ACCEPTOR,
        [
            ("transportAccepted", None),
            ("receive", _RQ.encode()),
            ("acceptAssociation", _AC),
            ("requestRelease", None),
            ("receive", _RELEASE_RQ),
        ],
    ),
    State.Sta11: (
        REQUESTOR,
        [
            ("requestAssociation", _RQ),
            ("transportConnected", None),
            ("receive", _AC.encode()),
            ("requestRelease", None),
            ("receive", _RELEASE_RQ),
            ("respondRelease", None),
        ],
    ),
    State.Sta12: (
        ACCEPTOR,
        [
            ("transportAccepted", None),
            ("receive", _RQ.encode()),
            ("acceptAssociation", _AC),
            ("requestRelease", None),
            ("receive", _RELEASE_RQ),
            ("receive", _RELEASE_RP),
        ],
    ),
    State.Sta13: (
        ACCEPTOR,
        [("transportAccepted", None), ("receive", _RQ.encode()), ("rejectAssociation", _RJ)],
    ),
}

#: The states in which bytes can arrive: every state with a transport
#: connection (not Sta1, idle, nor Sta4, still connecting).
CONNECTED_STATES = sorted(PATHS, key=lambda state: int(state.name[3:]))

#: Every output L{ULProvider} produces.
OUTPUT_TYPES = (
    SendPDU,
    StartARTIM,
    StopARTIM,
    OpenTransport,
    CloseTransport,
    AssociateIndication,
    AssociateAccepted,
    AssociateRejected,
    PDataIndication,
    ReleaseIndication,
    ReleaseConfirmation,
    AbortIndication,
    ProviderAbortIndication,
    EventNotAllowed,
)

#: A-ABORT reasons that only an invalid PDU (Evt19) gives.
_INVALID_PDU_REASONS = {
    _pdu.ABORT_REASON_UNRECOGNIZED_PDU,
    _pdu.ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER,
    _pdu.ABORT_REASON_UNEXPECTED_PDU_PARAMETER,
    _pdu.ABORT_REASON_INVALID_PDU_PARAMETER_VALUE,
}


def providerIn(state: State) -> ULProvider:
    """
    A L{ULProvider} brought into C{state} through the events that lead
    there.
    """
    side, steps = PATHS[state]
    provider = ULProvider(isRequestor=side == REQUESTOR)
    for method, argument in steps:
        if method == "receive":
            receive(provider, argument)
        else:
            getattr(provider, method)(*(() if argument is None else (argument,)))
    assert provider.state is state, (provider.state, state)
    return provider


class ProviderRun:
    """
    Feeds chunks of bytes to a L{ULProvider}, pulls the outputs of one PDU
    at a time and checks, after each PDU, everything the provider promises
    about its outputs and its state.

    @ivar respond: play a local user that answers at once, as the Twisted
        adapter does: accept each association, answer each release and
        each P-DATA indication.
    """

    def __init__(self, provider: ULProvider, respond: bool):
        self.provider = provider
        self.respond = respond
        # A local user that asked for a release sends no more data (Evt9
        # has no cell in Sta7 and the collision states).
        self.releasing = provider.state in (State.Sta7, State.Sta9, State.Sta10, State.Sta11, State.Sta12)
        self.closed = False
        self.invalid = False
        self.sent = []

    def feed(self, chunk: bytes) -> None:
        provider = self.provider
        provider.dataReceived(chunk)
        outputs = provider.nextOutputs()
        while outputs is not None:
            # After an invalid PDU (Evt19) the rest of the stream cannot be
            # framed: it is not read.
            assert not self.invalid, outputs
            if self.closed:
                # After the transport was closed, no PDU is allowed.
                assert [type(output) for output in outputs] == [EventNotAllowed], outputs
            self.check(outputs)
            if self.respond:
                self.answer(outputs)
            outputs = provider.nextOutputs()

    def check(self, outputs) -> None:
        provider = self.provider
        assert isinstance(provider.state, State), provider.state
        for output in outputs:
            assert type(output) in OUTPUT_TYPES, output
            if type(output) is SendPDU:
                data = output.data
                written = decodeStream(b"".join(map(bytes, data)) if type(data) is list else data)
                for pdu in written:
                    if type(pdu) is AAbort and pdu.source == _pdu.ABORT_SOURCE_SERVICE_PROVIDER:
                        if pdu.reason in _INVALID_PDU_REASONS:
                            self.invalid = True
                self.sent.extend(written)
            elif type(output) is CloseTransport:
                self.closed = True
        if self.closed:
            assert provider.state is State.Sta1, provider.state
        elif any(type(pdu) is AAbort for pdu in self.sent):
            # After an A-ABORT of ours, the connection waits to close.
            assert provider.state is State.Sta13, provider.state

    def answer(self, outputs) -> None:
        """
        Answer indications in order, as the adapter does, checking what the
        answers produce: the answer to an indication comes before the next
        PDU is read, so the state table always allows it.
        """
        provider = self.provider
        for output in outputs:
            kind = type(output)
            if kind is AssociateIndication:
                more = provider.acceptAssociation(_AC)
            elif kind is PDataIndication:
                if self.releasing:
                    continue
                more = provider.sendData(_ANSWER)
            elif kind is ReleaseIndication:
                if output.collision and provider.state is State.Sta10:
                    continue
                more = provider.respondRelease()
            elif kind is ReleaseConfirmation and provider.state is State.Sta12:
                more = provider.respondRelease()
            else:
                continue
            assert EventNotAllowed not in map(type, more), more
            self.check(more)
            self.answer(more)

    def finish(self) -> None:
        """
        The ARTIM timer expires, then the connection closes: the provider
        ends idle, whatever came before.
        """
        provider = self.provider
        self.check(provider.artimExpired())
        outputs = provider.connectionLost()
        for output in outputs:
            assert type(output) in OUTPUT_TYPES, output
        assert provider.state is State.Sta1, provider.state


def runProvider(state: State, chunks, respond: bool) -> ProviderRun:
    """
    Bring a provider into C{state}, feed it C{chunks} and close.
    """
    run = ProviderRun(providerIn(state), respond)
    for chunk in chunks:
        run.feed(chunk)
    run.finish()
    return run


# -- DIMSE: commands and the assembler ----------------------------------------------------


def checkDecodeCommand(data) -> None:
    """
    L{decodeCommand} either decodes C{data} into a L{Message} that encodes
    and decodes to itself, or raises L{DIMSEDecodeError}.
    """
    try:
        message = decodeCommand(data)
    except DIMSEDecodeError:
        return
    assert isinstance(message, Message), message
    assert decodeCommand(encodeCommand(message)) == message, message


def checkAssembler(pdataTFs) -> list:
    """
    Feed P-DATA-TF PDUs to a L{MessageAssembler}: only
    L{DIMSEProtocolError} may come out, and the events follow PS3.7 9.3 (a
    data set only after a command announcing one, on its context).

    @return: the events, up to the first error.
    """
    assembler = MessageAssembler()
    events = []
    dataSetContext = None
    for pdataTF in pdataTFs:
        try:
            received = assembler.receive(pdataTF)
        except DIMSEProtocolError:
            return events
        for event in received:
            if type(event) is CommandReceived:
                assert dataSetContext is None
                assert isinstance(event.message, Message)
                if event.message.hasDataSet:
                    dataSetContext = event.contextID
            else:
                assert type(event) is DataSetFragment, event
                assert event.contextID == dataSetContext, (event, dataSetContext)
                if event.isLast:
                    dataSetContext = None
            events.append(event)
        assert assembler.inDataSet == (dataSetContext is not None)
    return events


def pdataTFsOf(data: bytes) -> list:
    """
    Read the P-DATA-TF PDUs out of a stream, stopping at anything else.
    """
    found = []
    pos = 0
    while len(data) - pos >= 6:
        pduType, _, length = struct.unpack_from(">BBL", data, pos)
        body = data[pos + 6 : pos + 6 + length]
        if pduType != _pdu.P_DATA_TF or len(body) != length:
            break
        try:
            found.append(PDataTF.decode(memoryview(body)))
        except PDUDecodeError:
            break
        pos += 6 + length
    return found


# -- the Twisted acceptor ---------------------------------------------------------------------


class _NoThreads:
    """
    A thread pool that is never used: the storage SCP below stores nothing.
    """


#: What an acceptor may write: A-ASSOCIATE-AC or -RJ, P-DATA-TF,
#: A-RELEASE-RP, A-ABORT (an acceptor never requests a release).
ACCEPTOR_WRITES = {_pdu.A_ASSOCIATE_AC, _pdu.A_ASSOCIATE_RJ, _pdu.P_DATA_TF, _pdu.A_RELEASE_RP, _pdu.A_ABORT}


def acceptorEntity(reactor):
    """
    An L{ApplicationEntity} offering Verification and CT Image Storage into
    a storage SCP that discards what it receives (storescp C{--ignore}).
    """
    from dicomd.net.acceptor import ApplicationEntity
    from dicomd.services.verification import VerificationSCP
    from dicomd.storage.scp import StorageSCP

    return ApplicationEntity(
        "DICOMD",
        AcceptorPolicy({VERIFICATION: UNCOMPRESSED, CT_IMAGE_STORAGE: UNCOMPRESSED}),
        {
            CEchoRQ.commandField: VerificationSCP(),
            CStoreRQ.commandField: StorageSCP(None, reactor=reactor, threadpool=_NoThreads()),
        },
    )


def _session() -> list:
    """
    A well-behaved requestor's whole session, PDU by PDU: associate, echo,
    store a small data set in two fragments, release.
    """
    request = AAssociateRQ(
        "DICOMD",
        "FUZZER",
        [
            PresentationContextRQ(1, VERIFICATION, [IMPLICIT_LE]),
            PresentationContextRQ(3, CT_IMAGE_STORAGE, [EXPLICIT_LE, IMPLICIT_LE]),
        ],
        UserInformation(
            maximumLength=16384,
            implementationClassUID="1.2.3.4",
            implementationVersionName="FUZZ",
            roleSelections=[SCPSCURoleSelection(CT_IMAGE_STORAGE, True, True)],
        ),
    )
    echo = encodeCommand(CEchoRQ(messageID=1))
    store = encodeCommand(
        CStoreRQ(messageID=2, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID="1.2.3.4.5.6")
    )
    dataSet = bytes(range(256)) * 2
    pieces = fragment(1, True, echo, 64) + fragment(3, True, store, 16384) + fragment(3, False, dataSet, 300)
    # fragment() gives a header, then the data, for each PDU.
    pdus = [bytes(pieces[i]) + bytes(pieces[i + 1]) for i in range(0, len(pieces), 2)]
    return [request.encode()] + pdus + [_RELEASE_RQ]


#: The PDUs of a requestor's session, the seed of the mutated acceptor
#: inputs; the peer sends each after the answer to the one before, so
#: they arrive in separate chunks.
SESSION = _session()


def mutateSession(changes, chunkCuts, merges) -> list:
    """
    The chunks of a mutated L{SESSION}.

    @param changes: C{(index, mutation)}: a mutation of the PDU at C{index}
        (modulo their number).
    @param chunkCuts: further cuts inside the stream.
    @param merges: PDU boundaries (by index, modulo their number) where no
        cut is made, so PDUs arrive together.
    """
    pdus = list(SESSION)
    for index, change in changes:
        index %= len(pdus)
        pdus[index] = mutate(pdus[index], [change])
    data = b"".join(pdus)
    ends = []
    total = 0
    for pdu in pdus[:-1]:
        total += len(pdu)
        ends.append(total)
    for index in merges:
        if ends:
            ends.pop(index % len(ends))
    return split(data, list(ends) + [cut % (len(data) or 1) for cut in chunkCuts])


class AcceptorRun:
    """
    A live L{AcceptorProtocol} on a L{StringTransport}, fed chunks of bytes,
    with the checks of the adapter's promises after each.
    """

    def __init__(self, promiscuous: bool = False):
        from dicomd.net.acceptor import AcceptorFactory

        self.clock = MemoryReactorClock()
        self.failures = []
        globalLogPublisher.addObserver(self._observe)
        entity = acceptorEntity(self.clock)
        if promiscuous:
            entity.policy = AcceptorPolicy({}, defaultTransferSyntaxes=UNCOMPRESSED, scpRoleSOPClasses=frozenset([CT_IMAGE_STORAGE]))
        self.factory = AcceptorFactory(entity, reactor=self.clock, artimTimeout=30.0, idleTimeout=60.0)
        self.protocol = self.factory.buildProtocol(PEER)
        self.transport = StringTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)

    def _observe(self, event) -> None:
        if "log_failure" in event:
            self.failures.append(event["log_failure"])

    def feed(self, chunk: bytes) -> bool:
        """
        Deliver one chunk, unless the connection is closing (a transport
        does not read once asked to close).

        @return: whether the chunk was delivered.
        """
        if self.transport.disconnecting:
            return False
        self.protocol.dataReceived(chunk)
        self.check()
        return True

    def check(self) -> None:
        assert not self.failures, self.failures[0].getTraceback()
        assert isinstance(self.protocol.provider.state, State)
        written = decodeStream(self.transport.value(), ACCEPTOR_WRITES)
        answers = [pdu for pdu in written if type(pdu) in (AAssociateAC, AAssociateRJ)]
        assert len(answers) <= 1, answers
        if answers:
            assert type(written[0]) in (AAssociateAC, AAssociateRJ), written[0]
        if any(type(pdu) is AAbort for pdu in written) and not self.transport.disconnecting:
            assert self.protocol.provider.state is State.Sta13, self.protocol.provider.state

    def finish(self) -> None:
        """
        Let the timers run: the connection is closed by then (ARTIM after a
        rejection or an abort, the idle timeout otherwise); then it is lost,
        and the protocol and factory forget the association.
        """
        try:
            for _ in range(10):
                if self.transport.disconnecting:
                    break
                self.clock.advance(30)
                self.check()
            assert self.transport.disconnecting, self.protocol.provider.state
            self.protocol.connectionLost(Failure(ConnectionDone()))
            self.check()
            assert self.protocol.provider.state is State.Sta1, self.protocol.provider.state
            assert self.protocol not in self.factory.associations
            assert not self.clock.getDelayedCalls() or all(
                not call.active() for call in self.clock.getDelayedCalls()
            ), self.clock.getDelayedCalls()
        finally:
            globalLogPublisher.removeObserver(self._observe)


def runAcceptor(chunks, promiscuous: bool = False) -> AcceptorRun:
    """
    Feed C{chunks} to a fresh acceptor, then let it close.

    @param promiscuous: accept any abstract syntax (storescp's
        C{--promiscuous}).
    """
    run = AcceptorRun(promiscuous)
    try:
        for chunk in chunks:
            if not run.feed(chunk):
                break
    finally:
        run.finish()
    return run


# == the tests ==============================================================================


class PDURoundTripTests(SynchronousTestCase):
    """
    Generated PDUs of all seven types survive encode and decode.
    """

    @fuzzSettings(150)
    @given(pdus)
    def test_anyPDU(self, value):
        """
        decodePDU(encode(x)) == x for a PDU of any type with any items.
        """
        self.assertEqual(decodeWhole(value.encode()), normalize(value))

    @fuzzSettings(100)
    @given(associateRQs)
    def test_associateRQ(self, request):
        """
        A-ASSOCIATE-RQ with presentation contexts and every user information
        sub-item round-trips.
        """
        self.assertEqual(decodeWhole(request.encode()), request)

    @fuzzSettings(100)
    @given(associateACs)
    def test_associateAC(self, accept):
        """
        A-ASSOCIATE-AC with presentation context answers and every user
        information sub-item round-trips.
        """
        self.assertEqual(decodeWhole(accept.encode()), accept)

    @fuzzSettings(100)
    @given(userInformations)
    def test_userInformation(self, information):
        """
        The user information item alone round-trips: maximum length,
        implementation class and version, asynchronous operations window,
        role selection, extended and common extended negotiation, user
        identity request and acceptance.
        """
        encoded = information.encode()
        self.assertEqual(encoded[0], _pdu.ITEM_USER_INFORMATION)
        self.assertEqual(UserInformation.decode(memoryview(encoded[4:])), information)


class PDUDecoderTests(SynchronousTestCase):
    """
    The PDU decoder takes any bytes: it returns a PDU or raises
    L{PDUDecodeError}, and what it returns encodes back to itself.
    """

    def assertDecodes(self, pduType: int, body: bytes) -> None:
        checkDecodePDU(pduType, body)

    @fuzzSettings(400)
    @given(st.integers(0, 9), st.binary(max_size=400))
    def test_arbitraryBodies(self, pduType, body):
        """
        Arbitrary bodies for each type.
        """
        self.assertDecodes(pduType, body)

    @fuzzSettings(300)
    @given(pdus, st.lists(mutations, min_size=1, max_size=4))
    def test_mutatedPDUs(self, value, changes):
        """
        Valid PDUs with bits flipped, bytes inserted or removed and length
        fields changed.
        """
        encoded = mutate(value.encode(), changes)
        if len(encoded) >= 6:
            self.assertDecodes(encoded[0], encoded[6:])

    def test_nonASCIIValuesReEncode(self):
        """
        AE titles, UIDs and the implementation version name may hold any
        byte: what is decoded encodes back to the same bytes (an acceptor
        echoes AE titles and role selections in its A-ASSOCIATE-AC).
        """
        request = AAssociateRQ(
            "CALLED\xe9",
            "CALL\xffING",
            [PresentationContextRQ(1, "1.2.\xb3", ["1.2\x80"])],
            UserInformation(
                implementationClassUID="1.\xfe",
                implementationVersionName="V\xe91",
                roleSelections=[SCPSCURoleSelection("1.2.\xb3", True, True)],
            ),
        )
        encoded = request.encode()
        self.assertIn(b"CALLED\xe9", encoded)
        self.assertEqual(decodeWhole(encoded), request)


class CommandRoundTripTests(SynchronousTestCase):
    """
    Generated command sets of every message class survive encode and decode.
    """

    def test_everyClassCovered(self):
        """
        The strategies cover every class in L{MESSAGE_CLASSES} and every
        element of every class.
        """
        self.assertEqual(set(MESSAGE_TYPES) - {UnrecognizedMessage}, set(MESSAGE_CLASSES.values()))
        for cls in MESSAGE_TYPES:
            for f in dataclasses.fields(cls):
                self.assertTrue(f.name in ("hasDataSet", "commandField") or f.name in _ELEMENTS, f.name)

    def test_requestWithoutDataSet(self):
        """
        Regression: a C-STORE-RQ whose Command Data Set Type said "no data
        set" was accepted; its storage SCP waited for a data set that never
        came, never answered, and the request kept the association busy,
        so that even the idle timeout never closed it (found by the long
        fuzzing run).  C-STORE, C-FIND, C-MOVE and C-GET requests without a
        data set are refused.
        """
        for cls in DATA_SET_REQUIRED:
            data = encodeCommand(cls(messageID=1, hasDataSet=False))
            error = self.assertRaises(DIMSEDecodeError, decodeCommand, data)
            self.assertIn("without a data set", str(error))
            self.assertEqual(decodeCommand(encodeCommand(cls(messageID=1))), cls(messageID=1))

    @fuzzSettings(300)
    @given(messages)
    def test_anyMessage(self, message):
        """
        decodeCommand(encodeCommand(x)) == x.
        """
        self.assertEqual(decodeCommand(encodeCommand(message)), message)

    @fuzzSettings(300)
    @given(messages, st.lists(mutations, min_size=1, max_size=4))
    def test_mutatedCommands(self, message, changes):
        """
        A mutated command set decodes or raises L{DIMSEDecodeError}; what
        decodes encodes back to itself.
        """
        checkDecodeCommand(mutate(encodeCommand(message), changes))

    @fuzzSettings(300)
    @given(st.binary(max_size=200))
    def test_arbitraryCommands(self, data):
        """
        Arbitrary bytes decode or raise L{DIMSEDecodeError}.
        """
        checkDecodeCommand(data)

    @fuzzSettings(300)
    @given(
        st.lists(
            st.tuples(st.sampled_from([0x0000, 0x0002, 0x0100, 0x0110, 0x0120, 0x0800, 0x0900, 0x0901, 0x1000]),
                      st.binary(max_size=12)),
            max_size=8,
        )
    )
    def test_arbitraryElements(self, elements):
        """
        Well-framed group 0000 elements with arbitrary values decode or
        raise L{DIMSEDecodeError}.
        """
        data = b"".join(struct.pack("<HHL", 0, tag, len(value)) + value for tag, value in elements)
        checkDecodeCommand(data)


class FragmentTests(SynchronousTestCase):
    """
    Messages cut into PDVs of any length and delivered in chunks split
    anywhere come back whole, through the Upper Layer and the assembler.
    """

    @fuzzSettings(150)
    @given(
        message=messagesOf(CStoreRQ),
        payload=st.binary(max_size=4000),
        fragmentLength=st.integers(1, 1500),
        pieces=st.lists(uint32, max_size=3),
        contextID=st.integers(0, 127).map(lambda n: 2 * n + 1),
        chunkCuts=cuts,
    )
    def test_fragmentReassemble(self, message, payload, fragmentLength, pieces, contextID, chunkCuts):
        """
        fragment() then MessageAssembler gives back the command and the data
        set, the data set streamed in pieces whose last alone is marked
        last.
        """
        message.hasDataSet = True
        command = encodeCommand(message)
        stream = fragment(contextID, True, command, fragmentLength)
        parts = split(payload, pieces) if payload else [b""]
        for index, part in enumerate(parts):
            stream += fragment(contextID, False, part, fragmentLength, isLast=index == len(parts) - 1)
        data = b"".join(bytes(piece) for piece in stream)

        # Every PDU holds one PDV of at most fragmentLength bytes, so a
        # receiver advertising fragmentLength + 6 takes them all.
        provider = ULProvider(isRequestor=False, maximumLength=fragmentLength + 6)
        provider.transportAccepted()
        receive(provider, _RQ.encode())
        provider.acceptAssociation(_AC)
        assembler = MessageAssembler()
        events = []
        for chunk in split(data, chunkCuts):
            for output in receive(provider, chunk):
                self.assertIs(type(output), PDataIndication)
                self.assertEqual(len(output.pdu.values), 1)
                self.assertLessEqual(len(output.pdu.values[0].data), fragmentLength)
                events += assembler.receive(output.pdu)
        self.assertIs(provider.state, State.Sta6)
        self.assertEqual(events[0], CommandReceived(contextID, message))
        fragments = events[1:]
        self.assertTrue(all(type(event) is DataSetFragment for event in fragments))
        self.assertEqual(b"".join(bytes(event.data) for event in fragments), payload)
        self.assertEqual([event.isLast for event in fragments], [False] * (len(fragments) - 1) + [True])
        self.assertFalse(assembler.inDataSet)

    @fuzzSettings(200)
    @given(messages, st.integers(1, 200), st.integers(0, 255))
    def test_commandFragments(self, message, fragmentLength, contextID):
        """
        A command set of any class cut into any fragment length reassembles
        into the same message.
        """
        data = b"".join(bytes(piece) for piece in fragment(contextID, True, encodeCommand(message), fragmentLength))
        events = []
        assembler = MessageAssembler()
        for pdataTF in pdataTFsOf(data):
            events += assembler.receive(pdataTF)
        self.assertEqual(events, [CommandReceived(contextID, message)])


class AssemblerFuzzTests(SynchronousTestCase):
    """
    The assembler takes any sequence of PDVs: only L{DIMSEProtocolError}
    comes out.
    """

    @fuzzSettings(200)
    @given(st.lists(pDataTFs, max_size=6))
    def test_arbitraryPDVs(self, pdataTFs):
        """
        Arbitrary PDVs (any context, any control header, any data).
        """
        checkAssembler(pdataTFs)

    @fuzzSettings(200)
    @given(
        st.lists(st.tuples(sentMessages, st.binary(max_size=64)), min_size=1, max_size=3),
        st.integers(1, 64),
        st.lists(mutations, max_size=4),
    )
    def test_mutatedMessages(self, sent, fragmentLength, changes):
        """
        Fragmented messages with their command sets and control headers
        mutated.
        """
        pieces = []
        for message, dataSet in sent:
            pieces += fragment(1, True, encodeCommand(message), fragmentLength)
            if message.hasDataSet:
                pieces += fragment(1, False, dataSet, fragmentLength)
        checkAssembler(pdataTFsOf(mutate(b"".join(bytes(piece) for piece in pieces), changes)))


#: Abstract syntaxes a request proposes: the acceptor's, others, and
#: ones longer than a UID may be.
_abstractSyntaxes = st.sampled_from([VERIFICATION, CT_IMAGE_STORAGE]) | uids | st.text(
    alphabet="0123456789.", min_size=65, max_size=300
)
negotiatedRequests = st.builds(
    AAssociateRQ,
    calledAETitle=aeTitles,
    callingAETitle=aeTitles,
    presentationContexts=st.lists(
        st.builds(
            PresentationContextRQ,
            st.integers(0, 7),
            _abstractSyntaxes,
            st.lists(st.sampled_from(UNCOMPRESSED) | uids, min_size=1, max_size=3),
        ),
        max_size=8,
    ),
    userInformation=st.builds(
        UserInformation,
        roleSelections=st.lists(st.builds(SCPSCURoleSelection, _abstractSyntaxes, st.booleans(), st.booleans()), max_size=6),
    ),
)


def acceptFor(request, policy) -> AAssociateAC:
    """
    The A-ASSOCIATE-AC an acceptor with C{policy} answers C{request} with,
    as L{dicomd.net.acceptor.ApplicationEntity.negotiate} builds it.
    """
    answers, roles, contexts = acceptPresentationContexts(request, policy)
    return AAssociateAC(
        request.calledAETitle,
        request.callingAETitle,
        answers,
        UserInformation(
            maximumLength=16384,
            implementationClassUID=IMPLEMENTATION_CLASS_UID,
            implementationVersionName=IMPLEMENTATION_VERSION_NAME,
            roleSelections=roles,
        ),
    )


class NegotiationFuzzTests(SynchronousTestCase):
    """
    Whatever a request proposes, the acceptor's answer is one that can be
    encoded: negotiation never builds an A-ASSOCIATE-AC whose items
    overflow their 16-bit lengths.
    """

    @fuzzSettings(100)
    @given(negotiatedRequests, st.booleans())
    def test_answerEncodes(self, request, promiscuous):
        """
        Any request, any policy: the answer encodes and decodes, and answers
        each proposed context ID once.
        """
        policy = AcceptorPolicy(
            {VERIFICATION: UNCOMPRESSED, CT_IMAGE_STORAGE: UNCOMPRESSED},
            defaultTransferSyntaxes=UNCOMPRESSED if promiscuous else None,
            scpRoleSOPClasses=frozenset([CT_IMAGE_STORAGE]),
        )
        accept = acceptFor(request, policy)
        self.assertEqual(decodeWhole(accept.encode()), accept)
        answered = [answer.contextID for answer in accept.presentationContexts]
        self.assertEqual(answered, list(dict.fromkeys(context.contextID for context in request.presentationContexts)))

    def test_hugeRoleSelection(self):
        """
        Regression: a promiscuous acceptor granted a role
        selection for an abstract syntax of 65,500 characters, and the
        A-ASSOCIATE-AC echoing it did not fit its user information item
        (ValueError out of C{dataReceived}).  Such an abstract syntax is no
        UID and is refused.
        """
        uid = "1." + "2" * 65498
        request = AAssociateRQ(
            "DICOMD",
            "FUZZER",
            [PresentationContextRQ(1, uid, [IMPLICIT_LE])],
            UserInformation(roleSelections=[SCPSCURoleSelection(uid, True, True)]),
        )
        accept = acceptFor(decodeWhole(request.encode()), AcceptorPolicy({}, defaultTransferSyntaxes=UNCOMPRESSED))
        self.assertEqual(accept.presentationContexts, [PresentationContextAC(1, _pdu.PC_ABSTRACT_SYNTAX_NOT_SUPPORTED)])
        self.assertEqual(accept.userInformation.roleSelections, [])
        run = runAcceptor([request.encode()], promiscuous=True)
        self.assertIs(type(decodeStream(run.transport.value())[0]), AAssociateAC)

    def test_manyRoleSelections(self):
        """
        Regression: 910 presentation contexts (context IDs repeat) with 910
        role selections of 64-character UIDs filled the request's user
        information item; the answer echoing them overflowed its own.  Each
        context ID is answered once, so at most 256 roles are granted.
        """
        uids = ["1.2.%060d" % n for n in range(910)]
        request = AAssociateRQ(
            "DICOMD",
            "FUZZER",
            [PresentationContextRQ(n % 256, uid, [IMPLICIT_LE]) for n, uid in enumerate(uids)],
            UserInformation(roleSelections=[SCPSCURoleSelection(uid, True, False) for uid in uids]),
        )
        accept = acceptFor(decodeWhole(request.encode()), AcceptorPolicy({}, defaultTransferSyntaxes=UNCOMPRESSED))
        self.assertEqual(len(accept.presentationContexts), 256)
        self.assertEqual(len(accept.userInformation.roleSelections), 256)
        self.assertEqual(decodeWhole(accept.encode()), accept)
        run = runAcceptor([request.encode()], promiscuous=True)
        self.assertIs(type(decodeStream(run.transport.value())[0]), AAssociateAC)


class ProviderFuzzTests(SynchronousTestCase):
    """
    Arbitrary and mutated bytes into L{ULProvider.dataReceived} in every
    state with a transport connection: normal continuation or an A-ABORT,
    never an exception, always a valid state.
    """

    def test_everyConnectedState(self):
        """
        The harness reaches every state in which bytes can arrive.
        """
        self.assertEqual(set(CONNECTED_STATES), set(State) - {State.Sta1, State.Sta4})
        for state in CONNECTED_STATES:
            self.assertIs(providerIn(state).state, state)

    @fuzzSettings(300)
    @given(st.sampled_from(CONNECTED_STATES), st.lists(st.binary(max_size=64), max_size=4), st.booleans())
    def test_arbitraryBytes(self, state, chunks, respond):
        """
        Arbitrary chunks of bytes.
        """
        runProvider(state, chunks, respond)

    @fuzzSettings(300)
    @given(
        st.sampled_from(CONNECTED_STATES),
        st.lists(pdus, min_size=1, max_size=4),
        st.lists(mutations, max_size=4),
        cuts,
        st.booleans(),
    )
    def test_mutatedPDUs(self, state, values, changes, chunkCuts, respond):
        """
        Valid PDUs, mutated, split at arbitrary points.
        """
        data = mutate(b"".join(value.encode() for value in values), changes)
        runProvider(state, split(data, chunkCuts), respond)

    @fuzzSettings(100)
    @given(st.sampled_from(CONNECTED_STATES), st.lists(pdus, min_size=1, max_size=5), cuts)
    def test_validPDUsAnyOrder(self, state, values, chunkCuts):
        """
        Valid PDUs in any order, answered as the adapter answers: every
        sequence is a cell of the state table, none raises.
        """
        runProvider(state, split(b"".join(value.encode() for value in values), chunkCuts), True)

    def test_bytesAfterClosingPDUNotAllowed(self):
        """
        Regression: a PDU after one that closes the
        connection in the same chunk (here an A-ABORT, then an
        A-RELEASE-RQ) raised L{ProtocolError} from C{dataReceived} in Sta1;
        it is not allowed (L{EventNotAllowed}), nor is a later one, and the
        provider stays in Sta1.
        """
        notAllowed = EventNotAllowed(Event.Evt12, State.Sta1)
        for closing in (AAbort(0, 0).encode(), _RELEASE_RP):
            provider = providerIn(State.Sta7)
            outputs = receive(provider, closing + _RELEASE_RQ)
            self.assertIn(CloseTransport(), outputs)
            self.assertEqual(outputs[-1], notAllowed)
            self.assertIs(provider.state, State.Sta1)
            self.assertEqual(receive(provider, _RELEASE_RQ), [notAllowed])
            self.assertIs(provider.state, State.Sta1)

    def test_answersAfterTheEndNotAllowed(self):
        """
        Regression: answers of the local user to an association that a
        PDU already ended did nothing, silently; they are not allowed
        (L{EventNotAllowed}) and change nothing.  An A-ASSOCIATE-RQ and a
        P-DATA-TF in one chunk, the indication left unanswered: the
        P-DATA-TF aborts in Sta3 (AA-8).
        """
        provider = providerIn(State.Sta2)
        outputs = receive(provider, _RQ.encode() + _ANSWER)
        self.assertIn(AssociateIndication(_RQ), outputs)
        self.assertIs(provider.state, State.Sta13)
        self.assertEqual(provider.acceptAssociation(_AC), [EventNotAllowed(Event.Evt7, State.Sta13)])
        self.assertEqual(provider.sendData(_ANSWER), [EventNotAllowed(Event.Evt9, State.Sta13)])
        self.assertEqual(provider.respondRelease(), [EventNotAllowed(Event.Evt14, State.Sta13)])
        self.assertEqual(provider.requestRelease(), [EventNotAllowed(Event.Evt11, State.Sta13)])
        self.assertIs(provider.state, State.Sta13)


class AcceptorFuzzTests(SynchronousTestCase):
    """
    Arbitrary and mutated bytes into a live L{AcceptorProtocol} (Verification
    and a storage SCP) over a L{StringTransport}.
    """

    def test_session(self):
        """
        The unmutated session is served: AC, two responses, release.
        """
        run = runAcceptor(SESSION)
        written = decodeStream(run.transport.value(), ACCEPTOR_WRITES)
        self.assertEqual([type(pdu) for pdu in written], [AAssociateAC, PDataTF, PDataTF, AReleaseRP])
        self.assertEqual(decodeCommand(written[1].values[0].data).status, 0)
        self.assertEqual(decodeCommand(written[2].values[0].data).status, 0)

    @fuzzSettings(250)
    @given(st.lists(st.binary(max_size=64), max_size=4))
    def test_arbitraryBytes(self, chunks):
        """
        Arbitrary bytes from the first one.
        """
        runAcceptor(chunks)

    @fuzzSettings(400)
    @given(st.lists(st.tuples(uint8, mutations), min_size=1, max_size=5), cuts, st.lists(uint8, max_size=3))
    def test_mutatedSession(self, changes, chunkCuts, merges):
        """
        A mutated session, split at arbitrary points.
        """
        runAcceptor(mutateSession(changes, chunkCuts, merges))

    @fuzzSettings(120)
    @given(st.lists(pdus, min_size=1, max_size=4), cuts)
    def test_validPDUsAfterAssociation(self, values, chunkCuts):
        """
        Any valid PDUs after a well-formed A-ASSOCIATE-RQ.
        """
        data = b"".join(value.encode() for value in values)
        runAcceptor([_RQ.encode()] + split(data, chunkCuts))

    @fuzzSettings(80)
    @given(associateRQs, cuts)
    def test_anyAssociateRQ(self, request, chunkCuts):
        """
        Any A-ASSOCIATE-RQ, followed by a C-ECHO-RQ and a release.
        """
        echo = b"".join(bytes(piece) for piece in fragment(1, True, encodeCommand(CEchoRQ(messageID=7)), 100))
        runAcceptor(split(request.encode(), chunkCuts) + [echo, _RELEASE_RQ])

    @fuzzSettings(200)
    @given(sentMessages, st.sampled_from([1, 3, 5]), st.none() | st.binary(max_size=64), st.booleans())
    def test_anyCommand(self, message, contextID, dataSet, release):
        """
        Any command set of any class, on an accepted context or not, with or
        without a data set, then a release or silence: nothing is raised or
        logged, and once the clock has run the connection is closed (no
        request keeps an association open for ever).
        """
        pieces = fragment(contextID, True, encodeCommand(message), 16000)
        if dataSet is not None:
            pieces += fragment(contextID, False, dataSet, 16000)
        chunks = [_RQ.encode(), b"".join(bytes(piece) for piece in pieces)]
        runAcceptor(chunks + ([_RELEASE_RQ] if release else []))

    def test_nonASCIIAETitle(self):
        """
        Regression: an A-ASSOCIATE-RQ whose called AE
        title holds a byte above 0x7F made the A-ASSOCIATE-AC, which echoes
        it, raise UnicodeEncodeError out of C{dataReceived}.
        """
        request = bytearray(_RQ.encode())
        request[10] = 0xC9
        run = AcceptorRun()
        try:
            run.feed(bytes(request))
            written = decodeStream(run.transport.value(), ACCEPTOR_WRITES)
            self.assertIs(type(written[0]), AAssociateAC)
            self.assertEqual(written[0].calledAETitle, "\xc9ICOMD")
        finally:
            run.finish()

    def test_nonASCIIUIDInCommand(self):
        """
        Regression: a C-ECHO-RQ whose SOP class UID holds
        a byte above 0x7F made the response, which echoes it, fail to
        encode (an unhandled error, logged, and the association aborted);
        it is answered.
        """
        echo = bytearray(encodeCommand(CEchoRQ(messageID=3)))
        position = echo.index(VERIFICATION.encode())
        echo[position] = 0xB1
        run = AcceptorRun()
        try:
            run.feed(_RQ.encode())
            run.feed(b"".join(bytes(piece) for piece in fragment(1, True, bytes(echo), 16000)))
            written = decodeStream(run.transport.value(), ACCEPTOR_WRITES)
            self.assertEqual([type(pdu) for pdu in written], [AAssociateAC, PDataTF])
            response = decodeCommand(written[1].values[0].data)
            self.assertEqual(response.affectedSOPClassUID, "\xb1" + VERIFICATION[1:])
        finally:
            run.finish()

    def test_echoWithDataSet(self):
        """
        Regression: a C-ECHO-RQ whose CommandDataSetType announces a data
        set left no consumer for it, and its fragments raised
        AttributeError in the association (logged, then aborted).  The
        data set is read and dropped, and the association goes on.
        """
        echo = encodeCommand(CEchoRQ(messageID=5, hasDataSet=True))
        pdus = [bytes(piece) for piece in fragment(1, True, echo, 16000) + fragment(1, False, b"\x08\x00" * 8, 16000)]
        run = runAcceptor([_RQ.encode(), pdus[0] + pdus[1], pdus[2] + pdus[3], _RELEASE_RQ])
        written = decodeStream(run.transport.value(), ACCEPTOR_WRITES)
        self.assertEqual([type(pdu) for pdu in written], [AAssociateAC, PDataTF, AReleaseRP])

    def test_dataSetAfterAbortInSameChunk(self):
        """
        Regression: a C-STORE-RQ on a context that was not accepted aborts
        the association; its data set, in the same chunk, was still handed
        to the association and raised AttributeError (logged).  P-DATA
        after the association ended is ignored.
        """
        store = encodeCommand(CStoreRQ(messageID=2, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID="1.2"))
        pieces = fragment(5, True, store, 16000) + fragment(5, False, b"\x00" * 64, 16000)
        run = runAcceptor([_RQ.encode(), b"".join(bytes(piece) for piece in pieces)])
        written = decodeStream(run.transport.value(), ACCEPTOR_WRITES)
        self.assertEqual([type(pdu) for pdu in written], [AAssociateAC, AAbort])

    def test_storeWithoutDataSet(self):
        """
        Regression: a C-STORE-RQ announcing no data set is a DIMSE protocol
        error, answered with an A-ABORT; the connection then closes (before,
        the association stayed open as long as the peer kept it).
        """
        store = encodeCommand(CStoreRQ(messageID=2, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID="1.2"))
        present = struct.pack("<HHLH", 0, 0x0800, 2, 1)
        self.assertIn(present, store)
        store = store.replace(present, struct.pack("<HHLH", 0, 0x0800, 2, 0x0101))
        pieces = fragment(3, True, store, 16000)
        run = runAcceptor([_RQ.encode(), b"".join(bytes(piece) for piece in pieces)])
        written = decodeStream(run.transport.value(), ACCEPTOR_WRITES)
        self.assertEqual([type(pdu) for pdu in written], [AAssociateAC, AAbort])

    def test_cancelWithDataSet(self):
        """
        Regression (found by C{test_anyCommand}): a C-CANCEL-RQ announcing a
        data set left no consumer for it, and the data set raised
        AttributeError in the association (logged, then aborted).  It is
        read and dropped.
        """
        cancel = encodeCommand(CCancelRQ(messageIDBeingRespondedTo=9, hasDataSet=True))
        pieces = fragment(1, True, cancel, 16000) + fragment(1, False, b"\x00" * 8, 16000)
        run = runAcceptor([_RQ.encode(), b"".join(bytes(piece) for piece in pieces), _RELEASE_RQ])
        written = decodeStream(run.transport.value(), ACCEPTOR_WRITES)
        self.assertEqual([type(pdu) for pdu in written], [AAssociateAC, AReleaseRP])
