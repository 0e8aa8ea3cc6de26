"""An alert's whole life in a real browser, on the live stack (Mosquitto → ingest → Redis → daphne).

A rule made in the form from a preset and backtested; a breaching reading fires it and the
dashboard shows it live (header count, the metric, the critical notice, the chart's lines);
it is acknowledged on the alerts page and resolves on a recovered reading. The screenshots of
the dashboard with the alert firing go to ``docs/screenshots/`` (the README shows them).
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

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # gitignored: for a person to look at
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
PASSWORD = "e2e-demo-password-not-secret"
PROBE = "brookside-soil-2"  # a native-MQTT soil probe of the demo farm; the dashboard test publishes to soil-1
PROBE_NAME = "North Meadow soil probe 2"


@pytest.fixture(scope="module")
def demo(live_stack: LiveStack) -> dict[str, Any]:
    return live_stack.seed({"what": "demo", "username": "demo", "password": PASSWORD})


def publish_moisture(stack: LiveStack, value: float) -> None:
    # LiveStack.publish: tests.e2e_fixtures.mqtt_publish_one, waiting for the broker's PUBACK.
    stack.publish(f"farm/{PROBE}/telemetry", json.dumps({"ts": int(time.time() * 1000), "soil_moisture": value}))


def sign_in(page: Any, base_url: str) -> None:
    from playwright.sync_api import expect

    from tests.e2e_fixtures import browser_sign_in  # a plugin: import late

    browser_sign_in(page, base_url, "demo", PASSWORD)
    expect(page).to_have_url(f"{base_url}/")


def counts(page: Any) -> tuple[int, int]:
    link = page.locator("#alert-count")
    return int(link.get_attribute("data-firing")), int(link.get_attribute("data-acknowledged"))


def test_a_rule_from_a_preset_fires_live_on_the_dashboard_is_acknowledged_and_resolves(live_stack, demo, chromium):
    from playwright.sync_api import expect

    base, slug = live_stack.daphne.base_url, demo["slug"]
    sensor = demo["sensors"][f"{PROBE}/soil_moisture"]
    name = "Probe 2 waterlogged"
    live_stack.seed({"what": "alert_rules_delete", "farm": slug, "prefix": name})  # what an earlier run left
    publish_moisture(live_stack, 30.0)  # start from a calm reading, whatever an earlier run left
    live_stack.wait_stored(sensor, 30.0)

    page = chromium.new_page(viewport={"width": 1440, "height": 900})
    with live_stack.logs_on_failure():
        sign_in(page, base)
        page.goto(f"{base}/farms/{slug}/alerts/rules/new/?preset=waterlogged")
        expect(page.get_by_label("Name", exact=True)).to_have_value("Waterlogged")
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_label("For (minutes)", exact=True).fill("0")
        page.get_by_label("Scope", exact=True).select_option(label="One device")
        page.get_by_label("Device", exact=True).select_option(label=PROBE_NAME)
        page.get_by_label("Severity", exact=True).select_option("critical")
        page.get_by_role("button", name="Backtest the last 7 days").click()
        backtest = page.locator("#backtest")
        expect(backtest).to_be_visible(timeout=10_000)
        expect(backtest.locator("[data-role=summary]")).to_contain_text("Over the last 7 days", timeout=10_000)
        page.get_by_role("button", name="Create rule").click()
        expect(page.get_by_role("link", name=name)).to_be_visible()

        page.goto(f"{base}/farms/{slug}/")
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=10_000)
        firing, acknowledged = counts(page)
        card = page.locator(f"#sensor-{sensor}.metric")
        banner = page.locator("#critical-banner")
        expect(card).to_have_attribute("data-alert", "")
        expect(banner).to_be_hidden()

        publish_moisture(live_stack, 58.4)
        header = page.locator("#alert-count")
        expect(header).to_have_attribute("data-firing", str(firing + 1), timeout=5000)
        expect(header.locator("[data-role=alerts-firing]")).to_have_text(str(firing + 1))
        expect(header).to_have_class("dash-alerts is-firing")
        expect(header).to_have_attribute("href", f"/farms/{slug}/alerts/")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text(name)
        expect(banner).to_contain_text(f"{PROBE_NAME} · Soil moisture: 58.4 %")
        expect(banner.get_by_role("link", name="Open alerts")).to_have_attribute("href", f"/farms/{slug}/alerts/")
        expect(card).to_have_attribute("data-alert", "critical")
        expect(card.locator("[data-role=alert-badge]")).to_have_text("Critical")

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "dashboard-alert-desktop.png")
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=SCREENSHOTS / "dashboard-alert-phone.png")
        page.set_viewport_size({"width": 1440, "height": 900})

        # The chart draws the rule's threshold and clear lines and shades the open episode.
        card.locator("[data-action=open-chart]").click()
        expect(page.locator("#chart-plot .main-svg").first).to_be_attached(timeout=30_000)
        page.wait_for_function("window.furrow.chartShapes().some(n => n.startsWith('alert-episode-'))")
        shapes = page.evaluate("window.furrow.chartShapes()")
        assert any(n.startswith("alert-threshold-") for n in shapes), shapes
        assert any(n.startswith("alert-clear-") for n in shapes), shapes
        page.screenshot(path=ARTIFACTS / "browser-alert-chart.png")
        page.keyboard.press("Escape")

        banner.get_by_role("button", name="Dismiss this notice").click()
        expect(banner).to_be_hidden()

        alerts = chromium.new_page(viewport={"width": 1280, "height": 900})
        sign_in(alerts, base)
        alerts.goto(f"{base}/farms/{slug}/alerts/")
        row = alerts.locator("[data-episodes=firing] tr", has_text=name)
        row.get_by_placeholder("Comment (optional)").fill("Drains checked")
        row.get_by_role("button", name="Acknowledge").click()
        expect(alerts.locator("[data-episodes=acknowledged] tr", has_text=name)).to_contain_text("Drains checked")
        alerts.close()
        expect(header).to_have_attribute("data-firing", str(firing), timeout=5000)
        expect(header).to_have_attribute("data-acknowledged", str(acknowledged + 1))
        expect(header.locator("[data-role=alerts-ack-box]")).to_be_visible()
        expect(card).to_have_attribute("data-alert", "critical")  # acknowledged is still open

        publish_moisture(live_stack, 35.0)  # below the clear level of 40
        expect(header).to_have_attribute("data-acknowledged", str(acknowledged), timeout=5000)
        expect(header).to_have_attribute("data-firing", str(firing))
        expect(card).to_have_attribute("data-alert", "")
        expect(card.locator("[data-role=alert-badge]")).to_be_hidden()
        expect(banner).to_be_hidden()
    page.close()
