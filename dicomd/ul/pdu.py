"""
Protocol data units of the DICOM Upper Layer (PS3.8 section 9.3).

Each PDU type and each item of PS3.8 9.3.2 to 9.3.7 and Annex D is a small
data class with an C{encode()} method; L{decodePDU} turns the body of one
framed PDU back into those classes.  Decoding is strict about lengths (a
field that runs past its container is an invalid PDU, which the state
machine turns into event 19) and lenient where the standard asks for
leniency: reserved fields are not tested and unknown user-information
sub-items are skipped.

P-DATA-TF values are handed on as C{memoryview}s over the received PDU, so a
fragment of a large data set is never copied here.

Each PDU and item also has a C{describe()} method: its parameters in words,
one per line, for the debug log (L{dicomd.ul.trace}).  They never show
data set bytes or credentials.
"""

import struct
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple, Union

# PDU types (PS3.8 9.3.1)
A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

# Item types (PS3.8 9.3.2 and Annex D)
ITEM_APPLICATION_CONTEXT = 0x10
ITEM_PRESENTATION_CONTEXT_RQ = 0x20
ITEM_PRESENTATION_CONTEXT_AC = 0x21
ITEM_ABSTRACT_SYNTAX = 0x30
ITEM_TRANSFER_SYNTAX = 0x40
ITEM_USER_INFORMATION = 0x50
ITEM_MAXIMUM_LENGTH = 0x51
ITEM_IMPLEMENTATION_CLASS_UID = 0x52
ITEM_ASYNCHRONOUS_OPERATIONS_WINDOW = 0x53
ITEM_SCP_SCU_ROLE_SELECTION = 0x54
ITEM_IMPLEMENTATION_VERSION_NAME = 0x55
ITEM_SOP_CLASS_EXTENDED_NEGOTIATION = 0x56
ITEM_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION = 0x57
ITEM_USER_IDENTITY_RQ = 0x58
ITEM_USER_IDENTITY_AC = 0x59

#: The only application context name of PS3.7 Annex A.2.1.
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

# A-ABORT source (PS3.8 Table 9-26)
ABORT_SOURCE_SERVICE_USER = 0
ABORT_SOURCE_SERVICE_PROVIDER = 2

# A-ABORT reason when the source is the service provider (PS3.8 Table 9-26)
ABORT_REASON_NOT_SPECIFIED = 0
ABORT_REASON_UNRECOGNIZED_PDU = 1
ABORT_REASON_UNEXPECTED_PDU = 2
ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER = 4
ABORT_REASON_UNEXPECTED_PDU_PARAMETER = 5
ABORT_REASON_INVALID_PDU_PARAMETER_VALUE = 6

# A-ASSOCIATE-RJ result, source and reason (PS3.8 Table 9-21)
REJECT_RESULT_PERMANENT = 1
REJECT_RESULT_TRANSIENT = 2
REJECT_SOURCE_SERVICE_USER = 1
REJECT_SOURCE_SERVICE_PROVIDER_ACSE = 2
REJECT_SOURCE_SERVICE_PROVIDER_PRESENTATION = 3
# source 1, service user
REJECT_REASON_NO_REASON = 1
REJECT_REASON_APPLICATION_CONTEXT_NOT_SUPPORTED = 2
REJECT_REASON_CALLING_AE_NOT_RECOGNIZED = 3
REJECT_REASON_CALLED_AE_NOT_RECOGNIZED = 7
# source 2, service provider (ACSE related)
REJECT_REASON_PROTOCOL_VERSION_NOT_SUPPORTED = 2
# source 3, service provider (presentation related)
REJECT_REASON_TEMPORARY_CONGESTION = 1
REJECT_REASON_LOCAL_LIMIT_EXCEEDED = 2

# Presentation context results (PS3.8 Table 9-18)
PC_ACCEPTANCE = 0
PC_USER_REJECTION = 1
PC_NO_REASON = 2
PC_ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
PC_TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

# -- names, for logs ----------------------------------------------------------

#: PDU types by value (PS3.8 Table 9-11).
PDU_TYPE_NAMES = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ",
    A_RELEASE_RP: "A-RELEASE-RP",
    A_ABORT: "A-ABORT",
}

#: A-ABORT sources (PS3.8 Table 9-26).
ABORT_SOURCE_NAMES = {ABORT_SOURCE_SERVICE_USER: "service user", ABORT_SOURCE_SERVICE_PROVIDER: "service provider"}

#: A-ABORT reasons, significant when the source is the service provider
#: (PS3.8 Table 9-26).
ABORT_REASON_NAMES = {
    ABORT_REASON_NOT_SPECIFIED: "reason not specified",
    ABORT_REASON_UNRECOGNIZED_PDU: "unrecognized PDU",
    ABORT_REASON_UNEXPECTED_PDU: "unexpected PDU",
    ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER: "unrecognized PDU parameter",
    ABORT_REASON_UNEXPECTED_PDU_PARAMETER: "unexpected PDU parameter",
    ABORT_REASON_INVALID_PDU_PARAMETER_VALUE: "invalid PDU parameter value",
}

