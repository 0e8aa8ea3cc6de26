"""Monthly (or N-monthly) range partitions of the readings table, by hand (docs/architecture.md §7).

``sensors_reading`` is partitioned by range of ``ts`` (migration 0010). Each partition is
named after its bounds, ``sensors_reading_pYYYYMMDD_YYYYMMDD`` (UTC, upper bound
exclusive), so the bounds are read from the catalogue by name, without parsing
``pg_get_expr``. A default partition, ``sensors_reading_default``, catches any reading no
partition covers (a backfill older than the oldest partition, a clock far in the future), so
COPY never fails for want of a partition.

Creating a partition over a range the default partition already holds rows for would fail
("updated partition constraint for default partition would be violated"), so such rows are
moved into the new table first, then it is attached. Retention drops whole partitions whose
upper bound is older than the cut-off (a ``DROP TABLE`` is instant and leaves no bloat) and
deletes the few expired rows of the default partition. Rollups live in their own tables and
are never touched here: they outlive the raw readings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from django.db import connection, transaction

from sensors.history.rollups import ROLLUP_LOCK

PARENT: Final = "sensors_reading"
DEFAULT: Final = "sensors_reading_default"
_NAME = re.compile(r"^sensors_reading_p(\d{8})_(\d{8})$")

_PARTITIONS_SQL = """
SELECT c.relname FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = %s AND p.relnamespace = to_regnamespace(current_schema())
"""

_MOVE_SQL = """
WITH moved AS (DELETE FROM sensors_reading_default WHERE ts >= %s AND ts < %s RETURNING sensor_id, ts, value)
INSERT INTO {target} (sensor_id, ts, value) SELECT sensor_id, ts, value FROM moved
"""


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """One partition's half-open UTC range ``[start, end)``; its name follows from it."""

    start: date
    end: date

    @property
    def name(self) -> str:
        return f"{PARENT}_p{self.start:%Y%m%d}_{self.end:%Y%m%d}"

    def overlaps(self, other: Partition) -> bool:
        return self.start < other.end and other.start < self.end


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def _month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def partition_for(*, moment: datetime, months: int) -> Partition:
    """The aligned partition of ``months`` months holding ``moment`` (aligned on month 0 of year 0)."""
    first = _month_index(moment.astimezone(UTC).date()) // months * months
    return Partition(_month_start(first), _month_start(first + months))


def existing_partitions() -> list[Partition]:
    """The readings' partitions by bounds, oldest first (the default partition is not one)."""
    with connection.cursor() as cursor:
        cursor.execute(_PARTITIONS_SQL, [PARENT])
        names = [row[0] for row in cursor.fetchall()]
    found = []
    for name in names:
        match = _NAME.match(name)
        if match:
            found.append(Partition(*(datetime.strptime(g, "%Y%m%d").date() for g in match.groups())))
    return sorted(found)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def partition_create(*, partition: Partition) -> None:
    """Create and attach ``partition``, first moving into it any rows the default partition holds for its range."""
    low, high = _midnight(partition.start), _midnight(partition.end)
    name = connection.ops.quote_name(partition.name)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        cursor.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (sensor_id, ts)")
        cursor.execute(_MOVE_SQL.replace("{target}", name), [low, high])
        # The CHECK lets ATTACH skip its scan of the new table; the default is scanned (now empty for the range).
        cursor.execute(
            f"ALTER TABLE {name} ADD CONSTRAINT {connection.ops.quote_name(partition.name + '_range')} "
            "CHECK (ts >= %s AND ts < %s)",
            [low, high],
        )
        cursor.execute(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", [low, high])
        cursor.execute(f"ALTER TABLE {name} DROP CONSTRAINT {connection.ops.quote_name(partition.name + '_range')}")


def partitions_ensure(*, now: datetime, months: int, ahead: int, since: datetime | None = None) -> list[Partition]:
    """Create every aligned partition from ``since`` (default: ``now``) to ``ahead`` partitions past ``now``.

    A range that overlaps a partition already there (one made under another
    ``READINGS_PARTITION_MONTHS``) is skipped: its readings stay where they are.
    Returns the partitions created.
    """
    have = existing_partitions()
    current = partition_for(moment=since or now, months=months)
    last = partition_for(moment=now, months=months)
    for _ in range(ahead):
        last = partition_for(moment=_midnight(last.end), months=months)
    created = []
    while current.start <= last.start:
        if not any(current.overlaps(p) for p in have):
            partition_create(partition=current)
            created.append(current)
        current = partition_for(moment=_midnight(current.end), months=months)
    return created


def partitions_drop_expired(*, now: datetime, retention: timedelta) -> list[Partition]:
    """Drop every partition wholly older than ``now - retention`` and the default's rows older than it.

    Only whole partitions go: one that still holds a reading inside the retention is kept.
    """
    cutoff = now - retention
    dropped = [p for p in existing_partitions() if _midnight(p.end) <= cutoff]
    with transaction.atomic(), connection.cursor() as cursor:
        # Not while the rollup refresher recomputes from raw (sensors/history/rollups.py): it checks
        # the retention horizon and reads raw readings in one transaction under this lock.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROLLUP_LOCK])
        for partition in dropped:
            cursor.execute(f"DROP TABLE {connection.ops.quote_name(partition.name)}")
        cursor.execute(f"DELETE FROM {DEFAULT} WHERE ts < %s", [cutoff])  # noqa: S608 - a constant name
    return dropped


def is_partitioned() -> bool:
    """Whether the readings table is partitioned yet (migration 0010 applied)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_partitioned_table t JOIN pg_class c ON c.oid = t.partrelid "
            "WHERE c.relname = %s AND c.relnamespace = to_regnamespace(current_schema())",
            [PARENT],
        )
        return cursor.fetchone() is not None


def reading_partitions_maintain(*, now: datetime) -> tuple[list[Partition], list[Partition]]:
    """Partitions ready per the ``READINGS_PARTITION*`` settings, expired ones dropped per ``READINGS_RAW_RETENTION``.

    Partitions reach back as far as ingest accepts a reading (``INGEST_RETENTION_DAYS``, or
    the raw retention if shorter), so a device's buffered backlog lands in a partition, not
    in the default one. Returns (created, dropped).
    """
    from django.conf import settings

    back = settings.INGEST_RETENTION_DAYS
    if settings.READINGS_RAW_RETENTION:
        back = min(back, settings.READINGS_RAW_RETENTION)
    created = partitions_ensure(
        now=now,
        months=settings.READINGS_PARTITION_MONTHS,
        ahead=settings.READINGS_PARTITIONS_AHEAD,
        since=now - timedelta(days=back),
    )
    dropped: list[Partition] = []
    if settings.READINGS_RAW_RETENTION:
        dropped = partitions_drop_expired(now=now, retention=timedelta(days=settings.READINGS_RAW_RETENTION))
    return created, dropped
