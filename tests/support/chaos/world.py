"""The world the chaos run happens in, and the verdict it expects for every create.

:class:`World` sets up, on a running control plane, what a cluster with spacegate installed
for high availability has:

- the Harbor fake (``library`` public, ``team-a`` and ``team-b`` private) and the real
  Docker Registry (one public space, ``tools``), each behind a :class:`FaultProxy`: the
  config names the proxies, so a fault there is what spacegate sees of that registry;
- three replicas of ``spacegate serve`` (:class:`Replica`: live mode, the leader's work on —
  the Lease, provisioning with the namespace guard, the background audit writing
  PolicyReports; bindings from the config and from RegistrySpaceBinding objects) sharing one
  config file and one Secret-like certificate directory;
- HAProxy in front of them, and the chart's rendered webhook configurations (out-of-cluster
  mode, ``webhook.url`` = HAProxy's frontend on 127.0.0.1, ``failurePolicy: Fail`` on both
  admission webhooks, ``timeoutSeconds: 5``);
- namespaces of workspace 101 (``a``, ``move`` — the one a relabel moves to 102 and back —
  and ``foreign``, whose ``registry-secret`` is someone else's), of 102 (``b``) and of none
  (``none``), and one standing Pod in ``a``, ``move`` and ``b`` for the audit to report on (created
before the webhooks: they are allowed ones).

The replicas talk to the apiserver as the admin (not as the chart's ServiceAccount: the
chart's RBAC has e2e tests of its own, and here it would only add another way to fail).

:class:`Truth` is the oracle, written from the rules in README.md and not from spacegate's
code: the verdict and the pull-secret patch an image must get in a namespace, given the
namespaces' workspaces and the bindings at that moment. Every change of the world
(:meth:`World.relabel`, :meth:`World.bind`) is recorded as a :class:`Change`: from its write
until :data:`SETTLE` seconds after it, either verdict is acceptable for the namespaces and
spaces it touches, and only for those.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from tests.fakes.registry import RealRegistry
from tests.support.bindings import BINDINGS, binding, install_binding_crd
from tests.support.chaos.fault_proxy import FaultProxy
from tests.support.chaos.haproxy import HAProxy
from tests.support.chaos.replicas import CertDir, Replica
from tests.support.controlplane.plane import LOOPBACK, ControlPlane
from tests.support.manifests import pod
from tests.support.policy_reports import install_policy_report_crd
from tests.support.waiting import eventually
from tests.support.webhooks import apply_webhooks, chart_webhooks

__all__ = ["HARBOR_HOST", "HOME", "SETTLE", "Change", "Expected", "Truth", "World"]

WS = "workspace.ghippo.io/id"
HOME = "spacegate-system"
HARBOR_HOST = "harbor.chaos.local"
PULL_SECRET = "registry-secret"
LEASE = "spacegate-provisioner"
SETTLE = 5.0
"""Seconds after a world change during which either verdict is acceptable where it applies:
the replicas see a namespace relabel or a binding object through their watches, well under a
second on a quiet loopback cluster; the margin covers a watch re-established after an
apiserver restart."""

PUBLIC_SPACES = frozenset({"library"})
PRIVATE_SPACES = ("team-a", "team-b")
CONFIG_BINDINGS = {"team-a": frozenset({"101"}), "team-b": frozenset({"102"})}
NAMESPACES = {"a": "101", "move": "101", "foreign": "101", "b": "102", "none": None}
STANDING = {"a": "team-a", "move": "team-a", "b": "team-b"}
"""namespace -> the private space of the Pod standing there for the audit to report on."""


@dataclass(frozen=True)
class Expected:
    """What the apiserver must answer: admitted or not, and patched with the pull secret."""

    allowed: bool
    patched: bool


@dataclass(frozen=True)
class Image:
    """One image the load uses: its reference, registry and space."""

    ref: str
    registry: str  # "harbor" or "platform"
    space: str


@dataclass
class Change:
    """A change of the world: from ``began`` until ``SETTLE`` s after ``ended`` either verdict
    is acceptable for ``namespaces`` (by key) and ``spaces``."""

    what: str
    began: float
    ended: float = float("inf")
    namespaces: frozenset[str] = frozenset()
    spaces: frozenset[str] = frozenset()

    def covers(self, began: float, ended: float, namespace: str, image: Image) -> bool:
        if ended < self.began or began > self.ended + SETTLE:
            return False
        return namespace in self.namespaces or (
            image.registry == "harbor" and image.space in self.spaces
        )


@dataclass
class Truth:
    """The namespaces' workspaces and the bindings now (by namespace key, not name)."""

    workspaces: dict[str, str | None] = field(default_factory=lambda: dict(NAMESPACES))
    extra_bindings: dict[str, frozenset[str]] = field(default_factory=dict)

    def bound(self, space: str) -> frozenset[str]:
        return CONFIG_BINDINGS.get(space, frozenset()) | self.extra_bindings.get(space, frozenset())

    def expect(self, namespace: str, image: Image, kind: str) -> Expected:
        """The README's rules: a platform Docker Registry is all public; a public Harbor space
        is usable everywhere, a private one by namespaces of the workspaces bound to it (with
        the pull secret added on Pod CREATE); a space Harbor does not have is refused
        (``unknownSpace: deny``)."""
        if image.registry == "platform" or image.space in PUBLIC_SPACES:
            return Expected(allowed=True, patched=False)
        if image.space not in PRIVATE_SPACES:
            return Expected(allowed=False, patched=False)
        workspace = self.workspaces[namespace]
        allowed = workspace is not None and workspace in self.bound(image.space)
        return Expected(allowed=allowed, patched=allowed and kind == "Pod")

    def needs_secret(self, namespace: str) -> frozenset[str]:
        """The private spaces the namespace's pull credential must reach (empty: no Secret)."""
        workspace = self.workspaces[namespace]
        if workspace is None:
            return frozenset()
        return frozenset(s for s in PRIVATE_SPACES if workspace in self.bound(s))


