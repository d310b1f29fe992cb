"""Kubernetes objects as the tests send them: plain dicts, as kubectl does.

:func:`pod` builds a Pod manifest; :func:`chart_objects` renders objects of the Helm chart
like ``helm install`` would; :func:`apply_manifests` and :func:`delete_manifests` send them
to the control plane as the admin, over raw HTTP, for the kinds in :data:`KIND_PATHS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import helm_python as helm

from tests.charts.chartlib import CHART_DIR, parse_manifests
from tests.support.controlplane.plane import ControlPlane
from tests.support.waiting import eventually

# The kubernetes client's typed API wants model objects; the e2e tests send manifests as plain
# dicts, as kubectl does, which the client accepts at run time.
Api = Any

# Where the kinds the tests apply live in the API: (prefix, plural, namespaced).
KIND_PATHS: dict[str, tuple[str, str, bool]] = {
    "CustomResourceDefinition": (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Secret": ("/api/v1", "secrets", True),
    "ValidatingAdmissionPolicy": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingadmissionpolicies",
        False,
    ),
    "ValidatingAdmissionPolicyBinding": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingadmissionpolicybindings",
        False,
    ),
}


def pod(name: str, *images: str, pull_secrets: list[str] | None = None) -> dict[str, Any]:
    """A Pod manifest with one container per image (``c0``, ``c1``, ...)."""
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    }
    if pull_secrets is not None:
        spec["imagePullSecrets"] = [{"name": n} for n in pull_secrets]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def chart_objects(
    values: Mapping[str, Any], *, release: str, namespace: str, kinds: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The chart's objects of ``kinds``, rendered like ``helm install`` of ``release`` into
    ``namespace``."""
    with helm.Chart.load(CHART_DIR) as chart:
        raw = chart.render(dict(values), name=release, namespace=namespace, is_install=True)
    objects, _ = parse_manifests(raw)
    return [dict(obj) for obj in objects if obj["kind"] in kinds]


def object_path(obj: Mapping[str, Any], *, collection: bool = False) -> str:
    """The API path of ``obj`` (or of its collection, to create it in)."""
    prefix, plural, namespaced = KIND_PATHS[obj["kind"]]
    meta = obj["metadata"]
    where = (
        f"{prefix}/namespaces/{meta['namespace']}/{plural}" if namespaced else f"{prefix}/{plural}"
    )
    return where if collection else f"{where}/{meta['name']}"


def apply_manifests(plane: ControlPlane, objects: list[dict[str, Any]]) -> None:
    """Create, or replace, each object as the admin (the apiserver validates each one)."""
    with plane.http_client() as http:
        for obj in objects:
            created = http.post(object_path(obj, collection=True), json=obj)
            if created.status_code == 409:
                current = http.get(object_path(obj))
                current.raise_for_status()
                version = current.json()["metadata"]["resourceVersion"]
                body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": version}}
                http.put(object_path(obj), json=body).raise_for_status()
            else:
                assert created.status_code == 201, (obj["kind"], created.text)


def delete_manifests(plane: ControlPlane, objects: list[dict[str, Any]]) -> None:
    """Delete each object; ones already gone are fine."""
    with plane.http_client() as http:
        for obj in objects:
            response = http.delete(object_path(obj))
            assert response.status_code in (200, 202, 404), (obj["kind"], response.text)


def install_crd(plane: ControlPlane, crd: dict[str, Any], served_path: str) -> None:
    """Apply a CRD and wait until it is established and ``served_path`` (a list of its
    objects) answers."""
    apply_manifests(plane, [crd])

    def served() -> bool:
        with plane.http_client() as http:
            stored = http.get(object_path(crd)).json()
            conditions = {
                c["type"]: c["status"] for c in (stored.get("status") or {}).get("conditions") or []
            }
            listed = http.get(served_path)
        return conditions.get("Established") == "True" and listed.status_code == 200

    eventually(served, f"the CRD {crd['metadata']['name']} to be established and served")
