"""Plausible ranges that fit each metric (sensors/migrations/0012_metric_ranges.py)."""

from __future__ import annotations

from importlib import import_module

import pytest
from django.apps import apps

from sensors.models import DeviceKind, MetricSpec
from sensors.simulator.physics import CATALOGUE
from tests.factories import DeviceFactory, SensorFactory

pytestmark = pytest.mark.django_db

migration = import_module("sensors.migrations.0012_metric_ranges")


def test_the_shipped_water_level_is_0_to_10_metres_not_100():
    spec = MetricSpec.objects.get(kind__slug="water-level", key="water_level")
    assert (spec.unit, spec.min_value, spec.max_value) == ("m", 0.0, 10.0)


def test_it_fixes_sensors_still_on_the_shipped_range_and_leaves_tuned_ones_alone():
    kind = DeviceKind.objects.get(slug="water-level")
    shipped = SensorFactory.create(
        device=DeviceFactory.create(kind=kind), key="water_level", unit="m", min_value=0.0, max_value=100.0
    )
    tuned = SensorFactory.create(
        device=DeviceFactory.create(kind=kind), key="water_level", unit="m", min_value=0.0, max_value=4.0
    )
    migration.ranges_fix(apps, None)
    shipped.refresh_from_db()
    tuned.refresh_from_db()
    assert (shipped.min_value, shipped.max_value) == (0.0, 10.0)
    assert (tuned.min_value, tuned.max_value) == (0.0, 4.0)

    migration.ranges_restore(apps, None)
    shipped.refresh_from_db()
    assert (shipped.min_value, shipped.max_value) == (0.0, 100.0)
    assert MetricSpec.objects.get(kind=kind, key="water_level").max_value == 100.0


def test_the_simulator_uses_the_shipped_ranges():
    specs = {s.key: (s.unit, s.min_value, s.max_value) for s in MetricSpec.objects.filter(kind__slug__in=_SHIPPED)}
    assert {key: (m.unit, m.low, m.high) for key, m in CATALOGUE.items()} == specs


_SHIPPED = ["soil-probe", "air-th", "rain-gauge", "weather-station", "water-level", "battery-monitor"]
