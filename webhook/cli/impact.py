"""The on-the-spot impact of a binding change, for binding reviews without a fresh index.

``webhook.admission.bindings`` warns about a removal from the leader's impact index when it
is fresh; otherwise it asks an :class:`~webhook.admission.bindings.ImpactProbe`, and this
is the one ``spacegate serve`` injects in live mode: ``spacegate audit --what-if``'s logic
on a small scale. It lists the workloads and Pods of the namespaces of the workspaces that
would lose the space (namespace by namespace when they are few, else each kind once across
the cluster), judges them with the current snapshot (``webhook.leader.audit.findings``,
owners standing for what they own) and counts, per workspace, those admitted only because
the space is bound there (``policy.impact.bound_spaces``).

It runs only for binding reviews, in a worker thread, under the reviewer's deadline: every
request carries the time left as its timeout and the listing stops when the deadline passes
(``TimeoutError``). It lives in ``webhook.cli`` because it joins the leader's audit code to
the admission room, which may not import a network client itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from kubernetes import client

from policy.impact import MAX_EXAMPLES, WorkspaceUse, bound_spaces
from policy.snapshot import Snapshot
from webhook.clients.kube import load_api_client
from webhook.leader.audit.findings import audit, list_objects

__all__ = ["ClusterImpactProbe"]

# Up to this many namespaces are listed one by one (9 kinds each); more, and each kind is
# listed once across the cluster.
PER_NAMESPACE_MAX = 5


class ClusterImpactProbe:
    """Implements :class:`webhook.admission.bindings.ImpactProbe` against the cluster."""

    def __init__(
        self,
        api_client: Callable[[], client.ApiClient] = load_api_client,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = api_client
        self._api: client.ApiClient | None = None
        self._monotonic = monotonic

    async def impact(
        self,
        snapshot: Snapshot,
        registry: str,
        space: str,
        workspaces: frozenset[str],
        deadline: float,
    ) -> Mapping[str, WorkspaceUse]:
        return await asyncio.to_thread(
            self._compute, snapshot, registry, space, workspaces, deadline
        )

    def _compute(
        self,
        snapshot: Snapshot,
        registry: str,
        space: str,
        workspaces: frozenset[str],
        deadline: float,
    ) -> dict[str, WorkspaceUse]:
        if self._api is None:
            self._api = self._factory()
        exempt = snapshot.policy.exempt_namespaces
        namespaces = sorted(
            name
            for name, info in snapshot.namespaces.items()
            if info.workspace in workspaces and name not in exempt
        )
        if not namespaces:
            return {}
        scopes: list[str | None] = (
            list(namespaces) if len(namespaces) <= PER_NAMESPACE_MAX else [None]
        )
        wanted = set(namespaces)
        counts: dict[str, int] = {}
        examples: dict[str, list[str]] = {}
        for scope in scopes:
            left = deadline - self._monotonic()
            if left <= 0:
                raise TimeoutError("the impact was not computed in time")
            objects = list_objects(self._api, scope, timeout=left)
            for finding in audit(snapshot, objects):
                if self._monotonic() > deadline:
                    raise TimeoutError("the impact was not computed in time")
                decision = finding.decision
                resource = finding.resource
                if decision is None or resource.namespace not in wanted:
                    continue
                workspace = decision.workspace
                if workspace is None or (registry, space) not in bound_spaces(snapshot, decision):
                    continue
                counts[workspace] = counts.get(workspace, 0) + 1
                names = examples.setdefault(workspace, [])
                if len(names) < MAX_EXAMPLES:
                    names.append(f"{resource.namespace}/{resource.kind}/{resource.name}")
        return {
            workspace: WorkspaceUse(count, tuple(sorted(examples.get(workspace, ()))))
            for workspace, count in counts.items()
        }
