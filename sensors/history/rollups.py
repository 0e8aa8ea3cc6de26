"""Hourly and local-daily rollups of readings: dirty buckets logged in each ingest batch, recomputed by a refresher.

``rollups_write`` is a batch writer (the durable lane, docs/architecture.md §1 and §5): in
the batch's transaction it appends the (device, hour) pairs that the batch's *new* readings
fall in (``outcome.series()``: a redelivered reading is not in it, so it dirties nothing) to
``sensors_rollupdirty``, a log with no key or index: one ``INSERT … SELECT FROM unnest`` of
two arrays bound in binary. A batch that rolls back takes its log rows with it; one that
commits cannot lose them. ``rollups_refresh`` (a beat task every ``ROLLUPS_REFRESH_SECONDS``,
and ``manage.py refresh_rollups``) claims the log and recomputes exactly those hours of the devices' sensors, and
the farms' local days they touch, from the raw readings in set-based statements. A
recompute is exact whatever order readings came in: a late or backfilled reading dirties
its old bucket, which is recomputed as if it had come on time.

Why not fold each batch into its buckets in the transaction (what this module did first):
that upsert cost the ingest drain 0.65-0.73x of its speed without rollups (the issue asks
0.9x); appending to the log drained at 0.90-0.94x (docs/benchmarks.md, "History", round 3). The price is
freshness: a bucket is right once the next refresh has run (within ~15 s, see README), and
the refresh reads every raw reading of each dirty hour again (and of each dirty local day in a
30/45-minute zone; other days are folded from their hours).

A day is the local day of the sensor's farm (``farm_farm.time_zone``): 23 or 25 hours
when the clocks change. An hour is a UTC hour; with a 30- or 45-minute offset an hour can
straddle local midnight, so each dirty hour dirties the local days of its first and last
microsecond. Changing a farm's time zone leaves its old days as they were;
``rollups_rebuild`` recomputes them from the raw readings still kept.

Rollups outlive raw retention: the refresher never recomputes an hour or day that starts
before ``now - READINGS_RAW_RETENTION`` (its raw readings may be gone, partly or wholly),
and it holds the same transaction-level advisory lock as the partition drop and the
sensors' delete trigger, so neither runs between its statements. Ingest accepts readings
up to ``INGEST_RETENTION_DAYS`` old; one older than the raw retention (set shorter than
that) is stored until the next drop but changes no rollup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, Final

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from sensors.hooks import BatchOutcome

from . import pgarrays
from .pgarrays import int8_array

HOUR_US: Final = 3_600_000_000
_TS, _KEY = itemgetter(0), itemgetter(1)
ROLLUP_LOCK: Final = 0x46_52_4F_4C_4C  # pg_advisory_xact_lock key: refresher, partition drop, sensor delete

# The aggregates of raw readings, for the recompute (and rebuild) below.
_AGGREGATES = """count(*) AS count, sum(least(greatest(value, -1e250::float8), 1e250::float8)::numeric) AS sum,
    min(value) AS min, max(value) AS max, min(ts) AS first_ts, (array_agg(value ORDER BY ts))[1] AS first_value,
    max(ts) AS last_ts, (array_agg(value ORDER BY ts DESC))[1] AS last_value"""
# Rows that are already buckets, folded into bigger ones: days from hours (the refresh, bench/history_bench.py).
_REFOLD = """sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max, min(first_ts) AS first_ts,
    (array_agg(first_value ORDER BY first_ts))[1] AS first_value, max(last_ts) AS last_ts,
    (array_agg(last_value ORDER BY last_ts DESC))[1] AS last_value"""

# The same buckets computed from the raw readings: what the fold must always equal.
_RECOMPUTE_HOURS_SQL = """
SELECT sensor_id, date_bin('1 hour', ts, 'epoch') AS bucket, {aggregates}
FROM sensors_reading WHERE sensor_id = ANY(%(sensor_ids)s) AND abs(value) < 'Infinity'
    AND ts >= %(start)s AND ts < %(end)s
