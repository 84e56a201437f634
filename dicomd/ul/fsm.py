"""
The DICOM Upper Layer protocol state machine (PS3.8 section 9.2).

L{TRANSITIONS} is PS3.8 Table 9-10 written out: one row per event, one column
per state, each cell the name of the action to run.  An empty cell means the
event is not allowed in that state: the provider does nothing but say so.
The actions themselves (what each sends, issues and starts, and which state
follows) are in L{dicomd.ul.provider}; this module holds only the vocabulary
and the table, so it can be checked against the standard cell by cell.
"""

import enum


class State(enum.Enum):
    """
    The thirteen states of PS3.8 Table 9-1.
    """

    Sta1 = "Idle"
    Sta2 = "Transport connection open (awaiting A-ASSOCIATE-RQ PDU)"
    Sta3 = "Awaiting local A-ASSOCIATE response primitive"
    Sta4 = "Awaiting transport connection opening to complete"
    Sta5 = "Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU"
    Sta6 = "Association established and ready for data transfer"
    Sta7 = "Awaiting A-RELEASE-RP PDU"
    Sta8 = "Awaiting local A-RELEASE response primitive"
    Sta9 = "Release collision requestor side; awaiting A-RELEASE response"
    Sta10 = "Release collision acceptor side; awaiting A-RELEASE-RP PDU"
    Sta11 = "Release collision requestor side; awaiting A-RELEASE-RP PDU"
    Sta12 = "Release collision acceptor side; awaiting A-RELEASE response primitive"
    Sta13 = "Awaiting Transport Connection Close Indication"


class Event(enum.Enum):
    """
    The nineteen events of PS3.8 Table 9-10.
    """

    Evt1 = "A-ASSOCIATE request (local user)"
    Evt2 = "Transport connect confirmation (local transport service)"
    Evt3 = "A-ASSOCIATE-AC PDU (received on transport connection)"
    Evt4 = "A-ASSOCIATE-RJ PDU (received on transport connection)"
    Evt5 = "Transport connection indication (local transport service)"
    Evt6 = "A-ASSOCIATE-RQ PDU (received on transport connection)"
    Evt7 = "A-ASSOCIATE response primitive (accept)"
    Evt8 = "A-ASSOCIATE response primitive (reject)"
    Evt9 = "P-DATA request primitive"
    Evt10 = "P-DATA-TF PDU"
    Evt11 = "A-RELEASE request primitive"
    Evt12 = "A-RELEASE-RQ PDU (received on open transport connection)"
    Evt13 = "A-RELEASE-RP PDU (received on transport connection)"
    Evt14 = "A-RELEASE response primitive"
    Evt15 = "A-ABORT request primitive"
    Evt16 = "A-ABORT PDU (received on open transport connection)"
    Evt17 = "Transport connection closed indication (local transport service)"
    Evt18 = "ARTIM timer expired (Association reject/release timer)"
    Evt19 = "Unrecognized or invalid PDU received"


#: Which event a received PDU of each type raises (PS3.8 9.2.1).
PDU_EVENTS = {
    0x01: Event.Evt6,
    0x02: Event.Evt3,
    0x03: Event.Evt4,
    0x04: Event.Evt10,
    0x05: Event.Evt12,
    0x06: Event.Evt13,
    0x07: Event.Evt16,
}

_STATES = list(State)


def _row(*cells):
    assert len(cells) == len(_STATES), cells
    return {state: action for state, action in zip(_STATES, cells) if action is not None}


_ = None

# fmt: off
#: PS3.8 Table 9-10, DICOM Upper Layer Protocol State Transition Table.
TRANSITIONS = {
    #                Sta1    Sta2    Sta3    Sta4    Sta5    Sta6    Sta7    Sta8    Sta9    Sta10   Sta11   Sta12   Sta13
    Event.Evt1:  _row("AE-1", _,      _,      _,      _,      _,      _,      _,      _,      _,      _,      _,      _),
    Event.Evt2:  _row(_,      _,      _,      "AE-2", _,      _,      _,      _,      _,      _,      _,      _,      _),
    Event.Evt3:  _row(_,      "AA-1", "AA-8", _,      "AE-3", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-6"),
    Event.Evt4:  _row(_,      "AA-1", "AA-8", _,      "AE-4", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-6"),
    Event.Evt5:  _row("AE-5", _,      _,      _,      _,      _,      _,      _,      _,      _,      _,      _,      _),
    Event.Evt6:  _row(_,      "AE-6", "AA-8", _,      "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-7"),
    Event.Evt7:  _row(_,      _,      "AE-7", _,      _,      _,      _,      _,      _,      _,      _,      _,      _),
    Event.Evt8:  _row(_,      _,      "AE-8", _,      _,      _,      _,      _,      _,      _,      _,      _,      _),
    Event.Evt9:  _row(_,      _,      _,      _,      _,      "DT-1", _,      "AR-7", _,      _,      _,      _,      _),
    Event.Evt10: _row(_,      "AA-1", "AA-8", _,      "AA-8", "DT-2", "AR-6", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-6"),
    Event.Evt11: _row(_,      _,      _,      _,      _,      "AR-1", _,      _,      _,      _,      _,      _,      _),
    Event.Evt12: _row(_,      "AA-1", "AA-8", _,      "AA-8", "AR-2", "AR-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-6"),
    Event.Evt13: _row(_,      "AA-1", "AA-8", _,      "AA-8", "AA-8", "AR-3", "AA-8", "AA-8", "AR-10", "AR-3", "AA-8", "AA-6"),
    Event.Evt14: _row(_,      _,      _,      _,      _,      _,      _,      "AR-4", "AR-9", _,      _,      "AR-4", _),
    Event.Evt15: _row(_,      _,      "AA-1", "AA-2", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1", _),
    Event.Evt16: _row(_,      "AA-2", "AA-3", _,      "AA-3", "AA-3", "AA-3", "AA-3", "AA-3", "AA-3", "AA-3", "AA-3", "AA-2"),
    Event.Evt17: _row(_,      "AA-5", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AR-5"),
    Event.Evt18: _row(_,      "AA-2", _,      _,      _,      _,      _,      _,      _,      _,      _,      _,      "AA-2"),
    Event.Evt19: _row(_,      "AA-1", "AA-8", _,      "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-7"),
}
# fmt: on

del _

