"""What a browser may send, parsed and rate-limited without a socket."""

from __future__ import annotations

import pytest

from dashboard.protocol import BURST, ClientMessage, TokenBucket, parse_client_message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "ping"}', ClientMessage.PING),
        ('{"type": "snapshot"}', ClientMessage.SNAPSHOT),
        ('{"type": "snapshot", "extra": 1}', ClientMessage.SNAPSHOT),
        ('{"type": "subscribe"}', None),
        ('{"type": ["ping"]}', None),
        ('"ping"', None),
        ("[]", None),
        ("{", None),
        ("NaN", None),
    ],
)
def test_it_recognises_only_documented_messages(text, expected):
    assert parse_client_message(text) is expected


def test_the_bucket_allows_a_burst_then_refuses():
    bucket = TokenBucket(updated=0.0)
    assert all(bucket.allow(now=0.0) for _ in range(BURST))
    assert not bucket.allow(now=0.0)


def test_the_bucket_refills_with_time():
    bucket = TokenBucket(burst=2, rate=1.0, tokens=0, updated=0.0)
    assert not bucket.allow(now=0.5)
    assert bucket.allow(now=1.5)
    assert not bucket.allow(now=1.6)
