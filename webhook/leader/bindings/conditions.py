"""What each RegistrySpaceBinding's status should say: pure, from a snapshot.

Conditions follow the Kubernetes API conventions (``metav1.Condition``): a ``type``, a
``status`` of True, False or Unknown, a CamelCase ``reason`` for programs, a ``message`` for
humans, the ``observedGeneration`` they were computed for, and a ``lastTransitionTime`` that
moves only when the status does (:func:`stamped`). spacegate writes four:

- ``SpaceFound``: the registry's last listing has the space (Unknown before its first one);
- ``Conflicted``: True when other objects, or the config file, bind the same space; the
  union of their workspaces applies, and the message names the others (said on every one);
- ``CredentialsProvisioned`` (only with ``pullSecrets.provision``): the pull Secrets of the
  bound workspaces' namespaces carry a credential for the space, with counts (Unknown until
  a provisioning pass has run on what is bound now);
- ``Ready``: the summary, True when the binding is in force and nothing it needs is missing.

An object that binds nothing (an unusable spec, an undeclared registry, ``bindings.source:
config``) is Ready False with the reason, never an error. Computing is pure and cheap (a
dict lookup or two per object), so the leader's loop can compute every object's desired
status for each snapshot and write only the differences.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from policy.bindings import BindingObject, Condition, Conflict, conflicts, uses_objects
from policy.messages import clip, single_line
from policy.provisioning import CredentialRef, DesiredState
from policy.snapshot import Snapshot

__all__ = ["DesiredStatus", "Provisioned", "desired_statuses", "stamped"]

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, slots=True)
class Want:
    """One condition as wanted, before its timestamp (the message clipped)."""

    type: str
    status: Status
    reason: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", clip(single_line(self.message), MAX_MESSAGE))


@dataclass(frozen=True, slots=True)
class DesiredStatus:
    """One object's status as it should be (no timestamps: they follow from the current)."""

    generation: int
    conditions: tuple[Want, ...]


@dataclass(frozen=True, slots=True)
class Provisioned:
    """The outcome of the last provisioning pass, as binding statuses read it.

    ``desired`` is what that pass made true (when it matches the current desired state, the
    pass is current); namespaces whose Secret could not be written, Secrets of that name
    spacegate does not manage (conflicts), and robots that could not be created, are not
    provisioned.
    """

    desired: DesiredState
    failed_namespaces: frozenset[str] = frozenset()
    conflicts: frozenset[str] = frozenset()
    failed_robots: frozenset[tuple[str, str | None]] = frozenset()


# Messages are clipped well below what is read back (policy.bindings), so a long list of
# workspaces or objects can never make the written and the read message differ forever.
MAX_MESSAGE = 1024


def _join(items: Iterable[str]) -> str:
    return ", ".join(sorted(items))


def _kept(obj: BindingObject, type_: str) -> Want | None:
    """The object's own condition, when it was written for its current generation (and
    says more than "unknown")."""
    current = obj.condition(type_)
    if current is None or current.observed_generation != obj.generation:
        return None
    if current.status == "Unknown":
        return None
    return Want(current.type, current.status, current.reason, current.message)


def _space_found(snapshot: Snapshot, obj: BindingObject) -> Want:
    state = snapshot.registries.get(obj.registry)
    if state is None:
        return Want("SpaceFound", "Unknown", "RegistryNotDeclared", _undeclared(snapshot, obj))
    if not state.synced:
        # A replica that just started (and leads) has not listed yet: what the object says
        # for this generation still stands, rather than flapping to Unknown and back.
        return _kept(obj, "SpaceFound") or Want(
            "SpaceFound",
            "Unknown",
            "RegistryNotListed",
            f"registry {obj.registry} has not been listed yet",
        )
    public = state.spaces.get(obj.space)
    if public is None:
        policy = snapshot.policy
        return Want(
            "SpaceFound",
            "False",
            "SpaceNotListed",
            f"the last listing of registry {obj.registry} has no space {obj.space}; its "
            f"images follow policy.unknownSpace ({policy.unknown_space})",
        )
    if state.registry.type == "docker-registry":
        visibility = "public, as every space of a Docker Registry: binding it changes nothing"
    else:
        visibility = "public: every namespace may use it" if public else "private"
    return Want(
        "SpaceFound",
        "True",
        "SpaceListed",
        f"registry {obj.registry} lists space {obj.space} ({visibility})",
    )


