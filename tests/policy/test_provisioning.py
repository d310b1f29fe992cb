"""What provisioning must make true: robots with exactly the right spaces, Secrets where needed."""

from __future__ import annotations

import pytest

from policy.config import load_config
from policy.provisioning import (
    CredentialRef,
    DesiredState,
    RegistryEntry,
    desired_state,
    robot_base_name,
)
from policy.snapshot import NamespaceInfo, Snapshot

CONFIG = """
policy: {exemptNamespaces: [kube-system]}
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces:
      - {name: library, public: true}
      - {name: team-a, public: false}
      - {name: team-b, public: false}
      - {name: shared, public: false}
  - name: locked
    type: harbor
    url: https://locked.example.com
    anonymousPull: false
    spaces: [{name: pub, public: true}, {name: priv, public: false}]
  - name: platform
    type: docker-registry
    url: https://registry.example.com:5000
  - name: ws-registry
    type: docker-registry
    url: https://ws.example.com
    workspace: "102"
    anonymousPull: false
    pullCredentials: {usernameFile: /u, passwordFile: /p}
  - name: no-creds
    type: docker-registry
    url: https://nocreds.example.com
    anonymousPull: false
  - name: live
    type: harbor
    url: https://live.example.com
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
  - {registry: harbor, space: team-b, workspaces: ["102"]}
  - {registry: harbor, space: shared, workspaces: ["101", "102"]}
  - {registry: locked, space: priv, workspaces: ["101"]}
"""


def state(**namespaces: str | None) -> DesiredState:
    snapshot = Snapshot.build(
        load_config(CONFIG),
        namespaces={name: NamespaceInfo(workspace=ws) for name, ws in namespaces.items()},
    )
    return desired_state(snapshot)


def test_each_workspace_gets_one_robot_per_harbor_with_exactly_its_private_spaces() -> None:
    desired = state(**{"a-dev": "101", "a-prod": "101", "b-dev": "102"})

    assert desired.robots[("harbor", "101")].spaces == {"team-a", "shared"}
    assert desired.robots[("harbor", "102")].spaces == {"team-b", "shared"}


def test_a_registry_without_anonymous_pulls_needs_every_space_the_workspace_may_use() -> None:
    desired = state(**{"a-dev": "101", "lost": None})

    assert desired.robots[("locked", "101")].spaces == {"pub", "priv"}
    assert desired.robots[("locked", None)].spaces == {"pub"}  # no workspace: public only


def test_no_robot_ever_has_the_all_projects_scope() -> None:
    desired = state(**{"a-dev": "101", "b-dev": "102", "lost": None})
    assert all("*" not in robot.spaces for robot in desired.robots.values())


def test_namespaces_of_a_workspace_share_its_secret_with_one_entry_per_registry() -> None:
    desired = state(**{"a-dev": "101", "a-prod": "101"})

    assert desired.secrets["a-dev"].entries == desired.secrets["a-prod"].entries
    assert [e.registry for e in desired.secrets["a-dev"].entries] == ["harbor", "locked"]
    robot = CredentialRef("robot", "harbor", "101")
    holding = [
        ns for ns, spec in desired.secrets.items() if robot in {e.credential for e in spec.entries}
    ]
    assert holding == ["a-dev", "a-prod"]


def test_secret_entries_cover_every_host_alias_of_the_registry() -> None:
    desired = state(**{"a-dev": "101"})
    [harbor] = [e for e in desired.secrets["a-dev"].entries if e.registry == "harbor"]
    assert harbor == RegistryEntry(
        "harbor",
        ("harbor.example.com", "harbor.example.com:443"),
        CredentialRef("robot", "harbor", "101"),
    )


def test_a_workspace_registrys_pull_credential_goes_to_that_workspaces_namespaces_only() -> None:
    desired = state(**{"a-dev": "101", "b-dev": "102"})

    b_entries = {e.registry: e.credential for e in desired.secrets["b-dev"].entries}
    a_entries = {e.registry for e in desired.secrets["a-dev"].entries}
    assert b_entries["ws-registry"] == CredentialRef("static", "ws-registry")
    assert "ws-registry" not in a_entries


def test_a_docker_registry_needing_credentials_without_pull_credentials_is_reported() -> None:
    desired = state(**{"a-dev": "101"})
    assert desired.missing == {"no-creds"}
    assert all(e.registry != "no-creds" for e in desired.secrets["a-dev"].entries)


def test_namespaces_that_need_no_credential_and_exempt_ones_get_no_secret() -> None:
    desired = state(**{"kube-system": "101", "plain": None, "other": "999"})

    assert "kube-system" not in desired.secrets
    # "plain" still needs the locked registry's public spaces; a workspace bound to nothing
    # private on any registry needs only what every namespace needs
    assert [e.registry for e in desired.secrets["plain"].entries] == ["locked"]


def test_a_harbor_not_listed_yet_is_left_alone_not_revoked() -> None:
    desired = state(**{"a-dev": "101"})
    assert desired.unknown == {"live"}
    assert all(key[0] != "live" for key in desired.robots)


