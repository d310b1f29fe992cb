"""RegistrySpaceBinding objects and the merged set of bindings.

What an object says (read strictly from files, leniently from the cluster), what the
snapshot binds as ``bindings.source`` says, who else binds a space, and which workspaces a
change takes away.
"""

from __future__ import annotations

from typing import Any

import pytest

from policy.bindings import (
    ACKNOWLEDGE_ANNOTATION,
    BindingError,
    BindingObject,
    acknowledged_workspaces,
    conflicts,
    lost_workspaces,
    object_name_for,
    parse_binding_object,
    read_binding_object,
)
from policy.config import load_config
from policy.snapshot import NamespaceInfo, Snapshot

REGISTRIES = """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: team-a, public: false}, {name: team-b, public: false}]
"""


def config(bindings: str = "bindings: []\n") -> Any:
    return load_config(REGISTRIES + bindings)


def manifest(name: str = "harbor-team-a", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "spacegate.io/v1alpha1",
        "kind": "RegistrySpaceBinding",
        "metadata": {"name": name, "generation": 3, "resourceVersion": "77"},
        "spec": {"registry": "harbor", "space": "team-a", "workspaces": ["101"], **spec},
    }


def obj(
    name: str, space: str = "team-a", *workspaces: str, registry: str = "harbor"
) -> BindingObject:
    return BindingObject(name, registry, space, tuple(sorted(workspaces or ("101",))))


# --------------------------------------------------------------------------- reading


def test_an_object_is_read_with_its_generation_and_a_sorted_set_of_workspaces() -> None:
    read = parse_binding_object(manifest(workspaces=["102", "101"]))
    assert read == BindingObject(
        "harbor-team-a", "harbor", "team-a", ("101", "102"), generation=3, resource_version="77"
    )


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"workspaces": []}, "spec.workspaces", "at least one workspace"),
        ({"workspaces": ["101", "101"]}, "spec.workspaces[1]", "duplicate workspace '101'"),
        ({"workspaces": [101]}, "spec.workspaces[0]", 'quote workspace ids: "101"'),
        ({"workspaces": [""]}, "spec.workspaces[0]", "expected a workspace id"),
        ({"workspaces": ["a b"]}, "spec.workspaces[0]", "expected a workspace id"),
        ({"workspaces": ["x" * 64]}, "spec.workspaces[0]", "at most 63 characters"),
        ({"workspaces": [str(i) for i in range(257)]}, "spec.workspaces", "at most 256"),
        ({"space": "Team-A"}, "spec.space", "as Harbor names projects"),
        ({"space": "team--a"}, "spec.space", "single '.', '_' or '-'"),
        ({"registry": "Harbor"}, "spec.registry", "expected a registry name"),
        ({"registry": 7}, "spec.registry", "expected a string, got 7"),
        ({"extra": 1}, "spec.extra", "unknown field"),
    ],
)
def test_a_bad_object_is_refused_naming_the_field(
    change: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(BindingError) as caught:
        parse_binding_object(manifest(**change))
    assert caught.value.path == field
    assert words in str(caught.value)


def test_a_bad_name_or_kind_is_refused_too() -> None:
    with pytest.raises(BindingError, match=r"metadata.name: expected a lowercase DNS subdomain"):
        parse_binding_object(manifest(name="Team_A"))
    with pytest.raises(BindingError, match=r"apiVersion: expected spacegate.io/v1alpha1"):
        parse_binding_object({**manifest(), "apiVersion": "spacegate.io/v1"})
    with pytest.raises(BindingError, match=r"^kind: expected RegistrySpaceBinding"):
        parse_binding_object({**manifest(), "kind": "Binding"})


def test_from_the_cluster_a_bad_spec_binds_nothing_and_says_why_instead_of_raising() -> None:
    read = read_binding_object(manifest(space="Not A Space", workspaces=[]))
    assert read is not None
    assert not read.valid
    assert read.workspaces == ()
    assert read.problem is not None and read.problem.startswith("spec.space:")
    assert read_binding_object({"metadata": {}, "spec": {}}) is None  # no name: skipped


def test_from_the_cluster_the_status_is_read_back_bounded_and_garbage_is_dropped() -> None:
    status = {
        "observedGeneration": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Bound",
                "message": "m" * 10_000,
                "lastTransitionTime": "2025-01-01T00:00:00Z",
                "observedGeneration": 2,
            },
            {"type": "SpaceFound", "status": "maybe"},
            "not a condition",
            *({"type": f"X{i}", "status": "True"} for i in range(20)),
        ],
    }
    read = read_binding_object({**manifest(), "status": status})
    assert read is not None
    assert read.observed_generation == 2
    ready = read.condition("Ready")
    assert ready is not None and ready.status == "True" and len(ready.message) == 4096
    assert read.condition("SpaceFound") is None
    assert len(read.conditions) <= 8


