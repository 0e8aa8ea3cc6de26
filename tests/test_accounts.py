"""A person's own account: profile, password change, password reset by email, and login throttling."""

from __future__ import annotations

import re
from datetime import timedelta
from email import message_from_bytes
from typing import Any, cast

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from tests.factories import UserFactory
from tests.mqtt_fixtures import free_port

PASSWORD = "correct horse battery staple"  # UserFactory's
pytestmark = pytest.mark.django_db


def a_user(**kwargs: Any) -> User:
    return cast(User, UserFactory(**kwargs))


def sign_in(client: Client, username: str, password: str, address: str = "127.0.0.1") -> int:
    response = client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)
    return response.status_code  # 302 signed in, 200 wrong password, 429 locked out


def test_a_person_edits_their_name_and_email():
    user = a_user()
    client = Client()
    client.force_login(user)
    response = client.post(
        reverse("account-profile"), {"first_name": "Ada", "last_name": "Field", "email": "ada@x.org"}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.first_name, user.email) == ("Ada", "ada@x.org")


def test_an_email_another_account_uses_is_an_error_beside_the_field():
    a_user(email="taken@example.com")
    client = Client()
    client.force_login(a_user())
    response = client.post(
        reverse("account-profile"), {"first_name": "", "last_name": "", "email": "TAKEN@example.com"}
    )
    assert response.status_code == 400
    assert b"Another account already uses this address." in response.content
    assert b'aria-invalid="true"' in response.content


def test_a_person_changes_their_password():
    user = a_user()
    client = Client()
    client.force_login(user)
    response = client.post(
        reverse("password-change"),
        {"old_password": PASSWORD, "new_password1": "winter barley 2031", "new_password2": "winter barley 2031"},
    )
    assert response.status_code == 302
    assert sign_in(Client(), user.username, "winter barley 2031") == 302


def reset_link(body: str) -> str:
    match = re.search(r"https?://[^/\s]+(/account/reset/[^\s]+/)", body)
    assert match, body
    return match.group(1)


def reset_password(link: str, new: str) -> None:
    client = Client()
    form_page = client.get(link, follow=True)  # Django swaps the token for a session and redirects
    response = client.post(form_page.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert response.status_code == 302, response.content.decode()[:1500]


def test_a_password_reset_by_email_sets_a_new_password():
    user = a_user()
    Client().post(reverse("password-reset"), {"email": user.email})
    assert mail.outbox[-1].to == [user.email]
    reset_password(reset_link(str(mail.outbox[-1].body)), "spring oats 2032")
    assert sign_in(Client(), user.username, "spring oats 2032") == 302


def test_a_password_reset_goes_out_over_real_smtp():
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[bytes] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages.append(envelope.content)
            return "250 OK"

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "127.0.0.1",
                "EMAIL_PORT": port, "EMAIL_USE_TLS": False}  # fmt: skip
        user = a_user()
        with override_settings(**smtp):
            Client().post(reverse("password-reset"), {"email": user.email})
    finally:
        controller.stop()
    assert len(inbox.messages) == 1
    message = message_from_bytes(inbox.messages[0])
    assert message["To"] == user.email
    assert message["Subject"] == "Reset your Furrow password"
    reset_password(reset_link(message.get_payload(decode=True).decode()), "summer rye 2033")  # type: ignore[union-attr]
    assert sign_in(Client(), user.username, "summer rye 2033") == 302


def test_thirty_wrong_passwords_lock_that_address_out_for_a_while_only():
    user = a_user()
    attacker = Client()
    outcomes = [sign_in(attacker, user.username, f"guess {n}", "203.0.113.9") for n in range(30)]
    # The fifth wrong guess starts a pause: from then on nothing is checked, right or wrong.
    assert outcomes[:4] == [200] * 4
    assert outcomes[4:] == [429] * 26
    assert sign_in(attacker, user.username, PASSWORD, "203.0.113.9") == 429
    locked = attacker.post(reverse("login"), {"username": user.username, "password": "x"}, REMOTE_ADDR="203.0.113.9")
    assert b"Try again in 15 minutes" in locked.content
    assert reverse("password-reset").encode() in locked.content

    # The real user, elsewhere, is not locked out by someone else's guessing.
    assert sign_in(Client(), user.username, PASSWORD, "198.51.100.7") == 302
    # And the pause ends.
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert sign_in(Client(), user.username, PASSWORD, "203.0.113.9") == 302


def test_a_password_reset_lifts_a_lockout_at_once():
    user = a_user()
    for n in range(6):
        sign_in(Client(), user.username, f"guess {n}")
    assert sign_in(Client(), user.username, PASSWORD) == 429
    Client().post(reverse("password-reset"), {"email": user.email})
    reset_password(reset_link(str(mail.outbox[-1].body)), "autumn beans 2034")
    assert sign_in(Client(), user.username, "autumn beans 2034") == 302
