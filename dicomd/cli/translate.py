"""
Options into the configuration model (L{dicomd.config}): the
translations the front doors share, so that C{twistd dicomd}
(L{dicomd.tap}), C{dicomd storescp} and C{dicomd qrscp} mean the same by
the same option.

The DCMTK front doors parse into a dictionary with the keys of their
option declarations (C{writeTransferSyntax}, C{sort}...); twistd's flags
have names of their own and build the same values through
L{preferredSyntaxes}, L{recoder} and L{idleTimeout}.
"""

from typing import Callable, Optional, Tuple

from dicomd.cli.options import UsageError
from dicomd.storage import naming, recode
from dicomd.storage.receiver import StorageOptions
from dicomd.ul.negotiation import ACCEPTOR_PREFERENCES


def preferredSyntaxes(key: Optional[str]) -> Tuple[str, ...]:
    """
    The transfer syntaxes accepted, in preference order, for a DCMTK
    preference option's key such as C{"+xe"} (C{+x=} without one).
    """
    return tuple(ACCEPTOR_PREFERENCES[key or "+x="])


def idleTimeout(seconds: Optional[float]) -> Optional[float]:
    """
    The idle timeout of a command line's seconds: C{0} means none.
    """
    return seconds or None


def recodeOptions(values) -> recode.RecodeOptions:
    """
    The re-encoding DCMTK's output options ask for (C{-F}, C{+t?},
    C{+g}, C{-e}, C{+p}, C{-u}, C{+uc}, C{+cl}); those a front door does
    not declare stay at their defaults.
    """
    return recode.RecodeOptions(
        writeDataSetOnly=bool(values.get("writeDataSetOnly")),
        transferSyntax=values.get("writeTransferSyntax"),
        groupLength=values.get("groupLength") or recode.GROUP_LENGTH_RECALCULATE,
        undefinedLengths=bool(values.get("undefinedLengths")),
        padding=values.get("padding"),
        newVRs=values.get("newVRs", True) is not False,
        convertUN=bool(values.get("convertUN")),
        compressionLevel=values.get("compressionLevel", 6),
    )


def recoder(options: recode.RecodeOptions, *, bitPreserving: bool = False) -> Optional[Callable]:
    """
    What re-encodes received files as C{options} say, or C{None} to keep
    them as received.

    @param bitPreserving: C{+B} was given, which re-encoding contradicts.
    @raise UsageError: the options contradict C{+B} or could not write
        any file (L{recode.checkOptions}).
    """
    if bitPreserving and not options.isIdentity:
        raise UsageError("+B (--bit-preserving) cannot be combined with options that re-encode files")
    try:
        recode.checkOptions(options)
    except ValueError as e:
        raise UsageError(str(e))
    return None if options.isIdentity else recode.recoder(options)


def storageOptions(values, outputDirectory: str) -> StorageOptions:
    """
    The L{StorageOptions} of DCMTK's storage, naming, sorting, event and
    testing options (storescp's); those a front door does not declare stay
    at their defaults.

    @param outputDirectory: the directory stored into (C{-od}, or a
        dcmqrscp.cfg storage area).
    @raise UsageError: see L{recoder}.
    """
    sortMode, sortPrefix = values.get("sort") or (None, "")
    return StorageOptions(
        outputDirectory=outputDirectory,
        ignore=bool(values.get("ignore")),
        fileNames=values.get("fileNames") or naming.FileNameScheme.INSTANCE_UID,
        extension=values.get("extension") or "",
        sortMode=sortMode,
        sortPrefix=sortPrefix,
        execOnReception=values.get("execOnReception"),
        execOnEndOfStudy=values.get("execOnEndOfStudy"),
        renameOnEndOfStudy=bool(values.get("renameOnEndOfStudy")),
        endOfStudyTimeout=values.get("endOfStudyTimeout") or None,
        execSync=bool(values.get("execSync")),
        sleepAfter=values.get("sleepAfter") or 0,
        sleepDuring=values.get("sleepDuring") or 0,
        abortAfter=bool(values.get("abortAfter")),
        abortDuring=bool(values.get("abortDuring")),
        sync=bool(values.get("sync")),
        recode=recoder(recodeOptions(values), bitPreserving=bool(values.get("bitPreserving"))),
        stateDirectory=values.get("stateDirectory"),
    )
