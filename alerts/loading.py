"""Rules from a YAML file (``manage.py load_alert_rules``): check every entry, then write all or none.

Each entry is matched to an existing rule by (farm, name): a second load of the same file
changes nothing. Every bad entry is reported by its position (1-based) and name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from django.db import transaction
from django.db.models import Q

from alerts.models import NOTIFY_ROLES, AlertRule, Kind, Scope
from alerts.services import rule_create, rule_update
from alerts.specs import RuleSpec, roles_in_order, spec_errors, spec_of
from farm.models import Farm, Field, Membership
from sensors.models import Device, Sensor, normalize_uid

_KEYS = frozenset(
    {"farm", "name", "metric", "field", "device", "sensor", "condition", "threshold", "clear", "for", "clear_for"}
    | {"severity", "note", "enabled", "remind", "escalate", "notify_roles", "notify_users", "notify_resolved"}
)
_DURATION = re.compile(r"(\d+)\s*([smh]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600}
_SINGULAR = {f"{role}s": str(role) for role in NOTIFY_ROLES}


class LoadError(Exception):
    """The file cannot be loaded; ``problems`` lists every reason, one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Entry:
    farm: Farm
    spec: RuleSpec


@dataclass(frozen=True, slots=True)
class LoadResult:
    created: list[str]
    updated: list[str]
    unchanged: list[str]


def parse_duration(value: object) -> int:
    """Seconds from 90, "90s", "30m" or "2h"."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use e.g. 30m)")
    if isinstance(value, int) and value >= 0:
        return value
    match = _DURATION.fullmatch(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration (use seconds, or e.g. 90s, 30m, 2h)")
    return int(match[1]) * _UNIT[match[2]]


def entries_from_yaml(text: str) -> list[Entry]:
    """Every entry resolved and checked, or ``LoadError`` naming each bad one."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LoadError([f"not valid YAML: {exc}"]) from None
    if not isinstance(data, list):
        raise LoadError(["the file must be a YAML list of rules (each item starting with '- ')"])
    entries: list[Entry] = []
    problems: list[str] = []
    seen: set[tuple[int, str]] = set()
    for position, item in enumerate(data, start=1):
        label = f"entry {position}" + (
            f" ({item.get('name')})" if isinstance(item, Mapping) and item.get("name") else ""
        )
        try:
            entry = _entry(item)
        except ValueError as exc:
            problems.append(f"{label}: {exc}")
            continue
        key = (entry.farm.pk, entry.spec.name)
        if key in seen:
            problems.append(f"{label}: a second rule named {entry.spec.name!r} for {entry.farm.name}")
        seen.add(key)
        entries.append(entry)
    if problems:
        raise LoadError(problems)
    return entries


