"""Prometheus metrics of pull-secret provisioning: what it manages and how its passes go."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ProvisionMetrics:
    """What provisioning manages and how its passes go."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.robots = Gauge(
            "spacegate_pull_secret_robots", "Harbor robots spacegate keeps.", registry=registry
        )
        self.secrets = Gauge(
            "spacegate_pull_secrets", "Pull Secrets spacegate manages.", registry=registry
        )
        self.conflicts = Gauge(
            "spacegate_pull_secret_conflicts",
            "Namespaces holding a Secret of the pull secret's name that spacegate does not "
            "manage (left alone).",
            registry=registry,
        )
        self.duration = Histogram(
            "spacegate_pull_secret_reconcile_duration_seconds",
            "Time of one provisioning pass.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.failures = Counter(
            "spacegate_pull_secret_reconcile_failures",
            "Provisioning passes that did not complete.",
            registry=registry,
        )
        self.changes = Counter(
            "spacegate_pull_secret_changes",
            "Changes made by provisioning, by kind.",
            ["change"],
            registry=registry,
        )