GROUP BY 1, 2
"""
_RECOMPUTE_DAYS_SQL = """
SELECT r.sensor_id, (r.ts AT TIME ZONE f.time_zone)::date AS day, {aggregates}
FROM sensors_reading r JOIN sensors_sensor s ON s.id = r.sensor_id
JOIN sensors_device d ON d.id = s.device_id JOIN farm_farm f ON f.id = d.farm_id
WHERE r.sensor_id = ANY(%(sensor_ids)s) AND abs(r.value) < 'Infinity' AND r.ts >= %(start)s AND r.ts < %(end)s
GROUP BY 1, 2
"""
RECOMPUTE_HOURS_SQL = _RECOMPUTE_HOURS_SQL.format(aggregates=_AGGREGATES)
# The joined sensor, device and farm rows have no ts or value: the aggregates stay unqualified.
RECOMPUTE_DAYS_SQL = _RECOMPUTE_DAYS_SQL.format(aggregates=_AGGREGATES)
_COLUMNS = "count, sum, min, max, first_ts, first_value, last_ts, last_value"
_REPLACE = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS.split(", "))


# Appended by every batch: two arrays bound in binary, no key to check, no index to update.
_LOG_SQL = """
INSERT INTO sensors_rollupdirty (device_id, hour)
SELECT device_id, 'epoch'::timestamptz + hour_us * interval '1 microsecond'
FROM unnest(%(device_id)b::int8[], %(hour_us)b::int8[]) AS k(device_id, hour_us)
"""


def _dirty_hours(outcome: BatchOutcome) -> set[tuple[int, int]]:
    """The (device id, hour µs) pairs of the batch's new readings, with no Python step per reading when it can.

    By device, not sensor: a device's metrics mostly report together, so a 10-metric batch
    logs a tenth of the rows, and the refresher recomputes each of the device's sensors for
    the hour (one with no reading in it has no bucket to change). ``outcome.series()`` would
    sort every reading into per-sensor lists (for 50,000 readings ~130 ms of Python,
    bench/store_bench.py); instead each message's rows are reduced at C speed (the min and
    max of their times) and only a message spanning hours is walked row by row. A batch with
    redelivered rows takes ``new_rows()``, so a reading already stored dirties nothing.
    """
    if outcome.redelivered is not None:
        return {(row[1], row[3] - row[3] % HOUR_US) for row in outcome.new_rows()}
    pairs: set[tuple[int, int]] = set()
    add = pairs.add
    for device, rows in outcome.groups:
        if len(rows) == 1:
            ts = rows[0][0]
            add((device.id, ts - ts % HOUR_US))
        elif rows:
            low, high = min(map(_TS, rows)), max(map(_TS, rows))
            hour = low - low % HOUR_US
            if high < hour + HOUR_US:
                add((device.id, hour))
            else:
                pairs.update((device.id, ts - ts % HOUR_US) for ts, _, _ in rows)
    return pairs


def rollups_write(outcome: BatchOutcome) -> None:
    """Log the hours the batch's new readings fall in as dirty (a batch writer: runs in the batch's transaction)."""
    pairs = _dirty_hours(outcome)
    if not pairs:
        return
    device_ids, hours = zip(*pairs, strict=True)
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        pgarrays.register(cursor)
        cursor.execute(_LOG_SQL, {"device_id": int8_array(device_ids), "hour_us": int8_array(hours)}, prepare=True)


# Claims every committed log row (see rollups_refresh on snapshots); each of the devices' sensors
# and hours once, in key order.
_CLAIM_SQL = """
WITH claimed AS (DELETE FROM sensors_rollupdirty RETURNING device_id, hour),
pairs AS (SELECT DISTINCT s.id AS sensor_id, c.hour FROM claimed c JOIN sensors_sensor s ON s.device_id = c.device_id)
SELECT coalesce(array_agg(sensor_id ORDER BY sensor_id, hour), '{}'),
       coalesce(array_agg(hour ORDER BY sensor_id, hour), '{}'),
       (SELECT count(*) FROM claimed)
