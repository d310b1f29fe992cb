"""The provisioning plan (pure): from what exists to what must exist, in a safe order.

``policy.provisioning.desired_state`` says what must exist for a snapshot; the writer
(``webhook.leader.provisioning.writer``) reads what does exist (:class:`Observed`: spacegate's
Harbor robots, the robot credentials it keeps, the pull Secrets in every namespace). This
module decides what changes, in two steps, because the Secrets to write depend on the
robots the first step creates:

1. :func:`plan_robots` — which robots to create: a workspace's first robot, a new one when
   its spaces changed, its robot was lost or disabled, a namespace it was given to is no
   longer entitled to it (relabelled, exempted, deleted: a copy of the credential may have
   stayed there, so only a new robot revokes it), or its credential is due for rotation;
2. :func:`plan_secrets` — given the credentials after step 1, which credentials must first
   record namespaces they are about to be given to (``webhook.leader.provisioning.holders``),
   the Secret content of every namespace (rendered here, once: ``.dockerconfigjson`` bytes
   the writer only writes), which Secrets to create, update or delete, and which
   credentials and robots nothing references any more.

Nothing is deleted before its replacement is in place. A robot whose creation failed keeps
its old credential in step 2, so its Secrets and its old robot stay as they are; a robot
still named by the Secret of a namespace entitled to it that is not rewritten in this pass
(its credential could not be rendered, or recorded) is kept, and the writer keeps those
whose Secrets failed to be written (:func:`robots_in_use`). :func:`plan` runs both steps as
if every new robot were made (``spacegate provision --dry-run`` and the tests).

Registries not listed yet (``DesiredState.unknown``) are never revoked: their robots,
credentials and Secret entries are kept as they are.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from policy.provisioning import DesiredState, RobotSpec, SecretSpec, robot_base_name
from webhook.leader.provisioning.holders import Holders
from webhook.leader.provisioning.secrets import PullSecret, RobotCredential, Version

__all__ = [
    "Observed",
    "Plan",
    "RobotChange",
    "RobotView",
    "SecretWrite",
    "dockerconfigjson",
    "entitled_namespaces",
    "plan",
    "plan_robots",
    "plan_secrets",
    "robots_in_use",
]

CredentialKey = tuple[str, str | None]  # (registry, workspace)
Auths = dict[str, dict[str, str]]  # host -> {username, password, auth}


class RobotView(Protocol):
    """What the plan reads of a Harbor robot (``robots.Robot``)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def disabled(self) -> bool: ...


@dataclass(frozen=True)
class Observed:
    """What exists now, as read at the start of a pass."""

    robots: Mapping[str, tuple[RobotView, ...]]  # registry -> spacegate's robots there
    credentials: Mapping[CredentialKey, RobotCredential]
    pull_secrets: Mapping[str, PullSecret]
    static: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RobotChange:
    """A robot to create (for ``spec``, because of ``reason``), whose credential records
    ``holders``: the namespaces entitled to it now."""

    spec: RobotSpec
    reason: str
    holders: Holders = field(default_factory=lambda: Holders.of(()), repr=False)


@dataclass(frozen=True)
class SecretWrite:
    """One pull Secret to create or update, with its content ready to write.

    ``unrecorded``: the credentials it carries whose record this pass extends to this
    namespace (``Plan.record_holders``); not written if that record could not be kept.
    ``version``: the Secret an update replaces, as read.
    """

    namespace: str
    verb: str  # "create" or "update"
    registries: tuple[str, ...]  # whose credentials it carries, for people
    content: bytes = field(repr=False)  # .dockerconfigjson: holds passwords
    unrecorded: tuple[CredentialKey, ...] = ()
    version: Version | None = None


