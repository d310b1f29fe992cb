"""Live mode: the snapshot state ``spacegate serve`` runs on in a cluster.

``serve`` hands a loaded config to a state factory and serves whatever state it yields.
:func:`open_live_state` opens live mode's state, which, for as long as its block runs:

- lists the spaces of every registry without static ``spaces:`` (``webhook.live.refresher``);
- mirrors namespace labels from the Kubernetes API when there is one to talk to (in a
  cluster, or with a kubeconfig), and otherwise uses the config's static ``namespaces:``
  map, with a warning, since namespaces created later would have no workspace;
- mirrors the RegistrySpaceBinding objects too, through the same API
  (``webhook.live.sources.bindings``), unless ``bindings.source`` is ``config``: unset, they
  count where their CRD is served; ``objects`` or ``both`` require it (readiness waits);
- mirrors the leader's impact index (``webhook.live.sources.impact``), which binding reviews
  read to warn about what a change would refuse;
- answers whether the namespace and binding mirrors are current, and waits for them, for
  admission (``webhook.live.freshness``, handed over as the state's ``freshness``): an allow
  that rests on them is not given from a broken watch;
- reads the leader's last-known-good copy of the registries' spaces
  (``webhook.live.sources.last_known_good``) while a Harbor has not been listed by this
  replica itself, so that one started during a registry outage serves, marked stale;
- watches the config file and applies a valid change without a restart
  (``webhook.live.config_watch``): unchanged registries keep their spaces, a changed
  ``workspaceLabel`` starts a new namespace watch and swaps it in once it has listed.

Everything that talks to the network is injectable (``source_factory``, ``api_client``) so
tests run the same code against fakes. Only reading happens here: the leader's work
(provisioning, the audit) runs beside this state, joined to it by ``webhook.cli.serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry

from policy.bindings import uses_objects
from policy.config import Config
from webhook.clients.errors import SourceError
from webhook.clients.kube import ApiClientFactory, kube_configured, load_api_client, own_namespace
from webhook.live.binding_map import BindingMap
from webhook.live.config_watch import DEFAULT_POLL_INTERVAL, ConfigWatcher
from webhook.live.freshness import WatchFreshness, WatchSource
from webhook.live.namespace_map import NamespaceMap
from webhook.live.readiness import is_listed
from webhook.live.refresh_metrics import RefreshMetrics
from webhook.live.refresher import DEFAULT_FETCH_TIMEOUT, Refresher, SourceFactory
from webhook.live.sources.bindings import BindingReflector
from webhook.live.sources.impact import ImpactHolder, ImpactReflector
from webhook.live.sources.last_known_good import CopyReader
from webhook.live.sources.namespaces import NamespaceReflector

log = logging.getLogger(__name__)

# How long a reload waits for a new namespace watch (new workspaceLabel) to list before
# giving up and keeping the old one.
NAMESPACE_SWAP_TIMEOUT = 30.0


def _default_source_factory() -> SourceFactory:
    from webhook.live.sources.factory import make_source

    return make_source


def _watch_timeout(config: Config) -> int:
    """Seconds one namespace watch stays open: well inside ``maxStaleness``.

    A quiet watch proves it is alive only when renewed (or by a bookmark), and a watch older
    than ``maxStaleness`` would make readiness fail on a healthy cluster.
    """
    return int(max(10.0, min(300.0, config.policy.max_staleness / 3)))


class _NamespaceWatch:
    """A namespace map and the reflector that fills it, started and stopped together."""

    def __init__(
        self,
        config: Config,
        refresher: Refresher,
        api_client: ApiClientFactory | None,
        clock: Callable[[], float],
    ) -> None:
        self.map = NamespaceMap(config.workspace_label, clock=clock)
        self.reflector = NamespaceReflector(
            self.map,
            api_client=None if api_client is None else api_client(),
            on_change=refresher.namespaces_changed,
            watch_timeout=_watch_timeout(config),
        )

    async def start(self) -> None:
        await self.reflector.start()

    async def wait_synced(self, timeout: float) -> bool:
        return await self.reflector.wait_synced(timeout)

    async def stop(self) -> None:
        await self.reflector.stop()


def _requires_crd(config: Config) -> bool:
    """``bindings.source`` names objects explicitly: their CRD must be served."""
    return config.binding_source in ("objects", "both")


class _BindingWatch:
    """A binding map and the reflector that fills it, started and stopped together."""

    def __init__(
        self,
        config: Config,
        refresher: Refresher,
        api_client: ApiClientFactory | None,
        clock: Callable[[], float],
    ) -> None:
        self.map = BindingMap(clock=clock)
        self.reflector = BindingReflector(
            self.map,
            required=_requires_crd(config),
            api_client=None if api_client is None else api_client(),
            on_change=refresher.bindings_changed,
            watch_timeout=_watch_timeout(config),
        )

    async def start(self, refresher: Refresher) -> None:
        await self.reflector.start()
        refresher.set_bindings(self.map, lambda: self.reflector.problem)

    async def stop(self) -> None:
        await self.reflector.stop()


class _ImpactWatch:
    """The leader's impact index, in spacegate's own namespace (the Lease's)."""

    def __init__(
        self, config: Config, refresher: Refresher, api_client: ApiClientFactory | None
    ) -> None:
        self.holder = ImpactHolder()
        self.reflector = ImpactReflector(
            self.holder,
            own_namespace(config.pull_secrets.credentials_namespace),
            api_client=None if api_client is None else api_client(),
            on_change=refresher.bindings_changed,
            watch_timeout=_watch_timeout(config),
        )

    async def start(self, refresher: Refresher) -> None:
        await self.reflector.start()
        refresher.set_impact(self.holder)


class _LiveState:
    """The pieces of one live state and how a config reload flows through them."""

    def __init__(
        self,
        refresher: Refresher,
        namespaces: _NamespaceWatch | None,
        api_client: ApiClientFactory | None,
        clock: Callable[[], float],
        *,
        bindings: _BindingWatch | None = None,
        impact: _ImpactWatch | None = None,
    ) -> None:
        self.refresher = refresher
        self.namespaces = namespaces
        self.bindings = bindings
        self.impact = impact
        self._api_client = api_client
        self._clock = clock

    async def reload(self, config: Config) -> None:
        old = self.refresher.config
        if config == old:
            return
        await self.refresher.apply_config(config)
        if self.namespaces is not None and config.workspace_label != old.workspace_label:
            await self._swap_namespace_watch(config)
        await self._follow_binding_source(config)

    async def _follow_binding_source(self, config: Config) -> None:
        """Start or stop reading binding objects as a reloaded ``bindings.source`` says."""
        if self.namespaces is None:  # no Kubernetes API: nothing to read objects from
            return
        wanted = uses_objects(config)
        if wanted and self.bindings is None:
            self.bindings = _BindingWatch(config, self.refresher, self._api_client, self._clock)
            await self.bindings.start(self.refresher)
            log.info("bindings.source %s: reading RegistrySpaceBinding objects", _source(config))
        elif not wanted and self.bindings is not None:
            old, self.bindings = self.bindings, None
            self.refresher.set_bindings(None)
            await old.stop()
            log.info("bindings.source config: RegistrySpaceBinding objects no longer count")
        elif self.bindings is not None:
            self.bindings.reflector.required = _requires_crd(config)

    async def _swap_namespace_watch(self, config: Config) -> None:
        """Watch with the new label; switch once it has listed, so decisions never see an
        empty namespace map in between."""
        fresh = _NamespaceWatch(config, self.refresher, self._api_client, self._clock)
        await fresh.start()
        if not await fresh.wait_synced(NAMESPACE_SWAP_TIMEOUT):
            await fresh.stop()
            log.error(
                "workspaceLabel changed to %s but the new namespace list did not arrive "
                "within %ds; keeping the old label's namespace map",
                config.workspace_label,
                int(NAMESPACE_SWAP_TIMEOUT),
            )
            return
        old, self.namespaces = self.namespaces, fresh
        self.refresher.set_namespaces(fresh.map)
        if old is not None:
            await old.stop()
        log.info("namespaces now read from label %s", config.workspace_label)

    def watch_sources(self) -> list[WatchSource]:
        """The reflectors whose state decisions rest on now (for the freshness gate)."""
        return [w.reflector for w in (self.namespaces, self.bindings) if w is not None]

    async def stop(self) -> None:
        if self.impact is not None:
            await self.impact.reflector.stop()
        if self.bindings is not None:
            await self.bindings.stop()
        if self.namespaces is not None:
            await self.namespaces.stop()


@asynccontextmanager
async def _running(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """``work`` as a task while the block runs; cancelled afterwards."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _source(config: Config) -> str:
    return config.binding_source or "unset (objects count where their CRD is served)"


@asynccontextmanager
async def open_live_state(
    config: Config,
    *,
    config_path: str | None = None,
    kube: bool | None = None,
    metrics_registry: CollectorRegistry | None = None,
    source_factory: SourceFactory | None = None,
    api_client: ApiClientFactory | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Refresher]:
    """The live state for ``config`` while the block runs.

    ``config_path`` is the file to watch for changes (None: no watching, e.g. the embedded
    demo). ``kube``: True forces the namespace watch (and fails when no API config loads),
    False disables it, None detects it (:func:`kube_configured`). ``metrics_registry`` is
    where the refresh metrics go (a fresh registry when None; the state's
    ``metrics_registry`` names it either way). ``clock`` (monotonic seconds) times
    staleness for both registries and namespaces.
    """
    use_kube = kube_configured() if kube is None else kube
    metrics = RefreshMetrics(metrics_registry or CollectorRegistry(auto_describe=True))
    refresher = Refresher(
        config,
        source_factory=source_factory or _default_source_factory(),
        metrics=metrics,
        clock=clock,
        fetch_timeout=fetch_timeout,
    )
    watch: _NamespaceWatch | None = None
    if use_kube:
        try:
            watch = _NamespaceWatch(config, refresher, api_client, clock)
            await watch.start()
        except SourceError as exc:
            if kube:  # asked for explicitly: a broken setup must not pass silently
                raise
            log.error("cannot watch namespaces, using the config's namespaces map: %s", exc)
            watch = None
        else:
            refresher.set_namespaces(watch.map)
            if config.namespaces:
                log.info(
                    "namespaces are read from the %s label; the config's namespaces map is ignored",
                    config.workspace_label,
                )
    if watch is None:
        why = (
            "namespace watch disabled"
            if kube is False
            else (
                "no Kubernetes API (not in a cluster, no kubeconfig)"
                if not use_kube
                else "namespace watch failed to start"
            )
        )
        log.warning(
            "%s: using the config's static namespaces map (%d namespaces); "
            "other namespaces have no workspace",
            why,
            len(config.namespaces),
        )
    bindings: _BindingWatch | None = None
    impact: _ImpactWatch | None = None
    if watch is not None and uses_objects(config):
        bindings = _BindingWatch(config, refresher, api_client, clock)
        await bindings.start(refresher)
        impact = _ImpactWatch(config, refresher, api_client)
        await impact.start(refresher)
    elif _requires_crd(config):
        log.error(
            "bindings.source is %s but there is no Kubernetes API to read "
            "RegistrySpaceBinding objects from; only the config's bindings count",
            config.binding_source,
        )
    listed = [r.name for r in config.registries if is_listed(r)]
    log.info(
        "live mode: listing spaces of %s; bindings from %s",
        ", ".join(listed) if listed else "no registry (all spaces are static)",
        "the config file"
        if bindings is None or not uses_objects(config)
        else f"RegistrySpaceBinding objects and the config (bindings.source: {_source(config)})",
    )
    live = _LiveState(refresher, watch, api_client, clock, bindings=bindings, impact=impact)
    freshness = WatchFreshness(live.watch_sources, refresher.rebuild)
    refresher.set_freshness(freshness)
    metrics.registry.register(freshness.collector())
    async with AsyncExitStack() as stack:
        stack.push_async_callback(live.stop)
        await stack.enter_async_context(refresher)
        if watch is not None:
            reader = CopyReader(
                refresher,
                own_namespace(config.pull_secrets.credentials_namespace),
                load_api_client() if api_client is None else api_client(),
            )
            await stack.enter_async_context(_running(reader.run(), "spacegate-last-known-good"))
        if config_path is not None:
            await stack.enter_async_context(
                ConfigWatcher(
                    config_path, live.reload, interval=poll_interval, initial_config=config
                )
            )
        yield refresher
