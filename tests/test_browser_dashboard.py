"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, on the whole live stack.

Screenshots land in ``test-artifacts/`` (gitignored) for a person to look at.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e_fixtures import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.slow]
pytest_plugins = ["tests.mqtt_fixtures", "tests.e2e_fixtures"]  # mosquitto, live_stack, chromium (CSP-watched)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PASSWORD = "e2e-demo-password-not-secret"
PROBE = "brookside-soil-1"  # a native-MQTT soil probe of the demo farm


@pytest.fixture(scope="module")
def demo(live_stack: LiveStack) -> dict[str, Any]:
    return live_stack.seed({"what": "demo", "username": "demo", "password": PASSWORD})


def publish_moisture(stack: LiveStack, value: float) -> None:
    stack.publish(f"farm/{PROBE}/telemetry", json.dumps({"ts": int(time.time() * 1000), "soil_moisture": value}))


def fresh_value(current: str | None) -> float:
    """A value the card does not show yet, whatever earlier runs left in the database.

    Never a whole number: the page writes ``String(value)`` (``23``), Python ``str`` writes ``23.0``.
    """
    value = round(10 + time.time() * 7 % 80, 1)
    while value.is_integer() or str(value) == current:
        value = round(10 + (value + 1.1) % 80, 1)
    return value


def sign_in(page: Any, base_url: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base_url}/")


def test_the_demo_dashboard_shows_a_published_reading_and_catches_up_after_daphne_restarts(live_stack, demo, chromium):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    base = live_stack.daphne.base_url
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    with live_stack.logs_on_failure():
        sign_in(page, base)
        page.goto(f"{base}/farms/{demo['slug']}/")
        pill = page.locator("#live-status")
        card = page.locator(f"#sensor-{demo['sensors'][f'{PROBE}/soil_moisture']}.sensor-card")
        expect(pill).to_have_attribute("data-state", "live", timeout=10_000)

        value = fresh_value(card.get_attribute("data-value"))
        publish_moisture(live_stack, value)
        expect(card).to_have_attribute("data-value", str(value), timeout=2000)
        expect(card.locator("[data-role=value]")).to_have_text(f"{value:.1f}", timeout=2000)
        page.screenshot(path=ARTIFACTS / "browser-dashboard-live.png", full_page=True)

        live_stack.daphne.kill()
        expect(pill).to_have_attribute("data-state", "reconnecting", timeout=5000)
        missed = fresh_value(str(value))
        publish_moisture(live_stack, missed)  # stored while no daphne is there to push it
        live_stack.wait_stored(demo["sensors"][f"{PROBE}/soil_moisture"], missed)
        page.screenshot(path=ARTIFACTS / "browser-dashboard-reconnecting.png")

        live_stack.daphne_restart()
        expect(pill).to_have_attribute("data-state", "live", timeout=30_000)
        expect(card).to_have_attribute("data-value", str(missed), timeout=2000)
        expect(card.locator("[data-role=value]")).to_have_text(f"{missed:.1f}", timeout=2000)
        assert page.evaluate("window.furrow.stats.reconnects") >= 1
        page.screenshot(path=ARTIFACTS / "browser-dashboard-caught-up.png", full_page=True)
    page.close()
