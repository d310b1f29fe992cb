"""Provisioning for Docker Registries that refuse anonymous pulls: the real registry agrees.

A Docker Registry has no per-workspace accounts, so with ``anonymousPull: false`` spacegate
hands out the registry's configured ``pullCredentials``. The registry here is the real
Distribution binary with htpasswd basic auth (:class:`tests.fakes.registry.RealRegistry`),
so "the credential works" means the real registry accepted it. The Secrets are written to the
real kube-apiserver and read back as the kubelet reads them.

In ``tests/e2e`` because the control plane's fixtures are visible only there. Each test uses
a pull Secret name of its own and a snapshot of its own namespaces, so nothing it does
reaches Secrets of other tests on the shared control plane.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client

from policy.config import load_config
from policy.snapshot import NamespaceInfo, Snapshot
from tests.fakes.registry import RealRegistry, real_registry_unavailable
from tests.support.namespaces import Namespaces
from tests.support.pull_secrets import pull_secret_logins
from webhook.leader.provisioning.robots import HarborRobots
from webhook.leader.provisioning.secrets import SecretStore
from webhook.leader.provisioning.writer import PassResult, Provisioner

pytestmark = pytest.mark.e2e


def _registry(username: str, password: str) -> Iterator[RealRegistry]:
    reason = real_registry_unavailable()
    if reason:
        pytest.fail(reason, pytrace=False)  # an e2e suite that skips its tools tests nothing
    with RealRegistry.temporary(username=username, password=password) as registry:
        registry.push_image("shop/web", "1.0")
        yield registry


@pytest.fixture(scope="module")
def platform() -> Iterator[RealRegistry]:
    """The platform's registry: every workspace may use it, nobody anonymously."""
    yield from _registry("platform-puller", "Pl4tform$pull:pw")


@pytest.fixture(scope="module")
def team() -> Iterator[RealRegistry]:
    """A registry workspace 201 integrated for itself, with another account."""
    yield from _registry("team-puller", "T3am$pull:pw")


