"""
The archive behind the Query/Retrieve service class (PS3.4 Annex C), as
DCMTK's C{dcmqrscp} keeps it.

  - L{dicomd.archive.matching}: C-FIND matching rules (PS3.4 C.2.2.2) and
    the query keys and information models dcmqrscp supports; pure, no SQL.
  - L{dicomd.archive.charsets}: the character sets of C-FIND responses
    (Specific Character Set, PS3.5 6.1) and dcmqrscp's conversions of them.
  - L{dicomd.archive.index}: the relational index of stored instances,
    with L{dicomd.archive.sql} (the compiler of matching conditions) the
    only modules of the project that speak SQL.
  - L{dicomd.archive.reindexing}: rebuilding an area's rows from its files.
  - L{dicomd.archive.asyncindex}: the index for the reactor thread.
  - L{dicomd.archive.dcmqrcfg}: a reader for DCMTK's C{dcmqrscp.cfg}.
"""
