"""History: series from rollups vs today's raw query, CSV export speed and memory, ingest with rollups on/off.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/furrow REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/history_bench.py [--rows 50000000] [--sensors 300] [--fast 5] [--repeat 30]

Run by hand, never by ``make test``. It drops, creates and migrates ``<DATABASE_URL name>_histbench``
(nothing else on the server is touched; dropped again at the end unless ``--keep``; ``--reuse``
measures a kept one without loading) and:

1. loads ``--rows`` readings over the year before now (``load``): ``--fast`` sensors every 10 s,
   the rest of ``--sensors`` at the interval that makes up the total, generated in the server;
   builds the rollups set-based (``build_rollups``), checks a few against a recompute and runs
   ``VACUUM ANALYZE``;
2. times ``sensor_series`` (``max_points=2000``, as the history page asks) against today's raw query
   (the bucketed ``date_bin`` over raw readings that ``sensor_series`` ran before rollups), same
   windows, same run: one 10-s sensor over 30 days and over a year, 8 sensors over a year;
   ``--repeat`` windows each, ending at random times; server time measured around the statement;
3. exports ~1.04 M raw rows in process (``export_lines``) and over HTTP from daphne (``export``):
   rows/s, and daphne's RSS before and at its peak;
4. drains ``--drain-batches`` pairs of ``--batch``-reading ingest batches through the real store
   (``Ingestor.store``: COPY, batch writers, commit) with the rollup writer registered and
   unregistered, alternating, and reports readings/s of each and the ratio; then times the refresh
   of the dirty hours the drain logged (``rollups_refresh``, which beat runs in another process)
   and of every hour of the last day of every sensor, and of every sensor's latest hour (the
   steady state: what a refresh every 10 s has to do when every sensor reports).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg  # noqa: E402

YEAR = timedelta(days=365)


def bench_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=parts.path + "_histbench"))


def fresh_database(base_url: str) -> str:
    parts = urlsplit(bench_url(base_url))
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts)


def loaded_sensors(*, fast: int) -> tuple[list[int], list[int], datetime]:
    """A kept database's sensors (the first ``fast`` are the 10-s ones) and the load's ``now``."""
    from django.db import connection

    from sensors.models import Sensor

    ids = list(Sensor.objects.order_by("pk").values_list("pk", flat=True))
    with connection.cursor() as cursor:
        # The last sensor: the drain writes to the first hundred only (its end is near the load's).
        cursor.execute("SELECT max(ts) FROM sensors_reading WHERE sensor_id = %s", [ids[-1]])
        now = cursor.fetchone()[0]
    return ids[:fast], ids[fast:], now


def drop_database(url: str) -> None:
    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "farm.settings_test")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def load(*, rows: int, sensors: int, fast: int, now: datetime) -> tuple[list[int], list[int], float]:
    """Readings over the year before ``now``: (fast sensor ids, slow ones, seconds taken to load them).

    Generated inside the server (``generate_series``), one ``INSERT … SELECT`` per sensor.
    For the load only: the primary key is dropped and built again after it (a sorted build
    instead of 50 million index insertions), the partitions are unlogged (no WAL), commits
    are asynchronous. Reads do not depend on either; the partition that the drain writes to
    (``drain``: the hour before ``now``) is made logged again, so ingest is measured as it runs.
    """
    from django.db import connection

    from farm.models import Farm
    from sensors.models import Device, DeviceKind, Sensor

    farm = Farm.objects.create(name="Bench", slug="bench", time_zone="Europe/London")
    kind = DeviceKind.objects.create(name="Bench probe", slug="bench-probe")
    devices = Device.objects.bulk_create(
        Device(uid=f"bench-{i}", name=f"Bench {i}", farm=farm, kind=kind) for i in range(sensors)
    )
    made = Sensor.objects.bulk_create(
        Sensor(device=d, key="soil_moisture", label="Soil moisture", unit="%") for d in devices
    )
    ids = [s.pk for s in made]
    fast_ids, slow_ids = ids[:fast], ids[fast:]
    fast_rows = fast * int(YEAR.total_seconds() // 10)
    slow_interval = max(10, int(YEAR.total_seconds() * len(slow_ids) // max(1, rows - fast_rows)))
    started = time.perf_counter()
    start = now - YEAR
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("ALTER TABLE sensors_reading DROP CONSTRAINT sensors_reading_pkey")
        partitions = _partitions(cursor)
        for name in partitions:
            cursor.execute(f'ALTER TABLE "{name}" SET UNLOGGED')
        for group, step in ((fast_ids, 10), (slow_ids, slow_interval)):
            for sid in group:
                cursor.execute(
                    "INSERT INTO sensors_reading (sensor_id, ts, value) "
                    "SELECT %s, g, 20 + 10 * sin(extract(epoch FROM g) / 86400) + random() "
                    "FROM generate_series(%s::timestamptz, %s::timestamptz, make_interval(secs => %s)) g",
                    [sid, start, now, step],
                )
        print(f"rows in after {time.perf_counter() - started:.0f} s; building the primary key", flush=True)
        cursor.execute("ALTER TABLE sensors_reading ADD CONSTRAINT sensors_reading_pkey PRIMARY KEY (sensor_id, ts)")
        cursor.execute(
            "SELECT tableoid::regclass::text FROM sensors_reading WHERE sensor_id = %s AND ts = "
            "(SELECT max(ts) FROM sensors_reading WHERE sensor_id = %s)",
            [ids[0], ids[0]],
        )
        cursor.execute(f'ALTER TABLE "{cursor.fetchone()[0]}" SET LOGGED')
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute("RESET synchronous_commit")
    loaded = time.perf_counter() - started
    print(f"loaded in {loaded:.0f} s ({slow_interval} s between a slow sensor's readings)", flush=True)
    return fast_ids, slow_ids, loaded


def _partitions(cursor: Any) -> list[str]:
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'sensors_reading'::regclass ORDER BY 1"
    )
    return [row[0] for row in cursor.fetchall()]


# The hourly rollups of one month of raw readings, in one set-based statement: the same
# aggregates as rollups.RECOMPUTE_HOURS_SQL, with the first and last values taken from one
# ordered array per hour instead of two. Rows go in hour by hour, as ingest writes them (an
# hour's rows of every sensor side by side, a sensor's year on ~8,760 pages); a build sorted
# by sensor would put a sensor's year on ~200 pages and flatter every rollup query.
_HOURS_FROM_RAW = """
INSERT INTO sensors_rolluphour (sensor_id, bucket, count, sum, min, max, first_ts, first_value, last_ts, last_value)
SELECT sensor_id, bucket, count, sum, min, max, first_ts, a[1], last_ts, a[cardinality(a)]
FROM (
    SELECT sensor_id, date_bin('1 hour', ts, 'epoch') AS bucket, count(*) AS count,
           sum(least(greatest(value, -1e250::float8), 1e250::float8)::numeric) AS sum, min(value) AS min,
           max(value) AS max, min(ts) AS first_ts, max(ts) AS last_ts, array_agg(value ORDER BY ts) AS a
    FROM sensors_reading WHERE ts >= %(start)s AND ts < %(end)s AND abs(value) < 'Infinity'
    GROUP BY 1, 2
) h
ORDER BY bucket, sensor_id
"""
# A local day of Europe/London is made of whole UTC hours, so its rollup is the fold of its
# hours (the refresher's algebra, rollups._REFOLD): 24 rows a day instead of every reading.
_DAYS_FROM_HOURS = """
INSERT INTO sensors_rollupday (sensor_id, day, count, sum, min, max, first_ts, first_value, last_ts, last_value)
SELECT sensor_id, (bucket AT TIME ZONE %(zone)s)::date, {refold}
FROM sensors_rolluphour GROUP BY 1, 2 ORDER BY 2, 1
"""


def build_rollups(*, now: datetime) -> float:
    """The rollups of everything loaded, set-based (a month of readings per statement); seconds taken."""
    from django.db import connection

    from sensors.history.rollups import _REFOLD

    started = time.perf_counter()
    month = timedelta(days=31)
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET work_mem = '256MB'")
        low = (now - YEAR).replace(minute=0, second=0)  # whole hours: no hour is split between statements
        while low < now:
            cursor.execute(_HOURS_FROM_RAW, {"start": low, "end": min(low + month, now + timedelta(hours=1))})
            low += month
        cursor.execute(_DAYS_FROM_HOURS.format(refold=_REFOLD), {"zone": "Europe/London"})
        cursor.execute("RESET work_mem")
        cursor.execute("RESET synchronous_commit")
    built = time.perf_counter() - started
    print(f"rollups built in {built:.0f} s", flush=True)
    return built


def check_rollups(*, sensor_ids: list[int], now: datetime) -> None:
    """A spot check: a few sensors' hours and days over a month equal a recompute from their raw readings."""
    from django.db import connection

    from sensors.history.rollups import RECOMPUTE_DAYS_SQL, RECOMPUTE_HOURS_SQL

    # Whole local days: a day's rollup is compared with all of its readings.
    start = datetime.combine((now - timedelta(days=60)).date(), datetime.min.time(), tzinfo=ZoneInfo("Europe/London"))
    params: dict[str, Any] = {"sensor_ids": sensor_ids, "start": start, "end": start + timedelta(days=30)}
    columns = "sensor_id, {key}, count, sum, min, max, first_ts, first_value, last_ts, last_value"
    with connection.cursor() as cursor:
        for table, key, recompute in (
            ("sensors_rolluphour", "bucket", RECOMPUTE_HOURS_SQL),
            ("sensors_rollupday", "day", RECOMPUTE_DAYS_SQL),
        ):
            cursor.execute(
                f"SELECT count(*) FROM (({recompute}) EXCEPT SELECT {columns.format(key=key)} FROM {table}) x",
                params,
            )
            differ = cursor.fetchone()[0]
            if differ:
                raise SystemExit(f"{table}: {differ} buckets differ from a recompute")
    print("rollups spot check: equal to a recompute", flush=True)


