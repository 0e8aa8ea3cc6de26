"""The ingest worker's ledger: what is in hand, what a committed batch acknowledges, and on which connection."""

from __future__ import annotations

from sensors.ingest.ledger import InHand, Ledger


def received(ledger: Ledger, *messages: InHand) -> None:
    for message in messages:
        ledger.pending.append(message)
        ledger.bytes_in += message.size


def message(mid: int, *, generation: int = 1, us: int = 1_000, size: int = 10, item: object = None) -> InHand:
    return InHand(item if item is not None else f"payload-{mid}", mid, generation, us, size)


def test_a_committed_batch_acknowledges_its_packet_ids_on_their_connection_and_releases_its_bytes():
    ledger = Ledger()
    received(ledger, message(1, us=500), message(2, us=600), message(3, us=700))
    batch = ledger.take(10)
    assert batch is not None
    assert ledger.in_hand() == 3
    assert ledger.oldest_received_us() == 500
    assert ledger.bytes_held() == 30

    assert ledger.complete(batch.id, committed=True) == 3
    assert list(ledger.acks) == [(1, [1, 2, 3])]
    assert ledger.acks_ready.is_set()
    assert (ledger.in_hand(), ledger.bytes_held(), ledger.has_inflight()) == (0, 0, False)


def test_a_batch_that_did_not_commit_acknowledges_nothing_but_is_let_go():
    ledger = Ledger()
    received(ledger, message(1), message(2))
    batch = ledger.take(10)
    assert batch is not None
    assert ledger.complete(batch.id, committed=False) == 2
    assert list(ledger.acks) == []
    assert (ledger.in_hand(), ledger.bytes_held()) == (0, 0)


def test_qos_0_messages_have_nothing_to_acknowledge():
    ledger = Ledger()
    received(ledger, message(0), message(7), message(0))
    batch = ledger.take(10)
    assert batch is not None
    ledger.complete(batch.id, committed=True)
    assert list(ledger.acks) == [(1, [7])]

    received(ledger, message(0), message(0))
    only_qos0 = ledger.take(10)
    assert only_qos0 is not None
    ledger.complete(only_qos0.id, committed=True)
    assert list(ledger.acks) == [(1, [7])]  # nothing added


def test_a_batch_spanning_a_reconnect_keeps_each_ack_with_its_own_connection():
    ledger = Ledger()
    received(ledger, message(1, generation=1), message(2, generation=1), message(1, generation=2))
    batch = ledger.take(10)
    assert batch is not None
    ledger.complete(batch.id, committed=True)
    assert sorted(ledger.acks) == [(1, [1, 2]), (2, [1])]


def test_the_store_process_gets_the_items_in_order_and_the_ledger_keeps_no_payload():
    ledger = Ledger()
    received(ledger, message(1, item=b"a"), message(2, item=b"b"), message(3, item=b"c"))
    batch = ledger.take(2)
    assert batch is not None
    assert ledger.hand_over(batch) == [b"a", b"b"]
    assert "b'a'" not in repr(ledger._inflight)  # only counts, sizes, times and packet ids stay
    assert len(ledger.pending) == 1
    assert ledger.oldest_received_us() == 1_000


def test_batches_complete_in_any_order():
    ledger = Ledger()
    received(ledger, message(1, us=100), message(2, us=200))
    first = ledger.take(1)
    second = ledger.take(1)
    assert first is not None
    assert second is not None
    ledger.complete(second.id, committed=True)
    assert ledger.oldest_received_us() == 100
    ledger.complete(first.id, committed=True)
    assert list(ledger.acks) == [(1, [2]), (1, [1])]
    assert ledger.in_hand() == 0
