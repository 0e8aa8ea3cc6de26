"""The offline sweep: overdue devices go offline, and open dashboards hear about it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from dashboard import live
from sensors.ingest.registry import Registry
from sensors.models import DeviceStatus
from sensors.status import OFFLINE_AFTER_INTERVALS, OFFLINE_GRACE_SECONDS, devices_mark_offline
from sensors.tasks import sweep_offline_devices
from tests.factories import DeviceFactory, DeviceKindFactory, FarmFactory

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
INTERVAL = 300
LIMIT = INTERVAL * OFFLINE_AFTER_INTERVALS + OFFLINE_GRACE_SECONDS

pytestmark = pytest.mark.django_db


def device(*, seconds_ago: float | None, status=DeviceStatus.ONLINE, **kwargs):
    kwargs.setdefault("kind", DeviceKindFactory.create(expected_interval=INTERVAL))
    last_seen = None if seconds_ago is None else NOW - timedelta(seconds=seconds_ago)
    return DeviceFactory.create(status=status, last_seen=last_seen, **kwargs)


def status_of(dev) -> str:
    dev.refresh_from_db()
    return dev.status


@time_machine.travel(NOW, tick=False)
def test_it_marks_only_overdue_online_devices_offline(django_capture_on_commit_callbacks):
    overdue = device(seconds_ago=LIMIT + 1)
    on_time = device(seconds_ago=LIMIT - 1)
    never_seen = device(seconds_ago=None, status=DeviceStatus.UNKNOWN)
    already_offline = device(seconds_ago=LIMIT * 10, status=DeviceStatus.OFFLINE)
    disabled = device(seconds_ago=LIMIT * 10, enabled=False)
    with django_capture_on_commit_callbacks(execute=False):
        changes = devices_mark_offline()
    assert [c.device_id for c in changes] == [overdue.pk]
    assert status_of(overdue) == DeviceStatus.OFFLINE
    assert status_of(on_time) == DeviceStatus.ONLINE
    assert status_of(never_seen) == DeviceStatus.UNKNOWN
    assert status_of(already_offline) == DeviceStatus.OFFLINE
    assert status_of(disabled) == DeviceStatus.ONLINE


@time_machine.travel(NOW, tick=False)
def test_a_devices_own_interval_overrides_its_kinds(django_capture_on_commit_callbacks):
    slow = device(seconds_ago=LIMIT + 1, expected_interval=3600)
    with django_capture_on_commit_callbacks(execute=False):
        assert devices_mark_offline() == []
    assert status_of(slow) == DeviceStatus.ONLINE


def test_it_uses_the_current_time():
    quiet = device(seconds_ago=0)
    with time_machine.travel(NOW + timedelta(seconds=LIMIT - 5), tick=False):
        sweep_offline_devices()
        assert status_of(quiet) == DeviceStatus.ONLINE
    with time_machine.travel(NOW + timedelta(seconds=LIMIT + 5), tick=False):
        assert sweep_offline_devices() == 1
        assert status_of(quiet) == DeviceStatus.OFFLINE


@time_machine.travel(NOW, tick=False)
def test_the_change_reaches_the_farms_dashboards_after_commit(django_capture_on_commit_callbacks):
    farm = FarmFactory.create()
    overdue = device(seconds_ago=LIMIT + 60, farm=farm, battery=55.0)
    layer = get_channel_layer()

    def sweep() -> list:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            devices_mark_offline()
        return callbacks

    async def watch_the_farm_while(action):
        # One event loop throughout: a pub/sub layer's subscriptions belong to the loop that made them.
        channel = await layer.new_channel()
        await layer.group_add(live.farm_group(farm.pk), channel)
        done = await sync_to_async(action)()
        async with asyncio.timeout(10):
            return done, await layer.receive(channel)

    callbacks, message = async_to_sync(watch_the_farm_while)(sweep)
    assert len(callbacks) == 1
    update = json.loads(message["text"])
    assert update["farm"] == farm.pk
    assert update["devices"] == [
        {
            "id": overdue.pk,
            "status": "offline",
            "last_seen": int((NOW - timedelta(seconds=LIMIT + 60)).timestamp() * 1000),
            "battery": 55.0,
            "rssi": None,
            "snr": None,
        }
    ]


@time_machine.travel(NOW, tick=False)
def test_nothing_is_pushed_when_nothing_changed(django_capture_on_commit_callbacks):
    device(seconds_ago=10)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        devices_mark_offline()
    assert callbacks == []


def test_beat_runs_the_sweep_every_minute(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["sensors-offline-sweep"]
    assert entry["task"] == sweep_offline_devices.name
    assert entry["schedule"] == 60.0


@time_machine.travel(NOW, tick=False)
def test_the_sweep_leaves_updated_at_alone_so_the_ingest_registry_does_not_reload(django_capture_on_commit_callbacks):
    overdue = device(seconds_ago=LIMIT + 1)
    updated_at = overdue.updated_at
    registry = Registry(check_interval=0)
    registry.refresh()

    with time_machine.travel(NOW + timedelta(minutes=5), tick=False), django_capture_on_commit_callbacks(execute=False):
        assert len(devices_mark_offline()) == 1

    overdue.refresh_from_db()
    assert (overdue.status, overdue.updated_at) == (DeviceStatus.OFFLINE, updated_at)
    assert registry.refresh() is False  # status is not registry data: no reload
