"""``spacegate explain`` and ``spacegate images``: the snapshot's view, for humans.

``explain`` answers "why was this image refused here?" step by step (the parsed reference,
the registry it resolves to, the space and its visibility, the namespace's workspace and the
bindings), which is what a platform engineer needs when a deployment fails. ``images`` lists
what a namespace may use: the DCE "image selector" view.
"""

from __future__ import annotations

import json

from policy.decision import decide
from policy.reference import InvalidReference, parse_reference
from policy.snapshot import Snapshot
from policy.visibility import VisibleSpace, visible_spaces
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


def _visibility(space: VisibleSpace) -> str:
    return "public" if space.public else "private"


def _spaces(snapshot: Snapshot, namespace: str, space: str | None) -> list[VisibleSpace]:
    found = visible_spaces(snapshot, namespace)
    return found if space is None else [s for s in found if s.space in (space, "*")]


def images_table(snapshot: Snapshot, namespace: str, space: str | None = None) -> str:
    spaces = _spaces(snapshot, namespace, space)
    workspace = snapshot.namespace(namespace).workspace or "none"
    header = ("REGISTRY", "SPACE", "IMAGES", "VISIBILITY", "PULL SECRET", "WHY")
    rows = [
        (
            s.registry,
            s.space,
            f"{s.host}/{s.space}/...",
            _visibility(s),
            snapshot.policy.pull_secret_name if s.needs_secret else "-",
            s.why(workspace),
        )
        for s in spaces
    ]
    lines = [f"namespace {namespace} (workspace {workspace}) may use:"]
    lines.extend(render_table(header, rows))
    if not rows:
        lines.append("(nothing: no public space and no space bound to this workspace)")
    return "\n".join(lines)


def images_json(snapshot: Snapshot, namespace: str, space: str | None = None) -> str:
    workspace = snapshot.namespace(namespace).workspace
    return json.dumps(
        {
            "namespace": namespace,
            "workspace": workspace,
            "spaces": [
                {
                    "registry": s.registry,
                    "host": s.host,
                    "space": s.space,
                    "visibility": _visibility(s),
                    "needsPullSecret": s.needs_secret,
                    "why": s.why(workspace),
                }
                for s in _spaces(snapshot, namespace, space)
            ],
        },
        indent=2,
    )
