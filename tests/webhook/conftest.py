"""Fixtures for the admission server: a real uvicorn over real TLS, and review builders.

The server runs in a background thread on a pre-bound loopback socket (free port), with a
test CA from ``trustme`` and the same ``build_server``/``create_app`` code as
``spacegate serve``. One server is shared by the session because a start costs a TLS
context and a thread; tests that need another policy swap the snapshot of its
``StaticState`` (the ``server`` fixture puts the demo snapshot back afterwards). Like
``spacegate serve``, it writes decision lines into a :class:`~webhook.admission.logs.LogSink`, here
one over an in-memory buffer that tests read with :meth:`RunningServer.decision_lines`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509

from certs.reload import ReloadingTLSContext
from policy.snapshot import Snapshot
from webhook.admission.app import AppSettings, create_app
from webhook.admission.connections import ConnectionLimits
from webhook.admission.logs import DECISION_LOGGER, LogSink
from webhook.admission.server import AdmissionServer, build_server
from webhook.settings import read_config
from webhook.state import SnapshotState, StaticState

from .admission.replies import InProcessClient

V1 = "admission.k8s.io/v1"
REPO_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- TLS material


@dataclass
class TLSDir:
    """A CA and the serving pair it issued, on disk where the server reads them."""

    ca: trustme.CA
    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def key(self) -> Path:
        return self.directory / "tls.key"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    def issue(self) -> int:
        """Write a fresh serving pair from the same CA; return its serial number."""
        leaf = self.ca.issue_cert("localhost", "127.0.0.1")
        key_tmp = self.key.with_suffix(".tmp")
        cert_tmp = self.cert.with_suffix(".tmp2")
        key_tmp.write_bytes(leaf.private_key_pem.bytes())
        cert_tmp.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key_tmp.replace(self.key)
        cert_tmp.replace(self.cert)
        return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def make_tls_dir(directory: Path) -> TLSDir:
    tls = TLSDir(trustme.CA(), directory)
    directory.mkdir(parents=True, exist_ok=True)
    tls.ca.cert_pem.write_to_path(str(tls.ca_file))
    tls.issue()
    return tls


# --------------------------------------------------------------------------- running server


@dataclass
class RunningServer:
    """A live admission server and what tests need to talk to it."""

    url: str
    port: int
    tls_dir: TLSDir
    tls: ReloadingTLSContext
    state: StaticState
    server: AdmissionServer
    log: io.BytesIO | None = None  # what the app's log sink wrote, if it has one

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, verify=self.tls_dir.client_context(), timeout=10.0, **kwargs
        )

    def serial(self) -> int:
        """The serial number of the certificate a *new* connection is served."""
        return served_serial(self.port, self.tls_dir)

    def decision_lines(self, uid: str, *, wait: bool = True) -> list[dict[str, Any]]:
        """The decision lines of review ``uid``, once there is at least one.

        The line is written after the reply is sent, so a client can see the reply a
        moment before the line exists; this waits up to 5 s for it (unless not ``wait``).
        """
        assert self.log is not None, "this server has no log sink"
        deadline = time.monotonic() + (5 if wait else 0)
        while True:
            lines = [json.loads(line) for line in self.log.getvalue().splitlines()]
            found = [e for e in lines if e["logger"] == DECISION_LOGGER and e["uid"] == uid]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.01)


def served_serial(port: int, tls_dir: TLSDir) -> int:
    """Connect afresh to ``port`` and return the served certificate's serial number."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        context = tls_dir.client_context()
        with context.wrap_socket(raw, server_hostname="localhost") as tls_sock:
            der = tls_sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def fixed_state(state: SnapshotState) -> AppSettings:
    @asynccontextmanager
    async def open_state() -> AsyncIterator[SnapshotState]:
        yield state

    return AppSettings(state=open_state)


