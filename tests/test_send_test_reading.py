"""``manage.py send_test_reading``: its arguments. Publishing and storing are covered beside ``make run``
(tests/test_make_run_smoke.py runs the README's command)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from sensors.models import DeviceKind
from sensors.probereading import default_values, parse_values
from sensors.services import device_register
from tests.factories import FarmFactory

pytestmark = pytest.mark.django_db


def test_metric_value_pairs_are_parsed():
    assert parse_values(["soil_moisture=27.5", "battery=80"]) == {"soil_moisture": 27.5, "battery": 80.0}


@pytest.mark.parametrize(("pair", "reason"), [("soil_moisture", "is not metric=value"), ("=3", "is not metric=value"),
                                              ("soil_moisture=wet", "'wet' is not a number")])  # fmt: skip
def test_a_bad_pair_is_named(pair, reason):
    with pytest.raises(ValueError, match=reason):
        parse_values([pair])


def test_without_values_each_sensor_gets_the_middle_of_its_plausible_range():
    device = device_register(uid="probe-1", name="Probe", farm=FarmFactory.create(),
                             kind=DeviceKind.objects.get(slug="soil-probe"))  # fmt: skip
    values = default_values(device)
    assert set(values) == {"soil_moisture", "soil_temperature", "soil_ec"}
    for sensor in device.sensors.all():
        if sensor.min_value is not None and sensor.max_value is not None:
            assert sensor.min_value <= values[sensor.key] <= sensor.max_value


def test_an_unregistered_uid_is_refused_before_anything_is_published():
    with pytest.raises(CommandError, match="no device with the uid 'nobody-here'"):
        call_command("send_test_reading", "nobody-here")
