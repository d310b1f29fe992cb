"""What a RegistrySpaceBinding's status says, for every situation an admin can create."""

from __future__ import annotations

from policy.bindings import BindingObject, Condition
from policy.config import load_config
from policy.provisioning import desired_state
from policy.snapshot import NamespaceInfo, Snapshot
from webhook.leader.bindings.conditions import (
    MAX_MESSAGE,
    DesiredStatus,
    Provisioned,
    desired_statuses,
    stamped,
)

REGISTRIES = """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: team-a, public: false}, {name: lib, public: true}]
  - name: live
    type: harbor
    url: https://live.example.com
"""
# Provisioning needs the namespace guard (policy/config/parse.py).
GUARDED_PROVISIONING = "policy: {namespaceGuard: {enabled: true}}\npullSecrets: {provision: true}\n"

NAMESPACES = {
    "a-dev": NamespaceInfo("101"),
    "a-prod": NamespaceInfo("101"),
    "b": NamespaceInfo("102"),
}


def binding(
    name: str, space: str = "team-a", *workspaces: str, registry: str = "harbor", **extra: object
) -> BindingObject:
    return BindingObject(name, registry, space, tuple(sorted(workspaces or ("101",))), **extra)  # type: ignore[arg-type]


def statuses(
    *objects: BindingObject, extra: str = "", **options: object
) -> dict[str, dict[str, tuple[str, str, str]]]:
    snapshot = Snapshot.build(
        load_config(REGISTRIES + extra),
        namespaces=NAMESPACES,
        binding_objects={o.name: o for o in objects},
    )
    return {
        name: {c.type: (c.status, c.reason, c.message) for c in status.conditions}
        for name, status in desired_statuses(snapshot, **options).items()  # type: ignore[arg-type]
    }


def test_a_binding_in_force_is_ready_with_its_space_found_and_no_conflict() -> None:
    (status,) = statuses(binding("a", "team-a", "101", "102")).values()
    assert status["Ready"] == (
        "True",
        "Bound",
        "workspaces 101, 102 may use space team-a of harbor",
    )
    assert status["SpaceFound"][:2] == ("True", "SpaceListed")
    assert "(private)" in status["SpaceFound"][2]
    assert status["Conflicted"][:2] == ("False", "NoConflict")
    assert "CredentialsProvisioned" not in status  # provisioning is off


def test_a_binding_naming_an_undeclared_registry_is_not_ready_and_says_so() -> None:
    (status,) = statuses(binding("a", registry="quay")).values()
    assert status["Ready"][:2] == ("False", "RegistryNotDeclared")
    assert (
        "registry 'quay' is not declared in spacegate's config (declared: harbor, live)"
        in (status["Ready"][2])
    )
    assert status["SpaceFound"][0] == "Unknown"


def test_an_unusable_spec_is_not_ready_with_the_field_named() -> None:
    bad = binding("a", problem="spec.space: expected a space name")
    (status,) = statuses(bad).values()
    assert status["Ready"] == ("False", "InvalidSpec", "spec.space: expected a space name")


def test_a_space_the_registry_does_not_list_is_not_found_and_not_ready() -> None:
    (status,) = statuses(binding("a", "team-z")).values()
    assert status["SpaceFound"][:2] == ("False", "SpaceNotListed")
    assert "its images follow policy.unknownSpace (deny)" in status["SpaceFound"][2]
    assert status["Ready"][:2] == ("False", "SpaceNotFound")


def test_a_registry_not_listed_yet_leaves_readiness_unknown() -> None:
    (status,) = statuses(binding("a", "team-a", registry="live")).values()
    assert status["SpaceFound"][:2] == ("Unknown", "RegistryNotListed")
    assert status["Ready"][:2] == ("Unknown", "RegistryNotListed")


def test_two_objects_for_one_space_are_conflicted_on_both_each_naming_the_other() -> None:
    found = statuses(
        binding("a", "team-a", "101"),
        binding("b", "team-a", "102"),
        extra='bindings: [{registry: harbor, space: team-a, workspaces: ["103"]}]\n',
    )
    assert found["a"]["Conflicted"] == (
        "True",
        "SameSpaceBound",
        "RegistrySpaceBinding b also binds space team-a of registry harbor; the config file "
        "binds it to workspaces 103; the union applies: workspaces 101, 102, 103",
    )
    assert found["b"]["Conflicted"][2].startswith("RegistrySpaceBinding a also binds")
    assert found["a"]["Ready"][0] == "True"  # merged, not broken


def test_objects_are_ignored_and_say_so_when_the_config_takes_bindings_from_itself() -> None:
    (status,) = statuses(binding("a"), extra="bindings: {source: config}\n").values()
    assert status["Ready"][:2] == ("False", "Ignored")
    assert "bindings.source: config" in status["Ready"][2]


def _provisioning(
    *objects: BindingObject, outcome: str = "done"
) -> dict[str, tuple[str, str, str]]:
    snapshot = Snapshot.build(
        load_config(REGISTRIES + GUARDED_PROVISIONING),
        namespaces=NAMESPACES,
        binding_objects={o.name: o for o in objects},
    )
    current = desired_state(snapshot)
    provisioned = {
        "none": None,
        "done": Provisioned(current),
        "failed": Provisioned(current, failed_namespaces=frozenset({"a-prod"})),
        "old": Provisioned(desired_state(Snapshot.build(snapshot.config, namespaces=NAMESPACES))),
    }[outcome]
    (status,) = desired_statuses(snapshot, provisioned, current).values()
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


