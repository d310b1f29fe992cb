"""Put TLS material on disk the way a Kubernetes TLS Secret lays it out.

Files are named after the keys of a ``kubernetes.io/tls`` Secret (``tls.crt``, ``tls.key``,
``ca.crt``), so a directory written here can be turned into a Secret as is, and the server reads
a local directory and a mounted Secret the same way. Each file is replaced atomically (temporary
file, then rename), so a reader never sees half a file; the key is created with mode 0600.
The CA's private key is never written: a caller that needs a new serving certificate creates a
new CA and updates the ``caBundle``, which keeps the one key that can mint trusted
certificates out of every volume and backup.

``ensure_dev_certs`` gives ``spacegate serve`` with no arguments a working TLS setup for
``localhost`` that survives restarts and renews itself before it expires.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from certs.builder import CertBundle, KeyType, build_bundle, service_dns_names
from certs.errors import CertificateError
from certs.inspect import (
    RENEW_BEFORE,
    check_key_matches,
    inspect_certificate,
    verify_server_certificate,
)

__all__ = [
    "CA_CERT_FILE",
    "CERT_FILE",
    "DEFAULT_DEV_CERT_DIR",
    "DEV_DNS_NAMES",
    "DEV_IPS",
    "DEV_NAMESPACE",
    "DEV_SERVICE",
    "KEY_FILE",
    "BundlePaths",
    "bundle_paths",
    "ensure_dev_certs",
    "generate",
    "write_bundle",
]

logger = logging.getLogger(__name__)

CA_CERT_FILE = "ca.crt"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"

DEFAULT_DEV_CERT_DIR = Path(".dev-certs")
DEV_SERVICE = "spacegate"
DEV_NAMESPACE = "spacegate"
DEV_DNS_NAMES: tuple[str, ...] = ("localhost",)
DEV_IPS: tuple[str, ...] = ("127.0.0.1", "::1")

_KEY_MODE = 0o600
_CERT_MODE = 0o644
_LOCK_FILE = ".lock"


@dataclass(frozen=True, slots=True)
class BundlePaths:
    """Where a bundle's files are: the CA certificate, the serving certificate and its key."""

    ca_cert: Path
    cert: Path
    key: Path


def bundle_paths(directory: str | os.PathLike[str]) -> BundlePaths:
    """The file paths a bundle has (or would have) in ``directory``."""
    base = Path(directory)
    return BundlePaths(ca_cert=base / CA_CERT_FILE, cert=base / CERT_FILE, key=base / KEY_FILE)


def write_bundle(out_dir: str | os.PathLike[str], bundle: CertBundle) -> BundlePaths:
    """Write ``ca.crt``, ``tls.crt`` and ``tls.key`` into ``out_dir``, creating it if needed.

    Existing files are replaced. The key is written before the certificate so that a watcher
    polling in between sees a mismatched pair (which it rejects) rather than a new certificate
    served with a stale key.
    """
    paths = bundle_paths(out_dir)
    paths.cert.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(paths.ca_cert, bundle.ca_cert, _CERT_MODE)
    _write_atomic(paths.key, bundle.key, _KEY_MODE)
    _write_atomic(paths.cert, bundle.cert, _CERT_MODE)
    return paths


def generate(
    service: str,
    namespace: str,
    out_dir: str | os.PathLike[str],
    extra_dns: Iterable[str] = (),
    extra_ips: Iterable[str] = (),
    *,
    key_type: KeyType = "ecdsa",
    now: datetime | None = None,
) -> BundlePaths:
    """Create a new CA and serving certificate for ``service.namespace`` and write them."""
    bundle = build_bundle(
        service, namespace, extra_dns=extra_dns, extra_ips=extra_ips, key_type=key_type, now=now
    )
    return write_bundle(out_dir, bundle)


def ensure_dev_certs(
    directory: str | os.PathLike[str] = DEFAULT_DEV_CERT_DIR, *, now: datetime | None = None
) -> BundlePaths:
    """Reuse the local development certificates in ``directory``, or create them.

    They are reused when they chain to ``ca.crt``, the key matches, they cover ``localhost``,
    ``127.0.0.1`` and ``::1`` (plus the in-cluster names of Service ``spacegate`` in namespace
    ``spacegate``) and more than 30 days are left; otherwise a new CA and certificate replace
    them. Reuse matters because a browser or curl that was told to trust ``ca.crt`` keeps
    working across restarts. Concurrent starts are serialised with a lock file.
    """
    moment = datetime.now(UTC) if now is None else now
    paths = bundle_paths(directory)
    paths.cert.parent.mkdir(parents=True, exist_ok=True)
    with _locked(paths.cert.parent / _LOCK_FILE):
        problem = _reuse_problem(paths, moment)
        if problem is None:
            logger.info("reusing development TLS certificate in %s", paths.cert.parent)
            return paths
        logger.info("creating development TLS certificate in %s: %s", paths.cert.parent, problem)
        return generate(DEV_SERVICE, DEV_NAMESPACE, directory, DEV_DNS_NAMES, DEV_IPS, now=moment)


def _reuse_problem(paths: BundlePaths, now: datetime) -> str | None:
    """Why the files in ``paths`` cannot serve as development certificates, or None."""
    missing = [p.name for p in (paths.ca_cert, paths.cert, paths.key) if not p.is_file()]
    if missing:
        return f"{', '.join(missing)} not found"
    try:
        ca_pem = paths.ca_cert.read_bytes()
        cert_pem = paths.cert.read_bytes()
        check_key_matches(cert_pem, paths.key.read_bytes(), cert_what=CERT_FILE, key_what=KEY_FILE)
        verify_server_certificate(cert_pem, ca_pem, DEV_DNS_NAMES[0], now=now)
        ca = inspect_certificate(ca_pem, CA_CERT_FILE)
        info = inspect_certificate(cert_pem, CERT_FILE)
    except (OSError, CertificateError) as exc:
        return str(exc)
    for what, expiring in ((CERT_FILE, info), (CA_CERT_FILE, ca)):
        if expiring.needs_renewal(now, RENEW_BEFORE):
            return f"{what} expires on {expiring.not_after:%Y-%m-%d}, renewing early"
    wanted_dns = set(service_dns_names(DEV_SERVICE, DEV_NAMESPACE)) | set(DEV_DNS_NAMES)
    wanted_ips = {ipaddress.ip_address(ip) for ip in DEV_IPS}
    have_ips = {ipaddress.ip_address(ip) for ip in info.ip_addresses}
    absent = sorted(wanted_dns - set(info.dns_names)) + sorted(map(str, wanted_ips - have_ips))
    if absent:
        return f"{CERT_FILE} does not cover {', '.join(absent)}"
    return None


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    # mkstemp creates the file with mode 0600, so key bytes are never readable by others,
    # not even for an instant; the final mode is set before the rename makes it visible.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
