"""The chart endpoint: downsampled in the database, authorized like the page."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from dashboard import charts
from sensors.history.selectors import bucket_seconds_for
from sensors.history.types import MeanSeries
from tests.dashboard_fixtures import every, farm_with_sensors, member_of, readings_insert
from tests.factories import UserFactory
from tests.history_fixtures import HUGE_VALUES, NON_FINITE_VALUES, readings_insert_sql, strict_json

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db


def series_url(farm, sensor_id: int) -> str:
    return reverse("farm-sensor-series", args=[farm.slug, sensor_id])


@pytest.fixture
def setup():
    return farm_with_sensors(devices=2)


@pytest.fixture
def manager_client(setup):
    client = Client()
    client.force_login(member_of(setup.farm).user)
    return client


@time_machine.travel(NOW, tick=False)
def test_it_buckets_a_known_hour_into_one_point_per_minute(setup, manager_client):
    sensor = setup.sensors[0]
    # window_end rounds now up by a second, so the hour starts one second after NOW - 1 h.
    start = NOW - timedelta(hours=1) + timedelta(seconds=1)
    readings_insert(sensor, every(start, timedelta(seconds=10), [float(i) for i in range(360)]))
    body = manager_client.get(series_url(setup.farm, sensor.pk), {"range": "1h", "width": 60}).json()
    assert body["bucket_seconds"] == 60
    assert len(body["t"]) == 60
    assert body["count"] == [6] * 60
    assert body["min"] == [6.0 * k for k in range(60)]
    assert body["max"] == [6.0 * k + 5 for k in range(60)]
    assert body["avg"] == [6.0 * k + 2.5 for k in range(60)]
    # Each point sits at the mean time of its readings: 25 s into its minute.
    assert body["t"][0] == int((start + timedelta(seconds=25)).timestamp() * 1000)


@time_machine.travel(NOW, tick=False)
def test_a_week_of_dense_data_never_exceeds_the_requested_width(setup, manager_client):
    sensor = setup.sensors[0]
    rng = random.Random(4)
    start = NOW - timedelta(days=7) + timedelta(seconds=1)  # the window is [now + 1 s - 7 d, now + 1 s)
    readings_insert(sensor, every(start, timedelta(seconds=30), [rng.uniform(10, 40) for _ in range(7 * 2880)]))
    body = manager_client.get(series_url(setup.farm, sensor.pk), {"range": "7d", "width": 500}).json()
    assert 490 <= len(body["t"]) <= 500
    assert sum(body["count"]) == 7 * 2880
    assert all(lo <= avg <= hi for lo, avg, hi in zip(body["min"], body["avg"], body["max"], strict=True))
    assert body["t"] == sorted(body["t"])


@time_machine.travel(NOW, tick=False)
def test_the_width_is_capped(setup, manager_client):
    body = manager_client.get(series_url(setup.farm, setup.sensors[0].pk), {"range": "7d", "width": 10**6}).json()
    assert body["width"] == charts.MAX_WIDTH
    assert body["bucket_seconds"] == bucket_seconds_for(span_seconds=7 * 86400, max_points=charts.MAX_WIDTH)


@time_machine.travel(NOW, tick=False)
def test_it_reads_only_the_requested_sensor_and_range(setup, manager_client):
    mine, other = setup.sensors
    readings_insert(mine, [(NOW - timedelta(hours=2), 1.0), (NOW - timedelta(minutes=30), 2.0)])
    readings_insert(other, [(NOW - timedelta(minutes=20), 99.0)])
    body = manager_client.get(series_url(setup.farm, mine.pk), {"range": "1h"}).json()
    assert body["avg"] == [2.0]
    assert body["sensor"] == {
        "id": mine.pk, "label": mine.label, "unit": "%", "min": 0.0, "max": 100.0, "span": 5.0,
        "device": mine.device.name,
    }  # fmt: skip
    assert body["time_zone"] == setup.farm.time_zone


def test_it_defaults_to_six_hours(setup, manager_client):
    body = manager_client.get(series_url(setup.farm, setup.sensors[0].pk)).json()
    assert body["range"] == "6h"
    assert body["end"] - body["start"] == 6 * 3600 * 1000


@pytest.mark.parametrize("query", [{"range": "5y"}, {"width": "wide"}, {"width": "0"}])
def test_it_rejects_a_malformed_query(setup, manager_client, query):
    response = manager_client.get(series_url(setup.farm, setup.sensors[0].pk), query)
    assert response.status_code == 400
    assert "error" in response.json()


def test_a_stranger_gets_404(setup):
    client = Client()
    client.force_login(member_of(farm_with_sensors().farm).user)
    assert client.get(series_url(setup.farm, setup.sensors[0].pk)).status_code == 404


def test_a_sensor_of_another_farm_is_404_even_through_a_farm_the_user_sees(setup, manager_client):
    elsewhere = farm_with_sensors()
    assert manager_client.get(series_url(setup.farm, elsewhere.sensors[0].pk)).status_code == 404


def test_staff_may_read_any_farm(setup):
    client = Client()
    client.force_login(UserFactory.create(is_staff=True))
    assert client.get(series_url(setup.farm, setup.sensors[0].pk)).status_code == 200


def test_anonymous_is_sent_to_log_in(setup):
    response = Client().get(series_url(setup.farm, setup.sensors[0].pk))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@time_machine.travel(NOW, tick=False)
def test_the_sparklines_endpoint_gives_each_sensor_its_last_hours(setup, manager_client):
    first, second = setup.sensors
    readings_insert(first, every(NOW - timedelta(hours=3), timedelta(minutes=1), [20.0] * 120))
    readings_insert(first, [(NOW - timedelta(hours=7), 1.0)])  # older than the sparkline window
    body = manager_client.get(reverse("farm-sparklines", args=[setup.farm.slug])).json()
    assert body["seconds"] == charts.SPARKLINE_SECONDS
    assert body["lines"][str(second.pk)] == []
    points = body["lines"][str(first.pk)]
    assert 0 < len(points) <= charts.SPARKLINE_BUCKETS
    assert {value for _, value in points} == {20.0}


@time_machine.travel(NOW, tick=False)
def test_a_huge_value_beside_a_normal_one_is_charted_not_a_500(setup, manager_client):
    sensor = setup.sensors[0]
    # The reported message: both stored, then the chart's avg(float8) overflowed.
    readings_insert_sql(sensor, [(NOW - timedelta(seconds=60), 1e155), (NOW - timedelta(seconds=59), 1.0)])
    response = manager_client.get(series_url(setup.farm, sensor.pk), {"range": "1h", "width": 6})
    assert response.status_code == 200
    body = strict_json(response.content)
    assert (body["avg"], body["min"], body["max"], body["count"]) == ([5e154], [1.0], [1e155], [2])


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("range_key", list(charts.RANGES))
def test_no_stored_value_makes_the_series_fail_or_carry_a_number_json_has_not(setup, manager_client, range_key):
    sensor = setup.sensors[0]
    hostile = [*HUGE_VALUES, *NON_FINITE_VALUES]
    readings_insert(sensor, every(NOW - timedelta(minutes=50), timedelta(seconds=30), [20.0] * 10))
    readings_insert_sql(sensor, every(NOW - timedelta(minutes=40), timedelta(seconds=1), hostile))
    response = manager_client.get(series_url(setup.farm, sensor.pk), {"range": range_key, "width": 10})
    assert response.status_code == 200
    body = strict_json(response.content)
    assert sum(body["count"]) == 10 + len(HUGE_VALUES)  # non-finite rows are not readings anyone can chart
    assert min(body["min"]) == -1e300
    assert max(body["max"]) == 1.7e308
    assert all(lo <= avg <= hi for lo, avg, hi in zip(body["min"], body["avg"], body["max"], strict=True))


@time_machine.travel(NOW, tick=False)
def test_no_stored_value_makes_the_sparklines_fail_or_carry_a_number_json_has_not(setup, manager_client):
    huge, broken = setup.sensors
    readings_insert_sql(huge, every(NOW - timedelta(hours=1), timedelta(seconds=1), HUGE_VALUES))
    readings_insert_sql(broken, every(NOW - timedelta(hours=1), timedelta(seconds=1), NON_FINITE_VALUES))
    response = manager_client.get(reverse("farm-sparklines", args=[setup.farm.slug]))
    assert response.status_code == 200
    lines = strict_json(response.content)["lines"]
    assert lines[str(broken.pk)] == []
    means = [mean for _, mean in lines[str(huge.pk)]]
    assert means
    assert all(-1e300 <= mean <= 1.7e308 for mean in means)


@pytest.mark.parametrize(
    ("unit", "low", "high", "expected"),
    [
        ("°C", -40.0, 60.0, 2.0),
        ("%", 0.0, 100.0, 5.0),
        ("V", 0.0, 5.0, 0.2),
        ("ppm", 0.0, 5000.0, 250.0),
        ("", None, None, 0.0),
    ],
)
def test_a_metric_has_a_least_y_span_from_its_unit_or_else_its_plausible_range(unit, low, high, expected):
    assert charts.min_span(unit=unit, min_value=low, max_value=high) == expected


def test_noise_is_not_magnified_but_a_real_swing_is_drawn_full_height():
    assert charts.y_window(20.0, 20.3, span=2.0) == (19.15, 21.15)
    assert charts.y_window(10.0, 30.0, span=2.0) == (10.0, 30.0)
    # Kept inside the plausible range where it fits: no rain sits on the floor.
    assert charts.y_window(0.0, 0.0, span=1.0, min_value=0.0, max_value=200.0) == (0.0, 1.0)
    assert charts.y_window(99.9, 100.0, span=5.0, min_value=0.0, max_value=100.0) == (95.0, 100.0)


def test_a_sparkline_of_noise_stays_near_the_middle():
    spark = MeanSeries(sensor_id=1, t=[0, 1000, 2000], mean=[20.0, 20.1, 20.0])
    paths = charts.sparkline_paths(spark, start_ms=0, end_ms=2000, span=2.0)
    ys = [float(point.split(",")[1]) for point in paths.line[1:].split(" L")]
    assert max(ys) - min(ys) < 2.0  # of a 32-unit box: a 0.1 °C wobble is a ripple, not a cliff
