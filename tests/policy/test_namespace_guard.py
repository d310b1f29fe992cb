"""The namespace guard: a tenant cannot move a namespace into another workspace."""

from __future__ import annotations

from typing import Any

import pytest

from policy.config import ConfigError, load_config
from policy.namespace_guard import guard_namespace

WS = "workspace.ghippo.io/id"

GUARDED = load_config(
    """
policy:
  exemptNamespaces: [kube-system, spacegate]
  namespaceGuard:
    users: [platform-admin]
    groups: [system:masters, dce:platform]
    serviceAccounts: [ghippo-system/ghippo-apiserver]
"""
)
UNGUARDED = load_config("policy: {exemptNamespaces: [kube-system]}\n")

TENANT = ("alice", ("system:authenticated", "team-a-admins"))


def guard(
    operation: str,
    labels: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    *,
    name: str = "team-a-new",
    who: tuple[str, tuple[str, ...]] = TENANT,
    config: Any = GUARDED,
) -> Any:
    user, groups = who
    return guard_namespace(
        config,
        operation=operation,
        name=name,
        labels=labels,
        old_labels=old,
        user=user,
        groups=groups,
    )


def test_a_tenant_cannot_create_a_namespace_in_another_workspace() -> None:
    verdict = guard("CREATE", {WS: "102"})
    assert not verdict.allowed
    assert verdict.message == (
        'namespace "team-a-new": setting label workspace.ghippo.io/id to "102" is reserved by '
        "spacegate's namespace guard to users platform-admin; groups dce:platform, "
        "system:masters; service accounts ghippo-system/ghippo-apiserver; "
        'user "alice" is none of them'
    )


def test_a_tenant_cannot_relabel_or_unlabel_a_namespace() -> None:
    moved = guard("UPDATE", {WS: "102"}, {WS: "101"})
    removed = guard("UPDATE", {}, {WS: "101"})
    assert 'changing label workspace.ghippo.io/id from "101" to "102"' in moved.message
    assert 'removing label workspace.ghippo.io/id (was "101")' in removed.message


def test_a_tenant_cannot_switch_its_namespace_to_audit_mode() -> None:
    verdict = guard("UPDATE", {WS: "101", "spacegate.io/mode": "audit"}, {WS: "101"})
    assert 'setting label spacegate.io/mode to "audit"' in verdict.message


def test_a_tenant_cannot_create_a_namespace_under_an_exempt_name() -> None:
    verdict = guard("CREATE", {}, name="spacegate")
    assert not verdict.allowed
    assert "whose name is exempt from spacegate" in verdict.message


def test_other_label_changes_and_unlabelled_namespaces_are_anyones_business() -> None:
    assert guard("CREATE", {"team": "a"}).allowed
    assert guard("UPDATE", {WS: "101", "team": "b"}, {WS: "101", "team": "a"}).allowed
    assert guard("CREATE", None).allowed
    assert guard("DELETE", None).allowed


@pytest.mark.parametrize(
    "who",
    [
        ("platform-admin", ()),
        ("bob", ("dce:platform",)),
        ("kubernetes-admin", ("system:masters",)),
        ("system:serviceaccount:ghippo-system:ghippo-apiserver", ("system:serviceaccounts",)),
    ],
)
def test_configured_users_groups_and_service_accounts_may_move_namespaces(
    who: tuple[str, tuple[str, ...]],
) -> None:
    assert guard("UPDATE", {WS: "102"}, {WS: "101"}, who=who).allowed


def test_a_service_account_of_the_same_name_elsewhere_is_not_trusted() -> None:
    impostor = ("system:serviceaccount:team-a:ghippo-apiserver", ())
    assert not guard("CREATE", {WS: "102"}, who=impostor).allowed


def test_with_the_guard_off_labels_are_not_checked() -> None:
    assert guard("CREATE", {WS: "102"}, config=UNGUARDED).allowed


def test_the_guard_defaults_to_system_masters_only() -> None:
    config = load_config("policy: {namespaceGuard: {enabled: true}}\n")
    assert config.policy.namespace_guard.groups == {"system:masters"}
    assert not guard("CREATE", {WS: "1"}, config=config).allowed
    assert guard("CREATE", {WS: "1"}, who=("root", ("system:masters",)), config=config).allowed


def test_hostile_label_values_are_quoted_by_their_start_on_one_line() -> None:
    verdict = guard("CREATE", {WS: "x\n" * 5000})
    assert "\n" not in verdict.message
    assert len(verdict.message) < 600


def test_a_malformed_guard_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"policy\.namespaceGuard\.serviceAccounts: expected"):
        load_config("policy: {namespaceGuard: {serviceAccounts: [nameonly]}}\n")
    with pytest.raises(ConfigError, match=r"policy\.namespaceGuard\.admins: unknown key"):
        load_config("policy: {namespaceGuard: {admins: [x]}}\n")
