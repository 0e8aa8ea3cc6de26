"""The transactional outbox (outbox/): enqueue in the cause's transaction, drain exactly once, retry, purge."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test import override_settings
from django.utils import timezone

from outbox import nudge
from outbox.handlers import register_outbox_handler, unregister_outbox_handler
from outbox.models import OutboxMessage
from outbox.services import OutboxItem, outbox_drain, outbox_enqueue, outbox_enqueue_many, outbox_purge, outbox_retry
from tests.mqtt_fixtures import wait_until


@pytest.fixture
def handled() -> Iterator[list[dict[str, object]]]:
    seen: list[dict[str, object]] = []
    register_outbox_handler("test.seen", seen.append)
    yield seen
    unregister_outbox_handler("test.seen")


@pytest.mark.django_db(transaction=True)
def test_enqueueing_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError, match="inside the transaction"):
        outbox_enqueue(topic="test.seen", payload={})


@pytest.mark.django_db
def test_a_message_rolls_back_with_the_transaction_that_caused_it():
    def cause_that_fails() -> None:
        with transaction.atomic():
            outbox_enqueue(topic="test.seen", payload={"n": 1})
            raise DatabaseError("the cause failed")

    with pytest.raises(DatabaseError):
        cause_that_fails()
    assert OutboxMessage.objects.count() == 0


@pytest.mark.django_db
def test_a_drain_runs_each_handler_once_and_marks_the_message_processed(handled):
    with transaction.atomic():
        outbox_enqueue_many(items=[OutboxItem("test.seen", {"n": 1}), OutboxItem("test.seen", {"n": 2})])
    assert outbox_drain().processed == 2
    assert outbox_drain().processed == 0
    assert handled == [{"n": 1}, {"n": 2}]
    assert {m.state for m in OutboxMessage.objects.all()} == {"processed"}


@pytest.mark.django_db
def test_a_second_message_with_the_same_key_is_not_added(handled):
    with transaction.atomic():
        outbox_enqueue(topic="test.seen", payload={"n": 1}, key="episode-7:fired")
        outbox_enqueue(topic="test.seen", payload={"n": 1}, key="episode-7:fired")
    assert OutboxMessage.objects.count() == 1


@pytest.mark.django_db
@override_settings(OUTBOX_MAX_ATTEMPTS=2, OUTBOX_RETRY_SECONDS=10)
def test_a_failing_handler_is_retried_with_backoff_then_marked_failed_with_the_reason():
    def broken(payload: dict[str, object]) -> None:
        raise ValueError("the SMS gateway said no")

    register_outbox_handler("test.broken", broken)
    try:
        with transaction.atomic():
            outbox_enqueue(topic="test.broken", payload={})
        now = timezone.now()
        assert outbox_drain(now=now).retried == 1
        message = OutboxMessage.objects.get()
        assert message.attempts == 1
        assert "SMS gateway said no" in message.last_error
        assert message.available_at >= now + timedelta(seconds=9)
        assert outbox_drain(now=now).retried == 0  # not due yet
        assert outbox_drain(now=now + timedelta(seconds=11)).failed == 1
        assert OutboxMessage.objects.get().state == "failed"
        assert outbox_retry(ids=[message.pk]) == 1
        assert OutboxMessage.objects.get().state == "pending"
    finally:
        unregister_outbox_handler("test.broken")


@pytest.mark.django_db
def test_a_message_without_a_handler_is_kept_with_the_reason():
    with transaction.atomic():
        outbox_enqueue(topic="test.nobody", payload={})
    outbox_drain()
    assert "no handler is registered" in OutboxMessage.objects.get().last_error


@pytest.mark.django_db
@override_settings(OUTBOX_RETENTION_HOURS=1)
def test_the_purge_deletes_old_processed_messages_and_keeps_the_rest(handled):
    with transaction.atomic():
        outbox_enqueue(topic="test.seen", payload={})
        outbox_enqueue(topic="test.nobody", payload={})
    outbox_drain()
    assert outbox_purge(now=timezone.now() + timedelta(hours=2)) == 1
    assert [m.topic for m in OutboxMessage.objects.all()] == ["test.nobody"]


@pytest.mark.django_db(transaction=True)
def test_two_drains_at_once_never_process_a_message_twice():
    calls: list[int] = []
    lock = threading.Lock()

    def slow(payload: dict[str, int]) -> None:
        with lock:
            calls.append(payload["n"])
        time.sleep(0.01)

    register_outbox_handler("test.slow", slow)
    try:
        with transaction.atomic():
            outbox_enqueue_many(items=[OutboxItem("test.slow", {"n": n}) for n in range(60)])

        def drain() -> None:
            try:
                outbox_drain(limit=10)
            finally:
                connection.close()

        threads = [threading.Thread(target=drain) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        unregister_outbox_handler("test.slow")
    assert sorted(calls) == list(range(60))
    assert OutboxMessage.objects.filter(processed_at__isnull=True).count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_commit_nudges_the_drain_once_for_a_burst_without_waiting_for_it(monkeypatch):
    sent: list[float] = []
    monkeypatch.setattr(nudge, "send_nudge", lambda: sent.append(time.monotonic()))
    for _ in range(5):
        with transaction.atomic():
            outbox_enqueue(topic="test.seen", payload={})
    wait_until(lambda: sent, timeout=5, what="a nudge")
    time.sleep(0.2)
    assert 1 <= len(sent) <= 5  # coalesced: never more than one per commit


@pytest.mark.django_db(transaction=True)
def test_a_nudge_that_cannot_reach_celery_is_logged_not_raised(monkeypatch, caplog):
    def unreachable() -> None:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(nudge, "send_nudge", unreachable)
    with transaction.atomic():
        outbox_enqueue(topic="test.seen", payload={})
    wait_until(lambda: "periodic sweep will" in caplog.text, timeout=5, what="the warning")
    assert OutboxMessage.objects.count() == 1
