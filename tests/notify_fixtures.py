"""Notification tests: real receivers (an SMTP server, an HTTP server in a thread), members, events, channels."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import override_settings

from farm import celery_app
from farm.models import Role
from notifications.events import NotificationEvent
from notifications.models import NotificationChannel, Severity, Transition
from tests.factories import FarmFactory, MembershipFactory
from tests.mqtt_fixtures import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    port: int
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in turn; 200 once they run out
    hold: threading.Event | None = None  # when set by a test, each request waits for it before answering
    waiting: bool = False

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if receiver.hold is not None:
                receiver.waiting = True
                receiver.hold.wait(10)
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"refused by the test receiver" if status >= 400 else b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SmtpReceiver:
    port: int
    raw: list[bytes] = field(default_factory=list)

    @property
    def messages(self) -> list[Message]:
        return [message_from_bytes(m) for m in self.raw]


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    from aiosmtpd.controller import Controller

    receiver = SmtpReceiver(port=free_port())

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            receiver.raw.append(envelope.content)
            return "250 OK"

    controller = Controller(Inbox(), hostname="127.0.0.1", port=receiver.port)
    controller.start()
    smtp = {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": receiver.port,
        "EMAIL_USE_TLS": False,
        "EMAIL_USE_SSL": False,
        "EMAIL_TIMEOUT": 5,
    }
    try:
        with override_settings(**smtp):
            yield receiver
    finally:
        controller.stop()


@pytest.fixture
def eager() -> Iterator[None]:
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


def a_member(role: str = Role.MANAGER, **farm: Any) -> Any:
    return MembershipFactory(role=role, farm=FarmFactory(**farm))


def an_event(farm: Any, n: int = 1, severity: Severity = Severity.WARNING) -> NotificationEvent:
    return NotificationEvent(
        key=f"episode-{n}:fired",
        farm=farm,
        severity=severity,
        transition=Transition.FIRED,
        subject=f"Soil too dry: probe {n}",
        lines=(
            "Field: North Paddock",
            f"Sensor: probe {n} soil moisture",
            "Value: 17 % (below 20 % for 30 min)",
            "Note: open valve 3",
        ),
        link=f"/farms/{farm.slug}/alerts/{n}/",
    )


def a_channel(user: Any, kind: str, target: str, **kwargs: Any) -> NotificationChannel:
    return NotificationChannel.objects.create(user=user, kind=kind, target=target, **kwargs)
