"""Request metrics: exposed as Prometheus counters and histograms, with bounded labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from policy.config import load_config
from policy.snapshot import Snapshot
from webhook.admission.metrics import Metrics
from webhook.state import StaticState


def samples(
    metrics: Metrics, state: StaticState | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render(state).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_each_review_is_counted_by_endpoint_kind_operation_and_result() -> None:
    metrics = Metrics()
    metrics.observe("validate", "Pod", "CREATE", "denied", 0.002)
    metrics.observe("validate", "Pod", "CREATE", "denied", 0.004)
    metrics.observe("mutate", "Namespace", "UPDATE", "allowed", 0.001)

    got = samples(metrics)

    key = frozenset(
        {("endpoint", "validate"), ("kind", "Pod"), ("operation", "CREATE"), ("result", "denied")}
    )
    assert got[("spacegate_admission_requests_total", key)] == 2
    namespace = frozenset(
        {
            ("endpoint", "mutate"),
            ("kind", "Namespace"),
            ("operation", "UPDATE"),
            ("result", "allowed"),
        }
    )
    assert got[("spacegate_admission_requests_total", namespace)] == 1
    count = ("spacegate_admission_duration_seconds_count", frozenset({("endpoint", "validate")}))
    assert got[count] == 2


def test_kinds_and_operations_a_request_makes_up_do_not_become_label_values() -> None:
    metrics = Metrics()
    for i in range(5000):
        metrics.observe("validate", f"Evil{i}", f"OP{i}", "invalid", 0.0001)

    got = samples(metrics)

    kinds = {dict(labels).get("kind") for name, labels in got if name.endswith("_total")}
    assert kinds == {"other"}
    other = frozenset(
        {("endpoint", "validate"), ("kind", "other"), ("operation", "other"), ("result", "invalid")}
    )
    assert got[("spacegate_admission_requests_total", other)] == 5000


def test_refused_images_are_counted_by_where_the_pod_spec_names_them() -> None:
    metrics = Metrics()
    metrics.refused_images("volume", 2)
    metrics.refused_images("container", 1)

    got = samples(metrics)

    assert got[("spacegate_refused_images_total", frozenset({("source", "volume")}))] == 2
    assert got[("spacegate_refused_images_total", frozenset({("source", "container")}))] == 1


def test_snapshot_gauges_come_from_the_state_at_scrape_time() -> None:
    metrics = Metrics()
    state = StaticState(Snapshot.build(load_config("{}"), version=7))

    got = samples(metrics, state)
    unready = samples(metrics, None)

    assert got[("spacegate_snapshot_version", frozenset())] == 7
    assert got[("spacegate_ready", frozenset())] == 1
    assert unready[("spacegate_ready", frozenset())] == 0
