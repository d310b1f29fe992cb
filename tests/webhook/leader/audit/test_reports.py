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


def test_another_tools_report_of_the_same_resource_is_never_touched(
    kube: FakeKubernetes, writer: ReportWriter
) -> None:
    # Kyverno and Kubewarden name their report of a resource by its bare UID.
    theirs = report("web")
    theirs["metadata"]["name"] = theirs["scope"]["uid"]
    theirs["metadata"]["labels"] = {MANAGED_BY_LABEL: "kyverno"}
    kube.create_object(REPORTS, "a-dev", theirs)
    before = stored(kube)["uid-a-dev-web"]
    writer.load()
    assert writer.write(report("web")) == "created"
    assert writer.delete_stale() == 0
    assert stored(kube)["uid-a-dev-web"] == before
    assert set(stored(kube)) == {"uid-a-dev-web", "spacegate-uid-a-dev-web"}


def tenants(name: str, *, labelled: bool, result: str = "pass") -> dict[str, Any]:
    """A tenant's report under spacegate's name for ``name``, saying ``result``."""
    forged = report(name)
    forged["metadata"]["labels"] = {MANAGED_BY_LABEL: MANAGED_BY} if labelled else {"x": "y"}
    forged["metadata"]["finalizers"] = ["tenant.example.com/keep"]
    forged["metadata"]["ownerReferences"] = []
    for entry in forged["results"]:
        entry["result"] = result
        entry["message"] = "all good"
    forged["summary"] = {"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0}
    return forged


def test_a_tenants_report_under_spacegates_name_is_replaced_never_honoured(
    kube: FakeKubernetes, writer: ReportWriter, caplog: pytest.LogCaptureFixture
) -> None:
    kube.create_object(REPORTS, "a-dev", tenants("web", labelled=False))
    writer.load()
    truth = report("web", image=ALLOWED.replace("team-a", "team-b"))  # refused: fails

    assert writer.write(truth) == "replaced"

    [web] = stored(kube).values()
    assert web["metadata"]["labels"] == {MANAGED_BY_LABEL: MANAGED_BY}
    assert web["metadata"]["ownerReferences"] == truth["metadata"]["ownerReferences"]
    assert not web["metadata"].get("finalizers")
    assert web["results"][0]["result"] == "fail" and web["summary"]["fail"] == 1
    assert "report a-dev/spacegate-uid-a-dev-web stands under spacegate's name" in caplog.text


def test_a_tenants_report_wearing_spacegates_label_is_rewritten_to_the_truth(
    kube: FakeKubernetes, writer: ReportWriter
) -> None:
    kube.create_object(REPORTS, "a-dev", tenants("web", labelled=True))
    writer.load()
    truth = report("web", image=ALLOWED.replace("team-a", "team-b"))

    assert writer.write(truth) == "updated"
    [web] = stored(kube).values()
    assert web["results"][0]["result"] == "fail"


def test_a_report_created_under_spacegates_name_after_the_read_is_replaced_too(
    kube: FakeKubernetes, writer: ReportWriter
) -> None:
    writer.load()
    kube.create_object(REPORTS, "a-dev", tenants("web", labelled=False))  # a race
    truth = report("web", image=ALLOWED.replace("team-a", "team-b"))

    assert writer.write(truth) == "replaced"
    [web] = stored(kube).values()
    assert web["results"][0]["result"] == "fail"


def test_a_report_under_spacegates_name_for_nothing_reported_is_deleted(
    kube: FakeKubernetes, writer: ReportWriter
) -> None:
    kube.create_object(REPORTS, "a-dev", tenants("folded-pod", labelled=False))
    writer.load()
    writer.write(report("web"))
    assert writer.delete_stale() == 1
    assert set(stored(kube)) == {"spacegate-uid-a-dev-web"}


def test_spacegates_reports_of_old_names_are_deleted_and_no_one_elses(
    kube: FakeKubernetes, writer: ReportWriter
) -> None:
    old = report("web")
    old["metadata"]["name"] = old["scope"]["uid"]  # written by spacegate before the prefix
    kube.create_object(REPORTS, "a-dev", old)
    mislabelled = report("api")
    mislabelled["metadata"]["name"] = mislabelled["scope"]["uid"]
    mislabelled["results"][0]["source"] = "kyverno"  # another tool's results
    kube.create_object(REPORTS, "a-dev", mislabelled)
    writer.load()
    writer.write(report("web"))
    assert writer.delete_stale() == 1
    assert set(stored(kube)) == {"spacegate-uid-a-dev-web", "uid-a-dev-api"}


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


def test_a_stale_report_rewritten_after_the_read_is_not_deleted(
    kube: FakeKubernetes, writer: ReportWriter
) -> None:
    writer.load()
    writer.write(report("gone"))
    writer.load()  # "gone" is stale for this pass...
    current = kube.get_object(REPORTS, "a-dev", "spacegate-uid-a-dev-gone")
    assert current is not None
    kube.replace_object(REPORTS, "a-dev", current)  # ...but rewritten since it was read

    assert writer.delete_stale() == 0
    assert "spacegate-uid-a-dev-gone" in stored(kube)


def test_a_report_created_meanwhile_by_another_spacegate_counts_as_unchanged(
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
