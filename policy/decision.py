"""The decision: may this pod spec's images be used in this namespace?

Implements the decision rules 1-6 of ``docs/architecture.md``. Everything here is pure and
works on a :class:`~policy.snapshot.Snapshot`, so the admission server, the CLI and the tests
all decide through the same function.

Per-image verdicts depend only on (image, registry data, namespace workspace), so they are
memoized per snapshot: a busy cluster sees the same few hundred images over and over, and a
repeated image then costs a dict lookup. The cache lives on the snapshot and dies with it.

Everything in a pod spec is written by a tenant and may be hostile, so the work per review and
what it leaves behind are bounded: an image longer than any pullable reference is refused
before it is parsed and quoted only by its first characters; only bounded images and pod specs
are memoized, in caches of bounded size; messages, warnings and annotations are clipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from policy.config import Mode, UnknownAction
from policy.reference import (
    MAX_REFERENCE_LENGTH,
    InvalidReference,
    is_local_image_id,
    parse_reference,
)
from policy.snapshot import NamespaceInfo, RegistryState, Snapshot
from policy.workload import IMAGE_SOURCES, pulled_images

Verdict = Literal["allowed", "denied", "warned", "audited", "exempt", "skipped"]

# Warnings over 256 characters may be truncated by the apiserver; keep well under.
MAX_WARNING_CHARS = 256
# Audit annotation values are free text but end up in every audit event; keep them short.
MAX_ANNOTATION_CHARS = 1024
# The denial message goes back to the user in a Status and into the apiserver's logs.
MAX_MESSAGE_CHARS = 4096
# Warnings past this count are folded into one; the apiserver cuts them at 4096 runes anyway.
MAX_WARNINGS = 16
# How much of an image string a message quotes when the image itself is too long to show.
QUOTED_IMAGE_CHARS = 64
# Per-image verdicts remembered per snapshot; the cache is dropped whole when it fills up.
MAX_CACHED_VERDICTS = 16_384


@dataclass(frozen=True, slots=True)
class ImageVerdict:
    """What the rules say about one image for one workspace, before the mode applies."""

    allowed: bool
    reason: str
    registry: str | None = None
    space: str | None = None
    needs_secret: bool = False
    warn: bool = False  # allowed, but an unknownRegistry/unknownSpace "warn" applies
    # Which rule decided: "invalid", "unknown-registry", "unknown-space", "workspace-registry",
    # "docker-registry", "public", "bound" or "unbound".
    rule: str = ""


@dataclass(frozen=True, slots=True)
class ContainerVerdict:
    """The verdict for one container, after the mode is applied."""

    section: str
    name: str
    image: str | None
    verdict: Verdict
    reason: str
    registry: str | None = None
    space: str | None = None
    needs_secret: bool = False
    refused: bool = False  # the rules refuse this image, whatever the mode made of it
    noun: str = "container"  # or "init container", "ephemeral container", "volume"

    @property
    def label(self) -> str:
        """How messages name it: ``container "app"``, ``volume "data"``."""
        return f'{self.noun} "{self.name}"'


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one pod spec: what the apiserver is told, and why."""

    allowed: bool
    mode: Mode
    namespace: str
    workspace: str | None
    containers: tuple[ContainerVerdict, ...] = ()
    message: str = ""
    warnings: tuple[str, ...] = ()
    audit_annotations: Mapping[str, str] = field(default_factory=dict)
    patch: tuple[dict[str, Any], ...] = ()
    exempt: bool = False
    # Kept in the snapshot's memo: bounded in size, and shared by every equal pod spec.
    memoized: bool = False


# --------------------------------------------------------------------------- text helpers

# C0 and C1 control characters (Go's unicode.IsControl) and the Unicode line separators.
_CONTROL = dict.fromkeys([*range(32), *range(127, 160), 0x2028, 0x2029], " ")


def single_line(text: str) -> str:
    """Control characters out: the apiserver silently drops warnings that contain them."""
    return " ".join(text.translate(_CONTROL).split())


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def joined(parts: list[str], limit: int) -> str:
    """``parts`` joined with "; " on one line, at most ``limit`` characters.

    Stops reading parts once the limit is reached, so a pod spec with thousands of refused
    images costs no more text than one with a few, and says how many were left out.
    """
    out: list[str] = []
    size = 0
    for part in parts:
        if size >= limit:
            break
        text = single_line(part[: limit + 1])
        out.append(text)
        size += len(text) + 2
    text = "; ".join(out)
    left_out = len(parts) - len(out)
    if not left_out and len(text) <= limit:
        return text
    suffix = f" (and {left_out} more)" if left_out else ""
    return clip(text, limit - len(suffix)) + suffix


