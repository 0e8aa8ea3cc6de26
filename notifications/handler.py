"""The outbox topic through which alerts (or anything) ask for people to be told.

Payload: ``{"event": NotificationEvent.to_payload(), "recipient_ids": [user ids]}``
(README, "Notifications"). Runs inside the outbox drain's transaction and writes only
delivery rows; the sends are queued after that transaction commits.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User

from notifications.events import NotificationEvent
from notifications.services import notifications_plan

TOPIC = "notifications.event"


def notification_payload(*, event: NotificationEvent, recipient_ids: list[int]) -> dict[str, Any]:
    """What a producer puts in ``OutboxItem(TOPIC, payload, key=event.key)``."""
    return {"event": event.to_payload(), "recipient_ids": sorted(set(recipient_ids))}


def handle_notification_event(payload: dict[str, Any]) -> None:
    event = NotificationEvent.from_payload(payload["event"])
    recipients = list(User.objects.filter(pk__in=payload.get("recipient_ids", []), is_active=True))
    notifications_plan(event=event, recipients=recipients)
