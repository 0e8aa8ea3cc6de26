"""The demo farm's past: weeks of readings, their rollups and alert episodes, seeded once in seconds.

The simulator's own backfill goes through MQTT and ingest like a device (a day of it on
every ``make run``). The weeks before it are computed with the simulator's signal models
(rain events, the diurnal temperature curve, soil drying and wetting) on each device's
interval grid, on every core, and COPY-loaded (``sensors.history.seed``), the rollups rebuilt
set-based in the same transaction, and the alert episodes the history makes replayed
(``alerts.demo``) without the notifications the live alert writer would send for weeks-old
alerts. The signal models are most of the time (docs/benchmarks.md, "Demo history"); the
direct path spares the broker, decoding and per-batch writers. The seeded range ends where the
simulator's backfill begins, so the two never overlap and the simulator's count of readings
stays its own.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from alerts.demo import demo_episodes_replay
from farm.models import Farm
from sensors.history.seed import SeedColumn, readings_seed
from sensors.models import Sensor
from sensors.simulator.devices import SimDevice
from sensors.simulator.history import MetricHistory, history_slice
from sensors.simulator.registry import registered_sim_devices

HISTORY_DAYS: Final = 90
# The Procfile's simulator republishes this much through MQTT (``simulate --backfill 24``).
LIVE_BACKFILL_HOURS: Final = 24
SLICES: Final = 6  # per device: time slices computed in parallel


@dataclass(frozen=True, slots=True)
class HistorySeeded:
    days: int
    first_day: date
    end: datetime
    readings: int
    episodes: int
    seconds: float

    def line(self) -> str:
        return (
            f"Seeded {self.days} days of history from {self.first_day:%d %b %Y}: {self.readings:,} readings "
            f"and their rollups, {self.episodes} past alert episodes, in {self.seconds:.1f} s."
        )


def history_first_day(farm: Farm, now: datetime, days: int = HISTORY_DAYS) -> date:
    return now.astimezone(ZoneInfo(farm.time_zone)).date() - timedelta(days=days)


def demo_history_seed(*, farm: Farm, now: datetime, days: int = HISTORY_DAYS) -> HistorySeeded:
    """Seed the farm's readings from local midnight ``days`` days ago up to the simulator's backfill."""
    began = time.perf_counter()
    first_day = history_first_day(farm, now, days)
    start = datetime.combine(first_day, datetime.min.time(), tzinfo=ZoneInfo(farm.time_zone))
    end = now - timedelta(hours=LIVE_BACKFILL_HOURS)
    sensors = {(s.device.uid, s.key): s.pk for s in Sensor.objects.filter(device__farm=farm).select_related("device")}
    devices = registered_sim_devices(farm_slug=farm.slug)  # seed 0: the Procfile simulator's weather
    columns = [
        SeedColumn(sensors[(uid, metric.key)], metric.ts_us, metric.values)
        for uid, metric in _histories(devices, start_s=int(start.timestamp()), end_s=int(end.timestamp()))
        if (uid, metric.key) in sensors
    ]
    readings = readings_seed(columns=columns, start=start, end=end)
    episodes = demo_episodes_replay(farm=farm, start=start, end=end)
    return HistorySeeded(days, first_day, end, readings, episodes, time.perf_counter() - began)


def _histories(devices: list[SimDevice], *, start_s: int, end_s: int) -> Iterator[tuple[str, MetricHistory]]:
    """Every device's history, computed on all cores: pure Python signal models, ~30k readings/s on one core.

    Each device's range is cut into slices (the models keep no state between times), so a
    weather station reporting every 5 minutes does not leave the other cores idle.
    """
    jobs = []
    for device in devices:
        step = (end_s - start_s) // SLICES + 1
        jobs += [(device, a, min(a + step, end_s)) for a in range(start_s, end_s, step)]
    workers = min(len(jobs), os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        slices = list(pool.map(history_slice, jobs))  # a pure module: spawned workers need no Django
    merged: dict[tuple[str, str], MetricHistory] = {}
    for (device, _, _), metrics in zip(jobs, slices, strict=True):
        for metric in metrics:
            column = merged.setdefault((device.uid, metric.key), MetricHistory(metric.key))
            column.ts_us += metric.ts_us
            column.values += metric.values
    for (uid, _), column in merged.items():
        yield uid, column
