"""Readings and rollups as CSV lines, read through a server-side cursor (flat memory at any size).

The database formats each line: the time in ISO 8601 with the farm's offset (the session's
``TimeZone`` set to the farm's zone), floats in their shortest exact text. Python
only joins lines, so an export runs at the speed PostgreSQL reads rows. Only finite values are
exported, as everywhere on the read side (sensors/history/selectors.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from django.db import DatabaseError, connection, transaction

ExportResolution = Literal["raw", "hour", "day"]
CHUNK_ROWS: Final = 5000


@dataclass(frozen=True, slots=True)
class ExportSensor:
    """A sensor as its export names it."""

    sensor_id: int
    name: str
    unit: str


HEADERS: Final[dict[ExportResolution, str]] = {
    "raw": "sensor_id,sensor,unit,time,value",
    "hour": "sensor_id,sensor,unit,time,count,min,max,mean",
    "day": "sensor_id,sensor,unit,date,count,min,max,mean",
}
# JSON's timestamp text is ISO 8601 with a colon in the offset and only the fraction there is
# ("2026-03-29T02:00:00+01:00", "…:00.5+01:00"), and ~2x cheaper than to_char.
_ISO = "btrim(to_json({col})::text, '\"')"
_NAMES = "JOIN unnest(%(sensor_ids)s::bigint[], %(prefixes)s::text[]) AS n(id, prefix) ON n.id = sensor_id"
_BUCKETS = "count || ',' || min::text || ',' || max::text || ',' || (sum / count)::float8::text"
_RAW_SQL = """
    SELECT n.prefix || {iso} || ',' || value::text FROM sensors_reading {names}
    WHERE sensor_id = ANY(%(sensor_ids)s) AND ts >= %(start)s AND ts < %(end)s AND abs(value) < 'Infinity'
    ORDER BY sensor_id, ts"""
_HOUR_SQL = """
    SELECT n.prefix || {iso} || ',' || {buckets} FROM sensors_rolluphour {names}
    WHERE sensor_id = ANY(%(sensor_ids)s) AND bucket >= %(start)s AND bucket < %(end)s
    ORDER BY sensor_id, bucket"""
_DAY_SQL = """
    SELECT n.prefix || day::text || ',' || {buckets} FROM sensors_rollupday {names}
    WHERE sensor_id = ANY(%(sensor_ids)s) AND day >= %(first_day)s AND day < %(end_day)s
    ORDER BY sensor_id, day"""
_SQL: Final[dict[ExportResolution, str]] = {
    "raw": _RAW_SQL.replace("{iso}", _ISO.replace("{col}", "ts")).replace("{names}", _NAMES),
    "hour": _HOUR_SQL.replace("{iso}", _ISO.replace("{col}", "bucket"))
    .replace("{names}", _NAMES)
    .replace("{buckets}", _BUCKETS),
    "day": _DAY_SQL.replace("{names}", _NAMES).replace("{buckets}", _BUCKETS),
}
_COUNT_SQL: Final[dict[ExportResolution, str]] = {
    "raw": "SELECT count(*) FROM sensors_reading WHERE sensor_id = ANY(%(sensor_ids)s) AND ts >= %(start)s "
    "AND ts < %(end)s AND abs(value) < 'Infinity'",
    "hour": "SELECT count(*) FROM sensors_rolluphour WHERE sensor_id = ANY(%(sensor_ids)s) AND bucket >= %(start)s "
    "AND bucket < %(end)s",
    "day": "SELECT count(*) FROM sensors_rollupday WHERE sensor_id = ANY(%(sensor_ids)s) AND day >= %(first_day)s "
    "AND day < %(end_day)s",
}


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


def _params(sensors: Sequence[ExportSensor], start: datetime, end: datetime, time_zone: str) -> dict[str, Any]:
    """``start``/``end`` are aware; a day export takes the local dates they fall on in ``time_zone``."""
    zone = ZoneInfo(time_zone)
    return {
        "sensor_ids": [s.sensor_id for s in sensors],
        "prefixes": [f"{s.sensor_id},{_csv_field(s.name)},{_csv_field(s.unit)}," for s in sensors],
        "start": start,
        "end": end,
        "first_day": start.astimezone(zone).date(),
        "end_day": end.astimezone(zone).date(),
    }


def export_row_count(
    *, sensors: Sequence[ExportSensor], start: datetime, end: datetime, resolution: ExportResolution, time_zone: str
) -> int:
    """How many lines ``export_lines`` will give (without its header): for a progress bar."""
    with connection.cursor() as cursor:
        cursor.execute(_COUNT_SQL[resolution], _params(sensors, start, end, time_zone))
        return int(cursor.fetchone()[0])


def export_lines(
    *, sensors: Sequence[ExportSensor], start: datetime, end: datetime, resolution: ExportResolution, time_zone: str
) -> Iterator[list[str]]:
    """The CSV lines of ``[start, end)`` (a day export: its local days), in chunks of up to ``CHUNK_ROWS``.

    The first chunk is the header. Times carry ``time_zone``'s offset. Reads through a
    server-side cursor inside a read-only transaction, which ends when the generator ends or
    is closed (a client that goes away mid-file).
    """
    yield [HEADERS[resolution]]
    params = _params(sensors, start, end, time_zone)
    # In a transaction: the cursor then streams rows as they are read. In autocommit Django
    # declares it WITH HOLD, and PostgreSQL materialises the whole result first (measured:
    # 1 M rows at ~530,000 rows/s against ~230,000). The time zone is the transaction's only.
    with transaction.atomic(), connection.cursor() as plain:
        # Put back at the end too: inside a caller's transaction (a test) the zone would outlive us.
        plain.execute("SELECT current_setting('TimeZone'), set_config('TimeZone', %s, true)", [time_zone])
        previous = plain.fetchone()[0]
        try:
            with connection.chunked_cursor() as cursor:
                cursor.execute(_SQL[resolution], params)
                while rows := cursor.fetchmany(CHUNK_ROWS):
                    yield [row[0] for row in rows]
        finally:
            with suppress(DatabaseError):  # after a failed statement the rollback restores it anyway
                plain.execute("SELECT set_config('TimeZone', %s, true)", [previous])
