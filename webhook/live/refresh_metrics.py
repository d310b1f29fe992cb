"""Prometheus metrics of the snapshot refresher.

An operator's first questions when admissions start failing are "is the data fresh?" and
"which registry stopped answering?", so every registry gets its own refresh duration,
failure count, last success time and space count, next to the number of namespaces known.
The snapshot version and age are the server's (``webhook.admission.metrics``, read from the state at
scrape time) and are not repeated here. The collectors live on a caller-provided
:class:`~prometheus_client.CollectorRegistry` so two refreshers in one process never
collide on a global registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Refreshes range from a few milliseconds (a small Docker Registry catalog) to several
# seconds (a Harbor with tens of thousands of projects, paged 100 at a time).
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RefreshMetrics:
    """The refresher's collectors, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.refresh_duration = Histogram(
            "spacegate_refresh_duration_seconds",
            "Time to list the spaces of one registry, successful or not.",
            ["registry"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.refresh_failures = Counter(
            "spacegate_refresh_failures_total",
            "Failed space listings per registry; the last-known-good spaces were kept.",
            ["registry"],
            registry=registry,
        )
        self.last_success = Gauge(
            "spacegate_refresh_last_success_timestamp_seconds",
            "Unix time of the last successful space listing per registry.",
            ["registry"],
            registry=registry,
        )
        self.spaces = Gauge(
            "spacegate_registry_spaces",
            "Spaces known per registry in the current snapshot.",
            ["registry"],
            registry=registry,
        )
        self.copied = Gauge(
            "spacegate_registry_last_known_good_copy",
            "1 while a registry's spaces come from the cluster's last-known-good copy (this "
            "replica has not listed it itself yet), else 0.",
            ["registry"],
            registry=registry,
        )
        self.namespaces = Gauge(
            "spacegate_namespaces",
            "Namespaces known in the current snapshot.",
            registry=registry,
        )

    def forget(self, registry_name: str) -> None:
        """Drop the series of a registry removed from the config, so dashboards stop showing it."""
        for metric in (
            self.refresh_duration,
            self.refresh_failures,
            self.last_success,
            self.spaces,
            self.copied,
        ):
            try:
                metric.remove(registry_name)
            except KeyError:
                continue
