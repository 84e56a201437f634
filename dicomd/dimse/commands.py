"""
DIMSE-C command sets (PS3.7 section 9.3 and Annex E).

Each message of the composite services (C-ECHO, C-STORE, C-FIND, C-MOVE,
C-GET, C-CANCEL) is a data class whose fields are the command elements of
PS3.7 Table E.1-1 under their standard names.  L{encodeCommand} writes a
command set in group 0000, implicit VR little endian, with its group
length; L{decodeCommand} reads one back, ignoring the group length's value
(a wrong one must not make us misread what follows) and refusing elements
that run past the end or are not in group 0000.  L{Message.describe} puts a
command set in words for the debug log, L{responseTo} builds the response
to a request, and L{OPERATION_NAMES} names the operations.
"""

import struct
from dataclasses import dataclass, fields
from typing import Callable, Dict, List, Optional, Tuple

from dicomd.codec.elements import IMPLICIT_LITTLE
from dicomd.dimse import status as _status
from dicomd.dimse.uids import VERIFICATION_SOP_CLASS

#: CommandDataSetType values (PS3.7 E.1-1): 0x0101 means no data set; we
#: send 0x0001 for "present", as DCMTK does.
DATA_SET_PRESENT = 0x0001
DATA_SET_ABSENT = 0x0101

PRIORITY_MEDIUM = 0x0000
PRIORITY_HIGH = 0x0001
PRIORITY_LOW = 0x0002


class DIMSEDecodeError(ValueError):
    """
    A command set does not follow PS3.7 Annex E.
    """


# Element tag (element number in group 0000) and VR of each command field.
_ELEMENTS: Dict[str, Tuple[int, str]] = {
    "affectedSOPClassUID": (0x0002, "UI"),
    "requestedSOPClassUID": (0x0003, "UI"),
    "messageID": (0x0110, "US"),
    "messageIDBeingRespondedTo": (0x0120, "US"),
    "moveDestination": (0x0600, "AE"),
    "priority": (0x0700, "US"),
    "status": (0x0900, "US"),
    "offendingElement": (0x0901, "AT"),
    "errorComment": (0x0902, "LO"),
    "errorID": (0x0903, "US"),
    "affectedSOPInstanceUID": (0x1000, "UI"),
    "requestedSOPInstanceUID": (0x1001, "UI"),
    "numberOfRemainingSuboperations": (0x1020, "US"),
    "numberOfCompletedSuboperations": (0x1021, "US"),
    "numberOfFailedSuboperations": (0x1022, "US"),
    "numberOfWarningSuboperations": (0x1023, "US"),
    "moveOriginatorApplicationEntityTitle": (0x1030, "AE"),
    "moveOriginatorMessageID": (0x1031, "US"),
}
# The names of the command elements (PS3.7 Table E.1-1), for logs.
_ELEMENT_NAMES: Dict[str, str] = {
    "affectedSOPClassUID": "Affected SOP Class UID",
    "requestedSOPClassUID": "Requested SOP Class UID",
    "messageID": "Message ID",
    "messageIDBeingRespondedTo": "Message ID Being Responded To",
    "moveDestination": "Move Destination",
    "priority": "Priority",
    "status": "Status",
    "offendingElement": "Offending Element",
    "errorComment": "Error Comment",
    "errorID": "Error ID",
    "affectedSOPInstanceUID": "Affected SOP Instance UID",
    "requestedSOPInstanceUID": "Requested SOP Instance UID",
    "numberOfRemainingSuboperations": "Number of Remaining Sub-operations",
    "numberOfCompletedSuboperations": "Number of Completed Sub-operations",
    "numberOfFailedSuboperations": "Number of Failed Sub-operations",
    "numberOfWarningSuboperations": "Number of Warning Sub-operations",
    "moveOriginatorApplicationEntityTitle": "Move Originator Application Entity Title",
    "moveOriginatorMessageID": "Move Originator Message ID",
}

