"""History: series from rollups vs today's raw query, CSV export speed and memory, ingest with rollups on/off.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/furrow REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/history_bench.py [--rows 50000000] [--sensors 300] [--fast 5] [--repeat 30]

Run by hand, never by ``make test``. It drops, creates and migrates ``<DATABASE_URL name>_histbench``
(nothing else on the server is touched) and:

1. loads ``--rows`` readings over the year before now: ``--fast`` sensors every 10 s, the rest
   of ``--sensors`` at the interval that makes up the total; rows go in with one
   ``INSERT … SELECT generate_series`` per sensor group (server-side, into the partitions), then
   the rollups are built from them in one pass (``rollups_rebuild``) and everything is
   ``VACUUM ANALYZE``d;
2. times ``sensor_series`` (``max_points=2000``, as the history page asks) against today's raw query
   (the bucketed ``date_bin`` over raw readings that ``sensor_series`` ran before rollups), same
   windows, same run: one 10-s sensor over 30 days and over a year, 8 sensors over a year;
   ``--repeat`` windows each, ending at random times; server time measured around the statement;
3. exports 1,000,000 raw rows (or all there are) through ``export_lines`` (the export view's
   generator): rows/s, and this process's RSS before and at the end;
4. drains ``--drain-batches`` ingest batches of ``--batch`` readings through the real store
   (``Ingestor.ingest``: decode, COPY, batch writers, commit) with the rollup writer registered and
   unregistered, alternating, and reports readings/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg  # noqa: E402

YEAR = timedelta(days=365)


def fresh_database(base_url: str) -> str:
    parts = urlsplit(base_url)
    name = parts.path.lstrip("/") + "_histbench"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path="/" + name))


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "farm.settings_test")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def load(*, rows: int, sensors: int, fast: int, now: datetime) -> tuple[list[int], list[int], float]:
    """Readings over the year before ``now``: (fast sensor ids, slow ones, seconds taken)."""
    from django.db import connection

    from farm.models import Farm
    from sensors.history.rollups import rollups_rebuild
    from sensors.models import Device, DeviceKind, Sensor

    farm = Farm.objects.create(name="Bench", slug="bench", time_zone="Europe/London")
    kind = DeviceKind.objects.create(name="Bench probe", slug="bench-probe")
    ids = []
    for i in range(sensors):
        device = Device.objects.create(uid=f"bench-{i}", name=f"Bench {i}", farm=farm, kind=kind)
        ids.append(Sensor.objects.create(device=device, key="soil_moisture", label="Soil moisture", unit="%").pk)
    fast_ids, slow_ids = ids[:fast], ids[fast:]
    fast_rows = fast * int(YEAR.total_seconds() // 10)
    slow_interval = max(10, int(YEAR.total_seconds() * len(slow_ids) // max(1, rows - fast_rows)))
    started = time.perf_counter()
    start = now - YEAR
    with connection.cursor() as cursor:
        for group, step in ((fast_ids, 10), (slow_ids, slow_interval)):
            for sid in group:
                cursor.execute(
                    "INSERT INTO sensors_reading (sensor_id, ts, value) "
                    "SELECT %s, g, 20 + 10 * sin(extract(epoch FROM g) / 86400) + random() "
                    "FROM generate_series(%s::timestamptz, %s::timestamptz, make_interval(secs => %s)) g",
                    [sid, start, now, step],
                )
        loaded = time.perf_counter() - started
        print(f"loaded in {loaded:.0f} s; building rollups", flush=True)
        t = time.perf_counter()
        rollups_rebuild(sensor_ids=ids, start=start - timedelta(days=2), end=now + timedelta(days=2))
        print(f"rollups built in {time.perf_counter() - t:.0f} s; vacuum analyze", flush=True)
    old = connection.connection.autocommit
    connection.connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    connection.connection.autocommit = old
    return fast_ids, slow_ids, loaded


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def _raw(sensor_ids: list[int], start: datetime, end: datetime) -> None:
    """Today's query before rollups: the raw readings bucketed to at most 2,000 points."""
    from sensors.history.selectors import _SERIES_SQL, _bucket_rows, bucket_seconds_for

    bucket = bucket_seconds_for(span_seconds=(end - start).total_seconds(), max_points=2000)
    _bucket_rows(_SERIES_SQL, sensor_ids, start, end, bucket)


