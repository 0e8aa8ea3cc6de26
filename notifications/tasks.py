"""Celery tasks of notifications: send one delivery; sweep what is due and whose task was lost."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from notifications.sending import deliveries_due, delivery_send


@shared_task(
    bind=True,
    name="notifications.tasks.deliver",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # the delivery row counts the tries (NOTIFY_MAX_ATTEMPTS)
)
def deliver(self: Any, delivery_id: int) -> bool:
    """Send the delivery if it is due and not yet sent; True when this run sent it."""
    outcome = delivery_send(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.sent


@shared_task(
    name="notifications.tasks.sweep_deliveries", ignore_result=True, acks_late=True, reject_on_worker_lost=True
)
def sweep_deliveries() -> int:
    due = deliveries_due()
    for delivery_id in due:
        deliver.delay(delivery_id)
    return len(due)
