"""The background audit in the chart: its config, its RBAC, and the optional PolicyReport CRD.

``config.audit`` passes through to the config file; with ``enabled`` the ServiceAccount may
read every kind the auditor lists (``webhook.leader.audit.findings.KINDS``, compared here,
so the chart cannot drift from the code), write exactly the report kind ``reports`` names,
and hold the leader Lease (granted once, whether provisioning is on as well or not).
``policyReports.installCRD`` renders a ``policyreports.wgpolicyk8s.io`` CRD; the reports
spacegate builds must fit its schema with nothing pruned, or the writer would see a changed
report on every pass.

The whole-chart checks (lint, strict Kubernetes schemas, namespaces) already run over the
``audit`` values set in chartlib; the CRD cannot join those sets (their kind allowlist and
"every object is namespaced" check are for the core chart), so it gets the same checks here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import helm_python as helm
import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import pytest
from kubernetes import client

from policy.config import AuditSettings, load_config
from policy.decision import decide
from policy.report import Resource, build_report
from policy.snapshot import NamespaceInfo, Snapshot
from tests.charts.chartlib import CHART_DIR, FULLNAME, NAMESPACE, PROVISIONING, RELEASE, Rendered
from tests.charts.conftest import Render
from tests.charts.test_manifests_are_valid import KUBE_VERSIONS
from webhook.leader.audit.findings import KINDS
from webhook.leader.audit.reports import ReportWriter
from webhook.leader.lease import DEFAULT_LEASE_NAME

AUDIT = {"config": {"audit": {"enabled": True}}}
CRD = {"policyReports": {"installCRD": True}}
READ = ("get", "list", "watch")
REPORT_VERBS = ("get", "list", "create", "update", "delete")
SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}

Rule = tuple[str, str, str, tuple[str, ...]]


def _rules(role: dict[str, Any]) -> set[Rule]:
    """(API group, resource, verb, resourceNames) for every rule of a (Cluster)Role."""
    return {
        (group, resource, verb, tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _audited_kinds() -> set[tuple[str, str]]:
    """(API group, plural) of everything the auditor lists."""
    groups = {"/api/v1": "", "/apis/apps/v1": "apps", "/apis/batch/v1": "batch"}
    return {(groups[prefix], plural) for prefix, plural, _, _ in KINDS}


def _report_kind(report_format: str) -> tuple[str, str]:
    """(API group, plural) the report writer uses for ``report_format``."""
    writer = ReportWriter(client.ApiClient(), report_format)  # type: ignore[arg-type]
    return writer.group, writer.plural


def _reads() -> set[Rule]:
    return {(g, r, v, ()) for g, r in _audited_kinds() for v in READ}


def _lease_rules() -> set[Rule]:
    group = "coordination.k8s.io"
    return {
        (group, "leases", "create", ()),
        (group, "leases", "get", (DEFAULT_LEASE_NAME,)),
        (group, "leases", "update", (DEFAULT_LEASE_NAME,)),
    }


def _lease_roles(rendered: Rendered) -> list[dict[str, Any]]:
    return [r for r in rendered.all("Role") if _rules(r) & _lease_rules()]


def _bound(rendered: Rendered, kind: str, role: dict[str, Any]) -> None:
    """A ``kind`` binding gives ``role`` to the release's ServiceAccount (and to no one else)."""
    bindings = [b for b in rendered.all(kind) if b["roleRef"]["name"] == role["metadata"]["name"]]
    assert len(bindings) == 1, f"{len(bindings)} {kind}s for {role['metadata']['name']}"
    assert bindings[0]["roleRef"]["kind"] == role["kind"]
    assert bindings[0]["subjects"] == [SERVICE_ACCOUNT]
    assert bindings[0]["metadata"].get("namespace") == role["metadata"].get("namespace")


# --------------------------------------------------------------------------- config


