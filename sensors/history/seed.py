"""Seeding history straight into the readings table: the demo farm's weeks of past readings in seconds.

The one writer of readings besides the ingest store (docs/architecture.md §1), for a farm
whose history no device ever sent: ``make run`` seeds the demo farm once, before the ingest
worker starts. A binary COPY of a season (~330,000 readings) takes about a second, with no
broker, decoding or per-batch work in between. The batch writers do not see these rows, so
the rollups of the seeded range are rebuilt from them set-based (``rollups_rebuild``) in the
same transaction, and whatever else a batch writer would have derived (alert episodes) is
the caller's to replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

from .rollups import rollups_rebuild

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COPY_SQL = "COPY sensors_reading (sensor_id, ts, value) FROM STDIN (FORMAT BINARY)"


@dataclass(frozen=True, slots=True)
class SeedColumn:
    """One sensor's readings: times in epoch microseconds (ascending, unique) and finite values."""

    sensor_id: int
    ts_us: Sequence[int]
    values: Sequence[float]


def readings_seed(*, columns: Sequence[SeedColumn], start: datetime, end: datetime) -> int:
    """COPY ``columns`` (all inside ``[start, end)``, none already stored) and rebuild their rollups; returns the rows.

    One transaction: the readings and their hourly and daily rollups commit together. For a
    range no ingested reading shares (a partly covered local day is rebuilt from the rows
    there are, and ingest folds later readings on top exactly).
    """
    count = 0
    with transaction.atomic():
        with connection.cursor() as cursor, cursor.cursor.copy(_COPY_SQL) as copy:
            copy.set_types(["int8", "timestamptz", "float8"])
            for column in columns:
                sensor_id = column.sensor_id
                for ts_us, value in zip(column.ts_us, column.values, strict=True):
                    copy.write_row((sensor_id, _EPOCH + timedelta(microseconds=ts_us), value))
                count += len(column.ts_us)
        rollups_rebuild(sensor_ids=sorted({c.sensor_id for c in columns}), start=start, end=end)
    return count
