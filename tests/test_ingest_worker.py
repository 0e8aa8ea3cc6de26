"""The worker end to end through a real Mosquitto into PostgreSQL, in this process.

The worker's flush loop runs in the test's thread (so it uses the test's database
transaction; hence ``store_process=False``: a store process could not see that transaction,
tests/test_ingest_storeproc.py covers it); a driver thread publishes and stops the worker once
the expected number of messages has committed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from django.core.cache import cache

from sensors.hooks import BatchOutcome, DeviceSensors, register_batch_notifier, unregister_batch_notifier
from sensors.ingest.hookthread import HookThread
from sensors.ingest.stats import STATS_KEY, WORKERS_KEY, IngestStats, StatsReporter, ingest_health
from sensors.ingest.worker import IngestWorker, WorkerConfig
from sensors.models import DeadLetter, Device, Reading, Sensor, SkippedField, UnknownDevice
from tests import mqtt_fixtures
from tests.factories import DeviceFactory
from tests.mqtt_fixtures import AmqttBroker, Broker, free_port, publish, tls_broker_config, wait_until

NOW_S = int(time.time())
DEV_EUI = "70b3d57ed0051f2a"


def discard_session(port: int, client_id: str) -> None:
    """Connect once with a clean session so the broker stops queueing for this client id."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect("127.0.0.1", port)
    client.loop(0.5)
    client.disconnect()


@pytest.fixture
def make_worker(mosquitto: Broker):
    created: list[str] = []

    def make(**overrides) -> IngestWorker:
        client_id = f"test-worker-{uuid.uuid4().hex[:8]}"
        created.append(client_id)
        options = {
            "url": mosquitto.url,
            "client_id": client_id,
            "batch_ms": 50,
            "stats_interval": 0.2,
            "store_process": False,
            **overrides,
        }
        worker = IngestWorker(WorkerConfig.from_settings(**options))
        worker.ingestor.registry.check_interval = 0
        return worker

    yield make
    for client_id in created:
        discard_session(mosquitto.port, client_id)


def run_worker(
    worker: IngestWorker,
    port: int,
    messages: Sequence[tuple[str, bytes]],
    *,
    expect: int | None = None,
    retain: bool = False,
    also: Callable[[], None] | None = None,
    timeout: float = 30,
) -> int:
    """Run the worker until ``expect`` messages (default: all) have committed, then stop it."""
    stop = threading.Event()
    failures: list[BaseException] = []
    target = len(messages) if expect is None else expect

    def drive() -> None:
        try:
            wait_until(lambda: worker.stats.connected, timeout=10, what="the worker to subscribe")
            publish(port, messages, retain=retain)
            wait_until(lambda: worker.stats.messages >= target, timeout=timeout, what=f"{target} messages stored")
            if also:
                also()
        except BaseException as exc:
            failures.append(exc)
        finally:
            stop.set()

    driver = threading.Thread(target=drive)
    driver.start()
    code = worker.run(stop)
    driver.join()
    if failures:
        raise failures[0]
    return code


def telemetry(uid: str, payload: object) -> tuple[str, bytes]:
    return f"farm/{uid}/telemetry", json.dumps(payload).encode()


def values_of(uid: str, key: str) -> list[float]:
    return list(
        Reading.objects.filter(sensor__device__uid=uid, sensor__key=key).order_by("ts").values_list("value", flat=True)
    )


