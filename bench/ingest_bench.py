"""Ingest throughput, latency, memory and exactly-once, in one run (run by hand, not a test).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/furrow REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/ingest_bench.py [--json out.json] [--py-spy DIR]

Everything runs on this machine, each part as in production: a private Mosquitto with
``docker/mosquitto.conf`` (as the test suite adapts it: port, persistence directory,
``sys_interval 1``, anonymous without the password file and ACL; plus ``max_queued_messages``
raised by ``--max-queued``, see step 2; the system broker keeps Debian's limits), the machine's
PostgreSQL with a database of our own (``<DATABASE_URL name>_ingest_bench``: dropped, created and
migrated at the start, dropped at the end), ``manage.py ingest`` as a subprocess with the
production settings module and its after-commit hooks (the live fan-out into ``REDIS_URL``), and
the simulator (``sensors.simulator``) as the load generator, in processes of their own. Steps:

1. Three sets of 1,000 synthetic native devices are registered in one farm: 1-metric, 10-metric,
   and 1-metric for the latency step. The worker starts once to create its persistent session
   and stops; the bare subscriber creates its own, with the worker's topic filters.
2. **Backlog.** With both consumers offline, ``--publishers`` processes publish ``--backlog-1``
   1-metric messages flat out (4 paho clients each, at most ``--window`` unacknowledged per
   client: far from the 65,535 packet ids of one client, docs/architecture.md §5), counting PUBACKs. The
   broker queues every message for both sessions. One generator process reaches only ~5–14k
   msg/s here, below the worker's ceiling: a live stream would measure the generator, a backlog
   measures the consumer. A 60 s drain of 1-metric messages needs more than the shipped
   ``max_queued_messages`` (1,000,000) once the worker passes ~16k msg/s, hence ``--max-queued``
   (4,000,000; a capacity limit only: the broker's per-message work is the same).
3. **(a)** the bare subscriber (plain paho, QoS 1, acked as ``on_message`` returns, counts and
   nothing else) resumes its session and drains the backlog. **(b)** then ``manage.py ingest``
   starts and drains the same messages. Both rates = messages / (last message or commit − the
   session's CONNACK). The worker's CONNACK time comes from its log line (ms), its last commit
   from the figures it publishes itself (``INGEST_STATS_INTERVAL`` = 0.25 s, what ``/healthz``
   shows), so its time is over-counted by up to ~0.3 s. Its acks follow each commit: the
   broker's message store shrinking back shows they arrived.
4. The same with ``--backlog-10`` 10-metric messages.
5. **(c)** with the worker still running, one generator publishes at a steady ``--latency-rate``
   (2,000 msg/s) for ``--latency-warmup`` + ``--latency-seconds``. A reading's ``ts`` is the
   wall clock (ms) when the simulator built it, just before handing it to paho. The bench polls
   the database every ``--poll-ms`` for rows of those devices whose ``xmin`` is newer than any
   seen (one writer with serial batches: transaction ids rise batch by batch); a row's commit
   time is the start of the first poll that saw it, so a latency is over-counted by at most one
   poll interval (+1 ms of ``ts`` rounding).
6. **(d)** the worker's memory is sampled with psutil every 0.1 s while each step runs. It has two
   processes (the MQTT client's and the store process, ``INGEST_STORE_PROCESS``), started separately,
   so what they share is file-backed: the interpreter's and the libraries' pages. Two figures: the
   worker's RSS plus the store process's USS (resident memory, shared pages counted once: the
   target's figure), and the plain sum of their RSS (shared pages counted twice).
7. **(e)** every message the broker acknowledged to a generator is compared with the table: per
   (device, ts), the number of stored readings must equal the message's metric count. Missing,
   partial, duplicated and unexpected (stored but never acked) messages are counted; the primary
   key (sensor, ts) keeps any (sensor, ts) to one row, so "count = metrics" means each metric
   stored exactly once. The worker must report no dead letters, unknown devices, new sensors or
   internal errors, and ``$SYS/broker/publish/messages/dropped`` must stay 0.

``uptime`` is recorded before and after: other processes on the machine lower every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import multiprocessing
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402

# (_ingest_load sits next to this script: sys.path[0] when it runs, and in the spawned children.)
from _ingest_load import Counted, DeviceSet, Published, bare_drain, bare_subscribe, publish  # noqa: E402

from tests import mqtt_fixtures  # noqa: E402
from tests.mqtt_fixtures import MOSQUITTO, Broker, WorkerProcess, free_port, with_database  # noqa: E402
from tests.mqtt_fixtures import fresh_database as mqtt_fresh_database  # noqa: E402

WORKER_ID = "furrow-ingest-bench"
BARE_ID = "furrow-bench-bare"
STATS_INTERVAL = 0.25
SPAWN = multiprocessing.get_context("spawn")
SETS = {
    "1-metric": DeviceSet(seed=101, count=1000, metrics=1),
    "10-metric": DeviceSet(seed=110, count=1000, metrics=10),
    "latency": DeviceSet(seed=102, count=1000, metrics=1),
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TARGETS = {"ratio": 0.8, "readings_per_s_10": 100_000, "p99_ms": 500.0, "rss_mb": 200.0}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the database -------------------------------------------------------------------------------


def fresh_database(base_url: str) -> str:
    """Drop, create and migrate ``<name>_ingest_bench``."""
    return mqtt_fresh_database(base_url, "_ingest_bench")


def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def register_devices() -> tuple[int, dict[str, dict[str, int]]]:
    """The bench farm and every device set with one sensor per metric; uid → device id per set.

    In bulk (``synthetic_devices_register`` saves one device at a time: half a minute for
    3,000), with the simulator's own device kinds and ``sensor_from_metric``, as the admin would.
    """
    from farm.services import farm_create
    from sensors.models import Device, Sensor
    from sensors.services import sensor_from_metric
    from sensors.simulator import catalogue_keys
    from sensors.simulator.registry import simulator_kind_ensure

    farm = farm_create(name="Ingest bench", slug="bench")
    ids: dict[str, dict[str, int]] = {}
    for name, device_set in SETS.items():
        kind = simulator_kind_ensure(keys=catalogue_keys(device_set.metrics))
        metrics = list(kind.metrics.all())
        devices = Device.objects.bulk_create(
            [Device(uid=d.uid, name=f"Simulated {d.uid}", farm=farm, kind=kind) for d in device_set.devices()]
        )
        Sensor.objects.bulk_create([sensor_from_metric(device=d, metric=m) for d in devices for m in metrics])
        ids[name] = {d.uid: d.pk for d in devices}
    return farm.pk, ids


# --- watching processes --------------------------------------------------------------------------


@dataclass
class Watch:
    """Peak RSS (sampled every 0.1 s) and CPU seconds of some processes."""

    processes: dict[str, list[psutil.Process]]
    peak_rss: dict[str, int] = field(default_factory=dict)
    # Per name: the first process's RSS plus the others' USS, i.e. resident memory with the
    # pages the processes share (their libraries) counted once.
    peak_once: dict[str, int] = field(default_factory=dict)
    _cpu0: dict[str, float] = field(default_factory=dict)
    _started: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._cpu0, self._started = self._cpu(), time.monotonic()
        threading.Thread(target=self._sample, daemon=True).start()

    def _cpu(self) -> dict[str, float]:
        out = {}
        for name, processes in self.processes.items():
            total = 0.0
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system
            out[name] = total
        return out

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            for name, processes in self.processes.items():
                with contextlib.suppress(psutil.Error):
                    rss = sum(p.memory_info().rss for p in processes)
                    self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)
                    if len(processes) > 1:
                        once = processes[0].memory_info().rss + sum(p.memory_full_info().uss for p in processes[1:])
                        self.peak_once[name] = max(self.peak_once.get(name, 0), once)

    def stop(self) -> dict[str, float]:
        """CPU use since the start, in % of one core."""
        self._stop.set()
        now, seconds = self._cpu(), time.monotonic() - self._started
        return {name: round(100 * (now[name] - self._cpu0[name]) / seconds, 1) for name in now}


def backend_processes(database_url: str) -> list[psutil.Process]:
    """The PostgreSQL backends serving the worker (every connection to the bench database but ours)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        ).fetchall()
    return [psutil.Process(pid) for (pid,) in rows]


