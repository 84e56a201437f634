"""
Tests for the end of study: L{dicomd.storage.studies.StudyTracker} and the
L{dicomd.storage.receiver.Actions} service that runs storescp's
C{--exec-on-eostudy} and C{--rename-on-eostudy} on it.

Time is a L{task.Clock}, processes are recorded instead of started, and
worker-thread jobs run at once, so nothing here waits or touches the
network.
"""

import json
import os
import stat

from pydicom.dataset import Dataset
from twisted.internet import defer, error, task
from twisted.python.failure import Failure
from twisted.trial import unittest

from dicomd.storage import naming
from dicomd.storage.receiver import SORT_STUDY_UID, SORT_TIMESTAMP, Actions, StorageOptions, StudyLayout
from dicomd.storage.scp import ReceivedInstance, StorageArea
from dicomd.storage.studies import ENDED_ELSEWHERE, StudyJournal, StudyTracker
from tests.support import callWithCallback

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


def received(studyUID, calling="MODALITY", host="10.0.0.1", path=None, at=0.0, sopClass=CT, instance="1.2.3", patientName="Doe^John", association=None):
    """
    A L{ReceivedInstance} of study C{studyUID} from the sender
    C{(calling, host)}.
    """
    attributes = Dataset()
    if studyUID is not None:
        attributes.StudyInstanceUID = studyUID
    attributes.PatientName = patientName
    return ReceivedInstance(
        sopClassUID=sopClass,
        sopInstanceUID=instance,
        transferSyntaxUID="1.2.840.10008.1.2.1",
        callingAETitle=calling,
        calledAETitle="STORESCP",
        peerHost=host,
        receivedAt=at,
        attributes=attributes,
        path=path,
        association=association,
    )


class FakeAssociation:
    """
    What the tracker needs of an association: to hear when it closes.
    """

    def __init__(self):
        self._closed = defer.Deferred()

    def whenClosed(self):
        result = defer.Deferred()
        self._closed.addCallback(lambda _: result.callback(None))
        return result

    def close(self):
        self._closed.callback(None)


