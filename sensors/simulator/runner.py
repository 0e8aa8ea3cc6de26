"""Run a simulation: device schedules for the live demo, or a steady (or flat-out) rate for load tests.

Two modes share one message pipeline (sample → shape → maybe corrupt →
publish):

* **schedule** (``rate=None``): each device reports every ``interval`` seconds
  — by default its registered interval divided by ``speedup`` — drops off now
  and then (an ``offline`` status) and comes back with a JSON array of the
  readings it buffered.
* **rate** (``rate`` msgs/s, ``math.inf`` for flat out): devices take turns,
  timestamps are now, and there are no dropouts, so every published message
  is one well-defined set of readings.

Timestamps are the wall clock: a reading is what the sensor measures now.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sensors.simulator.devices import Shape, SimDevice
from sensors.simulator.malformed import HUGE_PAYLOAD_BYTES, MALFORMED_KINDS, applies_to, malformed_message
from sensors.simulator.mqtt import Publisher
from sensors.simulator.noise import uniform
from sensors.simulator.payloads import (
    Message,
    Sample,
    native_telemetry,
    status_message,
    telemetry_message,
    ts_datetime,
)
from sensors.simulator.physics import sample

logger = logging.getLogger(__name__)

MAX_ARRAY = 100  # readings per buffered-array message: a buffer flush stays far below the payload limit
_MIN_PERIOD, _MAX_PERIOD = 2.0, 120.0


@dataclass(frozen=True)
class Excursion:
    """``key`` of device ``uid`` reads ``value`` for the first ``lasting`` seconds of every ``every`` (wall clock).

    Live reports only (schedule and rate mode), never the backfill: the demo's way to make an
    alert fire and resolve during a session of a few minutes (``simulate --excursion``; the
    ``make run`` Procfile draws the irrigation tank down for a minute every five).
    """

    uid: str
    key: str
    value: float
    every: float
    lasting: float

    def active(self, t: float) -> bool:
        return t % self.every < self.lasting


@dataclass(frozen=True)
class SimConfig:
    url: str
    devices: Sequence[SimDevice]
    rate: float | None = None  # msgs/s; math.inf = as fast as the broker acks; None = device schedules
    interval: float | None = None  # schedule mode: seconds between one device's messages
    speedup: float = 90.0  # schedule mode without interval: registered interval / speedup
    duration: float | None = None
    max_messages: int | None = None
    qos: int = 1
    malformed: float = 0.0  # share of messages replaced by a malformed one
    faults: tuple[str, ...] = MALFORMED_KINDS  # which malformations, taken in turn
    clients: int = 1
    window: int = 1_000  # unacked messages per client
    seed: int = 0
    dropout: float = 0.1  # schedule mode: chance a device drops off in a stretch of 40 periods
    backfill_hours: float = 0.0  # schedule mode: publish this much history first
    track: bool = False  # keep every acked message for ``acked_readings``
    ca_file: str = ""
    huge_bytes: int = HUGE_PAYLOAD_BYTES
    drain_timeout: float = 30.0
    report_every: float = 0.0  # log a progress line every so many seconds (0: never)
    excursions: tuple[Excursion, ...] = ()  # live values that provoke an alert now and then (the demo)
    stop: threading.Event | None = None


@dataclass
class Summary:
    qos: int
    elapsed: float = 0.0
    published: Counter[str] = field(default_factory=Counter)  # by shape
    acked: Counter[str] = field(default_factory=Counter)  # by shape: PUBACKs at QoS 1, socket writes at QoS 0
    malformed: Counter[str] = field(default_factory=Counter)  # by fault
    refused: int = 0
    rejected: int = 0
    lost: int = 0
    unacked: int = 0
    peak_inflight: int = 0  # per client
    acked_ts: dict[tuple[str, tuple[str, ...]], list[int]] = field(default_factory=dict)
    acked_readings: Counter[str] = field(default_factory=Counter)  # "history" / "live"

    @property
    def total_published(self) -> int:
        return sum(self.published.values())

    @property
    def total_acked(self) -> int:
        return sum(self.acked.values())

    def lines(self) -> list[str]:
        rate = self.total_acked / self.elapsed if self.elapsed else 0.0
        acked = "acked (PUBACK)" if self.qos else "written (QoS 0: no acks)"
        out = [
            f"published {self.total_published}, {acked} {self.total_acked} in {self.elapsed:.1f} s ({rate:,.0f} msg/s)",
            f"unacked {self.unacked}, refused {self.refused}, rejected {self.rejected}, lost {self.lost}; "
            f"peak in flight per client {self.peak_inflight}",
            "by shape (published/acked): "
            + ", ".join(f"{shape} {n}/{self.acked[shape]}" for shape, n in sorted(self.published.items())),
        ]
        if self.acked_readings:
            history, live = self.acked_readings["history"], self.acked_readings["live"]
            out.append(f"readings in acknowledged messages {history + live} ({history} history, {live} live)")
        if self.malformed:
            out.append("malformed: " + ", ".join(f"{kind} {n}" for kind, n in sorted(self.malformed.items())))
        return out


def acked_readings(summary: Summary) -> set[tuple[str, str, datetime]]:
    """Every (uid, metric, ts) in a message the broker acknowledged (needs ``SimConfig(track=True)``).

    What an exactly-once check compares the readings table with. Excluded:
    malformed messages (apart from the good elements of a partly bad array)
    and status messages.
    """
    return {
        (uid, key, ts_datetime(ts_us))
        for (uid, keys), stamps in summary.acked_ts.items()
        for ts_us in stamps
        for key in keys
    }


@dataclass(slots=True)
class _State:
    device: SimDevice
    lane: int
    period: float
    last_ts_us: int = 0
    fcnt: int = 0
    offline: bool = False
    buffer: list[Sample] = field(default_factory=list)
    cache_second: int = -1
    cache_values: dict[str, float] = field(default_factory=dict)


def is_dropped(device: SimDevice, t: float, period: float, share: float, seed: int = 0) -> bool:
    """Whether the device is off the air at t: in a share of 40-period stretches, for 4–12 periods."""
    if share <= 0:
        return False
    stretch = 40.0 * period
    slot = math.floor(t / stretch)
    if uniform(device.seed, seed, 77, slot) >= share:
        return False
    start = slot * stretch + uniform(device.seed, seed, 78, slot) * 20.0 * period
    return start <= t < start + (4.0 + 8.0 * uniform(device.seed, seed, 79, slot)) * period


def _ts_step(device: SimDevice) -> int:
    """Timestamp resolution in µs: whole seconds or milliseconds for native styles, µs for LoRaWAN."""
    if device.shape is not Shape.NATIVE:
        return 1
    return 1_000_000 if device.ts_style == "s" else 1_000


def _period(device: SimDevice, config: SimConfig) -> float:
    if config.interval:
        return config.interval
    return min(_MAX_PERIOD, max(_MIN_PERIOD, device.interval / config.speedup))


def _wills(states: Sequence[_State], clients: int) -> list[Message | None]:
    """One Last Will per connection: ``offline`` for the first native device on that client."""
    wills: list[Message | None] = [None] * clients
    for state in states:
        if state.device.shape is Shape.NATIVE and wills[state.lane] is None:
            wills[state.lane] = status_message(state.device.uid, online=False)
    return wills


class _Run:
    def __init__(self, config: SimConfig, publisher: Publisher, states: list[_State]) -> None:
        self.config = config
        self.publisher = publisher
        self.states = states
        self.stop = config.stop or threading.Event()
        self.sent = 0
        self.serial = 0
        self.next_fault: Counter[Shape] = Counter()
        self.faults_by_shape: dict[Shape, list[str]] = {}
        self.started = time.monotonic()
        self.deadline = self.started + config.duration if config.duration else math.inf
        self.last_report = self.started

    # --- messages --------------------------------------------------------------------

    def done(self) -> bool:
        limit = self.config.max_messages
        return self.stop.is_set() or time.monotonic() >= self.deadline or (limit is not None and self.sent >= limit)

    def emit(self, state: _State, message: Message) -> None:
        self.publisher.publish(message, state.lane, self.stop)
        self.sent += 1
        self._maybe_report()

    def next_ts(self, state: _State, now: float) -> int:
        step = _ts_step(state.device)
        ts = max(int(now * 1_000_000) // step * step, state.last_ts_us + step)
        state.last_ts_us = ts
        return ts

    def values(self, state: _State, ts_us: int, since: float, cached: bool) -> dict[str, float]:
        """The device's reading; at load-test rates sampled once per device per second (same noise bucket)."""
        second = ts_us // 1_000_000
        if cached and state.cache_second == second:
            return state.cache_values
        device = state.device
        values = sample(device.physics, device.keys, ts_us / 1e6, since=since, ranges=device.ranges)
        for excursion in self.config.excursions:
            if excursion.uid == device.uid and excursion.key in values and excursion.active(ts_us / 1e6):
                values[excursion.key] = excursion.value
        state.cache_second, state.cache_values = second, values
        return values

    def reading(self, state: _State, now: float, *, cached: bool = False) -> Message:
        previous = state.last_ts_us / 1e6 if state.last_ts_us else now - state.device.interval
        ts_us = self.next_ts(state, now)
        values = self.values(state, ts_us, previous, cached)
        state.fcnt += 1
        self.serial += 1
        if self.config.malformed and uniform(self.config.seed, 99, self.serial) < self.config.malformed:
            return self.corrupt(state, ts_us, values)
        return telemetry_message(state.device, ts_us, values, state.fcnt)

    def corrupt(self, state: _State, ts_us: int, values: dict[str, float]) -> Message:
        """The next fault in turn among those that fit this device's shape, so every kind shows up."""
        shape = state.device.shape
        faults = self.faults_by_shape.get(shape)
        if faults is None:
            faults = self.faults_by_shape[shape] = [k for k in self.config.faults if applies_to(k, state.device)]
        if not faults:
            return telemetry_message(state.device, ts_us, values, state.fcnt)
        kind = faults[self.next_fault[shape] % len(faults)]
        self.next_fault[shape] += 1
        return malformed_message(kind, state.device, ts_us, values, self.serial, huge_bytes=self.config.huge_bytes)

    def _maybe_report(self) -> None:
        every = self.config.report_every
        now = time.monotonic()
        if every and now - self.last_report >= every:
            self.last_report = now
            acked = sum(sum(t.acked.values()) for t in self.publisher.tallies())
            logger.info(
                "simulator: published %d, acked %d, in flight %d, %.0f msg/s",
                self.sent,
                acked,
                self.publisher.unacked(),
                self.sent / (now - self.started),
            )

    # --- rate mode --------------------------------------------------------------------

    def run_rate(self, rate: float) -> None:
        flat_out = math.isinf(rate)
        index = 0
        while not self.done():
            if not flat_out:
                lag = self.sent / rate - (time.monotonic() - self.started)
                if lag > 0:
                    self.publisher.idle(min(lag, 0.01), self.stop)
                    continue
            state = self.states[index % len(self.states)]
            index += 1
            self.emit(state, self.reading(state, time.time(), cached=True))

    # --- schedule mode ------------------------------------------------------------------

    def run_schedule(self) -> None:
        now = time.time()
        for state in self.states:
            if state.device.shape is Shape.NATIVE and not self._dropped(state, now) and not self.done():
                self.emit(state, status_message(state.device.uid, online=True))
        if self.config.backfill_hours > 0:
            self.backfill(now)
        queue = [(now + uniform(self.config.seed, 5, i) * s.period, i) for i, s in enumerate(self.states)]
        heapq.heapify(queue)
        while queue and not self.done():
            due, index = queue[0]
            wait = min(due - time.time(), self.deadline - time.monotonic())
            if wait > 0:
                self.publisher.idle(wait, self.stop)
                continue
            heapq.heappop(queue)
            state = self.states[index]
            self.tick(state, time.time())
            jitter = 1.0 + 0.1 * (uniform(self.config.seed, 6, index, self.sent) - 0.5)
            heapq.heappush(queue, (due + state.period * jitter, index))

    def _dropped(self, state: _State, now: float) -> bool:
        return is_dropped(state.device, now, state.period, self.config.dropout, self.config.seed)

    def tick(self, state: _State, now: float) -> None:
        """One report: normal, dropping off, buffering while away, or coming back with the buffer."""
        native = state.device.shape is Shape.NATIVE
        if self._dropped(state, now):
            if not state.offline and native:
                self.emit(state, status_message(state.device.uid, online=False))
            state.offline = True
            if native:
                previous = state.last_ts_us / 1e6 if state.last_ts_us else now - state.period
                ts_us = self.next_ts(state, now)
                state.buffer.append((ts_us, self.values(state, ts_us, previous, cached=False)))
            return
        if state.offline:
            state.offline = False
            if native:
                self.emit(state, status_message(state.device.uid, online=True))
                self.flush_buffer(state)
        self.emit(state, self.reading(state, now))

    def flush_buffer(self, state: _State) -> None:
        for start in range(0, len(state.buffer), MAX_ARRAY):
            # An array even for one buffered reading (a late tick on a busy machine): a buffer is a buffer.
            self.emit(state, native_telemetry(state.device, state.buffer[start : start + MAX_ARRAY], as_array=True))
        state.buffer.clear()

    def backfill(self, now: float) -> None:
        """History on the device's own interval grid, so a restarted demo republishes the same timestamps."""
        for state in self.states:
            device = state.device
            count = int(self.config.backfill_hours * 3600 / device.interval)
            last = math.floor(now / device.interval) * device.interval
            times = [last - k * device.interval for k in range(count - 1, -1, -1)]
            chunk = MAX_ARRAY if device.shape is Shape.NATIVE else 1  # a network server has no arrays
            for start in range(0, len(times), chunk):
                if self.done():
                    return
                self.publish_history(state, times[start : start + chunk])

    def publish_history(self, state: _State, times: Sequence[int]) -> None:
        device = state.device
        samples: list[Sample] = [
            (
                int(t) * 1_000_000,
                sample(device.physics, device.keys, t, since=t - device.interval, ranges=device.ranges),
            )
            for t in times
        ]
        state.last_ts_us = samples[-1][0]
        if device.shape is Shape.NATIVE:
            self.emit(state, replace(native_telemetry(device, samples), history=True))
            return
        state.fcnt += 1
        self.emit(state, replace(telemetry_message(device, samples[0][0], samples[0][1], state.fcnt), history=True))


