"""Sending: one due delivery at most once, retried with backoff, then failed; the sweep; a test send.

An "In the app" channel's delivery is not sent anywhere: it becomes an inbox row in the same
transaction that marks it sent (notifications.inbox), so it has no duplicate window at all.

The task claims its row with ``SELECT … FOR UPDATE`` and holds it through the send, so a second
run for the same delivery waits, then finds it sent. The one window left is a worker killed
after the message left and before the commit: the redelivered task sends it again, with the same
``Furrow-Delivery`` key so that a receiver can drop the repeat (tests/test_notifications_crash.py).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications.inbox import inbox_deliver, inbox_test_deliver
from notifications.models import ChannelKind, Delivery, DeliveryKind, DeliveryState, NotificationChannel
from notifications.render import batch_message
from notifications.senders import Message, SendError, message_send

logger = logging.getLogger(__name__)

ERROR_MAX_CHARS = 2000
# A batch due later than this is left to the sweep: a Celery ETA task held for hours in Redis
# would be redelivered every visibility timeout.
ETA_HORIZON = timedelta(minutes=10)


def delivery_schedule(delivery_id: int, due: datetime, now: datetime) -> None:
    """After the commit, queue the send for ``due`` — unless that is beyond ETA_HORIZON (the sweep's job)."""
    if due - now > ETA_HORIZON:
        return  # the sweep sends it when due

    def schedule() -> None:
        from notifications.tasks import deliver  # tasks import this module

        try:
            deliver.apply_async((delivery_id,), countdown=max(0.0, (due - timezone.now()).total_seconds()))
        except Exception:  # the broker is down: the sweep sends it when it is back
            logger.warning("could not queue delivery %d; the sweep will send it", delivery_id, exc_info=True)

    transaction.on_commit(schedule)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    sent: bool = False
    retry_in: float | None = None  # seconds until the next try, when this one failed
    error: str = ""


NOTHING_TO_DO = SendOutcome()


def delivery_send(*, delivery_id: int) -> SendOutcome:
    """Send one due delivery (or batch) once; on failure back off, after the last try mark it failed."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("channel", "farm")
            .filter(pk=delivery_id, state__in=[DeliveryState.QUEUED, DeliveryState.PENDING])
            .first()
        )
        now = timezone.now()
        if delivery is None or delivery.due_at > now:
            return NOTHING_TO_DO  # already sent, failed or suppressed, or not due yet
        channel = delivery.channel
        if channel is None or not channel.enabled:
            delivery.state = DeliveryState.SUPPRESSED
            delivery.save(update_fields=["state"])
            return NOTHING_TO_DO
        message = _message_of(delivery)
        if channel.kind == ChannelKind.APP:
            # Written in this transaction with the delivery's state: exactly once, no window.
            inbox_deliver(delivery=delivery, message=message)
        else:
            try:
                message_send(channel=channel, message=message)
            except SendError as exc:
                return _record_failure(delivery, str(exc), now)
        delivery.state, delivery.sent_at, delivery.attempts = DeliveryState.SENT, timezone.now(), delivery.attempts + 1
        delivery.subject, delivery.body, delivery.data = message.subject[:300], message.body, message.data
        delivery.last_error = ""
        delivery.save(update_fields=["state", "sent_at", "attempts", "subject", "body", "data", "last_error"])
        return SendOutcome(sent=True)


def _message_of(delivery: Delivery) -> Message:
    if delivery.kind == DeliveryKind.SINGLE:
        return Message(key=delivery.key, subject=delivery.subject, body=delivery.body, data=delivery.data)
    # Its first try closes the batch: later events start a new one, so none is left out unsent.
    delivery.state = DeliveryState.QUEUED
    return batch_message(batch=delivery, members=list(delivery.members.order_by("created_at", "id")))


def _record_failure(delivery: Delivery, error: str, now: datetime) -> SendOutcome:
    delivery.attempts += 1
    delivery.last_error = error[:ERROR_MAX_CHARS]
    if delivery.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        delivery.state = DeliveryState.FAILED
        logger.error("delivery %d failed %d times; giving up: %s", delivery.pk, delivery.attempts, error)
        delivery.save(update_fields=["state", "attempts", "last_error"])
        return SendOutcome(error=error)
    delay = min(settings.NOTIFY_RETRY_SECONDS * 2 ** (delivery.attempts - 1), 3600)
    delivery.due_at = now + timedelta(seconds=delay)
    delivery.save(update_fields=["state", "attempts", "last_error", "due_at"])
    return SendOutcome(retry_in=delay, error=error)


def deliveries_due(
    *, now: datetime | None = None, grace: timedelta = timedelta(seconds=15), limit: int = 500
) -> list[int]:
    """Deliveries due for ``grace`` already whose task is late or was lost: the sweep sends them."""
    cutoff = (now or timezone.now()) - grace
    return list(
        Delivery.objects.filter(state__in=[DeliveryState.QUEUED, DeliveryState.PENDING], due_at__lte=cutoff)
        .order_by("due_at")
        .values_list("pk", flat=True)[:limit]
    )


def channel_test(*, channel: NotificationChannel) -> str:
    """Send a test message now and record the result on the channel; the error text, or '' on success."""
    message = Message(
        key=f"test:{channel.pk}:{uuid.uuid4().hex}",
        subject="Furrow test notification",
        body=f"This is a test from Furrow to {channel}. If you can read it, alerts will reach you here.",
        data={"subject": "Furrow test notification", "transition": "test", "severity": "info", "lines": []},
    )
    error = ""
    if channel.kind == ChannelKind.APP:
        inbox_test_deliver(user=channel.user, key=message.key, message=message)
    else:
        try:
            message_send(channel=channel, message=message)
        except SendError as exc:
            error = str(exc)[:ERROR_MAX_CHARS]
    channel.last_test_at, channel.last_test_ok, channel.last_test_error = timezone.now(), not error, error
    channel.save(update_fields=["last_test_at", "last_test_ok", "last_test_error"])
    return error
