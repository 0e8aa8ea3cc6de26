"""A device's history as columns: what it would have reported on its interval grid, for seeding a demo fast.

The same signals and the same grid as the simulator's MQTT backfill (``runner.backfill``):
a reading at every multiple of the device's interval, each sampled with the previous
grid point as ``since``. So history seeded straight into the database and history the
simulator publishes later agree to the value where they meet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sensors.simulator.devices import SimDevice
from sensors.simulator.physics import sample


@dataclass(slots=True)
class MetricHistory:
    """One metric of one device: times in epoch microseconds, ascending, and values."""

    key: str
    ts_us: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


def grid_times(*, interval: int, start_s: int, end_s: int) -> range:
    """The multiples of ``interval`` (seconds since the epoch) in ``[start_s, end_s)``."""
    first = -(-start_s // interval) * interval
    return range(first, end_s, interval)


def device_history(device: SimDevice, *, start_s: int, end_s: int) -> list[MetricHistory]:
    """Every reading ``device`` would have made in ``[start_s, end_s)``, one column pair per metric."""
    columns = {key: MetricHistory(key) for key in device.keys}
    for t in grid_times(interval=device.interval, start_s=start_s, end_s=end_s):
        values = sample(device.physics, device.keys, t, since=t - device.interval, ranges=device.ranges)
        for key, value in values.items():
            column = columns[key]
            column.ts_us.append(t * 1_000_000)
            column.values.append(value)
    return list(columns.values())


def history_slice(job: tuple[SimDevice, int, int]) -> list[MetricHistory]:
    """``device_history`` of (device, start_s, end_s): what a process pool maps over slices of time."""
    device, start_s, end_s = job
    return device_history(device, start_s=start_s, end_s=end_s)
