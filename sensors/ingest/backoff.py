"""Exponential backoff with jitter, for reconnecting to the broker and waiting out PostgreSQL."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with jitter: first, 2×first, … up to ``maximum`` seconds."""

    def __init__(self, first: float, maximum: float) -> None:
        self.first, self.maximum, self.attempt = first, maximum, 0

    def next(self) -> float:
        delay = min(self.first * 2**self.attempt, self.maximum)
        self.attempt += 1
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography

    def reset(self) -> None:
        self.attempt = 0
