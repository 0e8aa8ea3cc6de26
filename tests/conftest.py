"""Suite-wide fixtures. Tests run on the real PostgreSQL and Redis named by the environment."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import MembershipFactory, UserFactory

pytest_plugins = [
    "tests.mqtt_fixtures",  # one session-wide Mosquitto for every module that asks for it
    "tests.notify_fixtures",  # SMTP and HTTP receivers for notification tests
]


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def staff_user(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def member(db):
    """A manager of a fresh farm: ``member.user`` and ``member.farm``."""
    return MembershipFactory()


@pytest.fixture
def logged_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client
