"""The selector's protocol bounds a request head, and serves ordinary requests as uvicorn does."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.support.ports import free_port
from webhook.selector.server import HEAD_LIMIT, BoundedHeadProtocol


class QuickDeadline(BoundedHeadProtocol):
    head_timeout = 0.3


@pytest.fixture
def port() -> Iterator[int]:
    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    chosen = free_port()
    config = uvicorn.Config(
        Starlette(routes=[Route("/", hello)]),
        host="127.0.0.1",
        port=chosen,
        http=QuickDeadline,
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield chosen
    server.should_exit = True
    thread.join(5)


def exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with contextlib.suppress(OSError):  # closed by the server while we were still sending
            sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_ordinary_requests_are_answered_on_one_keep_alive_connection(port: int) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = exchange(port, request + request[:-2] + b"Connection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and answer.endswith(b"hello")


def test_a_request_head_over_the_limit_is_refused_with_431_and_closed(port: int) -> None:
    bomb = b"GET / HTTP/1.1\r\nHost: x\r\nX-Bomb: " + b"a" * (HEAD_LIMIT * 4) + b"\r\n\r\n"
    answer = exchange(port, bomb)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_head_that_never_finishes_is_closed_at_the_deadline(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        began = time.monotonic()
        assert sock.recv(1024) == b""  # closed, nothing answered
        assert time.monotonic() - began < 3


def test_a_keep_alive_connection_is_not_cut_while_a_request_is_answered(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK")
        time.sleep(0.5)  # longer than the head deadline, but between requests
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK")
