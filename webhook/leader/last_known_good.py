"""Writing the last-known-good copy of the registries' spaces into the cluster.

The leader keeps what it listed of each Harbor in one Secret in spacegate's namespace
(``policy.last_known_good``: JSON compressed with zlib, bounded), so that a replica starting
while a registry is down can serve from it (``webhook.live.sources.last_known_good``). It is
a Secret rather than a ConfigMap because it names every private space of every tenant, which
the built-in ``view`` role (ConfigMaps, not Secrets) and the selector's promise (a tenant
learns nothing of another's private spaces) keep from readers of the namespace; Secrets are
also what clusters encrypt at rest.

A write happens only when what the copy holds changes: the Secret is read, the leader's own
listings are merged with what it holds of registries the leader has not listed itself (a
leader that started during an outage keeps the copy it found), and the result is compared
with what is there. The write is a replace with the read ``resourceVersion`` (someone who
wrote meanwhile wins, the next pass reads again) that keeps the Secret's metadata: the chart
creates the Secret, empty, so that spacegate needs only ``get`` and ``update`` on that one
name. Without it (out of the chart) the Secret is created. A copy that would not fit its
bound clears the Secret instead: a copy known to be outdated is worse than none.

Calls block (the official client): the leader's job runs them in a worker thread, each write
guarded by the Lease.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge

from policy.config import Config
from policy.last_known_good import (
    DATA_KEY,
    SECRET_NAME,
    Copy,
    CopyTooLarge,
    RegistryCopy,
    decode,
    encode,
    merged,
)
from policy.provisioning import MANAGED_BY, MANAGED_BY_LABEL
from webhook.clients.errors import describe_api_error
from webhook.clients.kube_paging import get

log = logging.getLogger(__name__)

__all__ = ["COMPONENT", "CopyMetrics", "CopyWriter"]

COMPONENT = "last-known-good"
_NOT_FOUND = 404


class CopyMetrics:
    """What the writes of the copy did, and how large it is."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.writes = Counter(
            "spacegate_last_known_good_writes_total",
            "Writes of the last-known-good copy by the leader, by result (written: its "
            "content changed; cleared: it would not fit its bound; failed).",
            ["result"],
            registry=registry,
        )
        self.size = Gauge(
            "spacegate_last_known_good_bytes",
            "Compressed size of the last-known-good copy the leader last wrote or found.",
            registry=registry,
        )


class CopyWriter:
    """Keeps the Secret :data:`SECRET_NAME` in ``namespace`` as the leader's listings say."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        *,
        guard: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        max_bytes: int | None = None,
    ) -> None:
        self._api_client = api
        self._core: Any = client.CoreV1Api(api)
        self.namespace = namespace
        self.guard = guard
        self._clock = clock
        self._max_bytes = max_bytes
        self.metrics: CopyMetrics | None = None

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{SECRET_NAME}"

    def write(self, config: Config, own: Mapping[str, RegistryCopy]) -> str:
        """Bring the copy in line with ``own`` (the leader's own listings): "unchanged",
        "written", "created", "cleared" or "failed" (logged)."""
        try:
            result = self._write(config, own)
        except (ApiException, orjson.JSONDecodeError) as exc:
            log.warning(
                "could not write the last-known-good copy %s/%s: %s",
                self.namespace,
                SECRET_NAME,
                describe_api_error(exc),
            )
            result = "failed"
        if self.metrics is not None and result != "unchanged":
            self.metrics.writes.labels(result).inc()
        return result

    def _write(self, config: Config, own: Mapping[str, RegistryCopy]) -> str:
        status, body = get(self._api_client, self.path)
        if status not in (200, _NOT_FOUND):
            raise ApiException(status=status, reason=f"GET {self.path}")
        secret: dict[str, Any] | None = None
        current: Copy | None = None
        if status == 200:
            secret = orjson.loads(body)
            raw = _raw(secret)
            current = None if raw is None else decode(raw)
            if raw is not None and self.metrics is not None:
                self.metrics.size.set(len(raw))
        registries = merged(config, own, current)
        if current is not None and dict(current.registries) == registries:
            return "unchanged"
        if not registries and current is None:
            return "unchanged"  # nothing listed yet, and nothing to replace: no empty copy
        options = {} if self._max_bytes is None else {"max_bytes": self._max_bytes}
        try:
            data: bytes | None = encode(Copy(registries, self._clock()), **options)
        except CopyTooLarge as exc:
            if current is None and secret is not None:
                return "unchanged"  # cleared already
            log.error("%s; the Secret %s/%s is cleared instead", exc, self.namespace, SECRET_NAME)
            data = None
        if data is None and current is None and secret is None:
            return "unchanged"
        self.guard()
        content = {} if data is None else {DATA_KEY: base64.b64encode(data).decode()}
        if secret is None:
            self._core.create_namespaced_secret(self.namespace, self._new_secret(content))
            result = "created"
        else:
            self._core.replace_namespaced_secret(
                SECRET_NAME, self.namespace, {**secret, "type": "Opaque", "data": content}
            )
            result = "written" if data is not None else "cleared"
        if self.metrics is not None:
            self.metrics.size.set(0 if data is None else len(data))
        spaces = sum(len(r.spaces) for r in registries.values())
        log.info(
            "last-known-good copy %s/%s %s: %d registries, %d spaces, %d bytes",
            self.namespace,
            SECRET_NAME,
            result,
            len(registries),
            spaces,
            0 if data is None else len(data),
        )
        return result

    def _new_secret(self, content: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": SECRET_NAME,
                "namespace": self.namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY, "spacegate.io/component": COMPONENT},
            },
            "data": content,
        }


def _raw(secret: Any) -> bytes | None:
    """The copy's bytes as the Secret holds them; None when it holds none."""
    data = secret.get("data") if isinstance(secret, dict) else None
    value = data.get(DATA_KEY) if isinstance(data, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None
