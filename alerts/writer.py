"""The alerts batch writer: evaluates every enabled rule on an ingest batch, inside its transaction.

Registered in ``AlertsConfig.ready`` on the durable lane (``sensors.hooks``), so alert
states, episodes and outbox rows commit with the readings that caused them: nothing is
missed across a worker kill -9, and since ``outcome.series()`` holds only rows this batch
inserted (and the evaluator skips readings at or before a state's ``last_ts``), nothing is
evaluated twice on redelivery. One pass over the batch's series; rules come from the
in-memory ``RuleIndex``; states are loaded with one query and written with one statement
per table (``alerts.store``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from alerts.evaluate import State, device_status, evaluate_readings
from alerts.index import RuleEntry, RuleIndex
from alerts.signals import NOTE
from alerts.store import TRANSITION_TOPIC, Changes, Loaded, Pair, states_load, to_us
from sensors.hooks import BatchOutcome, DeviceChange, SensorSeries
from sensors.models import DeviceStatus, Sensor

logger = logging.getLogger(__name__)

__all__ = ["TRANSITION_TOPIC", "alerts_write_batch", "rule_index"]

rule_index = RuleIndex()

_Work = tuple[RuleEntry, Pair, int, SensorSeries | None]
"""(rule, (rule id, sensor id), device id, the sensor's new readings or None for a device change)."""


def alerts_write_batch(outcome: BatchOutcome) -> None:
    """Evaluate the batch's new readings and device changes against every rule that covers them."""
    rule_index.refresh()
    if not rule_index.by_metric and not rule_index.offline_by_farm:
        return
    work = _reading_work(outcome.series().values())
    offline_work, offline = _device_work(outcome.devices)
    if not work and not offline_work:
        return
    now = outcome.at or timezone.now()
    loaded = states_load(pair for _, pair, _, _ in work + offline_work)
    changes = Changes(now=now)
    for rule, pair, device_id, series in work:
        before = loaded.get(pair)
        result = evaluate_readings(rule.condition, _state(before), series.ts, series.values) if series else None
        if result is not None:
            changes.apply(rule, pair, device_id, before, result)
    for rule, pair, device_id, _ in offline_work:
        before = loaded.get(pair)
        result = device_status(rule.condition, _state(before), offline=offline[device_id], at=to_us(now) or 0)
        if result.transitions or before is None:
            changes.apply(rule, pair, device_id, before, result)
    outcome.note(NOTE, changes.save())


def _state(loaded: Loaded | None) -> State:
    return loaded.state if loaded is not None else State()


def _reading_work(series: Sequence[SensorSeries] | Any) -> list[_Work]:
    work: list[_Work] = []
    rules_for = rule_index.rules_for
    for s in series:
        for rule in rules_for(farm_id=s.farm_id, key=s.key, device_id=s.device_id, sensor_id=s.sensor_id):
            work.append((rule, (rule.id, s.sensor_id), s.device_id, s))
    return work


def _device_work(changes: Sequence[DeviceChange]) -> tuple[list[_Work], dict[int, bool]]:
    """Device-offline rules for devices whose status changed; one sensor query, only when there are some."""
    relevant = [c for c in changes if c.farm_id in rule_index.offline_by_farm]
    if not relevant:
        return [], {}
    offline = {c.device_id: c.status == DeviceStatus.OFFLINE for c in relevant}
    farm_of = {c.device_id: c.farm_id for c in relevant}
    work: list[_Work] = []
    sensors = Sensor.objects.filter(device_id__in=offline).values_list("id", "device_id", "key")
    for sensor_id, device_id, key in sensors:
        field_id = rule_index.device_field.get(device_id)
        for rule in rule_index.offline_by_farm[farm_of[device_id]]:
            if rule.metric == key and rule.covers(device_id=device_id, sensor_id=sensor_id, field_id=field_id):
                work.append((rule, (rule.id, sensor_id), device_id, None))
    return work, offline
