"""What each review is answered: the decision matrix, through the app in this process.

Each test sends an AdmissionReview as the apiserver would and checks the reply with the
apiserver's own acceptance rules (``replies.accepted``); the app is called in process
(``httpx.ASGITransport``), since deciding needs no sockets. What happens on the wire
(TLS, body limits, deadlines) is tested in ``test_endpoint.py`` and ``test_server_tls.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from policy.config import PolicySettings
from policy.snapshot import NamespaceInfo, Snapshot
from tests.conftest import EXAMPLES

from ..conftest import V1, RunningServer, deployment, pod, review
from .replies import (
    ALLOWED_IMAGE,
    TEAM_A_IMAGE,
    TEAM_B_IMAGE,
    Client,
    InProcessClient,
    accepted,
    mutate,
    patched,
    post,
    validate,
    with_policy,
)

K8S_VERSION = kubernetes_validate.utils.latest_version()


@pytest.fixture
def client(app_client: InProcessClient) -> InProcessClient:
    """The demo-state app, called in process."""
    return app_client


# --------------------------------------------------------------------------- decisions


def test_a_pod_from_a_public_space_is_allowed_anywhere(client: Client) -> None:
    response = validate(client, review(pod(ALLOWED_IMAGE), namespace="sandbox"))

    assert response == {"uid": response["uid"], "allowed": True}


def test_a_pod_using_another_workspaces_private_space_is_denied_with_the_reason(
    client: Client,
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


def test_a_deployment_is_checked_through_its_pod_template(client: Client) -> None:
    allowed = validate(client, review(deployment(TEAM_B_IMAGE), namespace="team-b-dev"))
    denied = validate(client, review(deployment(TEAM_B_IMAGE), namespace="sandbox"))

    assert allowed["allowed"] is True
    assert denied["allowed"] is False
    assert "sandbox" in denied["status"]["message"]


def test_a_cronjob_is_checked_through_its_job_template(client: Client) -> None:
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
    server: RunningServer, client: Client
) -> None:
    server.state.replace(with_policy(server.state.snapshot, mode="warn"))

    response = validate(client, review(pod(TEAM_B_IMAGE, ALLOWED_IMAGE), namespace="sandbox"))

    assert response["allowed"] is True
    assert len(response["warnings"]) == 1
    assert TEAM_B_IMAGE in response["warnings"][0]
    assert response["auditAnnotations"]["decision"] == "warned"


def test_audit_mode_admits_silently_and_records_audit_annotations(
    server: RunningServer, client: Client
) -> None:
    server.state.replace(with_policy(server.state.snapshot, mode="audit"))

    response = validate(client, review(pod(TEAM_B_IMAGE), namespace="sandbox"))

    assert response["allowed"] is True
    assert "warnings" not in response
    assert response["auditAnnotations"]["decision"] == "audited"
    assert TEAM_B_IMAGE in response["auditAnnotations"]["refused"]


def test_a_namespace_mode_label_overrides_the_policy_mode(
    server: RunningServer, client: Client
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


def test_an_exempt_namespace_is_admitted_untouched(client: Client) -> None:
    data = review(pod(TEAM_B_IMAGE, "not a valid image"), namespace="kube-system")

    assert validate(client, data) == {"uid": data["request"]["uid"], "allowed": True}
    assert "patch" not in mutate(client, data)


def test_an_unparseable_image_is_denied_quoting_the_parser(client: Client) -> None:
    response = validate(client, review(pod("Nginx:latest"), namespace="sandbox"))

    assert response["allowed"] is False
    assert "must be lowercase" in response["status"]["message"]


def test_a_dry_run_request_gets_the_same_answer_and_changes_nothing(
    server: RunningServer, client: Client
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


def test_the_timeout_query_string_of_the_apiserver_is_ignored(client: Client) -> None:
    data = review(pod(ALLOWED_IMAGE))

    response = accepted(data, post(client, "/validate?timeout=10s", data), mutating=False)

    assert response["allowed"] is True


def test_a_v1beta1_review_is_answered_in_v1beta1(client: Client) -> None:
    data = review(pod(TEAM_B_IMAGE), namespace="sandbox", api_version="admission.k8s.io/v1beta1")

    response = validate(client, data)  # accepted() checks the echoed apiVersion

    assert response["allowed"] is False


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_delete_and_connect_are_allowed_without_a_patch(client: Client, operation: str) -> None:
    data = review(None, operation=operation, old_object=pod(TEAM_B_IMAGE), namespace="sandbox")

    assert validate(client, data)["allowed"] is True
    assert "patch" not in mutate(client, data)


def test_kinds_that_run_no_pods_are_allowed(client: Client) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}}

    assert validate(client, review(config_map, namespace="sandbox"))["allowed"] is True


def test_a_pod_status_update_is_never_refused(client: Client) -> None:
    data = review(pod(TEAM_B_IMAGE), namespace="sandbox", operation="UPDATE", sub_resource="status")

    assert validate(client, data)["allowed"] is True


def test_kubectl_debug_with_a_forbidden_image_is_denied_and_not_patched(
    client: Client,
) -> None:
    obj = pod(ALLOWED_IMAGE)
    obj["spec"]["ephemeralContainers"] = [{"name": "debug", "image": TEAM_B_IMAGE}]
    data = review(obj, namespace="sandbox", operation="UPDATE", sub_resource="ephemeralcontainers")

    assert validate(client, data)["allowed"] is False
    assert "patch" not in mutate(client, data)


def test_an_update_that_keeps_its_images_is_admitted_even_after_an_unbinding(
    client: Client,
) -> None:
    # team-b's image runs in sandbox (admitted before a binding was removed, say); a label
    # change, a finalizer removal or a scale-down must not be refused for it.
    old = pod(TEAM_B_IMAGE)
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"touched": "yes"}
    data = review(new, namespace="sandbox", operation="UPDATE", old_object=old)

    assert validate(client, data)["allowed"] is True


def test_an_update_that_introduces_a_refused_image_is_denied(client: Client) -> None:
    old = pod(ALLOWED_IMAGE)
    new = pod(TEAM_B_IMAGE)
    data = review(new, namespace="sandbox", operation="UPDATE", old_object=old)

    response = validate(client, data)
    assert response["allowed"] is False
    assert TEAM_B_IMAGE in response["status"]["message"]


def test_kubectl_debug_on_a_pod_with_old_images_checks_only_the_debug_image(
    client: Client,
) -> None:
    old = pod(TEAM_B_IMAGE)
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [{"name": "debug", "image": ALLOWED_IMAGE}]
    data = review(
        new,
        namespace="sandbox",
        operation="UPDATE",
        sub_resource="ephemeralcontainers",
        old_object=old,
    )

    assert validate(client, data)["allowed"] is True


# --------------------------------------------------------------------------- mutation


def schema_valid(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_a_pod_from_a_private_space_gets_the_pull_secret_list(client: Client) -> None:
    obj = pod(TEAM_A_IMAGE)

    result = patched(obj, mutate(client, review(obj, namespace="team-a-dev")))

    assert result["spec"]["imagePullSecrets"] == [{"name": "registry-secret"}]
    schema_valid(result)


def test_existing_pull_secrets_are_kept_and_ours_appended(client: Client) -> None:
    obj = pod(TEAM_A_IMAGE, pull_secrets=[{"name": "private-registry"}])

    result = patched(obj, mutate(client, review(obj, namespace="team-a-dev")))

    assert result["spec"]["imagePullSecrets"] == [
        {"name": "private-registry"},
        {"name": "registry-secret"},
    ]
    schema_valid(result)


def test_a_null_pull_secret_list_is_replaced_by_ours(client: Client) -> None:
    obj = pod(TEAM_A_IMAGE, pull_secrets=None)
    obj["spec"]["imagePullSecrets"] = None

    result = patched(obj, mutate(client, review(obj, namespace="team-a-dev")))

    assert result["spec"]["imagePullSecrets"] == [{"name": "registry-secret"}]


def test_mutation_is_idempotent_when_reinvoked(client: Client) -> None:
    obj = pod(TEAM_A_IMAGE)
    once = patched(obj, mutate(client, review(obj, namespace="team-a-dev")))

    again = mutate(client, review(once, namespace="team-a-dev"))

    assert "patch" not in again
    assert again["allowed"] is True


def test_mutate_admits_a_refused_pod_without_patch_and_leaves_the_verdict_to_validate(
    client: Client,
) -> None:
    data = review(pod(TEAM_A_IMAGE, TEAM_B_IMAGE), namespace="team-a-dev")

    assert mutate(client, data) == {"uid": data["request"]["uid"], "allowed": True}


def test_workloads_and_pod_updates_are_never_mutated(client: Client) -> None:
    deploy = review(deployment(TEAM_A_IMAGE), namespace="team-a-dev")
    update = review(pod(TEAM_A_IMAGE), namespace="team-a-dev", operation="UPDATE")

    assert "patch" not in mutate(client, deploy)
    assert "patch" not in mutate(client, update)


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
    shared_testdata: Path, client: Client
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
    shared_testdata: Path, server: RunningServer, client: Client
) -> None:
    # Derived from fixture 03 (kubectl Pod with nginx + alpine from Docker Hub): Docker Hub
    # is not a declared registry, and the demo policy allows unknown registries; with
    # unknownRegistry: deny the same review is refused, naming both images.
    data = dict(captured_reviews(shared_testdata))[
        "03_kubewarden-kwctl_pod-create_kubectl_managedFields.json"
    ]
    assert validate(client, data)["allowed"] is True

    server.state.replace(with_policy(server.state.snapshot, unknown_registry="deny"))
    response = validate(client, data)

    assert response["allowed"] is False
    assert "nginx" in response["status"]["message"]
    assert "alpine" in response["status"]["message"]


def test_the_v1beta1_capture_is_answered_in_v1beta1(shared_testdata: Path, client: Client) -> None:
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


def test_the_example_reviews_get_the_answers_their_names_promise(client: Client) -> None:
    assert validate(client, example("pod-allowed.json"))["allowed"] is True
    assert validate(client, example("pod-denied.json"))["allowed"] is False
    assert validate(client, example("deployment-denied.json"))["allowed"] is False
    needs_secret = example("pod-pull-secret.json")
    assert validate(client, needs_secret)["allowed"] is True
    result = patched(needs_secret["request"]["object"], mutate(client, needs_secret))
    assert result["spec"]["imagePullSecrets"] == [{"name": "registry-secret"}]
    schema_valid(result)
