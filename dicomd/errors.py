"""
The ways an association, or a DIMSE request on it, can fail, as the
services and front doors that use an association see them.

An association is refused (A-ASSOCIATE-RJ, PS3.8 7.1.1.7) or ends early
(A-ABORT and A-P-ABORT, PS3.8 7.3 and 7.4, or a lost connection); the
requestor's ACSE timeout and the DIMSE timeout are local limits on how long
the peer may keep us waiting (PS3.8 9.1.4 leaves them to the
implementation); a request needs a presentation context that was accepted
for its SOP class (PS3.8 7.1.1.13).  L{dicomd.net} raises these; the
layers above catch them without depending on Twisted.
"""


class AssociationError(Exception):
    """
    Base of the ways an association, or a request on it, can fail.
    """


class AssociationRejected(AssociationError):
    """
    The peer answered A-ASSOCIATE-RJ.

    @ivar reject: the L{dicomd.ul.pdu.AAssociateRJ}.
    """

    def __init__(self, reject):
        super().__init__(describeRejection(reject))
        self.reject = reject


class AssociationAborted(AssociationError):
    """
    The association ended by A-ABORT, A-P-ABORT or a lost connection while
    something was still expected of it.
    """


class ACSETimeout(AssociationAborted):
    """
    The peer did not answer the A-ASSOCIATE-RQ within the ACSE timeout.
    """


class DIMSETimeout(AssociationError):
    """
    No response arrived within the DIMSE timeout; the association was
    aborted.
    """


class NoPresentationContext(AssociationError):
    """
    No accepted presentation context fits the request.
    """


def describeRejection(reject) -> str:
    """
    A-ASSOCIATE-RJ in words, as DCMTK's tools print it.
    """
    return "association rejected (%s)" % (reject.explanation,)
