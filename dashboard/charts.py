"""Server-side downsampling for charts and sparklines.

PostgreSQL does the bucketing (``date_bin`` over the (sensor_id, ts) primary
key), so a week of one-second readings never crosses into Python: the
browser gets at most ``width`` buckets, each with its mean, min, max and
count, and draws the min/max as a band around the mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection

RANGES: dict[str, int] = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600}
DEFAULT_RANGE = "6h"
DEFAULT_WIDTH = 800
MIN_WIDTH = 10
MAX_WIDTH = 2000

SPARKLINE_SECONDS = 6 * 3600
SPARKLINE_BUCKETS = 72
SPARK_W = 120
SPARK_H = 32

_SERIES_SQL = """
    SELECT (avg(extract(epoch FROM ts)) * 1000)::bigint AS t,
           avg(value), min(value), max(value), count(*)
    FROM sensors_reading
    WHERE sensor_id = %(sensor_id)s AND ts >= %(start)s AND ts < %(end)s
    GROUP BY date_bin(make_interval(secs => %(bucket)s), ts, %(start)s)
    ORDER BY 1
"""

_SPARKLINES_SQL = """
    SELECT sensor_id, (avg(extract(epoch FROM ts)) * 1000)::bigint AS t, avg(value)
    FROM sensors_reading
    WHERE sensor_id = ANY(%(sensor_ids)s) AND ts >= %(start)s AND ts < %(end)s
    GROUP BY sensor_id, date_bin(make_interval(secs => %(bucket)s), ts, %(start)s)
    ORDER BY 1, 2
"""


@dataclass(frozen=True, slots=True)
class Series:
    start: datetime
    end: datetime
    bucket_seconds: int
    t: list[int] = field(default_factory=list)
    avg: list[float] = field(default_factory=list)
    min: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    count: list[int] = field(default_factory=list)


def bucket_seconds_for(range_seconds: int, width: int) -> int:
    """The smallest whole-second bucket that splits the range into at most ``width`` buckets."""
    return max(1, math.ceil(range_seconds / width))


def window_end(now: datetime) -> datetime:
    """``now`` rounded up to the next whole second: the range is half-open and must include now."""
    return now.replace(microsecond=0) + timedelta(seconds=1)


def sensor_series(*, sensor_id: int, end: datetime, range_seconds: int, width: int) -> Series:
    """One sensor's readings in ``[end - range, end)`` as at most ``width`` buckets.

    Each point is placed at the mean time of the readings in its bucket, so a
    sparse series is drawn where its readings really are.
    """
    bucket = bucket_seconds_for(range_seconds, width)
    start = end - timedelta(seconds=range_seconds)
    params: dict[str, Any] = {"sensor_id": sensor_id, "start": start, "end": end, "bucket": bucket}
    with connection.cursor() as cursor:
        cursor.execute(_SERIES_SQL, params)
        rows = cursor.fetchall()
    return Series(
        start=start,
        end=end,
        bucket_seconds=bucket,
        t=[row[0] for row in rows],
        avg=[compact_float(row[1]) for row in rows],
        min=[row[2] for row in rows],
        max=[row[3] for row in rows],
        count=[row[4] for row in rows],
    )


def farm_sparklines(*, sensor_ids: Sequence[int], end: datetime) -> dict[int, list[tuple[int, float]]]:
    """The last hours of each sensor as (ms, mean) points, one query for the whole farm."""
    if not sensor_ids:
        return {}
    params: dict[str, Any] = {
        "sensor_ids": list(sensor_ids),
        "start": end - timedelta(seconds=SPARKLINE_SECONDS),
        "end": end,
        "bucket": bucket_seconds_for(SPARKLINE_SECONDS, SPARKLINE_BUCKETS),
    }
    with connection.cursor() as cursor:
        cursor.execute(_SPARKLINES_SQL, params)
        rows = cursor.fetchall()
    lines: dict[int, list[tuple[int, float]]] = {sensor_id: [] for sensor_id in sensor_ids}
    for sensor_id, t, mean in rows:
        lines[sensor_id].append((t, compact_float(mean)))
    return lines


def compact_float(value: float) -> float:
    """Six significant digits: a mean of sensor values needs no more, and the JSON stays small."""
    return float(f"{value:.6g}")


@dataclass(frozen=True, slots=True)
class SparkPaths:
    line: str = ""
    area: str = ""


def sparkline_paths(points: Iterable[tuple[int, float]], *, start_ms: int, end_ms: int) -> SparkPaths:
    """SVG paths (a line and the area under it) of ``points`` in a SPARK_W × SPARK_H box.

    The browser redraws sparklines with the same arithmetic
    (``static/dashboard/dashboard.js``: ``sparkPaths``).
    """
    pts = list(points)
    if not pts:
        return SparkPaths()
    values = [v for _, v in pts]
    low, high = min(values), max(values)
    span = max(1, end_ms - start_ms)
    coords = []
    for t, v in pts:
        x = min(max((t - start_ms) / span * SPARK_W, 0.0), float(SPARK_W))
        # A flat line sits in the middle rather than on the floor.
        y = SPARK_H / 2 if high == low else SPARK_H - 2 - (v - low) / (high - low) * (SPARK_H - 4)
        coords.append((x, y))
    line = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    area = f"{line} L{coords[-1][0]:.1f},{SPARK_H} L{coords[0][0]:.1f},{SPARK_H} Z"
    return SparkPaths(line=line, area=area)
