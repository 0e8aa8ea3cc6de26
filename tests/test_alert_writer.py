"""The alerts batch writer (alerts/writer.py) through the real ingest pipeline: fire, resolve, redelivery."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import cast

import pytest
from django.utils import timezone

from alerts.models import AlertEpisode, AlertState, Kind, Scope
from farm.models import Field
from outbox.models import OutboxMessage
from sensors.models import Device, DeviceStatus, Sensor
from sensors.status import devices_mark_offline
from tests.alert_fixtures import ingest, make_rule
from tests.factories import DeviceFactory, FieldFactory

pytestmark = pytest.mark.django_db(transaction=True)  # real commits, as the worker makes them


def transitions() -> list[tuple[str, str]]:
    return [(m.payload["transition"], m.payload["rule_name"]) for m in OutboxMessage.objects.order_by("id")]


def test_a_breaching_reading_fires_an_episode_and_enqueues_it_with_the_readings():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    make_rule(device.farm)
    now = int(time.time())
    ingest({"ts": now - 20, "soil_moisture": 30}, {"ts": now - 10, "soil_moisture": 15.5})
    state = AlertState.objects.get()
    assert state.state == "firing"
    episode = AlertEpisode.objects.get()
    assert (episode.ended_at, episode.first_value, episode.worst_value) == (None, 15.5, 15.5)
    assert state.episode_id == episode.pk
    assert transitions() == [("fired", "Soil too dry")]
    assert OutboxMessage.objects.get().key == f"{episode.pk}:fired"


def test_it_resolves_only_once_the_value_is_back_above_the_clear_level():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    make_rule(device.farm)
    now = int(time.time())
    ingest({"ts": now - 40, "soil_moisture": 15})
    ingest({"ts": now - 30, "soil_moisture": 12})
    ingest({"ts": now - 20, "soil_moisture": 22})  # above the threshold, below the clear level
    assert AlertState.objects.get().state == "firing"
    ingest({"ts": now - 10, "soil_moisture": 24})
    episode = AlertEpisode.objects.get()
    assert episode.ended_at is not None
    assert (episode.end_reason, episode.worst_value, episode.last_value) == ("cleared", 12.0, 24.0)
    assert AlertState.objects.get().state == "ok"
    assert transitions() == [("fired", "Soil too dry"), ("resolved", "Soil too dry")]


def test_a_redelivered_breach_makes_one_episode():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    make_rule(device.farm)
    payload = {"ts": int(time.time()) - 5, "soil_moisture": 10}
    ingest(payload)
    ingest(payload)
    ingest(payload, payload)
    assert AlertEpisode.objects.count() == 1
    assert transitions() == [("fired", "Soil too dry")]


def test_a_late_recovery_older_than_the_state_does_not_resolve_it():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    make_rule(device.farm)
    now = int(time.time())
    ingest({"ts": now - 10, "soil_moisture": 10})
    ingest({"ts": now - 60, "soil_moisture": 40})  # a buffered reading flushed late
    assert AlertState.objects.get().state == "firing"


def test_a_late_breach_older_than_the_newest_reading_does_not_fire_an_ok_state():
    now = probe_with_rule()
    ingest({"ts": now - 10, "soil_moisture": 30})
    ingest({"ts": now - 60, "soil_moisture": 5}, {"ts": now - 50, "soil_moisture": 6})  # flushed late
    assert (AlertState.objects.count(), AlertEpisode.objects.count(), transitions()) == (0, 0, [])
    ingest({"ts": now - 5, "soil_moisture": 5})
    assert AlertState.objects.get().state == "firing"


def test_a_late_breach_in_a_batch_with_newer_readings_is_evaluated_in_device_time_order():
    now = probe_with_rule()
    ingest({"ts": now - 30, "soil_moisture": 30})
    ingest({"ts": now - 10, "soil_moisture": 25}, {"ts": now - 20, "soil_moisture": 5})  # both newer
    assert [e.worst_value for e in AlertEpisode.objects.all()] == [5.0]
    assert AlertState.objects.get().state == "ok"  # fired at -20, resolved at -10 (25 >= the clear level 23)


def test_readings_that_leave_a_state_ok_write_nothing_to_it():
    now = probe_with_rule()
    ingest({"ts": now - 40, "soil_moisture": 30})
    assert AlertState.objects.count() == 0  # OK needs no row
    ingest({"ts": now - 30, "soil_moisture": 10}, {"ts": now - 20, "soil_moisture": 30})
    resolved = AlertState.objects.get()
    assert resolved.state == "ok"
    ingest({"ts": now - 10, "soil_moisture": 31})
    assert AlertState.objects.get().updated_at == resolved.updated_at
    ingest({"ts": now - 5, "soil_moisture": 9})  # a breach still fires from the unwritten OK
    assert AlertState.objects.get().state == "firing"
    assert [kind for kind, _ in transitions()] == ["fired", "resolved", "fired"]


def probe_with_rule() -> int:
    """probe-1 on a farm with the default rule (soil moisture below 20, clears at 23); now, in seconds."""
    make_rule(cast(Device, DeviceFactory(uid="probe-1")).farm)
    return int(time.time())


def test_a_field_rule_covers_only_that_fields_sensors():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    other = cast(Device, DeviceFactory(uid="probe-2", farm=device.farm))
    make_rule(device.farm, scope=Scope.FIELD, field=device.field)
    ingest({"soil_moisture": 5}, uid="probe-1")
    ingest({"soil_moisture": 5}, uid="probe-2")
    assert list(AlertState.objects.values_list("sensor__device_id", flat=True)) == [device.pk]
    assert other.field != device.field


def test_each_scope_covers_its_own_sensors_and_a_sensor_gets_every_rule_that_covers_it():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    other = cast(Device, DeviceFactory(uid="probe-2", farm=device.farm))
    ingest({"soil_moisture": 30, "battery": 90}, uid="probe-1")
    ingest({"soil_moisture": 30}, uid="probe-2")
    sensor = Sensor.objects.get(device=device, key="soil_moisture")
    other_sensor = Sensor.objects.get(device=other, key="soil_moisture")
    rules = [
        make_rule(device.farm, name="farm"),
        make_rule(device.farm, name="field", scope=Scope.FIELD, field=device.field),
        make_rule(device.farm, name="device", scope=Scope.DEVICE, device=device),
        make_rule(device.farm, name="sensor", scope=Scope.SENSOR, sensor=sensor),
        make_rule(device.farm, name="other sensor", scope=Scope.SENSOR, sensor=other_sensor),
        make_rule(device.farm, name="battery", metric="battery", scope=Scope.DEVICE, device=device),
    ]
    ingest({"soil_moisture": 5}, uid="probe-1")
    fired = AlertState.objects.filter(sensor=sensor).order_by("rule_id").values_list("rule__name", flat=True)
    assert list(fired) == [r.name for r in rules[:4]]
    assert AlertState.objects.exclude(sensor=sensor).count() == 0


def test_a_device_moved_into_the_field_is_covered_from_the_next_batch():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    field = cast(Field, FieldFactory(farm=device.farm))
    make_rule(device.farm, scope=Scope.FIELD, field=field)
    ingest({"soil_moisture": 5})
    assert AlertState.objects.count() == 0
    device.field = field
    device.save()
    ingest({"soil_moisture": 4})
    assert AlertState.objects.get().state == "firing"


def test_a_disabled_rule_and_another_farms_rule_are_not_evaluated():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    make_rule(device.farm, enabled=False)
    make_rule(cast(Device, DeviceFactory(uid="elsewhere")).farm)
    ingest({"soil_moisture": 5})
    assert AlertState.objects.count() == 0


def test_a_muted_rule_records_the_episode_but_enqueues_nothing():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    make_rule(device.farm, muted_until=timezone.now() + timedelta(hours=1))
    ingest({"soil_moisture": 5})
    assert AlertEpisode.objects.get().notified_at is None
    assert transitions() == []


def test_removing_a_sensor_while_firing_removes_its_state_and_the_next_batch_still_commits():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    make_rule(device.farm)
    ingest({"ts": int(time.time()) - 10, "soil_moisture": 5})
    Sensor.objects.filter(device=device).delete()
    assert (AlertState.objects.count(), AlertEpisode.objects.count()) == (0, 0)
    ingest({"soil_moisture": 6})  # a new sensor for the key: a fresh state, a fresh episode
    assert AlertEpisode.objects.count() == 1


def test_the_offline_sweep_fires_a_device_offline_rule_in_its_transaction():
    device = cast(
        Device, DeviceFactory(uid="probe-1", status=DeviceStatus.ONLINE, last_seen=timezone.now() - timedelta(hours=3))
    )
    Sensor.objects.create(device=device, key="battery", label="Battery", unit="%")
    make_rule(device.farm, name="Probe offline", metric="battery", kind=Kind.DEVICE_OFFLINE, threshold=None, clear=None)
    devices_mark_offline()
    assert AlertState.objects.get().state == "firing"
    assert transitions() == [("fired", "Probe offline")]
