"""Pull-secret provisioning: make the desired robots and Secrets exist, and nothing more.

``policy.provisioning.desired_state`` says what must exist for a snapshot; a pass of
:class:`Provisioner` reads what does exist (spacegate's Harbor robots, the robot credentials
kept in spacegate's own namespace, the pull Secrets in every namespace), plans the changes
(``webhook.leader.provisioning.plan``, pure) and makes them. It is level-triggered: every
pass compares the whole desired state with the whole observed state, so a pass that crashed
half way, a new leader, or a lost credential all converge on the next pass.

Order of every change, because a robot account that manages robots cannot update them on
Harbor ≥ 2.12 (no ``robot:update``), and so that a rotation never leaves a gap:
**create the new robot → keep its credential → update the Secrets → delete the old robot.**
A namespace leaving a workspace (relabelled, exempted, deleted) is such a rotation: the
credential's record of the namespaces it was given to (kept with it, extended *before* it
is written to a new namespace) says who may hold a copy. A robot whose credential was never
kept (a crash right after creating it) is referenced by nothing and is deleted by the next
pass; so is every other robot of ours that no kept credential names. Nothing is deleted
before its replacement is in place: a robot that could not be created leaves its
workspace's Secrets and old robot as they are, and an old robot still named by a Secret
that could not be rewritten stays until a later pass rewrites it. Harbor calls never happen
on the admission path.

Every Secret write is conditional on what was read (``secrets.WriteConflict``): a Secret
someone else created, changed or deleted in between is left alone for the next pass.

Everything a pass reads of the config comes from the snapshot it is given: the pull
Secret's name, ``rotateEvery``, the registries and their credentials. A reloaded config is
written from the next pass on.

Only the leader writes (``webhook.leader.lease``): every write is preceded by the elector's
check, so losing the Lease stops writing at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

from kubernetes.client.exceptions import ApiException

from policy.config import Registry
from policy.provisioning import (
    ROBOT_PREFIX,
    DesiredState,
    desired_state,
    robot_base_name,
)
from policy.snapshot import Snapshot
from webhook.clients.credentials import load_credentials
from webhook.clients.errors import SourceError, describe_api_error
from webhook.clients.kube_writes import DEFAULT_WORKERS, Throttle, WritePool
from webhook.leader.provisioning.holders import Holders
from webhook.leader.provisioning.metrics import ProvisionMetrics
from webhook.leader.provisioning.plan import (
    CredentialKey,
    Observed,
    Plan,
    RobotChange,
    RobotView,
    SecretWrite,
    placeholders,
    plan_robots,
    plan_secrets,
    robots_in_use,
)
from webhook.leader.provisioning.robot_api import RobotAPI, RobotAPIFactory
from webhook.leader.provisioning.secrets import (
    RobotCredential,
    SecretStore,
    Version,
    WriteConflict,
)
from webhook.leader.provisioning.window import WINDOW, each

log = logging.getLogger(__name__)

__all__ = [
    "HARBOR_CONCURRENCY",
    "WINDOW",
    "PassResult",
    "Provisioner",
]

T = TypeVar("T")
Item = TypeVar("Item")

# Harbor robot calls in flight at once (creates, deletes); apiserver writes go through a
# bounded WritePool (``webhook.clients.kube_writes``).
HARBOR_CONCURRENCY: Final = 8


@dataclass
class PassResult:
    """What one pass did (or would do, for a dry run)."""

    plan: Plan
    desired: DesiredState
    failures: list[str] = field(default_factory=list)
    applied: bool = False
    # What could not be made true (binding statuses count them): namespaces whose Secret
    # write failed, and robots that could not be created.
    failed_namespaces: set[str] = field(default_factory=set)
    failed_robots: set[tuple[str, str | None]] = field(default_factory=set)


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
        guard: Callable[[], None] = lambda: None,
        metrics: ProvisionMetrics | None = None,
        clock: Callable[[], float] = time.time,
        workers: int = DEFAULT_WORKERS,
        harbor_concurrency: int = HARBOR_CONCURRENCY,
    ) -> None:
        self.store = store
        self._robots_for = robots_for
        self._clients: dict[str, tuple[Registry, RobotAPI]] = {}
        self.guard = guard
        self.metrics = metrics
        self._clock = clock
        self._conflicts_logged: set[tuple[str, str]] = set()
        self.throttle = Throttle(job="provisioning")
        self._workers = workers
        self._pool: WritePool | None = None
        self._harbor_concurrency = harbor_concurrency
        self._harbor = asyncio.Semaphore(harbor_concurrency)  # made again for each pass

    async def aclose(self) -> None:
        for _, api in self._clients.values():
            await api.aclose()
        self._clients.clear()
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.close)

    async def _write(self, write: Callable[..., T], *args: Any) -> T:
        """One blocking apiserver write on the pool (at most ``workers`` at once, 429s
        retried after their Retry-After)."""
        if self._pool is None:
            self._pool = WritePool(self._workers, self.throttle)
        (done,) = await self._pool.gather([functools.partial(write, *args)])
        if isinstance(done, BaseException):
            raise done
        return done

    def _robots(self, registry: Registry) -> RobotAPI:
        current = self._clients.get(registry.name)
        if current is None or current[0] != registry:
            current = (registry, self._robots_for(registry))
            self._clients[registry.name] = current
        return current[1]

    async def observe(self, snapshot: Snapshot, desired: DesiredState) -> Observed:
        """Read robots, credentials and Secrets as they are now."""
        robots: dict[str, tuple[RobotView, ...]] = {}

        async def list_robots() -> None:
            for name, state in snapshot.registries.items():
                registry = state.registry
                if registry.type != "harbor" or name in desired.unknown:
                    continue
                listed = await self._robots(registry).list_robots(ROBOT_PREFIX)
                robots[name] = tuple(listed)

        # The three reads at once: Harbor's robots, the credentials, every pull Secret.
        _, credentials, pull_secrets = await asyncio.gather(
            list_robots(),
            asyncio.to_thread(self.store.list_credentials),
            asyncio.to_thread(
                self.store.list_pull_secrets, snapshot.config.policy.pull_secret_name
            ),
        )
        static: dict[str, tuple[str, str]] = {}
        for name, state in snapshot.registries.items():
            registry = state.registry
            if registry.pull_credentials is None:
                continue
            login = load_credentials(
                replace(registry, credentials=registry.pull_credentials),
                f"{registry.type} {registry.name!r}",
            )
            if login is not None:
                static[name] = (login.username, login.password)
        return Observed(robots, credentials, pull_secrets, static)

    async def run_pass(
        self, snapshot: Snapshot, *, apply: bool = True, desired: DesiredState | None = None
    ) -> PassResult:
        """One level-triggered pass; with ``apply`` false, only the plan (a dry run).

        ``desired`` is ``desired_state(snapshot)`` when the caller has it already.
        """
        started = time.perf_counter()
        self._harbor = asyncio.Semaphore(self._harbor_concurrency)  # this pass's event loop
        try:
            # CPU work proportional to the cluster: off the event loop, which answers
            # admission in the same process.
            if desired is None:
                desired = await asyncio.to_thread(desired_state, snapshot)
            observed = await self.observe(snapshot, desired)
            now = self._clock()
            changes = await asyncio.to_thread(  # compares every namespace's record: off the loop
                plan_robots,
                desired,
                observed,
                now=now,
                rotate_every=snapshot.config.pull_secrets.rotate_every,
            )
            failures: list[str] = []
            failed_robots: set[tuple[str, str | None]] = set()
            if apply:
                credentials, failed = await self._create_robots(
                    snapshot, observed, changes, failed_robots
                )
                failures.extend(failed)
            else:
                credentials = {**observed.credentials, **placeholders(changes, now)}
            hosts_of = {name: s.registry.hosts for name, s in snapshot.registries.items()}
            the_plan = await asyncio.to_thread(
                plan_secrets,
                desired,
                observed,
                credentials,
                hosts_of=hosts_of,
                create_robots=changes,
            )
            result = PassResult(the_plan, desired, failures, failed_robots=failed_robots)
            if apply:
                await self._apply(
                    snapshot,
                    the_plan,
                    result,
                    desired=desired,
                    observed=observed,
                    credentials=credentials,
                )
                self._record(desired, the_plan, credentials)
                result.applied = True
        except Exception:
            if self.metrics is not None:
                self.metrics.failures.inc()
            raise
        finally:
            if self.metrics is not None:
                self.metrics.duration.observe(time.perf_counter() - started)
        return result

    async def _create_robots(
        self,
        snapshot: Snapshot,
        observed: Observed,
        changes: list[RobotChange],
        failed_robots: set[tuple[str, str | None]],
    ) -> tuple[dict[CredentialKey, RobotCredential], list[str]]:
        """Step 1 carried out: the credentials afterwards, and what failed (the keys of
        robots not created are added to ``failed_robots``)."""
        credentials = dict(observed.credentials)
        failures: list[str] = []

        async def create(change: RobotChange) -> None:
            key = change.spec.key
            old = observed.credentials.get(key)
            try:
                async with self._harbor:
                    credentials[key] = await self._create_robot(
                        snapshot, change, None if old is None else old.version
                    )
            except (SourceError, WriteConflict) as exc:
                failures.append(str(exc))
                failed_robots.add(change.spec.key)
                log.error("provisioning: %s", exc)

        await each(create, changes)
        return credentials, failures

    async def _apply(
        self,
        snapshot: Snapshot,
        the_plan: Plan,
        result: PassResult,
        *,
        desired: DesiredState,
        observed: Observed,
        credentials: dict[CredentialKey, RobotCredential],
    ) -> None:
        """Step 2 carried out in order: records, Secrets, then what is no longer needed."""
        name = snapshot.config.policy.pull_secret_name
        unrecorded = await self._record_holders(the_plan, result, credentials)
        unwritten: list[str] = []  # Secrets that stay as they were, and the robots they name

        async def write_secret(write: SecretWrite) -> None:
            if unrecorded.intersection(write.unrecorded):
                unwritten.append(write.namespace)  # never given a credential unrecorded
                result.failed_namespaces.add(write.namespace)
                return
            if not await self._write_secret(name, write, result):
                unwritten.append(write.namespace)
                result.failed_namespaces.add(write.namespace)

        await each(write_secret, the_plan.write_secrets)

        async def delete_secret(namespace: str) -> None:
            version = observed.pull_secrets[namespace].version
            if version is None:
                return
            self.guard()
            try:
                await self._write(self.store.delete_pull_secret, namespace, name, version)
            except (ApiException, WriteConflict) as exc:
                self._write_failed(result, f"delete Secret {namespace}", exc)
                return
            self._changed("secret-delete")
            log.info("provisioning: deleted Secret %s/%s (no longer needed)", namespace, name)

        await each(delete_secret, the_plan.delete_secrets)

        async def delete_credential(key: CredentialKey) -> None:
            credential = credentials[key]
            if credential.version is None:
                return
            self.guard()
            try:
                await self._write(
                    self.store.delete_credential, robot_base_name(*key), credential.version
                )
            except (ApiException, WriteConflict) as exc:
                self._write_failed(result, f"delete robot credential {robot_base_name(*key)}", exc)
                return
            self._changed("credential-delete")

        await each(delete_credential, the_plan.delete_credentials)

        in_use = robots_in_use(desired, observed, unwritten)

        async def delete_robot(robot: tuple[str, int, str]) -> None:
            registry_name, robot_id, robot_name = robot
            state = snapshot.registries.get(registry_name)
            if state is None:
                return
            if (registry_name, robot_id) in in_use:
                the_plan.kept_robots.append(robot)
                log.warning(
                    "provisioning: kept robot %s on %s: a Secret still naming it could not be "
                    "rewritten; deleted once it is",
                    robot_name,
                    registry_name,
                )
                return
            self.guard()
            try:
                async with self._harbor:
                    await self._robots(state.registry).delete_robot(robot_id)
            except SourceError as exc:
                result.failures.append(str(exc))
                log.error("provisioning: %s", exc)
                return
            self._changed("robot-delete")
            log.info(
                "provisioning: deleted robot %s (id %d) on %s", robot_name, robot_id, registry_name
            )

        await each(delete_robot, list(the_plan.delete_robots))

        for namespace in the_plan.conflicts:
            if (namespace, name) not in self._conflicts_logged:
                self._conflicts_logged.add((namespace, name))
                log.warning(
                    "provisioning: namespace %s has a Secret %s that spacegate does not manage; "
                    "left alone (delete it to let spacegate provision it; spacegate's own are "
                    "of type kubernetes.io/dockerconfigjson and labelled "
                    "app.kubernetes.io/managed-by=spacegate, spacegate.io/component=pull-secret)",
                    namespace,
                    name,
                )

    async def _record_holders(
        self, the_plan: Plan, result: PassResult, credentials: dict[CredentialKey, RobotCredential]
    ) -> set[CredentialKey]:
        """Extend each credential's record of holders before it is written anywhere new; the
        keys whose record could not be written."""
        failed: set[CredentialKey] = set()

        async def record(item: tuple[CredentialKey, Holders]) -> None:
            key, holders = item
            credential = credentials[key]
            self.guard()
            try:
                await self._write(
                    self.store.write_credential,
                    robot_base_name(*key),
                    replace(credential, holders=holders),
                    credential.version,
                )
            except (ApiException, WriteConflict) as exc:
                failed.add(key)
                self._write_failed(result, f"record the holders of {robot_base_name(*key)}", exc)
                return
            self._changed("credential-record")

        await each(record, the_plan.record_holders)
        return failed

    async def _write_secret(self, name: str, write: SecretWrite, result: PassResult) -> bool:
        """One pull Secret written as planned: created only if absent, updated only as read."""
        self.guard()
        try:
            if write.version is None:
                await self._write(
                    self.store.create_pull_secret, write.namespace, name, write.content
                )
            else:
                await self._write(
                    self.store.update_pull_secret,
                    write.namespace,
                    name,
                    write.content,
                    write.version,
                )
        except (ApiException, WriteConflict) as exc:  # a namespace being deleted, a race
            self._write_failed(result, f"{write.verb} Secret {write.namespace}", exc)
            return False
        self._changed(f"secret-{write.verb}")
        log.info(
            "provisioning: %sd Secret %s/%s for %s",
            write.verb,
            write.namespace,
            name,
            ", ".join(write.registries),
            extra={"fields": {"namespace": write.namespace, "change": f"secret-{write.verb}"}},
        )
        return True

    def _record(
        self,
        desired: DesiredState,
        the_plan: Plan,
        credentials: dict[CredentialKey, RobotCredential],
    ) -> None:
        if self.metrics is None:
            return
        self.metrics.robots.set(sum(1 for key in desired.robots if key in credentials))
        self.metrics.secrets.set(len(desired.secrets) - len(the_plan.conflicts))
        self.metrics.conflicts.set(len(the_plan.conflicts))

    async def _create_robot(
        self, snapshot: Snapshot, change: RobotChange, kept: Version | None
    ) -> RobotCredential:
        spec, reason = change.spec, change.reason
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
            holders=change.holders,
        )
        self.guard()
        await self._write(self.store.write_credential, base, credential, kept)
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

    def _write_failed(
        self, result: PassResult, what: str, exc: ApiException | WriteConflict
    ) -> None:
        """One write refused: recorded, logged on one line, and the pass goes on."""
        detail = describe_api_error(exc) if isinstance(exc, ApiException) else str(exc)
        message = f"could not {what}: {detail}"
        result.failures.append(message)
        log.warning("provisioning: %s", message)

    def _changed(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.changes.labels(change=kind).inc()
