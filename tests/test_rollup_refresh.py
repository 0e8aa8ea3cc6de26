"""The dirty-bucket log and its refresher: nothing lost to a concurrent batch, none counted twice, rollups kept."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction

from sensors.history.rollups import ROLLUP_LOCK, rollups_rebuild, rollups_refresh
from sensors.ingest.pipeline import Ingestor, WorkerConfig
from sensors.models import Reading, RollupDay, RollupHour, Sensor
from tests.factories import SensorFactory
from tests.test_ingest_store import NOW_S, raw
from tests.test_rollups import _assert_rollups_match_raw

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ingestor() -> Ingestor:
    ingestor = Ingestor(config=WorkerConfig.from_settings(client_id="test-rollup-refresh"))
    ingestor.registry.check_interval = 0
    return ingestor


_LOG_EVERY_HOUR = (
    "INSERT INTO sensors_rollupdirty SELECT s.device_id, bucket FROM sensors_rolluphour "
    "JOIN sensors_sensor s ON s.id = sensor_id"
)


def _logged() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sensors_rollupdirty")
        return cursor.fetchone()[0]


def _probe() -> Sensor:
    sensor = SensorFactory(device__uid="probe-r", device__farm__time_zone="Asia/Kolkata", key="soil_moisture")
    return cast(Sensor, sensor)


def _reading(ts: float, value: float):
    return raw("farm/probe-r/telemetry", {"ts": ts, "soil_moisture": value})


@contextmanager
def _transaction_held_open(work: Callable[[], None]) -> Iterator[None]:
    """Run ``work`` in a transaction on another thread (its own connection) and hold it open inside the block."""
    done, release = threading.Event(), threading.Event()

    def run() -> None:
        try:
            with transaction.atomic():
                work()
                done.set()
                assert release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    assert done.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join(10)


def test_a_batch_committing_during_a_refresh_keeps_its_log_rows_for_the_next_one(ingestor):
    sensor = _probe()
    ingestor.ingest([_reading(NOW_S - 600, 10.0)])

    with _transaction_held_open(
        lambda: ingestor.ingest([_reading(NOW_S - 300, 30.0), _reading(NOW_S - 3 * 86400, 5.0)])
    ):
        first = rollups_refresh()
    # the late batch has committed now

    assert first.ran
    assert first.logged == 1  # the open batch's log rows were not claimed
    assert RollupHour.objects.get(sensor=sensor).count == 1
    assert _logged() == 2  # committed after the claim: left for the next refresh
    rollups_refresh()
    assert _logged() == 0
    assert sum(RollupHour.objects.values_list("count", flat=True)) == 3
    _assert_rollups_match_raw([sensor.pk])


def _lock() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROLLUP_LOCK])


def test_a_second_refresher_leaves_the_log_to_the_one_holding_the_lock(ingestor):
    sensor = _probe()
    ingestor.ingest([_reading(NOW_S - 60, 10.0)])

    with _transaction_held_open(_lock):  # another refresher is running
        skipped = rollups_refresh()

    assert not skipped.ran
    assert _logged() == 1
    assert not RollupHour.objects.exists()
    assert rollups_refresh().ran
    _assert_rollups_match_raw([sensor.pk])


def test_a_redelivered_reading_dirties_nothing_and_counts_once(ingestor):
    sensor = _probe()
    message = _reading(NOW_S - 60, 12.5)
    ingestor.ingest([message])
    rollups_refresh()

    ingestor.ingest([message])  # the broker delivers it again

    assert _logged() == 0
    rollups_refresh()
    assert RollupHour.objects.get(sensor=sensor).count == 1
    assert RollupDay.objects.get(sensor=sensor).count == 1


def test_refreshing_again_or_the_same_hours_twice_changes_nothing(ingestor):
    sensor = _probe()
    ingestor.ingest([_reading(NOW_S - 60 * k, float(k)) for k in range(1, 200)])
    rollups_refresh()
    before = (list(RollupHour.objects.values_list()), list(RollupDay.objects.values_list()))

    assert rollups_refresh().hours == 0
    with connection.cursor() as cursor:  # every hour logged dirty twice more
        cursor.execute(_LOG_EVERY_HOUR)
        cursor.execute(_LOG_EVERY_HOUR)
    again = rollups_refresh()

    assert again.hours == RollupHour.objects.count()
    assert again.logged == 2 * again.hours
    assert (list(RollupHour.objects.values_list()), list(RollupDay.objects.values_list())) == before
    _assert_rollups_match_raw([sensor.pk])


def test_a_bucket_whose_readings_are_gone_is_deleted_but_one_older_than_raw_retention_is_kept(settings):
    sensor = _probe()
    now = datetime.now(tz=UTC)
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    Reading.objects.bulk_create([Reading(sensor=sensor, ts=t, value=1.0) for t in (old, recent)])
    rollups_rebuild(sensor_ids=[sensor.pk], start=now - timedelta(days=60), end=now)
    assert RollupHour.objects.count() == RollupDay.objects.count() == 2
    settings.READINGS_RAW_RETENTION = 30
    with connection.cursor() as cursor:  # both readings gone behind ingest's back, their hours logged dirty
        cursor.execute("DELETE FROM sensors_reading WHERE sensor_id = %s", [sensor.pk])
        cursor.execute(
            f"{_LOG_EVERY_HOUR} WHERE sensor_id = %s",
            [sensor.pk],
        )

    result = rollups_refresh()

    assert (result.logged, result.hours) == (2, 1)  # the hour past the horizon was dropped from the log
    assert list(RollupHour.objects.values_list("bucket", flat=True)) == [old.replace(minute=0, second=0, microsecond=0)]
    assert RollupDay.objects.count() == 1
    assert _logged() == 0


def test_the_refresh_command_reports_what_it_recomputed(ingestor, capsys):
    _probe()
    ingestor.ingest([_reading(NOW_S - 60, 10.0), _reading(NOW_S - 7200, 11.0)])

    call_command("refresh_rollups")

    assert "2 log rows: 2 hours and " in capsys.readouterr().out
    assert RollupHour.objects.count() == 2


def test_beat_runs_the_refresh_task_every_few_seconds(ingestor, settings):
    from sensors.tasks import refresh_rollups

    entry = settings.CELERY_BEAT_SCHEDULE["sensors-refresh-rollups"]
    assert entry["task"] == refresh_rollups.name
    assert entry["schedule"] <= 15
    _probe()
    ingestor.ingest([_reading(NOW_S - 60, 10.0)])

    assert refresh_rollups() == 1
    assert RollupDay.objects.get().count == 1
