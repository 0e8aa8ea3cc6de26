"""A batch's new readings as quarter-hour runs: the pure first step of the rollup fold.

Each sensor's readings arrive sorted by time (``BatchOutcome.series``), so a quarter hour
of one sensor is a contiguous run, found by bisection; count, min, max, first and last of a
run come from slices at C speed, with no object per reading. Only the exact sum is left to
PostgreSQL (``numeric``, summed per run over its slice of ``values``: the run's ``count``
values from ``first_index``). Every zone's offset is a whole number of quarter
hours, so a quarter never straddles a local midnight and folds into exactly one hour and one
local day.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from sensors.hooks import SensorSeries

QUARTER_US: Final = 900_000_000


@dataclass(slots=True)
class Quarters:
    """Column arrays: one entry per run; every finite value, run after run (for the sums)."""

    sensor_id: list[int] = field(default_factory=list)
    start_us: list[int] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    min: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    first_us: list[int] = field(default_factory=list)
    first_value: list[float] = field(default_factory=list)
    last_us: list[int] = field(default_factory=list)
    last_value: list[float] = field(default_factory=list)
    first_index: list[int] = field(default_factory=list)
    """Where the run's values start in ``values``, counted from 1 (PostgreSQL's array subscripts)."""
    values: list[float] = field(default_factory=list)


def _finite(ts: list[int], values: list[float]) -> tuple[list[int], list[float]]:
    """Only finite values are rolled up, as only finite values are read (sensors/history/selectors.py)."""
    if all(map(math.isfinite, values)):
        return ts, values
    kept = [(t, v) for t, v in zip(ts, values, strict=True) if math.isfinite(v)]
    return [t for t, _ in kept], [v for _, v in kept]


def quarters_of(series: Mapping[int, SensorSeries]) -> Quarters:
    """Every sensor's readings cut into quarter-hour runs (µs since the epoch, floored)."""
    out = Quarters()
    for sensor_id in sorted(series):
        ts, values = _finite(series[sensor_id].ts, series[sensor_id].values)
        i, n = 0, len(ts)
        while i < n:
            start = ts[i] - ts[i] % QUARTER_US
            j = bisect_left(ts, start + QUARTER_US, i)
            chunk = values[i:j]
            out.sensor_id.append(sensor_id)
            out.start_us.append(start)
            out.count.append(j - i)
            out.min.append(min(chunk))
            out.max.append(max(chunk))
            out.first_us.append(ts[i])
            out.first_value.append(values[i])
            out.last_us.append(ts[j - 1])
            out.last_value.append(values[j - 1])
            out.first_index.append(len(out.values) + 1)
            out.values.extend(chunk)
            i = j
    return out
