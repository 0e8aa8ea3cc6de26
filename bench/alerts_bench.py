"""Alert rules under load, in one run (run by hand, not a test).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/furrow REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/alerts_bench.py [--backlog 150000] [--rounds 1] [--rate 1000] [--json out.json]

Everything runs on this machine as in production: a private Mosquitto (``docker/mosquitto.conf``
as the tests adapt it), the machine's PostgreSQL with a database of our own
(``<DATABASE_URL name>_alerts_bench``: dropped, created and migrated at the start, dropped at
the end), ``manage.py ingest`` and ``daphne`` as subprocesses with the production settings
module, the live fan-out into ``REDIS_URL``. One farm of ``--devices`` synthetic 1-metric
(``soil_moisture``) devices from the simulator.

1. **(a) Drain throughput with and without rules.** With the worker stopped, one generator
   process (``bench/_ingest_load.py``, the ingest bench's) publishes ``--backlog`` messages; the
   worker starts and drains them. Rate = readings stored between the first and the last commit
   the bench sees (polling ``count(*)`` every 50 ms) / that time, so the worker's start-up is
   left out. Three drains, in this order: no rules, 1,000 rules, no rules again (the two
   rule-less drains bracket the ruled one, so a machine getting busier or quieter shows);
   ``--rounds N`` makes it N ruled drains, each between two rule-less ones (2N + 1 drains),
   and the ratio the median of the N rounds' ratios: on a shared machine one drain can run at
   a third of its neighbour's rate, and one round then says little. The
   1,000 rules are one per sensor ("soil moisture below 10 %, clears at 12 %", sensor scope):
   every sensor is covered, every reading is evaluated against its rule, and the simulated
   soil stays wetter, so few transitions: the common case. Ratio of a round = ruled / mean of
   the rule-less drains either side of it.
2. **(b) Publish → alert on a dashboard socket.** With the 1,000 rules, daphne and the worker
   running, one signed-in WebSocket on the farm, a paced publisher sends ``--rate`` messages/s
   for ``--seconds``: each device's every 10th message is 5 % (fires) and the others 20 %
   (resolves the next second), so 20 % of messages make a transition. Latency of a transition =
   the wall clock (ms) when its ``alerts`` message arrived at the socket − the reading's ``ts``
   (the publisher's wall clock when it built the message). The first ``--warmup`` seconds are
   left out. Transitions of batches whose notifiers the worker skipped (it drops an outcome
   rather than fall behind; the browser's snapshot heals it) never arrive: the worker's
   ``hooks_dropped`` is reported with the figures.
3. **(c) The sweep.** 10 farm-scoped "above 90 % for 10 minutes" rules × the farm's sensors =
   10,000 (rule, sensor) states written straight into ``alerts_alertstate`` as pending.
   ``alerts_sweep()`` is timed in this process four ways: 1 % of them due (100 pending → firing),
   nothing due (the every-30-s case), then every other state due at once (9,900 pending →
   firing: as many episodes and outbox rows, and one live message), then again with nothing due
   and 10,000 open episodes.

``uptime`` is recorded before and after: other processes on the machine lower every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402

# (_ingest_load sits next to this script: sys.path[0] when it runs, and in the spawned children.)
from _ingest_load import DeviceSet, publish  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from tests.e2e_fixtures import Daphne, service_env, ws_headers  # noqa: E402
from tests.mqtt_fixtures import MOSQUITTO, Broker, WorkerProcess, free_port, with_database  # noqa: E402
from tests.mqtt_fixtures import fresh_database as mqtt_fresh_database  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")
METRIC = "soil_moisture"
TARGETS = {"ratio": 0.9, "p99_ms": 1000.0, "sweep_s": 0.5}
SWEEP_RULES = 10


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- setting up ----------------------------------------------------------------------------------


def seed(devices: DeviceSet) -> tuple[int, list[int], str]:
    """The bench farm, its devices and sensors, and a viewer's session; (farm id, sensor ids, session key)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from farm.models import Role
    from farm.services import farm_create, membership_set
    from sensors.models import Device, Sensor
    from sensors.services import sensor_from_metric
    from sensors.simulator import catalogue_keys
    from sensors.simulator.registry import simulator_kind_ensure

    farm = farm_create(name="Alerts bench", slug="bench")
    kind = simulator_kind_ensure(keys=catalogue_keys(devices.metrics))
    metrics = list(kind.metrics.all())
    made = Device.objects.bulk_create(
        [Device(uid=d.uid, name=f"Simulated {d.uid}", farm=farm, kind=kind) for d in devices.devices()]
    )
    sensors = Sensor.objects.bulk_create([sensor_from_metric(device=d, metric=m) for d in made for m in metrics])
    user = get_user_model().objects.create_user(username="bench-viewer", password=None)
    membership_set(farm=farm, user=user, role=Role.VIEWER)
    client = Client()
    client.force_login(user)
    return farm.pk, [s.pk for s in sensors], client.cookies["sessionid"].value


