"""The background audit and ``spacegate audit`` on the real apiserver: what already runs.

Admission only sees what is created from now on; these tests strand running workloads by
unbinding a space and watch what the audit makes of it. Setup, once for the module:

- the chart's PolicyReport CRD (``policyReports.installCRD``), applied through the API;
- a workspace-101 namespace with a Deployment (2 Pods made by the controllers), a Pod and a
  CronJob using the private ``team-a`` image, a Pod using a public image, a Pod another tool
  (Kyverno, by its label) already reports on under the Pod's bare UID, and reports a tenant
  wrote first under spacegate's own names (``spacegate-<uid>``): a "pass" for one Pod and
  one for a Pod the Deployment stands for;
- a workspace-102 namespace with a Deployment using ``team-b`` (bound to 102);
- spacegate as a local process with ``audit: {enabled: true, interval: 5s}``, running as the
  ServiceAccount of a chart release with ``config.audit.enabled`` (its ClusterRoles, Role and
  bindings applied, a TokenRequest token as identity, ``POD_NAMESPACE`` set as the chart's
  pod has it), so every read and write below is also a check of the chart's RBAC; and the
  chart's ValidatingAdmissionPolicy that keeps everyone else from writing spacegate's
  reports, applied after the tenant's reports were written.

The process audits the whole shared cluster (other tests' namespaces too), so assertions
about exact sets are made on this module's two namespaces.
"""

from __future__ import annotations

import io
import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import pytest
import yaml
from kubernetes import client

from policy.report import report_name
from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import Api, apply_manifests, chart_objects, delete_manifests, pod
from tests.support.metrics import metric_samples
from tests.support.namespaces import create_namespace
from tests.support.policy_reports import POLICY_REPORTS, policy_reports
from tests.support.scenario import CONFIG, MODE, PUBLIC, TEAM_A, TEAM_B, WS
from tests.support.service_accounts import PlaneAs, service_account_kubeconfig
from tests.support.spacegate import SpacegateProcess
from tests.support.waiting import eventually
from webhook.cli import audit as audit_cli

pytestmark = pytest.mark.e2e

T = TypeVar("T")

AUDIT = "audit: {enabled: true, interval: 5s}\n"
UNBOUND = CONFIG.replace('  - {registry: harbor, space: team-a, workspaces: ["101"]}\n', "")
VIOLATIONS = "spacegate_audit_violations"
LAST_RUN = "spacegate_audit_last_run_timestamp_seconds"
MANAGED_BY = "app.kubernetes.io/managed-by"
# What the unbinding strands in the workspace-101 namespace: everything using team-a.
STRANDED = {"Deployment/web", "Pod/solo", "CronJob/nightly", "Pod/claimed"}
OURS_IN_A = {"Deployment/web", "Pod/solo", "CronJob/nightly", "Pod/public", "Pod/claimed"}
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
GUARD_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
REPLACED = "spacegate_audit_reports_replaced_total"


@dataclass
class Cluster:
    """What the module set up, and where."""

    plane: ControlPlane
    process: SpacegateProcess
    team_a: str  # workspace 101
    team_b: str  # workspace 102
    home: str  # the release namespace: the Lease, the ServiceAccount
    service_account: str
    token_kubeconfig: Path
    bound: Path  # CONFIG, for the CLI
    unbound: Path  # CONFIG without the team-a binding, for the CLI
    uids: dict[str, str] = field(default_factory=dict)  # "Kind/name" -> uid, both namespaces
    owned: set[str] = field(default_factory=set)  # uids of the web Deployment's RS and Pods
    foreign_version: str = ""
    release: str = ""

    def wait(self, check: Callable[[], T | None], what: str, timeout: float = 30) -> T:
        """``eventually``, with the process's log when it times out."""
        try:
            return eventually(check, what, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nspacegate log:\n{self.process.tail()}") from None


def _deployment(name: str, image: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def _cron_job(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [{"name": "job", "image": image}],
                        }
                    }
                }
            },
        },
    }


def _admitted(api_client: client.ApiClient, namespace: str, image: str) -> bool:
    """A dry-run Pod passes admission (whether or not the shared webhooks are installed)."""
    core: Api = client.CoreV1Api(api_client)
    try:
        core.create_namespaced_pod(namespace, pod("probe", image), dry_run="All")
    except client.exceptions.ApiException:
        return False
    return True


