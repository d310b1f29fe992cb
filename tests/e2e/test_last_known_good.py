"""A replica that starts while Harbor is down serves from the copy the leader kept in the cluster.

Real pieces on every side: ``spacegate serve`` processes on 127.0.0.1 against the real
kube-apiserver (the Lease, the copy's Secret, the namespaces), the Harbor fake behind a TCP
proxy that can refuse every connection on the same address (``tests.support.chaos.
fault_proxy``: the copy is only used for the same server), and the apiserver calling each
test's own copy of the chart's webhooks (renamed, called for the test's namespaces only, as in
``test_failure_modes``), so what a tenant sees is what is checked: a Pod create admitted or
refused by spacegate. Each test has its own spacegate namespace (``pullSecrets.
credentialsNamespace``), so its Lease and its copy are its own.
"""

from __future__ import annotations

import base64
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from policy.last_known_good import (
    DATA_KEY,
    MAX_COMPRESSED_BYTES,
    SECRET_NAME,
    Copy,
    RegistryCopy,
    decode,
    encode,
)
from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from tests.support.chaos.fault_proxy import FaultProxy
from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import Api, pod
from tests.support.metrics import metric_samples
from tests.support.namespaces import Namespaces
from tests.support.scenario import WS
from tests.support.spacegate import SpacegateProcess
from tests.support.waiting import eventually
from tests.support.webhooks import apply_webhooks, chart_webhooks, delete_webhooks

pytestmark = pytest.mark.e2e

SPACES = {"library": True, "team-a": False, "team-b": False}
COPIED = "spacegate_registry_last_known_good_copy"
STALE_READY = "/readyz?exclude=staleness"


# --------------------------------------------------------------------------- the world


@pytest.fixture
def harbor() -> Iterator[HarborFake]:
    with HarborFake() as fake:
        for name, public in SPACES.items():
            fake.add_project(name, public=public)
        yield fake


@pytest.fixture
def proxy(harbor: HarborFake) -> Iterator[FaultProxy]:
    host, port = harbor.url.split("://", 1)[1].split(":")
    with FaultProxy((host, int(port))) as gate:
        yield gate


@pytest.fixture
def home(namespaces: Namespaces) -> str:
    """This test's spacegate namespace: its Lease and its copy live there."""
    return namespaces.make(prefix="sg-lkg")


@pytest.fixture
def tenant(namespaces: Namespaces) -> str:
    """A namespace of workspace 101, to which team-a is bound."""
    return namespaces.make(prefix="ws-101", labels={WS: "101"})


@pytest.fixture
def core(api_client: client.ApiClient) -> Api:
    return client.CoreV1Api(api_client)


def config_text(proxy: FaultProxy, home: str, credentials: Path) -> str:
    (credentials / "username").write_text(f"{ADMIN_USER}\n")
    (credentials / "password").write_text(f"{ADMIN_PASSWORD}\n")
    return f"""
workspaceLabel: {WS}
policy:
  mode: enforce
  unknownRegistry: allow
  unknownSpace: deny
  maxStaleness: 10m
registries:
  - name: harbor
    type: harbor
    url: {proxy.url}
    refreshInterval: 1s
    credentials:
      usernameFile: {credentials / "username"}
      passwordFile: {credentials / "password"}
bindings:
  source: config
  items:
  - {{registry: harbor, space: team-a, workspaces: ["101"]}}
pullSecrets:
  credentialsNamespace: {home}
"""


class Replicas:
    """This test's ``spacegate serve`` processes (same config), each stopped afterwards."""

    def __init__(self, plane: ControlPlane, workdir: Path, config: str) -> None:
        self.plane = plane
        self.workdir = workdir
        self.config = config
        self.started: list[SpacegateProcess] = []

    def start(self, *, ready: str = "/readyz") -> SpacegateProcess:
        where = self.workdir / f"replica-{len(self.started)}"
        where.mkdir()
        process = SpacegateProcess(self.plane, where, self.config)
        self.started.append(process)
        process.start(ready=ready)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


@pytest.fixture
def replicas(
    control_plane: ControlPlane, tmp_path: Path, proxy: FaultProxy, home: str
) -> Iterator[Replicas]:
    credentials = tmp_path / "harbor-admin"
    credentials.mkdir()
    made = Replicas(control_plane, tmp_path, config_text(proxy, home, credentials))
    yield made
    made.stop_all()


Admit = Callable[[SpacegateProcess, str], str]


@pytest.fixture
def admit(api_client: client.ApiClient, core: Api, tenant: str) -> Iterator[Admit]:
    """``admit(replica, image)``: a dry-run Pod create in the tenant namespace through the
    apiserver, with this test's webhooks pointing at ``replica``; "admitted" or the message."""
    name = f"sg-lkg-{uuid.uuid4().hex[:8]}"
    pointed: list[str] = []

    def create(replica: SpacegateProcess, image: str) -> str:
        if pointed != [replica.url]:
            values = {"config": {"bindings": {"source": "config"}}}
            configurations = chart_webhooks(replica.url, replica.ca_pem, values=values)
            for obj in configurations:
                obj["metadata"]["name"] = name
                for hook in obj["webhooks"]:
                    hook["name"] = hook["name"].replace(
                        ".spacegate.io", f".{name}.e2e.spacegate.io"
                    )
                    hook["namespaceSelector"]["matchLabels"] = {
                        "kubernetes.io/metadata.name": tenant
                    }
            apply_webhooks(api_client, configurations)
            pointed[:] = [replica.url]
        try:
            core.create_namespaced_pod(tenant, pod("app", image), dry_run="All")
        except ApiException as exc:
            return str(exc.body)
        return "admitted"

    yield create
    if pointed:
        delete_webhooks(api_client, name)


