"""What the audit tests share: a snapshot, and workloads as the apiserver stores them."""

from __future__ import annotations

import uuid
from typing import Any

from policy.config import load_config
from policy.snapshot import NamespaceInfo, Snapshot

CONFIG = """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: library, public: true}, {name: team-a, public: false}]
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
"""


def snapshot(extra: str = "") -> Snapshot:
    """a-dev in workspace 101 (team-a bound), b-dev in 102; ``extra`` config lines."""
    return Snapshot.build(
        load_config(CONFIG + extra),
        namespaces={"a-dev": NamespaceInfo("101"), "b-dev": NamespaceInfo("102")},
    )


SNAPSHOT = snapshot()
ALLOWED = "harbor.example.com/team-a/api:1"  # allowed in a-dev, refused in b-dev
PUBLIC = "harbor.example.com/library/nginx:1"

DEPLOYMENTS = "/apis/apps/v1/deployments"
REPLICASETS = "/apis/apps/v1/replicasets"
PODS = "/api/v1/pods"
REPORTS = "/apis/wgpolicyk8s.io/v1alpha2/policyreports"


def pod_spec(*images: str) -> dict[str, Any]:
    return {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}


def owned_by(kind: str, owner: dict[str, Any]) -> list[dict[str, Any]]:
    meta = owner["metadata"]
    return [{"kind": kind, "name": meta["name"], "uid": meta["uid"], "controller": True}]


def deployment(name: str, *images: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": str(uuid.uuid4())},
        "spec": {"template": {"spec": pod_spec(*images)}},
    }


def replicaset(name: str, owner: dict[str, Any] | None, *images: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": str(uuid.uuid4())}
    if owner is not None:
        meta["ownerReferences"] = owned_by("Deployment", owner)
    return {"metadata": meta, "spec": {"template": {"spec": pod_spec(*images)}}}


def pod(
    name: str, owner: dict[str, Any] | None, *images: str, kind: str = "ReplicaSet"
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": str(uuid.uuid4())}
    if owner is not None:
        meta["ownerReferences"] = owned_by(kind, owner)
    return {"metadata": meta, "spec": pod_spec(*images)}
