"""
The peers of the archive's AEs, as dcmqrscp's configuration names them
(C{dcmqrscp.cfg}'s HostTable, VendorTable and the peer lists of its
AETable) and as C{twistd dicomd}'s C{hosts} does, and where C-MOVE sends
to them (PS3.4 C.4.2: the Move
Destination of a C-MOVE-RQ is an AE title the SCP must know).

L{PeerHosts} decides which configured host name a peer's address is, for
the peer lists, C{--move-host} and C{hosts}; L{peerRule} is the peer list
of one of our AE titles, L{hostRule} an AE's C{hosts} of C{twistd dicomd}; L{moveRestriction} is C{--move-aetitle}, C{--move-host} and
C{--move-vendor}; L{configuredPeers} and L{destinationTable} resolve
C-MOVE destinations, and L{proposing} chooses the presentation contexts
of a C-MOVE sub-association.

Above L{dicomd.services} (a destination is a
L{dicomd.services.retrieve.Destination}) and L{dicomd.net} (it connects
with L{dicomd.net.requestor.connect}).
"""

import ipaddress
import socket
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

from twisted.logger import Logger

from dicomd.archive.dcmqrcfg import ANY
from dicomd.endpoints import clientEndpoint
from dicomd.net.requestor import connect
from dicomd.services.retrieve import Destination
from dicomd.ul.negotiation import MAXIMUM_PRESENTATION_CONTEXTS, UNCOMPRESSED

# The namespace these messages had when this code lived in dicomd.archive.
_log = Logger(namespace="dicomd.archive")


class PeerHosts:
    """
    Which configured host name a peer's address stands for.

    dcmqrscp compares the host name of a peer (looked up from its address,
    unless C{--disable-host-lookup}) with the host names of its
    configuration.  We do the reverse, which needs no PTR records: the
    configuration's host names are resolved once, and a peer is on a host
    when its address is one of that name's addresses, or is the name
    itself written as an address.
    """

    def __init__(self, addresses: Optional[Mapping[str, Iterable[str]]] = None):
        """
        @param addresses: host name -> its addresses; names are compared
            ignoring case.
        """
        self._addresses: Dict[str, FrozenSet[str]] = {
            name.lower(): frozenset(found) for name, found in (addresses or {}).items()
        }

    @classmethod
    def resolve(
        cls, names: Iterable[str], lookup=socket.getaddrinfo, failed: Optional[Callable[[str, Exception], None]] = None
    ) -> Tuple["PeerHosts", Tuple[str, ...]]:
        """
        Look the host names up (blocking: call it from a thread).  A name
        that does not resolve keeps no address, and matches only itself
        written as an address.

        @param lookup: C{getaddrinfo}'s signature.
        @param failed: called with each name that does not resolve and
            why, or C{None}.
        @return: the L{PeerHosts}, and the names that did not resolve.
        """
        addresses, unresolved = {}, []
        for name in sorted(set(names)):
            try:
                addresses[name] = {info[4][0] for info in lookup(name, None)}
            except (OSError, UnicodeError) as e:
                unresolved.append(name)
                if failed is not None:
                    failed(name, e)
        return cls(addresses), tuple(unresolved)

    def matches(self, hostName: str, address: str) -> bool:
        """
        Whether the peer at C{address} is on C{hostName}.
        """
        return hostName.lower() == address.lower() or address in self._addresses.get(hostName.lower(), ())


def hostNames(config) -> List[str]:
    """
    Every host name a L{dicomd.archive.dcmqrcfg.QueryRetrieveConfig} names.
    """
    peerLists = list(config.hostTable.values()) + list(config.vendorTable.values())
    peerLists.extend(entry.peers for entry in config.aeTable.values() if entry.peers is not ANY)
    return sorted({peer.hostName for peers in peerLists for peer in peers})


def peerHost(address) -> str:
    """
    The host of a peer's address (an C{IAddress} or already a string).
    """
    return str(getattr(address, "host", address))


def peerRule(config, hosts: PeerHosts, aeTitle: str) -> Optional[Callable[[str, object], bool]]:
    """
    The peers that may call one of our AE titles, as its AETable line
    says: C{None} for C{ANY}, else a predicate on (calling AE title, peer
    address).
    """
    peers = config.aeTable[aeTitle].peers
    if peers is ANY:
        return None

    def allowed(callingAETitle: str, address) -> bool:
        host = peerHost(address)
        return any(peer.aeTitle == callingAETitle and hosts.matches(peer.hostName, host) for peer in peers)

    return allowed


