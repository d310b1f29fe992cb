"""The last-known-good copy: the registries' spaces as the leader last listed them, kept in
the cluster for replicas that start while a registry is down.

A replica decides with the spaces it listed itself; when it has never listed a Harbor (it
started during an outage) it has no spaces for it and, with ``unknownSpace: deny``, would
refuse every image of that Harbor. So the leader writes what it listed into one Secret in
spacegate's namespace (:data:`SECRET_NAME`), and a starting replica that cannot list a
registry serves from that copy, marked stale, until its own listing succeeds. A replica
never prefers the copy over its own data.

What the copy holds is exactly what decisions need beyond the config file and the
apiserver: per listed Harbor, its spaces and whether each is public, with the registry's
type and URL so that a copy is only ever used for the same server. Namespaces and binding
objects come from the apiserver, every replica reads those itself; a Docker Registry's
catalog changes no decision (all its spaces are public) and is left out.

The copy is JSON compressed with zlib (:func:`encode`), bounded in both directions: written
only when it fits :data:`MAX_COMPRESSED_BYTES` (10,000 spaces take tens of KiB; a Secret
holds 1 MiB), read only up to :data:`MAX_JSON_BYTES` once inflated and
:data:`MAX_SPACES` spaces (:func:`decode`, which answers None for anything malformed: a
bad copy is no copy).

Pure: times are Unix seconds given by the caller.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from policy.config import Config, Registry
from policy.snapshot import Snapshot

__all__ = [
    "DATA_KEY",
    "FORMAT",
    "MAX_COMPRESSED_BYTES",
    "MAX_JSON_BYTES",
    "MAX_SPACES",
    "SECRET_NAME",
    "Copy",
    "CopyTooLarge",
    "RegistryCopy",
    "decode",
    "encode",
    "merged",
    "own_listings",
    "persisted_registries",
]

# The Secret in spacegate's namespace that holds the copy, and its data key.
SECRET_NAME: Final = "spacegate-last-known-good"  # noqa: S105 - a Secret name
DATA_KEY: Final = "spaces.json.zlib"
FORMAT: Final = 1
# What a written copy may take, compressed (the Secret's data is base64 of it: 4/3 more,
# within the apiserver's 1 MiB for a Secret).
MAX_COMPRESSED_BYTES: Final = 512 * 1024
# What a read copy may inflate to, and how many spaces it may hold in all.
MAX_JSON_BYTES: Final = 16 * 1024 * 1024
MAX_SPACES: Final = 200_000
_MAX_NAME = 255  # a Harbor project name


class CopyTooLarge(ValueError):
    """The copy does not fit :data:`MAX_COMPRESSED_BYTES` once compressed."""


@dataclass(frozen=True, slots=True)
class RegistryCopy:
    """One registry's spaces as listed, and which server they are from."""

    type: str
    url: str
    spaces: Mapping[str, bool] = field(default_factory=dict)  # name -> public

    def fits(self, registry: Registry) -> bool:
        """Whether these spaces are ``registry``'s: the same type and URL (a copy of another
        server's spaces, after a config change, is no copy)."""
        return self.type == registry.type and self.url == registry.url


@dataclass(frozen=True, slots=True)
class Copy:
    """The copy as written: the registries by name, and when it was written (Unix seconds)."""

    registries: Mapping[str, RegistryCopy]
    written_at: float = 0.0


def persisted_registries(config: Config) -> tuple[Registry, ...]:
    """The registries the copy is for: every Harbor whose spaces are listed live."""
    return tuple(r for r in config.registries if r.type == "harbor" and r.spaces is None)


def own_listings(snapshot: Snapshot) -> dict[str, RegistryCopy]:
    """What ``snapshot`` holds of the registries the copy is for from this replica's own
    listings (never what it took from a copy itself)."""
    out: dict[str, RegistryCopy] = {}
    for registry in persisted_registries(snapshot.config):
        state = snapshot.registries.get(registry.name)
        if state is None or not state.synced or state.copied:
            continue
        out[registry.name] = RegistryCopy(registry.type, registry.url, dict(state.spaces))
    return out


def merged(
    config: Config, own: Mapping[str, RegistryCopy], current: Copy | None
) -> dict[str, RegistryCopy]:
    """The registries the next copy holds: this replica's own listings, and for a registry it
    has not listed itself, what the current copy holds of that same server; nothing of a
    registry the config no longer lists that way."""
    out: dict[str, RegistryCopy] = {}
    for registry in persisted_registries(config):
        mine = own.get(registry.name)
        if mine is not None:
            out[registry.name] = mine
            continue
        kept = None if current is None else current.registries.get(registry.name)
        if kept is not None and kept.fits(registry):
            out[registry.name] = kept
    return out


def encode(copy: Copy, *, max_bytes: int = MAX_COMPRESSED_BYTES) -> bytes:
    """The copy as zlib-compressed JSON (keys sorted: the same copy, the same bytes);
    :class:`CopyTooLarge` past ``max_bytes``."""
    document = {
        "format": FORMAT,
        "writtenAt": copy.written_at,
        "registries": {
            name: {"type": entry.type, "url": entry.url, "spaces": dict(entry.spaces)}
            for name, entry in copy.registries.items()
        },
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    data = zlib.compress(text, 9)
    if len(data) > max_bytes:
        spaces = sum(len(e.spaces) for e in copy.registries.values())
        raise CopyTooLarge(
            f"the last-known-good copy of {spaces} spaces takes {len(data)} bytes compressed, "
            f"more than {max_bytes}"
        )
    return data


def decode(data: bytes) -> Copy | None:
    """The copy ``data`` holds; None when it is not one (malformed, of another format, or
    past the bounds). Entries that are not well-formed are left out."""
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(data, MAX_JSON_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            return None  # larger than the bound, or cut short
        document = json.loads(text)
    except (zlib.error, ValueError):
        return None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return None
    written = document.get("writtenAt")
    registries = document.get("registries")
    if not isinstance(written, int | float) or not isinstance(registries, dict):
        return None
    out: dict[str, RegistryCopy] = {}
    budget = MAX_SPACES
    for name, entry in registries.items():
        read = _registry(entry, budget)
        if read is None:
            continue
        budget -= len(read.spaces)
        out[str(name)] = read
    return Copy(out, float(written))


def _registry(entry: Any, budget: int) -> RegistryCopy | None:
    if not isinstance(entry, dict):
        return None
    kind, url, spaces = entry.get("type"), entry.get("url"), entry.get("spaces")
    if not (isinstance(kind, str) and isinstance(url, str) and isinstance(spaces, dict)):
        return None
    if len(spaces) > budget:
        return None
    kept = {
        name: public
        for name, public in spaces.items()
        if isinstance(public, bool) and 0 < len(name) <= _MAX_NAME
    }
    return RegistryCopy(kind, url, kept)
