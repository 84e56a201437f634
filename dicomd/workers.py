"""
Worker processes: one coordinator and N workers serving the same
listening sockets, so that associations use every core
(C{twistd dicomd --workers N}, C{dicomd storescp --fork}).

    coordinator   listens (binds, so privileges drop as in one process),
                  owns the index writer, end-of-study tracking, actions,
                  quotas, forwarding and the status page
        |  AMP over a Unix socket pair (one per worker)
    workers       adopt the listening sockets; associations, UL/DIMSE,
                  spooling and naming files; C-FIND, C-MOVE and C-GET read
                  the index directly (SQLite in WAL mode has many readers)

A worker is built from the front door's own command line
(L{dicomd.workerprocess}), so that it reads the same configuration file with
the same overrides; the coordinator passes it the listening sockets and
its end of the AMP socket pair as inherited descriptors.

A worker tells the coordinator of each stored object (L{Reported}) before
its C-STORE-RSP: the reports of one turn of its reactor go to the kernel
in one write at the turn's end, then their responses, so that what a
worker acknowledged is known to the coordinator even when the worker is
killed right after.  The response does not wait for the coordinator, as
in one process it does not wait for the index writer: the worker refuses
what the coordinator's writer would (an object larger than the study
quota; anything while the index cannot record, which the coordinator
tells every worker, L{IndexState}), and the coordinator indexes, tracks
and acts behind the response.  Where the response must wait for the
coordinator (a reception command run with C{--exec-sync}, end-of-study
work its study journal must name the object for, a journal kept with
C{--fsync}: L{answeredByCoordinator}) the worker asks and
waits (L{Stored}).  Reports
the coordinator has not read hold the worker's associations back
(L{ReportBacklog}) rather than fill its memory.  The
associations of a dead worker end (their studies wait for the next
association of their origin, as for any closed association), and another
worker takes its place.
"""

import io
import os
import pickle
import socket
import sys
import time
from collections import defaultdict
from typing import Dict, List, Optional

from pydicom.dataset import Dataset
from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger, LogLevel
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from dicomd.archive.area import checkSize
from dicomd.dimse.status import OUT_OF_RESOURCES
from dicomd.net.sockets import directConnection, sendNow
from dicomd.storage.part10 import HeadScan, walkHead
from dicomd.storage.scp import ReceivedInstance, StoreRefused

#: The descriptor a worker finds its end of the AMP socket pair at; the
#: listening sockets follow it, in the order of the configuration.
COORDINATOR_FD = 3

#: The longest value a worker sends of a stored object's attributes: the
#: index keys and routing conditions are short, and an AMP value holds
#: 64 KiB at most.
ATTRIBUTE_LIMIT = 1024

#: The most bytes of a stored object's data set that a worker sends as
#: the attributes were found in (a L{HeadScan}'s): the coordinator finds
#: them there again.  Objects whose attributes take more (enhanced
#: multi-frame ones) send an L{attributeSummary}, within AMP's 64 KiB per
#: value.
HEAD_LIMIT = 60 << 10

#: A worker that exits sooner than this after it started is replaced only
#: after this long, so that one that cannot start does not spin.
RESPAWN_DELAY = 1.0


#: The classes a pickled L{ReceivedInstance}'s fields may hold: plain
#: values and pydicom's data set, elements and values, nothing else.
_PICKLED_CLASSES = frozenset(
    [
        ("pydicom.dataset", "Dataset"),
        ("pydicom.dataelem", "DataElement"),
        ("pydicom.dataelem", "RawDataElement"),
        ("pydicom.multival", "MultiValue"),
        ("pydicom.tag", "BaseTag"),
        ("pydicom.uid", "UID"),
        ("pydicom.valuerep", "DA"),
        ("pydicom.valuerep", "DSdecimal"),
        ("pydicom.valuerep", "DSfloat"),
        ("pydicom.valuerep", "DT"),
        ("pydicom.valuerep", "IS"),
        ("pydicom.valuerep", "ISfloat"),
        ("pydicom.valuerep", "PersonName"),
        ("pydicom.valuerep", "TM"),
        ("pydicom.valuerep", "VR"),
    ]
)


class _AttributeUnpickler(pickle.Unpickler):
    """
    An unpickler that builds only L{_PICKLED_CLASSES}: workers parse what
    the network sends, and a worker subverted by it must not run code in
    the coordinator by what it pickles.
    """

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLED_CLASSES:
            raise pickle.UnpicklingError("a worker sent a %s.%s" % (module, name))
        return super().find_class(module, name)