def rules_create(farm_id: int, sensor_ids: list[int]) -> None:
    from alerts.models import AlertRule

    AlertRule.objects.bulk_create(
        AlertRule(
            farm_id=farm_id,
            name=f"Dry {sensor_id}",
            metric=METRIC,
            scope="sensor",
            sensor_id=sensor_id,
            kind="below",
            threshold=10.0,
            clear=12.0,
            severity="warning",
        )
        for sensor_id in sensor_ids
    )


def rules_delete() -> None:
    from alerts.models import AlertRule

    AlertRule.objects.all().delete()  # states and episodes go with them


def count(database_url: str, sql: str) -> int:
    with psycopg.connect(database_url) as conn:
        return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]


# --- (a) drains ----------------------------------------------------------------------------------


def publish_backlog(port: int, devices: DeviceSet, messages: int) -> int:
    out: Any = SPAWN.Queue()
    child = SPAWN.Process(
        target=publish,
        kwargs={
            "url": f"mqtt://127.0.0.1:{port}",
            "devices": devices,
            "lane": 0,
            "lanes": 1,
            "messages": messages,
            "rate": math.inf,
            "seconds": None,
            "clients": 4,
            "window": 1000,
            "out": out,
        },
        daemon=True,
    )
    child.start()
    published = out.get()
    child.join()
    return int(published.acked)


def drain(database_url: str, worker: WorkerProcess, expect: int) -> dict[str, Any]:
    """Start the worker on a backlog of ``expect`` messages; readings/s between the first and the last commit seen."""
    before = count(database_url, "SELECT count(*) FROM sensors_reading")
    worker.start_and_wait()
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        now, stored = time.monotonic(), count(database_url, "SELECT count(*) FROM sensors_reading") - before
        if stored and first is None:
            first = (now, stored)
        if stored >= expect:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(f"the worker stored {stored} of {expect} readings in 10 minutes")
    worker.terminate(timeout=60)
    assert first is not None
    seconds = now - first[0]
    return {"readings": stored, "seconds": round(seconds, 2), "per_s": round((stored - first[1]) / seconds)}


# --- (b) publish → socket ---------------------------------------------------------------------------


