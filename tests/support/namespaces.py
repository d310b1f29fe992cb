"""Namespaces for one test: the control plane is shared, so each test isolates itself in
namespaces with random names and the workspace labels it needs, and deletes them after."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.manifests import Api


def create_namespace(api_client: client.ApiClient, labels: Mapping[str, str]) -> str:
    """A new namespace ``e2e-<random>`` with ``labels``; its name."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api_client).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=dict(labels)))
    )
    return name


def delete_namespaces(api_client: client.ApiClient, names: list[str]) -> None:
    """Start deleting ``names`` (the namespace controller finishes it); gone ones are fine."""
    core: Api = client.CoreV1Api(api_client)
    for name in names:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


class Namespaces:
    """Creates labelled namespaces for one test and deletes them all afterwards."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.made: list[str] = []

    def make(self, labels: Mapping[str, str] | None = None, prefix: str = "prov") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        client.CoreV1Api(self.api_client).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=dict(labels or {})))
        )
        self.made.append(name)
        return name

    def relabel(self, name: str, labels: Mapping[str, str | None]) -> None:
        """Merge-patch the namespace's labels (None removes one)."""
        core: Api = client.CoreV1Api(self.api_client)
        core.patch_namespace(name, {"metadata": {"labels": dict(labels)}})

    def delete_all(self) -> None:
        delete_namespaces(self.api_client, self.made)
        self.made.clear()