def test_audit_is_off_by_default_and_adds_no_permission(default: Rendered) -> None:
    assert "audit" not in default.config
    assert default.find("ClusterRole", f"{FULLNAME}-audit") is None
    # The Lease (binding statuses) and reading the impact index; nothing of the audit's.
    assert {r["metadata"]["name"] for r in default.all("Role")} == {
        f"{FULLNAME}-leader",
        f"{FULLNAME}-impact-index",
    }
    index = default.one("Role", f"{FULLNAME}-impact-index")
    assert index["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["spacegate-binding-impact"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    assert default.all("CustomResourceDefinition") == []


def test_audit_settings_reach_the_config_spacegate_reads(render: Render) -> None:
    settings = {"enabled": True, "reports": "openreports", "interval": "90s"}
    rendered = render({"config": {"audit": settings}})

    assert rendered.config["audit"] == settings
    text = rendered.one("ConfigMap", FULLNAME)["data"]["config.yaml"]
    parsed = load_config(text, source="ConfigMap/config.yaml")
    assert parsed.audit == AuditSettings(enabled=True, reports="openreports", interval=90.0)


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        pytest.param(
            {"config": {"audit": {"reports": "kyverno"}}},
            ["/config/audit/reports", "'wgpolicyk8s', 'openreports', 'none'"],
            id="unknown-report-format",
        ),
        pytest.param(
            {"config": {"audit": {"interval": "10 minutes"}}},
            ["/config/audit/interval"],
            id="interval-not-a-duration",
        ),
        pytest.param(
            {"config": {"audit": {"enabled": "yes"}}},
            ["/config/audit/enabled", "want boolean"],
            id="enabled-not-boolean",
        ),
        pytest.param(
            {"config": {"audit": {"schedule": "@hourly"}}},
            ["/config/audit", "additional properties 'schedule' not allowed"],
            id="audit-key-typo",
        ),
        pytest.param(
            {"policyReports": {"installCRDs": True}},
            ["/policyReports", "additional properties 'installCRDs' not allowed"],
            id="installCRD-typo",
        ),
    ],
)
def test_schema_rejects_bad_audit_values_naming_the_key(
    chart: helm.Chart, values: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(helm.HelmError) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    for fragment in fragments:
        assert fragment in str(caught.value)


# --------------------------------------------------------------------------- RBAC


@pytest.mark.parametrize("reports", ["wgpolicyk8s", "openreports", None])
def test_the_audit_may_read_every_kind_it_lists_and_write_only_its_report_kind(
    render: Render, reports: str | None
) -> None:
    audit: dict[str, Any] = {"enabled": True}
    if reports is not None:
        audit["reports"] = reports
    rendered = render({"config": {"audit": audit}})

    role = rendered.one("ClusterRole", f"{FULLNAME}-audit")
    group, plural = _report_kind(reports or "wgpolicyk8s")
    writes = {(group, plural, verb, ()) for verb in REPORT_VERBS}
    assert _rules(role) == _reads() | writes
    _bound(rendered, "ClusterRoleBinding", role)


def test_the_audit_reads_pods_and_every_workload_kind(render: Render) -> None:
    """The list the brief names, independently of the code's KINDS."""
    role = render(AUDIT).one("ClusterRole", f"{FULLNAME}-audit")
    read = {(g, r) for g, r, v, names in _rules(role) if v in READ and not names}
    assert read >= {
        ("", "pods"),
        ("", "replicationcontrollers"),
        ("", "podtemplates"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
    }


def test_reports_none_grants_no_report_access(render: Render) -> None:
    rendered = render({"config": {"audit": {"enabled": True, "reports": "none"}}})
    role = rendered.one("ClusterRole", f"{FULLNAME}-audit")
    assert _rules(role) == _reads()


def test_the_audit_alone_gets_the_lease(render: Render) -> None:
    rendered = render(AUDIT)

    (role,) = _lease_roles(rendered)
    assert role["metadata"]["name"] == f"{FULLNAME}-leader"
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _rules(role) == _lease_rules()  # the Lease and nothing else: no Secrets
    _bound(rendered, "RoleBinding", role)


def test_the_lease_follows_the_credentials_namespace(render: Render) -> None:
    rendered = render(
        {
            "config": {
                "audit": {"enabled": True},
                "pullSecrets": {"credentialsNamespace": "spacegate-state"},
            }
        }
    )
    (role,) = _lease_roles(rendered)
    assert role["metadata"]["namespace"] == "spacegate-state"
    _bound(rendered, "RoleBinding", role)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(PROVISIONING, id="provisioning"),
        pytest.param(
            {"config": {**PROVISIONING["config"], "audit": {"enabled": True}}},
            id="provisioning-and-audit",
        ),
    ],
)
def test_with_provisioning_the_lease_is_granted_once_by_the_provisioner_role(
    render: Render, values: dict[str, Any]
) -> None:
    rendered = render(values)

    (role,) = _lease_roles(rendered)
    assert role["metadata"]["name"] == f"{FULLNAME}-provisioner"
    assert rendered.find("Role", f"{FULLNAME}-leader") is None
    assert rendered.find("RoleBinding", f"{FULLNAME}-leader") is None
    identities = [
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in rendered.objects
    ]
    assert len(identities) == len(set(identities))


