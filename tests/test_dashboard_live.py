"""The after-commit hook: one channel-layer message per farm per batch, numbered per farm."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from dashboard import live, payloads
from sensors import hooks
from sensors.hooks import BatchOutcome, DeviceChange, StoredReading, run_batch_hooks
from tests.dashboard_fixtures import _clean_channel_layer, batch_for, farm_with_sensors  # noqa: F401 - fixture

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


async def listen(layer, *farm_ids: int) -> dict[int, str]:
    """A bare channel in each farm's group, as a consumer would be."""
    channels = {}
    for farm_id in farm_ids:
        channels[farm_id] = await layer.new_channel()
        await layer.group_add(live.farm_group(farm_id), channels[farm_id])
    return channels


async def drain(layer, channel: str, first_timeout: float = 5, more_timeout: float = 0.5) -> list[dict]:
    """Everything on ``channel``: waits for a first message, then a little while for any more."""
    messages: list[dict] = []
    while True:
        try:
            timeout = more_timeout if messages else first_timeout
            messages.append(await asyncio.wait_for(layer.receive(channel), timeout))
        except TimeoutError:
            return messages


def test_the_dashboard_registers_its_hook_with_the_ingest_seam():
    assert live.farm_updates_publish in hooks._hooks


@pytest.mark.django_db(transaction=True)
async def test_it_sends_exactly_one_message_per_farm_per_batch(clean_channel_layer):
    layer = clean_channel_layer
    a = await sync_to_async(farm_with_sensors)(devices=3)
    b = await sync_to_async(farm_with_sensors)(devices=1)
    channels = await listen(layer, a.farm.pk, b.farm.pk)
    now = timezone.now()
    readings = [
        *batch_for(a.sensors[0], 1.0, 2.0, 3.0, ts=now).readings,
        *batch_for(a.sensors[1], 4.0, ts=now).readings,
        *batch_for(a.sensors[2], 5.0, 6.0, ts=now).readings,
        *batch_for(b.sensors[0], 7.0, ts=now).readings,
    ]
    await sync_to_async(run_batch_hooks)(BatchOutcome(readings=readings))
    got_a = await drain(layer, channels[a.farm.pk])
    got_b = await drain(layer, channels[b.farm.pk])
    assert len(got_a) == 1
    assert len(got_b) == 1
    update_a = json.loads(got_a[0]["text"])
    assert update_a["farm"] == a.farm.pk
    assert sorted(r["sensor"] for r in update_a["readings"]) == sorted(s.pk for s in a.sensors)
    assert json.loads(got_b[0]["text"])["farm"] == b.farm.pk


@pytest.mark.django_db(transaction=True)
async def test_each_farms_sequence_number_increases_by_one_per_batch(clean_channel_layer):
    layer = clean_channel_layer
    a = await sync_to_async(farm_with_sensors)()
    b = await sync_to_async(farm_with_sensors)()
    channels = await listen(layer, a.farm.pk, b.farm.pk)
    start_a = await sync_to_async(live.farm_sequence)(a.farm.pk)
    start_b = await sync_to_async(live.farm_sequence)(b.farm.pk)
    now = timezone.now()
    for i in range(3):
        await sync_to_async(run_batch_hooks)(batch_for(a.sensors[0], float(i), ts=now + timedelta(seconds=i)))
    await sync_to_async(run_batch_hooks)(batch_for(b.sensors[0], 9.0, ts=now))
    seqs_a = [json.loads(m["text"])["seq"] for m in await drain(layer, channels[a.farm.pk])]
    seqs_b = [json.loads(m["text"])["seq"] for m in await drain(layer, channels[b.farm.pk])]
    assert seqs_a == [start_a + 1, start_a + 2, start_a + 3]
    assert seqs_b == [start_b + 1]
    assert await sync_to_async(live.farm_sequence)(a.farm.pk) == start_a + 3


@pytest.mark.django_db(transaction=True)
async def test_a_batch_of_device_changes_alone_is_pushed_too(clean_channel_layer):
    layer = clean_channel_layer
    a = await sync_to_async(farm_with_sensors)()
    channels = await listen(layer, a.farm.pk)
    device = a.devices[0]
    change = DeviceChange(a.farm.pk, device.pk, "offline", T0, None, None, None)
    await sync_to_async(run_batch_hooks)(BatchOutcome(devices=[change]))
    (message,) = await drain(layer, channels[a.farm.pk])
    update = json.loads(message["text"])
    assert update["readings"] == []
    assert update["devices"] == [
        {"id": device.pk, "status": "offline", "last_seen": int(T0.timestamp() * 1000), "battery": None,
         "rssi": None, "snr": None}
    ]  # fmt: skip


def test_an_empty_batch_sends_nothing(monkeypatch):
    monkeypatch.setattr(live, "farm_sequences_next", lambda ids: pytest.fail("took a sequence number"))
    live.farm_updates_publish(BatchOutcome())


def test_compaction_keeps_the_newest_points_of_each_sensor_in_time_order():
    readings = [StoredReading(1, 2, 3, T0 + timedelta(seconds=s), float(s)) for s in (5, 1, 4, 2, 3)]
    readings += [StoredReading(1, 2, 4, T0 + timedelta(seconds=s), float(s)) for s in range(500)]
    entries = {e["sensor"]: e for e in payloads.compact_readings(readings)}
    assert [p[1] for p in entries[3]["points"]] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert entries[3]["n"] == 5
    assert len(entries[4]["points"]) == payloads.MAX_POINTS_PER_SENSOR
    assert entries[4]["points"][-1][1] == 499.0
    assert entries[4]["n"] == 500


def test_compaction_bounds_a_message_with_many_sensors_but_keeps_every_latest_value():
    readings = [
        StoredReading(1, 2, sensor, T0 + timedelta(seconds=s), float(sensor * 1000 + s))
        for sensor in range(400)
        for s in range(10)
    ]
    entries = payloads.compact_readings(readings)
    assert len(entries) == 400
    assert sum(len(e["points"]) for e in entries) <= payloads.MAX_POINTS_PER_MESSAGE
    assert all(e["points"][-1][1] == e["sensor"] * 1000 + 9 for e in entries)
