"""One backoff with jitter for everything that retries.

Registry requests retried after a 5xx (``webhook.clients.http``), a namespace watch
reconnecting (``webhook.live.sources.namespaces``) and a registry poller listing again after
a failure (``webhook.live.poller``) all wait ``initial * factor**attempt`` seconds, capped at
``maximum``, of which the ``jitter`` fraction is random: many webhook replicas that failed
together then do not come back in lockstep against the same Harbor or apiserver.
``jitter=0.5`` is the classic "equal jitter" (half fixed, half random); ``jitter=0`` makes
delays exact (tests).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential delays with a random part; ``attempt`` 0 is the first retry."""

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0 or self.factor < 1:
            raise ValueError("initial and maximum must not be negative, factor at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter is a fraction between 0 and 1")

    def ceiling(self, attempt: int) -> float:
        """The delay before jitter: ``initial * factor**attempt``, at most ``maximum``."""
        if attempt >= 64:  # factor**attempt would only overflow past the cap anyway
            return self.maximum
        return min(self.maximum, self.initial * self.factor ** max(0, attempt))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry ``attempt``: between (1 - jitter) and 1 x the ceiling."""
        ceiling = self.ceiling(attempt)
        fixed = ceiling * (1.0 - self.jitter)
        return fixed + rng.uniform(0.0, ceiling - fixed)
