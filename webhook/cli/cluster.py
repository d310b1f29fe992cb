"""What the commands that read the live cluster share (``audit``, ``provision``).

Both connect to the Kubernetes API the way ``serve`` does (an explicit kubeconfig, else
in-cluster, else the default kubeconfig) and build the snapshot live mode would serve now:
registries synced once from the config, workspaces from the namespace labels.
"""

from __future__ import annotations

from typing import TextIO

from kubernetes.client import ApiClient

from policy.config import Config
from policy.snapshot import NamespaceInfo, Snapshot
from webhook.cli.snapshot import sync
from webhook.clients.errors import SourceError
from webhook.clients.kube import load_api_client
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


async def live_snapshot(
    config: Config, api: ApiClient, namespaces: dict[str, NamespaceInfo] | None = None
) -> tuple[Snapshot, dict[str, NamespaceInfo]]:
    """The snapshot live mode would serve now, and the namespace map it was built with.

    ``namespaces`` skips listing them (a second config judged against the same cluster).
    Raises :class:`SourceError` naming every source that failed.
    """
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
    return Snapshot.build(config, spaces=spaces, namespaces=labels), labels
