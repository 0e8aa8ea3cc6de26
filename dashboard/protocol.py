"""What a browser may send over ``/ws/farms/<id>/``, and how much of it.

Only ``{"type": "ping"}`` and ``{"type": "snapshot"}`` mean anything; other
frames are ignored. A frame over ``MAX_FRAME_CHARS`` (1009), a binary frame
(1003), or more than ``BURST`` messages faster than ``RATE_PER_SECOND`` (1008)
closes the socket: a dashboard sends a ping every half minute and a snapshot request
after a gap, never a stream.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import StrEnum

MAX_FRAME_CHARS = 1024
BURST = 20
RATE_PER_SECOND = 2.0

CLOSE_UNSUPPORTED = 1003  # a binary frame
CLOSE_POLICY = 1008  # a flood
CLOSE_TOO_BIG = 1009  # an oversized frame


class ClientMessage(StrEnum):
    PING = "ping"
    SNAPSHOT = "snapshot"


def parse_client_message(text: str) -> ClientMessage | None:
    """The documented message ``text`` is, or None for anything else."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("type")
    try:
        return ClientMessage(kind) if isinstance(kind, str) else None
    except ValueError:
        return None


@dataclass(slots=True)
class TokenBucket:
    """Allows ``burst`` messages at once, refilled at ``rate`` per second."""

    burst: float = BURST
    rate: float = RATE_PER_SECOND
    tokens: float = BURST
    updated: float = field(default_factory=time.monotonic)

    def allow(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
