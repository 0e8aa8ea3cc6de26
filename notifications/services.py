"""Writes of notifications: plan deliveries for an event, send one delivery, sweep what is due.

Exactly once per (event, recipient, channel): ``Delivery.key`` is unique, planning locks the
recipients' channel rows (so two plans for one channel run one after the other) and skips
keys that exist. Sending claims the delivery row with ``SELECT … FOR UPDATE`` and holds it
through the send, so a second task for it waits, then finds it sent. The one window left is a
worker killed after the message left and before the commit: the redelivered task sends it
again, with the same ``Furrow-Delivery`` key so that a receiver can drop the repeat.
"""

from __future__ import annotations

import logging
import uuid
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from farm.models import Farm, Membership
from notifications.events import NotificationEvent
from notifications.models import (
    SEVERITY_RANK,
    Delivery,
    DeliveryKind,
    DeliveryState,
    NotificationChannel,
    NotificationPrefs,
    Severity,
)
from notifications.planning import Plan, Prefs, Recent, plan_delivery
from notifications.render import batch_message, single_message
from notifications.senders import Message, SendError, message_send

logger = logging.getLogger(__name__)

ERROR_MAX_CHARS = 2000
# A batch due later than this is left to the sweep: a Celery ETA task held for hours in Redis
# would be redelivered every visibility timeout.
ETA_HORIZON = timedelta(minutes=10)
MESSAGE_STATES = [DeliveryState.QUEUED, DeliveryState.PENDING, DeliveryState.SENT, DeliveryState.FAILED]


def notifications_plan(*, event: NotificationEvent, recipients: Sequence[User]) -> list[Delivery]:
    """Create the deliveries of ``event`` for ``recipients`` in the caller's transaction.

    Only current members of the event's farm are told. Messages to send now, and batches due
    soon, are handed to Celery after the commit; the rest wait for their due time (the sweep).
    """
    now = timezone.now()
    with transaction.atomic():
        channels = _channels_to_tell(event, recipients)
        if not channels:
            return []
        prefs = _prefs_of({c.user_id for c in channels})
        recent, batches = _recent(channels, event.farm, now)
        tz = zoneinfo.ZoneInfo(event.farm.time_zone)
        window = timedelta(seconds=settings.NOTIFY_GROUP_SECONDS)
        created: list[Delivery] = []
        for channel in channels:
            plan = plan_delivery(
                now=now,
                tz=tz,
                severity=event.severity,
                prefs=prefs.get(channel.user_id, Prefs()),
                recent=recent.get(channel.pk, Recent()),
                window=window,
            )
            created.append(_delivery_create(event, channel, plan, batches, now))
    for delivery in created:
        if delivery.state == DeliveryState.QUEUED:
            _schedule_after_commit(delivery.pk, delivery.due_at, now)
    return created


def _channels_to_tell(event: NotificationEvent, recipients: Sequence[User]) -> list[NotificationChannel]:
    members = Membership.objects.filter(farm=event.farm, user__in=[u.pk for u in recipients], user__is_active=True)
    # Locked in id order: concurrent plans for the same channels queue up instead of deadlocking.
    channels = [
        c
        for c in NotificationChannel.objects.select_for_update()
        .filter(user_id__in=members.values("user_id"), enabled=True)
        .order_by("pk")
        if c.takes(event.severity)
    ]
    existing = set(Delivery.objects.filter(key__in=[_key(event, c) for c in channels]).values_list("key", flat=True))
    return [c for c in channels if _key(event, c) not in existing]


def _key(event: NotificationEvent, channel: NotificationChannel) -> str:
    return f"{event.key}:{channel.user_id}:{channel.pk}"


def _prefs_of(user_ids: set[int]) -> dict[int, Prefs]:
    return {
        p.user_id: Prefs(p.quiet_start, p.quiet_end, p.critical_breaks_through, p.hourly_cap)
        for p in NotificationPrefs.objects.filter(user_id__in=user_ids)
    }


