"""``sensor_series`` reads raw readings, hourly or daily rollups by range and width, in the same shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from sensors.history import selectors as history
from sensors.history.rollups import rollups_rebuild
from sensors.models import Reading, Sensor
from tests.factories import SensorFactory

START = datetime(2025, 1, 1, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def _sensor_with_a_year_every_20_minutes() -> Sensor:
    sensor = cast(Sensor, SensorFactory(device__farm__time_zone="Europe/London"))
    rows = [
        Reading(sensor=sensor, ts=START + timedelta(minutes=20 * i), value=float(i % 72)) for i in range(3 * 24 * 366)
    ]
    Reading.objects.bulk_create(rows, batch_size=5000)
    rollups_rebuild(sensor_ids=[sensor.pk], start=START - timedelta(days=2), end=START + timedelta(days=370))
    return sensor


@pytest.mark.parametrize(
    ("span", "max_points", "resolution", "bucket"),
    [
        (timedelta(days=7), 2000, "raw", 303),
        (timedelta(days=30), 2000, "hour", 3600),
        (timedelta(days=365), 2000, "hour", 18000),
        (timedelta(days=365), 200, "day", 172800),
    ],
)
def test_the_plan_picks_raw_hourly_or_daily_by_range_and_width(span, max_points, resolution, bucket):
    plan = history.series_plan(start=START, end=START + span, max_points=max_points)
    assert plan == (resolution, bucket)
    assert span.total_seconds() / bucket <= max_points


def test_many_sensors_over_a_long_range_read_days_not_hours():
    end = START + timedelta(days=365)
    assert history.series_plan(start=START, end=end, max_points=2000, sensors=2)[0] == "hour"
    assert history.series_plan(start=START, end=end, max_points=2000, sensors=8) == ("day", 86400)
    assert history.series_plan(start=START, end=START + timedelta(days=30), max_points=2000, sensors=8)[0] == "hour"


def test_a_wide_series_from_rollups_has_the_raw_series_counts_extremes_and_means():
    sensor = _sensor_with_a_year_every_20_minutes()
    end = START + timedelta(days=30)
    wide = history.sensor_series(sensor_ids=[sensor.pk], start=START, end=end, max_points=200)[sensor.pk]

    assert (wide.resolution, wide.bucket_seconds) == ("hour", 4 * 3600)
    assert len(wide.t) == 180
    assert sum(wide.count) == 3 * 24 * 30
    assert (min(wide.min), max(wide.max)) == (0.0, 71.0)
    raw_mean = sum(float(i % 72) for i in range(3 * 24 * 30)) / (3 * 24 * 30)
    assert sum(m * c for m, c in zip(wide.mean, wide.count, strict=True)) / sum(wide.count) == pytest.approx(raw_mean)
    assert wide.t[0] == int((START + timedelta(hours=2) - timedelta(minutes=10)).timestamp() * 1000)


def test_a_year_is_at_most_max_points_and_the_means_follow_the_same_plan():
    sensor = _sensor_with_a_year_every_20_minutes()
    end = START + timedelta(days=365)
    for max_points in (2000, 300, 40):
        one = history.sensor_series(sensor_ids=[sensor.pk], start=START, end=end, max_points=max_points)[sensor.pk]
        means = history.sensor_mean_series(sensor_ids=[sensor.pk], start=START, end=end, max_points=max_points)
        assert 0 < len(one.t) <= max_points
        assert sum(one.count) == 3 * 24 * 365
        assert means[sensor.pk].t == one.t


def test_zooming_into_a_day_reads_raw_readings():
    sensor = _sensor_with_a_year_every_20_minutes()
    day = START + timedelta(days=100)
    one = history.sensor_series(sensor_ids=[sensor.pk], start=day, end=day + timedelta(days=1), max_points=2000)
    assert one[sensor.pk].resolution == "raw"
    assert one[sensor.pk].count == [1] * 72


def test_eight_sensors_over_a_year_read_the_daily_rollups_in_one_statement(django_assert_num_queries):
    sensor = _sensor_with_a_year_every_20_minutes()
    others = [cast(Sensor, SensorFactory(device__farm=sensor.device.farm)) for _ in range(7)]
    end = START + timedelta(days=365)
    with django_assert_num_queries(1):
        series = history.sensor_series(
            sensor_ids=[sensor.pk, *(o.pk for o in others)], start=START, end=end, max_points=2000
        )
    one = series[sensor.pk]
    assert (one.resolution, one.bucket_seconds, len(one.t)) == ("day", 86400, 365)
    assert sum(one.count) == 3 * 24 * 365
    assert all(series[o.pk].t == [] for o in others)


def test_daily_rollups_give_the_local_days_of_the_farm():
    sensor = _sensor_with_a_year_every_20_minutes()
    days = history.sensor_daily(sensor_ids=[sensor.pk], first=START.date(), last=(START + timedelta(days=9)).date())
    one = days[sensor.pk]
    assert len(one.day) == 10
    assert one.count == [72] * 10  # January: London is on UTC
    assert one.sum[1] == sum(range(72))
