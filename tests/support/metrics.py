"""Reading Prometheus metrics, spacegate's and the apiserver's, with prometheus_client's own
text parser: label values with escapes, commas or braces, ``+Inf`` buckets and families
without ``# TYPE`` lines are read as Prometheus reads them, not by a hand-written split."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.support.spacegate import SpacegateProcess

Labels = frozenset[tuple[str, str]]


def samples(text: str, name: str) -> dict[Labels, float]:
    """Every sample called ``name`` in the exposition ``text``, by its set of labels.

    ``name`` is the sample's name as exposed: ``x_total`` for a counter ``x``,
    ``x_bucket``/``x_sum``/``x_count`` for a histogram ``x``.
    """
    return {
        frozenset(sample.labels.items()): float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def scrape(process: SpacegateProcess) -> str:
    """The process's ``/metrics`` page, read as Prometheus would: with the token of a
    ServiceAccount bound to the chart's metrics-reader ClusterRole."""
    with process.client() as http:
        response = http.get(
            "/metrics", headers={"Authorization": f"Bearer {process.metrics_token}"}
        )
    response.raise_for_status()
    return response.text


def metric_samples(process: SpacegateProcess, name: str) -> dict[Labels, float]:
    """Every sample of ``name`` on the process's ``/metrics``, by its set of labels."""
    return samples(scrape(process), name)


def spacegate_metric(process: SpacegateProcess, name: str) -> float | None:
    """The value of the unlabelled sample ``name`` on the process's ``/metrics``; None when
    it is not exposed."""
    return metric_samples(process, name).get(frozenset())
