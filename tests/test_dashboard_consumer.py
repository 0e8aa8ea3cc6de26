"""The farm socket /ws/farms/<id>/: who gets in, what they receive, and when they are thrown out.

Runs the full ``farm.asgi.application`` (Origin check, session auth, router)
against the real Redis channel layer and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

from dashboard import consumers, live, protocol
from farm.models import Role
from sensors.hooks import run_batch_notifiers
from tests.dashboard_fixtures import (  # noqa: F401 - _clean_channel_layer is a fixture
    FarmSetup,
    _clean_channel_layer,
    batch_for,
    close_code,
    communicator,
    connect_as,
    farm_with_sensors,
    logged_in_client,
    member_of,
    readings_insert,
    server_messages,
    session_cookie,
)
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_channel_layer")]


@pytest.fixture
async def farm_a():
    return await sync_to_async(farm_with_sensors)(devices=2)


@pytest.fixture
async def farm_b():
    return await sync_to_async(farm_with_sensors)(devices=1)


async def test_it_refuses_an_anonymous_socket(farm_a):
    comm = communicator(farm_a.farm.pk)
    connected, _ = await comm.connect()
    assert not connected


async def test_a_manager_gets_a_snapshot_of_the_farm(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, snapshot = await connect_as(membership.user, farm_a.farm.pk)
    assert snapshot["type"] == "snapshot"
    assert snapshot["farm"] == farm_a.farm.pk
    assert isinstance(snapshot["seq"], int)
    assert {s["sensor"] for s in snapshot["sensors"]} == {s.pk for s in farm_a.sensors}
    assert {d["id"] for d in snapshot["devices"]} == {d.pk for d in farm_a.devices}
    await comm.disconnect()


async def test_the_snapshot_carries_each_sensors_newest_reading(farm_a):
    with_readings, without = farm_a.sensors
    now = timezone.now().replace(microsecond=0)
    await sync_to_async(readings_insert)(with_readings, [(now - timedelta(minutes=1), 21.5), (now, 22.5)])
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, snapshot = await connect_as(membership.user, farm_a.farm.pk)
    assert {s["sensor"]: (s["value"], s["ts"]) for s in snapshot["sensors"]} == {
        with_readings.pk: (22.5, int(now.timestamp() * 1000)),
        without.pk: (None, None),
    }
    await comm.disconnect()


async def test_a_viewer_is_let_in(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm, Role.VIEWER)
    comm, snapshot = await connect_as(membership.user, farm_a.farm.pk)
    assert snapshot["type"] == "snapshot"
    await comm.disconnect()


async def test_staff_may_watch_a_farm_they_are_not_a_member_of(farm_a):
    staff = await sync_to_async(UserFactory.create)(is_staff=True)
    comm, snapshot = await connect_as(staff, farm_a.farm.pk)
    assert snapshot["farm"] == farm_a.farm.pk
    await comm.disconnect()


async def test_a_member_of_another_farm_is_closed_with_4403(farm_a, farm_b):
    membership = await sync_to_async(member_of)(farm_b.farm)
    key = await sync_to_async(session_cookie)(membership.user)
    comm = communicator(farm_a.farm.pk, session_key=key)
    connected, _ = await comm.connect()
    assert connected  # accepted, so the browser can read why it is closed
    assert await close_code(comm) == live.CLOSE_FORBIDDEN


async def test_a_farm_that_does_not_exist_looks_like_a_forbidden_one(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    key = await sync_to_async(session_cookie)(membership.user)
    comm = communicator(farm_a.farm.pk + 1000, session_key=key)
    await comm.connect()
    assert await close_code(comm) == live.CLOSE_FORBIDDEN


async def test_it_refuses_a_foreign_origin(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    key = await sync_to_async(session_cookie)(membership.user)
    comm = communicator(farm_a.farm.pk, session_key=key, origin=b"https://evil.example")
    connected, _ = await comm.connect()
    assert not connected


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        (b"http://testserver:8080", b"testserver", "ws"),  # same host, another port
        (b"http://testserver", b"testserver:8000", "ws"),
        (b"https://testserver", b"testserver", "ws"),  # same host, another scheme
        (b"http://testserver", b"testserver", "wss"),  # a plain-HTTP page on a TLS site
        (b"http://testserver.evil.example", b"testserver", "ws"),
        (b"http://evil.example", b"evil.example", "ws"),  # a host not in ALLOWED_HOSTS
        (b"null", b"testserver", "ws"),  # a sandboxed frame or a file:// page
        (b"http://testserver/path", b"testserver", "ws"),
    ],
)
async def test_it_refuses_an_origin_that_is_not_the_sites_own(farm_a, origin, host, scheme):
    membership = await sync_to_async(member_of)(farm_a.farm)
    key = await sync_to_async(session_cookie)(membership.user)
    comm = communicator(farm_a.farm.pk, session_key=key, origin=origin, host=host, scheme=scheme)
    connected, _ = await comm.connect()
    assert not connected


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        (b"http://testserver:8000", b"testserver:8000", "ws"),
        (b"http://TestServer:80", b"testserver", "ws"),  # default port and case do not matter
        (b"https://testserver", b"testserver:443", "wss"),
    ],
)
async def test_it_accepts_the_sites_own_origin(farm_a, origin, host, scheme):
    membership = await sync_to_async(member_of)(farm_a.farm)
    key = await sync_to_async(session_cookie)(membership.user)
    comm = communicator(farm_a.farm.pk, session_key=key, origin=origin, host=host, scheme=scheme)
    connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()


async def test_behind_a_tls_proxy_the_forwarded_scheme_counts(farm_a, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    membership = await sync_to_async(member_of)(farm_a.farm)
    key = await sync_to_async(session_cookie)(membership.user)
    for origin, proto, accepted in [(b"https://testserver", b"https", True), (b"http://testserver", b"https", False)]:
        comm = communicator(farm_a.farm.pk, session_key=key, origin=origin)
        comm.scope["headers"].append((b"x-forwarded-proto", proto))
        connected, _ = await comm.connect()
        assert connected is accepted
        await comm.disconnect()


async def test_a_trusted_origin_is_accepted_from_another_host(farm_a, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://farm.example"]
    membership = await sync_to_async(member_of)(farm_a.farm)
    key = await sync_to_async(session_cookie)(membership.user)
    comm = communicator(farm_a.farm.pk, session_key=key, origin=b"https://farm.example")
    connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()


async def test_it_refuses_a_socket_without_origin(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    key = await sync_to_async(session_cookie)(membership.user)
    comm = communicator(farm_a.farm.pk, session_key=key, origin=None)
    connected, _ = await comm.connect()
    assert not connected


async def test_a_member_of_farm_a_never_receives_farm_b_messages(farm_a, farm_b):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, snapshot = await connect_as(membership.user, farm_a.farm.pk)
    now = timezone.now()
    await sync_to_async(run_batch_notifiers)(batch_for(farm_b.sensors[0], 41.0, ts=now))
    await sync_to_async(run_batch_notifiers)(batch_for(farm_a.sensors[0], 12.5, ts=now))
    update = json.loads(await comm.receive_from(timeout=5))
    assert update["type"] == "update"
    assert update["farm"] == farm_a.farm.pk
    assert [r["sensor"] for r in update["readings"]] == [farm_a.sensors[0].pk]
    assert update["readings"][0]["points"][-1][1] == 12.5
    assert update["seq"] > snapshot["seq"]
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


async def test_updates_carry_consecutive_sequence_numbers(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, snapshot = await connect_as(membership.user, farm_a.farm.pk)
    now = timezone.now()
    for value in (1.0, 2.0, 3.0):
        await sync_to_async(run_batch_notifiers)(batch_for(farm_a.sensors[1], value, ts=now))
    messages = server_messages(comm)
    seqs = [(await anext(messages))["seq"] for _ in range(3)]
    assert seqs == [snapshot["seq"] + 1, snapshot["seq"] + 2, snapshot["seq"] + 3]
    await comm.disconnect()


def published_while_the_socket_waits(
    farm: FarmSetup, values: tuple[float, ...], then: Callable[[], None] | None = None
) -> None:
    """Publish an update per value (and then ``then``) from another thread while this event loop is held.

    The consumer runs on this loop: everything published meanwhile waits for it, as it does for
    a socket of a daphne process that fell behind.
    """

    def publish() -> None:
        now = timezone.now()
        for value in values:
            run_batch_notifiers(batch_for(farm.sensors[1], value, ts=now))
        if then is not None:
            then()

    pusher = threading.Thread(target=publish)
    pusher.start()
    pusher.join()


async def test_updates_waiting_for_a_socket_go_out_together_in_order(farm_a):
    """A daphne process that fell behind sends a socket's waiting updates as one frame: a JSON array."""
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, snapshot = await connect_as(membership.user, farm_a.farm.pk)
    published_while_the_socket_waits(farm_a, (1.0, 2.0, 3.0))
    frame = json.loads(await comm.receive_from(timeout=5))
    assert isinstance(frame, list)
    assert [m["seq"] for m in frame] == [snapshot["seq"] + 1, snapshot["seq"] + 2, snapshot["seq"] + 3]
    assert [m["readings"][0]["points"][-1][1] for m in frame] == [1.0, 2.0, 3.0]
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


