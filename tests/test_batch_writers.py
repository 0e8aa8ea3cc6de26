"""The durable lane (sensors/hooks.py): batch writers run in the batch's transaction and count new rows only."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import cast

import pytest
from django.db import connection
from django.utils import timezone

from outbox.models import OutboxMessage
from outbox.services import OutboxItem, outbox_enqueue_many
from sensors.hooks import (
    BatchConsumer,
    BatchOutcome,
    DeviceChange,
    register_batch_notifier,
    register_batch_writer,
    unregister_batch_notifier,
    unregister_batch_writer,
)
from sensors.ingest.pipeline import Ingestor, RawMessage, WorkerConfig
from sensors.models import DeadLetter, Device, DeviceStatus, Reading
from sensors.status import devices_mark_offline
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db(transaction=True)  # real commits: writers and notifiers see them


@pytest.fixture
def lanes() -> Iterator[tuple[list[BatchOutcome], list[BatchOutcome], list[BatchConsumer]]]:
    """(what writers saw, what notifiers saw, extra writers registered by the test)."""
    written: list[BatchOutcome] = []
    notified: list[BatchOutcome] = []
    extra: list[BatchConsumer] = []
    register_batch_writer(written.append)
    register_batch_notifier(notified.append)
    yield written, notified, extra
    unregister_batch_writer(written.append)
    unregister_batch_notifier(notified.append)
    for writer in extra:
        unregister_batch_writer(writer)


def ingest(*payloads: object, uid: str = "probe-1") -> None:
    now_us = time.time_ns() // 1000
    messages = [RawMessage(f"farm/{uid}/telemetry".encode(), json.dumps(p).encode(), False, now_us) for p in payloads]
    Ingestor(config=WorkerConfig.from_settings(client_id="test-writers")).ingest(messages)


def test_a_writer_sees_the_batch_inside_its_transaction_and_its_rows_commit_with_the_readings(lanes):
    _, _, extra = lanes
    DeviceFactory(uid="probe-1")

    def enqueue(outcome: BatchOutcome) -> None:
        assert connection.in_atomic_block
        assert Reading.objects.count() == 1  # the readings are written before the writers run
        outbox_enqueue_many(items=[OutboxItem("test.reading", {"n": len(list(outcome.new_rows()))})])

    register_batch_writer(enqueue)
    extra.append(enqueue)
    ingest({"ts": int(time.time()) - 5, "soil_moisture": 30})
    assert [m.payload for m in OutboxMessage.objects.all()] == [{"n": 1}]


def test_a_writer_that_raises_fails_the_batch_so_nothing_of_it_is_stored(lanes):
    _, notified, extra = lanes
    DeviceFactory(uid="probe-1")

    def broken(outcome: BatchOutcome) -> None:
        raise RuntimeError("bug in a downstream app")

    register_batch_writer(broken)
    extra.append(broken)
    ingest({"ts": int(time.time()) - 5, "soil_moisture": 30}, {"ts": int(time.time()) - 4, "soil_moisture": 31})
    assert Reading.objects.count() == 0
    assert notified == []  # nothing committed, nothing announced
    # The poison-message isolation records each message with the reason instead of acking it silently.
    reasons = list(DeadLetter.objects.values_list("reason", flat=True))
    assert len(reasons) == 2
    assert all("bug in a downstream app" in r for r in reasons)


def test_a_redelivered_message_reaches_writers_with_no_new_rows(lanes):
    written, notified, _ = lanes
    DeviceFactory(uid="probe-1")
    payload = {"ts": int(time.time()) - 5, "soil_moisture": 30}
    ingest(payload)
    ingest(payload)
    assert [len(list(o.new_rows())) for o in written] == [1, 0]
    assert [len(list(o.rows())) for o in notified] == [1, 1]  # the live lane still shows the value
    assert Reading.objects.count() == 1


def test_a_batch_with_old_and_new_readings_gives_writers_only_the_new_ones_in_device_time_order(lanes):
    written, _, _ = lanes
    device = cast(Device, DeviceFactory(uid="probe-1"))
    now = int(time.time())
    ingest({"ts": now - 50, "soil_moisture": 1})
    ingest(
        [
            {"ts": now - 10, "soil_moisture": 3},
            {"ts": now - 50, "soil_moisture": 1},
            {"ts": now - 30, "soil_moisture": 2},
        ]
    )
    (series,) = written[1].series().values()
    assert series.device_id == device.pk
    assert series.key == "soil_moisture"
    assert [t // 1_000_000 for t in series.ts] == [now - 30, now - 10]
    assert series.values == [2.0, 3.0]


def test_the_offline_sweep_runs_writers_in_its_transaction_and_notifiers_after(lanes):
    written, notified, _ = lanes
    device = cast(Device, DeviceFactory(status=DeviceStatus.ONLINE, last_seen=timezone.now() - timedelta(hours=3)))
    devices_mark_offline()
    assert [[c.device_id for c in o.devices] for o in written] == [[device.pk]]
    assert [[c.status for c in o.devices] for o in notified] == [[DeviceStatus.OFFLINE]]
    assert isinstance(written[0].devices[0], DeviceChange)
