"""Reads of notifications: a person's channels, their failed deliveries, a farm's failed deliveries."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.utils import timezone

from farm.models import Farm
from notifications.models import Delivery, DeliveryState, NotificationChannel, NotificationPrefs

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
