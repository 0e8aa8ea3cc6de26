"""The JSON the browser receives: the page's configuration, its JSON endpoints, and the
messages over ``/ws/farms/<id>/`` (see README, "Live protocol").

Socket messages are serialised once here, not once per connected socket: consumers
forward the text as it is. Every number here is finite (the readings' selectors
promise it), and the serialisers refuse NaN and infinities rather than write
something that is not JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.urls import reverse

from alerts.chartdata import episode_chart_entry
from alerts.models import AlertEpisode, AlertRule
from alerts.selectors import SensorAlerts
from alerts.signals import AlertChange
from farm.models import Farm
from sensors.history.types import LatestReading, MeanSeries, Series
from sensors.hooks import DeviceChange, ReadingGroup, Row
from sensors.models import Device, Sensor

from . import cards, charts

# Bounds on one update: a device flushing hours of buffered readings must not
# turn into a megabyte frame for every open dashboard. The latest point of
# every sensor is always kept; older ones give way first.
MAX_POINTS_PER_SENSOR = 60
MAX_POINTS_PER_MESSAGE = 1500

_FIRST = itemgetter(0)


def ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def dumps(payload: dict[str, Any] | list[Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def readings_json(groups: Iterable[ReadingGroup]) -> str:
    """An update's "readings": per sensor its newest points in time order (bounded) and how many the batch held.

    Hot: a batch holds up to tens of thousands of readings and a message keeps at most
    1,500, so the only work per reading is an append to its sensor's rows, and each
    sensor goes straight to the text ``dumps`` would write.
    """
    by_sensor, device_of = _series(groups)
    cap = max(1, min(MAX_POINTS_PER_SENSOR, MAX_POINTS_PER_MESSAGE // max(1, len(by_sensor))))
    entries = []
    for sensor_id in sorted(by_sensor):
        rows = by_sensor[sensor_id]
        if cap == 1 or len(rows) == 1:
            ts, _, value = rows[-1]
            points = f"[{ts // 1000},{value!r}]"
        else:
            points = ",".join([f"[{ts // 1000},{value!r}]" for ts, _, value in rows[-cap:]])
        entries.append(f'{{"sensor":{sensor_id},"device":{device_of[sensor_id]},"points":[{points}],"n":{len(rows)}}}')
    text = f"[{','.join(entries)}]"
    if "nan" in text or "inf" in text:  # only a number's repr can spell them here: refuse as dumps does
        raise ValueError("Out of range float values are not JSON compliant")
    return text


def _series(groups: Iterable[ReadingGroup]) -> tuple[dict[int, list[Row]], dict[int, int]]:
    """Each sensor's rows in time order, and its device.

    Rows are kept in batch order and only a sensor that got an older row after a newer
    one is sorted (stable: of equal times the last stored is the newest).
    """
    by_sensor: dict[int, list[Row]] = {}
    device_of: dict[int, int] = {}
    unordered: dict[int, list[Row]] = {}
    for device, rows in groups:
        sensors = device.sensors
        for row in rows:
            sensor_id = sensors[row[1]]
            kept = by_sensor.get(sensor_id)
            if kept is None:
                by_sensor[sensor_id] = [row]
                device_of[sensor_id] = device.id
            else:
                if row[0] < kept[-1][0]:
                    unordered[sensor_id] = kept
                kept.append(row)
    for kept in unordered.values():
        kept.sort(key=_FIRST)
    return by_sensor, device_of


def device_entry(change: DeviceChange | Device) -> dict[str, Any]:
    return {
        "id": change.device_id if isinstance(change, DeviceChange) else change.pk,
        "status": change.status,
        "last_seen": ms(change.last_seen),
        "battery": change.battery,
        "rssi": change.rssi,
        "snr": change.snr,
    }


def devices_json(changes: Iterable[DeviceChange]) -> str:
    """``dumps([device_entry(c) for c in changes])``, written directly: a batch can change thousands."""
    entries = [
        f'{{"id":{c.device_id},"status":{encode_basestring_ascii(c.status)},"last_seen":{_optional(ms(c.last_seen))},'
        f'"battery":{_optional(c.battery)},"rssi":{_optional(c.rssi)},"snr":{_optional(c.snr)}}}'
        for c in changes
    ]
    return f"[{','.join(entries)}]"


def _optional(value: float | None) -> str:
    """A number or None as ``dumps`` writes it, refusing NaN and infinities as ``allow_nan=False`` does."""
    if value is None:
        return "null"
    if value - value != 0.0:
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return repr(value)


def update_text(
    *, farm_id: int, seq: int, readings: Iterable[ReadingGroup], devices: Iterable[DeviceChange], now: datetime
) -> str:
    """One farm's ``update``: the text ``dumps`` would write for it, built from pieces written directly."""
    return (
        f'{{"type":"update","farm":{farm_id},"seq":{seq},"sent":{ms(now)},'
        f'"readings":{readings_json(readings)},"devices":{devices_json(devices)}}}'
    )


