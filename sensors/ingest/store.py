"""Store a batch of decoded messages in one transaction (docs/architecture.md §3–§5).

Every message ends in exactly one of: stored readings (plus a per-(device, field) count
of any part skipped), a device status change, a dead letter (nothing was stored), or an
unknown-device record.

Shape of one batch: resolve uids against the cached registry (no query per message),
create sensors for first-seen metric keys, lock the batch's devices, lock every sensor
the batch writes readings for -- the batch's integrity check, as readings have no
foreign key (migration 0006) -- then binary-COPY the readings (a
redelivered message is harmless), then one statement each for devices (last seen,
status, link health, once per device), unknown devices and dead letters. Downstream
hooks run after the commit.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Final

import psycopg
from django.db import IntegrityError, connection, transaction

from sensors.hooks import (
    BatchOutcome,
    DeviceChange,
    DeviceSensors,
    ReadingGroup,
    run_batch_notifiers,
    run_batch_writers,
)
from sensors.ingest import topics
from sensors.ingest.decode import EPOCH, ONE_US, Decoded, Skip, skipped_text
from sensors.ingest.registry import DeviceEntry, Registry
from sensors.models import DEAD_LETTER_MAX_BYTES, DeviceStatus, RejectCategory, SkipCategory

# PostgreSQL's binary timestamptz counts microseconds from 2000-01-01 UTC.
_PG_EPOCH_US: Final = 946_684_800_000_000
_COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_COPY_TRAILER: Final = b"\xff\xff"
_COPY_ROW_STRUCT = struct.Struct(">hiqiqid")  # 3 fields: int8 sensor_id, timestamptz ts, float8 value
_COPY_ROW = _COPY_ROW_STRUCT.pack
LINK_KEYS: Final = ("battery", "rssi", "snr")
TOPIC_MAX: Final = 512
REASON_MAX: Final = 4000
# New metric keys one message may add to its device, on top of the device's own bound
# (its kind's metrics plus Registry.max_extra_metrics): a burst of keys cannot fill it at once.
NEW_METRICS_PER_MESSAGE: Final = 16
# Distinct skipped fields counted per device; beyond it a new field is not counted (a device
# sending random keys must not grow the table without end). The metric-limit row always is.
SKIPPED_FIELDS_PER_DEVICE: Final = 100
METRIC_LIMIT_FIELD: Final = "(new metrics over the limit)"

_TEMP_TABLE_SQL = """
CREATE TEMP TABLE IF NOT EXISTS furrow_ingest_rows (
    sensor_id bigint NOT NULL, ts timestamptz NOT NULL, value double precision NOT NULL
) ON COMMIT DELETE ROWS
"""
_INSERT_READINGS_SQL = """
INSERT INTO sensors_reading (sensor_id, ts, value)
SELECT sensor_id, ts, value FROM furrow_ingest_rows
ON CONFLICT DO NOTHING
RETURNING sensor_id, ts
"""
_COPY_READINGS_SQL = "COPY sensors_reading (sensor_id, ts, value) FROM STDIN (FORMAT BINARY)"
_COPY_TEMP_SQL = "COPY furrow_ingest_rows (sensor_id, ts, value) FROM STDIN (FORMAT BINARY)"
# Every sensor the batch writes readings for, locked until the commit: the rows returned
# are the batch's integrity check (readings have no per-row foreign key, migration 0006).
# FOR KEY SHARE blocks a DELETE of these sensors but not another worker's same lock.
_LOCK_SENSORS_SQL = "SELECT id FROM sensors_sensor WHERE id = ANY(%b::bigint[]) ORDER BY id FOR KEY SHARE"
_CREATE_SENSORS_SQL = """
INSERT INTO sensors_sensor (device_id, key, label, unit, min_value, max_value, needs_review, created_at)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::boolean[],
                     %s::timestamptz[])
