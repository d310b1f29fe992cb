"""A world for the image selector on the real control plane, shared by the e2e tests, the
browser test and ``bench/selector.py``.

- Harbor (the HTTP-level fake, listed live): ``library`` public, ``team-a`` private bound to
  workspace 101, ``team-b`` private bound to 102, each with repositories and tags;
- the real Docker Registry (``docker-registry``) as the platform registry, all public, with
  repositories pushed over its HTTP API;
- namespaces ``<prefix>-a`` (workspace 101) and ``<prefix>-b`` (102) on the control plane;
- ServiceAccounts with TokenRequest tokens: ``dev-a`` bound to the built-in ``view`` role in
  namespace a (the chart's aggregated image-lister role gives it ``list images.spacegate.io``),
  ``dev-b`` likewise in b, and ``nobody`` in a with no binding;
- ``spacegate serve`` with its selector listener, in live mode on that control plane.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from tests.fakes.registry import RealRegistry
from tests.support.access import bind, chart_access_roles, ensure_namespace, service_account, token
from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import apply_manifests
from tests.support.spacegate import SpacegateProcess
from tests.support.waiting import eventually

WS = "workspace.ghippo.io/id"
HARBOR_HOST = "harbor.demo.local"
TEAM_A_REPOSITORIES = ("web", "api", "tools/debug")
TEAM_B_SECRET = "payroll"  # a private repository of team-b: never shown to workspace 101
TAGS = ("1.0", "1.1", "2.0")


@dataclass
class SelectorWorld:
    plane: ControlPlane
    harbor: HarborFake
    registry: RealRegistry
    spacegate: SpacegateProcess
    namespace_a: str
    namespace_b: str
    tokens: dict[str, str]


def world_config(harbor: HarborFake, registry: RealRegistry, workdir: Path) -> str:
    (workdir / "harbor-user").write_text(ADMIN_USER)
    (workdir / "harbor-password").write_text(ADMIN_PASSWORD)
    (workdir / "registry-user").write_text(registry.username)
    (workdir / "registry-password").write_text(registry.password)
    return f"""
workspaceLabel: {WS}
policy:
  mode: enforce
  unknownRegistry: allow
  unknownSpace: deny
  pullSecretName: registry-secret
  exemptNamespaces: [kube-system, spacegate-system]
registries:
  - name: harbor
    type: harbor
    url: {harbor.url}
    hosts: [{HARBOR_HOST}]
    refreshInterval: 2s
    credentials: {{usernameFile: {workdir / "harbor-user"}, passwordFile: {workdir / "harbor-password"}}}
  - name: platform
    type: docker-registry
    url: {registry.url}
    refreshInterval: 2s
    credentials: {{usernameFile: {workdir / "registry-user"}, passwordFile: {workdir / "registry-password"}}}
bindings:
  - {{registry: harbor, space: team-a, workspaces: ["101"]}}
  - {{registry: harbor, space: team-b, workspaces: ["102"]}}
"""


def fill_harbor(harbor: HarborFake) -> None:
    harbor.add_project("library", public=True)
    harbor.add_project("team-a", public=False)
    harbor.add_project("team-b", public=False)
    harbor.add_repository("library", "nginx", ("1.27", "1.26"))
    harbor.add_repositories("team-a", TEAM_A_REPOSITORIES, TAGS)
    harbor.add_repository("team-b", TEAM_B_SECRET, ("9.9",))


def can_list_images(plane: ControlPlane, user: str, namespace: str) -> bool:
    """Whether RBAC lets ``user`` list images.spacegate.io in ``namespace`` (aggregation is
    done by the controller manager, a moment after the role appears)."""
    with plane.http_client() as http:
        answer = http.post(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            json={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user,
                    "groups": ["system:serviceaccounts", "system:authenticated"],
                    "resourceAttributes": {
                        "verb": "list",
                        "group": "spacegate.io",
                        "resource": "images",
                        "namespace": namespace,
                    },
                },
            },
        )
    answer.raise_for_status()
    return bool(answer.json()["status"].get("allowed"))


@contextlib.contextmanager
def selector_world(plane: ControlPlane, workdir: Path) -> Iterator[SelectorWorld]:
    """The world above, torn down afterwards (namespaces are left to the shared plane)."""
    prefix = f"sel-{uuid.uuid4().hex[:6]}"
    namespace_a, namespace_b = f"{prefix}-a", f"{prefix}-b"
    ensure_namespace(plane, namespace_a, {WS: "101"})
    ensure_namespace(plane, namespace_b, {WS: "102"})
    apply_manifests(plane, chart_access_roles())
    for namespace, name in (
        (namespace_a, "dev-a"),
        (namespace_b, "dev-b"),
        (namespace_a, "nobody"),
    ):
        service_account(plane, namespace, name)
    bind(plane, role="view", subject=(namespace_a, "dev-a"), namespace=namespace_a)
    bind(plane, role="view", subject=(namespace_b, "dev-b"), namespace=namespace_b)
    eventually(
        lambda: can_list_images(plane, f"system:serviceaccount:{namespace_a}:dev-a", namespace_a),
        "the view role aggregating list images.spacegate.io",
    )
    with HarborFake() as harbor, RealRegistry.temporary() as registry:
        fill_harbor(harbor)
        registry.push_image("tools/busybox", "1.36")
        registry.push_image("tools/curl", "8.5")
        process = SpacegateProcess(
            plane, workdir, world_config(harbor, registry, workdir), selector=True
        )
        process.start()
        try:
            tokens = {
                "dev-a": token(plane, namespace_a, "dev-a"),
                "dev-b": token(plane, namespace_b, "dev-b"),
                "nobody": token(plane, namespace_a, "nobody"),
            }

            def selector_knows_both() -> bool:
                # /readyz is the serving process's; the selector gets its snapshot a moment later.
                with process.selector_client() as http:
                    return all(
                        http.get(
                            f"/api/v1/namespaces/{namespace}/spaces",
                            headers={"Authorization": f"Bearer {tokens[who]}"},
                        ).status_code
                        == 200
                        for namespace, who in ((namespace_a, "dev-a"), (namespace_b, "dev-b"))
                    )

            eventually(selector_knows_both, "the selector to have the namespaces")
            yield SelectorWorld(plane, harbor, registry, process, namespace_a, namespace_b, tokens)
        finally:
            process.stop()
