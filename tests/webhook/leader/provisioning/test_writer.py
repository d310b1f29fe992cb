"""Provisioning passes: robots in Harbor, Secrets in namespaces, in a safe order.

The real provisioner with its real Harbor robot client and Secrets store, against the
Harbor fake and the Kubernetes fake. What is checked is what a tenant notices: the Secret
in the namespace, and whether its login pulls from Harbor. The same flows run against the
real apiserver in ``tests/e2e/test_provisioning_harbor.py``; these add the reload, failure
and tampering cases.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest
from kubernetes import client
from prometheus_client import CollectorRegistry

from policy.config import load_config
from policy.provisioning import robot_base_name
from policy.snapshot import NamespaceInfo, Snapshot
from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from tests.fakes.kubernetes import FakeKubernetes
from tests.webhook.leader.conftest import HOME
from webhook.leader.provisioning.metrics import ProvisionMetrics
from webhook.leader.provisioning.robots import HarborRobots
from webhook.leader.provisioning.secrets import SecretStore
from webhook.leader.provisioning.writer import PassResult, Provisioner

SECRETS = "/api/v1/secrets"
NAMESPACES = {"a-dev": "101", "a-prod": "101", "b-dev": "102"}


class World:
    """Harbor with team-a/team-b private, the cluster with three namespaces."""

    def __init__(self, harbor: HarborFake, kube: FakeKubernetes, api: client.ApiClient, tmp: Path):
        self.harbor, self.kube, self.api = harbor, kube, api
        for project in ("team-a", "team-b"):
            harbor.add_project(project, public=False)
        for namespace in NAMESPACES:
            kube.create_namespace(namespace)
        (tmp / "user").write_text(f"{ADMIN_USER}\n")
        (tmp / "password").write_text(f"{ADMIN_PASSWORD}\n")
        self.credentials = f"{{usernameFile: {tmp / 'user'}, passwordFile: {tmp / 'password'}}}"
        self.host = harbor.url.split("://", 1)[1]
        self.registry = CollectorRegistry()
        self.metrics = ProvisionMetrics(self.registry)
        self.provisioner = Provisioner(
            SecretStore(api, home=HOME), HarborRobots, metrics=self.metrics
        )

    def snapshot(
        self,
        extra: str = "",
        *,
        team_b: str = '["102"]',
        namespaces: Mapping[str, str | None] = NAMESPACES,
    ) -> Snapshot:
        """team-a bound to 101, team-b to ``team_b``; ``extra`` config lines."""
        config = load_config(
            f"""
registries:
  - {{name: harbor, type: harbor, url: "{self.harbor.url}", credentials: {self.credentials}}}
bindings:
  - {{registry: harbor, space: team-a, workspaces: ["101"]}}
  - {{registry: harbor, space: team-b, workspaces: {team_b}}}
{extra}"""
        )
        return Snapshot.build(
            config,
            spaces={"harbor": {"team-a": False, "team-b": False}},
            namespaces={ns: NamespaceInfo(workspace=ws) for ns, ws in namespaces.items()},
        )

    def run(self, snapshot: Snapshot | None = None, *, apply: bool = True) -> PassResult:
        async def once() -> PassResult:
            try:
                return await self.provisioner.run_pass(snapshot or self.snapshot(), apply=apply)
            finally:
                await self.provisioner.aclose()

        return asyncio.run(once())

    def login(self, namespace: str, name: str = "registry-secret") -> tuple[str, str] | None:
        return self.kube.pull_secret_login(namespace, name, self.host)

    def writes(self) -> list[str]:
        """Writes to Harbor's robots and to Secrets, in order."""
        harbor = [
            f"harbor {r.method}" for r in self.harbor.requests if r.method in ("POST", "DELETE")
        ]
        kube = [
            f"kube {r.method} {r.path}"
            for r in self.kube.requests
            if r.method in ("POST", "PUT", "DELETE") and "/secrets" in r.path
        ]
        return harbor + kube


