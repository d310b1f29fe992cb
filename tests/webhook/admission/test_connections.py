"""Slowloris and connection floods: deadlines, the cap, and who is evicted to make room.

First the table itself (``webhook.admission.connections``), on a clock the tests hold;
then the real server over TLS on loopback with short deadlines (half a second for a head)
or a cap of eight connections, attacked the way the issue found it open: connections that
never send a byte, stop in the TLS handshake, trickle a head or a body; enough of them to
fill the table, or the process's descriptors. The apiserver (a keep-alive client sending
reviews) must be served throughout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from policy.snapshot import Snapshot
from webhook.admission.connections import (
    RESERVED_FDS,
    ConnectionLimits,
    ConnectionTable,
    Phase,
)
from webhook.state import StaticState

from ..conftest import REPO_ROOT, RunningServer, fixed_state, pod, review, run_server
from .wire import Wire, chunk, chunked_head, closed_within, post

BODY = json.dumps(review(pod("harbor.demo.local/team-a/api:1.0"), uid="conn-1")).encode()


# --------------------------------------------------------------------------- the table


class Peer:
    """A connection as the table sees it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.phase = Phase.GONE
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    def __repr__(self) -> str:
        return self.name


def table_of(capacity: int, **limits: float) -> ConnectionTable:
    return ConnectionTable(ConnectionLimits(max_connections=capacity, **limits))  # type: ignore[arg-type]


def admitted(table: ConnectionTable, *names: str, at: float = 0.0) -> list[Peer]:
    peers = [Peer(name) for name in names]
    for peer in peers:
        assert table.admit(peer, at)
    return peers


def test_a_new_connection_must_finish_its_head_within_the_deadline_from_its_accept() -> None:
    table = table_of(8, head_timeout=10)
    [peer] = admitted(table, "slow", at=100.0)

    table.sweep(109.9)
    assert not peer.aborted
    table.sweep(110.0)

    assert peer.aborted
    assert table.open == 0
    assert table.closed == {"head deadline": 1}


def test_at_the_cap_the_oldest_unfinished_connection_makes_room() -> None:
    table = table_of(3)
    first, second, third = admitted(table, "first", "second", "third")

    assert table.admit(Peer("newcomer"), 1.0)

    assert [p.aborted for p in (first, second, third)] == [True, False, False]
    assert table.open == 3
    assert table.closed == {"evicted at the connection cap": 1}


def test_idle_keep_alive_connections_are_evicted_only_when_nothing_unfinished_is_left() -> None:
    table = table_of(3)
    apiserver, other, slow = admitted(table, "apiserver", "other", "slow")
    table.move(apiserver, Phase.IDLE)
    table.move(other, Phase.IDLE)

    assert table.admit(Peer("a"), 1.0)
    assert (apiserver.aborted, other.aborted, slow.aborted) == (False, False, True)


def test_closing_connections_are_evicted_before_all_others() -> None:
    table = table_of(2)
    unfinished, closing = admitted(table, "unfinished", "closing")
    table.move(closing, Phase.CLOSING, 5.0)

    assert table.admit(Peer("new"), 1.0)
    assert (unfinished.aborted, closing.aborted) == (False, True)


def test_the_longest_idle_connection_goes_first() -> None:
    table = table_of(2)
    busy_lately, idle_long = admitted(table, "busy lately", "idle long")
    table.move(busy_lately, Phase.IDLE)
    table.move(idle_long, Phase.IDLE)
    table.move(busy_lately, Phase.BUSY)
    table.move(busy_lately, Phase.IDLE)  # answered a request since

    assert table.admit(Peer("new"), 1.0)
    assert (busy_lately.aborted, idle_long.aborted) == (False, True)


def test_a_connection_with_a_request_in_flight_is_never_evicted() -> None:
    table = table_of(2)
    reading, busy = admitted(table, "reading", "busy")
    table.move(reading, Phase.READING, 50.0)
    table.move(busy, Phase.BUSY)

    newcomer = Peer("newcomer")
    assert not table.admit(newcomer, 1.0)

    assert not (reading.aborted or busy.aborted)
    assert newcomer.phase == Phase.GONE
    assert table.closed == {"refused: every connection busy": 1}


