"""The wgpolicyk8s.io PolicyReports the background audit writes: the chart's CRD, installed
and served, and the reports of a namespace read back."""

from __future__ import annotations

import time
from typing import Any

from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import chart_objects, install_crd

POLICY_REPORTS = "/apis/wgpolicyk8s.io/v1alpha2"


def install_policy_report_crd(plane: ControlPlane) -> dict[str, Any]:
    """The chart's PolicyReport CRD (``policyReports.installCRD``), applied and served."""
    (crd,) = chart_objects(
        {"policyReports": {"installCRD": True}},
        release="spacegate",
        namespace="spacegate-system",
        kinds=("CustomResourceDefinition",),
    )
    install_crd(plane, crd, POLICY_REPORTS)
    policy_reports(plane, "default")  # its storage has initialized
    return crd


def policy_reports(plane: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    """The PolicyReports of ``namespace``, by name.

    Right after the CRD is established (or the apiserver restarted) its storage answers 429
    "storage is (re)initializing" for a moment; that is waited out, anything else raises.
    """
    deadline = time.monotonic() + 15
    with plane.http_client() as http:
        while True:
            listed = http.get(f"{POLICY_REPORTS}/namespaces/{namespace}/policyreports")
            if listed.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    listed.raise_for_status()
    return {item["metadata"]["name"]: item for item in listed.json()["items"]}
