"""Alert transitions reach people: breach → outbox → drain → a delivery on the manager's channel."""

from __future__ import annotations

import time
from email.header import decode_header, make_header
from email.message import Message
from typing import cast

import pytest

from farm.models import Farm, Role
from notifications.models import ChannelKind, Delivery, DeliveryState
from outbox.models import OutboxMessage
from outbox.services import outbox_drain
from sensors.models import Device
from tests.alert_fixtures import ingest, make_rule
from tests.factories import DeviceFactory, MembershipFactory
from tests.mqtt_fixtures import wait_until
from tests.notify_fixtures import a_channel

pytestmark = pytest.mark.django_db(transaction=True)


def subject(message: Message) -> str:
    return str(make_header(decode_header(message["Subject"])))


def test_a_firing_alert_is_emailed_to_the_farms_manager_once_with_the_facts(smtp_receiver, eager):
    device = cast(Device, DeviceFactory(uid="probe-1", name="North probe"))
    farm = cast(Farm, device.farm)
    manager = MembershipFactory(farm=farm, role=Role.MANAGER)
    viewer = MembershipFactory(farm=farm, role=Role.VIEWER)
    a_channel(manager.user, ChannelKind.EMAIL, "manager@example.com")
    a_channel(viewer.user, ChannelKind.EMAIL, "viewer@example.com")
    make_rule(farm, name="Soil too dry", threshold=20.0, clear=23.0, note="open valve 3")

    ingest({"ts": int(time.time()) - 30, "soil_moisture": 12})
    assert OutboxMessage.objects.filter(topic="alerts.transition").count() == 1
    outbox_drain()
    outbox_drain()  # a second drain (a nudge and the sweep) changes nothing
    # The commit's nudge may drain on its own thread first (Celery runs eagerly here).
    wait_until(lambda: smtp_receiver.messages, timeout=10, what="the email")
    time.sleep(0.5)

    [message] = smtp_receiver.messages  # managers and owners by default, not viewers
    assert message["To"] == "manager@example.com"
    assert "Soil too dry firing" in subject(message)
    [text] = [p.get_payload(decode=True).decode() for p in message.walk() if p.get_content_type() == "text/plain"]
    assert "North probe" in text
    assert "Value: 12" in text
    assert "Threshold: below 20" in text
    assert "open valve 3" in text
    assert [d.state for d in Delivery.objects.all()] == [DeliveryState.SENT]


def test_a_resolved_alert_is_planned_for_the_same_people(smtp_receiver, eager):
    device = cast(Device, DeviceFactory(uid="probe-1"))
    manager = MembershipFactory(farm=device.farm, role=Role.OWNER)
    a_channel(manager.user, ChannelKind.EMAIL, "owner@example.com")
    make_rule(cast(Farm, device.farm), threshold=20.0, clear=23.0)
    now = int(time.time())
    ingest({"ts": now - 60, "soil_moisture": 12})
    ingest({"ts": now - 30, "soil_moisture": 30})
    outbox_drain()
    wait_until(lambda: smtp_receiver.messages, timeout=10, what="the email")
    wait_until(lambda: Delivery.objects.filter(event_key__endswith=":resolved").exists(), timeout=10, what="the plan")
    [fired] = [subject(m) for m in smtp_receiver.messages]
    assert "firing" in fired
    # Within a minute of the first message the resolve joins the farm's grouped message
    # (storm grouping), sent at the end of the window rather than straight away.