def test_a_body_past_its_deadline_ends_its_connection() -> None:
    table = table_of(4)
    peer, later = admitted(table, "trickling", "later")
    table.move(peer, Phase.READING, 11.0)
    table.move(later, Phase.READING, 12.0)

    table.sweep(11.5)

    assert (peer.aborted, later.aborted) == (True, False)
    assert table.closed == {"body deadline": 1}


def test_a_phase_kept_keeps_its_deadline_and_closing_is_final() -> None:
    table = table_of(4, head_timeout=10)
    [peer] = admitted(table, "peer")
    table.move(peer, Phase.UNFINISHED, 1000.0)  # more head bytes: the deadline stays
    table.sweep(10.0)
    assert peer.aborted

    [other] = admitted(table, "other")
    table.move(other, Phase.CLOSING, 2.0)
    table.move(other, Phase.IDLE)
    assert other.phase == Phase.CLOSING


def test_a_stopping_server_admits_nothing_more_and_ends_the_unfinished() -> None:
    table = table_of(4)
    idle, unfinished = admitted(table, "idle", "unfinished")
    table.move(idle, Phase.IDLE)

    table.stop_accepting()

    assert not table.admit(Peer("late"), 1.0)
    assert (idle.aborted, unfinished.aborted) == (False, True)


def test_the_capacity_fits_the_open_file_limit() -> None:
    table = table_of(1024)

    assert table.fit_to_descriptors(256) == 256 - RESERVED_FDS
    assert table.fit_to_descriptors(100_000) == 1024
    assert table.fit_to_descriptors(resource.RLIM_INFINITY) == 1024
    assert table.fit_to_descriptors(20) == 16  # never below a handful


def test_limits_that_would_refuse_ordinary_requests_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_head_bytes"):
        ConnectionLimits(max_head_bytes=100)
    with pytest.raises(ValueError, match="positive"):
        ConnectionLimits(head_timeout=0)


# --------------------------------------------------------------------------- deadlines on the wire


@pytest.fixture(scope="module")
def hasty(
    tmp_path_factory: pytest.TempPathFactory, demo_snapshot: Snapshot, shared_server: RunningServer
) -> Iterator[RunningServer]:
    """A server with half-second head and body deadlines (the body's connection backstop
    follows one second later)."""
    state = StaticState(demo_snapshot)
    settings = dataclasses.replace(fixed_state(state), body_timeout=0.5)
    limits = ConnectionLimits(head_timeout=0.5, body_timeout=0.5)
    with run_server(settings, shared_server.tls_dir, state, limits=limits) as running:
        yield running


def test_a_connection_that_never_sends_a_byte_is_closed_at_the_head_deadline(
    hasty: RunningServer,
) -> None:
    with Wire(hasty, tls=False) as silent:
        assert 0.4 < closed_within(silent, 3) < 2


def test_a_connection_stuck_in_its_tls_handshake_is_closed_at_the_head_deadline(
    hasty: RunningServer,
) -> None:
    with Wire(hasty, tls=False) as stuck:
        stuck.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start

        assert closed_within(stuck, 3) < 2


def test_a_tls_connection_that_sends_no_request_is_closed_at_the_head_deadline(
    hasty: RunningServer,
) -> None:
    with Wire(hasty) as quiet:
        assert closed_within(quiet, 3) < 2


def test_a_head_trickled_a_byte_at_a_time_is_cut_at_its_deadline(hasty: RunningServer) -> None:
    with Wire(hasty) as wire:
        stop = threading.Event()

        def trickle() -> None:
            for byte in b"POST /validate HTTP/1.1\r\nX-Slow: " + b"s" * 1000:
                if stop.is_set():
                    return
                try:
                    wire.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.05)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            assert closed_within(wire, 3) < 2
        finally:
            stop.set()
            thread.join(5)


def test_an_idle_keep_alive_connection_is_not_held_to_the_head_deadline(
    hasty: RunningServer,
) -> None:
    with Wire(hasty) as apiserver:
        apiserver.send(post("/validate", BODY))
        assert apiserver.response().status == 200
        time.sleep(1.2)  # idle for more than twice the head deadline

        apiserver.send(post("/validate", BODY))

        assert apiserver.response().status == 200


