"""The contract between whoever keeps the snapshot current and whoever reads it.

The admission endpoints only ever read ``state.snapshot`` (a plain attribute read, no lock,
no I/O); the refresher swaps it. Readiness is a separate question: a snapshot may be served
while stale (last-known-good), but ``/readyz`` says so. The leader's work reads the same
snapshot and is told when a new one is swapped in (:class:`SnapshotFeed`), so it need not
poll, and neither side imports the other.

Some of the snapshot is fed by watches (namespace labels, RegistrySpaceBinding objects),
and a broken watch misses changes silently. :class:`Freshness` is how admission, which must
not import the Kubernetes client, asks whether that part is current and waits for it
(``webhook.live.freshness`` implements it; ``docs/decisions.md`` says why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from policy.snapshot import Snapshot


class Freshness(Protocol):
    """Whether the watch-fed part of the snapshot is current, and a way to wait until it is."""

    def not_current(self) -> tuple[str, ...]:
        """Why each watch-fed source is not current now (empty: all are)."""
        ...

    async def wait_current(self, budget: float) -> tuple[str, ...]:
        """Wake the sources that are not current (the caller proves the apiserver is up),
        wait up to ``budget`` seconds for them, and make sure the snapshot holds what they
        caught up on; returns why each one still is not current (empty: all are)."""
        ...


class AlwaysCurrent:
    """No watch-fed state (static config, tests): always current."""

    def not_current(self) -> tuple[str, ...]:
        return ()

    async def wait_current(self, budget: float) -> tuple[str, ...]:
        return ()


ALWAYS_CURRENT = AlwaysCurrent()


class SnapshotState(Protocol):
    """Something that holds the current snapshot and knows whether it is fresh enough."""

    @property
    def freshness(self) -> Freshness:
        """Whether the watch-fed part of the snapshot is current (:class:`Freshness`)."""
        ...

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot decisions use now."""
        ...

    def readiness(self, *, staleness: bool = True) -> tuple[bool, str]:
        """(ready, human-readable reason) for ``/readyz``.

        ``staleness=False`` leaves out the ``maxStaleness`` check (``/readyz?exclude=
        staleness``): the data has been loaded once, however old it is now. Kubernetes
        readiness probes use that form, because stale data on every replica (a registry
        outage) must not empty the Service and lock the cluster behind a fail-closed webhook.
        """
        ...

    def age_seconds(self) -> float:
        """Seconds since the oldest piece of live data in the snapshot was fetched."""
        ...


class SnapshotFeed(Protocol):
    """The current snapshot, and a call each time a new one is swapped in."""

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot now."""
        ...

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every new snapshot; returns the function removing it.

        Listeners run on the thread that swapped the snapshot in (the event loop's, once
        the state runs), must be cheap, and must not raise.
        """
        ...


class StaticState:
    """A fixed snapshot (offline config, tests): always ready, never stale."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def replace(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    @property
    def freshness(self) -> Freshness:
        return ALWAYS_CURRENT

    def readiness(self, *, staleness: bool = True) -> tuple[bool, str]:
        return True, "static config"

    def age_seconds(self) -> float:
        return 0.0
