"""
The interfaces between an association and the services it carries.

An association hands each request it receives to the L{IService} registered
for that message's command field.  A request with a data set (C-STORE, or
the identifier of C-FIND, C-MOVE and C-GET) streams it into the
L{IDataSetConsumer} the service returns, fragment by fragment, so the
service decides whether it goes to disk, to memory or nowhere.  A service
that sends a large data set (a C-STORE sub-operation, storescu) gives the
association an L{IDataSetSource} to read it from as the peer takes it.

The data sets are those of DIMSE messages (PS3.7 section 6.3.1), carried
in P-DATA after their command set (PS3.8 Annex E).  The failures an
association reports to the services are in L{dicomd.errors}, the consumers
every association needs in L{dicomd.dimse.consumers}.
"""

from zope.interface import Attribute, Interface


class IDataSetConsumer(Interface):
    """
    Receives one message's data set as it arrives.
    """

    def write(fragment):
        """
        The next piece of the data set, in order.

        @param fragment: a C{memoryview} (or bytes); it stays valid after
            the call, so it may be kept without copying.
        """

    def finish():
        """
        The last fragment has been written.
        """

    def abandon(reason):
        """
        The association ended before the data set did; clean up whatever
        was written.

        @param reason: a short description, for the log.
        """


class IDataSetSource(Interface):
    """
    An encoded data set to be read in order, such as the part of a file
    after its File Meta Information.
    """

    length = Attribute("The number of bytes still to read.")

    def read(size):
        """
        Return the next C{size} bytes (fewer only at the end).

        @raise OSError: the source cannot be read; the message cannot be
            completed and the association is aborted.
        """

    def close():
        """
        Release the source; called once, whether or not it was read to the
        end.
        """


class IService(Interface):
    """
    Performs the requests of one DIMSE operation (C-ECHO, C-STORE...).
    """

    def messageReceived(association, context, message):
        """
        A request arrived.  The service answers later through
        C{association.send}, from the reactor thread.

        @param association: the L{dicomd.net.association.Association}.
        @param context: the L{dicomd.ul.negotiation.NegotiatedContext} the
            request came on.
        @param message: the decoded command set.
        @return: when C{message.hasDataSet}, the L{IDataSetConsumer} for its
            data set; otherwise C{None}.
        """
