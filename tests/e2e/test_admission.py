"""The real kube-apiserver calls spacegate: what users of the cluster see.

spacegate runs as a local process (live mode on the control plane's namespaces), and the
apiserver calls it through the webhook configurations the chart renders in out-of-cluster
mode. Namespaces of workspace 101 may use ``team-a`` (bound) and public spaces, not
``team-b`` (bound to 102).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import Api, pod
from tests.support.namespaces import create_namespace
from tests.support.scenario import CONFIG, MODE, PUBLIC, TEAM_A, TEAM_B, WS
from tests.support.spacegate import SpacegateProcess
from tests.support.waiting import eventually
from tests.support.webhooks import denial

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("webhooks")]


@pytest.fixture
def core(api_client: client.ApiClient) -> Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client: client.ApiClient) -> Api:
    return client.AppsV1Api(api_client)


@pytest.fixture
def team_a(api_client: client.ApiClient, spacegate: SpacegateProcess) -> str:
    """A fresh namespace of workspace 101, known to spacegate."""
    name = create_namespace(api_client, {WS: "101"})
    eventually(lambda: _admits(api_client, name, TEAM_A), f"spacegate to see {name}")
    return name


def _admits(api_client: client.ApiClient, namespace: str, image: str) -> bool:
    core: Api = client.CoreV1Api(api_client)
    try:
        core.create_namespaced_pod(namespace, pod("probe", image), dry_run="All")
    except ApiException:
        return False
    return True


def _secrets(stored: Any) -> list[str]:
    return [s.name for s in stored.spec.image_pull_secrets or []]


# --------------------------------------------------------------------------- pods


def test_a_pod_using_another_workspaces_private_space_is_rejected_with_spacegates_message(
    core: Api, team_a: str
) -> None:
    message = denial(lambda: core.create_namespaced_pod(team_a, pod("steal", TEAM_B)))

    assert 'admission webhook \\"validate.spacegate.io\\" denied the request' in message
    assert (
        f'container \\"c0\\" image \\"{TEAM_B}\\" is not allowed in namespace {team_a}' in message
    )
    assert "bind space 'team-b' to workspace 101" in message


def test_a_public_image_is_admitted_without_a_pull_secret(core: Api, team_a: str) -> None:
    stored = core.create_namespaced_pod(team_a, pod("web", PUBLIC))

    assert _secrets(stored) == []


def test_an_allowed_private_image_gets_the_pull_secret_and_existing_ones_are_kept(
    core: Api, team_a: str
) -> None:
    plain = core.create_namespaced_pod(team_a, pod("plain", TEAM_A))
    kept = core.create_namespaced_pod(team_a, pod("kept", TEAM_A, pull_secrets=["mine"]))
    already = core.create_namespaced_pod(
        team_a, pod("already", TEAM_A, pull_secrets=["registry-secret", "mine"])
    )

    assert _secrets(plain) == ["registry-secret"]
    assert _secrets(kept) == ["mine", "registry-secret"]
    assert _secrets(already) == ["registry-secret", "mine"]  # never duplicated


def test_an_image_volume_from_another_workspace_is_rejected(core: Api, team_a: str) -> None:
    attack = pod("volume", PUBLIC)
    attack["spec"]["volumes"] = [{"name": "loot", "image": {"reference": TEAM_B}}]

    message = denial(lambda: core.create_namespaced_pod(team_a, attack))

    assert f'volume \\"loot\\" image \\"{TEAM_B}\\" is not allowed' in message


# --------------------------------------------------------------------------- workloads


def _deployment(name: str, image: str, replicas: int = 2) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def test_a_deployment_with_a_refused_image_is_rejected_at_create(apps: Api, team_a: str) -> None:
    message = denial(lambda: apps.create_namespaced_deployment(team_a, _deployment("x", TEAM_B)))

    assert "validate.spacegate.io" in message
    assert TEAM_B in message


def test_every_pod_the_controllers_create_for_an_allowed_deployment_gets_the_pull_secret(
    apps: Api, core: Api, team_a: str
) -> None:
    apps.create_namespaced_deployment(team_a, _deployment("web", TEAM_A, replicas=3))

    pods = eventually(
        lambda: (
            (items := core.list_namespaced_pod(team_a, label_selector="app=web").items)
            and len(items) == 3
            and items
        ),
        "the ReplicaSet controller to create 3 pods",
    )

    assert all(_secrets(p) == ["registry-secret"] for p in pods)
    # The workload itself is never mutated (GitOps tools would report drift).
    stored = apps.read_namespaced_deployment("web", team_a)
    assert stored.spec.template.spec.image_pull_secrets is None


# --------------------------------------------------------------------------- dry run, warn, update


def test_a_server_side_dry_run_gets_the_same_answer_and_stores_nothing(
    core: Api, team_a: str
) -> None:
    refused = denial(lambda: core.create_namespaced_pod(team_a, pod("dry", TEAM_B), dry_run="All"))
    admitted = core.create_namespaced_pod(team_a, pod("dry-ok", TEAM_A), dry_run="All")

    assert TEAM_B in refused
    assert _secrets(admitted) == ["registry-secret"]  # the patch is applied to the dry run too
    assert core.list_namespaced_pod(team_a).items == []


def test_warn_mode_admits_and_returns_warning_headers_to_the_client(
    api_client: client.ApiClient, control_plane: ControlPlane
) -> None:
    namespace = create_namespace(api_client, {WS: "101", MODE: "warn"})

    def create() -> Any:
        with control_plane.http_client() as http:
            return http.post(
                f"/api/v1/namespaces/{namespace}/pods",
                json=pod(f"warned-{time.monotonic_ns()}", TEAM_B),
                params={"dryRun": "All"},
            )

    response = eventually(
        lambda: (r := create()).status_code == 201 and r.headers.get("warning") and r,
        "spacegate to see the namespace in warn mode",
    )

    warning = response.headers["warning"]
    assert warning.startswith('299 - "spacegate:')
    assert TEAM_B in warning


def test_a_label_only_update_of_a_workload_whose_space_was_unbound_is_admitted(
    apps: Api,
    core: Api,
    spacegate: SpacegateProcess,
    team_a: str,
) -> None:
    apps.create_namespaced_deployment(team_a, _deployment("legacy", TEAM_A, replicas=1))
    unbound = CONFIG.replace('  - {registry: harbor, space: team-a, workspaces: ["101"]}\n', "")
    spacegate.write_config(unbound)
    try:
        eventually(
            lambda: "team-a" in _maybe_denial(core, team_a, TEAM_A), "the unbinding to apply"
        )

        patched = apps.patch_namespaced_deployment(
            "legacy", team_a, {"metadata": {"labels": {"touched": "yes"}}}
        )

        assert patched.metadata.labels == {"touched": "yes"}
        # ...while a new image from the unbound space is refused.
        change = {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "app", "image": TEAM_A.replace("1.2", "1.3")}]}
                }
            }
        }
        assert "team-a" in denial(
            lambda: apps.patch_namespaced_deployment("legacy", team_a, change)
        )
    finally:
        spacegate.write_config(CONFIG)
        eventually(lambda: _maybe_denial(core, team_a, TEAM_A) == "", "the binding to return")


def _maybe_denial(core: Api, namespace: str, image: str) -> str:
    try:
        core.create_namespaced_pod(namespace, pod("probe", image), dry_run="All")
    except ApiException as exc:
        return str(exc.body)
    return ""