def _foreign_report(namespace: str, target: Any) -> dict[str, Any]:
    """Another tool's report in the slot spacegate would use for ``target`` (its UID)."""
    reference = {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": namespace,
        "name": target.metadata.name,
        "uid": target.metadata.uid,
    }
    return {
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {
            "name": target.metadata.uid,
            "namespace": namespace,
            "labels": {MANAGED_BY: "kyverno"},
        },
        "scope": reference,
        "summary": {"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0},
        "results": [
            {
                "source": "kyverno",
                "policy": "require-labels",
                "result": "pass",
                "resources": [reference],
                "message": "labels are present",
            }
        ],
    }


def _squatter(namespace: str, name: str, uid: str, result: str) -> dict[str, Any]:
    """A tenant's report under the name spacegate uses for Pod ``name``, saying ``result``."""
    reference = {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": namespace,
        "name": name,
        "uid": uid,
    }
    return {
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {"name": report_name(uid), "namespace": namespace},
        "scope": reference,
        "summary": {
            "pass": int(result == "pass"),
            "fail": int(result == "fail"),
            "warn": 0,
            "error": 0,
            "skip": 0,
        },
        "results": [
            {
                "source": "spacegate",
                "policy": "registry-space-visibility",
                "result": result,
                "resources": [reference],
                "message": "approved by the tenant",
            }
        ],
    }


@pytest.fixture(scope="module")
def cluster(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    policy_report_crd: dict[str, object],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    del policy_report_crd  # installed: that is all this fixture needs of it
    plane = control_plane
    workdir = tmp_path_factory.mktemp("audit")
    core: Api = client.CoreV1Api(api_client)
    apps: Api = client.AppsV1Api(api_client)
    batch: Api = client.BatchV1Api(api_client)

    # The chart's RBAC for a release with the audit on, in a namespace of its own.
    release = f"audit-{uuid.uuid4().hex[:6]}"
    home = f"{release}-system"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=home)))
    rbac = chart_objects(
        {"config": {"audit": {"enabled": True}}}, release=release, namespace=home, kinds=RBAC_KINDS
    )
    names = {(o["kind"], o["metadata"]["name"]) for o in rbac}
    assert {
        ("ClusterRole", f"{release}-spacegate-audit"),
        ("Role", f"{release}-spacegate-leader"),
    } <= names
    apply_manifests(plane, rbac)
    service_account = f"{release}-spacegate"
    token = service_account_kubeconfig(plane, home, service_account, workdir / "sa.kubeconfig")

    team_a = create_namespace(api_client, {WS: "101"})
    team_b = create_namespace(api_client, {WS: "102"})
    guard: list[dict[str, Any]] = []
    try:
        # If the shared webhooks are installed, wait until their spacegate knows the namespaces.
        eventually(lambda: _admitted(api_client, team_a, TEAM_A), f"{team_a} to admit team-a")
        eventually(lambda: _admitted(api_client, team_b, TEAM_B), f"{team_b} to admit team-b")
        uids = {
            "Deployment/web": apps.create_namespaced_deployment(
                team_a, _deployment("web", TEAM_A, 2)
            ).metadata.uid,
            "Pod/solo": core.create_namespaced_pod(team_a, pod("solo", TEAM_A)).metadata.uid,
            "CronJob/nightly": batch.create_namespaced_cron_job(
                team_a, _cron_job("nightly", TEAM_A)
            ).metadata.uid,
            "Pod/public": core.create_namespaced_pod(team_a, pod("public", PUBLIC)).metadata.uid,
            "Deployment/api": apps.create_namespaced_deployment(
                team_b, _deployment("api", TEAM_B, 1)
            ).metadata.uid,
        }
        claimed = core.create_namespaced_pod(team_a, pod("claimed", TEAM_A))
        uids["Pod/claimed"] = claimed.metadata.uid
        with plane.http_client() as http:
            made = http.post(
                f"{POLICY_REPORTS}/namespaces/{team_a}/policyreports",
                json=_foreign_report(team_a, claimed),
            )
        assert made.status_code == 201, made.text
        foreign_version = made.json()["metadata"]["resourceVersion"]
        solo = core.read_namespaced_pod("solo", team_a)  # a tenant's "pass" awaits it

        def owned() -> set[str] | None:
            pods = core.list_namespaced_pod(team_a, label_selector="app=web").items
            sets = apps.list_namespaced_replica_set(team_a, label_selector="app=web").items
            if len(pods) != 2 or len(sets) != 1:
                return None
            return {p.metadata.uid for p in pods} | {sets[0].metadata.uid}

        owned_uids = eventually(owned, "the controllers to create the web ReplicaSet and Pods")
        web_pod = core.list_namespaced_pod(team_a, label_selector="app=web").items[0]
        with plane.http_client() as http:  # before the chart's policy forbids it
            for squatter in (
                _squatter(team_a, "solo", solo.metadata.uid, "pass"),
                _squatter(team_a, web_pod.metadata.name, web_pod.metadata.uid, "fail"),
            ):
                made = http.post(
                    f"{POLICY_REPORTS}/namespaces/{team_a}/policyreports", json=squatter
                )
                assert made.status_code == 201, made.text
        guard += chart_objects(
            {"config": {"audit": {"enabled": True}}},
            release=release,
            namespace=home,
            kinds=GUARD_KINDS,
        )
        assert len(guard) == 2
        apply_manifests(plane, guard)

        bound, unbound = workdir / "bound.yaml", workdir / "unbound.yaml"
        bound.write_text(CONFIG)
        unbound.write_text(UNBOUND)
        process = SpacegateProcess(
            cast(ControlPlane, PlaneAs(plane, token)), workdir, CONFIG + AUDIT
        )
        state = Cluster(
            plane,
            process,
            team_a,
            team_b,
            home,
            service_account,
            token,
            bound,
            unbound,
            uids,
            owned_uids,
            foreign_version,
            release,
        )
        with pytest.MonkeyPatch.context() as env:
            env.setenv("POD_NAMESPACE", home)  # the chart sets it through the downward API
            process.start()
        try:
            state.wait(
                lambda: (
                    _outcomes(state, team_a).keys() >= OURS_IN_A
                    and _outcomes(state, team_b).keys() >= {"Deployment/api"}
                ),
                "the first audit pass to write the reports",
            )
            yield state
        finally:
            process.stop()
    finally:
        for name in (team_a, team_b, home):
            core.delete_namespace(name)
        delete_manifests(plane, [o for o in rbac if o["kind"].startswith("Cluster")])
        delete_manifests(plane, guard)


