"""The chart with pull-secret provisioning: refused unguarded, and fenced by an admission policy.

With ``config.pullSecrets.provision`` the workspace label decides who receives which
workspace's pull credential, so the chart refuses to render provisioning without the
namespace guard, or with the guard failing open. And because RBAC cannot limit ``create`` to
a name, the chart fences spacegate's Secret writes with a ValidatingAdmissionPolicy; what the
policy lets through and refuses is proven on the real apiserver
(``tests/e2e/test_provisioning_rbac.py``); here, that it is rendered for the right identity,
name and namespace.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from tests.charts.chartlib import CHART_DIR, FULLNAME, NAMESPACE, PROVISIONING, RELEASE, Rendered
from tests.charts.conftest import Render

POLICY = "ValidatingAdmissionPolicy"
BINDING = "ValidatingAdmissionPolicyBinding"
GUARD = "namespaces.spacegate.io"
WHY = "every namespace labelled with a workspace receives that workspace's pull credential"


def _render_error(chart: helm.Chart, values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return str(caught.value)


def _with(**config: Any) -> dict[str, Any]:
    """PROVISIONING with more config keys (merged one level down)."""
    merged = {key: dict(value) for key, value in PROVISIONING["config"].items()}
    for key, value in config.items():
        merged[key] = {**merged.get(key, {}), **value}
    return {"config": merged}


# --------------------------------------------------------------------------- the guard


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param({}, id="guard-absent"),
        pytest.param({"namespaceGuard": {"enabled": False}}, id="guard-off"),
        pytest.param(
            {"namespaceGuard": {"enabled": False, "groups": ["admins"]}}, id="guard-off-2"
        ),
    ],
)
def test_provisioning_without_the_namespace_guard_is_refused_saying_why(
    chart: helm.Chart, policy: dict[str, Any]
) -> None:
    error = _render_error(chart, {"config": {"pullSecrets": {"provision": True}, "policy": policy}})

    assert "config.pullSecrets.provision: requires config.policy.namespaceGuard.enabled: true" in (
        error
    )
    assert WHY in error


def test_provisioning_with_a_guard_that_fails_open_is_refused_saying_why(
    chart: helm.Chart,
) -> None:
    values = {**PROVISIONING, "webhook": {"namespaceGuard": {"failurePolicy": "Ignore"}}}

    error = _render_error(chart, values)

    assert "webhook.namespaceGuard.failurePolicy: must be Fail" in error
    assert "labelled unchecked whenever spacegate cannot be reached" in error


def test_with_provisioning_the_guard_webhook_is_rendered_failing_closed(render: Render) -> None:
    hook = render(PROVISIONING).webhook("ValidatingWebhookConfiguration", GUARD)
    assert hook["failurePolicy"] == "Fail"


def test_provisioning_needs_a_cluster_that_serves_validating_admission_policies(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Rendered for a given Kubernetes release by ``helm lint``, which in lint mode reports a
    template's ``fail`` on stderr instead of stopping (``helm install`` stops on it)."""
    refusal = "config.pullSecrets.provision: needs Kubernetes 1.30 or newer (this is v1.29.9)"
    helm.lint(CHART_DIR, PROVISIONING, namespace=NAMESPACE, kube_version="v1.29.9")
    assert refusal in capfd.readouterr().err

    helm.lint(CHART_DIR, PROVISIONING, namespace=NAMESPACE, kube_version="v1.30.0")
    assert "needs Kubernetes 1.30" not in capfd.readouterr().err


# --------------------------------------------------------------------------- the policy


def test_the_policy_is_rendered_only_with_provisioning(default: Rendered, render: Render) -> None:
    assert default.all(POLICY) == [] and default.all(BINDING) == []
    rendered = render(PROVISIONING)
    policy, binding = rendered.one(POLICY), rendered.one(BINDING)
    assert policy["metadata"]["name"] == binding["metadata"]["name"] == f"{FULLNAME}-secrets"
    assert binding["spec"] == {"policyName": f"{FULLNAME}-secrets", "validationActions": ["Deny"]}
    assert "matchResources" not in binding["spec"]  # every namespace


def test_the_policy_limits_exactly_spacegates_service_account_and_fails_closed(
    render: Render,
) -> None:
    spec = render(PROVISIONING).one(POLICY)["spec"]

    assert spec["failurePolicy"] == "Fail"
    [rule] = spec["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["secrets"] and rule["apiGroups"] == [""]
    assert rule["operations"] == ["CREATE", "UPDATE", "DELETE"]
    [condition] = spec["matchConditions"]
    assert condition["expression"] == (
        f"request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:{FULLNAME}'"
    )


def test_the_policy_follows_the_service_account_pull_secret_name_and_home(
    render: Render,
) -> None:
    values = {
        **_with(
            policy={"pullSecretName": "team-pull"},
            pullSecrets={"credentialsNamespace": "spacegate-state"},
        ),
        "serviceAccount": {"create": False, "name": "provisioner"},
    }

    spec = render(values).one(POLICY)["spec"]

    [condition] = spec["matchConditions"]
    assert condition["expression"].endswith(f":{NAMESPACE}:provisioner'")
    variables = {v["name"]: v["expression"] for v in spec["variables"]}
    for subject in ("object", "oldObject"):
        pull = variables[f"{subject}IsPullSecret"]
        assert f"{subject}.type == 'kubernetes.io/dockerconfigjson'" in pull
        assert f"{subject}.metadata.name == 'team-pull'" in pull
        assert f"{subject}.metadata.labels['spacegate.io/component'] == 'pull-secret'" in pull
        credential = variables[f"{subject}IsCredential"]
        assert credential.startswith("request.namespace == 'spacegate-state' && ")
        assert f"{subject}.type == 'Opaque'" in credential
        assert f"{subject}.metadata.labels['spacegate.io/component'] == 'robot-credential'" in (
            credential
        )
    messages = " ".join(v["message"] for v in spec["validations"])
    assert "named team-pull" in messages and "in namespace spacegate-state" in messages


def test_the_policy_is_kept_when_the_chart_creates_no_rbac(render: Render) -> None:
    """RBAC made by hand is as wide as the chart's would be; the fence matters all the same."""
    rendered = render({**PROVISIONING, "rbac": {"create": False}})
    assert rendered.all("ClusterRole") == []
    assert rendered.one(POLICY) and rendered.one(BINDING)
