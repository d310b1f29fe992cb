"""``spacegate explain`` and ``spacegate images``: the snapshot's view, for humans.

``explain`` answers "why was this image refused here?" step by step (the parsed reference,
the registry it resolves to, the space and its visibility, the namespace's workspace and the
bindings), which is what a platform engineer needs when a deployment fails. ``images`` lists
what a namespace may use: the DCE "image selector" view.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from policy.decision import decide
from policy.reference import InvalidReference, parse_reference
from policy.snapshot import Snapshot
from webhook.cli.table import render_table


def explain(snapshot: Snapshot, image: str, namespace: str) -> tuple[bool, str]:
    """(allowed, a multi-line explanation) for one image in one namespace."""
    info = snapshot.namespace(namespace)
    lines = [f"image:      {image}"]
    try:
        ref = parse_reference(image)
    except InvalidReference as exc:
        ref = None
        lines.append(f"reference:  invalid: {exc}")
    if ref is not None:
        lines.append(f"reference:  {ref} (registry host {ref.domain}, path {ref.path})")
        state = snapshot.registry_for_domain(ref.domain)
        if state is None:
            lines.append(f"registry:   none of the configured registries serves {ref.domain}")
        else:
            registry = state.registry
            scope = (
                f"integrated by workspace {registry.workspace}"
                if registry.workspace
                else "integrated by the platform"
            )
            lines.append(f"registry:   {registry.name} ({registry.type}, {scope})")
            space = ref.path.split("/", 1)[0]
            if registry.type == "docker-registry":
                visibility = "public (a Docker Registry has only public images)"
            else:
                public = state.space_public(space)
                visibility = (
                    "unknown to the registry"
                    if public is None
                    else ("public" if public else "private")
                )
            lines.append(f"space:      {space}: {visibility}")
            bound = sorted(snapshot.bound_workspaces(registry.name, space))
            if bound:
                lines.append(f"bound to:   workspaces {', '.join(bound)}")
    workspace = info.workspace or "none"
    mode = info.mode or snapshot.policy.mode
    lines.append(f"namespace:  {namespace} (workspace {workspace}, mode {mode})")
    decision = decide(snapshot, namespace, {"containers": [{"name": "explain", "image": image}]})
    verdict = decision.containers[0]
    lines.append(f"verdict:    {verdict.verdict}: {verdict.reason}")
    if verdict.needs_secret:
        lines.append(
            f"pull secret: {snapshot.policy.pull_secret_name} is injected into Pods using it"
        )
    return not verdict.refused, "\n".join(lines)


@dataclass(frozen=True, slots=True)
class VisibleSpace:
    """A space a namespace may use, and whether its images need the pull secret."""

    registry: str
    host: str
    space: str
    visibility: str  # public | private | all (Docker Registry)
    why: str
    needs_secret: bool


def visible_spaces(snapshot: Snapshot, namespace: str) -> list[VisibleSpace]:
    """Every space a namespace may use, registry by registry."""
    workspace = snapshot.namespace(namespace).workspace
    out: list[VisibleSpace] = []
    for state in snapshot.registries.values():
        registry = state.registry
        if registry.workspace is not None and registry.workspace != workspace:
            continue
        host = registry.hosts[0]
        if registry.type == "docker-registry":
            why = (
                f"integrated by workspace {registry.workspace}"
                if registry.workspace
                else "platform Docker Registry: all public"
            )
            names = sorted(state.spaces) or ["*"]
            out.extend(
                VisibleSpace(registry.name, host, name, "public", why, not registry.anonymous_pull)
                for name in names
            )
            continue
        for name, public in sorted(state.spaces.items()):
            if registry.workspace is not None:
                why = f"integrated by workspace {registry.workspace}"
            elif public:
                why = "public space"
            elif workspace is not None and workspace in snapshot.bound_workspaces(
                registry.name, name
            ):
                why = f"bound to workspace {workspace}"
            else:
                continue
            needs_secret = not public or not registry.anonymous_pull
            visibility = "public" if public else "private"
            out.append(VisibleSpace(registry.name, host, name, visibility, why, needs_secret))
    return out


def images_table(snapshot: Snapshot, namespace: str) -> str:
    spaces = visible_spaces(snapshot, namespace)
    workspace = snapshot.namespace(namespace).workspace or "none"
    header = ("REGISTRY", "SPACE", "IMAGES", "VISIBILITY", "PULL SECRET", "WHY")
    rows = [
        (
            s.registry,
            s.space,
            f"{s.host}/{s.space}/...",
            s.visibility,
            snapshot.policy.pull_secret_name if s.needs_secret else "-",
            s.why,
        )
        for s in spaces
    ]
    lines = [f"namespace {namespace} (workspace {workspace}) may use:"]
    lines.extend(render_table(header, rows))
    if not rows:
        lines.append("(nothing: no public space and no space bound to this workspace)")
    return "\n".join(lines)


def images_json(snapshot: Snapshot, namespace: str) -> str:
    return json.dumps(
        {
            "namespace": namespace,
            "workspace": snapshot.namespace(namespace).workspace,
            "spaces": [
                {
                    "registry": s.registry,
                    "host": s.host,
                    "space": s.space,
                    "visibility": s.visibility,
                    "needsPullSecret": s.needs_secret,
                    "why": s.why,
                }
                for s in visible_spaces(snapshot, namespace)
            ],
        },
        indent=2,
    )
