"""One writer: a ``coordination.k8s.io/v1`` Lease decides which replica provisions.

Every replica serves admission; only the holder of the Lease in spacegate's own namespace
writes robots and Secrets (``webhook.leader.provisioning.writer``). The protocol is client-go's:

- a candidate reads the Lease; it takes it when it is absent, when it holds it already, or
  when the holder has not renewed it for ``lease_duration`` seconds (``leaseTransitions``
  counts the takeovers); writes carry the read ``resourceVersion``, so two candidates racing
  for an expired Lease cannot both win (the loser gets a 409);
- the leader renews every ``retry_period`` seconds, and counts as leader only while its last
  successful renewal is younger than ``renew_deadline`` (< ``lease_duration``): a leader cut
  off from the apiserver stops writing before anyone else may take over;
- a leader that stops releases the Lease (holder cleared, duration 1 s), so a restarted pod's
  successor does not wait a whole ``lease_duration``.

The official client's ``leaderelection`` module builds its API objects from the global
default configuration and calls ``sys.exit`` on bad settings, so this small loop is our own.
The Kubernetes calls are blocking; they run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook.clients.errors import describe_api_error

log = logging.getLogger(__name__)

DEFAULT_LEASE_NAME = "spacegate-provisioner"


class LostLeadership(RuntimeError):
    """This replica is not (or no longer) the leader: it must stop writing at once."""


def default_identity() -> str:
    """The pod name (hostname) and a random suffix: unique even across restarts."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{uuid.uuid4().hex[:6]}"


class LeaseElector:
    """Campaigns for, holds and releases one Lease; :attr:`is_leader` says where it stands."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        *,
        name: str = DEFAULT_LEASE_NAME,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("expected retry_period < renew_deadline < lease_duration")
        self._api: Any = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self._renewed_at: float | None = None  # our clock, at our last successful write
        self.holder: str | None = None  # who held the Lease when we last read it
        self.transitions = 0
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ where we stand

    @property
    def is_leader(self) -> bool:
        """We renewed the Lease less than ``renew_deadline`` seconds ago."""
        renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.renew_deadline

    def lapses_in(self) -> float:
        """Seconds until :attr:`is_leader` turns false unless the Lease is renewed first
        (0 when not the leader): how long work may go on without hearing from the elector."""
        renewed = self._renewed_at
        if renewed is None:
            return 0.0
        return max(0.0, renewed + self.renew_deadline - self._clock())

    def check(self) -> None:
        """Raise :class:`LostLeadership` unless we lead: the guard before every write."""
        if not self.is_leader:
            raise LostLeadership(
                f"not the leader of Lease {self.namespace}/{self.name}"
                + (f" (held by {self.holder})" if self.holder else "")
            )

    async def wait_changed(self) -> None:
        """Return when leadership was gained or lost (as seen by :meth:`run`; a change
        since the last call returns at once). One waiter at a time: the leader's loop."""
        await self._changed.wait()
        self._changed.clear()

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Campaign and renew until cancelled; release the Lease when cancelled as leader."""
        # A change is one against what was last reported, or against the state just before
        # this round: a leadership that lapsed by time between rounds is lost (reported now
        # even when this round fails too) or regained (this round renewed it), and whoever
        # waits in wait_changed may have seen the lapse.
        reported = False
        try:
            while True:
                was = self.is_leader
                try:
                    await asyncio.to_thread(self.try_acquire_or_renew)
                except Exception as exc:  # the apiserver is unreachable: keep trying
                    log.warning(
                        "lease %s/%s: %s", self.namespace, self.name, describe_api_error(exc)
                    )
                now = self.is_leader
                if now != was:
                    self._changed.set()
                if now != reported:
                    reported = now
                    self._changed.set()
                    log.info(
                        "lease %s/%s: %s",
                        self.namespace,
                        self.name,
                        "became the leader" if now else f"lost leadership to {self.holder}",
                        extra={"fields": {"identity": self.identity, "leader": now}},
                    )
                await asyncio.sleep(self.retry_period)
        finally:
            if self._renewed_at is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.release)

    def try_acquire_or_renew(self) -> bool:
        """One round: take or renew the Lease if we may; True when we hold it now."""
        now = self._clock()
        stamp = micro_time(now)
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=client.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=int(self.lease_duration),
                    acquire_time=stamp,
                    renew_time=stamp,
                    lease_transitions=0,
                ),
            )
            return self._write(lambda: self._api.create_namespaced_lease(self.namespace, body), now)
        spec = lease.spec
        holder = spec.holder_identity or None
        self.holder = holder
        self.transitions = spec.lease_transitions or 0
        renewed = spec.renew_time.timestamp() if spec.renew_time else 0.0
        duration = spec.lease_duration_seconds or self.lease_duration
        expired = holder is None or renewed + duration < now
        if holder != self.identity and not expired:
            self._renewed_at = None
            return False
        if holder != self.identity:
            spec.acquire_time = stamp
            spec.lease_transitions = self.transitions + 1
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = int(self.lease_duration)
        spec.renew_time = stamp
        return self._write(
            lambda: self._api.replace_namespaced_lease(self.name, self.namespace, lease), now
        )

    def _write(self, call: Callable[[], Any], now: float) -> bool:
        try:
            call()
        except ApiException as exc:
            if exc.status == 409:  # another candidate won the race
                self._renewed_at = None
                return False
            raise
        self._renewed_at = now
        self.holder = self.identity
        return True

    def release(self) -> None:
        """Give the Lease up (holder cleared, 1 s duration) if we still hold it."""
        self._renewed_at = None
        lease = self._api.read_namespaced_lease(self.name, self.namespace)
        if lease.spec.holder_identity != self.identity:
            return
        lease.spec.holder_identity = None
        lease.spec.lease_duration_seconds = 1
        self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        log.info("lease %s/%s: released", self.namespace, self.name)


def micro_time(seconds: float) -> datetime:
    """A UTC time the apiserver accepts as a ``MicroTime``.

    The client writes datetimes with ``isoformat()``, which leaves the fraction out when the
    microseconds are zero, and the apiserver then refuses the Lease ("cannot parse ... as
    .000000"); one microsecond more is always written with its fraction.
    """
    stamp = datetime.fromtimestamp(seconds, UTC)
    return stamp if stamp.microsecond else stamp.replace(microsecond=1)
