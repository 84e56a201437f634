"""
The DICOM TLS security profiles (PS3.15 Annex B's Secure Transport
Connection profiles, as DCMTK names and offers them) and the TLS 1.2 cipher
suites they negotiate.

L{PROFILES} has DCMTK's profiles, with the cipher suites of DCMTK's
C{tlsciphr.cc} and RFC 9325 (BCP 195); see C{docs/tls.md}.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

from OpenSSL import SSL
from twisted.internet import ssl

from dicomd.tls import TLSConfigurationError

#: TLS 1.2 (and older) cipher suites by their IANA names, as DCMTK's C{+cs}
#: takes them, with OpenSSL's names.  DCMTK's list (C{tlsciphr.cc}), less
#: the static ECDH suites that OpenSSL no longer has.
CIPHER_SUITES: Dict[str, str] = {
    "TLS_RSA_WITH_NULL_SHA": "NULL-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA": "CAMELLIA128-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA": "CAMELLIA256-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA256": "AES256-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_DHE_DSS_WITH_AES_128_CBC_SHA": "DHE-DSS-AES128-SHA",
    "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA": "DHE-DSS-CAMELLIA128-SHA",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA": "DHE-RSA-AES128-SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA": "DHE-RSA-CAMELLIA128-SHA",
    "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256": "DHE-DSS-AES128-SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256": "DHE-RSA-AES128-SHA256",
    "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256": "DHE-DSS-AES128-GCM-SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256": "DHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CCM": "ECDHE-ECDSA-AES128-CCM",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8": "ECDHE-ECDSA-AES128-CCM8",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_DHE_DSS_WITH_AES_256_CBC_SHA": "DHE-DSS-AES256-SHA",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA": "DHE-RSA-AES256-SHA",
    "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA": "DHE-DSS-CAMELLIA256-SHA",
    "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA": "DHE-RSA-CAMELLIA256-SHA",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "DHE-RSA-CHACHA20-POLY1305",
    "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256": "DHE-DSS-AES256-SHA256",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256": "DHE-RSA-AES256-SHA256",
    "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384": "DHE-DSS-AES256-GCM-SHA384",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384": "DHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384": "ECDHE-ECDSA-AES256-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384": "ECDHE-RSA-AES256-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CCM": "ECDHE-ECDSA-AES256-CCM",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8": "ECDHE-ECDSA-AES256-CCM8",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
}

_OPENSSL_TO_IANA = {openssl: iana for iana, openssl in CIPHER_SUITES.items()}


@dataclass(frozen=True)
class TLSProfile:
    """
    A DICOM TLS security profile: which TLS versions and TLS 1.2 cipher
    suites it negotiates.  TLS 1.3, where allowed, uses OpenSSL's TLS 1.3
    suites (all of them AEAD with forward secrecy), as DCMTK does.

    @ivar name: the name in C{profile=} (C{"bcp195-nd"}).
    @ivar options: DCMTK's spellings (C{"+py", "--profile-bcp195-nd"}).
    @ivar title: DCMTK's description.
    @ivar suites: the required TLS 1.2 suites (IANA names), strongest
        first: a server prefers them in this order, as DCMTK's does.
    @ivar optionalSuites: suites added when this OpenSSL has them (the
        3DES suite of the BCP 195 and AES profiles).
    @ivar minimumVersion: the lowest TLS version (L{ssl.TLSVersion}).
    @ivar tls13: whether TLS 1.3 is allowed.
    @ivar securityLevel: the OpenSSL security level this profile needs,
        or C{None} for OpenSSL's default.  TLS 1.0 and 1.1, and cipher
        suites without encryption, are refused by OpenSSL 3 and later at
        any level above 0.
    @ivar extraSuites: whether C{+cs}/C{ciphers=} may add suites.
    @ivar minimumDHBits: DH parameters smaller than this are refused.
    """

    name: str
    options: Tuple[str, str]
    title: str
    suites: Tuple[str, ...]
    minimumVersion: object = ssl.TLSVersion.TLSv1_2
    tls13: bool = True
    securityLevel: Optional[int] = None
    extraSuites: bool = True
    optionalSuites: Tuple[str, ...] = ()
    minimumDHBits: int = 1024

    @property
    def opensslSuites(self) -> List[str]:
        """
        The OpenSSL names of the suites this OpenSSL can negotiate,
        required ones first.
        """
        available = availableSuites()
        names = [CIPHER_SUITES[suite] for suite in self.suites]
        names += [CIPHER_SUITES[suite] for suite in self.optionalSuites if CIPHER_SUITES[suite] in available]
        return names

    def unavailable(self) -> List[str]:
        """
        The required suites this OpenSSL does not have (IANA names).
        """
        available = availableSuites()
        return [suite for suite in self.suites if CIPHER_SUITES[suite] not in available]


_ND_SUITES = (
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
)

#: The profiles by name, in the order of DCMTK's options.
PROFILES: Dict[str, TLSProfile] = {
    profile.name: profile
    for profile in [
        TLSProfile(
            "bcp195-nd",
            ("+py", "--profile-bcp195-nd"),
            "Non-downgrading BCP 195 TLS Profile (default)",
            _ND_SUITES,
        ),
        TLSProfile(
            "bcp195",
            ("+px", "--profile-bcp195"),
            "BCP 195 TLS Profile",
            _ND_SUITES + ("TLS_RSA_WITH_AES_128_CBC_SHA",),
            minimumVersion=ssl.TLSVersion.TLSv1_0,
            securityLevel=0,
            optionalSuites=("TLS_RSA_WITH_3DES_EDE_CBC_SHA",),
        ),
        TLSProfile(
            "bcp195-ex",
            ("+pz", "--profile-bcp195-ex"),
            "Extended BCP 195 TLS Profile",
            (
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
            ),
            tls13=False,
            extraSuites=False,
            minimumDHBits=2048,
        ),
        TLSProfile(
            "bcp195-rfc8996",
            ("+pg", "--profile-8996"),
            "BCP 195 RFC 8996 TLS Profile (DCMTK 3.6.8's default)",
            (
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            ),
        ),
        TLSProfile(
            "basic",
            ("+pb", "--profile-basic"),
            "Basic TLS Secure Transport Connection Profile (retired)",
            ("TLS_RSA_WITH_3DES_EDE_CBC_SHA",),
            minimumVersion=ssl.TLSVersion.TLSv1_0,
            tls13=False,
            securityLevel=0,
        ),
        TLSProfile(
            "aes",
            ("+pa", "--profile-aes"),
            "AES TLS Secure Transport Connection Profile (retired)",
            ("TLS_RSA_WITH_AES_128_CBC_SHA",),
            minimumVersion=ssl.TLSVersion.TLSv1_0,
            tls13=False,
            securityLevel=0,
            optionalSuites=("TLS_RSA_WITH_3DES_EDE_CBC_SHA",),
        ),
        TLSProfile(
            "null",
            ("+pn", "--profile-null"),
            "Authenticated unencrypted communication (retired, was used in IHE ATNA)",
            ("TLS_RSA_WITH_NULL_SHA",),
            minimumVersion=ssl.TLSVersion.TLSv1_0,
            tls13=False,
            securityLevel=0,
        ),
    ]
}

DEFAULT_PROFILE = "bcp195-nd"

#: The default profile's TLS 1.2 suites as an OpenSSL cipher string.
BCP195_CIPHERS = ":".join(CIPHER_SUITES[suite] for suite in PROFILES[DEFAULT_PROFILE].suites)


@lru_cache(maxsize=1)
def availableSuites() -> frozenset:
    """
    The OpenSSL names of every TLS 1.2 (and older) cipher suite the
    OpenSSL library under pyOpenSSL can negotiate at security level 0.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_cipher_list(b"ALL:eNULL:@SECLEVEL=0")
    return frozenset(SSL.Connection(context, None).get_cipher_list())


