"""A rule as people write it (the form, a YAML file), and the checks it must pass, field by field.

The database has the same rules as constraints; checking here first lets the form show
each error beside its field and the file loader name the entry and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from alerts.models import AlertRule, Kind, Scope, Severity
from farm.models import Farm, Field
from sensors.models import METRIC_KEY_PATTERN, Device, Sensor


@dataclass(slots=True)
class RuleSpec:
    name: str
    metric: str
    kind: str
    severity: str = Severity.WARNING
    scope: str = Scope.FARM
    field: Field | None = None
    device: Device | None = None
    sensor: Sensor | None = None
    threshold: float | None = None
    threshold_high: float | None = None
    clear: float | None = None
    clear_high: float | None = None
    for_seconds: int = 0
    clear_for_seconds: int = 0
    remind_seconds: int | None = None
    note: str = ""
    enabled: bool = True
    muted_until: datetime | None = None

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def spec_errors(farm: Farm, spec: RuleSpec) -> dict[str, str]:
    """Field name → what is wrong with it; empty when the rule can be saved. Fills default clear levels."""
    errors: dict[str, str] = {}
    if not spec.name.strip():
        errors["name"] = "Give the rule a name."
    if not METRIC_KEY_PATTERN.fullmatch(spec.metric):
        errors["metric"] = "A metric key is lower-case letters, digits and '_' (e.g. soil_moisture)."
    if spec.kind not in Kind.values:
        errors["kind"] = f"Choose one of: {', '.join(Kind.values)}."
    if spec.severity not in Severity.values:
        errors["severity"] = f"Choose one of: {', '.join(Severity.values)}."
    errors.update(_scope_errors(farm, spec))
    errors.update(_level_errors(spec))
    if spec.kind == Kind.NO_DATA and spec.for_seconds <= 0:
        errors["for_seconds"] = "Say how long a sensor may be silent before this fires."
    if spec.remind_seconds is not None and spec.remind_seconds < 60:
        errors["remind_seconds"] = "Remind at most once a minute."
    return errors


def _scope_errors(farm: Farm, spec: RuleSpec) -> dict[str, str]:
    targets = {Scope.FIELD: spec.field, Scope.DEVICE: spec.device, Scope.SENSOR: spec.sensor}
    if spec.scope not in Scope.values:
        return {"scope": f"Choose one of: {', '.join(Scope.values)}."}
    for scope, target in targets.items():
        if scope != spec.scope:
            setattr(spec, scope.value, None)
        elif target is None:
            return {scope.value: f"Choose the {scope.value} the rule watches."}
    if spec.field is not None and spec.field.farm_id != farm.pk:
        return {"field": f"{spec.field.name} is not a field of {farm.name}."}
    if spec.device is not None and spec.device.farm_id != farm.pk:
        return {"device": f"{spec.device.name} is not on {farm.name}."}
    if spec.sensor is not None:
        if spec.sensor.device.farm_id != farm.pk:
            return {"sensor": f"{spec.sensor} is not on {farm.name}."}
        if spec.sensor.key != spec.metric:
            return {"sensor": f"This sensor measures {spec.sensor.key}, not {spec.metric}."}
    return {}


def _level_errors(spec: RuleSpec) -> dict[str, str]:
    if spec.kind in (Kind.NO_DATA, Kind.DEVICE_OFFLINE):
        spec.threshold = spec.threshold_high = spec.clear = spec.clear_high = None
        return {}
    if spec.threshold is None:
        return {"threshold": "Set the threshold."}
    if spec.kind != Kind.OUTSIDE:
        spec.threshold_high = spec.clear_high = None
        spec.clear = spec.threshold if spec.clear is None else spec.clear
        if spec.kind == Kind.ABOVE and spec.clear > spec.threshold:
            return {"clear": "An 'above' alert clears at or below its threshold."}
        if spec.kind == Kind.BELOW and spec.clear < spec.threshold:
            return {"clear": "A 'below' alert clears at or above its threshold."}
        return {}
    if spec.threshold_high is None:
        return {"threshold_high": "Set the high edge of the band."}
    if spec.threshold >= spec.threshold_high:
        return {"threshold_high": "The high edge must be above the low edge."}
    spec.clear = spec.threshold if spec.clear is None else spec.clear
    spec.clear_high = spec.threshold_high if spec.clear_high is None else spec.clear_high
    if spec.clear < spec.threshold:
        return {"clear": "The band's low clear level must be at or above its low edge."}
    if spec.clear_high > spec.threshold_high:
        return {"clear_high": "The band's high clear level must be at or below its high edge."}
    if spec.clear > spec.clear_high:
        return {"clear_high": "The high clear level must be above the low one."}
    return {}


def spec_of(rule: AlertRule) -> RuleSpec:
    return RuleSpec(**{name: getattr(rule, name) for name in asdict_names()})


def asdict_names() -> list[str]:
    return [f.name for f in fields(RuleSpec)]
