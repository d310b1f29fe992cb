"""Publishing the impact index: one ConfigMap in spacegate's namespace, guarded, bounded."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from policy.impact import INDEX_CONFIGMAP, INDEX_KEY, ImpactIndex, WorkspaceUse, read_index
from tests.fakes.kubernetes import FakeKubernetes
from webhook.leader.audit.impact import ImpactPublisher
from webhook.leader.lease import LostLeadership

CONFIGMAPS = "/api/v1/configmaps"
HOME = "sg-home"


def index(count: int, at: float = 100.0) -> ImpactIndex:
    uses = {("harbor", "team-a"): {"101": WorkspaceUse(count, ("a-dev/Deployment/web",))}}
    return ImpactIndex("2025-01-01T00:00:00Z", at, 600.0, uses)


def published(kube: FakeKubernetes) -> ImpactIndex | None:
    found = kube.get_object(CONFIGMAPS, HOME, INDEX_CONFIGMAP)
    assert found is not None
    assert found["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "spacegate"
    return read_index(json.loads(found["data"][INDEX_KEY]))


def test_the_first_pass_creates_the_index_and_later_passes_replace_it(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    kube.create_namespace(HOME)
    publisher = ImpactPublisher(api, HOME)

    assert publisher.publish(index(1))
    assert published(kube) == index(1)
    assert publisher.publish(index(4, at=200.0))
    assert published(kube) == index(4, at=200.0)


def test_a_replica_that_lost_the_lease_writes_nothing(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    kube.create_namespace(HOME)

    def guard() -> None:
        raise LostLeadership("not the leader")

    with pytest.raises(LostLeadership):
        ImpactPublisher(api, HOME, guard=guard).publish(index(1))
    assert kube.objects(CONFIGMAPS, HOME) == []


def test_a_refused_write_is_logged_not_raised(
    kube: FakeKubernetes, api: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    # no namespace: the apiserver refuses the ConfigMap
    assert not ImpactPublisher(api, "nowhere").publish(index(1))
    assert "could not publish the impact index nowhere/spacegate-binding-impact" in caplog.text


def test_an_index_too_large_is_published_cut_and_marked_incomplete(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    kube.create_namespace(HOME)
    uses = {("harbor", f"s{i}"): {"101": WorkspaceUse(1)} for i in range(500)}
    big = ImpactIndex("t", 1.0, 600.0, uses)
    assert ImpactPublisher(api, HOME, max_bytes=2048).publish(big)
    read = published(kube)
    assert read is not None and not read.complete
    assert read.use("harbor", "s499", "101") is None  # not known, never "none"