# --- the broker ------------------------------------------------------------------------------------


class BrokerMonitor:
    """The latest values of a few ``$SYS`` topics (published every second by the bench's broker)."""

    TOPICS = ("$SYS/broker/publish/messages/dropped", "$SYS/broker/store/messages/count")

    def __init__(self, port: int) -> None:
        self.values: dict[str, int] = {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"furrow-bench-sys-{os.getpid()}")
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe([(t, 0) for t in self.TOPICS])
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.values[message.topic.rsplit("/", 3)[-3]] = int(message.payload)

    def value(self, name: str, timeout: float = 10.0) -> int:
        """``publish`` (messages dropped) or ``store`` (messages held); waits for the first report."""
        deadline = time.monotonic() + timeout
        while name not in self.values:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broker published no $SYS value for {name}")
            time.sleep(0.05)
        return self.values[name]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def broker_config(args: argparse.Namespace, port: int, data_dir: Path) -> str:
    """The test suite's adaptation of docker/mosquitto.conf; with ``--max-queued``, that one limit raised."""
    text = mqtt_fixtures.broker_config(port=port, data_dir=data_dir)
    if args.max_queued:
        text = re.sub(r"(?m)^max_queued_messages .*$", f"max_queued_messages {args.max_queued}", text)
    return text


def count_broker_saves(broker: Broker, results: dict[str, Any]) -> None:
    """How often the broker saved its in-memory database (``autosave_interval``) during each drain.

    Read once the broker has stopped: its log goes to a file through stdout, which it buffers.
    """
    saves = []
    for line in broker.log.read_text(errors="replace").splitlines():
        if "Saving in-memory database" in line:
            saves.append(time.mktime(time.strptime(line.split(": ", 1)[0], "%Y-%m-%dT%H:%M:%S")))
    for name in ("1-metric", "10-metric"):
        for drain in (results[name]["bare"], results[name]["worker"]):
            since, until = drain.window
            drain.broker_saves = sum(since - 1 <= moment <= until + 1 for moment in saves)


# --- the stack ---------------------------------------------------------------------------------------


