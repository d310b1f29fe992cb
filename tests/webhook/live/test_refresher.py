"""The refresher, driven by in-test fake sources and an injected clock.

Integration with the real sources (Harbor fake, docker-registry, Kubernetes fake) lives in
``test_live.py``; here each behaviour is pinned with sources whose answers the test controls.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import pytest
from prometheus_client import CollectorRegistry

from policy.config import Config, Registry, load_config
from policy.decision import decide
from policy.last_known_good import Copy, RegistryCopy
from webhook.clients.errors import SourceError
from webhook.live.namespace_map import NamespaceMap
from webhook.live.refresh_metrics import RefreshMetrics
from webhook.live.refresher import COPY_GRACE, Refresher
from webhook.live.sources import SpaceSource

T = TypeVar("T")

HARBOR = """
policy: {maxStaleness: 10m}
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    refreshInterval: 1h
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
namespaces:
  team-a-dev: "101"
"""

TWO_REGISTRIES = """
registries:
  - name: fast
    type: harbor
    url: https://fast.example.com
    refreshInterval: 50ms
  - name: slow
    type: harbor
    url: https://slow.example.com
    refreshInterval: 1h
"""


class FakeClock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSource:
    """A SpaceSource whose answer, failure or hang the test sets."""

    def __init__(self, name: str, spaces: Mapping[str, bool] | None = None) -> None:
        self.name = name
        self.spaces: dict[str, bool] = dict(spaces or {})
        self.error: Exception | None = None
        self.hang = False
        self.fetches = 0
        self.closed = False
        self.entered = asyncio.Event()

    async def fetch(self) -> dict[str, bool]:
        self.fetches += 1
        self.entered.set()
        if self.hang:
            await asyncio.Event().wait()
        if self.error is not None:
            raise self.error
        return dict(self.spaces)

    async def aclose(self) -> None:
        self.closed = True


class Sources:
    """A source factory that remembers every source it built, per registry name."""

    def __init__(self, spaces: Mapping[str, Mapping[str, bool]] | None = None) -> None:
        self.initial = {name: dict(s) for name, s in (spaces or {}).items()}
        self.built: dict[str, list[FakeSource]] = {}
        self.error: Exception | None = None  # set on every source built from now on
        self.hang = False

    def __call__(self, registry: Registry) -> SpaceSource:
        source = FakeSource(registry.name, self.initial.get(registry.name, {}))
        source.error, source.hang = self.error, self.hang
        self.built.setdefault(registry.name, []).append(source)
        return source

    def current(self, name: str) -> FakeSource:
        return self.built[name][-1]


WS = "workspace.ghippo.io/id"


def listed_map(clock: Callable[[], float] = time.monotonic, **namespaces: str) -> NamespaceMap:
    """A namespace map that has had its first list (namespace -> workspace)."""
    namespace_map = NamespaceMap(WS, clock=clock)
    namespace_map.replace({name: {WS: ws} for name, ws in namespaces.items()})
    return namespace_map


def config(text: str) -> Config:
    return load_config(text, "test.yaml")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll the loop until ``predicate`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def image_allowed(refresher: Refresher, namespace: str, image: str) -> bool:
    decision = decide(
        refresher.snapshot, namespace, {"containers": [{"name": "app", "image": image}]}
    )
    return decision.allowed


def metric(
    collectors: CollectorRegistry, name: str, labels: Mapping[str, str] | None = None
) -> float | None:
    value: float | None = collectors.get_sample_value(name, dict(labels or {}))
    return value


# --------------------------------------------------------------------------- first sync


def test_a_listed_harbor_is_not_ready_until_its_spaces_arrive() -> None:
    async def scenario() -> None:
        sources = Sources({"harbor": {"library": True, "team-a": False}})
        refresher = Refresher(config(HARBOR), source_factory=sources, clock=FakeClock())
        ready, reason = refresher.readiness()
        assert not ready
        assert "harbor" in reason
        assert not image_allowed(refresher, "team-a-dev", "harbor.example.com/library/nginx")

        assert await refresher.refresh("harbor")

        assert refresher.readiness()[0]
        assert image_allowed(refresher, "team-a-dev", "harbor.example.com/library/nginx")
        assert image_allowed(refresher, "team-a-dev", "harbor.example.com/team-a/app")
        assert not image_allowed(refresher, "other", "harbor.example.com/team-a/app")

    run(scenario())


def test_each_successful_listing_swaps_in_a_new_snapshot_version() -> None:
    async def scenario() -> None:
        sources = Sources({"harbor": {"library": True}})
        refresher = Refresher(config(HARBOR), source_factory=sources, clock=FakeClock())
        before = refresher.snapshot
        await refresher.refresh("harbor")
        after = refresher.snapshot
        assert after is not before
        assert after.version == before.version + 1
        assert dict(before.registries["harbor"].spaces) == {}  # old readers keep their view
        assert dict(after.registries["harbor"].spaces) == {"library": True}

    run(scenario())


def test_registries_with_static_spaces_need_no_source_and_are_ready_at_once() -> None:
    text = """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: library, public: true}]