def pulls(registry: RealRegistry, login: tuple[str, str] | None) -> int:
    """The status of a manifest GET, as a container runtime sends it (basic auth or none)."""
    response = httpx.get(
        f"{registry.url}/v2/shop/web/manifests/1.0",
        auth=login,
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    return response.status_code


class Setup:
    def __init__(
        self,
        platform: RealRegistry,
        team: RealRegistry,
        api_client: client.ApiClient,
        namespaces: Namespaces,
        tmp_path: Path,
    ) -> None:
        self.platform, self.team = platform, team
        self.api_client = api_client
        self.namespaces = namespaces
        self.tmp_path = tmp_path
        self.secret_name = f"pull-{uuid.uuid4().hex[:8]}"
        self.home = namespaces.make(prefix="sg-home")
        self.workspaces: dict[str, str | None] = {}
        self.files = {
            "platform": self._files("platform", platform.username, platform.password),
            "team": self._files("team", team.username, team.password),
        }

    def _files(self, name: str, username: str, password: str) -> str:
        (self.tmp_path / f"{name}-username").write_text(f"{username}\n")
        (self.tmp_path / f"{name}-password").write_text(f"{password}\n")
        return (
            f"{{usernameFile: {self.tmp_path / f'{name}-username'}, "
            f"passwordFile: {self.tmp_path / f'{name}-password'}}}"
        )

    def namespace(self, workspace: str | None) -> str:
        name = self.namespaces.make(prefix=f"ws-{workspace or 'none'}")
        self.workspaces[name] = workspace
        return name

    def snapshot(self, *, team_credentials: bool = True) -> Snapshot:
        team_pull = f"    pullCredentials: {self.files['team']}\n" if team_credentials else ""
        config = load_config(
            f"policy: {{pullSecretName: {self.secret_name}}}\n"
            "registries:\n"
            "  - name: platform\n"
            "    type: docker-registry\n"
            f"    url: {self.platform.url}\n"
            "    anonymousPull: false\n"
            f"    credentials: {self.files['platform']}\n"
            f"    pullCredentials: {self.files['platform']}\n"
            "  - name: team\n"
            "    type: docker-registry\n"
            f"    url: {self.team.url}\n"
            '    workspace: "201"\n'
            "    anonymousPull: false\n" + team_pull
        )
        return Snapshot.build(
            config,
            namespaces={name: NamespaceInfo(workspace=ws) for name, ws in self.workspaces.items()},
        )

    def run(self, *, team_credentials: bool = True) -> PassResult:
        store = SecretStore(self.api_client, home=self.home)
        provisioner = Provisioner(store, HarborRobots)
        snapshot = self.snapshot(team_credentials=team_credentials)

        async def once() -> PassResult:
            try:
                return await provisioner.run_pass(snapshot)
            finally:
                await provisioner.aclose()

        result = asyncio.run(once())
        assert result.applied and not result.failures, result.failures
        return result

    def logins(self, namespace: str) -> dict[str, tuple[str, str]]:
        logins = pull_secret_logins(self.api_client, namespace, self.secret_name)
        assert logins is not None, f"no pull Secret in {namespace}"
        return logins


@pytest.fixture
def world(
    platform: RealRegistry,
    team: RealRegistry,
    api_client: client.ApiClient,
    namespaces: Namespaces,
    tmp_path: Path,
) -> Setup:
    return Setup(platform, team, api_client, namespaces, tmp_path)


def test_the_provisioned_credential_pulls_from_the_real_registry_which_refuses_anonymous_pulls(
    world: Setup,
) -> None:
    dev = world.namespace("200")
    plain = world.namespace(None)

    world.run()

    login = world.logins(dev)[world.platform.host]
    assert pulls(world.platform, login) == 200
    assert pulls(world.platform, None) == 401
    assert pulls(world.platform, (login[0], "not-the-password")) == 401
    # anonymousPull: false on a platform registry: every namespace needs the credential,
    # those of no workspace included, or none of its images could start there.
    assert world.logins(plain) == {world.platform.host: login}


def test_a_workspace_integrated_registrys_credential_goes_to_that_workspaces_namespaces_only(
    world: Setup,
) -> None:
    own, own_too = world.namespace("201"), world.namespace("201")
    other, plain = world.namespace("200"), world.namespace(None)

    world.run()

    for namespace in (own, own_too):
        logins = world.logins(namespace)
        assert set(logins) == {world.platform.host, world.team.host}
        assert pulls(world.team, logins[world.team.host]) == 200
        assert pulls(world.platform, logins[world.platform.host]) == 200
    for namespace in (other, plain):
        logins = world.logins(namespace)
        assert set(logins) == {world.platform.host}, namespace
    assert pulls(world.team, world.logins(other)[world.platform.host]) == 401
    assert pulls(world.team, None) == 401


def test_a_namespace_that_leaves_the_workspace_loses_the_workspace_registrys_credential(
    world: Setup,
) -> None:
    moving = world.namespace("201")
    world.run()
    assert world.team.host in world.logins(moving)

    world.workspaces[moving] = "200"
    result = world.run()

    assert [(w.namespace, w.verb) for w in result.plan.write_secrets] == [(moving, "update")]
    assert set(world.logins(moving)) == {world.platform.host}


def test_a_rotated_pull_credential_file_reaches_every_secret_on_the_next_pass(
    world: Setup,
) -> None:
    first, second = world.namespace("200"), world.namespace(None)
    world.run()
    (world.tmp_path / "platform-password").write_text("rotated-Passw0rd\n")

    result = world.run()

    assert sorted((w.namespace, w.verb) for w in result.plan.write_secrets) == sorted(
        [(first, "update"), (second, "update")]
    )
    for namespace in (first, second):
        assert world.logins(namespace)[world.platform.host][1] == "rotated-Passw0rd"


def test_a_registry_without_pull_credentials_is_reported_and_left_out_of_the_secrets(
    world: Setup,
) -> None:
    own = world.namespace("201")

    result = world.run(team_credentials=False)

    assert result.plan.missing == ["team"]
    assert "registry team needs a pull credential but has no pullCredentials" in (
        result.plan.lines()
    )
    assert set(world.logins(own)) == {world.platform.host}