def test_no_audit_rbac_when_the_chart_creates_no_rbac(render: Render) -> None:
    rendered = render({"rbac": {"create": False}, **AUDIT})
    assert rendered.all("ClusterRole") == []
    assert rendered.all("Role") == []


# --------------------------------------------------------------------------- the CRD


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({}, 0, id="default"),
        pytest.param(AUDIT, 0, id="audit-without-crd"),
        pytest.param(CRD, 1, id="installCRD"),
        pytest.param({**CRD, **AUDIT}, 1, id="installCRD-and-audit"),
        pytest.param({"policyReports": {"installCRD": False}, **AUDIT}, 0, id="installCRD-false"),
    ],
)
def test_the_crd_is_rendered_only_when_asked(
    render: Render, values: dict[str, Any], expected: int
) -> None:
    assert len(render(values).all("CustomResourceDefinition")) == expected


@pytest.fixture(scope="module")
def crd(chart: helm.Chart) -> dict[str, Any]:
    from tests.charts.chartlib import render_chart

    found: dict[str, Any] = render_chart(chart, {**CRD, **AUDIT}).one("CustomResourceDefinition")
    return found


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    found: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return found


def test_the_crd_defines_policyreport_v1alpha2(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "policyreports.wgpolicyk8s.io"
    assert "namespace" not in crd["metadata"]
    assert spec["group"] == "wgpolicyk8s.io"
    assert spec["names"] == {
        "kind": "PolicyReport",
        "listKind": "PolicyReportList",
        "plural": "policyreports",
        "singular": "policyreport",
        "shortNames": ["polr"],
    }
    assert spec["scope"] == "Namespaced"
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha2", True, True)
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Pass": ("integer", ".summary.pass"),
        "Fail": ("integer", ".summary.fail"),
        "Warn": ("integer", ".summary.warn"),
        "Error": ("integer", ".summary.error"),
        "Skip": ("integer", ".summary.skip"),
        "Age": ("date", ".metadata.creationTimestamp"),
    }
    # The group and plural are the ones the writer and the ClusterRole use.
    assert _report_kind("wgpolicyk8s") == (spec["group"], spec["names"]["plural"])
    # Other tools' reports live in this CRD too: uninstalling spacegate keeps it.
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_the_crd_matches_the_kubernetes_schema_strictly(
    crd: dict[str, Any], kube_version: str
) -> None:
    kubernetes_validate.validate(crd, kube_version, strict=True)


def test_helm_lint_passes_with_the_crd_and_the_audit() -> None:
    report = helm.lint(
        CHART_DIR,
        {**CRD, **AUDIT},
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{KUBE_VERSIONS[1]}",
    )
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    assert report["errors"] == []


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def test_the_crd_schema_is_structural_and_preserves_nothing_unknown(
    schema: dict[str, Any],
) -> None:
    """The apiserver's rules for a structural schema, and no unpruned corners."""
    for path, node in _nodes(schema):
        assert "type" in node, f"{path or '(root)'} has no type"
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        if "properties" in node:
            assert node["type"] == "object", path
            assert "additionalProperties" not in node, path  # mutually exclusive
        if node["type"] == "array":
            assert isinstance(node.get("items"), dict), f"{path} has no item schema"
        for required in node.get("required", []):
            assert required in node.get("properties", {}), f"{path} requires {required}"
    assert schema["properties"]["metadata"] == {"type": "object"}


def test_the_crd_schema_has_the_report_format_fields(schema: dict[str, Any]) -> None:
    top = schema["properties"]
    assert set(top) == {
        "apiVersion",
        "kind",
        "metadata",
        "scope",
        "scopeSelector",
        "summary",
        "results",
    }
    assert set(top["summary"]["properties"]) == {"pass", "fail", "warn", "error", "skip"}
    result = top["results"]["items"]
    assert result["required"] == ["policy"]
    fields = result["properties"]
    assert set(fields) == {
        "source",
        "policy",
        "rule",
        "category",
        "severity",
        "timestamp",
        "result",
        "scored",
        "resources",
        "resourceSelector",
        "message",
        "properties",
    }
    assert fields["result"]["enum"] == ["pass", "fail", "warn", "error", "skip"]
    assert fields["severity"]["enum"] == ["critical", "high", "medium", "low", "info"]
    assert set(fields["timestamp"]["properties"]) == {"seconds", "nanos"}
    assert fields["scored"]["type"] == "boolean"
    assert fields["properties"]["additionalProperties"] == {"type": "string"}
    reference = {"apiVersion", "kind", "namespace", "name", "uid"}
    assert reference <= set(top["scope"]["properties"])
    assert reference <= set(fields["resources"]["items"]["properties"])
    assert set(top["scopeSelector"]["properties"]) == {"matchLabels", "matchExpressions"}


