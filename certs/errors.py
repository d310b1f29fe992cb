"""Errors raised by the ``certs`` package.

Every message says what is wrong and with which input (a name, a file, a hostname), and
never quotes key material: the text goes to logs and terminals.

::

    CertificateError (ValueError)
    ├── InvalidCertificateRequest  a name, IP or option that cannot go into a certificate
    ├── InvalidPEM                 bytes that are not the PEM certificate or key they should be
    ├── KeyMismatch                a private key that does not belong to the certificate
    └── VerificationFailed         a chain, hostname or validity check that did not pass
"""

from __future__ import annotations

__all__ = [
    "CertificateError",
    "InvalidCertificateRequest",
    "InvalidPEM",
    "KeyMismatch",
    "VerificationFailed",
]


class CertificateError(ValueError):
    """Base class: TLS material that cannot be built, read or trusted."""


class InvalidCertificateRequest(CertificateError):
    """A value that cannot go into a certificate (bad DNS label, IP, key size, validity)."""


class InvalidPEM(CertificateError):
    """Bytes that do not hold the expected PEM certificate or unencrypted private key."""


class KeyMismatch(CertificateError):
    """A private key whose public half is not the certificate's public key."""


class VerificationFailed(CertificateError):
    """A certificate that does not chain to the CA bundle or is not valid for a hostname."""
