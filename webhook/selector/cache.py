"""Registry listings kept for a while, fetched once however many ask, served stale in an outage.

A page of the selector must not cost a registry round trip per user: listings are cached per
key (a space's repositories, a repository's tags) for ``ttl`` seconds in a ``cachetools``
TTL cache, bounded in entries *and* in bytes (an estimate of each listing's size), so no
registry, however large, can make the selector grow without bound. While a key is being
fetched, every other request for it awaits that fetch
(:class:`~webhook.clients.single_flight.SingleFlight`). When a fetch fails, the last answer
that key had (kept, bounded the same way, after its TTL ran out) is served marked stale with
its age; only a key never fetched before fails.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import LRUCache, TTLCache

from webhook.clients.errors import SourceError
from webhook.clients.single_flight import SingleFlight

__all__ = ["Cached", "ListingCache"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    value: T
    fetched: float  # clock time of the fetch
    size: int


@dataclass(frozen=True, slots=True)
class Cached(Generic[T]):
    """A listing as served: the value, its age, and whether it is a stale fallback."""

    value: T
    age: float
    stale: bool = False
    error: str = ""  # why it is stale


def _size(entry: _Entry[T]) -> int:
    return entry.size


class ListingCache(Generic[T]):
    """Listings by key, fresh for ``ttl`` seconds, the last one kept for outages.

    ``sizeof`` estimates a value's bytes; ``max_bytes`` and ``max_entries`` bound each of the
    two stores (fresh and last-known-good share the values, so memory is bounded by one).
    """

    def __init__(
        self,
        *,
        ttl: float,
        sizeof: Callable[[T], int],
        max_entries: int = 1024,
        max_bytes: int = 32 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sizeof = sizeof
        self._clock = clock
        self.max_entries = max_entries
        self._fresh: TTLCache[Hashable, _Entry[T]] = TTLCache(
            max_bytes, ttl, timer=clock, getsizeof=_size
        )
        self._last: LRUCache[Hashable, _Entry[T]] = LRUCache(max_bytes, getsizeof=_size)
        self._flight: SingleFlight[_Entry[T]] = SingleFlight()

    def peek(self, key: Hashable) -> Cached[T] | None:
        """The fresh listing of ``key``, without fetching."""
        entry = self._fresh.get(key)
        if entry is None:
            return None
        return Cached(entry.value, self._clock() - entry.fetched)

    def last(self, key: Hashable, error: str) -> Cached[T] | None:
        """The last listing ``key`` had, marked stale with ``error``; None if never fetched."""
        entry = self._last.get(key)
        if entry is None:
            return None
        return Cached(entry.value, self._clock() - entry.fetched, stale=True, error=error)

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> Cached[T]:
        """The listing of ``key``: fresh from the cache, fetched (once for all callers), or,
        when the fetch fails with a :class:`SourceError`, the last one marked stale."""
        hit = self.peek(key)
        if hit is not None:
            return hit
        try:
            entry = await self._flight.run(key, lambda: self._load(key, fetch))
        except SourceError as exc:
            fallback = self.last(key, str(exc))
            if fallback is None:
                raise
            return fallback
        return Cached(entry.value, self._clock() - entry.fetched)

    async def _load(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> _Entry[T]:
        value = await fetch()
        entry = _Entry(value, self._clock(), max(1, self._sizeof(value)))
        for store in (self._fresh, self._last):
            try:
                store[key] = entry
            except ValueError:  # larger than the whole cache: served, not kept
                continue
            while len(store) > self.max_entries:
                store.popitem()
        return entry
