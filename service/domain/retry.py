"""Retry timing shared by the worker's queues (Stripe events, DAWNS Digest changes, mail)."""
from __future__ import annotations

import random


def backoff_seconds(attempts: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Exponential backoff after `attempts` failed attempts (base, 2·base, 4·base … up to `cap`),
    with jitter so workers do not retry in lockstep; never sooner than `retry_after`."""
    delay = min(cap, base * 2 ** max(attempts - 1, 0))
    delay = random.uniform(delay / 2, delay)
    return max(delay, retry_after or 0.0)
