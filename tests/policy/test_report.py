"""Policy reports for running workloads: the shape Policy Reporter and kubectl read."""

from __future__ import annotations

from typing import Any

import pytest

from policy.config import load_config
from policy.decision import decide
from policy.report import Resource, build_report, report_digest
from policy.snapshot import NamespaceInfo, Snapshot

SNAP = Snapshot.build(
    load_config(
        """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: library, public: true}, {name: team-a, public: false},
             {name: team-b, public: false}]
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
"""
    ),
    namespaces={"a-dev": NamespaceInfo("101")},
)
WEB = Resource("apps/v1", "Deployment", "a-dev", "web", "5a1d7c3e-0000-4e8a-b6c9-1d3f5e7a9b2c")


def report_for(*images: str) -> dict[str, Any]:
    spec = {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}
    decision = decide(SNAP, "a-dev", spec, pointer="/spec/template/spec", kind="Deployment")
    return build_report(WEB, decision, timestamp=1_800_000_000)


def test_a_report_is_named_by_spacegates_prefix_and_the_uid_owned_by_it_and_labelled_ours() -> None:
    report = report_for("harbor.example.com/team-a/web:1")

    assert report["apiVersion"] == "wgpolicyk8s.io/v1alpha2"
    assert report["kind"] == "PolicyReport"
    metadata = report["metadata"]
    # not the bare UID: Kyverno and Kubewarden name their reports of this resource so
    assert metadata["name"] == f"spacegate-{WEB.uid}" and metadata["namespace"] == "a-dev"
    assert metadata["labels"] == {"app.kubernetes.io/managed-by": "spacegate"}
    assert metadata["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": WEB.uid}
    ]
    assert report["scope"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": "a-dev",
        "name": "web",
        "uid": WEB.uid,
    }


def test_each_image_is_one_result_with_the_denial_text_and_its_properties() -> None:
    report = report_for("harbor.example.com/team-a/web:1", "harbor.example.com/team-b/api:1")

    allowed, refused = report["results"]
    assert allowed["result"] == "pass" and refused["result"] == "fail"
    assert refused["source"] == "spacegate"
    assert refused["policy"] == "registry-space-visibility"
    assert refused["rule"] == "private-space-binding"
    assert refused["message"].startswith(
        'container "c1" image "harbor.example.com/team-b/api:1" is not allowed in namespace '
        "a-dev (workspace 101): private space 'team-b' of registry 'harbor' is not bound"
    )
    assert refused["properties"] == {
        "image": "harbor.example.com/team-b/api:1",
        "source": "container",
        "name": "c1",
        "workspace": "101",
        "registry": "harbor",
        "space": "team-b",
    }
    assert report["summary"] == {"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0}


@pytest.mark.parametrize(
    ("image", "rule"),
    [
        ("Bad Image", "valid-reference"),
        ("sha256:" + "a" * 64, "no-local-image-id"),
        ("harbor.example.com/nope/x:1", "known-space"),
    ],
)
def test_each_kind_of_refusal_has_its_own_rule(image: str, rule: str) -> None:
    [result] = report_for(image)["results"]
    assert (result["rule"], result["result"]) == (rule, "fail")


def test_the_rule_follows_the_verdict_not_words_in_registry_names() -> None:
    snap = Snapshot.from_config(
        load_config(
            """
registries:
  - name: integrated-by-workspace-7-has-no-space
    type: harbor
    url: https://one.example.com
    spaces: [{name: team, public: false}]
namespaces: {a-dev: "101"}
"""
        )
    )
    decision = decide(
        snap, "a-dev", {"containers": [{"name": "c", "image": "one.example.com/team/x:1"}]}
    )
    [result] = build_report(WEB, decision, timestamp=1)["results"]
    assert (result["rule"], result["result"]) == ("private-space-binding", "fail")


def test_a_spelling_the_pull_secret_does_not_carry_has_its_own_rule() -> None:
    [result] = report_for("HARBOR.example.com/team-a/web:1")["results"]
    assert (result["rule"], result["result"]) == ("pull-secret-host", "fail")


def test_the_openreports_switch_writes_the_same_content_as_an_openreports_report() -> None:
    decision = decide(SNAP, "a-dev", {"containers": [{"name": "c", "image": "nginx"}]})
    report = build_report(WEB, decision, timestamp=1, report_format="openreports")
    assert (report["apiVersion"], report["kind"], report["source"]) == (
        "openreports.io/v1alpha1",
        "Report",
        "spacegate",
    )


def test_reports_differing_only_in_their_timestamps_are_the_same() -> None:
    decision = decide(SNAP, "a-dev", {"containers": [{"name": "c", "image": "nginx"}]})
    first = build_report(WEB, decision, timestamp=1)
    later = build_report(WEB, decision, timestamp=2)
    other = report_for("harbor.example.com/team-b/api:1")
    assert report_digest(first) == report_digest(later)
    assert report_digest(first) != report_digest(other)


def test_a_report_a_tenant_mangled_still_has_a_digest_and_it_differs() -> None:
    decision = decide(SNAP, "a-dev", {"containers": [{"name": "c", "image": "nginx"}]})
    report = build_report(WEB, decision, timestamp=1)
    for mangled in ({**report, "results": 5}, {**report, "results": ["x", None]}, {}):
        assert report_digest(mangled) != report_digest(report)
