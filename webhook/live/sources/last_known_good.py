"""Reading the cluster's last-known-good copy of the registries' spaces, while it is needed.

The leader keeps the spaces it listed in one Secret in spacegate's namespace
(``policy.last_known_good``). A replica reads it only while a Harbor it gates readiness on
has no listing of its own (it started while the registry was unreachable): then every
:data:`REFETCH_SECONDS` it reads the Secret again (the leader may have listed meanwhile) and
offers it to the refresher every :data:`OFFER_SECONDS`, which lets it stand in once the
registry's first listing failed or is slow (``Refresher.adopt``). Once every such registry
has been listed by the replica itself, nothing is read any more.

The copy is advisory: a missing Secret (no leader has written it yet), one spacegate may not
read (RBAC), or a malformed one is no copy, and the replica waits for its own listing as
before. The call blocks (the official client); it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from kubernetes import client as k8s_client

from policy.last_known_good import DATA_KEY, SECRET_NAME, Copy, decode
from webhook.clients.errors import describe_api_error
from webhook.clients.kube_paging import get

log = logging.getLogger(__name__)

__all__ = ["OFFER_SECONDS", "REFETCH_SECONDS", "CopyConsumer", "CopyReader"]

# How often the Secret is read again while a registry still needs it.
REFETCH_SECONDS = 10.0
# How often the copy read is offered to the refresher while a registry needs it.
OFFER_SECONDS = 1.0
# One read may take this long (connect and each read).
READ_TIMEOUT = 10.0


class CopyConsumer(Protocol):
    """Who takes the copy (``webhook.live.refresher.Refresher``)."""

    def needs_copy(self) -> bool: ...

    def adopt(self, copy: Copy, now: float) -> bool: ...


class CopyReader:
    """Offers the cluster's copy (Secret :data:`SECRET_NAME` in ``namespace``) to
    ``refresher`` while it needs one. Use :meth:`run` as a task."""

    def __init__(
        self,
        refresher: CopyConsumer,
        namespace: str,
        api_client: k8s_client.ApiClient,
        *,
        refetch: float = REFETCH_SECONDS,
        offer: float = OFFER_SECONDS,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._refresher = refresher
        self.namespace = namespace
        self._api = api_client
        self._refetch = refetch
        self._offer = offer
        self._wall = wall
        self._reported: str | None = None

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{SECRET_NAME}"

    async def run(self) -> None:
        """Until cancelled: read and offer the copy whenever a registry needs one."""
        copy: Copy | None = None
        fetched_at: float | None = None
        while True:
            if not self._refresher.needs_copy():
                copy, fetched_at = None, None
                await asyncio.sleep(self._refetch)
                continue
            now = time.monotonic()
            if fetched_at is None or now - fetched_at >= self._refetch:
                copy = await asyncio.to_thread(self.read)
                fetched_at = time.monotonic()
            if copy is not None:
                self._refresher.adopt(copy, self._wall())
            await asyncio.sleep(self._offer)

    def read(self) -> Copy | None:
        """The copy as the Secret holds it now; None when there is none to use (logged once
        per kind of answer)."""
        try:
            status, body = get(self._api, self.path, timeout=READ_TIMEOUT)
        except Exception as exc:  # the apiserver unreachable: no copy this time
            self._report("failed", f"cannot read it: {describe_api_error(exc)}")
            return None
        if status == 404:
            self._report("absent", "it has not been written yet (no leader has listed)")
            return None
        if status == 403:
            self._report("forbidden", "spacegate may not read it (RBAC)")
            return None
        if status != 200:
            self._report(f"status {status}", f"the apiserver answered {status}")
            return None
        copy = _copy_of(body)
        if copy is None:
            self._report("malformed", "it holds no readable copy")
            return None
        self._reported = None
        return copy

    def _report(self, kind: str, why: str) -> None:
        if self._reported == kind:
            return
        self._reported = kind
        log.warning(
            "last-known-good copy %s/%s: %s; a registry this replica has not listed stays "
            "unknown until it answers",
            self.namespace,
            SECRET_NAME,
            why,
        )


def _copy_of(body: bytes) -> Copy | None:
    """The copy in a Secret's JSON (``data`` holds it base64-encoded)."""
    try:
        secret: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    data = secret.get("data") if isinstance(secret, dict) else None
    value = data.get(DATA_KEY) if isinstance(data, dict) else None
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decode(raw)
