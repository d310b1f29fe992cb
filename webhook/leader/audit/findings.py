"""What is already running: evaluate every Pod and workload against the current snapshot.

Admission only sees what is created from now on; a space unbound, a namespace moved, or a
project made private leaves running workloads behind. The audit reads every Pod and every
workload kind spacegate validates, page by page (``webhook.clients.kube_paging``: a page at
a time in memory), and decides each with the same ``policy.decide`` as admission — every
image counts here, nothing is "unchanged" for an object that exists.

It judges what actually runs. A Pod, ReplicaSet or Job is folded into its controller's row
(a Deployment with 5,000 Pods is one finding, not 5,001) only when its owner was listed, in
its namespace, and every image it pulls (``policy.workload``: containers, init, ephemeral,
image volumes) is one of the owner's template's: the owner's row then judged exactly those
images. Anything else gets its own finding: a Pod with a forged ``ownerReference``, the
Pods of an ``OnDelete`` StatefulSet or DaemonSet still running the template before the last
change, the ReplicaSet of a paused Deployment whose template moved on, a Pod that gained an
ephemeral container. A ReplicaSet of a Deployment scaled to zero whose template is not the
Deployment's (an old revision kept for rollbacks) runs nothing: it gets no row and covers
no Pod. Memory: one image set per owner (shared between owners with equal sets), never the
objects.

Used by ``spacegate audit``"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from policy.decision import Decision, decide
from policy.report import Resource
from policy.snapshot import Snapshot
from policy.workload import WorkloadError, images, pod_spec
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
# Kinds whose pod template stands for the objects they control (Pods, ReplicaSets, Jobs).
TEMPLATE_OWNERS = frozenset(
    {
        "CronJob",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "ReplicationController",
    }
)


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


def _controller(meta: Mapping[str, Any]) -> str | None:
    """The uid of the object's controller, if that is a kind the audit lists."""
    refs = meta.get("ownerReferences")
    for ref in refs if isinstance(refs, list) else ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            uid = ref.get("uid")
            if ref.get("kind") in OWNER_KINDS and isinstance(uid, str) and uid:
                return uid
    return None


@dataclass(frozen=True, slots=True)
class _Template:
    """What a listed owner's row judged: its namespace and its template's images."""

    namespace: str
    images: frozenset[str]


class _Owners:
    """The template of every owner listed so far, by uid: what it may stand for."""

    def __init__(self) -> None:
        self._by_uid: dict[str, _Template] = {}
        self._sets: dict[frozenset[str], frozenset[str]] = {}

    def covers(self, uid: str | None, namespace: str, used: frozenset[str]) -> bool:
        """The owner ``uid`` judged every image in ``used`` for this namespace."""
        template = self._by_uid.get(uid) if uid else None
        return template is not None and template.namespace == namespace and used <= template.images

    def add(self, uid: str, namespace: str, images: frozenset[str]) -> None:
        if uid:
            shared = self._sets.setdefault(images, images)
            self._by_uid[uid] = _Template(namespace, shared)


def _idle_revision(kind: str, obj: Mapping[str, Any]) -> bool:
    """A controlled ReplicaSet scaled to zero: an old revision kept for rollbacks."""
    spec = obj.get("spec")
    return kind == "ReplicaSet" and isinstance(spec, Mapping) and spec.get("replicas") == 0


def audit(
    snapshot: Snapshot, objects: Iterator[tuple[str, str, dict[str, Any]]]
) -> Iterator[Finding]:
    """Decide on every object whose running images no listed owner's row judged (module doc).

    ``objects`` must come owners first (:data:`KINDS` order), so an owned object can be
    folded as soon as its owner has been seen.
    """
    owners = _Owners()
    for kind, api_version, obj in objects:
        meta = obj.get("metadata") or {}
        uid, namespace = meta.get("uid", ""), meta.get("namespace", "")
        resource = Resource(api_version, kind, namespace, meta.get("name", ""), uid)
        try:
            ref = pod_spec(obj, kind)
        except WorkloadError as exc:
            yield Finding(resource, None, str(exc))
            continue
        if ref is None:  # pragma: no cover - every listed kind has a pod spec
            continue
        used = images(ref.spec)
        controller = _controller(meta)
        folded = owners.covers(controller, namespace, used)
        idle = not folded and controller is not None and _idle_revision(kind, obj)
        if kind in TEMPLATE_OWNERS:
            owners.add(uid, namespace, frozenset() if idle else used)
        if folded or idle:
            continue
        decision = decide(snapshot, namespace, ref.spec, pointer=ref.pointer, kind=kind)
        yield Finding(resource, decision)


def refused(finding: Finding) -> bool:
    """Refused by the rules (whatever the namespace's mode makes of it at admission)."""
    return finding.decision is not None and any(c.refused for c in finding.decision.containers)
