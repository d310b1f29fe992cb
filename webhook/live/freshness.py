"""The freshness gate: whether the watch-fed part of the snapshot is current, and waiting for it.

Namespace labels and RegistrySpaceBinding objects reach a replica by watch. A watch that
breaks (an apiserver restart, a reset connection) misses what is written meanwhile, and an
apiserver that comes back may call the webhook before the reflector's backoff has ended:
a binding deleted in that gap would still admit its private images. So admission asks this
gate before an allow that rests on watch-fed state (``webhook.admission.freshness`` says
which allows do):

- a source is current when :attr:`~webhook.live.sources.reflector.Reflector.current` holds
  (its list succeeded and its watch is established with no failure since);
- a review arriving proves the apiserver is up, so :meth:`WatchFreshness.wait_current`
  wakes each source that is not current (each at most once a second: a flood of reviews is
  not a reconnect storm), waits up to its budget, and then rebuilds the snapshot at once if
  a source caught up since the last build, so the review is decided on what the relist
  brought and not on the snapshot the refresher would rebuild a loop turn later;
- what is still not current after the budget is returned, and admission refuses that allow
  for a retry.

It implements :class:`webhook.state.Freshness`, so admission never imports this module or the
Kubernetes client; ``spacegate_watch_current`` (:meth:`WatchFreshness.collector`) shows each
source's state at scrape time, and ``/readyz`` says which is not current.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["WatchFreshness", "WatchSource"]

# How often a waiting review looks again: reconnecting and relisting take tens of
# milliseconds on a healthy apiserver, and only reviews that need a source wait.
POLL_SECONDS = 0.01


class WatchSource(Protocol):
    """What the gate needs of a reflector (:class:`~webhook.live.sources.reflector.Reflector`)."""

    what: str
    epoch: int  # times it became current: a change means the snapshot must be rebuilt
    not_current_reason: str | None
    wakes: int  # wake-ups that cut a backoff short
    wakes_refused: int  # wake-ups refused as too soon after the last

    @property
    def current(self) -> bool: ...

    def wake(self) -> bool: ...


class WatchFreshness:
    """Implements :class:`webhook.state.Freshness` over the sources ``sources()`` names now.

    ``sources`` is called each time (a reload may swap the namespace watch); ``rebuild``
    builds and swaps in a new snapshot from the current maps (the refresher's); both are
    used on the event loop's thread only.
    """

    def __init__(
        self,
        sources: Callable[[], Sequence[WatchSource]],
        rebuild: Callable[[], None],
        *,
        poll: float = POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sources = sources
        self._rebuild = rebuild
        self._poll = poll
        self._clock = clock
        self._built: tuple[tuple[int, int], ...] = ()

    def not_current(self) -> tuple[str, ...]:
        """Why each source is not current now (empty: all are)."""
        return tuple(_why(source) for source in self._sources() if not source.current)

    async def wait_current(self, budget: float) -> tuple[str, ...]:
        """Wake, wait up to ``budget`` seconds, rebuild if a source caught up (see above)."""
        deadline = self._clock() + budget
        while True:
            behind = [source for source in self._sources() if not source.current]
            if not behind:
                break
            remaining = deadline - self._clock()
            if remaining <= 0:
                return tuple(_why(source) for source in behind)
            for source in behind:
                source.wake()
            await asyncio.sleep(min(self._poll, remaining))
        marks = tuple((id(source), source.epoch) for source in self._sources())
        if marks != self._built:
            # Set first: the rebuild reads maps the relist filled before the epoch moved.
            self._built = marks
            self._rebuild()
        return ()

    def collector(self) -> Collector:
        """``spacegate_watch_current{source}`` (1 while current) and
        ``spacegate_watch_wakeups_total{source,result}``, read at scrape time."""
        return _CurrentCollector(self._sources)


def _why(source: WatchSource) -> str:
    return f"the {source.what} watch is not current ({source.not_current_reason or 'unknown'})"


class _CurrentCollector(Collector):
    def __init__(self, sources: Callable[[], Sequence[WatchSource]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        family = GaugeMetricFamily(
            "spacegate_watch_current",
            "1 while a watch-fed source (namespace labels, RegistrySpaceBinding objects) is "
            "current: listed, and its watch established with no failure since; else 0 "
            "(allows that rest on it wait for it, then are refused for a retry).",
            labels=["source"],
        )
        wakeups = CounterMetricFamily(
            "spacegate_watch_wakeups_total",
            "Reviews that found a watch-fed source not current and cut its reconnect backoff "
            "short (result woken), or came too soon after the last such wake-up (too_soon).",
            labels=["source", "result"],
        )
        for source in self._sources():
            family.add_metric([source.what], 1.0 if source.current else 0.0)
            wakeups.add_metric([source.what, "woken"], float(source.wakes))
            wakeups.add_metric([source.what, "too_soon"], float(source.wakes_refused))
        yield family
        yield wakeups