def test_with_provisioning_the_credentials_are_counted_once_a_pass_has_run() -> None:
    pending = _provisioning(binding("a"), outcome="none")
    assert pending["CredentialsProvisioned"][:2] == ("Unknown", "Pending")
    assert pending["Ready"][:2] == ("Unknown", "ProvisioningPending")
    stale = _provisioning(binding("a"), outcome="old")  # a pass before this binding existed
    assert stale["CredentialsProvisioned"][:2] == ("Unknown", "Pending")
    done = _provisioning(binding("a"))
    assert done["CredentialsProvisioned"] == (
        "True",
        "Provisioned",
        "2 of 2 namespaces have their pull Secret (2 Secrets) with pull on team-a",
    )
    assert done["Ready"][0] == "True"


def test_a_secret_that_could_not_be_written_makes_the_binding_not_ready_naming_it() -> None:
    failed = _provisioning(binding("a"), outcome="failed")
    assert failed["CredentialsProvisioned"][:2] == ("False", "SecretsMissing")
    assert "1 of 2 namespaces" in failed["CredentialsProvisioned"][2]
    assert "not provisioned: a-prod" in failed["CredentialsProvisioned"][2]
    assert failed["Ready"][:2] == ("False", "CredentialsNotProvisioned")


def test_a_public_space_needs_no_credential() -> None:
    status = _provisioning(binding("a", "lib"))
    assert status["CredentialsProvisioned"][:2] == ("True", "NotNeeded")


# --------------------------------------------------------------------------- writing only changes


def _current(wanted: DesiredStatus, at: str) -> BindingObject:
    _, written = stamped(wanted, binding("a"), at)
    return binding(
        "a",
        observed_generation=written["observedGeneration"],
        conditions=tuple(
            Condition(
                c["type"],
                c["status"],
                c["reason"],
                c["message"],
                c["lastTransitionTime"],
                c["observedGeneration"],
            )
            for c in written["conditions"]
        ),
    )


def test_a_status_that_already_says_it_is_not_written_again() -> None:
    snapshot = Snapshot.build(load_config(REGISTRIES), binding_objects={"a": binding("a")})
    wanted = desired_statuses(snapshot)["a"]
    needed, _ = stamped(wanted, binding("a"), "2025-01-01T00:00:00Z")
    assert needed  # nothing written yet
    current = _current(wanted, "2025-01-01T00:00:00Z")
    needed, _ = stamped(wanted, current, "2025-06-01T00:00:00Z")
    assert not needed


def test_the_transition_time_moves_only_when_the_status_does() -> None:
    snapshot = Snapshot.build(load_config(REGISTRIES), binding_objects={"a": binding("a")})
    before = desired_statuses(snapshot)["a"]
    current = _current(before, "2025-01-01T00:00:00Z")
    two = Snapshot.build(
        load_config(REGISTRIES),
        binding_objects={"a": binding("a"), "b": binding("b")},  # a new reason, same status
    )
    needed, written = stamped(desired_statuses(two)["a"], current, "2025-06-01T00:00:00Z")
    times = {c["type"]: c["lastTransitionTime"] for c in written["conditions"]}
    assert needed
    assert times["Conflicted"] == "2025-06-01T00:00:00Z"  # False -> True
    assert times["Ready"] == "2025-01-01T00:00:00Z"  # still True
    assert times["SpaceFound"] == "2025-01-01T00:00:00Z"


def test_messages_are_bounded_so_a_huge_union_cannot_make_every_pass_rewrite_them() -> None:
    many = [binding(f"b{i}", "team-a", *(f"w{i}-{j}" for j in range(256))) for i in range(4)]
    found = statuses(*many)
    assert all(len(msg) <= MAX_MESSAGE for s in found.values() for _, _, msg in s.values())


def test_a_new_leader_that_knows_less_keeps_what_the_object_says_instead_of_flapping() -> None:
    """A replica taking the Lease has not listed the registry or run a provisioning pass
    yet: the conditions written for this generation stand, so statuses do not flap to
    Unknown and back at every leader change."""
    written = binding(
        "a",
        observed_generation=1,
        conditions=(
            Condition(
                "SpaceFound", "True", "SpaceListed", "registry live lists space team-a", "t", 1
            ),
            Condition("CredentialsProvisioned", "True", "Provisioned", "1 of 1 namespaces", "t", 1),
        ),
        registry="live",
    )
    snapshot = Snapshot.build(
        load_config(REGISTRIES + GUARDED_PROVISIONING),
        namespaces=NAMESPACES,
        binding_objects={"a": written},
    )
    (status,) = desired_statuses(snapshot, None, desired_state(snapshot)).values()
    found = {c.type: (c.status, c.reason) for c in status.conditions}
    assert found["SpaceFound"] == ("True", "SpaceListed")
    assert found["CredentialsProvisioned"] == ("True", "Provisioned")
    assert found["Ready"] == ("True", "Bound")
    newer = binding(
        "a", generation=2, observed_generation=1, conditions=written.conditions, registry="live"
    )
    again = Snapshot.build(snapshot.config, namespaces=NAMESPACES, binding_objects={"a": newer})
    (status,) = desired_statuses(again, None, desired_state(again)).values()
    assert {c.type: c.status for c in status.conditions}["SpaceFound"] == "Unknown"  # a new spec
