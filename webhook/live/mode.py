"""Live mode: the snapshot state ``spacegate serve`` runs on in a cluster.

``serve`` hands a loaded config to a state factory and serves whatever state it yields.
:func:`live_state_factory` returns the factory for live mode, which, for the lifetime of the
server:

- lists the spaces of every registry without static ``spaces:`` (``webhook.live.refresher``);
- mirrors namespace labels from the Kubernetes API when there is one to talk to (in a
  cluster, or with a kubeconfig), and otherwise uses the config's static ``namespaces:``
  map, with a warning, since namespaces created later would have no workspace;
- watches the config file and applies a valid change without a restart
  (``webhook.live.config_watch``): unchanged registries keep their spaces, a changed
  ``workspaceLabel`` starts a new namespace watch and swaps it in once it has listed.

Everything that talks to the network is injectable (``source_factory``, ``api_client``) so
tests run the same code against fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from prometheus_client import CollectorRegistry, Gauge

from policy.config import Config
from webhook.clients.errors import SourceError
from webhook.clients.kube import ApiClientFactory, kube_configured, load_api_client, own_namespace
from webhook.leader.audit.findings import AuditMetrics, ChildAuditor, audit_forever
from webhook.leader.lease import LeaseElector
from webhook.leader.provisioning.secrets import SecretStore
from webhook.leader.provisioning.writer import (
    Provisioner,
    ProvisionMetrics,
    RobotAPIFactory,
    provision_forever,
)
from webhook.live.config_watch import DEFAULT_POLL_INTERVAL, ConfigWatcher
from webhook.live.namespace_map import NamespaceMap
from webhook.live.readiness import gates_readiness, is_listed
from webhook.live.refresh_metrics import RefreshMetrics
from webhook.live.refresher import DEFAULT_FETCH_TIMEOUT, Refresher, SourceFactory
from webhook.live.sources.namespaces import NamespaceReflector
from webhook.state import SnapshotState

log = logging.getLogger(__name__)

# Opens the live snapshot state for a loaded config, for as long as the server runs.
LiveStateOpener = Callable[[Config], AbstractAsyncContextManager[SnapshotState]]

# How long a reload waits for a new namespace watch (new workspaceLabel) to list before
# giving up and keeping the old one.
NAMESPACE_SWAP_TIMEOUT = 30.0
# A full provisioning pass this often even when nothing changed (a deleted Secret returns).
PROVISION_RESYNC_SECONDS = 300.0


def is_live(config: Config) -> bool:
    """Whether serving this config needs live registry data.

    True when a Harbor declares no static ``spaces:``: its projects decide public/private,
    so they must be listed from Harbor. A Docker Registry without ``spaces:`` does not make a
    config live: every Docker Registry space is public, so its catalog changes no decision.
    """
    return any(gates_readiness(registry) for registry in config.registries)


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


class _LiveState:
    """The pieces of one live state and how a config reload flows through them."""

    def __init__(
        self,
        refresher: Refresher,
        namespaces: _NamespaceWatch | None,
        api_client: ApiClientFactory | None,
        clock: Callable[[], float],
    ) -> None:
        self.refresher = refresher
        self.namespaces = namespaces
        self._api_client = api_client
        self._clock = clock

    async def reload(self, config: Config) -> None:
        old = self.refresher.config
        if config == old:
            return
        await self.refresher.apply_config(config)
        if self.namespaces is not None and config.workspace_label != old.workspace_label:
            await self._swap_namespace_watch(config)

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

    async def stop(self) -> None:
        if self.namespaces is not None:
            await self.namespaces.stop()


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
    robots_for: RobotAPIFactory | None = None,
) -> AsyncIterator[Refresher]:
    """The live state for ``config`` while the block runs; see :func:`live_state_factory`.

    ``clock`` (monotonic seconds) times staleness for both registries and namespaces.
    With ``pullSecrets.provision``, the provisioner runs beside it (:func:`provisioning`);
    ``robots_for`` builds its Harbor robot clients (tests inject fakes).
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
    listed = [r.name for r in config.registries if is_listed(r)]
    log.info(
        "live mode: listing spaces of %s",
        ", ".join(listed) if listed else "no registry (all spaces are static)",
    )
    live = _LiveState(refresher, watch, api_client, clock)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(live.stop)
        await stack.enter_async_context(refresher)
        if config_path is not None:
            await stack.enter_async_context(
                ConfigWatcher(
                    config_path, live.reload, interval=poll_interval, initial_config=config
                )
            )
        if config.pull_secrets.provision or config.audit.enabled:
            if watch is None:
                log.error(
                    "pullSecrets.provision or audit.enabled is on but there is no Kubernetes "
                    "API to work with; neither runs"
                )
            else:
                await stack.enter_async_context(
                    leader_work(config, refresher, api_client, metrics.registry, robots_for)
                )
        yield refresher


