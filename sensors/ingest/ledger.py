"""Messages received but not yet acknowledged: pending, in flight (being stored), acks to send.

Shared by the worker's two threads with one writer per field: the network thread appends
to ``pending``, counts bytes in and sends acks; the flush thread takes batches, and the
flush thread (or the store process's report thread) completes them. ``deque.append`` and
``popleft`` are atomic; the in-flight map has a lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from operator import attrgetter
from typing import Any, NamedTuple


class InHand(NamedTuple):
    """One message in hand: what it is (decoded, or raw for the store process) and what its ack needs."""

    item: Any
    mid: int  # the packet id to acknowledge; 0 for QoS 0 (nothing to ack)
    generation: int  # the connection that delivered it: an ack is only valid on that one
    received_us: int  # µs since the Unix epoch
    size: int  # payload bytes


class Batch(NamedTuple):
    id: int
    messages: list[InHand]


class InFlight(NamedTuple):
    """What a batch's completion needs, summed up once when it is taken; no message or payload is kept."""

    messages: int
    size: int  # payload bytes
    oldest_received_us: int
    acks: list[tuple[int, list[int]]]  # (connection generation, packet ids), nearly always one

    @classmethod
    def of(cls, messages: list[InHand]) -> InFlight:
        # Per message only C-level map/filter: this runs on the worker's busy process for
        # every message it receives (a NamedTuple _replace per message cost ~3 ms a batch).
        generations = set(map(_generation, messages))
        if len(generations) == 1:
            mids = list(filter(None, map(_mid, messages)))  # 0: QoS 0, nothing to acknowledge
            acks = [(generations.pop(), mids)] if mids else []
        else:  # a reconnect in the middle of the batch: acks only count on their own connection
            by_generation: dict[int, list[int]] = {}
            for m in messages:
                if m.mid:
                    by_generation.setdefault(m.generation, []).append(m.mid)
            acks = list(by_generation.items())
        return cls(len(messages), sum(map(_size, messages)), messages[0].received_us, acks)


_item = attrgetter("item")
_generation = attrgetter("generation")
_mid = attrgetter("mid")
_size = attrgetter("size")


class Ledger:
    def __init__(self) -> None:
        self.pending: deque[InHand] = deque()
        self.arrived = threading.Event()  # a batch is full, or the broker's stream went quiet
        self.quiet = False  # the network thread read everything the socket had (adaptive batching)
        self.acks: deque[tuple[int, list[int]]] = deque()
        self.acks_ready = threading.Event()
        # Payload bytes received and released, each written by one thread only (no lock):
        # received-but-uncommitted bytes are the difference.
        self.bytes_in = 0
        self.bytes_out = 0
        self._inflight: dict[int, InFlight] = {}  # by batch id, oldest first
        self._inflight_count = 0
        self._lock = threading.Lock()
        self._batch_ids = 0

    def in_hand(self) -> int:
        """Messages received and not yet committed (pending and in flight)."""
        return len(self.pending) + self._inflight_count

    def has_inflight(self) -> bool:
        return bool(self._inflight)

    def bytes_held(self) -> int:
        return self.bytes_in - self.bytes_out

    def mark_quiet(self) -> None:
        """The network thread has nothing more to read right now: take what is in hand."""
        if self.pending:
            self.quiet = True
            self.arrived.set()

    def take(self, size: int) -> Batch | None:
        """Up to ``size`` pending messages as a batch, registered as in flight."""
        pending = self.pending
        if not pending:
            return None
        self.quiet = False
        popleft = pending.popleft
        messages = [popleft() for _ in range(min(size, len(pending)))]
        flight = InFlight.of(messages)
        with self._lock:
            self._batch_ids += 1
            self._inflight[self._batch_ids] = flight
            self._inflight_count += flight.messages
        return Batch(self._batch_ids, messages)

    @staticmethod
    def hand_over(batch: Batch) -> list[Any]:
        """The batch's items for the store process (the ledger holds none of them)."""
        return list(map(_item, batch.messages))

    def complete(self, batch_id: int, *, committed: bool) -> int:
        """A batch is done: queue its acks if it committed (before it leaves the ledger); its message count."""
        with self._lock:
            flight = self._inflight[batch_id]
        if committed:
            self.acks.extend(flight.acks)
            self.acks_ready.set()
        with self._lock:
            del self._inflight[batch_id]
            self._inflight_count -= flight.messages
        self.bytes_out += flight.size
        return flight.messages

    def oldest_received_us(self) -> int | None:
        with self._lock:
            if self._inflight:
                return next(iter(self._inflight.values())).oldest_received_us
        try:
            return self.pending[0].received_us
        except IndexError:  # the flush thread took it meanwhile
            return None

    def lag(self) -> float:
        """Age in seconds of the oldest message received but not yet committed."""
        oldest = self.oldest_received_us()
        return 0.0 if oldest is None else max(time.time() - oldest / 1e6, 0.0)