"""

    def refuse(registry: Registry) -> SpaceSource:
        raise AssertionError(f"no source expected for {registry.name}")

    refresher = Refresher(config(text), source_factory=refuse)
    assert refresher.readiness()[0]
    assert image_allowed(refresher, "any", "harbor.example.com/library/nginx")


def test_a_docker_registry_that_is_down_does_not_make_the_webhook_unready() -> None:
    text = """
registries:
  - {name: dr, type: docker-registry, url: "https://dr.example.com"}
"""

    async def scenario() -> None:
        sources = Sources()
        refresher = Refresher(config(text), source_factory=sources, clock=FakeClock())
        assert refresher.readiness()[0]  # its spaces are all public: nothing to wait for
        assert await refresher.refresh("dr")  # still listed, for `images` and metrics
        sources.current("dr").error = SourceError("connection refused")
        assert not await refresher.refresh("dr")
        assert refresher.readiness()[0]
        assert image_allowed(refresher, "any", "dr.example.com/anything/app:1")

    run(scenario())


# --------------------------------------------------------------------------- failures


def test_a_failed_refresh_keeps_the_last_known_good_spaces_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        registry = CollectorRegistry()
        sources = Sources({"harbor": {"library": True, "team-a": False}})
        refresher = Refresher(
            config(HARBOR),
            source_factory=sources,
            metrics=RefreshMetrics(registry),
            clock=FakeClock(),
        )
        await refresher.refresh("harbor")
        version = refresher.snapshot.version
        sources.current("harbor").error = SourceError(
            "GET https://harbor.example.com/api/v2.0/projects: HTTP 500"
        )

        with caplog.at_level(logging.WARNING, logger="webhook.live.poller"):
            assert not await refresher.refresh("harbor")
            assert not await refresher.refresh("harbor")

        assert refresher.snapshot.version == version
        assert image_allowed(refresher, "team-a-dev", "harbor.example.com/team-a/app")
        assert metric(registry, "spacegate_refresh_failures_total", {"registry": "harbor"}) == 2
        assert refresher.readiness()[0]  # still within maxStaleness
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 2
        assert all("'harbor'" in line and "HTTP 500" in line for line in lines)
        assert all("\n" not in line for line in lines)

    run(scenario())


def test_readiness_fails_once_data_is_older_than_max_staleness_but_decisions_stay() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        sources = Sources({"harbor": {"team-a": False}})
        refresher = Refresher(config(HARBOR), source_factory=sources, clock=clock)
        await refresher.refresh("harbor")
        sources.current("harbor").error = SourceError("connection refused")

        clock.now += 599
        assert not await refresher.refresh("harbor")
        assert refresher.readiness()[0]
        assert refresher.age_seconds() == pytest.approx(599)

        clock.now += 2
        ready, reason = refresher.readiness()
        assert not ready
        assert "'harbor'" in reason
        assert "connection refused" in reason
        assert "10m" in reason
        assert image_allowed(refresher, "team-a-dev", "harbor.example.com/team-a/app")
        # the probe form (/readyz?exclude=staleness) keeps serving on last-known-good data
        assert refresher.readiness(staleness=False)[0]

        sources.current("harbor").error = None
        assert await refresher.refresh("harbor")
        assert refresher.readiness()[0]
        assert refresher.age_seconds() == 0

    run(scenario())


def test_a_fetch_slower_than_the_timeout_is_a_failure_naming_the_registry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        sources = Sources({"harbor": {"library": True}})
        sources.hang = True
        refresher = Refresher(
            config(HARBOR), source_factory=sources, clock=FakeClock(), fetch_timeout=0.05
        )
        with caplog.at_level(logging.WARNING, logger="webhook.live.poller"):
            started = time.monotonic()
            assert not await refresher.refresh("harbor")
            assert time.monotonic() - started < 2
        status = refresher.status()[0]
        assert status.failures == 1
        assert status.last_error == "no answer within 50ms"
        assert any(
            "'harbor'" in r.getMessage() and "no answer within 50ms" in r.getMessage()
            for r in caplog.records
        )

    run(scenario())


def test_reading_the_snapshot_during_a_hung_fetch_returns_immediately() -> None:
    async def scenario() -> None:
        sources = Sources({"harbor": {"library": True}})
        refresher = Refresher(config(HARBOR), source_factory=sources, clock=FakeClock())
        await refresher.refresh("harbor")
        sources.current("harbor").hang = True
        sources.current("harbor").entered.clear()
        hung = asyncio.create_task(refresher.refresh("harbor"))
        await sources.current("harbor").entered.wait()

        started = time.perf_counter()
        for _ in range(1000):
            snapshot = refresher.snapshot
            refresher.readiness()
        elapsed = time.perf_counter() - started

        assert elapsed < 0.5
        assert snapshot.registries["harbor"].space_public("library") is True
        assert not hung.done()
        hung.cancel()

    run(scenario())


def test_unexpected_source_exceptions_are_failures_not_crashes() -> None:
    async def scenario() -> None:
        sources = Sources({"harbor": {"library": True}})
        refresher = Refresher(config(HARBOR), source_factory=sources, clock=FakeClock())
        await refresher.refresh("harbor")
        sources.current("harbor").error = KeyError("projects")
        assert not await refresher.refresh("harbor")
        assert refresher.status()[0].last_error == "KeyError: 'projects'"
        sources.current("harbor").error = None
        assert await refresher.refresh("harbor")

    run(scenario())


def test_a_source_that_cannot_be_built_is_retried_on_the_next_refresh() -> None:
    async def scenario() -> None:
        attempts: list[str] = []

        def factory(registry: Registry) -> SpaceSource:
            attempts.append(registry.name)
            if len(attempts) == 1:
                raise SourceError("credentials file /secrets/password: no such file")
            return FakeSource(registry.name, {"library": True})

        refresher = Refresher(config(HARBOR), source_factory=factory, clock=FakeClock())
        assert not await refresher.refresh("harbor")
        assert "no such file" in (refresher.status()[0].last_error or "")
        assert await refresher.refresh("harbor")
        assert len(attempts) == 2

    run(scenario())


# --------------------------------------------------------------------------- background tasks


def test_each_registry_is_refreshed_on_its_own_interval() -> None:
    async def scenario() -> None:
        sources = Sources({"fast": {"a": True}, "slow": {"b": True}})
        refresher = Refresher(config(TWO_REGISTRIES), source_factory=sources, rng=random.Random(1))
        async with refresher:
            await until(lambda: "fast" in sources.built and sources.current("fast").fetches >= 4)
            assert sources.current("slow").fetches == 1
            assert refresher.readiness()[0]
        assert sources.current("fast").closed
        assert sources.current("slow").closed

    run(scenario())


def test_a_registry_down_at_start_becomes_ready_once_it_answers() -> None:
    async def scenario() -> None:
        sources = Sources({"harbor": {"library": True}})
        sources.error = SourceError("connection refused")
        refresher = Refresher(
            config(HARBOR), source_factory=sources, retry_initial=0.01, jitter=0.0
        )
        async with refresher:
            await until(lambda: refresher.status()[0].failures >= 2)
            assert not refresher.readiness()[0]
            sources.current("harbor").error = None
            await until(lambda: refresher.readiness()[0])
            # A 1h interval, yet the retries came quickly: failures back off from 10ms.
            assert refresher.snapshot.registries["harbor"].space_public("library") is True

    run(scenario())


# --------------------------------------------------------------------------- namespaces


def test_the_webhook_is_not_ready_until_the_namespace_map_has_listed_once() -> None:
    text = """
