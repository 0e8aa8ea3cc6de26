"""Waiting for the ingest worker before publishing, so a demo's backfill is not sent to nobody.

A broker drops a QoS 1 message that no session subscribes to. On a first start
the ingest worker's session does not exist until it subscribes, so the
simulator waits for the worker's own report of that: the figures it publishes
for ``/healthz`` say ``connected`` only once its subscriptions are acknowledged.
"""

from __future__ import annotations

import threading
import time

from sensors.ingest.stats import ingest_health


def ingest_subscribed(*, since: float) -> bool:
    """True when a worker reported, after ``since`` (epoch seconds), that it is subscribed."""
    workers = ingest_health()["workers"].values()
    return any(w.get("connected") and not w["stale"] and w["updated_at"] >= since for w in workers)


def wait_for_ingest(*, timeout: float, stop: threading.Event, poll: float = 0.5) -> bool:
    """Block until an ingest worker is subscribed (True), or ``timeout`` seconds pass or ``stop`` is set (False)."""
    since = time.time()
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        if ingest_subscribed(since=since):
            return True
        if time.monotonic() >= deadline:
            return False
        stop.wait(poll)
    return False
