"""The leader's jobs as its loop (``webhook.leader.loop``) runs them: what each reads, when.

- :class:`ProvisioningJob` — on with ``pullSecrets.provision``. It reads the snapshot's
  desired state (``policy.provisioning.desired_state``: which robots with which spaces, which
  namespaces get which entries) and the config; a pass starts when either differs, so a
  namespace created outside every workspace, or a registry listed again with the same
  projects, starts none. Every 5 minutes otherwise, so a Secret deleted by hand comes back.
- :class:`AuditJob` — on with ``audit.enabled``. Its decisions about running workloads
  depend on the config, each registry's spaces, and the workspace and mode of the
  namespaces they run in. A namespace that comes or goes changes no decision about a
  workload already running elsewhere (a new namespace's workloads are judged by admission
  as they are created), so only a namespace whose workspace or mode label changed counts.
  Every ``audit.interval`` otherwise. Bindings count too (the config's and the objects'):
  an unbinding is what strands running workloads. After each pass it publishes the impact
  index (``policy.impact``) that binding reviews read.
- :class:`BindingStatusJob` — on while RegistrySpaceBinding objects are read. It reads every
  object's desired status (``webhook.leader.bindings.conditions``) and, with provisioning
  on, the outcome of the last provisioning pass (its :meth:`revision` moves with it); a pass
  writes the statuses that differ. Every minute otherwise, so a status edited by hand, or a
  write that failed, is set right.

- :class:`LastKnownGoodJob` — on while a Harbor is listed live (and
  ``lastKnownGood.persist``). It reads the leader's own listings of those registries
  (``policy.last_known_good.own_listings``); a pass writes the copy replicas starting during
  an outage serve from, only when what it holds changes. Every 5 minutes otherwise (a copy
  deleted or edited by hand is put right).

All read their settings from the snapshot each time (on/off, interval, report format,
``pullSecretName``, ``rotateEvery``): a reloaded config applies from the next pass on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from policy.bindings import uses_objects
from policy.config import Config
from policy.last_known_good import RegistryCopy, own_listings, persisted_registries
from policy.provisioning import DesiredState, desired_state
from policy.snapshot import NamespaceInfo, RegistryState, Snapshot
from webhook.clients.kube_writes import ThrottleMetrics
from webhook.leader.audit.child import ChildAuditor
from webhook.leader.audit.impact import ImpactPublisher
from webhook.leader.audit.metrics import AuditMetrics
from webhook.leader.bindings.conditions import DesiredStatus, Provisioned, desired_statuses
from webhook.leader.bindings.status import StatusWriter
from webhook.leader.last_known_good import CopyMetrics, CopyWriter
from webhook.leader.loop import IncompletePass
from webhook.leader.provisioning.metrics import ProvisionMetrics
from webhook.leader.provisioning.writer import Provisioner

log = logging.getLogger(__name__)

__all__ = [
    "BINDING_STATUS_RESYNC_SECONDS",
    "PROVISION_RESYNC_SECONDS",
    "AuditJob",
    "AuditView",
    "BindingStatusJob",
    "BindingStatusView",
    "LastKnownGoodJob",
    "ProvisioningJob",
    "ProvisioningView",
]

# A full provisioning pass this often even when nothing changed (a deleted Secret returns).
PROVISION_RESYNC_SECONDS = 300.0
# Binding statuses compared with what they should say this often (a write is rare).
BINDING_STATUS_RESYNC_SECONDS = 60.0
# The last-known-good copy compared with the leader's listings this often.
LAST_KNOWN_GOOD_RESYNC_SECONDS = 300.0


@dataclass(frozen=True)
class ProvisioningView:
    """What provisioning reads of a snapshot."""

    desired: DesiredState
    config: Config


class ProvisioningJob:
    """Pull-secret provisioning (``pullSecrets.provision``), one :class:`Provisioner` pass
    at a time. Its metrics are registered on ``registry`` at the first pass."""

    name = "provisioning"

    def __init__(
        self,
        provisioner: Provisioner,
        *,
        registry: CollectorRegistry | None = None,
        resync: float = PROVISION_RESYNC_SECONDS,
    ) -> None:
        self.provisioner = provisioner
        self._registry = registry
        self._resync = resync
        #: The last pass's outcome (binding statuses report it), and a counter of passes.
        self.outcome: Provisioned | None = None
        self.passes = 0

    def revision(self) -> int:
        return 0

    def wanted(self, snapshot: Snapshot) -> bool:
        return snapshot.config.pull_secrets.provision

    def interval(self, snapshot: Snapshot) -> float:
        return self._resync

    def view(self, snapshot: Snapshot) -> ProvisioningView:
        return ProvisioningView(desired_state(snapshot), snapshot.config)

    def changed(self, before: object, after: object) -> bool:
        return before != after

    async def run(self, snapshot: Snapshot, view: object) -> None:
        if self.provisioner.metrics is None and self._registry is not None:
            self.provisioner.metrics = ProvisionMetrics(self._registry)
        desired = view.desired if isinstance(view, ProvisioningView) else None
        try:
            result = await self.provisioner.run_pass(snapshot, desired=desired)
        except BaseException:
            self.outcome = None  # nothing known about what the pass did
            self.passes += 1
            raise
        self.outcome = Provisioned(
            result.desired,
            frozenset(result.failed_namespaces),
            frozenset(result.plan.conflicts),
            frozenset(result.failed_robots),
        )
        self.passes += 1
        if result.failures:
            raise IncompletePass(
                f"{len(result.failures)} failures; the first: {result.failures[0]}"
            )


@dataclass(frozen=True)
class AuditView:
    """What the audit's decisions depend on."""

    config: Config
    registries: Mapping[str, RegistryState]
    namespaces: Mapping[str, NamespaceInfo]
    bindings: Mapping[tuple[str, str], frozenset[str]]