registries:
  - {name: h, type: harbor, url: "https://h.example.com", spaces: [{name: team-a, public: false}]}
bindings:
  - {registry: h, space: team-a, workspaces: ["101"]}
"""

    async def scenario() -> None:
        namespaces = NamespaceMap(WS)
        refresher = Refresher(config(text), source_factory=Sources(), namespaces=namespaces)
        async with refresher:
            ready, reason = refresher.readiness()
            assert not ready
            assert "namespace" in reason
            namespaces.replace({"team-a-dev": {WS: "101"}})
            refresher.namespaces_changed()
            await until(lambda: refresher.readiness()[0])
            assert image_allowed(refresher, "team-a-dev", "h.example.com/team-a/app")

    run(scenario())


def test_a_burst_of_namespace_changes_is_one_rebuild_and_arrives_at_once() -> None:
    async def scenario() -> None:
        registry = CollectorRegistry()
        namespaces = listed_map()
        refresher = Refresher(
            config(HARBOR),
            source_factory=Sources(),
            namespaces=namespaces,
            metrics=RefreshMetrics(registry),
        )
        async with refresher:
            version = refresher.snapshot.version
            for i in range(500):
                namespaces.apply(f"ns-{i}", {WS: "101"})
                refresher.namespaces_changed()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert refresher.snapshot.version == version + 1
            assert len(refresher.snapshot.namespaces) == 500
            assert metric(registry, "spacegate_namespaces") == 500

    run(scenario())


def test_namespace_changes_reported_from_another_thread_are_applied() -> None:
    async def scenario() -> None:
        namespaces = listed_map()
        refresher = Refresher(config(HARBOR), source_factory=Sources(), namespaces=namespaces)
        async with refresher:
            namespaces.apply("team-b", {WS: "102"})
            thread = threading.Thread(target=refresher.namespaces_changed)
            thread.start()
            thread.join()
            await until(lambda: "team-b" in refresher.snapshot.namespaces)

    run(scenario())


# --------------------------------------------------------------------------- config reload


def test_a_config_reload_keeps_spaces_of_unchanged_registries_and_relists_changed_ones() -> None:
    before = """
