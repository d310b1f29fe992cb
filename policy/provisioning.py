"""Pull-secret provisioning, as a pure function: who needs which credential, where.

With ``pullSecrets.provision`` on, spacegate keeps, per workspace, a least-privilege registry
credential and a ``kubernetes.io/dockerconfigjson`` Secret in every namespace that needs one.
What that means for a given snapshot is decided here, from the same visibility rules as
``decide`` (:func:`policy.visibility.workspace_spaces`), so the credential a namespace gets
pulls exactly what admission lets it use:

- a **Harbor** needs, per workspace (or for the namespaces of no workspace), one robot with
  ``repository:pull`` on exactly the spaces whose images need credentials there: the private
  spaces bound to it (or all of a workspace-integrated Harbor's private spaces), and every
  space it may use when the registry has ``anonymousPull: false``; never ``namespace: "*"``;
- a **Docker Registry** with ``anonymousPull: false`` hands out its configured
  ``pullCredentials`` (a workspace-integrated one to that workspace's namespaces only);
- a namespace needs a Secret when any registry needs a credential for it; its ``auths`` hold
  one entry per host in each such registry's ``hosts`` (the kubelet matches the image's
  domain, port included, against each key);
- exempt namespaces get nothing (admission leaves them alone, and so does provisioning).

A Harbor whose spaces are not known yet (never listed) is left out of the plan and marked
``unknown``: the writer must then neither create nor delete anything of it, instead of
revoking every credential of a registry that merely has not answered yet. So is a Harbor
whose spaces come from the cluster's last-known-good copy (``policy.last_known_good``): a
leader that has not listed it itself writes nothing from borrowed data.

The writing (Harbor robots, Secrets, the leader lease) lives in ``webhook.live``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from policy.snapshot import Snapshot

__all__ = [
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "ROBOT_PREFIX",
    "CredentialRef",
    "DesiredState",
    "RegistryEntry",
    "RobotSpec",
    "SecretSpec",
    "desired_state",
    "robot_base_name",
]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "spacegate"


@dataclass(frozen=True, slots=True, order=True)
class CredentialRef:
    """Where a Secret entry's credential comes from.

    ``robot``: the Harbor robot spacegate keeps for (``registry``, ``workspace``);
    ``static``: the Docker Registry's configured ``pullCredentials``.
    """

    kind: Literal["robot", "static"]
    registry: str
    workspace: str | None = None


@dataclass(frozen=True, slots=True)
class RobotSpec:
    """One Harbor robot spacegate must keep: pull on exactly ``spaces``."""

    registry: str
    workspace: str | None
    spaces: frozenset[str]

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.registry, self.workspace)


@dataclass(frozen=True, slots=True, order=True)
class RegistryEntry:
    """The ``auths`` entries one registry contributes to a namespace's Secret."""

    registry: str
    hosts: tuple[str, ...]
    credential: CredentialRef


