"""The batch writer's in-memory index of enabled rules: (farm, metric) → rules, no per-reading query.

Refreshed like the ingest device registry (``sensors/ingest/registry.py``): each batch
runs one small fingerprint query (count and newest ``updated_at`` of rules and of
devices) and reloads only when it changed, so a rule saved in the app applies from the
next batch. Devices are in the fingerprint because a field-scoped rule follows a device
moved to another field (the admin's save bumps ``Device.updated_at``).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from alerts.evaluate import Condition
from alerts.models import AlertRule, Kind, Scope
from sensors.models import Device

logger = logging.getLogger(__name__)

_FINGERPRINT_SQL = """
SELECT (SELECT count(*) FROM alerts_alertrule), (SELECT max(updated_at) FROM alerts_alertrule),
       (SELECT count(*) FROM sensors_device), (SELECT max(updated_at) FROM sensors_device)
"""
_US_PER_S = 1_000_000


@dataclass(frozen=True, slots=True)
class RuleEntry:
    id: int
    farm_id: int
    name: str
    metric: str
    scope: str
    field_id: int | None
    device_id: int | None
    sensor_id: int | None
    severity: str
    note: str
    muted_until: datetime | None
    remind_seconds: int | None
    condition: Condition

    def covers(self, *, device_id: int, sensor_id: int, field_id: int | None) -> bool:
        if self.scope == Scope.FARM:
            return True
        if self.scope == Scope.FIELD:
            return field_id is not None and field_id == self.field_id
        if self.scope == Scope.DEVICE:
            return device_id == self.device_id
        return sensor_id == self.sensor_id

    def muted(self, now: datetime) -> bool:
        return self.muted_until is not None and self.muted_until > now


def _rule_id(rule: RuleEntry) -> int:
    return rule.id


def condition_of(rule: AlertRule) -> Condition:
    return Condition(
        kind=rule.kind,  # type: ignore[arg-type]  # a Kind value, checked by the database
        threshold=rule.threshold,
        threshold_high=rule.threshold_high,
        clear=rule.clear if rule.clear is not None else rule.threshold,
        clear_high=rule.clear_high if rule.clear_high is not None else rule.threshold_high,
        for_us=rule.for_seconds * _US_PER_S,
        clear_for_us=rule.clear_for_seconds * _US_PER_S,
    )


def entry_of(rule: AlertRule) -> RuleEntry:
    return RuleEntry(
        id=rule.pk,
        farm_id=rule.farm_id,
        name=rule.name,
        metric=rule.metric,
        scope=rule.scope,
        field_id=rule.field_id,
        device_id=rule.device_id,
        sensor_id=rule.sensor_id,
        severity=rule.severity,
        note=rule.note,
        muted_until=rule.muted_until,
        remind_seconds=rule.remind_seconds,
        condition=condition_of(rule),
    )


class RuleIndex:
    """Enabled rules by (farm, metric) for readings and by farm for device-offline rules."""

    def __init__(self) -> None:
        self.by_metric: dict[tuple[int, str], list[RuleEntry]] = {}
        # The same rules by what they are scoped to, so a sensor's rules are four lookups
        # however many rules its farm has: with a rule per sensor, walking (farm, metric)'s
        # list was rules × sensors ``covers`` calls a batch (bench/alerts_bench.py).
        self._scoped: dict[tuple[str, int, str], list[RuleEntry]] = {}
        self.offline_by_farm: dict[int, list[RuleEntry]] = {}
        self.device_field: dict[int, int | None] = {}
        self._fingerprint: tuple[Any, ...] | None = None

    def refresh(self) -> bool:
        """Reload when rules or devices changed since the last load; True when it reloaded."""
        with connection.cursor() as cursor:
            cursor.execute(_FINGERPRINT_SQL)
            fingerprint = tuple(cursor.fetchone() or ())
        if fingerprint == self._fingerprint:
            return False
        self._load()
        self._fingerprint = fingerprint
        return True

    def rules_for(self, *, farm_id: int, key: str, device_id: int, sensor_id: int) -> list[RuleEntry]:
        """The enabled reading rules (not device-offline) covering one sensor, in rule id order."""
        scoped, field_id = self._scoped, self.device_field.get(device_id)
        found = [
            rules
            for rules in (
                scoped.get((Scope.FARM, farm_id, key)),
                scoped.get((Scope.FIELD, field_id, key)) if field_id is not None else None,
                scoped.get((Scope.DEVICE, device_id, key)),
                scoped.get((Scope.SENSOR, sensor_id, key)),
            )
            if rules
        ]
        if len(found) <= 1:
            return found[0] if found else []
        return sorted((rule for rules in found for rule in rules), key=_rule_id)

    def rules_by_id(self) -> dict[int, RuleEntry]:
        entries = [e for group in (*self.by_metric.values(), *self.offline_by_farm.values()) for e in group]
        return {e.id: e for e in entries}

    def invalidate(self) -> None:
        self._fingerprint = None

    def _load(self) -> None:
        started = time.monotonic()
        by_metric: defaultdict[tuple[int, str], list[RuleEntry]] = defaultdict(list)
        offline: defaultdict[int, list[RuleEntry]] = defaultdict(list)
        for rule in AlertRule.objects.filter(enabled=True).order_by("id"):
            entry = entry_of(rule)
            if rule.kind == Kind.DEVICE_OFFLINE:
                offline[rule.farm_id].append(entry)
            else:
                by_metric[(rule.farm_id, rule.metric)].append(entry)
        self.by_metric, self.offline_by_farm = dict(by_metric), dict(offline)
        scoped: defaultdict[tuple[str, int, str], list[RuleEntry]] = defaultdict(list)
        for entries in by_metric.values():
            for e in entries:
                target = {Scope.FARM: e.farm_id, Scope.FIELD: e.field_id, Scope.DEVICE: e.device_id}.get(
                    Scope(e.scope), e.sensor_id
                )
                if target is not None:
                    scoped[(e.scope, target, e.metric)].append(e)
        self._scoped = dict(scoped)
        self.device_field = dict(Device.objects.values_list("id", "field_id").iterator(chunk_size=10_000))
        logger.info(
            "alert rule index loaded: %d rules in %.0f ms",
            sum(map(len, by_metric.values())) + sum(map(len, offline.values())),
            (time.monotonic() - started) * 1000,
        )
