"""TLS serving and the server process: protocol floor, certificate rotation, clean stops.

Rotation is tested the way it happens in a cluster: the Secret's files change while the
apiserver keeps sending reviews, and not one review may fail. The process tests start
``serve()`` in a subprocess, because signals and exit codes only mean something there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs.reload import ReloadingTLSContext
from policy.snapshot import Snapshot
from webhook.admission.logs import DECISION_LOGGER, DecisionLog
from webhook.admission.server import AdmissionServer
from webhook.state import StaticState

from ..conftest import (
    REPO_ROOT,
    RunningServer,
    TLSDir,
    fixed_state,
    make_tls_dir,
    pod,
    review,
    run_server,
    served_serial,
)

JSON_HEADERS = {"Content-Type": "application/json"}
DENIED = review(pod("harbor.demo.local/team-b/api:1.0"), namespace="sandbox")


@pytest.fixture
def own_server(tmp_path: Path, demo_snapshot: Snapshot) -> Iterator[RunningServer]:
    """A server with its own certificate files, free to be rotated by the test."""
    state = StaticState(demo_snapshot)
    with run_server(fixed_state(state), make_tls_dir(tmp_path / "tls"), state) as running:
        yield running


def handshake(server: RunningServer, **versions: ssl.TLSVersion) -> str:
    context = server.tls_dir.client_context()
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        for name, value in versions.items():
            setattr(context, name, value)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        version = conn.version()
    assert version is not None
    return version


# --------------------------------------------------------------------------- protocol


def test_tls_1_2_and_1_3_clients_are_served(shared_server: RunningServer) -> None:
    assert handshake(shared_server, maximum_version=ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(shared_server, minimum_version=ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


def test_clients_older_than_tls_1_2_are_refused(shared_server: RunningServer) -> None:
    assert shared_server.tls.context.minimum_version >= ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        handshake(
            shared_server,
            minimum_version=ssl.TLSVersion.MINIMUM_SUPPORTED,
            maximum_version=ssl.TLSVersion.TLSv1_1,
        )


def test_the_certificate_names_localhost_and_chains_to_the_ca(
    shared_server: RunningServer,
) -> None:
    with shared_server.client() as client:
        assert client.get("/healthz").text == "ok\n"
    with (
        httpx.Client(verify=ssl.create_default_context()) as untrusting,
        pytest.raises(httpx.ConnectError),
    ):
        untrusting.get(f"{shared_server.url}/healthz")


# --------------------------------------------------------------------------- rotation


class Traffic:
    """Clients sending reviews until stopped: one keep-alive, one reconnecting each time."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.stop = threading.Event()
        self.sent = 0
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=self._keep_alive, daemon=True),
            threading.Thread(target=self._reconnecting, daemon=True),
        ]

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _send(self, client: httpx.Client) -> None:
        try:
            http = client.post("/validate", content=json.dumps(DENIED), headers=JSON_HEADERS)
            if http.status_code != 200 or http.json()["response"]["allowed"] is not False:
                self.failures.append(f"unexpected reply {http.status_code}: {http.text[:200]}")
        except httpx.HTTPError as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")
        self.sent += 1

    def _keep_alive(self) -> None:
        with self.server.client() as client:
            while not self.stop.is_set():
                self._send(client)

    def _reconnecting(self) -> None:
        while not self.stop.is_set():
            with self.server.client() as client:
                self._send(client)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 10
        target = self.sent + count
        while self.sent < target and time.monotonic() < deadline:
            time.sleep(0.01)


def test_a_rotated_certificate_is_served_to_new_connections_without_a_failed_request(
    own_server: RunningServer,
) -> None:
    first = own_server.serial()

    with Traffic(own_server) as traffic:
        traffic.wait_for(20)
        second = own_server.tls_dir.issue()
        assert own_server.tls.maybe_reload() is True
        seen_second = own_server.serial()
        traffic.wait_for(20)
        third = own_server.tls_dir.issue()
        assert own_server.tls.maybe_reload() is True
        seen_third = own_server.serial()
        traffic.wait_for(20)

    assert len({first, second, third}) == 3
    assert (seen_second, seen_third) == (second, third)
    assert traffic.failures == []
    assert traffic.sent >= 60


