"""The admission endpoints over real TLS, as the apiserver (and a curious user) meets them.

Every reply is checked against the apiserver's own acceptance rules
(``VerifyAdmissionResponse``, docs/protocol.md §2) by :func:`accepted`; patches
are applied with a real JSON-patch library and the result validated against the
Kubernetes schemas, because a patch that does not apply is a 500 for the user even with
``failurePolicy: Ignore``.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import kubernetes_validate
import pytest
from prometheus_client import CollectorRegistry, Counter

from policy.config import PolicySettings
from policy.snapshot import NamespaceInfo, Snapshot
from tests.conftest import EXAMPLES
from webhook.admission.app import AppSettings
from webhook.admission.logs import DECISION_LOGGER, JsonFormatter
from webhook.admission.metrics import Metrics
from webhook.state import StaticState

from ..conftest import V1, RunningServer, deployment, fixed_state, pod, review, run_server

JSON_HEADERS = {"Content-Type": "application/json"}
K8S_VERSION = kubernetes_validate.utils.latest_version()

ALLOWED_IMAGE = "harbor.demo.local/library/nginx:1.27"  # public space
TEAM_A_IMAGE = "harbor.demo.local/team-a/web:1.2"  # private, bound to workspace 101
TEAM_B_IMAGE = "harbor.demo.local/team-b/api:1.0"  # private, bound to workspace 102


def post(client: httpx.Client, path: str, data: Any, **kwargs: Any) -> httpx.Response:
    return client.post(path, content=json.dumps(data), headers=JSON_HEADERS, **kwargs)


def accepted(sent: dict[str, Any], http: httpx.Response, *, mutating: bool) -> dict[str, Any]:
    """The reply's ``response`` after the checks the apiserver makes; fails otherwise."""
    assert http.status_code == 200, http.text
    assert http.headers["content-type"] == "application/json"
    body = http.json()
    assert body["apiVersion"] == sent["apiVersion"]
    assert body["kind"] == "AdmissionReview"
    response = body["response"]
    assert response["uid"] == sent["request"]["uid"]
    assert isinstance(response["allowed"], bool)
    if mutating:
        assert ("patch" in response) == ("patchType" in response)
        if "patch" in response:
            assert response["patchType"] == "JSONPatch"
            assert response["patch"]
    else:
        assert response.get("patch") is None
        assert response.get("patchType") is None
    if not response["allowed"]:
        assert response["status"]["code"] >= 400
        assert response["status"]["message"]
    for warning in response.get("warnings", []):
        assert warning.isprintable()
    for key in response.get("auditAnnotations", {}):
        assert "/" not in key
    return dict(response)


def validate(client: httpx.Client, data: dict[str, Any]) -> dict[str, Any]:
    return accepted(data, post(client, "/validate", data), mutating=False)


def mutate(client: httpx.Client, data: dict[str, Any]) -> dict[str, Any]:
    return accepted(data, post(client, "/mutate", data), mutating=True)


def patch_ops(response: dict[str, Any]) -> list[dict[str, Any]]:
    if "patch" not in response:
        return []
    ops = json.loads(base64.b64decode(response["patch"], validate=True))
    assert isinstance(ops, list)
    return ops