#: The messages of PS3.7 by Command Field value (PS3.7 Table E.1-1 and the
#: DIMSE-N services of section 10), for logs.
COMMAND_FIELD_NAMES: Dict[int, str] = {
    0x0001: "C-STORE-RQ",
    0x8001: "C-STORE-RSP",
    0x0010: "C-GET-RQ",
    0x8010: "C-GET-RSP",
    0x0020: "C-FIND-RQ",
    0x8020: "C-FIND-RSP",
    0x0021: "C-MOVE-RQ",
    0x8021: "C-MOVE-RSP",
    0x0030: "C-ECHO-RQ",
    0x8030: "C-ECHO-RSP",
    0x0100: "N-EVENT-REPORT-RQ",
    0x8100: "N-EVENT-REPORT-RSP",
    0x0110: "N-GET-RQ",
    0x8110: "N-GET-RSP",
    0x0120: "N-SET-RQ",
    0x8120: "N-SET-RSP",
    0x0130: "N-ACTION-RQ",
    0x8130: "N-ACTION-RSP",
    0x0140: "N-CREATE-RQ",
    0x8140: "N-CREATE-RSP",
    0x0150: "N-DELETE-RQ",
    0x8150: "N-DELETE-RSP",
    0x0FFF: "C-CANCEL-RQ",
}

#: The DIMSE-C operations (PS3.7 section 9.1) by the Command Field of their
#: request, for the per-operation counts of an association's log line.
OPERATION_NAMES: Dict[int, str] = {
    0x0001: "C-STORE",
    0x0010: "C-GET",
    0x0020: "C-FIND",
    0x0021: "C-MOVE",
    0x0030: "C-ECHO",
    0x0FFF: "C-CANCEL",
}

_PRIORITY_NAMES = {PRIORITY_MEDIUM: "medium", PRIORITY_HIGH: "high", PRIORITY_LOW: "low"}

_GROUP_LENGTH = 0x0000
_COMMAND_FIELD = 0x0100
_COMMAND_DATA_SET_TYPE = 0x0800

_US = struct.Struct("<H")
_UL = struct.Struct("<L")
_AT = struct.Struct("<HH")
_IMPLICIT_HEADER = struct.Struct("<HHL")


# Command sets have no Specific Character Set: their strings are ASCII.  A
# peer may send any byte, though, and a response echoes the request's UIDs,
# so strings are read as Latin-1 (one character per byte) and written the
# same way: whatever was decoded encodes back to the same bytes.


def _encodeString(value: str, padding: bytes) -> bytes:
    raw = value.encode("latin-1")
    return raw + padding if len(raw) % 2 else raw


def _encodeValue(vr: str, value) -> bytes:
    if vr == "US":
        return _US.pack(value)
    if vr == "UI":
        return _encodeString(value, b"\x00")
    if vr == "AE":
        return value.encode("latin-1").ljust(16, b" ")
    if vr == "LO":
        return _encodeString(value, b" ")
    if vr == "AT":
        return b"".join(_AT.pack(tag >> 16, tag & 0xFFFF) for tag in value)
    raise AssertionError(vr)


def _decodeValue(vr: str, raw: memoryview):
    if vr == "US":
        if len(raw) != 2:
            raise DIMSEDecodeError("US command element of %d bytes" % (len(raw),))
        return _US.unpack(raw)[0]
    if vr == "AT":
        if len(raw) % 4:
            raise DIMSEDecodeError("AT command element of %d bytes" % (len(raw),))
        return [(group << 16) | element for group, element in _AT.iter_unpack(raw)]
    text = bytes(raw).decode("latin-1")
    if vr == "UI":
        return text.rstrip("\x00 ")
    return text.strip(" \x00")


