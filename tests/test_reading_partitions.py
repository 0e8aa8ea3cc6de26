"""Readings partitioned by time: conversion keeps every row, ingest fills partitions, retention drops whole ones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import cast

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings

from sensors.history.rollups import rollups_rebuild
from sensors.ingest.pipeline import Ingestor, WorkerConfig
from sensors.models import Reading, RollupDay, RollupHour, Sensor
from sensors.partitions import (
    DEFAULT,
    Partition,
    existing_partitions,
    partition_create,
    partition_for,
    partitions_drop_expired,
    partitions_ensure,
    reading_partitions_maintain,
)
from sensors.tasks import maintain_reading_partitions
from tests.factories import SensorFactory
from tests.test_ingest_store import NOW_S, raw


def _where(sensor_id: int) -> dict[datetime, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT ts, tableoid::regclass::text FROM sensors_reading WHERE sensor_id = %s", [sensor_id])
        return dict(cursor.fetchall())


def test_a_partition_is_a_whole_number_of_aligned_months():
    moment = datetime(2026, 5, 17, 3, tzinfo=UTC)
    assert partition_for(moment=moment, months=1) == Partition(date(2026, 5, 1), date(2026, 6, 1))
    assert partition_for(moment=moment, months=3) == Partition(date(2026, 4, 1), date(2026, 7, 1))
    assert partition_for(moment=datetime(2026, 12, 31, 23, tzinfo=UTC), months=1).end == date(2027, 1, 1)


@pytest.mark.django_db
def test_migrate_leaves_partitions_ready_ahead_of_now():
    now = datetime.now(tz=UTC)
    ends = [p.end for p in existing_partitions()]
    assert max(ends) > (now + timedelta(days=60)).date()
    assert partition_for(moment=now, months=1) in existing_partitions()


@pytest.mark.django_db
def test_ingest_copies_into_the_partition_of_each_reading():
    sensor = cast(Sensor, SensorFactory(device__uid="probe-p", key="soil_moisture"))
    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="test-partitions"))
    times = [NOW_S - 60, NOW_S - 45 * 86400]
    message = raw("farm/probe-p/telemetry", [{"ts": t, "soil_moisture": 1.0} for t in times])
    ingestor.ingest([message])
    ingestor.ingest([message])  # the slow path (a redelivery) too

    where = _where(sensor.pk)
    assert Reading.objects.count() == 2
    for ts, table in where.items():
        assert table == partition_for(moment=ts, months=1).name


@pytest.mark.django_db
def test_a_reading_no_partition_covers_goes_to_the_default_and_moves_when_one_is_made():
    sensor = cast(Sensor, SensorFactory())
    old = datetime(2001, 3, 4, tzinfo=UTC)
    Reading.objects.create(sensor=sensor, ts=old, value=1.0)
    assert _where(sensor.pk) == {old: DEFAULT}

    partitions_ensure(now=datetime.now(tz=UTC), months=1, ahead=1, since=old)

    assert _where(sensor.pk) == {old: "sensors_reading_p20010301_20010401"}


@pytest.mark.django_db
def test_a_range_overlapping_an_existing_partition_is_skipped():
    partition_create(partition=Partition(date(2000, 1, 1), date(2000, 7, 1)))
    created = partitions_ensure(
        now=datetime(2000, 6, 15, tzinfo=UTC), months=1, ahead=2, since=datetime(2000, 5, 2, tzinfo=UTC)
    )
    assert created == [Partition(date(2000, 7, 1), date(2000, 8, 1)), Partition(date(2000, 8, 1), date(2000, 9, 1))]


@pytest.mark.django_db
def test_retention_drops_only_whole_expired_partitions_and_keeps_rollups():
    sensor = cast(Sensor, SensorFactory(device__farm__time_zone="UTC"))
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    partitions_ensure(now=now, months=1, ahead=1, since=datetime(2026, 1, 1, tzinfo=UTC))
    times = [datetime(2026, 3, 31, 23, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC), datetime(2000, 1, 1, tzinfo=UTC)]
    Reading.objects.bulk_create([Reading(sensor=sensor, ts=t, value=2.0) for t in times])
    rollups_rebuild(sensor_ids=[sensor.pk], start=datetime(1999, 1, 1, tzinfo=UTC), end=now)
    before = (RollupHour.objects.count(), RollupDay.objects.count())

    # Cut-off 2026-04-01 12:00: March has wholly expired, April has not.
    dropped = partitions_drop_expired(now=now, retention=now - datetime(2026, 4, 1, 12, tzinfo=UTC))

    assert Partition(date(2026, 3, 1), date(2026, 4, 1)) in dropped
    assert Partition(date(2026, 4, 1), date(2026, 5, 1)) not in dropped
    assert sorted(Reading.objects.values_list("ts", flat=True)) == [
        datetime(2026, 4, 2, tzinfo=UTC)
    ]  # the default's old row too
    assert (RollupHour.objects.count(), RollupDay.objects.count()) == before == (3, 3)


@pytest.mark.django_db
def test_without_a_retention_nothing_is_dropped():
    partition_create(partition=Partition(date(1990, 1, 1), date(1990, 2, 1)))
    with override_settings(READINGS_RAW_RETENTION=0):
        _, dropped = reading_partitions_maintain(now=datetime.now(tz=UTC))
    assert dropped == []
    with override_settings(READINGS_RAW_RETENTION=400):
        assert maintain_reading_partitions()[1] == 1


@pytest.mark.django_db(transaction=True)
def test_the_conversion_keeps_every_row_of_a_table_with_data():
    executor = MigrationExecutor(connection)
    executor.migrate([("sensors", "0008_sensor_latest_from_readings")])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO sensors_reading (sensor_id, ts, value) "
                "SELECT i % 7, now() - i * interval '37 minutes', i FROM generate_series(1, 20000) i"
            )
            cursor.execute("INSERT INTO sensors_reading VALUES ('0001-01-02', 5, 99)")  # before any partition
            cursor.execute("SELECT sensor_id, ts, value FROM sensors_reading ORDER BY 1, 2")
            before = cursor.fetchall()
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    with connection.cursor() as cursor:
        cursor.execute("SELECT sensor_id, ts, value FROM sensors_reading ORDER BY 1, 2")
        assert cursor.fetchall() == before
        cursor.execute("SELECT count(DISTINCT tableoid) FROM sensors_reading")
        assert cursor.fetchone()[0] > 12
        cursor.execute("SELECT count(*) FROM sensors_reading_default")
        assert cursor.fetchone()[0] == 1
