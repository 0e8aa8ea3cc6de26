"""Notifications under load, in one run (run by hand, not a test): issue 9's two targets.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/furrow REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/notify_bench.py [--alerts 60] [--spacing 1.5] [--json out.json]

Everything runs as in production, on this machine: a private Mosquitto (``docker/mosquitto.conf``
as the tests adapt it), the machine's PostgreSQL with a database of our own
(``<DATABASE_URL name>_notify_bench``: dropped, created and migrated at the start, dropped at
the end), ``manage.py ingest``, a Celery worker and Celery beat started with the Procfile's
commands (``--concurrency 2``; production settings module) on ``REDIS_URL`` as broker (the bench
empties that Redis database first: give it one nobody else uses). The receivers live in this
process: an HTTP server that checks every webhook's ``Furrow-Signature`` (HMAC-SHA256 with the
channel's secret, ``notifications.signing.webhook_verify``) and also takes Apprise ``json://``
posts, and an SMTP server (aiosmtpd) that the worker's ``EMAIL_HOST`` points at.

Background load: one generator process (``bench/_ingest_load.py``, the ingest bench's) publishes
``--rate`` (1,000) one-reading messages/s from 100 simulated probes of a farm without rules,
for the whole of each phase.

1. **(a) Publish → webhook.** Once the load has run ``--warmup`` seconds, this process publishes
   one breaching reading ("soil moisture below 10 %", a sensor-scoped rule, fires on the first
   reading) every ``--spacing`` seconds, ``--alerts`` of them, each on a sensor of its own, so
   each is a new episode, in two streams at once:

   - **isolated**: each alert on a farm of its own, whose owner has one signed webhook. Nothing
     else happened on that farm within the storm window, so the shipped planning sends it at
     once: this is "a frost alert reaches the farmer", the figure held against p99 < 5 s.
   - **same farm**: every alert on one farm, whose owner has one signed webhook. With the
     shipped ``NOTIFY_GROUP_SECONDS`` (60) the first goes at once and the following ones are
     folded into one grouped message sent at the end of the window (notifications/planning.py,
     step 4): measured the same way — until the first message that names the alert (a grouped
     message lists each event's key) — so the table shows what that farmer experiences.

   Latency = the receiver's wall clock when the request arrived − the publisher's wall clock
   just before ``publish`` (both in this process). Every webhook's signature is checked.
2. **(b) A storm.** One farm of ``--storm`` (500) probes with one farm-scoped rule; this process
   publishes a breaching reading from each within one second (paced), still under the background
   load. Recipients: the owner (webhook and email), a manager (webhook), a manager (an Apprise
   ``json://`` URL to the local server) and a viewer (webhook; viewers are not told by default).
   After the storm window and the batch's send, it counts per recipient and channel the
   messages the receivers got, the events they name (each of the 500 must be named once per
   channel), and the Delivery rows (messages: rows not folded into a batch; folded: events
   carried in a grouped message). Target: ≤ 2 messages per recipient on each channel.

``uptime`` is recorded before and after: other processes on the machine raise every latency.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import redis  # noqa: E402

# (_ingest_load and alerts_bench sit next to this script: sys.path[0] when it runs, and in the spawned children.)
from _ingest_load import DeviceSet, publish  # noqa: E402
from alerts_bench import drop_database, log, machine, uptime  # noqa: E402

from tests.e2e_fixtures import service_env  # noqa: E402
from tests.mqtt_fixtures import MOSQUITTO, Broker, WorkerProcess, free_port, wait_until  # noqa: E402
from tests.mqtt_fixtures import fresh_database as mqtt_fresh_database  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")
METRIC = "soil_moisture"
BREACH = 5.0  # below the rules' 10 %
P99_TARGET_MS = 5000.0
STORM_MESSAGES_MAX = 2
INGEST_CLIENT_ID = "notify-bench"


# --- the receivers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    path: str
    at: float  # time.time() when the request was read
    verified: bool | None  # the webhook's signature checked out; None: not a webhook (Apprise)
    data: dict[str, Any]

    def event_keys(self) -> list[str]:
        """The events this message tells about: itself, or each one a grouped message lists."""
        if "events" in self.data:
            return [str(e.get("key")) for e in self.data["events"]]
        return [str(self.data["key"])] if "key" in self.data else []


@dataclass
class Receivers:
    """The HTTP receiver (webhooks by ``/hook/<channel id>``, Apprise by ``/apprise/<channel id>``) and SMTP."""

    http_port: int = 0
    smtp_port: int = 0
    secrets: dict[str, str] = field(default_factory=dict)  # path → the webhook channel's secret
    arrivals: list[Arrival] = field(default_factory=list)
    mail: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, arrival: Arrival) -> None:
        with self.lock:
            self.arrivals.append(arrival)

    def at(self, path: str) -> list[Arrival]:
        with self.lock:
            return [a for a in self.arrivals if a.path == path]

    def mail_to(self, address: str) -> int:
        return sum(1 for raw in list(self.mail) if message_from_bytes(raw)["To"] == address)


@contextlib.contextmanager
def receivers_running() -> Iterator[Receivers]:
    from aiosmtpd.controller import Controller

    from notifications.signing import SIGNATURE_HEADER, webhook_verify

    receivers = Receivers(smtp_port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            arrived = time.time()
            secret = receivers.secrets.get(self.path)
            verified = None
            if secret is not None:
                header = self.headers.get(SIGNATURE_HEADER, "")
                verified = webhook_verify(secret=secret, header=header, body=body, now=int(arrived))
            try:
                data = json.loads(body)
            except ValueError:
                data = {}
            receivers.add(Arrival(self.path, arrived, verified, data))
            # A receiver that checks signatures refuses a bad one: Furrow would retry, and the bench show it.
            self.send_response(401 if verified is False else 200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            receivers.mail.append(envelope.content)
            return "250 OK"

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receivers.http_port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    smtp = Controller(Inbox(), hostname="127.0.0.1", port=receivers.smtp_port)
    smtp.start()
    try:
        yield receivers
    finally:
        smtp.stop()
        server.shutdown()
        server.server_close()


# --- setting up ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    uid: str
    farm_id: int


@dataclass
class Seeded:
    isolated: list[Probe]
    same_farm: list[Probe]
    storm: list[Probe]
    storm_farm_id: int
    load_farm_id: int
    channels: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # path → (user, kind, label)
    emails: dict[str, str] = field(default_factory=dict)  # address → user


def probes_create(farm: Any, prefix: str, count: int) -> list[Probe]:
    from sensors.models import Device, Sensor
    from sensors.services import sensor_from_metric
    from sensors.simulator.registry import simulator_kind_ensure

    kind = simulator_kind_ensure(keys=[METRIC])
    metrics = list(kind.metrics.all())
    made = Device.objects.bulk_create(
        [Device(uid=f"{prefix}-{n}", name=f"Probe {prefix}-{n}", farm=farm, kind=kind) for n in range(count)]
    )
    Sensor.objects.bulk_create([sensor_from_metric(device=d, metric=m) for d in made for m in metrics])
    return [Probe(d.uid, farm.pk) for d in made]


def rule_create(farm: Any, *, scope: str, sensor_id: int | None = None, name: str = "Too dry") -> None:
    from alerts.models import AlertRule

    AlertRule.objects.create(
        farm=farm,
        name=name,
        metric=METRIC,
        scope=scope,
        sensor_id=sensor_id,
        kind="below",
        threshold=10.0,
        clear=12.0,
        severity="warning",
        note="Open valve 3.",
    )


def member_create(farm: Any, receivers: Receivers, seeded: Seeded, name: str, role: str, kinds: Sequence[str]) -> None:
    """A member of ``farm`` with a channel of each of ``kinds`` pointed at this process's receivers."""
    from django.contrib.auth import get_user_model

    from farm.models import Role
    from farm.services import membership_set
    from notifications.models import NotificationChannel

    email = f"{name}@bench.invalid"
    user = get_user_model().objects.create_user(username=name, password=None, email=email)
    membership_set(farm=farm, user=user, role=Role(role))
    for kind in kinds:
        channel = NotificationChannel.objects.create(user=user, kind=kind, target=email, label=f"{name} {kind}")
        if kind == "webhook":
            path = f"/hook/{channel.pk}"
            channel.target = f"http://127.0.0.1:{receivers.http_port}{path}"
            receivers.secrets[path] = channel.secret
        elif kind == "apprise":
            path = f"/apprise/{channel.pk}"
            channel.target = f"json://127.0.0.1:{receivers.http_port}{path}"
        else:
            path = f"mailto:{email}"
            seeded.emails[email] = name
        channel.save(update_fields=["target"])
        seeded.channels[path] = (name, kind, f"{role} {kind}")