class Pickled(amp.Argument):
    """
    A value pickled: between two processes of one daemon, over a socket
    pair nobody else holds.  One pickled value costs less to send and
    read than an AMP value per field.  Only plain values and pydicom's
    data sets are read back (L{_AttributeUnpickler}).
    """

    def toString(self, inObject) -> bytes:
        return pickle.dumps(inObject, protocol=pickle.HIGHEST_PROTOCOL)

    def fromString(self, inString: bytes):
        return _AttributeUnpickler(io.BytesIO(inString)).load()


class Reported(amp.Command):
    """
    Worker to coordinator: an object is stored under its final name, and
    its C-STORE-RSP follows; the coordinator indexes it, tracks its study
    and runs its reception command.  The instance is a
    L{ReceivedInstance}'s fields (L{instanceFields}).
    """

    arguments = [(b"area", amp.Unicode()), (b"association", amp.Integer()), (b"instance", Pickled())]
    requiresAnswer = False

    @staticmethod
    def box(area: bytes, association: int, instance: dict) -> amp.AmpBox:
        """
        The box C{callRemote} would send, made directly: a worker sends one
        per stored object, and C{callRemote}'s argument machinery took
        half the report's time (a report took 19 microseconds with it, 9.5
        without).

        @param area: the area's key, encoded.
        """
        return amp.AmpBox(
            {
                amp.COMMAND: b"Reported",
                b"area": area,
                b"association": b"%d" % (association,),
                b"instance": pickle.dumps(instance, protocol=pickle.HIGHEST_PROTOCOL),
            }
        )

    @staticmethod
    def parse(box: amp.AmpBox):
        """
        The C{(area, association, instance)} of a box L{box} made; the
        instance read back as L{Pickled} reads it.
        """
        return box[b"area"].decode("utf-8"), int(box[b"association"]), Pickled().fromString(box[b"instance"])


class Stored(amp.Command):
    """
    Worker to coordinator: as L{Reported}, for a response that must wait
    for the coordinator (L{answeredByCoordinator});
    answered once the coordinator has taken it, with the status to refuse
    it with, or 0.
    """

    arguments = Reported.arguments
    response = [(b"status", amp.Integer()), (b"comment", amp.Unicode())]


class IndexState(amp.Command):
    """
    Coordinator to worker: the index of an area stopped recording (the
    error's text) or records again (C{""}).  Meanwhile the worker refuses
    what it would store there with 0xA700, as the coordinator's own index
    writer does.
    """

    arguments = [(b"area", amp.Unicode()), (b"failure", amp.Unicode())]
    requiresAnswer = False


class Unstored(amp.Command):
    """
    Worker to coordinator: an object it reported was removed again (its
    association ended before the response).
    """

    arguments = [(b"area", amp.Unicode()), (b"sopInstanceUID", amp.Unicode()), (b"path", amp.Unicode())]
    requiresAnswer = False


class AssociationClosed(amp.Command):
    """
    Worker to coordinator: an association that stored objects has closed.
    """

    arguments = [(b"association", amp.Integer())]
    requiresAnswer = False


class Accepted(amp.Command):
    arguments = [(b"title", amp.Unicode())]
    requiresAnswer = False


class Rejected(amp.Command):
    arguments = [(b"title", amp.Unicode())]
    requiresAnswer = False


class Ended(amp.Command):
    """
    Worker to coordinator: an accepted association is over, with its
    operations' counters (operation -> outcome -> count).
    """

    arguments = [
        (b"title", amp.Unicode()),
        (b"outcome", amp.Unicode()),
        (b"counters", amp.AmpList([(b"operation", amp.Unicode()), (b"result", amp.Unicode()), (b"count", amp.Integer())])),
    ]
    requiresAnswer = False


class Reload(amp.Command):
    """
    Coordinator to worker: SIGHUP; read the configuration file again.
    """

    response = [(b"reloaded", amp.Boolean())]


def attributeSummary(attributes: Dataset) -> Dataset:
    """
    The top-level attributes of a stored object that the coordinator
    needs (index keys, routing conditions, the Study Instance UID),
    undecoded: those whose values are at most L{ATTRIBUTE_LIMIT} bytes,
    without sequences.
    """
    kept = {}
    for element in attributes.elements():
        if element.VR == "SQ":
            continue
        value = element.value
        length = len(value) if isinstance(value, (bytes, str)) else len(str(value))
        if length <= ATTRIBUTE_LIMIT:
            kept[element.tag] = element
    summary = Dataset(kept)
    implicit, little, encoding = attributes.original_encoding + (attributes.original_character_set,)
    summary.set_original_encoding(implicit, little, encoding)
    return summary


