"""
Tests for L{dicomd.dimse.status}: the categories of DIMSE status values
(PS3.7 Annex C) and their descriptions.
"""

from twisted.trial.unittest import SynchronousTestCase

from dicomd.dimse import status
from dicomd.dimse.status import Category, category, describe


class CategoryTests(SynchronousTestCase):
    """
    L{category} sorts every status value by the ranges of PS3.7 Annex C.
    """

    def assertCategory(self, values, expected: Category) -> None:
        """
        Every value of C{values} falls in C{expected}.
        """
        wrong = {"0x%04X" % (value,): category(value) for value in values if category(value) is not expected}
        self.assertEqual(wrong, {})

    def test_success(self):
        """
        0000H is the only success (C.1).
        """
        self.assertCategory([0x0000], Category.SUCCESS)

    def test_pending(self):
        """
        FF00H and FF01H are pending (C.2).
        """
        self.assertCategory([0xFF00, 0xFF01], Category.PENDING)

    def test_cancel(self):
        """
        FE00H is cancel (C.3).
        """
        self.assertCategory([0xFE00], Category.CANCEL)

    def test_warningRange(self):
        """
        Every value of the Bxxx range is a warning (C.4).
        """
        self.assertCategory(range(0xB000, 0xC000), Category.WARNING)

    def test_generalWarnings(self):
        """
        0001H, 0107H (attribute list error) and 0116H (attribute value out
        of range) are warnings (C.4).
        """
        self.assertCategory([0x0001, 0x0107, 0x0116], Category.WARNING)

    def test_refusedRange(self):
        """
        Every value of the Axxx range is a failure (refused, C.5).
        """
        self.assertCategory(range(0xA000, 0xB000), Category.FAILURE)

    def test_cannotUnderstandRange(self):
        """
        Every value of the Cxxx range is a failure (cannot understand, C.5).
        """
        self.assertCategory(range(0xC000, 0xD000), Category.FAILURE)

    def test_generalFailures(self):
        """
        The 01xxH and 02xxH general failures of C.5 are failures, except
        the two 01xxH warnings.
        """
        self.assertCategory(
            [value for value in range(0x0100, 0x0300) if value not in (0x0107, 0x0116)], Category.FAILURE
        )

    def test_otherValuesAreFailures(self):
        """
        Values outside every defined range (unknown to the standard) are
        treated as failures, never as success.
        """
        self.assertCategory(
            [0x0002, 0x00FF, 0x0300, 0x1234, 0x9FFF, 0xD000, 0xFDFF, 0xFE01, 0xFF02, 0xFFFF], Category.FAILURE
        )

    def test_matchesPynetdicom(self):
        """
        For every 16-bit value pynetdicom can categorise, we agree with it.
        """
        from pynetdicom.status import code_to_category

        names = {
            "Success": Category.SUCCESS,
            "Pending": Category.PENDING,
            "Warning": Category.WARNING,
            "Cancel": Category.CANCEL,
            "Failure": Category.FAILURE,
        }
        disagreements = {}
        compared = 0
        for value in range(0x10000):
            theirs = code_to_category(value)
            if theirs in names:
                compared += 1
                if names[theirs] is not category(value):
                    disagreements["0x%04X" % (value,)] = (theirs, category(value))
        self.assertEqual(disagreements, {})
        self.assertGreater(compared, 3 * 4096)

    def test_namedConstants(self):
        """
        The named constants fall in the category their names say.
        """
        self.assertIs(category(status.SUCCESS), Category.SUCCESS)
        self.assertIs(category(status.PENDING_WARNING), Category.PENDING)
        self.assertIs(category(status.ELEMENTS_DISCARDED), Category.WARNING)
        self.assertIs(category(status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING), Category.WARNING)
        for name in (
            "OUT_OF_RESOURCES",
            "MOVE_DESTINATION_UNKNOWN",
            "DATA_SET_DOES_NOT_MATCH_SOP_CLASS",
            "CANNOT_UNDERSTAND",
            "UNRECOGNIZED_OPERATION",
            "SOP_CLASS_NOT_SUPPORTED",
            "DUPLICATE_SOP_INSTANCE",
            "NOT_AUTHORIZED",
        ):
            self.assertIs(category(getattr(status, name)), Category.FAILURE, name)


class DescribeTests(SynchronousTestCase):
    """
    L{describe} gives a line naming the value and its meaning.
    """

    def test_knownCodes(self):
        """
        Codes the composite services use are named.
        """
        self.assertEqual(describe(0x0000), "0x0000 Success")
        self.assertEqual(describe(0xA700), "0xA700 Failure: refused, out of resources")
        self.assertEqual(describe(0xA801), "0xA801 Failure: refused, move destination unknown")
        self.assertEqual(describe(0xFF00), "0xFF00 Pending: matches or sub-operations are continuing")
        self.assertEqual(describe(0xFE00), "0xFE00 Cancel: matching or sub-operations terminated")
        self.assertEqual(describe(0x0211), "0x0211 Failure: unrecognized operation")

    def test_unknownCodesByRange(self):
        """
        Other codes are described by their category and range.
        """
        self.assertEqual(describe(0xA7FF), "0xA7FF Failure: refused")
        self.assertEqual(describe(0xC123), "0xC123 Failure: cannot understand")
        self.assertEqual(describe(0xB123), "0xB123 Warning")
        self.assertEqual(describe(0x1234), "0x1234 Failure")
