"""The webhook pods: hardened, highly available, and wired to the files the server reads."""

from __future__ import annotations

from typing import Any

import pytest

from policy.config import load_config
from tests.charts.chartlib import CHART_DIR, FULLNAME, NAMESPACE, PROVISIONING, Rendered
from tests.charts.conftest import Render

CONFIG_DIR = "/etc/spacegate"


def _projected(rendered: Rendered) -> dict[str, Any]:
    (volume,) = [v for v in rendered.pod_spec["volumes"] if "projected" in v]
    return dict(volume)


def _mounted_paths(rendered: Rendered) -> set[str]:
    """Every file path the projected volume provides, as the container sees it."""
    sources = _projected(rendered)["projected"]["sources"]
    return {
        f"{CONFIG_DIR}/{item['path']}"
        for source in sources
        for ref in source.values()
        for item in ref["items"]
    }


# ------------------------------------------------------------------------- the server command


def test_container_runs_spacegate_serve_with_the_mounted_config_and_cert_dir(
    default: Rendered,
) -> None:
    container = default.container
    assert container["command"] + container["args"] == [
        "spacegate",
        "serve",
        "--config",
        f"{CONFIG_DIR}/config.yaml",
        "--cert-dir",
        f"{CONFIG_DIR}/tls",
        "--port",
        "8443",
        # The server binds 127.0.0.1 by default: unreachable for the Service and the probes.
        "--host",
        "0.0.0.0",
        # /metrics needs a token allowed to get it; the image selector listens on 8444.
        "--metrics-auth",
        "on",
        "--selector-port",
        "8444",
    ]
    paths = _mounted_paths(default)
    assert f"{CONFIG_DIR}/config.yaml" in paths
    assert {f"{CONFIG_DIR}/tls/{k}" for k in ("tls.crt", "tls.key", "ca.crt")} <= paths


def test_image_defaults_to_the_charts_app_version_and_a_digest_pins_it(render: Render) -> None:
    app_version = (CHART_DIR / "Chart.yaml").read_text().split('appVersion: "')[1].split('"')[0]
    assert render({}).container["image"] == f"spacegate/spacegate:{app_version}"
    digest = "sha256:" + "a" * 64
    pinned = render({"image": {"digest": digest, "tag": "ignored"}})
    assert pinned.container["image"] == f"spacegate/spacegate@{digest}"


@pytest.mark.parametrize(
    ("path", "probe"),
    [("/healthz", "livenessProbe"), ("/readyz?exclude=staleness", "readinessProbe")],
)
def test_probes_use_https_on_the_serving_port(default: Rendered, path: str, probe: str) -> None:
    get = default.container[probe]["httpGet"]
    assert get == {"path": path, "port": "https", "scheme": "HTTPS"}


def test_stale_registry_data_does_not_make_pods_unready_by_default(default: Rendered) -> None:
    """A registry outage makes every replica stale at once; unready, they would empty the
    Service and a fail-closed webhook would reject every pod write in the cluster."""
    assert default.container["readinessProbe"]["httpGet"]["path"] == "/readyz?exclude=staleness"
    assert "checkStaleness" not in default.notes


def test_check_staleness_probes_plain_readyz_and_warns_when_a_webhook_fails_closed(
    render: Render,
) -> None:
    strict = render({"readinessProbe": {"checkStaleness": True}})
    assert strict.container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "https",
        "scheme": "HTTPS",
    }
    assert "WARNING: readinessProbe.checkStaleness=true with failurePolicy=Fail" in strict.notes
    fail_open = render(
        {
            "readinessProbe": {"checkStaleness": True},
            "webhook": {
                "validating": {"failurePolicy": "Ignore"},
                "mutating": {"failurePolicy": "Ignore"},
            },
        }
    )
    assert fail_open.container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "WARNING" not in fail_open.notes


# ------------------------------------------------------------------------- hardening


def test_pod_runs_as_non_root_with_runtime_default_seccomp(any_render: Rendered) -> None:
    pod = any_render.pod_spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == pod["runAsGroup"] == pod["fsGroup"] == 65532
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}


