"""The AdmissionReview the apiserver sends for a dry-run Pod create, for posting directly.

Tests that ask one spacegate process something no webhook configuration routes to it (a
namespace that no longer exists, a replica behind a cut connection) post this body to its
``/validate`` themselves.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.manifests import pod


def pod_review(namespace: str, image: str, *, name: str = "probe") -> dict[str, Any]:
    """The AdmissionReview of a dry-run create of a one-container Pod, as the admin."""
    obj = pod(name, image)
    obj["metadata"]["namespace"] = namespace
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "admin", "groups": ["system:masters"]},
            "object": obj,
            "oldObject": None,
            "dryRun": True,
            "options": None,
        },
    }
