"""The admin's view of bad device input: dead-letter categories, skipped fields, devices needing review."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from sensors.ingest.store import METRIC_LIMIT_FIELD
from sensors.models import Device, SkipCategory, SkippedField
from tests.factories import DeadLetterFactory, DeviceFactory, SensorFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


def skipped(device: Device, field: str, category: str = SkipCategory.NOT_NUMERIC, **extra) -> SkippedField:
    now = timezone.now()
    values = {"reason": "text", "example": "'dry'", "first_seen": now - timedelta(hours=1), "last_seen": now} | extra
    return SkippedField.objects.create(device=device, field=field, category=category, **values)


def test_dead_letters_filter_by_category(admin_client):
    DeadLetterFactory.create(topic="farm/a/telemetry", category="time", reason="ts is ahead")
    DeadLetterFactory.create(topic="farm/b/telemetry", category="payload", reason="not JSON")

    response = admin_client.get(reverse("admin:sensors_deadletter_changelist") + "?category__exact=time")

    assert [letter.topic for letter in response.context["cl"].result_list] == ["farm/a/telemetry"]
    assert "Timestamp out of window" in response.content.decode()


def test_a_long_dead_letter_reason_is_shown_whole_and_wrapped(admin_client):
    reason = "The message holds no readings. Skipped: " + "; ".join(f"'k{n}' (text 'x')" for n in range(20))
    DeadLetterFactory.create(reason=reason)

    page = admin_client.get(reverse("admin:sensors_deadletter_changelist")).content.decode()

    assert f'<div class="furrow-wrap">{reason.replace(chr(39), "&#x27;")}</div>' in page
    assert "sensors/admin.css" in page


def test_the_device_page_shows_its_skipped_fields(admin_client):
    device = DeviceFactory.create()
    skipped(device, "note", count=41)

    page = admin_client.get(reverse("admin:sensors_device_change", args=[device.pk])).content.decode()

    assert "Skipped fields of stored messages" in page
    assert "<tr><td>note</td><td>Not a number (text, null, list)</td>" in page
    assert "<td>41</td>" in page


def test_the_skipped_field_list_filters_by_category(admin_client):
    device = DeviceFactory.create()
    skipped(device, "note")
    skipped(device, "rain", SkipCategory.NOT_FINITE, reason="not a finite number", example="NaN")

    response = admin_client.get(reverse("admin:sensors_skippedfield_changelist") + "?category__exact=not_finite")

    assert [row.field for row in response.context["cl"].result_list] == ["rain"]


@pytest.mark.parametrize(("value", "expected"), [("yes", {"over", "flagged"}), ("no", {"fine"})])
def test_devices_needing_review_can_be_filtered(admin_client, value, expected):
    skipped(DeviceFactory.create(name="over"), METRIC_LIMIT_FIELD, SkipCategory.METRIC_LIMIT)
    SensorFactory.create(device__name="flagged", needs_review=True)
    fine = DeviceFactory.create(name="fine")
    skipped(fine, "note")  # a skipped text field alone is not a reason to review the device

    response = admin_client.get(reverse("admin:sensors_device_changelist") + f"?needs_review={value}")

    assert {device.name for device in response.context["cl"].result_list} == expected


def test_marking_devices_reviewed_clears_the_flag(admin_client):
    device = DeviceFactory.create(name="over")
    skipped(device, METRIC_LIMIT_FIELD, SkipCategory.METRIC_LIMIT)
    SensorFactory.create(device=device, key="k1", needs_review=True)

    admin_client.post(
        reverse("admin:sensors_device_changelist"), {"action": "mark_reviewed", "_selected_action": [device.pk]}
    )

    response = admin_client.get(reverse("admin:sensors_device_changelist") + "?needs_review=yes")
    assert list(response.context["cl"].result_list) == []
