"""What is already running: evaluate every Pod and workload against the current snapshot.

Admission only sees what is created from now on; a space unbound, a namespace moved, or a
project made private leaves running workloads behind. The audit reads every Pod and every
workload kind spacegate validates, page by page (``webhook.clients.kube_paging``: a page at
a time in memory), and decides each with the same ``policy.decide`` as admission — every
image counts here, nothing is "unchanged" for an object that exists. Pods and
ReplicaSets/Jobs owned by a workload the audit also reads are covered by that workload's
result (a Deployment with 5,000 Pods is one finding, not 5,001).

Used by ``spacegate audit`` (the CLI, with ``--what-if``) and by the leader's background
pass (``webhook.leader.audit.passes``). Reads block; they run off the admission path, in a
worker thread or a child process.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from policy.decision import Decision, decide
from policy.report import Resource
from policy.snapshot import Snapshot
from policy.workload import WorkloadError, pod_spec
from webhook.clients.kube_paging import PAGE_SIZE, list_items

# (API group path, plural, kind, apiVersion) of everything the audit reads, owners first.
KINDS: tuple[tuple[str, str, str, str], ...] = (
    ("/apis/batch/v1", "cronjobs", "CronJob", "batch/v1"),
    ("/apis/apps/v1", "deployments", "Deployment", "apps/v1"),
    ("/apis/apps/v1", "statefulsets", "StatefulSet", "apps/v1"),
    ("/apis/apps/v1", "daemonsets", "DaemonSet", "apps/v1"),
    ("/apis/apps/v1", "replicasets", "ReplicaSet", "apps/v1"),
    ("/apis/batch/v1", "jobs", "Job", "batch/v1"),
    ("/api/v1", "replicationcontrollers", "ReplicationController", "v1"),
    ("/api/v1", "podtemplates", "PodTemplate", "v1"),
    ("/api/v1", "pods", "Pod", "v1"),
)
OWNER_KINDS = frozenset(kind for _, _, kind, _ in KINDS)


@dataclass(frozen=True)
class Finding:
    """One audited resource and how the current snapshot judges it."""

    resource: Resource
    decision: Decision | None
    error: str | None = None


def list_objects(
    api: client.ApiClient,
    namespace: str | None = None,
    page_size: int = PAGE_SIZE,
    *,
    timeout: float | None = None,
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(kind, apiVersion, object) for every workload and Pod, owners first, one page in
    memory at a time (``timeout``: per request, seconds)."""
    for prefix, plural, kind, api_version in KINDS:
        path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
        for item in list_items(api, path, page_size=page_size, timeout=timeout):
            yield kind, api_version, item


def _owner(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") in OWNER_KINDS:
            return ref.get("kind", ""), ref.get("uid", "")
    return None


def audit(
    snapshot: Snapshot, objects: Iterator[tuple[str, str, dict[str, Any]]]
) -> Iterator[Finding]:
    """Decide on every object not covered by an owner the audit also reads.

    ``objects`` must come owners first (:data:`KINDS` order), so an owned object can be
    skipped as soon as its owner has been seen.
    """
    seen: set[str] = set()
    for kind, api_version, obj in objects:
        meta = obj.get("metadata") or {}
        uid = meta.get("uid", "")
        seen.add(uid)
        owner = _owner(obj)
        if owner is not None and owner[1] in seen:
            continue
        resource = Resource(api_version, kind, meta.get("namespace", ""), meta.get("name", ""), uid)
        try:
            ref = pod_spec(obj, kind)
        except WorkloadError as exc:
            yield Finding(resource, None, str(exc))
            continue
        if ref is None:  # pragma: no cover - every listed kind has a pod spec
            continue
        decision = decide(snapshot, resource.namespace, ref.spec, pointer=ref.pointer, kind=kind)
        yield Finding(resource, decision)


def refused(finding: Finding) -> bool:
    """Refused by the rules (whatever the namespace's mode makes of it at admission)."""
    return finding.decision is not None and any(c.refused for c in finding.decision.containers)
