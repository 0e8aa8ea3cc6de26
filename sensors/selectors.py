"""Reads for devices, sensors and what ingest could not store; each names its related rows.

Readings themselves are read through ``sensors.history.selectors``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet

from farm.models import Farm
from sensors.history.selectors import with_latest
from sensors.models import DeadLetter, Device, DeviceKind, Sensor, SkipCategory, SkippedField, UnknownDevice

if TYPE_CHECKING:
    from sensors.history.selectors import SensorWithLatest


def device_list() -> QuerySet[Device]:
    """Devices with ``needs_review``: a sensor the worker created for an unlisted metric, or keys over its bound."""
    return Device.objects.select_related("farm", "field__farm", "kind").annotate(needs_review=needs_review())


def needs_review() -> Q:
    """True for a device with a sensor flagged for review or new metric keys skipped over its bound."""
    flagged = Sensor.objects.filter(device=OuterRef("pk"), needs_review=True)
    over = SkippedField.objects.filter(device=OuterRef("pk"), category=SkipCategory.METRIC_LIMIT)
    return Q(Exists(flagged)) | Q(Exists(over))


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


def skipped_field_list() -> QuerySet[SkippedField]:
    return SkippedField.objects.select_related("device__farm")


def device_skipped_fields(*, device_id: int) -> QuerySet[SkippedField]:
    """One device's skipped-field counts, latest first (at most the ingest's cap per device)."""
    return SkippedField.objects.filter(device_id=device_id).order_by("-last_seen")


def farm_devices(*, farm: Farm) -> QuerySet[Device]:
    """A farm's devices by field, then name: what its managers edit in the app."""
    return (
        Device.objects.filter(farm=farm)
        .select_related("field", "kind")
        .order_by(F("field__name").asc(nulls_last=True), "name")
    )