def hostRule(
    hosts, lookup=socket.getaddrinfo, failed: Optional[Callable[[str, Exception], None]] = None
) -> Optional[Callable[[str, object], bool]]:
    """
    The C{peers} rule of an AE whose C{hosts} are networks or host names
    (C{twistd dicomd}'s C{hosts}): names are resolved now, as
    L{PeerHosts.resolve} does, and a peer must come from one of them,
    whatever its AE title.

    @param hosts: C{ipaddress} networks and host names, or C{None} for
        any peer.
    @param lookup: C{getaddrinfo}'s signature.
    @param failed: called with each name that does not resolve and why;
        by default, a warning is logged.
    @return: a predicate on (calling AE title, peer address), or C{None}.
    """
    if hosts is None:
        return None
    networks = [host for host in hosts if not isinstance(host, str)]
    names = [host for host in hosts if isinstance(host, str)]
    known, _ = PeerHosts.resolve(names, lookup, failed or _unresolvedHost)

    def allowed(callingAETitle: str, peerAddress) -> bool:
        host = getattr(peerAddress, "host", "")
        if any(known.matches(name, host) for name in names):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in networks)

    return allowed


def _unresolvedHost(name: str, why: Exception) -> None:
    _log.warn("Cannot resolve allowed host {name}: {why}", name=name, why=str(why))


def moveRestriction(config, hosts: PeerHosts, *, sameAETitle: bool = False, sameHost: bool = False, sameVendor: bool = False):
    """
    dcmqrscp's restrictions on C-MOVE destinations (DCMTK C{dcmqrcbm.cc},
    C{mapMoveDestination}), as the C{allowed} hook of L{MoveSCP}: a
    refused destination is answered 0xA801, like an unknown one.

    @param sameAETitle: C{--move-aetitle}: only to the requesting AE title.
    @param sameHost: C{--move-host}: only to the requesting host.
    @param sameVendor: C{--move-vendor}: only to an AE title of the
        requestor's vendor (the VendorTable).
    @return: the hook, or C{None} when nothing is restricted.
    """
    if not (sameAETitle or sameHost or sameVendor):
        return None

    def refusal(association, destination: Destination) -> Optional[str]:
        calling = association.callingAETitle
        if sameAETitle and destination.aeTitle != calling:
            return "move destination %s is not the requesting AE title %s" % (destination.aeTitle, calling)
        requestingHost = peerHost(association.peerAddress)
        if sameHost and not hosts.matches(destination.host, requestingHost):
            return "move destination %s is on %s, not on the requesting host %s" % (
                destination.aeTitle,
                destination.host,
                requestingHost,
            )
        if sameVendor and not config.sameVendor(calling, destination.aeTitle):
            return "move destination %s is not of the vendor of %s" % (destination.aeTitle, calling)
        return None

    def allowed(association, destination: Destination) -> Optional[str]:
        why = refusal(association, destination)
        if why is not None:
            _log.info("C-MOVE from {calling} refused: {why}", calling=association.callingAETitle, why=why)
        return why

    return allowed


@dataclass(frozen=True)
class Peer:
    """
    A known remote AE: where C-MOVE sends to it.

    @ivar tls: the L{dicomd.tls.settings.TLSSettings} to reach it with, or C{None}
        for plain TCP.
    """

    aeTitle: str
    host: str
    port: int
    tls: object = None


def configuredPeers(config, tls=None) -> List[Peer]:
    """
    The move destinations of a configuration: each AE title of its peers
    where dcmqrscp finds it (C{peerForAETitle}), in the AETable's peer
    lists first, then in the HostTable.

    @param tls: the L{dicomd.tls.settings.TLSSettings} to reach them with, or
        C{None}.
    """
    peerLists = [entry.peers for entry in config.aeTable.values() if entry.peers is not ANY]
    peerLists.extend(config.hostTable.values())
    found: Dict[str, Peer] = {}
    for peers in peerLists:
        for peer in peers:
            found.setdefault(peer.aeTitle, Peer(peer.aeTitle, peer.hostName, peer.port, tls))
    return list(found.values())


