"""
Re-encoding stored files, for storescp's output options that change the
bytes of a received object (C{-F}, C{+t?}, C{+g?}, C{+e}/C{-e}, C{+p},
C{-u}, C{+uc}, C{+cl}).

dicomd stores data sets bit for bit as received (storescp's C{+B}); only when
one of these options asks for it is a complete file read with pydicom and
written again, in a worker thread, before it is moved to its final name.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

GROUP_LENGTH_RECALCULATE = "+g="
GROUP_LENGTH_CREATE = "+g"
GROUP_LENGTH_REMOVE = "-g"


@dataclass(frozen=True)
class RecodeOptions:
    """
    How to rewrite a stored file.

    @ivar writeDataSetOnly: C{-F}: no preamble or File Meta Information.
    @ivar transferSyntax: C{+te}, C{+tb}, C{+ti}, C{+td}: the syntax to
        write, or C{None} for the received one (C{+t=}).
    @ivar groupLength: C{+g=}, C{+g} or C{-g}.
    @ivar undefinedLengths: C{-e}: sequences and items with undefined length.
    @ivar padding: C{+p f i}: align the file on f bytes and items on i
        bytes, or C{None} (C{-p}).
    @ivar newVRs: C{+u} (default); C{-u} writes UN/UT and the other post-1993
        VRs as OB.
    @ivar convertUN: C{+uc}: give elements received as UN their VR from the
        dictionary.
    @ivar compressionLevel: C{+cl}: zlib level for deflated syntaxes.
    """

    writeDataSetOnly: bool = False
    transferSyntax: Optional[str] = None
    groupLength: str = GROUP_LENGTH_RECALCULATE
    undefinedLengths: bool = False
    padding: Optional[Tuple[int, int]] = None
    newVRs: bool = True
    convertUN: bool = False
    compressionLevel: int = 6

    @property
    def isIdentity(self) -> bool:
        """
        Whether these options leave a received file as it is.
        """
        return self == RecodeOptions(compressionLevel=self.compressionLevel)
