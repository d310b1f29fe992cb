"""RegistrySpaceBinding objects on the real apiserver, with the chart's CRD and RBAC.

Set up once for the module:

- the CRD from ``charts/spacegate/crds/`` (the file ``helm install`` applies), and the
  chart's PolicyReport CRD;
- a Harbor fake on 127.0.0.1 with ``library`` public and ``team-a``/``team-b`` private;
- spacegate as a local process, running as the ServiceAccount of a chart release with
  provisioning, the audit and the namespace guard on (provisioning requires the guard), its
  ClusterRoles, Roles and bindings applied, so every read and write below (binding statuses,
  the impact index, Secrets, robots' credentials, reports) is also a check of the chart's
  RBAC; workspaces come from a label of this module's own (:data:`LABEL`);
- the chart's webhook configurations for that release (the ``bindings.spacegate.io`` entry
  included), named after it, beside any other test's.

What is checked is what an admin sees: what ``kubectl apply`` refuses and why, the warnings
it prints, Pods admitted or refused, Secrets and robots, reports, and each object's status.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from policy.bindings import BindingError, BindingObject, parse_binding_object
from policy.config import load_config
from policy.impact import INDEX_CONFIGMAP, INDEX_KEY
from policy.snapshot import NamespaceInfo, Snapshot
from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from tests.support.bindings import (
    BINDINGS,
    binding,
    conditions,
    install_binding_crd,
    release_webhooks,
    resource_versions,
    table_rows,
    warnings_of,
)
from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import Api, apply_manifests, chart_objects, delete_manifests, pod
from tests.support.namespaces import Namespaces
from tests.support.policy_reports import policy_reports
from tests.support.pull_secrets import pull_secret_logins
from tests.support.service_accounts import PlaneAs, service_account_kubeconfig
from tests.support.spacegate import SpacegateProcess
from tests.support.waiting import eventually
from tests.support.webhooks import apply_webhooks, delete_webhooks
from webhook.cli.impact import ClusterImpactProbe

pytestmark = pytest.mark.e2e

LABEL = "bindings.e2e.spacegate.io/workspace"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
CHART_VALUES: dict[str, Any] = {
    "config": {
        "pullSecrets": {"provision": True},
        "audit": {"enabled": True},
        "policy": {"namespaceGuard": {"enabled": True}},
    }
}


@dataclass
class Setup:
    plane: ControlPlane
    api: client.ApiClient
    harbor: HarborFake
    process: SpacegateProcess
    home: str
    namespaces: Namespaces

    @property
    def host(self) -> str:
        return self.harbor.url.split("://", 1)[1]

    def image(self, space: str) -> str:
        return f"{self.host}/{space}/app:1.0"

    def namespace(self, workspace: str) -> str:
        return self.namespaces.make({LABEL: workspace}, prefix="rsb")

    def wait(self, check: Any, what: str, timeout: float = 60) -> Any:
        try:
            return eventually(check, what, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nspacegate log:\n{self.process.tail(60)}") from None

    # ------------------------------------------------------------------ objects

    def send(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        with self.plane.http_client() as http:
            return http.request(method, path, json=body, headers=headers, **kwargs)

    def apply(self, obj: dict[str, Any]) -> list[str]:
        """Create the object as the admin; the warnings kubectl would print."""
        created = self.send("POST", BINDINGS, obj)
        assert created.status_code == 201, created.text
        return warnings_of(created)

    def set_workspaces(self, name: str, workspaces: list[str]) -> httpx.Response:
        return self.send("PATCH", f"{BINDINGS}/{name}", {"spec": {"workspaces": workspaces}})

    def delete(self, name: str) -> httpx.Response:
        return self.send("DELETE", f"{BINDINGS}/{name}")

    # ------------------------------------------------------------------ what runs

    def admitted(self, namespace: str, space: str) -> bool:
        core: Api = client.CoreV1Api(self.api)
        try:
            core.create_namespaced_pod(namespace, pod("probe", self.image(space)), dry_run="All")
        except ApiException:
            return False
        return True

    def login(self, namespace: str) -> tuple[str, str] | None:
        logins = pull_secret_logins(self.api, namespace)
        return None if logins is None else logins[self.host]

    def pulls(self, login: tuple[str, str], space: str) -> bool:
        url = f"{self.harbor.url}/v2/{space}/app/manifests/1.0"
        return httpx.get(url, auth=login, timeout=10).status_code == 200

    def index(self) -> dict[str, Any]:
        """The impact index the leader published last ({} before the first)."""
        core: Api = client.CoreV1Api(self.api)
        try:
            found = core.read_namespaced_config_map(INDEX_CONFIGMAP, self.home)
        except ApiException:
            return {}
        return cast(dict[str, Any], json.loads(found.data[INDEX_KEY]))

    def uses(self, space: str, workspace: str) -> list[str]:
        """The workloads the index says use ``space`` in ``workspace``."""
        for entry in self.index().get("uses", []):
            if (entry["space"], entry["workspace"]) == (space, workspace):
                return list(entry["examples"])
        return []


@pytest.fixture(scope="module")
def crd(control_plane: ControlPlane) -> Iterator[dict[str, Any]]:
    """The chart's CRD for this module; deleted afterwards, with every object."""
    installed = install_binding_crd(control_plane)
    yield installed
    delete_manifests(control_plane, [installed])


