"""``spacegate snapshot``: sync once from the live sources and write an offline config.

CI pipelines and laptops run ``spacegate check`` without registry credentials or cluster
access, yet want the verdicts the cluster would give. This command lists every registry
without static ``spaces:`` (and the namespaces and RegistrySpaceBinding objects, when a
Kubernetes API is configured; the objects' bindings are merged into ``bindings:``) once,
with the same sources and refresher code the webhook runs, and writes one config document
in which every registry has static ``spaces:`` and ``namespaces:`` maps each namespace to
its workspace. Credentials references are dropped: offline checks never call a registry,
and a file meant to be committed should not point at Secret paths.

The output is written only when every source answered: a partial snapshot would make
offline checks deny images the cluster admits. Exit codes: 0 written, 1 a source failed
(each named on stderr), 2 an unusable config.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from policy.bindings import BindingObject, uses_objects
from policy.config import MODE_LABEL, Config, ConfigError, dump_config
from policy.snapshot import NamespaceInfo, Snapshot
from webhook.cli import exits
from webhook.clients.errors import SourceError
from webhook.clients.kube import ApiClientFactory, kube_configured
from webhook.live.refresher import DEFAULT_FETCH_TIMEOUT, Refresher, SourceFactory
from webhook.settings import EMBEDDED_DEMO, read_config

PROG = "spacegate snapshot"
_OBJECTS = "RegistrySpaceBinding objects"


class _Flow(dict[str, Any]):
    """A mapping written in YAML flow style (``{name: library, public: true}``)."""


class _Dumper(yaml.SafeDumper):
    """Block style overall, flow style for one-line records, like the hand-written configs."""


_Dumper.add_representer(
    _Flow,
    lambda dumper, data: dumper.represent_mapping(
        "tag:yaml.org,2002:map", data.items(), flow_style=True
    ),
)


def config_document(
    config: Config, snapshot: Snapshot, namespaces: Mapping[str, NamespaceInfo] | None
) -> dict[str, Any]:
    """The config as a plain document (``policy.config.dump_config``, without credential
    references), with the snapshot's spaces made static.

    ``namespaces`` replaces the config's static map when given (a listed cluster).
    """
    document = dump_config(config, credentials=False)
    for entry in document["registries"]:
        state = snapshot.registries[entry["name"]]
        entry["spaces"] = [
            _Flow(name=name, public=public) for name, public in sorted(state.spaces.items())
        ]
    if snapshot.binding_objects is not None:
        # The cluster's objects merged with the config's bindings: what the cluster enforces.
        document["bindings"] = [
            _Flow(registry=registry, space=space, workspaces=sorted(workspaces))
            for (registry, space), workspaces in sorted(snapshot.bindings.items())
            if workspaces
        ]
    elif isinstance(document["bindings"], dict):
        document["bindings"]["items"] = [_Flow(b) for b in document["bindings"]["items"]]
    else:
        document["bindings"] = [_Flow(binding) for binding in document["bindings"]]
    if namespaces is not None:
        document["namespaces"] = {
            name: info.workspace
            for name, info in sorted(namespaces.items())
            if info.workspace is not None
        }
    return document


def render(
    config: Config,
    snapshot: Snapshot,
    namespaces: Mapping[str, NamespaceInfo] | None,
    *,
    source: str,
    now: datetime,
) -> str:
    """The offline config text, with a header saying where and when it came from."""
    header = [
        f"# Written by `spacegate snapshot` from {source} at "
        f"{now.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}.",
        "# Every registry's spaces are frozen here, for offline checks (`spacegate check",
        "# --config`); a webhook serving this file would never see new spaces.",
        "# Credentials references are left out: offline checks never call a registry.",
    ]
    if snapshot.binding_objects is not None:
        header.append(
            f"# bindings: the config's and the cluster's {len(snapshot.binding_objects)} "
            "RegistrySpaceBinding objects, merged."
        )
    modes = sorted(
        (name, info.mode) for name, info in (namespaces or {}).items() if info.mode is not None
    )
    if modes:
        header.append(
            f"# Namespace {MODE_LABEL} labels have no place in this format and are not kept:"
        )
        header.extend(f"#   {name}: {mode}" for name, mode in modes)
    body = yaml.dump(
        config_document(config, snapshot, namespaces),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    return "\n".join(header) + "\n" + body


async def sync(
    config: Config,
    *,
    source_factory: SourceFactory,
    namespace_lister: Callable[[], Mapping[str, NamespaceInfo]] | None,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
) -> tuple[Snapshot, Mapping[str, NamespaceInfo] | None, dict[str, str]]:
    """List every source once: (snapshot, namespaces or None, failed source -> error)."""
    refresher = Refresher(config, source_factory=source_factory, fetch_timeout=fetch_timeout)
    try:
        if namespace_lister is None:
            failures = await refresher.sync_once()
            return refresher.snapshot, None, failures
        listing = asyncio.create_task(asyncio.to_thread(namespace_lister))
        failures = await refresher.sync_once()
        try:
            namespaces: Mapping[str, NamespaceInfo] | None = await listing
        except SourceError as exc:
            failures["namespaces"] = str(exc)
            namespaces = None
        return refresher.snapshot, namespaces, failures
    finally:
        await refresher.aclose()


def _default_namespace_lister(
    config: Config, api_client: ApiClientFactory | None, timeout: float
) -> Callable[[], Mapping[str, NamespaceInfo]]:
    from webhook.clients.kube import load_api_client
    from webhook.live.sources.namespaces import fetch_namespaces

    def lister() -> Mapping[str, NamespaceInfo]:
        client = load_api_client() if api_client is None else api_client()
        try:
            return fetch_namespaces(client, config.workspace_label, timeout=timeout)
        finally:
            client.close()  # type: ignore[no-untyped-call]

    return lister


def _cluster_objects(
    config: Config, api_client: ApiClientFactory | None
) -> Mapping[str, BindingObject] | None:
    """The cluster's binding objects (None: their CRD is not served); SourceError."""
    from webhook.clients.kube import load_api_client
    from webhook.live.sources.bindings import fetch_binding_objects, not_served_hint

    client = load_api_client() if api_client is None else api_client()
    try:
        objects = fetch_binding_objects(client)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    if objects is None and config.binding_source in ("objects", "both"):
        raise SourceError(f"bindings.source is {config.binding_source} but {not_served_hint()}")
    return objects


