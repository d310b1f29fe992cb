"""The report writer: reports only where their CRD is served, and only when they change.

Against the Kubernetes fake serving ``policyreports.wgpolicyk8s.io`` (or not). Each test is
one pass's worth of writes and what it must leave in the cluster.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from policy.decision import decide
from policy.provisioning import MANAGED_BY, MANAGED_BY_LABEL
from policy.report import Resource, build_report
from tests.fakes.kubernetes import FakeKubernetes
from tests.webhook.leader.audit.conftest import ALLOWED, PUBLIC, REPORTS, SNAPSHOT, pod_spec
from webhook.leader.audit.reports import ReportWriter


@pytest.fixture
def writer(kube: FakeKubernetes, api: client.ApiClient) -> ReportWriter:
    kube.serve_resource("wgpolicyk8s.io/v1alpha2", "policyreports", "PolicyReport")
    for namespace in ("a-dev", "b-dev"):
        kube.create_namespace(namespace)
    return ReportWriter(api, "wgpolicyk8s")


def report(name: str, namespace: str = "a-dev", image: str = PUBLIC) -> dict[str, Any]:
    resource = Resource("v1", "Pod", namespace, name, f"uid-{namespace}-{name}")
    decision = decide(SNAPSHOT, namespace, pod_spec(image))
    return build_report(resource, decision, timestamp=1)


def stored(kube: FakeKubernetes) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in kube.objects(REPORTS)}


def test_nothing_is_written_where_the_report_crd_is_not_served(api: client.ApiClient) -> None:
    assert not ReportWriter(api, "wgpolicyk8s").installed()
    assert not ReportWriter(api, "openreports").installed()


def test_a_new_report_is_created_and_an_unchanged_one_is_not_written_again(
    kube: FakeKubernetes, writer: ReportWriter
) -> None:
    assert writer.installed()
    writer.load()
    assert writer.write(report("web")) == "created"

    later = ReportWriter(writer._api_client, "wgpolicyk8s")
    later.load()
    kube.clear_requests()
    again = report("web")
    again["results"][0]["timestamp"] = {"seconds": 99, "nanos": 0}  # a later pass's time
    assert later.write(again) == "unchanged"
    assert not [r for r in kube.requests if r.method != "GET"]


def test_a_changed_report_is_replaced_at_the_version_read(
    kube: FakeKubernetes, writer: ReportWriter
) -> None:
    writer.load()
    writer.write(report("web"))
    writer.load()
    assert writer.write(report("web", "b-dev")) == "created"
    writer.load()
    assert writer.write(report("web", image=ALLOWED)) == "updated"
    [web] = kube.objects(REPORTS, "a-dev")
    assert web["results"][0]["properties"]["image"] == ALLOWED


def test_a_report_without_spacegates_label_is_never_touched(
    kube: FakeKubernetes, writer: ReportWriter
) -> None:
    theirs = report("web")
    theirs["metadata"]["labels"] = {MANAGED_BY_LABEL: "kyverno"}
    kube.create_object(REPORTS, "a-dev", theirs)
    writer.load()
    assert writer.write(report("web")) == "foreign"
    assert writer.delete_stale() == 0
    assert stored(kube)[theirs["metadata"]["name"]]["metadata"]["labels"] == {
        MANAGED_BY_LABEL: "kyverno"
    }


def test_reports_the_pass_did_not_write_are_deleted_afterwards(
    kube: FakeKubernetes, writer: ReportWriter
) -> None:
    writer.load()
    for name in ("web", "adopted"):
        writer.write(report(name))
    writer.load()
    writer.write(report("web"))
    assert writer.delete_stale() == 1
    assert [r["metadata"]["labels"][MANAGED_BY_LABEL] for r in stored(kube).values()] == [
        MANAGED_BY
    ]
    assert [r["scope"]["name"] for r in stored(kube).values()] == ["web"]


def test_a_report_created_meanwhile_by_another_writer_counts_as_unchanged(
    kube: FakeKubernetes, writer: ReportWriter
) -> None:
    writer.load()
    kube.create_object(REPORTS, "a-dev", report("web"))  # after our load
    assert writer.write(report("web")) == "unchanged"


def test_a_refused_write_is_logged_and_the_pass_goes_on(
    kube: FakeKubernetes, writer: ReportWriter, caplog: pytest.LogCaptureFixture
) -> None:
    writer.load()
    kube.fail_next(1, 403, path_prefix=REPORTS.rsplit("/", 1)[0] + "/namespaces/a-dev")
    assert writer.write(report("web")) == "failed"
    assert writer.write(report("api", "b-dev")) == "created"
    assert "could not write report a-dev/" in caplog.text
    assert "HTTP 403" in caplog.text
