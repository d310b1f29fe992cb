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
import hashlib
import logging
import multiprocessing
import queue
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Gauge, Histogram

from policy.config import Config
from policy.decision import Decision, decide
from policy.provisioning import MANAGED_BY, MANAGED_BY_LABEL
from policy.report import API_VERSIONS, ReportFormat, Resource, build_report
from policy.snapshot import NamespaceInfo, Snapshot
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
# A background pass sleeps this long every YIELD_EVERY resources (see Auditor.run_pass).
YIELD_EVERY = 25
YIELD_SECONDS = 0.002


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
        path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
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


# --------------------------------------------------------------------------- reports


class ReportWriter:
    """Writes policy reports, only when their CRD is installed and only when they change.

    A pass reads spacegate's existing reports once (label selector, page by page: a digest
    of each content, not the reports, is kept), writes only reports whose content differs,
    and afterwards deletes spacegate's reports of resources the pass no longer reports on
    individually (a Pod adopted by a ReplicaSet, a switched report format leaves the old
    kind alone). A report without spacegate's label is never touched. One failed write (a
    namespace being deleted refuses new content) is counted and the pass goes on.
    """

    def __init__(self, api: client.ApiClient, report_format: ReportFormat) -> None:
        self._api: Any = client.CustomObjectsApi(api)
        self._api_client = api
        self.format = report_format
        api_version, self.kind = API_VERSIONS[report_format]
        self.group, self.version = api_version.split("/")
        self.plural = "policyreports" if report_format == "wgpolicyk8s" else "reports"
        self._existing: dict[tuple[str, str], tuple[str, str]] = {}  # (ns, name) -> (rv, digest)
        self._foreign: set[tuple[str, str]] = set()

    def installed(self) -> bool:
        """The report CRD is served (discovery of its group version)."""
        status, _ = get(self._api_client, f"/apis/{self.group}/{self.version}")
        if status == 404:
            return False
        if status != 200:
            raise ApiException(status=status, reason="report CRD discovery")
        return True

    def load(self) -> None:
        """Read what exists now: spacegate's reports (digests), and names taken by others."""
        self._existing.clear()
        self._foreign.clear()
        path = f"/apis/{self.group}/{self.version}/{self.plural}"
        token: str | None = None
        while True:
            query: list[tuple[str, Any]] = [("limit", PAGE_SIZE)]
            if token:
                query.append(("continue", token))
            status, data = get(self._api_client, path, query)
            if status != 200:
                raise ApiException(status=status, reason=f"GET {path}")
            body = orjson.loads(data)
            for item in body.get("items") or []:
                meta = item.get("metadata") or {}
                key = (meta.get("namespace", ""), meta.get("name", ""))
                if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY:
                    self._existing[key] = (meta.get("resourceVersion", ""), digest(item))
                else:
                    self._foreign.add(key)
            token = (body.get("metadata") or {}).get("continue") or None
            if not token:
                return

    def write(self, report: dict[str, Any]) -> str:
        """Create or update one report: "created", "updated", "unchanged", "foreign" or
        "failed" (logged; the pass goes on)."""
        meta = report["metadata"]
        key = (meta["namespace"], meta["name"])
        if key in self._foreign:
            return "foreign"
        current = self._existing.pop(key, None)
        try:
            if current is None:
                self._api.create_namespaced_custom_object(
                    self.group, self.version, meta["namespace"], self.plural, report
                )
                return "created"
            if current[1] == digest(report):
                return "unchanged"
            body = {**report, "metadata": {**meta, "resourceVersion": current[0]}}
            self._api.replace_namespaced_custom_object(
                self.group, self.version, meta["namespace"], self.plural, meta["name"], body
            )
            return "updated"
        except ApiException as exc:
            if exc.status == 409 and current is None:  # created meanwhile (another writer)
                return "unchanged"
            log.warning(
                "audit: could not write report %s/%s: HTTP %s %s",
                key[0],
                key[1],
                exc.status,
                exc.reason or "",
            )
            return "failed"

    def delete_stale(self) -> int:
        """Delete spacegate's reports this pass did not write (their resources are gone from
        the pass: deleted, adopted, or no longer listed); the number deleted."""
        deleted = 0
        for namespace, name in sorted(self._existing):
            try:
                self._api.delete_namespaced_custom_object(
                    self.group, self.version, namespace, self.plural, name
                )
                deleted += 1
            except ApiException as exc:
                if exc.status != 404:
                    log.warning(
                        "audit: could not delete report %s/%s: HTTP %s", namespace, name, exc.status
                    )
        self._existing.clear()
        return deleted