@dataclass(frozen=True, slots=True)
class SecretSpec:
    """The pull Secret one namespace must hold."""

    namespace: str
    entries: tuple[RegistryEntry, ...]


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Everything provisioning must make true for one snapshot.

    ``unknown``: registries whose spaces are not known yet; their robots and entries must be
    left as they are. ``missing``: Docker Registries that need a pull credential but have no
    ``pullCredentials`` configured (reported, not provisioned).
    """

    robots: Mapping[tuple[str, str | None], RobotSpec] = field(default_factory=dict)
    secrets: Mapping[str, SecretSpec] = field(default_factory=dict)
    unknown: frozenset[str] = frozenset()
    missing: frozenset[str] = frozenset()


def desired_state(snapshot: Snapshot) -> DesiredState:
    """The robots and Secrets provisioning must keep for ``snapshot`` (see the module doc).

    Computed from an index of the bindings, so its cost grows with workspaces plus bindings
    plus spaces, not with their product (1,000 workspaces and 5,000 spaces are ordinary);
    ``tests/policy/test_provisioning.py`` checks it against a reference that applies
    ``decide``'s visibility rules (:func:`policy.visibility.workspace_spaces`) space by space.
    """
    unknown = frozenset(
        name
        for name, state in snapshot.registries.items()
        if state.registry.type == "harbor" and (not state.synced or state.copied)
    )
    bound: dict[str, dict[str, set[str]]] = {}  # workspace -> registry -> private spaces
    for (registry, space), workspaces in snapshot.bindings.items():
        state = snapshot.registries.get(registry)
        if state is None or state.registry.type != "harbor" or state.registry.workspace:
            continue
        if state.space_public(space) is not False:
            continue  # public (needs no binding) or unknown (decide refuses it)
        for workspace in workspaces:
            bound.setdefault(workspace, {}).setdefault(registry, set()).add(space)

    def needed(workspace: str | None) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for name, state in snapshot.registries.items():
            registry = state.registry
            if name in unknown or (
                registry.workspace is not None and registry.workspace != workspace
            ):
                continue
            if registry.type == "docker-registry":
                if not registry.anonymous_pull:
                    out[name] = set(state.spaces) or {"*"}
                continue
            if registry.workspace is not None:  # the workspace's own Harbor: all it has
                spaces = {
                    s
                    for s, public in state.spaces.items()
                    if not public or not registry.anonymous_pull
                }
            elif not registry.anonymous_pull:
                spaces = {s for s, public in state.spaces.items() if public}
                spaces |= bound.get(workspace or "", {}).get(name, set()) if workspace else set()
            else:
                spaces = set(bound.get(workspace, {}).get(name, ())) if workspace else set()
            if spaces:
                out[name] = spaces
        return out

    return _assemble(snapshot, needed, unknown)


def _assemble(
    snapshot: Snapshot,
    needed: Callable[[str | None], dict[str, set[str]]],
    unknown: frozenset[str],
) -> DesiredState:
    policy = snapshot.policy
    missing: set[str] = set()
    by_workspace: dict[str | None, tuple[RegistryEntry, ...]] = {}
    robots: dict[tuple[str, str | None], RobotSpec] = {}
    workspaces = {info.workspace for info in snapshot.namespaces.values()}
    for workspace in sorted(workspaces, key=lambda w: (w is not None, w or "")):
        entries: list[RegistryEntry] = []
        for name, spaces in sorted(needed(workspace).items()):
            registry = snapshot.registries[name].registry
            if registry.type == "harbor":
                robots[(name, workspace)] = RobotSpec(name, workspace, frozenset(spaces))
                ref = CredentialRef("robot", name, workspace)
            elif registry.pull_credentials is None:
                missing.add(name)
                continue
            else:
                ref = CredentialRef("static", name)
            entries.append(RegistryEntry(name, registry.hosts, ref))
        by_workspace[workspace] = tuple(entries)
    secrets = {
        namespace: SecretSpec(namespace, by_workspace[info.workspace])
        for namespace, info in sorted(snapshot.namespaces.items())
        if namespace not in policy.exempt_namespaces and by_workspace.get(info.workspace)
    }
    used = {e.credential for spec in secrets.values() for e in spec.entries}
    robots = {
        key: spec for key, spec in robots.items() if CredentialRef("robot", key[0], key[1]) in used
    }
    return DesiredState(robots, secrets, unknown, frozenset(missing))


_ROBOT_NAME_PART = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
ROBOT_PREFIX = "spacegate-"


def _name_part(text: str) -> str:
    """``text`` if it can stand in a Harbor robot name as is, else ``x`` (the hash decides)."""
    return text if len(text) <= 24 and _ROBOT_NAME_PART.fullmatch(text) else "x"


def robot_base_name(registry: str, workspace: str | None) -> str:
    """The name every robot of (``registry``, ``workspace``) starts with.

    ``spacegate-`` first, so spacegate finds all of its robots (and only those) by prefix
    after a crash; then the registry and workspace for people reading Harbor's robot list
    (``none`` for namespaces of no workspace); then a hash of the exact pair, so two pairs
    can never share a name whatever characters their names hold.
    """
    digest = hashlib.sha256(f"{registry}\0{workspace}".encode()).hexdigest()[:10]
    ws = "none" if workspace is None else _name_part(workspace)
    return f"{ROBOT_PREFIX}{_name_part(registry)}-{ws}-{digest}"
