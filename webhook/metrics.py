"""Prometheus metrics of one admission server, in a registry of its own.

Each app gets its own ``CollectorRegistry``: the process-global default registry would
make two apps in one process (tests, the benchmark's ceiling app) share counters, and
would tie metric state to import time.

Label values are drawn from small fixed sets (workload kinds, the four operations, a few
results) so that a client sending made-up kinds cannot grow the series count without
bound. The snapshot gauges are set when ``/metrics`` is scraped, from the live state, so
the age is never older than the scrape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from webhook.review import OPERATIONS, WORKLOAD_GROUPS
from webhook.state import SnapshotState

__all__ = ["CONTENT_TYPE", "RESULTS", "Metrics"]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

# allowed: admitted untouched; patched: admitted with a pull-secret patch; warned: admitted
# although a container was refused (warn/audit mode); denied: refused; exempt: exempt
# namespace; invalid: the review request was malformed; error: spacegate failed.
RESULTS: Final = ("allowed", "patched", "warned", "denied", "exempt", "invalid", "error")

# Admission answers are expected well under 10 ms; the tail buckets show timeouts coming.
_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Counters and histograms for admission requests plus snapshot gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter(
            "spacegate_admission_requests",
            "Admission reviews answered, by endpoint, kind, operation and result.",
            ["endpoint", "kind", "operation", "result"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "spacegate_admission_duration_seconds",
            "Time from the first body byte read to the reply, by endpoint.",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._age = Gauge(
            "spacegate_snapshot_age_seconds",
            "Age of the oldest live data in the snapshot decisions use (0 for a static config).",
            registry=self.registry,
        )
        self._version = Gauge(
            "spacegate_snapshot_version",
            "Version of the snapshot decisions use; it grows with every refresh.",
            registry=self.registry,
        )
        self._ready = Gauge(
            "spacegate_ready",
            "1 when /readyz reports ready, else 0.",
            registry=self.registry,
        )
        self._tls_expiry = Gauge(
            "spacegate_tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the serving certificate in use expires (alert well before).",
            registry=self.registry,
        )
        self.tls_not_after: Callable[[], float] | None = None
        # Resolving a labelled child costs a lock and a tuple hash each time; the label
        # space is small and fixed, so children are looked up once and kept.
        self._children: dict[tuple[str, str, str, str], tuple[Counter, Histogram]] = {}

    def observe(
        self, *, endpoint: str, kind: str, operation: str, result: str, seconds: float
    ) -> None:
        """Count one answered review and its duration."""
        key = (endpoint, kind, operation, result)
        child = self._children.get(key)
        if child is None:
            label_kind = kind if kind in WORKLOAD_GROUPS else ("" if not kind else "other")
            label_op = operation if operation in OPERATIONS else ("" if not operation else "other")
            child = (
                self._requests.labels(endpoint, label_kind, label_op, result),
                self._duration.labels(endpoint),
            )
            if len(self._children) < 4096:
                self._children[key] = child
        child[0].inc()
        child[1].observe(seconds)

    def render(self, state: SnapshotState | None) -> bytes:
        """The Prometheus text exposition, with snapshot gauges read from ``state`` now.

        A live state (``webhook.cache.Refresher``) keeps its refresh metrics in a registry
        of its own (``metrics_registry``); they are appended so one scrape sees both.
        """
        if self.tls_not_after is not None:
            self._tls_expiry.set(self.tls_not_after())
        extra = None
        if state is not None:
            self._age.set(state.age_seconds())
            self._version.set(state.snapshot.version)
            self._ready.set(1.0 if state.readiness()[0] else 0.0)
            extra = getattr(state, "metrics_registry", None)
        else:
            self._ready.set(0.0)
        body = generate_latest(self.registry)
        if isinstance(extra, CollectorRegistry):
            body += generate_latest(extra)
        return body
