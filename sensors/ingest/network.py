"""The ingest worker's network thread: drives paho, queues messages, sends acks, reconnects.

It drives paho through its external-loop API (``loop_read`` / ``loop_write`` /
``loop_misc``): it reads messages (decoding them here when there is no store process),
appends them to the ledger's pending queue, sends the acks of committed batches and
reconnects with backoff. Acks go out on this thread because an ack is only valid on the
connection that delivered the message (packet ids are reused after a reconnect): acks
for an older connection are dropped, the broker redelivers those messages, and the
(sensor, ts) primary key makes the second copy harmless. With ``max_pending`` messages
(or ``max_pending_bytes``) in hand it stops reading, so a PostgreSQL outage backs up into
the broker's queue, not into this process.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from sensors.ingest.backoff import Backoff
from sensors.ingest.config import WorkerConfig
from sensors.ingest.ledger import InHand, Ledger
from sensors.ingest.mqtt import ClientHandlers, ack_many, build_client
from sensors.ingest.stats import IngestStats

logger = logging.getLogger("sensors.ingest")

READ_BURST = 500  # packets read from a buffer before the loop looks at acks and keepalive again

Decode = Callable[[bytes, bytes, bool, int], Any]


class NetworkLoop:
    """Owns the paho client; ``run`` is the network thread's body until ``stop`` is set."""

    def __init__(
        self, *, config: WorkerConfig, ledger: Ledger, stats: IngestStats, decode: Decode, filters: list[str]
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.stats = stats
        self.decode = decode
        self.filters = filters
        self.stop = threading.Event()
        self.paused = threading.Event()  # set while reading is paused (backlog full, or draining)
        self.draining = False
        self.generation = 0  # bumped at each new connection; acks only go out on their own
        # paho stamps messages with the monotonic clock; wall time = monotonic + offset.
        self.clock_offset = time.time() - time.monotonic()
        self._paused_ping_at = 0.0
        self._next_connect_at = 0.0
        self._misc_at = 0.0
        self._backoff = Backoff(0.5, 30.0)
        handlers = ClientHandlers(self._on_connect, self._on_subscribe, self._on_disconnect, self._on_message)
        self.client = build_client(config, handlers)

    def run(self) -> None:
        client = self.client
        while not self.stop.is_set():
            try:
                self._network_step(client)
            except Exception:
                self.stats.internal_errors += 1
                logger.exception("error in the MQTT network loop; carrying on")
                time.sleep(0.1)
        if client.socket() is not None:
            client.disconnect()
        self.stats.connected = False

    def _network_step(self, client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is None:
            self._connect(client)
            return
        room = self.config.max_pending - self.ledger.in_hand()
        if self.draining or room <= 0 or self._over_byte_budget():
            # Stop reading: the backlog stays on the broker, not in this process.
            self._pause_step(client)
            return
        self.paused.clear()
        if self.ledger.acks:
            self._send_acks(client)
        self._read(client, sock, min(room, READ_BURST))
        now = time.monotonic()
        if now - self._misc_at >= 0.5:  # keepalive pings and their timeout
            self._misc_at = now
            client.loop_misc()

    def _over_byte_budget(self) -> bool:
        return self.ledger.bytes_held() >= self.config.max_pending_bytes

    def _pause_step(self, client: mqtt.Client) -> None:
        """Send acks and keep the connection alive without reading a message."""
        now = time.monotonic()
        if not self.paused.is_set():
            self._paused_ping_at = now
            self.paused.set()
        self._send_acks(client)
        if now - self._paused_ping_at >= self.config.keepalive / 2:
            # The broker drops a client silent for 1.5 keepalives, and the acks of the
            # batch being stored would then go to a dead socket. paho's loop_misc would
            # ping but also wants the PINGRESP read in time, and reading is what a pause
            # must not do: ping directly; the PINGRESPs are read when reading resumes.
            self._paused_ping_at = now
            send_pingreq = getattr(client, "_send_pingreq", None)
            if send_pingreq is not None:
                send_pingreq()
            else:
                client.loop_misc()
        client.loop_write()
        self.ledger.acks_ready.wait(0.05)
        self.ledger.acks_ready.clear()

    def _read(self, client: mqtt.Client, sock: Any, burst: int) -> None:
        """paho's external-loop API (loop_read/loop_write/loop_misc), with a select only when idle.

        Each ``loop_read`` handles at most one packet, so ``burst`` bounds the messages taken in.
        When everything the socket had is read, the ledger hears that the stream is quiet:
        the flush thread then commits what is in hand at once instead of waiting for a
        full batch (adaptive batching: low latency when quiet, big batches under load).
        """
        pending = getattr(sock, "pending", None)
        if pending is not None and pending() > 0:
            budget = self.config.max_pending_bytes + self.ledger.bytes_out
            for _ in range(burst):
                if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or client.socket() is None or pending() == 0:
                    break
                if self.ledger.bytes_in >= budget:
                    break
            if pending() == 0:
                self._note_if_quiet(sock)
            return
        writers = [sock] if client.want_write() else []
        readable, writable, _ = select.select([sock], writers, [], 0.05)
        if readable:
            client.loop_read()
            if (pending is None or pending() == 0) and client.socket() is not None:
                self._note_if_quiet(sock)
        if writable and client.socket() is not None:
            client.loop_write()

    def _note_if_quiet(self, sock: Any) -> None:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            self.ledger.mark_quiet()

    def _connect(self, client: mqtt.Client) -> None:
        wait = self._next_connect_at - time.monotonic()
        if wait > 0:
            self.stop.wait(min(wait, 0.2))
            return
        try:
            client.reconnect()
        except (OSError, ValueError, mqtt.WebsocketConnectionError) as exc:
            delay = self._backoff.next()
            self._next_connect_at = time.monotonic() + delay
            logger.warning("cannot reach the MQTT broker (%s); retrying in %.1f s", exc, delay)
            return
        # A new socket: from now on acks of the earlier connection's messages are dropped,
        # also before the CONNACK (paho would write them to this socket straight away).
        self.generation += 1

    def _send_acks(self, client: mqtt.Client) -> None:
        while self.ledger.acks:
            generation, mids = self.ledger.acks.popleft()
            if generation != self.generation or client.socket() is None:
                # Delivered on an earlier connection: the broker redelivers them; acking
                # these packet ids now could acknowledge different messages.
                self.stats.acks_skipped += len(mids)
                continue
            ack_many(client, mids)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            delay = self._backoff.next()
            self._next_connect_at = time.monotonic() + delay
            logger.error("the MQTT broker refused the connection: %s; retrying in %.1f s", reason, delay)
            return
        self.stats.connects += 1
        logger.info(
            "connected to the MQTT broker (session %s); subscribing",
            "resumed" if flags.session_present else "new",
        )
        if self.config.mqtt_version == "5":
            # Retained messages only for a new subscription, not on every reconnect.
            options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
            client.subscribe([(f, options) for f in self.filters])
        else:
            client.subscribe([(f, 1) for f in self.filters])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
        refused = [f for f, r in zip(self.filters, reasons, strict=False) if r.is_failure]
        if refused:
            # Connected but deaf is the worst state: drop the connection and retry with backoff.
            logger.error("the broker refused the subscription to %s; reconnecting", ", ".join(refused))
            self._next_connect_at = time.monotonic() + self._backoff.next()
            client.disconnect()
            return
        self._backoff.reset()
        self.stats.connected = True
        logger.info("subscribed to %s", ", ".join(self.filters))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.stats.connected = False
        if self.stop.is_set():
            return
        delay = self._backoff.next()
        self._next_connect_at = max(self._next_connect_at, time.monotonic() + delay)
        logger.warning("disconnected from the MQTT broker (%s); reconnecting in %.1f s", reason, delay)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Called by paho for every message. Without a store process it decodes here, on the
        # thread that is busy anyway, leaving the flush thread mostly waiting on PostgreSQL;
        # with one it only keeps the raw bytes. Never raises: an exception escaping here would
        # kill paho's loop while it still looks connected.
        try:
            received_us = int((message.timestamp + self.clock_offset) * 1_000_000)
            payload = message.payload
            # message.topic would raise on invalid UTF-8; message._topic is the raw bytes.
            item = self.decode(message._topic, payload, message.retain, received_us)
            size = len(payload)
            self.ledger.bytes_in += size
            pending = self.ledger.pending
            # Not the MQTTMessage: it carries a lock and a condition; free it now.
            pending.append(InHand(item, message.mid if message.qos else 0, self.generation, received_us, size))
            if len(pending) == self.config.batch_size:
                self.ledger.arrived.set()
            self.stats.received += 1
        except Exception:
            self.stats.internal_errors += 1
            logger.exception("could not queue a message; it stays unacknowledged and is redelivered")
