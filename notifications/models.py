"""Who hears about what, on which channel, and a record of every message (docs/architecture.md §1).

A ``Delivery`` exists once per (event, recipient, channel): its ``key`` is unique in the
database, so a redelivered outbox message or a repeated task cannot create or send a second one.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

from alerts.models import Severity  # one severity scale: the alerts' (notifications build on them)
from farm.models import Farm

SEVERITY_RANK = {Severity.INFO: 1, Severity.WARNING: 2, Severity.CRITICAL: 3}


class Transition(models.TextChoices):
    FIRED = "fired", "Fired"
    REMINDER = "reminder", "Reminder"
    ESCALATION = "escalation", "Escalation"
    RESOLVED = "resolved", "Resolved"


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    APPRISE = "apprise", "Apprise URL"
    WEBHOOK = "webhook", "Signed JSON webhook"
    APP = "app", "In the app"


# The target an "In the app" channel stores: the person's own inbox needs no address.
APP_TARGET = "inbox"


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


class NotificationChannel(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_channels")
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    label = models.CharField(max_length=80, blank=True)
    target = models.CharField(
        max_length=2000, help_text="An email address, an Apprise URL or a webhook URL (in the app: 'inbox')."
    )
    secret = models.CharField(
        max_length=100, default=new_webhook_secret, help_text="Signs webhook bodies (HMAC-SHA256)."
    )
    enabled = models.BooleanField(default=True)
    min_severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    created_at = models.DateTimeField(auto_now_add=True)
    last_test_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["user", "created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=ChannelKind.values), name="notification_channel_kind_valid"),
            models.CheckConstraint(
                condition=Q(min_severity__in=Severity.values), name="notification_channel_severity_valid"
            ),
            models.CheckConstraint(condition=~Q(target=""), name="notification_channel_target_set"),
        ]

    def __str__(self) -> str:
        if self.label:
            return self.label
        return (
            self.get_kind_display()
            if self.kind == ChannelKind.APP
            else f"{self.get_kind_display()} {self.target_shown}"
        )

    @property
    def target_shown(self) -> str:
        """The target without credentials an Apprise URL may carry (tokens, passwords)."""
        if self.kind == ChannelKind.APPRISE:
            scheme, _, rest = self.target.partition("://")
            return f"{scheme}://…" if rest else self.target
        if self.kind == ChannelKind.APP:
            return "the bell in the header"
        return self.target

    def takes(self, severity: str) -> bool:
        return SEVERITY_RANK[Severity(severity)] >= SEVERITY_RANK[Severity(self.min_severity)]


class NotificationPrefs(models.Model):
    """One person's quiet hours and hourly cap; times are read in the alert's farm's time zone."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_prefs")
    quiet_start = models.TimeField(null=True, blank=True, help_text="e.g. 22:00 (the farm's local time).")
    quiet_end = models.TimeField(null=True, blank=True, help_text="e.g. 06:30; may be past midnight.")
    critical_breaks_through = models.BooleanField(
        default=True, help_text="Critical alerts are sent at once, even in quiet hours."
    )
    hourly_cap = models.PositiveSmallIntegerField(
        default=10, help_text="Messages per channel per hour; beyond it, one summary. 0: no cap."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(quiet_start__isnull=True, quiet_end__isnull=True)
                | Q(quiet_start__isnull=False, quiet_end__isnull=False),
                name="notification_prefs_quiet_both_or_neither",
            ),
            models.CheckConstraint(
                condition=Q(quiet_start__isnull=True) | ~Q(quiet_start=models.F("quiet_end")),
                name="notification_prefs_quiet_not_empty",
            ),
        ]

    def __str__(self) -> str:
        return f"Notification settings of {self.user}"


class DeliveryKind(models.TextChoices):
    SINGLE = "single", "One event"
    BATCH = "batch", "Several events in one message"


class DeliveryState(models.TextChoices):
    QUEUED = "queued", "Queued"
    PENDING = "pending", "Collecting (sent at its due time)"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Not sent (channel removed or off)"
    FOLDED = "folded", "In a grouped message"