def instanceFields(received: ReceivedInstance) -> dict:
    """
    What the coordinator needs of a stored object: a L{ReceivedInstance}'s
    fields but its association, with its attributes as bytes of the data
    set (C{head}: the worker leaves making pydicom's elements of them to
    the coordinator, on another core) or as an L{attributeSummary}.
    """
    fields = dict(
        sopClassUID=received.sopClassUID,
        sopInstanceUID=received.sopInstanceUID,
        transferSyntaxUID=received.transferSyntaxUID,
        callingAETitle=received.callingAETitle,
        calledAETitle=received.calledAETitle,
        peerHost=received.peerHost,
        receivedAt=received.receivedAt,
        size=received.size,
        path=received.path,
        fileSize=received.fileSize,
    )
    scan = received.scan
    if scan is not None and len(scan.data) <= HEAD_LIMIT:
        fields["head"] = scan.data
    else:
        fields["attributes"] = attributeSummary(received.attributes)
    return fields


def receivedInstance(fields: dict, association) -> ReceivedInstance:
    """
    The L{ReceivedInstance} of an object a worker stored, from its
    L{instanceFields}; attributes sent as bytes of the data set are found
    there again, and made into pydicom's elements when first read.
    """
    head = fields.pop("head", None)
    received = ReceivedInstance(association=association, **fields)
    if head is not None:
        attributes = walkHead(head, received.transferSyntaxUID, complete=True, partial=True)
        if type(attributes) is HeadScan:
            received.scan = attributes
        elif attributes is not None:
            received.attributes = attributes
    return received


# -- the worker's side --------------------------------------------------------------


def answeredByCoordinator(storage) -> bool:
    """
    Whether a worker's response to a stored object (of an area with these
    L{dicomd.storage.receiver.StorageOptions}) waits for its
    coordinator to have taken it: only where the response promises more
    than a file under its final name (which the coordinator's next start
    indexes, whatever becomes of the report):
      - a reception command run with C{--exec-sync};
      - end-of-study work (C{-xcs}, C{-rns}), which the coordinator's
        study journal must name the object for, so that a crash does not
        lose it;
      - a study journal on disk before the response (C{--fsync}).
    """
    if storage.execOnReception and storage.execSync:
        return True
    if storage.execOnEndOfStudy or storage.renameOnEndOfStudy:
        return True
    return storage.sync and storage.tracksStudies


