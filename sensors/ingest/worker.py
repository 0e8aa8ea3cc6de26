"""The MQTT ingest worker: broker → decode → batch → PostgreSQL → ack (DESIGN.md §1, §6).

Three threads:

- the *network thread* drives paho through its external-loop API (``loop_read`` /
  ``loop_write`` / ``loop_misc``): it reads and decodes messages, appends them to the
  pending queue, sends the acks of committed batches and reconnects with backoff. Acks go
  out on the thread that owns the connection because an ack is only valid on the
  connection that delivered the message (packet ids are reused after a reconnect): acks
  for an older connection are dropped, the broker redelivers those messages, and the
  (sensor, ts) primary key makes the second copy harmless;
- the *flush thread* (the caller of ``run``) stores a batch when it is full
  (``batch_size``) or old enough (``batch_ms``), in one transaction, then queues its acks;
- the *hooks thread* runs the after-commit batch hooks (live fan-out, alerts).

At-least-once: a message is acknowledged only after the transaction holding its outcome
committed (``manual_ack=True``), in a persistent session. Memory stays bounded: with
``max_pending`` messages received but not committed the network thread stops reading, so
a PostgreSQL outage backs up into the broker's queue, not into this process.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import random
import select
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple, TypeVar
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, close_old_connections, connection, connections
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from sensors.hooks import BatchOutcome, run_batch_hooks
from sensors.ingest import topics
from sensors.ingest.decode import Decoded, Limits, decode_message
from sensors.ingest.registry import Registry
from sensors.ingest.stats import IngestStats, StatsReporter
from sensors.ingest.store import BatchResult, OutcomeSink, dead_letter_rows, hooks_run_now, store_batch
from sensors.ingest.storeproc import PIPELINE_DEPTH, StoreProcess, StoreProcessDied, merge_child_stats

logger = logging.getLogger("sensors.ingest")

T = TypeVar("T")

PacketTypes = mqtt.PacketTypes
READ_BURST = 500  # packets read from a buffer before the loop looks at acks and keepalive again


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


def build_client(config: WorkerConfig) -> mqtt.Client:
    """A paho client with a persistent session and manual acks; not yet connected."""
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


class Backoff:
    """Exponential backoff with jitter: first, 2×first, … up to ``maximum`` seconds."""

    def __init__(self, first: float, maximum: float) -> None:
        self.first, self.maximum, self.attempt = first, maximum, 0

    def next(self) -> float:
        delay = min(self.first * 2**self.attempt, self.maximum)
        self.attempt += 1
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography

    def reset(self) -> None:
        self.attempt = 0


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


class RawMessage(NamedTuple):
    """A message as the broker delivered it, for driving the pipeline without a broker."""

    topic: bytes
    payload: bytes
    retained: bool
    received_us: int


class Ingestor:
    """Decode and store batches, retrying while PostgreSQL is unavailable. No MQTT here.

    ``ingest`` is what the benchmark and tests call directly; the worker calls
    ``decode_one`` as each message arrives and ``store`` per batch.
    """

    def __init__(self, *, config: WorkerConfig, stats: IngestStats | None = None) -> None:
        self.config = config
        self.limits = config.limits()
        self.stats = stats or IngestStats()
        self.registry = Registry()
        self.give_up_at: float | None = None  # set at shutdown: stop retrying a dead database then
        # The worker's stop event: once set, a database outage is not waited out -- the
        # messages in hand stay unacknowledged, so the broker redelivers them.
        self.stop_requested: threading.Event | None = None
        self.while_waiting: Callable[[], None] | None = None  # called while waiting for the database
        self.after_commit: OutcomeSink = hooks_run_now
        self._db_down_since: float | None = None

    def ingest(self, messages: Sequence[RawMessage]) -> BatchResult | None:
        decoded = [self.decode_one(*m) for m in messages]
        return self.store(decoded)

    def decode_one(self, topic: bytes, payload: bytes, retained: bool, received_us: int) -> Decoded:
        try:
            return decode_message(topic, payload, retained=retained, received_us=received_us, limits=self.limits)
        except Exception as exc:
            # A bug must cost one message (as a dead letter), never the worker.
            self.stats.internal_errors += 1
            logger.exception("internal error decoding a message on %s", topics.topic_text(topic))
            failed = Decoded(topic, payload, received_us, retained)
            failed.reason = f"Internal error while decoding this message: {exc!r}"
            return failed

    def store(self, decoded: list[Decoded]) -> BatchResult | None:
        """Store a batch; None if shutdown came first while PostgreSQL was unavailable."""
        started = time.monotonic()
        result = self._store_retrying(decoded, isolate_on_error=True)
        if result is not None:
            self.stats.add_batch(
                messages=result.messages,
                readings=result.readings,
                stored=result.inserted,
                statuses=result.statuses,
                dead_letters=result.dead_letters,
                unknown=result.unknown,
                new_sensors=result.new_sensors,
                flush_ms=(time.monotonic() - started) * 1000,
            )
        return result

    def _store_retrying(self, decoded: list[Decoded], *, isolate_on_error: bool) -> BatchResult | None:
        integrity_errors = 0
        while True:
            try:
                return self._with_db_retry(lambda: self._store_batch(decoded))
            except IntegrityError:
                # Most likely a sensor or device deleted since the registry was loaded.
                integrity_errors += 1
                self.registry.invalidate()
                if integrity_errors < 2:
                    continue
                if not isolate_on_error:
                    raise
                return self._store_one_by_one(decoded)
            except Exception:
                if not isolate_on_error:
                    raise
                self.stats.internal_errors += 1
                logger.exception("storing a batch of %d failed; storing its messages one by one", len(decoded))
                return self._store_one_by_one(decoded)

    def _store_batch(self, decoded: list[Decoded]) -> BatchResult:
        self.registry.refresh()
        return store_batch(messages=decoded, registry=self.registry, after_commit=self.after_commit)

    def _with_db_retry(self, attempt: Callable[[], T]) -> T | None:
        """``attempt()`` until PostgreSQL takes it; None if shutdown came first while it was unavailable.

        A deadlock or serialization failure is another worker's transaction in the way,
        not an outage: retried at once (after a few ms of jitter, so the two don't meet again).
        """
        backoff = Backoff(0.2, 10.0)
        while True:
            try:
                if not connection.in_atomic_block:  # (a caller's own transaction, as in tests, is left alone)
                    close_old_connections()  # survive a PostgreSQL restart without a process restart
                result = attempt()
            except (OperationalError, InterfaceError) as exc:
                if _is_transaction_conflict(exc):
                    self.stats.db_conflicts += 1
                    logger.info("transaction conflict with another writer (%s); retrying", _sqlstate(exc))
                    time.sleep(random.uniform(0, 0.02))  # noqa: S311 - jitter, not cryptography
                    continue
                if not self._wait_for_database(exc, backoff):
                    return None
                continue
            self._database_back()
            return result

    def _store_one_by_one(self, decoded: list[Decoded]) -> BatchResult | None:
        total = BatchResult()
        for msg in decoded:
            try:
                result = self._store_retrying([msg], isolate_on_error=False)
            except Exception as exc:
                self.stats.internal_errors += 1
                logger.exception("storing one message on %s failed", topics.topic_text(msg.topic))
                result = self._dead_letter_failure(msg, exc)
            if result is None:
                return None
            total += result
        return total

    def _dead_letter_failure(self, msg: Decoded, exc: Exception) -> BatchResult | None:
        """Record a message that could not be stored; None if shutdown came first."""
        reason = f"Internal error while storing this message: {exc!r}"
        try:
            if self._with_db_retry(lambda: dead_letter_rows([(msg, reason)])) is None:
                return None
        except Exception:
            logger.exception(
                "could not dead-letter a %d-byte message on %s either; dropping it",
                len(msg.payload),
                topics.topic_text(msg.topic),
            )
            return BatchResult(messages=1)
        return BatchResult(messages=1, dead_letters=1)

    def _wait_for_database(self, exc: Exception, backoff: Backoff) -> bool:
        """Sleep before the next attempt; False when shutdown was requested or its deadline passed."""
        self.stats.db_errors += 1
        now = time.monotonic()
        delay = backoff.next()
        self.stats.database_ok = False
        if self._db_down_since is None:
            self._db_down_since = now
            logger.warning("PostgreSQL unavailable (%s); not acknowledging, retrying with backoff", exc)
        else:
            logger.info(
                "PostgreSQL still unavailable after %.0f s; next attempt in %.1f s", now - self._db_down_since, delay
            )
        while time.monotonic() < now + delay:
            if self._giving_up():
                return False
            if self.while_waiting:
                self.while_waiting()  # the worker keeps reporting: a growing lag shows the stall
            time.sleep(0.05)
        return not self._giving_up()

    def _giving_up(self) -> bool:
        if self.stop_requested is not None and self.stop_requested.is_set():
            logger.warning(
                "shutdown requested while PostgreSQL is unavailable: not waiting for it; the messages in hand "
                "stay unacknowledged and the broker redelivers them to this client id"
            )
            return True
        return self.give_up_at is not None and time.monotonic() >= self.give_up_at

    def _database_back(self) -> None:
        self.stats.database_ok = True
        if self._db_down_since is not None:
            logger.warning("PostgreSQL is back after %.1f s", time.monotonic() - self._db_down_since)
            self._db_down_since = None


_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__ or exc
    return getattr(cause, "sqlstate", None)


def _is_transaction_conflict(exc: BaseException) -> bool:
    return _sqlstate(exc) in _CONFLICT_SQLSTATES


class HookThread:
    """Runs the after-commit batch hooks on their own thread, in commit order.

    A hook's wall time (the live fan-out's Redis round trips: ~100-200 ms a batch
    measured) would otherwise hold up the next batch and the acks. The queue is short,
    so hooks slower than ingest slow ingest down instead of piling up outcomes. Outcomes
    still queued when the process dies are lost, like any channel-layer message (DESIGN.md §6).
    """

    def __init__(self, *, backlog: int = 4, stats: IngestStats | None = None, warn_interval: float = 60.0) -> None:
        self._queue: queue.Queue[Callable[[], BatchOutcome] | None] = queue.Queue(maxsize=backlog)
        self.stats = stats or IngestStats()
        self.warn_interval = warn_interval
        self._warned_at = float("-inf")
        self._thread = threading.Thread(target=self._run, name="batch-hooks", daemon=True)
        self._thread.start()

    def submit(self, make_outcome: Callable[[], BatchOutcome]) -> None:
        """Queue a committed batch's outcome; drop it if the hooks are that far behind.

        Called in ``on_commit`` before the batch's acks are queued: it must never wait.
        A dropped outcome is a live update the browsers miss; their per-farm sequence
        check sees the gap and refetches (DESIGN.md §6). The data is committed either way.
        """
        try:
            self._queue.put_nowait(make_outcome)
        except queue.Full:
            self.stats.hooks_dropped += 1
            now = time.monotonic()
            if now - self._warned_at >= self.warn_interval:
                self._warned_at = now
                logger.warning(
                    "the batch hooks are behind; dropped a batch's live update (%d so far): browsers refetch",
                    self.stats.hooks_dropped,
                )

    def stop(self, timeout: float) -> None:
        """Let queued outcomes run, waiting at most ``timeout`` seconds for a stuck hook."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        if self._thread.is_alive():
            logger.warning("the batch hooks did not finish within %.0f s; exiting without them", timeout)

    def _run(self) -> None:
        while (make_outcome := self._queue.get()) is not None:
            try:
                run_batch_hooks(make_outcome())
            except Exception:
                logger.exception("building a batch outcome for the hooks failed")
            finally:
                close_old_connections()  # hooks that query get a healthy connection next time
            # Let go of the batch now, not when the next one arrives (a 10-metric batch is ~6 MB).
            make_outcome = None
        connections.close_all()


