"""What the apiserver does when it cannot get an answer from spacegate, and when it can.

Each test runs its own spacegate behind its own copies of the chart's webhook configurations
(renamed, and called for the test's namespace only), so the shared ``spacegate`` and
``webhooks`` fixtures are never touched. That spacegate is strict about registries it does
not know (``unknownRegistry: deny``) while the shared one allows them, so a refusal of an
image from an unlisted registry can only come from the test's own webhook: it shows that
webhook was called and answered.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from certs.builder import CertBundle, KeyPair, issue_serving_cert, new_ca
from certs.files import write_bundle
from tests.support.controlplane.plane import LOOPBACK, ControlPlane
from tests.support.manifests import Api, pod
from tests.support.namespaces import create_namespace
from tests.support.procfs import tcp_sockets
from tests.support.scenario import CONFIG, PUBLIC, WS
from tests.support.spacegate import SpacegateProcess
from tests.support.waiting import eventually
from tests.support.webhooks import apply_webhooks, chart_webhooks, delete_webhooks

pytestmark = pytest.mark.e2e

STRICT = CONFIG.replace("unknownRegistry: allow", "unknownRegistry: deny")
UNLISTED = "registry.unlisted.example/app:1.0"
FAILED_CALL = "failed calling webhook"
# spacegate reloads its certificate files every 10 s (certs.reload.DEFAULT_WATCH_INTERVAL,
# not configurable from `spacegate serve`); a reload that races the file writes waits for the
# next poll.
RELOAD_WITHIN = 45.0

Apply = Callable[[list[dict[str, Any]]], None]


@pytest.fixture
def core(api_client: client.ApiClient) -> Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def namespace(api_client: client.ApiClient, core: Api) -> Iterator[str]:
    """A fresh namespace of workspace 101, deleted afterwards."""
    name = create_namespace(api_client, {WS: "101"})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def name() -> str:
    """The name of this test's webhook configurations."""
    return f"sg-e2e-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def own_webhooks(api_client: client.ApiClient) -> Iterator[Apply]:
    """Create or replace webhook configurations; whatever was applied is deleted afterwards."""
    applied: set[str] = set()

    def apply(configurations: list[dict[str, Any]]) -> None:
        applied.update(obj["metadata"]["name"] for obj in configurations)
        apply_webhooks(api_client, configurations)

    yield apply
    for each in sorted(applied):
        delete_webhooks(api_client, each)


@pytest.fixture
def strict_spacegate(control_plane: ControlPlane, tmp_path: Path) -> Iterator[SpacegateProcess]:
    process = SpacegateProcess(control_plane, tmp_path, STRICT)
    try:
        process.start()
        yield process
    finally:
        process.stop()


def webhooks_for(
    name: str, url: str, ca_pem: str, namespace: str, *, failure_policy: str = "Fail"
) -> list[dict[str, Any]]:
    """The chart's configurations, renamed to ``name`` and called only for ``namespace`` (for
    the scenario's config, whose bindings come from the config only: no binding entry)."""
    values = {"config": {"bindings": {"source": "config"}}}
    configurations = chart_webhooks(url, ca_pem, failure_policy=failure_policy, values=values)
    for obj in configurations:
        obj["metadata"]["name"] = name
        for hook in obj["webhooks"]:
            hook["name"] = hook["name"].replace(".spacegate.io", f".{name}.e2e.spacegate.io")
            hook["namespaceSelector"]["matchLabels"] = {"kubernetes.io/metadata.name": namespace}
    return configurations


def create(core: Api, namespace: str, image: str) -> str:
    """``admitted``, or the apiserver's message for a refused dry-run pod create."""
    try:
        core.create_namespaced_pod(namespace, pod("app", image), dry_run="All")
    except ApiException as exc:
        return str(exc.body)
    return "admitted"


def refused_by(name: str) -> str:
    return f'admission webhook \\"validate.{name}.e2e.spacegate.io\\" denied the request'


# --------------------------------------------------------------------------- failure policy


def test_while_spacegate_is_down_fail_rejects_pod_creates_and_ignore_admits_them(
    core: Api,
    namespace: str,
    name: str,
    own_webhooks: Apply,
    strict_spacegate: SpacegateProcess,
) -> None:
    own_webhooks(webhooks_for(name, strict_spacegate.url, strict_spacegate.ca_pem, namespace))
    eventually(
        lambda: refused_by(name) in create(core, namespace, UNLISTED),
        "the test's webhook to answer",
    )

    strict_spacegate.stop()

    message = create(core, namespace, PUBLIC)
    assert FAILED_CALL in message
    assert f".{name}.e2e.spacegate.io" in message
    assert "connection refused" in message

    own_webhooks(
        webhooks_for(
            name, strict_spacegate.url, strict_spacegate.ca_pem, namespace, failure_policy="Ignore"
        )
    )

    eventually(lambda: create(core, namespace, PUBLIC) == "admitted", "Ignore to take effect")
    # The price of Ignore: while spacegate is down, nothing is enforced.
    assert create(core, namespace, UNLISTED) == "admitted"


