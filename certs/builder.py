"""Build a private CA and a webhook serving certificate, as PEM bytes.

The apiserver calls a webhook Service over TLS with ServerName ``<svc>.<ns>.svc`` and verifies
the chain against the webhook configuration's ``caBundle``. Since Go 1.15 (Kubernetes 1.19) the
Common Name is ignored, so the serving certificate must carry that name as a DNS SAN
(docs/protocol.md §4). This module therefore always puts ``svc``, ``svc.ns``,
``svc.ns.svc`` and ``svc.ns.svc.cluster.local`` in the SAN extension, signs with SHA-256 (the
hook client counts SHA-1 as insecure) and adds the extensions a strict RFC 5280 / Web PKI
verifier expects: basicConstraints and keyUsage on both certificates, serverAuth EKU, SKI and AKI.

It is pure: no files, no environment, and the clock is a parameter (``now``) so tests are
deterministic. Writing the result to disk is ``certs.files``' job.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.errors import InvalidCertificateRequest
from certs.inspect import check_key_matches, load_certificates, load_private_key

__all__ = [
    "BACKDATE",
    "DEFAULT_CA_VALIDITY",
    "DEFAULT_CERT_VALIDITY",
    "CertBundle",
    "IPLike",
    "KeyPair",
    "KeyType",
    "build_bundle",
    "issue_serving_cert",
    "new_ca",
    "service_dns_names",
]

KeyType = Literal["ecdsa", "rsa"]
IPLike = str | ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_CA_VALIDITY = timedelta(days=5 * 365)
DEFAULT_CERT_VALIDITY = timedelta(days=365)
# Certificates start to be valid a little before "now", so a verifier whose clock runs behind
# ours does not reject a certificate minted a moment ago (client-go's cert util does the same).
BACKDATE = timedelta(hours=1)
MIN_RSA_BITS = 2048

# Kubernetes object names: Services are DNS-1035 labels, Namespaces DNS-1123 labels.
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_MAX_LABEL = 63
_MAX_DNS_NAME = 253
_MAX_COMMON_NAME = 64  # X.520 ub-common-name

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class KeyPair:
    """One certificate and its unencrypted PKCS#8 private key, both PEM."""

    cert: bytes
    key: bytes


@dataclass(frozen=True, slots=True)
class CertBundle:
    """A CA and a serving certificate it signed, all PEM.

    ``ca_cert`` is what goes into the webhook configuration's ``caBundle``; ``cert`` and ``key``
    go into the Secret mounted by the server. ``ca_key`` is returned so a caller may issue more
    certificates, but ``certs.files`` deliberately never writes it to disk.
    """

    ca_cert: bytes
    ca_key: bytes
    cert: bytes
    key: bytes


def service_dns_names(
    service: str, namespace: str, cluster_domain: str = "cluster.local"
) -> tuple[str, ...]:
    """The names a Service answers to inside the cluster, shortest first.

    The apiserver uses the third one (``svc.ns.svc``); the others cover clients that resolve
    through the search path or use the fully qualified name.
    """
    _check_label(service, "service name", _DNS1035_LABEL, "DNS-1035 label", "a letter")
    _check_label(namespace, "namespace", _DNS1123_LABEL, "DNS-1123 label", "a letter or digit")
    _check_dns_name(cluster_domain, "cluster domain")
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    )


def new_ca(
    *,
    common_name: str = "spacegate-ca",
    key_type: KeyType = "ecdsa",
    rsa_bits: int = MIN_RSA_BITS,
    validity: timedelta = DEFAULT_CA_VALIDITY,
    now: datetime | None = None,
) -> KeyPair:
    """A self-signed CA that may sign end-entity certificates only (pathLen 0)."""
    moment = _now(now)
    _check_validity(validity, "CA validity")
    key = _new_key(key_type, rsa_bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _common_name(common_name))])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - BACKDATE)
        .not_valid_after(moment + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True, rsa_key=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert=_cert_pem(cert), key=_key_pem(key))


def issue_serving_cert(
    ca: KeyPair,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[IPLike] = (),
    common_name: str | None = None,
    key_type: KeyType = "ecdsa",
    rsa_bits: int = MIN_RSA_BITS,
    validity: timedelta = DEFAULT_CERT_VALIDITY,
    now: datetime | None = None,
) -> KeyPair:
    """A TLS server certificate for ``dns_names`` and ``ip_addresses``, signed by ``ca``.

    Verifiers ignore the Common Name; it only makes the certificate readable in
    ``openssl x509 -text``. Without ``common_name`` it is the first DNS name that fits in 64
    characters. The end of validity is clamped to the CA's, so the certificate's own expiry
    date is the one that matters.
    """
    moment = _now(now)
    _check_validity(validity, "certificate validity")
    names = _dedupe(_check_dns_name(name, "DNS name") for name in dns_names)
    ips = _dedupe(_parse_ip(ip) for ip in ip_addresses)
    if not names and not ips:
        raise InvalidCertificateRequest("a serving certificate needs at least one DNS name or IP")
    ca_cert = load_certificates(ca.cert, "CA certificate")[0]
    ca_key = load_private_key(ca.key, "CA key")
    if not isinstance(ca_key, PrivateKey):
        raise InvalidCertificateRequest("the CA key must be an ECDSA or RSA key")
    check_key_matches(ca.cert, ca.key, cert_what="CA certificate", key_what="CA key")
    key = _new_key(key_type, rsa_bits)
    not_after = min(moment + validity, ca_cert.not_valid_after_utc)
    if common_name is not None:
        subject_cn: str | None = _common_name(common_name)
    else:
        subject_cn = next((n for n in names if len(n) <= _MAX_COMMON_NAME), None)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)] if subject_cn is not None else []
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ip) for ip in ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False, rsa_key=isinstance(key, rsa.RSAPrivateKey)), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # RFC 5280 §4.2.1.6: the SAN extension is critical when the subject is empty.
        .add_extension(x509.SubjectAlternativeName(sans), critical=subject_cn is None)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_identifier(ca_cert), critical=False)
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert=_cert_pem(cert), key=_key_pem(key))


