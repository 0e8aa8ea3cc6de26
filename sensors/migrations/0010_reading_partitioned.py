"""Partition readings by range of time (docs/architecture.md §2; sensors/partitions.py).

A year of a few hundred sensors is tens of millions of rows; partitions by month let
retention drop a month in one instant ``DROP TABLE`` and keep each partition's primary-key
index small. The table is rebuilt as a partitioned one with the same columns and primary key
(sensor_id, ts) -- the partition key ts is part of it, as PostgreSQL requires -- and every
row is copied over. COPY into the partitioned table routes each row to its partition, and a
DEFAULT partition takes any row no partition covers. The delete trigger on sensors (0006)
names the table, not its storage, and keeps working unchanged.

Reversing copies every row back into a plain table.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.db import migrations

from sensors.partitions import partitions_ensure

_FORWARD = """
ALTER TABLE sensors_reading RENAME TO sensors_reading_unpartitioned;
ALTER TABLE sensors_reading_unpartitioned RENAME CONSTRAINT sensors_reading_pkey TO sensors_reading_unpartitioned_pkey;
CREATE TABLE sensors_reading (
    ts timestamptz NOT NULL,
    value double precision NOT NULL,
    sensor_id bigint NOT NULL,
    CONSTRAINT sensors_reading_pkey PRIMARY KEY (sensor_id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE sensors_reading_default PARTITION OF sensors_reading DEFAULT;
"""

_COPY = """
INSERT INTO sensors_reading (ts, value, sensor_id) SELECT ts, value, sensor_id FROM sensors_reading_unpartitioned;
DROP TABLE sensors_reading_unpartitioned;
"""

_REVERSE = """
CREATE TABLE sensors_reading_unpartitioned (
    ts timestamptz NOT NULL,
    value double precision NOT NULL,
    sensor_id bigint NOT NULL,
    CONSTRAINT sensors_reading_unpartitioned_pkey PRIMARY KEY (sensor_id, ts)
);
INSERT INTO sensors_reading_unpartitioned (ts, value, sensor_id) SELECT ts, value, sensor_id FROM sensors_reading;
DROP TABLE sensors_reading;
ALTER TABLE sensors_reading_unpartitioned RENAME TO sensors_reading;
ALTER TABLE sensors_reading RENAME CONSTRAINT sensors_reading_unpartitioned_pkey TO sensors_reading_pkey;
"""


def _partitions(apps: object, schema_editor: object) -> None:
    """Partitions from the oldest reading to a few past now, so the copy lands in them and not the default."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT min(ts) FROM sensors_reading_unpartitioned WHERE ts > '1900-01-01' AND ts < 'now'")
        oldest = cursor.fetchone()[0]
    now = datetime.now(tz=UTC)
    partitions_ensure(
        now=now, months=settings.READINGS_PARTITION_MONTHS, ahead=settings.READINGS_PARTITIONS_AHEAD, since=oldest
    )


class Migration(migrations.Migration):
    # 0009 comes from a parallel branch; the chain is fixed at merge.
    dependencies = [("sensors", "0009_skipped_fields_and_dead_letter_categories")]

    operations = [
        migrations.RunSQL(sql=_FORWARD, reverse_sql=migrations.RunSQL.noop),
        migrations.RunPython(_partitions, reverse_code=migrations.RunPython.noop),
        migrations.RunSQL(sql=_COPY, reverse_sql=_REVERSE),
    ]
