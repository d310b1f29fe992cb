"""The namespace guard holds on every path a namespace's labels can change, on the real apiserver.

A tenant allowed to write Namespaces (and their ``status`` and ``finalize`` subresources, as
some platform roles grant) tries to move its namespace into workspace 102 every way the
apiserver offers: an update, a JSON, merge and strategic-merge patch, a server-side apply,
an update or patch of ``namespaces/status``, an update of ``namespaces/finalize`` (the
apiserver keeps label changes made through both subresources), and deleting the namespace to
create it again with the other label. Each is refused by spacegate's guard webhook, rendered
by the chart with ``policy.namespaceGuard`` on, and the label stays. The same paths with an
unrelated label go through, which shows the paths are open to the tenant and persist labels:
the refusal is the guard's. A cluster admin may still move the namespace, and a namespace is
deleted while spacegate is down (the namespace controller's status and finalize writes keep
the labels, so the guard is not asked).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from kubernetes import config

from tests.support.controlplane.plane import ClientCertificate, ControlPlane
from tests.support.manifests import apply_manifests, delete_manifests
from tests.support.scenario import CONFIG, WS
from tests.support.spacegate import SpacegateProcess
from tests.support.waiting import eventually
from tests.support.webhooks import apply_webhooks, chart_webhooks, delete_webhooks

pytestmark = pytest.mark.e2e

GUARD = "namespaces.spacegate.io"
CONFIGURATION = "spacegate-namespace-guard-e2e"
GUARDED_CONFIG = CONFIG.replace(
    "  maxStaleness: 10m\n", "  maxStaleness: 10m\n  namespaceGuard: {enabled: true}\n"
)
TENANT = "tenant-admin"

# What a tenant with rights on Namespaces and both subresources may do; nothing more.
TENANT_RBAC: list[dict[str, Any]] = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "e2e-namespace-writer"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["namespaces", "namespaces/status", "namespaces/finalize"],
                "verbs": ["get", "list", "create", "update", "patch", "delete"],
            }
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "e2e-namespace-writer"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "e2e-namespace-writer",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}],
    },
]


@pytest.fixture(scope="module")
def guard(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SpacegateProcess]:
    """A spacegate with the guard on, behind the chart's guard webhook (failurePolicy Fail)."""
    process = SpacegateProcess(
        control_plane, tmp_path_factory.mktemp("guard"), config=GUARDED_CONFIG
    )
    process.start()
    values = {"config": {"policy": {"namespaceGuard": {"enabled": True}}}}
    [validating] = [
        obj
        for obj in chart_webhooks(process.url, process.ca_pem, values=values)
        if obj["kind"] == "ValidatingWebhookConfiguration"
    ]
    hooks = [hook for hook in validating["webhooks"] if hook["name"] == GUARD]
    assert hooks, "the chart renders no namespace guard webhook"
    configuration = {
        **validating,
        "metadata": {**validating["metadata"], "name": CONFIGURATION},
        "webhooks": hooks,
    }
    api_client = _admin_api(control_plane)
    apply_webhooks(api_client, [configuration])
    apply_manifests(control_plane, TENANT_RBAC)
    try:
        yield process
    finally:
        delete_webhooks(api_client, CONFIGURATION)
        delete_manifests(control_plane, TENANT_RBAC)
        api_client.close()
        process.stop()


def _admin_api(plane: ControlPlane) -> Any:
    return config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def tenant(control_plane: ControlPlane) -> ClientCertificate:
    return control_plane.mint_client_cert(TENANT, ["e2e-tenants"])


@pytest.fixture
def namespace(
    control_plane: ControlPlane, guard: SpacegateProcess, tenant: ClientCertificate
) -> Iterator[str]:
    """A namespace of workspace 101, made by the cluster admin; deleted afterwards."""
    name = f"guard-{uuid.uuid4().hex[:8]}"
    with control_plane.http_client() as admin:
        made = admin.post("/api/v1/namespaces", json=_namespace(name, {WS: "101"}))
        assert made.status_code == 201, made.text
    _wait_until_guarded(control_plane, tenant, name)
    yield name
    with control_plane.http_client() as admin:
        admin.delete(f"/api/v1/namespaces/{name}")


