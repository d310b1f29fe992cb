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
  Every ``audit.interval`` otherwise.

Both read their settings from the snapshot each time (on/off, interval, report format,
``pullSecretName``, ``rotateEvery``): a reloaded config applies from the next pass on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from policy.config import Config
from policy.provisioning import DesiredState, desired_state
from policy.snapshot import NamespaceInfo, RegistryState, Snapshot
from webhook.leader.audit.child import ChildAuditor
from webhook.leader.audit.metrics import AuditMetrics
from webhook.leader.provisioning.metrics import ProvisionMetrics
from webhook.leader.provisioning.writer import Provisioner

log = logging.getLogger(__name__)

__all__ = [
    "PROVISION_RESYNC_SECONDS",
    "AuditJob",
    "AuditView",
    "ProvisioningJob",
    "ProvisioningView",
]

# A full provisioning pass this often even when nothing changed (a deleted Secret returns).
PROVISION_RESYNC_SECONDS = 300.0


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
        result = await self.provisioner.run_pass(snapshot, desired=desired)
        if result.failures:
            log.warning("provisioning pass finished with %d failures", len(result.failures))


@dataclass(frozen=True)
class AuditView:
    """What the audit's decisions depend on."""

    config: Config
    registries: Mapping[str, RegistryState]
    namespaces: Mapping[str, NamespaceInfo]


class AuditJob:
    """The background audit (``audit.enabled``), each pass in a child process."""

    name = "audit"

    def __init__(
        self,
        auditor: ChildAuditor,
        is_leader: Callable[[], bool],
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.auditor = auditor
        self._is_leader = is_leader
        self._registry = registry

    def wanted(self, snapshot: Snapshot) -> bool:
        return snapshot.config.audit.enabled

    def interval(self, snapshot: Snapshot) -> float:
        return snapshot.config.audit.interval

    def view(self, snapshot: Snapshot) -> AuditView:
        return AuditView(snapshot.config, dict(snapshot.registries), snapshot.namespaces)

    def changed(self, before: object, after: object) -> bool:
        if not isinstance(before, AuditView) or not isinstance(after, AuditView):
            return before != after
        if before.config != after.config or before.registries != after.registries:
            return True
        # Only a namespace there before and after counts: one that came or went changes
        # no decision about a workload that was already running.
        now = after.namespaces
        return any(name in now and now[name] != info for name, info in before.namespaces.items())

    async def run(self, snapshot: Snapshot, view: object) -> None:
        if self.auditor.metrics is None and self._registry is not None:
            self.auditor.metrics = AuditMetrics(self._registry)
        result = await self.auditor.run_pass(snapshot, self._is_leader)
        log.info(
            "audit: %d resources, %d refused by the current rules; reports %s",
            result.audited,
            result.refused,
            result.reports or "not written (no report CRD)",
        )
