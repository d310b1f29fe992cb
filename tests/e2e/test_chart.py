"""The Helm chart installed, upgraded and uninstalled by the real Helm SDK on the real apiserver.

Rendering tests (tests/charts) check what the chart writes; these check what a cluster makes
of it: every object passes the apiserver's own validation, ``lookup`` really finds the CA on
``helm upgrade``, and the ClusterRole is enough for spacegate's namespace watch and nothing
more. There is no scheduler or kubelet, so the Deployment's pods stay Pending; spacegate runs
instead as a local process *the way the release's pod would*: with the release's ConfigMap
as its config, the release's TLS Secret as its certificate and a token of the release's
ServiceAccount as its identity, behind the release's webhook configurations in
out-of-cluster mode (``webhook.url``, 127.0.0.1 only).

Each test installs its own release (release ``sgc-<random>``: its cluster-scoped objects are
``sgc-<random>-spacegate`` and never replace the shared fixture's ``spacegate``) and always
uninstalls it. The validating webhook is installed fail-open, so a test that breaks half way
cannot block the other tests' pods. The release's config refuses unlisted registries, which
the shared spacegate allows, and adds its own pull secret, so the apiserver's answers show
whether the release's webhooks reached the release's spacegate.
"""

from __future__ import annotations

import base64
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import helm_python as helm
import httpx
import pytest
import yaml
from cryptography import x509
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.charts.chartlib import CHART_DIR
from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import Api, pod
from tests.support.namespaces import create_namespace
from tests.support.ports import free_port
from tests.support.scenario import CONFIG, TEAM_A, TEAM_B, WS
from tests.support.spacegate import SpacegateProcess
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("webhooks")]

PULL_SECRET = "release-pull"
UNLISTED = "registry.unlisted.example/app:1.0"

# Where each kind the chart renders lives in the API (cluster-scoped kinds have no namespace).
RESOURCES = {
    "ServiceAccount": "serviceaccounts",
    "Secret": "secrets",
    "ConfigMap": "configmaps",
    "Service": "services",
    "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "NetworkPolicy": "networkpolicies",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
    "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
}
CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


