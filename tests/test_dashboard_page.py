"""The farm dashboard page: who may open it, what each field, device and metric says, and what it costs."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.contrib.staticfiles import finders
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dashboard.cards import CardState, card_state
from dashboard.formatting import reading_text
from sensors.models import DeviceStatus
from tests.dashboard_fixtures import every, farm_with_sensors, member_of, readings_insert
from tests.factories import DeviceFactory, SensorFactory, UserFactory
from tests.history_fixtures import HUGE_VALUES, NON_FINITE_VALUES, readings_insert_sql, strict_json

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
CARD = re.compile(r'id="sensor-(\d+)" data-state="(\w+)"')
DEVICE = re.compile(r'<li class="device" id="device-(\d+)" data-device-id="\d+" data-state="(\w+)"')
CONFIG = re.compile(r'<script id="dashboard-config" type="application/json">(.*?)</script>', re.DOTALL)

pytestmark = pytest.mark.django_db


def page_url(farm) -> str:
    return reverse("farm-dashboard", args=[farm.slug])


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def card_states(html: str) -> dict[int, str]:
    return {int(pk): state for pk, state in CARD.findall(html)}


def device_states(html: str) -> dict[int, str]:
    return {int(pk): state for pk, state in DEVICE.findall(html)}


def set_latest(sensor, value, seconds_ago):
    """Give ``sensor`` its newest reading: an older one first, so the card must pick the newest."""
    ts = NOW - timedelta(seconds=seconds_ago)
    readings_insert(sensor, [(ts - timedelta(hours=1), 55.0), (ts, value)])


@time_machine.travel(NOW, tick=False)
def test_each_card_shows_its_state():
    setup = farm_with_sensors(devices=5, interval=300)
    fresh, stale, offline, out_of_range, empty = setup.sensors
    set_latest(fresh, 31.2, 60)
    set_latest(stale, 30.0, 300 * 1.5 + 1)
    set_latest(offline, 30.0, 60)
    offline.device.status = DeviceStatus.OFFLINE
    offline.device.save()
    set_latest(out_of_range, 140.0, 60)
    html = client_for(member_of(setup.farm).user).get(page_url(setup.farm)).content.decode()
    assert card_states(html) == {
        fresh.pk: "fresh",
        stale.pk: "stale",
        offline.pk: "offline",
        out_of_range.pk: "out_of_range",
        empty.pk: "no_data",
    }
    assert "31.2" in html
    assert "1 min ago" in html
    assert device_states(html) == {
        fresh.device_id: "ok",
        stale.device_id: "stale",
        offline.device_id: "offline",
        out_of_range.device_id: "out_of_range",
        empty.device_id: "never_seen",
    }


@time_machine.travel(NOW, tick=False)
def test_a_device_is_one_row_with_all_its_metrics_and_a_badge_only_when_not_fine():
    setup = farm_with_sensors(devices=2)
    fine, late = setup.devices
    moisture = setup.sensors[0]
    temperature = SensorFactory.create(device=fine, key="soil_temperature", label="Soil temperature", unit="°C")
    set_latest(moisture, 31.2, 60)
    set_latest(temperature, 12.5, 60)
    set_latest(setup.sensors[1], 20.0, 3600)
    html = client_for(member_of(setup.farm).user).get(page_url(setup.farm)).content.decode()
    row = html[html.index(f'id="device-{fine.pk}"') : html.index(f'id="device-{late.pk}"')]
    assert f'id="sensor-{moisture.pk}"' in row
    assert f'id="sensor-{temperature.pk}"' in row
    assert re.search(r'data-role="badge" hidden>', row), "a fine device shows no state"
    assert "Fresh" not in html
    late_row = html[html.index(f'id="device-{late.pk}"') :]
    assert re.search(r'data-role="badge"><span class="dot"></span><span data-role="state-label">Stale<', late_row)


@time_machine.travel(NOW, tick=False)
def test_a_fields_summary_gives_its_soil_moisture_range_and_the_devices_needing_attention():
    setup = farm_with_sensors(devices=3)
    field = setup.devices[0].field
    assert field is not None
    for device in setup.devices[1:]:
        device.field = field
        device.save()
    for sensor, value, age in zip(setup.sensors, (23.4, 31.0, 27.0), (60, 60, 3600), strict=True):
        set_latest(sensor, value, age)
    html = client_for(member_of(setup.farm).user).get(page_url(setup.farm)).content.decode()
    section = html[html.index(f'id="section-{field.pk}"') :]
    assert re.search(r'data-summary-key="soil_moisture">.*?<b data-role="range">23.4–31.0</b>', section)
    assert 'data-count="1">1 device needs attention<' in section


@time_machine.travel(NOW, tick=False)
def test_cards_are_grouped_by_field_with_unassigned_devices_last():
    setup = farm_with_sensors(devices=1)
    loose = DeviceFactory.create(farm=setup.farm, field=None, name="Loose probe")
    SensorFactory.create(device=loose)
    waiting = DeviceFactory.create(farm=setup.farm, field=None, name="Brand new probe")
    html = client_for(member_of(setup.farm).user).get(page_url(setup.farm)).content.decode()
    field = setup.devices[0].field
    assert field is not None
    assert html.index(f'id="section-{field.pk}"') < html.index('id="section-unassigned"')
    unassigned = html[html.index('id="section-unassigned"') :]
    assert "Loose probe" in unassigned
    assert f'id="device-{waiting.pk}"' in unassigned
    assert "Waiting for its first report" in unassigned
    assert device_states(html)[waiting.pk] == "never_seen"
    start = html.index('id="field-index"')
    index = html[start : html.index("</nav>", start)]
    assert index.index(f'href="#section-{field.pk}"') < index.index('href="#section-unassigned"')


@time_machine.travel(NOW, tick=False)
def test_the_header_counts_devices_by_status():
    setup = farm_with_sensors(devices=3)
    setup.devices[1].status = DeviceStatus.OFFLINE
    setup.devices[1].save()
    setup.devices[2].status = DeviceStatus.UNKNOWN
    setup.devices[2].save()
    response = client_for(member_of(setup.farm).user).get(page_url(setup.farm))
    summary = response.context["summary"]
    assert (summary.online, summary.offline, summary.never_seen) == (1, 1, 1)
    assert 'data-summary="online">1<' in response.content.decode()


@time_machine.travel(NOW, tick=False)
def test_the_sparkline_is_drawn_on_the_server():
    setup = farm_with_sensors(devices=1)
    readings_insert(setup.sensors[0], every(NOW - timedelta(hours=2), timedelta(minutes=5), [10, 20, 15, 30] * 6))
    html = client_for(member_of(setup.farm).user).get(page_url(setup.farm)).content.decode()
    assert re.search(r'class="spark-line" d="M[\d.]+,[\d.]+ L', html)


def test_the_page_costs_the_same_number_of_queries_for_two_devices_or_twenty():
    small = farm_with_sensors(devices=2)
    large = farm_with_sensors(devices=20)
    user = UserFactory.create(is_staff=True)
    client = client_for(user)
    client.get(page_url(small.farm))  # warm the session and content types
    client.get(page_url(large.farm))  # and take the first visit's one write (farm.visits) out of the count
    with CaptureQueriesContext(connection) as few:
        assert client.get(page_url(small.farm)).status_code == 200
    with CaptureQueriesContext(connection) as many:
        assert client.get(page_url(large.farm)).status_code == 200
    assert len(many) == len(few), [q["sql"][:80] for q in many.captured_queries]
    assert len(many) <= 10, [q["sql"][:80] for q in many.captured_queries]


def test_a_viewer_may_open_the_page():
    setup = farm_with_sensors()
    assert client_for(member_of(setup.farm, "viewer").user).get(page_url(setup.farm)).status_code == 200


def test_the_page_is_reachable_by_id_too():
    setup = farm_with_sensors()
    url = reverse("farm-dashboard", args=[str(setup.farm.pk)])
    assert client_for(member_of(setup.farm).user).get(url).status_code == 200


def test_a_member_of_another_farm_gets_404():
    setup = farm_with_sensors()
    stranger = member_of(farm_with_sensors().farm).user
    assert client_for(stranger).get(page_url(setup.farm)).status_code == 404


def test_staff_may_open_any_farm():
    setup = farm_with_sensors()
    assert client_for(UserFactory.create(is_staff=True)).get(page_url(setup.farm)).status_code == 200


def test_anonymous_is_sent_to_log_in():
    setup = farm_with_sensors()
    response = Client().get(page_url(setup.farm))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_page_carries_what_the_live_script_needs():
    setup = farm_with_sensors()
    response = client_for(member_of(setup.farm).user).get(page_url(setup.farm))
    config = response.context["config"]
    assert config["wsPath"] == f"/ws/farms/{setup.farm.pk}/"
    assert config["timeZone"] == "Europe/London"
    html = response.content.decode()
    assert 'id="dashboard-config"' in html
    assert 'data-plotly="/static/vendor/plotly/plotly-basic.min.js"' in html
    assert 'id="live-status" data-state="connecting"' in html


def test_plotly_is_the_vendored_basic_bundle_unmodified():
    """Served from our static files (no CDN), byte for byte what static/vendor/plotly/README.md names."""
    found = finders.find("vendor/plotly/plotly-basic.min.js")
    assert found is not None
    readme = Path(found).with_name("README.md").read_text(encoding="utf-8")
    [pinned] = re.findall(r"sha256 of `plotly-basic.min.js`: ([0-9a-f]{64})", readme)
    assert hashlib.sha256(Path(found).read_bytes()).hexdigest() == pinned


@pytest.mark.parametrize(
    ("status", "value", "age", "expected"),
    [
        (DeviceStatus.ONLINE, 50.0, 449, CardState.FRESH),
        (DeviceStatus.ONLINE, 50.0, 451, CardState.STALE),
        (DeviceStatus.ONLINE, -0.1, 10, CardState.OUT_OF_RANGE),
        (DeviceStatus.ONLINE, 100.1, 9999, CardState.OUT_OF_RANGE),
        (DeviceStatus.OFFLINE, 140.0, 10, CardState.OFFLINE),
        (DeviceStatus.UNKNOWN, None, None, CardState.NO_DATA),
    ],
)
def test_card_state_rules(status, value, age, expected):
    ts = None if age is None else NOW - timedelta(seconds=age)
    state = card_state(
        device_status=status, value=value, ts=ts, interval_seconds=300, min_value=0.0, max_value=100.0, now=NOW
    )
    assert state is expected


@time_machine.travel(NOW, tick=False)
def test_no_stored_value_takes_the_page_down_or_breaks_its_config():
    setup = farm_with_sensors(devices=3)
    huge, broken, timeless = setup.sensors
    readings_insert_sql(huge, every(NOW - timedelta(minutes=10), timedelta(seconds=1), HUGE_VALUES))
    readings_insert_sql(broken, [(NOW - timedelta(minutes=6), 42.0)])
    readings_insert_sql(broken, every(NOW - timedelta(minutes=5), timedelta(seconds=1), NON_FINITE_VALUES))
    # Times Python's datetime cannot hold; the newest one it can is the card's.
    readings_insert_sql(timeless, [(NOW - timedelta(minutes=3), 43.0), ("infinity", 1.0), ("20000-01-01 UTC", 2.0)])
    response = client_for(member_of(setup.farm).user).get(page_url(setup.farm))
    assert response.status_code == 200
    html = response.content.decode()
    [config_text] = CONFIG.findall(html)
    sparks = strict_json(config_text)["sparks"]
    assert sparks[str(broken.pk)] == [[int((NOW - timedelta(minutes=6)).timestamp() * 1000), 42.0]]
    assert all(-1e300 <= mean <= 1.7e308 for _, mean in sparks[str(huge.pk)])
    assert "nan" not in html.lower()
    assert "inf" not in re.sub(r"info|infer", "", html.lower())
    assert card_states(html) == {huge.pk: "out_of_range", broken.pk: "fresh", timeless.pk: "fresh"}


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (156.04, "°", "156"),
        (25.5, "W/m²", "26"),
        (5.62, "°C", "5.6"),
        (1013.2, "hPa", "1,013"),
        (0.084, "dS/m", "0.08"),
    ],
)
def test_a_reading_has_the_decimals_its_unit_and_size_deserve(value, unit, text):
    assert reading_text(value, unit) == text