@dataclass
class Stack:
    args: argparse.Namespace
    workdir: Path
    database_url: str
    broker: Broker
    env: dict[str, str]
    monitor: BrokerMonitor | None = None
    worker: WorkerProcess | None = None
    worker_rss: dict[str, int] = field(default_factory=dict)  # phase -> peak bytes
    store_rss: dict[str, int] = field(default_factory=dict)  # phase -> peak bytes of the store process alone
    worker_once: dict[str, int] = field(default_factory=dict)  # phase -> peak bytes, shared pages counted once
    broker_rss: int = 0  # peak bytes while the backlogs drained
    runs: int = 0

    @property
    def url(self) -> str:
        return self.broker.url

    def start_worker(self) -> WorkerProcess:
        self.runs += 1
        worker = WorkerProcess(env=self.env, log=self.workdir / f"ingest-{self.runs}.log")
        worker.start()
        self.worker = worker
        return worker

    def stop_worker(self) -> None:
        if self.worker and self.worker.alive():
            code = self.worker.terminate(timeout=60)
            if code != 0:
                raise RuntimeError(f"the worker exited with {code} on SIGTERM; see {self.worker.log}")


def start_stack(args: argparse.Namespace, database_url: str, workdir: Path) -> Stack:
    port, broker_dir = free_port(), workdir / "mosquitto"
    broker_dir.mkdir()
    broker_dir.chmod(0o755)  # mosquitto runs as its own user
    (broker_dir / "data").mkdir()
    broker = Broker(port=port, workdir=broker_dir, config=broker_config(args, port, broker_dir / "data"))
    broker.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        DATABASE_URL=database_url,
        MQTT_URL=broker.url,
        INGEST_CLIENT_ID=WORKER_ID,
        INGEST_STATS_INTERVAL=str(STATS_INTERVAL),
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    stack = Stack(args=args, workdir=workdir, database_url=database_url, broker=broker, env=env)
    stack.monitor = BrokerMonitor(port)
    return stack


def create_sessions(stack: Stack) -> None:
    """Both persistent sessions, subscribed to the worker's topic filters, then offline."""
    from django.conf import settings

    from sensors.ingest.topics import subscription_filters

    worker = stack.start_worker()
    worker.wait_subscribed()
    stack.stop_worker()
    bare_subscribe("127.0.0.1", stack.broker.port, BARE_ID, subscription_filters(list(settings.INGEST_SOURCES)))


# --- publishing ------------------------------------------------------------------------------------


def run_children(target: Callable[..., None], jobs: Sequence[dict[str, Any]]) -> list[Any]:
    """Run ``target(**job, out=queue)`` in one spawned process per job; their results in order of arrival."""
    out: Any = SPAWN.Queue()
    # Daemons: an interrupted bench takes them down with it.
    children = [SPAWN.Process(target=target, kwargs={**job, "out": out}, daemon=True) for job in jobs]
    for child in children:
        child.start()
    results = [out.get() for _ in children]  # before join: a child with a large result waits for us to read it
    for child in children:
        child.join()
        if child.exitcode:
            raise RuntimeError(f"a bench child process failed with exit code {child.exitcode}")
    return results