def quote_image(image: str) -> str:
    """An image for a message: whole when it could be a real reference, else its start."""
    if len(image) <= MAX_REFERENCE_LENGTH:
        return image
    return f"{image[:QUOTED_IMAGE_CHARS]}… ({len(image)} characters)"


def _ws(workspace: str | None) -> str:
    return f"workspace {workspace}" if workspace else "no workspace"


# --------------------------------------------------------------------------- image rules


def _unknown(action: UnknownAction, reason: str, **where: str | None) -> ImageVerdict:
    if action == "deny":
        return ImageVerdict(False, reason, where.get("registry"), where.get("space"))
    return ImageVerdict(
        True,
        reason,
        where.get("registry"),
        where.get("space"),
        warn=action == "warn",
    )


def evaluate_image(snapshot: Snapshot, image: str, workspace: str | None) -> ImageVerdict:
    """Rules 1-4 for one image and one workspace (memoized on the snapshot).

    An image longer than :data:`~policy.reference.MAX_REFERENCE_LENGTH` is refused at once,
    before parsing and without being remembered: no registry could serve it, and a tenant
    must not be able to make the server parse megabytes or keep them.
    """
    if len(image) > MAX_REFERENCE_LENGTH:
        return ImageVerdict(
            False,
            f"image reference is {len(image)} characters long, longer than any pullable "
            f"reference can be ({MAX_REFERENCE_LENGTH})",
        )
    key = (image, workspace)
    cache = snapshot.verdict_cache
    hit: ImageVerdict | None = cache.get(key)
    if hit is not None:
        return hit
    verdict = _evaluate(snapshot, image, workspace)
    if len(cache) >= MAX_CACHED_VERDICTS:
        cache.clear()
    cache[key] = verdict
    return verdict


def _evaluate(snapshot: Snapshot, image: str, workspace: str | None) -> ImageVerdict:
    policy = snapshot.policy
    if is_local_image_id(image):
        return ImageVerdict(
            False,
            "a bare digest is resolved by the container runtime as the ID of an image already "
            "on the node, which runs without any pull or check; name the image by its "
            "registry and repository instead, e.g. harbor.example.com/space/app@"
            + image.split(":", 1)[0]
            + ":<digest>",
        )
    try:
        ref = parse_reference(image)
    except InvalidReference as exc:
        return ImageVerdict(False, f"invalid image reference: {exc}")

    # An empty domain (e.g. "foo_bar.com/app": not a valid host, so all of it is the path)
    # is no registry of ours, and never Docker Hub: the runtime would try that first part.
    state = snapshot.registry_for_domain(ref.domain) if ref.domain else None
    if state is None:
        host = ref.domain or ref.path.split("/", 1)[0]
        return _unknown(
            policy.unknown_registry,
            f"registry {host} is not managed by spacegate "
            f"(policy.unknownRegistry: {policy.unknown_registry})",
        )
    return space_verdict(snapshot, state, ref.path.split("/", 1)[0], workspace)


