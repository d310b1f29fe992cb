"""The freshness gate over the watch-fed sources: wake, wait, rebuild once, or say why not.

Sources here are scripted stand-ins for reflectors (``current``, ``epoch``, ``wake``); the
reflector's own side (when it is current, how wake-ups are bounded) is tested against the
Kubernetes fake in ``tests/webhook/live/sources/test_namespaces.py``.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, generate_latest

from webhook.live.freshness import WatchFreshness


class Source:
    def __init__(self, what: str, *, current: bool = True, catch_up_on_wake: int = 0) -> None:
        self.what = what
        self.epoch = 1 if current else 0
        self.not_current_reason: str | None = None if current else "the watch failed: reset"
        self.wakes = 0
        self.wakes_refused = 0
        self._current = current
        self._catch_up_on_wake = catch_up_on_wake  # wake-ups until it is current again

    @property
    def current(self) -> bool:
        return self._current

    def wake(self) -> bool:
        self.wakes += 1
        if self._catch_up_on_wake and self.wakes >= self._catch_up_on_wake:
            self.epoch += 1
            self._current = True
            self.not_current_reason = None
        return True


def gate(*sources: Source) -> tuple[WatchFreshness, list[int]]:
    rebuilds: list[int] = []
    return WatchFreshness(lambda: sources, lambda: rebuilds.append(1), poll=0.005), rebuilds


def test_current_sources_answer_at_once_and_rebuild_only_after_a_catch_up() -> None:
    namespaces, bindings = Source("namespace"), Source("RegistrySpaceBinding")
    freshness, rebuilds = gate(namespaces, bindings)

    assert asyncio.run(freshness.wait_current(2.0)) == ()
    assert asyncio.run(freshness.wait_current(2.0)) == ()
    assert len(rebuilds) == 1  # the first look; nothing caught up since

    bindings.epoch += 1  # a relist made it current again
    assert asyncio.run(freshness.wait_current(2.0)) == ()
    assert len(rebuilds) == 2
    assert namespaces.wakes == bindings.wakes == 0


def test_a_source_that_catches_up_when_woken_is_waited_for_and_the_snapshot_rebuilt() -> None:
    behind = Source("RegistrySpaceBinding", current=False, catch_up_on_wake=3)
    freshness, rebuilds = gate(Source("namespace"), behind)
    assert freshness.not_current() == (
        "the RegistrySpaceBinding watch is not current (the watch failed: reset)",
    )

    assert asyncio.run(freshness.wait_current(2.0)) == ()

    assert behind.wakes == 3
    assert freshness.not_current() == ()
    assert len(rebuilds) == 1


def test_a_source_still_behind_after_the_budget_is_named() -> None:
    behind = Source("namespace", current=False)
    freshness, rebuilds = gate(behind)

    started = time.monotonic()
    reasons = asyncio.run(freshness.wait_current(0.2))

    assert 0.2 <= time.monotonic() - started < 1.0
    assert reasons == ("the namespace watch is not current (the watch failed: reset)",)
    assert behind.wakes >= 1
    assert rebuilds == []


def test_metrics_show_each_source_s_state_and_wake_ups() -> None:
    behind = Source("namespace", current=False)
    behind.wakes, behind.wakes_refused = 2, 40
    freshness, _ = gate(behind, Source("RegistrySpaceBinding"))
    registry = CollectorRegistry()
    registry.register(freshness.collector())

    text = generate_latest(registry).decode()

    assert 'spacegate_watch_current{source="namespace"} 0.0' in text
    assert 'spacegate_watch_current{source="RegistrySpaceBinding"} 1.0' in text
    assert 'spacegate_watch_wakeups_total{result="woken",source="namespace"} 2.0' in text
    assert 'spacegate_watch_wakeups_total{result="too_soon",source="namespace"} 40.0' in text
