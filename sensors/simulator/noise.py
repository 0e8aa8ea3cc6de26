"""Deterministic randomness: every "random" number is a hash of integers.

The signal models must be pure functions of (seed, time) so that a run can be
replayed and a test can ask "what was the soil moisture at 14:00 on day 3"
without simulating the days before. A counter-based hash gives that, where a
stateful ``random.Random`` would not.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_TWO_64 = float(1 << 64)
_TWO_21 = float(1 << 21)


def mix(*parts: int) -> int:
    """A well-spread 64-bit hash of integers: a multiplicative combine, then splitmix64's finaliser.

    Hot: the load generator calls it a few hundred thousand times a second.
    """
    h = _GOLDEN
    for part in parts:
        h = ((h ^ (part & _MASK64)) * 0xD1342543DE82EF95 + _GOLDEN) & _MASK64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
    return h ^ (h >> 31)


def uniform(*parts: int) -> float:
    """A number in [0, 1)."""
    return mix(*parts) / _TWO_64


def gaussian(*parts: int) -> float:
    """Roughly standard normal, bounded to ±3 (sum of three uniforms): no absurd outliers."""
    h = mix(*parts)
    a = (h & 0x1FFFFF) / _TWO_21
    b = ((h >> 21) & 0x1FFFFF) / _TWO_21
    c = ((h >> 42) & 0x1FFFFF) / _TWO_21
    return (a + b + c - 1.5) * 2.0


@lru_cache(maxsize=65_536)
def _lattice(seed: int, k: int) -> float:
    return uniform(seed, k) * 2.0 - 1.0


def smooth(seed: int, t: float, period: float) -> float:
    """Value noise in [-1, 1] that drifts smoothly over ``period`` seconds (cosine-interpolated)."""
    k = math.floor(t / period)
    f = t / period - k
    a = _lattice(seed, k)
    b = _lattice(seed, k + 1)
    w = (1.0 - math.cos(math.pi * f)) / 2.0
    return a + (b - a) * w


def seed_of(*texts: str | int) -> int:
    """A stable 64-bit seed from text (Python's ``hash()`` is salted per process)."""
    joined = "\x1f".join(str(text) for text in texts).encode()
    return int.from_bytes(hashlib.blake2b(joined, digest_size=8).digest(), "big")
