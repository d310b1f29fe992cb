"""Provisioning against Harbor: the credential a namespace gets pulls what admission allows.

The provisioner runs in-process with the real pieces on both sides: the Harbor robot client
(:class:`~webhook.leader.provisioning.robots.HarborRobots`) against the Harbor fake over HTTP
on 127.0.0.1, and the Secret store against the real kube-apiserver. What a tenant notices is
checked where a tenant would notice it: the ``dockerconfigjson`` Secret is read back from the
apiserver and its credential is used to pull manifests through the fake's ``/v2/`` with basic
auth, exactly as a kubelet would.

These tests need the control plane's fixtures (``tests/e2e/conftest.py``), which pytest shows
only to tests under ``tests/e2e``, hence this file's place. Each test builds its snapshot from
its own namespaces and uses a pull Secret name of its own, so it never touches another test's
Secrets, whatever else runs on the shared control plane.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from policy.config import Config, load_config
from policy.provisioning import robot_base_name
from policy.snapshot import NamespaceInfo, Snapshot
from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from tests.support.manifests import Api
from tests.support.namespaces import Namespaces
from tests.support.pull_secrets import pull_secret_logins, secret_versions
from webhook.leader.provisioning.robots import HarborRobots
from webhook.leader.provisioning.secrets import ROBOT_CREDENTIAL, SecretStore, Version
from webhook.leader.provisioning.writer import PassResult, Provisioner

pytestmark = pytest.mark.e2e

ROBOTS = "/api/v2.0/robots"
SPACES = {"library": True, "team-a": False, "team-b": False, "team-c": False}


@pytest.fixture(scope="module")
def harbor_server() -> Iterator[HarborFake]:
    with HarborFake() as fake:
        yield fake


@pytest.fixture
def harbor(harbor_server: HarborFake) -> HarborFake:
    """The fake, emptied, with library public and team-a/b/c private."""
    harbor_server.reset()
    for name, public in SPACES.items():
        harbor_server.add_project(name, public=public)
    return harbor_server


@pytest.fixture
def home(namespaces: Namespaces) -> str:
    return namespaces.make(prefix="sg-home")


@pytest.fixture
def secret_name() -> str:
    return f"pull-{uuid.uuid4().hex[:8]}"


class Setup:
    """One test's world: the config, its namespaces by workspace, and passes over it."""

    def __init__(
        self,
        harbor: HarborFake,
        api_client: client.ApiClient,
        namespaces: Namespaces,
        home: str,
        secret_name: str,
        tmp_path: Path,
    ) -> None:
        self.harbor = harbor
        self.api_client = api_client
        self.namespaces = namespaces
        self.home = home
        self.secret_name = secret_name
        self.workspaces: dict[str, str | None] = {}
        (tmp_path / "username").write_text(f"{ADMIN_USER}\n")
        (tmp_path / "password").write_text(f"{ADMIN_PASSWORD}\n")
        self.credentials = tmp_path
        self.host = harbor.url.split("://", 1)[1]

    def config(self, bindings: dict[str, list[str]]) -> Config:
        lines = [
            "policy:",
            f"  pullSecretName: {self.secret_name}",
            "registries:",
            "  - name: harbor",
            "    type: harbor",
            f"    url: {self.harbor.url}",
            f"    credentials: {{usernameFile: {self.credentials / 'username'}, "
            f"passwordFile: {self.credentials / 'password'}}}",
            "bindings:",
        ]
        lines += [
            f"  - {{registry: harbor, space: {space}, workspaces: {workspaces}}}"
            for space, workspaces in bindings.items()
        ]
        return load_config("\n".join(lines) + "\n")

    def namespace(self, workspace: str | None) -> str:
        name = self.namespaces.make(prefix=f"ws-{workspace or 'none'}")
        self.workspaces[name] = workspace
        return name

    def snapshot(self, bindings: dict[str, list[str]]) -> Snapshot:
        """What live mode would hold: Harbor's projects as listed, these namespaces."""
        return Snapshot.build(
            self.config(bindings),
            spaces={"harbor": SPACES},
            namespaces={name: NamespaceInfo(workspace=ws) for name, ws in self.workspaces.items()},
        )

    def provisioner(self) -> Provisioner:
        """A new provisioner, as a restarted or newly elected spacegate builds one."""
        store = SecretStore(self.api_client, home=self.home)
        return Provisioner(store, HarborRobots)

    def run(
        self, bindings: dict[str, list[str]], provisioner: Provisioner | None = None
    ) -> PassResult:
        """One pass, in its own event loop, closing the Harbor clients afterwards."""
        runner = provisioner or self.provisioner()

        async def once() -> PassResult:
            try:
                return await runner.run_pass(self.snapshot(bindings))
            finally:
                await runner.aclose()

        result = asyncio.run(once())
        assert result.applied and not result.failures, result.failures
        return result

    def login(self, namespace: str) -> tuple[str, str]:
        """The credential the namespace's pull Secret holds for this Harbor."""
        logins = pull_secret_logins(self.api_client, namespace, self.secret_name)
        assert logins is not None, f"no pull Secret in {namespace}"
        assert set(logins) == {self.host}
        return logins[self.host]

    def pulls(self, login: tuple[str, str], project: str) -> bool:
        """A manifest GET through ``/v2/`` with basic auth, as the kubelet sends it."""
        url = f"{self.harbor.url}/v2/{project}/app/manifests/1.0"
        return httpx.get(url, auth=login, timeout=10).status_code == 200

    def harbor_writes(self, since: int = 0) -> list[str]:
        return [
            f"{r.method} {r.path}"
            for r in self.harbor.requests[since:]
            if r.method != "GET" and r.path.startswith(ROBOTS)
        ]

    def robot_projects(self) -> dict[str, set[str]]:
        """Every robot in Harbor: login -> the projects it holds a permission on."""
        return {
            robot.name: {p.namespace for p in robot.permissions if p.kind == "project"}
            for robot in self.harbor.robots()
        }

    def credential_secrets(self) -> list[Any]:
        core: Api = client.CoreV1Api(self.api_client)
        return list(
            core.list_namespaced_secret(
                self.home, label_selector=f"spacegate.io/component={ROBOT_CREDENTIAL}"
            ).items
        )


