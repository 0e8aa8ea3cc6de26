"""The time-driven alert sweep (Celery beat): what changes with time alone, batch-shaped.

- pending → firing when "for N" elapsed with no new reading (``evaluate.tick``), done in SQL:
  one statement fires every due state and opens its episode, one more queues the outbox rows
  (the case where thousands are due at once; no row or payload goes through Python);
- no data: a sensor silent for the rule's duration fires (states are first created for
  every covered sensor, their silence counted from the newest reading);
- device offline: a rule's state follows its device's status (rules created while a
  device is already offline, or a status change the writer did not see);
- reminders for firing, unacknowledged episodes; and "fired" for episodes that began
  while their rule was muted, once the mute is over;
- escalation, once per episode, of one still unacknowledged the rule's "escalate after" past
  its announcement (``notified_at``: the firing, or the end of a mute), to the farm's owners.

A few statements for all states, whatever their number; states locked by an ingest batch
in flight are skipped (``SKIP LOCKED``) and taken by the next sweep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from alerts.evaluate import Condition, Evaluation, State, device_status, tick
from alerts.index import RuleIndex
from alerts.signals import alert_changes_on_commit
from alerts.store import Changes, Episode, Notice, fired_enqueue, live_change, outbox_item, states_load, to_us
from outbox.services import outbox_enqueue_many

logger = logging.getLogger(__name__)

sweep_index = RuleIndex()

# States for every (no-data or device-offline rule, covered sensor) that has none yet; a
# no-data state starts from the sensor's newest reading (one backward probe of the readings key).
# A write that seeds states, so it reads the newest reading in SQL rather than through the
# readings' selectors (sensors/history/selectors.py), which serve every read that returns data.
_MATERIALIZE_SQL = """
INSERT INTO alerts_alertstate (rule_id, sensor_id, state, since, last_ts, current_value, updated_at)
SELECT r.id, s.id, 'ok', %(now)s, latest.ts, latest.value, %(now)s
FROM alerts_alertrule r
JOIN sensors_device d ON d.farm_id = r.farm_id AND d.enabled
JOIN sensors_sensor s ON s.device_id = d.id AND s.key = r.metric
LEFT JOIN LATERAL (
    SELECT rd.ts, rd.value FROM sensors_reading rd
    WHERE rd.sensor_id = s.id AND r.kind = 'no_data' ORDER BY rd.ts DESC LIMIT 1
) latest ON true
WHERE r.enabled AND r.kind IN ('no_data', 'device_offline')
  AND (r.scope = 'farm' OR (r.scope = 'field' AND d.field_id = r.field_id)
       OR (r.scope = 'device' AND d.id = r.device_id) OR (r.scope = 'sensor' AND s.id = r.sensor_id))
  AND NOT EXISTS (SELECT 1 FROM alerts_alertstate x WHERE x.rule_id = r.id AND x.sensor_id = s.id)
