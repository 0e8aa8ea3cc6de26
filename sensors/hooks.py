"""The one seam between ingest and everything downstream of it (docs/architecture.md §1).

The ingest pipeline knows nothing about dashboards, channel layers or alert rules.
Downstream apps register for a batch in one of two lanes:

- **batch writers** run inside the batch's transaction, after its readings are written.
  What they write commits or rolls back with the readings, and a writer that raises fails
  the batch (the worker retries it, then isolates the poison message), so no message is
  acknowledged whose consequences were not written. Alert state, the rollups' dirty-hour
  log and outbox rows (``outbox.services.outbox_enqueue``) belong here. Writers must take the whole batch at
  once (no query per reading) and count only ``new_rows()``/``series()``: a redelivered
  reading is in the batch again but was not stored again.
- **after-commit notifiers** run after the commit, best effort: live pushes, nudges. A
  notifier may be skipped (a crash after the commit, a backlog), so only what a client
  can refetch travels this lane.

Every path that makes readings or device changes visible (ingest, the offline sweep, any
service) goes through ``batch_written`` or the ingest store's equivalent, so consumers
see one stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final, Protocol

from django.db import transaction

logger = logging.getLogger(__name__)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)

Row = tuple[int, str, float]
"""One stored reading: (time in integer µs since the Unix epoch, metric key, value)."""


class DeviceRef(Protocol):
    """Whose rows a ``ReadingGroup`` holds. Ingest passes its registry entries as they are."""

    @property
    def id(self) -> int: ...

    @property
    def farm_id(self) -> int: ...

    @property
    def sensors(self) -> Mapping[str, int]:
        """Sensor id by metric key; it has every key of the group's rows."""
        ...


@dataclass(frozen=True, slots=True)
class DeviceSensors:
    """A ``DeviceRef`` of its own, for outcomes built outside the ingest registry."""

    id: int
    farm_id: int
    sensors: Mapping[str, int]


ReadingGroup = tuple[DeviceRef, Sequence[Row]]
"""Rows of one device: one decoded message's, from ingest. Shared with ingest: never change them."""


@dataclass(frozen=True, slots=True)
class StoredReading:
    """One reading as an object: handy for tools and tests, too dear to build for a whole batch."""

    farm_id: int
    device_id: int
    sensor_id: int
    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """A device's state after the batch: status, last seen and link health."""

    farm_id: int
    device_id: int
    status: str
    last_seen: datetime | None
    battery: float | None = None
    rssi: float | None = None
    snr: float | None = None


