"""Writes of rules and acknowledgements by people; each is recorded in the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from alerts.models import AlertAudit, AlertEpisode, AlertRule, AlertState, AuditAction
from alerts.signals import AlertChange, LiveTransition, alert_changes_on_commit
from alerts.specs import RuleSpec, spec_of
from farm.models import Farm

# Changing what a rule watches or how starts every covered sensor afresh: the old states
# mean nothing under the new rule. Levels, durations, severity and notes apply from the
# next reading to the states as they stand (a firing alert keeps its episode).
_RESETS = ("metric", "kind", "scope", "field", "device", "sensor", "enabled")


def _audit_value(value: Any) -> Any:
    if isinstance(value, QuerySet):  # the admin's named members
        return sorted(value.values_list("pk", flat=True))
    if isinstance(value, tuple | list):  # roles, named members' ids
        return [_audit_value(v) for v in value]
    if hasattr(value, "pk"):
        return value.pk
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _diff(before: RuleSpec | None, after: RuleSpec) -> dict[str, list[Any]]:
    old = before.values() if before is not None else {}
    return {
        name: [_audit_value(old.get(name)), _audit_value(value)]
        for name, value in after.values().items()
        if before is None or _audit_value(old.get(name)) != _audit_value(value)
    }


def _record(*, farm: Farm, rule: AlertRule | None, actor: User | None, action: str, **kw: Any) -> None:
    AlertAudit.objects.create(
        farm=farm,
        rule=rule,
        rule_name=rule.name if rule else kw.pop("rule_name", ""),
        actor=actor,
        at=timezone.now(),
        action=action,
        **kw,
    )


@transaction.atomic
def rule_create(*, farm: Farm, spec: RuleSpec, actor: User | None, source: str = "web") -> AlertRule:
    """Save a checked spec (``alerts.specs.spec_errors`` found nothing) as a new rule."""
    rule = AlertRule.objects.create(farm=farm, created_by=actor, updated_by=actor, **spec.column_values())
    rule.notify_users.set(spec.notify_users)
    _record(farm=farm, rule=rule, actor=actor, action=AuditAction.CREATED, source=source, changes=_diff(None, spec))
    return rule


@transaction.atomic
def rule_update(*, rule: AlertRule, spec: RuleSpec, actor: User | None, source: str = "web") -> bool:
    """Apply a checked spec to ``rule``; False when nothing changed (no write, no audit row)."""
    changes = _diff(spec_of(rule), spec)
    if not changes:
        return False
    for name, value in spec.column_values().items():
        setattr(rule, name, value)
    rule.updated_by = actor
    rule.save()
    rule.notify_users.set(spec.notify_users)
    if any(name in changes for name in _RESETS):
        _reset_states(rule, reason="rule disabled" if not rule.enabled else "rule changed")
    _record(farm=rule.farm, rule=rule, actor=actor, action=AuditAction.UPDATED, source=source, changes=changes)
    return True


@transaction.atomic
def rule_admin_saved(
    *,
    rule: AlertRule,
    actor: User,
    initial: dict[str, Any],
    cleaned: dict[str, Any],
    changed: list[str],
    created: bool,
) -> None:
    """Record an admin save (the admin writes the row itself); reset states as ``rule_update`` would.

    ``cleaned`` is the admin form's data: named members are saved after this call, so they are read there.
    """
    changes = {name: [_audit_value(initial.get(name)), _audit_value(cleaned.get(name))] for name in changed}
    if not created and any(name in changes for name in _RESETS):
        _reset_states(rule, reason="rule disabled" if not rule.enabled else "rule changed")
    action = AuditAction.CREATED if created else AuditAction.UPDATED
    _record(farm=rule.farm, rule=rule, actor=actor, action=action, source="admin", changes=changes)


@transaction.atomic
def rule_delete(*, rule: AlertRule, actor: User | None, source: str = "web") -> None:
    _record(farm=rule.farm, rule=None, actor=actor, action=AuditAction.DELETED, source=source, rule_name=rule.name)
    _closed_on_commit(rule)
    rule.delete()


def _reset_states(rule: AlertRule, *, reason: str) -> None:
    _closed_on_commit(rule)
    # Greatest: a device clock ahead of ours may have started the episode "later" than now.
    ended = Greatest(Value(timezone.now()), F("started_at"))
    AlertEpisode.objects.filter(rule=rule, ended_at__isnull=True).update(ended_at=ended, end_reason=reason)
    AlertState.objects.filter(rule=rule).delete()


def _closed_on_commit(rule: AlertRule) -> None:
    """Tell live clients, after the commit, that the rule's open episodes are over (reset or deleted)."""
    now = timezone.now()
    episodes = AlertEpisode.objects.filter(rule=rule, ended_at__isnull=True).select_related("sensor")
    alert_changes_on_commit([_change(e, rule, "resolved", at=max(now, e.started_at)) for e in episodes])


@transaction.atomic
def episode_acknowledge(*, episode: AlertEpisode, actor: User, comment: str = "") -> bool:
    """Acknowledge an episode (stops its reminders); False if it already was."""
    updated = AlertEpisode.objects.filter(pk=episode.pk, acknowledged_at__isnull=True).update(
        acknowledged_by=actor,
        acknowledged_at=Greatest(Value(timezone.now()), F("started_at")),
        ack_comment=comment.strip(),
    )
    if updated:
        alert_changes_on_commit([_acknowledged(episode, actor)])
        _record(
            farm=episode.rule.farm,
            rule=episode.rule,
            actor=actor,
            action=AuditAction.ACKNOWLEDGED,
            episode=episode,
            changes={"comment": comment.strip()},
        )
    return bool(updated)


def _acknowledged(episode: AlertEpisode, actor: User) -> AlertChange:
    at = max(timezone.now(), episode.started_at)
    return _change(episode, episode.rule, "acknowledged", at=at, by=actor.get_full_name() or actor.get_username())


def _change(episode: AlertEpisode, rule: AlertRule, kind: LiveTransition, *, at: datetime, by: str = "") -> AlertChange:
    return AlertChange(
        farm_id=rule.farm_id,
        episode_id=episode.pk,
        transition=kind,
        rule_id=rule.pk,
        rule_name=rule.name,
        severity=rule.severity,
        sensor_id=episode.sensor_id,
        device_id=episode.sensor.device_id,
        started_at=episode.started_at,
        at=at,
        value=episode.last_value,
        worst=episode.worst_value,
        by=by,
    )