def space_verdict(
    snapshot: Snapshot, state: RegistryState, space: str, workspace: str | None
) -> ImageVerdict:
    """Rules 3-4: may a namespace of ``workspace`` use ``space`` of this registry?

    The one implementation of visibility: :func:`evaluate_image` asks it for the space an
    image names, :func:`visible_spaces` for every space a registry has.
    """
    policy = snapshot.policy
    registry = state.registry
    where = {"registry": registry.name, "space": space}

    if registry.type == "harbor":
        public = state.space_public(space)
        if public is None:
            if not state.synced:
                why = f"registry {registry.name!r} has not been synced yet"
            else:
                why = f"registry {registry.name!r} has no space {space!r}"
            return _unknown(
                policy.unknown_space,
                f"{why} (policy.unknownSpace: {policy.unknown_space})",
                **where,
            )
    else:
        public = True  # a Docker Registry has only public images

    needs_secret = (not public) or not registry.anonymous_pull

    if registry.workspace is not None:
        if workspace == registry.workspace:
            return ImageVerdict(
                True,
                f"registry {registry.name!r} is integrated by workspace {workspace}",
                registry.name,
                space,
                needs_secret,
                rule="workspace-registry",
            )
        return ImageVerdict(
            False,
            f"registry {registry.name!r} is integrated by workspace {registry.workspace} "
            f"and visible to it only",
            registry.name,
            space,
            rule="workspace-registry",
        )

    if public:
        docker = registry.type == "docker-registry"
        why = (
            f"space {space!r} of platform Docker Registry {registry.name!r} (all public)"
            if docker
            else f"public space {space!r} of registry {registry.name!r}"
        )
        return ImageVerdict(
            True,
            why,
            registry.name,
            space,
            needs_secret,
            rule="docker-registry" if docker else "public",
        )
    bound = snapshot.bound_workspaces(registry.name, space)
    if workspace is not None and workspace in bound:
        return ImageVerdict(
            True,
            f"private space {space!r} of registry {registry.name!r} is bound to "
            f"workspace {workspace}",
            registry.name,
            space,
            needs_secret,
            rule="bound",
        )
    if workspace is None:
        why = (
            f"private space {space!r} of registry {registry.name!r} is only for bound "
            "workspaces and the namespace belongs to no workspace"
        )
    else:
        why = (
            f"private space {space!r} of registry {registry.name!r} is not bound to "
            f"workspace {workspace}"
        )
    return ImageVerdict(False, why, registry.name, space, rule="unbound")


@dataclass(frozen=True, slots=True)
class VisibleSpace:
    """A space a namespace may use (``spacegate images``), and why."""

    registry: str
    host: str
    space: str  # "*" for a Docker Registry whose catalog is not known
    public: bool
    rule: str  # the ImageVerdict rule that allows it
    workspace: str | None  # the registry's workspace, for a workspace-integrated one
    needs_secret: bool


def visible_spaces(snapshot: Snapshot, namespace: str) -> list[VisibleSpace]:
    """Every space a namespace may use, registry by registry, by the rules of ``decide``."""
    return workspace_spaces(snapshot, snapshot.namespace(namespace).workspace)


def workspace_spaces(snapshot: Snapshot, workspace: str | None) -> list[VisibleSpace]:
    """Every space the namespaces of ``workspace`` (None: of no workspace) may use."""
    out: list[VisibleSpace] = []
    for state in snapshot.registries.values():
        registry = state.registry
        if registry.type == "docker-registry":
            spaces = dict.fromkeys(sorted(state.spaces) or ["*"], True)
        else:
            spaces = dict(sorted(state.spaces.items()))
        for space, public in spaces.items():
            verdict = space_verdict(snapshot, state, space, workspace)
            if verdict.allowed and not verdict.warn:
                out.append(
                    VisibleSpace(
                        registry.name,
                        registry.hosts[0],
                        space,
                        public,
                        verdict.rule,
                        registry.workspace,
                        verdict.needs_secret,
                    )
                )
    return out


def _remedy(verdict: ImageVerdict, namespace: str, workspace: str | None) -> str:
    if verdict.space is None or verdict.registry is None:
        return ""
    if "integrated by workspace" in verdict.reason:
        return "use a registry visible to this workspace or a public space"
    if workspace is None:
        return (
            f"bind namespace {namespace} to a workspace that the space is bound to, "
            "or use an image from a public space"
        )
    if "private space" in verdict.reason:
        return (
            f"bind space {verdict.space!r} to workspace {workspace}, "
            "or use an image from a public space"
        )
    return ""


# --------------------------------------------------------------------------- decide

_REFUSED_VERDICT: Mapping[Mode, Verdict] = {
    "enforce": "denied",
    "warn": "warned",
    "audit": "audited",
}


# Bound on memoized decisions per snapshot; the memo is dropped whole when it fills up.
MAX_MEMO_DECISIONS = 8_192
# Only pod specs whose names and images add up to at most this many characters are memoized,
# so the memo's size is bounded by count times this, whatever tenants send.
MAX_MEMO_KEY_CHARS = 4_096