@dataclass(slots=True)
class Message:
    """
    A DIMSE message's command set.  Subclasses set C{commandField} and
    declare the elements they carry as fields; C{None} leaves an element
    out.

    @ivar hasDataSet: whether a data set follows the command
        (CommandDataSetType other than 0x0101).
    """

    hasDataSet: bool = False

    commandField = 0
    #: The elements a received command set must have.
    required = ()

    @property
    def isResponse(self) -> bool:
        return bool(self.commandField & 0x8000)

    @property
    def name(self) -> str:
        """
        The message's name, such as C{"C-STORE-RQ"}.
        """
        return COMMAND_FIELD_NAMES.get(self.commandField, "command field 0x%04X" % (self.commandField,))

    def describe(self, uidName: Callable[[str], str] = str) -> str:
        """
        The command set in words, for the debug log: the message's name,
        then each element it carries under its name in PS3.7 Table E.1-1,
        in tag order, and whether a data set follows (never the data set).

        @param uidName: how UIDs are written: C{str} as they are, or with
            their names (L{dicomd.ul.pdu.UIDNamer}).
        """
        lines = [self.name]
        for name, _, vr in _LAYOUTS[type(self)]:
            value = getattr(self, name)
            if value is None:
                continue
            if vr == "UI":
                text = uidName(value)
            elif name == "status":
                text = _status.describe(value)
            elif name == "priority":
                text = _PRIORITY_NAMES.get(value, "0x%04X" % (value,))
            elif vr == "AT":
                text = ", ".join("(%04X,%04X)" % (tag >> 16, tag & 0xFFFF) for tag in value)
            else:
                text = str(value)
            lines.append("  %s: %s" % (_ELEMENT_NAMES[name], text))
        lines.append("  Data Set: %s" % ("present" if self.hasDataSet else "none",))
        return "\n".join(lines)


@dataclass(slots=True)
class Request(Message):
    messageID: int = 0

    required = ("messageID",)


@dataclass(slots=True)
class Response(Message):
    messageIDBeingRespondedTo: int = 0
    status: int = 0x0000
    offendingElement: Optional[List[int]] = None
    errorComment: Optional[str] = None
    errorID: Optional[int] = None

    required = ("messageIDBeingRespondedTo", "status")


@dataclass(slots=True)
class CEchoRQ(Request):
    """C-ECHO-RQ (PS3.7 9.3.5.1)."""

    affectedSOPClassUID: str = VERIFICATION_SOP_CLASS
    commandField = 0x0030


@dataclass(slots=True)
class CEchoRSP(Response):
    """C-ECHO-RSP (PS3.7 9.3.5.2)."""

    affectedSOPClassUID: Optional[str] = VERIFICATION_SOP_CLASS
    commandField = 0x8030


@dataclass(slots=True)
class CStoreRQ(Request):
    """C-STORE-RQ (PS3.7 9.3.1.1)."""

    affectedSOPClassUID: str = ""
    affectedSOPInstanceUID: str = ""
    priority: int = PRIORITY_MEDIUM
    moveOriginatorApplicationEntityTitle: Optional[str] = None
    moveOriginatorMessageID: Optional[int] = None
    hasDataSet: bool = True
    commandField = 0x0001


@dataclass(slots=True)
class CStoreRSP(Response):
    """C-STORE-RSP (PS3.7 9.3.1.2)."""

    affectedSOPClassUID: Optional[str] = None
    affectedSOPInstanceUID: Optional[str] = None
    commandField = 0x8001


@dataclass(slots=True)
class CFindRQ(Request):
    """C-FIND-RQ (PS3.7 9.3.2.1); the identifier follows as the data set."""

    affectedSOPClassUID: str = ""
    priority: int = PRIORITY_MEDIUM
    hasDataSet: bool = True
    commandField = 0x0020


@dataclass(slots=True)
class CFindRSP(Response):
    """C-FIND-RSP (PS3.7 9.3.2.2); pending responses carry an identifier."""

    affectedSOPClassUID: Optional[str] = None
    commandField = 0x8020


@dataclass(slots=True)
class _RetrieveRSP(Response):
    affectedSOPClassUID: Optional[str] = None
    numberOfRemainingSuboperations: Optional[int] = None
    numberOfCompletedSuboperations: Optional[int] = None
    numberOfFailedSuboperations: Optional[int] = None
    numberOfWarningSuboperations: Optional[int] = None


@dataclass(slots=True)
class CMoveRQ(Request):
    """C-MOVE-RQ (PS3.7 9.3.4.1)."""

    affectedSOPClassUID: str = ""
    priority: int = PRIORITY_MEDIUM
    moveDestination: str = ""
    hasDataSet: bool = True
    commandField = 0x0021


@dataclass(slots=True)
class CMoveRSP(_RetrieveRSP):
    """C-MOVE-RSP (PS3.7 9.3.4.2)."""

    commandField = 0x8021