_REJECT_RESULT_NAMES = {REJECT_RESULT_PERMANENT: "permanent", REJECT_RESULT_TRANSIENT: "transient"}
_REJECT_SOURCE_NAMES = {
    REJECT_SOURCE_SERVICE_USER: "service user",
    REJECT_SOURCE_SERVICE_PROVIDER_ACSE: "service provider (ACSE)",
    REJECT_SOURCE_SERVICE_PROVIDER_PRESENTATION: "service provider (presentation)",
}
# By (source, reason): a reason's meaning depends on its source (PS3.8
# Table 9-21).
_REJECT_REASON_NAMES = {
    (REJECT_SOURCE_SERVICE_USER, REJECT_REASON_NO_REASON): "no reason given",
    (REJECT_SOURCE_SERVICE_USER, REJECT_REASON_APPLICATION_CONTEXT_NOT_SUPPORTED): "application context name not supported",
    (REJECT_SOURCE_SERVICE_USER, REJECT_REASON_CALLING_AE_NOT_RECOGNIZED): "calling AE title not recognized",
    (REJECT_SOURCE_SERVICE_USER, REJECT_REASON_CALLED_AE_NOT_RECOGNIZED): "called AE title not recognized",
    (REJECT_SOURCE_SERVICE_PROVIDER_ACSE, REJECT_REASON_NO_REASON): "no reason given",
    (REJECT_SOURCE_SERVICE_PROVIDER_ACSE, REJECT_REASON_PROTOCOL_VERSION_NOT_SUPPORTED): "protocol version not supported",
    (REJECT_SOURCE_SERVICE_PROVIDER_PRESENTATION, REJECT_REASON_TEMPORARY_CONGESTION): "temporary congestion",
    (REJECT_SOURCE_SERVICE_PROVIDER_PRESENTATION, REJECT_REASON_LOCAL_LIMIT_EXCEEDED): "local limit exceeded",
}

_CONTEXT_RESULT_NAMES = {
    PC_ACCEPTANCE: "acceptance",
    PC_USER_REJECTION: "user rejection",
    PC_NO_REASON: "no reason (provider rejection)",
    PC_ABSTRACT_SYNTAX_NOT_SUPPORTED: "abstract syntax not supported (provider rejection)",
    PC_TRANSFER_SYNTAXES_NOT_SUPPORTED: "transfer syntaxes not supported (provider rejection)",
}

#: The same results as DCMTK's tools title them in their list of
#: presentation contexts (storescp's C{+v}).
CONTEXT_RESULT_TITLES = {
    PC_ACCEPTANCE: "Accepted",
    PC_USER_REJECTION: "User Rejection",
    PC_NO_REASON: "Provider Rejection",
    PC_ABSTRACT_SYNTAX_NOT_SUPPORTED: "Abstract Syntax Not Supported",
    PC_TRANSFER_SYNTAXES_NOT_SUPPORTED: "Transfer Syntaxes Not Supported",
}

#: User identity types (PS3.7 Table D.3-14).
_USER_IDENTITY_TYPE_NAMES = {
    1: "username",
    2: "username and passcode",
    3: "Kerberos service ticket",
    4: "SAML assertion",
    5: "JSON web token",
}

#: The user identity types whose primary field is a user name, which a log
#: may show; the others are credentials, as every secondary field is.
_USERNAME_IDENTITY_TYPES = (1, 2)

_SUPPORT = {False: "not supported", True: "supported"}

#: How C{describe()} methods write a UID: C{str} writes it as it is; a
#: caller with a UID dictionary adds the name (C{"1.2.840.10008.1.2.1
#: (Explicit VR Little Endian)"}).
UIDNamer = Callable[[str], str]


