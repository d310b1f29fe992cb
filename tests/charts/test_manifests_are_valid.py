"""Whatever values an admin picks from the supported sets, Kubernetes accepts every object.

Three layers: `helm lint` (through the SDK), the Kubernetes OpenAPI schemas in strict mode
(unknown fields are errors, as with `kubectl apply --validate=strict`), and the apiserver's
extra rules for webhook configurations that no schema expresses (tests/charts/apiserver_rules.py).
The cert-manager and Prometheus Operator kinds are CRDs that kubernetes-validate has no schema
for; they are checked structurally, and against each other, at the end of this file.
"""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.charts.apiserver_rules import webhook_configuration_errors
from tests.charts.chartlib import CHART_DIR, NAMESPACE, VALUES_SET_NAMES, Rendered

# CRD kinds the Kubernetes schemas cannot know; checked by the structural tests below.
CRD_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}


def _minimum_kube_version() -> str:
    """The floor of Chart.yaml's kubeVersion (">=1.27.0-0" -> "1.27.0")."""
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    match = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)(-0)?", chart["kubeVersion"])
    assert match, f"unexpected kubeVersion constraint {chart['kubeVersion']!r}"
    return match.group(1)


# The oldest Kubernetes the chart claims to support, and a current release.
KUBE_VERSIONS = (_minimum_kube_version(), "1.35.0")

# Kinds served only from a later release than the chart's floor, with that release: the
# chart renders them only where the feature that needs them refuses older clusters
# (pull-secret provisioning and the report guard need Kubernetes 1.30, see
# tests/charts/test_provisioning_chart.py and test_audit_chart.py).
SINCE = {
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"): "1.30.0",
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"): "1.30.0",
}


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _served(obj: dict[str, Any], kube_version: str) -> bool:
    since = SINCE.get((obj["apiVersion"], obj["kind"]))
    return since is None or _release(kube_version) >= _release(since)


@pytest.mark.parametrize("name", VALUES_SET_NAMES)
def test_helm_lint_reports_no_warnings_or_errors(
    name: str, named_values: dict[str, dict[str, Any]]
) -> None:
    report = helm.lint(
        CHART_DIR,
        named_values[name],
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{KUBE_VERSIONS[1]}",
    )
    # severity 1 is INFO (for example "icon is recommended"); 2 warning, 3 error.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []
    assert report["errors"] == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_object_matches_the_kubernetes_schema_strictly(
    any_render: Rendered, kube_version: str
) -> None:
    validated = 0
    for obj in any_render.objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue  # no upstream schema; see the structural tests below
        if not _served(obj, kube_version):
            continue  # not in that release; validated against the ones that serve it
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")
        validated += 1
    assert validated >= 9  # the core objects are there in every values set


def test_every_values_set_renders_only_known_kinds(any_render: Rendered) -> None:
    """A new kind must be added to the schema checks (or to CRD_KINDS with its own test)."""
    kinds = {(o["apiVersion"], o["kind"]) for o in any_render.objects}
    core = {
        ("v1", "Secret"),
        ("v1", "ConfigMap"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
        ("apps/v1", "Deployment"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
        *SINCE,
    }
    assert kinds <= core | CRD_KINDS


def test_every_namespaced_object_lands_in_the_release_namespace(any_render: Rendered) -> None:
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for obj in any_render.objects:
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


def test_webhook_configurations_pass_the_apiservers_own_validation(any_render: Rendered) -> None:
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        assert webhook_configuration_errors(any_render.one(kind)) == []


# --------------------------------------------------------------------- CRD kinds, structurally

_GO_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(duration: str) -> float:
    assert _GO_DURATION.fullmatch(duration), f"not a Go duration: {duration!r}"
    return sum(
        float(m.group(1)) * _UNIT_SECONDS[m.group(3)]
        for m in re.finditer(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", duration)
    )


def test_cert_manager_chain_is_complete_and_consistent(rendered_set: Any) -> None:
    """Self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate, all wired up."""
    rendered: Rendered = rendered_set("cert-manager")
    issuers = {i["metadata"]["name"]: i["spec"] for i in rendered.all("Issuer")}
    certificates = {c["metadata"]["name"]: c["spec"] for c in rendered.all("Certificate")}
    assert len(issuers) == 2
    assert len(certificates) == 2
    for spec in issuers.values():
        assert len(spec) == 1 and next(iter(spec)) in ("selfSigned", "ca")
    for name, spec in certificates.items():
        ref = spec["issuerRef"]
        assert ref["group"] == "cert-manager.io"
        assert ref["kind"] == "Issuer"
        assert ref["name"] in issuers, f"Certificate {name} refers to a missing Issuer"
        assert _seconds(spec["duration"]) > 0
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", spec["secretName"])

    ca_name, ca = next((n, c) for n, c in certificates.items() if c.get("isCA"))
    assert "selfSigned" in issuers[ca["issuerRef"]["name"]]
    # A renewed CA keeps its key, so certificates it signed before stay trusted.
    assert ca["privateKey"]["rotationPolicy"] == "Never"
    serving_name, serving = next((n, c) for n, c in certificates.items() if not c.get("isCA"))
    ca_issuer = issuers[serving["issuerRef"]["name"]]
    assert ca_issuer["ca"]["secretName"] == ca["secretName"], "CA Issuer does not use the CA"
    assert _seconds(serving["renewBefore"]) < _seconds(serving["duration"])
    assert "server auth" in serving["usages"]

    # The Secret cert-manager writes is the one the pods mount and cainjector reads.
    mounted = [
        s["secret"]["name"]
        for s in rendered.pod_spec["volumes"][0]["projected"]["sources"]
        if "secret" in s
    ]
    assert serving["secretName"] in mounted
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        annotations = rendered.one(kind)["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{serving_name}"
    assert ca_name != serving_name


@pytest.mark.parametrize("name", ["cert-manager", "secret"])
def test_service_monitor_scrapes_the_webhook_service_over_verified_tls(
    name: str, rendered_set: Any
) -> None:
    rendered: Rendered = rendered_set(name)
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["scheme"] == "https"
    assert endpoint["path"] == "/metrics"
    assert _seconds(endpoint["scrapeTimeout"]) < _seconds(endpoint["interval"])
    tls = endpoint["tlsConfig"]
    assert tls["serverName"] == f"{service['metadata']['name']}.{NAMESPACE}.svc"
    assert "insecureSkipVerify" not in tls
    (source,) = tls["ca"].values()
    # The CA it points at is something this release actually provides.
    if "secret" in tls["ca"]:
        volume_secrets = {
            s["secret"]["name"]
            for s in rendered.pod_spec["volumes"][0]["projected"]["sources"]
            if "secret" in s
        }
        assert source["name"] in volume_secrets
    else:
        assert source["key"] in rendered.one("ConfigMap", source["name"])["data"]


def test_prometheus_labels_from_values_reach_the_service_monitor(rendered_set: Any) -> None:
    monitor = rendered_set("cert-manager").one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_optional_kinds_are_absent_by_default(default: Rendered) -> None:
    assert default.all("ServiceMonitor") == []
    assert default.all("NetworkPolicy") == []
    assert default.all("Issuer") == []
    assert default.all("Certificate") == []


def test_lint_rejects_an_unknown_key_like_install_would() -> None:
    report = helm.lint(CHART_DIR, {"replicas": 3}, strict=True, namespace=NAMESPACE)
    assert any("additional properties 'replicas' not allowed" in e for e in report["errors"])
