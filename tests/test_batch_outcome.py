"""The after-commit seam: what a hook gets for a committed batch (sensors/hooks.py)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from sensors.hooks import BatchOutcome, DeviceSensors, StoredReading, register_batch_notifier, unregister_batch_notifier
from sensors.ingest.pipeline import Ingestor, RawMessage, WorkerConfig
from sensors.models import Device, Sensor
from tests.factories import DeviceFactory

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
T0_US = int(T0.timestamp()) * 1_000_000


def test_rows_name_each_readings_farm_device_sensor_time_and_value():
    device = DeviceSensors(id=2, farm_id=1, sensors={"t": 30, "rh": 31})
    outcome = BatchOutcome(
        groups=[(device, [(T0_US, "t", 21.5), (T0_US, "rh", 40.0)]), (device, [(T0_US + 1, "t", 21.6)])]
    )
    assert list(outcome.rows()) == [(1, 2, 30, T0_US, 21.5), (1, 2, 31, T0_US, 40.0), (1, 2, 30, T0_US + 1, 21.6)]
    assert [r.ts for r in outcome.stored_readings()] == [T0, T0, T0 + timedelta(microseconds=1)]
    assert outcome.farm_ids() == {1}


def test_readings_given_as_objects_come_back_unchanged():
    readings = [StoredReading(1, 2, 3, T0, 1.5), StoredReading(4, 5, 6, T0 + timedelta(microseconds=7), -2.0)]
    assert list(BatchOutcome.of_readings(readings).stored_readings()) == readings
    assert BatchOutcome.of_readings(readings).farm_ids() == {1, 4}


@pytest.mark.django_db(transaction=True)  # a real commit: the hooks run before the worker's cache learns the sensor
def test_a_metric_first_seen_in_the_batch_reaches_the_hooks_with_its_new_sensor():
    device = cast(Device, DeviceFactory(uid="probe-1"))
    seen: list[list[tuple[int, int, int, int, float]]] = []

    def hook(outcome: BatchOutcome) -> None:
        seen.append(list(outcome.rows()))

    register_batch_notifier(hook)
    try:
        payload = json.dumps({"ts": int(time.time()) - 5, "leaf_wetness": 3}).encode()
        Ingestor(config=WorkerConfig.from_settings(client_id="test-outcome")).ingest(
            [RawMessage(b"farm/probe-1/telemetry", payload, False, time.time_ns() // 1000)]
        )
    finally:
        unregister_batch_notifier(hook)

    sensor = Sensor.objects.get(device=device, key="leaf_wetness")
    ((farm_id, device_id, sensor_id, _, value),) = seen[0]
    assert (farm_id, device_id, sensor_id, value) == (device.farm_id, device.pk, sensor.pk, 3.0)
