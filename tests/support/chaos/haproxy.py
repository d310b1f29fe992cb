"""HAProxy in front of the replicas, as a Service with endpoints would be.

The apiserver dials one address; :class:`HAProxy` (Debian's ``haproxy``) listens there on
loopback in TCP mode and passes each connection, TLS untouched, to a replica that is up.
Which replicas are up follows the chart's readiness probe exactly: ``GET
/readyz?exclude=staleness`` over TLS (the certificate not verified, as the kubelet does not),
every 5 s (``periodSeconds``), answered within 3 s (``timeoutSeconds``), down after 3 failures
(``failureThreshold``), up after 1 success (``successThreshold``). Beside the probe it watches
live traffic as the kubelet watches a container: a connection refused (a process that
died) takes the replica out at once (``observe layer4``, ``error-limit 1``,
``on-error mark-down``), like a pod whose container exited, and such a connection is retried
on another replica (``retries 1``, ``option redispatch``) after HAProxy's turn-around time
(``timeout connect``, 500 ms). A request already sent to a replica that dies is lost with
its connection: that is what the apiserver sees from a Service too.

The runtime API (a Unix socket) stands in for the endpoints controller: :meth:`HAProxy.drain`
stops new connections to a replica (a pod being deleted leaves the endpoints while its open
connections finish), :meth:`HAProxy.ready` takes it back. Logs go to ``haproxy.log``.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.controlplane.plane import LOOPBACK
from tests.support.ports import free_port

__all__ = ["CHECK", "HAProxy", "haproxy_unavailable"]

BINARY = "haproxy"
BACKEND = "spacegate"
# The chart's readinessProbe (charts/spacegate/templates/deployment.yaml).
CHECK = {"path": "/readyz?exclude=staleness", "period": 5, "timeout": 3, "fall": 3, "rise": 1}


def haproxy_unavailable() -> str | None:
    """Why HAProxy cannot run here (None when it can)."""
    if shutil.which(BINARY) is None:
        return "haproxy is not installed (Debian package haproxy; `make system-deps`)"
    return None


def config_text(port: int, servers: Sequence[tuple[str, int]], socket_path: Path) -> str:
    lines = [
        "global",
        f"  stats socket {socket_path} mode 600 level admin",
        "  maxconn 4096",
        "defaults",
        "  mode tcp",
        "  timeout connect 500ms",
        "  timeout client 60s",
        "  timeout server 60s",
        f"  timeout check {CHECK['timeout']}s",
        "  retries 1",
        "  option redispatch 1",
        "frontend webhook",
        f"  bind {LOOPBACK}:{port}",
        f"  default_backend {BACKEND}",
        f"backend {BACKEND}",
        "  balance roundrobin",
        "  option httpchk",
        f"  http-check send meth GET uri {CHECK['path']} ver HTTP/1.1 hdr Host {LOOPBACK}",
        "  http-check expect status 200",
        (
            f"  default-server check check-ssl verify none inter {CHECK['period']}s "
            f"fall {CHECK['fall']} rise {CHECK['rise']} "
            "observe layer4 error-limit 1 on-error mark-down"
        ),
    ]
    lines += [f"  server {name} {LOOPBACK}:{server_port}" for name, server_port in servers]
    return "\n".join(lines) + "\n"


class HAProxy:
    """``haproxy`` on ``127.0.0.1:port`` in front of ``servers`` ((name, port) each)."""

    def __init__(self, workdir: Path, servers: Sequence[tuple[str, int]]) -> None:
        self.workdir = workdir
        self.servers = list(servers)
        self.port = free_port()
        self.socket_path = workdir / "haproxy.sock"
        self.config_path = workdir / "haproxy.cfg"
        self.log = workdir / "haproxy.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def start(self) -> HAProxy:
        self.config_path.write_text(config_text(self.port, self.servers, self.socket_path))
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                [BINARY, "-f", str(self.config_path), "-db"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                socket.create_connection((LOOPBACK, self.port), timeout=0.5).close()
                if self.socket_path.exists():
                    return self
            time.sleep(0.05)
        raise RuntimeError("haproxy did not start listening within 10 s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ runtime API

    def command(self, line: str) -> str:
        """One runtime API command; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def drain(self, server: str) -> None:
        """No new connections to ``server`` (the endpoints controller removing a pod)."""
        self.command(f"set server {BACKEND}/{server} state drain")

    def ready(self, server: str) -> None:
        """``server`` takes new connections again once its check passes."""
        self.command(f"set server {BACKEND}/{server} state ready")

    def sessions(self) -> dict[str, int]:
        """Each server's open connections now (``scur``): the apiserver keeps its webhook
        connections alive, so at a modest rate all its calls ride one or two of them, each
        bound to one replica, as through a Service's kube-proxy rules."""
        out: dict[str, int] = {}
        for line in self.command("show stat").splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == BACKEND and fields[1] != "BACKEND":
                out[fields[1]] = int(fields[4] or 0)
        return out

    def states(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it now (UP, DOWN, DRAIN, MAINT, ...)."""
        out: dict[str, str] = {}
        for line in self.command("show stat").splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == BACKEND and fields[1] not in ("BACKEND",):
                out[fields[1]] = fields[17]
        return out
