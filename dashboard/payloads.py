"""The JSON the browser receives over ``/ws/farms/<id>/`` (see README, "Live protocol").

Messages are serialised once here, not once per connected socket: consumers
forward the text as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sensors.hooks import DeviceChange, ReadingGroup, Row
from sensors.models import Device

if TYPE_CHECKING:
    from sensors.selectors import SensorWithLatest

# Bounds on one update: a device flushing hours of buffered readings must not
# turn into a megabyte frame for every open dashboard. The latest point of
# every sensor is always kept; older ones give way first.
MAX_POINTS_PER_SENSOR = 60
MAX_POINTS_PER_MESSAGE = 1500

_FIRST = itemgetter(0)


def ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def dumps(payload: dict[str, Any] | list[Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def readings_json(groups: Iterable[ReadingGroup]) -> str:
    """An update's "readings": per sensor its newest points in time order (bounded) and how many the batch held.

    Hot: a batch holds up to tens of thousands of readings and a message keeps at most
    1,500, so the only work per reading is an append to its sensor's rows, and each
    sensor goes straight to the text ``dumps`` would write.
    """
    by_sensor, device_of = _series(groups)
    cap = max(1, min(MAX_POINTS_PER_SENSOR, MAX_POINTS_PER_MESSAGE // max(1, len(by_sensor))))
    entries = []
    for sensor_id in sorted(by_sensor):
        rows = by_sensor[sensor_id]
        if cap == 1 or len(rows) == 1:
            ts, _, value = rows[-1]
            points = f"[{ts // 1000},{value!r}]"
        else:
            points = ",".join([f"[{ts // 1000},{value!r}]" for ts, _, value in rows[-cap:]])
        entries.append(f'{{"sensor":{sensor_id},"device":{device_of[sensor_id]},"points":[{points}],"n":{len(rows)}}}')
    text = f"[{','.join(entries)}]"
    if "nan" in text or "inf" in text:  # only a number's repr can spell them here: refuse as dumps does
        raise ValueError("Out of range float values are not JSON compliant")
    return text


def _series(groups: Iterable[ReadingGroup]) -> tuple[dict[int, list[Row]], dict[int, int]]:
    """Each sensor's rows in time order, and its device.

    Rows are kept in batch order and only a sensor that got an older row after a newer
    one is sorted (stable: of equal times the last stored is the newest).
    """
    by_sensor: dict[int, list[Row]] = {}
    device_of: dict[int, int] = {}
    unordered: dict[int, list[Row]] = {}
    for device, rows in groups:
        sensors = device.sensors
        for row in rows:
            sensor_id = sensors[row[1]]
            kept = by_sensor.get(sensor_id)
            if kept is None:
                by_sensor[sensor_id] = [row]
                device_of[sensor_id] = device.id
            else:
                if row[0] < kept[-1][0]:
                    unordered[sensor_id] = kept
                kept.append(row)
    for kept in unordered.values():
        kept.sort(key=_FIRST)
    return by_sensor, device_of


def device_entry(change: DeviceChange | Device) -> dict[str, Any]:
    return {
        "id": change.device_id if isinstance(change, DeviceChange) else change.pk,
        "status": change.status,
        "last_seen": ms(change.last_seen),
        "battery": change.battery,
        "rssi": change.rssi,
        "snr": change.snr,
    }


def devices_json(changes: Iterable[DeviceChange]) -> str:
    """``dumps([device_entry(c) for c in changes])``, written directly: a batch can change thousands."""
    entries = [
        f'{{"id":{c.device_id},"status":{encode_basestring_ascii(c.status)},"last_seen":{_optional(ms(c.last_seen))},'
        f'"battery":{_optional(c.battery)},"rssi":{_optional(c.rssi)},"snr":{_optional(c.snr)}}}'
        for c in changes
    ]
    return f"[{','.join(entries)}]"


def _optional(value: float | None) -> str:
    """A number or None as ``dumps`` writes it, refusing NaN and infinities as ``allow_nan=False`` does."""
    if value is None:
        return "null"
    if value - value != 0.0:
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return repr(value)


def update_text(
    *, farm_id: int, seq: int, readings: Iterable[ReadingGroup], devices: Iterable[DeviceChange], now: datetime
) -> str:
    """One farm's ``update``: the text ``dumps`` would write for it, built from pieces written directly."""
    return (
        f'{{"type":"update","farm":{farm_id},"seq":{seq},"sent":{ms(now)},'
        f'"readings":{readings_json(readings)},"devices":{devices_json(devices)}}}'
    )


def snapshot_text(
    *, farm_id: int, seq: int, sensors: Iterable[SensorWithLatest], devices: Iterable[Device], now: datetime
) -> str:
    return dumps(
        {
            "type": "snapshot",
            "farm": farm_id,
            "seq": seq,
            "now": ms(now),
            "sensors": [
                {"sensor": s.pk, "device": s.device_id, "value": s.last_value, "ts": ms(s.last_ts)} for s in sensors
            ],
            "devices": [device_entry(d) for d in devices],
        }
    )


def pong_text(*, seq: int, now: datetime) -> str:
    return dumps({"type": "pong", "seq": seq, "now": ms(now)})
