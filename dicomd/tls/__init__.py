"""
DICOM TLS (PS3.15 Annex B, the Secure Transport Connection profiles) on
Twisted's SSL machinery, one job per module:

  - L{dicomd.tls.profiles}: the security profiles and the cipher suites
    they negotiate.
  - L{dicomd.tls.settings}: what DCMTK's TLS options describe (keys,
    certificates, trust, revocation lists, profile), read and checked.
  - L{dicomd.tls.context}: the OpenSSL context those settings make, with
    what Twisted's C{CertificateOptions} cannot express.
  - L{dicomd.tls.certificates}: what a peer's certificate names, and the
    binding of calling AE titles to certificates.

L{TLSConfigurationError} is how each of them refuses what cannot be used.
"""

from typing import Optional


class TLSConfigurationError(ValueError):
    """
    A key, certificate, revocation list or setting cannot be used; the
    message names the file or value.

    @ivar setting: the L{TLSSettings<dicomd.tls.settings.TLSSettings>}
        field at fault (C{"crls"}, C{"privateKey"}...), so that front doors
        can name their own option.
    """

    def __init__(self, message: str, setting: Optional[str] = None):
        ValueError.__init__(self, message)
        self.setting = setting
