"""Decode one MQTT message into readings, a status, link health or a rejection.

Pure functions on bytes: no database, no settings, no clock (the caller passes the
receive time and the limits). This is the per-message hot path of the worker, so it
avoids the allocations it can and never logs. The bad-input rules (README, "Bad input"),
in short:

- the topic must be valid UTF-8 and one of the subscribed shapes; a native uid must
  match ``[A-Za-z0-9_-]{1,64}``;
- the payload must be at most ``max_payload`` bytes, valid UTF-8 and JSON (RFC 8259 plus
  the unquoted ``NaN``/``Infinity``/``-Infinity`` that device firmware writes);
  duplicate keys reject the whole message;
- values: numbers are stored, booleans as 1/0, numeric strings (``"21.5"``) parsed,
  nested objects flattened with ``_`` (up to three levels); null, text, lists, NaN,
  infinities and values beyond ``MAX_ABS_VALUE`` are skipped and recorded, and the rest
  of the message is kept; a message left with no reading is rejected;
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
from sensors.models import (
    DEVEUI_PATTERN,
    MAX_ABS_VALUE,
    METRIC_KEY_PATTERN,
    UID_PATTERN,
    RejectCategory,
    SkipCategory,
    normalize_uid,
)

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US: Final = timedelta(microseconds=1)
MS_THRESHOLD: Final = 100_000_000_000  # 1e11: as seconds that is the year 5138, as ms 1973
MAX_NESTING: Final = 3
MAX_KEY_LENGTH: Final = 64
MAX_SKIPPED_NOTES: Final = 20
FIELD_MAX: Final = 128  # a skipped payload key as recorded (SkippedField.field)
EXAMPLE_MAX: Final = 80

# Unambiguous (``\d+(?:\.\d*)?``, not ``\d+\.?\d*``): the ambiguous form backtracks
# quadratically, ~90 s on a 64 KiB string of digits.
_NUMERIC = re.compile(r"\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_KEY = re.compile(r"[^a-z0-9]+")
_STATUSES: Final = frozenset({"online", "offline"})

Reading = tuple[int, str, float]
"""(ts in epoch microseconds, metric key, value)."""


class Skip(NamedTuple):
    """One part of a message that was not stored.

    ``field``, ``category``, ``reason`` and ``example`` are what the store counts per
    (device, field); ``note`` is the same in a sentence, for a dead letter's reason.
    """

    field: str  # the payload key (escaped, clipped), "ts" or "(element)" for a whole element of an array
    category: str  # a SkipCategory value
    reason: str  # plain words, without the value: the same for every message that skips the field
    example: str  # an excerpt of what was sent ("" when the reason says it all)
    note: str

    def __str__(self) -> str:
        return self.note


_NO_NOTES: Final[list[Skip]] = []  # most messages skip nothing: spare them an empty list each


class Limits(NamedTuple):
    max_payload: int
    max_future_us: int
    retention_us: int


class Decoded:
    """The outcome of decoding one message; ``reason`` set means the whole message is rejected."""

    __slots__ = (
        "category",
        "kind",
        "payload",
        "readings",
        "reason",
        "received_us",
        "retained",
        "rssi",
        "skipped",
        "skipped_more",
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
        self.skipped: list[Skip] = _NO_NOTES  # shared and never appended to: see _note
        self.skipped_more = 0  # skipped parts beyond MAX_SKIPPED_NOTES, counted only
        self.status: str | None = None
        self.rssi: float | None = None
        self.snr: float | None = None
        self.reason: str | None = None
        self.category = ""  # a RejectCategory value when ``reason`` is set ("" reads as internal)

    def __repr__(self) -> str:
        return f"<Decoded {self.source} {self.kind} {self.uid!r} readings={len(self.readings)} reason={self.reason!r}>"


class Rejected(Exception):
    """The whole message is rejected with a human-readable reason."""

    category: str = RejectCategory.PAYLOAD

    def __init__(self, reason: str, category: str | None = None) -> None:
        super().__init__(reason)
        if category is not None:
            self.category = category


class BadTime(Rejected):
    """A ``ts`` that cannot be used: the message is rejected, or the element of an array skipped."""

    category = RejectCategory.TIME


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


def _long_int(text: str) -> float:
    """An integer literal as a float: only for a payload with one longer than Python's int limit."""
    return float(text) if len(text) > 4000 else int(text)


# NaN and ±Infinity (firmware writes them unquoted when a sensor fails) parse to floats,
# which the value rules then skip with a reason; the rest of the message is kept.
_JSON = json.JSONDecoder(object_pairs_hook=_pairs_to_dict)
# Python refuses int literals over 4,300 digits (ValueError). Such a payload is decoded
# again with this slower decoder, where they become floats (inf, or huge) and are then
# skipped like any value beyond MAX_ABS_VALUE.
_JSON_LONG_INTS = json.JSONDecoder(object_pairs_hook=_pairs_to_dict, parse_int=_long_int)


