"""EMAIL_URL: one value names the mail server; a bad one stops start-up naming EMAIL_URL; a good one
really sends (a local SMTP server receives what `manage.py sendtestemail` sends under it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest

from farm.env import (
    CONSOLE_BACKEND,
    FILE_BACKEND,
    SMTP_BACKEND,
    ConfigError,
    EmailSettings,
    email_settings,
    env_email,
)
from tests.mqtt_fixtures import ROOT, free_port

# A test server's password, not a secret.
PASSWORD = "p%40ss:word"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtp://postmaster%40example.com:p%40ss@mail.example.com:587",
            EmailSettings(SMTP_BACKEND, "mail.example.com", 587, "postmaster@example.com", "p@ss", True, False),
        ),
        ("smtp://mail.example.com", EmailSettings(SMTP_BACKEND, "mail.example.com", 587, use_tls=True)),
        ("smtp://relay.lan:25", EmailSettings(SMTP_BACKEND, "relay.lan", 25)),
        ("smtp://relay.lan:25?tls=1", EmailSettings(SMTP_BACKEND, "relay.lan", 25, use_tls=True)),
        ("smtp://relay.lan:587?tls=0", EmailSettings(SMTP_BACKEND, "relay.lan", 587)),
        ("smtps://u:p@mail.example.com", EmailSettings(SMTP_BACKEND, "mail.example.com", 465, "u", "p", use_ssl=True)),
        ("smtp://mail.example.com?ssl=1", EmailSettings(SMTP_BACKEND, "mail.example.com", 465, use_ssl=True)),
        (
            "smtps://mail.example.com:2465?timeout=30",
            EmailSettings(SMTP_BACKEND, "mail.example.com", 2465, use_ssl=True, timeout=30),
        ),
        ("file:///var/lib/furrow/mail", EmailSettings(FILE_BACKEND, file_path="/var/lib/furrow/mail")),
        ("console://", EmailSettings(CONSOLE_BACKEND)),
    ],
)
def test_a_good_email_url_gives_djangos_mail_settings(url, expected):
    assert email_settings("EMAIL_URL", url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mail.example.com:587", "must start with smtp://"),
        ("http://mail.example.com", "must start with smtp://"),
        ("smtp://", "has no host"),
        ("smtp://:secret@:587", "has no host"),
        ("smtp://mail.example.com:port", "invalid port"),
        ("smtp://mail.example.com:99999", "invalid port"),
        ("smtps://mail.example.com?tls=1", "both implicit TLS"),
        ("smtp://mail.example.com?ssl=1&tls=1", "both implicit TLS"),
        ("smtp://mail.example.com?tsl=1", "unknown option 'tsl'"),
        ("smtp://mail.example.com?tls=perhaps", "option tls must be a boolean"),
        ("smtp://mail.example.com?timeout=0", "option timeout must be at least 1"),
        ("file://", "needs a directory"),
    ],
)
def test_a_bad_email_url_names_the_variable_and_what_is_wrong(url, says):
    with pytest.raises(ConfigError, match=r"^EMAIL_URL") as error:
        email_settings("EMAIL_URL", url)
    assert says in str(error.value)


def test_the_password_never_appears_in_the_error():
    with pytest.raises(ConfigError) as error:
        email_settings("EMAIL_URL", "smtp://user:hunter2@mail.example.com?tsl=1")
    assert "hunter2" not in str(error.value)
    assert "***" in str(error.value)


def test_an_unset_or_blank_email_url_leaves_the_fallback_in_charge():
    assert env_email(environ={}) is None
    assert env_email(environ={"EMAIL_URL": "  "}) is None


@pytest.fixture
def smtp_with_login() -> Iterator[tuple[int, list[bytes], list[tuple[bytes, bytes]]]]:
    """A local SMTP server that takes AUTH LOGIN/PLAIN without TLS and records the credentials."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    port = free_port()
    received: list[bytes] = []
    logins: list[tuple[bytes, bytes]] = []

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content)
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=True)

    controller = Controller(
        Inbox(), hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False
    )
    controller.start()
    try:
        yield port, received, logins
    finally:
        controller.stop()


def test_a_message_sent_under_email_url_reaches_a_real_smtp_server_with_its_credentials(smtp_with_login):
    port, received, logins = smtp_with_login
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "farm.settings",
        "EMAIL_URL": f"smtp://grower%40example.com:{PASSWORD}@127.0.0.1:{port}?tls=0&timeout=5",
        "EMAIL_HOST": "",
        "DEFAULT_FROM_EMAIL": "Brookside alerts <alerts@brookside.example>",
    }
    script = (
        "import django; django.setup()\n"
        "from django.conf import settings as s\n"
        "print(s.EMAIL_HOST_USER, s.EMAIL_HOST_PASSWORD, s.EMAIL_USE_TLS)\n"
        "from django.core.mail import send_mail\n"
        "send_mail('Frost risk', 'North Meadow 1.2 C', None, ['olive@example.com'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["grower@example.com", "p@ss:word", "False"]
    assert logins == [(b"grower@example.com", b"p@ss:word")]
    [message] = [message_from_bytes(raw) for raw in received]
    assert message["Subject"] == "Frost risk"
    assert message["From"] == "Brookside alerts <alerts@brookside.example>"
    assert message["To"] == "olive@example.com"