def test_a_chunked_requests_connection_is_idle_after_its_reply_not_unfinished(
    hasty: RunningServer,
) -> None:
    # The terminal chunk is framing, not the start of another head: the connection must
    # wait for its next request under the keep-alive timeout, not the head deadline.
    with Wire(hasty) as wire:
        wire.send(chunked_head() + chunk(BODY) + b"0\r\n\r\n")
        assert wire.response().json()["response"]["uid"] == "conn-1"
        time.sleep(1.2)

        wire.send(post("/validate", BODY))

        assert wire.response().status == 200


def test_a_later_heads_deadline_runs_from_its_first_byte(hasty: RunningServer) -> None:
    with Wire(hasty) as wire:
        wire.send(post("/validate", BODY))
        assert wire.response().status == 200
        time.sleep(1.0)
        wire.send(b"POST /validate HTTP/1.1\r\n")  # ... and no more

        assert 0.3 < closed_within(wire, 3) < 2


def test_a_slow_but_legitimate_request_within_the_deadlines_is_answered(
    hasty: RunningServer,
) -> None:
    request = post("/validate", BODY)
    head_end = request.index(b"\r\n\r\n") + 4
    with Wire(hasty) as wire:
        for piece in (request[:20], request[20:head_end], request[head_end:-100]):
            wire.send(piece)
            time.sleep(0.1)
        wire.send(request[-100:])

        assert wire.response().json()["response"]["uid"] == "conn-1"


