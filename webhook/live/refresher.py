"""The snapshot cache: keeps the admission snapshot current from live sources.

Admission must answer in milliseconds whatever the registries do, so decisions read a plain
attribute (``Refresher.snapshot``) that is replaced, never mutated, by this refresher. Each
listed registry is polled by its own task on its own ``refreshInterval`` (jittered, so many
replicas do not hit a Harbor in lockstep); a failed listing keeps that registry's
last-known-good spaces, is counted, and is logged on one line naming the registry. A
namespace change rebuilds the snapshot on the next loop turn, coalescing bursts (the initial
list of 10,000 namespaces is one rebuild, not 10,000).

Readiness answers a different question than "what do we decide": it is false until every
Harbor without static spaces has been listed once (and the namespace list has arrived, when
a namespace source is used), and false again once such a registry's data is older than
``policy.maxStaleness``. Decisions keep using the last-known-good data either way; readiness
only tells Kubernetes (and the operator) that the data may be wrong.

A Docker Registry's catalog is listed too when it declares no static spaces (``spacegate
images`` and ``spacegate snapshot`` show it), but it never gates readiness: every Docker
Registry space is public (DESIGN.md decision rule 3), so its catalog cannot change a
decision and an outage of it must not take the webhook out of service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from prometheus_client import CollectorRegistry

from policy.config import Config, Registry, format_duration
from policy.snapshot import NamespaceInfo, Snapshot
from webhook.live.refresh_metrics import CacheMetrics
from webhook.live.sources import SourceError, SpaceSource

log = logging.getLogger("spacegate.cache")

SourceFactory = Callable[[Registry], SpaceSource]

DEFAULT_FETCH_TIMEOUT = 30.0
DEFAULT_RETRY_INITIAL = 1.0
DEFAULT_JITTER = 0.1


def is_listed(registry: Registry) -> bool:
    """Whether the registry's spaces come from the registry itself (no static ``spaces:``)."""
    return registry.spaces is None


def gates_readiness(registry: Registry) -> bool:
    """Whether the webhook is unready while this registry's spaces are unknown or stale.

    Only a listed Harbor qualifies: its spaces decide public/private. A Docker Registry's
    spaces are all public, so not knowing them changes no decision.
    """
    return is_listed(registry) and registry.type == "harbor"


class NamespaceFeed(Protocol):
    """What the refresher needs from a namespace source (``webhook.live.sources.namespaces``).

    ``last_sync_time`` is read with the refresher's clock, so both must use the same one
    (``time.monotonic`` by default).
    """

    @property
    def has_synced(self) -> bool:
        """The full namespace list has arrived at least once."""
        ...

    @property
    def namespaces(self) -> Mapping[str, NamespaceInfo]:
        """Namespace name -> workspace and mode, as of now (immutable)."""
        ...

    @property
    def last_sync_time(self) -> float | None:
        """When the feed last knew it was in sync (list, watch event, bookmark)."""
        ...


@dataclass(frozen=True, slots=True)
class RegistryStatus:
    """How one listed registry is doing, for readiness messages, logs and tests."""

    name: str
    gating: bool
    synced: bool
    age_seconds: float
    spaces: int
    failures: int
    last_error: str | None


class _Track:
    """The refresher's mutable bookkeeping for one listed registry.

    Only the event loop thread touches it; the snapshot built from it is immutable.
    """

    def __init__(self, registry: Registry, started_at: float) -> None:
        self.registry = registry
        self.source: SpaceSource | None = None
        self.spaces: Mapping[str, bool] | None = None  # last-known-good
        self.last_success: float | None = None
        self.since = started_at  # age reference while never synced
        self.last_error: str | None = None
        self.failures = 0  # consecutive
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _same_registry(a: Registry, b: Registry) -> bool:
    """Same registry endpoint: its listed spaces stay valid across a config reload."""
    return (a.type, a.url) == (b.type, b.url)


def _same_source(a: Registry, b: Registry) -> bool:
    """A source built for ``a`` can serve ``b`` unchanged."""
    return _same_registry(a, b) and a.credentials == b.credentials


