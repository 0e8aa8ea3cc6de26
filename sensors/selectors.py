"""Reads for devices, sensors and what ingest could not store; each names its related rows."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, QuerySet

from sensors.models import DeadLetter, Device, DeviceKind, Reading, Sensor, UnknownDevice


def device_list() -> QuerySet[Device]:
    return Device.objects.select_related("farm", "field__farm", "kind")


def devices_by_uid(*, uids: Iterable[str]) -> dict[str, Device]:
    """Registered devices among ``uids``, keyed by uid (the CSV import checks a whole file at once)."""
    return {device.uid: device for device in Device.objects.select_related("farm").filter(uid__in=list(uids))}


def kind_list() -> QuerySet[DeviceKind]:
    return DeviceKind.objects.annotate(device_count=Count("devices")).prefetch_related("metrics")


def kinds_with_metrics() -> list[DeviceKind]:
    return list(DeviceKind.objects.prefetch_related("metrics"))


def sensor_list() -> QuerySet[Sensor]:
    return Sensor.objects.select_related("device__farm", "device__kind")


def sensor_readings_latest(*, sensor_id: int, limit: int = 50) -> QuerySet[Reading]:
    """Newest readings first; the primary key (sensor_id, ts) serves it with a backward index scan."""
    return Reading.objects.filter(sensor_id=sensor_id).order_by("-ts")[:limit]


def unknown_device_list() -> QuerySet[UnknownDevice]:
    return UnknownDevice.objects.all()


def dead_letter_list() -> QuerySet[DeadLetter]:
    return DeadLetter.objects.all()