def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _wait_until_guarded(plane: ControlPlane, tenant: ClientCertificate, name: str) -> None:
    """The guard configuration is live: a dry-run relabel by the tenant is refused by it."""

    def refused() -> bool:
        with plane.http_client(tenant) as http:
            answer = http.patch(
                f"/api/v1/namespaces/{name}",
                params={"dryRun": "All"},
                content=json.dumps({"metadata": {"labels": {WS: "102"}}}),
                headers={"Content-Type": "application/merge-patch+json"},
            )
        return answer.status_code != 200 and GUARD in answer.text

    eventually(refused, "the namespace guard webhook to take effect")


def _message(answer: httpx.Response) -> str:
    """The apiserver's Status message of a refused write (its whole body otherwise)."""
    try:
        return str(answer.json().get("message", answer.text))
    except ValueError:
        return answer.text


def _labels(plane: ControlPlane, name: str) -> dict[str, str]:
    with plane.http_client() as admin:
        answer = admin.get(f"/api/v1/namespaces/{name}")
    answer.raise_for_status()
    labels: dict[str, str] = answer.json()["metadata"].get("labels") or {}
    return labels


def _read_modify(
    path: str, key: str, value: str | None
) -> Callable[[httpx.Client, str], httpx.Response]:
    """GET the Namespace, set (or remove) one label, PUT it back to ``path`` (a subresource or
    the object itself)."""

    def write(http: httpx.Client, name: str) -> httpx.Response:
        current = http.get(f"/api/v1/namespaces/{name}").json()
        labels = current["metadata"].setdefault("labels", {})
        if value is None:
            labels.pop(key, None)
        else:
            labels[key] = value
        return http.put(f"/api/v1/namespaces/{name}{path}", json=current)

    return write


def _patch(
    path: str, content_type: str, body: Callable[[str, str, str | None], Any], **params: str
) -> Callable[[str, str | None], Callable[[httpx.Client, str], httpx.Response]]:
    def with_label(key: str, value: str | None) -> Callable[[httpx.Client, str], httpx.Response]:
        def write(http: httpx.Client, name: str) -> httpx.Response:
            return http.patch(
                f"/api/v1/namespaces/{name}{path}",
                params=params,
                content=json.dumps(body(name, key, value)),
                headers={"Content-Type": content_type},
            )

        return write

    return with_label


def _merge(_name: str, key: str, value: str | None) -> Any:
    return {"metadata": {"labels": {key: value}}}


def _json_patch(_name: str, key: str, value: str | None) -> Any:
    pointer = "/metadata/labels/" + key.replace("~", "~0").replace("/", "~1")
    if value is None:
        return [{"op": "remove", "path": pointer}]
    return [{"op": "add", "path": pointer, "value": value}]


def _apply(name: str, key: str, value: str | None) -> Any:
    labels = {} if value is None else {key: value}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


