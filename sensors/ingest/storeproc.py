"""The ingest worker's store process: decode and store beside the MQTT client, not under its GIL.

One paho client receiving QoS 1 messages keeps a core busy by itself (~30 µs of Python a
message on the benchmark machine). Decoding the JSON, building the COPY and the live update
cost ~10 µs more for a one-metric message and ~60 µs for a ten-metric one; in one process
all of it takes turns on one GIL, and the client receives that much slower. So the worker
(``IngestWorker``) keeps the MQTT connection, the batching and the acks, and hands each
batch of raw messages to this child process, which decodes it, stores it in one
transaction (batch writers included) and runs the after-commit notifiers, then reports the batch's outcome. The parent
acknowledges the batch only when that report says it committed: at-least-once is unchanged.

Inside the child a decode thread (the main one) and a store thread form a pipeline: batch
N+1 is decoded while batch N is in PostgreSQL. The parent keeps at most ``PIPELINE_DEPTH``
batches in the child.

Messages, over two one-way pipes (pickled; raw messages are plain tuples of bytes):

- parent → child: ``("config", worker config, database name)`` first, then
  ``("batch", id, [(topic, payload, retained, received_us), …])``, ``("stopping",)`` (shutdown
  has begun: don't wait out a database outage) and ``("stop",)``;
- child → parent: ``("ready",)``, ``("result", id, BatchResult | None, stats)``, ``("stats", stats)``
  where ``stats`` is what changed in the child's counters since its previous report.

The child ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole process group): it stops
when the parent says so, or when the parent is gone (its pipe closes).

The child is ``python -m sensors.ingest.storeproc <fd> <fd>`` (so ``ps`` says what it is),
started with ``subprocess`` rather than ``multiprocessing``, whose spawn would add a resource
tracker process (~12 MB) for nothing. Nothing here imports Django models at module level: the
child imports this module before ``django.setup()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger("sensors.ingest")

PIPELINE_DEPTH: Final = 2  # batches in the child at once: one in PostgreSQL, one being decoded
READY_TIMEOUT: Final = 120.0  # the child imports Django and the project before it is ready
STATS_WHILE_WAITING: Final = 0.5  # seconds between reports while PostgreSQL is unavailable

RawItem = tuple[bytes, bytes, bool, int]  # topic, payload, retained, received_us


def raw_item(topic: bytes, payload: bytes, retained: bool, received_us: int) -> RawItem:
    """A message as the worker sends it here: a plain tuple pickles smallest and fastest."""
    return (topic, payload, retained, received_us)


# Counters the child owns; the parent adds the child's increments to its own figures.
CHILD_COUNTERS: Final = (
    "messages",
    "readings",
    "stored",
    "statuses",
    "dead_letters",
    "unknown",
    "new_sensors",
    "batches",
    "db_errors",
    "internal_errors",
    "db_conflicts",
    "hooks_dropped",
)
CHILD_VALUES: Final = ("last_batch_size", "last_flush_ms", "database_ok")


class StoreProcessDied(RuntimeError):
    """The store process exited or stopped answering; the worker exits so that a supervisor restarts it."""


class StoreProcess:
    """The parent's handle on the store process: ``submit`` batches, results arrive on a thread."""

    def __init__(
        self,
        *,
        config: dict[str, Any],
        database_name: str | None,
        on_result: Callable[[int, Any, dict[str, Any]], None],
        on_stats: Callable[[dict[str, Any]], None],
    ) -> None:
        self._config = config
        self._database_name = database_name
        self._on_result = on_result
        self._on_stats = on_stats
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_results, name="store-results", daemon=True)
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping_sent = False
        self.dead = False

    def start(self) -> None:
        """Start the child and wait until it has set Django up; StoreProcessDied if it cannot."""
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "sensors.ingest.storeproc", str(to_child_r), str(to_parent_w)],
            pass_fds=(to_child_r, to_parent_w),
            cwd=Path(__file__).resolve().parents[2],  # the project root, for ``-m``
        )
        # The parent keeps only its own ends: when the child exits, reading its pipe ends in EOF.
        os.close(to_child_r)
        os.close(to_parent_w)
        self._to_child = Connection(to_child_w, readable=False)
        self._from_child = Connection(to_parent_r, writable=False)
        self._send(("config", self._config, self._database_name))
        try:
            self._wait_ready()
        except StoreProcessDied:
            self.dead = True
            self._process.kill()
            self._process.wait(5)
            self._to_child.close()
            self._from_child.close()
            raise
        logger.info("ingest store process %d ready", self._process.pid)
        self._reader.start()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._from_child.poll(0.2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise StoreProcessDied(f"the ingest store process did not start (exit code {self._process.poll()})")
        try:
            ready = self._from_child.recv()
        except (EOFError, OSError) as exc:
            raise StoreProcessDied("the ingest store process exited while starting") from exc
        if ready != ("ready",):
            raise StoreProcessDied(f"unexpected first message from the ingest store process: {ready!r}")

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def alive(self) -> bool:
        return not self.dead and self._process is not None and self._process.poll() is None

    def submit(self, batch_id: int, items: list[RawItem]) -> None:
        self._send(("batch", batch_id, items))

    def stopping(self) -> None:
        """Shutdown has begun: the child stops waiting out a database outage (the broker keeps the rest)."""
        if not self._stopping_sent:
            self._stopping_sent = True
            with contextlib.suppress(StoreProcessDied):  # gone already: nothing to tell
                self._send(("stopping",))

    def stop(self, timeout: float) -> None:
        """Let the child finish what it holds and exit; kill it after ``timeout`` seconds."""
        if self._process is None:
            return
        self.stopping()  # also on the crash paths: don't wait out a database outage now
        with contextlib.suppress(StoreProcessDied):
            self._send(("stop",))
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("the ingest store process did not stop within %.0f s; killing it", timeout)
            self._process.kill()
            self._process.wait(5)
        if self._reader.is_alive():
            self._reader.join(5)
        self._to_child.close()
        self._from_child.close()

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            with self._send_lock:
                self._to_child.send(message)
        except OSError as exc:  # BrokenPipeError and friends: the child is gone
            self.dead = True
            raise StoreProcessDied("the ingest store process is gone") from exc

    def _read_results(self) -> None:
        try:
            while True:
                try:
                    message = self._from_child.recv()
                except (EOFError, OSError):
                    return
                except Exception:  # a report that cannot be read: the worker cannot trust what follows
                    logger.exception("could not read a report of the ingest store process")
                    return
                try:
                    if message[0] == "result":
                        _, batch_id, result, stats = message
                        self._on_result(batch_id, result, stats)
                    elif message[0] == "stats":
                        self._on_stats(message[1])
                except Exception:
                    logger.exception("handling a report of the ingest store process failed")
        finally:
            self.dead = True  # the worker sees this and exits for its supervisor to restart it


def _load_malloc_trim() -> Callable[[], None]:
    """glibc's ``malloc_trim(0)``, or a no-op elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


# After each batch: hand the heap pages its short-lived buffers (COPY data, query parameters,
# pickles: ~10 MB for a 10-metric batch) left free back to the system, so that the next batch
# does not build on them. Measured: the store process's peak 117 → 112 MB, no slower.
trim_heap = _load_malloc_trim()


def child_main(inbox: Connection, outbox: Connection) -> None:
    """The store process: take the worker's config, set Django up, then decode and store until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _, config, database_name = inbox.recv()
    except EOFError:
        return
    import django

    django.setup()
    if database_name:
        from django.conf import settings

        # The parent's database (under a test runner, the test database it created).
        settings.DATABASES["default"]["NAME"] = database_name
    try:
        _StoreChild(config, inbox, outbox).run()
    except BaseException:
        logger.exception("the ingest store process failed")
        os._exit(70)


class _StoreChild:
    def __init__(self, config: dict[str, Any], inbox: Connection, outbox: Connection) -> None:
        # Imported here: they import Django models, and this module is imported before django.setup().
        from sensors.ingest.config import WorkerConfig
        from sensors.ingest.hookthread import HookThread
        from sensors.ingest.pipeline import Ingestor
        from sensors.ingest.stats import IngestStats

        self.inbox, self.outbox = inbox, outbox
        self.stopping = threading.Event()
        self.stats = IngestStats()
        worker_config = WorkerConfig(**config)
        self.hooks = HookThread(stats=self.stats, min_interval=worker_config.notify_interval_ms / 1000)
        self.ingestor = Ingestor(
            config=worker_config,
            stats=self.stats,
            after_commit=self.hooks.submit,
            stop_requested=self.stopping,
            while_waiting=self._report_while_waiting,
        )
        # At most PIPELINE_DEPTH batches are sent ahead, so these queues stay short.
        self._batches: queue.Queue[tuple[int, list[RawItem]] | None] = queue.Queue()
        self._decoded: queue.Queue[tuple[int, list[Any]] | None] = queue.Queue(maxsize=1)
        self._sent_counters = dict.fromkeys(CHILD_COUNTERS, 0)
        self._reported_at = 0.0
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_inbox, name="inbox", daemon=True)
        self._store_thread = threading.Thread(target=self._store_loop, name="store", daemon=True)

    def run(self) -> None:
        # As in the worker: the collector's default threshold would walk every batch in hand
        # every few hundred messages.
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        self.hooks.start()
        self._store_thread.start()
        self._reader.start()
        self._send(("ready",))
        decode = self.ingestor.decode_one
        try:
            while (taken := self._batches.get()) is not None:
                batch_id, items = taken
                decoded = [decode(*item) for item in items]
                del taken, items  # the raw batch is not needed while this one waits for the store thread
                self._decoded.put((batch_id, decoded))
                del decoded
        finally:
            self._decoded.put(None)
            self._store_thread.join()
            self.hooks.stop(timeout=10)
            from django.db import connections

            connections.close_all()

    def _read_inbox(self) -> None:
        """Route the worker's messages; a closed pipe means the worker is gone."""
        while True:
            try:
                message = self.inbox.recv()
            except (EOFError, OSError):
                # Killed: whatever commits now is redelivered to its successor and skipped as
                # a duplicate. Don't wait out a database outage for nobody.
                logger.warning("the ingest worker is gone; the store process stops")
                self.stopping.set()
                self._batches.put(None)
                return
            if message[0] == "batch":
                self._batches.put((message[1], message[2]))
            elif message[0] == "stopping":
                self.stopping.set()
            elif message[0] == "stop":
                self._batches.put(None)
                return

    def _store_loop(self) -> None:
        while (item := self._decoded.get()) is not None:
            batch_id, decoded = item
            try:
                result = self.ingestor.store(decoded)  # never raises: a bad message costs itself only
                self._send(("result", batch_id, result, self._stats_delta()))
            except BaseException:
                logger.exception("the ingest store thread failed; exiting so that the worker restarts")
                os._exit(70)
            del item, decoded  # let go of the batch now, not when the next one arrives
            trim_heap()

    def _report_while_waiting(self) -> None:
        now = time.monotonic()
        if now - self._reported_at >= STATS_WHILE_WAITING:
            self._reported_at = now
            self._send(("stats", self._stats_delta()))

    def _stats_delta(self) -> dict[str, Any]:
        stats = self.stats
        delta: dict[str, Any] = {}
        for name in CHILD_COUNTERS:
            value = getattr(stats, name)
            delta[name] = value - self._sent_counters[name]
            self._sent_counters[name] = value
        for name in CHILD_VALUES:
            delta[name] = getattr(stats, name)
        return delta

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            with self._send_lock:
                self.outbox.send(message)
        except OSError:
            self.stopping.set()  # the worker is gone; nobody will acknowledge anything now


def merge_child_stats(stats: Any, delta: dict[str, Any]) -> None:
    """Add the child's counter increments to the worker's figures and take its current values."""
    for name in CHILD_COUNTERS:
        setattr(stats, name, getattr(stats, name) + delta[name])
    for name in CHILD_VALUES:
        setattr(stats, name, delta[name])


if __name__ == "__main__":
    child_main(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
