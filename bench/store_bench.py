"""The ingest store stage alone: CPU per batch in this process and in its PostgreSQL backend (run by hand).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/furrow .venv/bin/python bench/store_bench.py \\
        [--batches 25] [--without WRITER ...] [--memory] [--json out.json]

The store stage (``Ingestor.store``: plan, COPY, locks, device update, batch writers, commit) is
the serial stage of a drain: the store process works on one batch at a time, so its time per
batch bounds the drain's rate. ``bench/ingest_bench.py`` measures the whole pipeline in wall
time, which moves with whatever else the machine is doing; this script measures the CPU that
one batch costs, in Python (``time.process_time``) and in the PostgreSQL backend serving it
(``/proc`` via psutil), which moves much less on a shared machine. Wall time is printed too.

A database of its own (``<DATABASE_URL name>_storebench``: created, migrated, dropped at the
end) holds one farm with 1,000 1-metric and 1,000 10-metric devices (the simulator's kinds, as
``bench/ingest_bench.py`` registers them). Each batch is 5,000 native messages (5 per device)
with fresh timestamps 10 ms apart, decoded beforehand; the first 3 batches of each kind warm up.
``--without`` unregisters batch writers by name (``rollups_write``, ``alerts_write``) to show
their share; ``--memory`` traces the Python heap's peak while the last batch is stored.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg  # noqa: E402

WARM_UP = 3
MESSAGES = 5000
DEVICES = 1000


def database(base_url: str, *, drop: bool = False) -> str:
    parts = urlsplit(base_url)
    name = parts.path.lstrip("/") + "_storebench"
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop:
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path="/" + name))


def register() -> dict[int, tuple[list[str], list[str]]]:
    """1,000 devices per metric count; uids and metric keys by metric count."""
    from farm.services import farm_create
    from sensors.models import Device, Sensor
    from sensors.services import sensor_from_metric
    from sensors.simulator import catalogue_keys
    from sensors.simulator.registry import simulator_kind_ensure

    farm = farm_create(name="Store bench", slug="store-bench")
    sets = {}
    for metrics in (1, 10):
        kind = simulator_kind_ensure(keys=catalogue_keys(metrics))
        keys = list(kind.metrics.all())
        devices = Device.objects.bulk_create(
            [Device(uid=f"store-{metrics}-{i:04d}", name=f"Store {i}", farm=farm, kind=kind) for i in range(DEVICES)]
        )
        Sensor.objects.bulk_create([sensor_from_metric(device=d, metric=m) for d in devices for m in keys])
        sets[metrics] = ([d.uid for d in devices], [m.key for m in keys])
    return sets


def run(args: argparse.Namespace, sets: dict[int, tuple[list[str], list[str]]]) -> dict[str, Any]:
    from django.db import connection

    from sensors.ingest.pipeline import Ingestor, RawMessage, WorkerConfig

    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="store-bench"))
    connection.ensure_connection()
    backend = psutil.Process(connection.connection.info.backend_pid)
    start_ms = int(time.time() * 1000) - 3 * 86_400_000
    results: dict[str, Any] = {}
    for metrics, (uids, keys) in sets.items():
        wall, python, postgres = [], [], []
        peak = 0.0
        for b in range(args.batches + WARM_UP):
            raw = []
            for i in range(MESSAGES):
                body: dict[str, float] = {"ts": start_ms + (b * MESSAGES + i) * 10}
                body.update({k: 1.0 + (i + j) % 7 for j, k in enumerate(keys)})
                topic = f"farm/{uids[i % DEVICES]}/telemetry".encode()
                raw.append(RawMessage(topic, json.dumps(body).encode(), False, int(time.time() * 1e6)))
            decoded = [ingestor.decode_one(*m) for m in raw]
            tracing = args.memory and b == args.batches + WARM_UP - 1
            if tracing:
                tracemalloc.start()
                base = tracemalloc.get_traced_memory()[0]
            w0, c0, p0 = time.perf_counter(), time.process_time(), sum(backend.cpu_times()[:2])
            ingestor.store(decoded)
            w1, c1, p1 = time.perf_counter(), time.process_time(), sum(backend.cpu_times()[:2])
            if tracing:
                peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20
                tracemalloc.stop()
                continue  # tracing slows Python down: not a timed batch
            if b >= WARM_UP:
                wall.append(w1 - w0)
                python.append(c1 - c0)
                postgres.append(p1 - p0)
        row = {
            "wall_ms_median": statistics.median(wall) * 1000,
            "python_cpu_ms_median": statistics.median(python) * 1000,
            "postgres_cpu_ms_median": statistics.median(postgres) * 1000,
        }
        row["cpu_ms_median"] = row["python_cpu_ms_median"] + row["postgres_cpu_ms_median"]
        if args.memory:
            row["python_heap_peak_mb"] = peak
        results[f"{metrics}-metric"] = row
        print(
            f"{metrics}-metric, {MESSAGES:,} messages a batch, median of {len(wall)}: "
            f"wall {row['wall_ms_median']:.1f} ms; "
            f"CPU {row['cpu_ms_median']:.1f} ms = Python {row['python_cpu_ms_median']:.1f} "
            f"+ PostgreSQL {row['postgres_cpu_ms_median']:.1f}"
            + (f"; Python heap peak {peak:.1f} MB" if args.memory else ""),
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=25, help="timed batches per kind (after 3 to warm up)")
    parser.add_argument("--without", action="append", default=[], metavar="WRITER", help="unregister a batch writer")
    parser.add_argument("--memory", action="store_true", help="trace the Python heap's peak in one extra batch")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base_url = os.environ["DATABASE_URL"]
    os.environ["DATABASE_URL"] = database(base_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "farm.settings_test")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from sensors import hooks

    call_command("migrate", verbosity=0)
    for name in args.without:
        writers = [w for w in hooks.batch_writers() if w.__name__ == name]
        if not writers:
            parser.error(f"no batch writer named {name!r}: {[w.__name__ for w in hooks.batch_writers()]}")
        hooks.unregister_batch_writer(writers[0])
    try:
        results = run(args, register())
        results["writers"] = [w.__name__ for w in hooks.batch_writers()]
        results["uptime"] = os.popen("uptime").read().strip()
        print(f"batch writers: {', '.join(results['writers']) or 'none'}; {results['uptime']}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        connection.close()
        database(base_url, drop=True)


if __name__ == "__main__":
    main()
