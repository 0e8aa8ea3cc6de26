"""What the dashboard's charts and sparklines cover, and sparklines drawn as SVG.

The readings come from ``sensors.history.selectors``, bucketed in the database: the
browser gets at most ``width`` buckets, each with its mean, min, max and count, and
draws the min/max as a band around the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sensors.history import selectors as history
from sensors.history.types import MeanSeries, Series

RANGES: dict[str, int] = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600}
DEFAULT_RANGE = "6h"
DEFAULT_WIDTH = 800
MIN_WIDTH = 10
MAX_WIDTH = 2000

SPARKLINE_SECONDS = 6 * 3600
SPARKLINE_BUCKETS = 72
SPARK_W = 120
SPARK_H = 32


def window_end(now: datetime) -> datetime:
    """``now`` rounded up to the next whole second: the range is half-open and must include now."""
    return now.replace(microsecond=0) + timedelta(seconds=1)


def sensor_chart(*, sensor_id: int, end: datetime, range_key: str, width: int) -> Series:
    """One sensor's chart: the range named ``range_key`` up to ``end``, about one bucket per pixel."""
    start = end - timedelta(seconds=RANGES[range_key])
    return history.sensor_series(sensor_ids=[sensor_id], start=start, end=end, max_points=width)[sensor_id]


def farm_sparklines(*, sensor_ids: Sequence[int], end: datetime) -> dict[int, MeanSeries]:
    """The last hours of each sensor as bucket means, one query for the whole farm."""
    start = end - timedelta(seconds=SPARKLINE_SECONDS)
    return history.sensor_mean_series(sensor_ids=sensor_ids, start=start, end=end, max_points=SPARKLINE_BUCKETS)


@dataclass(frozen=True, slots=True)
class SparkPaths:
    line: str = ""
    area: str = ""


def sparkline_paths(spark: MeanSeries, *, start_ms: int, end_ms: int) -> SparkPaths:
    """SVG paths (a line and the area under it) of ``spark`` in a SPARK_W × SPARK_H box.

    The browser redraws sparklines with the same arithmetic
    (``static/dashboard/dashboard.js``: ``sparkPaths``). The means are bounded
    (``sensors.history.selectors``), so ``high - low`` cannot overflow.
    """
    if not spark.t:
        return SparkPaths()
    low, high = min(spark.mean), max(spark.mean)
    span = max(1, end_ms - start_ms)
    coords = []
    for t, v in zip(spark.t, spark.mean, strict=True):
        x = min(max((t - start_ms) / span * SPARK_W, 0.0), float(SPARK_W))
        # A flat line sits in the middle rather than on the floor.
        y = SPARK_H / 2 if high == low else SPARK_H - 2 - (v - low) / (high - low) * (SPARK_H - 4)
        coords.append((x, y))
    line = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    area = f"{line} L{coords[-1][0]:.1f},{SPARK_H} L{coords[0][0]:.1f},{SPARK_H} Z"
    return SparkPaths(line=line, area=area)
