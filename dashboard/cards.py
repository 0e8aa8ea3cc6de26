"""What the farm page shows: a section per field, a row per device, a cell per metric.

The state rules live here and, for live updates, in ``dashboard.js``
(``cardState``, ``deviceState``, ``renderSection``): keep the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from alerts.models import AlertEpisode
from farm.models import Farm
from sensors.history.types import MeanSeries
from sensors.models import Device, DeviceStatus

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


class DeviceState(StrEnum):
    """One state per device, worst first; ``OK`` is not shown on the page."""

    OFFLINE = "offline"
    NEVER_SEEN = "never_seen"
    OUT_OF_RANGE = "out_of_range"
    STALE = "stale"
    OK = "ok"


def device_state(*, device_status: str, metric_states: list[CardState]) -> DeviceState:
    """Offline beats everything; a device with no reading at all was never seen.

    A metric without data beside metrics with data is no device problem (a gauge may
    not report every field), so only the states of metrics with data count after that.
    """
    if device_status == DeviceStatus.OFFLINE:
        return DeviceState.OFFLINE
    reported = [s for s in metric_states if s is not CardState.NO_DATA]
    if not reported:
        return DeviceState.NEVER_SEEN
    if CardState.OUT_OF_RANGE in reported:
        return DeviceState.OUT_OF_RANGE
    if CardState.STALE in reported:
        return DeviceState.STALE
    return DeviceState.OK


# The metrics a field's summary line shows as a range across its devices, in this order.
SUMMARY_KEYS = ("soil_moisture", "air_temperature", "water_level")
# Metrics whose line over hours says nothing at a glance (a compass bearing wraps at 360°).
NO_SPARK_KEYS = frozenset({"wind_direction"})


@dataclass(frozen=True, slots=True)
class Card:
    """One metric of a device: its sensor, state and sparkline."""

    sensor: SensorWithLatest
    state: CardState
    spark: charts.SparkPaths
    span: float = 0.0  # the least span of its y-axis
    alert: str = ""  # the severity of its worst open alert, "" when none (JS: ``renderAlertBadge``)

    @property
    def shows_spark(self) -> bool:
        return self.sensor.key not in NO_SPARK_KEYS


@dataclass(slots=True)
class DeviceRow:
    device: Device
    metrics: list[Card] = field(default_factory=list)
    state: DeviceState = DeviceState.NEVER_SEEN

    @property
    def last_report(self) -> datetime | None:
        """The device's last contact, or its newest reading if that is newer (JS: ``lastReport``)."""
        times = [c.sensor.last_ts for c in self.metrics if c.sensor.last_ts is not None]
        if self.device.last_seen is not None:
            times.append(self.device.last_seen)
        return max(times, default=None)


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """A metric's current values across a field's devices: ``low``–``high`` (None when none reported)."""

    key: str
    label: str
    unit: str
    low: float | None
    high: float | None


@dataclass(slots=True)
class Section:
    key: str
    title: str
    subtitle: str = ""
    devices: list[DeviceRow] = field(default_factory=list)

    @property
    def attention(self) -> int:
        return sum(row.state is not DeviceState.OK for row in self.devices)

    @property
    def summary(self) -> list[MetricSummary]:
        by_key: dict[str, list[Card]] = {}
        for row in self.devices:
            for card in row.metrics:
                if card.sensor.key in SUMMARY_KEYS:
                    by_key.setdefault(card.sensor.key, []).append(card)
        return [_metric_summary(by_key[key]) for key in SUMMARY_KEYS if key in by_key]


def _metric_summary(cards: list[Card]) -> MetricSummary:
    values = [c.sensor.last_value for c in cards if c.sensor.last_value is not None]
    first = cards[0].sensor
    return MetricSummary(
        key=first.key,
        label=first.label,
        unit=first.unit,
        low=min(values) if values else None,
        high=max(values) if values else None,
    )


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


# Worst first; the JS keeps the same order (``SEVERITY_RANK``).
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def sensor_alert_severities(episodes: Iterable[AlertEpisode]) -> dict[int, str]:
    """Each sensor with an open alert (firing or acknowledged) → the severity of its worst one."""
    worst: dict[int, str] = {}
    for episode in episodes:
        severity, current = episode.rule.severity, worst.get(episode.sensor_id)
        if current is None or SEVERITY_RANK.get(severity, 9) < SEVERITY_RANK.get(current, 9):
            worst[episode.sensor_id] = severity
    return worst


def sensor_card(
    sensor: SensorWithLatest, *, spark: MeanSeries, now: datetime, spark_end_ms: int, alert: str = ""
) -> Card:
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
    span = charts.min_span(unit=sensor.unit, min_value=sensor.min_value, max_value=sensor.max_value)
    paths = charts.sparkline_paths(
        spark,
        start_ms=spark_end_ms - charts.SPARKLINE_SECONDS * 1000,
        end_ms=spark_end_ms,
        span=span,
        min_value=sensor.min_value,
        max_value=sensor.max_value,
    )
    return Card(sensor=sensor, state=state, spark=paths, span=span, alert=alert)


def farm_sections(
    farm: Farm, *, now: datetime, alerts: Mapping[int, str] | None = None
) -> tuple[list[Section], dict[int, MeanSeries]]:
    """Each field as a section (in name order), then "Unassigned"; plus the sparkline data.

    ``alerts`` maps a sensor in alert to its worst open alert's severity (``sensor_alert_severities``).

    A section holds one row per device (name order) with all its metrics. Fixed query
    count: fields, sensors (with device, field, kind), devices without sensors, and one
    sparkline query for the whole farm.
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
    rows: dict[int, DeviceRow] = {}
    for sensor in sensors:
        row = rows.get(sensor.device_id)
        if row is None:
            row = rows[sensor.device_id] = DeviceRow(device=sensor.device)
            sections.get(str(sensor.device.field_id), unassigned).devices.append(row)
        alert = alerts.get(sensor.pk, "") if alerts else ""
        row.metrics.append(sensor_card(sensor, spark=sparks[sensor.pk], now=now, spark_end_ms=end_ms, alert=alert))
    for row in rows.values():
        row.state = device_state(device_status=row.device.status, metric_states=[c.state for c in row.metrics])
    for device in selectors.sensorless_devices(farm.pk):
        state = device_state(device_status=device.status, metric_states=[])
        sections.get(str(device.field_id), unassigned).devices.append(DeviceRow(device=device, state=state))
    for section in (*sections.values(), unassigned):
        section.devices.sort(key=lambda r: (r.device.name.casefold(), r.device.pk))
    ordered = [*sections.values(), unassigned]
    return [s for s in ordered if s is not unassigned or s.devices], sparks


def _field_subtitle(crop: str, area_ha: object) -> str:
    parts = [crop] if crop else []
    if area_ha is not None:
        parts.append(f"{area_ha} ha")
    return " · ".join(parts)
