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
import time
from pathlib import Path

import orjson
import pytest
from kubernetes import client
from prometheus_client import CollectorRegistry

from policy.config import load_config
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
        namespaces: dict[str, str] = NAMESPACES,
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