def test_a_broken_new_pair_keeps_the_old_certificate_and_says_why(
    own_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    serving = own_server.serial()
    tls_dir: TLSDir = own_server.tls_dir
    other_key = tls_dir.ca.issue_cert("localhost").private_key_pem.bytes()

    with caplog.at_level(logging.WARNING, logger="certs.reload"), Traffic(own_server) as traffic:
        tls_dir.cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n")
        assert own_server.tls.maybe_reload() is False
        traffic.wait_for(10)
        tls_dir.key.write_bytes(other_key)  # a real key, but not the certificate's
        assert own_server.tls.maybe_reload() is False
        traffic.wait_for(10)

    assert own_server.serial() == serving
    assert traffic.failures == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert all("not reloading the TLS certificate" in w for w in warnings)
    assert all("PRIVATE KEY" not in w for w in warnings)


# --------------------------------------------------------------------------- one write per step


def test_a_reply_is_not_held_back_by_the_work_its_endpoint_does_after_sending_it(
    shared_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The endpoint logs a review after sending its reply; the batched reply must leave
    # when it is complete, not when the endpoint's step ends.
    def slow_write(self: DecisionLog, fields: Mapping[str, Any]) -> None:
        time.sleep(1.0)  # blocks the server's loop, as a stuck log pipe would

    caplog.set_level(logging.INFO, logger=DECISION_LOGGER)
    data = review(pod("harbor.demo.local/library/nginx:1.27"), uid="not-held-uid")
    with shared_server.client() as client:
        client.get("/healthz")  # connected and warm
        monkeypatch.setattr(DecisionLog, "write", slow_write)
        started = time.monotonic()
        reply = client.post("/validate", content=json.dumps(data), headers=JSON_HEADERS)
        waited = time.monotonic() - started

    assert reply.json()["response"]["uid"] == "not-held-uid"
    assert waited < 0.5


def tls_exchange(server: RunningServer, first: bytes, then: bytes = b"") -> tuple[bytes, bytes]:
    """Send ``first``; what came back within 2 s; then send ``then``; the rest up to EOF."""
    context = server.tls_dir.client_context()
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        conn.sendall(first)
        early = b""
        if then:
            conn.settimeout(2)
            with contextlib.suppress(TimeoutError):
                early = conn.recv(65536)
            conn.settimeout(10)
            conn.sendall(then)
        rest = b""
        while chunk := conn.recv(65536):
            rest += chunk
    return early, rest


def test_an_expect_100_continue_client_is_told_to_go_on_before_it_sends_the_body(
    shared_server: RunningServer,
) -> None:
    body = json.dumps(DENIED).encode()
    head = (
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )

    early, rest = tls_exchange(shared_server, head, body)

    assert early == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"allowed":false' in rest


def test_a_connection_close_request_gets_its_whole_reply_before_the_close(
    shared_server: RunningServer,
) -> None:
    body = json.dumps(DENIED).encode()
    head = (
        b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )

    _, received = tls_exchange(shared_server, head + body)

    reply_head, _, reply_body = received.partition(b"\r\n\r\n")
    assert reply_head.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in reply_head.lower()
    assert json.loads(reply_body)["response"]["uid"] == DENIED["request"]["uid"]


# --------------------------------------------------------------------------- the process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """``serve(**kwargs)`` in a child Python; its stdout and stderr go to files."""

    def __init__(self, cwd: Path, **kwargs: Any) -> None:
        self.port = kwargs.setdefault("port", free_port())
        code = f"import sys\nfrom webhook.cli.serve import serve\nsys.exit(serve(**{kwargs!r}))\n"
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        self.out_file = cwd / "serve.out"
        self.err_file = cwd / "serve.err"
        with self.out_file.open("w") as out, self.err_file.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code], cwd=cwd, env=env, stdout=out, stderr=err
            )

    def wait_listening(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server did not start: {self.finish(signal.SIGKILL)}")

    def finish(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        if self.proc.poll() is None and sig:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        return code, self.out_file.read_text(), self.err_file.read_text()


def test_serve_with_defaults_creates_dev_certificates_and_prints_the_ca(tmp_path: Path) -> None:
    server = Process(tmp_path)
    server.wait_listening()
    ca = tmp_path / ".dev-certs" / "ca.crt"

    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca))) as client:
            http = client.post(
                f"https://localhost:{server.port}/validate",
                content=json.dumps(DENIED),
                headers=JSON_HEADERS,
            )
    finally:
        code, out, err = server.finish()

    assert http.json()["response"]["allowed"] is False
    assert str(ca) in out
    assert f"curl --cacert .dev-certs/ca.crt https://127.0.0.1:{server.port}/healthz" in out
    assert code == 0
    decisions = [json.loads(line) for line in err.splitlines() if "spacegate.decision" in line]
    assert [d["uid"] for d in decisions] == [DENIED["request"]["uid"]]
    # The server's own start line says what it serves: HTTPS, never uvicorn's "http://".
    started = [json.loads(line)["message"] for line in err.splitlines() if "serving HTTPS" in line]
    assert started == [f"serving HTTPS on https://127.0.0.1:{server.port}"]
    assert "http://" not in err