def _signature(pod_spec: Mapping[str, Any], secret: str) -> tuple[Any, ...] | None:
    """Everything of a pod spec that a decision depends on, as a hashable key.

    That is each image source's section, name and image (exactly what
    :func:`policy.workload.pulled_images` reads, in its order) and the state of
    ``imagePullSecrets`` with respect to the pull secret (absent, present with it, present
    without it, malformed). None when the names and images are too long to remember
    (:data:`MAX_MEMO_KEY_CHARS`): such a spec is decided afresh each time.
    """
    parts: list[Any] = []
    budget = MAX_MEMO_KEY_CHARS
    for source in IMAGE_SOURCES:
        items = pod_spec.get(source.section)
        if not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, Mapping):
                if source.optional and source.path[0] not in item:
                    continue
                name = item.get("name")
                node: Any = item
                for key in source.path:
                    node = node.get(key) if isinstance(node, Mapping) else None
                name = name if isinstance(name, str) else None
                image = node if isinstance(node, str) else None
                budget -= len(name or "") + len(image or "") + 1
                if budget < 0:
                    return None
                parts.append((source.section, name, image))
            elif not source.optional:
                parts.append((source.section, None, None))
    secrets = pod_spec.get("imagePullSecrets")
    if secrets is None:
        state = 0
    elif not isinstance(secrets, list):
        state = 3
    elif any(isinstance(e, Mapping) and e.get("name") == secret for e in secrets):
        state = 1
    else:
        state = 2
    parts.append(state)
    return tuple(parts)


def decide(
    snapshot: Snapshot,
    namespace: str,
    pod_spec: Mapping[str, Any],
    *,
    pointer: str = "/spec",
    kind: str = "Pod",
    operation: str = "CREATE",
    sub_resource: str = "",
    unchanged: frozenset[str] = frozenset(),
) -> Decision:
    """Decide on every image of a pod spec for a namespace (rules 1-6 of docs/architecture.md).

    ``unchanged`` (UPDATE only) holds the images the object already had before the
    update (``oldObject``). They were admitted when they were introduced and are not
    judged again: otherwise unbinding a space would make every later write to its running
    workloads fail — a Deployment's rollout scaling down old ReplicaSets, the Job
    controller removing its finalizers, the garbage collector editing ownerReferences —
    although none of them brings in an image. Only images an update introduces are checked.

    ``pointer`` is the JSON pointer of ``pod_spec`` in the admitted object; it is used only
    for the pull-secret patch, which is produced for Pod CREATE only (``imagePullSecrets``
    is immutable on existing Pods and the ``ephemeralcontainers`` subresource discards it).

    Decisions are memoized per snapshot on everything they depend on, because the Pods of
    one workload arrive over and over with identical containers. The returned
    :class:`Decision` is shared: treat it, and its patch operations, as read-only.
    """
    signature = _signature(pod_spec, snapshot.policy.pull_secret_name)
    if signature is None:
        return _decide(
            snapshot,
            namespace,
            pod_spec,
            pointer=pointer,
            kind=kind,
            operation=operation,
            sub_resource=sub_resource,
            unchanged=unchanged,
        )
    if unchanged:
        # Only the images of this spec matter: keeps the memo key small and shared.
        unchanged = unchanged.intersection(
            part[2] for part in signature[:-1] if part[2] is not None
        )
    key = (namespace, pointer, kind, operation, sub_resource, unchanged, signature)
    memo = snapshot.decision_cache
    hit: Decision | None = memo.get(key)
    if hit is not None:
        return hit
    decision = _decide(
        snapshot,
        namespace,
        pod_spec,
        pointer=pointer,
        kind=kind,
        operation=operation,
        sub_resource=sub_resource,
        unchanged=unchanged,
        memoized=True,
    )
    if len(memo) >= MAX_MEMO_DECISIONS:
        memo.clear()
    memo[key] = decision
    return decision