@dataclass
class Load:
    name: str
    messages: int = 0  # acked by the broker
    published: int = 0
    unacked: int = 0
    seconds: float = 0.0
    started: float = 0.0
    acked_ts: dict[str, list[int]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def publish_load(stack: Stack, name: str, *, messages: int | None, rate: float, seconds: float | None,
                 processes: int, clients: int) -> Load:  # fmt: skip
    per = math.ceil(messages / processes) if messages is not None else None
    jobs = [
        {"url": stack.url, "devices": SETS[name], "lane": lane, "lanes": processes, "messages": per,
         "rate": rate / processes, "seconds": seconds, "clients": clients, "window": stack.args.window}
        for lane in range(processes)
    ]  # fmt: skip
    results: list[Published] = run_children(publish, jobs)
    # From the first connection to the last PUBACK (the simulator's own clock), not counting process start-up.
    load = Load(name=name, seconds=max(r.seconds for r in results), started=min(r.started for r in results))
    for result in results:
        load.messages += result.acked
        load.published += result.published
        load.unacked += result.unacked + result.refused + result.rejected
        load.acked_ts.update(result.acked_ts)
    return load


# --- (a) and (b): draining a backlog ------------------------------------------------------------------


@dataclass
class Drain:
    """Draining a backlog: from the consumer's connection to its last message (bare) or commit (worker)."""

    messages: int
    seconds: float
    rate: float
    cpu_pct: dict[str, float] = field(default_factory=dict)
    window: tuple[float, float] = (0.0, 0.0)  # wall clock
    broker_saves: int = 0  # autosaves of the broker during the drain (counted from its log once it stopped)
    max_gap_s: float = 0.0  # bare subscriber: the longest pause between two messages
    short: bool = False  # drained in less than --min-seconds: raise the backlog
    figures: dict[str, Any] = field(default_factory=dict)  # the worker's own, at the end


def bare_rate(stack: Stack, expect: int) -> Drain:
    mosquitto = [psutil.Process(stack.broker.process.pid)] if stack.broker.process else []
    out: Any = SPAWN.Queue()
    child = SPAWN.Process(
        target=bare_drain, args=("127.0.0.1", stack.broker.port, BARE_ID, expect, 10.0, out), daemon=True
    )
    child.start()
    watch = Watch({"bare subscriber": [psutil.Process(child.pid)], "mosquitto": mosquitto})
    counted: Counted = out.get()
    cpu = watch.stop()
    stack.broker_rss = max(stack.broker_rss, watch.peak_rss.get("mosquitto", 0))
    child.join()
    if counted.timed_out or counted.received != expect or not counted.session_present:
        raise RuntimeError(f"the bare subscriber received {counted.received} of {expect} messages")
    seconds = counted.last_at - counted.connected_at
    return Drain(messages=counted.received, seconds=seconds, rate=counted.received / seconds, cpu_pct=cpu,
                 window=(counted.connected_at, counted.last_at), max_gap_s=round(counted.max_gap, 2))  # fmt: skip


def worker_figures(started_after: float) -> dict[str, Any] | None:
    """This worker process's latest published figures (the same as /healthz shows)."""
    from django.core.cache import cache

    from sensors.ingest.stats import STATS_KEY

    figures = cache.get(STATS_KEY.format(WORKER_ID))
    return figures if figures and figures["started_at"] >= started_after else None


def wait_figures(
    started_after: float, done: Callable[[dict[str, Any]], bool], timeout: float
) -> Iterator[dict[str, Any]]:
    """Each new report of the worker until ``done`` holds for one; raises after ``timeout`` seconds."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        figures = worker_figures(started_after)
        if figures and figures["updated_at"] != last:
            last = figures["updated_at"]
            yield figures
            if done(figures):
                return
        time.sleep(0.02)
    raise RuntimeError(f"the worker did not finish within {timeout:.0f} s")


def worker_rate(stack: Stack, expect: int, phase: str, *, keep_running: bool = False) -> Drain:
    """Start the worker on its session's backlog and time it until every message has committed."""
    started_wall = time.time() - 1
    worker = stack.start_worker()
    profiler = profile(stack.args, worker.pid, phase)
    watch: Watch | None = None
    for figures in wait_figures(started_wall, lambda f: f["messages"] >= expect, stack.args.drain_timeout):
        if watch is None and figures["messages"]:  # a batch has committed: the database connection is open
            watch = Watch(worker_processes(stack, worker))
        last = figures
    assert watch is not None
    cpu = watch.stop()
    stack.worker_rss[phase] = watch.peak_rss.get("worker", 0)
    stack.store_rss[phase] = watch.peak_rss.get("of which store process", 0)
    stack.worker_once[phase] = watch.peak_once.get("worker", 0)
    stack.broker_rss = max(stack.broker_rss, watch.peak_rss.get("mosquitto", 0))
    if profiler:
        profiler.wait(timeout=stack.args.drain_timeout)
    if not keep_running:
        stack.stop_worker()
    connected = connected_at(worker)
    seconds = last["updated_at"] - connected
    window = (connected, last["updated_at"])
    return Drain(messages=last["messages"], seconds=seconds, rate=last["messages"] / seconds, cpu_pct=cpu,
                 window=window, short=seconds < stack.args.min_seconds, figures=last)  # fmt: skip


def connected_at(worker: WorkerProcess) -> float:
    """When the worker's session resumed, from its log line (the log's clock has milliseconds)."""
    for line in worker.log_text().splitlines():
        if "connected to the MQTT broker (session resumed)" in line:
            stamp, millis = line[:23].split(",")
            return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000
    raise RuntimeError(f"the worker did not resume its session; see {worker.log}")


def worker_family(pid: int) -> list[psutil.Process]:
    """The worker and its store process (``INGEST_STORE_PROCESS``): its CPU and memory count as the worker's."""
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def worker_processes(stack: Stack, worker: WorkerProcess) -> dict[str, list[psutil.Process]]:
    mosquitto = [psutil.Process(stack.broker.process.pid)] if stack.broker.process else []
    family = worker_family(worker.pid)
    return {"worker": family, "of which store process": family[1:], "mosquitto": mosquitto,
            "postgres (worker's backends)": backend_processes(stack.database_url)}  # fmt: skip


def profile(args: argparse.Namespace, pid: int, phase: str) -> subprocess.Popen[bytes] | None:
    """With ``--py-spy DIR``: the worker's and its store process's stacks per thread, folded (flamegraph.pl input)."""
    if args.py_spy is None:
        return None
    args.py_spy.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy", path=Path(sys.executable).parent) or "py-spy"
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(int(args.min_seconds)), "--nonblocking",
               "--threads", "--subprocesses", "--format", "raw",
               "--output", str(args.py_spy / f"worker-{phase}.folded")]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def broker_store_count(stack: Stack) -> int:
    assert stack.monitor is not None
    return stack.monitor.value("store")


def settled_store(stack: Stack, baseline: int) -> tuple[int, float]:
    """Wait for the broker's message store to shrink back (every queued message acked); (count, seconds)."""
    started = time.monotonic()
    while (count := broker_store_count(stack)) > baseline + 100 and time.monotonic() - started < 15:
        time.sleep(0.5)
    return count, round(time.monotonic() - started, 1)


def backlog_phase(stack: Stack, name: str, backlog: int) -> dict[str, Any]:
    baseline = broker_store_count(stack)
    log(f"{name}: publishing a backlog of {backlog:,} messages with {stack.args.publishers} processes")
    load = publish_load(stack, name, messages=backlog, rate=math.inf, seconds=None,
                        processes=stack.args.publishers, clients=4)  # fmt: skip
    log(f"{name}: {load.messages:,} acked in {load.seconds:.1f} s ({load.rate:,.0f} msg/s); bare subscriber draining")
    bare = bare_rate(stack, load.messages)
    log(f"{name}: bare subscriber {bare.rate:,.0f} msg/s over {bare.seconds:.1f} s; worker draining")
    keep = name == "10-metric"  # the latency step follows with the same worker
    worker = worker_rate(stack, load.messages, name, keep_running=keep)
    log(f"{name}: worker {worker.rate:,.0f} msg/s over {worker.seconds:.1f} s ({worker.rate / bare.rate:.2f} of bare)")
    store_after, acked_in = settled_store(stack, baseline)
    return {
        "load": load,
        "bare": bare,
        "worker": worker,
        "ratio": worker.rate / bare.rate,
        "broker_store": {"before": baseline, "after": store_after, "settled_in_s": acked_in},
        "load_average": os.getloadavg(),
    }


