"""What each leader job counts as a change: the content it reads, never a version number.

Each test builds the snapshot before and after one event (a registry listed again, a
namespace created, relabelled or deleted, a config reloaded) and asks the job whether that
calls for a pass.
"""

from __future__ import annotations

from kubernetes import client

from policy.bindings import BindingObject
from policy.config import load_config
from policy.provisioning import desired_state
from policy.snapshot import NamespaceInfo, Snapshot
from webhook.leader.audit.child import ChildAuditor
from webhook.leader.bindings.conditions import Provisioned
from webhook.leader.bindings.status import StatusWriter
from webhook.leader.jobs import (
    BINDING_STATUS_RESYNC_SECONDS,
    PROVISION_RESYNC_SECONDS,
    AuditJob,
    BindingStatusJob,
    ProvisioningJob,
)
from webhook.leader.provisioning.robots import HarborRobots
from webhook.leader.provisioning.secrets import SecretStore
from webhook.leader.provisioning.writer import Provisioner

CONFIG = """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
pullSecrets: {provision: true}
policy: {namespaceGuard: {enabled: true}}
audit: {enabled: true, interval: 7m}
"""
SPACES = {"harbor": {"library": True, "team-a": False, "team-b": False}}
NAMESPACES = {"a-dev": NamespaceInfo("101"), "b-dev": NamespaceInfo("102")}


def snapshot(
    config: str = CONFIG,
    *,
    spaces: dict[str, dict[str, bool]] | None = None,
    namespaces: dict[str, NamespaceInfo] | None = None,
    objects: dict[str, BindingObject] | None = None,
    version: int = 1,
) -> Snapshot:
    return Snapshot.build(
        load_config(config),
        spaces=SPACES if spaces is None else spaces,
        namespaces=NAMESPACES if namespaces is None else namespaces,
        binding_objects=objects,
        version=version,
    )


def provisioning() -> ProvisioningJob:
    store = SecretStore(client.ApiClient(), home="spacegate-system")  # never called here
    return ProvisioningJob(Provisioner(store, HarborRobots))


def audit() -> AuditJob:
    return AuditJob(ChildAuditor(), lambda: True)


def statuses(provisioning_job: ProvisioningJob | None = None) -> BindingStatusJob:
    writer = StatusWriter(client.ApiClient(), clock=lambda: 0.0)  # never called here
    return BindingStatusJob(writer, provisioning_job)


def changes(
    job: ProvisioningJob | AuditJob | BindingStatusJob, before: Snapshot, after: Snapshot
) -> bool:
    return job.changed(job.view(before), job.view(after))


def test_a_registry_listed_again_with_the_same_projects_is_no_change() -> None:
    before, after = snapshot(), snapshot(version=2)
    assert not changes(provisioning(), before, after)
    assert not changes(audit(), before, after)


def test_a_namespace_created_outside_every_workspace_is_no_change() -> None:
    after = snapshot(namespaces={**NAMESPACES, "scratch": NamespaceInfo()}, version=2)
    assert not changes(provisioning(), snapshot(), after)
    assert not changes(audit(), snapshot(), after)


def test_a_namespace_deleted_is_no_change_for_the_audit_but_one_for_provisioning() -> None:
    after = snapshot(namespaces={"b-dev": NamespaceInfo("102")}, version=2)
    assert changes(provisioning(), snapshot(), after)  # a-dev no longer needs a Secret
    assert not changes(audit(), snapshot(), after)  # nothing runs there any more


def test_a_namespace_created_in_a_bound_workspace_needs_a_secret() -> None:
    after = snapshot(namespaces={**NAMESPACES, "a-prod": NamespaceInfo("101")}, version=2)
    assert changes(provisioning(), snapshot(), after)
    # Its workloads are judged by admission as they are created: nothing to audit again.
    assert not changes(audit(), snapshot(), after)


