"""
The Query/Retrieve service class, C-FIND SCP (PS3.4 C.4.1), for the
Patient Root, Study Root and Patient/Study Only information models.

Matches are read from the archive index in a worker thread, a batch at a
time, and each batch goes out as pending responses while the next is read;
C-CANCEL stops them between responses with status 0xFE00.
"""

from typing import Optional

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from dicomd.archive.index import DATABASE_ERRORS
from dicomd.archive.matching import QueryError, modelForSOPClass
from dicomd.archive.responses import ResponseIdentifier, addRetrieveAETitle, encodeResponse
from dicomd.dataset import decodeDataSet, encodeDataSet
from dicomd.dimse import status as _status
from dicomd.dimse.commands import CFindRSP, encodeCommand, responseTo
from dicomd.dimse.consumers import BufferedDataSet
from dicomd.interfaces import IService
from dicomd.ul.negotiation import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN

#: How many matches are read from the index per thread job.
BATCH = 100


class Cancellation:
    """
    Whether the peer has cancelled a request (C-CANCEL) or gone away.

    @ivar cancelled: C-CANCEL-RQ for the request arrived, or its
        association ended before the final response.
    @ivar abandoned: a L{Deferred} that fires with C{None} if the
        association ends before the final response: nobody is left to
        answer, so work done for the request can stop at once rather than
        at its next step.
    """

    def __init__(self, association, messageID: int):
        self.cancelled = False
        self.abandoned = defer.Deferred()
        self._association = association
        association.onCancel(messageID, self.cancel)

    def cancel(self) -> None:
        self.cancelled = True
        if self._association.hasEnded and not self.abandoned.called:
            self.abandoned.callback(None)


def _encodeMatch(match, transferSyntax: str, retrieveAETitle: str) -> bytes:
    """
    Encode a response identifier with its Retrieve AE Title: directly in
    the little endian uncompressed syntaxes when it is the index's
    L{ResponseIdentifier} (several times faster than pydicom's writer), and
    through pydicom otherwise, as for the C{Dataset}s of a character set
    conversion (L{dicomd.archive.charsets.ConvertingIndex}).
    """
    littleEndian = transferSyntax in (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
    implicit = transferSyntax == IMPLICIT_VR_LITTLE_ENDIAN
    if isinstance(match, ResponseIdentifier):
        if littleEndian and retrieveAETitle.isascii():
            return match.encode(implicit, retrieveAETitle)
        match = match.dataset()
    addRetrieveAETitle(match, retrieveAETitle)
    if littleEndian:
        data = encodeResponse(match, implicit)
        if data is not None:
            return data
    return encodeDataSet(match, transferSyntax)


def _refuse(association, context, message, statusValue: int, comment: str) -> None:
    association.send(context.contextID, responseTo(message, statusValue, errorComment=comment[:64]))


@implementer(IService)
class FindSCP:
    """
    Answers C-FIND-RQ from one storage area of the archive.

    @ivar index: an L{dicomd.archive.asyncindex.AsyncArchiveIndex}.
    @ivar area: the storage area searched (its name in the index).
    @ivar models: the information models offered, from
        L{dicomd.archive.matching.MODELS}.
    @ivar checkIdentifier: refuse identifiers that break the hierarchical
        rules (dcmqrscp's C{--check-find}).
    @ivar retrieveAETitle: the Retrieve AE Title (0008,0054) put in each
        match, as dcmqrscp does; C{None} for the called AE title.
    """

    log = Logger()

    def __init__(self, index, area: str, *, models, checkIdentifier: bool = False, retrieveAETitle: Optional[str] = None):
        self.index = index
        self.area = area
        self.models = models
        self.checkIdentifier = checkIdentifier
        self.retrieveAETitle = retrieveAETitle

    def messageReceived(self, association, context, message):
        return BufferedDataSet(lambda data: self._find(association, context, message, data))

    @defer.inlineCallbacks
    def _find(self, association, context, message, data: bytes):
        model = modelForSOPClass(message.affectedSOPClassUID)
        if model is None or model not in self.models or message.affectedSOPClassUID != context.abstractSyntax:
            _refuse(association, context, message, _status.SOP_CLASS_NOT_SUPPORTED, "C-FIND model not supported")
            return
        cancellation = Cancellation(association, message.messageID)
        try:
            identifier = decodeDataSet(data, context.transferSyntax)
            responses = yield self.index.find(self.area, model, identifier, self.checkIdentifier)
        except QueryError as e:
            self.log.info("C-FIND from {peer} refused: {why}", peer=association.callingAETitle, why=str(e))
            _refuse(association, context, message, e.status, str(e))
            return
        except ValueError as e:
            _refuse(association, context, message, _status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(e))
            return
        except DATABASE_ERRORS as e:
            # A database that is down or locked: a fact of operation, told
            # in one line; the peer may try again.
            self.log.error("C-FIND from {peer} failed: the index cannot answer: {why}", peer=association.callingAETitle, why=str(e))
            _refuse(association, context, message, _status.UNABLE_TO_PROCESS, str(e))
            return
        except Exception as e:
            # A broken index, a full disk: the peer is told, not left waiting.
            self.log.failure("C-FIND from {peer} failed", peer=association.callingAETitle)
            _refuse(association, context, message, _status.UNABLE_TO_PROCESS, str(e))
            return
        matches = 0
        final = comment = None
        pending = CFindRSP(
            messageIDBeingRespondedTo=message.messageID,
            affectedSOPClassUID=message.affectedSOPClassUID,
            status=_status.PENDING,
            hasDataSet=True,
        )
        command = encodeCommand(pending)
        retrieveAETitle = self.retrieveAETitle or association.calledAETitle
        try:
            while not cancellation.cancelled:
                # Not faster than the peer reads: a peer that never reads
                # must not have every match of the query queued for it.
                yield association.whenWritable()
                batch = yield responses.next(BATCH)
                if not batch:
                    break
                for match in batch:
                    if cancellation.cancelled:
                        break
                    data = _encodeMatch(match, context.transferSyntax, retrieveAETitle)
                    association.send(context.contextID, pending, data, command)
                    matches += 1
        except Exception as e:
            self.log.failure("C-FIND from {peer} stopped after {matches} matches", peer=association.callingAETitle, matches=matches)
            final, comment = _status.UNABLE_TO_PROCESS, str(e)[:64]
        finally:
            yield responses.close()
        if final is None:
            final = _status.CANCEL if cancellation.cancelled else _status.SUCCESS
        self.log.info(
            "C-FIND {model} from {peer}: {matches} matches, {status}",
            model=model.name,
            peer=association.callingAETitle,
            matches=matches,
            status=_status.describe(final),
        )
        association.send(context.contextID, responseTo(message, final, errorComment=comment))