@dataclass
class Plan:
    """The changes one pass makes, in the order it makes them."""

    create_robots: list[RobotChange] = field(default_factory=list)
    # Credentials whose record of holders must grow before the Secrets are written.
    record_holders: list[tuple[CredentialKey, Holders]] = field(default_factory=list)
    write_secrets: list[SecretWrite] = field(default_factory=list)
    delete_secrets: list[str] = field(default_factory=list)
    delete_credentials: list[CredentialKey] = field(default_factory=list)
    delete_robots: list[tuple[str, int, str]] = field(default_factory=list)  # registry, id, name
    conflicts: list[str] = field(default_factory=list)  # namespaces with a foreign Secret
    missing: list[str] = field(default_factory=list)  # registries without pullCredentials
    kept_robots: list[tuple[str, int, str]] = field(default_factory=list)  # still in use

    @property
    def empty(self) -> bool:
        return not (
            self.create_robots
            or self.record_holders
            or self.write_secrets
            or self.delete_secrets
            or self.delete_credentials
            or self.delete_robots
        )

    def lines(self) -> list[str]:
        """The plan for people (``spacegate provision --dry-run``); never a credential."""
        out = []
        for change in self.create_robots:
            spec = change.spec
            ws = spec.workspace or "(no workspace)"
            out.append(
                f"create robot {robot_base_name(spec.registry, spec.workspace)}-… on "
                f"{spec.registry} for workspace {ws}: repository:pull on "
                f"{', '.join(sorted(spec.spaces))} ({change.reason})"
            )
        out.extend(
            f"record the namespaces given the robot credential {registry}/{ws or '(no workspace)'}"
            for (registry, ws), _ in self.record_holders
        )
        out.extend(
            f"{w.verb} Secret {w.namespace} ({', '.join(w.registries)})" for w in self.write_secrets
        )
        out.extend(f"delete Secret {ns} (no longer needed)" for ns in self.delete_secrets)
        out.extend(
            f"delete robot credential {registry}/{ws or '(no workspace)'}"
            for registry, ws in self.delete_credentials
        )
        out.extend(
            f"delete robot {name} (id {rid}) on {registry}"
            for registry, rid, name in self.delete_robots
        )
        out.extend(
            f"keep robot {name} (id {rid}) on {registry}: Secrets not rewritten still use it"
            for registry, rid, name in self.kept_robots
        )
        out.extend(f"leave Secret {ns} alone: not managed by spacegate" for ns in self.conflicts)
        out.extend(
            f"registry {name} needs a pull credential but has no pullCredentials"
            for name in self.missing
        )
        return out or ["nothing to change"]


# --------------------------------------------------------------------------- rendering


