"""Identities for the authenticated surfaces (``/metrics``, the image selector): ServiceAccounts,
their TokenRequest tokens, and the chart's ClusterRoles bound to them, on the real control plane.

The tokens are what a Pod or ``kubectl create token`` gets: JWTs signed by the apiserver, so a
TokenReview of them is the apiserver's own answer, and RBAC decides every SubjectAccessReview.
"""

from __future__ import annotations

from typing import Any

from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import apply_manifests, chart_objects

CHART_NAMESPACE = "spacegate-system"


def chart_access_roles(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The chart's ClusterRoles for /metrics and the selector (``-metrics-reader``,
    ``-image-lister``), rendered as ``helm install spacegate`` renders them."""
    return [
        obj
        for obj in chart_objects(
            values or {}, release="spacegate", namespace=CHART_NAMESPACE, kinds=("ClusterRole",)
        )
        if obj["metadata"]["name"].endswith(("-metrics-reader", "-image-lister"))
    ]


def ensure_namespace(plane: ControlPlane, name: str, labels: dict[str, str] | None = None) -> None:
    """Create namespace ``name`` unless it exists."""
    with plane.http_client() as http:
        answer = http.post(
            "/api/v1/namespaces",
            json={
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": labels or {}},
            },
        )
        assert answer.status_code in (201, 409), answer.text


def service_account(plane: ControlPlane, namespace: str, name: str) -> None:
    """Create ServiceAccount ``namespace/name`` unless it exists."""
    apply_manifests(
        plane,
        [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace},
            }
        ],
    )


def token(
    plane: ControlPlane,
    namespace: str,
    name: str,
    *,
    audiences: list[str] | None = None,
    seconds: int = 3600,
) -> str:
    """A TokenRequest token for ServiceAccount ``namespace/name`` (the apiserver's audience
    unless ``audiences`` are given), valid ``seconds`` (the apiserver's minimum is 600)."""
    spec: dict[str, Any] = {"expirationSeconds": seconds}
    if audiences is not None:
        spec["audiences"] = audiences
    with plane.http_client() as http:
        answer = http.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
    answer.raise_for_status()
    value: str = answer.json()["status"]["token"]
    return value


def bind(
    plane: ControlPlane,
    *,
    role: str,
    subject: tuple[str, str],
    namespace: str | None = None,
    role_kind: str = "ClusterRole",
) -> None:
    """Bind ``role`` to ServiceAccount ``subject`` (namespace, name): in ``namespace`` with a
    RoleBinding, cluster-wide with a ClusterRoleBinding when ``namespace`` is None."""
    sa_namespace, sa_name = subject
    binding_name = f"{role}-{sa_namespace}-{sa_name}"[:253]
    meta: dict[str, Any] = {"name": binding_name}
    if namespace is not None:
        meta["namespace"] = namespace
    apply_manifests(
        plane,
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding" if namespace is not None else "ClusterRoleBinding",
                "metadata": meta,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": role_kind,
                    "name": role,
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace}
                ],
            }
        ],
    )


def metrics_reader_token(plane: ControlPlane) -> str:
    """A token allowed to ``get /metrics``: ServiceAccount ``spacegate-metrics/prometheus``
    bound to the chart's metrics-reader ClusterRole, as a Prometheus would be."""
    ensure_namespace(plane, "spacegate-metrics")
    service_account(plane, "spacegate-metrics", "prometheus")
    apply_manifests(plane, chart_access_roles())
    bind(plane, role="spacegate-metrics-reader", subject=("spacegate-metrics", "prometheus"))
    return token(plane, "spacegate-metrics", "prometheus")
