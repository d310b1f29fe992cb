"""The app around the endpoints: health, readiness and metrics, and its log format."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from policy.snapshot import Snapshot
from webhook.admission.app import AppSettings
from webhook.admission.logs import JsonFormatter
from webhook.admission.metrics import Metrics
from webhook.state import StaticState

from ..conftest import RunningServer, deployment, fixed_state, pod, review, run_server
from .replies import (
    ALLOWED_IMAGE,
    TEAM_B_IMAGE,
    post,
    validate,
)


def test_healthz_and_readyz_answer_ok_when_a_snapshot_is_loaded(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


class StaleState(StaticState):
    def readiness(self, *, staleness: bool = True) -> tuple[bool, str]:
        if not staleness:
            return True, "snapshot loaded (staleness not checked)"
        return False, "stale data: registry 'harbor' is 15m old"

    def age_seconds(self) -> float:
        return 900.0


def test_readyz_is_503_with_the_states_reason_and_metrics_show_the_age(
    tmp_path: Path, demo_snapshot: Snapshot, shared_server: RunningServer
) -> None:
    state = StaleState(demo_snapshot)
    with run_server(fixed_state(state), shared_server.tls_dir, state) as stale, stale.client() as c:
        ready = c.get("/readyz")
        metrics = c.get("/metrics").text

    assert ready.status_code == 503
    assert ready.json()["reason"] == "stale data: registry 'harbor' is 15m old"
    assert "spacegate_snapshot_age_seconds 900.0" in metrics
    assert "spacegate_ready 0.0" in metrics


def test_readyz_can_exclude_the_staleness_check_for_kubernetes_probes(
    demo_snapshot: Snapshot, shared_server: RunningServer
) -> None:
    state = StaleState(demo_snapshot)
    with run_server(fixed_state(state), shared_server.tls_dir, state) as stale, stale.client() as c:
        probe = c.get("/readyz?exclude=staleness")
        typo = c.get("/readyz?exclude=stalness")
    assert probe.status_code == 200
    assert probe.json()["ready"] is True
    assert typo.status_code == 400
    assert "unknown readiness check(s) ['stalness']" in typo.json()["reason"]


def sample(metrics: str, prefix: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_reviews_by_endpoint_kind_operation_and_result(
    server: RunningServer, client: httpx.Client
) -> None:
    series = (
        'spacegate_admission_requests_total{endpoint="validate",kind="Deployment",'
        'operation="CREATE",result="denied"}'
    )
    before = sample(client.get("/metrics").text, series)

    validate(client, review(deployment(TEAM_B_IMAGE), namespace="sandbox"))
    post(client, "/validate", review({"kind": "Made-Up"}, kind="Made-Up"))
    metrics = client.get("/metrics")

    assert metrics.headers["content-type"].startswith("text/plain")
    assert sample(metrics.text, series) == before + 1
    assert 'kind="other"' in metrics.text
    assert "Made-Up" not in metrics.text
    assert "spacegate_admission_duration_seconds_bucket" in metrics.text
    assert f"spacegate_snapshot_version {float(server.state.snapshot.version)}" in metrics.text
    assert "spacegate_snapshot_age_seconds 0.0" in metrics.text


def test_the_duration_histogram_counts_each_review_in_every_bucket_from_its_duration_up() -> None:
    metrics = Metrics()
    for seconds in (0.0004, 0.0005, 0.003, 7.0):
        metrics.observe("mutate", "Pod", "CREATE", "patched", seconds)
    metrics.observe("mutate", "Made-Up", "CREATE", "invalid", 0.0001)

    text = metrics.render(None).decode()

    def bucket(le: str) -> float:
        return sample(
            text, f'spacegate_admission_duration_seconds_bucket{{endpoint="mutate",le="{le}"}}'
        )

    assert (bucket("0.0005"), bucket("0.0025"), bucket("0.005"), bucket("2.5")) == (3, 3, 4, 4)
    assert bucket("+Inf") == 5
    assert sample(text, 'spacegate_admission_duration_seconds_count{endpoint="mutate"}') == 5
    assert sample(text, 'spacegate_admission_duration_seconds_sum{endpoint="mutate"}') == (
        pytest.approx(7.004)
    )
    patched = (
        'spacegate_admission_requests_total{endpoint="mutate",kind="Pod",operation="CREATE",'
        'result="patched"}'
    )
    assert sample(text, patched) == 4
    assert 'kind="other",operation="CREATE",result="invalid"} 1.0' in text
    assert "spacegate_admission_requests_created{" in text
    assert "# TYPE spacegate_admission_duration_seconds histogram" in text


def test_each_app_has_its_own_metrics(
    demo_snapshot: Snapshot, shared_server: RunningServer, client: httpx.Client
) -> None:
    validate(client, review(pod(ALLOWED_IMAGE)))
    state = StaticState(demo_snapshot)
    with run_server(fixed_state(state), shared_server.tls_dir, state) as fresh, fresh.client() as c:
        metrics = c.get("/metrics").text

    assert "spacegate_admission_requests_total{" not in metrics


def test_the_log_time_is_iso_8601_utc_with_milliseconds() -> None:
    record = logging.LogRecord("x", logging.INFO, "", 0, "m", (), None)
    record.created = 1_800_000_000.25

    assert json.loads(JsonFormatter().format(record))["time"] == "2027-01-15T08:00:00.250Z"


class LiveLikeState(StaticState):
    """A state that keeps refresh metrics in a registry of its own, like the refresher."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot)
        self.metrics_registry = CollectorRegistry()
        failures = Counter(
            "spacegate_refresh_failures", "x", ["registry"], registry=self.metrics_registry
        )
        failures.labels("harbor").inc(3)


def test_metrics_include_the_refreshers_metrics_and_the_certificate_expiry(
    demo_snapshot: Snapshot, shared_server: RunningServer
) -> None:
    state = LiveLikeState(demo_snapshot)
    settings = fixed_state(state)
    settings = AppSettings(state=settings.state, tls_not_after=lambda: 1_900_000_000.0)
    with run_server(settings, shared_server.tls_dir, state) as live, live.client() as c:
        metrics = c.get("/metrics").text
    assert 'spacegate_refresh_failures_total{registry="harbor"} 3.0' in metrics
    assert "spacegate_tls_certificate_expiry_timestamp_seconds 1.9e+09" in metrics
    assert "spacegate_admission_requests_total" in metrics
