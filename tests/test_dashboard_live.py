"""The after-commit hook: one channel-layer message per farm per batch, numbered per farm."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from dashboard import live, payloads
from sensors import hooks
from sensors.hooks import BatchOutcome, DeviceChange, StoredReading, run_batch_notifiers
from sensors.ingest.pipeline import Ingestor, RawMessage, WorkerConfig
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
    assert live.farm_updates_publish in hooks._notifiers


@pytest.mark.django_db(transaction=True)
async def test_it_sends_exactly_one_message_per_farm_per_batch(clean_channel_layer):
    layer = clean_channel_layer
    a = await sync_to_async(farm_with_sensors)(devices=3)
    b = await sync_to_async(farm_with_sensors)(devices=1)
    channels = await listen(layer, a.farm.pk, b.farm.pk)
    now = timezone.now()
    groups = [
        *batch_for(a.sensors[0], 1.0, 2.0, 3.0, ts=now).groups,
        *batch_for(a.sensors[1], 4.0, ts=now).groups,
        *batch_for(a.sensors[2], 5.0, 6.0, ts=now).groups,
        *batch_for(b.sensors[0], 7.0, ts=now).groups,
    ]
    await sync_to_async(run_batch_notifiers)(BatchOutcome(groups=groups))
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
        await sync_to_async(run_batch_notifiers)(batch_for(a.sensors[0], float(i), ts=now + timedelta(seconds=i)))
    await sync_to_async(run_batch_notifiers)(batch_for(b.sensors[0], 9.0, ts=now))
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
    await sync_to_async(run_batch_notifiers)(BatchOutcome(devices=[change]))
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


def compacted(readings: list[StoredReading]) -> list[dict]:
    """The "readings" of an update for a batch of these readings."""
    return json.loads(payloads.readings_json(BatchOutcome.of_readings(readings).groups))


def test_compaction_keeps_the_newest_points_of_each_sensor_in_time_order():
    readings = [StoredReading(1, 2, 3, T0 + timedelta(seconds=s), float(s)) for s in (5, 1, 4, 2, 3)]
    readings += [StoredReading(1, 2, 4, T0 + timedelta(seconds=s), float(s)) for s in range(500)]
    entries = {e["sensor"]: e for e in compacted(readings)}
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
    entries = compacted(readings)
    assert len(entries) == 400
    assert sum(len(e["points"]) for e in entries) <= payloads.MAX_POINTS_PER_MESSAGE
    assert all(e["points"][-1][1] == e["sensor"] * 1000 + 9 for e in entries)


def test_of_two_readings_at_the_same_time_the_one_stored_last_is_the_newest():
    readings = [StoredReading(1, 2, 3, T0 + timedelta(seconds=s), value) for s, value in ((2, 1.0), (2, 2.0), (1, 3.0))]
    (entry,) = compacted(readings)
    t0_ms = int(T0.timestamp() * 1000)
    assert entry["points"] == [[t0_ms + 1000, 3.0], [t0_ms + 2000, 1.0], [t0_ms + 2000, 2.0]]


def telemetry(uid: str, payload: object) -> RawMessage:
    return RawMessage(f"farm/{uid}/telemetry".encode(), json.dumps(payload).encode(), False, time.time_ns() // 1000)


@pytest.mark.django_db
def test_an_update_keeps_the_newest_points_of_devices_flushing_their_buffers_and_counts_them_all(
    monkeypatch, django_capture_on_commit_callbacks
):
    """Each device sends its live reading, then a backfill of older ones: more than both caps allow."""
    setup = farm_with_sensors(devices=30)
    live_s, backfill = int(time.time()) - 60, 100
    messages, sent_readings = [], {}
    for device in setup.devices:
        values = {live_s - 60 * i: round(device.pk % 50 + i / 8, 3) for i in range(backfill + 1)}
        sent_readings[device.pk] = sorted(values.items())
        older = [{"ts": ts, "soil_moisture": values[ts]} for ts in sorted(values, reverse=True)[1:]]
        messages.append(telemetry(device.uid, {"ts": live_s, "soil_moisture": values[live_s]}))
        messages.append(telemetry(device.uid, older))
    published: list[tuple[str, dict]] = []
    monkeypatch.setattr(live, "_send_from_sync", published.extend)

    with django_capture_on_commit_callbacks(execute=True):
        Ingestor(config=WorkerConfig.from_settings(client_id="test-live")).ingest(messages)

    ((group, message),) = published
    update = json.loads(message["text"])
    assert message["text"] == payloads.dumps(update)  # keys, order and numbers written as dumps writes them
    cap = payloads.MAX_POINTS_PER_MESSAGE // len(setup.sensors)  # 50: under the per-sensor 60
    assert update["readings"] == [
        {
            "sensor": sensor.pk,
            "device": sensor.device_id,
            "points": [[ts * 1000, value] for ts, value in sent_readings[sensor.device_id][-cap:]],
            "n": backfill + 1,
        }
        for sensor in sorted(setup.sensors, key=lambda s: s.pk)
    ]
    assert sum(len(r["points"]) for r in update["readings"]) == payloads.MAX_POINTS_PER_MESSAGE
    assert group == live.farm_group(setup.farm.pk)


def test_an_updates_devices_are_written_as_dumps_writes_them():
    changes = [
        DeviceChange(1, 2, "online", T0 + timedelta(microseconds=1999), 3.3, -97.0, 7.25),
        DeviceChange(1, 3, "offline", None, None, -120.5, None),
        DeviceChange(1, 4, "unknown", T0, 1e-07, 1e22, -0.0),
    ]
    assert payloads.devices_json(changes) == payloads.dumps([payloads.device_entry(c) for c in changes])


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_a_number_json_cannot_carry_fails_the_update_as_dumps_would(number):
    with pytest.raises(ValueError, match="not JSON compliant"):
        payloads.readings_json(BatchOutcome.of_readings([StoredReading(1, 2, 3, T0, number)]).groups)
    with pytest.raises(ValueError, match="not JSON compliant"):
        payloads.devices_json([DeviceChange(1, 2, "online", T0, None, number)])
