"""Which sensors the history page offers and reads: a farm's own, grouped by field and device."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from django.db.models import QuerySet

from farm.models import Farm, Field
from sensors.models import Sensor


@dataclass(frozen=True, slots=True)
class PickerDevice:
    name: str
    sensors: list[Sensor] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PickerGroup:
    """A field (or the farm itself, for devices in no field) and its devices' sensors."""

    title: str
    devices: list[PickerDevice] = field(default_factory=list)


def farm_sensors(farm: Farm) -> QuerySet[Sensor]:
    return (
        Sensor.objects.filter(device__farm=farm)
        .select_related("device", "device__field")
        .order_by("device__field__name", "device__name", "label", "pk")
    )


def sensors_of_farm(farm: Farm, ids: Sequence[int]) -> list[Sensor]:
    """The sensors of ``farm`` among ``ids``, in the order asked; ids of other farms are dropped."""
    found = {s.pk: s for s in farm_sensors(farm).filter(pk__in=list(ids))}
    return [found[i] for i in ids if i in found]


def picker_groups(farm: Farm) -> list[PickerGroup]:
    """The farm's sensors by field, then device: what the page's picker lists."""
    groups: dict[int | None, PickerGroup] = {}
    for sensor in farm_sensors(farm):
        fld = sensor.device.field
        key = fld.pk if fld else None
        group = groups.get(key)
        if group is None:
            group = groups[key] = PickerGroup(fld.name if fld else "Whole farm")
        if not group.devices or group.devices[-1].name != sensor.device.name:
            group.devices.append(PickerDevice(sensor.device.name))
        group.devices[-1].sensors.append(sensor)
    return list(groups.values())


def season_start_for(sensors: Sequence[Sensor]) -> date | None:
    """The earliest season start among the fields of ``sensors`` (None when no field has one)."""
    starts = [s.device.field.season_start for s in sensors if s.device.field and s.device.field.season_start]
    return min(starts) if starts else None


def farm_fields(farm: Farm) -> QuerySet[Field]:
    return Field.objects.filter(farm=farm).order_by("name")
