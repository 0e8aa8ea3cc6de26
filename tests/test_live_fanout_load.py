"""The live fan-out under load, on the real Redis channel layer.

redis-py's asyncio pool holds at most 100 connections and raises ``MaxConnectionsError``
past that instead of waiting. Two ways we hit it (both reproduced before the fix in
``dashboard.live``): a batch spanning hundreds of farms (the simulator at ~5k msg/s over many
farms) started one ``group_send`` per farm all at once and lost the batch; and fifty browsers
connecting at once to one daphne (as after a restart) failed their group joins with 1011.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from asgiref.sync import sync_to_async

from dashboard import live
from sensors.hooks import BatchOutcome, DeviceChange, StoredReading
from tests.dashboard_fixtures import _clean_channel_layer  # noqa: F401 - the clean_channel_layer fixture

# Far above any id the other tests' farms get, so no other socket listens on these groups.
FIRST_FARM_ID = 2_000_000_000
FARMS = 300  # three times redis-py's default pool size


def many_farms_batch(farm_ids: list[int], now: datetime) -> BatchOutcome:
    readings = [StoredReading(farm_id, farm_id, farm_id, now, float(n)) for n, farm_id in enumerate(farm_ids)]
    devices = [DeviceChange(farm_ids[0], farm_ids[0], "online", now)]
    return BatchOutcome.of_readings(readings, devices=devices)


async def test_a_batch_spanning_hundreds_of_farms_reaches_every_farm_group(clean_channel_layer):
    layer = clean_channel_layer
    farm_ids = [FIRST_FARM_ID + i for i in range(FARMS)]
    channels = {}
    for farm_id in farm_ids:
        channels[farm_id] = await layer.new_channel()
        await layer.group_add(live.farm_group(farm_id), channels[farm_id])
    before = {farm_id: await sync_to_async(live.farm_sequence)(farm_id) for farm_id in farm_ids}

    await sync_to_async(live.farm_updates_publish, thread_sensitive=False)(
        many_farms_batch(farm_ids, datetime.now(UTC))
    )

    for n, farm_id in enumerate(farm_ids):
        event = await layer.receive(channels[farm_id])
        message = json.loads(event["text"])
        assert (event["type"], message["farm"], message["seq"]) == ("farm.update", farm_id, before[farm_id] + 1)
        assert [entry["sensor"] for entry in message["readings"]] == [farm_id]
        assert message["readings"][0]["points"][0][1] == float(n)


async def test_a_herd_of_sockets_joining_at_once_all_join_their_groups(clean_channel_layer):
    """A thousand browsers reconnect together after daphne restarts: every join must succeed."""
    layer = clean_channel_layer
    farm_id, sockets = FIRST_FARM_ID, 300
    channels = [await layer.new_channel() for _ in range(sockets)]

    await asyncio.gather(
        *(live.socket_join(c, farm_id=farm_id, user_id=FIRST_FARM_ID + n) for n, c in enumerate(channels))
    )
    await layer.group_send(live.farm_group(farm_id), {"type": "farm.update", "text": "{}"})

    received = [await layer.receive(channel) for channel in channels]
    assert {event["type"] for event in received} == {"farm.update"}
    await asyncio.gather(
        *(live.socket_leave(c, farm_id=farm_id, user_id=FIRST_FARM_ID + n) for n, c in enumerate(channels))
    )
