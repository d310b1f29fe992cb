"""Listings cached with a TTL, fetched once per key, bounded, and served stale in an outage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from webhook.clients.errors import SourceError
from webhook.selector.cache import ListingCache


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_fresh_listing_is_served_without_fetching_again_until_its_ttl() -> None:
    clock = Clock()
    cache: ListingCache[str] = ListingCache(ttl=60, sizeof=len, clock=clock)
    calls = []

    async def fetch() -> str:
        calls.append(1)
        return f"v{len(calls)}"

    async def scenario() -> None:
        assert (await cache.get("k", fetch)).value == "v1"
        clock.now += 59
        hit = await cache.get("k", fetch)
        assert hit.value == "v1" and hit.age == 59 and not hit.stale
        clock.now += 2
        assert (await cache.get("k", fetch)).value == "v2"

    asyncio.run(scenario())
    assert len(calls) == 2


def test_many_callers_share_one_fetch() -> None:
    cache: ListingCache[str] = ListingCache(ttl=60, sizeof=len)
    fetches = []

    async def slow() -> str:
        fetches.append(1)
        await asyncio.sleep(0.05)
        return "v"

    async def scenario() -> None:
        answers = await asyncio.gather(*(cache.get("k", slow) for _ in range(50)))
        assert {a.value for a in answers} == {"v"}

    asyncio.run(scenario())
    assert len(fetches) == 1


def test_an_outage_serves_the_last_answer_marked_stale_with_its_age() -> None:
    clock = Clock()
    cache: ListingCache[str] = ListingCache(ttl=60, sizeof=len, clock=clock)

    async def good() -> str:
        return "v1"

    async def down() -> str:
        raise SourceError("harbor 'main': connection failed")

    async def scenario() -> None:
        await cache.get("k", good)
        clock.now += 300
        served = await cache.get("k", down)
        assert served.value == "v1" and served.stale and served.age == 300
        assert "connection failed" in served.error
        with pytest.raises(SourceError):
            await cache.get("never-fetched", down)

    asyncio.run(scenario())


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    cache: ListingCache[str] = ListingCache(ttl=60, sizeof=len, max_entries=10, max_bytes=1000)

    async def scenario() -> None:
        for n in range(100):
            await cache.get(n, _constant("x" * 50))
        await cache.get("huge", _constant("y" * 5000))  # larger than the cache: not kept

    asyncio.run(scenario())
    assert len(cache._fresh) <= 10 and cache._fresh.currsize <= 1000
    assert len(cache._last) <= 10 and cache._last.currsize <= 1000
    assert cache.peek("huge") is None


def _constant(value: str) -> Callable[[], Awaitable[str]]:
    async def fetch() -> str:
        return value

    return fetch
