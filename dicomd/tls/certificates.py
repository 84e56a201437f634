"""
What a peer's certificate says (its subject, the hosts it names, its
fingerprint) and whether it may use a calling AE title.

L{certificateBindingAllows} is the pure half of binding calling AE titles
to certificates; L{dicomd.net.acceptor} applies it when it admits an
association, with the bindings L{readCertificateBindings} reads.
"""

import re
from typing import Dict, List, Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from dicomd.tls import TLSConfigurationError


def certificateSubject(certificate) -> str:
    """
    A certificate's subject as RFC 4514 text (C{"CN=client,O=Hospital"}).

    @param certificate: a pyOpenSSL C{X509} or a C{cryptography}
        certificate.
    """
    if hasattr(certificate, "to_cryptography"):
        certificate = certificate.to_cryptography()
    return certificate.subject.rfc4514_string()


def certificateHostNames(certificate) -> List[str]:
    """
    The DNS names and IP addresses in a certificate's subject alternative
    names: the hosts it is good for (RFC 6125 ignores the common name).
    """
    if hasattr(certificate, "to_cryptography"):
        certificate = certificate.to_cryptography()
    try:
        alternatives = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    addresses = [str(address) for address in alternatives.get_values_for_type(x509.IPAddress)]
    return alternatives.get_values_for_type(x509.DNSName) + addresses


def certificateFingerprint(certificate) -> str:
    """
    A certificate's SHA-256 fingerprint: 64 lower-case hex digits.
    """
    if hasattr(certificate, "to_cryptography"):
        certificate = certificate.to_cryptography()
    return certificate.fingerprint(hashes.SHA256()).hex()


def _commonNames(certificate) -> List[str]:
    if hasattr(certificate, "to_cryptography"):
        certificate = certificate.to_cryptography()
    return [
        attribute.value
        for attribute in certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        if isinstance(attribute.value, str)
    ]


def certificateMatches(expected: str, certificate) -> bool:
    """
    Whether a certificate is the one C{expected} describes:
    C{"sha256:HEX"} (its SHA-256 fingerprint; colons and case ignored),
    C{"CN=name"} or a bare C{"name"} (a common name of its subject).
    """
    expected = expected.strip()
    if expected.lower().startswith("sha256:"):
        digits = re.sub(r"[^0-9a-f]", "", expected[7:].lower())
        return digits == certificateFingerprint(certificate)
    if expected[:3].upper() == "CN=":
        expected = expected[3:]
    return expected in _commonNames(certificate)


def certificateBindingAllows(bindings: Mapping[str, Sequence[str]], callingAETitle: str, certificate) -> bool:
    """
    Whether a calling AE title may be used with this peer certificate.

    An AE title that is not in C{bindings} is not bound: any certificate
    (or none) may use it.  A bound AE title needs a certificate matching
    one of its entries (L{certificateMatches}).

    @param certificate: the peer's certificate, or C{None}.
    """
    allowed = bindings.get(callingAETitle.strip())
    if allowed is None:
        return True
    if certificate is None:
        return False
    return any(certificateMatches(entry, certificate) for entry in allowed)


def readCertificateBindings(path: str) -> Dict[str, List[str]]:
    """
    Read an AE title to certificate binding file: one binding per line,
    C{AETITLE  sha256:HEX} or C{AETITLE  CN=name} (AE title and
    certificate separated by white space; an AE title with spaces in
    double quotes); an AE title may have several lines; C{#} starts a
    comment.

    @raise TLSConfigurationError: the file cannot be read or a line is
        malformed (the message names the line).
    """
    import shlex

    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as e:
        raise TLSConfigurationError("cannot read %s: %s" % (path, e.strerror), "certificateBindings")
    bindings: Dict[str, List[str]] = {}
    for number, line in enumerate(lines, 1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:
            raise TLSConfigurationError("%s line %d: %s" % (path, number, e), "certificateBindings")
        if not words:
            continue
        if len(words) != 2 or not 0 < len(words[0]) <= 16:
            raise TLSConfigurationError(
                "%s line %d: expected an AE title and sha256:FINGERPRINT or CN=name" % (path, number),
                "certificateBindings",
            )
        bindings.setdefault(words[0], []).append(words[1])
    return bindings
