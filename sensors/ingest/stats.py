"""Ingest counters: a one-line log summary every few seconds, and the same figures in Redis.

Each worker writes its figures under ``ingest:stats:<client id>`` in the Django cache
(with an expiry, so a dead worker's entry disappears) and lists itself in
``ingest:workers``. ``ingest_health()`` reads them back for ``/healthz``: a worker that
stopped reporting, or whose oldest uncommitted message is too old, is not healthy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger("sensors.ingest")

WORKERS_KEY: Final = "ingest:workers"
STATS_KEY: Final = "ingest:stats:{}"
LAG_LIMIT_SECONDS: Final = 60.0
STALE_INTERVALS: Final = 3  # missed reports before a worker counts as gone


@dataclass(frozen=True, slots=True)
class BrokerDrops:
    """What the broker's own dropped-messages counter says (``sensors.ingest.brokerwatch``).

    Replaced whole by the watcher's thread, so a report never mixes two observations.
    """

    watching: bool = False  # INGEST_BROKER_WATCH on and the watcher started
    broker: str = ""  # $SYS/broker/version, where the broker publishes it
    dropped: int | None = None  # the counter's latest value; None: not (yet) seen
    at_start: int | None = None  # the value rises are counted from: first seen, or recorded by the previous run
    since_start: int = 0  # messages the broker dropped since the worker started (also while it was down)
    last_rise: int = 0
    last_rise_at: float | None = None  # wall time of the latest rise, this run's or a previous run's
    detail: str = ""  # why the counter is unknown, while it is


@dataclass(slots=True)
class IngestStats:
    """Running totals since the worker started; written by the worker's two threads."""

    received: int = 0  # messages handed over by the MQTT client (network thread)
    messages: int = 0  # messages whose outcome committed
    readings: int = 0  # readings accepted (a redelivered one counts again)
    stored: int = 0  # reading rows inserted
    statuses: int = 0
    dead_letters: int = 0
    unknown: int = 0
    new_sensors: int = 0
    batches: int = 0
    last_batch_size: int = 0
    last_flush_ms: float = 0.0
    db_errors: int = 0
    internal_errors: int = 0
    connects: int = 0
    acks_skipped: int = 0  # acks for messages of a previous connection (the broker redelivers them)
    db_conflicts: int = 0  # deadlocks / serialization failures with another writer, retried at once
    hooks_dropped: int = 0  # committed batches whose live update was dropped: the hooks were behind
    connected: bool = False
    database_ok: bool = True
    broker: BrokerDrops = field(default_factory=BrokerDrops)
    started_at: float = field(default_factory=time.time)

    def add_batch(
        self,
        *,
        messages: int,
        readings: int,
        stored: int,
        statuses: int,
        dead_letters: int,
        unknown: int,
        new_sensors: int,
        flush_ms: float,
    ) -> None:
        self.messages += messages
        self.readings += readings
        self.stored += stored
        self.statuses += statuses
        self.dead_letters += dead_letters
        self.unknown += unknown
        self.new_sensors += new_sensors
        self.batches += 1
        self.last_batch_size = messages
        self.last_flush_ms = flush_ms


