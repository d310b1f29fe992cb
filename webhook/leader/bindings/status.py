"""Writing RegistrySpaceBinding statuses: through the ``status`` subresource, only on change.

The leader computes every object's desired status from a snapshot
(``webhook.leader.bindings.conditions``) and :class:`StatusWriter` writes the ones that
differ from what the object holds now (its status as the binding reflector last read it,
carried in the snapshot), so a pass over 1,000 unchanged objects writes nothing. Each write
is a JSON merge patch of ``status`` carrying the object's ``resourceVersion``: a status
computed from an object that changed meanwhile is refused with 409 and recomputed from the
next snapshot, never written over a newer spec. Writes go to the ``status`` subresource, the
only thing spacegate's RBAC lets it change on these objects (and which no admission webhook
of spacegate's sees). A write is preceded by the Lease guard; calls block (run in a thread).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from policy.bindings import GROUP, PLURAL, VERSION
from policy.snapshot import Snapshot
from webhook.clients.errors import describe_api_error
from webhook.leader.bindings.conditions import DesiredStatus, stamped

log = logging.getLogger(__name__)

__all__ = ["StatusPass", "StatusWriter", "rfc3339"]

_CONFLICT = 409
_NOT_FOUND = 404


def rfc3339(now: float) -> str:
    """A Kubernetes timestamp (seconds, UTC) for Unix time ``now``."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class StatusPass:
    """What one pass did: object names by outcome."""

    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    stale: list[str] = field(default_factory=list)  # changed or gone meanwhile: next pass
    failed: list[str] = field(default_factory=list)


class StatusWriter:
    """Writes binding statuses through one API client (blocking), each write guarded."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        guard: Callable[[], None] = lambda: None,
        clock: Callable[[], float],
    ) -> None:
        self._api: Any = client.CustomObjectsApi(api)
        self.guard = guard
        self._clock = clock

    def write(self, snapshot: Snapshot, desired: Mapping[str, DesiredStatus]) -> StatusPass:
        """Write every object's status that differs from ``desired``."""
        result = StatusPass()
        now = rfc3339(self._clock())
        for name, obj in sorted((snapshot.binding_objects or {}).items()):
            wanted = desired.get(name)
            if wanted is None:
                continue
            needed, status = stamped(wanted, obj, now)
            if not needed:
                result.unchanged += 1
                continue
            self.guard()
            body = {"metadata": {"resourceVersion": obj.resource_version}, "status": status}
            try:
                self._api.patch_cluster_custom_object_status(
                    GROUP,
                    VERSION,
                    PLURAL,
                    name,
                    body,
                    _content_type="application/merge-patch+json",
                )
            except ApiException as exc:
                if exc.status in (_CONFLICT, _NOT_FOUND):
                    result.stale.append(name)
                    continue
                result.failed.append(name)
                log.warning(
                    "binding status: could not write RegistrySpaceBinding %s: %s",
                    name,
                    describe_api_error(exc),
                )
                continue
            result.written.append(name)
            ready = next((c for c in status["conditions"] if c["type"] == "Ready"), None)
            log.info(
                "binding status: RegistrySpaceBinding %s: Ready %s (%s)",
                name,
                ready["status"] if ready else "-",
                ready["reason"] if ready else "-",
            )
        return result
