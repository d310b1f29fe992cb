"""Each accepted connection: TLS started by us, then uvicorn's HTTP, held to the limits.

uvicorn hands its listening socket's TLS to the event loop, which calls the HTTP protocol
only once a handshake is done: a connection that never sends a ClientHello, or stops in
the middle of one, is invisible to the server for the loop's 60 s handshake timeout. So
the server listens without TLS and :class:`TLSConnection`, made for every accepted
socket, is entered in the :class:`~webhook.admission.connections.ConnectionTable` at
once and starts TLS itself (``loop.start_tls``, the same TLS layer) with the table's head
deadline as its handshake timeout.

:class:`GuardedHttpProtocol` is uvicorn's httptools protocol (through the write batching
of ``webhook.admission._batching``) with what it lacks against hostile clients:

- **The head is counted and framed before it is parsed.** httptools grows a header value
  by concatenation, once per piece of data it is fed, and uvicorn collects a header without
  limit: a header sent in many small records costs time quadratic in its size and memory
  without bound, all on the event loop. Here the bytes of a request head are collected in
  one buffer until the blank line that ends it, and parsed in one go; more than
  :attr:`~webhook.admission.connections.ConnectionLimits.max_head_bytes` without it is
  answered 431 and the connection is closed. A body with a Content-Length is fed up to
  its last byte and no further, so the next pipelined head is framed the same way; a
  chunked body is fed a head's size at a time, and what it carries besides data (chunk
  sizes, extensions, trailers) may not exceed a head's size plus 1/64 of its data, which
  stops trailer bombs and one-byte chunks.
- **Its phase is reported to the table** (unfinished head, reading a body, answering, idle,
  closing) after each piece of data and each reply, so the table can apply deadlines and
  pick whom to evict.

Private, because it leans on uvicorn internals that are not API: ``parser``, ``headers``,
``cycle``, ``pipeline`` and ``_unset_keepalive_if_required`` of ``HttpToolsProtocol``, and
the parser callbacks it defines. ``tests/webhook/admission/test_connections.py`` checks
them, so a uvicorn release that changes one fails loudly.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
from collections.abc import Coroutine
from typing import Any, Final, cast

import httptools
from uvicorn.config import Config
from uvicorn.server import ServerState

from webhook.admission._batching import HttpProtocol
from webhook.admission.connections import (
    BODY_GRACE_SECONDS,
    CLOSE_GRACE_SECONDS,
    ConnectionTable,
    Phase,
)

__all__ = ["GuardedHttpProtocol", "TLSConnection"]

_END_OF_HEAD: Final = b"\r\n\r\n"
# Bytes of chunk framing and trailers allowed per byte of chunk data, beyond one head's size.
_FRAMING_RATIO: Final = 64

log = logging.getLogger(__name__)


class TLSConnection(asyncio.Protocol):
    """One accepted socket: entered in the table, TLS started, then HTTP.

    uvicorn makes one per accepted socket, as it would its HTTP protocol (``http=`` of
    ``uvicorn.Config``; :func:`webhook.admission.server.build_server` binds ``table`` and
    ``tls``). Only after the handshake does the :class:`GuardedHttpProtocol` it holds see
    the connection, and only then does uvicorn count it among its connections.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        table: ConnectionTable,
        tls: ssl.SSLContext,
    ) -> None:
        self.phase = Phase.GONE  # until the table admits it
        self.table = table
        self.http = GuardedHttpProtocol(
            config=config,
            server_state=server_state,
            app_state=app_state,
            _loop=_loop,
            connection=self,
        )
        self._loop = self.http.loop
        self._tls = tls
        self._raw: asyncio.Transport | None = None
        self._handshake: Coroutine[Any, Any, asyncio.Transport | None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection (or refuse it) and start its TLS handshake, now."""
        raw = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self._raw = raw
        if not self.table.admit(self, self._loop.time()):
            raw.abort()
            return
        self._handshake = self._loop.start_tls(
            raw,
            self.http,
            self._tls,
            server_side=True,
            ssl_handshake_timeout=self.table.limits.head_timeout,
            ssl_shutdown_timeout=CLOSE_GRACE_SECONDS,
        )
        # Stepped here rather than in a task: uvloop starts reading right after this
        # method returns, and the ClientHello must reach the TLS layer, not this protocol.
        # start_tls hands the transport over before its first await; the step continues
        # when the future it waits for is done, as a task would.
        self._step()

    def _step(self, _waited: object = None) -> None:
        handshake = self._handshake
        if handshake is None:
            return
        try:
            waiting = handshake.send(None)
        except StopIteration as done:
            self._handshake = None
            self._secured(done.value)
        except Exception as error:  # a failed or abandoned handshake: nothing to serve
            self._handshake = None
            log.debug("TLS handshake failed", extra={"fields": {"error": repr(error)}})
            self.table.discard(self)
            if self._raw is not None:
                self._raw.abort()
        else:
            waiting.add_done_callback(self._step)

    def _secured(self, secure: asyncio.Transport | None) -> None:
        # uvloop hands back a closing transport when the peer left before a ClientHello,
        # and then never reports its loss: forget such a connection here.
        if secure is None or secure.is_closing() or self.phase == Phase.GONE:
            self.table.discard(self)
            self.abort()
            return
        self.http.connection_made(secure)

    def connection_lost(self, exc: Exception | None) -> None:
        """The peer left before TLS took the transport over."""
        self.table.discard(self)

    def abort(self) -> None:
        """End the connection now (for the table: eviction, deadlines, shutdown)."""
        if self._raw is not None:
            self._raw.abort()

    def stop_reading(self) -> None:
        """Read nothing more from the socket: a refused client may still be sending, and
        decrypting what it sends only to drop it would be work done for the attacker. The
        reply already written still goes out; the table aborts the connection when its
        closing grace is over, unless the client leaves first."""
        if self._raw is not None and not self._raw.is_closing():
            self._raw.pause_reading()


class GuardedHttpProtocol(HttpProtocol):
    """uvicorn's httptools protocol, fed framed heads and reporting its phase (module doc)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        connection: TLSConnection,
    ) -> None:
        super().__init__(config=config, server_state=server_state, app_state=app_state, _loop=_loop)
        self.connection = connection
        self.table = connection.table
        limits = self.table.limits
        self._max_head = limits.max_head_bytes
        self._head_timeout = limits.head_timeout
        self._body_due = limits.body_timeout + BODY_GRACE_SECONDS
        self._head = bytearray()  # the part of a head not fed to the parser yet
        self._in_head = True  # the next bytes belong to a request head
        self._head_fed = 0  # bytes of the current head the parser already has
        self._carry = b""  # the parser's last bytes, when a head began inside a chunk piece
        self._head_began = 0.0
        self._head_done = 0.0
        self._declared: int | None = None  # the body's Content-Length; None: chunked
        self._body_bytes = 0  # body bytes of the current message
        self._body_seen = 0  # body bytes of every message (to tell body from framing)
        self._framing = 0  # chunked: bytes fed that were not body
        self._began = False  # the parser has begun a message it has not ended
        self._refused = False

    # ------------------------------------------------------------------ connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """uvicorn's set-up, and a word to the table when the connection starts closing."""
        super().connection_made(transport)
        self._batching.on_close = self._closing

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's clean-up; the table forgets the connection."""
        super().connection_lost(exc)
        self.table.discard(self.connection)

    def _closing(self) -> None:
        self.table.move(self.connection, Phase.CLOSING, self.loop.time() + CLOSE_GRACE_SECONDS)

    def on_response_complete(self) -> None:
        """uvicorn's (the next pipelined request, or the keep-alive timer); then the phase."""
        super().on_response_complete()
        self._sync_phase()

    # ------------------------------------------------------------------ bytes in

    def data_received(self, data: bytes) -> None:
        """Frame heads, feed bodies piece by piece (module doc), then report the phase."""
        self._unset_keepalive_if_required()
        rest: bytes | memoryview = data
        while rest and not self._refused:
            rest = self._take_head(rest) if self._in_head else self._take_body(rest)
        self._sync_phase()

    def _take_head(self, data: bytes | memoryview) -> bytes | memoryview:
        """Collect head bytes; feed the head once its blank line is in. Returns what follows."""
        buffer = self._head
        if not buffer and not self._head_fed:  # the first byte of a request
            self._head_began = self.loop.time()
        if not buffer and not self._carry:
            # The usual case: a whole head (and its body) in one read, fed without a copy.
            whole = data if isinstance(data, bytes) else bytes(data)
            at = whole.find(_END_OF_HEAD)
            if at >= 0:
                end = at + len(_END_OF_HEAD)
                if self._head_fed + end > self._max_head:
                    self._refuse_head(431)
                    return b""
                view = memoryview(whole)
                self._head_fed += end
                self._feed(view[:end])
                return view[end:]
            data = whole
        searched = max(0, len(buffer) - 3)
        buffer += data
        end = self._end_of_head(buffer, searched)
        if end < 0:
            if self._head_fed + len(buffer) > self._max_head:
                self._refuse_head(431)
            return b""
        if self._head_fed + end > self._max_head:
            self._refuse_head(431)
            return b""
        head, rest = bytes(buffer[:end]), memoryview(bytes(buffer[end:]))
        buffer.clear()
        self._carry = b""
        self._head_fed += end
        self._feed(head)
        return rest

    def _end_of_head(self, buffer: bytearray, searched: int) -> int:
        """Where the head ends in ``buffer`` (just past its blank line); -1: not yet."""
        if self._carry:  # the blank line may have begun in what the parser already has
            joined = self._carry + bytes(buffer[:3])
            at = joined.find(_END_OF_HEAD)
            if at >= 0:
                return at + len(_END_OF_HEAD) - len(self._carry)
        at = buffer.find(_END_OF_HEAD, searched)
        return at + len(_END_OF_HEAD) if at >= 0 else -1

    def _take_body(self, data: bytes | memoryview) -> memoryview:
        """Feed body bytes: up to the end of a Content-Length body, or one piece of a
        chunked one (its framing counted). Returns what is left."""
        view = data if isinstance(data, memoryview) else memoryview(data)
        if self._declared is not None:
            remaining = self._declared - self._body_bytes
            if len(view) <= remaining:
                self._feed(view)
                return memoryview(b"")
            if remaining > 0:
                self._feed(view[:remaining])
                return view[remaining:]
            # the parser holds the body complete but did not end the message: let it judge
        piece = view[: self._max_head]
        seen = self._body_seen
        self._feed(piece)
        framing = len(piece) - (self._body_seen - seen)
        if self._in_head and self._began:
            # The message ended inside the piece and the next one began: its first head
            # bytes are parsed already; count all of the piece's framing as those.
            self._head_fed = framing
            self._head_began = self.loop.time()
            self._carry = bytes(piece[-3:])
        elif self._declared is None and not self._refused:
            self._framing += framing
            if self._framing > self._max_head + self._body_bytes // _FRAMING_RATIO:
                self._refuse_body(
                    400, "too much chunk framing or trailers for the data the body carries"
                )
        return view[len(piece) :]

    def _feed(self, data: bytes | memoryview) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol upgrades here: what was asked is answered, then the connection ends.
            self._refused = True
            if self._pending():
                self.cycle.keep_alive = False
            else:
                self.transport.close()
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            if self._in_head:
                self._refuse_head(400, "Invalid HTTP request received.")
            else:
                self._refuse_body(400, "Invalid HTTP request received.")

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        """uvicorn's (a new scope); a message has begun."""
        self._began = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """The head is in: the body's accounting starts, then uvicorn's dispatch."""
        self._in_head = False
        self._head_fed = 0
        self._head_done = self.loop.time()
        self._body_bytes = self._framing = 0
        self._declared = self._declared_length()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Count the body's bytes; uvicorn's buffering."""
        self._body_bytes += len(body)
        self._body_seen += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        """uvicorn's; the next bytes start a head."""
        super().on_message_complete()
        self._in_head = True
        self._began = False
        self._head_fed = 0

    def _declared_length(self) -> int | None:
        """The Content-Length of a body that has one (the parser has checked it); None for
        a chunked body."""
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                return None
        if length is None:
            return 0
        return int(length) if length.isdigit() and len(length) < 20 else None

    # ------------------------------------------------------------------ refusals and phases

    def _pending(self) -> bool:
        """A reply is being prepared (or a pipelined request waits for its turn)."""
        cycle = self.cycle
        return cycle is not None and (not cycle.response_complete or bool(self.pipeline))

    def _refuse_head(self, status: int, message: str = "") -> None:
        """Refuse a request head; with a reply still due for an earlier request, that reply
        goes out first and the connection ends after it."""
        self._refused = True
        self._head.clear()
        self._carry = b""
        if self._pending():
            self.cycle.keep_alive = False
            self.pipeline.clear()
            return
        if status == 431 and not message:
            message = (
                f"the request line and headers exceed {self._max_head} bytes "
                "(spacegate's limit, see docs/limits.md)"
            )
        self._reply_and_close(status, message)

    def _refuse_body(self, status: int, message: str) -> None:
        """Refuse a request whose body is broken: answer if nothing was answered, and close."""
        self._refused = True
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self._reply_and_close(status, message)
        else:
            self.transport.close()
            self.connection.stop_reading()

    def _reply_and_close(self, status: int, message: str) -> None:
        body = message.encode("utf-8")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, http.HTTPStatus(status).phrase.encode("ascii"), len(body), body)
        )
        self.transport.close()
        self.connection.stop_reading()

    def _sync_phase(self) -> None:
        """Tell the table where the connection is (it keeps the place if unchanged)."""
        table, connection = self.table, self.connection
        if not self._in_head:
            table.move(connection, Phase.READING, self._head_done + self._body_due)
        elif self._pending():
            table.move(connection, Phase.BUSY)
        elif self._head or self._head_fed:
            table.move(connection, Phase.UNFINISHED, self._head_began + self._head_timeout)
        elif self.cycle is not None:
            table.move(connection, Phase.IDLE)
        # else: a new connection that sent nothing yet, unfinished since its accept