def test_container_is_read_only_unprivileged_and_drops_every_capability(
    any_render: Rendered,
) -> None:
    ctx = any_render.container["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["privileged"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in ctx["capabilities"]
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_platform_assigned_ids_can_be_left_out_without_losing_hardening(render: Render) -> None:
    rendered = render(
        {"podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None}}
    )
    pod = rendered.pod_spec["securityContext"]
    assert pod == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert rendered.container["securityContext"]["readOnlyRootFilesystem"] is True


def test_tmp_is_a_size_limited_writable_empty_dir(default: Rendered) -> None:
    mounts = {m["mountPath"]: m for m in default.container["volumeMounts"]}
    volumes = {v["name"]: v for v in default.pod_spec["volumes"]}
    tmp = volumes[mounts["/tmp"]["name"]]
    assert tmp["emptyDir"] == {"sizeLimit": "64Mi"}
    assert not mounts["/tmp"].get("readOnly", False)


def test_resources_have_requests_and_limits(default: Rendered) -> None:
    resources = default.container["resources"]
    for section in ("requests", "limits"):
        assert set(resources[section]) == {"cpu", "memory"}


def test_only_the_webhook_pod_gets_an_api_token(default: Rendered) -> None:
    assert default.one("ServiceAccount")["automountServiceAccountToken"] is False
    assert default.pod_spec["automountServiceAccountToken"] is True
    assert (
        default.pod_spec["serviceAccountName"] == default.one("ServiceAccount")["metadata"]["name"]
    )


def test_rbac_reads_namespaces_bindings_and_workloads_and_writes_only_binding_status(
    default: Rendered,
) -> None:
    # The token and access reviews of /metrics and the selector are their own ClusterRole
    # (tests/charts/test_access_chart.py).
    assert default.one("ClusterRole", FULLNAME)["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["spacegate.io"],
            "resources": ["registryspacebindings"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["spacegate.io"],
            "resources": ["registryspacebindings/status"],
            "verbs": ["update", "patch"],
        },
        # reading (never watching) what a binding change would strand
        {
            "apiGroups": [""],
            "resources": ["pods", "replicationcontrollers", "podtemplates"],
            "verbs": ["get", "list"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"],
            "verbs": ["get", "list"],
        },
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get", "list"]},
    ]
    binding = default.one("ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"]["name"] == FULLNAME
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": default.pod_spec["serviceAccountName"],
            "namespace": NAMESPACE,
        }
    ]


def test_with_bindings_from_the_config_only_rbac_is_reading_namespaces_and_nothing_else(
    render: Any,
) -> None:
    rendered = render({"config": {"bindings": {"source": "config", "items": []}}})
    # The token and access reviews of /metrics and the selector are their own ClusterRole
    # (tests/charts/test_access_chart.py).
    assert rendered.one("ClusterRole", FULLNAME)["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}
    ]
    assert rendered.all("Role") == [] and rendered.all("RoleBinding") == []


# ------------------------------------------------------------------------- availability


@pytest.mark.parametrize(
    ("name", "replicas"), [("default", 2), ("replicas-1", 1), ("replicas-3", 3)]
)
def test_pod_disruption_budget_exists_exactly_when_there_is_more_than_one_replica(
    rendered_set: Any, name: str, replicas: int
) -> None:
    rendered: Rendered = rendered_set(name)
    assert rendered.one("Deployment")["spec"]["replicas"] == replicas
    pdb = rendered.find("PodDisruptionBudget")
    if replicas == 1:
        assert pdb is None
        assert "WARNING: replicaCount=1 with failurePolicy=Fail" in rendered.notes
        return
    assert pdb is not None
    assert pdb["spec"]["maxUnavailable"] == 1
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == rendered.one("Deployment")["spec"]["selector"]["matchLabels"]
    )
    assert "WARNING" not in rendered.notes


