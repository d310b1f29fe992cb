"""The binding reflector: every replica's copy of the RegistrySpaceBinding objects.

Bindings decide admission, so every replica mirrors the cluster-scoped
``spacegate.io/v1alpha1`` objects into a :class:`~webhook.live.binding_map.BindingMap`
through the same list + watch loop as namespaces
(:class:`webhook.live.sources.reflector.Reflector`: relist on 410, backoff, changes at once);
a new binding reaches the snapshot on the refresher's next loop turn.

Objects are read with :func:`policy.bindings.read_binding_object`, which never raises: an
object with an unusable spec binds nothing and keeps its name, so the leader can say why in
its status; one without a name is skipped. Nothing an object holds can stop the reflector.

Whether the CRD must be served depends on ``bindings.source``: unset, a list refused with
404 means "not installed", which is an answer (no objects; asked again every
``absent_retry`` seconds, so installing the CRD later takes effect); ``objects`` or ``both``
set explicitly make it a failure, retried with backoff, and readiness waits.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import urllib3
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from policy.binding_crd import CRD_NAME
from policy.bindings import GROUP, PLURAL, VERSION, BindingObject, read_binding_object
from webhook.clients.errors import SourceError, describe_api_error
from webhook.clients.kube_paging import list_items
from webhook.live.binding_map import BindingMap
from webhook.live.sources.reflector import OnChange, Reflector

__all__ = ["BindingReflector", "fetch_binding_objects", "not_served_hint"]

_NOT_FOUND = 404
PATH = f"/apis/{GROUP}/{VERSION}/{PLURAL}"


def not_served_hint() -> str:
    """What to do when the CRD is missing."""
    return (
        f"the CRD {CRD_NAME} is not served; install it (the chart's crds/, or "
        "`spacegate bindings crd | kubectl apply -f -`)"
    )


def _objects(items: list[dict[str, Any]]) -> dict[str, BindingObject]:
    out: dict[str, BindingObject] = {}
    for item in items:
        obj = read_binding_object(item)
        if obj is not None:
            out[obj.name] = obj
    return out


class _BindingMirror:
    def __init__(self, binding_map: BindingMap) -> None:
        self.map = binding_map

    @property
    def has_synced(self) -> bool:
        return self.map.has_synced

    def replace_items(self, items: list[dict[str, Any]]) -> bool:
        return self.map.replace(_objects(items))

    def apply_event(self, kind: str, obj: dict[str, Any]) -> bool:
        read = read_binding_object(obj)
        if read is None:
            return False
        return self.map.apply(read.name, None if kind == "DELETED" else read)

    def touch(self) -> None:
        self.map.touch()


class BindingReflector(Reflector):
    """Mirrors RegistrySpaceBinding objects into a :class:`BindingMap`.

    ``required``: the CRD must be served (``bindings.source`` objects or both, set
    explicitly); otherwise a 404 list records "not served". It is read on every list, so a
    config reload may change it. Timing knobs are :class:`Reflector`'s.
    """

    what = "RegistrySpaceBinding"

    def __init__(
        self,
        binding_map: BindingMap,
        *,
        required: bool = False,
        api_client: k8s_client.ApiClient | None = None,
        on_change: OnChange | None = None,
        **timings: Any,
    ) -> None:
        super().__init__(
            _BindingMirror(binding_map), api_client=api_client, on_change=on_change, **timings
        )
        self.map = binding_map
        self.required = required

    @property
    def problem(self) -> str | None:
        """Why the first list has not arrived, for readiness (None: no failure seen)."""
        error = self.last_error
        if error is None:
            return None
        if error.startswith(f"HTTP {_NOT_FOUND}"):
            return not_served_hint()
        return error

    async def wait_synced(self, timeout: float) -> bool:
        """Wait until the first list (or "not served"); False when ``timeout`` passes."""
        return await asyncio.to_thread(self.map.wait_synced, timeout)

    def _request(self, api: k8s_client.ApiClient, **kwargs: Any) -> urllib3.HTTPResponse:
        return cast(
            urllib3.HTTPResponse,
            k8s_client.CustomObjectsApi(api).list_cluster_custom_object(
                GROUP, VERSION, PLURAL, _preload_content=False, **kwargs
            ),
        )

    def _absent(self, exc: ApiException) -> bool:
        return exc.status == _NOT_FOUND and not self.required

    def _recorded_absent(self) -> None:
        self.map.mark_absent()


def fetch_binding_objects(
    api_client: k8s_client.ApiClient, *, page_size: int = 500
) -> dict[str, BindingObject] | None:
    """List the objects once (``spacegate audit``, ``snapshot``): None when the CRD is not
    served; :class:`SourceError` for any other failure."""
    try:
        return _objects(list(list_items(api_client, PATH, page_size=page_size)))
    except ApiException as exc:
        if exc.status == _NOT_FOUND:
            return None
        raise SourceError(
            f"listing RegistrySpaceBinding objects failed: {describe_api_error(exc)}"
        ) from None
    except Exception as exc:
        raise SourceError(
            f"listing RegistrySpaceBinding objects failed: {describe_api_error(exc)}"
        ) from None
