"""Readings never outlive their sensor, without a per-row foreign key (real PostgreSQL).

Migration 0006 replaced the foreign key with a delete trigger on sensors; the ingest
store locks every sensor of a batch and fails the batch if one is gone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import cast

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from sensors.history.selectors import with_latest
from sensors.ingest import pipeline as worker_module
from sensors.ingest.pipeline import Ingestor, WorkerConfig
from sensors.models import Reading, Sensor
from tests.factories import DeviceFactory, SensorFactory
from tests.mqtt_fixtures import wait_until
from tests.test_ingest_store import NOW_S, moment, raw


def _readings(sensor: Sensor, count: int = 3) -> None:
    start = timezone.now() - timedelta(hours=1)
    Reading.objects.bulk_create(
        [Reading(sensor=sensor, ts=start + timedelta(minutes=i), value=float(i)) for i in range(count)]
    )


def _orphans() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM sensors_reading r "
            "WHERE NOT EXISTS (SELECT 1 FROM sensors_sensor s WHERE s.id = r.sensor_id)"
        )
        return int(cursor.fetchone()[0])


def _ingestor() -> Ingestor:
    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="test-integrity"))
    ingestor.registry.check_interval = 3600  # the cache does not notice a deletion by itself
    return ingestor


def _record_integrity_errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The IntegrityErrors that ``store_batch`` raised to the worker, as text."""
    errors: list[str] = []
    real = worker_module.store_batch

    def recording(**kwargs):
        try:
            return real(**kwargs)
        except IntegrityError as exc:
            errors.append(str(exc))
            raise

    monkeypatch.setattr(worker_module, "store_batch", recording)
    return errors


# --- the delete trigger ------------------------------------------------------------------------


def test_a_deleted_sensor_takes_its_readings_with_it(db):
    sensor, other = cast(Sensor, SensorFactory()), cast(Sensor, SensorFactory())
    _readings(sensor)
    _readings(other)

    sensor.delete()

    assert set(Reading.objects.values_list("sensor_id", flat=True)) == {other.pk}
    assert Reading.objects.count() == 3


def test_a_deleted_device_takes_its_sensors_readings_with_it(db):
    sensor = cast(Sensor, SensorFactory(key="soil_moisture"))
    second = cast(Sensor, SensorFactory(device=sensor.device, key="soil_temperature"))
    other = cast(Sensor, SensorFactory())
    for s in (sensor, second, other):
        _readings(s)

    sensor.device.delete()

    assert set(Reading.objects.values_list("sensor_id", flat=True)) == {other.pk}


def test_a_deleted_farm_takes_its_devices_readings_with_it(db):
    sensor = cast(Sensor, SensorFactory())
    farm = sensor.device.farm
    neighbour = cast(Sensor, SensorFactory(device=DeviceFactory(farm=farm)))
    elsewhere = cast(Sensor, SensorFactory())
    for s in (sensor, neighbour, elsewhere):
        _readings(s)

    farm.delete()

    assert set(Reading.objects.values_list("sensor_id", flat=True)) == {elsewhere.pk}


# --- the ingest store's per-batch check ---------------------------------------------------------


def test_a_batch_for_a_sensor_deleted_behind_the_cache_stores_no_orphan_reading(db, monkeypatch):
    sensor = cast(Sensor, SensorFactory(device__uid="probe-1", key="soil_moisture"))
    ingestor = _ingestor()
    ingestor.ingest([raw("farm/probe-1/telemetry", {"ts": NOW_S - 2, "soil_moisture": 1})])
    errors = _record_integrity_errors(monkeypatch)
    deleted = sensor.pk
    sensor.delete()

    ingestor.ingest([raw("farm/probe-1/telemetry", {"ts": NOW_S - 1, "soil_moisture": 2})])

    assert errors == [f"readings for sensor(s) {deleted} that no longer exist"]
    assert _orphans() == 0
    renewed = Sensor.objects.get(device=sensor.device)  # retried with a fresh registry
    assert list(Reading.objects.values_list("sensor_id", "value")) == [(renewed.pk, 2.0)]


def test_the_latest_value_is_the_newest_reading_even_when_an_older_one_arrives_later(db):
    sensor = cast(Sensor, SensorFactory(device__uid="probe-1", key="soil_moisture"))
    ingestor = _ingestor()

    ingestor.ingest([raw("farm/probe-1/telemetry", {"ts": NOW_S - 1, "soil_moisture": 2})])
    ingestor.ingest([raw("farm/probe-1/telemetry", {"ts": NOW_S - 9, "soil_moisture": 1})])

    latest = with_latest(Sensor.objects.filter(pk=sensor.pk)).get()
    assert (latest.last_value, latest.last_ts) == (2.0, moment(NOW_S - 1))
    assert Reading.objects.count() == 2


