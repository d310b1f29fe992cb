"""The e2e control plane behaves like a small real cluster, and only on loopback.

Each test states one property the webhook tests will rely on: reachable and authenticated as
expected, controllers turning Deployments into ReplicaSets and Pods and garbage-collecting
them, data surviving an apiserver restart, and watches expiring (410) after compaction.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.controlplane import build
from tests.support.controlplane.plane import LOOPBACK, ControlPlane, ControlPlaneError
from tests.support.procfs import pids_using, tcp_sockets, wait_gone
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted afterwards (the namespace controller empties it)."""
    core = client.CoreV1Api(api_client)
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def _deployment(name: str, replicas: int) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="app", image="registry.invalid/app:1")]
                ),
            ),
        ),
    )


def _owned_by(obj: Any, owner: Any) -> bool:
    return any(ref.uid == owner.metadata.uid for ref in obj.metadata.owner_references or [])


def _replica_set_and_pods(
    api_client: client.ApiClient, namespace: str, name: str, replicas: int
) -> tuple[Any, list[Any]]:
    """Wait until the controllers made the Deployment's ReplicaSet and its Pods."""
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    deployment = apps.read_namespaced_deployment(name, namespace)

    def replica_set() -> Any:
        owned = [
            rs
            for rs in apps.list_namespaced_replica_set(namespace).items
            if _owned_by(rs, deployment)
        ]
        return owned[0] if owned else None

    rs = eventually(replica_set, f"a ReplicaSet owned by Deployment {name}")

    def pods() -> list[Any]:
        owned = [p for p in core.list_namespaced_pod(namespace).items if _owned_by(p, rs)]
        return owned if len(owned) == replicas else []

    return rs, eventually(pods, f"{replicas} Pods owned by ReplicaSet {rs.metadata.name}")