def vacuum() -> float:
    from django.db import connection

    started = time.perf_counter()
    old = connection.connection.autocommit
    connection.connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    connection.connection.autocommit = old
    return time.perf_counter() - started


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


def export_in_process(*, fast: list[int], now: datetime) -> dict[str, float]:
    """The same export read here through ``export_lines`` (no HTTP): what the database and the query give."""
    from sensors.history.exports import ExportSensor, export_lines

    last = (now - timedelta(days=2)).astimezone(ZoneInfo("Europe/London")).date()
    zone = ZoneInfo("Europe/London")
    start = datetime.combine(last - timedelta(days=119), datetime.min.time(), tzinfo=zone)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    count = 0
    started = time.perf_counter()
    sensors = [ExportSensor(fast[0], "Bench / Soil moisture", "%")]
    for chunk in export_lines(sensors=sensors, start=start, end=end, resolution="raw", time_zone="Europe/London"):
        count += len(chunk)
    seconds = time.perf_counter() - started
    result = {"rows": count - 1, "rows_per_s": (count - 1) / seconds}
    print(f"export in process: {result['rows']:,} rows at {result['rows_per_s']:,.0f} rows/s", flush=True)
    return result


def export(*, url: str, fast: list[int], now: datetime, port: int) -> dict[str, float]:
    """Download a raw export of one 10-s sensor (>= 1,000,000 rows) from daphne over HTTP.

    daphne serves ``farm.asgi`` as in the Procfile (test settings: DEBUG off); a member's
    session is made in the database and sent as a cookie. Its RSS (``psutil``) is sampled
    every 20 ms from before the request to the last byte; rows/s counts from sending the
    request to the last byte.
    """
    import subprocess
    import threading

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from farm.models import Farm, Membership, Role

    user, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    Membership.objects.get_or_create(farm=Farm.objects.get(slug="bench"), user=user, defaults={"role": Role.VIEWER})
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="farm.settings_test", ALLOWED_HOSTS="127.0.0.1")
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / "history_bench_daphne.log", "wb")  # noqa: SIM115
    web = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "farm.asgi:application"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    days = 120  # 120 local days of a 10-s sensor: 1,036,800 readings
    last = (now - timedelta(days=2)).astimezone(ZoneInfo("Europe/London")).date()
    path = _export_path(fast[0], last - timedelta(days=days - 1), last)
    try:
        _wait_for(port)
        _get(port, _export_path(fast[0], last, last), cookie)  # a first, one-day export: imports and connection made
        process = psutil.Process(web.pid)
        before = process.memory_info().rss
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], process.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        lines = _get(port, path, cookie)
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    finally:
        web.terminate()
        web.wait(timeout=20)
        log.close()
    result = {
        "rows": lines - 1,
        "rows_per_s": (lines - 1) / seconds,
        "seconds": seconds,
        "web_rss_before_mb": before / 2**20,
        "web_rss_peak_mb": peak[0] / 2**20,
    }
    print(
        f"export over HTTP: {result['rows']:,} rows in {seconds:.2f} s = {result['rows_per_s']:,.0f} rows/s; "
        f"daphne RSS {result['web_rss_before_mb']:.0f} -> peak {result['web_rss_peak_mb']:.0f} MB",
        flush=True,
    )
    return result


