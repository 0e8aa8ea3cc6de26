"""The Notifications page: channels with errors beside fields, a real test send, quiet hours, failures."""

from __future__ import annotations

import re
from datetime import time

import pytest
from django.test import Client
from django.urls import reverse

from farm.models import Role
from notifications.models import ChannelKind, Delivery, DeliveryState, NotificationChannel, NotificationPrefs
from notifications.services import notifications_plan
from tests.factories import MembershipFactory
from tests.mqtt_fixtures import free_port
from tests.notify_fixtures import a_channel, a_member, an_event

pytestmark = pytest.mark.django_db
PAGE = reverse("account-notifications")
ADD = reverse("notification-channel-add")


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def add(client: Client, kind: str, target: str, **more: str):
    data = {"channel-kind": kind, "channel-target": target, "channel-min_severity": "warning", "channel-enabled": "on"}
    return client.post(ADD, data | {f"channel-{k}": v for k, v in more.items()})


@pytest.mark.parametrize(
    ("kind", "target", "error"),
    [
        ("email", "not an address", "Enter an email address"),
        ("webhook", "ftp://example.com/hook", "Enter an http:// or https:// URL."),
        ("apprise", "nosuchservice://token", "Apprise does not recognise this URL"),
    ],
)
def test_a_bad_target_is_an_error_beside_the_field(user, kind, target, error):
    response = add(client_of(user), kind, target)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_channel-target_error"' in html
    assert error in html.split('id="id_channel-target_error"')[1].split("</ul>")[0]
    assert not NotificationChannel.objects.exists()


def test_a_person_adds_an_apprise_channel_and_sees_it_without_its_token(user):
    response = add(client_of(user), "apprise", "tgram://123456789:abcdefg_hijklmnop/1234", label="My phone")
    assert response.status_code == 302
    channel = NotificationChannel.objects.get(user=user)
    page = client_of(user).get(PAGE).content.decode()
    assert "My phone" in page
    assert "tgram://…" in page
    assert "abcdefg_hijklmnop" not in page
    assert channel.secret  # every channel has a signing secret; webhooks use it


def test_send_a_test_shows_what_the_webhook_really_answered(user, http_receiver):
    channel = a_channel(user, ChannelKind.WEBHOOK, http_receiver.url())
    http_receiver.statuses = [401]
    client = client_of(user)
    page = client.post(reverse("notification-channel-test", args=[channel.pk]), follow=True).content.decode()
    assert "The test to" in page
    assert "HTTP 401 Unauthorized: refused by the test receiver" in page
    assert 'data-test-result="failed"' in page
    page = client.post(reverse("notification-channel-test", args=[channel.pk]), follow=True).content.decode()
    assert "Test sent to" in page
    assert 'data-test-result="ok"' in page
    assert len(http_receiver.requests) == 2


def test_send_a_test_shows_apprises_reason_when_nothing_listens(user):
    channel = a_channel(user, ChannelKind.APPRISE, f"json://127.0.0.1:{free_port()}/")
    page = client_of(user).post(reverse("notification-channel-test", args=[channel.pk]), follow=True)
    text = page.content.decode()
    assert "The test to" in text
    assert "failed:" in text
    channel.refresh_from_db()
    assert channel.last_test_ok is False
    assert "connection error" in channel.last_test_error.lower()  # Apprise's own words, from its log


def test_send_a_test_by_email_reaches_a_real_smtp_server(user, smtp_receiver):
    channel = a_channel(user, ChannelKind.EMAIL, "me@example.com")
    client_of(user).post(reverse("notification-channel-test", args=[channel.pk]))
    [message] = smtp_receiver.messages
    assert message["Subject"] == "Furrow test notification"


def test_quiet_hours_need_both_times_and_save_with_the_cap(user):
    client = client_of(user)
    response = client.post(PAGE, {"prefs-quiet_start": "22:00", "prefs-hourly_cap": "5"})
    assert response.status_code == 400
    assert "Set both times, or neither." in response.content.decode().split('id="id_prefs-quiet_end_error"')[1]
    client.post(PAGE, {"prefs-quiet_start": "22:00", "prefs-quiet_end": "06:30", "prefs-hourly_cap": "5"})
    prefs = NotificationPrefs.objects.get(user=user)
    assert (prefs.quiet_start, prefs.quiet_end, prefs.hourly_cap) == (time(22), time(6, 30), 5)
    assert prefs.critical_breaks_through is False  # an unticked box
    assert 'value="22:00"' in client.get(PAGE).content.decode()


def test_a_person_edits_and_removes_only_their_own_channel(user):
    channel = a_channel(user, ChannelKind.EMAIL, "me@example.com")
    client = client_of(user)
    url = reverse("notification-channel-edit", args=[channel.pk])
    data = {"channel-kind": "email", "channel-target": "other@example.com", "channel-min_severity": "critical"}
    assert client.post(url, data).status_code == 302
    channel.refresh_from_db()
    assert (channel.target, channel.min_severity, channel.enabled) == ("other@example.com", "critical", False)
    assert client.post(reverse("notification-channel-delete", args=[channel.pk])).status_code == 302
    assert not NotificationChannel.objects.exists()


def test_failed_deliveries_show_to_the_person_and_to_the_farms_owners_only(http_receiver):
    m = a_member()
    owner = MembershipFactory(farm=m.farm, role=Role.OWNER)
    a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url())
    [delivery] = notifications_plan(event=an_event(m.farm), recipients=[m.user])
    Delivery.objects.filter(pk=delivery.pk).update(state=DeliveryState.FAILED, attempts=6, last_error="HTTP 503 busy")
    mine = client_of(m.user).get(PAGE).content.decode()
    assert f'data-failed="{delivery.pk}"' in mine
    assert "HTTP 503 busy" in mine
    farm_page = reverse("farm-failed-deliveries", args=[m.farm.slug])
    owners = client_of(owner.user).get(farm_page).content.decode()
    assert f'data-failed="{delivery.pk}"' in owners
    assert "Soil too dry: probe 1" in owners
    assert client_of(m.user).get(farm_page).status_code == 403  # a manager
    other = a_member(role=Role.OWNER)
    assert f'data-failed="{delivery.pk}"' not in client_of(other.user).get(PAGE).content.decode()


def test_the_add_form_starts_as_an_email_channel_to_the_account_address(user):
    html = client_of(user).get(PAGE).content.decode()
    [target] = re.findall(r'<input[^>]*id="id_channel-target"[^>]*>', html)
    assert f'value="{user.email}"' in target
    assert '<option value="email" selected>' in html


def test_a_webhooks_edit_page_shows_its_signing_secret_and_how_to_check_it(user):
    channel = a_channel(user, ChannelKind.WEBHOOK, "https://office.example/hook")
    html = client_of(user).get(reverse("notification-channel-edit", args=[channel.pk])).content.decode()
    assert f"<code data-secret>{channel.secret}</code>" in html
    assert "Furrow-Signature" in html
    other = a_channel(user, ChannelKind.EMAIL, "me@example.com")
    assert (
        "data-secret" not in client_of(user).get(reverse("notification-channel-edit", args=[other.pk])).content.decode()
    )