@pytest.fixture(scope="module")
def setup(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    crd: dict[str, Any],
    policy_report_crd: dict[str, object],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    del crd, policy_report_crd  # installed: that is all this fixture needs of them
    plane = control_plane
    workdir = tmp_path_factory.mktemp("bindings")
    core: Api = client.CoreV1Api(api_client)
    release = f"rsb-{uuid.uuid4().hex[:6]}"
    home = f"{release}-system"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=home)))
    rbac = chart_objects(CHART_VALUES, release=release, namespace=home, kinds=RBAC_KINDS)
    apply_manifests(plane, rbac)
    token = service_account_kubeconfig(
        plane, home, f"{release}-spacegate", workdir / "sa.kubeconfig"
    )
    (workdir / "username").write_text(f"{ADMIN_USER}\n")
    (workdir / "password").write_text(f"{ADMIN_PASSWORD}\n")
    namespaces = Namespaces(api_client)
    with HarborFake() as harbor:
        harbor.add_project("library", public=True)
        for name in ("team-a", "team-b"):
            harbor.add_project(name, public=False)
        config = f"""
workspaceLabel: {LABEL}
policy:
  mode: enforce
  unknownRegistry: allow
  unknownSpace: deny
  exemptNamespaces: [kube-system, {home}]
  namespaceGuard: {{enabled: true, groups: [system:masters]}}
registries:
  - name: harbor
    type: harbor
    url: {harbor.url}
    credentials: {{usernameFile: {workdir / "username"}, passwordFile: {workdir / "password"}}}
    refreshInterval: 2s
pullSecrets: {{provision: true, credentialsNamespace: {home}}}
audit: {{enabled: true, interval: 5s, reports: wgpolicyk8s}}
"""
        process = SpacegateProcess(cast(ControlPlane, PlaneAs(plane, token)), workdir, config)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("POD_NAMESPACE", home)  # the chart sets it through the downward API
            process.start()
        hooks = release_webhooks(process.url, process.ca_pem, release=release, values=CHART_VALUES)
        apply_webhooks(api_client, hooks)
        state = Setup(plane, api_client, harbor, process, home, namespaces)
        try:
            probe = state.namespace("probe")
            state.wait(
                lambda: not state.admitted(probe, "team-a"), "spacegate to answer the apiserver"
            )
            yield state
        finally:
            delete_webhooks(api_client, f"{release}-spacegate")
            process.stop()
            namespaces.delete_all()
            core.delete_namespace(home)
            delete_manifests(plane, [o for o in rbac if o["kind"].startswith("Cluster")])


def ws() -> str:
    return f"w{uuid.uuid4().hex[:6]}"


# --------------------------------------------------------------------------- what the apiserver refuses


BAD = [
    (
        binding("x1", []),
        "spec.workspaces: Invalid value: 0: spec.workspaces in body should have at least 1 items",
    ),
    (binding("x2", ["101", "101"]), 'spec.workspaces[1]: Duplicate value: "101"'),
    (
        binding("x3", [""]),
        'spec.workspaces[0]: Invalid value: "": spec.workspaces[0] in body should be at least 1 chars long',
    ),
    (binding("x4", ["a b"]), "spec.workspaces[0] in body should match"),
    (
        binding("x5", [str(i) for i in range(257)]),
        "spec.workspaces: Too many: 257: must have at most 256 items",
    ),
    (
        binding("x6", ["101"], space="Team-A"),
        'spec.space: Invalid value: "Team-A": spec.space in body should match',
    ),
    (
        binding("x7", ["101"], registry="Harbor"),
        'spec.registry: Invalid value: "Harbor": spec.registry in body should match',
    ),
    (
        binding("x8", [101]),
        'spec.workspaces[0]: Invalid value: "integer": spec.workspaces[0] in body must be of type string',
    ),
    (
        {**binding("x9", ["101"]), "spec": {"registry": "harbor", "space": "team-a"}},
        "spec.workspaces: Required value",
    ),
]