class CoordinatorLink(amp.AMP):
    """
    A worker's connection to its coordinator: what the worker's storage
    areas and acceptor report through (L{storedIn}, L{indexFor},
    L{statistics}), and where SIGHUP arrives (L{Reload}).

    @ivar daemon: the worker's L{dicomd.daemon.DicomdService}, reloaded
        on L{Reload}.
    """

    log = Logger()

    def __init__(self, reactor):
        amp.AMP.__init__(self)
        self.reactor = reactor
        self.daemon = None
        self._serials: Dict[object, int] = {}
        self._nextSerial = 0
        self._lost = defer.Deferred()
        #: L{dicomd.archive.index.areaKey} -> why the coordinator's index
        #: cannot record what is stored there, for the areas it cannot.
        self.indexFailures: Dict[str, str] = {}
        # The reports of this turn of the reactor not yet written, and the
        # responses that wait for them (L{report}).
        self._reports: List[bytes] = []
        self._reported: List[defer.Deferred] = []

    def connectionLost(self, reason):
        amp.AMP.connectionLost(self, reason)
        self._lost.callback(None)

    def whenLost(self) -> defer.Deferred:
        """
        A L{Deferred} that fires when the coordinator is gone.
        """
        return self._lost

    def sendBox(self, box) -> None:
        """
        Hand each box to the kernel at once rather than on the reactor's
        next iteration, after the reports waiting (L{report}), so that the
        coordinator reads everything in the order it happened.
        """
        if self.transport is None:
            raise error.ConnectionLost()
        self._write(b"".join(self._reports) + box.serialize())
        self._reports = []

    def _write(self, data: bytes) -> None:
        direct = directConnection(self.transport)
        if direct is None or not sendNow(direct, data):
            self.transport.write(data)

    def report(self, box) -> defer.Deferred:
        """
        Send a report (L{Reported}) with the others of this turn of the
        reactor, in one write once its events are handled.

        Each write wakes the coordinator, and on a busy machine the kernel
        may run the coordinator on this worker's core at once, ahead of
        it: with 32 senders a report took 19 µs of the worker's CPU and
        108-212 µs of its time.  The objects of one turn (as many as the
        associations with data waiting) now share one write.

        @return: a L{Deferred} that fires once the report is in the
            kernel: the response follows it, so that a worker killed in
            between has told the coordinator already.  It fails with
            L{error.ConnectionLost} if the coordinator is gone.
        """
        if self.transport is None:
            raise error.ConnectionLost()
        if not self._reported:
            # The turn's first report: the write waits for its end.
            self.reactor.callLater(0, self._sendReports)
        self._reports.append(box.serialize())
        reported = defer.Deferred()
        self._reported.append(reported)
        return reported

    def _sendReports(self) -> None:
        waiting, self._reported = self._reported, []
        if self.transport is None or self._lost.called:
            self._reports = []
            for reported in waiting:
                reported.errback(error.ConnectionLost())
            return
        if self._reports:
            self._write(b"".join(self._reports))
            self._reports = []
        for reported in waiting:
            reported.callback(None)

    @Reload.responder
    def reload(self):
        return {"reloaded": self.daemon.reload()}

    @IndexState.responder
    def indexState(self, area, failure):
        if failure:
            self.indexFailures[area] = failure
        else:
            self.indexFailures.pop(area, None)
        return {}

    def _serial(self, association) -> int:
        serial = self._serials.get(association)
        if serial is None:
            self._nextSerial += 1
            serial = self._serials[association] = self._nextSerial
            whenClosed = getattr(association, "whenClosed", None)
            if whenClosed is not None:
                whenClosed().addCallback(lambda _: self._closed(association))
        return serial

    def _closed(self, association) -> None:
        self.tell(AssociationClosed, association=self._serials.pop(association))

    def tell(self, command, **arguments) -> None:
        """
        Send the coordinator a command that needs no answer, unless it is
        gone (the worker is aborting its associations then).
        """
        if not self._lost.called:
            self.callRemote(command, **arguments)

    def storedIn(self, area: str, answered: bool = False):
        """
        The storage SCP observer of the area L{dicomd.archive.index.areaKey}
        C{area}: report each stored object (L{Reported}).

        @param answered: hold each response until the coordinator has
            taken the object (L{Stored}).
        """

        key = area.encode("utf-8")

        def reported(received: ReceivedInstance) -> Optional[defer.Deferred]:
            if received.path is None:
                return None
            return self.report(Reported.box(key, self._serial(received.association), instanceFields(received)))

        def stored(received: ReceivedInstance) -> Optional[defer.Deferred]:
            if received.path is None:
                return None
            asked = self.callRemote(Stored, area=area, association=self._serial(received.association), instance=instanceFields(received))
            # AMP ends the chain of an answered command with an errback
            # that logs and swallows what our callbacks raise: a refusal
            # must reach the response through a Deferred of our own.
            taken = defer.Deferred()
            asked.chainDeferred(taken)
            return taken.addCallback(self._taken, received)

        return stored if answered else reported

    def _taken(self, answer, received: ReceivedInstance) -> None:
        if answer["status"]:
            # Refused (a quota, an index that cannot record): the file
            # must not stay under its final name.
            try:
                os.unlink(received.path)
            except FileNotFoundError:
                pass
            raise StoreRefused(answer["status"], answer["comment"])

    def indexFor(self, area: str, quota=None) -> "RemoteIndex":
        return RemoteIndex(self, area, quota)

    def statistics(self) -> "RemoteStatistics":
        return RemoteStatistics(self)


@implementer(IPushProducer)
class ReportBacklog:
    """
    A worker's associations, as the producer of its reports to the
    coordinator: registered with the link's transport, which pauses it
    once the reports the coordinator has not read fill its buffer.  Each
    association open then stops reading (L{pauseReceiving
    <dicomd.net.association.Association.pauseReceiving>}), so that senders
    wait rather than the reports filling the worker's memory, and reads
    again once the coordinator has caught up.

    @ivar factory: the worker's acceptor factory, whose C{connections}
        are its associations' protocols.
    """

    log = Logger()

    def __init__(self, factory):
        self.factory = factory
        self._paused = []

    def pauseProducing(self) -> None:
        for proto in list(self.factory.connections):
            association = proto.association
            if association is not None:
                association.pauseReceiving()
                self._paused.append(association)
        self.log.warn(
            "The coordinator has not read this worker's reports: {count} associations wait until it does",
            count=len(self._paused),
        )

    def resumeProducing(self) -> None:
        paused, self._paused = self._paused, []
        for association in paused:
            association.resumeReceiving()
        if paused:
            self.log.info("The coordinator has read this worker's reports: {count} associations go on", count=len(paused))

    def stopProducing(self) -> None:
        self.resumeProducing()


