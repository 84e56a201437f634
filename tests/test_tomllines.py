"""
Tests for L{dicomd.tomllines}: finding the line of a TOML key, and the key
of a line.  L{tests.test_config}'s C{LineTests} check the same through the
error messages of L{dicomd.config.readConfig}.
"""

from twisted.trial.unittest import SynchronousTestCase

from dicomd.tomllines import KeyLines

DOCUMENT = '''\
# a comment: key = "not a key"
listen = [
  "tcp:11112",
  "tcp:11113",
]

[[ae]]
title = "FIRST"
note = """
title = "not a key either"
"""

[[ae]]
title = "SECOND"
quota = { max-studies = 10, max-bytes-per-study = "1gb" }
"storage".sort = "none"
'''


class KeyLinesTests(SynchronousTestCase):
    """
    Tests for L{KeyLines}.
    """

    def setUp(self):
        self.lines = KeyLines(DOCUMENT)

    def test_lineOfKey(self):
        """
        L{KeyLines.lineOf} finds the line of a key in the entry of an array
        of tables that its index names.
        """
        self.assertEqual(self.lines.lineOf("listen"), 2)
        self.assertEqual(self.lines.lineOf("ae[0].title"), 8)
        self.assertEqual(self.lines.lineOf("ae[1].title"), 14)

    def test_lineOfEnclosingKey(self):
        """
        A key set inside an inline table is found at the line of the
        nearest enclosing key; a key not set at all, at its table's header.
        """
        self.assertEqual(self.lines.lineOf("ae[1].quota.max-studies"), 15)
        self.assertEqual(self.lines.lineOf("ae[1].hosts"), 13)

    def test_quotedDottedKey(self):
        """
        A dotted key with quoted parts is found by its unquoted name.
        """
        self.assertEqual(self.lines.lineOf("ae[1].storage.sort"), 16)

    def test_skipsCommentsAndContinuations(self):
        """
        Comments, and the continuation lines of multi-line strings and
        arrays, set no key, whatever they look like.
        """
        self.assertEqual(self.lines.keyAt(1), "")
        self.assertEqual(self.lines.keyAt(3), "")
        self.assertEqual(self.lines.keyAt(10), "")
        self.assertEqual([number for number, path, isHeader in self.lines.statements()], [2, 7, 8, 9, 13, 14, 15, 16])

    def test_keyAt(self):
        """
        L{KeyLines.keyAt} names the key a line sets, with the index of its
        array of tables, or the table a header opens.
        """
        self.assertEqual(self.lines.keyAt(2), "listen")
        self.assertEqual(self.lines.keyAt(13), "ae[1]")
        self.assertEqual(self.lines.keyAt(14), "ae[1].title")
        self.assertEqual(self.lines.keyAt(16), "ae[1].storage.sort")