def test_a_harbor_known_only_from_the_clusters_copy_is_left_alone_too() -> None:
    snapshot = Snapshot.build(
        load_config(CONFIG),
        spaces={"live": {"team-l": False}},
        namespaces={"a-dev": NamespaceInfo(workspace="101")},
        copied=frozenset({"live"}),
    )
    desired = desired_state(snapshot)
    assert desired.unknown == {"live"}  # nothing written from a copy the leader did not list
    assert all(key[0] != "live" for key in desired.robots)


def test_an_unbinding_shrinks_the_robot_and_removes_unneeded_secrets() -> None:
    before = state(**{"a-dev": "101", "c-dev": "103"})
    config = load_config(CONFIG.replace('workspaces: ["101", "102"]', 'workspaces: ["102"]'))
    after = desired_state(
        Snapshot.build(
            config, namespaces={"a-dev": NamespaceInfo("101"), "c-dev": NamespaceInfo("103")}
        )
    )

    assert before.robots[("harbor", "101")].spaces == {"team-a", "shared"}
    assert after.robots[("harbor", "101")].spaces == {"team-a"}


@pytest.mark.parametrize(
    ("registry", "workspace"),
    [("harbor", "101"), ("Harbor Main", "ws/1"), ("harbor", None), ("a-b", "c"), ("a", "b-c")],
)
def test_robot_names_are_ours_valid_for_harbor_and_distinct_per_pair(
    registry: str, workspace: str | None
) -> None:
    import re

    name = robot_base_name(registry, workspace)
    assert name.startswith("spacegate-")
    assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", name)
    others = {
        robot_base_name(r, w)
        for r, w in [
            ("harbor", "101"),
            ("Harbor Main", "ws/1"),
            ("harbor", None),
            ("a-b", "c"),
            ("a", "b-c"),
        ]
        if (r, w) != (registry, workspace)
    }
    assert name not in others


# --------------------------------------------------------------------------- same rules as decide

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from policy.provisioning import _assemble  # noqa: E402
from policy.visibility import workspace_spaces  # noqa: E402


def needed_spaces(snapshot: Snapshot, workspace: str | None) -> dict[str, set[str]]:
    """registry -> spaces whose images need credentials for ``workspace``, by ``decide``'s
    rules applied space by space (``workspace_spaces``)."""
    unknown = {
        n for n, s in snapshot.registries.items() if s.registry.type == "harbor" and not s.synced
    }
    out: dict[str, set[str]] = {}
    for visible in workspace_spaces(snapshot, workspace):
        if visible.needs_secret and visible.registry not in unknown:
            out.setdefault(visible.registry, set()).add(visible.space)
    return out


def reference_desired_state(snapshot: Snapshot) -> DesiredState:
    """``desired_state`` the slow way: :func:`needed_spaces` per workspace, assembled alike."""
    unknown = frozenset(
        n for n, s in snapshot.registries.items() if s.registry.type == "harbor" and not s.synced
    )
    return _assemble(snapshot, lambda ws: needed_spaces(snapshot, ws), unknown)


SPACES = ["s1", "s2", "s3", "s4"]
WORKSPACES = ["101", "102", "103"]


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    registries = []
    for i in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["harbor", "docker-registry"]))
        entry = (
            f"  - name: r{i}\n    type: {kind}\n    url: https://r{i}.example.com\n"
            f"    anonymousPull: {str(draw(st.booleans())).lower()}\n"
        )
        if draw(st.booleans()):
            entry += f'    workspace: "{draw(st.sampled_from(WORKSPACES))}"\n'
        if kind == "docker-registry" and draw(st.booleans()):
            entry += "    pullCredentials: {usernameFile: /u, passwordFile: /p}\n"
        spaces = draw(st.dictionaries(st.sampled_from(SPACES), st.booleans(), max_size=4))
        if spaces or kind == "harbor":
            entry += (
                "    spaces: ["
                + ", ".join(f"{{name: {n}, public: {str(p).lower()}}}" for n, p in spaces.items())
                + "]\n"
            )
        registries.append(entry)
    bindings = [
        f"  - {{registry: r{draw(st.integers(0, len(registries) - 1))}, "
        f"space: {draw(st.sampled_from(SPACES))}, "
        f"workspaces: [{', '.join(repr(w) for w in draw(st.sets(st.sampled_from(WORKSPACES))))}]}}"
        for _ in range(draw(st.integers(0, 5)))
    ]
    text = "registries:\n" + "".join(registries) + "bindings:\n" + ("\n".join(bindings) or "  []")
    namespaces = {
        f"ns{i}": NamespaceInfo(workspace=draw(st.sampled_from([*WORKSPACES, None])))
        for i in range(draw(st.integers(0, 5)))
    }
    return Snapshot.build(
        load_config(text.replace("bindings:\n  []", "bindings: []")), namespaces=namespaces
    )


@settings(max_examples=300, deadline=None, derandomize=True)
@given(snapshot=snapshots())
def test_the_fast_desired_state_is_exactly_what_decides_visibility_rules_give(
    snapshot: Snapshot,
) -> None:
    assert desired_state(snapshot) == reference_desired_state(snapshot)