def snapshot_text(
    *,
    farm_id: int,
    seq: int,
    sensors: Iterable[LatestReading],
    devices: Iterable[Device],
    alerts: Iterable[AlertEpisode],
    now: datetime,
) -> str:
    open_ = [open_alert_entry(e) for e in alerts]
    acknowledged = sum(1 for e in open_ if e["acknowledged"])
    return dumps(
        {
            "type": "snapshot",
            "farm": farm_id,
            "seq": seq,
            "now": ms(now),
            "sensors": [
                {"sensor": r.sensor_id, "device": r.device_id, "value": r.value, "ts": ms(r.ts)} for r in sensors
            ],
            "devices": [device_entry(d) for d in devices],
            "alerts": {"firing": len(open_) - acknowledged, "acknowledged": acknowledged, "open": open_},
        }
    )


def open_alert_entry(episode: AlertEpisode) -> dict[str, Any]:
    """An open episode in a snapshot: what a transition told, so a client that missed some catches up."""
    rule, by = episode.rule, episode.acknowledged_by
    return {
        "episode": episode.pk,
        "rule": rule.pk,
        "rule_name": rule.name,
        "severity": rule.severity,
        "sensor": episode.sensor_id,
        "device": episode.sensor.device_id,
        "started": ms(episode.started_at),
        "value": episode.last_value,
        "worst": episode.worst_value,
        "acknowledged": episode.acknowledged_at is not None,
        "by": "" if by is None else (by.get_full_name() or by.get_username()),
    }


def alert_change_entry(change: AlertChange) -> dict[str, Any]:
    return {
        "transition": change.transition,
        "episode": change.episode_id,
        "rule": change.rule_id,
        "rule_name": change.rule_name,
        "severity": change.severity,
        "sensor": change.sensor_id,
        "device": change.device_id,
        "started": ms(change.started_at),
        "at": ms(change.at),
        "value": change.value,
        "worst": change.worst,
        "by": change.by,
    }


def alerts_text(
    *, farm_id: int, seq: int, changes: Iterable[AlertChange], firing: int, acknowledged: int, now: datetime
) -> str:
    """One farm's ``alerts`` message: a transaction's transitions and the farm's open-alert counts after it."""
    return dumps(
        {
            "type": "alerts",
            "farm": farm_id,
            "seq": seq,
            "sent": ms(now),
            "firing": firing,
            "acknowledged": acknowledged,
            "transitions": [alert_change_entry(c) for c in changes],
        }
    )


def frames_text(texts: Sequence[str]) -> str:
    """Several server messages in one frame: a JSON array of them, in order (no re-encoding)."""
    return texts[0] if len(texts) == 1 else "[" + ",".join(texts) + "]"


def pong_text(*, seq: int, now: datetime) -> str:
    return dumps({"type": "pong", "seq": seq, "now": ms(now)})


