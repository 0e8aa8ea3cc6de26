"""The in-app inbox's writes: a delivery lands in it; a person reads one, or all.

Every write tells the live bell after the commit (``inbox_signals``). Reads are in
``notifications.selectors``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from notifications.inbox_signals import inbox_changed_on_commit
from notifications.models import Delivery, InboxItem
from notifications.senders import Message


def in_app_path(link: str) -> str:
    """A message's link as a path in this site: the inbox must not send people to another host.

    Messages carry absolute links (``SITE_URL``), which may not be the address this browser
    uses (localhost against 127.0.0.1, a proxy's name); a link elsewhere is dropped.
    """
    if not link:
        return ""
    site = urlsplit(settings.SITE_URL)
    parts = urlsplit(link)
    if parts.scheme or parts.netloc:
        if (parts.scheme, parts.netloc) != (site.scheme, site.netloc):
            return ""
        link = (
            parts.path + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
        )
    return link if link.startswith("/") and not link.startswith("//") else ""


def inbox_deliver(*, delivery: Delivery, message: Message) -> InboxItem:
    """Put ``message`` in the delivery's person's inbox, once (by the delivery's key), in the caller's transaction."""
    link = str(message.data.get("link", ""))
    body = "\n".join(line for line in message.body.splitlines() if not link or line != link)  # the list links it
    item, created = InboxItem.objects.get_or_create(
        key=delivery.key,
        defaults={
            "user_id": delivery.user_id,
            "farm_id": delivery.farm_id,
            "delivery": delivery,
            "severity": delivery.severity,
            "subject": message.subject[:300],
            "body": body,
            "link": in_app_path(link)[:2000],
            "created_at": timezone.now(),
        },
    )
    if created:
        inbox_changed_on_commit({delivery.user_id})
    return item


def inbox_test_deliver(*, user: User, key: str, message: Message) -> InboxItem:
    """A channel's "send a test": a real inbox item, so the person sees the bell count rise."""
    item = InboxItem.objects.create(
        key=key, user=user, severity="info", subject=message.subject[:300], body=message.body,
        link="", created_at=timezone.now(),
    )  # fmt: skip
    inbox_changed_on_commit({user.pk})
    return item


def inbox_item_read(*, user: User, item_id: int) -> InboxItem | None:
    """Mark one of the person's items read; None when it is not theirs."""
    with transaction.atomic():
        item = InboxItem.objects.select_for_update().filter(pk=item_id, user=user).first()
        if item is None:
            return None
        if item.read_at is None:
            item.read_at = timezone.now()
            item.save(update_fields=["read_at"])
            inbox_changed_on_commit({user.pk})
        return item


def inbox_all_read(*, user: User) -> int:
    """Mark every unread item of the person read; how many were."""
    with transaction.atomic():
        count = InboxItem.objects.filter(user=user, read_at__isnull=True).update(read_at=timezone.now())
        if count:
            inbox_changed_on_commit({user.pk})
    return count
