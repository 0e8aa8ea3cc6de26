"""Alert transitions reach the farm's socket after the commit (alerts/signals.py → dashboard/live.py), numbered
in the farm's sequence, one message per farm per transaction; a snapshot carries the farm's open alerts."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from functools import partial
from typing import cast

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from alerts import services, signals
from alerts.models import AlertEpisode
from alerts.sweep import alerts_sweep
from dashboard import live
from farm.models import Role
from sensors.hooks import BatchOutcome
from sensors.ingest.pipeline import Ingestor, RawMessage, WorkerConfig
from sensors.models import Device
from tests.alert_fixtures import ingest, make_rule
from tests.dashboard_fixtures import _clean_channel_layer, connect_as, member_of, server_messages  # noqa: F401 - fixture
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db(transaction=True)  # real commits: the push waits for them


async def listen(layer, farm_id: int) -> str:
    channel = await layer.new_channel()
    await layer.group_add(live.farm_group(farm_id), channel)
    return channel


async def alert_messages(layer, channel: str, *, first_timeout: float = 5, more_timeout: float = 0.5) -> list[dict]:
    """The ``alerts`` messages on ``channel`` (the batch's reading update goes to the same group)."""
    got: list[dict] = []
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), more_timeout if got else first_timeout)
        except TimeoutError:
            return [m for m in got if m["type"] == "alerts"]
        got.append(json.loads(message["text"]))


def probe(uid: str = "probe-1") -> Device:
    return cast(Device, DeviceFactory(uid=uid))


def test_the_dashboard_listens_to_alert_transitions_and_alerts_to_batches():
    from sensors import hooks

    assert live.farm_alerts_publish in signals._seam.listeners
    assert signals.alerts_batch_notify in hooks._notifiers


async def test_a_breach_pushes_fired_with_the_firing_count_and_the_farms_next_sequence(clean_channel_layer):
    device = await sync_to_async(probe)()
    await sync_to_async(make_rule)(device.farm, severity="critical")
    channel = await listen(clean_channel_layer, device.farm_id)
    start = await sync_to_async(live.farm_sequence)(device.farm_id)
    now = int(time.time())
    await sync_to_async(ingest)({"ts": now - 10, "soil_moisture": 12.5})
    [message] = await alert_messages(clean_channel_layer, channel)
    episode = await AlertEpisode.objects.aget()
    # The batch's reading update takes a number of the same sequence: the two are start + 1 and + 2.
    assert message["seq"] in (start + 1, start + 2)
    assert await sync_to_async(live.farm_sequence)(device.farm_id) == start + 2
    assert (message["farm"], message["firing"], message["acknowledged"]) == (device.farm_id, 1, 0)
    [tr] = message["transitions"]
    assert tr["transition"] == "fired"
    assert (tr["episode"], tr["severity"], tr["value"], tr["at"]) == (episode.pk, "critical", 12.5, (now - 10) * 1000)
    sensor_id = await sync_to_async(lambda: device.sensors.get(key="soil_moisture").pk)()
    assert (tr["sensor"], tr["device"], tr["rule_name"]) == (sensor_id, device.pk, "Soil too dry")


async def test_recovery_pushes_resolved_and_the_count_drops_to_zero(clean_channel_layer):
    device = await sync_to_async(probe)()
    await sync_to_async(make_rule)(device.farm)
    now = int(time.time())
    await sync_to_async(ingest)({"ts": now - 20, "soil_moisture": 12})
    channel = await listen(clean_channel_layer, device.farm_id)
    await sync_to_async(ingest)({"ts": now - 10, "soil_moisture": 25})
    [message] = await alert_messages(clean_channel_layer, channel)
    assert message["firing"] == 0
    assert [(t["transition"], t["worst"], t["value"]) for t in message["transitions"]] == [("resolved", 12.0, 25.0)]


async def test_a_batch_without_a_transition_pushes_no_alerts_message(clean_channel_layer):
    device = await sync_to_async(probe)()
    await sync_to_async(make_rule)(device.farm)
    now = int(time.time())
    await sync_to_async(ingest)({"ts": now - 20, "soil_moisture": 12})
    channel = await listen(clean_channel_layer, device.farm_id)
    await sync_to_async(ingest)({"ts": now - 10, "soil_moisture": 11})  # still firing: no transition
    assert await alert_messages(clean_channel_layer, channel, first_timeout=1) == []


def ingest_for(*uids_and_values: tuple[str, float]) -> None:
    """One batch with a message from each device."""
    ts, now_us = int(time.time()) - 5, time.time_ns() // 1000
    messages = [
        RawMessage(f"farm/{uid}/telemetry".encode(), json.dumps({"ts": ts, "soil_moisture": v}).encode(), False, now_us)
        for uid, v in uids_and_values
    ]
    Ingestor(config=WorkerConfig.from_settings(client_id="test-alerts")).ingest(messages)


async def test_one_batch_sends_one_alerts_message_per_farm_with_all_its_transitions(clean_channel_layer):
    a1, b1 = await sync_to_async(probe)("a-1"), await sync_to_async(probe)("b-1")
    a2 = cast(Device, await sync_to_async(DeviceFactory)(uid="a-2", farm=a1.farm))
    await sync_to_async(make_rule)(a1.farm)
    await sync_to_async(make_rule)(b1.farm)
    channels = {f: await listen(clean_channel_layer, f) for f in (a1.farm_id, b1.farm_id)}
    await sync_to_async(ingest_for)(("a-1", 5), ("a-2", 6), ("b-1", 7))
    [for_a] = await alert_messages(clean_channel_layer, channels[a1.farm_id])
    [for_b] = await alert_messages(clean_channel_layer, channels[b1.farm_id])
    assert sorted(t["device"] for t in for_a["transitions"]) == sorted([a1.pk, a2.pk])
    assert for_a["firing"] == 2
    assert [t["device"] for t in for_b["transitions"]] == [b1.pk]


