"""Decode and store batches: decode → store in one transaction, with database retry and poison isolation.

No MQTT here: the worker (or the store process) hands it messages, the benchmark and
tests call ``Ingestor.ingest`` directly.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

from django.db import IntegrityError, InterfaceError, OperationalError, close_old_connections, connection

from sensors.hooks import run_batch_notifiers
from sensors.ingest import topics
from sensors.ingest.backoff import Backoff
from sensors.ingest.config import WorkerConfig
from sensors.ingest.decode import Decoded, decode_message
from sensors.ingest.registry import Registry
from sensors.ingest.stats import IngestStats
from sensors.ingest.store import BatchResult, OutcomeSink, dead_letter_rows, store_batch

logger = logging.getLogger("sensors.ingest")

T = TypeVar("T")


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

    def __init__(
        self,
        *,
        config: WorkerConfig,
        stats: IngestStats | None = None,
        after_commit: OutcomeSink = run_batch_notifiers,
        stop_requested: threading.Event | None = None,
        while_waiting: Callable[[], None] | None = None,
    ) -> None:
        """``after_commit`` takes each committed batch's outcome (the notifier lane); once
        ``stop_requested`` is set a database outage is not waited out (the messages in hand
        stay unacknowledged and the broker redelivers them); ``while_waiting`` is called
        while waiting for the database (the worker keeps reporting)."""
        self.config = config
        self.limits = config.limits()
        self.stats = stats or IngestStats()
        self.registry = Registry()
        self.after_commit = after_commit
        self.stop_requested = stop_requested
        self.while_waiting = while_waiting
        self.give_up_at: float | None = None  # set at shutdown: stop retrying a dead database then
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