registries:
  - {name: keep, type: harbor, url: "https://keep.example.com", refreshInterval: 1h}
  - {name: move, type: harbor, url: "https://old.example.com", refreshInterval: 1h}
  - {name: gone, type: harbor, url: "https://gone.example.com", refreshInterval: 1h}
"""
    after = """
registries:
  - {name: keep, type: harbor, url: "https://keep.example.com", refreshInterval: 2h}
  - {name: move, type: harbor, url: "https://new.example.com", refreshInterval: 1h}
  - {name: added, type: harbor, url: "https://added.example.com", refreshInterval: 1h}
"""

    async def scenario() -> None:
        registry = CollectorRegistry()
        sources = Sources(
            {"keep": {"k": True}, "move": {"m": True}, "gone": {"g": True}, "added": {"a": True}}
        )
        refresher = Refresher(
            config(before), source_factory=sources, metrics=RefreshMetrics(registry)
        )
        async with refresher:
            await until(lambda: refresher.readiness()[0])
            gone = sources.current("gone")
            sources.initial["move"] = {"moved": True}

            await refresher.apply_config(config(after))

            snapshot = refresher.snapshot
            assert snapshot.registries["keep"].space_public("k") is True
            assert snapshot.registries["keep"].registry.refresh_interval == 7200
            assert len(sources.built["keep"]) == 1
            assert "gone" not in snapshot.registries
            assert gone.closed
            assert metric(registry, "spacegate_registry_spaces", {"registry": "gone"}) is None
            await until(lambda: refresher.readiness()[0])
            snapshot = refresher.snapshot
            assert snapshot.registries["move"].space_public("moved") is True
            assert snapshot.registries["move"].space_public("m") is None
            assert snapshot.registries["added"].space_public("a") is True

    run(scenario())


def test_a_credentials_change_builds_a_new_source_but_keeps_the_spaces_meanwhile() -> None:
    before = """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    credentials: {usernameFile: /s/old-user, passwordFile: /s/old-password}
