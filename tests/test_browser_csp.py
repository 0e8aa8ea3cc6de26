"""Every page under the Content-Security-Policy, in a real browser: nothing it needs is refused.

The ``chromium`` fixture (tests/e2e_fixtures.py) fails a test whose pages report any violation;
here the pages are the farm list, a dashboard with a Plotly chart open and hovered (Plotly injects
styles at run time), and the admin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e_fixtures import LiveStack, WatchedBrowser

pytestmark = [pytest.mark.browser, pytest.mark.slow]
pytest_plugins = ["tests.mqtt_fixtures", "tests.e2e_fixtures"]  # mosquitto, live_stack, chromium

PASSWORD = "e2e-demo-password-not-secret"


@pytest.fixture(scope="module")
def demo(live_stack: LiveStack) -> dict[str, Any]:
    return live_stack.seed({"what": "demo", "username": "demo", "password": PASSWORD})


def sign_in(page: Any, base_url: str) -> None:
    from playwright.sync_api import expect

    from tests.e2e_fixtures import browser_sign_in  # a plugin: import late

    browser_sign_in(page, base_url, "demo", PASSWORD)
    expect(page).to_have_url(f"{base_url}/")


def test_the_dashboard_and_its_chart_run_under_the_policy(live_stack: LiveStack, demo, chromium: WatchedBrowser):
    from playwright.sync_api import expect

    base = live_stack.daphne.base_url
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    with live_stack.logs_on_failure():
        sign_in(page, base)
        response = page.goto(f"{base}/farms/{demo['slug']}/")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=10_000)
        page.locator('[data-action="open-chart"]').first.click()
        plot = page.locator("#chart-plot .main-svg").first
        expect(plot).to_be_visible(timeout=15_000)
        page.locator("#chart-plot").hover()  # the hover label appears, with its styles
        page.locator('#chart-plot [data-range], [data-range="24h"]').first.click()
        page.wait_for_timeout(1000)
        assert page.evaluate("typeof window.Plotly") == "object"
    page.close()


def test_the_admin_runs_under_the_policy(live_stack: LiveStack, demo, chromium: WatchedBrowser):
    base = live_stack.daphne.base_url
    page = chromium.new_page()
    with live_stack.logs_on_failure():
        sign_in(page, base)
        for path in ("/admin/", "/admin/sensors/device/", "/admin/sensors/device/add/", "/admin/sensors/deadletter/"):
            response = page.goto(f"{base}{path}")
            assert response.status == 200, path
        page.goto(f"{base}/admin/sensors/device/")
        page.locator("#result_list tbody a").first.click()
        page.wait_for_load_state("load")
    page.close()


def test_the_watch_catches_an_inline_script(live_stack: LiveStack, demo, chromium: WatchedBrowser):
    """The policy refuses inline script, and the fixture sees the refusal (else it proves nothing)."""
    base = live_stack.daphne.base_url
    page = chromium.new_page()
    page.goto(f"{base}/login/")
    page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "window.injected = true";
        document.head.appendChild(script);
    }""")
    page.wait_for_timeout(300)
    assert page.evaluate("window.injected") is None
    assert any("script-src" in violation for violation in chromium.violations), chromium.violations
    chromium.violations.clear()  # seen and expected
    page.close()
