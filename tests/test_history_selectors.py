"""The readings' read side: series, sparkline means, latest values and recent rows (real PostgreSQL)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dashboard.live import farm_snapshot
from sensors.history import selectors as history
from sensors.history.types import LatestReading, ReadingPoint
from sensors.models import Sensor
from tests.dashboard_fixtures import every, farm_with_sensors, readings_insert
from tests.history_fixtures import HUGE_VALUES, NON_FINITE_VALUES, readings_insert_sql, strict_json

START = datetime(2025, 6, 1, 0, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

pytestmark = pytest.mark.django_db


def test_it_buckets_every_sensor_asked_for_in_one_statement(django_assert_num_queries):
    first, second, silent = farm_with_sensors(devices=3).sensors
    readings_insert(first, every(START, timedelta(minutes=1), [float(i) for i in range(60)]))
    readings_insert(second, every(START, timedelta(minutes=30), [5.0, 7.0]))
    with django_assert_num_queries(1):
        series = history.sensor_series(
            sensor_ids=[first.pk, second.pk, silent.pk], start=START, end=START + HOUR, max_points=4
        )
    assert series[first.pk].bucket_seconds == 900
    assert series[first.pk].count == [15] * 4
    assert series[first.pk].mean == [7.0, 22.0, 37.0, 52.0]
    assert series[first.pk].min == [0.0, 15.0, 30.0, 45.0]
    assert series[first.pk].max == [14.0, 29.0, 44.0, 59.0]
    assert (series[second.pk].mean, series[second.pk].count) == ([5.0, 7.0], [1, 1])
    assert series[silent.pk].t == []
    assert series[silent.pk].sensor_id == silent.pk


def test_a_point_sits_at_the_mean_time_of_its_readings():
    [sensor] = farm_with_sensors().sensors
    readings_insert(sensor, [(START + timedelta(minutes=10), 1.0), (START + timedelta(minutes=20), 3.0)])
    [t] = history.sensor_series(sensor_ids=[sensor.pk], start=START, end=START + HOUR, max_points=1)[sensor.pk].t
    assert t == int((START + timedelta(minutes=15)).timestamp() * 1000)


def test_the_range_is_half_open():
    [sensor] = farm_with_sensors().sensors
    readings_insert(sensor, [(START - timedelta(microseconds=1), 1.0), (START, 2.0), (START + HOUR, 3.0)])
    one = history.sensor_series(sensor_ids=[sensor.pk], start=START, end=START + HOUR, max_points=10)[sensor.pk]
    assert one.mean == [2.0]


def test_a_series_never_carries_more_than_max_points():
    [sensor] = farm_with_sensors().sensors
    readings_insert(sensor, every(START, timedelta(seconds=7), [1.0] * 2000))
    end = START + timedelta(seconds=7 * 2000)
    for max_points in (1, 3, 17, 500):
        one = history.sensor_series(sensor_ids=[sensor.pk], start=START, end=end, max_points=max_points)[sensor.pk]
        assert len(one.t) <= max_points
        assert sum(one.count) == 2000


def test_the_mean_series_has_the_series_buckets():
    [sensor] = farm_with_sensors().sensors
    readings_insert(sensor, every(START, timedelta(seconds=45), [float(i % 13) for i in range(80)]))
    window: dict[str, Any] = {"sensor_ids": [sensor.pk], "start": START, "end": START + HOUR, "max_points": 12}
    full = history.sensor_series(**window)[sensor.pk]
    means = history.sensor_mean_series(**window)[sensor.pk]
    assert (means.t, means.mean) == (full.t, full.mean)


def test_no_sensors_costs_no_query(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert history.sensor_series(sensor_ids=[], start=START, end=START + HOUR, max_points=10) == {}
        assert history.sensor_mean_series(sensor_ids=[], start=START, end=START + HOUR, max_points=10) == {}


def test_it_refuses_fewer_than_one_point():
    with pytest.raises(ValueError, match="max_points"):
        history.sensor_series(sensor_ids=[1], start=START, end=START + HOUR, max_points=0)


def test_a_huge_value_leaves_the_mean_of_its_bucket_exact():
    [sensor] = farm_with_sensors().sensors
    readings_insert_sql(sensor, [(START, 1e155), (START + timedelta(seconds=1), 1.0)])
    one = history.sensor_series(sensor_ids=[sensor.pk], start=START, end=START + HOUR, max_points=1)[sensor.pk]
    assert (one.mean, one.min, one.max, one.count) == ([5e154], [1.0], [1e155], [2])


def test_values_beyond_any_sensor_give_a_finite_bounded_mean():
    [sensor] = farm_with_sensors().sensors
    readings_insert_sql(sensor, every(START, timedelta(seconds=1), HUGE_VALUES))
    one = history.sensor_series(sensor_ids=[sensor.pk], start=START, end=START + HOUR, max_points=1)[sensor.pk]
    [mean] = one.mean
    assert math.isfinite(mean)
    assert -1e300 <= mean <= 1.7e308
    assert (one.min, one.max, one.count) == ([-1e300], [1.7e308], [4])


def test_non_finite_values_are_never_read():
    [sensor] = farm_with_sensors().sensors
    readings_insert_sql(sensor, [(START, 12.5)])
    readings_insert_sql(sensor, every(START + timedelta(minutes=1), timedelta(seconds=1), NON_FINITE_VALUES))
    window: dict[str, Any] = {"sensor_ids": [sensor.pk], "start": START, "end": START + HOUR, "max_points": 60}
    one = history.sensor_series(**window)[sensor.pk]
    assert (one.mean, one.min, one.max, one.count) == ([12.5], [12.5], [12.5], [1])
    assert history.sensor_mean_series(**window)[sensor.pk].mean == [12.5]
    [latest] = history.latest_readings(sensors=Sensor.objects.filter(pk=sensor.pk))
    assert (latest.value, latest.ts) == (12.5, START)
    assert history.sensor_readings_latest(sensor_id=sensor.pk) == [ReadingPoint(ts=START, value=12.5)]


def test_the_latest_reading_skips_times_python_cannot_hold():
    [sensor] = farm_with_sensors().sensors
    readings_insert_sql(sensor, [(START, 3.0), ("infinity", 1.0), ("20000-01-01 UTC", 2.0)])
    [latest] = history.latest_readings(sensors=Sensor.objects.filter(pk=sensor.pk))
    assert (latest.value, latest.ts) == (3.0, START)
    assert [point.value for point in history.sensor_readings_latest(sensor_id=sensor.pk)] == [3.0]


def test_latest_readings_name_each_sensor_and_device_in_queryset_order():
    setup = farm_with_sensors(devices=2)
    first, second = setup.sensors
    readings_insert(first, [(START, 1.0), (START + HOUR, 2.0)])
    latest = history.latest_readings(sensors=Sensor.objects.filter(pk__in=[first.pk, second.pk]).order_by("-pk"))
    assert latest == [
        LatestReading(sensor_id=second.pk, device_id=second.device_id, value=None, ts=None),
        LatestReading(sensor_id=first.pk, device_id=first.device_id, value=2.0, ts=START + HOUR),
    ]


def test_recent_readings_are_newest_first_and_bounded():
    [sensor] = farm_with_sensors().sensors
    readings_insert(sensor, every(START, timedelta(minutes=1), [float(i) for i in range(10)]))
    recent = history.sensor_readings_latest(sensor_id=sensor.pk, limit=3)
    assert [point.value for point in recent] == [9.0, 8.0, 7.0]


def test_the_live_snapshot_never_carries_a_number_json_has_not():
    setup = farm_with_sensors(devices=2)
    huge, broken = setup.sensors
    readings_insert_sql(huge, [(START, 1.7e308)])
    readings_insert_sql(broken, [(START, 4.0), (START + timedelta(seconds=1), float("nan"))])
    sensors = {entry["sensor"]: entry["value"] for entry in strict_json(farm_snapshot(setup.farm.pk))["sensors"]}
    assert sensors == {huge.pk: 1.7e308, broken.pk: 4.0}
