"""Team changes reach open dashboards: a removed member's socket closes within seconds."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from dashboard import live
from farm.models import Role
from farm.team import membership_remove, membership_role_change
from tests.dashboard_fixtures import (  # noqa: F401 - _clean_channel_layer is a fixture
    _clean_channel_layer,
    close_code,
    connect_as,
    farm_with_sensors,
    member_of,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_channel_layer")]


async def test_a_member_removed_by_the_owner_has_their_open_socket_closed():
    setup = await sync_to_async(farm_with_sensors)(devices=1)
    owner = await sync_to_async(member_of)(setup.farm, Role.OWNER)
    viewer = await sync_to_async(member_of)(setup.farm, Role.VIEWER)
    comm, _ = await connect_as(viewer.user, setup.farm.pk)
    await sync_to_async(membership_remove)(farm=setup.farm, membership_id=viewer.pk, actor=owner.user)
    assert await close_code(comm, timeout=5) == live.CLOSE_FORBIDDEN


async def test_a_lowered_role_keeps_a_viewer_socket_open():
    setup = await sync_to_async(farm_with_sensors)(devices=1)
    owner = await sync_to_async(member_of)(setup.farm, Role.OWNER)
    manager = await sync_to_async(member_of)(setup.farm, Role.MANAGER)
    comm, _ = await connect_as(manager.user, setup.farm.pk)
    await sync_to_async(membership_role_change)(
        farm=setup.farm, membership_id=manager.pk, role=Role.VIEWER, actor=owner.user
    )
    # A viewer may still watch; what a viewer may not do is checked per message (socket_can).
    await comm.send_json_to({"type": "ping"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "pong"
    await comm.disconnect()
