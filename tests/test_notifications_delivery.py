"""Notifications reach real receivers (SMTP, a signed webhook, Apprise json://) once, retried, or marked failed."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from farm.models import Role
from notifications.handler import TOPIC, notification_payload
from notifications.models import ChannelKind, Delivery, DeliveryState, Severity
from notifications.selectors import delivery_log, recipient_ids
from notifications.sending import channel_test, delivery_send
from notifications.services import notifications_plan
from notifications.signing import SIGNATURE_HEADER, webhook_signature, webhook_verify
from notifications.tasks import deliver
from outbox.services import OutboxItem, outbox_drain, outbox_enqueue_many
from tests.factories import MembershipFactory
from tests.notify_fixtures import a_channel, a_member, an_event

pytestmark = pytest.mark.django_db


def test_an_alert_email_reaches_a_real_smtp_server_with_a_text_and_an_html_part(
    smtp_receiver, eager, django_capture_on_commit_callbacks
):
    m = a_member()
    a_channel(m.user, ChannelKind.EMAIL, "grower@example.com")
    with django_capture_on_commit_callbacks(execute=True), override_settings(SITE_URL="https://furrow.example"):
        [delivery] = notifications_plan(event=an_event(m.farm), recipients=[m.user])
    [message] = smtp_receiver.messages
    assert message["To"] == "grower@example.com"
    assert message["Subject"] == "Soil too dry: probe 1"
    assert message["X-Furrow-Delivery"] == delivery.key
    parts = {part.get_content_type(): part.get_payload(decode=True).decode() for part in message.walk()
             if not part.is_multipart()}  # fmt: skip
    assert f"Farm: {m.farm.name}" in parts["text/plain"]
    assert f"https://furrow.example/farms/{m.farm.slug}/alerts/1/" in parts["text/plain"]
    assert "open valve 3" in parts["text/html"]
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.SENT


def test_a_signed_webhook_reaches_a_real_http_server_and_its_signature_verifies(
    http_receiver, eager, django_capture_on_commit_callbacks
):
    m = a_member()
    channel = a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url())
    with django_capture_on_commit_callbacks(execute=True):
        notifications_plan(event=an_event(m.farm, severity=Severity.CRITICAL), recipients=[m.user])
    [request] = http_receiver.requests
    header = request.headers[SIGNATURE_HEADER]
    assert webhook_verify(secret=channel.secret, header=header, body=request.body, now=int(time.time()))
    assert not webhook_verify(secret="another secret", header=header, body=request.body, now=int(time.time()))
    assert not webhook_verify(secret=channel.secret, header=header, body=request.body + b" ", now=int(time.time()))
    # A replay ten minutes later is refused: the signed timestamp cannot be changed without the secret.
    assert not webhook_verify(secret=channel.secret, header=header, body=request.body, now=int(time.time()) + 600)
    body = json.loads(request.body)
    assert body["severity"] == "critical"
    assert body["transition"] == "fired"
    assert body["farm"] == {"id": m.farm.pk, "slug": m.farm.slug, "name": m.farm.name}
    assert body["id"] == request.headers["Furrow-Delivery"]
    assert abs(body["timestamp"] - time.time()) < 30


def test_the_signature_is_hmac_sha256_over_the_timestamp_and_body():
    assert webhook_signature(secret="s", timestamp=1700000000, body=b"{}") == (
        "t=1700000000,v1=" + __import__("hmac").new(b"s", b"1700000000.{}", "sha256").hexdigest()
    )


def test_an_apprise_json_url_reaches_a_real_http_server(http_receiver, eager, django_capture_on_commit_callbacks):
    m = a_member()
    a_channel(m.user, ChannelKind.APPRISE, f"json://127.0.0.1:{http_receiver.port}/apprise")
    with django_capture_on_commit_callbacks(execute=True):
        [delivery] = notifications_plan(event=an_event(m.farm), recipients=[m.user])
    [request] = http_receiver.requests
    assert request.path == "/apprise"
    body = json.loads(request.body)
    assert body["title"] == "Soil too dry: probe 1"
    assert "Value: 17 %" in body["message"]
    assert Delivery.objects.get(pk=delivery.pk).state == DeliveryState.SENT


def test_a_delivery_task_run_twice_sends_once(http_receiver):
    m = a_member()
    a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url())
    [delivery] = notifications_plan(event=an_event(m.farm), recipients=[m.user])
    assert deliver.apply(args=(delivery.pk,)).get() is True
    assert deliver.apply(args=(delivery.pk,)).get() is False
    assert len(http_receiver.requests) == 1


def test_an_event_planned_twice_creates_one_delivery_per_channel(http_receiver):
    m = a_member()
    a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url())
    a_channel(m.user, ChannelKind.EMAIL, "grower@example.com")
    assert len(notifications_plan(event=an_event(m.farm), recipients=[m.user])) == 2
    assert notifications_plan(event=an_event(m.farm), recipients=[m.user]) == []
    assert Delivery.objects.count() == 2


def test_a_failing_channel_is_retried_with_backoff_then_marked_failed_with_the_reason(http_receiver):
    m = a_member()
    a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url())
    http_receiver.statuses = [503] * 10
    [delivery] = notifications_plan(event=an_event(m.farm), recipients=[m.user])
    delays = []
    with (
        override_settings(NOTIFY_MAX_ATTEMPTS=4, NOTIFY_RETRY_SECONDS=10),
        time_machine.travel(timezone.now(), tick=False) as clock,
    ):
        for _ in range(4):
            outcome = delivery_send(delivery_id=delivery.pk)
            delays.append(outcome.retry_in)
            assert delivery_send(delivery_id=delivery.pk).error == ""  # not due again before its backoff
            clock.shift(timedelta(hours=1))
    assert delays == [10, 20, 40, None]
    assert len(http_receiver.requests) == 4
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.FAILED
    assert delivery.attempts == 4
    assert delivery.last_error.startswith("HTTP 503")
    assert "refused by the test receiver" in delivery.last_error


def test_a_channel_that_recovers_is_sent_on_the_next_try(http_receiver):
    m = a_member()
    a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url())
    http_receiver.statuses = [500]
    [delivery] = notifications_plan(event=an_event(m.farm), recipients=[m.user])
    with time_machine.travel(timezone.now(), tick=False) as clock:
        assert delivery_send(delivery_id=delivery.pk).retry_in is not None
        clock.shift(timedelta(minutes=5))
        assert delivery_send(delivery_id=delivery.pk).sent
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_error) == (DeliveryState.SENT, 2, "")


def test_only_current_members_and_channels_that_take_the_severity_are_told():
    m = a_member()
    outsider = a_member()
    a_channel(m.user, ChannelKind.EMAIL, "warn@example.com", min_severity=Severity.WARNING)
    a_channel(m.user, ChannelKind.EMAIL, "critical@example.com", min_severity=Severity.CRITICAL)
    a_channel(m.user, ChannelKind.EMAIL, "off@example.com", enabled=False)
    a_channel(outsider.user, ChannelKind.EMAIL, "outsider@example.com")
    deliveries = notifications_plan(event=an_event(m.farm), recipients=[m.user, outsider.user])
    assert [d.channel.target for d in deliveries] == ["warn@example.com"]  # type: ignore[union-attr]


def test_a_channel_removed_before_the_send_leaves_its_delivery_suppressed():
    m = a_member()
    channel = a_channel(m.user, ChannelKind.EMAIL, "grower@example.com")
    [delivery] = notifications_plan(event=an_event(m.farm), recipients=[m.user])
    channel.delete()
    assert not delivery_send(delivery_id=delivery.pk).sent
    delivery.refresh_from_db()
    assert (delivery.state, delivery.channel_label) == (DeliveryState.SUPPRESSED, "Email grower@example.com")


def test_alerts_hand_over_through_the_outbox_and_a_second_drain_adds_nothing(http_receiver):
    m = a_member()
    a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url())
    event = an_event(m.farm)
    payload = notification_payload(event=event, recipient_ids=[m.user.pk, m.user.pk])
    with transaction.atomic():
        outbox_enqueue_many(items=[OutboxItem(TOPIC, payload, key=event.key)])
    assert outbox_drain().processed == 1
    # A producer that enqueues the same event again (a redelivered batch) under another outbox key:
    with transaction.atomic():
        outbox_enqueue_many(items=[OutboxItem(TOPIC, payload, key=event.key + ":again")])
    assert outbox_drain().processed == 1
    [delivery] = Delivery.objects.all()
    assert delivery.subject == "Soil too dry: probe 1"
    assert json.loads(json.dumps(payload)) == payload


def test_send_a_test_records_the_real_error_text(http_receiver):
    m = a_member()
    channel = a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url())
    http_receiver.statuses = [401]
    assert channel_test(channel=channel).startswith("HTTP 401")
    assert channel.last_test_ok is False
    assert channel_test(channel=channel) == ""
    channel.refresh_from_db()
    assert (channel.last_test_ok, channel.last_test_error) == (True, "")


def test_the_delivery_log_of_an_alert_says_who_was_told_on_which_channel_and_what_became_of_it(http_receiver):
    m = a_member()
    a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url(), label="Office")
    a_channel(m.user, ChannelKind.EMAIL, "grower@example.com", label="Mail")
    first = notifications_plan(event=an_event(m.farm, 1), recipients=[m.user])
    notifications_plan(event=an_event(m.farm, 2), recipients=[m.user])  # within the storm window: grouped
    for delivery in first:
        delivery_send(delivery_id=delivery.pk)
    log = delivery_log(event_keys=["episode-1:fired", "episode-2:fired"])
    assert [(r.channel_label, r.state, r.grouped) for r in log] == [
        ("Office", "sent", False),
        ("Mail", "sent", False),
        ("Office", "waiting", True),
        ("Mail", "waiting", True),
    ]
    assert all(r.user == m.user for r in log)


def test_an_event_of_a_deleted_farm_is_dropped_without_retries():
    m = a_member()
    payload = notification_payload(event=an_event(m.farm), recipient_ids=[m.user.pk])
    m.farm.delete()
    with transaction.atomic():
        outbox_enqueue_many(items=[OutboxItem(TOPIC, payload, key="gone")])
    assert outbox_drain().processed == 1
    assert not Delivery.objects.exists()


def test_a_rule_tells_managers_and_owners_by_default_and_named_members_too():
    manager = a_member(Role.MANAGER)
    farm = manager.farm
    owner: Any = MembershipFactory(farm=farm, role=Role.OWNER)
    viewer: Any = MembershipFactory(farm=farm, role=Role.VIEWER)
    MembershipFactory(farm=farm, role=Role.VIEWER)
    gone: Any = MembershipFactory(farm=farm, role=Role.MANAGER, user__is_active=False)
    outsider = a_member(Role.OWNER)
    assert recipient_ids(farm=farm) == sorted([manager.user.pk, owner.user.pk])
    assert recipient_ids(farm=farm, roles=[Role.OWNER]) == [owner.user.pk]
    named = recipient_ids(farm=farm, roles=[], user_ids=[viewer.user.pk, outsider.user.pk, gone.user.pk])
    assert named == [viewer.user.pk]