def test_decision_lines_reach_stderr_within_a_second_while_serving(tmp_path: Path) -> None:
    # Lines are batched while serving (webhook.admission.logs), but `kubectl logs -f` must still
    # show a decision about as soon as it is taken, not at the next restart.
    server = Process(tmp_path)
    server.wait_listening()
    ca = tmp_path / ".dev-certs" / "ca.crt"
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca))) as client:
            client.post(
                f"https://localhost:{server.port}/validate",
                content=json.dumps(DENIED),
                headers=JSON_HEADERS,
            )
        sent = time.monotonic()
        while DENIED["request"]["uid"] not in server.err_file.read_text():
            assert time.monotonic() - sent < 1.0, "no decision line on stderr after 1 s"
            time.sleep(0.02)
        running = server.proc.poll() is None
    finally:
        code, _, _ = server.finish()

    assert running
    assert code == 0


def test_sigterm_finishes_the_request_in_flight_then_exits_0(tmp_path: Path) -> None:
    server = Process(tmp_path)
    server.wait_listening()
    body = json.dumps(DENIED).encode()
    head = (
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    context = ssl.create_default_context(cafile=str(tmp_path / ".dev-certs" / "ca.crt"))

    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        conn.sendall(head + body[:100])  # the review is now in flight
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(OSError):  # no longer accepting
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        conn.sendall(body[100:])
        reply = b""
        while chunk := conn.recv(65536):  # ends when the server closes the connection
            reply += chunk

    code, _, err = server.finish()
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b'"allowed":false' in reply
    assert code == 0, err
    # Decided during the drain, so its line was still buffered when the stop began.
    decisions = [json.loads(line) for line in err.splitlines() if "spacegate.decision" in line]
    assert [d["uid"] for d in decisions] == [DENIED["request"]["uid"]]


def test_serve_reloads_rotated_files_on_its_own(tmp_path: Path) -> None:
    tls_dir = make_tls_dir(tmp_path / "secret")
    server = Process(
        tmp_path,
        tls_cert=str(tls_dir.cert),
        tls_key=str(tls_dir.key),
        watch_interval=0.1,
    )
    server.wait_listening()
    try:
        before = served_serial(server.port, tls_dir)
        after = tls_dir.issue()
        deadline = time.monotonic() + 10
        while served_serial(server.port, tls_dir) != after and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = served_serial(server.port, tls_dir)
    finally:
        code, _, err = server.finish()

    assert seen == after != before
    assert "TLS certificate reloaded" in err
    assert code == 0


def test_serve_refuses_an_unusable_config_with_status_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("policy:\n  mode: sometimes\n")

    code, _, err = Process(tmp_path, config=str(config)).finish(sig=0)

    assert code == 2
    assert "policy.mode" in err


def test_serve_refuses_a_missing_certificate_with_status_2(tmp_path: Path) -> None:
    code, _, err = Process(
        tmp_path, tls_cert=str(tmp_path / "nope.crt"), tls_key=str(tmp_path / "nope.key")
    ).finish(sig=0)

    assert code == 2
    assert "nope.crt" in err


def test_reloading_context_is_what_the_server_hands_out(own_server: RunningServer) -> None:
    assert isinstance(own_server.tls, ReloadingTLSContext)
    assert isinstance(own_server.server, AdmissionServer)
    assert own_server.server.tls is own_server.tls.context
    assert own_server.server.config.ssl is None  # TLS is started per connection, not by uvicorn


def test_serve_reports_a_busy_port_with_status_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        code, _, err = Process(tmp_path, port=port).finish(sig=0)

    assert code == 1
    assert "address already in use" in err
