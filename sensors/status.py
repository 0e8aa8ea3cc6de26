"""Offline detection: devices that stopped reporting are marked offline.

A device is overdue when its last report is older than twice its expected
interval plus a minute of slack (clock skew, a slow network server). The
dashboard already calls a reading "stale" after 1.5 intervals; "offline" is
the stronger statement that at least two reports are missing.

The change reaches downstream apps through the same two lanes the ingest worker
uses (``sensors.hooks``): writers in the transaction, notifiers after commit.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from sensors.hooks import BatchOutcome, DeviceChange, batch_written
from sensors.models import DeviceStatus

logger = logging.getLogger(__name__)

OFFLINE_AFTER_INTERVALS = 2
OFFLINE_GRACE_SECONDS = 60

# One statement decides and writes: the WHERE clause is re-checked on each row
# it locks, so a device whose fresh report commits meanwhile (the ingest
# worker setting last_seen) is not marked offline by a stale decision.
# updated_at is left alone: it records admin edits, and the ingest worker's
# registry reloads when it changes (status is not registry data).
_MARK_OFFLINE_SQL = """
    UPDATE sensors_device AS d
    SET status = %(offline)s
    FROM sensors_devicekind AS k
    WHERE d.kind_id = k.id
      AND d.enabled
      AND d.status = %(online)s
      AND d.last_seen < %(now)s - make_interval(
            secs => COALESCE(d.expected_interval, k.expected_interval) * %(factor)s + %(grace)s)
    RETURNING d.farm_id, d.id, d.status, d.last_seen, d.battery, d.rssi, d.snr
"""


def devices_mark_offline(*, now: datetime | None = None) -> list[DeviceChange]:
    """Mark every overdue online device offline; batch writers see it in the transaction, notifiers after commit.

    Returns the changes (empty when nothing was overdue). Devices that were
    never seen stay "never seen": offline means "was online, went quiet".
    """
    now = now or timezone.now()
    params: dict[str, Any] = {
        "offline": DeviceStatus.OFFLINE.value,
        "online": DeviceStatus.ONLINE.value,
        "now": now,
        "factor": OFFLINE_AFTER_INTERVALS,
        "grace": OFFLINE_GRACE_SECONDS,
    }
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_MARK_OFFLINE_SQL, params)
            changes = [DeviceChange(*row) for row in cursor.fetchall()]
        if changes:
            batch_written(BatchOutcome(devices=changes, at=now))
    if changes:
        logger.info("marked %d device(s) offline", len(changes))
    return changes
