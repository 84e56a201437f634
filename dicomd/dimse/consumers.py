"""
Two simple consumers of a DIMSE message's data set (PS3.7 section 6.3.1,
the data set that follows a command set in P-DATA, PS3.8 Annex E).

An association streams each data set it receives into an
L{dicomd.interfaces.IDataSetConsumer}.  A large one (C-STORE) goes to the
consumer its service returns; these two cover the rest:
L{BufferedDataSet} keeps a small one (a C-FIND identifier or response,
the failed-instance list of a C-MOVE response) in memory, and
L{DiscardedDataSet} reads one nobody wants (after a refusal, or a data set
a C-ECHO or C-CANCEL should not have had).  They depend on the interface
only, not on Twisted.
"""

from typing import Callable

from zope.interface import implementer

from dicomd.dimse.pdv import DIMSEProtocolError
from dicomd.interfaces import IDataSetConsumer

#: The largest data set we keep in memory for a response (a C-FIND match,
#: a C-MOVE failed-instance list).
MAXIMUM_RESPONSE_DATA_SET = 16 << 20


@implementer(IDataSetConsumer)
class BufferedDataSet:
    """
    Collects a small data set in memory and passes it on when complete.
    """

    def __init__(self, whenComplete: Callable[[bytes], None], limit: int = MAXIMUM_RESPONSE_DATA_SET):
        self._parts = []
        self._length = 0
        self._limit = limit
        self._whenComplete = whenComplete

    def write(self, fragment):
        self._length += len(fragment)
        if self._length > self._limit:
            raise DIMSEProtocolError("data set larger than %d bytes where a small one was expected" % self._limit)
        self._parts.append(fragment)

    def finish(self):
        self._whenComplete(b"".join(self._parts))

    def abandon(self, reason):
        self._parts = []


@implementer(IDataSetConsumer)
class DiscardedDataSet:
    """
    Reads a data set nobody wants, then runs C{whenComplete}.
    """

    def __init__(self, whenComplete: Callable[[], None]):
        self._whenComplete = whenComplete

    def write(self, fragment):
        pass

    def finish(self):
        self._whenComplete()

    def abandon(self, reason):
        pass
