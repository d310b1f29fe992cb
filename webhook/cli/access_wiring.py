"""Who may read ``/metrics``: ``serve``'s choice, and the guard it hands the admission app.

``/metrics`` names namespaces, registries and spaces with violations, so by default it is
protected like kube-rbac-proxy protects it: a bearer token reviewed by the apiserver
(TokenReview) whose identity may ``get`` the non-resource URL ``/metrics``
(SubjectAccessReview; the chart's ``metrics-reader`` ClusterRole grants it to Prometheus).

``--metrics-auth``:

- ``auto`` (the default): on when a Kubernetes API is configured (in a cluster, or a
  kubeconfig), off otherwise — ``make run`` has no cluster to review tokens with, and says
  so loudly at start-up;
- ``on``: required; without a Kubernetes API ``serve`` refuses to start;
- ``off``: open to whoever reaches the port (for setups that limit access otherwise, such as
  the chart's NetworkPolicy), logged as a warning.

The admission room may not import the Kubernetes client (import-linter), so the guard is a
plain coroutine (``webhook.admission.app.MetricsGuard``) built here.
"""

from __future__ import annotations

import logging
from typing import Final

from webhook.admission.app import GuardRefusal, MetricsGuard

__all__ = ["METRICS_AUTH_MODES", "MetricsAuthError", "metrics_guard"]

log = logging.getLogger(__name__)

METRICS_AUTH_MODES: Final = ("auto", "on", "off")


class MetricsAuthError(Exception):
    """``--metrics-auth on`` cannot be honoured; the message says why."""


def metrics_guard(mode: str, *, kube: bool | None = None) -> MetricsGuard | None:
    """The guard of ``/metrics`` for ``mode``; None when it is open (and logged as such).

    ``kube`` overrides the detection of a Kubernetes API (tests).
    """
    from webhook.clients.kube import kube_configured

    if mode not in METRICS_AUTH_MODES:
        raise MetricsAuthError(f"--metrics-auth: expected one of auto, on, off, got {mode!r}")
    if mode == "off":
        log.warning(
            "/metrics is served WITHOUT authentication (--metrics-auth off): it names "
            "namespaces, registries and spaces; limit who reaches the port (NetworkPolicy)"
        )
        return None
    configured = kube_configured() if kube is None else kube
    if not configured:
        if mode == "on":
            raise MetricsAuthError(
                "--metrics-auth on needs a Kubernetes API to review tokens (TokenReview, "
                "SubjectAccessReview): none is configured (not in a cluster, no kubeconfig)"
            )
        log.warning(
            "/metrics is served WITHOUT authentication: no Kubernetes API is configured to "
            "review tokens (not in a cluster, no kubeconfig); in a cluster it requires a "
            "token allowed to get /metrics"
        )
        return None
    from webhook.clients.access import AccessReviewer, NonResource, kube_reviews
    from webhook.clients.errors import SourceError
    from webhook.clients.kube import load_api_client

    try:
        api = load_api_client()
    except SourceError as exc:
        raise MetricsAuthError(
            f"/metrics authentication needs the Kubernetes API: {exc} "
            "(--metrics-auth off serves it open)"
        ) from None
    reviewer = AccessReviewer(kube_reviews(api))
    wanted = NonResource("get", "/metrics")

    async def guard(authorization: str | None) -> GuardRefusal | None:
        from webhook.clients.access import Refusal

        answer = await reviewer.check(authorization, wanted)
        return answer if isinstance(answer, Refusal) else None

    log.info("/metrics requires a bearer token allowed to get /metrics (TokenReview + SAR)")
    return guard
