"""One write per response, and replies batched under load: uvicorn's transport, wrapped.

uvicorn writes a response's head and its body with two ``transport.write`` calls; over TLS
each becomes a TLS record and a ``send`` system call of its own. :class:`StepBatchingTransport`
and :class:`HttpProtocol` send a reply as one write, and under load the replies of one
event-loop step together (``docs/decisions.md``, "Write batching").

Private, because it leans on uvicorn internals that are not API: ``HttpToolsProtocol`` with
``connection_made(transport)``, ``on_response_complete()``, ``self.loop`` and ``self.tasks``
(the running request tasks). ``tests/webhook/admission/test_batching.py`` checks each of
them, so a uvicorn release that changes one fails the tests loudly instead of silently
serving slower or not at all; ``pyproject.toml`` pins uvicorn below its next major version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HttpProtocol", "StepBatchingTransport"]


class StepBatchingTransport(asyncio.Transport):
    """A transport that joins writes and sends them as one, at the latest when a step ends.

    uvicorn writes a reply's status line and headers, then its body; over TLS each
    ``write`` becomes a record of its own, a ``send`` system call of its own and a wakeup
    of the client. Held and joined, a small reply goes out as one record in one call.

    Writes are held until the current event-loop step ends (``loop.call_soon``), unless
    :class:`HttpProtocol` sends them earlier. Nothing waits longer, so an interim ``100
    Continue`` or an error reply still leaves at once, and order is kept. ``close`` sends
    what is held first; ``abort`` drops it, as an abort drops the transport's own buffer;
    data held when the connection is already closing is dropped, as the transport itself
    would. ``on_close``, when set, is told when the connection starts closing (uvicorn
    closes through this object only). Everything else is the wrapped transport's.
    """

    __slots__ = ("_held", "_loop", "_transport", "on_close")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self.on_close: Callable[[], None] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for the write at the end of this step."""
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.send_held)
        self._held.append(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Queue each item, like :meth:`write`."""
        for data in list_of_data:
            self.write(data)

    def send_held(self) -> None:
        """Send what is held now, as one write."""
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        """Send what is held, then close (the transport flushes its buffer first)."""
        self.send_held()
        self._transport.close()
        if self.on_close is not None:
            self.on_close()

    def abort(self) -> None:
        """Close at once, dropping whatever is held or buffered."""
        self._held = []
        self._transport.abort()

    def write_eof(self) -> None:
        """Send what is held, then half-close."""
        self.send_held()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        """Whether the wrapped transport can half-close."""
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        """Whether the wrapped transport is closing or closed."""
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The wrapped transport's extra info (socket, peername, sslcontext, ...)."""
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand the wrapped transport's events to another protocol."""
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol receiving the wrapped transport's events."""
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        """Whether the wrapped transport is reading."""
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        """Stop reading (flow control)."""
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again (flow control)."""
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the wrapped transport's flow-control watermarks."""
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        """Bytes buffered, held ones included."""
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """The wrapped transport's flow-control watermarks."""
        return self._transport.get_write_buffer_limits()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a :class:`StepBatchingTransport`.

    When a response is complete and no other request is being served, it is sent at
    once: a lone client should not wait while the endpoint counts and logs the review.
    Under load it waits for the end of the step with the replies of the other requests
    the step served: they leave in a burst, the clients answer in a burst, and the server
    then reads and answers many requests per event-loop iteration instead of a few, which
    shares each iteration's fixed cost (polling, the loop's bookkeeping). The admission
    benchmark (``bench/admission.py``; figures in the README) measures the effect.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the connection on the batching wrapper of ``transport``."""
        self._batching = StepBatchingTransport(transport, self.loop)
        super().connection_made(self._batching)

    def on_response_complete(self) -> None:
        """Send the response now if it is the only one in flight; then uvicorn's work."""
        if len(self.tasks) <= 1:  # uvicorn's running request tasks, this one included
            self._batching.send_held()
        super().on_response_complete()
