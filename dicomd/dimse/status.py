"""
DIMSE status codes (PS3.7 Annex C and the service classes of PS3.4).

L{category} sorts any status value into success, pending, warning, cancel
or failure by the ranges of PS3.7 C.1-C.5; L{describe} names the codes the
composite services use.
"""

import enum


class Category(enum.Enum):
    SUCCESS = "Success"
    PENDING = "Pending"
    WARNING = "Warning"
    CANCEL = "Cancel"
    FAILURE = "Failure"


SUCCESS = 0x0000
CANCEL = 0xFE00
PENDING = 0xFF00
PENDING_WARNING = 0xFF01

# General warnings and failures (PS3.7 C.3-C.5)
WARNING = 0x0001
ATTRIBUTE_LIST_ERROR = 0x0107
ATTRIBUTE_VALUE_OUT_OF_RANGE = 0x0116
SUB_OPERATIONS_COMPLETE_WITH_FAILURES = 0xB000
COERCION_OF_DATA_ELEMENTS = 0xB000
ELEMENTS_DISCARDED = 0xB006
DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007
NO_SUCH_ATTRIBUTE = 0x0105
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_SOP_INSTANCE = 0x0112
INVALID_OBJECT_INSTANCE = 0x0117
NO_SUCH_SOP_CLASS = 0x0118
CLASS_INSTANCE_CONFLICT = 0x0119
MISSING_ATTRIBUTE = 0x0120
SOP_CLASS_NOT_SUPPORTED = 0x0122
NOT_AUTHORIZED = 0x0124
DUPLICATE_INVOCATION = 0x0210
UNRECOGNIZED_OPERATION = 0x0211
MISTYPED_ARGUMENT = 0x0212
RESOURCE_LIMITATION = 0x0213

# Service-class specific (PS3.4 B.2.3, C.4.1.1.4, C.4.2.1.5, C.4.3.1.4)
OUT_OF_RESOURCES = 0xA700
OUT_OF_RESOURCES_MATCHES = 0xA701
OUT_OF_RESOURCES_SUB_OPERATIONS = 0xA702
MOVE_DESTINATION_UNKNOWN = 0xA801
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
UNABLE_TO_PROCESS = 0xC001

_MEANINGS = {
    SUCCESS: "Success",
    CANCEL: "Cancel: matching or sub-operations terminated",
    PENDING: "Pending: matches or sub-operations are continuing",
    PENDING_WARNING: "Pending: optional keys not supported",
    WARNING: "Warning",
    ATTRIBUTE_LIST_ERROR: "Warning: attribute list error",
    ATTRIBUTE_VALUE_OUT_OF_RANGE: "Warning: attribute value out of range",
    SUB_OPERATIONS_COMPLETE_WITH_FAILURES: "Warning: coercion of data elements, or sub-operations complete with failures",
    ELEMENTS_DISCARDED: "Warning: elements discarded",
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING: "Warning: data set does not match SOP class",
    NO_SUCH_ATTRIBUTE: "Failure: no such attribute",
    INVALID_ATTRIBUTE_VALUE: "Failure: invalid attribute value",
    PROCESSING_FAILURE: "Failure: processing failure",
    DUPLICATE_SOP_INSTANCE: "Failure: duplicate SOP instance",
    NO_SUCH_SOP_INSTANCE: "Failure: no such SOP instance",
    INVALID_OBJECT_INSTANCE: "Failure: invalid object instance",
    NO_SUCH_SOP_CLASS: "Failure: no such SOP class",
    CLASS_INSTANCE_CONFLICT: "Failure: class-instance conflict",
    MISSING_ATTRIBUTE: "Failure: missing attribute",
    SOP_CLASS_NOT_SUPPORTED: "Failure: SOP class not supported",
    NOT_AUTHORIZED: "Failure: not authorized",
    DUPLICATE_INVOCATION: "Failure: duplicate invocation",
    UNRECOGNIZED_OPERATION: "Failure: unrecognized operation",
    MISTYPED_ARGUMENT: "Failure: mistyped argument",
    RESOURCE_LIMITATION: "Failure: resource limitation",
    OUT_OF_RESOURCES: "Failure: refused, out of resources",
    OUT_OF_RESOURCES_MATCHES: "Failure: refused, out of resources (unable to calculate number of matches)",
    OUT_OF_RESOURCES_SUB_OPERATIONS: "Failure: refused, out of resources (unable to perform sub-operations)",
    MOVE_DESTINATION_UNKNOWN: "Failure: refused, move destination unknown",
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS: "Failure: data set or identifier does not match SOP class",
    CANNOT_UNDERSTAND: "Failure: cannot understand",
    UNABLE_TO_PROCESS: "Failure: unable to process",
}


def category(status: int) -> Category:
    """
    The category of any status value, by the ranges of PS3.7 Annex C.
    """
    if status == SUCCESS:
        return Category.SUCCESS
    if status in (PENDING, PENDING_WARNING):
        return Category.PENDING
    if status == CANCEL:
        return Category.CANCEL
    if status in (WARNING, ATTRIBUTE_LIST_ERROR, ATTRIBUTE_VALUE_OUT_OF_RANGE) or 0xB000 <= status <= 0xBFFF:
        return Category.WARNING
    return Category.FAILURE


def describe(status: int) -> str:
    """
    A line for logs and command-line tools, such as
    C{"0xA700 Failure: refused, out of resources"}.
    """
    meaning = _MEANINGS.get(status)
    if meaning is None:
        meaning = category(status).value
        if 0xA000 <= status <= 0xAFFF:
            meaning += ": refused"
        elif 0xC000 <= status <= 0xCFFF:
            meaning += ": cannot understand"
    return "0x%04X %s" % (status, meaning)
