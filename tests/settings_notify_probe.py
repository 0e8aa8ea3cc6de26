"""Test settings plus the notification kill probe (tests/notify_probe), for Celery worker subprocesses."""

from farm.settings_test import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.notify_probe"]  # noqa: F405
# An unacknowledged task of a killed worker goes back to the queue after 2 s, not an hour.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2}
