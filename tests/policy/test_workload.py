"""Finding pod specs in workloads and images in pod specs."""

from __future__ import annotations

from typing import Any

import pytest

from policy.workload import (
    WorkloadError,
    api_group,
    images,
    is_workload,
    object_name,
    pod_spec,
    pulled_images,
)

SPEC = {"containers": [{"name": "app", "image": "nginx"}]}


def _wrap(kind: str) -> dict[str, Any]:
    template = {"template": {"spec": SPEC}}
    shapes: dict[str, dict[str, Any]] = {
        "Pod": {"spec": SPEC},
        "PodTemplate": template,
        "CronJob": {"spec": {"jobTemplate": {"spec": template}}},
    }
    return {"kind": kind, **shapes.get(kind, {"spec": template})}


@pytest.mark.parametrize(
    ("kind", "pointer"),
    [
        ("Pod", "/spec"),
        ("PodTemplate", "/template/spec"),
        ("ReplicationController", "/spec/template/spec"),
        ("Deployment", "/spec/template/spec"),
        ("ReplicaSet", "/spec/template/spec"),
        ("StatefulSet", "/spec/template/spec"),
        ("DaemonSet", "/spec/template/spec"),
        ("Job", "/spec/template/spec"),
        ("CronJob", "/spec/jobTemplate/spec/template/spec"),
    ],
)
def test_every_pod_producing_kind_has_its_pod_spec_pointer(kind: str, pointer: str) -> None:
    ref = pod_spec(_wrap(kind))
    assert ref is not None
    assert ref.pointer == pointer
    assert ref.spec == SPEC


def test_objects_that_produce_no_pods_are_not_workloads() -> None:
    assert pod_spec({"kind": "Service", "spec": {}}) is None
    assert pod_spec({"spec": {}}) is None


def test_the_kind_can_come_from_the_admission_request() -> None:
    # AdmissionReview objects (e.g. linkerd's capture) may lack apiVersion/kind
    ref = pod_spec({"spec": {"template": {"spec": SPEC}}}, "Deployment")
    assert ref is not None and ref.pointer == "/spec/template/spec"


def test_a_workload_without_a_pod_spec_is_a_clear_error() -> None:
    with pytest.raises(
        WorkloadError, match=r"Deployment: spec\.template\.spec must be an object, got missing"
    ):
        pod_spec({"kind": "Deployment", "spec": {"template": {}}})
    with pytest.raises(WorkloadError, match="got a list"):
        pod_spec({"kind": "Pod", "spec": []})


def test_containers_lists_init_then_main_then_ephemeral_containers() -> None:
    spec = {
        "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
        "containers": [{"name": "app", "image": "app:1"}],
        "initContainers": [{"name": "init", "image": "init:1"}],
    }
    assert [(c.section, c.name, c.image, c.pointer) for c in pulled_images(spec)] == [
        ("initContainers", "init", "init:1", "/initContainers/0"),
        ("containers", "app", "app:1", "/containers/0"),
        ("ephemeralContainers", "debug", "busybox", "/ephemeralContainers/0"),
    ]


def test_missing_names_images_and_junk_entries_are_reported() -> None:
    spec = {"containers": [{"image": "x"}, {"name": "noimage"}, 42, {"name": "n", "image": 7}]}
    assert [(c.name, c.image) for c in pulled_images(spec)] == [
        ("containers[0]", "x"),
        ("noimage", None),
        ("containers[2]", None),
        ("n", None),
    ]


def test_generate_name_stands_in_for_a_missing_name() -> None:
    assert object_name({"metadata": {"generateName": "web-7d9f-"}}) == "web-7d9f-*"
    assert object_name({"metadata": {"name": "web"}}) == "web"
    assert object_name({}) == ""


def test_workloads_are_recognized_by_kind_and_api_group() -> None:
    assert is_workload("Deployment", api_group("apps/v1"))
    assert is_workload("Pod", api_group("v1"))
    assert is_workload("Job", api_group(None))  # captured objects may lack apiVersion
    assert not is_workload("Job", api_group("batch.volcano.sh/v1alpha1"))
    assert not is_workload("Deployment", api_group("extensions.example.com/v1"))
    assert not is_workload("Service", "")
    assert not is_workload("Deployment", "")  # a review's group is always known


def test_images_lists_each_image_once() -> None:
    spec = {
        "initContainers": [{"name": "i", "image": "a"}],
        "containers": [{"name": "c", "image": "a"}, {"name": "d", "image": "b"}, {"name": "e"}],
    }
    assert images(spec) == {"a", "b"}
