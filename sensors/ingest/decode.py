"""Decode one MQTT message into readings, a status, link health or a rejection.

Pure functions on bytes: no database, no settings, no clock (the caller passes the
receive time and the limits). This is the per-message hot path of the worker, so it
avoids the allocations it can and never logs. The bad-input rules (README, "Bad input"),
in short:

- the topic must be valid UTF-8 and one of the subscribed shapes; a native uid must
  match ``[A-Za-z0-9_-]{1,64}``;
- the payload must be at most ``max_payload`` bytes, valid UTF-8 and RFC 8259 JSON:
  ``NaN``/``Infinity`` literals, numbers that overflow a double (``1e999``) and
  duplicate keys reject the whole message;
- values: numbers are stored, booleans as 1/0, numeric strings (``"21.5"``) parsed,
  nested objects flattened with ``_`` (up to three levels); null, text and lists are
  skipped and recorded;
- native metric keys must match ``METRIC_KEY_PATTERN``; LoRaWAN codec keys are
  normalised first (``batteryVoltage`` → ``battery_voltage``); when two keys of one
  object become the same metric key (normalised or flattened), the first is kept and
  the second skipped and recorded;
- ``ts``: epoch seconds, epoch milliseconds (|ts| ≥ 1e11) or ISO-8601 (no offset means
  UTC); missing means the receive time, except in an array where each element needs
  its own; more than ``max_future`` ahead of or ``retention`` behind the receive time
  is rejected (the reading, or the element of an array);
- retained telemetry is the broker replaying an old value: rejected.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

from sensors.ingest import topics
from sensors.models import DEVEUI_PATTERN, METRIC_KEY_PATTERN, UID_PATTERN, normalize_uid

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US: Final = timedelta(microseconds=1)
MS_THRESHOLD: Final = 100_000_000_000  # 1e11: as seconds that is the year 5138, as ms 1973
MAX_NESTING: Final = 3
MAX_KEY_LENGTH: Final = 64
MAX_SKIPPED_NOTES: Final = 20

_NUMERIC = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_KEY = re.compile(r"[^a-z0-9]+")
_STATUSES: Final = frozenset({"online", "offline"})

_NO_NOTES: Final[list[str]] = []  # most messages skip nothing: spare them an empty list each

Reading = tuple[int, str, float]
"""(ts in epoch microseconds, metric key, value)."""


class Limits(NamedTuple):
    max_payload: int
    max_future_us: int
    retention_us: int


class Decoded:
    """The outcome of decoding one message; ``reason`` set means the whole message is rejected."""

    __slots__ = (
        "kind",
        "payload",
        "readings",
        "reason",
        "received_us",
        "retained",
        "rssi",
        "skipped",
        "snr",
        "source",
        "status",
        "topic",
        "uid",
    )

    def __init__(self, topic: bytes, payload: bytes, received_us: int, retained: bool) -> None:
        self.topic = topic
        self.payload = payload
        self.received_us = received_us
        self.retained = retained
        self.source = ""
        self.kind = ""
        self.uid = ""
        self.readings: list[Reading] = []
        self.skipped: list[str] = _NO_NOTES  # shared and never appended to: see _note
        self.status: str | None = None
        self.rssi: float | None = None
        self.snr: float | None = None
        self.reason: str | None = None

    def __repr__(self) -> str:
        return f"<Decoded {self.source} {self.kind} {self.uid!r} readings={len(self.readings)} reason={self.reason!r}>"


class Rejected(Exception):
    """The whole message is rejected with a human-readable reason."""


class BadTime(Rejected):
    """A ``ts`` that cannot be used: the message is rejected, or the element of an array skipped."""


class _Skip(Exception):
    """One element of an array is skipped with a reason; the rest of the message is kept."""


def _pairs_to_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Rejected(f"The JSON has the key {key!r} twice; which value is meant is ambiguous.")
            seen.add(key)
    return obj


def _reject_constant(name: str) -> float:
    raise Rejected(f"The JSON contains {name}, which is not a number in JSON (RFC 8259); Furrow stores finite numbers.")


_JSON = json.JSONDecoder(object_pairs_hook=_pairs_to_dict, parse_constant=_reject_constant)


def decode_message(topic: bytes, payload: bytes, *, retained: bool, received_us: int, limits: Limits) -> Decoded:
    """Decode one message. Never raises for bad input: the reason ends up in ``Decoded.reason``."""
    msg = Decoded(topic, payload, received_us, retained)
    parsed = topics.parse_topic(topic)
    if isinstance(parsed, topics.TopicError):
        msg.source, msg.reason = parsed.source, parsed.reason
        return msg
    msg.source, msg.kind, msg.uid = parsed
    try:
        _decode_payload(msg, limits)
    except Rejected as exc:
        msg.reason = str(exc)
        msg.readings = []
    return msg


def _decode_payload(msg: Decoded, limits: Limits) -> None:
    if len(msg.payload) > limits.max_payload:
        raise Rejected(
            f"The payload is {len(msg.payload):,} bytes; the limit is {limits.max_payload:,} (INGEST_MAX_PAYLOAD)."
        )
    try:
        text = msg.payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"The payload is not valid UTF-8 (bad byte at offset {exc.start}).") from None
    if msg.kind == topics.STATUS:
        msg.status = _status(text)
        return
    if msg.retained:
        raise Rejected("Retained telemetry is the broker replaying an old message, not a new reading.")
    doc = _load_json(text)
    if msg.source == topics.NATIVE:
        _native(msg, doc, limits)
    elif msg.source == topics.CHIRPSTACK:
        _chirpstack(msg, doc, limits)
    else:
        _things_stack(msg, doc, limits)


def _load_json(text: str) -> Any:
    try:
        return _JSON.decode(text)
    except json.JSONDecodeError as exc:
        raise Rejected(f"The payload is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
    except RecursionError:
        raise Rejected("The payload is JSON nested too deeply.") from None


def _status(text: str) -> str:
    value: Any = text.strip()
    if value[:1] in ('"', "{"):
        try:
            value = _JSON.decode(value)
        except (json.JSONDecodeError, Rejected):
            value = None
        if isinstance(value, dict):
            value = value.get("status")
    if isinstance(value, str) and value.strip().lower() in _STATUSES:
        return value.strip().lower()
    shown = text[:40]
    raise Rejected(f"A status message must be 'online' or 'offline', got {shown!r}.")


# --- native: farm/<uid>/telemetry ------------------------------------------------------


def _native(msg: Decoded, doc: Any, limits: Limits) -> None:
    if isinstance(doc, dict):
        ts = _timestamp(doc.get("ts"), msg.received_us, limits)
        try:
            _native_object(msg, doc, ts, "")
        except _Skip as exc:
            raise Rejected(f"The telemetry is malformed: {exc}.") from None
    elif isinstance(doc, list):
        _native_array(msg, doc, limits)
    else:
        raise Rejected(f"Telemetry must be a JSON object or an array of objects, got {_json_type(doc)}.")
    _require_readings(msg, "The message holds no readings.")


def _native_object(msg: Decoded, obj: dict[str, Any], ts: int, where: str) -> None:
    values = obj.get("values")
    if isinstance(values, dict):
        for key in obj:
            if key not in ("ts", "values"):
                _note(msg, f"{where}{key!r} beside 'values' ignored")
        _metrics(msg, values, ts, where, True)
    elif "values" in obj:
        raise _Skip(f"'values' must be an object, got {_json_type(values)}")
    else:
        _metrics(msg, obj, ts, where, True, "ts")


def _native_array(msg: Decoded, items: list[Any], limits: Limits) -> None:
    if not items:
        raise Rejected("The message is an empty array.")
    for index, item in enumerate(items):
        where = f"element {index}: "
        try:
            if not isinstance(item, dict):
                raise _Skip(f"expected an object, got {_json_type(item)}")
            if "ts" not in item:
                raise _Skip("no 'ts' (a buffered reading needs its own time)")
            ts = _timestamp(item["ts"], msg.received_us, limits)
            _native_object(msg, item, ts, where)
        except (_Skip, BadTime) as exc:
            _note(msg, f"{where}{exc}")


# --- LoRaWAN network servers -----------------------------------------------------------


def _chirpstack(msg: Decoded, doc: Any, limits: Limits) -> None:
    doc = _require_object(doc, "A ChirpStack uplink")
    info = doc.get("deviceInfo")
    dev_eui = info.get("devEui") if isinstance(info, dict) else None
    msg.uid = _dev_eui(dev_eui, msg.uid, "deviceInfo.devEui")
    raw_ts = doc.get("time")
    if raw_ts is None:
        raw_ts = _first(doc.get("rxInfo"), "nsTime")
    ts = _timestamp(raw_ts, msg.received_us, limits)
    _link_health(msg, doc.get("rxInfo"), "rssi")
    _decoded_values(msg, doc.get("object"), ts, "object", "a codec on the device profile in ChirpStack")


def _things_stack(msg: Decoded, doc: Any, limits: Limits) -> None:
    doc = _require_object(doc, "A The Things Stack uplink")
    ids = doc.get("end_device_ids")
    dev_eui = ids.get("dev_eui") if isinstance(ids, dict) else None
    msg.uid = _dev_eui(dev_eui, msg.uid, "end_device_ids.dev_eui")
    up = doc.get("uplink_message")
    if not isinstance(up, dict):
        raise Rejected("The uplink has no 'uplink_message' object.")
    raw_ts = doc.get("received_at")
    ts = _timestamp(up.get("received_at") if raw_ts is None else raw_ts, msg.received_us, limits)
    _link_health(msg, up.get("rx_metadata"), "channel_rssi")
    _decoded_values(msg, up.get("decoded_payload"), ts, "uplink_message.decoded_payload", "a payload formatter")


def _require_object(doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise Rejected(f"{what} must be a JSON object, got {_json_type(doc)}.")
    return doc


def _dev_eui(value: Any, from_topic: str, field: str) -> str:
    """The DevEUI from the payload, else the id in the topic if it is a valid uid."""
    if isinstance(value, str) and DEVEUI_PATTERN.fullmatch(value):
        return value.lower()
    if value is None and UID_PATTERN.fullmatch(from_topic):
        return normalize_uid(from_topic)
    raise Rejected(f"The uplink has no valid DevEUI in {field} (16 hex digits), got {value!r}.")


def _first(items: Any, key: str) -> Any:
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get(key) is not None:
                return item[key]
    return None


def _link_health(msg: Decoded, rx: Any, fallback_rssi: str) -> None:
    """RSSI and SNR of the best gateway (strongest RSSI) that heard the uplink."""
    best: tuple[float, float | None] | None = None
    for gateway in rx if isinstance(rx, list) else ():
        if not isinstance(gateway, dict):
            continue
        rssi = _finite(gateway.get("rssi", gateway.get(fallback_rssi)))
        if rssi is not None and (best is None or rssi > best[0]):
            best = (rssi, _finite(gateway.get("snr")))
    if best is not None:
        msg.rssi, msg.snr = best


def _finite(value: Any) -> float | None:
    if type(value) in (int, float) and -1e300 < value < 1e300:
        return float(value)
    return None


def _decoded_values(msg: Decoded, values: Any, ts: int, field: str, hint: str) -> None:
    if values is None:
        raise Rejected(f"The uplink has no decoded values ({field} is missing: configure {hint}).")
    if not isinstance(values, dict):
        raise Rejected(f"{field} must be an object, got {_json_type(values)}.")
    _metrics(msg, values, ts, "", False)
    _require_readings(msg, "The uplink holds no numeric values.")


def _require_readings(msg: Decoded, rejection: str) -> None:
    """Reject a message that kept no reading, saying what was skipped."""
    if not msg.readings:
        detail = f" Skipped: {'; '.join(msg.skipped)}." if msg.skipped else ""
        raise Rejected(f"{rejection}{detail}")


# --- values, keys and timestamps --------------------------------------------------------


def _metrics(msg: Decoded, obj: dict[str, Any], ts: int, where: str, native: bool, reserved: str = "") -> None:
    """Append the readings of one object (a message or an element of an array).

    Two payload keys may end as one metric key -- a codec's ``batteryVoltage`` beside
    ``battery_voltage``, or ``{"a": {"b": 1}, "a_b": 2}`` -- and both readings would have
    the same (sensor, ts): the first is kept and the second recorded as skipped. A flat
    native object cannot collide (its keys are used as they are and JSON duplicate keys
    are rejected), nor can codec keys that normalising left as they were, so the common
    case skips the check.
    """
    start = len(msg.readings)
    if _flatten(msg, obj, ts, "", 0, where, native, reserved):
        _drop_collisions(msg, start, where)


def _flatten(
    msg: Decoded,
    obj: dict[str, Any],
    ts: int,
    prefix: str,
    depth: int,
    where: str,
    native: bool,
    reserved: str = "",
) -> bool:
    """Append the readings of one object, flattening nested objects with ``_``.

    True when two keys may have become one: it nested, or a codec key was renamed.

    The hot loop of the worker: type checks by identity and memoised keys. The reserved
    key (``ts`` of a flat object) is checked before the memo: the memo is process-wide,
    and "ts" inside ``values`` or a nested object is a metric there.
    """
    append = msg.readings.append
    keys = _NATIVE_KEYS if native else _CODEC_KEYS
    may_collide = False
    for raw_key, value in obj.items():
        if raw_key == reserved:
            continue
        key = keys.get(raw_key, _UNSEEN)
        if key is _UNSEEN:
            key = _key(raw_key, native)
        if prefix and key is not None:
            key = prefix + key if len(prefix) + len(key) <= MAX_KEY_LENGTH else None
        tp = type(value)
        if tp is float:
            if value - value != 0.0:
                raise _not_finite(raw_key, value)
        elif tp is int:
            value = _int_value(value, raw_key)
        elif tp is bool:
            value = 1.0 if value else 0.0
        elif tp is str and _NUMERIC.fullmatch(value):
            value = _int_value(float(value), raw_key)
        elif tp is dict and key is not None and depth < MAX_NESTING:
            _flatten(msg, value, ts, key + "_", depth + 1, where, native)
            may_collide = True
            continue
        else:
            _note(msg, f"{where}{raw_key!r} ({_skip_kind(value, depth)})")
            continue
        if key is None:
            _note(msg, f"{where}{raw_key!r} ({_INVALID_KEY})")
        else:
            append((ts, key, value))
            if not native and key != raw_key:
                may_collide = True
    return may_collide


_INVALID_KEY: Final = "not a valid metric key: a-z, 0-9 and '_', starting with a letter"


def _drop_collisions(msg: Decoded, start: int, where: str) -> None:
    """Keep the first reading of each metric key appended since ``start``; note the others."""
    added = msg.readings[start:]
    first: dict[str, float] = {}
    kept: list[Reading] = []
    for reading in added:
        _, key, value = reading
        if key in first:
            _note(
                msg,
                f"{where}{key!r} = {value:g} (a second payload key that becomes {key!r} once names are "
                f"normalised; kept the first value, {first[key]:g})",
            )
        else:
            first[key] = value
            kept.append(reading)
    if len(kept) != len(added):
        msg.readings[start:] = kept


_UNSEEN: Final[Any] = object()
_NATIVE_KEYS: dict[str, str | None] = {}
_CODEC_KEYS: dict[str, str | None] = {}


def _key(raw: str, native: bool) -> str | None:
    """The metric key for a payload key, or None; memoised (a deployment has few keys).

    Native keys must already be metric keys; LoRaWAN codec keys are normalised.
    """
    key: str | None = raw if native else _NON_KEY.sub("_", _CAMEL.sub("_", raw).lower()).strip("_")
    if key is not None and not METRIC_KEY_PATTERN.fullmatch(key):
        key = None
    cache = _NATIVE_KEYS if native else _CODEC_KEYS
    if len(cache) < 100_000:
        cache[raw] = key
    return key


def _int_value(value: float, key: str) -> float:
    try:
        number = float(value)
    except OverflowError:
        number = float("inf")
    if number - number != 0.0:
        raise _not_finite(key, value)
    return number


def _not_finite(key: str, value: object) -> Rejected:
    return Rejected(f"The value of {key!r} is not a finite number ({str(value)[:40]}); Furrow stores finite numbers.")


def _skip_kind(value: Any, depth: int) -> str:
    if isinstance(value, dict):
        return "an object nested too deeply" if depth >= MAX_NESTING else "an object under an invalid key"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"text {value[:30]!r}"
    return _json_type(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "text",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _note(msg: Decoded, note: str) -> None:
    if msg.skipped is _NO_NOTES:
        msg.skipped = []
    if len(msg.skipped) < MAX_SKIPPED_NOTES:
        msg.skipped.append(note)
    elif len(msg.skipped) == MAX_SKIPPED_NOTES:
        msg.skipped.append("… and more")


def _timestamp(raw: Any, received_us: int, limits: Limits) -> int:
    """Epoch microseconds for a ``ts``; the receive time when there is none."""
    if raw is None:
        return received_us
    ts = _parse_ts(raw)
    if ts > received_us + limits.max_future_us:
        ahead = (ts - received_us) / 1e6
        raise BadTime(
            f"ts {_iso(ts)} is {ahead:,.0f} s ahead of the receive time {_iso(received_us)} "
            f"(limit {limits.max_future_us // 1_000_000} s, INGEST_MAX_FUTURE_SECONDS)."
        )
    if ts < received_us - limits.retention_us:
        raise BadTime(
            f"ts {_iso(ts)} is older than the retention window "
            f"({limits.retention_us // 86_400_000_000} days, INGEST_RETENTION_DAYS)."
        )
    return ts


def _parse_ts(raw: Any) -> int:
    tp = type(raw)
    if tp is str and _NUMERIC.fullmatch(raw):
        raw, tp = float(raw), float
    if tp is int or tp is float:
        if not -1e15 < raw < 1e15:
            raise BadTime(f"ts {raw!r:.40} is not a usable time (epoch seconds or milliseconds).")
        if -MS_THRESHOLD < raw < MS_THRESHOLD:
            return raw * 1_000_000 if tp is int else round(raw * 1_000_000)
        return raw * 1_000 if tp is int else round(raw * 1_000)
    if tp is str:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise BadTime(f"ts {raw[:40]!r} is neither epoch seconds, epoch milliseconds nor ISO-8601.") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return (moment - EPOCH) // ONE_US
    raise BadTime(f"ts must be a number or an ISO-8601 string, got {_json_type(raw)}.")


def _iso(us: int) -> str:
    try:
        return (EPOCH + us * ONE_US).isoformat(timespec="seconds").replace("+00:00", "Z")
    except OverflowError:
        return f"{us / 1e6:.0f} (epoch s)"