@pytest.fixture
def world(
    harbor: HarborFake,
    api_client: client.ApiClient,
    namespaces: Namespaces,
    home: str,
    secret_name: str,
    tmp_path: Path,
) -> Setup:
    return Setup(harbor, api_client, namespaces, home, secret_name, tmp_path)


BOUND = {"team-a": ["101"], "team-b": ["101", "102"], "team-c": ["102"]}


def test_a_workspace_namespace_pulls_from_each_bound_private_space_and_no_other(
    world: Setup,
) -> None:
    dev, prod = world.namespace("101"), world.namespace("101")
    other = world.namespace("102")
    plain = world.namespace(None)

    world.run(BOUND)

    login = world.login(dev)
    assert login[0].startswith("robot$" + robot_base_name("harbor", "101"))
    assert world.pulls(login, "team-a")
    assert world.pulls(login, "team-b")
    assert not world.pulls(login, "team-c")  # workspace 102's private space
    assert world.login(prod) == login  # one robot per (registry, workspace)

    other_login = world.login(other)
    assert other_login != login
    assert world.pulls(other_login, "team-b")
    assert world.pulls(other_login, "team-c")
    assert not world.pulls(other_login, "team-a")

    # A namespace of no workspace may use only public spaces: it needs no credential.
    assert pull_secret_logins(world.api_client, plain, world.secret_name) is None
    assert not world.pulls(("robot$nobody", "wrong"), "team-a")


def test_no_robot_is_ever_granted_all_projects_whatever_the_bindings_become(
    world: Setup,
) -> None:
    world.namespace("101")
    world.namespace("102")
    world.namespace(None)
    history = [
        BOUND,
        {"team-a": ["101"], "team-c": ["102"]},  # unbind team-b
        {"team-a": ["101", "102"], "team-b": ["101", "102"], "team-c": ["101", "102"]},
        {"team-b": ["102"]},  # workspace 101 needs nothing any more
    ]
    seen: set[str] = set()

    for bindings in history:
        world.run(bindings)
        for login, projects in world.robot_projects().items():
            seen.add(login)
            assert "*" not in projects, f"{login} may pull from every project"
            assert projects <= {"team-a", "team-b", "team-c"}, projects
            assert projects, f"{login} holds no project permission"
        # Exactly the bound private spaces, per workspace, never more.
        wanted = {
            ws: {space for space, bound in bindings.items() if ws in bound} for ws in ("101", "102")
        }
        held = {
            ws: projects
            for login, projects in world.robot_projects().items()
            for ws in ("101", "102")
            if login.startswith("robot$" + robot_base_name("harbor", ws))
        }
        assert held == {ws: spaces for ws, spaces in wanted.items() if spaces}

    assert len(seen) >= 4  # the history did create new robots (the test tested something)