def test_the_exported_name_of_a_binding_is_a_valid_object_name() -> None:
    assert object_name_for("harbor", "team_a.ml") == "harbor-team-a.ml"
    long = object_name_for("h", "a" * 300)
    assert len(long) == 253
    parse_binding_object(manifest(name=long))


def test_an_acknowledgement_names_workspaces_or_all_of_them() -> None:
    assert acknowledged_workspaces({ACKNOWLEDGE_ANNOTATION: "101, 102"}) == frozenset(
        {"101", "102"}
    )
    assert acknowledged_workspaces({ACKNOWLEDGE_ANNOTATION: "*"}) == "*"
    assert acknowledged_workspaces({}) == frozenset()
    assert acknowledged_workspaces({ACKNOWLEDGE_ANNOTATION: 7}) == frozenset()


# --------------------------------------------------------------------------- merging


CONFIG_BINDING = (
    'bindings: {source: %s, items: [{registry: harbor, space: team-a, workspaces: ["103"]}]}\n'
)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("both", {"101", "102", "103"}),
        ("objects", {"101", "102"}),
        ("config", {"103"}),
    ],
)
def test_the_snapshot_binds_the_union_of_config_and_objects_as_the_source_says(
    source: str, expected: set[str]
) -> None:
    objects = {"a": obj("a", "team-a", "101"), "b": obj("b", "team-a", "102")}
    snapshot = Snapshot.build(config(CONFIG_BINDING % source), binding_objects=objects)
    assert snapshot.bound_workspaces("harbor", "team-a") == expected


def test_the_default_source_counts_objects_once_read_and_the_config_always() -> None:
    unset = config('bindings: [{registry: harbor, space: team-a, workspaces: ["103"]}]\n')
    assert Snapshot.build(unset).bound_workspaces("harbor", "team-a") == {"103"}
    read = Snapshot.build(unset, binding_objects={"a": obj("a", "team-a", "101")})
    assert read.bound_workspaces("harbor", "team-a") == {"101", "103"}


def test_an_object_naming_an_undeclared_registry_or_with_a_bad_spec_binds_nothing() -> None:
    bad = BindingObject("bad", "harbor", "team-b", (), problem="spec.workspaces: required")
    objects = {"x": obj("x", "team-a", "101", registry="quay"), "bad": bad}
    snapshot = Snapshot.build(config(), binding_objects=objects)
    assert dict(snapshot.bindings) == {}


def test_two_objects_for_one_space_conflict_and_each_names_the_other_and_the_config() -> None:
    cfg = config(CONFIG_BINDING % "both")
    objects = {
        "a": obj("a", "team-a", "101"),
        "b": obj("b", "team-a", "102"),
        "c": obj("c", "team-b", "101"),
    }
    found = conflicts(cfg, objects)
    assert found["a"].objects == ("b",) and found["b"].objects == ("a",)
    assert found["a"].config_workspaces == {"103"}
    assert found["a"].union == {"101", "102", "103"}
    assert not found["c"].any


# --------------------------------------------------------------------------- what a change takes away


def test_removing_a_workspace_loses_it_unless_someone_else_binds_it() -> None:
    cfg = config(CONFIG_BINDING % "both")
    before = obj("a", "team-a", "101", "102", "103")
    others = {"a": before, "b": obj("b", "team-a", "102")}
    after = obj("a", "team-a", "101")
    # 102 is still bound by b and 103 by the config: nothing is lost.
    assert lost_workspaces(cfg, others, before, after) == frozenset()
    alone = config()
    assert lost_workspaces(alone, {"a": before}, before, after) == {"102", "103"}
    assert lost_workspaces(alone, {"a": before}, before, None) == {"101", "102", "103"}


def test_adding_workspaces_or_changing_an_ignored_object_loses_nothing() -> None:
    before = obj("a", "team-a", "101")
    assert (
        lost_workspaces(config(), {"a": before}, before, obj("a", "team-a", "101", "102")) == set()
    )
    assert lost_workspaces(config(CONFIG_BINDING % "config"), {"a": before}, before, None) == set()
    assert lost_workspaces(config(), None, before, None) == set()  # objects not read
    undeclared = obj("a", "team-a", "101", registry="quay")
    assert lost_workspaces(config(), {"a": undeclared}, undeclared, None) == set()


def test_namespaces_see_objects_bindings_in_decisions() -> None:
    from policy.decision import decide

    snapshot = Snapshot.build(
        config(),
        namespaces={"dev": NamespaceInfo(workspace="101")},
        binding_objects={"a": obj("a", "team-a", "101")},
    )
    spec = {"containers": [{"name": "c", "image": "harbor.example.com/team-a/app:1"}]}
    assert decide(snapshot, "dev", spec).allowed
    assert not decide(Snapshot.build(config(), namespaces=snapshot.namespaces), "dev", spec).allowed
