"""The bell socket /ws/inbox/: the unread count on connect, live when a delivery lands or items are
read, only to their owner; signed out, it closes. Full ``farm.asgi.application``, real Redis and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.models import Session

from dashboard import live
from notifications.inbox import inbox_all_read, inbox_item_read
from notifications.models import APP_TARGET, ChannelKind, InboxItem
from notifications.sending import delivery_send
from notifications.services import notifications_plan
from tests.dashboard_fixtures import (  # noqa: F401 - _clean_channel_layer is a fixture
    _clean_channel_layer,
    close_code,
    communicator,
    logged_in_client,
)
from tests.notify_fixtures import a_channel, a_member, an_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_channel_layer")]

INBOX = "/ws/inbox/"


async def _bell(user):
    _, key = await sync_to_async(logged_in_client)(user)
    comm = communicator(None, session_key=key, path=INBOX)
    connected, _ = await comm.connect()
    assert connected
    return comm, key


async def _count(comm) -> int:
    message = json.loads(await comm.receive_from(timeout=5))
    assert message["type"] == "inbox"
    return message["unread"]


@sync_to_async
def _member_with_app_channel():
    m = a_member()
    a_channel(m.user, ChannelKind.APP, APP_TARGET)
    return m


@sync_to_async
def _deliver(member, n: int) -> InboxItem:
    [delivery] = notifications_plan(event=an_event(member.farm, n), recipients=[member.user])
    assert delivery_send(delivery_id=delivery.pk).sent
    return InboxItem.objects.get(key=delivery.key)


async def test_an_anonymous_bell_socket_is_refused():
    comm = communicator(None, path=INBOX)
    connected, _ = await comm.connect()
    assert not connected


async def test_a_bell_socket_from_another_origin_is_refused_even_with_a_session():
    m = await _member_with_app_channel()
    _, key = await sync_to_async(logged_in_client)(m.user)
    comm = communicator(None, session_key=key, path=INBOX, origin=b"http://evil.example")
    connected, _ = await comm.connect()
    assert not connected


async def test_the_count_rises_live_when_a_delivery_lands_and_falls_when_items_are_read():
    m = await _member_with_app_channel()
    comm, _ = await _bell(m.user)
    assert await _count(comm) == 0
    first = await _deliver(m, 1)
    assert await _count(comm) == 1
    # Within the storm window: folded into a batch, not in the inbox yet; the bell stays put.
    await sync_to_async(notifications_plan)(event=an_event(m.farm, 2), recipients=[m.user])
    assert await comm.receive_nothing(timeout=0.5)
    await sync_to_async(inbox_item_read)(user=m.user, item_id=first.pk)
    assert await _count(comm) == 0
    await comm.disconnect()


async def test_a_reconnecting_bell_gets_the_count_it_missed():
    m = await _member_with_app_channel()
    comm, _ = await _bell(m.user)
    assert await _count(comm) == 0
    await comm.disconnect()
    await _deliver(m, 1)  # nobody listening: the nudge is lost
    comm, _ = await _bell(m.user)
    assert await _count(comm) == 1
    await comm.disconnect()


async def test_every_open_page_of_the_person_hears_it_and_nobody_else_does():
    m = await _member_with_app_channel()
    other = await _member_with_app_channel()
    laptop, _ = await _bell(m.user)
    phone, _ = await _bell(m.user)
    stranger, _ = await _bell(other.user)
    for comm in (laptop, phone, stranger):
        assert await _count(comm) == 0
    await _deliver(m, 1)
    assert await _count(laptop) == 1
    assert await _count(phone) == 1
    assert await stranger.receive_nothing(timeout=0.5)
    await sync_to_async(inbox_all_read)(user=m.user)
    assert await _count(laptop) == 0
    for comm in (laptop, phone, stranger):
        await comm.disconnect()


async def test_signing_out_closes_the_bell_socket():
    m = await _member_with_app_channel()
    client, _ = await sync_to_async(logged_in_client)(m.user)
    key = client.cookies["sessionid"].value
    comm = communicator(None, session_key=key, path=INBOX)
    connected, _ = await comm.connect()
    assert connected
    assert await _count(comm) == 0
    await sync_to_async(client.logout)()
    assert await close_code(comm) == live.CLOSE_SIGNED_OUT


async def test_a_session_deleted_behind_its_back_is_found_on_the_recheck():
    m = await _member_with_app_channel()
    comm, key = await _bell(m.user)
    assert await _count(comm) == 0
    await sync_to_async(Session.objects.filter(session_key=key).delete)()
    await sync_to_async(live.user_access_recheck)(user_id=m.user.pk)  # the backstop timer's job, now
    assert await close_code(comm) == live.CLOSE_SIGNED_OUT