# --- The page and its JSON endpoints -------------------------------------------------


def compact_float(value: float) -> float:
    """Six significant digits: a mean of sensor values needs no more, and the JSON stays small."""
    return float(f"{value:.6g}")


def spark_points(spark: MeanSeries) -> list[list[float]]:
    """A sparkline as the browser keeps it: ``[[ms, mean], ...]``."""
    return [[t, compact_float(mean)] for t, mean in zip(spark.t, spark.mean, strict=True)]


def page_config(
    *,
    farm: Farm,
    now: datetime,
    sparks: dict[int, MeanSeries],
    devices: Iterable[Device],
    open_alerts: Iterable[AlertEpisode] = (),
) -> dict[str, Any]:
    """What ``dashboard.js`` reads from the page (the ``dashboard-config`` script element)."""
    return {
        "farm": farm.pk,
        "slug": farm.slug,
        "timeZone": farm.time_zone,
        "wsPath": f"/ws/farms/{farm.pk}/",
        "seriesUrl": reverse("farm-sensor-series", args=[farm.slug, 0]),
        "sparklinesUrl": reverse("farm-sparklines", args=[farm.slug]),
        "loginUrl": reverse(settings.LOGIN_URL),
        "staleAfterIntervals": cards.STALE_AFTER_INTERVALS,
        "sparkSeconds": charts.SPARKLINE_SECONDS,
        "now": ms(now),
        "sparks": {str(sensor_id): spark_points(spark) for sensor_id, spark in sparks.items()},
        "sparkEnd": ms(charts.window_end(now)),
        "devices": {str(d.pk): device_entry(d) for d in devices},
        "alertsUrl": reverse("alerts-page", args=[farm.slug]),
        "alerts": [open_alert_entry(e) for e in open_alerts],
    }


def series_payload(
    *,
    sensor: Sensor,
    series: Series,
    range_key: str,
    width: int,
    time_zone: str,
    alerts: SensorAlerts | None = None,
) -> dict[str, Any]:
    """The chart endpoint's body: the sensor, the window, its buckets column by column, and its alerts."""
    return {
        "sensor": {
            "id": sensor.pk,
            "label": sensor.label,
            "unit": sensor.unit,
            "min": sensor.min_value,
            "max": sensor.max_value,
            "span": charts.min_span(unit=sensor.unit, min_value=sensor.min_value, max_value=sensor.max_value),
            "device": sensor.device.name,
        },
        "range": range_key,
        "width": width,
        "time_zone": time_zone,
        "start": ms(series.start),
        "end": ms(series.end),
        "bucket_seconds": series.bucket_seconds,
        "t": series.t,
        "avg": [compact_float(mean) for mean in series.mean],
        "min": series.min,
        "max": series.max,
        "count": series.count,
        "alerts": {
            "rules": [chart_rule_entry(r) for r in alerts.rules] if alerts else [],
            "episodes": [episode_chart_entry(e) for e in alerts.episodes] if alerts else [],
        },
    }


def chart_rule_entry(rule: AlertRule) -> dict[str, Any]:
    """A rule's lines on a chart: the threshold (a band's two edges) and where it clears (None: the threshold)."""
    return {
        "id": rule.pk,
        "name": rule.name,
        "severity": rule.severity,
        "kind": rule.kind,
        "threshold": rule.threshold,
        "threshold_high": rule.threshold_high,
        "clear": rule.clear,
        "clear_high": rule.clear_high,
    }


def sparklines_payload(*, sparks: dict[int, MeanSeries], end: datetime) -> dict[str, Any]:
    """Every card's sparkline, for a page catching up after a reconnect."""
    return {
        "end": ms(end),
        "seconds": charts.SPARKLINE_SECONDS,
        "lines": {str(sensor_id): spark_points(spark) for sensor_id, spark in sparks.items()},
    }


def query_error(errors: dict[str, Any]) -> dict[str, Any]:
    return {"error": errors}
