"""Reads for devices, sensors and what ingest could not store; each names its related rows."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery

from sensors.models import DeadLetter, Device, DeviceKind, Reading, Sensor, SkipCategory, SkippedField, UnknownDevice


class LatestReading(TypedDict):
    last_value: float | None
    last_ts: datetime | None


if TYPE_CHECKING:  # django_stubs_ext comes with the dev requirements only
    from typing import TypeAlias

    from django_stubs_ext import WithAnnotations

    SensorWithLatest: TypeAlias = WithAnnotations[Sensor, LatestReading]


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


def with_latest(sensors: QuerySet[Sensor]) -> QuerySet[SensorWithLatest]:
    """``sensors``, each with ``last_value`` and ``last_ts`` of its newest reading (``None`` without one).

    Read from the readings rather than kept on the sensor row, so an ingest batch
    writes nothing to its sensors. Each is one backward probe of the readings'
    primary key (sensor_id, ts) per sensor; the statement sees one snapshot, so
    the two always belong to the same reading.
    """
    newest = Reading.objects.filter(sensor=OuterRef("pk")).order_by("-ts")
    return sensors.annotate(last_value=Subquery(newest.values("value")[:1]), last_ts=Subquery(newest.values("ts")[:1]))


def sensor_readings_latest(*, sensor_id: int, limit: int = 50) -> QuerySet[Reading]:
    """Newest readings first; the primary key (sensor_id, ts) serves it with a backward index scan."""
    return Reading.objects.filter(sensor_id=sensor_id).order_by("-ts")[:limit]


def unknown_device_list() -> QuerySet[UnknownDevice]:
    return UnknownDevice.objects.all()


def dead_letter_list() -> QuerySet[DeadLetter]:
    return DeadLetter.objects.all()


def skipped_field_list() -> QuerySet[SkippedField]:
    return SkippedField.objects.select_related("device__farm")


def device_skipped_fields(*, device_id: int) -> QuerySet[SkippedField]:
    """One device's skipped-field counts, latest first (at most the ingest's cap per device)."""
    return SkippedField.objects.filter(device_id=device_id).order_by("-last_seen")