def proposing(transferSyntaxes: Sequence[str]) -> Callable[[list], list]:
    """
    The presentation contexts of a C-MOVE sub-association, from those that
    carry its instances as they are stored (one per SOP class and transfer
    syntax, L{dicomd.services.retrieve.storedContexts}): each of those,
    so that the destination can take an instance in the syntax it is
    stored in, and for each SOP class a context with C{transferSyntaxes}
    (dcmqrscp's C{-x=}, C{-xe}, C{-xi}, C{-xd}...) for the instances it
    takes only converted.

    When that makes more contexts than one association carries, the stored
    syntaxes that C{transferSyntaxes} list lose their own contexts: their
    instances still go, in the syntax the destination chose there.
    """
    converted = list(transferSyntaxes)

    def propose(stored):
        contexts = _storedAndConverted(stored, converted, keepListed=True)
        if len(contexts) > MAXIMUM_PRESENTATION_CONTEXTS:
            contexts = _storedAndConverted(stored, converted, keepListed=False)
        return contexts

    return propose


def _storedAndConverted(stored, converted: List[str], keepListed: bool) -> list:
    """
    For each SOP class of the C{stored} contexts, in order: a context for
    each syntax its instances are stored in, then one with the C{converted}
    syntaxes.  A stored syntax among C{converted} gets its own context only
    if C{keepListed}, and none that would repeat the converted one.
    """
    byClass: Dict[str, List[str]] = {}
    for abstractSyntax, syntaxes in stored:
        byClass.setdefault(abstractSyntax, []).extend(syntaxes)
    contexts = []
    for abstractSyntax, storedSyntaxes in byClass.items():
        for syntax in storedSyntaxes:
            if [syntax] != converted and (keepListed or syntax not in converted):
                contexts.append((abstractSyntax, [syntax]))
        contexts.append((abstractSyntax, converted))
    return contexts


#: Seconds a C-MOVE sub-association waits for each C-STORE-RSP when no
#: DIMSE timeout is configured (C{dimse-timeout = 0}, no C{-td}): a
#: destination that stops answering fails the rest of the move after this,
#: instead of holding it, and the association of its requestor, for good.
MOVE_DIMSE_TIMEOUT = 60.0


def destinationTable(
    peers: Sequence[Peer],
    callingAETitle: str,
    *,
    reactor=None,
    propose: Optional[Callable[[list], list]] = None,
    timeout: Optional[float] = None,
    acseTimeout: Optional[float] = 30.0,
    dimseTimeout: Optional[float] = None,
    asynchronousOperations: int = 1,
) -> Callable[[str], Optional[Destination]]:
    """
    The C-MOVE destinations: an AE title's L{Destination}, which opens an
    association from C{callingAETitle} to it, or C{None}.  When C{peers}
    names an AE title twice, the last one counts.

    @param propose: turns the contexts that carry the instances as they
        are stored into those proposed to a destination (see
        L{proposing}); by default, the stored ones and, for each SOP class,
        one with the uncompressed syntaxes to convert to.
    @param timeout: seconds to wait for the TCP connection (dcmqrscp's
        C{--timeout}); Twisted's default when C{None}.
    @param acseTimeout: seconds to wait for the destination's A-ASSOCIATE
        answer.
    @param dimseTimeout: seconds to wait for each C-STORE-RSP; C{None} or
        C{0} (none configured) for L{MOVE_DIMSE_TIMEOUT}: a sub-association
        never waits for ever.
    @param asynchronousOperations: the C-STOREs to propose to have
        outstanding at once (an Asynchronous Operations Window, PS3.7
        D.3.3.3), 1 for none; the destination may grant fewer.
    """
    if reactor is None:
        from twisted.internet import reactor
    if propose is None:
        propose = proposing(UNCOMPRESSED)
    byTitle = {peer.aeTitle: peer for peer in peers}

    def destination(aeTitle: str) -> Optional[Destination]:
        peer = byTitle.get(aeTitle)
        if peer is None:
            return None

        def connectTo(stored):
            endpoint = clientEndpoint(reactor, peer.host, peer.port, peer.tls, **({"timeout": timeout} if timeout else {}))
            return connect(
                endpoint,
                calledAETitle=peer.aeTitle,
                callingAETitle=callingAETitle,
                presentationContexts=propose(stored),
                reactor=reactor,
                acseTimeout=acseTimeout,
                dimseTimeout=dimseTimeout or MOVE_DIMSE_TIMEOUT,
                asynchronousOperations=asynchronousOperations,
            )

        return Destination(peer.aeTitle, peer.host, connectTo)

    return destination