@pytest.fixture
def world(harbor: HarborFake, kube: FakeKubernetes, api: client.ApiClient, tmp_path: Path) -> World:
    return World(harbor, kube, api, tmp_path)


def test_a_first_pass_gives_each_workspace_a_robot_pulling_exactly_its_spaces(
    world: World,
) -> None:
    result = world.run()

    assert result.applied and not result.failures
    a_dev, a_prod, b_dev = (world.login(ns) for ns in NAMESPACES)
    assert a_dev is not None and b_dev is not None
    assert a_dev == a_prod != b_dev  # one robot per workspace
    assert world.harbor.robot_can_pull(a_dev[0], "team-a")
    assert not world.harbor.robot_can_pull(a_dev[0], "team-b")
    assert world.harbor.robot_can_pull(b_dev[0], "team-b")
    assert world.registry.get_sample_value("spacegate_pull_secret_robots") == 2
    assert world.registry.get_sample_value("spacegate_pull_secrets") == 3
    created = {"change": "secret-create"}
    assert world.registry.get_sample_value("spacegate_pull_secret_changes_total", created) == 3


def test_a_second_pass_with_nothing_changed_writes_nothing(world: World) -> None:
    world.run()
    world.kube.clear_requests()
    harbor_before = len(world.harbor.requests)

    result = world.run()

    assert result.plan.empty, result.plan.lines()
    assert [r.method for r in world.harbor.requests[harbor_before:]] == ["GET"]  # the listing
    assert not [r for r in world.kube.requests if r.method != "GET"]


def test_a_reloaded_pull_secret_name_is_written_from_the_next_pass(world: World) -> None:
    """After a config reload ``/mutate`` injects the new name: the next pass writes it."""
    world.run()
    renamed = world.snapshot("policy: {pullSecretName: pull-b}\n")

    result = world.run(renamed)

    assert not result.failures
    assert [w.verb for w in result.plan.write_secrets] == ["create"] * 3
    for namespace in NAMESPACES:
        assert world.login(namespace, "pull-b") == world.login(namespace)
    assert renamed.policy.pull_secret_name == "pull-b"  # what admission injects now


def test_rotate_every_comes_from_the_snapshot_and_rotates_without_a_gap(world: World) -> None:
    world.run()
    old = world.login("a-dev")
    assert old is not None
    world.provisioner._clock = lambda: time.time() + 7200

    world.run(world.snapshot("pullSecrets: {rotateEvery: 1h}\n"))

    new = world.login("a-dev")
    assert new is not None and new != old
    assert world.harbor.robot_can_pull(new[0], "team-a")
    assert old[0] not in {robot.name for robot in world.harbor.robots()}  # deleted after


def test_a_robot_that_cannot_be_created_leaves_its_secrets_and_old_robot_working(
    world: World,
) -> None:
    world.run()
    old = world.login("a-dev")
    assert old is not None
    # team-b bound to 101 as well: 101 needs a new robot, and Harbor fails the create.
    world.harbor.faults.pass_next(1).fail_next(1, 500)  # the listing passes, the create fails

    result = world.run(world.snapshot(team_b='["101", "102"]'))

    assert len(result.failures) == 1 and "may or may not exist" in result.failures[0]
    assert world.login("a-dev") == old  # untouched
    assert world.harbor.robot_can_pull(old[0], "team-a")  # and its robot not deleted


def test_secrets_the_apiserver_throttles_are_written_after_its_retry_after_and_counted(
    world: World,
) -> None:
    world.kube.fail_next(2, 429, path_prefix="/api/v1/namespaces/a-dev/secrets", retry_after="0")

    result = world.run()

    assert not result.failures and not result.failed_namespaces
    assert world.provisioner.throttle.throttled == 2
    assert world.login("a-dev") == world.login("a-prod") is not None


