"""A real etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, for tests.

Fakes cannot tell us how the apiserver really calls a webhook (who the user is when a
ReplicaSet creates a Pod, what a 410 on a watch looks like, what survives a restart), so the
e2e tests run the upstream binaries built by :mod:`tests.support.controlplane.build`.

Network rule: everything binds and dials 127.0.0.1 only (never ``localhost``, which may
resolve to ``::1``, and never ``0.0.0.0``):

- etcd listens for clients and peers on 127.0.0.1 free ports (no metrics listener);
- kube-apiserver gets ``--bind-address`` *and* ``--advertise-address`` 127.0.0.1; without the
  latter it derives an address from the default route and fails where there is none.
  ``--endpoint-reconciler-type=none`` stops it from writing 127.0.0.1 into the ``kubernetes``
  Endpoints, which validation rejects (loopback) and which it would otherwise retry forever;
- kube-controller-manager serves nothing (``--secure-port=0``, which also skips the delegated
  authn/authz set-up that would try in-cluster config) and dials only its kubeconfig's server.
  It runs the service-account token controller (always started when it has
  ``--service-account-private-key-file``, whatever ``--controllers`` says), signing with the
  key the apiserver verifies with, as in a real cluster: a ``kubernetes.io/service-account-token``
  Secret annotated for a ServiceAccount gets a working token, so RBAC escalations through
  such Secrets can be tried for real.

The apiserver flags are envtest's (controller-runtime ``pkg/internal/testing/controlplane``)
plus the ones above, ``--etcd-compaction-interval=0`` and ``--watch-cache-sizes=namespaces#0``.
Those two make "a watch from a compacted resourceVersion gets 410 Gone" deterministic:

- the apiserver's own compactor is off, so etcd is compacted only when a test calls
  :meth:`ControlPlane.compact_etcd` (otherwise every 5 minutes, at an unpredictable revision);
- the watch cache is off for namespaces only, so a namespaces watch goes straight to etcd and
  fails with etcd's ``ErrCompacted`` (410 ``Expired``) as soon as its revision is compacted.
  With the cache on, the apiserver answers old-RV watches from its in-memory window, which
  does not care about etcd compaction; ``--watch-cache=false`` would do the same for every
  resource but changes list/watch behaviour everywhere else, unlike a production cluster.

``--shutdown-watch-termination-grace-period=2s`` makes a graceful stop end open watches. At
its default (0) the apiserver stops listening at once but then waits for long-running
requests, such as kube-controller-manager's HTTP/2 watch streams, for up to a minute; a
:meth:`ControlPlane.restart_apiserver` took 15 s (our SIGKILL deadline) instead of about 1 s.

Process hygiene: each binary runs in its own session (so a terminal's Ctrl-C reaches only the
Python process, which then stops them in order) under ``setpriv --pdeathsig KILL`` when
available (so they die even if Python is SIGKILLed; the signal is tied to the *thread* that
started them, so start a ControlPlane from a long-lived thread such as the main one). ``stop``
also runs at interpreter exit. Each binary logs to ``<workdir>/<name>.log``; a failed start
raises :class:`ControlPlaneError` with the tail of the log that explains it.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx
import yaml

from tests.support.controlplane.build import (
    ETCD,
    KUBE_APISERVER,
    KUBE_CONTROLLER_MANAGER,
    ensure_binaries,
)
from tests.support.controlplane.pki import CertificateAuthority, KeyPair, service_account_keys

LOOPBACK = "127.0.0.1"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"

# What Deployments -> ReplicaSets -> Pods, garbage collection and namespace deletion need.
# serviceaccount-controller gives each namespace its ``default`` ServiceAccount, as in a real
# cluster, even though the ServiceAccount admission plugin (which would demand it) is off.
# clusterrole-aggregation-controller fills the built-in view/edit/admin roles from labelled
# ClusterRoles, as the chart's image-lister role relies on.
DEFAULT_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "namespace-controller",
    "statefulset-controller",
    "clusterrole-aggregation-controller",
)

# The kube-system ServiceAccount each controller gets with --use-service-account-credentials.
# kube-controller-manager has no serving port here, so "its controllers have started" is
# observed as "their ServiceAccounts exist".
CONTROLLER_SERVICE_ACCOUNTS = {
    "deployment-controller": "deployment-controller",
    "replicaset-controller": "replicaset-controller",
    "garbage-collector-controller": "generic-garbage-collector",
    "serviceaccount-controller": "service-account-controller",
    "namespace-controller": "namespace-controller",
    "statefulset-controller": "statefulset-controller",
    "clusterrole-aggregation-controller": "clusterrole-aggregation-controller",
}

ETCD_TIMEOUT = 30.0
APISERVER_TIMEOUT = 180.0  # generous: a cold start on 2 busy cores
CONTROLLERS_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start or misbehaved; the message has its log tail."""