# --- (c): latency at a steady rate -------------------------------------------------------------------


@dataclass
class Observed:
    seen_at: dict[tuple[int, int], float] = field(default_factory=dict)  # (sensor id, ts µs) -> poll start
    polls: int = 0
    poll_ms: list[float] = field(default_factory=list)


def poll_commits(database_url: str, sensor_ids: list[int], stop: threading.Event, args: argparse.Namespace,
                 observed: Observed) -> None:  # fmt: skip
    """Every ``--poll-ms``: rows of these sensors committed since the last poll (by rising ``xmin``)."""
    query = (
        "SELECT sensor_id, (extract(epoch FROM ts) * 1000000)::bigint, xmin::text::bigint FROM sensors_reading "
        "WHERE sensor_id = ANY(%s) AND ts > %s AND xmin::text::bigint > %s"
    )
    newest_xid = 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET jit = off")
        while not stop.is_set():
            polled_at = time.time()
            since = datetime.fromtimestamp(polled_at - args.lookback, tz=UTC)
            rows = conn.execute(query, [sensor_ids, since, newest_xid], prepare=True).fetchall()
            observed.poll_ms.append((time.time() - polled_at) * 1000)
            observed.polls += 1
            for sensor_id, ts_us, xid in rows:
                observed.seen_at.setdefault((sensor_id, ts_us), polled_at)
                newest_xid = max(newest_xid, xid)
            stop.wait(max(0.0, args.poll_ms / 1000 - (time.time() - polled_at)))


def latency_phase(stack: Stack, sensor_of: dict[str, int]) -> dict[str, Any]:
    args = stack.args
    observed, stop = Observed(), threading.Event()
    poller = threading.Thread(
        target=poll_commits, args=(stack.database_url, sorted(sensor_of.values()), stop, args, observed), daemon=True
    )
    poller.start()
    seconds = args.latency_warmup + args.latency_seconds
    log(f"latency: {args.latency_rate:g} msg/s for {seconds:g} s ({args.latency_warmup:g} s warm-up)")
    assert stack.worker is not None
    family = worker_family(stack.worker.pid)
    watch = Watch({"worker": family, "of which store process": family[1:]})
    load = publish_load(stack, "latency", messages=None, rate=args.latency_rate, seconds=seconds, processes=1,
                        clients=2)  # fmt: skip
    wanted = {(sensor_of[uid], ts) for uid, stamps in load.acked_ts.items() for ts in stamps}
    deadline = time.monotonic() + args.lookback + 2
    while time.monotonic() < deadline and not wanted <= observed.seen_at.keys():
        time.sleep(0.1)
    stop.set()
    poller.join()
    watch.stop()
    stack.worker_rss["latency"] = watch.peak_rss.get("worker", 0)
    stack.store_rss["latency"] = watch.peak_rss.get("of which store process", 0)
    stack.worker_once["latency"] = watch.peak_once.get("worker", 0)
    measured_from = (load.started + args.latency_warmup) * 1_000_000
    latencies, unseen = [], 0
    for key in wanted:
        if key[1] < measured_from:
            continue
        seen = observed.seen_at.get(key)
        if seen is None:
            unseen += 1
        else:
            latencies.append(seen * 1000 - key[1] / 1000)
    figures = worker_figures(0.0) or {}
    return {"load": load, "figures": figures, **latency_figures(latencies, unseen, observed, args)}


def latency_figures(
    latencies: list[float], unseen: int, observed: Observed, args: argparse.Namespace
) -> dict[str, Any]:
    latencies.sort()
    if not latencies:
        raise RuntimeError("no reading of the latency step was observed in the database")

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, math.ceil(q * len(latencies)) - 1)]

    return {
        "readings": len(latencies) + unseen,
        "p50_ms": round(pct(0.50), 1),
        "p90_ms": round(pct(0.90), 1),
        "p99_ms": round(pct(0.99), 1) if not unseen else math.inf,
        "max_ms": round(latencies[-1], 1) if not unseen else math.inf,
        "mean_ms": round(statistics.fmean(latencies), 1),
        "unseen": unseen,  # not observed within --lookback of its ts: counted as slower than that
        "polls": observed.polls,
        "poll_ms_p50": round(statistics.median(observed.poll_ms), 2),
        "poll_ms_max": round(max(observed.poll_ms), 2),
    }


# --- (e): exactly once ---------------------------------------------------------------------------------------

_CHECK_SQL = """
WITH got AS (
    SELECT s.device_id, r.ts, count(*) AS n
    FROM sensors_reading r JOIN sensors_sensor s ON s.id = r.sensor_id
    WHERE s.device_id = ANY(%(devices)s)
    GROUP BY 1, 2
)
SELECT
    count(*) FILTER (WHERE a.device_id IS NOT NULL),
    count(*) FILTER (WHERE got.device_id IS NULL),
    count(*) FILTER (WHERE got.n < a.nkeys),
    count(*) FILTER (WHERE got.n > a.nkeys),
    count(*) FILTER (WHERE a.device_id IS NULL),
    count(*) FILTER (WHERE got.n = a.nkeys),
    coalesce(sum(got.n), 0)
FROM bench_acked a FULL JOIN got ON got.device_id = a.device_id AND got.ts = a.ts
"""