def test_a_first_pass_writes_secrets_concurrently_but_never_more_than_its_workers(
    harbor: HarborFake, kube: FakeKubernetes, api: client.ApiClient, tmp_path: Path
) -> None:
    world = World(harbor, kube, api, tmp_path)
    many = {f"a-{i:02d}": "101" for i in range(12)}
    for namespace in many:
        kube.create_namespace(namespace)
    store = SecretStore(api, home=HOME)
    world.provisioner = Provisioner(store, HarborRobots, workers=3)
    lock = threading.Lock()
    in_flight = [0, 0]  # now, most
    create = store.create_pull_secret

    def counted(namespace: str, name: str, content: bytes) -> None:
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
        time.sleep(0.02)
        try:
            create(namespace, name, content)
        finally:
            with lock:
                in_flight[0] -= 1

    store.create_pull_secret = counted  # type: ignore[method-assign]

    result = world.run(world.snapshot(namespaces=many))

    assert not result.failures
    assert in_flight[1] == 3
    assert all(world.login(namespace) is not None for namespace in many)


def test_a_pull_secret_a_tenant_edited_is_put_back(world: World) -> None:
    world.run()
    secret = world.kube.get_object(SECRETS, "a-dev", "registry-secret")
    assert secret is not None
    auths = {world.host: {"username": "robot$mine", "password": "x", "auth": "eDp5"}}
    secret["data"][".dockerconfigjson"] = base64.b64encode(orjson.dumps({"auths": auths})).decode()
    world.kube.replace_object(SECRETS, "a-dev", secret)

    result = world.run()

    assert [(w.namespace, w.verb) for w in result.plan.write_secrets] == [("a-dev", "update")]
    assert world.login("a-dev") == world.login("a-prod")


def test_a_namespace_refusing_its_secret_does_not_stop_the_others(world: World) -> None:
    gone = {**NAMESPACES, "gone": "101"}  # in the snapshot, deleted from the cluster since

    result = world.run(world.snapshot(namespaces=gone))

    assert result.failures == [
        'could not create Secret gone: HTTP 404 Not Found: namespaces "gone" not found'
    ]
    assert all(world.login(namespace) is not None for namespace in NAMESPACES)


def test_a_dry_run_plans_everything_and_writes_nothing(world: World) -> None:
    result = world.run(apply=False)

    assert not result.applied
    assert world.writes() == []
    lines = result.plan.lines()
    assert sum(line.startswith("create robot spacegate-harbor-") for line in lines) == 2
    assert sum(line.startswith("create Secret ") for line in lines) == 3
    assert not any(ADMIN_PASSWORD in line for line in lines)


# --------------------------------------------------------------------------- a namespace leaving


def robot_names(world: World) -> set[str]:
    return {robot.name for robot in world.harbor.robots()}


@pytest.mark.parametrize(
    "leaving",
    [
        pytest.param({**NAMESPACES, "a-prod": "102"}, id="relabelled-to-another-workspace"),
        pytest.param({**NAMESPACES, "a-prod": None}, id="label-removed"),
        pytest.param({k: v for k, v in NAMESPACES.items() if k != "a-prod"}, id="deleted"),
    ],
)
def test_a_namespace_leaving_its_workspace_rotates_the_robot_it_was_given(
    world: World, leaving: dict[str, str | None]
) -> None:
    """The Secret of a namespace that left goes, but whoever could read it may have kept a
    copy: only a new robot revokes it. Deletion leaves no Secret to notice; the record does."""
    world.run()
    old = world.login("a-dev")
    assert old is not None and world.login("a-prod") == old
    if "a-prod" not in leaving:
        world.kube.delete_namespace("a-prod")
    world.kube.clear_requests()
    harbor_before = len(world.harbor.requests)
    robots_when_a_dev_moves: list[set[str]] = []
    world.kube.interleave(
        "PUT",
        "/api/v1/namespaces/a-dev/secrets/registry-secret",
        lambda: robots_when_a_dev_moves.append(robot_names(world)),
    )

    result = world.run(world.snapshot(namespaces=leaving))

    assert not result.failures
    [change] = result.plan.create_robots
    assert change.reason == "namespaces left the workspace: a-prod"
    new = world.login("a-dev")
    assert new is not None and new[0] != old[0]
    assert world.harbor.robot_can_pull(new[0], "team-a")
    assert old[0] not in robot_names(world)  # the copy a-prod may have kept is dead
    if leaving.get("a-prod") == "102":
        assert world.login("a-prod") == world.login("b-dev")
    elif "a-prod" in leaving:
        assert world.login("a-prod") is None
    # The safe order: new robot, its credential, the remaining Secret, then the old robot.
    harbor = [f"{r.method}" for r in world.harbor.requests[harbor_before:] if r.method != "GET"]
    assert harbor == ["POST", "DELETE"]
    assert robots_when_a_dev_moves == [{old[0], new[0], *robot_names(world)}]  # both alive
    writes = [f"{r.method} {r.path}" for r in world.kube.requests if "/secrets/" in r.path]
    assert writes[0].startswith(f"PUT /api/v1/namespaces/{HOME}/secrets/")  # the credential


