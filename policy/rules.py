"""Rules 1-4 of ``docs/architecture.md`` for one image: may a namespace of this workspace use it?

The image is parsed like the kubelet parses it, its domain picks the registry in whatever
spelling (``policy.hosts``), its first path component the space, and the space's visibility
decides (:func:`space_verdict`). An allowed image that needs the pull secret must also be
written with a host the secret carries, exactly, or the kubelet pulls without it. The mode is
not applied here: :mod:`policy.decision` does that for the whole pod spec.

Per-image verdicts depend only on (image, registry data, namespace workspace), so they are
memoized per snapshot: a busy cluster sees the same few hundred images over and over, and a
repeated image then costs a dict lookup. The cache lives on the snapshot, dies with it and is
bounded; an image longer than any pullable reference is refused before it is parsed and is
never remembered.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from policy.config import UnknownAction
from policy.hosts import kubelet_uses_key
from policy.reference import (
    MAX_REFERENCE_LENGTH,
    InvalidReference,
    Reference,
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
    # Which rule decided: "invalid", "local-image-id", "unknown-registry", "unknown-space",
    # "workspace-registry", "docker-registry", "public", "bound", "unbound" or
    # "host-spelling" (the pull secret would not be used for the host as written).
    rule: str = ""
    # "host-spelling": the image as it must be written for the pull secret to apply.
    use: str = ""


def _unknown(action: UnknownAction, reason: str, rule: str, **where: str | None) -> ImageVerdict:
    if action == "deny":
        return ImageVerdict(False, reason, where.get("registry"), where.get("space"), rule=rule)
    return ImageVerdict(
        True,
        reason,
        where.get("registry"),
        where.get("space"),
        warn=action == "warn",
        rule=rule,
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
            rule="invalid",
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
            rule="local-image-id",
        )
    try:
        ref = parse_reference(image)
    except InvalidReference as exc:
        return ImageVerdict(False, f"invalid image reference: {exc}", rule="invalid")

    # An empty domain (e.g. "foo_bar.com/app": not a valid host, so all of it is the path)
    # is no registry of ours, and never Docker Hub: the runtime would try that first part.
    state = snapshot.registry_for_domain(ref.domain) if ref.domain else None
    if state is None:
        host = ref.domain or ref.path.split("/", 1)[0]
        return _unknown(
            policy.unknown_registry,
            f"registry {host} is not managed by spacegate "
            f"(policy.unknownRegistry: {policy.unknown_registry})",
            "unknown-registry",
        )
    verdict = space_verdict(snapshot, state, ref.path.split("/", 1)[0], workspace)
    if verdict.allowed and verdict.needs_secret:
        return _with_secret_spelling(verdict, state, ref)
    return verdict


def _with_secret_spelling(
    verdict: ImageVerdict, state: RegistryState, ref: Reference
) -> ImageVerdict:
    """``verdict`` if the kubelet would use the pull secret for the host as written, else a
    refusal naming the spelling to use.

    The image is this registry's whatever its spelling (``policy.hosts``), but the kubelet
    picks the pull secret's credentials by comparing the host *as written* with the
    secret's keys, the registry's ``hosts``. Admitted in another spelling, the Pod would
    pull without credentials, or with whatever the node has: refused instead.
    """
    hosts = state.registry.hosts
    if kubelet_uses_key(hosts, ref.domain):
        return verdict
    usable = [h for h in hosts if kubelet_uses_key(hosts, h)]
    written = "/".join((usable[0], ref.path)) if usable else ""
    if written:
        written += (f":{ref.tag}" if ref.tag else "") + (f"@{ref.digest}" if ref.digest else "")
    spellings = ", ".join(usable) or "none"
    return replace(
        verdict,
        allowed=False,
        needs_secret=False,
        reason=(
            f"the kubelet finds the pull secret of registry {state.registry.name!r} only for "
            f"the host spelled as listed ({spellings}), not {ref.domain}"
        ),
        rule="host-spelling",
        use=written,
    )


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
                "unknown-space",
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
