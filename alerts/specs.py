"""A rule as people write it (the form, a YAML file), and the checks it must pass, field by field.

The database has the same rules as constraints; checking here first lets the form show
each error beside its field and the file loader name the entry and the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from dataclasses import field as _default
from datetime import datetime
from typing import Any

from alerts.models import NOTIFY_ROLES, AlertRule, Kind, Scope, Severity, default_notify_roles
from farm.models import Farm, Field, Membership
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
    escalate_seconds: int | None = None
    notify_roles: tuple[str, ...] = _default(default_factory=lambda: roles_in_order(default_notify_roles()))
    notify_users: tuple[int, ...] = ()  # user ids, ascending
    notify_resolved: bool = True
    note: str = ""
    enabled: bool = True
    muted_until: datetime | None = None

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def column_values(self) -> dict[str, Any]:
        """The rule's own columns (``notify_users`` is a many-to-many, set apart)."""
        values = self.values()
        values["notify_roles"] = list(values["notify_roles"])
        del values["notify_users"]
        return values


def roles_in_order(roles: Iterable[str]) -> tuple[str, ...]:
    """Roles as a rule stores and compares them: each once, owner → manager → viewer (unknown ones last)."""
    given = set(roles)
    return tuple(r for r in NOTIFY_ROLES if r in given) + tuple(sorted(given - set(NOTIFY_ROLES)))


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
    if spec.escalate_seconds is not None and spec.escalate_seconds < 60:
        errors["escalate_seconds"] = "Escalate after a minute at the earliest."
    errors.update(_recipient_errors(farm, spec))
    return errors


def _recipient_errors(farm: Farm, spec: RuleSpec) -> dict[str, str]:
    unknown = [r for r in spec.notify_roles if r not in NOTIFY_ROLES]
    if unknown:
        return {"notify_roles": f"Roles are {', '.join(NOTIFY_ROLES)}; not {', '.join(unknown)}."}
    if not spec.notify_roles and not spec.notify_users:
        return {"notify_roles": "Choose at least one role or a named member, or nobody hears about this rule."}
    members = set(Membership.objects.filter(farm=farm, user_id__in=spec.notify_users).values_list("user_id", flat=True))
    strangers = [str(pk) for pk in spec.notify_users if pk not in members]
    if strangers:
        return {"notify_users": f"Only members of {farm.name} can be told (not user {', '.join(strangers)})."}
    return {}


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
    values = {name: getattr(rule, name) for name in asdict_names() if name != "notify_users"}
    values["notify_roles"] = roles_in_order(rule.notify_roles)
    users = rule.notify_users.order_by("pk").values_list("pk", flat=True) if rule.pk else []
    return RuleSpec(**values, notify_users=tuple(users))


def asdict_names() -> list[str]:
    return [f.name for f in fields(RuleSpec)]
