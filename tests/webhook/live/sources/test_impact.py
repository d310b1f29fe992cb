"""Every replica's copy of the leader's impact index: one ConfigMap, watched by name."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from policy.impact import INDEX_CONFIGMAP, INDEX_KEY, ImpactIndex, WorkspaceUse, index_document
from tests.fakes.kubernetes import FakeKubernetes
from webhook.live.sources.impact import ImpactHolder, ImpactReflector

CONFIGMAPS = "/api/v1/configmaps"
HOME = "sg-home"


def eventually(check: Callable[[], bool], timeout: float = 3.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {what}")
        time.sleep(0.01)


def index(count: int) -> ImpactIndex:
    uses = {("harbor", "team-a"): {"101": WorkspaceUse(count, ("a-dev/Pod/p",))}}
    return ImpactIndex("2025-01-01T00:00:00Z", 1.0, 600.0, uses)


def configmap(data: str, name: str = INDEX_CONFIGMAP) -> dict[str, object]:
    return {"metadata": {"name": name}, "data": {INDEX_KEY: data}}


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    server = FakeKubernetes()
    server.create_namespace(HOME)
    yield server
    server.stop()


@pytest.fixture
def reflector(fake: FakeKubernetes) -> Iterator[ImpactReflector]:
    source = ImpactReflector(
        ImpactHolder(),
        HOME,
        api_client=fake.api_client(),
        backoff_initial=0.01,
        backoff_max=0.05,
        jitter=0.0,
        absent_retry=0.1,
    )
    yield source
    source.stop_sync()


def test_the_published_index_arrives_and_each_new_pass_replaces_it(
    fake: FakeKubernetes, reflector: ImpactReflector
) -> None:
    fake.create_object(CONFIGMAPS, HOME, configmap("{}", name="someone-elses"))
    reflector.start_sync()
    eventually(lambda: reflector.holder.has_synced, what="listed")
    assert reflector.holder.index is None  # nothing published yet; other ConfigMaps ignored

    fake.create_object(CONFIGMAPS, HOME, configmap(json.dumps(index_document(index(1)))))
    eventually(lambda: reflector.holder.index == index(1), what="published")
    current = fake.get_object(CONFIGMAPS, HOME, INDEX_CONFIGMAP)
    assert current is not None
    current["data"][INDEX_KEY] = json.dumps(index_document(index(7)))
    fake.replace_object(CONFIGMAPS, HOME, current)
    eventually(lambda: reflector.holder.index == index(7), what="replaced")
    fake.delete_object(CONFIGMAPS, HOME, INDEX_CONFIGMAP)
    eventually(lambda: reflector.holder.index is None, what="deleted")


def test_a_malformed_or_oversized_index_is_no_index(
    fake: FakeKubernetes, reflector: ImpactReflector
) -> None:
    fake.create_object(CONFIGMAPS, HOME, configmap("{not json"))
    reflector.start_sync()
    eventually(lambda: reflector.holder.has_synced, what="listed")
    assert reflector.holder.index is None
    assert reflector.running and reflector.errors == 0


def test_an_index_it_may_not_read_is_no_index_said_once_and_asked_for_again(
    fake: FakeKubernetes, reflector: ImpactReflector, caplog: pytest.LogCaptureFixture
) -> None:
    fake.create_object(CONFIGMAPS, HOME, configmap(json.dumps(index_document(index(2)))))
    fake.fail_next(2, status=403, path_prefix=f"/api/v1/namespaces/{HOME}/configmaps")
    reflector.start_sync()
    eventually(lambda: reflector.holder.index == index(2), what="read after RBAC allowed it")
    assert caplog.text.count("cannot read the impact index ConfigMap") == 1
