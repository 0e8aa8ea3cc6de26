"""The transactional outbox: work that must reach Celery, written in the transaction that caused it.

A batch writer (or any service) inserts rows here in its own transaction, so the work
commits or rolls back with its cause. After the commit a nudge asks Celery to drain; a
beat sweep drains whatever a lost nudge left behind. See ``outbox.services``.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class OutboxMessage(models.Model):
    topic = models.CharField(max_length=100, help_text="Names the handler that processes the message.")
    payload = models.JSONField(default=dict)
    key = models.CharField(  # noqa: DJ001 - NULL: no key, so no uniqueness (NULLs are distinct)
        max_length=200, null=True, blank=True, help_text="Idempotency key: a second message with it is not added."
    )
    created_at = models.DateTimeField()
    available_at = models.DateTimeField(help_text="Not processed before this time (retry backoff).")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    processed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True, help_text="Set when the last attempt failed.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["topic", "key"], name="outbox_unique_topic_key"),
        ]
        indexes = [
            # outbox.services._CLAIM_SQL: the oldest due rows not yet processed or given up on.
            models.Index(
                fields=["available_at", "id"],
                name="outbox_due",
                condition=Q(processed_at__isnull=True, failed_at__isnull=True),
            ),
            # outbox.services.outbox_purge: processed rows past their retention.
            models.Index(fields=["processed_at"], name="outbox_processed", condition=Q(processed_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.topic} #{self.pk}"

    @property
    def state(self) -> str:
        if self.processed_at:
            return "processed"
        return "failed" if self.failed_at else "pending"
