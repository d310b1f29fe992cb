"""The on-the-spot impact of a binding change: the affected namespaces' workloads, judged now."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from policy.bindings import BindingObject
from policy.config import load_config
from policy.snapshot import NamespaceInfo, Snapshot
from tests.fakes.kubernetes import FakeKubernetes
from webhook.cli.impact import ClusterImpactProbe

TEAM_A = "harbor.example.com/team-a/web:1"
CONFIG = load_config(
    "registries: [{name: harbor, type: harbor, url: https://harbor.example.com,"
    " spaces: [{name: team-a, public: false}, {name: lib, public: true}]}]\n"
)


def snapshot(*namespaces: tuple[str, str | None]) -> Snapshot:
    return Snapshot.build(
        CONFIG,
        namespaces={name: NamespaceInfo(ws) for name, ws in namespaces},
        binding_objects={"a": BindingObject("a", "harbor", "team-a", ("101", "102"))},
    )


@pytest.fixture
def kube() -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        yield fake


def pod(name: str, image: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": image}]}}


def impact(kube: FakeKubernetes, snap: Snapshot, workspaces: set[str], budget: float = 5.0) -> Any:
    probe = ClusterImpactProbe(kube.api_client)
    deadline = time.monotonic() + budget
    return asyncio.run(probe.impact(snap, "harbor", "team-a", frozenset(workspaces), deadline))


def test_the_workloads_of_the_lost_workspaces_that_use_the_space_are_counted(
    kube: FakeKubernetes,
) -> None:
    for namespace in ("a-dev", "a-prod", "b-dev"):
        kube.create_namespace(namespace)
    kube.create_object("/api/v1/pods", "a-dev", pod("web", TEAM_A))
    kube.create_object("/api/v1/pods", "a-dev", pod("public", "harbor.example.com/lib/x:1"))
    kube.create_object("/api/v1/pods", "a-prod", pod("api", TEAM_A))
    kube.create_object("/api/v1/pods", "b-dev", pod("other", TEAM_A))  # workspace 102: kept
    snap = snapshot(("a-dev", "101"), ("a-prod", "101"), ("b-dev", "102"))

    found = impact(kube, snap, {"101"})

    assert set(found) == {"101"}
    assert (found["101"].count, found["101"].examples) == (2, ("a-dev/Pod/web", "a-prod/Pod/api"))
    paths = {r.path for r in kube.requests}
    assert "/api/v1/namespaces/b-dev/pods" not in paths  # only the affected namespaces


def test_many_namespaces_are_read_with_one_list_per_kind(kube: FakeKubernetes) -> None:
    names = [(f"ns{i}", "101") for i in range(8)]
    for name, _ in names:
        kube.create_namespace(name)
    kube.create_object("/api/v1/pods", "ns7", pod("web", TEAM_A))

    found = impact(kube, snapshot(*names), {"101"})

    assert found["101"].count == 1
    assert "/api/v1/pods" in {r.path for r in kube.requests}


def test_a_deadline_that_passes_stops_the_computation(kube: FakeKubernetes) -> None:
    kube.create_namespace("a-dev")
    with pytest.raises(TimeoutError):
        impact(kube, snapshot(("a-dev", "101")), {"101"}, budget=-1)


def test_no_namespace_in_the_lost_workspaces_is_no_impact_and_no_request(
    kube: FakeKubernetes,
) -> None:
    assert impact(kube, snapshot(("b-dev", "102")), {"101"}) == {}
    assert kube.requests == []
