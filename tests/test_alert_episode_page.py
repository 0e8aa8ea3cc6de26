"""An alert's own page: its facts, acknowledgement and history, and the delivery log (who was told, on
which channel, delivered or failed and why), reached from the alerts page and from every message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from alerts.models import AlertEpisode
from farm.models import Farm, Role
from notifications.alerting import alert_transition_notify
from notifications.models import ChannelKind, Delivery, DeliveryState
from notifications.sending import delivery_send
from sensors.models import Sensor
from tests.alert_fixtures import make_rule
from tests.factories import FarmFactory, FieldFactory, MembershipFactory, SensorFactory, UserFactory
from tests.notify_fixtures import a_channel

pytestmark = pytest.mark.django_db


@dataclass
class Alert:
    farm: Farm
    episode: AlertEpisode
    people: dict[str, User]

    @property
    def url(self) -> str:
        return reverse("alerts-episode", args=[self.farm.slug, self.episode.pk])

    def client(self, role: str) -> Client:
        client = Client()
        client.force_login(self.people[role])
        return client


@pytest.fixture
def alert() -> Alert:
    farm = cast(Farm, FarmFactory(slug="brookside", name="Brookside"))
    field = FieldFactory(farm=farm, name="North Paddock")
    sensor = cast(Sensor, SensorFactory(device__farm=farm, device__field=field, device__name="North probe"))
    people = {}
    for role in (Role.OWNER, Role.MANAGER, Role.VIEWER):
        people[str(role)] = cast(User, UserFactory(username=f"{role}-ann"))
        MembershipFactory(farm=farm, role=role, user=people[str(role)])
    rule = make_rule(farm, name="Soil too dry", note="open valve 3")
    started = timezone.now() - timedelta(minutes=40)
    values = {"first_value": 18, "worst_value": 12.5, "last_value": 14}
    episode = AlertEpisode.objects.create(rule=rule, sensor=sensor, started_at=started, notified_at=started, **values)
    return Alert(farm, episode, people)


def tell(alert: Alert, transition: str = "fired") -> list[Delivery]:
    payload = {"transition": transition, "episode": alert.episode.pk, "value": 18.0, "worst": 18.0}
    alert_transition_notify({**payload, "at": alert.episode.started_at.isoformat()})
    return list(Delivery.objects.filter(event_key=f"{alert.episode.pk}:{transition}").order_by("pk"))


def test_the_page_shows_the_alerts_facts_to_a_viewer_without_the_acknowledge_form(alert):
    page = alert.client("viewer").get(alert.url)
    assert page.status_code == 200
    html = page.content.decode()
    for fact in ("North probe · Soil moisture", "North Paddock", "Soil too dry", "open valve 3", "Firing"):
        assert fact in html
    facts = html.split('class="episode-facts"')[1].split("</dl>")[0]
    assert "<dd>18 %</dd>" in facts
    assert "<dd>12.5 %</dd>" in facts
    assert "<dd>14 %</dd>" in facts
    assert "40\xa0minutes so far" in facts
    assert "Not yet" in facts  # acknowledged
    assert "alerts-acknowledge" not in html
    assert "episode-ack" not in html


def test_the_delivery_log_shows_who_was_told_on_which_channel_delivered_or_failed_with_the_reason(
    alert, smtp_receiver, http_receiver
):
    a_channel(alert.people["manager"], ChannelKind.EMAIL, "manager@example.com", label="Farm office mail")
    a_channel(alert.people["owner"], ChannelKind.WEBHOOK, http_receiver.url(), label="Owner's hook")
    http_receiver.statuses = [503]
    mail, hook = tell(alert)
    with override_settings(NOTIFY_MAX_ATTEMPTS=1):
        delivery_send(delivery_id=mail.pk)
        delivery_send(delivery_id=hook.pk)
    assert [d.state for d in Delivery.objects.order_by("pk")] == [DeliveryState.SENT, DeliveryState.FAILED]
    assert len(smtp_receiver.messages) == 1

    html = alert.client("viewer").get(alert.url).content.decode()
    log = html.split('data-role="delivery-log"')[1].split("</table>")[0]
    sent, failed = log.split('<tr data-delivery="')[1:]
    assert sent.startswith("sent")
    assert "manager-ann" in sent
    assert "Farm office mail" in sent
    assert "Delivered" in sent
    assert "Fired" in sent
    assert failed.startswith("failed")
    assert "owner-ann" in failed
    assert "Owner&#x27;s hook" in failed
    assert "Failed" in failed
    assert "HTTP 503" in failed
    failures = reverse("farm-failed-deliveries", args=[alert.farm.slug])
    assert failures not in html  # a viewer cannot open the farm's failures
    owner_page = alert.client("owner").get(alert.url).content.decode()
    assert failures in owner_page  # the owners reach every undelivered message of the farm
    assert reverse("account-notifications") in owner_page  # and theirs failed: check the channel


def test_every_message_links_to_the_alerts_page_by_an_absolute_url(alert):
    a_channel(alert.people["manager"], ChannelKind.EMAIL, "manager@example.com")
    [delivery] = tell(alert)
    link = settings.SITE_URL.rstrip("/") + alert.url
    assert delivery.data["link"] == link
    assert link in delivery.body


def test_a_manager_acknowledges_from_the_page_and_sees_who_when_and_the_comment_in_its_history(alert):
    client = alert.client("manager")
    assert "episode-ack" in client.get(alert.url).content.decode()
    ack = reverse("alerts-acknowledge", args=[alert.farm.slug, alert.episode.pk])
    response = client.post(ack, {"comment": "valve opened", "back": "episode"})
    assert response.status_code == 302
    assert response["Location"] == alert.url
    html = client.get(alert.url).content.decode()
    acknowledged = html.split('data-role="acknowledged"')[1].split("</dd>")[0]
    assert "manager-ann" in acknowledged
    assert "valve opened" in acknowledged
    history = html.split('data-role="audit"')[1].split("</ul>")[0]
    assert "Acknowledged by manager-ann" in history
    assert "valve opened" in history
    assert "episode-ack" not in html


def test_another_farms_alert_is_not_found_under_this_farm(alert):
    other = cast(Farm, FarmFactory())
    MembershipFactory(farm=other, role=Role.OWNER, user=alert.people["owner"])
    other_episode = AlertEpisode.objects.create(
        rule=make_rule(other), sensor=cast(Sensor, SensorFactory(device__farm=other)), started_at=timezone.now()
    )
    client = alert.client("owner")
    assert client.get(reverse("alerts-episode", args=[alert.farm.slug, other_episode.pk])).status_code == 404
    assert client.get(reverse("alerts-episode", args=[other.slug, other_episode.pk])).status_code == 200


def test_the_alerts_page_links_each_alert_to_its_page(alert):
    html = alert.client("viewer").get(reverse("alerts-page", args=[alert.farm.slug])).content.decode()
    assert f'href="{alert.url}"' in html
