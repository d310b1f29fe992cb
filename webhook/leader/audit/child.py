"""The background audit pass in a child process, stopped when the Lease is lost.

A pass over 10,000 objects is CPU work: as a thread of the serving process it would compete
with admission for the interpreter (the GIL). So each pass runs in a spawned child: the
child rebuilds the same snapshot from plain data (a :class:`~policy.snapshot.Snapshot`
holds caches and does not pickle), makes its own Kubernetes client (the pod's service
account, or ``KUBECONFIG``), runs :class:`~webhook.leader.audit.passes.Auditor` and sends
back the result; the parent publishes the metrics. While the child runs, the parent checks
the leadership twice a second and kills the child when it is lost or when the parent's
task is cancelled: nothing more is written.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policy.bindings import BindingObject
from policy.config import Config
from policy.report import ReportFormat
from policy.snapshot import NamespaceInfo, Snapshot
from webhook.clients.kube import load_api_client
from webhook.leader.audit.metrics import AuditMetrics
from webhook.leader.audit.passes import Auditor, AuditPass
from webhook.leader.lease import LostLeadership

__all__ = ["ChildAuditor", "report_format_of"]

# How often the parent looks at the leadership while the child runs.
CHECK_SECONDS = 0.5


def report_format_of(config: Config) -> ReportFormat | None:
    """The report format ``audit.reports`` asks for; None for ``none`` (metrics only)."""
    reports = config.audit.reports
    return None if reports == "none" else reports


@dataclass(frozen=True)
class _PassJob:
    """What a child needs to rebuild the snapshot (a Snapshot itself does not pickle)."""

    config: Config
    spaces: dict[str, dict[str, bool]]
    namespaces: dict[str, NamespaceInfo]
    version: int
    report_format: ReportFormat | None
    binding_objects: dict[str, BindingObject] | None = None


def _pass_in_child(job: _PassJob, results: Any) -> None:
    """A background pass in a child process (its own interpreter, its own API client)."""
    snapshot = Snapshot.build(
        job.config,
        spaces=job.spaces,
        namespaces=job.namespaces,
        binding_objects=job.binding_objects,
        version=job.version,
    )
    api = load_api_client()
    try:
        results.put(Auditor(api, report_format=job.report_format).run_pass(snapshot))
    finally:
        api.close()  # type: ignore[no-untyped-call]


class ChildAuditor:
    """Runs each background pass in a child process; reads ``audit.reports`` from the
    snapshot it is given, so a reloaded format applies from the next pass on."""

    def __init__(self, *, metrics: AuditMetrics | None = None) -> None:
        self.metrics = metrics

    async def run_pass(self, snapshot: Snapshot, is_leader: Callable[[], bool]) -> AuditPass:
        """One pass; :class:`~webhook.leader.lease.LostLeadership` when the leadership is
        lost before it ends (the child is killed)."""
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        spaces = {n: dict(s.spaces) for n, s in snapshot.registries.items() if s.synced}
        job = _PassJob(
            snapshot.config,
            spaces,
            dict(snapshot.namespaces),
            snapshot.version,
            report_format_of(snapshot.config),
            None if snapshot.binding_objects is None else dict(snapshot.binding_objects),
        )
        child = context.Process(
            target=_pass_in_child, args=(job, results), name="spacegate-audit", daemon=True
        )
        child.start()
        finished = False
        try:
            while True:
                try:
                    result: AuditPass = await asyncio.to_thread(results.get, True, CHECK_SECONDS)
                    break
                except queue.Empty:
                    if not is_leader():
                        raise LostLeadership("leadership lost; audit pass stopped") from None
                    if not child.is_alive():
                        raise RuntimeError(
                            f"the audit process ended with exit code {child.exitcode}"
                        ) from None
            finished = True
        finally:
            if finished and child.is_alive():  # it exits once its result is sent
                await asyncio.to_thread(child.join, 1)
            if child.is_alive():  # the lead lost, the task cancelled, or stuck: stop it now
                child.kill()
            child.join(5)  # reaps it: at once after an exit or a SIGKILL
        if self.metrics is not None:
            result.publish(self.metrics, time.time())
        return result