def _export_path(sensor_id: int, first: date, last: date) -> str:
    query = urlencode({"sensor": sensor_id, "start": first, "end": last, "resolution": "raw"})
    return f"/farms/bench/history/export.csv?{query}"


def _wait_for(port: int) -> None:
    import http.client

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/login/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("daphne did not answer within 60 s")


def _get(port: int, path: str, cookie: str) -> int:
    """GET ``path`` to the end, counting lines; the body is read in 256 kB pieces and dropped."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", path, headers={"Cookie": cookie})
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {response.read()[:500]!r}")
    lines = 0
    while piece := response.read(1 << 18):
        lines += piece.count(b"\n")
    conn.close()
    return lines


def drain(*, batches: int, batch: int, now: datetime) -> dict[str, float]:
    """Ingest ``batches`` batches through the real store, rollups on and off alternately, new timestamps each time."""
    from django.db import connection

    from sensors.history.rollups import rollups_refresh, rollups_write
    from sensors.hooks import register_batch_writer, unregister_batch_writer
    from sensors.ingest.pipeline import Ingestor, RawMessage, WorkerConfig

    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="history-bench"))
    devices = 100
    per_message = max(1, batch // devices)
    seconds = {"on": 0.0, "off": 0.0}
    readings = {"on": 0, "off": 0}
    # The hour before the load's end, as a backlog after an outage would be: the buckets exist
    # and are updated by every batch. Between a quarter and a half second off the loaded
    # readings' whole seconds, a fraction of its own each run, so no batch collides with them
    # or with an earlier run's (a collision sends both modes down the redelivery path, where
    # the rollup writer has nothing to fold, and measures that instead).
    base = int(now.timestamp()) - 3600 + 0.25 + random.randrange(1, 250_000) / 1e6
    updated = _rollup_updates()
    for b in range(batches * 2):
        mode = "on" if b % 2 == 0 else "off"
        (register_batch_writer if mode == "on" else unregister_batch_writer)(rollups_write)
        messages = []
        for d in range(devices):
            points = [
                {"ts": base + (b * per_message + k) * 0.5, "soil_moisture": round(20 + (b + d + k) % 97 * 0.37, 2)}
                for k in range(per_message)
            ]
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
    # The drained batches' dirty hours, recomputed as the beat task would (in another process,
    # so not in the drain's time); then every hour of the last day of every sensor, as a refresh
    # after a day-long backlog would.
    refreshed = rollups_refresh()
    result["refresh_s"], result["refresh_hours"], result["refresh_days"] = (
        refreshed.seconds, refreshed.hours, refreshed.days
    )  # fmt: skip
    result["on_with_refresh"] = readings["on"] / (seconds["on"] + refreshed.seconds)
    updates, hot = (after - before for after, before in zip(_rollup_updates(), updated, strict=True))
    result["hot_share"] = hot / max(1, updates)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO sensors_rollupdirty SELECT s.device_id, h FROM sensors_sensor s, "
            "generate_series(date_bin('1 hour', %s::timestamptz - interval '1 day', 'epoch'), %s, interval '1 hour') h",
            [now, now],
        )
    day = rollups_refresh()
    result["day_refresh_s"], result["day_refresh_hours"], result["day_refresh_days"] = day.seconds, day.hours, day.days
    # The steady state: every sensor reported in the last 10 s, so its latest hour (the drain's
    # last hour) and that hour's day are dirty.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO sensors_rollupdirty SELECT s.device_id, max(r.bucket) FROM sensors_sensor s "
            "JOIN sensors_rolluphour r ON r.sensor_id = s.id GROUP BY 1"
        )
    live = rollups_refresh()
    result["live_refresh_s"], result["live_refresh_hours"] = live.seconds, live.hours
    print(
        f"drain: rollups on {result['on']:,.0f} readings/s, off {result['off']:,.0f}; ratio {result['ratio']:.2f}; "
        f"its refresh: {refreshed.hours:,} hours and {refreshed.days:,} days in {refreshed.seconds * 1000:.0f} ms "
        f"(on counting the refresh: {result['on_with_refresh']:,.0f} readings/s, {result['hot_share']:.0%} of "
        f"{updates:,} rollup updates HOT); a day of every sensor: {day.hours:,} hours and {day.days:,} days "
        f"in {day.seconds:.2f} s; every sensor's latest hour: {live.hours:,} hours and {live.days:,} days "
        f"in {live.seconds * 1000:.0f} ms",
        flush=True,
    )
    return result


def _rollup_updates() -> tuple[int, int]:
    """Rollup rows updated so far, and how many of those were HOT (statistics lag by up to a second)."""
    from django.db import connection

    with connection.cursor() as cursor:
        # A backend sends its counts when a transaction ends at least a second after its last send.
        time.sleep(1.1)
        cursor.execute("SELECT 1")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_hot_upd), 0) FROM pg_stat_user_tables "
            "WHERE relname IN ('sensors_rolluphour', 'sensors_rollupday')"
        )
        upd, hot = cursor.fetchone()
    return int(upd), int(hot)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000_000, help="readings in all (the 10-s sensors included)")
    parser.add_argument("--sensors", type=int, default=300)
    parser.add_argument("--fast", type=int, default=5, help="sensors reporting every 10 s")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--drain-batches", type=int, default=20)
    parser.add_argument("--port", type=int, default=8731, help="daphne's port for the export")
    parser.add_argument("--skip", action="append", default=[], choices=["queries", "export", "drain"])
    parser.add_argument("--keep", action="store_true", help="keep the bench database (default: dropped at the end)")
    parser.add_argument("--reuse", action="store_true", help="measure the database a --keep run left; no load")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.reuse:  # a database an earlier run kept (--keep): its readings, rollups and clock
        url = bench_url(os.environ["DATABASE_URL"])
        setup_django(url)
        fast, slow, now = loaded_sensors(fast=args.fast)
        loaded = built = vacuumed = 0.0
    else:
        url = fresh_database(os.environ["DATABASE_URL"])
        setup_django(url)
        now = datetime.now(tz=UTC).replace(microsecond=0)
        fast, slow, loaded = load(rows=args.rows, sensors=args.sensors, fast=args.fast, now=now)
        built = build_rollups(now=now)
        vacuumed = vacuum()
        print(f"vacuum analyze in {vacuumed:.0f} s", flush=True)
        check_rollups(sensor_ids=fast[:1] + slow[:2], now=now)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sensors_reading")
        total = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM sensors_rolluphour")
        hours = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cursor.fetchone()[0]
    print(f"{total:,} readings, {hours:,} hourly rollups; database {size}", flush=True)
    report: dict[str, Any] = {
        "readings": total,
        "hourly_rollups": hours,
        "load_s": loaded,
        "rollups_s": built,
        "vacuum_s": vacuumed,
    }
    if "queries" not in args.skip:
        report["queries"] = queries(fast=fast, slow=slow, now=now, repeat=args.repeat)
    if "export" not in args.skip:
        report["export_in_process"] = export_in_process(fast=fast, now=now)
        report["export"] = export(url=url, fast=fast, now=now, port=args.port)
    if "drain" not in args.skip:
        report["drain"] = drain(batches=args.drain_batches, batch=args.batch, now=now)
    report.update(cpus=os.cpu_count(), load_average=os.getloadavg())
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if not args.keep:
        connection.close()
        drop_database(url)
        print("bench database dropped", flush=True)


if __name__ == "__main__":
    main()