def _write(text: str, output: str | None, stdout: TextIO) -> None:
    if output is None or output == "-":
        stdout.write(text)
        stdout.flush()
        return
    target = Path(output)
    # Written beside the target and renamed over it: a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(
    config_path: str | None,
    output: str | None,
    *,
    kube: bool | None = None,
    source_factory: SourceFactory | None = None,
    api_client: ApiClientFactory | None = None,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Sync once and write the offline config to ``output`` (None or ``-``: stdout).

    ``kube``: True lists namespaces from the Kubernetes API, False keeps the config's
    static map, None lists them when an API is configured (in a cluster or a kubeconfig).
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        config = read_config(config_path)
    except ConfigError as exc:
        print(f"{PROG}: config error: {exc}", file=err)
        return exits.USAGE
    if source_factory is None:
        from webhook.live.sources.factory import make_source

        source_factory = make_source
    use_kube = kube_configured() if kube is None else kube
    lister = _default_namespace_lister(config, api_client, fetch_timeout) if use_kube else None
    snapshot, namespaces, failures = asyncio.run(
        sync(
            config,
            source_factory=source_factory,
            namespace_lister=lister,
            fetch_timeout=fetch_timeout,
        )
    )
    objects: Mapping[str, BindingObject] | None = None
    if use_kube and uses_objects(config) and "namespaces" not in failures:
        try:
            objects = _cluster_objects(config, api_client)
        except SourceError as exc:
            failures[_OBJECTS] = str(exc)
    if failures:
        for name, error in sorted(failures.items()):
            what = name if name in ("namespaces", _OBJECTS) else f"registry {name!r}"
            print(f"{PROG}: {what} failed: {error}", file=err)
        print(f"{PROG}: nothing written ({len(failures)} source(s) failed)", file=err)
        return exits.REFUSED
    if objects is not None:
        snapshot = Snapshot.build(
            config,
            spaces={n: st.spaces for n, st in snapshot.registries.items() if st.synced},
            binding_objects=objects,
        )
    text = render(
        config,
        snapshot,
        namespaces,
        source=config_path or EMBEDDED_DEMO,
        now=now(),
    )
    try:
        _write(text, output, out)
    except OSError as exc:
        print(f"{PROG}: cannot write {output}: {exc.strerror or exc}", file=err)
        return exits.USAGE
    if output not in (None, "-"):
        listed = sum(len(state.spaces) for state in snapshot.registries.values())
        ns_count = len(namespaces) if namespaces is not None else len(config.namespaces)
        print(
            f"{PROG}: wrote {output}: {len(snapshot.registries)} registries, {listed} spaces, "
            f"{ns_count} namespaces",
            file=err,
        )
    return exits.OK
