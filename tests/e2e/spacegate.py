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
from tests.support.controlplane.plane import LOOPBACK, ControlPlane

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
        self.tls = generate(
            "spacegate", "spacegate-system", workdir / "tls", ["localhost"], [LOOPBACK]
        )
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
        read = (
            api.read_validating_webhook_configuration
            if validating
            else api.read_mutating_webhook_configuration
        )
        create = (
            api.create_validating_webhook_configuration
            if validating
            else api.create_mutating_webhook_configuration
        )
        replace = (
            api.replace_validating_webhook_configuration
            if validating
            else api.replace_mutating_webhook_configuration
        )
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
    for delete in (
        api.delete_validating_webhook_configuration,
        api.delete_mutating_webhook_configuration,
    ):
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


# --------------------------------------------------------------------------- provisioning
# Helpers for the pull-secret provisioning tests (tests/e2e/test_provisioning*.py).


def pull_secret_logins(
    api_client: client.ApiClient, namespace: str, name: str = "registry-secret"
) -> dict[str, tuple[str, str]] | None:
    """host -> (username, password) of the ``dockerconfigjson`` Secret ``name`` in
    ``namespace``, read from each entry's ``auth`` field as the kubelet reads it; None when
    there is no such Secret. Fails when the Secret is not a well-formed pull secret."""
    import base64
    import json

    core: Api = client.CoreV1Api(api_client)
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    assert secret.type == "kubernetes.io/dockerconfigjson", secret.type
    document = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))
    logins: dict[str, tuple[str, str]] = {}
    for host, entry in document["auths"].items():
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        assert (entry.get("username"), entry.get("password")) == (user, password), host
        logins[host] = (user, password)
    return logins


def secret_versions(api_client: client.ApiClient, name: str) -> dict[str, str]:
    """namespace -> resourceVersion of every Secret called ``name`` in the cluster."""
    core: Api = client.CoreV1Api(api_client)
    listed = core.list_secret_for_all_namespaces(field_selector=f"metadata.name={name}")
    return {s.metadata.namespace: s.metadata.resource_version for s in listed.items}


def delete_namespaces(api_client: client.ApiClient, names: list[str]) -> None:
    """Start deleting ``names`` (the namespace controller finishes it); gone ones are fine."""
    core: Api = client.CoreV1Api(api_client)
    for name in names:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def kill_spacegate(process: SpacegateProcess) -> None:
    """SIGKILL the serving process, as a node failure would: nothing is released."""
    running, process._process = process._process, None
    if running is not None and running.poll() is None:
        running.kill()
        running.wait()


def spacegate_metric(process: SpacegateProcess, name: str) -> float | None:
    """The value of the unlabelled sample ``name`` on the process's ``/metrics``."""
    with process.client() as http:
        text = http.get("/metrics").text
    for line in text.splitlines():
        metric, _, value = line.partition(" ")
        if metric == name:
            return float(value)
    return None


class Namespaces:
    """Creates labelled namespaces for one test and deletes them all afterwards."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.made: list[str] = []

    def make(self, labels: Mapping[str, str] | None = None, prefix: str = "prov") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        client.CoreV1Api(self.api_client).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=dict(labels or {})))
        )
        self.made.append(name)
        return name

    def relabel(self, name: str, labels: Mapping[str, str | None]) -> None:
        """Merge-patch the namespace's labels (None removes one)."""
        core: Api = client.CoreV1Api(self.api_client)
        core.patch_namespace(name, {"metadata": {"labels": dict(labels)}})

    def delete_all(self) -> None:
        delete_namespaces(self.api_client, self.made)
        self.made.clear()


# --------------------------------------------------------------------------- audit
# Helpers for the background audit tests (tests/e2e/test_audit.py) and bench/audit.py.

POLICY_REPORTS = "/apis/wgpolicyk8s.io/v1alpha2"