MERGE = "application/merge-patch+json"
PATHS: dict[str, Callable[[str, str | None], Callable[[httpx.Client, str], httpx.Response]]] = {
    "update": lambda key, value: _read_modify("", key, value),
    "json patch": _patch("", "application/json-patch+json", _json_patch),
    "merge patch": _patch("", MERGE, _merge),
    "strategic merge patch": _patch("", "application/strategic-merge-patch+json", _merge),
    "server-side apply": _patch(
        "", "application/apply-patch+yaml", _apply, fieldManager="tenant", force="true"
    ),
    "status update": lambda key, value: _read_modify("/status", key, value),
    "status merge patch": _patch("/status", MERGE, _merge),
    "status json patch": _patch("/status", "application/json-patch+json", _json_patch),
    "finalize update": lambda key, value: _read_modify("/finalize", key, value),
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_tenant_cannot_move_its_namespace_into_another_workspace_by_any_write(
    control_plane: ControlPlane, tenant: ClientCertificate, namespace: str, path: str
) -> None:
    with control_plane.http_client(tenant) as http:
        answer = PATHS[path](WS, "102")(http, namespace)

    assert answer.status_code == 403, (path, answer.status_code, answer.text)
    message = _message(answer)
    assert message.startswith(f'admission webhook "{GUARD}" denied the request: namespace "')
    assert 'changing label workspace.ghippo.io/id from "101" to "102"' in message
    assert _labels(control_plane, namespace)[WS] == "101"


@pytest.mark.parametrize("path", ["update", "merge patch", "status merge patch", "finalize update"])
def test_a_tenant_cannot_take_its_namespace_out_of_its_workspace_either(
    control_plane: ControlPlane, tenant: ClientCertificate, namespace: str, path: str
) -> None:
    with control_plane.http_client(tenant) as http:
        answer = PATHS[path](WS, None)(http, namespace)

    assert GUARD in answer.text, (path, answer.status_code, answer.text)
    assert _labels(control_plane, namespace)[WS] == "101"


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_path_is_open_to_the_tenant_and_keeps_the_labels_it_writes(
    control_plane: ControlPlane, tenant: ClientCertificate, namespace: str, path: str
) -> None:
    # The control: an unguarded label goes through the same path and is stored, so the
    # refusals above are the guard's, and the subresources do persist label changes.
    labels = _labels(control_plane, namespace)
    note = f"n{uuid.uuid4().hex[:6]}"
    with control_plane.http_client(tenant) as http:
        if path == "server-side apply":  # apply owns the whole set it sends: keep the workspace
            answer = http.patch(
                f"/api/v1/namespaces/{namespace}",
                params={"fieldManager": "tenant", "force": "true"},
                content=json.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {"name": namespace, "labels": {WS: "101", "note": note}},
                    }
                ),
                headers={"Content-Type": "application/apply-patch+yaml"},
            )
        else:
            answer = PATHS[path]("note", note)(http, namespace)

    assert answer.status_code == 200, (path, answer.text)
    assert _labels(control_plane, namespace) == {**labels, "note": note}


def test_a_cluster_admin_may_move_a_namespace_through_the_status_subresource(
    control_plane: ControlPlane, namespace: str
) -> None:
    with control_plane.http_client() as admin:
        answer = PATHS["status merge patch"](WS, "102")(admin, namespace)

    assert answer.status_code == 200, answer.text
    assert _labels(control_plane, namespace)[WS] == "102"


def test_deleting_a_namespace_and_creating_it_again_in_another_workspace_is_refused(
    control_plane: ControlPlane, tenant: ClientCertificate, namespace: str
) -> None:
    with control_plane.http_client(tenant) as http:
        assert http.delete(f"/api/v1/namespaces/{namespace}").status_code == 200

        def gone() -> bool:
            return bool(http.get(f"/api/v1/namespaces/{namespace}").status_code == 404)

        eventually(gone, f"the namespace controller to remove {namespace}")
        again = http.post("/api/v1/namespaces", json=_namespace(namespace, {WS: "102"}))
        assert again.status_code == 403, again.text
        message = _message(again)
        assert message.startswith(f'admission webhook "{GUARD}" denied the request')
        assert 'setting label workspace.ghippo.io/id to "102"' in message

        # without the label (no workspace: public spaces only) it may
        bare = http.post("/api/v1/namespaces", json=_namespace(namespace, {}))
        assert bare.status_code == 201, bare.text


def test_while_spacegate_is_down_relabelling_fails_closed_and_deleting_still_works(
    control_plane: ControlPlane,
    tenant: ClientCertificate,
    guard: SpacegateProcess,
    namespace: str,
) -> None:
    guard.stop()
    try:
        with control_plane.http_client(tenant) as http:
            moved = PATHS["status merge patch"](WS, "102")(http, namespace)
            assert moved.status_code != 200 and GUARD in moved.text, moved.text

            # the namespace controller's status and finalize writes keep the labels, so the
            # guard is not asked: a namespace is deleted while spacegate is away
            assert http.delete(f"/api/v1/namespaces/{namespace}").status_code == 200

            def gone() -> bool:
                return bool(http.get(f"/api/v1/namespaces/{namespace}").status_code == 404)

            eventually(gone, f"the namespace controller to remove {namespace} without spacegate")
    finally:
        guard.start()
