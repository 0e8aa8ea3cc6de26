"""Alert transitions become notifications: the outbox handler of ``alerts.transition``.

The alerts app records each transition (fired, reminder, resolved) in the outbox in the
transaction that caused it; this handler, run by the outbox drain, turns one into a
``NotificationEvent`` for the farm's managers and owners and plans its deliveries in the
drain's transaction, so a transition is planned exactly once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from alerts.models import AlertEpisode, AlertRule, Kind
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
    event = alert_event(episode=episode, payload=payload)
    notifications_plan(event=event, recipient_ids=recipient_ids(farm=episode.rule.farm))


def alert_event(*, episode: AlertEpisode, payload: dict[str, Any]) -> NotificationEvent:
    rule, sensor = episode.rule, episode.sensor
    transition = Transition(payload["transition"])
    key = f"{episode.pk}:{transition}" + (f":{payload['reminder']}" if "reminder" in payload else "")
    verb = {Transition.RESOLVED: "resolved", Transition.REMINDER: "still firing"}.get(transition, "firing")
    place = sensor.device.field.name if sensor.device.field else "no field"
    lines = [
        f"Field: {place}",
        f"Sensor: {sensor.device.name} · {sensor.label or sensor.key}",
        *_value_lines(rule, payload, sensor.unit),
        f"Since: {_since(episode.started_at, payload, rule.farm.time_zone)}",
        *([f"Note: {rule.note}"] if rule.note else []),
    ]
    return NotificationEvent(
        key=key,
        farm=rule.farm,
        severity=Severity(rule.severity),
        transition=transition,
        subject=f"[{rule.severity}] {rule.name} {verb} — {sensor.device.name}",
        lines=tuple(lines),
        link=f"/farms/{rule.farm.slug}/alerts/",
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
