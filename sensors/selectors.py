"""Reads for devices, sensors and what ingest could not store; each names its related rows.

Readings themselves are read through ``sensors.history.selectors``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db.models import Count, QuerySet

from sensors.history.selectors import with_latest
from sensors.models import DeadLetter, Device, DeviceKind, Sensor, UnknownDevice

if TYPE_CHECKING:
    from sensors.history.selectors import SensorWithLatest


def device_list() -> QuerySet[Device]:
    return Device.objects.select_related("farm", "field__farm", "kind")


def devices_by_uid(*, uids: Iterable[str]) -> dict[str, Device]:
    """Registered devices among ``uids``, keyed by uid (the CSV import checks a whole file at once)."""
    return {device.uid: device for device in Device.objects.select_related("farm").filter(uid__in=list(uids))}


def kind_list() -> QuerySet[DeviceKind]:
    return DeviceKind.objects.annotate(device_count=Count("devices")).prefetch_related("metrics")


def kinds_with_metrics() -> list[DeviceKind]:
    return list(DeviceKind.objects.prefetch_related("metrics"))


def sensor_list() -> QuerySet[SensorWithLatest]:
    return with_latest(Sensor.objects.select_related("device__farm", "device__kind"))


def unknown_device_list() -> QuerySet[UnknownDevice]:
    return UnknownDevice.objects.all()


def dead_letter_list() -> QuerySet[DeadLetter]:
    return DeadLetter.objects.all()
