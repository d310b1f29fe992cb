"""Read certificates back: what they say, when they expire, and whether a client would trust them.

Self-managed webhook certificates are known to expire silently after a year; this module gives
the numbers needed to renew in time (``remaining``, ``needs_renewal``) and the check the
apiserver itself performs (``verify_server_certificate``: chain to the ``caBundle`` plus
hostname verification of ``<svc>.<ns>.svc`` against the SANs, with the Common Name ignored).
It also tells apart the ways a PEM file can be unusable, so callers can log *why* in one line.

Pure: bytes in, values out; ``now`` is a parameter.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certs.errors import InvalidPEM, KeyMismatch, VerificationFailed

__all__ = [
    "RENEW_BEFORE",
    "CertificateInfo",
    "check_key_matches",
    "inspect_certificate",
    "load_certificates",
    "load_private_key",
    "verify_server_certificate",
]

# Renew when less than this is left: long enough to notice a failing renewal and act on it.
RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What a certificate says about itself. Times are timezone-aware UTC."""

    subject: str
    issuer: str
    serial_number: int
    not_after: datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    key_type: str  # "ECDSA P-256", "RSA 2048", ...

    def remaining(self, now: datetime) -> timedelta:
        """Time left until ``not_after``; negative once expired."""
        return self.not_after - now

    def needs_renewal(self, now: datetime, before: timedelta = RENEW_BEFORE) -> bool:
        """True when ``before`` or less is left (or the certificate has already expired)."""
        return self.remaining(now) <= before


def load_certificates(pem: bytes, what: str = "certificate") -> list[x509.Certificate]:
    """Every certificate in a PEM blob, in order. ``what`` names the source in errors."""
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise InvalidPEM(f"{what} holds no PEM certificate (no '-----BEGIN CERTIFICATE-----')")
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise InvalidPEM(
            f"{what} holds a PEM certificate that cannot be parsed (truncated or corrupt?)"
        ) from None


def load_private_key(pem: bytes, what: str = "private key") -> PrivateKeyTypes:
    """An unencrypted PEM private key. Errors never quote the key."""
    if b"PRIVATE KEY-----" not in pem:
        raise InvalidPEM(f"{what} holds no PEM private key (no '-----BEGIN ... PRIVATE KEY-----')")
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise InvalidPEM(f"{what} is encrypted; an unencrypted private key is needed") from None
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidPEM(
            f"{what} holds a PEM private key that cannot be parsed (truncated or corrupt?)"
        ) from None


def inspect_certificate(pem: bytes, what: str = "certificate") -> CertificateInfo:
    """Describe the first certificate in ``pem`` (the leaf, for a chain file)."""
    cert = load_certificates(pem, what)[0]
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial_number=cert.serial_number,
        not_after=cert.not_valid_after_utc,
        dns_names=_sans(cert, x509.DNSName),
        ip_addresses=_sans(cert, x509.IPAddress),
        key_type=_key_type(cert),
    )


def check_key_matches(
    cert_pem: bytes,
    key_pem: bytes,
    *,
    cert_what: str = "certificate",
    key_what: str = "private key",
) -> None:
    """Raise unless ``key_pem`` is the private key of the first certificate in ``cert_pem``."""
    cert = load_certificates(cert_pem, cert_what)[0]
    key = load_private_key(key_pem, key_what)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise KeyMismatch(f"{key_what} does not match {cert_what} (different public keys)")


def verify_server_certificate(
    cert_pem: bytes,
    ca_bundle_pem: bytes,
    hostname: str,
    *,
    now: datetime | None = None,
) -> None:
    """Raise ``VerificationFailed`` unless a TLS client would accept the certificate.

    ``cert_pem`` is the leaf, optionally followed by intermediates; ``ca_bundle_pem`` holds one
    or more trusted CAs (several during a CA rotation). ``hostname`` is a DNS name or an IP
    and is matched against the SANs only, as Go's crypto/x509 does since 1.15. The check
    follows RFC 5280 and the CA/B Forum profile (cryptography's ``ServerVerifier``).
    """
    leaf, *intermediates = load_certificates(cert_pem, "server certificate")
    cas = load_certificates(ca_bundle_pem, "CA bundle")
    builder = PolicyBuilder().store(Store(cas))
    if now is not None:
        builder = builder.time(now.astimezone(UTC))
    try:
        subject: x509.DNSName | x509.IPAddress = x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        subject = x509.DNSName(hostname)
    try:
        verifier = builder.build_server_verifier(subject)
    except ValueError:
        raise VerificationFailed(f"{hostname!r} is not a DNS name or IP address") from None
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise VerificationFailed(
            f"certificate (serial {leaf.serial_number:x}) is not trusted for {hostname}: {exc}"
        ) from None


def _sans(
    cert: x509.Certificate, kind: type[x509.DNSName] | type[x509.IPAddress]
) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(str(value) for value in san.get_values_for_type(kind))


def _key_type(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"ECDSA {curve.get(key.curve.name, key.curve.name)}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return type(key).__name__