def _indented(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def describePDV(contextID: int, messageControlHeader: int, length: int) -> str:
    """
    One presentation data value in words, without its data: what it
    carries (PS3.8 E.2), on which presentation context, how many bytes.
    For example C{"data set fragment (last), context 41, 1024 bytes"}.
    """
    return "%s fragment%s, context %d, %d bytes" % (
        "command" if messageControlHeader & 0x01 else "data set",
        " (last)" if messageControlHeader & 0x02 else "",
        contextID,
        length,
    )


class PDUDecodeError(ValueError):
    """
    The bytes of a PDU do not follow PS3.8 9.3.

    @ivar reason: the A-ABORT reason (PS3.8 Table 9-26) to send back.
    """

    def __init__(self, message: str, reason: int = ABORT_REASON_INVALID_PDU_PARAMETER_VALUE):
        super().__init__(message)
        self.reason = reason


_HEADER = struct.Struct(">BBL")
_ITEM_HEADER = struct.Struct(">BBH")
_UINT16 = struct.Struct(">H")
_UINT32 = struct.Struct(">L")


def _item(itemType: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("item 0x%02X is %d bytes, more than fits its length field" % (itemType, len(value)))
    return _ITEM_HEADER.pack(itemType, 0, len(value)) + value


def _pdu(pduType: int, body: bytes) -> bytes:
    return _HEADER.pack(pduType, 0, len(body)) + body


# UIDs, AE titles and names are ASCII in the standard, but a peer may send
# any byte: they are read as Latin-1, which maps every byte to one
# character, and written the same way, so whatever was decoded (an AE title
# or a role selection an acceptor echoes) encodes back to the same bytes.


def _uid(value: str) -> bytes:
    return value.encode("latin-1")


def _decodeUID(raw) -> str:
    # Some implementations pad UIDs in PDUs with a NUL or a space.
    return bytes(raw).rstrip(b"\x00 ").decode("latin-1")


def _aeTitle(value: str) -> bytes:
    raw = value.encode("latin-1")
    if len(raw) > 16:
        raise ValueError("AE title %r is longer than 16 characters" % (value,))
    return raw.ljust(16, b" ")


def _decodeAETitle(raw) -> str:
    return bytes(raw).decode("latin-1").strip(" \x00")


def _lengthPrefixed(value: bytes) -> bytes:
    return _UINT16.pack(len(value)) + value


class _Reader:
    """
    Reads fields from a buffer, raising L{PDUDecodeError} on any overrun.
    """

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf, pos: int = 0, end: Optional[int] = None):
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int):
        if n < 0 or self.pos + n > self.end:
            raise PDUDecodeError("field of %d bytes runs past its container" % (n,))
        start = self.pos
        self.pos += n
        return self.buf[start:self.pos]

    def uint8(self) -> int:
        if self.pos >= self.end:
            raise PDUDecodeError("PDU truncated")
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def uint16(self) -> int:
        return _UINT16.unpack(self.take(2))[0]

    def uint32(self) -> int:
        return _UINT32.unpack(self.take(4))[0]

    def lengthPrefixed(self):
        return self.take(self.uint16())

    def items(self):
        """
        Yield C{(itemType, value)} for each item up to the end of the buffer.
        """
        while self.pos < self.end:
            itemType, _, length = _ITEM_HEADER.unpack(self.take(4))
            yield itemType, self.take(length)


# -- user information sub-items (PS3.8 D.1, PS3.7 D.3.3) ---------------------


@dataclass(slots=True)
class SCPSCURoleSelection:
    """
    SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4).

    @ivar sopClassUID: the SOP class the roles apply to.
    @ivar scuRole: C{True} when the requestor may act as SCU.
    @ivar scpRole: C{True} when the requestor may act as SCP.
    """

    sopClassUID: str
    scuRole: bool
    scpRole: bool

    def encode(self) -> bytes:
        return _item(
            ITEM_SCP_SCU_ROLE_SELECTION,
            _lengthPrefixed(_uid(self.sopClassUID)) + bytes((int(self.scuRole), int(self.scpRole))),
        )

    @classmethod
    def decode(cls, value) -> "SCPSCURoleSelection":
        r = _Reader(value)
        uid = _decodeUID(r.lengthPrefixed())
        return cls(uid, bool(r.uint8()), bool(r.uint8()))

    def describe(self, uidName: UIDNamer = str) -> str:
        return "SCP/SCU role selection for %s: SCU role %s, SCP role %s" % (
            uidName(self.sopClassUID),
            _SUPPORT[self.scuRole],
            _SUPPORT[self.scpRole],
        )


@dataclass(slots=True)
class SOPClassExtendedNegotiation:
    """
    SOP Class Extended Negotiation sub-item (PS3.7 D.3.3.5).
    """

    sopClassUID: str
    serviceClassApplicationInformation: bytes

    def encode(self) -> bytes:
        return _item(
            ITEM_SOP_CLASS_EXTENDED_NEGOTIATION,
            _lengthPrefixed(_uid(self.sopClassUID)) + bytes(self.serviceClassApplicationInformation),
        )

    @classmethod
    def decode(cls, value) -> "SOPClassExtendedNegotiation":
        r = _Reader(value)
        uid = _decodeUID(r.lengthPrefixed())
        return cls(uid, bytes(r.take(r.remaining())))

    def describe(self, uidName: UIDNamer = str) -> str:
        return "SOP class extended negotiation for %s: %d bytes of service class application information" % (
            uidName(self.sopClassUID),
            len(self.serviceClassApplicationInformation),
        )