# --------------------------------------------------------------------------- reading results


def _ours(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    """spacegate's reports in ``namespace``, by the "Kind/name" of the workload they are on."""
    return {
        f"{r['scope']['kind']}/{r['scope']['name']}": r
        for r in policy_reports(cluster.plane, namespace).values()
        if r["metadata"].get("labels", {}).get(MANAGED_BY) == "spacegate"
    }


def _outcomes(cluster: Cluster, namespace: str) -> dict[str, str]:
    """ "Kind/name" -> the result of its one image, for spacegate's reports in ``namespace``."""
    return {
        workload: ",".join(r["result"] for r in report["results"])
        for workload, report in _ours(cluster, namespace).items()
    }


def _versions(cluster: Cluster, *namespaces: str) -> dict[str, str]:
    """Report name -> resourceVersion, every report (ours or not) in ``namespaces``."""
    return {
        name: report["metadata"]["resourceVersion"]
        for namespace in namespaces
        for name, report in policy_reports(cluster.plane, namespace).items()
    }


def _violations(cluster: Cluster) -> dict[str, float]:
    """namespace -> ``spacegate_audit_violations`` for registry harbor, space team-a."""
    found = {}
    for labels, value in metric_samples(cluster.process, VIOLATIONS).items():
        named = dict(labels)
        if (named["registry"], named["space"]) == ("harbor", "team-a"):
            found[named["namespace"]] = value
    return found


def _cli(
    config: Path,
    *,
    namespace: str | None,
    output: str = "json",
    what_if: Path | None = None,
    kubeconfig: Path,
) -> tuple[int, str]:
    """``spacegate audit`` in this process: (exit code, stdout)."""
    out, err = io.StringIO(), io.StringIO()
    code = audit_cli.run(
        str(config),
        namespace=namespace,
        output=output,
        what_if=None if what_if is None else str(what_if),
        kubeconfig=str(kubeconfig),
        stdout=out,
        stderr=err,
    )
    assert err.getvalue() == ""
    return code, out.getvalue()


def _listed(text: str, *namespaces: str) -> dict[str, bool]:
    """ "Kind/name" -> allowed, for the JSON entries in ``namespaces``."""
    return {
        f"{e['kind']}/{e['name']}": e["allowed"]
        for e in json.loads(text)
        if e["namespace"] in namespaces
    }


def _last_run(cluster: Cluster) -> float:
    samples = metric_samples(cluster.process, LAST_RUN)
    return samples.get(frozenset(), 0.0)


# --------------------------------------------------------------------------- tests


def test_each_workload_gets_one_passing_report_and_a_deployments_pods_get_none(
    cluster: Cluster,
) -> None:
    reports = policy_reports(cluster.plane, cluster.team_a)
    ours = {report_name(cluster.uids[w]) for w in OURS_IN_A}
    kyvernos = cluster.uids["Pod/claimed"]  # another tool's, under the bare UID

    # nothing for the ReplicaSet or its two Pods (the tenant's report on one is gone)
    assert set(reports) == ours | {kyvernos}
    names_b = set(policy_reports(cluster.plane, cluster.team_b))
    assert not {report_name(uid) for uid in cluster.owned} & (names_b | set(reports))
    assert _outcomes(cluster, cluster.team_a) == dict.fromkeys(OURS_IN_A, "pass")
    assert _outcomes(cluster, cluster.team_b) == {"Deployment/api": "pass"}

    web = _ours(cluster, cluster.team_a)["Deployment/web"]
    uid = cluster.uids["Deployment/web"]
    reference = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": cluster.team_a,
        "name": "web",
        "uid": uid,
    }
    assert web["metadata"]["name"] == f"spacegate-{uid}"
    assert web["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": uid}
    ]
    assert web["scope"] == reference
    assert web["summary"] == {"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0}
    (result,) = web["results"]
    assert (result["source"], result["policy"], result["result"]) == (
        "spacegate",
        "registry-space-visibility",
        "pass",
    )
    assert result["resources"] == [reference]
    assert result["properties"] == {
        "image": TEAM_A,
        "source": "container",
        "name": "app",
        "workspace": "101",
        "registry": "harbor",
        "space": "team-a",
    }


def test_an_unbinding_fails_exactly_the_stranded_workloads_until_the_space_is_bound_again(
    cluster: Cluster,
) -> None:
    before_b = _versions(cluster, cluster.team_b)
    assert cluster.team_a not in _violations(cluster)

    cluster.process.write_config(UNBOUND + AUDIT)
    try:
        expected = {w: "fail" if w in STRANDED else "pass" for w in OURS_IN_A}
        cluster.wait(
            lambda: _outcomes(cluster, cluster.team_a) == expected,
            "the stranded workloads' reports to fail",
        )
        solo = _ours(cluster, cluster.team_a)["Pod/solo"]
        assert solo["summary"]["fail"] == 1
        (result,) = solo["results"]
        assert result["severity"] == "high"
        assert result["message"].startswith(
            f'container "c0" image "{TEAM_A}" is not allowed in namespace {cluster.team_a} '
            "(workspace 101): "
        )
        assert "team-a" in result["message"]

        # One violation per stranded workload (the Deployment's Pods are its one), in that
        # namespace only.
        cluster.wait(
            lambda: _violations(cluster).get(cluster.team_a) == len(STRANDED),
            f"{VIOLATIONS} for {cluster.team_a} to reach {len(STRANDED)}",
        )
        assert cluster.team_b not in _violations(cluster)

        # The CLI with the unbound config says the same.
        code, text = _cli(
            cluster.unbound, namespace=cluster.team_a, kubeconfig=cluster.plane.kubeconfig
        )
        assert code == 1
        assert _listed(text, cluster.team_a) == {
            **dict.fromkeys(STRANDED, False),
            "Pod/public": True,
        }
        assert (
            _cli(cluster.unbound, namespace=cluster.team_b, kubeconfig=cluster.plane.kubeconfig)[0]
            == 0
        )

        assert _versions(cluster, cluster.team_b) == before_b  # nothing changed there
        foreign = policy_reports(cluster.plane, cluster.team_a)[cluster.uids["Pod/claimed"]]
        assert foreign["metadata"]["resourceVersion"] == cluster.foreign_version
    finally:
        cluster.process.write_config(CONFIG + AUDIT)

    cluster.wait(
        lambda: _outcomes(cluster, cluster.team_a) == dict.fromkeys(OURS_IN_A, "pass"),
        "the reports to pass again after the rebinding",
    )
    cluster.wait(
        lambda: cluster.team_a not in _violations(cluster),
        f"{VIOLATIONS} for {cluster.team_a} to go away",
    )
    assert _versions(cluster, cluster.team_b) == before_b


def test_what_if_an_unbinding_lists_exactly_the_workloads_it_would_strand(
    cluster: Cluster,
) -> None:
    kubeconfig = cluster.plane.kubeconfig
    code, text = _cli(cluster.bound, namespace=None, what_if=cluster.unbound, kubeconfig=kubeconfig)

    assert code == 1
    assert _listed(text, cluster.team_a, cluster.team_b) == dict.fromkeys(STRANDED, False)
    # Across the whole (shared) cluster, everything listed is refused for its team-a image.
    for entry in json.loads(text):
        assert not entry["allowed"]
        assert any(
            c["image"].startswith("harbor.demo.local/team-a/") and c["verdict"] == "denied"
            for c in entry["containers"]
        )

    code, table = _cli(
        cluster.bound,
        namespace=cluster.team_a,
        what_if=cluster.unbound,
        output="table",
        kubeconfig=kubeconfig,
    )
    assert code == 1
    assert "4 workloads admitted today would be refused: 0 admitted, 4 denied" in table
    for workload in STRANDED:
        assert workload in table


def test_what_if_with_an_unchanged_config_lists_nothing(cluster: Cluster) -> None:
    same = cluster.bound.with_name("same.yaml")
    same.write_text(CONFIG)

    code, text = _cli(
        cluster.bound,
        namespace=None,
        what_if=same,
        output="table",
        kubeconfig=cluster.plane.kubeconfig,
    )

    assert (code, text) == (0, "nothing admitted today would be refused\n")


def test_later_passes_rewrite_no_unchanged_report_and_never_a_foreign_one(
    cluster: Cluster,
) -> None:
    versions = _versions(cluster, cluster.team_a, cluster.team_b)
    foreign = policy_reports(cluster.plane, cluster.team_a)[cluster.uids["Pod/claimed"]]
    first = cluster.wait(
        lambda: (t := _last_run(cluster)) > time.time() - 0.5 and t,
        "an audit pass to finish",
        timeout=15,
    )
    cluster.wait(lambda: _last_run(cluster) > first, "another audit pass to finish", timeout=15)

    assert _versions(cluster, cluster.team_a, cluster.team_b) == versions
    after = policy_reports(cluster.plane, cluster.team_a)[cluster.uids["Pod/claimed"]]
    assert after == foreign
    assert after["metadata"]["labels"] == {MANAGED_BY: "kyverno"}
    assert after["metadata"]["resourceVersion"] == cluster.foreign_version


def test_the_auditor_holds_the_lease_with_the_charts_rbac_and_no_more(cluster: Cluster) -> None:
    with cluster.plane.http_client() as http:
        lease = http.get(
            f"/apis/coordination.k8s.io/v1/namespaces/{cluster.home}/leases/spacegate-provisioner"
        )
    assert lease.status_code == 200
    assert lease.json()["spec"]["holderIdentity"]
    assert metric_samples(cluster.process, "spacegate_leader") == {frozenset(): 1.0}

    # The ServiceAccount the process runs as may read Pods but not Secrets.
    token = yaml.safe_load(cluster.token_kubeconfig.read_text())["users"][0]["user"]["token"]
    verify = ssl.create_default_context(cafile=str(cluster.plane.ca_cert))
    with httpx.Client(
        base_url=cluster.plane.server, verify=verify, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        assert http.get("/api/v1/pods?limit=1").status_code == 200
        assert http.get("/api/v1/secrets?limit=1").status_code == 403
        assert http.get(f"{POLICY_REPORTS}/policyreports?limit=1").status_code == 200


def test_a_namespace_stuck_terminating_does_not_stop_the_audit(
    cluster: Cluster, api_client: client.ApiClient
) -> None:
    core: Api = client.CoreV1Api(api_client)
    stuck = create_namespace(api_client, {WS: "101"})
    eventually(lambda: _admitted(api_client, stuck, TEAM_A), f"{stuck} to admit team-a")
    held = pod("held", TEAM_A)
    held["metadata"]["finalizers"] = ["e2e.spacegate.io/hold"]  # keeps it, and the namespace
    core.create_namespaced_pod(stuck, held)
    core.delete_namespace(stuck)
    try:
        # The namespace controller deletes what it can (a report already written too).
        cluster.wait(
            lambda: (
                core.read_namespace(stuck).status.phase == "Terminating"
                and not policy_reports(cluster.plane, stuck)
            ),
            f"{stuck} to be emptied",
        )
        since = time.time()
        cluster.wait(
            lambda: _last_run(cluster) > since,
            "an audit pass to finish while a namespace is stuck terminating",
            timeout=15,
        )
    finally:
        core.patch_namespaced_pod("held", stuck, {"metadata": {"finalizers": None}})


def test_a_pod_adopted_by_an_owner_loses_its_own_report(
    cluster: Cluster, api_client: client.ApiClient
) -> None:
    core: Api = client.CoreV1Api(api_client)
    apps: Api = client.AppsV1Api(api_client)
    adopting = create_namespace(api_client, {WS: "101"})
    try:
        eventually(lambda: _admitted(api_client, adopting, TEAM_A), f"{adopting} to admit team-a")
        orphan = pod("orphan", TEAM_A)
        orphan["metadata"]["labels"] = {"app": "adopted"}
        uid = core.create_namespaced_pod(adopting, orphan).metadata.uid
        cluster.wait(
            lambda: report_name(uid) in policy_reports(cluster.plane, adopting),
            "the orphan Pod's report",
        )
        replica_set = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "adopter"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "adopted"}},
                "template": {
                    "metadata": {"labels": {"app": "adopted"}},
                    "spec": {"containers": [{"name": "c0", "image": TEAM_A}]},
                },
            },
        }
        owner = apps.create_namespaced_replica_set(adopting, replica_set).metadata.uid
        cluster.wait(
            lambda: any(
                r.uid == owner and r.controller
                for r in core.read_namespaced_pod("orphan", adopting).metadata.owner_references
                or []
            ),
            "the ReplicaSet to adopt the Pod",
        )
        cluster.wait(
            lambda: report_name(owner) in policy_reports(cluster.plane, adopting),
            "the ReplicaSet's report",
        )
        since = time.time()
        cluster.wait(lambda: _last_run(cluster) > since, "a pass after the adoption")

        assert report_name(uid) not in policy_reports(cluster.plane, adopting)
    finally:
        core.delete_namespace(adopting)


