"""The binding map: the RegistrySpaceBinding objects live mode knows, by name.

The binding reflector (``webhook.live.sources.bindings``) writes what it lists and watches
into a :class:`BindingMap`; the refresher (``webhook.live.refresher``) reads it to build
snapshots, whose bindings are the config's and these objects' (``policy.bindings``). Like
the namespace map, it is written by the reflector's thread and read from the event loop, so
every access takes its lock, and readers get an immutable copy rebuilt only after a change.

Whether the CRD is served is part of what the map knows (:attr:`BindingMap.served`): with
``bindings.source`` unset, objects count only where it is, so "not served" is an answer
(the map is synced, and empty), not a failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from policy.bindings import BindingObject
from webhook.live.synced_map import SyncedMap

log = logging.getLogger(__name__)

__all__ = ["BindingMap"]


class BindingMap(SyncedMap[BindingObject]):
    """``name -> BindingObject`` with its sync state (``last_sync_time`` on ``clock``)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock=clock)
        self._served: bool | None = None
        self._reported: dict[str, str] = {}  # name -> problem already logged

    # ------------------------------------------------------------------ what readers see

    @property
    def objects(self) -> Mapping[str, BindingObject]:
        """The current objects: an immutable copy, rebuilt only after a change."""
        return self._current()

    @property
    def served(self) -> bool | None:
        """Whether the CRD was served at the last list (None: not asked yet)."""
        return self._served

    # ------------------------------------------------------------------ what the reflector writes

    def replace(self, objects: Mapping[str, BindingObject]) -> bool:
        """A full list replaces the map; True when what readers see changed."""
        fresh = dict(objects)
        with self._lock:
            changed = fresh != self._data or self._served is not True
            if changed:
                self._data = fresh
                self._version += 1
            self._served = True
            for name in set(self._reported) - set(fresh):
                del self._reported[name]
        for obj in fresh.values():
            self._report(obj)
        self._listed()
        return changed

    def apply(self, name: str, obj: BindingObject | None) -> bool:
        """One object's new state (None: deleted); True when the map changed."""
        with self._lock:
            if obj is None:
                self._reported.pop(name, None)
                if name not in self._data:
                    return False
                del self._data[name]
            else:
                if self._data.get(name) == obj:
                    return False
                self._data[name] = obj
            self._version += 1
        if obj is not None:
            self._report(obj)
        return True

    def mark_absent(self) -> bool:
        """The CRD is not served: no objects, and that is the answer (the map is synced)."""
        with self._lock:
            changed = bool(self._data) or self._served is not False
            if changed:
                self._data = {}
                self._version += 1
            self._served = False
            self._reported.clear()
        self._listed()
        return changed

    def _report(self, obj: BindingObject) -> None:
        """Log an unusable object once per distinct problem (its status says it too)."""
        if obj.problem is None:
            self._reported.pop(obj.name, None)
            return
        if self._reported.get(obj.name) == obj.problem:
            return
        self._reported[obj.name] = obj.problem
        log.warning("RegistrySpaceBinding %s binds nothing: %s", obj.name, obj.problem)
