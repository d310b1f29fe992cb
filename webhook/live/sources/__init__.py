"""Live sources of registry spaces, namespace workspaces, binding objects and the impact index.

Each registry source lists the spaces of one registry (name -> public) on demand; the
refresher in ``webhook.live.refresher`` calls it on the registry's own interval and keeps the
last-known-good result when a call fails. Sources never run on the admission path.
"""

from __future__ import annotations

from typing import Protocol


class SpaceSource(Protocol):
    """Lists the spaces of one registry."""

    name: str  # the registry name from the config

    async def fetch(self) -> dict[str, bool]:
        """Space name -> public; raises :class:`~webhook.clients.errors.SourceError`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