class RemoteIndex:
    """
    The index of a worker's storage area: the coordinator indexes what
    the area's observer (L{CoordinatorLink.storedIn}) reports, so adding
    here records nothing, but refuses what the coordinator's index writer
    would; removing tells the coordinator.
    """

    #: Adding never waits: small objects are finished on the reactor thread.
    returnsAtOnce = True

    def __init__(self, link: CoordinatorLink, area: str, quota=None):
        """
        @param quota: the area's L{dicomd.archive.dcmqrcfg.Quota}, or C{None}.
        """
        self._link = link
        self._area = area
        self._quota = quota

    def add(self, received: ReceivedInstance) -> None:
        """
        Refuse an object larger than the study quota, and any object while
        the coordinator's index cannot record (L{IndexState}).

        @raise StoreRefused: 0xA700 (out of resources).
        """
        failure = self._link.indexFailures.get(self._area)
        if failure is not None:
            raise StoreRefused(OUT_OF_RESOURCES, "the index cannot record it: %s" % (failure,))
        checkSize(self._quota, received)

    def remove(self, received: ReceivedInstance) -> None:
        """
        In a worker thread: an object reported is removed again.
        """
        link = self._link
        link.reactor.callFromThread(link.tell, Unstored, area=self._area, sopInstanceUID=received.sopInstanceUID, path=received.path or "")

    def recover(self) -> None:
        """
        The coordinator recovers the index before it starts any worker.
        """


class RemoteStatistics:
    """
    A worker's L{dicomd.status.Statistics}: each event goes to the
    coordinator, whose status page counts those of every worker.
    """

    def __init__(self, link: CoordinatorLink):
        self._link = link

    def accepted(self, calledAETitle: str) -> None:
        self._link.tell(Accepted, title=calledAETitle)

    def rejected(self, calledAETitle: str) -> None:
        self._link.tell(Rejected, title=calledAETitle)

    def ended(self, title: str, association, outcome) -> None:
        counters = [
            {"operation": operation, "result": result, "count": count}
            for operation, outcomes in association.counters.items()
            for result, count in outcomes.items()
        ]
        self._link.tell(Ended, title=title, outcome=outcome or "", counters=counters)


# -- the coordinator's side ---------------------------------------------------------


class RemoteAssociation:
    """
    An association of a worker, as the coordinator's study tracker sees
    it: it closes when the worker says so, or dies.
    """

    def __init__(self):
        self._closed = defer.Deferred()
        self.closed = False

    def whenClosed(self) -> defer.Deferred:
        waiter = defer.Deferred()
        if self.closed:
            waiter.callback(None)
        else:
            self._closed.addBoth(lambda result: waiter.callback(None) or result)
        return waiter

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._closed.callback(None)


class OpenAssociation:
    """
    One open association of a worker, for the status page.
    """

    def __init__(self, entityTitle: str):
        self.entityTitle = entityTitle