@dataclass(frozen=True, slots=True)
class SensorSeries:
    """One sensor's new readings of a batch, in device-time order: what a batch writer evaluates."""

    farm_id: int
    device_id: int
    sensor_id: int
    key: str
    ts: list[int]  # µs since the Unix epoch, ascending
    values: list[float]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch stored: its readings, and its devices' new state.

    A batch holds up to tens of thousands of readings, so they stay in the shape ingest
    decoded them, one ``ReadingGroup`` per message in batch order, with no object or
    datetime per reading: building those cost more than the whole live fan-out did.
    ``rows()`` is every reading of the batch, a redelivered one too (the table kept its
    first copy): right for a live push, which only shows values. ``new_rows()`` and
    ``series()`` are the readings this batch actually inserted: what a batch writer
    counts, so a redelivered message never counts twice. ``redelivered`` is None when
    every row was new (the fast COPY path), else the (sensor id, ts µs) keys that were
    already stored. ``at`` is when the batch was written.
    """

    groups: Sequence[ReadingGroup] = ()
    devices: Sequence[DeviceChange] = ()
    redelivered: frozenset[tuple[int, int]] | None = None
    at: datetime | None = None
    # What writers leave for the notifiers (``note``): it travels with the outcome, so it is
    # seen only if the batch commits, and merges with it when the notifier lane coalesces.
    notes: dict[str, list[Any]] = field(default_factory=dict, compare=False, repr=False)
    _series: dict[int, SensorSeries] = field(default_factory=dict, init=False, compare=False, repr=False)

    def note(self, kind: str, items: Iterable[Any]) -> None:
        """Inside a batch writer: leave ``items`` for this batch's after-commit notifiers."""
        self.notes.setdefault(kind, []).extend(items)

    @classmethod
    def of_readings(cls, readings: Iterable[StoredReading], devices: Sequence[DeviceChange] = ()) -> BatchOutcome:
        """An outcome from reading objects (tests, tools): one group per reading."""
        groups: list[ReadingGroup] = []
        for r in readings:
            key = f"sensor_{r.sensor_id}"
            device = DeviceSensors(r.device_id, r.farm_id, {key: r.sensor_id})
            groups.append((device, [((r.ts - _EPOCH) // _ONE_US, key, r.value)]))
        return cls(groups=groups, devices=devices)

    @classmethod
    def merged(cls, outcomes: Sequence[BatchOutcome]) -> BatchOutcome:
        """Several committed batches as one, in commit order (the notifier lane coalesces them)."""
        if len(outcomes) == 1:
            return outcomes[0]
        redelivered = [o.redelivered for o in outcomes if o.redelivered is not None]
        notes: dict[str, list[Any]] = {}
        for o in outcomes:
            for kind, items in o.notes.items():
                notes.setdefault(kind, []).extend(items)
        return cls(
            groups=[g for o in outcomes for g in o.groups],
            devices=[d for o in outcomes for d in o.devices],
            redelivered=frozenset().union(*redelivered) if redelivered else None,
            at=outcomes[-1].at,
            notes=notes,
        )

    def rows(self) -> Iterator[tuple[int, int, int, int, float]]:
        """Every reading as ``(farm_id, device_id, sensor_id, ts_us, value)``, in batch order."""
        for device, rows in self.groups:
            farm_id, device_id, sensors = device.farm_id, device.id, device.sensors
            for ts, key, value in rows:
                yield farm_id, device_id, sensors[key], ts, value

    def new_rows(self) -> Iterator[tuple[int, int, int, int, float]]:
        """The readings this batch inserted, in batch order (the first of a repeated key: what ON CONFLICT kept)."""
        if self.redelivered is None:
            yield from self.rows()
            return
        skip = set(self.redelivered)
        for row in self.rows():
            key = (row[2], row[3])
            if key not in skip:
                skip.add(key)
                yield row

    def series(self) -> dict[int, SensorSeries]:
        """The new readings by sensor id, each in device-time order (built once: every writer reads it)."""
        if not self._series and self.groups:
            self._series.update(self._build_series())
        return self._series

    def _build_series(self) -> dict[int, SensorSeries]:
        points: dict[int, list[tuple[int, float]]] = {}
        owners: dict[int, tuple[int, int]] = {}
        for farm_id, device_id, sensor_id, ts, value in self.new_rows():
            bucket = points.get(sensor_id)
            if bucket is None:
                bucket = points[sensor_id] = []
                owners[sensor_id] = (farm_id, device_id)
            bucket.append((ts, value))
        keys = {sensor_id: key for device, _ in self.groups for key, sensor_id in device.sensors.items()}
        out: dict[int, SensorSeries] = {}
        for sensor_id, bucket in points.items():
            bucket.sort(key=_first)
            farm_id, device_id = owners[sensor_id]
            times, values = [p[0] for p in bucket], [p[1] for p in bucket]
            out[sensor_id] = SensorSeries(farm_id, device_id, sensor_id, keys.get(sensor_id, ""), times, values)
        return out

    def stored_readings(self) -> Iterator[StoredReading]:
        """Every reading as a ``StoredReading``: an object and a datetime each, not for a hot path."""
        for farm_id, device_id, sensor_id, ts, value in self.rows():
            yield StoredReading(farm_id, device_id, sensor_id, _EPOCH + ts * _ONE_US, value)

    def farm_ids(self) -> set[int]:
        return {device.farm_id for device, _ in self.groups} | {d.farm_id for d in self.devices}


def _first(point: tuple[int, float]) -> int:
    return point[0]


BatchConsumer = Callable[[BatchOutcome], None]
_writers: list[BatchConsumer] = []
_notifiers: list[BatchConsumer] = []


def register_batch_writer(writer: BatchConsumer) -> None:
    """Run ``writer`` inside every batch's transaction (durable lane); it may raise to fail the batch."""
    if writer not in _writers:
        _writers.append(writer)


def batch_writers() -> tuple[BatchConsumer, ...]:
    """The batch writers registered now, in the order they run."""
    return tuple(_writers)


def unregister_batch_writer(writer: BatchConsumer) -> None:
    if writer in _writers:
        _writers.remove(writer)


def register_batch_notifier(notifier: BatchConsumer) -> None:
    """Run ``notifier`` after every batch commits (best-effort lane)."""
    if notifier not in _notifiers:
        _notifiers.append(notifier)


def unregister_batch_notifier(notifier: BatchConsumer) -> None:
    if notifier in _notifiers:
        _notifiers.remove(notifier)


def run_batch_writers(outcome: BatchOutcome) -> None:
    """Call every writer in the caller's transaction; the first exception propagates and fails the batch."""
    for writer in list(_writers):
        writer(outcome)


def run_batch_notifiers(outcome: BatchOutcome) -> None:
    """Call every notifier; one failing never stops the others. Call only after the commit."""
    for notifier in list(_notifiers):
        try:
            notifier(outcome)
        except Exception:
            logger.exception("batch notifier %s failed", getattr(notifier, "__qualname__", notifier))


def batch_written(outcome: BatchOutcome) -> None:
    """Both lanes for a batch written outside ingest: writers now, notifiers once the transaction commits.

    Call inside the transaction that wrote the batch (the offline sweep, services).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("batch_written must be called inside the transaction that wrote the batch")
    run_batch_writers(outcome)
    transaction.on_commit(partial(run_batch_notifiers, outcome))