def test_a_namespace_made_exempt_leaves_too(world: World) -> None:
    world.run()
    old = world.login("a-dev")
    assert old is not None

    result = world.run(world.snapshot("policy: {exemptNamespaces: [kube-system, a-prod]}\n"))

    assert [c.reason for c in result.plan.create_robots] == [
        "namespaces left the workspace: a-prod"
    ]
    assert world.login("a-prod") is None and old[0] not in robot_names(world)


def test_a_namespace_joining_is_recorded_before_it_is_given_the_credential(world: World) -> None:
    world.run()
    login = world.login("a-dev")
    world.kube.create_namespace("a-test")
    joined = {**NAMESPACES, "a-test": "101"}
    world.kube.clear_requests()

    result = world.run(world.snapshot(namespaces=joined))

    assert not result.failures and not result.plan.create_robots  # no rotation to join
    assert world.login("a-test") == login
    writes = [f"{r.method} {r.path}" for r in world.kube.requests if r.method in ("POST", "PUT")]
    assert writes == [
        f"PUT /api/v1/namespaces/{HOME}/secrets/{robot_base_name('harbor', '101')}",
        "POST /api/v1/namespaces/a-test/secrets",
    ]
    [kept] = [
        c for c in world.provisioner.store.list_credentials().values() if c.workspace == "101"
    ]
    assert kept.holders is not None and kept.holders.names == frozenset(
        {"a-dev", "a-prod", "a-test"}
    )

    # Leaving again is a departure like any other.
    again = world.run(world.snapshot())
    assert [c.reason for c in again.plan.create_robots] == ["namespaces left the workspace: a-test"]


def test_a_namespace_is_never_given_a_credential_whose_record_could_not_grow(
    world: World,
) -> None:
    world.run()
    world.kube.create_namespace("a-test")
    name = robot_base_name("harbor", "101")

    def someone_else() -> None:  # e.g. an admin annotating the credential meanwhile
        secret = world.kube.get_object(SECRETS, HOME, name)
        assert secret is not None
        secret["metadata"].setdefault("annotations", {})["note"] = "checked"
        world.kube.replace_object(SECRETS, HOME, secret)

    world.kube.interleave("PUT", f"/api/v1/namespaces/{HOME}/secrets/{name}", someone_else)

    result = world.run(world.snapshot(namespaces={**NAMESPACES, "a-test": "101"}))

    assert [f for f in result.failures if f.startswith(f"could not record the holders of {name}")]
    assert world.login("a-test") is None  # next pass
    world.run(world.snapshot(namespaces={**NAMESPACES, "a-test": "101"}))
    assert world.login("a-test") == world.login("a-dev")