def _recent(
    channels: list[NotificationChannel], farm: Farm, now: datetime
) -> tuple[dict[int, Recent], dict[int, Delivery]]:
    """Per channel: its messages of the last hour, its last one about ``farm``, its collecting batch (locked)."""
    ids = [c.pk for c in channels]
    window_start = now - timedelta(seconds=settings.NOTIFY_GROUP_SECONDS)
    rows = (
        Delivery.objects.filter(channel_id__in=ids, state__in=MESSAGE_STATES, created_at__gte=now - timedelta(hours=1))
        .values("channel_id")
        .annotate(
            count=Count("id"),
            oldest=Min("created_at"),
            # A batch still collecting is not a message yet: it does not make the next alert wait.
            last_farm=Max(
                "created_at", filter=Q(farm=farm, created_at__gte=window_start) & ~Q(state=DeliveryState.PENDING)
            ),
        )
    )
    # Locked: a send of this batch waits for us, or we wait for it and then see it no longer pending.
    batches = {
        b.channel_id: b
        for b in Delivery.objects.select_for_update().filter(channel_id__in=ids, farm=farm, state=DeliveryState.PENDING)
        if b.channel_id is not None
    }
    recent = {r["channel_id"]: Recent(r["count"], r["oldest"], r["last_farm"], None) for r in rows}
    for channel_id, batch in batches.items():
        base = recent.get(channel_id, Recent())
        recent[channel_id] = Recent(base.hour_count, base.hour_oldest, base.last_farm_message_at, batch.due_at)
    return recent, batches


def _delivery_create(
    event: NotificationEvent, channel: NotificationChannel, plan: Plan, batches: dict[int, Delivery], now: datetime
) -> Delivery:
    message = single_message(event=event, key=_key(event, channel))
    delivery = Delivery(
        key=message.key,
        event_key=event.key,
        farm=event.farm,
        user_id=channel.user_id,
        channel=channel,
        channel_label=str(channel)[:200],
        severity=event.severity,
        transition=event.transition,
        subject=message.subject[:300],
        body=message.body,
        data=message.data,
        created_at=now,
        due_at=now,
    )
    if plan.fold_until is not None:
        delivery.state = DeliveryState.FOLDED
        delivery.batch = _batch_for(
            channel, event, batches, due=plan.fold_until, pull_forward=plan.pull_forward, now=now
        )
    delivery.save(force_insert=True)
    return delivery


def _batch_for(
    channel: NotificationChannel,
    event: NotificationEvent,
    batches: dict[int, Delivery],
    *,
    due: datetime,
    pull_forward: bool,
    now: datetime,
) -> Delivery:
    batch = batches.get(channel.pk)
    if batch is None:
        batch = Delivery.objects.create(
            key=f"batch:{channel.pk}:{event.farm.pk}:{uuid.uuid4().hex}",
            kind=DeliveryKind.BATCH,
            state=DeliveryState.PENDING,
            farm=event.farm,
            user_id=channel.user_id,
            channel=channel,
            channel_label=str(channel)[:200],
            severity=event.severity,
            subject=f"Alerts on {event.farm.name}"[:300],
            created_at=now,
            due_at=due,
        )
        batches[channel.pk] = batch
        _schedule_after_commit(batch.pk, due, now)
    else:
        due = min(due, batch.due_at) if pull_forward else max(due, batch.due_at)
        severity = max(batch.severity, event.severity, key=lambda s: SEVERITY_RANK[Severity(s)])
        if (due, severity) != (batch.due_at, batch.severity):
            if due != batch.due_at:
                _schedule_after_commit(batch.pk, due, now)
            batch.due_at, batch.severity = due, severity
            batch.save(update_fields=["due_at", "severity"])
    return batch


def _schedule_after_commit(delivery_id: int, due: datetime, now: datetime) -> None:
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
    try:
        message_send(channel=channel, message=message)
        error = ""
    except SendError as exc:
        error = str(exc)[:ERROR_MAX_CHARS]
    channel.last_test_at, channel.last_test_ok, channel.last_test_error = timezone.now(), not error, error
    channel.save(update_fields=["last_test_at", "last_test_ok", "last_test_error"])
    return error
