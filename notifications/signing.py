"""The signed webhook's signature: HMAC-SHA256 over the timestamp and the exact body.

Header ``Furrow-Signature: t=<unix seconds>,v1=<hex digest>`` where the digest is
``HMAC-SHA256(secret, f"{t}.".encode() + body)``. Signing the timestamp with the body lets a
receiver reject a replay: a captured request re-sent later carries an old ``t`` that cannot be
changed without the secret. ``webhook_verify`` is what a receiver (and our tests) run.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Furrow-Signature"
TOLERANCE_SECONDS = 300


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_verify(*, secret: str, header: str, body: bytes, now: int, tolerance: int = TOLERANCE_SECONDS) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` seconds old."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, f"t={timestamp},v1={parts.get('v1', '')}")