def _undeclared(snapshot: Snapshot, obj: BindingObject) -> str:
    declared = _join(r.name for r in snapshot.config.registries) or "none"
    return (
        f"registry {obj.registry!r} is not declared in spacegate's config (declared: "
        f"{declared}); this binding binds nothing until it is"
    )


def _conflicted(obj: BindingObject, conflict: Conflict | None) -> Want:
    where = f"space {obj.space} of registry {obj.registry}"
    if conflict is None or not conflict.any:
        return Want("Conflicted", "False", "NoConflict", f"no other binding binds {where}")
    parts = []
    if len(conflict.objects) == 1:
        parts.append(f"RegistrySpaceBinding {conflict.objects[0]} also binds {where}")
    elif conflict.objects:
        parts.append(f"RegistrySpaceBindings {', '.join(conflict.objects)} also bind {where}")
    if conflict.config_workspaces:
        parts.append(f"the config file binds it to workspaces {_join(conflict.config_workspaces)}")
    elif not conflict.objects:
        parts.append(f"the config file binds {where} too")
    return Want(
        "Conflicted",
        "True",
        "SameSpaceBound",
        "; ".join(parts) + f"; the union applies: workspaces {_join(conflict.union)}",
    )


def _credentials(
    snapshot: Snapshot, obj: BindingObject, provisioned: Provisioned | None, current: DesiredState
) -> Want:
    state = snapshot.registries[obj.registry]
    registry = state.registry
    if registry.type != "harbor" or registry.workspace is not None:
        return Want(
            "CredentialsProvisioned",
            "True",
            "NotNeeded",
            f"registry {obj.registry} needs no robot per binding"
            + (
                f" (integrated by workspace {registry.workspace})"
                if registry.workspace
                else " (a Docker Registry)"
            ),
        )
    if not state.synced:
        return _kept(obj, "CredentialsProvisioned") or Want(
            "CredentialsProvisioned",
            "Unknown",
            "RegistryNotListed",
            f"registry {obj.registry} has not been listed yet",
        )
    if state.spaces.get(obj.space) is not False:
        return Want(
            "CredentialsProvisioned",
            "True",
            "NotNeeded",
            f"space {obj.space} is not a private space of {obj.registry}: a binding adds no "
            "credential for it",
        )
    if provisioned is None:
        # A new leader knows nothing of the last pass yet: the object's word stands.
        kept = _kept(obj, "CredentialsProvisioned")
        if kept is not None:
            return kept
    if provisioned is None or provisioned.desired != current:
        return Want(
            "CredentialsProvisioned",
            "Unknown",
            "Pending",
            "no provisioning pass has run yet on what is bound now",
        )
    needed: list[str] = []
    missing: list[str] = []
    robots = current.robots
    for namespace, spec in current.secrets.items():
        workspace = snapshot.namespace(namespace).workspace
        if workspace not in obj.workspaces:
            continue
        ref = CredentialRef("robot", obj.registry, workspace)
        robot = robots.get((obj.registry, workspace))
        if robot is None or obj.space not in robot.spaces:
            continue
        if not any(entry.credential == ref for entry in spec.entries):
            continue
        needed.append(namespace)
        if (
            namespace in provisioned.failed_namespaces
            or namespace in provisioned.conflicts
            or (obj.registry, workspace) in provisioned.failed_robots
        ):
            missing.append(namespace)
    done = len(needed) - len(missing)
    counts = f"{done} of {len(needed)} namespaces have their pull Secret ({done} Secrets)"
    if not needed:
        return Want(
            "CredentialsProvisioned",
            "True",
            "Provisioned",
            f"no namespace of workspaces {_join(obj.workspaces)} exists yet (0 namespaces, "
            "0 Secrets)",
        )
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        return Want(
            "CredentialsProvisioned",
            "False",
            "SecretsMissing",
            f"{counts}; not provisioned: {shown} (see spacegate's log)",
        )
    return Want(
        "CredentialsProvisioned",
        "True",
        "Provisioned",
        f"{counts} with pull on {obj.space}",
    )


