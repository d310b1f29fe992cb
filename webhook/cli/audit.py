"""``spacegate audit``: what already runs in the cluster, judged like ``check`` judges manifests.

Reads the live cluster (workloads and Pods, page by page; workspaces from the namespace
labels, as live mode does; registries synced once from the config), decides every workload
with the same ``policy.decide`` as admission, and prints what ``check`` prints: the same
columns, the same JSON objects, the same exit codes (0 everything admitted, 1 something
refused, 2 bad input). Pods owned by a workload it lists are represented by that workload.

``--what-if FILE`` answers the question no peer answers: evaluate the running workloads
under a proposed change and list exactly what would be refused that is admitted today — the
change to review before applying it. ``FILE`` is a new config (an unbinding, a space made
private, a namespace map change) or RegistrySpaceBinding manifests as they are about to be
applied (each replaces the cluster's object of its name); ``--what-if-delete NAME`` judges
the deletion of the cluster's object ``NAME``. Both kinds may be combined.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from kubernetes.client import ApiClient

from policy.bindings import KIND, BindingObject, uses_objects
from policy.config import Config, ConfigError
from policy.snapshot import Snapshot
from webhook.cli import exits
from webhook.cli.bindings import BindingFileError, load_binding_objects
from webhook.cli.check import CheckReport, WorkloadResult, to_json, to_table
from webhook.cli.cluster import connect, live_snapshot
from webhook.clients.errors import API_ERRORS, SourceError, describe_api_error
from webhook.leader.audit.findings import Finding, audit, list_objects
from webhook.live.sources.namespaces import fetch_namespaces
from webhook.settings import read_config

PROG = "spacegate audit"


@dataclass
class WhatIf:
    """A proposed change: a new config, binding objects applied, objects deleted."""

    config: Config | None = None
    applied: Mapping[str, BindingObject] = field(default_factory=dict)
    deleted: tuple[str, ...] = ()

    @property
    def asked(self) -> bool:
        return self.config is not None or bool(self.applied) or bool(self.deleted)


def _what_if(path: str | None, deleted: list[str]) -> WhatIf:
    """``--what-if FILE``: RegistrySpaceBinding manifests when the file holds any, else a
    config. Raises ``ConfigError`` or ``BindingFileError`` naming what is wrong."""
    change = WhatIf(deleted=tuple(dict.fromkeys(deleted)))
    if path is None:
        return change
    try:
        applied = load_binding_objects([path])
    except BindingFileError as exc:
        if not exc.unreadable:
            raise
        applied = {}  # not manifests: read as a config, whose error then names the problem
    if applied:
        change.applied = applied
    else:
        change.config = read_config(path)
    return change


def run(
    config_path: str | None,
    *,
    namespace: str | None,
    output: str = "table",
    what_if: str | None = None,
    what_if_delete: list[str] | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Audit the cluster (``namespace`` None: all namespaces); the exit code."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        config = read_config(config_path)
        change = _what_if(what_if, what_if_delete or [])
    except (ConfigError, BindingFileError) as exc:
        print(f"{PROG}: {'config error: ' if isinstance(exc, ConfigError) else ''}{exc}", file=err)
        return exits.USAGE
    api = connect(PROG, kubeconfig, context, err)
    if api is None:
        return exits.USAGE
    try:
        return asyncio.run(
            _run(config, change, api, namespace=namespace, output=output, out=out, err=err)
        )
    except SourceError as exc:
        print(f"{PROG}: {exc}", file=err)
        return exits.REFUSED
    except API_ERRORS as exc:
        # A kind these credentials may not list, or an apiserver gone mid-audit: a source
        # failure like the others, named, never a traceback.
        print(f"{PROG}: reading the cluster failed: {describe_api_error(exc)}", file=err)
        return exits.REFUSED
    finally:
        api.close()  # type: ignore[no-untyped-call]


async def _run(
    config: Config,
    change: WhatIf,
    api: ApiClient,
    *,
    namespace: str | None,
    output: str,
    out: TextIO,
    err: TextIO,
) -> int:
    current, labels = await live_snapshot(config, api)
    future: Snapshot | None = None
    if change.asked:
        objects = dict(current.binding_objects or {})
        unknown = [name for name in change.deleted if name not in objects]
        if unknown:
            print(f"{PROG}: no {KIND} named {', '.join(unknown)} in the cluster", file=err)
            return exits.USAGE
        for name in change.deleted:
            del objects[name]
        objects.update(change.applied)
        proposed = change.config or config
        if (change.applied or change.deleted) and not uses_objects(proposed):
            print(
                f"{PROG}: warning: bindings.source is config: {KIND} objects bind nothing",
                file=err,
            )
        if proposed.workspace_label != config.workspace_label:
            labels = dict(await asyncio.to_thread(fetch_namespaces, api, proposed.workspace_label))
        future, _ = await live_snapshot(
            proposed, api, labels, binding_objects=objects, read_objects=False
        )
    report = await asyncio.to_thread(_judge, current, future, api, namespace)
    if output == "json":
        print(to_json(report), file=out)
    else:
        text = to_table(report)
        if change.asked:
            text = (
                text.replace("workloads checked:", "workloads admitted today would be refused:", 1)
                if report.results
                else "nothing admitted today would be refused"
            )
        print(text, file=out)
    return report.exit_code


def _judge(
    current: Snapshot, future: Snapshot | None, api: ApiClient, namespace: str | None
) -> CheckReport:
    """One streaming pass over the cluster: a page of objects in memory at a time.

    With ``future`` (``--what-if``), each object is judged under both snapshots in the same
    pass (the two audits skip the same owned objects, so they stay in step) and only what
    the future refuses and today admits is reported.
    """
    report = CheckReport()
    if future is None:
        report.results.extend(_result(f) for f in audit(current, list_objects(api, namespace)))
        return report
    today, tomorrow = itertools.tee(list_objects(api, namespace))
    for before, after in zip(audit(current, today), audit(future, tomorrow), strict=True):
        if _admitted(before) and not _admitted(after):
            report.results.append(_result(after))
    return report


def _admitted(finding: Finding | None) -> bool:
    return finding is not None and finding.decision is not None and finding.decision.allowed


def _result(finding: Finding) -> WorkloadResult:
    resource = finding.resource
    return WorkloadResult(
        resource.kind,
        resource.namespace,
        resource.name,
        "cluster",
        decision=finding.decision,
        error=finding.error,
    )
