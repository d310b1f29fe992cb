"""Run the admission app under uvicorn over TLS.

What uvicorn does not do for us, and this module adds:

- **Certificate reload.** uvicorn builds its ``SSLContext`` once; a rotated Secret would
  only be served after a restart, and expired self-managed webhook certificates are a
  classic cluster outage. The context comes from :class:`certs.reload.ReloadingTLSContext`
  (TLS 1.2 minimum, new pair picked up on the next handshake, a bad new pair rejected
  with a warning while the old one stays in service), polled by a task next to the server.
- **Exit code 0 on SIGTERM.** uvicorn drains in-flight requests on SIGTERM (it stops
  accepting, lets open requests finish, closes idle keep-alive connections), then
  re-raises the signal so the default action would kill the process with status 143.
  Kubernetes counts that as an error exit; :func:`run_server` reports a requested stop so
  the command can exit 0.
- **Development certificates.** With no TLS options it creates (or reuses) a CA and a
  ``localhost`` certificate in ``.dev-certs/`` and prints where the CA is, so ``curl
  --cacert`` works on the first try.
- **One write per response, replies batched under load** (``webhook.admission._batching``).
- **Connections held to limits** (``webhook.admission.connections``, ``_http``): TLS is
  started per connection by :class:`~webhook.admission._http.TLSConnection`, so a
  handshake is bounded and counted like the rest; request heads are bounded in bytes and
  time; open connections are capped, the oldest unfinished or idle ones evicted to make
  room; the open-file limit is raised to its hard limit at start. uvicorn itself has none
  of these (``docs/limits.md``).

Loading the config and choosing the snapshot state (static or live) is the ``serve``
command's job (``webhook.cli.serve``): this module serves whatever app it is given.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final, cast

import uvicorn
from starlette.types import ASGIApp

from certs.errors import CertificateError
from certs.files import DEFAULT_DEV_CERT_DIR, bundle_paths, ensure_dev_certs
from certs.reload import DEFAULT_WATCH_INTERVAL, ReloadingTLSContext
from webhook.admission._http import TLSConnection
from webhook.admission.connections import ConnectionLimits, ConnectionTable, raise_fd_limit
from webhook.admission.logs import LogSink

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "GRACEFUL_SHUTDOWN_SECONDS",
    "AdmissionServer",
    "TLSFiles",
    "build_server",
    "resolve_tls_files",
    "run_server",
]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8443
# Kubernetes sends SIGKILL terminationGracePeriodSeconds (30 by default) after SIGTERM; the
# apiserver's own webhook timeout is at most 30 s. Draining for up to 20 s finishes every
# review still in flight and leaves margin for the lifespan shutdown.
GRACEFUL_SHUTDOWN_SECONDS: Final = 20
# Kubernetes keeps TCP keep-alive connections from the apiserver open; uvicorn's default of
# 5 s would make it reconnect (a TLS handshake) after every quiet spell.
KEEP_ALIVE_SECONDS: Final = 75

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """The serving pair, and the CA to tell clients about when we made it ourselves."""

    cert: Path
    key: Path
    ca: Path | None = None


def resolve_tls_files(
    *, cert_dir: str | None, tls_cert: str | None, tls_key: str | None
) -> TLSFiles:
    """Which certificate/key pair to serve.

    ``tls_cert``/``tls_key`` are used as given. ``cert_dir`` holding ``tls.crt`` and
    ``tls.key`` (a mounted ``kubernetes.io/tls`` Secret) is used as is and never written
    to. Otherwise development certificates are created, or reused, in ``cert_dir`` or
    ``.dev-certs/`` of the current directory.
    """
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            raise CertificateError("--tls-cert and --tls-key go together")
        return TLSFiles(Path(tls_cert), Path(tls_key))
    if cert_dir is not None:
        paths = bundle_paths(cert_dir)
        if paths.cert.is_file() and paths.key.is_file():
            ca = paths.ca_cert if paths.ca_cert.is_file() else None
            return TLSFiles(paths.cert, paths.key, ca)
    made = ensure_dev_certs(cert_dir if cert_dir is not None else DEFAULT_DEV_CERT_DIR)
    return TLSFiles(made.cert, made.key, made.ca_cert)


class AdmissionServer(uvicorn.Server):
    """uvicorn's server, with the connection table's sweeper running while it serves.

    ``startup`` raises the open-file limit to its hard limit and fits the table's capacity
    to it before listening; ``shutdown`` stops admitting connections (and ends those still
    in their handshake or first head) before uvicorn's drain.
    """

    def __init__(self, config: uvicorn.Config, table: ConnectionTable, tls: ssl.SSLContext):
        super().__init__(config)
        self.table = table
        self.tls = tls
        self._sweeper: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Raise the descriptor limit, listen, and start sweeping deadlines."""
        capacity = self.table.fit_to_descriptors(raise_fd_limit())
        if capacity < self.table.limits.max_connections:
            log.warning(
                "the open-file limit allows fewer connections than configured",
                extra={"fields": {"capacity": capacity}},
            )
        await super().startup(sockets=sockets)
        self._sweeper = asyncio.create_task(self.table.run_sweeper(), name="connection-deadlines")

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        """Where the server listens, as ``https``: uvicorn would say ``http``, since the TLS
        it does not do itself (each connection starts its own) is invisible to it."""
        for listener in listeners:
            host, port = listener.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            log.info("serving HTTPS on https://%s:%d", shown, port)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop admitting, then uvicorn's drain; the sweeper runs until the drain is over."""
        self.table.stop_accepting()
        try:
            await super().shutdown(sockets=sockets)
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()