def test_each_format_is_stored_end_to_end_through_the_broker(db, mosquitto, make_worker):
    for uid in ("flat-1", "values-1", "backfill-1", "status-1", DEV_EUI, "0004a30b001c0531", "0004a30b001c0532"):
        DeviceFactory(uid=uid)
    chirpstack = {  # no "time": the reading takes the receive time
        "deviceInfo": {"devEui": DEV_EUI.upper()},
        "object": {"soilMoisture": "33.5", "status": "OK"},
        "rxInfo": [{"rssi": -99, "snr": 4.5}],
    }

    def tts(eui: str, value: float) -> bytes:
        body = {
            "end_device_ids": {"device_id": "probe", "dev_eui": eui.upper()},
            "received_at": time.strftime("%Y-%m-%dT%H:%M:%S.123456789Z", time.gmtime(NOW_S - 30)),
            "uplink_message": {"decoded_payload": {"temperature": value}, "rx_metadata": [{"rssi": -80, "snr": 7}]},
        }
        return json.dumps(body).encode()

    messages = [
        telemetry("flat-1", {"ts": NOW_S - 10, "soil_moisture": 31.2, "air_temperature": 18.4}),
        telemetry("values-1", {"ts": (NOW_S - 10) * 1000, "values": {"rain": 0.4}}),
        telemetry("backfill-1", [{"ts": NOW_S - 300 + i * 60, "soil_moisture": 20 + i} for i in range(5)]),
        ("farm/status-1/status", b"offline"),
        (f"application/app-1/device/{DEV_EUI}/event/up", json.dumps(chirpstack).encode()),
        ("v3/farm@tenant-1/devices/probe/up", tts("0004a30b001c0531", 12.5)),
        ("v3/farm/devices/probe/up", tts("0004a30b001c0532", 13.5)),
    ]

    assert run_worker(make_worker(), mosquitto.port, messages) == 0

    assert values_of("flat-1", "soil_moisture") == [31.2]
    assert values_of("flat-1", "air_temperature") == [18.4]
    assert values_of("values-1", "rain") == [0.4]
    assert values_of("backfill-1", "soil_moisture") == [20, 21, 22, 23, 24]
    assert Device.objects.get(uid="status-1").status == "offline"
    lora = Device.objects.get(uid=DEV_EUI)
    assert (values_of(DEV_EUI, "soil_moisture"), lora.rssi, lora.snr, lora.status) == ([33.5], -99, 4.5, "online")
    assert values_of("0004a30b001c0531", "temperature") == [12.5]
    assert values_of("0004a30b001c0532", "temperature") == [13.5]
    assert Sensor.objects.filter(device=lora, key="soil_moisture", needs_review=True).exists()
    assert SkippedField.objects.get(device=lora).field == "status"  # a stored message: not a dead letter


BAD_INPUT = [
    ("farm/probe 1/telemetry", b'{"x": 1}', "device uid 'probe 1' in the topic is invalid"),
    ("farm/probe-1/telemetry", b'{"x": "\xff"}', "not valid UTF-8"),
    ("farm/probe-1/telemetry", b"soil=31", "not JSON"),
    ("farm/probe-1/telemetry", b'{"x": NaN}', "'x' (not a finite number: NaN)"),
    ("farm/probe-1/telemetry", b'{"x": Infinity}', "'x' (not a finite number: Infinity)"),
    ("farm/probe-1/telemetry", b'{"x": 1e999}', "not a finite number"),
    ("farm/probe-1/telemetry", b'{"x": 1, "x": 2}', "key 'x' twice"),
    ("farm/probe-1/telemetry", b'{"x": "' + b"a" * 70_000 + b'"}', "INGEST_MAX_PAYLOAD"),
    ("farm/probe-1/telemetry", json.dumps({"ts": NOW_S + 3600, "x": 1}).encode(), "ahead of the receive time"),
    ("farm/probe-1/telemetry", json.dumps({"ts": NOW_S - 500 * 86400, "x": 1}).encode(), "retention window"),
    ("farm/probe-1/telemetry", b'{"x": null}', "holds no readings. Skipped: 'x' (null)"),
    ("farm/probe-1/status", b"sleepy", "must be 'online' or 'offline'"),
    ("farm/off-1/telemetry", b'{"x": 1}', "is disabled"),
]
# Part-good messages: the good part is stored and the rest counted per field, not dead-lettered.
PART_GOOD = [
    ("farm/probe-1/telemetry", b'{"soil_moisture": 5, "note": "wet"}', "note"),
    ("farm/probe-1/telemetry", b'{"Bad-Key": 5, "soil_moisture": 6}', "Bad-Key"),
    (
        "farm/probe-1/telemetry",
        json.dumps([{"ts": NOW_S - 9, "soil_moisture": 7}, {"soil_moisture": 8}]).encode(),
        "ts",
    ),
    ("farm/probe-1/telemetry", b'{"soil_moisture": 9, "soil_temperature": NaN}', "soil_temperature"),
]


