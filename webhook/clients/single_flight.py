"""One fetch at a time per key, however many callers ask for it at once.

A cold cache in front of a slow backend (a registry listing, a TokenReview) must not turn a
burst of identical requests into a burst of identical backend calls: the first caller for a
key starts the work, every caller arriving while it runs awaits the same result (or the same
exception). The work runs in its own task, so a caller that gives up (a client hanging up)
does not cancel it for the others.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Coalesces concurrent calls per key into one running task."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[T]] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """The result of ``work()`` for ``key``: started now, or the one already running."""
        task = self._running.get(key)
        if task is None:

            async def call() -> T:
                return await work()

            task = asyncio.get_running_loop().create_task(call())
            self._running[key] = task
            task.add_done_callback(functools.partial(self._finished, key))
        # shield: one caller's cancellation must not cancel the fetch the others await.
        return await asyncio.shield(task)

    def _finished(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: every caller may have given up before it ended
