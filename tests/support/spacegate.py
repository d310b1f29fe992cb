"""``spacegate serve`` as the real kube-apiserver meets it: a local process on 127.0.0.1.

:class:`SpacegateProcess` runs ``python -m webhook serve`` in live mode (the config file is
watched and namespaces are read from the control plane, as in a cluster) with a certificate
for 127.0.0.1, so the apiserver can call it through ``clientConfig.url`` webhook
configurations (:mod:`tests.support.webhooks`) and never through a Service.
"""

from __future__ import annotations

import functools
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from certs.files import generate
from tests.support.controlplane.plane import LOOPBACK, ControlPlane
from tests.support.ports import free_port
from tests.support.scenario import CONFIG
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[2]


class SpacegateProcess:
    """``spacegate serve --config FILE`` on 127.0.0.1, reading namespaces from ``plane``.

    ``plane`` only lends its kubeconfig: a :class:`~tests.support.service_accounts.PlaneAs`
    makes the process talk to the apiserver as another identity.
    """

    def __init__(
        self,
        plane: ControlPlane,
        workdir: Path,
        config: str = CONFIG,
        *,
        selector: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.plane = plane
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(config)
        self.tls = generate(
            "spacegate", "spacegate-system", workdir / "tls", ["localhost"], [LOOPBACK]
        )
        self.port = free_port()
        # The image selector's port when asked for; off otherwise (its default, 8444 in live
        # mode with a Kubernetes API, would collide between processes).
        self.selector_port = free_port() if selector else 0
        self.extra_args = extra_args
        self.log = workdir / "spacegate.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def selector_url(self) -> str:
        return f"https://{LOOPBACK}:{self.selector_port}"

    def selector_client(self) -> httpx.Client:
        """An HTTPS client for the selector listener that trusts only the process's CA."""
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        return httpx.Client(base_url=self.selector_url, verify=context, timeout=30)

    @property
    def ca_pem(self) -> str:
        return self.tls.ca_cert.read_text()

    @property
    def pid(self) -> int:
        """The serving process's id (it must have been started)."""
        assert self._process is not None, "spacegate is not running"
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited (or been stopped) since."""
        return self._process is not None and self._process.poll() is None

    @functools.cached_property
    def metrics_token(self) -> str:
        """A token allowed to read ``/metrics`` (``tests.support.access``)."""
        from tests.support.access import metrics_reader_token

        return metrics_reader_token(self.plane)

    def client(self) -> httpx.Client:
        """An HTTPS client for the process that trusts only its CA."""
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        return httpx.Client(base_url=self.url, verify=context, timeout=10)

    def start(self, *, ready: str = "/readyz") -> None:
        """Start serving and wait until ``ready`` answers 200 (``/readyz``: the namespace list
        has arrived; ``/readyz?exclude=staleness`` for one expected to serve stale data)."""
        env = dict(os.environ, KUBECONFIG=str(self.plane.kubeconfig), PYTHONPATH=str(REPO))
        env.pop("KUBERNETES_SERVICE_HOST", None)
        command = [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--config",
            str(self.config_path),
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--tls-cert",
            str(self.tls.cert),
            "--tls-key",
            str(self.tls.key),
            "--selector-port",
            str(self.selector_port),
            *self.extra_args,
        ]
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        eventually(functools.partial(self._ready, ready), f"spacegate {ready}")

    def _ready(self, path: str = "/readyz") -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(
                f"spacegate exited with {self._process.returncode}:\n{self.tail()}"
            )
        try:
            with self.client() as http:
                return http.get(path).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown: the Lease is released), SIGKILL after 30 s."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL the process, as a node failure would: nothing is released."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def write_config(self, text: str) -> None:
        """Replace the config file atomically; the running server reloads it."""
        staged = self.config_path.with_suffix(".new")
        staged.write_text(text)
        staged.replace(self.config_path)

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the process's log, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_spacegate(plane: ControlPlane, workdir: Path) -> Iterator[SpacegateProcess]:
    """A started :class:`SpacegateProcess` with the default config, stopped afterwards."""
    process = SpacegateProcess(plane, workdir)
    process.start()
    try:
        yield process
    finally:
        process.stop()
