"""The admission endpoints on the wire: bad requests, body limits, deadlines, decision logs.

These run against the real server over TLS, because what they test is how requests arrive:
malformed bodies, a size cap enforced while the body streams in, bodies that stop arriving,
and the decision log line written after the reply. The decision matrix itself is in
``test_outcomes.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from policy.snapshot import Snapshot
from webhook.admission.logs import DECISION_LOGGER, JsonFormatter
from webhook.state import StaticState

from ..conftest import RunningServer, deployment, fixed_state, pod, review, run_server
from .replies import (
    ALLOWED_IMAGE,
    JSON_HEADERS,
    TEAM_A_IMAGE,
    TEAM_B_IMAGE,
    accepted,
    mutate,
    validate,
)

# --------------------------------------------------------------------------- bad input


def status_of(http: httpx.Response, code: int) -> str:
    """The message of a bare metav1.Status reply with HTTP ``code``."""
    assert http.status_code == code, http.text
    status = http.json()
    assert status["kind"] == "Status"
    assert status["code"] == code
    assert isinstance(status["message"], str)
    return status["message"]


@pytest.mark.parametrize("path", ["/validate", "/mutate"])
@pytest.mark.parametrize(
    ("headers", "content", "code", "words"),
    [
        ({"Content-Type": "text/plain"}, b"{}", 415, "expected application/json"),
        ({}, b"{}", 415, "missing Content-Type"),
        (JSON_HEADERS, b"", 400, "empty request body"),
        (JSON_HEADERS, b'{"apiVersion": ', 400, "not valid JSON"),
        (JSON_HEADERS, b"[]", 400, "is an array"),
        (
            JSON_HEADERS,
            b'{"apiVersion": "v1", "kind": "Pod"}',
            400,
            "expected kind AdmissionReview",
        ),
        (
            JSON_HEADERS,
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
            400,
            "request.uid is missing",
        ),
    ],
)
def test_unusable_requests_get_a_4xx_saying_what_is_wrong(
    client: httpx.Client,
    path: str,
    headers: dict[str, str],
    content: bytes,
    code: int,
    words: str,
) -> None:
    http = client.post(path, content=content, headers=headers)

    assert words in status_of(http, code)


def test_json_with_a_charset_parameter_is_accepted(client: httpx.Client) -> None:
    data = review(pod(ALLOWED_IMAGE))
    http = client.post(
        "/validate",
        content=json.dumps(data),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )

    assert accepted(data, http, mutating=False)["allowed"] is True


@pytest.mark.parametrize("obj", [None, "a string", [1, 2]])
def test_a_create_without_an_object_is_denied_on_validate_and_unpatched_on_mutate(
    client: httpx.Client, obj: Any
) -> None:
    data = review(pod(ALLOWED_IMAGE))
    data["request"]["object"] = obj

    on_validate = validate(client, data)
    on_mutate = mutate(client, data)

    assert on_validate["allowed"] is False
    assert on_validate["status"]["code"] == 400
    assert "request.object" in on_validate["status"]["message"]
    assert on_mutate["allowed"] is True
    assert "patch" not in on_mutate


def test_a_workload_without_a_pod_template_is_a_bad_request(client: httpx.Client) -> None:
    broken = deployment(ALLOWED_IMAGE)
    broken["spec"]["template"] = "oops"

    response = validate(client, review(broken))

    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert "spec.template" in response["status"]["message"]


def raw_exchange(server: RunningServer, head: bytes, body_parts: Iterator[bytes]) -> bytes:
    """Send a request by hand and read the reply *without finishing the body*.

    A server that buffered the whole body before answering would never reply here: the
    request is left incomplete, so the reply proves the cap is enforced as data arrives.
    """
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        context = server.tls_dir.client_context()
        with context.wrap_socket(raw, server_hostname="localhost") as conn:
            conn.sendall(head)
            for part in body_parts:
                conn.sendall(part)
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                reply += chunk
    return reply


def test_a_body_declared_over_the_size_cap_is_refused_after_its_first_bytes(
    server: RunningServer,
) -> None:
    head = (
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 104857600\r\n\r\n"
    )

    # no uid in the first bytes: nothing to answer as a review
    reply = raw_exchange(server, head, iter([b"{" + b" " * (64 * 1024)]))

    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"over spacegate's limit of" in reply


def test_a_streamed_body_over_the_size_cap_is_refused_while_it_arrives(
    server: RunningServer,
) -> None:
    head = (
        b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b" " * (256 * 1024)
    # 8 MiB + 256 KiB of chunks, and never the terminating zero-length chunk.
    parts = (b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(33))

    reply = raw_exchange(server, head, parts)

    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"over spacegate's limit of" in reply


def test_a_body_that_stops_arriving_is_refused_with_408_instead_of_waiting_forever(
    demo_snapshot: Snapshot, shared_server: RunningServer
) -> None:
    state = StaticState(demo_snapshot)
    settings = dataclasses.replace(fixed_state(state), body_timeout=0.3)
    head = (
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )

    with run_server(settings, shared_server.tls_dir, state) as slow:
        started = time.monotonic()
        reply = raw_exchange(slow, head, iter([b'{"apiVersion": "admission.k8s.io/v1"']))
        waited = time.monotonic() - started
        with slow.client() as client:  # and the server is fine afterwards
            assert validate(client, review(pod(ALLOWED_IMAGE)))["allowed"] is True

    assert reply.startswith(b"HTTP/1.1 408 ")
    assert b"not received within 0.3 s" in reply
    assert waited < 3


def test_a_client_sending_headers_and_then_nothing_is_refused_with_408(
    demo_snapshot: Snapshot, shared_server: RunningServer
) -> None:
    # The body deadline starts before the first read: a request whose body never starts
    # would otherwise hold its task (and its connection) forever.
    state = StaticState(demo_snapshot)
    settings = dataclasses.replace(fixed_state(state), body_timeout=0.3)
    head = (
        b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )

    with run_server(settings, shared_server.tls_dir, state) as slow:
        started = time.monotonic()
        reply = raw_exchange(slow, head, iter([]))
        waited = time.monotonic() - started

    assert reply.startswith(b"HTTP/1.1 408 ")
    assert b"not received within 0.3 s" in reply
    assert waited < 3


def test_a_large_but_legal_review_is_decided(client: httpx.Client) -> None:
    obj = pod(TEAM_B_IMAGE)
    obj["metadata"]["annotations"] = {"big": "x" * (3 * 1024 * 1024)}

    response = validate(client, review(obj, namespace="sandbox"))

    assert response["allowed"] is False


def test_the_server_still_answers_after_garbage(client: httpx.Client) -> None:
    client.post("/validate", content=b"\xff\xfe\x00garbage", headers=JSON_HEADERS)

    assert validate(client, review(pod(ALLOWED_IMAGE)))["allowed"] is True


def test_an_exception_inside_decide_becomes_a_logged_error_and_a_well_formed_reply(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_decide(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr("webhook.admission.outcomes.decide", broken_decide)
    data = review(pod(TEAM_A_IMAGE), uid="uid-of-the-failure")

    with caplog.at_level(logging.ERROR, logger="webhook.admission.endpoint"):
        on_validate = validate(client, data)
        on_mutate = mutate(client, data)

    assert on_validate["allowed"] is False
    assert on_validate["status"]["code"] == 500
    assert "uid-of-the-failure" in on_validate["status"]["message"]
    assert on_mutate == {"uid": "uid-of-the-failure", "allowed": True}
    errors = [r for r in caplog.records if r.name == "webhook.admission.endpoint"]
    assert errors
    assert errors[0].exc_info is not None
    assert "RuntimeError: boom" in JsonFormatter().format(errors[0])


def test_other_methods_and_paths_are_refused_plainly(client: httpx.Client) -> None:
    assert client.get("/validate").status_code == 405
    assert client.post("/nowhere", json={}).status_code == 404


def test_a_wrong_method_on_an_admission_path_is_told_to_use_post(client: httpx.Client) -> None:
    for path in ("/validate", "/mutate"):
        for method in ("GET", "PUT", "DELETE"):
            refused = client.request(method, path)
            assert refused.status_code == 405, (method, path)
            assert refused.headers["allow"] == "POST"


# --------------------------------------------------------------------------- logs, health, metrics


@pytest.fixture
def decisions_on(caplog: pytest.LogCaptureFixture) -> None:
    """Decision lines enabled, as ``spacegate serve`` configures logging (INFO)."""
    caplog.set_level(logging.INFO, logger=DECISION_LOGGER)


@pytest.mark.usefixtures("decisions_on")
def test_each_decision_is_one_json_log_line_without_the_object(server: RunningServer) -> None:
    data = review(pod(TEAM_B_IMAGE), namespace="sandbox", uid="log-uid", dry_run=True)
    data["request"]["object"]["metadata"]["annotations"] = {"token": "s3cr3t-value"}
    assert server.log is not None
    written_before = len(server.log.getvalue())

    with server.client() as client:
        validate(client, data)

    [entry] = server.decision_lines("log-uid")
    written = server.log.getvalue()[written_before:]
    assert written.count(b"\n") == 1
    assert b"s3cr3t-value" not in written
    assert list(entry)[:4] == ["time", "level", "logger", "message"]
    assert entry | {"duration_ms": 0, "time": ""} == entry | {
        "time": "",
        "level": "info",
        "logger": DECISION_LOGGER,
        "message": "admission decision",
        "uid": "log-uid",
        "endpoint": "validate",
        "namespace": "sandbox",
        "kind": "Pod",
        "name": "app",
        "operation": "CREATE",
        "allowed": False,
        "result": "denied",
        "dry_run": True,
        "mode": "enforce",
        "refused": 1,
        "patched": False,
        "workspace": None,
        "duration_ms": 0,
    }
    assert "team-b" in entry["reason"]
    assert isinstance(entry["duration_ms"], float)


@pytest.mark.usefixtures("decisions_on")
def test_decision_lines_name_the_patch_and_the_workspace_on_mutate(server: RunningServer) -> None:
    with server.client() as client:
        mutate(client, review(pod(TEAM_A_IMAGE), uid="mutate-log-uid"))

    [entry] = server.decision_lines("mutate-log-uid")
    assert entry["endpoint"] == "mutate"
    assert (entry["allowed"], entry["result"], entry["patched"]) == (True, "patched", True)
    assert entry["workspace"] == "101"
    assert "reason" not in entry


def test_decision_lines_are_silenced_by_raising_the_decision_loggers_level(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=DECISION_LOGGER)

    with server.client() as client:
        validate(client, review(pod(ALLOWED_IMAGE), uid="silenced-uid"))
        caplog.set_level(logging.INFO, logger=DECISION_LOGGER)
        validate(client, review(pod(ALLOWED_IMAGE), uid="heard-uid"))

    assert len(server.decision_lines("heard-uid")) == 1  # written after the silenced one
    assert server.decision_lines("silenced-uid", wait=False) == []


def test_without_a_log_sink_decisions_are_ordinary_log_records(
    demo_snapshot: Snapshot, shared_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    # What an app embedded in another process's logging setup gets (AppSettings.log_sink
    # left at None): the same line, produced by that process's own handlers.
    state = StaticState(demo_snapshot)
    data = review(pod(TEAM_B_IMAGE), namespace="sandbox", uid="record-uid")

    with (
        run_server(fixed_state(state), shared_server.tls_dir, state) as plain,
        plain.client() as client,
        caplog.at_level(logging.INFO, logger=DECISION_LOGGER),
    ):
        validate(client, data)

    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == DECISION_LOGGER]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert (entry["uid"], entry["allowed"], entry["refused"]) == ("record-uid", False, 1)
    assert entry["message"] == "admission decision"
