"""What the audit judges: every workload and Pod, each once, owners standing for what they own.

``audit`` is fed objects as the apiserver lists them (owners first); ``list_objects`` is
checked against the Kubernetes fake for that order and for reading every kind.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.fakes.kubernetes import FakeKubernetes
from tests.webhook.leader.audit.conftest import (
    ALLOWED,
    DEPLOYMENTS,
    PODS,
    PUBLIC,
    REPLICASETS,
    SNAPSHOT,
    deployment,
    pod,
    pod_spec,
    replicaset,
)
from webhook.leader.audit.findings import KINDS, Finding, audit, list_objects, refused


def judged(*objects: tuple[str, str, dict[str, Any]]) -> list[Finding]:
    """The findings for (kind, namespace, object), listed in this order."""
    listed = [
        (kind, "v1", {**obj, "metadata": {**obj["metadata"], "namespace": namespace}})
        for kind, namespace, obj in objects
    ]
    return list(audit(SNAPSHOT, iter(listed)))


def names(findings: list[Finding]) -> list[str]:
    return [f"{f.resource.kind}/{f.resource.name}" for f in findings]


def test_a_deployment_stands_for_its_replicasets_and_pods() -> None:
    web = deployment("web", ALLOWED)
    rs = replicaset("web-1", web, ALLOWED)
    findings = judged(
        ("Deployment", "a-dev", web),
        ("ReplicaSet", "a-dev", rs),
        *(("Pod", "a-dev", pod(f"web-1-{i}", rs, ALLOWED)) for i in range(3)),
    )
    assert names(findings) == ["Deployment/web"]
    [finding] = findings
    assert finding.decision is not None and finding.decision.allowed and not refused(finding)


def test_pods_of_no_owner_or_of_an_owner_the_audit_does_not_read_are_judged_themselves() -> None:
    rollout = {"metadata": {"name": "canary", "uid": "u-rollout"}}
    findings = judged(
        ("Pod", "a-dev", pod("debug", None, PUBLIC)),
        ("Pod", "a-dev", pod("canary-1", rollout, PUBLIC, kind="Rollout")),
    )
    assert names(findings) == ["Pod/debug", "Pod/canary-1"]


def test_an_owned_object_whose_owner_was_not_listed_is_judged_itself() -> None:
    gone = deployment("gone", ALLOWED)  # deleted between the two lists
    findings = judged(("ReplicaSet", "a-dev", replicaset("gone-1", gone, ALLOWED)))
    assert names(findings) == ["ReplicaSet/gone-1"]


def test_refused_images_are_found_whatever_the_namespaces_mode() -> None:
    findings = judged(
        ("Deployment", "b-dev", deployment("api", ALLOWED, PUBLIC)),  # team-a not bound to 102
        ("Deployment", "a-dev", deployment("api", ALLOWED, PUBLIC)),
    )
    assert [refused(f) for f in findings] == [True, False]
    decision = findings[0].decision
    assert decision is not None
    assert [c.refused for c in decision.containers] == [True, False]


def test_a_workload_without_a_usable_pod_spec_is_a_finding_with_its_error() -> None:
    broken = {"metadata": {"name": "odd", "uid": "u-odd"}, "spec": {"template": "nope"}}
    [finding] = judged(("Deployment", "a-dev", broken))
    assert finding.decision is None and finding.error is not None
    assert "must be an object" in finding.error


def test_every_kind_is_listed_from_the_apiserver_owners_first_page_by_page(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    kube.create_namespace("a-dev")
    kube.create_namespace("b-dev")
    kube.create_object(PODS, "a-dev", pod("debug", None, PUBLIC))
    web = kube.create_object(DEPLOYMENTS, "a-dev", deployment("web", ALLOWED))
    kube.create_object(REPLICASETS, "a-dev", replicaset("web-1", web, ALLOWED))
    kube.create_object(PODS, "b-dev", {"metadata": {"name": "other"}, "spec": pod_spec(PUBLIC)})

    listed = list(list_objects(api, page_size=1))

    assert [(kind, obj["metadata"]["name"]) for kind, _, obj in listed] == [
        ("Deployment", "web"),
        ("ReplicaSet", "web-1"),
        ("Pod", "debug"),
        ("Pod", "other"),
    ]
    paths = {r.path for r in kube.requests}
    assert paths == {f"{prefix}/{plural}" for prefix, plural, _, _ in KINDS}
    assert any("continue" in r.params for r in kube.requests)  # one object a page
    only_b = list(list_objects(api, "b-dev"))
    assert [obj["metadata"]["name"] for _, _, obj in only_b] == ["other"]
