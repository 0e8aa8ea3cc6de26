"""The in-app inbox: an "In the app" channel's deliveries land in it once, through the outbox; the list
page, opening an item (read, then its alert), "mark all read", and the bell's count in the header."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.db import transaction
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from notifications.forms import ChannelForm
from notifications.handler import TOPIC, notification_payload
from notifications.inbox import in_app_path, inbox_all_read
from notifications.models import APP_TARGET, ChannelKind, Delivery, DeliveryState, InboxItem, NotificationPrefs
from notifications.sending import channel_test, delivery_send
from notifications.services import notifications_plan
from outbox.services import OutboxItem, outbox_drain, outbox_enqueue_many
from tests.notify_fixtures import a_channel, a_member, an_event

pytestmark = pytest.mark.django_db


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _deliver_event(member, n: int = 1) -> InboxItem:
    [delivery] = notifications_plan(event=an_event(member.farm, n), recipients=[member.user])
    assert delivery_send(delivery_id=delivery.pk).sent
    return InboxItem.objects.get(key=delivery.key)


@override_settings(SITE_URL="https://furrow.example.com")
def test_an_alert_reaches_the_inbox_through_the_outbox_once_however_often_it_is_drained_or_sent():
    m = a_member()
    a_channel(m.user, ChannelKind.APP, APP_TARGET)
    event = an_event(m.farm)
    payload = notification_payload(event=event, recipient_ids=[m.user.pk])
    for outbox_key in (event.key, event.key + ":redelivered"):
        with transaction.atomic():
            outbox_enqueue_many(items=[OutboxItem(TOPIC, payload, key=outbox_key)])
        outbox_drain()
    [delivery] = Delivery.objects.all()
    assert delivery_send(delivery_id=delivery.pk).sent
    assert not delivery_send(delivery_id=delivery.pk).sent  # a redelivered task
    [item] = InboxItem.objects.all()
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.SENT
    assert (item.key, item.user, item.farm, item.delivery) == (delivery.key, m.user, m.farm, delivery)
    assert item.subject == "Soil too dry: probe 1"
    assert item.link == f"/farms/{m.farm.slug}/alerts/1/"  # the message's absolute link, as a path here
    assert "Value: 17 % (below 20 % for 30 min)" in item.body
    assert "https://" not in item.body  # the list links to the alert instead
    assert item.read_at is None


def test_an_in_app_delivery_lands_in_the_delivery_log_as_sent():
    m = a_member()
    a_channel(m.user, ChannelKind.APP, APP_TARGET)
    item = _deliver_event(m)
    assert Delivery.objects.get(key=item.key).channel_label == "In the app"


def test_quiet_hours_hold_the_email_but_not_the_bell(smtp_receiver):
    m = a_member(time_zone="Europe/London")
    a_channel(m.user, ChannelKind.APP, APP_TARGET)
    a_channel(m.user, ChannelKind.EMAIL, "grower@example.com")
    NotificationPrefs.objects.create(user=m.user, quiet_start=time(22), quiet_end=time(6))
    with time_machine.travel(datetime(2026, 1, 15, 23, 30, tzinfo=UTC), tick=False):
        deliveries = notifications_plan(event=an_event(m.farm), recipients=[m.user])
        for d in deliveries:
            delivery_send(delivery_id=d.pk)
    by_kind = {d.channel.kind: Delivery.objects.get(pk=d.pk) for d in deliveries}  # type: ignore[union-attr]
    assert by_kind[ChannelKind.APP].state == DeliveryState.SENT
    assert by_kind[ChannelKind.EMAIL].state == DeliveryState.FOLDED  # waits for 06:00 in a batch
    assert InboxItem.objects.filter(user=m.user).count() == 1
    assert smtp_receiver.raw == []


def test_a_storm_reaches_the_inbox_as_one_grouped_item_linking_to_the_farm():
    m = a_member()
    a_channel(m.user, ChannelKind.APP, APP_TARGET)
    first = _deliver_event(m, 1)
    later = [d for n in range(2, 6) for d in notifications_plan(event=an_event(m.farm, n), recipients=[m.user])]
    [batch] = {d.batch for d in later}
    assert batch is not None
    with time_machine.travel(batch.due_at + timedelta(seconds=1)):
        assert delivery_send(delivery_id=batch.pk).sent
    grouped = InboxItem.objects.exclude(pk=first.pk).get()
    assert grouped.subject == f"4 alerts on {m.farm.name}"
    assert grouped.link == reverse("farm-dashboard", args=[m.farm.slug])


def test_send_a_test_on_an_in_app_channel_puts_a_real_item_in_the_inbox():
    m = a_member()
    channel = a_channel(m.user, ChannelKind.APP, APP_TARGET)
    assert channel_test(channel=channel) == ""
    channel.refresh_from_db()
    assert channel.last_test_ok is True
    assert InboxItem.objects.get(user=m.user).subject == "Furrow test notification"


def test_an_in_app_channel_needs_no_target_and_the_others_still_do():
    app = ChannelForm(
        data={"channel-kind": "app", "channel-target": "", "channel-min_severity": "info"}, prefix="channel"
    )
    assert app.is_valid(), app.errors
    assert app.cleaned_data["target"] == APP_TARGET
    email = ChannelForm(
        data={"channel-kind": "email", "channel-target": "", "channel-min_severity": "info"}, prefix="channel"
    )
    assert not email.is_valid()
    assert "target" in email.errors


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("https://furrow.example.com/farms/a/alerts/3/", "/farms/a/alerts/3/"),
        ("https://furrow.example.com/farms/a/?x=1#y", "/farms/a/?x=1#y"),
        ("/farms/a/alerts/", "/farms/a/alerts/"),
        ("https://elsewhere.example.com/farms/a/", ""),
        ("//elsewhere.example.com/x", ""),
        ("javascript:alert(1)", ""),
        ("", ""),
    ],
)
@override_settings(SITE_URL="https://furrow.example.com")
def test_an_items_link_stays_on_this_site(link, expected):
    assert in_app_path(link) == expected


def test_the_list_shows_the_persons_notifications_newest_first_and_nobody_elses():
    m = a_member()
    a_channel(m.user, ChannelKind.APP, APP_TARGET)
    older = _deliver_event(m, 1)
    with time_machine.travel(timezone.now() + timedelta(minutes=5)):
        newer = _deliver_event(m, 2)
    stranger = a_member()
    a_channel(stranger.user, ChannelKind.APP, APP_TARGET)
    _deliver_event(stranger, 3)
    response = _signed_in(m.user).get(reverse("notifications-inbox"))
    assert response.status_code == 200
    assert [i.pk for i in response.context["items"]] == [newer.pk, older.pk]
    html = response.content.decode()
    assert html.index("probe 2") < html.index("probe 1")
    assert "probe 3" not in html
    assert reverse("notifications-inbox-open", args=[newer.pk]) in html
    assert "2 unread" in html


def test_opening_a_notification_marks_it_read_and_goes_to_its_alert():
    m = a_member()
    a_channel(m.user, ChannelKind.APP, APP_TARGET)
    item = _deliver_event(m)
    client = _signed_in(m.user)
    response = client.get(reverse("notifications-inbox-open", args=[item.pk]))
    assert response.status_code == 302
    assert response["Location"] == f"/farms/{m.farm.slug}/alerts/1/"
    item.refresh_from_db()
    assert item.read_at is not None
    first_read = item.read_at
    client.get(reverse("notifications-inbox-open", args=[item.pk]))
    item.refresh_from_db()
    assert item.read_at == first_read  # read once: opening it again changes nothing


def test_someone_elses_notification_cannot_be_opened_or_marked_read():
    m = a_member()
    a_channel(m.user, ChannelKind.APP, APP_TARGET)
    item = _deliver_event(m)
    other = a_member()
    assert _signed_in(other.user).get(reverse("notifications-inbox-open", args=[item.pk])).status_code == 404
    _signed_in(other.user).post(reverse("notifications-inbox-read-all"))
    item.refresh_from_db()
    assert item.read_at is None


def test_mark_all_read_clears_the_count_and_the_bell_in_the_header_shows_it():
    m = a_member()
    a_channel(m.user, ChannelKind.APP, APP_TARGET)
    for n in (1, 2, 3):
        with time_machine.travel(timezone.now() + timedelta(minutes=2 * n)):  # apart: no storm grouping
            _deliver_event(m, n)
    client = _signed_in(m.user)
    header = client.get(reverse("farm-list")).content.decode()
    assert 'aria-label="Notifications, 3 unread"' in header
    assert "data-bell-count>3</span>" in header
    response = client.post(reverse("notifications-inbox-read-all"), follow=True)
    assert "3 notifications marked read." in response.content.decode()
    assert InboxItem.objects.filter(user=m.user, read_at__isnull=True).count() == 0
    header = client.get(reverse("farm-list")).content.decode()
    assert 'aria-label="Notifications, 0 unread"' in header
    assert "data-bell-count hidden>0</span>" in header
    assert inbox_all_read(user=m.user) == 0


def test_the_list_tells_someone_without_an_in_app_channel_how_to_add_one():
    m = a_member()
    html = _signed_in(m.user).get(reverse("notifications-inbox")).content.decode()
    assert "No notifications yet" in html
    assert reverse("account-notifications") in html
    assert "In the app" in html
