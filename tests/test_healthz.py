"""/healthz: what it checks, how it fails, and what it leaves alone."""

from __future__ import annotations

import socket
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import time_machine
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections
from django.test import Client, override_settings
from django.urls import reverse

from farm import health
from farm.health import HealthCheck, run_checks
from sensors.ingest.stats import IngestStats, StatsReporter


@pytest.fixture(autouse=True)
def private_cache(settings):
    """A cache namespace of our own: figures left by other tests' ingest workers must not leak in."""
    settings.CACHES = {
        name: {**config, "KEY_PREFIX": f"healthz-test-{uuid.uuid4().hex}"} for name, config in settings.CACHES.items()
    }


@pytest.fixture
def closed_port() -> int:
    """A local TCP port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unreachable_database(db, closed_port) -> Iterator[None]:
    """Swap this thread's default connection for one that points at a closed port."""
    real = connections["default"]
    broken = type(real)({**real.settings_dict, "HOST": "127.0.0.1", "PORT": closed_port}, "default")
    connections["default"] = broken
    try:
        yield
    finally:
        connections["default"] = real
        broken.close()


def get_healthz(client: Client | None = None):
    return (client or Client()).get(reverse("healthz"))


def test_healthz_is_at_the_path_the_ssl_redirect_exempts():
    assert reverse("healthz") == "/healthz"


@pytest.mark.django_db
def test_healthz_reports_ok_with_each_check_timed():
    response = get_healthz()

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    database, channel_layer = body["checks"]["database"], body["checks"]["channel_layer"]
    assert database["ok"] is True
    assert channel_layer["ok"] is True
    assert channel_layer["backend"] == "RedisPubSubChannelLayer"
    for check in (database, channel_layer):
        assert isinstance(check["ms"], float)
        assert check["ms"] >= 0


async def test_the_channel_layer_check_leaves_no_subscription_behind():
    """The ping's channel is let go: a web process answering probes for months must not pile them up."""
    check = HealthCheck("channel_layer", health.check_channel_layer)
    for _ in range(3):
        healthy, results = await run_checks([check])
        assert healthy, results
    here = get_channel_layer()._get_layer()  # the pub/sub layer of this event loop
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        assert await sync_to_async(client.pubsub_channels)(f"{here.prefix}healthz.*") == []
    finally:
        client.close()
    assert [name for name in here.channels if "healthz." in name] == []


@pytest.mark.django_db
def test_healthz_needs_no_login_and_touches_no_session_or_cache():
    response = get_healthz()

    assert response.status_code == 200
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
@override_settings(SECURE_SSL_REDIRECT=True)
def test_healthz_answers_plain_http_while_pages_redirect_to_https():
    client = Client()
    assert client.get(reverse("farm-list")).status_code == 301
    assert get_healthz(client).status_code == 200


@pytest.mark.django_db
def test_healthz_refuses_writes():
    assert Client().post(reverse("healthz")).status_code == 405


def test_healthz_is_503_when_the_database_is_unreachable(unreachable_database):
    response = get_healthz()

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    database = body["checks"]["database"]
    assert database["ok"] is False
    assert "OperationalError" in database["error"]
    assert str(connections["default"].settings_dict["PORT"]) in database["error"]
    assert body["checks"]["channel_layer"]["ok"] is True


@pytest.mark.django_db
def test_healthz_is_503_when_the_channel_layer_is_unreachable(closed_port):
    layers = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{closed_port}/0"]},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        response = get_healthz()

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    channel_layer = body["checks"]["channel_layer"]
    assert channel_layer["ok"] is False
    assert str(closed_port) in channel_layer["error"]
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_healthz_is_503_without_a_channel_layer():
    with override_settings(CHANNEL_LAYERS={}):
        response = get_healthz()

    assert response.status_code == 503
    assert response.json()["checks"]["channel_layer"]["error"] == "HealthCheckError: no channel layer is configured"


# --- The ingest section (real figures through the cache, as the ingest worker writes them) ---


