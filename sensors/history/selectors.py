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
key), so a week of one-second readings never crosses into Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from django.db import connection
from django.db.models import OuterRef, QuerySet, Subquery

from sensors.models import Reading, Sensor

from .types import LatestReading, MeanSeries, RawPoints, ReadingPoint, Series

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


def sensor_series(*, sensor_ids: Sequence[int], start: datetime, end: datetime, max_points: int) -> dict[int, Series]:
    """Each sensor's readings in ``[start, end)`` as at most ``max_points`` buckets, in one statement.

    Every sensor asked for has an entry, empty without readings. This signature is the
    contract rollups keep: a wide range may read hourly or daily rollups instead of raw
    rows, and callers get the same shape (``bucket_seconds`` says how coarse).
    """
    bucket = bucket_seconds_for(span_seconds=(end - start).total_seconds(), max_points=max_points)
    series = {sid: Series(sensor_id=sid, start=start, end=end, bucket_seconds=bucket) for sid in sensor_ids}
    for sensor_id, t, mean, low, high, count in _bucket_rows(_SERIES_SQL, list(series), start, end, bucket):
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
    bucket = bucket_seconds_for(span_seconds=(end - start).total_seconds(), max_points=max_points)
    lines = {sid: MeanSeries(sensor_id=sid) for sid in sensor_ids}
    for sensor_id, t, mean in _bucket_rows(_MEANS_SQL, list(lines), start, end, bucket):
        line = lines[sensor_id]
        line.t.append(t)
        line.mean.append(mean)
    return lines


def _bucket_rows(sql: str, sensor_ids: list[int], start: datetime, end: datetime, bucket: int) -> list[tuple[Any, ...]]:
    if not sensor_ids:
        return []
    params: dict[str, Any] = {"sensor_ids": sensor_ids, "start": start, "end": end, "bucket": bucket}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


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
