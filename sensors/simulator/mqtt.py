"""Publishing through K paho clients with exact PUBACK accounting and a bounded in-flight window.

One paho client numbers its unacknowledged QoS 1 messages with a 16-bit
packet id (DESIGN.md §5): past 65,535 outstanding messages ids collide.
Each client here holds at most ``window`` unacknowledged messages (the
caller blocks until acks free a slot), and a message counts as acked only
when its PUBACK arrives (``on_publish`` at QoS 1). Several clients spread
the load and the per-connection work across the broker.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from sensors.simulator.payloads import Message

logger = logging.getLogger(__name__)

MAX_WINDOW = 30_000  # well below 65,535 packet ids per client
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}


class PublishError(Exception):
    """The broker cannot be reached or refused the connection."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    transport: Literal["tcp", "websockets"]
    tls: bool
    username: str | None
    password: str | None
    path: str


def broker_address(url: str) -> BrokerAddress:
    """mqtt://, mqtts://, ws:// or wss://, with an optional user:password@ and (for WebSockets) a path."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"MQTT URL must start with mqtt://, mqtts://, ws:// or wss://, got {url!r}")
    websockets = parts.scheme in ("ws", "wss")
    return BrokerAddress(
        host=parts.hostname or "localhost",
        port=parts.port or _DEFAULT_PORTS[parts.scheme],
        transport="websockets" if websockets else "tcp",
        tls=parts.scheme in ("mqtts", "wss"),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        path=(parts.path or "/mqtt") if websockets else "",
    )


@dataclass(slots=True)
class Tally:
    """Counts kept under the client's lock; ``records`` (optional) lists the acked messages."""

    published: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    refused: int = 0  # publish() failed at once (QoS 0 while disconnected, queue full)
    rejected: int = 0  # an MQTT 5 PUBACK carrying a failure reason code
    records: list[Message] = field(default_factory=list)


class _Slot:
    """One paho client and the messages it has not had acknowledged yet."""

    def __init__(self, client: mqtt.Client, window: int, track: bool) -> None:
        self.client = client
        self.window = window
        self.track = track
        self.cond = threading.Condition()
        self.inflight: dict[int, Message] = {}
        self.early: set[int] = set()  # PUBACKs that beat publish() returning their mid
        self.tally = Tally()
        self.connected = threading.Event()
        self.connect_result: ReasonCode | None = None

    def acknowledge(self, mid: int, failed: bool) -> None:
        with self.cond:
            message = self.inflight.pop(mid, None)
            if message is None:
                self.early.add(mid)
                return
            self._count(message, failed)
            self.cond.notify_all()

    def _count(self, message: Message, failed: bool) -> None:
        if failed:
            self.tally.rejected += 1
            return
        self.tally.acked[message.shape] += 1
        if self.track:
            self.tally.records.append(message)

    def register(self, mid: int, message: Message) -> None:
        with self.cond:
            self.tally.published[message.shape] += 1
            if message.kind:
                self.tally.malformed[message.kind] += 1
            if mid in self.early:
                self.early.discard(mid)
                self._count(message, failed=False)
            else:
                self.inflight[mid] = message

    def wait_for_room(self, stop: threading.Event | None) -> None:
        with self.cond:
            while len(self.inflight) >= self.window and not (stop and stop.is_set()):
                self.cond.wait(0.2)


def _on_connect(client: mqtt.Client, slot: _Slot, flags: Any, reason: ReasonCode, properties: Any) -> None:
    slot.connect_result = reason
    if reason.is_failure:
        logger.error("simulator client %s: broker refused the connection: %s", client._client_id, reason)
    slot.connected.set()


def _on_disconnect(client: mqtt.Client, slot: _Slot, flags: Any, reason: ReasonCode, properties: Any) -> None:
    if reason.value != 0:
        logger.warning("simulator client disconnected (%s); paho reconnects and resends unacked messages", reason)