ON CONFLICT (rule_id, sensor_id) DO NOTHING
"""

# Pending states whose "for N" elapsed with no reading since (for device-offline rules, the
# device still offline) fire: ``evaluate.tick``'s pending → firing, for all of them in one
# statement, however many (tests/test_alert_sweep.py holds it to ``tick``). Their episodes
# open at ``now`` with the state's current and worst values; a muted rule's are not notified
# (the unmuted pass below notifies them later). Partial index alertstate_active_idx serves it.
_FIRE_SQL = """
WITH due AS (
    SELECT st.id, st.rule_id, st.sensor_id, s.device_id, st.current_value, st.worst_value, r.remind_seconds,
           (r.muted_until IS NOT NULL AND r.muted_until > %(now)s) AS muted
    FROM alerts_alertstate st
    JOIN alerts_alertrule r ON r.id = st.rule_id AND r.enabled
    JOIN sensors_sensor s ON s.id = st.sensor_id
    JOIN sensors_device d ON d.id = s.device_id
    WHERE st.state = 'pending' AND r.kind <> 'no_data'
      AND st.pending_since <= %(now)s - make_interval(secs => r.for_seconds)
      AND (r.kind <> 'device_offline' OR d.status = 'offline')
    ORDER BY st.rule_id, st.sensor_id
    FOR UPDATE OF st SKIP LOCKED
), opened AS (
    INSERT INTO alerts_alertepisode (rule_id, sensor_id, started_at, ended_at, end_reason, first_value, worst_value,
        last_value, notified_at, reminders, next_reminder_at, ack_comment)
    SELECT rule_id, sensor_id, %(now)s, NULL, '', current_value, worst_value, current_value,
           CASE WHEN muted THEN NULL ELSE %(now)s END, 0,
           CASE WHEN muted OR remind_seconds IS NULL THEN NULL
                ELSE %(now)s + make_interval(secs => remind_seconds) END, ''
    FROM due
    RETURNING id, rule_id, sensor_id
), fired AS (
    UPDATE alerts_alertstate st
    SET state = 'firing', since = %(now)s, pending_since = NULL, clear_since = NULL, episode_id = o.id,
        updated_at = %(now)s
    FROM opened o JOIN due USING (rule_id, sensor_id)
    WHERE st.id = due.id
)
SELECT o.id, due.rule_id, due.sensor_id, due.device_id, due.current_value, due.worst_value, due.muted
FROM opened o JOIN due USING (rule_id, sensor_id)
"""

# The other states time may change now, evaluated in Python: no-data states silent for their
# rule's duration (the few states of no-data rules), and device-offline states that disagree
# with their device (a pending one whose device is still offline is _FIRE_SQL's).
_DUE_SQL = """
SELECT st.rule_id, st.sensor_id, d.id, d.status = 'offline'
FROM alerts_alertstate st
JOIN alerts_alertrule r ON r.id = st.rule_id AND r.enabled
JOIN sensors_sensor s ON s.id = st.sensor_id
JOIN sensors_device d ON d.id = s.device_id
WHERE (r.kind = 'no_data' AND st.state = 'ok'
       AND coalesce(st.last_ts, st.since) <= %(now)s - make_interval(secs => r.for_seconds))
   OR (r.kind = 'device_offline' AND (d.status = 'offline') <> (st.state <> 'ok'))
ORDER BY st.rule_id, st.sensor_id
FOR UPDATE OF st SKIP LOCKED
"""

_REMINDERS_SQL = """
UPDATE alerts_alertepisode ep
SET reminders = ep.reminders + 1, next_reminder_at = %(now)s + make_interval(secs => r.remind_seconds)
FROM alerts_alertrule r, sensors_sensor s
WHERE r.id = ep.rule_id AND s.id = ep.sensor_id AND r.enabled AND r.remind_seconds IS NOT NULL
  AND (r.muted_until IS NULL OR r.muted_until <= %(now)s)
  AND ep.ended_at IS NULL AND ep.acknowledged_at IS NULL AND ep.next_reminder_at <= %(now)s
RETURNING ep.id, ep.rule_id, ep.sensor_id, s.device_id, ep.started_at, ep.worst_value, ep.last_value, ep.reminders
"""

_UNMUTED_SQL = """
UPDATE alerts_alertepisode ep
SET notified_at = %(now)s,
    next_reminder_at = CASE WHEN r.remind_seconds IS NULL THEN NULL
                            ELSE %(now)s + make_interval(secs => r.remind_seconds) END
FROM alerts_alertrule r, sensors_sensor s
WHERE r.id = ep.rule_id AND s.id = ep.sensor_id AND r.enabled
  AND (r.muted_until IS NULL OR r.muted_until <= %(now)s)
  AND ep.ended_at IS NULL AND ep.notified_at IS NULL
RETURNING ep.id, ep.rule_id, ep.sensor_id, s.device_id, ep.started_at, ep.worst_value, ep.last_value, 0
"""

# After the unmute above: an episode just announced is not escalated in the same sweep.
_ESCALATIONS_SQL = """
UPDATE alerts_alertepisode ep
SET escalated_at = %(now)s
FROM alerts_alertrule r, sensors_sensor s
WHERE r.id = ep.rule_id AND s.id = ep.sensor_id AND r.enabled AND r.escalate_seconds IS NOT NULL
  AND (r.muted_until IS NULL OR r.muted_until <= %(now)s)
  AND ep.ended_at IS NULL AND ep.acknowledged_at IS NULL AND ep.escalated_at IS NULL
  AND ep.notified_at IS NOT NULL AND ep.notified_at <= %(now)s - make_interval(secs => r.escalate_seconds)
