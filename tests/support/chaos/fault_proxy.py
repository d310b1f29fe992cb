"""A TCP proxy in front of a server that passes, delays, fails or refuses on command.

Registries misbehave in ways a fake cannot script request by request once several processes
talk to them: a Harbor that answers slowly, one that answers 503 to everyone, one that is
gone. :class:`FaultProxy` sits between spacegate and the Harbor fake (spacegate's config names
the proxy's URL) and does to every request what its mode says, for every client at once:

- ``pass``: bytes flow both ways untouched;
- ``delay``: each request waits ``seconds`` before it is forwarded (a request is the first
  bytes a client sends after the server's last answer: HTTP/1.1 clients do not pipeline);
- ``error``: each request is answered at once with ``status`` (503 by default) and a
  Harbor-style error body, and the connection closed;
- ``refuse``: nothing listens (connection refused), and open connections are cut.

It runs on its own event loop in a daemon thread, on a fixed loopback port that survives
``refuse`` (the listener is closed and opened again on the same port). Counters say what it
did. Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from tests.support.controlplane.plane import LOOPBACK
from tests.support.ports import free_port

__all__ = ["FaultProxy", "Mode", "ProxyCounts"]

Mode = Literal["pass", "delay", "error", "refuse"]
_READ = 64 * 1024


@dataclass
class ProxyCounts:
    """What the proxy did since it started."""

    connections: int = 0
    requests: int = 0
    delayed: int = 0
    failed: int = 0  # answered with the error status
    cut: int = 0  # connections closed by ``refuse``


class FaultProxy:
    """Proxies ``127.0.0.1:port`` to ``target`` (host, port); see the module doc."""

    def __init__(self, target: tuple[str, int], *, port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self.mode: Mode = "pass"
        self.delay = 0.0
        self.status = 503
        self.counts = ProxyCounts()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # ------------------------------------------------------------------ control (any thread)

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._close(cut=True))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def set_mode(self, mode: Mode, *, seconds: float = 0.0, status: int = 503) -> None:
        """Switch every client to ``mode`` at once (``seconds`` for delay, ``status`` for
        error)."""
        self._call(self._switch(mode, seconds, status))

    def _call(self, work: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(10)

    # ------------------------------------------------------------------ on the loop

    async def _switch(self, mode: Mode, seconds: float, status: int) -> None:
        self.delay, self.status = seconds, status
        if mode == "refuse" and self.mode != "refuse":
            self.mode = mode
            await self._close(cut=True)
        elif mode != "refuse" and self.mode == "refuse":
            self.mode = mode
            await self._listen()
        else:
            self.mode = mode

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, LOOPBACK, self.port, reuse_address=True
        )

    async def _close(self, *, cut: bool) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if cut:
            for writer in list(self._open):
                self.counts.cut += 1
                writer.transport.abort()
            self._open.clear()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts.connections += 1
        self._open.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        answered = asyncio.Event()
        answered.set()  # nothing asked yet
        back: asyncio.Task[None] | None = None
        try:
            while True:
                data = await reader.read(_READ)
                if not data:
                    return
                if answered.is_set():  # the first bytes of a new request
                    self.counts.requests += 1
                    if self.mode == "error":
                        self.counts.failed += 1
                        writer.write(_error(self.status))
                        await writer.drain()
                        return
                    if self.mode == "delay" and self.delay > 0:
                        self.counts.delayed += 1
                        await asyncio.sleep(self.delay)
                    if self.mode == "refuse":
                        return
                    answered.clear()
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.target)
                    back = asyncio.create_task(self._pump_back(upstream[0], writer, answered))
                upstream[1].write(data)
                await upstream[1].drain()
        except (ConnectionError, OSError):
            return
        finally:
            self._open.discard(writer)
            if back is not None:
                back.cancel()
            if upstream is not None:
                upstream[1].close()
            writer.close()

    @staticmethod
    async def _pump_back(
        upstream: asyncio.StreamReader, writer: asyncio.StreamWriter, answered: asyncio.Event
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await upstream.read(_READ)
                if not data:
                    writer.close()
                    return
                answered.set()
                writer.write(data)
                await writer.drain()


def _error(status: int) -> bytes:
    """An HTTP/1.1 answer with Harbor's error body, closing the connection."""
    body = json.dumps(
        {"errors": [{"code": "UNAVAILABLE", "message": f"injected by the fault proxy ({status})"}]}
    ).encode()
    head = (
        f"HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + body