def patched(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    result = jsonpatch.JsonPatch(patch_ops(response)).apply(copy.deepcopy(obj))
    assert isinstance(result, dict)
    return result


def with_policy(snapshot: Snapshot, **changes: Any) -> Snapshot:
    policy = dataclasses.replace(snapshot.policy, **changes)
    return Snapshot.from_config(dataclasses.replace(snapshot.config, policy=policy))


# --------------------------------------------------------------------------- decisions


def test_a_pod_from_a_public_space_is_allowed_anywhere(client: httpx.Client) -> None:
    response = validate(client, review(pod(ALLOWED_IMAGE), namespace="sandbox"))

    assert response == {"uid": response["uid"], "allowed": True}


def test_a_pod_using_another_workspaces_private_space_is_denied_with_the_reason(
    client: httpx.Client,
) -> None:
    response = validate(client, review(pod(ALLOWED_IMAGE, TEAM_B_IMAGE), namespace="team-a-dev"))

    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["reason"] == "Forbidden"
    message = response["status"]["message"]
    assert TEAM_B_IMAGE in message
    assert "team-a-dev" in message
    assert "workspace 101" in message
    assert response["auditAnnotations"]["decision"] == "denied"


def test_a_deployment_is_checked_through_its_pod_template(client: httpx.Client) -> None:
    allowed = validate(client, review(deployment(TEAM_B_IMAGE), namespace="team-b-dev"))
    denied = validate(client, review(deployment(TEAM_B_IMAGE), namespace="sandbox"))

    assert allowed["allowed"] is True
    assert denied["allowed"] is False
    assert "sandbox" in denied["status"]["message"]


def test_a_cronjob_is_checked_through_its_job_template(client: httpx.Client) -> None:
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {"spec": {"template": {"spec": pod(TEAM_A_IMAGE)["spec"]}}},
        },
    }

    assert validate(client, review(cronjob, namespace="team-b-dev"))["allowed"] is False


def test_warn_mode_admits_with_a_warning_per_refused_container(
    server: RunningServer, client: httpx.Client
) -> None:
    server.state.replace(with_policy(server.state.snapshot, mode="warn"))

    response = validate(client, review(pod(TEAM_B_IMAGE, ALLOWED_IMAGE), namespace="sandbox"))

    assert response["allowed"] is True
    assert len(response["warnings"]) == 1
    assert TEAM_B_IMAGE in response["warnings"][0]
    assert response["auditAnnotations"]["decision"] == "warned"


def test_audit_mode_admits_silently_and_records_audit_annotations(
    server: RunningServer, client: httpx.Client
) -> None:
    server.state.replace(with_policy(server.state.snapshot, mode="audit"))

    response = validate(client, review(pod(TEAM_B_IMAGE), namespace="sandbox"))

    assert response["allowed"] is True
    assert "warnings" not in response
    assert response["auditAnnotations"]["decision"] == "audited"
    assert TEAM_B_IMAGE in response["auditAnnotations"]["refused"]


def test_a_namespace_mode_label_overrides_the_policy_mode(
    server: RunningServer, client: httpx.Client
) -> None:
    snapshot = server.state.snapshot
    server.state.replace(
        Snapshot.build(
            snapshot.config, namespaces={"sandbox": NamespaceInfo(workspace=None, mode="warn")}
        )
    )

    response = validate(client, review(pod(TEAM_B_IMAGE), namespace="sandbox"))

    assert response["allowed"] is True
    assert response["warnings"]


def test_an_exempt_namespace_is_admitted_untouched(client: httpx.Client) -> None:
    data = review(pod(TEAM_B_IMAGE, "not a valid image"), namespace="kube-system")

    assert validate(client, data) == {"uid": data["request"]["uid"], "allowed": True}
    assert "patch" not in mutate(client, data)


def test_an_unparseable_image_is_denied_quoting_the_parser(client: httpx.Client) -> None:
    response = validate(client, review(pod("Nginx:latest"), namespace="sandbox"))

    assert response["allowed"] is False
    assert "must be lowercase" in response["status"]["message"]


def test_a_dry_run_request_gets_the_same_answer_and_changes_nothing(
    server: RunningServer, client: httpx.Client
) -> None:
    before = server.state.snapshot
    real = review(pod(TEAM_A_IMAGE, TEAM_B_IMAGE), namespace="team-a-dev")
    dry = review(pod(TEAM_A_IMAGE, TEAM_B_IMAGE), namespace="team-a-dev", dry_run=True)
    pull = review(pod(TEAM_A_IMAGE), namespace="team-a-dev")
    pull_dry = review(pod(TEAM_A_IMAGE), namespace="team-a-dev", dry_run=True)

    assert validate(client, dry) == validate(client, real)
    assert mutate(client, pull_dry) == mutate(client, pull)
    assert server.state.snapshot is before
    assert server.state.snapshot.version == before.version


