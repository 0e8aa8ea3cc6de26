"""/healthz: what it checks, how it fails, and what it leaves alone."""

from __future__ import annotations

import socket
import sys
import types
from collections.abc import Iterator

import pytest
from django.db import connections
from django.test import Client, override_settings
from django.urls import reverse

from farm import health
from farm.health import HealthCheck, run_checks


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


@pytest.fixture
def ingest_report(monkeypatch):
    """Stand in for sensors.ingest.stats with a chosen ingest_health()."""

    def install(func):
        module = types.ModuleType("sensors.ingest.stats")
        module.ingest_health = func  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "sensors.ingest.stats", module)

    return install


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
    assert channel_layer["backend"] == "RedisChannelLayer"
    for check in (database, channel_layer):
        assert isinstance(check["ms"], float)
        assert check["ms"] >= 0


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
            "BACKEND": "channels_redis.core.RedisChannelLayer",
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


# --- The ingest section --------------------------------------------------------


@pytest.mark.django_db
def test_healthz_shows_the_ingest_workers_figures(ingest_report):
    figures = {"received": 1200, "stored": 1180, "dead_letters": 3, "unknown": 17, "lag_s": 0.4, "age_s": 2.0}
    ingest_report(lambda: figures)

    response = get_healthz()

    assert response.status_code == 200
    ingest = response.json()["checks"]["ingest"]
    assert ingest["ok"] is True
    assert {key: ingest[key] for key in figures} == figures


@pytest.mark.django_db
@override_settings(INGEST_STATS_INTERVAL=5.0)
def test_healthz_is_503_when_the_ingest_report_is_stale(ingest_report):
    ingest_report(lambda: {"received": 10, "age_s": 61.0})

    response = get_healthz()

    assert response.status_code == 503
    ingest = response.json()["checks"]["ingest"]
    assert ingest["ok"] is False
    assert "61.0 s old (stale after 60 s)" in ingest["error"]


@pytest.mark.django_db
@override_settings(INGEST_STATS_INTERVAL=20.0)
def test_ingest_staleness_scales_with_the_report_interval(ingest_report):
    ingest_report(lambda: {"age_s": 100.0})
    assert get_healthz().status_code == 200
    ingest_report(lambda: {"age_s": 121.0})
    assert get_healthz().status_code == 503


@pytest.mark.django_db
def test_healthz_honours_a_stale_flag_from_the_ingest_report(ingest_report):
    ingest_report(lambda: {"stale": True, "age_s": None})
    assert get_healthz().status_code == 503


@pytest.mark.django_db
def test_no_ingest_report_yet_is_informational(ingest_report):
    ingest_report(lambda: {"reporting": False})

    response = get_healthz()

    assert response.status_code == 200
    ingest = response.json()["checks"]["ingest"]
    assert (ingest["ok"], ingest["reporting"]) == (True, False)


@pytest.mark.django_db
def test_an_unreadable_ingest_report_is_informational(ingest_report):
    def broken():
        raise ConnectionError("redis went away")

    ingest_report(broken)

    response = get_healthz()

    assert response.status_code == 200
    ingest = response.json()["checks"]["ingest"]
    assert ingest["reporting"] is False
    assert ingest["detail"] == "ConnectionError: redis went away"


@pytest.mark.django_db
def test_missing_ingest_module_is_informational(monkeypatch):
    monkeypatch.setitem(sys.modules, "sensors.ingest.stats", None)  # makes the import fail

    response = get_healthz()

    assert response.status_code == 200
    assert response.json()["checks"]["ingest"]["reporting"] is False


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
