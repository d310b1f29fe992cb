"""Publishing the impact index: one ConfigMap in spacegate's namespace, once per audit pass.

After each background audit pass the leader writes the pass's impact index
(``policy.impact``: which running workloads depend on which binding) as JSON into the
ConfigMap :data:`~policy.impact.INDEX_CONFIGMAP` in its own namespace (the Lease's). Every
replica watches that one ConfigMap (``webhook.live.sources.impact``) and reads it into its
snapshot, so the admission of a binding change can name what it would refuse without calling
anything. One small write per pass (the index says when its pass ran, which binding reviews
use to judge whether it is fresh), made to fit well below the apiserver's object size limit
(:func:`policy.impact.fitted`), guarded by the Lease. Calls block: run in a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from policy.impact import INDEX_CONFIGMAP, INDEX_KEY, ImpactIndex, fitted
from policy.provisioning import MANAGED_BY, MANAGED_BY_LABEL
from webhook.clients.errors import describe_api_error

log = logging.getLogger(__name__)

__all__ = ["MAX_PUBLISHED_BYTES", "ImpactPublisher"]

# The apiserver refuses objects over about 1.5 MiB (etcd's request limit); stay far below.
MAX_PUBLISHED_BYTES = 512 * 1024
_NOT_FOUND = 404


class ImpactPublisher:
    """Writes the index ConfigMap in ``namespace`` (create, else replace), each write guarded."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        *,
        guard: Callable[[], None] = lambda: None,
        max_bytes: int = MAX_PUBLISHED_BYTES,
    ) -> None:
        self._api: Any = client.CoreV1Api(api)
        self.namespace = namespace
        self.guard = guard
        self._max_bytes = max_bytes

    def publish(self, index: ImpactIndex) -> bool:
        """Write ``index``; False (logged) when the apiserver refused it."""
        published, data = fitted(index, self._max_bytes)
        if not published.complete and index.complete:
            log.warning(
                "impact index cut to %d bytes: binding reviews compute the rest on the spot",
                self._max_bytes,
            )
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": INDEX_CONFIGMAP,
                "namespace": self.namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY, "spacegate.io/component": "impact-index"},
            },
            "data": {INDEX_KEY: data.decode()},
        }
        try:
            self.guard()
            try:
                current = self._api.read_namespaced_config_map(INDEX_CONFIGMAP, self.namespace)
            except ApiException as exc:
                if exc.status != _NOT_FOUND:
                    raise
                self._api.create_namespaced_config_map(self.namespace, body)
                return True
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            self.guard()
            self._api.replace_namespaced_config_map(INDEX_CONFIGMAP, self.namespace, body)
        except ApiException as exc:
            log.warning(
                "could not publish the impact index %s/%s: %s",
                self.namespace,
                INDEX_CONFIGMAP,
                describe_api_error(exc),
            )
            return False
        return True
