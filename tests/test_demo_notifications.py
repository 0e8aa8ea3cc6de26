"""The first run: the demo user has a bell and an email channel, so a demo alert shows up in the bell
and as a file in the local mail sink — nothing leaves the machine."""

from __future__ import annotations

import importlib
import time
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from django.apps import apps
from django.test import override_settings

from alerts.models import AlertEpisode
from farm.devstack.demo import demo_seed
from notifications.demo import demo_channels_ensure
from notifications.models import ChannelKind, Delivery, DeliveryState, InboxItem, NotificationChannel
from outbox.services import outbox_drain
from tests.alert_fixtures import ingest
from tests.mqtt_fixtures import wait_until

pytestmark = pytest.mark.django_db(transaction=True)  # real commits: the outbox's nudge runs on commit


@pytest.fixture(autouse=True)
def shipped_kinds() -> None:
    """The shipped device kinds the demo farm uses (migrations install them; a flush empties them).

    Not ``serialized_rollback``: after another transactional test's flush has recreated the content
    types, restoring the serialized ones collides with them.
    """
    importlib.import_module("sensors.migrations.0004_shipped_device_kinds").install_kinds(apps, None)
    importlib.import_module("sensors.migrations.0012_metric_ranges").ranges_fix(apps, None)


def test_the_demo_user_gets_a_bell_and_an_email_channel_once():
    seed = demo_seed(username="demo", password="a long enough demo password")
    channels = NotificationChannel.objects.filter(user_id=seed.user.pk)
    assert sorted(c.kind for c in channels) == [ChannelKind.APP, ChannelKind.EMAIL]
    assert {c.min_severity for c in channels} == {"info"}
    assert channels.get(kind=ChannelKind.EMAIL).target == "demo@furrow.localhost"
    demo_seed(username="demo", password="a long enough demo password")  # every start of make run
    assert demo_channels_ensure(user=seed.user) == []
    assert NotificationChannel.objects.filter(user_id=seed.user.pk).count() == 2


def test_a_demo_alert_rings_the_bell_and_lands_in_the_mail_sink(tmp_path: Path, eager):
    seed = demo_seed(username="demo", password="a long enough demo password")
    sink = tmp_path / "mail"
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend", EMAIL_FILE_PATH=str(sink)):
        # The demo's "Pump battery low" rule (info, no delay): one low reading fires it.
        ingest({"ts": int(time.time()) - 5, "battery": 11.0}, uid="brookside-pump-battery")
        outbox_drain()
        wait_until(lambda: Delivery.objects.filter(state=DeliveryState.SENT).count() == 2, timeout=10, what="sends")
    [item] = InboxItem.objects.filter(user_id=seed.user.pk)
    assert "Pump battery low" in item.subject
    [episode] = AlertEpisode.objects.filter(rule__farm=seed.farm, rule__name="Pump battery low")
    assert item.link == f"/farms/{seed.farm.slug}/alerts/{episode.pk}/"  # the alert's own page
    [mail] = list(sink.iterdir())
    message = message_from_bytes(mail.read_bytes())
    assert message["To"] == "demo@furrow.localhost"
    assert "Pump battery low firing" in str(make_header(decode_header(message["Subject"])))
