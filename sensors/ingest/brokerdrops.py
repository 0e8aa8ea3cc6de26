"""What the broker's dropped-messages counter means for /healthz and the admin (the read side).

``sensors.ingest.brokerwatch`` keeps each worker's ``BrokerDrops`` figures up to date; they
travel with the worker's other figures (``sensors.ingest.stats``). Mosquitto drops QoS 1
messages beyond a client's ``max_queued_messages`` / ``max_queued_bytes`` queue while still
acknowledging the publisher (docs/architecture.md §6), so a rise of its counter means
readings were lost and only the broker's configuration can stop it.

A worker's verdict is one of:

- ``dropping`` (failing): the counter rose since the worker started — also while it was
  down, measured against the value its previous run recorded — or less than
  ``DROP_WINDOW_SECONDS`` ago, so that restarting the worker does not hide a fresh loss;
- ``dropped_before_start``: non-zero when first seen, with no rise since: shown, not failing
  (nobody can say when those were dropped);
- ``ok``; ``unknown`` (a broker without the counter, e.g. amqtt, or ``$SYS`` denied by its
  ACL); ``off`` (``INGEST_BROKER_WATCH`` is off). Neither fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sensors.ingest.stats import ingest_health

DROPPED_TOPIC: Final = "$SYS/broker/publish/messages/dropped"
DROP_WINDOW_SECONDS: Final = 3600.0
RAISE_HINT: Final = (
    "raise max_queued_messages (and max_queued_bytes, if it is set) in the broker's configuration "
    "(docker/mosquitto.conf ships 1,000,000 and 0)"
)
ORDER: Final = ("off", "unknown", "ok", "dropped_before_start", "dropping")  # least to most serious


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str
    message: str

    @property
    def failing(self) -> bool:
        return self.status == "dropping"


def drops_verdict(figures: dict[str, Any], *, now: float) -> Verdict:
    """One worker's ``BrokerDrops`` figures (as a dict, the way the cache holds them) judged."""
    if not figures.get("watching"):
        return Verdict("off", "INGEST_BROKER_WATCH is off")
    dropped, at_start = figures.get("dropped"), figures.get("at_start") or 0
    if dropped is None:
        return Verdict("unknown", figures.get("detail") or f"{DROPPED_TOPIC} not seen yet")
    since_start, rise_at = figures.get("since_start", 0), figures.get("last_rise_at")
    recent = rise_at is not None and now - rise_at < DROP_WINDOW_SECONDS
    if since_start or recent:
        lost = (
            f"{since_start} messages since this worker started"
            if since_start
            else f"{figures['last_rise']} messages less than {DROP_WINDOW_SECONDS / 3600:g} h ago"
        )
        return Verdict(
            "dropping",
            f"the MQTT broker dropped {lost} (latest: {figures['last_rise']} at {_utc(rise_at)}; "
            f"its counter is at {dropped}): readings were lost; {RAISE_HINT}",
        )
    if at_start:
        return Verdict(
            "dropped_before_start",
            f"the MQTT broker had dropped {at_start} messages before this worker started "
            f"(none since; its counter is at {dropped})",
        )
    return Verdict("ok", f"the MQTT broker has dropped no messages (its counter is at {dropped})")


def broker_drops_health(*, now: float | None = None) -> dict[str, Any]:
    """Each reporting worker's verdict, the most serious one as ``status``, and its ``problems``."""
    now = time.time() if now is None else now
    report = ingest_health(now=now)
    workers: dict[str, dict[str, Any]] = {}
    for client_id, figures in (report.get("workers") or {}).items():
        if figures.get("stale"):
            continue  # a stopped worker's last word is not news about the broker; the ingest check says it stopped
        drops = figures.get("broker") or {}
        verdict = drops_verdict(drops, now=now)
        workers[client_id] = {**drops, "status": verdict.status, "message": verdict.message}
    if not workers:
        return {"ok": True, "status": "unknown", "detail": "no ingest worker is reporting", "workers": {}}
    status = max((w["status"] for w in workers.values()), key=ORDER.index)
    problems = [f"{cid}: {w['message']}" for cid, w in workers.items() if w["status"] == "dropping"]
    return {"ok": not problems, "status": status, "problems": problems, "workers": workers}


def _utc(at: float | None) -> str:
    return "an unknown time" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