class StudyTrackerTests(unittest.SynchronousTestCase):
    """
    L{StudyTracker} ends each study episode exactly once: when its senders
    have moved on to other studies, after the timeout, or at shutdown.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.ended = []

    def tracker(self, timeout=None, onStudyEnded=None):
        def record(episode):
            self.ended.append(episode)

        return StudyTracker(onStudyEnded or record, timeout=timeout, reactor=self.clock)

    def endedUIDs(self):
        return [episode.studyInstanceUID for episode in self.ended]

    def test_timeoutEndsStudyOnce(self):
        """A study ends once, exactly when no object of it has arrived for the timeout."""
        tracker = self.tracker(timeout=5)
        tracker.instanceStored(received("1.1", path="/a"))
        self.clock.advance(4.9)
        self.assertEqual(self.ended, [])
        self.clock.advance(0.1)
        self.assertEqual(self.endedUIDs(), ["1.1"])
        self.assertEqual(self.ended[0].files, ["/a"])
        self.clock.advance(100)
        self.assertEqual(self.endedUIDs(), ["1.1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timerResetsOnEachInstance(self):
        """Each object of a study restarts its timeout."""
        tracker = self.tracker(timeout=5)
        tracker.instanceStored(received("1.1"))
        self.clock.advance(4)
        tracker.instanceStored(received("1.1"))
        self.clock.advance(4)
        tracker.instanceStored(received("1.1"))
        self.clock.advance(4.9)
        self.assertEqual(self.ended, [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0.1)
        self.assertEqual(self.endedUIDs(), ["1.1"])

    def test_studyChangeEndsPrevious(self):
        """A sender moving on to another study ends its previous study at once and cancels its timer."""
        tracker = self.tracker(timeout=60)
        tracker.instanceStored(received("1.1", path="/a1"))
        tracker.instanceStored(received("1.1", path="/a2"))
        tracker.instanceStored(received("1.2", path="/b1"))
        self.assertEqual(self.endedUIDs(), ["1.1"])
        self.assertEqual(self.ended[0].files, ["/a1", "/a2"])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(60)
        self.assertEqual(self.endedUIDs(), ["1.1", "1.2"])

    def test_studyChangeWithoutTimeout(self):
        """Without a timeout a study ends only when its sender moves on."""
        tracker = self.tracker()
        tracker.instanceStored(received("1.1"))
        self.clock.advance(10**6)
        self.assertEqual(self.ended, [])
        tracker.instanceStored(received("1.2"))
        self.assertEqual(self.endedUIDs(), ["1.1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_interleavedSendersEachStudyOnce(self):
        """Two senders interleaving two studies get each study ended exactly once."""
        # storescp's single "next object belongs to another study" rule would
        # end both studies at every interleaved object.
        tracker = self.tracker(timeout=10)
        for step in range(5):
            tracker.instanceStored(received("1.1", calling="CT1", path="/a%d" % step))
            tracker.instanceStored(received("2.1", calling="MR1", path="/b%d" % step))
            self.clock.advance(1)
        self.assertEqual(self.ended, [])
        tracker.instanceStored(received("1.2", calling="CT1"))
        self.assertEqual(self.endedUIDs(), ["1.1"])
        self.assertEqual(self.ended[0].files, ["/a%d" % step for step in range(5)])
        # 2.1's last object came at t=4, 1.2's first at t=5.
        self.clock.advance(8.9)
        self.assertEqual(self.endedUIDs(), ["1.1"])
        self.clock.advance(0.1)
        self.assertEqual(self.endedUIDs(), ["1.1", "2.1"])
        self.clock.advance(1)
        self.assertEqual(self.endedUIDs(), ["1.1", "2.1", "1.2"])
        self.clock.advance(100)
        self.assertEqual(sorted(self.endedUIDs()), ["1.1", "1.2", "2.1"])

    def test_sameTitleOtherHostIsAnotherSender(self):
        """The same calling AE title from two hosts is two senders."""
        tracker = self.tracker()
        tracker.instanceStored(received("1.1", calling="CT", host="10.0.0.1"))
        tracker.instanceStored(received("2.1", calling="CT", host="10.0.0.2"))
        self.assertEqual(self.ended, [])

    def test_sharedStudyEndsWhenEverySenderLeft(self):
        """A study with two senders ends when the last of them moves on."""
        tracker = self.tracker()
        tracker.instanceStored(received("1.1", calling="A"))
        tracker.instanceStored(received("1.1", calling="B"))
        tracker.instanceStored(received("2.1", calling="A"))
        self.assertEqual(self.ended, [])
        tracker.instanceStored(received("3.1", calling="B"))
        self.assertEqual(self.endedUIDs(), ["1.1"])

    def test_studyComesBack(self):
        """A study coming back after its end is a new episode that ends once with its own files."""
        tracker = self.tracker(timeout=5)
        tracker.instanceStored(received("1.1", path="/first"))
        self.clock.advance(5)
        tracker.instanceStored(received("1.1", path="/second"))
        self.clock.advance(5)
        self.assertEqual(self.endedUIDs(), ["1.1", "1.1"])
        self.assertEqual([episode.files for episode in self.ended], [["/first"], ["/second"]])

    def test_lastObject(self):
        """The episode carries its last object for the end-of-study placeholders."""
        tracker = self.tracker()
        tracker.instanceStored(received("1.1", calling="A", instance="1"))
        tracker.instanceStored(received("1.1", calling="A", instance="2"))
        tracker.endAll()
        self.assertEqual(self.ended[0].lastObject.sopInstanceUID, "2")

    def test_withoutStudyUID(self):
        """An object without Study Instance UID belongs to no study."""
        tracker = self.tracker(timeout=5)
        tracker.instanceStored(received(None))
        self.assertEqual(tracker.open, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_endAllEndsOpenStudies(self):
        """endAll (shutdown) ends every open study once and cancels the timers."""
        tracker = self.tracker(timeout=5)
        tracker.instanceStored(received("1.1", calling="A"))
        tracker.instanceStored(received("2.1", calling="B"))
        done = tracker.endAll()
        self.successResultOf(done)
        self.assertEqual(sorted(self.endedUIDs()), ["1.1", "2.1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(len(self.ended), 2)

    def test_endAllWaitsForActions(self):
        """endAll fires only when every end-of-study action has finished."""
        pending = []

        def slow(episode):
            pending.append(defer.Deferred())
            return pending[-1]

        tracker = self.tracker(timeout=5, onStudyEnded=slow)
        tracker.instanceStored(received("1.1"))
        self.clock.advance(5)
        tracker.instanceStored(received("2.1"))
        done = []
        tracker.endAll().addCallback(done.append)
        self.assertEqual(len(pending), 2)
        self.assertEqual(done, [])
        pending[0].callback(None)
        self.assertEqual(done, [])
        pending[1].callback(None)
        self.assertEqual(len(done), 1)

    def test_failingActionIsLogged(self):
        """A failing end-of-study action is logged and the tracker goes on."""

        def fail(episode):
            raise RuntimeError("boom")

        tracker = self.tracker(timeout=5, onStudyEnded=fail)
        tracker.instanceStored(received("1.1"))
        self.clock.advance(5)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        tracker.instanceStored(received("1.2"))
        self.successResultOf(tracker.endAll())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class AgreementTests(unittest.SynchronousTestCase):
    """
    A L{StudyTracker} with an agreement among daemons sharing an index
    ends a study here, later, or not at all, as the agreement says.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.ended = []
        self.elsewhere = []
        self.asked = []
        self.tracker = StudyTracker(self.ended.append, timeout=5, reactor=self.clock)
        self.tracker.onStudyEndedElsewhere = self.elsewhere.append
        self.tracker.agreement = self.agreement

    def agreement(self, episode, now):
        answer = defer.Deferred()
        self.asked.append((episode.studyInstanceUID, now, answer))
        return answer

    def test_endsHere(self):
        """
        A study whose end is due is asked about, and ends when the answer
        says it ends here.
        """
        self.tracker.instanceStored(received("1.1"))
        self.clock.advance(5)
        [(uid, now, answer)] = self.asked
        self.assertEqual((uid, now, self.ended), ("1.1", 5, []))
        answer.callback(None)
        self.assertEqual([episode.studyInstanceUID for episode in self.ended], ["1.1"])
        self.assertEqual(self.tracker.open, {})

    def test_waitsForTheLastObjectElsewhere(self):
        """
        An answer to wait (another daemon received an object later) asks
        again after that long.
        """
        self.tracker.instanceStored(received("1.1"))
        self.clock.advance(5)
        self.asked.pop()[2].callback(3.0)
        self.clock.advance(2.9)
        self.assertEqual(self.asked, [])
        self.clock.advance(0.1)
        self.asked.pop()[2].callback(None)
        self.assertEqual(len(self.ended), 1)

    def test_endedElsewhere(self):
        """
        A study another daemon ended is forgotten here, without its
        end-of-study work, and said so.
        """
        self.tracker.instanceStored(received("1.1"))
        self.clock.advance(5)
        self.asked.pop()[2].callback(ENDED_ELSEWHERE)
        self.assertEqual((self.ended, [e.studyInstanceUID for e in self.elsewhere]), ([], ["1.1"]))
        self.assertEqual(self.tracker.open, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_objectWhileAsking(self):
        """
        An object of the study that arrives while the agreement is asked
        makes its answer moot: the study goes on, and its timeout starts
        again.
        """
        self.tracker.instanceStored(received("1.1"))
        self.clock.advance(5)
        self.tracker.instanceStored(received("1.1"))
        self.asked.pop()[2].callback(None)
        self.assertEqual(self.ended, [])
        self.clock.advance(5)
        self.asked.pop()[2].callback(None)
        self.assertEqual(len(self.ended), 1)

    def test_failingAgreementEndsHere(self):
        """
        An agreement that fails (the database is gone) lets the study end
        here rather than never.
        """
        self.tracker.instanceStored(received("1.1"))
        self.clock.advance(5)
        self.asked.pop()[2].errback(Failure(RuntimeError("no database")))
        self.assertEqual(len(self.ended), 1)


class _Reactor(task.Clock):
    """
    A L{task.Clock} that records C{spawnProcess} and runs
    C{callFromThread} at once.
    """

    def __init__(self):
        task.Clock.__init__(self)
        self.spawned = []

    def spawnProcess(self, processProtocol, executable, args, env=None, **kwargs):
        self.spawned.append((processProtocol, args, env))

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)

    def exit(self, index, code=0):
        """
        End the C{index}th spawned process with C{code}.
        """
        reason = error.ProcessDone(0) if code == 0 else error.ProcessTerminated(code)
        self.spawned[index][0].processEnded(Failure(reason))

    def environments(self):
        return [env for _, _, env in self.spawned]


