"""Policy reports: a decision about a running workload, in the format policy tools read.

The background audit evaluates what already runs with the same ``policy.decide`` admission
uses (every image counts: nothing is "unchanged" for an object that exists), and writes one
report per audited resource, the way Kyverno and Kubewarden do, so that existing tools
(Policy Reporter and its UI, ``kubectl get policyreport``) show spacegate's findings:

- ``wgpolicyk8s.io/v1alpha2`` ``PolicyReport`` by default, ``openreports.io/v1alpha1``
  ``Report`` as a switch, same shape: named ``spacegate-<resource UID>``
  (:func:`report_name`), in its namespace, owned by it (garbage-collected with it), ``scope``
  naming it. Not the bare UID, which Kyverno and Kubewarden each use for their own report of
  the same resource (kyverno/kyverno#10230: two engines on one name fight over it); a name
  under spacegate's prefix is spacegate's by construction, so whatever stands there that
  spacegate did not write is replaced, never honoured (``webhook.leader.audit.reports``);
- one result per image: ``source: spacegate``, ``policy: registry-space-visibility``, a
  ``rule`` per kind of check, ``result`` pass / fail / warn / skip, ``message`` the same
  actionable text as the denial, ``properties`` with image, registry, space, workspace;
- ``summary`` counts, and the label ``app.kubernetes.io/managed-by: spacegate`` (a report
  under spacegate's name without it was written by someone else).

Pure: the caller passes the resource's identity and the decision; timestamps are the
caller's too (the report changes only when its content does).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from policy.decision import ContainerVerdict, Decision
from policy.provisioning import MANAGED_BY, MANAGED_BY_LABEL

__all__ = [
    "NAME_PREFIX",
    "POLICY",
    "SOURCE",
    "ReportFormat",
    "Resource",
    "build_report",
    "report_digest",
    "report_name",
    "result_of",
]

SOURCE = "spacegate"
POLICY = "registry-space-visibility"
# Every report spacegate writes, and only those, is named with this prefix.
NAME_PREFIX = "spacegate-"

ReportFormat = Literal["wgpolicyk8s", "openreports"]

API_VERSIONS: Mapping[ReportFormat, tuple[str, str]] = {
    "wgpolicyk8s": ("wgpolicyk8s.io/v1alpha2", "PolicyReport"),
    "openreports": ("openreports.io/v1alpha1", "Report"),
}


@dataclass(frozen=True, slots=True)
class Resource:
    """The audited object: what the report's ``scope`` and ownerReference name."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str


# The report rule of each policy.rules rule; anything else is judged by the space's binding.
_REPORT_RULES: Mapping[str, str] = {
    "invalid": "valid-reference",
    "local-image-id": "no-local-image-id",
    "unknown-registry": "known-registry",
    "unknown-space": "known-space",
    "workspace-registry": "workspace-registry",
    "host-spelling": "pull-secret-host",
}


def report_name(uid: str) -> str:
    """The name of the report on the resource with this UID (see the module doc)."""
    return NAME_PREFIX + uid


def rule_of(verdict: ContainerVerdict) -> str:
    """The check that decided one image, as a report ``rule`` name (keyed on the verdict's
    rule, never on its text, which quotes registry and space names)."""
    if verdict.verdict == "skipped":
        return "image-set"
    return _REPORT_RULES.get(verdict.rule, "private-space-binding")


def result_of(verdict: ContainerVerdict) -> Literal["pass", "fail", "warn", "skip"]:
    """pass / fail / warn / skip for one image (the mode does not soften a refusal here)."""
    if verdict.verdict in ("skipped", "exempt"):
        return "skip"
    if verdict.refused:
        return "fail"
    if verdict.verdict == "warned":
        return "warn"
    return "pass"


def build_report(
    resource: Resource,
    decision: Decision,
    *,
    timestamp: int,
    report_format: ReportFormat = "wgpolicyk8s",
) -> dict[str, Any]:
    """The report object for ``resource`` as ``decision`` judges it (see the module doc)."""
    api_version, kind = API_VERSIONS[report_format]
    summary = {"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0}
    results = []
    for verdict in decision.containers:
        outcome = result_of(verdict)
        summary[outcome] += 1
        properties = {
            "image": verdict.image or "",
            "source": verdict.noun,
            "name": verdict.name,
            "workspace": decision.workspace or "",
        }
        if verdict.registry:
            properties["registry"] = verdict.registry
        if verdict.space:
            properties["space"] = verdict.space
        results.append(
            {
                "source": SOURCE,
                "policy": POLICY,
                "rule": rule_of(verdict),
                "result": outcome,
                "scored": True,
                "severity": "high" if outcome == "fail" else "info",
                "category": "Supply chain",
                "message": _message(verdict, decision),
                "properties": properties,
                "timestamp": {"seconds": timestamp, "nanos": 0},
                "resources": [_reference(resource)],
            }
        )
    report: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": report_name(resource.uid),
            "namespace": resource.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "ownerReferences": [
                {
                    "apiVersion": resource.api_version,
                    "kind": resource.kind,
                    "name": resource.name,
                    "uid": resource.uid,
                }
            ],
        },
        "scope": _reference(resource),
        "summary": summary,
        "results": results,
    }
    if report_format == "openreports":
        report["source"] = SOURCE
    return report


def report_digest(report: Mapping[str, Any]) -> str:
    """What a report says (``summary``, ``results`` without their timestamps, ``scope``), as
    a digest: two reports with the same digest say the same, and no update is needed.

    Writers keep the digest of each existing report rather than the report (10,000 reports
    are 10,000 digests in memory). The report read back from the cluster is data a tenant
    may have edited; any JSON value digests without error.
    """
    results = report.get("results")
    if isinstance(results, list):
        results = [
            {k: v for k, v in r.items() if k != "timestamp"} if isinstance(r, dict) else r
            for r in results
        ]
    content = (report.get("summary"), results, report.get("scope"))
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _reference(resource: Resource) -> dict[str, str]:
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "namespace": resource.namespace,
        "name": resource.name,
        "uid": resource.uid,
    }


def _message(verdict: ContainerVerdict, decision: Decision) -> str:
    """The denial's own text for a refused image (what ``kubectl`` would show), else why."""
    if verdict.refused:
        where = f"workspace {decision.workspace}" if decision.workspace else "no workspace"
        return (
            f'{verdict.label} image "{verdict.image}" is not allowed in namespace '
            f"{decision.namespace} ({where}): {verdict.reason}"
        )
    return verdict.reason
