"""The one backoff: exponential, capped, with the jitter fraction random."""

from __future__ import annotations

import random

import pytest

from webhook.clients.backoff import Backoff


def test_delays_double_up_to_the_maximum() -> None:
    backoff = Backoff(0.5, 4.0, jitter=0.0)
    assert [backoff.delay(n, random.Random(1)) for n in range(6)] == [0.5, 1, 2, 4, 4, 4]


def test_jitter_makes_that_fraction_of_each_delay_random() -> None:
    backoff = Backoff(1.0, 100.0, jitter=0.5)
    rng = random.Random(7)
    delays = [backoff.delay(3, rng) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 100  # replicas that failed together come back apart


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    assert Backoff(1.0, 30.0, jitter=0.0).delay(10_000, random.Random()) == 30.0


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        Backoff(1.0, 2.0, jitter=2.0)
    with pytest.raises(ValueError, match="factor"):
        Backoff(1.0, 2.0, factor=0.5)