def test_a_pass_with_nothing_changed_writes_nothing_to_harbor_or_the_apiserver(
    world: Setup,
) -> None:
    world.namespace("101")
    world.namespace("102")
    first = world.run(BOUND)
    assert first.plan.create_robots and first.plan.write_secrets
    robots = world.robot_projects()
    versions = secret_versions(world.api_client, world.secret_name)
    credentials = {s.metadata.name: s.metadata.resource_version for s in world.credential_secrets()}
    before = len(world.harbor.requests)

    again = world.run(BOUND)

    assert again.plan.empty, again.plan.lines()
    assert world.harbor_writes(since=before) == []
    assert world.robot_projects() == robots
    assert secret_versions(world.api_client, world.secret_name) == versions
    assert {
        s.metadata.name: s.metadata.resource_version for s in world.credential_secrets()
    } == credentials


def test_a_restarted_provisioner_reuses_the_credential_kept_in_its_namespace(
    world: Setup,
) -> None:
    dev = world.namespace("101")
    world.run(BOUND, world.provisioner())
    login = world.login(dev)
    [kept] = [
        s
        for s in world.credential_secrets()
        if s.metadata.annotations["spacegate.io/workspace"] == "101"
    ]
    assert kept.metadata.name == robot_base_name("harbor", "101")
    assert kept.metadata.labels["app.kubernetes.io/managed-by"] == "spacegate"
    assert kept.metadata.annotations["spacegate.io/robot-name"] == login[0]
    robots = world.robot_projects()
    before = len(world.harbor.requests)

    restarted = world.provisioner()  # a new process: nothing in memory
    result = world.run(BOUND, restarted)

    assert result.plan.empty, result.plan.lines()
    assert world.harbor_writes(since=before) == []
    assert world.robot_projects() == robots
    assert world.login(dev) == login
    assert world.pulls(login, "team-a")


def test_a_lost_credential_is_replaced_by_a_new_robot_and_the_old_one_is_deleted(
    world: Setup,
) -> None:
    dev = world.namespace("101")
    world.run(BOUND)
    old = world.login(dev)
    core: Api = client.CoreV1Api(world.api_client)
    core.delete_namespaced_secret(robot_base_name("harbor", "101"), world.home)

    world.run(BOUND, world.provisioner())

    new = world.login(dev)
    assert new[0] != old[0]
    assert world.pulls(new, "team-a") and world.pulls(new, "team-b")
    assert old[0] not in world.robot_projects()  # nobody could use it again: deleted
    assert not world.pulls(old, "team-a")


# s: the pass at this size blocked the loop for 1.1 s when it ran on it; off the loop it stays
# well under this even on a loaded 2-core machine (GIL hand-offs only).
STALL_LIMIT = 0.5


def test_a_provisioning_pass_leaves_the_event_loop_free_for_admission_answers(
    world: Setup,
) -> None:
    workspaces, per_workspace = 300, 5
    bound = {
        f"p{w:03d}-{k}": [f"ws{w:03d}"] for w in range(workspaces) for k in range(per_workspace)
    }
    world.harbor.add_projects(bound, public=False)
    snapshot = Snapshot.build(
        world.config(bound),
        spaces={"harbor": SPACES | dict.fromkeys(bound, False)},
        namespaces={
            f"ns-{w:03d}": NamespaceInfo(workspace=f"ws{w:03d}") for w in range(workspaces)
        },
    )
    provisioner = world.provisioner()

    async def dry_run_with_a_ticker() -> tuple[PassResult, float]:
        # What an admission request arriving during the pass would wait: how late a 10 ms
        # timer on the same loop fires.
        loop = asyncio.get_running_loop()
        stall = 0.0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal stall
            while not done.is_set():
                due = loop.time() + 0.01
                await asyncio.sleep(0.01)
                stall = max(stall, loop.time() - due)

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        try:
            result = await provisioner.run_pass(snapshot, apply=False)
        finally:
            done.set()
            await ticking
            await provisioner.aclose()
        return result, stall

    result, stall = asyncio.run(dry_run_with_a_ticker())

    assert len(result.plan.create_robots) == workspaces  # the pass did the real work
    assert stall < STALL_LIMIT, f"the event loop was blocked for {stall:.2f} s"


# --------------------------------------------------------------------------- races (finding 8)