def _entry(item: object) -> Entry:
    if not isinstance(item, Mapping):
        raise ValueError("must be a mapping of keys to values")
    unknown = sorted(set(map(str, item)) - _KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
    for required in ("farm", "name", "metric", "condition"):
        if item.get(required) in (None, ""):
            raise ValueError(f"{required} is required")
    farm = _farm(str(item["farm"]))
    spec = RuleSpec(
        name=str(item["name"]).strip(),
        metric=str(item["metric"]),
        kind=str(item["condition"]),
        severity=str(item.get("severity", "warning")),
        note=str(item.get("note", "")),
        enabled=bool(item.get("enabled", True)),
        for_seconds=parse_duration(item.get("for", 0)),
        clear_for_seconds=parse_duration(item.get("clear_for", 0)),
        remind_seconds=parse_duration(item["remind"]) if item.get("remind") is not None else None,
        escalate_seconds=parse_duration(item["escalate"]) if item.get("escalate") is not None else None,
        notify_resolved=bool(item.get("notify_resolved", True)),
    )
    _recipients(spec, farm, item)
    _levels(spec, item)
    _scope(spec, farm, item)
    errors = spec_errors(farm, spec)
    if errors:
        raise ValueError("; ".join(f"{name}: {message}" for name, message in errors.items()))
    return Entry(farm, spec)


def _farm(ref: str) -> Farm:
    farm = Farm.objects.filter(Q(slug=ref) | Q(name=ref)).first()
    if farm is None:
        raise ValueError(f"no farm with the slug or name {ref!r}")
    return farm


def _names(value: object, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list, e.g. [manager, owner]")
    return [v.strip() for v in value]


def _recipients(spec: RuleSpec, farm: Farm, item: Mapping[str, Any]) -> None:
    """Roles (``owner``, ``manager``, ``viewer``; a plural is fine) and members by username or email."""
    if item.get("notify_roles") is not None:
        roles = [_SINGULAR.get(r.lower(), r.lower()) for r in _names(item["notify_roles"], "notify_roles")]
        spec.notify_roles = roles_in_order(roles)
    if item.get("notify_users") is None:
        return
    members = Membership.objects.filter(farm=farm).select_related("user")
    by_name = {m.user.username.lower(): m.user_id for m in members}
    by_name.update({m.user.email.lower(): m.user_id for m in members if m.user.email})
    ids, strangers = set(), []
    for ref in _names(item["notify_users"], "notify_users"):
        if ref.lower() in by_name:
            ids.add(by_name[ref.lower()])
        else:
            strangers.append(ref)
    if strangers:
        raise ValueError(f"notify_users: {', '.join(strangers)} not a member of {farm.name} (username or email)")
    spec.notify_users = tuple(sorted(ids))


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def _levels(spec: RuleSpec, item: Mapping[str, Any]) -> None:
    threshold, clear = item.get("threshold"), item.get("clear")
    if spec.kind == Kind.OUTSIDE:
        if not (isinstance(threshold, list) and len(threshold) == 2):
            raise ValueError("an 'outside' rule needs threshold: [low, high]")
        spec.threshold, spec.threshold_high = (_number(v, "threshold") for v in threshold)
        if clear is not None:
            if not (isinstance(clear, list) and len(clear) == 2):
                raise ValueError("an 'outside' rule's clear is [low, high]")
            spec.clear, spec.clear_high = (_number(v, "clear") for v in clear)
        return
    if threshold is not None:
        spec.threshold = _number(threshold, "threshold")
    if clear is not None:
        spec.clear = _number(clear, "clear")


def _scope(spec: RuleSpec, farm: Farm, item: Mapping[str, Any]) -> None:
    given = [key for key in ("field", "device", "sensor") if item.get(key) is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of field, device, sensor (got {', '.join(given)})")
    if not given:
        return
    ref = str(item[given[0]])
    spec.scope = Scope(given[0])
    if given[0] == "field":
        spec.field = Field.objects.filter(Q(slug=ref) | Q(name=ref), farm=farm).first()
        if spec.field is None:
            raise ValueError(f"{farm.name} has no field {ref!r}")
        return
    device = Device.objects.filter(farm=farm, uid=normalize_uid(ref)).first()
    if device is None:
        raise ValueError(f"{farm.name} has no device with the uid {ref!r}")
    if given[0] == "device":
        spec.device = device
        return
    spec.sensor = Sensor.objects.filter(device=device, key=spec.metric).select_related("device").first()
    if spec.sensor is None:
        raise ValueError(f"device {ref!r} has no {spec.metric} sensor")


def entries_save(entries: list[Entry], *, dry_run: bool = False) -> LoadResult:
    """Create or update every entry's rule in one transaction (none on a dry run)."""
    result = LoadResult([], [], [])
    with transaction.atomic():
        for entry in entries:
            rule = AlertRule.objects.filter(farm=entry.farm, name=entry.spec.name).first()
            label = f"{entry.farm.name}: {entry.spec.name}"
            if rule is None:
                result.created.append(label)
                if not dry_run:
                    rule_create(farm=entry.farm, spec=entry.spec, actor=None, source="load_alert_rules")
            elif _would_change(rule, entry.spec) and (
                dry_run or rule_update(rule=rule, spec=entry.spec, actor=None, source="load_alert_rules")
            ):
                result.updated.append(label)
            else:
                result.unchanged.append(label)
    return result


def _would_change(rule: AlertRule, spec: RuleSpec) -> bool:
    return spec_of(rule).values() != spec.values()
