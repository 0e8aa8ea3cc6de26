"""The worker with its store process (``INGEST_STORE_PROCESS``, the default): a real Mosquitto,
the worker's MQTT side in this process, decoding and storing in a spawned child process.

The child connects to the database on its own, so these tests commit (``transaction=True``).
The subprocess delivery tests (tests/test_ingest_delivery.py) run ``manage.py ingest`` with the
default settings, i.e. with a store process, through kill -9, restarts and outages.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from typing import cast

import paho.mqtt.client as mqtt
import pytest

from dashboard.live import farm_sequence
from sensors.ingest.storeproc import StoreProcess
from sensors.ingest.worker import IngestWorker, WorkerConfig
from sensors.models import DeadLetter, Device, Reading
from tests.factories import DeviceFactory
from tests.mqtt_fixtures import Broker, publish, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

NOW_MS = 1_700_000_000_000  # fixed past timestamps: within the default retention window below
BASE_MS = NOW_MS


@pytest.fixture
def client_ids(mosquitto: Broker) -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    for client_id in created:  # stop the broker queueing for these sessions
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        client.connect("127.0.0.1", mosquitto.port)
        client.loop(0.5)
        client.disconnect()


def make_worker(mosquitto: Broker, client_id: str, **overrides: object) -> IngestWorker:
    options = {
        "url": mosquitto.url,
        "client_id": client_id,
        "batch_ms": 50,
        "stats_interval": 0.2,
        "store_process": True,
        "retention_days": 100_000,
        **overrides,
    }
    return IngestWorker(WorkerConfig.from_settings(**options))


class Running:
    """``worker.run`` on a thread of its own; ``stop()`` returns its exit code."""

    def __init__(self, worker: IngestWorker) -> None:
        self.worker = worker
        self.stop_event = threading.Event()
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_until(lambda: worker.stats.connected or self.code is not None, timeout=60, what="the worker to subscribe")

    def _run(self) -> None:
        self.code = self.worker.run(self.stop_event)

    def stop(self) -> int | None:
        self.stop_event.set()
        self.thread.join(timeout=60)
        return self.code


def telemetry(uid: str, n: int) -> tuple[str, bytes]:
    return f"farm/{uid}/telemetry", json.dumps({"ts": BASE_MS + n, "soil_moisture": n % 50}).encode()


def test_the_store_process_stores_every_message_and_the_worker_acknowledges_them(mosquitto, client_ids):
    device = cast(Device, DeviceFactory(uid="proc-1"))
    client_id = f"test-proc-{uuid.uuid4().hex[:8]}"
    client_ids.append(client_id)
    messages = [telemetry("proc-1", n) for n in range(600)]
    messages.insert(300, ("farm/proc-1/telemetry", b"soil=31"))  # one bad message among them

    running = Running(make_worker(mosquitto, client_id, batch_size=40))  # many batches, pipelined
    publish(mosquitto.port, messages)
    wait_until(lambda: running.worker.stats.messages >= 601, timeout=60, what="601 messages stored")
    worker = running.worker
    assert running.stop() == 0

    assert Reading.objects.filter(sensor__device=device).count() == 600
    assert DeadLetter.objects.get().reason.startswith("The payload is not JSON")
    # The child's figures reach the worker's (the log line, /healthz).
    assert (worker.stats.readings, worker.stats.stored, worker.stats.dead_letters) == (600, 600, 1)
    assert worker.stats.batches >= 601 // 40
    # The after-commit hooks ran in the child: the live fan-out numbered the farm's updates.
    assert farm_sequence(device.farm_id) >= 1
    # Every message was acknowledged: the session holds nothing for a new run but what comes next.
    again = Running(make_worker(mosquitto, client_id))
    publish(mosquitto.port, [telemetry("proc-1", 10_000)])
    wait_until(lambda: again.worker.stats.messages >= 1, timeout=30, what="the next message stored")
    assert again.stop() == 0
    assert again.worker.stats.received == 1


def test_a_killed_store_process_stops_the_worker_and_its_messages_are_redelivered(mosquitto, client_ids):
    device = cast(Device, DeviceFactory(uid="proc-2"))
    client_id = f"test-proc-{uuid.uuid4().hex[:8]}"
    client_ids.append(client_id)
    messages = [telemetry("proc-2", n) for n in range(3000)]

    running = Running(make_worker(mosquitto, client_id, batch_size=100))
    store = running.worker.store
    assert store is not None
    assert store.pid is not None
    publish(mosquitto.port, messages, window=200)  # acked by the broker: these must all be stored
    wait_until(lambda: running.worker.stats.messages >= 100, timeout=30, what="a first batch stored")
    os.kill(store.pid, signal.SIGKILL)
    running.thread.join(timeout=60)
    assert running.code == 1  # exits, so that a supervisor restarts it

    restarted = Running(make_worker(mosquitto, client_id, batch_size=100))
    wait_until(
        lambda: Reading.objects.filter(sensor__device=device).count() == 3000, timeout=60, what="all 3,000 stored"
    )
    assert restarted.stop() == 0
    assert Device.objects.get(pk=device.pk).status == "online"


def test_a_stuck_store_process_does_not_hold_up_shutdown_and_its_messages_are_redelivered(mosquitto, client_ids):
    device = cast(Device, DeviceFactory(uid="proc-3"))
    client_id = f"test-proc-{uuid.uuid4().hex[:8]}"
    client_ids.append(client_id)

    running = Running(make_worker(mosquitto, client_id, batch_size=100, shutdown_timeout=2.0))
    store = running.worker.store
    assert store is not None
    assert store.pid is not None
    publish(mosquitto.port, [telemetry("proc-3", n) for n in range(100)])
    wait_until(lambda: running.worker.stats.messages >= 100, timeout=30, what="a first batch stored")
    os.kill(store.pid, signal.SIGSTOP)  # stuck (as behind a lock that is never released)
    publish(mosquitto.port, [telemetry("proc-3", n) for n in range(100, 1000)])
    wait_until(lambda: running.worker.stats.received >= 1000, timeout=30, what="the rest received")

    assert running.stop() == 0  # SIGTERM's path: gives up on the stuck batches after shutdown_timeout
    assert not running.thread.is_alive()
    assert Reading.objects.filter(sensor__device=device).count() < 1000

    restarted = Running(make_worker(mosquitto, client_id))
    wait_until(
        lambda: Reading.objects.filter(sensor__device=device).count() == 1000, timeout=60, what="all 1,000 stored"
    )
    assert restarted.stop() == 0


def test_the_store_process_exits_when_the_worker_is_gone():
    results: list[object] = []
    store = StoreProcess(
        config={"url": "mqtt://127.0.0.1:1", "client_id": "orphan-test"},
        database_name=None,
        on_result=lambda *args: results.append(args),
        on_stats=lambda delta: None,
    )
    store.start()
    process = store._process
    assert process is not None

    store._to_child.close()  # what the kernel does to the pipe when the worker dies

    assert process.wait(timeout=60) == 0
    assert results == []
