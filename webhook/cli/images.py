"""``spacegate images``: what a namespace may deploy — spaces, and down to repositories and tags.

Without ``--repositories`` or ``--tags`` it prints the namespace's spaces, as it always has:
from the config's static spaces (the embedded demo works offline), or, when ``--config``
names registries to list, from one live sync like ``spacegate snapshot``. ``--repositories``
and ``--tags IMAGE`` list from the registries themselves, through the image selector's catalog
(``webhook.selector.catalog``) — the same visibility, the same listing credential, the same
404 for what the namespace may not use — so they need a config whose registries answer; the
embedded demo's registries are examples and are never called.

Exit codes: 0 listed, 1 nothing found there or a registry failed, 2 bad usage or config.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from policy.bindings import BindingObject
from policy.config import Config
from policy.reference import InvalidReference, parse_reference
from policy.snapshot import Snapshot
from webhook.cli import exits
from webhook.cli.explain import images_json, images_table
from webhook.cli.table import render_table
from webhook.clients.errors import SourceError
from webhook.selector.catalog import Catalog, NotVisible
from webhook.selector.names import MAX_LIMIT, BadRequest, Paging

PROG = "spacegate images"
MAX_PAGES = 1000


def run(
    config_path: str | None,
    namespace: str,
    *,
    space: str | None = None,
    repositories: bool = False,
    tags: str | None = None,
    output: str = "table",
    bindings: list[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """List; the exit code. ``bindings`` are files of RegistrySpaceBinding objects judged
    beside the config (``--bindings``; a bad object raises ``BindingFileError``)."""
    from webhook.cli.bindings import load_binding_objects, source_warnings
    from webhook.settings import read_config

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    config = read_config(config_path)
    objects = load_binding_objects(bindings) if bindings else None
    for warning in source_warnings(config, objects):
        print(f"spacegate: warning: {warning}", file=err)
    if (repositories or tags) and config_path is None:
        print(
            f"{PROG}: the embedded demo lists its static spaces offline (without --repositories "
            "or --tags); repositories and tags are listed from the registries of a config "
            "(--config FILE), which the demo's example hosts are not",
            file=err,
        )
        return exits.USAGE
    if config_path is None or not any(r.spaces is None for r in config.registries):
        snapshot = Snapshot.from_config(config, objects)
    else:
        try:
            snapshot = asyncio.run(_live_snapshot(config, objects))
        except SourceError as exc:
            print(f"{PROG}: {exc}", file=err)
            return exits.REFUSED
    if not repositories and not tags:
        render = images_json if output == "json" else images_table
        print(render(snapshot, namespace, space), file=out)
        return exits.OK
    try:
        if tags:
            document = asyncio.run(_tags(snapshot, namespace, tags))
            text = json.dumps(document, indent=2) if output == "json" else _tags_table(document)
        else:
            document = asyncio.run(_repositories(snapshot, namespace, space))
            text = (
                json.dumps(document, indent=2)
                if output == "json"
                else _repositories_table(document)
            )
    except (NotVisible, BadRequest) as exc:
        print(f"{PROG}: {exc}", file=err)
        return exits.REFUSED if isinstance(exc, NotVisible) else exits.USAGE
    except SourceError as exc:
        print(f"{PROG}: the registry could not be listed: {exc}", file=err)
        return exits.REFUSED
    print(text, file=out)
    if document.get("stale"):
        print(f"{PROG}: stale data: {document.get('error')}", file=err)
    return exits.OK


async def _live_snapshot(config: Config, objects: Mapping[str, BindingObject] | None) -> Snapshot:
    """Registries listed once; namespaces from the cluster when there is one; the binding
    objects given on the command line."""
    from webhook.cli.snapshot import _default_namespace_lister, sync
    from webhook.clients.kube import kube_configured
    from webhook.live.sources.factory import make_source

    lister = _default_namespace_lister(config, None, 30.0) if kube_configured() else None
    synced, namespaces, failures = await sync(
        config, source_factory=make_source, namespace_lister=lister
    )
    if failures:
        detail = "; ".join(f"{name}: {error}" for name, error in sorted(failures.items()))
        raise SourceError(f"could not sync: {detail}")
    spaces = {name: s.spaces for name, s in synced.registries.items() if s.synced}
    return Snapshot.build(config, spaces=spaces, namespaces=namespaces, binding_objects=objects)


async def _every_page(fetch: Any) -> dict[str, Any]:
    """All pages of a listing merged into the first page's document."""
    document: dict[str, Any] = await fetch(Paging(1, MAX_LIMIT))
    page = 1
    while len(document["items"]) < document["total"] and page < MAX_PAGES:
        page += 1
        more = await fetch(Paging(page, MAX_LIMIT))
        if not more["items"]:
            break
        document["items"].extend(more["items"])
        document["stale"] = document["stale"] or more["stale"]
    document.pop("page", None)
    document.pop("limit", None)
    return document


async def _repositories(snapshot: Snapshot, namespace: str, space: str | None) -> dict[str, Any]:
    catalog = Catalog(lambda: snapshot)
    try:
        if namespace not in snapshot.namespaces:
            raise NotVisible(f'namespace "{namespace}" not found')
        return await _every_page(
            lambda paging: catalog.repositories(
                namespace, registry=None, space=space, query="", paging=paging
            )
        )
    finally:
        await catalog.aclose()


async def _tags(snapshot: Snapshot, namespace: str, image: str) -> dict[str, Any]:
    try:
        ref = parse_reference(image)
    except InvalidReference as exc:
        raise BadRequest(f"--tags {image!r}: {exc}") from None
    state = snapshot.registry_for_domain(ref.domain)
    if state is None:
        raise NotVisible(f"no registry of the config serves {ref.domain}")
    catalog = Catalog(lambda: snapshot)
    try:
        return await _every_page(
            lambda paging: catalog.tags(
                namespace, registry=state.name, repository=ref.path, paging=paging
            )
        )
    finally:
        await catalog.aclose()


def _repositories_table(document: dict[str, Any]) -> str:
    rows = [
        (
            r["registry"],
            r["space"],
            r["image"],
            "-" if r["artifactCount"] is None else str(r["artifactCount"]),
            (r["updated"] or "-")[:19].replace("T", " "),
        )
        for r in document["items"]
    ]
    lines = [f"namespace {document['namespace']} may deploy from {len(rows)} repositories:"]
    lines.extend(render_table(("REGISTRY", "SPACE", "REPOSITORY", "ARTIFACTS", "UPDATED"), rows))
    return "\n".join(lines)


def _tags_table(document: dict[str, Any]) -> str:
    rows = [
        (
            t["name"],
            t["digest"] or "-",
            (t["pushed"] or "-")[:19].replace("T", " "),
            "-" if t["size"] is None else f"{t['size'] / 1048576:.1f} MiB",
        )
        for t in document["items"]
    ]
    secret = document["pullSecret"]
    lines = [
        f"{document['image']} in namespace {document['namespace']}"
        + (f" (pull secret {secret}):" if secret else ":")
    ]
    lines.extend(render_table(("TAG", "DIGEST", "PUSHED", "SIZE"), rows))
    return "\n".join(lines)