def test_the_bad_input_table_through_the_broker_dead_letters_each_case_and_keeps_the_good(db, mosquitto, make_worker):
    DeviceFactory(uid="probe-1")
    DeviceFactory(uid="off-1", enabled=False)
    messages: list[tuple[str, bytes]] = []
    for n, (topic, payload, _) in enumerate(BAD_INPUT + PART_GOOD):
        messages.append(telemetry("probe-1", {"ts": NOW_S - 100 + n, "good": n}))
        messages.append((topic, payload))
    messages.append(telemetry("probe-1", {"ts": NOW_S - 1, "good": 99}))

    assert run_worker(make_worker(), mosquitto.port, messages) == 0

    reasons = {(d.topic, bytes(d.payload[:40])): d.reason for d in DeadLetter.objects.all()}
    for topic, payload, reason in BAD_INPUT:
        assert reason in reasons[topic, payload[:40]], (topic, payload[:40])
    assert len(reasons) == len(BAD_INPUT)
    assert values_of("probe-1", "good") == [*range(len(BAD_INPUT) + len(PART_GOOD)), 99]
    assert sorted(values_of("probe-1", "soil_moisture")) == [5, 6, 7, 9]
    assert sorted(SkippedField.objects.values_list("field", flat=True)) == sorted(f for _, _, f in PART_GOOD)
    assert UnknownDevice.objects.count() == 0


def test_the_same_message_published_twice_is_stored_once(db, mosquitto, make_worker):
    DeviceFactory(uid="probe-1")
    message = telemetry("probe-1", {"ts": NOW_S - 5, "soil_moisture": 12})

    assert run_worker(make_worker(), mosquitto.port, [message, message]) == 0

    assert values_of("probe-1", "soil_moisture") == [12]


def test_an_unregistered_uid_becomes_an_unknown_device_record(db, mosquitto, make_worker):
    assert run_worker(make_worker(), mosquitto.port, [telemetry("stranger", {"x": 1})] * 3) == 0

    assert UnknownDevice.objects.get(uid="stranger").message_count == 3


def test_retained_telemetry_is_not_stored_as_a_new_reading(db, mosquitto, make_worker):
    DeviceFactory(uid="retained-1")
    topic = "farm/retained-1/telemetry"
    publish(mosquitto.port, [(topic, json.dumps({"ts": NOW_S - 5, "soil_moisture": 1}).encode())], retain=True)
    try:
        # The worker's first subscription makes the broker replay the retained message.
        assert run_worker(make_worker(), mosquitto.port, [], expect=1) == 0
    finally:
        publish(mosquitto.port, [(topic, b"")], retain=True)  # clear it

    assert values_of("retained-1", "soil_moisture") == []
    assert "Retained telemetry" in DeadLetter.objects.get(topic=topic).reason


def test_mqtt_5_with_a_shared_subscription_stores_the_messages(db, mosquitto, make_worker):
    DeviceFactory(uid="probe-5")
    messages = [telemetry("probe-5", {"ts": NOW_S - 50 + i, "soil_moisture": i}) for i in range(20)]

    worker = make_worker(mqtt_version="5", share_group="furrow-test")
    assert worker.filters[0] == "$share/furrow-test/farm/+/telemetry"
    assert run_worker(worker, mosquitto.port, messages) == 0

    assert values_of("probe-5", "soil_moisture") == list(range(20))


def test_an_error_in_the_network_loop_does_not_leave_the_worker_deaf(db, mosquitto, make_worker):
    DeviceFactory(uid="probe-1")
    worker = make_worker()
    real_read = worker.client.loop_read
    calls = {"n": 0}

    def read_failing_once(max_packets: int = 1):
        calls["n"] += 1
        if calls["n"] == 30:
            raise RuntimeError("boom")
        return real_read(max_packets)

    worker.client.loop_read = read_failing_once
    messages = [telemetry("probe-1", {"ts": NOW_S - 100 + i, "soil_moisture": i}) for i in range(100)]

    assert run_worker(worker, mosquitto.port, messages) == 0

    assert worker.stats.internal_errors == 1
    assert len(values_of("probe-1", "soil_moisture")) == 100


