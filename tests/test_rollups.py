"""Hourly and local-daily rollups equal a recompute from the raw readings, whatever order readings come in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from django.db import connection

from sensors.history.rollups import RECOMPUTE_DAYS_SQL, RECOMPUTE_HOURS_SQL, rollups_rebuild, rollups_refresh
from sensors.ingest.pipeline import Ingestor, RawMessage, WorkerConfig
from sensors.models import Device, Reading, RollupDay, RollupHour, Sensor
from tests.factories import DeviceFactory, SensorFactory
from tests.history_clock import recent_clock_changes
from tests.test_ingest_store import NOW_S, raw

_ALL = (datetime(1970, 1, 2, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))
_COLUMNS = ("count", "sum", "min", "max", "first_ts", "first_value", "last_ts", "last_value")


@pytest.fixture
def ingestor():
    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="test-rollups"))
    ingestor.registry.check_interval = 0
    return ingestor


def _recomputed(sql: str, sensor_ids: list[int]) -> dict[tuple[Any, Any], tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, {"sensor_ids": sensor_ids, "start": _ALL[0], "end": _ALL[1]})
        return {(row[0], row[1]): tuple(row[2:]) for row in cursor.fetchall()}


def _stored(model: type[RollupHour] | type[RollupDay], key: str) -> dict[tuple[Any, Any], tuple[Any, ...]]:
    return {(row[0], row[1]): tuple(row[2:]) for row in model.objects.values_list("sensor_id", key, *_COLUMNS)}


def _assert_rollups_match_raw(sensor_ids: list[int]) -> None:
    hours, days = _stored(RollupHour, "bucket"), _stored(RollupDay, "day")
    assert hours == _recomputed(RECOMPUTE_HOURS_SQL, sensor_ids)
    assert days == _recomputed(RECOMPUTE_DAYS_SQL, sensor_ids)
    assert sum(h[0] for h in hours.values()) == Reading.objects.count()


def _random_stream(rng: random.Random, devices: list[Device]) -> list[list[RawMessage]]:
    """Batches of on-time, late (days back, across a clock change too) and redelivered messages."""
    sent: list[RawMessage] = []
    batches: list[list[RawMessage]] = []
    for _ in range(30):
        batch: list[RawMessage] = []
        for _ in range(rng.randint(1, 25)):
            roll = rng.random()
            if roll < 0.15 and sent:
                batch.append(rng.choice(sent))  # a redelivery
                continue
            back = rng.uniform(0, 3600) if roll < 0.6 else rng.uniform(0, 200 * 86400)  # late or backfilled
            device = rng.choice(devices)
            points = [
                {"ts": round(NOW_S - back - i * rng.uniform(1, 900), 3), "soil_moisture": rng.uniform(-5, 60)}
                for i in range(rng.randint(1, 4))
            ]
            message = raw(f"farm/{device.uid}/telemetry", points if len(points) > 1 else points[0])
            batch.append(message)
            sent.append(message)
        batches.append(batch)
    return batches


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_equal_a_recompute_from_raw_after_a_random_stream_with_late_data_and_redelivery(ingestor, seed):
    devices = [
        cast(Device, DeviceFactory(uid=f"probe-{i}", farm__time_zone=tz))
        for i, tz in enumerate(["Europe/London", "Asia/Kolkata", "America/St_Johns"])
    ]
    for device in devices:
        SensorFactory(device=device, key="soil_moisture")
    for batch in _random_stream(random.Random(seed), devices):
        ingestor.ingest(batch)
    assert not RollupHour.objects.exists()  # ingest only logs the dirty hours

    assert rollups_refresh().ran
    _assert_rollups_match_raw(list(Sensor.objects.values_list("pk", flat=True)))
    assert RollupDay.objects.count() > 20


@pytest.mark.django_db
def test_a_local_day_holds_23_and_25_hours_when_the_clocks_change(ingestor):
    device = cast(Device, DeviceFactory(uid="gauge", farm__time_zone="Europe/London"))
    sensor = cast(Sensor, SensorFactory(device=device, key="rain"))
    spring, fall = recent_clock_changes(datetime.now(tz=UTC))
    messages = []
    for sunday in (spring, fall):
        start = datetime.combine(sunday - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        # Every UTC hour of 3 days gets 1 mm, stamped at :30.
        messages += [
            raw("farm/gauge/telemetry", {"ts": (start + timedelta(hours=h, minutes=30)).timestamp(), "rain": 1.0})
            for h in range(72)
        ]
    ingestor.ingest(messages)
    rollups_refresh()

    counts = dict(RollupDay.objects.filter(sensor=sensor).values_list("day", "count"))
    assert counts[spring] == 23  # spring forward: 23 hours of Sunday
    assert counts[fall] == 25  # fall back: 25 hours
    assert counts[spring + timedelta(days=1)] == 24


@pytest.mark.django_db
def test_rebuild_recomputes_rollups_of_readings_written_behind_ingest(ingestor):
    sensor = cast(Sensor, SensorFactory(device__farm__time_zone="Europe/London"))
    day = datetime(2026, 6, 1, tzinfo=UTC)
    Reading.objects.bulk_create(
        [Reading(sensor=sensor, ts=day + timedelta(minutes=7 * i), value=i) for i in range(400)]
    )
    assert not RollupHour.objects.exists()

    rollups_rebuild(sensor_ids=[sensor.pk], start=day - timedelta(days=1), end=day + timedelta(days=3))

    _assert_rollups_match_raw([sensor.pk])


@pytest.mark.django_db(transaction=True)
def test_deleting_a_sensor_deletes_its_rollups(ingestor):
    sensor = cast(Sensor, SensorFactory(device__uid="probe-x", key="soil_moisture"))
    ingestor.ingest([raw("farm/probe-x/telemetry", {"ts": NOW_S - 60, "soil_moisture": 3})])
    rollups_refresh()
    assert RollupHour.objects.filter(sensor=sensor).exists()
    assert RollupDay.objects.filter(sensor=sensor).exists()

    sensor.delete()

    assert not RollupHour.objects.exists()
    assert not RollupDay.objects.exists()
