"""At-least-once delivery, end to end: ``manage.py ingest`` as a subprocess, a real Mosquitto,
real PostgreSQL, and kill -9 / SIGTERM / a PostgreSQL restart in the middle of the stream.

The loss check: every message the broker acknowledged to the publisher carries a unique
(uid, ts); after the run, the stored readings must be exactly that set.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.mqtt_fixtures import (
    ROOT,
    Broker,
    PublishResult,
    WorkerProcess,
    count_readings,
    e2e_devices,
    free_port,
    migrate,
    private_broker,
    publish,
    reset_e2e,
    start_private_postgres,
    stored_readings,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[Broker]:
    """A broker of this module's own: these tests kill, restart and count drops on it, so
    nothing the rest of the session left on the shared broker may blur the figures."""
    with private_broker() as broker:
        yield broker


DEVICES = [f"e2e-{n}" for n in range(20)]
BASE_S = int(time.time()) - 3 * 86_400  # unique per message: BASE_S + index


def messages(first: int, count: int) -> list[tuple[str, bytes]]:
    return [
        (f"farm/{DEVICES[i % len(DEVICES)]}/telemetry", json.dumps({"ts": BASE_S + i, "soil_moisture": i}).encode())
        for i in range(first, first + count)
    ]


def expected(indexes: set[int]) -> set[tuple[str, int]]:
    return {(DEVICES[i % len(DEVICES)], BASE_S + i) for i in indexes}


def shifted(indexes: set[int], first: int) -> set[int]:
    """``publish`` numbers the messages of each call from 0."""
    return {first + i for i in indexes}


def loss_report(url: str, acked: set[int]) -> tuple[set[tuple[str, int]], set[tuple[str, int]], int]:
    """(acknowledged but not stored, stored but never acknowledged, duplicate rows)."""
    rows = [(uid, round(ts)) for uid, key, ts in stored_readings(url) if key == "soil_moisture"]
    stored = set(rows)
    want = expected(acked)
    return want - stored, stored - want, len(rows) - len(stored)


def discard_session(port: int, client_id: str) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect("127.0.0.1", port)
    client.loop(0.5)
    client.disconnect()


@pytest.fixture
def e2e(e2e_database_url: str) -> str:
    reset_e2e(e2e_database_url)
    e2e_devices(e2e_database_url, DEVICES)
    return e2e_database_url


@pytest.fixture
def make_process(mosquitto: Broker, tmp_path: Path) -> Iterator:
    processes: list[WorkerProcess] = []
    client_id = f"e2e-{uuid.uuid4().hex[:8]}"

    def make(database_url: str, **extra: str) -> WorkerProcess:
        env = worker_env(database_url=database_url, mqtt_url=mosquitto.url, client_id=client_id, **extra)
        process = WorkerProcess(env=env, log=tmp_path / "worker.log")
        processes.append(process)
        return process

    yield make
    for process in processes:
        if process.alive():
            process.kill()
    discard_session(mosquitto.port, client_id)


def background_publish(
    port: int, batch: list[tuple[str, bytes]], **options: object
) -> tuple[threading.Thread, PublishResult]:
    holder = PublishResult()

    def run() -> None:
        try:
            result = publish(port, batch, **options)  # type: ignore[arg-type]
        except BaseException as exc:
            holder.error = exc
            raise
        holder.acked, holder.seconds = result.acked, result.seconds

    thread = threading.Thread(target=run)
    thread.start()
    return thread, holder


def test_kill_9_with_20000_messages_in_flight_then_restart_stores_each_acknowledged_message_once(
    mosquitto, e2e, make_process
):
    # Batches of 1,000: the first commit is seen while most of the 50,000 are in flight (the
    # store process commits a dozen more batches before the freeze lands: 50,000 keeps the
    # in-flight count well above 20,000).
    worker = make_process(e2e, INGEST_BATCH_SIZE="1000")
    worker.start_and_wait()
    worker.signal_all(signal.SIGSTOP)  # freeze it (both processes) so that the stream piles up in flight
    first = publish(mosquitto.port, messages(0, 50_000), clients=4)
    assert len(first.acked) == 50_000
    later, later_result = background_publish(mosquitto.port, messages(50_000, 10_000), clients=2)
    worker.signal_all(signal.SIGCONT)

    wait_until(lambda: count_readings(e2e) >= 1, timeout=60, interval=0.01, what="the first batch to commit")
    worker.signal_all(signal.SIGSTOP)  # frozen: what it has not committed stays in flight
    worker.kill()  # both processes
    stored_at_kill = count_readings(e2e)
    assert len(first.acked) - stored_at_kill >= 20_000, "at least 20,000 acknowledged messages were in flight"

    restarted = make_process(e2e)
    restarted.start_and_wait()
    later.join()
    assert later_result.error is None
    acked = first.acked | shifted(later_result.acked, 50_000)
    assert len(acked) == 60_000
    wait_until(lambda: count_readings(e2e) >= len(acked), timeout=90, interval=0.2, what="every message stored")
    assert restarted.terminate() == 0

    missing, unexpected, duplicates = loss_report(e2e, acked)
    assert (len(missing), len(unexpected), duplicates) == (0, 0, 0)
    assert mosquitto.dropped() == 0


def test_sigterm_stops_cleanly_and_messages_published_meanwhile_are_stored_after_restart(mosquitto, e2e, make_process):
    worker = make_process(e2e)
    worker.start_and_wait()
    publisher, during = background_publish(mosquitto.port, messages(0, 6_000), pace=3_000)
    wait_until(lambda: count_readings(e2e) >= 1_000, timeout=30, what="the stream to be flowing")
    assert worker.terminate() == 0  # SIGTERM mid-stream: flush, ack, disconnect, exit 0
    assert "stopped cleanly" in worker.log_text()
    publisher.join()
    while_stopped = publish(mosquitto.port, messages(6_000, 2_000))

    restarted = make_process(e2e)
    restarted.start_and_wait()
    assert during.error is None
    acked = during.acked | shifted(while_stopped.acked, 6_000)
    wait_until(lambda: count_readings(e2e) >= len(acked), timeout=60, interval=0.2, what="every message stored")
    assert restarted.terminate() == 0

    assert re.findall(r"\(session (new|resumed)\)", restarted.log_text()) == ["new", "resumed"]
    missing, unexpected, duplicates = loss_report(e2e, acked)
    assert (len(acked), len(missing), len(unexpected), duplicates) == (8_000, 0, 0, 0)


def test_after_a_broker_restart_the_worker_reconnects_and_its_session_resumes(mosquitto, e2e, make_process):
    worker = make_process(e2e)
    worker.start_and_wait()
    before = publish(mosquitto.port, messages(0, 2_000))
    wait_until(lambda: count_readings(e2e) >= 2_000, timeout=30, what="the first messages stored")

    mosquitto.stop()  # SIGTERM: Mosquitto saves its sessions to its persistence file
    mosquitto.start()
    meanwhile = publish(mosquitto.port, messages(2_000, 3_000))  # queued in the worker's session
    acked = before.acked | shifted(meanwhile.acked, 2_000)
    wait_until(lambda: count_readings(e2e) >= len(acked), timeout=60, interval=0.2, what="every message stored")

    assert worker.alive()
    log = worker.log_text()
    assert "disconnected from the MQTT broker" in log
    assert re.findall(r"\(session (new|resumed)\)", log) == ["new", "resumed"]
    assert worker.terminate() == 0
    missing, unexpected, duplicates = loss_report(e2e, acked)
    assert (len(acked), len(missing), len(unexpected), duplicates) == (5_000, 0, 0, 0)


def test_a_postgresql_restart_mid_stream_loses_nothing_and_needs_no_worker_restart(mosquitto, make_process):
    server = start_private_postgres()
    try:
        migrate(server.url)
        e2e_devices(server.url, DEVICES)
        worker = make_process(server.url, INGEST_BATCH_SIZE="1000", INGEST_BATCH_MS="100", INGEST_MAX_PENDING="2000")
        worker.start_and_wait()
        publisher, result = background_publish(mosquitto.port, messages(0, 16_000), pace=2_000)
        wait_until(lambda: count_readings(server.url) >= 2_000, timeout=30, what="the stream to be flowing")

        server.ctl("restart", "-m", "fast")
        wait_until(lambda: count_readings(server.url) >= 6_000, timeout=30, what="ingest to resume")
        server.ctl("stop", "-m", "fast")  # and an outage of a few seconds, the stream still coming
        time.sleep(3)
        server.ctl("start")
        publisher.join()
        assert len(result.acked) == 16_000
        wait_until(lambda: count_readings(server.url) >= 16_000, timeout=90, interval=0.2, what="every message stored")

        assert worker.alive(), "the worker survived without being restarted"
        log = worker.log_text()
        # The restart may fall between two batches (the next one just reconnects); the outage may not.
        assert log.count("PostgreSQL unavailable") == log.count("PostgreSQL is back") >= 1
        held = [int(n) for n in re.findall(r"pending (\d+)", log)]
        assert 1_000 <= max(held) <= 2_000, "the outage backed up into the broker, not into the worker's memory"
        assert worker.terminate() == 0
        missing, unexpected, duplicates = loss_report(server.url, result.acked)
        assert (len(missing), len(unexpected), duplicates) == (0, 0, 0)
    finally:
        server.stop()


def test_sigterm_while_postgresql_is_down_exits_promptly_and_the_broker_keeps_the_messages(
    mosquitto, e2e, make_process
):
    closed = free_port()  # nothing listens there: PostgreSQL is "down" from the start
    down = make_process(f"postgresql://postgres@127.0.0.1:{closed}/furrow", INGEST_BATCH_MS="50")
    down.start_and_wait()
    acked = publish(mosquitto.port, messages(0, 100)).acked
    wait_until(lambda: "PostgreSQL unavailable" in down.log_text(), timeout=30, what="the failed store")

    started = time.monotonic()
    assert down.terminate(timeout=10) == 0  # nothing was acknowledged that was not committed
    assert time.monotonic() - started < 5
    assert "shutdown requested while PostgreSQL is unavailable" in down.log_text()

    restarted = make_process(e2e)  # same client id: the broker redelivers the session's messages
    restarted.start_and_wait()
    wait_until(lambda: count_readings(e2e) >= 100, timeout=30, what="the held messages stored")
    assert restarted.terminate() == 0
    missing, unexpected, duplicates = loss_report(e2e, acked)
    assert (len(acked), len(missing), len(unexpected), duplicates) == (100, 0, 0, 0)


# A subscriber that does what the worker must not: it lets paho acknowledge each message on
# receipt and stores later, in batches of 5,000. Killed with messages in hand, it loses them.
ACK_BEFORE_COMMIT = textwrap.dedent(
    """
    import sys, time
    import django
    django.setup()
    import paho.mqtt.client as mqtt
    from sensors.ingest.pipeline import Ingestor, RawMessage, WorkerConfig

    port, client_id, expected = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id=client_id))
    buffer = []
    received = 0
    def on_message(client, userdata, m):
        global received
        received += 1
        buffer.append(RawMessage(m._topic, m.payload, m.retain, int(time.time() * 1e6)))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("farm/+/telemetry", qos=1)
    client.loop_start()
    print("subscribed", flush=True)
    reported = False
    while True:
        if len(buffer) >= 5000:
            batch, buffer[:] = buffer[:5000], buffer[5000:]
            ingestor.ingest(batch)
        if received == expected and not reported:
            # paho sends each PUBACK before the next packet it writes: once the broker has
            # acknowledged this publish, it has every PUBACK of the messages received.
            client.publish(f"furrow-test/{client_id}/flushed", b"", qos=1).wait_for_publish(10)
            print("acknowledged everything", flush=True)
            reported = True
        time.sleep(0.01)
    """
)


def test_the_loss_check_detects_loss_when_a_subscriber_acks_before_commit(mosquitto, e2e, make_process, tmp_path):
    script = tmp_path / "ack_before_commit.py"
    script.write_text(ACK_BEFORE_COMMIT)
    worker = make_process(e2e)  # for the client id and the environment
    client_id = worker.env["INGEST_CLIENT_ID"]
    log = tmp_path / "naive.log"
    with log.open("wb") as out:
        naive = subprocess.Popen(
            [sys.executable, str(script), str(mosquitto.port), client_id, "12345"],
            cwd=ROOT,
            env={**worker.env, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=out,
        )
    try:
        wait_until(lambda: "subscribed" in log.read_text(), timeout=30, what="the naive subscriber")
        result = publish(mosquitto.port, messages(0, 12_345), clients=2)
        wait_until(lambda: count_readings(e2e) >= 10_000, timeout=60, what="two batches stored")
        # It has acknowledged the remaining 2,345 without storing them.
        wait_until(lambda: "acknowledged everything" in log.read_text(), timeout=60, what="every PUBACK sent")
    finally:
        naive.kill()
        naive.wait()

    # The real worker takes over the session: the broker holds nothing more for it.
    worker.start_and_wait()
    assert worker.terminate() == 0  # SIGTERM stores whatever it received first

    missing, unexpected, duplicates = loss_report(e2e, result.acked)
    assert len(result.acked) == 12_345
    assert len(missing) == 2_345, "the check sees the messages acknowledged before they were stored"
    assert (unexpected, duplicates) == (set(), 0)
