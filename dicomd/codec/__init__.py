"""
Data sets as bytes (PS3.5), pure: value representations (L{vr}) and data
elements in the three uncompressed encodings (L{elements}).

This package sits at the bottom of the import graph beside L{dicomd.ul}
and L{dicomd.dimse}: it imports neither Twisted nor pydicom, and every
module that reads or writes element headers (command sets, Part 10 files,
re-encoding, the storage SCU, C-FIND responses) does it through here.
"""