class RacedStore(SecretStore):
    """The real store, with someone else's write landing on the real apiserver between
    spacegate's read and its write to ``namespace``: ``race`` runs just before it."""

    def __init__(
        self, api_client: client.ApiClient, *, home: str, namespace: str, race: Callable[[], None]
    ) -> None:
        super().__init__(api_client, home=home)
        self.namespace, self.race = namespace, race

    def _maybe(self, namespace: str) -> None:
        if namespace == self.namespace:
            self.race()
            self.namespace = ""  # once

    def create_pull_secret(self, namespace: str, name: str, content: bytes) -> None:
        self._maybe(namespace)
        super().create_pull_secret(namespace, name, content)

    def update_pull_secret(
        self, namespace: str, name: str, content: bytes, version: Version
    ) -> None:
        self._maybe(namespace)
        super().update_pull_secret(namespace, name, content, version)

    def delete_pull_secret(self, namespace: str, name: str, version: Version) -> None:
        self._maybe(namespace)
        super().delete_pull_secret(namespace, name, version)


def _foreign(name: str, kind: str = "kubernetes.io/dockerconfigjson") -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels={"owner": "platform-team"}),
        type=kind,
        string_data={".dockerconfigjson": '{"auths": {"elsewhere.example.com": {}}}'},
    )


@pytest.mark.parametrize("when", ["create", "update", "delete"])
def test_a_secret_someone_else_writes_between_the_read_and_the_write_is_left_alone(
    world: Setup, when: str
) -> None:
    dev, prod = world.namespace("101"), world.namespace("101")
    core: Api = client.CoreV1Api(world.api_client)
    if when != "create":
        world.run(BOUND)  # spacegate's Secrets exist, to be updated or deleted

    def someone_else() -> None:
        if when != "create":
            core.delete_namespaced_secret(world.secret_name, dev)
        core.create_namespaced_secret(dev, _foreign(world.secret_name))

    store = RacedStore(world.api_client, home=world.home, namespace=dev, race=someone_else)
    bindings = {
        "create": BOUND,
        "update": {**BOUND, "team-c": ["101", "102"]},  # 101's Secrets change
        "delete": {"team-b": ["102"], "team-c": ["102"]},  # 101 needs nothing any more
    }[when]
    runner = Provisioner(store, HarborRobots)

    async def once() -> PassResult:
        try:
            return await runner.run_pass(world.snapshot(bindings))
        finally:
            await runner.aclose()

    result = asyncio.run(once())

    theirs = core.read_namespaced_secret(world.secret_name, dev)
    assert theirs.metadata.labels == {"owner": "platform-team"}  # neither replaced nor adopted
    assert b"elsewhere.example.com" in base64.b64decode(theirs.data[".dockerconfigjson"])
    assert [f for f in result.failures if "changed by someone else since it was read" in f], (
        result.failures
    )
    # The other namespace was written (or cleaned up) as planned.
    other = pull_secret_logins(world.api_client, prod, world.secret_name)
    assert (other is None) == (when == "delete")
    # And the next pass sees it for what it is: someone else's, left alone.
    world.run(bindings)
    again = core.read_namespaced_secret(world.secret_name, dev)
    assert again.metadata.resource_version == theirs.metadata.resource_version


# --------------------------------------------------------------------------- robot creation fails


@pytest.mark.parametrize("fault", ["503", "timeout"])
def test_a_robot_harbor_fails_to_create_deletes_nothing_the_workspace_still_uses(
    world: Setup, fault: str
) -> None:
    """A namespace leaves: the robot must rotate, and Harbor fails the create. The others
    keep pulling with the old robot; the next pass completes the rotation."""
    dev, leaving = world.namespace("101"), world.namespace("101")
    world.run(BOUND)
    old = world.login(dev)
    del world.workspaces[leaving]
    if fault == "503":
        world.harbor.faults.pass_next(1).fail_next(1, 503)  # the listing passes, not the create
    else:
        world.harbor.faults.pass_next(1).delay_next(1, seconds=4)
    runner = Provisioner(
        SecretStore(world.api_client, home=world.home),
        lambda registry: HarborRobots(registry, timeout=1.5),
    )

    async def once() -> PassResult:
        try:
            return await runner.run_pass(world.snapshot(BOUND))
        finally:
            await runner.aclose()

    failed = asyncio.run(once())

    assert len(failed.failures) == 1 and "may or may not exist" in failed.failures[0]
    assert world.login(dev) == old and world.pulls(old, "team-a")  # no gap for the others
    assert pull_secret_logins(world.api_client, leaving, world.secret_name) is None
    world.harbor.faults.clear()

    again = world.run(BOUND)

    [change] = again.plan.create_robots
    assert change.reason == f"namespaces left the workspace: {leaving}"
    new = world.login(dev)
    assert new != old and world.pulls(new, "team-a")
    assert not world.pulls(old, "team-a")  # what the leaver may have kept is dead