def check_exactly_once(database_url: str, load: Load, device_ids: dict[str, int], nkeys: int) -> dict[str, int]:
    """Compare every acked message (device, ts) with the readings stored for it."""
    names = ("acked_messages", "missing", "partial", "duplicated", "unexpected", "exactly_once", "stored_readings")
    with psycopg.connect(database_url) as conn:
        conn.execute("SET work_mem = '256MB'")
        conn.execute("CREATE TEMP TABLE bench_acked (device_id bigint, ts timestamptz, nkeys int) ON COMMIT DROP")
        with conn.cursor().copy("COPY bench_acked (device_id, ts, nkeys) FROM STDIN") as copy:
            for uid, stamps in load.acked_ts.items():
                device_id = device_ids[uid]
                for ts in stamps:
                    copy.write_row((device_id, _moment(ts), nkeys))
        conn.execute("ANALYZE bench_acked")
        row = conn.execute(_CHECK_SQL, {"devices": list(device_ids.values())}).fetchone()
        distinct = conn.execute("SELECT count(DISTINCT (device_id, ts)) FROM bench_acked").fetchone()
    assert row is not None
    assert distinct is not None
    result = dict(zip(names, (int(v) for v in row), strict=True))
    result["acked_twice"] = result["acked_messages"] - int(distinct[0])  # the generator's own sanity
    result["ok"] = int(not any(result[k] for k in ("missing", "partial", "duplicated", "unexpected", "acked_twice")))
    return result


def _moment(ts_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=ts_us)


# --- the report -------------------------------------------------------------------------------------------


def machine(database_url: str) -> dict[str, str]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.strip()
    mosquitto = subprocess.run([str(MOSQUITTO), "-h"], capture_output=True, text=True, check=False).stdout
    with psycopg.connect(database_url) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()
    from importlib.metadata import version

    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "free -h": free,
        "postgresql": postgres[0] if postgres else "?",
        "mosquitto": mosquitto.splitlines()[0] if mosquitto else "?",
        "python": platform.python_version(),
        "paho-mqtt": version("paho-mqtt"),
        "psycopg": version("psycopg"),
    }


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def drain_text(drain: Drain) -> str:
    return f"{drain.rate:,.0f} msg/s over {drain.seconds:.1f} s" + (
        " (too short: raise the backlog)" if drain.short else ""
    )


def ratio_row(label: str, ratio: float) -> tuple[str, ...]:
    target = TARGETS["ratio"]
    return (label, f"{ratio:.2f}", f"≥ {target}", f"{ratio / target:.2f}", verdict(ratio >= target))


