"""Celery tasks of the alerts app (scheduled by ``CELERY_BEAT_SCHEDULE`` in settings)."""

from __future__ import annotations

from celery import shared_task

from alerts.sweep import alerts_sweep


@shared_task(name="alerts.tasks.sweep_alerts", ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def sweep_alerts() -> int:
    """Run the time-driven alert transitions; returns how many states changed."""
    return alerts_sweep().changed