class _ThreadPool:
    """
    Runs "worker thread" jobs at once, in the caller's thread.
    """

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        callWithCallback(onResult, f, *args, **kwargs)


class AssociationSenderTests(unittest.SynchronousTestCase):
    """
    With associations: each open association is a sender of its own, and
    one that closes hands its study to the next association of its origin
    (calling AE title and host).
    """

    def setUp(self):
        self.ended = []
        self.tracker = StudyTracker(self.ended.append, timeout=None, reactor=task.Clock())

    def endedUIDs(self):
        return [episode.studyInstanceUID for episode in self.ended]

    def store(self, association, studyUID):
        self.tracker.instanceStored(received(studyUID, calling="PACS", association=association))

    def test_parallelAssociationsOfOneOrigin(self):
        """Two associations of one AE title sending two studies at once, interleaved, end neither."""
        first, second = FakeAssociation(), FakeAssociation()
        for _ in range(3):
            self.store(first, "1.1")
            self.store(second, "2.1")
        self.assertEqual(self.ended, [])
        self.assertEqual(sorted(self.tracker.open), ["1.1", "2.1"])

    def test_nextAssociationContinuesStudy(self):
        """An association that continues the study of the last one of its origin keeps it open; moving on ends it, once."""
        first = FakeAssociation()
        self.store(first, "1.1")
        first.close()
        second = FakeAssociation()
        self.store(second, "1.1")
        self.assertEqual(self.ended, [])
        self.assertEqual(self.tracker.open["1.1"].senders, {second})
        self.store(second, "2.1")
        self.assertEqual(self.endedUIDs(), ["1.1"])

    def test_nextAssociationOtherStudy(self):
        """An association of the same origin that starts another study ends the study the closed one was on."""
        first = FakeAssociation()
        self.store(first, "1.1")
        first.close()
        self.assertEqual(self.ended, [])
        self.store(FakeAssociation(), "2.1")
        self.assertEqual(self.endedUIDs(), ["1.1"])

    def test_otherOriginDoesNotTakeOver(self):
        """An association of another AE title leaves a closed association's study open."""
        first = FakeAssociation()
        self.store(first, "1.1")
        first.close()
        self.tracker.instanceStored(received("2.1", calling="CT1", association=FakeAssociation()))
        self.assertEqual(self.ended, [])

    def test_closedWhileOthersSend(self):
        """A study with an open association on it is not ended when another association of it closes and a third one starts another study."""
        first, second = FakeAssociation(), FakeAssociation()
        self.store(first, "1.1")
        self.store(second, "1.1")
        first.close()
        self.store(FakeAssociation(), "2.1")
        self.assertEqual(self.ended, [])
        self.store(second, "3.1")
        self.assertEqual(self.endedUIDs(), ["1.1"])


