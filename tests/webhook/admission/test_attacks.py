"""Attacks a tenant of workspace 101 can send through the apiserver, and the answers they get.

Each test is a Pod (or Namespace) a tenant of namespace ``team-a-dev`` (workspace 101) would
write to run workspace 102's private images (``harbor.demo.local/team-b``), or to blind or
stall the webhook, sent over real TLS to the admission server with the demo config.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
import pytest

from policy.config import NamespaceGuard
from policy.snapshot import Snapshot

from ..conftest import RunningServer, deployment, pod, review
from .replies import (
    JSON_HEADERS,
    TEAM_A_IMAGE,
    TEAM_B_IMAGE,
    mutate,
    patch_ops,
    validate,
)
from .test_endpoint import decisions_on  # noqa: F401 - a fixture

PUBLIC = "harbor.demo.local/library/nginx:1.27"
WS = "workspace.ghippo.io/id"


def with_image_volume(obj: dict[str, Any], reference: str, *, template: bool = False) -> None:
    spec = obj["spec"]["template"]["spec"] if template else obj["spec"]
    spec["volumes"] = [
        {"name": "cache", "emptyDir": {}},
        {"name": "models", "image": {"reference": reference, "pullPolicy": "IfNotPresent"}},
    ]


# --------------------------------------------------------------------------- image volumes


def test_a_pod_mounting_another_workspaces_image_as_a_volume_is_denied(
    client: httpx.Client,
) -> None:
    attack = pod(PUBLIC)
    with_image_volume(attack, TEAM_B_IMAGE)

    response = validate(client, review(attack))
    mutation = mutate(client, review(attack))

    assert response["allowed"] is False
    assert (
        f'volume "models" image "{TEAM_B_IMAGE}" is not allowed' in (response["status"]["message"])
    )
    assert patch_ops(mutation) == []  # no pull secret handed to the forbidden volume


def test_a_deployment_carrying_the_same_volume_is_denied_at_create(client: httpx.Client) -> None:
    attack = deployment(PUBLIC)
    with_image_volume(attack, TEAM_B_IMAGE, template=True)

    assert validate(client, review(attack))["allowed"] is False


def test_an_image_volume_from_an_unknown_registry_is_denied_under_unknown_registry_deny(
    server: RunningServer, client: httpx.Client, demo_snapshot: Snapshot
) -> None:
    policy = dataclasses.replace(demo_snapshot.policy, unknown_registry="deny")
    server.state.replace(
        Snapshot.from_config(dataclasses.replace(demo_snapshot.config, policy=policy))
    )
    attack = pod(PUBLIC)
    with_image_volume(attack, "evil.example.net/loot:1")

    assert validate(client, review(attack))["allowed"] is False


def test_refused_volumes_are_counted_apart_in_the_metrics(client: httpx.Client) -> None:
    def refused_volumes() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith('spacegate_refused_images_total{source="volume"}'):
                return float(line.split()[-1])
        return 0.0

    before = refused_volumes()
    attack = pod(PUBLIC)
    with_image_volume(attack, TEAM_B_IMAGE)
    validate(client, review(attack))

    assert refused_volumes() == before + 1


def test_an_allowed_private_image_volume_gets_the_pull_secret(client: httpx.Client) -> None:
    obj = pod(PUBLIC)
    with_image_volume(obj, TEAM_A_IMAGE)

    assert validate(client, review(obj))["allowed"] is True
    assert patch_ops(mutate(client, review(obj))) == [
        {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "registry-secret"}]}
    ]


# --------------------------------------------------------------------------- aliases and IDs


def test_the_registrys_default_port_does_not_make_it_an_unknown_registry(
    client: httpx.Client,
) -> None:
    response = validate(client, review(pod("harbor.demo.local:443/team-b/api:1.0")))

    assert response["allowed"] is False
    assert "private space 'team-b' of registry 'harbor'" in response["status"]["message"]


def test_a_bare_digest_that_would_run_a_cached_image_is_refused(client: httpx.Client) -> None:
    response = validate(client, review(pod("sha256:" + "7f" * 32)))

    assert response["allowed"] is False
    assert "ID of an image already on the node" in response["status"]["message"]


# --------------------------------------------------------------------------- size and cost


@pytest.mark.usefixtures("decisions_on")
def test_a_megabytes_long_image_is_denied_unparsed_with_a_short_answer_and_log_line(
    server: RunningServer, client: httpx.Client, demo_snapshot: Snapshot
) -> None:
    huge = "harbor.demo.local/library/" + "a" * 2_500_000
    sent = review(pod(huge), uid="huge-image-1")

    http = client.post("/validate", content=json.dumps(sent), headers=JSON_HEADERS)

    assert http.status_code == 200
    response = http.json()["response"]
    assert response["allowed"] is False
    assert "2500026 characters long" in response["status"]["message"]
    assert len(http.content) < 2_000
    [line] = server.decision_lines("huge-image-1")
    assert len(json.dumps(line)) < 3_000
    # nothing of it is kept: not in the verdicts, not in the decision memo
    kept = [*demo_snapshot.verdict_cache, *demo_snapshot.decision_cache]
    assert all(huge not in json.dumps(key, default=str) for key in kept)


def over_the_limit(uid: str, api_version: str = "admission.k8s.io/v1") -> bytes:
    """A review whose uid comes first, as the apiserver writes it, and 9 MB of object."""
    obj = pod(PUBLIC)
    obj["metadata"]["annotations"] = {"blob": "<" * (9 * 1024 * 1024)}
    return json.dumps(
        {
            "kind": "AdmissionReview",
            "apiVersion": api_version,
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE",
                "namespace": "team-a-dev",
                "object": obj,
            },
        }
    ).encode()


@pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_a_review_over_the_limit_is_still_answered_by_its_uid(
    client: httpx.Client, api_version: str
) -> None:
    body = over_the_limit("big-1", api_version)

    on_validate = client.post("/validate", content=body, headers=JSON_HEADERS)
    on_mutate = client.post("/mutate", content=body, headers=JSON_HEADERS)

    assert on_validate.status_code == on_mutate.status_code == 200
    validated = on_validate.json()
    assert validated["apiVersion"] == api_version
    assert validated["response"]["uid"] == "big-1"
    assert validated["response"]["allowed"] is False
    assert validated["response"]["status"]["code"] == 413
    assert "over spacegate's limit" in validated["response"]["status"]["message"]
    mutated = on_mutate.json()["response"]
    assert mutated["allowed"] is True
    assert "patch" not in mutated


def test_a_large_update_under_the_limit_is_decided_not_refused(client: httpx.Client) -> None:
    # object and oldObject of 3 MB each: more than the old 4 MiB cap, within what the
    # apiserver can send
    new, old = pod(PUBLIC, TEAM_B_IMAGE), pod(PUBLIC)
    for obj in (new, old):
        obj["metadata"]["annotations"] = {"blob": "x" * (3 * 1024 * 1024)}

    response = validate(client, review(new, operation="UPDATE", old_object=old))

    assert response["allowed"] is False
    assert TEAM_B_IMAGE in response["status"]["message"]


# --------------------------------------------------------------------------- namespace guard


def namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def namespace_review(
    obj: dict[str, Any], old: dict[str, Any] | None, user: str, groups: list[str]
) -> dict[str, Any]:
    sent = review(obj, namespace=None, operation="UPDATE" if old else "CREATE", old_object=old)
    sent["request"]["resource"]["resource"] = "namespaces"
    sent["request"]["userInfo"] = {"username": user, "groups": groups}
    return sent


@pytest.fixture
def guarded(server: RunningServer, demo_snapshot: Snapshot) -> None:
    policy = dataclasses.replace(demo_snapshot.policy, namespace_guard=NamespaceGuard(enabled=True))
    server.state.replace(
        Snapshot.from_config(dataclasses.replace(demo_snapshot.config, policy=policy))
    )


@pytest.mark.usefixtures("guarded")
def test_a_tenant_cannot_move_its_namespace_into_another_workspace(client: httpx.Client) -> None:
    sent = namespace_review(
        namespace("team-a-dev", {WS: "102"}),
        namespace("team-a-dev", {WS: "101"}),
        "alice",
        ["system:authenticated"],
    )

    response = validate(client, sent)
    mutation = mutate(client, sent)

    assert response["allowed"] is False
    assert response["status"]["message"] == (
        'namespace "team-a-dev": changing label workspace.ghippo.io/id from "101" to "102" '
        "is reserved by spacegate's namespace guard to groups system:masters; "
        'user "alice" is none of them'
    )
    assert mutation["allowed"] is True  # the mutating webhook never denies


@pytest.mark.usefixtures("guarded")
def test_a_cluster_admin_may_move_a_namespace(client: httpx.Client) -> None:
    sent = namespace_review(
        namespace("team-a-dev", {WS: "102"}),
        namespace("team-a-dev", {WS: "101"}),
        "kubernetes-admin",
        ["system:masters", "system:authenticated"],
    )
    assert validate(client, sent)["allowed"] is True


def subresource_review(sub_resource: str, labels: dict[str, str], user: str) -> dict[str, Any]:
    """An UPDATE of ``namespaces/<sub_resource>`` as the apiserver sends it: the object is the
    whole Namespace, ``namespace`` and ``name`` both name it (issue 15 finding 2)."""
    sent = namespace_review(
        namespace("team-a-dev", labels),
        namespace("team-a-dev", {WS: "101"}),
        user,
        ["system:authenticated"],
    )
    sent["request"]["subResource"] = sent["request"]["requestSubResource"] = sub_resource
    sent["request"]["namespace"] = sent["request"]["name"] = "team-a-dev"
    return sent


@pytest.mark.usefixtures("guarded")
@pytest.mark.parametrize("sub_resource", ["status", "finalize"])
def test_a_tenant_cannot_move_its_namespace_through_a_subresource(
    client: httpx.Client, sub_resource: str
) -> None:
    response = validate(client, subresource_review(sub_resource, {WS: "102"}, "alice"))

    assert response["allowed"] is False
    assert (
        'changing label workspace.ghippo.io/id from "101" to "102"'
        in (response["status"]["message"])
    )


@pytest.mark.usefixtures("guarded")
@pytest.mark.parametrize("sub_resource", ["status", "finalize"])
def test_the_namespace_controllers_subresource_writes_that_keep_the_labels_pass(
    client: httpx.Client, sub_resource: str
) -> None:
    sent = subresource_review(
        sub_resource, {WS: "101"}, "system:serviceaccount:kube-system:namespace-controller"
    )
    assert validate(client, sent)["allowed"] is True


def test_without_the_guard_namespaces_are_not_spacegates_business(client: httpx.Client) -> None:
    sent = namespace_review(namespace("new", {WS: "102"}), None, "alice", [])
    assert validate(client, sent)["allowed"] is True