RETURNING ep.id, ep.rule_id, ep.sensor_id, s.device_id, ep.started_at, ep.worst_value, ep.last_value, 0
"""


@dataclass(frozen=True, slots=True)
class SweepResult:
    created: int
    changed: int
    reminders: int
    unmuted: int
    escalations: int = 0


def alerts_sweep(*, now: datetime | None = None) -> SweepResult:
    """Run every time-driven transition due at ``now`` in one transaction."""
    now = now or timezone.now()
    params = {"now": now}
    with transaction.atomic():
        sweep_index.refresh()
        with connection.cursor() as cursor:
            cursor.execute(_MATERIALIZE_SQL, params)
            created = cursor.rowcount
            cursor.execute(_FIRE_SQL, params)
            fired = cursor.fetchall()
            cursor.execute(_DUE_SQL, params)
            due = cursor.fetchall()
        changed = _fired(fired, now) + _evaluate_due(due, now)
        reminders = _episode_notices(_REMINDERS_SQL, now, "reminder")
        unmuted = _episode_notices(_UNMUTED_SQL, now, "fired")
        escalations = _episode_notices(_ESCALATIONS_SQL, now, "escalation")
    if changed or reminders or unmuted or escalations:
        logger.info(
            "alert sweep: %d state(s) changed, %d reminder(s), %d unmuted, %d escalation(s)",
            changed,
            reminders,
            unmuted,
            escalations,
        )
    return SweepResult(created, changed, reminders, unmuted, escalations)


def _fired(rows: list[tuple[int, int, int, int, float | None, float | None, bool]], now: datetime) -> int:
    """The outbox rows and live changes of the episodes ``_FIRE_SQL`` opened."""
    fired_enqueue(episode_ids=[row[0] for row in rows if not row[6]], at=now)
    rules = sweep_index.rules_by_id()
    changes = [
        live_change("fired", rule, (episode_id, sensor_id, device_id), now, now, value, worst)
        for episode_id, rule_id, sensor_id, device_id, value, worst, _ in rows
        if (rule := rules.get(rule_id)) is not None
    ]
    alert_changes_on_commit(changes)
    return len(rows)


def _evaluate_due(due: list[tuple[int, int, int, bool]], now: datetime) -> int:
    if not due:
        return 0
    rules = sweep_index.rules_by_id()
    # Already locked by _DUE_SQL; this reads them with their open episodes.
    loaded = states_load((rule_id, sensor_id) for rule_id, sensor_id, _, _ in due)
    changes = Changes(now=now)
    now_us = to_us(now) or 0
    for rule_id, sensor_id, device_id, offline in due:
        rule, before = rules.get(rule_id), loaded.get((rule_id, sensor_id))
        if rule is None or before is None:
            continue
        result = _advance(rule.condition, before.state, offline=offline, now=now_us)
        if result.transitions:
            changes.apply(rule, (rule_id, sensor_id), device_id, before, result)
    alert_changes_on_commit(changes.save())
    return len(changes.states)


def _advance(cond: Condition, state: State, *, offline: bool, now: int) -> Evaluation:
    if cond.kind == "device_offline":
        return device_status(cond, state, offline=offline, at=now)
    return tick(cond, state, now=now)


def _episode_notices(sql: str, now: datetime, transition: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, {"now": now})
        rows = cursor.fetchall()
    rules = sweep_index.rules_by_id()
    items = []
    for ep_id, rule_id, sensor_id, device_id, started, worst, last, n in rows:
        rule = rules.get(rule_id)
        if rule is None:
            continue
        episode = Episode(rule_id, sensor_id, to_us(started) or 0, ep_id, worst_value=worst, last_value=last)
        notice = Notice(episode, rule, device_id, transition, to_us(now) or 0, last)
        if transition == "reminder":
            items.append(outbox_item(notice, key=f"{ep_id}:reminder:{n}", extra={"reminder": n}))
        else:
            items.append(outbox_item(notice))
    outbox_enqueue_many(items=items)
    return len(items)