class Delivery(models.Model):
    """One message to one channel, or one event folded into a batch message (``batch``)."""

    key = models.CharField(max_length=300, unique=True, help_text="Idempotency key: event key, user, channel.")
    event_key = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=DeliveryKind.choices, default=DeliveryKind.SINGLE)
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.QUEUED)
    farm = models.ForeignKey(Farm, on_delete=models.CASCADE, related_name="notification_deliveries")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_deliveries")
    # SET_NULL: a removed channel's failures stay visible; channel_label says what it was.
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    channel_label = models.CharField(max_length=200)
    batch = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="members")
    severity = models.CharField(max_length=16, choices=Severity.choices)
    transition = models.CharField(max_length=16, choices=Transition.choices, blank=True)
    subject = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    data = models.JSONField(default=dict, help_text="The event as the webhook's JSON carries it.")
    created_at = models.DateTimeField()
    due_at = models.DateTimeField(help_text="Not tried before this time (a batch's window, a retry's backoff).")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.CheckConstraint(condition=Q(state__in=DeliveryState.values), name="delivery_state_valid"),
            models.CheckConstraint(condition=Q(kind__in=DeliveryKind.values), name="delivery_kind_valid"),
            models.CheckConstraint(condition=Q(severity__in=Severity.values), name="delivery_severity_valid"),
            models.CheckConstraint(
                condition=Q(state=DeliveryState.SENT, sent_at__isnull=False)
                | (~Q(state=DeliveryState.SENT) & Q(sent_at__isnull=True)),
                name="delivery_sent_has_sent_at",
            ),
            # A folded event rides in a batch; a message never does.
            models.CheckConstraint(
                condition=Q(state=DeliveryState.FOLDED, batch__isnull=False, kind=DeliveryKind.SINGLE)
                | (~Q(state=DeliveryState.FOLDED) & Q(batch__isnull=True)),
                name="delivery_folded_has_batch",
            ),
            models.CheckConstraint(
                condition=~Q(state=DeliveryState.PENDING) | Q(kind=DeliveryKind.BATCH),
                name="delivery_pending_is_batch",
            ),
            # At most one collecting batch per channel and farm: new events join it.
            models.UniqueConstraint(
                fields=["channel", "farm"],
                condition=Q(state=DeliveryState.PENDING),
                name="delivery_one_pending_batch_per_channel_farm",
            ),
        ]
        indexes = [
            # notifications.planning: recent messages of these channels (cap and storm window).
            models.Index(fields=["channel", "created_at"], name="delivery_channel_recent"),
            # notifications.services.deliveries_sweep: what is due and not yet done.
            models.Index(
                fields=["due_at"],
                name="delivery_due",
                condition=Q(state__in=[DeliveryState.QUEUED, DeliveryState.PENDING]),
            ),
            # notifications.selectors.delivery_log: an alert's deliveries by its events' keys.
            models.Index(fields=["event_key"], name="delivery_event_key"),
            # notifications.selectors: failures a user or a farm's owners see.
            models.Index(
                fields=["farm", "created_at"], name="delivery_failed", condition=Q(state=DeliveryState.FAILED)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} → {self.channel_label} ({self.state})"


class InboxItem(models.Model):
    """One notification in a person's in-app inbox: what an "In the app" channel's delivery writes.

    ``key`` is the delivery's idempotency key (unique), so a delivery lands in the inbox once.
    Written in the transaction that marks the delivery sent (notifications.sending): it can
    neither be lost nor repeated, unlike a message that leaves the machine.
    """

    key = models.CharField(max_length=300, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="inbox_items")
    farm = models.ForeignKey(Farm, on_delete=models.CASCADE, null=True, blank=True, related_name="inbox_items")
    delivery = models.OneToOneField(
        Delivery, on_delete=models.SET_NULL, null=True, blank=True, related_name="inbox_item"
    )
    severity = models.CharField(max_length=16, choices=Severity.choices)
    subject = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=2000, blank=True, help_text="A path in the app: the alert, or the farm.")
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(severity__in=Severity.values), name="inbox_item_severity_valid"),
        ]
        indexes = [
            # notifications.selectors.inbox_of: a person's newest first.
            models.Index(fields=["user", "-created_at", "-id"], name="inbox_user_newest"),
            # notifications.selectors.inbox_unread_counts: the bell's count.
            models.Index(fields=["user"], name="inbox_user_unread", condition=Q(read_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.subject} → {self.user} ({'read' if self.read_at else 'unread'})"