def seed(args: argparse.Namespace, background: DeviceSet, receivers: Receivers) -> Seeded:
    from farm.services import farm_create
    from sensors.models import Device, Sensor
    from sensors.services import sensor_from_metric
    from sensors.simulator.registry import simulator_kind_ensure

    load_farm = farm_create(name="Background load", slug="bench")  # _ingest_load's devices are on "bench"
    kind = simulator_kind_ensure(keys=[METRIC])
    made = Device.objects.bulk_create(
        [Device(uid=d.uid, name=f"Simulated {d.uid}", farm=load_farm, kind=kind) for d in background.devices()]
    )
    Sensor.objects.bulk_create([sensor_from_metric(device=d, metric=m) for d in made for m in kind.metrics.all()])

    seeded = Seeded(isolated=[], same_farm=[], storm=[], storm_farm_id=0, load_farm_id=load_farm.pk)
    for n in range(args.alerts):
        farm = farm_create(name=f"Isolated {n}", slug=f"isolated-{n}")
        [probe] = probes_create(farm, f"iso{n}", 1)
        rule_create(farm, scope="sensor", sensor_id=Sensor.objects.get(device__uid=probe.uid).pk)
        member_create(farm, receivers, seeded, f"iso-owner-{n}", "owner", ["webhook"])
        seeded.isolated.append(probe)

    farm = farm_create(name="Same farm", slug="same-farm")
    seeded.same_farm = probes_create(farm, "same", args.alerts)
    for probe in seeded.same_farm:
        sensor_id = Sensor.objects.get(device__uid=probe.uid).pk
        rule_create(farm, scope="sensor", sensor_id=sensor_id, name=f"Too dry {probe.uid}")
    member_create(farm, receivers, seeded, "same-owner", "owner", ["webhook"])

    farm = farm_create(name="Storm", slug="storm")
    seeded.storm = probes_create(farm, "storm", args.storm)
    seeded.storm_farm_id = farm.pk
    rule_create(farm, scope="farm")
    member_create(farm, receivers, seeded, "storm-owner", "owner", ["webhook", "email"])
    member_create(farm, receivers, seeded, "storm-manager-a", "manager", ["webhook"])
    member_create(farm, receivers, seeded, "storm-manager-b", "manager", ["apprise"])
    member_create(farm, receivers, seeded, "storm-viewer", "viewer", ["webhook"])
    return seeded