FROM pairs WHERE hour >= %(horizon)s
"""
# The dirty hours recomputed from raw (the aggregates of RECOMPUTE_HOURS_SQL), each by its own
# index range scan (LATERAL: a join let the planner hash-join a whole partition): upserted in key
# order (HOT updates on the rollups' spare page room, migration 0013; two refreshes never overlap
# anyway), and an hour whose readings are all gone (none finite) deleted.
_REFRESH_HOURS_SQL = """
WITH k AS (SELECT * FROM unnest(%(sensor_id)s::int8[], %(hour)s::timestamptz[]) AS k(sensor_id, bucket)),
fresh AS MATERIALIZED (
    SELECT k.sensor_id, k.bucket, a.*
    FROM k CROSS JOIN LATERAL (
        SELECT {aggregates} FROM sensors_reading
        WHERE sensor_id = k.sensor_id AND ts >= k.bucket AND ts < k.bucket + interval '1 hour'
            AND abs(value) < 'Infinity'
    ) AS a
    WHERE a.count > 0
)
{tail}"""
# The local days of the dirty hours (an hour's first and last microsecond: a 30- or 45-minute
# offset puts local midnight inside a UTC hour). A day whose both midnights are whole UTC hours
# is folded from its hourly rollups, just recomputed above in this transaction (24 rows, not
# every reading of the day: measured in docs/benchmarks.md, History round 3); any other day is
# recomputed from raw exactly as RECOMPUTE_DAYS_SQL groups, by one index range scan: the readings
# whose local date is the day, looked for between its midnights widened by 3 hours (a bound on
# PostgreSQL's reading of a midnight a clock change skips). An hour rollup is exact unless its
# hour is still in the log (its batch committed after this refresh's claim): then so is the day's
# hour, and the next refresh folds the day again. A day that starts before the horizon is left
# alone (rollups outlive raw retention).
_REFRESH_DAYS_SQL = """
WITH k AS (
    SELECT DISTINCT u.sensor_id, d.day, f.time_zone
    FROM unnest(%(sensor_id)s::int8[], %(hour)s::timestamptz[]) AS u(sensor_id, hour)
    JOIN sensors_sensor s ON s.id = u.sensor_id JOIN sensors_device dv ON dv.id = s.device_id
    JOIN farm_farm f ON f.id = dv.farm_id
    CROSS JOIN LATERAL (VALUES ((u.hour AT TIME ZONE f.time_zone)::date),
        (((u.hour + interval '1 hour' - interval '1 microsecond') AT TIME ZONE f.time_zone)::date)) AS d(day)
), m AS (
    SELECT sensor_id, day, time_zone, day::timestamp AT TIME ZONE time_zone AS start,
           (day + 1)::timestamp AT TIME ZONE time_zone AS stop
    FROM k
), b AS (
    SELECT *, date_bin('1 hour', start, 'epoch') = start AND date_bin('1 hour', stop, 'epoch') = stop AS whole
    FROM m WHERE start >= %(horizon)s
), fresh AS MATERIALIZED (
    SELECT b.sensor_id, b.day, a.*
    FROM b CROSS JOIN LATERAL (
        SELECT {refold} FROM sensors_rolluphour WHERE sensor_id = b.sensor_id AND bucket >= b.start AND bucket < b.stop
    ) AS a
    WHERE b.whole AND a.count > 0
    UNION ALL
    SELECT b.sensor_id, b.day, a.*
    FROM b CROSS JOIN LATERAL (
        SELECT {aggregates} FROM sensors_reading
        WHERE sensor_id = b.sensor_id AND ts >= b.start - interval '3 hours' AND ts < b.stop + interval '3 hours'
            AND (ts AT TIME ZONE b.time_zone)::date = b.day AND abs(value) < 'Infinity'
    ) AS a
    WHERE NOT b.whole AND a.count > 0
)
{tail}"""


# Both end alike: the keys asked for (``{keys}``) that have no fresh aggregates are deleted,
# the rest upserted in key order.
_REPLACE_BUCKETS = """, gone AS (
    DELETE FROM {table} o USING {keys} WHERE o.sensor_id = {keys}.sensor_id AND o.{key} = {keys}.{key}
        AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.sensor_id = {keys}.sensor_id AND f.{key} = {keys}.{key})
)
INSERT INTO {table} AS o (sensor_id, {key}, {columns})
SELECT * FROM fresh ORDER BY 1, 2
ON CONFLICT (sensor_id, {key}) DO UPDATE SET {replace}
"""
REFRESH_HOURS_SQL = _REFRESH_HOURS_SQL.format(
    aggregates=_AGGREGATES,
    tail=_REPLACE_BUCKETS.format(
        table="sensors_rolluphour", key="bucket", keys="k", columns=_COLUMNS, replace=_REPLACE
    ),
)
REFRESH_DAYS_SQL = _REFRESH_DAYS_SQL.format(
    aggregates=_AGGREGATES,
    refold=_REFOLD,
    tail=_REPLACE_BUCKETS.format(table="sensors_rollupday", key="day", keys="b", columns=_COLUMNS, replace=_REPLACE),
)
_BEGINNING: Final = datetime(1, 1, 2, tzinfo=UTC)  # no retention: every bucket is recomputed


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one ``rollups_refresh`` did; ``ran`` is False when another refresher held the lock."""

    ran: bool
    logged: int = 0  # log rows claimed
    hours: int = 0  # distinct dirty (sensor, hour) pairs recomputed (those past the horizon dropped)
    days: int = 0  # day rollups written
    seconds: float = 0.0