def _on_publish(client: mqtt.Client, slot: _Slot, mid: int, reason: ReasonCode, properties: Any) -> None:
    slot.acknowledge(mid, failed=reason.is_failure)


def _new_client(
    address: BrokerAddress, client_id: str, slot_window: int, will: Message | None, ca_file: str
) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, transport=address.transport
    )
    if address.transport == "websockets":
        client.ws_set_options(path=address.path)
    if address.tls:
        client.tls_set(ca_certs=ca_file or None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if address.username:
        client.username_pw_set(address.username, address.password)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=1, retain=False)
    client.max_inflight_messages_set(slot_window)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.on_connect = _on_connect
    client.on_disconnect = _on_disconnect
    client.on_publish = _on_publish
    return client


class Publisher:
    """K connected clients; ``publish(message, lane)`` keeps one device's messages on one client, in order."""

    def __init__(
        self,
        url: str,
        *,
        clients: int = 1,
        qos: int = 1,
        window: int = 1_000,
        wills: list[Message | None] | None = None,
        track: bool = False,
        ca_file: str = "",
        client_id_prefix: str = "",
    ) -> None:
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be between 1 and {MAX_WINDOW}, got {window}")
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        self.address = broker_address(url)
        self.qos = qos
        prefix = client_id_prefix or f"furrow-sim-{os.getpid()}"
        wills = wills or [None] * clients
        self.slots = [
            _Slot(_new_client(self.address, f"{prefix}-{i}", window, wills[i], ca_file), window, track)
            for i in range(clients)
        ]
        for slot in self.slots:
            slot.client.user_data_set(slot)

    def connect(self, timeout: float = 10.0) -> None:
        for slot in self.slots:
            try:
                slot.client.connect(self.address.host, self.address.port, keepalive=30)
            except OSError as exc:
                raise PublishError(
                    f"cannot reach the MQTT broker at {self.address.host}:{self.address.port}: {exc}"
                ) from exc
            slot.client.loop_start()
        deadline = time.monotonic() + timeout
        for slot in self.slots:
            if not slot.connected.wait(max(0.0, deadline - time.monotonic())):
                raise PublishError(f"no CONNACK from {self.address.host}:{self.address.port} within {timeout:.0f} s")
            if slot.connect_result is not None and slot.connect_result.is_failure:
                raise PublishError(f"the MQTT broker refused the connection: {slot.connect_result}")

    def publish(self, message: Message, lane: int, stop: threading.Event | None = None) -> None:
        """Hand one message to the client for ``lane``; blocks while that client's window is full."""
        slot = self.slots[lane % len(self.slots)]
        slot.wait_for_room(stop)
        info = slot.client.publish(message.topic, message.payload, qos=self.qos)
        queued = info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and self.qos > 0  # kept by paho, sent on reconnect
        )
        if queued:
            slot.register(info.mid, message)
        else:
            with slot.cond:
                slot.tally.refused += 1

    def unacked(self) -> int:
        return sum(len(slot.inflight) for slot in self.slots)

    def drain(self, timeout: float) -> bool:
        """Wait for every outstanding message to be acknowledged (or written, at QoS 0)."""
        deadline = time.monotonic() + timeout
        for slot in self.slots:
            with slot.cond:
                while slot.inflight and time.monotonic() < deadline:
                    slot.cond.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        return self.unacked() == 0

    def close(self) -> None:
        """A clean DISCONNECT: the brokers do not publish the Last Wills."""
        for slot in self.slots:
            slot.client.disconnect()
            slot.client.loop_stop()

    def drop(self) -> None:
        """Close the sockets without DISCONNECT, as a crashed device would: the broker publishes the wills."""
        for slot in self.slots:
            slot.client.loop_stop()
            sock = slot.client.socket()
            if sock is not None:
                sock.close()

    def tallies(self) -> list[Tally]:
        return [slot.tally for slot in self.slots]
