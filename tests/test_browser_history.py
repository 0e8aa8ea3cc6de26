"""The history page in a real browser (Debian's headless Chromium via Playwright) on the live stack.

Pick two sensors, switch ranges, zoom, see an alert episode shaded and named on hover, export: the
downloaded file is what the export URL gives.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from tests.mqtt_fixtures import wait_until
from tests.test_browser_dashboard import ARTIFACTS, PASSWORD, demo, sign_in  # noqa: F401

if TYPE_CHECKING:
    from tests.e2e_fixtures import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# Not the probe the dashboard and alert tests watch: two days of history would make its state theirs.
PROBE = "a84041000181c2d1"  # the demo's orchard soil probe (LoRaWAN; the native topic takes its DevEUI)
pytest_plugins = ["tests.mqtt_fixtures", "tests.e2e_fixtures"]


def _publish_history(stack: LiveStack, keys: list[str]) -> int:
    """A reading of each key every 10 minutes for the last two days, as one buffered array; returns the count."""
    now = int(time.time())
    points = [{"ts": now - i * 600, **dict.fromkeys(keys, 20.0 + i % 7)} for i in range(1, 289)]
    stack.publish(f"farm/{PROBE}/telemetry", json.dumps(points))
    return len(points)


def _count(stack: LiveStack, sensor_id: int) -> int:
    """The sensor's readings counted in its daily rollups, after a refresh (what beat runs every few seconds)."""
    stack.refresh_rollups()
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute("SELECT count FROM sensors_rollupday WHERE sensor_id = %s", [sensor_id]).fetchall()
    return sum(r[0] for r in row)


def test_pick_two_sensors_switch_ranges_zoom_see_an_alert_and_export_what_the_page_shows(
    live_stack,
    demo,  # noqa: F811
    chromium,
    tmp_path,
    request,
):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    sensors = {key.split("/", 1)[1]: pk for key, pk in demo["sensors"].items() if key.startswith(f"{PROBE}/")}
    # Values 20-26 are plausible for these two; a 20 V battery would leave the probe out of range
    # for every later test that watches its state.
    keys = ["soil_moisture", "soil_temperature"]
    ids = [sensors[k] for k in keys]
    count = _publish_history(live_stack, keys)
    wait_until(lambda: _count(live_stack, ids[0]) >= count, timeout=20, what="the readings and their rollups stored")
    now = int(time.time())
    episode = live_stack.seed(
        {"what": "episode", "farm": demo["slug"], "rule": "North Meadow too dry", "sensor": ids[0],
         "start": now - 4 * 3600, "end": now - 3 * 3600, "worst": 18.0}
    )["episode"]  # fmt: skip
    request.addfinalizer(lambda: live_stack.seed({"what": "episode", "delete": episode}))
    base = live_stack.daphne.base_url
    page = chromium.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    with live_stack.logs_on_failure():
        sign_in(page, base)
        page.goto(f"{base}/farms/{demo['slug']}/history/")
        page.locator("#sensor-search").fill("orchard soil moist")  # the picker narrows to what matches
        expect(page.locator("label[data-search]:visible")).to_have_count(1)
        expect(page.locator("fieldset[data-group]:visible")).to_have_count(1)
        page.locator("#sensor-search").fill("")
        for pk in ids:
            page.locator(f'input[name="sensor"][value="{pk}"]').check()  # each check submits the form
            page.wait_for_load_state("networkidle")
        expect(page.locator("#history-chart .main-svg").first).to_be_visible(timeout=20_000)
        assert all(f"sensor={pk}" in page.url for pk in ids)

        page.get_by_role("button", name="30 days").click()
        page.wait_for_url("**range=30d**")
        expect(page.locator("#history-resolution")).to_contain_text("hourly rollups", timeout=20_000)

        page.evaluate(
            """() => {
                const chart = document.getElementById('history-chart');
                const end = Date.now(), start = end - 6 * 3600 * 1000;
                const wall = (ms) => new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
                window.Plotly.relayout(chart, {'xaxis.range': [wall(start), wall(end)]});
            }"""
        )
        page.wait_for_url("**from=**")
        expect(page.locator("#history-resolution")).to_contain_text("raw readings", timeout=20_000)
        # The alert episode in the window: a shaded band whose hover names the rule.
        index = page.evaluate(
            "(name) => document.getElementById('history-chart').layout.shapes.findIndex((s) => s.name === name)",
            f"alert-episode-{episode}",
        )
        assert index >= 0, "the episode is shaded"
        band = page.locator(f'#history-chart .shapelayer path[data-index="{index}"]')
        expect(page.locator("#history-alerts")).to_contain_text("warning alert")
        box, plot = band.bounding_box(), page.locator("#history-chart .nsewdrag").first.bounding_box()
        assert box is not None
        assert plot is not None
        page.mouse.move(box["x"] + box["width"] / 2, plot["y"] + plot["height"] / 2)
        expect(page.locator("#history-chart .hoverlayer")).to_contain_text("North Meadow too dry (warning)")
        page.screenshot(path=str(ARTIFACTS / "history-desktop.png"), full_page=True)

        href: Any = page.locator("#history-export").get_attribute("href")
        assert "resolution=raw" in href
        with page.expect_download() as download_info:
            page.locator("#history-export").click()
        saved = tmp_path / "export.csv"
        download_info.value.save_as(saved)
        expected = page.request.get(base + href).text()
        text = saved.read_text()
        assert text == expected
        lines = text.splitlines()
        assert lines[0] == "sensor_id,sensor,unit,time,value"
        assert {int(line.split(",")[0]) for line in lines[1:]} == set(ids)

        phone = chromium.new_page(viewport={"width": 390, "height": 844}, storage_state=page.context.storage_state())
        phone.goto(page.url)
        expect(phone.locator("#history-chart .main-svg").first).to_be_visible(timeout=20_000)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        phone.screenshot(path=str(ARTIFACTS / "history-phone.png"), full_page=True)