def _new(sensor_ids: list[int], start: datetime, end: datetime) -> None:
    from sensors.history.selectors import sensor_series

    sensor_series(sensor_ids=sensor_ids, start=start, end=end, max_points=2000)


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def queries(*, fast: list[int], slow: list[int], now: datetime, repeat: int) -> dict[str, Any]:
    rng = random.Random(7)
    out: dict[str, Any] = {}
    cases = {
        "1 sensor (10 s) x 30 days": (lambda: [rng.choice(fast)], timedelta(days=30)),
        "1 sensor (10 s) x 1 year": (lambda: [rng.choice(fast)], YEAR),
        "8 sensors (one at 10 s) x 1 year": (lambda: fast[:1] + rng.sample(slow, 7), YEAR),
    }
    for name, (pick, span) in cases.items():
        times: dict[str, list[float]] = {"rollups": [], "raw": []}
        for _ in range(repeat):
            ids = pick()
            end = now - timedelta(seconds=rng.uniform(0, max(0.0, (YEAR - span).total_seconds())))
            for label, fn in (("rollups", _new), ("raw", _raw)):
                times[label].append(_timed(partial(fn, ids, end - span, end)))
        row: dict[str, Any] = {k: {"p50": _p(v, 50), "p95": _p(v, 95)} for k, v in times.items()}
        row["ratio_p95"] = row["raw"]["p95"] / row["rollups"]["p95"]
        out[name] = row
        print(
            f"{name}: rollups p50 {row['rollups']['p50']:.1f} ms p95 {row['rollups']['p95']:.1f} ms; "
            f"raw p50 {row['raw']['p50']:.1f} ms p95 {row['raw']['p95']:.1f} ms; {row['ratio_p95']:.1f}x",
            flush=True,
        )
    return out


def export(*, fast: list[int], slow: list[int], now: datetime) -> dict[str, float]:
    from sensors.history.exports import ExportSensor, export_lines

    process = psutil.Process()
    before = process.memory_info().rss
    sensors = [ExportSensor(sid, f"Bench {sid} / Soil moisture", "%") for sid in fast[:1] + slow]
    count, peak = 0, before
    started = time.perf_counter()
    for chunk in export_lines(sensors=sensors, start=now - YEAR, end=now, resolution="raw", time_zone="Europe/London"):
        count += len(chunk)
        if count % 100_000 < len(chunk):
            peak = max(peak, process.memory_info().rss)
        if count > 1_000_000:
            break
    seconds = time.perf_counter() - started
    result = {
        "rows": count - 1,
        "rows_per_s": (count - 1) / seconds,
        "rss_before_mb": before / 2**20,
        "rss_peak_mb": max(peak, process.memory_info().rss) / 2**20,
    }
    print(
        f"export: {result['rows']:,} rows at {result['rows_per_s']:,.0f} rows/s; RSS {result['rss_before_mb']:.0f} "
        f"-> {result['rss_peak_mb']:.0f} MB",
        flush=True,
    )
    return result


def drain(*, batches: int, batch: int, now: datetime) -> dict[str, float]:
    """Ingest ``batches`` batches through the real store, rollups on and off alternately, new timestamps each time."""
    from sensors.history.rollups import rollups_write
    from sensors.hooks import register_batch_writer, unregister_batch_writer
    from sensors.ingest.pipeline import Ingestor, RawMessage, WorkerConfig

    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="history-bench"))
    devices = 100
    per_message = max(1, batch // devices)
    seconds = {"on": 0.0, "off": 0.0}
    readings = {"on": 0, "off": 0}
    base = int(now.timestamp()) - 3 * 86400
    for b in range(batches * 2):
        mode = "on" if b % 2 == 0 else "off"
        (register_batch_writer if mode == "on" else unregister_batch_writer)(rollups_write)
        messages = []
        for d in range(devices):
            points = [{"ts": base + (b * per_message + k) * 0.5, "soil_moisture": 1.0 + k} for k in range(per_message)]
            body = json.dumps(points).encode()
            messages.append(RawMessage(f"farm/bench-{d}/telemetry".encode(), body, False, int(time.time() * 1e6)))
        decoded = [ingestor.decode_one(*m) for m in messages]
        started = time.perf_counter()
        ingestor.store(decoded)
        seconds[mode] += time.perf_counter() - started
        readings[mode] += devices * per_message
    register_batch_writer(rollups_write)
    result = {m: readings[m] / seconds[m] for m in seconds}
    result["ratio"] = result["on"] / result["off"]
    print(
        f"drain: rollups on {result['on']:,.0f} readings/s, off {result['off']:,.0f}; ratio {result['ratio']:.2f}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000_000, help="readings in all (the 10-s sensors included)")
    parser.add_argument("--sensors", type=int, default=300)
    parser.add_argument("--fast", type=int, default=5, help="sensors reporting every 10 s")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--drain-batches", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    url = fresh_database(os.environ["DATABASE_URL"])
    setup_django(url)
    now = datetime.now(tz=UTC).replace(microsecond=0)
    fast, slow, loaded = load(rows=args.rows, sensors=args.sensors, fast=args.fast, now=now)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sensors_reading")
        total = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM sensors_rolluphour")
        hours = cursor.fetchone()[0]
    print(f"{total:,} readings, {hours:,} hourly rollups", flush=True)
    report = {
        "readings": total,
        "hourly_rollups": hours,
        "load_s": loaded,
        "queries": queries(fast=fast, slow=slow, now=now, repeat=args.repeat),
        "export": export(fast=fast, slow=slow, now=now),
        "drain": drain(batches=args.drain_batches, batch=args.batch, now=now),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
