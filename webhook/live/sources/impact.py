"""The impact index every replica reads: which running workloads depend on which binding.

The leader's audit publishes it (``policy.impact``) as one ConfigMap in spacegate's own
namespace; this reflector (:class:`webhook.live.sources.reflector.Reflector`, listing and
watching that one ConfigMap by name) keeps the latest in an :class:`ImpactHolder`, which the
refresher puts into every snapshot. The admission of RegistrySpaceBinding objects reads it
there to warn about a change without calling anything.

The index is advisory: it never gates readiness, and a missing, malformed or oversized one
is no index (binding reviews then compute the impact on the spot, within a time budget).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, cast

import urllib3
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from policy.impact import INDEX_CONFIGMAP, INDEX_KEY, ImpactIndex, read_index
from webhook.live.sources.reflector import OnChange, Reflector

log = logging.getLogger(__name__)

__all__ = ["ImpactHolder", "ImpactReflector"]

_FORBIDDEN = 403
_NOT_FOUND = 404
# A published index is far smaller (policy.impact bounds it); anything larger is ignored.
MAX_INDEX_BYTES = 900 * 1024


def _index_of(obj: dict[str, Any]) -> ImpactIndex | None:
    data = obj.get("data")
    text = data.get(INDEX_KEY) if isinstance(data, dict) else None
    if not isinstance(text, str) or len(text) > MAX_INDEX_BYTES:
        return None
    try:
        return read_index(json.loads(text))
    except ValueError:
        return None


class ImpactHolder:
    """The latest impact index (None: none published), written by the reflector's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: ImpactIndex | None = None
        self._synced = False

    @property
    def index(self) -> ImpactIndex | None:
        with self._lock:
            return self._index

    @property
    def has_synced(self) -> bool:
        return self._synced

    def _set(self, index: ImpactIndex | None) -> bool:
        with self._lock:
            changed = index != self._index
            self._index = index
        self._synced = True
        return changed

    def replace_items(self, items: list[dict[str, Any]]) -> bool:
        found = [i for i in items if (i.get("metadata") or {}).get("name") == INDEX_CONFIGMAP]
        return self._set(_index_of(found[0]) if found else None)

    def apply_event(self, kind: str, obj: dict[str, Any]) -> bool:
        if (obj.get("metadata") or {}).get("name") != INDEX_CONFIGMAP:
            return False
        return self._set(None if kind == "DELETED" else _index_of(obj))

    def touch(self) -> None:
        """Nothing ages here: the index says when its pass ran."""


class ImpactReflector(Reflector):
    """List + watch of the index ConfigMap in ``namespace`` (by name, as RBAC allows)."""

    what = "impact index"

    def __init__(
        self,
        holder: ImpactHolder,
        namespace: str,
        *,
        api_client: k8s_client.ApiClient | None = None,
        on_change: OnChange | None = None,
        **timings: Any,
    ) -> None:
        timings.setdefault("absent_retry", 300.0)
        super().__init__(holder, api_client=api_client, on_change=on_change, **timings)
        self.holder = holder
        self.namespace = namespace
        self._absence_reported = False

    def _absent(self, exc: ApiException) -> bool:
        """Not allowed to read it (no RBAC for it) or nowhere to read it from: no index,
        asked again every ``absent_retry`` seconds; binding reviews compute on the spot."""
        return exc.status in (_FORBIDDEN, _NOT_FOUND)

    def _recorded_absent(self) -> None:
        if not self._absence_reported:
            self._absence_reported = True
            log.warning(
                "cannot read the impact index ConfigMap %s/%s; binding reviews compute the "
                "impact of a change on the spot",
                self.namespace,
                INDEX_CONFIGMAP,
            )
        self.holder.replace_items([])

    def _request(self, api: k8s_client.ApiClient, **kwargs: Any) -> urllib3.HTTPResponse:
        return cast(
            urllib3.HTTPResponse,
            k8s_client.CoreV1Api(api).list_namespaced_config_map(
                self.namespace,
                field_selector=f"metadata.name={INDEX_CONFIGMAP}",
                _preload_content=False,
                **kwargs,
            ),
        )
