"""Pull-secret provisioning as a cluster sees it: ``spacegate serve`` keeps the Secrets.

Every test here runs ``spacegate serve`` processes (live mode, namespaces from the real
control plane, the config file watched) with ``pullSecrets.provision: true`` against a Harbor
fake on 127.0.0.1 that lives as long as this module. What is checked is what users notice:

- the ``registry-secret`` Secrets in their namespaces (read back from the apiserver), and
  whether their credential pulls a manifest through Harbor's ``/v2/`` with basic auth;
- the robots in Harbor (what each may pull; that none is left behind);
- which replica holds the ``spacegate-provisioner`` Lease.

Isolation on the shared control plane: the config reads workspaces from a label of this
module's own (:data:`LABEL`), so other tests' namespaces belong to no workspace here and get
nothing; each test uses workspace ids of its own and a namespace of its own for the robot
credentials and the Lease (a SIGKILLed leader's Lease never delays another test).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from policy.config import load_config
from policy.provisioning import robot_base_name
from policy.snapshot import NamespaceInfo, Snapshot
from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import Api
from tests.support.metrics import spacegate_metric
from tests.support.namespaces import Namespaces
from tests.support.pull_secrets import pull_secret_logins
from tests.support.spacegate import REPO, SpacegateProcess
from tests.support.waiting import eventually
from webhook.leader.provisioning.robots import HarborRobots
from webhook.leader.provisioning.secrets import (
    ROBOT_CREDENTIAL,
    RobotCredential,
    SecretStore,
    Version,
)
from webhook.leader.provisioning.writer import PassResult, Provisioner

pytestmark = pytest.mark.e2e

LABEL = "provisioning.e2e.spacegate.io/workspace"
SECRET = "registry-secret"
LEASE = "spacegate-provisioner"
ROBOTS = "/api/v2.0/robots"
PRIVATE = ("team-a", "team-b", "team-c")
# A SIGKILLed leader's Lease (15 s) must expire before the other replica takes over.
TAKEOVER_TIMEOUT = 45.0

Bindings = dict[str, list[str]]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def harbor() -> Iterator[HarborFake]:
    """One Harbor for the module: library public, team-a/b/c private."""
    with HarborFake() as fake:
        fake.add_project("library", public=True)
        for name in PRIVATE:
            fake.add_project(name, public=False)
        yield fake


@pytest.fixture(scope="module")
def admin_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Harbor admin login as mounted Secret files (a trailing newline, as usual)."""
    directory = tmp_path_factory.mktemp("harbor-admin")
    (directory / "username").write_text(f"{ADMIN_USER}\n")
    (directory / "password").write_text(f"{ADMIN_PASSWORD}\n")
    return directory


@pytest.fixture
def home(namespaces: Namespaces) -> str:
    """spacegate's namespace for this test: robot credentials and the Lease."""
    return namespaces.make(prefix="sg-home")


@pytest.fixture
def ws() -> Callable[[], str]:
    """Fresh workspace ids, so no test sees another test's workspaces."""
    return lambda: f"w{uuid.uuid4().hex[:6]}"


