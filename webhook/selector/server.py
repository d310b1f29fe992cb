"""The selector's HTTP protocol: uvicorn's httptools parser, with the request head bounded.

httptools (llhttp) collects a request line and headers of any size before it hands them
over, so a client could make the selector buffer megabytes per connection. This protocol
counts the bytes of a request head as they arrive and answers ``431`` and closes the
connection once they pass :data:`HEAD_LIMIT`, before the parser sees more. The selector
serves only ``GET`` requests, so a head is all a request has.

Private to the selector: it leans on uvicorn's ``HttpToolsProtocol`` (``data_received``,
``on_message_begin``, ``on_headers_complete``, ``on_message_complete``, ``transport``),
which ``pyproject.toml`` pins below uvicorn's next major version, and
``tests/webhook/selector/test_server.py`` checks.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HEAD_LIMIT", "BoundedHeadProtocol"]

HEAD_LIMIT: Final = 32 * 1024
_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 33\r\nconnection: close\r\n\r\n"
    b"request head over 32 KiB refused\n"
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` refusing request heads over :data:`HEAD_LIMIT` bytes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._in_head, self._head_bytes = True, 0
        super().connection_made(transport)

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
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0