@dataclass(frozen=True)
class ClientCertificate:
    """Files for a client identity the apiserver accepts (CN=user, O=groups)."""

    user: str
    groups: tuple[str, ...]
    cert: Path
    key: Path


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class _Process:
    """One binary in its own session, logging to a file, stoppable as a process group."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None

    def start(self) -> None:
        prefix: list[str] = []
        setpriv = shutil.which("setpriv")
        if setpriv:
            prefix = [setpriv, "--pdeathsig", "KILL", "--"]
        self._log_handle = self.log.open("ab")
        self._popen = subprocess.Popen(
            prefix + self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise ControlPlaneError(f"{self.name} is not running")
        return self._popen.pid

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def failure(self, waiting_for: str | None = None) -> ControlPlaneError:
        """An error naming the exit status, what we waited for, and the log's last lines."""
        status = "is running"
        if self._popen is not None and self._popen.poll() is not None:
            status = f"exited with code {self._popen.returncode}"
        during = f" while waiting for {waiting_for}" if waiting_for else ""
        return ControlPlaneError(
            f"{self.name} {status}{during}.\nLast lines of {self.log}:\n{_tail(self.log)}"
        )

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash); :meth:`stop` then only reaps it."""
        if self._popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signal.SIGKILL)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout``; safe to call twice."""
        popen, self._popen = self._popen, None
        if popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
            # Anything the binary forked into its group goes too (none do today).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


