"""The JSON the browser receives over ``/ws/farms/<id>/`` (see README, "Live protocol").

Messages are serialised once here, not once per connected socket: consumers
forward the text as it is.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sensors.hooks import DeviceChange, StoredReading
from sensors.models import Device, Sensor

# Bounds on one update: a device flushing hours of buffered readings must not
# turn into a megabyte frame for every open dashboard. The latest point of
# every sensor is always kept; older ones give way first.
MAX_POINTS_PER_SENSOR = 60
MAX_POINTS_PER_MESSAGE = 1500


def ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def compact_readings(readings: Sequence[StoredReading]) -> list[dict[str, Any]]:
    """Per sensor: its newest points in time order (bounded), and how many the batch held."""
    by_sensor: dict[int, list[StoredReading]] = defaultdict(list)
    for reading in readings:
        by_sensor[reading.sensor_id].append(reading)
    if not by_sensor:
        return []
    cap = max(1, min(MAX_POINTS_PER_SENSOR, MAX_POINTS_PER_MESSAGE // len(by_sensor)))
    entries = []
    for sensor_id, items in sorted(by_sensor.items()):
        items.sort(key=lambda r: r.ts)
        entries.append(
            {
                "sensor": sensor_id,
                "device": items[-1].device_id,
                "points": [[ms(r.ts), r.value] for r in items[-cap:]],
                "n": len(items),
            }
        )
    return entries


def device_entry(change: DeviceChange | Device) -> dict[str, Any]:
    return {
        "id": change.device_id if isinstance(change, DeviceChange) else change.pk,
        "status": change.status,
        "last_seen": ms(change.last_seen),
        "battery": change.battery,
        "rssi": change.rssi,
        "snr": change.snr,
    }


def update_text(
    *, farm_id: int, seq: int, readings: Sequence[StoredReading], devices: Iterable[DeviceChange], now: datetime
) -> str:
    return dumps(
        {
            "type": "update",
            "farm": farm_id,
            "seq": seq,
            "sent": ms(now),
            "readings": compact_readings(readings),
            "devices": [device_entry(d) for d in devices],
        }
    )


def snapshot_text(
    *, farm_id: int, seq: int, sensors: Iterable[Sensor], devices: Iterable[Device], now: datetime
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
