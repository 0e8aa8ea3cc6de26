"""The MQTT test fixtures themselves: in CI a missing Mosquitto fails the run instead of skipping it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mqtt_fixtures import require_mosquitto


def test_without_mosquitto_the_mqtt_tests_skip_on_a_developer_machine(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception, match="apt install mosquitto"):
        require_mosquitto(tmp_path / "mosquitto")


def test_without_mosquitto_the_mqtt_tests_fail_in_ci(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception, match="CI must not skip them"):
        require_mosquitto(tmp_path / "mosquitto")


def test_with_mosquitto_installed_nothing_is_skipped(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("CI", "true")
    binary = tmp_path / "mosquitto"
    binary.touch()

    require_mosquitto(binary)
