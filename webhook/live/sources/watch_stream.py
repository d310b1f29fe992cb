"""What a reflector writes into and reads from: its mirror, and a watch stream's records.

Kept apart from the loop (``webhook.live.sources.reflector``) so that the loop's module says
only how a source stays current.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import urllib3

__all__ = ["Mirror", "lines", "resource_version_of"]


class Mirror(Protocol):
    """Where a reflector writes what it lists and watches (and the only writer)."""

    @property
    def has_synced(self) -> bool:
        """A full list (or the resource's absence) has been recorded at least once."""
        ...

    def replace_items(self, items: list[dict[str, Any]]) -> bool:
        """A full list replaces everything; True when anything the readers see changed."""
        ...

    def apply_event(self, kind: str, obj: dict[str, Any]) -> bool:
        """One ADDED, MODIFIED or DELETED object; True when the readers' view changed."""
        ...

    def touch(self) -> None:
        """The mirror is known to be in sync now (an event, a bookmark, a renewed watch)."""
        ...


def resource_version_of(obj: Any) -> str | None:
    rv = obj.get("metadata", {}).get("resourceVersion") if isinstance(obj, dict) else None
    return rv if isinstance(rv, str) and rv else None


def lines(response: urllib3.HTTPResponse) -> Iterator[bytes]:
    """Newline-delimited records of a chunked watch body, as they arrive."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=True):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        yield from (line for line in complete if line.strip())
    if buffer.strip():
        yield buffer
