"""The broker watch: a real Mosquitto with a tiny queue drops readings, and Furrow says so.

The drops are real: a subscriber with a persistent session that is offline (or an ingest
worker that is restarting) and a QoS 1 burst over ``max_queued_messages``; every publish is
still acknowledged. Brokers without the counter (amqtt) or whose ACL hides ``$SYS`` are
"unknown", never a failure.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from sensors.ingest.brokerdrops import DROP_WINDOW_SECONDS, drops_verdict
from sensors.ingest.brokerwatch import RECORD_KEY, BrokerWatch, drops_observed
from sensors.ingest.stats import STATS_KEY, BrokerDrops, IngestStats, StatsReporter
from tests.mqtt_fixtures import (
    AmqttBroker,
    Broker,
    WorkerProcess,
    broker_config,
    free_port,
    publish,
    require_mosquitto,
    wait_until,
    worker_env,
)
from tests.test_broker_config import PASSWORDS, secured_broker  # noqa: F401 - a fixture

QUEUE_LIMIT = 10
BURST = 50


@pytest.fixture
def tiny_broker() -> Iterator[Broker]:
    """docker/mosquitto.conf as the suite runs it, but with Mosquitto's queue cut to 10 messages."""
    require_mosquitto()
    workdir = Path(tempfile.mkdtemp(prefix="furrow-mosquitto-tiny-"))
    workdir.chmod(0o755)
    (workdir / "data").mkdir()
    port = free_port()
    config = broker_config(port=port, data_dir=workdir / "data")
    assert "max_queued_messages 1000000" in config
    broker = Broker(
        port=port, workdir=workdir, config=config.replace("max_queued_messages 1000000", "max_queued_messages 10")
    )
    broker.start()
    yield broker
    broker.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def client_id() -> Iterator[str]:
    """A fresh ingest client id; its figures are removed afterwards."""
    name = f"bw-{uuid.uuid4().hex[:10]}"
    yield name
    StatsReporter(client_id=name, interval=1.0, stats=IngestStats()).retire()


@contextlib.contextmanager
def watching(url: str, client_id: str, **options: float) -> Iterator[IngestStats]:
    stats = IngestStats(connected=True)
    watch = BrokerWatch(url=url, client_id=client_id, stats=stats, **options)  # type: ignore[arg-type]
    watch.start()
    try:
        yield stats
    finally:
        watch.stop()
        cache.delete(watch.record_key)
    assert not watch.is_alive()