def table(results: dict[str, Any]) -> str:
    one, ten, lat = results["1-metric"], results["10-metric"], results["latency"]
    readings = ten["worker"].rate * SETS["10-metric"].metrics
    rss = max(results["worker_peak_rss_mb"].values())
    once = max(results["worker_peak_resident_once_mb"].values())
    checks = results["exactly_once"].values()
    lost = sum(c["missing"] + c["partial"] for c in checks)
    extra = sum(c["duplicated"] + c["unexpected"] + c["acked_twice"] for c in checks)
    acked = sum(c["acked_messages"] for c in checks)
    rows = [
        ("(a) bare paho subscriber, 1-metric backlog", drain_text(one["bare"]), "", "", ""),
        ("(b) worker, 1-metric backlog", drain_text(one["worker"]), "", "", ""),
        ratio_row("(b) ÷ (a), 1 metric", one["ratio"]),
        ("(a) bare paho subscriber, 10-metric backlog", drain_text(ten["bare"]), "", "", ""),
        ("(b) worker, 10-metric backlog", drain_text(ten["worker"]), "", "", ""),
        # For information: with 10-metric messages the target is readings/s (0.8 of a bare
        # subscriber's messages/s would be ~8× the 100,000 readings/s asked for).
        ("(b) ÷ (a), 10 metrics", f"{ten['ratio']:.2f}", "(target in readings/s)", "", ""),
        ("(b) readings/s, 10 metrics", f"{readings:,.0f}", f"≥ {TARGETS['readings_per_s_10']:,}",
         f"{readings / TARGETS['readings_per_s_10']:.2f}", verdict(readings >= TARGETS["readings_per_s_10"])),
        (f"(c) publish → commit at {lat['load'].rate:,.0f} msg/s, p50", f"{lat['p50_ms']:.0f} ms", "", "", ""),
        ("(c) publish → commit, p99", f"{lat['p99_ms']:.0f} ms", f"< {TARGETS['p99_ms']:.0f} ms",
         f"{lat['p99_ms'] / TARGETS['p99_ms']:.2f}", verdict(lat["p99_ms"] < TARGETS["p99_ms"])),
        ("(d) worker peak resident memory, both processes, shared pages once", f"{once:.0f} MB",
         f"< {TARGETS['rss_mb']:.0f} MB", f"{once / TARGETS['rss_mb']:.2f}", verdict(once < TARGETS["rss_mb"])),
        ("(d) worker peak RSS, sum of both processes' RSS", f"{rss:.0f} MB", f"< {TARGETS['rss_mb']:.0f} MB",
         f"{rss / TARGETS['rss_mb']:.2f}", verdict(rss < TARGETS["rss_mb"])),
        ("(e) acked messages lost / stored twice or unacked", f"{lost} / {extra} of {acked:,}", "0 / 0", "",
         verdict(not lost and not extra and not results["worker_anomalies"] and results["broker_dropped"] == 0)),
    ]  # fmt: skip
    lines = ["| Figure | Measured | Target | Measured ÷ target | |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def details(results: dict[str, Any]) -> str:
    out = io.StringIO()
    for name in ("1-metric", "10-metric"):
        phase = results[name]
        load, bare, worker = phase["load"], phase["bare"], phase["worker"]
        figures = worker.figures
        print(f"- {name}: backlog {load.messages:,} messages published in {load.seconds:.1f} s "
              f"({load.rate:,.0f} msg/s, {load.unacked} unacked); bare drain CPU {bare.cpu_pct}, broker autosaves "
              f"{bare.broker_saves}, longest pause {bare.max_gap_s} s; worker drain CPU {worker.cpu_pct}, broker "
              f"autosaves {worker.broker_saves}; {figures['batches']} batches, "
              f"{1000 * worker.seconds / figures['batches']:.0f} ms each on average; worker figures: readings "
              f"{figures['readings']:,}, stored {figures['stored']:,}, dead letters {figures['dead_letters']}, "
              f"unknown {figures['unknown']}, new sensors {figures['new_sensors']}, acks skipped "
              f"{figures['acks_skipped']}, internal errors {figures['internal_errors']}; broker store "
              f"{phase['broker_store']['before']} → {phase['broker_store']['after']} messages "
              f"({phase['broker_store']['settled_in_s']} s after the last commit); load average "
              f"after {', '.join(f'{x:.2f}' for x in phase['load_average'])}"
              + (" — SHORTER THAN --min-seconds: raise the backlog" if worker.short else ""), file=out)  # fmt: skip
    lat = results["latency"]
    print(f"- latency: {lat['load'].messages:,} messages in {lat['load'].seconds:.1f} s, {lat['readings']:,} "
          f"measured after the warm-up; p90 {lat['p90_ms']:.0f} ms, max {lat['max_ms']:.0f} ms, mean "
          f"{lat['mean_ms']:.0f} ms; {lat['polls']} polls (median {lat['poll_ms_p50']} ms, max "
          f"{lat['poll_ms_max']} ms); not seen within the look-back: {lat['unseen']}", file=out)  # fmt: skip
    print(f"- worker peak RSS by step (MB, both processes): {results['worker_peak_rss_mb']}, of which the store "
          f"process: {results['store_process_peak_rss_mb']}; shared pages counted once: "
          f"{results['worker_peak_resident_once_mb']}; broker peak RSS while draining: "
          f"{results['broker_peak_rss_mb']} MB; worker exit code on SIGTERM: "
          f"{results['worker_exit']}", file=out)  # fmt: skip
    for name, check in results["exactly_once"].items():
        print(f"- exactly once, {name}: {check}", file=out)
    print(f"- $SYS/broker/publish/messages/dropped: {results['broker_dropped']}; worker dead letters, unknown "
          f"devices, new sensors and internal errors: {results['worker_anomalies']}", file=out)  # fmt: skip
    return out.getvalue()


def plain(value: Any) -> Any:
    """Results as JSON: dataclasses as dicts, without the acked timestamps."""
    if isinstance(value, Load):
        return {k: v for k, v in asdict(value).items() if k != "acked_ts"} | {"rate": value.rate}
    if isinstance(value, Drain):
        return asdict(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, float) and math.isinf(value):
        return None
    return value


# --- main ---------------------------------------------------------------------------------------------------


def queue_limit() -> int:
    for line in (ROOT / "docker" / "mosquitto.conf").read_text().splitlines():
        if line.startswith("max_queued_messages "):
            return int(line.split()[1])
    return 1000


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--backlog-1", type=int, default=3_600_000, help="1-metric messages queued for (a) and (b)")
    parser.add_argument("--backlog-10", type=int, default=1_100_000, help="10-metric messages queued for (a) and (b)")
    parser.add_argument("--publishers", type=int, default=2, help="generator processes filling a backlog")
    parser.add_argument("--window", type=int, default=1000, help="unacknowledged messages per generator client")
    parser.add_argument("--min-seconds", type=float, default=60.0, help="a worker drain shorter than this is flagged")
    parser.add_argument("--drain-timeout", type=float, default=400.0, help="give up on a drain after this")
    parser.add_argument("--latency-rate", type=float, default=2000.0, help="messages/s of the latency step")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="measured window of the latency step")
    parser.add_argument("--latency-warmup", type=float, default=5.0, help="published before the window, not counted")
    parser.add_argument("--poll-ms", type=float, default=50.0, help="database poll interval of the latency step")
    parser.add_argument("--lookback", type=float, default=5.0, help="latency step: rows older than this are not polled")
    parser.add_argument(
        "--max-queued",
        type=int,
        default=4_000_000,
        help="max_queued_messages of the bench's broker (0: docker/mosquitto.conf's 1,000,000, too few messages "
        "for a 60 s backlog of 1-metric messages once the worker passes ~16k msg/s)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--py-spy", type=Path, metavar="DIR", help="record the worker's stacks during each drain")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs directory")
    args = parser.parse_args(argv)
    limit = args.max_queued or queue_limit()
    if max(args.backlog_1, args.backlog_10) >= limit:
        parser.error(f"a backlog must stay below max_queued_messages ({limit:,}) or the broker drops messages")
    return args


