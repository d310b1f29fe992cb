"""Where pod specs live in workload objects, and which images they use.

The validating webhook checks workloads as well as Pods so that ``kubectl apply`` of a
Deployment fails at once instead of its Pods failing later inside a ReplicaSet. This module
knows, for every pod-producing kind, the JSON pointer of its pod spec
(``docs/protocol.md`` §3) and keeps the one list of places in a pod spec where the
kubelet finds an image to pull (:data:`IMAGE_SOURCES`): ``initContainers``, ``containers``,
``ephemeralContainers`` and image volumes (``volumes[].image.reference``, pulled with the
Pod's pull secrets like a container image). The decision, its memo key, the UPDATE
"introduced images" set, the pull-secret patch, the CLI reports and the metrics all read
images through :func:`pulled_images`, so a new place cannot be judged in one and missed in
another.

A template container (or image volume) without an image is legal (higher-level tools default
it), so it is reported as such rather than crashed on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# kind -> path of keys from the object root to the pod spec
POD_SPEC_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

# kind -> its API group: a custom resource that happens to be called "Job" (Volcano's
# batch.volcano.sh Job, say) is not a Kubernetes Job and has no pod spec where a Job has.
WORKLOAD_GROUPS: Mapping[str, str] = {
    "Pod": "",
    "PodTemplate": "",
    "ReplicationController": "",
    "Deployment": "apps",
    "ReplicaSet": "apps",
    "StatefulSet": "apps",
    "DaemonSet": "apps",
    "Job": "batch",
    "CronJob": "batch",
}


def api_group(api_version: object) -> str | None:
    """The API group of a manifest's ``apiVersion`` (``apps/v1`` → ``apps``, ``v1`` → ``""``).

    None when there is no ``apiVersion`` to tell (some AdmissionReview captures lack it).
    """
    if not isinstance(api_version, str) or not api_version:
        return None
    return api_version.rpartition("/")[0]


def is_workload(kind: object, group: str | None) -> bool:
    """A pod-producing kind of its own API group: what spacegate decides on.

    A custom resource that happens to be called ``Job`` in another group is not one. With
    ``group`` None (unknown) the kind alone decides.
    """
    if not isinstance(kind, str) or kind not in WORKLOAD_GROUPS:
        return False
    return group is None or WORKLOAD_GROUPS[kind] == group


@dataclass(frozen=True, slots=True)
class ImageSource:
    """One list of a pod spec whose items name an image the kubelet pulls.

    ``path`` leads from a list item to the image string; ``noun`` names an item in messages
    (``container "app"``, ``volume "data"``); ``optional`` sources hold an image only in
    the items that have the path's first key (most volumes are ConfigMaps and the like).
    """

    section: str
    path: tuple[str, ...]
    noun: str
    optional: bool = False


# Every place in a pod spec where an image is pulled from, in the order the kubelet starts them.
IMAGE_SOURCES: tuple[ImageSource, ...] = (
    ImageSource("initContainers", ("image",), "init container"),
    ImageSource("containers", ("image",), "container"),
    ImageSource("ephemeralContainers", ("image",), "ephemeral container"),
    ImageSource("volumes", ("image", "reference"), "volume", optional=True),
)


class WorkloadError(ValueError):
    """A workload whose shape is wrong where a pod spec should be."""


@dataclass(frozen=True, slots=True)
class PodSpecRef:
    """A pod spec found inside a workload object, with its JSON pointer."""

    kind: str
    pointer: str
    spec: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PulledImage:
    """One image a pod spec makes the kubelet pull; ``image`` is None when left unset.

    ``name`` is the container's or the volume's name; ``noun`` says which it is.
    """

    section: str
    index: int
    name: str
    image: str | None
    noun: str = "container"

    @property
    def pointer(self) -> str:
        """JSON pointer of the container or volume relative to the pod spec."""
        return f"/{self.section}/{self.index}"

    @property
    def label(self) -> str:
        """How messages name it: ``container "app"``, ``volume "data"``."""
        return f'{self.noun} "{self.name}"'


def pod_spec(obj: Mapping[str, Any], kind: str | None = None) -> PodSpecRef | None:
    """The pod spec of a workload object, or None when ``kind`` produces no pods.

    ``kind`` defaults to the object's own ``kind`` (AdmissionReview objects may lack it;
    the webhook passes ``request.kind.kind`` instead). A workload of a known kind whose
    pod spec is missing or not an object raises :class:`WorkloadError` naming the path.
    """
    kind = kind or obj.get("kind")
    if not isinstance(kind, str) or kind not in POD_SPEC_PATHS:
        return None
    node: Any = obj
    walked: list[str] = []
    for key in POD_SPEC_PATHS[kind]:
        walked.append(key)
        if not isinstance(node, Mapping):
            break
        node = node.get(key)
    if not isinstance(node, Mapping):
        where = ".".join(walked)
        got = "missing" if node is None else f"a {type(node).__name__}"
        raise WorkloadError(f"{kind}: {where} must be an object, got {got}")
    return PodSpecRef(kind=kind, pointer="/" + "/".join(POD_SPEC_PATHS[kind]), spec=node)


def pulled_images(spec: Mapping[str, Any]) -> Iterator[PulledImage]:
    """Every image of a pod spec (:data:`IMAGE_SOURCES`), init containers first, in API order.

    Entries that are not objects, and images that are not strings, are reported with
    ``image=None`` so the decision can name them instead of crashing. A volume is an image
    source only when it has an ``image`` key; one whose ``image`` is malformed is reported
    like a container without an image.
    """
    for source in IMAGE_SOURCES:
        items = spec.get(source.section)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            fallback = f"{source.section}[{index}]"
            if not isinstance(item, Mapping):
                if not source.optional:
                    yield PulledImage(source.section, index, fallback, None, source.noun)
                continue
            if source.optional and source.path[0] not in item:
                continue
            node: Any = item
            for key in source.path:
                node = node.get(key) if isinstance(node, Mapping) else None
            name = item.get("name")
            yield PulledImage(
                section=source.section,
                index=index,
                name=name if isinstance(name, str) and name else fallback,
                image=node if isinstance(node, str) and node != "" else None,
                noun=source.noun,
            )


def images(spec: Mapping[str, Any]) -> frozenset[str]:
    """Every image a pod spec uses (for telling new images from old ones on UPDATE)."""
    return frozenset(p.image for p in pulled_images(spec) if p.image is not None)


def object_name(obj: Mapping[str, Any]) -> str:
    """``metadata.name``, else ``metadata.generateName`` with a ``*`` (controller pods)."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return ""
    name = meta.get("name")
    if isinstance(name, str) and name:
        return name
    generate = meta.get("generateName")
    if isinstance(generate, str) and generate:
        return generate + "*"
    return ""


def object_namespace(obj: Mapping[str, Any]) -> str | None:
    """``metadata.namespace`` when set."""
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        namespace = meta.get("namespace")
        if isinstance(namespace, str) and namespace:
            return namespace
    return None