@dataclass(slots=True)
class SOPClassCommonExtendedNegotiation:
    """
    SOP Class Common Extended Negotiation sub-item (PS3.7 D.3.3.6).
    """

    sopClassUID: str
    serviceClassUID: str
    relatedGeneralSOPClassUIDs: List[str] = field(default_factory=list)

    def encode(self) -> bytes:
        related = b"".join(_lengthPrefixed(_uid(uid)) for uid in self.relatedGeneralSOPClassUIDs)
        return _item(
            ITEM_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION,
            _lengthPrefixed(_uid(self.sopClassUID))
            + _lengthPrefixed(_uid(self.serviceClassUID))
            + _lengthPrefixed(related),
        )

    @classmethod
    def decode(cls, value) -> "SOPClassCommonExtendedNegotiation":
        r = _Reader(value)
        sopClass = _decodeUID(r.lengthPrefixed())
        serviceClass = _decodeUID(r.lengthPrefixed())
        related = []
        if r.remaining():
            sub = _Reader(r.lengthPrefixed())
            while sub.remaining():
                related.append(_decodeUID(sub.lengthPrefixed()))
        return cls(sopClass, serviceClass, related)

    def describe(self, uidName: UIDNamer = str) -> str:
        text = "SOP class common extended negotiation for %s: service class %s" % (
            uidName(self.sopClassUID),
            uidName(self.serviceClassUID),
        )
        if self.relatedGeneralSOPClassUIDs:
            text += ", related general SOP classes %s" % (", ".join(uidName(uid) for uid in self.relatedGeneralSOPClassUIDs),)
        return text


@dataclass(slots=True)
class UserIdentityRQ:
    """
    User Identity Negotiation sub-item, request (PS3.7 D.3.3.7.1).

    @ivar identityType: 1 username, 2 username and passcode, 3 Kerberos,
        4 SAML, 5 JWT.
    """

    identityType: int
    positiveResponseRequested: bool
    primaryField: bytes
    secondaryField: bytes = b""

    def encode(self) -> bytes:
        return _item(
            ITEM_USER_IDENTITY_RQ,
            bytes((self.identityType, int(self.positiveResponseRequested)))
            + _lengthPrefixed(bytes(self.primaryField))
            + _lengthPrefixed(bytes(self.secondaryField)),
        )

    @classmethod
    def decode(cls, value) -> "UserIdentityRQ":
        r = _Reader(value)
        identityType = r.uint8()
        positive = bool(r.uint8())
        primary = bytes(r.lengthPrefixed())
        secondary = bytes(r.lengthPrefixed()) if r.remaining() else b""
        return cls(identityType, positive, primary, secondary)

    def describe(self, uidName: UIDNamer = str) -> str:
        """
        The identity type, and the user name when there is one; never a
        passcode, ticket, assertion or token.
        """
        kind = _USER_IDENTITY_TYPE_NAMES.get(self.identityType, "type %d" % self.identityType)
        if self.identityType in _USERNAME_IDENTITY_TYPES:
            text = "User identity: %s, user name %r" % (kind, bytes(self.primaryField).decode("latin-1"))
            if self.secondaryField:
                text += " (passcode not shown)"
        else:
            text = "User identity: %s of %d bytes (not shown)" % (kind, len(self.primaryField))
        if self.positiveResponseRequested:
            text += ", positive response requested"
        return text


@dataclass(slots=True)
class UserIdentityAC:
    """
    User Identity Negotiation sub-item, acceptance (PS3.7 D.3.3.7.2).
    """

    serverResponse: bytes = b""

    def encode(self) -> bytes:
        return _item(ITEM_USER_IDENTITY_AC, _lengthPrefixed(bytes(self.serverResponse)))

    @classmethod
    def decode(cls, value) -> "UserIdentityAC":
        return cls(bytes(_Reader(value).lengthPrefixed()))

    def describe(self, uidName: UIDNamer = str) -> str:
        return "User identity server response: %d bytes (not shown)" % (len(self.serverResponse),)