class WorkerConnection(amp.AMP):
    """
    The coordinator's end of one worker's AMP connection: takes what the
    worker stores into the coordinator's storage services.
    """

    log = Logger()

    def __init__(self, pool: "WorkerPool", worker: "Worker"):
        amp.AMP.__init__(self)
        self.pool = pool
        self.worker = worker

    def ampBoxReceived(self, box):
        """
        Take a L{Reported} object to the pool at once; any other box as AMP
        does.  A worker reports every object it stores, and AMP's dispatch
        (finding the responder, parsing the arguments, a Deferred for the
        result) took a third of the coordinator's time for one (38
        microseconds with it, 27 without).  What the report's parsing or
        taking raises is handled as AMP handles what a responder raises.
        """
        if box.get(amp.COMMAND) != b"Reported":
            return amp.AMP.ampBoxReceived(self, box)
        try:
            area, association, instance = Reported.parse(box)
            self.pool.take(area, receivedInstance(instance, self.worker.association(association)))
        except Exception:
            self.unhandledError(Failure())

    @Stored.responder
    def stored(self, area, association, instance):
        received = receivedInstance(instance, self.worker.association(association))
        taken = self.pool.storeInto(area, received)
        return taken.addCallbacks(
            lambda _: {"status": 0, "comment": ""},
            lambda failure: self._refused(failure, received),
        )

    def _refused(self, failure, received: ReceivedInstance) -> dict:
        if failure.check(StoreRefused):
            return {"status": failure.value.status, "comment": str(failure.value)}
        self.log.failure("Recording {path}", failure, path=received.path)
        return {"status": OUT_OF_RESOURCES, "comment": "the coordinator cannot record it"}

    @Unstored.responder
    def unstored(self, area, sopInstanceUID, path):
        self.pool.unstore(area, sopInstanceUID, path)
        return {}

    @AssociationClosed.responder
    def associationClosed(self, association):
        self.worker.closeAssociation(association)
        return {}

    @Accepted.responder
    def accepted(self, title):
        self.worker.open[title] += 1
        self.pool.statistics.accepted(title)
        return {}

    @Rejected.responder
    def rejected(self, title):
        self.pool.statistics.rejected(title)
        return {}

    @Ended.responder
    def ended(self, title, outcome, counters):
        self.worker.open[title] = max(0, self.worker.open[title] - 1)
        self.pool.statistics.count(title, outcome, [(c["operation"], c["result"], c["count"]) for c in counters])
        return {}


class Worker(protocol.ProcessProtocol):
    """
    One worker process, as its coordinator follows it: its log (standard
    error, one event a line, relayed to the coordinator's log), its
    associations and its AMP connection.

    @ivar number: names it in the log (1..N; a replacement takes the
        number of the worker it replaces).
    @ivar open: AE title -> its associations open now.
    """

    log = Logger()

    def __init__(self, pool: "WorkerPool", number: int):
        self.pool = pool
        self.number = number
        self.startedAt = time.monotonic()
        self.open: Dict[str, int] = defaultdict(int)
        self.connection: Optional[WorkerConnection] = None
        self._associations: Dict[int, RemoteAssociation] = {}
        self._partial = b""
        self._ended = defer.Deferred()

    def association(self, serial: int) -> RemoteAssociation:
        association = self._associations.get(serial)
        if association is None:
            association = self._associations[serial] = RemoteAssociation()
        return association

    def closeAssociation(self, serial: int) -> None:
        association = self._associations.pop(serial, None)
        if association is not None:
            association.close()

    def errReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._relay(line.decode("utf-8", "replace"))

    def _relay(self, line: str) -> None:
        name, _, text = line.partition(" ")
        try:
            level = LogLevel.levelWithName(name)
        except Exception:
            level, text = LogLevel.info, line
        self.log.emit(level, "worker {number}: {text}", number=self.number, text=text)

    def whenEnded(self) -> defer.Deferred:
        waiter = defer.Deferred()
        self._ended.addBoth(lambda result: waiter.callback(None) or result)
        return waiter

    def processEnded(self, reason) -> None:
        if self._partial:
            self._relay(self._partial.decode("utf-8", "replace"))
        for association in self._associations.values():
            association.close()
        self._associations.clear()
        self.open.clear()
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.loseConnection()
        self._ended.callback(None)
        self.pool.workerEnded(self, reason)


