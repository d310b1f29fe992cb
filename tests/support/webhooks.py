"""The chart's webhook configurations, installed on the control plane to call a local process.

:func:`chart_webhooks` renders the Validating/MutatingWebhookConfiguration *the Helm chart*
renders in out-of-cluster mode (``webhook.url``), so the apiserver calls spacegate through
exactly the rules, selectors and failure policies a cluster would get; only loopback is ever
dialled (``clientConfig.url`` on 127.0.0.1, never a Service). :func:`wait_until_enforced`
waits until the apiserver really calls it, and :func:`denial` reads what it answered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import helm_python as helm
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.charts.chartlib import CHART_DIR, FULLNAME, render_chart
from tests.support.manifests import Api, pod
from tests.support.scenario import TEAM_B
from tests.support.waiting import eventually


def chart_webhooks(
    url: str, ca_pem: str, *, failure_policy: str = "Fail", values: Mapping[str, Any] = {}
) -> list[dict[str, Any]]:
    """The chart's Validating/MutatingWebhookConfiguration in out-of-cluster mode for ``url``."""
    chart_values: dict[str, Any] = {
        "webhook": {
            "url": url,
            "timeoutSeconds": 5,
            "validating": {"failurePolicy": failure_policy},
            "mutating": {"failurePolicy": failure_policy},
        },
        "certificates": {"mode": "secret", "secret": {"name": "spacegate-tls", "caBundle": ca_pem}},
        **values,
    }
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = render_chart(chart, chart_values)
    kinds = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
    return [dict(obj) for obj in rendered.objects if obj["kind"] in kinds]


def apply_webhooks(api_client: client.ApiClient, configurations: list[dict[str, Any]]) -> None:
    """Create or replace webhook configurations (the apiserver validates them as it would)."""
    api: Api = client.AdmissionregistrationV1Api(api_client)
    for obj in configurations:
        name = obj["metadata"]["name"]
        validating = obj["kind"] == "ValidatingWebhookConfiguration"
        read = (
            api.read_validating_webhook_configuration
            if validating
            else api.read_mutating_webhook_configuration
        )
        create = (
            api.create_validating_webhook_configuration
            if validating
            else api.create_mutating_webhook_configuration
        )
        replace = (
            api.replace_validating_webhook_configuration
            if validating
            else api.replace_mutating_webhook_configuration
        )
        try:
            current = read(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            create(obj)
            continue
        version = current.metadata.resource_version
        replace(name, {**obj, "metadata": {**obj["metadata"], "resourceVersion": version}})


def delete_webhooks(api_client: client.ApiClient, name: str = FULLNAME) -> None:
    """Delete the validating and the mutating configuration called ``name`` (the chart names
    both after the release); gone ones are fine."""
    api: Api = client.AdmissionregistrationV1Api(api_client)
    for delete in (
        api.delete_validating_webhook_configuration,
        api.delete_mutating_webhook_configuration,
    ):
        try:
            delete(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def denial(call: Callable[[], object]) -> str:
    """The apiserver's message for a refused request; fails when the request passes."""
    try:
        call()
    except ApiException as exc:
        return str(exc.body)
    raise AssertionError("the request was admitted")


def wait_until_enforced(api_client: client.ApiClient, namespace: str) -> None:
    """Send dry-run marker Pods until spacegate answers them (the configuration is live).

    The marker's image is :data:`TEAM_B`, so ``namespace`` must be one where spacegate
    refuses it (any but workspace 102's).
    """
    core: Api = client.CoreV1Api(api_client)

    def enforced() -> bool:
        try:
            core.create_namespaced_pod(namespace, pod("marker", TEAM_B), dry_run="All")
        except ApiException as exc:
            return "spacegate" in str(exc.body) or "validate.spacegate.io" in str(exc.body)
        return False

    eventually(enforced, "the webhook configuration to take effect")