class ActionsTests(unittest.SynchronousTestCase):
    """
    L{Actions}: commands on reception and at the end of a study, renaming,
    and what happens to pending studies at a clean stop.
    """

    def setUp(self):
        self.reactor = _Reactor()
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def actions(self, index=None, **options):
        storage = StorageOptions(outputDirectory=self.directory, **options)
        layout = StudyLayout(naming.FileNamer(), storage.sortMode, storage.sortPrefix)
        area = StorageArea(self.directory, layout, index=index)
        actions = Actions(storage, area, layout, reactor=self.reactor, threadpool=_ThreadPool())
        actions.startService()
        return actions

    def store(self, actions, studyUID, name, calling="MODALITY", subdirectory="S_1", sopClass=CT):
        """
        Put a file where the layout would, and tell C{actions} it arrived.
        """
        directory = os.path.join(self.directory, subdirectory)
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(name.encode("ascii"))
        return actions.instanceStored(received(studyUID, calling=calling, path=path, sopClass=sopClass, at=self.reactor.seconds()))

    def test_receptionCommand(self):
        """-xcr gets the object's directory, file name, AE titles and address."""
        actions = self.actions(execOnReception="handle #p #f")
        self.assertIsNone(self.store(actions, "1.1", "CT.1"))
        [env] = self.reactor.environments()
        self.assertEqual(env["DICOMD_PATH"], os.path.join(self.directory, "S_1"))
        self.assertEqual(env["DICOMD_FILE"], "CT.1")
        self.assertEqual(env["DICOMD_CALLING_AE"], "MODALITY")
        self.assertEqual(env["DICOMD_CALLED_AE"], "STORESCP")
        self.assertEqual(env["DICOMD_PEER"], "10.0.0.1")
        self.assertEqual(self.reactor.spawned[0][1][:2], ["/bin/sh", "-c"])

    def test_execSyncHoldsTheResponse(self):
        """With -xs the observer's Deferred fires only when the command has exited."""
        actions = self.actions(execOnReception="slow", execSync=True)
        waiting = self.store(actions, "1.1", "CT.1")
        self.assertNoResult(waiting)
        self.reactor.exit(0, code=1)
        self.successResultOf(waiting)

    def test_endOfStudyAfterTimeout(self):
        """-xcs runs once, -tos seconds after the study's last object, with #p its directory and no #f."""
        actions = self.actions(execOnEndOfStudy="done #p", endOfStudyTimeout=2, sortMode=SORT_TIMESTAMP)
        self.store(actions, "1.1", "CT.1")
        self.reactor.advance(1.5)
        self.store(actions, "1.1", "CT.2")
        self.reactor.advance(1.9)
        self.assertEqual(self.reactor.spawned, [])
        self.reactor.advance(0.1)
        [env] = self.reactor.environments()
        self.assertEqual(env["DICOMD_PATH"], os.path.join(self.directory, "S_1"))
        self.assertEqual(env["DICOMD_FILE"], "")
        self.reactor.advance(100)
        self.assertEqual(len(self.reactor.spawned), 1)

    def test_endOfStudyOnStudyChange(self):
        """-xcs runs for a study when its sender sends another study."""
        actions = self.actions(execOnEndOfStudy="done #p", sortMode=SORT_TIMESTAMP)
        self.store(actions, "1.1", "CT.1", subdirectory="S_1")
        self.store(actions, "1.2", "CT.2", subdirectory="S_2")
        [env] = self.reactor.environments()
        self.assertEqual(env["DICOMD_PATH"], os.path.join(self.directory, "S_1"))

    def test_interleavedAssociations(self):
        """Two associations interleaving two studies get one -xcs per study."""
        actions = self.actions(execOnEndOfStudy="done #a", endOfStudyTimeout=5, sortMode=SORT_STUDY_UID)
        for step in range(3):
            self.store(actions, "1.1", "CT.a%d" % step, calling="CT1", subdirectory="1.1")
            self.store(actions, "2.1", "MR.b%d" % step, calling="MR1", subdirectory="2.1")
            self.reactor.advance(1)
        self.assertEqual(self.reactor.spawned, [])
        self.reactor.advance(5)
        self.assertEqual(sorted(env["DICOMD_CALLING_AE"] for env in self.reactor.environments()), ["CT1", "MR1"])

    def test_renameOnEndOfStudy(self):
        """-rns renames a study's files in arrival order to <2 chars><6 digits> before -xcs."""
        actions = self.actions(renameOnEndOfStudy=True, execOnEndOfStudy="done #p", endOfStudyTimeout=1, sortMode=SORT_TIMESTAMP)
        self.store(actions, "1.1", "CT.1.2.3")
        self.store(actions, "1.1", "MR.1.2.4", sopClass=MR)
        self.store(actions, "1.1", "CT.1.2.5")
        self.reactor.advance(1)
        study = os.path.join(self.directory, "S_1")
        self.assertEqual(sorted(os.listdir(study)), ["CT000001", "CT000003", "MR000002"])
        with open(os.path.join(study, "MR000002"), "rb") as f:
            self.assertEqual(f.read(), b"MR.1.2.4")
        self.assertEqual(len(self.reactor.spawned), 1)

    def test_renameTellsTheIndex(self):
        """Renamed files are reported to the area's index with old and new path."""
        moved = []

        class Index:
            def moved(self, old, new):
                moved.append((old, new))

        actions = self.actions(index=Index(), renameOnEndOfStudy=True, endOfStudyTimeout=1, sortMode=SORT_TIMESTAMP)
        self.store(actions, "1.1", "CT.1")
        self.store(actions, "1.1", "MR.2", sopClass=MR)
        self.reactor.advance(1)
        study = os.path.join(self.directory, "S_1")
        self.assertEqual(
            moved,
            [
                (os.path.join(study, "CT.1"), os.path.join(study, "CT000001")),
                (os.path.join(study, "MR.2"), os.path.join(study, "MR000002")),
            ],
        )

    def test_renameDoesNotOverwrite(self):
        """-rns skips taken names instead of overwriting them, and skips removed files."""
        study = os.path.join(self.directory, "S_1")
        os.makedirs(study)
        with open(os.path.join(study, "CT000001"), "wb") as f:
            f.write(b"earlier")
        actions = self.actions(renameOnEndOfStudy=True, endOfStudyTimeout=1, sortMode=SORT_STUDY_UID)
        self.store(actions, "1.1", "CT.1")
        self.store(actions, "1.1", "CT.2")
        self.store(actions, "1.1", "CT.3")
        os.unlink(os.path.join(study, "CT.2"))
        self.reactor.advance(1)
        self.assertEqual(sorted(os.listdir(study)), ["CT000001", "CT000002", "CT000003"])
        contents = {}
        for name in os.listdir(study):
            with open(os.path.join(study, name), "rb") as f:
                contents[name] = f.read()
        self.assertEqual(contents, {"CT000001": b"earlier", "CT000002": b"CT.1", "CT000003": b"CT.3"})

    def test_studyEndedStartsNewDirectory(self):
        """A study's sorting directory is forgotten at its end."""
        actions = self.actions(endOfStudyTimeout=1, sortMode=SORT_STUDY_UID)
        actions.layout._directories["1.1"] = "somewhere"
        self.store(actions, "1.1", "CT.1")
        self.reactor.advance(1)
        self.assertEqual(actions.layout._directories, {})

    def test_stopServiceEndsPendingStudies(self):
        """stopService ends open studies, runs their actions and waits for every command."""
        # The documented shutdown behaviour (docs/storage.md): pending
        # end-of-study work is fired at a clean stop, not kept for the next
        # start.
        actions = self.actions(
            execOnReception="each #f", execOnEndOfStudy="done #p", renameOnEndOfStudy=True, endOfStudyTimeout=60, sortMode=SORT_TIMESTAMP
        )
        self.store(actions, "1.1", "CT.1")
        self.store(actions, "2.1", "CT.2", calling="OTHER", subdirectory="S_2")
        self.assertEqual(len(self.reactor.spawned), 2)
        stopped = []
        actions.stopService().addCallback(stopped.append)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.assertEqual(
            sorted(env["DICOMD_PATH"] for env in self.reactor.environments()[2:]),
            [os.path.join(self.directory, "S_1"), os.path.join(self.directory, "S_2")],
        )
        self.assertEqual(os.listdir(os.path.join(self.directory, "S_1")), ["CT000001"])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        for index in range(3):
            self.reactor.exit(index)
            self.assertEqual(stopped, [], "stopped after %d of 4 commands" % (index + 1,))
        self.reactor.exit(3)
        self.assertEqual(len(stopped), 1)

    def test_stopServiceWithNothingPending(self):
        """stopService fires at once when nothing is pending."""
        actions = self.actions(execOnEndOfStudy="done", endOfStudyTimeout=1)
        stopped = []
        actions.stopService().addCallback(stopped.append)
        self.assertEqual(len(stopped), 1)
        self.assertEqual(self.reactor.spawned, [])