def test_the_timeout_query_string_of_the_apiserver_is_ignored(client: httpx.Client) -> None:
    data = review(pod(ALLOWED_IMAGE))

    response = accepted(data, post(client, "/validate?timeout=10s", data), mutating=False)

    assert response["allowed"] is True


def test_a_v1beta1_review_is_answered_in_v1beta1(client: httpx.Client) -> None:
    data = review(pod(TEAM_B_IMAGE), namespace="sandbox", api_version="admission.k8s.io/v1beta1")

    response = validate(client, data)  # accepted() checks the echoed apiVersion

    assert response["allowed"] is False


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_delete_and_connect_are_allowed_without_a_patch(
    client: httpx.Client, operation: str
) -> None:
    data = review(None, operation=operation, old_object=pod(TEAM_B_IMAGE), namespace="sandbox")

    assert validate(client, data)["allowed"] is True
    assert "patch" not in mutate(client, data)


def test_kinds_that_run_no_pods_are_allowed(client: httpx.Client) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}}

    assert validate(client, review(config_map, namespace="sandbox"))["allowed"] is True


def test_a_pod_status_update_is_never_refused(client: httpx.Client) -> None:
    data = review(pod(TEAM_B_IMAGE), namespace="sandbox", operation="UPDATE", sub_resource="status")

    assert validate(client, data)["allowed"] is True


def test_kubectl_debug_with_a_forbidden_image_is_denied_and_not_patched(
    client: httpx.Client,
) -> None:
    obj = pod(ALLOWED_IMAGE)
    obj["spec"]["ephemeralContainers"] = [{"name": "debug", "image": TEAM_B_IMAGE}]
    data = review(obj, namespace="sandbox", operation="UPDATE", sub_resource="ephemeralcontainers")

    assert validate(client, data)["allowed"] is False
    assert "patch" not in mutate(client, data)


def test_an_update_that_keeps_its_images_is_admitted_even_after_an_unbinding(
    client: httpx.Client,
) -> None:
    # team-b's image runs in sandbox (admitted before a binding was removed, say); a label
    # change, a finalizer removal or a scale-down must not be refused for it.
    old = pod(TEAM_B_IMAGE)
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"touched": "yes"}
    data = review(new, namespace="sandbox", operation="UPDATE", old_object=old)

    assert validate(client, data)["allowed"] is True


def test_an_update_that_introduces_a_refused_image_is_denied(client: httpx.Client) -> None:
    old = pod(ALLOWED_IMAGE)
    new = pod(TEAM_B_IMAGE)
    data = review(new, namespace="sandbox", operation="UPDATE", old_object=old)

    response = validate(client, data)
    assert response["allowed"] is False
    assert TEAM_B_IMAGE in response["status"]["message"]


def test_kubectl_debug_on_a_pod_with_old_images_checks_only_the_debug_image(
    client: httpx.Client,
) -> None:
    old = pod(TEAM_B_IMAGE)
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [{"name": "debug", "image": ALLOWED_IMAGE}]
    data = review(
        new, namespace="sandbox", operation="UPDATE", sub_resource="ephemeralcontainers",
        old_object=old,
    )

    assert validate(client, data)["allowed"] is True


# --------------------------------------------------------------------------- mutation


