"""``spacegate check``: the dry-run policy check over manifests.

The same ``policy.decide`` the webhook runs, applied to files before they reach a cluster,
the way ``kyverno apply`` and ``gator test`` are used in CI. A workload whose pod spec is
malformed is reported (and makes the exit code 2) without stopping the check of the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from policy.decision import Decision, decide
from policy.snapshot import Snapshot
from policy.workload import (
    WorkloadError,
    api_group,
    is_workload,
    object_name,
    object_namespace,
    pod_spec,
)
from webhook.cli import exits
from webhook.cli.manifests import Manifest
from webhook.cli.table import render_table


@dataclass(frozen=True, slots=True)
class WorkloadResult:
    """The verdict for one workload object (or why it could not be checked)."""

    kind: str
    namespace: str
    name: str
    source: str
    decision: Decision | None = None
    error: str | None = None

    @property
    def allowed(self) -> bool:
        return self.error is None and self.decision is not None and self.decision.allowed


@dataclass(slots=True)
class CheckReport:
    """All results of one ``check`` run."""

    results: list[WorkloadResult] = field(default_factory=list)
    skipped: int = 0  # objects that produce no pods (Services, ConfigMaps, ...)

    @property
    def exit_code(self) -> int:
        if any(r.error for r in self.results):
            return exits.USAGE
        if any(not r.allowed for r in self.results):
            return exits.REFUSED
        return exits.OK


def check_manifests(
    snapshot: Snapshot, manifests: Iterable[Manifest], default_namespace: str = "default"
) -> CheckReport:
    """Decide on every workload; count the objects that are not workloads."""
    report = CheckReport()
    for manifest in manifests:
        obj = manifest.obj
        kind = obj.get("kind")
        namespace = object_namespace(obj) or default_namespace
        name = object_name(obj) or "(unnamed)"
        if not is_workload(kind, api_group(obj.get("apiVersion"))):
            report.skipped += 1
            continue
        try:
            ref = pod_spec(obj)
        except WorkloadError as exc:
            report.results.append(
                WorkloadResult(str(kind), namespace, name, manifest.where, error=str(exc))
            )
            continue
        if ref is None:
            report.skipped += 1
            continue
        decision = decide(snapshot, namespace, ref.spec, pointer=ref.pointer, kind=ref.kind)
        report.results.append(
            WorkloadResult(ref.kind, namespace, name, manifest.where, decision=decision)
        )
    return report


def to_json(report: CheckReport) -> str:
    """One object per checked workload (the contract in README "Offline checks in CI")."""
    out = []
    for result in report.results:
        entry: dict[str, object] = {
            "kind": result.kind,
            "namespace": result.namespace,
            "name": result.name,
            "allowed": result.allowed,
            "source": result.source,
        }
        if result.error is not None:
            entry["error"] = result.error
            entry["containers"] = []
        elif result.decision is not None:
            entry["mode"] = result.decision.mode
            entry["workspace"] = result.decision.workspace
            entry["containers"] = [
                {
                    "source": c.noun,
                    "name": c.name,
                    "image": c.image,
                    "verdict": c.verdict,
                    "reason": c.reason,
                }
                for c in result.decision.containers
            ]
            if result.decision.patch:
                entry["pullSecret"] = pull_secret_of(result.decision)
        out.append(entry)
    return orjson.dumps(out, option=orjson.OPT_INDENT_2).decode()


def pull_secret_of(decision: Decision) -> str:
    """The pull secret the webhook would inject (the patch's value), for reports."""
    for op in decision.patch:
        value = op.get("value")
        if isinstance(value, dict):
            return str(value.get("name", ""))
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return str(value[0].get("name", ""))
    return ""


def to_table(report: CheckReport) -> str:
    """A readable table: one row per container, then a summary line."""
    header = ("NAMESPACE", "WORKLOAD", "CONTAINER", "IMAGE", "VERDICT", "REASON")
    rows: list[tuple[str, ...]] = []
    for result in report.results:
        workload = f"{result.kind}/{result.name}"
        if result.error is not None:
            rows.append((result.namespace, workload, "-", "-", "error", result.error))
            continue
        assert result.decision is not None
        for c in result.decision.containers:
            name = c.name if c.noun != "volume" else f"{c.name} (volume)"
            rows.append((result.namespace, workload, name, c.image or "-", c.verdict, c.reason))
    lines = render_table(header, rows)
    admitted = sum(1 for r in report.results if r.allowed)
    denied = sum(1 for r in report.results if r.error is None and not r.allowed)
    errors = sum(1 for r in report.results if r.error is not None)
    summary = (
        f"{len(report.results)} workloads checked: {admitted} admitted, {denied} denied"
        + (f", {errors} invalid" if errors else "")
        + f"; {report.skipped} other objects skipped"
    )
    lines.extend(["", summary])
    return "\n".join(lines)
