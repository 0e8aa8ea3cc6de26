"""Publish → browser latency of the live dashboard, with signed-in WebSocket clients (run by hand, not a test).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/furrow REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/dashboard_latency.py [--dashboards 100,1000] [--rate 1000] [--seconds 30]

What runs, each as in production, all on this machine:

- a private Mosquitto with ``docker/mosquitto.conf`` (not the system broker: its queue limit
  is the Debian default);
- ``manage.py ingest`` and ``daphne farm.asgi:application`` (one process each) with the
  production settings module (``farm.settings``, DEBUG off), on a database of its own,
  ``<DATABASE_URL name>_bench``, dropped and migrated afresh at every run, and on ``REDIS_URL``;
- a publisher process: paho, QoS 1, at most ``--window`` unacknowledged messages, paced at
  ``--rate`` messages/s over ``--devices`` soil probes of one farm; each message is one reading
  whose ``ts`` is the wall clock in ms at the moment it is handed to paho;
- the dashboards: one asyncio process holding N WebSocket connections to ``/ws/farms/<id>/``
  of that farm, each as its own user with its own session. Every dashboard watches the same
  farm, so every reading goes to every dashboard: the heaviest fan-out for a given rate.

Sessions: dashboard 0 signs in over HTTP through daphne's login form (the CSRF round trip of a
browser); the others get their session from Django's own ``login()`` (through
``django.test.Client.force_login``), stored in the database like any other, because signing
in 1,000 users over HTTP costs a PBKDF2 hash each (minutes) and measures nothing of interest here.

Latency of a reading at a dashboard = the moment the dashboard's socket delivered the update
holding it (wall clock, ms) − the reading's ``ts``. Every dashboard records (sequence number,
arrival) for every update; three of them also keep the updates' text, from which each
sequence number's readings are known. Readings published in the first ``--warmup`` seconds
are left out. ``sent`` (the server's send time in each update) splits the latency into
publish → sent (broker, worker batch, commit, hook) and sent → arrival (channel layer, daphne,
socket). Daphne's and the worker's CPU and RSS come from psutil over the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import platform
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from tests.e2e_fixtures import Daphne, http_login, service_env, ws_headers  # noqa: E402
from tests.mqtt_fixtures import MOSQUITTO, Broker, WorkerProcess, free_port  # noqa: E402
from tests.mqtt_fixtures import fresh_database as mqtt_fresh_database  # noqa: E402

SEQ = re.compile(r'"seq":(\d+)')
PROBES = 3  # dashboards that keep every update's text
BENCH_PASSWORD = "bench-password-not-secret"  # a throwaway user in a throwaway database


# --- the database -------------------------------------------------------------------------------


def fresh_database(base_url: str) -> str:
    """Drop, create and migrate ``<name>_bench``."""
    return mqtt_fresh_database(base_url, "_bench")


@dataclass
class Seeded:
    farm_id: int
    uids: list[str]
    sessions: list[str]  # sessions[0] is empty: dashboard 0 signs in over HTTP as ``http_user``
    http_user: str


def seed(*, devices: int, dashboards: int) -> Seeded:
    """The bench farm, its soil probes and one user per dashboard (Django is set up by the caller)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from farm.models import Role
    from farm.services import farm_create, membership_set
    from sensors.models import DeviceKind
    from sensors.services import device_register

    farm = farm_create(name="Bench farm", slug="bench")
    kind = DeviceKind.objects.get(slug="soil-probe")
    uids = [device_register(uid=f"bench-{n:04d}", name=f"Probe {n}", farm=farm, kind=kind).uid for n in range(devices)]
    users = get_user_model().objects
    first = users.create_user(username="bench-0", password=BENCH_PASSWORD)
    others = users.bulk_create([users.model(username=f"bench-{n}", password="!") for n in range(1, dashboards)])
    sessions = [""]
    for user in [first, *others]:
        membership_set(farm=farm, user=user, role=Role.VIEWER)
    for user in others:
        client = Client()
        client.force_login(user)
        sessions.append(client.cookies["sessionid"].value)
    return Seeded(farm_id=farm.pk, uids=uids, sessions=sessions, http_user=first.username)


