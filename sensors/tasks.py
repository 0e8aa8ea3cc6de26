"""Celery tasks of the sensors app (scheduled by ``CELERY_BEAT_SCHEDULE`` in settings)."""

from __future__ import annotations

from celery import shared_task

from sensors.status import devices_mark_offline


@shared_task(name="sensors.tasks.sweep_offline_devices", ignore_result=True)
def sweep_offline_devices() -> int:
    """Mark overdue devices offline; returns how many changed."""
    return len(devices_mark_offline())


@shared_task(name="sensors.tasks.maintain_reading_partitions", ignore_result=True)
def maintain_reading_partitions() -> tuple[int, int]:
    """Create the readings' partitions ahead and drop expired ones; returns (created, dropped)."""
    from django.utils import timezone

    from sensors.partitions import reading_partitions_maintain

    created, dropped = reading_partitions_maintain(now=timezone.now())
    return len(created), len(dropped)
