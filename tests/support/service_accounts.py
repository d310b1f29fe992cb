"""Talking to the control plane as a ServiceAccount, as the chart's pod does, instead of the
admin: RBAC is then the apiserver's to enforce, so a missing permission fails the test."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from tests.support.controlplane.plane import ControlPlane


def service_account_kubeconfig(plane: ControlPlane, namespace: str, name: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` (a TokenRequest
    token, 1 hour), as the chart's pod would."""
    with plane.http_client() as http:
        answer = http.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )
    answer.raise_for_status()
    token = answer.json()["status"]["token"]
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {
                    "server": plane.server,
                    "certificate-authority-data": base64.b64encode(
                        plane.ca_cert.read_bytes()
                    ).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": name}}],
        "current-context": "e2e",
    }
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


class PlaneAs:
    """``plane`` with another kubeconfig: a :class:`~tests.support.spacegate.SpacegateProcess`
    made with it talks to the control plane as that kubeconfig's identity, not the admin."""

    def __init__(self, plane: ControlPlane, kubeconfig: Path) -> None:
        self._plane = plane
        self.kubeconfig = kubeconfig

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plane, name)