def _states(config: SimConfig) -> list[_State]:
    states = []
    for i, device in enumerate(config.devices):
        period = _period(device, config)
        if device.ts_style == "s" and (config.rate is not None or period < 1.0):
            # Several readings a second from one device need millisecond timestamps to stay distinct.
            device = replace(device, ts_style="ms")
        states.append(_State(device=device, lane=i % config.clients, period=period))
    return states


def _summarise(config: SimConfig, publisher: Publisher, elapsed: float) -> Summary:
    summary = Summary(qos=config.qos, elapsed=elapsed, unacked=publisher.unacked())
    for tally in publisher.tallies():
        summary.published.update(tally.published)
        summary.acked.update(tally.acked)
        summary.malformed.update(tally.malformed)
        summary.refused += tally.refused
        summary.rejected += tally.rejected
        summary.lost += tally.lost
        summary.peak_inflight = max(summary.peak_inflight, tally.peak_inflight)
        summary.acked_readings.update(tally.acked_readings)
        for key, stamps in tally.acked_ts.items():
            summary.acked_ts.setdefault(key, []).extend(stamps)
    return summary


def run_simulation(config: SimConfig) -> Summary:
    """Connect, publish until the duration, message count or stop event ends it, wait for acks, disconnect."""
    if not config.devices:
        raise ValueError("no devices to simulate")
    if config.clients < 1:
        raise ValueError("clients must be at least 1")
    unknown = set(config.faults) - set(MALFORMED_KINDS)
    if unknown or not config.faults:
        raise ValueError(f"faults must be among {', '.join(MALFORMED_KINDS)}; unknown: {', '.join(sorted(unknown))}")
    states = _states(config)
    publisher = Publisher(
        config.url,
        clients=config.clients,
        qos=config.qos,
        window=config.window,
        wills=_wills(states, config.clients),
        track=config.track,
        ca_file=config.ca_file,
    )
    publisher.connect()
    run = _Run(config, publisher, states)
    try:
        if config.rate is None:
            run.run_schedule()
        else:
            run.run_rate(config.rate)
        publisher.drain(config.drain_timeout)
    finally:
        elapsed = time.monotonic() - run.started
        publisher.close()
    return _summarise(config, publisher, elapsed)


def devices_summary(devices: Iterable[SimDevice]) -> str:
    shapes = Counter(device.shape.value for device in devices)
    return ", ".join(f"{n} {shape}" for shape, n in sorted(shapes.items()))
