"""``/metrics`` is no longer open to every Pod (issue 15, finding 15).

It names namespaces, registries and spaces with violations. On the real control plane,
``spacegate serve`` (live mode, a kubeconfig: ``--metrics-auth auto`` is on) answers it only
for a bearer token the apiserver authenticates and whose identity may ``get /metrics``, as
kube-rbac-proxy does: no token 401, a token without the grant 403, the chart's metrics-reader
ClusterRole bound 200. The same tokens reach ``/healthz`` and the webhooks unchanged.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.access import (
    chart_access_roles,
    ensure_namespace,
    metrics_reader_token,
    service_account,
    token,
)
from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import apply_manifests
from tests.support.spacegate import SpacegateProcess

pytestmark = pytest.mark.e2e


def test_an_anonymous_scrape_is_refused_with_401_and_no_metrics(
    spacegate: SpacegateProcess,
) -> None:
    with spacegate.client() as http:
        answer = http.get("/metrics")
    assert answer.status_code == 401
    assert answer.json()["reason"] == "Unauthorized"
    assert "no bearer token" in answer.json()["message"]
    assert "spacegate_" not in answer.text


def test_a_token_without_the_grant_is_refused_with_403_naming_who_and_what(
    control_plane: ControlPlane, spacegate: SpacegateProcess
) -> None:
    ensure_namespace(control_plane, "metrics-e2e")
    name = f"nosy-{uuid.uuid4().hex[:6]}"
    service_account(control_plane, "metrics-e2e", name)
    with spacegate.client() as http:
        answer = http.get(
            "/metrics",
            headers={"Authorization": f"Bearer {token(control_plane, 'metrics-e2e', name)}"},
        )
    assert answer.status_code == 403
    status = answer.json()
    assert status["reason"] == "Forbidden"
    assert (
        f'User "system:serviceaccount:metrics-e2e:{name}" cannot get path "/metrics"'
        in (status["message"])
    )
    assert "spacegate_" not in answer.text


def test_the_metrics_reader_role_lets_prometheus_scrape(
    control_plane: ControlPlane, spacegate: SpacegateProcess
) -> None:
    with spacegate.client() as http:
        answer = http.get(
            "/metrics", headers={"Authorization": f"Bearer {metrics_reader_token(control_plane)}"}
        )
    assert answer.status_code == 200
    assert "spacegate_admission_requests_total" in answer.text


def test_a_forged_or_foreign_token_is_401_whatever_it_claims(
    control_plane: ControlPlane, spacegate: SpacegateProcess
) -> None:
    ensure_namespace(control_plane, "metrics-e2e")
    service_account(control_plane, "metrics-e2e", "other-audience")
    apply_manifests(control_plane, chart_access_roles())
    foreign = token(control_plane, "metrics-e2e", "other-audience", audiences=["vault"])
    forged = metrics_reader_token(control_plane)[:-4] + "AAAA"  # signature broken
    with spacegate.client() as http:
        for value in (foreign, forged, "not-a-jwt", "x" * 15_000):
            answer = http.get("/metrics", headers={"Authorization": f"Bearer {value}"})
            assert answer.status_code == 401, (value[:20], answer.text)
            assert "spacegate_" not in answer.text
        # A token too long for the request head never reaches a review (docs/limits.md).
        oversized = http.get("/metrics", headers={"Authorization": "Bearer " + "x" * 20_000})
        assert oversized.status_code == 431
        assert "spacegate_" not in oversized.text
        basic = http.get("/metrics", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
        assert basic.status_code == 401
        # Health stays open to the kubelet's probes.
        assert http.get("/healthz").status_code == 200