@dataclass(slots=True)
class CGetRQ(Request):
    """C-GET-RQ (PS3.7 9.3.3.1)."""

    affectedSOPClassUID: str = ""
    priority: int = PRIORITY_MEDIUM
    hasDataSet: bool = True
    commandField = 0x0010


@dataclass(slots=True)
class CGetRSP(_RetrieveRSP):
    """C-GET-RSP (PS3.7 9.3.3.2)."""

    commandField = 0x8010


@dataclass(slots=True)
class CCancelRQ(Message):
    """C-CANCEL-RQ (PS3.7 9.3.2.3): cancels the request it names."""

    messageIDBeingRespondedTo: int = 0
    commandField = 0x0FFF
    required = ("messageIDBeingRespondedTo",)


@dataclass(slots=True)
class UnrecognizedMessage(Message):
    """
    A command set whose Command Field is not one of the DIMSE-C messages
    above (an N-service, or garbage).  It is kept so that the receiver can
    answer "unrecognized operation".
    """

    commandField: int = 0
    messageID: Optional[int] = None
    messageIDBeingRespondedTo: Optional[int] = None
    status: Optional[int] = None
    affectedSOPClassUID: Optional[str] = None


MESSAGE_CLASSES = {
    cls.commandField: cls
    for cls in (CEchoRQ, CEchoRSP, CStoreRQ, CStoreRSP, CFindRQ, CFindRSP, CMoveRQ, CMoveRSP, CGetRQ, CGetRSP, CCancelRQ)
}


def responseTo(request: Message, status: int, **fields) -> Message:
    """
    The response message of the same operation as C{request}, carrying
    C{status} (PS3.7 9.3): its Message ID Being Responded To is the
    request's Message ID and, unless C{fields} say otherwise, its Affected
    SOP Class UID the request's.  A request of no operation we know (an
    L{UnrecognizedMessage}) gets an L{UnrecognizedMessage} with the
    response bit of its Command Field set, to refuse it with.
    """
    cls = MESSAGE_CLASSES.get(request.commandField | 0x8000)
    if cls is None:
        return UnrecognizedMessage(
            commandField=request.commandField | 0x8000,
            messageIDBeingRespondedTo=getattr(request, "messageID", 0) or 0,
            status=status,
            affectedSOPClassUID=getattr(request, "affectedSOPClassUID", None),
        )
    response = cls(messageIDBeingRespondedTo=request.messageID, status=status, **fields)
    if hasattr(response, "affectedSOPClassUID") and "affectedSOPClassUID" not in fields:
        response.affectedSOPClassUID = request.affectedSOPClassUID
    return response


def _layout(cls) -> List[Tuple[str, int, str]]:
    """
    The command elements a message class carries, in tag order.
    """
    names = [f.name for f in fields(cls) if f.name in _ELEMENTS]
    return sorted(((name,) + _ELEMENTS[name] for name in names), key=lambda entry: entry[1])


_LAYOUTS = {cls: _layout(cls) for cls in list(MESSAGE_CLASSES.values()) + [UnrecognizedMessage]}

#: The requests whose Command Data Set Type "shall be set to a value other
#: than 0101H" (PS3.7 Tables 9.3-1, 9.3-2, 9.3-3, 9.3-4): the operation
#: cannot be performed without its data set or identifier.
_DATA_SET_REQUIRED = (CStoreRQ, CFindRQ, CMoveRQ, CGetRQ)


# What encodeCommand writes for each message class, in tag order: the
# class's elements, the Command Field and the Command Data Set Type.  Each
# entry is (field name, element, VR, header): the header is that of the
# US elements, whose length is always 2.
_DATA_SET_TYPE_ELEMENTS = (
    IMPLICIT_LITTLE.element(_COMMAND_DATA_SET_TYPE, "US", _US.pack(DATA_SET_ABSENT)),
    IMPLICIT_LITTLE.element(_COMMAND_DATA_SET_TYPE, "US", _US.pack(DATA_SET_PRESENT)),
)


def _encoding(cls) -> Tuple[tuple, ...]:
    entries = [(name, element, vr) for name, element, vr in _LAYOUTS[cls]]
    entries.append(("commandField", _COMMAND_FIELD, "US"))
    entries.append(("hasDataSet", _COMMAND_DATA_SET_TYPE, "DS"))
    entries.sort(key=lambda entry: entry[1])
    return tuple((name, element, vr, IMPLICIT_LITTLE.header(element, "US", 2)) for name, element, vr in entries)


