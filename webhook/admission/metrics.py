"""Prometheus metrics of one admission server, in a registry of its own.

Each app gets its own ``CollectorRegistry``: the process-global default registry would
make two apps in one process (tests, the benchmark's ceiling app) share counters, and
would tie metric state to import time.

Label values are drawn from small fixed sets (workload kinds, the four operations, a few
results) so that a client sending made-up kinds cannot grow the series count without
bound. The snapshot gauges are set when ``/metrics`` is scraped, from the live state, so
the age is never older than the scrape.

The per-review counter and histogram are plain numbers exposed by a collector of our own
(:class:`_AdmissionSeries`) rather than ``prometheus_client``'s ``Counter`` and
``Histogram``: those take a lock for every value they touch (three per histogram
observation), which cost as much as the rest of counting a review. Reviews are counted
and ``/metrics`` is rendered on the event loop's thread only, so nothing needs a lock; the
exposition (names, labels, ``le`` buckets, ``_created`` series) is the same.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric

from policy.workload import WORKLOAD_GROUPS
from webhook.admission.review import OPERATIONS
from webhook.state import SnapshotState

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

# Admission answers are expected well under 10 ms; the tail buckets show timeouts coming.
_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


# The ``le`` label of each bucket as Prometheus writes it (Go's float format).
_LE: Final = (*(repr(bound) for bound in _BUCKETS), "+Inf")
# result: allowed (admitted untouched), patched (admitted with a pull-secret patch), warned
# (admitted although a container was refused: warn/audit mode), denied, exempt (exempt
# namespace), invalid (the review request was malformed), error (spacegate failed).
_REQUEST_LABELS: Final = ("endpoint", "kind", "operation", "result")

# Distinct raw (endpoint, kind, operation, result) keys remembered; past it the labels are
# worked out per review (made-up kinds are what would fill it).
_MAX_REMEMBERED_KEYS: Final = 4096
# Kind labels kept as they are (workloads, and Namespaces for the namespace guard); any
# other kind a request names is counted as "other", so tenants cannot mint label values.
_KINDS: Final = frozenset({*WORKLOAD_GROUPS, "Namespace"})


class _Histogram:
    """One endpoint's duration histogram: a count per bucket (not cumulative) and a sum."""

    __slots__ = ("counts", "created", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.created = time.time()


class _Series:
    """One labelled request counter, with the histogram of its endpoint."""

    __slots__ = ("count", "created", "histogram", "labels")

    def __init__(self, labels: tuple[str, str, str, str], histogram: _Histogram) -> None:
        self.labels = labels
        self.histogram = histogram
        self.count = 0
        self.created = time.time()


class _AdmissionSeries:
    """``spacegate_admission_requests_total`` and ``spacegate_admission_duration_seconds``.

    A collector for ``CollectorRegistry.register``; see the module docstring for why it is
    not built from ``Counter`` and ``Histogram``. Only the event loop's thread may call
    :meth:`observe` and :meth:`collect`.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str, str], _Series] = {}
        self._by_labels: dict[tuple[str, str, str, str], _Series] = {}
        self._histograms: dict[str, _Histogram] = {}

    def observe(
        self, endpoint: str, kind: str, operation: str, result: str, seconds: float
    ) -> None:
        """Count one review and its duration."""
        key = (endpoint, kind, operation, result)
        series = self._by_key.get(key)
        if series is None:
            series = self._series(key)
        series.count += 1
        histogram = series.histogram
        histogram.counts[bisect_left(_BUCKETS, seconds)] += 1
        histogram.sum += seconds

    def _series(self, key: tuple[str, str, str, str]) -> _Series:
        endpoint, kind, operation, result = key
        labels = (
            endpoint,
            kind if kind in _KINDS else ("" if not kind else "other"),
            operation if operation in OPERATIONS else ("" if not operation else "other"),
            result,
        )
        series = self._by_labels.get(labels)
        if series is None:
            histogram = self._histograms.get(endpoint)
            if histogram is None:
                histogram = self._histograms[endpoint] = _Histogram()
            series = self._by_labels[labels] = _Series(labels, histogram)
        if len(self._by_key) < _MAX_REMEMBERED_KEYS:
            self._by_key[key] = series
        return series

    def collect(self) -> Iterator[Metric]:
        """The two families, as ``Counter`` and ``Histogram`` would expose them."""
        requests = Metric(
            "spacegate_admission_requests",
            "Admission reviews answered, by endpoint, kind, operation and result.",
            "counter",
        )
        for series in list(self._by_labels.values()):
            labels = dict(zip(_REQUEST_LABELS, series.labels, strict=True))
            requests.add_sample("spacegate_admission_requests_total", labels, series.count)
            requests.add_sample("spacegate_admission_requests_created", labels, series.created)
        yield requests
        duration = Metric(
            "spacegate_admission_duration_seconds",
            "Time from the first body byte read to the reply, by endpoint.",
            "histogram",
        )
        name = "spacegate_admission_duration_seconds"
        for endpoint, histogram in list(self._histograms.items()):
            cumulative = 0
            for le, count in zip(_LE, histogram.counts, strict=True):
                cumulative += count
                duration.add_sample(f"{name}_bucket", {"endpoint": endpoint, "le": le}, cumulative)
            labels = {"endpoint": endpoint}
            duration.add_sample(f"{name}_count", labels, cumulative)
            duration.add_sample(f"{name}_sum", labels, histogram.sum)
            duration.add_sample(f"{name}_created", labels, histogram.created)
        yield duration


class Metrics:
    """Counters and histograms for admission requests plus snapshot gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._admission = _AdmissionSeries()
        self.registry.register(self._admission)
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
        self._refused_images = Counter(
            "spacegate_refused_images",
            "Images the rules refused on /validate, by where the pod spec names them "
            "(container, init container, ephemeral container, volume).",
            ["source"],
            registry=self.registry,
        )
        self.tls_not_after: Callable[[], float] | None = None
        # Count one answered review: observe(endpoint, kind, operation, result, seconds),
        # from the event loop's thread only. The collector's bound method itself, not a
        # wrapper: it runs for every review.
        self.observe = self._admission.observe

    def refused_images(self, source: str, count: int) -> None:
        """Count ``count`` refused images named in ``source`` (a kind of image source)."""
        self._refused_images.labels(source=source).inc(count)

    def render(self, state: SnapshotState | None) -> bytes:
        """The Prometheus text exposition, with snapshot gauges read from ``state`` now.

        A live state (``webhook.live.refresher.Refresher``) keeps its refresh metrics in a registry
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
