"""
Tests for L{dicomd.dimse.pdv}: DIMSE messages cut into presentation data
values and joined again (PS3.7 9.3, PS3.8 Annex E).

L{fragment} must keep every P-DATA-TF within the peer's maximum length
(PS3.8 D.1), set the last-fragment bit only once, and hand out slices of
the caller's buffer rather than copies; L{MessageAssembler} must rebuild
commands split over several PDVs, stream data set fragments as they come,
and refuse PDVs in an order PS3.7 9.3 does not allow.
"""

from twisted.trial.unittest import SynchronousTestCase

from dicomd.dimse.commands import CEchoRQ, CStoreRQ, encodeCommand
from dicomd.dimse.pdv import (
    COMMAND,
    LAST,
    MAXIMUM_COMMAND_LENGTH,
    UNLIMITED_FRAGMENT_LENGTH,
    CommandReceived,
    DataSetFragment,
    DIMSEProtocolError,
    MessageAssembler,
    encodeMessage,
    fragment,
    maximumFragmentLength,
)
from dicomd.ul.fsm import State
from dicomd.ul.pdu import PDataTF, PresentationDataValue, decodePDU
from dicomd.ul.provider import PDataIndication, ULProvider
from tests.test_ul_provider import receive

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

STORE = CStoreRQ(messageID=3, affectedSOPClassUID=CT_IMAGE_STORAGE, affectedSOPInstanceUID="1.2.3.4")
ECHO = CEchoRQ(messageID=4)


def parsePDUs(pieces) -> list:
    """
    Split the output of L{fragment} into PDUs and check each one's framing.

    @return: a list of C{(pduLength, PDataTF)}.
    """
    data = b"".join(bytes(piece) for piece in pieces)
    pdus = []
    position = 0
    while position < len(data):
        if data[position] != 0x04:
            raise AssertionError("not a P-DATA-TF at %d" % (position,))
        length = int.from_bytes(data[position + 2 : position + 6], "big")
        pdus.append((length, decodePDU(0x04, memoryview(data)[position + 6 : position + 6 + length])))
        position += 6 + length
    if position != len(data):
        raise AssertionError("trailing bytes")
    return pdus


class MaximumFragmentLengthTests(SynchronousTestCase):
    """
    L{maximumFragmentLength} leaves room for the 6-byte PDV item header.
    """

    def test_usualLengths(self):
        """
        A peer maximum length of N allows N - 6 data bytes per PDV.
        """
        self.assertEqual(maximumFragmentLength(4096), 4090)
        self.assertEqual(maximumFragmentLength(16384), 16378)
        self.assertEqual(maximumFragmentLength(28672), 28666)

    def test_unlimited(self):
        """
        A peer maximum length of 0 (no limit) gives our own fragment size.
        """
        self.assertEqual(maximumFragmentLength(0), UNLIMITED_FRAGMENT_LENGTH)
        self.assertEqual(UNLIMITED_FRAGMENT_LENGTH + 6, 1 << 20)

    def test_absurdlySmall(self):
        """
        A peer maximum too small for any data still allows one byte, so
        sending makes progress.
        """
        self.assertEqual(maximumFragmentLength(7), 1)
        self.assertEqual(maximumFragmentLength(6), 1)
        self.assertEqual(maximumFragmentLength(1), 1)


