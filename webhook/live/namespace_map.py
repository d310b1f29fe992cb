"""The namespace map: what live mode knows of each namespace's workspace and mode.

Decisions need a namespace's workspace label and mode override without calling the API
server on the admission path. The reflector (``webhook.live.sources.namespaces``) writes what
it lists and watches into a :class:`NamespaceMap`; the refresher (``webhook.live.refresher``)
reads it to build snapshots. The map is the one shared piece: written by the reflector's
thread, read from the event loop, so every access takes its lock, and readers get an
immutable copy that is rebuilt only after a change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from policy.config import MODE_LABEL, MODES
from policy.snapshot import NamespaceInfo
from webhook.live.synced_map import SyncedMap

log = logging.getLogger(__name__)


def namespace_info(
    labels: Mapping[str, str], workspace_label: str
) -> tuple[NamespaceInfo, str | None]:
    """What a namespace's labels say, and the invalid mode label value if there is one.

    An empty workspace label means no workspace (no binding can name the empty string). A
    mode label value outside ``enforce|warn|audit`` is ignored: the cluster default applies.
    """
    workspace = labels.get(workspace_label) or None
    raw_mode = labels.get(MODE_LABEL)
    if raw_mode is None:
        return NamespaceInfo(workspace=workspace), None
    if raw_mode in MODES:
        return NamespaceInfo(workspace=workspace, mode=raw_mode), None
    return NamespaceInfo(workspace=workspace), raw_mode


class NamespaceMap(SyncedMap[NamespaceInfo]):
    """``namespace -> NamespaceInfo`` for one workspace label, with its sync state.

    ``last_sync_time`` is read with the refresher's clock, so both must use the same one
    (``time.monotonic`` by default).
    """

    def __init__(
        self, workspace_label: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(clock=clock)
        self.workspace_label = workspace_label
        self._warned_modes: dict[str, str] = {}

    # ------------------------------------------------------------------ what readers see

    @property
    def namespaces(self) -> Mapping[str, NamespaceInfo]:
        """The current map: an immutable copy, rebuilt only after a change."""
        return self._current()

    # ------------------------------------------------------------------ what the reflector writes

    def replace(self, labels: Mapping[str, Mapping[str, str]]) -> bool:
        """A full list (name -> labels) replaces the map; True when the map changed."""
        fresh = {name: self._info(name, each) for name, each in labels.items()}
        with self._lock:
            changed = fresh != self._data
            if changed:
                self._data = fresh
                self._version += 1
            for name in set(self._warned_modes) - set(fresh):
                del self._warned_modes[name]
        self._listed()
        return changed

    def apply(self, name: str, labels: Mapping[str, str] | None) -> bool:
        """One namespace's new labels (None: deleted); True when the map changed.

        Label changes that touch neither the workspace nor the mode label change nothing.
        """
        info = None if labels is None else self._info(name, labels)
        with self._lock:
            if info is None:
                self._warned_modes.pop(name, None)
                if name not in self._data:
                    return False
                del self._data[name]
            else:
                if self._data.get(name) == info:
                    return False
                self._data[name] = info
            self._version += 1
            return True

    def _info(self, name: str, labels: Mapping[str, str]) -> NamespaceInfo:
        info, invalid_mode = namespace_info(labels, self.workspace_label)
        if invalid_mode is None:
            self._warned_modes.pop(name, None)
        elif self._warned_modes.get(name) != invalid_mode:
            self._warned_modes[name] = invalid_mode
            log.warning(
                "namespace %s: ignoring label %s=%r (expected one of: %s); "
                "the configured policy mode applies",
                name,
                MODE_LABEL,
                invalid_mode,
                ", ".join(MODES),
            )
        return info
