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
    """The probe's whole reading: its other metrics fresh too, whatever earlier runs left in the database."""
    reading = {"ts": int(time.time() * 1000), "soil_moisture": value, "soil_temperature": 12.5, "soil_ec": 1.2}
    stack.publish(f"farm/{PROBE}/telemetry", json.dumps(reading))


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

    from tests.e2e_fixtures import browser_sign_in  # a plugin: import late

    browser_sign_in(page, base_url, "demo", PASSWORD)
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
        card = page.locator(f"#sensor-{demo['sensors'][f'{PROBE}/soil_moisture']}.metric")
        row = page.locator(f"#device-{demo['devices'][PROBE]}.device")
        moisture_range = '[data-summary-key="soil_moisture"] [data-role=range]'
        field_moisture = page.locator(f"section.field:has(#device-{demo['devices'][PROBE]}) {moisture_range}")
        expect(pill).to_have_attribute("data-state", "live", timeout=10_000)

        value = fresh_value(card.get_attribute("data-value"))
        publish_moisture(live_stack, value)
        expect(card).to_have_attribute("data-value", str(value), timeout=2000)
        expect(card.locator("[data-role=value]")).to_have_text(f"{value:.1f}", timeout=2000)
        expect(row).to_have_attribute("data-state", "ok")  # every metric fresh and plausible
        expect(row.locator("[data-role=badge]")).to_be_hidden()
        expect(field_moisture).to_contain_text(f"{value:.1f}")  # one end of the field's range
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


def test_the_demo_farm_fits_one_desktop_screen_and_about_two_phone_screens(live_stack, demo, chromium):
    page = chromium.new_page(viewport={"width": 1440, "height": 900})
    sign_in(page, live_stack.daphne.base_url)
    page.goto(f"{live_stack.daphne.base_url}/farms/{demo['slug']}/")
    rows = page.locator(".device")
    assert rows.count() == len(demo["devices"])
    bottom = rows.last.bounding_box()["y"] + rows.last.bounding_box()["height"]
    if bottom > 900:
        page.screenshot(path=ARTIFACTS / "browser-dashboard-too-tall.png", full_page=True)
    assert bottom <= 900
    page.set_viewport_size({"width": 390, "height": 844})
    height = page.evaluate("document.querySelector('.dash').getBoundingClientRect().bottom + scrollY")
    assert height <= 2.2 * 844, f"the farm is {height / 844:.1f} phone screens long"
    # A chip jumps to its field, below the sticky index.
    page.locator(".field-chip").nth(1).click()
    field = page.locator(".field").nth(1)
    assert 0 <= field.bounding_box()["y"] < 120
    page.close()


def test_the_opened_chart_is_in_the_url_survives_a_reload_and_does_not_magnify_noise(live_stack, demo, chromium):
    from playwright.sync_api import expect

    base = live_stack.daphne.base_url
    sensor = demo["sensors"][f"{PROBE}/soil_moisture"]
    now = int(time.time())
    for i, value in enumerate((30.0, 30.1, 30.0, 30.2)):  # noise of a tenth of a percent
        live_stack.publish(f"farm/{PROBE}/telemetry", json.dumps({"ts": now - 60 * (4 - i), "soil_moisture": value}))
    live_stack.wait_stored(sensor, 30.2)
    page = chromium.new_page(viewport={"width": 1440, "height": 900})
    sign_in(page, base)
    page.goto(f"{base}/farms/{demo['slug']}/")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=10_000)
    clicked = page.evaluate("performance.now()")
    page.locator(f"#sensor-{sensor} [data-action=open-chart]").click()
    expect(page.locator("#chart-plot .main-svg").first).to_be_attached(timeout=30_000)
    drawn = page.evaluate("performance.now()")
    print(f"\nfirst chart drawn {(drawn - clicked) / 1000:.2f} s after the click")  # measured, not asserted
    page.locator('[data-range="24h"]').click()
    expect(page).to_have_url(f"{base}/farms/{demo['slug']}/?chart={sensor}&range=24h")
    assert page.locator(".modebar").count() == 0, "no Plotly toolbar over the plot"

    started = page.evaluate("performance.timeOrigin")
    page.reload()
    expect(page.locator("#chart-dialog")).to_have_attribute("open", "", timeout=10_000)
    expect(page.locator('[data-range="24h"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#chart-plot .main-svg").first).to_be_attached(timeout=30_000)
    print(f"chart reopened from the URL {page.evaluate('performance.now()') / 1000:.2f} s after the reload began")
    assert page.evaluate("performance.timeOrigin") > started
    low, high = page.evaluate("document.getElementById('chart-plot').layout.yaxis.range")
    assert high - low >= 5.0, "a 0.2 % wobble is drawn on at least the metric's 5 % span"

    page.keyboard.press("Escape")
    expect(page).to_have_url(f"{base}/farms/{demo['slug']}/")
    page.close()


def test_a_frame_holding_several_updates_applies_each_in_order_without_a_gap(live_stack, demo, chromium):
    """A server behind on a socket sends its waiting updates as one JSON array (README, live protocol).

    The socket goes through Playwright's WebSocket route to the real daphne: the route holds the
    server's next two updates and hands them to the page as one array frame, as daphne does.
    """
    import re

    from playwright.sync_api import expect

    bundle: list[str] = []
    bundled: list[str] = []

    def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            kind = json.loads(message).get("type") if isinstance(message, str) else None
            # From the first update on, every numbered message joins the frame, so that the
            # sequence stays in order (an alert the reading fires is numbered in between).
            if not bundled and (kind == "update" or (bundle and kind == "alerts")):
                bundle.append(str(message))
                if sum('"type":"update"' in m for m in bundle) == 2:
                    bundled.append("[" + ",".join(bundle) + "]")
                    ws.send(bundled[0])
                return
            ws.send(message)

        server.on_message(from_server)

    base = live_stack.daphne.base_url
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.route_web_socket(re.compile(r"/ws/farms/\d+/$"), route)
    with live_stack.logs_on_failure():
        sign_in(page, base)
        page.goto(f"{base}/farms/{demo['slug']}/")
        card = page.locator(f"#sensor-{demo['sensors'][f'{PROBE}/soil_moisture']}.metric")
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=10_000)
        before = page.evaluate("({...window.furrow.stats})")
        first = fresh_value(card.get_attribute("data-value"))
        second = fresh_value(str(first))
        publish_moisture(live_stack, first)
        deadline = time.monotonic() + 10
        while not bundle and time.monotonic() < deadline:  # its update is held by the route
            page.wait_for_timeout(50)  # (route callbacks run while Playwright waits)
        assert bundle, "the first update never reached the page's socket"
        publish_moisture(live_stack, second)
        expect(card).to_have_attribute("data-value", str(second), timeout=5000)
        after = page.evaluate("({...window.furrow.stats})")
    page.close()
    assert len(bundled) == 1
    assert [m["type"] for m in json.loads(bundled[0]) if m["type"] == "update"] == ["update", "update"]
    assert after["updates"] - before["updates"] >= 2  # each message of the frame applied
    assert (after["gaps"], after["snapshots"]) == (before["gaps"], before["snapshots"])  # in order: no refetch