def digest(report: Mapping[str, Any]) -> str:
    """What a report says (timestamps aside), for comparing without keeping reports."""
    results = [
        {k: v for k, v in result.items() if k != "timestamp"}
        for result in report.get("results") or []
    ]
    content = (report.get("summary"), results, report.get("scope"))
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


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
    # (namespace, registry, space) -> refused images of running workloads
    violations: dict[tuple[str, str, str], int] | None = None
    seconds: float = 0.0

    def record(self, metrics: AuditMetrics, now: float) -> None:
        """Publish this pass in the metrics."""
        metrics.violations.clear()
        for (namespace, registry, space), n in (self.violations or {}).items():
            metrics.violations.labels(namespace, registry, space).set(n)
        metrics.duration.observe(self.seconds)
        metrics.last_run.set(now)


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
        if write and self.writer is not None:
            self.writer.load()
        now = int(self._clock())
        for finding in audit(snapshot, list_objects(self.api)):
            result.audited += 1
            if result.audited % YIELD_EVERY == 0:
                # The pass runs in a thread of the serving process: hand the GIL to the
                # event loop regularly, so admission answers keep their latency.
                time.sleep(YIELD_SECONDS)
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
                outcome = self.writer.write(
                    build_report(
                        finding.resource, decision, timestamp=now, report_format=self.writer.format
                    )
                )
                assert result.reports is not None
                result.reports[outcome] = result.reports.get(outcome, 0) + 1
        if write and self.writer is not None and result.reports is not None:
            guard()
            result.reports["deleted"] = self.writer.delete_stale()
        result.violations = counts
        result.seconds = time.perf_counter() - started
        if self.metrics is not None:
            result.record(self.metrics, self._clock())
        return result


@dataclass(frozen=True)
class _PassJob:
    """What a child needs to rebuild the snapshot (a Snapshot itself does not pickle)."""

    config: Config
    spaces: dict[str, dict[str, bool]]
    namespaces: dict[str, NamespaceInfo]
    version: int
    report_format: ReportFormat | None


def _pass_in_child(job: _PassJob, results: Any) -> None:
    """A background pass in a child process (its own interpreter, its own API client)."""
    from webhook.clients.kube import load_api_client

    snapshot = Snapshot.build(
        job.config, spaces=job.spaces, namespaces=job.namespaces, version=job.version
    )
    api = load_api_client()
    try:
        results.put(Auditor(api, report_format=job.report_format).run_pass(snapshot))
    finally:
        api.close()  # type: ignore[no-untyped-call]


class ChildAuditor:
    """Runs each background pass in a child process, so a pass over 10,000 objects never
    competes with admission for the server's interpreter (a thread would: the GIL).

    The child builds the same snapshot from plain data and its own Kubernetes client (the
    pod's service account, or ``KUBECONFIG``); the parent publishes the metrics. When the
    leadership is lost during a pass, the child is killed: nothing more is written.
    """

    def __init__(
        self, *, report_format: ReportFormat | None, metrics: AuditMetrics | None = None
    ) -> None:
        self.report_format = report_format
        self.metrics = metrics

    async def run_pass(self, snapshot: Snapshot, is_leader: Callable[[], bool]) -> AuditPass:
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        spaces = {n: dict(s.spaces) for n, s in snapshot.registries.items() if s.synced}
        child = context.Process(
            target=_pass_in_child,
            args=(
                _PassJob(
                    snapshot.config,
                    spaces,
                    dict(snapshot.namespaces),
                    snapshot.version,
                    self.report_format,
                ),
                results,
            ),
            name="spacegate-audit",
            daemon=True,
        )
        child.start()
        try:
            while True:
                try:
                    result: AuditPass = await asyncio.to_thread(results.get, True, 0.5)
                    break
                except queue.Empty:
                    if not is_leader():
                        raise LostLeadershipDuringAudit(
                            "leadership lost; audit pass stopped"
                        ) from None
                    if not child.is_alive():
                        raise RuntimeError(
                            f"the audit process ended with exit code {child.exitcode}"
                        ) from None
        finally:
            if child.is_alive():
                child.join(1)
            if child.is_alive():  # still writing after losing the lead, or stuck: stop it
                child.kill()
            child.join(5)
        if self.metrics is not None:
            result.record(self.metrics, time.time())
        return result


class LostLeadershipDuringAudit(RuntimeError):
    """The pass was stopped because this replica is no longer the leader."""


async def audit_forever(
    auditor: ChildAuditor,
    snapshot: Callable[[], Snapshot],
    *,
    is_leader: Callable[[], bool],
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
            result = await auditor.run_pass(current, is_leader)
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
