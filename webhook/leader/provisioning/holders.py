"""Which namespaces a robot's credential was given to: the record that turns a namespace
leaving its workspace into a rotation.

A pull Secret is readable by whoever may read Secrets in its namespace, so a namespace that
once held a workspace's robot credential may have kept a copy. Deleting its Secret when it
leaves the workspace (relabelled, exempted, deleted) does not revoke that copy; only
replacing the robot does. A deleted namespace leaves no Secret behind to notice, so the
namespaces are recorded with the credential itself, in spacegate's own namespace, before the
credential is written anywhere: a pass compares the record with the namespaces entitled now,
and any recorded namespace that is no longer entitled makes the workspace's robot rotate.

Bounded: the names are kept zlib-compressed up to :data:`MAX_RECORD` bytes (tens of
thousands of namespace names); beyond that only a SHA-256 of the sorted names is kept, and
then any change of the entitled namespaces counts as a departure (such a workspace's robot
rotates whenever its namespaces change). A record is read back with a bound on its inflated
size too, and one that cannot be read counts as no record (the robot rotates once).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MAX_RECORD", "Holders"]

MAX_RECORD = 256 * 1024  # bytes of the stored record (a Secret holds 1 MiB in all)
_MAX_INFLATED = 8 * 1024 * 1024  # what a stored record may inflate to when read back
_NAMES = b"zlib:"
_DIGEST = b"sha256:"
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _digest(names: frozenset[str]) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Holders:
    """The namespaces entitled to a credential whenever it was written, or only their digest
    (``names`` None) when there were too many to keep."""

    names: frozenset[str] | None
    digest: str

    @classmethod
    def of(cls, names: Iterable[str]) -> Holders:
        kept = frozenset(names)
        holders = cls(kept, _digest(kept))
        if len(holders.encode()) > MAX_RECORD:
            return cls(None, holders.digest)
        return holders

    def departed(self, entitled: frozenset[str]) -> frozenset[str] | None:
        """Recorded namespaces no longer ``entitled`` (empty: none left); None when only a
        digest is kept and the namespaces changed, so a departure cannot be ruled out."""
        if self.names is None:
            return frozenset() if _digest(entitled) == self.digest else None
        return self.names - entitled

    def extended(self, entitled: frozenset[str]) -> Holders | None:
        """The record after giving the credential to ``entitled`` as well: itself when it
        covers them already, None when it cannot say (a digest of other namespaces)."""
        if self.names is None:
            return self if _digest(entitled) == self.digest else None
        if entitled <= self.names:
            return self
        return Holders.of(self.names | entitled)

    def covers(self, namespace: str) -> bool:
        """Whether ``namespace`` is known to be in the record."""
        return self.names is not None and namespace in self.names

    def encode(self) -> bytes:
        if self.names is None:
            return _DIGEST + self.digest.encode()
        return _NAMES + zlib.compress("\n".join(sorted(self.names)).encode(), 9)

    @classmethod
    def decode(cls, raw: bytes) -> Holders | None:
        """The record ``encode`` wrote; None for anything else (no record)."""
        if raw.startswith(_DIGEST):
            digest = raw[len(_DIGEST) :].decode("ascii", "replace")
            return cls(None, digest) if re.fullmatch(r"[0-9a-f]{64}", digest) else None
        if not raw.startswith(_NAMES) or len(raw) > MAX_RECORD + len(_NAMES):
            return None
        inflate = zlib.decompressobj()
        try:
            text = inflate.decompress(raw[len(_NAMES) :], _MAX_INFLATED)
        except zlib.error:
            return None
        if inflate.unconsumed_tail or not inflate.eof:
            return None  # larger than any record spacegate writes, or cut short
        names = frozenset(text.decode("utf-8", "replace").split("\n")) - {""}
        if not all(_NAMESPACE.fullmatch(name) for name in names):
            return None
        return cls(names, _digest(names))
