"""``/metrics`` behind the guard ``spacegate serve`` injects (issue 15, finding 15).

The admission room knows only the guard's shape (``MetricsGuard``); the TokenReview and
SubjectAccessReview behind it are ``webhook.clients.access``, tested on the real apiserver in
``tests/e2e/test_metrics_auth.py``. Here: what the app does with the guard's answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from policy.snapshot import Snapshot
from webhook.admission.app import GuardRefusal
from webhook.cli.access_wiring import MetricsAuthError, metrics_guard
from webhook.state import StaticState

from ..conftest import RunningServer, fixed_state, run_server


@dataclass(frozen=True)
class Refused:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


async def only_the_right_token(authorization: str | None) -> GuardRefusal | None:
    if authorization == "Bearer good":
        return None
    return Refused(401, b'{"kind":"Status","code":401}', {"WWW-Authenticate": "Bearer"})


def test_the_guards_refusal_is_sent_instead_of_the_page(
    demo_snapshot: Snapshot, shared_server: RunningServer
) -> None:
    state = StaticState(demo_snapshot)
    settings = dataclasses.replace(fixed_state(state), metrics_guard=only_the_right_token)
    with run_server(settings, shared_server.tls_dir, state) as guarded, guarded.client() as http:
        refused = http.get("/metrics")
        allowed = http.get("/metrics", headers={"Authorization": "Bearer good"})
        health = http.get("/healthz")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["kind"] == "Status"
    assert "spacegate_" not in refused.text
    assert allowed.status_code == 200 and "spacegate_admission_requests_total" in allowed.text
    assert health.status_code == 200  # the probes are never guarded


def test_without_a_kubernetes_api_auto_serves_metrics_open_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert metrics_guard("auto", kube=False) is None
    assert "WITHOUT authentication" in caplog.text


def test_on_without_a_kubernetes_api_refuses_to_start_and_off_is_open() -> None:
    with pytest.raises(MetricsAuthError, match="needs a Kubernetes API"):
        metrics_guard("on", kube=False)
    assert metrics_guard("off", kube=True) is None