@dataclass
class Release:
    """One Helm release of the chart in its own namespace."""

    name: str
    namespace: str
    config: helm.Config
    chart: helm.Chart

    @property
    def fullname(self) -> str:
        return f"{self.name}-spacegate"

    def install(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        """``helm install --create-namespace``; the objects of the release's manifest."""
        release = self.config.install(
            self.chart,
            self.name,
            values,
            namespace=self.namespace,
            create_namespace=True,
            timeout=120,
        )
        return _objects(release)

    def upgrade(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        release = self.config.upgrade(
            self.chart, self.name, values, namespace=self.namespace, timeout=120
        )
        assert release["revision"] == 2
        return _objects(release)

    def uninstall(self) -> None:
        self.config.uninstall(self.name, timeout=120, ignore_not_found=True)


def _objects(release: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(release["manifest"]) if doc]


@pytest.fixture
def core(api_client: client.ApiClient) -> Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def new_namespace(api_client: client.ApiClient, core: Api) -> Iterator[Callable[[str], str]]:
    """Creates namespaces of a workspace; they are deleted afterwards."""
    created: list[str] = []

    def make(workspace: str) -> str:
        created.append(create_namespace(api_client, {WS: workspace}))
        return created[-1]

    yield make
    for name in created:
        core.delete_namespace(name)


@pytest.fixture
def release(control_plane: ControlPlane, core: Api) -> Iterator[Release]:
    """A release name and namespace of its own; uninstalled and deleted afterwards."""
    name = f"sgc-{uuid.uuid4().hex[:6]}"
    with (
        helm.Chart.load(CHART_DIR) as chart,
        helm.Config(
            kubeconfig_path=str(control_plane.kubeconfig), namespace=f"{name}-system"
        ) as config,
    ):
        each = Release(name, f"{name}-system", config, chart)
        try:
            yield each
        finally:
            each.uninstall()
            try:
                core.delete_namespace(each.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def _values(url: str, **more: Any) -> dict[str, Any]:
    """Out-of-cluster mode for ``url``, certificates.mode helm (the default), fail-open."""
    config = yaml.safe_load(CONFIG)
    config["policy"].update(pullSecretName=PULL_SECRET, unknownRegistry="deny")
    return {
        "webhook": {"url": url, "validating": {"failurePolicy": "Ignore"}, **more},
        "networkPolicy": {"enabled": True, "ingressFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
        "config": config,
    }


def _path(obj: dict[str, Any], namespace: str) -> str:
    api_version, kind, meta = obj["apiVersion"], obj["kind"], obj["metadata"]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    where = "" if kind in CLUSTER_SCOPED else f"/namespaces/{meta.get('namespace', namespace)}"
    return f"{prefix}{where}/{RESOURCES[kind]}/{meta['name']}"


def _stored(
    control_plane: ControlPlane, objects: list[dict[str, Any]], namespace: str
) -> dict[str, int]:
    """HTTP status of a GET of each object, by ``Kind/name``."""
    with control_plane.http_client() as http:
        return {
            f"{o['kind']}/{o['metadata']['name']}": http.get(_path(o, namespace)).status_code
            for o in objects
        }


def _secret(core: Api, name: str, namespace: str) -> dict[str, bytes]:
    data = core.read_namespaced_secret(name, namespace).data or {}
    return {key: base64.b64decode(value) for key, value in data.items()}


def _ca_bundles(api_client: client.ApiClient, fullname: str) -> list[bytes]:
    api: Api = client.AdmissionregistrationV1Api(api_client)
    hooks = (
        api.read_validating_webhook_configuration(fullname).webhooks
        + api.read_mutating_webhook_configuration(fullname).webhooks
    )
    return [base64.b64decode(hook.client_config.ca_bundle) for hook in hooks]


@dataclass(frozen=True)
class _Identity:
    """What SpacegateProcess reads from its control plane: the kubeconfig it connects with."""

    kubeconfig: Path


def _token_kubeconfig(control_plane: ControlPlane, token: str, path: Path) -> Path:
    ca = base64.b64encode(control_plane.ca_cert.read_bytes()).decode()
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {"server": control_plane.server, "certificate-authority-data": ca},
            }
        ],
        "users": [{"name": "release", "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "release"}}],
        "current-context": "e2e",
    }
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


def _service_account_token(core: Api, name: str, namespace: str) -> str:
    """A token of ServiceAccount ``name`` from the TokenRequest API (1 hour)."""
    request = {"spec": {"audiences": [], "expirationSeconds": 3600}}
    answer = core.create_namespaced_service_account_token(name, namespace, request)
    token: str = answer.status.token
    return token


def _exists(core: Api, service_account: str, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account(service_account, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _as(control_plane: ControlPlane, token: str) -> httpx.Client:
    """An httpx client for the apiserver that authenticates with a bearer ``token``."""
    return httpx.Client(
        base_url=control_plane.server,
        verify=ssl.create_default_context(cafile=str(control_plane.ca_cert)),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _resource_rules(http: httpx.Client, namespace: str) -> set[tuple[str, str, str]]:
    """(API group, resource, verb) the client may use in ``namespace`` or cluster-wide."""
    review = http.post(
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        json={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": namespace},
        },
    )
    review.raise_for_status()
    status = review.json()["status"]
    assert not status.get("incomplete"), status
    return {
        (group, resource, verb)
        for rule in status["resourceRules"]
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
    }


def _as_the_release(
    control_plane: ControlPlane, core: Api, release: Release, process: SpacegateProcess
) -> None:
    """Give ``process`` the release pod's config, certificate and ServiceAccount identity."""
    config = core.read_namespaced_config_map(release.fullname, release.namespace)
    process.write_config(config.data["config.yaml"])
    tls = _secret(core, f"{release.fullname}-tls", release.namespace)
    process.tls.ca_cert.write_bytes(tls["ca.crt"])
    process.tls.key.write_bytes(tls["tls.key"])
    process.tls.cert.write_bytes(tls["tls.crt"])
    token = _service_account_token(core, release.fullname, release.namespace)
    kubeconfig = _token_kubeconfig(control_plane, token, process.workdir / "release.kubeconfig")
    process.plane = cast(ControlPlane, _Identity(kubeconfig))


def _gets(secrets: list[str], core: Api, namespace: str, image: str) -> bool:
    return _pull_secrets(core, namespace, image) == secrets


def _pull_secrets(core: Api, namespace: str, image: str) -> list[str] | str:
    """The pull secrets of an admitted dry-run pod create (sorted), or the refusal message."""
    try:
        stored = core.create_namespaced_pod(namespace, pod("app", image), dry_run="All")
    except ApiException as exc:
        return str(exc.body)
    return sorted(s.name for s in stored.spec.image_pull_secrets or [])


BOTH = sorted(["registry-secret", PULL_SECRET])  # the shared spacegate's and the release's


# --------------------------------------------------------------------------- lifecycle


def test_every_object_of_the_chart_is_accepted_upgraded_and_removed_by_the_real_apiserver(
    api_client: client.ApiClient, control_plane: ControlPlane, release: Release
) -> None:
    nowhere = f"https://127.0.0.1:{free_port()}"  # nothing listens: the chart is all we test
    installed = release.install(_values(nowhere))

    kinds = {o["kind"] for o in installed}
    assert set(WEBHOOK_KINDS) | {"Deployment", "ClusterRole", "NetworkPolicy"} <= kinds
    assert set(_stored(control_plane, installed, release.namespace).values()) == {200}

    upgraded = release.upgrade(_values(nowhere, timeoutSeconds=3))

    assert set(_stored(control_plane, upgraded, release.namespace).values()) == {200}
    api: Api = client.AdmissionregistrationV1Api(api_client)
    stored = api.read_validating_webhook_configuration(release.fullname)
    assert [hook.timeout_seconds for hook in stored.webhooks] == [3]

    release.uninstall()

    assert set(_stored(control_plane, upgraded, release.namespace).values()) == {404}


def test_helm_upgrade_keeps_the_generated_ca_so_the_running_spacegate_stays_trusted(
    api_client: client.ApiClient,
    control_plane: ControlPlane,
    core: Api,
    release: Release,
    new_namespace: Callable[[str], str],
    tmp_path: Path,
) -> None:
    process = SpacegateProcess(control_plane, tmp_path)
    release.install(_values(process.url))
    ca_secret = _secret(core, f"{release.fullname}-ca", release.namespace)
    serving = _secret(core, f"{release.fullname}-tls", release.namespace)
    bundles = _ca_bundles(api_client, release.fullname)
    assert bundles == [ca_secret["ca.crt"]] * 2
    _as_the_release(control_plane, core, release, process)
    try:
        process.start()
        team, other = new_namespace("101"), new_namespace("101")
        for namespace in (team, other):
            eventually(
                partial(_gets, BOTH, core, namespace, TEAM_A), "the release's webhooks to answer"
            )
        # Only the release's spacegate refuses unlisted registries.
        assert 'validate.spacegate.io\\" denied' in str(_pull_secrets(core, team, UNLISTED))

        # An upgrade that also exempts `other`, so its effect can be seen.
        release.upgrade(_values(process.url, exemptNamespaces=[other]))

        assert _secret(core, f"{release.fullname}-ca", release.namespace) == ca_secret
        assert _ca_bundles(api_client, release.fullname) == bundles
        reissued = _secret(core, f"{release.fullname}-tls", release.namespace)
        assert reissued["tls.crt"] != serving["tls.crt"]
        ca = x509.load_pem_x509_certificate(ca_secret["ca.crt"])
        x509.load_pem_x509_certificate(reissued["tls.crt"]).verify_directly_issued_by(ca)
        # The upgraded configurations are in effect and still trust the certificate the
        # running spacegate was started with.
        eventually(
            partial(_gets, ["registry-secret"], core, other, TEAM_A),
            "the upgraded configuration to take effect",
        )
        assert _pull_secrets(core, team, TEAM_A) == BOTH
    finally:
        process.stop()


# --------------------------------------------------------------------------- RBAC


def test_the_release_service_account_may_watch_namespaces_and_review_tokens_and_nothing_more(
    api_client: client.ApiClient,
    control_plane: ControlPlane,
    core: Api,
    release: Release,
    new_namespace: Callable[[str], str],
    tmp_path: Path,
) -> None:
    process = SpacegateProcess(control_plane, tmp_path)
    release.install(_values(process.url))
    namespace = new_namespace("101")
    _as_the_release(control_plane, core, release, process)

    try:
        process.start()  # ready only once the namespace list has arrived
        eventually(
            partial(_gets, BOTH, core, namespace, TEAM_A), "the release's webhooks to answer"
        )

        core.patch_namespace(namespace, {"metadata": {"labels": {WS: "102"}}})

        # Seen through the watch: team-b's image is now admitted and gets the secret.
        eventually(partial(_gets, BOTH, core, namespace, TEAM_B), "spacegate to see the relabel")
    finally:
        process.stop()
    log = process.log.read_text(errors="replace")
    assert "namespace list failed" not in log and "namespace watch failed" not in log, log

    with _as(
        control_plane, _service_account_token(core, release.fullname, release.namespace)
    ) as http:
        assert http.get("/api/v1/namespaces").status_code == 200
        assert http.get("/api/v1/secrets").status_code == 403
        assert http.get(f"/api/v1/namespaces/{release.namespace}/secrets").status_code == 403
        relabel = http.patch(
            f"/api/v1/namespaces/{namespace}",
            json={"metadata": {"labels": {WS: "101"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert relabel.status_code == 403
        granted = _resource_rules(http, release.namespace)
    # What the release adds to what any ServiceAccount of the cluster may do: compared with
    # the namespace's `default` ServiceAccount, which no binding names.
    eventually(lambda: _exists(core, "default", release.namespace), "the default ServiceAccount")
    with _as(control_plane, _service_account_token(core, "default", release.namespace)) as http:
        baseline = _resource_rules(http, release.namespace)

    # Token and access reviews: /metrics and the image selector check their callers with them.
    reviews = {
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
    }
    namespaces = {("", "namespaces", verb) for verb in ("get", "list", "watch")}
    assert granted == baseline | namespaces | reviews
