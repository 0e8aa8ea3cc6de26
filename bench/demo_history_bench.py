"""How long the demo farm's seeded history takes, phase by phase (run by hand, not a test).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/furrow_x REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/demo_history_bench.py [--runs 3]

``make run`` seeds it once, in ``seed_demo`` before any process starts (farm/devstack/history.py),
so its time is added to the first start's "ready in". Against the migrated database of
``DATABASE_URL``, inside one transaction that is rolled back (nothing is left behind; the demo
farm must not exist there yet), each run creates the demo farm and its rules and times:
the signal models on one core and on every core (the ratio is the process pool's gain), the
COPY of the readings, the rollup rebuild, the alert replay, and ``demo_history_seed`` whole.
It also prints the broker time alone of the alternative (publishing the history through MQTT
as the simulator's backfill does: one message per reading time for LoRaWAN devices, 100 per
buffered array for native ones, at the demo broker's measured ~3,600 messages/s,
docs/architecture.md §5): a lower bound, since that path computes the same signals and adds
decoding, ingest and the batch writers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "farm.settings")
os.environ.setdefault("DEBUG", "1")
# Django is set up in main() only: the seed's process pool spawns workers that import this module.

AMQTT_MESSAGES_PER_S = 3600.0


class Rollback(Exception):
    pass


def one_run() -> dict[str, float]:
    from django.db import transaction
    from django.utils import timezone

    from alerts.demo import demo_episodes_replay, demo_rules_ensure
    from alerts.models import AlertEpisode
    from farm.devstack import history
    from farm.devstack.demo import demo_farm_create
    from sensors.history import seed
    from sensors.simulator.devices import Shape
    from sensors.simulator.history import device_history
    from sensors.simulator.registry import registered_sim_devices

    figures: dict[str, float] = {}
    try:
        with transaction.atomic():
            now = timezone.now()
            farm = demo_farm_create(now=now)
            demo_rules_ensure(farm=farm)
            start = datetime.combine(history.history_first_day(farm, now), datetime.min.time(),
                                     tzinfo=ZoneInfo(farm.time_zone))  # fmt: skip
            end = now - timedelta(hours=history.LIVE_BACKFILL_HOURS)
            s0, s1 = int(start.timestamp()), int(end.timestamp())
            devices = registered_sim_devices(farm_slug=farm.slug)
            began = time.perf_counter()
            serial = [device_history(d, start_s=s0, end_s=s1) for d in devices]
            figures["models_one_core_s"] = time.perf_counter() - began
            began = time.perf_counter()
            list(history._histories(devices, start_s=s0, end_s=s1))
            figures["models_all_cores_s"] = time.perf_counter() - began
            readings = sum(len(m.ts_us) for metrics in serial for m in metrics)
            messages = sum(len(m.ts_us) // (100 if d.shape is Shape.NATIVE else 1) / len(metrics)
                           for d, metrics in zip(devices, serial, strict=True) for m in metrics)  # fmt: skip
            figures["readings"] = readings
            figures["through_amqtt_s"] = messages / AMQTT_MESSAGES_PER_S
            rebuild = seed.rollups_rebuild
            timed: dict[str, float] = {}

            def timed_rebuild(**kwargs: object) -> None:
                t = time.perf_counter()
                rebuild(**kwargs)  # type: ignore[arg-type]
                timed["rollups_s"] = time.perf_counter() - t

            seed.rollups_rebuild = timed_rebuild
            try:
                began = time.perf_counter()
                history.demo_history_seed(farm=farm, now=now)
                figures["seed_whole_s"] = time.perf_counter() - began
            finally:
                seed.rollups_rebuild = rebuild
            figures["rollups_s"] = timed["rollups_s"]
            AlertEpisode.objects.filter(rule__farm=farm).delete()
            began = time.perf_counter()
            demo_episodes_replay(farm=farm, start=start, end=end)  # again: the replay alone
            figures["replay_s"] = time.perf_counter() - began
            raise Rollback
    except Rollback:
        pass
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import django

    django.setup()
    print(f"nproc {os.cpu_count()}; load before {os.getloadavg()}")
    runs = [one_run() for _ in range(args.runs)]
    print(f"load after {os.getloadavg()}")
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"{key:>20}: median {statistics.median(values):10.2f}   runs {', '.join(f'{v:.2f}' for v in values)}")
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    gain = median["models_one_core_s"] / median["models_all_cores_s"]
    broker = median["through_amqtt_s"] / median["seed_whole_s"]
    print(f"process pool gain: {gain:.2f}x; broker time alone of the MQTT path / whole seed: {broker:.2f}")


if __name__ == "__main__":
    main()
