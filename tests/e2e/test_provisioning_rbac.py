"""The chart's provisioning RBAC on the real apiserver, with the token controller running.

RBAC cannot limit ``create`` to a name, so provisioning's ClusterRole lets spacegate's
ServiceAccount create any Secret anywhere and read the pull secret's name everywhere. With
kube-controller-manager's token controller running (as in every cluster), that is
cluster-admin in disguise: create a ``kubernetes.io/service-account-token`` Secret named
``registry-secret`` annotated for a privileged ServiceAccount, and read back the token the
controller writes into it. The chart ships a ValidatingAdmissionPolicy that lets that
ServiceAccount write only its own Secrets (by type, name and labels).

Here the chart's RBAC and policy are rendered for a release of this module's own and applied
as they are (the webhook configurations are not: a namespace guard failing closed would
block every other test's namespaces). Then, as that release's ServiceAccount:

- the escalation fails, while the same RBAC for another ServiceAccount (the policy does not
  judge it) does reach cluster-admin: the attack is real, the policy is what stops it;
- its neighbours fail too (other types, names, labels, an update or delete of a Secret that
  is not spacegate's, an update that drops the labels);
- and ``spacegate serve`` under exactly that identity provisions: creates Secrets, records a
  namespace joining, rotates when namespaces leave, deletes, with no refusal in its log.
"""

from __future__ import annotations

import base64
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml
from kubernetes import client

from policy.provisioning import robot_base_name
from tests.charts.chartlib import PROVISIONING
from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import Api, apply_manifests, chart_objects, delete_manifests
from tests.support.namespaces import Namespaces
from tests.support.pull_secrets import pull_secret_logins
from tests.support.service_accounts import PlaneAs, service_account_kubeconfig
from tests.support.spacegate import SpacegateProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

SECRET = "registry-secret"
DOCKER = "kubernetes.io/dockerconfigjson"
TOKEN = "kubernetes.io/service-account-token"
LABEL = "rbac.e2e.spacegate.io/workspace"
KINDS = (
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)
PULL = {"app.kubernetes.io/managed-by": "spacegate", "spacegate.io/component": "pull-secret"}
CREDENTIAL = {
    "app.kubernetes.io/managed-by": "spacegate",
    "spacegate.io/component": "robot-credential",
}
DOCKER_DATA = {".dockerconfigjson": base64.b64encode(b'{"auths": {}}').decode()}


def secret(
    name: str = SECRET,
    kind: str = DOCKER,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "type": kind,
    }
    if kind == DOCKER:
        body["data"] = DOCKER_DATA
    return body


# A bootstrap token (authenticates as system:bootstrappers where that authenticator is on).
BOOTSTRAP = {
    **secret("bootstrap-token-abcdef", "bootstrap.kubernetes.io/token", PULL),
    "stringData": {"token-id": "abcdef", "token-secret": "0123456789abcdef"},
}
TLS = {**secret(kind="kubernetes.io/tls", labels=PULL), "data": {"tls.crt": "", "tls.key": ""}}


@dataclass
class Release:
    """The chart's RBAC and policy for release ``name`` in ``home``, and tokens to act as."""

    plane: ControlPlane
    name: str
    home: str
    objects: list[dict[str, Any]]
    tmp: Path

    @property
    def service_account(self) -> str:
        return f"{self.name}-spacegate"

    @property
    def policy(self) -> str:
        return f"{self.name}-spacegate-secrets"

    def kubeconfig(self, service_account: str | None = None) -> Path:
        account = service_account or self.service_account
        return service_account_kubeconfig(
            self.plane, self.home, account, self.tmp / f"{account}-{uuid.uuid4().hex[:6]}.yaml"
        )

    def as_(self, service_account: str | None = None) -> httpx.Client:
        """An apiserver client authenticated as the ServiceAccount (a TokenRequest token)."""
        document = yaml.safe_load(self.kubeconfig(service_account).read_text())
        token = document["users"][0]["user"]["token"]
        return httpx.Client(
            base_url=self.plane.server,
            verify=ssl.create_default_context(cafile=str(self.plane.ca_cert)),
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )


def _secrets(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets"


@pytest.fixture(scope="module")
def release(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    name = f"sgr-{uuid.uuid4().hex[:6]}"
    home = f"{name}-system"
    core: Api = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=home)))
    objects = chart_objects(PROVISIONING, release=name, namespace=home, kinds=KINDS)
    apply_manifests(control_plane, objects)
    made = Release(control_plane, name, home, objects, tmp_path_factory.mktemp("rbac"))
    try:
        if any(o["kind"] == "ValidatingAdmissionPolicyBinding" for o in objects):
            _wait_until_the_policy_is_enforced(made, core)
        yield made
    finally:
        delete_manifests(control_plane, [o for o in objects if "namespace" not in o["metadata"]])
        core.delete_namespace(home)


