"""The refresher: keeps the admission snapshot current from live sources.

Admission must answer in milliseconds whatever the registries do, so decisions read a plain
attribute (:attr:`Refresher.snapshot`) that is replaced, never mutated. The refresher composes
the parts that each do one job:

- a :class:`~webhook.live.poller.RegistryPoller` per listed registry (its own interval,
  backoff, last-known-good spaces);
- the :class:`~webhook.live.namespace_map.NamespaceMap` the namespace reflector fills, when
  namespaces are watched, and the :class:`~webhook.live.binding_map.BindingMap` the binding
  reflector fills, when RegistrySpaceBinding objects are read;
- the pure :func:`~webhook.live.readiness.readiness` for ``/readyz``;
- the pure :func:`~webhook.live.reload.plan_reload` for config reloads.

A registry this replica cannot list when it starts is taken from the cluster's last-known-good
copy (:meth:`Refresher.adopt`, ``policy.last_known_good``) once its first listing failed or
:data:`COPY_GRACE` seconds passed without one, and only until its own listing succeeds.

A namespace or binding change rebuilds the snapshot on the next loop turn:
:meth:`namespaces_changed` (and :meth:`bindings_changed`) is the one place where bursts are
coalesced (the initial list of 10,000 namespaces is one rebuild, not 10,000), and it may be
called from any thread. Every new snapshot is announced
to the listeners (:meth:`add_listener`; the leader's loop is one): the refresher is a
:class:`webhook.state.SnapshotFeed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from types import TracebackType

from prometheus_client import CollectorRegistry

from policy.bindings import BindingObject, uses_objects
from policy.config import Config, Registry
from policy.last_known_good import Copy
from policy.snapshot import NamespaceInfo, Snapshot
from webhook.live.binding_map import BindingMap
from webhook.live.namespace_map import NamespaceMap
from webhook.live.poller import RegistryPoller, SourceFactory
from webhook.live.readiness import (
    BindingListStatus,
    NamespaceStatus,
    RegistryStatus,
    data_age,
    gates_readiness,
    is_listed,
    readiness,
)
from webhook.live.refresh_metrics import RefreshMetrics
from webhook.live.reload import plan_reload
from webhook.live.sources.impact import ImpactHolder
from webhook.state import ALWAYS_CURRENT, Freshness

__all__ = ["COPY_GRACE", "DEFAULT_FETCH_TIMEOUT", "Refresher", "SourceFactory"]

log = logging.getLogger(__name__)

DEFAULT_FETCH_TIMEOUT = 30.0
DEFAULT_RETRY_INITIAL = 1.0
DEFAULT_JITTER = 0.1
# Seconds a registry's first listing may take before the cluster's copy stands in (at once
# when that listing fails): a slow Harbor does not keep a starting replica unready.
COPY_GRACE = 3.0


class Refresher:
    """Implements :class:`webhook.state.SnapshotState` from live sources.

    Use as ``async with Refresher(...) as state:``; the pollers run while the block does.
    The ``clock`` (monotonic seconds) decides ages and staleness; tests inject a fake one.
    ``namespaces`` is the map of watched namespaces (None: the config's static map).
    """

    def __init__(
        self,
        config: Config,
        *,
        source_factory: SourceFactory,
        namespaces: NamespaceMap | None = None,
        metrics: RefreshMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
        retry_initial: float = DEFAULT_RETRY_INITIAL,
        jitter: float = DEFAULT_JITTER,
    ) -> None:
        self._config = config
        self._factory = source_factory
        self._namespaces = namespaces
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._fetch_timeout = fetch_timeout
        self._retry_initial = retry_initial
        self._jitter = jitter
        self._pollers: dict[str, RegistryPoller] = {
            registry.name: self._poller(registry)
            for registry in config.registries
            if is_listed(registry)
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._started = clock()
        self._rebuild_pending = False
        self._version = 0
        self._namespaces_listed = False  # the current snapshot holds the watched namespaces
        self._bindings: BindingMap | None = None
        self._binding_problem: Callable[[], str | None] = lambda: None
        self._bindings_listed = False  # the current snapshot holds the read binding objects
        self._impact: ImpactHolder | None = None
        self._listeners: list[Callable[[], None]] = []
        self._freshness: Freshness = ALWAYS_CURRENT
        self._snapshot = self._build()

    def _poller(self, registry: Registry) -> RegistryPoller:
        return RegistryPoller(
            registry,
            source_factory=self._factory,
            on_listed=self.rebuild,
            metrics=self._metrics,
            clock=self._clock,
            rng=self._rng,
            fetch_timeout=self._fetch_timeout,
            retry_initial=self._retry_initial,
            jitter=self._jitter,
        )

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
    def watches_namespaces(self) -> bool:
        """Namespaces come from the cluster (a namespace map), not the config's static map."""
        return self._namespaces is not None

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every new snapshot (:class:`webhook.state.SnapshotFeed`)."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    @property
    def metrics_registry(self) -> CollectorRegistry | None:
        """Where the refresh metrics are registered, for ``/metrics`` to render too."""
        return None if self._metrics is None else self._metrics.registry

    @property
    def freshness(self) -> Freshness:
        """Whether the watch-fed sources are current (``webhook.live.freshness``)."""
        return self._freshness

    def set_freshness(self, freshness: Freshness) -> None:
        """The gate over this state's watches (live mode sets it once they exist)."""
        self._freshness = freshness

    def readiness(self, *, staleness: bool = True) -> tuple[bool, str]:
        """Ready when every gating registry was listed once and (``staleness``) none is stale
        and every watch-fed source is current.

        A watch that is not current counts with staleness, not with the probe's check: every
        replica loses its watches when the apiserver restarts, and emptying the Service then
        would refuse even the images that need no tenant state.
        """
        ready, reason = readiness(
            self.status(),
            self._namespace_status(),
            max_staleness=self._config.policy.max_staleness,
            version=self._snapshot.version,
            staleness=staleness,
            bindings=self._binding_status(),
        )
        behind = self._freshness.not_current() if ready and staleness else ()
        if behind:
            return False, (
                "; ".join(behind) + ": allows that rest on it wait for it, then are refused "
                "for a retry"
            )
        return ready, reason

    def age_seconds(self) -> float:
        """Age of the oldest data that gates readiness (time since start when never listed)."""
        return data_age(self.status(), self._namespace_status(), self._binding_status())

    def status(self) -> list[RegistryStatus]:
        """Per listed registry: synced, age, failures, last error."""
        now = self._clock()
        return [poller.status(now) for poller in self._pollers.values()]

    def _namespace_status(self) -> NamespaceStatus | None:
        if self._namespaces is None:
            return None
        last = self._namespaces.last_sync_time
        age = None if last is None else max(0.0, self._clock() - last)
        return NamespaceStatus(listed=self._namespaces_listed, age_seconds=age)

    @property
    def reads_bindings(self) -> bool:
        """RegistrySpaceBinding objects are read from the cluster (a binding map is set)."""
        return self._bindings is not None

    def _binding_status(self) -> BindingListStatus | None:
        """The binding list, when it gates readiness: read, and counting for decisions."""
        if self._bindings is None or not uses_objects(self._config):
            return None
        last = self._bindings.last_sync_time
        age = None if last is None else max(0.0, self._clock() - last)
        return BindingListStatus(
            listed=self._bindings_listed, age_seconds=age, problem=self._binding_problem()
        )

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Refresher:
        await self.start()
        return self

    async def __aexit__(
        self,
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start one poller per listed registry; the first listings begin at once."""
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._started = self._clock()
        for poller in self._pollers.values():
            poller.start()

    async def aclose(self) -> None:
        """Stop the pollers and close their sources."""
        self._running = False
        for poller in list(self._pollers.values()):
            await poller.stop()

    # ------------------------------------------------------------------ refreshing

    async def refresh(self, name: str) -> bool:
        """List one registry now; True on success. Unknown or static names are an error."""
        poller = self._pollers.get(name)
        if poller is None:
            raise KeyError(f"registry {name!r} is not listed live")
        return await poller.refresh()

    async def sync_once(self) -> dict[str, str]:
        """List every listed registry once, concurrently; registry name -> error of failures."""
        pollers = list(self._pollers.values())
        results = await asyncio.gather(*(p.refresh() for p in pollers))
        return {
            poller.name: poller.last_error or "failed"
            for poller, ok in zip(pollers, results, strict=True)
            if not ok
        }

    # ------------------------------------------------------------------ the cluster's copy

    def needs_copy(self) -> bool:
        """Whether a gating registry has no listing of this replica's own yet (so the
        cluster's last-known-good copy may stand in for it; never with
        ``lastKnownGood.persist: false``)."""
        if not self._config.last_known_good.persist:
            return False
        return any(
            gates_readiness(p.registry) and (p.spaces is None or p.copied)
            for p in self._pollers.values()
        )

    def adopt(self, copy: Copy, now: float) -> bool:
        """Let ``copy`` (read from the cluster at Unix time ``now``) stand in for each gating
        registry this replica has not listed itself, once its first listing failed or took
        longer than :data:`COPY_GRACE`, and only for the same server; True when the snapshot
        changed. A registry's own listing always wins, and replaces the copy."""
        if not self._config.last_known_good.persist:
            return False
        waited = self._clock() - self._started >= COPY_GRACE
        age = max(0.0, now - copy.written_at)
        taken = False
        for name, poller in self._pollers.items():
            entry = copy.registries.get(name)
            if entry is None or not gates_readiness(poller.registry):
                continue
            if not entry.fits(poller.registry):
                continue
            if poller.spaces is None and not (waited or poller.failures > 0):
                continue
            taken = poller.seed(entry.spaces, copy.written_at, age) or taken
        if taken:
            self.rebuild()
        return taken

    # ------------------------------------------------------------------ snapshot

    def rebuild(self) -> None:
        """Build the next snapshot version from the current data, swap it in, and tell the
        listeners."""
        self._rebuild_pending = False
        self._snapshot = self._build()
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("snapshot listener failed")

    def bindings_changed(self) -> None:
        """The binding map changed: rebuild on the next loop turn (any thread; coalesced)."""
        self.namespaces_changed()

    def namespaces_changed(self) -> None:
        """The namespace map changed: rebuild on the next loop turn.

        Safe to call from any thread (the reflector's) and as often as events arrive: calls
        before the rebuild runs are coalesced into one.
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
            name: poller.spaces
            for name, poller in self._pollers.items()
            if poller.spaces is not None
        }
        copied = frozenset(name for name, p in self._pollers.items() if p.copied and name in spaces)
        # Until the namespace list arrives, the config's static map stands in.
        namespaces: Mapping[str, NamespaceInfo] | None = None
        listed = self._namespaces is not None and self._namespaces.has_synced
        if listed and self._namespaces is not None:
            namespaces = self._namespaces.namespaces
        # Objects count once listed, and only where their CRD is served.
        objects: Mapping[str, BindingObject] | None = None
        bindings_listed = self._bindings is not None and self._bindings.has_synced
        if bindings_listed and self._bindings is not None and self._bindings.served:
            objects = self._bindings.objects
        self._version += 1
        snapshot = Snapshot.build(
            self._config,
            spaces=spaces,
            namespaces=namespaces,
            binding_objects=objects,
            impact=None if self._impact is None else self._impact.index,
            version=self._version,
            copied=copied,
        )
        self._namespaces_listed = listed
        self._bindings_listed = bindings_listed
        if self._metrics is not None:
            self._metrics.namespaces.set(len(snapshot.namespaces))
            for name, state in snapshot.registries.items():
                self._metrics.spaces.labels(name).set(len(state.spaces))
        return snapshot

    # ------------------------------------------------------------------ config reload

    async def apply_config(self, config: Config) -> None:
        """Switch to a new config without a restart, as :func:`plan_reload` says."""
        plan = plan_reload({n: p.registry for n, p in self._pollers.items()}, config)
        old = self._pollers
        pollers: dict[str, RegistryPoller] = {}
        fresh: list[RegistryPoller] = []
        for registry in config.registries:
            name = registry.name
            if name in plan.keep:
                old[name].registry = registry  # interval, hosts, workspace: read on next use
                pollers[name] = old[name]
            elif name in plan.restart or name in plan.start:
                poller = self._poller(registry)
                if name in plan.carry_spaces:
                    poller.carry_over(old[name])
                pollers[name] = poller
                fresh.append(poller)
        retired = [old[name] for name in sorted(plan.restart | plan.stop)]
        for poller in retired:
            poller.retired = True
        self._pollers = pollers
        self._config = config
        self.rebuild()
        if self._metrics is not None:
            for name in plan.stop:
                self._metrics.forget(name)
        for poller in retired:
            await poller.stop()
        if self._running:
            for poller in fresh:
                poller.start()
        log.info(
            "config applied: snapshot version %d; registries relisted: %s; removed: %s",
            self._snapshot.version,
            ", ".join(plan.relisted) or "none",
            ", ".join(sorted(plan.stop)) or "none",
        )

    def set_namespaces(self, namespaces: NamespaceMap | None) -> None:
        """Read another namespace map (a new workspace label after a reload) and rebuild."""
        self._namespaces = namespaces
        self.rebuild()

    def set_bindings(
        self, bindings: BindingMap | None, problem: Callable[[], str | None] | None = None
    ) -> None:
        """Read this binding map (None: no objects read) and rebuild; ``problem`` says why
        the first list has not arrived, for readiness."""
        self._bindings = bindings
        self._binding_problem = problem or (lambda: None)
        self.rebuild()

    def set_impact(self, impact: ImpactHolder | None) -> None:
        """Put this holder's impact index into every snapshot, and rebuild."""
        self._impact = impact
        self.rebuild()
