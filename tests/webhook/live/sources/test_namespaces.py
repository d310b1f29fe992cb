"""The namespace source against a fake API server, through the real ``kubernetes`` client.

Each test drives the fake the way a cluster would behave (labels changing, watches cut,
history compacted, the API server down or failing) and checks what the webhook would act
on: the namespace map, how quickly it changes, and what it cost in requests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes.config import kube_config

from policy.config import MODE_LABEL
from policy.snapshot import NamespaceInfo
from tests.fakes.kubernetes import FakeKubernetes
from webhook.clients.errors import SourceError
from webhook.clients.kube import load_api_client
from webhook.live.namespace_map import NamespaceMap
from webhook.live.sources.namespaces import NamespaceReflector, fetch_namespaces

WS = "workspace.ghippo.io/id"
MakeSource = Callable[..., NamespaceReflector]


def eventually(check: Callable[[], bool], timeout: float = 2.0, what: str = "") -> None:
    """Poll until ``check()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {what or check}")
        time.sleep(0.01)


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    server = FakeKubernetes()
    yield server
    server.stop()


@pytest.fixture
def make_source() -> Iterator[MakeSource]:
    """Sources with test-sized timings, stopped at teardown."""
    sources: list[NamespaceReflector] = []

    def make(server: FakeKubernetes, **overrides: Any) -> NamespaceReflector:
        options: dict[str, Any] = {
            "api_client": server.api_client(),
            "watch_timeout": 30,
            "connect_timeout": 1.0,
            "read_timeout": 2.0,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
            "jitter": 0.0,
            "stop_timeout": 2.0,
        }
        options.update(overrides)
        clock = options.pop("clock", time.monotonic)
        source = NamespaceReflector(NamespaceMap(WS, clock=clock), **options)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.stop_sync()


def synced(source: NamespaceReflector, fake: FakeKubernetes) -> NamespaceReflector:
    """Start the source and wait for its list and its first watch."""
    source.start_sync()
    eventually(lambda: source.map.has_synced, what="initial list")
    assert fake.wait_for_watches(1)
    return source


# --------------------------------------------------------------------------- the map


