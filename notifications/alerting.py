"""Alert transitions become notifications: the outbox handler of ``alerts.transition``.

The alerts app records each transition (fired, reminder, escalation, resolved) in the outbox
in the transaction that caused it; this handler, run by the outbox drain, turns one into a
``NotificationEvent`` for the people the rule names (its roles and members; an escalation:
the farm's owners) and plans its deliveries in the drain's transaction, so a transition is
planned exactly once. Recipients are read when the transition is handled: a rule edited
while firing tells its new recipients from the next transition on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.urls import reverse

from alerts.models import AlertEpisode, AlertRule, Kind
from farm.models import Role
from notifications.events import NotificationEvent
from notifications.models import Severity, Transition
from notifications.selectors import recipient_ids
from notifications.services import notifications_plan

TOPIC = "alerts.transition"


def alert_transition_notify(payload: dict[str, Any]) -> None:
    episode = (
        AlertEpisode.objects.select_related("rule__farm", "sensor__device__field").filter(pk=payload["episode"]).first()
    )
    if episode is None:  # the rule or sensor was deleted since: nothing left to tell about
        return
    rule = episode.rule
    transition = Transition(payload["transition"])
    if transition == Transition.RESOLVED and not rule.notify_resolved:
        return
    if transition == Transition.ESCALATION:
        ids = recipient_ids(farm=rule.farm, roles=(Role.OWNER,))
    else:
        named = list(rule.notify_users.values_list("pk", flat=True))
        ids = recipient_ids(farm=rule.farm, roles=rule.notify_roles, user_ids=named)
    event = alert_event(episode=episode, payload=payload)
    notifications_plan(event=event, recipient_ids=ids)


def episode_event_keys(episode: AlertEpisode) -> list[str]:
    """The event keys ``alert_event`` gives an episode's transitions (its delivery log's key)."""
    reminders = [f"{episode.pk}:{Transition.REMINDER}:{n}" for n in range(1, episode.reminders + 1)]
    other = (Transition.FIRED, Transition.ESCALATION, Transition.RESOLVED)
    return [f"{episode.pk}:{t}" for t in other] + reminders


def alert_event(*, episode: AlertEpisode, payload: dict[str, Any]) -> NotificationEvent:
    rule, sensor = episode.rule, episode.sensor
    transition = Transition(payload["transition"])
    key = f"{episode.pk}:{transition}" + (f":{payload['reminder']}" if "reminder" in payload else "")
    verb = {
        Transition.RESOLVED: "resolved",
        Transition.REMINDER: "still firing",
        Transition.ESCALATION: "still firing, not acknowledged",
    }.get(transition, "firing")
    place = sensor.device.field.name if sensor.device.field else "no field"
    lines = [
        f"Field: {place}",
        f"Sensor: {sensor.device.name} · {sensor.label or sensor.key}",
        *_value_lines(rule, payload, sensor.unit),
        f"Since: {_since(episode.started_at, payload, rule.farm.time_zone)}",
        *([f"Note: {rule.note}"] if rule.note else []),
    ]
    prefix = f"[{rule.severity}]"
    if transition == Transition.ESCALATION:
        prefix = f"[{rule.severity}] Escalation:"
        lines.insert(0, "Escalation: nobody has acknowledged this alert; you are told as an owner of the farm.")
    return NotificationEvent(
        key=key,
        farm=rule.farm,
        severity=Severity(rule.severity),
        transition=transition,
        subject=f"{prefix} {rule.name} {verb} — {sensor.device.name}",
        lines=tuple(lines),
        link=reverse("alerts-episode", args=[rule.farm.slug, episode.pk]),
    )


def _value_lines(rule: AlertRule, payload: dict[str, Any], unit: str) -> list[str]:
    suffix = f" {unit}" if unit else ""
    lines = []
    if payload.get("value") is not None:
        lines.append(f"Value: {payload['value']:g}{suffix}")
    if rule.kind in (Kind.ABOVE, Kind.BELOW) and rule.threshold is not None:
        lines.append(f"Threshold: {rule.kind} {rule.threshold:g}{suffix}")
    elif rule.kind == Kind.OUTSIDE and rule.threshold is not None and rule.threshold_high is not None:
        lines.append(f"Threshold: outside {rule.threshold:g}–{rule.threshold_high:g}{suffix}")
    if payload.get("worst") is not None and payload.get("worst") != payload.get("value"):
        lines.append(f"Worst: {payload['worst']:g}{suffix}")
    return lines


def _since(started: datetime, payload: dict[str, Any], time_zone: str) -> str:
    at = datetime.fromisoformat(payload["at"]) if payload.get("at") else started
    minutes = max(int((at - started).total_seconds() // 60), 0)
    local = started.astimezone(ZoneInfo(time_zone))
    return f"{local:%Y-%m-%d %H:%M %Z} ({minutes} min)"