def test_a_namespace_moved_to_another_workspace_or_mode_is_a_change_for_both() -> None:
    moved = snapshot(namespaces={**NAMESPACES, "a-dev": NamespaceInfo("102")}, version=2)
    assert changes(provisioning(), snapshot(), moved)
    assert changes(audit(), snapshot(), moved)
    warned = snapshot(namespaces={**NAMESPACES, "a-dev": NamespaceInfo("101", "warn")})
    assert changes(audit(), snapshot(), warned)  # the report says warn instead of fail
    assert not changes(provisioning(), snapshot(), warned)


def test_a_project_made_public_or_a_new_project_is_a_change() -> None:
    public = snapshot(spaces={"harbor": {**SPACES["harbor"], "team-a": True}}, version=2)
    assert changes(provisioning(), snapshot(), public)  # the robot no longer needs team-a
    assert changes(audit(), snapshot(), public)
    more = snapshot(spaces={"harbor": {**SPACES["harbor"], "team-c": False}}, version=2)
    assert changes(audit(), snapshot(), more)  # an unknown space is known now


def test_a_reloaded_config_is_a_change_even_when_only_the_pull_secret_name_moved() -> None:
    renamed = snapshot(CONFIG.replace("policy: {", "policy: {pullSecretName: pull-b, "), version=2)
    assert changes(provisioning(), snapshot(), renamed)
    bound = CONFIG.replace('workspaces: ["101"]', 'workspaces: ["101", "102"]')
    assert changes(provisioning(), snapshot(), snapshot(bound, version=2))
    assert changes(audit(), snapshot(), snapshot(bound, version=2))


def test_each_job_follows_its_switch_and_interval_in_the_snapshot() -> None:
    on = snapshot()
    off = snapshot(
        CONFIG.replace("provision: true", "provision: false").replace(
            "enabled: true", "enabled: false"
        )
    )
    assert provisioning().wanted(on) and not provisioning().wanted(off)
    assert audit().wanted(on) and not audit().wanted(off)
    assert audit().interval(on) == 420.0
    assert provisioning().interval(on) == PROVISION_RESYNC_SECONDS


# --------------------------------------------------------------------------- binding objects

B = BindingObject("b", "harbor", "team-b", ("102",))


def test_a_binding_object_is_a_change_for_provisioning_and_the_audit() -> None:
    """An object binding team-b to 102: b-dev needs a Secret, and its workloads are judged
    differently, exactly as for the same binding written in the config."""
    with_object = snapshot(objects={"b": B}, version=2)
    assert changes(provisioning(), snapshot(objects={}), with_object)
    assert changes(audit(), snapshot(objects={}), with_object)


def test_a_status_write_read_back_is_no_change_for_any_job() -> None:
    written = BindingObject(
        "b", "harbor", "team-b", ("102",), resource_version="9", observed_generation=1
    )
    before, after = snapshot(objects={"b": B}), snapshot(objects={"b": written}, version=2)
    assert not changes(provisioning(), before, after)
    assert not changes(audit(), before, after)
    assert not changes(statuses(), before, after)


def test_binding_statuses_change_with_what_they_report() -> None:
    job = statuses()
    assert job.wanted(snapshot(objects={"b": B}))
    assert not job.wanted(snapshot()) and not job.wanted(snapshot(objects={}))
    assert job.interval(snapshot()) == BINDING_STATUS_RESYNC_SECONDS
    unlisted = snapshot(spaces={"harbor": {"library": True}}, objects={"b": B}, version=2)
    assert changes(job, snapshot(objects={"b": B}), unlisted)  # SpaceFound goes False


def test_a_finished_provisioning_pass_moves_the_status_jobs_revision_and_view() -> None:
    provisioning_job = provisioning()
    job = statuses(provisioning_job)
    current = snapshot(objects={"b": B})
    before = job.view(current)
    provisioning_job.outcome = Provisioned(desired_state(current))
    provisioning_job.passes += 1

    assert job.revision() == 1
    assert job.changed(before, job.view(current))  # Pending -> Provisioned
