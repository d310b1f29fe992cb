"""Rotating the certificate files changes what new TLS connections get, without a restart."""

from __future__ import annotations

import logging
import os
import re
import shutil
import ssl
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.builder import KeyPair, issue_serving_cert
from certs.errors import CertificateError
from certs.inspect import inspect_certificate, load_private_key
from certs.reload import ReloadingTLSContext
from tests.certs._tls import EchoServer, Peer, client_context, connect, handshake


def serial_of(pair: KeyPair) -> int:
    return x509.load_pem_x509_certificate(pair.cert).serial_number


def issue(ca: KeyPair, validity: timedelta = timedelta(days=90)) -> KeyPair:
    return issue_serving_cert(
        ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"], validity=validity
    )


def write_pair(directory: Path, pair: KeyPair) -> None:
    (directory / "tls.key").write_bytes(pair.key)
    (directory / "tls.crt").write_bytes(pair.cert)


class ProjectedSecret:
    """A directory laid out like a Secret volume, updated the way the kubelet does it.

    The kubelet's AtomicWriter writes each version into a fresh ``..<timestamp>`` directory,
    points ``..data_tmp`` at it and renames that over ``..data``; ``tls.crt`` is a symlink
    to ``..data/tls.crt`` and never changes itself.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = 0

    def publish(self, pair: KeyPair) -> None:
        self.version += 1
        version_dir = self.root / f"..2026_01_15_12_00_00.{self.version:09d}"
        version_dir.mkdir()
        write_pair(version_dir, pair)
        data = self.root / "..data"
        old = data.resolve() if data.is_symlink() else None
        staging = self.root / "..data_tmp"
        staging.symlink_to(version_dir.name)
        os.replace(staging, data)
        for name in ("tls.crt", "tls.key"):
            if not (self.root / name).is_symlink():
                (self.root / name).symlink_to(f"..data/{name}")
        if old is not None:
            shutil.rmtree(old)


@dataclass(frozen=True)
class Rig:
    """A server on loopback using a ReloadingTLSContext over the files in ``directory``."""

    directory: Path
    tls: ReloadingTLSContext
    server: EchoServer
    ca: bytes
    first: KeyPair

    @property
    def client(self) -> ssl.SSLContext:
        return client_context(self.ca)

    def peer(self, server_hostname: str | None = "localhost") -> Peer:
        """Handshake; without a server_hostname the chain is still checked, the name is not."""
        client = client_context(self.ca, check_hostname=server_hostname is not None)
        return handshake(self.server.port, client, server_hostname)


@pytest.fixture
def rig(live_ca: KeyPair, tmp_path: Path) -> Iterator[Rig]:
    first = issue(live_ca)
    write_pair(tmp_path, first)
    tls = ReloadingTLSContext(tmp_path / "tls.crt", tmp_path / "tls.key")
    with EchoServer(tls.context) as server:
        yield Rig(tmp_path, tls, server, live_ca.cert, first)


def test_new_connections_get_the_rotated_certificate_after_an_in_place_rewrite(
    rig: Rig, live_ca: KeyPair
) -> None:
    assert rig.peer().serial == serial_of(rig.first)
    second = issue(live_ca)
    write_pair(rig.directory, second)
    assert rig.tls.maybe_reload() is True
    assert rig.peer().serial == serial_of(second)


def test_a_kubernetes_secret_update_by_data_symlink_swap_is_picked_up(
    live_ca: KeyPair, tmp_path: Path
) -> None:
    secret = ProjectedSecret(tmp_path)
    first, second = issue(live_ca), issue(live_ca)
    secret.publish(first)
    tls = ReloadingTLSContext(tmp_path / "tls.crt", tmp_path / "tls.key")
    client = client_context(live_ca.cert)
    with EchoServer(tls.context) as server:
        assert handshake(server.port, client).serial == serial_of(first)
        secret.publish(second)
        assert tls.maybe_reload() is True
        assert handshake(server.port, client).serial == serial_of(second)
        assert tls.maybe_reload() is False


def test_connections_opened_before_a_rotation_keep_working(rig: Rig, live_ca: KeyPair) -> None:
    kept = connect(rig.server.port, rig.client)
    try:
        write_pair(rig.directory, issue(live_ca))
        assert rig.tls.maybe_reload() is True
        assert kept.echo(b"still here\n") == b"still here\n"
        assert kept.peer.serial == serial_of(rig.first)
    finally:
        kept.close()


def test_clients_that_send_no_sni_get_the_rotated_certificate_too(
    rig: Rig, live_ca: KeyPair
) -> None:
    # Python sends no SNI for an IP address or without a server_hostname. The reload still
    # reaches these clients because OpenSSL runs the SNI callback with server_name None.
    second = issue(live_ca)
    write_pair(rig.directory, second)
    assert rig.tls.maybe_reload() is True
    assert rig.peer("127.0.0.1").serial == serial_of(second)  # verifies the IP SAN
    assert rig.peer(None).serial == serial_of(second)


def test_http_1_1_is_offered_by_alpn_and_tls_1_3_is_used_when_possible(rig: Rig) -> None:
    peer = rig.peer()
    assert peer.alpn == "http/1.1"
    assert peer.version == "TLSv1.3"


def test_unchanged_or_merely_touched_files_do_not_reload(rig: Rig) -> None:
    assert rig.tls.maybe_reload() is False
    later = time.time() + 60
    for name in ("tls.crt", "tls.key"):
        os.utime(rig.directory / name, (later, later))
    assert rig.tls.maybe_reload() is False
    assert rig.peer().serial == serial_of(rig.first)


def mismatched_key(directory: Path, ca: KeyPair) -> None:
    (directory / "tls.crt").write_bytes(issue(ca).cert)
    (directory / "tls.key").write_bytes(issue(ca).key)


def garbage_certificate(directory: Path, ca: KeyPair) -> None:
    (directory / "tls.crt").write_bytes(b"this is not PEM")


def half_written_certificate(directory: Path, ca: KeyPair) -> None:
    pair = issue(ca)
    (directory / "tls.key").write_bytes(pair.key)
    (directory / "tls.crt").write_bytes(pair.cert[: len(pair.cert) // 2])


def half_written_key(directory: Path, ca: KeyPair) -> None:
    pair = issue(ca)
    (directory / "tls.key").write_bytes(pair.key[: len(pair.key) // 2])
    (directory / "tls.crt").write_bytes(pair.cert)


def encrypted_key(directory: Path, ca: KeyPair) -> None:
    pair = issue(ca)
    key = load_private_key(pair.key).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    (directory / "tls.key").write_bytes(key)
    (directory / "tls.crt").write_bytes(pair.cert)


def missing_key(directory: Path, ca: KeyPair) -> None:
    (directory / "tls.key").unlink()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (mismatched_key, "tls.key does not match"),
        (garbage_certificate, "tls.crt holds no PEM certificate"),
        (half_written_certificate, "tls.crt holds a PEM certificate that cannot be parsed"),
        (half_written_key, "tls.key holds a PEM private key that cannot be parsed"),
        (encrypted_key, "tls.key is encrypted"),
        (missing_key, "cannot read"),
    ],
)
def test_an_unusable_new_pair_keeps_the_old_certificate_and_warns_once_saying_why(
    rig: Rig,
    live_ca: KeyPair,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path, KeyPair], None],
    reason: str,
) -> None:
    damage(rig.directory, live_ca)
    with caplog.at_level(logging.INFO, logger="certs.reload"):
        assert rig.tls.maybe_reload() is False
        assert rig.tls.maybe_reload() is False  # the same bad files: no second warning
    assert rig.peer().serial == serial_of(rig.first)
    warnings_logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_logged) == 1
    message = warnings_logged[0].getMessage()
    assert reason in message
    assert f"still serving serial {serial_of(rig.first):x}" in message
    assert "PRIVATE KEY" not in caplog.text

    fixed = issue(live_ca)
    write_pair(rig.directory, fixed)
    assert rig.tls.maybe_reload() is True
    assert rig.peer().serial == serial_of(fixed)


def test_the_served_certificate_expiry_is_exposed_for_a_metric(rig: Rig, live_ca: KeyPair) -> None:
    assert rig.tls.not_after == inspect_certificate(rig.first.cert).not_after
    shorter = issue(live_ca, validity=timedelta(days=7))
    write_pair(rig.directory, shorter)
    rig.tls.maybe_reload()
    assert rig.tls.not_after == inspect_certificate(shorter.cert).not_after
    assert rig.tls.info.serial_number == serial_of(shorter)


def test_the_watcher_picks_up_a_rotation_by_itself(rig: Rig, live_ca: KeyPair) -> None:
    watcher = rig.server.run(rig.tls.watch(interval=0.02))
    try:
        second = issue(live_ca)
        write_pair(rig.directory, second)
        deadline = time.monotonic() + 5
        while rig.peer().serial != serial_of(second):
            assert time.monotonic() < deadline, "the watcher did not reload within 5 s"
            time.sleep(0.02)
    finally:
        watcher.cancel()


def tls_1_1_client() -> ssl.SSLContext:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 is deprecated
        client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1_1
    client.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 disables TLS 1.1 above level 0
    return client


def test_tls_1_1_clients_are_refused_and_tls_1_2_clients_served(rig: Rig) -> None:
    # Control: the same client completes a TLS 1.1 handshake with a permissive server, so the
    # refusal below comes from our server, not from the client's own OpenSSL settings.
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        permissive.minimum_version = ssl.TLSVersion.TLSv1_1
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    permissive.load_cert_chain(rig.directory / "tls.crt", rig.directory / "tls.key")
    with EchoServer(permissive) as control:
        accepted = connect(control.port, tls_1_1_client(), None)
        accepted.close()
    assert accepted.peer.version == "TLSv1.1"

    with pytest.raises((ssl.SSLError, ConnectionError)):
        connect(rig.server.port, tls_1_1_client(), None)

    tls_1_2 = client_context(rig.ca)
    tls_1_2.maximum_version = ssl.TLSVersion.TLSv1_2
    assert handshake(rig.server.port, tls_1_2).version == "TLSv1.2"


def missing_certificate(directory: Path, ca: KeyPair) -> None:
    (directory / "tls.crt").unlink()


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (missing_certificate, "cannot read {dir}/tls.crt: No such file or directory"),
        (garbage_certificate, "{dir}/tls.crt holds no PEM certificate"),
        (mismatched_key, "{dir}/tls.key does not match {dir}/tls.crt"),
    ],
)
def test_an_unusable_pair_at_start_up_is_an_error_naming_the_file(
    tmp_path: Path,
    live_ca: KeyPair,
    prepare: Callable[[Path, KeyPair], None],
    message: str,
) -> None:
    write_pair(tmp_path, issue(live_ca))
    prepare(tmp_path, live_ca)
    with pytest.raises(CertificateError, match=re.escape(message.format(dir=tmp_path))):
        ReloadingTLSContext(tmp_path / "tls.crt", tmp_path / "tls.key")


def test_protocol_versions_older_than_tls_1_2_cannot_be_configured(rig: Rig) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ValueError, match=re.escape("TLS 1.2 or later")):
        ReloadingTLSContext(
            rig.directory / "tls.crt", rig.directory / "tls.key", minimum_version=old
        )
