"""One background audit pass: findings, violation counts and (when installed) reports.

:class:`Auditor` runs a pass start to end in the calling thread (it blocks on the
apiserver); the leader runs it in a child process (``webhook.leader.audit.child``), so a
pass over 10,000 objects never shares an interpreter with admission. Every resource the
audit judges (``webhook.leader.audit.findings``) gets one report (``policy.report``), and
refused images are counted by (namespace, registry, space) for
``spacegate_audit_violations`` from the findings themselves: nothing a report says, and no
report a tenant writes, reaches the metrics. Workloads admitted only because a space is bound
are counted by (registry, space, workspace) into the impact index (``policy.impact``) binding
reviews read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes import client

from policy.impact import ImpactIndex, IndexBuilder
from policy.report import ReportFormat, build_report
from policy.snapshot import Snapshot
from webhook.leader.audit.findings import audit, list_objects, refused
from webhook.leader.audit.metrics import AuditMetrics
from webhook.leader.audit.reports import ReportWriter

__all__ = ["AuditPass", "Auditor"]


@dataclass
class AuditPass:
    """What one pass found and wrote."""

    audited: int = 0
    refused: int = 0
    # outcome of each report write ("created", "unchanged", ...) -> count; None: no CRD
    reports: dict[str, int] | None = None
    # (namespace, registry, space) -> refused images of running workloads
    violations: dict[tuple[str, str, str], int] = field(default_factory=dict)
    seconds: float = 0.0
    # Which running workloads depend on which binding (policy.impact), for binding reviews.
    impact: ImpactIndex | None = None

    def publish(self, metrics: AuditMetrics, now: float) -> None:
        replaced = (self.reports or {}).get("replaced", 0)
        metrics.publish(self.violations, seconds=self.seconds, now=now, replaced=replaced)


class Auditor:
    """Runs audit passes through one API client (blocking)."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        report_format: ReportFormat | None,
        metrics: AuditMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.writer = None if report_format is None else ReportWriter(api, report_format)
        self.metrics = metrics
        self._clock = clock

    def run_pass(self, snapshot: Snapshot, guard: Callable[[], None] = lambda: None) -> AuditPass:
        """One pass; ``guard`` is called before every write and raises to stop it."""
        started = time.perf_counter()
        result = AuditPass()
        writer = self.writer if self.writer is not None and self.writer.installed() else None
        reports: dict[str, int] = {}
        if writer is not None:
            writer.load()
            result.reports = reports
        now = int(self._clock())
        uses = IndexBuilder()
        for finding in audit(snapshot, list_objects(self.api)):
            result.audited += 1
            decision = finding.decision
            if decision is None:
                continue
            resource = finding.resource
            uses.add(snapshot, decision, f"{resource.namespace}/{resource.kind}/{resource.name}")
            if refused(finding):
                result.refused += 1
                for verdict in decision.containers:
                    if verdict.refused:
                        key = (decision.namespace, verdict.registry or "", verdict.space or "")
                        result.violations[key] = result.violations.get(key, 0) + 1
            if writer is not None:
                guard()
                report = build_report(
                    finding.resource, decision, timestamp=now, report_format=writer.format
                )
                outcome = writer.write(report)
                reports[outcome] = reports.get(outcome, 0) + 1
        if writer is not None:
            guard()
            reports["deleted"] = writer.delete_stale()
        result.seconds = time.perf_counter() - started
        result.impact = uses.build(
            datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            float(now),
            snapshot.config.audit.interval,
        )
        if self.metrics is not None:
            result.publish(self.metrics, self._clock())
        return result