def config_text(
    harbor_url: str,
    registry_url: str,
    credentials: Path,
    registry_credentials: Path,
    *,
    max_staleness: float,
    audit_interval: float,
) -> str:
    return f"""\
workspaceLabel: {WS}
policy:
  mode: enforce
  unknownRegistry: allow
  unknownSpace: deny
  pullSecretName: {PULL_SECRET}
  exemptNamespaces: [kube-system, {HOME}]
  maxStaleness: {max_staleness:g}s
  namespaceGuard: {{enabled: true}}
registries:
  - name: harbor
    type: harbor
    url: {harbor_url}
    hosts: [{HARBOR_HOST}]
    credentials: {{usernameFile: {credentials / "username"}, passwordFile: {credentials / "password"}}}
    refreshInterval: 2s
  - name: platform
    type: docker-registry
    url: {registry_url}
    credentials: {{usernameFile: {registry_credentials / "username"}, passwordFile: {registry_credentials / "password"}}}
    refreshInterval: 2s
bindings:
  source: both
  items:
  - {{registry: harbor, space: team-a, workspaces: ["101"]}}
  - {{registry: harbor, space: team-b, workspaces: ["102"]}}
pullSecrets:
  provision: true
  credentialsNamespace: {HOME}
audit:
  enabled: true
  reports: wgpolicyk8s
  interval: {audit_interval:g}s
"""


CHART_VALUES: dict[str, Any] = {
    "config": {
        "bindings": {"source": "both"},
        "pullSecrets": {"provision": True},
        "policy": {"namespaceGuard": {"enabled": True}},
        "audit": {"enabled": True},
    }
}


