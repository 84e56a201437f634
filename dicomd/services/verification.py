"""
The Verification service class, SCP role (PS3.4 Annex A): C-ECHO.
"""

from zope.interface import implementer

from dicomd.dimse.commands import responseTo
from dicomd.dimse.status import SUCCESS
from dicomd.interfaces import IService


@implementer(IService)
class VerificationSCP:
    """
    Answers every C-ECHO-RQ with success.
    """

    def messageReceived(self, association, context, message):
        association.send(context.contextID, responseTo(message, SUCCESS))
