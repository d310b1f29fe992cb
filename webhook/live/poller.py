"""One registry's poller: lists its spaces on its own interval, keeps the last good list.

Each listed registry is polled by its own task on its own ``refreshInterval`` (jittered, so
many replicas do not hit a Harbor in lockstep). A failed listing keeps the registry's
last-known-good spaces, is counted, is logged on one line naming the registry, and is retried
sooner than the interval with exponential backoff (``webhook.clients.backoff``). A bug in a
listing never ends the task.

A registry never listed by this replica may be *seeded* from the cluster's last-known-good
copy (:meth:`RegistryPoller.seed`, ``policy.last_known_good``): its spaces then stand in,
marked as copied, until the poller's own first listing replaces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping

from policy.config import Registry
from policy.durations import format_duration
from policy.messages import single_line
from webhook.clients.backoff import Backoff
from webhook.clients.errors import SourceError
from webhook.live.readiness import RegistryStatus, gates_readiness
from webhook.live.refresh_metrics import RefreshMetrics
from webhook.live.sources import SpaceSource

log = logging.getLogger(__name__)

SourceFactory = Callable[[Registry], SpaceSource]


class RegistryPoller:
    """Lists one registry's spaces, now (:meth:`refresh`) or forever (:meth:`start`).

    Only the event loop thread touches it. ``on_listed`` is called after every successful
    listing (the refresher rebuilds the snapshot then).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        source_factory: SourceFactory,
        on_listed: Callable[[], None],
        metrics: RefreshMetrics | None,
        clock: Callable[[], float],
        rng: random.Random,
        fetch_timeout: float,
        retry_initial: float,
        jitter: float,
    ) -> None:
        self.registry = registry
        self._factory = source_factory
        self._on_listed = on_listed
        self._metrics = metrics
        self._clock = clock
        self._rng = rng
        self._fetch_timeout = fetch_timeout
        self._retry_initial = retry_initial
        self._jitter = jitter
        self.source: SpaceSource | None = None
        self.spaces: Mapping[str, bool] | None = None  # last-known-good
        # The spaces are the cluster's copy, not this poller's own listing (seed()).
        self.copied = False
        self.copied_as_of: float | None = None  # clock time the copy's content dates from
        self.copied_from: float | None = None  # the copy's writtenAt (Unix seconds)
        self.last_success: float | None = None
        self.since = clock()  # age reference while never listed
        self.last_error: str | None = None
        self.failures = 0  # consecutive
        self.retired = False  # replaced or removed by a config reload: results are dropped
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.registry.name

    def carry_over(self, previous: RegistryPoller) -> None:
        """Start from another poller's spaces (same endpoint, new credentials)."""
        self.spaces = previous.spaces
        self.last_success = previous.last_success
        self.copied = previous.copied
        self.copied_as_of = previous.copied_as_of
        self.copied_from = previous.copied_from

    def seed(self, spaces: Mapping[str, bool], written_at: float, age: float) -> bool:
        """Stand in with the cluster's copy of the spaces (written at ``written_at``, Unix
        seconds, ``age`` seconds ago) while this poller has never listed the registry; True
        when taken (a newer copy replaces an older one). Never over its own data."""
        if self.spaces is not None and not self.copied:
            return False
        if self.copied and self.copied_from == written_at:
            return False
        self.spaces = dict(spaces)
        self.copied = True
        self.copied_from = written_at
        self.copied_as_of = self._clock() - max(0.0, age)
        if self._metrics is not None:
            self._metrics.copied.labels(self.name).set(1)
        log.warning(
            "registry %r: not listed yet; serving the last-known-good copy in the cluster "
            "(%d spaces, written %s ago) until its own listing succeeds",
            self.name,
            len(spaces),
            format_duration(int(max(0.0, age))),
            extra={"fields": {"registry": self.name, "spaces": len(spaces)}},
        )
        return True

    def status(self, now: float) -> RegistryStatus:
        if self.copied and self.copied_as_of is not None:
            reference = self.copied_as_of
        elif self.last_success is not None:
            reference = self.last_success
        else:
            reference = self.since
        return RegistryStatus(
            name=self.name,
            gating=gates_readiness(self.registry),
            synced=self.spaces is not None,
            age_seconds=max(0.0, now - reference),
            spaces=len(self.spaces or ()),
            failures=self.failures,
            last_error=self.last_error,
            copied=self.copied,
        )

    # ------------------------------------------------------------------ the task

    def start(self) -> None:
        """Start polling; the first listing begins at once."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"spacegate-refresh-{self.name}")

    async def stop(self) -> None:
        """Stop polling and close the source."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        source, self.source = self.source, None
        if source is not None:
            try:
                await source.aclose()
            except Exception as exc:  # closing must never take the refresher down
                log.warning(
                    "registry %r: closing its source failed: %s", self.name, single_line(str(exc))
                )

    async def _run(self) -> None:
        while True:
            try:
                ok = await self.refresh()
            except Exception:  # a bug here must not end this registry's refreshes for good
                log.exception("registry %r: refresh crashed", self.name)
                ok = False
            interval = self.registry.refresh_interval
            # While failing, retry sooner (a registry coming up after us), never less often
            # than the configured interval; after a success, wait the interval.
            if ok:
                backoff = Backoff(interval, interval, jitter=self._jitter)
                delay = backoff.delay(0, self._rng)
            else:
                backoff = Backoff(self._retry_initial, interval, jitter=self._jitter)
                delay = backoff.delay(self.failures - 1, self._rng)
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ one listing

    async def refresh(self) -> bool:
        """List the spaces now; True on success. Never raises for a registry's failure."""
        async with self._lock:
            started = time.perf_counter()
            try:
                if self.source is None:
                    self.source = self._factory(self.registry)
                async with asyncio.timeout(self._fetch_timeout):
                    listed = await self.source.fetch()
                spaces = {str(name): bool(public) for name, public in listed.items()}
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                error = f"no answer within {format_duration(self._fetch_timeout)}"
                self._failed(error, time.perf_counter() - started)
                return False
            except SourceError as exc:
                self._failed(single_line(str(exc)), time.perf_counter() - started)
                return False
            except Exception as exc:  # a bug or an unexpected client error: keep going
                error = single_line(f"{type(exc).__name__}: {exc}")
                self._failed(error, time.perf_counter() - started)
                return False
            if self.retired:
                return True  # removed by a config reload while fetching: drop the result
            self._listed(spaces, time.perf_counter() - started)
            return True

    def _listed(self, spaces: dict[str, bool], elapsed: float) -> None:
        name = self.name
        first = self.spaces is None or self.copied
        recovered_after = self.failures
        self.spaces = spaces
        if self._metrics is not None:  # 0 from the first own listing on: the gauge is there
            self._metrics.copied.labels(name).set(0)
        self.copied = False
        self.copied_as_of = self.copied_from = None
        self.last_success = self._clock()
        self.last_error = None
        self.failures = 0
        if self._metrics is not None:
            self._metrics.refresh_duration.labels(name).observe(elapsed)
            self._metrics.last_success.labels(name).set_to_current_time()
        fields = {"registry": name, "spaces": len(spaces), "seconds": round(elapsed, 3)}
        if first:
            log.info("registry %r: listed %d spaces", name, len(spaces), extra={"fields": fields})
        elif recovered_after:
            log.info(
                "registry %r: listed %d spaces again after %d failed refreshes",
                name,
                len(spaces),
                recovered_after,
                extra={"fields": fields},
            )
        else:
            log.debug("registry %r: listed %d spaces", name, len(spaces))
        self._on_listed()

    def _failed(self, error: str, elapsed: float) -> None:
        name = self.name
        self.failures += 1
        self.last_error = error
        if self._metrics is not None:
            self._metrics.refresh_duration.labels(name).observe(elapsed)
            self._metrics.refresh_failures.labels(name).inc()
        fields = {"registry": name, "error": error, "failures": self.failures}
        if self.last_success is None:
            log.warning(
                "registry %r: listing spaces failed (never listed yet): %s",
                name,
                error,
                extra={"fields": fields},
            )
        else:
            age = max(0.0, self._clock() - self.last_success)
            log.warning(
                "registry %r: listing spaces failed, keeping the spaces listed %s ago: %s",
                name,
                format_duration(int(age)),
                error,
                extra={"fields": {**fields, "ageSeconds": round(age, 3)}},
            )
