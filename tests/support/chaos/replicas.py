"""Replicas of ``spacegate serve`` as a Deployment runs them, on fixed loopback ports.

Each :class:`Replica` is one pod: a ``spacegate serve`` process on its own port (kept across
restarts, like a pod's address behind a Service's endpoints), with the pod's name as its
leader-election identity (``POD_NAME``), spacegate's namespace (``POD_NAMESPACE``), the
release's ServiceAccount kubeconfig and one shared config file and certificate directory,
as every pod of a Deployment mounts the same ConfigMap and TLS Secret.

:class:`CertDir` lays certificates out the way the kubelet mounts a Secret: the files are
symlinks through ``..data`` to a timestamped directory, and a new pair is swapped in by
replacing the ``..data`` link atomically, which is what spacegate's reload watches for.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography import x509

from certs.builder import KeyPair, issue_serving_cert, new_ca
from tests.support.controlplane.plane import LOOPBACK
from tests.support.ports import free_port

__all__ = ["CertDir", "Replica"]

REPO = Path(__file__).resolve().parents[3]


@dataclass
class CertDir:
    """A Secret-like TLS directory (``tls.crt``, ``tls.key`` through ``..data``) and the CAs
    that sign what is in it."""

    path: Path
    cas: list[KeyPair] = field(default_factory=list)
    generation: int = 0

    @classmethod
    def create(cls, path: Path) -> CertDir:
        made = cls(path)
        path.mkdir(parents=True, exist_ok=True)
        made.cas.append(new_ca(common_name="spacegate chaos CA 0"))
        made.issue()
        return made

    @property
    def ca(self) -> KeyPair:
        """The CA the current serving certificate is signed by."""
        return self.cas[-1]

    def bundle(self, *cas: KeyPair) -> str:
        """A caBundle (PEM) of ``cas`` (default: the current CA)."""
        return "".join(ca.cert.decode() for ca in (cas or (self.ca,)))

    def new_ca(self) -> KeyPair:
        """A new CA (not used until :meth:`issue` signs with it)."""
        ca = new_ca(common_name=f"spacegate chaos CA {len(self.cas)}")
        self.cas.append(ca)
        return ca

    def issue(self) -> x509.Certificate:
        """A new serving certificate from the current CA, swapped in atomically."""
        leaf = issue_serving_cert(self.ca, dns_names=["localhost"], ip_addresses=[LOOPBACK])
        self.generation += 1
        stamp = self.path / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self.generation}"
        stamp.mkdir()
        (stamp / "tls.crt").write_bytes(leaf.cert)
        (stamp / "tls.key").write_bytes(leaf.key)
        (stamp / "tls.key").chmod(0o600)
        staged = self.path / "..data_tmp"
        staged.unlink(missing_ok=True)
        staged.symlink_to(stamp.name)
        staged.replace(self.path / "..data")
        for name in ("tls.crt", "tls.key"):
            link = self.path / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        return x509.load_pem_x509_certificate(leaf.cert)


class Replica:
    """One ``spacegate serve`` process (a pod), started and stopped as the faults say."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        *,
        config: Path,
        certs: CertDir,
        kubeconfig: Path,
        namespace: str,
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.config = config
        self.certs = certs
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process (a new pod of the same name); :meth:`wait_ready` waits for it."""
        self.starts += 1
        env = dict(
            os.environ,
            KUBECONFIG=str(self.kubeconfig),
            PYTHONPATH=str(REPO),
            POD_NAME=f"{self.name}-{self.starts}",
            POD_NAMESPACE=self.namespace,
        )
        env.pop("KUBERNETES_SERVICE_HOST", None)
        command = [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--config",
            str(self.config),
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--cert-dir",
            str(self.certs.path),
            "--selector-port",
            "0",
            "--metrics-auth",
            "off",
        ]
        with self.log.open("ab") as out:
            out.write(f"---- start {self.starts} at {time.time():.3f}\n".encode())
            self._process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def client(self, timeout: float = 3.0) -> httpx.Client:
        context = ssl.create_default_context(cadata=self.certs.bundle(*self.certs.cas))
        return httpx.Client(base_url=self.url, verify=context, timeout=timeout)

    def ready(self, *, staleness: bool = False) -> bool:
        """What the readiness probe sees (``/readyz?exclude=staleness``), or plain ``/readyz``."""
        if not self.running:
            return False
        path = "/readyz" if staleness else "/readyz?exclude=staleness"
        try:
            with self.client() as http:
                return http.get(path).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until the probe passes; fails with the log's tail when it does not."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self._process is not None and self._process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.tail()}")
            if self.ready():
                return time.monotonic() - began
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready within {timeout:.0f}s:\n{self.tail()}")

    def metrics(self) -> str:
        with self.client() as http:
            return http.get("/metrics").text

    def served_certificate(self) -> x509.Certificate | None:
        """The certificate a new TLS connection gets now (None when nothing answers)."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            import socket

            with (
                socket.create_connection((LOOPBACK, self.port), timeout=2) as raw,
                context.wrap_socket(raw) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
        except OSError:
            return None
        return None if der is None else x509.load_der_x509_certificate(der)

    def kill(self) -> None:
        """SIGKILL: a node failure or an OOM kill; nothing is released."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def terminate(self, timeout: float = 30.0) -> None:
        """SIGTERM (what the kubelet sends after preStop): requests in flight finish, the
        Lease is released; SIGKILL after ``timeout`` (terminationGracePeriodSeconds)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
