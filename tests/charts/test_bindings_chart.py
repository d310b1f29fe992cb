"""What the chart does for RegistrySpaceBinding objects: the CRD, RBAC, roles for admins.

The CRD's own content (one source, the names it enforces) is checked in
``tests/policy/test_binding_crd.py``; the webhook entry in ``test_webhook_configurations.py``;
the chart's RBAC in action on the real apiserver in ``tests/e2e/test_bindings.py``.
"""

from __future__ import annotations

from typing import Any

import yaml

from tests.charts.chartlib import CHART_DIR, FULLNAME, Rendered

CRDS = CHART_DIR / "crds"


def test_the_crd_ships_in_crds_so_helm_installs_it_first_and_never_deletes_it(
    default: Rendered,
) -> None:
    """Helm applies crds/ before the templates and leaves it alone on upgrade and uninstall,
    so uninstalling spacegate never deletes every binding with its CRD."""
    (path,) = CRDS.glob("*.yaml")
    crd = yaml.safe_load(path.read_text())
    assert crd["metadata"]["name"] == "registryspacebindings.spacegate.io"
    assert all(
        o["metadata"]["name"] != "registryspacebindings.spacegate.io"
        for o in default.all("CustomResourceDefinition")
    )  # not a template: never part of the release's resources


def _rules(rendered: Rendered, name: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = rendered.one("ClusterRole", name)["rules"]
    return rules


def test_admins_get_a_binding_admin_and_a_viewer_role_that_no_namespace_admin_inherits(
    default: Rendered,
) -> None:
    admin = default.one("ClusterRole", f"{FULLNAME}-binding-admin")
    viewer = default.one("ClusterRole", f"{FULLNAME}-binding-viewer")

    assert admin["rules"][0]["verbs"] >= ["create", "update", "patch", "delete"]
    assert admin["rules"][0]["resources"] == ["registryspacebindings"]
    assert _rules(default, f"{FULLNAME}-binding-viewer")[0]["verbs"] == ["get", "list", "watch"]
    for role in (admin, viewer):
        labels = role["metadata"]["labels"]
        assert not any(key.startswith("rbac.authorization.k8s.io/aggregate-to") for key in labels)
    # No binding of either: who decides which workspace uses which space is the admin's call.
    assert all(
        b["roleRef"]["name"] not in (f"{FULLNAME}-binding-admin", f"{FULLNAME}-binding-viewer")
        for b in default.all("ClusterRoleBinding")
    )


def test_spacegate_itself_may_change_only_the_status_of_a_binding(default: Rendered) -> None:
    rules = _rules(default, FULLNAME)
    on_objects = [r for r in rules if r["apiGroups"] == ["spacegate.io"]]
    writes = {v for r in on_objects for v in r["verbs"]} - {"get", "list", "watch"}
    assert writes == {"update", "patch"}
    assert all(
        r["resources"] == ["registryspacebindings/status"]
        for r in on_objects
        if set(r["verbs"]) & writes
    )


def test_the_admin_roles_can_be_left_out(render: Any) -> None:
    rendered = render({"rbac": {"bindingRoles": False}})
    assert rendered.find("ClusterRole", f"{FULLNAME}-binding-admin") is None


def test_the_index_may_be_written_only_with_the_audit_on(default: Rendered, render: Any) -> None:
    audited = render({"config": {"audit": {"enabled": True}}})
    role = audited.one("Role", f"{FULLNAME}-impact-index")
    verbs = {v for r in role["rules"] for v in r["verbs"]}
    assert verbs == {"get", "list", "watch", "update", "create"}
    named = [r for r in role["rules"] if "update" in r["verbs"]]
    assert named[0]["resourceNames"] == ["spacegate-binding-impact"]
    default_verbs = {
        v for r in default.one("Role", f"{FULLNAME}-impact-index")["rules"] for v in r["verbs"]
    }
    assert default_verbs == {"get", "list", "watch"}