class WorkerPool(service.Service):
    """
    The coordinator's workers: started once the coordinator's services
    run (the index recovered, the studies of a killed run ended), each
    replaced when it dies, stopped (SIGTERM, each with its own grace
    period) before the coordinator ends its studies.

    @ivar count: how many workers run.
    @ivar command: the front door and its arguments a worker is built
        from (see L{dicomd.workerprocess}).
    @ivar daemon: the coordinator's L{dicomd.daemon.DicomdService}, set by
        it: its storage services take what workers store.
    @ivar ports: the listening services whose sockets the workers adopt,
        set by the daemon.
    """

    log = Logger()

    #: Seconds beyond the grace period a stopping worker gets before it is
    #: killed.
    STOP_MARGIN = 10.0

    def __init__(self, count: int, command: List[str], *, reactor=None, executable: str = sys.executable):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.count = count
        self.command = list(command)
        self.executable = executable
        self.daemon = None
        self.ports: List = []
        self.workers: List[Worker] = []
        #: L{dicomd.archive.index.areaKey} -> why its index cannot record,
        #: for the areas whose index cannot (told to every worker).
        self.indexFailures: Dict[str, str] = {}

    @property
    def statistics(self):
        return self.daemon.statistics

    @property
    def associations(self) -> List[OpenAssociation]:
        """
        The workers' open associations, for the status page.
        """
        return [OpenAssociation(title) for worker in self.workers for title, n in worker.open.items() for _ in range(n)]

    def startService(self) -> None:
        service.Service.startService(self)
        for number in range(1, self.count + 1):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        worker = Worker(self, number)
        connection = worker.connection = WorkerConnection(self, worker)
        childFDs = {0: "w", 1: "r", 2: "r", COORDINATOR_FD: theirs.fileno()}
        for offset, port in enumerate(self.ports):
            childFDs[COORDINATOR_FD + 1 + offset] = port.fileno()
        argv = [self.executable, "-m", "dicomd.workerprocess"] + self.command
        try:
            process = self.reactor.spawnProcess(worker, self.executable, argv, env=os.environ, childFDs=childFDs)
        finally:
            theirs.close()
        self.reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, OneConnection(connection))
        ours.close()
        for area, failure in self.indexFailures.items():
            connection.callRemote(IndexState, area=area, failure=failure)
        self.workers.append(worker)
        self.log.info("Worker {number} started (pid {pid})", number=number, pid=process.pid)

    def workerEnded(self, worker: Worker, reason) -> None:
        self.workers.remove(worker)
        if not self.running:
            return
        self.log.error(
            "Worker {number} ended ({why}); its associations ended, another takes its place",
            number=worker.number,
            why=reason.getErrorMessage(),
        )
        lived = time.monotonic() - worker.startedAt
        self.reactor.callLater(0 if lived >= RESPAWN_DELAY else RESPAWN_DELAY, self._respawn, worker.number)

    def _respawn(self, number: int) -> None:
        if self.running:
            self._spawn(number)

    def reload(self) -> defer.Deferred:
        """
        SIGHUP: each worker reads the configuration file again.
        """
        asked = [worker.connection.callRemote(Reload) for worker in self.workers if worker.connection.transport is not None]
        return defer.DeferredList(asked, consumeErrors=True)

    def stopService(self) -> defer.Deferred:
        """
        SIGTERM each worker (which stops listening, lets its associations
        finish for the grace period, then aborts them); kill those still
        running after the grace period and L{STOP_MARGIN}.
        """
        service.Service.stopService(self)
        workers = list(self.workers)
        ended = defer.gatherResults([worker.whenEnded() for worker in workers])
        for worker in workers:
            _signal(worker, "TERM")
        grace = self.daemon.config.limits.shutdownGrace + self.STOP_MARGIN
        timer = self.reactor.callLater(grace, lambda: [_signal(worker, "KILL") for worker in workers])
        return ended.addBoth(lambda _: timer.cancel() if timer.active() else None)

    # -- what workers store ------------------------------------------------------------

    def _storage(self, area: str):
        for storage in self.daemon.storagesInForce():
            if storage.area == area:
                return storage
        raise StoreRefused(OUT_OF_RESOURCES, "no storage area %s in force" % (area,))

    def indexFailing(self, area: str, failure: Optional[str]) -> None:
        """
        The index of C{area} stopped recording (C{failure} says why) or
        records again (C{None}): tell every worker (L{IndexState}).
        """
        if failure is None:
            self.indexFailures.pop(area, None)
        else:
            self.indexFailures[area] = failure
        for worker in self.workers:
            if worker.connection.transport is not None:
                worker.connection.callRemote(IndexState, area=area, failure=failure or "")

    def take(self, area: str, received: ReceivedInstance) -> None:
        """
        Take an object a worker stored and acknowledged (L{Reported}):
        queue its index row and forwarding queue entries, which nothing
        refuses any more, then track its study and run its reception
        command.
        """
        try:
            storage = self._storage(area)
        except StoreRefused as e:
            self.log.error("Not indexing {path}: {error}; the next start indexes it", path=received.path, error=str(e))
            return
        if storage.writer is not None:
            storage.writer.take(received)
        acted = defer.maybeDeferred(storage.receiver.actions.instanceStored, received)
        acted.addErrback(lambda failure: self.log.failure("Acting on {path}", failure, path=received.path))

    def storeInto(self, area: str, received: ReceivedInstance) -> defer.Deferred:
        """
        Take an object a worker stored, whose response waits (L{Stored}):
        queue its index row and forwarding queue entries (the index writer
        writes them behind the response, and deletes a file it replaced),
        then track its study and run its reception command.
        """
        try:
            storage = self._storage(area)
        except StoreRefused:
            return defer.fail()
        writer = storage.writer
        recorded = defer.succeed(None) if writer is None else defer.maybeDeferred(writer.add, received)
        recorded.addCallback(lambda _: storage.receiver.actions.instanceStored(received))
        return recorded

    def unstore(self, area: str, sopInstanceUID: str, path: str) -> None:
        try:
            storage = self._storage(area)
        except StoreRefused:
            return
        if storage.writer is not None:
            storage.writer.remove(ReceivedInstance(sopInstanceUID=sopInstanceUID, path=path or None, **_NOTHING))


