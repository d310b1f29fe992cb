"""Talking to the admission server byte by byte, as an attacker (or a careful client) would.

httpx cannot send a half head, a head in one-byte records or three pipelined requests in
one write; these helpers can: :class:`Wire` is one TLS (or plain TCP) connection with a
reader of HTTP/1.1 responses, and :func:`closed_within` tells how long the server took to
end a connection.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from ..conftest import RunningServer


@dataclass
class Response:
    """One HTTP/1.1 response as read off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Wire:
    """A connection to the server (TLS unless ``tls=False``), and what it has read."""

    def __init__(self, server: RunningServer, *, tls: bool = True, timeout: float = 10) -> None:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.sock: socket.socket = raw
        if tls:
            context = server.tls_dir.client_context()
            self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.buffer = b""

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_slowly(self, data: bytes, *, piece: int = 1, pause: float = 0.0) -> None:
        """``data`` in pieces of ``piece`` bytes, each its own write (a TLS record each)."""
        for at in range(0, len(data), piece):
            self.sock.sendall(data[at : at + piece])
            if pause:
                time.sleep(pause)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            chunk = b""
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> Response:
        """The next response (its body by Content-Length); AssertionError at EOF."""
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"connection ended before a response; read {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "connection ended inside a response body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(int(status_line.split()[1]), headers, body)

    def ended(self, timeout: float) -> bool:
        """Whether the server ends the connection within ``timeout`` seconds (anything it
        still sends is kept in :attr:`buffer`)."""
        deadline = time.monotonic() + timeout
        try:
            self.sock.settimeout(timeout)
            while time.monotonic() < deadline:
                if not self._fill():
                    return True
        except TimeoutError:
            return False
        except OSError:
            return True
        return False


def closed_within(wire: Wire, at_most: float) -> float:
    """Seconds until the server ended ``wire`` (AssertionError if it had not after
    ``at_most``)."""
    started = time.monotonic()
    assert wire.ended(at_most), f"the server kept the connection open for {at_most} s"
    return time.monotonic() - started


def post(path: str, body: bytes, *, headers: bytes = b"", close: bool = False) -> bytes:
    """The bytes of a POST of ``body`` with a Content-Length, as the apiserver sends it."""
    return (
        b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"%s%sContent-Length: %d\r\n\r\n%s"
        % (path.encode(), headers, b"Connection: close\r\n" if close else b"", len(body), body)
    )


def chunked_head(path: str = "/validate") -> bytes:
    """The head of a POST whose body is chunked (no Content-Length)."""
    return (
        b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" % path.encode()
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)
