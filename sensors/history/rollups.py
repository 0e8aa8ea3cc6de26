"""Hourly and local-daily rollups of readings, kept in each ingest batch's transaction (docs/architecture.md §1).

``rollups_write`` is a batch writer (the durable lane): it folds a batch's *new* readings
(``outcome.series()``: a redelivered reading is not in it) into the hour and day buckets
they fall in, in one statement for both tables, from quarter-hour runs cut in Python
(sensors/history/quarters.py; for a 5,000-reading batch of 100 sensors ~1 ms of Python and
~5 ms of SQL on a quiet machine, 10-20 ms under load: docs/benchmarks.md, "History").
Folding is exact and order-free: count and (numeric) sum add, min and max take the
extremes, first and last keep the reading with the earliest and latest time, so a late or
backfilled reading lands in its old bucket exactly as if it had come on time. A batch that
rolls back takes its rollup changes with it.

A day is the local day of the sensor's farm (``farm_farm.time_zone``): 23 or 25 hours
when the clocks change. Changing a farm's time zone leaves its old days as they were;
``rollups_rebuild`` recomputes them from the raw readings still kept.

Measured against the alternative (record dirty buckets in the transaction, recompute them
from raw rows in a task): the in-transaction fold reads nothing back, costs one statement
per batch (README, "History"), and is fresh at commit; a recompute reads every raw row of
every touched bucket again and is fresh only when the task runs. The price is on the ingest
path: draining with rollups runs at ~0.65-0.75x of draining without (the issue asks 0.9x;
an append-only log of dirty hours measured 0.95-1.03x), see docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from django.db import connection

from sensors.hooks import BatchOutcome

from . import pgarrays
from .pgarrays import float8_array, int4_array, int8_array
from .quarters import quarters_of

# One statement: the batch's quarter-hour runs (sensors/history/quarters.py) and, for their
# exact sums, its values; each run's sum is taken over its own slice of the values (no per-value
# run number to send). The runs are folded into hours and the farms' local days and upserted
# in key order (two workers upsert the same buckets in one order: no deadlock). Every array is
# bound prebuilt in binary (sensors/history/pgarrays.py).
_FOLD_SQL = """
WITH q AS MATERIALIZED (
    SELECT k.sensor_id, 'epoch'::timestamptz + k.start_us * interval '1 microsecond' AS quarter, k.count,
           (SELECT sum(least(greatest(v, -1e250::float8), 1e250::float8)::numeric)
            FROM unnest((%(values)b::float8[])[k.first_index : k.first_index + k.count - 1]) AS v) AS sum,
           k.min, k.max, 'epoch'::timestamptz + k.first_us * interval '1 microsecond' AS first_ts, k.first_value,
           'epoch'::timestamptz + k.last_us * interval '1 microsecond' AS last_ts, k.last_value
    FROM unnest(%(sensor_id)b::int8[], %(start_us)b::int8[], %(count)b::int8[], %(min)b::float8[],
                %(max)b::float8[], %(first_us)b::int8[], %(first_value)b::float8[], %(last_us)b::int8[],
                %(last_value)b::float8[], %(first_index)b::int4[])
        AS k(sensor_id, start_us, count, min, max, first_us, first_value, last_us, last_value, first_index)
), zones AS (
    SELECT s.id AS sensor_id, f.time_zone FROM sensors_sensor s
    JOIN sensors_device d ON d.id = s.device_id JOIN farm_farm f ON f.id = d.farm_id
    WHERE s.id = ANY(%(distinct_ids)b::int8[])
), hours AS (
    INSERT INTO sensors_rolluphour AS o
        (sensor_id, bucket, count, sum, min, max, first_ts, first_value, last_ts, last_value)
    SELECT sensor_id, date_bin('1 hour', quarter, 'epoch'), {refold}
    FROM q GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (sensor_id, bucket) DO UPDATE SET {fold}
    RETURNING 1
)
INSERT INTO sensors_rollupday AS o (sensor_id, day, count, sum, min, max, first_ts, first_value, last_ts, last_value)
SELECT q.sensor_id, (q.quarter AT TIME ZONE z.time_zone)::date, {refold}
FROM q JOIN zones z USING (sensor_id) GROUP BY 1, 2 ORDER BY 1, 2
ON CONFLICT (sensor_id, day) DO UPDATE SET {fold}
"""
# The aggregates of raw readings, for the recompute (and rebuild) below.
_AGGREGATES = """count(*) AS count, sum(least(greatest(value, -1e250::float8), 1e250::float8)::numeric) AS sum,
    min(value) AS min, max(value) AS max, min(ts) AS first_ts, (array_agg(value ORDER BY ts))[1] AS first_value,
    max(ts) AS last_ts, (array_agg(value ORDER BY ts DESC))[1] AS last_value"""
# Rows that are already buckets, folded into bigger ones: the same algebra as _FOLD.
_REFOLD = """sum(count), sum(sum), min(min), max(max), min(first_ts), (array_agg(first_value ORDER BY first_ts))[1],
    max(last_ts), (array_agg(last_value ORDER BY last_ts DESC))[1]"""
_FOLD = """count = o.count + EXCLUDED.count, sum = o.sum + EXCLUDED.sum,
    min = least(o.min, EXCLUDED.min), max = greatest(o.max, EXCLUDED.max),
    first_value = CASE WHEN EXCLUDED.first_ts < o.first_ts THEN EXCLUDED.first_value ELSE o.first_value END,
    first_ts = least(o.first_ts, EXCLUDED.first_ts),
    last_value = CASE WHEN EXCLUDED.last_ts > o.last_ts THEN EXCLUDED.last_value ELSE o.last_value END,
    last_ts = greatest(o.last_ts, EXCLUDED.last_ts)"""
# Bound by the server, arrays in binary (%(…)b): Django's client-side binding would spell out a
# batch's numbers as SQL text (~25 ms a 5,000-reading batch, more than the statement itself), and
# psycopg's list dumper costs ~0.25 µs an element (pgarrays.py).
FOLD_SQL = _FOLD_SQL.format(refold=_REFOLD, fold=_FOLD)

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


def rollups_write(outcome: BatchOutcome) -> None:
    """Fold a batch's new readings into their hour and day rollups (a batch writer: runs in the batch's transaction)."""
    quarters = quarters_of(outcome.series())
    if not quarters.count:
        return
    params: dict[str, Any] = {
        "sensor_id": int8_array(quarters.sensor_id),
        "start_us": int8_array(quarters.start_us),
        "count": int8_array(quarters.count),
        "min": float8_array(quarters.min),
        "max": float8_array(quarters.max),
        "first_us": int8_array(quarters.first_us),
        "first_value": float8_array(quarters.first_value),
        "last_us": int8_array(quarters.last_us),
        "last_value": float8_array(quarters.last_value),
        "first_index": int4_array(quarters.first_index),
        "values": float8_array(quarters.values),
        "distinct_ids": int8_array(sorted(set(quarters.sensor_id))),
    }
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        pgarrays.register(cursor)
        cursor.execute(FOLD_SQL, params, prepare=True)  # the same statement every batch: planned once


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
