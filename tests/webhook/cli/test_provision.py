"""``spacegate provision``: one pull-secret provisioning pass, or with ``--dry-run`` its plan.

Harbor is the Harbor fake (robots are really created there, and a created robot's login
really pulls), the cluster the Kubernetes fake (Secrets and the provisioning Lease are
really written there). ``tests/e2e/test_provisioning.py`` runs the command against the real
apiserver.
"""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.harbor import HarborFake
from tests.fakes.kubernetes import FakeKubernetes
from tests.webhook.cli.conftest import WS, admin_credentials
from webhook.cli.main import main
from webhook.cli.provision import run

HOME = "spacegate-system"
LEASE = "spacegate-provisioner"
LEASES = "/apis/coordination.k8s.io/v1/leases"
SECRETS = "/api/v1/secrets"

Provision = tuple[int, list[str], str]


@pytest.fixture
def home(cluster: FakeKubernetes) -> str:
    """spacegate's own namespace, where the robot credentials are kept."""
    cluster.create_namespace(HOME)
    return HOME


def write_config(
    tmp_path: Path, harbor: HarborFake, *, team_a: str = '["101"]', provision: bool = True
) -> str:
    credentials = admin_credentials(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
registries:
  - name: harbor
    type: harbor
    url: {harbor.url}
    hosts: [harbor.example.com]
    credentials: {credentials}
bindings:
  - {{registry: harbor, space: team-a, workspaces: {team_a}}}
pullSecrets: {{provision: {str(provision).lower()}, credentialsNamespace: {HOME}}}
policy: {{namespaceGuard: {{enabled: true}}}}
"""
    )
    return str(path)


def provision(config: str, kubeconfig: Path | str, *, dry_run: bool = False) -> Provision:
    out, err = io.StringIO(), io.StringIO()
    code = run(config, dry_run=dry_run, kubeconfig=str(kubeconfig), stdout=out, stderr=err)
    return code, out.getvalue().splitlines(), err.getvalue()


def login(cluster: FakeKubernetes, namespace: str) -> tuple[str, str] | None:
    """(username, password) for harbor.example.com in the namespace's pull Secret."""
    secret = cluster.get_object(SECRETS, namespace, "registry-secret")
    if secret is None:
        return None
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    document = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    user, _, password = (
        base64.b64decode(document["auths"]["harbor.example.com"]["auth"]).decode().partition(":")
    )
    return user, password


def harbor_writes(harbor: HarborFake) -> list[Any]:
    return [r for r in harbor.requests if r.method != "GET"]


def secrets(cluster: FakeKubernetes) -> dict[tuple[str, str], dict[str, Any]]:
    """Every Secret in the cluster, by (namespace, name)."""
    return {
        (s["metadata"]["namespace"], s["metadata"]["name"]): s for s in cluster.objects(SECRETS)
    }


def lease_requests(cluster: FakeKubernetes) -> list[str]:
    return [r.method for r in cluster.requests if "/leases" in r.path]


# --------------------------------------------------------------------------- the pass


def test_dry_run_prints_the_plan_and_writes_nothing_not_even_the_lease(
    cluster: FakeKubernetes, harbor: HarborFake, home: str, kubeconfig: Path, tmp_path: Path
) -> None:
    code, out, err = provision(write_config(tmp_path, harbor), kubeconfig, dry_run=True)

    assert (code, err) == (0, "")
    assert len(out) == 2
    assert out[0].startswith("would create robot spacegate-harbor-101-")
    assert out[0].endswith(" on harbor for workspace 101: repository:pull on team-a (new)")
    assert out[1] == "would create Secret team-a-dev (harbor)"
    assert harbor_writes(harbor) == []
    assert harbor.robots() == []
    assert secrets(cluster) == {}
    assert lease_requests(cluster) == []


def test_a_pass_makes_the_robot_and_secrets_the_plan_named_then_has_nothing_left_to_do(
    cluster: FakeKubernetes, harbor: HarborFake, home: str, kubeconfig: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, harbor)
    planned = provision(config, kubeconfig, dry_run=True)[1]

    code, out, err = provision(config, kubeconfig)

    assert (code, err) == (0, "")
    assert out == [line.removeprefix("would ") for line in planned]
    credentials = login(cluster, "team-a-dev")
    assert credentials is not None
    assert harbor.robot_can_pull(credentials[0], "team-a")
    assert not harbor.robot_can_pull(credentials[0], "team-b")
    assert login(cluster, "team-b-dev") is None  # team-b is bound to no workspace
    assert login(cluster, "sandbox") is None
    # The robot's credential is kept in spacegate's namespace, for the next pass.
    (kept,) = [name for ns, name in secrets(cluster) if ns == home]
    assert credentials[0].startswith(f"robot${kept}-")
    # The Lease was taken for the pass and released after it.
    lease = cluster.get_object(LEASES, home, LEASE)
    assert lease is not None
    assert not lease["spec"].get("holderIdentity")
    assert lease_requests(cluster)[:2] == ["GET", "POST"]

    assert provision(config, kubeconfig, dry_run=True) == (0, ["nothing to change"], "")
    assert provision(config, kubeconfig) == (0, ["nothing to change"], "")
    assert login(cluster, "team-a-dev") == credentials


def test_unbinding_deletes_the_secrets_and_the_robot(
    cluster: FakeKubernetes, harbor: HarborFake, home: str, kubeconfig: Path, tmp_path: Path
) -> None:
    assert provision(write_config(tmp_path, harbor), kubeconfig)[0] == 0
    robot = login(cluster, "team-a-dev")
    assert robot is not None

    code, out, err = provision(write_config(tmp_path, harbor, team_a="[]"), kubeconfig)

    assert (code, err) == (0, "")
    assert "delete Secret team-a-dev" in "\n".join(out)
    assert login(cluster, "team-a-dev") is None
    assert not harbor.robot_can_pull(robot[0], "team-a")


def test_a_namespace_whose_secret_cannot_be_written_is_named_and_the_others_get_theirs(
    cluster: FakeKubernetes, harbor: HarborFake, home: str, kubeconfig: Path, tmp_path: Path
) -> None:
    cluster.create_namespace("team-a-prod", {WS: "101"})
    cluster.fail_next(1, status=403, path_prefix="/api/v1/namespaces/team-a-dev/secrets")

    code, out, err = provision(write_config(tmp_path, harbor), kubeconfig)

    assert code == 1
    assert "create Secret team-a-prod (harbor)" in out
    assert err == (
        "spacegate provision: could not create Secret team-a-dev: "
        "HTTP 403 Forbidden: injected failure (403)\n"
    )
    assert login(cluster, "team-a-dev") is None
    assert login(cluster, "team-a-prod") is not None


# --------------------------------------------------------------------------- the Lease


def test_while_another_replica_leads_nothing_is_written_and_the_holder_is_named(
    cluster: FakeKubernetes, harbor: HarborFake, home: str, kubeconfig: Path, tmp_path: Path
) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    cluster.create_object(
        LEASES,
        home,
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": home},
            "spec": {
                "holderIdentity": "spacegate-7f9c-abcdef",
                "leaseDurationSeconds": 60,
                "acquireTime": now,
                "renewTime": now,
            },
        },
    )

    code, out, err = provision(write_config(tmp_path, harbor), kubeconfig)

    assert (code, out) == (1, [])
    assert err == (
        "spacegate provision: provisioning is led by spacegate-7f9c-abcdef (Lease "
        f"{home}/{LEASE}); not writing. --dry-run shows the plan\n"
    )
    assert secrets(cluster) == {}
    assert harbor_writes(harbor) == []
    lease = cluster.get_object(LEASES, home, LEASE)
    assert lease is not None and lease["spec"]["holderIdentity"] == "spacegate-7f9c-abcdef"
    # The plan can still be looked at.
    assert provision(write_config(tmp_path, harbor), kubeconfig, dry_run=True)[0] == 0