def _self(http: httpx.Client) -> dict[str, Any]:
    """Who the apiserver thinks the client is (SelfSubjectReview)."""
    response = http.post(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    response.raise_for_status()
    user: dict[str, Any] = response.json()["status"]["userInfo"]
    return user


def _watch(
    http: httpx.Client,
    path: str,
    resource_version: str,
    until: Callable[[dict[str, Any]], bool] = lambda event: True,
) -> list[dict[str, Any]]:
    """Events of a watch on ``path`` after ``resource_version``, up to the first ``until``."""
    params = {"watch": "1", "resourceVersion": resource_version, "timeoutSeconds": "10"}
    events: list[dict[str, Any]] = []
    with http.stream("GET", path, params=params) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line:
                events.append(json.loads(line))
                if until(events[-1]):
                    return events
    pytest.fail(f"the watch on {path} from {resource_version} ended early: {events}")


# --------------------------------------------------------------------------- reachability


def test_the_apiserver_answers_readyz_to_an_anonymous_client_that_trusts_only_the_test_ca(
    control_plane: ControlPlane,
) -> None:
    assert control_plane.server == f"https://127.0.0.1:{control_plane.apiserver_port}"
    with control_plane.http_client(anonymous=True) as http:
        response = http.get("/readyz")
    assert response.status_code == 200
    assert response.text == "ok"


def test_every_control_plane_socket_is_on_127_0_0_1_and_only_the_expected_ports_listen(
    control_plane: ControlPlane,
) -> None:
    pids = control_plane.pids()
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    listening: dict[str, set[int]] = {}
    for name, pid in pids.items():
        sockets = tcp_sockets(pid)
        for sock in sockets:
            assert sock.local[0] == LOOPBACK, f"{name} has a socket on {sock.local}"
            if not sock.listening:
                assert sock.remote[0] == LOOPBACK, f"{name} talks to {sock.remote}"
        listening[name] = {s.local[1] for s in sockets if s.listening}
        if name == "kube-controller-manager":
            # It must be talking to the apiserver, or this test would pass vacuously.
            assert any(s.remote == (LOOPBACK, control_plane.apiserver_port) for s in sockets)
    assert listening == {
        "etcd": {control_plane.etcd_port, control_plane.etcd_peer_port},
        "kube-apiserver": {control_plane.apiserver_port},
        "kube-controller-manager": set(),
    }


def test_the_running_binaries_are_the_pinned_kubernetes_and_etcd(
    control_plane: ControlPlane,
) -> None:
    pins = build.read_pins()
    with control_plane.http_client() as http:
        assert http.get("/version").json()["gitVersion"] == pins.kubernetes
    etcd_version = httpx.get(f"{control_plane.etcd_url}/version", timeout=10).json()
    assert f"v{etcd_version['etcdserver']}" == pins.etcd


def test_the_kubernetes_binaries_link_every_staging_module_at_the_pinned_tag(
    control_plane_binaries: Path,
) -> None:
    """``go version -m`` shows each ``k8s.io`` dependency and what it was replaced with."""
    pins = build.read_pins()
    staging_tag = "v0." + pins.kubernetes.removeprefix("v1.")
    go = build.find_go()
    info = subprocess.run(
        [str(go), "version", "-m", str(control_plane_binaries / "kube-apiserver")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Each replaced module is a "dep" line followed by "=>\t<module>\t<version>\t<sum>".
    replaced = [f for f in (line.split() for line in info.splitlines()) if f[:1] == ["=>"]]
    assert {"k8s.io/api", "k8s.io/apiserver", "k8s.io/client-go"} <= {r[1] for r in replaced}
    assert {r[2] for r in replaced} == {staging_tag}
    assert f"k8s.io/kubernetes\t{pins.kubernetes}\t" in info


def test_a_control_plane_that_cannot_start_says_why_and_leaves_nothing_behind(
    control_plane_binaries: Path,
) -> None:
    plane = ControlPlane(control_plane_binaries, extra_apiserver_args=["--no-such-flag"])
    with pytest.raises(ControlPlaneError) as caught:
        plane.start()
    message = str(caught.value)
    assert "kube-apiserver exited with code" in message
    assert "unknown flag: --no-such-flag" in message  # the log tail explains it
    assert wait_gone(pids_using(plane.workdir), timeout=10) == set()  # etcd was stopped too
    assert not plane.workdir.exists()


# --------------------------------------------------------------------------- identities


def test_the_admin_kubeconfig_is_a_cluster_admin_and_minted_users_are_held_to_rbac(
    control_plane: ControlPlane, api_client: client.ApiClient
) -> None:
    with control_plane.http_client() as admin:
        me = _self(admin)
    assert me["username"] == "admin"
    assert "system:masters" in me["groups"]
    client.CoreV1Api(api_client).list_namespace()  # the kubeconfig file works for the client

    alice = control_plane.mint_client_cert("alice", ["e2e-devs"])
    with control_plane.http_client(alice) as http:
        assert _self(http)["username"] == "alice"
        assert "e2e-devs" in _self(http)["groups"]
        assert http.get("/api/v1/namespaces").status_code == 403


# --------------------------------------------------------------------------- controllers


def test_a_deployment_gets_a_replicaset_and_pods_from_the_controller_manager(
    api_client: client.ApiClient, namespace: str
) -> None:
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, _deployment("web", 2))
    rs, pods = _replica_set_and_pods(api_client, namespace, "web", replicas=2)
    assert rs.spec.replicas == 2
    assert {p.spec.containers[0].image for p in pods} == {"registry.invalid/app:1"}
    # No scheduler or kubelet: the Pods exist but stay unscheduled.
    assert all(p.spec.node_name is None for p in pods)


def test_deleting_a_deployment_garbage_collects_its_replicaset_and_pods(
    api_client: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, _deployment("doomed", 1))
    rs, _ = _replica_set_and_pods(api_client, namespace, "doomed", replicas=1)

    apps.delete_namespaced_deployment("doomed", namespace)

    def replica_set_gone() -> bool:
        try:
            apps.read_namespaced_replica_set(rs.metadata.name, namespace)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    eventually(replica_set_gone, f"the garbage collector to delete {rs.metadata.name}")
    eventually(lambda: not core.list_namespaced_pod(namespace).items, "the Pods to be deleted")


def test_a_service_account_token_secret_gets_a_token_the_apiserver_accepts(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    """The token controller runs, as in a real cluster: what RBAC escalations through such
    Secrets need (tests/e2e/test_provisioning_rbac.py), tried for real."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="robot"))
    )
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="robot-token", annotations={"kubernetes.io/service-account.name": "robot"}
            ),
            type="kubernetes.io/service-account-token",
        ),
    )

    def token() -> str | None:
        data = core.read_namespaced_secret("robot-token", namespace).data or {}
        return base64.b64decode(data["token"]).decode() if "token" in data else None

    issued = eventually(token, "the token controller to fill in the token")
    with httpx.Client(
        base_url=control_plane.server,
        verify=ssl.create_default_context(cafile=str(control_plane.ca_cert)),
        headers={"Authorization": f"Bearer {issued}"},
    ) as http:
        assert _self(http)["username"] == f"system:serviceaccount:{namespace}:robot"


# --------------------------------------------------------------------------- restart and watch


def test_the_apiserver_restarts_on_the_same_address_with_its_data_and_controllers_intact(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    server, pid = control_plane.server, control_plane.pids()["kube-apiserver"]
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="kept"), data={"k": "v"}),
    )

    control_plane.restart_apiserver()

    assert control_plane.server == server
    assert control_plane.pids()["kube-apiserver"] != pid
    assert core.read_namespaced_config_map("kept", namespace).data == {"k": "v"}
    # The controller manager reconnects by itself.
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, _deployment("later", 1))
    _replica_set_and_pods(api_client, namespace, "later", replicas=1)


def test_a_watch_from_a_compacted_resource_version_gets_410_gone(
    control_plane: ControlPlane, api_client: client.ApiClient
) -> None:
    """The same watch succeeds before compaction and expires after, so 410 is compaction's.

    This relies on two apiserver flags chosen in ``plane.py``: ``--etcd-compaction-interval=0``
    (only the test compacts) and ``--watch-cache-sizes=namespaces#0`` (namespaces watches go
    to etcd). With the namespaces cache on, the watch after compaction was answered from the
    cache with ADDED events instead of 410 (it expired only after an apiserver restart).
    """
    core = client.CoreV1Api(api_client)
    names = [f"e2e-watch-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    created = [
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=n)))
        for n in names
    ]
    try:
        first = created[0].metadata
        assert first is not None and first.resource_version is not None
        old: str = first.resource_version
        with control_plane.http_client() as http:
            # Other tests' namespaces may still be finalizing, so skip to our next one.
            before = _watch(
                http,
                "/api/v1/namespaces",
                old,
                until=lambda e: e["object"]["metadata"].get("name") == names[1],
            )
            assert [e["type"] for e in before if e["type"] == "ERROR"] == []
            assert before[-1]["type"] == "ADDED"

            compacted = control_plane.compact_etcd()
            assert int(old) + 1 < compacted  # the watch would start at a compacted revision

            [after] = _watch(http, "/api/v1/namespaces", old)
        assert after["type"] == "ERROR"
        assert after["object"]["code"] == 410
        assert after["object"]["reason"] == "Expired"
    finally:
        for name in names:
            core.delete_namespace(name)
