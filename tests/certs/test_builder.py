"""The CA and serving certificate satisfy what the apiserver checks (docs/protocol.md, "TLS")."""

from __future__ import annotations

import ipaddress
import re
import ssl
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.builder import (
    BACKDATE,
    CertBundle,
    KeyPair,
    build_bundle,
    issue_serving_cert,
    new_ca,
)
from certs.errors import InvalidCertificateRequest, VerificationFailed
from certs.inspect import verify_server_certificate
from tests.certs._tls import EchoServer, client_context, connect, handshake
from tests.certs.conftest import NAMESPACE, NOW, SERVICE, SERVICE_HOST


def cert_of(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


E = TypeVar("E", bound=x509.ExtensionType)


def extension(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def server_context(
    cert_pem: bytes, key_pem: bytes, tmp_path_factory: pytest.TempPathFactory
) -> ssl.SSLContext:
    directory = tmp_path_factory.mktemp("server")
    (directory / "tls.crt").write_bytes(cert_pem)
    (directory / "tls.key").write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    return context


def cn_only_certificate(ca: KeyPair, common_name: str) -> KeyPair:
    """A serving certificate the pre-1.19 way: the name in the CN, no SAN extension."""
    ca_cert = cert_of(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def test_serving_certificate_names_the_service_in_every_in_cluster_form(bundle: CertBundle) -> None:
    san = extension(cert_of(bundle.cert), x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "spacegate",
        "spacegate.spacegate-system",
        "spacegate.spacegate-system.svc",
        "spacegate.spacegate-system.svc.cluster.local",
    ]
    assert san.get_values_for_type(x509.IPAddress) == []


@pytest.mark.parametrize(
    "hostname",
    [
        SERVICE_HOST,
        "spacegate",
        "spacegate.spacegate-system",
        "spacegate.spacegate-system.svc.cluster.local",
    ],
)
def test_every_service_name_verifies_against_the_ca(bundle: CertBundle, hostname: str) -> None:
    verify_server_certificate(bundle.cert, bundle.ca_cert, hostname, now=NOW)


@pytest.mark.parametrize("hostname", ["other.spacegate-system.svc", "spacegate.other.svc", "::1"])
def test_names_the_certificate_does_not_carry_are_refused(
    bundle: CertBundle, hostname: str
) -> None:
    with pytest.raises(VerificationFailed, match="no matching subjectAltName"):
        verify_server_certificate(bundle.cert, bundle.ca_cert, hostname, now=NOW)


def test_a_tls_client_like_the_apiserver_accepts_the_service_name(
    live_bundle: CertBundle, tmp_path_factory: pytest.TempPathFactory
) -> None:
    context = server_context(live_bundle.cert, live_bundle.key, tmp_path_factory)
    with EchoServer(context) as server:
        peer = handshake(server.port, client_context(live_bundle.ca_cert), SERVICE_HOST)
    assert peer.serial == cert_of(live_bundle.cert).serial_number


def test_a_tls_client_refuses_the_certificate_under_another_ca(
    live_bundle: CertBundle, live_ca: KeyPair, tmp_path_factory: pytest.TempPathFactory
) -> None:
    context = server_context(live_bundle.cert, live_bundle.key, tmp_path_factory)
    with (
        EchoServer(context) as server,
        pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"),
    ):
        connect(server.port, client_context(live_ca.cert), SERVICE_HOST)


def test_a_common_name_only_certificate_fails_hostname_verification(
    live_ca: KeyPair, tmp_path_factory: pytest.TempPathFactory
) -> None:
    legacy = cn_only_certificate(live_ca, SERVICE_HOST)
    with pytest.raises(VerificationFailed, match="has no subjectAltName"):
        verify_server_certificate(legacy.cert, live_ca.cert, SERVICE_HOST)
    context = server_context(legacy.cert, legacy.key, tmp_path_factory)
    with (
        EchoServer(context) as server,
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        connect(server.port, client_context(live_ca.cert), SERVICE_HOST)


def test_both_certificates_are_signed_with_sha256(bundle: CertBundle) -> None:
    for pem in (bundle.ca_cert, bundle.cert):
        algorithm = cert_of(pem).signature_hash_algorithm
        assert isinstance(algorithm, hashes.SHA256)


def test_keys_are_ecdsa_p256_by_default(bundle: CertBundle) -> None:
    for pem in (bundle.ca_cert, bundle.cert):
        key = cert_of(pem).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert isinstance(key.curve, ec.SECP256R1)
    private = serialization.load_pem_private_key(bundle.key, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)


def test_rsa_keys_are_available_and_verify() -> None:
    rsa_bundle = build_bundle(SERVICE, NAMESPACE, key_type="rsa", now=NOW)
    key = cert_of(rsa_bundle.cert).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048
    usage = extension(cert_of(rsa_bundle.cert), x509.KeyUsage).value
    assert usage.key_encipherment  # TLS 1.2 RSA key exchange needs it
    verify_server_certificate(rsa_bundle.cert, rsa_bundle.ca_cert, SERVICE_HOST, now=NOW)


def test_ca_may_sign_certificates_but_no_further_cas(bundle: CertBundle) -> None:
    ca = cert_of(bundle.ca_cert)
    constraints = extension(ca, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    usage = extension(ca, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert ca.issuer == ca.subject


def test_serving_certificate_is_for_tls_servers_and_names_its_issuing_key(
    bundle: CertBundle,
) -> None:
    leaf, ca = cert_of(bundle.cert), cert_of(bundle.ca_cert)
    assert not extension(leaf, x509.BasicConstraints).value.ca
    assert list(extension(leaf, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not extension(leaf, x509.KeyUsage).value.key_cert_sign
    ca_ski = extension(ca, x509.SubjectKeyIdentifier).value.digest
    assert extension(leaf, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    assert extension(leaf, x509.SubjectKeyIdentifier).value.digest != ca_ski
    assert leaf.issuer == ca.subject
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERVICE_HOST


def test_validity_starts_an_hour_early_for_clock_skew_and_lasts_a_year_under_a_5_year_ca(
    bundle: CertBundle,
) -> None:
    leaf, ca = cert_of(bundle.cert), cert_of(bundle.ca_cert)
    assert timedelta(hours=1) == BACKDATE
    assert leaf.not_valid_before_utc == ca.not_valid_before_utc == NOW - BACKDATE
    assert leaf.not_valid_after_utc == NOW + timedelta(days=365)
    assert ca.not_valid_after_utc == NOW + timedelta(days=5 * 365)


def test_validity_periods_are_configurable() -> None:
    short = build_bundle(
        SERVICE,
        NAMESPACE,
        ca_validity=timedelta(days=30),
        cert_validity=timedelta(days=7),
        now=NOW,
    )
    assert cert_of(short.cert).not_valid_after_utc == NOW + timedelta(days=7)
    assert cert_of(short.ca_cert).not_valid_after_utc == NOW + timedelta(days=30)


def test_a_serving_certificate_never_outlives_its_ca() -> None:
    ca = new_ca(validity=timedelta(days=10), now=NOW)
    leaf = issue_serving_cert(
        ca, dns_names=["a.b.svc"], validity=timedelta(days=365), now=NOW + timedelta(days=5)
    )
    assert cert_of(leaf.cert).not_valid_after_utc == cert_of(ca.cert).not_valid_after_utc


def test_extra_names_and_ips_are_added_for_local_runs() -> None:
    local = build_bundle(
        SERVICE, NAMESPACE, extra_dns=["localhost"], extra_ips=["127.0.0.1", "::1"], now=NOW
    )
    san = extension(cert_of(local.cert), x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    for host in ("localhost", "127.0.0.1", "::1"):
        verify_server_certificate(local.cert, local.ca_cert, host, now=NOW)


def test_each_bundle_has_its_own_ca_and_serial_numbers(bundle: CertBundle) -> None:
    other = build_bundle(SERVICE, NAMESPACE, now=NOW)
    assert cert_of(other.ca_cert).public_key() != cert_of(bundle.ca_cert).public_key()
    assert cert_of(other.cert).serial_number != cert_of(bundle.cert).serial_number
    with pytest.raises(VerificationFailed):
        verify_server_certificate(other.cert, bundle.ca_cert, SERVICE_HOST, now=NOW)


def test_a_long_service_name_still_gets_all_its_sans() -> None:
    service, namespace = "s" * 63, "n" * 63  # svc.ns.svc is longer than a CN may be
    long_bundle = build_bundle(service, namespace, now=NOW)
    verify_server_certificate(
        long_bundle.cert, long_bundle.ca_cert, f"{service}.{namespace}.svc", now=NOW
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"service": "Spacegate"}, "service name 'Spacegate' is not a valid DNS-1035 label"),
        ({"service": "1gate"}, "service name '1gate' is not a valid DNS-1035 label"),
        ({"service": "s" * 64}, "at most 63 characters"),
        ({"namespace": "team_a"}, "namespace 'team_a' is not a valid DNS-1123 label"),
        ({"namespace": "-ns"}, "namespace '-ns' is not a valid DNS-1123 label"),
        ({"extra_dns": ["bad_name"]}, "DNS name 'bad_name' is invalid"),
        ({"extra_dns": ["a..b"]}, "DNS name 'a..b' is invalid"),
        ({"extra_ips": ["1.2.3"]}, "IP address '1.2.3' is not an IPv4 or IPv6 address"),
        ({"key_type": "rsa", "rsa_bits": 1024}, "at least 2048 bits, got 1024"),
        ({"key_type": "dsa"}, "key type must be 'ecdsa' or 'rsa', got 'dsa'"),
        ({"cert_validity": timedelta(0)}, "certificate validity must be positive"),
        ({"now": datetime(2026, 1, 1)}, "now must be timezone-aware"),
    ],
)
def test_bad_input_is_refused_naming_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"service": SERVICE, "namespace": NAMESPACE, "now": NOW}
    arguments.update(kwargs)
    with pytest.raises(InvalidCertificateRequest, match=re.escape(message)):
        build_bundle(**arguments)  # type: ignore[arg-type]


def test_wildcard_extra_names_are_accepted() -> None:
    wildcard = build_bundle(SERVICE, NAMESPACE, extra_dns=["*.hooks.example.com"], now=NOW)
    verify_server_certificate(wildcard.cert, wildcard.ca_cert, "a.hooks.example.com", now=NOW)