@asynccontextmanager
async def leader_work(
    config: Config,
    refresher: Refresher,
    api_client: ApiClientFactory | None,
    registry: CollectorRegistry,
    robots_for: RobotAPIFactory | None = None,
    *,
    resync: float = PROVISION_RESYNC_SECONDS,
) -> AsyncIterator[LeaseElector]:
    """What only the leader does, beside live mode: campaign for the Lease, and while leader
    provision pull secrets (``pullSecrets.provision``) and audit what runs
    (``audit.enabled``), on every snapshot change and periodically. Every replica keeps
    serving admission either way."""
    api = load_api_client() if api_client is None else api_client()
    home = own_namespace(config.pull_secrets.credentials_namespace)
    elector = LeaseElector(api, home)
    leader_gauge = Gauge(
        "spacegate_leader", "1 while this replica holds the leader Lease.", registry=registry
    )

    def leading() -> bool:
        leader = elector.is_leader
        leader_gauge.set(1 if leader else 0)
        return leader

    log.info("leader election: Lease %s/%s, identity %s", home, elector.name, elector.identity)
    tasks = [asyncio.create_task(elector.run(), name="spacegate-lease")]
    provisioner: Provisioner | None = None
    if config.pull_secrets.provision:
        if robots_for is None:
            from webhook.leader.provisioning.robots import HarborRobots

            robots_for = HarborRobots
        store = SecretStore(api, pull_secret_name=config.policy.pull_secret_name, home=home)
        provisioner = Provisioner(
            store,
            robots_for,
            rotate_every=config.pull_secrets.rotate_every,
            guard=elector.check,
            metrics=ProvisionMetrics(registry),
        )
        tasks.append(
            asyncio.create_task(
                provision_forever(
                    provisioner, lambda: refresher.snapshot, is_leader=leading, resync=resync
                ),
                name="spacegate-provisioner",
            )
        )
    if config.audit.enabled:
        reports = None if config.audit.reports == "none" else config.audit.reports
        auditor = ChildAuditor(report_format=reports, metrics=AuditMetrics(registry))
        tasks.append(
            asyncio.create_task(
                audit_forever(
                    auditor,
                    lambda: refresher.snapshot,
                    is_leader=leading,
                    interval=config.audit.interval,
                ),
                name="spacegate-audit",
            )
        )
    try:
        yield elector
    finally:
        for task in reversed(tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if provisioner is not None:
            await provisioner.aclose()
        api.close()  # type: ignore[no-untyped-call]


def live_state_factory(
    config_path: str | None,
    *,
    kube: bool | None = None,
    metrics_registry: CollectorRegistry | None = None,
    source_factory: SourceFactory | None = None,
    api_client: ApiClientFactory | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
) -> LiveStateOpener:
    """The ``state_factory`` for ``serve`` in live mode.

    ``config_path`` is the file to watch for changes (None: no watching, e.g. the embedded
    demo). ``kube``: True forces the namespace watch (and fails when no API config loads),
    False disables it, None detects it (:func:`kube_configured`). ``metrics_registry`` is
    where the refresh metrics go (a fresh registry when None; the state's
    ``metrics_registry`` names it either way).
    """

    def factory(config: Config) -> AbstractAsyncContextManager[SnapshotState]:
        return open_live_state(
            config,
            config_path=config_path,
            kube=kube,
            metrics_registry=metrics_registry,
            source_factory=source_factory,
            api_client=api_client,
            poll_interval=poll_interval,
        )

    return factory
