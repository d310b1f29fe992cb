"""Every space a namespace (or the namespaces of a workspace) may use, and why.

``spacegate images`` lists them, and the tests hold provisioning's robots to them. Each space is
judged by :func:`policy.rules.space_verdict`, the rule admission decides with, so this list
cannot disagree with ``decide``.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.hosts import kubelet_uses_key
from policy.rules import space_verdict
from policy.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class VisibleSpace:
    """A space a namespace may use (``spacegate images``), and why."""

    registry: str
    host: str  # the spelling images should use: one the pull secret's keys match
    space: str  # "*" for a Docker Registry whose catalog is not known
    public: bool
    rule: str  # the ImageVerdict rule that allows it
    workspace: str | None  # the registry's workspace, for a workspace-integrated one
    needs_secret: bool

    def why(self, workspace: str | None) -> str:
        """Why a namespace of ``workspace`` may use it, as the rule that allows it reads."""
        if self.workspace is not None:
            return f"integrated by workspace {self.workspace}"
        return {
            "docker-registry": "platform Docker Registry: all public",
            "public": "public space",
        }.get(self.rule, f"bound to workspace {workspace}")


def visible_spaces(snapshot: Snapshot, namespace: str) -> list[VisibleSpace]:
    """Every space a namespace may use, registry by registry, by the rules of ``decide``."""
    return workspace_spaces(snapshot, snapshot.namespace(namespace).workspace)


def workspace_spaces(snapshot: Snapshot, workspace: str | None) -> list[VisibleSpace]:
    """Every space the namespaces of ``workspace`` (None: of no workspace) may use."""
    out: list[VisibleSpace] = []
    for state in snapshot.registries.values():
        registry = state.registry
        host = next(
            (h for h in registry.hosts if kubelet_uses_key(registry.hosts, h)), registry.hosts[0]
        )
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
                        host,
                        space,
                        public,
                        verdict.rule,
                        registry.workspace,
                        verdict.needs_secret,
                    )
                )
    return out