# --- the processes -------------------------------------------------------------------------------


@dataclass
class Celery:
    """The Procfile's ``worker`` and ``beat`` (``python -m celery``: this virtualenv's Celery)."""

    env: dict[str, str]
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        commands = {
            "worker": ["worker", "--loglevel", "INFO", "--concurrency", "2"],
            "beat": ["beat", "--loglevel", "INFO", "--schedule", str(self.workdir / "celerybeat-schedule")],
        }
        for name, command in commands.items():
            with (self.workdir / f"celery-{name}.log").open("ab") as out:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "celery", "-A", "farm", *command],
                        cwd=ROOT,
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        worker_log = self.workdir / "celery-worker.log"
        wait_until(lambda: b" ready." in worker_log.read_bytes(), timeout=60, what="the Celery worker")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass
class Load:
    """The background generator: ``rate`` messages/s for ``seconds`` (a spawned process)."""

    process: Any
    out: Any

    @classmethod
    def start(cls, port: int, devices: DeviceSet, rate: float, seconds: float) -> Load:
        out: Any = SPAWN.Queue()
        kwargs = {"url": f"mqtt://127.0.0.1:{port}", "devices": devices, "lane": 0, "lanes": 1, "messages": None}
        kwargs |= {"rate": rate, "seconds": seconds, "clients": 2, "window": 1000, "out": out}
        process = SPAWN.Process(target=publish, kwargs=kwargs, daemon=True)
        process.start()
        return cls(process, out)

    def result(self) -> dict[str, Any]:
        published = self.out.get(timeout=300)
        self.process.join(timeout=30)
        return {
            "acked": published.acked,
            "seconds": round(published.seconds, 1),
            "per_s": round(published.acked / published.seconds) if published.seconds else 0,
        }