class FragmentTests(SynchronousTestCase):
    """
    L{fragment} writes single-PDV P-DATA-TF PDUs within the peer's limit.
    """

    def assertFragments(self, data: bytes, peerMaximumLength: int, isCommand: bool, isLast: bool = True):
        """
        Fragment C{data} for a peer with C{peerMaximumLength} and check every
        PDU: length within the limit, one PDV each, the command bit as
        asked, the last bit only on the final PDU (when C{isLast}), and
        the data back in order.
        """
        pieces = fragment(5, isCommand, data, maximumFragmentLength(peerMaximumLength), isLast)
        pdus = parsePDUs(pieces)
        limit = peerMaximumLength or (1 << 20)
        joined = b""
        for index, (length, pdu) in enumerate(pdus):
            self.assertLessEqual(length, limit)
            self.assertEqual(len(pdu.values), 1)
            pdv = pdu.values[0]
            self.assertEqual(pdv.contextID, 5)
            self.assertEqual(pdv.isCommand, isCommand)
            self.assertEqual(pdv.isLast, isLast and index == len(pdus) - 1)
            self.assertEqual(pdv.messageControlHeader & ~0x03, 0)
            joined += bytes(pdv.data)
        self.assertEqual(joined, data)
        return pieces, pdus

    def test_withinPeerMaximum(self):
        """
        For peers accepting 4096, 16384 or unlimited bytes, every PDU's
        length field is within the limit and the data come back whole, at
        sizes around the fragment boundaries.
        """
        for peerMaximumLength in (4096, 16384, 0):
            size = maximumFragmentLength(peerMaximumLength)
            for length in (1, size - 1, size, size + 1, 3 * size, 3 * size + 7):
                data = bytes(range(256)) * (length // 256) + bytes(length % 256)
                for isCommand in (False, True):
                    self.assertFragments(data, peerMaximumLength, isCommand)

    def test_fullFragments(self):
        """
        Every fragment but the last is as large as allowed.
        """
        data = b"\x00" * 10000
        _, pdus = self.assertFragments(data, 4096, False)
        self.assertEqual([length for length, _ in pdus], [4096, 4096, 10000 - 2 * 4090 + 6])

    def test_notLast(self):
        """
        A piece of a data set that is not its end carries no last bit at
        all.
        """
        _, pdus = self.assertFragments(b"\x01" * 9000, 4096, False, isLast=False)
        self.assertEqual(len(pdus), 3)

    def test_messageControlHeaders(self):
        """
        The control header is 03H on a last command fragment, 01H on
        others, 02H on a last data fragment and 00H on others.
        """
        for isCommand, headers in ((True, [0x01, 0x01, 0x03]), (False, [0x00, 0x00, 0x02])):
            pieces = fragment(1, isCommand, b"x" * 25, 10)
            self.assertEqual([pieces[i][11] for i in range(0, len(pieces), 2)], headers)
        self.assertEqual((COMMAND, LAST), (0x01, 0x02))

    def test_piecesAreSlices(self):
        """
        The data pieces are memoryview slices of the caller's buffer, not
        copies; the other pieces are the 12-byte headers.
        """
        data = bytes(range(256)) * 100
        pieces = fragment(1, False, data, 4090)
        self.assertEqual(len(pieces), 2 * 7)
        for header, piece in zip(pieces[0::2], pieces[1::2]):
            self.assertIsInstance(header, bytes)
            self.assertEqual(len(header), 12)
            self.assertIsInstance(piece, memoryview)
            self.assertIs(piece.obj, data)

    def test_singleFragmentIsTheBufferItself(self):
        """
        Data that fit one PDV are passed on as the very object given.
        """
        data = bytearray(b"abc")
        pieces = fragment(1, True, data, 4090)
        self.assertEqual(len(pieces), 2)
        self.assertIs(pieces[1], data)

    def test_memoryviewInput(self):
        """
        A memoryview over a larger buffer fragments into slices of it.
        """
        backing = bytearray(20000)
        view = memoryview(backing)[100:10100]
        pieces = fragment(1, False, view, 4090)
        for piece in pieces[1::2]:
            self.assertIs(piece.obj, backing)
        self.assertEqual(sum(len(piece) for piece in pieces[1::2]), 10000)

    def test_emptyLast(self):
        """
        An empty last piece is one PDU holding an empty, last PDV (an empty
        data set, or the end of one streamed in pieces).
        """
        pieces = fragment(3, False, b"", 4090)
        self.assertEqual(parsePDUs(pieces), [(6, PDataTF([PresentationDataValue(3, 0x02, b"")]))])

    def test_emptyNotLast(self):
        """
        An empty piece that is not the last produces nothing.
        """
        self.assertEqual(fragment(3, False, b"", 4090, isLast=False), [])

    def test_providerAcceptsFragments(self):
        """
        A receiving provider whose maximum length is the peer maximum used
        for fragmenting accepts every PDU.
        """
        for maximumLength in (4096, 16384):
            provider = ULProvider(isRequestor=False, maximumLength=maximumLength)
            provider.state = State.Sta6
            data = b"\x07" * 50000
            pieces = fragment(1, False, data, maximumFragmentLength(maximumLength))
            outputs = receive(provider, b"".join(bytes(piece) for piece in pieces))
            self.assertTrue(all(isinstance(output, PDataIndication) for output in outputs))
            self.assertEqual(b"".join(bytes(o.pdu.values[0].data) for o in outputs), data)


class EncodeMessageTests(SynchronousTestCase):
    """
    L{encodeMessage}: a message in memory goes in one P-DATA-TF when its
    command and data set fit the peer's maximum length together, so that
    a peer that skips the data set (DCMTK's getscu, of a final C-GET-RSP)
    does not find it where it expects the next PDU.
    """

    command = encodeCommand(STORE)

    def test_onePDU(self):
        """
        Command and data set each get a PDV with the last-fragment bit, in
        one PDU, up to exactly the peer's maximum length.
        """
        maximumLength = 4096
        data = b"\x05" * (maximumLength - 12 - len(self.command))
        pdus = parsePDUs(encodeMessage(7, self.command, data, maximumFragmentLength(maximumLength)))
        self.assertEqual(len(pdus), 1)
        length, pdu = pdus[0]
        self.assertEqual(length, maximumLength)
        self.assertEqual(
            [(pdv.contextID, pdv.messageControlHeader, bytes(pdv.data)) for pdv in pdu.values],
            [(7, COMMAND | LAST, self.command), (7, LAST, data)],
        )

    def test_tooLong(self):
        """
        A byte more and the data set goes in PDUs of its own, as
        L{fragment} cuts it.
        """
        maximumLength = 4096
        data = b"\x05" * (maximumLength - 11 - len(self.command))
        fragmentLength = maximumFragmentLength(maximumLength)
        pieces = encodeMessage(7, self.command, data, fragmentLength)
        self.assertEqual(pieces, fragment(7, True, self.command, fragmentLength) + fragment(7, False, data, fragmentLength))

    def test_noDataSet(self):
        """
        A command alone is what L{fragment} makes of it.
        """
        self.assertEqual(encodeMessage(7, self.command, None, 4090), fragment(7, True, self.command, 4090))

    def test_emptyDataSet(self):
        """
        An empty data set is an empty last PDV after the command.
        """
        [(_, pdu)] = parsePDUs(encodeMessage(1, self.command, b"", 4090))
        self.assertEqual([(pdv.messageControlHeader, bytes(pdv.data)) for pdv in pdu.values], [(COMMAND | LAST, self.command), (LAST, b"")])

    def test_assembled(self):
        """
        L{MessageAssembler} gives back the command and the data set.
        """
        [(_, pdu)] = parsePDUs(encodeMessage(1, self.command, b"\x01\x02", 4090))
        events = MessageAssembler().receive(pdu)
        self.assertEqual(events, [CommandReceived(1, STORE), DataSetFragment(1, memoryview(b"\x01\x02"), True)])


def pdataTF(*values) -> PDataTF:
    """
    A P-DATA-TF of C{(contextID, control, data)} values.
    """
    return PDataTF([PresentationDataValue(contextID, control, data) for contextID, control, data in values])


class MessageAssemblerTests(SynchronousTestCase):
    """
    L{MessageAssembler} turns PDVs back into DIMSE messages.
    """

    def test_singleCommand(self):
        """
        A command in one last PDV is decoded at once.
        """
        assembler = MessageAssembler()
        events = assembler.receive(pdataTF((1, 0x03, encodeCommand(ECHO))))
        self.assertEqual(events, [CommandReceived(1, ECHO)])
        self.assertFalse(assembler.inDataSet)

    def test_commandSplitOverPDVs(self):
        """
        A command split over several PDVs, in one PDU or several, is
        decoded when its last fragment arrives.
        """
        command = encodeCommand(STORE)
        assembler = MessageAssembler()
        self.assertEqual(assembler.receive(pdataTF((1, 0x01, command[:10]))), [])
        self.assertEqual(assembler.receive(pdataTF((1, 0x01, command[10:20]), (1, 0x01, command[20:21]))), [])
        events = assembler.receive(pdataTF((1, 0x03, command[21:])))
        self.assertEqual(events, [CommandReceived(1, STORE)])
        self.assertTrue(assembler.inDataSet)

    def test_commandSplitAtEveryByte(self):
        """
        However a command is cut in two, it is decoded once.
        """
        command = encodeCommand(ECHO)
        for cut in range(1, len(command)):
            assembler = MessageAssembler()
            self.assertEqual(assembler.receive(pdataTF((1, 0x01, memoryview(command)[:cut]))), [])
            self.assertEqual(
                assembler.receive(pdataTF((1, 0x03, memoryview(command)[cut:]))), [CommandReceived(1, ECHO)]
            )

    def test_dataSetStreamed(self):
        """
        Data set fragments are passed on one by one as they arrive, the
        same memoryview objects, the last one marked.
        """
        assembler = MessageAssembler()
        assembler.receive(pdataTF((3, 0x03, encodeCommand(STORE))))
        received = memoryview(b"0123456789")
        first, second, third = received[:4], received[4:8], received[8:]
        events = assembler.receive(pdataTF((3, 0x00, first)))
        self.assertEqual(events, [DataSetFragment(3, first, False)])
        self.assertIs(events[0].data, first)
        events = assembler.receive(pdataTF((3, 0x00, second), (3, 0x02, third)))
        self.assertEqual(events, [DataSetFragment(3, second, False), DataSetFragment(3, third, True)])
        self.assertIs(events[1].data, third)
        self.assertFalse(assembler.inDataSet)

    def test_commandAndDataInOnePDU(self):
        """
        A command and its whole data set in one PDU give all the events in
        order.
        """
        assembler = MessageAssembler()
        events = assembler.receive(pdataTF((1, 0x03, encodeCommand(STORE)), (1, 0x02, b"DATA")))
        self.assertEqual(events, [CommandReceived(1, STORE), DataSetFragment(1, b"DATA", True)])

    def test_messagesBackToBack(self):
        """
        After a message ends, the next one may start on another context.
        """
        assembler = MessageAssembler()
        assembler.receive(pdataTF((1, 0x03, encodeCommand(STORE)), (1, 0x02, b"D")))
        self.assertEqual(assembler.receive(pdataTF((3, 0x03, encodeCommand(ECHO)))), [CommandReceived(3, ECHO)])
        self.assertEqual(
            assembler.receive(pdataTF((5, 0x03, encodeCommand(STORE)), (5, 0x02, b"E"))),
            [CommandReceived(5, STORE), DataSetFragment(5, b"E", True)],
        )

    def test_roundTripThroughFragment(self):
        """
        A command and a data set cut by L{fragment} for a small peer come
        back whole from the assembler.
        """
        dataSet = bytes(range(256)) * 200
        pieces = fragment(7, True, encodeCommand(STORE), 30) + fragment(7, False, dataSet, 4090)
        assembler = MessageAssembler()
        events = []
        for _, pdu in parsePDUs(pieces):
            events += assembler.receive(pdu)
        self.assertEqual(events[0], CommandReceived(7, STORE))
        self.assertEqual(b"".join(bytes(event.data) for event in events[1:]), dataSet)
        self.assertEqual([event.isLast for event in events[1:]], [False] * (len(events) - 2) + [True])

    def test_dataWithoutCommand(self):
        """
        A data set fragment before any command is refused.
        """
        self.assertRaises(DIMSEProtocolError, MessageAssembler().receive, pdataTF((1, 0x02, b"x")))

    def test_dataAfterCommandWithoutDataSet(self):
        """
        A data set fragment after a command that announced none is refused.
        """
        assembler = MessageAssembler()
        assembler.receive(pdataTF((1, 0x03, encodeCommand(ECHO))))
        self.assertRaises(DIMSEProtocolError, assembler.receive, pdataTF((1, 0x00, b"x")))

    def test_dataWhileCommandIncomplete(self):
        """
        A data set fragment while a command is half received is refused.
        """
        assembler = MessageAssembler()
        assembler.receive(pdataTF((1, 0x01, encodeCommand(STORE)[:20])))
        self.assertRaises(DIMSEProtocolError, assembler.receive, pdataTF((1, 0x00, b"x")))

    def test_dataOnAnotherContext(self):
        """
        A data set fragment on another context than its command's is
        refused.
        """
        assembler = MessageAssembler()
        assembler.receive(pdataTF((1, 0x03, encodeCommand(STORE))))
        self.assertRaises(DIMSEProtocolError, assembler.receive, pdataTF((3, 0x02, b"x")))

    def test_commandDuringDataSet(self):
        """
        A command fragment before the data set ended is refused.
        """
        assembler = MessageAssembler()
        assembler.receive(pdataTF((1, 0x03, encodeCommand(STORE)), (1, 0x00, b"part")))
        self.assertRaises(DIMSEProtocolError, assembler.receive, pdataTF((1, 0x03, encodeCommand(ECHO))))

    def test_commandFragmentsOnMixedContexts(self):
        """
        A command continued on another context is refused.
        """
        command = encodeCommand(ECHO)
        assembler = MessageAssembler()
        assembler.receive(pdataTF((1, 0x01, command[:10])))
        self.assertRaises(DIMSEProtocolError, assembler.receive, pdataTF((3, 0x03, command[10:])))

    def test_oversizedCommand(self):
        """
        A command longer than the limit is refused as soon as the limit is
        passed, before it is complete.
        """
        self.assertEqual(MAXIMUM_COMMAND_LENGTH, 1 << 16)
        assembler = MessageAssembler(maximumCommandLength=100)
        assembler.receive(pdataTF((1, 0x01, b"\x00" * 60)))
        self.assertRaises(DIMSEProtocolError, assembler.receive, pdataTF((1, 0x01, b"\x00" * 41)))

    def test_commandAtLimitAccepted(self):
        """
        A command exactly as long as the limit is accepted.
        """
        command = encodeCommand(ECHO)
        assembler = MessageAssembler(maximumCommandLength=len(command))
        events = assembler.receive(pdataTF((1, 0x01, command[:5]), (1, 0x03, command[5:])))
        self.assertEqual(events, [CommandReceived(1, ECHO)])

    def test_undecodableCommand(self):
        """
        A command set that does not decode is a protocol error.
        """
        self.assertRaises(DIMSEProtocolError, MessageAssembler().receive, pdataTF((1, 0x03, b"\x08\x00\x16\x00")))

    def test_inMessage(self):
        """
        A message is in progress from its first command fragment until the
        last fragment of its data set, or of its command set when it has
        none.
        """
        command = encodeCommand(STORE)
        assembler = MessageAssembler()
        self.assertFalse(assembler.inMessage)
        assembler.receive(pdataTF((1, 0x01, command[:10])))
        self.assertTrue(assembler.inMessage)
        assembler.receive(pdataTF((1, 0x03, command[10:])))
        self.assertTrue(assembler.inMessage)
        assembler.receive(pdataTF((1, 0x00, b"DA")))
        self.assertTrue(assembler.inMessage)
        assembler.receive(pdataTF((1, 0x02, b"TA")))
        self.assertFalse(assembler.inMessage)
        assembler.receive(pdataTF((1, 0x03, encodeCommand(ECHO))))
        self.assertFalse(assembler.inMessage)