def test_default_is_two_replicas_spread_over_nodes_and_zones(default: Rendered) -> None:
    deployment = default.one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    spread = default.pod_spec["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    ]
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    (term,) = default.pod_spec["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels.items()


def test_rolling_update_never_drops_below_the_desired_replicas(default: Rendered) -> None:
    strategy = default.one("Deployment")["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    sleep = default.container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == ["sleep", "5"]
    assert default.pod_spec["terminationGracePeriodSeconds"] > 5


# ------------------------------------------------------------------------- files and reloads


def test_nothing_is_mounted_with_sub_path_so_rotated_files_reach_the_server(
    any_render: Rendered,
) -> None:
    for mount in any_render.container["volumeMounts"]:
        assert "subPath" not in mount and "subPathExpr" not in mount
    mounts = {m["mountPath"]: m for m in any_render.container["volumeMounts"]}
    assert mounts[CONFIG_DIR]["name"] == _projected(any_render)["name"]
    assert mounts[CONFIG_DIR]["readOnly"] is True


def test_mounted_files_are_readable_by_the_pod_group_only(default: Rendered) -> None:
    assert _projected(default)["projected"]["defaultMode"] == 0o440


def test_deployment_has_no_config_checksum_because_the_server_reloads_the_file(
    default: Rendered,
) -> None:
    annotations = default.one("Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    assert not any("checksum" in key for key in annotations)


# ------------------------------------------------------------------------- the config file


def test_rendered_config_is_accepted_by_spacegates_own_parser(any_render: Rendered) -> None:
    text = any_render.one("ConfigMap", FULLNAME)["data"]["config.yaml"]
    config = load_config(text, source="ConfigMap/config.yaml")
    assert {"kube-system", NAMESPACE} <= config.policy.exempt_namespaces


def test_default_config_matches_the_documented_defaults(default: Rendered) -> None:
    assert default.config == {
        "workspaceLabel": "workspace.ghippo.io/id",
        "policy": {
            "mode": "enforce",
            "unknownRegistry": "allow",
            "unknownSpace": "deny",
            "pullSecretName": "registry-secret",
            "exemptNamespaces": ["kube-system", NAMESPACE],
            "maxStaleness": "10m",
            "namespaceGuard": {
                "enabled": False,
                "users": [],
                "groups": ["system:masters"],
                "serviceAccounts": [],
            },
        },
        "registries": [],
        "bindings": [],
        "pullSecrets": {"provision": False, "rotateEvery": "720h"},
    }


def test_registry_credentials_are_mounted_secrets_the_config_points_at(rendered_set: Any) -> None:
    rendered: Rendered = rendered_set("credentials")
    registries = {r["name"]: r for r in rendered.config["registries"]}
    paths = _mounted_paths(rendered)
    for name in ("harbor", "team-b-registry"):
        credentials = registries[name]["credentials"]
        assert credentials == {
            "usernameFile": f"{CONFIG_DIR}/registries/{name}/username",
            "passwordFile": f"{CONFIG_DIR}/registries/{name}/password",
        }
        assert set(credentials.values()) <= paths
    sources = {
        s["secret"]["name"]: s["secret"]["items"]
        for s in _projected(rendered)["projected"]["sources"]
        if "secret" in s
    }
    assert sources["team-b-pull"] == [
        {"key": "user", "path": "registries/team-b-registry/username"},
        {"key": "token", "path": "registries/team-b-registry/password"},
    ]
    # The credential Secrets are the admin's: the chart only names them, never renders them.
    rendered_secrets = {s["metadata"]["name"] for s in rendered.all("Secret")}
    assert rendered_secrets.isdisjoint({"harbor-robot", "team-b-pull"})


def test_provisioning_adds_rbac_for_the_pull_secret_by_name_and_for_the_lease(
    rendered_set: Any, render: Any
) -> None:
    default = render({})
    provisioning = render(PROVISIONING)

    assert default.find("Role", f"{FULLNAME}-provisioner") is None
    assert default.find("ClusterRole", f"{FULLNAME}-pull-secrets") is None
    cluster = provisioning.one("ClusterRole", f"{FULLNAME}-pull-secrets")
    by_verbs = {tuple(rule["verbs"]): rule for rule in cluster["rules"]}
    assert "resourceNames" not in by_verbs[("create",)]
    named = by_verbs[("list", "update", "delete")]  # all a pass does: nothing more
    assert named["resourceNames"] == ["registry-secret"]
    role = provisioning.one("Role", f"{FULLNAME}-provisioner")
    assert role["metadata"]["namespace"] == NAMESPACE
    leases = [r for r in role["rules"] if r["resources"] == ["leases"]]
    assert {tuple(r["verbs"]) for r in leases} == {("create",), ("get", "update")}


def test_the_pods_know_their_namespace_and_name_for_provisioning(default: Rendered) -> None:
    [container] = default.one("Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
