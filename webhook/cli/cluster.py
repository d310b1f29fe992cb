"""What the commands that read the live cluster share (``audit``, ``provision``).

Both connect to the Kubernetes API the way ``serve`` does (an explicit kubeconfig, else
in-cluster, else the default kubeconfig) and build the snapshot live mode would serve now:
registries synced once from the config, workspaces from the namespace labels, and the
RegistrySpaceBinding objects when ``bindings.source`` counts them (where their CRD is
served, or required when the source names them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TextIO

from kubernetes.client import ApiClient

from policy.bindings import BindingObject, uses_objects
from policy.config import Config
from policy.snapshot import NamespaceInfo, Snapshot
from webhook.cli.snapshot import sync
from webhook.clients.errors import SourceError
from webhook.clients.kube import load_api_client
from webhook.live.sources.bindings import fetch_binding_objects, not_served_hint
from webhook.live.sources.factory import make_source
from webhook.live.sources.namespaces import fetch_namespaces


def connect(
    prog: str, kubeconfig: str | None, context: str | None, err: TextIO
) -> ApiClient | None:
    """An API client, or None after saying on ``err`` why there is none."""
    try:
        return load_api_client(kubeconfig, context=context)
    except SourceError as exc:
        print(f"{prog}: {exc}", file=err)
        return None


def cluster_bindings(config: Config, api: ApiClient) -> dict[str, BindingObject] | None:
    """The cluster's RegistrySpaceBinding objects as live mode would count them: None when
    ``bindings.source`` leaves them out or their CRD is not served (an error when the
    source names them: :class:`SourceError`)."""
    if not uses_objects(config):
        return None
    objects = fetch_binding_objects(api)
    if objects is None and config.binding_source in ("objects", "both"):
        raise SourceError(f"bindings.source is {config.binding_source} but {not_served_hint()}")
    return objects


async def live_snapshot(
    config: Config,
    api: ApiClient,
    namespaces: dict[str, NamespaceInfo] | None = None,
    *,
    binding_objects: Mapping[str, BindingObject] | None = None,
    read_objects: bool = True,
) -> tuple[Snapshot, dict[str, NamespaceInfo]]:
    """The snapshot live mode would serve now, and the namespace map it was built with.

    ``namespaces`` skips listing them (a second config judged against the same cluster).
    The binding objects are read from the cluster (``read_objects``), else
    ``binding_objects`` are used. Raises :class:`SourceError` naming every source that
    failed.
    """
    if read_objects:
        binding_objects = await asyncio.to_thread(cluster_bindings, config, api)
    synced, listed, failures = await sync(
        config,
        source_factory=make_source,
        namespace_lister=None
        if namespaces is not None
        else lambda: fetch_namespaces(api, config.workspace_label),
    )
    if failures:
        detail = "; ".join(
            f"{'namespaces' if name == 'namespaces' else f'registry {name!r}'}: {error}"
            for name, error in sorted(failures.items())
        )
        raise SourceError(f"could not sync: {detail}")
    labels = dict(listed or {}) if namespaces is None else namespaces
    spaces = {name: s.spaces for name, s in synced.registries.items() if s.synced}
    snapshot = Snapshot.build(
        config, spaces=spaces, namespaces=labels, binding_objects=binding_objects
    )
    return snapshot, labels
