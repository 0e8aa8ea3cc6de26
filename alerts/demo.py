"""Alert rules for the demo farm that ``make run`` seeds: one of each kind, on the demo's devices.

Idempotent by (farm, name): a rule that exists (perhaps edited in the app) is left alone.
Call ``demo_rules_ensure(farm=...)`` after the demo farm and its devices exist, and
``demo_episodes_replay`` after its history was seeded (sensors/history/seed.py): seeded
readings pass no batch writer, so the episodes they would have made are replayed here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.db import transaction

from alerts.backtest import covered_sensors, replay
from alerts.index import condition_of
from alerts.models import THRESHOLD_KINDS, AlertEpisode, AlertRule
from alerts.services import rule_create
from alerts.specs import RuleSpec, spec_errors, spec_of
from farm.models import Farm, Field
from sensors.history.selectors import sensor_raw_points
from sensors.models import Device

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# name → rule; "field" is a field slug, "device" a device uid of farm/devstack/demo.py's farm.
DEMO_RULES: Final[dict[str, dict[str, Any]]] = {
    "Frost risk": {"metric": "air_temperature", "kind": "below", "threshold": 2.0, "clear": 3.0,
                   "for_seconds": 600, "severity": "critical",
                   "note": "Frost likely at crop height: start the orchard frost fans."},
    "Polytunnel heat": {"metric": "air_temperature", "kind": "above", "threshold": 30.0, "clear": 28.0,
                        "for_seconds": 900, "field": "polytunnels", "severity": "warning",
                        "note": "Open the tunnel sides and check the drip line."},
    "North Meadow too dry": {"metric": "soil_moisture", "kind": "below", "threshold": 20.0, "clear": 23.0,
                             "for_seconds": 3600, "field": "north-meadow", "severity": "warning",
                             "note": "Schedule irrigation."},
    "Irrigation tank low": {"metric": "water_level", "kind": "below", "threshold": 0.5, "clear": 0.7,
                            "device": "70b3d57ed0051a3f", "severity": "critical", "remind_seconds": 3600,
                            "note": "Refill the tank before the evening irrigation run."},
    "Pump battery low": {"metric": "battery", "kind": "below", "threshold": 20.0, "clear": 30.0,
                         "device": "brookside-pump-battery", "severity": "info"},
    "Soil probe silent": {"metric": "soil_moisture", "kind": "no_data", "for_seconds": 2700, "severity": "warning",
                          "note": "Check the probe's battery and cable."},
    "Soil probe offline": {"metric": "soil_moisture", "kind": "device_offline", "severity": "warning"},
}  # fmt: skip


@transaction.atomic
def demo_rules_ensure(*, farm: Farm) -> list[AlertRule]:
    """Create the demo rules the farm lacks; returns the ones created."""
    existing = set(AlertRule.objects.filter(farm=farm).values_list("name", flat=True))
    created = []
    for name, values in DEMO_RULES.items():
        if name in existing:
            continue
        spec = _spec(farm, name, values)
        if spec is not None:
            created.append(rule_create(farm=farm, spec=spec, actor=None, source="demo"))
    return created


def _spec(farm: Farm, name: str, values: dict[str, Any]) -> RuleSpec | None:
    """The rule's spec, or None where the farm lacks its field or device (a trimmed-down demo)."""
    values = dict(values)
    field_slug, uid = values.pop("field", None), values.pop("device", None)
    spec = RuleSpec(name=name, **values)
    if field_slug is not None:
        spec.scope, spec.field = "field", Field.objects.filter(farm=farm, slug=field_slug).first()
    if uid is not None:
        spec.scope, spec.device = "device", Device.objects.filter(farm=farm, uid=uid).first()
    return None if spec_errors(farm, spec) else spec


@transaction.atomic
def demo_episodes_replay(*, farm: Farm, start: datetime, end: datetime) -> int:
    """Store, as resolved episodes, what the farm's threshold rules would have fired over its readings in (start, end].

    For history seeded behind the batch writers' back, before any live reading: the same
    evaluator the writer runs (``alerts.backtest.replay``), from a clear state. An episode
    still firing at ``end`` is left out: the live writer starts from a clear state too, and
    fires it again at the next reading. Nothing is notified (it is all in the past).
    """
    episodes = []
    for rule in AlertRule.objects.filter(farm=farm, enabled=True, kind__in=THRESHOLD_KINDS).order_by("pk"):
        cond = condition_of(rule)
        for sensor in covered_sensors(farm, spec_of(rule)):
            points = sensor_raw_points(sensor_id=sensor.pk, start=start, end=end)
            for fired, resolved in replay(cond, points.ts, points.values):
                if resolved is None:
                    continue
                episodes.append(
                    AlertEpisode(
                        rule=rule,
                        sensor=sensor,
                        started_at=_EPOCH + timedelta(microseconds=fired.at),
                        ended_at=_EPOCH + timedelta(microseconds=resolved.at),
                        end_reason="cleared",
                        first_value=fired.value,
                        worst_value=resolved.worst,
                        last_value=resolved.value,
                    )
                )
    AlertEpisode.objects.bulk_create(episodes)
    return len(episodes)