class World:
    """The chaos run's cluster on ``plane`` (see the module doc); a context manager."""

    def __init__(
        self,
        plane: ControlPlane,
        workdir: Path,
        *,
        replicas: int = 3,
        max_staleness: float = 10.0,
        audit_interval: float = 60.0,
    ) -> None:
        self.plane = plane
        self.workdir = workdir
        self.max_staleness = max_staleness
        self.audit_interval = audit_interval
        self.truth = Truth()
        self.changes: list[Change] = []
        self.lock = threading.Lock()
        self.harbor = HarborFake()
        self.registry = RealRegistry(workdir / "registry")
        self.harbor_proxy: FaultProxy | None = None
        self.registry_proxy: FaultProxy | None = None
        self.certs = CertDir.create(workdir / "tls")
        self.replicas = [
            Replica(
                f"spacegate-{i}",
                workdir,
                config=workdir / "config.yaml",
                certs=self.certs,
                kubeconfig=plane.kubeconfig,
                namespace=HOME,
            )
            for i in range(replicas)
        ]
        self.haproxy = HAProxy(workdir, [(r.name, r.port) for r in self.replicas])
        self.names: dict[str, str] = {}  # namespace key -> name
        self.standing: dict[str, str] = {}  # namespace key -> the standing Pod's uid
        self.foreign_version = ""
        self.images: dict[str, Image] = {}

    # ------------------------------------------------------------------ set-up

    def __enter__(self) -> World:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> World:
        self.harbor.start()
        for space in ("library", *PRIVATE_SPACES):
            self.harbor.add_project(space, public=space in PUBLIC_SPACES)
        self.registry.workdir.mkdir(parents=True, exist_ok=True)
        self.registry.start()
        self.registry.push_image("tools/busybox", "1")
        self.harbor_proxy = FaultProxy(_address(self.harbor.url)).start()
        self.registry_proxy = FaultProxy(_address(self.registry.url)).start()
        self.images = {
            "public": Image(f"{HARBOR_HOST}/library/nginx:1", "harbor", "library"),
            "team-a": Image(f"{HARBOR_HOST}/team-a/web:1", "harbor", "team-a"),
            "team-b": Image(f"{HARBOR_HOST}/team-b/api:1", "harbor", "team-b"),
            "unknown": Image(f"{HARBOR_HOST}/ghost/x:1", "harbor", "ghost"),
            "platform": Image(
                f"{LOOPBACK}:{self.registry_proxy.port}/tools/busybox:1", "platform", "tools"
            ),
        }
        self._write_config()
        self._prepare_cluster()
        # Before the replicas: the first audit pass of the first leader reports on them (a
        # Pod created later waits for the audit's interval).
        self._standing_pods()
        for replica in self.replicas:
            replica.start()
        for replica in self.replicas:
            replica.wait_ready(120)
        self.haproxy.start()
        self.wait_all_up(30)
        self.apply_webhooks(self.certs.bundle())
        self._wait_enforced()
        return self

    def stop(self) -> None:
        for replica in self.replicas:
            replica.kill()
        self.haproxy.stop()
        for proxy in (self.harbor_proxy, self.registry_proxy):
            if proxy is not None:
                proxy.stop()
        self.registry.stop()
        self.harbor.stop()

    def _write_config(self) -> None:
        harbor_creds = self.workdir / "harbor-credentials"
        registry_creds = self.workdir / "registry-credentials"
        for path, user, password in (
            (harbor_creds, ADMIN_USER, ADMIN_PASSWORD),
            (registry_creds, self.registry.username, self.registry.password),
        ):
            path.mkdir(exist_ok=True)
            (path / "username").write_text(user + "\n")
            (path / "password").write_text(password + "\n")
        assert self.harbor_proxy is not None and self.registry_proxy is not None
        (self.workdir / "config.yaml").write_text(
            config_text(
                self.harbor_proxy.url,
                self.registry_proxy.url,
                harbor_creds,
                registry_creds,
                max_staleness=self.max_staleness,
                audit_interval=self.audit_interval,
            )
        )

    def _prepare_cluster(self) -> None:
        install_binding_crd(self.plane)
        install_policy_report_crd(self.plane)
        with self.plane.http_client() as http:
            _create(http, "/api/v1/namespaces", {"metadata": {"name": HOME}})
            for key, workspace in NAMESPACES.items():
                name = f"chaos-{key}"
                labels = {WS: workspace} if workspace is not None else {}
                _create(http, "/api/v1/namespaces", {"metadata": {"name": name, "labels": labels}})
                self.names[key] = name
            foreign = {
                "metadata": {"name": PULL_SECRET, "labels": {"owner": "platform-team"}},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": "eyJhdXRocyI6IHt9fQ=="},
            }
            made = _create(http, f"/api/v1/namespaces/{self.names['foreign']}/secrets", foreign)
            self.foreign_version = made["metadata"]["resourceVersion"]

    def _wait_enforced(self) -> None:
        def enforced() -> bool:
            with self.plane.http_client() as http:
                answer = http.post(
                    f"/api/v1/namespaces/{self.names['a']}/pods",
                    params={"dryRun": "All"},
                    json=pod("marker", self.images["unknown"].ref),
                )
            return answer.status_code in (400, 403) and "spacegate" in answer.text

        eventually(enforced, "the chaos webhooks to take effect", timeout=60)

    def _standing_pods(self) -> None:
        with self.plane.http_client() as http:
            for key, space in STANDING.items():
                made = _create(
                    http,
                    f"/api/v1/namespaces/{self.names[key]}/pods",
                    pod("standing", self.images[space].ref),
                )
                self.standing[key] = made["metadata"]["uid"]

    # ------------------------------------------------------------------ webhooks, replicas

    def apply_webhooks(self, ca_bundle: str) -> None:
        """The chart's webhook configurations for HAProxy's URL, trusting ``ca_bundle``."""
        objects = chart_webhooks(self.haproxy.url, ca_bundle, values=CHART_VALUES)
        deadline = time.monotonic() + 90
        while True:  # tried again while the apiserver is away (a restart under way)
            try:
                with _admin_api(self.plane) as api:
                    apply_webhooks(api, objects)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def wait_all_up(self, timeout: float) -> float:
        """Seconds until every replica is running, ready, and UP in HAProxy."""
        began = time.monotonic()

        def up() -> bool:
            states = self.haproxy.states()
            return all(r.running and states.get(r.name) == "UP" for r in self.replicas)

        eventually(up, "every replica UP in HAProxy", timeout=timeout)
        return time.monotonic() - began

    def leader(self) -> Replica | None:
        """The replica whose identity holds the Lease now (None: nobody, or a dead one)."""
        try:
            with self.plane.http_client(timeout=5) as http:
                answer = http.get(f"/apis/coordination.k8s.io/v1/namespaces/{HOME}/leases/{LEASE}")
        except httpx.HTTPError:
            return None  # the apiserver is away: nobody is known to lead
        if answer.status_code != 200:
            return None
        holder = (answer.json().get("spec") or {}).get("holderIdentity") or ""
        for replica in self.replicas:
            # serve adds a random suffix to POD_NAME (a pod restarted under one name is a
            # new candidate).
            if replica.running and holder.startswith(f"{replica.name}-{replica.starts}-"):
                return replica
        return None

    # ------------------------------------------------------------------ world changes

    def relabel(self, key: str, workspace: str | None) -> None:
        """Move namespace ``key`` to ``workspace``; a :class:`Change` covers it."""
        change = Change(f"relabel {key}", time.monotonic(), namespaces=frozenset({key}))
        with self.lock:
            self.changes.append(change)
        body = {"metadata": {"labels": {WS: workspace}}}
        self.write(
            lambda http: http.patch(
                f"/api/v1/namespaces/{self.names[key]}",
                json=body,
                headers={"Content-Type": "application/merge-patch+json"},
            ),
            ok=(200,),
        )
        with self.lock:
            self.truth.workspaces[key] = workspace
            change.ended = time.monotonic()

    def bind(self, space: str, workspaces: Iterable[str]) -> None:
        """A RegistrySpaceBinding object binding ``space`` to ``workspaces`` as well (none:
        the object is deleted); a :class:`Change` covers it."""
        wanted = frozenset(workspaces)
        change = Change(f"binding {space}", time.monotonic(), spaces=frozenset({space}))
        with self.lock:
            self.changes.append(change)
        name = f"chaos-{space}"
        if wanted:
            manifest = binding(name, sorted(wanted), space=space)
            self.write(lambda http: http.post(BINDINGS, json=manifest), ok=(201, 409))
        else:
            self.write(lambda http: http.delete(f"{BINDINGS}/{name}"), ok=(200, 202, 404))
        with self.lock:
            self.truth.extra_bindings[space] = wanted
            change.ended = time.monotonic()

    def write(
        self,
        call: Callable[[httpx.Client], httpx.Response],
        *,
        ok: tuple[int, ...],
        timeout: float = 90.0,
    ) -> httpx.Response:
        """``call`` as an operator's tool makes it: tried again while the apiserver is away
        (down, or answering 5xx/429 while etcd is), until an ``ok`` status. A retried create
        may meet its own earlier success (409), a retried delete its own (404)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.plane.http_client(timeout=10) as http:
                    answer = call(http)
                if answer.status_code in ok:
                    return answer
                problem = f"{answer.status_code} {answer.text[:200]}"
                if answer.status_code < 500 and answer.status_code != 429:
                    raise AssertionError(problem)
            except httpx.TransportError as exc:
                problem = repr(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"the apiserver took no write in {timeout:.0f}s: {problem}")
            time.sleep(0.5)

    def expectation(
        self, key: str, image: Image, kind: str, began: float, ended: float
    ) -> Expected | None:
        """What ``kind`` with ``image`` in namespace ``key`` must get if sent between
        ``began`` and ``ended`` (None: a change was under way there; either is right)."""
        with self.lock:
            if any(c.covers(began, ended, key, image) for c in self.changes):
                return None
            return self.truth.expect(key, image, kind)


def _address(url: str) -> tuple[str, int]:
    host, _, port = url.split("://", 1)[1].partition(":")
    return host, int(port.rstrip("/"))


def _create(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = http.post(path, json=body)
    assert answer.status_code == 201, (path, answer.text)
    made: dict[str, Any] = answer.json()
    return made


class _admin_api:
    """A ``kubernetes`` ApiClient for the admin, closed on exit."""

    def __init__(self, plane: ControlPlane) -> None:
        from kubernetes import config

        self._api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(plane.kubeconfig)
        )

    def __enter__(self) -> Any:
        return self._api

    def __exit__(self, *_: object) -> None:
        self._api.close()