def build_server(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    tls: ssl.SSLContext,
    graceful_shutdown: int = GRACEFUL_SHUTDOWN_SECONDS,
    limits: ConnectionLimits | None = None,
) -> AdmissionServer:
    """A uvicorn server for ``app`` over ``tls`` (one worker, lifespan on, our logging).

    HTTP is parsed by httptools (a runtime dependency) through
    :class:`~webhook.admission._http.GuardedHttpProtocol`, behind a
    :class:`~webhook.admission._http.TLSConnection` per accepted socket that starts TLS
    itself; uvicorn listens without TLS of its own. ``limits`` bounds heads, deadlines and
    connections (defaults in ``webhook.admission.connections``). ``loop`` stays on
    ``auto``, which picks uvloop when it is installed.
    """
    table = ConnectionTable(limits)
    per_connection = functools.partial(TLSConnection, table=table, tls=tls)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        # uvicorn calls this with its own arguments for every accepted socket.
        http=cast(type[asyncio.Protocol], per_connection),
        # No WebSocket endpoint: an upgrade request is answered as a plain one.
        ws="none",
        # No proxy stands between the apiserver and a webhook: trusting X-Forwarded-* would
        # only let a client claim another address, and the middleware costs per request.
        proxy_headers=False,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=graceful_shutdown,
    )
    return AdmissionServer(config, table, tls)


async def _run(
    server: uvicorn.Server,
    tls: ReloadingTLSContext,
    sockets: list[socket.socket] | None,
    watch_interval: float,
    sink: LogSink,
) -> None:
    watcher = asyncio.create_task(tls.watch(watch_interval), name="tls-watch")
    try:
        # Log lines are batched while serving and flushed when serving ends, including
        # after a SIGTERM drain and when uvicorn gives up with SystemExit.
        async with sink.buffering():
            await server.serve(sockets=sockets)
    finally:
        watcher.cancel()


def run_server(
    server: uvicorn.Server,
    tls: ReloadingTLSContext,
    *,
    sink: LogSink,
    sockets: list[socket.socket] | None = None,
    watch_interval: float = DEFAULT_WATCH_INTERVAL,
) -> bool:
    """Serve until SIGTERM or SIGINT; True after a requested stop, False if it never started.

    uvicorn drains in-flight requests on SIGTERM and then re-raises the signal, whose default
    action would end the process with status 143; the handler installed here (under
    uvicorn's own) records the request instead, so the caller can exit 0.
    """
    stop_requested = False

    def on_stop(_signum: int, _frame: FrameType | None) -> None:
        # Installed under uvicorn's own handlers: it receives the signal uvicorn re-raises
        # after draining (and any signal arriving before uvicorn is listening).
        nonlocal stop_requested
        stop_requested = True
        server.should_exit = True

    previous = (
        {sig: signal.signal(sig, on_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    try:
        # uvicorn's loop choice (uvloop when installed) applies to our runner as well.
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(_run(server, tls, sockets, watch_interval, sink))
    except SystemExit:  # uvicorn exits this way when it cannot bind or start (it logged why)
        return False
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started and not stop_requested:
        return False
    log.info("stopped", extra={"fields": {"signal": stop_requested}})
    return True
