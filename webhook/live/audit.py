"""What is already running: evaluate every Pod and workload against the current snapshot.

Admission only sees what is created from now on; a space unbound, a namespace moved, or a
project made private leaves running workloads behind. The audit reads every Pod and every
workload kind spacegate validates, page by page (``limit``/``continue``, a page at a time in
memory), and decides each with the same ``policy.decide`` as admission — every image counts
here, nothing is "unchanged" for an object that exists. Pods and ReplicaSets/Jobs owned by a
workload the audit also reads are covered by that workload's result (a Deployment with 5,000
Pods is one finding, not 5,001).

Used by ``spacegate audit`` (the CLI, with ``--what-if``) and by the leader-only background
auditor (:class:`Auditor`), which writes one policy report per audited resource
(``policy.report``) when the report CRD is installed, and keeps
``spacegate_audit_violations{namespace, registry, space}`` for alerts. Reads run off the
admission path, in a worker thread, one page at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Gauge, Histogram

from policy.decision import Decision, decide
from policy.provisioning import MANAGED_BY, MANAGED_BY_LABEL
from policy.report import API_VERSIONS, ReportFormat, Resource, build_report, same_content
from policy.snapshot import Snapshot
from policy.workload import WorkloadError, pod_spec

log = logging.getLogger(__name__)

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
PAGE_SIZE = 500


@dataclass(frozen=True)
class Finding:
    """One audited resource and how the current snapshot judges it."""

    resource: Resource
    decision: Decision | None
    error: str | None = None


def get(
    api: client.ApiClient, path: str, query: list[tuple[str, Any]] | None = None
) -> tuple[int, bytes]:
    """(status, body) of ``GET path`` through the client's connection and credentials."""
    method, url, headers, body, post = api.param_serialize(
        "GET",
        path,
        query_params=query,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, headers, body, post)
    data: bytes = response.read()  # type: ignore[no-untyped-call]
    return int(response.status), data


