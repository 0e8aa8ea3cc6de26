"""Reads of notifications: a person's channels and inbox, their failed deliveries, a farm's failed deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.utils import timezone

from farm.models import Farm, Membership, Role
from notifications.models import ChannelKind, Delivery, DeliveryState, InboxItem, NotificationChannel, NotificationPrefs

FAILED_SHOWN_DAYS = 14


def channels_of(user: User) -> QuerySet[NotificationChannel]:
    return NotificationChannel.objects.filter(user=user).order_by("created_at", "pk")


def prefs_of(user: User) -> NotificationPrefs:
    """The saved settings, or the defaults (unsaved) for someone who never changed them."""
    return NotificationPrefs.objects.filter(user=user).first() or NotificationPrefs(user=user)


def failed_deliveries_of_user(user: User, *, limit: int = 20) -> QuerySet[Delivery]:
    since = timezone.now() - timedelta(days=FAILED_SHOWN_DAYS)
    return (
        Delivery.objects.filter(user=user, state=DeliveryState.FAILED, created_at__gte=since)
        .select_related("farm")
        .order_by("-created_at", "-pk")[:limit]
    )


def failed_deliveries_of_farm(farm: Farm, *, limit: int = 50) -> QuerySet[Delivery]:
    since = timezone.now() - timedelta(days=FAILED_SHOWN_DAYS)
    return (
        Delivery.objects.filter(farm=farm, state=DeliveryState.FAILED, created_at__gte=since)
        .select_related("user")
        .order_by("-created_at", "-pk")[:limit]
    )


@dataclass(frozen=True, slots=True)
class DeliveryLogRow:
    """One line of an alert's delivery log: who, on which channel, what became of it, when."""

    user: User
    transition: str  # fired, reminder, escalation, resolved
    channel_label: str
    state: str  # sent, failed, queued, suppressed; "waiting" while held in a collecting message
    at: datetime | None  # sent_at of the message that carried it, else when it was planned
    grouped: bool  # carried in a grouped message (storm, quiet hours, cap)
    error: str


def delivery_log(*, event_keys: Sequence[str]) -> list[DeliveryLogRow]:
    """For an alert's page: every delivery of these events (e.g. its episode's transitions), oldest first."""
    rows = (
        Delivery.objects.filter(event_key__in=list(event_keys))
        .select_related("user", "batch")
        .order_by("created_at", "pk")
    )
    return [_log_row(d) for d in rows]


def _log_row(delivery: Delivery) -> DeliveryLogRow:
    carrier = delivery.batch or delivery
    state = "waiting" if carrier.state == DeliveryState.PENDING else carrier.state
    return DeliveryLogRow(
        user=delivery.user,
        transition=delivery.transition,
        channel_label=delivery.channel_label,
        state=state,
        at=carrier.sent_at or delivery.created_at,
        grouped=delivery.batch_id is not None,
        error=carrier.last_error,
    )


DEFAULT_ROLES = (Role.MANAGER, Role.OWNER)


def recipient_ids(*, farm: Farm, roles: Sequence[str] = DEFAULT_ROLES, user_ids: Sequence[int] = ()) -> list[int]:
    """Who a rule tells: active members of ``farm`` with one of ``roles``, plus named members.

    For producers building ``notification_payload``: escalation passes ``roles=(Role.OWNER,)``.
    Named users who are not members are left out (planning checks membership again at send time).
    """
    members = Membership.objects.filter(farm=farm, user__is_active=True).filter(
        Q(role__in=list(roles)) | Q(user_id__in=list(user_ids))
    )
    return sorted(set(members.values_list("user_id", flat=True)))


INBOX_SHOWN = 100  # the list page shows this many, newest first


def inbox_of(user: User, *, limit: int = INBOX_SHOWN) -> QuerySet[InboxItem]:
    """The person's notifications, newest first (index inbox_user_newest)."""
    return InboxItem.objects.filter(user=user).order_by("-created_at", "-pk")[:limit]


def inbox_unread_count(user_id: int) -> int:
    """The bell's number (index inbox_user_unread)."""
    return InboxItem.objects.filter(user_id=user_id, read_at__isnull=True).count()


def has_app_channel(user: User) -> bool:
    return NotificationChannel.objects.filter(user=user, kind=ChannelKind.APP, enabled=True).exists()
