"""The after-commit notifier lane of the ingest worker, on a thread of its own."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time

from django.db import close_old_connections, connections

from sensors.hooks import BatchOutcome, run_batch_notifiers
from sensors.ingest.stats import IngestStats

logger = logging.getLogger("sensors.ingest")


class HookThread:
    """Runs the after-commit batch notifiers on their own thread, in commit order.

    A notifier's wall time (the live fan-out's Redis round trips: ~100-200 ms a batch
    measured) would otherwise hold up the next batch and the acks. The queue is short,
    so notifiers slower than ingest drop outcomes instead of piling them up. Outcomes
    still queued when the process dies are lost, like any channel-layer message (docs/architecture.md §6).

    Batches commit as soon as the stream is quiet, so under a steady load there are many
    small ones: the notifiers run at most once per ``min_interval`` seconds, on the
    batches committed meanwhile merged into one outcome. The first batch after a quiet
    spell goes out at once; under load, every dashboard gets at most 1 / ``min_interval``
    updates a second per farm instead of one per commit (measured: one per commit cost
    daphne 3-7x the frames at 1,000 msg/s, and seconds of delay on 2 cores).
    """

    def __init__(
        self,
        *,
        backlog: int = 256,
        max_rows: int = 100_000,
        stats: IngestStats | None = None,
        warn_interval: float = 60.0,
        min_interval: float = 0.0,
    ) -> None:
        # Bounded by batches and by readings: adaptive batching commits many small batches
        # (a few batches' worth of readings is what must not pile up, not a few batches).
        self._queue: queue.Queue[BatchOutcome | None] = queue.Queue(maxsize=backlog)
        self.max_rows = max_rows
        self._queued_rows = 0
        self._rows_lock = threading.Lock()
        self.stats = stats or IngestStats()
        self.warn_interval = warn_interval
        self.min_interval = min_interval
        self._next_at = 0.0
        self._warned_at = float("-inf")
        self._thread = threading.Thread(target=self._run, name="batch-notifiers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, outcome: BatchOutcome) -> None:
        """Queue a committed batch's outcome; drop it if the hooks are that far behind.

        Called in ``on_commit`` before the batch's acks are queued: it must never wait.
        A dropped outcome is a live update the browsers miss; their per-farm sequence
        check sees the gap and refetches (docs/architecture.md §6). The data is committed either way.
        """
        rows = _rows(outcome)
        try:
            with self._rows_lock:
                if self._queued_rows and self._queued_rows + rows > self.max_rows:
                    raise queue.Full
                self._queue.put_nowait(outcome)
                self._queued_rows += rows
        except queue.Full:
            self.stats.hooks_dropped += 1
            now = time.monotonic()
            if now - self._warned_at >= self.warn_interval:
                self._warned_at = now
                logger.warning(
                    "the batch notifiers are behind; dropped a batch's live update (%d so far): browsers refetch",
                    self.stats.hooks_dropped,
                )

    def stop(self, timeout: float) -> None:
        """Let queued outcomes run, waiting at most ``timeout`` seconds for a stuck hook."""
        if not self._thread.is_alive():
            return
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        if self._thread.is_alive():
            logger.warning("the batch notifiers did not finish within %.0f s; exiting without them", timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping and (first := self._taken(self._queue.get())) is not None:
            batch = [first]
            stopping = self._gather(batch)
            try:
                run_batch_notifiers(BatchOutcome.merged(batch))  # never raises: each notifier is guarded
            finally:
                close_old_connections()  # notifiers that query get a healthy connection next time
            self._next_at = time.monotonic() + self.min_interval
            # Let go of the batches now, not when the next one arrives (a 10-metric batch is ~6 MB).
            batch, first = [], None
        connections.close_all()

    def _gather(self, batch: list[BatchOutcome]) -> bool:
        """Add the outcomes queued until ``min_interval`` has passed since the last run; True once told to stop."""
        while True:
            remaining = self._next_at - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                return False
            outcome = self._taken(item)
            if outcome is None:
                return True
            batch.append(outcome)

    def _taken(self, outcome: BatchOutcome | None) -> BatchOutcome | None:
        if outcome is not None:
            with self._rows_lock:
                self._queued_rows -= _rows(outcome)
        return outcome


def _rows(outcome: BatchOutcome) -> int:
    return sum(len(rows) for _, rows in outcome.groups)
