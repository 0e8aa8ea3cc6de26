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

# The least a y-axis spans, by unit: scaled to a 0.1 °C wobble, a calm night reads as a storm.
MIN_SPAN_BY_UNIT: dict[str, float] = {
    "°C": 2.0,
    "%": 5.0,
    "V": 0.2,
    "hPa": 4.0,
    "m/s": 2.0,
    "mm": 1.0,
    "dS/m": 0.2,
    "W/m²": 50.0,
    "m": 0.1,
    "°": 45.0,
    "dBm": 10.0,
    "dB": 3.0,
}
# Other units: this share of the metric's plausible range.
MIN_SPAN_SHARE = 0.05

SPARKLINE_SECONDS = 6 * 3600
SPARKLINE_BUCKETS = 72
SPARK_W = 120
SPARK_H = 32


def min_span(*, unit: str, min_value: float | None, max_value: float | None) -> float:
    """The least span of a metric's y-axis (0: none), from its unit or else its plausible range."""
    if unit in MIN_SPAN_BY_UNIT:
        return MIN_SPAN_BY_UNIT[unit]
    if min_value is not None and max_value is not None and max_value > min_value:
        return (max_value - min_value) * MIN_SPAN_SHARE
    return 0.0


def y_window(
    low: float, high: float, *, span: float, min_value: float | None = None, max_value: float | None = None
) -> tuple[float, float]:
    """``low``–``high`` widened to at least ``span`` around its middle, kept inside the plausible range where it fits.

    ``dashboard.js`` (``yWindow``) does the same for the live sparklines and the chart.
    """
    if high - low >= span:
        return low, high
    middle = (low + high) / 2
    low, high = middle - span / 2, middle + span / 2
    if min_value is not None and low < min_value:
        low, high = min_value, min_value + span
    elif max_value is not None and high > max_value:
        low, high = max_value - span, max_value
    return low, high


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


def sparkline_paths(
    spark: MeanSeries,
    *,
    start_ms: int,
    end_ms: int,
    span: float = 0.0,
    min_value: float | None = None,
    max_value: float | None = None,
) -> SparkPaths:
    """SVG paths (a line and the area under it) of ``spark`` in a SPARK_W × SPARK_H box.

    The y-axis spans at least ``span`` (see ``min_span``), so noise stays small. The browser
    redraws sparklines with the same arithmetic (``static/dashboard/dashboard.js``:
    ``sparkPaths``). The means are bounded (``sensors.history.selectors``), so ``high - low``
    cannot overflow.
    """
    if not spark.t:
        return SparkPaths()
    low, high = y_window(min(spark.mean), max(spark.mean), span=span, min_value=min_value, max_value=max_value)
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
