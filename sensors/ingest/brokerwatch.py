"""Watch the broker's own dropped-messages counter beside the ingest worker.

Mosquitto drops QoS 1 messages beyond a client's ``max_queued_messages`` while still
acknowledging the publisher (docs/architecture.md §6): a worker that restarts or falls
behind loses readings and nothing in the worker can tell. The broker counts them in
``$SYS/broker/publish/messages/dropped``. ``BrokerWatch`` is a thread with its own small
paho client (client id ``<ingest client id>-brokerwatch``, clean session, QoS 0) that
subscribes to it, logs an ERROR once per rise, and keeps ``IngestStats.broker`` current,
so the worker's regular report carries it to ``/healthz`` and the admin
(``sensors.ingest.brokerdrops`` judges it there).

The last value seen is recorded in the cache per client id and broker, so a rise while the
worker was down (the restart case) is noticed when it comes back. Mosquitto's counter
restarts at 0 with the broker; a lower value is read as that. A broker without the counter
(amqtt, the demo's) or one whose ACL denies ``$SYS`` leaves it unknown, which fails nothing.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import Any, Final, Protocol

import paho.mqtt.client as mqtt
from django.core.cache import cache

from sensors.ingest.brokerdrops import DROPPED_TOPIC, RAISE_HINT
from sensors.ingest.config import broker_address
from sensors.ingest.stats import BrokerDrops, IngestStats

logger = logging.getLogger("sensors.ingest")

VERSION_TOPIC: Final = "$SYS/broker/version"
RECORD_KEY: Final = "ingest:broker-drops:{client_id}@{host}:{port}"
RECORD_TTL: Final = 30 * 86_400
WAITING: Final = f"waiting for the broker's {DROPPED_TOPIC}"
SILENT: Final = (
    f"the broker published no {DROPPED_TOPIC} within {{:g}} s: it has no such counter (only Mosquitto is "
    "known to) or its ACL denies $SYS to this user; lost messages cannot be detected"
)


def drops_observed(current: BrokerDrops, value: int, *, now: float) -> tuple[BrokerDrops, int]:
    """The figures once the counter reads ``value``, and by how much it rose (0: it did not).

    Before the first value of this run, ``current.dropped`` holds what the previous run
    recorded (``at_start`` still None), or None when nothing was recorded.
    """
    before = current.dropped
    if before is None:  # never seen: what it holds was dropped at some unknown time
        return replace(current, dropped=value, at_start=value, detail=""), 0
    restarted = value < before  # the broker restarted and counts from 0 again
    rise = value if restarted else value - before
    at_start = current.at_start if current.at_start is not None else (0 if restarted else before)
    updated = replace(current, dropped=value, at_start=at_start, detail="")
    if rise > 0:
        updated = replace(updated, since_start=current.since_start + rise, last_rise=rise, last_rise_at=now)
    return updated, rise


class BrokerWatch(threading.Thread):
    """Subscribe to the broker's $SYS counter until ``stop``; figures go to ``stats.broker``."""

    def __init__(
        self,
        *,
        url: str,
        client_id: str,
        stats: IngestStats,
        ca_file: str = "",
        unknown_after: float = 60.0,
        retry_seconds: float = 5.0,
    ) -> None:
        super().__init__(name="broker-watch", daemon=True)
        self.stats = stats
        self.address = broker_address(url)
        self.client_id = f"{client_id}-brokerwatch"
        self.record_key = RECORD_KEY.format(client_id=client_id, host=self.address.host, port=self.address.port)
        self.unknown_after = unknown_after
        self.retry_seconds = retry_seconds
        self._stopping = threading.Event()
        self._give_up_at = float("inf")  # on the counter: set once subscribed
        self._client = self._build_client(ca_file)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        self.stats.broker = BrokerDrops(watching=True, detail=WAITING, **self._recorded())
        while not self._stopping.is_set():
            try:
                self._step()
            except Exception:  # the watcher must never take the worker down
                logger.exception("broker watch: unexpected error; carrying on")
                self._stopping.wait(self.retry_seconds)
            if time.monotonic() > self._give_up_at:
                self._give_up_at = float("inf")
                self._set_unknown(SILENT.format(self.unknown_after))
        with contextlib.suppress(Exception):
            self._client.disconnect()

    def _step(self) -> None:
        if self._client.socket() is None:
            try:
                self._client.reconnect()
            except (OSError, ValueError, mqtt.WebsocketConnectionError) as exc:
                logger.debug("broker watch: cannot reach the broker (%s)", exc)
                if self.stats.broker.at_start is None:
                    self.stats.broker = replace(self.stats.broker, detail=f"cannot reach the broker: {exc}")
                self._stopping.wait(self.retry_seconds)
                return
        if self._client.loop(timeout=0.5) != mqtt.MQTT_ERR_SUCCESS:
            self._stopping.wait(self.retry_seconds)  # lost: reconnect on the next step

    def _build_client(self, ca_file: str) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,  # nothing to resume: $SYS values are retained or repeated
            transport=self.address.transport,  # type: ignore[arg-type]
        )
        if self.address.transport == "websockets":
            client.ws_set_options(path=self.address.path)
        if self.address.tls:
            client.tls_set(ca_certs=ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.connect_async(self.address.host, self.address.port, keepalive=60)
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._set_unknown(f"the broker refused the connection: {reason}")  # logged once, retried
            return
        client.subscribe([(DROPPED_TOPIC, 0), (VERSION_TOPIC, 0)])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
        if reasons and reasons[0].is_failure:
            self._set_unknown(f"the broker refused the subscription to {DROPPED_TOPIC} ({reasons[0]})")
        elif self._give_up_at == float("inf"):
            self._give_up_at = time.monotonic() + self.unknown_after  # Mosquitto answers at once (retained)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        text = message.payload.decode("utf-8", "replace").strip()
        if message.topic == VERSION_TOPIC:
            self.stats.broker = replace(self.stats.broker, broker=text[:100])
        elif message.topic == DROPPED_TOPIC:
            try:
                value = int(text)
            except ValueError:
                self._set_unknown(f"the broker's {DROPPED_TOPIC} is not a whole number: {text[:40]!r}")
                return
            self._observe(value)

    def _observe(self, value: int) -> None:
        before = self.stats.broker
        self.stats.broker, rise = drops_observed(before, value, now=time.time())
        if rise:
            logger.error(
                "the MQTT broker dropped %d messages (%s went from %d to %d)%s: readings published "
                "meanwhile are lost; %s",
                rise,
                DROPPED_TOPIC,
                value - rise,
                value,
                "" if before.at_start is not None else " while this worker was not watching",
                RAISE_HINT,
            )
        elif before.at_start is None and value:
            logger.warning(
                "the MQTT broker had dropped %d messages before this worker started (%s)", value, DROPPED_TOPIC
            )
        if value != before.dropped or before.at_start is None:
            self._record()

    def _set_unknown(self, detail: str) -> None:
        if self.stats.broker.at_start is None and detail != self.stats.broker.detail:
            logger.warning("broker watch: %s", detail)
            self.stats.broker = replace(self.stats.broker, detail=detail)

    def _recorded(self) -> dict[str, Any]:
        """What the previous run of this client id saw: the counter, and its latest rise."""
        try:
            found = cache.get(self.record_key) or {}
        except Exception:
            logger.warning("broker watch: could not read the last recorded counter", exc_info=True)
            found = {}
        return {key: found[key] for key in ("dropped", "last_rise", "last_rise_at") if key in found}

    def _record(self) -> None:
        figures = asdict(self.stats.broker)
        try:
            cache.set(self.record_key, {k: figures[k] for k in ("dropped", "last_rise", "last_rise_at")}, RECORD_TTL)
        except Exception:
            logger.warning("broker watch: could not record the counter", exc_info=True)


class WatchedBroker(Protocol):
    """Where the worker connects (``WorkerConfig`` has these)."""

    @property
    def url(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def ca_file(self) -> str: ...


@contextlib.contextmanager
def watching_broker(config: WatchedBroker, *, stats: IngestStats, enabled: bool) -> Iterator[None]:
    """Run a ``BrokerWatch`` beside the worker of ``config`` (when ``enabled``) for the duration of the block."""
    if not enabled:
        yield
        return
    watch = BrokerWatch(url=config.url, client_id=config.client_id, ca_file=config.ca_file, stats=stats)
    watch.start()
    try:
        yield
    finally:
        watch.stop()