def publish_alerting(port: int, uids: Sequence[str], rate: float, seconds: float, done: Connection) -> None:
    """Paced, ``ts`` = now in ms; each device's every 10th message breaches (5 %), the rest clear (20 %)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"alerts-bench-pub-{os.getpid()}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos: list[mqtt.MQTTMessageInfo] = []
    started, total = time.monotonic(), int(rate * seconds)
    for n in range(total):
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        value = 5.0 if (n // len(uids)) % 10 == 0 else 20.0
        payload = json.dumps({"ts": int(time.time() * 1000), METRIC: value})
        infos.append(client.publish(f"farm/{uids[n % len(uids)]}/telemetry", payload, qos=1))
    for info in infos[-1000:]:
        info.wait_for_publish(timeout=30)
    client.disconnect()
    client.loop_stop()
    done.send({"published": total, "acked": sum(1 for i in infos if i.is_published())})


async def watch_socket(url: str, headers: dict[str, str], stop: asyncio.Event) -> list[tuple[str, float, int]]:
    """(transition, arrival ms, reading ts ms) of every transition the socket receives until ``stop``."""
    seen: list[tuple[str, float, int]] = []
    async with connect(url, additional_headers=headers, proxy=None, max_size=2**22, open_timeout=60) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            arrived = time.time() * 1000
            if '"type":"alerts"' in str(text)[:20]:
                seen += [(t["transition"], arrived, t["at"]) for t in json.loads(text)["transitions"]]
    return seen


async def socket_phase(
    daphne: Daphne, farm_id: int, session: str, args: argparse.Namespace, port: int, uids: list[str]
) -> dict[str, Any]:
    stop = asyncio.Event()
    watcher = asyncio.create_task(
        watch_socket(f"{daphne.ws_url}/ws/farms/{farm_id}/", ws_headers(daphne.base_url, session), stop)
    )
    await asyncio.sleep(2)  # the socket is in the farm's group
    receive, send = SPAWN.Pipe(duplex=False)
    started_ms = time.time() * 1000
    child = SPAWN.Process(target=publish_alerting, args=(port, uids, args.rate, args.seconds, send), daemon=True)
    child.start()
    published = await asyncio.to_thread(receive.recv)
    await asyncio.to_thread(child.join)
    await asyncio.sleep(5)  # the tail of the stream
    stop.set()
    seen = await watcher
    since = started_ms + args.warmup * 1000
    latencies = sorted(arrived - at for _, arrived, at in seen if at >= since)
    fired = sum(1 for kind, _, at in seen if kind == "fired" and at >= since)

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else math.nan

    return {
        **published,
        "transitions": len(latencies),
        "fired": fired,
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1], 1) if latencies else math.nan,
    }


# --- (c) the sweep -------------------------------------------------------------------------------


def sweep_phase(farm_id: int, sensor_ids: list[int]) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    from alerts.models import AlertRule
    from alerts.sweep import alerts_sweep

    rules_delete()
    rules = AlertRule.objects.bulk_create(
        AlertRule(
            farm_id=farm_id,
            name=f"Hot {n}",
            metric=METRIC,
            kind="above",
            threshold=90.0,
            clear=85.0,
            for_seconds=600,
            severity="info",
        )
        for n in range(SWEEP_RULES)
    )
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO alerts_alertstate (rule_id, sensor_id, state, since, last_ts, pending_since, current_value, "
            "worst_value, updated_at) SELECT r, s, 'pending', p, p, p, 95, 95, %(now)s "
            "FROM unnest(%(rules)s::bigint[]) r, unnest(%(sensors)s::bigint[]) s, "
            "LATERAL (SELECT CASE WHEN (r + s) %% 100 = 0 THEN %(old)s ELSE %(p)s END) AS t(p)",
            {
                "p": now - timedelta(minutes=5),
                "old": now - timedelta(minutes=11),
                "now": now,
                "rules": [r.pk for r in rules],
                "sensors": sensor_ids,
            },
        )
        cursor.execute("ANALYZE alerts_alertstate")
    states = count_states()
    alerts_sweep(now=now - timedelta(minutes=2))  # the rule index, warm; nothing due yet
    timings: dict[str, Any] = {"states": states}
    for label, at in (
        ("1 % due", now),
        ("nothing due", now),
        ("all due", now + timedelta(minutes=6)),
        ("nothing due, all firing", now + timedelta(minutes=7)),
    ):
        started = time.perf_counter()
        result = alerts_sweep(now=at)
        timings[label] = {"seconds": round(time.perf_counter() - started, 3), "changed": result.changed}
    return timings


def live_updates_dropped() -> int | None:
    """Committed batches whose after-commit notifiers the worker skipped (behind): their pushes never went out."""
    from django.core.cache import cache

    from sensors.ingest.stats import STATS_KEY

    figures = cache.get(STATS_KEY.format("alerts-bench"))
    return None if figures is None else int(figures.get("hooks_dropped", 0))


def count_states() -> int:
    from alerts.models import AlertState

    return AlertState.objects.count()


# --- the run -------------------------------------------------------------------------------------


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def machine() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
        "platform": platform.platform(),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        ),
    }


def _mark(met: bool) -> str:
    return "✓" if met else "✗"


def table(results: dict[str, Any]) -> str:
    a, b, c = results["drains"], results.get("socket"), results["sweep"]
    ratio = results["ratio"]
    rows = [
        ("(a) drains, no rules", " / ".join(f"{d['per_s']:,}" for d in a["no rules"]) + " readings/s", ""),
        ("(a) drains, 1,000 rules", " / ".join(f"{d['per_s']:,}" for d in a["1,000 rules"]) + " readings/s", ""),
        ("(a) ratio of each round", " / ".join(f"{r:.2f}" for r in results["ratios"]), ""),
        ("(a) ratio, rules / no rules (median)", f"{ratio:.2f}", f"≥ {TARGETS['ratio']} {_mark(ratio >= 0.9)}"),
    ]
    if b:
        ok = b["p99_ms"] < TARGETS["p99_ms"]
        rows.append(
            (
                f"(b) publish → socket, {b['transitions']:,} transitions",
                f"p50 {b['p50_ms']} ms, p95 {b['p95_ms']} ms, p99 {b['p99_ms']} ms, max {b['max_ms']} ms",
                f"p99 < 1,000 ms {'✓' if ok else '✗'}",
            )
        )
    for label in ("1 % due", "nothing due", "all due", "nothing due, all firing"):
        s = c[label]["seconds"]
        rows.append(
            (
                f"(c) sweep over {c['states']:,} states, {label}",
                f"{s} s ({c[label]['changed']:,} changed)",
                f"< 0.5 s {'✓' if s < TARGETS['sweep_s'] else '✗'}",
            )
        )
    lines = ["| Measure | Result | Target |", "|---|---|---|"]
    return "\n".join([*lines, *(f"| {m} | {r} | {t} |" for m, r, t in rows)])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=150_000, help="messages per drain")
    parser.add_argument("--rounds", type=int, default=1, help="(a): ruled drains, each between two rule-less ones")
    parser.add_argument("--rate", type=float, default=1000.0, help="(b): messages/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="(b): how long")
    parser.add_argument("--warmup", type=float, default=3.0, help="(b): seconds left out")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not MOSQUITTO.exists():
        sys.exit(f"{MOSQUITTO} is missing (apt install mosquitto)")
    for name in ("DATABASE_URL", "REDIS_URL"):
        if name not in os.environ:
            sys.exit(f"set {name} (see the module docstring)")
    before = uptime()
    log(f"uptime before: {before}")
    os.environ.setdefault("MQTT_URL", "mqtt://127.0.0.1:1883")  # required by settings; the worker gets the bench's
    database_url = mqtt_fresh_database(os.environ["DATABASE_URL"], "_alerts_bench")
    os.environ.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="farm.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        HTTPS="false",
        FURROW_PLAIN_STATIC="true",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    devices = DeviceSet(seed=141, count=args.devices, metrics=1)
    workdir = Path(tempfile.mkdtemp(prefix="furrow-alerts-bench-"))
    workdir.chmod(0o755)  # mosquitto runs as its own user
    log(f"logs in {workdir}")
    broker = Broker(port=free_port(), workdir=workdir / "mosquitto")
    broker.workdir.mkdir()
    broker.workdir.chmod(0o755)
    broker.start()
    env = service_env(database_url=database_url, mqtt_url=broker.url, settings="farm.settings")
    worker = WorkerProcess(
        env={**env, "INGEST_CLIENT_ID": "alerts-bench", "INGEST_STATS_INTERVAL": "5", "LOG_LEVEL": "INFO"},
        log=workdir / "ingest.log",
    )
    daphne = Daphne(env=env, port=free_port(), log=workdir / "daphne.log")
    farm_id: int | None = None
    results: dict[str, Any] = {
        "machine": machine(),
        "uptime_before": before,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    finished = False
    try:
        log("registering the devices")
        farm_id, sensor_ids, session = seed(devices)
        worker.start_and_wait()  # its persistent session, then off: the backlogs queue for it
        worker.terminate(timeout=60)
        drains: dict[str, Any] = {"no rules": [], "1,000 rules": []}
        for label in ["no rules", *["1,000 rules", "no rules"] * args.rounds]:
            rules_delete()
            if label == "1,000 rules":
                rules_create(farm_id, sensor_ids)
            log(f"(a) publishing {args.backlog:,} messages, then draining them with {label}")
            acked = publish_backlog(broker.port, devices, args.backlog)
            got = drain(database_url, worker, acked)
            log(f"    {got}")
            if label == "1,000 rules":
                got["episodes"] = count(database_url, "SELECT count(*) FROM alerts_alertepisode")
            drains[label].append(got)
        results["drains"] = drains
        plain = [d["per_s"] for d in drains["no rules"]]
        results["ratios"] = [
            round(d["per_s"] / statistics.mean(plain[i : i + 2]), 3) for i, d in enumerate(drains["1,000 rules"])
        ]
        results["ratio"] = statistics.median(results["ratios"])

        rules_delete()
        rules_create(farm_id, sensor_ids)
        log(f"(b) {args.rate:g} msg/s for {args.seconds:g} s with a dashboard socket open")
        worker.start_and_wait()
        daphne.start()
        uids = [d.uid for d in devices.devices()]
        results["socket"] = asyncio.run(socket_phase(daphne, farm_id, session, args, broker.port, uids))
        time.sleep(6)  # the worker's next figures (every 5 s)
        results["socket"]["live_updates_dropped"] = live_updates_dropped()
        log(f"    {results['socket']}")
        daphne.stop()
        worker.terminate(timeout=60)

        log("(c) the sweep")
        results["sweep"] = sweep_phase(farm_id, sensor_ids)
        log(f"    {results['sweep']}")
        results["uptime_after"] = uptime()
        finished = True
    finally:
        with contextlib.suppress(Exception):
            daphne.stop()
        if worker.alive():
            worker.kill()
        broker.stop()
        if farm_id is not None:
            forget_sequence(farm_id)
        if not args.keep:
            drop_database(database_url)
        if finished and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{results['command']}\n")
    print("\n".join(f"- {k}: {v}" for k, v in results["machine"].items()))
    print(f"- before: `{before}`\n- after: `{results['uptime_after']}`\n")
    print(table(results) + "\n")
    print(json.dumps(results, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


def forget_sequence(farm_id: int) -> None:
    """The bench farm's live sequence number in Redis (its id is reused by the next run's fresh database)."""
    import redis

    from dashboard.live import SEQUENCE_KEY

    redis.Redis.from_url(os.environ["REDIS_URL"]).delete(SEQUENCE_KEY.format(farm_id=farm_id))


def drop_database(url: str) -> None:
    from django.db import connections

    connections.close_all()
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