# --- two connections ----------------------------------------------------------------------------


def _connect() -> psycopg.Connection:
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        dbname=settings["NAME"],
        password=settings["PASSWORD"],
    )


def _someone_waits_on_a_lock() -> bool:
    with _connect() as probe:
        row = probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


def _in_thread(target: Callable[[], object], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()  # this thread's own Django connection

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_deleting_sensors_outside_read_committed_is_refused_rather_than_orphaning_readings():
    # Under REPEATABLE READ the trigger's snapshot would miss readings an ingest batch committed
    # meanwhile; the trigger refuses, and the sensor and its readings stay.
    sensor = cast(Sensor, SensorFactory())
    _readings(sensor)

    with _connect() as other:
        other.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="READ COMMITTED"):
            other.execute("DELETE FROM sensors_sensor WHERE id = %s", [sensor.pk])
        other.rollback()

    assert Sensor.objects.filter(pk=sensor.pk).exists()
    assert Reading.objects.filter(sensor=sensor).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_batch_waiting_on_a_sensor_delete_that_commits_stores_no_orphan(monkeypatch):
    sensor = cast(Sensor, SensorFactory(device__uid="probe-1", key="soil_moisture"))
    ingestor = _ingestor()
    ingestor.registry.refresh()  # the cache still has the sensor
    integrity_errors = _record_integrity_errors(monkeypatch)
    errors: list[BaseException] = []
    other = _connect()
    try:
        other.execute("DELETE FROM sensors_sensor WHERE id = %s", [sensor.pk])  # not committed yet
        worker = _in_thread(
            lambda: ingestor.ingest([raw("farm/probe-1/telemetry", {"ts": NOW_S - 1, "soil_moisture": 2})]), errors
        )
        wait_until(_someone_waits_on_a_lock, timeout=10, what="the batch to wait for the delete's row lock")
        other.commit()
        worker.join(timeout=30)
    finally:
        other.close()

    assert not worker.is_alive()
    assert errors == []
    assert integrity_errors == [f"readings for sensor(s) {sensor.pk} that no longer exist"]
    assert _orphans() == 0
    renewed = Sensor.objects.get(device=sensor.device)
    assert renewed.pk != sensor.pk
    assert list(Reading.objects.values_list("sensor_id", "value")) == [(renewed.pk, 2.0)]


@pytest.mark.django_db(transaction=True)
def test_a_sensor_delete_waiting_on_a_batch_deletes_the_readings_it_committed():
    sensor = cast(Sensor, SensorFactory(device__uid="probe-1", key="soil_moisture"))
    SensorFactory(device__uid="probe-2", key="soil_moisture")
    ingestor = _ingestor()
    stored, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def ingest_and_hold() -> None:
        with transaction.atomic():  # the batch's locks last until this commits
            ingestor.ingest(
                [raw(f"farm/{uid}/telemetry", {"ts": NOW_S - 1, "soil_moisture": 2}) for uid in ("probe-1", "probe-2")]
            )
            stored.set()
            release.wait(timeout=30)

    other = _connect()

    def delete_the_sensor() -> None:
        try:
            other.execute("DELETE FROM sensors_sensor WHERE id = %s", [sensor.pk])
            other.commit()
        except BaseException as exc:
            errors.append(exc)

    try:
        worker = _in_thread(ingest_and_hold, errors)
        assert stored.wait(timeout=30)
        deleter = threading.Thread(target=delete_the_sensor)
        deleter.start()
        wait_until(_someone_waits_on_a_lock, timeout=10, what="the delete to wait for the batch's row lock")
        release.set()
        worker.join(timeout=30)
        deleter.join(timeout=30)
    finally:
        release.set()
        other.close()

    assert not worker.is_alive()
    assert not deleter.is_alive()
    assert errors == []
    assert not Sensor.objects.filter(pk=sensor.pk).exists()
    assert _orphans() == 0
    assert list(Reading.objects.values_list("sensor__device__uid", flat=True)) == ["probe-2"]


# --- the migration -------------------------------------------------------------------------------


def _schema() -> tuple[str | None, bool]:
    """The readings' foreign key as PostgreSQL declares it, and whether the delete trigger exists."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'sensors_reading_sensor_fk'"
        )
        row = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'sensors_sensor_delete_readings'")
        trigger = cursor.fetchone()[0]
    return (row[0] if row else None), bool(trigger)


@pytest.mark.django_db(transaction=True)
def test_the_reverse_migration_restores_the_cascading_foreign_key():
    assert _schema() == (None, True)
    try:
        MigrationExecutor(connection).migrate([("sensors", "0005_deadletter_fingerprint")])
        reversed_schema = _schema()
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert reversed_schema == (
        "FOREIGN KEY (sensor_id) REFERENCES sensors_sensor(id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED",
        False,
    )
    assert _schema() == (None, True)
