"""Admission of RegistrySpaceBinding objects: a warning before a change breaks something.

Removing a workspace from a binding, or deleting one, does not stop what runs, but every new
Pod of a workload using that space there is refused from then on (a rollout, a restart, a
scale-up). So a review of such a change is answered *allowed*, with ``warnings`` that
``kubectl`` prints, naming the running workloads that would lose the space: a handful by
name, the rest counted. A create or update also warns about a binding that binds nothing
(an undeclared registry), a space the registry does not list, or a space other bindings bind
too. Nothing is ever refused, unless ``bindings.requireAcknowledgement`` is on: then a change
that strands running workloads is denied until the object carries the annotation
``spacegate.io/acknowledge-removal`` naming the workspaces (or ``*``).

Where the impact comes from, in order:

1. the leader's **impact index** in the snapshot (``policy.impact``), published after every
   background audit pass, when it is fresh (within two audit intervals) — memory only;
2. otherwise an :class:`ImpactProbe` computing it now (``spacegate serve`` injects one that
   lists the workloads of the affected namespaces and judges them, as ``spacegate audit
   --what-if`` does), under a hard time budget; one probe at a time;
3. otherwise the warning says the impact is unknown and how to find it.

This module imports no network client (the admission room may not): the probe is a
protocol, and it only ever runs for binding reviews, never for a Pod.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from policy.bindings import (
    ACKNOWLEDGE_ANNOTATION,
    KIND,
    BindingObject,
    acknowledged_workspaces,
    bound_by_others,
    lost_workspaces,
    read_binding_object,
    uses_objects,
)
from policy.impact import MAX_EXAMPLES, WorkspaceUse
from policy.messages import bounded_warnings
from policy.snapshot import Snapshot
from webhook.admission.outcomes import Outcome
from webhook.admission.review import EncodedReply, Reply, ReviewRequest, allow, deny

__all__ = ["DEFAULT_PROBE_BUDGET", "BindingReviewer", "ImpactProbe"]

_log = logging.getLogger(__name__)

# Seconds a binding review may spend computing the impact on the spot; well inside the
# webhook's timeoutSeconds (5 s in the chart), so the apiserver never times out on us.
DEFAULT_PROBE_BUDGET: Final = 2.0


class ImpactProbe(Protocol):
    """Computes now which running workloads use a space in some workspaces."""

    async def impact(
        self,
        snapshot: Snapshot,
        registry: str,
        space: str,
        workspaces: frozenset[str],
        deadline: float,
    ) -> Mapping[str, WorkspaceUse]:
        """workspace -> its workloads using the space (a count and a few names); raises
        ``TimeoutError`` when ``deadline`` (``time.monotonic()``) passes first."""
        ...


@dataclass(frozen=True)
class _Impact:
    """What a removal strands, per lost workspace (None: not known)."""

    uses: Mapping[str, WorkspaceUse | None]
    source: str  # "as of the audit at ..." / "found just now"

    def stranded(self) -> dict[str, WorkspaceUse | None]:
        """Workspaces with running workloads, or with an unknown impact."""
        return {w: u for w, u in self.uses.items() if u is None or u.count > 0}


@dataclass
class BindingReviewer:
    """Answers binding reviews (``/validate``); ``probe`` None: the index only."""

    probe: ImpactProbe | None = None
    budget: float = DEFAULT_PROBE_BUDGET
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    _probing: asyncio.Semaphore | None = field(default=None, init=False)

    async def answer(self, review: ReviewRequest, snapshot: Snapshot) -> Outcome:
        """The reply to one review of a RegistrySpaceBinding."""
        config = snapshot.config
        if not uses_objects(config):
            return _outcome(
                allow(
                    warnings=(
                        "spacegate: bindings.source is config in spacegate's config, so "
                        f"{KIND} objects bind nothing; this change has no effect",
                    )
                )
            )
        before = _read(review.old_object)
        if review.operation == "DELETE" and before is None:
            before = (snapshot.binding_objects or {}).get(review.name)
        after = None if review.operation == "DELETE" else _read(review.object)
        objects = dict(snapshot.binding_objects or {})
        warnings: list[str] = []
        if after is not None:
            warnings.extend(_about(snapshot, objects, after, created=review.operation == "CREATE"))
        lost = lost_workspaces(config, objects, before, after)
        if before is None or not lost or not _needs_binding(snapshot, before):
            return _outcome(allow(warnings=bounded_warnings(warnings)))
        impact = await self._impact(snapshot, before, lost)
        warnings[:0] = _impact_warnings(review, before, impact, self.budget)
        if config.require_acknowledgement:
            refusal = _unacknowledged(review, before, impact)
            if refusal is not None:
                return _outcome(deny(refusal), warnings=bounded_warnings(warnings))
        return _outcome(allow(warnings=bounded_warnings(warnings)))

    async def _impact(
        self, snapshot: Snapshot, before: BindingObject, lost: frozenset[str]
    ) -> _Impact:
        index = snapshot.impact
        if index is not None and index.fresh(self.clock(), snapshot.config.audit.interval):
            uses = {w: index.use(before.registry, before.space, w) for w in sorted(lost)}
            if all(use is not None for use in uses.values()):
                return _Impact(uses, f"as of the audit at {index.audited_at}")
        if self.probe is None:
            return _Impact(dict.fromkeys(sorted(lost)), "")
        if self._probing is None:
            self._probing = asyncio.Semaphore(1)
        deadline = self.monotonic() + self.budget
        try:
            async with asyncio.timeout(self.budget):
                async with self._probing:
                    found = await self.probe.impact(
                        snapshot, before.registry, before.space, lost, deadline
                    )
        except TimeoutError:
            return _Impact(dict.fromkeys(sorted(lost)), "")
        except Exception as exc:  # an apiserver refusing or gone: unknown, never a block
            _log.warning("binding review: the impact could not be computed: %s", exc)
            return _Impact(dict.fromkeys(sorted(lost)), "")
        return _Impact({w: found.get(w, WorkspaceUse(0)) for w in sorted(lost)}, "found just now")


def _read(obj: Mapping[str, Any] | None) -> BindingObject | None:
    return None if obj is None else read_binding_object(obj)


def _outcome(reply: Reply, *, warnings: tuple[str, ...] = ()) -> Outcome:
    if warnings:
        reply = reply._replace(warnings=warnings)
    result = "denied" if not reply.allowed else ("warned" if reply.warnings else "allowed")
    return Outcome(None, reply, EncodedReply(reply, mutating=False), result, 0)


def _needs_binding(snapshot: Snapshot, obj: BindingObject) -> bool:
    """Whether workspaces can lose anything: a private space of a platform Harbor."""
    state = snapshot.registries.get(obj.registry)
    return (
        state is not None
        and state.registry.type == "harbor"
        and state.registry.workspace is None
        and state.space_public(obj.space) is False
    )


def _about(
    snapshot: Snapshot, objects: Mapping[str, BindingObject], obj: BindingObject, *, created: bool
) -> list[str]:
    """Warnings about what the new object binds (or fails to); another object binding the
    same space is said when the object is created (registry and space never change)."""
    if not obj.valid:
        return [f"spacegate: {KIND} {obj.name} binds nothing: {obj.problem}"]
    state = snapshot.registries.get(obj.registry)
    if state is None:
        declared = ", ".join(sorted(r.name for r in snapshot.config.registries)) or "none"
        return [
            f"spacegate: registry {obj.registry!r} is not declared in spacegate's config "
            f"(declared: {declared}); {KIND} {obj.name} binds nothing until it is"
        ]
    out = []
    if state.synced and obj.space not in state.spaces:
        out.append(
            f"spacegate: the last listing of registry {obj.registry} has no space "
            f"{obj.space}; its images follow policy.unknownSpace "
            f"({snapshot.policy.unknown_space})"
        )
    others = sorted(
        o.name for o in objects.values() if o.name != obj.name and o.valid and o.key == obj.key
    )
    if others and created:
        union = bound_by_others(snapshot.config, objects, obj.name, obj.key) | set(obj.workspaces)
        out.append(
            f"spacegate: {KIND} {', '.join(others)} also bind{'s' if len(others) == 1 else ''} "
            f"space {obj.space} of {obj.registry}; the union applies (workspaces "
            f"{', '.join(sorted(union))})"
        )
    return out


def _what_if(review: ReviewRequest, obj: BindingObject) -> str:
    if review.operation == "DELETE":
        return f"spacegate audit --what-if-delete {obj.name}"
    return "spacegate audit --what-if <the new manifest>"


def _impact_warnings(
    review: ReviewRequest, obj: BindingObject, impact: _Impact, budget: float
) -> list[str]:
    where = f"space {obj.registry}/{obj.space}"
    verb = "deleting" if review.operation == "DELETE" else "this change to"
    lines: list[str] = []
    named = 0
    total = 0
    for workspace, use in impact.uses.items():
        if use is None:
            lines.append(
                f"spacegate: workspace {workspace} loses {where} ({verb} {KIND} {obj.name}); "
                "which running workloads use it is not known"
            )
            lines.append(
                f"spacegate: - no fresh audit, and listing them failed or took over {budget:g}s: "
                f"`{_what_if(review, obj)}` lists them"
            )
            continue
        if use.count == 0:
            continue
        plural = "s use" if use.count != 1 else " uses"
        lines.append(
            f"spacegate: workspace {workspace} loses {where} ({verb} {KIND} {obj.name}): "
            f"{use.count} running workload{plural} it, and their new Pods will be refused "
            f"({impact.source})"
        )
        for example in use.examples:
            if named < MAX_EXAMPLES:
                lines.append(f"spacegate: - {example}")
                named += 1
        total += use.count
    if total > named:
        lines.append(
            f"spacegate: - … and {total - named} more; `{_what_if(review, obj)}` lists them all"
        )
    return lines


def _unacknowledged(review: ReviewRequest, obj: BindingObject, impact: _Impact) -> str | None:
    """The denial when ``requireAcknowledgement`` is on and the removal is not acknowledged."""
    stranded = impact.stranded()
    if not stranded:
        return None
    source = review.old_object if review.operation == "DELETE" else review.object
    meta = (source or {}).get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    acknowledged: frozenset[str] | Literal["*"] = acknowledged_workspaces(
        annotations if isinstance(annotations, Mapping) else None
    )
    if acknowledged == "*":
        return None
    missing = sorted(set(stranded) - acknowledged)
    if not missing:
        return None
    count = sum(u.count for w, u in stranded.items() if u is not None and w in missing)
    known = f"{count} running workloads" if count else "running workloads"
    how = (
        f"kubectl annotate {KIND.lower()} {obj.name} {ACKNOWLEDGE_ANNOTATION}={','.join(missing)}"
        " first"
        if review.operation == "DELETE"
        else f'add the annotation {ACKNOWLEDGE_ANNOTATION}: "{",".join(missing)}" to the object'
    )
    return (
        f"{KIND} {obj.name}: workspaces {', '.join(missing)} would lose space "
        f"{obj.registry}/{obj.space} while {known} use it (their new Pods would be refused); "
        f"bindings.requireAcknowledgement is on in spacegate's config: {how} to go ahead"
    )