def decode_message(topic: bytes, payload: bytes, *, retained: bool, received_us: int, limits: Limits) -> Decoded:
    """Decode one message. Never raises for bad input: the reason ends up in ``Decoded.reason``."""
    msg = Decoded(topic, payload, received_us, retained)
    parsed = topics.parse_topic(topic)
    if isinstance(parsed, topics.TopicError):
        msg.source, msg.reason, msg.category = parsed.source, parsed.reason, RejectCategory.TOPIC
        return msg
    msg.source, msg.kind, msg.uid = parsed
    try:
        _decode_payload(msg, limits)
    except Rejected as exc:
        msg.reason, msg.category = str(exc), exc.category
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
        raise Rejected(
            "Retained telemetry is the broker replaying an old message, not a new reading.", RejectCategory.RETAINED
        )
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
    except ValueError:  # an integer literal over Python's digit limit: rare, decode it the slow way
        pass
    try:
        return _JSON_LONG_INTS.decode(text)
    except RecursionError:
        raise Rejected("The payload is JSON nested too deeply.") from None


def _status(text: str) -> str:
    value: Any = text.strip()
    if value[:1] in ('"', "{"):
        try:
            value = _JSON.decode(value)
        except (ValueError, RecursionError, Rejected):  # not JSON, too deep, a huge int, a duplicate key
            value = None
        if isinstance(value, dict):
            value = value.get("status")
    if isinstance(value, str) and value.strip().lower() in _STATUSES:
        return value.strip().lower()
    shown = text[:40]
    raise Rejected(f"A status message must be 'online' or 'offline', got {shown!r}.", RejectCategory.STATUS)


# --- native: farm/<uid>/telemetry ------------------------------------------------------


def _native(msg: Decoded, doc: Any, limits: Limits) -> None:
    if isinstance(doc, dict):
        ts = _timestamp(doc.get("ts"), msg.received_us, limits)
        try:
            _native_object(msg, doc, ts, None)
        except _Skip as exc:
            raise Rejected(f"The telemetry is malformed: {exc}.") from None
    elif isinstance(doc, list):
        _native_array(msg, doc, limits)
    else:
        raise Rejected(f"Telemetry must be a JSON object or an array of objects, got {_json_type(doc)}.")
    _require_readings(msg, "The message holds no readings.")


def _native_object(msg: Decoded, obj: dict[str, Any], ts: int, element: int | None) -> None:
    values = obj.get("values")
    if isinstance(values, dict):
        for key in obj:
            if key not in ("ts", "values"):
                _skip(msg, element, key, SkipCategory.DUPLICATE, "beside 'values', ignored", "")
        _metrics(msg, values, ts, element, True)
    elif "values" in obj:
        raise _Skip(f"'values' must be an object, got {_json_type(values)}")
    else:
        _metrics(msg, obj, ts, element, True, "ts")


def _native_array(msg: Decoded, items: list[Any], limits: Limits) -> None:
    if not items:
        raise Rejected("The message is an empty array.")
    for index, item in enumerate(items):
        field = "ts"
        try:
            if not isinstance(item, dict):
                field = "(element)"
                raise _Skip(f"expected an object, got {_json_type(item)}")
            if "ts" not in item:
                raise _Skip("no 'ts' (a buffered reading needs its own time)")
            ts = _timestamp(item["ts"], msg.received_us, limits)
            field = "values"
            _native_object(msg, item, ts, index)
        except (_Skip, BadTime) as exc:
            _note(msg, Skip(field, SkipCategory.BAD_ELEMENT, str(exc), "", f"element {index}: {exc}"))


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
    raise Rejected(f"The uplink has no valid DevEUI in {field} (16 hex digits), got {_shown(value)}.")


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
    if type(value) in (int, float) and -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
        return float(value)
    return None


def _decoded_values(msg: Decoded, values: Any, ts: int, field: str, hint: str) -> None:
    if values is None:
        raise Rejected(f"The uplink has no decoded values ({field} is missing: configure {hint}).")
    if not isinstance(values, dict):
        raise Rejected(f"{field} must be an object, got {_json_type(values)}.")
    _metrics(msg, values, ts, None, False)
    _require_readings(msg, "The uplink holds no numeric values.")


def _require_readings(msg: Decoded, rejection: str) -> None:
    """Reject a message that kept no reading, saying what was skipped."""
    if not msg.readings:
        raise Rejected(f"{rejection}{skipped_text(msg, ' Skipped: ', '.')}", RejectCategory.NO_VALUES)


def skipped_text(msg: Decoded, before: str = "", after: str = "") -> str:
    """The message's skipped parts in a sentence ("" when it skipped nothing)."""
    if not msg.skipped:
        return ""
    more = f"; … and {msg.skipped_more} more" if msg.skipped_more else ""
    return f"{before}{'; '.join(s.note for s in msg.skipped)}{more}{after}"


# --- values, keys and timestamps --------------------------------------------------------


