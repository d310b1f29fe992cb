"""The last-known-good copy in the chart: the Secret it creates, and exactly the RBAC it needs.

With a Harbor listed live (no static ``spaces``) and ``config.lastKnownGood.persist`` not
false, the chart creates the empty Secret ``spacegate-last-known-good`` in spacegate's
namespace and lets the ServiceAccount ``get`` and ``update`` that one name (no ``create``),
and hold the Lease that makes one replica its writer. With provisioning on, the admission
policy that fences spacegate's Secret writes lets that one update through too.
"""

from __future__ import annotations

from typing import Any

from policy.last_known_good import SECRET_NAME
from tests.charts.chartlib import FULLNAME, HARBOR_AND_REGISTRY, NAMESPACE, Rendered
from tests.charts.conftest import Render
from webhook.leader.last_known_good import COMPONENT
from webhook.leader.lease import DEFAULT_LEASE_NAME

LISTED = {"config": HARBOR_AND_REGISTRY}
STATIC_ONLY = {
    "config": {
        "registries": [
            {
                "name": "harbor",
                "type": "harbor",
                "url": "https://harbor.example.com",
                "spaces": [{"name": "library", "public": True}],
            }
        ],
        "bindings": {"source": "config", "items": []},
    }
}


def copy_secret(rendered: Rendered) -> dict[str, Any] | None:
    return rendered.find("Secret", SECRET_NAME)


def rules_on(rendered: Rendered, resource: str) -> set[tuple[str, tuple[str, ...]]]:
    """(verb, resourceNames) granted on ``resource`` in spacegate's namespace by any Role."""
    return {
        (verb, tuple(rule.get("resourceNames", ())))
        for role in rendered.all("Role")
        if role["metadata"]["namespace"] == NAMESPACE
        for rule in role["rules"]
        if resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_with_a_listed_harbor_the_chart_creates_the_empty_copy_secret(render: Render) -> None:
    secret = copy_secret(render(LISTED))
    assert secret is not None
    assert secret["metadata"]["namespace"] == NAMESPACE
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"]["spacegate.io/component"] == COMPONENT
    assert "data" not in secret  # Helm never overwrites what the leader wrote


def test_the_service_account_may_read_and_update_that_one_secret_and_create_none(
    render: Render,
) -> None:
    rendered = render(LISTED)
    assert rules_on(rendered, "secrets") == {("get", (SECRET_NAME,)), ("update", (SECRET_NAME,))}
    binding = rendered.one("RoleBinding", f"{FULLNAME}-last-known-good")
    assert binding["subjects"][0]["name"] == FULLNAME


def test_the_copy_comes_with_the_lease_even_without_other_leader_work(render: Render) -> None:
    values = {"config": {**HARBOR_AND_REGISTRY, "bindings": {"source": "config", "items": []}}}
    leases = rules_on(render(values), "leases")
    assert ("get", (DEFAULT_LEASE_NAME,)) in leases and ("update", (DEFAULT_LEASE_NAME,)) in leases


def test_nothing_of_it_is_rendered_without_a_listed_harbor_or_when_turned_off(
    render: Render,
) -> None:
    off = {"config": {**HARBOR_AND_REGISTRY, "lastKnownGood": {"persist": False}}}
    for values in (STATIC_ONLY, off):
        rendered = render(values)
        assert copy_secret(rendered) is None
        assert rendered.find("Role", f"{FULLNAME}-last-known-good") is None
    assert rules_on(render(STATIC_ONLY), "leases") == set()


def test_the_setting_reaches_the_config_file(render: Render) -> None:
    off = {"config": {**HARBOR_AND_REGISTRY, "lastKnownGood": {"persist": False}}}
    config = render(off).one("ConfigMap")["data"]["config.yaml"]
    assert "lastKnownGood:" in config and "persist: false" in config


def test_with_provisioning_the_secret_policy_lets_the_copy_be_updated_only(
    render: Render,
) -> None:
    values = {
        "config": {
            **HARBOR_AND_REGISTRY,
            "pullSecrets": {"provision": True},
            "policy": {"namespaceGuard": {"enabled": True}},
        }
    }
    policy = render(values).one("ValidatingAdmissionPolicy", f"{FULLNAME}-secrets")
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert f"'{SECRET_NAME}'" in variables["objectIsCopy"]
    assert f"request.namespace == '{NAMESPACE}'" in variables["objectIsCopy"]
    creates, changes = (v["expression"] for v in policy["spec"]["validations"])
    assert "request.operation == 'UPDATE' && variables.objectIsCopy" in creates
    assert "request.operation == 'UPDATE' && variables.oldObjectIsCopy" in changes