def test_the_stats_and_ingest_health_move_as_messages_flow(db, mosquitto, make_worker, caplog):
    cache.delete(WORKERS_KEY)  # workers killed by other tests are (rightly) reported stale for a minute
    DeviceFactory(uid="probe-1")
    worker = make_worker()
    client_id = worker.config.client_id
    messages = [telemetry("probe-1", {"ts": NOW_S - 500 + i, "soil_moisture": i, "battery": 90}) for i in range(300)]
    seen: dict[str, object] = {}

    def check_health() -> None:
        def reported() -> bool:
            figures = ingest_health()["workers"].get(client_id, {})
            return figures.get("received", 0) >= 300 and figures.get("stored", 0) >= 600

        wait_until(reported, timeout=5, what="the figures in the cache")
        seen.update(ingest_health())

    caplog.set_level("INFO", logger="sensors.ingest")
    assert run_worker(worker, mosquitto.port, messages, also=check_health) == 0

    figures = seen["workers"][client_id]  # type: ignore[index]
    assert seen["ok"] is True
    assert (figures["received"], figures["messages"], figures["stored"], figures["connected"]) == (300, 300, 600, True)
    assert figures["stale"] is False
    assert figures["last_flush_ms"] > 0
    summary = [r.getMessage() for r in caplog.records if "stored 600 readings" in r.getMessage()]
    assert summary, "the one-line summary reports the stored readings"
    assert "received 300" in summary[-1]
    assert client_id not in ingest_health()["workers"]  # a cleanly stopped worker withdraws its figures


def test_ingest_health_reports_a_worker_that_stopped_reporting(db):
    cache.delete(WORKERS_KEY)
    now = time.time()
    stats = IngestStats(received=10, connected=True)
    for client_id, age in (("alive", 1), ("gone", 60)):
        reporter = StatsReporter(client_id=client_id, interval=5, stats=stats)
        figures = reporter.figures(now=time.monotonic(), pending=0, lag_s=0)
        figures["updated_at"] = now - age
        cache.set(STATS_KEY.format(client_id), figures)
        cache.set(WORKERS_KEY, {**(cache.get(WORKERS_KEY) or {}), client_id: now - age})

    health = ingest_health(now=now)

    assert (health["ok"], health["status"]) == (False, "degraded")
    assert health["workers"]["gone"]["stale"] is True
    assert health["workers"]["alive"]["stale"] is False
    assert health["problems"] == ["gone: no report for 15 s"]


def test_ingest_health_is_down_when_no_worker_reports(db):
    cache.delete(WORKERS_KEY)

    assert ingest_health() == {
        "ok": False,
        "status": "down",
        "problems": ["no ingest worker has reported"],
        "workers": {},
    }


def test_the_worker_connects_over_tls_with_a_private_ca_and_the_password_in_the_url(db, make_worker):
    DeviceFactory(uid="probe-t")
    workdir = Path(tempfile.mkdtemp(prefix="furrow-tls-"))
    workdir.chmod(0o755)
    plain, tls = free_port(), free_port()
    config = tls_broker_config(workdir, plain_port=plain, tls_port=tls, user="ingest", password="p@ss word")
    broker = Broker(port=plain, workdir=workdir, config=config)
    broker.start()
    try:
        wait_until(lambda: mqtt_fixtures._port_open(tls), timeout=10, what="the TLS listener")
        url = f"mqtts://ingest:p%40ss%20word@localhost:{tls}"
        worker = make_worker(url=url, ca_file=str(workdir / "ca.crt"))
        messages = [telemetry("probe-t", {"ts": NOW_S - 9 + i, "soil_moisture": i}) for i in range(5)]

        assert run_worker(worker, plain, messages) == 0
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    assert values_of("probe-t", "soil_moisture") == [0, 1, 2, 3, 4]


