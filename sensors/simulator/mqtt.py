"""Publishing through K paho clients with exact PUBACK accounting and a bounded in-flight window.

One paho client numbers its unacknowledged QoS 1 messages with a 16-bit
packet id (docs/architecture.md §5): past 65,535 outstanding messages ids collide.
Each client here holds at most ``window`` unacknowledged messages (the
caller waits, reading acks, until a slot frees), and a message counts as
acked only when its PUBACK arrives (``on_publish`` at QoS 1).

The clients are driven from the caller's thread (``loop_read``/``loop_write``
over one ``select``) rather than by paho's ``loop_start`` threads: without the
per-publish thread wake-up and GIL hand-offs one process publishes about
three times faster, which a load generator needs.
"""

from __future__ import annotations

import logging
import os
import select
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
    """What one client published and had acknowledged.

    ``acked_ts`` (when tracking) maps (uid, metric keys) to the timestamps (µs) of acked
    readings: a benchmark's minute at 10,000 msg/s fits in a few tens of MB this way.
    """

    published: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    refused: int = 0  # publish() failed at once (e.g. QoS 0 while disconnected)
    rejected: int = 0  # an MQTT 5 PUBACK carrying a failure reason code
    lost: int = 0  # QoS 0 messages still unwritten when the connection dropped
    peak_inflight: int = 0  # the most unacked messages this client ever held (never above the window)
    acked_ts: dict[tuple[str, tuple[str, ...]], list[int]] = field(default_factory=dict)
    # Readings in acked messages, "history" (backfill) or "live": cheap, unlike acked_ts, so always kept.
    acked_readings: Counter[str] = field(default_factory=Counter)


class _Slot:
    """One paho client and the messages it has not had acknowledged yet."""

    def __init__(self, client: mqtt.Client, window: int, track: bool) -> None:
        self.client = client
        self.window = window
        self.track = track
        self.inflight: dict[int, Message] = {}
        self.early: set[int] = set()  # acks that came before publish() returned the mid (QoS 0 writes)
        self.tally = Tally()
        self.connack: ReasonCode | None = None
        self.retry_at = 0.0
        self.backoff = 1.0

    def acknowledge(self, mid: int, failed: bool) -> None:
        message = self.inflight.pop(mid, None)
        if message is None:
            self.early.add(mid)
        elif failed:
            self.tally.rejected += 1
        else:
            self._count(message)

    def _count(self, message: Message) -> None:
        self.tally.acked[message.shape] += 1
        self.tally.acked_readings["history" if message.history else "live"] += sum(len(k) for _, k in message.readings)
        if self.track:
            for ts, keys in message.readings:
                self.tally.acked_ts.setdefault((message.uid, keys), []).append(ts)

    def register(self, mid: int, message: Message) -> None:
        self.tally.published[message.shape] += 1
        if message.kind:
            self.tally.malformed[message.kind] += 1
        if mid in self.early:
            self.early.discard(mid)
            self._count(message)
        else:
            self.inflight[mid] = message
            self.tally.peak_inflight = max(self.tally.peak_inflight, len(self.inflight))


def _on_connect(client: mqtt.Client, slot: _Slot, flags: Any, reason: ReasonCode, properties: Any) -> None:
    slot.connack = reason
    slot.backoff = 1.0
    if reason.is_failure:
        logger.error("simulator: the broker refused the connection: %s", reason)


def _on_disconnect(client: mqtt.Client, slot: _Slot, flags: Any, reason: ReasonCode, properties: Any) -> None:
    if reason.value != 0:
        logger.warning("simulator: connection lost (%s); reconnecting, unacked messages will be resent", reason)


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
    client.on_connect = _on_connect
    client.on_disconnect = _on_disconnect
    client.on_publish = _on_publish
    return client


