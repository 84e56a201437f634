"""
The debug log level of L{dicomd.net}: whether it is shown, and how UIDs
are written in it.

At the debug level an association's protocol logs every PDU sent and
received (L{dicomd.ul.trace.PDUTrace}) and its association every DIMSE
message (L{dicomd.dimse.commands.Message.describe}), as DCMTK's tools do
with C{-d}.  Those descriptions cost time to build, so they are built
only when L{enabled}: a storage SCP whose log stops at C{info} spends
nothing on them.
"""

from twisted.logger import LogLevel

from dicomd import observers


def enabled() -> bool:
    """
    Whether debug messages are shown: the level of L{dicomd.observers},
    which C{twistd dicomd -d} and the front doors' C{-d} set.  Asked once
    per connection.
    """
    return observers.level <= LogLevel.debug


def uidName(uid: str) -> str:
    """
    A UID with its name from the DICOM registry when it has one:
    C{"1.2.840.10008.1.2.1 (Explicit VR Little Endian)"}.
    """
    from pydicom.uid import UID_dictionary

    entry = UID_dictionary.get(uid)
    return "%s (%s)" % (uid, entry[0]) if entry else uid