@pytest.mark.parametrize(("obj", "message"), BAD, ids=[o["metadata"]["name"] for o, _ in BAD])
def test_a_bad_object_is_refused_by_the_apiserver_with_its_own_message(
    setup: Setup, obj: dict[str, Any], message: str
) -> None:
    refused = setup.send("POST", BINDINGS, obj, params={"dryRun": "All"})
    assert refused.status_code == 422, refused.text
    assert message in refused.json()["message"]
    with pytest.raises(BindingError):  # spacegate check --bindings refuses it too
        parse_binding_object(obj)


def test_registry_and_space_are_immutable_by_the_crds_cel_rules(setup: Setup) -> None:
    name = f"imm-{uuid.uuid4().hex[:6]}"
    setup.apply(binding(name, [ws()]))
    moved = setup.send(
        "PATCH", f"{BINDINGS}/{name}", {"spec": {"registry": "other", "space": "team-b"}}
    )
    assert moved.status_code == 422, moved.text
    text = moved.json()["message"]
    assert 'spec.registry: Invalid value: "other": registry is immutable: create another ' in text
    assert 'spec.space: Invalid value: "team-b": space is immutable: create another ' in text
    setup.delete(name)


NAMES = [
    ("space", "team-a"),
    ("space", "a.b_c-d"),
    ("space", "a--b"),
    ("space", "a__b"),
    ("space", "-a"),
    ("space", "a."),
    ("space", "A"),
    ("space", "é"),
    ("space", "a" * 255),
    ("space", "a" * 256),
    ("registry", "h-1"),
    ("registry", "h_1"),
    ("registry", "h."),
    ("registry", "-h"),
    ("registry", "h" * 63),
    ("registry", "h" * 64),
    ("workspace", "W.1_x-2"),
    ("workspace", "_a"),
    ("workspace", "a_"),
    ("workspace", "x" * 63),
    ("workspace", "x" * 64),
    ("workspace", "a/b"),
    ("workspace", "٣"),
]


def test_the_apiserver_and_spacegate_accept_exactly_the_same_names(setup: Setup) -> None:
    """The CRD's patterns are read by Go's RE2 in the apiserver and by Python in spacegate:
    each name is accepted by both or refused by both."""
    disagreements = []
    for field, value in NAMES:
        spec: dict[str, Any] = {"registry": "harbor", "space": "team-a", "workspaces": ["1"]}
        if field == "workspace":
            spec["workspaces"] = [value]
        else:
            spec[field] = value
        obj = {**binding(f"n-{uuid.uuid4().hex[:8]}", ["1"]), "spec": spec}
        apiserver = setup.send("POST", BINDINGS, obj, params={"dryRun": "All"}).status_code == 201
        try:
            parse_binding_object(obj)
            python = True
        except BindingError:
            python = False
        if apiserver != python:
            disagreements.append((field, value, apiserver, python))
    assert disagreements == []


# --------------------------------------------------------------------------- binding, in force


def test_a_binding_admits_the_next_pod_and_its_namespace_gets_a_pull_secret(setup: Setup) -> None:
    workspace = ws()
    dev = setup.namespace(workspace)
    assert not setup.admitted(dev, "team-a")
    name = f"team-a-{workspace}"

    warnings = setup.apply(binding(name, [workspace]))

    assert warnings == []
    setup.wait(lambda: setup.admitted(dev, "team-a"), "the next Pod to be admitted", timeout=10)
    core: Api = client.CoreV1Api(setup.api)
    created = core.create_namespaced_pod(dev, pod("web", setup.image("team-a")))
    assert created.spec.image_pull_secrets[0].name == "registry-secret"
    login = setup.wait(lambda: setup.login(dev), "the namespace's pull Secret")
    assert setup.pulls(login, "team-a") and not setup.pulls(login, "team-b")

    ready = setup.wait(
        lambda: (
            (c := conditions(setup.plane, name)).get("CredentialsProvisioned", {}).get("reason")
            == "Provisioned"
            and c
        ),
        "the status to report the credential",
    )
    assert ready["Ready"]["status"] == "True" and ready["Ready"]["reason"] == "Bound"
    assert ready["SpaceFound"]["status"] == "True"
    assert ready["Conflicted"]["status"] == "False"
    assert ready["CredentialsProvisioned"]["message"].startswith(
        "1 of 1 namespaces have their pull Secret (1 Secrets)"
    )
    assert all(c["observedGeneration"] == 1 for c in ready.values())
    row = table_rows(setup.plane)[name]
    assert (row["Registry"], row["Space"], row["Ready"]) == ("harbor", "team-a", "True")
    assert json.loads(row["Workspaces"]) == [workspace]


