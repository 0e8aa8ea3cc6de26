"""Bad input on purpose: every fault the ingest worker must turn into a dead letter or unknown-device record.

A malformed message's ``readings`` hold only what a correct worker must
still store from it (the good elements of a partly bad array). What a worker
may or may not store by its own written rule — a boolean as 1/0, a nested
object flattened, a clamped future timestamp — is left out of the expected
set: it is questionable input, and whatever is stored from it is extra.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace

from sensors.simulator.devices import Shape, SimDevice
from sensors.simulator.payloads import (
    Message,
    chirpstack_uplink,
    native_object,
    native_telemetry,
    native_ts,
    tts_uplink,
)

DAY_US = 86_400 * 1_000_000
HUGE_PAYLOAD_BYTES = 80 * 1024

Builder = Callable[[SimDevice, int, Mapping[str, float], int], Message]


def _native(device: SimDevice, kind: str, payload: bytes, *, uid: str | None = None) -> Message:
    uid = device.uid if uid is None else uid
    return Message(topic=f"farm/{uid}/telemetry", payload=payload, shape="malformed", uid=uid, kind=kind)


def _with_value(device: SimDevice, ts_us: int, literal: str) -> bytes:
    """A native object whose first metric is ``literal`` verbatim (NaN and friends are not JSON)."""
    return f'{{"ts":{json.dumps(native_ts(device, ts_us))},"{device.keys[0]}":{literal}}}'.encode()


def _good_bytes(device: SimDevice, ts_us: int, values: Mapping[str, float]) -> bytes:
    return json.dumps(native_object(device, ts_us, values), separators=(",", ":")).encode()


def invalid_json(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    good = _good_bytes(device, ts_us, values)
    return _native(device, "invalid_json", good[: max(1, len(good) // 2)])


def invalid_utf8(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    payload = _good_bytes(device, ts_us, values)[:-1] + b',"note":"\xff\xfe\xc3"}'
    return _native(device, "invalid_utf8", payload)


def not_an_object(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    return _native(device, "not_an_object", b"31.2")


def empty_payload(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    return _native(device, "empty_payload", b"")


def _literal(kind: str, literal: str) -> Builder:
    def build(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
        return _native(device, kind, _with_value(device, ts_us, literal))

    build.__name__ = kind
    return build


def duplicate_keys(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    key, ts = device.keys[0], json.dumps(native_ts(device, ts_us))
    return _native(device, "duplicate_keys", f'{{"ts":{ts},"{key}":1.5,"{key}":2.5}}'.encode())


def future_ts(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    return _native(device, "future_ts", _good_bytes(device, ts_us + DAY_US, values))


def ancient_ts(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    """Three years old: beyond any retention window."""
    return _native(device, "ancient_ts", _good_bytes(device, ts_us - 3 * 365 * DAY_US, values))


def unknown_uid(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    uid = f"sim-unregistered-{serial % 5}"  # a handful, as a real deployment has
    return _native(device, "unknown_uid", _good_bytes(device, ts_us, values), uid=uid)


def forbidden_uid(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    """Characters a uid may not have but an MQTT topic may: a space, a dot, non-ASCII."""
    uid = f"probe {serial % 10}.é"
    return _native(device, "forbidden_uid", _good_bytes(device, ts_us, values), uid=uid)


def huge_payload(
    device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int, size: int = HUGE_PAYLOAD_BYTES
) -> Message:
    body = {**native_object(device, ts_us, values), "note": "x" * size}
    return _native(device, "huge_payload", json.dumps(body, separators=(",", ":")).encode())


def partly_bad_array(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    """A buffer flush with broken elements between two good ones: the good ones must be stored."""
    step = 1_000_000 if device.ts_style == "s" else 1_000
    earlier = ts_us - step
    key = device.keys[0]
    elements: list[object] = [
        native_object(device, earlier, values),
        {"ts": "yesterday-ish", key: 1.0},
        {"ts": native_ts(device, ts_us), key: "wet"},
        7,
        native_object(device, ts_us, values),
    ]
    good = native_telemetry(device, [(earlier, values), (ts_us, values)])
    payload = json.dumps(elements, separators=(",", ":")).encode()
    return replace(good, payload=payload, shape="malformed", kind="partly_bad_array")


def bad_status(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    return Message(
        topic=f"farm/{device.uid}/status", payload=b"maybe", shape="malformed", uid=device.uid, kind="bad_status"
    )


def chirpstack_no_object(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    """An application without a codec: ChirpStack sends the raw ``data`` and no ``object``."""
    good = chirpstack_uplink(device, ts_us, values, serial)
    body = json.loads(good.payload)
    del body["object"]
    return replace(good, payload=json.dumps(body).encode(), shape="malformed", kind="chirpstack_no_object", readings=())


def ttn_no_decoded_payload(device: SimDevice, ts_us: int, values: Mapping[str, float], serial: int) -> Message:
    """An application without a payload formatter: no ``decoded_payload``."""
    good = tts_uplink(device, ts_us, values, serial)
    body = json.loads(good.payload)
    del body["uplink_message"]["decoded_payload"]
    return replace(
        good, payload=json.dumps(body).encode(), shape="malformed", kind="ttn_no_decoded_payload", readings=()
    )


MALFORMED: dict[str, Builder] = {
    "invalid_json": invalid_json,
    "invalid_utf8": invalid_utf8,
    "not_an_object": not_an_object,
    "empty_payload": empty_payload,
    "nan": _literal("nan", "NaN"),
    "infinity": _literal("infinity", "Infinity"),
    "huge_number": _literal("huge_number", "1e999"),
    "null_value": _literal("null_value", "null"),
    "bool_value": _literal("bool_value", "true"),
    "text_value": _literal("text_value", '"wet"'),
    "nested_value": _literal("nested_value", '{"value":31.2,"unit":"%"}'),
    "duplicate_keys": duplicate_keys,
    "future_ts": future_ts,
    "ancient_ts": ancient_ts,
    "unknown_uid": unknown_uid,
    "forbidden_uid": forbidden_uid,
    "huge_payload": huge_payload,
    "partly_bad_array": partly_bad_array,
    "bad_status": bad_status,
    "chirpstack_no_object": chirpstack_no_object,
    "ttn_no_decoded_payload": ttn_no_decoded_payload,
}
MALFORMED_KINDS = tuple(MALFORMED)
_ONLY_FOR = {"chirpstack_no_object": Shape.CHIRPSTACK, "ttn_no_decoded_payload": Shape.TTN}


def applies_to(kind: str, device: SimDevice) -> bool:
    """LoRaWAN faults need a device of that network server; the rest fit any device."""
    shape = _ONLY_FOR.get(kind)
    return shape is None or device.shape is shape


def malformed_message(
    kind: str,
    device: SimDevice,
    ts_us: int,
    values: Mapping[str, float],
    serial: int = 0,
    *,
    huge_bytes: int = HUGE_PAYLOAD_BYTES,
) -> Message:
    if kind == "huge_payload":
        return huge_payload(device, ts_us, values, serial, size=huge_bytes)
    return MALFORMED[kind](device, ts_us, values, serial)
