"""Reads of readings: each sensor's latest value, its recent rows, and bucketed series.

Two promises every caller relies on, whatever a row holds (a row written by hand may
hold anything float8 can):

- Every number returned is finite. PostgreSQL's float8 holds NaN and ±Infinity and JSON
  has neither, so non-finite values are never read. (PostgreSQL sorts NaN above
  Infinity, so ``abs(value) < 'Infinity'`` keeps exactly the finite ones.)
- No stored value makes a query fail. ``avg(float8)`` also sums squares and overflows
  beyond ~1.3e154 (``DataError: value out of range: overflow``), and a plain sum
  overflows near 1.8e308; so a bucket's mean is the sum of its values clamped to
  ±1e250, over the count. That is exact for anything a sensor can measure, no bucket
  can hold enough readings to overflow it, and it costs what ``avg`` did.

Series are bucketed in the database (``date_bin`` over the (sensor_id, ts) primary
key), so a week of one-second readings never crosses into Python. A range wider than
``RAW_MAX_SPAN`` reads the hourly rollups instead (sensors/history/rollups.py), and a bucket of a
day or more the daily ones: a year of one sensor is ~8,760 hourly rows, not millions of
readings, and callers get the same ``Series`` (``resolution`` says which was read).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypedDict

from django.db import connection
from django.db.models import OuterRef, QuerySet, Subquery

from sensors.models import Reading, Sensor

from .types import DailySeries, LatestReading, MeanSeries, RawPoints, ReadingPoint, Resolution, Series

if TYPE_CHECKING:  # django_stubs_ext comes with the dev requirements only
    from typing import TypeAlias

    from django_stubs_ext import WithAnnotations


class LatestAnnotations(TypedDict):
    last_value: float | None
    last_ts: datetime | None


if TYPE_CHECKING:
    SensorWithLatest: TypeAlias = WithAnnotations[Sensor, LatestAnnotations]

# The mean and the finite filter are the ones the module docstring explains.
_SERIES_SQL = """
    SELECT sensor_id, (avg(extract(epoch FROM ts)) * 1000)::bigint AS t,
           sum(least(greatest(value, -1e250::float8), 1e250::float8)) / count(*), min(value), max(value), count(*)
    FROM sensors_reading
    WHERE sensor_id = ANY(%(sensor_ids)s) AND ts >= %(start)s AND ts < %(end)s AND abs(value) < 'Infinity'
    GROUP BY sensor_id, date_bin(make_interval(secs => %(bucket)s), ts, %(start)s)
    ORDER BY 1, 2
"""

_MEANS_SQL = """
    SELECT sensor_id, (avg(extract(epoch FROM ts)) * 1000)::bigint AS t,
           sum(least(greatest(value, -1e250::float8), 1e250::float8)) / count(*)
    FROM sensors_reading
    WHERE sensor_id = ANY(%(sensor_ids)s) AND ts >= %(start)s AND ts < %(end)s AND abs(value) < 'Infinity'
    GROUP BY sensor_id, date_bin(make_interval(secs => %(bucket)s), ts, %(start)s)
    ORDER BY 1, 2
"""

# Rollup rows to buckets: counts and sums add, extremes are kept; a bucket's time is the
# count-weighted middle of its rows' first and last readings (a sparse series stays where
# its readings are). The rollup's sum is numeric (exact); the mean goes back to float8. float8
# epochs (date_part), not extract()'s numeric: ~25 % of a year of 8 sensors (measured).
_ROLLUP_SERIES_SQL = """
    SELECT sensor_id,
           (sum(count * (date_part('epoch', first_ts) + date_part('epoch', last_ts)) / 2) / sum(count) * 1000)::bigint,
           sum(sum)::float8 / sum(count), min(min), max(max), sum(count)::bigint
    FROM {table}
    WHERE sensor_id = ANY(%(sensor_ids)s) AND {key} >= %(low)s AND {key} < %(high)s
          AND last_ts >= %(start)s AND first_ts < %(end)s
    GROUP BY sensor_id, date_bin(make_interval(secs => %(bucket)s), {key}::timestamptz, %(origin)s)
    ORDER BY 1, 2
