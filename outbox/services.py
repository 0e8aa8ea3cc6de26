"""Writes of the outbox: enqueue in the caller's transaction, drain with SKIP LOCKED, purge.

Exactly-once processing: a drain claims due rows with ``SELECT … FOR UPDATE SKIP LOCKED``
(two drains never hold one row), runs each row's handler in a savepoint and marks the
row processed in the same transaction, so a handler's database effects and the mark
commit together or not at all. A drain killed mid-way leaves its rows unmarked; the
next drain (a nudge or the beat sweep) takes them again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from outbox.handlers import outbox_handler
from outbox.nudge import request_drain

logger = logging.getLogger(__name__)

ERROR_MAX_CHARS = 2000

_INSERT_SQL = """
INSERT INTO outbox_outboxmessage (topic, payload, key, created_at, available_at, attempts, last_error)
SELECT t, p, k, %s, COALESCE(a, %s), 0, ''
FROM unnest(%s::text[], %s::jsonb[], %s::text[], %s::timestamptz[]) AS u(t, p, k, a)
ON CONFLICT (topic, key) DO NOTHING
"""
_CLAIM_SQL = """
SELECT id, topic, payload, attempts FROM outbox_outboxmessage
WHERE processed_at IS NULL AND failed_at IS NULL AND available_at <= %s
ORDER BY available_at, id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
_DONE_SQL = "UPDATE outbox_outboxmessage SET processed_at = %s, attempts = attempts + 1 WHERE id = ANY(%s)"
_RETRY_SQL = """
UPDATE outbox_outboxmessage
SET attempts = attempts + 1, last_error = %s, available_at = %s, failed_at = %s
WHERE id = %s
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One piece of work for the outbox: ``topic`` names its handler; ``key`` makes it idempotent."""

    topic: str
    payload: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    available_at: datetime | None = None


@dataclass(slots=True)
class DrainResult:
    processed: int = 0
    retried: int = 0
    failed: int = 0


def outbox_enqueue_many(*, items: Sequence[OutboxItem]) -> None:
    """Add work in the caller's transaction (one statement); a drain is nudged once it commits.

    An item whose (topic, key) is already in the outbox is left out: redelivery-safe.
    """
    if not items:
        return
    if not connection.in_atomic_block:
        raise RuntimeError("outbox_enqueue_many must run inside the transaction that caused the work")
    now = timezone.now()
    columns = (
        [i.topic for i in items],
        [json.dumps(i.payload, allow_nan=False) for i in items],
        [i.key for i in items],
        [i.available_at for i in items],
    )
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL, [now, now, *columns])
    transaction.on_commit(request_drain)


_INSERT_SELECT_SQL = """
INSERT INTO outbox_outboxmessage (topic, payload, key, created_at, available_at, attempts, last_error)
SELECT q.topic, q.payload, q.key, %(outbox_now)s, %(outbox_now)s, 0, ''
FROM ({query}) AS q(topic, payload, key)
ON CONFLICT (topic, key) DO NOTHING
"""


def outbox_enqueue_query(*, query: str, params: dict[str, Any]) -> int:
    """Add the rows ``query`` yields, ``(topic text, payload jsonb, key text)``, in one statement; how many were new.

    ``outbox_enqueue_many``'s contract (in the caller's transaction, idempotent by (topic,
    key), a drain nudged after the commit) for work the database already holds: thousands of
    rows cost one statement, with no payload travelling through Python. ``params`` are the
    query's named parameters (``outbox_now`` is taken).
    """
    if not connection.in_atomic_block:
        raise RuntimeError("outbox_enqueue_query must run inside the transaction that caused the work")
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SELECT_SQL.format(query=query), {**params, "outbox_now": timezone.now()})
        added = int(cursor.rowcount)
    if added:
        transaction.on_commit(request_drain)
    return added


def outbox_enqueue(*, topic: str, payload: dict[str, Any], key: str | None = None) -> None:
    outbox_enqueue_many(items=[OutboxItem(topic, payload, key)])


def outbox_drain(*, limit: int = 100, rounds: int = 50, now: datetime | None = None) -> DrainResult:
    """Process due messages, ``limit`` per transaction, until none are due (at most ``rounds`` times)."""
    total = DrainResult()
    for _ in range(rounds):
        claimed = _drain_round(limit=limit, now=now or timezone.now())
        total.processed += claimed.processed
        total.retried += claimed.retried
        total.failed += claimed.failed
        if claimed.processed + claimed.retried + claimed.failed < limit:
            break
    return total


def _drain_round(*, limit: int, now: datetime) -> DrainResult:
    result = DrainResult()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL, [now, limit])
            rows = cursor.fetchall()
        done: list[int] = []
        for message_id, topic, payload, attempts in rows:
            error = _process(topic, payload if isinstance(payload, dict) else json.loads(payload))
            if error is None:
                done.append(message_id)
                continue
            gave_up = _record_failure(message_id, topic, attempts + 1, error, now)
            result.failed += gave_up
            result.retried += not gave_up
        if done:
            with connection.cursor() as cursor:
                cursor.execute(_DONE_SQL, [timezone.now(), done])
        result.processed = len(done)
    return result


def _process(topic: str, payload: dict[str, Any]) -> str | None:
    """Run the topic's handler in a savepoint; the error text if it failed."""
    handler = outbox_handler(topic)
    if handler is None:
        return f"no handler is registered for the topic {topic!r} in this process"
    try:
        with transaction.atomic():
            handler(payload)
    except Exception as exc:
        logger.exception("outbox handler for %s failed", topic)
        return f"{type(exc).__name__}: {exc}"
    return None


def _record_failure(message_id: int, topic: str, attempts: int, error: str, now: datetime) -> bool:
    """Back off before the next attempt, or give up after the last; True when given up."""
    gave_up = attempts >= settings.OUTBOX_MAX_ATTEMPTS
    delay = min(settings.OUTBOX_RETRY_SECONDS * 2 ** (attempts - 1), 3600)
    failed_at = now if gave_up else None
    with connection.cursor() as cursor:
        cursor.execute(_RETRY_SQL, [error[:ERROR_MAX_CHARS], now + timedelta(seconds=delay), failed_at, message_id])
    if gave_up:
        logger.error("outbox message %d (%s) failed %d times; giving up: %s", message_id, topic, attempts, error)
    return gave_up


def outbox_purge(*, now: datetime | None = None) -> int:
    """Delete processed messages older than ``OUTBOX_RETENTION_HOURS``; failed ones stay for a person to see."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.OUTBOX_RETENTION_HOURS)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM outbox_outboxmessage WHERE processed_at < %s", [cutoff])
        return int(cursor.rowcount)


def outbox_retry(*, ids: Sequence[int]) -> int:
    """Give failed messages another round of attempts (the admin's action)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE outbox_outboxmessage SET failed_at = NULL, attempts = 0, available_at = now() "
            "WHERE id = ANY(%s) AND failed_at IS NOT NULL",
            [list(ids)],
        )
        count = int(cursor.rowcount)
    transaction.on_commit(request_drain)
    return count