def test_the_worker_speaks_mqtt_over_websockets_to_the_embedded_amqtt_broker(db, make_worker, tmp_path):
    DeviceFactory(uid="probe-w")
    broker = AmqttBroker(workdir=tmp_path)
    broker.start()
    try:
        worker = make_worker(url=f"ws://127.0.0.1:{broker.ws_port}/mqtt")
        messages = [telemetry("probe-w", {"ts": NOW_S - 9 + i, "soil_moisture": i}) for i in range(5)]

        assert run_worker(worker, broker.port, messages) == 0
    finally:
        broker.stop()

    assert values_of("probe-w", "soil_moisture") == [0, 1, 2, 3, 4]


# --- review fixes: pause keepalive, byte budget, hooks, ack generations ---------------------------


def hold_first_store(worker: IngestWorker) -> threading.Event:
    """Make the worker's first store wait (as on a slow or stalled database) until the event is set."""
    release = threading.Event()
    real = worker.ingestor.store

    def store(decoded):
        release.wait(timeout=60)
        return real(decoded)

    worker.ingestor.store = store  # type: ignore[method-assign]
    return release


def test_a_paused_worker_keeps_its_connection_alive(db, mosquitto, make_worker):
    DeviceFactory(uid="probe-k")
    worker = make_worker(keepalive=1, batch_size=5, max_pending=10)
    release = hold_first_store(worker)
    messages = [telemetry("probe-k", {"ts": NOW_S - 100 + i, "soil_moisture": i}) for i in range(30)]

    def pause_for_keepalives() -> None:
        wait_until(worker.network.paused.is_set, timeout=10, what="the worker to stop reading")
        time.sleep(6)  # the broker drops a client silent for 1.5 keepalives (1.5 s; it checks every few s)
        release.set()

    holder = threading.Thread(target=pause_for_keepalives)
    holder.start()
    assert run_worker(worker, mosquitto.port, messages) == 0
    holder.join()

    assert values_of("probe-k", "soil_moisture") == list(range(30))
    assert worker.stats.connects == 1, "the broker did not drop the paused worker"
    # Had it dropped the worker, the acks sent after the pause went to a dead socket and the
    # broker still holds those messages for the worker's session.
    assert session_backlog(mosquitto.port, worker.config.client_id, "farm/probe-k/telemetry") == []


def session_backlog(port: int, client_id: str, topic: str) -> list[bytes]:
    """What the broker still holds for a persistent session: resume it, then wait for a marker message."""
    got: list[bytes] = []
    marker = f"marker-{uuid.uuid4().hex}".encode()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_message = lambda c, u, m: got.append(m.payload)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_until(client.is_connected, timeout=10, what="the session to resume")
        publish(port, [(topic, marker)])  # queued behind whatever the session still holds
        wait_until(lambda: marker in got, timeout=10, what="the marker")
    finally:
        client.disconnect()
        client.loop_stop()
    return got[: got.index(marker)]


def test_the_byte_budget_stops_reading_before_the_message_count_does(db, mosquitto, make_worker):
    DeviceFactory(uid="probe-b")
    worker = make_worker(batch_size=5, max_pending=1000, max_pending_bytes=2_000)
    release = hold_first_store(worker)
    messages = [telemetry("probe-b", {"ts": NOW_S - 100 + i, "soil_moisture": i, "pad": "x" * 60}) for i in range(60)]
    held: list[int] = []

    def measure_then_release() -> None:
        wait_until(worker.network.paused.is_set, timeout=10, what="the worker to stop reading")
        held.append(len(worker.ledger.pending) + len(worker.ledger._inflight))
        release.set()

    holder = threading.Thread(target=measure_then_release)
    holder.start()
    assert run_worker(worker, mosquitto.port, messages) == 0
    holder.join()

    size = len(messages[0][1])
    assert held[0] <= 2_000 // size + 1, "at most the byte budget (plus the message crossing it) in memory"
    assert values_of("probe-b", "soil_moisture") == list(range(60))