def _wait_until_the_policy_is_enforced(release: Release, core: Api) -> None:
    """The apiserver picks a new policy up within seconds; probe with a write it refuses."""
    probe = f"probe-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=probe)))
    try:
        with release.as_() as http:

            def refused() -> bool:
                answer = http.post(_secrets(probe), json=secret(kind="Opaque", labels=PULL))
                if answer.status_code == 201:
                    http.delete(f"{_secrets(probe)}/{SECRET}")
                    return False
                return answer.status_code == 403 and release.policy in answer.text

            eventually(refused, "the chart's ValidatingAdmissionPolicy to be enforced", 60)
    finally:
        core.delete_namespace(probe)


# --------------------------------------------------------------------------- the escalation


def _privileged_service_account(core: Api, namespaces: Namespaces) -> tuple[str, str]:
    """A ServiceAccount bound to cluster-admin, as clusters have (namespace, name)."""
    victim = namespaces.make(prefix="victim")
    core.create_namespaced_service_account(
        victim, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="root"))
    )
    return victim, "root"


def _steal(http: httpx.Client, namespace: str, account: str) -> httpx.Response:
    """The escalation: a token Secret under the pull secret's name, for ``account``."""
    body = secret(kind=TOKEN, annotations={"kubernetes.io/service-account.name": account})
    return http.post(_secrets(namespace), json=body)


def _read_token(http: httpx.Client, namespace: str) -> str | None:
    """The token in ``registry-secret``, read the way provisioning lists pull secrets."""
    listed = http.get(_secrets(namespace), params={"fieldSelector": f"metadata.name={SECRET}"})
    if listed.status_code != 200:
        return None
    for item in listed.json()["items"]:
        token = (item.get("data") or {}).get("token")
        if token:
            return base64.b64decode(token).decode()
    return None


def test_spacegates_service_account_cannot_mint_a_token_for_a_privileged_one(
    release: Release,
    api_client: client.ApiClient,
    namespaces: Namespaces,
) -> None:
    core: Api = client.CoreV1Api(api_client)
    victim, root = _privileged_service_account(core, namespaces)
    binding = f"{victim}-root-admin"
    rbac: Api = client.RbacAuthorizationV1Api(api_client)
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": binding},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": root, "namespace": victim}],
        }
    )
    try:
        with release.as_() as http:
            attempt = _steal(http, victim, root)

            assert attempt.status_code == 403, attempt.text
            assert f"ValidatingAdmissionPolicy '{release.policy}'" in attempt.text
            time.sleep(2)  # what the token controller would need to fill one in
            assert _read_token(http, victim) is None
            assert core.list_namespaced_secret(victim).items == []

        # The control: the very same RBAC, held by a ServiceAccount the policy does not judge,
        # is cluster-admin with the token controller running. The policy is what stops it.
        mirror = _mirror_of(release, api_client)
        with release.as_(mirror) as http:
            assert _steal(http, victim, root).status_code == 201
            stolen = eventually(lambda: _read_token(http, victim), "the token controller")
        with httpx.Client(
            base_url=release.plane.server,
            verify=ssl.create_default_context(cafile=str(release.plane.ca_cert)),
            headers={"Authorization": f"Bearer {stolen}"},
        ) as as_root:
            assert as_root.get("/api/v1/secrets").status_code == 200  # every Secret: game over
    finally:
        rbac.delete_cluster_role_binding(binding)


def _mirror_of(release: Release, api_client: client.ApiClient) -> str:
    """Another ServiceAccount of the release's namespace, bound to the chart's provisioning
    ClusterRole (and nothing else)."""
    core: Api = client.CoreV1Api(api_client)
    rbac: Api = client.RbacAuthorizationV1Api(api_client)
    name = f"mirror-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_service_account(
        release.home, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    rbac.create_namespaced_role_binding(
        release.home,
        {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{release.name}-spacegate-pull-secrets",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": release.home}],
        },
    )
    # The RoleBinding grants the ClusterRole in its own namespace; the escalation goes
    # cluster-wide with a ClusterRoleBinding, as the chart's own binding is.
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": f"{release.home}-{name}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{release.name}-spacegate-pull-secrets",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": release.home}],
        }
    )
    return name


