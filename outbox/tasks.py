"""Celery tasks of the outbox: the nudged drain and the periodic sweep (``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from celery import shared_task

from outbox.services import outbox_drain, outbox_purge


@shared_task(name="outbox.tasks.drain_outbox", ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def drain_outbox() -> int:
    """Process what is due now; returns how many messages were processed."""
    return outbox_drain().processed


@shared_task(name="outbox.tasks.sweep_outbox", ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def sweep_outbox() -> int:
    """Drain what lost nudges left behind and purge old processed messages."""
    processed = outbox_drain().processed
    outbox_purge()
    return processed
