"""Readings written straight into the table, as a hand-written row or an older ingest could leave them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection

from sensors.models import Sensor

# Finite but far beyond any sensor: 1e155 already overflowed ``avg(float8)`` (it sums squares);
# two of 1.7e308 overflow a plain sum.
HUGE_VALUES = [1e155, -1e300, 1.7e308, 1.7e308]
NON_FINITE_VALUES = [float("nan"), float("inf"), float("-inf")]


def readings_insert_sql(sensor: Sensor, points: Iterable[tuple[datetime | str, float]]) -> None:
    """Insert ``points`` with plain SQL: no model validation, no ingest bounds. A str time is a PostgreSQL literal."""
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO sensors_reading (sensor_id, ts, value) VALUES (%s, %s::timestamptz, %s::float8)",
            [(sensor.pk, ts, value) for ts, value in points],
        )


def _refuse(constant: str) -> Any:
    raise AssertionError(f"not JSON: {constant}")


def strict_json(text: str | bytes) -> Any:
    """Parse ``text`` as JSON proper: ``NaN`` and ``Infinity`` (which Python's json writes by default) fail."""
    return json.loads(text, parse_constant=_refuse)
