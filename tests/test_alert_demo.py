"""Demo alert rules (alerts/demo.py) on the demo farm that ``make run`` seeds."""

from __future__ import annotations

import pytest

from alerts.demo import DEMO_RULES, demo_rules_ensure
from alerts.models import AlertRule
from farm.devstack.demo import demo_seed

pytestmark = pytest.mark.django_db


def test_the_demo_seed_gives_the_demo_farm_every_demo_rule_once():
    farm = demo_seed(username="demo", password="a long enough demo password").farm
    assert set(AlertRule.objects.filter(farm=farm).values_list("name", flat=True)) == set(DEMO_RULES)
    tank = AlertRule.objects.get(farm=farm, name="Irrigation tank low")
    assert (tank.scope, tank.device.uid if tank.device else None) == ("device", "70b3d57ed0051a3f")
    assert demo_rules_ensure(farm=farm) == []
    assert AlertRule.objects.filter(farm=farm).count() == len(DEMO_RULES)
