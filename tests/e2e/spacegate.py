"""spacegate as the real kube-apiserver meets it: a local process behind the chart's webhooks.

:class:`SpacegateProcess` runs ``spacegate serve`` (live mode: the config file is watched and
namespaces are read from the control plane, as in a cluster) on 127.0.0.1 with a certificate
for 127.0.0.1, and :func:`register_webhooks` installs the webhook configurations *the Helm
chart renders* in out-of-cluster mode (``webhook.url``), so the apiserver calls the process
through exactly the rules, selectors and failure policies a cluster would get. Only loopback
is ever dialled: the configurations use ``clientConfig.url``, never a Service.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import helm_python as helm
import httpx
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from certs.files import generate
from tests.charts.chartlib import CHART_DIR, FULLNAME, render_chart
from tests.e2e.controlplane.plane import LOOPBACK, ControlPlane

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
WS = "workspace.ghippo.io/id"
MODE = "spacegate.io/mode"

PUBLIC = "harbor.demo.local/library/nginx:1.27"
TEAM_A = "harbor.demo.local/team-a/web:1.2"  # private, bound to workspace 101
TEAM_B = "harbor.demo.local/team-b/api:1.0"  # private, bound to workspace 102

CONFIG = """
workspaceLabel: workspace.ghippo.io/id
policy:
  mode: enforce
  unknownRegistry: allow
  unknownSpace: deny
  pullSecretName: registry-secret
  exemptNamespaces: [kube-system, spacegate-system]
  maxStaleness: 10m
registries:
  - name: harbor
    type: harbor
    url: https://harbor.demo.local
    spaces:
      - {name: library, public: true}
      - {name: team-a, public: false}
      - {name: team-b, public: false}
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
  - {registry: harbor, space: team-b, workspaces: ["102"]}
"""

# The kubernetes client's typed API wants model objects; the e2e tests send manifests as plain
# dicts, as kubectl does, which the client accepts at run time.
Api = Any

# Controllers and watches react within a second or two; allow for a loaded 2-core machine.
SETTLE_TIMEOUT = 60.0


def eventually(check: Callable[[], T | None], what: str, timeout: float = SETTLE_TIMEOUT) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class SpacegateProcess:
    """``spacegate serve --config FILE`` on 127.0.0.1, reading namespaces from ``plane``."""

    def __init__(self, plane: ControlPlane, workdir: Path, config: str = CONFIG) -> None:
        self.plane = plane
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(config)
        self.tls = generate("spacegate", "spacegate-system", workdir / "tls", ["localhost"],
                            [LOOPBACK])
        self.port = free_port()
        self.log = workdir / "spacegate.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def ca_pem(self) -> str:
        return self.tls.ca_cert.read_text()

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        return httpx.Client(base_url=self.url, verify=context, timeout=10)

    def start(self) -> None:
        """Start serving and wait until ``/readyz`` (the namespace list has arrived)."""
        env = dict(os.environ, KUBECONFIG=str(self.plane.kubeconfig), PYTHONPATH=str(REPO))
        env.pop("KUBERNETES_SERVICE_HOST", None)
        command = [
            sys.executable, "-m", "webhook", "serve", "--config", str(self.config_path),
            "--host", LOOPBACK, "--port", str(self.port),
            "--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key),
        ]
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        eventually(self._ready, "spacegate /readyz")

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(
                f"spacegate exited with {self._process.returncode}:\n{self.tail()}"
            )
        try:
            with self.client() as http:
                return http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def write_config(self, text: str) -> None:
        """Replace the config file atomically; the running server reloads it."""
        staged = self.config_path.with_suffix(".new")
        staged.write_text(text)
        staged.replace(self.config_path)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def chart_webhooks(
    url: str, ca_pem: str, *, failure_policy: str = "Fail", values: Mapping[str, Any] = {}
) -> list[dict[str, Any]]:
    """The chart's Validating/MutatingWebhookConfiguration in out-of-cluster mode for ``url``."""
    chart_values: dict[str, Any] = {
        "webhook": {
            "url": url,
            "timeoutSeconds": 5,
            "validating": {"failurePolicy": failure_policy},
            "mutating": {"failurePolicy": failure_policy},
        },
        "certificates": {"mode": "secret", "secret": {"name": "spacegate-tls", "caBundle": ca_pem}},
        **values,
    }
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = render_chart(chart, chart_values)
    kinds = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
    return [dict(obj) for obj in rendered.objects if obj["kind"] in kinds]


def apply_webhooks(api_client: client.ApiClient, configurations: list[dict[str, Any]]) -> None:
    """Create or replace webhook configurations (the apiserver validates them as it would)."""
    api: Api = client.AdmissionregistrationV1Api(api_client)
    for obj in configurations:
        name = obj["metadata"]["name"]
        validating = obj["kind"] == "ValidatingWebhookConfiguration"
        read = (api.read_validating_webhook_configuration if validating
                else api.read_mutating_webhook_configuration)
        create = (api.create_validating_webhook_configuration if validating
                  else api.create_mutating_webhook_configuration)
        replace = (api.replace_validating_webhook_configuration if validating
                   else api.replace_mutating_webhook_configuration)
        try:
            current = read(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            create(obj)
            continue
        version = current.metadata.resource_version
        replace(name, {**obj, "metadata": {**obj["metadata"], "resourceVersion": version}})


def delete_webhooks(api_client: client.ApiClient) -> None:
    api: Api = client.AdmissionregistrationV1Api(api_client)
    for delete in (api.delete_validating_webhook_configuration,
                   api.delete_mutating_webhook_configuration):
        try:
            delete(FULLNAME)
        except ApiException as exc:
            if exc.status != 404:
                raise


def pod(name: str, *images: str, pull_secrets: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    }
    if pull_secrets is not None:
        spec["imagePullSecrets"] = [{"name": n} for n in pull_secrets]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def create_namespace(api_client: client.ApiClient, labels: Mapping[str, str]) -> str:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api_client).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=dict(labels)))
    )
    return name


def denial(call: Callable[[], object]) -> str:
    """The apiserver's message for a refused request; fails when the request passes."""
    try:
        call()
    except ApiException as exc:
        return str(exc.body)
    raise AssertionError("the request was admitted")


def wait_until_enforced(api_client: client.ApiClient, namespace: str) -> None:
    """Send dry-run marker Pods until spacegate answers them (the configuration is live)."""
    core: Api = client.CoreV1Api(api_client)

    def enforced() -> bool:
        try:
            core.create_namespaced_pod(namespace, pod("marker", TEAM_B), dry_run="All")
        except ApiException as exc:
            return "spacegate" in str(exc.body) or "validate.spacegate.io" in str(exc.body)
        return False

    eventually(enforced, "the webhook configuration to take effect")


@contextmanager
def running_spacegate(plane: ControlPlane, workdir: Path) -> Iterator[SpacegateProcess]:
    process = SpacegateProcess(plane, workdir)
    process.start()
    try:
        yield process
    finally:
        process.stop()
