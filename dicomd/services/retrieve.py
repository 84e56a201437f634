"""
The Query/Retrieve service class, C-MOVE and C-GET SCPs (PS3.4 C.4.2 and
C.4.3).

Both find the instances an identifier selects in the archive index and send
each as a C-STORE sub-operation, with the storage SCU of
L{dicomd.storage.scu}: C-MOVE on a new association to the move destination,
C-GET back on the requesting association (whose requestor took the SCP
role for the storage SOP classes).  An instance goes in the transfer syntax
it is stored in wherever the peer accepted that one (a C-MOVE proposes it
on a context of its own, L{storedContexts}), and is converted otherwise.  After each sub-operation a pending
response carries the remaining, completed, failed and warning counts;
C-CANCEL is honoured between sub-operations.  The final status is success,
0xB000 when some sub-operations failed (with the Failed SOP Instance UID
List), 0xA702 when all failed, or 0xFE00 when cancelled.  When the
requesting association ends first, the retrieval stops at once: a C-MOVE
aborts its association to the destination, even in the middle of a
sub-operation.
"""

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from pydicom.dataset import Dataset
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from dicomd.archive.index import DATABASE_ERRORS
from dicomd.archive.matching import QueryError, modelForSOPClass
from dicomd.dataset import decodeDataSet, encodeDataSet
from dicomd.dimse import status as _status
from dicomd.dimse.commands import responseTo
from dicomd.dimse.consumers import BufferedDataSet
from dicomd.errors import AssociationError
from dicomd.interfaces import IService
from dicomd.services.find import Cancellation, _refuse
from dicomd.storage.scu import FileDataSet, NotDICOM, StoreFailed, openFile
from dicomd.storage.sender import StorePipeline


@dataclass
class SubOperations:
    """
    The counters of a retrieval (PS3.4 C.4.2.1.2).
    """

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failedInstances: List[str] = field(default_factory=list)

    def record(self, sopInstanceUID: str, statusValue: Optional[int]) -> None:
        """
        Count one finished sub-operation; C{statusValue} is C{None} when it
        could not be sent at all.
        """
        self.remaining -= 1
        category = _status.category(statusValue) if statusValue is not None else _status.Category.FAILURE
        if category is _status.Category.SUCCESS:
            self.completed += 1
        elif category is _status.Category.WARNING:
            self.warning += 1
        else:
            self.failed += 1
            self.failedInstances.append(sopInstanceUID)

    def fields(self, final: bool) -> dict:
        return {
            "numberOfRemainingSuboperations": None if final and not self.remaining else self.remaining,
            "numberOfCompletedSuboperations": self.completed,
            "numberOfFailedSuboperations": self.failed,
            "numberOfWarningSuboperations": self.warning,
        }

    def finalStatus(self, cancelled: bool) -> int:
        if cancelled:
            return _status.CANCEL
        if self.failed and not (self.completed or self.warning):
            return _status.OUT_OF_RESOURCES_SUB_OPERATIONS
        if self.failed or self.warning:
            return _status.SUB_OPERATIONS_COMPLETE_WITH_FAILURES
        return _status.SUCCESS


