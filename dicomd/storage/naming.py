"""
File and directory names for received instances, as DCMTK 3.6.8's storescp
makes them (C{storescp.cc}: C{storeSCP}, C{storeSCPCallback},
C{mapCharacterAndAppendToString}, C{renameOnEndOfStudy}), made safe.

File names (one scheme per receiver, chosen by L{FileNamer}):

  - C{-uf} (default): C{<MOD>.<SOPInstanceUID><EXT>}, the UID of the
    C-STORE-RQ command (L{defaultFileName});
  - C{+uf}: C{<MOD>.X.<new UID><EXT>} (L{uniqueFileName});
  - C{-tn}: C{YYYYMMDDHHMMSSmmm.<MOD><EXT>}, or C{YYYYMMDDHHMMSSmmm_NNNN.<MOD><EXT>}
    when the plain name would repeat the previous one (L{TimeNames});
  - C{--rename-on-eostudy}: the first two characters of the modality code and
    a six digit counter, C{SR000001} (L{renamedFileNames}); C{-fe} is not
    appended to these.

C{<MOD>} is L{modalityPrefix}, C{<EXT>} the C{-fe} extension, appended as
given.  Study subdirectories: C{-ss} L{timestampDirectoryName}, C{-su}
L{studyDirectoryName}, C{-sp} L{patientDirectoryName}.  Times are the
receiver's local wall clock, milliseconds truncated, as DCMTK's C{OFDateTime}
gives them; the caller passes them in, and the new UIDs for C{+uf}, so that
nothing here reads a clock or a random source.

Where we deviate from DCMTK to stay safe: every name made here passes
through L{safeComponent}, so a name built from network data is always one
harmless path component.  DCMTK 3.6.8 only replaces C{/} in the SOP
instance UID (default names), in C{-su}'s directory name and in C{-sp}'s;
it writes C{\\}, control characters and C{-fe}'s and C{-ss}'s separators as
they are, and with an empty C{-su} prefix a Study Instance UID of C{..}
names the parent of the output directory.  For every well-formed UID and
every option value without separators our names are DCMTK's, byte for byte.
L{joinUnder} checks the final path again before anything is written.
"""

import os
from datetime import datetime
from enum import Enum
from typing import Callable, Iterable, List, Optional, Tuple

from dicomd.storage.sopclasses import modalityPrefix

#: C{-sp}'s directory name when the Patient's Name is empty or absent.
ANONYMOUS = "ANONYMOUS"

# fmt: off
#: C{mapCharacterAndAppendToString} for Latin-1 bytes 0xC0-0xFF (C{À} to
#: C{ÿ}), one row of DCMTK's table per line.  Below 0xC0 ASCII letters and
#: digits are kept and every other byte becomes C{_}.
_LATIN1_LETTERS = (
    "A", "A", "A", "A", "Ae", "A", "A", "C", "E", "E", "E", "E", "I", "I", "I", "I",
    "D", "N", "O", "O", "O", "O", "Oe", "_", "O", "U", "U", "U", "Ue", "Y", "_", "ss",
    "a", "a", "a", "a", "ae", "a", "a", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    "d", "n", "o", "o", "o", "o", "oe", "_", "o", "u", "u", "u", "ue", "y", "_", "y",
)
# fmt: on

#: Byte value -> its ASCII replacement in a C{-sp} directory name.
_TRANSLITERATION = (
    tuple(chr(byte) if chr(byte).isascii() and chr(byte).isalnum() else "_" for byte in range(0xC0)) + _LATIN1_LETTERS
)


#: The longest file name, in bytes, that common file systems take (Linux's
#: C{NAME_MAX}).
NAME_MAX = 255


#: C{_} for the path separators and the control characters.
_UNSAFE = {code: "_" for code in [*range(0x20), ord("/"), ord("\\"), 0x7F]}


def safeComponent(name: str) -> str:
    """
    Make C{name} one harmless path component: C{/}, C{\\}, NUL and the
    other control characters become C{_}, and a name that is empty or made
    only of dots (C{.}, C{..}) becomes as many underscores.

    Names DCMTK would write unchanged (a well-formed UID, a modality code)
    come back unchanged.

    @raise ValueError: the name is longer than L{NAME_MAX} bytes in UTF-8.
        Only a malformed value makes one (a UID has at most 64
        characters): it is refused rather than cut, since cutting could
        give two objects one name, and refused here, as data that cannot
        be understood (0xC000), rather than by the file system, whose error
        would read as "out of resources" (0xA700) and invite a retry.
    """
    safe = name.translate(_UNSAFE)
    if safe.strip(".") == "":
        return "_" * max(len(safe), 1)
    if len(safe) > NAME_MAX // 4:
        size = len(safe.encode("utf-8", "surrogatepass"))
        if size > NAME_MAX:
            raise ValueError("a name of %d bytes is longer than a file name may be: %r..." % (size, safe[:64]))
    return safe