_ENCODINGS = {cls: _encoding(cls) for cls in _LAYOUTS}

# What decodeCommand reads for each message class: element -> (field
# name, VR).
_DECODINGS = {cls: {element: (name, vr) for name, element, vr in layout} for cls, layout in _LAYOUTS.items()}


def encodeCommand(message: Message) -> bytes:
    """
    Encode a command set: group 0000, implicit VR little endian, with the
    Command Group Length first.
    """
    parts = [b""]
    header = IMPLICIT_LITTLE.header
    packUS = _US.pack
    for name, element, vr, usHeader in _ENCODINGS[type(message)]:
        value = getattr(message, name)
        if value is None:
            continue
        if vr == "US":
            parts.append(usHeader)
            parts.append(packUS(value))
        elif vr == "DS":
            parts.append(_DATA_SET_TYPE_ELEMENTS[bool(value)])
        else:
            if vr == "UI":
                raw = value.encode("latin-1")
                if len(raw) % 2:
                    raw += b"\x00"
            else:
                raw = _encodeValue(vr, value)
            parts.append(header(element, vr, len(raw)))
            parts.append(raw)
    body = b"".join(parts)
    return IMPLICIT_LITTLE.header(_GROUP_LENGTH, "UL", 4) + _UL.pack(len(body)) + body


def decodeCommand(data) -> Message:
    """
    Decode a command set.

    @param data: the whole command set, as bytes or a memoryview.
    @raise DIMSEDecodeError: the bytes are not a command set, lack the
        Command Field or an element their message requires, or a request
        that needs a data set (C-STORE, C-FIND, C-MOVE, C-GET) announces
        none.
    """
    if type(data) is not bytes:
        # A command set is small (MessageAssembler caps it): one copy makes
        # every value below a cheap bytes slice.
        data = bytes(data)
    end = len(data)
    pos = 0
    raw = {}
    # Implicit VR little endian headers, read inline: every message
    # received is decoded here.
    readHeader = _IMPLICIT_HEADER.unpack_from
    while pos < end:
        if end - pos < 8:
            raise DIMSEDecodeError("command set ends inside an element header")
        group, element, length = readHeader(data, pos)
        pos += 8
        if group != 0x0000:
            raise DIMSEDecodeError("element (%04X,%04X) is not in the command group" % (group, element))
        if length > end - pos:
            raise DIMSEDecodeError("element (0000,%04X) of %d bytes runs past the command set" % (element, length))
        # In group 0000 the tag is the element number.
        raw[element] = data[pos : pos + length]
        pos += length
    commandFieldValue = raw.get(_COMMAND_FIELD)
    if commandFieldValue is None:
        raise DIMSEDecodeError("command set without a Command Field (0000,0100)")
    commandField = _decodeValue("US", commandFieldValue)
    dataSetType = raw.get(_COMMAND_DATA_SET_TYPE)
    hasDataSet = dataSetType is not None and _decodeValue("US", dataSetType) != DATA_SET_ABSENT
    cls = MESSAGE_CLASSES.get(commandField)
    values = {"hasDataSet": hasDataSet}
    if cls is None:
        cls = UnrecognizedMessage
        values["commandField"] = commandField
    decoding = _DECODINGS[cls]
    for element, value in raw.items():
        entry = decoding.get(element)
        if entry is None:
            continue
        name, vr = entry
        if vr == "US" and len(value) == 2:
            values[name] = value[0] | (value[1] << 8)
        elif vr == "UI":
            values[name] = value.decode("latin-1").rstrip("\x00 ")
        else:
            values[name] = _decodeValue(vr, value)
    for name in cls.required:
        if name not in values:
            missing = [name for name in cls.required if name not in values]
            raise DIMSEDecodeError("%s without %s" % (cls.__name__, ", ".join(missing)))
    if not hasDataSet and cls in _DATA_SET_REQUIRED:
        # Waiting for a data set that never comes would keep the request
        # open, and the association with it, for as long as the peer likes.
        raise DIMSEDecodeError("%s without a data set" % (cls.__name__,))
    return cls(**values)
