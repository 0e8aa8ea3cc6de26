"""The ingest worker's settings (``INGEST_*``, ``MQTT_URL``) as one value, and the broker URL parsed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from django.conf import settings

from sensors.ingest.decode import Limits


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    url: str
    client_id: str
    sources: tuple[str, ...] = ("native", "chirpstack", "ttn")
    share_group: str = ""
    mqtt_version: str = "3.1.1"
    session_expiry: int = 7 * 24 * 3600
    batch_size: int = 5000
    batch_ms: int = 200
    max_pending: int = 20_000
    max_pending_bytes: int = 64 * 1024 * 1024
    max_payload: int = 64 * 1024
    max_future_seconds: int = 300
    retention_days: int = 400
    stats_interval: float = 5.0
    ca_file: str = ""
    keepalive: int = 60
    shutdown_timeout: float = 15.0
    notify_interval_ms: int = 100  # the after-commit notifiers run at most this often (hookthread)
    store_process: bool = False  # decode and store in a child process (storeproc); settings turn it on

    @classmethod
    def from_settings(cls, **overrides: Any) -> WorkerConfig:
        config = cls(
            url=settings.MQTT_URL,
            client_id=settings.INGEST_CLIENT_ID,
            sources=tuple(settings.INGEST_SOURCES),
            share_group=settings.INGEST_SHARE_GROUP,
            mqtt_version=settings.INGEST_MQTT_VERSION,
            session_expiry=settings.INGEST_SESSION_EXPIRY,
            batch_size=settings.INGEST_BATCH_SIZE,
            batch_ms=settings.INGEST_BATCH_MS,
            max_pending=settings.INGEST_MAX_PENDING,
            max_pending_bytes=settings.INGEST_MAX_PENDING_BYTES,
            max_payload=settings.INGEST_MAX_PAYLOAD,
            max_future_seconds=settings.INGEST_MAX_FUTURE_SECONDS,
            retention_days=settings.INGEST_RETENTION_DAYS,
            stats_interval=settings.INGEST_STATS_INTERVAL,
            ca_file=settings.MQTT_CA_FILE,
            store_process=settings.INGEST_STORE_PROCESS,
            notify_interval_ms=settings.INGEST_NOTIFY_INTERVAL_MS,
        )
        return replace(config, **{k: v for k, v in overrides.items() if v is not None})

    def limits(self) -> Limits:
        return Limits(self.max_payload, self.max_future_seconds * 1_000_000, self.retention_days * 86_400_000_000)


class BrokerAddress(NamedTuple):
    host: str
    port: int
    transport: str  # "tcp" or "websockets"
    tls: bool
    username: str | None
    password: str | None
    path: str


_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}


def broker_address(url: str) -> BrokerAddress:
    """Parse ``MQTT_URL``: mqtt://, mqtts:// (TLS), ws:// and wss:// (MQTT over WebSockets)."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"MQTT_URL must be mqtt://, mqtts://, ws:// or wss:// with a host, got {url!r}")
    return BrokerAddress(
        host=parts.hostname,
        port=parts.port or _DEFAULT_PORTS[parts.scheme],
        transport="websockets" if parts.scheme in ("ws", "wss") else "tcp",
        tls=parts.scheme in ("mqtts", "wss"),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        path=parts.path or "/mqtt",
    )