def configure_django(database_url: str) -> None:
    # Production settings, as the worker subprocess gets them (it inherits this environment).
    os.environ.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="farm.settings", DEBUG="false",
                      SECRET_KEY=secrets.token_urlsafe(50), HTTPS="false", LOG_LEVEL="WARNING")  # fmt: skip
    import django

    django.setup()


def latency_sensors(device_ids: dict[str, int]) -> dict[str, int]:
    from sensors.models import Sensor

    by_device = dict(Sensor.objects.filter(device_id__in=device_ids.values()).values_list("device_id", "id"))
    return {uid: by_device[device_id] for uid, device_id in device_ids.items()}


def run(args: argparse.Namespace, stack: Stack, ids: dict[str, dict[str, int]]) -> dict[str, Any]:
    create_sessions(stack)
    results: dict[str, Any] = {}
    results["1-metric"] = backlog_phase(stack, "1-metric", args.backlog_1)
    results["10-metric"] = backlog_phase(stack, "10-metric", args.backlog_10)
    results["latency"] = latency_phase(stack, latency_sensors(ids["latency"]))
    assert stack.worker is not None
    results["worker_exit"] = stack.worker.terminate(timeout=60)
    results["worker_peak_rss_mb"] = {k: round(v / 2**20, 1) for k, v in stack.worker_rss.items()}
    results["store_process_peak_rss_mb"] = {k: round(v / 2**20, 1) for k, v in stack.store_rss.items()}
    results["worker_peak_resident_once_mb"] = {k: round(v / 2**20, 1) for k, v in stack.worker_once.items()}
    results["broker_peak_rss_mb"] = round(stack.broker_rss / 2**20, 1)
    assert stack.monitor is not None
    results["broker_dropped"] = stack.monitor.value("publish")
    figures = [results["1-metric"]["worker"].figures, results["latency"]["figures"]]  # one worker did 10-metric too
    anomalies = ("dead_letters", "unknown", "new_sensors", "internal_errors", "acks_skipped")
    results["worker_anomalies"] = sum(f[k] for f in figures for k in anomalies)
    log("checking every acked message against the readings table")
    results["exactly_once"] = {
        name: check_exactly_once(stack.database_url, results[name]["load"], ids[name], SETS[name].metrics)
        for name in ("1-metric", "10-metric", "latency")
    }
    return results


def clean_up(stack: Stack | None, database_url: str, farm_id: int | None, keep: bool) -> None:
    """Stop the worker and the broker, forget the live sequence, drop the database; each step whatever the rest did."""
    steps: list[Callable[[], None]] = []
    if stack is not None:
        steps += [lambda: stop_worker_anyhow(stack), stack.monitor.close if stack.monitor else lambda: None,
                  stack.broker.stop]  # fmt: skip
    if farm_id is not None:
        steps.append(lambda: forget_sequence(farm_id))
    if not keep:
        steps.append(lambda: drop_database(database_url))  # WITH (FORCE): our own connections go too
    for step in steps:
        try:
            step()
        except Exception as exc:  # report and go on: the next step still has to run
            log(f"clean-up step failed: {exc!r}")


def stop_worker_anyhow(stack: Stack) -> None:
    worker = stack.worker
    if worker is None or not worker.alive():
        return
    try:
        worker.terminate(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()


def forget_sequence(farm_id: int) -> None:
    """The bench farm's live sequence number in Redis (its id is reused by the next run's fresh database)."""
    import redis

    from dashboard.live import SEQUENCE_KEY

    redis.Redis.from_url(os.environ["REDIS_URL"]).delete(SEQUENCE_KEY.format(farm_id=farm_id))


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
    database_url = fresh_database(os.environ["DATABASE_URL"])
    configure_django(database_url)
    stack: Stack | None = None
    farm_id: int | None = None
    workdir = Path(tempfile.mkdtemp(prefix="furrow-ingest-bench-"))
    workdir.chmod(0o755)  # mosquitto runs as its own user
    log(f"logs in {workdir}")
    finished = False
    try:
        log("registering the devices")
        farm_id, ids = register_devices()
        stack = start_stack(args, database_url, workdir)
        log("creating the worker's and the bare subscriber's sessions")
        results = run(args, stack, ids)
        results.update(command=" ".join([Path(sys.executable).name, *sys.argv]), machine=machine(database_url),
                       uptime_before=before, uptime_after=uptime())  # fmt: skip
        finished = True
    finally:
        clean_up(stack, database_url, farm_id, args.keep)
        if finished and stack is not None:
            count_broker_saves(stack.broker, results)
        if finished and not args.keep:  # the logs of a failed run stay for a look
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{results['command']}\n")
    print("\n".join(f"- {k}: {v}" for k, v in results["machine"].items() if k != "free -h"))
    print(f"- free -h:\n```\n{results['machine']['free -h']}\n```")
    print(f"- before: `{before}`\n- after: `{results['uptime_after']}`\n")
    print(table(results) + "\n")
    print(details(results))
    if args.json:
        args.json.write_text(json.dumps(plain(results), indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
