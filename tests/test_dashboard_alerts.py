"""The dashboard's alerts, rendered on the server: the header count, metrics in alert, and the chart's rule lines."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from alerts.models import AlertEpisode, Kind, Scope, Severity
from tests.alert_fixtures import make_rule
from tests.dashboard_fixtures import farm_with_sensors, member_of
from tests.factories import FieldFactory, SensorFactory

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = re.compile(r'<script id="dashboard-config" type="application/json">(.*?)</script>', re.DOTALL)
METRIC = re.compile(r'<li class="metric( in-alert)?" id="sensor-(\d+)" data-state="\w+" data-alert="(\w*)"')

pytestmark = pytest.mark.django_db


def client_for(farm) -> Client:
    client = Client()
    client.force_login(member_of(farm).user)
    return client


def page(farm) -> str:
    return client_for(farm).get(reverse("farm-dashboard", args=[farm.slug])).content.decode()


def episode(rule, sensor, *, started: timedelta, ended: timedelta | None = None, acknowledged: bool = False):
    return AlertEpisode.objects.create(
        rule=rule,
        sensor=sensor,
        started_at=NOW - started,
        ended_at=None if ended is None else NOW - ended,
        acknowledged_at=NOW - started + timedelta(minutes=1) if acknowledged else None,
        first_value=12.0,
        worst_value=9.5,
        last_value=11.0,
    )


def page_config(html: str) -> dict:
    found = CONFIG.search(html)
    assert found is not None
    return json.loads(found.group(1))


def metric_alerts(html: str) -> dict[int, tuple[bool, str]]:
    return {int(pk): (bool(ring), severity) for ring, pk, severity in METRIC.findall(html)}


@time_machine.travel(NOW, tick=False)
def test_the_header_counts_firing_and_acknowledged_alerts_and_links_to_the_alerts_page():
    setup = farm_with_sensors(devices=3)
    a, b, c = setup.sensors
    dry = make_rule(setup.farm)
    episode(dry, a, started=timedelta(minutes=30))
    episode(dry, b, started=timedelta(minutes=20), acknowledged=True)
    episode(dry, c, started=timedelta(hours=3), ended=timedelta(hours=2))  # resolved: not counted
    html = page(setup.farm)
    alerts_url = reverse("alerts-page", args=[setup.farm.slug])
    header = re.search(r'<a class="dash-alerts[^"]*" id="alert-count" href="([^"]+)"[^>]*>(.*?)</a>', html, re.DOTALL)
    assert header is not None
    assert header.group(1) == alerts_url
    assert 'class="dash-alerts is-firing"' in html
    assert '<b data-role="alerts-firing">1</b> firing' in header.group(2)
    assert '<b data-role="alerts-acknowledged">1</b> acknowledged' in header.group(2)
    assert 'data-role="alerts-ack-box" hidden' not in header.group(2)
    config = page_config(html)
    assert config["alertsUrl"] == alerts_url
    assert sorted((e["sensor"], e["acknowledged"]) for e in config["alerts"]) == [(a.pk, False), (b.pk, True)]


@time_machine.travel(NOW, tick=False)
def test_a_farm_without_alerts_shows_zero_firing_and_no_acknowledged_count():
    setup = farm_with_sensors(devices=1)
    html = page(setup.farm)
    assert 'class="dash-alerts" id="alert-count"' in html
    assert '<b data-role="alerts-firing">0</b> firing' in html
    assert 'data-role="alerts-ack-box" hidden' in html
    assert metric_alerts(html) == {setup.sensors[0].pk: (False, "")}
    assert page_config(html)["alerts"] == []


@time_machine.travel(NOW, tick=False)
def test_a_metric_in_alert_shows_its_worst_open_alerts_severity():
    setup = farm_with_sensors(devices=3)
    both, warned, calm = setup.sensors
    dry = make_rule(setup.farm)
    parched = make_rule(setup.farm, name="Parched", threshold=10.0, clear=12.0, severity=Severity.CRITICAL)
    episode(dry, both, started=timedelta(minutes=30))
    episode(parched, both, started=timedelta(minutes=10), acknowledged=True)  # acknowledged still shows
    episode(dry, warned, started=timedelta(minutes=5))
    episode(parched, calm, started=timedelta(hours=3), ended=timedelta(hours=1))
    html = page(setup.farm)
    assert metric_alerts(html) == {both.pk: (True, "critical"), warned.pk: (True, "warning"), calm.pk: (False, "")}
    badge = re.search(rf'id="sensor-{both.pk}".*?data-role="alert-badge"([^>]*)>(\w*)<', html, re.DOTALL)
    assert badge is not None
    assert "hidden" not in badge.group(1)
    assert badge.group(2) == "Critical"
    calm_badge = re.search(rf'id="sensor-{calm.pk}".*?data-role="alert-badge"([^>]*)>', html, re.DOTALL)
    assert calm_badge is not None
    assert "hidden" in calm_badge.group(1)


@time_machine.travel(NOW, tick=False)
def test_the_page_has_a_hidden_critical_notice_with_a_link_to_the_alerts_page():
    setup = farm_with_sensors(devices=1)
    html = page(setup.farm)
    notice = re.search(r'class="[^"]*dash-critical" id="critical-banner" role="alert" hidden>(.*?)</div>', html, re.S)
    assert notice is not None
    assert f'href="{reverse("alerts-page", args=[setup.farm.slug])}"' in notice.group(1)
    assert 'data-action="dismiss-critical"' in notice.group(1)


@time_machine.travel(NOW, tick=False)
def test_the_chart_carries_the_rules_watching_its_sensor_and_its_episodes_in_the_window():
    setup = farm_with_sensors(devices=2)
    sensor, other = setup.sensors
    field = FieldFactory.create(farm=setup.farm)
    sensor.device.field = field
    sensor.device.save()
    farm_rule = make_rule(setup.farm, name="Farm dry")
    field_rule = make_rule(
        setup.farm, name="Field band", scope=Scope.FIELD, field=field, kind=Kind.OUTSIDE,
        threshold=15.0, threshold_high=60.0, clear=18.0, clear_high=55.0, severity=Severity.CRITICAL,
    )  # fmt: skip
    make_rule(setup.farm, name="Other sensor", scope=Scope.SENSOR, sensor=other)
    make_rule(setup.farm, name="Other metric", metric="air_temperature", threshold=2.0, clear=3.0)
    make_rule(setup.farm, name="Disabled", enabled=False)
    make_rule(setup.farm, name="Silent", kind=Kind.NO_DATA, threshold=None, clear=None, for_seconds=600)
    SensorFactory.create(device=sensor.device, key="air_temperature", label="Air", unit="°C")
    long_ago = episode(farm_rule, sensor, started=timedelta(hours=9), ended=timedelta(hours=8))
    inside = episode(farm_rule, sensor, started=timedelta(hours=3), ended=timedelta(hours=2))
    open_ = episode(field_rule, sensor, started=timedelta(minutes=40))
    episode(farm_rule, other, started=timedelta(minutes=40))
    url = reverse("farm-sensor-series", args=[setup.farm.slug, sensor.pk])
    body = client_for(setup.farm).get(url, {"range": "6h"}).json()
    rules = {r["name"]: r for r in body["alerts"]["rules"]}
    assert sorted(rules) == ["Farm dry", "Field band"]
    assert rules["Field band"] == {
        "id": field_rule.pk, "name": "Field band", "severity": "critical", "kind": "outside",
        "threshold": 15.0, "threshold_high": 60.0, "clear": 18.0, "clear_high": 55.0,
    }  # fmt: skip
    episodes = {e["episode"]: e for e in body["alerts"]["episodes"]}
    assert long_ago.pk not in episodes
    assert sorted(episodes) == sorted([inside.pk, open_.pk])
    assert episodes[open_.pk]["end"] is None
    assert episodes[open_.pk]["severity"] == "critical"
    assert episodes[inside.pk]["start"] == int((NOW - timedelta(hours=3)).timestamp() * 1000)
    assert episodes[inside.pk]["end"] == int((NOW - timedelta(hours=2)).timestamp() * 1000)
