"""``spacegate audit``: what already runs in the cluster, judged like ``check`` judges manifests.

The cluster is the Kubernetes fake holding a Deployment (with the ReplicaSet and Pod it
owns), a CronJob and a bare Pod; the config declares its spaces, so no registry is called.
``tests/e2e/test_audit.py`` runs the same command against the real apiserver.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.kubernetes import FakeKubernetes
from tests.support.bindings import binding
from webhook.cli.audit import run
from webhook.cli.main import main

CONFIG = """
policy: {mode: enforce, unknownRegistry: allow, unknownSpace: deny}
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: library, public: true}, {name: team-a, public: false},
             {name: team-b, public: false}]
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
  - {registry: harbor, space: team-b, workspaces: ["102"]}
"""
UNBOUND = CONFIG.replace('  - {registry: harbor, space: team-a, workspaces: ["101"]}\n', "")
TEAM_A = "harbor.example.com/team-a/web:1"
PUBLIC = "harbor.example.com/library/nginx:1.27"

Audit = tuple[int, str, str]


def pod_spec(image: str) -> dict[str, Any]:
    return {"containers": [{"name": "app", "image": image}]}


def meta(namespace: str, name: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    owned = {"ownerReferences": [{**owner, "controller": True}]} if owner else {}
    return {"name": name, "namespace": namespace, **owned}


def reference(obj: dict[str, Any]) -> dict[str, Any]:
    """An ownerReference to ``obj`` (as stored: it has its uid)."""
    m = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": m["name"],
        "uid": m["uid"],
    }


PATHS = {
    "Deployment": "/apis/apps/v1/deployments",
    "ReplicaSet": "/apis/apps/v1/replicasets",
    "CronJob": "/apis/batch/v1/cronjobs",
    "Pod": "/api/v1/pods",
}


def create(cluster: FakeKubernetes, obj: dict[str, Any]) -> dict[str, Any]:
    """Store ``obj`` as a client's POST would, where its kind and namespace say."""
    return cluster.create_object(PATHS[obj["kind"]], obj["metadata"]["namespace"], obj)


@pytest.fixture
def workloads(cluster: FakeKubernetes) -> FakeKubernetes:
    """team-a-dev runs Deployment/web (team-a: allowed there) through its ReplicaSet and Pod;
    team-b-dev runs CronJob/report with the same image (refused: team-a is not bound to 102);
    sandbox runs Pod/debug from the public space."""
    web = create(
        cluster,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta("team-a-dev", "web"),
            "spec": {"template": {"spec": pod_spec(TEAM_A)}},
        },
    )
    replicas = create(
        cluster,
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": meta("team-a-dev", "web-5d9c", reference(web)),
            "spec": {"template": {"spec": pod_spec(TEAM_A)}},
        },
    )
    create(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta("team-a-dev", "web-5d9c-x2x", reference(replicas)),
            "spec": pod_spec(TEAM_A),
        },
    )
    create(
        cluster,
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta("team-b-dev", "report"),
            "spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec(TEAM_A)}}}},
        },
    )
    create(
        cluster,
        {"apiVersion": "v1", "kind": "Pod", "metadata": meta("sandbox", "debug")}
        | {"spec": pod_spec(PUBLIC)},
    )
    return cluster