# Where the kinds the audit tests apply live in the API: (prefix, plural, namespaced).
_KIND_PATHS: dict[str, tuple[str, str, bool]] = {
    "CustomResourceDefinition": (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
}


def chart_objects(
    values: Mapping[str, Any], *, release: str, namespace: str, kinds: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The chart's objects of ``kinds``, rendered like ``helm install`` of ``release`` into
    ``namespace``."""
    from tests.charts.chartlib import parse_manifests

    with helm.Chart.load(CHART_DIR) as chart:
        raw = chart.render(dict(values), name=release, namespace=namespace, is_install=True)
    objects, _ = parse_manifests(raw)
    return [dict(obj) for obj in objects if obj["kind"] in kinds]


def _object_path(obj: Mapping[str, Any], *, collection: bool = False) -> str:
    prefix, plural, namespaced = _KIND_PATHS[obj["kind"]]
    meta = obj["metadata"]
    where = (
        f"{prefix}/namespaces/{meta['namespace']}/{plural}"
        if namespaced
        else (f"{prefix}/{plural}")
    )
    return where if collection else f"{where}/{meta['name']}"


def apply_manifests(plane: ControlPlane, objects: list[dict[str, Any]]) -> None:
    """Create, or replace, each object as the admin (the apiserver validates each one)."""
    with plane.http_client() as http:
        for obj in objects:
            created = http.post(_object_path(obj, collection=True), json=obj)
            if created.status_code == 409:
                current = http.get(_object_path(obj))
                current.raise_for_status()
                version = current.json()["metadata"]["resourceVersion"]
                body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": version}}
                http.put(_object_path(obj), json=body).raise_for_status()
            else:
                assert created.status_code == 201, (obj["kind"], created.text)


def delete_manifests(plane: ControlPlane, objects: list[dict[str, Any]]) -> None:
    """Delete each object; ones already gone are fine."""
    with plane.http_client() as http:
        for obj in objects:
            response = http.delete(_object_path(obj))
            assert response.status_code in (200, 202, 404), (obj["kind"], response.text)


def install_policy_report_crd(plane: ControlPlane) -> dict[str, Any]:
    """The chart's PolicyReport CRD (``policyReports.installCRD``), applied and served."""
    (crd,) = chart_objects(
        {"policyReports": {"installCRD": True}},
        release="spacegate",
        namespace="spacegate-system",
        kinds=("CustomResourceDefinition",),
    )
    apply_manifests(plane, [crd])

    def served() -> bool:
        with plane.http_client() as http:
            stored = http.get(_object_path(crd)).json()
            conditions = {
                c["type"]: c["status"] for c in (stored.get("status") or {}).get("conditions") or []
            }
            discovery = http.get(POLICY_REPORTS)
        return conditions.get("Established") == "True" and discovery.status_code == 200

    eventually(served, "the PolicyReport CRD to be established and served")
    policy_reports(plane, "default")  # its storage has initialized
    return crd


def policy_reports(plane: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    """The PolicyReports of ``namespace``, by name.

    Right after the CRD is established (or the apiserver restarted) its storage answers 429
    "storage is (re)initializing" for a moment; that is waited out, anything else raises.
    """
    deadline = time.monotonic() + 15
    with plane.http_client() as http:
        while True:
            listed = http.get(f"{POLICY_REPORTS}/namespaces/{namespace}/policyreports")
            if listed.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    listed.raise_for_status()
    return {item["metadata"]["name"]: item for item in listed.json()["items"]}


def service_account_kubeconfig(plane: ControlPlane, namespace: str, name: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` (a TokenRequest
    token, 1 hour), as the chart's pod would."""
    import base64

    import yaml

    with plane.http_client() as http:
        answer = http.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )
    answer.raise_for_status()
    token = answer.json()["status"]["token"]
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {
                    "server": plane.server,
                    "certificate-authority-data": base64.b64encode(
                        plane.ca_cert.read_bytes()
                    ).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": name}}],
        "current-context": "e2e",
    }
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


class PlaneAs:
    """``plane`` with another kubeconfig: a :class:`SpacegateProcess` made with it talks to
    the control plane as that kubeconfig's identity instead of the admin."""

    def __init__(self, plane: ControlPlane, kubeconfig: Path) -> None:
        self._plane = plane
        self.kubeconfig = kubeconfig

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plane, name)


def metric_samples(process: SpacegateProcess, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample of ``name`` on the process's ``/metrics``, by its set of labels."""
    import re

    with process.client() as http:
        text = http.get("/metrics").text
    samples: dict[frozenset[tuple[str, str]], float] = {}
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        labels, _, value = line[len(name) :].rpartition(" ")
        pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)
        samples[frozenset(pairs)] = float(value)
    return samples
