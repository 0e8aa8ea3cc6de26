"""The one seam between ingest and everything downstream of it (DESIGN.md §1).

The ingest pipeline knows nothing about dashboards, channel layers or alert
rules. After each batch commits it hands a ``BatchOutcome`` to every
registered hook. Hooks are registered by the apps that care (e.g.
``dashboard.apps.DashboardConfig.ready``) and must take the whole batch at
once: no per-reading work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

logger = logging.getLogger(__name__)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)

Row = tuple[int, str, float]
"""One stored reading: (time in integer µs since the Unix epoch, metric key, value)."""


class DeviceRef(Protocol):
    """Whose rows a ``ReadingGroup`` holds. Ingest passes its registry entries as they are."""

    @property
    def id(self) -> int: ...

    @property
    def farm_id(self) -> int: ...

    @property
    def sensors(self) -> Mapping[str, int]:
        """Sensor id by metric key; it has every key of the group's rows."""
        ...


@dataclass(frozen=True, slots=True)
class DeviceSensors:
    """A ``DeviceRef`` of its own, for outcomes built outside the ingest registry."""

    id: int
    farm_id: int
    sensors: Mapping[str, int]


ReadingGroup = tuple[DeviceRef, Sequence[Row]]
"""Rows of one device: one decoded message's, from ingest. Shared with ingest: never change them."""


@dataclass(frozen=True, slots=True)
class StoredReading:
    """One reading as an object: handy for tools and tests, too dear to build for a whole batch."""

    farm_id: int
    device_id: int
    sensor_id: int
    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """A device's state after the batch: status, last seen and link health."""

    farm_id: int
    device_id: int
    status: str
    last_seen: datetime | None
    battery: float | None = None
    rssi: float | None = None
    snr: float | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one committed batch stored: its readings, and its devices' new state.

    A batch holds up to tens of thousands of readings, so they stay in the shape ingest
    decoded them, one ``ReadingGroup`` per message in batch order, with no object or
    datetime per reading: building those cost more than the whole live fan-out did.
    Every reading the batch wrote is there, a redelivered one too (the table kept its
    first copy). A hook that wants them all iterates ``rows()``; one that keeps a few
    converts only those (``ts // 1000`` is epoch milliseconds).
    """

    groups: Sequence[ReadingGroup] = ()
    devices: Sequence[DeviceChange] = ()

    @classmethod
    def of_readings(cls, readings: Iterable[StoredReading], devices: Sequence[DeviceChange] = ()) -> BatchOutcome:
        """An outcome from reading objects (tests, tools): one group per reading."""
        groups: list[ReadingGroup] = []
        for r in readings:
            key = f"sensor_{r.sensor_id}"
            device = DeviceSensors(r.device_id, r.farm_id, {key: r.sensor_id})
            groups.append((device, [((r.ts - _EPOCH) // _ONE_US, key, r.value)]))
        return cls(groups=groups, devices=devices)

    def rows(self) -> Iterator[tuple[int, int, int, int, float]]:
        """Every reading as ``(farm_id, device_id, sensor_id, ts_us, value)``, in batch order."""
        for device, rows in self.groups:
            farm_id, device_id, sensors = device.farm_id, device.id, device.sensors
            for ts, key, value in rows:
                yield farm_id, device_id, sensors[key], ts, value

    def stored_readings(self) -> Iterator[StoredReading]:
        """Every reading as a ``StoredReading``: an object and a datetime each, not for a hot path."""
        for farm_id, device_id, sensor_id, ts, value in self.rows():
            yield StoredReading(farm_id, device_id, sensor_id, _EPOCH + ts * _ONE_US, value)

    def farm_ids(self) -> set[int]:
        return {device.farm_id for device, _ in self.groups} | {d.farm_id for d in self.devices}


BatchHook = Callable[[BatchOutcome], None]
_hooks: list[BatchHook] = []


def register_batch_hook(hook: BatchHook) -> None:
    if hook not in _hooks:
        _hooks.append(hook)


def unregister_batch_hook(hook: BatchHook) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


def run_batch_hooks(outcome: BatchOutcome) -> None:
    """Call every hook; one failing hook never stops the others or the ingest loop.

    Call this from ``transaction.on_commit`` so nothing downstream sees
    uncommitted data.
    """
    for hook in list(_hooks):
        try:
            hook(outcome)
        except Exception:
            logger.exception("batch hook %s failed", getattr(hook, "__qualname__", hook))