#: The fields of a L{ReceivedInstance} that removing it does not read.
_NOTHING = dict(sopClassUID="", transferSyntaxUID="", callingAETitle="", calledAETitle="", peerHost="", receivedAt=0.0)


class OneConnection(protocol.Factory):
    """
    A factory for one connection whose protocol exists already.
    """

    def __init__(self, proto):
        self._proto = proto

    def buildProtocol(self, addr):
        return self._proto


def _signal(worker: Worker, name: str) -> None:
    try:
        worker.transport.signalProcess(name)
    except error.ProcessExitedAlready:
        pass


class _PortService(service.Service):
    """
    A listening endpoint that stops listening when the service stops.

    @ivar where: an endpoint string (C{tcp:} or C{tcp6:}) or a
        L{dicomd.config.PortConfig}.
    @ivar port: the listening port, once started.
    """

    def __init__(self, where, factory, reactor):
        self.where = where
        self.factory = factory
        self.reactor = reactor
        self.port = None

    def stopService(self):
        service.Service.stopService(self)
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()


class SharedPort(_PortService):
    """
    The coordinator's side of a listening endpoint: it binds it (before
    privileges drop, as in one process) and never accepts on it; the
    workers adopt its socket (L{AdoptedPort}).  Plain TCP only: a worker
    wraps a L{dicomd.config.PortConfig}'s TLS around the socket itself.
    """

    def privilegedStartService(self) -> None:
        service.Service.privilegedStartService(self)
        from twisted.internet.endpoints import serverFromString

        if isinstance(self.where, str):
            listened = []
            serverFromString(self.reactor, self.where).listen(self.factory).addBoth(listened.append)
            if isinstance(listened[0], Failure):
                listened[0].raiseException()
            self.port = listened[0]
        else:
            self.port = self.reactor.listenTCP(self.where.port, self.factory)
        self.port.stopReading()

    def fileno(self) -> int:
        return self.port.fileno()


class AdoptedPort(_PortService):
    """
    A worker's side of a listening endpoint: the socket its coordinator
    bound, passed as descriptor C{fd}, accepting with C{factory} (wrapped
    in TLS when the L{dicomd.config.PortConfig} has it).
    """

    def __init__(self, fd: int, where, factory, reactor):
        _PortService.__init__(self, where, factory, reactor)
        self.fd = fd

    def privilegedStartService(self) -> None:
        service.Service.privilegedStartService(self)
        probe = socket.socket(fileno=self.fd)
        family = probe.family
        probe.detach()
        factory = self.factory
        tls = getattr(self.where, "tls", None)
        if tls is not None:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(tls, False, factory)
        self.port = acceptOneAtATime(self.reactor.adoptStreamPort(self.fd, family, factory))
        os.close(self.fd)


def acceptOneAtATime(port):
    """
    Make a worker's port accept one connection each time its socket is
    readable, and return it.

    A Twisted port accepts as many connections as are waiting (up to its
    C{numberAccepts}, which grows while it finds more): of the workers a
    burst of connections wakes (32 storescu at once, or the modalities
    that come back after a network outage), the first took nearly all of
    them and the others were left idle, with every core but one.  One at
    a time, each connection goes to whichever worker wakes for it first,
    and a busy worker, slower to wake, takes fewer (nginx's workers
    without C{multi_accept} do the same).
    """
    accept = port.doRead

    def doRead():
        port.numberAccepts = 1
        return accept()

    port.doRead = doRead
    return port


def sharable(where) -> bool:
    """
    Whether workers can share a listening endpoint: a port, or a C{tcp:}
    or C{tcp6:} endpoint string.
    """
    return not isinstance(where, str) or where.split(":", 1)[0] in ("tcp", "tcp6")
