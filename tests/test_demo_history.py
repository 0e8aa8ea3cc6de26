"""The demo farm's seeded past (farm/devstack/history.py): a season worth looking at, exact rollups, and quick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from alerts.demo import demo_rules_ensure
from alerts.models import AlertEpisode
from farm.devstack.demo import demo_farm_create
from farm.devstack.history import HISTORY_DAYS, LIVE_BACKFILL_HOURS, HistorySeeded, demo_history_seed
from farm.models import Farm, Field
from history.summaries import farm_summary
from outbox.models import OutboxMessage
from sensors.history.rollups import RECOMPUTE_DAYS_SQL, RECOMPUTE_HOURS_SQL
from sensors.models import Reading, Sensor
from sensors.simulator.physics import sample
from sensors.simulator.registry import registered_sim_devices

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)  # a fixed day: the season's weather is a function of the date


def _seed(days: int) -> tuple[Farm, HistorySeeded]:
    farm = demo_farm_create(now=NOW)
    demo_rules_ensure(farm=farm)
    return farm, demo_history_seed(farm=farm, now=NOW, days=days)


@pytest.fixture
def seeded() -> tuple[Farm, HistorySeeded]:
    return _seed(HISTORY_DAYS)


@pytest.fixture
def fortnight() -> tuple[Farm, HistorySeeded]:
    """Two weeks are enough to check the rollups and the seam (and take a sixth of the time)."""
    return _seed(14)


def test_the_demo_has_a_season_of_weather_gdd_chill_soil_moisture_and_past_alerts_that_notify_nobody(seeded):
    farm, history = seeded
    assert history.first_day.isoformat() == "2026-09-04"
    meadow = Field.objects.get(farm=farm, slug="north-meadow")
    assert meadow.season_start is not None
    assert meadow.season_start > history.first_day
    summary = farm_summary(farm=farm, fld=meadow, first=history.first_day, last=NOW.date() - timedelta(days=2))

    assert len(summary.days) == HISTORY_DAYS - 1
    rain = [d.rain for d in summary.days]
    assert all(r is not None for r in rain)
    assert 15 <= sum(1 for r in rain if r and r >= 1.0) <= 60  # rain events, and dry spells between them
    assert sum(1 for r in rain if r == 0) >= 10
    assert all(d.t_max - d.t_min >= 2 for d in summary.days if d.t_min is not None and d.t_max is not None)
    assert (summary.days[-1].gdd_sum or 0) > 100
    assert sum(d.chill_hours or 0 for d in summary.days) > 50
    lows = [low for d in summary.days for low, _ in d.soil if low is not None]
    highs = [high for d in summary.days for _, high in d.soil if high is not None]
    assert max(highs) - min(lows) >= 10  # the soil dries out and wets up again
    orchard = farm_summary(farm=farm, fld=Field.objects.get(farm=farm, slug="orchard"), first=history.first_day,
                           last=history.first_day + timedelta(days=30))  # fmt: skip
    assert sum(d.rain or 0 for d in orchard.days) > 0  # no gauge of its own: the farm's

    episodes = list(AlertEpisode.objects.filter(rule__farm=farm).select_related("rule"))
    assert len(episodes) == history.episodes > 0
    start = datetime.combine(history.first_day, datetime.min.time(), tzinfo=UTC) - timedelta(hours=1)
    for episode in episodes:
        assert episode.ended_at is not None
        assert start <= episode.started_at < episode.ended_at <= history.end
        rule = episode.rule
        assert episode.worst_value is not None
        assert rule.threshold is not None
        assert episode.worst_value < rule.threshold if rule.kind == "below" else episode.worst_value > rule.threshold
    assert not OutboxMessage.objects.exists()


def _rows(sql: str, ids: list[int], start: datetime, end: datetime) -> set[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, {"sensor_ids": ids, "start": start, "end": end})
        return {(r[0], r[1], r[2], float(r[3]), r[4], r[5]) for r in cursor.fetchall()}


def test_the_seeded_rollups_are_exact_and_the_history_ends_before_the_simulators_backfill_agreeing_with_it(
    fortnight,
):
    farm, history = fortnight
    ids = list(Sensor.objects.filter(device__farm=farm).values_list("pk", flat=True))
    start, end = NOW - timedelta(days=HISTORY_DAYS + 1), NOW
    with connection.cursor() as cursor:
        cursor.execute("SELECT sensor_id, bucket, count, sum, min, max FROM sensors_rolluphour "
                       "WHERE sensor_id = ANY(%s)", [ids])  # fmt: skip
        hours = {(r[0], r[1], r[2], float(r[3]), r[4], r[5]) for r in cursor.fetchall()}
        cursor.execute("SELECT sensor_id, day, count, sum, min, max FROM sensors_rollupday "
                       "WHERE sensor_id = ANY(%s)", [ids])  # fmt: skip
        days = {(r[0], r[1], r[2], float(r[3]), r[4], r[5]) for r in cursor.fetchall()}

    assert len(days) >= 14 * len(ids)
    assert hours == {r[:6] for r in _rows(RECOMPUTE_HOURS_SQL, ids, start, end)}
    assert days == {r[:6] for r in _rows(RECOMPUTE_DAYS_SQL, ids, start, end)}

    last = Reading.objects.filter(sensor__device__farm=farm).order_by("-ts").values_list("ts", flat=True).first()
    assert last is not None
    assert last < NOW - timedelta(hours=LIVE_BACKFILL_HOURS) == history.end
    for device in registered_sim_devices(farm_slug=farm.slug):
        stored = Reading.objects.filter(sensor__device__uid=device.uid).order_by("-ts").first()
        assert stored is not None
        t = int(stored.ts.timestamp())
        assert t % device.interval == 0  # on the device's interval grid, where the simulator publishes
        published = sample(device.physics, device.keys, t, since=t - device.interval, ranges=device.ranges)
        assert published[stored.sensor.key] == stored.value