@dataclass(slots=True)
class UserInformation:
    """
    User Information item (PS3.8 9.3.2.3 and 9.3.3.3) with its sub-items.

    @ivar maximumLength: the largest P-DATA-TF variable field this side
        receives; 0 means no limit (PS3.8 D.1).
    @ivar asynchronousOperationsWindow: C{(maxInvoked, maxPerformed)} or
        C{None} when the item is absent.
    """

    maximumLength: Optional[int] = None
    implementationClassUID: Optional[str] = None
    implementationVersionName: Optional[str] = None
    asynchronousOperationsWindow: Optional[Tuple[int, int]] = None
    roleSelections: List[SCPSCURoleSelection] = field(default_factory=list)
    extendedNegotiations: List[SOPClassExtendedNegotiation] = field(default_factory=list)
    commonExtendedNegotiations: List[SOPClassCommonExtendedNegotiation] = field(default_factory=list)
    userIdentityRQ: Optional[UserIdentityRQ] = None
    userIdentityAC: Optional[UserIdentityAC] = None

    def encode(self) -> bytes:
        parts = []
        if self.maximumLength is not None:
            parts.append(_item(ITEM_MAXIMUM_LENGTH, _UINT32.pack(self.maximumLength)))
        if self.implementationClassUID is not None:
            parts.append(_item(ITEM_IMPLEMENTATION_CLASS_UID, _uid(self.implementationClassUID)))
        if self.asynchronousOperationsWindow is not None:
            invoked, performed = self.asynchronousOperationsWindow
            parts.append(_item(ITEM_ASYNCHRONOUS_OPERATIONS_WINDOW, struct.pack(">HH", invoked, performed)))
        parts.extend(role.encode() for role in self.roleSelections)
        if self.implementationVersionName is not None:
            parts.append(_item(ITEM_IMPLEMENTATION_VERSION_NAME, self.implementationVersionName.encode("latin-1")))
        parts.extend(item.encode() for item in self.extendedNegotiations)
        parts.extend(item.encode() for item in self.commonExtendedNegotiations)
        if self.userIdentityRQ is not None:
            parts.append(self.userIdentityRQ.encode())
        if self.userIdentityAC is not None:
            parts.append(self.userIdentityAC.encode())
        return _item(ITEM_USER_INFORMATION, b"".join(parts))

    @classmethod
    def decode(cls, value) -> "UserInformation":
        info = cls()
        for itemType, sub in _Reader(value).items():
            if itemType in _FIXED_SUB_ITEM_LENGTHS and len(sub) != _FIXED_SUB_ITEM_LENGTHS[itemType]:
                raise PDUDecodeError("user information sub-item 0x%02X of %d bytes" % (itemType, len(sub)))
            if itemType == ITEM_MAXIMUM_LENGTH:
                info.maximumLength = _Reader(sub).uint32()
            elif itemType == ITEM_IMPLEMENTATION_CLASS_UID:
                info.implementationClassUID = _decodeUID(sub)
            elif itemType == ITEM_IMPLEMENTATION_VERSION_NAME:
                info.implementationVersionName = bytes(sub).decode("latin-1").strip(" \x00")
            elif itemType == ITEM_ASYNCHRONOUS_OPERATIONS_WINDOW:
                r = _Reader(sub)
                info.asynchronousOperationsWindow = (r.uint16(), r.uint16())
            elif itemType == ITEM_SCP_SCU_ROLE_SELECTION:
                info.roleSelections.append(SCPSCURoleSelection.decode(sub))
            elif itemType == ITEM_SOP_CLASS_EXTENDED_NEGOTIATION:
                info.extendedNegotiations.append(SOPClassExtendedNegotiation.decode(sub))
            elif itemType == ITEM_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION:
                info.commonExtendedNegotiations.append(SOPClassCommonExtendedNegotiation.decode(sub))
            elif itemType == ITEM_USER_IDENTITY_RQ:
                info.userIdentityRQ = UserIdentityRQ.decode(sub)
            elif itemType == ITEM_USER_IDENTITY_AC:
                info.userIdentityAC = UserIdentityAC.decode(sub)
            # PS3.7 D.3.3: unknown sub-items are ignored.
        return info

    def describe(self, uidName: UIDNamer = str) -> str:
        """
        One line per sub-item present.
        """
        lines = []
        if self.maximumLength is not None:
            lines.append("Maximum length: %d%s" % (self.maximumLength, "" if self.maximumLength else " (no limit)"))
        if self.implementationClassUID is not None:
            lines.append("Implementation class UID: %s" % (self.implementationClassUID,))
        if self.implementationVersionName is not None:
            lines.append("Implementation version name: %s" % (self.implementationVersionName,))
        if self.asynchronousOperationsWindow is not None:
            lines.append("Asynchronous operations window: %d invoked, %d performed" % self.asynchronousOperationsWindow)
        items = self.roleSelections + self.extendedNegotiations + self.commonExtendedNegotiations
        items += [item for item in (self.userIdentityRQ, self.userIdentityAC) if item is not None]
        lines.extend(item.describe(uidName) for item in items)
        return "\n".join(lines)


#: Sub-items whose item length is fixed (PS3.8 D.1, PS3.7 D.3.3.3).
_FIXED_SUB_ITEM_LENGTHS = {ITEM_MAXIMUM_LENGTH: 4, ITEM_ASYNCHRONOUS_OPERATIONS_WINDOW: 4}


# -- presentation contexts (PS3.8 9.3.2.2 and 9.3.3.2) ----------------------


