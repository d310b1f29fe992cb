"""The impact index: which running workloads depend on which binding, counted and bounded."""

from __future__ import annotations

import json

from policy.bindings import BindingObject
from policy.config import load_config
from policy.decision import Decision, decide
from policy.impact import (
    MAX_EXAMPLES,
    ImpactIndex,
    IndexBuilder,
    WorkspaceUse,
    bound_spaces,
    fitted,
    index_document,
    read_index,
)
from policy.snapshot import NamespaceInfo, Snapshot

CONFIG = load_config(
    """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: lib, public: true}, {name: team-a, public: false}, {name: team-b, public: false}]
  - name: own
    type: harbor
    url: https://own.example.com
    workspace: "101"
    spaces: [{name: secret, public: false}]
bindings: [{registry: harbor, space: team-b, workspaces: ["101"]}]
"""
)
SNAPSHOT = Snapshot.build(
    CONFIG,
    namespaces={"dev": NamespaceInfo("101"), "loose": NamespaceInfo()},
    binding_objects={"a": BindingObject("a", "harbor", "team-a", ("101",))},
)


def decision(namespace: str, *images: str) -> Decision:
    spec = {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}
    return decide(SNAPSHOT, namespace, spec)


def test_only_images_admitted_because_their_private_space_is_bound_count() -> None:
    found = bound_spaces(
        SNAPSHOT,
        decision(
            "dev",
            "harbor.example.com/team-a/web:1",  # bound by an object
            "harbor.example.com/team-b/api:1",  # bound by the config
            "harbor.example.com/lib/nginx:1",  # public: no binding needed
            "own.example.com/secret/x:1",  # the workspace's own registry
            "quay.io/other/thing:1",  # not ours
        ),
    )
    assert found == {("harbor", "team-a"), ("harbor", "team-b")}
    assert bound_spaces(SNAPSHOT, decision("loose", "harbor.example.com/team-a/web:1")) == set()


def test_the_builder_counts_workloads_and_keeps_a_handful_of_names() -> None:
    builder = IndexBuilder()
    for i in range(8):
        builder.add(SNAPSHOT, decision("dev", "harbor.example.com/team-a/web:1"), f"dev/Pod/p{i}")
    index = builder.build("2025-01-01T00:00:00Z", 1_735_689_600.0, 600.0)
    use = index.use("harbor", "team-a", "101")
    assert use is not None and use.count == 8 and len(use.examples) == MAX_EXAMPLES
    assert index.use("harbor", "team-a", "102") == WorkspaceUse(0)  # complete: none


def test_an_index_cut_short_does_not_claim_that_missing_entries_are_zero() -> None:
    builder = IndexBuilder(max_entries=1)
    builder.add(SNAPSHOT, decision("dev", "harbor.example.com/team-a/web:1"), "dev/Pod/a")
    builder.add(SNAPSHOT, decision("dev", "harbor.example.com/team-b/web:1"), "dev/Pod/b")
    index = builder.build("t", 0.0, 600.0)
    assert not index.complete
    assert index.use("harbor", "team-b", "101") is None


def test_an_index_is_fresh_for_two_audit_intervals_and_a_minute() -> None:
    index = ImpactIndex("t", 1000.0, 600.0)
    assert index.fresh(1000.0 + 1260, 600.0)
    assert not index.fresh(1000.0 + 1261, 600.0)
    assert not index.fresh(999.0, 600.0)  # from the future: a clock is off


def test_the_published_form_reads_back_and_garbage_is_no_index() -> None:
    builder = IndexBuilder()
    builder.add(SNAPSHOT, decision("dev", "harbor.example.com/team-a/web:1"), "dev/Pod/a")
    index = builder.build("2025-01-01T00:00:00Z", 5.0, 60.0)
    assert read_index(json.loads(json.dumps(index_document(index)))) == index
    assert read_index({"auditedAt": "t"}) is None
    assert read_index([1, 2]) is None
    broken = index_document(index)
    broken["uses"].append({"registry": "harbor", "count": "many"})
    read = read_index(broken)
    assert read is not None and not read.complete  # a bad entry: no longer complete


def test_an_index_too_big_to_publish_loses_names_first_then_entries() -> None:
    uses = {
        ("harbor", f"s{i}"): {
            "101": WorkspaceUse(9, tuple(f"ns/Pod/{'x' * 200}{j}" for j in range(5)))
        }
        for i in range(200)
    }
    index = ImpactIndex("t", 0.0, 60.0, uses)
    kept, data = fitted(index, 64 * 1024)
    assert len(data) <= 64 * 1024
    assert kept.complete and all(u.examples == () for w in kept.uses.values() for u in w.values())
    cut, data = fitted(index, 4 * 1024)
    assert len(data) <= 4 * 1024 and not cut.complete
    assert read_index(json.loads(data)) == cut
