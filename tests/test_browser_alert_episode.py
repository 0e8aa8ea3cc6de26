"""Who a rule tells, and an alert's own page, in a real browser at phone width under the CSP.

An owner opens a rule on a phone, clears every role (the error shows beside the checkboxes),
names a viewer, sets an escalation and turns the resolve message off, and saves; then opens a
firing alert from the alerts page and reads who was told, on which channel, and what failed.
Screenshots of the rule form's "Who is told" section and of the alert's page go to
``docs/screenshots/`` (the README shows them).
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

from tests.mqtt_fixtures import ROOT

if TYPE_CHECKING:
    from tests.e2e_fixtures import WatchedBrowser

pytestmark = [pytest.mark.browser, pytest.mark.slow]
pytest_plugins = ["tests.e2e_fixtures"]  # chromium (fails a test on any CSP violation)

SCREENSHOTS = ROOT / "docs" / "screenshots"
PASSWORD = "e2e-episode-password-not-secret"
PHONE = {"width": 390, "height": 844}

SEED = """
from datetime import timedelta
from django.contrib.auth.models import User
from django.utils import timezone
from alerts.models import AlertEpisode, AlertRule
from farm.models import Farm, Field, Membership
from notifications.models import Delivery
from sensors.models import Device, DeviceKind, Sensor
def person(username, first, last, role):
    user = User.objects.create_user(username=f"{{username}}-{tag}", password="{password}", first_name=first,
                                    last_name=last, email=f"{{username}}-{tag}@example.com")
    Membership.objects.create(farm=farm, user=user, role=role)
    return user
farm = Farm.objects.create(name="Brookside {tag}", slug="brookside-{tag}", time_zone="Europe/London")
owner = person("olive", "Olive", "Hart", "owner")
manager = person("mo", "Mo", "Reyes", "manager")
person("vera", "Vera", "Lane", "viewer")
field = Field.objects.create(farm=farm, name="North Paddock", slug="north-paddock")
kind = DeviceKind.objects.create(name="Soil probe {tag}", slug="soil-probe-{tag}")
device = Device.objects.create(uid="probe-{tag}", name="North probe", farm=farm, field=field, kind=kind)
sensor = Sensor.objects.create(device=device, key="soil_moisture", label="Soil moisture", unit="%")
rule = AlertRule.objects.create(farm=farm, name="Soil too dry", metric="soil_moisture", kind="below",
                                threshold=20, clear=23, severity="critical", note="Open valve 3 and call Sam.")
now = timezone.now()
started = now - timedelta(minutes=47)
episode = AlertEpisode.objects.create(rule=rule, sensor=sensor, started_at=started, first_value=19.2,
                                      worst_value=14.8, last_value=15.5, notified_at=started)
def told(user, label, state, **kw):
    Delivery.objects.create(key=f"{{episode.pk}}:fired:{{user.pk}}:{{label}}", event_key=f"{{episode.pk}}:fired",
                            farm=farm, user=user, channel_label=label, severity="critical", transition="fired",
                            subject="Soil too dry firing", created_at=started, due_at=started, state=state, **kw)
told(manager, "Mo's phone (ntfy)", "sent", sent_at=started + timedelta(seconds=2), attempts=1)
told(owner, "Farm office mail", "sent", sent_at=started + timedelta(seconds=3), attempts=1)
told(owner, "Old webhook", "failed", attempts=6, last_error="HTTP 410 Gone: this hook was removed")
print("EPISODE", episode.pk, "RULE", rule.pk)
"""


@pytest.fixture(scope="module")
def site() -> Iterator[dict[str, Any]]:
    from tests.e2e_fixtures import daphne_serving, live_database_url, service_env  # a plugin: import late

    database_url = live_database_url(os.environ["DATABASE_URL"])
    workdir = Path(tempfile.mkdtemp(prefix="furrow-episode-"))
    env = service_env(database_url=database_url, mqtt_url=os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"))
    tag = secrets.token_hex(3)
    code = SEED.format(tag=tag, password=PASSWORD)
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    words = done.stdout.split()
    ids = {"episode": int(words[words.index("EPISODE") + 1]), "rule": int(words[words.index("RULE") + 1])}
    with daphne_serving(env, workdir) as daphne:
        yield {"base": daphne.base_url, "tag": tag, **ids}


def test_an_owner_sets_who_is_told_on_a_phone_and_reads_an_alerts_delivery_log(
    site: dict[str, Any], chromium: WatchedBrowser
):
    from playwright.sync_api import expect

    from tests.e2e_fixtures import browser_sign_in  # a plugin: import late

    base, tag = site["base"], site["tag"]
    farm = f"{base}/farms/brookside-{tag}"
    page = chromium.new_page(viewport=PHONE)
    browser_sign_in(page, base, f"olive-{tag}", PASSWORD)

    page.goto(f"{farm}/alerts/rules/{site['rule']}/")
    who = page.locator("#who-is-told")
    expect(who.get_by_role("checkbox", name="Owners")).to_be_checked()
    expect(who.get_by_role("checkbox", name="Managers")).to_be_checked()
    expect(who.get_by_role("checkbox", name="Viewers")).not_to_be_checked()
    who.get_by_role("checkbox", name="Owners").uncheck()
    who.get_by_role("checkbox", name="Managers").uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#id_notify_roles_error")).to_contain_text("Choose at least one role or a named member")

    who = page.locator("#who-is-told")
    who.get_by_role("checkbox", name="Managers").check()
    who.get_by_label("And these members").select_option(label="Vera Lane (viewer)")
    who.get_by_label("Escalate to the owners after (minutes)").fill("30")
    who.get_by_label("Tell them when it resolves").uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Rule “Soil too dry” saved.")).to_be_visible()
    page.goto(f"{farm}/alerts/rules/{site['rule']}/")
    expect(page.get_by_label("Escalate to the owners after (minutes)")).to_have_value("30")
    expect(page.get_by_label("Tell them when it resolves")).not_to_be_checked()
    expect(page.get_by_label("And these members").locator("option:checked")).to_have_text("Vera Lane (viewer)")
    box = page.locator("#who-is-told").bounding_box()
    assert box is not None
    top = box["y"] + page.evaluate("window.scrollY") - 24
    clip = {"x": 0, "y": top, "width": PHONE["width"], "height": box["height"] + 48}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "alert-rule-who-is-told-phone.png", full_page=True, clip=clip)

    page.goto(f"{farm}/alerts/")
    page.get_by_role("link", name="Soil too dry").first.click()
    expect(page).to_have_url(f"{farm}/alerts/{site['episode']}/")
    expect(page.locator(".episode-facts")).to_contain_text("North probe · Soil moisture")
    log = page.locator("[data-role=delivery-log]")
    expect(log.locator("tr[data-delivery=sent]")).to_have_count(2)
    expect(log.locator("tr[data-delivery=failed]")).to_contain_text("HTTP 410 Gone: this hook was removed")
    expect(page.get_by_role("link", name=f"All undelivered notifications of Brookside {tag}")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing runs off a phone
    page.screenshot(path=SCREENSHOTS / "alert-episode-phone.png", full_page=True)
    page.close()