def login_entry(username: str, password: str) -> dict[str, str]:
    """One ``auths`` entry as Docker writes it (``auth`` is base64 of user:password)."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"username": username, "password": password, "auth": auth}


def dockerconfigjson(auths: Mapping[str, Mapping[str, str]]) -> bytes:
    """The ``.dockerconfigjson`` bytes for host -> entry (:func:`login_entry`)."""
    return orjson.dumps({"auths": dict(sorted(auths.items()))}, option=orjson.OPT_SORT_KEYS)


def _render(
    spec: SecretSpec,
    credentials: Mapping[CredentialKey, RobotCredential],
    static: Mapping[str, tuple[str, str]],
    keep: Mapping[str, Mapping[str, str]],
) -> Auths | None:
    """host -> entry for one namespace; None when a credential is missing."""
    auths: Auths = {}
    for entry in spec.entries:
        ref = entry.credential
        if ref.kind == "robot":
            credential = credentials.get((ref.registry, ref.workspace))
            if credential is None:
                return None
            login = login_entry(credential.robot_name, credential.password)
        else:
            if ref.registry not in static:
                return None
            login = login_entry(*static[ref.registry])
        for host in entry.hosts:
            auths[host] = login
    for host, kept in keep.items():
        auths.setdefault(host, dict(kept))
    return auths


def _unknown_hosts(
    existing: PullSecret | None, unknown: frozenset[str], hosts_of: Mapping[str, tuple[str, ...]]
) -> dict[str, Mapping[str, str]]:
    """The entries of registries not listed yet, kept as they are (never revoked blindly)."""
    if existing is None or not unknown:
        return {}
    hosts = {host for name in unknown for host in hosts_of.get(name, ())}
    return {host: entry for host, entry in existing.auths.items() if host in hosts}


# --------------------------------------------------------------------------- the two steps


def entitled_namespaces(desired: DesiredState) -> dict[CredentialKey, frozenset[str]]:
    """For each robot credential, the namespaces whose Secret must carry it."""
    entitled: dict[CredentialKey, set[str]] = {}
    for namespace, spec in desired.secrets.items():
        for entry in spec.entries:
            ref = entry.credential
            if ref.kind == "robot":
                entitled.setdefault((ref.registry, ref.workspace), set()).add(namespace)
    return {key: frozenset(names) for key, names in entitled.items()}


def _few(names: Iterable[str], most: int = 3) -> str:
    ordered = sorted(names)
    more = f" and {len(ordered) - most} more" if len(ordered) > most else ""
    return ", ".join(ordered[:most]) + more


def _rotation_reason(
    credential: RobotCredential | None,
    spec: RobotSpec,
    alive: Mapping[int, RobotView],
    entitled: frozenset[str],
    *,
    now: float,
    rotate_every: float,
) -> str | None:
    if credential is None:
        return "new"
    if credential.spaces != spec.spaces:
        return "spaces changed"
    if credential.robot_id not in alive or alive[credential.robot_id].disabled:
        return "robot lost"
    if credential.holders is None:
        return "no record of the namespaces it was given to"
    departed = credential.holders.departed(entitled)
    if departed is None:
        return "its namespaces changed (too many to record by name)"
    if departed:
        return f"namespaces left the workspace: {_few(departed)}"
    if now - credential.created_at >= rotate_every:
        return "rotation"
    return None


def plan_robots(
    desired: DesiredState, observed: Observed, *, now: float, rotate_every: float
) -> list[RobotChange]:
    """Step 1: the robots to create, ordered by (registry, workspace)."""
    changes: list[RobotChange] = []
    entitled = entitled_namespaces(desired)
    for key, robot_spec in sorted(
        desired.robots.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
    ):
        holders = entitled.get(key, frozenset())
        reason = _rotation_reason(
            observed.credentials.get(key),
            robot_spec,
            {robot.id: robot for robot in observed.robots.get(key[0], ())},
            holders,
            now=now,
            rotate_every=rotate_every,
        )
        if reason is not None:
            changes.append(RobotChange(robot_spec, reason, Holders.of(holders)))
    return changes


def robots_in_use(
    desired: DesiredState, observed: Observed, namespaces: Iterable[str]
) -> set[tuple[str, int]]:
    """(registry, robot id) of the robots still named in the Secrets of ``namespaces`` as
    observed, counting only the robots of the credentials each namespace is entitled to (a
    namespace cannot keep another workspace's robot alive by naming it)."""
    used: set[tuple[str, int]] = set()
    for namespace in namespaces:
        existing, spec = observed.pull_secrets.get(namespace), desired.secrets.get(namespace)
        if existing is None or not existing.managed or spec is None:
            continue
        logins = {entry.get("username", "") for entry in existing.auths.values()}
        for entry in spec.entries:
            ref = entry.credential
            if ref.kind != "robot":
                continue
            base = robot_base_name(ref.registry, ref.workspace) + "-"
            used.update(
                (ref.registry, robot.id)
                for robot in observed.robots.get(ref.registry, ())
                if robot.name in logins and robot.name.partition("$")[2].startswith(base)
            )
    return used


def _records(
    desired: DesiredState, credentials: Mapping[CredentialKey, RobotCredential]
) -> tuple[dict[CredentialKey, Holders], set[CredentialKey]]:
    """The records that must grow before the Secrets are written, and the credentials whose
    record cannot be made to cover the namespaces entitled to them (so not written)."""
    grow: dict[CredentialKey, Holders] = {}
    blocked: set[CredentialKey] = set()
    for key, wanted in entitled_namespaces(desired).items():
        credential = credentials.get(key)
        if credential is None:
            continue
        extended = None if credential.holders is None else credential.holders.extended(wanted)
        if extended is None:
            blocked.add(key)
        elif extended != credential.holders:
            grow[key] = extended
    return grow, blocked


def plan_secrets(
    desired: DesiredState,
    observed: Observed,
    credentials: Mapping[CredentialKey, RobotCredential],
    *,
    hosts_of: Mapping[str, tuple[str, ...]],
    create_robots: Iterable[RobotChange] = (),
) -> Plan:
    """Step 2: everything else, with ``credentials`` as they are after step 1 (the kept
    ones, with each robot created since in place of its old credential)."""
    result = Plan(create_robots=list(create_robots), missing=sorted(desired.missing))
    grow, blocked = _records(desired, credentials)
    result.record_holders = sorted(grow.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
    unwritten: list[str] = []  # entitled namespaces whose Secret stays as it is
    for namespace, spec in desired.secrets.items():
        existing = observed.pull_secrets.get(namespace)
        if existing is not None and not existing.managed:
            result.conflicts.append(namespace)
            continue
        robot_keys = [
            (e.credential.registry, e.credential.workspace)
            for e in spec.entries
            if e.credential.kind == "robot"
        ]
        keep = _unknown_hosts(existing, desired.unknown, hosts_of)
        auths = None
        if not blocked.intersection(robot_keys):
            auths = _render(spec, credentials, observed.static, keep)
        if auths is None:
            # A credential is missing (not created, a static file unreadable) or cannot be
            # recorded: the Secret stays as it is, and so do the robots it names.
            unwritten.append(namespace)
            continue
        if existing is None or dict(existing.auths) != auths:
            recorded = {key: credentials[key].holders for key in robot_keys}
            result.write_secrets.append(
                SecretWrite(
                    namespace,
                    "create" if existing is None else "update",
                    tuple(e.registry for e in spec.entries),
                    dockerconfigjson(auths),
                    tuple(
                        key
                        for key, holders in recorded.items()
                        if holders is None or not holders.covers(namespace)
                    ),
                    None if existing is None else existing.version,
                )
            )

    for namespace, existing in sorted(observed.pull_secrets.items()):
        if (
            existing.managed
            and namespace not in desired.secrets
            and not _unknown_hosts(existing, desired.unknown, hosts_of)
        ):
            result.delete_secrets.append(namespace)

    in_use = robots_in_use(desired, observed, unwritten)
    kept_ids: dict[str, set[int]] = {}
    for key, credential in credentials.items():
        registry = key[0]
        if registry in desired.unknown or key in desired.robots:
            kept_ids.setdefault(registry, set()).add(credential.robot_id)
        else:
            result.delete_credentials.append(key)
    for registry, robots in sorted(observed.robots.items()):
        if registry in desired.unknown:
            continue
        for robot in robots:
            if robot.id in kept_ids.get(registry, set()):
                continue
            target = result.kept_robots if (registry, robot.id) in in_use else result.delete_robots
            target.append((registry, robot.id, robot.name))
    result.delete_credentials.sort(key=lambda k: (k[0], k[1] or ""))
    return result


def placeholders(
    changes: Iterable[RobotChange], now: float
) -> dict[CredentialKey, RobotCredential]:
    """Stand-ins for the credentials of robots not created (a dry run): ids no robot has."""
    return {
        change.spec.key: RobotCredential(
            registry=change.spec.registry,
            workspace=change.spec.workspace,
            robot_id=-index,
            robot_name=f"robot${robot_base_name(*change.spec.key)}-new",
            spaces=change.spec.spaces,
            created_at=now,
            password="",
            holders=change.holders,
        )
        for index, change in enumerate(changes, start=1)
    }


def plan(
    desired: DesiredState,
    observed: Observed,
    *,
    now: float,
    rotate_every: float,
    hosts_of: Mapping[str, tuple[str, ...]],
) -> Plan:
    """Both steps, as if every robot of step 1 were created (a dry run's plan)."""
    changes = plan_robots(desired, observed, now=now, rotate_every=rotate_every)
    credentials = {**observed.credentials, **placeholders(changes, now)}
    return plan_secrets(desired, observed, credentials, hosts_of=hosts_of, create_robots=changes)