def _ready(obj: BindingObject, others: list[Want]) -> Want:
    by_type = {w.type: w for w in others}
    found = by_type["SpaceFound"]
    credentials = by_type.get("CredentialsProvisioned")
    bound = f"workspaces {_join(obj.workspaces)} may use space {obj.space} of {obj.registry}"
    if found.status == "False":
        return Want("Ready", "False", "SpaceNotFound", found.message)
    if credentials is not None and credentials.status == "False":
        return Want("Ready", "False", "CredentialsNotProvisioned", credentials.message)
    if found.status == "Unknown":
        return Want("Ready", "Unknown", found.reason, found.message)
    if credentials is not None and credentials.status == "Unknown":
        return Want("Ready", "Unknown", "ProvisioningPending", credentials.message)
    return Want("Ready", "True", "Bound", bound)


def _not_binding(reason: str, message: str, *, provision: bool) -> tuple[Want, ...]:
    wants = [
        Want("Ready", "False", reason, message),
        Want("SpaceFound", "Unknown", reason, message),
        Want("Conflicted", "Unknown", reason, message),
    ]
    if provision:
        wants.append(Want("CredentialsProvisioned", "Unknown", reason, message))
    return tuple(wants)


def desired_statuses(
    snapshot: Snapshot,
    provisioned: Provisioned | None = None,
    current: DesiredState | None = None,
) -> dict[str, DesiredStatus]:
    """Every read object's status as it should be now.

    ``provisioned`` is the last provisioning pass's outcome and ``current`` the desired state
    of ``snapshot`` (both only used with ``pullSecrets.provision``).
    """
    objects: Mapping[str, BindingObject] = snapshot.binding_objects or {}
    config = snapshot.config
    provision = config.pull_secrets.provision
    clashes = conflicts(config, objects)
    declared = {r.name for r in config.registries}
    out: dict[str, DesiredStatus] = {}
    for name, obj in sorted(objects.items()):
        if obj.problem is not None:
            wants = _not_binding("InvalidSpec", obj.problem, provision=provision)
        elif not uses_objects(config):
            wants = _not_binding(
                "Ignored",
                "spacegate's config sets bindings.source: config, so RegistrySpaceBinding "
                "objects bind nothing",
                provision=provision,
            )
        elif obj.registry not in declared:
            wants = _not_binding(
                "RegistryNotDeclared", _undeclared(snapshot, obj), provision=provision
            )
        else:
            others = [_space_found(snapshot, obj), _conflicted(obj, clashes.get(name))]
            if provision:
                others.append(_credentials(snapshot, obj, provisioned, current or DesiredState()))
            wants = (_ready(obj, others), *others)
        out[name] = DesiredStatus(obj.generation, wants)
    return out


def stamped(wanted: DesiredStatus, current: BindingObject, now: str) -> tuple[bool, dict[str, Any]]:
    """(whether a write is needed, the ``status`` to write) for one object.

    Each condition keeps its ``lastTransitionTime`` while its status is unchanged (a new
    reason or message alone does not move it); a new condition, or a new status, gets
    ``now``. Nothing needs writing when the conditions and ``observedGeneration`` already say
    what is wanted.
    """
    conditions: list[dict[str, Any]] = []
    same = current.observed_generation == wanted.generation and len(current.conditions) == len(
        wanted.conditions
    )
    for want in wanted.conditions:
        old: Condition | None = current.condition(want.type)
        keep = old is not None and old.status == want.status and old.last_transition_time
        if not (
            old is not None
            and old.status == want.status
            and old.reason == want.reason
            and old.message == want.message
            and old.observed_generation == wanted.generation
        ):
            same = False
        conditions.append(
            {
                "type": want.type,
                "status": want.status,
                "observedGeneration": wanted.generation,
                "lastTransitionTime": old.last_transition_time if keep and old else now,
                "reason": want.reason,
                "message": want.message,
            }
        )
    return not same, {"observedGeneration": wanted.generation, "conditions": conditions}
