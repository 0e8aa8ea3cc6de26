"""Daily farm summaries: rain, air temperature, growing degree days, chill hours, soil moisture per probe.

Read from the daily and hourly rollups (sensors.history.selectors), so a season of summaries
is a few hundred rows per sensor.

Growing degree days (GDD), per local day, by the capped-average method (McMaster & Wilhelm
1997, method 2): the day's maximum and minimum air temperatures are each clamped to
``[base, cap]`` (cap 30 °C), averaged, and the base subtracted: ``GDD = (clamp(Tmax) +
clamp(Tmin)) / 2 - base``, never negative. The base is the field's ``gdd_base_c`` (10 °C when
unset: maize, most vegetables). Cumulative GDD sum from the field's season start (1 January
without one) through each day. Chill hours: the hours of the local day whose mean air
temperature was below 7.2 °C (45 °F), from the hourly rollups.

Which sensors: rain from sensors keyed ``rain`` (daily totals; more than one gauge is
averaged), air temperature from ``air_temperature`` (min of minima, max of maxima,
reading-weighted mean), soil moisture from each ``soil_moisture`` sensor (one probe each).
A field's summary reads its own devices' sensors and, for weather (rain, air temperature), the
farm's devices in no field (a yard weather station) when the field has none of its own, or
failing those every such sensor of the farm (the rain gauge in the next field is the field's
best guess of its rain).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from farm.models import Farm, Field
from sensors.history.selectors import hours_below, sensor_daily
from sensors.history.types import DailySeries
from sensors.models import Sensor

from .selectors import farm_sensors
from .windows import days_window

GDD_BASE_DEFAULT: Final = 10.0
GDD_CAP: Final = 30.0
CHILL_BELOW: Final = 7.2
RAIN, AIR, SOIL = "rain", "air_temperature", "soil_moisture"


def gdd(*, t_min: float, t_max: float, base: float = GDD_BASE_DEFAULT, cap: float = GDD_CAP) -> float:
    """One day's growing degree days by the capped-average method (see the module docstring)."""
    low, high = (min(max(t, base), cap) for t in (t_min, t_max))
    return max(0.0, (low + high) / 2 - base)


@dataclass(slots=True)
class SummaryDay:
    day: date
    rain: float | None = None
    t_min: float | None = None
    t_max: float | None = None
    t_mean: float | None = None
    gdd: float | None = None
    gdd_sum: float | None = None
    chill_hours: int | None = None
    soil: list[tuple[float | None, float | None]] = field(default_factory=list)  # (min, max) per probe


@dataclass(frozen=True, slots=True)
class Summary:
    title: str
    base: float
    season_start: date
    probes: list[Sensor]
    days: list[SummaryDay]


def _pick(sensors: list[Sensor], key: str, fld: Field | None) -> list[Sensor]:
    """``fld``'s own sensors of ``key``; weather without its own: the farm's field-less ones, else all the farm's."""
    own = [s for s in sensors if s.key == key and (fld is None or s.device.field_id == fld.pk)]
    if own or fld is None or key == SOIL:
        return own
    yard = [s for s in sensors if s.key == key and s.device.field_id is None]
    return yard or [s for s in sensors if s.key == key]


def farm_summary(*, farm: Farm, fld: Field | None, first: date, last: date) -> Summary:
    """One row per local day ``first``..``last`` for ``fld`` (or the whole farm), GDD summed from the season start."""
    zone = ZoneInfo(farm.time_zone)
    sensors = list(farm_sensors(farm).filter(key__in=[RAIN, AIR, SOIL]))
    rain, air, probes = _pick(sensors, RAIN, fld), _pick(sensors, AIR, fld), _pick(sensors, SOIL, fld)
    base = float(fld.gdd_base_c) if fld and fld.gdd_base_c is not None else GDD_BASE_DEFAULT
    season = fld.season_start if fld and fld.season_start else date(last.year, 1, 1)
    since = min(season, first)
    daily = {
        pk: _by_day(one)
        for pk, one in sensor_daily(sensor_ids=[s.pk for s in rain + air + probes], first=since, last=last).items()
    }
    window = days_window(first=first, last=last, zone=zone)
    chill = hours_below(
        sensor_ids=[s.pk for s in air[:1]],
        start=window.start,
        end=window.end,
        time_zone=farm.time_zone,
        threshold=CHILL_BELOW,
    )
    chill_by_day = chill[air[0].pk] if air else {}
    days, total = [], 0.0
    day = since
    while day <= last:
        row = _day_row(day, [daily[s.pk] for s in rain], [daily[s.pk] for s in air], [daily[s.pk] for s in probes])
        if row.t_min is not None and row.t_max is not None and day >= season:
            row.gdd = gdd(t_min=row.t_min, t_max=row.t_max, base=base)
            total += row.gdd
        row.gdd_sum = total if day >= season else None
        if air and day >= first:
            row.chill_hours = chill_by_day.get(day, 0) if any(day in daily[s.pk] for s in air) else None
        if day >= first:
            days.append(row)
        day += timedelta(days=1)
    title = fld.name if fld else farm.name
    return Summary(title=title, base=base, season_start=season, probes=probes, days=days)


DayValues = dict[date, tuple[int, float, float, float, float]]
"""A sensor's days: (count, mean, min, max, sum) by local date."""


def _by_day(one: DailySeries) -> DayValues:
    return {d: (one.count[i], one.mean[i], one.min[i], one.max[i], one.sum[i]) for i, d in enumerate(one.day)}


def _values(series: list[DayValues], day: date) -> list[tuple[int, float, float, float, float]]:
    """(count, mean, min, max, sum) of ``day`` in each series that has it."""
    return [one[day] for one in series if day in one]


def _day_row(day: date, rain: list[DayValues], air: list[DayValues], probes: list[DayValues]) -> SummaryDay:
    row = SummaryDay(day)
    gauges = _values(rain, day)
    if gauges:
        row.rain = sum(g[4] for g in gauges) / len(gauges)
    temps = _values(air, day)
    if temps:
        count = sum(t[0] for t in temps)
        row.t_min, row.t_max = min(t[2] for t in temps), max(t[3] for t in temps)
        row.t_mean = sum(t[0] * t[1] for t in temps) / count
    for probe in probes:
        found = _values([probe], day)
        row.soil.append((found[0][2], found[0][3]) if found else (None, None))
    return row
