"""What the apiserver sends to spacegate, and what it does when spacegate does not answer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.charts.chartlib import FULLNAME, NAMESPACE, Rendered, b64_pem

VALIDATING = "ValidatingWebhookConfiguration"
MUTATING = "MutatingWebhookConfiguration"
BOTH = (VALIDATING, MUTATING)


def _covered(hook: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(group, resource, operation) triples the webhook's rules match."""
    return {
        (group, resource, op)
        for rule in hook["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for op in rule["operations"]
    }


def _excluded_namespaces(hook: dict[str, Any]) -> list[str]:
    (expr,) = hook["namespaceSelector"]["matchExpressions"]
    assert expr["key"] == "kubernetes.io/metadata.name"
    assert expr["operator"] == "NotIn"
    values: list[str] = expr["values"]
    return values


def test_validating_webhook_checks_pods_and_every_workload_kind_on_create_and_update(
    default: Rendered,
) -> None:
    hook = default.webhook(VALIDATING)
    workloads = [
        ("", "pods"),
        ("", "pods/ephemeralcontainers"),
        ("", "replicationcontrollers"),
        ("", "podtemplates"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
    ]
    expected = {(g, r, op) for g, r in workloads for op in ("CREATE", "UPDATE")}
    assert _covered(hook) == expected
    assert hook["clientConfig"]["service"]["path"] == "/validate"
    assert all(rule["scope"] == "Namespaced" for rule in hook["rules"])


def test_mutating_webhook_only_sees_pod_creation_and_is_reinvoked_if_needed(
    default: Rendered,
) -> None:
    hook = default.webhook(MUTATING)
    assert _covered(hook) == {("", "pods", "CREATE")}
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["clientConfig"]["service"]["path"] == "/mutate"


@pytest.mark.parametrize("kind", BOTH)
def test_both_webhooks_are_dry_run_safe_v1_and_match_equivalent_versions(
    default: Rendered, kind: str
) -> None:
    hook = default.webhook(kind)
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["sideEffects"] == "None"
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["timeoutSeconds"] == 5


def test_webhook_names_are_fully_qualified_and_distinct(default: Rendered) -> None:
    assert default.webhook(VALIDATING)["name"] == "validate.spacegate.io"
    assert default.webhook(MUTATING)["name"] == "mutate.spacegate.io"


def test_emergency_delete_names_in_notes_are_the_configurations_the_chart_creates(
    default: Rendered,
) -> None:
    names = {kind: default.one(kind)["metadata"]["name"] for kind in BOTH}
    assert names == {VALIDATING: FULLNAME, MUTATING: FULLNAME}
    command = (
        f"kubectl delete validatingwebhookconfiguration/{FULLNAME} "
        f"mutatingwebhookconfiguration/{FULLNAME}"
    )
    assert command in default.notes


def test_validating_fails_closed_and_mutating_fails_open_by_default(default: Rendered) -> None:
    assert default.webhook(VALIDATING)["failurePolicy"] == "Fail"
    assert default.webhook(MUTATING)["failurePolicy"] == "Ignore"


def test_failure_policies_and_timeout_follow_values(rendered_set: Any) -> None:
    rendered: Rendered = rendered_set("fail-open")
    assert rendered.webhook(VALIDATING)["failurePolicy"] == "Ignore"
    assert rendered.webhook(MUTATING)["failurePolicy"] == "Fail"
    assert rendered.webhook(VALIDATING)["timeoutSeconds"] == 3
    assert rendered.webhook(MUTATING)["timeoutSeconds"] == 3
    assert rendered.config["policy"]["mode"] == "warn"


@pytest.mark.parametrize("kind", BOTH)
def test_kube_system_and_the_release_namespace_are_never_sent_to_the_webhook(
    default: Rendered, kind: str
) -> None:
    hook = default.webhook(kind)
    assert _excluded_namespaces(hook) == ["kube-system", NAMESPACE]
    # Nothing else narrows the scope: no objectSelector opt-out users could set themselves.
    assert "objectSelector" not in hook
    assert set(hook["namespaceSelector"]) == {"matchExpressions"}


@pytest.mark.parametrize("kind", BOTH)
def test_extra_exempt_namespaces_reach_both_webhooks_and_the_server_config(
    rendered_set: Any, kind: str
) -> None:
    rendered: Rendered = rendered_set("extra-exemptions")
    expected = ["kube-system", NAMESPACE, "monitoring", "istio-system", "legacy-apps"]
    assert _excluded_namespaces(rendered.webhook(kind)) == expected
    assert rendered.config["policy"]["exemptNamespaces"] == expected


@pytest.mark.parametrize("kind", BOTH)
def test_webhooks_call_the_charts_service_on_its_port(default: Rendered, kind: str) -> None:
    service = default.one("Service")
    target = default.webhook(kind)["clientConfig"]["service"]
    assert target["name"] == service["metadata"]["name"]
    assert target["namespace"] == NAMESPACE
    assert target["port"] in {p["port"] for p in service["spec"]["ports"]}
    assert "url" not in default.webhook(kind)["clientConfig"]


def test_service_routes_to_the_container_port_the_server_listens_on(default: Rendered) -> None:
    port, selector_port = default.one("Service")["spec"]["ports"]
    container_port, selector_container_port = default.container["ports"]
    assert port["targetPort"] == container_port["name"] == "https"
    assert selector_port["targetPort"] == selector_container_port["name"] == "selector"
    assert container_port["containerPort"] == 8443
    selector = default.one("Service")["spec"]["selector"]
    pod_labels = default.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


@pytest.mark.parametrize(
    ("name", "has_bundle", "annotated"),
    [("default", True, False), ("secret", True, False), ("cert-manager", False, True)],
)
def test_ca_bundle_comes_from_the_chart_the_admin_or_cainjector(
    rendered_set: Any, name: str, has_bundle: bool, annotated: bool
) -> None:
    rendered: Rendered = rendered_set(name)
    for kind in BOTH:
        client = rendered.webhook(kind)["clientConfig"]
        assert ("caBundle" in client) is has_bundle
        annotations = rendered.one(kind)["metadata"].get("annotations", {})
        assert ("cert-manager.io/inject-ca-from" in annotations) is annotated


GUARD = "namespaces.spacegate.io"


def test_the_namespace_guard_webhook_is_rendered_only_when_the_guard_is_enabled(
    default: Rendered, named_values: dict[str, dict[str, Any]], render: Any
) -> None:
    guarded = render(named_values["namespace-guard"])

    names = [h["name"] for h in default.one(VALIDATING)["webhooks"]]
    hook = guarded.webhook(VALIDATING, GUARD)

    assert GUARD not in names
    # every way a namespace's labels change: the object and both subresources that persist
    # metadata (issue 15 finding 2)
    assert _covered(hook) == {
        ("", resource, operation)
        for resource in ("namespaces", "namespaces/status", "namespaces/finalize")
        for operation in ("CREATE", "UPDATE")
    }
    [condition] = hook["matchConditions"]
    assert "request.operation == 'CREATE'" in condition["expression"]
    assert hook["rules"][0]["scope"] == "Cluster"
    assert hook["clientConfig"]["service"]["path"] == "/validate"
    assert hook["failurePolicy"] == "Fail"
    assert _excluded_namespaces(hook) == ["kube-system", NAMESPACE]
    guard = guarded.config["policy"]["namespaceGuard"]
    assert guard["serviceAccounts"] == ["ghippo-system/ghippo-apiserver"]
    assert guard["groups"] == ["system:masters"]


BINDINGS = "bindings.spacegate.io"


def test_binding_changes_reach_the_webhook_unless_bindings_come_from_the_config_only(
    default: Rendered, render: Any
) -> None:
    """Every create, update and delete of a RegistrySpaceBinding, cluster-scoped, fail-open
    by default: binding changes must stay possible while spacegate is down."""
    hook = default.webhook(VALIDATING, BINDINGS)
    config_only = render({"config": {"bindings": {"source": "config"}}})
    failing = render({"webhook": {"bindings": {"failurePolicy": "Fail"}}})

    assert _covered(hook) == {
        ("spacegate.io", "registryspacebindings", operation)
        for operation in ("CREATE", "UPDATE", "DELETE")
    }
    assert hook["rules"][0]["scope"] == "Cluster"
    assert hook["rules"][0]["apiVersions"] == ["v1alpha1"]
    assert "namespaceSelector" not in hook  # a cluster-scoped object has no namespace
    assert hook["clientConfig"]["service"]["path"] == "/validate"
    assert hook["failurePolicy"] == "Ignore"
    assert hook["sideEffects"] == "None"
    assert failing.webhook(VALIDATING, BINDINGS)["failurePolicy"] == "Fail"
    names = [h["name"] for h in config_only.one(VALIDATING)["webhooks"]]
    assert names == ["validate.spacegate.io"]


@pytest.mark.parametrize("kind", BOTH)
def test_out_of_cluster_mode_points_the_apiserver_at_the_url_instead_of_the_service(
    named_values: dict[str, dict[str, Any]], render: Any, kind: str
) -> None:
    values = {
        **named_values["out-of-cluster"],
        "config": {"policy": {"namespaceGuard": {"enabled": True}}},
    }
    rendered = render(values)

    hooks = rendered.one(kind)["webhooks"]

    path = "/mutate" if kind == MUTATING else "/validate"
    assert {h["clientConfig"]["url"] for h in hooks} == {f"https://127.0.0.1:8443{path}"}
    assert all("service" not in h["clientConfig"] for h in hooks)


def test_in_helm_mode_the_generated_certificate_names_the_out_of_cluster_host(
    named_values: dict[str, dict[str, Any]], render: Any
) -> None:
    from cryptography import x509

    rendered = render(named_values["out-of-cluster"])
    secret = rendered.one("Secret", f"{FULLNAME}-tls")
    cert = x509.load_pem_x509_certificate(b64_pem(secret["data"], "tls.crt"))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert f"{FULLNAME}.{NAMESPACE}.svc" in sans.get_values_for_type(x509.DNSName)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8443", "https://user:pw@h:1", "https://h/x?q=1", "https://h#f"]
)
def test_an_out_of_cluster_url_the_apiserver_would_refuse_is_refused_at_install(
    url: str, chart: Any
) -> None:
    from tests.charts.chartlib import render_chart

    with pytest.raises(Exception, match="webhook/url"):
        render_chart(chart, {"webhook": {"url": url}})