@dataclass(slots=True)
class PresentationContextRQ:
    """
    A proposed presentation context: one abstract syntax, one or more
    transfer syntaxes in the requestor's order of preference.
    """

    contextID: int
    abstractSyntax: str
    transferSyntaxes: List[str]

    def encode(self) -> bytes:
        value = bytes((self.contextID, 0, 0, 0)) + _item(ITEM_ABSTRACT_SYNTAX, _uid(self.abstractSyntax))
        value += b"".join(_item(ITEM_TRANSFER_SYNTAX, _uid(ts)) for ts in self.transferSyntaxes)
        return _item(ITEM_PRESENTATION_CONTEXT_RQ, value)

    @classmethod
    def decode(cls, value) -> "PresentationContextRQ":
        r = _Reader(value)
        contextID = r.uint8()
        r.take(3)
        abstractSyntax = None
        transferSyntaxes = []
        for itemType, sub in r.items():
            if itemType == ITEM_ABSTRACT_SYNTAX:
                if abstractSyntax is not None:
                    raise PDUDecodeError("presentation context %d has two abstract syntaxes" % (contextID,))
                abstractSyntax = _decodeUID(sub)
            elif itemType == ITEM_TRANSFER_SYNTAX:
                transferSyntaxes.append(_decodeUID(sub))
            else:
                raise PDUDecodeError(
                    "presentation context %d has an item of type 0x%02X" % (contextID, itemType),
                    ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER,
                )
        if abstractSyntax is None or not transferSyntaxes:
            raise PDUDecodeError("presentation context %d lacks its abstract or transfer syntax" % (contextID,))
        return cls(contextID, abstractSyntax, transferSyntaxes)

    def describe(self, uidName: UIDNamer = str) -> str:
        lines = ["Presentation context %d" % (self.contextID,), "  Abstract syntax: %s" % (uidName(self.abstractSyntax),)]
        lines.extend("  Transfer syntax: %s" % (uidName(uid),) for uid in self.transferSyntaxes)
        return "\n".join(lines)


@dataclass(slots=True)
class PresentationContextAC:
    """
    The acceptor's answer for one proposed presentation context.

    @ivar result: one of the C{PC_*} results of PS3.8 Table 9-18.
    @ivar transferSyntax: the chosen transfer syntax; not significant
        unless the result is acceptance.
    """

    contextID: int
    result: int
    transferSyntax: str = ""

    @property
    def accepted(self) -> bool:
        return self.result == PC_ACCEPTANCE

    def encode(self) -> bytes:
        # PS3.8 9.3.3.2: the item always holds one transfer syntax
        # sub-item; it is not significant unless the context is accepted.
        value = bytes((self.contextID, 0, self.result, 0)) + _item(ITEM_TRANSFER_SYNTAX, _uid(self.transferSyntax))
        return _item(ITEM_PRESENTATION_CONTEXT_AC, value)

    @classmethod
    def decode(cls, value) -> "PresentationContextAC":
        r = _Reader(value)
        contextID = r.uint8()
        r.take(1)
        result = r.uint8()
        r.take(1)
        transferSyntax = ""
        for itemType, sub in r.items():
            if itemType == ITEM_TRANSFER_SYNTAX:
                transferSyntax = _decodeUID(sub)
        if result == PC_ACCEPTANCE and not transferSyntax:
            raise PDUDecodeError("accepted presentation context %d names no transfer syntax" % (contextID,))
        return cls(contextID, result, transferSyntax)

    def describe(self, uidName: UIDNamer = str, abstractSyntax: Optional[str] = None) -> str:
        """
        The result, and the transfer syntax if accepted.

        @param abstractSyntax: the abstract syntax the requestor proposed
            with this context ID, which the item does not repeat; C{None}
            leaves it out.
        """
        lines = ["Presentation context %d: %s" % (self.contextID, _CONTEXT_RESULT_NAMES.get(self.result, "result %d" % self.result))]
        if abstractSyntax is not None:
            lines.append("  Abstract syntax: %s" % (uidName(abstractSyntax),))
        if self.accepted:
            lines.append("  Transfer syntax: %s" % (uidName(self.transferSyntax),))
        return "\n".join(lines)


# -- the seven PDUs (PS3.8 9.3.2 to 9.3.7) ----------------------------------


@dataclass(slots=True)
class _AssociatePDU:
    calledAETitle: str
    callingAETitle: str
    presentationContexts: list
    userInformation: UserInformation = field(default_factory=UserInformation)
    applicationContextName: str = DICOM_APPLICATION_CONTEXT
    protocolVersion: int = 1

    pduType = 0
    contextClass = PresentationContextRQ

    def encode(self) -> bytes:
        body = [
            _UINT16.pack(self.protocolVersion),
            b"\x00\x00",
            _aeTitle(self.calledAETitle),
            _aeTitle(self.callingAETitle),
            bytes(32),
            _item(ITEM_APPLICATION_CONTEXT, _uid(self.applicationContextName)),
        ]
        body.extend(context.encode() for context in self.presentationContexts)
        body.append(self.userInformation.encode())
        return _pdu(self.pduType, b"".join(body))

    @classmethod
    def decode(cls, body):
        r = _Reader(body)
        protocolVersion = r.uint16()
        r.take(2)
        called = _decodeAETitle(r.take(16))
        calling = _decodeAETitle(r.take(16))
        r.take(32)
        applicationContext = None
        contexts = []
        userInformation = None
        for itemType, value in r.items():
            if itemType == ITEM_APPLICATION_CONTEXT:
                applicationContext = _decodeUID(value)
            elif itemType == cls.contextClass.itemType:
                contexts.append(cls.contextClass.decode(value))
            elif itemType == ITEM_USER_INFORMATION:
                userInformation = UserInformation.decode(value)
            else:
                raise PDUDecodeError(
                    "unexpected item of type 0x%02X in PDU type %d" % (itemType, cls.pduType),
                    ABORT_REASON_UNEXPECTED_PDU_PARAMETER,
                )
        if applicationContext is None:
            raise PDUDecodeError("association PDU without an application context item")
        if userInformation is None:
            raise PDUDecodeError("association PDU without a user information item")
        return cls(called, calling, contexts, userInformation, applicationContext, protocolVersion)

    def _describe(self, uidName: UIDNamer, contexts: List[str]) -> str:
        lines = [
            PDU_TYPE_NAMES[self.pduType],
            "  Calling AE title: %s" % (self.callingAETitle,),
            "  Called AE title: %s" % (self.calledAETitle,),
            "  Protocol version: %d" % (self.protocolVersion,),
            "  Application context name: %s" % (uidName(self.applicationContextName),),
        ]
        lines.extend(_indented(context) for context in contexts)
        information = self.userInformation.describe(uidName)
        lines.append("  User information:" if information else "  User information: empty")
        if information:
            lines.append(_indented(information, "    "))
        return "\n".join(lines)


