"""Putting one rendered message on the wire: email (Django), any Apprise URL, the signed webhook.

Each sender raises ``SendError`` with text a person can act on; nothing here touches the database.
"""

from __future__ import annotations

import json
import smtplib
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string

from notifications.models import ChannelKind, NotificationChannel
from notifications.signing import SIGNATURE_HEADER, webhook_signature


class SendError(Exception):
    """The channel refused or could not be reached; the text says why."""


@dataclass(frozen=True, slots=True)
class Message:
    key: str  # the delivery's idempotency key: receivers may drop a repeat by it
    subject: str
    body: str
    data: dict[str, Any]  # the webhook's JSON (README, "Notifications")


def message_send(*, channel: NotificationChannel, message: Message) -> None:
    """Email, Apprise or webhook; an "In the app" channel never leaves the database (notifications.inbox)."""
    senders = {ChannelKind.EMAIL: _send_email, ChannelKind.APPRISE: _send_apprise, ChannelKind.WEBHOOK: _send_webhook}
    senders[ChannelKind(channel.kind)](channel, message)


def _send_email(channel: NotificationChannel, message: Message) -> None:
    html = render_to_string("notifications/email.html", {"message": message})
    email = EmailMultiAlternatives(
        subject=message.subject,
        body=message.body,
        to=[channel.target],
        headers={"X-Furrow-Delivery": message.key},
        connection=get_connection(fail_silently=False),
    )
    email.attach_alternative(html, "text/html")
    try:
        email.send()
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"{type(exc).__name__}: {exc}") from exc


def _send_apprise(channel: NotificationChannel, message: Message) -> None:
    # Imported here: Apprise loads every service plugin (~7 MB), and the processes that only
    # plan notifications (the ingest store process among them) never send one.
    import apprise

    notifier = apprise.Apprise()
    if not notifier.add(channel.target):
        raise SendError("Apprise does not recognise this URL.")
    # Apprise reports why a service refused only in its log: capture it for the person.
    with apprise.LogCapture(level=apprise.logging.WARNING, fmt="%(message)s") as log:
        ok = notifier.notify(title=message.subject, body=message.body)
    if not ok:
        detail = " ".join(log.getvalue().split())
        raise SendError(detail or "Apprise could not deliver the message.")


def _send_webhook(channel: NotificationChannel, message: Message) -> None:
    timestamp = int(time.time())
    body = json.dumps({"id": message.key, "timestamp": timestamp, **message.data}, separators=(",", ":")).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked (http/https) by the channel form
        channel.target,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Furrow-Webhook/1",
            "Furrow-Delivery": message.key,
            SIGNATURE_HEADER: webhook_signature(secret=channel.secret, timestamp=timestamp, body=body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.NOTIFY_TIMEOUT_SECONDS) as response:  # noqa: S310
            response.read(1024)
    except urllib.error.HTTPError as exc:
        raise SendError(f"HTTP {exc.code} {exc.reason}: {exc.read(300).decode(errors='replace')}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SendError(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from exc