def _decide(
    snapshot: Snapshot,
    namespace: str,
    pod_spec: Mapping[str, Any],
    *,
    pointer: str,
    kind: str,
    operation: str,
    sub_resource: str,
    unchanged: frozenset[str],
    memoized: bool = False,
) -> Decision:
    policy = snapshot.policy
    info: NamespaceInfo = snapshot.namespace(namespace)
    workspace = info.workspace
    mode: Mode = info.mode or policy.mode

    if namespace in policy.exempt_namespaces:
        exempt_reason = f"namespace {namespace} is exempt"
        return Decision(
            allowed=True,
            mode=mode,
            namespace=namespace,
            workspace=workspace,
            containers=tuple(
                ContainerVerdict(c.section, c.name, c.image, "exempt", exempt_reason, noun=c.noun)
                for c in pulled_images(pod_spec)
            ),
            exempt=True,
            memoized=memoized,
        )

    results: list[ContainerVerdict] = []
    denials: list[str] = []
    warnings: list[str] = []
    needs_secret = False
    refused_verdict = _REFUSED_VERDICT[mode]

    for container in pulled_images(pod_spec):
        noun = container.noun
        if container.image is None:
            results.append(
                ContainerVerdict(
                    container.section,
                    container.name,
                    None,
                    "skipped",
                    "no image set (left to be defaulted); the Pods it creates are checked",
                    noun=noun,
                )
            )
            continue
        if operation == "UPDATE" and container.image in unchanged:
            results.append(
                ContainerVerdict(
                    container.section,
                    container.name,
                    container.image,
                    "allowed",
                    "image unchanged by this update (checked when it was introduced)",
                    noun=noun,
                )
            )
            continue
        verdict = evaluate_image(snapshot, container.image, workspace)
        if verdict.allowed:
            needs_secret = needs_secret or verdict.needs_secret
            results.append(
                ContainerVerdict(
                    container.section,
                    container.name,
                    container.image,
                    "warned" if verdict.warn else "allowed",
                    ("warning: " if verdict.warn else "") + verdict.reason,
                    verdict.registry,
                    verdict.space,
                    verdict.needs_secret,
                    noun=noun,
                )
            )
            if verdict.warn:
                warnings.append(
                    f'spacegate: {container.label} image "{quote_image(container.image)}": '
                    f"{verdict.reason}"
                )
            continue
        remedy = _remedy(verdict, namespace, workspace)
        text = (
            f'{container.label} image "{quote_image(container.image)}" is not allowed in '
            f"namespace {namespace} ({_ws(workspace)}): {verdict.reason}"
            + (f"; {remedy}" if remedy else "")
        )
        denials.append(text)
        results.append(
            ContainerVerdict(
                container.section,
                container.name,
                container.image,
                refused_verdict,
                verdict.reason + (f"; {remedy}" if remedy else ""),
                verdict.registry,
                verdict.space,
                refused=True,
                noun=noun,
            )
        )
        if mode == "warn":
            warnings.append("spacegate: " + text)

    allowed = not denials or mode != "enforce"
    annotations: dict[str, str] = {}
    if denials:
        annotations["decision"] = refused_verdict
        annotations["refused"] = joined(denials, MAX_ANNOTATION_CHARS)

    patch: tuple[dict[str, Any], ...] = ()
    if allowed and needs_secret and kind == "Pod" and operation == "CREATE" and not sub_resource:
        patch = pull_secret_patch(pod_spec, pointer, policy.pull_secret_name)

    return Decision(
        allowed=allowed,
        mode=mode,
        namespace=namespace,
        workspace=workspace,
        containers=tuple(results),
        message=(joined(denials, MAX_MESSAGE_CHARS) if denials and mode == "enforce" else ""),
        warnings=_bounded_warnings(warnings),
        audit_annotations=annotations,
        patch=patch,
        memoized=memoized,
    )


def _bounded_warnings(warnings: list[str]) -> tuple[str, ...]:
    """At most :data:`MAX_WARNINGS` single-line warnings, each clipped."""
    if len(warnings) > MAX_WARNINGS:
        more = len(warnings) - (MAX_WARNINGS - 1)
        warnings = [*warnings[: MAX_WARNINGS - 1], f"spacegate: {more} more images refused"]
    return tuple(clip(single_line(w), MAX_WARNING_CHARS) for w in warnings)


def pull_secret_patch(
    pod_spec: Mapping[str, Any], pointer: str, secret: str
) -> tuple[dict[str, Any], ...]:
    """JSON-patch ops adding ``secret`` to ``imagePullSecrets`` without ever failing to apply.

    Absent (or ``null``) list: add the whole list. Present list: append with ``/-``. Already
    there: no op at all, so a reinvocation changes nothing. Anything else (a malformed
    field) is left alone: the API server's validation will name it better than we can.
    """
    current = pod_spec.get("imagePullSecrets")
    path = f"{pointer}/imagePullSecrets"
    if current is None:
        return ({"op": "add", "path": path, "value": [{"name": secret}]},)
    if not isinstance(current, list):
        return ()
    for entry in current:
        if isinstance(entry, Mapping) and entry.get("name") == secret:
            return ()
    return ({"op": "add", "path": f"{path}/-", "value": {"name": secret}},)
