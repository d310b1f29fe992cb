"""RegistrySpaceBinding objects on the control plane: the chart's CRD, objects, statuses,
the warnings the apiserver relays, and the webhook configurations of a release of one's own."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import yaml

from tests.charts.chartlib import CHART_DIR
from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import chart_objects, install_crd

BINDINGS = "/apis/spacegate.io/v1alpha1/registryspacebindings"
CRD_FILE = CHART_DIR / "crds" / "registryspacebindings.spacegate.io.yaml"


def install_binding_crd(plane: ControlPlane) -> dict[str, Any]:
    """The chart's CRD (the very file ``helm install`` applies), applied, established, served."""
    crd: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    install_crd(plane, crd, BINDINGS)
    return crd


def binding(
    name: str,
    workspaces: Sequence[Any],
    *,
    space: str = "team-a",
    registry: str = "harbor",
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A RegistrySpaceBinding manifest."""
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "spacegate.io/v1alpha1",
        "kind": "RegistrySpaceBinding",
        "metadata": meta,
        "spec": {"registry": registry, "space": space, "workspaces": list(workspaces)},
    }


_WARNING = re.compile(r'^\d{3} \S+ "(.*)"$')


def warnings_of(response: httpx.Response) -> list[str]:
    """The warnings the apiserver relayed (``Warning: 299 - "text"`` headers), as kubectl
    prints them."""
    found = []
    for header in response.headers.get_list("warning"):
        match = _WARNING.match(header)
        found.append(match.group(1).replace('\\"', '"') if match else header)
    return found


def conditions(plane: ControlPlane, name: str) -> dict[str, dict[str, Any]]:
    """The object's status conditions by type ({} before spacegate wrote any)."""
    with plane.http_client() as http:
        got = http.get(f"{BINDINGS}/{name}")
    got.raise_for_status()
    status = got.json().get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or []}


def resource_versions(plane: ControlPlane, names: Sequence[str]) -> dict[str, str]:
    with plane.http_client() as http:
        return {n: http.get(f"{BINDINGS}/{n}").json()["metadata"]["resourceVersion"] for n in names}


def table_rows(plane: ControlPlane) -> dict[str, dict[str, Any]]:
    """What ``kubectl get rsb`` shows: each object's printer columns, by name."""
    with plane.http_client() as http:
        got = http.get(BINDINGS, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    got.raise_for_status()
    table = got.json()
    names = [c["name"] for c in table["columnDefinitions"]]
    return {row["cells"][0]: dict(zip(names, row["cells"], strict=True)) for row in table["rows"]}


def release_webhooks(
    url: str, ca_pem: str, *, release: str, values: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The chart's webhook configurations for a release of its own (named after it, so they
    live beside any other test's), in out-of-cluster mode for ``url``."""
    chart_values = {
        **values,
        "webhook": {
            "url": url,
            "timeoutSeconds": 5,
            "validating": {"failurePolicy": "Fail"},
            "mutating": {"failurePolicy": "Ignore"},
        },
        "certificates": {"mode": "secret", "secret": {"name": "tls", "caBundle": ca_pem}},
    }
    kinds = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
    return chart_objects(chart_values, release=release, namespace=f"{release}-system", kinds=kinds)


def json_body(response: httpx.Response) -> Any:
    """The response's JSON, failing with its text when it is not JSON."""
    try:
        return response.json()
    except json.JSONDecodeError:
        raise AssertionError(response.text) from None