"""
_HOURLY_SQL = _ROLLUP_SERIES_SQL.format(table="sensors_rolluphour", key="bucket")
# A day row's key is the farm's local date: the date_bin of its UTC midnight is near enough
# for buckets of whole days, and the range is widened by a day each side, then cut by time.
_DAILY_SQL = _ROLLUP_SERIES_SQL.format(table="sensors_rollupday", key="day")

_DAYS_SQL = """
    SELECT sensor_id, day, count, (sum / count)::float8, min, max, sum::float8
    FROM sensors_rollupday
    WHERE sensor_id = ANY(%(sensor_ids)s) AND day >= %(first)s AND day <= %(last)s
    ORDER BY 1, 2
"""

# Hours whose mean is below a threshold, per local day of ``time_zone`` (chill hours).
_HOURS_BELOW_SQL = """
    SELECT sensor_id, (bucket AT TIME ZONE %(time_zone)s)::date AS day,
           count(*) FILTER (WHERE sum / count < %(threshold)s)
    FROM sensors_rolluphour
    WHERE sensor_id = ANY(%(sensor_ids)s) AND bucket >= %(start)s AND bucket < %(end)s
    GROUP BY 1, 2 ORDER BY 1, 2
"""

RAW_MAX_SPAN: Final = timedelta(days=8)
"""Ranges up to this read raw readings (any bucket); wider ones read rollups."""
HOURLY_ROW_BUDGET: Final = 20_000
"""At most this many hourly rollup rows per series request (two sensors' year); beyond, daily ones."""
_HOUR, _DAY = 3600, 86400

# timestamptz reaches 294276 AD (and 'infinity'); Python's datetime stops at 9999, and
# loading a later one raises. A day's margin keeps any session time zone inside it.
_TS_MIN = datetime(1, 1, 2, tzinfo=UTC)
_TS_MAX = datetime(9999, 12, 30, tzinfo=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def bucket_seconds_for(*, span_seconds: float, max_points: int) -> int:
    """The smallest whole-second bucket that splits ``span_seconds`` into at most ``max_points`` buckets."""
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, not {max_points}")
    return max(1, math.ceil(span_seconds / max_points))


def series_plan(*, start: datetime, end: datetime, max_points: int, sensors: int = 1) -> tuple[Resolution, int]:
    """Which data a series of ``sensors`` sensors over ``[start, end)`` reads, and its bucket in seconds.

    Raw readings up to ``RAW_MAX_SPAN``; beyond it hourly rollups in buckets of whole hours,
    or daily rollups once a bucket is a day or more, or once the hourly rows to read would
    exceed ``HOURLY_ROW_BUDGET`` (8 sensors over a year: ~70,000 hourly rows took ~4x the
    time of the same range in days). Never more than ``max_points`` buckets.
    """
    span = (end - start).total_seconds()
    bucket = bucket_seconds_for(span_seconds=span, max_points=max_points)
    if span <= RAW_MAX_SPAN.total_seconds():
        return "raw", bucket
    if bucket < _DAY and sensors * span / _HOUR <= HOURLY_ROW_BUDGET:
        return "hour", math.ceil(bucket / _HOUR) * _HOUR
    return "day", math.ceil(bucket / _DAY) * _DAY


def sensor_series(*, sensor_ids: Sequence[int], start: datetime, end: datetime, max_points: int) -> dict[int, Series]:
    """Each sensor's readings in ``[start, end)`` as at most ``max_points`` buckets, in one statement.

    Every sensor asked for has an entry, empty without readings. A wide range reads
    rollups (``series_plan``): then buckets are whole hours or days and the range's edges
    widen to the hours (days) they fall in; ``bucket_seconds`` and ``resolution`` say so.
    """
    resolution, bucket = series_plan(start=start, end=end, max_points=max_points, sensors=len(sensor_ids))
    series = {
        sid: Series(sensor_id=sid, start=start, end=end, bucket_seconds=bucket, resolution=resolution)
        for sid in sensor_ids
    }
    for sensor_id, t, mean, low, high, count in _series_rows(resolution, list(series), start, end, bucket):
        one = series[sensor_id]
        one.t.append(t)
        one.mean.append(mean)
        one.min.append(low)
        one.max.append(high)
        one.count.append(count)
    return series


def sensor_mean_series(
    *, sensor_ids: Sequence[int], start: datetime, end: datetime, max_points: int
) -> dict[int, MeanSeries]:
    """``sensor_series`` with the means only (sparklines): the same buckets, less to aggregate and carry."""
    resolution, bucket = series_plan(start=start, end=end, max_points=max_points, sensors=len(sensor_ids))
    lines = {sid: MeanSeries(sensor_id=sid) for sid in sensor_ids}
    if resolution == "raw":
        rows = [row[:3] for row in _bucket_rows(_MEANS_SQL, list(lines), start, end, bucket)]
    else:
        rows = [row[:3] for row in _series_rows(resolution, list(lines), start, end, bucket)]
    for sensor_id, t, mean in rows:
        line = lines[sensor_id]
        line.t.append(t)
        line.mean.append(mean)
    return lines


def _series_rows(
    resolution: Resolution, sensor_ids: list[int], start: datetime, end: datetime, bucket: int
) -> list[tuple[Any, ...]]:
    if resolution == "raw":
        return _bucket_rows(_SERIES_SQL, sensor_ids, start, end, bucket)
    if not sensor_ids:
        return []
    params: dict[str, Any] = {"sensor_ids": sensor_ids, "start": start, "end": end, "bucket": bucket}
    if resolution == "hour":
        sql = _HOURLY_SQL
        params.update(origin=_floor(start, _HOUR), low=_floor(start, _HOUR), high=end)
    else:
        sql = _DAILY_SQL
        params.update(
            origin=_floor(start, _DAY), low=(start - timedelta(days=1)).date(), high=(end + timedelta(days=1)).date()
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = moment.timestamp()
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def _bucket_rows(sql: str, sensor_ids: list[int], start: datetime, end: datetime, bucket: int) -> list[tuple[Any, ...]]:
    if not sensor_ids:
        return []
    params: dict[str, Any] = {"sensor_ids": sensor_ids, "start": start, "end": end, "bucket": bucket}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def sensor_daily(*, sensor_ids: Sequence[int], first: date, last: date) -> dict[int, DailySeries]:
    """Each sensor's local days ``first`` to ``last`` (inclusive) from the daily rollups: rain bars, summaries."""
    days = {sid: DailySeries(sensor_id=sid) for sid in sensor_ids}
    if not days:
        return days
    with connection.cursor() as cursor:
        cursor.execute(_DAYS_SQL, {"sensor_ids": list(days), "first": first, "last": last})
        rows = cursor.fetchall()
    for sensor_id, day, count, mean, low, high, total in rows:
        one = days[sensor_id]
        one.day.append(day)
        one.count.append(count)
        one.mean.append(mean)
        one.min.append(low)
        one.max.append(high)
        one.sum.append(total)
    return days


def hours_below(
    *, sensor_ids: Sequence[int], start: datetime, end: datetime, time_zone: str, threshold: float
) -> dict[int, dict[date, int]]:
    """Per sensor and local day of ``time_zone``: how many hours of ``[start, end)`` had a mean below ``threshold``."""
    out: dict[int, dict[date, int]] = {sid: {} for sid in sensor_ids}
    if not out:
        return out
    params: dict[str, Any] = {
        "sensor_ids": list(out),
        "start": start,
        "end": end,
        "time_zone": time_zone,
        "threshold": threshold,
    }
    with connection.cursor() as cursor:
        cursor.execute(_HOURS_BELOW_SQL, params)
        for sensor_id, day, hours in cursor.fetchall():
            out[sensor_id][day] = hours
    return out


def with_latest(sensors: QuerySet[Sensor]) -> QuerySet[SensorWithLatest]:
    """``sensors``, each with ``last_value`` and ``last_ts`` of its newest finite reading (``None`` without one).

    An annotation rather than a list so lists (the admin's) can sort on it. Read from
    the readings rather than kept on the sensor row, so an ingest batch writes nothing
    to its sensors. Each is one backward probe of the primary key (sensor_id, ts) per
    sensor; the statement sees one snapshot, so the two belong to the same reading.
    """
    newest = _readable(Reading.objects.filter(sensor=OuterRef("pk"))).order_by("-ts")
    return sensors.annotate(last_value=Subquery(newest.values("value")[:1]), last_ts=Subquery(newest.values("ts")[:1]))


def latest_readings(*, sensors: QuerySet[Sensor]) -> list[LatestReading]:
    """The newest finite reading of each of ``sensors``, in the queryset's order, in one statement."""
    rows = with_latest(sensors).values_list("pk", "device_id", "last_value", "last_ts")
    return [LatestReading(sensor_id=pk, device_id=device_id, value=value, ts=ts) for pk, device_id, value, ts in rows]


# The newest ``n`` reading times of each sensor, newest first, as integer µs since the epoch (the
# shape ``sensors.hooks.SensorSeries`` carries). One backward probe of the primary key per sensor;
# the table's range partitions by ts are read newest first, so the LIMIT stops in the newest.
_NEWEST_TS_SQL = """
SELECT u.s, floor(extract(epoch FROM r.ts) * 1000000)::bigint
FROM unnest(%s::bigint[], %s::int[]) AS u(s, n)
CROSS JOIN LATERAL (SELECT ts FROM sensors_reading WHERE sensor_id = u.s ORDER BY ts DESC LIMIT u.n) AS r
"""


def newest_reading_times(*, limits: dict[int, int]) -> dict[int, list[int]]:
    """The newest ``limits[sensor id]`` reading times (µs since the epoch) of each sensor, newest first.

    As the caller's transaction sees them: inside an ingest batch, its own readings too (the
    alerts writer asks for one more than the batch brought to find the newest one before it).
    """
    out: dict[int, list[int]] = {}
    if not limits:
        return out
    sensor_ids = sorted(limits)
    with connection.cursor() as cursor:
        cursor.execute(_NEWEST_TS_SQL, [sensor_ids, [limits[s] for s in sensor_ids]])
        for sensor_id, ts in cursor.fetchall():
            out.setdefault(sensor_id, []).append(ts)
    for times in out.values():
        times.sort(reverse=True)
    return out


def sensor_readings_latest(*, sensor_id: int, limit: int = 50) -> list[ReadingPoint]:
    """Newest readings first; the primary key (sensor_id, ts) serves it with a backward index scan."""
    rows = _readable(Reading.objects.filter(sensor_id=sensor_id)).order_by("-ts").values_list("ts", "value")[:limit]
    return [ReadingPoint(ts=ts, value=value) for ts, value in rows]


def _readable(readings: QuerySet[Reading]) -> QuerySet[Reading]:
    """Only readings Python and JSON can carry: a finite value at a time ``datetime`` can hold."""
    return readings.filter(value__gt=-math.inf, value__lt=math.inf, ts__gte=_TS_MIN, ts__lt=_TS_MAX)


def sensor_raw_points(*, sensor_id: int, start: datetime, end: datetime) -> RawPoints:
    """Every finite reading in ``(start, end]``, oldest first: what a replay (the alert backtest) needs.

    One range scan of the primary key (sensor_id, ts), streamed in chunks.
    """
    rows = _readable(Reading.objects.filter(sensor_id=sensor_id, ts__gt=start, ts__lte=end))
    points = RawPoints(sensor_id)
    for ts, value in rows.order_by("ts").values_list("ts", "value").iterator(chunk_size=5000):
        points.ts.append((ts - _EPOCH) // _ONE_US)
        points.values.append(value)
    return points
