"""Pull-secret provisioning: make the desired robots and Secrets exist, and nothing more.

``policy.provisioning.desired_state`` says what must exist for a snapshot; this module reads
what does exist (spacegate's Harbor robots, the robot credentials kept in spacegate's own
namespace, the pull Secrets in every namespace), works out a :class:`Plan` (pure:
:func:`plan`), and carries it out (:meth:`Provisioner.apply`). It is level-triggered: every
pass compares the whole desired state with the whole observed state, so a pass that crashed
half way, a new leader, or a lost credential all converge on the next pass.

Order of every change, because a robot account that manages robots cannot update them on
Harbor ≥ 2.12 (no ``robot:update``), and so that a rotation never leaves a gap:
**create the new robot → keep its credential → update the Secrets → delete the old robot.**
A robot whose credential was never kept (a crash right after creating it) is referenced by
nothing and is deleted by the next pass; so is every other robot of ours that no kept
credential names. Harbor calls never happen on the admission path.

Only the leader writes (``webhook.leader.lease``): every write is preceded by the elector's
check, so losing the Lease stops writing at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from policy.config import Registry
from policy.provisioning import (
    ROBOT_PREFIX,
    CredentialRef,
    DesiredState,
    RobotSpec,
    SecretSpec,
    desired_state,
    robot_base_name,
)
from policy.snapshot import Snapshot
from webhook.clients.errors import SourceError
from webhook.clients.http import load_credentials
from webhook.leader.provisioning.secrets import (
    PullSecret,
    RobotCredential,
    SecretStore,
    dockerconfigjson,
)

log = logging.getLogger(__name__)

__all__ = ["Plan", "ProvisionMetrics", "Provisioner", "RobotAPI", "plan"]


class RobotView(Protocol):
    """What the provisioner reads of a Harbor robot (``harbor_robots.Robot``)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def disabled(self) -> bool: ...