class AuditJob:
    """The background audit (``audit.enabled``), each pass in a child process."""

    name = "audit"

    def __init__(
        self,
        auditor: ChildAuditor,
        is_leader: Callable[[], bool],
        *,
        registry: CollectorRegistry | None = None,
        publisher: ImpactPublisher | None = None,
        throttled: ThrottleMetrics | None = None,
    ) -> None:
        self.auditor = auditor
        self._is_leader = is_leader
        self._registry = registry
        self._publisher = publisher
        self._throttled = throttled

    def revision(self) -> int:
        return 0

    def wanted(self, snapshot: Snapshot) -> bool:
        return snapshot.config.audit.enabled

    def interval(self, snapshot: Snapshot) -> float:
        return snapshot.config.audit.interval

    def view(self, snapshot: Snapshot) -> AuditView:
        return AuditView(
            snapshot.config, dict(snapshot.registries), snapshot.namespaces, snapshot.bindings
        )

    def changed(self, before: object, after: object) -> bool:
        if not isinstance(before, AuditView) or not isinstance(after, AuditView):
            return before != after
        if (
            before.config != after.config
            or before.registries != after.registries
            or before.bindings != after.bindings
        ):
            return True
        # Only a namespace there before and after counts: one that came or went changes
        # no decision about a workload that was already running.
        now = after.namespaces
        return any(name in now and now[name] != info for name, info in before.namespaces.items())

    async def run(self, snapshot: Snapshot, view: object) -> None:
        if self.auditor.metrics is None and self._registry is not None:
            self.auditor.metrics = AuditMetrics(self._registry)
        result = await self.auditor.run_pass(snapshot, self._is_leader)
        if self._throttled is not None and result.throttled:
            self._throttled.throttled.labels(self.name).inc(result.throttled)
        log.info(
            "audit: %d resources, %d refused by the current rules; reports %s",
            result.audited,
            result.refused,
            result.reports or "not written (no report CRD)",
        )
        # Only binding reviews read the index, and there are none without binding objects.
        if (
            self._publisher is not None
            and result.impact is not None
            and uses_objects(snapshot.config)
        ):
            await asyncio.to_thread(self._publisher.publish, result.impact)


@dataclass(frozen=True)
class BindingStatusView:
    """What binding statuses are computed from: each object's desired status."""

    desired: Mapping[str, DesiredStatus]


class BindingStatusJob:
    """RegistrySpaceBinding statuses (while objects are read), written only when changed.

    ``provisioning`` is the provisioning job whose outcome ``CredentialsProvisioned``
    reports.
    """

    name = "binding-status"

    def __init__(
        self,
        writer: StatusWriter,
        provisioning: ProvisioningJob | None = None,
        *,
        resync: float = BINDING_STATUS_RESYNC_SECONDS,
    ) -> None:
        self.writer = writer
        self._provisioning = provisioning
        self._resync = resync

    def revision(self) -> int:
        return 0 if self._provisioning is None else self._provisioning.passes

    def wanted(self, snapshot: Snapshot) -> bool:
        return bool(snapshot.binding_objects)

    def interval(self, snapshot: Snapshot) -> float:
        return self._resync

    def view(self, snapshot: Snapshot) -> BindingStatusView:
        outcome = current = None
        if snapshot.config.pull_secrets.provision and self._provisioning is not None:
            outcome = self._provisioning.outcome
            current = desired_state(snapshot)
        return BindingStatusView(desired_statuses(snapshot, outcome, current))

    def changed(self, before: object, after: object) -> bool:
        return before != after

    async def run(self, snapshot: Snapshot, view: object) -> None:
        desired = view.desired if isinstance(view, BindingStatusView) else {}
        result = await asyncio.to_thread(self.writer.write, snapshot, desired)
        if result.failed:
            raise IncompletePass(
                f"{len(result.failed)} of {len(desired)} statuses could not be written"
            )


class LastKnownGoodJob:
    """The last-known-good copy of the registries' spaces in the cluster, written only when
    what it holds changes (``webhook.leader.last_known_good``)."""

    name = "last-known-good"

    def __init__(
        self,
        writer: CopyWriter,
        *,
        registry: CollectorRegistry | None = None,
        resync: float = LAST_KNOWN_GOOD_RESYNC_SECONDS,
    ) -> None:
        self.writer = writer
        self._registry = registry
        self._resync = resync

    def revision(self) -> int:
        return 0

    def wanted(self, snapshot: Snapshot) -> bool:
        config = snapshot.config
        return config.last_known_good.persist and bool(persisted_registries(config))

    def interval(self, snapshot: Snapshot) -> float:
        return self._resync

    def view(self, snapshot: Snapshot) -> Mapping[str, RegistryCopy]:
        return own_listings(snapshot)

    def changed(self, before: object, after: object) -> bool:
        return before != after

    async def run(self, snapshot: Snapshot, view: object) -> None:
        if self.writer.metrics is None and self._registry is not None:
            self.writer.metrics = CopyMetrics(self._registry)
        own = view if isinstance(view, dict) else own_listings(snapshot)
        if await asyncio.to_thread(self.writer.write, snapshot.config, own) == "failed":
            raise IncompletePass("the last-known-good copy could not be written")
