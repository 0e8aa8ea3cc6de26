"""Response headers: the Content-Security-Policy on every response, and no caching of per-user data."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import Client

from tests.dashboard_fixtures import farm_with_sensors, member_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_client():
    setup = farm_with_sensors(devices=1)
    client = Client()
    client.force_login(member_of(setup.farm).user)
    return client, setup


def member_urls(setup) -> list[str]:
    farm, sensor = setup.farm, setup.sensors[0]
    return [
        "/",
        f"/farms/{farm.slug}/",
        f"/farms/{farm.slug}/sparklines",
        f"/farms/{farm.slug}/sensors/{sensor.pk}/series?range=6h",
        f"/farms/{farm.slug}/sensors/{sensor.pk}/series?range=nonsense",  # a 400 names the user's sensor too
    ]


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


def test_every_page_and_json_endpoint_of_a_member_is_private_and_not_stored(member_client):
    client, setup = member_client
    for url in member_urls(setup):
        response = client.get(url)
        cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
        assert {"private", "no-store"} <= cache_control, (url, response["Cache-Control"])


def test_the_admin_login_page_and_healthz_are_not_stored_either(admin_client):
    for url in ("/admin/", "/admin/sensors/device/", "/login/"):
        response = admin_client.get(url)
        assert {"private", "no-store"} <= {p.strip() for p in response["Cache-Control"].split(",")}, url


def test_static_files_stay_cacheable(client):
    response = client.get("/static/css/furrow.css")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")


@pytest.mark.parametrize("url", ["/login/", "/healthz", "/static/img/logo.svg", "/no-such-page/"])
def test_every_response_carries_the_policy(client, url):
    response = client.get(url)
    policy = directives(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]  # the WebSocket back to this origin only
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["style-src"]
    assert policy["style-src-attr"] == ["'unsafe-inline'"]  # Plotly's hover labels; see settings


def test_pages_have_no_inline_script_or_style_element(member_client, admin_client):
    client, setup = member_client
    pages = [client.get(url) for url in member_urls(setup)[:2]]
    pages += [admin_client.get(url) for url in ("/admin/", "/admin/sensors/device/")]
    for response in pages:
        html = response.content.decode()
        # json_script data (type="application/json") is never run, so the policy leaves it alone.
        inline = re.search(r"<script(?![^>]*\b(?:src=|type=\"application/json\"))[^>]*>", html)
        assert inline is None, "an inline <script> the policy would block"
        assert not re.search(r"<style\b", html), "a <style> element the policy would block"
        assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler the policy would block"
        assert not re.search(r"\sstyle\s*=", html), "a style attribute the policy would block"


def test_the_plotly_style_hashes_match_the_vendored_bundle():
    """Plotly.js adds <style> elements at run time; the policy admits exactly their contents by hash."""
    bundle = finders.find("vendor/plotly/plotly-basic.min.js")
    assert bundle is not None
    source = Path(bundle).read_text(encoding="utf-8")
    texts = [""]  # its own style elements start empty and are filled through the CSSOM
    texts += [match for match in re.findall(r"\.textContent='([^']*)'", source) if match.startswith(".maplibregl")]
    expected = {"'sha256-" + base64.b64encode(hashlib.sha256(t.encode()).digest()).decode() + "'" for t in texts}
    assert set(settings.PLOTLY_STYLE_HASHES) == expected
