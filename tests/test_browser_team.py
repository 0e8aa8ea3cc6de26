"""Inviting a colleague in a real browser: daphne on its own database, headless Chromium, mail from the file sink.

The owner invites a viewer from the team page; the viewer opens the link from the email that
landed in the local mail sink (the file backend ``make run`` uses), sets up an account, and
sees the farm with no edit controls. Screenshots land in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_fixtures import browser_sign_in, daphne_serving, live_database_url, service_env
from tests.mqtt_fixtures import ROOT, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "e2e-owner-password-not-secret"

SEED = """
from farm.models import Role
from farm.services import farm_create, field_create, membership_set
from django.contrib.auth.models import User
owner = User.objects.create_user(username="owner-{tag}", email="owner-{tag}@example.com", password="{password}",
                                 first_name="Olive", last_name="Hart")
farm = farm_create(name="Team {tag}", slug="team-{tag}", time_zone="Europe/London", location="Somerset")
field_create(farm=farm, name="North Paddock", crop="Wheat")
membership_set(farm=farm, user=owner, role=Role.OWNER)
for name in ("Sam Reed", "Ana Ruiz"):
    first, last = name.split()
    u = User.objects.create_user(username=f"{{first.lower()}}-{tag}", email=f"{{first.lower()}}-{tag}@example.com",
                                 first_name=first, last_name=last)
    membership_set(farm=farm, user=u, role=Role.MANAGER if first == "Sam" else Role.VIEWER)
"""


@pytest.fixture(scope="module")
def site() -> Iterator[dict[str, Any]]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: the browser tests need Debian's chromium (apt install chromium)")
    database_url = live_database_url(os.environ["DATABASE_URL"], suffix="_team_live")
    workdir = Path(tempfile.mkdtemp(prefix="furrow-team-"))
    mail_dir = workdir / "mail"
    env = service_env(
        database_url=database_url, mqtt_url=os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"),
        EMAIL_FILE_PATH=str(mail_dir), EMAIL_HOST="",
    )  # fmt: skip
    tag = secrets.token_hex(3)
    code = SEED.format(tag=tag, password=PASSWORD)
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True, timeout=120)
    with daphne_serving(env, workdir) as daphne:
        yield {"base": daphne.base_url, "tag": tag, "mail": mail_dir, "daphne": daphne}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def link_from_sink(mail_dir: Path, to: str) -> str:
    def found() -> str | None:
        for path in sorted(mail_dir.glob("*.log")) if mail_dir.exists() else []:
            text = path.read_text()
            if f"To: {to}" in text:
                match = re.search(r"https?://\S+/invitations/\S+/", text)
                return match.group(0) if match else None
        return None

    wait_until(found, timeout=10, what=f"an invitation to {to} in {mail_dir}")
    link = found()
    assert link
    return link


def test_an_owner_invites_a_viewer_who_accepts_from_the_email_and_sees_no_edit_controls(site, chromium):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    base, tag = site["base"], site["tag"]
    owner = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = owner.new_page()
    browser_sign_in(page, base, f"owner-{tag}", PASSWORD)
    page.goto(f"{base}/farms/team-{tag}/")
    page.get_by_role("link", name="Team").click()
    expect(page).to_have_url(f"{base}/farms/team-{tag}/team/")

    email = f"vic-{tag}@example.com"
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text(f"Invitation sent to {email}.")).to_be_visible()
    expect(page.locator(f"[data-invitation='{email}']")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "team-desktop.png", full_page=True)

    link = link_from_sink(site["mail"], email)
    invitee = chromium.new_context(viewport={"width": 390, "height": 844}).new_page()
    invitee.goto(link)
    expect(invitee.get_by_role("heading", name=f"Join Team {tag}")).to_be_visible()
    invitee.screenshot(path=ARTIFACTS / "invitation-phone.png", full_page=True)
    invitee.get_by_label("Username").fill(f"vic-{tag}")
    invitee.get_by_label("First name").fill("Vic")
    invitee.get_by_label("Password", exact=True).fill("a quiet field at dawn 7")
    invitee.get_by_label("Password confirmation").fill("a quiet field at dawn 7")
    invitee.get_by_role("button", name="Create account and join").click()

    expect(invitee).to_have_url(f"{base}/farms/team-{tag}/")
    expect(invitee.get_by_role("heading", name=f"Team {tag}")).to_be_visible()
    tabs = invitee.locator(".farm-tabs")
    expect(tabs.get_by_role("link", name="Team")).to_be_visible()
    expect(tabs.get_by_role("link", name="Fields")).to_have_count(0)
    expect(tabs.get_by_role("link", name="Settings")).to_have_count(0)
    invitee.goto(f"{base}/farms/team-{tag}/team/")
    expect(invitee.locator(f"[data-member='vic-{tag}']")).to_be_visible()
    expect(invitee.locator("select[name=role]")).to_have_count(0)
    expect(invitee.get_by_role("button", name="Remove")).to_have_count(0)
    expect(invitee.get_by_text("Invite a colleague")).to_have_count(0)
    assert invitee.goto(f"{base}/farms/team-{tag}/settings/").status == 403

    page.reload()
    expect(page.locator(f"[data-member='vic-{tag}']")).to_be_visible()
    expect(page.get_by_text("joined")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "team-desktop.png", full_page=True)
    phone = chromium.new_context(viewport={"width": 390, "height": 844}, storage_state=owner.storage_state())
    phone_page = phone.new_page()
    phone_page.goto(f"{base}/farms/team-{tag}/team/")
    phone_page.screenshot(path=ARTIFACTS / "team-phone.png", full_page=True)
    page.goto(f"{base}/farms/team-{tag}/settings/")
    page.screenshot(path=ARTIFACTS / "settings-desktop.png", full_page=True)
    page.goto(f"{base}/farms/team-{tag}/fields/")
    page.screenshot(path=ARTIFACTS / "fields-desktop.png", full_page=True)