def build_bundle(
    service: str,
    namespace: str,
    *,
    extra_dns: Iterable[str] = (),
    extra_ips: Iterable[IPLike] = (),
    key_type: KeyType = "ecdsa",
    rsa_bits: int = MIN_RSA_BITS,
    ca_validity: timedelta = DEFAULT_CA_VALIDITY,
    cert_validity: timedelta = DEFAULT_CERT_VALIDITY,
    cluster_domain: str = "cluster.local",
    now: datetime | None = None,
) -> CertBundle:
    """A fresh CA and a serving certificate for Service ``service`` in ``namespace``.

    Extra DNS names and IPs are for callers that do not come through the Service, such as a
    local run (``localhost``, ``127.0.0.1``) or a ``url:`` webhook.
    """
    moment = _now(now)
    names = service_dns_names(service, namespace, cluster_domain) + tuple(extra_dns)
    ca = new_ca(
        # A timestamp makes each CA's subject unique, so two CAs side by side in a caBundle
        # during a rotation are told apart by name as well as by key identifier.
        common_name=_ca_common_name(f"{service}.{namespace}", moment),
        key_type=key_type,
        rsa_bits=rsa_bits,
        validity=ca_validity,
        now=moment,
    )
    leaf = issue_serving_cert(
        ca,
        dns_names=names,
        ip_addresses=tuple(extra_ips),
        common_name=names[2] if len(names[2]) <= _MAX_COMMON_NAME else None,
        key_type=key_type,
        rsa_bits=rsa_bits,
        validity=cert_validity,
        now=moment,
    )
    return CertBundle(ca_cert=ca.cert, ca_key=ca.key, cert=leaf.cert, key=leaf.key)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise InvalidCertificateRequest("now must be timezone-aware (e.g. datetime.now(UTC))")
    return now


def _check_validity(validity: timedelta, what: str) -> None:
    if validity <= timedelta(0):
        raise InvalidCertificateRequest(f"{what} must be positive, got {validity}")


def _new_key(key_type: KeyType, rsa_bits: int) -> PrivateKey:
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        if rsa_bits < MIN_RSA_BITS:
            raise InvalidCertificateRequest(
                f"RSA keys must have at least {MIN_RSA_BITS} bits, got {rsa_bits}"
            )
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise InvalidCertificateRequest(f"key type must be 'ecdsa' or 'rsa', got {key_type!r}")


def _key_usage(*, ca: bool, rsa_key: bool) -> x509.KeyUsage:
    # A CA signs certificates (and CRLs, should one ever be published); a server signs the
    # handshake. RSA key exchange in TLS 1.2 also needs keyEncipherment.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=rsa_key and not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_cert.public_key()  # type: ignore[arg-type]
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _check_label(value: str, what: str, pattern: re.Pattern[str], kind: str, start: str) -> None:
    if len(value) > _MAX_LABEL or not pattern.fullmatch(value):
        raise InvalidCertificateRequest(
            f"{what} {value!r} is not a valid {kind}: lowercase letters, digits and '-', "
            f"starting with {start} and ending with a letter or digit, at most {_MAX_LABEL} "
            "characters"
        )


def _check_dns_name(value: str, what: str) -> str:
    name = value.lower().rstrip(".")
    labels = name.split(".")
    if labels and labels[0] == "*":  # a wildcard is allowed as the whole leftmost label
        labels = labels[1:]
    if (
        not labels
        or len(name) > _MAX_DNS_NAME
        or not all(_HOST_LABEL.fullmatch(label) for label in labels)
    ):
        raise InvalidCertificateRequest(
            f"{what} {value!r} is invalid: expected dot-separated labels of letters, digits "
            "and '-' (an optional leading '*.' wildcard), at most 253 characters"
        )
    return name


def _parse_ip(value: IPLike) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise InvalidCertificateRequest(
            f"IP address {value!r} is not an IPv4 or IPv6 address"
        ) from None


def _common_name(value: str) -> str:
    if not 1 <= len(value) <= _MAX_COMMON_NAME:
        raise InvalidCertificateRequest(
            f"common name must be 1 to {_MAX_COMMON_NAME} characters, got {len(value)}"
        )
    return value


def _ca_common_name(label: str, moment: datetime) -> str:
    suffix = f"-ca@{int(moment.timestamp())}"
    return label[: _MAX_COMMON_NAME - len(suffix)] + suffix


def _dedupe(items: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
