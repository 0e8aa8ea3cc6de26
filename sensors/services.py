"""Writes for device registration (the admin, the CSV import, unknown-device adoption) and ingest records."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from farm.models import Farm, Field
from sensors.importing import ImportPlan, PlannedDevice
from sensors.models import (
    DeadLetter,
    Device,
    DeviceKind,
    MetricSpec,
    Sensor,
    SkipCategory,
    SkippedField,
    UnknownDevice,
    normalize_uid,
)

IMPORT_CHUNK = 500


def sensor_from_metric(*, device: Device, metric: MetricSpec) -> Sensor:
    """An unsaved sensor for one metric of the device's kind (bulk paths save many at once)."""
    return Sensor(
        device=device,
        key=metric.key,
        label=metric.label,
        unit=metric.unit,
        min_value=metric.min_value,
        max_value=metric.max_value,
    )


def device_register(
    *,
    uid: str,
    name: str,
    farm: Farm,
    field: Field | None = None,
    kind: DeviceKind,
    enabled: bool = True,
    expected_interval: int | None = None,
) -> Device:
    """Register a device and give it one sensor per metric of its kind."""
    device = Device(
        uid=normalize_uid(uid),
        name=name,
        farm=farm,
        field=field,
        kind=kind,
        enabled=enabled,
        expected_interval=expected_interval,
    )
    return device_create(device=device)


@transaction.atomic
def device_create(*, device: Device) -> Device:
    """Validate and save a new, unsaved device, then create its sensors (the admin's add form ends here)."""
    device.uid = normalize_uid(device.uid or "")
    device.full_clean()
    device.save()
    device_sensors_sync(device=device)
    return device


def device_sensors_sync(*, device: Device) -> int:
    """Create the sensors the device's kind lists and the device lacks; returns how many were created.

    A sensor the ingest worker made for an unlisted metric stops needing review
    once the kind lists that metric.
    """
    metrics = list(device.kind.metrics.all())
    keys = {metric.key for metric in metrics}
    existing = set(device.sensors.values_list("key", flat=True))
    device.sensors.filter(key__in=keys, needs_review=True).update(needs_review=False)
    missing = [sensor_from_metric(device=device, metric=m) for m in metrics if m.key not in existing]
    # ignore_conflicts: the ingest worker may add a sensor for the same key meanwhile.
    Sensor.objects.bulk_create(missing, ignore_conflicts=True)
    return len(missing)


def kind_sensors_sync(*, kind: DeviceKind) -> int:
    """After metrics were added to a kind: give every device of that kind the sensors it lacks."""
    created = 0
    with transaction.atomic():
        for device in kind.devices.select_related("kind"):
            created += device_sensors_sync(device=device)
    return created


def devices_set_enabled(*, devices: QuerySet[Device] | Iterable[Device], enabled: bool) -> int:
    """Enable or disable devices; returns how many changed."""
    ids = devices.values("pk") if isinstance(devices, QuerySet) else [device.pk for device in devices]
    changed = Device.objects.filter(pk__in=ids).exclude(enabled=enabled)
    return changed.update(enabled=enabled, updated_at=timezone.now())


def sensors_mark_reviewed(*, sensors: QuerySet[Sensor]) -> int:
    """An admin has looked at sensors the ingest worker created on its own."""
    return sensors.filter(needs_review=True).update(needs_review=False)


@transaction.atomic
def unknown_devices_register(
    *,
    unknown: QuerySet[UnknownDevice] | Iterable[UnknownDevice],
    farm: Farm,
    field: Field | None,
    kind: DeviceKind,
) -> list[Device]:
    """Turn unknown uids into devices (named after their uid) and forget them as unknown.

    All or nothing: if any uid cannot be registered, nothing is, and the
    ValidationError lists every uid with its reason.
    """
    ids = unknown.values("pk") if isinstance(unknown, QuerySet) else [row.pk for row in unknown]
    rows = list(UnknownDevice.objects.select_for_update().filter(pk__in=ids).order_by("uid"))
    devices: list[Device] = []
    problems: list[str] = []
    for row in rows:
        try:
            devices.append(device_register(uid=row.uid, name=row.uid, farm=farm, field=field, kind=kind))
        except ValidationError as exc:
            problems.append(f"{row.uid}: {' '.join(exc.messages)}")
    if problems:
        raise ValidationError(problems)
    UnknownDevice.objects.filter(pk__in=[row.pk for row in rows]).delete()
    return devices


@dataclass(frozen=True, slots=True)
class ImportResult:
    devices: int
    sensors: int
    farms: int
    fields: int
    updated: int = 0


def _import_places(plan: ImportPlan) -> tuple[dict[str, Farm], dict[tuple[str, str], Field]]:
    """Create the plan's new farms and fields; return every farm and field its devices name."""
    farm_slugs = {device.farm_slug for device in plan.devices}
    farms = {farm.slug: farm for farm in Farm.objects.filter(slug__in=farm_slugs)}
    for slug, name in plan.new_farms.items():
        farms[slug] = Farm.objects.create(slug=slug, name=name, time_zone=settings.TIME_ZONE)
    fields = {
        (plot.farm.slug, plot.slug): plot
        for plot in Field.objects.select_related("farm").filter(farm__slug__in=farm_slugs)
    }
    for (farm_slug, slug), name in plan.new_fields.items():
        fields[(farm_slug, slug)] = Field.objects.create(farm=farms[farm_slug], slug=slug, name=name)
    return farms, fields


