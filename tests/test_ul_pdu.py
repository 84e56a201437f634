"""
Tests for L{dicomd.ul.pdu}: the PDUs of PS3.8 section 9.3 and the user
information sub-items of PS3.8 Annex D and PS3.7 Annex D.3.3.

The byte vectors below are written by hand, field by field, from the
standard's tables (each field named in a comment), not produced by our
encoder: they are decoded and compared to the objects they describe, and
our encoder's output is compared to them.  A few more vectors come from
pynetdicom's independent codec.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dicomd.ul import pdu
from dicomd.ul.pdu import (
    ABORT_REASON_INVALID_PDU_PARAMETER_VALUE,
    ABORT_REASON_UNEXPECTED_PDU_PARAMETER,
    ABORT_REASON_UNRECOGNIZED_PDU,
    ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER,
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
    encodePDataTF,
)

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
STORAGE_SERVICE_CLASS = "1.2.840.10008.4.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _hex(text: str) -> bytes:
    """
    Bytes from hexadecimal digits, ignoring spaces.
    """
    return bytes.fromhex(text)


def decodeWhole(data: bytes):
    """
    Decode one whole PDU as the provider does: check the header's length,
    then hand the body to L{decodePDU} as a memoryview.
    """
    length = int.from_bytes(data[2:6], "big")
    if length != len(data) - 6:
        raise AssertionError("PDU-length %d for a body of %d bytes" % (length, len(data) - 6))
    return decodePDU(data[0], memoryview(data)[6:])


# -- hand-built vectors -------------------------------------------------------

#: A-ASSOCIATE-RQ (PS3.8 Table 9-11) with every item and sub-item a
#: requestor sends: two presentation contexts and a user information item
#: holding each sub-item of PS3.8 D.1 and PS3.7 D.3.3.
ASSOCIATE_RQ_BYTES = (
    _hex("01")  # PDU-type: A-ASSOCIATE-RQ
    + _hex("00")  # reserved
    + _hex("000001BD")  # PDU-length: 445
    + _hex("0001")  # protocol-version: bit 0, version 1
    + _hex("0000")  # reserved
    + b"ANY-SCP         "  # called-AE-title, padded with spaces to 16 bytes
    + b"ECHOSCU         "  # calling-AE-title, padded with spaces to 16 bytes
    + bytes(32)  # reserved
    # Application Context Item (Table 9-12)
    + _hex("10")  # item-type
    + _hex("00")  # reserved
    + _hex("0015")  # item-length: 21
    + b"1.2.840.10008.3.1.1.1"  # application-context-name
    # Presentation Context Item, request (Table 9-13)
    + _hex("20")  # item-type
    + _hex("00")  # reserved
    + _hex("002E")  # item-length: 4 + 21 + 21 = 46
    + _hex("01")  # presentation-context-ID
    + _hex("00")  # reserved
    + _hex("00")  # reserved
    + _hex("00")  # reserved
    + _hex("30")  # Abstract Syntax Sub-Item (Table 9-14): item-type
    + _hex("00")  # reserved
    + _hex("0011")  # item-length: 17
    + b"1.2.840.10008.1.1"  # abstract-syntax-name: Verification
    + _hex("40")  # Transfer Syntax Sub-Item (Table 9-15): item-type
    + _hex("00")  # reserved
    + _hex("0011")  # item-length: 17
    + b"1.2.840.10008.1.2"  # transfer-syntax-name: implicit VR little endian
    # Presentation Context Item, request, with two transfer syntaxes
    + _hex("20")  # item-type
    + _hex("00")  # reserved
    + _hex("004D")  # item-length: 4 + 29 + 23 + 21 = 77
    + _hex("03")  # presentation-context-ID
    + _hex("000000")  # reserved x 3
    + _hex("30 00 0019")  # abstract syntax sub-item, item-length 25
    + b"1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    + _hex("40 00 0013")  # transfer syntax sub-item, item-length 19
    + b"1.2.840.10008.1.2.1"  # explicit VR little endian
    + _hex("40 00 0011")  # transfer syntax sub-item, item-length 17
    + b"1.2.840.10008.1.2"  # implicit VR little endian
    # User Information Item (Table 9-16)
    + _hex("50")  # item-type
    + _hex("00")  # reserved
    + _hex("00D9")  # item-length: 8 + 11 + 8 + 33 + 15 + 34 + 87 + 21 = 217
    # Maximum Length Sub-Item (Table D.1-1)
    + _hex("51")  # item-type
    + _hex("00")  # reserved
    + _hex("0004")  # item-length: 4
    + _hex("00004000")  # maximum-length-received: 16384
    # Implementation Class UID Sub-Item (PS3.7 Table D.3-1)
    + _hex("52 00 0007")  # item-type, reserved, item-length 7
    + b"1.2.3.4"  # implementation-class-uid
    # Asynchronous Operations Window Sub-Item (PS3.7 Table D.3-7)
    + _hex("53 00 0004")  # item-type, reserved, item-length 4
    + _hex("0005")  # maximum-number-operations-invoked: 5
    + _hex("0001")  # maximum-number-operations-performed: 1
    # SCP/SCU Role Selection Sub-Item (PS3.7 Table D.3-9)
    + _hex("54 00 001D")  # item-type, reserved, item-length 2 + 25 + 2 = 29
    + _hex("0019")  # UID-length: 25
    + b"1.2.840.10008.5.1.4.1.1.2"  # SOP-class-uid
    + _hex("01")  # SCU-role: support
    + _hex("01")  # SCP-role: support
    # Implementation Version Name Sub-Item (PS3.7 Table D.3-3)
    + _hex("55 00 000B")  # item-type, reserved, item-length 11
    + b"DICOMD_TEST"  # implementation-version-name
    # SOP Class Extended Negotiation Sub-Item (PS3.7 Table D.3-11)
    + _hex("56 00 001E")  # item-type, reserved, item-length 2 + 25 + 3 = 30
    + _hex("0019")  # SOP-class-uid-length: 25
    + b"1.2.840.10008.5.1.4.1.1.2"  # SOP-class-uid
    + _hex("010001")  # service-class-application-information
    # SOP Class Common Extended Negotiation Sub-Item (PS3.7 Table D.3-12)
    + _hex("57")  # item-type
    + _hex("00")  # sub-item-version: 0
    + _hex("0053")  # item-length: 2 + 29 + 2 + 17 + 2 + 31 = 83
    + _hex("001D")  # SOP-class-uid-length: 29
    + b"1.2.840.10008.5.1.4.1.1.88.22"  # SOP-class-uid: Enhanced SR
    + _hex("0011")  # service-class-uid-length: 17
    + b"1.2.840.10008.4.2"  # service-class-uid: Storage Service Class
    + _hex("001F")  # related-general-sop-class-identification-length: 31
    + _hex("001D")  # related-general-sop-class-uid-length: 29
    + b"1.2.840.10008.5.1.4.1.1.88.11"  # related-general-sop-class-uid
    # User Identity Sub-Item, request (PS3.7 Table D.3-14)
    + _hex("58 00 0011")  # item-type, reserved, item-length 17
    + _hex("02")  # user-identity-type: username and passcode
    + _hex("01")  # positive-response-requested: yes
    + _hex("0005")  # primary-field-length: 5
    + b"alice"  # primary-field: username
    + _hex("0006")  # secondary-field-length: 6
    + b"secret"  # secondary-field: passcode
)

ASSOCIATE_RQ = AAssociateRQ(
    calledAETitle="ANY-SCP",
    callingAETitle="ECHOSCU",
    presentationContexts=[
        PresentationContextRQ(1, VERIFICATION, [IMPLICIT_LE]),
        PresentationContextRQ(3, CT_IMAGE_STORAGE, [EXPLICIT_LE, IMPLICIT_LE]),
    ],
    userInformation=UserInformation(
        maximumLength=16384,
        implementationClassUID="1.2.3.4",
        implementationVersionName="DICOMD_TEST",
        asynchronousOperationsWindow=(5, 1),
        roleSelections=[SCPSCURoleSelection(CT_IMAGE_STORAGE, True, True)],
        extendedNegotiations=[SOPClassExtendedNegotiation(CT_IMAGE_STORAGE, b"\x01\x00\x01")],
        commonExtendedNegotiations=[
            SOPClassCommonExtendedNegotiation(ENHANCED_SR, STORAGE_SERVICE_CLASS, [BASIC_TEXT_SR])
        ],
        userIdentityRQ=UserIdentityRQ(2, True, b"alice", b"secret"),
    ),
)


def _rejectedContextAC(contextID: int, result: int) -> bytes:
    """
    A Presentation Context Item (AC) refusing a context: its transfer
    syntax sub-item is present but empty, as it is not significant.
    """
    return (
        _hex("21")  # item-type
        + _hex("00")  # reserved
        + _hex("0008")  # item-length: 4 + 4
        + bytes((contextID,))  # presentation-context-ID
        + _hex("00")  # reserved
        + bytes((result,))  # result/reason
        + _hex("00")  # reserved
        + _hex("40 00 0000")  # transfer syntax sub-item, empty
    )


#: A-ASSOCIATE-AC (PS3.8 Table 9-17) answering with each result of Table
#: 9-18 and a user information item with every sub-item an acceptor sends.
ASSOCIATE_AC_BYTES = (
    _hex("02")  # PDU-type: A-ASSOCIATE-AC
    + _hex("00")  # reserved
    + _hex("00000104")  # PDU-length: 68 + 25 + 29 + 4 * 12 + 90 = 260
    + _hex("0001")  # protocol-version
    + _hex("0000")  # reserved
    + b"ANY-SCP         "  # reserved, sent back as received (called AE)
    + b"ECHOSCU         "  # reserved, sent back as received (calling AE)
    + bytes(32)  # reserved
    + _hex("10 00 0015")  # Application Context Item, item-length 21
    + b"1.2.840.10008.3.1.1.1"
    # Presentation Context Item, acceptance (Table 9-18)
    + _hex("21")  # item-type
    + _hex("00")  # reserved
    + _hex("0019")  # item-length: 4 + 21 = 25
    + _hex("01")  # presentation-context-ID
    + _hex("00")  # reserved
    + _hex("00")  # result/reason: acceptance
    + _hex("00")  # reserved
    + _hex("40 00 0011")  # transfer syntax sub-item, item-length 17
    + b"1.2.840.10008.1.2"
    + _rejectedContextAC(3, 1)  # user-rejection
    + _rejectedContextAC(5, 2)  # no-reason (provider rejection)
    + _rejectedContextAC(7, 3)  # abstract-syntax-not-supported
    + _rejectedContextAC(9, 4)  # transfer-syntaxes-not-supported
    # User Information Item
    + _hex("50 00 0056")  # item-type, reserved, item-length 8 + 11 + 8 + 33 + 15 + 11 = 86
    + _hex("51 00 0004 00008000")  # maximum length: 32768
    + _hex("52 00 0007")  # implementation class UID, item-length 7
    + b"1.2.3.9"
    + _hex("53 00 0004 0001 0001")  # asynchronous operations window: 1, 1
    + _hex("54 00 001D")  # SCP/SCU role selection, item-length 29
    + _hex("0019")  # UID-length: 25
    + b"1.2.840.10008.5.1.4.1.1.2"  # SOP-class-uid
    + _hex("01")  # SCU-role: accepted
    + _hex("00")  # SCP-role: refused
    + _hex("55 00 000B")  # implementation version name, item-length 11
    + b"DICOMD_TEST"
    # User Identity Sub-Item, acceptance (PS3.7 Table D.3-15)
    + _hex("59")  # item-type
    + _hex("00")  # reserved
    + _hex("0007")  # item-length: 2 + 5
    + _hex("0005")  # server-response-length: 5
    + b"token"  # server-response
)

ASSOCIATE_AC = AAssociateAC(
    calledAETitle="ANY-SCP",
    callingAETitle="ECHOSCU",
    presentationContexts=[
        PresentationContextAC(1, pdu.PC_ACCEPTANCE, IMPLICIT_LE),
        PresentationContextAC(3, pdu.PC_USER_REJECTION),
        PresentationContextAC(5, pdu.PC_NO_REASON),
        PresentationContextAC(7, pdu.PC_ABSTRACT_SYNTAX_NOT_SUPPORTED),
        PresentationContextAC(9, pdu.PC_TRANSFER_SYNTAXES_NOT_SUPPORTED),
    ],
    userInformation=UserInformation(
        maximumLength=32768,
        implementationClassUID="1.2.3.9",
        implementationVersionName="DICOMD_TEST",
        asynchronousOperationsWindow=(1, 1),
        roleSelections=[SCPSCURoleSelection(CT_IMAGE_STORAGE, True, False)],
        userIdentityAC=UserIdentityAC(b"token"),
    ),
)

#: A-ASSOCIATE-RJ (PS3.8 Table 9-21).
ASSOCIATE_RJ_BYTES = _hex(
    "03"  # PDU-type: A-ASSOCIATE-RJ
    "00"  # reserved
    "00000004"  # PDU-length: 4
    "00"  # reserved
    "01"  # result: rejected-permanent
    "01"  # source: DICOM UL service-user
    "07"  # reason/diag.: called-AE-title-not-recognized
)

#: P-DATA-TF (PS3.8 Table 9-22) with two PDV items (Table 9-23, Annex E.2).
P_DATA_TF_BYTES = (
    _hex("04")  # PDU-type: P-DATA-TF
    + _hex("00")  # reserved
    + _hex("00000013")  # PDU-length: 10 + 9 = 19
    + _hex("00000006")  # PDV item-length: 2 + 4
    + _hex("01")  # presentation-context-ID
    + _hex("03")  # message control header: command, last fragment
    + b"ABCD"  # presentation-data-value
    + _hex("00000005")  # PDV item-length: 2 + 3
    + _hex("01")  # presentation-context-ID
    + _hex("02")  # message control header: data set, last fragment
    + b"xyz"  # presentation-data-value
)

#: A-RELEASE-RQ (PS3.8 Table 9-24).
RELEASE_RQ_BYTES = _hex(
    "05"  # PDU-type: A-RELEASE-RQ
    "00"  # reserved
    "00000004"  # PDU-length: 4
    "00000000"  # reserved
)

#: A-RELEASE-RP (PS3.8 Table 9-25).
RELEASE_RP_BYTES = _hex(
    "06"  # PDU-type: A-RELEASE-RP
    "00"  # reserved
    "00000004"  # PDU-length: 4
    "00000000"  # reserved
)

#: A-ABORT (PS3.8 Table 9-26).
ABORT_BYTES = _hex(
    "07"  # PDU-type: A-ABORT
    "00"  # reserved
    "00000004"  # PDU-length: 4
    "00"  # reserved
    "00"  # reserved
    "02"  # source: DICOM UL service-provider
    "06"  # reason/diag.: invalid-PDU-parameter value
)


def _associateRQBody(*items: bytes) -> bytes:
    """
    The body of an A-ASSOCIATE-RQ from its fixed fields and C{items}.
    """
    return _hex("0001 0000") + b"ANY-SCP         " + b"ECHOSCU         " + bytes(32) + b"".join(items)


APPLICATION_CONTEXT_ITEM = _hex("10 00 0015") + b"1.2.840.10008.3.1.1.1"
VERIFICATION_CONTEXT_ITEM = (
    _hex("20 00 002E 01 000000") + _hex("30 00 0011") + b"1.2.840.10008.1.1" + _hex("40 00 0011") + b"1.2.840.10008.1.2"
)
MAXIMUM_LENGTH_ITEM = _hex("51 00 0004 00004000")


def _userInformation(*subItems: bytes) -> bytes:
    """
    A User Information Item holding C{subItems}.
    """
    value = b"".join(subItems)
    return _hex("50 00") + len(value).to_bytes(2, "big") + value


class HandBuiltVectorTests(SynchronousTestCase):
    """
    Byte vectors written from the standard's field layout decode to the
    objects they describe, and our encoder writes exactly those bytes.
    """

    def test_associateRQDecodes(self):
        """
        The hand-built A-ASSOCIATE-RQ decodes to every item and sub-item.
        """
        self.assertEqual(decodeWhole(ASSOCIATE_RQ_BYTES), ASSOCIATE_RQ)

    def test_associateRQEncodes(self):
        """
        Encoding the A-ASSOCIATE-RQ object gives the hand-built bytes.
        """
        self.assertEqual(ASSOCIATE_RQ.encode(), ASSOCIATE_RQ_BYTES)

    def test_associateACDecodes(self):
        """
        The hand-built A-ASSOCIATE-AC decodes with each result of Table 9-18.
        """
        self.assertEqual(decodeWhole(ASSOCIATE_AC_BYTES), ASSOCIATE_AC)

    def test_associateACEncodes(self):
        """
        Encoding the A-ASSOCIATE-AC object gives the hand-built bytes, an
        empty transfer syntax sub-item included in each refused context.
        """
        self.assertEqual(ASSOCIATE_AC.encode(), ASSOCIATE_AC_BYTES)

    def test_associateRJ(self):
        """
        The hand-built A-ASSOCIATE-RJ decodes and encodes.
        """
        reject = AAssociateRJ(pdu.REJECT_RESULT_PERMANENT, pdu.REJECT_SOURCE_SERVICE_USER, 7)
        self.assertEqual(decodeWhole(ASSOCIATE_RJ_BYTES), reject)
        self.assertEqual(reject.encode(), ASSOCIATE_RJ_BYTES)

    def test_pDataTF(self):
        """
        The hand-built P-DATA-TF decodes to its two PDVs and encodes back.
        """
        expected = PDataTF([PresentationDataValue(1, 0x03, b"ABCD"), PresentationDataValue(1, 0x02, b"xyz")])
        decoded = decodeWhole(P_DATA_TF_BYTES)
        self.assertEqual(decoded, expected)
        self.assertEqual(
            [(v.isCommand, v.isLast) for v in decoded.values],
            [(True, True), (False, True)],
        )
        self.assertEqual(expected.encode(), P_DATA_TF_BYTES)

    def test_releaseRQ(self):
        """
        The hand-built A-RELEASE-RQ decodes and encodes.
        """
        self.assertEqual(decodeWhole(RELEASE_RQ_BYTES), AReleaseRQ())
        self.assertEqual(AReleaseRQ().encode(), RELEASE_RQ_BYTES)

    def test_releaseRP(self):
        """
        The hand-built A-RELEASE-RP decodes and encodes.
        """
        self.assertEqual(decodeWhole(RELEASE_RP_BYTES), AReleaseRP())
        self.assertEqual(AReleaseRP().encode(), RELEASE_RP_BYTES)

    def test_abort(self):
        """
        The hand-built A-ABORT decodes and encodes.
        """
        abort = AAbort(pdu.ABORT_SOURCE_SERVICE_PROVIDER, ABORT_REASON_INVALID_PDU_PARAMETER_VALUE)
        self.assertEqual(decodeWhole(ABORT_BYTES), abort)
        self.assertEqual(abort.encode(), ABORT_BYTES)

    def test_reservedFieldsNotTested(self):
        """
        Non-zero reserved fields are accepted on reception (PS3.8 9.3.1).
        """
        raw = bytearray(ABORT_BYTES)
        raw[1] = 0xFF  # reserved after PDU-type
        raw[6] = 0xFF  # reserved
        raw[7] = 0xFF  # reserved
        self.assertEqual(decodeWhole(bytes(raw)), AAbort(2, 6))

    def test_associateRQReservedFieldsNotTested(self):
        """
        The reserved fields of an A-ASSOCIATE-RQ and of its presentation
        context item are not tested.
        """
        body = bytearray(
            _associateRQBody(APPLICATION_CONTEXT_ITEM, VERIFICATION_CONTEXT_ITEM, _userInformation(MAXIMUM_LENGTH_ITEM))
        )
        body[2:4] = b"\xff\xff"  # reserved after protocol-version
        body[36:68] = b"\xee" * 32  # 32 reserved bytes
        contextStart = 68 + len(APPLICATION_CONTEXT_ITEM)
        body[contextStart + 5 : contextStart + 8] = b"\x01\x02\x03"  # reserved x 3
        request = decodePDU(pdu.A_ASSOCIATE_RQ, memoryview(bytes(body)))
        self.assertEqual(request.presentationContexts, [PresentationContextRQ(1, VERIFICATION, [IMPLICIT_LE])])
        self.assertEqual(request.userInformation.maximumLength, 16384)

    def test_aeTitlesPaddedWithSpaces(self):
        """
        AE titles go out padded with spaces to 16 bytes and come back
        without the padding; NUL padding from sloppy peers is removed too.
        """
        request = AAssociateRQ("SCP", "SCU", [], UserInformation(maximumLength=0))
        encoded = request.encode()
        self.assertEqual(encoded[10:26], b"SCP" + b" " * 13)
        self.assertEqual(encoded[26:42], b"SCU" + b" " * 13)
        nulPadded = encoded[:10] + b"SCP" + bytes(13) + encoded[26:]
        self.assertEqual(decodeWhole(nulPadded).calledAETitle, "SCP")

    def test_uidsWithTrailingNUL(self):
        """
        A UID padded with a NUL to even length, as some peers send it,
        decodes without the padding.
        """
        item = _hex("20 00 0030 01 000000") + _hex("30 00 0012") + b"1.2.840.10008.1.1\x00"
        item += _hex("40 00 0012") + b"1.2.840.10008.1.2\x00"
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, item, _userInformation())
        request = decodePDU(pdu.A_ASSOCIATE_RQ, memoryview(body))
        self.assertEqual(request.presentationContexts, [PresentationContextRQ(1, VERIFICATION, [IMPLICIT_LE])])

    def test_encodePDataTFHeader(self):
        """
        L{encodePDataTF} writes the PDU header and the PDV item header of a
        single-PDV P-DATA-TF.
        """
        self.assertEqual(
            encodePDataTF(5, 0x02, 100),
            _hex(
                "04"  # PDU-type
                "00"  # reserved
                "0000006A"  # PDU-length: 100 + 6
                "00000066"  # PDV item-length: 100 + 2
                "05"  # presentation-context-ID
                "02"  # message control header
            ),
        )

    def test_pDataTFValuesAreViews(self):
        """
        Decoded PDV data are memoryviews over the received body, not copies.
        """
        received = memoryview(P_DATA_TF_BYTES)[6:]
        decoded = decodePDU(pdu.P_DATA_TF, received)
        for value in decoded.values:
            self.assertIsInstance(value.data, memoryview)
            self.assertIs(value.data.obj, P_DATA_TF_BYTES)


class RoundTripTests(SynchronousTestCase):
    """
    Every PDU type and every item and sub-item survive encode and decode.
    """

    def assertRoundTrip(self, value):
        """
        Encode C{value}, check its header, decode it and compare.
        """
        encoded = value.encode()
        self.assertEqual(encoded[0], value.pduType)
        self.assertEqual(encoded[1], 0)
        decoded = decodeWhole(encoded)
        self.assertEqual(decoded, value)
        self.assertEqual(decoded.encode(), encoded)
        return decoded

    def _request(self, **userInformation) -> AAssociateRQ:
        """
        An A-ASSOCIATE-RQ with one context and the given user information.
        """
        return AAssociateRQ(
            "CALLED",
            "CALLING",
            [PresentationContextRQ(1, VERIFICATION, [IMPLICIT_LE])],
            UserInformation(maximumLength=16384, **userInformation),
        )

    def test_associateRQ(self):
        """
        An A-ASSOCIATE-RQ with all sub-items round-trips.
        """
        self.assertRoundTrip(ASSOCIATE_RQ)

    def test_associateAC(self):
        """
        An A-ASSOCIATE-AC with all results and sub-items round-trips.
        """
        self.assertRoundTrip(ASSOCIATE_AC)

    def test_associateRJEveryResultSourceReason(self):
        """
        Each result, source and reason of PS3.8 Table 9-21 round-trips.
        """
        combinations = [
            (result, 1, reason) for result in (1, 2) for reason in (1, 2, 3, 7)
        ] + [(result, 2, reason) for result in (1, 2) for reason in (1, 2)] + [
            (result, 3, reason) for result in (1, 2) for reason in (1, 2)
        ]
        for result, source, reason in combinations:
            self.assertRoundTrip(AAssociateRJ(result, source, reason))

    def test_pDataTF(self):
        """
        P-DATA-TF PDUs with one or many PDVs, each control header value and
        an empty fragment round-trip.
        """
        for control in (0x00, 0x01, 0x02, 0x03):
            self.assertRoundTrip(PDataTF([PresentationDataValue(255, control, b"\x00\x01" * 100)]))
        self.assertRoundTrip(
            PDataTF(
                [
                    PresentationDataValue(1, 0x01, b""),
                    PresentationDataValue(3, 0x00, b"z"),
                    PresentationDataValue(5, 0x02, b"q" * 7),
                ]
            )
        )

    def test_releaseAndAbort(self):
        """
        A-RELEASE-RQ, A-RELEASE-RP and A-ABORT with each source round-trip.
        """
        self.assertRoundTrip(AReleaseRQ())
        self.assertRoundTrip(AReleaseRP())
        self.assertRoundTrip(AAbort(0, 0))
        for reason in (0, 1, 2, 4, 5, 6):
            self.assertRoundTrip(AAbort(2, reason))

    def test_applicationContext(self):
        """
        The application context name round-trips, DICOM's or another.
        """
        for name in (pdu.DICOM_APPLICATION_CONTEXT, "1.2.3.4.5.6"):
            request = self._request()
            request.applicationContextName = name
            self.assertEqual(self.assertRoundTrip(request).applicationContextName, name)

    def test_protocolVersion(self):
        """
        The protocol version field round-trips as a 16-bit value.
        """
        request = self._request()
        request.protocolVersion = 0x0003
        self.assertEqual(self.assertRoundTrip(request).protocolVersion, 3)

    def test_presentationContextRQ(self):
        """
        Presentation context items (RQ) with one and many transfer syntaxes,
        and the largest context ID, round-trip.
        """
        request = self._request()
        request.presentationContexts = [
            PresentationContextRQ(1, VERIFICATION, [IMPLICIT_LE]),
            PresentationContextRQ(255, CT_IMAGE_STORAGE, [EXPLICIT_LE, IMPLICIT_LE, "1.2.840.10008.1.2.4.50"]),
        ]
        self.assertRoundTrip(request)

    def test_presentationContextACEachResult(self):
        """
        A presentation context item (AC) round-trips with each result.
        """
        for result in range(5):
            transferSyntax = IMPLICIT_LE if result == 0 else ""
            accept = AAssociateAC("A", "B", [PresentationContextAC(1, result, transferSyntax)])
            decoded = self.assertRoundTrip(accept)
            self.assertEqual(decoded.presentationContexts[0].accepted, result == 0)

    def test_maximumLength(self):
        """
        The maximum length sub-item round-trips, including 0 (no limit) and
        the largest 32-bit value.
        """
        for value in (0, 1, 16384, 0xFFFFFFFF):
            request = self._request()
            request.userInformation.maximumLength = value
            self.assertEqual(self.assertRoundTrip(request).userInformation.maximumLength, value)

    def test_userInformationEmpty(self):
        """
        A user information item without sub-items round-trips with every
        optional field absent.
        """
        request = self._request()
        request.userInformation = UserInformation()
        decoded = self.assertRoundTrip(request)
        self.assertEqual(decoded.userInformation, UserInformation())

    def test_implementationClassUIDAndVersionName(self):
        """
        Implementation class UID and implementation version name round-trip.
        """
        decoded = self.assertRoundTrip(
            self._request(implementationClassUID="1.2.826.0.1.3680043.9.1", implementationVersionName="V1")
        )
        self.assertEqual(decoded.userInformation.implementationClassUID, "1.2.826.0.1.3680043.9.1")
        self.assertEqual(decoded.userInformation.implementationVersionName, "V1")

    def test_asynchronousOperationsWindow(self):
        """
        The asynchronous operations window round-trips, 0 meaning unlimited.
        """
        for window in ((1, 1), (0, 0), (65535, 2)):
            decoded = self.assertRoundTrip(self._request(asynchronousOperationsWindow=window))
            self.assertEqual(decoded.userInformation.asynchronousOperationsWindow, window)

    def test_roleSelections(self):
        """
        SCP/SCU role selection sub-items round-trip with each combination.
        """
        roles = [
            SCPSCURoleSelection(CT_IMAGE_STORAGE, scu, scp) for scu in (False, True) for scp in (False, True)
        ]
        decoded = self.assertRoundTrip(self._request(roleSelections=roles))
        self.assertEqual(decoded.userInformation.roleSelections, roles)

    def test_extendedNegotiation(self):
        """
        SOP class extended negotiation round-trips, with empty and non-empty
        service class application information.
        """
        items = [
            SOPClassExtendedNegotiation("1.2.840.10008.5.1.4.1.2.2.1", b"\x01\x01\x00\x01"),
            SOPClassExtendedNegotiation(CT_IMAGE_STORAGE, b""),
        ]
        decoded = self.assertRoundTrip(self._request(extendedNegotiations=items))
        self.assertEqual(decoded.userInformation.extendedNegotiations, items)

    def test_commonExtendedNegotiation(self):
        """
        SOP class common extended negotiation round-trips with none, one and
        several related general SOP classes.
        """
        items = [
            SOPClassCommonExtendedNegotiation(ENHANCED_SR, STORAGE_SERVICE_CLASS, []),
            SOPClassCommonExtendedNegotiation(ENHANCED_SR, STORAGE_SERVICE_CLASS, [BASIC_TEXT_SR]),
            SOPClassCommonExtendedNegotiation(
                ENHANCED_SR, STORAGE_SERVICE_CLASS, [BASIC_TEXT_SR, "1.2.840.10008.5.1.4.1.1.88.33"]
            ),
        ]
        decoded = self.assertRoundTrip(self._request(commonExtendedNegotiations=items))
        self.assertEqual(decoded.userInformation.commonExtendedNegotiations, items)

    def test_commonExtendedNegotiationWithoutRelatedField(self):
        """
        A common extended negotiation sub-item that ends after the service
        class UID (no related-general-sop-class field) decodes with no
        related classes.
        """
        value = _hex("001D") + ENHANCED_SR.encode() + _hex("0011") + STORAGE_SERVICE_CLASS.encode()
        self.assertEqual(
            SOPClassCommonExtendedNegotiation.decode(memoryview(value)),
            SOPClassCommonExtendedNegotiation(ENHANCED_SR, STORAGE_SERVICE_CLASS, []),
        )

    def test_userIdentityRQEachType(self):
        """
        The user identity request round-trips for each identity type, with
        and without a secondary field and positive response.
        """
        for identityType, primary, secondary in (
            (1, b"alice", b""),
            (2, b"alice", b"secret"),
            (3, b"\x60\x82kerberos-ticket", b""),
            (4, b"<saml:Assertion/>", b""),
            (5, b"eyJhbGciOiJIUzI1NiJ9.e30.sig", b""),
        ):
            for positive in (False, True):
                identity = UserIdentityRQ(identityType, positive, primary, secondary)
                decoded = self.assertRoundTrip(self._request(userIdentityRQ=identity))
                self.assertEqual(decoded.userInformation.userIdentityRQ, identity)

    def test_userIdentityRQWithoutSecondaryLength(self):
        """
        A user identity request that stops after the primary field, as some
        peers send type 1, decodes with an empty secondary field.
        """
        value = _hex("01 00 0003") + b"bob"
        self.assertEqual(UserIdentityRQ.decode(memoryview(value)), UserIdentityRQ(1, False, b"bob", b""))

    def test_userIdentityAC(self):
        """
        The user identity acceptance round-trips, empty or with a response.
        """
        for response in (b"", b"kerberos-server-ticket"):
            accept = AAssociateAC(
                "A",
                "B",
                [PresentationContextAC(1, 0, IMPLICIT_LE)],
                UserInformation(userIdentityAC=UserIdentityAC(response)),
            )
            self.assertEqual(self.assertRoundTrip(accept).userInformation.userIdentityAC, UserIdentityAC(response))


_uids = st.lists(st.integers(0, 99999), min_size=2, max_size=8).map(lambda parts: ".".join(map(str, parts)))
_smallBytes = st.binary(max_size=40)
_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=16)
_userInformations = st.builds(
    UserInformation,
    maximumLength=st.none() | st.integers(0, 0xFFFFFFFF),
    implementationClassUID=st.none() | _uids,
    implementationVersionName=st.none() | _names,
    asynchronousOperationsWindow=st.none() | st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    roleSelections=st.lists(st.builds(SCPSCURoleSelection, _uids, st.booleans(), st.booleans()), max_size=3),
    extendedNegotiations=st.lists(st.builds(SOPClassExtendedNegotiation, _uids, _smallBytes), max_size=3),
    commonExtendedNegotiations=st.lists(
        st.builds(SOPClassCommonExtendedNegotiation, _uids, _uids, st.lists(_uids, max_size=3)), max_size=2
    ),
    userIdentityRQ=st.none() | st.builds(UserIdentityRQ, st.integers(1, 5), st.booleans(), _smallBytes, _smallBytes),
)


class PropertyTests(SynchronousTestCase):
    """
    Generated values of every item and sub-item survive encode and decode.
    """

    @settings(database=None, deadline=None, max_examples=200)
    @given(
        calledAETitle=_names,
        contexts=st.lists(st.tuples(_uids, st.lists(_uids, min_size=1, max_size=4)), max_size=5),
        userInformation=_userInformations,
    )
    def test_associateRQ(self, calledAETitle, contexts, userInformation):
        """
        Any A-ASSOCIATE-RQ round-trips.
        """
        request = AAssociateRQ(
            calledAETitle,
            "CALLING",
            [PresentationContextRQ(2 * i + 1, abstract, syntaxes) for i, (abstract, syntaxes) in enumerate(contexts)],
            userInformation,
        )
        self.assertEqual(decodeWhole(request.encode()), request)

    @settings(database=None, deadline=None, max_examples=200)
    @given(st.lists(st.tuples(st.integers(1, 255), st.integers(0, 3), st.binary(max_size=64)), min_size=1, max_size=6))
    def test_pDataTF(self, values):
        """
        Any P-DATA-TF round-trips.
        """
        pdataTF = PDataTF([PresentationDataValue(*value) for value in values])
        self.assertEqual(decodeWhole(pdataTF.encode()), pdataTF)


class LeniencyTests(SynchronousTestCase):
    """
    What the standard tells a receiver to tolerate.
    """

    def test_unknownUserInformationSubItemsSkipped(self):
        """
        User information sub-items of unknown types are skipped, not fatal,
        and the known ones around them are read.
        """
        info = _userInformation(
            _hex("5F 00 0003 010203"),  # unknown sub-item type
            MAXIMUM_LENGTH_ITEM,
            _hex("7A 00 0000"),  # unknown, empty
            _hex("52 00 0007") + b"1.2.3.4",
            _hex("FF 00 0001 00"),  # unknown
        )
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, VERIFICATION_CONTEXT_ITEM, info)
        request = decodePDU(pdu.A_ASSOCIATE_RQ, memoryview(body))
        self.assertEqual(
            request.userInformation, UserInformation(maximumLength=16384, implementationClassUID="1.2.3.4")
        )

    def test_rejectedContextWithoutTransferSyntax(self):
        """
        A refused presentation context (AC) without its transfer syntax
        sub-item decodes: the value would not be significant anyway.
        """
        item = _hex("03 00 03 00")  # ID 3, reserved, abstract-syntax-not-supported, reserved
        self.assertEqual(PresentationContextAC.decode(memoryview(item)), PresentationContextAC(3, 3, ""))

    def test_acceptedContextIgnoresUnknownSubItems(self):
        """
        A presentation context item (AC) carrying other sub-items besides
        its transfer syntax is read for the transfer syntax.
        """
        item = _hex("01 00 00 00") + _hex("60 00 0001 00") + _hex("40 00 0011") + b"1.2.840.10008.1.2"
        self.assertEqual(PresentationContextAC.decode(memoryview(item)), PresentationContextAC(1, 0, IMPLICIT_LE))


class MalformedTests(SynchronousTestCase):
    """
    Malformed PDUs raise L{PDUDecodeError} carrying the A-ABORT reason of
    PS3.8 Table 9-26 to send back.
    """

    def assertDecodeError(self, pduType: int, body: bytes, reason: int = ABORT_REASON_INVALID_PDU_PARAMETER_VALUE):
        """
        Decoding C{body} as a PDU of C{pduType} fails with C{reason}.
        """
        error = self.assertRaises(PDUDecodeError, decodePDU, pduType, memoryview(body))
        self.assertEqual(error.reason, reason)
        return error

    def test_unknownPDUType(self):
        """
        PDU types outside 01H-07H are unrecognized PDUs (reason 1).
        """
        for pduType in (0x00, 0x08, 0x10, 0x47, 0xFF):
            self.assertDecodeError(pduType, bytes(4), ABORT_REASON_UNRECOGNIZED_PDU)

    def test_wrongFixedLengths(self):
        """
        A-ASSOCIATE-RJ, A-RELEASE-RQ, A-RELEASE-RP and A-ABORT bodies must
        be exactly 4 bytes.
        """
        for pduType in (pdu.A_ASSOCIATE_RJ, pdu.A_RELEASE_RQ, pdu.A_RELEASE_RP, pdu.A_ABORT):
            for length in (0, 3, 5, 8):
                self.assertDecodeError(pduType, bytes(length))

    def test_maximumLengthSubItemWrongLength(self):
        """
        A maximum length sub-item whose item-length is not 4 is invalid.
        """
        for value in (_hex("51 00 0002 4000"), _hex("51 00 0006 000040000000"), _hex("51 00 0000")):
            body = _associateRQBody(APPLICATION_CONTEXT_ITEM, VERIFICATION_CONTEXT_ITEM, _userInformation(value))
            self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body)

    def test_asynchronousWindowWrongLength(self):
        """
        An asynchronous operations window sub-item whose item-length is not
        4 is invalid.
        """
        for value in (_hex("53 00 0002 0001"), _hex("53 00 0005 0001000100")):
            body = _associateRQBody(APPLICATION_CONTEXT_ITEM, VERIFICATION_CONTEXT_ITEM, _userInformation(value))
            self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body)

    def test_associateRQTruncatedFixedFields(self):
        """
        An A-ASSOCIATE-RQ or -AC body shorter than its 68 fixed bytes is
        invalid.
        """
        for pduType in (pdu.A_ASSOCIATE_RQ, pdu.A_ASSOCIATE_AC):
            for length in (0, 1, 2, 10, 36, 67):
                self.assertDecodeError(pduType, ASSOCIATE_RQ_BYTES[6 : 6 + length])

    def test_associateRQTruncatedAnywhere(self):
        """
        Cutting the A-ASSOCIATE-RQ body at any byte makes it invalid: inside
        an item, that item runs past the PDU; between items, the user
        information item is missing.
        """
        body = ASSOCIATE_RQ_BYTES[6:]
        for cut in range(len(body)):
            self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body[:cut])

    def test_associateACTruncatedAnywhere(self):
        """
        Cutting the A-ASSOCIATE-AC body at any byte makes it invalid.
        """
        body = ASSOCIATE_AC_BYTES[6:]
        for cut in range(len(body)):
            self.assertDecodeError(pdu.A_ASSOCIATE_AC, body[:cut])

    def test_itemLengthPastPDU(self):
        """
        An item whose item-length runs past the end of the PDU is invalid.
        """
        item = _hex("10 00 0040") + b"1.2.840.10008.3.1.1.1"  # says 64, holds 21
        self.assertDecodeError(pdu.A_ASSOCIATE_RQ, _associateRQBody(item))

    def test_subItemLengthPastContext(self):
        """
        An abstract syntax sub-item longer than its presentation context
        item is invalid, even with bytes after the context.
        """
        context = _hex("20 00 0015 01 000000") + _hex("30 00 0030") + b"1.2.840.10008.1.1"
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, context, _userInformation(MAXIMUM_LENGTH_ITEM))
        self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body)

    def test_userInformationSubItemPastItem(self):
        """
        A user information sub-item running past its item is invalid.
        """
        info = _hex("50 00 0008") + _hex("51 00 0010 00004000")
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, VERIFICATION_CONTEXT_ITEM, info, MAXIMUM_LENGTH_ITEM * 3)
        self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body)

    def test_roleSelectionUIDLengthPastItem(self):
        """
        A role selection whose UID-length runs past the sub-item is invalid.
        """
        info = _userInformation(_hex("54 00 0006 0040") + b"1.2" + _hex("01"))
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, VERIFICATION_CONTEXT_ITEM, info)
        self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body)

    def test_roleSelectionMissingRoles(self):
        """
        A role selection sub-item that ends before its SCU and SCP role
        fields is invalid.
        """
        info = _userInformation(_hex("54 00 0005 0003") + b"1.2")
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, VERIFICATION_CONTEXT_ITEM, info)
        self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body)

    def test_userIdentityFieldPastItem(self):
        """
        A user identity sub-item whose primary-field-length runs past the
        sub-item is invalid.
        """
        info = _userInformation(_hex("58 00 0007 01 00 0010") + b"bob")
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, VERIFICATION_CONTEXT_ITEM, info)
        self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body)

    def test_commonExtendedRelatedPastItem(self):
        """
        A related general SOP class UID running past its field is invalid.
        """
        value = _hex("0003") + b"1.2" + _hex("0003") + b"1.3" + _hex("0004") + _hex("0009") + b"1.4"
        info = _userInformation(_hex("57 00") + len(value).to_bytes(2, "big") + value)
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, VERIFICATION_CONTEXT_ITEM, info)
        self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body)

    def test_missingAbstractSyntax(self):
        """
        A presentation context (RQ) without an abstract syntax is invalid.
        """
        context = _hex("20 00 0019 01 000000") + _hex("40 00 0011") + b"1.2.840.10008.1.2"
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, context, _userInformation(MAXIMUM_LENGTH_ITEM))
        self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body)

    def test_missingTransferSyntax(self):
        """
        A presentation context (RQ) without a transfer syntax is invalid.
        """
        context = _hex("20 00 0019 01 000000") + _hex("30 00 0011") + b"1.2.840.10008.1.1"
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, context, _userInformation(MAXIMUM_LENGTH_ITEM))
        self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body)

    def test_twoAbstractSyntaxes(self):
        """
        A presentation context (RQ) with two abstract syntaxes is invalid.
        """
        context = (
            _hex("20 00 002E 01 000000")
            + _hex("30 00 0011")
            + b"1.2.840.10008.1.1"
            + _hex("30 00 0011")
            + b"1.2.840.10008.1.1"
        )
        error = self.assertRaises(PDUDecodeError, PresentationContextRQ.decode, memoryview(context[4:]))
        self.assertEqual(error.reason, ABORT_REASON_INVALID_PDU_PARAMETER_VALUE)

    def test_foreignSubItemInContext(self):
        """
        A sub-item other than abstract or transfer syntax inside a
        presentation context (RQ) is an unrecognized parameter (reason 4).
        """
        context = (
            _hex("20 00 002E 01 000000")
            + _hex("30 00 0011")
            + b"1.2.840.10008.1.1"
            + _hex("51 00 0004 00004000")
            + _hex("40 00 0011")
            + b"1.2.840.10008.1.2"
        )
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, context, _userInformation(MAXIMUM_LENGTH_ITEM))
        self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body, ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER)

    def test_unexpectedItemInAssociateRQ(self):
        """
        An A-ASSOCIATE-AC's presentation context item in an A-ASSOCIATE-RQ,
        or an item of an unknown type there, is an unexpected parameter
        (reason 5).
        """
        for item in (_hex("21 00 0008 01 00 00 00 40 00 0000"), _hex("60 00 0002 0000")):
            body = _associateRQBody(APPLICATION_CONTEXT_ITEM, item, VERIFICATION_CONTEXT_ITEM, _userInformation())
            self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body, ABORT_REASON_UNEXPECTED_PDU_PARAMETER)

    def test_requestContextInAssociateAC(self):
        """
        A request's presentation context item in an A-ASSOCIATE-AC is an
        unexpected parameter (reason 5).
        """
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, VERIFICATION_CONTEXT_ITEM, _userInformation())
        self.assertDecodeError(pdu.A_ASSOCIATE_AC, body, ABORT_REASON_UNEXPECTED_PDU_PARAMETER)

    def test_missingApplicationContext(self):
        """
        An A-ASSOCIATE-RQ without an application context item is invalid.
        """
        body = _associateRQBody(VERIFICATION_CONTEXT_ITEM, _userInformation(MAXIMUM_LENGTH_ITEM))
        self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body)

    def test_missingUserInformation(self):
        """
        An A-ASSOCIATE-RQ without a user information item is invalid.
        """
        body = _associateRQBody(APPLICATION_CONTEXT_ITEM, VERIFICATION_CONTEXT_ITEM)
        self.assertDecodeError(pdu.A_ASSOCIATE_RQ, body)

    def test_acceptedContextWithoutTransferSyntax(self):
        """
        An accepted presentation context (AC) naming no transfer syntax is
        invalid: the association could not use it.
        """
        for item in (_hex("21 00 0004 01 00 00 00"), _hex("21 00 0008 01 00 00 00 40 00 0000")):
            body = _associateRQBody(APPLICATION_CONTEXT_ITEM, item, _userInformation())
            self.assertDecodeError(pdu.A_ASSOCIATE_AC, body)

    def test_contextItemTooShort(self):
        """
        A presentation context item shorter than its 4 fixed bytes is
        invalid.
        """
        for item in (_hex("20 00 0002 0100"), _hex("21 00 0003 010000")):
            pduType = pdu.A_ASSOCIATE_RQ if item[0] == 0x20 else pdu.A_ASSOCIATE_AC
            body = _associateRQBody(APPLICATION_CONTEXT_ITEM, item, _userInformation())
            self.assertDecodeError(pduType, body)

    def test_pDataTFEmpty(self):
        """
        A P-DATA-TF without any PDV item is invalid.
        """
        self.assertDecodeError(pdu.P_DATA_TF, b"")

    def test_pDataTFTruncatedPDVHeader(self):
        """
        A P-DATA-TF that ends inside a PDV item header is invalid.
        """
        for tail in range(1, 6):
            self.assertDecodeError(pdu.P_DATA_TF, P_DATA_TF_BYTES[6:16] + P_DATA_TF_BYTES[16 : 16 + tail])

    def test_pDataTFItemLengthTooSmall(self):
        """
        A PDV item-length below 2 leaves no room for the context ID and
        control header and is invalid.
        """
        for length in (0, 1):
            self.assertDecodeError(pdu.P_DATA_TF, length.to_bytes(4, "big") + _hex("0103"))

    def test_pDataTFItemPastPDU(self):
        """
        A PDV whose item-length runs past the PDU is invalid.
        """
        self.assertDecodeError(pdu.P_DATA_TF, _hex("00000007 01 03") + b"ABCD")
        self.assertDecodeError(pdu.P_DATA_TF, _hex("FFFFFFFF 01 03") + b"ABCD")


class EncoderLimitTests(SynchronousTestCase):
    """
    The encoder refuses values its fields cannot hold.
    """

    def test_aeTitleTooLong(self):
        """
        An AE title longer than 16 characters cannot be encoded.
        """
        request = AAssociateRQ("A" * 17, "B", [], UserInformation())
        self.assertRaises(ValueError, request.encode)

    def test_itemTooLong(self):
        """
        An item whose value does not fit its 16-bit length cannot be
        encoded.
        """
        negotiation = SOPClassExtendedNegotiation(CT_IMAGE_STORAGE, b"x" * 0xFFFF)
        self.assertRaises(ValueError, negotiation.encode)


class PynetdicomInteroperabilityTests(SynchronousTestCase):
    """
    pynetdicom's independent codec reads what we write, and we read what
    it writes.
    """

    def test_pynetdicomDecodesOurRQ(self):
        """
        pynetdicom decodes our A-ASSOCIATE-RQ to the same values.
        """
        from pynetdicom.pdu import A_ASSOCIATE_RQ

        theirs = A_ASSOCIATE_RQ()
        theirs.decode(ASSOCIATE_RQ.encode())
        self.assertEqual(theirs.called_ae_title, "ANY-SCP")
        self.assertEqual(theirs.calling_ae_title, "ECHOSCU")
        self.assertEqual(theirs.application_context_name, pdu.DICOM_APPLICATION_CONTEXT)
        contexts = [
            (item.context_id, item.abstract_syntax, list(item.transfer_syntax))
            for item in theirs.presentation_context
        ]
        self.assertEqual(
            contexts, [(1, VERIFICATION, [IMPLICIT_LE]), (3, CT_IMAGE_STORAGE, [EXPLICIT_LE, IMPLICIT_LE])]
        )
        byType = {type(item).__name__: item for item in theirs.user_information.user_data}
        self.assertEqual(byType["MaximumLengthSubItem"].maximum_length_received, 16384)
        self.assertEqual(byType["ImplementationClassUIDSubItem"].implementation_class_uid, "1.2.3.4")
        self.assertEqual(byType["UserIdentitySubItemRQ"].primary_field, b"alice")
        self.assertEqual(byType["UserIdentitySubItemRQ"].secondary_field, b"secret")

    def test_pynetdicomDecodesOurAC(self):
        """
        pynetdicom decodes our A-ASSOCIATE-AC, refused contexts included.
        """
        from pynetdicom.pdu import A_ASSOCIATE_AC

        theirs = A_ASSOCIATE_AC()
        theirs.decode(ASSOCIATE_AC.encode())
        results = [(item.context_id, item.result) for item in theirs.presentation_context]
        self.assertEqual(results, [(1, 0), (3, 1), (5, 2), (7, 3), (9, 4)])
        self.assertEqual(theirs.presentation_context[0].transfer_syntax, IMPLICIT_LE)

    def test_weDecodePynetdicomRQ(self):
        """
        We decode an A-ASSOCIATE-RQ encoded by pynetdicom.
        """
        from pynetdicom.pdu import A_ASSOCIATE_RQ
        from pynetdicom.pdu_primitives import (
            A_ASSOCIATE,
            ImplementationClassUIDNotification,
            ImplementationVersionNameNotification,
            MaximumLengthNotification,
            SCP_SCU_RoleSelectionNegotiation,
        )
        from pynetdicom.presentation import PresentationContext

        primitive = A_ASSOCIATE()
        primitive.application_context_name = pdu.DICOM_APPLICATION_CONTEXT
        primitive.calling_ae_title = "PYNETDICOM"
        primitive.called_ae_title = "DICOMD"
        context = PresentationContext()
        context.context_id = 1
        context.abstract_syntax = CT_IMAGE_STORAGE
        context.transfer_syntax = [EXPLICIT_LE, IMPLICIT_LE]
        primitive.presentation_context_definition_list = [context]
        maximumLength = MaximumLengthNotification()
        maximumLength.maximum_length_received = 28672
        classUID = ImplementationClassUIDNotification()
        classUID.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.2"
        versionName = ImplementationVersionNameNotification()
        versionName.implementation_version_name = "PYNETDICOM_304"
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = CT_IMAGE_STORAGE
        role.scu_role = False
        role.scp_role = True
        primitive.user_information = [maximumLength, classUID, versionName, role]
        theirs = A_ASSOCIATE_RQ()
        theirs.from_primitive(primitive)

        ours = decodeWhole(theirs.encode())
        self.assertEqual(
            ours,
            AAssociateRQ(
                "DICOMD",
                "PYNETDICOM",
                [PresentationContextRQ(1, CT_IMAGE_STORAGE, [EXPLICIT_LE, IMPLICIT_LE])],
                UserInformation(
                    maximumLength=28672,
                    implementationClassUID="1.2.826.0.1.3680043.9.3811.2",
                    implementationVersionName="PYNETDICOM_304",
                    roleSelections=[SCPSCURoleSelection(CT_IMAGE_STORAGE, False, True)],
                ),
            ),
        )


def _named(uid: str) -> str:
    """
    A UID namer that marks what it named.
    """
    return "<%s>" % (uid,)


class DescribeTests(SynchronousTestCase):
    """
    C{describe()}: each PDU's parameters in words, for the debug log.
    """

    REQUEST = AAssociateRQ(
        "ANY-SCP",
        "STORESCU",
        [
            PresentationContextRQ(1, "1.2.840.10008.1.1", ["1.2.840.10008.1.2"]),
            PresentationContextRQ(3, "1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]),
        ],
        UserInformation(
            maximumLength=16384,
            implementationClassUID="1.2.276.0.7230010.3.0.3.6.7",
            implementationVersionName="OFFIS_DCMTK_367",
            asynchronousOperationsWindow=(1, 1),
            roleSelections=[SCPSCURoleSelection("1.2.840.10008.5.1.4.1.1.2", True, False)],
            extendedNegotiations=[SOPClassExtendedNegotiation("1.2.840.10008.5.1.4.1.1.2", b"\x01\x00")],
            commonExtendedNegotiations=[SOPClassCommonExtendedNegotiation("1.2.3", "1.2.840.10008.4.2", ["1.2.4"])],
            userIdentityRQ=UserIdentityRQ(2, True, b"radiographer", b"s3cret"),
        ),
    )

    def test_associateRequest(self):
        """
        An A-ASSOCIATE-RQ: AE titles, application context, every proposed
        context with its abstract and transfer syntaxes (named by the
        given namer), and every user information sub-item.
        """
        self.assertEqual(
            self.REQUEST.describe(_named),
            "A-ASSOCIATE-RQ\n"
            "  Calling AE title: STORESCU\n"
            "  Called AE title: ANY-SCP\n"
            "  Protocol version: 1\n"
            "  Application context name: <1.2.840.10008.3.1.1.1>\n"
            "  Presentation context 1\n"
            "    Abstract syntax: <1.2.840.10008.1.1>\n"
            "    Transfer syntax: <1.2.840.10008.1.2>\n"
            "  Presentation context 3\n"
            "    Abstract syntax: <1.2.840.10008.5.1.4.1.1.2>\n"
            "    Transfer syntax: <1.2.840.10008.1.2.1>\n"
            "    Transfer syntax: <1.2.840.10008.1.2>\n"
            "  User information:\n"
            "    Maximum length: 16384\n"
            "    Implementation class UID: 1.2.276.0.7230010.3.0.3.6.7\n"
            "    Implementation version name: OFFIS_DCMTK_367\n"
            "    Asynchronous operations window: 1 invoked, 1 performed\n"
            "    SCP/SCU role selection for <1.2.840.10008.5.1.4.1.1.2>: SCU role supported, SCP role not supported\n"
            "    SOP class extended negotiation for <1.2.840.10008.5.1.4.1.1.2>: 2 bytes of service class application information\n"
            "    SOP class common extended negotiation for <1.2.3>: service class <1.2.840.10008.4.2>, related general SOP classes <1.2.4>\n"
            "    User identity: username and passcode, user name 'radiographer' (passcode not shown), positive response requested",
        )

    def test_credentialsNeverShown(self):
        """
        Of a user identity only the user name is shown: never a passcode,
        nor a Kerberos ticket, SAML assertion or JSON web token, of which
        the length is given.
        """
        self.assertNotIn("s3cret", self.REQUEST.describe())
        self.assertEqual(UserIdentityRQ(1, False, b"bob").describe(), "User identity: username, user name 'bob'")
        for identityType, kind in [(3, "Kerberos service ticket"), (4, "SAML assertion"), (5, "JSON web token"), (9, "type 9")]:
            description = UserIdentityRQ(identityType, False, b"TOKEN-BYTES").describe()
            self.assertEqual(description, "User identity: %s of 11 bytes (not shown)" % (kind,))
        self.assertEqual(UserIdentityAC(b"ticket").describe(), "User identity server response: 6 bytes (not shown)")

    def test_associateAccept(self):
        """
        An A-ASSOCIATE-AC: each context's result, its transfer syntax when
        accepted, and, given the request it answers, its abstract syntax.
        """
        accept = AAssociateAC(
            "ANY-SCP",
            "STORESCU",
            [PresentationContextAC(1, pdu.PC_ACCEPTANCE, "1.2.840.10008.1.2"), PresentationContextAC(3, pdu.PC_TRANSFER_SYNTAXES_NOT_SUPPORTED)],
            UserInformation(maximumLength=0, implementationClassUID="1.2.3"),
        )
        self.assertEqual(
            accept.describe(_named, self.REQUEST),
            "A-ASSOCIATE-AC\n"
            "  Calling AE title: STORESCU\n"
            "  Called AE title: ANY-SCP\n"
            "  Protocol version: 1\n"
            "  Application context name: <1.2.840.10008.3.1.1.1>\n"
            "  Presentation context 1: acceptance\n"
            "    Abstract syntax: <1.2.840.10008.1.1>\n"
            "    Transfer syntax: <1.2.840.10008.1.2>\n"
            "  Presentation context 3: transfer syntaxes not supported (provider rejection)\n"
            "    Abstract syntax: <1.2.840.10008.5.1.4.1.1.2>\n"
            "  User information:\n"
            "    Maximum length: 0 (no limit)\n"
            "    Implementation class UID: 1.2.3",
        )
        self.assertIn("\n  Presentation context 3: transfer syntaxes not supported (provider rejection)\n  User information:", accept.describe())

    def test_emptyUserInformation(self):
        """
        A user information item without sub-items says so.
        """
        self.assertTrue(AAssociateRQ("A", "B", [], UserInformation()).describe().endswith("\n  User information: empty"))

    def test_rejectAbortRelease(self):
        """
        A-ASSOCIATE-RJ gives its result, source and reason; A-ABORT its
        source and, from the service provider, its reason; the release
        PDUs their names.
        """
        self.assertEqual(
            AAssociateRJ(1, 1, 7).describe(),
            "A-ASSOCIATE-RJ: permanent, source: service user, reason: called AE title not recognized",
        )
        self.assertEqual(
            AAssociateRJ(2, 3, 2).describe(),
            "A-ASSOCIATE-RJ: transient, source: service provider (presentation), reason: local limit exceeded",
        )
        self.assertEqual(AAssociateRJ(3, 4, 9).explanation, "result 3, source: source 4, reason: reason 9")
        self.assertEqual(AAbort(0, 0).describe(), "A-ABORT from the service user")
        self.assertEqual(AAbort(2, 6).describe(), "A-ABORT from the service provider (invalid PDU parameter value)")
        self.assertEqual(AAbort(1, 9).describe(), "A-ABORT from the source 1 (reason 9)")
        self.assertEqual((AReleaseRQ().describe(), AReleaseRP().describe()), ("A-RELEASE-RQ", "A-RELEASE-RP"))

    def test_pData(self):
        """
        A P-DATA-TF: what each PDV carries and how much, not the data.
        """
        described = PDataTF([PresentationDataValue(1, 0x03, b"\x02\x00"), PresentationDataValue(41, 0x00, b"DATA" * 4)]).describe()
        self.assertEqual(
            described,
            "P-DATA-TF: command fragment (last), context 1, 2 bytes; data set fragment, context 41, 16 bytes",
        )
