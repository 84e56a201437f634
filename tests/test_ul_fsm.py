"""
Tests for L{dicomd.ul.fsm}: the vocabulary of PS3.8 section 9.2 and the
state transition table, PS3.8 Table 9-10.

L{STANDARD_TABLE} is a second transcription of Table 9-10, made for these
tests; L{dicomd.ul.fsm.TRANSITIONS} is compared with it and, cell by cell,
with pynetdicom's independent transcription.  The tests of
L{dicomd.ul.provider} drive every cell of it through the provider.
"""

from twisted.trial.unittest import SynchronousTestCase

from dicomd.ul.fsm import PDU_EVENTS, TRANSITIONS, Event, State

_ = None

# fmt: off
#: PS3.8 Table 9-10 as the standard prints it: one row per event, one
#: column per state, C{None} for an empty cell.
STANDARD_TABLE = {
    #          Sta1    Sta2    Sta3    Sta4    Sta5    Sta6    Sta7    Sta8    Sta9    Sta10    Sta11   Sta12   Sta13
    "Evt1":  ("AE-1", _,      _,      _,      _,      _,      _,      _,      _,      _,       _,      _,      _),
    "Evt2":  (_,      _,      _,      "AE-2", _,      _,      _,      _,      _,      _,       _,      _,      _),
    "Evt3":  (_,      "AA-1", "AA-8", _,      "AE-3", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-6"),
    "Evt4":  (_,      "AA-1", "AA-8", _,      "AE-4", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-6"),
    "Evt5":  ("AE-5", _,      _,      _,      _,      _,      _,      _,      _,      _,       _,      _,      _),
    "Evt6":  (_,      "AE-6", "AA-8", _,      "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-7"),
    "Evt7":  (_,      _,      "AE-7", _,      _,      _,      _,      _,      _,      _,       _,      _,      _),
    "Evt8":  (_,      _,      "AE-8", _,      _,      _,      _,      _,      _,      _,       _,      _,      _),
    "Evt9":  (_,      _,      _,      _,      _,      "DT-1", _,      "AR-7", _,      _,       _,      _,      _),
    "Evt10": (_,      "AA-1", "AA-8", _,      "AA-8", "DT-2", "AR-6", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-6"),
    "Evt11": (_,      _,      _,      _,      _,      "AR-1", _,      _,      _,      _,       _,      _,      _),
    "Evt12": (_,      "AA-1", "AA-8", _,      "AA-8", "AR-2", "AR-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-6"),
    "Evt13": (_,      "AA-1", "AA-8", _,      "AA-8", "AA-8", "AR-3", "AA-8", "AA-8", "AR-10", "AR-3", "AA-8", "AA-6"),
    "Evt14": (_,      _,      _,      _,      _,      _,      _,      "AR-4", "AR-9", _,       _,      "AR-4", _),
    "Evt15": (_,      _,      "AA-1", "AA-2", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1",  "AA-1", "AA-1", _),
    "Evt16": (_,      "AA-2", "AA-3", _,      "AA-3", "AA-3", "AA-3", "AA-3", "AA-3", "AA-3",  "AA-3", "AA-3", "AA-2"),
    "Evt17": (_,      "AA-5", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4",  "AA-4", "AA-4", "AR-5"),
    "Evt18": (_,      "AA-2", _,      _,      _,      _,      _,      _,      _,      _,       _,      _,      "AA-2"),
    "Evt19": (_,      "AA-1", "AA-8", _,      "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-7"),
}
# fmt: on

del _

#: The actions of PS3.8 Tables 9-6 to 9-9.
ALL_ACTIONS = (
    ["AE-%d" % (n,) for n in range(1, 9)]
    + ["DT-1", "DT-2"]
    + ["AR-%d" % (n,) for n in range(1, 11)]
    + ["AA-%d" % (n,) for n in range(1, 9)]
)


def standardAction(event: Event, state: State):
    """
    The action of L{STANDARD_TABLE} for C{event} in C{state}, or C{None}.
    """
    return STANDARD_TABLE[event.name][int(state.name[3:]) - 1]


class VocabularyTests(SynchronousTestCase):
    """
    States, events and the PDU-to-event map follow PS3.8 9.2.
    """

    def test_thirteenStates(self):
        """
        There are the thirteen states Sta1 to Sta13, in order.
        """
        self.assertEqual([state.name for state in State], ["Sta%d" % (n,) for n in range(1, 14)])

    def test_nineteenEvents(self):
        """
        There are the nineteen events Evt1 to Evt19, in order.
        """
        self.assertEqual([event.name for event in Event], ["Evt%d" % (n,) for n in range(1, 20)])

    def test_stateDescriptions(self):
        """
        Each state carries its definition from PS3.8 Table 9-1.
        """
        self.assertEqual(State.Sta1.value, "Idle")
        self.assertEqual(State.Sta6.value, "Association established and ready for data transfer")
        self.assertEqual(State.Sta13.value, "Awaiting Transport Connection Close Indication")

    def test_pduEvents(self):
        """
        Each PDU type raises the event PS3.8 9.2.1 names for its reception.
        """
        self.assertEqual(
            PDU_EVENTS,
            {
                0x01: Event.Evt6,  # A-ASSOCIATE-RQ
                0x02: Event.Evt3,  # A-ASSOCIATE-AC
                0x03: Event.Evt4,  # A-ASSOCIATE-RJ
                0x04: Event.Evt10,  # P-DATA-TF
                0x05: Event.Evt12,  # A-RELEASE-RQ
                0x06: Event.Evt13,  # A-RELEASE-RP
                0x07: Event.Evt16,  # A-ABORT
            },
        )


class TransitionTableTests(SynchronousTestCase):
    """
    L{TRANSITIONS} is PS3.8 Table 9-10.
    """

    def test_everyEventHasARow(self):
        """
        The table has one row per event and no cell outside the states.
        """
        self.assertEqual(set(TRANSITIONS), set(Event))
        for row in TRANSITIONS.values():
            self.assertTrue(set(row) <= set(State))

    def test_matchesStandardTable(self):
        """
        Every cell, empty or not, matches our transcription of Table 9-10.
        """
        differences = [
            (event.name, state.name, TRANSITIONS[event].get(state), standardAction(event, state))
            for event in Event
            for state in State
            if TRANSITIONS[event].get(state) != standardAction(event, state)
        ]
        self.assertEqual(differences, [])

    def test_matchesPynetdicom(self):
        """
        Every cell, empty or not, matches pynetdicom's independent
        transcription of Table 9-10 (C{pynetdicom.fsm.TRANSITION_TABLE}).
        """
        from pynetdicom.fsm import TRANSITION_TABLE

        differences = [
            (event.name, state.name, TRANSITIONS[event].get(state), TRANSITION_TABLE.get((event.name, state.name)))
            for event in Event
            for state in State
            if TRANSITIONS[event].get(state) != TRANSITION_TABLE.get((event.name, state.name))
        ]
        self.assertEqual(differences, [])
        self.assertEqual(sum(len(row) for row in TRANSITIONS.values()), len(TRANSITION_TABLE))

    def test_cellCount(self):
        """
        Table 9-10 has 123 non-empty cells.
        """
        self.assertEqual(sum(len(row) for row in TRANSITIONS.values()), 123)

    def test_everyActionUsed(self):
        """
        Each action of PS3.8 Tables 9-6 to 9-9 appears in the table, and
        nothing else does.
        """
        used = {action for row in TRANSITIONS.values() for action in row.values()}
        self.assertEqual(used, set(ALL_ACTIONS))

    def test_everyActionImplemented(self):
        """
        The provider has a method for each action the table names.
        """
        from dicomd.ul.provider import _ACTIONS

        self.assertEqual(set(_ACTIONS), set(ALL_ACTIONS))

    def test_openConnectionStatesHandleEveryPDU(self):
        """
        In each state with an open transport connection (all but Sta1 and
        Sta4), every PDU event and Evt19 has a cell, so nothing a peer sends
        can find an empty one.
        """
        networkEvents = list(PDU_EVENTS.values()) + [Event.Evt19, Event.Evt17]
        for state in State:
            if state in (State.Sta1, State.Sta4):
                continue
            for event in networkEvents:
                self.assertIn(state, TRANSITIONS[event], (event, state))