class StudyJournalTests(unittest.SynchronousTestCase):
    """
    L{StudyJournal} and L{Actions} with it: end-of-study work pending when
    a run is killed is done at the next start, once.
    """

    def setUp(self):
        self.reactor = _Reactor()
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.directory, "S_1"))
        self.state = os.path.abspath(self.mktemp())
        self.journalPath = os.path.join(self.state, StudyJournal.fileName(self.directory))
        self.addCleanup(StudyJournal._open.clear)

    def actions(self, **options):
        storage = StorageOptions(outputDirectory=self.directory, sortMode=SORT_TIMESTAMP, stateDirectory=self.state, **options)
        layout = StudyLayout(naming.FileNamer(), storage.sortMode, storage.sortPrefix)
        area = StorageArea(self.directory, layout)
        return Actions(storage, area, layout, reactor=self.reactor, threadpool=_ThreadPool())

    def store(self, actions, studyUID, name, calling="MODALITY"):
        path = os.path.join(self.directory, "S_1", name)
        with open(path, "wb") as f:
            f.write(b"x")
        actions.instanceStored(received(studyUID, calling=calling, path=path, at=self.reactor.seconds()))
        return path

    def kill(self, actions):
        """
        What SIGKILL does to C{actions}: its process, and the journal it
        had open there, are gone without a word.
        """
        actions.journal._file.close()
        del StudyJournal._open[actions.journal.directory]

    def journalLines(self):
        with open(self.journalPath) as f:
            return [json.loads(line) for line in f]

    def test_journaledBeforeTheResponse(self):
        """Each object of a study with end-of-study work is in the journal once instanceStored returns."""
        actions = self.actions(execOnEndOfStudy="done #p")
        actions.startService()
        first = self.store(actions, "1.1", "CT.1")
        self.store(actions, "1.1", "CT.2")
        lines = self.journalLines()
        self.assertEqual([line["file"] for line in lines], [first, os.path.join(self.directory, "S_1", "CT.2")])
        self.assertEqual({line["study"] for line in lines}, {"1.1"})
        self.assertEqual(len({line["episode"] for line in lines}), 1)
        self.assertEqual(lines[0]["calling"], "MODALITY")

    def test_fsyncInAWorkerThread(self):
        """With --fsync the journal is synced in a worker thread and the C-STORE response waits for it; without, nothing waits."""
        synced = []

        class Pool(_ThreadPool):
            def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
                synced.append(f.__name__)
                _ThreadPool.callInThreadWithCallback(self, onResult, f, *args, **kwargs)

        storage = StorageOptions(outputDirectory=self.directory, sortMode=SORT_TIMESTAMP, execOnEndOfStudy="done", sync=True, stateDirectory=self.state)
        layout = StudyLayout(naming.FileNamer(), storage.sortMode, storage.sortPrefix)
        actions = Actions(storage, StorageArea(self.directory, layout), layout, reactor=self.reactor, threadpool=Pool())
        actions.startService()
        path = os.path.join(self.directory, "S_1", "CT.1")
        with open(path, "wb") as f:
            f.write(b"x")
        waiting = actions.instanceStored(received("1.1", path=path))
        self.successResultOf(waiting)
        self.assertEqual(synced, ["syncInThread"])
        unsynced = self.actions(execOnEndOfStudy="done")
        unsynced.startService()
        self.assertIsNone(unsynced.track(received("2.1", path=path)))
        self.assertEqual(synced, ["syncInThread"])

    def test_noJournalWithoutEndOfStudyWork(self):
        """Sorting alone has no end-of-study work to keep: no journal is written."""
        actions = self.actions(endOfStudyTimeout=5)
        actions.startService()
        self.store(actions, "1.1", "CT.1")
        self.assertIsNone(actions.journal)
        self.assertFalse(os.path.exists(self.journalPath))

    def test_killedRunResumes(self):
        """A journal left by a killed run: the next start ends its open study once, with its directory and AE titles."""
        killed = self.actions(execOnEndOfStudy="done #p #a")
        killed.startService()
        self.store(killed, "1.1", "CT.1", calling="CT1")
        self.kill(killed)
        restarted = self.actions(execOnEndOfStudy="done #p #a")
        restarted.startService()
        [env] = self.reactor.environments()
        self.assertEqual(env["DICOMD_PATH"], os.path.join(self.directory, "S_1"))
        self.assertEqual(env["DICOMD_CALLING_AE"], "CT1")
        self.reactor.exit(0)
        self.assertEqual(os.path.getsize(self.journalPath), 0)
        self.kill(restarted)
        again = self.actions(execOnEndOfStudy="done #p #a")
        again.startService()
        self.assertEqual(len(self.reactor.spawned), 1)

    def test_endedEpisodesAreNotResumed(self):
        """An episode whose work was done is not done again; one still open is."""
        killed = self.actions(execOnEndOfStudy="done #a")
        killed.startService()
        self.store(killed, "1.1", "CT.1", calling="A")
        self.store(killed, "2.1", "CT.2", calling="B")
        self.store(killed, "2.2", "CT.3", calling="B")
        self.reactor.exit(0)
        self.assertEqual([env["DICOMD_CALLING_AE"] for env in self.reactor.environments()], ["B"])
        self.kill(killed)
        restarted = self.actions(execOnEndOfStudy="done #a")
        restarted.startService()
        self.assertEqual(sorted(env["DICOMD_CALLING_AE"] for env in self.reactor.environments()[1:]), ["A", "B"])
        resumedStudies = sorted(os.path.basename(os.path.dirname(line["file"])) + line["study"] for line in self.journalLines())
        self.assertEqual(resumedStudies, ["S_11.1", "S_12.2"])

    def test_cleanStopRemovesTheJournal(self):
        """At a clean stop every open study ends and the journal goes."""
        actions = self.actions(execOnEndOfStudy="done #p")
        actions.startService()
        self.store(actions, "1.1", "CT.1")
        stopped = []
        actions.stopService().addCallback(stopped.append)
        self.reactor.exit(0)
        self.assertEqual(len(stopped), 1)
        self.assertFalse(os.path.exists(self.journalPath))

    def test_damagedLinesSkipped(self):
        """A line cut short by a crash, or naming a file outside the area, is skipped; the rest is resumed."""
        good = {"episode": "e1", "study": "1.1", "file": os.path.join(self.directory, "S_1", "CT.1"), "calling": "A", "called": "B", "peer": "h", "at": 1.0}
        outside = dict(good, episode="e2", file=os.path.join(os.path.dirname(self.directory), "elsewhere"))
        os.makedirs(self.state)
        with open(self.journalPath, "w") as f:
            f.write(json.dumps(good) + "\n" + json.dumps(outside) + "\n" + '{"episode": "e3", "stu')
        episodes = StudyJournal(self.directory, self.state).recover()
        self.assertEqual([(episode.key, episode.files) for episode in episodes], [("e1", [good["file"]])])
        self.assertEqual(self.journalLines(), [good])

    def test_sharedAreaRecoveredOnce(self):
        """Two AEs storing in one area share its journal: what a killed run left is ended once, not once per AE."""
        killed = self.actions(execOnEndOfStudy="done")
        killed.startService()
        self.store(killed, "1.1", "CT.1")
        self.kill(killed)
        first, second = self.actions(execOnEndOfStudy="done"), self.actions(execOnEndOfStudy="done")
        first.startService()
        second.startService()
        self.assertIs(first.journal, second.journal)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.reactor.exit(0)
        stopped = []
        first.stopService().addCallback(stopped.append)
        self.assertTrue(os.path.exists(self.journalPath))
        second.stopService().addCallback(stopped.append)
        self.assertEqual(len(stopped), 2)
        self.assertFalse(os.path.exists(self.journalPath))

    def test_journalInTheStateDirectory(self):
        """
        The journal is in the state directory, which is made 0700 with the journal 0600 whatever the umask; the
        storage area holds only what was stored.
        """
        self.addCleanup(os.umask, os.umask(0o022))
        actions = self.actions(execOnEndOfStudy="done")
        actions.startService()
        self.store(actions, "1.1", "CT.1")
        self.assertEqual(actions.journal.path, self.journalPath)
        self.assertEqual(len(self.journalLines()), 1)
        self.assertEqual(stat.S_IMODE(os.stat(self.state).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(self.journalPath).st_mode), 0o600)
        self.assertEqual(os.listdir(self.directory), ["S_1"])
        self.assertEqual(os.listdir(os.path.join(self.directory, "S_1")), ["CT.1"])

    def test_oneJournalPerArea(self):
        """Areas have journals of their own in one state directory; an area reached through a symbolic link has the same one."""
        other = os.path.abspath(self.mktemp())
        os.makedirs(other)
        link = os.path.abspath(self.mktemp())
        os.symlink(self.directory, link)
        self.assertNotEqual(StudyJournal.fileName(os.path.realpath(other)), StudyJournal.fileName(os.path.realpath(self.directory)))
        self.assertEqual(StudyJournal(link, self.state).path, self.journalPath)
        self.assertEqual(os.path.dirname(StudyJournal(other, self.state).path), self.state)
        self.assertRegex(os.path.basename(self.journalPath), r"^eostudy-[0-9a-f]{32}\.journal$")

    def test_stateDirectoryCannotBeMade(self):
        """A state directory that cannot be made stops the start with one line naming it."""
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w"):
            pass
        self.state = os.path.join(blocker, "state")
        actions = self.actions(execOnEndOfStudy="done")
        error = self.assertRaises(OSError, actions.startService)
        self.assertEqual(str(error), "cannot create the state directory %s: Not a directory" % (self.state,))