def _wait_until(process: _Process, what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check`` until true; fail early if the process dies, with its log tail."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if not process.running():
            raise process.failure(what)
        if check():
            return
        if time.monotonic() > deadline:
            error = process.failure(what)
            raise ControlPlaneError(f"timed out after {timeout:.0f}s: {error}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def kubeconfig_document(server: str, ca_pem: bytes, user: str, client: KeyPair) -> dict[str, Any]:
    """A kubeconfig with everything embedded, so the file alone is enough to connect."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "spacegate-e2e",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert_pem),
                    "client-key-data": b64(client.key_pem),
                },
            }
        ],
        "contexts": [
            {"name": "spacegate-e2e", "context": {"cluster": "spacegate-e2e", "user": user}}
        ],
        "current-context": "spacegate-e2e",
    }


class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager on loopback; use as a context manager.

    ``binaries`` is a directory with the three binaries (default: :func:`ensure_binaries`).
    ``extra_apiserver_args`` are appended to the apiserver's flags (later flags win).
    ``controllers`` is kube-controller-manager's ``--controllers`` list; an empty list does not
    start it. ``keep_workdir`` (default: ``$SPACEGATE_KEEP_CONTROLPLANE=1``) keeps the
    certificates, data and logs after :meth:`stop`. An instance starts once; make a new one
    for a fresh cluster.
    """

    def __init__(
        self,
        binaries: Path | None = None,
        *,
        extra_apiserver_args: Sequence[str] = (),
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        keep_workdir: bool | None = None,
    ) -> None:
        self._binaries = binaries
        self._extra_apiserver_args = tuple(extra_apiserver_args)
        self._controllers = tuple(controllers)
        self._keep = (
            os.environ.get("SPACEGATE_KEEP_CONTROLPLANE") == "1"
            if keep_workdir is None
            else keep_workdir
        )
        self._workdir: Path | None = None
        self._processes: dict[str, _Process] = {}
        self._serving_ca: CertificateAuthority | None = None
        self._client_ca: CertificateAuthority | None = None
        self._minted = itertools.count()
        self.etcd_port = 0
        self.etcd_peer_port = 0
        self.apiserver_port = 0
        self.timings: dict[str, float] = {}
        """Seconds each start-up phase took (``etcd``, ``kube-apiserver``, ...), for reports."""

    # ------------------------------------------------------------------ paths and addresses

    @property
    def workdir(self) -> Path:
        """The temporary directory with certificates, etcd data, kubeconfigs and logs."""
        if self._workdir is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._workdir

    @property
    def server(self) -> str:
        """The apiserver URL, ``https://127.0.0.1:<port>``."""
        return f"https://{LOOPBACK}:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        """etcd's client URL (plain HTTP on loopback; also serves the v3 JSON gateway)."""
        return f"http://{LOOPBACK}:{self.etcd_port}"

    @property
    def kubeconfig(self) -> Path:
        """An admin kubeconfig (CN=admin, O=system:masters) with everything embedded."""
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_cert(self) -> Path:
        """The CA that signed the apiserver's serving certificate (what clients trust)."""
        return self.workdir / "pki" / "serving-ca.crt"

    @property
    def client_ca_cert(self) -> Path:
        """The CA whose client certificates the apiserver accepts (``--client-ca-file``)."""
        return self.workdir / "pki" / "client-ca.crt"

    @property
    def admin_cert(self) -> Path:
        """The admin client certificate (CN=admin, O=system:masters)."""
        return self.workdir / "pki" / "admin.crt"

    @property
    def admin_key(self) -> Path:
        """The admin client key."""
        return self.workdir / "pki" / "admin.key"

    def log(self, name: str) -> Path:
        """The log file of ``etcd``, ``kube-apiserver`` or ``kube-controller-manager``."""
        return self.workdir / f"{name}.log"

    def pids(self) -> dict[str, int]:
        """Process ids of the running binaries, by name."""
        return {name: p.pid for name, p in self._processes.items() if p.running()}

    def dead_process(self) -> ControlPlaneError | None:
        """An error describing the first binary that has exited on its own, if any."""
        for process in self._processes.values():
            if not process.running():
                return process.failure()
        return None

    # ------------------------------------------------------------------ identities

    def mint_client_cert(self, user: str, groups: Sequence[str] = ()) -> ClientCertificate:
        """A new client certificate for ``user`` in ``groups``, signed by the client CA.

        RBAC decides what it may do; only ``system:masters`` bypasses RBAC.
        """
        if self._client_ca is None:
            raise ControlPlaneError("the control plane has not been started")
        pair = self._client_ca.issue(user, organizations=groups)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", user) + f"-{next(self._minted)}"
        directory = self.workdir / "pki" / "users"
        directory.mkdir(exist_ok=True)
        cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert.write_bytes(pair.cert_pem)
        _write_private(key, pair.key_pem)
        return ClientCertificate(user, tuple(groups), cert, key)

    def write_kubeconfig(self, path: Path, user: str, groups: Sequence[str] = ()) -> Path:
        """Write a kubeconfig for a freshly minted ``user``/``groups`` certificate to ``path``."""
        client = self.mint_client_cert(user, groups)
        pair = KeyPair(client.cert.read_bytes(), client.key.read_bytes())
        self._write_kubeconfig(path, user, pair)
        return path

    def ssl_context(self, client: ClientCertificate | None = None) -> ssl.SSLContext:
        """Trusts only the serving CA and presents ``client`` (the admin when ``None``)."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        cert, key = (client.cert, client.key) if client else (self.admin_cert, self.admin_key)
        context.load_cert_chain(cert, key)
        return context

    def http_client(
        self,
        client: ClientCertificate | None = None,
        *,
        anonymous: bool = False,
        timeout: float = 30,
    ) -> httpx.Client:
        """An httpx client for the apiserver: admin by default, ``client``, or anonymous."""
        context = (
            ssl.create_default_context(cafile=str(self.ca_cert))
            if anonymous
            else self.ssl_context(client)
        )
        return httpx.Client(base_url=self.server, verify=context, timeout=timeout)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Generate PKI, start etcd, the apiserver and the controller manager; wait for each."""
        if self._workdir is not None:
            raise ControlPlaneError("the control plane is already started")
        binaries = self._binaries or ensure_binaries()
        self._workdir = Path(tempfile.mkdtemp(prefix="spacegate-controlplane-"))
        atexit.register(self.stop)
        try:
            began = time.monotonic()
            self.etcd_port, self.etcd_peer_port, self.apiserver_port = _distinct_free_ports(3)
            self._write_pki()
            self._start_etcd(binaries / ETCD)
            self._start_apiserver(binaries / KUBE_APISERVER)
            if self._controllers:
                self._start_controller_manager(binaries / KUBE_CONTROLLER_MANAGER)
            self.timings["total"] = time.monotonic() - began
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the controller manager, the apiserver, then etcd; remove the workdir.

        Idempotent and safe after a failed start; also registered with :mod:`atexit`.
        """
        atexit.unregister(self.stop)
        for name in (KUBE_CONTROLLER_MANAGER, KUBE_APISERVER, ETCD):
            process = self._processes.pop(name, None)
            if process is not None:
                process.stop()
        if self._workdir is not None and not self._keep:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def restart_apiserver(self, *, kill: bool = False) -> None:
        """Stop the apiserver (SIGTERM: a graceful shutdown; SIGKILL with ``kill``) and start
        it again with the same flags, port and etcd.

        The controller manager keeps running and reconnects, as it would in a cluster.
        """
        process = self._processes.pop(KUBE_APISERVER)
        if kill:
            process.kill()
        process.stop()
        self._launch(KUBE_APISERVER, process.argv)
        self._wait_for_apiserver()

    def restart_etcd(self, *, kill: bool = False) -> None:
        """Stop etcd (SIGTERM, or SIGKILL with ``kill``) and start it again with the same
        flags, port and data; return once it is healthy. The apiserver keeps running and
        reconnects by itself, as it would after an etcd member restart in a cluster."""
        process = self._processes.pop(ETCD)
        if kill:
            process.kill()
        process.stop()
        self._launch(ETCD, process.argv)
        self._wait_for_etcd()

    def compact_etcd(self) -> int:
        """Compact etcd physically up to its current revision; return that revision.

        Uses etcd's v3 JSON gateway on the client URL (int64 fields are JSON strings there),
        so no etcdctl is needed. Afterwards any watch or read at an older resourceVersion
        that reaches etcd fails with "required revision has been compacted".
        """
        revision = self.etcd_revision()
        with httpx.Client(base_url=self.etcd_url, timeout=30) as client:
            response = client.post(
                "/v3/kv/compaction", json={"revision": str(revision), "physical": True}
            )
            response.raise_for_status()
        return revision

    def etcd_revision(self) -> int:
        """etcd's current revision (what Kubernetes calls the latest resourceVersion)."""
        with httpx.Client(base_url=self.etcd_url, timeout=30) as client:
            response = client.post(
                "/v3/kv/range",
                json={"key": base64.b64encode(b"\0").decode(), "count_only": True},
            )
            response.raise_for_status()
            return int(response.json()["header"]["revision"])

    # ------------------------------------------------------------------ internals

    def _write_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir()
        self._serving_ca = CertificateAuthority("spacegate-e2e-serving-ca")
        self._client_ca = CertificateAuthority("spacegate-e2e-client-ca")
        serving = self._serving_ca.issue(
            "kube-apiserver",
            dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
            ip_addresses=[LOOPBACK],
            server=True,
        )
        admin = self._client_ca.issue("admin", organizations=["system:masters"])
        sa = service_account_keys()
        self.ca_cert.write_bytes(self._serving_ca.cert_pem)
        self.client_ca_cert.write_bytes(self._client_ca.cert_pem)
        (pki / "apiserver.crt").write_bytes(serving.cert_pem)
        _write_private(pki / "apiserver.key", serving.key_pem)
        self.admin_cert.write_bytes(admin.cert_pem)
        _write_private(self.admin_key, admin.key_pem)
        (pki / "sa.pub").write_bytes(sa.cert_pem)
        _write_private(pki / "sa.key", sa.key_pem)
        self._write_kubeconfig(self.kubeconfig, "admin", admin)

    def _write_kubeconfig(self, path: Path, user: str, client: KeyPair) -> None:
        document = kubeconfig_document(self.server, self.ca_cert.read_bytes(), user, client)
        _write_private(path, yaml.safe_dump(document, sort_keys=False).encode())

    def _launch(self, name: str, argv: Sequence[str]) -> _Process:
        process = _Process(name, argv, self.log(name))
        self._processes[name] = process
        process.start()
        return process

    def _start_etcd(self, binary: Path) -> None:
        began = time.monotonic()
        client, peer = self.etcd_url, f"http://{LOOPBACK}:{self.etcd_peer_port}"
        self._launch(
            ETCD,
            [
                str(binary),
                "--name=e2e",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=e2e={peer}",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=268435456",
                "--log-level=warn",
            ],
        )
        self._wait_for_etcd()
        self.timings[ETCD] = time.monotonic() - began

    def _wait_for_etcd(self) -> None:
        process = self._processes[ETCD]
        client = self.etcd_url

        def healthy() -> bool:
            try:
                response = httpx.get(f"{client}/health", timeout=2)
            except httpx.HTTPError:
                return False
            return response.status_code == 200 and response.json().get("health") == "true"

        _wait_until(process, f"etcd /health on {client}", healthy, ETCD_TIMEOUT)

    def _start_apiserver(self, binary: Path) -> None:
        began = time.monotonic()
        pki = self.workdir / "pki"
        self._launch(
            KUBE_APISERVER,
            [
                str(binary),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={self.client_ca_cert}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                f"--service-account-issuer={self.server}/",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--endpoint-reconciler-type=none",
                "--etcd-compaction-interval=0",
                "--watch-cache-sizes=namespaces#0",
                "--shutdown-watch-termination-grace-period=2s",
                *self._extra_apiserver_args,
            ],
        )
        self._wait_for_apiserver()
        self.timings[KUBE_APISERVER] = time.monotonic() - began

    def _wait_for_apiserver(self) -> None:
        process = self._processes[KUBE_APISERVER]
        last: list[str] = []

        with self.http_client(timeout=5) as client:

            def ready() -> bool:
                try:
                    response = client.get("/readyz", params={"verbose": "1"})
                except httpx.HTTPError as exc:
                    last[:] = [repr(exc)]
                    return False
                last[:] = [response.text]
                return response.status_code == 200

            try:
                _wait_until(process, f"{self.server}/readyz", ready, APISERVER_TIMEOUT)
            except ControlPlaneError as exc:
                answer = last[-1] if last else "(none)"
                raise ControlPlaneError(f"{exc}\nLast /readyz answer:\n{answer}") from None

    def _start_controller_manager(self, binary: Path) -> None:
        began = time.monotonic()
        kcm = self._client_ca
        assert kcm is not None
        identity = kcm.issue("system:kube-controller-manager")
        kubeconfig = self.workdir / "kube-controller-manager.kubeconfig"
        self._write_kubeconfig(kubeconfig, "system:kube-controller-manager", identity)
        process = self._launch(
            KUBE_CONTROLLER_MANAGER,
            [
                str(binary),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--controllers={','.join(self._controllers)}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.workdir / 'pki' / 'sa.key'}",
                f"--root-ca-file={self.ca_cert}",
            ],
        )
        expected = {
            CONTROLLER_SERVICE_ACCOUNTS[c]
            for c in self._controllers
            if c in CONTROLLER_SERVICE_ACCOUNTS
        }
        with self.http_client(timeout=5) as client:

            def started() -> bool:
                try:
                    response = client.get("/api/v1/namespaces/kube-system/serviceaccounts")
                except httpx.HTTPError:
                    return False
                if response.status_code != 200:
                    return False
                names = {item["metadata"]["name"] for item in response.json()["items"]}
                return expected <= names

            _wait_until(
                process,
                f"the ServiceAccounts of controllers {sorted(expected)}",
                started,
                CONTROLLERS_TIMEOUT,
            )
        self.timings[KUBE_CONTROLLER_MANAGER] = time.monotonic() - began


def _distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def _write_private(path: Path, data: bytes) -> None:
    """Write a key (or a kubeconfig embedding one) readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
