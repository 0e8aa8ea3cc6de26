"""The worker's cache of registered devices and their sensors: uid → ids, no per-message query.

The cache is reloaded when a cheap fingerprint of the device, sensor and metric-spec
tables changes (checked at most every ``check_interval`` seconds, one small query).
The fingerprint covers what the worker uses -- uid, farm, kind, enabled; sensor keys;
metric specs -- plus ``Device.updated_at`` for admin saves. The worker's own status and
last-seen updates don't touch any of it, so they never force a reload.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection

from sensors.models import Device, MetricSpec, Sensor

logger = logging.getLogger(__name__)

_FINGERPRINT_SQL = """
SELECT
  (SELECT count(*) FROM sensors_device),
  (SELECT max(updated_at) FROM sensors_device),
  (SELECT coalesce(sum(hashtextextended(uid || ':' || farm_id || ':' || kind_id || ':' || enabled::text, 0)), 0)
     FROM sensors_device),
  (SELECT count(*) FROM sensors_sensor),
  (SELECT coalesce(sum(hashtextextended(key || ':' || device_id, 0)), 0) FROM sensors_sensor),
  (SELECT count(*) FROM sensors_metricspec),
  (SELECT coalesce(sum(hashtextextended(kind_id || ':' || key || ':' || label || ':' || unit, 0)), 0)
     FROM sensors_metricspec)
"""


@dataclass(frozen=True, slots=True)
class SpecEntry:
    """What a new sensor copies from its device kind's metric spec."""

    label: str
    unit: str
    min_value: float | None
    max_value: float | None


@dataclass(slots=True)
class DeviceEntry:
    id: int
    farm_id: int
    kind_id: int
    enabled: bool
    sensors: dict[str, int] = field(default_factory=dict)


class Registry:
    """uid → device entry with its sensors by metric key, and metric specs by kind.

    ``max_extra_metrics`` bounds the sensors a device may have beyond its kind's metrics
    (INGEST_MAX_EXTRA_METRICS); the store checks it when a batch brings a new key.
    """

    def __init__(self, *, check_interval: float = 1.0, max_extra_metrics: int | None = None) -> None:
        self.devices: dict[str, DeviceEntry] = {}
        self.specs: dict[int, dict[str, SpecEntry]] = {}
        self.check_interval = check_interval
        self.max_extra_metrics: int = (
            settings.INGEST_MAX_EXTRA_METRICS if max_extra_metrics is None else max_extra_metrics
        )
        self._fingerprint: tuple[Any, ...] | None = None
        self._checked_at = float("-inf")

    def refresh(self, *, force: bool = False) -> bool:
        """Reload if an admin changed devices, sensors or specs; True when it reloaded."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.check_interval:
            return False
        fingerprint = _fingerprint()
        self._checked_at = now
        if not force and fingerprint == self._fingerprint:
            return False
        self._load()
        self._fingerprint = fingerprint
        return True

    def invalidate(self) -> None:
        """Reload on the next ``refresh`` (after an error that suggests the cache is stale)."""
        self._fingerprint = None
        self._checked_at = float("-inf")

    def add_sensors(self, created: dict[tuple[int, str], int]) -> None:
        """Record sensors the worker created, once their transaction has committed."""
        by_id = {entry.id: entry for entry in self.devices.values()}
        for (device_id, key), sensor_id in created.items():
            entry = by_id.get(device_id)
            if entry is not None:
                entry.sensors[key] = sensor_id

    def _load(self) -> None:
        started = time.monotonic()
        devices: dict[str, DeviceEntry] = {}
        by_id: dict[int, DeviceEntry] = {}
        for id_, uid, farm_id, kind_id, enabled in Device.objects.values_list(
            "id", "uid", "farm_id", "kind_id", "enabled"
        ).iterator(chunk_size=10_000):
            devices[uid] = by_id[id_] = DeviceEntry(id_, farm_id, kind_id, enabled)
        for sensor_id, device_id, key in Sensor.objects.values_list("id", "device_id", "key").iterator(
            chunk_size=10_000
        ):
            if device_id in by_id:
                by_id[device_id].sensors[key] = sensor_id
        specs: dict[int, dict[str, SpecEntry]] = {}
        for kind_id, key, label, unit, low, high in MetricSpec.objects.values_list(
            "kind_id", "key", "label", "unit", "min_value", "max_value"
        ):
            specs.setdefault(kind_id, {})[key] = SpecEntry(label, unit, low, high)
        self.devices, self.specs = devices, specs
        logger.info(
            "device registry loaded: %d devices, %d sensors in %.0f ms",
            len(devices),
            sum(len(d.sensors) for d in devices.values()),
            (time.monotonic() - started) * 1000,
        )


def _fingerprint() -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        cursor.execute(_FINGERPRINT_SQL)
        row = cursor.fetchone()
    return tuple(row) if row else ()