def joinUnder(directory: str, *components: str) -> str:
    """
    Join path components under an output directory, refusing any result
    that would not lie inside it.

    @param components: single path components, each already made safe by
        L{safeComponent} (every name built in this module is).
    @raise ValueError: a component is not a single safe name, or the joined
        path is not strictly inside C{directory}.
    """
    for component in components:
        if component != safeComponent(component):
            raise ValueError("unsafe path component %r" % (component,))
    path = os.path.join(directory, *components)
    root = os.path.abspath(directory)
    full = os.path.abspath(path)
    if full == root or os.path.commonpath([root, full]) != root:
        raise ValueError("%r is not inside %r" % (path, directory))
    return path


def fileTimeStamp(when: datetime) -> str:
    """
    C{-tn}'s time stamp: C{YYYYMMDDHHMMSSmmm}.
    """
    return "%04d%02d%02d%02d%02d%02d%03d" % (
        when.year,
        when.month,
        when.day,
        when.hour,
        when.minute,
        when.second,
        when.microsecond // 1000,
    )


def directoryTimeStamp(when: datetime) -> str:
    """
    The time stamp in C{-ss} and C{-sp} directory names: C{YYYYMMDD_HHMMSSmmm}.
    """
    stamp = fileTimeStamp(when)
    return stamp[:8] + "_" + stamp[8:]


def defaultFileName(sopClassUID: str, sopInstanceUID: str, extension: str = "") -> str:
    """
    storescp's default file name, C{<MOD>.<SOPInstanceUID><EXT>}.

    @param sopClassUID: the affected SOP class UID of the C-STORE-RQ.
    @param sopInstanceUID: the affected SOP instance UID of the C-STORE-RQ.
    @param extension: C{-fe}'s extension, appended as it is (no dot added).
    """
    return safeComponent("%s.%s%s" % (modalityPrefix(sopClassUID), sopInstanceUID, extension))


def uniqueFileName(sopClassUID: str, newUID: str, extension: str = "") -> str:
    """
    C{+uf}'s file name, C{<MOD>.X.<new UID><EXT>}.

    @param newUID: a UID freshly generated for this file.
    """
    return safeComponent("%s.X.%s%s" % (modalityPrefix(sopClassUID), newUID, extension))


class TimeNames:
    """
    C{-tn}'s file names, C{YYYYMMDDHHMMSSmmm.<MOD><EXT>}, and the serial
    number storescp inserts when that name would repeat the last one.

    As in DCMTK, the candidate is compared with the last name given out only:
    the first repeat becomes C{..._0000.<MOD>}, the next one in the same
    millisecond C{..._0001.<MOD>}, and the first name of a new millisecond
    drops the serial again.  Two names of the same millisecond but different
    modality codes are different names, so neither gets a serial.

    @ivar _serial: the serial in the last name, or C{None} when it had none
        (DCMTK's C{timeNameCounter} of -1).
    @ivar _lastName: the last name given out, or C{None} before the first.
    """

    def __init__(self) -> None:
        self._serial: Optional[int] = None
        self._lastName: Optional[str] = None

    def nextName(self, when: datetime, sopClassUID: str, extension: str = "") -> str:
        """
        The name for a file written at C{when}.
        """
        stamp = fileTimeStamp(when)
        tail = "." + modalityPrefix(sopClassUID) + extension
        if _timeName(stamp, self._serial, tail) == self._lastName:
            self._serial = 0 if self._serial is None else self._serial + 1
        else:
            self._serial = None
        self._lastName = _timeName(stamp, self._serial, tail)
        return self._lastName

    def newStudy(self) -> None:
        """
        Forget the serial because a new study subdirectory was just created
        (storescp does not when it reuses an existing one).
        """
        self._serial = None


def _timeName(stamp: str, serial: Optional[int], tail: str) -> str:
    """
    A C{-tn} file name from its time stamp, serial and C{.<MOD><EXT>} tail.
    """
    if serial is None:
        return safeComponent(stamp + tail)
    return safeComponent("%s_%04d%s" % (stamp, serial, tail))


class FileNameScheme(Enum):
    """
    storescp's "filename generation" options.
    """

    INSTANCE_UID = "-uf"
    UNIQUE = "+uf"
    TIME = "-tn"


