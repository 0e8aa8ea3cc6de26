"""Number lists as PostgreSQL's binary array format, built at C speed for a batch's parameters.

psycopg dumps a Python list element by element (~0.25 µs each: ~1.2 ms for a batch's
5,000 floats, measured). These build the same bytes with ``array`` and strided slice
copies (~0.1 µs each) and hand them over as-is through a binary dumper registered on the
cursor (``register``). Only non-null int4, int8 and float8 elements; a list of none is the
empty array.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence
from typing import ClassVar, Final

from psycopg import Cursor
from psycopg.adapt import Dumper
from psycopg.pq import Format

_HEADER: Final = struct.Struct(">iiiii")  # dimensions, has-nulls flag, element type, length, lower bound
_EMPTY: Final = struct.Struct(">iii")  # no dimensions, no nulls, element type


class BinaryArray(bytes):
    """An array already in PostgreSQL's binary format; subclasses say of which type."""

    array_oid: ClassVar[int]


class Int4Array(BinaryArray):
    array_oid = 1007


class Int8Array(BinaryArray):
    array_oid = 1016


class Float8Array(BinaryArray):
    array_oid = 1022


def _build(typecode: str, element_oid: int, values: Sequence[float] | Sequence[int]) -> bytes:
    n = len(values)
    if not n:
        return _EMPTY.pack(0, 0, element_oid)
    items = array(typecode, values)
    if sys.byteorder == "little":
        items.byteswap()
    data = items.tobytes()
    width = items.itemsize
    stride = 4 + width
    out = bytearray(n * stride)
    out[3::stride] = bytes((width,)) * n  # each element's length, a big-endian int4: 0 0 0 width
    for k in range(width):
        out[4 + k :: stride] = data[k::width]
    return _HEADER.pack(1, 0, element_oid, n, 1) + out


def int4_array(values: Sequence[int]) -> Int4Array:
    return Int4Array(_build("i", 23, values))


def int8_array(values: Sequence[int]) -> Int8Array:
    return Int8Array(_build("q", 20, values))


def float8_array(values: Sequence[float]) -> Float8Array:
    return Float8Array(_build("d", 701, values))


def _dumper(kind: type[BinaryArray]) -> type[Dumper]:
    class _Prebuilt(Dumper):
        format = Format.BINARY
        oid = kind.array_oid

        def dump(self, obj: bytes) -> bytes:
            return obj

    return _Prebuilt


_DUMPERS: Final = {kind: _dumper(kind) for kind in (Int4Array, Int8Array, Float8Array)}


def register(cursor: Cursor[object]) -> None:
    """Let ``cursor`` send ``BinaryArray`` values as they are (bind them with ``%(name)b``)."""
    for kind, dumper in _DUMPERS.items():
        cursor.adapters.register_dumper(kind, dumper)
