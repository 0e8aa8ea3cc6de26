"""The outbox topic through which alerts (or anything) ask for people to be told.

Payload: ``{"event": NotificationEvent.to_payload(), "recipient_ids": [user ids]}``
(README, "Notifications"). Runs inside the outbox drain's transaction and writes only
delivery rows; the sends are queued after that transaction commits.
"""

from __future__ import annotations

import logging
from typing import Any

from farm.models import Farm
from notifications.events import NotificationEvent
from notifications.services import notifications_plan

logger = logging.getLogger(__name__)

TOPIC = "notifications.event"


def notification_payload(*, event: NotificationEvent, recipient_ids: list[int]) -> dict[str, Any]:
    """What a producer puts in ``OutboxItem(TOPIC, payload, key=event.key)``."""
    return {"event": event.to_payload(), "recipient_ids": sorted(set(recipient_ids))}


def handle_notification_event(payload: dict[str, Any]) -> None:
    try:
        event = NotificationEvent.from_payload(payload["event"])
    except Farm.DoesNotExist:
        logger.info("notification %s dropped: its farm was deleted", payload["event"].get("key"))
        return  # nobody is left to tell; retrying would only fail again
    # Planning tells only active members of the farm: the ids need no query of their own.
    notifications_plan(event=event, recipient_ids=[int(pk) for pk in payload.get("recipient_ids", [])])
