"""Planning: the deliveries of an event, written in the caller's transaction (sending is in sending.py).

Exactly once per (event, recipient, channel): ``Delivery.key`` is unique, planning locks the
recipients' channel rows (so two plans for one channel run one after the other) and skips
keys that exist; a collecting batch it joins is locked too, so an event never joins a batch
whose send has already read its members.
"""

from __future__ import annotations

import uuid
import zoneinfo
from collections.abc import Sequence
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
    ChannelKind,
    Delivery,
    DeliveryKind,
    DeliveryState,
    NotificationChannel,
    NotificationPrefs,
    Severity,
)
from notifications.planning import Plan, Prefs, Recent, plan_delivery
from notifications.render import single_message
from notifications.sending import delivery_schedule

MESSAGE_STATES = [DeliveryState.QUEUED, DeliveryState.PENDING, DeliveryState.SENT, DeliveryState.FAILED]


def notifications_plan(
    *, event: NotificationEvent, recipients: Sequence[User] = (), recipient_ids: Sequence[int] = ()
) -> list[Delivery]:
    """Create the deliveries of ``event`` for ``recipients`` (or users by id) in the caller's transaction.

    Only current members of the event's farm are told. Messages to send now, and batches due
    soon, are handed to Celery after the commit; the rest wait for their due time (the sweep).

    A storm plans hundreds of events one after another in the outbox drain, each waiting for
    the database on every statement, so this keeps to one statement per step: the deliveries
    go in one insert, and inside a caller's transaction (the drain's savepoint) no savepoint of
    its own (bench/notify_bench.py, docs/benchmarks.md).
    """
    now = timezone.now()
    user_ids = {u.pk for u in recipients} | set(recipient_ids)
    with transaction.atomic(savepoint=False):
        channels = _channels_to_tell(event, user_ids)
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
                prefs=_prefs_for(channel, prefs.get(channel.user_id, Prefs())),
                recent=recent.get(channel.pk, Recent()),
                window=window,
            )
            created.append(_delivery_of(event, channel, plan, batches, now))
        Delivery.objects.bulk_create(created)
    for delivery in created:
        if delivery.state == DeliveryState.QUEUED:
            delivery_schedule(delivery.pk, delivery.due_at, now)
    return created


def _channels_to_tell(event: NotificationEvent, user_ids: set[int]) -> list[NotificationChannel]:
    members = Membership.objects.filter(farm=event.farm, user__in=sorted(user_ids), user__is_active=True)
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


def _prefs_for(channel: NotificationChannel, prefs: Prefs) -> Prefs:
    """Quiet hours hold what would make a sound; the bell makes none, so its inbox fills at once.

    Storm grouping and the hourly cap still apply: a list of 40 lines is no easier to read.
    """
    if channel.kind == ChannelKind.APP:
        return Prefs(None, None, prefs.critical_breaks_through, prefs.hourly_cap)
    return prefs


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


def _delivery_of(
    event: NotificationEvent, channel: NotificationChannel, plan: Plan, batches: dict[int, Delivery], now: datetime
) -> Delivery:
    """The delivery of ``event`` to ``channel``, unsaved (the caller inserts them in one go); a batch it joins is."""
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
        delivery_schedule(batch.pk, due, now)
    else:
        due = min(due, batch.due_at) if pull_forward else max(due, batch.due_at)
        severity = max(batch.severity, event.severity, key=lambda s: SEVERITY_RANK[Severity(s)])
        if (due, severity) != (batch.due_at, batch.severity):
            if due != batch.due_at:
                delivery_schedule(batch.pk, due, now)
            batch.due_at, batch.severity = due, severity
            batch.save(update_fields=["due_at", "severity"])
    return batch