def test_no_token_secret_in_spacegates_own_namespace_either(release: Release) -> None:
    """The Role at home may create Secrets too: not a token for a ServiceAccount there."""
    with release.as_() as http:
        for name in ("registry-secret", "spacegate-harbor-x-token"):
            body = secret(
                name,
                TOKEN,
                CREDENTIAL,
                {"kubernetes.io/service-account.name": release.service_account},
            )
            attempt = http.post(_secrets(release.home), json=body)
            if attempt.status_code == 201:  # leave nothing behind for the other tests
                http.delete(f"{_secrets(release.home)}/{name}")
            assert attempt.status_code == 403, (name, attempt.text)
        assert _read_token(http, release.home) is None


# --------------------------------------------------------------------------- the neighbours


@pytest.mark.parametrize(
    ("where", "body", "allowed"),
    [
        pytest.param("tenant", secret(labels=PULL), True, id="its-pull-secret"),
        pytest.param("tenant", secret(kind="Opaque", labels=PULL), False, id="opaque"),
        pytest.param(
            "tenant",
            secret(
                kind=TOKEN, labels=PULL, annotations={"kubernetes.io/service-account.name": "x"}
            ),
            False,
            id="token-type-labelled",
        ),
        pytest.param("tenant", TLS, False, id="tls-type"),
        pytest.param("tenant", secret("other-name", labels=PULL), False, id="other-name"),
        pytest.param("tenant", secret(), False, id="no-labels"),
        pytest.param(
            "tenant",
            secret(labels={"app.kubernetes.io/managed-by": "spacegate"}),
            False,
            id="no-component-label",
        ),
        pytest.param("tenant", secret(labels=CREDENTIAL), False, id="credential-label"),
        pytest.param(
            "tenant",
            secret("spacegate-harbor-1", "Opaque", CREDENTIAL),
            False,
            id="credential-outside-home",
        ),
        pytest.param(
            "home", secret("spacegate-harbor-1", "Opaque", CREDENTIAL), True, id="its-credential"
        ),
        pytest.param("home", secret("spacegate-harbor-2", "Opaque"), False, id="home-no-labels"),
        pytest.param(
            "home", secret("tls-stolen", "Opaque", CREDENTIAL), False, id="home-other-name"
        ),
        pytest.param("home", secret(labels=PULL), True, id="home-pull-secret"),
        pytest.param("kube-system", BOOTSTRAP, False, id="bootstrap-token-in-kube-system"),
    ],
)
def test_spacegate_may_create_only_its_own_kinds_of_secret(
    release: Release, namespaces: Namespaces, where: str, body: dict[str, Any], allowed: bool
) -> None:
    namespace = {"home": release.home, "kube-system": "kube-system"}.get(where) or (
        namespaces.make(prefix="tenant")
    )
    with release.as_() as http:
        answer = http.post(_secrets(namespace), json=body)
        if answer.status_code == 201:
            assert http.delete(f"{_secrets(namespace)}/{body['metadata']['name']}").is_success
    if allowed:
        assert answer.status_code == 201, answer.text
    else:
        assert answer.status_code == 403, answer.text
        assert release.policy in answer.text


def test_spacegate_may_not_adopt_relabel_or_delete_a_secret_that_is_not_its_own(
    release: Release, api_client: client.ApiClient, namespaces: Namespaces
) -> None:
    core: Api = client.CoreV1Api(api_client)
    tenant = namespaces.make(prefix="tenant")
    core.create_namespaced_secret(tenant, secret(labels={"owner": "platform"}))  # DCE's own
    path = f"{_secrets(tenant)}/{SECRET}"
    with release.as_() as http:
        # Adopt: the same Secret, given spacegate's labels.
        current = core.read_namespaced_secret(SECRET, tenant)
        adopt = secret(labels=PULL)
        adopt["metadata"]["resourceVersion"] = current.metadata.resource_version
        answer = http.put(path, json=adopt)
        assert answer.status_code == 403 and release.policy in answer.text, answer.text
        # Delete it.
        assert http.delete(path).status_code == 403
        assert core.read_namespaced_secret(SECRET, tenant).metadata.labels == {"owner": "platform"}

        # Its own Secret: an update may not drop its labels or change its type.
        core.delete_namespaced_secret(SECRET, tenant)
        assert http.post(_secrets(tenant), json=secret(labels=PULL)).status_code == 201
        for change in (secret(), secret(kind="Opaque", labels=PULL)):
            current = core.read_namespaced_secret(SECRET, tenant)
            change["metadata"]["resourceVersion"] = current.metadata.resource_version
            answer = http.put(path, json=change)
            assert answer.status_code in (403, 422), answer.text  # 422: type is immutable
        kept = core.read_namespaced_secret(SECRET, tenant)
        assert kept.type == DOCKER and kept.metadata.labels == PULL
        assert http.delete(path).status_code == 200  # and it may delete it


