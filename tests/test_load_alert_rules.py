"""manage.py load_alert_rules: all or nothing, every bad entry by position and reason, idempotent by (farm, name)."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import cast

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from alerts.loading import parse_duration
from alerts.models import AlertAudit, AlertRule
from farm.models import Farm, Field, Role
from sensors.models import Device
from tests.factories import DeviceFactory, FarmFactory, FieldFactory, MembershipFactory, SensorFactory, UserFactory

pytestmark = pytest.mark.django_db

GOOD = """
- farm: brookside           # slug or name
  name: Soil too dry
  metric: soil_moisture
  field: north-meadow
  condition: below
  threshold: 20
  clear: 23
  for: 30m
  severity: warning
- farm: Brookside Farm
  name: Greenhouse band
  metric: air_temperature
  condition: outside
  threshold: [5, 30]
  clear: [6, 28]
  severity: critical
  note: open the vents
- farm: brookside
  name: Probe 1 quiet
  metric: soil_moisture
  sensor: probe-1
  condition: no_data
  for: 2h
"""


@pytest.fixture
def farm() -> Farm:
    farm = cast(Farm, FarmFactory(slug="brookside", name="Brookside Farm"))
    FieldFactory(farm=farm, slug="north-meadow", name="North meadow")
    SensorFactory(device=DeviceFactory(farm=farm, uid="probe-1"), key="soil_moisture")
    return farm


def load(tmp_path: Path, text: str, *args: str) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    out = StringIO()
    call_command("load_alert_rules", str(path), *args, stdout=out)
    return out.getvalue()


def test_it_loads_every_rule_with_its_scope_and_levels(farm, tmp_path):
    assert "3 created, 0 updated, 0 unchanged" in load(tmp_path, GOOD)
    dry = AlertRule.objects.get(name="Soil too dry")
    assert (dry.scope, cast(Field, dry.field).slug, dry.for_seconds, dry.clear) == ("field", "north-meadow", 1800, 23)
    band = AlertRule.objects.get(name="Greenhouse band")
    assert (band.threshold, band.threshold_high, band.clear, band.clear_high) == (5, 30, 6, 28)
    quiet = AlertRule.objects.get(name="Probe 1 quiet")
    assert (quiet.scope, quiet.for_seconds) == ("sensor", 7200)
    assert AlertAudit.objects.filter(source="load_alert_rules", action="created").count() == 3


def test_loading_the_same_file_again_changes_nothing(farm, tmp_path):
    load(tmp_path, GOOD)
    assert "0 created, 0 updated, 3 unchanged" in load(tmp_path, GOOD)
    assert "1 updated" in load(tmp_path, GOOD.replace("threshold: 20", "threshold: 18"))
    assert AlertRule.objects.get(name="Soil too dry").threshold == 18


def test_a_dry_run_writes_nothing(farm, tmp_path):
    assert "dry run" in load(tmp_path, GOOD, "--dry-run")
    assert AlertRule.objects.count() == 0


def test_every_bad_entry_is_reported_by_position_and_nothing_is_written(farm, tmp_path):
    bad = (
        GOOD
        + """
- farm: nowhere
  name: Lost
  metric: soil_moisture
  condition: below
  threshold: 1
- farm: brookside
  name: Backwards
  metric: soil_moisture
  condition: below
  threshold: 20
  clear: 10
- farm: brookside
  name: Typo
  metric: soil_moisture
  condition: below
  threshhold: 20
- farm: brookside
  name: Bad duration
  metric: soil_moisture
  condition: above
  threshold: 40
  for: soon
"""
    )
    with pytest.raises(CommandError) as raised:
        load(tmp_path, bad)
    message = str(raised.value)
    assert "entry 4 (Lost): no farm with the slug or name 'nowhere'" in message
    assert "entry 5 (Backwards): clear: A 'below' alert clears at or above its threshold." in message
    assert "entry 6 (Typo): unknown key(s) threshhold" in message
    assert "entry 7 (Bad duration): 'soon' is not a duration" in message
    assert AlertRule.objects.count() == 0


def test_a_file_that_is_not_a_list_is_refused(farm, tmp_path):
    with pytest.raises(CommandError, match="must be a YAML list"):
        load(tmp_path, "farm: brookside\n")


def test_a_device_of_another_farm_is_not_found(farm, tmp_path):
    other = cast(Device, DeviceFactory(uid="elsewhere"))
    text = f"- {{farm: brookside, name: X, metric: soil_moisture, device: {other.uid}, condition: above, threshold: 1}}"
    with pytest.raises(CommandError, match="entry 1 \\(X\\): Brookside Farm has no device with the uid 'elsewhere'"):
        load(tmp_path, text)


@pytest.mark.parametrize(("text", "seconds"), [(90, 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("45", 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_who_is_told_escalation_and_resolve_come_from_the_file(farm, tmp_path):
    ana = cast(User, UserFactory(username="ana", email="ana@brookside.example"))
    ben = cast(User, UserFactory(username="ben"))
    for user in (ana, ben):
        MembershipFactory(farm=farm, user=user, role=Role.VIEWER)
    text = """
- farm: brookside
  name: Frost
  metric: soil_moisture
  condition: below
  threshold: 2
  notify_roles: [owners]
  notify_users: [ana@brookside.example, ben]
  escalate: 30m
  notify_resolved: false
"""
    load(tmp_path, text)
    rule = AlertRule.objects.get()
    assert (rule.notify_roles, rule.escalate_seconds, rule.notify_resolved) == (["owner"], 1800, False)
    assert set(rule.notify_users.all()) == {ana, ben}
    assert "1 unchanged" in load(tmp_path, text)
    plain = AlertRule.objects.filter(pk=rule.pk)
    load(tmp_path, "- {farm: brookside, name: Frost, metric: soil_moisture, condition: below, threshold: 2}")
    assert (plain.get().notify_roles, plain.get().notify_resolved) == (["owner", "manager"], True)


def test_a_named_person_who_is_not_a_member_or_a_bad_role_is_reported(farm, tmp_path):
    UserFactory(username="stranger")
    text = """
- {farm: brookside, name: A, metric: soil_moisture, condition: below, threshold: 2, notify_users: [stranger]}
- {farm: brookside, name: B, metric: soil_moisture, condition: below, threshold: 2, notify_roles: [boss]}
- {farm: brookside, name: C, metric: soil_moisture, condition: below, threshold: 2, notify_roles: []}
"""
    with pytest.raises(CommandError) as raised:
        load(tmp_path, text)
    problems = str(raised.value).splitlines()[1:]
    assert [p.split(": ", 2)[:2] for p in problems] == [
        ["entry 1 (A)", "notify_users"],
        ["entry 2 (B)", "notify_roles"],
        ["entry 3 (C)", "notify_roles"],
    ]
    assert "stranger not a member of Brookside Farm" in problems[0]
    assert problems[1].endswith("Roles are owner, manager, viewer; not boss.")
    assert "Choose at least one role or a named member" in problems[2]