class FileNamer:
    """
    Names each received instance by one L{FileNameScheme}, as storescp's
    C{storeSCP} does.

    @ivar _clock: returns the current local time (C{-tn}).
    @ivar _uidGenerator: returns a new UID (C{+uf}).
    """

    def __init__(
        self,
        scheme: FileNameScheme = FileNameScheme.INSTANCE_UID,
        extension: str = "",
        clock: Optional[Callable[[], datetime]] = None,
        uidGenerator: Optional[Callable[[], str]] = None,
    ) -> None:
        """
        @param extension: C{-fe}'s extension.
        @raise ValueError: C{-tn} without a clock or C{+uf} without a UID
            generator.
        """
        if scheme is FileNameScheme.TIME and clock is None:
            raise ValueError("time names need a clock")
        if scheme is FileNameScheme.UNIQUE and uidGenerator is None:
            raise ValueError("unique names need a UID generator")
        self.scheme = scheme
        self.extension = extension
        self._clock = clock
        self._uidGenerator = uidGenerator
        self._timeNames = TimeNames()

    def fileName(self, sopClassUID: str, sopInstanceUID: str) -> str:
        """
        The name for the instance of a C-STORE-RQ.
        """
        if self.scheme is FileNameScheme.UNIQUE:
            return uniqueFileName(sopClassUID, self._uidGenerator(), self.extension)
        if self.scheme is FileNameScheme.TIME:
            return self._timeNames.nextName(self._clock(), sopClassUID, self.extension)
        return defaultFileName(sopClassUID, sopInstanceUID, self.extension)

    def newStudy(self) -> None:
        """
        A new study subdirectory was created: see L{TimeNames.newStudy}.
        """
        self._timeNames.newStudy()


def timestampDirectoryName(prefix: str, when: datetime) -> str:
    """
    C{-ss PREFIX}'s study directory, C{PREFIX_YYYYMMDD_HHMMSSmmm} (C{_}
    omitted when the prefix is empty).

    @param when: the arrival time of the study's first instance.
    """
    return safeComponent(_prefixed(prefix, directoryTimeStamp(when)))


def studyDirectoryName(prefix: str, studyInstanceUID: str) -> str:
    """
    C{-su PREFIX}'s study directory, C{PREFIX_<StudyInstanceUID>} (C{_}
    omitted when the prefix is empty).
    """
    return safeComponent(_prefixed(prefix, studyInstanceUID))


def _prefixed(prefix: str, name: str) -> str:
    """
    C{prefix_name}, or C{name} alone when the prefix is empty.
    """
    return prefix + "_" + name if prefix else name


def patientDirectoryName(patientName: Optional[bytes], when: datetime) -> str:
    """
    C{-sp}'s study directory, C{<name>_YYYYMMDD_HHMMSSmmm}, where C{<name>}
    is the Patient's Name transliterated by L{transliteratePatientName}, or
    L{ANONYMOUS} when it is absent or empty.

    As in DCMTK, only the first value counts and trailing spaces are padding;
    the bytes are read as Latin-1 whatever the Specific Character Set says.

    @param patientName: the raw value of Patient's Name (0010,0010), or
        C{None} when the data set has none.
    @param when: the arrival time of the study's first instance.
    """
    firstValue = (patientName or b"").split(b"\\", 1)[0].rstrip(b" ")
    name = transliteratePatientName(firstValue) if firstValue else ANONYMOUS
    return safeComponent(name + "_" + directoryTimeStamp(when))


def transliteratePatientName(value: bytes) -> str:
    """
    DCMTK's C{mapCharacterAndAppendToString}, byte by byte: ASCII letters and
    digits stay, accented Latin-1 letters lose their accents (umlauts become
    C{Ae}, C{oe}..., C{ß} becomes C{ss}) and every other byte becomes C{_}:
    C{Müller^Jürgen} gives C{Mueller_Juergen}.
    """
    return "".join(_TRANSLITERATION[byte] for byte in value)


def renamedFileName(fileName: str, number: int, timeNames: bool = False) -> str:
    """
    C{--rename-on-eostudy}'s name for one file: the first two characters of
    its modality code and C{number} in six digits, C{CT000001}.

    The modality code starts the name, or with C{-tn} follows its first dot.
    DCMTK looks for the first C{_} to find a C{-tn} serial instead, which
    misreads the draft classes' codes (C{SR_t}) and extensions holding a
    C{_}; for every other name both ways find the same two characters.

    @param fileName: the name the file was stored under.
    @param timeNames: whether it is a C{-tn} name.
    """
    code = fileName.split(".", 1)[1] if timeNames and "." in fileName else fileName
    return safeComponent("%s%06d" % (code[:2], number))


def renamedFileNames(fileNames: Iterable[str], timeNames: bool = False) -> List[Tuple[str, str]]:
    """
    C{--rename-on-eostudy} for a finished study: each of its file names,
    in the order they were stored, with its new name, numbered from 1.
    """
    return [(fileName, renamedFileName(fileName, number, timeNames)) for number, fileName in enumerate(fileNames, 1)]