@contextmanager
def run_server(
    settings: AppSettings,
    tls_dir: TLSDir,
    state: StaticState,
    *,
    log: io.BytesIO | None = None,
    limits: ConnectionLimits | None = None,
) -> Iterator[RunningServer]:
    """Start uvicorn in a thread on a free loopback port; stop it on exit.

    With ``log``, the app writes its decision lines there through a :class:`LogSink`
    (unbuffered: outside ``spacegate serve`` nothing runs the sink's flusher). ``limits``
    bounds its connections (shorter deadlines, a smaller cap) instead of the defaults.
    """
    if log is not None:
        settings = dataclasses.replace(settings, log_sink=LogSink(log))
    tls = ReloadingTLSContext(tls_dir.cert, tls_dir.key)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = build_server(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        tls=tls.context,
        graceful_shutdown=2,
        limits=limits,
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("admission server did not start")
        time.sleep(0.01)
    try:
        yield RunningServer(f"https://localhost:{port}", port, tls_dir, tls, state, server, log)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def demo_snapshot() -> Snapshot:
    """The embedded demo config (namespaces team-a-dev=101, team-b-dev=102, sandbox=none)."""
    return Snapshot.from_config(read_config(None))


@pytest.fixture(scope="session")
def shared_server(
    tmp_path_factory: pytest.TempPathFactory, demo_snapshot: Snapshot
) -> Iterator[RunningServer]:
    tls_dir = make_tls_dir(tmp_path_factory.mktemp("tls"))
    state = StaticState(demo_snapshot)
    with run_server(fixed_state(state), tls_dir, state, log=io.BytesIO()) as running:
        yield running


@pytest.fixture
def server(shared_server: RunningServer, demo_snapshot: Snapshot) -> Iterator[RunningServer]:
    """The shared server, reset to the demo snapshot after the test."""
    yield shared_server
    shared_server.state.replace(demo_snapshot)


@pytest.fixture(scope="session")
def session_client(shared_server: RunningServer) -> Iterator[httpx.Client]:
    with shared_server.client() as client:
        yield client


@pytest.fixture
def client(server: RunningServer, session_client: httpx.Client) -> httpx.Client:
    """A keep-alive HTTPS client trusting the test CA, bound to the demo-state server."""
    return session_client


@pytest.fixture(scope="session")
def session_app_client(shared_server: RunningServer) -> Iterator[InProcessClient]:
    client = InProcessClient(create_app(fixed_state(shared_server.state)), shared_server.state)
    yield client
    client.close()


@pytest.fixture
def app_client(server: RunningServer, session_app_client: InProcessClient) -> InProcessClient:
    """The demo-state app in process (its state is the shared server's, reset after each test)."""
    return session_app_client


# --------------------------------------------------------------------------- review builders


def pod(*images: str, name: str = "app", pull_secrets: list[Any] | None = None) -> dict[str, Any]:
    """A Pod object with one container per image (as kubectl would send it)."""
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
    }
    if pull_secrets is not None:
        spec["imagePullSecrets"] = pull_secrets
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def deployment(*images: str, name: str = "web") -> dict[str, Any]:
    """An apps/v1 Deployment whose template runs ``images``."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": pod(*images)["spec"],
            },
        },
    }


_GROUPS = {
    "Pod": ("", "v1", "pods"),
    "Deployment": ("apps", "v1", "deployments"),
    "CronJob": ("batch", "v1", "cronjobs"),
    "ConfigMap": ("", "v1", "configmaps"),
    "RegistrySpaceBinding": ("spacegate.io", "v1alpha1", "registryspacebindings"),
}


def review(
    obj: Mapping[str, Any] | None,
    *,
    namespace: str | None = "team-a-dev",
    operation: str = "CREATE",
    uid: str = "4b0c4b8e-1111-4c2a-9d1e-000000000001",
    kind: str | None = None,
    dry_run: bool = False,
    sub_resource: str | None = None,
    api_version: str = V1,
    old_object: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A wrapped AdmissionReview as the apiserver sends it for ``obj``."""
    kind = kind or (obj or {}).get("kind", "Pod")
    group, version, resource = _GROUPS.get(kind, ("", "v1", kind.lower() + "s"))
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": (obj or {}).get("metadata", {}).get("name", ""),
        "operation": operation,
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
        "object": obj,
        "oldObject": old_object,
        "dryRun": dry_run,
        "options": None,
    }
    if namespace is not None:
        request["namespace"] = namespace
    if sub_resource is not None:
        request["subResource"] = sub_resource
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}
