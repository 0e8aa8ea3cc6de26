"""The demo user's channels, which ``make run`` sets up: the bell (in the app) and email to the local sink.

Idempotent by (user, kind): a channel that exists (perhaps edited in the app) is left alone.
Both take every severity, so even the demo's *info* rule (Pump battery low) shows up.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import transaction

from notifications.models import APP_TARGET, ChannelKind, NotificationChannel, Severity

DEMO_EMAIL = "demo@furrow.localhost"  # under `make run` mail is written to var/mail/, never sent


@transaction.atomic
def demo_channels_ensure(*, user: AbstractUser) -> list[NotificationChannel]:
    """Give ``user`` an in-app and an email channel unless they have one of that kind; returns those created."""
    if not user.email:
        user.email = DEMO_EMAIL
        user.save(update_fields=["email"])
    have = set(NotificationChannel.objects.filter(user_id=user.pk).values_list("kind", flat=True))
    wanted = [
        (ChannelKind.APP, APP_TARGET, "This app (the bell)"),
        (ChannelKind.EMAIL, user.email, "Email (local sink under make run)"),
    ]
    return [
        NotificationChannel.objects.create(
            user_id=user.pk, kind=kind, target=target, label=label, min_severity=Severity.INFO
        )
        for kind, target, label in wanted
        if kind not in have
    ]