def test_the_service_account_reads_no_secret_but_the_pull_secrets_by_name(
    release: Release, namespaces: Namespaces
) -> None:
    tenant = namespaces.make(prefix="tenant")
    with release.as_() as http:
        assert http.get("/api/v1/secrets").status_code == 403
        assert http.get(_secrets(tenant)).status_code == 403
        assert http.get(f"{_secrets(tenant)}/{SECRET}").status_code == 403  # no get either
        named = http.get(_secrets(tenant), params={"fieldSelector": f"metadata.name={SECRET}"})
        assert named.status_code == 200


# --------------------------------------------------------------------------- provisioning works


@pytest.fixture(scope="module")
def harbor() -> Iterator[HarborFake]:
    with HarborFake() as fake:
        for name in ("library", "team-a"):
            fake.add_project(name, public=name == "library")
        yield fake


def _config(release: Release, harbor: HarborFake, workdir: Path, workspace: str) -> str:
    (workdir / "username").write_text(f"{ADMIN_USER}\n")
    (workdir / "password").write_text(f"{ADMIN_PASSWORD}\n")
    return f"""
workspaceLabel: {LABEL}
policy:
  pullSecretName: {SECRET}
  namespaceGuard: {{enabled: true}}
registries:
  - name: harbor
    type: harbor
    url: {harbor.url}
    credentials: {{usernameFile: {workdir / "username"}, passwordFile: {workdir / "password"}}}
bindings:
  - {{registry: harbor, space: team-a, workspaces: ["{workspace}"]}}
pullSecrets: {{provision: true, credentialsNamespace: {release.home}}}
# The chart here is rendered with no Harbor listed, so it makes no last-known-good Secret for
# the leader to update; test_last_known_good_rbac proves that copy under the chart's grants.
lastKnownGood: {{persist: false}}
"""


def test_provisioning_works_under_exactly_the_charts_rbac_and_policy(
    release: Release,
    api_client: client.ApiClient,
    harbor: HarborFake,
    namespaces: Namespaces,
    tmp_path: Path,
) -> None:
    workspace = f"w{uuid.uuid4().hex[:6]}"
    dev, prod, gone = (namespaces.make({LABEL: workspace}, prefix="rbac") for _ in range(3))
    process = SpacegateProcess(
        cast(ControlPlane, PlaneAs(release.plane, release.kubeconfig())),
        tmp_path,
        _config(release, harbor, tmp_path, workspace),
    )
    host = harbor.url.split("://", 1)[1]

    def login(namespace: str) -> tuple[str, str] | None:
        logins = pull_secret_logins(api_client, namespace, SECRET)
        return None if logins is None else logins[host]

    def robots() -> set[str]:
        base = "robot$" + robot_base_name("harbor", workspace)
        return {r.name for r in harbor.robots() if r.name.startswith(base)}

    def wait(check: Callable[[], object], what: str) -> None:
        try:
            eventually(check, what, timeout=45)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{process.tail()}") from None

    process.start()
    try:
        wait(lambda: login(dev) and login(dev) == login(prod) == login(gone), "three Secrets")
        first = login(dev)
        assert first is not None and robots() == {first[0]}

        joined = namespaces.make({LABEL: workspace}, prefix="rbac")  # recorded, then written
        wait(lambda: login(joined) == first, "the Secret of a namespace joining")

        namespaces.relabel(prod, {LABEL: None})  # leaves: a rotation
        wait(lambda: login(prod) is None and login(dev) not in (None, first), "a rotation")
        second = login(dev)
        assert second is not None and login(joined) == login(gone) == second
        wait(lambda: robots() == {second[0]}, "the old robot to be deleted")

        client.CoreV1Api(api_client).delete_namespace(gone)  # leaves too: no Secret to see
        wait(lambda: login(dev) not in (None, second), "a rotation after a deletion")
        third = login(dev)
        assert third is not None
        wait(lambda: robots() == {third[0]}, "the second old robot to be deleted")
    finally:
        process.stop()
    # Refused by neither the policy nor RBAC (a namespace being deleted may refuse a
    # Secret: "being terminated", which is not about spacegate's rights).
    log = process.log.read_text(errors="replace")
    refusals = ("ValidatingAdmissionPolicy", " cannot ", "Forbidden", " 403")
    assert not [word for word in refusals if word in log], log
