"""Killed between a batch's commit and its outbox nudge: the outbox row is still processed exactly once.

``manage.py ingest`` runs as in production against a real Mosquitto, with the test-only
app ``tests.outbox_probe``: a batch writer that puts one outbox message per new reading
and, with PROBE_KILL_AFTER_COMMIT=1, kill -9s the worker (and its store process) from an
on-commit callback that runs before the outbox's nudge.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.mqtt_fixtures import (
    ROOT,
    Broker,
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
SETTINGS = "tests.settings_outbox_probe"


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[Broker]:
    with private_broker() as broker:
        yield broker


@pytest.fixture
def e2e(e2e_database_url: str) -> str:
    reset_e2e(e2e_database_url)
    e2e_devices(e2e_database_url, ["crash-1"])
    with psycopg.connect(e2e_database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE outbox_outboxmessage")
        conn.execute("CREATE TABLE IF NOT EXISTS outbox_probe_effects (sensor_id bigint, ts bigint)")
        conn.execute("TRUNCATE outbox_probe_effects")
    return e2e_database_url


def outbox_rows(url: str) -> list[tuple[str, bool]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT key, processed_at IS NOT NULL FROM outbox_outboxmessage ORDER BY id").fetchall()
    return [(key, done) for key, done in rows]


def effects(url: str) -> list[tuple[int, int]]:
    with psycopg.connect(url) as conn:
        return [(s, t) for s, t in conn.execute("SELECT sensor_id, ts FROM outbox_probe_effects").fetchall()]


def drain(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "drain_outbox"], cwd=ROOT, env=env, stdout=subprocess.PIPE
    )


def test_a_worker_killed_after_commit_before_the_nudge_loses_no_outbox_work_and_does_none_twice(
    mosquitto: Broker, e2e: str, tmp_path: Path
):
    client_id = f"crash-{uuid.uuid4().hex[:8]}"
    env = worker_env(database_url=e2e, mqtt_url=mosquitto.url, client_id=client_id, DJANGO_SETTINGS_MODULE=SETTINGS)
    doomed = WorkerProcess(env={**env, "PROBE_KILL_AFTER_COMMIT": "1"}, log=tmp_path / "worker.log")
    doomed.start_and_wait()
    now = int(time.time())
    first = json.dumps({"ts": now - 60, "soil_moisture": 30}).encode()
    publish(mosquitto.port, [("farm/crash-1/telemetry", first)])
    assert doomed.process is not None
    doomed.process.wait(timeout=30)
    assert doomed.process.returncode == -9  # killed after the commit, before the nudge and the ack
    assert count_readings(e2e) == 1
    assert [done for _, done in outbox_rows(e2e)] == [False]  # committed with the reading, never nudged

    # The successor gets the unacknowledged message again: stored already, so no new outbox work.
    successor = WorkerProcess(env=env, log=tmp_path / "worker.log")
    successor.start_and_wait()
    second = json.dumps({"ts": now - 30, "soil_moisture": 31}).encode()
    publish(mosquitto.port, [("farm/crash-1/telemetry", second)])
    wait_until(lambda: len(outbox_rows(e2e)) >= 2, timeout=30, what="the second reading's outbox row")
    assert successor.terminate() == 0
    assert count_readings(e2e) == 2
    assert len(outbox_rows(e2e)) == 2

    # The sweep (two drains racing, as a nudge and the beat sweep would) processes each row once.
    drains = [drain(env), drain(env)]
    for d in drains:
        assert d.wait(timeout=60) == 0
    assert all(done for _, done in outbox_rows(e2e))
    stored = effects(e2e)
    assert len(stored) == 2
    assert len(set(stored)) == 2
