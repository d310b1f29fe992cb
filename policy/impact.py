"""What depends on a binding: running workloads admitted only because a space is bound.

Removing a workspace from a binding (or deleting the binding) lets every workload already
running keep running, but refuses the new Pods of those that use the space there. The
admission of RegistrySpaceBinding objects warns about them before it happens, and must do so
without waiting on the network. So the leader's background audit, which judges every running
workload anyway, also records which of them depend on which binding: the **impact index**,
``(registry, space) -> workspace -> count and a few names`` (:class:`ImpactIndex`). The leader
publishes it (a ConfigMap in spacegate's namespace, written once per audit pass) and every
replica reads it into its snapshot.

- :func:`bound_spaces` says which ``(registry, space)`` pairs one decision depends on a
  binding for: images allowed because their private space is bound to the workspace;
- :class:`IndexBuilder` counts them over a pass, keeping at most
  :data:`MAX_EXAMPLES` names per workspace and at most :data:`MAX_ENTRIES` entries (past
  that the index is marked incomplete, and a missing entry means "not known", not "none");
- :func:`index_document` / :func:`read_index` write and read it as plain data (JSON), the
  reading side bounded and lenient: a malformed index is no index; :func:`fitted` makes it
  fit a size (names go first, then entries).

Pure: times are RFC 3339 strings and Unix seconds given by the caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from policy.decision import Decision
from policy.snapshot import Snapshot

__all__ = [
    "INDEX_CONFIGMAP",
    "INDEX_KEY",
    "MAX_ENTRIES",
    "MAX_EXAMPLES",
    "ImpactIndex",
    "IndexBuilder",
    "WorkspaceUse",
    "bound_spaces",
    "fitted",
    "index_document",
    "read_index",
]

# Where the leader publishes the index: this ConfigMap in spacegate's own namespace, as JSON.
INDEX_CONFIGMAP: Final = "spacegate-binding-impact"
INDEX_KEY: Final = "index.json"
# Names kept per (registry, space, workspace): a warning names a handful and counts the rest.
MAX_EXAMPLES: Final = 5
# (registry, space, workspace) entries in one index: ~100 bytes each with their names, so the
# published ConfigMap stays far below the apiserver's object size limit.
MAX_ENTRIES: Final = 4_000
_MAX_NAME = 320  # namespace/Kind/name: 63 + 1 + 24 + 1 + 253, rounded up


@dataclass(frozen=True, slots=True)
class WorkspaceUse:
    """Running workloads of one workspace that use one bound space."""

    count: int
    examples: tuple[str, ...] = ()  # "namespace/Kind/name", at most MAX_EXAMPLES


@dataclass(frozen=True, slots=True)
class ImpactIndex:
    """The last audit pass's view of what depends on each binding.

    ``complete``: every entry the pass found is here, so a missing one means no workload.
    ``audited_at``: when the pass started (RFC 3339), ``audited_at_unix`` the same in Unix
    seconds, ``interval`` the pass interval then in force (for freshness).
    """

    audited_at: str
    audited_at_unix: float
    interval: float
    uses: Mapping[tuple[str, str], Mapping[str, WorkspaceUse]] = field(default_factory=dict)
    complete: bool = True

    def use(self, registry: str, space: str, workspace: str) -> WorkspaceUse | None:
        """The workloads of ``workspace`` using the space; None when the index cannot say
        (it was cut short); a count of 0 when it knows there are none."""
        found = self.uses.get((registry, space), {}).get(workspace)
        if found is not None:
            return found
        return WorkspaceUse(0) if self.complete else None

    def fresh(self, now: float, audit_interval: float) -> bool:
        """Young enough to stand for what runs now: within two audit intervals (and a
        minute of slack for a pass in progress)."""
        return 0 <= now - self.audited_at_unix <= 2 * max(audit_interval, self.interval) + 60


def bound_spaces(snapshot: Snapshot, decision: Decision) -> set[tuple[str, str]]:
    """``(registry, space)`` pairs whose images ``decision`` admits only because the space is
    bound to the namespace's workspace: private spaces of a platform Harbor."""
    workspace = decision.workspace
    if workspace is None:
        return set()
    out: set[tuple[str, str]] = set()
    for container in decision.containers:
        if container.refused or container.registry is None or container.space is None:
            continue
        state = snapshot.registries.get(container.registry)
        if state is None or state.registry.type != "harbor" or state.registry.workspace:
            continue
        if state.space_public(container.space) is not False:
            continue
        if workspace in snapshot.bound_workspaces(container.registry, container.space):
            out.add((container.registry, container.space))
    return out


@dataclass
class _Entry:
    count: int = 0
    examples: list[str] = field(default_factory=list)