ON CONFLICT (device_id, key) DO NOTHING
"""
_SENSOR_IDS_SQL = """
SELECT id, device_id, key FROM sensors_sensor
WHERE (device_id, key) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))
"""
_DEVICES_SQL = """
UPDATE sensors_device AS d SET
    last_seen = GREATEST(d.last_seen, u.last_seen),
    status = CASE WHEN u.status IS NULL OR (u.if_unknown AND d.status <> 'unknown') THEN d.status ELSE u.status END,
    battery = COALESCE(u.battery, d.battery),
    rssi = COALESCE(u.rssi, d.rssi),
    snr = COALESCE(u.snr, d.snr)
FROM unnest(%b::bigint[], %b::timestamptz[], %b::text[], %b::boolean[], %b::float8[], %b::float8[], %b::float8[])
    AS u(id, last_seen, status, if_unknown, battery, rssi, snr)
WHERE d.id = u.id
RETURNING d.farm_id, d.id, d.status, d.last_seen, d.battery, d.rssi, d.snr  -- DeviceChange order
"""
_UNKNOWN_SQL = """
INSERT INTO sensors_unknowndevice AS k (uid, source, topic, first_seen, last_seen, message_count, last_payload)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::bigint[],
                     %s::text[])
ON CONFLICT (uid) DO UPDATE SET
    source = EXCLUDED.source, topic = EXCLUDED.topic,
    last_seen = GREATEST(k.last_seen, EXCLUDED.last_seen),
    message_count = k.message_count + EXCLUDED.message_count,
    last_payload = EXCLUDED.last_payload
"""
# Deduplicated on the message's fingerprint: a redelivered (or identical repeated) bad
# message counts again on its row instead of adding one. The latest reason wins (a
# device disabled then enabled changes why its message is here).
_DEAD_LETTERS_SQL = """
INSERT INTO sensors_deadletter AS d
    (fingerprint, received_at, last_received_at, count, topic, payload, payload_size, reason, category, source)
SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[], %s::bigint[], %s::text[], %s::bytea[],
                     %s::integer[], %s::text[], %s::text[], %s::text[])
ON CONFLICT (fingerprint) DO UPDATE SET
    count = d.count + EXCLUDED.count,
    last_received_at = GREATEST(d.last_received_at, EXCLUDED.last_received_at),
    reason = EXCLUDED.reason,
    category = EXCLUDED.category,
    source = EXCLUDED.source
"""
# One row per (device, field) of the batch, counted on. A field new to its device is added
# only while the device has fewer than SKIPPED_FIELDS_PER_DEVICE (``rank`` counts the new
# ones of this statement); the metric-limit row always is.
_SKIPPED_SQL = """
INSERT INTO sensors_skippedfield AS s (device_id, field, category, reason, example, first_seen, last_seen, count)
SELECT device_id, field, category, reason, example, first_seen, last_seen, count FROM (
    SELECT u.*, k.known, row_number() OVER (PARTITION BY u.device_id, k.known ORDER BY u.field) AS rank
    FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[],
                %s::timestamptz[], %s::bigint[])
        AS u(device_id, field, category, reason, example, first_seen, last_seen, count)
    CROSS JOIN LATERAL (SELECT EXISTS (
        SELECT 1 FROM sensors_skippedfield e WHERE e.device_id = u.device_id AND e.field = u.field
    ) AS known) AS k
) AS r
WHERE r.known OR r.category = 'metric_limit'
   OR (SELECT count(*) FROM sensors_skippedfield e WHERE e.device_id = r.device_id) + r.rank <= %s