def test_credentials_that_may_not_touch_the_lease_get_the_apiservers_reason_not_a_traceback(
    cluster: FakeKubernetes, harbor: HarborFake, home: str, kubeconfig: Path, tmp_path: Path
) -> None:
    cluster.fail_next(1, status=403, path_prefix="/apis/coordination.k8s.io/")

    code, out, err = provision(write_config(tmp_path, harbor), kubeconfig)

    assert (code, out) == (1, [])
    assert err == (
        "spacegate provision: Kubernetes API error: HTTP 403 Forbidden: injected failure (403)\n"
    )
    assert secrets(cluster) == {}


def test_credentials_that_may_not_list_secrets_get_the_apiservers_reason_not_a_traceback(
    cluster: FakeKubernetes, harbor: HarborFake, home: str, kubeconfig: Path, tmp_path: Path
) -> None:
    cluster.fail_next(1, status=403, path_prefix="/api/v1/secrets")

    code, out, err = provision(write_config(tmp_path, harbor), kubeconfig, dry_run=True)

    assert (code, out) == (1, [])
    assert err == (
        "spacegate provision: Kubernetes API error: "
        "HTTP 403 GET /api/v1/secrets: injected failure (403)\n"
    )


# --------------------------------------------------------------------------- bad input, sources


def test_provisioning_off_in_the_config_is_refused_unless_only_the_plan_is_asked_for(
    cluster: FakeKubernetes, harbor: HarborFake, home: str, kubeconfig: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, harbor, provision=False)

    code, out, err = provision(config, kubeconfig)

    assert (code, out) == (2, [])
    assert err == (
        "spacegate provision: pullSecrets.provision is off in this config; set it to true, "
        "or use --dry-run to see the plan\n"
    )
    assert cluster.requests == []
    assert provision(config, kubeconfig, dry_run=True)[0] == 0


