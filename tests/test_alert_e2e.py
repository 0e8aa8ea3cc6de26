"""Alerts end to end: ``manage.py ingest`` against a real Mosquitto and PostgreSQL.

A breach fires an episode and recovery resolves it; a worker kill -9 in the middle of a
breaching stream, then a restart, leaves exactly one episode per sensor and one ``fired``
outbox row each (states and episodes commit with the readings, docs/architecture.md §1).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.mqtt_fixtures import (
    Broker,
    PublishResult,
    WorkerProcess,
    count_readings,
    e2e_devices,
    private_broker,
    publish,
    reset_e2e,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.slow

DEVICES = [f"alert-e2e-{n}" for n in range(4)]


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[Broker]:
    with private_broker() as broker:
        yield broker


@pytest.fixture
def e2e(e2e_database_url: str) -> str:
    """The e2e database with DEVICES on one farm and a "soil moisture below 20, clears at 23" rule on it."""
    reset_e2e(e2e_database_url)  # the farm's rules, states and episodes go with it (CASCADE)
    e2e_devices(e2e_database_url, DEVICES)
    with psycopg.connect(e2e_database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE outbox_outboxmessage")
        conn.execute(
            "INSERT INTO alerts_alertrule (farm_id, name, metric, scope, kind, threshold, clear, for_seconds, "
            "clear_for_seconds, severity, note, enabled, created_at, updated_at) "
            "SELECT id, 'Soil too dry', 'soil_moisture', 'farm', 'below', 20, 23, 0, 0, 'warning', '', true, "
            "now(), now() FROM farm_farm"
        )
    return e2e_database_url


@pytest.fixture
def make_process(mosquitto: Broker, tmp_path: Path) -> Iterator:
    processes: list[WorkerProcess] = []
    client_id = f"alert-e2e-{uuid.uuid4().hex[:8]}"

    def make(database_url: str, **extra: str) -> WorkerProcess:
        env = worker_env(database_url=database_url, mqtt_url=mosquitto.url, client_id=client_id, **extra)
        process = WorkerProcess(env=env, log=tmp_path / "worker.log")
        processes.append(process)
        return process

    yield make
    for process in processes:
        if process.alive():
            process.kill()


def reading(uid: str, ts: int, value: float) -> tuple[str, bytes]:
    return f"farm/{uid}/telemetry", json.dumps({"ts": ts, "soil_moisture": value}).encode()


def episodes(url: str) -> list[tuple[str, bool, float | None]]:
    """(device uid, still open, worst value) of every episode."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT d.uid, ep.ended_at IS NULL, ep.worst_value FROM alerts_alertepisode ep "
            "JOIN sensors_sensor s ON s.id = ep.sensor_id JOIN sensors_device d ON d.id = s.device_id ORDER BY ep.id"
        ).fetchall()
    return [(uid, is_open, worst) for uid, is_open, worst in rows]


def transition_keys(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT key FROM outbox_outboxmessage WHERE topic = 'alerts.transition' ORDER BY id"
        ).fetchall()
    return [key for (key,) in rows]


def episode_ids(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [i for (i,) in conn.execute("SELECT id FROM alerts_alertepisode ORDER BY id").fetchall()]


def test_a_breach_published_to_mosquitto_fires_and_recovery_resolves(mosquitto, e2e, make_process):
    worker = make_process(e2e)
    worker.start_and_wait()
    now = int(time.time())
    assert len(publish(mosquitto.port, [reading(DEVICES[0], now - 30, 14.0)]).acked) == 1
    wait_until(lambda: episodes(e2e), timeout=30, what="the alert to fire")
    assert episodes(e2e) == [(DEVICES[0], True, 14.0)]
    assert len(publish(mosquitto.port, [reading(DEVICES[0], now - 20, 22.0)]).acked) == 1  # above 20, below 23
    wait_until(lambda: count_readings(e2e) == 2, timeout=30, what="the second reading")
    assert episodes(e2e) == [(DEVICES[0], True, 14.0)]
    assert len(publish(mosquitto.port, [reading(DEVICES[0], now - 10, 25.0)]).acked) == 1
    wait_until(lambda: not episodes(e2e)[0][1], timeout=30, what="the alert to resolve")
    [episode] = episode_ids(e2e)
    assert transition_keys(e2e) == [f"{episode}:fired", f"{episode}:resolved"]
    assert worker.terminate() == 0


def test_a_kill_9_mid_breaching_stream_leaves_exactly_one_episode_per_sensor(mosquitto, e2e, make_process):
    # Small batches, so that many commit before the kill and many are in flight at it.
    worker = make_process(e2e, INGEST_BATCH_SIZE="50")
    worker.start_and_wait()
    count = 4000
    base = int(time.time()) - 2 * 86_400  # one reading a second per device, all below the threshold
    stream = [reading(DEVICES[i % len(DEVICES)], base + i // len(DEVICES), 5.0 + (i % 97) / 10) for i in range(count)]
    holder = PublishResult()

    def run() -> None:
        result = publish(mosquitto.port, stream, pace=1000)
        holder.acked = result.acked

    publisher = threading.Thread(target=run)
    publisher.start()
    wait_until(lambda: count_readings(e2e) >= 400, timeout=60, interval=0.01, what="some batches to commit")
    worker.kill()  # both processes, mid-stream
    stored_at_kill = count_readings(e2e)
    assert stored_at_kill < count, "the worker was killed before the stream was stored"

    restarted = make_process(e2e, INGEST_BATCH_SIZE="50")
    restarted.start_and_wait()
    publisher.join()
    assert len(holder.acked) == count
    wait_until(lambda: count_readings(e2e) >= count, timeout=120, interval=0.2, what="every reading stored")
    assert restarted.terminate() == 0

    assert count_readings(e2e) == count
    found = episodes(e2e)
    assert sorted(uid for uid, _, _ in found) == sorted(DEVICES), "exactly one episode per sensor"
    assert all(is_open and worst == 5.0 for _, is_open, worst in found)
    keys = transition_keys(e2e)
    assert sorted(keys) == sorted(f"{i}:fired" for i in episode_ids(e2e)), "one fired row per episode, no duplicate"
    with psycopg.connect(e2e) as conn:
        states = conn.execute("SELECT state, extract(epoch FROM last_ts)::bigint FROM alerts_alertstate").fetchall()
    last = base + (count - 1) // len(DEVICES)
    assert sorted(states) == [("firing", last)] * len(DEVICES), "every reading was evaluated, the last one last"