def trickle_body(wire: Wire, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        while not stop.is_set():
            try:
                wire.send(b" " * 10)
            except OSError:
                return
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(("path", "status"), [("/validate", 408), ("/healthz", 405)])
def test_a_body_still_trickling_after_its_reply_cannot_hold_the_connection(
    hasty: RunningServer, path: str, status: int
) -> None:
    # /validate answers 408 at the body deadline; /healthz answers at once without reading
    # the body. Either way the client keeps sending, and the connection must still end
    # (body deadline 0.5 s, then the table's one-second backstop).
    stop = threading.Event()
    with Wire(hasty) as wire:
        wire.send(
            b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000\r\n\r\n{" % path.encode()
        )
        thread = trickle_body(wire, stop)
        try:
            assert wire.response().status == status
            assert closed_within(wire, 5) < 3
        finally:
            stop.set()
            thread.join(5)


# --------------------------------------------------------------------------- the cap


@pytest.fixture(scope="module")
def capped(demo_snapshot: Snapshot, shared_server: RunningServer) -> Iterator[RunningServer]:
    """A server with room for eight connections and long deadlines: only eviction ends
    a connection early."""
    state = StaticState(demo_snapshot)
    limits = ConnectionLimits(head_timeout=30, max_connections=8)
    with run_server(fixed_state(state), shared_server.tls_dir, state, limits=limits) as running:
        yield running


def served(server: RunningServer, uid: str = "conn-1") -> bool:
    with Wire(server, timeout=5) as wire:
        wire.send(post("/validate", BODY.replace(b'"conn-1"', f'"{uid}"'.encode())))
        return bool(wire.response().json()["response"]["uid"] == uid)


def wait_for_open(server: RunningServer, count: int, phase: int | None = None) -> None:
    """Until ``count`` connections are open (in ``phase``, if given)."""
    table = server.server.table
    deadline = time.monotonic() + 5
    while (table.open if phase is None else table.count(phase)) != count:
        assert time.monotonic() < deadline, f"{table.open} open, not {count}"
        time.sleep(0.01)


def test_connections_their_clients_close_are_forgotten_in_every_phase(
    capped: RunningServer,
) -> None:
    wait_for_open(capped, 0)
    socket.create_connection(("127.0.0.1", capped.port)).close()  # before its ClientHello
    with Wire(capped):
        pass  # after its handshake
    with Wire(capped) as wire:
        wire.send(b"POST /validate HTTP/1.1\r\n")  # inside a head
    with Wire(capped) as wire:
        wire.send(post("/validate", BODY))
        assert wire.response().status == 200  # idle after a request

    wait_for_open(capped, 0)
    deadline = time.monotonic() + 5
    while capped.server.server_state.connections:
        assert time.monotonic() < deadline, "uvicorn still counts a closed connection"
        time.sleep(0.01)


def test_at_the_cap_a_genuine_client_evicts_the_oldest_slowloris_connection(
    capped: RunningServer,
) -> None:
    wait_for_open(capped, 0)
    silent = [Wire(capped, tls=False) for _ in range(8)]
    try:
        wait_for_open(capped, 8)

        assert served(capped, "past-the-slowloris")

        assert silent[0].ended(2)
        assert not silent[-1].ended(0.2)
    finally:
        for wire in silent:
            wire.close()


def test_at_the_cap_idle_keep_alive_connections_outlive_unfinished_ones(
    capped: RunningServer,
) -> None:
    wait_for_open(capped, 0)
    with Wire(capped) as apiserver:
        apiserver.send(post("/validate", BODY))
        assert apiserver.response().status == 200
        silent = [Wire(capped, tls=False) for _ in range(7)]
        try:
            wait_for_open(capped, 8)
            for n in range(5):
                assert served(capped, f"newcomer-{n}")

            apiserver.send(post("/validate", BODY))
            assert apiserver.response().json()["response"]["uid"] == "conn-1"
        finally:
            for wire in silent:
                wire.close()


def test_with_every_connection_reading_a_request_a_new_one_is_refused_until_one_is_answered(
    capped: RunningServer,
) -> None:
    wait_for_open(capped, 0)
    request = post("/validate", BODY)
    busy = [Wire(capped) for _ in range(8)]
    try:
        for wire in busy:
            wire.send(request[:-10])  # the head and most of the body: in flight
        wait_for_open(capped, 8, Phase.READING)

        with pytest.raises((ssl.SSLError, OSError)):
            served(capped, "refused")

        busy[0].send(request[-10:])
        assert busy[0].response().status == 200
        busy[0].close()
        assert served(capped, "after-one-finished")
    finally:
        for wire in busy:
            wire.close()


def test_the_apiservers_keep_alive_connection_survives_a_slowloris_flood(
    capped: RunningServer,
) -> None:
    wait_for_open(capped, 0)
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def apiserver() -> None:
        nonlocal answered
        with capped.client() as client:
            while not stop.is_set():
                try:
                    http = client.post(
                        "/validate", content=BODY, headers={"Content-Type": "application/json"}
                    )
                    assert http.json()["response"]["uid"] == "conn-1"
                    answered += 1
                except (httpx.HTTPError, AssertionError) as error:
                    failures.append(repr(error))
                time.sleep(0.005)

    thread = threading.Thread(target=apiserver, daemon=True)
    thread.start()
    flood: list[Wire] = []
    try:
        for _ in range(200):
            flood.append(Wire(capped, tls=False))
            time.sleep(0.002)
    finally:
        stop.set()
        thread.join(10)
        for wire in flood:
            wire.close()

    assert failures == []
    assert answered > 10
    assert capped.server.table.closed["evicted at the connection cap"] >= 190


# --------------------------------------------------------------------------- descriptors


class LimitedServe:
    """``spacegate serve`` in a child process whose open-file limit is ``soft``/``hard``."""

    def __init__(self, cwd: Path, soft: int, hard: int) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        code = (
            f"import sys\nfrom webhook.cli.serve import serve\nsys.exit(serve(port={self.port}))\n"
        )

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        self.log = cwd / "serve.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.ca = cwd / ".dev-certs" / "ca.crt"
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, self.log.read_text()
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.05)

    def open_files_limit(self) -> tuple[int, int]:
        for line in Path(f"/proc/{self.proc.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
        raise AssertionError("no open-file limit in /proc")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def test_serve_raises_its_open_file_limit_to_the_hard_limit(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    server = LimitedServe(tmp_path, 256, hard)
    try:
        assert server.open_files_limit() == (hard, hard)
    finally:
        server.stop()


def test_a_slowloris_flood_past_the_descriptor_limit_does_not_lock_out_the_apiserver(
    tmp_path: Path,
) -> None:
    # The numbers scaled down: a limit of 256 descriptors that cannot be raised,
    # and 400 connections that never send a byte (each would be held for the whole TLS
    # handshake timeout, 60 s).
    server = LimitedServe(tmp_path, 256, 256)
    flood: list[socket.socket] = []
    try:
        for _ in range(400):
            flood.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        time.sleep(0.5)
        context = ssl.create_default_context(cafile=str(server.ca))
        with httpx.Client(verify=context, timeout=5) as client:
            http = client.post(
                f"https://localhost:{server.port}/validate",
                content=BODY,
                headers={"Content-Type": "application/json"},
            )
    finally:
        for sock in flood:
            sock.close()
        server.stop()

    assert http.json()["response"]["uid"] == "conn-1"
