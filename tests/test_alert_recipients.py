"""Who a rule tells: its roles and named members, reminders to the same people, escalation to the owners
once, and no resolve message when the rule says so. Through the real outbox, drain and planning."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from alerts.models import AlertEpisode, AlertRule
from alerts.store import TRANSITION_TOPIC
from alerts.sweep import alerts_sweep
from farm.models import Farm, Role
from notifications.models import ChannelKind, Delivery
from outbox.models import OutboxMessage
from outbox.services import OutboxItem, outbox_drain, outbox_enqueue_many
from sensors.models import Sensor
from tests.alert_fixtures import make_rule
from tests.factories import FarmFactory, MembershipFactory, SensorFactory, UserFactory
from tests.notify_fixtures import a_channel

pytestmark = pytest.mark.django_db


@dataclass
class Team:
    farm: Farm
    sensor: Sensor
    owner: User
    manager: User
    viewer: User
    outsider: User  # an owner of another farm


@pytest.fixture
def team() -> Team:
    farm = cast(Farm, FarmFactory(slug="brookside"))
    people: dict[str, User] = {}
    for role in (Role.OWNER, Role.MANAGER, Role.VIEWER):
        people[role] = cast(User, UserFactory(username=role))
        MembershipFactory(farm=farm, role=role, user=people[role])
    outsider = cast(User, UserFactory(username="outsider"))
    MembershipFactory(role=Role.OWNER, user=outsider)
    for user in (*people.values(), outsider):
        a_channel(user, ChannelKind.EMAIL, f"{user.username}@example.com")
    sensor = cast(Sensor, SensorFactory(device__farm=farm, device__name="North probe"))
    return Team(farm, sensor, people[Role.OWNER], people[Role.MANAGER], people[Role.VIEWER], outsider)


def firing(rule: AlertRule, sensor: Sensor, *, notified_at: datetime | None = None) -> AlertEpisode:
    now = timezone.now()
    return AlertEpisode.objects.create(
        rule=rule,
        sensor=sensor,
        started_at=now - timedelta(minutes=1),
        first_value=12,
        worst_value=12,
        last_value=12,
        notified_at=notified_at or now,
    )


def transition(episode: AlertEpisode, kind: str) -> None:
    """What the writer enqueues for a transition, drained like the beat sweep would."""
    payload: dict[str, Any] = {"transition": kind, "episode": episode.pk, "value": 12.0, "worst": 12.0}
    payload["at"] = timezone.now().isoformat()
    with transaction.atomic():
        outbox_enqueue_many(items=[OutboxItem(TRANSITION_TOPIC, payload, key=f"{episode.pk}:{kind}")])
    outbox_drain()


def told(**filters: Any) -> set[str]:
    return {d.user.username for d in Delivery.objects.filter(**filters).select_related("user")}


def test_by_default_the_farms_managers_and_owners_are_told_and_viewers_are_not(team):
    episode = firing(make_rule(team.farm), team.sensor)
    transition(episode, "fired")
    assert told() == {"owner", "manager"}


def test_a_viewer_named_on_the_rule_is_told_and_a_named_non_member_is_not(team):
    rule = make_rule(team.farm, notify_roles=[Role.MANAGER])
    rule.notify_users.set([team.viewer, team.outsider])  # the outsider cannot be chosen in the app
    transition(firing(rule, team.sensor), "fired")
    assert told() == {"manager", "viewer"}


def test_a_rule_for_owners_only_leaves_the_managers_out(team):
    transition(firing(make_rule(team.farm, notify_roles=[Role.OWNER]), team.sensor), "fired")
    assert told() == {"owner"}


def test_the_resolve_is_told_to_the_same_people_unless_the_rule_turns_it_off(team):
    told_rule = make_rule(team.farm, name="Told", notify_roles=[Role.OWNER])
    quiet_rule = make_rule(team.farm, name="Quiet", notify_roles=[Role.OWNER], notify_resolved=False)
    told_episode, quiet_episode = firing(told_rule, team.sensor), firing(quiet_rule, team.sensor)
    transition(told_episode, "resolved")
    transition(quiet_episode, "resolved")
    assert told(event_key=f"{told_episode.pk}:resolved") == {"owner"}
    assert not Delivery.objects.filter(event_key=f"{quiet_episode.pk}:resolved").exists()
    # The outbox message was handled (not left to retry): turning resolves off is a decision.
    assert OutboxMessage.objects.filter(key=f"{quiet_episode.pk}:resolved", processed_at__isnull=False).exists()


def test_reminders_go_to_the_rules_recipients(team):
    rule = make_rule(team.farm, notify_roles=[Role.OWNER], remind_seconds=600)
    rule.notify_users.set([team.viewer])
    episode = firing(rule, team.sensor)
    AlertEpisode.objects.filter(pk=episode.pk).update(next_reminder_at=timezone.now() + timedelta(seconds=600))
    assert alerts_sweep(now=timezone.now() + timedelta(seconds=601)).reminders == 1
    outbox_drain()
    assert told(transition="reminder") == {"owner", "viewer"}


def test_escalation_tells_the_owners_once_after_the_rules_minutes_unacknowledged(team):
    rule = make_rule(team.farm, notify_roles=[Role.MANAGER], escalate_seconds=1800)
    notified = timezone.now()
    episode = firing(rule, team.sensor, notified_at=notified)
    assert alerts_sweep(now=notified + timedelta(seconds=1799)).escalations == 0
    assert alerts_sweep(now=notified + timedelta(seconds=1800)).escalations == 1
    assert alerts_sweep(now=notified + timedelta(seconds=1801)).escalations == 0
    assert alerts_sweep(now=notified + timedelta(hours=5)).escalations == 0  # once per episode
    assert [m.key for m in OutboxMessage.objects.filter(topic=TRANSITION_TOPIC)] == [f"{episode.pk}:escalation"]
    episode.refresh_from_db()
    assert episode.escalated_at == notified + timedelta(seconds=1800)
    outbox_drain()
    [delivery] = Delivery.objects.filter(transition="escalation")
    assert delivery.user == team.owner  # the owners, not the rule's managers
    assert delivery.event_key == f"{episode.pk}:escalation"
    assert delivery.subject.startswith("[warning] Escalation: Soil too dry")
    assert "nobody has acknowledged this alert" in delivery.body
    assert f"/farms/brookside/alerts/{episode.pk}/" in delivery.body


def test_an_acknowledged_or_resolved_alert_is_not_escalated(team):
    rule = make_rule(team.farm, escalate_seconds=600)
    acknowledged, resolved = (
        firing(rule, team.sensor),
        firing(rule, cast(Sensor, SensorFactory(device__farm=team.farm))),
    )
    AlertEpisode.objects.filter(pk=acknowledged.pk).update(acknowledged_at=timezone.now(), acknowledged_by=team.manager)
    AlertEpisode.objects.filter(pk=resolved.pk).update(ended_at=timezone.now(), end_reason="cleared")
    assert alerts_sweep(now=timezone.now() + timedelta(hours=1)).escalations == 0


def test_a_muted_rule_is_not_escalated_until_its_mute_ends(team):
    later = timezone.now() + timedelta(hours=1)
    rule = make_rule(team.farm, escalate_seconds=600, muted_until=later + timedelta(minutes=5))
    firing(rule, team.sensor)
    assert alerts_sweep(now=later).escalations == 0
    assert alerts_sweep(now=later + timedelta(minutes=6)).escalations == 1


def test_a_rule_inserted_in_sql_tells_managers_and_owners_and_tells_the_resolve(team):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO alerts_alertrule (farm_id, name, metric, scope, kind, threshold, clear, for_seconds,"
            " clear_for_seconds, severity, note, enabled, created_at, updated_at)"
            " VALUES (%s, 'From SQL', 'soil_moisture', 'farm', 'below', 20, 23, 0, 0, 'warning', '', true,"
            " now(), now())"
            " RETURNING id",
            [team.farm.pk],
        )
        [rule_id] = cursor.fetchone() or [None]
    rule = AlertRule.objects.get(pk=rule_id)
    assert (rule.notify_roles, rule.notify_resolved, rule.escalate_seconds) == (["owner", "manager"], True, None)
