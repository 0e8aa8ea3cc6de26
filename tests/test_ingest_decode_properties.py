"""Property tests of the MQTT decoder: any topic and payload bytes end in a plain outcome, never an exception.

Every input ends in readings (finite, within MAX_ABS_VALUE, under valid metric keys), a
status, or a rejection with a reason and a category; whatever the store will write as
text (reasons, skipped fields and examples) is text PostgreSQL can hold. Example counts
are modest so the file runs in seconds.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors.ingest import topics
from sensors.ingest.decode import FIELD_MAX, Decoded, Limits, decode_message
from sensors.ingest.registry import DeviceEntry, Registry
from sensors.ingest.store import plan_batch
from sensors.models import MAX_ABS_VALUE, METRIC_KEY_PATTERN, RejectCategory, SkipCategory

NOW_US = 1_780_000_000 * 1_000_000
LIMITS = Limits(max_payload=4096, max_future_us=300_000_000, retention_us=400 * 86_400_000_000)
UIDS = ["probe-1", "0004a30b001c0530", "stranger", "off-1"]

uid = st.sampled_from(UIDS) | st.text(min_size=0, max_size=70)
topic_text = st.one_of(
    st.builds(lambda u, k: f"farm/{u}/{k}", uid, st.sampled_from(["telemetry", "status", "other"])),
    st.builds(lambda a, u: f"application/{a}/device/{u}/event/up", st.text(max_size=8), uid),
    st.builds(lambda a, u: f"v3/{a}/devices/{u}/up", st.text(max_size=8), uid),
    st.text(max_size=40),
)
any_topic = topic_text.map(lambda t: t.encode("utf-8", "surrogatepass")) | st.binary(max_size=60)

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.sampled_from([1e12, -1e12, 1e12 + 1, 1e155, 10**13]),
)
ts_values = st.one_of(
    st.integers(min_value=NOW_US // 10**6 - 10**6, max_value=NOW_US // 10**6 + 1000),
    st.text(max_size=30),
    numbers,
)
keys = st.sampled_from(["ts", "values", "soil_moisture", "batteryVoltage", "status", "a_b", "Bad-Key"]) | st.text(
    max_size=12
)
leaves = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20), st.sampled_from(["21.5", " 1e999 ", "NaN"]))
json_values: st.SearchStrategy[Any] = st.recursive(
    leaves | ts_values,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=20,
)


def _dumps(value: Any) -> bytes:
    """JSON as firmware writes it: NaN and Infinity unquoted."""
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def _uplink(values: Any, dev_eui: Any) -> Any:
    return {"deviceInfo": {"devEui": dev_eui}, "object": values, "rxInfo": [{"rssi": values, "snr": dev_eui}]}


payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(_dumps),
    st.builds(_uplink, json_values, st.sampled_from(["0004A30B001C0530", None]) | json_values).map(_dumps),
    st.sampled_from(
        [
            b'{"status": ' * 1000 + b'"online"' + b"}" * 1000,
            b"[" * 3000,
            b'{"x": ' + b"9" * 5000 + b', "y": 1}',
            b'{"x": "' + b"1" * 3000 + b'x"}',
        ]
    ),
)


def _pg_text(text: str) -> bool:
    """Text PostgreSQL can store: valid UTF-8 (no lone surrogates) and no NUL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _check(msg: Decoded) -> None:
    if msg.reason is not None:
        assert msg.reason.strip()
        assert _pg_text(msg.reason)
        assert (msg.category or RejectCategory.INTERNAL) in RejectCategory.values
        assert msg.category != RejectCategory.INTERNAL  # the safety net is for our own bugs only
        assert msg.readings == []
        return
    assert msg.readings or msg.status in ("online", "offline")
    for ts, key, value in msg.readings:
        assert type(value) is float
        assert math.isfinite(value)
        assert abs(value) <= MAX_ABS_VALUE
        assert METRIC_KEY_PATTERN.fullmatch(key)
        assert type(ts) is int
    for skip in msg.skipped:
        assert skip.category in SkipCategory.values
        assert len(skip.field) <= FIELD_MAX
        assert len(skip.example) <= 80
        assert all(_pg_text(part) for part in (skip.field, skip.reason, skip.example, skip.note))
    for link in (msg.rssi, msg.snr):
        assert link is None or (math.isfinite(link) and abs(link) <= MAX_ABS_VALUE)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=any_topic, payload=payloads, retained=st.booleans())
def test_any_topic_and_payload_end_in_readings_a_status_or_a_plain_reason(topic, payload, retained):
    msg = decode_message(topic, payload, retained=retained, received_us=NOW_US, limits=LIMITS)

    _check(msg)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=json_values, uid_=st.sampled_from(UIDS))
def test_any_native_json_ends_in_readings_or_a_plain_reason(body, uid_):
    msg = decode_message(
        f"farm/{uid_}/telemetry".encode(), _dumps(body), retained=False, received_us=NOW_US, limits=LIMITS
    )

    _check(msg)


def _registry() -> Registry:
    registry = Registry(max_extra_metrics=32)
    registry.devices = {
        "probe-1": DeviceEntry(1, 1, 1, True, {"soil_moisture": 11}),
        "0004a30b001c0530": DeviceEntry(2, 1, 1, True),
        "off-1": DeviceEntry(3, 1, 1, False),
    }
    return registry


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(st.tuples(any_topic | st.sampled_from([b"farm/probe-1/telemetry"]), payloads), max_size=8))
def test_every_message_of_a_batch_ends_in_exactly_one_place(messages):
    decoded = [
        decode_message(topic, payload, retained=False, received_us=NOW_US + n, limits=LIMITS)
        for n, (topic, payload) in enumerate(messages)
    ]

    registry = _registry()
    plan = plan_batch(decoded, registry)

    places = {id(msg): "stored" for msg in plan.messages} | {id(msg): "dead letter" for msg, _ in plan.dead}
    for msg in decoded:
        assert places.get(id(msg), "elsewhere") == _expected_place(msg, registry), msg
    assert len(plan.messages) + len(plan.dead) + plan.statuses + plan.unknown_messages == len(decoded)
    for (_, field), record in plan.skipped.items():
        assert record.count >= 1
        assert _pg_text(field)
        assert record.category in SkipCategory.values


def _expected_place(msg: Decoded, registry: Registry) -> str:
    entry = registry.devices.get(msg.uid)
    if msg.reason is not None or (entry is not None and not entry.enabled):
        return "dead letter"
    if entry is None or msg.kind == topics.STATUS:
        return "elsewhere"  # an unknown-device record or a status change
    return "stored"
