"""What the namespace map and the binding map share: a name-keyed map one reflector writes.

A reflector's thread writes; the event loop reads. So every access takes the lock, readers
get an immutable copy that is rebuilt only after a change (a snapshot rebuild must not copy
10,000 namespaces when nothing moved), and the map knows whether a full list has arrived and
when it was last known to be in sync (readiness and staleness read both).
``webhook.live.namespace_map`` and ``webhook.live.binding_map`` add what their values are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Generic, TypeVar

__all__ = ["SyncedMap"]

V = TypeVar("V")


class SyncedMap(Generic[V]):
    """``name -> V`` with its sync state (``last_sync_time`` on ``clock``)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._data: dict[str, V] = {}
        self._version = 0
        self._published: Mapping[str, V] = MappingProxyType({})
        self._published_version = 0
        self._synced = threading.Event()
        self._last_sync_time: float | None = None

    def _current(self) -> Mapping[str, V]:
        """The current map: an immutable copy, rebuilt only after a change."""
        with self._lock:
            if self._published_version != self._version:
                self._published = MappingProxyType(dict(self._data))
                self._published_version = self._version
            return self._published

    @property
    def has_synced(self) -> bool:
        """A full list has arrived at least once (stays True while later failures are retried)."""
        return self._synced.is_set()

    @property
    def last_sync_time(self) -> float | None:
        """Clock time the map was last known to be in sync: a list completed, a watch opened,
        delivered an event or bookmark, or ended normally. None before the first list."""
        return self._last_sync_time

    def wait_synced(self, timeout: float) -> bool:
        """Block until the first full list; False when ``timeout`` passes first."""
        return self._synced.wait(timeout)

    def touch(self) -> None:
        """The reflector knows the map is in sync now (an event, a bookmark, a renewed watch)."""
        self._last_sync_time = self._clock()

    def _listed(self) -> None:
        """A full list (or an equally final answer) has been recorded."""
        self.touch()
        self._synced.set()
