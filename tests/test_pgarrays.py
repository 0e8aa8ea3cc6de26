"""Prebuilt binary arrays (sensors/history/pgarrays.py) reach PostgreSQL exactly as the lists they were built from."""

from __future__ import annotations

import math
import random
from typing import cast

import psycopg
import pytest
from django.db import connection

from sensors.history.pgarrays import float8_array, int4_array, int8_array, register


def _round_trip(sql: str, *params: object) -> tuple[object, ...]:
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        register(cursor)
        cursor.execute(sql, params)
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.django_db
def test_numbers_of_every_magnitude_and_sign_arrive_unchanged():
    rng = random.Random(10)
    floats = [rng.uniform(-1e300, 1e300) for _ in range(500)] + [0.0, -0.0, 5e-324, -1.5, 21.37, math.inf, -math.inf]
    big = [rng.randint(-(2**63), 2**63 - 1) for _ in range(500)] + [0, -1, 2**63 - 1, -(2**63)]
    small = [rng.randint(-(2**31), 2**31 - 1) for _ in range(500)] + [0, -1, 2**31 - 1, -(2**31)]

    got = _round_trip(
        "SELECT %b::float8[], %b::int8[], %b::int4[]", float8_array(floats), int8_array(big), int4_array(small)
    )

    assert got == (floats, big, small)
    assert math.copysign(1.0, cast(list[float], got[0])[501]) == -1.0  # -0.0 keeps its sign


@pytest.mark.django_db
def test_an_empty_list_is_the_empty_array_and_subscripts_count_from_one():
    empty, length, first, last = _round_trip(
        "SELECT %b::float8[], cardinality(%b::int8[]), (%b::int4[])[1], (%b::float8[])[3]",
        float8_array([]),
        int8_array([]),
        int4_array([7, 8]),
        float8_array([1.0, 2.0, 3.5]),
    )

    assert (empty, length, first, last) == ([], 0, 7, 3.5)