class IndexBuilder:
    """Counts, over one audit pass, the workloads that depend on each binding."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._max_entries = max_entries
        self.complete = True

    def add(self, snapshot: Snapshot, decision: Decision, workload: str) -> None:
        """One judged workload (``namespace/Kind/name``)."""
        workspace = decision.workspace
        if workspace is None:
            return
        for registry, space in bound_spaces(snapshot, decision):
            key = (registry, space, workspace)
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= self._max_entries:
                    self.complete = False
                    continue
                entry = self._entries[key] = _Entry()
            entry.count += 1
            if len(entry.examples) < MAX_EXAMPLES:
                entry.examples.append(workload[:_MAX_NAME])

    def build(self, audited_at: str, audited_at_unix: float, interval: float) -> ImpactIndex:
        uses: dict[tuple[str, str], dict[str, WorkspaceUse]] = {}
        for (registry, space, workspace), entry in sorted(self._entries.items()):
            uses.setdefault((registry, space), {})[workspace] = WorkspaceUse(
                entry.count, tuple(sorted(entry.examples))
            )
        return ImpactIndex(audited_at, audited_at_unix, interval, uses, self.complete)


def index_document(index: ImpactIndex) -> dict[str, Any]:
    """The index as plain data (what the leader publishes as JSON)."""
    return {
        "auditedAt": index.audited_at,
        "auditedAtUnix": index.audited_at_unix,
        "interval": index.interval,
        "complete": index.complete,
        "uses": [
            {
                "registry": registry,
                "space": space,
                "workspace": workspace,
                "count": use.count,
                "examples": list(use.examples),
            }
            for (registry, space), workspaces in sorted(index.uses.items())
            for workspace, use in sorted(workspaces.items())
        ],
    }


def fitted(index: ImpactIndex, max_bytes: int) -> tuple[ImpactIndex, bytes]:
    """``index`` made to fit ``max_bytes`` of JSON, and that JSON: names are dropped first
    (two per workspace, then none), then entries (the index is then incomplete)."""
    for keep in (MAX_EXAMPLES, 2, 0):
        trimmed = _trimmed(index, keep)
        data = _dump(trimmed)
        if len(data) <= max_bytes:
            return trimmed, data
    entries = [
        (key, workspace, use)
        for key, workspaces in sorted(trimmed.uses.items())
        for workspace, use in sorted(workspaces.items())
    ]
    while entries:
        entries = entries[: len(entries) * 3 // 4]
        uses: dict[tuple[str, str], dict[str, WorkspaceUse]] = {}
        for key, workspace, use in entries:
            uses.setdefault(key, {})[workspace] = use
        cut = ImpactIndex(index.audited_at, index.audited_at_unix, index.interval, uses, False)
        data = _dump(cut)
        if len(data) <= max_bytes:
            return cut, data
    empty = ImpactIndex(index.audited_at, index.audited_at_unix, index.interval, {}, False)
    return empty, _dump(empty)


def _trimmed(index: ImpactIndex, keep: int) -> ImpactIndex:
    if keep >= MAX_EXAMPLES:
        return index
    uses = {
        key: {ws: WorkspaceUse(use.count, use.examples[:keep]) for ws, use in workspaces.items()}
        for key, workspaces in index.uses.items()
    }
    return ImpactIndex(
        index.audited_at, index.audited_at_unix, index.interval, uses, index.complete
    )


def _dump(index: ImpactIndex) -> bytes:
    return json.dumps(index_document(index), separators=(",", ":")).encode()


def _entries(value: object) -> Iterable[Mapping[str, Any]]:
    if not isinstance(value, list):
        return ()
    return (item for item in value[:MAX_ENTRIES] if isinstance(item, Mapping))


def read_index(document: object) -> ImpactIndex | None:
    """An index from plain data; None when it is not one (never raises)."""
    if not isinstance(document, Mapping):
        return None
    audited_at = document.get("auditedAt")
    unix = document.get("auditedAtUnix")
    interval = document.get("interval")
    if (
        not isinstance(audited_at, str)
        or isinstance(unix, bool)
        or not isinstance(unix, int | float)
        or isinstance(interval, bool)
        or not isinstance(interval, int | float)
    ):
        return None
    uses: dict[tuple[str, str], dict[str, WorkspaceUse]] = {}
    raw = document.get("uses")
    complete = document.get("complete") is True and (
        not isinstance(raw, list) or len(raw) <= MAX_ENTRIES
    )
    for item in _entries(raw):
        registry, space, workspace = item.get("registry"), item.get("space"), item.get("workspace")
        count = item.get("count")
        examples = item.get("examples")
        if not (
            isinstance(registry, str)
            and isinstance(space, str)
            and isinstance(workspace, str)
            and isinstance(count, int)
            and not isinstance(count, bool)
            and count >= 0
        ):
            complete = False
            continue
        names = tuple(
            str(e)[:_MAX_NAME]
            for e in (examples if isinstance(examples, list) else [])[:MAX_EXAMPLES]
        )
        uses.setdefault((registry, space), {})[workspace] = WorkspaceUse(count, names)
    return ImpactIndex(audited_at[:64], float(unix), float(interval), uses, complete)
