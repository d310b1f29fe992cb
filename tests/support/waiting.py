"""Waiting for a real system to settle, with a bound and a message that says what never came.

Controllers, watches and config reloads react within a second or two; the bound leaves room
for a loaded 2-core machine where the apiserver, etcd, spacegate and the tests share the CPU.
A timeout fails naming what was awaited, never silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

SETTLE_TIMEOUT = 60.0


def eventually(check: Callable[[], T | None], what: str, timeout: float = SETTLE_TIMEOUT) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (and the last
    falsy answer) otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what} (last: {result!r})"
            )
        time.sleep(0.2)