def image(proxy: FaultProxy, space: str) -> str:
    return f"{proxy.url.split('://', 1)[1]}/{space}/app:1.0"


# --------------------------------------------------------------------------- reading back


def secret(core: Api, home: str) -> Any:
    """The copy's Secret as read, None when there is none."""
    try:
        return core.read_namespaced_secret(SECRET_NAME, home)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def raw_copy(core: Api, home: str) -> bytes | None:
    found = secret(core, home)
    data = None if found is None else (found.data or {}).get(DATA_KEY)
    return None if data is None else base64.b64decode(data)


def copied_spaces(core: Api, home: str) -> dict[str, bool] | None:
    raw = raw_copy(core, home)
    copy = None if raw is None else decode(raw)
    entry = None if copy is None else copy.registries.get("harbor")
    return None if entry is None else dict(entry.spaces)


def readyz(replica: SpacegateProcess) -> httpx.Response:
    with replica.client() as http:
        return http.get("/readyz")


def serving_copy(replica: SpacegateProcess) -> float | None:
    return metric_samples(replica, COPIED).get(frozenset({("registry", "harbor")}))


def refreshes(replica: SpacegateProcess) -> float:
    name = "spacegate_refresh_duration_seconds_count"
    return metric_samples(replica, name).get(frozenset({("registry", "harbor")}), 0.0)


def refused(message: str) -> bool:
    return "denied the request" in message and ".e2e.spacegate.io" in message


# --------------------------------------------------------------------------- the tests


def test_the_leader_keeps_what_it_listed_in_a_compressed_secret_and_rewrites_it_only_on_change(
    replicas: Replicas, harbor: HarborFake, core: Api, home: str
) -> None:
    leader = replicas.start()

    assert eventually(lambda: copied_spaces(core, home), "the leader's copy") == SPACES
    written = secret(core, home)
    assert written.type == "Opaque"
    assert written.metadata.labels["spacegate.io/component"] == "last-known-good"
    raw = raw_copy(core, home)
    assert raw is not None and len(raw) <= MAX_COMPRESSED_BYTES
    assert zlib.decompress(raw).startswith(b"{")  # zlib-compressed JSON
    version = written.metadata.resource_version

    # Harbor is listed again every second; the same spaces are not written again.
    listed = refreshes(leader)
    eventually(lambda: refreshes(leader) >= listed + 3, "three more listings")
    assert secret(core, home).metadata.resource_version == version

    harbor.add_project("team-c", public=False)
    eventually(
        lambda: (copied_spaces(core, home) or {}).get("team-c") is False,
        "the new space in the copy",
    )


def test_a_replica_started_while_harbor_is_down_serves_from_the_copy_marked_stale(
    replicas: Replicas, proxy: FaultProxy, core: Api, home: str, admit: Admit
) -> None:
    first = replicas.start()
    eventually(lambda: copied_spaces(core, home), "the leader's copy")
    first.stop()
    proxy.set_mode("refuse")

    late = replicas.start(ready=STALE_READY)

    eventually(lambda: serving_copy(late) == 1, "the copy to stand in")
    answer = readyz(late)
    assert answer.status_code == 503
    assert "last-known-good copy" in answer.text
    assert admit(late, image(proxy, "team-a")) == "admitted"  # bound to workspace 101
    assert refused(admit(late, image(proxy, "team-b")))  # private, bound elsewhere
    assert copied_spaces(core, home) == SPACES  # a leader that has not listed keeps the copy

    proxy.set_mode("pass")

    eventually(lambda: readyz(late).status_code == 200, "its own listing")
    assert serving_copy(late) == 0
    assert admit(late, image(proxy, "team-a")) == "admitted"


def test_without_a_copy_a_replica_started_while_harbor_is_down_refuses_its_private_spaces(
    replicas: Replicas, proxy: FaultProxy, core: Api, home: str, admit: Admit
) -> None:
    proxy.set_mode("refuse")

    late = replicas.start(ready="/healthz")  # it never gets ready, even ignoring staleness

    assert secret(core, home) is None
    assert readyz(late).status_code == 503
    with late.client() as http:
        assert http.get(STALE_READY).status_code == 503
    assert serving_copy(late) in (None, 0)
    assert refused(admit(late, image(proxy, "team-a")))


def test_a_replica_that_lists_harbor_itself_never_prefers_the_copy_and_the_leader_corrects_it(
    replicas: Replicas, proxy: FaultProxy, core: Api, home: str, admit: Admit
) -> None:
    forged = Copy({"harbor": RegistryCopy("harbor", proxy.url, {**SPACES, "team-b": True})}, 1.0)
    core.create_namespaced_secret(
        home,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=SECRET_NAME),
            type="Opaque",
            data={DATA_KEY: base64.b64encode(encode(forged)).decode()},
        ),
    )

    replica = replicas.start()

    assert serving_copy(replica) == 0
    assert refused(admit(replica, image(proxy, "team-b")))  # private, as Harbor says
    eventually(lambda: copied_spaces(core, home) == SPACES, "the leader to rewrite the copy")