class Publisher:
    """This process's own QoS 1 publisher of breaching readings; remembers when each left."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"notify-bench-{os.getpid()}")
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.sent: dict[str, float] = {}  # uid → time.time() just before publish
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def breach(self, uid: str) -> None:
        at = time.time()
        self.sent[uid] = at
        payload = json.dumps({"ts": int(at * 1000), METRIC: BREACH})
        self.infos.append(self.client.publish(f"farm/{uid}/telemetry", payload, qos=1))

    def close(self) -> int:
        for info in self.infos:
            info.wait_for_publish(timeout=30)
        self.client.disconnect()
        self.client.loop_stop()
        return sum(1 for i in self.infos if i.is_published())


# --- (a) ---------------------------------------------------------------------------------------


def event_uids(farm_ids: Sequence[int]) -> dict[str, str]:
    """Event key (``<episode>:fired``) → the uid of the probe whose reading fired it."""
    from alerts.models import AlertEpisode

    rows = AlertEpisode.objects.filter(rule__farm_id__in=list(farm_ids)).values_list("pk", "sensor__device__uid")
    return {f"{pk}:fired": uid for pk, uid in rows}


def first_told(arrivals: Sequence[Arrival], keys: dict[str, str]) -> dict[str, float]:
    """uid → when the first message naming its event arrived."""
    told: dict[str, float] = {}
    for arrival in sorted(arrivals, key=lambda a: a.at):
        for key in arrival.event_keys():
            uid = keys.get(key)
            if uid is not None and uid not in told:
                told[uid] = arrival.at
    return told


def percentiles(latencies_ms: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(latencies_ms)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 1) if ordered else math.nan

    return {
        "n": len(ordered),
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "max_ms": round(ordered[-1], 1) if ordered else math.nan,
        "mean_ms": round(statistics.mean(ordered), 1) if ordered else math.nan,
    }


def phase_a(args: argparse.Namespace, port: int, seeded: Seeded, receivers: Receivers) -> dict[str, Any]:
    publisher = Publisher(port)
    started = time.monotonic()
    for n in range(args.alerts):
        delay = started + n * args.spacing - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        publisher.breach(seeded.isolated[n].uid)
        publisher.breach(seeded.same_farm[n].uid)
    acked = publisher.close()
    log(f"    {acked} breaching readings acked; waiting for the same farm's last grouped message")
    same_path = next(p for p, (user, _, _) in seeded.channels.items() if user == "same-owner")
    farm_of_same = seeded.same_farm[0].farm_id
    iso_paths = {p for p, (user, _, _) in seeded.channels.items() if user.startswith("iso-owner-")}
    deadline = time.monotonic() + args.tail
    while time.monotonic() < deadline:
        keys = event_uids([farm_of_same])
        told = first_told(receivers.at(same_path), keys)
        iso_arrived = sum(1 for a in receivers.arrivals if a.path in iso_paths)
        if len(told) >= args.alerts and iso_arrived >= args.alerts:
            break
        time.sleep(0.5)
    results: dict[str, Any] = {"acked": acked}
    for label, probes, paths in (
        ("isolated", seeded.isolated, iso_paths),
        ("same farm", seeded.same_farm, {same_path}),
    ):
        keys = event_uids(sorted({p.farm_id for p in probes}))
        arrivals = [a for a in list(receivers.arrivals) if a.path in paths]
        told = first_told(arrivals, keys)
        latencies = [(told[p.uid] - publisher.sent[p.uid]) * 1000 for p in probes if p.uid in told]
        results[label] = {
            **percentiles(latencies),
            "alerts": len(probes),
            "episodes": len(keys),
            "told": len(told),
            "messages": len(arrivals),
            "grouped_messages": sum(1 for a in arrivals if "events" in a.data),
            "signatures_ok": sum(1 for a in arrivals if a.verified),
            "signatures_bad": sum(1 for a in arrivals if a.verified is False),
        }
    return results


# --- (b) ---------------------------------------------------------------------------------------


def storm_done(farm_id: int) -> bool:
    """Every transition planned (the outbox is drained) and every message of the farm sent or given up."""
    from notifications.models import Delivery
    from outbox.models import OutboxMessage

    if OutboxMessage.objects.filter(processed_at__isnull=True, failed_at__isnull=True).exists():
        return False
    return not Delivery.objects.filter(farm_id=farm_id, state__in=["queued", "pending"]).exists()


def phase_b(args: argparse.Namespace, port: int, seeded: Seeded, receivers: Receivers) -> dict[str, Any]:
    from django.db.models import Max, Min

    from alerts.models import AlertEpisode
    from notifications.models import Delivery

    publisher = Publisher(port)
    started, started_at = time.monotonic(), time.time()
    for n, probe in enumerate(seeded.storm):
        delay = started + n * args.storm_seconds / len(seeded.storm) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        publisher.breach(probe.uid)
    published_in = time.monotonic() - started
    acked = publisher.close()
    farm_id = seeded.storm_farm_id
    wait_until(
        lambda: AlertEpisode.objects.filter(rule__farm_id=farm_id).count() >= len(seeded.storm),
        timeout=120,
        interval=0.5,
        what="every storm alert to fire",
    )
    fired = AlertEpisode.objects.filter(rule__farm_id=farm_id)
    fired_span = [min(e.started_at for e in fired), max(e.started_at for e in fired)]
    log(f"    {acked} acked in {published_in:.2f} s; {fired.count()} fired; waiting for the grouped messages")
    wait_until(lambda: storm_done(farm_id), timeout=args.tail + 120, interval=1.0, what="the storm's sends")
    time.sleep(2)  # the last request's arrival is recorded
    keys = set(event_uids([farm_id]))
    planned = Delivery.objects.filter(farm_id=farm_id).aggregate(first=Min("created_at"), last=Max("created_at"))
    return {
        "planned_within_seconds": round((planned["last"] - planned["first"]).total_seconds(), 2),
        "acked": acked,
        "published_seconds": round(published_in, 2),
        "episodes": fired.count(),
        "fired_within_seconds": round((fired_span[1] - fired_span[0]).total_seconds(), 2),
        "channels": storm_counts(seeded, receivers, keys, started_at),
    }


def storm_counts(seeded: Seeded, receivers: Receivers, keys: set[str], started_at: float) -> list[dict[str, Any]]:
    """Per storm recipient and channel: what the receiver got and what the Delivery rows say."""
    from notifications.models import Delivery

    rows = []
    for path, (user, kind, label) in seeded.channels.items():
        if not user.startswith("storm-"):
            continue
        deliveries = Delivery.objects.filter(farm_id=seeded.storm_farm_id, user__username=user, channel__kind=kind)
        row: dict[str, Any] = {
            "recipient": user,
            "channel": label,
            "db_messages": deliveries.filter(batch__isnull=True).exclude(state="suppressed").count(),
            "db_sent": deliveries.filter(batch__isnull=True, state="sent").count(),
            "db_folded": deliveries.filter(state="folded").count(),
            "db_failed": deliveries.filter(state="failed").count(),
        }
        if kind == "email":
            row["received"] = receivers.mail_to(path.removeprefix("mailto:"))
        else:
            arrivals = receivers.at(path)
            named = Counter(k for a in arrivals for k in a.event_keys() if k in keys)
            row["received"] = len(arrivals)
            row["arrived_after_s"] = [round(a.at - started_at, 1) for a in sorted(arrivals, key=lambda a: a.at)]
            if kind == "webhook":
                row["events_named"] = len(named)
                row["events_named_twice"] = sum(1 for c in named.values() if c > 1)
                row["signatures_ok"] = sum(1 for a in arrivals if a.verified)
        rows.append(row)
    return rows


def ingest_figures(seeded: Seeded) -> dict[str, Any]:
    """The worker's own figures (its /healthz ones) and the background farm's stored readings."""
    from django.core.cache import cache

    from sensors.ingest.stats import STATS_KEY
    from sensors.models import Reading

    time.sleep(6)  # the worker's next figures (every 5 s)
    figures = cache.get(STATS_KEY.format(INGEST_CLIENT_ID)) or {}
    broker = figures.get("broker") or {}
    return {
        "received": figures.get("received"),
        "stored": figures.get("stored"),
        "dead_letters": figures.get("dead_letters"),
        "hooks_dropped": figures.get("hooks_dropped"),
        "broker_dropped_since_start": broker.get("since_start"),
        "background_stored": Reading.objects.filter(sensor__device__farm_id=seeded.load_farm_id).count(),
    }


# --- the run -------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    a, b = results["a"], results["b"]
    lines = ["| Measure | Result | Target |", "|---|---|---|"]
    for label in ("isolated", "same farm"):
        s = a[label]
        ok = s["told"] == s["alerts"] and s["p99_ms"] < P99_TARGET_MS
        target = f"p99 < 5 s {'✓' if ok else '✗'}"
        if label == "same farm" and not ok:
            target += " (held for the grouped message: NOTIFY_GROUP_SECONDS)"
        lines.append(
            f"| (a) publish → webhook, {label}: {s['told']}/{s['alerts']} alerts told in {s['messages']} messages "
            f"| p50 {s['p50_ms']:,} ms, p95 {s['p95_ms']:,} ms, p99 {s['p99_ms']:,} ms, max {s['max_ms']:,} ms "
            f"| {target} |"
        )
    loads = [a["background"], b["background"]]
    acked = sum(load["acked"] for load in loads)
    stored = results["ingest"]["background_stored"]
    lines.append(
        f"| background load during (a) / (b) | {loads[0]['per_s']:,} / {loads[1]['per_s']:,} msg/s acked; "
        f"{stored:,} of {acked:,} stored | {results['rate']:,.0f} msg/s |"
    )
    for row in b["channels"]:
        got = max(row["received"], row["db_messages"])
        expect_none = row["recipient"] == "storm-viewer"
        ok = got == 0 if expect_none else 0 < got <= STORM_MESSAGES_MAX
        named = f", names {row['events_named']} events" if "events_named" in row else ""
        if row.get("arrived_after_s"):
            named += f", arrived {' s, '.join(map(str, row['arrived_after_s']))} s after the storm began"
        lines.append(
            f"| (b) {b['episodes']} alerts in {b['fired_within_seconds']} s → {row['recipient']} ({row['channel']}) "
            f"| received {row['received']}, Delivery messages {row['db_messages']} "
            f"(sent {row['db_sent']}, folded events {row['db_folded']}){named} "
            f"| {'0 (viewer)' if expect_none else '≤ 2'} {'✓' if ok else '✗'} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="background messages/s")
    parser.add_argument("--alerts", type=int, default=60, help="(a): breaching readings per stream")
    parser.add_argument("--spacing", type=float, default=1.5, help="(a): seconds between breaching readings")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of background load before measuring")
    parser.add_argument("--tail", type=float, default=90.0, help="seconds to wait for messages after publishing")
    parser.add_argument("--storm", type=int, default=500, help="(b): alerts firing at once")
    parser.add_argument("--storm-seconds", type=float, default=0.9, help="(b): over how long they are published")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]
    if missing or not MOSQUITTO.exists():
        sys.exit(f"needs {MOSQUITTO} and the variables {', '.join(missing) or '(set)'}: see the module docstring")
    before = uptime()
    log(f"uptime before: {before}")
    os.environ.setdefault("MQTT_URL", "mqtt://127.0.0.1:1883")  # required by settings; the processes get the bench's
    database_url = mqtt_fresh_database(os.environ["DATABASE_URL"], "_notify_bench")
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
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()  # no task of an earlier run is left in the queues
    background = DeviceSet(seed=909, count=100, metrics=1)
    workdir = Path(tempfile.mkdtemp(prefix="furrow-notify-bench-"))
    workdir.chmod(0o755)  # mosquitto runs as its own user
    log(f"logs in {workdir}")
    broker = Broker(port=free_port(), workdir=workdir / "mosquitto")
    broker.workdir.mkdir()
    broker.workdir.chmod(0o755)
    results: dict[str, Any] = {
        "machine": machine(),
        "uptime_before": before,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rate": args.rate,
    }
    finished = False
    with receivers_running() as receivers:
        broker.start()
        env = service_env(
            database_url=database_url,
            mqtt_url=broker.url,
            settings="farm.settings",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=str(receivers.smtp_port),
            EMAIL_USE_TLS="false",
            FURROW_VAR_DIR=str(workdir),
        )
        worker_env = {**env, "INGEST_CLIENT_ID": INGEST_CLIENT_ID, "INGEST_STATS_INTERVAL": "5", "LOG_LEVEL": "INFO"}
        worker = WorkerProcess(env=worker_env, log=workdir / "ingest.log")
        celery = Celery(env={**env, "LOG_LEVEL": "INFO"}, workdir=workdir)
        try:
            log("seeding the farms, probes, rules, members and channels")
            seeded = seed(args, background, receivers)
            worker.start_and_wait()
            celery.start()

            a_seconds = args.warmup + args.alerts * args.spacing + args.tail
            log(f"(a) {args.rate:g} msg/s of background load; a breaching reading every {args.spacing} s × 2 streams")
            load = Load.start(broker.port, background, args.rate, a_seconds)
            time.sleep(args.warmup)
            results["a"] = phase_a(args, broker.port, seeded, receivers)
            log(f"    {json.dumps(results['a'])}")
            results["a"]["background"] = load.result()

            log(f"(b) {args.storm} alerts on one farm within {args.storm_seconds} s, under the same load")
            load = Load.start(broker.port, background, args.rate, args.warmup + args.tail + 30)
            time.sleep(args.warmup)
            results["b"] = phase_b(args, broker.port, seeded, receivers)
            log(f"    {json.dumps(results['b'])}")
            results["b"]["background"] = load.result()
            results["ingest"] = ingest_figures(seeded)
            results["uptime_after"] = uptime()
            finished = True
        finally:
            celery.stop()
            if worker.alive():
                worker.terminate(timeout=60)
            broker.stop()
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


if __name__ == "__main__":
    sys.exit(main())