# A message in hand: what it is (decoded here, or raw for the store process), the packet
# id to ack (0: none), the connection generation that delivered it, when it was received
# (µs since the epoch) and its payload's size.
Pending = tuple[Any, int, int, int, int]


def _raw(topic: bytes, payload: bytes, retained: bool, received_us: int) -> tuple[bytes, bytes, bool, int]:
    return (topic, payload, retained, received_us)


class IngestWorker:
    """Subscribe, batch, store, ack; ``run`` until ``stop`` is set, then drain and disconnect.

    With ``config.store_process`` (the default in settings) batches are decoded and stored
    by a child process (``storeproc``), up to ``PIPELINE_DEPTH`` at once, and acknowledged
    as its reports arrive; otherwise in this process, one batch at a time.
    """

    def __init__(self, config: WorkerConfig, *, stats: IngestStats | None = None) -> None:
        self.config = config
        self.stats = stats or IngestStats()
        self.ingestor = Ingestor(config=config, stats=self.stats)
        self.reporter = StatsReporter(client_id=config.client_id, interval=config.stats_interval, stats=self.stats)
        self.ingestor.while_waiting = self._maybe_report
        self.hooks: HookThread | None = None
        self.store: StoreProcess | None = None
        self.filters = topics.subscription_filters(list(config.sources), config.share_group)
        # deque.append/popleft are atomic: the network thread appends, the flush thread pops.
        self._pending: deque[Pending] = deque()
        self._batch_full = threading.Event()
        self._decode: Callable[[bytes, bytes, bool, int], Any] = (
            _raw if config.store_process else self.ingestor.decode_one
        )
        # paho stamps messages with the monotonic clock; wall time = monotonic + offset.
        self._clock_offset = time.time() - time.monotonic()
        # Batches taken from _pending and not yet committed, by batch id, oldest first.
        self._inflight: dict[int, list[Pending]] = {}
        self._inflight_count = 0
        self._inflight_lock = threading.Lock()
        self._batch_ids = 0
        self._slots = threading.Semaphore(PIPELINE_DEPTH)
        self._acks: deque[tuple[int, list[int]]] = deque()
        self._acks_ready = threading.Event()
        # Payload bytes received and released, each written by one thread only (no lock):
        # received-but-uncommitted bytes are the difference.
        self._bytes_in = 0
        self._bytes_out = 0
        self._generation = 0  # bumped at each new connection; acks only go out on their own
        self._paused_ping_at = 0.0
        self._draining = False
        self._gave_up = False
        self._paused = threading.Event()
        self._net_stop = threading.Event()
        self._next_connect_at = 0.0
        self._misc_at = 0.0
        self._backoff = Backoff(0.5, 30.0)
        self.client = build_client(config)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._net_thread = threading.Thread(target=self._network_loop, name="mqtt-network", daemon=True)

    # --- flush thread ------------------------------------------------------------------

    def run(self, stop: threading.Event) -> int:
        """Run until ``stop`` is set; 0 after a clean drain, 1 if the network thread or the store process died."""
        address = broker_address(self.config.url)
        logger.info(
            "ingest %s: %s:%d (%s%s, MQTT %s), filters %s, batch %d / %d ms, %s",
            self.config.client_id,
            address.host,
            address.port,
            address.transport,
            ", TLS" if address.tls else "",
            self.config.mqtt_version,
            ", ".join(self.filters),
            self.config.batch_size,
            self.config.batch_ms,
            "stored by a child process" if self.config.store_process else "stored in this process",
        )
        if self.config.store_process:
            try:
                self.store = self._start_store_process()
            except StoreProcessDied:
                logger.critical("the ingest store process could not start", exc_info=True)
                return 1
        else:
            self.hooks = HookThread(stats=self.stats)
            self.ingestor.after_commit = self.hooks.submit
            self.ingestor.stop_requested = stop
        self._net_thread.start()
        thresholds = gc.get_threshold()
        # About ten container objects per message, all freed by reference counting: the
        # default threshold (700) would run a cycle collection every ~70 messages, each
        # older-generation one walking the whole pending queue. Measured: ~40% of CPU.
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        try:
            while not stop.is_set():
                if not self._net_thread.is_alive():
                    logger.critical("the MQTT network thread died; exiting so that a supervisor restarts us")
                    return 1
                if self.store is not None and not self.store.alive():
                    logger.critical("the ingest store process died; exiting so that a supervisor restarts us")
                    return 1
                taken = self._take_batch(wait=True)
                if taken is not None:
                    if not self._dispatch(taken, stop):
                        return 1
                    taken = None  # the batch's messages are in flight now: hold nothing more here
                self._maybe_report()
            self._drain()
            return 0
        finally:
            self._net_stop.set()
            self._net_thread.join(timeout=10)
            if self.hooks is not None:
                self.hooks.stop(timeout=10)
            if self.store is not None:
                self.store.stop(timeout=self.config.shutdown_timeout)
            gc.set_threshold(*thresholds)
            gc.unfreeze()

    def _start_store_process(self) -> StoreProcess:
        store = StoreProcess(
            config={f.name: getattr(self.config, f.name) for f in fields(self.config)},
            database_name=connection.settings_dict.get("NAME"),
            on_result=self._complete,
            on_stats=lambda delta: merge_child_stats(self.stats, delta),
        )
        store.start()
        return store

    def _take_batch(self, *, wait: bool) -> tuple[int, list[Pending]] | None:
        """The next batch, registered as in flight, when one is full or old enough (or any, without ``wait``)."""
        size, max_age = self.config.batch_size, self.config.batch_ms / 1000
        pending = self._pending
        if wait and len(pending) < size:
            remaining = max_age - (time.time() - pending[0][3] / 1e6) if pending else 0.1
            if remaining > 0:
                self._batch_full.wait(min(remaining, 0.1))
                self._batch_full.clear()
            if len(pending) < size and not self._is_old(max_age):
                return None
        if not pending:
            return None
        popleft = pending.popleft
        batch = [popleft() for _ in range(min(size, len(pending)))]
        with self._inflight_lock:
            self._batch_ids += 1
            self._inflight[self._batch_ids] = batch
            self._inflight_count += len(batch)
        return self._batch_ids, batch

    def _is_old(self, max_age: float) -> bool:
        return bool(self._pending) and time.time() - self._pending[0][3] / 1e6 >= max_age

    def _dispatch(self, taken: tuple[int, list[Pending]], stop: threading.Event, deadline: float | None = None) -> bool:
        """Store a batch here, or hand it to the store process; False if that process died.

        Once shutting down (``stop`` set, or a ``deadline`` given) a store process that takes
        no batch for ``shutdown_timeout`` seconds is given up on: the batch stays unsent and
        unacknowledged, and the broker redelivers it.
        """
        batch_id, batch = taken
        if self.store is None:
            result = self.ingestor.store([item for item, _, _, _, _ in batch])
            self._complete(batch_id, result, None)
            return True
        # At most PIPELINE_DEPTH batches in the child: the next one waits for a report here.
        while not self._slots.acquire(timeout=0.1):
            if not self.store.alive():
                return False
            if stop.is_set():
                self.store.stopping()  # shutting down: don't wait out a database outage
                if deadline is None:
                    deadline = time.monotonic() + self.config.shutdown_timeout
            if deadline is not None and time.monotonic() > deadline:
                return True  # stuck: shutdown goes on without this batch
            self._maybe_report()
        items = [item for item, _, _, _, _ in batch]
        with self._inflight_lock:
            # What the acks need; the payloads are the store process's now.
            self._inflight[batch_id] = [(None, mid, gen, received, size) for _, mid, gen, received, size in batch]
        try:
            self.store.submit(batch_id, items)
        except StoreProcessDied:
            return False
        return True

    def _complete(self, batch_id: int, result: BatchResult | None, child_stats: dict[str, Any] | None) -> None:
        """A batch's outcome committed (or, with None, shutdown gave up on it): queue its acks.

        Runs on the flush thread (stored here) or the store process's report thread. The acks
        are queued before the batch leaves ``_inflight``, so that a drain never sees neither.
        """
        try:
            if child_stats is not None:
                merge_child_stats(self.stats, child_stats)
            with self._inflight_lock:
                batch = self._inflight[batch_id]
            released = 0
            for _, _, _, _, size in batch:
                released += size
            if result is None:
                self._gave_up = True
                logger.warning(
                    "shutting down with %d messages not stored (PostgreSQL unavailable); the broker keeps them "
                    "unacknowledged and redelivers them to this client id",
                    len(batch) + len(self._pending),
                )
            else:
                by_generation: dict[int, list[int]] = {}
                for _, mid, generation, _, _ in batch:
                    if mid:
                        by_generation.setdefault(generation, []).append(mid)
                self._acks.extend(by_generation.items())
                self._acks_ready.set()
            with self._inflight_lock:
                del self._inflight[batch_id]
                self._inflight_count -= len(batch)
            self._bytes_out += released
        finally:
            if self.store is not None:
                self._slots.release()

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if self.reporter.due(now):
            self._clock_offset = time.time() - time.monotonic()  # follow wall-clock adjustments
            self.reporter.report(now=now, pending=len(self._pending) + self._inflight_count, lag_s=self.lag())

    def lag(self) -> float:
        """Age in seconds of the oldest message received but not yet committed."""
        with self._inflight_lock:
            oldest = next(iter(self._inflight.values()))[0] if self._inflight else None
        if oldest is None and self._pending:
            with contextlib.suppress(IndexError):  # the flush thread may take it meanwhile
                oldest = self._pending[0]
        return max(time.time() - oldest[3] / 1e6, 0.0) if oldest else 0.0

    def _drain(self) -> None:
        """On stop: read no more, store what was received, ack it, then let the network thread disconnect."""
        self.ingestor.give_up_at = time.monotonic() + self.config.shutdown_timeout
        deadline = time.monotonic() + self.config.shutdown_timeout
        if self.store is not None:
            self.store.stopping()
        self._draining = True
        self._paused.wait(timeout=2)
        while taken := self._take_batch(wait=False):
            if not self._dispatch(taken, threading.Event(), deadline) or time.monotonic() > deadline:
                break  # the store process died, or is stuck past the shutdown timeout: the rest stays unacknowledged
            if self._gave_up:
                break  # a database outage at shutdown: the rest stays unacknowledged too
        while self._inflight and time.monotonic() < deadline and self.store is not None and self.store.alive():
            time.sleep(0.01)
        ack_deadline = time.monotonic() + 5
        while self._acks or self.client.want_write():
            if time.monotonic() >= ack_deadline or not self._net_thread.is_alive():
                break
            time.sleep(0.01)
        self.reporter.report(now=time.monotonic(), pending=len(self._pending) + self._inflight_count, lag_s=self.lag())
        self.reporter.retire()

    # --- network thread ----------------------------------------------------------------

    def _network_loop(self) -> None:
        client = self.client
        while not self._net_stop.is_set():
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
        room = self.config.max_pending - len(self._pending) - self._inflight_count
        if self._draining or room <= 0 or self._over_byte_budget():
            # Stop reading: the backlog stays on the broker, not in this process.
            self._pause_step(client)
            return
        self._paused.clear()
        if self._acks:
            self._send_acks(client)
        self._read(client, sock, min(room, READ_BURST))
        now = time.monotonic()
        if now - self._misc_at >= 0.5:  # keepalive pings and their timeout
            self._misc_at = now
            client.loop_misc()

    def _over_byte_budget(self) -> bool:
        return self._bytes_in - self._bytes_out >= self.config.max_pending_bytes

    def _pause_step(self, client: mqtt.Client) -> None:
        """Send acks and keep the connection alive without reading a message."""
        now = time.monotonic()
        if not self._paused.is_set():
            self._paused_ping_at = now
            self._paused.set()
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
        self._acks_ready.wait(0.05)
        self._acks_ready.clear()

    def _read(self, client: mqtt.Client, sock: Any, burst: int) -> None:
        """paho's external-loop API (loop_read/loop_write/loop_misc), with a select only when idle.

        Each ``loop_read`` handles at most one packet, so ``burst`` bounds the messages taken in.
        """
        pending = getattr(sock, "pending", None)
        if pending is not None and pending() > 0:
            budget = self.config.max_pending_bytes + self._bytes_out
            for _ in range(burst):
                if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or client.socket() is None or pending() == 0:
                    break
                if self._bytes_in >= budget:
                    break
            return
        writers = [sock] if client.want_write() else []
        readable, writable, _ = select.select([sock], writers, [], 0.05)
        if readable:
            client.loop_read()
        if writable and client.socket() is not None:
            client.loop_write()

    def _connect(self, client: mqtt.Client) -> None:
        wait = self._next_connect_at - time.monotonic()
        if wait > 0:
            self._net_stop.wait(min(wait, 0.2))
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
        self._generation += 1

    def _send_acks(self, client: mqtt.Client) -> None:
        while self._acks:
            generation, mids = self._acks.popleft()
            if generation != self._generation or client.socket() is None:
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
        if self._net_stop.is_set():
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
            received_us = int((message.timestamp + self._clock_offset) * 1_000_000)
            payload = message.payload
            # message.topic would raise on invalid UTF-8; message._topic is the raw bytes.
            item = self._decode(message._topic, payload, message.retain, received_us)
            size = len(payload)
            self._bytes_in += size
            pending = self._pending
            # Not the MQTTMessage: it carries a lock and a condition; free it now.
            pending.append((item, message.mid if message.qos else 0, self._generation, received_us, size))
            if len(pending) == self.config.batch_size:
                self._batch_full.set()
            self.stats.received += 1
        except Exception:
            self.stats.internal_errors += 1
            logger.exception("could not queue a message; it stays unacknowledged and is redelivered")