def test_a_bad_config_and_a_missing_kubeconfig_are_usage_errors(
    harbor: HarborFake, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("pullSecrets: {provision: maybe}\n")

    code, _, err = provision(str(broken), tmp_path / "kubeconfig")
    assert code == 2
    assert err.startswith("spacegate provision: config error: ") and "broken.yaml" in err

    code, _, err = provision(write_config(tmp_path, harbor), tmp_path / "missing")
    assert code == 2
    assert err.startswith(f"spacegate provision: unusable kubeconfig {tmp_path / 'missing'}")


def test_a_registry_that_cannot_be_listed_is_named_and_nothing_is_written(
    cluster: FakeKubernetes, harbor: HarborFake, home: str, kubeconfig: Path, tmp_path: Path
) -> None:
    harbor.faults.fail_next(20, status=503)

    code, out, err = provision(write_config(tmp_path, harbor), kubeconfig)

    assert (code, out) == (1, [])
    assert err.startswith("spacegate provision: could not sync: registry 'harbor': ")
    assert secrets(cluster) == {}
    assert lease_requests(cluster) == []  # the Lease is taken only for a pass that can run


def test_an_account_that_may_not_manage_robots_is_told_what_it_needs(
    cluster: FakeKubernetes, harbor: HarborFake, home: str, kubeconfig: Path, tmp_path: Path
) -> None:
    harbor.add_user("viewer", "Viewer12345", member_of=["team-a"])
    config = write_config(tmp_path, harbor)
    (tmp_path / "user").write_text("viewer")
    (tmp_path / "password").write_text("Viewer12345")

    code, out, err = provision(config, kubeconfig, dry_run=True)

    assert (code, out) == (1, [])
    assert "the configured account lacks robot:list" in err
    assert "Viewer12345" not in err  # never the password


def test_the_command_line_reaches_the_same_pass(
    cluster: FakeKubernetes,
    harbor: HarborFake,
    home: str,
    kubeconfig: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "provision",
        "--config",
        write_config(tmp_path, harbor),
        "--kubeconfig",
        str(kubeconfig),
    ]

    assert main([*argv, "--dry-run"]) == 0
    assert "would create Secret team-a-dev (harbor)" in capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "create Secret team-a-dev (harbor)"
