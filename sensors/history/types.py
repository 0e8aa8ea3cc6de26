"""What the readings' selectors return: small named types, never raw rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

Resolution = Literal["raw", "hour", "day"]
"""What a series was read from: raw readings, hourly rollups or daily (farm-local) rollups."""


@dataclass(frozen=True, slots=True)
class LatestReading:
    """A sensor's newest finite reading; ``value`` and ``ts`` are ``None`` without one."""

    sensor_id: int
    device_id: int
    value: float | None
    ts: datetime | None


@dataclass(frozen=True, slots=True)
class ReadingPoint:
    """One stored reading."""

    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    """One sensor's readings in ``[start, end)`` as buckets of ``bucket_seconds``, column by column.

    ``t`` is each bucket's mean reading time in epoch milliseconds, so a sparse
    series is drawn where its readings really are. ``mean`` is exact for every
    value a sensor can produce (see ``selectors`` for the bound); ``min`` and
    ``max`` are the stored values. Every number is finite.
    """

    sensor_id: int
    start: datetime
    end: datetime
    bucket_seconds: int
    t: list[int] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    min: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    resolution: Resolution = "raw"


@dataclass(frozen=True, slots=True)
class DailySeries:
    """A sensor's local days (its farm's time zone) from the daily rollups, column by column.

    ``sum`` is the day's total (rain), ``mean`` its mean; every number is finite.
    """

    sensor_id: int
    day: list[date] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    min: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    sum: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MeanSeries:
    """A sensor's bucket means only (a sparkline): ``t`` in epoch milliseconds, ``mean`` finite."""

    sensor_id: int
    t: list[int] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RawPoints:
    """One sensor's raw readings in a range, column by column, oldest first (µs since the epoch)."""

    sensor_id: int
    ts: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