def suiteName(name: str) -> str:
    """
    The OpenSSL name of a cipher suite given by its IANA name (DCMTK's
    C{+cs}) or already by its OpenSSL name.

    @raise TLSConfigurationError: an unknown name.
    """
    if name in CIPHER_SUITES:
        return CIPHER_SUITES[name]
    if name in availableSuites():
        return name
    raise TLSConfigurationError("unknown cipher suite %s (see --list-ciphers)" % (name,), "ciphers")


def describeCipherSuites() -> str:
    """
    What C{+cc} prints: the suites this OpenSSL supports by IANA name,
    and each profile's.
    """
    available = availableSuites()
    lines = ["Supported TLS ciphersuites are:"]
    lines += ["    %s" % (iana,) for iana, openssl in CIPHER_SUITES.items() if openssl in available]
    lines.append("TLS 1.3 ciphersuites are OpenSSL's own (TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256,")
    lines.append("TLS_AES_128_GCM_SHA256) wherever a profile allows TLS 1.3.")
    lines.append("")
    lines.append("Security profiles (profile= in dicomtls: endpoints):")
    for profile in PROFILES.values():
        missing = profile.unavailable()
        versions = "TLS %s to %s" % (
            _VERSION_TEXT[profile.minimumVersion],
            "1.3" if profile.tls13 else "1.2",
        )
        lines.append("  %-15s %-22s %s; %s" % (profile.name, ", ".join(profile.options), profile.title, versions))
        if missing:
            lines.append("      not available: this OpenSSL lacks %s" % (", ".join(missing),))
        else:
            lines += ["      %s" % (_OPENSSL_TO_IANA.get(name, name),) for name in profile.opensslSuites]
    return "\n".join(lines) + "\n"


_VERSION_TEXT = {
    ssl.TLSVersion.TLSv1_0: "1.0",
    ssl.TLSVersion.TLSv1_1: "1.1",
    ssl.TLSVersion.TLSv1_2: "1.2",
    ssl.TLSVersion.TLSv1_3: "1.3",
}
