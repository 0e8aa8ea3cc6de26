"""What a browser may send over ``/ws/farms/<id>/``, and how much of it.

Every frame ends in one of three ways (README, "Live protocol"): a
documented message (``{"type": "ping"}``, ``{"type": "snapshot"}``), ignored
(a JSON object whose string ``type`` we do not know: room for a newer page
talking to an older server), or a close with one of ``CLOSE_CODES``. A
dashboard sends a ping every half minute and a snapshot request after a gap,
never a stream, so anything else is a broken or hostile client.
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
CLOSE_MALFORMED = 1007  # text that is not a JSON object with a string "type"
CLOSE_POLICY = 1008  # a flood
CLOSE_TOO_BIG = 1009  # an oversized frame
CLOSE_INTERNAL = 1011  # our own bug: logged, groups left, timers stopped
CLOSE_SIGNED_OUT = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_CODES = frozenset(
    {CLOSE_UNSUPPORTED, CLOSE_MALFORMED, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_INTERNAL, CLOSE_SIGNED_OUT, CLOSE_FORBIDDEN}
)


class ClientMessage(StrEnum):
    PING = "ping"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True, slots=True)
class Close:
    """The socket is to be closed with ``code``."""

    code: int


@dataclass(frozen=True, slots=True)
class Ignore:
    """A well-formed message of a type this server does not know."""


IGNORE = Ignore()
Verdict = ClientMessage | Ignore | Close


def read_frame(text: str | None) -> Verdict:
    """What one frame means (``text`` is None for a binary frame); never raises, whatever it holds."""
    if text is None:
        return Close(CLOSE_UNSUPPORTED)
    if len(text) > MAX_FRAME_CHARS:
        return Close(CLOSE_TOO_BIG)
    return parse_client_message(text)


def parse_client_message(text: str) -> ClientMessage | Ignore | Close:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: "[[[[…" nests deeper than the interpreter's stack allows, well
        # within MAX_FRAME_CHARS; json reports it as neither a ValueError nor a bad document.
        return Close(CLOSE_MALFORMED)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return Close(CLOSE_MALFORMED)
    try:
        return ClientMessage(data["type"])
    except ValueError:
        return IGNORE


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