# --- the publisher (its own process) ---------------------------------------------------------------


def publish_paced(port: int, uids: Sequence[str], rate: float, seconds: float, window: int, done: Connection) -> None:
    """One reading per message, ``ts`` = now in ms; at most ``window`` unacknowledged (docs/architecture.md §5)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos: list[mqtt.MQTTMessageInfo] = []
    done.send({"started_ms": time.time() * 1000})
    started = time.monotonic()
    total = int(rate * seconds)
    late = 0.0
    for n in range(total):
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        ts = int(time.time() * 1000)
        payload = json.dumps({"ts": ts, "soil_moisture": 20 + n % 500 / 10})
        infos.append(client.publish(f"farm/{uids[n % len(uids)]}/telemetry", payload, qos=1))
        if n >= window:
            infos[n - window].wait_for_publish(timeout=30)
    for info in infos[-window:]:
        info.wait_for_publish(timeout=30)
    acked = sum(1 for info in infos if info.is_published())
    client.disconnect()
    client.loop_stop()
    done.send({"published": total, "acked": acked, "seconds": time.monotonic() - started, "max_late_s": late})


# --- the dashboards ------------------------------------------------------------------------------


@dataclass
class Dashboard:
    arrivals: list[tuple[int, float]] = field(default_factory=list)  # (seq, wall-clock ms)
    frames: list[float] = field(default_factory=list)  # wall-clock ms of each frame (one or more messages)
    texts: dict[int, str] = field(default_factory=dict)
    snapshot_seq: int = -1
    closed: str = ""


async def hold(ws: ClientConnection, board: Dashboard, keep_text: bool) -> None:
    try:
        async for frame in ws:
            arrived = time.time() * 1000
            board.frames.append(arrived)
            # A frame is one message, or a JSON array of those the server had waiting for this socket.
            whole = str(frame)
            if whole[:1] != "[":  # one message
                match = SEQ.search(whole, 0, 120)
                if match is not None:
                    board.arrivals.append((int(match.group(1)), arrived))
                    if keep_text:
                        board.texts[int(match.group(1))] = whole
            elif keep_text:  # several: a probe keeps each one's text
                for message in json.loads(whole):
                    if "seq" in message:
                        board.arrivals.append((message["seq"], arrived))
                        board.texts[message["seq"]] = json.dumps(message, separators=(",", ":"))
            else:  # only messages carry "seq" at the top level
                board.arrivals.extend((int(m.group(1)), arrived) for m in SEQ.finditer(whole))
    except Exception as exc:  # a dropped socket is a result to report, not a crash
        board.closed = repr(exc)
    else:
        board.closed = f"closed {ws.close_code}"


async def open_dashboard(url: str, headers: dict[str, str], board: Dashboard) -> ClientConnection:
    ws = await connect(url, additional_headers=headers, proxy=None, max_size=2**22, open_timeout=60)
    snapshot = json.loads(await asyncio.wait_for(ws.recv(), 60))
    assert snapshot["type"] == "snapshot", snapshot
    board.snapshot_seq = snapshot["seq"]
    return ws


async def open_all(
    url: str, headers: list[dict[str, str]], boards: list[Dashboard], at_once: int
) -> tuple[list[ClientConnection], list[asyncio.Task[None]]]:
    """Connect in waves of ``at_once`` (a thousand browsers do not all connect in the same millisecond)."""
    sockets: list[ClientConnection] = []
    for start in range(0, len(headers), at_once):
        wave = range(start, min(start + at_once, len(headers)))
        sockets += await asyncio.gather(*(open_dashboard(url, headers[i], boards[i]) for i in wave))
    return sockets, [asyncio.create_task(hold(ws, boards[i], i < PROBES)) for i, ws in enumerate(sockets)]


# --- measuring -----------------------------------------------------------------------------------


@dataclass
class Usage:
    """CPU seconds and peak RSS of a process over a window."""

    process: psutil.Process
    cpu0: float = 0.0
    peak_rss: int = 0
    samples: list[int] = field(default_factory=list)

    def start(self) -> None:
        times = self.process.cpu_times()
        self.cpu0 = times.user + times.system

    def sample(self) -> None:
        rss = self.process.memory_info().rss
        self.samples.append(rss)
        self.peak_rss = max(self.peak_rss, rss)

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system - self.cpu0


def sample_forever(usages: Iterable[Usage], stop: threading.Event) -> None:
    while not stop.wait(0.5):
        for usage in usages:
            usage.sample()


def percentile(hist: Counter[int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return math.nan
    rank, seen = q * total, 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return float(value)
    return float(max(hist))


@dataclass
class Latencies:
    total: Counter[int] = field(default_factory=Counter)  # ms → count, per (reading, dashboard)
    server: Counter[int] = field(default_factory=Counter)  # publish → sent, per reading
    fanout: Counter[int] = field(default_factory=Counter)  # sent → arrival, per (update, dashboard)
    readings: int = 0
    truncated: int = 0  # readings an update counted (n) but did not list
    missing_updates: int = 0  # (update, dashboard) pairs never delivered


def analyse(boards: list[Dashboard], since_ms: float) -> Latencies:
    texts: dict[int, str] = {}
    for board in boards[:PROBES]:
        texts.update(board.texts)
    result = Latencies()
    measured: dict[int, tuple[Counter[int], int]] = {}  # seq → (reading ts counts, sent)
    for seq, text in texts.items():
        update = json.loads(text)
        if update.get("type") != "update":
            continue
        ts = Counter(p[0] for entry in update["readings"] for p in entry["points"] if p[0] >= since_ms)
        if not ts:
            continue
        measured[seq] = (ts, update["sent"])
        result.readings += sum(ts.values())
        result.truncated += sum(e["n"] - len(e["points"]) for e in update["readings"])
        for t, count in ts.items():
            result.server[update["sent"] - t] += count
    for board in boards:
        arrivals: dict[int, Counter[int]] = defaultdict(Counter)
        for seq, arrived in board.arrivals:
            if seq in measured:
                arrivals[seq][int(arrived)] += 1
        result.missing_updates += len(measured.keys() - arrivals.keys())
        for seq, at in arrivals.items():
            ts, sent = measured[seq]
            for a, n in at.items():
                result.fanout[a - sent] += n
                for t, count in ts.items():
                    result.total[a - t] += n * count
    return result


def summary(latencies: Latencies) -> dict[str, Any]:
    def pcts(hist: Counter[int]) -> dict[str, float]:
        return {f"p{int(q * 100)}": percentile(hist, q) for q in (0.5, 0.95, 0.99)} | {"max": float(max(hist or [0]))}

    return {
        "latency_ms": pcts(latencies.total),
        "publish_to_sent_ms": pcts(latencies.server),
        "sent_to_arrival_ms": pcts(latencies.fanout),
        "samples": sum(latencies.total.values()),
        "readings": latencies.readings,
        "readings_not_listed": latencies.truncated,
        "updates_missed": latencies.missing_updates,
    }


# --- one scenario --------------------------------------------------------------------------------


@dataclass
class Stack:
    broker: Broker
    env: dict[str, str]
    worker: WorkerProcess
    daphne: Daphne
    workdir: Path


def start_stack(args: argparse.Namespace, database_url: str, workdir: Path) -> Stack:
    broker = Broker(port=free_port(), workdir=workdir / "mosquitto")
    broker.workdir.mkdir()
    broker.workdir.chmod(0o755)
    broker.start()
    # SECRET_KEY comes from main(): the sessions made there are signed with it.
    env = service_env(database_url=database_url, mqtt_url=broker.url, settings="farm.settings")
    worker_env = {**env, "INGEST_CLIENT_ID": "bench-ingest", "INGEST_STATS_INTERVAL": "5", "LOG_LEVEL": "INFO"}
    if args.batch_ms:
        worker_env["INGEST_BATCH_MS"] = str(args.batch_ms)
    if args.notify_ms is not None:
        worker_env["INGEST_NOTIFY_INTERVAL_MS"] = str(args.notify_ms)
    worker = WorkerProcess(env=worker_env, log=workdir / "ingest.log")
    worker.start_and_wait()
    daphne = Daphne(env=env, port=free_port(), log=workdir / "daphne.log")
    return Stack(broker, env, worker, daphne, workdir)


def run_scenario(args: argparse.Namespace, stack: Stack, seeded: Seeded, dashboards: int) -> dict[str, Any]:
    stack.daphne.start()
    try:
        return asyncio.run(measure(args, stack, seeded, dashboards))
    finally:
        stack.daphne.stop()


async def measure(args: argparse.Namespace, stack: Stack, seeded: Seeded, dashboards: int) -> dict[str, Any]:
    daphne = psutil.Process(stack.daphne.pid)
    base, url = stack.daphne.base_url, f"{stack.daphne.ws_url}/ws/farms/{seeded.farm_id}/"
    first = await asyncio.to_thread(http_login, base, seeded.http_user, BENCH_PASSWORD)
    headers = [ws_headers(base, key) for key in [first, *seeded.sessions[1:dashboards]]]
    boards = [Dashboard() for _ in headers]
    connect_started = time.monotonic()
    sockets, holders = await open_all(url, headers, boards, args.connect_wave)
    connect_s = time.monotonic() - connect_started
    await asyncio.sleep(2)
    idle_rss = daphne.memory_info().rss
    worker = psutil.Process(stack.worker.pid)
    usages = {"daphne": Usage(daphne), "ingest": Usage(worker), "dashboards (bench)": Usage(psutil.Process())}
    for child in worker.children():  # the worker's store process (INGEST_STORE_PROCESS), where the hooks run
        usages["ingest store process"] = Usage(child)
    receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
    publisher = multiprocessing.get_context("spawn").Process(
        target=publish_paced,
        args=(stack.broker.port, seeded.uids, args.rate, args.warmup + args.seconds, args.window, send),
    )
    publisher.start()
    published_from = (await asyncio.to_thread(receive.recv))["started_ms"]
    await asyncio.sleep(args.warmup)
    for usage in usages.values():
        usage.start()
    stop = threading.Event()
    sampler = threading.Thread(target=sample_forever, args=(usages.values(), stop), daemon=True)
    sampler.start()
    profilers = profile(args, {"daphne": stack.daphne.pid, "ingest": stack.worker.pid}, dashboards)
    window_started, window_from_ms = time.monotonic(), time.time() * 1000
    await asyncio.to_thread(publisher.join)
    window_s, window_to_ms = time.monotonic() - window_started, time.time() * 1000
    cpu = {name: usage.cpu_seconds() for name, usage in usages.items()}
    stop.set()
    for profiler in profilers:
        profiler.wait(timeout=60)
    published = receive.recv()
    await asyncio.sleep(args.settle)
    for holder in holders:
        holder.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets))
    latencies = analyse(boards, published_from + args.warmup * 1000)
    frames = sum(1 for b in boards for arrived in b.frames if window_from_ms <= arrived <= window_to_ms)
    messages = sum(1 for b in boards for _, arrived in b.arrivals if window_from_ms <= arrived <= window_to_ms)
    return {
        "dashboards": dashboards,
        "connect_s": round(connect_s, 2),
        "sockets_dropped": sum(1 for b in boards if b.closed),
        "publisher": published,
        "rate_per_s": args.rate,
        "window_s": round(window_s, 1),
        "daphne_rss_idle_mb": round(idle_rss / 2**20, 1),
        "frames_delivered_per_s": round(frames / window_s),
        "messages_delivered_per_s": round(messages / window_s),  # more than frames when frames hold several
        "daphne_cpu_ms_per_1000_frames": round(1000 * 1000 * cpu["daphne"] / max(frames, 1), 1),
        "load_average": os.getloadavg(),
        **{
            name: {
                "cpu_pct_of_one_core": round(100 * cpu[name] / window_s, 1),
                "peak_rss_mb": round(usage.peak_rss / 2**20, 1),
            }
            for name, usage in usages.items()
        },
        **summary(latencies),
    }


def profile(args: argparse.Namespace, pids: dict[str, int], dashboards: int) -> list[subprocess.Popen[bytes]]:
    """With ``--py-spy DIR``: each process's stacks over the measured window, folded (flamegraph.pl input)."""
    if args.py_spy is None:
        return []
    args.py_spy.mkdir(parents=True, exist_ok=True)
    seconds, py_spy = str(int(args.seconds)), shutil.which("py-spy", path=Path(sys.executable).parent) or "py-spy"
    commands = {
        name: [py_spy, "record", "--pid", str(pid), "--duration", seconds, "--nonblocking", "--format", "raw",
               "--output", str(args.py_spy / f"{name}-{dashboards}.folded")]
        for name, pid in pids.items()
    }  # fmt: skip
    return [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in commands.values()]