class Cluster:
    """This test's view: the config, the processes, the Secrets, Harbor's robots."""

    def __init__(
        self,
        plane: ControlPlane,
        api_client: client.ApiClient,
        harbor: HarborFake,
        admin_files: Path,
        namespaces: Namespaces,
        home: str,
        workdir: Path,
    ) -> None:
        self.plane = plane
        self.api_client = api_client
        self.core: Api = client.CoreV1Api(api_client)
        self.harbor = harbor
        self.admin_files = admin_files
        self.namespaces = namespaces
        self.home = home
        self.workdir = workdir
        self.host = harbor.url.split("://", 1)[1]
        self.processes: list[SpacegateProcess] = []

    # ------------------------------------------------------------------ config and processes

    def config(self, bindings: Bindings) -> str:
        lines = [
            f"workspaceLabel: {LABEL}",
            "policy:",
            "  mode: enforce",
            f"  pullSecretName: {SECRET}",
            "  exemptNamespaces: [kube-system]",
            "  namespaceGuard: {enabled: true}",  # provisioning requires it
            "registries:",
            "  - name: harbor",
            "    type: harbor",
            f"    url: {self.harbor.url}",
            f"    credentials: {{usernameFile: {self.admin_files / 'username'}, "
            f"passwordFile: {self.admin_files / 'password'}}}",
            "bindings:" if bindings else "bindings: []",
            *(
                f"  - {{registry: harbor, space: {space}, workspaces: {workspaces}}}"
                for space, workspaces in bindings.items()
            ),
            "pullSecrets:",
            "  provision: true",
            f"  credentialsNamespace: {self.home}",
        ]
        return "\n".join(lines) + "\n"

    def serve(self, bindings: Bindings) -> SpacegateProcess:
        """Start one more ``spacegate serve`` replica with this config; stopped after the test."""
        workdir = self.workdir / f"replica-{len(self.processes)}"
        workdir.mkdir()
        process = SpacegateProcess(self.plane, workdir, self.config(bindings))
        self.processes.append(process)
        process.start()
        return process

    def rebind(self, bindings: Bindings) -> None:
        """Rewrite every replica's config file; each reloads it."""
        for process in self.processes:
            process.write_config(self.config(bindings))

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.workdir.name}\n{p.tail(30)}" for p in self.processes if p.log.exists()
        )

    # ------------------------------------------------------------------ what users see

    def namespace(self, workspace: str | None) -> str:
        return self.namespaces.make({LABEL: workspace} if workspace else {}, prefix="prov")

    def login(self, namespace: str) -> tuple[str, str] | None:
        """The Harbor credential of the namespace's pull Secret (None: no Secret)."""
        logins = pull_secret_logins(self.api_client, namespace, SECRET)
        if logins is None:
            return None
        assert set(logins) == {self.host}, logins
        return logins[self.host]

    def wait_login(
        self, namespace: str, other_than: tuple[str, str] | None = None, timeout: float = 30
    ) -> tuple[str, str]:
        def ready() -> tuple[str, str] | None:
            login = self.login(namespace)
            return login if login is not None and login != other_than else None

        try:
            return eventually(ready, f"a pull Secret in {namespace}", timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def wait_gone(self, namespace: str) -> None:
        try:
            eventually(
                lambda: self.login(namespace) is None,
                f"the pull Secret of {namespace} to go",
                timeout=30,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def pulls(self, login: tuple[str, str], project: str) -> bool:
        url = f"{self.harbor.url}/v2/{project}/app/manifests/1.0"
        return httpx.get(url, auth=login, timeout=10).status_code == 200

    def pullable(self, login: tuple[str, str]) -> set[str]:
        """The private projects the credential pulls from."""
        return {project for project in PRIVATE if self.pulls(login, project)}

    def robots_of(self, workspace: str) -> dict[str, set[str]]:
        """The workspace's robots in Harbor: login -> projects."""
        prefix = "robot$" + robot_base_name("harbor", workspace)
        return {
            robot.name: {p.namespace for p in robot.permissions}
            for robot in self.harbor.robots()
            if robot.name.startswith(prefix)
        }

    def robot_creates(self, since: int = 0) -> int:
        return sum(
            1 for r in self.harbor.requests[since:] if r.method == "POST" and r.path == ROBOTS
        )

    def lease_holder(self) -> tuple[str | None, int]:
        leases: Api = client.CoordinationV1Api(self.api_client)
        lease = leases.read_namespaced_lease(LEASE, self.home)
        return lease.spec.holder_identity, lease.spec.lease_transitions or 0


@pytest.fixture
def cluster(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    harbor: HarborFake,
    admin_files: Path,
    namespaces: Namespaces,
    home: str,
    tmp_path: Path,
) -> Iterator[Cluster]:
    view = Cluster(control_plane, api_client, harbor, admin_files, namespaces, home, tmp_path)
    try:
        yield view
    finally:
        view.stop()


# --------------------------------------------------------------------------- bind, unbind, move


def test_binding_a_space_gives_a_pull_secret_to_exactly_the_workspaces_namespaces(
    cluster: Cluster, ws: Callable[[], str]
) -> None:
    x, y = ws(), ws()
    x_dev, x_prod = cluster.namespace(x), cluster.namespace(x)
    y_dev, plain = cluster.namespace(y), cluster.namespace(None)
    cluster.serve({"team-a": [x]})

    x_login = cluster.wait_login(x_dev)
    assert cluster.wait_login(x_prod) == x_login
    assert cluster.pullable(x_login) == {"team-a"}
    assert cluster.login(y_dev) is None  # the pass that wrote x_dev considered it too
    assert cluster.login(plain) is None

    cluster.rebind({"team-a": [x], "team-b": [y]})

    y_login = cluster.wait_login(y_dev)
    assert cluster.pullable(y_login) == {"team-b"}
    assert cluster.login(x_dev) == x_login  # another workspace's binding changes nothing here
    assert cluster.login(plain) is None
    assert cluster.robots_of(x) == {x_login[0]: {"team-a"}}
    assert cluster.robots_of(y) == {y_login[0]: {"team-b"}}


def test_unbinding_shrinks_the_robot_and_removes_secrets_no_longer_needed(
    cluster: Cluster, ws: Callable[[], str]
) -> None:
    x, y = ws(), ws()
    x_dev, y_dev = cluster.namespace(x), cluster.namespace(y)
    cluster.serve({"team-a": [x], "team-b": [x, y]})
    old = cluster.wait_login(x_dev)
    cluster.wait_login(y_dev)
    assert cluster.pullable(old) == {"team-a", "team-b"}

    cluster.rebind({"team-a": [x]})

    new = cluster.wait_login(x_dev, other_than=old)
    assert new[0] != old[0]  # a new robot: Harbor >= 2.12 has no robot:update for robots
    assert cluster.pullable(new) == {"team-a"}
    cluster.wait_gone(y_dev)
    eventually(
        lambda: cluster.robots_of(x) == {new[0]: {"team-a"}},
        "the old robot of the workspace to be deleted",
        timeout=30,
    )
    eventually(
        lambda: cluster.robots_of(y) == {}, "the robot of workspace y to be deleted", timeout=30
    )
    assert cluster.pullable(old) == set()  # the old credential is dead, not just unused


def test_relabelling_a_namespace_moves_its_secret_to_the_new_workspaces_credential(
    cluster: Cluster, ws: Callable[[], str]
) -> None:
    x, y = ws(), ws()
    moving = cluster.namespace(x)
    cluster.serve({"team-a": [x], "team-b": [y]})
    x_login = cluster.wait_login(moving)
    assert cluster.pullable(x_login) == {"team-a"}

    cluster.namespaces.relabel(moving, {LABEL: y})

    y_login = cluster.wait_login(moving, other_than=x_login)
    assert cluster.pullable(y_login) == {"team-b"}
    assert cluster.robots_of(y) == {y_login[0]: {"team-b"}}
    # Workspace x has no namespace left: its robot is gone.
    eventually(lambda: cluster.robots_of(x) == {}, "workspace x's robot to go", timeout=30)

    cluster.namespaces.relabel(moving, {LABEL: None})

    cluster.wait_gone(moving)


def test_a_registry_secret_spacegate_does_not_manage_is_left_alone_and_counted(
    cluster: Cluster, ws: Callable[[], str]
) -> None:
    x = ws()
    theirs, ours = cluster.namespace(x), cluster.namespace(x)
    foreign = client.V1Secret(
        metadata=client.V1ObjectMeta(name=SECRET, labels={"owner": "platform-team"}),
        type="kubernetes.io/dockerconfigjson",
        string_data={".dockerconfigjson": '{"auths": {"elsewhere.example.com": {}}}'},
    )
    created = cluster.core.create_namespaced_secret(theirs, foreign)
    process = cluster.serve({"team-a": [x]})

    cluster.wait_login(ours)  # the pass ran

    kept = cluster.core.read_namespaced_secret(SECRET, theirs)
    assert kept.metadata.resource_version == created.metadata.resource_version
    assert kept.data == created.data
    eventually(
        lambda: spacegate_metric(process, "spacegate_pull_secret_conflicts") == 1.0,
        "spacegate_pull_secret_conflicts 1",
    )
    assert f"namespace {theirs} has a Secret {SECRET} that spacegate does not manage" in (
        process.log.read_text()
    )


# --------------------------------------------------------------------------- revocation


class GapWatch:
    """Watches namespaces' pull Secrets from a thread, as kubelets pulling all the time would:
    each round reads a Secret, pulls with its credential, and reads the Secret again. A pull
    that fails while the Secret stayed the same is a gap (the Secret named a dead robot)."""

    def __init__(self, cluster: Cluster, namespaces: list[str]) -> None:
        self.cluster, self.namespaces = cluster, namespaces
        self.gaps: list[str] = []
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gap-watch", daemon=True)

    def _version(self, namespace: str) -> str | None:
        try:
            read = self.cluster.core.read_namespaced_secret(SECRET, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return str(read.metadata.resource_version)

    def _run(self) -> None:
        while not self._stop.is_set():
            for namespace in self.namespaces:
                before = self._version(namespace)
                login = self.cluster.login(namespace)
                pulled = login is not None and self.cluster.pulls(login, "team-a")
                if not pulled and before is not None and self._version(namespace) == before:
                    self.gaps.append(f"{namespace} at {time.strftime('%X')} (version {before})")
            self.rounds += 1
            self._stop.wait(0.05)

    def __enter__(self) -> GapWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_a_namespace_leaving_by_relabel_or_deletion_revokes_its_copy_without_a_gap(
    cluster: Cluster, ws: Callable[[], str]
) -> None:
    """Its Secret goes, but its tenants may have copied the credential: the workspace's robot
    is replaced (new robot, Secrets updated, old robot deleted), and the namespaces that stay
    never hold a dead credential on the way."""
    x = ws()
    dev, prod = cluster.namespace(x), cluster.namespace(x)
    relabelled, deleted = cluster.namespace(x), cluster.namespace(x)
    cluster.serve({"team-a": [x]})
    first = cluster.wait_login(dev)
    assert all(cluster.wait_login(ns) == first for ns in (prod, relabelled, deleted))

    with GapWatch(cluster, [dev, prod]) as watch:
        cluster.namespaces.relabel(relabelled, {LABEL: None})
        second = cluster.wait_login(dev, other_than=first)
        cluster.wait_gone(relabelled)
        eventually(
            lambda: cluster.robots_of(x) == {second[0]: {"team-a"}},
            "the robot the relabelled namespace held to be deleted",
            timeout=30,
        )
        assert cluster.login(prod) == second and cluster.login(deleted) == second
        assert not cluster.pulls(first, "team-a")  # a copy kept in `relabelled` is dead

        cluster.core.delete_namespace(deleted)  # no Secret left behind to notice
        third = cluster.wait_login(dev, other_than=second, timeout=60)
        eventually(
            lambda: cluster.robots_of(x) == {third[0]: {"team-a"}},
            "the robot the deleted namespace held to be deleted",
            timeout=30,
        )
        assert cluster.login(prod) == third
        assert not cluster.pulls(second, "team-a")

    assert watch.rounds > 10, watch.rounds  # it did watch, all along
    assert watch.gaps == [], f"{watch.gaps}\n{cluster.logs()}"


# --------------------------------------------------------------------------- one writer


def test_of_two_replicas_one_leads_and_the_other_takes_over_after_a_sigkill(
    cluster: Cluster, ws: Callable[[], str]
) -> None:
    x = ws()
    first_ns = cluster.namespace(x)
    bindings = {"team-a": [x]}
    leader = cluster.serve(bindings)
    login = cluster.wait_login(first_ns)
    standby = cluster.serve(bindings)
    eventually(
        lambda: spacegate_metric(standby, "spacegate_leader") == 0.0,
        "the second replica to report it is not the leader",
    )
    assert spacegate_metric(leader, "spacegate_leader") == 1.0
    holder, transitions = cluster.lease_holder()
    assert holder is not None and holder in leader.log.read_text()
    assert holder not in standby.log.read_text()
    [robot] = cluster.robots_of(x)
    seen = len(cluster.harbor.requests)

    leader.kill()
    killed_at = time.monotonic()
    second_ns = cluster.namespace(x)

    # Nobody writes until the dead leader's Lease has expired...
    time.sleep(3)
    assert cluster.login(second_ns) is None
    # ...then the standby takes over and carries on with the kept credential.
    try:
        eventually(
            lambda: cluster.login(second_ns), "the standby to provision", timeout=TAKEOVER_TIMEOUT
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.logs()}") from None
    took = time.monotonic() - killed_at
    new_holder, new_transitions = cluster.lease_holder()
    assert new_holder is not None and new_holder in standby.log.read_text()
    assert new_transitions == transitions + 1
    assert spacegate_metric(standby, "spacegate_leader") == 1.0
    assert cluster.login(second_ns) == login
    assert cluster.robots_of(x) == {robot: {"team-a"}}  # no duplicate robot
    assert cluster.robot_creates(since=seen) == 0
    assert 5 < took < TAKEOVER_TIMEOUT


class Killed(Exception):
    """The leader's process died here."""


class CrashingStore(SecretStore):
    """A SecretStore whose process dies at ``at``: right after the robot was created (before
    its credential is kept), or after the credential was kept (before any Secret)."""

    def __init__(self, at: str, api_client: client.ApiClient, *, home: str) -> None:
        super().__init__(api_client, home=home)
        self.at = at

    def write_credential(
        self, name: str, credential: RobotCredential, version: Version | None = None
    ) -> None:
        if self.at == "credential":
            raise Killed("killed before keeping the credential")
        super().write_credential(name, credential, version)

    def create_pull_secret(self, namespace: str, name: str, content: bytes) -> None:
        raise Killed("killed before writing the pull Secrets")


@pytest.mark.parametrize("at", ["credential", "secrets"])
def test_a_leader_killed_between_robot_creation_and_secrets_leaves_no_orphan_robot(
    cluster: Cluster, ws: Callable[[], str], at: str
) -> None:
    x = ws()
    dev = cluster.namespace(x)
    config = load_config(cluster.config({"team-a": [x], "team-b": [x]}))
    snapshot = Snapshot.build(
        config,
        spaces={"harbor": {"library": True, "team-a": False, "team-b": False, "team-c": False}},
        namespaces={dev: NamespaceInfo(workspace=x)},
    )

    def run(store: SecretStore) -> PassResult:
        provisioner = Provisioner(store, HarborRobots)

        async def once() -> PassResult:
            try:
                return await provisioner.run_pass(snapshot)
            finally:
                await provisioner.aclose()

        return asyncio.run(once())

    with pytest.raises(Killed):
        run(CrashingStore(at, cluster.api_client, home=cluster.home))
    [crashed] = cluster.robots_of(x)  # the robot exists in Harbor...
    assert cluster.login(dev) is None  # ...but no namespace has its credential
    kept = cluster.core.list_namespaced_secret(
        cluster.home, label_selector=f"spacegate.io/component={ROBOT_CREDENTIAL}"
    ).items
    assert len(kept) == (1 if at == "secrets" else 0)

    result = run(SecretStore(cluster.api_client, home=cluster.home))

    assert not result.failures
    login = cluster.login(dev)
    assert login is not None
    assert cluster.pullable(login) == {"team-a", "team-b"}
    # Exactly one robot of the workspace, the one the Secret names. A robot whose secret was
    # never kept can never be used again, so it must be the one that went.
    assert cluster.robots_of(x) == {login[0]: {"team-a", "team-b"}}
    if at == "credential":
        assert login[0] != crashed
    else:
        assert login[0] == crashed  # its credential was kept: reused, not replaced


# --------------------------------------------------------------------------- spacegate provision


def test_provision_dry_run_prints_the_plan_and_changes_nothing(
    cluster: Cluster, ws: Callable[[], str]
) -> None:
    x = ws()
    dev, prod = sorted([cluster.namespace(x), cluster.namespace(x)])
    config = cluster.workdir / "config.yaml"
    config.write_text(cluster.config({"team-a": [x], "team-b": [x]}))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("KUBECONFIG", None)
    command = [
        sys.executable,
        "-m",
        "webhook",
        "provision",
        "--config",
        str(config),
        "--kubeconfig",
        str(cluster.plane.kubeconfig),
    ]
    writes_before = [r for r in cluster.harbor.requests if r.method != "GET"]

    dry = subprocess.run(
        [*command, "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert dry.returncode == 0, dry.stderr
    base = robot_base_name("harbor", x)
    assert (
        f"would create robot {base}-… on harbor for workspace {x}: repository:pull on "
        f"team-a, team-b (new)"
    ) in dry.stdout.splitlines()
    assert f"would create Secret {dev} (harbor)" in dry.stdout.splitlines()
    assert f"would create Secret {prod} (harbor)" in dry.stdout.splitlines()
    assert [r for r in cluster.harbor.requests if r.method != "GET"] == writes_before
    assert cluster.login(dev) is None and cluster.login(prod) is None
    with pytest.raises(ApiException) as missing:
        cluster.lease_holder()  # a dry run does not even take the Lease
    assert missing.value.status == 404

    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    login = cluster.login(dev)
    assert login is not None and cluster.login(prod) == login
    assert cluster.pullable(login) == {"team-a", "team-b"}
    again = subprocess.run(
        [*command, "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["nothing to change"]


# --------------------------------------------------------------------------- robustness

HOLD = "e2e.spacegate.io/hold"


def test_a_namespace_stuck_terminating_does_not_stop_other_namespaces_getting_their_secret(
    cluster: Cluster, ws: Callable[[], str]
) -> None:
    x = ws()
    stuck = cluster.namespaces.make({LABEL: x}, prefix="prov-a")  # sorted first
    cluster.core.create_namespaced_config_map(
        stuck, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="held", finalizers=[HOLD]))
    )
    cluster.serve({"team-a": [x]})
    login = cluster.wait_login(stuck)
    cluster.core.delete_namespace(stuck)  # a finalizer nobody removes: Terminating for good
    try:
        cluster.wait_gone(stuck)  # the namespace controller deleted what it could
        assert cluster.core.read_namespace(stuck).status.phase == "Terminating"

        later = cluster.namespaces.make({LABEL: x}, prefix="prov-b")

        # A pass takes a second or two after the namespace appears; allow for a busy machine.
        assert cluster.wait_login(later, timeout=10) == login
    finally:
        cluster.core.patch_namespaced_config_map("held", stuck, {"metadata": {"finalizers": None}})
