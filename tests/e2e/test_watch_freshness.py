"""A replica whose watches broke does not admit on what it saw before (the real apiserver).

The attack the chaos benchmark found: a RegistrySpaceBinding deleted while a replica's watch
was broken (an apiserver restart), and a Pod admitted under it as soon as the apiserver called
the webhook again, before the replica's reconnect backoff had ended. Its neighbour: a
namespace relabelled to another workspace in the same gap keeps its old workspace's private
images. Here one ``spacegate serve`` talks to the real apiserver through a TCP proxy
(:class:`~tests.support.chaos.fault_proxy.FaultProxy`, its kubeconfig pointing at the proxy),
so its watches can be broken while the apiserver itself, and everyone else, goes on:

1. the proxy refuses and cuts every connection; the binding is deleted and the namespace
   relabelled through the apiserver (the replica sees neither);
2. meanwhile public images are admitted at once, however long the break, and an image that
   needs the broken state is refused with a retryable message within the wait budget;
3. the proxy passes again and a review is sent at once, long before the replica's backoff
   would have reconnected: it is decided on the current state (refused), not the old one.

Reviews are posted to the replica's ``/validate`` directly (the AdmissionReview the apiserver
would send), so the apiserver's own webhook calls are not part of what is measured.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml
from kubernetes import client

from tests.support.bindings import BINDINGS, binding, install_binding_crd
from tests.support.chaos.fault_proxy import FaultProxy
from tests.support.controlplane.plane import LOOPBACK, ControlPlane
from tests.support.namespaces import Namespaces
from tests.support.reviews import pod_review
from tests.support.scenario import CONFIG, PUBLIC, TEAM_A, TEAM_B, WS
from tests.support.service_accounts import PlaneAs
from tests.support.spacegate import SpacegateProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

# The config's bindings (team-a to 101, team-b to 102) and RegistrySpaceBinding objects.
FRESH_CONFIG = CONFIG.replace("  source: config\n", "  source: both\n")
# Long enough for the replica's reconnect backoff (0.5 s doubling, capped at 30 s) to grow
# past several seconds: the old behaviour then cannot reconnect before the review arrives.
BREAK = 12.0
BUDGET = 2.0  # webhook.admission.freshness.BUDGET


@dataclass
class Broken:
    plane: ControlPlane
    proxy: FaultProxy
    process: SpacegateProcess
    namespaces: Namespaces

    def review(self, namespace: str, image: str) -> tuple[dict[str, Any], float]:
        """spacegate's answer to a pod create's AdmissionReview, and how long it took."""
        body = pod_review(namespace, image)
        started = time.monotonic()
        with self.process.client() as http:
            response = http.post("/validate", json=body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()["response"]
        return answer, time.monotonic() - started

    def allowed(self, namespace: str, image: str) -> bool:
        return bool(self.review(namespace, image)[0]["allowed"])

    def send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        with self.plane.http_client() as http:
            return http.request(method, path, json=body, headers=headers)


def _kubeconfig_through(plane: ControlPlane, proxy: FaultProxy, path: Path) -> Path:
    """The admin kubeconfig with its server moved to the proxy (same IP: TLS still verifies)."""
    document = yaml.safe_load(plane.kubeconfig.read_text())
    for entry in document["clusters"]:
        entry["cluster"]["server"] = f"https://{LOOPBACK}:{proxy.port}"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def broken(
    control_plane: ControlPlane, api_client: client.ApiClient, tmp_path: Path
) -> Iterator[Broken]:
    install_binding_crd(control_plane)
    namespaces = Namespaces(api_client)
    proxy = FaultProxy((LOOPBACK, control_plane.apiserver_port)).start()
    kubeconfig = _kubeconfig_through(control_plane, proxy, tmp_path / "proxied.kubeconfig")
    process = SpacegateProcess(
        cast(ControlPlane, PlaneAs(control_plane, kubeconfig)), tmp_path, FRESH_CONFIG
    )
    setup = Broken(control_plane, proxy, process, namespaces)
    try:
        yield setup
    finally:
        process.stop()
        proxy.stop()
        namespaces.delete_all()


def test_a_binding_deleted_and_a_namespace_relabelled_while_the_watch_was_broken_admit_nothing(
    broken: Broken,
) -> None:
    workspace = f"fresh-{uuid.uuid4().hex[:8]}"
    name = f"fresh-{uuid.uuid4().hex[:8]}"
    created = broken.send("POST", BINDINGS, binding(name, [workspace], space="team-b"))
    assert created.status_code == 201, created.text
    bound = broken.namespaces.make({WS: workspace}, prefix="fresh")
    moved = broken.namespaces.make({WS: "101"}, prefix="fresh")
    broken.process.start()
    eventually(lambda: broken.allowed(bound, TEAM_B), "the binding object seen", 30)
    assert broken.allowed(moved, TEAM_A)

    broken.proxy.set_mode("refuse")  # the replica's watches break; the apiserver goes on
    cut = time.monotonic()
    deleted = broken.send("DELETE", f"{BINDINGS}/{name}")
    assert deleted.status_code == 200, deleted.text
    broken.namespaces.relabel(moved, {WS: "102"})

    wrong: list[str] = []  # every wrong answer, so one run shows them all
    # While broken: what needs no tenant state is admitted at once...
    public, took = broken.review(bound, PUBLIC)
    assert public["allowed"], public
    assert took < 1.0
    # ...and an allow resting on the broken state is refused for a retry, within the budget.
    stale, took = broken.review(bound, TEAM_B)
    if stale["allowed"]:
        wrong.append("during the break: admitted under the deleted binding")
    else:
        assert stale["status"]["code"] == 503, stale
        assert "retry" in stale["status"]["message"]
        assert "not current" in stale["status"]["message"]
        assert BUDGET - 0.1 <= took < BUDGET + 2.0
    if broken.allowed(moved, TEAM_A):
        wrong.append("during the break: admitted on the namespace's old workspace")

    time.sleep(max(0.0, BREAK - (time.monotonic() - cut)))
    public, took = broken.review(moved, PUBLIC)
    assert public["allowed"], "a long break locks out public images"
    assert took < 1.0

    broken.proxy.set_mode("pass")  # the apiserver is reachable again: review at once
    first, took = broken.review(bound, TEAM_B)
    if first["allowed"]:
        wrong.append("right after the connection came back: admitted under the deleted binding")
    else:
        assert first["status"]["code"] == 403, first  # decided on the current state
        assert took < BUDGET + 1.0
    neighbour, _ = broken.review(moved, TEAM_A)
    if neighbour["allowed"]:
        wrong.append("right after: admitted on the namespace's old workspace")
    else:
        assert "workspace 102" in neighbour["status"]["message"], neighbour
    assert not wrong, f"{wrong}\n{broken.process.tail(30)}"
    assert broken.allowed(moved, TEAM_B)  # its new workspace's space
    assert broken.allowed(bound, PUBLIC)
