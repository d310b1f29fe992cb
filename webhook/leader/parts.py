"""The one factory of the leader's objects, for ``spacegate serve`` and ``spacegate provision``.

:func:`build_parts` makes the Lease elector, the Secrets store, the provisioner, the
audit runner, the impact index publisher and the binding status writer from a config and a
Kubernetes client, the same way for both commands: the
Lease and the robot credentials live in spacegate's own namespace
(``pullSecrets.credentialsNamespace``, else the pod's), and every write is guarded by the
elector. What a pass reads of the config (the pull Secret's name, ``rotateEvery``, the
report format) it reads from the snapshot of that pass, not from here.

:func:`leader_work` is how ``serve`` runs them beside live mode: it campaigns for the
Lease and runs the leader's loop (``webhook.leader.loop``) over a snapshot feed while its
block runs, then stops the loop, releases the Lease and closes what it opened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from kubernetes import client
from prometheus_client import CollectorRegistry

from policy.config import Config
from policy.last_known_good import persisted_registries
from webhook.clients.kube import ApiClientFactory, load_api_client, own_namespace
from webhook.clients.kube_writes import ThrottleMetrics
from webhook.leader.audit.child import ChildAuditor
from webhook.leader.audit.impact import ImpactPublisher
from webhook.leader.bindings.status import StatusWriter
from webhook.leader.jobs import AuditJob, BindingStatusJob, LastKnownGoodJob, ProvisioningJob
from webhook.leader.last_known_good import CopyWriter
from webhook.leader.lease import LeaseElector
from webhook.leader.loop import DEFAULT_SETTLE, Job, LeaderLoop
from webhook.leader.provisioning.robot_api import RobotAPIFactory
from webhook.leader.provisioning.secrets import SecretStore
from webhook.leader.provisioning.writer import Provisioner
from webhook.state import SnapshotFeed

log = logging.getLogger(__name__)

__all__ = ["LeaderParts", "build_parts", "leader_work", "wants_leader"]


def wants_leader(config: Config, *, reads_bindings: bool = False) -> bool:
    """Whether there is work only the leader does: provisioning, the audit, (when
    RegistrySpaceBinding objects are read) their statuses, or (with a Harbor listed live)
    the last-known-good copy of its spaces."""
    copy = config.last_known_good.persist and bool(persisted_registries(config))
    return config.pull_secrets.provision or config.audit.enabled or reads_bindings or copy


def _harbor_robots() -> RobotAPIFactory:
    from webhook.leader.provisioning.robots import HarborRobots

    return HarborRobots


@dataclass
class LeaderParts:
    """The leader's objects, sharing one API client."""

    api: client.ApiClient
    home: str
    elector: LeaseElector
    store: SecretStore
    provisioner: Provisioner
    auditor: ChildAuditor
    publisher: ImpactPublisher
    statuses: StatusWriter
    copy: CopyWriter

    async def aclose(self) -> None:
        """Close the Harbor clients (the API client is its opener's)."""
        await self.provisioner.aclose()


def build_parts(
    config: Config,
    api: client.ApiClient,
    *,
    robots_for: RobotAPIFactory | None = None,
    identity: str | None = None,
) -> LeaderParts:
    """The elector, store, provisioner and auditor for ``config`` over ``api``.

    ``robots_for`` builds Harbor robot clients (default: the real one; tests inject fakes).
    """
    home = own_namespace(config.pull_secrets.credentials_namespace)
    elector = LeaseElector(api, home, identity=identity)
    store = SecretStore(api, home=home)
    provisioner = Provisioner(store, robots_for or _harbor_robots(), guard=elector.check)
    publisher = ImpactPublisher(api, home, guard=elector.check)
    statuses = StatusWriter(api, guard=elector.check, clock=time.time)
    copy = CopyWriter(api, home, guard=elector.check)
    return LeaderParts(
        api, home, elector, store, provisioner, ChildAuditor(), publisher, statuses, copy
    )


@asynccontextmanager
async def leader_work(
    config: Config,
    feed: SnapshotFeed,
    *,
    api_client: ApiClientFactory | None = None,
    registry: CollectorRegistry | None = None,
    robots_for: RobotAPIFactory | None = None,
    settle: float = DEFAULT_SETTLE,
) -> AsyncIterator[LeaderParts]:
    """Campaign for the Lease and, while leader, provision, audit and write binding
    statuses as the snapshots of ``feed`` say (on or off, and everything else, per
    snapshot). Every replica keeps serving admission either way. Metrics go to
    ``registry``."""
    api = load_api_client() if api_client is None else api_client()
    parts = build_parts(config, api, robots_for=robots_for)
    elector = parts.elector
    throttled = None if registry is None else ThrottleMetrics(registry)
    parts.provisioner.throttle.metrics = throttled
    provisioning = ProvisioningJob(parts.provisioner, registry=registry)
    jobs: list[Job] = [
        provisioning,
        AuditJob(
            parts.auditor,
            lambda: elector.is_leader,
            registry=registry,
            publisher=parts.publisher,
            throttled=throttled,
        ),
        BindingStatusJob(parts.statuses, provisioning),
        LastKnownGoodJob(parts.copy, registry=registry),
    ]
    loop = LeaderLoop(elector, feed, jobs, settle=settle, registry=registry)
    log.info(
        "leader election: Lease %s/%s, identity %s", parts.home, elector.name, elector.identity
    )
    tasks = [
        asyncio.create_task(elector.run(), name="spacegate-lease"),
        asyncio.create_task(loop.run(), name="spacegate-leader"),
    ]
    for task in tasks:
        task.add_done_callback(_report_crash)
    try:
        yield parts
    finally:
        for task in reversed(tasks):  # the work first, then the Lease (released)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # a crash was logged already
        await parts.aclose()
        api.close()  # type: ignore[no-untyped-call]


def _report_crash(task: asyncio.Task[None]) -> None:
    """Say at once when the Lease or the loop stopped by itself (a bug): the leader's work
    would otherwise end in silence while admission goes on."""
    if not task.cancelled() and task.exception() is not None:
        log.error("leader: %s stopped: %r", task.get_name(), task.exception())
