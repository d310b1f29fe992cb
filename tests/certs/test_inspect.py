"""Reading certificates back: what they say, when to renew, and whether a client trusts them."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from certs.builder import CertBundle, build_bundle
from certs.errors import InvalidPEM, KeyMismatch, VerificationFailed
from certs.inspect import (
    check_key_matches,
    inspect_certificate,
    load_certificates,
    load_private_key,
    verify_server_certificate,
)
from tests.certs.conftest import NAMESPACE, NOW, SERVICE, SERVICE_HOST


def test_inspection_reports_names_validity_issuer_and_key_type(bundle: CertBundle) -> None:
    info = inspect_certificate(bundle.cert)
    ca = inspect_certificate(bundle.ca_cert)
    assert info.subject == f"CN={SERVICE_HOST}"
    assert info.issuer == ca.subject
    assert info.dns_names[2] == SERVICE_HOST
    assert info.ip_addresses == ()
    assert info.not_after == NOW + timedelta(days=365)
    assert info.key_type == "ECDSA P-256"


def test_ips_are_reported_as_text() -> None:
    local = build_bundle(SERVICE, NAMESPACE, extra_ips=["127.0.0.1", "::1"], now=NOW)
    assert inspect_certificate(local.cert).ip_addresses == ("127.0.0.1", "::1")


def test_remaining_time_counts_down_and_goes_negative_after_expiry(bundle: CertBundle) -> None:
    info = inspect_certificate(bundle.cert)
    assert info.remaining(NOW) == timedelta(days=365)
    assert info.remaining(info.not_after + timedelta(days=1)) == timedelta(days=-1)


@pytest.mark.parametrize(
    ("left", "renew"),
    [
        (timedelta(days=31), False),
        (timedelta(days=30, seconds=1), False),
        (timedelta(days=30), True),
        (timedelta(days=1), True),
        (timedelta(days=-1), True),
    ],
)
def test_renewal_is_due_when_30_days_or_less_are_left(
    bundle: CertBundle, left: timedelta, renew: bool
) -> None:
    info = inspect_certificate(bundle.cert)
    assert info.needs_renewal(info.not_after - left) is renew


def test_the_renewal_margin_is_adjustable(bundle: CertBundle) -> None:
    info = inspect_certificate(bundle.cert)
    moment = info.not_after - timedelta(days=50)
    assert not info.needs_renewal(moment)
    assert info.needs_renewal(moment, before=timedelta(days=60))


def test_an_expired_certificate_is_not_trusted(bundle: CertBundle) -> None:
    later = NOW + timedelta(days=366)
    with pytest.raises(VerificationFailed, match="not valid at validation time"):
        verify_server_certificate(bundle.cert, bundle.ca_cert, SERVICE_HOST, now=later)


def test_a_certificate_from_another_ca_is_not_trusted(bundle: CertBundle) -> None:
    other = build_bundle(SERVICE, NAMESPACE, now=NOW)
    with pytest.raises(VerificationFailed, match=f"not trusted for {SERVICE_HOST}"):
        verify_server_certificate(bundle.cert, other.ca_cert, SERVICE_HOST, now=NOW)


def test_a_ca_bundle_with_old_and_new_cas_trusts_both(bundle: CertBundle) -> None:
    # During a CA rotation the caBundle carries both CAs.
    other = build_bundle(SERVICE, NAMESPACE, now=NOW)
    ca_bundle = bundle.ca_cert + other.ca_cert
    verify_server_certificate(bundle.cert, ca_bundle, SERVICE_HOST, now=NOW)
    verify_server_certificate(other.cert, ca_bundle, SERVICE_HOST, now=NOW)


def test_the_ca_itself_is_not_accepted_as_a_serving_certificate(bundle: CertBundle) -> None:
    with pytest.raises(VerificationFailed):
        verify_server_certificate(bundle.ca_cert, bundle.ca_cert, SERVICE_HOST, now=NOW)


def test_a_hostname_that_is_no_dns_name_is_refused_by_name(bundle: CertBundle) -> None:
    with pytest.raises(VerificationFailed, match="'bad name' is not a DNS name or IP address"):
        verify_server_certificate(bundle.cert, bundle.ca_cert, "bad name", now=NOW)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "tls.crt holds no PEM certificate"),
        (b"not a certificate", "tls.crt holds no PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\nMIIB\n", "tls.crt holds a PEM certificate that cannot"),
    ],
)
def test_unusable_certificate_files_are_described(data: bytes, message: str) -> None:
    with pytest.raises(InvalidPEM, match=re.escape(message)):
        load_certificates(data, "tls.crt")


def test_a_half_written_certificate_is_described_as_unparsable(bundle: CertBundle) -> None:
    with pytest.raises(InvalidPEM, match="cannot be parsed"):
        inspect_certificate(bundle.cert[: len(bundle.cert) // 2], "tls.crt")


def test_unusable_key_files_are_described_without_quoting_them(bundle: CertBundle) -> None:
    half = bundle.key[: len(bundle.key) // 2]
    with pytest.raises(InvalidPEM) as caught:
        load_private_key(half, "tls.key")
    assert str(caught.value) == (
        "tls.key holds a PEM private key that cannot be parsed (truncated or corrupt?)"
    )
    with pytest.raises(InvalidPEM, match=re.escape("tls.key holds no PEM private key")):
        load_private_key(b"garbage", "tls.key")


def test_an_encrypted_key_is_refused_as_such(bundle: CertBundle) -> None:
    key = load_private_key(bundle.key)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(InvalidPEM, match=re.escape("tls.key is encrypted")):
        load_private_key(encrypted, "tls.key")


def test_a_key_from_another_pair_is_a_mismatch(bundle: CertBundle) -> None:
    check_key_matches(bundle.cert, bundle.key)
    with pytest.raises(KeyMismatch, match=re.escape("tls.key does not match tls.crt")):
        check_key_matches(bundle.cert, bundle.ca_key, cert_what="tls.crt", key_what="tls.key")
