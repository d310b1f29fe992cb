"""Work on many items with a bounded window of them started at once.

A provisioning step (every robot, every credential, every Secret) has thousands of items.
Started all at once they would make ten thousand coroutines ready in one turn of the event
loop that also answers admission (a stall of seconds); one at a time, each waits a round
trip. :func:`each` keeps a window of them in flight; the pool or semaphore each item uses
bounds the actual calls further.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final, TypeVar

__all__ = ["WINDOW", "each"]

Item = TypeVar("Item")

# Items of one step started and not finished at most: a few times what the pool and Harbor
# take, so they never wait for work, and never ten thousand coroutines made ready in one turn
# of the event loop that answers admission (a stall of seconds at 10,000 Secrets).
WINDOW: Final = 64


async def each(
    work: Callable[[Item], Coroutine[Any, Any, None]], items: Iterable[Item], window: int = WINDOW
) -> None:
    """``work`` on every item, at most ``window`` at once (each further bounded by the pool
    or semaphore it uses); the first unexpected exception (a lost Lease) cancels the rest."""
    slots = asyncio.Semaphore(window)

    async def one(item: Item) -> None:
        try:
            await work(item)
        finally:
            slots.release()

    try:
        async with asyncio.TaskGroup() as group:
            for item in items:
                await slots.acquire()
                group.create_task(one(item))
    except ExceptionGroup as failed:  # the first one, as a sequential loop would raise it
        raise failed.exceptions[0] from None
