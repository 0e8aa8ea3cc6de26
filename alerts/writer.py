"""The alerts batch writer: evaluates every enabled rule on an ingest batch, inside its transaction.

Registered in ``AlertsConfig.ready`` on the durable lane (``sensors.hooks``), so alert
states, episodes and outbox rows commit with the readings that caused them: nothing is
missed across a worker kill -9, and since ``outcome.series()`` holds only rows this batch
inserted (and the evaluator skips readings at or before a state's ``last_ts``), nothing is
evaluated twice on redelivery. One pass over the batch's series; rules come from the
in-memory ``RuleIndex``.

Most states are OK and stay OK: a sensor's new readings do not breach its rule. The writer
neither reads nor writes those (evaluating from OK needs nothing the row holds but
``last_ts``, and one ``min``/``max`` over the values shows nothing breaches), so a batch
costs one query for the states that are not OK (few) and writes only the states that
changed, firing and pending ones (their episode's current value), and no-data ones (their
``last_ts`` is what the sweep counts silence from). An OK row's ``last_ts`` and
``current_value`` are therefore as of its last change, not its newest reading. When a
reading does breach an OK state, the late-reading rule needs the newest reading the sensor
had before this batch: that comes from the readings (one backward probe per such sensor),
so a late reading never flips the state, with any number of workers (they serialize on the
device lock, so the readings of every batch before this one are committed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from alerts.evaluate import THRESHOLD_KINDS, State, device_status, evaluate_readings, stays_ok
from alerts.index import RuleEntry, RuleIndex
from alerts.signals import NOTE
from alerts.store import TRANSITION_TOPIC, Changes, Loaded, Pair, states_load_live, to_us
from sensors.history.selectors import newest_reading_times
from sensors.hooks import BatchOutcome, DeviceChange, SensorSeries
from sensors.models import DeviceStatus, Sensor

logger = logging.getLogger(__name__)

__all__ = ["TRANSITION_TOPIC", "alerts_write_batch", "rule_index"]

rule_index = RuleIndex()

_Work = tuple[RuleEntry, Pair, int, SensorSeries]
"""(rule, (rule id, sensor id), device id, the sensor's new readings)."""
_DeviceWork = tuple[RuleEntry, Pair, int, None]
"""The same for a device-offline rule whose device's status changed (no readings)."""


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
    always = [pair for rule, pair, _, _ in work if rule.condition.kind not in THRESHOLD_KINDS]
    loaded = states_load_live(
        sensor_ids=(pair[1] for _, pair, _, _ in work), pairs=always + [pair for _, pair, _, _ in offline_work]
    )
    changes = Changes(now=now)
    woken: list[_Work] = []
    for rule, pair, device_id, series in work:
        before = loaded.get(pair)
        if before is None and rule.condition.kind in THRESHOLD_KINDS:
            if not stays_ok(rule.condition, series.values):
                woken.append((rule, pair, device_id, series))
            continue
        result = evaluate_readings(rule.condition, _state(before), series.ts, series.values)
        changes.apply(rule, pair, device_id, before, result)
    _apply_woken(changes, woken)
    for rule, pair, device_id, _ in offline_work:
        before = loaded.get(pair)
        result = device_status(rule.condition, _state(before), offline=offline[device_id], at=to_us(now) or 0)
        if result.transitions or before is None:
            changes.apply(rule, pair, device_id, before, result)
    outcome.note(NOTE, changes.save())


def _apply_woken(changes: Changes, woken: list[_Work]) -> None:
    """OK states a reading breaches: evaluated from the newest reading their sensor had before this batch."""
    if not woken:
        return
    limits = {series.sensor_id: len(series.ts) + 1 for _, _, _, series in woken}
    newest = newest_reading_times(limits=limits)
    for rule, pair, device_id, series in woken:
        mine = set(series.ts)
        seen = next((ts for ts in newest.get(series.sensor_id, ()) if ts not in mine), None)
        result = evaluate_readings(rule.condition, State(last_ts=seen), series.ts, series.values)
        if result.transitions:  # from OK, any change is a transition; none: still OK, nothing to write
            changes.apply(rule, pair, device_id, None, result)


def _state(loaded: Loaded | None) -> State:
    return loaded.state if loaded is not None else State()


def _reading_work(series: Sequence[SensorSeries] | Any) -> list[_Work]:
    work: list[_Work] = []
    rules_for = rule_index.rules_for
    for s in series:
        for rule in rules_for(farm_id=s.farm_id, key=s.key, device_id=s.device_id, sensor_id=s.sensor_id):
            work.append((rule, (rule.id, s.sensor_id), s.device_id, s))
    return work


def _device_work(changes: Sequence[DeviceChange]) -> tuple[list[_DeviceWork], dict[int, bool]]:
    """Device-offline rules for devices whose status changed; one sensor query, only when there are some."""
    relevant = [c for c in changes if c.farm_id in rule_index.offline_by_farm]
    if not relevant:
        return [], {}
    offline = {c.device_id: c.status == DeviceStatus.OFFLINE for c in relevant}
    farm_of = {c.device_id: c.farm_id for c in relevant}
    work: list[_DeviceWork] = []
    sensors = Sensor.objects.filter(device_id__in=offline).values_list("id", "device_id", "key")
    for sensor_id, device_id, key in sensors:
        field_id = rule_index.device_field.get(device_id)
        for rule in rule_index.offline_by_farm[farm_of[device_id]]:
            if rule.metric == key and rule.covers(device_id=device_id, sensor_id=sensor_id, field_id=field_id):
                work.append((rule, (rule.id, sensor_id), device_id, None))
    return work, offline
