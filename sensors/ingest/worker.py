"""The MQTT ingest worker: broker → decode → batch → PostgreSQL → ack (docs/architecture.md §1, §6).

Orchestration only. The pieces, each in its own module, dependencies one way:

- ``network.NetworkLoop`` (the *network thread*): the paho client, reading, acks, reconnects;
- ``ledger.Ledger``: messages received and not yet acknowledged, shared by the two threads;
- ``pipeline.Ingestor``: decode and store a batch in one transaction, with database retry
  and poison isolation; run here, or in the store process (``storeproc``);
- ``hookthread.HookThread``: the after-commit notifier lane.

The *flush thread* (the caller of ``run``) takes a batch when the broker's stream goes
quiet (everything the socket had is read), when ``batch_size`` messages are in hand, or
when the oldest is ``batch_ms`` old, whichever comes first: a lone reading is committed
at once, and under load batches grow while the previous ones are being stored.

At-least-once: a message is acknowledged only after the transaction holding its outcome
committed (``manual_ack=True``), in a persistent session.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import fields
from typing import Any

from django.db import connection

from sensors.ingest import topics
from sensors.ingest.config import WorkerConfig, broker_address
from sensors.ingest.hookthread import HookThread
from sensors.ingest.ledger import Batch, Ledger
from sensors.ingest.network import NetworkLoop
from sensors.ingest.pipeline import Ingestor, RawMessage
from sensors.ingest.stats import IngestStats, StatsReporter
from sensors.ingest.store import BatchResult
from sensors.ingest.storeproc import PIPELINE_DEPTH, StoreProcess, StoreProcessDied, merge_child_stats, raw_item

logger = logging.getLogger("sensors.ingest")

__all__ = ["IngestWorker", "RawMessage", "WorkerConfig"]


class IngestWorker:
    """Subscribe, batch, store, ack; ``run`` until ``stop`` is set, then drain and disconnect.

    With ``config.store_process`` (the default in settings) batches are decoded and stored
    by a child process (``storeproc``), up to ``PIPELINE_DEPTH`` at once, and acknowledged
    as its reports arrive; otherwise in this process, one batch at a time.
    """

    def __init__(self, config: WorkerConfig, *, stats: IngestStats | None = None) -> None:
        self.config = config
        self.stats = stats or IngestStats()
        self.stop_requested = threading.Event()  # the run's stop event once running
        interval = config.notify_interval_ms / 1000
        self.hooks: HookThread | None = (
            None if config.store_process else HookThread(stats=self.stats, min_interval=interval)
        )
        self.ingestor = Ingestor(
            config=config,
            stats=self.stats,
            after_commit=self.hooks.submit if self.hooks else lambda outcome: None,
            stop_requested=self.stop_requested,
            while_waiting=self._maybe_report,
        )
        self.reporter = StatsReporter(client_id=config.client_id, interval=config.stats_interval, stats=self.stats)
        self.store: StoreProcess | None = None
        self.filters = topics.subscription_filters(list(config.sources), config.share_group)
        self.ledger = Ledger()
        self.network = NetworkLoop(
            config=config,
            ledger=self.ledger,
            stats=self.stats,
            decode=raw_item if config.store_process else self.ingestor.decode_one,
            filters=self.filters,
        )
        self._slots = threading.Semaphore(PIPELINE_DEPTH)
        self._gave_up = False
        self._net_thread = threading.Thread(target=self.network.run, name="mqtt-network", daemon=True)

    @property
    def client(self) -> Any:
        return self.network.client

    def run(self, stop: threading.Event) -> int:
        """Run until ``stop`` is set; 0 after a clean drain, 1 if the network thread or the store process died."""
        self._log_start()
        if self.config.store_process:
            try:
                self.store = self._start_store_process()
            except StoreProcessDied:
                logger.critical("the ingest store process could not start", exc_info=True)
                return 1
        elif self.hooks is not None:
            self.hooks.start()
        self._net_thread.start()
        thresholds = gc.get_threshold()
        # About ten container objects per message, all freed by reference counting: the
        # default threshold (700) would run a cycle collection every ~70 messages, each
        # older-generation one walking the whole pending queue. Measured: ~40% of CPU.
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        try:
            return self._loop(stop)
        finally:
            self.network.stop.set()
            self._net_thread.join(timeout=10)
            if self.hooks is not None:
                self.hooks.stop(timeout=10)
            if self.store is not None:
                self.store.stop(timeout=self.config.shutdown_timeout)
            gc.set_threshold(*thresholds)
            gc.unfreeze()

    def _loop(self, stop: threading.Event) -> int:
        watch = threading.Thread(target=self._relay_stop, args=(stop,), name="stop-relay", daemon=True)
        watch.start()
        while not stop.is_set():
            if not self._net_thread.is_alive():
                logger.critical("the MQTT network thread died; exiting so that a supervisor restarts us")
                return 1
            if self.store is not None and not self.store.alive():
                logger.critical("the ingest store process died; exiting so that a supervisor restarts us")
                return 1
            batch = self._next_batch()
            if batch is not None and not self._dispatch(batch):
                return 1
            batch = None  # the batch's messages are in flight now: hold nothing more here
            self._maybe_report()
        self._drain()
        return 0

    def _relay_stop(self, stop: threading.Event) -> None:
        stop.wait()
        self.stop_requested.set()
        self.ledger.arrived.set()

    def _log_start(self) -> None:
        address = broker_address(self.config.url)
        logger.info(
            "ingest %s: %s:%d (%s%s, MQTT %s), filters %s, batch up to %d / %d ms, %s",
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

    def _start_store_process(self) -> StoreProcess:
        store = StoreProcess(
            config={f.name: getattr(self.config, f.name) for f in fields(self.config)},
            database_name=connection.settings_dict.get("NAME"),
            on_result=self._complete,
            on_stats=lambda delta: merge_child_stats(self.stats, delta),
        )
        store.start()
        return store

    def _next_batch(self) -> Batch | None:
        """The next batch, holding a pipeline slot when there is a store process; None for now."""
        if not self._free_slot():
            return None
        batch = self._take_when_ready()
        if batch is None and self.store is not None:
            self._slots.release()
        return batch

    def _take_when_ready(self) -> Batch | None:
        """A batch once the stream is quiet, ``batch_size`` messages are in hand, or the oldest is ``batch_ms`` old."""
        ledger, size = self.ledger, self.config.batch_size
        pending = ledger.pending
        if len(pending) < size and not ledger.quiet and not self._is_old():
            oldest = ledger.oldest_received_us() if pending else None
            remaining = 0.1 if oldest is None else self.config.batch_ms / 1000 - (time.time() - oldest / 1e6)
            ledger.arrived.wait(min(max(remaining, 0.0), 0.1))
            ledger.arrived.clear()
            if len(pending) < size and not ledger.quiet and not self._is_old():
                return None
        return ledger.take(size)

    def _free_slot(self) -> bool:
        """With a store process: wait (briefly) for room in its pipeline, so batches grow meanwhile."""
        return self.store is None or self._slots.acquire(timeout=0.1)

    def _is_old(self) -> bool:
        oldest = self.ledger.pending[0].received_us if self.ledger.pending else None
        return oldest is not None and time.time() - oldest / 1e6 >= self.config.batch_ms / 1000

    def _dispatch(self, batch: Batch) -> bool:
        """Store a batch here, or hand it to the store process (a slot is held); False if that process died."""
        if self.store is None:
            result = self.ingestor.store(self.ledger.hand_over(batch))
            self._complete(batch.id, result, None)
            return True
        try:
            self.store.submit(batch.id, self.ledger.hand_over(batch))
        except StoreProcessDied:
            return False
        return True

    def _complete(self, batch_id: int, result: BatchResult | None, child_stats: dict[str, Any] | None) -> None:
        """A batch's outcome committed (or, with None, shutdown gave up on it): queue its acks.

        Runs on the flush thread (stored here) or the store process's report thread.
        """
        try:
            if child_stats is not None:
                merge_child_stats(self.stats, child_stats)
            count = self.ledger.complete(batch_id, committed=result is not None)
            if result is None:
                self._gave_up = True
                logger.warning(
                    "shutting down with %d messages not stored (PostgreSQL unavailable); the broker keeps them "
                    "unacknowledged and redelivers them to this client id",
                    count + len(self.ledger.pending),
                )
        finally:
            if self.store is not None:
                self._slots.release()

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if self.reporter.due(now):
            self.network.clock_offset = time.time() - time.monotonic()  # follow wall-clock adjustments
            self.reporter.report(now=now, pending=self.ledger.in_hand(), lag_s=self.lag())

    def lag(self) -> float:
        """Age in seconds of the oldest message received but not yet committed."""
        return self.ledger.lag()

    def _drain(self) -> None:
        """On stop: read no more, store what was received, ack it, then let the network thread disconnect."""
        deadline = time.monotonic() + self.config.shutdown_timeout
        self.ingestor.give_up_at = deadline
        if self.store is not None:
            self.store.stopping()
        self.network.draining = True
        self.network.paused.wait(timeout=2)
        while self.ledger.pending and time.monotonic() < deadline and not self._gave_up:
            if not self._drain_one(deadline):
                break  # the store process died, or is stuck past the shutdown timeout: the rest stays unacknowledged
        while (
            self.ledger.has_inflight() and time.monotonic() < deadline and self.store is not None and self.store.alive()
        ):
            time.sleep(0.01)
        ack_deadline = time.monotonic() + 5
        while self.ledger.acks or self.client.want_write():
            if time.monotonic() >= ack_deadline or not self._net_thread.is_alive():
                break
            time.sleep(0.01)
        self.reporter.report(now=time.monotonic(), pending=self.ledger.in_hand(), lag_s=self.lag())
        self.reporter.retire()

    def _drain_one(self, deadline: float) -> bool:
        """Dispatch one more batch at shutdown; False when the store process is dead or stuck."""
        if self.store is not None:
            while not self._slots.acquire(timeout=0.1):
                if not self.store.alive() or time.monotonic() > deadline:
                    return False
        batch = self.ledger.take(self.config.batch_size)
        if batch is None:
            if self.store is not None:
                self._slots.release()
            return True
        return self._dispatch(batch)
