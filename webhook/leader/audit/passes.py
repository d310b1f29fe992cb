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

Reports are written by a bounded pool (``webhook.clients.kube_writes.WritePool``): a first pass
creates one per workload, ten thousand on a large cluster, which one at a time would take
minutes; the pool keeps a few in flight, waits out the apiserver's 429s (counted in
:attr:`AuditPass.throttled`) and builds the next reports while they are sent.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes import client

from policy.impact import ImpactIndex, IndexBuilder
from policy.report import ReportFormat, build_report
from policy.snapshot import Snapshot
from webhook.clients.kube_writes import DEFAULT_WORKERS, Throttle, WritePool
from webhook.leader.audit.findings import audit, list_objects, refused
from webhook.leader.audit.metrics import AuditMetrics
from webhook.leader.audit.reports import ReportWriter

log = logging.getLogger(__name__)

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
    # Report writes the apiserver refused with 429 (each retried after its Retry-After).
    throttled: int = 0

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
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.api = api
        self.writer = None if report_format is None else ReportWriter(api, report_format)
        self.metrics = metrics
        self._clock = clock
        self._workers = workers

    def run_pass(self, snapshot: Snapshot, guard: Callable[[], None] = lambda: None) -> AuditPass:
        """One pass; ``guard`` is called before every write and raises to stop it."""
        started = time.perf_counter()
        result = AuditPass()
        writer = self.writer if self.writer is not None and self.writer.installed() else None
        now = int(self._clock())
        uses = IndexBuilder()

        def judged() -> Iterator[Callable[[], str]]:
            """Every finding counted; the write of its report (when reports are written)."""
            for finding in audit(snapshot, list_objects(self.api)):
                result.audited += 1
                decision = finding.decision
                if decision is None:
                    continue
                resource = finding.resource
                where = f"{resource.namespace}/{resource.kind}/{resource.name}"
                uses.add(snapshot, decision, where)
                if refused(finding):
                    result.refused += 1
                    for verdict in decision.containers:
                        if verdict.refused:
                            key = (decision.namespace, verdict.registry or "", verdict.space or "")
                            result.violations[key] = result.violations.get(key, 0) + 1
                if writer is not None:
                    guard()
                    report = build_report(
                        resource, decision, timestamp=now, report_format=writer.format
                    )
                    yield functools.partial(writer.write, report)

        if writer is None:
            for _ in judged():
                pass
        else:
            writer.load()
            throttle = Throttle(job="audit")
            with WritePool(self._workers, throttle) as pool:
                result.reports = _count(pool.map(judged()))
                guard()
                result.reports["deleted"] = writer.delete_stale(pool)
            result.throttled = throttle.throttled
        result.seconds = time.perf_counter() - started
        result.impact = uses.build(
            datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            float(now),
            snapshot.config.audit.interval,
        )
        if self.metrics is not None:
            result.publish(self.metrics, self._clock())
        return result


def _count(outcomes: list[str | BaseException]) -> dict[str, int]:
    """How many writes had each outcome; an unexpected error counts as failed (logged)."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        kind = outcome if isinstance(outcome, str) else "failed"
        if isinstance(outcome, BaseException):
            log.warning("audit: a report write failed: %s", outcome)
        counts[kind] = counts.get(kind, 0) + 1
    return counts