ON CONFLICT (device_id, field) DO UPDATE SET
    category = EXCLUDED.category, reason = EXCLUDED.reason, example = EXCLUDED.example,
    first_seen = LEAST(s.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(s.last_seen, EXCLUDED.last_seen),
    count = s.count + EXCLUDED.count
"""
_DEVICE_SENSORS_SQL = "SELECT device_id, key, id FROM sensors_sensor WHERE device_id = ANY(%s)"
# Workers of one share group write the same devices. Each locks its batch's devices in id
# order before it updates them or their sensors, so two workers queue instead of
# deadlocking (an UPDATE … FROM unnest locks in whatever order its join plan reads).
_LOCK_DEVICES_SQL = "SELECT id FROM sensors_device WHERE id = ANY(%b::bigint[]) ORDER BY id FOR NO KEY UPDATE"


@dataclass(slots=True)
class DeviceUpdate:
    """What one batch changes on one device: computed once per device per batch."""

    entry: DeviceEntry
    last_seen_us: int | None = None
    status: str | None = None
    if_unknown: bool = False  # only a retained status: it may only fill in an unknown status
    link: dict[str, tuple[int, float]] = field(default_factory=dict)  # key -> (ts, value)


@dataclass(slots=True)
class UnknownUpdate:
    source: str
    topic: str
    first_us: int
    last_us: int
    count: int
    payload: str


@dataclass(slots=True)
class SkippedUpdate:
    """What one batch adds to one (device, field) skipped-field row."""

    category: str
    reason: str
    example: str
    first_us: int
    last_us: int
    count: int = 1


@dataclass(slots=True)
class BatchPlan:
    """The pure part of a batch: what to write, worked out from the registry without a query."""

    groups: list[tuple[DeviceEntry, list[tuple[int, str, float]]]] = field(default_factory=list)
    messages: list[Decoded] = field(default_factory=list)  # the message of each group, index for index
    devices: dict[int, DeviceUpdate] = field(default_factory=dict)
    unknown: dict[str, UnknownUpdate] = field(default_factory=dict)
    dead: list[tuple[Decoded, str]] = field(default_factory=list)
    skipped: dict[tuple[int, str], SkippedUpdate] = field(default_factory=dict)  # (device id, field) -> counts
    statuses: int = 0
    unknown_messages: int = 0


@dataclass(slots=True)
class BatchResult:
    messages: int = 0
    readings: int = 0  # readings sent to the table (a redelivered one is counted, not stored twice)
    inserted: int = 0  # rows actually inserted
    statuses: int = 0
    dead_letters: int = 0
    unknown: int = 0
    new_sensors: int = 0

    def __add__(self, other: BatchResult) -> BatchResult:
        return BatchResult(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


def plan_batch(messages: Sequence[Decoded], registry: Registry) -> BatchPlan:
    """Route every decoded message to readings, a status, a dead letter or an unknown record."""
    plan = BatchPlan()
    devices = registry.devices
    for msg in messages:
        if msg.reason is not None:
            plan.dead.append((msg, msg.reason))
            continue
        entry = devices.get(msg.uid)
        if entry is None:
            _add_unknown(plan, msg)
        elif not entry.enabled:
            msg.category = RejectCategory.DISABLED
            plan.dead.append(
                (msg, f"The device {msg.uid!r} is disabled; enable it in the admin to store its readings.")
            )
        else:
            _add_known(plan, entry, msg)
    return plan


def _add_known(plan: BatchPlan, entry: DeviceEntry, msg: Decoded) -> None:
    update = plan.devices.get(entry.id)
    if update is None:
        update = plan.devices[entry.id] = DeviceUpdate(entry)
    if msg.kind == topics.STATUS:
        plan.statuses += 1
        _apply_status(update, msg)
        return
    update.status, update.if_unknown = DeviceStatus.ONLINE, False
    _seen(update, msg.received_us)
    readings = msg.readings
    plan.groups.append((entry, readings))
    plan.messages.append(msg)
    for ts, key, value in readings:
        if key in LINK_KEYS:
            _link(update, key, ts, value)
    if msg.rssi is not None:
        _link(update, "rssi", msg.received_us, msg.rssi)
    if msg.snr is not None:
        _link(update, "snr", msg.received_us, msg.snr)
    for skip in msg.skipped:
        _add_skipped(plan, entry.id, skip, msg.received_us)


def _add_skipped(plan: BatchPlan, device_id: int, skip: Skip, received_us: int, count: int = 1) -> None:
    """Count a skipped field of a stored message on its (device, field) row; the latest example wins."""
    record = plan.skipped.get((device_id, skip.field))
    if record is None:
        plan.skipped[device_id, skip.field] = SkippedUpdate(
            skip.category, skip.reason, skip.example, received_us, received_us, count
        )
        return
    record.count += count
    record.first_us = min(record.first_us, received_us)
    if received_us >= record.last_us:
        record.last_us, record.category, record.reason, record.example = (
            received_us,
            skip.category,
            skip.reason,
            skip.example,
        )


def _apply_status(update: DeviceUpdate, msg: Decoded) -> None:
    """A live status message wins; a retained one only fills in a status Furrow has never had."""
    if msg.retained:
        if update.status is None:
            update.status, update.if_unknown = msg.status, True
        return
    update.status, update.if_unknown = msg.status, False
    if msg.status == DeviceStatus.ONLINE:
        _seen(update, msg.received_us)


def _seen(update: DeviceUpdate, received_us: int) -> None:
    if update.last_seen_us is None or received_us > update.last_seen_us:
        update.last_seen_us = received_us


def _link(update: DeviceUpdate, key: str, ts: int, value: float) -> None:
    current = update.link.get(key)
    if current is None or ts >= current[0]:
        update.link[key] = (ts, value)


def _add_unknown(plan: BatchPlan, msg: Decoded) -> None:
    plan.unknown_messages += 1
    record = plan.unknown.get(msg.uid)
    if record is None:
        plan.unknown[msg.uid] = UnknownUpdate(
            msg.source, _topic(msg), msg.received_us, msg.received_us, 1, _payload_text(msg.payload)
        )
        return
    record.count += 1
    if msg.received_us >= record.last_us:
        record.last_us, record.topic, record.source = msg.received_us, _topic(msg), msg.source
        record.payload = _payload_text(msg.payload)
    record.first_us = min(record.first_us, msg.received_us)


OutcomeSink = Callable[[BatchOutcome], None]
"""Receives a batch's outcome after its commit: the after-commit notifier lane."""


def store_batch(
    *, messages: Sequence[Decoded], registry: Registry, after_commit: OutcomeSink = run_batch_notifiers
) -> BatchResult:
    """Write one batch in one transaction, batch writers included; ``after_commit`` gets its outcome once committed.

    A batch writer that raises rolls the whole batch back (its messages stay unacknowledged).
    """
    plan = plan_batch(messages, registry)
    result = BatchResult(messages=len(messages), statuses=plan.statuses, unknown=plan.unknown_messages)
    with transaction.atomic():
        created = _create_sensors(plan, registry)
        data, count, sensor_ids = _copy_data(plan.groups, created)
        _lock_devices(plan.devices)
        _lock_sensors(sensor_ids)
        result.readings = count
        result.inserted, redelivered = _write_readings(data, count, plan.groups, created)
        changes = _update_devices(plan.devices)
        _upsert_unknown(plan.unknown)
        _insert_dead_letters(plan.dead)
        _upsert_skipped_fields(plan.skipped)
        result.dead_letters, result.new_sensors = len(plan.dead), len(created)
        outcome = _outcome(plan.groups, created, changes, redelivered)
        run_batch_writers(outcome)
        transaction.on_commit(lambda: after_commit(outcome))
    registry.add_sensors(created)
    return result


# --- readings -----------------------------------------------------------------------------


def _create_sensors(plan: BatchPlan, registry: Registry) -> dict[tuple[int, str], int]:
    """Create a sensor for each metric key a device sends for the first time, within its bound.

    The registry knows each device's sensors, so a batch without a new key costs nothing
    here. One with new keys locks its devices first -- the same rows, in the same order,
    as the batch's own device lock later, so two workers queue instead of deadlocking --
    and counts each device's sensors in the database under that lock: the bound holds
    across batches and across workers whose registries are a moment behind. Keys beyond
    it are taken out of their message's readings and counted as skipped.
    """
    wanted: set[tuple[int, str]] = set()
    for entry, readings in plan.groups:
        sensors = entry.sensors
        for _, key, _ in readings:
            if key not in sensors:
                wanted.add((entry.id, key))
    if not wanted:
        return {}
    _lock_devices(plan.devices)
    existing = _device_sensors({device_id for device_id, _ in wanted})
    new = _within_bounds(plan, registry, existing)
    now = datetime.now(tz=EPOCH.tzinfo)
    rows: list[tuple[Any, ...]] = []
    entries = {entry.id: entry for entry, _ in plan.groups}
    for device_id, key in sorted(new):  # sorted: two workers insert the same keys in one order
        spec = registry.specs.get(entries[device_id].kind_id, {}).get(key)
        label = spec.label if spec else key.replace("_", " ").capitalize()
        unit, low, high = (spec.unit, spec.min_value, spec.max_value) if spec else ("", None, None)
        rows.append((device_id, key, label, unit, low, high, spec is None, now))
    kept = {(device_id, key): existing[device_id][key] for device_id, key in wanted if key in existing[device_id]}
    if not rows:
        return kept
    with connection.cursor() as cursor:
        cursor.execute(_CREATE_SENSORS_SQL, _columns(rows))
        cursor.execute(_SENSOR_IDS_SQL, [[d for d, _ in new], [k for _, k in new]])
        return kept | {(device_id, key): sensor_id for sensor_id, device_id, key in cursor.fetchall()}


def _device_sensors(device_ids: set[int]) -> dict[int, dict[str, int]]:
    """Every sensor of these devices as committed now, by key (read under the batch's device lock)."""
    found: dict[int, dict[str, int]] = {device_id: {} for device_id in device_ids}
    with connection.cursor() as cursor:
        cursor.execute(_DEVICE_SENSORS_SQL, [sorted(device_ids)])
        for device_id, key, sensor_id in cursor.fetchall():
            found[device_id][key] = sensor_id
    return found


def _within_bounds(plan: BatchPlan, registry: Registry, existing: dict[int, dict[str, int]]) -> set[tuple[int, str]]:
    """The new (device, key) sensors the batch may create; drops and counts the readings of the others.

    A key its device's kind lists is always allowed. Any other new key counts against the
    device's ``registry.max_extra_metrics`` (sensors it already has with unlisted keys
    included) and against NEW_METRICS_PER_MESSAGE of its message. A message left with no
    reading becomes a dead letter.
    """
    extras: dict[int, int] = {}
    new: set[tuple[int, str]] = set()
    groups, messages = plan.groups, plan.messages
    plan.groups, plan.messages = [], []
    for (entry, readings), msg in zip(groups, messages, strict=True):
        have = existing.get(entry.id)
        refused: list[str] = []
        if have is not None:
            specs = registry.specs.get(entry.kind_id, {})
            if entry.id not in extras:
                extras[entry.id] = sum(1 for key in have if key not in specs)
            refused = _refused_keys(entry, readings, have, specs, extras, new, registry.max_extra_metrics)
        if refused:
            readings = [reading for reading in readings if reading[1] not in refused]
            _refuse(plan, entry, msg, refused, readings, registry)
        if readings:
            plan.groups.append((entry, readings))
            plan.messages.append(msg)
    return new


def _refused_keys(
    entry: DeviceEntry,
    readings: list[tuple[int, str, float]],
    have: dict[str, int],
    specs: dict[str, Any],
    extras: dict[int, int],
    new: set[tuple[int, str]],
    max_extra: int,
) -> list[str]:
    """The new unlisted keys of one message beyond its device's or its own bound, in payload order."""
    refused: list[str] = []
    added: set[str] = set()
    for _, key, _ in readings:
        if key in entry.sensors or key in have or (entry.id, key) in new:
            continue
        if key in specs:
            new.add((entry.id, key))
        elif key in refused or key in added:
            continue
        elif len(added) < NEW_METRICS_PER_MESSAGE and extras[entry.id] < max_extra:
            new.add((entry.id, key))
            added.add(key)
            extras[entry.id] += 1
        else:
            refused.append(key)
    return refused


def _refuse(
    plan: BatchPlan,
    entry: DeviceEntry,
    msg: Decoded,
    refused: list[str],
    kept: list[tuple[int, str, float]],
    registry: Registry,
) -> None:
    """Count a message's keys over the metric bound on its device; dead-letter it if nothing is left."""
    listed = len(registry.specs.get(entry.kind_id, {}))
    reason = (
        f"new metric keys beyond this device's bound: the {listed} metric(s) of its kind plus "
        f"{registry.max_extra_metrics} more (INGEST_MAX_EXTRA_METRICS), "
        f"at most {NEW_METRICS_PER_MESSAGE} new per message"
    )
    shown = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
    if kept:
        skip = Skip(METRIC_LIMIT_FIELD, SkipCategory.METRIC_LIMIT, reason, shown[:80], "")
        _add_skipped(plan, entry.id, skip, msg.received_us, len(refused))
        return
    msg.category = RejectCategory.METRIC_LIMIT
    plan.dead.append((msg, f"Nothing stored: {len(refused)} {reason} ({shown}).{skipped_text(msg, ' Also skipped: ')}"))


def _write_readings(
    data: bytearray,
    count: int,
    groups: list[tuple[DeviceEntry, list[tuple[int, str, float]]]],
    created: dict[tuple[int, str], int],
) -> tuple[int, frozenset[tuple[int, int]] | None]:
    """Store the readings of a COPY stream: how many rows were inserted, and the keys that were not.

    The keys are None when every row was new (nearly every batch); otherwise the
    (sensor id, ts µs) of each reading that was already stored (a redelivery).
    """
    if not count:
        return 0, None
    with connection.cursor() as cursor:
        inserted = _copy_readings(cursor, data)
    if inserted is None:
        return count, None
    batch_keys = {
        (sensors.get(key) or created[(entry.id, key)], ts)
        for entry, rows in groups
        for ts, key, _ in rows
        for sensors in (entry.sensors,)
    }
    return len(inserted), frozenset(batch_keys - inserted)


def _lock_sensors(ids: set[int]) -> None:
    """Lock every sensor the batch has readings for; IntegrityError if one no longer exists.

    This is the batch's integrity check, in place of a per-row foreign key (~155–200 ms
    per 50,000 readings at COMMIT): its row locks last until the commit. A concurrent
    DELETE of one of these sensors either committed before this statement (the row is
    gone: IntegrityError, the batch rolls back and the worker retries with a fresh
    registry), or waits on our lock until we commit; then its AFTER DELETE trigger
    (migration 0006) runs its DELETE of readings with a fresh snapshot (READ COMMITTED,
    one per statement in PL/pgSQL) and removes our committed readings too. Either way no
    reading outlives its sensor. A lock, not an update: updating 10,000 sensor rows a
    batch cost ~140 ms and a new row version each (a sensor's latest value is read from
    its readings instead).
    """
    if not ids:
        return
    if _bound(_LOCK_SENSORS_SQL, [sorted(ids)], fetch=False)[0] == len(ids):
        return
    missing = sorted(ids - {row[0] for row in _bound(_LOCK_SENSORS_SQL, [sorted(ids)])[1]})
    raise IntegrityError(f"readings for sensor(s) {', '.join(map(str, missing))} that no longer exist")


def _copy_data(
    groups: list[tuple[DeviceEntry, list[tuple[int, str, float]]]], created: dict[tuple[int, str], int]
) -> tuple[bytearray, int, set[int]]:
    """The readings as one binary COPY stream, how many rows it holds, and their sensors.

    Built in one growing buffer: a list of 50,000 row objects to join would hold twice
    the memory at the peak. Built before the batch takes its locks, in one pass.
    """
    data = bytearray(_COPY_HEADER)
    count, pack = 0, _COPY_ROW
    sensor_ids: set[int] = set()
    add = sensor_ids.add
    for entry, readings in groups:
        sensors = entry.sensors
        for ts, key, value in readings:
            sensor_id = sensors.get(key) or created[(entry.id, key)]
            add(sensor_id)
            data += pack(3, 8, sensor_id, 8, ts - _PG_EPOCH_US, 8, value)
        count += len(readings)
    data += _COPY_TRAILER
    return data, count, sensor_ids


def _copy_readings(cursor: Any, data: bytearray) -> set[tuple[int, int]] | None:
    """COPY straight into the table: None when every row went in; else only the new ones, and their keys.

    Straight COPY is about twice as fast as COPY into a temp table plus
    ``INSERT … ON CONFLICT DO NOTHING`` (measured: 50,000 rows 130 ms against 240 ms), and
    a batch without redelivered readings -- nearly every batch -- needs nothing more. A
    duplicate (sensor, ts) fails the COPY; the savepoint undoes it and the slower path
    skips what is already stored, returning the (sensor id, ts µs) it did insert.
    """
    try:
        with transaction.atomic(), connection.wrap_database_errors, cursor.cursor.copy(_COPY_READINGS_SQL) as copy:
            copy.write(data)
        return None
    except IntegrityError:
        pass
    cursor.execute(_TEMP_TABLE_SQL)
    with connection.wrap_database_errors, cursor.cursor.copy(_COPY_TEMP_SQL) as copy:
        copy.write(data)
    cursor.execute(_INSERT_READINGS_SQL)
    return {(sensor_id, (ts - EPOCH) // ONE_US) for sensor_id, ts in cursor.fetchall()}


def _outcome(
    groups: list[tuple[DeviceEntry, list[tuple[int, str, float]]]],
    created: dict[tuple[int, str], int],
    changes: list[DeviceChange],
    redelivered: frozenset[tuple[int, int]] | None,
) -> BatchOutcome:
    """The batch for both lanes: nothing per reading.

    The groups go as they are. A device that got new sensors in this batch goes with a
    sensor map of its own: the registry learns them only after the commit.
    """
    at = datetime.now(tz=EPOCH.tzinfo)
    if not created:
        return BatchOutcome(groups=groups, devices=changes, redelivered=redelivered, at=at)
    new: dict[int, dict[str, int]] = {}
    for (device_id, key), sensor_id in created.items():
        new.setdefault(device_id, {})[key] = sensor_id
    refs: dict[int, DeviceSensors] = {}
    out: list[ReadingGroup] = []
    for entry, rows in groups:
        if entry.id not in new:
            out.append((entry, rows))
            continue
        ref = refs.get(entry.id)
        if ref is None:
            ref = refs[entry.id] = DeviceSensors(entry.id, entry.farm_id, {**entry.sensors, **new[entry.id]})
        out.append((ref, rows))
    return BatchOutcome(groups=out, devices=changes, redelivered=redelivered, at=at)


# --- devices, unknown devices, dead letters --------------------------------------------------


def _lock_devices(updates: dict[int, DeviceUpdate]) -> None:
    if updates:
        _bound(_LOCK_DEVICES_SQL, [sorted(updates)], fetch=False)


def _update_devices(updates: dict[int, DeviceUpdate]) -> list[DeviceChange]:
    if not updates:
        return []
    rows: list[tuple[Any, ...]] = []
    for device_id in sorted(updates):
        update = updates[device_id]
        seen = None if update.last_seen_us is None else _moment(update.last_seen_us)
        link = [update.link[k][1] if k in update.link else None for k in LINK_KEYS]
        rows.append((device_id, seen, update.status, update.if_unknown, *link))
    return [DeviceChange(*row) for row in _bound(_DEVICES_SQL, _columns(rows))[1]]


def _upsert_unknown(unknown: dict[str, UnknownUpdate]) -> None:
    if not unknown:
        return
    rows: list[tuple[Any, ...]] = []
    for uid in sorted(unknown):
        r = unknown[uid]
        rows.append((uid, r.source, r.topic, _moment(r.first_us), _moment(r.last_us), r.count, r.payload))
    with connection.cursor() as cursor:
        cursor.execute(_UNKNOWN_SQL, _columns(rows))


@dataclass(slots=True)
class _DeadLetterRow:
    """One dead-letter row of a batch: the first delivery of a message, counted once per delivery."""

    msg: Decoded
    reason: str
    first_us: int
    last_us: int
    count: int = 1


def _upsert_skipped_fields(skipped: dict[tuple[int, str], SkippedUpdate]) -> None:
    if not skipped:
        return
    rows: list[tuple[Any, ...]] = []
    for device_id, name in sorted(skipped):  # sorted: concurrent upserts lock rows in one order
        r = skipped[device_id, name]
        rows.append(
            (
                device_id,
                name,
                r.category,
                _clip(r.reason, REASON_MAX),
                r.example,
                _moment(r.first_us),
                _moment(r.last_us),
                r.count,
            )
        )
    with connection.cursor() as cursor:
        cursor.execute(_SKIPPED_SQL, [*_columns(rows), SKIPPED_FIELDS_PER_DEVICE])


def _insert_dead_letters(dead: list[tuple[Decoded, str]], category: str | None = None) -> None:
    """Upsert dead letters; each takes its message's category unless ``category`` overrides it."""
    if not dead:
        return
    by_fingerprint: dict[str, _DeadLetterRow] = {}
    for msg, reason in dead:  # one row per distinct message: ON CONFLICT cannot touch a row twice
        fingerprint = dead_letter_fingerprint(msg.topic, msg.payload)
        row = by_fingerprint.get(fingerprint)
        if row is None:
            by_fingerprint[fingerprint] = _DeadLetterRow(msg, reason, msg.received_us, msg.received_us)
            continue
        row.count += 1
        row.first_us, row.last_us = min(row.first_us, msg.received_us), max(row.last_us, msg.received_us)
        row.reason = reason
    rows: list[tuple[Any, ...]] = []
    for fingerprint in sorted(by_fingerprint):  # sorted: concurrent upserts lock rows in one order
        r = by_fingerprint[fingerprint]
        payload = r.msg.payload
        rows.append(
            (
                fingerprint,
                _moment(r.first_us),
                _moment(r.last_us),
                r.count,
                _topic(r.msg),
                bytes(payload[:DEAD_LETTER_MAX_BYTES]),
                len(payload),
                _clip(r.reason, REASON_MAX),
                category or r.msg.category or RejectCategory.INTERNAL,
                r.msg.source,
            )
        )
    with connection.cursor() as cursor:
        cursor.execute(_DEAD_LETTERS_SQL, _columns(rows))


def dead_letter_fingerprint(topic: bytes, payload: bytes) -> str:
    """The dedupe key of a dead letter: sha256 of the length-prefixed topic and the whole payload."""
    digest = hashlib.sha256(len(topic).to_bytes(4, "big"))
    digest.update(topic)
    digest.update(payload)
    return digest.hexdigest()


def _bound(sql: str, params: Sequence[Any], *, fetch: bool = True) -> tuple[int, list[tuple[Any, ...]]]:
    """Run one of a batch's per-batch statements, bound by the server and prepared; (rowcount, rows).

    Django's cursors bind on the client: they spell out every element of an array as SQL
    text, in Python (~10 ms of a 5,000-message batch for the device lock and update of
    1,000 devices). Here the arrays travel in binary (``%b``) and the statement, the same
    every batch, is planned once per connection.
    """
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.rowcount, (cursor.fetchall() if fetch else [])


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as columns: the array parameters of an ``unnest(%s, %s, …)`` statement."""
    return [list(column) for column in zip(*rows, strict=True)]


def dead_letter_rows(dead: list[tuple[Decoded, str]]) -> int:
    """Store dead letters on their own: messages that failed to store (an internal error)."""
    with transaction.atomic():
        _insert_dead_letters(dead, RejectCategory.INTERNAL)
    return len(dead)


def _moment(us: int) -> datetime:
    return EPOCH + us * ONE_US


def _topic(msg: Decoded) -> str:
    return _clip(topics.topic_text(msg.topic).replace("\x00", "\\x00"), TOPIC_MAX)


def _payload_text(payload: bytes) -> str:
    text = payload[:DEAD_LETTER_MAX_BYTES].decode("utf-8", errors="replace")
    return text.replace("\x00", "\\x00")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
