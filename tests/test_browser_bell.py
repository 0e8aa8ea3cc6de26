"""The bell in a real browser: its count rises live when a delivery lands in another process (the
Celery path: plan, send, commit, nudge over Redis), the list page opens an item (read, then its
alert), and "mark all read" clears it. Screenshots land in ``test-artifacts/`` (copied to
docs/screenshots/).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.mqtt_fixtures import ROOT

if TYPE_CHECKING:
    from tests.e2e_fixtures import WatchedBrowser

pytestmark = [pytest.mark.browser, pytest.mark.slow]
pytest_plugins = ["tests.e2e_fixtures"]  # chromium (fails a test on any CSP violation)

ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "e2e-bell-password-not-secret"

SEED = """
from django.contrib.auth.models import User
from farm.models import Farm, Membership
from notifications.models import NotificationChannel
user = User.objects.create_user(username="olive-{tag}", password="{password}", first_name="Olive", last_name="Hart")
farm = Farm.objects.create(name="Brookside {tag}", slug="brookside-{tag}", time_zone="Europe/London")
Membership.objects.create(farm=farm, user=user, role="owner")
NotificationChannel.objects.create(user=user, kind="app", target="inbox", min_severity="info")
"""

# What a Celery worker does for one alert: plan its deliveries, send (here: into the inbox), commit;
# the bell hears of it after the commit, through Redis, in the web process.
DELIVER = """
import time
from django.contrib.auth.models import User
from farm.models import Farm
from notifications.events import NotificationEvent
from notifications.sending import delivery_send
from notifications.services import notifications_plan
farm = Farm.objects.get(slug="brookside-{tag}")
user = User.objects.get(username="olive-{tag}")
alerts = [
    ("critical", "Frost risk firing — Orchard air sensor", ["Field: Orchard", "Value: 1.2 °C", "Threshold: below 2 °C",
     "Note: Frost likely at crop height: start the orchard frost fans."]),
    ("warning", "Polytunnel heat firing — Polytunnel air sensor", ["Field: Polytunnels", "Value: 31.4 °C",
     "Threshold: above 30 °C", "Note: Open the tunnel sides and check the drip line."]),
    ("warning", "North Meadow too dry firing — North Meadow soil probe 1", ["Field: North Meadow", "Value: 18.2 %",
     "Threshold: below 20 %", "Note: Schedule irrigation."]),
]
for n, (severity, subject, lines) in enumerate(alerts[{first}:{last}], start={first}):
    if n > 0:
        # Past the storm window (NOTIFY_GROUP_SECONDS=1) since the previous item, also when that one
        # came in an earlier call a moment ago: one item each, none folded into a grouped message.
        time.sleep(1.2)
    event = NotificationEvent(key="bell-{tag}-%d" % n, farm=farm, severity=severity, transition="fired",
                              subject=subject, lines=tuple(lines), link="/farms/brookside-{tag}/alerts/")
    for delivery in notifications_plan(event=event, recipients=[user]):
        assert delivery_send(delivery_id=delivery.pk).sent
"""


@pytest.fixture(scope="module")
def site() -> Iterator[dict[str, Any]]:
    from tests.e2e_fixtures import daphne_serving, live_database_url, manage_shell, service_env  # plugin: import late

    database_url = live_database_url(os.environ["DATABASE_URL"], suffix="_bell_live")
    workdir = Path(tempfile.mkdtemp(prefix="furrow-bell-"))
    env = service_env(
        database_url=database_url,
        mqtt_url=os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"),
        NOTIFY_GROUP_SECONDS="1",
    )
    tag = secrets.token_hex(3)
    manage_shell(env, SEED.format(tag=tag, password=PASSWORD))
    try:
        with daphne_serving(env, workdir) as daphne:
            yield {"base": daphne.base_url, "tag": tag, "env": env}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def deliver(site: dict[str, Any], first: int, last: int) -> None:
    from tests.e2e_fixtures import manage_shell

    manage_shell(site["env"], DELIVER.format(tag=site["tag"], first=first, last=last))


def test_the_bell_counts_new_notifications_live_and_the_list_opens_and_clears_them(
    site: dict[str, Any], chromium: WatchedBrowser
):
    from playwright.sync_api import expect

    from tests.e2e_fixtures import browser_sign_in  # a plugin: import late

    ARTIFACTS.mkdir(exist_ok=True)
    base, tag = site["base"], site["tag"]
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    browser_sign_in(page, base, f"olive-{tag}", PASSWORD)
    page.goto(f"{base}/farms/brookside-{tag}/")
    bell = page.locator("[data-bell]")
    count = bell.locator("[data-bell-count]")
    expect(bell).to_have_attribute("data-live", "1")  # the socket is open
    expect(count).to_be_hidden()
    expect(bell).to_have_attribute("aria-label", "Notifications, 0 unread")

    deliver(site, 0, 1)  # another process; this page is not reloaded
    expect(count).to_have_text("1")
    expect(count).to_be_visible()
    deliver(site, 1, 3)
    expect(count).to_have_text("3")
    expect(bell).to_have_attribute("aria-label", "Notifications, 3 unread")
    page.screenshot(path=ARTIFACTS / "bell-desktop.png", clip={"x": 0, "y": 0, "width": 1280, "height": 260})

    phone = chromium.new_page(viewport={"width": 390, "height": 844})
    phone.context.add_cookies(page.context.cookies())
    phone.goto(f"{base}/farms/brookside-{tag}/")
    expect(phone.locator("[data-bell-count]")).to_have_text("3")
    phone.screenshot(path=ARTIFACTS / "bell-phone.png", clip={"x": 0, "y": 0, "width": 390, "height": 300})

    bell.click()
    expect(page.get_by_role("heading", name="Your notifications")).to_be_visible()
    items = page.locator("[data-inbox-item]")
    expect(items).to_have_count(3)
    expect(items.first).to_contain_text("North Meadow too dry")  # newest first
    expect(items.last).to_contain_text("Frost risk")

    items.last.click()  # the frost alert: marked read, then its alert
    expect(page).to_have_url(f"{base}/farms/brookside-{tag}/alerts/")
    expect(page.locator("[data-bell-count]")).to_have_text("2")
    expect(phone.locator("[data-bell-count]")).to_have_text("2")  # the other device hears it too (live)

    page.goto(f"{base}/account/notifications/inbox/")
    expect(page.locator("[data-inbox-item][data-unread]")).to_have_count(2)
    page.screenshot(path=ARTIFACTS / "inbox-desktop.png", full_page=True)  # two unread, one read
    phone.goto(f"{base}/account/notifications/inbox/")
    phone.screenshot(path=ARTIFACTS / "inbox-phone.png", full_page=True)
    page.get_by_role("button", name="Mark all read").click()
    expect(page.get_by_text("2 notifications marked read.")).to_be_visible()
    expect(page.locator("[data-inbox-item][data-unread]")).to_have_count(0)
    expect(page.locator("[data-bell-count]")).to_be_hidden()
    expect(phone.locator("[data-bell-count]")).to_be_hidden()
