"""The last-known-good copy under exactly the chart's RBAC (and, with provisioning, its policy).

The chart's ServiceAccount, Roles, bindings, policy and the empty Secret it creates for the
copy are applied to the real apiserver; ``spacegate serve`` runs as that ServiceAccount (a
TokenRequest token) against the Harbor fake. What is checked: the leader fills the Secret in
with nothing but ``get`` and ``update`` on that one name, and the ServiceAccount can do
nothing else with it or with other Secrets there (no list, no create, no delete, no other
name) — least privilege as the apiserver enforces it, not as the template reads.
"""

from __future__ import annotations

import base64
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml
from kubernetes import client

from policy.last_known_good import DATA_KEY, SECRET_NAME, decode
from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import Api, apply_manifests, chart_objects, delete_manifests
from tests.support.service_accounts import PlaneAs, service_account_kubeconfig
from tests.support.spacegate import SpacegateProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

KINDS = (
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "Secret",
)
LABEL = "lkg.e2e.spacegate.io/workspace"
SPACES = {"library": True, "team-a": False}
# A Harbor listed live: the chart renders the copy's Secret, its Role and the Lease.
LISTED = {"registries": [{"name": "harbor", "type": "harbor", "url": "https://harbor.example"}]}


@pytest.fixture(scope="module")
def harbor() -> Iterator[HarborFake]:
    with HarborFake() as fake:
        for name, public in SPACES.items():
            fake.add_project(name, public=public)
        yield fake


def _config(harbor: HarborFake, home: str, workdir: Path, provision: bool) -> str:
    (workdir / "username").write_text(f"{ADMIN_USER}\n")
    (workdir / "password").write_text(f"{ADMIN_PASSWORD}\n")
    return f"""
workspaceLabel: {LABEL}
policy:
  namespaceGuard: {{enabled: {str(provision).lower()}}}
registries:
  - name: harbor
    type: harbor
    url: {harbor.url}
    credentials: {{usernameFile: {workdir / "username"}, passwordFile: {workdir / "password"}}}
pullSecrets: {{provision: {str(provision).lower()}, credentialsNamespace: {home}}}
"""


def _as(plane: ControlPlane, kubeconfig: Path) -> httpx.Client:
    document = yaml.safe_load(kubeconfig.read_text())
    token = document["users"][0]["user"]["token"]
    return httpx.Client(
        base_url=plane.server,
        verify=ssl.create_default_context(cafile=str(plane.ca_cert)),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


@pytest.mark.parametrize("provision", [False, True], ids=["copy-only", "with-provisioning"])
def test_the_leader_fills_in_the_charts_secret_with_get_and_update_on_that_name_alone(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    harbor: HarborFake,
    tmp_path: Path,
    provision: bool,
) -> None:
    name = f"sgl-{uuid.uuid4().hex[:6]}"
    home = f"{name}-system"
    core: Api = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=home)))
    values: dict[str, Any] = {"config": {**LISTED}}
    if provision:
        values["config"]["pullSecrets"] = {"provision": True}
        values["config"]["policy"] = {"namespaceGuard": {"enabled": True}}
    objects = [  # the chart's TLS Secrets are not this test's
        o
        for o in chart_objects(values, release=name, namespace=home, kinds=KINDS)
        if o["kind"] != "Secret" or o["metadata"]["name"] == SECRET_NAME
    ]
    assert [o for o in objects if o["kind"] == "Secret"], "the chart's empty copy Secret"
    apply_manifests(control_plane, objects)
    kubeconfig = service_account_kubeconfig(
        control_plane, home, f"{name}-spacegate", tmp_path / "sa.yaml"
    )
    process = SpacegateProcess(
        cast(ControlPlane, PlaneAs(control_plane, kubeconfig)),
        tmp_path,
        _config(harbor, home, tmp_path, provision),
    )
    try:
        process.start()

        def copied() -> dict[str, bool] | None:
            data = (core.read_namespaced_secret(SECRET_NAME, home).data or {}).get(DATA_KEY)
            copy = None if data is None else decode(base64.b64decode(data))
            entry = None if copy is None else copy.registries.get("harbor")
            return None if entry is None else dict(entry.spaces)

        try:
            assert eventually(copied, "the leader to fill in the copy", timeout=45) == SPACES
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{process.tail()}") from None

        secrets = f"/api/v1/namespaces/{home}/secrets"
        other = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "spacegate-other"}}
        with _as(control_plane, kubeconfig) as http:
            assert http.get(f"{secrets}/{SECRET_NAME}").status_code == 200
            if not provision:  # the provisioner's own Role grants these in its namespace
                assert http.get(secrets).status_code == 403
                assert http.post(secrets, json=other).status_code == 403
                assert http.get(f"{secrets}/spacegate-other").status_code == 403
            assert http.delete(f"{secrets}/{SECRET_NAME}").status_code == 403
        log = process.log.read_text(errors="replace")
        assert "could not write the last-known-good copy" not in log, log
    finally:
        process.stop()
        delete_manifests(control_plane, [o for o in objects if "namespace" not in o["metadata"]])
        core.delete_namespace(home)