class RetrieveSCP:
    """
    What C-MOVE and C-GET share: reading the identifier, finding the
    instances, running the sub-operations and answering.  Subclasses
    decide where the sub-operations go (L{destinationFor}, before the
    index is searched), open the association they go on
    (L{storageAssociation}) and end it (L{finished}).

    @ivar index: an L{dicomd.archive.asyncindex.AsyncArchiveIndex}.
    @ivar area: the storage area retrieved from (its name in the index).
    @ivar directory: that area's directory.
    @ivar models: the information models offered.
    @ivar checkIdentifier: refuse identifiers that break the rules
        (dcmqrscp's C{--check-move}).
    """

    log = Logger()
    operation = "C-RETRIEVE"

    def __init__(self, index, area: str, directory: str, *, models, checkIdentifier: bool = False, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.index = index
        self.area = area
        self.directory = directory
        self.models = models
        self.checkIdentifier = checkIdentifier
        self.reactor = reactor

    def messageReceived(self, association, context, message):
        return BufferedDataSet(lambda data: self._retrieve(association, context, message, data))

    @defer.inlineCallbacks
    def _retrieve(self, association, context, message, data: bytes):
        model = modelForSOPClass(message.affectedSOPClassUID)
        if model is None or model not in self.models or message.affectedSOPClassUID != context.abstractSyntax:
            _refuse(association, context, message, _status.SOP_CLASS_NOT_SUPPORTED, "%s model not supported" % self.operation)
            return
        try:
            destination = self.destinationFor(association, message)
        except _Refusal as e:
            _refuse(association, context, message, e.status, str(e))
            return
        cancellation = Cancellation(association, message.messageID)
        try:
            identifier = decodeDataSet(data, context.transferSyntax)
            instances = yield self.index.instancesFor(self.area, model, identifier, self.checkIdentifier)
        except QueryError as e:
            _refuse(association, context, message, e.status, str(e))
            return
        except ValueError as e:
            _refuse(association, context, message, _status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(e))
            return
        except DATABASE_ERRORS as e:
            self.log.error(
                "{operation} from {peer} failed: the index cannot answer: {why}",
                operation=self.operation,
                peer=association.callingAETitle,
                why=str(e),
            )
            _refuse(association, context, message, _status.UNABLE_TO_PROCESS, str(e))
            return
        except Exception as e:
            # A broken index, a full disk: the peer is told, not left waiting.
            self.log.failure("{operation} from {peer} failed", operation=self.operation, peer=association.callingAETitle)
            _refuse(association, context, message, _status.UNABLE_TO_PROCESS, str(e))
            return
        counts = SubOperations(len(instances))
        errorComment = None
        if instances and not cancellation.cancelled:
            try:
                target = yield self.storageAssociation(destination, instances)
            except Exception as e:
                # As dcmqrscp: every sub-operation failed (0xA702), and the
                # response lists them all.
                self.log.warn(
                    "{operation} from {peer}: cannot open the storage association: {why}",
                    operation=self.operation,
                    peer=association.callingAETitle,
                    why=str(e),
                )
                for instance in instances:
                    counts.record(instance.sopInstanceUID, None)
                errorComment = str(e)[:64]
            else:
                cancellation.abandoned.addCallback(lambda _: self.abandon(association, target))
                try:
                    yield self._subOperations(association, context, message, target, instances, counts, cancellation)
                except Exception:
                    # Whatever went wrong, the requestor still gets its final
                    # response, with the instances not sent as failed.
                    self.log.failure("{operation}: sub-operations stopped", operation=self.operation)
                    for instance in instances[len(instances) - counts.remaining :]:
                        counts.record(instance.sopInstanceUID, None)
                finally:
                    yield self.finished(target)
        abandoned = cancellation.abandoned.called
        final = counts.finalStatus(cancellation.cancelled)
        self.log.info(
            "{operation} from {peer}: {completed} completed, {failed} failed, {warned} warnings, {status}",
            operation=self.operation,
            peer=association.callingAETitle,
            completed=counts.completed,
            failed=counts.failed,
            warned=counts.warning,
            status="abandoned, its association ended" if abandoned else _status.describe(final),
        )
        if abandoned:
            return
        failedList = None
        if counts.failedInstances or (cancellation.cancelled and counts.remaining):
            failedList = Dataset()
            failedList.FailedSOPInstanceUIDList = counts.failedInstances
            failedList = encodeDataSet(failedList, context.transferSyntax)
        response = responseTo(
            message, final, hasDataSet=failedList is not None, errorComment=errorComment, **counts.fields(final=True)
        )
        association.send(context.contextID, response, failedList)

    @defer.inlineCallbacks
    def _subOperations(self, association, context, message, target, instances, counts: SubOperations, cancellation):
        """
        Send C{instances} through a L{StorePipeline} on C{target}: each
        file opened and read ahead while the peer stores the one before,
        and as many C-STOREs at once as C{target} allows.  A pending response follows
        each sub-operation's outcome, in order; C-CANCEL stops the sending
        of further instances, not the answers to those sent.
        """
        originator = self.moveOriginator(association)
        pipeline = StorePipeline(
            target,
            moveOriginatorAETitle=originator,
            moveOriginatorMessageID=message.messageID if originator else None,
            reactor=self.reactor,
        )
        waiting = deque(instances)
        sent = deque()
        readSize = target.readSize
        upcoming = self._fileFor(waiting[0], readSize) if waiting else None

        def finish(instance, statusValue):
            counts.record(instance.sopInstanceUID, statusValue)
            if counts.remaining:
                association.send(context.contextID, responseTo(message, _status.PENDING, **counts.fields(final=False)))

        try:
            while True:
                while waiting and pipeline.hasRoom and not cancellation.cancelled:
                    instance, dicomFile = waiting.popleft(), upcoming
                    if isinstance(dicomFile, Exception):
                        self.log.warn("{operation} of {uid} failed: {why}", operation=self.operation, uid=instance.sopInstanceUID, why=str(dicomFile))
                        finish(instance, None)
                    else:
                        pipeline.store(dicomFile)
                        sent.append(instance)
                        # The request goes to the kernel before the next
                        # file is read, while the peer stores it.
                        target.flush()
                    upcoming = self._fileFor(waiting[0], readSize) if waiting else None
                if not sent:
                    return
                instance = sent.popleft()
                _, stored = pipeline.next()
                try:
                    result = yield stored
                except StoreFailed as e:
                    self.log.warn("{operation} of {uid} failed: {why}", operation=self.operation, uid=instance.sopInstanceUID, why=str(e))
                    finish(instance, None)
                except AssociationError as e:
                    rest = [instance] + list(sent) + list(waiting)
                    self.log.warn(
                        "{operation} from {peer}: the association to {destination} failed ({why}): "
                        "the {count} sub-operations left failed",
                        operation=self.operation,
                        peer=association.callingAETitle,
                        destination=target.peerAETitle,
                        why=str(e),
                        count=len(rest),
                    )
                    for failed in rest:
                        counts.record(failed.sopInstanceUID, None)
                    # The C-STOREs still outstanding fail with the
                    # association; they are counted above.
                    while pipeline.outstanding:
                        pipeline.next()[1].addErrback(lambda failure: None)
                    return
                else:
                    finish(instance, result.status)
        finally:
            pipeline.close()
            if isinstance(upcoming, FileDataSet):
                upcoming.close()

    def _fileFor(self, instance, readSize: int):
        """
        The file of an instance in the storage area, opened and read ahead
        (L{openFile}: one read for its meta information and its first
        piece), or the exception that says why it cannot be sent.
        """
        try:
            return openFile(os.path.join(self.directory, instance.path), readSize)
        except (NotDICOM, OSError) as e:
            return e

    def destinationFor(self, association, message):
        """
        Where the sub-operations of C{message} go, decided before the index
        is searched, so that a request that cannot be served is refused
        whatever it matches.

        @return: what L{storageAssociation} takes.
        @raise _Refusal: the request is refused with that status.
        """
        raise NotImplementedError()

    def storageAssociation(self, destination, instances):
        """
        Open the association the sub-operations go on.

        @param destination: what L{destinationFor} returned.
        @param instances: the instances to send.
        @return: a L{Deferred} of the L{dicomd.net.association.Association}.
        """
        raise NotImplementedError()

    def abandon(self, association, target) -> None:
        """
        The requesting association ended during the sub-operations on
        C{target}: nobody is left to answer, so stop them at once rather
        than after the one under way.  By default nothing needs doing
        (C-GET's sub-operations go on the requesting association, and fail
        with it).
        """

    def moveOriginator(self, association) -> Optional[str]:
        return None

    def finished(self, target):
        return None


def storedContexts(instances) -> List[Tuple[str, List[str]]]:
    """
    One presentation context for each SOP class and transfer syntax the
    C{instances} are stored in, in the order first met: the contexts that
    send them as they are, without converting them.
    """
    pairs = dict.fromkeys((instance.sopClassUID, instance.transferSyntaxUID) for instance in instances)
    return [(sopClass, [transferSyntax]) for sopClass, transferSyntax in pairs]


class _Refusal(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Destination:
    """
    A move destination: how to reach an AE title.

    @ivar connect: called with the presentation contexts that carry the
        instances as they are stored (L{storedContexts}), returns a
        L{Deferred} of an association to the destination, on which it
        proposed those and the contexts the instances may be converted
        for.
    @ivar host: its host, for C{--move-host}.
    """

    aeTitle: str
    host: str
    connect: Callable


@implementer(IService)
class MoveSCP(RetrieveSCP):
    """
    C-MOVE SCP: sub-operations on a new association to the destination.

    @ivar destinations: called with an AE title, returns its L{Destination}
        or C{None} when it is unknown (0xA801).
    @ivar allowed: called with (requesting association, destination),
        returns a reason string to refuse the move, or C{None}
        (dcmqrscp's C{--move-aetitle}, C{--move-host}, C{--move-vendor}).
    """

    operation = "C-MOVE"

    def __init__(self, index, area, directory, *, destinations, allowed=None, **kwargs):
        RetrieveSCP.__init__(self, index, area, directory, **kwargs)
        self.destinations = destinations
        self.allowed = allowed or (lambda association, destination: None)

    def destinationFor(self, association, message) -> Destination:
        """
        The move destination, if it is known and allowed; else refused
        with 0xA801, even when nothing would match: a requestor asking for
        an AE we cannot reach learns so, rather than a success that sent
        nothing.
        """
        destination = self.destinations(message.moveDestination)
        if destination is None:
            why = "move destination %s unknown" % (message.moveDestination,)
            self.log.info("C-MOVE from {peer} refused: {why}", peer=association.callingAETitle, why=why)
            raise _Refusal(_status.MOVE_DESTINATION_UNKNOWN, why)
        refusal = self.allowed(association, destination)
        if refusal is not None:
            raise _Refusal(_status.MOVE_DESTINATION_UNKNOWN, refusal)
        return destination

    def storageAssociation(self, destination, instances):
        return destination.connect(storedContexts(instances))

    def abandon(self, association, target) -> None:
        """
        Abort the association to the destination: a C-STORE-RSP the
        requestor can no longer hear of is not worth waiting for, from a
        destination that may never send it.
        """
        if target.hasEnded:
            return
        self.log.info(
            "C-MOVE from {peer}: its association ended; aborting the association to {destination}",
            peer=association.callingAETitle,
            destination=target.peerAETitle,
        )
        target.abort()

    def moveOriginator(self, association) -> Optional[str]:
        return association.callingAETitle

    def finished(self, target):
        return target.release()


@implementer(IService)
class GetSCP(RetrieveSCP):
    """
    C-GET SCP: sub-operations on the requesting association.
    """

    operation = "C-GET"

    def destinationFor(self, association, message):
        return association

    def storageAssociation(self, destination, instances):
        return defer.succeed(destination)