def test_a_credential_kept_before_records_existed_is_rotated_once(world: World) -> None:
    world.run()
    old = world.login("a-dev")
    assert old is not None
    name = robot_base_name("harbor", "101")
    secret = world.kube.get_object(SECRETS, HOME, name)
    assert secret is not None
    del secret["data"]["namespaces"]  # as a spacegate without the record wrote it
    world.kube.replace_object(SECRETS, HOME, secret)

    first = world.run()
    second = world.run()

    assert [c.reason for c in first.plan.create_robots] == [
        "no record of the namespaces it was given to"
    ]
    assert second.plan.empty, second.plan.lines()
    new = world.login("a-dev")
    assert new is not None and new[0] != old[0] and old[0] not in robot_names(world)


# --------------------------------------------------------------------------- nothing deleted early


def test_an_old_robot_stays_while_a_secret_naming_it_could_not_be_rewritten(
    world: World,
) -> None:
    world.run()
    old = world.login("a-prod")
    assert old is not None
    world.kube.fail_next(1, 500, path_prefix="/api/v1/namespaces/a-prod/secrets")

    # team-b bound to 101 too: a new robot, and a-prod's Secret fails to take it.
    first = world.run(world.snapshot(team_b='["101", "102"]'))

    assert [f for f in first.failures if "update Secret a-prod" in f]
    assert world.login("a-prod") == old
    assert world.harbor.robot_can_pull(old[0], "team-a")  # a-prod still pulls
    assert first.plan.kept_robots and first.plan.kept_robots[0][2] == old[0]
    assert world.login("a-dev") != old  # the others moved on

    second = world.run(world.snapshot(team_b='["101", "102"]'))

    assert not second.failures
    assert world.login("a-prod") == world.login("a-dev")
    assert old[0] not in robot_names(world)


@pytest.mark.parametrize("fault", ["5xx", "timeout"])
def test_a_departure_whose_robot_cannot_be_created_keeps_the_others_pulling(
    world: World, fault: str
) -> None:
    world.run()
    old = world.login("a-dev")
    assert old is not None
    world.provisioner = Provisioner(
        world.provisioner.store,
        lambda registry: HarborRobots(registry, timeout=1.0),
        metrics=world.metrics,
    )
    if fault == "5xx":
        world.harbor.faults.pass_next(1).fail_next(1, 503)  # the listing passes, the create fails
    else:
        world.harbor.faults.pass_next(1).delay_next(1, seconds=3)
    left = {k: v for k, v in NAMESPACES.items() if k != "a-prod"}

    result = world.run(world.snapshot(namespaces=left))

    assert len(result.failures) == 1 and "may or may not exist" in result.failures[0]
    assert world.login("a-dev") == old  # untouched, and its robot still there
    assert world.harbor.robot_can_pull(old[0], "team-a")
    assert world.login("a-prod") is None  # the leaver's Secret goes at once all the same
    # The next pass, with Harbor answering again, revokes what a-prod may have kept.
    world.harbor.faults.clear()
    again = world.run(world.snapshot(namespaces=left))
    assert [c.reason for c in again.plan.create_robots] == ["namespaces left the workspace: a-prod"]
    new = world.login("a-dev")
    assert new is not None and new != old
    assert {old[0]} & robot_names(world) == set()


# --------------------------------------------------------------------------- races


def foreign(namespace: str, kind: str = "kubernetes.io/dockerconfigjson") -> dict[str, object]:
    data = base64.b64encode(b'{"auths": {"elsewhere.example.com": {}}}').decode()
    return {
        "metadata": {"name": "registry-secret", "labels": {"owner": "platform"}},
        "type": kind,
        "data": {".dockerconfigjson": data},
    }


def test_a_secret_created_by_someone_else_between_the_read_and_the_create_is_left_alone(
    world: World,
) -> None:
    def someone_else() -> None:
        world.kube.create_object(SECRETS, "a-dev", foreign("a-dev"))

    world.kube.interleave("POST", "/api/v1/namespaces/a-dev/secrets", someone_else)

    result = world.run()

    theirs = world.kube.get_object(SECRETS, "a-dev", "registry-secret")
    assert theirs is not None
    assert theirs["metadata"]["labels"] == {"owner": "platform"}  # not adopted
    assert theirs["data"] == foreign("a-dev")["data"]  # not replaced
    assert result.failures == [
        "could not create Secret a-dev: create Secret a-dev/registry-secret: changed by "
        "someone else since it was read; left alone"
    ]
    assert world.login("a-prod") is not None  # the others were written
    again = world.run()
    assert again.plan.conflicts == ["a-dev"] and not again.failures
    assert world.kube.get_object(SECRETS, "a-dev", "registry-secret") == theirs


