"""The Notifications page in a real browser under the Content-Security-Policy: add channels (an
error beside the field first), send a test to a real HTTP receiver and to a dead Apprise URL,
set quiet hours; the owner sees a failed delivery under the farm's Notifications tab.
Screenshots land in ``test-artifacts/`` (copied to docs/screenshots/).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from notifications.signing import SIGNATURE_HEADER
from tests.mqtt_fixtures import ROOT, free_port

if TYPE_CHECKING:
    from tests.e2e_fixtures import WatchedBrowser
    from tests.notify_fixtures import HttpReceiver

pytestmark = [pytest.mark.browser, pytest.mark.slow]
pytest_plugins = ["tests.e2e_fixtures"]  # chromium (fails a test on any CSP violation)

ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "e2e-notify-password-not-secret"

SEED = """
from django.contrib.auth.models import User
from django.utils import timezone
from farm.models import Farm, Membership
from notifications.models import Delivery, NotificationChannel
user = User.objects.create_user(username="olive-{tag}", email="olive-{tag}@example.com", password="{password}",
                                first_name="Olive", last_name="Hart")
farm = Farm.objects.create(name="Brookside {tag}", slug="brookside-{tag}", time_zone="Europe/London")
Membership.objects.create(farm=farm, user=user, role="owner")
old = NotificationChannel.objects.create(user=user, kind="apprise", target="ntfy://brookside-frost", label="Old phone")
now = timezone.now()
Delivery.objects.create(key="seed-{tag}", farm=farm, user=user, channel=old, channel_label="Old phone",
                        severity="critical", transition="fired", subject="Frost risk: North Paddock 1.4 °C",
                        created_at=now, due_at=now, state="failed", attempts=6,
                        last_error="HTTP 403 Forbidden: topic requires a token")
"""


@pytest.fixture(scope="module")
def site() -> Iterator[dict[str, Any]]:
    from tests.e2e_fixtures import (  # a plugin of this module: import late
        daphne_serving,
        live_database_url,
        service_env,
    )

    database_url = live_database_url(os.environ["DATABASE_URL"], suffix="_notify_live")
    workdir = Path(tempfile.mkdtemp(prefix="furrow-notify-"))
    env = service_env(
        database_url=database_url,
        mqtt_url=os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"),
        EMAIL_FILE_PATH=str(workdir / "mail"),
        EMAIL_HOST="",
    )
    tag = secrets.token_hex(3)
    code = SEED.format(tag=tag, password=PASSWORD)
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True, timeout=120)
    with daphne_serving(env, workdir) as daphne:
        yield {"base": daphne.base_url, "tag": tag}


def test_a_person_sets_up_channels_tests_them_and_sets_quiet_hours(
    site: dict[str, Any], chromium: WatchedBrowser, http_receiver: HttpReceiver
):
    from playwright.sync_api import expect

    from tests.e2e_fixtures import browser_sign_in  # a plugin: import late

    ARTIFACTS.mkdir(exist_ok=True)
    base, tag = site["base"], site["tag"]
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    browser_sign_in(page, base, f"olive-{tag}", PASSWORD)
    page.goto(f"{base}/account/")
    page.get_by_role("link", name="Notification settings").click()
    expect(page.get_by_role("heading", name="Notifications", exact=True)).to_be_visible()
    expect(page.locator("[data-failed]")).to_contain_text("topic requires a token")

    page.get_by_label("Kind").select_option("webhook")
    page.get_by_label("Where to").fill("ftp://office.example/hook")
    page.get_by_role("button", name="Add channel").click()
    expect(page.locator("#id_channel-target_error")).to_have_text("Enter an http:// or https:// URL.")
    page.get_by_label("Where to").fill(http_receiver.url())
    page.get_by_label("Label").fill("Farm office")
    page.get_by_role("button", name="Add channel").click()
    expect(page.get_by_text("Channel Farm office added.")).to_be_visible()

    office = page.locator(".member", has_text="Farm office")
    office.get_by_role("button", name="Send a test").click()
    expect(page.get_by_text("Test sent to Farm office.")).to_be_visible()
    assert len(http_receiver.requests) == 1
    assert SIGNATURE_HEADER in http_receiver.requests[0].headers

    page.get_by_label("Kind").select_option("apprise")
    page.get_by_label("Where to").fill(f"json://127.0.0.1:{free_port()}/")
    page.get_by_label("Label").fill("Broken hook")
    page.get_by_role("button", name="Add channel").click()
    page.locator(".member", has_text="Broken hook").get_by_role("button", name="Send a test").click()
    expect(page.get_by_role("alert").filter(has_text="The test to Broken hook failed")).to_be_visible()
    expect(page.locator(".member", has_text="Broken hook").locator("[data-test-result=failed]")).to_be_visible()

    page.get_by_label("Quiet from").fill("22:00")
    page.get_by_label("Quiet until").fill("06:30")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Notification settings saved.")).to_be_visible()
    expect(page.get_by_label("Quiet until")).to_have_value("06:30")
    page.screenshot(path=ARTIFACTS / "notifications-desktop.png", full_page=True)
    phone = chromium.new_page(viewport={"width": 390, "height": 844})
    phone.context.add_cookies(page.context.cookies())
    phone.goto(f"{base}/account/notifications/")
    phone.screenshot(path=ARTIFACTS / "notifications-phone.png", full_page=True)

    page.goto(f"{base}/farms/brookside-{tag}/")
    page.locator(".farm-tabs").get_by_role("link", name="Notifications").click()
    expect(page.locator("[data-failed]")).to_contain_text("Frost risk: North Paddock")