def test_removing_a_workspace_warns_refuses_new_pods_fails_reports_and_rotates_the_robot(
    setup: Setup,
) -> None:
    x, y = ws(), ws()
    x_dev, y_dev = setup.namespace(x), setup.namespace(y)
    shared, own = f"team-a-{x}", f"team-b-{x}"
    setup.apply(binding(shared, [x, y]))
    setup.apply(binding(own, [x], space="team-b"))
    setup.wait(lambda: setup.admitted(x_dev, "team-a"), "team-a bound to x")
    apps: Api = client.AppsV1Api(setup.api)
    core: Api = client.CoreV1Api(setup.api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        x_dev,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": setup.image("team-a")}]},
                },
            },
        },
    )
    core.create_namespaced_pod(x_dev, pod("solo", setup.image("team-a")))
    core.create_namespaced_pod(y_dev, pod("other", setup.image("team-a")))
    old = setup.wait(lambda: setup.login(x_dev), "x's pull Secret")
    assert setup.pulls(old, "team-a") and setup.pulls(old, "team-b")
    setup.wait(
        lambda: sorted(setup.uses("team-a", x)) == [f"{x_dev}/Deployment/web", f"{x_dev}/Pod/solo"],
        "the audit to index what runs",
    )

    changed = setup.set_workspaces(shared, [y])

    assert changed.status_code == 200, changed.text
    warnings = warnings_of(changed)
    assert warnings[0].startswith(
        f"spacegate: workspace {x} loses space harbor/team-a (this change to "
        f"RegistrySpaceBinding {shared}): 2 running workloads use it, and their new Pods will be "
        "refused (as of the audit at "
    )
    assert warnings[1:] == [
        f"spacegate: - {x_dev}/Deployment/web",
        f"spacegate: - {x_dev}/Pod/solo",
    ]
    assert not any(y_dev in w for w in warnings)  # y keeps team-a

    setup.wait(lambda: not setup.admitted(x_dev, "team-a"), "x's Pods to be refused", timeout=10)
    assert setup.admitted(y_dev, "team-a")

    def web_report() -> str | None:
        for report in policy_reports(setup.plane, x_dev).values():
            if report["scope"]["kind"] == "Deployment" and report["scope"]["name"] == "web":
                return str(report["results"][0]["result"])
        return None

    setup.wait(lambda: web_report() == "fail", "the Deployment's report to fail")
    new = setup.wait(
        lambda: (login := setup.login(x_dev)) != old and login, "a new robot for workspace x"
    )
    assert setup.pulls(new, "team-b") and not setup.pulls(new, "team-a")
    setup.wait(lambda: not setup.pulls(old, "team-b"), "the old robot to be deleted")


def test_deleting_a_binding_warns_naming_what_it_strands(setup: Setup) -> None:
    x = ws()
    x_dev = setup.namespace(x)
    name = f"team-b-{x}"
    setup.apply(binding(name, [x], space="team-b"))
    setup.wait(lambda: setup.admitted(x_dev, "team-b"), "team-b bound")
    core: Api = client.CoreV1Api(setup.api)
    core.create_namespaced_pod(x_dev, pod("job", setup.image("team-b")))
    setup.wait(lambda: setup.uses("team-b", x) == [f"{x_dev}/Pod/job"], "the audit to index it")

    deleted = setup.delete(name)

    assert deleted.status_code == 200, deleted.text
    first, second = warnings_of(deleted)
    assert first.startswith(
        f"spacegate: workspace {x} loses space harbor/team-b (deleting RegistrySpaceBinding "
        f"{name}): 1 running workload uses it"
    )
    assert second == f"spacegate: - {x_dev}/Pod/job"
    setup.wait(lambda: not setup.admitted(x_dev, "team-b"), "x's Pods to be refused", timeout=10)


# --------------------------------------------------------------------------- conflicts and mistakes


