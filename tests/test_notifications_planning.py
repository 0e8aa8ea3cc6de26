"""Who gets what when: quiet hours (across midnight and DST), critical breaking through, the hourly cap, storms."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from farm.models import Role
from notifications.models import ChannelKind, Delivery, DeliveryKind, DeliveryState, NotificationPrefs, Severity
from notifications.planning import SEND_NOW, Plan, Prefs, Recent, plan_delivery
from notifications.quiet import in_quiet_hours, quiet_hours_end
from notifications.sending import deliveries_due, delivery_send
from notifications.services import notifications_plan
from notifications.tasks import deliver
from tests.factories import MembershipFactory
from tests.mqtt_fixtures import wait_until
from tests.notify_fixtures import a_channel, a_member, an_event

LONDON = ZoneInfo("Europe/London")
NIGHT = {"start": time(22, 0), "end": time(6, 30)}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("local", "quiet"),
    [((23, 0), True), ((0, 0), True), ((6, 29), True), ((6, 30), False), ((12, 0), False), ((21, 59), False)],
)
def test_quiet_hours_cross_midnight(local, quiet):
    now = datetime(2026, 1, 15, local[0], local[1], tzinfo=LONDON)
    assert in_quiet_hours(now=now, tz=LONDON, **NIGHT) is quiet


def test_a_daytime_window_does_not_wrap():
    now = datetime(2026, 1, 15, 14, 0, tzinfo=LONDON)
    assert in_quiet_hours(now=now, tz=LONDON, start=time(13), end=time(15))
    assert not in_quiet_hours(now=now, tz=LONDON, start=time(15), end=time(16))


def test_quiet_hours_follow_the_farms_clock_across_the_spring_dst_change():
    # 29 March 2026: London's clocks go from 01:00 GMT to 02:00 BST; 06:30 local is 05:30 UTC.
    assert quiet_hours_end(now=utc(2026, 3, 28, 23, 0), tz=LONDON, **NIGHT) == utc(2026, 3, 29, 5, 30)
    assert not in_quiet_hours(now=utc(2026, 3, 29, 5, 45), tz=LONDON, **NIGHT)  # 06:45 BST


def test_quiet_hours_follow_the_farms_clock_across_the_autumn_dst_change():
    # 25 October 2026: 02:00 BST becomes 01:00 GMT; 06:30 local is 06:30 UTC that morning.
    assert quiet_hours_end(now=utc(2026, 10, 24, 22, 0), tz=LONDON, **NIGHT) == utc(2026, 10, 25, 6, 30)
    assert in_quiet_hours(now=utc(2026, 10, 25, 6, 15), tz=LONDON, **NIGHT)  # 06:15 GMT


def test_quiet_hours_ending_at_a_time_the_spring_change_skips_end_an_hour_later_on_the_clock():
    end = quiet_hours_end(now=utc(2026, 3, 28, 23, 0), tz=LONDON, start=time(22), end=time(1, 30))
    assert end == utc(2026, 3, 29, 1, 30)  # 02:30 BST: 01:30 local does not exist that night
    assert end.astimezone(LONDON).time() == time(2, 30)


def send_due() -> int:
    due = deliveries_due(grace=timedelta(0))
    for delivery_id in due:
        deliver.apply(args=(delivery_id,))
    return len(due)


@pytest.mark.django_db
def test_quiet_hours_hold_a_warning_until_they_end_and_a_critical_breaks_through(http_receiver):
    m = a_member(time_zone="Europe/London")
    NotificationPrefs.objects.create(user=m.user, quiet_start=time(22), quiet_end=time(6, 30))
    a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url(), min_severity=Severity.INFO)
    with time_machine.travel(utc(2026, 7, 1, 2, 0), tick=False) as clock:  # 03:00 BST
        [held] = notifications_plan(event=an_event(m.farm, 1, Severity.WARNING), recipients=[m.user])
        [frost] = notifications_plan(event=an_event(m.farm, 2, Severity.CRITICAL), recipients=[m.user])
        assert held.state == DeliveryState.FOLDED
        assert held.batch.due_at == utc(2026, 7, 1, 5, 30)  # type: ignore[union-attr]
        assert frost.state == DeliveryState.QUEUED
        assert send_due() == 1
        assert [json.loads(r.body)["subject"] for r in http_receiver.requests] == ["Soil too dry: probe 2"]
        clock.move_to(utc(2026, 7, 1, 5, 31))
        assert send_due() == 1
    assert [json.loads(r.body)["subject"] for r in http_receiver.requests][1] == "Soil too dry: probe 1"


@pytest.mark.django_db
def test_a_critical_alert_waits_too_when_the_person_chose_so():
    m = a_member(time_zone="Europe/London")
    NotificationPrefs.objects.create(
        user=m.user, critical_breaks_through=False, quiet_start=time(22), quiet_end=time(7)
    )
    a_channel(m.user, ChannelKind.EMAIL, "grower@example.com")
    with time_machine.travel(utc(2026, 7, 1, 2, 0), tick=False):
        [delivery] = notifications_plan(event=an_event(m.farm, 1, Severity.CRITICAL), recipients=[m.user])
    assert delivery.state == DeliveryState.FOLDED


@pytest.mark.django_db
@override_settings(NOTIFY_GROUP_SECONDS=5)
def test_beyond_the_hourly_cap_events_fold_into_one_summary_and_critical_is_never_capped(http_receiver):
    m = a_member()
    NotificationPrefs.objects.create(user=m.user, hourly_cap=3)
    a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url())
    start = utc(2026, 7, 1, 10, 0)
    with time_machine.travel(start, tick=False) as clock:
        for n in range(1, 7):
            notifications_plan(event=an_event(m.farm, n), recipients=[m.user])
            send_due()
            clock.shift(timedelta(minutes=1))  # beyond the storm window each time
        notifications_plan(event=an_event(m.farm, 7, Severity.CRITICAL), recipients=[m.user])
        send_due()
        assert [json.loads(r.body)["subject"] for r in http_receiver.requests] == [
            "Soil too dry: probe 1", "Soil too dry: probe 2", "Soil too dry: probe 3", "Soil too dry: probe 7",
        ]  # fmt: skip
        clock.move_to(start + timedelta(hours=1))
        assert send_due() == 1
    summary = json.loads(http_receiver.requests[-1].body)
    assert summary["subject"] == f"3 alerts on {m.farm.name}"
    assert [e["subject"] for e in summary["events"]] == [f"Soil too dry: probe {n}" for n in (4, 5, 6)]
    assert Delivery.objects.filter(state=DeliveryState.FOLDED).count() == 3


@pytest.mark.django_db
def test_forty_alerts_of_one_farm_reach_each_recipient_as_two_messages_naming_them(http_receiver):
    manager = a_member()
    owner: Any = MembershipFactory(farm=manager.farm, role=Role.OWNER)
    for member in (manager, owner):
        a_channel(member.user, ChannelKind.WEBHOOK, http_receiver.url(f"/{member.user.username}"))
    with time_machine.travel(utc(2026, 7, 1, 10, 0), tick=True) as clock:
        for n in range(1, 41):
            notifications_plan(event=an_event(manager.farm, n), recipients=[manager.user, owner.user])
        send_due()
        clock.shift(timedelta(seconds=61))
        send_due()
    per_recipient = Counter(r.path for r in http_receiver.requests)
    assert per_recipient == {f"/{manager.user.username}": 2, f"/{owner.user.username}": 2}
    grouped = [json.loads(r.body) for r in http_receiver.requests if json.loads(r.body).get("events")]
    assert len(grouped) == 2
    assert all(g["subject"] == f"39 alerts on {manager.farm.name}" for g in grouped)
    assert "Soil too dry: probe 40" in grouped[0]["lines"][-1]
    assert Delivery.objects.filter(kind=DeliveryKind.BATCH, state=DeliveryState.SENT).count() == 2


@pytest.mark.django_db(transaction=True)
def test_an_event_arriving_while_its_batch_is_being_sent_starts_a_new_batch_and_is_not_lost(http_receiver):
    m = a_member()
    a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url())
    with transaction.atomic():
        notifications_plan(event=an_event(m.farm, 1), recipients=[m.user])
        [grouped] = notifications_plan(event=an_event(m.farm, 2), recipients=[m.user])
    assert grouped.batch is not None
    batch = grouped.batch
    Delivery.objects.filter(pk=batch.pk).update(due_at=timezone.now())
    http_receiver.hold = threading.Event()  # the receiver answers the batch's send only when released

    def send() -> None:
        delivery_send(delivery_id=batch.pk)
        connection.close()

    def plan() -> None:
        notifications_plan(event=an_event(m.farm, 3), recipients=[m.user])
        connection.close()

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: http_receiver.waiting, timeout=10, what="the batch's send in flight")
    planner = threading.Thread(target=plan)
    planner.start()
    planner.join(0.5)
    assert planner.is_alive()  # waits for the batch's row, locked by the send
    http_receiver.hold.set()
    sender.join(10)
    planner.join(10)
    batch.refresh_from_db()
    late = Delivery.objects.get(event_key="episode-3:fired")
    assert batch.state == DeliveryState.SENT
    assert [m["subject"] for m in batch.data.get("events", [batch.data])] == ["Soil too dry: probe 2"]
    assert late.batch is not None
    assert late.batch.pk != batch.pk
    assert late.batch.state == DeliveryState.PENDING


@pytest.mark.django_db
def test_at_night_a_storm_of_critical_alerts_is_two_messages_and_brings_what_quiet_hours_held(http_receiver):
    m = a_member(time_zone="Europe/London")
    NotificationPrefs.objects.create(user=m.user, quiet_start=time(22), quiet_end=time(6, 30))
    a_channel(m.user, ChannelKind.WEBHOOK, http_receiver.url())
    with time_machine.travel(utc(2026, 7, 1, 1, 0), tick=False) as clock:  # 02:00 BST
        notifications_plan(event=an_event(m.farm, 1, Severity.WARNING), recipients=[m.user])
        clock.shift(timedelta(seconds=10))
        for n in range(2, 22):
            notifications_plan(event=an_event(m.farm, n, Severity.CRITICAL), recipients=[m.user])
        send_due()
        assert [json.loads(r.body)["subject"] for r in http_receiver.requests] == ["Soil too dry: probe 2"]
        clock.shift(timedelta(seconds=61))
        send_due()
    assert len(http_receiver.requests) == 2
    grouped = json.loads(http_receiver.requests[1].body)
    assert grouped["subject"] == f"20 alerts on {m.farm.name}"
    assert grouped["severity"] == "critical"
    assert [e["subject"] for e in grouped["events"]][:2] == ["Soil too dry: probe 1", "Soil too dry: probe 3"]


NOW = utc(2026, 7, 1, 12, 0)  # 13:00 in London
WINDOW = timedelta(seconds=60)
QUIET_NOW = Prefs(quiet_start=time(12), quiet_end=time(14))  # 12:00-14:00 London: quiet until 13:00 UTC
CAP_3 = Prefs(hourly_cap=3)
W, C = Severity.WARNING, Severity.CRITICAL
LATER = NOW + timedelta(minutes=30)
SOON = NOW + timedelta(seconds=20)


@pytest.mark.parametrize(
    ("severity", "prefs", "recent", "expected"),
    [
        pytest.param(W, Prefs(), Recent(), SEND_NOW, id="nothing-recent-sends"),
        pytest.param(W, QUIET_NOW, Recent(), Plan(utc(2026, 7, 1, 13)), id="quiet-holds-until-its-end"),
        pytest.param(C, QUIET_NOW, Recent(), SEND_NOW, id="critical-breaks-through"),
        pytest.param(
            C, Prefs(time(12), time(14), critical_breaks_through=False), Recent(), Plan(utc(2026, 7, 1, 13)),
            id="critical-held-when-chosen",
        ),
        pytest.param(W, Prefs(), Recent(pending_batch_due=LATER), Plan(LATER), id="joins-a-collecting-batch"),
        pytest.param(W, CAP_3, Recent(3, NOW - timedelta(minutes=50)), Plan(NOW + timedelta(minutes=10)), id="capped"),
        pytest.param(C, CAP_3, Recent(3, NOW - timedelta(minutes=50)), SEND_NOW, id="critical-never-capped"),
        pytest.param(W, Prefs(hourly_cap=0), Recent(99, NOW), SEND_NOW, id="cap-zero-is-none"),
        pytest.param(W, Prefs(), Recent(1, NOW, NOW - timedelta(seconds=5)), Plan(NOW + WINDOW), id="storm-groups"),
        pytest.param(W, Prefs(), Recent(1, NOW, NOW - timedelta(seconds=61)), SEND_NOW, id="after-the-window-sends"),
        pytest.param(
            C, Prefs(), Recent(1, NOW, NOW - timedelta(seconds=5), LATER), Plan(NOW + WINDOW, pull_forward=True),
            id="critical-storm-pulls-a-held-batch-forward",
        ),
        pytest.param(C, Prefs(), Recent(pending_batch_due=LATER), SEND_NOW, id="critical-skips-a-held-batch"),
        pytest.param(C, Prefs(), Recent(pending_batch_due=SOON), Plan(SOON), id="critical-joins-a-storm-batch"),
    ],
)  # fmt: skip
def test_the_plan_for_one_channel(severity, prefs, recent, expected):
    assert plan_delivery(now=NOW, tz=LONDON, severity=severity, prefs=prefs, recent=recent, window=WINDOW) == expected