def test_a_secret_replaced_by_someone_else_between_the_read_and_the_update_is_left_alone(
    world: World,
) -> None:
    world.run()

    def someone_else() -> None:
        world.kube.delete_object(SECRETS, "a-dev", "registry-secret")
        world.kube.create_object(SECRETS, "a-dev", foreign("a-dev"))

    world.kube.interleave("PUT", "/api/v1/namespaces/a-dev/secrets/registry-secret", someone_else)

    result = world.run(world.snapshot(team_b='["101", "102"]'))  # a-dev's Secret changes

    theirs = world.kube.get_object(SECRETS, "a-dev", "registry-secret")
    assert theirs is not None and theirs["metadata"]["labels"] == {"owner": "platform"}
    assert [f for f in result.failures if f.startswith("could not update Secret a-dev")]


def test_a_secret_replaced_by_someone_else_between_the_read_and_the_delete_is_left_alone(
    world: World,
) -> None:
    world.run()

    def someone_else() -> None:
        world.kube.delete_object(SECRETS, "b-dev", "registry-secret")
        world.kube.create_object(SECRETS, "b-dev", foreign("b-dev", "Opaque"))

    world.kube.interleave(
        "DELETE", "/api/v1/namespaces/b-dev/secrets/registry-secret", someone_else
    )

    result = world.run(world.snapshot(namespaces={**NAMESPACES, "b-dev": None}))

    theirs = world.kube.get_object(SECRETS, "b-dev", "registry-secret")
    assert theirs is not None and theirs["type"] == "Opaque"
    assert [f for f in result.failures if f.startswith("could not delete Secret b-dev")]


@pytest.mark.parametrize("kind", ["kubernetes.io/service-account-token", "Opaque"])
def test_a_foreign_secret_labelled_as_spacegates_but_of_another_type_is_never_touched(
    world: World, kind: str
) -> None:
    body = foreign("b-dev", kind)
    body["metadata"] = {
        "name": "registry-secret",
        "labels": {
            "app.kubernetes.io/managed-by": "spacegate",
            "spacegate.io/component": "pull-secret",
        },
    }
    world.kube.create_object(SECRETS, "b-dev", body)
    before = world.kube.get_object(SECRETS, "b-dev", "registry-secret")

    needed = world.run()
    gone = world.run(world.snapshot(namespaces={**NAMESPACES, "b-dev": None}))

    assert needed.plan.conflicts == ["b-dev"] and gone.plan.delete_secrets == []
    assert world.kube.get_object(SECRETS, "b-dev", "registry-secret") == before


def test_a_foreign_secret_at_a_credentials_name_is_never_replaced(world: World) -> None:
    name = robot_base_name("harbor", "101")
    theirs = {"metadata": {"name": name, "labels": {"owner": "ops"}}, "data": {}}

    world.kube.interleave(
        "POST",
        f"/api/v1/namespaces/{HOME}/secrets",
        lambda: world.kube.create_object(SECRETS, HOME, theirs),
    )

    result = world.run()

    assert [f for f in result.failures if "is not spacegate's robot credential" in f]
    kept = world.kube.get_object(SECRETS, HOME, name)
    assert kept is not None and kept["metadata"]["labels"] == {"owner": "ops"}
    assert world.login("a-dev") is None  # its robot's secret was never kept: not handed out
    world.kube.delete_object(SECRETS, HOME, name)
    world.run()  # the robot nobody could keep is deleted as unreferenced
    assert world.login("a-dev") is not None
    assert len([r for r in robot_names(world) if "-101-" in r]) == 1
