"""A server ``ssl.SSLContext`` whose certificate can be replaced without restarting the server.

uvicorn builds its ``SSLContext`` once, at start-up, and never reloads it; a rotated Secret
would otherwise only take effect when the pod restarts, and self-managed webhook certificates
are known to expire in production for exactly that reason. The technique: the context handed
to the server never changes, but it has an ``sni_callback``, which OpenSSL runs early in every
handshake, and the callback points the connection at the context holding the current
certificate. New connections get the new certificate; established keep-alive connections are
untouched. OpenSSL (1.1.1 and later) runs the callback also when the client sends no SNI, as
when it connects to an IP address; Python then passes ``server_name=None``. Every context is
built with the same settings (TLS 1.2 minimum, ALPN), since some of them are taken from the
first context and some from the one switched to.

Change detection reads both files and compares a SHA-256 digest of their contents. Mounted
Secrets are updated by swapping a ``..data`` symlink, so a file's own mtime may never change
and the path's target does; reading through the path catches every kind of update. The files
are a few kilobytes and are read every ``interval`` seconds (10 s, as controller-runtime's
certwatcher), which is cheap.

A new pair that cannot be used (garbage, half written, key not matching, unreadable) is
rejected as a whole: the current certificate stays in service, and one warning says why
(never quoting key material). The same bad content is not reported again on every poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from certs.errors import CertificateError
from certs.inspect import CertificateInfo, check_key_matches, inspect_certificate

__all__ = ["DEFAULT_WATCH_INTERVAL", "ReloadingTLSContext"]

logger = logging.getLogger(__name__)

DEFAULT_WATCH_INTERVAL = 10.0


class _FilesChanging(Exception):
    """The files changed while they were being loaded; try again on the next poll."""


@dataclass(frozen=True, slots=True)
class _Loaded:
    digest: bytes
    context: ssl.SSLContext
    info: CertificateInfo


class ReloadingTLSContext:
    """A TLS server context that follows a certificate/key pair on disk.

    Hand ``context`` to the server (``asyncio``'s ``create_server(ssl=...)``, or uvicorn's
    ``Config(ssl_context_factory=lambda config, default: tls.context)``), run ``watch()`` as a
    background task (or call ``maybe_reload()`` when convenient), and read ``not_after`` for an
    expiry metric. Safe to use from several threads; the handshake path only reads one
    attribute.
    """

    def __init__(
        self,
        cert_file: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
        *,
        minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
        alpn_protocols: Sequence[str] = ("http/1.1",),
    ) -> None:
        """Load the pair now; raise ``CertificateError`` (naming the file) if it is unusable."""
        if minimum_version < ssl.TLSVersion.TLSv1_2:
            raise ValueError(f"minimum TLS version must be TLS 1.2 or later, got {minimum_version}")
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self._minimum_version = minimum_version
        self._alpn_protocols = list(alpn_protocols)
        self._lock = threading.Lock()
        self._rejected: bytes | str | None = None
        try:
            cert_pem, key_pem = self._read()
            self._current = self._load(cert_pem, key_pem)
        except OSError as exc:
            raise CertificateError(self._describe(exc)) from exc
        except _FilesChanging:
            raise CertificateError(
                f"{self.cert_file} or {self.key_file} changed while being loaded; try again"
            ) from None
        # The first inner context doubles as the outer one: it serves the first certificate
        # and its callback moves each new handshake to whatever context is current.
        self._outer = self._current.context
        self._outer.sni_callback = self._select_context

    @property
    def context(self) -> ssl.SSLContext:
        """The context to give the server. It stays the same object across reloads."""
        return self._outer

    @property
    def info(self) -> CertificateInfo:
        """The certificate new connections are served (serial, SANs, validity)."""
        return self._current.info

    @property
    def not_after(self) -> datetime:
        """When the certificate in service expires (UTC), for an expiry metric."""
        return self._current.info.not_after

    def maybe_reload(self) -> bool:
        """Read the files and switch to them if they changed and are usable.

        Returns True when new connections will now get a different certificate. Never raises
        for a bad pair: it logs one warning per distinct bad content and keeps the old one.
        """
        with self._lock:
            digest: bytes | None = None
            try:
                cert_pem, key_pem = self._read()
                digest = _digest(cert_pem, key_pem)
                if digest == self._current.digest:
                    self._rejected = None
                    return False
                if digest == self._rejected:
                    return False
                loaded = self._load(cert_pem, key_pem)
            except _FilesChanging:
                logger.debug("TLS files changed while loading them; retrying on the next poll")
                return False
            except (OSError, CertificateError) as exc:
                reason = self._describe(exc)
                self._reject(reason, key=digest if digest is not None else reason)
                return False
            previous, self._current = self._current.info, loaded
            self._rejected = None
        logger.info(
            "TLS certificate reloaded from %s: serial %x, expires %s (was serial %x)",
            self.cert_file,
            loaded.info.serial_number,
            loaded.info.not_after.isoformat(),
            previous.serial_number,
        )
        return True

    async def watch(self, interval: float = DEFAULT_WATCH_INTERVAL) -> None:
        """Call ``maybe_reload`` every ``interval`` seconds until cancelled.

        The file reads run in a worker thread so a slow volume cannot stall the event loop.
        Unexpected errors are logged and the watch goes on: a dead watcher would mean a
        certificate that silently stops being renewed.
        """
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.maybe_reload)
            except Exception:
                logger.exception("TLS certificate watch failed; retrying in %ss", interval)

    def _select_context(
        self,
        connection: ssl.SSLObject | ssl.SSLSocket,
        _server_name: str | None,
        _context: ssl.SSLContext,
    ) -> None:
        # Runs inside every handshake, with or without SNI (the server name is None without).
        connection.context = self._current.context

    def _read(self) -> tuple[bytes, bytes]:
        return self.cert_file.read_bytes(), self.key_file.read_bytes()

    def _load(self, cert_pem: bytes, key_pem: bytes) -> _Loaded:
        # Validate with cryptography first: its errors can be put in words, OpenSSL's
        # ("[SSL] PEM lib") cannot.
        cert_what, key_what = str(self.cert_file), str(self.key_file)
        check_key_matches(cert_pem, key_pem, cert_what=cert_what, key_what=key_what)
        info = inspect_certificate(cert_pem, cert_what)
        context = self._new_context()
        # ssl loads from paths only. Re-reading afterwards proves the context holds exactly
        # the bytes that were validated, even if the files changed in between.
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except OSError:  # ssl.SSLError included
            if self._read() != (cert_pem, key_pem):
                raise _FilesChanging from None
            raise
        if self._read() != (cert_pem, key_pem):
            raise _FilesChanging
        return _Loaded(digest=_digest(cert_pem, key_pem), context=context, info=info)

    def _new_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = self._minimum_version
        # Client-initiated TLS 1.2 renegotiation costs the server a handshake per request.
        context.options |= ssl.OP_NO_RENEGOTIATION
        context.set_alpn_protocols(self._alpn_protocols)
        return context

    def _describe(self, exc: OSError | CertificateError) -> str:
        if isinstance(exc, CertificateError):
            return str(exc)
        if isinstance(exc, ssl.SSLError):  # only after cryptography accepted the pair
            return f"OpenSSL cannot use {self.cert_file} and {self.key_file}: {exc.reason or exc}"
        where = exc.filename if exc.filename is not None else "TLS file"
        return f"cannot read {where}: {exc.strerror or exc}"

    def _reject(self, reason: str, *, key: bytes | str) -> None:
        if key == self._rejected:
            return
        self._rejected = key
        current = self._current.info
        logger.warning(
            "not reloading the TLS certificate: %s; still serving serial %x (expires %s)",
            reason,
            current.serial_number,
            current.not_after.isoformat(),
        )


def _digest(cert_pem: bytes, key_pem: bytes) -> bytes:
    return hashlib.sha256(cert_pem).digest() + hashlib.sha256(key_pem).digest()
