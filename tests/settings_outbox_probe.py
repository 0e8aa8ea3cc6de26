"""Test settings plus the outbox probe app (tests/outbox_probe), for worker subprocesses."""

from farm.settings_test import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.outbox_probe"]  # noqa: F405
