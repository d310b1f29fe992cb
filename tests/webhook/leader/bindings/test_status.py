"""Writing binding statuses on the Kubernetes fake: through ``/status``, only on change."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from policy.config import load_config
from policy.snapshot import Snapshot
from tests.fakes.kubernetes import FakeKubernetes
from webhook.leader.bindings.conditions import desired_statuses
from webhook.leader.bindings.status import StatusWriter
from webhook.leader.lease import LostLeadership
from webhook.live.sources.bindings import fetch_binding_objects

PATH = "/apis/spacegate.io/v1alpha1/registryspacebindings"
CONFIG = load_config(
    "registries: [{name: harbor, type: harbor, url: https://h.example.com,"
    " spaces: [{name: team-a, public: false}]}]\n"
)


def binding(name: str, space: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "spacegate.io/v1alpha1",
        "kind": "RegistrySpaceBinding",
        "metadata": {"name": name},
        "spec": {"registry": "harbor", "space": space, "workspaces": ["101"]},
    }


@pytest.fixture
def served(kube: FakeKubernetes) -> FakeKubernetes:
    kube.serve_resource("spacegate.io/v1alpha1", "registryspacebindings", "RegistrySpaceBinding")
    return kube


def snapshot(api: client.ApiClient) -> Snapshot:
    """What the reflector would hold now: the objects with their statuses."""
    return Snapshot.build(CONFIG, binding_objects=fetch_binding_objects(api))


def write(api: client.ApiClient, now: float = 1_735_689_600.0, **options: Any) -> Any:
    current = snapshot(api)
    writer = StatusWriter(api, clock=lambda: now, **options)
    return writer.write(current, desired_statuses(current))


def ready(kube: FakeKubernetes, name: str) -> dict[str, Any]:
    obj = kube.get_object(PATH, "", name)
    assert obj is not None
    (condition,) = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"]
    return dict(condition)


def test_statuses_are_written_once_and_a_pass_with_nothing_new_writes_none(
    served: FakeKubernetes, api: client.ApiClient
) -> None:
    served.create_object(PATH, "", binding("a"))
    served.create_object(PATH, "", binding("b", "team-z"))

    first = write(api)
    second = write(api, now=1_735_689_600.0 + 3600)

    assert sorted(first.written) == ["a", "b"]
    assert (second.written, second.unchanged) == ([], 2)
    assert ready(served, "a")["status"] == "True"
    assert ready(served, "b")["reason"] == "SpaceNotFound"
    obj = served.get_object(PATH, "", "a")
    assert obj is not None and obj["status"]["observedGeneration"] == 1
    assert obj["spec"]["workspaces"] == ["101"]  # the spec is never touched


def test_a_status_that_changes_keeps_its_time_unless_its_status_moves(
    served: FakeKubernetes, api: client.ApiClient
) -> None:
    served.create_object(PATH, "", binding("a"))
    write(api)
    before = ready(served, "a")
    current = served.get_object(PATH, "", "a")
    assert current is not None
    current["spec"]["workspaces"] = ["101", "102"]  # a new generation, still Ready
    served.replace_object(PATH, "", current)

    write(api, now=1_735_689_600.0 + 60)

    after = ready(served, "a")
    assert after["observedGeneration"] == 2
    assert after["lastTransitionTime"] == before["lastTransitionTime"]
    assert after["message"] == "workspaces 101, 102 may use space team-a of harbor"


def test_a_status_computed_from_an_object_that_changed_meanwhile_is_not_written(
    served: FakeKubernetes, api: client.ApiClient
) -> None:
    served.create_object(PATH, "", binding("a"))
    stale = snapshot(api)
    current = served.get_object(PATH, "", "a")
    assert current is not None
    current["spec"]["workspaces"] = ["102"]
    served.replace_object(PATH, "", current)

    result = StatusWriter(api, clock=lambda: 0.0).write(stale, desired_statuses(stale))

    assert result.stale == ["a"] and result.written == []
    obj = served.get_object(PATH, "", "a")
    assert obj is not None and not obj.get("status")


def test_a_replica_that_is_not_the_leader_writes_no_status(
    served: FakeKubernetes, api: client.ApiClient
) -> None:
    served.create_object(PATH, "", binding("a"))

    def guard() -> None:
        raise LostLeadership("not the leader")

    with pytest.raises(LostLeadership):
        write(api, guard=guard)
    obj = served.get_object(PATH, "", "a")
    assert obj is not None and not obj.get("status")
