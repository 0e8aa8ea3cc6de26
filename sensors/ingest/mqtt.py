"""The paho client of the ingest worker: persistent session, manual acks, a buffered socket, batched PUBACKs."""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from sensors.ingest.config import WorkerConfig, broker_address

PacketTypes = mqtt.PacketTypes


class ClientHandlers(NamedTuple):
    """paho's callbacks (API version 2), given to ``build_client`` rather than set on the client afterwards."""

    on_connect: Callable[..., None]
    on_subscribe: Callable[..., None]
    on_disconnect: Callable[..., None]
    on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None]


class BufferedSocket:
    """A TCP socket whose ``recv`` serves paho from a 64 KiB read buffer.

    paho reads a packet with three or more ``recv`` calls (type byte, length bytes,
    body), each a system call that also hands the GIL to the flush thread and waits to
    get it back. Buffered, one system call covers hundreds of small packets. ``pending``
    is the method paho and the worker's loop already use for TLS sockets' own buffers.
    """

    __slots__ = ("_buffer", "_position", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._position = 0

    def recv(self, size: int) -> bytes:
        buffer, start = self._buffer, self._position
        if start >= len(buffer):
            buffer = self._sock.recv(65_536)  # BlockingIOError when there is nothing: paho expects that
            if not buffer:
                return buffer  # closed by the broker
            self._buffer, start = buffer, 0
        self._position = min(start + size, len(buffer))
        return buffer[start : self._position]

    def pending(self) -> int:
        return len(self._buffer) - self._position

    def send(self, data: bytes) -> int:
        return self._sock.send(data)

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """paho's client reading plain TCP through a ``BufferedSocket`` (TLS and WebSockets buffer already)."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        return BufferedSocket(sock) if type(sock) is socket.socket else sock


def build_client(config: WorkerConfig, handlers: ClientHandlers) -> mqtt.Client:
    """A paho client with a persistent session, manual acks and ``handlers``; not yet connected."""
    address = broker_address(config.url)
    v5 = config.mqtt_version == "5"
    client = BufferedClient(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=config.client_id,
        # MQTT 3.1.1 keeps the session with clean_session=False; MQTT 5 uses clean_start below.
        clean_session=None if v5 else False,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        transport=address.transport,  # type: ignore[arg-type]
        manual_ack=True,
    )
    client.on_connect = handlers.on_connect
    client.on_subscribe = handlers.on_subscribe
    client.on_disconnect = handlers.on_disconnect
    client.on_message = handlers.on_message
    if address.transport == "websockets":
        client.ws_set_options(path=address.path)
    if address.tls:
        client.tls_set(ca_certs=config.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    properties = None
    if v5:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = config.session_expiry
        properties.ReceiveMaximum = min(config.max_pending, 65_535)
    client.connect_async(
        address.host,
        address.port,
        keepalive=config.keepalive,
        clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
        properties=properties,
    )
    return client


_PUBACK = struct.Struct("!BBH").pack


def ack_many(client: mqtt.Client, mids: list[int]) -> None:
    """Acknowledge QoS 1 messages, a batch's PUBACKs in one socket write.

    ``client.ack`` writes one 4-byte packet per call (two system calls each): for 5,000
    messages that costs as much as decoding them. The packets are the same bytes paho
    builds in ``_send_command_with_mid``; queued through paho's own packet queue, so they
    go out in order with everything else. Without that (private) method, ack one by one.
    """
    queue = getattr(client, "_packet_queue", None)
    if queue is None:
        for mid in mids:
            client.ack(mid, 1)
        return
    queue(mqtt.PUBACK, b"".join([_PUBACK(mqtt.PUBACK, 2, mid) for mid in mids]), 0, 0)