def config_file(tmp_path: Path, text: str = CONFIG, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def audit(config: str, kubeconfig: Path | str, **options: Any) -> Audit:
    out, err = io.StringIO(), io.StringIO()
    code = run(
        config,
        namespace=options.pop("namespace", None),
        kubeconfig=str(kubeconfig),
        stdout=out,
        stderr=err,
        **options,
    )
    return code, out.getvalue(), err.getvalue()


def rows(table: str) -> list[tuple[str, str, str]]:
    """(namespace, workload, verdict) of each row of the table."""
    found = []
    for line in table.splitlines()[1:]:
        if not line.strip():
            break
        namespace, workload, _container, _image, verdict = line.split()[:5]
        found.append((namespace, workload, verdict))
    return found


# --------------------------------------------------------------------------- what runs


def test_each_workload_is_listed_once_with_the_verdict_admission_would_give(
    workloads: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    code, out, err = audit(config_file(tmp_path), kubeconfig)

    assert code == 1, err  # something running is refused
    assert rows(out) == [
        ("team-b-dev", "CronJob/report", "denied"),
        ("team-a-dev", "Deployment/web", "allowed"),
        ("sandbox", "Pod/debug", "allowed"),
    ]  # the ReplicaSet and Pod that Deployment/web owns are that Deployment
    assert "private space 'team-a' of registry 'harbor' is not bound to workspace 102" in out
    assert out.endswith("3 workloads checked: 2 admitted, 1 denied; 0 other objects skipped\n")
    assert err == ""


def test_json_output_has_one_object_per_workload_from_the_cluster(
    workloads: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    code, out, _ = audit(config_file(tmp_path), kubeconfig, output="json")

    assert code == 1
    entries = json.loads(out)
    assert [(e["kind"], e["namespace"], e["name"], e["allowed"]) for e in entries] == [
        ("CronJob", "team-b-dev", "report", False),
        ("Deployment", "team-a-dev", "web", True),
        ("Pod", "sandbox", "debug", True),
    ]
    assert {e["source"] for e in entries} == {"cluster"}
    assert entries[1]["workspace"] == "101"
    assert [c["image"] for c in entries[1]["containers"]] == [TEAM_A]


def test_one_namespace_is_audited_alone_and_all_admitted_exits_0(
    workloads: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    code, out, _ = audit(config_file(tmp_path), kubeconfig, namespace="team-a-dev")

    assert code == 0
    assert rows(out) == [("team-a-dev", "Deployment/web", "allowed")]
    namespaced = {r.path for r in workloads.requests if r.path.startswith("/api")}
    assert "/apis/batch/v1/namespaces/team-a-dev/cronjobs" in namespaced
    assert "/apis/batch/v1/cronjobs" not in namespaced  # nothing is read cluster-wide


def test_the_cluster_is_read_page_by_page(
    workloads: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    for n in range(600):  # more than one page of Pods
        create(
            workloads,
            {"apiVersion": "v1", "kind": "Pod", "metadata": meta("sandbox", f"batch-{n:03}")}
            | {"spec": pod_spec(PUBLIC)},
        )

    code, out, _ = audit(config_file(tmp_path), kubeconfig, output="json")

    assert code == 1
    assert len(json.loads(out)) == 3 + 600
    pods = [r for r in workloads.requests if r.path == "/api/v1/pods"]
    # the first page sized for the largest objects etcd stores, the next ones for these
    assert [r.params.get("limit") for r in pods] == ["2", "500", "500"]
    assert "continue" not in pods[0].params
    assert all(r.params.get("continue") for r in pods[1:])


def test_an_empty_cluster_exits_0(
    cluster: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    code, out, _ = audit(config_file(tmp_path), kubeconfig)

    assert code == 0
    assert out.endswith("0 workloads checked: 0 admitted, 0 denied; 0 other objects skipped\n")


# --------------------------------------------------------------------------- what-if


def test_what_if_lists_exactly_what_an_unbinding_would_refuse_that_runs_admitted_today(
    workloads: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    proposed = config_file(tmp_path, UNBOUND, "unbound.yaml")

    code, out, _ = audit(config_file(tmp_path), kubeconfig, what_if=proposed)

    assert code == 1
    # CronJob/report is refused today already, Pod/debug stays admitted: neither is listed.
    assert rows(out) == [("team-a-dev", "Deployment/web", "denied")]
    assert out.endswith(
        "1 workloads admitted today would be refused: 0 admitted, 1 denied; "
        "0 other objects skipped\n"
    )
    code, text, _ = audit(config_file(tmp_path), kubeconfig, what_if=proposed, output="json")
    assert code == 1
    assert [(e["name"], e["allowed"]) for e in json.loads(text)] == [("web", False)]


def test_what_if_with_an_unchanged_config_says_nothing_would_be_refused(
    workloads: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    same = config_file(tmp_path, CONFIG, "same.yaml")

    assert audit(config_file(tmp_path), kubeconfig, what_if=same) == (
        0,
        "nothing admitted today would be refused\n",
        "",
    )


def test_what_if_a_new_workspace_label_reads_the_namespaces_by_that_label(
    workloads: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    relabelled = config_file(tmp_path, "workspaceLabel: example.com/team\n" + CONFIG, "new.yaml")

    code, out, _ = audit(config_file(tmp_path), kubeconfig, what_if=relabelled)

    assert code == 1  # team-a-dev has no example.com/team label: it leaves workspace 101
    assert rows(out) == [("team-a-dev", "Deployment/web", "denied")]

    workloads.label_namespace("team-a-dev", {"example.com/team": "101"})
    assert audit(config_file(tmp_path), kubeconfig, what_if=relabelled)[:2] == (
        0,
        "nothing admitted today would be refused\n",
    )


# --------------------------------------------------------------------------- failures


def test_a_bad_config_or_proposed_config_is_usage_error_naming_it(
    cluster: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    broken = config_file(tmp_path, "registries: [{name: harbor}]\n", "broken.yaml")

    code, out, err = audit(broken, kubeconfig)
    assert (code, out) == (2, "")
    assert err.startswith("spacegate audit: config error: ")
    assert "broken.yaml" in err

    code, _, err = audit(config_file(tmp_path), kubeconfig, what_if=str(tmp_path / "none.yaml"))
    assert code == 2
    assert "spacegate audit: config error: " in err and "none.yaml" in err
    assert cluster.requests == []  # nothing was read before the input was known good


def test_a_missing_kubeconfig_is_usage_error_naming_the_file(tmp_path: Path) -> None:
    code, out, err = audit(config_file(tmp_path), tmp_path / "missing-kubeconfig")

    assert (code, out) == (2, "")
    assert err.startswith(f"spacegate audit: unusable kubeconfig {tmp_path / 'missing-kubeconfig'}")


def test_a_source_that_fails_is_named_and_nothing_is_judged(
    workloads: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    workloads.fail_next(5, status=403, path_prefix="/api/v1/namespaces")

    code, out, err = audit(config_file(tmp_path), kubeconfig)

    assert (code, out) == (1, "")
    assert err == (
        "spacegate audit: could not sync: namespaces: listing namespaces failed: "
        "HTTP 403 Forbidden: injected failure (403)\n"
    )


def test_a_kind_the_credentials_may_not_list_is_named_not_a_traceback(
    workloads: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    workloads.fail_next(1, status=403, path_prefix="/apis/batch/v1/cronjobs")

    code, out, err = audit(config_file(tmp_path), kubeconfig)

    assert (code, out) == (1, "")
    assert err == (
        "spacegate audit: reading the cluster failed: "
        "HTTP 403 GET /apis/batch/v1/cronjobs: injected failure (403)\n"
    )


def test_an_apiserver_that_goes_away_mid_audit_is_named_not_a_traceback(
    workloads: FakeKubernetes, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webhook.cli.audit

    judge = webhook.cli.audit._judge

    def judge_after_an_outage(*args: Any) -> Any:
        workloads.stop()  # after the namespaces were listed, before the workloads
        return judge(*args)

    monkeypatch.setattr(webhook.cli.audit, "_judge", judge_after_an_outage)

    code, out, err = audit(config_file(tmp_path), kubeconfig)

    assert (code, out) == (1, "")
    assert err.startswith("spacegate audit: reading the cluster failed: ")
    assert "Connection refused" in err
    assert "Traceback" not in err


def test_the_command_line_reaches_the_same_audit(
    workloads: FakeKubernetes, kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["audit", "--config", config_file(tmp_path), "--kubeconfig", str(kubeconfig)]

    assert main([*argv, "-n", "sandbox", "-o", "json"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == ["debug"]
    assert main([*argv, "-A"]) == 1
    assert "3 workloads checked" in capsys.readouterr().out


# --------------------------------------------------------------------------- what-if, binding objects

BINDINGS = "/apis/spacegate.io/v1alpha1/registryspacebindings"


@pytest.fixture
def bound_by_object(workloads: FakeKubernetes) -> FakeKubernetes:
    """team-a bound to 101 by a RegistrySpaceBinding, not by the config."""
    workloads.serve_resource(
        "spacegate.io/v1alpha1", "registryspacebindings", "RegistrySpaceBinding"
    )
    workloads.create_object(BINDINGS, "", binding("harbor-team-a", ["101"]))
    return workloads


def test_the_audit_judges_with_the_clusters_binding_objects(
    bound_by_object: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    code, out, err = audit(config_file(tmp_path, UNBOUND), kubeconfig)
    assert code == 1, err
    assert ("team-a-dev", "Deployment/web", "allowed") in rows(out)  # bound by the object


def test_what_if_a_binding_manifest_is_applied_lists_what_it_would_strand(
    bound_by_object: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "harbor-team-a.yaml"
    manifest.write_text(yaml.safe_dump(binding("harbor-team-a", ["102"])))

    code, out, _ = audit(config_file(tmp_path, UNBOUND), kubeconfig, what_if=str(manifest))

    assert code == 1
    assert rows(out) == [("team-a-dev", "Deployment/web", "denied")]  # 101 removed
    # ...and the CronJob of 102 that the manifest would admit is not a refusal: not listed.


def test_what_if_a_binding_is_deleted_lists_what_it_would_strand(
    bound_by_object: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    code, out, _ = audit(
        config_file(tmp_path, UNBOUND), kubeconfig, what_if_delete=["harbor-team-a"]
    )
    assert code == 1
    assert rows(out) == [("team-a-dev", "Deployment/web", "denied")]

    code, _, err = audit(config_file(tmp_path, UNBOUND), kubeconfig, what_if_delete=["nope"])
    assert code == 2
    assert "no RegistrySpaceBinding named nope in the cluster" in err


def test_a_bad_binding_manifest_is_usage_error_naming_the_field(
    bound_by_object: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump(binding("harbor-team-a", ["101", "101"])))

    code, out, err = audit(config_file(tmp_path, UNBOUND), kubeconfig, what_if=str(manifest))

    assert (code, out) == (2, "")
    assert "bad.yaml (document 1): RegistrySpaceBinding: spec.workspaces[1]: duplicate" in err