class Refresher:
    """Implements :class:`webhook.state.SnapshotState` from live sources.

    Use as ``async with Refresher(...) as state:``; the tasks run while the block does. The
    ``clock`` (monotonic seconds) decides ages and staleness; tests inject a fake one.
    """

    def __init__(
        self,
        config: Config,
        *,
        source_factory: SourceFactory,
        namespace_feed: NamespaceFeed | None = None,
        metrics: CacheMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
        retry_initial: float = DEFAULT_RETRY_INITIAL,
        jitter: float = DEFAULT_JITTER,
    ) -> None:
        self._config = config
        self._factory = source_factory
        self._feed = namespace_feed
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._fetch_timeout = fetch_timeout
        self._retry_initial = retry_initial
        self._jitter = jitter
        self._tracks: dict[str, _Track] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._rebuild_pending = False
        self._version = 0
        self._namespaces_listed = False  # the current snapshot holds the feed's namespaces
        now = clock()
        for registry in config.registries:
            if is_listed(registry):
                self._tracks[registry.name] = _Track(registry, now)
        self._snapshot = self._build()

    # ------------------------------------------------------------------ SnapshotState

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot decisions use now: one attribute read, never waits."""
        return self._snapshot

    @property
    def config(self) -> Config:
        """The config the current snapshot was built from (changes on reload)."""
        return self._config

    @property
    def metrics_registry(self) -> CollectorRegistry | None:
        """Where the refresh metrics are registered, for ``/metrics`` to render too."""
        return None if self._metrics is None else self._metrics.registry

    def readiness(self, *, staleness: bool = True) -> tuple[bool, str]:
        """Ready when every gating registry was listed once and (``staleness``) none is stale."""
        statuses = [s for s in self.status() if s.gating]
        waiting = [s for s in statuses if not s.synced]
        if waiting:
            parts = [
                f"{s.name!r}" + (f" (last error: {s.last_error})" if s.last_error else "")
                for s in waiting
            ]
            return False, "waiting for the first listing of registry " + ", ".join(parts)
        if self._feed is not None and not self._namespaces_listed:
            return False, "waiting for the first namespace list from the Kubernetes API"
        limit = self._config.policy.max_staleness
        if not staleness:
            return True, (
                f"snapshot version {self._snapshot.version} loaded "
                f"(data {int(self.age_seconds())}s old; staleness not checked)"
            )
        stale = [
            f"registry {s.name!r} is {format_duration(int(s.age_seconds))} old"
            + (f" (last error: {s.last_error})" if s.last_error else "")
            for s in statuses
            if s.age_seconds > limit
        ]
        namespace_age = self._namespace_age()
        if namespace_age is not None and namespace_age > limit:
            stale.append(
                f"the namespace list is {format_duration(int(namespace_age))} old"
            )
        if stale:
            return False, (
                "stale data: "
                + ", ".join(stale)
                + f"; policy.maxStaleness is {format_duration(limit)}; "
                "decisions use the last-known-good data"
            )
        return True, (
            f"snapshot version {self._snapshot.version}, "
            f"data {int(self.age_seconds())}s old"
        )

    def age_seconds(self) -> float:
        """Age of the oldest data that gates readiness (time since start when never listed)."""
        ages = [s.age_seconds for s in self.status() if s.gating]
        namespace_age = self._namespace_age()
        if namespace_age is not None:
            ages.append(namespace_age)
        return max(ages, default=0.0)

    def _namespace_age(self) -> float | None:
        if self._feed is None:
            return None
        last = self._feed.last_sync_time
        if last is None:
            return None
        return max(0.0, self._clock() - last)

    def status(self) -> list[RegistryStatus]:
        """Per listed registry: synced, age, failures, last error."""
        now = self._clock()
        out = []
        for name, track in self._tracks.items():
            reference = track.last_success if track.last_success is not None else track.since
            out.append(
                RegistryStatus(
                    name=name,
                    gating=gates_readiness(track.registry),
                    synced=track.spaces is not None,
                    age_seconds=max(0.0, now - reference),
                    spaces=len(track.spaces or ()),
                    failures=track.failures,
                    last_error=track.last_error,
                )
            )
        return out

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Refresher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start one refresh task per listed registry; the first listings begin at once."""
        self._loop = asyncio.get_running_loop()
        self._running = True
        for track in self._tracks.values():
            self._start_task(track)

    async def aclose(self) -> None:
        """Stop the tasks and close the sources."""
        self._running = False
        tracks = list(self._tracks.values())
        for track in tracks:
            await self._stop_track(track)

    def _start_task(self, track: _Track) -> None:
        if track.task is None or track.task.done():
            track.task = asyncio.create_task(
                self._run(track), name=f"spacegate-refresh-{track.registry.name}"
            )

    async def _stop_track(self, track: _Track) -> None:
        task, track.task = track.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        source, track.source = track.source, None
        if source is not None:
            try:
                await source.aclose()
            except Exception as exc:  # closing must never take the refresher down
                log.warning(
                    "registry %r: closing its source failed: %s",
                    track.registry.name,
                    _one_line(str(exc)),
                )

    async def _run(self, track: _Track) -> None:
        backoff = self._retry_initial
        while True:
            try:
                ok = await self._refresh(track)
            except Exception:  # a bug here must not end this registry's refreshes for good
                log.exception("registry %r: refresh crashed", track.registry.name)
                ok = False
            interval = track.registry.refresh_interval
            if ok:
                backoff = self._retry_initial
                delay = interval
            else:
                # Retry sooner while failing (a registry coming up after us), never less
                # often than the configured interval.
                delay = min(interval, backoff)
                backoff = min(interval, backoff * 2)
            delay *= 1.0 + self._jitter * (2.0 * self._rng.random() - 1.0)
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ refreshing

    async def refresh(self, name: str) -> bool:
        """List one registry now; True on success. Unknown or static names are an error."""
        track = self._tracks.get(name)
        if track is None:
            raise KeyError(f"registry {name!r} is not listed live")
        return await self._refresh(track)

    async def sync_once(self) -> dict[str, str]:
        """List every listed registry once, concurrently; registry name -> error of failures."""
        tracks = list(self._tracks.values())
        results = await asyncio.gather(*(self._refresh(t) for t in tracks))
        return {
            t.registry.name: t.last_error or "failed"
            for t, ok in zip(tracks, results, strict=True)
            if not ok
        }

    async def _refresh(self, track: _Track) -> bool:
        async with track.lock:
            name = track.registry.name
            started = time.perf_counter()
            try:
                if track.source is None:
                    track.source = self._factory(track.registry)
                async with asyncio.timeout(self._fetch_timeout):
                    listed = await track.source.fetch()
                spaces = {str(name): bool(public) for name, public in listed.items()}
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                error = f"no answer within {format_duration(self._fetch_timeout)}"
                self._failed(track, error, time.perf_counter() - started)
                return False
            except SourceError as exc:
                self._failed(track, _one_line(str(exc)), time.perf_counter() - started)
                return False
            except Exception as exc:  # a bug or an unexpected client error: keep going
                error = _one_line(f"{type(exc).__name__}: {exc}")
                self._failed(track, error, time.perf_counter() - started)
                return False
            if self._tracks.get(name) is not track:
                return True  # removed by a config reload while fetching: drop the result
            elapsed = time.perf_counter() - started
            first = track.spaces is None
            recovered_after = track.failures
            track.spaces = spaces
            track.last_success = self._clock()
            track.last_error = None
            track.failures = 0
            if self._metrics is not None:
                self._metrics.refresh_duration.labels(name).observe(elapsed)
                self._metrics.last_success.labels(name).set_to_current_time()
            fields = {"registry": name, "spaces": len(spaces), "seconds": round(elapsed, 3)}
            if first:
                log.info("registry %r: listed %d spaces", name, len(spaces),
                         extra={"fields": fields})
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
            self.rebuild()
            return True

    def _failed(self, track: _Track, error: str, elapsed: float) -> None:
        name = track.registry.name
        track.failures += 1
        track.last_error = error
        if self._metrics is not None:
            self._metrics.refresh_duration.labels(name).observe(elapsed)
            self._metrics.refresh_failures.labels(name).inc()
        fields = {"registry": name, "error": error, "failures": track.failures}
        if track.last_success is None:
            log.warning(
                "registry %r: listing spaces failed (never listed yet): %s",
                name,
                error,
                extra={"fields": fields},
            )
        else:
            age = max(0.0, self._clock() - track.last_success)
            log.warning(
                "registry %r: listing spaces failed, keeping the spaces listed %s ago: %s",
                name,
                format_duration(int(age)),
                error,
                extra={"fields": {**fields, "ageSeconds": round(age, 3)}},
            )

    # ------------------------------------------------------------------ snapshot

    def rebuild(self) -> None:
        """Build the next snapshot version from the current data and swap it in."""
        self._rebuild_pending = False
        self._snapshot = self._build()

    def namespaces_changed(self) -> None:
        """The namespace feed saw a change: rebuild on the next loop turn.

        Safe to call from any thread (a watch running in an executor) and as often as
        events arrive: calls before the rebuild runs are coalesced into one.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            self.rebuild()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._schedule_rebuild()
            return
        try:
            loop.call_soon_threadsafe(self._schedule_rebuild)
        except RuntimeError:  # the loop closed meanwhile: nobody reads snapshots any more
            return

    def _schedule_rebuild(self) -> None:
        if self._rebuild_pending or self._loop is None:
            return
        self._rebuild_pending = True
        self._loop.call_soon(self._rebuild_if_pending)

    def _rebuild_if_pending(self) -> None:
        if self._rebuild_pending:
            self.rebuild()

    def _build(self) -> Snapshot:
        spaces = {
            name: track.spaces for name, track in self._tracks.items() if track.spaces is not None
        }
        # Until the namespace list arrives, the config's static map stands in.
        namespaces: Mapping[str, NamespaceInfo] | None = None
        listed = self._feed is not None and self._feed.has_synced
        if listed and self._feed is not None:
            namespaces = self._feed.namespaces
        self._version += 1
        snapshot = Snapshot.build(
            self._config, spaces=spaces, namespaces=namespaces, version=self._version
        )
        self._namespaces_listed = listed
        if self._metrics is not None:
            self._metrics.namespaces.set(len(snapshot.namespaces))
            for name, state in snapshot.registries.items():
                self._metrics.spaces.labels(name).set(len(state.spaces))
        return snapshot

    # ------------------------------------------------------------------ config reload

    async def apply_config(self, config: Config) -> None:
        """Switch to a new config without a restart.

        Unchanged registries keep their source, task and spaces. A registry whose
        credentials changed gets a new source but keeps its spaces until relisted (same
        endpoint, same spaces); one whose type or URL changed starts over. Removed
        registries stop; new ones start listing at once.
        """
        old_tracks = self._tracks
        new_tracks: dict[str, _Track] = {}
        retired: list[_Track] = []
        fresh: list[_Track] = []
        now = self._clock()
        for registry in config.registries:
            if not is_listed(registry):
                continue
            old = old_tracks.get(registry.name)
            if old is not None and _same_source(old.registry, registry):
                old.registry = registry  # interval, hosts, workspace: read on next use
                new_tracks[registry.name] = old
                continue
            track = _Track(registry, now)
            if old is not None:
                retired.append(old)
                if _same_registry(old.registry, registry):
                    track.spaces = old.spaces
                    track.last_success = old.last_success
            new_tracks[registry.name] = track
            fresh.append(track)
        retired.extend(t for name, t in old_tracks.items() if name not in new_tracks)
        self._tracks = new_tracks
        self._config = config
        self.rebuild()
        if self._metrics is not None:
            for track in retired:
                if track.registry.name not in new_tracks:
                    self._metrics.forget(track.registry.name)
        for track in retired:
            await self._stop_track(track)
        if self._running:
            for track in fresh:
                self._start_task(track)
        changed = sorted(t.registry.name for t in fresh)
        removed = sorted(t.registry.name for t in retired if t.registry.name not in new_tracks)
        log.info(
            "config applied: snapshot version %d; registries relisted: %s; removed: %s",
            self._snapshot.version,
            ", ".join(changed) or "none",
            ", ".join(removed) or "none",
        )

    def set_namespace_feed(self, feed: NamespaceFeed | None) -> None:
        """Use another namespace feed (a new workspace label after a reload) and rebuild."""
        self._feed = feed
        self.rebuild()
