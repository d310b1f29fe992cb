"""A background audit pass: counts, violations for alerts, and reports, over the whole cluster.

``Auditor`` runs in the calling thread against the Kubernetes fake; ``ChildAuditor`` runs the
same pass in a spawned child process whose Kubernetes client comes from ``KUBECONFIG``
(pointed at the fake), as the leader does.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time

import pytest
from kubernetes import client
from prometheus_client import CollectorRegistry

from policy.bindings import BindingObject
from policy.impact import WorkspaceUse
from policy.snapshot import Snapshot
from tests.fakes.kubernetes import FakeKubernetes
from tests.webhook.leader.audit.conftest import (
    ALLOWED,
    DEPLOYMENTS,
    PODS,
    PUBLIC,
    REPORTS,
    SNAPSHOT,
    deployment,
    pod,
    snapshot,
)
from webhook.leader.audit.child import ChildAuditor
from webhook.leader.audit.metrics import AuditMetrics
from webhook.leader.audit.passes import Auditor
from webhook.leader.lease import LostLeadership


@pytest.fixture
def cluster(kube: FakeKubernetes) -> FakeKubernetes:
    """a-dev (101) runs team-a fine; b-dev (102) runs it without the binding."""
    for namespace in ("a-dev", "b-dev"):
        kube.create_namespace(namespace)
        kube.create_object(DEPLOYMENTS, namespace, deployment("api", ALLOWED, PUBLIC))
    kube.create_object(PODS, "b-dev", pod("debug", None, ALLOWED, ALLOWED))
    return kube


def test_a_pass_counts_what_the_rules_refuse_by_namespace_registry_and_space(
    cluster: FakeKubernetes, api: client.ApiClient
) -> None:
    registry = CollectorRegistry()
    result = Auditor(api, report_format="wgpolicyk8s", metrics=AuditMetrics(registry)).run_pass(
        SNAPSHOT
    )

    assert (result.audited, result.refused) == (3, 2)
    assert result.violations == {("b-dev", "harbor", "team-a"): 3}
    assert result.reports is None  # no report CRD served: metrics only
    labels = {"namespace": "b-dev", "registry": "harbor", "space": "team-a"}
    assert registry.get_sample_value("spacegate_audit_violations", labels) == 3
    assert registry.get_sample_value("spacegate_audit_duration_seconds_count") == 1


def test_with_the_crd_served_each_resource_gets_a_report_and_the_next_pass_writes_none(
    cluster: FakeKubernetes, api: client.ApiClient
) -> None:
    cluster.serve_resource("wgpolicyk8s.io/v1alpha2", "policyreports", "PolicyReport")
    auditor = Auditor(api, report_format="wgpolicyk8s")

    first = auditor.run_pass(SNAPSHOT)
    second = auditor.run_pass(SNAPSHOT)

    assert first.reports == {"created": 3, "deleted": 0}
    assert second.reports == {"unchanged": 3, "deleted": 0}
    assert len(cluster.objects(REPORTS)) == 3


def test_reports_a_tenant_writes_under_spacegates_names_change_no_metric_and_are_replaced(
    cluster: FakeKubernetes, api: client.ApiClient
) -> None:
    cluster.serve_resource("wgpolicyk8s.io/v1alpha2", "policyreports", "PolicyReport")
    registry = CollectorRegistry()
    auditor = Auditor(api, report_format="wgpolicyk8s", metrics=AuditMetrics(registry))
    auditor.run_pass(SNAPSHOT)
    for report in cluster.objects(REPORTS):  # the tenant swaps every verdict
        namespace = report["metadata"]["namespace"]
        cluster.delete_object(REPORTS, namespace, report["metadata"]["name"])
        forged = {**report, "metadata": {**report["metadata"], "labels": {}}}
        forged.pop("resourceVersion", None)
        for entry in forged["results"]:
            entry["result"] = "pass" if entry["result"] == "fail" else "fail"
        cluster.create_object(REPORTS, namespace, forged)

    second = auditor.run_pass(SNAPSHOT)

    assert second.violations == {("b-dev", "harbor", "team-a"): 3}  # from the findings
    assert second.reports == {"replaced": 3, "deleted": 0}
    assert registry.get_sample_value("spacegate_audit_reports_replaced_total") == 3
    labels = {"namespace": "b-dev", "registry": "harbor", "space": "team-a"}
    assert registry.get_sample_value("spacegate_audit_violations", labels) == 3
    results = sorted(r["results"][0]["result"] for r in cluster.objects(REPORTS))
    assert results == ["fail", "fail", "pass"]


def test_a_guard_that_raises_stops_the_pass_before_its_first_write(
    cluster: FakeKubernetes, api: client.ApiClient
) -> None:
    cluster.serve_resource("wgpolicyk8s.io/v1alpha2", "policyreports", "PolicyReport")

    def guard() -> None:
        raise LostLeadership("not the leader")

    with pytest.raises(LostLeadership):
        Auditor(api, report_format="wgpolicyk8s").run_pass(SNAPSHOT, guard)
    assert cluster.objects(REPORTS) == []


# --------------------------------------------------------------------------- in a child


@pytest.mark.usefixtures("kubeconfig")
def test_a_pass_in_a_child_reads_the_report_format_of_its_snapshot_and_publishes_metrics(
    cluster: FakeKubernetes,
) -> None:
    cluster.serve_resource("wgpolicyk8s.io/v1alpha2", "policyreports", "PolicyReport")
    registry = CollectorRegistry()
    auditor = ChildAuditor(metrics=AuditMetrics(registry))

    metrics_only = asyncio.run(auditor.run_pass(snapshot("audit: {reports: none}\n"), lambda: True))
    assert metrics_only.reports is None and cluster.objects(REPORTS) == []
    result = asyncio.run(auditor.run_pass(SNAPSHOT, lambda: True))  # the config reloaded

    assert (result.audited, result.refused) == (3, 2)
    assert result.reports == {"created": 3, "deleted": 0}
    assert registry.get_sample_value("spacegate_audit_last_run_timestamp_seconds") is not None
    labels = {"namespace": "b-dev", "registry": "harbor", "space": "team-a"}
    assert registry.get_sample_value("spacegate_audit_violations", labels) == 3


@pytest.mark.usefixtures("kubeconfig")
def test_losing_the_lease_during_a_pass_stops_it_and_its_child(cluster: FakeKubernetes) -> None:
    started = time.monotonic()

    with pytest.raises(LostLeadership, match="leadership lost"):
        asyncio.run(ChildAuditor().run_pass(SNAPSHOT, lambda: False))

    assert time.monotonic() - started < 5
    assert multiprocessing.active_children() == []


# --------------------------------------------------------------------------- the impact index


def test_a_pass_records_which_workloads_depend_on_each_binding(
    cluster: FakeKubernetes, api: client.ApiClient
) -> None:
    result = Auditor(api, report_format=None).run_pass(SNAPSHOT)

    assert result.impact is not None and result.impact.complete
    use = result.impact.use("harbor", "team-a", "101")
    assert use is not None
    assert (use.count, use.examples) == (1, ("a-dev/Deployment/api",))
    assert result.impact.use("harbor", "team-a", "102") == WorkspaceUse(0)  # refused there
    assert result.impact.interval == SNAPSHOT.config.audit.interval


@pytest.mark.usefixtures("kubeconfig")
def test_a_pass_in_a_child_decides_with_the_binding_objects_of_its_snapshot(
    cluster: FakeKubernetes,
) -> None:
    """team-a bound to 102 by an object only: the child must see it, or it would count
    b-dev's workloads as refused."""
    with_object = Snapshot.build(
        SNAPSHOT.config,
        namespaces=SNAPSHOT.namespaces,
        binding_objects={"b": BindingObject("b", "harbor", "team-a", ("102",))},
    )
    result = asyncio.run(ChildAuditor().run_pass(with_object, lambda: True))

    assert (result.audited, result.refused) == (3, 0)
    assert result.impact is not None
    use = result.impact.use("harbor", "team-a", "102")
    assert use is not None and use.count == 2


def test_reports_the_apiserver_throttles_are_written_after_its_retry_after_and_counted(
    cluster: FakeKubernetes, api: client.ApiClient
) -> None:
    cluster.serve_resource("wgpolicyk8s.io/v1alpha2", "policyreports", "PolicyReport")
    reports = REPORTS.rsplit("/", 1)[0] + "/namespaces/"
    cluster.fail_next(3, 429, path_prefix=reports, retry_after="0")

    result = Auditor(api, report_format="wgpolicyk8s", workers=2).run_pass(SNAPSHOT)

    assert result.reports == {"created": 3, "deleted": 0}
    assert result.throttled == 3
    assert len(cluster.objects(REPORTS)) == 3