class Publisher:
    """K clients; ``publish(message, lane)`` keeps one device's messages on one client, in order.

    Not thread-safe: one thread publishes and, in ``pump``/``idle``/``drain``,
    reads the acks.
    """

    PUMP_EVERY = 64  # publishes between non-blocking ack reads

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
        prefix = client_id_prefix or f"furrow-sim-{os.getpid()}-{id(self) % 10_000}"
        wills = wills or [None] * clients
        self.slots = [
            _Slot(_new_client(self.address, f"{prefix}-{i}", window, wills[i], ca_file), window, track)
            for i in range(clients)
        ]
        for slot in self.slots:
            slot.client.user_data_set(slot)
        self._since_pump = 0
        self._last_misc = 0.0

    def connect(self, timeout: float = 10.0) -> None:
        for slot in self.slots:
            try:
                slot.client.connect(self.address.host, self.address.port, keepalive=30)
            except OSError as exc:
                raise PublishError(
                    f"cannot reach the MQTT broker at {self.address.host}:{self.address.port}: {exc}"
                ) from exc
        deadline = time.monotonic() + timeout
        while any(slot.connack is None for slot in self.slots):
            if time.monotonic() > deadline:
                raise PublishError(f"no CONNACK from {self.address.host}:{self.address.port} within {timeout:.0f} s")
            self.pump(0.05)
        refused = [slot.connack for slot in self.slots if slot.connack is not None and slot.connack.is_failure]
        if refused:
            raise PublishError(f"the MQTT broker refused the connection: {refused[0]}")

    def publish(self, message: Message, lane: int, stop: threading.Event | None = None) -> None:
        """Hand one message to the client for ``lane``; waits (reading acks) while its window is full."""
        slot = self.slots[lane % len(self.slots)]
        while len(slot.inflight) >= slot.window and not (stop and stop.is_set()):
            self.pump(0.05)
        info = slot.client.publish(message.topic, message.payload, qos=self.qos)
        queued = info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and self.qos > 0  # kept by paho, sent on reconnect
        )
        if queued:
            slot.register(info.mid, message)
        else:
            slot.tally.refused += 1
        self._since_pump += 1
        if self._since_pump >= self.PUMP_EVERY:
            self.pump(0.0)

    def pump(self, timeout: float) -> None:
        """Read acks, flush pending writes, keep alive and reconnect; waits up to ``timeout`` for traffic."""
        self._since_pump = 0
        live = {slot.client.socket(): slot for slot in self.slots if slot.client.socket() is not None}
        readable = [sock for sock in live if getattr(sock, "pending", lambda: 0)()]
        if readable:
            timeout = 0.0
        writable = [sock for sock, slot in live.items() if slot.client.want_write()]
        try:
            ready_r, ready_w, _ = select.select(list(live), writable, [], timeout) if live else ([], [], [])
        except (OSError, ValueError):
            ready_r, ready_w = [], []  # a socket closed under us: the reconnect below deals with it
        if not live and timeout:
            time.sleep(timeout)
        for sock in {*ready_r, *readable}:
            live[sock].client.loop_read(1000)
        for sock in ready_w:
            live[sock].client.loop_write()
        self._housekeeping()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_misc < 0.25:
            return
        self._last_misc = now
        for slot in self.slots:
            if slot.client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS and slot.client.socket() is not None:
                continue
            if now >= slot.retry_at:
                self._reconnect(slot, now)

    def _reconnect(self, slot: _Slot, now: float) -> None:
        if self.qos == 0 and slot.inflight:
            slot.tally.lost += len(slot.inflight)  # paho drops unwritten QoS 0 packets on reconnect
            slot.inflight.clear()
        try:
            slot.client.reconnect()
        except OSError as exc:
            logger.warning("simulator: reconnect failed (%s); next try in %.0f s", exc, slot.backoff)
            slot.retry_at = now + slot.backoff
            slot.backoff = min(30.0, slot.backoff * 2)

    def idle(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Wait, keeping the connections served (acks, pings, reconnects), until time is up or ``stop``."""
        deadline = time.monotonic() + seconds
        while not (stop and stop.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.pump(min(left, 0.1))

    def unacked(self) -> int:
        return sum(len(slot.inflight) for slot in self.slots)

    def drain(self, timeout: float) -> bool:
        """Wait for every outstanding message to be acknowledged (or written, at QoS 0)."""
        deadline = time.monotonic() + timeout
        while self.unacked() and time.monotonic() < deadline:
            self.pump(0.05)
        return self.unacked() == 0

    def close(self) -> None:
        """A clean DISCONNECT: the broker does not publish the Last Wills."""
        for slot in self.slots:
            slot.client.disconnect()  # written at once: these clients have no network thread

    def drop(self) -> None:
        """Close the sockets without DISCONNECT, as a crashed device would: the broker publishes the wills."""
        for slot in self.slots:
            sock = slot.client.socket()
            if sock is not None:
                sock.close()

    def tallies(self) -> list[Tally]:
        return [slot.tally for slot in self.slots]
