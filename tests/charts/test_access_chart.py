"""The chart's authenticated surfaces: ``/metrics`` and the image selector.

What RBAC spacegate gets for them (create TokenReviews and SubjectAccessReviews, nothing
else), what it grants others (``get /metrics`` to the metrics readers, ``list
images.spacegate.io`` to view/edit/admin by aggregation), how the pod is told, and that
``/metrics`` without authentication needs a NetworkPolicy that limits who reaches it.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from tests.charts.chartlib import FULLNAME, NAMESPACE, RELEASE, Rendered
from tests.charts.conftest import Render


def args(rendered: Rendered) -> list[str]:
    values: list[str] = rendered.container["args"]
    return values


def test_spacegate_may_only_create_token_and_access_reviews_for_them(default: Rendered) -> None:
    role = default.one("ClusterRole", f"{FULLNAME}-access-review")
    assert role["rules"] == [
        {
            "apiGroups": ["authentication.k8s.io"],
            "resources": ["tokenreviews"],
            "verbs": ["create"],
        },
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["subjectaccessreviews"],
            "verbs": ["create"],
        },
    ]
    binding = default.one("ClusterRoleBinding", f"{FULLNAME}-access-review")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": default.pod_spec["serviceAccountName"],
            "namespace": NAMESPACE,
        }
    ]


def test_the_view_edit_and_admin_roles_gain_list_images_by_aggregation(default: Rendered) -> None:
    role = default.one("ClusterRole", f"{FULLNAME}-image-lister")
    labels = role["metadata"]["labels"]
    for built_in in ("view", "edit", "admin"):
        assert labels[f"rbac.authorization.k8s.io/aggregate-to-{built_in}"] == "true"
    assert role["rules"] == [
        {"apiGroups": ["spacegate.io"], "resources": ["images"], "verbs": ["list"]}
    ]


def test_the_metrics_reader_role_grants_get_on_metrics_and_binds_the_listed_readers(
    render: Render,
) -> None:
    rendered = render(
        {"metrics": {"readers": [{"name": "prometheus-k8s", "namespace": "monitoring"}]}}
    )
    assert rendered.one("ClusterRole", f"{FULLNAME}-metrics-reader")["rules"] == [
        {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}
    ]
    binding = rendered.one("ClusterRoleBinding", f"{FULLNAME}-metrics-reader")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}
    ]


def test_the_pod_serves_the_selector_on_its_own_port_and_service_port(default: Rendered) -> None:
    assert args(default)[-4:] == ["--metrics-auth", "on", "--selector-port", "8444"]
    ports = {p["name"]: p for p in default.container["ports"]}
    assert ports["selector"]["containerPort"] == 8444
    service_ports = {p["name"]: p for p in default.one("Service")["spec"]["ports"]}
    assert service_ports["selector"]["targetPort"] == "selector"


def test_the_selector_can_be_turned_off_with_its_roles(render: Render) -> None:
    rendered = render({"selector": {"enabled": False}})
    assert "--selector-port" in args(rendered)
    assert args(rendered)[args(rendered).index("--selector-port") + 1] == "0"
    assert rendered.find("ClusterRole", f"{FULLNAME}-image-lister") is None
    assert [p["name"] for p in rendered.one("Service")["spec"]["ports"]] == ["https"]


def test_token_audiences_reach_the_server(render: Render) -> None:
    rendered = render({"selector": {"tokenAudiences": ["spacegate", "other"]}})
    assert args(rendered)[-4:] == ["--token-audience", "spacegate", "--token-audience", "other"]


def test_the_service_monitor_scrapes_with_prometheus_token(render: Render) -> None:
    rendered = render({"serviceMonitor": {"enabled": True}})
    (endpoint,) = rendered.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _install_error(chart: helm.Chart, values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return str(caught.value)


def test_metrics_without_auth_needs_a_network_policy_that_limits_who_reaches_it(
    chart: helm.Chart, render: Render
) -> None:
    message = _install_error(chart, {"metrics": {"auth": False}})
    assert "networkPolicy.enabled with a non-empty networkPolicy.ingressFrom" in message
    limited = {
        "metrics": {"auth": False},
        "networkPolicy": {"enabled": True, "ingressFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
    }
    rendered = render(limited)
    assert args(rendered)[args(rendered).index("--metrics-auth") + 1] == "off"
    policy = rendered.one("NetworkPolicy")
    assert policy["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]


def test_the_selector_may_not_take_the_webhooks_port(chart: helm.Chart) -> None:
    assert "8443 is the webhook's port" in _install_error(chart, {"selector": {"port": 8443}})