def raw_horizon(*, now: datetime) -> datetime | None:
    """The oldest instant whose raw readings are surely kept (``READINGS_RAW_RETENTION``); None: all are."""
    if not settings.READINGS_RAW_RETENTION:
        return None
    return now - timedelta(days=settings.READINGS_RAW_RETENTION)


def rollups_refresh() -> RefreshResult:
    """Recompute every logged dirty hour, and the local days it touches, from raw readings; one transaction.

    Concurrency, under READ COMMITTED (each statement sees what committed before it began):

    - Two refreshers: the transaction-level advisory lock lets one run; the other returns at
      once (``ran=False``: the running one, or the next beat, does the work). Two recomputes
      of one bucket from different snapshots could otherwise commit in the wrong order.
    - A batch committing during a refresh: the claim (``DELETE … RETURNING``) deletes only
      log rows committed before its snapshot. Every later statement of the refresh takes a
      newer snapshot, so each claimed row's readings (committed with it, before the claim)
      are seen by the recompute. A batch that commits after the claim's snapshot keeps its
      log rows, whatever the recompute happened to see of its readings: the next refresh
      recomputes those buckets again. Nothing is lost; a bucket is at worst recomputed twice.
      Log rows are only ever deleted here, under the lock, so no two claims race.
    - The partition drop and the sensors' delete trigger take the same lock (blocking), so
      raw readings never vanish between the horizon check and the recompute, and a deleted
      sensor's rollups are not written back from a snapshot that still saw its readings.
    """
    started = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [ROLLUP_LOCK])
        if not cursor.fetchone()[0]:
            return RefreshResult(ran=False)
        horizon = raw_horizon(now=timezone.now()) or _BEGINNING
        cursor.execute(_CLAIM_SQL, {"horizon": horizon})
        sensor_ids, hours, logged = cursor.fetchone()
        days = 0
        if hours:
            params = {"sensor_id": sensor_ids, "hour": hours, "horizon": horizon}
            cursor.execute(REFRESH_HOURS_SQL, params)
            cursor.execute(REFRESH_DAYS_SQL, params)
            days = cursor.rowcount
    return RefreshResult(
        ran=True, logged=logged, hours=len(hours), days=days, seconds=(timezone.now() - started).total_seconds()
    )


def rollups_rebuild(*, sensor_ids: Sequence[int], start: datetime, end: datetime) -> None:
    """Recompute from raw readings every hour bucket starting in ``[start, end)`` and every local day of it.

    For readings written behind the ingest store's back, or a farm's changed time zone.
    ``start`` and ``end`` should be whole local days of the farms concerned (a partly covered
    day would be rebuilt from part of its readings); rollups outside them are left alone,
    so days whose raw readings retention has dropped are kept.
    """
    ids = list(sensor_ids)
    params: dict[str, Any] = {"sensor_ids": ids, "start": start, "end": end}
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM sensors_rolluphour WHERE sensor_id = ANY(%(sensor_ids)s) "
            "AND bucket >= %(start)s AND bucket < %(end)s",
            params,
        )
        cursor.execute(f"INSERT INTO sensors_rolluphour (sensor_id, bucket, {_COLUMNS}) {RECOMPUTE_HOURS_SQL}", params)
        cursor.execute(
            "DELETE FROM sensors_rollupday o USING sensors_sensor s, sensors_device d, farm_farm f "
            "WHERE o.sensor_id = ANY(%(sensor_ids)s) AND s.id = o.sensor_id AND d.id = s.device_id "
            "AND f.id = d.farm_id AND o.day >= (%(start)s AT TIME ZONE f.time_zone)::date "
            "AND o.day <= ((%(end)s::timestamptz - interval '1 microsecond') AT TIME ZONE f.time_zone)::date",
            params,
        )
        cursor.execute(f"INSERT INTO sensors_rollupday (sensor_id, day, {_COLUMNS}) {RECOMPUTE_DAYS_SQL}", params)
