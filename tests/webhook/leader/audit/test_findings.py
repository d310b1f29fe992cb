"""What the audit judges: every workload and Pod, each once, owners standing for what they own.

``audit`` is fed objects as the apiserver lists them (owners first); ``list_objects`` is
checked against the Kubernetes fake for that order and for reading every kind.
"""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

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
from webhook.leader.audit.findings import KINDS, Finding, _Owners, audit, list_objects, refused


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


# --------------------------------------------------------------------------- what runs


def refused_names(findings: list[Finding]) -> list[str]:
    return [f"{f.resource.kind}/{f.resource.name}" for f in findings if refused(f)]


def with_spec(obj: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {**obj, "spec": {**obj["spec"], **spec}}


def test_a_pod_with_a_forged_owner_reference_is_judged_itself() -> None:
    # b-dev: team-a is refused. The forger points its Pod at a Deployment it can see.
    mask = deployment("mask", PUBLIC)
    forged = pod("forged", mask, ALLOWED, kind="Deployment")
    findings = judged(("Deployment", "b-dev", mask), ("Pod", "b-dev", forged))
    assert names(findings) == ["Deployment/mask", "Pod/forged"]
    assert refused_names(findings) == ["Pod/forged"]


def test_an_owner_in_another_namespace_stands_for_nothing_here() -> None:
    # The same images are allowed in a-dev (workspace 101) and refused in b-dev (102).
    web = deployment("web", ALLOWED)
    rs = replicaset("web-1", web, ALLOWED)
    findings = judged(
        ("Deployment", "a-dev", web),
        ("ReplicaSet", "a-dev", rs),
        ("Pod", "b-dev", pod("forged", rs, ALLOWED)),
    )
    assert names(findings) == ["Deployment/web", "Pod/forged"]
    assert refused_names(findings) == ["Pod/forged"]


def test_the_pods_of_an_on_delete_statefulset_still_running_the_old_template_are_judged() -> None:
    db = deployment("db", PUBLIC)  # a StatefulSet whose template is now public
    old = pod("db-0", db, ALLOWED, kind="StatefulSet")  # not replaced (OnDelete)
    new = pod("db-1", db, PUBLIC, kind="StatefulSet")
    findings = judged(("StatefulSet", "b-dev", db), ("Pod", "b-dev", old), ("Pod", "b-dev", new))
    assert names(findings) == ["StatefulSet/db", "Pod/db-0"]
    assert refused_names(findings) == ["Pod/db-0"]


def test_the_replicaset_of_a_paused_deployment_whose_template_moved_on_is_judged() -> None:
    frozen = deployment("frozen", PUBLIC)  # paused, then switched to a public image
    rs = replicaset("frozen-1", frozen, ALLOWED)  # never rolled: still the refused image
    findings = judged(
        ("Deployment", "b-dev", frozen),
        ("ReplicaSet", "b-dev", rs),
        *(("Pod", "b-dev", pod(f"frozen-1-{i}", rs, ALLOWED)) for i in range(3)),
    )
    # its Pods run exactly its template: they are its row
    assert names(findings) == ["Deployment/frozen", "ReplicaSet/frozen-1"]
    assert refused_names(findings) == ["ReplicaSet/frozen-1"]


def test_a_pod_that_pulls_anything_its_template_does_not_is_judged_itself() -> None:
    web = deployment("web", PUBLIC)
    rs = replicaset("web-1", web, PUBLIC)
    debugged = pod("web-1-a", rs, PUBLIC)
    debugged["spec"]["ephemeralContainers"] = [{"name": "debug", "image": ALLOWED}]
    volume = pod("web-1-b", rs, PUBLIC)
    volume["spec"]["volumes"] = [{"name": "data", "image": {"reference": ALLOWED}}]
    findings = judged(
        ("Deployment", "b-dev", web),
        ("ReplicaSet", "b-dev", rs),
        ("Pod", "b-dev", debugged),
        ("Pod", "b-dev", volume),
        ("Pod", "b-dev", pod("web-1-c", rs, PUBLIC)),
    )
    assert names(findings) == ["Deployment/web", "Pod/web-1-a", "Pod/web-1-b"]
    assert refused_names(findings) == ["Pod/web-1-a", "Pod/web-1-b"]


def test_a_pod_running_some_of_its_templates_images_is_folded() -> None:
    web = deployment("web", ALLOWED, PUBLIC)
    rs = replicaset("web-1", web, ALLOWED, PUBLIC)
    findings = judged(
        ("Deployment", "a-dev", web),
        ("ReplicaSet", "a-dev", rs),
        ("Pod", "a-dev", pod("web-1-a", rs, PUBLIC)),
    )
    assert names(findings) == ["Deployment/web"]


def test_an_old_revision_scaled_to_zero_runs_nothing_and_covers_nothing() -> None:
    web = deployment("web", PUBLIC)
    old = with_spec(replicaset("web-0", web, ALLOWED), replicas=0)
    current = replicaset("web-1", web, PUBLIC)
    findings = judged(
        ("Deployment", "b-dev", web),
        ("ReplicaSet", "b-dev", old),
        ("ReplicaSet", "b-dev", current),
        ("Pod", "b-dev", pod("web-0-a", old, ALLOWED)),  # still terminating, or forged
    )
    assert names(findings) == ["Deployment/web", "Pod/web-0-a"]
    assert refused_names(findings) == ["Pod/web-0-a"]


def test_a_standalone_replicaset_scaled_to_zero_is_still_judged() -> None:
    idle = with_spec(replicaset("idle", None, ALLOWED), replicas=0)
    assert names(judged(("ReplicaSet", "b-dev", idle))) == ["ReplicaSet/idle"]


def test_the_audit_remembers_one_image_set_per_owner_never_the_objects() -> None:
    owners = _Owners()
    for i in range(1_000):
        owners.add(f"u{i}", "a-dev", frozenset({PUBLIC, ALLOWED}))
    sets = {id(t.images) for t in owners._by_uid.values()}
    assert len(owners._by_uid) == 1_000 and len(sets) == 1  # equal sets are shared
    listed = [("Pod", "v1", pod(f"p{i}", None, PUBLIC)) for i in range(100)]
    for _, _, obj in listed:
        obj["metadata"]["namespace"] = "a-dev"
    with patch.object(_Owners, "add") as add:
        assert len(list(audit(SNAPSHOT, iter(listed)))) == 100
    add.assert_not_called()  # Pods own nothing: never remembered


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