PresentationContextRQ.itemType = ITEM_PRESENTATION_CONTEXT_RQ
PresentationContextAC.itemType = ITEM_PRESENTATION_CONTEXT_AC


@dataclass(slots=True)
class AAssociateRQ(_AssociatePDU):
    """
    A-ASSOCIATE-RQ PDU (PS3.8 9.3.2).

    @ivar presentationContexts: a list of L{PresentationContextRQ}.
    """

    pduType = A_ASSOCIATE_RQ
    contextClass = PresentationContextRQ

    def describe(self, uidName: UIDNamer = str) -> str:
        """
        Every parameter of the request, one per line, the presentation
        contexts with their abstract and transfer syntaxes; of a user
        identity only its type and user name (L{UserIdentityRQ.describe}).
        """
        return self._describe(uidName, [context.describe(uidName) for context in self.presentationContexts])


@dataclass(slots=True)
class AAssociateAC(_AssociatePDU):
    """
    A-ASSOCIATE-AC PDU (PS3.8 9.3.3).  The AE title fields are reserved
    and carry back the request's values.

    @ivar presentationContexts: a list of L{PresentationContextAC}.
    """

    pduType = A_ASSOCIATE_AC
    contextClass = PresentationContextAC

    def describe(self, uidName: UIDNamer = str, request: Optional[AAssociateRQ] = None) -> str:
        """
        Every parameter of the acceptance, one per line, with each
        presentation context's result and chosen transfer syntax.

        @param request: the A-ASSOCIATE-RQ answered, whose abstract syntaxes
            are then named beside the contexts' results.
        """
        proposed = {context.contextID: context.abstractSyntax for context in request.presentationContexts} if request else {}
        contexts = [context.describe(uidName, proposed.get(context.contextID)) for context in self.presentationContexts]
        return self._describe(uidName, contexts)


@dataclass(slots=True)
class AAssociateRJ:
    """
    A-ASSOCIATE-RJ PDU (PS3.8 9.3.4).
    """

    result: int
    source: int
    reason: int

    pduType = A_ASSOCIATE_RJ

    def encode(self) -> bytes:
        return _pdu(A_ASSOCIATE_RJ, bytes((0, self.result, self.source, self.reason)))

    @classmethod
    def decode(cls, body) -> "AAssociateRJ":
        if len(body) != 4:
            raise PDUDecodeError("A-ASSOCIATE-RJ body of %d bytes" % (len(body),))
        return cls(body[1], body[2], body[3])

    @property
    def explanation(self) -> str:
        """
        The result, source and reason in words, as DCMTK's tools print
        them: C{"permanent, source: service user, reason: called AE title
        not recognized"}.
        """
        return "%s, source: %s, reason: %s" % (
            _REJECT_RESULT_NAMES.get(self.result, "result %d" % self.result),
            _REJECT_SOURCE_NAMES.get(self.source, "source %d" % self.source),
            _REJECT_REASON_NAMES.get((self.source, self.reason), "reason %d" % self.reason),
        )

    def describe(self, uidName: UIDNamer = str) -> str:
        return "A-ASSOCIATE-RJ: " + self.explanation


@dataclass(slots=True)
class PresentationDataValue:
    """
    One PDV item of a P-DATA-TF PDU (PS3.8 9.3.5.1, Annex E.2).

    @ivar data: the message fragment, a C{memoryview} over the received PDU.
    """

    contextID: int
    messageControlHeader: int
    data: Union[bytes, memoryview]

    @property
    def isCommand(self) -> bool:
        return bool(self.messageControlHeader & 0x01)

    @property
    def isLast(self) -> bool:
        return bool(self.messageControlHeader & 0x02)


