"""
Tests for L{dicomd.archive.sql.HeaderKeys}: an instance's keys read from
the bytes its data set arrived in are those read from pydicom's data set.
"""

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dicomd.archive.matching import KEYS, Level
from dicomd.archive.sql import HeaderKeys
from dicomd.storage.part10 import HeadScan, walkHead
from tests.test_archive_matching import _asciiValues, _quietly

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"

#: VRs whose explicit encoding has a 4-byte length.
_LONG_VRS = frozenset(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"])


def _element(tag, vr, value, explicit):
    """
    One element in little endian, explicit or implicit VR.
    """
    if len(value) % 2:
        value += b" "
    group, number = tag >> 16, tag & 0xFFFF
    if not explicit:
        return struct.pack("<HHI", group, number, len(value)) + value
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, number, vr.encode("ascii"), 0, len(value)) + value
    return struct.pack("<HH2sH", group, number, vr.encode("ascii"), len(value)) + value


def _encoded(values, explicit=True, characterSet=None):
    """
    A data set, encoded.

    @param values: C{(tag, VR, bytes)} triples, in tag order.
    """
    encoded = b""
    if characterSet is not None:
        encoded += _element(0x00080005, "CS", characterSet, explicit)
    return encoded + b"".join(_element(tag, vr, value, explicit) for tag, vr, value in values)


def _state(keys):
    return (
        keys.texts,
        keys.uids,
        keys.sources,
        keys.imageColumns,
        keys.characterSet,
        [keys.columns(level) for level in Level],
    )


class HeaderKeysTests(SynchronousTestCase):
    """
    L{HeaderKeys.fromScan} reads ASCII values from the scanned bytes and
    leaves the rest to pydicom, giving what L{HeaderKeys.fromDataset} gives
    for the data set the scan makes.
    """

    def assertSameKeys(self, encoded, transferSyntax=EXPLICIT):
        scan = walkHead(encoded, transferSyntax, True)
        self.assertIs(type(scan), HeadScan)
        fast = _quietly(HeaderKeys.fromScan, scan)
        slow = _quietly(HeaderKeys.fromDataset, scan.dataset())
        self.assertEqual(_state(fast), _state(slow))
        self.assertEqual(_state(HeaderKeys.of(scan)), _state(fast))
        return fast

    @settings(
        max_examples=500,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.lists(st.tuples(st.sampled_from(KEYS), _asciiValues), max_size=12), st.booleans())
    def test_asciiAsPydicomReadsIt(self, keyed, explicit):
        """
        Any ASCII values of any keys, in either VR encoding, give the keys
        pydicom's elements give.
        """
        values = sorted({key.tag: (key.tag, key.vr, value) for key, value in keyed}.values())
        self.assertSameKeys(_encoded(values, explicit), EXPLICIT if explicit else IMPLICIT)

    def test_nothing(self):
        """
        A header without keys has empty texts.
        """
        keys = self.assertSameKeys(_encoded([(0x00280010, "US", b"\x00\x01")]))
        self.assertEqual(set(keys.texts.values()), {""})
        self.assertEqual(keys.characterSet, "")

    def test_characterSets(self):
        """
        Values beyond ASCII, or in ISO 2022 escapes, are decoded in the data
        set's character set, single or multiple.
        """
        name = 0x00100010
        cases = [
            (b"ISO_IR 100", "Müller^Hans".encode("latin-1")),
            (b"ISO_IR 192", "王^小东".encode("utf-8")),
            (b"\\ISO 2022 IR 87", "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B".encode("latin-1")),
            (b"ISO 2022 IR 6\\ISO 2022 IR 100", "Müller".encode("latin-1")),
            (b"GB18030", "Wang^XiaoDong=王^小东".encode("gb18030")),
        ]
        for characterSet, value in cases:
            for explicit in (True, False):
                keys = self.assertSameKeys(
                    _encoded([(name, "PN", value), (0x00100020, "LO", b"ID1")], explicit, characterSet),
                    EXPLICIT if explicit else IMPLICIT,
                )
                self.assertEqual(keys.texts[0x00100020], "ID1")
        self.assertEqual(keys.texts[name], "Wang^XiaoDong=王^小东")
        self.assertEqual(keys.characterSet, "GB18030")

    def test_otherVR(self):
        """
        A key written with another VR than the dictionary's is read the way
        pydicom reads it.
        """
        self.assertSameKeys(_encoded([(0x00100020, "UN", b"P1  "), (0x00200011, "SH", b"0012")]))

    def test_numbersPydicomReshapes(self):
        """
        Numbers beyond what pydicom keeps as written, and those it cannot
        read at all, are read as pydicom (or, failing it, the index) reads
        them.
        """
        for value in (b"12345678901", b"1.333333333333333333", b"1.5e1111"):
            keys = self.assertSameKeys(_encoded([(0x00200013, "IS", value), (0x00101020, "DS", value)]))
        self.assertEqual(keys.texts[0x00200013], "1.5e1111")

    def test_lastOfTwo(self):
        """
        A key given twice has the value of the last, as in the data set the
        scan makes.
        """
        first = _encoded([(0x00100020, "LO", b"FIRST")])
        second = _encoded([(0x00100020, "LO", b"SECOND")])
        keys = self.assertSameKeys(first + second)
        self.assertEqual(keys.texts[0x00100020], "SECOND")

    def test_fromDataset(self):
        """
        A data set whose elements pydicom decoded already gives the same
        keys as its undecoded bytes.
        """
        encoded = _encoded(
            [(0x00080018, "UI", b"1.2.3.4\x00"), (0x00100010, "PN", b"Doe^Jane"), (0x00080020, "DA", b"20260131")],
            characterSet=b"ISO_IR 100",
        )
        scan = walkHead(encoded, EXPLICIT, True)
        decoded = scan.dataset()
        for element in decoded:
            pass  # Decode every element.
        keys = HeaderKeys.fromDataset(decoded)
        self.assertEqual(_state(keys), _state(HeaderKeys.fromScan(scan)))
        self.assertEqual(keys.uids[Level.IMAGE], "1.2.3.4")
        self.assertIn(("StudyDateSortable", "20260131", "20260131"), keys.columns(Level.STUDY))


class RawValuesTests(SynchronousTestCase):
    """
    L{HeadScan.rawValues} gives the undecoded elements L{HeadScan.dataset}
    would hold.
    """

    def test_asTheDataSetHoldsThem(self):
        """
        Each element asked for and present comes as its VR and bytes; an
        element of undefined length without its delimiter.
        """
        encoded = _encoded([(0x00100010, "PN", b"Doe^Jane"), (0x00100020, "LO", b"P1")])
        # A sequence of undefined length, empty.
        encoded += struct.pack("<HH2sHI", 0x0040, 0x0275, b"SQ", 0, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        scan = walkHead(encoded, EXPLICIT, True)
        wanted = frozenset([0x00100010, 0x00400275, 0x00080018])
        found = scan.rawValues(wanted)
        made = scan.dataset()
        self.assertEqual(set(found), {0x00100010, 0x00400275})
        for tag, (vr, value) in found.items():
            element = made._dict[tag]
            self.assertEqual((vr, value), (element.VR, element.value))
        self.assertEqual(found[0x00400275], ("SQ", b""))