def test_the_initial_list_maps_every_namespace_to_its_workspace_and_mode(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_namespace("team-a-dev", {WS: "101", MODE_LABEL: "warn"})
    fake.create_namespace("team-b-dev", {WS: "102"})
    fake.create_namespace("sandbox")
    source = make_source(fake, clock=lambda: 1234.5)
    assert not source.map.has_synced
    assert source.map.last_sync_time is None

    synced(source, fake)

    assert dict(source.map.namespaces) == {
        "team-a-dev": NamespaceInfo(workspace="101", mode="warn"),
        "team-b-dev": NamespaceInfo(workspace="102"),
        "sandbox": NamespaceInfo(),
    }
    assert source.map.last_sync_time == 1234.5  # the caller's clock, not the wall clock


def test_a_large_list_is_fetched_in_pages_and_arrives_complete(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    for i in range(5):
        fake.create_namespace(f"ns-{i}", {WS: str(100 + i)})
    source = synced(make_source(fake, page_size=2), fake)

    assert source.map.namespaces["ns-4"] == NamespaceInfo(workspace="104")
    assert len(source.map.namespaces) == 5
    lists = [r for r in fake.requests if r.is_namespace_list]
    assert [r.params.get("limit") for r in lists] == ["2", "2", "2"]
    assert "continue" not in lists[0].params
    assert all("continue" in r.params for r in lists[1:])


def test_the_published_map_is_an_immutable_copy(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_namespace("team-a", {WS: "101"})
    source = synced(make_source(fake), fake)
    before = source.map.namespaces

    with pytest.raises(TypeError):
        before["intruder"] = NamespaceInfo(workspace="666")  # type: ignore[index]
    fake.label_namespace("team-a", {WS: "102"})
    eventually(lambda: source.map.namespaces["team-a"].workspace == "102")

    assert before["team-a"].workspace == "101"  # a reader's copy never changes under it
    assert source.map.namespaces is source.map.namespaces  # unchanged map: no copy per read


def test_label_changes_and_deletions_show_up_promptly(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_namespace("team-a", {})
    fake.create_namespace("team-b", {WS: "102"})
    source = synced(make_source(fake), fake)

    fake.label_namespace("team-a", {WS: "101"})
    eventually(lambda: source.map.namespaces["team-a"] == NamespaceInfo("101"), what="label added")

    fake.label_namespace("team-a", {WS: "103", MODE_LABEL: "audit"})
    eventually(
        lambda: source.map.namespaces["team-a"] == NamespaceInfo("103", "audit"),
        what="label changed",
    )

    fake.label_namespace("team-a", {WS: None, MODE_LABEL: None})
    eventually(lambda: source.map.namespaces["team-a"] == NamespaceInfo(), what="label removed")

    fake.delete_namespace("team-b")
    eventually(lambda: "team-b" not in source.map.namespaces, what="namespace deleted")

    fake.create_namespace("team-c", {WS: "104"})
    eventually(lambda: source.map.namespaces.get("team-c") == NamespaceInfo("104"), what="created")
    assert source.errors == 0
    assert source.relists == 0


def test_an_empty_workspace_label_means_no_workspace(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_namespace("team-a", {WS: ""})
    source = synced(make_source(fake), fake)

    assert source.map.namespaces["team-a"] == NamespaceInfo(workspace=None)


def test_an_invalid_mode_label_is_ignored_with_one_warning(
    fake: FakeKubernetes, make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="webhook.live.namespace_map")
    fake.create_namespace("team-a", {WS: "101", MODE_LABEL: "strict"})
    source = synced(make_source(fake), fake)

    assert source.map.namespaces["team-a"] == NamespaceInfo(workspace="101", mode=None)
    fake.label_namespace("team-a", {"owner": "alice"})  # still "strict": no second warning
    fake.label_namespace("team-a", {WS: "102"})
    eventually(lambda: source.map.namespaces["team-a"].workspace == "102")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "team-a" in warnings[0]
    assert "'strict'" in warnings[0]
    assert "enforce, warn, audit" in warnings[0]

    fake.label_namespace("team-a", {MODE_LABEL: "Warn"})  # a different bad value: warned
    fake.label_namespace("team-a", {MODE_LABEL: "warn"})
    eventually(lambda: source.map.namespaces["team-a"].mode == "warn")
    assert sum("'Warn'" in r.getMessage() for r in caplog.records) == 1


# --------------------------------------------------------------------------- change callback


def test_on_change_is_called_on_the_reflector_thread_after_the_map_changed(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_namespace("team-a", {WS: "101"})
    calls: list[tuple[int, Mapping[str, NamespaceInfo]]] = []
    source = make_source(fake)
    source._on_change = lambda: calls.append((threading.get_ident(), source.map.namespaces))

    synced(source, fake)
    eventually(lambda: len(calls) == 1, what="the first list is announced")
    fake.label_namespace("team-a", {WS: "102"})
    eventually(lambda: calls[-1][1].get("team-a") == NamespaceInfo("102"), what="change")

    assert calls[0][1] == {"team-a": NamespaceInfo("101")}
    assert threading.get_ident() not in {thread for thread, _ in calls}


def test_a_label_change_outside_workspace_and_mode_does_not_trigger_a_rebuild(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_namespace("team-a", {WS: "101"})
    calls: list[Mapping[str, NamespaceInfo]] = []
    source = make_source(fake)
    source._on_change = lambda: calls.append(source.map.namespaces)
    synced(source, fake)
    eventually(lambda: len(calls) == 1)

    fake.label_namespace("team-a", {"owner": "alice"})
    fake.label_namespace("team-a", {WS: "102"})
    eventually(lambda: source.map.namespaces["team-a"].workspace == "102")

    assert len(calls) == 2
    assert calls[-1]["team-a"] == NamespaceInfo("102")


# --------------------------------------------------------------------------- resilience


def test_a_dropped_watch_makes_the_map_not_current_until_a_relist_brings_it_back(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_namespace("team-a", {WS: "101"})
    source = synced(make_source(fake, backoff_initial=0.3, backoff_max=0.3), fake)
    assert source.current
    assert source.epoch == 1
    fake.clear_requests()

    assert fake.drop_watches() == 1
    eventually(lambda: not source.current, what="not current after the drop")
    assert "watch failed" in (source.not_current_reason or "")
    fake.create_namespace("team-c", {WS: "103"})
    eventually(lambda: "team-c" in source.map.namespaces, what="relisted after the drop")
    eventually(lambda: source.current, what="current again")

    first = fake.requests[0]
    assert first.is_namespace_list, "a relist, not a resumed watch"
    watches = [r for r in fake.requests if r.is_watch]
    assert watches[0].params["allowWatchBookmarks"] == "true"
    assert source.relists == 1
    assert source.epoch == 2


def test_a_watch_ended_cleanly_before_its_timeout_relists(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    """An apiserver shutting down (or reinitialising its watch cache) ends streams cleanly:
    what it accepted meanwhile may never be replayed, so that is no timeout."""
    fake.create_namespace("team-a", {WS: "101"})
    source = synced(make_source(fake, watch_timeout=30), fake)
    fake.clear_requests()

    assert fake.end_watches() == 1
    eventually(lambda: source.relists == 1, what="relisted")
    eventually(lambda: source.current, what="current again")

    assert fake.requests[0].is_namespace_list
    assert source.epoch == 2


def test_a_watch_that_times_out_is_renewed_from_where_it_stopped(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_namespace("team-a", {WS: "101"})
    source = synced(make_source(fake, watch_timeout=1), fake)
    fake.label_namespace("team-a", {WS: "102"})
    resumed_at = fake.namespace("team-a")["metadata"]["resourceVersion"]  # type: ignore[index]

    eventually(lambda: len([r for r in fake.requests if r.is_watch]) >= 2, timeout=3.0)

    second = [r for r in fake.requests if r.is_watch][1]
    assert second.params["resourceVersion"] == resumed_at
    assert second.params["timeoutSeconds"] == "1"
    assert source.errors == 0
    assert source.reconnects == 0
    # the server's own timeout is no failure: current throughout, no relist
    assert source.current
    assert source.epoch == 1
    assert source.relists == 0


def test_a_bookmark_moves_the_resume_point_past_a_compaction(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_namespace("team-a", {WS: "101"})
    source = synced(make_source(fake, watch_timeout=1), fake)
    for i in range(3):  # writes to other kinds move the global resourceVersion on
        fake.create_secret("team-a", f"secret-{i}")
    assert fake.send_bookmark() == 1
    bookmark = str(fake.resource_version)
    eventually(lambda: source.resource_version == bookmark, what="bookmark applied")
    fake.compact()  # without the bookmark, the renewed watch would start from a compacted one
    fake.clear_requests()

    eventually(lambda: any(r.is_watch for r in fake.requests), timeout=3.0, what="renewed")

    watches = [r for r in fake.requests if r.is_watch]
    assert watches[0].params["resourceVersion"] == bookmark
    assert watches[0].status == 200
    assert not [r for r in fake.requests if r.is_namespace_list]
    assert source.relists == 0
    assert source.current


@pytest.mark.parametrize("expired_as_http", [False, True], ids=["error-event", "http-410"])
def test_compaction_during_an_outage_relists_and_loses_no_change(
    fake: FakeKubernetes, make_source: MakeSource, expired_as_http: bool
) -> None:
    fake.expired_as_http = expired_as_http
    fake.create_namespace("team-a", {WS: "101"})
    fake.create_namespace("team-b", {WS: "102"})
    source = synced(make_source(fake), fake)

    fake.stop()  # the API server goes away, cutting the watch
    fake.delete_namespace("team-a")
    fake.label_namespace("team-b", {WS: "202"})
    fake.create_namespace("team-c", {WS: "103"})
    fake.compact()  # ...and comes back without the history of what happened meanwhile
    fake.clear_requests()
    fake.start()

    eventually(
        lambda: (
            dict(source.map.namespaces)
            == {"team-b": NamespaceInfo("202"), "team-c": NamespaceInfo("103")}
        ),
        what="the state after the outage",
    )
    # the failed watch is followed by a relist, never by a resume the history cannot serve
    assert not [r for r in fake.requests if r.status == 410]
    assert source.relists >= 1
    eventually(lambda: source.current, what="current after the outage")


def test_an_api_server_down_at_start_is_retried_until_it_comes_up(
    make_source: MakeSource,
) -> None:
    fake = FakeKubernetes(start=False)
    fake.create_namespace("team-a", {WS: "101"})
    try:
        source = make_source(fake)
        source.start_sync()
        eventually(lambda: source.errors >= 2, what="failed attempts")
        assert not source.map.has_synced
        assert source.map.namespaces == {}
        assert source.map.last_sync_time is None
        assert source.last_error is not None

        fake.start()

        eventually(lambda: source.map.has_synced, what="sync after the API server came up")
        assert dict(source.map.namespaces) == {"team-a": NamespaceInfo("101")}
    finally:
        fake.stop()


def test_server_errors_are_retried_with_exponential_backoff(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_namespace("team-a", {WS: "101"})
    fake.fail_next(3, status=500)
    source = make_source(fake, backoff_initial=0.05, backoff_factor=2.0, backoff_max=1.0)

    source.start_sync()
    eventually(lambda: source.map.has_synced)

    lists = [r for r in fake.requests if r.is_namespace_list]
    assert [r.status for r in lists] == [500, 500, 500, 200]
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(lists)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.10
    assert gaps[2] >= 0.20
    assert source.errors == 3
    assert source.last_error == "HTTP 500 Internal Server Error: injected failure (500)"


def test_a_failing_reconnect_is_retried_with_a_relist_and_stays_not_current_meanwhile(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    fake.create_namespace("team-a", {WS: "101"})
    source = synced(make_source(fake), fake)
    fake.clear_requests()

    fake.fail_next(2, status=503)
    fake.drop_watches()
    fake.label_namespace("team-a", {WS: "102"})
    eventually(lambda: source.map.namespaces["team-a"].workspace == "102")
    eventually(lambda: source.current)

    lists = [r for r in fake.requests if r.is_namespace_list]
    assert [r.status for r in lists] == [503, 503, 200]
    assert source.relists == 1
    assert source.errors == 3  # the drop and two refused lists
    assert source.epoch == 2


# --------------------------------------------------------------------------- waking


def test_a_wake_cuts_a_long_backoff_short(make_source: MakeSource) -> None:
    """A review arriving proves the apiserver is up: the reflector need not wait 60 s."""
    fake = FakeKubernetes(start=False)
    fake.create_namespace("team-a", {WS: "101"})
    try:
        source = make_source(fake, backoff_initial=60.0, backoff_max=60.0)
        source.start_sync()
        eventually(lambda: source.errors == 1, what="the first refused list")
        fake.start()
        time.sleep(0.2)
        assert not source.current, "still waiting out its backoff"

        assert source.wake()
        eventually(lambda: source.current, what="current soon after the wake-up")
        assert dict(source.map.namespaces) == {"team-a": NamespaceInfo("101")}
    finally:
        fake.stop()


def test_wake_ups_are_bounded_whatever_the_flood_of_reviews(make_source: MakeSource) -> None:
    fake = FakeKubernetes(start=False)
    try:
        source = make_source(fake, backoff_initial=60.0, backoff_max=60.0, wake_interval=1.0)
        source.start_sync()
        eventually(lambda: source.errors == 1, what="the first refused list")

        counted = [source.wake() for _ in range(1_000)]

        assert counted.count(True) == 1
        assert source.wakes == 1
        assert source.wakes_refused == 999
        eventually(lambda: source.errors == 2, what="the one woken attempt")
        time.sleep(0.3)
        assert source.errors == 2, "one attempt for a thousand wake-ups"
    finally:
        fake.stop()


def test_a_current_reflector_ignores_wake_ups(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    source = synced(make_source(fake), fake)
    fake.clear_requests()

    assert not source.wake()
    time.sleep(0.1)

    assert source.wakes == 0
    assert fake.requests == []


# --------------------------------------------------------------------------- stopping


def test_stop_returns_promptly_while_a_watch_is_open(
    fake: FakeKubernetes, make_source: MakeSource
) -> None:
    source = synced(make_source(fake, watch_timeout=300, read_timeout=30), fake)

    started = time.monotonic()
    assert source.stop_sync()

    assert time.monotonic() - started < 2.0
    assert not source.running
    eventually(lambda: fake.open_watches == 0, what="the server saw the disconnect")
    assert source.errors == 0


def test_stop_returns_promptly_while_waiting_to_retry(make_source: MakeSource) -> None:
    fake = FakeKubernetes(start=False)
    source = make_source(fake, backoff_initial=60.0, backoff_max=60.0)
    source.start_sync()
    eventually(lambda: source.errors == 1)

    started = time.monotonic()
    assert source.stop_sync()

    assert time.monotonic() - started < 2.0
    assert not source.running


# --------------------------------------------------------------------------- one-shot list


def test_fetch_namespaces_lists_once(fake: FakeKubernetes) -> None:
    fake.create_namespace("team-a", {WS: "101", MODE_LABEL: "audit"})

    namespaces = fetch_namespaces(fake.api_client(), WS)

    assert dict(namespaces) == {"team-a": NamespaceInfo("101", "audit")}
    assert not [r for r in fake.requests if r.is_watch]


def test_fetch_namespaces_reports_an_unreachable_api_server() -> None:
    fake = FakeKubernetes(start=False)

    with pytest.raises(SourceError, match="listing namespaces failed"):
        fetch_namespaces(fake.api_client(), WS, timeout=1.0)


# --------------------------------------------------------------------------- configuration


def test_a_kubeconfig_is_enough_to_reach_the_api_server_for_local_runs(
    fake: FakeKubernetes, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
                "users": [{"name": "dev", "user": {"token": "not-checked"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "dev"}}],
                "current-context": "fake",
            }
        )
    )
    fake.create_namespace("team-a", {WS: "101"})

    namespaces = fetch_namespaces(load_api_client(str(kubeconfig)), WS)

    assert dict(namespaces) == {"team-a": NamespaceInfo("101")}


def test_starting_outside_a_cluster_without_a_kubeconfig_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "none"))
    source = NamespaceReflector(NamespaceMap(WS))

    with pytest.raises(SourceError, match="no Kubernetes API configuration"):
        asyncio.run(source.start())
    assert not source.running


# --------------------------------------------------------------------------- the fake itself


def test_the_fake_watch_reports_objects_leaving_and_entering_a_label_selector(
    fake: FakeKubernetes,
) -> None:
    start = str(fake.resource_version)
    fake.create_namespace("a", {"tier": "gold"})
    fake.create_namespace("b", {"tier": "silver"})
    fake.label_namespace("a", {"tier": "silver"})  # leaves the selector
    fake.label_namespace("b", {"tier": "gold"})  # enters it
    fake.delete_namespace("b")
    api = k8s_client.CoreV1Api(fake.api_client())

    response: urllib3.HTTPResponse = api.list_namespace(  # type: ignore[assignment]
        watch=True,
        label_selector="tier=gold",
        resource_version=start,
        timeout_seconds=1,
        _preload_content=False,
    )
    lines = response.data.decode().splitlines()  # the whole stream, until the timeout
    events = [
        (event["type"], event["object"]["metadata"]["name"]) for event in map(json.loads, lines)
    ]

    assert events == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b"), ("DELETED", "b")]