def schema_valid(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_a_pod_from_a_private_space_gets_the_pull_secret_list(client: httpx.Client) -> None:
    obj = pod(TEAM_A_IMAGE)

    result = patched(obj, mutate(client, review(obj, namespace="team-a-dev")))

    assert result["spec"]["imagePullSecrets"] == [{"name": "registry-secret"}]
    schema_valid(result)


def test_existing_pull_secrets_are_kept_and_ours_appended(client: httpx.Client) -> None:
    obj = pod(TEAM_A_IMAGE, pull_secrets=[{"name": "private-registry"}])

    result = patched(obj, mutate(client, review(obj, namespace="team-a-dev")))

    assert result["spec"]["imagePullSecrets"] == [
        {"name": "private-registry"},
        {"name": "registry-secret"},
    ]
    schema_valid(result)


def test_a_null_pull_secret_list_is_replaced_by_ours(client: httpx.Client) -> None:
    obj = pod(TEAM_A_IMAGE, pull_secrets=None)
    obj["spec"]["imagePullSecrets"] = None

    result = patched(obj, mutate(client, review(obj, namespace="team-a-dev")))

    assert result["spec"]["imagePullSecrets"] == [{"name": "registry-secret"}]


def test_mutation_is_idempotent_when_reinvoked(client: httpx.Client) -> None:
    obj = pod(TEAM_A_IMAGE)
    once = patched(obj, mutate(client, review(obj, namespace="team-a-dev")))

    again = mutate(client, review(once, namespace="team-a-dev"))

    assert "patch" not in again
    assert again["allowed"] is True


def test_mutate_admits_a_refused_pod_without_patch_and_leaves_the_verdict_to_validate(
    client: httpx.Client,
) -> None:
    data = review(pod(TEAM_A_IMAGE, TEAM_B_IMAGE), namespace="team-a-dev")

    assert mutate(client, data) == {"uid": data["request"]["uid"], "allowed": True}


def test_workloads_and_pod_updates_are_never_mutated(client: httpx.Client) -> None:
    deploy = review(deployment(TEAM_A_IMAGE), namespace="team-a-dev")
    update = review(pod(TEAM_A_IMAGE), namespace="team-a-dev", operation="UPDATE")

    assert "patch" not in mutate(client, deploy)
    assert "patch" not in mutate(client, update)


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
        (JSON_HEADERS, b"{\"apiVersion\": ", 400, "not valid JSON"),
        (JSON_HEADERS, b"[]", 400, "is an array"),
        (JSON_HEADERS, b'{"apiVersion": "v1", "kind": "Pod"}', 400, "expected kind AdmissionReview"),
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


def test_healthz_and_readyz_answer_ok_when_a_snapshot_is_loaded(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


class StaleState(StaticState):
    def readiness(self, *, staleness: bool = True) -> tuple[bool, str]:
        if not staleness:
            return True, "snapshot loaded (staleness not checked)"
        return False, "stale data: registry 'harbor' is 15m old"

    def age_seconds(self) -> float:
        return 900.0


def test_readyz_is_503_with_the_states_reason_and_metrics_show_the_age(
    tmp_path: Path, demo_snapshot: Snapshot, shared_server: RunningServer
) -> None:
    state = StaleState(demo_snapshot)
    with run_server(fixed_state(state), shared_server.tls_dir, state) as stale, stale.client() as c:
        ready = c.get("/readyz")
        metrics = c.get("/metrics").text

    assert ready.status_code == 503
    assert ready.json()["reason"] == "stale data: registry 'harbor' is 15m old"
    assert "spacegate_snapshot_age_seconds 900.0" in metrics
    assert "spacegate_ready 0.0" in metrics


def test_readyz_can_exclude_the_staleness_check_for_kubernetes_probes(
    demo_snapshot: Snapshot, shared_server: RunningServer
) -> None:
    state = StaleState(demo_snapshot)
    with run_server(fixed_state(state), shared_server.tls_dir, state) as stale, stale.client() as c:
        probe = c.get("/readyz?exclude=staleness")
        typo = c.get("/readyz?exclude=stalness")
    assert probe.status_code == 200
    assert probe.json()["ready"] is True
    assert typo.status_code == 400
    assert "unknown readiness check(s) ['stalness']" in typo.json()["reason"]


def sample(metrics: str, prefix: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_reviews_by_endpoint_kind_operation_and_result(
    server: RunningServer, client: httpx.Client
) -> None:
    series = (
        'spacegate_admission_requests_total{endpoint="validate",kind="Deployment",'
        'operation="CREATE",result="denied"}'
    )
    before = sample(client.get("/metrics").text, series)

    validate(client, review(deployment(TEAM_B_IMAGE), namespace="sandbox"))
    post(client, "/validate", review({"kind": "Made-Up"}, kind="Made-Up"))
    metrics = client.get("/metrics")

    assert metrics.headers["content-type"].startswith("text/plain")
    assert sample(metrics.text, series) == before + 1
    assert 'kind="other"' in metrics.text
    assert "Made-Up" not in metrics.text
    assert "spacegate_admission_duration_seconds_bucket" in metrics.text
    assert f"spacegate_snapshot_version {float(server.state.snapshot.version)}" in metrics.text
    assert "spacegate_snapshot_age_seconds 0.0" in metrics.text


def test_the_duration_histogram_counts_each_review_in_every_bucket_from_its_duration_up() -> None:
    metrics = Metrics()
    for seconds in (0.0004, 0.0005, 0.003, 7.0):
        metrics.observe("mutate", "Pod", "CREATE", "patched", seconds)
    metrics.observe("mutate", "Made-Up", "CREATE", "invalid", 0.0001)

    text = metrics.render(None).decode()

    def bucket(le: str) -> float:
        return sample(text, f'spacegate_admission_duration_seconds_bucket{{endpoint="mutate",le="{le}"}}')

    assert (bucket("0.0005"), bucket("0.0025"), bucket("0.005"), bucket("2.5")) == (3, 3, 4, 4)
    assert bucket("+Inf") == 5
    assert sample(text, 'spacegate_admission_duration_seconds_count{endpoint="mutate"}') == 5
    assert sample(text, 'spacegate_admission_duration_seconds_sum{endpoint="mutate"}') == (
        pytest.approx(7.004)
    )
    patched = (
        'spacegate_admission_requests_total{endpoint="mutate",kind="Pod",operation="CREATE",'
        'result="patched"}'
    )
    assert sample(text, patched) == 4
    assert 'kind="other",operation="CREATE",result="invalid"} 1.0' in text
    assert "spacegate_admission_requests_created{" in text
    assert "# TYPE spacegate_admission_duration_seconds histogram" in text


def test_each_app_has_its_own_metrics(
    demo_snapshot: Snapshot, shared_server: RunningServer, client: httpx.Client
) -> None:
    validate(client, review(pod(ALLOWED_IMAGE)))
    state = StaticState(demo_snapshot)
    with run_server(fixed_state(state), shared_server.tls_dir, state) as fresh, fresh.client() as c:
        metrics = c.get("/metrics").text

    assert "spacegate_admission_requests_total{" not in metrics


# --------------------------------------------------------------------------- captured reviews


def captured_reviews(testdata: Path) -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for file in sorted((testdata / "admission").glob("*.json")):
        data = json.loads(file.read_text())
        if "request" not in data:  # request-only fixtures: wrap them as the apiserver would
            data = {"apiVersion": V1, "kind": "AdmissionReview", "request": data}
        data.pop("response", None)
        cases.append((file.name, data))
    return cases


def test_captured_reviews_from_real_clusters_get_replies_the_apiserver_accepts(
    shared_testdata: Path, client: httpx.Client
) -> None:
    cases = captured_reviews(shared_testdata)
    assert len(cases) >= 10

    for name, data in cases:
        on_validate = validate(client, data)
        on_mutate = mutate(client, data)
        obj = data["request"].get("object")
        if "patch" in on_mutate:
            assert isinstance(obj, dict), name
            result = patched(obj, on_mutate)
            assert {"name": "registry-secret"} in result["spec"]["imagePullSecrets"], name
        if data["request"].get("operation") == "DELETE":
            assert on_validate["allowed"] is True, name
            assert "patch" not in on_mutate, name


def test_captured_pods_in_an_unbound_namespace_are_judged_by_their_images(
    shared_testdata: Path, server: RunningServer, client: httpx.Client
) -> None:
    # Derived from fixture 03 (kubectl Pod with nginx + alpine from Docker Hub): Docker Hub
    # is not a declared registry, and the demo policy allows unknown registries; with
    # unknownRegistry: deny the same review is refused, naming both images.
    data = dict(captured_reviews(shared_testdata))["03_kubewarden-kwctl_pod-create_kubectl_managedFields.json"]
    assert validate(client, data)["allowed"] is True

    server.state.replace(with_policy(server.state.snapshot, unknown_registry="deny"))
    response = validate(client, data)

    assert response["allowed"] is False
    assert "nginx" in response["status"]["message"]
    assert "alpine" in response["status"]["message"]


def test_the_v1beta1_capture_is_answered_in_v1beta1(
    shared_testdata: Path, client: httpx.Client
) -> None:
    data = dict(captured_reviews(shared_testdata))["05_linkerd2_deployment-create_v1beta1.json"]

    assert post(client, "/validate", data).json()["apiVersion"] == "admission.k8s.io/v1beta1"


def test_policy_settings_used_by_the_tests_exist() -> None:
    # Guards the dataclasses.replace() calls above against a renamed field.
    fields = {f.name for f in dataclasses.fields(PolicySettings)}
    assert {"mode", "unknown_registry"} <= fields


# --------------------------------------------------------------------------- examples


EXAMPLE_REVIEWS = EXAMPLES / "reviews"


def example(name: str) -> dict[str, Any]:
    data = json.loads((EXAMPLE_REVIEWS / name).read_text())
    assert isinstance(data, dict)
    return data


def test_the_example_reviews_get_the_answers_their_names_promise(client: httpx.Client) -> None:
    assert validate(client, example("pod-allowed.json"))["allowed"] is True
    assert validate(client, example("pod-denied.json"))["allowed"] is False
    assert validate(client, example("deployment-denied.json"))["allowed"] is False
    needs_secret = example("pod-pull-secret.json")
    assert validate(client, needs_secret)["allowed"] is True
    result = patched(needs_secret["request"]["object"], mutate(client, needs_secret))
    assert result["spec"]["imagePullSecrets"] == [{"name": "registry-secret"}]
    schema_valid(result)


def test_the_log_time_is_iso_8601_utc_with_milliseconds() -> None:
    record = logging.LogRecord("x", logging.INFO, "", 0, "m", (), None)
    record.created = 1_800_000_000.25

    assert json.loads(JsonFormatter().format(record))["time"] == "2027-01-15T08:00:00.250Z"


class LiveLikeState(StaticState):
    """A state that keeps refresh metrics in a registry of its own, like the refresher."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot)
        self.metrics_registry = CollectorRegistry()
        failures = Counter(
            "spacegate_refresh_failures", "x", ["registry"], registry=self.metrics_registry
        )
        failures.labels("harbor").inc(3)


def test_metrics_include_the_refreshers_metrics_and_the_certificate_expiry(
    demo_snapshot: Snapshot, shared_server: RunningServer
) -> None:
    state = LiveLikeState(demo_snapshot)
    settings = fixed_state(state)
    settings = AppSettings(state=settings.state, tls_not_after=lambda: 1_900_000_000.0)
    with run_server(settings, shared_server.tls_dir, state) as live, live.client() as c:
        metrics = c.get("/metrics").text
    assert 'spacegate_refresh_failures_total{registry="harbor"} 3.0' in metrics
    assert "spacegate_tls_certificate_expiry_timestamp_seconds 1.9e+09" in metrics
    assert "spacegate_admission_requests_total" in metrics
