"""Prometheus metrics of the background audit: what runs refused, and how passes go."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AuditMetrics:
    """The audit's collectors, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.violations = Gauge(
            "spacegate_audit_violations",
            "Running workloads whose images the current rules refuse, by namespace, registry "
            "and space (an unbinding that stranded workloads shows here).",
            ["namespace", "registry", "space"],
            registry=registry,
        )
        self.duration = Histogram(
            "spacegate_audit_duration_seconds",
            "Time of one background audit pass.",
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self.replaced = Counter(
            "spacegate_audit_reports_replaced",
            "Reports found under spacegate's report names that spacegate did not write, "
            "replaced with spacegate's (a tenant or another tool wrote there).",
            registry=registry,
        )
        self.last_run = Gauge(
            "spacegate_audit_last_run_timestamp_seconds",
            "Unix time the last background audit pass finished.",
            registry=registry,
        )

    def publish(
        self,
        violations: Mapping[tuple[str, str, str], int],
        *,
        seconds: float,
        now: float,
        replaced: int = 0,
    ) -> None:
        """One finished pass: its violations (counted from its findings, never read from
        reports) replace the last pass's."""
        self.replaced.inc(replaced)
        self.violations.clear()
        for (namespace, registry, space), count in violations.items():
            self.violations.labels(namespace, registry, space).set(count)
        self.duration.observe(seconds)
        self.last_run.set(now)
