"""End to end, every part a real process: Mosquitto → ``manage.py ingest`` → Redis channel layer → daphne
→ a WebSocket client signed in through the login form.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

if TYPE_CHECKING:
    from tests.e2e_fixtures import LiveStack

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.mqtt_fixtures", "tests.e2e_fixtures"]  # mosquitto, live_stack

PASSWORD = "e2e-live-password-not-secret"
WAIT_S = 15  # generous: a loaded CI machine; the latency itself is measured in bench/


@pytest.fixture(scope="module")
def live_farm(live_stack: LiveStack) -> dict[str, Any]:
    return live_stack.seed({"what": "live_farm", "tag": secrets.token_hex(4), "password": PASSWORD})


async def sign_in(stack: LiveStack, username: str) -> str:
    return await asyncio.to_thread(stack.login, username, PASSWORD)


def open_socket(stack: LiveStack, farm_id: int, session_key: str | None) -> Any:
    url = f"{stack.daphne.ws_url}/ws/farms/{farm_id}/"
    return connect(url, additional_headers=stack.ws_headers(session_key), open_timeout=WAIT_S, proxy=None)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), WAIT_S)))


async def next_update(ws: ClientConnection) -> dict[str, Any]:
    while (message := await receive(ws))["type"] != "update":
        pass
    return message


async def publish(stack: LiveStack, topic: str, payload: dict[str, Any] | str) -> None:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    await asyncio.to_thread(stack.publish, topic, body)


async def test_a_reading_published_over_mqtt_reaches_a_signed_in_members_socket(live_stack, live_farm):
    key = await sign_in(live_stack, live_farm["manager"])
    with live_stack.logs_on_failure():
        async with open_socket(live_stack, live_farm["farm"], key) as ws:
            snapshot = await receive(ws)
            assert (snapshot["type"], snapshot["farm"]) == ("snapshot", live_farm["farm"])
            ts_ms = int(time.time() * 1000)
            await publish(live_stack, f"farm/{live_farm['uid']}/telemetry", {"ts": ts_ms, "soil_moisture": 31.25})

            update = await next_update(ws)

    assert update["farm"] == live_farm["farm"]
    assert update["seq"] == snapshot["seq"] + 1
    assert update["readings"] == [
        {"sensor": live_farm["sensors"]["soil_moisture"], "device": live_farm["device"], "points": [[ts_ms, 31.25]],
         "n": 1}
    ]  # fmt: skip
    assert [(d["id"], d["status"]) for d in update["devices"]] == [(live_farm["device"], "online")]
    assert update["sent"] >= ts_ms


async def test_a_device_going_offline_reaches_the_socket(live_stack, live_farm):
    key = await sign_in(live_stack, live_farm["manager"])
    with live_stack.logs_on_failure():
        async with open_socket(live_stack, live_farm["farm"], key) as ws:
            snapshot = await receive(ws)
            await publish(live_stack, f"farm/{live_farm['uid']}/status", "offline")

            update = await next_update(ws)

    assert update["seq"] == snapshot["seq"] + 1
    assert update["readings"] == []
    assert [(d["id"], d["status"]) for d in update["devices"]] == [(live_farm["device"], "offline")]


async def test_a_signed_in_user_of_another_farm_is_closed_with_4403(live_stack, live_farm):
    key = await sign_in(live_stack, live_farm["outsider"])
    async with open_socket(live_stack, live_farm["farm"], key) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), WAIT_S)  # no snapshot first: the close is all it gets
    assert ws.close_code == 4403


async def test_an_anonymous_socket_is_refused(live_stack, live_farm):
    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(live_stack, live_farm["farm"], None):
            pass
    assert refused.value.response.status_code == 403
