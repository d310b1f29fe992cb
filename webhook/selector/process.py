"""The selector's listener in its own process, so that no selector traffic can slow a review.

A second uvicorn server on the admission event loop would share that loop, and one in a
thread would share the interpreter lock: either way a burst of selector pages (JSON encoding,
TLS, registry listings) would queue admission reviews behind it (``bench/selector.py``
measures it). So ``spacegate serve`` runs the selector in a spawned child process with its
own interpreter, event loop, uvicorn server, TLS context (same files, reloaded on change),
Kubernetes client (for TokenReview/SubjectAccessReview) and registry clients.

The child does not list registries' spaces or watch namespaces itself: the parent sends it
each new snapshot as plain data (config, listed spaces, namespaces, version; a
:class:`~policy.snapshot.Snapshot` holds caches and does not pickle) over a pipe, coalesced,
so the selector always offers what admission decides with. When the parent dies the pipe
closes and the child stops; when the child dies the parent starts a new one (with backoff)
and logs why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import pickle
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from policy.bindings import BindingObject
from policy.config import Config
from policy.snapshot import NamespaceInfo, Snapshot
from webhook.state import SnapshotState

__all__ = ["DEFAULT_SELECTOR_PORT", "SelectorSettings", "running_selector"]

log = logging.getLogger(__name__)

DEFAULT_SELECTOR_PORT: Final = 8444
START_TIMEOUT: Final = 30.0
MAX_RESTART_DELAY: Final = 30.0


@dataclass(frozen=True, slots=True)
class SelectorSettings:
    """Where and how the selector listens, and whom it asks about tokens."""

    host: str
    port: int
    cert: Path
    key: Path
    audiences: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _SnapshotData:
    config: Config
    spaces: dict[str, dict[str, bool]]
    namespaces: dict[str, NamespaceInfo]
    version: int
    # The RegistrySpaceBinding objects the serving process read: the selector must offer
    # what they bind exactly as admission admits it.
    binding_objects: dict[str, BindingObject] | None = None

    @classmethod
    def of(cls, snapshot: Snapshot) -> _SnapshotData:
        spaces = {n: dict(s.spaces) for n, s in snapshot.registries.items() if s.synced}
        objects = None if snapshot.binding_objects is None else dict(snapshot.binding_objects)
        return cls(snapshot.config, spaces, dict(snapshot.namespaces), snapshot.version, objects)

    def build(self) -> Snapshot:
        return Snapshot.build(
            self.config,
            spaces=self.spaces,
            namespaces=self.namespaces,
            binding_objects=self.binding_objects,
            version=self.version,
        )


# --------------------------------------------------------------------------- the child


def _child(settings: SelectorSettings, snapshots: Connection, status: Connection) -> None:
    """The selector process: serve until the parent goes away or asks it to stop."""
    try:
        first: _SnapshotData = pickle.loads(snapshots.recv_bytes())  # noqa: S301 - our parent
    except EOFError:
        return
    asyncio.run(_serve(settings, first.build(), snapshots, status))


async def _serve(
    settings: SelectorSettings, snapshot: Snapshot, snapshots: Connection, status: Connection
) -> None:
    import ssl

    import uvicorn

    from certs.reload import ReloadingTLSContext
    from webhook.clients.access import AccessReviewer, kube_reviews
    from webhook.clients.kube import load_api_client
    from webhook.selector.app import create_selector_app
    from webhook.selector.catalog import Catalog
    from webhook.selector.server import BoundedHeadProtocol

    logging.basicConfig(level=logging.INFO, format="spacegate-selector: %(message)s")
    current = [snapshot]
    catalog = Catalog(lambda: current[0])
    reviewer = AccessReviewer(kube_reviews(load_api_client()), audiences=settings.audiences)
    app = create_selector_app(catalog, reviewer)
    tls = ReloadingTLSContext(settings.cert, settings.key)
    context: ssl.SSLContext = tls.context
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context_factory=lambda _config, _default: context,
        http=BoundedHeadProtocol,
        lifespan="off",
        proxy_headers=False,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=30,
        limit_concurrency=512,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()

    def receive() -> None:
        while True:
            try:
                data: _SnapshotData = pickle.loads(snapshots.recv_bytes())  # noqa: S301
            except (EOFError, OSError):
                loop.call_soon_threadsafe(setattr, server, "should_exit", True)
                return
            built = data.build()
            loop.call_soon_threadsafe(current.__setitem__, 0, built)

    threading.Thread(target=receive, name="selector-snapshots", daemon=True).start()
    watcher = asyncio.create_task(tls.watch(10.0))

    async def announce() -> None:
        while not server.started and not server.should_exit:
            await asyncio.sleep(0.02)
        status.send(("started", "") if server.started else ("failed", "did not start"))

    announcer = asyncio.create_task(announce())
    try:
        await server.serve()
    except SystemExit:
        status.send(("failed", f"cannot listen on {settings.host}:{settings.port}"))
    finally:
        watcher.cancel()
        announcer.cancel()
        await catalog.aclose()


# --------------------------------------------------------------------------- the parent


class _Supervisor:
    """Starts the child, feeds it snapshots, restarts it when it dies."""

    def __init__(self, settings: SelectorSettings, state: SnapshotState) -> None:
        self.settings = settings
        self.state = state
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._snapshots: Connection | None = None
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._stopping = False

    async def start(self) -> None:
        reader, writer = self._context.Pipe(duplex=False)
        status_reader, status_writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_child,
            args=(self.settings, reader, status_writer),
            name="spacegate-selector",
            daemon=True,
        )
        process.start()
        reader.close()
        status_writer.close()
        self._process, self._snapshots = process, writer
        await self._send()
        ready = await asyncio.to_thread(status_reader.poll, START_TIMEOUT)
        try:
            outcome = status_reader.recv() if ready else ("failed", "no answer in time")
        except EOFError:
            outcome = ("failed", f"the process ended (exit code {process.exitcode})")
        status_reader.close()
        if outcome[0] != "started":
            process.kill()
            process.join(5)
            raise RuntimeError(f"the image selector did not start: {outcome[1]}")
        log.info(
            "image selector: serving https://%s:%d (pid %d)",
            self.settings.host,
            self.settings.port,
            process.pid,
        )

    async def _send(self) -> None:
        data = pickle.dumps(_SnapshotData.of(self.state.snapshot))
        writer = self._snapshots
        if writer is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(writer.send_bytes, data)

    def changed(self) -> None:
        """A new snapshot (called on whichever thread swapped it in)."""
        self._loop.call_soon_threadsafe(self._changed.set)

    async def feed(self) -> None:
        """Send each new snapshot (coalesced); restart the child when it died."""
        delay = 1.0
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), 1.0)
            except TimeoutError:
                pass
            else:
                self._changed.clear()
                await self._send()
            if self._stopping or self._process is None or self._process.is_alive():
                continue
            log.error(
                "image selector process ended (exit code %s); starting it again in %.0fs",
                self._process.exitcode,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(MAX_RESTART_DELAY, delay * 2)
            try:
                await self.start()
                delay = 1.0
            except RuntimeError as exc:
                log.error("%s", exc)

    async def stop(self) -> None:
        self._stopping = True
        if self._snapshots is not None:
            self._snapshots.close()  # the child sees EOF and shuts down
        process = self._process
        if process is not None:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
                process.join(5)


@contextlib.asynccontextmanager
async def running_selector(state: SnapshotState, settings: SelectorSettings) -> AsyncIterator[None]:
    """The selector process for as long as the block runs, fed with ``state``'s snapshots.

    Raises ``RuntimeError`` when it cannot start (its port taken, say): ``serve`` then fails
    instead of running without the selector it was asked for.
    """
    supervisor = _Supervisor(settings, state)
    # Listening before the child starts: a snapshot swapped in while it starts is sent after.
    add_listener = getattr(state, "add_listener", None)
    remove = add_listener(supervisor.changed) if callable(add_listener) else None
    began = time.monotonic()
    try:
        await supervisor.start()
    except BaseException:
        if remove is not None:
            remove()
        raise
    log.debug("image selector started in %.2fs", time.monotonic() - began)
    feeder = asyncio.create_task(supervisor.feed(), name="selector-feed")
    try:
        yield
    finally:
        if remove is not None:
            remove()
        feeder.cancel()
        await supervisor.stop()