SNAPSHOT = Snapshot.build(
    load_config(
        """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: library, public: true}, {name: team-a, public: false},
             {name: team-b, public: false}]
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
"""
    ),
    namespaces={"a-dev": NamespaceInfo("101")},
)


def _reports() -> list[dict[str, Any]]:
    """Reports as spacegate writes them: passing, failing, skipped and mixed results."""
    web = Resource("apps/v1", "Deployment", "a-dev", "web", "5a1d7c3e-0000-4e8a-b6c9-1d3f5e7a9b2c")
    images = [
        ["harbor.example.com/team-a/web:1"],
        ["harbor.example.com/team-b/api:1"],
        [
            "harbor.example.com/library/nginx:1",
            "harbor.example.com/nope/x:1",
            "docker.io/busybox",
            "Not A Reference",
        ],
    ]
    reports = []
    for group in images:
        spec = {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(group)]}
        decision = decide(SNAPSHOT, "a-dev", spec, pointer="/spec/template/spec", kind="Deployment")
        reports.append(build_report(web, decision, timestamp=1_800_000_000))
    return reports


def _undeclared(value: Any, node: dict[str, Any], path: str = "") -> Iterator[str]:
    """Fields of ``value`` the schema does not declare: what the apiserver would prune."""
    if isinstance(value, dict) and path != ".metadata":
        declared = node.get("properties")
        for key, child in value.items():
            if declared is not None and key in declared:
                yield from _undeclared(child, declared[key], f"{path}.{key}")
            elif isinstance(node.get("additionalProperties"), dict):
                yield from _undeclared(child, node["additionalProperties"], f"{path}.{key}")
            else:
                yield f"{path}.{key}"
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _undeclared(item, node.get("items", {}), f"{path}[{i}]")


def test_spacegates_reports_fit_the_crd_with_nothing_pruned(schema: dict[str, Any]) -> None:
    reports = _reports()
    outcomes = {r["result"] for report in reports for r in report["results"]}
    assert {"pass", "fail"} <= outcomes

    for report in reports:
        jsonschema.validate(report, schema)
        assert list(_undeclared(report, schema)) == []


# --------------------------------------------------------------------------- report guard

REPORT_GUARD = f"{FULLNAME}-reports"


def test_only_spacegates_service_account_may_write_spacegates_reports(render: Render) -> None:
    rendered = render({"config": {"audit": {"enabled": True}}})
    policy = rendered.one("ValidatingAdmissionPolicy", REPORT_GUARD)
    binding = rendered.one("ValidatingAdmissionPolicyBinding", REPORT_GUARD)
    account = rendered.one("ServiceAccount")["metadata"]["name"]

    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    rules = {
        (group, resource, op)
        for rule in spec["matchConstraints"]["resourceRules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for op in rule["operations"]
    }
    assert rules == {
        (group, resource, op)
        for group, resource in (("wgpolicyk8s.io", "policyreports"), ("openreports.io", "reports"))
        for op in ("CREATE", "UPDATE")  # deletes stay open: garbage collection, namespaces
    }
    [condition] = spec["matchConditions"]
    assert "object.metadata.name.startsWith('spacegate-')" in condition["expression"]
    assert "oldObject.metadata.labels" in condition["expression"]
    assert "r.source == 'spacegate'" in condition["expression"]
    [validation] = spec["validations"]
    assert validation["expression"] == (
        f"request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:{account}'"
    )
    assert binding["spec"] == {"policyName": REPORT_GUARD, "validationActions": ["Deny"]}


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"config": {"audit": {"enabled": True, "reports": "none"}}},
        {"config": {"audit": {"enabled": True}}, "policyReports": {"protect": False}},
    ],
    ids=["audit off", "metrics only", "protect off"],
)
def test_no_report_guard_without_reports_or_when_turned_off(
    render: Render, values: dict[str, Any]
) -> None:
    kinds = {o["kind"] for o in render(values).objects}
    assert "ValidatingAdmissionPolicy" not in kinds
    assert "ValidatingAdmissionPolicyBinding" not in kinds
