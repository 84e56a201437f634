"""
The archive behind the Query/Retrieve service class (PS3.4 Annex C), as
DCMTK's C{dcmqrscp} keeps it.

  - L{dicomd.archive.matching}: C-FIND matching rules (PS3.4 C.2.2.2) and
    the query keys and information models dcmqrscp supports; pure, no SQL.
  - L{dicomd.archive.charsets}: the character sets of C-FIND responses
    (Specific Character Set, PS3.5 6.1) and dcmqrscp's conversions of them.
  - L{dicomd.archive.index}: the relational index of stored instances; the
    only module of the project that speaks SQL.
  - L{dicomd.archive.dcmqrcfg}: a reader for DCMTK's C{dcmqrscp.cfg}.
"""
