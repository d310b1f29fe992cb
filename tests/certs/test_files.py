"""Certificates on disk: the TLS Secret layout, safe writes, and self-renewing dev certificates."""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from certs.builder import CertBundle, build_bundle
from certs.files import bundle_paths, ensure_dev_certs, generate, write_bundle
from certs.inspect import inspect_certificate, verify_server_certificate
from tests.certs.conftest import NAMESPACE, NOW, SERVICE, SERVICE_HOST


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in ("ca.crt", "tls.crt", "tls.key")}


def test_a_bundle_is_written_as_a_tls_secret_with_a_private_key_file(
    bundle: CertBundle, tmp_path: Path
) -> None:
    paths = write_bundle(tmp_path / "out", bundle)
    assert (paths.ca_cert.name, paths.cert.name, paths.key.name) == ("ca.crt", "tls.crt", "tls.key")
    assert paths.ca_cert.read_bytes() == bundle.ca_cert
    assert paths.cert.read_bytes() == bundle.cert
    assert paths.key.read_bytes() == bundle.key
    assert mode(paths.key) == 0o600
    assert mode(paths.cert) == mode(paths.ca_cert) == 0o644
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ca.crt", "tls.crt", "tls.key"]


def test_the_ca_key_is_never_written(bundle: CertBundle, tmp_path: Path) -> None:
    write_bundle(tmp_path, bundle)
    for path in tmp_path.iterdir():
        assert bundle.ca_key not in path.read_bytes()


def test_rewriting_replaces_files_whole_so_open_readers_keep_the_old_content(
    bundle: CertBundle, tmp_path: Path
) -> None:
    paths = write_bundle(tmp_path, bundle)
    newer = build_bundle(SERVICE, NAMESPACE, now=NOW)
    with paths.cert.open("rb") as reader:
        write_bundle(tmp_path, newer)
        assert reader.read() == bundle.cert
    assert paths.cert.read_bytes() == newer.cert
    assert paths.key.read_bytes() == newer.key
    assert mode(paths.key) == 0o600


def test_generate_writes_a_chain_the_apiserver_accepts(tmp_path: Path) -> None:
    paths = generate(SERVICE, NAMESPACE, tmp_path, ["webhook.example.com"], ["10.0.0.7"], now=NOW)
    cert, ca = paths.cert.read_bytes(), paths.ca_cert.read_bytes()
    for host in (SERVICE_HOST, "webhook.example.com", "10.0.0.7"):
        verify_server_certificate(cert, ca, host, now=NOW)


def test_dev_certificates_are_created_on_first_start_for_localhost(tmp_path: Path) -> None:
    directory = tmp_path / ".dev-certs"
    paths = ensure_dev_certs(directory, now=NOW)
    assert paths == bundle_paths(directory)
    cert, ca = paths.cert.read_bytes(), paths.ca_cert.read_bytes()
    for host in ("localhost", "127.0.0.1", "::1", "spacegate.spacegate.svc"):
        verify_server_certificate(cert, ca, host, now=NOW)
    assert mode(paths.key) == 0o600


def test_dev_certificates_are_reused_while_more_than_30_days_are_left(tmp_path: Path) -> None:
    paths = ensure_dev_certs(tmp_path, now=NOW)
    first = snapshot(tmp_path)
    not_after = inspect_certificate(paths.cert.read_bytes()).not_after
    ensure_dev_certs(tmp_path, now=NOW + timedelta(days=1))
    ensure_dev_certs(tmp_path, now=not_after - timedelta(days=31))
    assert snapshot(tmp_path) == first


def test_dev_certificates_are_renewed_when_30_days_or_less_are_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = ensure_dev_certs(tmp_path, now=NOW)
    first = snapshot(tmp_path)
    later = inspect_certificate(paths.cert.read_bytes()).not_after - timedelta(days=29)
    with caplog.at_level(logging.INFO, logger="certs.files"):
        ensure_dev_certs(tmp_path, now=later)
    renewed = snapshot(tmp_path)
    assert renewed["tls.crt"] != first["tls.crt"]
    assert renewed["ca.crt"] != first["ca.crt"]
    assert inspect_certificate(renewed["tls.crt"]).remaining(later) == timedelta(days=365)
    assert "tls.crt expires on" in caplog.text


def test_expired_dev_certificates_are_replaced(tmp_path: Path) -> None:
    ensure_dev_certs(tmp_path, now=NOW)
    first = snapshot(tmp_path)
    much_later = NOW + timedelta(days=800)
    ensure_dev_certs(tmp_path, now=much_later)
    renewed = snapshot(tmp_path)
    assert renewed["tls.crt"] != first["tls.crt"]
    verify_server_certificate(renewed["tls.crt"], renewed["ca.crt"], "localhost", now=much_later)


def corrupt_cert(directory: Path) -> None:
    (directory / "tls.crt").write_bytes(b"garbage")


def mismatch_key(directory: Path) -> None:
    (directory / "tls.key").write_bytes(build_bundle("x", "y", now=NOW).key)


def remove_key(directory: Path) -> None:
    (directory / "tls.key").unlink()


def swap_ca(directory: Path) -> None:
    (directory / "ca.crt").write_bytes(build_bundle("x", "y", now=NOW).ca_cert)


def other_service(directory: Path) -> None:
    write_bundle(directory, build_bundle("other", "spacegate", extra_dns=["localhost"], now=NOW))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (corrupt_cert, "tls.crt holds no PEM certificate"),
        (mismatch_key, "tls.key does not match tls.crt"),
        (remove_key, "tls.key not found"),
        (swap_ca, "not trusted for localhost"),
        (other_service, "tls.crt does not cover spacegate, spacegate.spacegate, "),
    ],
)
def test_unusable_dev_certificates_are_regenerated_saying_why(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], None],
    reason: str,
) -> None:
    ensure_dev_certs(tmp_path, now=NOW)
    damage(tmp_path)
    with caplog.at_level(logging.INFO, logger="certs.files"):
        paths = ensure_dev_certs(tmp_path, now=NOW)
    assert reason in caplog.text
    cert, ca = paths.cert.read_bytes(), paths.ca_cert.read_bytes()
    verify_server_certificate(cert, ca, "localhost", now=NOW)
    verify_server_certificate(cert, ca, "127.0.0.1", now=NOW)
