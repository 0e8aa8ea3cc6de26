"""Pure helpers for what the admin shows: a device's MQTT topics, a ready mosquitto_pub, raw payloads."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from sensors.models import DEVEUI_PATTERN, MetricSpec

# Plausible values a newcomer recognises; metrics not listed get the middle of their range.
TYPICAL_VALUES: dict[str, float] = {
    "soil_moisture": 31.2,
    "soil_temperature": 14.8,
    "soil_ec": 0.42,
    "air_temperature": 18.4,
    "air_humidity": 72.0,
    "rain": 0.2,
    "pressure": 1013.2,
    "wind_speed": 3.6,
    "wind_direction": 225.0,
    "solar_radiation": 420.0,
    "water_level": 1.35,
    "battery": 87.0,
}
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 1883, "wss": 8883}


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    tls: bool
    username: str
    websocket: bool


@dataclass(frozen=True, slots=True)
class DeviceMqttHelp:
    telemetry_topic: str
    status_topic: str
    payload: str
    command: str
    broker: Broker
    is_deveui: bool
    chirpstack_topic: str
    ttn_topic: str


def broker_from_url(url: str) -> Broker:
    """Where devices publish. A WebSocket URL still means the same broker's TCP listener for mosquitto_pub."""
    parts = urlsplit(url)
    scheme = parts.scheme
    port = parts.port if parts.port and scheme in ("mqtt", "mqtts") else DEFAULT_PORTS.get(scheme, 1883)
    return Broker(
        host=parts.hostname or "localhost",
        port=port,
        tls=scheme in ("mqtts", "wss"),
        username=unquote(parts.username or ""),
        websocket=scheme in ("ws", "wss"),
    )


def sample_value(metric: MetricSpec) -> float:
    if metric.key in TYPICAL_VALUES:
        return TYPICAL_VALUES[metric.key]
    low = metric.min_value if metric.min_value is not None else 0.0
    high = metric.max_value if metric.max_value is not None else low + 2.0
    return round((low + high) / 2, 2)


def sample_payload(metrics: Iterable[MetricSpec]) -> str:
    """A flat telemetry object; without ``ts`` the reading takes the time it arrives."""
    return json.dumps({metric.key: sample_value(metric) for metric in metrics})


def mosquitto_pub_command(*, broker: Broker, topic: str, payload: str, ca_file: str = "") -> str:
    args = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1"]
    if broker.tls:
        args += ["--cafile", ca_file] if ca_file else ["--capath", "/etc/ssl/certs"]
    parts = [shlex.join(args)]
    if broker.username:
        # The password never appears on the page: the shell fills it in.
        parts.append(f'-u {shlex.quote(broker.username)} -P "$MQTT_PASSWORD"')
    parts.append(shlex.join(["-t", topic, "-m", payload]))
    return " ".join(parts)


def device_mqtt_help(*, uid: str, metrics: Iterable[MetricSpec], mqtt_url: str, ca_file: str = "") -> DeviceMqttHelp:
    broker = broker_from_url(mqtt_url)
    topic = f"farm/{uid}/telemetry"
    payload = sample_payload(metrics)
    return DeviceMqttHelp(
        telemetry_topic=topic,
        status_topic=f"farm/{uid}/status",
        payload=payload,
        command=mosquitto_pub_command(broker=broker, topic=topic, payload=payload, ca_file=ca_file),
        broker=broker,
        is_deveui=bool(DEVEUI_PATTERN.fullmatch(uid)),
        chirpstack_topic=f"application/<application-id>/device/{uid}/event/up",
        ttn_topic="v3/<application-id>@<tenant>/devices/<device-id>/up",
    )


def _escape_char(ch: str) -> str:
    if ch.isprintable() or ch in "\n\t":
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def payload_text_preview(data: bytes, *, limit: int = 2048) -> str:
    """The payload as text with undecodable bytes and control characters escaped (HTML escaping is the caller's)."""
    text = bytes(data[:limit]).decode("utf-8", errors="backslashreplace")
    preview = "".join(_escape_char(ch) for ch in text)
    return preview + ("\n… (truncated)" if len(data) > limit else "")


def payload_hex_dump(data: bytes, *, limit: int = 1024, width: int = 16) -> str:
    """Offset, hex bytes and printable ASCII, like ``hexdump -C``."""
    chunk = bytes(data[:limit])
    lines = []
    for offset in range(0, len(chunk), width):
        row = chunk[offset : offset + width]
        ascii_part = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{offset:08x}  {row.hex(' '):<{width * 3 - 1}}  |{ascii_part}|")
    if len(data) > limit:
        lines.append(f"… {len(data) - limit} more bytes")
    return "\n".join(lines)
