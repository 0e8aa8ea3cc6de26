"""Helpers for the dashboard tests: a farm with sensors, readings, and logged-in sockets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from farm.models import Farm, Role
from sensors.hooks import BatchOutcome, DeviceChange, StoredReading
from sensors.models import Device, DeviceStatus, Reading, Sensor
from tests.factories import DeviceFactory, DeviceKindFactory, FarmFactory, MembershipFactory, SensorFactory, UserFactory

ORIGIN = b"http://testserver"
HOST = b"testserver"


@dataclass
class FarmSetup:
    farm: Farm
    devices: list[Device] = field(default_factory=list)
    sensors: list[Sensor] = field(default_factory=list)


def farm_with_sensors(*, devices: int = 1, farm: Farm | None = None, interval: int = 300) -> FarmSetup:
    """A farm whose devices each have a soil-moisture sensor (0–100 %)."""
    farm = farm or FarmFactory.create()
    kind = DeviceKindFactory.create(expected_interval=interval)
    setup = FarmSetup(farm=farm)
    for _ in range(devices):
        device = DeviceFactory.create(farm=farm, kind=kind, status=DeviceStatus.ONLINE)
        setup.devices.append(device)
        setup.sensors.append(SensorFactory.create(device=device))
    return setup


def readings_insert(sensor: Sensor, points: Iterable[tuple[datetime, float]]) -> None:
    Reading.objects.bulk_create([Reading(sensor=sensor, ts=ts, value=value) for ts, value in points])


def every(start: datetime, step: timedelta, values: Iterable[float]) -> list[tuple[datetime, float]]:
    return [(start + i * step, value) for i, value in enumerate(values)]


def batch_for(sensor: Sensor, *values: float, ts: datetime) -> BatchOutcome:
    """A batch as the ingest worker would hand it over: readings one second apart, plus the device."""
    device = sensor.device
    readings = [
        StoredReading(device.farm_id, device.pk, sensor.pk, ts + timedelta(seconds=i), value)
        for i, value in enumerate(values)
    ]
    change = DeviceChange(device.farm_id, device.pk, DeviceStatus.ONLINE, readings[-1].ts, 80.0, -97.0, 7.5)
    return BatchOutcome.of_readings(readings, devices=[change])


def session_cookie(user) -> str:
    """Log ``user`` in through Django's session machinery and return the session key."""
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def logged_in_client(user) -> tuple[Client, str]:
    client = Client()
    client.force_login(user)
    return client, client.cookies[settings.SESSION_COOKIE_NAME].value


def communicator(
    farm_id: int | None,
    *,
    session_key: str | None = None,
    origin: bytes | None = ORIGIN,
    host: bytes = HOST,
    scheme="ws",
    path: str | None = None,
):
    """A socket to the farm's ``/ws/farms/<id>/``, or to ``path`` (e.g. the bell's ``/ws/inbox/``)."""
    from farm.asgi import application  # imported late: it loads the whole Django app

    headers = [(b"host", host)]
    if origin is not None:
        headers.append((b"origin", origin))
    if session_key is not None:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()))
    comm = WebsocketCommunicator(application, path or f"/ws/farms/{farm_id}/", headers=headers)
    comm.scope["scheme"] = scheme  # as daphne sets it: ws, or wss behind TLS
    return comm


async def connect_as(user, farm_id: int) -> tuple[WebsocketCommunicator, dict]:
    """Open a socket for ``user`` and return it with the snapshot it gets first."""
    key = await sync_to_async(session_cookie)(user)
    comm = communicator(farm_id, session_key=key)
    connected, _ = await comm.connect()
    assert connected
    return comm, json.loads(await comm.receive_from(timeout=5))


async def close_code(comm: WebsocketCommunicator, timeout: float = 5) -> int | None:
    """The code the server closes the socket with, skipping any data sent before."""
    while True:
        output = await comm.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output.get("code")


async def server_messages(comm: WebsocketCommunicator, timeout: float = 5) -> AsyncIterator[dict]:
    """The server's messages one by one, whether a frame held one or (a socket behind) an array of them."""
    while True:
        frame = json.loads(await comm.receive_from(timeout=timeout))
        for message in frame if isinstance(frame, list) else [frame]:
            yield message


@pytest.fixture(name="clean_channel_layer")
async def _clean_channel_layer():
    layer = get_channel_layer()
    await layer.flush()
    yield layer
    await layer.flush()


def member_of(farm: Farm, role: str = Role.MANAGER):
    return MembershipFactory.create(farm=farm, role=role, user=UserFactory.create())
