"""Request heads and chunk framing on the wire: the header bomb, and what is still served.

No authentication stands before the port, so these are sent as an attacker would, over
real TLS to the server (``webhook.admission._http``): a head past 16 KiB, streamed or not,
is answered 431 and the connection closed before the server spends memory or time on it;
trailers and one-byte chunks cannot stand in for it. The neighbours are what genuine
clients do and must keep working: many small headers, a head in many TLS records,
pipelining, keep-alive, ordinary chunked bodies.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import threading
import time

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from webhook.admission.connections import MAX_HEAD_BYTES

from ..conftest import RunningServer, pod, review
from .wire import Wire, chunk, chunked_head, closed_within, post

ALLOWED = "harbor.demo.local/team-a/api:1.0"
DENIED = "harbor.demo.local/team-b/api:1.0"


def review_body(image: str = ALLOWED, uid: str = "wire-1") -> bytes:
    return json.dumps(review(pod(image), uid=uid)).encode()


def test_the_uvicorn_internals_the_guard_relies_on_are_still_there() -> None:
    for name in (
        "on_message_begin",
        "on_headers_complete",
        "on_body",
        "on_message_complete",
        "on_response_complete",
    ):
        assert callable(getattr(HttpToolsProtocol, name, None)), f"{name} is gone"
    source = inspect.getsource(HttpToolsProtocol)
    for used in (
        "self.parser = httptools.HttpRequestParser(self)",
        "def _unset_keepalive_if_required(self)",
        "self.headers.append((name, value))",
        "self.pipeline",
        "self.cycle = RequestResponseCycle(",
    ):
        assert used in source, f"HttpToolsProtocol no longer has {used!r}"
    cycle = inspect.getsource(RequestResponseCycle)
    for used in ("self.response_complete", "self.response_started", "self.keep_alive"):
        assert used in cycle, f"RequestResponseCycle no longer has {used}"


# --------------------------------------------------------------------------- the header bomb


def test_a_head_over_16_kib_is_answered_431_and_the_connection_closed(
    shared_server: RunningServer,
) -> None:
    with Wire(shared_server) as wire:
        wire.send(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Bomb: " + b"a" * MAX_HEAD_BYTES)

        reply = wire.response()

        assert reply.status == 431
        assert reply.headers["connection"] == "close"
        assert b"exceed 16384 bytes" in reply.body
        assert wire.ended(5)


def test_a_request_line_over_16_kib_is_refused_the_same_way(shared_server: RunningServer) -> None:
    with Wire(shared_server) as wire:
        wire.send(b"GET /healthz?" + b"q" * (MAX_HEAD_BYTES + 1) + b" HTTP/1.1\r\n\r\n")

        assert wire.response().status == 431


def test_a_streamed_64_mib_header_is_cut_after_its_first_kilobytes(
    shared_server: RunningServer,
) -> None:
    # One header streamed as fast as loopback TLS allows: uvicorn and httptools would
    # collect all of it, re-copying the value for every record. The server must refuse it
    # once 16 KiB are in and stop reading; what the client still manages to send is what
    # the socket buffers take before they are full.
    sent = 0
    with Wire(shared_server) as wire:
        wire.send(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nX-Bomb: ")
        record = b"a" * 16384
        with contextlib.suppress(OSError):
            while sent < 64 * 1024 * 1024:
                wire.send(record)
                sent += len(record)
        reply = wire.response()

    assert reply.status == 431
    assert sent < 16 * 1024 * 1024


def test_a_head_in_one_byte_records_is_refused_at_16_kib_too(shared_server: RunningServer) -> None:
    with Wire(shared_server) as wire:
        wire.send(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        wire.send_slowly(b"b" * (MAX_HEAD_BYTES + 16), piece=64)

        assert wire.response().status == 431


def test_many_small_headers_under_the_limit_are_served(shared_server: RunningServer) -> None:
    headers = b"".join(b"X-Header-%d: %s\r\n" % (i, b"v" * 100) for i in range(120))  # 14 KiB
    with Wire(shared_server) as wire:
        wire.send(post("/validate", review_body(uid="many-headers"), headers=headers))

        reply = wire.response()

    assert reply.status == 200
    assert reply.json()["response"]["uid"] == "many-headers"


def test_a_head_split_across_a_record_per_byte_is_parsed_as_one(
    shared_server: RunningServer,
) -> None:
    request = post("/validate", review_body(DENIED, uid="byte-by-byte"))
    head_length = request.index(b"\r\n\r\n") + 4
    with Wire(shared_server) as wire:
        wire.send_slowly(request[:head_length], piece=1)
        wire.send(request[head_length:])

        reply = wire.response()

    assert reply.json()["response"]["uid"] == "byte-by-byte"
    assert reply.json()["response"]["allowed"] is False


def test_the_blank_line_split_between_records_still_ends_the_head(
    shared_server: RunningServer,
) -> None:
    request = post("/validate", review_body(uid="split-blank-line"))
    end = request.index(b"\r\n\r\n")
    with Wire(shared_server) as wire:
        # "...\r" | "\n" | "\r" | "\n{body}": each a record of its own
        for piece in (request[: end + 1], request[end + 1 : end + 2], request[end + 2 : end + 3]):
            wire.send(piece)
            time.sleep(0.05)
        wire.send(request[end + 3 :])

        assert wire.response().json()["response"]["uid"] == "split-blank-line"


# --------------------------------------------------------------------------- keep-alive, pipelining


def test_one_connection_serves_request_after_request(shared_server: RunningServer) -> None:
    with Wire(shared_server) as wire:
        for n in range(3):
            wire.send(post("/validate", review_body(uid=f"keep-alive-{n}")))
            assert wire.response().json()["response"]["uid"] == f"keep-alive-{n}"
        wire.send(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert wire.response().body == b"ok\n"


def test_pipelined_requests_are_answered_in_order(shared_server: RunningServer) -> None:
    requests = b"".join(post("/mutate", review_body(uid=f"pipelined-{n}")) for n in range(5))
    with Wire(shared_server) as wire:
        wire.send(requests + b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")

        uids = [wire.response().json()["response"]["uid"] for _ in range(5)]
        last = wire.response()

    assert uids == [f"pipelined-{n}" for n in range(5)]
    assert last.body == b"ok\n"


def test_a_pipelined_head_over_the_limit_ends_the_connection_after_the_earlier_reply(
    shared_server: RunningServer,
) -> None:
    with Wire(shared_server) as wire:
        wire.send(
            post("/validate", review_body(uid="before-the-bomb"))
            + b"GET /healthz HTTP/1.1\r\nX-Bomb: "
            + b"a" * (MAX_HEAD_BYTES + 1)
        )

        first = wire.response()

        assert first.json()["response"]["uid"] == "before-the-bomb"
        assert wire.ended(5)


def test_an_upgrade_request_is_answered_and_the_connection_then_ends(
    shared_server: RunningServer,
) -> None:
    with Wire(shared_server) as wire:
        wire.send(
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
            b"Upgrade: h2c\r\n\r\n"
        )

        assert wire.response().body == b"ok\n"
        assert wire.ended(5)


# --------------------------------------------------------------------------- chunked bodies


def test_a_chunked_review_in_ordinary_chunks_is_decided(shared_server: RunningServer) -> None:
    body = review_body(DENIED, uid="chunked-ok")
    with Wire(shared_server) as wire:
        wire.send(chunked_head())
        for at in range(0, len(body), 1000):
            wire.send(chunk(body[at : at + 1000]))
        wire.send(b"0\r\n\r\n")

        reply = wire.response()

    assert reply.json()["response"]["uid"] == "chunked-ok"
    assert reply.json()["response"]["allowed"] is False


def test_one_byte_chunks_are_refused_before_each_costs_a_callback(
    shared_server: RunningServer,
) -> None:
    body = review_body(uid="one-byte-chunks") + b" " * 20_000
    with Wire(shared_server) as wire:
        wire.send(chunked_head())
        with contextlib.suppress(OSError):
            wire.send(b"".join(chunk(body[i : i + 1]) for i in range(len(body))) + b"0\r\n\r\n")

        reply = wire.response()

    assert reply.status == 400
    assert b"too much chunk framing or trailers" in reply.body


def test_a_trailer_bomb_after_the_last_chunk_is_refused(shared_server: RunningServer) -> None:
    body = review_body(uid="trailer-bomb")
    with Wire(shared_server) as wire:
        wire.send(chunked_head() + chunk(body) + b"0\r\nX-Trailer: ")
        with contextlib.suppress(OSError):
            for _ in range(64):
                wire.send(b"t" * 16384)

        reply = wire.response()

    # The body is only complete once the trailers are: the review is never decided.
    assert reply.status == 400
    assert b"too much chunk framing or trailers" in reply.body
    assert wire.ended(5)


def test_a_header_bomb_does_not_stall_reviews_on_other_connections(
    shared_server: RunningServer,
) -> None:
    stop = threading.Event()

    def bomb() -> None:
        while not stop.is_set():
            with Wire(shared_server) as wire, contextlib.suppress(OSError):
                wire.send(b"POST /validate HTTP/1.1\r\nX-Bomb: ")
                for _ in range(256):
                    wire.send(b"z" * 16384)

    bombers = [threading.Thread(target=bomb, daemon=True) for _ in range(2)]
    for thread in bombers:
        thread.start()
    slowest = 0.0
    try:
        with Wire(shared_server) as wire:
            for n in range(40):
                started = time.monotonic()
                wire.send(post("/validate", review_body(uid=f"beside-{n}")))
                assert wire.response().json()["response"]["uid"] == f"beside-{n}"
                slowest = max(slowest, time.monotonic() - started)
    finally:
        stop.set()
        for thread in bombers:
            thread.join(10)

    assert slowest < 1.0


@pytest.mark.parametrize("path", ["/validate", "/healthz"])
def test_a_server_closed_connection_after_a_refusal_is_not_kept_for_long(
    shared_server: RunningServer, path: str
) -> None:
    with Wire(shared_server) as wire:
        wire.send(b"GET %s HTTP/1.1\r\nX-Bomb: " % path.encode() + b"a" * (MAX_HEAD_BYTES + 1))
        assert wire.response().status == 431
        assert closed_within(wire, 5) < 5