async def test_a_close_waiting_behind_updates_comes_after_them(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, snapshot = await connect_as(membership.user, farm_a.farm.pk)
    published_while_the_socket_waits(
        farm_a,
        (1.0, 2.0),
        then=lambda: live.user_sockets_close(user_id=membership.user.pk, code=live.CLOSE_SIGNED_OUT),
    )
    frame = json.loads(await comm.receive_from(timeout=5))
    assert [m["seq"] for m in frame] == [snapshot["seq"] + 1, snapshot["seq"] + 2]
    assert await close_code(comm) == live.CLOSE_SIGNED_OUT


async def test_a_ping_gets_a_pong_with_the_current_sequence_number(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, snapshot = await connect_as(membership.user, farm_a.farm.pk)
    await comm.send_to(text_data=json.dumps({"type": "ping"}))
    pong = json.loads(await comm.receive_from(timeout=5))
    assert pong["type"] == "pong"
    assert pong["seq"] == snapshot["seq"]
    await comm.disconnect()


async def test_a_snapshot_request_gets_a_fresh_snapshot(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, first = await connect_as(membership.user, farm_a.farm.pk)
    await sync_to_async(run_batch_notifiers)(batch_for(farm_a.sensors[0], 5.0, ts=timezone.now()))
    await comm.receive_from(timeout=5)  # the update
    await comm.send_to(text_data=json.dumps({"type": "snapshot"}))
    again = json.loads(await comm.receive_from(timeout=5))
    assert again["type"] == "snapshot"
    assert again["seq"] == first["seq"] + 1
    await comm.disconnect()


async def test_it_ignores_messages_of_types_it_does_not_know(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    for text in ('{"type": "subscribe", "farm": 1}', '{"type": ""}', '{"type": "PING", "x": [[[]]]}'):
        await comm.send_to(text_data=text)
    assert await comm.receive_nothing(timeout=0.3)
    await comm.send_to(text_data='{"type": "ping"}')
    assert json.loads(await comm.receive_from(timeout=5))["type"] == "pong"
    await comm.disconnect()


async def test_an_oversized_frame_closes_the_socket(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    await comm.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * 5000}))
    assert await close_code(comm) == 1009


async def test_a_binary_frame_closes_the_socket(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    await comm.send_to(bytes_data=b"\x00\x01")
    assert await close_code(comm) == 1003


async def test_a_flood_of_messages_closes_the_socket(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    for _ in range(60):
        await comm.send_to(text_data='{"type": "nonsense"}')
    assert await close_code(comm) == 1008


async def test_logging_out_closes_the_sockets_of_that_session_only(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    client, key = await sync_to_async(logged_in_client)(membership.user)
    phone, _ = await connect_as(membership.user, farm_a.farm.pk)  # another session of the same user
    laptop = communicator(farm_a.farm.pk, session_key=key)
    await laptop.connect()
    await laptop.receive_from(timeout=5)
    await sync_to_async(client.logout)()
    assert await close_code(laptop) == live.CLOSE_SIGNED_OUT
    assert await phone.receive_nothing(timeout=0.5)
    await phone.disconnect()


async def test_deactivating_a_user_closes_their_sockets(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    user = membership.user
    user.is_active = False
    await sync_to_async(user.save)()
    assert await close_code(comm) == live.CLOSE_SIGNED_OUT


async def test_removing_the_membership_closes_the_socket_with_4403(farm_a):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    await sync_to_async(membership.delete)()
    assert await close_code(comm) == live.CLOSE_FORBIDDEN


async def test_removing_one_membership_leaves_sockets_on_other_farms_open(farm_a, farm_b):
    membership = await sync_to_async(member_of)(farm_a.farm)
    await sync_to_async(member_of)(farm_b.farm)
    other = await sync_to_async(lambda: farm_b.farm.memberships.create(user=membership.user, role=Role.VIEWER))()
    comm_a, _ = await connect_as(membership.user, farm_a.farm.pk)
    comm_b, _ = await connect_as(membership.user, farm_b.farm.pk)
    await sync_to_async(other.delete)()
    assert await close_code(comm_b) == live.CLOSE_FORBIDDEN
    assert await comm_a.receive_nothing(timeout=0.5)
    await comm_a.disconnect()


async def test_taking_away_staff_closes_a_staff_socket_on_a_foreign_farm(farm_a):
    staff = await sync_to_async(UserFactory.create)(is_staff=True)
    comm, _ = await connect_as(staff, farm_a.farm.pk)
    staff.is_staff = False
    await sync_to_async(staff.save)()
    assert await close_code(comm) == live.CLOSE_FORBIDDEN


async def test_the_access_timer_closes_a_socket_whose_session_vanished(farm_a, monkeypatch):
    monkeypatch.setattr(consumers, "ACCESS_RECHECK_SECONDS", 0.2)
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    # A bulk delete sends no signal: only the backstop timer can notice.
    await sync_to_async(lambda: Session.objects.all().delete())()
    assert await close_code(comm) == live.CLOSE_SIGNED_OUT


async def test_the_access_timer_leaves_a_valid_socket_open(farm_a, monkeypatch):
    monkeypatch.setattr(consumers, "ACCESS_RECHECK_SECONDS", 0.1)
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    await asyncio.sleep(0.5)
    await comm.send_to(text_data='{"type": "ping"}')
    assert json.loads(await comm.receive_from(timeout=5))["type"] == "pong"
    await comm.disconnect()


async def test_an_idle_socket_outlives_the_channel_layers_blocking_read(farm_a):
    # channels_redis blocks 5 s per BZPOPMIN; a Redis client read timeout of 5 s or less
    # (redis-py's default) crashed every consumer after 5 quiet seconds.
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    await asyncio.sleep(7)
    await comm.send_to(text_data='{"type": "ping"}')
    assert json.loads(await comm.receive_from(timeout=5))["type"] == "pong"
    await comm.disconnect()


# Hostile frames and our own bugs end in a clean close that leaves nothing behind (issue 13).


def subscribers(channels: list[str]) -> dict[str, int]:
    """How many connections Redis itself has subscribed to each pub/sub channel."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        return dict(client.pubsub_numsub(*channels))  # type: ignore[arg-type]
    finally:
        client.close()


async def sockets_groups(layer, farm_id: int, user_id: int) -> set[str]:
    """The socket's groups still held: as members in this process's layer, or as Redis subscriptions."""
    here = layer._get_layer()  # the pub/sub layer of this event loop
    names = {here._get_group_channel_name(g): g for g in (live.farm_group(farm_id), live.user_group(user_id))}
    heard = await sync_to_async(subscribers)(list(names))
    return {group for name, group in names.items() if here.groups.get(name) or heard.get(name)}


def recheck_timers() -> list[asyncio.Task]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "UserSocket.recheck_forever" and not task.done()
    ]


async def assert_nothing_left_behind(layer, farm_id: int, user_id: int) -> None:
    """No group holds the socket and no re-check timer runs, also after several timer periods."""
    assert await sockets_groups(layer, farm_id, user_id) == set()
    await asyncio.sleep(10 * consumers.ACCESS_RECHECK_SECONDS)
    assert recheck_timers() == []
    assert await sockets_groups(layer, farm_id, user_id) == set()


@pytest.fixture
def fast_recheck(monkeypatch):
    monkeypatch.setattr(consumers, "ACCESS_RECHECK_SECONDS", 0.05)


async def test_a_deeply_nested_frame_closes_with_1007_and_leaves_nothing_behind(
    farm_a, clean_channel_layer, fast_recheck
):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    assert await sockets_groups(clean_channel_layer, farm_a.farm.pk, membership.user.pk)  # joined
    assert len(recheck_timers()) == 1
    await comm.send_to(text_data="[" * 1000)  # RecursionError in json, under the 1 KiB limit
    assert await close_code(comm) == protocol.CLOSE_MALFORMED
    await assert_nothing_left_behind(clean_channel_layer, farm_a.farm.pk, membership.user.pk)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"type": 5}', '{"kind": "ping"}', '"ping"', "{" * 600])
async def test_a_malformed_frame_closes_the_socket_with_1007(farm_a, text):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    await comm.send_to(text_data=text)
    assert await close_code(comm) == protocol.CLOSE_MALFORMED


async def test_an_exception_in_a_handler_closes_with_1011_and_leaves_nothing_behind(
    farm_a, clean_channel_layer, fast_recheck, monkeypatch, caplog
):
    def broken_pong(**kwargs):
        raise RuntimeError("a bug in our own code")

    monkeypatch.setattr(consumers.payloads, "pong_text", broken_pong)
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    await comm.send_to(text_data='{"type": "ping"}')
    assert await close_code(comm) == protocol.CLOSE_INTERNAL
    assert "a bug in our own code" in caplog.text  # logged with its traceback, not swallowed
    await assert_nothing_left_behind(clean_channel_layer, farm_a.farm.pk, membership.user.pk)


async def test_an_exception_in_a_channel_layer_event_leaves_nothing_behind(
    farm_a, clean_channel_layer, fast_recheck, monkeypatch
):
    async def broken_update(self, event):
        raise RuntimeError("a bug in our own code")

    monkeypatch.setattr(consumers.FarmConsumer, "farm_update", broken_update)
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    await sync_to_async(run_batch_notifiers)(batch_for(farm_a.sensors[0], 1.0, ts=timezone.now()))
    assert await close_code(comm) == protocol.CLOSE_INTERNAL
    await assert_nothing_left_behind(clean_channel_layer, farm_a.farm.pk, membership.user.pk)


async def test_closing_for_a_reason_leaves_the_groups_before_the_client_answers(
    farm_a, clean_channel_layer, fast_recheck
):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    await comm.send_to(bytes_data=b"\x00")
    assert await close_code(comm) == protocol.CLOSE_UNSUPPORTED
    # The client never completes the closing handshake; the server has let go all the same.
    await assert_nothing_left_behind(clean_channel_layer, farm_a.farm.pk, membership.user.pk)


async def test_a_client_disconnect_leaves_nothing_behind(farm_a, clean_channel_layer, fast_recheck):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    await comm.disconnect()
    await assert_nothing_left_behind(clean_channel_layer, farm_a.farm.pk, membership.user.pk)


async def test_the_access_timer_that_closes_a_socket_stops_itself(farm_a, clean_channel_layer, fast_recheck):
    membership = await sync_to_async(member_of)(farm_a.farm)
    comm, _ = await connect_as(membership.user, farm_a.farm.pk)
    await sync_to_async(lambda: Session.objects.all().delete())()
    assert await close_code(comm) == live.CLOSE_SIGNED_OUT
    await assert_nothing_left_behind(clean_channel_layer, farm_a.farm.pk, membership.user.pk)
