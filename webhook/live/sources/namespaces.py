"""The namespace reflector: keeps a namespace map current by list + watch.

Decisions need a namespace's workspace label and mode override without calling the API
server on the admission path, so this reflector mirrors every namespace's two labels into a
:class:`~webhook.live.namespace_map.NamespaceMap`. The loop (list, watch from the list's
resourceVersion, relist on 410 Gone, backoff with jitter, changes at once, a stop that
interrupts a blocked read) is :class:`webhook.live.sources.reflector.Reflector`'s; this
module says what is listed (``/api/v1/namespaces``) and what is kept of each namespace (its
name and labels; the map keeps only the workspace and mode labels, and reports a change
only when one of those two moved).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import urllib3
from kubernetes import client as k8s_client

from policy.snapshot import NamespaceInfo
from webhook.clients.errors import SourceError, describe_api_error
from webhook.live.namespace_map import NamespaceMap
from webhook.live.sources.reflector import OnChange, Reflector

__all__ = ["NamespaceReflector", "fetch_namespaces"]


def _labels_of(obj: Any) -> Mapping[str, str]:
    labels = obj.get("metadata", {}).get("labels") if isinstance(obj, dict) else None
    return labels if isinstance(labels, dict) else {}


def _name_of(obj: Any) -> str:
    name = obj.get("metadata", {}).get("name") if isinstance(obj, dict) else None
    if not isinstance(name, str) or not name:
        raise ValueError("a namespace without metadata.name")
    return name


class _NamespaceMirror:
    """A :class:`NamespaceMap` as the reflector's mirror (namespace objects in, labels kept)."""

    def __init__(self, namespace_map: NamespaceMap) -> None:
        self.map = namespace_map

    @property
    def has_synced(self) -> bool:
        return self.map.has_synced

    def replace_items(self, items: list[dict[str, Any]]) -> bool:
        return self.map.replace({_name_of(item): _labels_of(item) for item in items})

    def apply_event(self, kind: str, obj: dict[str, Any]) -> bool:
        return self.map.apply(_name_of(obj), None if kind == "DELETED" else _labels_of(obj))

    def touch(self) -> None:
        self.map.touch()


class NamespaceReflector(Reflector):
    """Mirrors namespace labels into a :class:`NamespaceMap` through list + watch.

    ``on_change`` is called after the first successful list and after every change that
    alters the map (label changes that touch neither the workspace nor the mode label do
    not count). The timing knobs are :class:`Reflector`'s.
    """

    what = "namespace"

    def __init__(
        self,
        namespace_map: NamespaceMap,
        *,
        api_client: k8s_client.ApiClient | None = None,
        on_change: OnChange | None = None,
        **timings: Any,
    ) -> None:
        super().__init__(
            _NamespaceMirror(namespace_map), api_client=api_client, on_change=on_change, **timings
        )
        self.map = namespace_map

    async def wait_synced(self, timeout: float) -> bool:
        """Wait until the initial list has completed; False when ``timeout`` passes first."""
        return await asyncio.to_thread(self.map.wait_synced, timeout)

    def _request(self, api: k8s_client.ApiClient, **kwargs: Any) -> urllib3.HTTPResponse:
        return cast(
            urllib3.HTTPResponse,
            k8s_client.CoreV1Api(api).list_namespace(_preload_content=False, **kwargs),
        )


def fetch_namespaces(
    api_client: k8s_client.ApiClient,
    workspace_label: str,
    *,
    page_size: int = 500,
    timeout: float = 30.0,
) -> Mapping[str, NamespaceInfo]:
    """List namespaces once (``spacegate snapshot``); raises :class:`SourceError`."""
    reflector = NamespaceReflector(
        NamespaceMap(workspace_label),
        api_client=api_client,
        page_size=page_size,
        connect_timeout=min(timeout, 5.0),
        read_timeout=timeout,
    )
    try:
        reflector._list()
    except Exception as exc:
        raise SourceError(f"listing namespaces failed: {describe_api_error(exc)}") from None
    return reflector.map.namespaces