async def test_acknowledging_pushes_who_acknowledged_and_moves_the_count(clean_channel_layer):
    device = await sync_to_async(probe)()
    await sync_to_async(make_rule)(device.farm)
    await sync_to_async(ingest)({"ts": int(time.time()) - 10, "soil_moisture": 12})
    manager = (await sync_to_async(member_of)(device.farm, Role.MANAGER)).user
    channel = await listen(clean_channel_layer, device.farm_id)
    episode = await sync_to_async(lambda: AlertEpisode.objects.select_related("rule", "sensor").get())()
    assert await sync_to_async(services.episode_acknowledge)(episode=episode, actor=manager, comment="on it")
    [message] = await alert_messages(clean_channel_layer, channel)
    assert (message["firing"], message["acknowledged"]) == (0, 1)
    [tr] = message["transitions"]
    assert (tr["transition"], tr["episode"], tr["by"]) == ("acknowledged", episode.pk, manager.get_username())


async def test_the_sweep_pushes_what_it_fires(clean_channel_layer):
    device = await sync_to_async(probe)()
    await sync_to_async(make_rule)(device.farm, for_seconds=600)
    started = int(time.time()) - 5
    await sync_to_async(ingest)({"ts": started, "soil_moisture": 10})
    channel = await listen(clean_channel_layer, device.farm_id)
    await sync_to_async(alerts_sweep)(now=datetime.fromtimestamp(started + 600, UTC))
    [message] = await alert_messages(clean_channel_layer, channel)
    assert [t["transition"] for t in message["transitions"]] == ["fired"]
    assert message["firing"] == 1


def test_a_rolled_back_batch_publishes_nothing(monkeypatch):
    published: list[object] = []
    monkeypatch.setattr(signals._seam, "listeners", [published.extend])
    change = signals.AlertChange(1, 2, "fired", 3, "r", "info", 4, 5, datetime.now(UTC), datetime.now(UTC))

    def rolled_back() -> None:
        with transaction.atomic():
            outcome = BatchOutcome()
            outcome.note(signals.NOTE, [change])
            transaction.on_commit(partial(signals.alerts_batch_notify, outcome))
            raise RuntimeError("the batch failed")

    with pytest.raises(RuntimeError):
        rolled_back()
    assert published == []
    with transaction.atomic():
        outcome = BatchOutcome()
        outcome.note(signals.NOTE, [change])
        transaction.on_commit(partial(signals.alerts_batch_notify, outcome))
    assert published == [change]


def test_batches_the_notifier_lane_merges_publish_every_transition_they_noted(monkeypatch):
    published: list[object] = []
    monkeypatch.setattr(signals._seam, "listeners", [published.extend])
    now = datetime.now(UTC)
    first, second = BatchOutcome(), BatchOutcome()
    fired = signals.AlertChange(1, 2, "fired", 3, "r", "info", 4, 5, now, now)
    resolved = signals.AlertChange(1, 2, "resolved", 3, "r", "info", 4, 5, now, now)
    first.note(signals.NOTE, [fired])
    second.note(signals.NOTE, [resolved])
    signals.alerts_batch_notify(BatchOutcome.merged([first, second]))
    assert published == [fired, resolved]


async def test_a_socket_gets_the_open_alerts_in_its_snapshot_and_the_transitions_live(clean_channel_layer):
    device = await sync_to_async(probe)()
    await sync_to_async(make_rule)(device.farm)
    await sync_to_async(make_rule)(device.farm, name="Very dry", threshold=10.0, clear=12.0, severity="critical")
    now = int(time.time())
    await sync_to_async(ingest)({"ts": now - 20, "soil_moisture": 15})
    viewer = (await sync_to_async(member_of)(device.farm, Role.VIEWER)).user
    comm, snapshot = await connect_as(viewer, device.farm_id)
    try:
        episode = await AlertEpisode.objects.aget()
        assert snapshot["alerts"]["firing"] == 1
        [entry] = snapshot["alerts"]["open"]
        assert (entry["episode"], entry["rule_name"], entry["acknowledged"]) == (episode.pk, "Soil too dry", False)
        await sync_to_async(ingest)({"ts": now - 10, "soil_moisture": 8})
        message = await anext(m async for m in server_messages(comm) if m["type"] == "alerts")
        assert message["firing"] == 2
        assert [(t["transition"], t["rule_name"]) for t in message["transitions"]] == [("fired", "Very dry")]
        await comm.send_to(text_data=json.dumps({"type": "snapshot"}))
        again = json.loads(await comm.receive_from(timeout=5))
        assert again["seq"] >= message["seq"]
        assert sorted(e["rule_name"] for e in again["alerts"]["open"]) == ["Soil too dry", "Very dry"]
    finally:
        await comm.disconnect()


async def test_deleting_a_firing_rule_pushes_its_alerts_resolved(clean_channel_layer):
    device = await sync_to_async(probe)()
    rule = await sync_to_async(make_rule)(device.farm)
    await sync_to_async(ingest)({"ts": int(time.time()) - 10, "soil_moisture": 12})
    episode = await AlertEpisode.objects.aget()
    channel = await listen(clean_channel_layer, device.farm_id)
    await sync_to_async(services.rule_delete)(rule=rule, actor=None)
    [message] = await alert_messages(clean_channel_layer, channel)
    assert message["firing"] == 0
    assert [(t["transition"], t["episode"]) for t in message["transitions"]] == [("resolved", episode.pk)]
