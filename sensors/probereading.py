"""A test reading for one registered device: published like the device would, then looked for in the database.

``manage.py send_test_reading`` uses it, so the tour needs nothing that
``make run`` does not install (no ``mosquitto_pub``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sensors.models import Device, Reading
from sensors.simulator.mqtt import Publisher, PublishError
from sensors.simulator.payloads import Message

__all__ = [
    "ProbeReading",
    "PublishError",
    "default_values",
    "parse_values",
    "probe_reading_send",
    "probe_reading_stored",
]


@dataclass(frozen=True)
class ProbeReading:
    topic: str
    payload: bytes
    ts: datetime
    values: dict[str, float]


def parse_values(pairs: list[str]) -> dict[str, float]:
    """``["soil_moisture=27.5", …]`` → ``{"soil_moisture": 27.5}``; a ValueError names the bad pair."""
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{pair!r} is not metric=value")
        try:
            values[key.strip()] = float(raw)
        except ValueError:
            raise ValueError(f"{pair!r}: {raw!r} is not a number") from None
    return values


def default_values(device: Device) -> dict[str, float]:
    """One value per sensor of the device: the middle of its plausible range (0 where it has none)."""
    values = {}
    for sensor in device.sensors.order_by("id"):
        if sensor.min_value is not None and sensor.max_value is not None:
            values[sensor.key] = round((sensor.min_value + sensor.max_value) / 2, 2)
        else:
            values[sensor.key] = 0.0
    return values


def probe_reading_send(*, device: Device, values: dict[str, float], url: str, ca_file: str = "") -> ProbeReading:
    """Publish one native telemetry message (QoS 1) for the device and wait for the broker's acknowledgement."""
    # Whole milliseconds: the stored time is then exactly the published one.
    ts_ms = int(time.time() * 1000)
    payload = json.dumps({"ts": ts_ms, **values}).encode()
    topic = f"farm/{device.uid}/telemetry"
    publisher = Publisher(url, qos=1, window=1, ca_file=ca_file, client_id_prefix=f"furrow-test-reading-{ts_ms}")
    publisher.connect()
    try:
        publisher.publish(Message(topic=topic, payload=payload, shape="native", uid=device.uid), 0)
        if not publisher.drain(10.0):
            raise PublishError("the broker did not acknowledge the test reading within 10 s")
    finally:
        publisher.close()
    return ProbeReading(topic=topic, payload=payload, ts=datetime.fromtimestamp(ts_ms / 1000, tz=UTC), values=values)


def probe_reading_stored(*, device: Device, reading: ProbeReading) -> set[str]:
    """The metric keys of the test reading that are in the readings table."""
    found = Reading.objects.filter(sensor__device=device, ts=reading.ts, sensor__key__in=list(reading.values))
    return set(found.values_list("sensor__key", flat=True))
