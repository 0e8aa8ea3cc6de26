"""Messages from events: one event's, and a batch's that names each event it holds."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.urls import reverse

from notifications.events import NotificationEvent
from notifications.models import Delivery
from notifications.senders import Message

BATCH_LISTED = 50  # a batch names this many events, then says how many more


def single_message(*, event: NotificationEvent, key: str) -> Message:
    return Message(key=key, subject=event.subject, body=event.body, data=event.data())


def batch_message(*, batch: Delivery, members: Sequence[Delivery]) -> Message:
    """One member: its own message. Several: a count, a line per event, a link to the farm."""
    if len(members) == 1:
        only = members[0]
        return Message(key=batch.key, subject=only.subject, body=only.body, data=only.data)
    farm = batch.farm
    link = settings.SITE_URL.rstrip("/") + reverse("farm-dashboard", args=[farm.slug])
    lines = [f"[{m.severity}] {m.subject}" for m in members[:BATCH_LISTED]]
    if len(members) > BATCH_LISTED:
        lines.append(f"… and {len(members) - BATCH_LISTED} more")
    subject = f"{len(members)} alerts on {farm.name}"
    data = {
        "key": batch.key,
        "farm": {"id": farm.pk, "slug": farm.slug, "name": farm.name},
        "severity": batch.severity,
        "transition": "grouped",
        "subject": subject,
        "lines": lines,
        "link": link,
        "events": [m.data for m in members],
    }
    return Message(key=batch.key, subject=subject, body="\n".join([f"Farm: {farm.name}", *lines, link]), data=data)
