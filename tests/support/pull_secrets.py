"""Reading the pull Secrets spacegate provisions, as the kubelet would read them."""

from __future__ import annotations

import base64
import json

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.manifests import Api


def pull_secret_logins(
    api_client: client.ApiClient, namespace: str, name: str = "registry-secret"
) -> dict[str, tuple[str, str]] | None:
    """host -> (username, password) of the ``dockerconfigjson`` Secret ``name`` in
    ``namespace``, read from each entry's ``auth`` field as the kubelet reads it; None when
    there is no such Secret. Fails when the Secret is not a well-formed pull secret."""
    core: Api = client.CoreV1Api(api_client)
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    assert secret.type == "kubernetes.io/dockerconfigjson", secret.type
    document = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))
    logins: dict[str, tuple[str, str]] = {}
    for host, entry in document["auths"].items():
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        assert (entry.get("username"), entry.get("password")) == (user, password), host
        logins[host] = (user, password)
    return logins


def secret_versions(api_client: client.ApiClient, name: str) -> dict[str, str]:
    """namespace -> resourceVersion of every Secret called ``name`` in the cluster."""
    core: Api = client.CoreV1Api(api_client)
    listed = core.list_secret_for_all_namespaces(field_selector=f"metadata.name={name}")
    return {s.metadata.namespace: s.metadata.resource_version for s in listed.items}