class StatsReporter:
    """Log a summary line and publish the figures every ``interval`` seconds."""

    def __init__(self, *, client_id: str, interval: float, stats: IngestStats) -> None:
        self.client_id = client_id
        self.interval = interval
        self.stats = stats
        self._last_at = time.monotonic()
        self._last: dict[str, Any] = asdict(stats)
        self._cache_failed_at = float("-inf")

    def due(self, now: float) -> bool:
        return now - self._last_at >= self.interval

    def report(self, *, now: float, pending: int, lag_s: float) -> dict[str, Any]:
        figures = self.figures(now=now, pending=pending, lag_s=lag_s)
        logger.info(
            "ingest %s: received %d (%.0f/s), stored %d readings (%.0f/s), dead letters %d, unknown %d, "
            "batch %d in %.0f ms, lag %.1f s, pending %d%s",
            self.client_id,
            figures["received"],
            figures["received_per_s"],
            figures["stored"],
            figures["readings_per_s"],
            figures["dead_letters"],
            figures["unknown"],
            figures["last_batch_size"],
            figures["last_flush_ms"],
            lag_s,
            pending,
            ("" if figures["connected"] else ", NOT CONNECTED to the broker")
            + ("" if figures["database_ok"] else ", PostgreSQL UNAVAILABLE"),
        )
        self._publish(figures)
        return figures

    def figures(self, *, now: float, pending: int, lag_s: float) -> dict[str, Any]:
        current = asdict(self.stats)
        elapsed = max(now - self._last_at, 1e-6)
        figures: dict[str, Any] = {
            **current,
            "client_id": self.client_id,
            "updated_at": time.time(),
            "interval": self.interval,
            "pending": pending,
            "lag_s": round(lag_s, 3),
            "received_per_s": (current["received"] - self._last["received"]) / elapsed,
            "readings_per_s": (current["readings"] - self._last["readings"]) / elapsed,
        }
        self._last, self._last_at = current, now
        return figures

    def retire(self) -> None:
        """Remove this worker's figures after a clean shutdown (it is stopped, not stalled)."""
        try:
            cache.delete(STATS_KEY.format(self.client_id))
            workers = cache.get(WORKERS_KEY) or {}
            workers.pop(self.client_id, None)
            cache.set(WORKERS_KEY, workers, timeout=None)
        except Exception:
            logger.warning("could not remove ingest figures from the cache", exc_info=True)

    def _publish(self, figures: dict[str, Any]) -> None:
        ttl = max(int(self.interval * STALE_INTERVALS * 4), 60)
        try:
            cache.set(STATS_KEY.format(self.client_id), figures, timeout=ttl)
            workers = cache.get(WORKERS_KEY) or {}
            workers = {cid: at for cid, at in workers.items() if at > figures["updated_at"] - ttl}
            workers[self.client_id] = figures["updated_at"]
            cache.set(WORKERS_KEY, workers, timeout=None)
        except Exception:
            # Redis being down must not stop ingest; say so at most once a minute.
            if time.monotonic() - self._cache_failed_at > 60:
                self._cache_failed_at = time.monotonic()
                logger.warning("could not write ingest figures to the cache", exc_info=True)


def ingest_health(*, now: float | None = None) -> dict[str, Any]:
    """The ingest workers' latest figures and whether ingest looks healthy.

    ``ok`` is True when at least one worker reported recently and no recent worker is
    disconnected from the broker or lagging more than ``LAG_LIMIT_SECONDS``.
    """
    now = time.time() if now is None else now
    try:
        registered = cache.get(WORKERS_KEY) or {}
        found = cache.get_many([STATS_KEY.format(cid) for cid in registered])
    except Exception as exc:
        return {"ok": False, "status": "unknown", "detail": f"cache unavailable: {exc}", "workers": {}}
    workers: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for figures in found.values():
        age = now - figures["updated_at"]
        stale = age > figures.get("interval", settings.INGEST_STATS_INTERVAL) * STALE_INTERVALS + 1
        workers[figures["client_id"]] = {**figures, "age_s": round(age, 1), "stale": stale}
        problems += _problems(figures["client_id"], figures, stale)
    if not workers:
        problems.append("no ingest worker has reported")
    fresh = [w for w in workers.values() if not w["stale"]]
    status = "ok" if fresh and not problems else ("down" if not fresh else "degraded")
    return {"ok": status == "ok", "status": status, "problems": problems, "workers": workers}


def _problems(client_id: str, figures: dict[str, Any], stale: bool) -> list[str]:
    if stale:
        return [f"{client_id}: no report for {figures.get('interval', 0) * STALE_INTERVALS:.0f} s"]
    found = []
    if not figures.get("connected"):
        found.append(f"{client_id}: not connected to the broker")
    if not figures.get("database_ok", True):
        found.append(f"{client_id}: PostgreSQL unavailable, not storing")
    if figures.get("lag_s", 0) > LAG_LIMIT_SECONDS:
        found.append(f"{client_id}: oldest uncommitted message is {figures['lag_s']:.0f} s old")
    return found
