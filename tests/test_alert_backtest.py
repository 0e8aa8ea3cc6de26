"""The rule form's backtest: the unsaved rule replayed over the last week of real readings."""

from __future__ import annotations

import time
from typing import cast

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from farm.models import Membership
from sensors.models import Device
from tests.alert_fixtures import ingest
from tests.factories import DeviceFactory, MembershipFactory

pytestmark = pytest.mark.django_db(transaction=True)  # readings come through the ingest pipeline


def form(**overrides: str) -> dict[str, str | list[str]]:
    data: dict[str, str | list[str]] = {
        "name": "Soil too dry",
        "metric": "soil_moisture",
        "kind": "below",
        "threshold": "20",
        "clear": "23",
        "for_minutes": "0",
        "clear_for_minutes": "0",
        "scope": "farm",
        "severity": "warning",
        "enabled": "on",
        "notify_roles": ["owner", "manager"],  # the form's defaults, checked
        "notify_resolved": "on",
    }
    data.update(overrides)
    return data


@pytest.fixture
def device() -> Device:
    device = cast(Device, DeviceFactory(uid="probe-1"))
    now = int(time.time())
    hour = 3600
    # Hours ago → value. It fires at 12 h ago (15), holds at 10 h (22, in the hysteresis band),
    # resolves at 9 h (25); fires again at 5 h (18) and resolves at 4 h (24).
    values = [30, 15, 12, 22, 25, 30, 18, 24, 30]
    stamps = [14, 12, 11, 10, 9, 6, 5, 4, 1]
    ingest([{"ts": now - h * hour, "soil_moisture": v} for h, v in zip(stamps, values, strict=True)])
    return device


def manager_client(device: Device) -> Client:
    client = Client()
    client.force_login(cast(Membership, MembershipFactory(farm=device.farm, role="manager")).user)
    return client


def test_it_counts_the_firings_and_time_in_alarm_of_the_unsaved_rule(device):
    url = reverse("alerts-rule-backtest", args=[device.farm.slug])
    data = manager_client(device).post(url, form()).json()
    assert (data["sensors"], data["firings"]) == (1, 2)
    assert data["firing_seconds"] == pytest.approx((3 + 1) * 3600)
    assert len(data["chart"]["t"]) == 9
    assert data["levels"]["clear"] == 23.0


def test_a_higher_clear_level_keeps_it_firing_longer(device):
    url = reverse("alerts-rule-backtest", args=[device.farm.slug])
    data = manager_client(device).post(url, form(clear="26")).json()
    # 25 (9 h ago) and 24 (4 h ago) no longer clear: 12 → 6 h ago and 5 → 1 h ago.
    assert (data["firings"], data["firing_seconds"]) == (2, pytest.approx((6 + 4) * 3600))


def test_form_errors_come_back_as_json(device):
    url = reverse("alerts-rule-backtest", args=[device.farm.slug])
    response = manager_client(device).post(url, form(clear="5"))
    assert response.status_code == 400
    assert "clear" in response.json()["errors"]


def test_a_viewer_may_not_run_it(device):
    client = Client()
    client.force_login(cast(User, cast(Membership, MembershipFactory(farm=device.farm, role="viewer")).user))
    assert client.post(reverse("alerts-rule-backtest", args=[device.farm.slug]), form()).status_code == 403