def offline_subscriber(port: int, topic: str) -> None:
    """A persistent QoS 1 session that then goes away: the broker queues for it, up to its limit."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"slow-{uuid.uuid4().hex[:8]}", clean_session=False
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe(topic, qos=1)
    time.sleep(0.3)
    client.disconnect()
    client.loop_stop()


def report(client_id: str, stats: IngestStats) -> None:
    StatsReporter(client_id=client_id, interval=5.0, stats=stats).report(now=time.monotonic(), pending=0, lag_s=0.0)


def healthz() -> dict:
    response = Client().get(reverse("healthz"))
    assert response.status_code == 200, response.content  # broker_drops is not required: never a 503
    return response.json()


def dropped_in_errors(caplog: pytest.LogCaptureFixture) -> list[int]:
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name == "sensors.ingest"]
    assert all("max_queued_messages" in message for message in errors)
    return [int(re.search(r"dropped (\d+) messages", message)[1]) for message in errors]  # type: ignore[index]


# --- against real brokers ------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_logs_each_rise_once_and_fails_healthz_naming_max_queued_messages(tiny_broker, client_id, caplog):
    topic = f"farm/{client_id}/telemetry"
    with watching(tiny_broker.url, client_id) as stats:
        wait_until(lambda: stats.broker.dropped == 0, timeout=15, what="the counter at 0")
        report(client_id, stats)
        assert healthz()["checks"]["broker_drops"]["status"] == "ok"

        offline_subscriber(tiny_broker.port, topic)
        published = publish(tiny_broker.port, [(topic, b'{"soil_moisture": 1}')] * BURST)
        assert len(published.acked) == BURST  # every publish acknowledged, 40 of them then dropped
        wait_until(lambda: stats.broker.since_start >= BURST - QUEUE_LIMIT, timeout=15, what="the rise")
        time.sleep(1.5)  # another $SYS interval: an unchanged counter must not be logged again

    assert stats.broker.since_start == BURST - QUEUE_LIMIT == tiny_broker.dropped()
    assert sum(dropped_in_errors(caplog)) == BURST - QUEUE_LIMIT
    report(client_id, stats)
    body = healthz()
    check = body["checks"]["broker_drops"]
    assert check["ok"] is False
    assert check["status"] == "dropping"
    assert "max_queued_messages" in check["error"]
    assert f"dropped {BURST - QUEUE_LIMIT} messages" in check["error"]
    assert check["workers"][client_id]["since_start"] == BURST - QUEUE_LIMIT
    assert body["warnings"] == ["broker_drops"]


@pytest.mark.django_db
def test_a_worker_restarted_under_a_burst_reports_what_the_broker_dropped_meanwhile(
    tiny_broker, client_id, e2e_database_url, tmp_path
):
    """The issue's case: the worker is down, its persistent session's queue overflows."""
    worker = WorkerProcess(
        env=worker_env(database_url=e2e_database_url, mqtt_url=tiny_broker.url, client_id=client_id),
        log=tmp_path / "worker.log",
    )
    worker.start_and_wait()
    broker_figures = lambda: (cache.get(STATS_KEY.format(client_id)) or {}).get("broker", {})  # noqa: E731
    wait_until(lambda: broker_figures().get("dropped") == 0, timeout=20, what="the worker's watch to see 0")
    assert worker.terminate() == 0
    before = tiny_broker.dropped()

    published = publish(tiny_broker.port, [(f"farm/{client_id}/telemetry", b'{"soil_moisture": 1}')] * BURST)
    assert len(published.acked) == BURST
    # Mosquitto updates $SYS every few seconds: restart once it shows the drops, so the new
    # worker's first look already sees them (the "while not watching" case, not a live rise).
    wait_until(lambda: tiny_broker.dropped() >= before + BURST - QUEUE_LIMIT, timeout=40, what="$SYS to count them")
    worker.start_and_wait()
    try:
        wait_until(lambda: broker_figures().get("since_start") == BURST - QUEUE_LIMIT, timeout=20, what="the rise")
        check = healthz()["checks"]["broker_drops"]
    finally:
        assert worker.terminate() == 0
        cache.delete(RECORD_KEY.format(client_id=client_id, host="127.0.0.1", port=tiny_broker.port))

    assert check["ok"] is False
    assert "max_queued_messages" in check["error"]
    assert check["workers"][client_id]["at_start"] == 0
    log = worker.log_text()
    assert f"dropped {BURST - QUEUE_LIMIT} messages" in log
    assert "while this worker was not watching" in log
    assert log.count("ERROR sensors.ingest: the MQTT broker dropped") == 1


@pytest.mark.django_db
def test_a_broker_without_the_counter_is_unknown_not_a_failure(client_id, tmp_path, caplog):
    broker = AmqttBroker(workdir=tmp_path)  # the embedded broker of `make run`
    broker.start()
    try:
        with watching(f"mqtt://127.0.0.1:{broker.port}", client_id, unknown_after=2.0) as stats:
            wait_until(lambda: "no such counter" in stats.broker.detail, timeout=15, what="giving up on the counter")
    finally:
        broker.stop()

    assert stats.broker.dropped is None
    assert stats.broker.watching
    report(client_id, stats)
    body = healthz()
    check = body["checks"]["broker_drops"]
    assert check["ok"] is True
    assert check["status"] == "unknown"
    assert "no such counter" in check["workers"][client_id]["message"]
    assert "warnings" not in body
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.django_db
def test_an_acl_that_denies_sys_makes_it_unknown_and_the_shipped_acl_lets_the_worker_read_it(
    secured_broker,  # noqa: F811 - the fixture imported above
    client_id,
):
    device_url = f"mqtt://dev-a:{PASSWORDS['dev-a']}@127.0.0.1:{secured_broker.port}"
    worker_url = f"mqtt://furrow-ingest:{PASSWORDS['furrow-ingest']}@127.0.0.1:{secured_broker.port}"
    with watching(device_url, client_id, unknown_after=2.0) as denied:
        wait_until(lambda: denied.broker.detail.startswith("the broker published no"), timeout=15, what="unknown")
    with watching(worker_url, f"{client_id}-w", unknown_after=30.0) as allowed:
        wait_until(lambda: allowed.broker.dropped is not None and allowed.broker.broker, timeout=15, what="$SYS")

    assert denied.broker.dropped is None
    assert "ACL" in denied.broker.detail
    assert drops_verdict({"watching": True, **_as_dict(denied.broker)}, now=time.time()).status == "unknown"
    assert allowed.broker.dropped == 0
    assert "mosquitto" in allowed.broker.broker.lower()


def test_an_unreachable_broker_is_unknown_and_says_why(client_id):
    with watching(f"mqtt://127.0.0.1:{free_port()}", client_id, unknown_after=0.5, retry_seconds=0.2) as stats:
        wait_until(lambda: stats.broker.detail.startswith("cannot reach the broker"), timeout=10, what="the reason")
        time.sleep(1)  # past unknown_after: never subscribed, so it must not claim the broker has no counter

    assert stats.broker.detail.startswith("cannot reach the broker")
    assert drops_verdict(_as_dict(stats.broker), now=time.time()).status == "unknown"


@pytest.mark.django_db
def test_the_admin_index_names_the_setting_when_the_broker_dropped_readings(staff_user, client_id):
    client = Client()
    client.force_login(staff_user)
    assert b'id="broker-drops"' not in client.get(reverse("admin:index")).content

    stats = IngestStats(connected=True)
    stats.broker = BrokerDrops(
        watching=True, dropped=40, at_start=0, since_start=40, last_rise=40, last_rise_at=time.time()
    )
    report(client_id, stats)
    page = client.get(reverse("admin:index")).content.decode()

    notice = page[page.index('id="broker-drops"') :]
    assert 'class="error"' in notice[:200]
    assert f"Ingest worker {client_id}: the MQTT broker dropped 40 messages" in notice
    assert "max_queued_messages" in notice


# --- the counter's arithmetic and its verdict ------------------------------------------------------


def test_a_counter_already_non_zero_when_first_seen_is_not_a_rise():
    figures, rise = drops_observed(BrokerDrops(watching=True), 7, now=100.0)

    assert (rise, figures.at_start, figures.since_start, figures.last_rise_at) == (0, 7, 0, None)
    assert drops_verdict(_as_dict(figures), now=100.0).status == "dropped_before_start"


def test_a_rise_over_the_previous_runs_record_counts_as_dropped_while_down():
    figures, rise = drops_observed(BrokerDrops(watching=True, dropped=5), 45, now=100.0)

    assert (rise, figures.at_start, figures.since_start, figures.last_rise_at) == (40, 5, 40, 100.0)


def test_a_lower_value_means_the_broker_restarted_and_counts_from_zero():
    figures, _ = drops_observed(BrokerDrops(watching=True), 30, now=100.0)
    figures, rise = drops_observed(figures, 4, now=200.0)

    assert (rise, figures.dropped, figures.since_start) == (4, 4, 4)


def test_a_rise_fails_for_the_whole_run_and_a_previous_runs_rise_only_for_the_window():
    this_run = BrokerDrops(watching=True, dropped=40, at_start=0, since_start=40, last_rise=40, last_rise_at=0.0)
    previous_run = BrokerDrops(watching=True, dropped=40, at_start=40, last_rise=40, last_rise_at=0.0)

    assert drops_verdict(_as_dict(this_run), now=10 * DROP_WINDOW_SECONDS).failing
    assert drops_verdict(_as_dict(previous_run), now=DROP_WINDOW_SECONDS - 1).failing
    assert drops_verdict(_as_dict(previous_run), now=DROP_WINDOW_SECONDS + 1).status == "dropped_before_start"
    assert drops_verdict(_as_dict(BrokerDrops()), now=0.0).status == "off"


def _as_dict(figures: BrokerDrops) -> dict:
    return {name: getattr(figures, name) for name in BrokerDrops.__dataclass_fields__}