class ReloadTests(unittest.SynchronousTestCase):
    """
    L{Actions.takeOver}: a reload that rebuilds an AE neither ends its
    open studies early nor ends them twice.
    """

    def setUp(self):
        self.reactor = _Reactor()
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.directory, "S_1"))
        self.addCleanup(StudyJournal._open.clear)

    def actions(self, command, timeout=10):
        storage = StorageOptions(
            outputDirectory=self.directory,
            sortMode=SORT_TIMESTAMP,
            execOnEndOfStudy=command,
            endOfStudyTimeout=timeout,
            stateDirectory=self.mktemp(),
        )
        layout = StudyLayout(naming.FileNamer(), storage.sortMode, storage.sortPrefix)
        return Actions(storage, StorageArea(self.directory, layout), layout, reactor=self.reactor, threadpool=_ThreadPool())

    def store(self, actions, name, study="1.1"):
        path = os.path.join(self.directory, "S_1", name)
        with open(path, "wb") as f:
            f.write(b"x")
        actions.instanceStored(received(study, path=path, at=self.reactor.seconds()))

    def test_openStudyContinuesAfterReload(self):
        """The study open at the reload ends once, with the new command, after the new timeout from the reload; the old AE's late objects count in it."""
        old = self.actions("old #p", timeout=10)
        old.startService()
        self.store(old, "CT.1")
        self.reactor.advance(5)
        new = self.actions("new #p", timeout=20)
        new.takeOver(old)
        new.startService()
        stopped = []
        self.store(old, "CT.2")
        old.stopService().addCallback(stopped.append)
        self.assertEqual(len(stopped), 1)
        self.assertEqual(self.reactor.spawned, [])
        self.reactor.advance(19)
        self.assertEqual(self.reactor.spawned, [])
        self.reactor.advance(1)
        [(_, argv, env)] = self.reactor.spawned
        self.assertEqual(argv[-1], "new \"${DICOMD_PATH}\"")
        self.assertEqual(env["DICOMD_PATH"], os.path.join(self.directory, "S_1"))

    def test_otherAreaIsNotTakenOver(self):
        """A reload that moves the AE to another directory leaves the old studies to the old AE, which ends them as it stops."""
        old = self.actions("old")
        old.startService()
        self.store(old, "CT.1")
        other = os.path.abspath(self.mktemp())
        storage = StorageOptions(outputDirectory=other, sortMode=SORT_TIMESTAMP, execOnEndOfStudy="new", endOfStudyTimeout=10)
        layout = StudyLayout(naming.FileNamer(), storage.sortMode, storage.sortPrefix)
        new = Actions(storage, StorageArea(other, layout), layout, reactor=self.reactor, threadpool=_ThreadPool())
        new.takeOver(old)
        old.stopService()
        [(_, argv, _)] = self.reactor.spawned
        self.assertEqual(argv[-1], "old")