def test_a_hook_thread_that_is_behind_drops_outcomes_instead_of_blocking_ingest(caplog):
    stuck = threading.Event()

    def hook(outcome: BatchOutcome) -> None:
        stuck.wait(10)

    def submit_ten() -> None:
        for _ in range(10):
            hooks.submit(BatchOutcome())

    register_batch_notifier(hook)
    stats = IngestStats()
    hooks = HookThread(backlog=2, stats=stats)
    hooks.start()
    try:
        submitter = threading.Thread(target=submit_ten, daemon=True)
        submitter.start()
        submitter.join(timeout=5)
        assert not submitter.is_alive(), "submit never waits for the hooks"
        assert 5 <= stats.hooks_dropped <= 8  # one running (with what it gathered), two queued
        assert [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()] == [
            "the batch notifiers are behind; dropped a batch's live update (1 so far): browsers refetch"
        ]  # warned once per interval
    finally:
        stuck.set()
        hooks.stop(timeout=5)
        unregister_batch_notifier(hook)


def test_stopping_the_hook_thread_gives_up_on_a_stuck_hook_after_its_timeout():
    entered, stuck = threading.Event(), threading.Event()

    def hook(outcome: BatchOutcome) -> None:
        entered.set()
        stuck.wait(30)

    register_batch_notifier(hook)
    hooks = HookThread(backlog=1)
    hooks.start()
    try:
        hooks.submit(BatchOutcome())
        entered.wait(5)
        hooks.submit(BatchOutcome())  # the queue is full behind the stuck hook
        started = time.monotonic()
        hooks.stop(timeout=0.5)
        assert time.monotonic() - started < 5
    finally:
        stuck.set()
        unregister_batch_notifier(hook)


def test_acks_of_the_previous_connection_are_dropped_as_soon_as_it_reconnects(mosquitto, make_worker):
    worker = make_worker()
    worker.network._connect(worker.client)  # the first connection's socket
    first = worker.network.generation
    worker.ledger.acks.append((first, [1, 2, 3]))  # a batch committed for messages of that connection
    worker.client.socket().close()  # the connection is lost ...

    worker.network._connect(worker.client)  # ... and paho opens a new socket; the CONNACK is not read yet

    worker.network._send_acks(worker.client)
    assert worker.network.generation == first + 1
    assert worker.stats.acks_skipped == 3
    worker.client.disconnect()


def test_the_notifier_thread_merges_the_batches_committed_within_its_interval():
    seen: list[int] = []

    def count(outcome: BatchOutcome) -> None:
        seen.append(len(outcome.groups))

    register_batch_notifier(count)
    hooks = HookThread(backlog=10, min_interval=0.5)
    hooks.start()
    device = DeviceSensors(1, 1, {"t": 1})
    one = BatchOutcome(groups=[(device, [(1, "t", 1.0)])])
    try:
        hooks.submit(one)  # after a quiet spell: at once
        wait_until(lambda: seen == [1], timeout=5, what="the first update")
        for _ in range(3):
            hooks.submit(one)  # within the interval: held back and merged
        time.sleep(0.1)
        assert seen == [1]
        wait_until(lambda: seen == [1, 3], timeout=5, what="the merged update")
    finally:
        hooks.stop(timeout=5)
        unregister_batch_notifier(count)


def test_the_notifier_queue_is_bounded_by_readings_not_only_by_batches():
    stuck = threading.Event()
    entered = threading.Event()

    def hook(outcome: BatchOutcome) -> None:
        entered.set()
        stuck.wait(10)

    register_batch_notifier(hook)
    stats = IngestStats()
    hooks = HookThread(backlog=100, max_rows=10, stats=stats)
    hooks.start()
    device = DeviceSensors(1, 1, {"t": 1})
    small = BatchOutcome(groups=[(device, [(n, "t", 1.0) for n in range(4)])])
    try:
        hooks.submit(small)
        entered.wait(5)  # the notifier holds the first batch
        for _ in range(5):
            hooks.submit(small)  # 4 readings each: two fit under 10, the rest are dropped
        assert stats.hooks_dropped == 3
    finally:
        stuck.set()
        hooks.stop(timeout=5)
        unregister_batch_notifier(hook)