class CreatedView(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def secret(self) -> str: ...


class RobotAPI(Protocol):
    """The Harbor robot calls provisioning needs (``harbor_robots.HarborRobots``)."""

    async def list_robots(self, name_prefix: str) -> Iterable[RobotView]: ...
    async def create_robot(
        self, name: str, description: str, projects: Iterable[str]
    ) -> CreatedView: ...
    async def delete_robot(self, robot_id: int) -> None: ...
    async def aclose(self) -> None: ...


RobotAPIFactory = Callable[[Registry], RobotAPI]


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Observed:
    """What exists now, as read at the start of a pass."""

    robots: Mapping[str, tuple[RobotView, ...]]  # registry -> spacegate's robots there
    credentials: Mapping[tuple[str, str | None], RobotCredential]
    pull_secrets: Mapping[str, PullSecret]
    static: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RobotChange:
    """A robot to create (for ``spec``, because of ``reason``)."""

    spec: RobotSpec
    reason: str


@dataclass
class Plan:
    """The changes one pass makes, in the order it makes them."""

    create_robots: list[RobotChange] = field(default_factory=list)
    write_secrets: list[tuple[str, str]] = field(default_factory=list)  # (namespace, create|update)
    delete_secrets: list[str] = field(default_factory=list)
    delete_credentials: list[tuple[str, str | None]] = field(default_factory=list)
    delete_robots: list[tuple[str, int, str]] = field(default_factory=list)  # registry, id, name
    conflicts: list[str] = field(default_factory=list)  # namespaces with a foreign Secret
    missing: list[str] = field(default_factory=list)  # registries without pullCredentials

    @property
    def empty(self) -> bool:
        return not (
            self.create_robots
            or self.write_secrets
            or self.delete_secrets
            or self.delete_credentials
            or self.delete_robots
        )

    def lines(self, desired: DesiredState) -> list[str]:
        """The plan for people (``spacegate provision --dry-run``)."""
        out = []
        for change in self.create_robots:
            spec = change.spec
            ws = spec.workspace or "(no workspace)"
            out.append(
                f"create robot {robot_base_name(spec.registry, spec.workspace)}-… on "
                f"{spec.registry} for workspace {ws}: repository:pull on "
                f"{', '.join(sorted(spec.spaces))} ({change.reason})"
            )
        for namespace, verb in self.write_secrets:
            registries = ", ".join(e.registry for e in desired.secrets[namespace].entries)
            out.append(f"{verb} Secret {namespace} ({registries})")
        out.extend(f"delete Secret {ns} (no longer needed)" for ns in self.delete_secrets)
        out.extend(
            f"delete robot credential {registry}/{ws or '(no workspace)'}"
            for registry, ws in self.delete_credentials
        )
        out.extend(
            f"delete robot {name} (id {rid}) on {registry}"
            for registry, rid, name in self.delete_robots
        )
        out.extend(f"leave Secret {ns} alone: not managed by spacegate" for ns in self.conflicts)
        out.extend(
            f"registry {name} needs a pull credential but has no pullCredentials"
            for name in self.missing
        )
        return out or ["nothing to change"]


def _render(
    spec: SecretSpec,
    credentials: Mapping[tuple[str, str | None], RobotCredential],
    static: Mapping[str, tuple[str, str]],
    keep: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, tuple[str, str]] | None:
    """host -> (username, password) for one namespace; None when a credential is missing."""
    auths: dict[str, tuple[str, str]] = {}
    for entry in spec.entries:
        ref = entry.credential
        if ref.kind == "robot":
            credential = credentials.get((ref.registry, ref.workspace))
            if credential is None:
                return None
            login = (credential.robot_name, credential.password)
        else:
            if ref.registry not in static:
                return None
            login = static[ref.registry]
        for host in entry.hosts:
            auths[host] = login
    for host, kept in (keep or {}).items():
        auths.setdefault(host, (str(kept.get("username", "")), str(kept.get("password", ""))))
    return auths


def _same(existing: PullSecret, auths: Mapping[str, tuple[str, str]]) -> bool:
    have = {
        host: (str(entry.get("username", "")), str(entry.get("password", "")))
        for host, entry in existing.auths.items()
    }
    return have == dict(auths)


def _unknown_hosts(
    existing: PullSecret | None, unknown: frozenset[str], hosts_of: Mapping[str, tuple[str, ...]]
) -> dict[str, Mapping[str, str]]:
    """The entries of registries not listed yet, kept as they are (never revoked blindly)."""
    if existing is None or not unknown:
        return {}
    hosts = {host for name in unknown for host in hosts_of.get(name, ())}
    return {host: entry for host, entry in existing.auths.items() if host in hosts}


def plan(
    desired: DesiredState,
    observed: Observed,
    *,
    now: float,
    rotate_every: float,
    hosts_of: Mapping[str, tuple[str, ...]] = {},
) -> Plan:
    """What one pass must change to make ``observed`` match ``desired`` (pure)."""
    result = Plan(missing=sorted(desired.missing))
    renewed: set[tuple[str, str | None]] = set()
    for key, robot_spec in sorted(
        desired.robots.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
    ):
        credential = observed.credentials.get(key)
        alive = {robot.id: robot for robot in observed.robots.get(key[0], ())}
        if credential is None:
            reason = "new"
        elif credential.spaces != robot_spec.spaces:
            reason = "spaces changed"
        elif credential.robot_id not in alive or alive[credential.robot_id].disabled:
            reason = "robot lost"
        elif now - credential.created_at >= rotate_every:
            reason = "rotation"
        else:
            continue
        result.create_robots.append(RobotChange(robot_spec, reason))
        renewed.add(key)

    for namespace, spec in desired.secrets.items():
        existing = observed.pull_secrets.get(namespace)
        if existing is not None and not existing.managed:
            result.conflicts.append(namespace)
            continue
        verb = "create" if existing is None else "update"
        uses_renewed = any(
            e.credential.kind == "robot"
            and (e.credential.registry, e.credential.workspace) in renewed
            for e in spec.entries
        )
        keep = _unknown_hosts(existing, desired.unknown, hosts_of)
        auths = _render(spec, observed.credentials, observed.static, keep)
        if uses_renewed or existing is None or auths is None or not _same(existing, auths):
            if auths is None and not uses_renewed:
                continue  # a credential is missing (a static file unreadable): leave it
            result.write_secrets.append((namespace, verb))

    for namespace, existing in sorted(observed.pull_secrets.items()):
        if (
            existing.managed
            and namespace not in desired.secrets
            and not _unknown_hosts(existing, desired.unknown, hosts_of)
        ):
            result.delete_secrets.append(namespace)

    kept_ids: dict[str, set[int]] = {}
    for key, credential in observed.credentials.items():
        registry = key[0]
        if registry in desired.unknown:
            kept_ids.setdefault(registry, set()).add(credential.robot_id)
            continue
        if key not in desired.robots:
            result.delete_credentials.append(key)
        elif key not in renewed:
            kept_ids.setdefault(registry, set()).add(credential.robot_id)
    for registry, robots in sorted(observed.robots.items()):
        if registry in desired.unknown:
            continue
        for robot in robots:
            if robot.id not in kept_ids.get(registry, set()):
                result.delete_robots.append((registry, robot.id, robot.name))
    result.delete_credentials.sort(key=lambda k: (k[0], k[1] or ""))
    return result


# --------------------------------------------------------------------------- metrics


class ProvisionMetrics:
    """What provisioning manages and how its passes go."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.robots = Gauge(
            "spacegate_pull_secret_robots", "Harbor robots spacegate keeps.", registry=registry
        )
        self.secrets = Gauge(
            "spacegate_pull_secrets", "Pull Secrets spacegate manages.", registry=registry
        )
        self.conflicts = Gauge(
            "spacegate_pull_secret_conflicts",
            "Namespaces holding a Secret of the pull secret's name that spacegate does not "
            "manage (left alone).",
            registry=registry,
        )
        self.duration = Histogram(
            "spacegate_pull_secret_reconcile_duration_seconds",
            "Time of one provisioning pass.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.failures = Counter(
            "spacegate_pull_secret_reconcile_failures",
            "Provisioning passes that did not complete.",
            registry=registry,
        )
        self.changes = Counter(
            "spacegate_pull_secret_changes",
            "Changes made by provisioning, by kind.",
            ["change"],
            registry=registry,
        )


# --------------------------------------------------------------------------- the writer


@dataclass
class PassResult:
    """What one pass did (or would do, for a dry run)."""

    plan: Plan
    desired: DesiredState
    failures: list[str] = field(default_factory=list)
    applied: bool = False


class Provisioner:
    """Runs provisioning passes: observe, plan, apply (when ``apply`` is true).

    ``guard`` is called before every write and raises when this replica may not write
    (``LeaseElector.check``). ``robots_for`` builds the robot client of a Harbor.
    """

    def __init__(
        self,
        store: SecretStore,
        robots_for: RobotAPIFactory,
        *,
        rotate_every: float,
        guard: Callable[[], None] = lambda: None,
        metrics: ProvisionMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._robots_for = robots_for
        self._clients: dict[str, tuple[Registry, RobotAPI]] = {}
        self.rotate_every = rotate_every
        self.guard = guard
        self.metrics = metrics
        self._clock = clock
        self._conflicts_logged: set[str] = set()

    async def aclose(self) -> None:
        for _, api in self._clients.values():
            await api.aclose()
        self._clients.clear()

    def _robots(self, registry: Registry) -> RobotAPI:
        current = self._clients.get(registry.name)
        if current is None or current[0] != registry:
            current = (registry, self._robots_for(registry))
            self._clients[registry.name] = current
        return current[1]

    async def observe(self, snapshot: Snapshot, desired: DesiredState) -> Observed:
        """Read robots, credentials and Secrets as they are now."""
        robots: dict[str, tuple[RobotView, ...]] = {}
        for name, state in snapshot.registries.items():
            registry = state.registry
            if registry.type != "harbor" or name in desired.unknown:
                continue
            listed = await self._robots(registry).list_robots(ROBOT_PREFIX)
            robots[name] = tuple(listed)
        credentials = await asyncio.to_thread(self.store.list_credentials)
        pull_secrets = await asyncio.to_thread(self.store.list_pull_secrets)
        static: dict[str, tuple[str, str]] = {}
        for name, state in snapshot.registries.items():
            registry = state.registry
            if registry.pull_credentials is None:
                continue
            login = load_credentials(
                _with_credentials(registry), f"{registry.type} {registry.name!r}"
            )
            if login is not None:
                static[name] = (login.username, login.password)
        return Observed(robots, credentials, pull_secrets, static)

    async def run_pass(self, snapshot: Snapshot, *, apply: bool = True) -> PassResult:
        """One level-triggered pass; with ``apply`` false, only the plan (a dry run)."""
        started = time.perf_counter()
        # Both steps are CPU work proportional to the cluster: off the event loop, which
        # answers admission in the same process.
        desired = await asyncio.to_thread(desired_state, snapshot)
        try:
            observed = await self.observe(snapshot, desired)
            hosts_of = {name: s.registry.hosts for name, s in snapshot.registries.items()}
            the_plan = await asyncio.to_thread(
                plan,
                desired,
                observed,
                now=self._clock(),
                rotate_every=self.rotate_every,
                hosts_of=hosts_of,
            )
            result = PassResult(the_plan, desired)
            if apply:
                await self.apply(snapshot, desired, observed, the_plan, result)
                result.applied = True
        except Exception:
            if self.metrics is not None:
                self.metrics.failures.inc()
            raise
        finally:
            if self.metrics is not None:
                self.metrics.duration.observe(time.perf_counter() - started)
        return result

    async def apply(
        self,
        snapshot: Snapshot,
        desired: DesiredState,
        observed: Observed,
        the_plan: Plan,
        result: PassResult,
    ) -> None:
        """Carry the plan out in order: robots, Secrets, then what is no longer needed."""
        credentials = dict(observed.credentials)
        failed_keys: set[tuple[str, str | None]] = set()
        for change in the_plan.create_robots:
            try:
                credentials[change.spec.key] = await self._create_robot(
                    snapshot, change.spec, change.reason
                )
            except SourceError as exc:
                failed_keys.add(change.spec.key)
                result.failures.append(str(exc))
                log.error("provisioning: %s", exc)

        for namespace, verb in the_plan.write_secrets:
            spec = desired.secrets[namespace]
            if any(
                (e.credential.registry, e.credential.workspace) in failed_keys
                for e in spec.entries
                if e.credential.kind == "robot"
            ):
                continue  # its new robot could not be made: keep the Secret as it is
            existing = observed.pull_secrets.get(namespace)
            keep = _unknown_hosts(
                existing,
                desired.unknown,
                {name: s.registry.hosts for name, s in snapshot.registries.items()},
            )
            auths = _render(spec, credentials, observed.static, keep)
            if auths is None:
                continue
            self.guard()
            try:
                await asyncio.to_thread(
                    self.store.write_pull_secret,
                    namespace,
                    dockerconfigjson(auths),
                    exists=existing is not None,
                )
            except ApiException as exc:  # e.g. a namespace being deleted refuses new Secrets
                self._write_failed(result, f"{verb} Secret {namespace}", exc)
                continue
            self._changed(f"secret-{verb}")
            log.info(
                "provisioning: %sd Secret %s/%s for %s",
                verb,
                namespace,
                self.store.pull_secret_name,
                ", ".join(e.registry for e in spec.entries),
                extra={"fields": {"namespace": namespace, "change": f"secret-{verb}"}},
            )

        for namespace in the_plan.delete_secrets:
            self.guard()
            try:
                await asyncio.to_thread(self.store.delete_pull_secret, namespace)
            except ApiException as exc:
                self._write_failed(result, f"delete Secret {namespace}", exc)
                continue
            self._changed("secret-delete")
            log.info(
                "provisioning: deleted Secret %s/%s (no longer needed)",
                namespace,
                self.store.pull_secret_name,
            )

        for key in the_plan.delete_credentials:
            self.guard()
            await asyncio.to_thread(self.store.delete_credential, robot_base_name(*key))
            credentials.pop(key, None)
            self._changed("credential-delete")

        for registry_name, robot_id, robot_name in the_plan.delete_robots:
            state = snapshot.registries.get(registry_name)
            if state is None:
                continue
            self.guard()
            try:
                await self._robots(state.registry).delete_robot(robot_id)
            except SourceError as exc:
                result.failures.append(str(exc))
                log.error("provisioning: %s", exc)
                continue
            self._changed("robot-delete")
            log.info(
                "provisioning: deleted robot %s (id %d) on %s", robot_name, robot_id, registry_name
            )

        for namespace in the_plan.conflicts:
            if namespace not in self._conflicts_logged:
                self._conflicts_logged.add(namespace)
                log.warning(
                    "provisioning: namespace %s has a Secret %s that spacegate does not manage; "
                    "left alone (label it app.kubernetes.io/managed-by=spacegate, or delete it, "
                    "to let spacegate provision it)",
                    namespace,
                    self.store.pull_secret_name,
                )
        if self.metrics is not None:
            self.metrics.robots.set(len(desired.robots) - len(failed_keys & set(desired.robots)))
            self.metrics.secrets.set(len(desired.secrets) - len(the_plan.conflicts))
            self.metrics.conflicts.set(len(the_plan.conflicts))

    async def _create_robot(
        self, snapshot: Snapshot, spec: RobotSpec, reason: str
    ) -> RobotCredential:
        registry = snapshot.registries[spec.registry].registry
        base = robot_base_name(spec.registry, spec.workspace)
        name = f"{base}-{int(self._clock()):x}{secrets.token_hex(2)}"
        ws = spec.workspace or "(no workspace)"
        description = f"spacegate pull robot for workspace {ws}; managed by spacegate, do not edit"
        self.guard()
        created = await self._robots(registry).create_robot(name, description, sorted(spec.spaces))
        credential = RobotCredential(
            registry=spec.registry,
            workspace=spec.workspace,
            robot_id=created.id,
            robot_name=created.name,
            spaces=spec.spaces,
            created_at=self._clock(),
            password=created.secret,
        )
        self.guard()
        await asyncio.to_thread(self.store.write_credential, base, credential)
        self._changed("robot-create")
        log.info(
            "provisioning: created robot %s on %s for workspace %s with pull on %s (%s)",
            created.name,
            spec.registry,
            ws,
            ", ".join(sorted(spec.spaces)),
            reason,
            extra={"fields": {"registry": spec.registry, "change": "robot-create"}},
        )
        return credential

    def _write_failed(self, result: PassResult, what: str, exc: ApiException) -> None:
        """One write refused: recorded, logged on one line, and the pass goes on."""
        message = f"could not {what}: HTTP {exc.status} {exc.reason or ''}".strip()
        result.failures.append(message)
        log.warning("provisioning: %s", message)

    def _changed(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.changes.labels(change=kind).inc()


def _with_credentials(registry: Registry) -> Registry:
    """The registry as ``load_credentials`` reads it, with its pull credential."""
    from dataclasses import replace

    return replace(registry, credentials=registry.pull_credentials)


# --------------------------------------------------------------------------- the loop


async def provision_forever(
    provisioner: Provisioner,
    snapshot: Callable[[], Snapshot],
    *,
    is_leader: Callable[[], bool],
    leadership_changed: Callable[[], Awaitable[None]] | None = None,
    resync: float = 600.0,
    poll: float = 1.0,
) -> None:
    """Run a pass on every snapshot change and every ``resync`` seconds, while leader."""
    last_version: int | None = None
    last_pass = 0.0
    while True:
        if not is_leader():
            last_version = None
            await asyncio.sleep(poll)
            continue
        current = snapshot()
        due = time.monotonic() - last_pass >= resync
        if current.version != last_version or due:
            try:
                result = await provisioner.run_pass(current)
                if result.failures:
                    log.warning("provisioning pass finished with %d failures", len(result.failures))
            except Exception as exc:
                log.error("provisioning pass failed: %s", exc)
            last_version = current.version
            last_pass = time.monotonic()
        await asyncio.sleep(poll)


def credential_ref_key(ref: CredentialRef) -> tuple[str, str | None]:
    return (ref.registry, ref.workspace)
