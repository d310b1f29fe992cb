"""The binding reflector against the Kubernetes fake, through the real ``kubernetes`` client.

The fake serves RegistrySpaceBinding as a cluster-scoped custom resource (watch, 410 after
compaction, dropped connections); each test drives it as a cluster would and checks what
every replica would decide with: the binding map, how soon it changes, and that nothing an
object holds stops the reflector. The same loop on the real apiserver (and a CRD deleted
and installed) is in ``tests/e2e/test_bindings.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from policy.bindings import BindingObject
from tests.fakes.kubernetes import FakeKubernetes
from webhook.live.binding_map import BindingMap
from webhook.live.sources.bindings import BindingReflector, fetch_binding_objects

PATH = "/apis/spacegate.io/v1alpha1/registryspacebindings"
MakeSource = Callable[..., BindingReflector]


def binding(name: str, space: str = "team-a", workspaces: Any = ("101",)) -> dict[str, Any]:
    return {
        "apiVersion": "spacegate.io/v1alpha1",
        "kind": "RegistrySpaceBinding",
        "metadata": {"name": name},
        "spec": {"registry": "harbor", "space": space, "workspaces": list(workspaces)},
    }


def eventually(check: Callable[[], bool], timeout: float = 3.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {what}")
        time.sleep(0.01)


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    server = FakeKubernetes()
    server.serve_resource("spacegate.io/v1alpha1", "registryspacebindings", "RegistrySpaceBinding")
    yield server
    server.stop()


@pytest.fixture
def make_source() -> Iterator[MakeSource]:
    sources: list[BindingReflector] = []

    def make(server: FakeKubernetes, **overrides: Any) -> BindingReflector:
        changes = overrides.pop("changes", None)
        options: dict[str, Any] = {
            "api_client": server.api_client(),
            "watch_timeout": 30,
            "connect_timeout": 1.0,
            "read_timeout": 2.0,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
            "jitter": 0.0,
            "absent_retry": 0.1,
            "on_change": (lambda: changes.append(time.monotonic()))
            if changes is not None
            else None,
        }
        options.update(overrides)
        source = BindingReflector(BindingMap(), **options)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.stop_sync()


def started(source: BindingReflector, fake: FakeKubernetes) -> BindingReflector:
    source.start_sync()
    eventually(lambda: source.map.has_synced, what="first list")
    assert fake.wait_for_watches(1)
    return source


def workspaces(source: BindingReflector) -> dict[str, tuple[str, ...]]:
    return {name: obj.workspaces for name, obj in source.map.objects.items()}


def test_the_objects_are_listed_then_every_change_arrives_by_watch(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_object(PATH, "", binding("a"))
    changes: list[float] = []
    source = started(make_source(fake, changes=changes), fake)
    assert workspaces(source) == {"a": ("101",)}
    assert source.map.served is True

    fake.create_object(PATH, "", binding("b", "team-b", ["102", "101"]))
    eventually(lambda: "b" in source.map.objects, what="ADDED")
    assert source.map.objects["b"].workspaces == ("101", "102")

    current = fake.get_object(PATH, "", "a")
    assert current is not None
    current["spec"]["workspaces"] = ["103"]
    fake.replace_object(PATH, "", current)
    eventually(lambda: workspaces(source)["a"] == ("103",), what="MODIFIED")
    assert source.map.objects["a"].generation == 2

    fake.delete_object(PATH, "", "b")
    eventually(lambda: "b" not in source.map.objects, what="DELETED")
    assert source.relists == 0 and source.errors == 0
    assert len(changes) == 4  # the first list, then one per change


def test_a_status_write_reaches_the_map_so_the_leader_sees_what_it_wrote(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_object(PATH, "", binding("a"))
    source = started(make_source(fake), fake)
    status = {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Bound",
                "message": "ok",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
    }
    client.CustomObjectsApi(fake.api_client()).patch_cluster_custom_object_status(
        "spacegate.io", "v1alpha1", "registryspacebindings", "a", {"status": status}
    )
    eventually(lambda: source.map.objects["a"].condition("Ready") is not None, what="status")
    assert source.map.objects["a"].observed_generation == 1
    assert source.map.objects["a"].generation == 1  # a status write is no new generation


def test_after_compaction_the_reflector_relists_and_sees_what_happened_meanwhile(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_object(PATH, "", binding("a"))
    fake.create_object(PATH, "", binding("b"))
    source = started(make_source(fake), fake)
    fake.drop_watches()
    fake.delete_object(PATH, "", "a")  # happens while no watch is open...
    fake.compact()  # ...and its history is gone: resuming answers 410
    eventually(lambda: set(source.map.objects) == {"b"}, what="relisted")
    assert source.relists == 1


def test_a_bad_object_binds_nothing_and_the_reflector_keeps_going(
    fake: FakeKubernetes, make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    # The fake stores what it is sent, as a CRD without validation (or an older one) would.
    fake.create_object(PATH, "", binding("bad", "Not A Space", []))
    source = started(make_source(fake), fake)
    bad = source.map.objects["bad"]
    assert not bad.valid and bad.problem is not None and "spec.space" in bad.problem
    fake.create_object(PATH, "", binding("good"))
    eventually(lambda: "good" in source.map.objects, what="the next object")
    assert source.running and source.errors == 0
    assert "RegistrySpaceBinding bad binds nothing: spec.space" in caplog.text


def test_with_the_crd_not_served_there_are_no_objects_and_installing_it_takes_effect(
    make_source: MakeSource,
) -> None:
    fake = FakeKubernetes()  # nothing served under spacegate.io
    try:
        source = make_source(fake)
        source.start_sync()
        eventually(lambda: source.map.has_synced, what="an answer")
        assert source.map.served is False
        assert dict(source.map.objects) == {}
        assert source.errors == 0  # not served is an answer, not a failure

        fake.serve_resource(
            "spacegate.io/v1alpha1", "registryspacebindings", "RegistrySpaceBinding"
        )
        fake.create_object(PATH, "", binding("a"))
        eventually(lambda: "a" in source.map.objects, what="installed and listed")
        assert source.map.served is True
    finally:
        fake.stop()


def test_when_the_source_requires_objects_a_missing_crd_is_a_failure_with_a_hint(
    make_source: MakeSource,
) -> None:
    fake = FakeKubernetes()
    try:
        source = make_source(fake, required=True)
        source.start_sync()
        eventually(lambda: source.errors >= 2, what="failures")
        assert not source.map.has_synced
        assert source.problem is not None
        assert "registryspacebindings.spacegate.io is not served" in source.problem
    finally:
        fake.stop()


def test_listing_once_answers_none_without_the_crd(fake: FakeKubernetes) -> None:
    fake.create_object(PATH, "", binding("a"))
    assert fetch_binding_objects(fake.api_client()) == {
        "a": BindingObject("a", "harbor", "team-a", ("101",), 1, fake_rv(fake, "a"))
    }
    bare = FakeKubernetes()
    try:
        assert fetch_binding_objects(bare.api_client()) is None
    finally:
        bare.stop()


def fake_rv(fake: FakeKubernetes, name: str) -> str:
    obj = fake.get_object(PATH, "", name)
    assert obj is not None
    return str(obj["metadata"]["resourceVersion"])