def list_objects(
    api: client.ApiClient, namespace: str | None = None, page_size: int = PAGE_SIZE
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(kind, apiVersion, object) for every workload and Pod, one page in memory at a time.

    Lists go to the apiserver as raw JSON (no client models: 10,000 Pods as models cost far
    more memory and time than the few fields the audit reads).
    """
    for prefix, plural, kind, api_version in KINDS:
        path = (
            f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
        )
        token: str | None = None
        while True:
            query: list[tuple[str, Any]] = [("limit", page_size)]
            if token:
                query.append(("continue", token))
            status, data = get(api, path, query)
            if status != 200:
                raise ApiException(status=status, reason=f"GET {path}")
            body = orjson.loads(data)
            for item in body.get("items") or []:
                yield kind, api_version, item
            token = (body.get("metadata") or {}).get("continue") or None
            if not token:
                break


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
        resource = Resource(
            api_version, kind, meta.get("namespace", ""), meta.get("name", ""), uid
        )
        try:
            ref = pod_spec(obj, kind)
        except WorkloadError as exc:
            yield Finding(resource, None, str(exc))
            continue
        if ref is None:  # pragma: no cover - every listed kind has a pod spec
            continue
        decision = decide(
            snapshot, resource.namespace, ref.spec, pointer=ref.pointer, kind=kind
        )
        yield Finding(resource, decision)


def refused(finding: Finding) -> bool:
    """Refused by the rules (whatever the namespace's mode makes of it at admission)."""
    return finding.decision is not None and any(c.refused for c in finding.decision.containers)


# --------------------------------------------------------------------------- reports


class ReportWriter:
    """Writes policy reports, only when their CRD is installed and only when they change."""

    def __init__(self, api: client.ApiClient, report_format: ReportFormat) -> None:
        self._api: Any = client.CustomObjectsApi(api)
        self._api_client = api
        self.format = report_format
        api_version, self.kind = API_VERSIONS[report_format]
        self.group, self.version = api_version.split("/")
        self.plural = "policyreports" if report_format == "wgpolicyk8s" else "reports"

    def installed(self) -> bool:
        """The report CRD is served (discovery of its group version)."""
        status, _ = get(self._api_client, f"/apis/{self.group}/{self.version}")
        if status == 404:
            return False
        if status != 200:
            raise ApiException(status=status, reason="report CRD discovery")
        return True

    def write(self, report: dict[str, Any]) -> str:
        """Create or update one report; "created", "updated", "unchanged" or "foreign"."""
        meta = report["metadata"]
        try:
            current = self._api.get_namespaced_custom_object(
                self.group, self.version, meta["namespace"], self.plural, meta["name"]
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._api.create_namespaced_custom_object(
                self.group, self.version, meta["namespace"], self.plural, report
            )
            return "created"
        labels = (current.get("metadata") or {}).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
            return "foreign"
        if same_content(current, report):
            return "unchanged"
        report = {**report, "metadata": {**meta,
                                         "resourceVersion": current["metadata"]["resourceVersion"]}}
        self._api.replace_namespaced_custom_object(
            self.group, self.version, meta["namespace"], self.plural, meta["name"], report
        )
        return "updated"


# --------------------------------------------------------------------------- background audit


class AuditMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.violations = Gauge(
            "spacegate_audit_violations",
            "Running workloads whose images the current rules refuse, by namespace, registry "
            "and space (an unbinding that stranded workloads shows here).",
            ["namespace", "registry", "space"],
            registry=registry,
        )
        self.duration = Histogram(
            "spacegate_audit_duration_seconds",
            "Time of one background audit pass.",
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self.last_run = Gauge(
            "spacegate_audit_last_run_timestamp_seconds",
            "Unix time the last background audit pass finished.",
            registry=registry,
        )


@dataclass
class AuditPass:
    audited: int = 0
    refused: int = 0
    reports: dict[str, int] | None = None


class Auditor:
    """The leader's background audit: findings, metrics and (when installed) reports."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        report_format: ReportFormat | None,
        metrics: AuditMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.writer = None if report_format is None else ReportWriter(api, report_format)
        self.metrics = metrics
        self._clock = clock

    def run_pass(self, snapshot: Snapshot, guard: Callable[[], None] = lambda: None) -> AuditPass:
        """One pass (blocking; run it in a worker thread)."""
        started = time.perf_counter()
        counts: dict[tuple[str, str, str], int] = {}
        result = AuditPass(reports={})
        write = self.writer is not None and self.writer.installed()
        now = int(self._clock())
        for finding in audit(snapshot, list_objects(self.api)):
            result.audited += 1
            decision = finding.decision
            if decision is None:
                continue
            if refused(finding):
                result.refused += 1
                for verdict in decision.containers:
                    if verdict.refused:
                        key = (decision.namespace, verdict.registry or "", verdict.space or "")
                        counts[key] = counts.get(key, 0) + 1
            if write and self.writer is not None:
                guard()
                outcome = self.writer.write(build_report(
                    finding.resource, decision, timestamp=now, report_format=self.writer.format
                ))
                assert result.reports is not None
                result.reports[outcome] = result.reports.get(outcome, 0) + 1
        if self.metrics is not None:
            self.metrics.violations.clear()
            for (namespace, registry, space), n in counts.items():
                self.metrics.violations.labels(namespace, registry, space).set(n)
            self.metrics.duration.observe(time.perf_counter() - started)
            self.metrics.last_run.set(self._clock())
        return result


async def audit_forever(
    auditor: Auditor,
    snapshot: Callable[[], Snapshot],
    *,
    is_leader: Callable[[], bool],
    guard: Callable[[], None],
    interval: float = 600.0,
    poll: float = 1.0,
) -> None:
    """Audit on every snapshot change (at most every ``poll`` s) and every ``interval`` s."""
    last_version: int | None = None
    last_pass = 0.0
    while True:
        await asyncio.sleep(poll)
        if not is_leader():
            last_version = None
            continue
        current = snapshot()
        if current.version == last_version and time.monotonic() - last_pass < interval:
            continue
        try:
            result = await asyncio.to_thread(auditor.run_pass, current, guard)
            log.info(
                "audit: %d resources, %d refused by the current rules; reports %s",
                result.audited,
                result.refused,
                result.reports or "not written (no report CRD)",
            )
        except Exception as exc:
            log.error("audit pass failed: %s", exc)
        last_version = current.version
        last_pass = time.monotonic()
