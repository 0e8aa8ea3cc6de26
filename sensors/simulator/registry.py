"""The database side of the simulator: which registered devices to play, and registering synthetic ones."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.db.models import QuerySet

from farm.models import Farm
from sensors.models import Device, DeviceKind, MetricSpec
from sensors.services import device_register
from sensors.simulator.devices import SimDevice, build_device, site_for
from sensors.simulator.physics import CATALOGUE


def simulated_device_list(*, farm_slug: str | None = None, limit: int | None = None) -> QuerySet[Device]:
    """Enabled devices (of one farm, or all), oldest first, with what the simulator needs of each."""
    devices = (
        Device.objects.filter(enabled=True)
        .select_related("farm", "kind")
        .prefetch_related("kind__metrics")
        .order_by("id")
    )
    if farm_slug:
        devices = devices.filter(farm__slug=farm_slug)
    return devices[:limit] if limit else devices


def _ranges(metrics: list[MetricSpec]) -> dict[str, tuple[float, float]]:
    """Plausible ranges, for metrics the simulator has no physics for."""
    return {m.key: (m.min_value, m.max_value) for m in metrics if m.min_value is not None and m.max_value is not None}


def sim_device_from(device: Device, *, shape: str, seed: int, allow_seconds: bool) -> SimDevice:
    farm = device.farm
    metrics = list(device.kind.metrics.all())
    return build_device(
        uid=device.uid,
        keys=[metric.key for metric in metrics],
        site=site_for(
            farm_slug=farm.slug,
            time_zone=farm.time_zone,
            latitude=float(farm.latitude) if farm.latitude is not None else None,
            seed=seed,
        ),
        interval=device.interval_seconds,
        farm_slug=farm.slug,
        kind_name=device.kind.name,
        shape=shape,
        seed=seed,
        ranges=_ranges(metrics),
        allow_seconds=allow_seconds,
    )


def registered_sim_devices(
    *,
    farm_slug: str | None = None,
    limit: int | None = None,
    shape: str = "mixed",
    seed: int = 0,
    allow_seconds: bool = True,
) -> list[SimDevice]:
    """The registered devices that report at least one metric, as simulated devices."""
    devices = [
        sim_device_from(device, shape=shape, seed=seed, allow_seconds=allow_seconds)
        for device in simulated_device_list(farm_slug=farm_slug, limit=limit)
    ]
    return [device for device in devices if device.keys]


def simulator_kind_ensure(*, keys: Sequence[str]) -> DeviceKind:
    """A device kind measuring exactly ``keys`` (from the metric catalogue), for synthetic devices."""
    slug = f"simulator-{len(keys)}-metrics"
    kind, _ = DeviceKind.objects.get_or_create(
        slug=slug,
        defaults={
            "name": f"Simulator ({len(keys)} metrics)",
            "description": "Created by `manage.py simulate --register` for synthetic load-test devices.",
            "expected_interval": 300,
        },
    )
    for key in keys:
        info = CATALOGUE[key]
        MetricSpec.objects.get_or_create(
            kind=kind,
            key=key,
            defaults={"label": info.label, "unit": info.unit, "min_value": info.low, "max_value": info.high},
        )
    return kind


@transaction.atomic
def synthetic_devices_register(*, farm: Farm, devices: Sequence[SimDevice]) -> int:
    """Register synthetic devices (and their sensors) in ``farm``; returns how many were new.

    Through the same service as the admin, so whatever tells the ingest
    worker about new devices hears of these too. Existing uids are left as
    they are.
    """
    existing = set(Device.objects.filter(uid__in=[d.uid for d in devices]).values_list("uid", flat=True))
    kinds = {keys: simulator_kind_ensure(keys=keys) for keys in {device.keys for device in devices}}
    new = [device for device in devices if device.uid not in existing]
    for device in new:
        device_register(uid=device.uid, name=f"Simulated {device.uid}", farm=farm, kind=kinds[device.keys])
    return len(new)