def test_a_ca_bundle_that_did_not_sign_spacegates_certificate_fails_every_call(
    core: Api,
    namespace: str,
    name: str,
    own_webhooks: Apply,
    strict_spacegate: SpacegateProcess,
) -> None:
    stranger = new_ca(common_name="not spacegate's CA").cert.decode()
    own_webhooks(webhooks_for(name, strict_spacegate.url, stranger, namespace))

    def refused() -> str | None:
        message = create(core, namespace, PUBLIC)
        return None if message == "admitted" else message

    message = eventually(refused, "the configuration with the wrong caBundle to take effect")

    assert FAILED_CALL in message
    assert "x509: certificate signed by unknown authority" in message

    own_webhooks(webhooks_for(name, strict_spacegate.url, strict_spacegate.ca_pem, namespace))

    eventually(lambda: create(core, namespace, PUBLIC) == "admitted", "the right caBundle")
    assert refused_by(name) in create(core, namespace, UNLISTED)


# --------------------------------------------------------------------------- rotation


@dataclass(frozen=True)
class Outcome:
    """One dry-run pod create made while the certificate was being rotated."""

    image: str
    status: int
    message: str
    at: float


def _served_serial(port: int, ca_file: Path) -> int:
    """The serial of the certificate spacegate presents to a new connection."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=LOOPBACK) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _apiserver_connections(control_plane: ControlPlane, port: int) -> set[int]:
    """Local ports of the apiserver's open connections to spacegate on ``port``."""
    pid = control_plane.pids()["kube-apiserver"]
    return {s.local[1] for s in tcp_sockets(pid) if s.remote == (LOOPBACK, port)}


class _Traffic:
    """Threads creating dry-run pods (a public image, then an unlisted one) until stopped."""

    def __init__(self, control_plane: ControlPlane, namespace: str) -> None:
        self._plane = control_plane
        self._namespace = namespace
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.outcomes: list[Outcome] = []

    def add_workers(self, count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=self._work, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _work(self) -> None:
        path = f"/api/v1/namespaces/{self._namespace}/pods"
        with self._plane.http_client() as http:
            while not self._stop.is_set():
                for image in (PUBLIC, UNLISTED):
                    try:
                        response = http.post(
                            path,
                            params={"dryRun": "All"},
                            json=pod(f"p-{uuid.uuid4().hex[:8]}", image),
                        )
                        status, message = response.status_code, response.text
                    except httpx.HTTPError as exc:  # recorded: the apiserver did not answer
                        status, message = 0, repr(exc)
                    outcome = Outcome(image, status, message, time.monotonic())
                    with self._lock:
                        self.outcomes.append(outcome)

    def since(self, moment: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.at > moment]


def test_rotating_spacegates_certificate_under_load_loses_no_pod_create(
    control_plane: ControlPlane,
    core: Api,
    namespace: str,
    name: str,
    own_webhooks: Apply,
    tmp_path: Path,
) -> None:
    """New certificate files from the same CA: spacegate serves them without a restart.

    Pods are created all along; every create is either admitted (the public image) or
    refused by spacegate (the unlisted registry), never failed for want of an answer.
    After the reload more clients join, so the apiserver opens new connections, which
    can only get the new certificate.
    """
    process = SpacegateProcess(control_plane, tmp_path, STRICT)
    ca = new_ca(common_name="spacegate e2e rotation CA")
    tls_dir = process.tls.cert.parent

    def issue() -> KeyPair:
        leaf = issue_serving_cert(ca, dns_names=["localhost"], ip_addresses=[LOOPBACK])
        write_bundle(tls_dir, CertBundle(ca.cert, ca.key, leaf.cert, leaf.key))
        return leaf

    first = x509.load_pem_x509_certificate(issue().cert).serial_number
    traffic = _Traffic(control_plane, namespace)
    try:
        process.start()
        own_webhooks(webhooks_for(name, process.url, ca.cert.decode(), namespace))
        eventually(
            lambda: refused_by(name) in create(core, namespace, UNLISTED),
            "the test's webhook to answer",
        )
        assert _served_serial(process.port, process.tls.ca_cert) == first

        traffic.add_workers(1)
        eventually(lambda: len(traffic.outcomes) >= 20, "pod creates before the rotation")
        second = x509.load_pem_x509_certificate(issue().cert).serial_number

        eventually(
            lambda: _served_serial(process.port, process.tls.ca_cert) == second,
            "spacegate to serve the new certificate",
            RELOAD_WITHIN,
        )
        reloaded = time.monotonic()
        before = _apiserver_connections(control_plane, process.port)
        traffic.add_workers(5)
        eventually(lambda: len(traffic.since(reloaded)) >= 200, "pod creates after the reload")
        after = _apiserver_connections(control_plane, process.port)
    finally:
        traffic.stop()
        process_alive = process.running
        process.stop()

    lost = [o for o in traffic.outcomes if FAILED_CALL in o.message]
    assert lost == [], f"{len(lost)} creates failed to reach spacegate: {lost[0].message}"
    wrong = [
        o
        for o in traffic.outcomes
        if (o.image == PUBLIC and o.status != 201)
        or (o.image == UNLISTED and (o.status != 403 or refused_by(name) not in o.message))
    ]
    assert wrong == [], f"{len(wrong)} creates answered wrongly, first: {wrong[0]}"
    assert process_alive, "spacegate restarted instead of reloading"
    # Connections opened after the reload could only get the new certificate.
    assert after - before, f"no new connection after the reload: {before} then {after}"
