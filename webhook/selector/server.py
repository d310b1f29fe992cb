"""The selector's HTTP protocol: uvicorn's httptools parser, with the request head bounded.

httptools (llhttp) collects a request line and headers of any size before it hands them
over, so a client could make the selector buffer megabytes per connection; and uvicorn closes
an idle keep-alive connection but not one whose head never finishes, so a few hundred slow
clients would hold every connection slot. This protocol counts the bytes of a request head as
they arrive and answers ``431`` and closes the connection once they pass :data:`HEAD_LIMIT`,
before the parser sees more, and closes a connection whose head has not arrived in full
:data:`HEAD_TIMEOUT` seconds after it began. The selector serves only ``GET`` requests, so a
head is all a request has.

Private to the selector: it leans on uvicorn's ``HttpToolsProtocol`` (``data_received``,
``on_message_begin``, ``on_headers_complete``, ``on_message_complete``, ``transport``),
which ``pyproject.toml`` pins below uvicorn's next major version, and
``tests/webhook/selector/test_server.py`` checks.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HEAD_LIMIT", "HEAD_TIMEOUT", "BoundedHeadProtocol"]

HEAD_LIMIT: Final = 32 * 1024
HEAD_TIMEOUT: Final = 10.0
_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 33\r\nconnection: close\r\n\r\n"
    b"request head over 32 KiB refused\n"
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` refusing request heads over :data:`HEAD_LIMIT` bytes."""

    head_timeout: float = HEAD_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._in_head, self._head_bytes = True, 0
        super().connection_made(transport)
        self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def _start_deadline(self) -> None:
        self._stop_deadline()
        self._deadline = self.loop.call_later(self.head_timeout, self._too_slow)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a keep-alive connection's next request begins
            self._start_deadline()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > HEAD_LIMIT:
                self._in_head = False
                self.transport.write(_TOO_LARGE)
                self.transport.close()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0
