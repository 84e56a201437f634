"""
Unit tests for L{dicomd.endpoints.clientEndpoint}: how dicomd reaches a
peer over TCP.
"""

from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from dicomd.endpoints import clientEndpoint


class ClientEndpointTests(SynchronousTestCase):
    """
    An IP address is connected to at once; a name through the addresses
    it resolves to.
    """

    def test_kinds(self):
        """
        IPv4 and IPv6 addresses get a TCP endpoint of their family, a name
        a C{HostnameEndpoint}, with the timeout asked for.
        """
        reactor = MemoryReactorClock()
        ipv4 = clientEndpoint(reactor, "127.0.0.1", 104, timeout=7)
        self.assertIsInstance(ipv4, TCP4ClientEndpoint)
        self.assertEqual(ipv4._timeout, 7)
        self.assertIsInstance(clientEndpoint(reactor, "::1", 104), TCP6ClientEndpoint)
        self.assertIsInstance(clientEndpoint(reactor, "pacs.example.org", 104), HostnameEndpoint)

    def test_refusedAtOnce(self):
        """
        A refused connection to an address fails as soon as the reactor says
        so, with no timer to wait for: a forwarding retry sees it at once.
        """
        reactor = MemoryReactorClock()
        connecting = clientEndpoint(reactor, "127.0.0.1", 104).connect(Factory.forProtocol(Protocol))
        [(host, port, factory, _, _)] = reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 104))
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.failureResultOf(connecting, ConnectionRefusedError)
        self.assertEqual(reactor.getDelayedCalls(), [])
