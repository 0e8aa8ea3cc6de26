"""The JSON the history page receives: its configuration and each window's series."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.urls import reverse

from alerts.chartdata import episode_chart_entry
from alerts.models import AlertEpisode
from farm.models import Farm
from sensors.history.types import DailySeries, Series
from sensors.models import Sensor

from .windows import Window


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def sensor_ref(sensor: Sensor) -> dict[str, Any]:
    field = sensor.device.field
    return {
        "id": sensor.pk,
        "label": sensor.label,
        "unit": sensor.unit,
        "key": sensor.key,
        "device": sensor.device.name,
        "field": field.name if field else "",
        "bars": sensor.key == "rain",
    }


def page_config(*, farm: Farm, sensors: list[Sensor], window: Window, range_key: str) -> dict[str, Any]:
    return {
        "timeZone": farm.time_zone,
        "dataUrl": reverse("history-data", args=[farm.slug]),
        "exportUrl": reverse("history-export", args=[farm.slug]),
        "sensors": [sensor_ref(s) for s in sensors],
        "range": range_key,
        "start": ms(window.start),
        "end": ms(window.end),
        "firstDay": window.first_day.isoformat(),
        "lastDay": window.last_day.isoformat(),
    }


def _day(day: date) -> str:
    return day.isoformat()


def data_payload(
    *,
    sensors: list[Sensor],
    series: dict[int, Series],
    daily: dict[int, DailySeries],
    episodes: list[AlertEpisode],
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """Each sensor's buckets (mean, min, max), rain's local-day totals as bars, the sensors' alert episodes."""
    out = []
    for sensor in sensors:
        one = series[sensor.pk]
        item: dict[str, Any] = {
            **sensor_ref(sensor),
            "resolution": one.resolution,
            "bucketSeconds": one.bucket_seconds,
            "t": one.t,
            "mean": one.mean,
            "min": one.min,
            "max": one.max,
        }
        if sensor.pk in daily:
            days = daily[sensor.pk]
            item["days"] = [_day(d) for d in days.day]
            item["dayTotals"] = days.sum
        out.append(item)
    return {"start": ms(start), "end": ms(end), "series": out, "episodes": [episode_chart_entry(e) for e in episodes]}
