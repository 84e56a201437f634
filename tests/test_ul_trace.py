"""
Tests for L{dicomd.ul.trace}: the debug trace of a connection's PDUs,
fed the bytes as they come (whole, split anywhere, or as the pieces a
sender writes).
"""

from twisted.trial.unittest import SynchronousTestCase

from dicomd.dimse.pdv import fragment
from dicomd.ul.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRQ,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
)
from dicomd.ul.trace import PDUTrace

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"

REQUEST = AAssociateRQ("ANY-SCP", "ECHOSCU", [PresentationContextRQ(1, VERIFICATION, [IMPLICIT])], UserInformation(16384))
ACCEPT = AAssociateAC("ANY-SCP", "ECHOSCU", [PresentationContextAC(1, 0, IMPLICIT)], UserInformation(16384))


def joined(pieces) -> bytes:
    return b"".join(bytes(piece) for piece in pieces)


class PDUTraceTests(SynchronousTestCase):
    def test_oneByteAtATime(self):
        """
        PDUs are described once whole, however the stream is cut: a
        P-DATA-TF and an A-RELEASE-RQ fed one byte at a time give one
        description each, with the PDU length of their headers.
        """
        trace = PDUTrace()
        data = joined(fragment(1, True, b"\x00" * 70, 100)) + AReleaseRQ().encode()
        lines = []
        for i in range(len(data)):
            lines += trace.received(data[i : i + 1])
        self.assertEqual(
            lines,
            ["P-DATA-TF (PDU length 76): command fragment (last), context 1, 70 bytes", "A-RELEASE-RQ (PDU length 4)"],
        )

    def test_sentPieces(self):
        """
        What a sender writes, headers and data slices, is described PDU by
        PDU, each PDV with its length.
        """
        pieces = fragment(3, False, memoryview(b"\x08\x00" * 50), 40, isLast=True)
        self.assertEqual(
            PDUTrace().sent(pieces),
            [
                "P-DATA-TF (PDU length 46): data set fragment, context 3, 40 bytes",
                "P-DATA-TF (PDU length 46): data set fragment, context 3, 40 bytes",
                "P-DATA-TF (PDU length 26): data set fragment (last), context 3, 20 bytes",
            ],
        )

    def test_severalPDVs(self):
        """
        A P-DATA-TF with several PDVs names each, an empty one too.
        """
        body = b"\x00\x00\x00\x04\x01\x01ab" + b"\x00\x00\x00\x02\x01\x03"
        data = b"\x04\x00" + len(body).to_bytes(4, "big") + body
        self.assertEqual(
            PDUTrace().received(data),
            ["P-DATA-TF (PDU length 14): command fragment, context 1, 2 bytes; command fragment (last), context 1, 0 bytes"],
        )

    def test_negotiation(self):
        """
        The A-ASSOCIATE-AC sent is described with the abstract syntaxes
        of the A-ASSOCIATE-RQ received, with UIDs named by the namer.
        """
        trace = PDUTrace(lambda uid: "<%s>" % (uid,))
        [request] = trace.received(REQUEST.encode())
        self.assertTrue(request.startswith("A-ASSOCIATE-RQ (PDU length 155)\n  Calling AE title: ECHOSCU\n"), request)
        self.assertIn("\n    Abstract syntax: <1.2.840.10008.1.1>\n", request)
        [accept] = trace.sent(ACCEPT.encode())
        self.assertIn("\n  Presentation context 1: acceptance\n    Abstract syntax: <1.2.840.10008.1.1>\n    Transfer syntax: <1.2.840.10008.1.2>\n", accept)

    def test_rejectionAndAbort(self):
        """
        A-ASSOCIATE-RJ and A-ABORT are described with their reasons.
        """
        trace = PDUTrace()
        self.assertEqual(
            trace.sent(AAssociateRJ(1, 1, 7).encode() + AAbort(2, 2).encode()),
            [
                "A-ASSOCIATE-RJ (PDU length 4): permanent, source: service user, reason: called AE title not recognized",
                "A-ABORT (PDU length 4) from the service provider (unexpected PDU)",
            ],
        )

    def test_directionsApart(self):
        """
        The two directions are framed apart: half a PDU received does not
        disturb a PDU sent meanwhile.
        """
        trace = PDUTrace()
        release = AReleaseRQ().encode()
        self.assertEqual(trace.received(release[:3]), [])
        self.assertEqual(trace.sent(release), ["A-RELEASE-RQ (PDU length 4)"])
        self.assertEqual(trace.received(release[3:]), ["A-RELEASE-RQ (PDU length 4)"])

    def test_stopsAtWhatItCannotFrame(self):
        """
        An unknown PDU type, a PDV that overruns its PDU, an undecodable
        PDU or an association PDU announcing more than is ever read is
        described once, and nothing after it in that direction: the
        provider discards the rest of such a stream too.
        """
        release = AReleaseRQ().encode()
        cases = [
            (b"\x09\x00\x00\x00\x00\x01x", "unrecognized PDU type 0x09 (PDU length 1); not traced further"),
            (
                b"\x04\x00\x00\x00\x00\x08\x00\x00\x00\x09\x01\x02ab",
                "P-DATA-TF (PDU length 8): PDV item length 9 does not fit the PDU; not traced further",
            ),
            (b"\x04\x00\x00\x00\x00\x02ab", "P-DATA-TF (PDU length 2): ends inside a PDV item header; not traced further"),
            (
                b"\x05\x00\x00\x00\x00\x02ab",
                "A-RELEASE-RQ (PDU length 2): undecodable: A-RELEASE-RQ body of 2 bytes; not traced further",
            ),
            (
                b"\x01\x00\xff\xff\xff\xff",
                "A-ASSOCIATE-RQ (PDU length 4294967295), more than the 1048576 bytes read; not traced further",
            ),
        ]
        for data, description in cases:
            trace = PDUTrace()
            self.assertEqual(trace.received(data + release), [description])
            self.assertEqual(trace.received(release), [])
            self.assertEqual(trace.sent(release), ["A-RELEASE-RQ (PDU length 4)"])