@pytest.fixture
def ingest_worker(db) -> Iterator[StatsReporter]:
    """An ingest worker's reporter that has published once, removed again afterwards."""
    stats = IngestStats(received=1200, connected=True)
    stats.add_batch(
        messages=1190, readings=2380, stored=2370, statuses=4, dead_letters=3, unknown=7, new_sensors=0, flush_ms=12.5
    )
    reporter = StatsReporter(client_id="healthz-test-worker", interval=5.0, stats=stats)
    reporter.report(now=time.monotonic(), pending=10, lag_s=0.4)
    yield reporter
    reporter.retire()


def test_healthz_shows_the_ingest_workers_figures(ingest_worker):
    response = get_healthz()

    assert response.status_code == 200
    ingest = response.json()["checks"]["ingest"]
    assert ingest["ok"] is True
    assert ingest["status"] == "ok"
    figures = ingest["workers"]["healthz-test-worker"]
    assert (figures["received"], figures["stored"], figures["dead_letters"], figures["unknown"]) == (1200, 2370, 3, 7)
    assert (figures["last_batch_size"], figures["last_flush_ms"], figures["lag_s"]) == (1190, 12.5, 0.4)
    assert figures["stale"] is False
    assert figures["age_s"] < 5


def test_healthz_is_503_when_an_ingest_workers_report_goes_stale(ingest_worker):
    with time_machine.travel(time.time() + 30):
        response = get_healthz()

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    ingest = body["checks"]["ingest"]
    assert ingest["ok"] is False
    assert ingest["error"].startswith("HealthCheckError: stale ingest report: healthz-test-worker (30")
    assert ingest["workers"]["healthz-test-worker"]["received"] == 1200  # the figures are still shown
    assert body["checks"]["database"]["ok"] is True


def test_a_cleanly_stopped_ingest_worker_is_not_a_failure(ingest_worker):
    ingest_worker.retire()

    response = get_healthz()

    assert response.status_code == 200
    assert "healthz-test-worker" not in response.json()["checks"]["ingest"]["workers"]


@pytest.mark.django_db
def test_no_ingest_report_yet_is_informational():
    response = get_healthz()

    assert response.status_code == 200
    ingest = response.json()["checks"]["ingest"]
    assert ingest["ok"] is True
    assert "no ingest worker has reported" in ingest["problems"]


@pytest.mark.django_db
def test_an_unreadable_ingest_report_is_informational(monkeypatch):
    def broken():
        raise ConnectionError("redis went away")

    monkeypatch.setattr("sensors.ingest.stats.ingest_health", broken)

    response = get_healthz()

    assert response.status_code == 200
    assert response.json()["checks"]["ingest"]["detail"] == "ConnectionError: redis went away"


@pytest.mark.django_db
def test_a_web_process_without_the_ingest_module_is_healthy(monkeypatch):
    monkeypatch.setitem(sys.modules, "sensors.ingest.stats", None)  # makes the import fail

    response = get_healthz()

    assert response.status_code == 200
    assert response.json()["checks"]["ingest"]["status"] == "unknown"


# --- The check runner ----------------------------------------------------------


async def test_an_optional_failing_check_is_reported_but_keeps_status_ok():
    def flaky() -> dict:
        raise RuntimeError("disk 97% full")

    async def fine() -> dict:
        return {"note": "all good"}

    healthy, results = await run_checks([HealthCheck("disk", flaky, required=False), HealthCheck("extra", fine)])

    assert healthy is True
    assert results["disk"]["ok"] is False
    assert results["disk"]["error"] == "RuntimeError: disk 97% full"
    assert results["extra"] == {"ok": True, "note": "all good", "ms": results["extra"]["ms"]}


async def test_a_required_failing_check_makes_it_unhealthy():
    def down() -> dict:
        raise health.HealthCheckError("mail relay refused the connection")

    healthy, results = await run_checks([HealthCheck("mail", down)])

    assert healthy is False
    assert results["mail"]["error"] == "HealthCheckError: mail relay refused the connection"


def test_register_check_adds_and_replaces_by_name(monkeypatch):
    monkeypatch.setattr(health, "_checks", list(health.registered_checks()))

    def first() -> dict:
        return {}

    def second() -> dict:
        return {}

    health.register_check("disk", first, required=False)
    health.register_check("disk", second)

    disks = [c for c in health.registered_checks() if c.name == "disk"]
    assert disks == [HealthCheck("disk", second, True)]
    assert [c.name for c in health.registered_checks()][:3] == ["database", "channel_layer", "ingest"]