"""
    after = before.replace("old-", "new-")

    async def scenario() -> None:
        sources = Sources({"harbor": {"team-a": False}})
        refresher = Refresher(config(before), source_factory=sources, clock=FakeClock())
        await refresher.refresh("harbor")
        old = sources.current("harbor")

        await refresher.apply_config(config(after))

        assert old.closed
        assert refresher.snapshot.registries["harbor"].space_public("team-a") is False
        assert refresher.readiness()[0]
        await refresher.refresh("harbor")
        assert len(sources.built["harbor"]) == 2

    run(scenario())


def test_a_namespace_list_older_than_max_staleness_makes_the_webhook_unready() -> None:
    text = """
policy: {maxStaleness: 1m}
namespaces: {}
"""
    clock = FakeClock()
    namespaces = listed_map(clock, **{"team-a-dev": "101"})
    refresher = Refresher(
        config(text), source_factory=Sources(), namespaces=namespaces, clock=clock
    )
    clock.now += 60
    assert refresher.readiness()[0]
    clock.now += 1
    ready, reason = refresher.readiness()
    assert not ready
    assert "namespace list is 61s old" in reason
    assert refresher.snapshot.namespace("team-a-dev").workspace == "101"


# --------------------------------------------------------------------------- the cluster's copy

COPY = Copy(
    {
        "harbor": RegistryCopy(
            "harbor", "https://harbor.example.com", {"library": True, "team-a": False}
        )
    },
    written_at=1_800_000_000.0,
)


def test_a_replica_that_cannot_list_a_harbor_serves_from_the_clusters_copy_marked_stale() -> None:
    async def scenario() -> None:
        registry = CollectorRegistry()
        clock = FakeClock()
        sources = Sources()
        sources.error = SourceError("connection refused")
        refresher = Refresher(
            config(HARBOR), source_factory=sources, clock=clock, metrics=RefreshMetrics(registry)
        )
        assert not await refresher.refresh("harbor")
        assert refresher.needs_copy()

        assert refresher.adopt(COPY, now=COPY.written_at + 90)

        assert image_allowed(refresher, "team-a-dev", "harbor.example.com/team-a/app")
        assert not image_allowed(refresher, "other", "harbor.example.com/team-a/app")
        assert refresher.snapshot.registries["harbor"].copied
        assert refresher.readiness(staleness=False)[0]  # the probe keeps it in service
        ready, reason = refresher.readiness()
        assert not ready
        assert "last-known-good copy" in reason and "(90s old)" in reason
        assert "connection refused" in reason
        assert (
            metric(registry, "spacegate_registry_last_known_good_copy", {"registry": "harbor"}) == 1
        )

    run(scenario())


def test_the_replicas_own_listing_replaces_the_copy() -> None:
    async def scenario() -> None:
        registry = CollectorRegistry()
        sources = Sources({"harbor": {"library": True}})
        sources.error = SourceError("connection refused")
        refresher = Refresher(
            config(HARBOR),
            source_factory=sources,
            clock=FakeClock(),
            metrics=RefreshMetrics(registry),
        )
        await refresher.refresh("harbor")
        refresher.adopt(COPY, now=COPY.written_at)
        sources.current("harbor").error = None

        assert await refresher.refresh("harbor")

        assert not refresher.snapshot.registries["harbor"].copied
        assert not image_allowed(refresher, "team-a-dev", "harbor.example.com/team-a/app")
        assert refresher.readiness()[0]
        assert not refresher.needs_copy()
        assert (
            metric(registry, "spacegate_registry_last_known_good_copy", {"registry": "harbor"}) == 0
        )

    run(scenario())


def test_a_copy_never_stands_in_for_the_replicas_own_data() -> None:
    async def scenario() -> None:
        sources = Sources({"harbor": {"library": True}})
        refresher = Refresher(config(HARBOR), source_factory=sources, clock=FakeClock())
        await refresher.refresh("harbor")
        sources.current("harbor").error = SourceError("HTTP 503")
        await refresher.refresh("harbor")  # failing now: its own older data still wins

        assert not refresher.needs_copy()
        assert not refresher.adopt(COPY, now=COPY.written_at)
        assert dict(refresher.snapshot.registries["harbor"].spaces) == {"library": True}

    run(scenario())


def test_a_slow_first_listing_is_given_a_grace_before_the_copy_stands_in() -> None:
    sources_hang = Sources()
    sources_hang.hang = True

    async def hanging() -> None:
        clock = FakeClock()
        refresher = Refresher(config(HARBOR), source_factory=sources_hang, clock=clock)
        await refresher.start()
        try:
            clock.now += COPY_GRACE / 2
            assert not refresher.adopt(COPY, now=COPY.written_at)
            clock.now += COPY_GRACE
            assert refresher.adopt(COPY, now=COPY.written_at)
            assert refresher.snapshot.registries["harbor"].copied
        finally:
            await refresher.aclose()

    run(hanging())


def test_a_copy_of_another_server_is_not_used() -> None:
    async def scenario() -> None:
        sources = Sources()
        sources.error = SourceError("connection refused")
        refresher = Refresher(config(HARBOR), source_factory=sources, clock=FakeClock())
        await refresher.refresh("harbor")
        elsewhere = Copy(
            {"harbor": RegistryCopy("harbor", "https://old-harbor.example.com", {"team-a": False})},
            COPY.written_at,
        )
        assert not refresher.adopt(elsewhere, now=COPY.written_at)
        assert not refresher.readiness(staleness=False)[0]  # still waiting for its listing

    run(scenario())


def test_with_persist_off_no_copy_is_used() -> None:
    async def scenario() -> None:
        sources = Sources()
        sources.error = SourceError("connection refused")
        text = HARBOR + "lastKnownGood: {persist: false}\n"
        refresher = Refresher(config(text), source_factory=sources, clock=FakeClock())
        await refresher.refresh("harbor")
        assert not refresher.needs_copy()
        assert not refresher.adopt(COPY, now=COPY.written_at)

    run(scenario())


def test_a_newer_copy_replaces_an_older_one_while_the_registry_is_still_down() -> None:
    async def scenario() -> None:
        sources = Sources()
        sources.error = SourceError("connection refused")
        refresher = Refresher(config(HARBOR), source_factory=sources, clock=FakeClock())
        await refresher.refresh("harbor")
        refresher.adopt(COPY, now=COPY.written_at)
        assert not refresher.adopt(COPY, now=COPY.written_at + 5)  # the same copy: no rebuild
        newer = Copy(
            {"harbor": RegistryCopy("harbor", "https://harbor.example.com", {"team-a": True})},
            COPY.written_at + 60,
        )
        assert refresher.adopt(newer, now=newer.written_at)
        assert image_allowed(refresher, "other", "harbor.example.com/team-a/app")

    run(scenario())