# --------------------------------------------------------------------------- reports are spacegate's


def test_what_a_tenant_wrote_under_spacegates_names_was_replaced_or_deleted(
    cluster: Cluster,
) -> None:
    solo = policy_reports(cluster.plane, cluster.team_a)[report_name(cluster.uids["Pod/solo"])]

    assert solo["metadata"]["labels"] == {MANAGED_BY: "spacegate"}
    assert solo["metadata"]["ownerReferences"][0]["uid"] == cluster.uids["Pod/solo"]
    assert [r["message"] for r in solo["results"]] == [
        "private space 'team-a' of registry 'harbor' is bound to workspace 101"
    ]
    # the one on a Pod its Deployment stands for is gone; counted where one was replaced
    assert not {report_name(uid) for uid in cluster.owned} & set(
        policy_reports(cluster.plane, cluster.team_a)
    )
    assert metric_samples(cluster.process, REPLACED)[frozenset()] >= 1
    assert "stands under spacegate's name but spacegate did not write it" in (
        cluster.process.log.read_text(errors="replace")
    )


def _tenant_rbac(namespace: str, user: str) -> list[dict[str, Any]]:
    """What a namespace admin gets where a policy engine lets tenants write PolicyReports."""
    meta = {"name": "e2e-report-writer", "namespace": namespace}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [
                {
                    "apiGroups": ["wgpolicyk8s.io"],
                    "resources": ["policyreports"],
                    "verbs": ["get", "list", "create", "update", "patch", "delete"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "e2e-report-writer",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    ]


def test_the_charts_policy_lets_no_one_but_spacegate_write_its_reports(cluster: Cluster) -> None:
    plane, namespace = cluster.plane, cluster.team_a
    tenant = plane.mint_client_cert("report-tenant", ["e2e-tenants"])
    apply_manifests(plane, _tenant_rbac(namespace, tenant.user))
    collection = f"{POLICY_REPORTS}/namespaces/{namespace}/policyreports"
    public = report_name(cluster.uids["Pod/public"])
    with plane.http_client(tenant) as http:
        # the tenant may write reports (another tool's kind of name): its RBAC is in place
        other_uid = str(uuid.uuid4())
        other = _squatter(namespace, "other", other_uid, "pass")
        other["metadata"]["name"] = other_uid
        other["results"][0]["source"] = "kyverno"
        cluster.wait(
            lambda: http.post(collection, json=other).status_code == 201,
            "the tenant's RBAC to take effect",
        )

        target = cluster.uids["Pod/public"]
        squat = http.post(collection, json=_squatter(namespace, "public", target, "fail"))
        theirs = http.get(f"{collection}/{public}").json()
        theirs["results"][0]["result"] = "fail"
        edited = http.put(f"{collection}/{public}", json=theirs)
        worn = _squatter(namespace, "x", str(uuid.uuid4()), "pass")
        worn["metadata"] = {"name": "looks-like-ours", "labels": {MANAGED_BY: "spacegate"}}
        labelled = http.post(collection, json=worn)
        # spacegate's verdict on the tenant's Pod, in a report of the tenant's own name
        claim = _squatter(namespace, "public", target, "pass")
        claim["metadata"] = {"name": "tenant-says"}
        sourced = http.post(collection, json=claim)

    for answer in (squat, edited, labelled, sourced):
        assert answer.status_code == 403, answer.text
        assert "only spacegate (system:serviceaccount:" in answer.json()["message"]
        assert (
            f":{cluster.release}-spacegate) writes spacegate's policy reports"
            in (answer.json()["message"])
        )
    assert policy_reports(plane, namespace)[public]["results"][0]["result"] == "pass"


def test_without_the_charts_policy_a_tenants_edit_is_undone_by_the_next_pass(
    cluster: Cluster,
) -> None:
    plane, namespace = cluster.plane, cluster.team_a
    binding = next(o for o in cluster_guard(cluster) if o["kind"].endswith("Binding"))
    delete_manifests(plane, [binding])
    tenant = plane.mint_client_cert("report-tenant", ["e2e-tenants"])
    apply_manifests(plane, _tenant_rbac(namespace, tenant.user))
    public = report_name(cluster.uids["Pod/public"])
    path = f"{POLICY_REPORTS}/namespaces/{namespace}/policyreports/{public}"
    replaced = metric_samples(cluster.process, REPLACED)[frozenset()]
    try:
        with plane.http_client(tenant) as http:

            def forged() -> bool:
                theirs = http.get(path).json()
                theirs["metadata"]["labels"] = {"tenant": "was-here"}
                theirs["results"][0]["result"] = "fail"
                return bool(http.put(path, json=theirs).status_code == 200)

            cluster.wait(forged, "the tenant's edit to pass once the policy is unbound")
        cluster.wait(
            lambda: (
                (r := policy_reports(plane, namespace)[public])["metadata"].get("labels")
                == {MANAGED_BY: "spacegate"}
                and r["results"][0]["result"] == "pass"
            ),
            "the next pass to put spacegate's report back",
        )
        cluster.wait(
            lambda: metric_samples(cluster.process, REPLACED)[frozenset()] > replaced,
            f"{REPLACED} to count it once the pass is published",
        )
    finally:
        apply_manifests(plane, [binding])


def cluster_guard(cluster: Cluster) -> list[dict[str, Any]]:
    """The chart's report policy and binding of this module's release."""
    home = f"{cluster.release}-system"
    return chart_objects(
        {"config": {"audit": {"enabled": True}}},
        release=cluster.release,
        namespace=home,
        kinds=GUARD_KINDS,
    )


# --------------------------------------------------------------------------- what runs


@dataclass
class Masks:
    """A namespace where images run that the workloads owning them no longer show."""

    namespace: str
    uids: dict[str, str]


@pytest.fixture(scope="module")
def masks(cluster: Cluster, api_client: client.ApiClient) -> Iterator[Masks]:
    """Workspace 101 in audit mode (admission admits what the rules refuse, so ``team-b``
    images run there): a Pod with a forged ownerReference to a public Deployment; the Pod of
    an ``OnDelete`` StatefulSet whose template then moved to a public image; and a paused
    Deployment whose template moved to a public image, its ReplicaSet and Pod still on
    ``team-b``."""
    core: Api = client.CoreV1Api(api_client)
    apps: Api = client.AppsV1Api(api_client)
    namespace = create_namespace(api_client, {WS: "101", MODE: "audit"})
    try:
        eventually(lambda: _admitted(api_client, namespace, TEAM_B), f"{namespace} in audit mode")
        uids: dict[str, str] = {}
        mask = apps.create_namespaced_deployment(namespace, _deployment("mask", PUBLIC, 1))
        uids["Deployment/mask"] = mask.metadata.uid
        forged = pod("forged", TEAM_B)
        forged["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "mask",
                "uid": mask.metadata.uid,
                "controller": True,
            }
        ]
        uids["Pod/forged"] = core.create_namespaced_pod(namespace, forged).metadata.uid

        db = _stateful_set("db", TEAM_B)
        uids["StatefulSet/db"] = apps.create_namespaced_stateful_set(namespace, db).metadata.uid
        db_0 = eventually(
            lambda: _pod_named(core, namespace, "db-0"), "the StatefulSet controller's db-0"
        )
        uids["Pod/db-0"] = db_0.metadata.uid
        apps.patch_namespaced_stateful_set("db", namespace, _image_patch(PUBLIC))

        frozen = apps.create_namespaced_deployment(namespace, _deployment("frozen", TEAM_B, 1))
        uids["Deployment/frozen"] = frozen.metadata.uid

        def frozen_set() -> Any:
            sets = apps.list_namespaced_replica_set(namespace, label_selector="app=frozen").items
            pods = core.list_namespaced_pod(namespace, label_selector="app=frozen").items
            return sets[0] if len(sets) == 1 and len(pods) == 1 else None

        replica_set = eventually(frozen_set, "the frozen Deployment's ReplicaSet and Pod")
        uids[f"ReplicaSet/{replica_set.metadata.name}"] = replica_set.metadata.uid
        apps.patch_namespaced_deployment("frozen", namespace, {"spec": {"paused": True}})
        apps.patch_namespaced_deployment("frozen", namespace, _image_patch(PUBLIC))
        time_to_roll = time.monotonic() + 3  # a paused Deployment creates no ReplicaSet
        while time.monotonic() < time_to_roll:
            assert len(apps.list_namespaced_replica_set(namespace).items) == 2
            time.sleep(0.5)
        yield Masks(namespace, uids)
    finally:
        core.delete_namespace(namespace)


def _stateful_set(name: str, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def _image_patch(image: str) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}


def _pod_named(core: Api, namespace: str, name: str) -> Any:
    try:
        return core.read_namespaced_pod(name, namespace)
    except client.exceptions.ApiException:
        return None


def test_running_images_no_owner_shows_are_reported_on_their_own(
    cluster: Cluster, masks: Masks
) -> None:
    ns = masks.namespace
    replica_set = next(w for w in masks.uids if w.startswith("ReplicaSet/"))
    expected = {
        "Deployment/mask": "pass",
        "Pod/forged": "fail",  # a forged ownerReference hides nothing
        "StatefulSet/db": "pass",
        "Pod/db-0": "fail",  # OnDelete: still the old template's image
        "Deployment/frozen": "pass",
        replica_set: "fail",  # paused: its Pod runs its template, which is not the Deployment's
    }
    cluster.wait(lambda: _outcomes(cluster, ns) == expected, "the reports of what runs in " + ns)
    cluster.wait(
        lambda: (
            metric_samples(cluster.process, VIOLATIONS).get(
                frozenset({("namespace", ns), ("registry", "harbor"), ("space", "team-b")})
            )
            == 3
        ),
        f"{VIOLATIONS} to count the three hidden team-b images in {ns}",
    )
    # the CLI shows the same rows (the namespace's audit mode admits, so the verdicts are
    # "audited" where the background audit says fail)
    code, text = _cli(cluster.bound, namespace=ns, kubeconfig=cluster.plane.kubeconfig)
    verdicts = {
        f"{e['kind']}/{e['name']}": ",".join(c["verdict"] for c in e["containers"])
        for e in json.loads(text)
    }
    assert verdicts == {w: "allowed" if r == "pass" else "audited" for w, r in expected.items()}
    assert code == 0