# --- main ------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.strip()
    return {"nproc": str(os.cpu_count()), "cpu": model, "free -h": free, "python": platform.python_version()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--dashboards", default="100,1000", help="comma-separated scenario sizes (default 100,1000)")
    parser.add_argument("--rate", type=float, default=1000.0, help="messages (= readings) per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per scenario")
    parser.add_argument("--warmup", type=float, default=5.0, help="publishing before the window, not measured")
    parser.add_argument("--settle", type=float, default=3.0, help="wait after the last publish for stragglers")
    parser.add_argument("--devices", type=int, default=100, help="soil probes publishing in turn")
    parser.add_argument("--window", type=int, default=1000, help="unacknowledged messages of the publisher")
    parser.add_argument("--connect-wave", type=int, default=50, help="dashboards connecting at once")
    parser.add_argument("--batch-ms", type=int, default=0, help="INGEST_BATCH_MS for the worker (default: settings)")
    parser.add_argument(
        "--notify-ms", type=int, default=None, help="INGEST_NOTIFY_INTERVAL_MS for the worker (default: settings)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--py-spy", type=Path, metavar="DIR", help="sample daphne's and the worker's stacks")
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(n) for n in args.dashboards.split(",")]
    if not MOSQUITTO.exists():
        sys.exit(f"{MOSQUITTO} is missing (apt install mosquitto)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    # Settings insist on an MQTT_URL; the worker gets the private broker's, set in start_stack.
    os.environ.setdefault("MQTT_URL", "mqtt://127.0.0.1:1883")
    database_url = fresh_database(os.environ["DATABASE_URL"])
    # Production settings, plain HTTP on loopback; FURROW_PLAIN_STATIC spares a collectstatic
    # (the login page only names its static files; no WebSocket path touches them).
    os.environ.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="farm.settings", DEBUG="false",
                      SECRET_KEY=secrets.token_urlsafe(50), HTTPS="false", FURROW_PLAIN_STATIC="true",
                      LOG_LEVEL="WARNING")  # fmt: skip
    import django

    django.setup()
    seeded = seed(devices=args.devices, dashboards=max(sizes))
    workdir = Path(tempfile.mkdtemp(prefix="furrow-bench-"))
    workdir.chmod(0o755)  # mosquitto runs as its own user
    print(f"logs in {workdir}", file=sys.stderr)
    stack = start_stack(args, database_url, workdir)
    results: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv), "scenarios": []}
    finished = False
    try:
        for size in sizes:
            print(f"--- {size} dashboards, {args.rate:g} msg/s for {args.seconds:g} s", file=sys.stderr)
            result = run_scenario(args, stack, seeded, size)
            results["scenarios"].append(result)
            print(json.dumps(result, indent=2))
        finished = True
    finally:
        stack.daphne.stop()
        if stack.worker.alive():
            stack.worker.terminate()
        stack.broker.stop()
        if finished and not args.keep:  # the logs of a failed run stay for a look
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
