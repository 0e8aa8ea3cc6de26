"""What the farm page shows: sections of sensor cards, each with its state.

The state rules live here and, for live updates, in ``dashboard.js``
(``cardState``): keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from farm.models import Farm
from sensors.history.types import MeanSeries
from sensors.models import Device, DeviceStatus, Sensor

from . import charts, selectors

if TYPE_CHECKING:
    from sensors.history.selectors import SensorWithLatest

# A reading older than 1.5 intervals means at least one report is overdue: a
# device on a 5-minute schedule turns stale after 7½ minutes, not at 5:01.
STALE_AFTER_INTERVALS = 1.5


class CardState(StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    OFFLINE = "offline"
    OUT_OF_RANGE = "out_of_range"
    NO_DATA = "no_data"


def card_state(
    *,
    device_status: str,
    value: float | None,
    ts: datetime | None,
    interval_seconds: int,
    min_value: float | None,
    max_value: float | None,
    now: datetime,
) -> CardState:
    """Offline beats everything; an implausible value beats a late one."""
    if device_status == DeviceStatus.OFFLINE:
        return CardState.OFFLINE
    if value is None or ts is None:
        return CardState.NO_DATA
    if (min_value is not None and value < min_value) or (max_value is not None and value > max_value):
        return CardState.OUT_OF_RANGE
    if (now - ts).total_seconds() > interval_seconds * STALE_AFTER_INTERVALS:
        return CardState.STALE
    return CardState.FRESH


@dataclass(frozen=True, slots=True)
class Card:
    sensor: Sensor
    state: CardState
    spark: charts.SparkPaths


@dataclass(slots=True)
class Section:
    key: str
    title: str
    subtitle: str = ""
    cards: list[Card] = field(default_factory=list)
    waiting_devices: list[Device] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FarmSummary:
    online: int
    offline: int
    never_seen: int
    last_update: datetime | None


def farm_summary(devices: list[Device]) -> FarmSummary:
    seen = [d.last_seen for d in devices if d.last_seen is not None]
    return FarmSummary(
        online=sum(d.status == DeviceStatus.ONLINE for d in devices),
        offline=sum(d.status == DeviceStatus.OFFLINE for d in devices),
        never_seen=sum(d.status == DeviceStatus.UNKNOWN for d in devices),
        last_update=max(seen) if seen else None,
    )


def sensor_card(sensor: SensorWithLatest, *, spark: MeanSeries, now: datetime, spark_end_ms: int) -> Card:
    device = sensor.device
    state = card_state(
        device_status=device.status,
        value=sensor.last_value,
        ts=sensor.last_ts,
        interval_seconds=device.interval_seconds,
        min_value=sensor.min_value,
        max_value=sensor.max_value,
        now=now,
    )
    paths = charts.sparkline_paths(spark, start_ms=spark_end_ms - charts.SPARKLINE_SECONDS * 1000, end_ms=spark_end_ms)
    return Card(sensor=sensor, state=state, spark=paths)


def farm_sections(farm: Farm, *, now: datetime) -> tuple[list[Section], dict[int, MeanSeries]]:
    """Each field as a section (in name order), then "Unassigned"; plus the sparkline data.

    Fixed query count: fields, sensors (with device, field, kind), devices
    without sensors, and one sparkline query for the whole farm.
    """
    sections: dict[str, Section] = {
        str(f.pk): Section(key=str(f.pk), title=f.name, subtitle=_field_subtitle(f.crop, f.area_ha))
        for f in selectors.farm_fields(farm.pk)
    }
    unassigned = Section(key="unassigned", title="Unassigned", subtitle="Devices not placed in a field")
    sensors = list(selectors.dashboard_sensors(farm.pk))
    end = charts.window_end(now)
    sparks = charts.farm_sparklines(sensor_ids=[s.pk for s in sensors], end=end)
    end_ms = int(end.timestamp() * 1000)
    for sensor in sensors:
        section = sections.get(str(sensor.device.field_id), unassigned)
        section.cards.append(sensor_card(sensor, spark=sparks[sensor.pk], now=now, spark_end_ms=end_ms))
    for device in selectors.sensorless_devices(farm.pk):
        sections.get(str(device.field_id), unassigned).waiting_devices.append(device)
    ordered = [*sections.values(), unassigned]
    return [s for s in ordered if s is not unassigned or s.cards or s.waiting_devices], sparks


def _field_subtitle(crop: str, area_ha: object) -> str:
    parts = [crop] if crop else []
    if area_ha is not None:
        parts.append(f"{area_ha} ha")
    return " · ".join(parts)
