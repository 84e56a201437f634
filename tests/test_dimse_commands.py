"""
Tests for L{dicomd.dimse.commands}: DIMSE-C command sets (PS3.7 section
9.3, Annex E).

A command set is group 0000 in implicit VR little endian: each element is
its tag (group, element, two little-endian 16-bit numbers), a 32-bit
little-endian value length and the value; the Command Group Length
(0000,0000) comes first.  The vectors below are written element by element
from PS3.7 Table E.1-1 and the message tables of PS3.7 9.3, decoded and
compared with our encoder's output.  pydicom's independent reader checks
our encoder once more.
"""

from io import BytesIO

from twisted.trial.unittest import SynchronousTestCase

from dicomd.dimse.commands import (
    DATA_SET_ABSENT,
    DATA_SET_PRESENT,
    MESSAGE_CLASSES,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MEDIUM,
    CCancelRQ,
    CEchoRQ,
    CEchoRSP,
    CFindRQ,
    CFindRSP,
    CGetRQ,
    CGetRSP,
    CMoveRQ,
    CMoveRSP,
    CStoreRQ,
    CStoreRSP,
    DIMSEDecodeError,
    UnrecognizedMessage,
    decodeCommand,
    encodeCommand,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"


def _hex(text: str) -> bytes:
    """
    Bytes from hexadecimal digits, ignoring spaces.
    """
    return bytes.fromhex(text)


# Each line is one element: tag group (LE), tag element (LE), value length
# (32-bit LE), value.

C_ECHO_RQ_BYTES = (
    _hex("0000 0000 04000000 38000000")  # (0000,0000) Command Group Length, UL: 56
    + _hex("0000 0200 12000000")  # (0000,0002) Affected SOP Class UID, UI, 18 bytes
    + b"1.2.840.10008.1.1\x00"  # Verification, padded with NUL to even length
    + _hex("0000 0001 02000000 3000")  # (0000,0100) Command Field, US: 0030H C-ECHO-RQ
    + _hex("0000 1001 02000000 0100")  # (0000,0110) Message ID, US: 1
    + _hex("0000 0008 02000000 0101")  # (0000,0800) Command Data Set Type, US: 0101H none
)
C_ECHO_RQ = CEchoRQ(messageID=1)

C_ECHO_RSP_BYTES = (
    _hex("0000 0000 04000000 42000000")  # (0000,0000) Command Group Length, UL: 66
    + _hex("0000 0200 12000000")  # (0000,0002) Affected SOP Class UID, UI, 18 bytes
    + b"1.2.840.10008.1.1\x00"
    + _hex("0000 0001 02000000 3080")  # (0000,0100) Command Field: 8030H C-ECHO-RSP
    + _hex("0000 2001 02000000 0100")  # (0000,0120) Message ID Being Responded To: 1
    + _hex("0000 0008 02000000 0101")  # (0000,0800) Command Data Set Type: none
    + _hex("0000 0009 02000000 0000")  # (0000,0900) Status: 0000H success
)
C_ECHO_RSP = CEchoRSP(messageIDBeingRespondedTo=1, status=0x0000)

C_STORE_RQ_BYTES = (
    _hex("0000 0000 04000000 86000000")  # (0000,0000) Command Group Length: 134
    + _hex("0000 0200 1A000000")  # (0000,0002) Affected SOP Class UID, 26 bytes
    + b"1.2.840.10008.5.1.4.1.1.2\x00"  # CT Image Storage, NUL padded
    + _hex("0000 0001 02000000 0100")  # (0000,0100) Command Field: 0001H C-STORE-RQ
    + _hex("0000 1001 02000000 3412")  # (0000,0110) Message ID: 1234H
    + _hex("0000 0007 02000000 0100")  # (0000,0700) Priority: 0001H high
    + _hex("0000 0008 02000000 0100")  # (0000,0800) Command Data Set Type: 0001H present
    + _hex("0000 0010 12000000")  # (0000,1000) Affected SOP Instance UID, 18 bytes
    + b"1.2.3.4.5.6.7.8.9\x00"
    + _hex("0000 3010 10000000")  # (0000,1030) Move Originator AE Title, AE, 16 bytes
    + b"MOVESCU         "  # padded with spaces
    + _hex("0000 3110 02000000 0500")  # (0000,1031) Move Originator Message ID: 5
)
C_STORE_RQ = CStoreRQ(
    messageID=0x1234,
    affectedSOPClassUID=CT_IMAGE_STORAGE,
    affectedSOPInstanceUID="1.2.3.4.5.6.7.8.9",
    priority=PRIORITY_HIGH,
    moveOriginatorApplicationEntityTitle="MOVESCU",
    moveOriginatorMessageID=5,
)

C_STORE_RSP_BYTES = (
    _hex("0000 0000 04000000 64000000")  # (0000,0000) Command Group Length: 100
    + _hex("0000 0200 1A000000")  # (0000,0002) Affected SOP Class UID, 26 bytes
    + b"1.2.840.10008.5.1.4.1.1.2\x00"
    + _hex("0000 0001 02000000 0180")  # (0000,0100) Command Field: 8001H C-STORE-RSP
    + _hex("0000 2001 02000000 3412")  # (0000,0120) Message ID Being Responded To: 1234H
    + _hex("0000 0008 02000000 0101")  # (0000,0800) Command Data Set Type: none
    + _hex("0000 0009 02000000 0000")  # (0000,0900) Status: success
    + _hex("0000 0010 12000000")  # (0000,1000) Affected SOP Instance UID, 18 bytes
    + b"1.2.3.4.5.6.7.8.9\x00"
)
C_STORE_RSP = CStoreRSP(
    messageIDBeingRespondedTo=0x1234,
    status=0x0000,
    affectedSOPClassUID=CT_IMAGE_STORAGE,
    affectedSOPInstanceUID="1.2.3.4.5.6.7.8.9",
)

C_STORE_RSP_FAILURE_BYTES = (
    _hex("0000 0000 04000000 7C000000")  # (0000,0000) Command Group Length: 124
    + _hex("0000 0200 1A000000")  # (0000,0002) Affected SOP Class UID, 26 bytes
    + b"1.2.840.10008.5.1.4.1.1.2\x00"
    + _hex("0000 0001 02000000 0180")  # (0000,0100) Command Field: C-STORE-RSP
    + _hex("0000 2001 02000000 0200")  # (0000,0120) Message ID Being Responded To: 2
    + _hex("0000 0008 02000000 0101")  # (0000,0800) Command Data Set Type: none
    + _hex("0000 0009 02000000 00A9")  # (0000,0900) Status: A900H
    + _hex("0000 0109 04000000 1000 1000")  # (0000,0901) Offending Element, AT: (0010,0010)
    + _hex("0000 0209 04000000")  # (0000,0902) Error Comment, LO, 4 bytes
    + b"Bad "  # padded with a space to even length
    + _hex("0000 0010 12000000")  # (0000,1000) Affected SOP Instance UID, 18 bytes
    + b"1.2.3.4.5.6.7.8.9\x00"
)
C_STORE_RSP_FAILURE = CStoreRSP(
    messageIDBeingRespondedTo=2,
    status=0xA900,
    offendingElement=[0x00100010],
    errorComment="Bad",
    affectedSOPClassUID=CT_IMAGE_STORAGE,
    affectedSOPInstanceUID="1.2.3.4.5.6.7.8.9",
)

C_FIND_RQ_BYTES = (
    _hex("0000 0000 04000000 4C000000")  # (0000,0000) Command Group Length: 76
    + _hex("0000 0200 1C000000")  # (0000,0002) Affected SOP Class UID, 28 bytes
    + b"1.2.840.10008.5.1.4.1.2.2.1\x00"  # Study Root Q/R FIND, NUL padded
    + _hex("0000 0001 02000000 2000")  # (0000,0100) Command Field: 0020H C-FIND-RQ
    + _hex("0000 1001 02000000 0700")  # (0000,0110) Message ID: 7
    + _hex("0000 0007 02000000 0000")  # (0000,0700) Priority: medium
    + _hex("0000 0008 02000000 0100")  # (0000,0800) Command Data Set Type: present
)
C_FIND_RQ = CFindRQ(messageID=7, affectedSOPClassUID=STUDY_ROOT_FIND)

C_FIND_RSP_BYTES = (
    _hex("0000 0000 04000000 4C000000")  # (0000,0000) Command Group Length: 76
    + _hex("0000 0200 1C000000")  # (0000,0002) Affected SOP Class UID, 28 bytes
    + b"1.2.840.10008.5.1.4.1.2.2.1\x00"
    + _hex("0000 0001 02000000 2080")  # (0000,0100) Command Field: 8020H C-FIND-RSP
    + _hex("0000 2001 02000000 0700")  # (0000,0120) Message ID Being Responded To: 7
    + _hex("0000 0008 02000000 0100")  # (0000,0800) Command Data Set Type: identifier follows
    + _hex("0000 0009 02000000 00FF")  # (0000,0900) Status: FF00H pending
)
C_FIND_RSP = CFindRSP(messageIDBeingRespondedTo=7, status=0xFF00, affectedSOPClassUID=STUDY_ROOT_FIND, hasDataSet=True)

C_MOVE_RQ_BYTES = (
    _hex("0000 0000 04000000 64000000")  # (0000,0000) Command Group Length: 100
    + _hex("0000 0200 1C000000")  # (0000,0002) Affected SOP Class UID, 28 bytes
    + b"1.2.840.10008.5.1.4.1.2.2.2\x00"  # Study Root Q/R MOVE
    + _hex("0000 0001 02000000 2100")  # (0000,0100) Command Field: 0021H C-MOVE-RQ
    + _hex("0000 1001 02000000 0900")  # (0000,0110) Message ID: 9
    + _hex("0000 0006 10000000")  # (0000,0600) Move Destination, AE, 16 bytes
    + b"STORESCP        "  # padded with spaces
    + _hex("0000 0007 02000000 0200")  # (0000,0700) Priority: 0002H low
    + _hex("0000 0008 02000000 0100")  # (0000,0800) Command Data Set Type: present
)
C_MOVE_RQ = CMoveRQ(messageID=9, affectedSOPClassUID=STUDY_ROOT_MOVE, priority=PRIORITY_LOW, moveDestination="STORESCP")

C_MOVE_RSP_BYTES = (
    _hex("0000 0000 04000000 74000000")  # (0000,0000) Command Group Length: 116
    + _hex("0000 0200 1C000000")  # (0000,0002) Affected SOP Class UID, 28 bytes
    + b"1.2.840.10008.5.1.4.1.2.2.2\x00"
    + _hex("0000 0001 02000000 2180")  # (0000,0100) Command Field: 8021H C-MOVE-RSP
    + _hex("0000 2001 02000000 0900")  # (0000,0120) Message ID Being Responded To: 9
    + _hex("0000 0008 02000000 0101")  # (0000,0800) Command Data Set Type: none
    + _hex("0000 0009 02000000 00FF")  # (0000,0900) Status: pending
    + _hex("0000 2010 02000000 0300")  # (0000,1020) Number of Remaining Sub-operations: 3
    + _hex("0000 2110 02000000 0200")  # (0000,1021) Number of Completed Sub-operations: 2
    + _hex("0000 2210 02000000 0100")  # (0000,1022) Number of Failed Sub-operations: 1
    + _hex("0000 2310 02000000 0000")  # (0000,1023) Number of Warning Sub-operations: 0
)
C_MOVE_RSP = CMoveRSP(
    messageIDBeingRespondedTo=9,
    status=0xFF00,
    affectedSOPClassUID=STUDY_ROOT_MOVE,
    numberOfRemainingSuboperations=3,
    numberOfCompletedSuboperations=2,
    numberOfFailedSuboperations=1,
    numberOfWarningSuboperations=0,
)

C_GET_RQ_BYTES = (
    _hex("0000 0000 04000000 4C000000")  # (0000,0000) Command Group Length: 76
    + _hex("0000 0200 1C000000")  # (0000,0002) Affected SOP Class UID, 28 bytes
    + b"1.2.840.10008.5.1.4.1.2.2.3\x00"  # Study Root Q/R GET
    + _hex("0000 0001 02000000 1000")  # (0000,0100) Command Field: 0010H C-GET-RQ
    + _hex("0000 1001 02000000 0B00")  # (0000,0110) Message ID: 11
    + _hex("0000 0007 02000000 0000")  # (0000,0700) Priority: medium
    + _hex("0000 0008 02000000 0100")  # (0000,0800) Command Data Set Type: present
)
C_GET_RQ = CGetRQ(messageID=11, affectedSOPClassUID=STUDY_ROOT_GET)

C_GET_RSP_BYTES = (
    _hex("0000 0000 04000000 6A000000")  # (0000,0000) Command Group Length: 106
    + _hex("0000 0200 1C000000")  # (0000,0002) Affected SOP Class UID, 28 bytes
    + b"1.2.840.10008.5.1.4.1.2.2.3\x00"
    + _hex("0000 0001 02000000 1080")  # (0000,0100) Command Field: 8010H C-GET-RSP
    + _hex("0000 2001 02000000 0B00")  # (0000,0120) Message ID Being Responded To: 11
    + _hex("0000 0008 02000000 0101")  # (0000,0800) Command Data Set Type: none
    + _hex("0000 0009 02000000 00B0")  # (0000,0900) Status: B000H warning
    + _hex("0000 2110 02000000 0400")  # (0000,1021) Number of Completed Sub-operations: 4
    + _hex("0000 2210 02000000 0100")  # (0000,1022) Number of Failed Sub-operations: 1
    + _hex("0000 2310 02000000 0000")  # (0000,1023) Number of Warning Sub-operations: 0
)
C_GET_RSP = CGetRSP(
    messageIDBeingRespondedTo=11,
    status=0xB000,
    affectedSOPClassUID=STUDY_ROOT_GET,
    numberOfCompletedSuboperations=4,
    numberOfFailedSuboperations=1,
    numberOfWarningSuboperations=0,
)

C_CANCEL_RQ_BYTES = (
    _hex("0000 0000 04000000 1E000000")  # (0000,0000) Command Group Length: 30
    + _hex("0000 0001 02000000 FF0F")  # (0000,0100) Command Field: 0FFFH C-CANCEL-RQ
    + _hex("0000 2001 02000000 0700")  # (0000,0120) Message ID Being Responded To: 7
    + _hex("0000 0008 02000000 0101")  # (0000,0800) Command Data Set Type: none
)
C_CANCEL_RQ = CCancelRQ(messageIDBeingRespondedTo=7)

#: Every hand-built vector and the message it encodes.
VECTORS = [
    (C_ECHO_RQ_BYTES, C_ECHO_RQ),
    (C_ECHO_RSP_BYTES, C_ECHO_RSP),
    (C_STORE_RQ_BYTES, C_STORE_RQ),
    (C_STORE_RSP_BYTES, C_STORE_RSP),
    (C_STORE_RSP_FAILURE_BYTES, C_STORE_RSP_FAILURE),
    (C_FIND_RQ_BYTES, C_FIND_RQ),
    (C_FIND_RSP_BYTES, C_FIND_RSP),
    (C_MOVE_RQ_BYTES, C_MOVE_RQ),
    (C_MOVE_RSP_BYTES, C_MOVE_RSP),
    (C_GET_RQ_BYTES, C_GET_RQ),
    (C_GET_RSP_BYTES, C_GET_RSP),
    (C_CANCEL_RQ_BYTES, C_CANCEL_RQ),
]


def element(elementNumber: int, value: bytes) -> bytes:
    """
    One implicit VR little endian element of group 0000.
    """
    return (0).to_bytes(2, "little") + elementNumber.to_bytes(2, "little") + len(value).to_bytes(4, "little") + value


def us(value: int) -> bytes:
    """
    A US value, little endian.
    """
    return value.to_bytes(2, "little")


class HandBuiltVectorTests(SynchronousTestCase):
    """
    Command sets written from PS3.7 Annex E decode to their messages, and
    our encoder writes exactly those bytes.
    """

    def test_groupLengthsAreRight(self):
        """
        Each vector's Command Group Length counts the bytes after it (a
        check on the vectors themselves).
        """
        for data, message in VECTORS:
            self.assertEqual(int.from_bytes(data[8:12], "little"), len(data) - 12, type(message).__name__)

    def test_decode(self):
        """
        Each vector decodes to its message.
        """
        for data, message in VECTORS:
            self.assertEqual(decodeCommand(data), message)

    def test_encode(self):
        """
        Each message encodes to its vector.
        """
        for data, message in VECTORS:
            self.assertEqual(encodeCommand(message), data, type(message).__name__)

    def test_decodeMemoryview(self):
        """
        A command set may be given as a memoryview, as reassembly hands it.
        """
        self.assertEqual(decodeCommand(memoryview(bytearray(C_STORE_RQ_BYTES))), C_STORE_RQ)

    def test_hasDataSet(self):
        """
        CommandDataSetType 0101H means no data set and 0001H a data set;
        requests that carry one say so by default.
        """
        self.assertEqual(DATA_SET_ABSENT, 0x0101)
        self.assertEqual(DATA_SET_PRESENT, 0x0001)
        self.assertFalse(decodeCommand(C_ECHO_RQ_BYTES).hasDataSet)
        for data in (C_STORE_RQ_BYTES, C_FIND_RQ_BYTES, C_MOVE_RQ_BYTES, C_GET_RQ_BYTES, C_FIND_RSP_BYTES):
            self.assertTrue(decodeCommand(data).hasDataSet)
        for cls in (CStoreRQ, CFindRQ, CMoveRQ, CGetRQ):
            self.assertTrue(cls().hasDataSet)
        for cls in (CEchoRQ, CEchoRSP, CStoreRSP, CFindRSP, CMoveRSP, CGetRSP, CCancelRQ):
            self.assertFalse(cls().hasDataSet)

    def test_pydicomReadsOurCommandSets(self):
        """
        pydicom, reading our output as implicit VR little endian, finds the
        standard's elements with the right values.
        """
        from pydicom.filereader import read_dataset

        dataset = read_dataset(BytesIO(encodeCommand(C_STORE_RQ)), True, True)
        self.assertEqual(dataset.CommandGroupLength, 134)
        self.assertEqual(dataset.AffectedSOPClassUID, CT_IMAGE_STORAGE)
        self.assertEqual(dataset.CommandField, 0x0001)
        self.assertEqual(dataset.MessageID, 0x1234)
        self.assertEqual(dataset.Priority, PRIORITY_HIGH)
        self.assertEqual(dataset.CommandDataSetType, 0x0001)
        self.assertEqual(dataset.AffectedSOPInstanceUID, "1.2.3.4.5.6.7.8.9")
        self.assertEqual(dataset.MoveOriginatorApplicationEntityTitle, "MOVESCU")
        self.assertEqual(dataset.MoveOriginatorMessageID, 5)

        dataset = read_dataset(BytesIO(encodeCommand(C_MOVE_RSP)), True, True)
        self.assertEqual(dataset.CommandField, 0x8021)
        self.assertEqual(dataset.Status, 0xFF00)
        self.assertEqual(
            [
                dataset.NumberOfRemainingSuboperations,
                dataset.NumberOfCompletedSuboperations,
                dataset.NumberOfFailedSuboperations,
                dataset.NumberOfWarningSuboperations,
            ],
            [3, 2, 1, 0],
        )

    def test_weReadPynetdicomCommandSets(self):
        """
        We decode a C-STORE-RQ command set encoded by pynetdicom.
        """
        from pynetdicom.dimse_primitives import C_STORE
        from pynetdicom.dimse_messages import C_STORE_RQ

        primitive = C_STORE()
        primitive.MessageID = 42
        primitive.AffectedSOPClassUID = CT_IMAGE_STORAGE
        primitive.AffectedSOPInstanceUID = "1.2.3.4.5"
        primitive.Priority = PRIORITY_LOW
        primitive.MoveOriginatorApplicationEntityTitle = "ORIGIN"
        primitive.MoveOriginatorMessageID = 3
        # With its data set, as pynetdicom sends it: Command Data Set Type
        # 0x0001 (a C-STORE-RQ without one is refused).
        primitive.DataSet = BytesIO(b"\x08\x00\x18\x00\x00\x00\x00\x00")
        message = C_STORE_RQ()
        message.primitive_to_message(primitive)
        from pynetdicom.dsutils import encode

        raw = encode(message.command_set, True, True)
        self.assertEqual(
            decodeCommand(raw),
            CStoreRQ(
                messageID=42,
                affectedSOPClassUID=CT_IMAGE_STORAGE,
                affectedSOPInstanceUID="1.2.3.4.5",
                priority=PRIORITY_LOW,
                moveOriginatorApplicationEntityTitle="ORIGIN",
                moveOriginatorMessageID=3,
                hasDataSet=message.command_set.CommandDataSetType != 0x0101,
            ),
        )


class RoundTripTests(SynchronousTestCase):
    """
    Every message class survives encode and decode with all its fields.
    """

    def test_everyMessageClass(self):
        """
        One message of each class, every optional element set, round-trips.
        """
        messages = [
            CEchoRQ(messageID=65535),
            CEchoRSP(messageIDBeingRespondedTo=3, status=0x0211, errorComment="unknown operation"),
            C_STORE_RQ,
            CStoreRQ(messageID=2, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID="1.2"),
            C_STORE_RSP_FAILURE,
            CStoreRSP(
                messageIDBeingRespondedTo=4, status=0xB000, errorID=17, offendingElement=[0x00100010, 0x00100020]
            ),
            CFindRQ(messageID=5, affectedSOPClassUID=STUDY_ROOT_FIND, priority=PRIORITY_HIGH),
            CFindRSP(messageIDBeingRespondedTo=5, status=0x0000, affectedSOPClassUID=STUDY_ROOT_FIND),
            C_MOVE_RQ,
            C_MOVE_RSP,
            C_GET_RQ,
            C_GET_RSP,
            CGetRSP(messageIDBeingRespondedTo=1, status=0xFE00, numberOfRemainingSuboperations=9),
            C_CANCEL_RQ,
        ]
        self.assertEqual({type(m) for m in messages}, set(MESSAGE_CLASSES.values()))
        for message in messages:
            self.assertEqual(decodeCommand(encodeCommand(message)), message)

    def test_commandFields(self):
        """
        Each class carries the Command Field of PS3.7 Table E.1-1.
        """
        self.assertEqual(
            {cls.__name__: cls.commandField for cls in MESSAGE_CLASSES.values()},
            {
                "CStoreRQ": 0x0001,
                "CStoreRSP": 0x8001,
                "CGetRQ": 0x0010,
                "CGetRSP": 0x8010,
                "CFindRQ": 0x0020,
                "CFindRSP": 0x8020,
                "CMoveRQ": 0x0021,
                "CMoveRSP": 0x8021,
                "CEchoRQ": 0x0030,
                "CEchoRSP": 0x8030,
                "CCancelRQ": 0x0FFF,
            },
        )

    def test_isResponse(self):
        """
        Responses are the messages whose Command Field has bit 15 set.
        """
        for cls in MESSAGE_CLASSES.values():
            self.assertEqual(cls().isResponse, cls.__name__.endswith("RSP"), cls.__name__)

    def test_priorities(self):
        """
        The priorities are those of PS3.7 Table E.1-1.
        """
        self.assertEqual((PRIORITY_LOW, PRIORITY_MEDIUM, PRIORITY_HIGH), (0x0002, 0x0000, 0x0001))

    def test_evenLengthPadding(self):
        """
        An odd-length UID is padded with NUL and an odd-length LO with a
        space; even-length values are not padded.
        """
        encoded = encodeCommand(CEchoRSP(messageIDBeingRespondedTo=1, affectedSOPClassUID="1.2.34", errorComment="ok"))
        self.assertIn(element(0x0002, b"1.2.34"), encoded)
        self.assertIn(element(0x0902, b"ok"), encoded)
        encoded = encodeCommand(CEchoRSP(messageIDBeingRespondedTo=1, affectedSOPClassUID="1.2.3", errorComment="bad"))
        self.assertIn(element(0x0002, b"1.2.3\x00"), encoded)
        self.assertIn(element(0x0902, b"bad "), encoded)

    def test_elementsInTagOrder(self):
        """
        Elements are written in ascending tag order, the group length first.
        """
        encoded = encodeCommand(C_STORE_RQ)
        tags = []
        position = 0
        while position < len(encoded):
            tags.append(int.from_bytes(encoded[position + 2 : position + 4], "little"))
            position += 8 + int.from_bytes(encoded[position + 4 : position + 8], "little")
        self.assertEqual(tags, sorted(tags))
        self.assertEqual(tags[0], 0x0000)


class LenientDecodeTests(SynchronousTestCase):
    """
    Decoding tolerates what does not change the meaning.
    """

    def test_wrongGroupLengthIgnored(self):
        """
        A wrong Command Group Length value does not make us misread the
        elements after it.
        """
        for wrong in (0, 10, 0xFFFFFFFF):
            data = C_STORE_RQ_BYTES[:8] + wrong.to_bytes(4, "little") + C_STORE_RQ_BYTES[12:]
            self.assertEqual(decodeCommand(data), C_STORE_RQ)

    def test_missingGroupLength(self):
        """
        A command set without a group length element decodes.
        """
        self.assertEqual(decodeCommand(C_ECHO_RQ_BYTES[12:]), C_ECHO_RQ)

    def test_unknownElementsIgnored(self):
        """
        Group 0000 elements no message uses (retired or N-service ones) are
        ignored.
        """
        data = C_ECHO_RQ_BYTES + element(0x1001, b"1.2.3\x00") + element(0x5010, b"")
        self.assertEqual(decodeCommand(data), C_ECHO_RQ)

    def test_dataSetTypeValues(self):
        """
        Any CommandDataSetType other than 0101H means a data set follows; a
        missing one means none does.
        """
        base = element(0x0100, us(0x0030)) + element(0x0110, us(1))
        for value, expected in ((0x0101, False), (0x0001, True), (0x0102, True), (0xFEFE, True), (0x0000, True)):
            self.assertEqual(decodeCommand(base + element(0x0800, us(value))).hasDataSet, expected, hex(value))
        self.assertFalse(decodeCommand(base).hasDataSet)

    def test_uidPaddingRemoved(self):
        """
        A UID padded with NUL or, wrongly, with a space decodes without it.
        """
        for padded in (b"1.2.3\x00", b"1.2.3 "):
            data = element(0x0002, padded) + element(0x0100, us(0x0030)) + element(0x0110, us(1))
            self.assertEqual(decodeCommand(data).affectedSOPClassUID, "1.2.3")

    def test_aePaddingRemoved(self):
        """
        An AE title padded only to even length, or with leading spaces,
        decodes to the bare title.
        """
        for padded in (b"STORESCP", b"STORESCP  ", b"  STORESCP      "):
            data = (
                element(0x0002, STUDY_ROOT_MOVE.encode() + b"\x00")
                + element(0x0100, us(0x0021))
                + element(0x0110, us(1))
                + element(0x0600, padded)
                + element(0x0800, us(0x0001))
            )
            self.assertEqual(decodeCommand(data).moveDestination, "STORESCP")

    def test_unrecognizedCommandField(self):
        """
        A Command Field that is not a DIMSE-C message (here N-GET-RQ) gives
        an L{UnrecognizedMessage} keeping what can be read.
        """
        data = (
            element(0x0003, b"1.2.840.10008.5.1.1.40\x00")
            + element(0x0100, us(0x0110))
            + element(0x0110, us(8))
            + element(0x0800, us(0x0101))
        )
        message = decodeCommand(data)
        self.assertEqual(message, UnrecognizedMessage(commandField=0x0110, messageID=8))
        self.assertFalse(message.isResponse)
        response = decodeCommand(element(0x0100, us(0x8110)) + element(0x0120, us(8)) + element(0x0900, us(0)))
        self.assertEqual(response, UnrecognizedMessage(commandField=0x8110, messageIDBeingRespondedTo=8, status=0))
        self.assertTrue(response.isResponse)


class MalformedTests(SynchronousTestCase):
    """
    Command sets that are not command sets raise L{DIMSEDecodeError}.
    """

    def test_elementOutsideCommandGroup(self):
        """
        An element outside group 0000 is refused.
        """
        data = C_ECHO_RQ_BYTES + _hex("0800 1600 02000000") + b"1\x00"  # (0008,0016)
        self.assertRaises(DIMSEDecodeError, decodeCommand, data)

    def test_lengthPastEnd(self):
        """
        An element whose length runs past the end is refused.
        """
        data = C_ECHO_RQ_BYTES[:-2]
        self.assertRaises(DIMSEDecodeError, decodeCommand, data)
        data = C_ECHO_RQ_BYTES + _hex("0000 0209 FFFFFFFF") + b"x"
        self.assertRaises(DIMSEDecodeError, decodeCommand, data)

    def test_truncatedAnywhere(self):
        """
        Cutting a command set inside any element is refused.
        """
        boundaries = set()
        position = 0
        while position < len(C_STORE_RQ_BYTES):
            boundaries.add(position)
            position += 8 + int.from_bytes(C_STORE_RQ_BYTES[position + 4 : position + 8], "little")
        for cut in range(1, len(C_STORE_RQ_BYTES)):
            if cut not in boundaries:
                self.assertRaises(DIMSEDecodeError, decodeCommand, C_STORE_RQ_BYTES[:cut])

    def test_missingCommandField(self):
        """
        A command set without a Command Field is refused.
        """
        data = element(0x0002, b"1.2.840.10008.1.1\x00") + element(0x0110, us(1)) + element(0x0800, us(0x0101))
        self.assertRaises(DIMSEDecodeError, decodeCommand, data)
        self.assertRaises(DIMSEDecodeError, decodeCommand, b"")

    def test_responseWithoutStatus(self):
        """
        A response without its Status is refused, for every response class.
        """
        for commandField in (0x8001, 0x8010, 0x8020, 0x8021, 0x8030):
            data = element(0x0100, us(commandField)) + element(0x0120, us(1)) + element(0x0800, us(0x0101))
            self.assertRaises(DIMSEDecodeError, decodeCommand, data)

    def test_responseWithoutMessageID(self):
        """
        A response without Message ID Being Responded To is refused.
        """
        data = element(0x0100, us(0x8030)) + element(0x0900, us(0)) + element(0x0800, us(0x0101))
        self.assertRaises(DIMSEDecodeError, decodeCommand, data)

    def test_requestWithoutMessageID(self):
        """
        A request without its Message ID is refused.
        """
        for commandField in (0x0001, 0x0010, 0x0020, 0x0021, 0x0030):
            data = element(0x0100, us(commandField)) + element(0x0800, us(0x0101))
            self.assertRaises(DIMSEDecodeError, decodeCommand, data)

    def test_cancelWithoutMessageID(self):
        """
        A C-CANCEL-RQ must name the request it cancels.
        """
        data = element(0x0100, us(0x0FFF)) + element(0x0800, us(0x0101))
        self.assertRaises(DIMSEDecodeError, decodeCommand, data)

    def test_wrongUSLength(self):
        """
        A US element that is not 2 bytes is refused.
        """
        for value in (b"", b"\x01", b"\x01\x00\x00\x00"):
            data = element(0x0100, us(0x0030)) + element(0x0110, value)
            self.assertRaises(DIMSEDecodeError, decodeCommand, data)
        self.assertRaises(DIMSEDecodeError, decodeCommand, element(0x0100, b"\x30\x00\x00"))

    def test_wrongATLength(self):
        """
        An AT element whose length is not a multiple of 4 is refused.
        """
        data = (
            element(0x0100, us(0x8001))
            + element(0x0120, us(1))
            + element(0x0900, us(0xA900))
            + element(0x0901, b"\x10\x00\x10")
        )
        self.assertRaises(DIMSEDecodeError, decodeCommand, data)


class DescribeTests(SynchronousTestCase):
    """
    L{Message.describe}: a command set in words, for the debug log.
    """

    def test_request(self):
        """
        A request: its name, then its elements under their PS3.7 names in
        tag order, UIDs through the namer, and whether a data set follows.
        """
        request = CStoreRQ(
            messageID=7,
            affectedSOPClassUID="1.2.840.10008.5.1.4.1.1.2",
            affectedSOPInstanceUID="1.2.3.4",
            priority=PRIORITY_HIGH,
            moveOriginatorApplicationEntityTitle="MOVESCU",
            moveOriginatorMessageID=3,
        )
        self.assertEqual(
            request.describe(lambda uid: "<%s>" % (uid,)),
            "C-STORE-RQ\n"
            "  Affected SOP Class UID: <1.2.840.10008.5.1.4.1.1.2>\n"
            "  Message ID: 7\n"
            "  Priority: high\n"
            "  Affected SOP Instance UID: <1.2.3.4>\n"
            "  Move Originator Application Entity Title: MOVESCU\n"
            "  Move Originator Message ID: 3\n"
            "  Data Set: present",
        )

    def test_response(self):
        """
        A response names its status with its meaning, and the elements of
        an error.
        """
        response = CStoreRSP(
            messageIDBeingRespondedTo=7,
            status=0xA900,
            offendingElement=[0x00080016, 0x00080018],
            errorComment="SOP Class UID does not match",
        )
        self.assertEqual(
            response.describe(),
            "C-STORE-RSP\n"
            "  Message ID Being Responded To: 7\n"
            "  Status: 0xA900 Failure: data set or identifier does not match SOP class\n"
            "  Offending Element: (0008,0016), (0008,0018)\n"
            "  Error Comment: SOP Class UID does not match\n"
            "  Data Set: none",
        )
        moving = CMoveRSP(messageIDBeingRespondedTo=1, status=0xFF00, numberOfRemainingSuboperations=2, numberOfCompletedSuboperations=1)
        self.assertIn("\n  Number of Remaining Sub-operations: 2\n  Number of Completed Sub-operations: 1\n", moving.describe())

    def test_names(self):
        """
        Every message is named by its Command Field, DIMSE-N ones too;
        an unknown one by its value.
        """
        self.assertEqual([MESSAGE_CLASSES[field]().name for field in sorted(MESSAGE_CLASSES)][:3], ["C-STORE-RQ", "C-GET-RQ", "C-FIND-RQ"])
        self.assertEqual(CCancelRQ(messageIDBeingRespondedTo=1).describe(), "C-CANCEL-RQ\n  Message ID Being Responded To: 1\n  Data Set: none")
        self.assertEqual(UnrecognizedMessage(commandField=0x0130, messageID=4).describe(), "N-ACTION-RQ\n  Message ID: 4\n  Data Set: none")
        self.assertEqual(UnrecognizedMessage(commandField=0x0777).name, "command field 0x0777")
        self.assertIn("\n  Priority: 0x0005\n", CFindRQ(priority=5).describe())