def _device_from_plan(planned: PlannedDevice, farms: dict[str, Farm], fields: dict[tuple[str, str], Field]) -> Device:
    field = fields[(planned.farm_slug, planned.field_slug)] if planned.field_slug else None
    return Device(uid=planned.uid, name=planned.name, farm=farms[planned.farm_slug], field=field, kind=planned.kind)


@transaction.atomic
def devices_import(*, plan: ImportPlan, progress: Callable[[int], object] | None = None) -> ImportResult:
    """Write a checked import plan in one transaction: new farms and fields, devices, their sensors.

    Rows were validated by ``sensors.importing.plan_import``; the database's
    constraints still guard against a uid registered meanwhile (IntegrityError,
    and nothing is written).
    """
    if plan.errors:
        raise ValueError("an import plan with errors cannot be applied")
    farms, fields = _import_places(plan)
    sensors = _devices_update(plan.updated_devices, farms, fields, progress)
    new = plan.new_devices
    for start in range(0, len(new), IMPORT_CHUNK):
        chunk = [_device_from_plan(p, farms, fields) for p in new[start : start + IMPORT_CHUNK]]
        Device.objects.bulk_create(chunk)
        new_sensors = [sensor_from_metric(device=d, metric=m) for d in chunk for m in d.kind.metrics.all()]
        sensors += len(Sensor.objects.bulk_create(new_sensors))
        if progress:
            progress(len(chunk))
    return ImportResult(
        devices=len(new),
        sensors=sensors,
        farms=len(plan.new_farms),
        fields=len(plan.new_fields),
        updated=len(plan.updated_devices),
    )


def _devices_update(
    planned: list[PlannedDevice],
    farms: dict[str, Farm],
    fields: dict[tuple[str, str], Field],
    progress: Callable[[int], object] | None,
) -> int:
    """Give registered devices the name, farm, field and kind of their rows; returns the sensors created.

    A new kind adds sensors for the metrics it lists; sensors (and their readings)
    of metrics it does not list are kept.
    """
    sensors = 0
    for start in range(0, len(planned), IMPORT_CHUNK):
        chunk = planned[start : start + IMPORT_CHUNK]
        devices = []
        for row in chunk:
            device = _device_from_plan(row, farms, fields)
            device.pk = row.existing.pk if row.existing else None
            devices.append(device)
        Device.objects.bulk_update(devices, ["name", "farm", "field", "kind"])
        for device, row in zip(devices, chunk, strict=True):
            if row.existing is not None and row.existing.kind_id != row.kind.pk:
                sensors += device_sensors_sync(device=device)
        if progress:
            progress(len(chunk))
    return sensors


PURGE_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class PurgeResult:
    dead_letters: int
    skipped_fields: int


def ingest_records_purge(*, older_than: timedelta) -> PurgeResult:
    """Delete dead letters and skipped-field counts last seen before ``now - older_than``.

    In chunks of PURGE_CHUNK rows, each its own short transaction, so a purge after a
    flood of bad messages never holds a long lock beside the ingest worker's upserts.
    """
    cutoff = timezone.now() - older_than
    letters = DeadLetter.objects.filter(last_received_at__lt=cutoff)
    skipped = SkippedField.objects.filter(last_seen__lt=cutoff)
    return PurgeResult(_delete_in_chunks(letters), _delete_in_chunks(skipped))


def _delete_in_chunks(rows: QuerySet[DeadLetter] | QuerySet[SkippedField]) -> int:
    total = 0
    while True:
        ids = list(rows.values_list("pk", flat=True)[:PURGE_CHUNK])
        if not ids:
            return total
        deleted, _ = rows.model._default_manager.filter(pk__in=ids).delete()
        total += deleted


def devices_mark_reviewed(*, devices: QuerySet[Device]) -> int:
    """Clear what makes devices need review: their sensors' flags and their metric-limit counts."""
    with transaction.atomic():
        changed = Sensor.objects.filter(device__in=devices, needs_review=True).update(needs_review=False)
        SkippedField.objects.filter(device__in=devices, category=SkipCategory.METRIC_LIMIT).delete()
    return changed


def device_rename(*, device: Device, name: str, field: Field | None) -> Device:
    """A farm's manager renames a device or moves it to another field of the same farm.

    ``updated_at`` changes with it, so the ingest workers' registries reload the device.
    """
    if field is not None and field.farm_id != device.farm_id:
        raise ValidationError({"field": "Pick a field of this device's farm."})
    device.name, device.field = name, field
    device.full_clean(exclude=["uid"])
    device.save(update_fields=["name", "field", "updated_at"])
    return device