@dataclass(slots=True)
class PDataTF:
    """
    P-DATA-TF PDU (PS3.8 9.3.5): one or more presentation data values.
    """

    values: List[PresentationDataValue]

    pduType = P_DATA_TF

    def encode(self) -> bytes:
        parts = []
        for pdv in self.values:
            parts.append(_UINT32.pack(len(pdv.data) + 2))
            parts.append(bytes((pdv.contextID, pdv.messageControlHeader)))
            parts.append(bytes(pdv.data))
        return _pdu(P_DATA_TF, b"".join(parts))

    @classmethod
    def decode(cls, body) -> "PDataTF":
        values = []
        pos, end = 0, len(body)
        if end == 0:
            raise PDUDecodeError("P-DATA-TF without presentation data values")
        while pos < end:
            if end - pos < 6:
                raise PDUDecodeError("P-DATA-TF ends inside a PDV header")
            length = _UINT32.unpack_from(body, pos)[0]
            if length < 2 or pos + 4 + length > end:
                raise PDUDecodeError("PDV item length %d does not fit the PDU" % (length,))
            values.append(PresentationDataValue(body[pos + 4], body[pos + 5], body[pos + 6:pos + 4 + length]))
            pos += 4 + length
        return cls(values)

    def describe(self, uidName: UIDNamer = str) -> str:
        """
        What each presentation data value carries (L{describePDV}), not the
        data.
        """
        return "P-DATA-TF: " + "; ".join(describePDV(pdv.contextID, pdv.messageControlHeader, len(pdv.data)) for pdv in self.values)


@dataclass(slots=True)
class AReleaseRQ:
    """
    A-RELEASE-RQ PDU (PS3.8 9.3.6).
    """

    pduType = A_RELEASE_RQ

    def encode(self) -> bytes:
        return _pdu(A_RELEASE_RQ, bytes(4))

    @classmethod
    def decode(cls, body) -> "AReleaseRQ":
        if len(body) != 4:
            raise PDUDecodeError("A-RELEASE-RQ body of %d bytes" % (len(body),))
        return cls()

    def describe(self, uidName: UIDNamer = str) -> str:
        return "A-RELEASE-RQ"


@dataclass(slots=True)
class AReleaseRP:
    """
    A-RELEASE-RP PDU (PS3.8 9.3.7).
    """

    pduType = A_RELEASE_RP

    def encode(self) -> bytes:
        return _pdu(A_RELEASE_RP, bytes(4))

    @classmethod
    def decode(cls, body) -> "AReleaseRP":
        if len(body) != 4:
            raise PDUDecodeError("A-RELEASE-RP body of %d bytes" % (len(body),))
        return cls()

    def describe(self, uidName: UIDNamer = str) -> str:
        return "A-RELEASE-RP"


@dataclass(slots=True)
class AAbort:
    """
    A-ABORT PDU (PS3.8 9.3.8).
    """

    source: int
    reason: int = ABORT_REASON_NOT_SPECIFIED

    pduType = A_ABORT

    def encode(self) -> bytes:
        return _pdu(A_ABORT, bytes((0, 0, self.source, self.reason)))

    @classmethod
    def decode(cls, body) -> "AAbort":
        if len(body) != 4:
            raise PDUDecodeError("A-ABORT body of %d bytes" % (len(body),))
        return cls(body[2], body[3])

    def describe(self, uidName: UIDNamer = str) -> str:
        """
        Who aborted and, for the service provider, why: the reason a
        service user sends is not significant (PS3.8 9.3.8).
        """
        if self.source == ABORT_SOURCE_SERVICE_USER:
            return "A-ABORT from the service user"
        return "A-ABORT from the %s (%s)" % (
            ABORT_SOURCE_NAMES.get(self.source, "source %d" % self.source),
            ABORT_REASON_NAMES.get(self.reason, "reason %d" % self.reason),
        )


PDU_CLASSES = {
    cls.pduType: cls
    for cls in (AAssociateRQ, AAssociateAC, AAssociateRJ, PDataTF, AReleaseRQ, AReleaseRP, AAbort)
}


def decodePDU(pduType: int, body):
    """
    Decode the variable part of one PDU.

    @param pduType: the first byte of the PDU header.
    @param body: the bytes after the 6-byte header, exactly as long as the
        header said.
    @raise PDUDecodeError: the type is unknown or the body is malformed.
    """
    cls = PDU_CLASSES.get(pduType)
    if cls is None:
        raise PDUDecodeError("unrecognized PDU type 0x%02X" % (pduType,), ABORT_REASON_UNRECOGNIZED_PDU)
    try:
        return cls.decode(body)
    except struct.error as e:
        raise PDUDecodeError("PDU type 0x%02X truncated: %s" % (pduType, e))


def encodePDataTF(contextID: int, messageControlHeader: int, length: int) -> bytes:
    """
    The 12 bytes that precede a single-PDV P-DATA-TF's data: the PDU
    header and the PDV item header.  Callers write the data after it
    without copying it into the PDU.

    @param length: the number of data bytes that follow.
    """
    return _PDATA_HEADER.pack(P_DATA_TF, 0, length + 6, length + 2, contextID, messageControlHeader)


_PDATA_HEADER = struct.Struct(">BBLLBB")
