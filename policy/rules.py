"""Rules 1-4 of ``docs/architecture.md`` for one image: may a namespace of this workspace use it?

The image is parsed like the kubelet parses it, its domain picks the registry, its first path
component the space, and the space's visibility decides (:func:`space_verdict`). The mode is
not applied here: :mod:`policy.decision` does that for the whole pod spec.

Per-image verdicts depend only on (image, registry data, namespace workspace), so they are
memoized per snapshot: a busy cluster sees the same few hundred images over and over, and a
repeated image then costs a dict lookup. The cache lives on the snapshot, dies with it and is
bounded; an image longer than any pullable reference is refused before it is parsed and is
never remembered.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.config import UnknownAction
from policy.reference import (
    MAX_REFERENCE_LENGTH,
    InvalidReference,
    is_local_image_id,
    parse_reference,
)
from policy.snapshot import RegistryState, Snapshot

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
    image names, :mod:`policy.visibility` for every space a registry has.
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
