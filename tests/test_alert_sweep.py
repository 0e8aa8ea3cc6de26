"""The time-driven alert sweep (alerts/sweep.py): pending → firing, no data, device offline, reminders, unmute."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.evaluate import State, tick
from alerts.index import entry_of
from alerts.models import AlertEpisode, AlertRule, AlertState, Kind
from alerts.store import Episode, Notice, outbox_item, states_load, to_us
from alerts.sweep import alerts_sweep
from outbox.models import OutboxMessage
from sensors.models import Device, DeviceStatus, Sensor
from tests.alert_fixtures import ingest, make_rule
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db(transaction=True)


def outbox_keys() -> list[str]:
    return [m.key or "" for m in OutboxMessage.objects.order_by("id")]


def test_a_pending_breach_fires_when_its_wait_elapses_without_new_readings():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    make_rule(device.farm, for_seconds=600)
    started = int(time.time()) - 5
    ingest({"ts": started, "soil_moisture": 10})
    assert AlertState.objects.get().state == "pending"
    assert alerts_sweep(now=datetime.fromtimestamp(started + 599, UTC)).changed == 0
    assert alerts_sweep(now=datetime.fromtimestamp(started + 600, UTC)).changed == 1
    state = AlertState.objects.get()
    assert state.state == "firing"
    assert state.episode is not None
    assert state.episode.worst_value == 10.0
    assert outbox_keys() == [f"{state.episode_id}:fired"]


def test_no_data_fires_for_a_silent_sensor_and_the_next_reading_resolves_it():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    now = int(time.time())
    ingest({"ts": now - 3600, "soil_moisture": 30})
    make_rule(device.farm, name="Quiet probe", kind=Kind.NO_DATA, threshold=None, clear=None, for_seconds=1800)
    result = alerts_sweep()
    assert (result.created, result.changed) == (1, 1)
    assert AlertState.objects.get().state == "firing"
    ingest({"ts": now - 1, "soil_moisture": 31})
    episode = AlertEpisode.objects.get()
    assert episode.ended_at is not None
    assert [k.split(":")[1] for k in outbox_keys()] == ["fired", "resolved"]


def test_no_data_leaves_a_sensor_that_reports_alone():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    ingest({"soil_moisture": 30})
    make_rule(device.farm, name="Quiet probe", kind=Kind.NO_DATA, threshold=None, clear=None, for_seconds=1800)
    assert alerts_sweep().changed == 0
    assert AlertState.objects.get().state == "ok"


def test_a_device_offline_rule_made_while_the_device_is_offline_fires_on_the_sweep():
    device = cast(Device, DeviceFactory(uid="probe-1", status=DeviceStatus.OFFLINE, last_seen=timezone.now()))
    Sensor.objects.create(device=device, key="battery", label="Battery")
    make_rule(device.farm, name="Offline", metric="battery", kind=Kind.DEVICE_OFFLINE, threshold=None, clear=None)
    alerts_sweep()
    assert AlertState.objects.get().state == "firing"
    Device.objects.filter(pk=device.pk).update(status=DeviceStatus.ONLINE)
    alerts_sweep()
    assert AlertState.objects.get().state == "ok"
    assert AlertEpisode.objects.get().end_reason == "cleared"


def test_reminders_repeat_until_acknowledged():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    make_rule(device.farm, remind_seconds=600)
    ingest({"ts": int(time.time()) - 5, "soil_moisture": 10})
    episode = AlertEpisode.objects.get()
    later = timezone.now() + timedelta(seconds=601)
    assert alerts_sweep(now=later).reminders == 1
    assert alerts_sweep(now=later).reminders == 0  # next one is due 10 minutes after this one
    assert alerts_sweep(now=later + timedelta(seconds=600)).reminders == 1
    AlertEpisode.objects.filter(pk=episode.pk).update(acknowledged_at=timezone.now())
    assert alerts_sweep(now=later + timedelta(seconds=1800)).reminders == 0
    assert outbox_keys() == [f"{episode.pk}:fired", f"{episode.pk}:reminder:1", f"{episode.pk}:reminder:2"]


def test_an_episode_that_began_while_muted_is_announced_once_the_mute_ends():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    rule = make_rule(device.farm, muted_until=timezone.now() + timedelta(minutes=5))
    ingest({"ts": int(time.time()) - 5, "soil_moisture": 10})
    assert alerts_sweep().unmuted == 0
    AlertRule.objects.filter(pk=rule.pk).update(muted_until=timezone.now() - timedelta(seconds=1))
    assert alerts_sweep().unmuted == 1
    assert alerts_sweep().unmuted == 0
    assert outbox_keys() == [f"{AlertEpisode.objects.get().pk}:fired"]


def test_the_sweep_is_a_fixed_number_of_statements_whatever_the_number_of_states():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    for n in range(5):
        make_rule(device.farm, name=f"Dry {n}", for_seconds=600)
    ingest({"ts": int(time.time()) - 5, "soil_moisture": 10})
    alerts_sweep()  # loads the rule index
    with CaptureQueriesContext(connection) as queries:
        assert alerts_sweep(now=timezone.now() + timedelta(seconds=700)).changed == 5
    # fingerprint, materialize, fire (states and episodes), outbox, due, reminders, unmuted,
    # escalations;
    # then, after the commit, the live push's one count of the farms' open alerts
    statements = [q["sql"] for q in queries if q["sql"] not in ("BEGIN", "COMMIT")]
    assert len(statements) == 9, [sql[:60] for sql in statements]


def test_an_alert_fired_by_ingest_is_escalated_once_when_still_unacknowledged():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    make_rule(device.farm, escalate_seconds=600)
    ingest({"ts": int(time.time()) - 5, "soil_moisture": 10})
    episode = AlertEpisode.objects.get()
    assert episode.notified_at is not None  # escalation counts from the first message
    assert alerts_sweep(now=episode.notified_at + timedelta(seconds=599)).escalations == 0
    assert alerts_sweep(now=episode.notified_at + timedelta(seconds=600)).escalations == 1
    assert alerts_sweep(now=episode.notified_at + timedelta(hours=3)).escalations == 0
    assert outbox_keys() == [f"{episode.pk}:fired", f"{episode.pk}:escalation"]


def test_a_state_the_sweep_fires_is_the_one_tick_makes_and_its_outbox_row_is_the_writers():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    rule = make_rule(device.farm, for_seconds=600, remind_seconds=3600, note="Open valve 3.")
    started = int(time.time()) - 5
    ingest({"ts": started - 2, "soil_moisture": 12}, {"ts": started, "soil_moisture": 15})
    before = AlertState.objects.get()
    entry, pending = entry_of(rule), loaded_state(before)
    at = datetime.fromtimestamp(started + 600, UTC).replace(microsecond=250)
    alerts_sweep(now=at)

    expected = tick(entry.condition, pending, now=to_us(at) or 0)
    state = AlertState.objects.get()
    assert loaded_state(state) == expected.state
    episode = AlertEpisode.objects.get()
    (fired,) = expected.transitions
    assert (episode.started_at, episode.first_value, episode.worst_value, episode.last_value) == (
        at,
        fired.value,
        12.0,
        15.0,
    )
    assert (episode.notified_at, episode.next_reminder_at) == (at, at + timedelta(seconds=3600))
    notice = Notice(
        Episode(rule.pk, before.sensor_id, to_us(at) or 0, episode.pk, worst_value=12.0, last_value=15.0),
        entry, device.pk, "fired", fired.at, fired.value,
    )  # fmt: skip
    message = OutboxMessage.objects.get()
    assert (message.key, message.payload) == (outbox_item(notice).key, outbox_item(notice).payload)


def test_a_muted_rules_pending_state_fires_unannounced_until_the_mute_ends():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    rule = make_rule(device.farm, for_seconds=600, muted_until=timezone.now() + timedelta(hours=1))
    ingest({"ts": int(time.time()) - 5, "soil_moisture": 10})
    assert alerts_sweep(now=timezone.now() + timedelta(seconds=700)).changed == 1
    assert (AlertState.objects.get().state, AlertEpisode.objects.get().notified_at, outbox_keys()) == (
        "firing",
        None,
        [],
    )
    AlertRule.objects.filter(pk=rule.pk).update(muted_until=None)
    assert alerts_sweep().unmuted == 1


def test_a_pending_device_offline_state_whose_device_came_back_is_cancelled_not_fired():
    device = cast(Device, DeviceFactory(uid="probe-1", status=DeviceStatus.OFFLINE, last_seen=timezone.now()))
    Sensor.objects.create(device=device, key="battery", label="Battery")
    make_rule(
        device.farm, name="Offline", metric="battery", kind=Kind.DEVICE_OFFLINE, threshold=None, clear=None,
        for_seconds=600,
    )  # fmt: skip
    alerts_sweep()
    assert AlertState.objects.get().state == "pending"
    Device.objects.filter(pk=device.pk).update(status=DeviceStatus.ONLINE)
    assert alerts_sweep(now=timezone.now() + timedelta(seconds=700)).changed == 1
    assert (AlertState.objects.get().state, AlertEpisode.objects.count()) == ("ok", 0)


def loaded_state(row: AlertState) -> State:
    (loaded,) = states_load([(row.rule_id, row.sensor_id)]).values()
    return loaded.state