def test_two_objects_for_one_space_are_merged_and_conflicted_on_both(setup: Setup) -> None:
    x, y = ws(), ws()
    first, second = f"c1-{x}", f"c2-{x}"
    setup.apply(binding(first, [x], space="team-b"))
    setup.wait(lambda: conditions(setup.plane, first).get("Ready"), "the first in force")
    warnings = setup.apply(binding(second, [y], space="team-b"))
    # (other tests' objects may bind team-b too: they are named alongside)
    assert any(first in w and "also bind" in w and "space team-b of harbor" in w for w in warnings)

    def conflicted(name: str, other: str) -> bool:
        found = conditions(setup.plane, name).get("Conflicted", {})
        message = found.get("message", "")
        return found.get("status") == "True" and other in message and "also bind" in message

    setup.wait(
        lambda: conflicted(first, second) and conflicted(second, first), "Conflicted on both"
    )
    # The union applies: both workspaces may use team-b (a namespace just created reaches
    # spacegate through its watch, hence the wait).
    x_dev, y_dev = setup.namespace(x), setup.namespace(y)
    setup.wait(lambda: setup.admitted(x_dev, "team-b"), "x to use team-b", timeout=10)
    setup.wait(lambda: setup.admitted(y_dev, "team-b"), "y to use team-b", timeout=10)

    setup.delete(second)
    setup.wait(
        lambda: second not in conditions(setup.plane, first)["Conflicted"]["message"],
        "the conflict to clear",
    )
    setup.delete(first)


def test_an_object_for_an_undeclared_registry_binds_nothing_and_says_why(setup: Setup) -> None:
    x = ws()
    name = f"quay-{x}"
    warnings = setup.apply(binding(name, [x], registry="quay"))
    assert warnings == [
        "spacegate: registry 'quay' is not declared in spacegate's config (declared: harbor); "
        f"RegistrySpaceBinding {name} binds nothing until it is"
    ]
    ready = setup.wait(lambda: conditions(setup.plane, name).get("Ready"), "a status")
    assert (ready["status"], ready["reason"]) == ("False", "RegistryNotDeclared")
    # The reflector goes on: the next binding still works.
    y = ws()
    y_dev = setup.namespace(y)
    setup.apply(binding(f"team-a-{y}", [y]))
    setup.wait(lambda: setup.admitted(y_dev, "team-a"), "the next binding")


def test_statuses_are_written_once_not_on_every_pass(setup: Setup) -> None:
    x = ws()
    name = f"quiet-{x}"
    setup.apply(binding(name, [x]))
    setup.wait(
        lambda: conditions(setup.plane, name).get("CredentialsProvisioned"), "the first status"
    )
    names = [o["metadata"]["name"] for o in setup.send("GET", BINDINGS).json()["items"]]
    time.sleep(3)  # a write still in flight settles
    before = resource_versions(setup.plane, names)
    time.sleep(12)  # two audit passes, several registry listings, a provisioning pass or two
    assert resource_versions(setup.plane, names) == before
    log = setup.process.log.read_text()
    assert len(re.findall(rf"RegistrySpaceBinding {name}: Ready", log)) <= 2


def test_without_the_audit_the_impact_is_listed_on_the_spot_within_the_charts_rbac(
    setup: Setup, tmp_path: Path
) -> None:
    """The probe ``spacegate serve`` injects, as a release's ServiceAccount whose chart has
    the audit off: the chart's RBAC still lets it read the workloads a change strands."""
    core: Api = client.CoreV1Api(setup.api)
    release = f"rsb-probe-{uuid.uuid4().hex[:6]}"
    home = f"{release}-system"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=home)))
    rbac = chart_objects({}, release=release, namespace=home, kinds=RBAC_KINDS)
    apply_manifests(setup.plane, rbac)
    try:
        token = service_account_kubeconfig(
            setup.plane, home, f"{release}-spacegate", tmp_path / "sa.kubeconfig"
        )
        x = ws()
        x_dev, other = setup.namespace(x), setup.namespace(ws())
        setup.apply(binding(f"probe-{x}", [x]))
        setup.wait(lambda: setup.admitted(x_dev, "team-a"), "team-a bound to x")
        core.create_namespaced_pod(x_dev, pod("web", setup.image("team-a")))
        core.create_namespaced_pod(other, pod("elsewhere", setup.image("library")))
        snapshot = Snapshot.build(
            load_config(
                f"registries: [{{name: harbor, type: harbor, url: {setup.harbor.url},"
                " spaces: [{name: team-a, public: false}, {name: library, public: true}]}]\n"
            ),
            namespaces={x_dev: NamespaceInfo(x), other: NamespaceInfo("elsewhere")},
            binding_objects={"b": BindingObject("b", "harbor", "team-a", (x,))},
        )
        probe = ClusterImpactProbe(
            lambda: kube_config.new_client_from_config(config_file=str(token))  # type: ignore[no-untyped-call]
        )

        found = asyncio.run(
            probe.impact(snapshot, "harbor", "team-a", frozenset({x}), time.monotonic() + 10)
        )

        assert {w: (u.count, u.examples) for w, u in found.items()} == {
            x: (1, (f"{x_dev}/Pod/web",))
        }
    finally:
        core.delete_namespace(home)
        delete_manifests(setup.plane, [o for o in rbac if o["kind"].startswith("Cluster")])