def _metrics(msg: Decoded, obj: dict[str, Any], ts: int, element: int | None, native: bool, reserved: str = "") -> None:
    """Append the readings of one object (a message or an element of an array).

    Two payload keys may end as one metric key -- a codec's ``batteryVoltage`` beside
    ``battery_voltage``, or ``{"a": {"b": 1}, "a_b": 2}`` -- and both readings would have
    the same (sensor, ts): the first is kept and the second recorded as skipped. A flat
    native object cannot collide (its keys are used as they are and JSON duplicate keys
    are rejected), nor can codec keys that normalising left as they were, so the common
    case skips the check.
    """
    start = len(msg.readings)
    if _flatten(msg, obj, ts, "", 0, element, native, reserved):
        _drop_collisions(msg, start, element)


def _flatten(
    msg: Decoded,
    obj: dict[str, Any],
    ts: int,
    prefix: str,
    depth: int,
    element: int | None,
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
        if tp is float or tp is int:
            pass
        elif tp is bool:
            value = 1.0 if value else 0.0
        elif tp is str and _NUMERIC.fullmatch(value):
            value = float(value)
        elif tp is dict and key is not None and depth < MAX_NESTING:
            _flatten(msg, value, ts, key + "_", depth + 1, element, native)
            may_collide = True
            continue
        else:
            _skip_value(msg, element, raw_key, value, depth)
            continue
        # Also false for NaN; an int of any size compares exactly.
        if not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            _skip_number(msg, element, raw_key, value)
        elif key is None:
            _skip(msg, element, raw_key, SkipCategory.INVALID_KEY, _INVALID_KEY, "")
        else:
            append((ts, key, float(value)))
            if not native and key != raw_key:
                may_collide = True
    return may_collide


_INVALID_KEY: Final = "not a valid metric key: a-z, 0-9 and '_', starting with a letter"


def _drop_collisions(msg: Decoded, start: int, element: int | None) -> None:
    """Keep the first reading of each metric key appended since ``start``; note the others."""
    added = msg.readings[start:]
    first: dict[str, float] = {}
    kept: list[Reading] = []
    for reading in added:
        _, key, value = reading
        if key in first:
            where = "" if element is None else f"element {element}: "
            note = (
                f"{where}{key!r} = {value:g} (a second payload key that becomes {key!r} once names are "
                f"normalised; kept the first value, {first[key]:g})"
            )
            reason = "a second payload key that becomes this metric key once names are normalised; the first is kept"
            _note(msg, Skip(key, SkipCategory.DUPLICATE, reason, f"{value:g}", note))
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


def _skip_number(msg: Decoded, element: int | None, raw_key: str, value: float) -> None:
    """Skip a NaN, an infinity or a value beyond MAX_ABS_VALUE (an int may have thousands of digits)."""
    reason = f"beyond the absolute bound of ±{MAX_ABS_VALUE:g} that no sensor reaches"
    if isinstance(value, int):
        digits = int(value.bit_length() * 0.30103)
        shown = f"an integer of about {digits} digits" if digits > 300 else f"{float(value):g}"  # float() overflows
        _skip(msg, element, raw_key, SkipCategory.TOO_LARGE, reason, shown)
    elif value - value == 0.0:
        _skip(msg, element, raw_key, SkipCategory.TOO_LARGE, reason, f"{value:g}")
    else:
        shown = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        _skip(msg, element, raw_key, SkipCategory.NOT_FINITE, "not a finite number", shown)


def _skip_value(msg: Decoded, element: int | None, raw_key: str, value: Any, depth: int) -> None:
    """Skip a value that is not a number: null, text, a list, an object too deep or under a bad key."""
    if isinstance(value, dict):
        category = SkipCategory.TOO_DEEP if depth >= MAX_NESTING else SkipCategory.INVALID_KEY
        reason = "an object nested too deeply" if depth >= MAX_NESTING else "an object under an invalid key"
        _skip(msg, element, raw_key, category, reason, "")
    elif isinstance(value, str):
        _skip(msg, element, raw_key, SkipCategory.NOT_NUMERIC, "text", repr(value[:30]), " ")
    else:
        _skip(msg, element, raw_key, SkipCategory.NOT_NUMERIC, _json_type(value), "")


def _skip(
    msg: Decoded, element: int | None, raw_key: str, category: str, reason: str, example: str, sep: str = ": "
) -> None:
    where = "" if element is None else f"element {element}: "
    key = repr(raw_key) if len(raw_key) <= FIELD_MAX else repr(raw_key[: FIELD_MAX - 1] + "…")
    detail = f"{reason}{sep}{example}" if example else reason
    field = key[1:-1][:FIELD_MAX]  # repr() escapes what PostgreSQL text cannot hold (NUL, lone surrogates)
    _note(msg, Skip(field, category, reason, example[:EXAMPLE_MAX], f"{where}{key} ({detail})"))


def _shown(value: Any) -> str:
    """A short excerpt of a JSON value for a reason: never the repr of a whole (maybe deep) structure."""
    if isinstance(value, (dict, list)):
        return _json_type(value)
    return repr(value)[:40]  # an int here has at most 4,300 digits (the JSON decoder's limit)


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


def _note(msg: Decoded, skip: Skip) -> None:
    if msg.skipped is _NO_NOTES:
        msg.skipped = []
    if len(msg.skipped) < MAX_SKIPPED_NOTES:
        msg.skipped.append(skip)
    else:
        msg.skipped_more += 1


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
