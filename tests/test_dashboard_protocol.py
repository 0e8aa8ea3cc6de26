"""What a browser may send, parsed and rate-limited without a socket."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard.protocol import (
    BURST,
    CLOSE_CODES,
    CLOSE_MALFORMED,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED,
    IGNORE,
    MAX_FRAME_CHARS,
    ClientMessage,
    Close,
    TokenBucket,
    parse_client_message,
    read_frame,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "ping"}', ClientMessage.PING),
        ('{"type": "snapshot"}', ClientMessage.SNAPSHOT),
        ('{"type": "snapshot", "extra": 1}', ClientMessage.SNAPSHOT),
        ('{"type": "subscribe"}', IGNORE),
        ('{"type": ["ping"]}', Close(CLOSE_MALFORMED)),
        ('{"kind": "ping"}', Close(CLOSE_MALFORMED)),
        ('"ping"', Close(CLOSE_MALFORMED)),
        ("[]", Close(CLOSE_MALFORMED)),
        ("{", Close(CLOSE_MALFORMED)),
        ("NaN", Close(CLOSE_MALFORMED)),
        ("[" * 1000, Close(CLOSE_MALFORMED)),  # RecursionError inside json
        ('{"a":' * 200 + "1" + "}" * 200, Close(CLOSE_MALFORMED)),
    ],
)
def test_it_recognises_only_documented_messages(text, expected):
    assert parse_client_message(text) == expected


def test_a_binary_frame_is_unsupported():
    assert read_frame(None) == Close(CLOSE_UNSUPPORTED)


def test_an_oversized_frame_is_too_big_even_when_well_formed():
    assert read_frame(json.dumps({"type": "ping", "pad": "x" * MAX_FRAME_CHARS})) == Close(CLOSE_TOO_BIG)


def test_the_bucket_allows_a_burst_then_refuses():
    bucket = TokenBucket(updated=0.0)
    assert all(bucket.allow(now=0.0) for _ in range(BURST))
    assert not bucket.allow(now=0.0)


def test_the_bucket_refills_with_time():
    bucket = TokenBucket(burst=2, rate=1.0, tokens=0, updated=0.0)
    assert not bucket.allow(now=0.5)
    assert bucket.allow(now=1.5)
    assert not bucket.allow(now=1.6)


# Property: whatever a client sends, the frame ends in a documented message, is ignored, or
# closes the socket with a documented code; the parser never raises.

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
messages = st.dictionaries(
    st.sampled_from(["type", "farm", "seq", "x"]),
    json_values | st.sampled_from(list(ClientMessage)),
    max_size=4,
)
nestings = st.builds(
    lambda opener, depth, tail: opener * depth + tail,
    st.sampled_from(["[", "{", '{"a":', '{"type":', "[{", '["', "]", "}"]),
    st.integers(min_value=0, max_value=MAX_FRAME_CHARS),
    st.text(max_size=10),
)
frames = (
    st.none()  # a binary frame
    | st.text(max_size=2 * MAX_FRAME_CHARS)
    | st.text(alphabet='[]{}":,0123456789.eE-+ tnulfasrpigT\\', max_size=MAX_FRAME_CHARS + 8)
    | json_values.map(lambda value: json.dumps(value))
    | messages.map(lambda value: json.dumps(value))
    | nestings
    | st.binary(max_size=64).map(lambda raw: raw.decode("latin-1"))
)


@given(frames)
def test_any_frame_ends_in_a_documented_verdict(text):
    verdict = read_frame(text)
    assert verdict in {ClientMessage.PING, ClientMessage.SNAPSHOT, IGNORE} or (
        isinstance(verdict, Close) and verdict.code in CLOSE_CODES
    )
    if text is not None and len(text) > MAX_FRAME_CHARS:
        assert verdict == Close(CLOSE_TOO_BIG)


@given(messages)
def test_a_json_object_is_judged_by_its_type_alone(message):
    text = json.dumps(message)
    kind = message.get("type")
    if len(text) > MAX_FRAME_CHARS:
        expected: object = Close(CLOSE_TOO_BIG)
    elif not isinstance(kind, str):
        expected = Close(CLOSE_MALFORMED)
    else:
        expected = ClientMessage(kind) if kind in {"ping", "snapshot"} else IGNORE
    assert read_frame(text) == expected
