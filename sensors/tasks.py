"""Celery tasks of the sensors app (scheduled by ``CELERY_BEAT_SCHEDULE`` in settings)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from sensors.services import ingest_records_purge
from sensors.status import devices_mark_offline


@shared_task(name="sensors.tasks.sweep_offline_devices", ignore_result=True)
def sweep_offline_devices() -> int:
    """Mark overdue devices offline; returns how many changed."""
    return len(devices_mark_offline())


@shared_task(name="sensors.tasks.purge_ingest_records", ignore_result=True)
def purge_ingest_records() -> int:
    """Forget dead letters and skipped-field counts not seen for INGEST_RECORDS_RETENTION_DAYS; how many went."""
    result = ingest_records_purge(older_than=timedelta(days=settings.INGEST_RECORDS_RETENTION_DAYS))
    return result.dead_letters + result.skipped_fields


@shared_task(name="sensors.tasks.maintain_reading_partitions", ignore_result=True)
def maintain_reading_partitions() -> tuple[int, int]:
    """Create the readings' partitions ahead and drop expired ones; returns (created, dropped)."""
    from django.utils import timezone

    from sensors.partitions import reading_partitions_maintain

    created, dropped = reading_partitions_maintain(now=timezone.now())
    return len(created), len(dropped)


@shared_task(name="sensors.tasks.refresh_rollups", ignore_result=True)
def refresh_rollups() -> int:
    """Recompute the rollup buckets ingest logged dirty (sensors/history/rollups.py); how many hours."""
    from sensors.history.rollups import rollups_refresh

    return rollups_refresh().hours
